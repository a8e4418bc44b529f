//! Test scenarios shared by the driver crates (`pool-postgres`,
//! `pool-mysql`): the same promise, checked the same way against each
//! driver's pool and server.
//!
//! A driver's test file names a [`Driver`] (its manager, its server, how to
//! build a pool from a URL and run a statement) and calls a scenario from
//! [`freeze`], [`server_limits`] or [`url_errors`] in each `#[test]`:
//!
//! ```text
//! // crates/pool-postgres/tests/freeze.rs
//! mod common;
//! use pool_testkit::scenarios::freeze;
//!
//! #[test]
//! fn get_keeps_to_connection_timeout_when_the_server_freezes_under_idle_connections() {
//!     freeze::get_keeps_to_connection_timeout_under_idle_connections::<common::Postgres>();
//! }
//! ```
//!
//! Scenarios that start a server skip (or fail, with `CI` set) when the
//! server's binaries are missing, like [`require_or_skip!`](crate::require_or_skip),
//! and run one at a time within a test binary ([`serial`]).

pub mod freeze;
pub mod server_limits;
pub mod url_errors;

use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pool_core::url_params::PoolParams;
use pool_core::{Builder, ManageConnection};

use crate::{Frozen, MariaDbServer, PgServer};

/// A driver under test: its manager, the server it talks to, and the few
/// calls the scenarios make through it.
pub trait Driver: 'static {
    /// The driver's connection manager.
    type Manager: ManageConnection;
    /// The throwaway server the driver is tested against.
    type Server: Server;
    /// The URL scheme of the driver's URLs (`postgres`, `mysql`).
    const SCHEME: &'static str;
    /// Whether a connect the pool gave up on still logs in later (the
    /// `postgres` crate cannot end a login that waits for the server; the
    /// `mysql` manager's socket timeout ends it).
    const GIVEN_UP_CONNECTS_LOG_IN: bool;

    /// The manager's `from_url`.
    fn from_url(url: &str) -> Result<(Self::Manager, PoolParams), pool_core::Error>;
    /// The crate's `builder_from_url`.
    fn builder_from_url(url: &str) -> Result<(Builder, Self::Manager), pool_core::Error>;
    /// The password the manager will log in with.
    fn password(manager: &Self::Manager) -> Option<String>;
    /// Runs `sql` (statements without results) on a connection.
    fn execute(
        conn: &mut <Self::Manager as ManageConnection>::Connection,
        sql: &str,
    ) -> Result<(), String>;
}

/// What the scenarios need of a throwaway server; implemented for
/// [`PgServer`] and [`MariaDbServer`] (see their methods of the same names).
pub trait Server: Sized + Sync {
    /// What the server calls the account the URLs log in as (`role`, `user`),
    /// for messages.
    const ACCOUNT: &'static str;
    /// A statement that sleeps 2 ms on the server.
    const SLEEP_2MS: &'static str;

    /// Whether the server's binaries are installed.
    fn binaries_available() -> Result<(), String>;
    /// Starts a server with default settings.
    fn start() -> io::Result<Self>;
    /// Starts a server that logs every login, see [`logins_since`](Self::logins_since).
    fn start_logging_logins() -> io::Result<Self>;
    /// Size in bytes of the login log now, to pass to
    /// [`logins_since`](Self::logins_since) later.
    fn login_log_len(&self) -> usize;
    /// Lines of the login log after byte `from` saying the test user logged in.
    fn logins_since(&self, from: usize) -> Vec<String>;
    /// URL of the test database as the test user.
    fn url(&self) -> String;
    /// Stops the whole server with `SIGSTOP` until the guard drops.
    fn freeze_guard(&self) -> io::Result<Frozen>;
    /// Caps the test user's sessions with the server's own limit.
    fn set_connection_limit(&self, limit: Option<u32>) -> io::Result<()>;
    /// Number of the test user's sessions on the server.
    fn session_count(&self) -> io::Result<u32>;
    /// Stops the server, keeping its data.
    fn stop(&mut self) -> io::Result<()>;
    /// Starts a stopped server again, on the same port.
    fn start_again(&mut self) -> io::Result<()>;
}

/// Lines of the file at `path` after byte `from` that hold `needle`.
fn lines_since(path: &std::path::Path, from: usize, needle: impl Fn(&str) -> bool) -> Vec<String> {
    let log = std::fs::read(path).expect("server log");
    String::from_utf8_lossy(&log[from.min(log.len())..])
        .lines()
        .filter(|l| needle(l))
        .map(str::to_owned)
        .collect()
}

fn file_len(path: &std::path::Path) -> usize {
    std::fs::metadata(path).expect("server log").len() as usize
}

impl Server for PgServer {
    const ACCOUNT: &'static str = "role";
    const SLEEP_2MS: &'static str = "SELECT pg_sleep(0.002)";

    fn binaries_available() -> Result<(), String> {
        PgServer::binaries_available()
    }
    fn start() -> io::Result<Self> {
        PgServer::start()
    }
    /// `log_connections = on`: the server log records each login.
    fn start_logging_logins() -> io::Result<Self> {
        PgServer::builder()
            .config_line("log_connections = on")
            .start()
    }
    fn login_log_len(&self) -> usize {
        file_len(self.log_path())
    }
    fn logins_since(&self, from: usize) -> Vec<String> {
        lines_since(self.log_path(), from, |l| {
            l.contains(&format!("connection authorized: user={} ", crate::PG_USER))
        })
    }
    fn url(&self) -> String {
        PgServer::url(self)
    }
    fn freeze_guard(&self) -> io::Result<Frozen> {
        PgServer::freeze_guard(self)
    }
    fn set_connection_limit(&self, limit: Option<u32>) -> io::Result<()> {
        PgServer::set_connection_limit(self, limit)
    }
    fn session_count(&self) -> io::Result<u32> {
        PgServer::session_count(self)
    }
    fn stop(&mut self) -> io::Result<()> {
        PgServer::stop(self)
    }
    fn start_again(&mut self) -> io::Result<()> {
        PgServer::start_again(self)
    }
}

/// The general query log, relative to the data directory (see
/// [`Server::start_logging_logins`] for [`MariaDbServer`]).
const MARIADB_GENERAL_LOG: &str = "general.log";

impl Server for MariaDbServer {
    const ACCOUNT: &'static str = "user";
    const SLEEP_2MS: &'static str = "DO SLEEP(0.002)";

    fn binaries_available() -> Result<(), String> {
        MariaDbServer::binaries_available()
    }
    fn start() -> io::Result<Self> {
        MariaDbServer::start()
    }
    /// The general query log records each login
    /// (`Connect pool_test@127.0.0.1 on pool_test using TCP/IP`; a refused
    /// login is logged as `Access denied for user 'pool_test'...`).
    fn start_logging_logins() -> io::Result<Self> {
        MariaDbServer::builder()
            .server_arg("--general-log=1")
            .server_arg(format!("--general-log-file={MARIADB_GENERAL_LOG}"))
            .start()
    }
    fn login_log_len(&self) -> usize {
        file_len(&self.data_dir().join(MARIADB_GENERAL_LOG))
    }
    fn logins_since(&self, from: usize) -> Vec<String> {
        let user = format!("{}@", crate::MARIADB_USER);
        lines_since(&self.data_dir().join(MARIADB_GENERAL_LOG), from, |l| {
            l.contains("Connect") && l.contains(&user)
        })
    }
    fn url(&self) -> String {
        MariaDbServer::url(self)
    }
    fn freeze_guard(&self) -> io::Result<Frozen> {
        MariaDbServer::freeze_guard(self)
    }
    fn set_connection_limit(&self, limit: Option<u32>) -> io::Result<()> {
        MariaDbServer::set_connection_limit(self, limit)
    }
    fn session_count(&self) -> io::Result<u32> {
        MariaDbServer::session_count(self)
    }
    fn stop(&mut self) -> io::Result<()> {
        MariaDbServer::stop(self)
    }
    fn start_again(&mut self) -> io::Result<()> {
        MariaDbServer::start_again(self)
    }
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

/// Polls `f` every 10 ms until it returns true or `timeout` passes; returns
/// its last answer.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
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

/// Serialises the tests of one test binary that freeze servers or count
/// threads: run side by side on a 2-core machine they would blur each
/// other's timing and thread counts. The scenarios that start a server take
/// it themselves.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
