//! Helpers shared by the integration tests (each test file uses a subset).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use pool_core::url_params::PoolParams;
use pool_core::{Builder, ManageConnection};
use pool_postgres::PostgresManager;
use pool_testkit::PgServer;
use postgres::{Client, NoTls};

// Each test binary uses a few of these.
#[allow(unused_imports)]
pub use pool_testkit::scenarios::{pool_io_threads, serial, wait_until, with_params};

/// This crate as the driver of the shared scenarios ([`pool_testkit::scenarios`]).
pub struct Postgres;

impl pool_testkit::scenarios::Driver for Postgres {
    type Manager = PostgresManager<NoTls>;
    type Server = PgServer;
    const SCHEME: &'static str = "postgres";
    // The `postgres` crate cannot end a login that waits for the server.
    const GIVEN_UP_CONNECTS_LOG_IN: bool = true;

    fn from_url(url: &str) -> Result<(Self::Manager, PoolParams), pool_core::Error> {
        PostgresManager::from_url(url)
    }
    fn builder_from_url(url: &str) -> Result<(Builder, Self::Manager), pool_core::Error> {
        pool_postgres::builder_from_url(url)
    }
    fn password(manager: &Self::Manager) -> Option<String> {
        manager
            .config()
            .get_password()
            .map(|p| String::from_utf8(p.to_vec()).unwrap())
    }
    fn execute(
        conn: &mut <Self::Manager as ManageConnection>::Connection,
        sql: &str,
    ) -> Result<(), String> {
        conn.batch_execute(sql).map_err(|e| e.to_string())
    }
}

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
