// Over 800 lines: the bag's state table, memory-ordering argument and seat type belong
// together for review; issue 19 plans bag/{mod,seat,waiters,spin,buckets}.rs.
//! The concurrent bag: the seats that hold connections, their atomic states,
//! and the fair hand-off of returned connections to waiting borrowers.
//!
//! # Seats
//!
//! The bag is an array of *seats* ([`Slot`]). A seat holds at most one
//! connection and never moves: seats live in buckets that are allocated as the
//! pool grows (by [`Pool::resize`](crate::Pool::resize)) and freed only when the
//! bag is dropped, so a seat index or a `&Slot` stays valid for the bag's whole
//! life. Borrowing takes nothing out of any list: it is one compare-and-swap of
//! the seat's state.
//!
//! | state      | connection in the seat | who may touch the connection                    |
//! |------------|------------------------|-------------------------------------------------|
//! | `VACANT`   | none                   | nobody; the creator may claim the seat          |
//! | `IDLE`     | yes                    | nobody; anyone may claim it by CAS              |
//! | `IN_USE`   | yes                    | the borrower that claimed it (or was handed it) |
//! | `RESERVED` | yes, or being opened   | the housekeeper or creator that claimed it      |
//!
//! Transitions out of `IDLE` and `VACANT` are compare-and-swaps with `Acquire`
//! ordering: the winner becomes the seat's exclusive owner and sees everything
//! the previous owner wrote to the connection. Transitions into `IDLE` and
//! `VACANT` are stores by the owner with (at least) `Release` ordering, which
//! publish its writes. Only the owner of an `IN_USE` or `RESERVED` seat ever
//! writes the state, so those transitions need no CAS. `VACANT` is HikariCP's
//! "removed": the connection is gone, and the seat can be filled again.
//!
//! # Hand-off
//!
//! A borrower that finds no idle seat registers in a FIFO queue of
//! [`Waiter`]s and keeps re-scanning for a short while (spinning, then
//! yielding); before it parks until its deadline it fences and re-scans once
//! more, so it cannot miss a seat made idle while it was registering.
//!
//! Fairness is *bounded overtaking*. While no waiter has waited longer than
//! the limit (`BARGE_FOR`, 200 µs), a returning owner makes its seat `IDLE`
//! and wakes the oldest waiter to compete for it, and newcomers may take idle
//! seats ahead of waiters: a thread that is running keeps connections moving
//! instead of handing each one to a thread the scheduler has not run yet (the
//! convoy that made strict hand-off 10× slower than r2d2 with 8 threads on 4
//! connections). Once the oldest waiter has waited past the limit it sets
//! `starving`: from then on newcomers queue, and a returning owner hands its
//! seat, still `IN_USE`, straight to the oldest waiter (its state word is set
//! to the seat index with one CAS, then the thread is unparked), so the
//! connection never passes through `IDLE` and nobody can overtake. The flag
//! is cleared, under the queue lock, when the waiter next in line has not
//! waited that long. No wait is lost either way: a waiter that leaves the
//! queue passes a wake-up on to the next in line, in case it was meant for it.
//!
//! The race between "a waiter registers" and "an owner makes its seat idle" is
//! a Dekker pattern, closed with a fence on both sides: the waiter increments
//! the waiter count, fences, then loads seat states; the owner stores `IDLE`,
//! fences, then loads the count. The fence is asymmetric where the kernel
//! allows (`sync::light_fence` on the owner's hot path, a process-wide
//! `membarrier` on the waiter's cold path), `SeqCst` fences otherwise. The two fences are ordered one
//! before the other, and the side whose fence comes second sees the other's
//! store, so either the waiter's re-scan finds the idle seat or the owner sees
//! the waiter (and wakes it, or takes the seat back and hands it over).
//!
//! A waiter that times out cancels with a CAS `WAITING → CANCELLED`; a hand-off
//! does `WAITING → seat`. Exactly one of the two wins, so a connection handed
//! over at the very moment its waiter gives up is never lost: the loser of the
//! race either takes the seat anyway (the waiter) or offers it to the next
//! waiter (the owner).
//!
//! Nothing spins without bound. A waiter spins, then yields, for at most
//! `SPIN_FOR` (50 µs: short loans come back within it, and an oversubscribed
//! machine keeps every borrower runnable) and then parks; when recent waits
//! were longer than that (loans that span a database round trip), it spins
//! only `SHORT_SPIN` (2 µs), leaving the CPU to the threads it waits for;
//! an owner's hand-off loop only repeats when a new waiter registered during
//! the very instructions it was executing.

use std::collections::VecDeque;
use std::time::Duration;

use crate::sync::{heavy_fence, light_fence, Ordering, Thread, UnsafeCell};
use crate::sync::{lock, thread, Arc, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Mutex};

/// No connection in the seat.
pub(crate) const VACANT: u8 = 0;
/// A connection waits in the seat; anyone may claim it.
pub(crate) const IDLE: u8 = 1;
/// The connection is lent to a borrower.
pub(crate) const IN_USE: u8 = 2;
/// The housekeeper or the creator holds the seat for exclusive work.
pub(crate) const RESERVED: u8 = 3;

/// Seat flag: close this connection instead of lending it again.
pub(crate) const FLAG_EVICT: u8 = 1;
/// Seat flag: given back by its borrower, the connection is being reset or
/// closed on a `pool-io` thread (the seat is `IN_USE`, but not lent).
pub(crate) const FLAG_RETURNING: u8 = 4;
/// Seat flag: its borrower closed the connection (`mark_broken`, or a
/// panic): not a connection that "died young" for the connect-storm cap.
pub(crate) const FLAG_BORROWER_CLOSED: u8 = 8;

/// One seat of the bag.
///
/// The connection lives in `conn`, accessed only by the seat's owner as
/// defined by `state` (see the module docs). The metadata fields are atomics so
/// the housekeeper can read the deadlines of seats it does not own; they are
/// written only by the owner and read with `Relaxed` ordering, because a stale
/// value only delays a housekeeping decision by one round.
///
/// Aligned to 128 bytes (two cache lines, the unit the x86-64 adjacent-line
/// prefetcher moves) so that two threads working on neighbouring seats never
/// write to the same line: without it, two threads each cycling their own
/// connection slowed each other down through false sharing.
#[repr(align(128))]
pub(crate) struct Slot<C> {
    /// `VACANT`, `IDLE`, `IN_USE` or `RESERVED`.
    pub(crate) state: AtomicU8,
    /// `FLAG_EVICT`; set by anyone, cleared by the owner when it fills the seat.
    pub(crate) flags: AtomicU8,
    /// The seat's position in the bag.
    pub(crate) index: u32,
    /// The connection's id (unique within the pool), 0 while vacant.
    pub(crate) id: AtomicU64,
    /// Coarse-clock time the connection was opened.
    pub(crate) created: AtomicU64,
    /// Coarse-clock time after which the connection is retired (max lifetime,
    /// already shortened by its random variance).
    pub(crate) retire_at: AtomicU64,
    /// Coarse-clock time the connection last came back (or was opened).
    pub(crate) last_used: AtomicU64,
    /// Coarse-clock time of the last keepalive check.
    pub(crate) checked: AtomicU64,
    /// Coarse-clock time the connection was lent; `u64::MAX` ("never")
    /// between loans, so a seat on its way to a borrower (handed over, not
    /// yet stamped) never looks like an old loan to leak detection. Leak
    /// detection sets the top bit (`leak::REPORTED`) of the stamp of the
    /// loan it reported, with one CAS on the stamp, so the mark can only
    /// land on that loan.
    pub(crate) lent_at: AtomicU64,
    /// Where it was borrowed: a `&'static Location` (leak detection).
    pub(crate) site: AtomicPtr<std::panic::Location<'static>>,
    /// Which thread borrowed it: the pool's number for that thread.
    pub(crate) borrower: AtomicU64,
    /// Coarse-clock time a watched background reset began (never 0), or 0
    /// when none is running. The resetting job and the housekeeper race to
    /// swap it back to 0: the job when the reset returns, the housekeeper
    /// once the manager's reset limit has passed. The winner owns the seat
    /// (see `Inner::reset_watched`).
    pub(crate) reset_since: AtomicU64,
    /// The connection itself; `Some` in every state but `VACANT`.
    conn: UnsafeCell<Option<C>>,
}

/// `reset_since` while a watched reset is being given up (see
/// [`Slot::give_up_watch`]); never a clock reading.
pub(crate) const GIVING_UP: u64 = u64::MAX - 1;
/// `reset_since` once the giver-up has handed the seat back to the
/// resetting thread ([`Slot::hand_back`]).
pub(crate) const GIVEN_UP: u64 = u64::MAX;

impl<C> Slot<C> {
    fn new(index: u32) -> Self {
        Slot {
            state: AtomicU8::new(VACANT),
            flags: AtomicU8::new(0),
            index,
            id: AtomicU64::new(0),
            created: AtomicU64::new(0),
            retire_at: AtomicU64::new(0),
            last_used: AtomicU64::new(0),
            checked: AtomicU64::new(0),
            lent_at: AtomicU64::new(u64::MAX),
            site: AtomicPtr::new(std::ptr::null_mut()),
            borrower: AtomicU64::new(0),
            reset_since: AtomicU64::new(0),
            conn: UnsafeCell::new(None),
        }
    }

    /// Claims an idle seat. On success the caller owns the seat (`IN_USE`).
    #[inline]
    pub(crate) fn try_claim(&self, to: u8) -> bool {
        // A plain load first: a seat that is visibly taken costs a shared read
        // instead of a failed CAS, which would take the cache line exclusively.
        // (A waiter's re-scan is one side of the Dekker pattern described in
        // the module docs: the waiter issues the fence before scanning.)
        self.state.load(Ordering::Relaxed) == IDLE
            && self
                .state
                .compare_exchange(IDLE, to, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
    }

    /// Claims a vacant seat for filling (`RESERVED`).
    pub(crate) fn try_claim_vacant(&self) -> bool {
        self.state.load(Ordering::Relaxed) == VACANT
            && self
                .state
                .compare_exchange(VACANT, RESERVED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Starts a watched background reset on a seat the caller owns, whose
    /// connection it has taken out (`take`): from now until
    /// [`end_watch`](Self::end_watch), the seat may be given up by
    /// [`give_up_watch`](Self::give_up_watch), so the caller must not touch
    /// it. Returns the stamp to pass to both (`now`, or 1 if `now` is 0).
    pub(crate) fn begin_watch(&self, now: u64) -> u64 {
        let since = now.max(1);
        // Release: the `take` above happens before a housekeeper that wins
        // `give_up_watch` (Acquire) frees the seat.
        self.reset_since.store(since, Ordering::Release);
        since
    }

    /// Ends the watched reset stamped `since`. True: the caller owns the
    /// seat again (and puts the connection back). False: the seat was given
    /// up meanwhile and belongs to someone else now; the caller keeps only
    /// the connection, which was counted as closed, and must drop it.
    pub(crate) fn end_watch(&self, since: u64) -> bool {
        // AcqRel: pairs with `give_up_watch`; whichever CAS succeeds first
        // decides, and the loser leaves the seat alone.
        self.reset_since
            .compare_exchange(since, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Gives up the watched reset stamped `since` (read from `reset_since`
    /// and found overdue). True: the caller may count the connection closed
    /// and must then call [`hand_back`](Self::hand_back); it must not free
    /// the seat, which goes back to the resetting thread: that thread drops
    /// the connection when its reset returns and only then frees the seat,
    /// so a replacement never opens while the given-up session may still
    /// be open (invariant 2). False: the reset ended first.
    ///
    /// Comparing the stamp alone is enough: the seat is not freed before
    /// the watched reset returns, so no later reset of it can be under way.
    pub(crate) fn give_up_watch(&self, since: u64) -> bool {
        (since != 0 && since < GIVING_UP)
            && self
                .reset_since
                .compare_exchange(since, GIVING_UP, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Ends the giver-up's part (after `give_up_watch` returned true): the
    /// resetting thread, waiting in [`wait_given_up`](Self::wait_given_up),
    /// owns the seat again.
    pub(crate) fn hand_back(&self) {
        // Release: the giver-up's reads of the seat happen before the
        // resetting thread frees it.
        self.reset_since.store(GIVEN_UP, Ordering::Release);
    }

    /// On the resetting thread after `end_watch` failed: waits until the
    /// giver-up has handed the seat back (a few instructions, no I/O, on its
    /// side), then owns the seat again, without its connection.
    pub(crate) fn wait_given_up(&self) {
        while self.reset_since.load(Ordering::Acquire) != GIVEN_UP {
            crate::sync::spin_yield();
        }
        self.reset_since.store(0, Ordering::Relaxed);
    }

    /// Puts a connection into a seat the caller owns.
    ///
    /// # Safety
    /// The caller owns the seat: it claimed it (`RESERVED` or `IN_USE`) and
    /// has not released it.
    pub(crate) unsafe fn put(&self, conn: C) {
        // SAFETY: the caller owns the seat (this function's contract), so no
        // other thread reads or writes `conn` until the owner releases the
        // seat with a Release store or a hand-off CAS.
        self.conn.with_mut(|p| unsafe { *p = Some(conn) });
    }

    /// Takes the connection out of a seat the caller owns.
    ///
    /// # Safety
    /// The caller owns the seat (`IN_USE` or `RESERVED`, claimed by it).
    pub(crate) unsafe fn take(&self) -> Option<C> {
        // SAFETY: as for `put`, ownership of the seat gives exclusive access.
        self.conn.with_mut(|p| unsafe { (*p).take() })
    }

    /// Runs `f` on the connection in a seat the caller owns.
    ///
    /// # Safety
    /// The caller owns the seat, and `f` does not release it.
    pub(crate) unsafe fn with_conn<R>(&self, f: impl FnOnce(Option<&mut C>) -> R) -> R {
        // SAFETY: as for `put`; the `&mut C` does not escape `f`.
        self.conn.with_mut(|p| f(unsafe { (*p).as_mut() }))
    }

    /// A raw pointer to the connection cell, for `PooledConnection`'s `Deref`.
    #[cfg(not(pool_loom))]
    #[inline]
    pub(crate) fn conn_ptr(&self) -> *mut Option<C> {
        self.conn.get()
    }
}

/// Seats in the first bucket; bucket `b` holds `BASE << b` seats.
const BASE: usize = 16;
/// Enough buckets for `MAX_SIZE_LIMIT` seats: 16 · (2¹³ − 1) ≥ 65,536.
const BUCKETS: usize = 13;

/// Which bucket and which offset in it hold seat `index`.
#[inline]
fn locate(index: usize) -> (usize, usize) {
    let j = index / BASE + 1;
    let bucket = (usize::BITS - 1 - j.leading_zeros()) as usize;
    (bucket, index - BASE * ((1 << bucket) - 1))
}

/// What ended a [`Bag::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// The waiter owns this seat (`IN_USE`).
    Got(usize),
    /// The deadline passed.
    TimedOut,
    /// The pool was closed.
    Closed,
    /// The pool gave up on the database (fail fast).
    Failed,
}

/// Waiter state: still waiting.
const W_WAITING: usize = 0;
/// Waiter state: gave up (timeout), and was or will be removed from the queue.
const W_CANCELLED: usize = 1;
/// Waiter state: woken because the pool closed.
const W_CLOSED: usize = 2;
/// Waiter state: woken because the database is down (fail fast).
const W_FAILED: usize = 3;
/// Waiter state: `W_HANDED + i` means seat `i` was handed over.
const W_HANDED: usize = 4;

/// How long a waiter stays awake (spinning, then yielding its CPU) before it
/// parks. A loan that comes back within this time reaches the waiter without
/// a futex wake-up and, on a machine with more threads than cores, without
/// the waiter losing its place in the scheduler; a longer wait costs the
/// waiter at most this much CPU before it sleeps.
#[cfg(not(pool_loom))]
const SPIN_FOR: std::time::Duration = std::time::Duration::from_micros(50);

/// How long the oldest waiter may be overtaken by newcomers before returned
/// seats go to waiters first. Long enough that a thread running on a CPU
/// keeps reusing connections (no convoy of hand-offs to threads that are
/// not running), short against any `connection_timeout`.
#[cfg(not(pool_loom))]
const BARGE_FOR: Duration = Duration::from_micros(200);
#[cfg(pool_loom)]
const BARGE_FOR: Duration = Duration::ZERO;

/// The registration time of a waiter (`None` under loom).
#[inline]
fn now() -> Option<std::time::Instant> {
    #[cfg(not(pool_loom))]
    return Some(std::time::Instant::now());
    #[cfg(pool_loom)]
    return None;
}

/// How long a waiter spins when recent waits were longer than `SPIN_FOR`
/// (a database round trip, say): spinning would only take CPU from the
/// threads (and the database server) the waiter is waiting for.
#[cfg(not(pool_loom))]
const SHORT_SPIN: std::time::Duration = std::time::Duration::from_micros(2);

/// One step of a waiter's spinning phase: a few pause instructions at first,
/// then yields. Returns `false` once the phase is over (the waiter parks).
#[inline]
fn spin_on(spins: &mut u32, until: Option<std::time::Instant>) -> bool {
    let Some(until) = until else { return false };
    *spins += 1;
    if *spins <= 4 {
        for _ in 0..(1 << *spins) {
            std::hint::spin_loop();
        }
        return true;
    }
    if std::time::Instant::now() >= until {
        return false;
    }
    thread::yield_now();
    true
}

/// One waiting borrower.
struct Waiter {
    /// `W_WAITING`, then exactly one CAS to a final state.
    state: AtomicUsize,
    /// The thread to unpark.
    thread: Thread,
    /// When it registered (`None` under loom, which has no clock).
    since: Option<std::time::Instant>,
}

/// How long waiters may be overtaken: see [`Bag::starving`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fairness {
    /// Newcomers may take idle seats ahead of waiters until the oldest
    /// waiter has waited this long; then seats go strictly to waiters,
    /// oldest first, until no waiter has waited that long.
    BargeFor(Duration),
    /// Waiters are woken to compete but never get priority (loom models
    /// this mode, and `BargeFor(0)`, strict FIFO, which is the pool's bag
    /// under loom).
    #[cfg_attr(not(pool_loom), allow(dead_code))]
    Barge,
}

impl Waiter {
    /// Whether this waiter has waited long enough to stop newcomers.
    fn starves(&self, fairness: Fairness) -> bool {
        match (fairness, self.since) {
            (Fairness::Barge, _) => false,
            (Fairness::BargeFor(limit), Some(since)) => since.elapsed() >= limit,
            (Fairness::BargeFor(_), None) => true,
        }
    }
}

/// The bag: seats plus the waiter queue.
pub(crate) struct Bag<C> {
    /// Bucket pointers; a bucket, once published, is never moved or freed
    /// before the bag is dropped.
    buckets: [AtomicPtr<Slot<C>>; BUCKETS],
    /// Seats allocated so far. Stored with `Release` after the bucket pointer,
    /// loaded with `Acquire` before indexing.
    capacity: AtomicUsize,
    /// Serialises growth (rare: build and resize).
    grow: Mutex<()>,
    /// Borrowers waiting for a seat, oldest first.
    queue: Mutex<VecDeque<Arc<Waiter>>>,
    /// The queue's length, readable without the lock: the returner's fast
    /// check. Changed only under the queue lock, read with `SeqCst`.
    waiting: AtomicUsize,
    /// Set (once, for good) by `wake_all(true)` before it drains the queue, so
    /// that a borrower registering just after the drain still sees the close.
    closed: AtomicU8,
    /// 1 while some waiter has waited longer than the fairness limit: then
    /// returned seats go straight to the oldest waiter and newcomers queue.
    /// 0 otherwise: newcomers may take idle seats ahead of waiters (which
    /// are woken to compete). Set by a waiter, cleared under the queue lock
    /// when the oldest waiter no longer starves.
    starving: AtomicU8,
    /// The overtaking policy.
    fairness: Fairness,
    /// A moving average of how long recent waits lasted, in microseconds
    /// (relaxed: a hint). Waiters spin for `SPIN_FOR` only while it is
    /// shorter than that.
    typical_wait_us: AtomicU64,
}

// SAFETY: the bag owns its `Slot<C>`s; a connection is only ever accessed by
// the one thread that owns its seat, and moves between threads with the seat,
// so `C: Send` is all that is needed for the bag to be shared and sent.
unsafe impl<C: Send> Send for Bag<C> {}
// SAFETY: as above; every shared access goes through atomics or a mutex.
unsafe impl<C: Send> Sync for Bag<C> {}

impl<C> Bag<C> {
    /// An empty bag with at least `capacity` seats and the pool's fairness
    /// policy.
    pub(crate) fn new(capacity: usize) -> Self {
        Self::with_fairness(capacity, Fairness::BargeFor(BARGE_FOR))
    }

    /// An empty bag with at least `capacity` seats.
    pub(crate) fn with_fairness(capacity: usize, fairness: Fairness) -> Self {
        crate::sync::init_fences();
        let bag = Bag {
            buckets: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            capacity: AtomicUsize::new(0),
            grow: Mutex::new(()),
            queue: Mutex::new(VecDeque::new()),
            waiting: AtomicUsize::new(0),
            closed: AtomicU8::new(0),
            starving: AtomicU8::new(0),
            fairness,
            typical_wait_us: AtomicU64::new(0),
        };
        bag.ensure_capacity(capacity);
        bag
    }

    /// Makes sure seats `0..n` exist.
    pub(crate) fn ensure_capacity(&self, n: usize) {
        if self.capacity.load(Ordering::Acquire) >= n {
            return;
        }
        let _guard = lock(&self.grow);
        let mut cap = self.capacity.load(Ordering::Acquire);
        while cap < n {
            let (bucket, offset) = locate(cap);
            debug_assert_eq!(offset, 0);
            let len = BASE << bucket;
            let seats: Box<[Slot<C>]> = (0..len)
                .map(|i| Slot::new((cap + i) as u32))
                .collect::<Vec<_>>()
                .into_boxed_slice();
            let ptr = Box::into_raw(seats) as *mut Slot<C>;
            self.buckets[bucket].store(ptr, Ordering::Release);
            cap += len;
            self.capacity.store(cap, Ordering::Release);
        }
    }

    /// Seats allocated.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Acquire)
    }

    /// The seat at `index`, which must be below [`capacity`](Bag::capacity).
    #[inline]
    pub(crate) fn slot(&self, index: usize) -> &Slot<C> {
        assert!(index < self.capacity(), "seat {index} out of range");
        let (bucket, offset) = locate(index);
        let ptr = self.buckets[bucket].load(Ordering::Acquire);
        // SAFETY: `index < capacity`, and `capacity` was stored with Release
        // after this bucket's pointer (ensure_capacity), so the Acquire loads
        // above see a non-null pointer to a live allocation of `BASE << bucket`
        // seats, of which `offset` is one. Buckets are freed only in `Drop`,
        // which cannot run while `&self` is borrowed.
        unsafe { &*ptr.add(offset) }
    }

    /// Number of registered waiters.
    #[inline]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Whether a waiter has waited past the fairness limit: newcomers must
    /// queue instead of taking idle seats.
    #[inline]
    #[cfg_attr(pool_loom, allow(dead_code))]
    pub(crate) fn starving(&self) -> bool {
        self.starving.load(Ordering::SeqCst) != 0
    }

    /// Scans seats `0..limit`, starting at `start`, for an idle one and claims
    /// it (`IN_USE`).
    pub(crate) fn scan(&self, start: usize, limit: usize) -> Option<usize> {
        let limit = limit.min(self.capacity());
        if limit == 0 {
            return None;
        }
        let start = start % limit;
        (start..limit)
            .chain(0..start)
            .find(|&i| self.slot(i).try_claim(IN_USE))
    }

    /// Makes a seat the caller owns available again: hands it to the oldest
    /// waiter if one is starving, or marks it idle (and wakes the oldest
    /// waiter to compete for it).
    ///
    /// The seat must hold a connection and be owned by the caller (`IN_USE`
    /// or `RESERVED`). Returns `true` if it went to a waiter.
    #[inline]
    pub(crate) fn release(&self, slot: &Slot<C>) -> bool {
        // The common case, nobody waiting: publish the seat and return.
        if self.waiting.load(Ordering::SeqCst) == 0 && !self.publish(slot) {
            return false;
        }
        self.release_waiting(slot)
    }

    /// `release` while waiters are registered (or once one registered as
    /// the seat was published, and `publish` took it back).
    #[inline(never)]
    fn release_waiting(&self, slot: &Slot<C>) -> bool {
        loop {
            if self.waiting.load(Ordering::SeqCst) > 0
                && self.starving.load(Ordering::SeqCst) != 0
                && self.hand_off(slot)
            {
                return true;
            }
            if !self.publish(slot) {
                return false;
            }
        }
    }

    /// Makes an owned seat idle. True if a starving waiter registered
    /// meanwhile and the seat was taken back (the caller owns it again and
    /// should hand it over); false if it is released for good.
    #[inline]
    fn publish(&self, slot: &Slot<C>) -> bool {
        // Publish the connection (Release), then the returner's half of the
        // waiter Dekker: fence, then look for waiters (module docs).
        slot.state.store(IDLE, Ordering::Release);
        light_fence();
        self.waiting.load(Ordering::Relaxed) != 0 && self.take_back(slot)
    }

    /// `publish` found a waiter registered.
    #[cold]
    fn take_back(&self, slot: &Slot<C>) -> bool {
        if self.starving.load(Ordering::SeqCst) == 0 {
            // Nobody starves: the seat stays idle for whoever comes first,
            // and the oldest waiter is woken to try.
            self.wake_oldest();
            return false;
        }
        // Someone starves. The waiter's scan may already have claimed the
        // seat; if not, take it back to hand it over.
        slot.state
            .compare_exchange(IDLE, IN_USE, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// Unparks the oldest waiter so that it scans again (a no-op system
    /// call-wise if it is still spinning).
    fn wake_oldest(&self) {
        let oldest = lock(&self.queue).front().cloned();
        if let Some(w) = oldest {
            w.thread.unpark();
        }
    }

    /// Gives an owned seat to the oldest live waiter. Returns `false` (and
    /// the caller still owns the seat) if no waiter took it.
    fn hand_off(&self, slot: &Slot<C>) -> bool {
        // The waiter receives the seat `IN_USE`. Relaxed: the CAS below
        // (AcqRel) publishes this store along with the connection.
        slot.state.store(IN_USE, Ordering::Relaxed);
        let mut queue = lock(&self.queue);
        while let Some(waiter) = queue.pop_front() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if waiter
                .state
                .compare_exchange(
                    W_WAITING,
                    W_HANDED + slot.index as usize,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                // Starvation ends when the next in line has not waited long.
                if !queue.front().is_some_and(|w| w.starves(self.fairness)) {
                    self.starving.store(0, Ordering::SeqCst);
                }
                drop(queue);
                waiter.thread.unpark();
                return true;
            }
            // That waiter had already given up; try the next one.
        }
        self.starving.store(0, Ordering::SeqCst);
        false
    }

    /// Waits for a seat.
    ///
    /// `scan` claims an idle seat if there is one; `registered` is called
    /// once, with the number of waiters, right after this thread joined the
    /// queue (the pool asks for a new connection there); `remaining` returns
    /// the time left, or `None` once the deadline has passed. `surplus`
    /// receives a seat the scan claimed when a hand-off also reached this
    /// waiter: the waiter keeps the handed seat, and `surplus` owns the
    /// scanned one (`IN_USE`) and must make it available again through the
    /// pool's checks (closed, shrunk, evicted), not through `release` alone.
    pub(crate) fn wait(
        &self,
        scan: impl FnMut() -> Option<usize>,
        registered: impl FnOnce(usize),
        remaining: impl FnMut() -> Option<Duration>,
        surplus: impl FnOnce(usize),
    ) -> WaitOutcome {
        let started = now();
        let outcome = self.wait_for_seat(started, scan, registered, remaining, surplus);
        if let (WaitOutcome::Got(_), Some(started)) = (outcome, started) {
            // Exponential moving average, weight 1/8.
            let took = started.elapsed().as_micros().min(u64::MAX as u128) as u64;
            let avg = self.typical_wait_us.load(Ordering::Relaxed);
            let next = avg - avg / 8 + took / 8;
            self.typical_wait_us.store(next, Ordering::Relaxed);
        }
        outcome
    }

    /// When a waiter that registered at `since` stops spinning and parks
    /// (`None` under loom, where it parks straight away).
    #[inline]
    fn spin_deadline(&self, since: Option<std::time::Instant>) -> Option<std::time::Instant> {
        #[cfg(not(pool_loom))]
        {
            let typical = self.typical_wait_us.load(Ordering::Relaxed);
            let spin = if typical <= SPIN_FOR.as_micros() as u64 {
                SPIN_FOR
            } else {
                SHORT_SPIN
            };
            since.map(|t| t + spin)
        }
        #[cfg(pool_loom)]
        {
            let _ = since;
            None
        }
    }

    fn wait_for_seat(
        &self,
        since: Option<std::time::Instant>,
        mut scan: impl FnMut() -> Option<usize>,
        registered: impl FnOnce(usize),
        mut remaining: impl FnMut() -> Option<Duration>,
        surplus: impl FnOnce(usize),
    ) -> WaitOutcome {
        let me = Arc::new(Waiter {
            state: AtomicUsize::new(W_WAITING),
            thread: thread::current(),
            since,
        });
        let waiting = {
            let mut queue = lock(&self.queue);
            queue.push_back(me.clone());
            self.waiting.fetch_add(1, Ordering::SeqCst) + 1
        };
        registered(waiting);
        // The waiter's half of the Dekker is "registered (above), fence, then
        // scan", and it only matters before this thread blocks: while it
        // spins it re-scans anyway, and returners that see the registration
        // hand over directly. So the (possibly heavy: a system call where
        // membarriers are used) fence is issued once, just before the first
        // park, followed by one more scan. From then on any seat made idle
        // sees this registration and is handed over.
        let spin_until = self.spin_deadline(me.since);
        let mut fenced = false;
        let mut spins = 0u32;
        loop {
            let state = me.state.load(Ordering::Acquire);
            if state != W_WAITING {
                return Self::outcome(state);
            }
            if self.closed.load(Ordering::SeqCst) != 0 && self.cancel(&me) {
                return WaitOutcome::Closed;
            }
            if let Some(index) = scan() {
                if self.cancel(&me) {
                    return WaitOutcome::Got(index);
                }
                // Someone ended our wait while we were scanning: keep the
                // handed seat, and give the scanned one back through the
                // caller, whose checks may close it instead (the pool may
                // have been closed or shrunk, its sweep having skipped the
                // seat while we held it).
                let state = me.state.load(Ordering::Acquire);
                if state >= W_HANDED {
                    surplus(index);
                    return WaitOutcome::Got(state - W_HANDED);
                }
                // Closed or failed: the caller sees that for itself.
                return WaitOutcome::Got(index);
            }
            match remaining() {
                None => {
                    if self.cancel(&me) {
                        return WaitOutcome::TimedOut;
                    }
                    // A hand-off (or close) beat the timeout: loop to take it.
                }
                Some(left) => {
                    if self.starving.load(Ordering::Relaxed) == 0 && me.starves(self.fairness) {
                        // Overtaken for too long: from now on returned seats
                        // go to waiters, oldest first (module docs).
                        self.starving.store(1, Ordering::SeqCst);
                        continue;
                    }
                    if !fenced && spin_on(&mut spins, spin_until) {
                        continue;
                    }
                    if !fenced {
                        heavy_fence();
                        fenced = true;
                        continue; // the Dekker scan, then park
                    }
                    crate::sync::park_timeout(match self.fairness {
                        Fairness::BargeFor(limit) if self.starving.load(Ordering::Relaxed) == 0 => {
                            left.min(limit)
                        }
                        _ => left,
                    });
                }
            }
        }
    }

    fn outcome(state: usize) -> WaitOutcome {
        match state {
            W_CLOSED => WaitOutcome::Closed,
            W_FAILED => WaitOutcome::Failed,
            s if s >= W_HANDED => WaitOutcome::Got(s - W_HANDED),
            _ => unreachable!("a waiter is never woken as waiting or cancelled"),
        }
    }

    /// Withdraws a waiter. Returns `false` if its wait had already been ended
    /// by a hand-off, close or failure (whose result it must then take).
    fn cancel(&self, me: &Arc<Waiter>) -> bool {
        if me
            .state
            .compare_exchange(W_WAITING, W_CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let mut queue = lock(&self.queue);
        if let Some(pos) = queue.iter().position(|w| Arc::ptr_eq(w, me)) {
            queue.remove(pos);
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        if !queue.front().is_some_and(|w| w.starves(self.fairness)) {
            self.starving.store(0, Ordering::SeqCst);
        }
        // A returner may have woken us (the oldest) to compete for an idle
        // seat just as we left: pass the wake-up on to the next in line, or
        // that seat could sit idle while it sleeps.
        let next = queue.front().cloned();
        drop(queue);
        if let Some(next) = next {
            next.thread.unpark();
        }
        true
    }

    /// Ends every current wait with `Closed` (`closed = true`) or `Failed`.
    pub(crate) fn wake_all(&self, closed: bool) {
        let end = if closed { W_CLOSED } else { W_FAILED };
        if closed {
            self.closed.store(1, Ordering::SeqCst);
        }
        let woken: Vec<Arc<Waiter>> = {
            let mut queue = lock(&self.queue);
            let all: Vec<_> = queue.drain(..).collect();
            self.waiting.fetch_sub(all.len(), Ordering::SeqCst);
            all
        };
        for w in woken {
            if w.state
                .compare_exchange(W_WAITING, end, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                w.thread.unpark();
            }
        }
    }
}

impl<C> Drop for Bag<C> {
    fn drop(&mut self) {
        let cap = self.capacity.load(Ordering::Acquire);
        let mut seen = 0;
        for (bucket, ptr) in self.buckets.iter().enumerate() {
            if seen >= cap {
                break;
            }
            let len = BASE << bucket;
            let ptr = ptr.load(Ordering::Acquire);
            // SAFETY: every bucket below `capacity` was created in
            // `ensure_capacity` by `Box::into_raw` of a boxed slice of exactly
            // `len` seats and never freed before; `&mut self` means no seat
            // reference is alive any more.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
            seen += len;
        }
    }
}

#[cfg(all(test, not(pool_loom)))]
mod tests {
    use super::*;

    #[test]
    fn locate_covers_every_index_once() {
        let mut next = (0, 0);
        for i in 0..10_000 {
            let loc = locate(i);
            assert_eq!(loc, next, "index {i}");
            next = if loc.1 + 1 == BASE << loc.0 {
                (loc.0 + 1, 0)
            } else {
                (loc.0, loc.1 + 1)
            };
        }
        assert!(BASE * ((1 << BUCKETS) - 1) >= crate::config::MAX_SIZE_LIMIT as usize);
    }

    #[test]
    fn seats_keep_their_address_when_the_bag_grows() {
        let bag: Bag<u32> = Bag::new(4);
        let first = bag.slot(3) as *const Slot<u32>;
        bag.ensure_capacity(1000);
        assert!(bag.capacity() >= 1000);
        assert_eq!(bag.slot(3) as *const Slot<u32>, first);
        assert_eq!(bag.slot(999).index, 999);
    }

    #[test]
    fn release_without_waiters_makes_idle_and_scan_claims() {
        let bag: Bag<u32> = Bag::new(2);
        let s = bag.slot(1);
        assert!(s.try_claim_vacant());
        // SAFETY: we own the seat (claimed just above).
        unsafe { s.put(7) };
        assert!(!bag.release(s));
        assert_eq!(s.state.load(Ordering::SeqCst), IDLE);
        assert_eq!(bag.scan(0, 2), Some(1));
        assert_eq!(bag.scan(0, 2), None);
    }

    #[test]
    fn a_timed_out_wait_leaves_no_waiter_behind() {
        let bag: Bag<u32> = Bag::new(1);
        let mut left = 3;
        let out = bag.wait(
            || None,
            |n| assert_eq!(n, 1),
            || {
                left -= 1;
                (left > 0).then_some(Duration::from_micros(10))
            },
            |_| unreachable!("nothing was scanned"),
        );
        assert_eq!(out, WaitOutcome::TimedOut);
        assert_eq!(bag.waiting(), 0);
    }

    /// A waiter whose scan claims seat 0 while a returner hands it seat 1
    /// keeps seat 1 and passes seat 0, still owned, to `surplus`: the bag
    /// never makes it idle by itself (that skipped the pool's checks, so a
    /// pool closed meanwhile kept the seat idle and its connection open).
    #[test]
    fn a_waiter_handed_a_seat_while_its_scan_claimed_one_gives_the_scanned_one_to_surplus() {
        let bag: Bag<u32> = Bag::new(2);
        for i in 0..2 {
            let s = bag.slot(i);
            assert!(s.try_claim_vacant());
            // SAFETY: we own the seat (claimed just above).
            unsafe { s.put(i as u32) };
        }
        // Seat 0 idle for the scan; seat 1 owned by a "returner".
        assert!(!bag.release(bag.slot(0)));
        let mut given = None;
        let out = bag.wait(
            || {
                let got = bag.scan(0, 1)?;
                // The interleaving: a returner hands seat 1 over to this
                // (starving) waiter after its scan claimed seat 0.
                bag.starving.store(1, Ordering::SeqCst);
                assert!(bag.release(bag.slot(1)), "seat 1 goes to the waiter");
                Some(got)
            },
            |_| {},
            || Some(Duration::from_millis(10)),
            |index| given = Some(index),
        );
        assert_eq!(out, WaitOutcome::Got(1));
        assert_eq!(given, Some(0));
        assert_eq!(bag.slot(0).state.load(Ordering::SeqCst), IN_USE);
        assert_eq!(bag.waiting(), 0);
    }
}
