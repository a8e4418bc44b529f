//! A cheap, coarse, monotonic clock in milliseconds.
//!
//! The pool reads the time on every return (to stamp "last used") and on every
//! borrow (for the alive-bypass window and max lifetime). `Instant::now()` on a
//! virtual machine costs about as much as the whole borrow, while
//! `CLOCK_MONOTONIC_COARSE` is read from the vDSO about ten times faster
//! (docs/performance.md, "Clocks"), with a resolution of one kernel tick
//! (1–4 ms): plenty for settings measured in hundreds of milliseconds to
//! minutes. Durations that need precision
//! (acquire waits) use `Instant` on the slow path only.

use std::time::Duration;

/// Milliseconds on a monotonic clock with an arbitrary origin.
pub(crate) type Millis = u64;

/// "Never": a deadline that does not expire.
pub(crate) const NEVER: Millis = u64::MAX;

/// Reads the coarse clock.
#[inline]
pub(crate) fn now() -> Millis {
    #[cfg(pool_loom)]
    return model::now();
    #[cfg(all(target_os = "linux", not(pool_loom)))]
    {
        // rustix calls the vDSO directly, faster than the C library's
        // `clock_gettime` (docs/performance.md, "Clocks"; the workspace turns on its
        // `use-libc-auxv` feature, without which programs crash under
        // valgrind).
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
        ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
    }
    #[cfg(all(not(target_os = "linux"), not(pool_loom)))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64
    }
}

/// Converts a duration to whole milliseconds, saturating.
#[inline]
pub(crate) fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(NEVER)
}

/// Adds a duration in milliseconds to a point in time, saturating at [`NEVER`].
#[inline]
pub(crate) fn after(t: Millis, d: Millis) -> Millis {
    t.saturating_add(d)
}

/// The clock of the loom models: it stands still unless a model moves it,
/// so that every execution of a model reads the same times (loom replays
/// executions and needs them deterministic). One per OS thread: loom runs
/// a model's threads one at a time on the test's OS thread, and the test
/// harness runs several models at once on other OS threads, whose clocks
/// must not move this one's (a shared clock made one model's replay take
/// another's path: loom then answered a load with a value recorded for a
/// different one, "seat 1 out of range").
#[cfg(pool_loom)]
pub(crate) mod model {
    use std::cell::Cell;

    use super::Millis;

    std::thread_local! {
        static NOW: Cell<Millis> = const { Cell::new(1_000_000) };
    }

    /// The model clock's time.
    pub(crate) fn now() -> Millis {
        NOW.with(Cell::get)
    }

    /// Sets the model clock (at the start of each execution of a model).
    #[cfg(test)]
    pub(crate) fn set(t: Millis) {
        NOW.with(|now| now.set(t));
    }
}
