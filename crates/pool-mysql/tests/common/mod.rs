//! Helpers shared by the integration tests (each test file uses a subset).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};
use pool_core::url_params::PoolParams;
use pool_core::{Builder, ManageConnection};
use pool_mysql::MysqlManager;
use pool_testkit::{MariaDbServer, MARIADB_DATABASE};

// Each test binary uses a few of these.
#[allow(unused_imports)]
pub use pool_testkit::scenarios::{pool_io_threads, serial, wait_until, with_params};

/// This crate as the driver of the shared scenarios ([`pool_testkit::scenarios`]).
pub struct Mysql;

impl pool_testkit::scenarios::Driver for Mysql {
    type Manager = MysqlManager;
    type Server = MariaDbServer;
    const SCHEME: &'static str = "mysql";
    // The socket's read timeout ends a login the pool gave up on.
    const GIVEN_UP_CONNECTS_LOG_IN: bool = false;

    fn from_url(url: &str) -> Result<(Self::Manager, PoolParams), pool_core::Error> {
        MysqlManager::from_url(url)
    }
    fn builder_from_url(url: &str) -> Result<(Builder, Self::Manager), pool_core::Error> {
        pool_mysql::builder_from_url(url)
    }
    fn password(manager: &Self::Manager) -> Option<String> {
        manager.opts().get_pass().map(str::to_owned)
    }
    fn execute(
        conn: &mut <Self::Manager as ManageConnection>::Connection,
        sql: &str,
    ) -> Result<(), String> {
        conn.query_drop(sql).map_err(|e| e.to_string())
    }
}

/// A name unique within this test process.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
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
