//! Helpers shared by the integration tests (each test file uses a subset).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};
use pool_testkit::{MariaDbServer, MARIADB_DATABASE};

/// A name unique within this test process.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with `params` appended as its query string.
pub fn with_params(url: &str, params: &str) -> String {
    if params.is_empty() {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&{params}")
    } else {
        format!("{url}?{params}")
    }
}

/// A root connection on `db` (over TCP, never through the socket).
pub fn root(db: &MariaDbServer) -> Conn {
    let opts = OptsBuilder::from_opts(Opts::from_url(&db.root_url()).unwrap()).prefer_socket(false);
    Conn::new(opts).expect("root connection")
}

/// Creates a user of its own for one test (so that its connections can be
/// counted in the process list) with all privileges on the test database;
/// returns the user's URL.
pub fn own_user(db: &MariaDbServer, admin: &mut Conn, name: &str) -> String {
    admin
        .query_drop(format!(
            "CREATE USER '{name}'@'%' IDENTIFIED BY 'pw_{name}'; \
             GRANT ALL ON {MARIADB_DATABASE}.* TO '{name}'@'%'"
        ))
        .expect("create user");
    format!(
        "mysql://{name}:pw_{name}@127.0.0.1:{}/{MARIADB_DATABASE}",
        db.port()
    )
}

/// Number of server connections of `user`.
pub fn connections_of(admin: &mut Conn, user: &str) -> i64 {
    admin
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
            (user,),
        )
        .expect("count connections")
        .unwrap_or(0)
}

/// A logger that keeps every record, so tests can look for warnings and
/// check that no password is ever logged.
pub struct CapturingLogger;

static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for CapturingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        RECORDS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

/// Installs [`CapturingLogger`] (once per process).
pub fn capture_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        log::set_logger(&CapturingLogger).expect("no other logger");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Every log line captured so far.
pub fn logged() -> Vec<String> {
    RECORDS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// How many of this process's threads are `pool-io` helper threads
/// (`/proc/self/task/*/comm`).
pub fn pool_io_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|name| name.starts_with("pool-io"))
        })
        .count()
}

/// Serialises the tests of one file that freeze servers or count threads:
/// run side by side on a 2-core machine they would blur each other's timing
/// and thread counts.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
