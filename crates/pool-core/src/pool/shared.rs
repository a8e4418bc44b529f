//! [`Inner`]: what the pool's handles, loans and background threads share.
//! Its fields are private to the `pool` module; each concern's methods live
//! in that concern's file (`acquire`, `release`, `control`, `report`, ...),
//! and the small accessors every concern needs live here.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use thread_local::ThreadLocal;

use crate::bag::{IDLE, IN_USE};
use crate::clock::Millis;
use crate::config::Config;
use crate::observe::events::HandleEvent;
use crate::observe::health::History;
use crate::observe::leak::LeakTracker;
use crate::observe::metrics::PoolCounters;
use crate::stamps::{Bag, Seat, FLAG_RETURNING};
use crate::sync::{
    AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Condvar, Lock as Mutex,
};
use crate::types::State;
use crate::ManageConnection;

use super::failures::ConnectFailures;
use super::thread_cache::LocalSeats;
use super::CLOSED;

/// Everything the pool shares between handles, lent connections and its
/// background threads.
pub(super) struct Inner<M: ManageConnection> {
    pub(super) name: Arc<str>,
    pub(super) manager: M,
    pub(super) config: Config,
    pub(super) bag: Bag<M::Connection>,
    /// `RUNNING`, `SUSPENDED` or `CLOSED`.
    pub(super) status: AtomicU8,
    /// Current max size (changed by `resize`).
    pub(super) max_size: AtomicUsize,
    /// Current min idle (clamped to max size).
    pub(super) min_idle: AtomicUsize,
    /// Open connections (seats with a connection). Changed only when one is
    /// opened or closed.
    pub(super) total: AtomicUsize,
    /// Seats held by work the pool gave up on: connects past
    /// `connect_limit`, background resets past `reset_limit`. Their sessions
    /// may still be open (or about to be), so they count against `max_size`
    /// until the work returns and the session is closed (invariant 2).
    pub(super) abandoned: AtomicUsize,
    /// Jobs on `pool-io` threads that reset or close a returned connection
    /// and have not finished: counted until the seat is available or vacant
    /// again, so that `close()` can wait for them to end (a seat's
    /// `FLAG_RETURNING` is cleared earlier, before its seat is released).
    pub(super) return_jobs: AtomicUsize,
    /// Connections closed younger than `YOUNG` (not counting a
    /// closing pool), and the reason of the latest (`CloseReason::index`):
    /// the creator caps its connects per second while these pile up.
    pub(super) young_closes: AtomicU64,
    pub(super) young_reason: AtomicU8,
    /// Connections `build` wants open before it returns (0 afterwards).
    pub(super) init_target: AtomicUsize,
    pub(super) next_id: AtomicU64,
    /// This pool's number (from `POOL_SEQ`), the key of `LAST_LOCAL`.
    pub(super) uid: u64,
    /// How long since its last use a connection is lent without
    /// validation, in coarse milliseconds (`alive_bypass_window`, computed
    /// once); `NEVER` when `test_on_check_out` is off.
    pub(super) bypass_ms: Millis,
    pub(super) local: ThreadLocal<LocalSeats>,
    pub(super) failures: Mutex<ConnectFailures>,
    /// A borrower failed fast (or found the verdict stale) since the last
    /// connect attempt: the creator probes again on its backoff, whatever
    /// `min_idle` says, so that the pool notices when the database is back.
    pub(super) wanted: AtomicBool,
    /// Connect attempts ended so far, and begun so far (for `build`'s wait).
    pub(super) attempts: AtomicU64,
    pub(super) attempts_begun: AtomicU64,
    /// Guards status changes that sleepers wait for (suspend, build).
    pub(super) status_lock: Mutex<()>,
    pub(super) status_cv: Condvar,
    /// Doorbells of the background threads (bounded(1): a pending ring
    /// coalesces further rings).
    pub(super) creator_bell: Sender<()>,
    pub(super) housekeeper_bell: Sender<()>,
    pub(super) threads: Mutex<Vec<JoinHandle<()>>>,
    /// Leak detection, when `leak_detection_threshold` is set.
    pub(super) leaks: Option<LeakTracker>,
    /// When the housekeeper plans to wake next (coarse clock): a loan that
    /// falls due earlier rings it.
    pub(super) housekeeper_next: AtomicU64,
    /// Counters of rare events.
    pub(super) stats: PoolCounters,
    /// Recent counter samples, for health verdicts.
    pub(super) history: Mutex<History>,
    /// The database's connection limit, when a driver told us (0: unknown).
    pub(super) server_capacity: AtomicU32,
    /// The user's event handler.
    pub(super) handler: Option<Arc<dyn HandleEvent>>,
    /// Whether resets run on a worker thread (setting, or the manager's say).
    pub(super) background_reset: bool,
    /// The manager's reset limit (coarse milliseconds) when resets run in
    /// the background: the housekeeper gives up a seat whose reset has run
    /// longer (see `reset_in_background`).
    pub(super) reset_watch: Option<Millis>,
    /// Whether a used connection goes to the background even while
    /// borrowers wait: its reset is watched, and the manager's own would
    /// hop to a worker anyway (`ManageConnection::reset_hands_off`).
    pub(super) reset_with_waiters: bool,
    /// This `Inner` itself, for work that must outlive a borrowed loan (a
    /// background reset, [`PooledConnection::into_owned`](crate::PooledConnection::into_owned)).
    pub(super) me: Weak<Inner<M>>,
}

impl<M: ManageConnection> Inner<M> {
    /// Open connections plus seats held by abandoned work: what counts
    /// against `max_size`.
    #[inline]
    pub(super) fn occupied(&self) -> usize {
        self.total.load(Ordering::SeqCst) + self.abandoned.load(Ordering::SeqCst)
    }

    /// Whether the pool holds more connections than it may (after `resize`
    /// shrank it) and this seat's connection should go: seats at or above the
    /// new size always, any seat while the total is still above it.
    #[inline]
    pub(super) fn over_size(&self, slot: &Seat<M::Connection>) -> bool {
        let max = self.max_size.load(Ordering::Relaxed);
        slot.index as usize >= max || self.total.load(Ordering::Relaxed) > max
    }

    /// Asks the creator for a connection if the pool has waiters or fewer
    /// than `min_idle` idle connections, and has room. (Slow paths only: it
    /// may count the idle seats.)
    pub(super) fn ring_creator_if_short(&self, waiting: usize) {
        let total = self.total.load(Ordering::Relaxed);
        let min_idle = self.min_idle.load(Ordering::Relaxed);
        if self.occupied() < self.max_size.load(Ordering::Relaxed)
            && (waiting > 0 || total < min_idle || self.idle_count() < min_idle)
        {
            self.ring_creator();
        }
    }

    pub(super) fn ring_creator(&self) {
        let _ = self.creator_bell.try_send(());
    }

    pub(super) fn ring_housekeeper(&self) {
        let _ = self.housekeeper_bell.try_send(());
    }

    pub(super) fn is_closed(&self) -> bool {
        self.status.load(Ordering::Acquire) == CLOSED
    }

    /// Counts seats.
    pub(super) fn state(&self) -> State {
        let (mut active, mut returning) = (0u32, 0u32);
        for i in 0..self.bag.capacity() {
            let slot = self.bag.seat(i);
            if slot.state_hint() == IN_USE {
                if slot.flags.load(Ordering::Relaxed) & FLAG_RETURNING != 0 {
                    returning += 1;
                } else {
                    active += 1;
                }
            }
        }
        let total = self.total.load(Ordering::Relaxed) as u32;
        let active = active.min(total);
        let returning = returning.min(total - active);
        State {
            total,
            active,
            returning,
            given_up: self.abandoned.load(Ordering::Relaxed) as u32,
            idle: total - active - returning,
            waiting: self.bag.waiting() as u32,
            max_size: self.max_size.load(Ordering::Relaxed) as u32,
            min_idle: self.min_idle.load(Ordering::Relaxed) as u32,
        }
    }

    /// Idle connections (seats `IDLE`).
    pub(super) fn idle_count(&self) -> usize {
        (0..self.bag.capacity())
            .filter(|&i| self.bag.seat(i).state_hint() == IDLE)
            .count()
    }
}
