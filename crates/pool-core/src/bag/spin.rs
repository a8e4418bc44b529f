//! How a waiter spends the moments before it parks: a few pause
//! instructions, then yields, for a bounded time.

use crate::sync::thread;

/// How long a waiter stays awake (spinning, then yielding its CPU) before it
/// parks. A loan that comes back within this time reaches the waiter without
/// a futex wake-up and, on a machine with more threads than cores, without
/// the waiter losing its place in the scheduler; a longer wait costs the
/// waiter at most this much CPU before it sleeps.
#[cfg(not(pool_loom))]
pub(super) const SPIN_FOR: std::time::Duration = std::time::Duration::from_micros(50);

/// How long a waiter spins when recent waits were longer than `SPIN_FOR`
/// (a database round trip, say): spinning would only take CPU from the
/// threads (and the database server) the waiter is waiting for.
#[cfg(not(pool_loom))]
pub(super) const SHORT_SPIN: std::time::Duration = std::time::Duration::from_micros(2);

/// One step of a waiter's spinning phase: a few pause instructions at first,
/// then yields. Returns `false` once the phase is over (the waiter parks).
#[inline]
pub(super) fn spin_on(spins: &mut u32, until: Option<std::time::Instant>) -> bool {
    let Some(until) = until else { return false };
    *spins += 1;
    if *spins <= 4 {
        for _ in 0..(1 << *spins) {
            std::hint::spin_loop();
        }
        return true;
    }
    if std::time::Instant::now() >= until {
        return false;
    }
    thread::yield_now();
    true
}
