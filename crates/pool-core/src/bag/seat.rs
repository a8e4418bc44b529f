//! A seat: one connection's place in the bag, its state word (the table in
//! the [bag's docs](super)), the ownership guards, and the watched-reset protocol that
//! decides who owns a seat whose reset outlives its limit.

use crate::sync::{AtomicU64, AtomicU8};
use crate::sync::{Ordering, UnsafeCell};

/// No connection in the seat.
pub(crate) const VACANT: u8 = 0;
/// A connection waits in the seat; anyone may claim it.
pub(crate) const IDLE: u8 = 1;
/// The connection is lent to a borrower.
pub(crate) const IN_USE: u8 = 2;
/// The housekeeper or the creator holds the seat for exclusive work.
pub(crate) const RESERVED: u8 = 3;

/// One seat of the bag.
///
/// The connection lives in `conn`, accessed only by the seat's owner as
/// defined by `state` (see the module docs), through a [`Claimed`] guard.
/// `X` is what the bag's user keeps about the seat (the pool's `Stamps`),
/// reachable from any `&Seat` (the seat derefs to it).
///
/// Aligned to 128 bytes (two cache lines, the unit the x86-64 adjacent-line
/// prefetcher moves) so that two threads working on neighbouring seats never
/// write to the same line: without it, two threads each cycling their own
/// connection slowed each other down through false sharing.
#[repr(align(128))]
pub(crate) struct Seat<C, X = ()> {
    /// `VACANT`, `IDLE`, `IN_USE` or `RESERVED`. Private to the bag: an
    /// owner changes it only by giving up its [`Claimed`] guard.
    pub(super) state: AtomicU8,
    /// The seat's position in the bag.
    pub(crate) index: u32,
    /// Coarse-clock time a watched background reset began (never 0), or 0
    /// when none is running. The resetting job and the housekeeper race to
    /// swap it back to 0: the job when the reset returns, the housekeeper
    /// once the manager's reset limit has passed. The winner owns the seat
    /// (see [`Watch`]).
    pub(super) reset_since: AtomicU64,
    /// The connection itself; `Some` in every state but `VACANT`.
    conn: UnsafeCell<Option<C>>,
    /// What the bag's user keeps about the seat (the pool: `Stamps`); the
    /// seat derefs to it. The bag never reads it.
    data: X,
}

/// `reset_since` while a watched reset is being given up (see
/// [`Seat::give_up_watch`]); never a clock reading.
pub(super) const GIVING_UP: u64 = u64::MAX - 1;
/// `reset_since` once the giver-up has handed the seat back to the
/// resetting thread ([`GivingUp::hand_back`]).
pub(super) const GIVEN_UP: u64 = u64::MAX;

impl<C, X: Default> Seat<C, X> {
    pub(super) fn new(index: u32) -> Self {
        Seat {
            state: AtomicU8::new(VACANT),
            index,
            reset_since: AtomicU64::new(0),
            conn: UnsafeCell::new(None),
            data: X::default(),
        }
    }
}

impl<C, X> Seat<C, X> {
    /// The seat's state now (`Acquire`), for observers that own nothing:
    /// counts, leak reports, health. Stale as soon as it is read.
    #[inline]
    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// The state with `Relaxed` ordering: a hint (a fast-path pre-check, a
    /// count that may be stale anyway).
    #[inline]
    pub(crate) fn state_hint(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    /// The start stamp of the watched reset running on this seat (0: none,
    /// or one already being given up),
    /// for the housekeeper, which may give it up ([`give_up_watch`](Self::give_up_watch)).
    pub(crate) fn watched_since(&self) -> u64 {
        match self.reset_since.load(Ordering::Relaxed) {
            GIVING_UP | GIVEN_UP => 0, // already being given up
            since => since,
        }
    }

    /// Claims an idle seat (`IDLE` → `to`, `IN_USE` or `RESERVED`): the
    /// winner owns it until it gives the guard up.
    #[inline]
    pub(crate) fn try_claim(&self, to: u8) -> Option<Claimed<'_, C, X>> {
        // A plain load first: a seat that is visibly taken costs a shared read
        // instead of a failed CAS, which would take the cache line exclusively.
        // (A waiter's re-scan is one side of the Dekker pattern described in
        // the module docs: the waiter issues the fence before scanning.)
        let won = self.state.load(Ordering::Relaxed) == IDLE
            && self
                .state
                .compare_exchange(IDLE, to, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok();
        // SAFETY: the CAS above made this thread the seat's owner.
        won.then(|| unsafe { Claimed::assume(self) })
    }

    /// Claims a vacant seat for filling (`VACANT` → `RESERVED`).
    pub(crate) fn try_claim_vacant(&self) -> Option<Claimed<'_, C, X>> {
        let won = self.state.load(Ordering::Relaxed) == VACANT
            && self
                .state
                .compare_exchange(VACANT, RESERVED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok();
        // SAFETY: the CAS above made this thread the seat's owner.
        won.then(|| unsafe { Claimed::assume(self) })
    }

    /// Gives up the watched reset stamped `since` (read from
    /// [`watched_since`](Self::watched_since) and found overdue). `Some`: the
    /// caller may count the connection closed and must then call
    /// [`GivingUp::hand_back`]; it must not free the seat, which goes back to
    /// the resetting thread: that thread drops the connection when its reset
    /// returns and only then frees the seat, so a replacement never opens
    /// while the given-up session may still be open (invariant 2). `None`:
    /// the reset ended first.
    ///
    /// Comparing the stamp alone is enough: the seat is not freed before
    /// the watched reset returns, so no later reset of it can be under way.
    pub(crate) fn give_up_watch(&self, since: u64) -> Option<GivingUp<'_, C, X>> {
        let won = (since != 0 && since < GIVING_UP)
            && self
                .reset_since
                .compare_exchange(since, GIVING_UP, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
        won.then_some(GivingUp { seat: self })
    }

    /// A raw pointer to the connection cell, for `PooledConnection`'s `Deref`
    /// (whose loan owns the seat).
    #[inline]
    pub(crate) fn conn_ptr(&self) -> *mut Option<C> {
        self.conn.get()
    }
}

/// Proof that this thread owns a seat (`IN_USE` or `RESERVED`): the only way
/// to touch its connection, and to change its state. Obtained by claiming
/// the seat ([`Seat::try_claim`], [`Seat::try_claim_vacant`]), from a
/// waiter's hand-off, from a [`Handover`], or, where ownership travels in a
/// raw form (a loan's pointer), by [`assume`](Claimed::assume). Given up
/// by releasing the seat ([`Bag::release`](super::Bag::release)), vacating
/// it ([`vacate`](Claimed::vacate)), passing it on ([`handover`](Claimed::handover),
/// [`begin_watch`](Claimed::begin_watch)), or [`keep`](Claimed::keep)ing it
/// in a raw form. Dropping it otherwise would strand the seat: debug builds
/// panic.
#[must_use = "a claimed seat stays taken until it is released or vacated"]
pub(crate) struct Claimed<'a, C, X = ()> {
    seat: &'a Seat<C, X>,
}

impl<'a, C, X> Claimed<'a, C, X> {
    /// A guard for a seat the caller owns.
    ///
    /// # Safety
    /// The calling thread owns the seat (`IN_USE` or `RESERVED`, claimed or
    /// handed to it), and no other guard for it is alive.
    #[inline]
    pub(crate) unsafe fn assume(seat: &'a Seat<C, X>) -> Self {
        Claimed { seat }
    }

    /// The seat.
    #[inline]
    pub(crate) fn seat(&self) -> &'a Seat<C, X> {
        self.seat
    }

    /// Puts a connection into the seat.
    #[inline]
    pub(crate) fn put(&mut self, conn: C) {
        // SAFETY: the guard proves ownership of the seat, so no other thread
        // reads or writes `conn` until the owner releases the seat with a
        // Release store or a hand-off CAS; `&mut self` excludes any other
        // access through this guard.
        self.seat.conn.with_mut(|p| unsafe { *p = Some(conn) });
    }

    /// Takes the connection out of the seat.
    #[inline]
    pub(crate) fn take(&mut self) -> Option<C> {
        // SAFETY: as for `put`.
        self.seat.conn.with_mut(|p| unsafe { (*p).take() })
    }

    /// Runs `f` on the connection in the seat.
    #[inline]
    pub(crate) fn with_conn<R>(&mut self, f: impl FnOnce(Option<&mut C>) -> R) -> R {
        // SAFETY: as for `put`; the `&mut C` does not escape `f`, which
        // cannot release the seat (that takes this guard by value).
        self.seat.conn.with_mut(|p| f(unsafe { (*p).as_mut() }))
    }

    /// Frees the seat (its connection already taken out and closed):
    /// `VACANT` with `Release`, publishing every write the owner made.
    #[inline]
    pub(crate) fn vacate(self) {
        self.keep().state.store(VACANT, Ordering::Release);
    }

    /// Ends the guard while the seat stays owned, in a raw form: a loan's
    /// pointer (which [`assume`](Claimed::assume)s it back), or code in the
    /// bag that changes the state word itself.
    #[inline]
    pub(crate) fn keep(self) -> &'a Seat<C, X> {
        let seat = self.seat;
        std::mem::forget(self);
        seat
    }

    /// Passes the seat to another thread (a `pool-io` job): the token is
    /// `Send`, and [`Bag::take_over`](super::Bag::take_over) turns it back
    /// into a guard there.
    #[inline]
    pub(crate) fn handover(self) -> Handover {
        Handover {
            index: self.keep().index as usize,
        }
    }

    /// Starts a watched background reset, the connection taken out
    /// (`take`): from now until [`Watch::end`], the housekeeper may give the
    /// seat up ([`Seat::give_up_watch`]), so the guard is gone meanwhile.
    /// The stamp is `now`, or 1 if `now` is 0.
    pub(crate) fn begin_watch(self, now: u64) -> Watch<'a, C, X> {
        let seat = self.keep();
        let since = now.max(1);
        // Release: the `take` before happens before a housekeeper that wins
        // `give_up_watch` (Acquire) frees the seat.
        seat.reset_since.store(since, Ordering::Release);
        Watch { seat, since }
    }
}

impl<C, X> std::ops::Deref for Claimed<'_, C, X> {
    type Target = Seat<C, X>;
    #[inline]
    fn deref(&self) -> &Seat<C, X> {
        self.seat
    }
}

impl<C, X> Drop for Claimed<'_, C, X> {
    fn drop(&mut self) {
        // Every path gives the guard up by value; one that drops it would
        // leave the seat taken for good. (Not while unwinding: a panic in
        // the pool's own code is reported by the panic itself.)
        if cfg!(debug_assertions) && !std::thread::panicking() {
            panic!(
                "seat {} dropped while claimed: it would stay taken",
                self.seat.index
            );
        }
    }
}

/// A claimed seat on its way to another thread ([`Claimed::handover`]).
/// Not `Clone`: exactly one [`Bag::take_over`](super::Bag::take_over) turns
/// it back into the guard.
#[must_use = "a handed-over seat stays taken until it is taken over"]
#[derive(Debug)]
pub(crate) struct Handover {
    pub(super) index: usize,
}

/// A watched background reset in progress ([`Claimed::begin_watch`]).
#[must_use = "a watched reset must be ended"]
pub(crate) struct Watch<'a, C, X = ()> {
    seat: &'a Seat<C, X>,
    since: u64,
}

impl<'a, C, X> Watch<'a, C, X> {
    /// The watch's stamp: when the reset began (coarse clock, never 0).
    pub(crate) fn since(&self) -> u64 {
        self.since
    }

    /// Ends the watched reset. `Ok`: the caller owns the seat again (and
    /// puts the connection back). `Err`: the seat was given up meanwhile
    /// (its connection counted as closed): the caller must drop the
    /// connection, then wait for the seat with [`GivenUp::wait`].
    pub(crate) fn end(self) -> Result<Claimed<'a, C, X>, GivenUp<'a, C, X>> {
        // AcqRel: pairs with `give_up_watch`; whichever CAS succeeds first
        // decides, and the loser leaves the seat alone.
        let won = self
            .seat
            .reset_since
            .compare_exchange(self.since, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if won {
            // SAFETY: winning the CAS ends the watch with the seat still
            // owned by this thread (the housekeeper can no longer give it up).
            Ok(unsafe { Claimed::assume(self.seat) })
        } else {
            Err(GivenUp { seat: self.seat })
        }
    }
}

/// The resetting thread's side of a given-up watch ([`Watch::end`] lost).
#[must_use = "the seat must be waited for and freed"]
pub(crate) struct GivenUp<'a, C, X = ()> {
    seat: &'a Seat<C, X>,
}

impl<'a, C, X> GivenUp<'a, C, X> {
    /// Waits until the giver-up has handed the seat back (a few
    /// instructions, no I/O, on its side), then owns the seat again, without
    /// its connection.
    pub(crate) fn wait(self) -> Claimed<'a, C, X> {
        while self.seat.reset_since.load(Ordering::Acquire) != GIVEN_UP {
            crate::sync::spin_yield();
        }
        self.seat.reset_since.store(0, Ordering::Relaxed);
        // SAFETY: `hand_back` (Release, read above with Acquire) returned the
        // seat to this thread, which owned it before the watch began.
        unsafe { Claimed::assume(self.seat) }
    }
}

/// The housekeeper's side of a given-up watch ([`Seat::give_up_watch`] won):
/// it may read the seat and count its connection closed, then must
/// [`hand_back`](GivingUp::hand_back).
#[must_use = "the seat must be handed back to the resetting thread"]
pub(crate) struct GivingUp<'a, C, X = ()> {
    seat: &'a Seat<C, X>,
}

impl<C, X> GivingUp<'_, C, X> {
    /// The seat given up.
    pub(crate) fn seat(&self) -> &Seat<C, X> {
        self.seat
    }

    /// Ends the giver-up's part: the resetting thread, waiting in
    /// [`GivenUp::wait`], owns the seat again.
    pub(crate) fn hand_back(self) {
        // Release: the giver-up's reads of the seat happen before the
        // resetting thread frees it.
        self.seat.reset_since.store(GIVEN_UP, Ordering::Release);
    }
}

impl<C, X> std::ops::Deref for Seat<C, X> {
    type Target = X;
    #[inline]
    fn deref(&self) -> &X {
        &self.data
    }
}
