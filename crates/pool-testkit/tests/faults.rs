//! Faults on the servers themselves: freezing (SIGSTOP/SIGCONT), the server's
//! own per-user connection limit, and counting the test user's sessions.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pool_testkit::{
    processes_in_dir, MariaDbServer, PgServer, MARIADB_DATABASE, MARIADB_PASSWORD, MARIADB_USER,
};

/// The state letter of `pid` from `/proc/<pid>/stat`.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Does the server at `addr` answer a new connection within `wait`?
/// PostgreSQL answers an SSLRequest with one byte (`N` or `S`); MariaDB
/// greets first (a packet whose fifth byte is protocol version 10).
fn answers(addr: SocketAddr, postgres: bool, wait: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, wait) else {
        return false;
    };
    s.set_read_timeout(Some(wait)).unwrap();
    if postgres {
        // Length 8, code 80877103.
        let req = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        if s.write_all(&req).is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        s.read_exact(&mut b).is_ok()
    } else {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).is_ok() && head[4] == 10
    }
}

/// A psql session of the test user, held open while its stdin is.
fn pg_session(pg: &PgServer) -> Child {
    Command::new(pg.psql_path())
        .args(["-X", "-q", "-d", &pg.url()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run psql")
}

/// Runs one statement as the test user; returns psql's stderr on failure.
fn pg_login(pg: &PgServer) -> Result<(), String> {
    let out = Command::new(pg.psql_path())
        .args(["-X", "-q", "-d", &pg.url(), "-c", "SELECT 1"])
        .output()
        .expect("run psql");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn mariadb_client(db: &MariaDbServer) -> Command {
    let client = ["mariadb", "mysql"]
        .iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .expect("a mariadb client");
    let mut cmd = Command::new(client);
    cmd.arg("--no-defaults")
        .args(["--protocol=tcp", "-h", "127.0.0.1"])
        .arg(format!("--port={}", db.port()))
        .arg(format!("--user={MARIADB_USER}"))
        .arg(format!("--password={MARIADB_PASSWORD}"))
        .args(["--batch", "--skip-column-names", MARIADB_DATABASE]);
    cmd
}

/// A MariaDB session of the test user, held open while its stdin is.
fn mariadb_session(db: &MariaDbServer) -> Child {
    mariadb_client(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mariadb client")
}

/// Runs one statement as the test user; returns the client's stderr on failure.
fn mariadb_login(db: &MariaDbServer) -> Result<(), String> {
    let out = mariadb_client(db)
        .args(["-e", "SELECT 1"])
        .output()
        .expect("run mariadb client");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Ends held sessions by closing their stdin.
fn end_sessions(sessions: Vec<Child>) {
    for mut s in sessions {
        drop(s.stdin.take());
        s.wait().unwrap();
    }
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn pg_freeze_stops_postmaster_and_children_until_the_guard_drops() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = PgServer::start().expect("start postgres");
    // A client session, so that a backend exists besides the auxiliaries.
    let session = pg_session(&pg);
    assert!(wait_until(Duration::from_secs(5), || pg
        .session_count()
        .unwrap()
        == 1));
    let server_procs = processes_in_dir(pg.root_dir());
    assert!(server_procs.len() > 3, "{server_procs:?}");
    assert!(answers(pg.addr(), true, Duration::from_secs(2)));

    let frozen = pg.freeze_guard().expect("freeze");
    assert_eq!(frozen.pids()[0], pg.pid().unwrap());
    // Every process of the server (a backend that was exiting a moment ago
    // may be gone now) is stopped.
    let server_procs = processes_in_dir(pg.root_dir());
    assert!(server_procs.len() > 3, "{server_procs:?}");
    for pid in &server_procs {
        assert!(frozen.pids().contains(pid), "{pid} not frozen");
        assert_eq!(state(*pid), Some('T'), "process {pid}");
    }
    // The kernel still accepts TCP connections, but nobody answers.
    assert!(!answers(pg.addr(), true, Duration::from_millis(700)));
    drop(frozen);

    for pid in &server_procs {
        assert_ne!(state(*pid), Some('T'), "process {pid} still stopped");
    }
    assert!(answers(pg.addr(), true, Duration::from_secs(2)));
    assert_eq!(pg.run_sql("SELECT 1").unwrap(), "1");
    end_sessions(vec![session]);

    // freeze()/thaw() without a guard.
    pg.freeze().unwrap();
    assert_eq!(state(pg.pid().unwrap()), Some('T'));
    pg.thaw().unwrap();
    assert_eq!(pg.run_sql("SELECT 2").unwrap(), "2");
}

#[test]
fn pg_a_panic_under_the_guard_thaws_and_a_frozen_server_stops_promptly() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let mut pg = PgServer::start().expect("start postgres");
    let result = std::panic::catch_unwind(|| {
        let _frozen = pg.freeze_guard().unwrap();
        panic!("a test fails while the server is frozen");
    });
    assert!(result.is_err());
    assert_eq!(pg.run_sql("SELECT 1").unwrap(), "1");

    // stop() on a frozen server thaws it first: a fast shutdown, not a
    // 10 s wait for a signal a stopped postmaster never handles.
    pg.freeze().unwrap();
    let start = Instant::now();
    pg.stop().expect("stop");
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    pg.start_again().unwrap();

    // So does dropping it.
    pg.freeze().unwrap();
    let root = pg.root_dir().to_path_buf();
    let start = Instant::now();
    drop(pg);
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert!(processes_in_dir(&root).is_empty());
}

#[test]
fn pg_connection_limit_and_session_count() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = PgServer::start().expect("start postgres");
    assert_eq!(pg.session_count().unwrap(), 0);
    // Sessions opened before the limit count against it too.
    let held = vec![pg_session(&pg), pg_session(&pg)];
    assert!(
        wait_until(Duration::from_secs(5), || pg.session_count().unwrap() == 2),
        "count {}",
        pg.session_count().unwrap()
    );
    pg.set_connection_limit(Some(2)).unwrap();
    let err = pg_login(&pg).expect_err("a third login is over the limit");
    assert!(
        err.contains("too many connections for role \"pool_test\""),
        "{err}"
    );
    // The superuser is not limited and not counted.
    assert_eq!(pg.session_count().unwrap(), 2);

    pg.set_connection_limit(None).unwrap();
    pg_login(&pg).expect("no limit any more");
    pg.set_connection_limit(Some(3)).unwrap();
    pg_login(&pg).expect("under the new limit");
    end_sessions(held);
    assert!(wait_until(Duration::from_secs(5), || pg
        .session_count()
        .unwrap()
        == 0));
}

#[test]
fn mariadb_freeze_stops_the_server_until_the_guard_drops() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let mut db = MariaDbServer::start().expect("start mariadb");
    assert!(answers(db.addr(), false, Duration::from_secs(2)));
    let frozen = db.freeze_guard().expect("freeze");
    assert_eq!(frozen.pids(), &[db.pid().unwrap()]);
    assert_eq!(state(db.pid().unwrap()), Some('T'));
    assert!(!answers(db.addr(), false, Duration::from_millis(700)));
    drop(frozen);
    assert!(answers(db.addr(), false, Duration::from_secs(2)));
    assert_eq!(db.run_sql("SELECT 1").unwrap(), "1");

    let result = std::panic::catch_unwind(|| {
        let _frozen = db.freeze_guard().unwrap();
        panic!("a test fails while the server is frozen");
    });
    assert!(result.is_err());
    assert_eq!(db.run_sql("SELECT 2").unwrap(), "2");

    db.freeze().unwrap();
    db.thaw().unwrap();
    assert_eq!(db.run_sql("SELECT 3").unwrap(), "3");

    // stop() thaws first: SIGTERM is handled, no 30 s wait and SIGKILL.
    db.freeze().unwrap();
    let start = Instant::now();
    db.stop().expect("stop");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn mariadb_connection_limit_and_session_count() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = MariaDbServer::start().expect("start mariadb");
    assert_eq!(db.session_count().unwrap(), 0);
    // Sessions opened before the limit count against it too.
    let held = vec![mariadb_session(&db), mariadb_session(&db)];
    assert!(
        wait_until(Duration::from_secs(5), || db.session_count().unwrap() == 2),
        "count {}",
        db.session_count().unwrap()
    );
    db.set_connection_limit(Some(2)).unwrap();
    let err = mariadb_login(&db).expect_err("a third login is over the limit");
    assert!(
        err.contains("1226") && err.contains("max_user_connections"),
        "{err}"
    );
    assert_eq!(db.session_count().unwrap(), 2);

    db.set_connection_limit(Some(1)).unwrap();
    let err = mariadb_login(&db).expect_err("over the lower limit");
    assert!(err.contains("current value: 1"), "{err}");
    db.set_connection_limit(None).unwrap();
    mariadb_login(&db).expect("no limit any more");
    // Lifted, the sessions are still counted: a new limit holds at once.
    let third = mariadb_session(&db);
    assert!(wait_until(Duration::from_secs(5), || db
        .session_count()
        .unwrap()
        == 3));
    db.set_connection_limit(Some(3)).unwrap();
    mariadb_login(&db).expect_err("three open, limit 3");
    db.set_connection_limit(None).unwrap();
    end_sessions(vec![third]);
    end_sessions(held);
    assert!(wait_until(Duration::from_secs(5), || db
        .session_count()
        .unwrap()
        == 0));
}
