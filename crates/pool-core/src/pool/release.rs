//! The return path: a loan comes back, is checked and reset (on this thread
//! or a `pool-io` worker), and its seat goes to a waiter, becomes idle, or
//! is closed and freed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::bag::{Slot, FLAG_BORROWER_CLOSED, FLAG_EVICT, FLAG_RETURNING, RESERVED, VACANT};
use crate::clock::{self, Millis};
use crate::observe::events::{CheckinEvent, ReleaseEvent};
use crate::observe::metrics::Shared;
use crate::types::CloseReason;
use crate::ManageConnection;

use super::creator::YOUNG;
use super::shared::Inner;
use super::thread_cache::LocalSeats;
use super::{guarded, CLOSED};

impl<M: ManageConnection> Inner<M> {
    /// Bookkeeping when a loan ends (returned, closed by its borrower, or
    /// detached): time lent, and leak detection's "returned" report.
    #[inline]
    pub(super) fn released(&self, local: &LocalSeats, slot: &Slot<M::Connection>, now: Millis) {
        let lent_ms = now.saturating_sub(crate::observe::leak::lent_time(
            slot.lent_at.load(Ordering::Relaxed),
        ));
        if let Some(shard) = &local.shard {
            shard.usage.record_owned(lent_ms);
        }
        if self.handler.is_some() || self.leaks.is_some() {
            self.released_events(slot, lent_ms);
        }
        // Between loans the stamp reads "never" (see `Slot::lent_at`).
        slot.lent_at.store(clock::NEVER, Ordering::Relaxed);
    }

    /// The event handler's check-in event and leak detection's "returned"
    /// report, out of the way of a pool that has neither.
    #[inline(never)]
    pub(super) fn released_events(&self, slot: &Slot<M::Connection>, lent_ms: Millis) {
        if let Some(h) = &self.handler {
            let id = slot.id.load(Ordering::Relaxed);
            let lent_for = Duration::from_millis(lent_ms);
            guarded(|| h.handle_checkin(CheckinEvent { id, lent_for }));
        }
        if let Some(leaks) = &self.leaks {
            leaks.returned(&self.name, slot);
        }
    }

    /// The return path: reset, checks, then back to a waiter or idle.
    #[inline]
    pub(super) fn check_in(&self, local: &LocalSeats, slot: &Slot<M::Connection>, now: Millis) {
        let reason = if self.status.load(Ordering::Acquire) == CLOSED {
            Some(CloseReason::PoolClosed)
        } else {
            // SAFETY: the caller owns the seat (IN_USE) until release below.
            unsafe {
                slot.with_conn(|conn| {
                    let conn = conn?;
                    if guarded(|| self.manager.has_broken(conn)).unwrap_or(true) {
                        return Some(CloseReason::Broken);
                    }
                    None
                })
            }
        };
        if let Some(reason) = reason {
            return self.close_slot(slot, reason);
        }
        local.push(slot as *const Slot<M::Connection> as usize);
        // In the background only while nobody waits. With waiters the pool
        // is saturated and the returning thread would only queue again; it
        // is already running, while a worker must first be woken and then
        // wait for a CPU that the database server and the other borrowers
        // need (on 2 cores, 8 threads on 4 PostgreSQL connections ran about
        // twice as fast with resets on the returning thread).
        if self.background_reset
            && self.bag.waiting() == 0
            // SAFETY: as above.
            && unsafe { slot.with_conn(|c| c.is_some_and(|c| self.manager.needs_reset(c))) }
            && self.send_to_reset(slot)
        {
            return;
        }
        self.reset_and_release(slot, now);
    }

    /// Hands a returned seat (owned, `IN_USE`) to a `pool-io` thread that
    /// resets it and makes it available. False if no worker thread could
    /// take it: then the caller resets it, unwatched, where the manager
    /// bounds the reset by itself (the driver crates' `deadline::run` cannot
    /// start a thread either, so their reset fails and the connection is
    /// closed).
    #[cold]
    #[inline(never)]
    pub(super) fn send_to_reset(&self, slot: &Slot<M::Connection>) -> bool {
        // Off the borrower's critical path: the seat stays IN_USE (owned by
        // the job) until the reset is done, then becomes available. The loan
        // may have borrowed the pool (not counted it): the job takes its own
        // reference. `me` upgrades while the caller's loan keeps the pool
        // alive.
        let Some(inner) = self.me.upgrade() else {
            return false;
        };
        let index = slot.index as usize;
        slot.flags.fetch_or(FLAG_RETURNING, Ordering::Relaxed);
        self.return_jobs.fetch_add(1, Ordering::SeqCst);
        let job = Box::new(move || {
            let slot = inner.bag.slot(index);
            inner.reset_in_background(slot);
            inner.return_jobs.fetch_sub(1, Ordering::SeqCst);
        });
        if crate::deadline::detach(job).is_ok() {
            return true;
        }
        self.return_jobs.fetch_sub(1, Ordering::SeqCst);
        slot.flags.fetch_and(!FLAG_RETURNING, Ordering::Relaxed);
        false
    }

    /// The background job of `check_in`, on a worker thread that owns the
    /// seat (`IN_USE`).
    ///
    /// With a reset limit the reset is *watched*: the connection leaves the
    /// seat, the seat is stamped (`Slot::begin_watch`), and the reset runs
    /// right here (`deadline::watched` makes the manager's own
    /// `deadline::run` run inline rather than hop to another thread). If it
    /// outlives the limit, the housekeeper gives the seat up
    /// (`Slot::give_up_watch`, then `give_up_reset`), so the pool's capacity
    /// does not wait for a server that never answers; this job then only
    /// drops the connection when the reset returns at last.
    pub(super) fn reset_in_background(&self, slot: &Slot<M::Connection>) {
        let Some(limit) = self.reset_watch else {
            return self.reset_and_release(slot, clock::now());
        };
        // SAFETY: `check_in` handed this job the seat (IN_USE).
        let Some(mut conn) = (unsafe { slot.take() }) else {
            return self.close_slot(slot, CloseReason::ResetFailed);
        };
        let since = slot.begin_watch(clock::now());
        let due = clock::after(since, limit);
        if due < self.housekeeper_next.load(Ordering::Relaxed) {
            self.housekeeper_next.fetch_min(due, Ordering::Relaxed);
            self.ring_housekeeper();
        }
        let ok = crate::deadline::watched(|| guarded(|| self.manager.reset(&mut conn).is_ok()));
        if !slot.end_watch(since) {
            // Given up by the housekeeper: the connection was counted as
            // closed then. Close it, then free the seat it held.
            if guarded(move || self.manager.close(conn)).is_none() {
                log::warn!(
                    "pool \"{}\": closing a given-up connection panicked",
                    self.name
                );
            }
            slot.wait_given_up();
            return self.end_abandoned(slot);
        }
        // SAFETY: winning `end_watch` gives the seat back to this job.
        unsafe { slot.put(conn) };
        self.after_reset(slot, ok == Some(true), clock::now());
    }

    /// Runs `reset` on a seat the caller owns, then the return checks, then
    /// makes it available (or closes it).
    #[inline]
    pub(super) fn reset_and_release(&self, slot: &Slot<M::Connection>, now: Millis) {
        // SAFETY: the caller owns the seat (IN_USE) until release below.
        let reset_ok = unsafe {
            slot.with_conn(|conn| {
                conn.is_some_and(|c| guarded(|| self.manager.reset(c).is_ok()) == Some(true))
            })
        };
        self.after_reset(slot, reset_ok, now);
    }

    /// The return checks after a reset, on a seat the caller owns; then the
    /// seat becomes available (or its connection is closed).
    #[inline]
    pub(super) fn after_reset(&self, slot: &Slot<M::Connection>, reset_ok: bool, now: Millis) {
        // A plain load first: this is every return's path, and the flag is
        // set only by a background reset (no locked instruction otherwise).
        if slot.flags.load(Ordering::Relaxed) & FLAG_RETURNING != 0 {
            slot.flags.fetch_and(!FLAG_RETURNING, Ordering::Relaxed);
        }
        if !reset_ok {
            return self.close_slot(slot, CloseReason::ResetFailed);
        }
        if slot.flags.load(Ordering::Relaxed) & FLAG_EVICT != 0 || self.over_size(slot) {
            return self.close_slot(slot, CloseReason::Evicted);
        }
        if now >= slot.retire_at.load(Ordering::Relaxed) {
            return self.close_slot(slot, CloseReason::MaxLifetime);
        }
        slot.last_used.store(now, Ordering::Relaxed);
        self.make_available(slot);
    }

    /// Frees a seat whose watched reset outlived the manager's limit; the
    /// caller won `Slot::give_up_watch`, so it owns the seat, which holds no
    /// connection (the resetting thread has it, and drops it when its reset
    /// returns). Counted as a close for `reset_failed` now, so that a
    /// replacement can be opened.
    pub(super) fn give_up_reset(&self, slot: &Slot<M::Connection>, limit: Millis) {
        log::warn!(
            "pool \"{}\": the session reset of connection {} took longer than {limit} ms: \
             connection given up (it is closed when the reset returns, and holds its place \
             in max_size until then)",
            self.name,
            slot.id.load(Ordering::Relaxed)
        );
        self.abandoned.fetch_add(1, Ordering::SeqCst);
        slot.flags.fetch_and(!FLAG_RETURNING, Ordering::Relaxed);
        self.retire(slot, CloseReason::ResetFailed, None);
        // The seat goes back to the resetting thread, which frees it once
        // the connection is closed (`reset_in_background`).
        slot.hand_back();
    }

    /// The end of work the pool gave up on (a late connect, a given-up
    /// reset) on a seat the caller owns again and has emptied: the seat is
    /// free, and `max_size` has room again.
    pub(super) fn end_abandoned(&self, slot: &Slot<M::Connection>) {
        self.abandoned.fetch_sub(1, Ordering::SeqCst);
        self.vacate(slot);
    }

    /// Releases an owned seat to a waiter or as idle, then closes it again if
    /// the pool was closed or shrunk meanwhile. This is one half of a Dekker
    /// pair: `release` stores `IDLE` and fences before we load the status;
    /// `close`, `resize` and `soft_evict_all` store, fence, then sweep idle
    /// seats. One of the two sides sees the other.
    #[inline]
    pub(super) fn make_available(&self, slot: &Slot<M::Connection>) {
        if self.bag.release(slot) {
            return;
        }
        if (self.status.load(Ordering::SeqCst) == CLOSED
            || self.over_size(slot)
            || slot.flags.load(Ordering::SeqCst) & FLAG_EVICT != 0)
            && slot.try_claim(RESERVED)
        {
            let reason = if self.status.load(Ordering::SeqCst) == CLOSED {
                CloseReason::PoolClosed
            } else {
                CloseReason::Evicted
            };
            self.close_slot(slot, reason);
        }
    }

    /// Closes the connection in a seat the caller owns on a `pool-io`
    /// thread, which owns the seat until the connection is closed (so its
    /// replacement still waits for the close: invariant 2); on this thread
    /// if no worker can take it.
    #[cold]
    #[inline(never)]
    pub(super) fn close_slot_off_thread(&self, slot: &Slot<M::Connection>, reason: CloseReason) {
        let Some(inner) = self.me.upgrade() else {
            return self.close_slot(slot, reason);
        };
        let index = slot.index as usize;
        slot.flags.fetch_or(FLAG_RETURNING, Ordering::Relaxed);
        self.return_jobs.fetch_add(1, Ordering::SeqCst);
        let job = Box::new(move || {
            inner.close_slot(inner.bag.slot(index), reason);
            inner.return_jobs.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(job) = crate::deadline::detach(job) {
            job();
        }
    }

    /// Closes the connection in a seat the caller owns and frees the seat.
    #[cold]
    pub(super) fn close_slot(&self, slot: &Slot<M::Connection>, reason: CloseReason) {
        // SAFETY: the caller owns the seat (IN_USE or RESERVED).
        let conn = unsafe { slot.take() };
        // Close before the seat is vacant, so that the replacement is never
        // open at the same time as the connection it replaces.
        if let Some(conn) = conn {
            self.retire(slot, reason, Some(conn));
        }
        self.vacate(slot);
    }

    /// Counts the end of a seat's connection and closes it (`None`: it is
    /// closed elsewhere, see `give_up_reset`). The caller owns the seat.
    pub(super) fn retire(
        &self,
        slot: &Slot<M::Connection>,
        reason: CloseReason,
        conn: Option<M::Connection>,
    ) {
        let id = slot.id.load(Ordering::Relaxed);
        self.stats.closed[reason.index()].fetch_add(1, Ordering::Relaxed);
        if reason == CloseReason::FailedValidation {
            Shared::bump(&self.stats.validation_failures);
        }
        let age = clock::now().saturating_sub(slot.created.load(Ordering::Relaxed));
        if self.config.metrics {
            self.stats.lifetime.record_shared(age);
        }
        // The connect-storm cap (`workers::ChurnGuard`) counts connections
        // the pool, its settings or the server ended young; one its
        // borrower chose to close is the application's own churn.
        if age < YOUNG
            && reason != CloseReason::PoolClosed
            && slot.flags.load(Ordering::Relaxed) & FLAG_BORROWER_CLOSED == 0
        {
            self.young_closes.fetch_add(1, Ordering::Relaxed);
            self.young_reason
                .store(reason.index() as u8, Ordering::Relaxed);
        }
        if let Some(conn) = conn {
            if guarded(move || self.manager.close(conn)).is_none() {
                log::warn!("pool \"{}\": closing connection {id} panicked", self.name);
            }
            log::debug!("pool \"{}\": closed connection {id} ({reason})", self.name);
        }
        self.total.fetch_sub(1, Ordering::SeqCst);
        if let Some(h) = &self.handler {
            let age = Duration::from_millis(age);
            guarded(|| h.handle_release(ReleaseEvent { id, age, reason }));
        }
    }

    /// Marks a seat the caller owns (and has emptied) vacant.
    pub(super) fn vacate(&self, slot: &Slot<M::Connection>) {
        slot.id.store(0, Ordering::Relaxed);
        // No mark outlives its connection (see the creator's publish).
        slot.flags.store(0, Ordering::Relaxed);
        slot.state.store(VACANT, Ordering::Release);
        if self.status.load(Ordering::Acquire) != CLOSED {
            self.ring_creator_if_short(self.bag.waiting());
        }
    }
}
