//! The pool: a [`Pool`] handle over the shared [`Inner`](shared::Inner),
//! on top of the [bag](crate::bag).
//!
//! One concern a file:
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the [`Pool`] handle and its public methods |
//! | `shared.rs` | [`Inner`](shared::Inner), the state every part shares |
//! | `builder.rs` | [`Builder`]: settings, then `build` |
//! | `startup.rs` | `build`: threads, the wait for the first connections |
//! | `thread_cache.rs` | each thread's recently returned seats |
//! | `acquire.rs` | the borrow path and its checks |
//! | `loan.rs` | [`PooledConnection`] |
//! | `release.rs` | the return path: reset, checks, hand-off, close |
//! | `control.rs` | suspend, resume, resize, soft eviction, close |
//! | `retain.rs` | `retain`: eviction by predicate |
//! | `retry.rs` | `run_idempotent`: one retry on a broken connection |
//! | `failures.rs` | connect failures and the fail-fast rule |
//! | `report.rs` | metrics snapshots and health verdicts |
//! | `creator.rs` | the creator thread |
//! | `housekeeper.rs` | the housekeeper thread |
//! | `adaptive.rs` | adaptive sizing's decisions, on the housekeeper thread |
//!
//! The two background threads hold only a `Weak` to the pool between
//! rounds, and stop when the pool closes (`close` rings and joins them) or
//! is dropped (their doorbell channel disconnects).

mod acquire;
mod adaptive;
mod builder;
mod control;
mod creator;
mod failures;
mod housekeeper;
mod loan;
#[cfg(all(test, pool_loom))]
mod loom_models;
mod release;
mod report;
mod retain;
mod retry;
mod shared;
mod startup;
mod thread_cache;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::Error;
use crate::info::ConnectionInfo;
use crate::observe::health::Health;
use crate::observe::leak::LeakReport;
use crate::observe::metrics::Metrics;
use crate::types::State;
use crate::ManageConnection;

pub use builder::Builder;
pub use loan::{OwnedConnection, PooledConnection};
pub use retry::RunError;
use shared::Inner;

/// Pool status: lending normally.
const RUNNING: u8 = 0;
/// Pool status: `suspend()` was called.
const SUSPENDED: u8 = 1;
/// Pool status: closed for good.
const CLOSED: u8 = 2;

/// A connection pool.
///
/// Cheap to clone (all clones share one pool) and `Send + Sync`. When the last
/// clone is dropped the pool closes: idle connections are closed at once, lent
/// ones when they come back, and its two background threads (a creator and a
/// housekeeper) are joined.
///
/// ```
/// use pool_core::{ManageConnection, Pool};
/// use std::time::Duration;
///
/// struct Numbers;
/// impl ManageConnection for Numbers {
///     type Connection = Vec<u64>;
///     type Error = std::io::Error;
///     fn connect(&self) -> Result<Vec<u64>, std::io::Error> { Ok(Vec::new()) }
///     fn is_valid(&self, _: &mut Vec<u64>, _: Duration) -> Result<(), std::io::Error> { Ok(()) }
///     fn has_broken(&self, _: &mut Vec<u64>) -> bool { false }
/// }
///
/// let pool = Pool::builder().max_size(4).build(Numbers)?;
/// std::thread::scope(|s| {
///     for i in 0..8 {
///         let pool = pool.clone();
///         s.spawn(move || pool.get().unwrap().push(i));
///     }
/// });
/// assert!(pool.state().total <= 4);
/// # Ok::<(), pool_core::Error>(())
/// ```
pub struct Pool<M: ManageConnection> {
    handle: Arc<Handle<M>>,
}

/// The user-facing handle; dropping the last one closes the pool even while
/// connections are still lent (they keep `Inner` alive until they return).
struct Handle<M: ManageConnection> {
    inner: Arc<Inner<M>>,
}

impl<M: ManageConnection> Drop for Handle<M> {
    fn drop(&mut self) {
        self.inner.close();
    }
}

impl<M: ManageConnection> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            handle: self.handle.clone(),
        }
    }
}

impl<M: ManageConnection> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Pool<NoManager> {
    /// A builder with every setting at its default; see [`Builder`](crate::Builder).
    pub fn builder() -> crate::Builder {
        crate::Builder::new()
    }
}

/// Only there so that `Pool::builder()` needs no type annotation.
#[doc(hidden)]
pub enum NoManager {}

impl ManageConnection for NoManager {
    type Connection = ();
    type Error = std::convert::Infallible;
    fn connect(&self) -> Result<(), Self::Error> {
        match *self {}
    }
    fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), Self::Error> {
        match *self {}
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        match *self {}
    }
}

impl<M: ManageConnection> Pool<M> {
    #[inline]
    fn inner(&self) -> &Arc<Inner<M>> {
        &self.handle.inner
    }

    /// Borrows a connection, waiting up to `connection_timeout` for one.
    ///
    /// Fails with [`Error::Timeout`] (naming the pool's state and the last
    /// connect error), [`Error::Closed`], [`Error::Suspended`], or, in
    /// fail-fast mode while the database is down, [`Error::Connect`].
    ///
    /// The loan borrows this `Pool` handle (that is what makes it cheap: no
    /// reference count changes hands). To keep a connection beyond the
    /// handle's scope, for instance to send it to a thread that outlives
    /// it, use [`get_owned`](Pool::get_owned) or
    /// [`PooledConnection::into_owned`].
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = Vec<u8>;
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<Vec<u8>, std::io::Error> { Ok(Vec::new()) }
    /// #     fn is_valid(&self, _: &mut Vec<u8>, _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut Vec<u8>) -> bool { false }
    /// # }
    /// let pool = Pool::builder().max_size(2).build(M)?;
    /// let mut conn = pool.get()?;
    /// conn.push(1); // derefs to the connection
    /// drop(conn);   // back to the pool
    /// assert_eq!(pool.state().active, 0);
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    #[track_caller]
    #[inline]
    pub fn get(&self) -> Result<PooledConnection<'_, M>, Error> {
        let inner = self.inner();
        inner.acquire(inner.config.connection_timeout)
    }

    /// Like [`get`](Pool::get), but the loan holds its own reference to the
    /// pool (`'static`): it can be stored or sent anywhere, and keeps the
    /// pool's bookkeeping alive until it comes back even if every `Pool`
    /// handle is dropped first. Costs two atomic reference-count updates per
    /// loan more than `get`.
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool, PooledConnection};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = Vec<u8>;
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<Vec<u8>, std::io::Error> { Ok(Vec::new()) }
    /// #     fn is_valid(&self, _: &mut Vec<u8>, _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut Vec<u8>) -> bool { false }
    /// # }
    /// let pool = Pool::builder().max_size(2).build(M)?;
    /// let mut conn: PooledConnection<'static, M> = pool.get_owned()?;
    /// std::thread::spawn(move || conn.push(7)).join().unwrap();
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    #[track_caller]
    pub fn get_owned(&self) -> Result<PooledConnection<'static, M>, Error> {
        self.get().map(PooledConnection::into_owned)
    }

    /// Borrows a connection, waiting up to `timeout` for one.
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut ()) -> bool { false }
    /// # }
    /// let pool = Pool::builder().name("orders").max_size(1).build(M)?;
    /// let held = pool.get()?;
    /// let err = pool.get_timeout(Duration::from_millis(20)).unwrap_err();
    /// assert!(err.is_timeout());
    /// assert!(err.to_string().starts_with("pool \"orders\": timed out after"));
    /// # drop(held);
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    #[track_caller]
    #[inline]
    pub fn get_timeout(&self, timeout: Duration) -> Result<PooledConnection<'_, M>, Error> {
        self.inner().acquire(timeout)
    }

    /// Borrows an idle connection if there is one, without waiting.
    ///
    /// When none is idle, fails with [`Error::Timeout`] (after asking for a
    /// new connection if the pool is below `max_size`).
    #[track_caller]
    #[inline]
    pub fn try_get(&self) -> Result<PooledConnection<'_, M>, Error> {
        self.inner().acquire(Duration::ZERO)
    }

    /// The pool's current counts.
    pub fn state(&self) -> State {
        self.inner().state()
    }

    /// Connections lent for longer than
    /// [`leak_detection_threshold`](crate::Builder::leak_detection_threshold)
    /// (empty when leak detection is off).
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut ()) -> bool { false }
    /// # }
    /// let pool = Pool::builder()
    ///     .max_size(1)
    ///     .leak_detection_threshold(Some(Duration::from_millis(10)))
    ///     .build(M)?;
    /// let conn = pool.get()?;
    /// std::thread::sleep(Duration::from_millis(30));
    /// let leaks = pool.leaks();
    /// assert_eq!(leaks.len(), 1);
    /// assert_eq!(leaks[0].location.file(), file!());
    /// # drop(conn);
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn leaks(&self) -> Vec<LeakReport> {
        let inner = self.inner();
        match &inner.leaks {
            Some(leaks) => leaks.suspects((0..inner.bag.capacity()).map(|i| inner.bag.seat(i))),
            None => Vec::new(),
        }
    }

    /// A snapshot of the pool's metrics: counters since the pool was built,
    /// gauges now, and distributions of acquire wait, time lent, connection
    /// creation time and connection lifetime. Borrow counters and the wait and
    /// usage distributions stay empty when [`metrics`](crate::Builder::metrics)
    /// is off.
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut ()) -> bool { false }
    /// # }
    /// let pool = Pool::builder().max_size(2).build(M)?;
    /// for _ in 0..3 {
    ///     drop(pool.get()?);
    /// }
    /// let m = pool.metrics();
    /// assert_eq!((m.created, m.acquired, m.released), (2, 3, 3));
    /// assert_eq!(m.acquire_wait.count, 3);
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn metrics(&self) -> Metrics {
        let snapshot = self.inner().metrics();
        #[cfg(feature = "metrics")]
        snapshot.publish();
        snapshot
    }

    /// A verdict on the pool's health over the recent window
    /// ([`HealthThresholds::window`](crate::HealthThresholds), 60 s by
    /// default): a status, alerts, and advice with numbers (a pool size from
    /// Little's law, slow databases, long-lived connections, leaks).
    /// Needs [`metrics`](crate::Builder::metrics) on.
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool, HealthStatus};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut ()) -> bool { false }
    /// # }
    /// let pool = Pool::builder().max_size(4).build(M)?;
    /// drop(pool.get()?);
    /// let health = pool.health();
    /// assert_eq!(health.status, HealthStatus::Healthy, "{health}");
    /// assert!(health.alerts.is_empty());
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn health(&self) -> Health {
        self.inner().health()
    }

    /// Tells the pool the database's connection limit (drivers do, when the
    /// server reports it), so that health advice never suggests more.
    pub fn set_server_capacity(&self, capacity: Option<u32>) {
        self.inner()
            .server_capacity
            .store(capacity.unwrap_or(0), Ordering::Relaxed);
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner().name
    }

    /// The settings the pool was built with (`max_size` and `min_idle` may
    /// since have been changed by [`resize`](Pool::resize): see [`state`](Pool::state)).
    pub fn config(&self) -> &Config {
        &self.inner().config
    }

    /// The connection manager.
    pub fn manager(&self) -> &M {
        &self.inner().manager
    }

    /// Closes the pool: lends nothing more, closes idle connections now and
    /// lent ones when they come back, wakes every waiter with
    /// [`Error::Closed`], and joins the background threads. Idempotent.
    ///
    /// ```
    /// # use pool_core::{Error, ManageConnection, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut ()) -> bool { false }
    /// # }
    /// let pool = Pool::builder().max_size(2).build(M)?;
    /// pool.close();
    /// assert_eq!(pool.state().total, 0);
    /// assert!(matches!(pool.get(), Err(Error::Closed { .. })));
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn close(&self) {
        self.inner().close();
    }

    /// Whether [`close`](Pool::close) was called (or the pool is being dropped).
    pub fn is_closed(&self) -> bool {
        self.inner().status.load(Ordering::Acquire) == CLOSED
    }

    /// Changes `max_size` at run time.
    ///
    /// Growing takes effect at once. Shrinking closes surplus idle
    /// connections now and surplus lent ones when they come back. `min_idle`
    /// is lowered to the new size if it was above it. Fails with
    /// [`Error::Config`] for 0 or a size above the limit.
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut ()) -> bool { false }
    /// # }
    /// let pool = Pool::builder().max_size(8).build(M)?;
    /// pool.resize(2)?;
    /// assert_eq!(pool.state().total, 2);
    /// assert!(pool.resize(0).is_err());
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn resize(&self, max_size: u32) -> Result<(), Error> {
        self.inner().resize(max_size)
    }

    /// Stops lending: `get` waits (up to its timeout) until
    /// [`resume`](Pool::resume), or fails at once with [`Error::Suspended`] if
    /// [`fail_when_suspended`](crate::Builder::fail_when_suspended) is set.
    /// Connections already lent are unaffected.
    pub fn suspend(&self) {
        self.inner().set_status(SUSPENDED);
    }

    /// Resumes lending after [`suspend`](Pool::suspend).
    pub fn resume(&self) {
        self.inner().set_status(RUNNING);
    }

    /// Retires every current connection, softly: idle ones are closed now,
    /// lent ones when they come back; new connections replace them. Use it
    /// after a database failover or a credential change.
    pub fn soft_evict_all(&self) {
        self.inner().soft_evict_all();
    }

    /// Keeps the connections for which `keep` returns true and retires the
    /// others, softly: idle ones are closed now, lent ones when they come
    /// back; new connections replace them as needed. Returns how many were rejected
    /// (closed now or marked).
    ///
    /// `keep` sees a [`ConnectionInfo`] for each open connection (id, age,
    /// uses, time since last use, lent or idle), runs on this thread with
    /// nothing of the pool locked, and may be called for connections that
    /// are being lent or returned meanwhile. A connection opened while
    /// `retain` runs may escape it (it is newer than the call).
    ///
    /// Close everything opened before a failover (or before a credential
    /// change), however busy the pool is:
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool};
    /// # use std::time::{Duration, Instant};
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut ()) -> bool { false }
    /// # }
    /// let pool = Pool::builder().max_size(2).build(M)?;
    /// let (lent, idle) = (pool.get()?, pool.get()?);
    /// drop(idle);
    /// std::thread::sleep(Duration::from_millis(20));
    /// let failed_over = Instant::now(); // when the monitor said so
    /// assert_eq!(pool.retain(|c| c.opened_at() > failed_over), 2);
    /// assert_eq!(pool.metrics().closed.evicted, 1); // the idle one, now
    /// drop(lent);
    /// assert_eq!(pool.metrics().closed.evicted, 2); // the lent one, on return
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    ///
    /// Close connections older than ten minutes now, or used more than
    /// 10,000 times (as a recurring task; `max_lifetime` does the first on
    /// its own, one connection at a time):
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut ()) -> bool { false }
    /// # }
    /// # let pool = Pool::builder().max_size(2).build(M)?;
    /// let closed = pool.retain(|c| c.age < Duration::from_secs(600) && c.uses <= 10_000);
    /// assert_eq!(closed, 0);
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn retain(&self, keep: impl FnMut(&ConnectionInfo) -> bool) -> usize {
        self.inner().retain(keep)
    }
}

/// Runs a manager callback, turning a panic into `None`.
#[inline]
pub(crate) fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}
