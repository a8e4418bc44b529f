//! Real MariaDB servers: start, SQL, authentication, crash/restart, cleanup.

use std::process::Command;

use pool_testkit::{MariaDbServer, MARIADB_DATABASE, MARIADB_PASSWORD, MARIADB_USER};

/// True when `pid` no longer exists (or is only a zombie awaiting its reaper).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
    }
}

/// Connects over TCP as the test user with `password`.
fn client_tcp(db: &MariaDbServer, password: &str, sql: &str) -> std::process::Output {
    let client = ["mariadb", "mysql"]
        .iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .expect("a mariadb client");
    Command::new(client)
        .arg("--no-defaults")
        .args(["--protocol=tcp", "-h", "127.0.0.1"])
        .arg(format!("--port={}", db.port()))
        .arg(format!("--user={MARIADB_USER}"))
        .arg(format!("--password={password}"))
        .args([
            "--batch",
            "--skip-column-names",
            MARIADB_DATABASE,
            "-e",
            sql,
        ])
        .output()
        .expect("run mariadb client")
}

#[test]
fn starts_runs_sql_and_checks_passwords() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = MariaDbServer::start().expect("start mariadb");
    assert_ne!(db.port(), 3306);
    assert_eq!(
        db.url(),
        format!(
            "mysql://{MARIADB_USER}:{MARIADB_PASSWORD}@127.0.0.1:{}/{MARIADB_DATABASE}",
            db.port()
        )
    );
    assert_eq!(db.run_sql("SELECT 1 + 1").unwrap(), "2");
    assert_eq!(db.run_sql("SELECT @@max_connections").unwrap(), "200");
    assert_eq!(db.run_sql("SELECT @@port").unwrap(), db.port().to_string());
    assert!(db.run_sql("SELECT VERSION()").unwrap().contains("MariaDB"));
    assert!(db.socket_path().exists());

    let ok = client_tcp(&db, MARIADB_PASSWORD, "SELECT CURRENT_USER(), DATABASE()");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "pool_test@127.0.0.1\tpool_test"
    );
    let bad = client_tcp(&db, "wrong", "SELECT 1");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("Access denied"), "{err}");

    let e = db
        .run_sql("SELECT * FROM pool_test.no_such_table")
        .unwrap_err();
    assert!(e.to_string().contains("no_such_table"), "{e}");
}

#[test]
fn kill_start_again_restart_and_cleanup() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let mut db = MariaDbServer::builder()
        .max_connections(33)
        .server_arg("--wait-timeout=77")
        .start()
        .expect("start mariadb");
    let port = db.port();
    assert_eq!(
        db.run_sql("SELECT @@max_connections, @@wait_timeout")
            .unwrap(),
        "33\t77"
    );
    db.run_sql_in(
        MARIADB_DATABASE,
        "CREATE TABLE t (x INT) ENGINE=InnoDB; INSERT INTO t VALUES (42)",
    )
    .unwrap();

    let pid1 = db.pid().unwrap();
    db.kill().unwrap();
    assert!(gone(pid1));
    assert!(db.run_sql("SELECT 1").is_err());
    db.start_again().expect("start after kill");
    assert_eq!(db.port(), port);
    assert_eq!(
        db.run_sql_in(MARIADB_DATABASE, "SELECT x FROM t").unwrap(),
        "42"
    );
    assert!(db.start_again().is_err(), "already running");

    db.restart().expect("restart");
    assert_eq!(db.port(), port);
    assert_eq!(
        db.run_sql_in(MARIADB_DATABASE, "SELECT x FROM t").unwrap(),
        "42"
    );
    // Passwords survive restarts.
    assert!(client_tcp(&db, MARIADB_PASSWORD, "SELECT 1")
        .status
        .success());

    let pid = db.pid().unwrap();
    let root = db.root_dir().to_path_buf();
    drop(db);
    assert!(gone(pid), "mariadbd {pid} still alive after drop");
    assert!(pool_testkit::processes_in_dir(&root).is_empty());
    assert!(!root.exists());
}
