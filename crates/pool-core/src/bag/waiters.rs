//! The waiter queue: how a borrower that found no idle seat waits, is
//! handed a seat, times out, or is woken by a close; and the fairness
//! policy that decides when returned seats go to waiters first.

use std::time::Duration;

use super::seat::{Claimed, Seat, IN_USE};
use super::spin::*;
use super::Bag;
use crate::sync::{heavy_fence, Ordering, Thread};
use crate::sync::{lock, thread, Arc, AtomicUsize};

/// What ended a [`Bag::wait`].
pub(crate) enum WaitOutcome<'a, C, X = ()> {
    /// The waiter owns this seat (`IN_USE`).
    Got(Claimed<'a, C, X>),
    /// The deadline passed.
    TimedOut,
    /// The pool was closed.
    Closed,
    /// The pool gave up on the database (fail fast).
    Failed,
}

/// Waiter state: still waiting.
pub(super) const W_WAITING: usize = 0;
/// Waiter state: gave up (timeout), and was or will be removed from the queue.
pub(super) const W_CANCELLED: usize = 1;
/// Waiter state: woken because the pool closed.
pub(super) const W_CLOSED: usize = 2;
/// Waiter state: woken because the database is down (fail fast).
pub(super) const W_FAILED: usize = 3;
/// Waiter state: `W_HANDED + i` means seat `i` was handed over.
pub(super) const W_HANDED: usize = 4;

/// How long the oldest waiter may be overtaken by newcomers before returned
/// seats go to waiters first. Long enough that a thread running on a CPU
/// keeps reusing connections (no convoy of hand-offs to threads that are
/// not running), short against any `connection_timeout`.
#[cfg(not(pool_loom))]
pub(super) const BARGE_FOR: Duration = Duration::from_micros(200);
#[cfg(pool_loom)]
pub(super) const BARGE_FOR: Duration = Duration::ZERO;

/// The registration time of a waiter (`None` under loom).
#[inline]
pub(super) fn now() -> Option<std::time::Instant> {
    #[cfg(not(pool_loom))]
    return Some(std::time::Instant::now());
    #[cfg(pool_loom)]
    return None;
}

/// One waiting borrower.
pub(super) struct Waiter {
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
    #[cfg_attr(not(all(pool_loom, test)), allow(dead_code))]
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

impl<C, X: Default> Bag<C, X> {
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
    pub(crate) fn wait<'a>(
        &'a self,
        scan: impl FnMut() -> Option<Claimed<'a, C, X>>,
        registered: impl FnOnce(usize),
        remaining: impl FnMut() -> Option<Duration>,
        surplus: impl FnOnce(Claimed<'a, C, X>),
    ) -> WaitOutcome<'a, C, X> {
        let started = now();
        let outcome = self.wait_for_seat(started, scan, registered, remaining, surplus);
        if let (WaitOutcome::Got(_), Some(started)) = (&outcome, started) {
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
    pub(super) fn spin_deadline(
        &self,
        since: Option<std::time::Instant>,
    ) -> Option<std::time::Instant> {
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

    pub(super) fn wait_for_seat<'a>(
        &'a self,
        since: Option<std::time::Instant>,
        mut scan: impl FnMut() -> Option<Claimed<'a, C, X>>,
        registered: impl FnOnce(usize),
        mut remaining: impl FnMut() -> Option<Duration>,
        surplus: impl FnOnce(Claimed<'a, C, X>),
    ) -> WaitOutcome<'a, C, X> {
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
                return self.outcome(state);
            }
            if self.closed.load(Ordering::SeqCst) != 0 && self.cancel(&me) {
                return WaitOutcome::Closed;
            }
            if let Some(claimed) = scan() {
                if self.cancel(&me) {
                    return WaitOutcome::Got(claimed);
                }
                // Someone ended our wait while we were scanning: keep the
                // handed seat, and give the scanned one back through the
                // caller, whose checks may close it instead (the pool may
                // have been closed or shrunk, its sweep having skipped the
                // seat while we held it).
                let state = me.state.load(Ordering::Acquire);
                if state >= W_HANDED {
                    surplus(claimed);
                    return self.outcome(state);
                }
                // Closed or failed: the caller sees that for itself.
                return WaitOutcome::Got(claimed);
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

    pub(super) fn outcome(&self, state: usize) -> WaitOutcome<'_, C, X> {
        match state {
            W_CLOSED => WaitOutcome::Closed,
            W_FAILED => WaitOutcome::Failed,
            s if s >= W_HANDED => {
                // SAFETY: `hand_off` gave this waiter seat `s - W_HANDED`,
                // owned (`IN_USE`), with its CAS on the waiter's state (read
                // with Acquire by the caller); nobody else holds a guard for it.
                let claimed = unsafe { Claimed::assume(self.seat(s - W_HANDED)) };
                WaitOutcome::Got(claimed)
            }
            _ => unreachable!("a waiter is never woken as waiting or cancelled"),
        }
    }

    /// Withdraws a waiter. Returns `false` if its wait had already been ended
    /// by a hand-off, close or failure (whose result it must then take).
    pub(super) fn cancel(&self, me: &Arc<Waiter>) -> bool {
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

    /// Unparks the oldest waiter so that it scans again (a no-op system
    /// call-wise if it is still spinning).
    pub(super) fn wake_oldest(&self) {
        let oldest = lock(&self.queue).front().cloned();
        if let Some(w) = oldest {
            w.thread.unpark();
        }
    }

    /// Gives an owned seat to the oldest live waiter. Returns `false` (and
    /// the caller still owns the seat) if no waiter took it.
    pub(super) fn hand_off(&self, slot: &Seat<C, X>) -> bool {
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
}
