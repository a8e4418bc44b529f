//! The concurrent bag: the seats that hold connections, their atomic states,
//! and the fair hand-off of returned connections to waiting borrowers.
//!
//! # Seats
//!
//! The bag is an array of *seats* ([`Seat`]). A seat holds at most one
//! connection and never moves: seats live in buckets that are allocated as the
//! pool grows (by [`Pool::resize`](crate::Pool::resize)) and freed only when the
//! bag is dropped, so a seat index or a `&Seat` stays valid for the bag's whole
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
//! convoy that made strict hand-off far slower than r2d2 with 8 threads on 4
//! connections: docs/performance.md, "Bounded overtaking"). Once the oldest waiter has waited past the limit it sets
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

mod buckets;
#[cfg(all(test, pool_loom))]
mod loom_models;
mod seat;
mod spin;
mod waiters;

use std::collections::VecDeque;

use crate::sync::{light_fence, Ordering};
use crate::sync::{lock, Arc, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Mutex};

pub(crate) use buckets::MAX_SEATS;
use buckets::{locate, BASE, BUCKETS};
pub(crate) use seat::*;
pub(crate) use waiters::{Fairness, WaitOutcome};
use waiters::{Waiter, BARGE_FOR};

/// The bag: seats plus the waiter queue.
pub(crate) struct Bag<C, X = ()> {
    /// Bucket pointers; a bucket, once published, is never moved or freed
    /// before the bag is dropped.
    buckets: [AtomicPtr<Seat<C, X>>; BUCKETS],
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

// SAFETY: the bag owns its `Seat<C, X>`s; a connection is only ever accessed by
// the one thread that owns its seat, and moves between threads with the seat,
// so `C: Send` is all that is needed for the bag to be shared and sent.
unsafe impl<C: Send, X: Send + Sync> Send for Bag<C, X> {}
// SAFETY: as above; every shared access goes through atomics or a mutex.
unsafe impl<C: Send, X: Send + Sync> Sync for Bag<C, X> {}

impl<C, X: Default> Bag<C, X> {
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
            let seats: Box<[Seat<C, X>]> = (0..len)
                .map(|i| Seat::new((cap + i) as u32))
                .collect::<Vec<_>>()
                .into_boxed_slice();
            let ptr = Box::into_raw(seats) as *mut Seat<C, X>;
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
    pub(crate) fn seat(&self, index: usize) -> &Seat<C, X> {
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
    pub(crate) fn scan(&self, start: usize, limit: usize) -> Option<Claimed<'_, C, X>> {
        let limit = limit.min(self.capacity());
        if limit == 0 {
            return None;
        }
        let start = start % limit;
        (start..limit)
            .chain(0..start)
            .find_map(|i| self.seat(i).try_claim(IN_USE))
    }

    /// Turns a seat handed to this thread ([`Claimed::handover`]) back into
    /// its guard.
    pub(crate) fn take_over(&self, handover: Handover) -> Claimed<'_, C, X> {
        // SAFETY: a `Handover` is made only by `Claimed::handover`, from the
        // guard of an owned seat of this pool's bag (a pool has one bag, and
        // its handovers go only to its own jobs), and is consumed here, once:
        // the seat's ownership passed with it.
        unsafe { Claimed::assume(self.seat(handover.index)) }
    }

    /// Makes a seat the caller owns available again: hands it to the oldest
    /// waiter if one is starving, or marks it idle (and wakes the oldest
    /// waiter to compete for it).
    ///
    /// The seat must hold a connection. Returns `true` if it went to a
    /// waiter.
    #[inline]
    pub(crate) fn release(&self, claimed: Claimed<'_, C, X>) -> bool {
        let slot = claimed.keep();
        // The common case, nobody waiting: publish the seat and return.
        if self.waiting.load(Ordering::SeqCst) == 0 && !self.publish(slot) {
            return false;
        }
        self.release_waiting(slot)
    }

    /// Makes a seat the caller owns available ([`release`](Bag::release)),
    /// then, unless it went to a waiter, asks `retire` whether it must go
    /// after all (its pool was closed, shrunk or evicted meanwhile); if so,
    /// and the seat is still idle, claims it back (`RESERVED`) for the
    /// caller to close.
    ///
    /// The returner's half of a Dekker pair with [`sweep_idle`](Bag::sweep_idle):
    /// `release` stores `IDLE` and fences before `retire` reads what the
    /// other side changed; the other side stores, fences (`heavy_fence`),
    /// then sweeps. One of the two sees the other, so a closed pool never
    /// keeps an idle connection (loom model
    /// `loom_check_in_racing_close_leaves_nothing_idle`).
    #[inline]
    pub(crate) fn release_or_reclaim<'a>(
        &'a self,
        claimed: Claimed<'a, C, X>,
        retire: impl FnOnce(&Seat<C, X>) -> bool,
    ) -> Option<Claimed<'a, C, X>> {
        let seat = claimed.seat();
        if self.release(claimed) {
            return None;
        }
        if retire(seat) {
            seat.try_claim(RESERVED)
        } else {
            None
        }
    }

    /// Claims every idle seat from `from` on (`RESERVED`), for the caller to
    /// close: the sweeping half of the Dekker pair with
    /// [`release_or_reclaim`](Bag::release_or_reclaim), after the caller
    /// stored what `retire` reads and issued a `heavy_fence`.
    pub(crate) fn sweep_idle(&self, from: usize) -> impl Iterator<Item = Claimed<'_, C, X>> {
        (from..self.capacity()).filter_map(move |i| self.seat(i).try_claim(RESERVED))
    }

    /// `release` while waiters are registered (or once one registered as
    /// the seat was published, and `publish` took it back).
    #[inline(never)]
    fn release_waiting(&self, slot: &Seat<C, X>) -> bool {
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
    fn publish(&self, slot: &Seat<C, X>) -> bool {
        // Publish the connection (Release), then the returner's half of the
        // waiter Dekker: fence, then look for waiters (module docs).
        slot.state.store(IDLE, Ordering::Release);
        light_fence();
        self.waiting.load(Ordering::Relaxed) != 0 && self.take_back(slot)
    }

    /// `publish` found a waiter registered.
    #[cold]
    fn take_back(&self, slot: &Seat<C, X>) -> bool {
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
}

impl<C, X> Drop for Bag<C, X> {
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
    use std::time::Duration;

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
    }

    #[test]
    fn seats_keep_their_address_when_the_bag_grows() {
        let bag: Bag<u32> = Bag::new(4);
        let first = bag.seat(3) as *const Seat<u32>;
        bag.ensure_capacity(1000);
        assert!(bag.capacity() >= 1000);
        assert_eq!(bag.seat(3) as *const Seat<u32>, first);
        assert_eq!(bag.seat(999).index, 999);
    }

    /// Claims vacant seat `i` and puts `conn` in it.
    fn filled(bag: &Bag<u32>, i: usize, conn: u32) -> Claimed<'_, u32> {
        let mut claimed = bag.seat(i).try_claim_vacant().expect("vacant");
        claimed.put(conn);
        claimed
    }

    #[test]
    fn release_without_waiters_makes_idle_and_scan_claims() {
        let bag: Bag<u32> = Bag::new(2);
        assert!(!bag.release(filled(&bag, 1, 7)));
        assert_eq!(bag.seat(1).state(), IDLE);
        let mut claimed = bag.scan(0, 2).expect("seat 1 is idle");
        assert_eq!(claimed.index, 1);
        assert_eq!(claimed.take(), Some(7));
        assert!(bag.scan(0, 2).is_none());
        claimed.vacate();
        assert_eq!(bag.seat(1).state(), VACANT);
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
        assert!(matches!(out, WaitOutcome::TimedOut));
        assert_eq!(bag.waiting(), 0);
    }

    /// A waiter whose scan claims seat 0 while a returner hands it seat 1
    /// keeps seat 1 and passes seat 0, still owned, to `surplus`: the bag
    /// never makes it idle by itself (that skipped the pool's checks, so a
    /// pool closed meanwhile kept the seat idle and its connection open).
    #[test]
    fn a_waiter_handed_a_seat_while_its_scan_claimed_one_gives_the_scanned_one_to_surplus() {
        let bag: Bag<u32> = Bag::new(2);
        // Seat 0 idle for the scan; seat 1 owned by a "returner".
        assert!(!bag.release(filled(&bag, 0, 0)));
        let mut returner = Some(filled(&bag, 1, 1));
        let mut given = None;
        let out = bag.wait(
            || {
                let got = bag.scan(0, 1)?;
                // The interleaving: a returner hands seat 1 over to this
                // (starving) waiter after its scan claimed seat 0.
                bag.starving.store(1, Ordering::SeqCst);
                let seat1 = returner.take().expect("released once");
                assert!(bag.release(seat1), "seat 1 goes to the waiter");
                Some(got)
            },
            |_| {},
            || Some(Duration::from_millis(10)),
            |surplus| {
                assert_eq!(surplus.state(), IN_USE, "still owned, not made idle");
                given = Some(surplus.index);
                bag.release(surplus);
            },
        );
        let WaitOutcome::Got(kept) = out else {
            panic!("the waiter keeps the handed seat");
        };
        assert_eq!(kept.index, 1);
        assert_eq!(given, Some(0));
        assert_eq!(bag.waiting(), 0);
        bag.release(kept);
    }

    /// Dropping a guard without giving the seat up would strand the seat:
    /// debug builds say so.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "dropped while claimed")]
    fn a_claimed_seat_dropped_without_release_panics_in_debug_builds() {
        let bag: Bag<u32> = Bag::new(1);
        drop(filled(&bag, 0, 1));
    }
}
