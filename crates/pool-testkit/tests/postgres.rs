//! Real PostgreSQL servers: start, SQL, authentication, crash/restart, cleanup.

use std::path::Path;
use std::process::Command;

use pool_testkit::{PgServer, PG_DATABASE, PG_PASSWORD, PG_USER};

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

/// Runs psql with a connection URL (as the test user would connect).
fn psql_url(pg: &PgServer, url: &str, sql: &str) -> std::process::Output {
    Command::new(pg.psql_path())
        .args(["-X", "-A", "-t", "-q", "-d", url, "-c", sql])
        .env_remove("PGPASSWORD")
        .output()
        .expect("run psql")
}

#[test]
fn starts_runs_sql_and_checks_passwords() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = PgServer::start().expect("start postgres");
    assert_ne!(pg.port(), 5432);
    assert!(pg.url().starts_with(&format!(
        "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{PG_DATABASE}",
        pg.port()
    )));
    assert_eq!(pg.run_sql("SELECT 1 + 1").unwrap(), "2");
    assert_eq!(pg.run_sql("SHOW max_connections").unwrap(), "100");
    assert_eq!(pg.run_sql("SHOW fsync").unwrap(), "off");
    assert!(pg.run_sql("SHOW server_version").unwrap().starts_with("15"));
    assert!(pg.data_dir().join("PG_VERSION").exists());

    // The password user authenticates with SCRAM over TCP...
    let ok = psql_url(&pg, &pg.url(), "SELECT current_user, current_database()");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "pool_test|pool_test"
    );
    // ...and a wrong password is rejected.
    let bad = psql_url(&pg, &pg.url_with_password("wrong"), "SELECT 1");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("password authentication failed"), "{err}");
    // The superuser URL uses trust auth.
    let su = psql_url(
        &pg,
        &pg.superuser_url(),
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
    );
    assert_eq!(String::from_utf8_lossy(&su.stdout).trim(), "t");

    // SQL errors are reported with psql's message.
    let e = pg.run_sql("SELECT * FROM no_such_table").unwrap_err();
    assert!(e.to_string().contains("no_such_table"), "{e}");
}

#[test]
fn builder_settings_apply() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = PgServer::builder()
        .max_connections(7)
        .config_line("idle_session_timeout = '3s'")
        .start()
        .expect("start postgres");
    assert_eq!(pg.run_sql("SHOW max_connections").unwrap(), "7");
    assert_eq!(pg.run_sql("SHOW idle_session_timeout").unwrap(), "3s");
}

#[test]
fn kill_start_again_restart_and_cleanup() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let mut pg = PgServer::start().expect("start postgres");
    let port = pg.port();
    pg.run_sql_in(
        PG_DATABASE,
        "CREATE TABLE t (x int); INSERT INTO t VALUES (42)",
    )
    .unwrap();

    // Crash: SIGKILL the postmaster.
    let pid1 = pg.pid().expect("running");
    pg.kill().unwrap();
    assert!(gone(pid1));
    assert!(!pg.is_running());
    assert!(pg.run_sql("SELECT 1").is_err());
    pg.start_again().expect("start after kill");
    assert_eq!(pg.port(), port);
    assert_eq!(pg.run_sql_in(PG_DATABASE, "SELECT x FROM t").unwrap(), "42");
    assert!(pg.start_again().is_err(), "already running");

    // Clean stop, then start again.
    pg.stop().unwrap();
    assert!(!pg.is_running());
    pg.stop().unwrap(); // idempotent
    pg.start_again().expect("start after stop");
    assert_eq!(
        pg.run_sql_in(PG_DATABASE, "SELECT count(*) FROM t")
            .unwrap(),
        "1"
    );

    // restart() keeps port and data.
    let pid2 = pg.pid().unwrap();
    pg.restart().expect("restart");
    assert_ne!(pg.pid().unwrap(), pid2);
    assert_eq!(pg.port(), port);
    assert_eq!(pg.run_sql_in(PG_DATABASE, "SELECT x FROM t").unwrap(), "42");

    // Dropping stops every server process and deletes the directory.
    let pid3 = pg.pid().unwrap();
    let root = pg.root_dir().to_path_buf();
    drop(pg);
    assert!(gone(pid3), "postmaster {pid3} still alive after drop");
    assert!(pool_testkit::processes_in_dir(&root).is_empty());
    assert!(!root.exists(), "{} not removed", root.display());
}

#[test]
fn drop_after_kill_cleans_up() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let mut pg = PgServer::start().expect("start postgres");
    let root = pg.root_dir().to_path_buf();
    pg.kill().unwrap();
    drop(pg);
    assert!(pool_testkit::processes_in_dir(&root).is_empty());
    assert!(!Path::new(&root).exists());
}

#[test]
fn drop_during_panic_cleans_up() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let (tx, rx) = std::sync::mpsc::channel();
    let res = std::thread::spawn(move || {
        let pg = PgServer::start().expect("start postgres");
        tx.send((pg.pid().unwrap(), pg.root_dir().to_path_buf()))
            .unwrap();
        panic!("test panics while the server is up");
    })
    .join();
    assert!(res.is_err());
    let (pid, root) = rx.recv().unwrap();
    assert!(gone(pid));
    assert!(!root.exists());
}
