//! The synchronisation primitives the pool is built on, swapped for loom's
//! model-checked versions under `--cfg pool_loom`.
//!
//! Everything in the crate that takes part in a cross-thread protocol (slot
//! states, the waiter queue, thread parking) imports from here and never from
//! `std::sync` directly, so `cargo xtask loom` checks the real code.

#[cfg(not(pool_loom))]
pub(crate) use std::{
    sync::{
        atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread::{self, Thread},
};

#[cfg(pool_loom)]
pub(crate) use loom::{
    sync::{
        atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread::{self, Thread},
};

/// An `UnsafeCell` whose accesses loom can track.
///
/// Outside loom this is a zero-cost wrapper over `std::cell::UnsafeCell`; under
/// loom every `with`/`with_mut` is checked for concurrent conflicting access,
/// which is how the slot ownership protocol is verified.
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(
    #[cfg(not(pool_loom))] std::cell::UnsafeCell<T>,
    #[cfg(pool_loom)] loom::cell::UnsafeCell<T>,
);

impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        #[cfg(not(pool_loom))]
        return Self(std::cell::UnsafeCell::new(value));
        #[cfg(pool_loom)]
        return Self(loom::cell::UnsafeCell::new(value));
    }

    /// Runs `f` with a unique raw pointer to the value.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(not(pool_loom))]
        return f(self.0.get());
        #[cfg(pool_loom)]
        return self.0.with_mut(f);
    }

    /// A raw pointer that outlives a `with` call: used by `PooledConnection`'s
    /// `Deref`, which must hand out a reference. Not tracked by loom.
    #[cfg(not(pool_loom))]
    #[inline]
    pub(crate) fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// Parks the current thread for at most `timeout`.
///
/// Under loom there is no time: parking becomes a yield, i.e. every park is a
/// spurious wake-up (or an expired timeout), which makes the model explore the
/// "waiter gives up just as a connection is handed to it" interleavings.
#[inline]
pub(crate) fn park_timeout(timeout: std::time::Duration) {
    #[cfg(not(pool_loom))]
    std::thread::park_timeout(timeout);
    #[cfg(pool_loom)]
    {
        if timeout >= LOOM_FOREVER {
            // A wait without deadline: block for real, so that a lost
            // wake-up shows up as a deadlock in the model.
            loom::thread::park();
        } else {
            loom::thread::yield_now();
        }
    }
}

/// A full `SeqCst` fence: the two halves of every "store, then load what the
/// other side stored" (Dekker) pattern in the pool put one between their store
/// and their load. A fence rather than `SeqCst` accesses because loom models
/// `SeqCst` fences exactly but treats `SeqCst` accesses as acquire/release.
#[inline]
pub(crate) fn dekker_fence() {
    #[cfg(not(pool_loom))]
    std::sync::atomic::fence(Ordering::SeqCst);
    #[cfg(pool_loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// Under loom, a park at least this long counts as "no deadline".
#[cfg(pool_loom)]
pub(crate) const LOOM_FOREVER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Locks a mutex, ignoring poisoning: nothing the pool does under its locks can
/// panic half-way through an update (they only push and pop), so a poisoned
/// lock holds consistent data and the pool must never become unusable because
/// some unrelated thread panicked.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(not(pool_loom))]
    return m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    #[cfg(pool_loom)]
    return m.lock().unwrap();
}
