//! The accepted ranges of the pool's settings, and the checks that name a
//! setting and its range when a value is outside it (used by
//! [`Config::validate`](crate::Config::validate), `Pool::resize` and
//! [`HealthThresholds::validate`](crate::HealthThresholds::validate)).

use std::time::Duration;

use crate::Error;

/// The shortest accepted `connection_timeout` and `validation_timeout`:
/// below this the pool could not even wait for a thread to be scheduled.
/// (Both are measured with `Instant`, not the coarse clock.)
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The shortest accepted `idle_timeout`, `max_lifetime`, `keepalive_time` and
/// `leak_detection_threshold`.
///
/// The pool measures these on its coarse clock, which ticks every 1 to 4 ms
/// (one kernel tick). A shorter setting is mostly rounding error, and a
/// sub-millisecond one becomes 0 ms: every connection retired as it is
/// borrowed, or checked on every housekeeping round. 10 ms is two and a half
/// ticks at the coarsest: still short enough for tests of these timings.
/// (HikariCP's floors are seconds: 30 s lifetime, 10 s idle, 2 s leak
/// threshold.)
pub const MIN_COARSE_DURATION: Duration = Duration::from_millis(10);

/// The shortest accepted health window ([`HealthThresholds::window`](crate::HealthThresholds::window)): the
/// pool samples its counters every 1/64 of the window.
pub const MIN_HEALTH_WINDOW: Duration = Duration::from_millis(100);

/// The longest accepted duration of any setting: 3650 days (ten years).
///
/// Every duration is added to `Instant::now()`, converted to milliseconds or
/// slept on somewhere; ten years fits all of them with room to spare, and is
/// longer than any pool lives.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// The longest accepted pool name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// `"10ms to 3650 days"`.
pub(crate) fn range_text(min: Duration) -> String {
    if min.is_zero() {
        "0 to 3650 days (10 years)".to_owned()
    } else {
        format!("{min:?} to 3650 days (10 years)")
    }
}

/// Checks that `value` of `setting` is within `min..=MAX_DURATION`.
pub(crate) fn check_duration(
    setting: &str,
    value: Duration,
    min: Duration,
    why: &str,
) -> Result<(), Error> {
    if value < min || value > MAX_DURATION {
        let hint = if value < min && !why.is_empty() {
            format!(" ({why})")
        } else {
            String::new()
        };
        return Err(Error::config(
            setting,
            format!("{value:?} is out of range: use {}{hint}", range_text(min)),
        ));
    }
    Ok(())
}

/// The largest accepted `max_size`: far above what any database accepts, low
/// enough that a typo (`max_size(1_000_000)`) is caught.
pub const MAX_SIZE_LIMIT: u32 = crate::bag::MAX_SEATS as u32;

/// The one check of a `max_size` (at `build`, and in `Pool::resize`): the
/// reason it is refused, if it is.
pub(crate) fn check_max_size(max_size: u32) -> Result<(), String> {
    if max_size == 0 || max_size > MAX_SIZE_LIMIT {
        return Err(format!(
            "{max_size} is out of range: use 1 to {MAX_SIZE_LIMIT}"
        ));
    }
    Ok(())
}

/// The most connects [`Builder::parallel_connects`](crate::Builder::parallel_connects)
/// accepts to run at once: more would only queue at the server's accept loop.
pub const MAX_PARALLEL_CONNECTS: u32 = 64;

/// The default of [`Builder::parallel_connects`](crate::Builder::parallel_connects),
/// chosen by measurement (`docs/performance.md`, "Filling the pool").
pub const DEFAULT_PARALLEL_CONNECTS: u32 = 4;

/// The check of a `parallel_connects`: the reason it is refused, if it is.
pub(crate) fn check_parallel_connects(n: u32) -> Result<(), String> {
    if n == 0 || n > MAX_PARALLEL_CONNECTS {
        return Err(format!(
            "{n} is out of range: use 1 (one connect at a time) to {MAX_PARALLEL_CONNECTS}"
        ));
    }
    Ok(())
}
