//! The borrow path: the thread cache, then a scan of the seats, then the
//! waiter queue; and the checks a connection passes before it is lent.

use std::panic::Location;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::bag::IN_USE;
use crate::clock::{self, Millis};
use crate::error::Error;
use crate::info::HookContext;
use crate::observe::events::{CheckoutEvent, TimeoutEvent};
use crate::observe::metrics::PoolCounters;
use crate::stamps::{with_conn_and_extensions, Claimed, Seat, WaitOutcome, FLAG_EVICT};
use crate::types::CloseReason;
use crate::ManageConnection;

use super::failures::FAIL_FAST_FRESH;
use super::loan::PooledConnection;
use super::shared::Inner;
use super::thread_cache::{LocalSeats, NO_SEAT};
use super::{guarded, CLOSED, RUNNING, SUSPENDED};

/// A duration in whole microseconds, saturating.
#[inline]
pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// How much time a borrow-time validation may take: what is left of the
/// borrower's one deadline, fixed when `get` was called.
#[derive(Clone, Copy, Debug)]
pub(super) enum Budget {
    /// The fast path: the borrower's whole timeout. Its clock starts when
    /// the validation does (the fast path reads no `Instant` before), and a
    /// failed validation hands that start to the slow path
    /// (`LocalSeats::fast_start`), so the borrower keeps one deadline.
    Fresh(Duration),
    /// The slow path: the borrower's deadline (`None`: none that an
    /// `Instant` can hold).
    Until(Option<Instant>),
}

/// What a borrow-time check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Vetted {
    /// Lend it.
    Good,
    /// Close it for this reason.
    Bad(CloseReason),
    /// The borrower's deadline passed before the validation could start:
    /// the connection was not tested, and goes back as it was.
    NoTime,
}

impl<M: ManageConnection> Inner<M> {
    /// The borrow path: thread cache, then a scan, then the waiter queue.
    ///
    /// Split so that the loan comes back in registers. A
    /// `Result<PooledConnection, Error>` is 72 bytes and is returned through
    /// memory: when `acquire` was one function that the compiler chose not
    /// to inline (criterion's loop, or any caller of some size), the caller
    /// read the loan back with one 16-byte load from two 8-byte stores, which
    /// the CPU cannot forward (docs/performance.md, "A loan in registers").
    /// The fast path returns an `Option` of the two-word loan (`rax:rdx`),
    /// and only this small match is inlined into each call site.
    #[track_caller]
    #[inline(always)]
    pub(super) fn acquire(&self, timeout: Duration) -> Result<PooledConnection<'_, M>, Error> {
        match self.acquire_fast(timeout) {
            Some(conn) => Ok(conn),
            None => self.acquire_slow(timeout),
        }
    }

    /// A seat from this thread's cache, claimed and vetted, or `None` (then
    /// `acquire_slow`: the pool is not running, a waiter has waited too long,
    /// the cache is empty or taken, or the claimed connection was closed).
    #[track_caller]
    #[inline(never)]
    pub(super) fn acquire_fast(&self, timeout: Duration) -> Option<PooledConnection<'_, M>> {
        // Newcomers may overtake waiters, unless one has waited too long
        // (then they queue behind it: see `bag`).
        if self.status.load(Ordering::Acquire) == RUNNING && !self.bag.starving() {
            let now = clock::now();
            let local = self.local();
            for entry in &local.seats {
                let addr = entry.load(Ordering::Relaxed);
                if addr == NO_SEAT {
                    break; // the entries after an empty one are empty
                }
                // SAFETY: only `check_in` stores into this thread's entries
                // for this pool, and only addresses of this pool's seats,
                // which never move and live as long as the bag (`bag`),
                // which `&self` keeps alive.
                let seat = unsafe { &*(addr as *const Seat<M::Connection>) };
                if let Some(claimed) = seat.try_claim(IN_USE) {
                    return self.check_out(local, claimed, now, Budget::Fresh(timeout), 0);
                }
            }
        }
        None
    }

    #[cold]
    #[track_caller]
    pub(super) fn acquire_slow(&self, timeout: Duration) -> Result<PooledConnection<'_, M>, Error> {
        // One deadline for the whole call, fixed here (or when the fast
        // path's failed validation began): every validation and wait below
        // gets what is left of it, never more.
        let start = self
            .local()
            .fast_start
            .lock()
            .take()
            .unwrap_or_else(Instant::now);
        let deadline = start.checked_add(timeout);
        // `try_get` (no wait) still gives an idle connection's validation
        // its `validation_timeout`: that is not a wait for another borrower.
        let vet_until = if timeout.is_zero() {
            Instant::now().checked_add(self.config.validation_timeout)
        } else {
            deadline
        };
        let remaining = || match deadline {
            Some(d) => d
                .checked_duration_since(Instant::now())
                .filter(|r| !r.is_zero()),
            None => Some(Duration::from_secs(3600)),
        };
        loop {
            match self.status.load(Ordering::Acquire) {
                RUNNING => {}
                CLOSED => return Err(self.closed_error()),
                _ => {
                    self.wait_while_suspended(deadline)?;
                    continue;
                }
            }
            let local = self.local();
            let scan_from = local.scan_from as usize;
            let max = self.max_size.load(Ordering::Acquire);
            let may_scan = !self.bag.starving();
            if let Some(claimed) = may_scan.then(|| self.bag.scan(scan_from, max)).flatten() {
                let waited = micros(start.elapsed());
                let budget = Budget::Until(vet_until);
                if let Some(conn) = self.check_out(local, claimed, clock::now(), budget, waited) {
                    return Ok(conn);
                }
                if vet_until.is_some_and(|d| Instant::now() >= d) {
                    self.ring_creator_if_short(1);
                    return Err(self.timeout_error(start));
                }
                continue;
            }
            if self.config.fail_fast {
                if let Some(err) = self.down_error() {
                    return Err(err);
                }
            }
            if remaining().is_none() {
                self.ring_creator_if_short(1);
                return Err(self.timeout_error(start));
            }
            let outcome = self.bag.wait(
                || {
                    self.bag
                        .scan(scan_from, self.max_size.load(Ordering::Acquire))
                },
                |waiting| self.ring_creator_if_short(waiting),
                remaining,
                |extra| self.make_available(extra),
            );
            match outcome {
                WaitOutcome::Got(claimed) => {
                    let waited = micros(start.elapsed());
                    let budget = Budget::Until(deadline);
                    if let Some(conn) = self.check_out(local, claimed, clock::now(), budget, waited)
                    {
                        return Ok(conn);
                    }
                }
                WaitOutcome::TimedOut => return Err(self.timeout_error(start)),
                WaitOutcome::Closed => return Err(self.closed_error()),
                WaitOutcome::Failed => {
                    if let Some(err) = self.down_error() {
                        return Err(err);
                    }
                }
            }
        }
    }

    /// Validates a connection about to be lent that has not been used within
    /// the alive-bypass window, within `validation_timeout` and what is left
    /// of the borrower's deadline. Out of line: the borrow of a recently
    /// used connection never gets here.
    #[cold]
    #[inline(never)]
    pub(super) fn validate(
        &self,
        local: &LocalSeats,
        conn: &mut M::Connection,
        budget: Budget,
    ) -> Vetted {
        let now = Instant::now();
        let (fresh, deadline) = match budget {
            Budget::Fresh(timeout) if timeout.is_zero() => {
                (true, now.checked_add(self.config.validation_timeout))
            }
            Budget::Fresh(timeout) => (true, now.checked_add(timeout)),
            Budget::Until(deadline) => (false, deadline),
        };
        let limit = match deadline {
            None => self.config.validation_timeout,
            Some(d) => match d.checked_duration_since(now).filter(|r| !r.is_zero()) {
                Some(left) => self.config.validation_timeout.min(left),
                None => return Vetted::NoTime,
            },
        };
        let ok = guarded(|| self.manager.is_valid(conn, limit).is_ok());
        if ok == Some(true) {
            return Vetted::Good;
        }
        if fresh {
            // The slow path comes next and keeps this deadline.
            *local.fast_start.lock() = Some(now);
        }
        Vetted::Bad(CloseReason::FailedValidation)
    }

    /// Vets a seat the caller just claimed (`IN_USE`) and wraps it, or closes
    /// the connection and returns `None` if it must not be lent.
    #[track_caller]
    #[inline]
    pub(super) fn check_out<'a>(
        &'a self,
        local: &LocalSeats,
        mut claimed: Claimed<'a, M::Connection>,
        now: Millis,
        budget: Budget,
        waited_us: u64,
    ) -> Option<PooledConnection<'a, M>> {
        let status = self.status.load(Ordering::SeqCst);
        if status != RUNNING {
            // Closed or suspended after we claimed it: put it back (release
            // closes it if the pool is closed).
            self.check_in(local, claimed, now);
            return None;
        }
        let slot = claimed.seat();
        let vetted = if slot.flags.load(Ordering::Relaxed) & FLAG_EVICT != 0
            || slot.index as usize >= self.max_size.load(Ordering::Relaxed)
        {
            Vetted::Bad(CloseReason::Evicted)
        } else if now >= slot.retire_at.load(Ordering::Relaxed) {
            Vetted::Bad(CloseReason::MaxLifetime)
        } else {
            claimed.with_conn(|conn| {
                let Some(conn) = conn else {
                    return Vetted::Good;
                };
                if guarded(|| self.manager.has_broken(conn)).unwrap_or(true) {
                    return Vetted::Bad(CloseReason::Broken);
                }
                if now.saturating_sub(slot.last_used.load(Ordering::Relaxed)) >= self.bypass_ms {
                    return self.validate(local, conn, budget);
                }
                Vetted::Good
            })
        };
        match vetted {
            Vetted::Good => {}
            Vetted::Bad(reason @ (CloseReason::FailedValidation | CloseReason::Broken)) => {
                // Likely dead: closing it may block (a black-holed
                // network), and the borrower's deadline is not for that.
                self.close_slot_off_thread(claimed, reason);
                return None;
            }
            Vetted::Bad(reason) => {
                self.close_slot(claimed, reason);
                return None;
            }
            Vetted::NoTime => {
                // Untested, not known bad: back to the next borrower.
                self.make_available(claimed);
                return None;
            }
        }
        // The owner alone writes it: a load and a store, no locked op.
        slot.uses
            .store(slot.uses.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        // The user's hook (a no-op the compiler removes, by default).
        let lend = with_conn_and_extensions(&mut claimed, |conn, ext| match conn {
            Some(conn) => guarded(|| {
                let mut cx = HookContext::new(slot, ext, now);
                self.manager.on_checkout(conn, &mut cx)
            })
            .unwrap_or(false),
            None => true,
        });
        if !lend {
            self.vetoed(local, claimed, now, budget);
            return None;
        }
        slot.lent_at.store(now, Ordering::Relaxed);
        if let Some(shard) = &local.shard {
            shard.wait.record_owned(waited_us);
        }
        if let Some(h) = &self.handler {
            let id = slot.id.load(Ordering::Relaxed);
            let wait = Duration::from_micros(waited_us);
            guarded(|| h.handle_checkout(CheckoutEvent { id, wait }));
        }
        if let Some(leaks) = &self.leaks {
            let thread = local.thread_no.load(Ordering::Relaxed);
            leaks.lend(slot, now, thread, Location::caller());
            let due = clock::after(now, leaks.threshold);
            if due < self.housekeeper_next.load(Ordering::Relaxed) {
                self.housekeeper_next.fetch_min(due, Ordering::Relaxed);
                self.ring_housekeeper();
            }
        }
        Some(PooledConnection::new(self, claimed))
    }

    /// A connection the checkout hook vetoed: closed off this thread (it may
    /// be dead), and the borrower's deadline kept for its next try.
    #[cold]
    #[inline(never)]
    fn vetoed<'a>(
        &'a self,
        local: &LocalSeats,
        claimed: Claimed<'a, M::Connection>,
        began: Millis,
        budget: Budget,
    ) {
        log::debug!(
            "pool \"{}\": the checkout hook vetoed connection {}",
            self.name,
            claimed.id.load(Ordering::Relaxed)
        );
        if let Budget::Fresh(_) = budget {
            // The fast path read no `Instant`: the slow path that comes
            // next starts from when this borrow began, to the coarse clock.
            let spent = Duration::from_millis(clock::now().saturating_sub(began));
            let mut start = local.fast_start.lock();
            let now = Instant::now();
            start.get_or_insert(now.checked_sub(spent).unwrap_or(now));
        }
        self.close_slot_off_thread(claimed, CloseReason::Rejected);
    }

    /// The error to return while the database is known to be down, if it
    /// is: the pool holds no connection, and the recent connect failures say
    /// down (`ConnectFailures::database_down`). Either way, while connects
    /// fail, it asks the creator to probe again.
    pub(super) fn down_error(&self) -> Option<Error> {
        if self.total.load(Ordering::SeqCst) != 0 {
            return None;
        }
        let failures = self.failures.lock();
        if failures.streak == 0 {
            return None;
        }
        self.wanted.store(true, Ordering::SeqCst);
        self.ring_creator();
        let fresh = failures
            .last_at
            .is_some_and(|t| t.elapsed() < FAIL_FAST_FRESH);
        if !failures.database_down() || !fresh {
            return None;
        }
        let source = failures.last.clone()?;
        drop(failures);
        PoolCounters::bump(&self.stats.acquire_failures);
        Some(Error::Connect {
            pool: self.name.clone(),
            state: self.state(),
            source,
        })
    }

    pub(super) fn timeout_error(&self, start: Instant) -> Error {
        PoolCounters::bump(&self.stats.acquire_timeouts);
        let (waited, state) = (start.elapsed(), self.state());
        if let Some(h) = &self.handler {
            guarded(|| h.handle_timeout(TimeoutEvent { waited, state }));
        }
        Error::Timeout {
            pool: self.name.clone(),
            waited,
            state,
            last_error: self.failures.lock().last.clone(),
        }
    }

    pub(super) fn closed_error(&self) -> Error {
        Error::Closed {
            pool: self.name.clone(),
        }
    }

    pub(super) fn wait_while_suspended(&self, deadline: Option<Instant>) -> Result<(), Error> {
        let suspended = || Error::Suspended {
            pool: self.name.clone(),
        };
        if self.config.fail_when_suspended {
            return Err(suspended());
        }
        let mut guard = self.status_lock.lock();
        while self.status.load(Ordering::SeqCst) == SUSPENDED {
            match deadline {
                Some(d) => {
                    if self.status_cv.wait_until(&mut guard, d).timed_out()
                        && self.status.load(Ordering::SeqCst) == SUSPENDED
                    {
                        return Err(suspended());
                    }
                }
                None => self.status_cv.wait(&mut guard),
            }
        }
        Ok(())
    }
}
