//! A seat: one connection's place in the bag, its state word (the table in
//! the [bag's docs](super)), its flags, and the watched-reset protocol that
//! decides who owns a seat whose reset outlives its limit.

use crate::sync::{AtomicPtr, AtomicU64, AtomicU8};
use crate::sync::{Ordering, UnsafeCell};

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
    pub(super) fn new(index: u32) -> Self {
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
