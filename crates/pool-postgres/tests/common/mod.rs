//! Helpers shared by the integration tests (each test file uses a subset).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pool_testkit::PgServer;
use postgres::{Client, NoTls};

/// A name unique within this test process, for tables, roles and
/// `application_name`s on a shared server.
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

/// A superuser client on `pg` (trust authentication), for observing the server.
pub fn superuser(pg: &PgServer) -> Client {
    Client::connect(&pg.superuser_url(), NoTls).expect("superuser connection")
}

/// A superuser client on `pg`'s test database ([`pool_testkit::PG_DATABASE`]).
pub fn superuser_in_test_db(pg: &PgServer) -> Client {
    let url = format!(
        "postgres://{}@127.0.0.1:{}/{}",
        pool_testkit::PG_SUPERUSER,
        pg.port(),
        pool_testkit::PG_DATABASE
    );
    Client::connect(&url, NoTls).expect("superuser connection")
}

/// Number of server connections with `application_name = app`.
pub fn connections_named(observer: &mut Client, app: &str) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .expect("count connections")
        .get(0)
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
