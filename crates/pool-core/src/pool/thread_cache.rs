//! Each thread's cache of the seats it returned most recently, in front of
//! the shared scan: the borrow path's first stop ([`Inner::local`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crate::observe::metrics::Shard;
use crate::sync::Lock as Mutex;
use crate::ManageConnection;

use super::shared::Inner;

/// Entries in a thread's cache of recently returned seats.
pub(super) const LOCAL_SEATS: usize = 4;
/// An empty entry in the thread cache.
pub(super) const NO_SEAT: usize = 0;

/// A thread's most recently returned seats, newest first.
///
/// Only its own thread writes it (relaxed loads and stores, no locked
/// instruction); atomics rather than `Cell`s so that a metrics snapshot can
/// read every thread's shard.
pub(super) struct LocalSeats {
    /// Addresses of seats (`&Seat<M::Connection>` of this thread's pool),
    /// or `NO_SEAT`. An address rather than an index: seats never move
    /// (`bag`), and the borrow then reads the seat's state straight away
    /// instead of first finding its bucket.
    pub(super) seats: [AtomicUsize; LOCAL_SEATS],
    /// Where this thread starts scanning the shared seats, so that threads
    /// do not all contend for seat 0.
    pub(super) scan_from: u32,
    /// This thread's number, for leak reports.
    /// Read on every borrow with leak detection on; written only in
    /// `local_slow`, when a new thread takes this entry over.
    pub(super) thread_no: AtomicU64,
    /// The thread this entry belongs to. The `thread_local` crate hands a
    /// dead thread's entry to the next new thread (it reuses thread ids),
    /// so `local_slow` compares and, for a new owner, takes a new thread
    /// number: leak reports then name the thread that really borrowed.
    /// (The entry still has one writer at a time: its old owner is gone.)
    pub(super) owner: Mutex<Option<std::thread::ThreadId>>,
    /// This thread's metrics (when metrics are on).
    pub(super) shard: Option<Box<Shard>>,
    /// When the fast path's failed validation started, for the slow path
    /// that follows it at once: the borrower's wait began then
    /// (`Budget::Fresh`). Touched only on those cold paths.
    pub(super) fast_start: Mutex<Option<Instant>>,
}

/// Numbers pools, for [`LAST_LOCAL`]: never 0, never reused.
pub(super) static POOL_SEQ: AtomicU64 = AtomicU64::new(1);

std::thread_local! {
    /// This thread's most recently used `LocalSeats`: (pool number, pointer
    /// to that pool's entry for this thread). A one-entry cache in front of
    /// the pool's `ThreadLocal`, whose lookup is an out-of-line call: a
    /// thread that borrows from one pool finds its seats with one
    /// thread-local load and a compare. No destructor, so access never
    /// checks for one.
    static LAST_LOCAL: std::cell::Cell<(u64, *const LocalSeats)> =
        const { std::cell::Cell::new((0, std::ptr::null())) };
}

/// Spreads threads' scan starting points.
#[cfg(not(pool_loom))]
pub(super) static SCAN_SEQ: AtomicUsize = AtomicUsize::new(0);
/// Numbers the threads that use a pool (for leak reports).
pub(super) static THREAD_SEQ: AtomicUsize = AtomicUsize::new(1);

impl LocalSeats {
    pub(super) fn new(metrics: bool) -> Self {
        LocalSeats {
            seats: std::array::from_fn(|_| AtomicUsize::new(NO_SEAT)),
            // Consecutive threads start 3 seats apart: in a small pool each
            // finds its own seat first instead of all racing for seat 0.
            // (Under loom, 0: the models need every execution alike.)
            #[cfg(not(pool_loom))]
            scan_from: SCAN_SEQ.fetch_add(1, Ordering::Relaxed).wrapping_mul(3) as u32,
            #[cfg(pool_loom)]
            scan_from: 0,
            thread_no: AtomicU64::new(0),
            owner: Mutex::new(None),
            shard: metrics.then(|| Box::new(Shard::new())),
            fast_start: Mutex::new(None),
        }
    }

    /// Records the seat at address `seat` as the newest entry.
    #[inline]
    pub(super) fn push(&self, seat: usize) {
        if self.seats[0].load(Ordering::Relaxed) == seat {
            return;
        }
        let mut carry = seat;
        for entry in &self.seats {
            let old = entry.load(Ordering::Relaxed);
            entry.store(carry, Ordering::Relaxed);
            carry = old;
            if carry == seat || carry == NO_SEAT {
                break;
            }
        }
    }
}

impl<M: ManageConnection> Inner<M> {
    /// This thread's seat cache and metrics shard for this pool.
    #[inline]
    pub(super) fn local(&self) -> &LocalSeats {
        let (uid, ptr) = LAST_LOCAL.with(|last| last.get());
        if uid == self.uid {
            // SAFETY: `LAST_LOCAL` is this thread's, and `uid` numbers one
            // pool for the life of the process, so `ptr` was stored by
            // `local_slow` on this thread for this pool: it points at this
            // thread's entry in `self.local`. `ThreadLocal` never moves or
            // frees an entry before it is dropped itself, which cannot
            // happen while `&self` is borrowed.
            return unsafe { &*ptr };
        }
        self.local_slow()
    }

    #[cold]
    pub(super) fn local_slow(&self) -> &LocalSeats {
        let local = self.local.get_or(|| LocalSeats::new(self.config.metrics));
        let me = std::thread::current().id();
        let mut owner = local.owner.lock();
        if *owner != Some(me) {
            *owner = Some(me);
            let number = THREAD_SEQ.fetch_add(1, Ordering::Relaxed) as u64;
            local.thread_no.store(number, Ordering::Relaxed);
            if let Some(leaks) = &self.leaks {
                leaks.register_thread(number);
            }
        }
        drop(owner);
        LAST_LOCAL.with(|last| last.set((self.uid, local as *const LocalSeats)));
        local
    }
}
