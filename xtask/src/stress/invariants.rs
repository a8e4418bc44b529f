//! The invariants' bookkeeping: violations by kind, the fail-fast windows,
//! the monitor thread that samples the open connections, and verdicts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::backend::Backend;
use super::workload::Shared;

/// A counter per kind of violation, with the first few messages.
#[derive(Default)]
pub(super) struct Violations {
    pub(super) by_kind: parking_lot::Mutex<BTreeMap<&'static str, (u64, Vec<String>)>>,
}

impl Violations {
    pub(super) const KEEP: usize = 5;

    pub(super) fn report(&self, kind: &'static str, message: String) {
        let mut map = self.by_kind.lock();
        let entry = map.entry(kind).or_default();
        entry.0 += 1;
        if entry.1.len() < Self::KEEP {
            entry.1.push(message);
        }
    }

    pub(super) fn count(&self, kind: &str) -> u64 {
        self.by_kind.lock().get(kind).map_or(0, |e| e.0)
    }

    pub(super) fn total(&self) -> u64 {
        self.by_kind.lock().values().map(|e| e.0).sum()
    }

    pub(super) fn messages(&self, kind: &str) -> Vec<String> {
        self.by_kind
            .lock()
            .get(kind)
            .map(|e| e.1.clone())
            .unwrap_or_default()
    }
}

/// Violation kinds.
pub(super) const V_MAX_OPEN: &str = "max-open";
pub(super) const V_DOUBLE_LEND: &str = "double-lend";
pub(super) const V_GET_BOUND: &str = "get-bound";
/// A `get` that returned after its timeout + slack; a violation only if the
/// overrun is more than the worst scheduling delay measured meanwhile.
pub(super) const V_GET_LATE: &str = "get-late";
pub(super) const V_SESSION: &str = "session";
pub(super) const V_CLOSE: &str = "close";
pub(super) const V_THREADS: &str = "threads";
/// A fail-fast `Connect` error while the database was up.
pub(super) const V_FAIL_FAST: &str = "fail-fast";

/// A stretch of time in which borrowers failed fast with `Error::Connect`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) start: Duration,
    pub(super) end: Duration,
    pub(super) errors: u64,
}

/// Samples the backend's open connections and the pool's state.
pub(super) fn monitor<B: Backend>(shared: &Shared<B>, stop: &AtomicBool, max_seen: &AtomicU64) {
    let max = shared.plan.max_size as usize;
    let pause = shared.backend.sample_every();
    while !stop.load(Ordering::Relaxed) {
        // None: the server could not be asked (down under chaos); the pool's
        // own count is still checked.
        let open = shared.backend.server_open();
        if let Some(open) = open {
            max_seen.fetch_max(open as u64, Ordering::Relaxed);
        }
        if let Some(open) = open.filter(|&open| open > max) {
            shared.violations.report(
                V_MAX_OPEN,
                format!(
                    "the backend saw {open} open connections (max_size {max}) at {:.3}s in phase {}",
                    shared.start.elapsed().as_secs_f64(),
                    shared.phase().name()
                ),
            );
        }
        let state = shared.pool.state();
        if state.total > shared.plan.max_size {
            shared.violations.report(
                V_MAX_OPEN,
                format!(
                    "pool state reports total {} > max_size {}",
                    state.total, max
                ),
            );
        }
        // How late a 1 ms sleep wakes up: the machine's scheduling delay,
        // which explains (but does not excuse) late `get`s.
        let before = Instant::now();
        thread::sleep(Duration::from_millis(1));
        let late = before.elapsed().saturating_sub(Duration::from_millis(1));
        shared.counters.worst_sched_delay_us.fetch_max(
            u64::try_from(late.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if !pause.is_zero() {
            thread::sleep(pause);
        }
    }
}

/// One invariant's verdict.
pub(super) struct Verdict {
    pub(super) name: &'static str,
    pub(super) ok: bool,
    pub(super) detail: String,
}
