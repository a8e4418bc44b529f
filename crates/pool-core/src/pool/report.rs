//! What the pool reports about itself: metrics snapshots and health
//! verdicts, assembled from the shared counters and every thread's shard.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::bag::{IN_USE, VACANT};
use crate::clock::{self};
use crate::observe::health::{self, Health, Sample};
use crate::observe::metrics::{self as m, Counts, Metrics};
use crate::types::CloseReason;
use crate::ManageConnection;

use super::shared::Inner;

impl<M: ManageConnection> Inner<M> {
    /// Every thread's acquire waits and times lent, added up.
    pub(super) fn shard_totals(&self) -> (Counts, Counts) {
        let (mut wait, mut usage) = (Counts::default(), Counts::default());
        for local in self.local.iter() {
            if let Some(shard) = &local.shard {
                shard.wait.add_to(&mut wait);
                shard.usage.add_to(&mut usage);
            }
        }
        (wait, usage)
    }

    /// The cumulative counters now, for health verdicts.
    pub(super) fn sample(&self) -> Sample {
        let (wait, usage) = self.shard_totals();
        Sample {
            at: clock::now(),
            acquired: wait.count,
            timeouts: self.stats.acquire_timeouts.load(Ordering::Relaxed),
            failures: self.stats.acquire_failures.load(Ordering::Relaxed),
            wait_sum_us: wait.sum,
            usage_sum_ms: usage.sum,
            released: usage.count,
            connect_errors: self.stats.connection_errors.load(Ordering::Relaxed),
        }
    }

    /// Adds a sample to the history (the housekeeper does, every round).
    pub(super) fn record_sample(&self) -> Sample {
        let now = self.sample();
        let window = clock::millis(self.config.health.window);
        self.history.lock().push(now, window)
    }

    /// A health verdict over the recent window.
    pub(super) fn health(&self) -> Health {
        let now = self.sample();
        let window = clock::millis(self.config.health.window);
        let base = self.history.lock().push(now, window);
        let (mut in_flight_ms, mut oldest) = (0, 0);
        for i in 0..self.bag.capacity() {
            let slot = self.bag.seat(i);
            let state = slot.state();
            if state == VACANT || slot.id.load(Ordering::Relaxed) == 0 {
                continue;
            }
            oldest = oldest.max(now.at.saturating_sub(slot.created.load(Ordering::Relaxed)));
            if state == IN_USE {
                let since = crate::observe::leak::lent_time(slot.lent_at.load(Ordering::Relaxed))
                    .max(base.at);
                in_flight_ms += now.at.saturating_sub(since);
            }
        }
        let mut leaks: Vec<(String, usize, Duration)> = Vec::new();
        if let Some(tracker) = &self.leaks {
            for r in tracker.suspects((0..self.bag.capacity()).map(|i| self.bag.seat(i))) {
                let at = r.location.to_string();
                match leaks.iter_mut().find(|(l, ..)| *l == at) {
                    Some(entry) => {
                        entry.1 += 1;
                        entry.2 = entry.2.max(r.lent_for);
                    }
                    None => leaks.push((at, 1, r.lent_for)),
                }
            }
        }
        let capacity = self.server_capacity.load(Ordering::Relaxed);
        let (connect_streak, last_connect_error) = {
            let failures = self.failures.lock();
            let last = failures.last.as_ref().map(ToString::to_string);
            (failures.streak, last.filter(|_| failures.streak > 0))
        };
        health::verdict(
            base,
            now,
            health::Inputs {
                thresholds: &self.config.health,
                max_size: self.max_size.load(Ordering::Relaxed) as u32,
                in_flight_ms,
                server_capacity: (capacity > 0).then_some(capacity),
                oldest: Duration::from_millis(oldest),
                max_lifetime: self.config.max_lifetime,
                leaks,
                total: self.total.load(Ordering::Relaxed) as u32,
                connect_streak,
                last_connect_error,
            },
        )
    }

    /// A metrics snapshot.
    pub(super) fn metrics(&self) -> Metrics {
        let (wait, usage) = self.shard_totals();
        let (mut creation, mut lifetime) = (Counts::default(), Counts::default());
        self.stats.creation.add_to(&mut creation);
        self.stats.lifetime.add_to(&mut lifetime);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let closed = |r: CloseReason| get(&self.stats.closed[r.index()]);
        let state = self.state();
        Metrics {
            pool: self.name.to_string(),
            created: get(&self.stats.created),
            closed: m::ClosedCounts {
                idle_timeout: closed(CloseReason::IdleTimeout),
                max_lifetime: closed(CloseReason::MaxLifetime),
                broken: closed(CloseReason::Broken),
                failed_validation: closed(CloseReason::FailedValidation),
                evicted: closed(CloseReason::Evicted),
                reset_failed: closed(CloseReason::ResetFailed),
                pool_closed: closed(CloseReason::PoolClosed),
                rejected: closed(CloseReason::Rejected),
                detached: get(&self.stats.detached),
            },
            acquired: wait.count,
            released: usage.count,
            acquire_timeouts: get(&self.stats.acquire_timeouts),
            acquire_failures: get(&self.stats.acquire_failures),
            validation_failures: get(&self.stats.validation_failures),
            connection_errors: get(&self.stats.connection_errors),
            leaks_detected: get(&self.stats.leaks_detected),
            late_connects: get(&self.stats.late_connects),
            resizes_up: get(&self.stats.resizes_up),
            resizes_down: get(&self.stats.resizes_down),
            utilization: f64::from(state.active) / f64::from(state.max_size.max(1)),
            state,
            acquire_wait: wait.distribution(Duration::from_micros(1)),
            usage: usage.distribution(Duration::from_millis(1)),
            creation: creation.distribution(Duration::from_micros(1)),
            lifetime: lifetime.distribution(Duration::from_millis(1)),
        }
    }
}
