//! The connect failures the creator records, and the fail-fast rule that
//! reads them: when borrowers stop waiting for a database that is down.

use std::time::{Duration, Instant};

use crate::error::SharedError;
use crate::ConnectFailure;

/// Connect failures that mean "down" ([`ConnectFailure::means_down`]), in a
/// row, before borrowers fail fast: one failure is a blip (a login killed
/// in a restart, a refused connect while a server reboots), not an outage.
pub(super) const FAIL_FAST_FAILURES: u64 = 2;
/// ... spanning at least this long: a database that refused every connect
/// for a second is down; a shorter blip (a restart, a failover's switch) is
/// waited out. With the creator's backoff (50 ms doubling, jittered) the
/// verdict comes with the failure about 1.5 s into an outage.
pub(super) const FAIL_FAST_SPAN: Duration = Duration::from_secs(1);
/// A fail-fast verdict older than this is not repeated: the borrower waits
/// for the next connect attempt instead (within its own timeout), so a
/// database that came back is not reported down from an old failure.
pub(super) const FAIL_FAST_FRESH: Duration = Duration::from_millis(500);

/// The most recent connect failure and the failure streak.
#[derive(Default)]
pub(super) struct ConnectFailures {
    pub(crate) last: Option<SharedError>,
    /// Consecutive failed attempts; 0 after a success.
    pub(crate) streak: u64,
    /// What the manager made of the last failure.
    pub(crate) last_kind: Option<ConnectFailure>,
    /// When the last failure happened.
    pub(crate) last_at: Option<Instant>,
    /// Consecutive failures of kinds that mean "down", and when the first
    /// of them happened. A failure of another kind (the server answered)
    /// ends the run.
    pub(crate) down_streak: u64,
    pub(crate) down_since: Option<Instant>,
}

impl ConnectFailures {
    /// Records a failed connect.
    pub(crate) fn record(&mut self, error: SharedError, kind: ConnectFailure, now: Instant) {
        self.streak += 1;
        self.last = Some(error);
        self.last_kind = Some(kind);
        self.last_at = Some(now);
        if kind.means_down() {
            self.down_streak += 1;
            self.down_since.get_or_insert(now);
        } else {
            self.down_streak = 0;
            self.down_since = None;
        }
    }

    /// Records a successful connect; returns the failure streak it ends.
    pub(crate) fn clear(&mut self) -> u64 {
        let streak = self.streak;
        *self = ConnectFailures::default();
        streak
    }

    /// Whether the failures so far say the database is down: a login the
    /// server rejected, or repeated failures to reach it over a span.
    pub(crate) fn database_down(&self) -> bool {
        match self.last_kind {
            Some(ConnectFailure::Rejected) => true,
            Some(ConnectFailure::Unreachable) => {
                self.down_streak >= FAIL_FAST_FAILURES
                    && match (self.down_since, self.last_at) {
                        (Some(first), Some(last)) => last - first >= FAIL_FAST_SPAN,
                        _ => false,
                    }
            }
            _ => false,
        }
    }
}
