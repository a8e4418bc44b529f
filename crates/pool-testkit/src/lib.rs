//! Test harness that starts throwaway database servers, plus a
//! fault-injecting TCP proxy.
//!
//! * [`PgServer`]: PostgreSQL (`initdb` + `postgres`) in a temporary directory.
//! * [`MariaDbServer`]: MariaDB (`mariadb-install-db` + `mariadbd`).
//! * [`PgBouncer`]: PgBouncer in front of a [`PgServer`].
//! * [`FaultProxy`]: a thread-based TCP proxy whose behaviour (latency, black
//!   hole, resets, refused connects) can be switched at run time.
//! * Faults on the servers themselves: `freeze_guard()` stops a whole server
//!   with `SIGSTOP` until its [`Frozen`] guard drops; `set_connection_limit`
//!   caps the test user's sessions with the server's own limit;
//!   `session_count` counts that user's sessions on the server.
//! * [`shared_pg`] / [`shared_mariadb`]: one lazily started server per test
//!   binary.
//! * [`scenarios`]: tests the driver crates share (a frozen server, the
//!   server's own connection limits, errors for bad URLs), generic over a
//!   [`scenarios::Driver`].
//!
//! Servers never touch the system instances: each one gets its own temporary
//! directory and a free port on 127.0.0.1. When the harness runs as root,
//! PostgreSQL and PgBouncer run as the `postgres` system user and MariaDB as
//! `mysql` (the temporary directory is handed over to that user).
//!
//! # Cleanup
//!
//! Dropping a server stops it (gracefully, then SIGKILL) and deletes its
//! directory, also during a panic unwind. In addition every server has a tiny
//! watchdog shell process that holds the read end of a pipe whose write end
//! only the test process owns: when the test process exits for any reason
//! (including `exit`, abort or SIGKILL, when statics are never dropped), the
//! watchdog sees EOF, stops the server, kills leftover processes whose working
//! directory is inside the temporary directory, releases PostgreSQL's System V
//! shared memory and deletes the directory. No polling is involved.
//!
//! # Skipping when binaries are missing
//!
//! ```no_run
//! use pool_testkit::PgServer;
//!
//! #[test]
//! fn connects() {
//!     pool_testkit::require_or_skip!(PgServer::binaries_available());
//!     let pg = PgServer::start().unwrap();
//!     assert_eq!(pg.run_sql("SELECT 1").unwrap(), "1");
//! }
//! ```
//!
//! When the environment variable `CI` is set (and not `0`/`false`), missing
//! binaries are a test failure instead of a skip.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod faults;
mod mariadb;
mod pg;
mod pgbouncer;
mod proxy;
pub mod scenarios;
mod tls;
mod util;

use std::io;
use std::sync::OnceLock;

pub use faults::Frozen;
pub use mariadb::{
    MariaDbServer, MariaDbServerBuilder, MARIADB_DATABASE, MARIADB_PASSWORD, MARIADB_USER,
};
pub use pg::{PgServer, PgServerBuilder, PG_DATABASE, PG_PASSWORD, PG_SUPERUSER, PG_USER};
pub use pgbouncer::{PgBouncer, PgBouncerAuth, PgBouncerBuilder, PoolMode};
pub use proxy::{FaultMode, FaultProxy};
pub use tls::TestCertificates;
pub use util::{free_port, processes_in_dir};

/// Returns true when the environment variable `CI` is set to something other
/// than an empty string, `0` or `false`.
pub fn is_ci() -> bool {
    match std::env::var("CI") {
        Ok(v) => !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"),
        Err(_) => false,
    }
}

/// Decides whether a test that needs external binaries should run.
///
/// Returns `true` for `Ok(())`. For `Err(msg)` it prints a skip message naming
/// the current test and returns `false`, unless [`is_ci`] is true, in which
/// case it panics with `msg`.
pub fn should_run(probe: Result<(), String>) -> bool {
    match probe {
        Ok(()) => true,
        Err(msg) => {
            let current = std::thread::current();
            let test = current.name().unwrap_or("<unnamed test>");
            if is_ci() {
                panic!("{test}: {msg} (CI is set, so this is an error instead of a skip)");
            }
            eprintln!("SKIPPED {test}: {msg}");
            false
        }
    }
}

/// Returns early from the enclosing test (which must return `()`) when the
/// probe fails, printing a skip message; panics instead when `CI` is set.
/// See [`should_run`].
///
/// ```no_run
/// pool_testkit::require_or_skip!(pool_testkit::MariaDbServer::binaries_available());
/// ```
#[macro_export]
macro_rules! require_or_skip {
    ($probe:expr) => {
        if !$crate::should_run($probe) {
            return;
        }
    };
}

static SHARED_PG: OnceLock<Result<PgServer, String>> = OnceLock::new();
static SHARED_MARIADB: OnceLock<Result<MariaDbServer, String>> = OnceLock::new();

/// A PostgreSQL server shared by all tests of the current process, started
/// on first use (default settings). It lives until the process exits, when
/// the watchdog stops it and removes its directory within about a second.
///
/// Tests must not change global state they do not own on it (use their own
/// tables, databases or roles); lifecycle methods need `&mut` and are thus
/// unavailable. A start-up failure is remembered and returned to every caller.
pub fn shared_pg() -> io::Result<&'static PgServer> {
    match SHARED_PG.get_or_init(|| PgServer::start().map_err(|e| e.to_string())) {
        Ok(server) => Ok(server),
        Err(msg) => Err(io::Error::other(msg.clone())),
    }
}

/// A MariaDB server shared by all tests of the current process; see [`shared_pg`].
pub fn shared_mariadb() -> io::Result<&'static MariaDbServer> {
    match SHARED_MARIADB.get_or_init(|| MariaDbServer::start().map_err(|e| e.to_string())) {
        Ok(server) => Ok(server),
        Err(msg) => Err(io::Error::other(msg.clone())),
    }
}
