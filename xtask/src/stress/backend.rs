//! What the stress run needs from a database: the [`Backend`] trait that the
//! simulated ([`super::sim`]) and real ([`super::real`]) databases implement.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use pool_core::ManageConnection;

/// The connection type of a backend's manager.
pub(super) type Conn<B> = <<B as Backend>::Manager as ManageConnection>::Connection;

/// An error from a workload operation: fatal ones mean the connection is gone.
#[derive(Debug)]
pub(super) struct OpError {
    /// The connection is unusable (the pool must close it).
    pub(super) fatal: bool,
    /// What went wrong, for the report's first few query errors.
    pub(super) message: String,
}

/// What the stress run needs from a database: a manager, a few operations on
/// a connection, the server's count of open connections, chaos and an audit.
pub(super) trait Backend: Send + Sync + 'static {
    /// The pool's connection manager.
    type Manager: ManageConnection;
    /// A one-line description for the report.
    fn describe(&self) -> String;
    /// A manager for the pool.
    fn manager(&self) -> Self::Manager;
    /// The connection's identity as the server knows it.
    fn conn_id(conn: &Conn<Self>) -> u64;
    /// A short query.
    fn query(conn: &mut Conn<Self>) -> std::result::Result<(), OpError>;
    /// `BEGIN`.
    fn begin(conn: &mut Conn<Self>) -> std::result::Result<(), OpError>;
    /// `COMMIT` (or `ROLLBACK` when `commit` is false).
    fn end(conn: &mut Conn<Self>, commit: bool) -> std::result::Result<(), OpError>;
    /// Sets a session variable naming the holder.
    fn set_owner(conn: &mut Conn<Self>, owner: &str) -> std::result::Result<(), OpError>;
    /// What a new borrower finds in the session: `Ok(None)` when it is as a
    /// fresh connection's (no transaction, no session variable set by the
    /// stress workload), `Ok(Some(what))` naming what a previous holder left
    /// behind, `Err` when the check itself failed (the connection broke).
    fn session_state(conn: &mut Conn<Self>) -> std::result::Result<Option<String>, OpError>;
    /// Connections of the pool open on the server now, as the server counts
    /// them (connections the pool has already closed but the server has not
    /// yet noticed excepted); None when the server could not be asked.
    fn server_open(&self) -> Option<usize>;
    /// The most connections open at once so far, if the backend tracks it
    /// exactly (the simulated server counts them; the real backends count
    /// the driver connections the pool held open at once).
    fn server_peak(&self) -> Option<usize>;
    /// Causes one random failure; returns its name, or None without chaos
    /// support. A failure that lasts a while may block until it has healed,
    /// or until `stop` is set.
    fn chaos(&self, rng: &mut fastrand::Rng, stop: &AtomicBool) -> Option<&'static str>;
    /// Ends every failure mode.
    fn heal(&self);
    /// The audit after the pool is closed and dropped: every connection closed
    /// exactly once, none used by two holders. Ok carries a short summary.
    fn audit_closed(&self) -> std::result::Result<String, String>;
    /// Waits until the server sees no open connection of the pool; false on
    /// timeout.
    fn wait_all_closed(&self, timeout: Duration) -> bool;
    /// Backend counters for the report.
    fn counters(&self) -> BTreeMap<&'static str, u64>;
    /// How long the monitor pauses between two samples of
    /// [`server_open`](Self::server_open) (a real server is asked with a query).
    fn sample_every(&self) -> Duration {
        Duration::ZERO
    }
    /// Names of process-wide helper threads that the backend's driver keeps
    /// after a pool is gone by design (they exit after idling a while): not
    /// counted as threads left running by the pool.
    fn helper_threads(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether a fail-fast `Error::Connect` is correct now, i.e. the
    /// database is really down. Backends that cannot tell accept it under
    /// chaos only.
    fn fail_fast_expected(&self, chaos: bool) -> bool {
        chaos
    }
    /// Verdicts the backend judges itself: (name, ok, detail, first messages).
    fn extra_verdicts(&self) -> Vec<(&'static str, bool, String, Vec<String>)> {
        Vec::new()
    }
}

/// Shows a connection id: the server's id, prefixed with the server's
/// generation (`2:1234`) for connections opened after a restart.
pub(super) fn show_id(id: u64) -> String {
    match id >> 32 {
        0 => id.to_string(),
        epoch => format!("{epoch}:{}", id & u64::from(u32::MAX)),
    }
}
