//! The housekeeper thread: it retires idle connections (idle timeout above
//! `min_idle`, max lifetime, eviction), runs keepalives, reports leaks,
//! gives up resets that outlive their limit, and tops the pool up to
//! `min_idle`; with adaptive sizing on, it also samples the load and
//! resizes the pool (`adaptive.rs`). It sleeps until the earliest deadline,
//! never busy.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::bag::{IDLE, IN_USE, RESERVED};
use crate::clock::{self, Millis};
use crate::observe::leak::LeakCheck;
use crate::stamps::FLAG_EVICT;
use crate::types::CloseReason;
use crate::ManageConnection;

use super::adaptive::Sizer;
use super::guarded;
use super::shared::Inner;

/// The housekeeper wakes at least this often (and logs the pool's stats).
pub(super) const HOUSEKEEPING_PERIOD: Millis = 30_000;
/// Nor more often than this, whatever the deadlines say.
pub(super) const HOUSEKEEPING_MIN_SLEEP: Millis = 5;

/// The housekeeper thread's main loop.
pub(super) fn housekeeper<M: ManageConnection>(weak: Weak<Inner<M>>, bell: Receiver<()>) {
    let mut last_stats: Millis = clock::now();
    let mut last_sample: Millis = 0;
    let mut sizer = weak
        .upgrade()
        .and_then(|inner| Sizer::new(inner.config.adaptive.as_ref()));
    loop {
        let sleep = {
            let Some(inner) = weak.upgrade() else { return };
            if inner.is_closed() {
                return;
            }
            let mut next = housekeep(&inner);
            if let Some(sizer) = &mut sizer {
                next = next.min(sizer.tick(&inner));
            }
            inner.housekeeper_next.store(next, Ordering::Relaxed);
            let now = clock::now();
            // Health history: a sample every 1/64 of the window is plenty.
            let every = clock::millis(inner.config.health.window) / 64;
            if inner.config.metrics && now.saturating_sub(last_sample) >= every {
                last_sample = now;
                inner.record_sample();
            }
            #[cfg(feature = "metrics")]
            if inner.config.metrics {
                inner.metrics().publish();
            }
            if now.saturating_sub(last_stats) >= HOUSEKEEPING_PERIOD {
                last_stats = now;
                log::debug!("pool \"{}\": pool stats ({})", inner.name, inner.state());
            }
            next.saturating_sub(now).max(HOUSEKEEPING_MIN_SLEEP)
        };
        if bell.recv_timeout(Duration::from_millis(sleep)) == Err(RecvTimeoutError::Disconnected) {
            return;
        }
    }
}

/// One housekeeping round; returns when the next one is due.
pub(super) fn housekeep<M: ManageConnection>(inner: &Inner<M>) -> Millis {
    let now = clock::now();
    let max = inner.max_size.load(Ordering::SeqCst);
    let min_idle = inner.min_idle.load(Ordering::Relaxed);
    // `min_idle` counts idle connections, not lent ones: only idle ones
    // beyond it may time out (HikariCP's rule).
    let mut idle = inner.idle_count();
    let idle_timeout = inner.config.idle_timeout.map(clock::millis);
    let keepalive = inner.config.keepalive_time.map(clock::millis);
    let mut next = clock::after(now, HOUSEKEEPING_PERIOD);
    // The idle count above was taken before the loop: seats that became
    // idle since (returns that finished meanwhile) are not counted as
    // surplus this round. The earliest idle timeout among the idle seats
    // kept as not surplus is looked at again at the end, against a fresh
    // count, so that such seats still get a round when they fall due.
    let mut kept_idle_due = clock::NEVER;
    for i in 0..inner.bag.capacity() {
        let slot = inner.bag.seat(i);
        match slot.state_hint() {
            IDLE => {}
            IN_USE => {
                // A watched background reset past the manager's limit: give
                // the seat up, so capacity does not wait for the server.
                if let Some(limit) = inner.reset_watch {
                    let since = slot.watched_since();
                    if since != 0 {
                        let due = clock::after(since, limit);
                        if now < due {
                            next = next.min(due);
                        } else if let Some(giving_up) = slot.give_up_watch(since) {
                            inner.give_up_reset(giving_up, limit);
                            continue;
                        }
                    }
                }
                // Lent: due no earlier than one idle timeout (or keepalive)
                // from now, so look again then.
                for d in [idle_timeout, keepalive].into_iter().flatten() {
                    next = next.min(clock::after(now, d));
                }
                if let Some(leaks) = &inner.leaks {
                    match leaks.check(&inner.name, slot, now) {
                        LeakCheck::Due(due) => next = next.min(due),
                        LeakCheck::Reported => {
                            inner.stats.leaks_detected.fetch_add(1, Ordering::Relaxed);
                        }
                        LeakCheck::Done => {}
                    }
                }
                continue;
            }
            _ => continue,
        }
        let retire_at = slot.retire_at.load(Ordering::Relaxed);
        let last_used = slot.last_used.load(Ordering::Relaxed);
        let checked = slot.checked.load(Ordering::Relaxed).max(last_used);
        let evict = slot.flags.load(Ordering::Relaxed) & FLAG_EVICT != 0
            || i >= max
            || inner.total.load(Ordering::SeqCst) > max;
        let surplus = idle > min_idle;
        let idle_due = idle_timeout.map(|t| clock::after(last_used, t));
        let keep_due = keepalive.map(|k| clock::after(checked, k));
        let reason = if evict {
            Some(CloseReason::Evicted)
        } else if now >= retire_at {
            Some(CloseReason::MaxLifetime)
        } else if surplus && idle_due.is_some_and(|d| now >= d) {
            Some(CloseReason::IdleTimeout)
        } else {
            None
        };
        let keep = reason.is_none() && keep_due.is_some_and(|d| now >= d);
        if reason.is_some() || keep {
            let Some(mut claimed) = slot.try_claim(RESERVED) else {
                continue; // borrowed meanwhile: nothing to do
            };
            match reason {
                Some(reason) => {
                    idle = idle.saturating_sub(1);
                    inner.close_slot(claimed, reason);
                }
                None => {
                    let valid = claimed.with_conn(|conn| {
                        conn.and_then(|c| {
                            guarded(|| {
                                inner
                                    .manager
                                    .is_valid(c, inner.config.validation_timeout)
                                    .is_ok()
                            })
                        })
                    });
                    if valid == Some(true) {
                        slot.checked.store(clock::now(), Ordering::Relaxed);
                        next = next.min(clock::after(now, keepalive.unwrap_or(0)));
                        inner.make_available(claimed);
                    } else {
                        inner.close_slot(claimed, CloseReason::FailedValidation);
                    }
                }
            }
            continue;
        }
        next = next.min(retire_at);
        if let Some(d) = idle_due {
            if surplus {
                next = next.min(d);
            } else {
                kept_idle_due = kept_idle_due.min(d);
            }
        }
        if let Some(d) = keep_due {
            next = next.min(d);
        }
    }
    if kept_idle_due != clock::NEVER && inner.idle_count() > min_idle {
        next = next.min(kept_idle_due);
    }
    inner.ring_creator_if_short(inner.bag.waiting());
    next
}
