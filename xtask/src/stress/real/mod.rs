//! The PostgreSQL and MariaDB/MySQL backends: crate pool-postgres's and
//! pool-mysql's managers against a server given with `--url`, or a throwaway
//! one that pool-testkit starts for `--local`.
//!
//! # How the invariants are checked on a real server
//!
//! * **Connection ids** are the server's: `pg_backend_pid()` (asked once per
//!   connection, right after it is opened) and `CONNECTION_ID()` (the
//!   handshake's thread id, which the driver keeps). The manager is wrapped
//!   in a [`TrackingManager`] that caches the id next to the connection and
//!   keeps a [`Ledger`](tracking::Ledger) of what it opened and closed. After a `--chaos`
//!   restart a new server may hand out the same ids again, so the number of
//!   restarts so far goes into the high 32 bits of the id (`1:4242`).
//! * **Open connections** are sampled about every 10 ms on a separate
//!   monitoring connection (directly to the server, never through the fault
//!   proxy): `pg_stat_activity` rows with the pool's own `application_name`
//!   (`xtask-stress-<pid>`), or `information_schema.PROCESSLIST` rows of the
//!   pool's user (other than the monitoring connection itself: with `--url`
//!   the user should be one that nothing else uses during the run). A
//!   session the pool has already closed but the server has not yet reaped
//!   (the close is asynchronous; through the proxy it takes a poll
//!   interval) is not counted against `max_size`: the pool closes a
//!   connection before its seat is free, so its own count cannot include
//!   it. Sessions the server shows that the pool has not opened yet (a
//!   connect in progress) are counted.
//! * **Clean sessions**: holders set `stress.owner` (PostgreSQL, a custom
//!   setting) or `@stress_owner` (MySQL, a user variable) and leave
//!   transactions open; each borrower first checks that neither the setting
//!   nor an open or failed transaction is visible (`now() =
//!   statement_timestamp()`, `@@in_transaction` on MariaDB).
//! * **After close** the monitoring connection polls for up to 5 s until the
//!   server shows no session of the pool, and the ledger must show every
//!   connection opened closed exactly once.
//!
//! # Chaos
//!
//! With `--chaos`, each event is one of (taken in a shuffled cycle, so that
//! a run sees every kind before any repeats): killed backends
//! (`pg_terminate_backend` / `KILL CONNECTION` of all or some of the pool's
//! sessions); with `--local`, a server restart (stop, then start again on
//! the same port and data directory); and with `--local`, network faults:
//! the pool then reaches the server through a pool-testkit
//! [`FaultProxy`], switched for one to two seconds to latency (10-100 ms
//! per chunk), a black hole, resets or refused connects, then back to
//! pass-through. A black hole ends with a reset of every proxied connection
//! (as a firewall that dropped its state would): the proxy discards bytes,
//! so the connections it black-holed can never recover, and without the
//! reset the server would keep their sessions open.

mod backend;
mod faults;
pub(super) mod mysql;
pub(super) mod postgres;
mod tracking;

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_core::url_params::redact_url;
use pool_core::ManageConnection;
use pool_testkit::FaultProxy;

use super::backend::OpError;
use super::{BackendKind, StressArgs};
use crate::util::Result;
use backend::{Admin, Real};
use faults::ServerWatch;
use tracking::{Ctx, Raw, TrackingManager};

/// How often the monitor asks the server for the pool's sessions.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// The shortest pause between two attempts to reconnect the monitor.
const MONITOR_RETRY: Duration = Duration::from_millis(50);
/// Name of the driver crates' process-wide worker threads (connects,
/// validations and resets under a time limit; they exit after idling
/// 30 s). Older versions of the crates named them `pool-postgres-io` and
/// `pool-mysql-io`.
const DEADLINE_THREADS: &str = "pool-io";
/// Connect timeout of the monitoring and set-up connections.
const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The name `--backend` gives a real database, for messages.
pub(super) fn label(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Postgres => "postgres",
        BackendKind::Mysql => "mysql",
        BackendKind::Sim => "sim",
    }
}

/// What differs between PostgreSQL and MySQL: the manager, the
/// monitoring connection, the throwaway server and the workload's SQL.
pub(super) trait Dialect: Send + Sync + Sized + 'static {
    /// The pool-postgres / pool-mysql manager.
    type Inner: ManageConnection + Clone;
    /// The monitoring connection (a plain driver connection).
    type Admin: Send + 'static;
    /// The pool-testkit server of `--local`.
    type Server: Send + pool_testkit::scenarios::Server + 'static;
    /// Names of the driver's process-wide helper threads.
    const HELPER_THREADS: &'static [&'static str];

    /// The server's id of a connection just opened.
    fn server_id(conn: &mut Raw<Self>) -> std::result::Result<u32, String>;
    /// Opens a monitoring connection.
    fn connect_admin(&self) -> std::result::Result<Self::Admin, String>;
    /// The server ids of the pool's sessions, as the server lists them.
    fn sessions(&self, admin: &mut Self::Admin) -> std::result::Result<Vec<u32>, String>;
    /// Terminates sessions; returns how many the server terminated.
    fn kill(&self, admin: &mut Self::Admin, ids: &[u32]) -> std::result::Result<u64, String>;
    /// Drops the scratch table.
    fn drop_table(admin: &mut Self::Admin, table: &str) -> std::result::Result<(), String>;
    /// Stops the throwaway server.
    fn stop(server: &mut Self::Server) -> io::Result<()>;
    /// Starts the throwaway server again.
    fn start_again(server: &mut Self::Server) -> io::Result<()>;
    /// Whether the throwaway server runs.
    fn is_running(server: &Self::Server) -> bool;

    /// `SELECT 1`.
    fn query(conn: &mut Raw<Self>) -> std::result::Result<(), OpError>;
    /// `BEGIN` and an insert into the scratch table.
    fn begin(conn: &mut Raw<Self>, table: &str) -> std::result::Result<(), OpError>;
    /// `COMMIT` or `ROLLBACK`.
    fn end(conn: &mut Raw<Self>, commit: bool) -> std::result::Result<(), OpError>;
    /// Sets the session variable naming the holder.
    fn set_owner(conn: &mut Raw<Self>, owner: &str) -> std::result::Result<(), OpError>;
    /// What the previous holder left in the session, if anything.
    fn session_state(
        conn: &mut Raw<Self>,
        check_trx: bool,
    ) -> std::result::Result<Option<String>, OpError>;
}

/// Quotes a string literal for SQL (`'` doubled; backslashes doubled
/// too, for MySQL).
fn quote(s: &str, backslashes: bool) -> String {
    let mut out = s.replace('\'', "''");
    if backslashes {
        out = out.replace('\\', "\\\\");
    }
    format!("'{out}'")
}

/// Where a run's server is and how it is reached.
struct Setup<S> {
    /// The pool's URL (through the proxy, if any).
    pool_url: String,
    /// The monitoring connection's URL (directly to the server).
    admin_url: String,
    /// What the report calls the server.
    place: String,
    server: Option<S>,
    proxy: Option<FaultProxy>,
}

/// Starts a throwaway server (and, with chaos, a fault proxy in front of
/// it) for `--local`, or takes `--url`.
fn setup<S>(
    args: &StressArgs,
    what: &str,
    start: impl FnOnce() -> io::Result<S>,
    addr: impl Fn(&S) -> std::net::SocketAddr,
    urls: impl Fn(&S, Option<std::net::SocketAddr>) -> (String, String),
) -> Result<Setup<S>> {
    if let Some(url) = &args.url {
        return Ok(Setup {
            pool_url: url.clone(),
            admin_url: url.clone(),
            place: format!("at {}", redact_url(url)),
            server: None,
            proxy: None,
        });
    }
    eprintln!("stress: starting a throwaway {what} server (pool-testkit)");
    let started = Instant::now();
    let server = start().map_err(|e| format!("cannot start a throwaway {what} server: {e}"))?;
    let proxy = if args.chaos {
        Some(
            FaultProxy::start(addr(&server))
                .map_err(|e| format!("cannot start the fault proxy: {e}"))?,
        )
    } else {
        None
    };
    let (pool_url, admin_url) = urls(&server, proxy.as_ref().map(FaultProxy::addr));
    let place = match &proxy {
        Some(p) => format!(
            "throwaway server at {}, pool through a fault proxy at {}, started in {}",
            addr(&server),
            p.addr(),
            crate::util::human(started.elapsed())
        ),
        None => format!(
            "throwaway server at {}, started in {}",
            addr(&server),
            crate::util::human(started.elapsed())
        ),
    };
    Ok(Setup {
        pool_url,
        admin_url,
        place,
        server: Some(server),
        proxy,
    })
}

/// The scratch table of this process.
fn scratch_table() -> String {
    format!("xtask_stress_{}", std::process::id())
}

/// Builds a real backend from its parts.
fn assemble<D: Dialect>(
    dialect: D,
    inner: D::Inner,
    ctx: Ctx,
    description: String,
    setup: Setup<D::Server>,
    max_size: u32,
) -> Real<D> {
    let ctx = Arc::new(ctx);
    Real {
        dialect,
        manager: TrackingManager {
            inner,
            ctx: ctx.clone(),
        },
        ctx,
        description,
        local: setup.server.is_some(),
        admin: parking_lot::Mutex::new(Admin {
            conn: None,
            last_attempt: None,
        }),
        menu: parking_lot::Mutex::new(Vec::new()),
        server_peak_raw: AtomicU64::new(0),
        server_lagging_max: AtomicU64::new(0),
        monitor_failures: AtomicU64::new(0),
        samples: AtomicU64::new(0),
        killed: AtomicU64::new(0),
        restarts: AtomicU64::new(0),
        restart_failures: AtomicU64::new(0),
        restart_ms_max: AtomicU64::new(0),
        max_size,
        watch: ServerWatch::default(),
        proxy: setup.proxy,
        server: setup.server.map(parking_lot::Mutex::new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote("worker-1", false), "'worker-1'");
        assert_eq!(quote("o'neil", false), "'o''neil'");
        assert_eq!(quote(r"a\b", true), r"'a\\b'");
    }
}
