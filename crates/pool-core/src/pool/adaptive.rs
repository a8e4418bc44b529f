//! Adaptive sizing's decisions ([`Sizer`]), made on the housekeeper thread
//! only: it samples what the pool already measures (lent seats over
//! `max_size`, the waiters, the acquire-wait totals of the metrics shards,
//! the timeout counter) 8 times a window, and resizes through
//! `Inner::resize_because` when a condition held for a whole window and the
//! cool-down since the last change is over. Borrowing and returning do
//! nothing for it. The settings are [`AdaptiveSize`]; `docs/adaptive.md`
//! describes the rules.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock::{self, Millis};
use crate::AdaptiveSize;
use crate::ManageConnection;

use super::shared::Inner;
use super::RUNNING;

/// Where a saturated stretch began: its start and the wait totals then.
#[derive(Clone, Copy)]
struct Mark {
    since: Millis,
    waits: u64,
    wait_sum_us: u64,
    timeouts: u64,
}

/// The housekeeper's adaptive-sizing state (owned by that thread: no lock).
pub(super) struct Sizer {
    settings: AdaptiveSize,
    window: Millis,
    cool_down: Millis,
    every: Millis,
    next_sample: Millis,
    /// The start of the current saturated stretch, if the pool is in one.
    high: Option<Mark>,
    /// The start of the current mostly-idle stretch, if the pool is in one.
    low: Option<Millis>,
    /// When the pool last changed size (or was built).
    last_change: Millis,
}

impl Sizer {
    /// The sizer for a pool's settings, or `None` when adaptive sizing is off.
    pub(super) fn new(settings: Option<&AdaptiveSize>) -> Option<Sizer> {
        let settings = settings?.clone();
        let window = clock::millis(settings.window).max(1);
        let now = clock::now();
        Some(Sizer {
            window,
            cool_down: clock::millis(settings.cool_down),
            every: (window / 8).max(super::housekeeper::HOUSEKEEPING_MIN_SLEEP),
            next_sample: now,
            high: None,
            low: None,
            last_change: now,
            settings,
        })
    }

    /// Samples the pool if a sample is due, resizes it if a condition held
    /// for a window; returns when the next sample is due.
    pub(super) fn tick<M: ManageConnection>(&mut self, inner: &Inner<M>) -> Millis {
        let now = clock::now();
        if now < self.next_sample {
            return self.next_sample;
        }
        self.next_sample = clock::after(now, self.every);
        if inner.status.load(Ordering::Acquire) != RUNNING {
            // Suspended: the load says nothing about the size needed.
            (self.high, self.low) = (None, None);
            return self.next_sample;
        }
        let state = inner.state();
        let max = state.max_size.max(1);
        let utilization = f64::from(state.active + state.returning) / f64::from(max);
        let s = &self.settings;
        if utilization >= s.grow_above {
            self.low = None;
            let (wait, _) = inner.shard_totals();
            let timeouts = inner.stats.acquire_timeouts.load(Ordering::Relaxed);
            let mark = *self.high.get_or_insert(Mark {
                since: now,
                waits: wait.count,
                wait_sum_us: wait.sum,
                timeouts,
            });
            if now.saturating_sub(mark.since) < self.window || !self.cooled(now) {
                return self.next_sample;
            }
            // The window is over: judge it, then start the next one.
            self.high = None;
            let waits = wait.count.saturating_sub(mark.waits);
            let mean =
                Duration::from_micros(wait.sum.saturating_sub(mark.wait_sum_us) / waits.max(1));
            let timed_out = timeouts.saturating_sub(mark.timeouts);
            if mean <= s.target_wait && timed_out == 0 {
                return self.next_sample;
            }
            let share = self.server_share(inner);
            let to = max.saturating_add(s.step).min(s.ceiling).min(share);
            if to > max {
                let bound = if to == share && share < s.ceiling {
                    format!(
                        ", bounded by {:.0}% of the server's connections",
                        s.server_share * 100.0
                    )
                } else {
                    String::new()
                };
                let why = format!(
                    "adaptive sizing: utilization at or above {:.0}% for {:?}, mean acquire \
                     wait {mean:?} above the target {:?}, {timed_out} timeout(s){bound}",
                    s.grow_above * 100.0,
                    s.window,
                    s.target_wait,
                );
                self.change(inner, to, &why, now);
            }
        } else if utilization <= s.shrink_below && state.waiting == 0 {
            self.high = None;
            let since = *self.low.get_or_insert(now);
            if now.saturating_sub(since) < self.window || !self.cooled(now) {
                return self.next_sample;
            }
            self.low = None;
            let to = max.saturating_sub(s.step).max(s.floor);
            if to < max {
                let why = format!(
                    "adaptive sizing: utilization at or below {:.0}% with nobody waiting for {:?}",
                    s.shrink_below * 100.0,
                    s.window,
                );
                self.change(inner, to, &why, now);
            }
        } else {
            (self.high, self.low) = (None, None);
        }
        self.next_sample
    }

    fn cooled(&self, now: Millis) -> bool {
        now.saturating_sub(self.last_change) >= self.cool_down
    }

    /// The most connections the server's share allows (`u32::MAX` when the
    /// server's limit is unknown).
    fn server_share<M: ManageConnection>(&self, inner: &Inner<M>) -> u32 {
        match inner.server_capacity.load(Ordering::Relaxed) {
            0 => u32::MAX,
            cap => ((f64::from(cap) * self.settings.server_share) as u32).max(1),
        }
    }

    fn change<M: ManageConnection>(&mut self, inner: &Inner<M>, to: u32, why: &str, now: Millis) {
        // `to` lies within floor..=ceiling, which `build` checked against
        // the size limit: this cannot fail.
        let _ = inner.resize_because(to, Some(why));
        self.last_change = now;
        (self.high, self.low) = (None, None);
    }
}
