//! The synchronisation primitives the pool is built on, swapped for loom's
//! model-checked versions under `--cfg pool_loom`.
//!
//! Everything in the crate that takes part in a cross-thread protocol (slot
//! states, the waiter queue, thread parking) imports from here and never from
//! `std::sync` directly, so `cargo xtask loom` checks the real code.

#[cfg(not(pool_loom))]
pub(crate) use std::{
    sync::{
        atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread::{self, Thread},
};

#[cfg(pool_loom)]
pub(crate) use loom::{
    sync::{
        atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread::{self, Thread},
};

/// The pool's own locks (status, connect failures, thread handles, leak
/// records): `parking_lot`'s, whose `lock()` cannot fail; under loom a
/// wrapper over loom's mutex and condition variable with the same methods,
/// so that a model can switch threads while one holds a lock.
#[cfg(not(pool_loom))]
pub(crate) use parking_lot::{Condvar, Mutex as Lock};

#[cfg(pool_loom)]
pub(crate) use loom_lock::{Condvar, Lock};

#[cfg(pool_loom)]
mod loom_lock {
    use std::ops::{Deref, DerefMut};
    use std::time::Instant;

    /// `parking_lot::Mutex`'s API over loom's mutex.
    #[derive(Debug, Default)]
    pub(crate) struct Lock<T>(loom::sync::Mutex<T>);

    /// The guard of a [`Lock`]; `guard` is `None` only inside a wait.
    pub(crate) struct LockGuard<'a, T> {
        lock: &'a loom::sync::Mutex<T>,
        guard: Option<loom::sync::MutexGuard<'a, T>>,
    }

    impl<T> Lock<T> {
        pub(crate) fn new(value: T) -> Self {
            Lock(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> LockGuard<'_, T> {
            LockGuard {
                lock: &self.0,
                guard: Some(self.0.lock().unwrap()),
            }
        }
    }

    impl<T> Deref for LockGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.guard.as_ref().expect("a lock guard outside a wait")
        }
    }

    impl<T> DerefMut for LockGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.guard.as_mut().expect("a lock guard outside a wait")
        }
    }

    /// `parking_lot::Condvar`'s API over loom's condition variable.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    /// Whether a timed wait timed out: under loom, never (no time passes).
    pub(crate) struct Timed;

    impl Timed {
        pub(crate) fn timed_out(&self) -> bool {
            false
        }
    }

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }

        pub(crate) fn notify_all(&self) -> usize {
            self.0.notify_all();
            0
        }

        pub(crate) fn wait<T>(&self, guard: &mut LockGuard<'_, T>) {
            let g = guard.guard.take().expect("a lock guard outside a wait");
            guard.guard = Some(self.0.wait(g).unwrap());
        }

        /// Under loom there is no time: a timed wait lets the others run
        /// once and returns, as a spurious wake-up would.
        pub(crate) fn wait_until<T>(&self, guard: &mut LockGuard<'_, T>, _until: Instant) -> Timed {
            drop(guard.guard.take());
            loom::thread::yield_now();
            guard.guard = Some(guard.lock.lock().unwrap());
            Timed
        }
    }
}

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
    /// `Deref`, which must hand out a reference. Under loom the access is
    /// checked when the pointer is taken, not while it is used.
    #[inline]
    pub(crate) fn get(&self) -> *mut T {
        #[cfg(not(pool_loom))]
        return self.0.get();
        #[cfg(pool_loom)]
        return self.0.with_mut(|p| p);
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

/// Sleeps for `d` while polling for work other threads finish; under loom,
/// where no time passes, lets the other threads run instead.
#[inline]
pub(crate) fn pause(d: std::time::Duration) {
    #[cfg(not(pool_loom))]
    std::thread::sleep(d);
    #[cfg(pool_loom)]
    {
        let _ = d;
        loom::thread::yield_now();
    }
}

/// Lets another thread run while this one waits for a step that takes a
/// few instructions on the other side (no I/O, no lock).
#[inline]
pub(crate) fn spin_yield() {
    #[cfg(not(pool_loom))]
    std::thread::yield_now();
    #[cfg(pool_loom)]
    loom::thread::yield_now();
}

/// The light half of an asymmetric fence, for the hot side of a Dekker pair
/// (a returner storing `IDLE`, then looking for waiters).
///
/// Every "store, then load what the other side stored" pattern in the pool has
/// a hot side (returning a connection, millions of times a second) and a cold
/// side (a borrower about to park, `close`, `resize`). Where the kernel offers
/// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, the cold side issues it
/// ([`heavy_fence`]): it runs a full memory barrier on every CPU currently
/// running one of our threads, so the hot side needs only a compiler fence —
/// saving a locked instruction on every return. Without it, both sides use a
/// `SeqCst` fence. Under loom, both sides are `SeqCst` fences (loom models
/// fences exactly but treats `SeqCst` accesses as acquire/release).
#[inline]
pub(crate) fn light_fence() {
    #[cfg(not(pool_loom))]
    {
        if asymmetric::available() {
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
        } else {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
    }
    #[cfg(pool_loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// The heavy half of an asymmetric fence, for the cold side of a Dekker pair
/// (see [`light_fence`]).
#[inline]
pub(crate) fn heavy_fence() {
    #[cfg(not(pool_loom))]
    {
        if !(asymmetric::available() && asymmetric::barrier()) {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
    }
    #[cfg(pool_loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// Registers the process for expedited membarriers, once. Call before any
/// pool is shared between threads.
pub(crate) fn init_fences() {
    #[cfg(not(pool_loom))]
    asymmetric::init();
}

#[cfg(not(pool_loom))]
mod asymmetric {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Once;

    /// 1 once expedited membarriers are registered and work; 0 otherwise.
    ///
    /// Read with `Relaxed`: a side that reads 0 uses a full fence, which
    /// pairs correctly with either kind of fence on the other side, so the
    /// moment at which another thread sees the flag flip does not matter.
    static AVAILABLE: AtomicU8 = AtomicU8::new(0);
    static INIT: Once = Once::new();

    pub(super) fn init() {
        INIT.call_once(|| {
            #[cfg(target_os = "linux")]
            {
                use rustix::thread::{membarrier, MembarrierCommand};
                if membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok()
                    && membarrier(MembarrierCommand::PrivateExpedited).is_ok()
                {
                    AVAILABLE.store(1, Ordering::SeqCst);
                }
            }
        });
    }

    #[inline]
    pub(super) fn available() -> bool {
        AVAILABLE.load(Ordering::Relaxed) == 1
    }

    /// Issues the membarrier; false if it failed (then the caller fences).
    pub(super) fn barrier() -> bool {
        #[cfg(target_os = "linux")]
        {
            use rustix::thread::{membarrier, MembarrierCommand};
            membarrier(MembarrierCommand::PrivateExpedited).is_ok()
        }
        #[cfg(not(target_os = "linux"))]
        false
    }
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

/// A channel that carries one value from a connect (or any job) on another
/// thread to the thread that waits for it with a time limit. Under loom,
/// loom's channel, and a wait that "times out" whenever the value is not
/// there yet: the models explore both the value arriving in time and the
/// waiter giving up first.
pub(crate) mod oneshot {
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::Duration;

    #[cfg(not(pool_loom))]
    pub(crate) use std::sync::mpsc::{Receiver, SyncSender as Sender};

    #[cfg(pool_loom)]
    pub(crate) use loom::sync::mpsc::{Receiver, Sender};

    /// A channel for one value: sending never blocks.
    pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
        #[cfg(not(pool_loom))]
        return std::sync::mpsc::sync_channel(1);
        #[cfg(pool_loom)]
        return loom::sync::mpsc::channel();
    }

    /// Waits at most `limit` for the value.
    pub(crate) fn recv_within<T>(rx: &Receiver<T>, limit: Duration) -> Result<T, RecvTimeoutError> {
        #[cfg(not(pool_loom))]
        return rx.recv_timeout(limit);
        #[cfg(pool_loom)]
        {
            let _ = limit;
            use std::sync::mpsc::TryRecvError;
            match rx.try_recv() {
                Ok(value) => Ok(value),
                Err(TryRecvError::Empty) => Err(RecvTimeoutError::Timeout),
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            }
        }
    }
}
