//! Starting a pool: its background threads, and `build`'s wait for the
//! first connections.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::sync::{
    AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Condvar, Lock as Mutex,
};
use crossbeam_channel::Receiver;
use thread_local::ThreadLocal;

use crate::clock::{self};
use crate::config::Config;
use crate::error::Error;
use crate::observe::events::HandleEvent;
use crate::observe::health::History;
use crate::observe::leak::LeakTracker;
use crate::observe::metrics::PoolCounters;
use crate::stamps::Bag;
use crate::ManageConnection;

use super::failures::ConnectFailures;
use super::shared::Inner;
use super::thread_cache::POOL_SEQ;
use super::{Handle, Pool, RUNNING};

impl<M: ManageConnection> Pool<M> {
    pub(crate) fn start(
        config: Config,
        name: Arc<str>,
        manager: M,
        wait: bool,
        handler: Option<Arc<dyn HandleEvent>>,
    ) -> Result<Pool<M>, Error> {
        let max = config.max_size as usize;
        let min_idle = config.effective_min_idle() as usize;
        let (pool, creator_rx, housekeeper_rx) =
            Pool::assemble(config, name, manager, wait, handler);
        let inner = pool.handle.inner.clone();
        let spawned = spawn_workers(&inner, creator_rx, housekeeper_rx);
        if let Err(e) = spawned {
            return Err(Error::Connect {
                pool: inner.name.clone(),
                state: inner.state(),
                source: Arc::new(e),
            });
        }
        log::debug!(
            "pool \"{}\": started (max_size={}, min_idle={})",
            inner.name,
            max,
            min_idle
        );
        inner.ring_creator();
        if wait {
            if let Err(e) = inner.wait_for_initial_connections() {
                // Closing joins the creator, which may be inside a connect
                // that has not returned: close on another thread, and wait
                // for it only briefly, so that `build` returns by its
                // deadline. Usually it is done at once and joined here (no
                // thread outlives `build`).
                let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
                let closer = std::thread::Builder::new()
                    .name(format!("{}-closer", inner.name))
                    .spawn(move || {
                        drop(pool);
                        let _ = done_tx.send(());
                    });
                match closer {
                    Ok(closer) => {
                        if done_rx.recv_timeout(BUILD_CLOSE_GRACE).is_ok() {
                            let _ = closer.join();
                        }
                    }
                    Err(spawn_error) => log::warn!(
                        "pool \"{}\": cannot start a thread to close the pool in the \
                         background ({spawn_error}); closed it here",
                        inner.name
                    ),
                }
                return Err(e);
            }
        }
        Ok(pool)
    }

    /// A pool with no background threads (the loom models drive its
    /// creator and housekeeper by hand, `pool/loom_models.rs`).
    #[cfg(all(pool_loom, test))]
    pub(crate) fn for_model(config: Config, manager: M) -> Pool<M> {
        Pool::assemble(config, "model".into(), manager, false, None).0
    }

    /// The pool's shared state and its first handle; no thread started.
    fn assemble(
        config: Config,
        name: Arc<str>,
        manager: M,
        wait: bool,
        handler: Option<Arc<dyn HandleEvent>>,
    ) -> (Pool<M>, Receiver<()>, Receiver<()>) {
        let max = config.max_size as usize;
        let min_idle = config.effective_min_idle() as usize;
        let background_reset = config
            .reset_in_background
            .unwrap_or_else(|| manager.background_reset());
        let reset_watch = if background_reset {
            manager.reset_limit().map(clock::millis)
        } else {
            None
        };
        let reset_with_waiters = reset_watch.is_some() && manager.reset_hands_off();
        let (creator_bell, creator_rx) = crossbeam_channel::bounded(1);
        let (housekeeper_bell, housekeeper_rx) = crossbeam_channel::bounded(1);
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            name,
            manager,
            bag: Bag::new(max),
            status: AtomicU8::new(RUNNING),
            max_size: AtomicUsize::new(max),
            min_idle: AtomicUsize::new(min_idle),
            total: AtomicUsize::new(0),
            abandoned: AtomicUsize::new(0),
            return_jobs: AtomicUsize::new(0),
            young_closes: AtomicU64::new(0),
            young_reason: AtomicU8::new(0),
            init_target: AtomicUsize::new(if wait { min_idle.max(1) } else { 0 }),
            next_id: AtomicU64::new(1),
            uid: POOL_SEQ.fetch_add(1, Ordering::Relaxed),
            bypass_ms: if config.test_on_check_out {
                clock::millis(config.alive_bypass_window)
            } else {
                clock::NEVER
            },
            local: ThreadLocal::new(),
            failures: Mutex::new(ConnectFailures::default()),
            wanted: AtomicBool::new(false),
            attempts: AtomicU64::new(0),
            attempts_begun: AtomicU64::new(0),
            status_lock: Mutex::new(()),
            status_cv: Condvar::new(),
            creator_bell,
            housekeeper_bell,
            threads: Mutex::new(Vec::new()),
            leaks: config.leak_detection_threshold.map(LeakTracker::new),
            housekeeper_next: AtomicU64::new(0),
            stats: PoolCounters::new(),
            history: Mutex::new(History::default()),
            handler,
            background_reset,
            reset_watch,
            reset_with_waiters,
            server_capacity: AtomicU32::new(0),
            config,
        });
        let pool = Pool {
            handle: Arc::new(Handle { inner }),
        };
        (pool, creator_rx, housekeeper_rx)
    }
}

pub(super) fn spawn_workers<M: ManageConnection>(
    inner: &Arc<Inner<M>>,
    creator_rx: Receiver<()>,
    housekeeper_rx: Receiver<()>,
) -> std::io::Result<()> {
    let weak: Weak<Inner<M>> = Arc::downgrade(inner);
    let creator = std::thread::Builder::new()
        .name(format!("{}-creator", inner.name))
        .spawn({
            let weak = weak.clone();
            move || super::creator::creator(weak, creator_rx)
        })?;
    inner.threads.lock().push(creator);
    let housekeeper = std::thread::Builder::new()
        .name(format!("{}-housekeeper", inner.name))
        .spawn(move || super::housekeeper::housekeeper(weak, housekeeper_rx))?;
    inner.threads.lock().push(housekeeper);
    Ok(())
}

impl<M: ManageConnection> Inner<M> {
    /// `build`'s wait for the first connections. Returns at the
    /// initialization deadline (`initialization_fail_timeout` after the
    /// start) once an attempt has ended, whatever the connections do since:
    /// connections opened and closed again count as success. A first connect
    /// still running at the deadline is waited for until
    /// `connection_timeout` after it began at most (like HikariCP, which
    /// connects in the caller and checks its deadline between attempts), so
    /// that a deadline shorter than a thread start does not fail a healthy
    /// database, and a hanging connect does not hang `build`. (If the first
    /// attempt has not even begun after `FIRST_ATTEMPT_GRACE`, the creator
    /// thread is not getting a CPU: that limit is then counted from there.)
    pub(super) fn wait_for_initial_connections(&self) -> Result<(), Error> {
        let target = self.init_target.load(Ordering::Relaxed);
        let timeout = self.config.initialization_fail_timeout;
        let started = Instant::now();
        // `validate` keeps both durations far below what an `Instant` holds;
        // `None` (never reached) would only follow an overflow.
        let deadline = started.checked_add(timeout);
        let limit = timeout.max(self.config.connection_timeout);
        // Counted from when the first attempt is seen to have begun: the
        // creator thread's start is the pool's latency, not the database's.
        let mut begun_at: Option<Instant> = None;
        let past = |t: Option<Instant>, now: Instant| t.is_some_and(|t| now >= t);
        let mut guard = self.status_lock.lock();
        loop {
            let total = self.total.load(Ordering::SeqCst);
            if total >= target {
                break;
            }
            let now = Instant::now();
            let attempts = self.attempts.load(Ordering::SeqCst);
            if past(deadline, now) && attempts > 0 {
                let opened = self.stats.created.load(Ordering::Relaxed) > 0;
                if total > 0 || opened {
                    break;
                }
                let source = self.failures.lock().last.clone();
                if let Some(source) = source {
                    drop(guard);
                    let state = self.state();
                    self.close();
                    return Err(Error::Connect {
                        pool: self.name.clone(),
                        state,
                        source,
                    });
                }
                // The attempt ended but its outcome is not recorded yet: the
                // creator rings `status_cv` once it is.
            }
            if begun_at.is_none()
                && (self.attempts_begun.load(Ordering::SeqCst) > 0
                    || now.saturating_duration_since(started) >= FIRST_ATTEMPT_GRACE)
            {
                begun_at = Some(now);
            }
            let give_up = begun_at.and_then(|t| t.checked_add(limit));
            if past(give_up, now) && attempts == 0 {
                drop(guard);
                return Err(Error::Connect {
                    pool: self.name.clone(),
                    state: self.state(),
                    source: Arc::new(FirstConnectUnfinished {
                        waited: now.saturating_duration_since(started),
                    }),
                });
            }
            // Until the first attempt is seen to begin, look every
            // millisecond (nothing rings when it begins).
            let poll = if begun_at.is_some() { 50 } else { 1 };
            let mut until = now + Duration::from_millis(poll);
            for t in [deadline, give_up].into_iter().flatten() {
                if t > now {
                    until = until.min(t + Duration::from_millis(1));
                }
            }
            self.status_cv.wait_until(&mut guard, until);
        }
        drop(guard);
        self.init_target.store(0, Ordering::Relaxed);
        Ok(())
    }
}

/// How long `build` waits for the creator thread to begin its first connect
/// attempt before it counts that attempt's time limit anyway.
const FIRST_ATTEMPT_GRACE: Duration = Duration::from_secs(1);

/// How long a failing `build` waits for the pool to close before it leaves
/// that to the closing thread (whose creator is stuck in a connect).
pub(super) const BUILD_CLOSE_GRACE: Duration = Duration::from_millis(100);

/// `build`'s error when the first connect has not returned by the
/// initialization deadline.
#[derive(Debug)]
pub(super) struct FirstConnectUnfinished {
    waited: Duration,
}

impl std::fmt::Display for FirstConnectUnfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no connection opened in {:?} (initialization_fail_timeout, or \
             connection_timeout if longer): the first connect attempt has not returned; \
             raise them or lower the driver's connect timeout",
            self.waited
        )
    }
}

impl std::error::Error for FirstConnectUnfinished {}
