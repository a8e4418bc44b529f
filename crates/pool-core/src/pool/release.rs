//! The return path: a loan comes back, is checked and reset (on this thread
//! or a `pool-io` worker), and its seat goes to a waiter, becomes idle, or
//! is closed and freed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock::{self, Millis};
use crate::info::HookContext;
use crate::observe::events::{CheckinEvent, ReleaseEvent};
use crate::observe::metrics::PoolCounters;
use crate::stamps::{
    take_extensions, with_conn_and_extensions, Claimed, GivingUp, Seat, FLAG_BORROWER_CLOSED,
    FLAG_EVICT, FLAG_RETURNING,
};
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
    pub(super) fn released(&self, local: &LocalSeats, slot: &Seat<M::Connection>, now: Millis) {
        let lent_ms = now.saturating_sub(crate::observe::leak::lent_time(
            slot.lent_at.load(Ordering::Relaxed),
        ));
        if let Some(shard) = &local.shard {
            shard.usage.record_owned(lent_ms);
        }
        if self.handler.is_some() || self.leaks.is_some() {
            self.released_events(slot, lent_ms);
        }
        // Between loans the stamp reads "never" (see `Seat::lent_at`).
        slot.lent_at.store(clock::NEVER, Ordering::Relaxed);
    }

    /// The event handler's check-in event and leak detection's "returned"
    /// report, out of the way of a pool that has neither.
    #[inline(never)]
    pub(super) fn released_events(&self, slot: &Seat<M::Connection>, lent_ms: Millis) {
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
    pub(super) fn check_in<'a>(
        &'a self,
        local: &LocalSeats,
        mut claimed: Claimed<'a, M::Connection>,
        now: Millis,
    ) {
        let reason = if self.status.load(Ordering::Acquire) == CLOSED {
            Some(CloseReason::PoolClosed)
        } else {
            claimed.with_conn(|conn| {
                let conn = conn?;
                if guarded(|| self.manager.has_broken(conn)).unwrap_or(true) {
                    return Some(CloseReason::Broken);
                }
                None
            })
        };
        if let Some(reason) = reason {
            return self.close_slot(claimed, reason);
        }
        // The user's hook (a no-op the compiler removes, by default).
        let slot = claimed.seat();
        let keep = with_conn_and_extensions(&mut claimed, |conn, ext| match conn {
            Some(conn) => guarded(|| {
                let mut cx = HookContext::new(slot, ext, now);
                self.manager.on_checkin(conn, &mut cx)
            })
            .unwrap_or(false),
            None => true,
        });
        if !keep {
            return self.close_slot(claimed, CloseReason::Rejected);
        }
        local.push(claimed.seat() as *const Seat<M::Connection> as usize);
        // In the background while nobody waits. With waiters, the returning
        // thread resets: it is already running, while a worker must first be
        // woken and then wait for a CPU that the server and the other
        // borrowers need. Unless the manager's reset would hop to a worker
        // anyway (`reset_with_waiters`): then the worker runs it inline,
        // watched, and gives the seat straight to a waiter, one hand-off
        // instead of two (docs/performance.md, "Resets on the returning
        // thread").
        if self.background_reset
            && (self.bag.waiting() == 0 || self.reset_with_waiters)
            && claimed.with_conn(|c| c.is_some_and(|c| self.manager.needs_reset(c)))
        {
            let Some(claimed) = self.send_to_reset(claimed) else {
                return;
            };
            return self.reset_and_release(claimed, now);
        }
        self.reset_and_release(claimed, now);
    }

    /// Hands a returned seat (owned, `IN_USE`) to a `pool-io` thread that
    /// resets it and makes it available; when no worker thread can take
    /// it, that job runs here, still watched. Gives the seat back only if
    /// the pool is being dropped (then the caller resets it itself).
    #[cold]
    #[inline(never)]
    pub(super) fn send_to_reset<'a>(
        &'a self,
        claimed: Claimed<'a, M::Connection>,
    ) -> Option<Claimed<'a, M::Connection>> {
        // Off the borrower's critical path: the seat stays IN_USE (owned by
        // the job) until the reset is done, then becomes available. The loan
        // may have borrowed the pool (not counted it): the job takes its own
        // reference. `me` upgrades while the caller's loan keeps the pool
        // alive.
        let Some(inner) = self.me.upgrade() else {
            return Some(claimed);
        };
        claimed.flags.fetch_or(FLAG_RETURNING, Ordering::Relaxed);
        self.return_jobs.fetch_add(1, Ordering::SeqCst);
        let handover = claimed.handover();
        let job = Box::new(move || {
            let claimed = inner.bag.take_over(handover);
            inner.reset_in_background(claimed);
            inner.return_jobs.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(job) = crate::deadline::detach(job) {
            job(); // no worker thread: reset here, watched all the same
        }
        None
    }

    /// The background job of `check_in`, on a worker thread that owns the
    /// seat.
    ///
    /// With a reset limit the reset is *watched*: the connection leaves the
    /// seat, the seat is stamped (`Claimed::begin_watch`), and the reset runs
    /// right here (`deadline::watched` makes the manager's own
    /// `deadline::run` run inline rather than hop to another thread). If it
    /// outlives the limit, the housekeeper gives the seat up
    /// (`Seat::give_up_watch`, then `give_up_reset`), so the pool's capacity
    /// does not wait for a server that never answers; this job then only
    /// drops the connection when the reset returns at last.
    pub(super) fn reset_in_background<'a>(&'a self, mut claimed: Claimed<'a, M::Connection>) {
        let Some(limit) = self.reset_watch else {
            return self.reset_and_release(claimed, clock::now());
        };
        let Some(mut conn) = claimed.take() else {
            return self.close_slot(claimed, CloseReason::ResetFailed);
        };
        let watch = claimed.begin_watch(clock::now());
        let due = clock::after(watch.since(), limit);
        if due < self.housekeeper_next.load(Ordering::Relaxed) {
            self.housekeeper_next.fetch_min(due, Ordering::Relaxed);
            self.ring_housekeeper();
        }
        let ok = crate::deadline::watched(|| guarded(|| self.manager.reset(&mut conn).is_ok()));
        match watch.end() {
            Ok(mut claimed) => {
                claimed.put(conn);
                self.after_reset(claimed, ok == Some(true), clock::now());
            }
            Err(given_up) => {
                // Given up by the housekeeper: the connection was counted as
                // closed then. Close it, then free the seat it held.
                if guarded(move || self.manager.close(conn)).is_none() {
                    log::warn!(
                        "pool \"{}\": closing a given-up connection panicked",
                        self.name
                    );
                }
                self.end_abandoned(given_up.wait());
            }
        }
    }

    /// Runs `reset` on a seat the caller owns, then the return checks, then
    /// makes it available (or closes it).
    #[inline]
    pub(super) fn reset_and_release<'a>(
        &'a self,
        mut claimed: Claimed<'a, M::Connection>,
        now: Millis,
    ) {
        let reset_ok = claimed.with_conn(|conn| {
            conn.is_some_and(|c| guarded(|| self.manager.reset(c).is_ok()) == Some(true))
        });
        self.after_reset(claimed, reset_ok, now);
    }

    /// The return checks after a reset, on a seat the caller owns; then the
    /// seat becomes available (or its connection is closed).
    #[inline]
    pub(super) fn after_reset<'a>(
        &'a self,
        claimed: Claimed<'a, M::Connection>,
        reset_ok: bool,
        now: Millis,
    ) {
        // A plain load first: this is every return's path, and the flag is
        // set only by a background reset (no locked instruction otherwise).
        if claimed.flags.load(Ordering::Relaxed) & FLAG_RETURNING != 0 {
            claimed.flags.fetch_and(!FLAG_RETURNING, Ordering::Relaxed);
        }
        if !reset_ok {
            return self.close_slot(claimed, CloseReason::ResetFailed);
        }
        if claimed.flags.load(Ordering::Relaxed) & FLAG_EVICT != 0 || self.over_size(&claimed) {
            return self.close_slot(claimed, CloseReason::Evicted);
        }
        if now >= claimed.retire_at.load(Ordering::Relaxed) {
            return self.close_slot(claimed, CloseReason::MaxLifetime);
        }
        claimed.last_used.store(now, Ordering::Relaxed);
        self.make_available(claimed);
    }

    /// Frees a seat whose watched reset outlived the manager's limit; the
    /// caller won `Seat::give_up_watch`, so it may read the seat, which
    /// holds no connection (the resetting thread has it, and drops it when
    /// its reset returns). Counted as a close for `reset_failed` now, so
    /// that a replacement can be opened.
    pub(super) fn give_up_reset(&self, giving_up: GivingUp<'_, M::Connection>, limit: Millis) {
        let slot = giving_up.seat();
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
        giving_up.hand_back();
    }

    /// The end of work the pool gave up on (a late connect, a given-up
    /// reset) on a seat the caller owns again and has emptied: the seat is
    /// free, and `max_size` has room again.
    pub(super) fn end_abandoned(&self, claimed: Claimed<'_, M::Connection>) {
        self.abandoned.fetch_sub(1, Ordering::SeqCst);
        self.vacate(claimed);
    }

    /// Releases an owned seat to a waiter or as idle, then closes it again if
    /// the pool was closed or shrunk meanwhile (`Bag::release_or_reclaim`,
    /// one half of a Dekker pair whose other half is the sweep of `close`,
    /// `resize` and `soft_evict_all`: they store, fence, then sweep idle
    /// seats, and one of the two sides sees the other).
    #[inline]
    pub(super) fn make_available(&self, claimed: Claimed<'_, M::Connection>) {
        let retire = |seat: &Seat<M::Connection>| {
            self.status.load(Ordering::SeqCst) == CLOSED
                || self.over_size(seat)
                || seat.flags.load(Ordering::SeqCst) & FLAG_EVICT != 0
        };
        if let Some(claimed) = self.bag.release_or_reclaim(claimed, retire) {
            let reason = if self.status.load(Ordering::SeqCst) == CLOSED {
                CloseReason::PoolClosed
            } else {
                CloseReason::Evicted
            };
            self.close_slot(claimed, reason);
        }
    }

    /// Closes the connection in a seat the caller owns on a `pool-io`
    /// thread, which owns the seat until the connection is closed (so its
    /// replacement still waits for the close: invariant 2); on this thread
    /// if no worker can take it.
    #[cold]
    #[inline(never)]
    pub(super) fn close_slot_off_thread(
        &self,
        claimed: Claimed<'_, M::Connection>,
        reason: CloseReason,
    ) {
        let Some(inner) = self.me.upgrade() else {
            return self.close_slot(claimed, reason);
        };
        claimed.flags.fetch_or(FLAG_RETURNING, Ordering::Relaxed);
        self.return_jobs.fetch_add(1, Ordering::SeqCst);
        let handover = claimed.handover();
        let job = Box::new(move || {
            inner.close_slot(inner.bag.take_over(handover), reason);
            inner.return_jobs.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(job) = crate::deadline::detach(job) {
            job();
        }
    }

    /// Closes the connection in a seat the caller owns and frees the seat.
    #[cold]
    pub(crate) fn close_slot(&self, mut claimed: Claimed<'_, M::Connection>, reason: CloseReason) {
        // Close before the seat is vacant, so that the replacement is never
        // open at the same time as the connection it replaces.
        if let Some(conn) = claimed.take() {
            self.retire(&claimed, reason, Some(conn));
        }
        self.vacate(claimed);
    }

    /// Counts the end of a seat's connection and closes it (`None`: it is
    /// closed elsewhere, see `give_up_reset`). The caller owns the seat.
    pub(super) fn retire(
        &self,
        slot: &Seat<M::Connection>,
        reason: CloseReason,
        conn: Option<M::Connection>,
    ) {
        let id = slot.id.load(Ordering::Relaxed);
        self.stats.closed[reason.index()].fetch_add(1, Ordering::Relaxed);
        if reason == CloseReason::FailedValidation {
            PoolCounters::bump(&self.stats.validation_failures);
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

    /// Marks a seat the caller owns (and has emptied) vacant; the user's
    /// data about its connection goes with it.
    pub(super) fn vacate(&self, mut claimed: Claimed<'_, M::Connection>) {
        let ext = take_extensions(&mut claimed);
        if !ext.is_empty() && guarded(move || drop(ext)).is_none() {
            log::warn!(
                "pool \"{}\": dropping connection {}'s extensions panicked",
                self.name,
                claimed.id.load(Ordering::Relaxed)
            );
        }
        claimed.id.store(0, Ordering::Relaxed);
        // No mark outlives its connection (see the creator's publish).
        claimed.flags.store(0, Ordering::Relaxed);
        claimed.vacate();
        if self.status.load(Ordering::Acquire) != CLOSED {
            self.ring_creator_if_short(self.bag.waiting());
        }
    }
}
