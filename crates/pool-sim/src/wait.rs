//! Waiting out simulated latencies, a tiny seeded random number generator and
//! the black-hole gate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Waits below this are "short": they use the configured short-wait strategy.
pub(crate) const SHORT_WAIT: Duration = Duration::from_millis(1);

/// Waits for `d`.
///
/// `d >= 1 ms` always sleeps (`thread::sleep`). Shorter waits sleep too unless
/// `precise` is set, in which case they spin with `thread::yield_now` until the
/// deadline: precise to a few microseconds, but the waiting thread keeps a core
/// busy, as a client polling a socket would.
pub(crate) fn wait(d: Duration, precise: bool) {
    if d.is_zero() {
        return;
    }
    if d >= SHORT_WAIT || !precise {
        thread::sleep(d);
        return;
    }
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        thread::yield_now();
    }
}

/// A lock-free SplitMix64 generator: deterministic for a seed and a given
/// order of calls, shared by all threads of one simulated database.
#[derive(Debug)]
pub(crate) struct Rng {
    state: AtomicU64,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng {
            state: AtomicU64::new(seed),
        }
    }

    pub(crate) fn next_u64(&self) -> u64 {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub(crate) fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform duration in `[0, max]`.
    pub(crate) fn duration_up_to(&self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next_u64() % (nanos.saturating_add(1)).max(1))
    }
}

/// The black-hole switch: while it is on, waiters block until it is switched
/// off or their timeout runs out.
#[derive(Debug, Default)]
pub(crate) struct BlackHole {
    on: AtomicBool,
    lock: Mutex<bool>,
    lifted: Condvar,
}

impl BlackHole {
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    pub(crate) fn set(&self, on: bool) {
        let mut state = self.lock.lock();
        *state = on;
        self.on.store(on, Ordering::Release);
        if !on {
            self.lifted.notify_all();
        }
    }

    /// Blocks while the black hole is on, for at most `timeout`. Returns true
    /// if the black hole is (or became) off, false if the timeout ran out.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        if !self.is_on() {
            return true;
        }
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.lock.lock();
        while *state {
            match deadline {
                Some(deadline) => {
                    if self.lifted.wait_until(&mut state, deadline).timed_out() {
                        return !*state;
                    }
                }
                None => self.lifted.wait(&mut state),
            }
        }
        true
    }
}

/// Converts a duration to nanoseconds for an atomic, saturating.
pub(crate) fn to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let a = Rng::new(7);
        let b = Rng::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let f = a.next_f64();
            b.next_f64();
            assert!((0.0..1.0).contains(&f));
            let d = a.duration_up_to(Duration::from_micros(10));
            b.duration_up_to(Duration::from_micros(10));
            assert!(d <= Duration::from_micros(10));
        }
        assert_eq!(a.duration_up_to(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn short_precise_wait_is_accurate_enough() {
        let start = Instant::now();
        wait(Duration::from_micros(200), true);
        let took = start.elapsed();
        assert!(took >= Duration::from_micros(200), "{took:?}");
    }

    #[test]
    fn black_hole_times_out_and_lifts() {
        let bh = std::sync::Arc::new(BlackHole::default());
        assert!(bh.wait(Duration::from_secs(10)));
        bh.set(true);
        let start = Instant::now();
        assert!(!bh.wait(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
        let bh2 = bh.clone();
        let t = thread::spawn(move || bh2.wait(Duration::from_secs(30)));
        thread::sleep(Duration::from_millis(10));
        bh.set(false);
        assert!(t.join().unwrap());
    }
}
