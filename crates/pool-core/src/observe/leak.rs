//! Leak detection: connections lent for longer than
//! `leak_detection_threshold` are reported once, with where and by whom they
//! were borrowed, and reported again when they finally come back.
//!
//! The borrow path only stamps three atomics on the seat (time, call site,
//! borrowing thread's number) and only when the threshold is set; the
//! housekeeper does the checking, in bounded work per round (one pass over the
//! seats). Thread names are recorded once per thread and pool, not per loan.

use std::backtrace::Backtrace;
use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::sync::Lock as Mutex;

use crate::bag::IN_USE;
use crate::stamps::Seat;

/// The top bit of a loan's stamp (`Seat::lent_at`): this loan was reported
/// as a possible leak. Clock readings never reach it.
pub(crate) const REPORTED: u64 = 1 << 63;

/// The time in a loan's stamp, without the reported bit.
#[inline]
pub(crate) fn lent_time(stamp: u64) -> Millis {
    stamp & !REPORTED
}

/// Whether a loan's stamp carries the reported bit ("never" does not count).
#[inline]
fn is_reported(stamp: u64) -> bool {
    stamp != clock::NEVER && stamp & REPORTED != 0
}
use crate::clock::{self, Millis};

/// A connection lent for longer than the leak detection threshold.
///
/// Returned by [`Pool::leaks`](crate::Pool::leaks).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LeakReport {
    /// The connection's id (as in the pool's logs).
    pub id: u64,
    /// How long it has been lent.
    pub lent_for: Duration,
    /// The name of the thread that borrowed it (or its number if unnamed).
    pub thread: String,
    /// Where `get` was called.
    pub location: &'static Location<'static>,
}

/// What the housekeeper's check of one loan found.
pub(crate) enum LeakCheck {
    /// Not overdue yet: due at this coarse-clock time.
    Due(Millis),
    /// Overdue, and reported now.
    Reported,
    /// Overdue and reported before, or no longer the same loan.
    Done,
}

/// The pool's leak-detection state.
pub(crate) struct LeakTracker {
    pub(crate) threshold: Millis,
    /// Whether to capture a backtrace per loan (`RUST_BACKTRACE` was set).
    capture_backtraces: bool,
    /// Thread number → name, filled once per thread.
    threads: Mutex<HashMap<u64, String>>,
    /// Seat → backtrace of the current loan, when captured.
    backtraces: Mutex<HashMap<u32, Backtrace>>,
}

impl LeakTracker {
    pub(crate) fn new(threshold: Duration) -> Self {
        let capture_backtraces = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
        LeakTracker {
            threshold: clock::millis(threshold),
            capture_backtraces,
            threads: Mutex::new(HashMap::new()),
            backtraces: Mutex::new(HashMap::new()),
        }
    }

    /// Records the calling thread's name under `number` (once per thread).
    pub(crate) fn register_thread(&self, number: u64) {
        let current = std::thread::current();
        let name = match current.name() {
            Some(n) => n.to_owned(),
            None => format!("{:?}", current.id()),
        };
        self.threads.lock().insert(number, name);
    }

    /// Stamps a loan on a seat the caller just claimed.
    #[inline]
    pub(crate) fn lend<C>(
        &self,
        slot: &Seat<C>,
        now: Millis,
        thread: u64,
        site: &'static Location<'static>,
    ) {
        slot.lent_at.store(now, Ordering::Relaxed);
        slot.site.store(
            site as *const Location<'static> as *mut _,
            Ordering::Relaxed,
        );
        slot.borrower.store(thread, Ordering::Relaxed);
        if self.capture_backtraces {
            self.backtraces
                .lock()
                .insert(slot.index, Backtrace::force_capture());
        }
    }

    fn report_of<C>(&self, slot: &Seat<C>, now: Millis) -> LeakReport {
        let thread = slot.borrower.load(Ordering::Relaxed);
        let site = slot.site.load(Ordering::Relaxed);
        LeakReport {
            id: slot.id.load(Ordering::Relaxed),
            lent_for: Duration::from_millis(
                now.saturating_sub(lent_time(slot.lent_at.load(Ordering::Relaxed))),
            ),
            thread: self
                .threads
                .lock()
                .get(&thread)
                .cloned()
                .unwrap_or_else(|| format!("#{thread}")),
            // SAFETY: `site` is either null or was stored by `lend` from a
            // `&'static Location`, which lives for the whole program.
            location: unsafe { site.as_ref() }.unwrap_or(Location::caller()),
        }
    }

    /// The housekeeper's check of one lent seat: reports it if it is overdue
    /// and not yet reported; returns when it will be due otherwise.
    pub(crate) fn check<C>(&self, pool: &str, slot: &Seat<C>, now: Millis) -> LeakCheck {
        let stamp = slot.lent_at.load(Ordering::Acquire);
        if stamp == clock::NEVER || is_reported(stamp) {
            return LeakCheck::Done;
        }
        let due = clock::after(stamp, self.threshold);
        if now < due {
            return LeakCheck::Due(due);
        }
        let report = self.report_of(slot, now);
        // Mark this loan, and only this one: the CAS fails if it ended (the
        // stamp reads "never") or another began (a later stamp: a loan
        // begins after the previous one ended, and this one is at least a
        // threshold old, so no later loan has the same stamp). The report
        // read above is then dropped.
        if slot.state() != IN_USE
            || slot
                .lent_at
                .compare_exchange(stamp, stamp | REPORTED, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return LeakCheck::Done;
        }
        let backtrace = self
            .backtraces
            .lock()
            .get(&slot.index)
            .map(|b| format!("\nborrowed at:\n{b}"))
            .unwrap_or_default();
        log::warn!(
            "pool \"{pool}\": connection {} has been lent for {:?}, longer than the leak \
             detection threshold ({:?}); it was taken by thread \"{}\" at {}{backtrace}",
            report.id,
            report.lent_for,
            Duration::from_millis(self.threshold),
            report.thread,
            report.location,
        );
        LeakCheck::Reported
    }

    /// Called when a seat comes back (returned, closed or detached).
    #[inline]
    pub(crate) fn returned<C>(&self, pool: &str, slot: &Seat<C>) {
        if self.capture_backtraces {
            self.backtraces.lock().remove(&slot.index);
        }
        let stamp = slot.lent_at.load(Ordering::Acquire);
        if is_reported(stamp) {
            let lent_for = clock::now().saturating_sub(lent_time(stamp));
            log::info!(
                "pool \"{pool}\": connection {}, previously reported as leaked, was returned \
                 after {:?}",
                slot.id.load(Ordering::Relaxed),
                Duration::from_millis(lent_for)
            );
        }
    }

    /// Where the current loan of a seat was taken, if recorded.
    pub(crate) fn site_of<C>(&self, slot: &Seat<C>) -> Option<&'static Location<'static>> {
        let site = slot.site.load(Ordering::Relaxed);
        // SAFETY: null, or stored by `lend` from a `&'static Location`.
        unsafe { site.as_ref() }
    }

    /// Every current loan past the threshold.
    pub(crate) fn suspects<'a, C: 'a>(
        &self,
        slots: impl Iterator<Item = &'a Seat<C>>,
    ) -> Vec<LeakReport> {
        let now = clock::now();
        slots
            .filter(|s| {
                s.state() == IN_USE
                    && now
                        >= clock::after(
                            lent_time(s.lent_at.load(Ordering::Relaxed)),
                            self.threshold,
                        )
            })
            .map(|s| self.report_of(s, now))
            .collect()
    }
}
