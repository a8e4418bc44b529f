//! The pool's vocabulary, shared by every module: [`State`] (a snapshot of
//! the counts) and [`CloseReason`] (why a connection was closed).

use std::fmt;

/// Why a connection was closed; shown in the debug log line that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[repr(u8)]
pub enum CloseReason {
    /// Idle for longer than `idle_timeout`, above `min_idle`.
    IdleTimeout,
    /// Reached its (randomly shortened) `max_lifetime`.
    MaxLifetime,
    /// Reported broken by `has_broken`, marked broken by its borrower, or
    /// returned while its borrower was panicking.
    Broken,
    /// Failed `is_valid` on borrow or keepalive.
    FailedValidation,
    /// `reset` failed or panicked when it came back.
    ResetFailed,
    /// Evicted by `soft_evict_all` or `retain`, or surplus after `resize`.
    Evicted,
    /// The pool was closed.
    PoolClosed,
    /// Vetoed by a checkout or checkin hook
    /// ([`ManageConnection::on_checkout`](crate::ManageConnection::on_checkout),
    /// [`on_checkin`](crate::ManageConnection::on_checkin)).
    Rejected,
}

/// The one table of close reasons: (reason, its words in logs, its label
/// in metrics). A reason's index in this table is its counter's index in
/// the pool's `closed` counts.
const CLOSE_REASONS: [(CloseReason, &str, &str); CloseReason::COUNT] = [
    (CloseReason::IdleTimeout, "idle timeout", "idle_timeout"),
    (CloseReason::MaxLifetime, "max lifetime", "max_lifetime"),
    (CloseReason::Broken, "broken", "broken"),
    (
        CloseReason::FailedValidation,
        "failed validation",
        "failed_validation",
    ),
    (CloseReason::ResetFailed, "reset failed", "reset_failed"),
    (CloseReason::Evicted, "evicted", "evicted"),
    (CloseReason::PoolClosed, "pool closed", "pool_closed"),
    (CloseReason::Rejected, "rejected by a hook", "rejected"),
];

impl CloseReason {
    /// How many reasons there are.
    pub(crate) const COUNT: usize = 8;

    /// This reason's index in [`CLOSE_REASONS`] (and in the pool's counts).
    #[inline]
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The reason at `index` (`None` past the table).
    pub(crate) fn from_index(index: usize) -> Option<CloseReason> {
        CLOSE_REASONS.get(index).map(|&(reason, ..)| reason)
    }

    /// The reason's label in metrics (`reason="idle_timeout"`).
    pub(crate) fn label(self) -> &'static str {
        CLOSE_REASONS[self.index()].2
    }
}

// The table lists every reason, in index order.
const _: () = {
    let mut i = 0;
    while i < CloseReason::COUNT {
        assert!(CLOSE_REASONS[i].0 as usize == i);
        i += 1;
    }
};

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(CLOSE_REASONS[self.index()].1)
    }
}

/// A snapshot of the pool's connections and waiters.
///
/// ```
/// # use pool_core::{ManageConnection, Pool};
/// # use std::time::Duration;
/// # struct M;
/// # impl ManageConnection for M {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn has_broken(&self, _: &mut ()) -> bool { false }
/// # }
/// let pool = Pool::builder().max_size(2).build(M)?;
/// let conn = pool.get()?;
/// let state = pool.state();
/// assert_eq!((state.total, state.active, state.idle), (2, 1, 1));
/// assert_eq!(state.to_string(), "total=2, active=1, idle=1, waiting=0");
/// # drop(conn);
/// # Ok::<(), pool_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct State {
    /// Open connections, idle and lent.
    pub total: u32,
    /// Connections waiting in the pool (including any being checked by the
    /// housekeeper).
    pub idle: u32,
    /// Connections lent to borrowers.
    pub active: u32,
    /// Connections their borrowers gave back that the pool is still
    /// resetting (or closing) in the background: neither lent nor yet idle.
    pub returning: u32,
    /// Connects and resets the pool gave up on after their time limit whose
    /// sessions may still be open: not counted in `total`, but they hold a
    /// place in `max_size` until they end (see
    /// [`ManageConnection::connect_limit`](crate::ManageConnection::connect_limit)).
    pub given_up: u32,
    /// Borrowers waiting for a connection.
    pub waiting: u32,
    /// The current `max_size`.
    pub max_size: u32,
    /// The current `min_idle`.
    pub min_idle: u32,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "total={}, active={}, idle={}, waiting={}",
            self.total, self.active, self.idle, self.waiting
        )?;
        if self.returning > 0 {
            write!(f, ", returning={}", self.returning)?;
        }
        if self.given_up > 0 {
            write!(f, ", given_up={}", self.given_up)?;
        }
        Ok(())
    }
}
