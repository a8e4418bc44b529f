// Over 800 lines (2,300): `Inner` still holds borrowing, returning, resets, control,
// metrics and health assembly. Issue 19 splits it into pool/{shared,acquire,release,loan,
// control,...}.rs; until then, new concerns go to their own files.
//! The pool: borrowing, returning, closing and run-time changes, on top of the
//! [bag](crate::bag).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use thread_local::ThreadLocal;

use crate::bag::{
    Bag, Slot, WaitOutcome, FLAG_BORROWER_CLOSED, FLAG_EVICT, FLAG_RETURNING, IDLE, IN_USE,
    RESERVED, VACANT,
};
use crate::clock::{self, Millis};
use crate::config::{Config, MAX_SIZE_LIMIT};
use crate::error::{Error, SharedError};
use crate::events::{CheckinEvent, CheckoutEvent, HandleEvent, ReleaseEvent, TimeoutEvent};
use crate::health::{self, Health, History, Sample};
use crate::leak::{LeakReport, LeakTracker};
use crate::metrics::{self as m, Counts, Metrics, Shard, Shared};
use crate::workers;
use crate::{ConnectFailure, ManageConnection};

/// Pool status: lending normally.
const RUNNING: u8 = 0;
/// Pool status: `suspend()` was called.
const SUSPENDED: u8 = 1;
/// Pool status: closed for good.
const CLOSED: u8 = 2;

/// A duration in whole microseconds, saturating.
#[inline]
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// How much time a borrow-time validation may take: what is left of the
/// borrower's one deadline, fixed when `get` was called.
#[derive(Clone, Copy, Debug)]
enum Budget {
    /// The fast path: the borrower's whole timeout. Its clock starts when
    /// the validation does (the fast path reads no `Instant` before), and a
    /// failed validation hands that start to the slow path
    /// (`LocalSeats::fast_start`), so the borrower keeps one deadline.
    Fresh(Duration),
    /// The slow path: the borrower's deadline (`None`: none that an
    /// `Instant` can hold).
    Until(Option<Instant>),
}

/// What a borrow-time check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vetted {
    /// Lend it.
    Good,
    /// Close it for this reason.
    Bad(CloseReason),
    /// The borrower's deadline passed before the validation could start:
    /// the connection was not tested, and goes back as it was.
    NoTime,
}

/// How long `close` waits for background resets in flight when the manager
/// sets no `reset_limit`.
const CLOSE_WAITS_FOR_RETURNS: Duration = Duration::from_secs(5);

/// Entries in a thread's cache of recently returned seats.
const LOCAL_SEATS: usize = 4;
/// An empty entry in the thread cache.
const NO_SEAT: usize = 0;

/// Why a connection was closed; shown in the debug log line that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Idle for longer than `idle_timeout`, above `min_idle`.
    IdleTimeout,
    /// Reached its (randomly shortened) `max_lifetime`.
    MaxLifetime,
    /// Reported broken by `has_broken`, marked broken by its borrower, or
    /// returned while its borrower was panicking.
    Broken,
    /// Failed `is_valid` on borrow or keepalive.
    FailedValidation,
    /// `reset` failed or panicked when it came back.
    ResetFailed,
    /// Evicted by `soft_evict_all` or surplus after `resize`.
    Evicted,
    /// The pool was closed.
    PoolClosed,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::MaxLifetime => "max lifetime",
            CloseReason::Broken => "broken",
            CloseReason::FailedValidation => "failed validation",
            CloseReason::ResetFailed => "reset failed",
            CloseReason::Evicted => "evicted",
            CloseReason::PoolClosed => "pool closed",
        })
    }
}

/// A snapshot of the pool's connections and waiters.
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
/// let conn = pool.get()?;
/// let state = pool.state();
/// assert_eq!((state.total, state.active, state.idle), (2, 1, 1));
/// assert_eq!(state.to_string(), "total=2, active=1, idle=1, waiting=0");
/// # drop(conn);
/// # Ok::<(), pool_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct State {
    /// Open connections, idle and lent.
    pub total: u32,
    /// Connections waiting in the pool (including any being checked by the
    /// housekeeper).
    pub idle: u32,
    /// Connections lent to borrowers.
    pub active: u32,
    /// Connections their borrowers gave back that the pool is still
    /// resetting (or closing) in the background: neither lent nor yet idle.
    pub returning: u32,
    /// Connects and resets the pool gave up on after their time limit whose
    /// sessions may still be open: not counted in `total`, but they hold a
    /// place in `max_size` until they end (see
    /// [`ManageConnection::connect_limit`](crate::ManageConnection::connect_limit)).
    pub given_up: u32,
    /// Borrowers waiting for a connection.
    pub waiting: u32,
    /// The current `max_size`.
    pub max_size: u32,
    /// The current `min_idle`.
    pub min_idle: u32,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "total={}, active={}, idle={}, waiting={}",
            self.total, self.active, self.idle, self.waiting
        )?;
        if self.returning > 0 {
            write!(f, ", returning={}", self.returning)?;
        }
        if self.given_up > 0 {
            write!(f, ", given_up={}", self.given_up)?;
        }
        Ok(())
    }
}

/// A thread's most recently returned seats, newest first.
///
/// Only its own thread writes it (relaxed loads and stores, no locked
/// instruction); atomics rather than `Cell`s so that a metrics snapshot can
/// read every thread's shard.
struct LocalSeats {
    /// Addresses of seats (`&Slot<M::Connection>` of this thread's pool),
    /// or `NO_SEAT`. An address rather than an index: seats never move
    /// (`bag`), and the borrow then reads the seat's state straight away
    /// instead of first finding its bucket.
    seats: [AtomicUsize; LOCAL_SEATS],
    /// Where this thread starts scanning the shared seats, so that threads
    /// do not all contend for seat 0.
    scan_from: u32,
    /// This thread's number, for leak reports.
    /// Read on every borrow with leak detection on; written only in
    /// `local_slow`, when a new thread takes this entry over.
    thread_no: AtomicU64,
    /// The thread this entry belongs to. The `thread_local` crate hands a
    /// dead thread's entry to the next new thread (it reuses thread ids),
    /// so `local_slow` compares and, for a new owner, takes a new thread
    /// number: leak reports then name the thread that really borrowed.
    /// (The entry still has one writer at a time: its old owner is gone.)
    owner: Mutex<Option<std::thread::ThreadId>>,
    /// This thread's metrics (when metrics are on).
    shard: Option<Box<Shard>>,
    /// When the fast path's failed validation started, for the slow path
    /// that follows it at once: the borrower's wait began then
    /// (`Budget::Fresh`). Touched only on those cold paths.
    fast_start: Mutex<Option<Instant>>,
}

/// Numbers pools, for [`LAST_LOCAL`]: never 0, never reused.
static POOL_SEQ: AtomicU64 = AtomicU64::new(1);

std::thread_local! {
    /// This thread's most recently used `LocalSeats`: (pool number, pointer
    /// to that pool's entry for this thread). A one-entry cache in front of
    /// the pool's `ThreadLocal`, whose lookup is an out-of-line call: a
    /// thread that borrows from one pool finds its seats with one
    /// thread-local load and a compare. No destructor, so access never
    /// checks for one.
    static LAST_LOCAL: std::cell::Cell<(u64, *const LocalSeats)> =
        const { std::cell::Cell::new((0, std::ptr::null())) };
}

/// Spreads threads' scan starting points.
static SCAN_SEQ: AtomicUsize = AtomicUsize::new(0);
/// Numbers the threads that use a pool (for leak reports).
static THREAD_SEQ: AtomicUsize = AtomicUsize::new(1);

impl LocalSeats {
    fn new(metrics: bool) -> Self {
        LocalSeats {
            seats: std::array::from_fn(|_| AtomicUsize::new(NO_SEAT)),
            // Consecutive threads start 3 seats apart: in a small pool each
            // finds its own seat first instead of all racing for seat 0.
            scan_from: SCAN_SEQ.fetch_add(1, Ordering::Relaxed).wrapping_mul(3) as u32,
            thread_no: AtomicU64::new(0),
            owner: Mutex::new(None),
            shard: metrics.then(|| Box::new(Shard::new())),
            fast_start: Mutex::new(None),
        }
    }

    /// Records the seat at address `seat` as the newest entry.
    #[inline]
    fn push(&self, seat: usize) {
        if self.seats[0].load(Ordering::Relaxed) == seat {
            return;
        }
        let mut carry = seat;
        for entry in &self.seats {
            let old = entry.load(Ordering::Relaxed);
            entry.store(carry, Ordering::Relaxed);
            carry = old;
            if carry == seat || carry == NO_SEAT {
                break;
            }
        }
    }
}

/// Connect failures that mean "down" ([`ConnectFailure::means_down`]), in a
/// row, before borrowers fail fast: one failure is a blip (a login killed
/// in a restart, a refused connect while a server reboots), not an outage.
const FAIL_FAST_FAILURES: u64 = 2;
/// ... spanning at least this long: a database that refused every connect
/// for a second is down; a shorter blip (a restart, a failover's switch) is
/// waited out. With the creator's backoff (50 ms doubling, jittered) the
/// verdict comes with the failure about 1.5 s into an outage.
const FAIL_FAST_SPAN: Duration = Duration::from_secs(1);
/// A fail-fast verdict older than this is not repeated: the borrower waits
/// for the next connect attempt instead (within its own timeout), so a
/// database that came back is not reported down from an old failure.
const FAIL_FAST_FRESH: Duration = Duration::from_millis(500);

/// The most recent connect failure and the failure streak.
#[derive(Default)]
pub(crate) struct ConnectFailures {
    pub(crate) last: Option<SharedError>,
    /// Consecutive failed attempts; 0 after a success.
    pub(crate) streak: u64,
    /// What the manager made of the last failure.
    pub(crate) last_kind: Option<ConnectFailure>,
    /// When the last failure happened.
    pub(crate) last_at: Option<Instant>,
    /// Consecutive failures of kinds that mean "down", and when the first
    /// of them happened. A failure of another kind (the server answered)
    /// ends the run.
    pub(crate) down_streak: u64,
    pub(crate) down_since: Option<Instant>,
}

impl ConnectFailures {
    /// Records a failed connect.
    pub(crate) fn record(&mut self, error: SharedError, kind: ConnectFailure, now: Instant) {
        self.streak += 1;
        self.last = Some(error);
        self.last_kind = Some(kind);
        self.last_at = Some(now);
        if kind.means_down() {
            self.down_streak += 1;
            self.down_since.get_or_insert(now);
        } else {
            self.down_streak = 0;
            self.down_since = None;
        }
    }

    /// Records a successful connect; returns the failure streak it ends.
    pub(crate) fn clear(&mut self) -> u64 {
        let streak = self.streak;
        *self = ConnectFailures::default();
        streak
    }

    /// Whether the failures so far say the database is down: a login the
    /// server rejected, or repeated failures to reach it over a span.
    pub(crate) fn database_down(&self) -> bool {
        match self.last_kind {
            Some(ConnectFailure::Rejected) => true,
            Some(ConnectFailure::Unreachable) => {
                self.down_streak >= FAIL_FAST_FAILURES
                    && match (self.down_since, self.last_at) {
                        (Some(first), Some(last)) => last - first >= FAIL_FAST_SPAN,
                        _ => false,
                    }
            }
            _ => false,
        }
    }
}

/// Everything the pool shares between handles, lent connections and its
/// background threads.
pub(crate) struct Inner<M: ManageConnection> {
    pub(crate) name: Arc<str>,
    pub(crate) manager: M,
    pub(crate) config: Config,
    pub(crate) bag: Bag<M::Connection>,
    /// `RUNNING`, `SUSPENDED` or `CLOSED`.
    status: AtomicU8,
    /// Current max size (changed by `resize`).
    pub(crate) max_size: AtomicUsize,
    /// Current min idle (clamped to max size).
    pub(crate) min_idle: AtomicUsize,
    /// Open connections (seats with a connection). Changed only when one is
    /// opened or closed.
    pub(crate) total: AtomicUsize,
    /// Seats held by work the pool gave up on: connects past
    /// `connect_limit`, background resets past `reset_limit`. Their sessions
    /// may still be open (or about to be), so they count against `max_size`
    /// until the work returns and the session is closed (invariant 2).
    pub(crate) abandoned: AtomicUsize,
    /// Jobs on `pool-io` threads that reset or close a returned connection
    /// and have not finished: counted until the seat is available or vacant
    /// again, so that `close()` can wait for them to end (a seat's
    /// `FLAG_RETURNING` is cleared earlier, before its seat is released).
    return_jobs: AtomicUsize,
    /// Connections closed younger than `workers::YOUNG` (not counting a
    /// closing pool), and the reason of the latest (`metrics::reason_index`):
    /// the creator caps its connects per second while these pile up.
    pub(crate) young_closes: AtomicU64,
    pub(crate) young_reason: AtomicU8,
    /// Connections `build` wants open before it returns (0 afterwards).
    pub(crate) init_target: AtomicUsize,
    pub(crate) next_id: AtomicU64,
    /// This pool's number (from `POOL_SEQ`), the key of `LAST_LOCAL`.
    uid: u64,
    /// How long since its last use a connection is lent without
    /// validation, in coarse milliseconds (`alive_bypass_window`, computed
    /// once); `NEVER` when `test_on_check_out` is off.
    bypass_ms: Millis,
    local: ThreadLocal<LocalSeats>,
    pub(crate) failures: Mutex<ConnectFailures>,
    /// A borrower failed fast (or found the verdict stale) since the last
    /// connect attempt: the creator probes again on its backoff, whatever
    /// `min_idle` says, so that the pool notices when the database is back.
    pub(crate) wanted: std::sync::atomic::AtomicBool,
    /// Connect attempts so far (for `build`'s wait).
    pub(crate) attempts: AtomicU64,
    /// Guards status changes that sleepers wait for (suspend, build).
    pub(crate) events: Mutex<()>,
    pub(crate) events_cv: Condvar,
    /// Doorbells of the background threads (bounded(1): a pending ring
    /// coalesces further rings).
    pub(crate) creator_bell: Sender<()>,
    pub(crate) housekeeper_bell: Sender<()>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Leak detection, when `leak_detection_threshold` is set.
    pub(crate) leaks: Option<LeakTracker>,
    /// When the housekeeper plans to wake next (coarse clock): a loan that
    /// falls due earlier rings it.
    pub(crate) housekeeper_next: AtomicU64,
    /// Counters of rare events.
    pub(crate) stats: Shared,
    /// Recent counter samples, for health verdicts.
    history: parking_lot::Mutex<History>,
    /// The database's connection limit, when a driver told us (0: unknown).
    server_capacity: AtomicU32,
    /// The user's event handler.
    pub(crate) handler: Option<Arc<dyn HandleEvent>>,
    /// Whether resets run on a worker thread (setting, or the manager's say).
    background_reset: bool,
    /// The manager's reset limit (coarse milliseconds) when resets run in
    /// the background: the housekeeper gives up a seat whose reset has run
    /// longer (see `reset_in_background`).
    pub(crate) reset_watch: Option<Millis>,
    /// This `Inner` itself, for work that must outlive a borrowed loan (a
    /// background reset, [`PooledConnection::into_owned`]).
    me: Weak<Inner<M>>,
}

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
    pub(crate) fn start(
        config: Config,
        name: Arc<str>,
        manager: M,
        wait: bool,
        handler: Option<Arc<dyn HandleEvent>>,
    ) -> Result<Pool<M>, Error> {
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
            wanted: std::sync::atomic::AtomicBool::new(false),
            attempts: AtomicU64::new(0),
            events: Mutex::new(()),
            events_cv: Condvar::new(),
            creator_bell,
            housekeeper_bell,
            threads: Mutex::new(Vec::new()),
            leaks: config.leak_detection_threshold.map(LeakTracker::new),
            housekeeper_next: AtomicU64::new(0),
            stats: Shared::new(),
            history: parking_lot::Mutex::new(History::default()),
            handler,
            background_reset,
            reset_watch,
            server_capacity: AtomicU32::new(0),
            config,
        });
        let pool = Pool {
            handle: Arc::new(Handle {
                inner: inner.clone(),
            }),
        };
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
            Some(leaks) => leaks.suspects((0..inner.bag.capacity()).map(|i| inner.bag.slot(i))),
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
}

fn spawn_workers<M: ManageConnection>(
    inner: &Arc<Inner<M>>,
    creator_rx: Receiver<()>,
    housekeeper_rx: Receiver<()>,
) -> std::io::Result<()> {
    let weak: Weak<Inner<M>> = Arc::downgrade(inner);
    let creator = std::thread::Builder::new()
        .name(format!("{}-creator", inner.name))
        .spawn({
            let weak = weak.clone();
            move || workers::creator(weak, creator_rx)
        })?;
    inner.threads.lock().push(creator);
    let housekeeper = std::thread::Builder::new()
        .name(format!("{}-housekeeper", inner.name))
        .spawn(move || workers::housekeeper(weak, housekeeper_rx))?;
    inner.threads.lock().push(housekeeper);
    Ok(())
}

impl<M: ManageConnection> Inner<M> {
    /// This thread's seat cache and metrics shard for this pool.
    #[inline]
    fn local(&self) -> &LocalSeats {
        let (uid, ptr) = LAST_LOCAL.with(|last| last.get());
        if uid == self.uid {
            // SAFETY: `LAST_LOCAL` is this thread's, and `uid` numbers one
            // pool for the life of the process, so `ptr` was stored by
            // `local_slow` on this thread for this pool: it points at this
            // thread's entry in `self.local`. `ThreadLocal` never moves or
            // frees an entry before it is dropped itself, which cannot
            // happen while `&self` is borrowed.
            return unsafe { &*ptr };
        }
        self.local_slow()
    }

    #[cold]
    fn local_slow(&self) -> &LocalSeats {
        let local = self.local.get_or(|| LocalSeats::new(self.config.metrics));
        let me = std::thread::current().id();
        let mut owner = local.owner.lock();
        if *owner != Some(me) {
            *owner = Some(me);
            let number = THREAD_SEQ.fetch_add(1, Ordering::Relaxed) as u64;
            local.thread_no.store(number, Ordering::Relaxed);
            if let Some(leaks) = &self.leaks {
                leaks.register_thread(number);
            }
        }
        drop(owner);
        LAST_LOCAL.with(|last| last.set((self.uid, local as *const LocalSeats)));
        local
    }

    /// The borrow path: thread cache, then a scan, then the waiter queue.
    ///
    /// Split so that the loan comes back in registers. A
    /// `Result<PooledConnection, Error>` is 72 bytes and is returned through
    /// memory: when `acquire` was one function that the compiler chose not
    /// to inline (criterion's loop, or any caller of some size), the caller
    /// read the loan back with one 16-byte load from two 8-byte stores, which
    /// the CPU cannot forward. The uncontended cycle (`benches/benches/cycle.rs`)
    /// took 27.1 ns then and takes 15.4 ns now, with r2d2 at 175–177 ns in
    /// both runs. The fast path returns an `Option` of the two-word loan
    /// (`rax:rdx`), and only this small match is inlined into each call site.
    #[track_caller]
    #[inline(always)]
    fn acquire(&self, timeout: Duration) -> Result<PooledConnection<'_, M>, Error> {
        match self.acquire_fast(timeout) {
            Some(conn) => Ok(conn),
            None => self.acquire_slow(timeout),
        }
    }

    /// A seat from this thread's cache, claimed and vetted, or `None` (then
    /// `acquire_slow`: the pool is not running, a waiter has waited too long,
    /// the cache is empty or taken, or the claimed connection was closed).
    #[track_caller]
    #[inline(never)]
    fn acquire_fast(&self, timeout: Duration) -> Option<PooledConnection<'_, M>> {
        // Newcomers may overtake waiters, unless one has waited too long
        // (then they queue behind it: see `bag`).
        if self.status.load(Ordering::Acquire) == RUNNING && !self.bag.starving() {
            let now = clock::now();
            let local = self.local();
            for entry in &local.seats {
                let seat = entry.load(Ordering::Relaxed);
                if seat == NO_SEAT {
                    break; // the entries after an empty one are empty
                }
                // SAFETY: only `check_in` stores into this thread's entries
                // for this pool, and only addresses of this pool's seats,
                // which never move and live as long as the bag (`bag`),
                // which `&self` keeps alive.
                let slot = unsafe { &*(seat as *const Slot<M::Connection>) };
                if slot.try_claim(IN_USE) {
                    return self.check_out(local, slot, now, Budget::Fresh(timeout), 0);
                }
            }
        }
        None
    }

    #[cold]
    #[track_caller]
    fn acquire_slow(&self, timeout: Duration) -> Result<PooledConnection<'_, M>, Error> {
        // One deadline for the whole call, fixed here (or when the fast
        // path's failed validation began): every validation and wait below
        // gets what is left of it, never more.
        let start = self
            .local()
            .fast_start
            .lock()
            .take()
            .unwrap_or_else(Instant::now);
        let deadline = start.checked_add(timeout);
        // `try_get` (no wait) still gives an idle connection's validation
        // its `validation_timeout`: that is not a wait for another borrower.
        let vet_until = if timeout.is_zero() {
            Instant::now().checked_add(self.config.validation_timeout)
        } else {
            deadline
        };
        let remaining = || match deadline {
            Some(d) => d
                .checked_duration_since(Instant::now())
                .filter(|r| !r.is_zero()),
            None => Some(Duration::from_secs(3600)),
        };
        loop {
            match self.status.load(Ordering::Acquire) {
                RUNNING => {}
                CLOSED => return Err(self.closed_error()),
                _ => {
                    self.wait_while_suspended(deadline)?;
                    continue;
                }
            }
            let local = self.local();
            let scan_from = local.scan_from as usize;
            let max = self.max_size.load(Ordering::Acquire);
            let may_scan = !self.bag.starving();
            if let Some(index) = may_scan.then(|| self.bag.scan(scan_from, max)).flatten() {
                let waited = micros(start.elapsed());
                let slot = self.bag.slot(index);
                let budget = Budget::Until(vet_until);
                if let Some(conn) = self.check_out(local, slot, clock::now(), budget, waited) {
                    return Ok(conn);
                }
                if vet_until.is_some_and(|d| Instant::now() >= d) {
                    self.ring_creator_if_short(1);
                    return Err(self.timeout_error(start));
                }
                continue;
            }
            if self.config.fail_fast {
                if let Some(err) = self.down_error() {
                    return Err(err);
                }
            }
            if remaining().is_none() {
                self.ring_creator_if_short(1);
                return Err(self.timeout_error(start));
            }
            let outcome = self.bag.wait(
                || {
                    self.bag
                        .scan(scan_from, self.max_size.load(Ordering::Acquire))
                },
                |waiting| self.ring_creator_if_short(waiting),
                remaining,
                |extra| self.make_available(self.bag.slot(extra)),
            );
            match outcome {
                WaitOutcome::Got(index) => {
                    let waited = micros(start.elapsed());
                    let slot = self.bag.slot(index);
                    let budget = Budget::Until(deadline);
                    if let Some(conn) = self.check_out(local, slot, clock::now(), budget, waited) {
                        return Ok(conn);
                    }
                }
                WaitOutcome::TimedOut => return Err(self.timeout_error(start)),
                WaitOutcome::Closed => return Err(self.closed_error()),
                WaitOutcome::Failed => {
                    if let Some(err) = self.down_error() {
                        return Err(err);
                    }
                }
            }
        }
    }

    /// Validates a connection about to be lent that has not been used within
    /// the alive-bypass window, within `validation_timeout` and what is left
    /// of the borrower's deadline. Out of line: the borrow of a recently
    /// used connection never gets here.
    #[cold]
    #[inline(never)]
    fn validate(&self, local: &LocalSeats, conn: &mut M::Connection, budget: Budget) -> Vetted {
        let now = Instant::now();
        let (fresh, deadline) = match budget {
            Budget::Fresh(timeout) if timeout.is_zero() => {
                (true, now.checked_add(self.config.validation_timeout))
            }
            Budget::Fresh(timeout) => (true, now.checked_add(timeout)),
            Budget::Until(deadline) => (false, deadline),
        };
        let limit = match deadline {
            None => self.config.validation_timeout,
            Some(d) => match d.checked_duration_since(now).filter(|r| !r.is_zero()) {
                Some(left) => self.config.validation_timeout.min(left),
                None => return Vetted::NoTime,
            },
        };
        let ok = guarded(|| self.manager.is_valid(conn, limit).is_ok());
        if ok == Some(true) {
            return Vetted::Good;
        }
        if fresh {
            // The slow path comes next and keeps this deadline.
            *local.fast_start.lock() = Some(now);
        }
        Vetted::Bad(CloseReason::FailedValidation)
    }

    /// Vets a seat the caller just claimed (`IN_USE`) and wraps it, or closes
    /// the connection and returns `None` if it must not be lent.
    #[track_caller]
    #[inline]
    fn check_out(
        &self,
        local: &LocalSeats,
        slot: &Slot<M::Connection>,
        now: Millis,
        budget: Budget,
        waited_us: u64,
    ) -> Option<PooledConnection<'_, M>> {
        let status = self.status.load(Ordering::SeqCst);
        if status != RUNNING {
            // Closed or suspended after we claimed it: put it back (release
            // closes it if the pool is closed).
            self.check_in(local, slot, now);
            return None;
        }
        let vetted = if slot.flags.load(Ordering::Relaxed) & FLAG_EVICT != 0
            || slot.index as usize >= self.max_size.load(Ordering::Relaxed)
        {
            Vetted::Bad(CloseReason::Evicted)
        } else if now >= slot.retire_at.load(Ordering::Relaxed) {
            Vetted::Bad(CloseReason::MaxLifetime)
        } else {
            // SAFETY: we claimed the seat (IN_USE) and have not released it.
            unsafe {
                slot.with_conn(|conn| {
                    let Some(conn) = conn else {
                        return Vetted::Good;
                    };
                    if guarded(|| self.manager.has_broken(conn)).unwrap_or(true) {
                        return Vetted::Bad(CloseReason::Broken);
                    }
                    if now.saturating_sub(slot.last_used.load(Ordering::Relaxed)) > self.bypass_ms {
                        return self.validate(local, conn, budget);
                    }
                    Vetted::Good
                })
            }
        };
        match vetted {
            Vetted::Good => {}
            Vetted::Bad(reason @ (CloseReason::FailedValidation | CloseReason::Broken)) => {
                // Likely dead: closing it may block (a black-holed
                // network), and the borrower's deadline is not for that.
                self.close_slot_off_thread(slot, reason);
                return None;
            }
            Vetted::Bad(reason) => {
                self.close_slot(slot, reason);
                return None;
            }
            Vetted::NoTime => {
                // Untested, not known bad: back to the next borrower.
                self.make_available(slot);
                return None;
            }
        }
        slot.lent_at.store(now, Ordering::Relaxed);
        if let Some(shard) = &local.shard {
            shard.wait.record_owned(waited_us);
        }
        if let Some(h) = &self.handler {
            let id = slot.id.load(Ordering::Relaxed);
            let wait = Duration::from_micros(waited_us);
            guarded(|| h.handle_checkout(CheckoutEvent { id, wait }));
        }
        if let Some(leaks) = &self.leaks {
            let thread = local.thread_no.load(Ordering::Relaxed);
            leaks.lend(slot, now, thread, Location::caller());
            let due = clock::after(now, leaks.threshold);
            if due < self.housekeeper_next.load(Ordering::Relaxed) {
                self.housekeeper_next.fetch_min(due, Ordering::Relaxed);
                self.ring_housekeeper();
            }
        }
        Some(PooledConnection::new(self, slot))
    }

    /// The return path: reset, checks, then back to a waiter or idle.
    #[inline]
    fn check_in(&self, local: &LocalSeats, slot: &Slot<M::Connection>, now: Millis) {
        let reason = if self.status.load(Ordering::Acquire) == CLOSED {
            Some(CloseReason::PoolClosed)
        } else {
            // SAFETY: the caller owns the seat (IN_USE) until release below.
            unsafe {
                slot.with_conn(|conn| {
                    let conn = conn?;
                    if guarded(|| self.manager.has_broken(conn)).unwrap_or(true) {
                        return Some(CloseReason::Broken);
                    }
                    None
                })
            }
        };
        if let Some(reason) = reason {
            return self.close_slot(slot, reason);
        }
        local.push(slot as *const Slot<M::Connection> as usize);
        // In the background only while nobody waits. With waiters the pool
        // is saturated and the returning thread would only queue again; it
        // is already running, while a worker must first be woken and then
        // wait for a CPU that the database server and the other borrowers
        // need (on 2 cores, 8 threads on 4 PostgreSQL connections ran about
        // twice as fast with resets on the returning thread).
        if self.background_reset
            && self.bag.waiting() == 0
            // SAFETY: as above.
            && unsafe { slot.with_conn(|c| c.is_some_and(|c| self.manager.needs_reset(c))) }
            && self.send_to_reset(slot)
        {
            return;
        }
        self.reset_and_release(slot, now);
    }

    /// Hands a returned seat (owned, `IN_USE`) to a `pool-io` thread that
    /// resets it and makes it available. False if no worker thread could
    /// take it: then the caller resets it, unwatched, where the manager
    /// bounds the reset by itself (the driver crates' `deadline::run` cannot
    /// start a thread either, so their reset fails and the connection is
    /// closed).
    #[cold]
    #[inline(never)]
    fn send_to_reset(&self, slot: &Slot<M::Connection>) -> bool {
        // Off the borrower's critical path: the seat stays IN_USE (owned by
        // the job) until the reset is done, then becomes available. The loan
        // may have borrowed the pool (not counted it): the job takes its own
        // reference. `me` upgrades while the caller's loan keeps the pool
        // alive.
        let Some(inner) = self.me.upgrade() else {
            return false;
        };
        let index = slot.index as usize;
        slot.flags.fetch_or(FLAG_RETURNING, Ordering::Relaxed);
        self.return_jobs.fetch_add(1, Ordering::SeqCst);
        let job = Box::new(move || {
            let slot = inner.bag.slot(index);
            inner.reset_in_background(slot);
            inner.return_jobs.fetch_sub(1, Ordering::SeqCst);
        });
        if crate::deadline::detach(job).is_ok() {
            return true;
        }
        self.return_jobs.fetch_sub(1, Ordering::SeqCst);
        slot.flags.fetch_and(!FLAG_RETURNING, Ordering::Relaxed);
        false
    }

    /// The background job of `check_in`, on a worker thread that owns the
    /// seat (`IN_USE`).
    ///
    /// With a reset limit the reset is *watched*: the connection leaves the
    /// seat, the seat is stamped (`Slot::begin_watch`), and the reset runs
    /// right here (`deadline::watched` makes the manager's own
    /// `deadline::run` run inline rather than hop to another thread). If it
    /// outlives the limit, the housekeeper gives the seat up
    /// (`Slot::give_up_watch`, then `give_up_reset`), so the pool's capacity
    /// does not wait for a server that never answers; this job then only
    /// drops the connection when the reset returns at last.
    fn reset_in_background(&self, slot: &Slot<M::Connection>) {
        let Some(limit) = self.reset_watch else {
            return self.reset_and_release(slot, clock::now());
        };
        // SAFETY: `check_in` handed this job the seat (IN_USE).
        let Some(mut conn) = (unsafe { slot.take() }) else {
            return self.close_slot(slot, CloseReason::ResetFailed);
        };
        let since = slot.begin_watch(clock::now());
        let due = clock::after(since, limit);
        if due < self.housekeeper_next.load(Ordering::Relaxed) {
            self.housekeeper_next.fetch_min(due, Ordering::Relaxed);
            self.ring_housekeeper();
        }
        let ok = crate::deadline::watched(|| guarded(|| self.manager.reset(&mut conn).is_ok()));
        if !slot.end_watch(since) {
            // Given up by the housekeeper: the connection was counted as
            // closed then. Close it, then free the seat it held.
            if guarded(move || self.manager.close(conn)).is_none() {
                log::warn!(
                    "pool \"{}\": closing a given-up connection panicked",
                    self.name
                );
            }
            slot.wait_given_up();
            return self.end_abandoned(slot);
        }
        // SAFETY: winning `end_watch` gives the seat back to this job.
        unsafe { slot.put(conn) };
        self.after_reset(slot, ok == Some(true), clock::now());
    }

    /// Runs `reset` on a seat the caller owns, then the return checks, then
    /// makes it available (or closes it).
    #[inline]
    fn reset_and_release(&self, slot: &Slot<M::Connection>, now: Millis) {
        // SAFETY: the caller owns the seat (IN_USE) until release below.
        let reset_ok = unsafe {
            slot.with_conn(|conn| {
                conn.is_some_and(|c| guarded(|| self.manager.reset(c).is_ok()) == Some(true))
            })
        };
        self.after_reset(slot, reset_ok, now);
    }

    /// The return checks after a reset, on a seat the caller owns; then the
    /// seat becomes available (or its connection is closed).
    #[inline]
    fn after_reset(&self, slot: &Slot<M::Connection>, reset_ok: bool, now: Millis) {
        // A plain load first: this is every return's path, and the flag is
        // set only by a background reset (no locked instruction otherwise).
        if slot.flags.load(Ordering::Relaxed) & FLAG_RETURNING != 0 {
            slot.flags.fetch_and(!FLAG_RETURNING, Ordering::Relaxed);
        }
        if !reset_ok {
            return self.close_slot(slot, CloseReason::ResetFailed);
        }
        if slot.flags.load(Ordering::Relaxed) & FLAG_EVICT != 0 || self.over_size(slot) {
            return self.close_slot(slot, CloseReason::Evicted);
        }
        if now >= slot.retire_at.load(Ordering::Relaxed) {
            return self.close_slot(slot, CloseReason::MaxLifetime);
        }
        slot.last_used.store(now, Ordering::Relaxed);
        self.make_available(slot);
    }

    /// Frees a seat whose watched reset outlived the manager's limit; the
    /// caller won `Slot::give_up_watch`, so it owns the seat, which holds no
    /// connection (the resetting thread has it, and drops it when its reset
    /// returns). Counted as a close for `reset_failed` now, so that a
    /// replacement can be opened.
    pub(crate) fn give_up_reset(&self, slot: &Slot<M::Connection>, limit: Millis) {
        log::warn!(
            "pool \"{}\": the session reset of connection {} took longer than {limit} ms: \
             connection given up (it is closed when the reset returns, and holds its place \
             in max_size until then)",
            self.name,
            slot.id.load(Ordering::Relaxed)
        );
        self.abandoned.fetch_add(1, Ordering::SeqCst);
        slot.flags.fetch_and(!FLAG_RETURNING, Ordering::Relaxed);
        self.retire(slot, CloseReason::ResetFailed, None);
        // The seat goes back to the resetting thread, which frees it once
        // the connection is closed (`reset_in_background`).
        slot.hand_back();
    }

    /// The end of work the pool gave up on (a late connect, a given-up
    /// reset) on a seat the caller owns again and has emptied: the seat is
    /// free, and `max_size` has room again.
    pub(crate) fn end_abandoned(&self, slot: &Slot<M::Connection>) {
        self.abandoned.fetch_sub(1, Ordering::SeqCst);
        self.vacate(slot);
    }

    /// Open connections plus seats held by abandoned work: what counts
    /// against `max_size`.
    #[inline]
    pub(crate) fn occupied(&self) -> usize {
        self.total.load(Ordering::SeqCst) + self.abandoned.load(Ordering::SeqCst)
    }

    /// Whether the pool holds more connections than it may (after `resize`
    /// shrank it) and this seat's connection should go: seats at or above the
    /// new size always, any seat while the total is still above it.
    #[inline]
    pub(crate) fn over_size(&self, slot: &Slot<M::Connection>) -> bool {
        let max = self.max_size.load(Ordering::Relaxed);
        slot.index as usize >= max || self.total.load(Ordering::Relaxed) > max
    }

    /// Releases an owned seat to a waiter or as idle, then closes it again if
    /// the pool was closed or shrunk meanwhile. This is one half of a Dekker
    /// pair: `release` stores `IDLE` and fences before we load the status;
    /// `close`, `resize` and `soft_evict_all` store, fence, then sweep idle
    /// seats. One of the two sides sees the other.
    #[inline]
    pub(crate) fn make_available(&self, slot: &Slot<M::Connection>) {
        if self.bag.release(slot) {
            return;
        }
        if (self.status.load(Ordering::SeqCst) == CLOSED
            || self.over_size(slot)
            || slot.flags.load(Ordering::SeqCst) & FLAG_EVICT != 0)
            && slot.try_claim(RESERVED)
        {
            let reason = if self.status.load(Ordering::SeqCst) == CLOSED {
                CloseReason::PoolClosed
            } else {
                CloseReason::Evicted
            };
            self.close_slot(slot, reason);
        }
    }

    /// Closes the connection in a seat the caller owns on a `pool-io`
    /// thread, which owns the seat until the connection is closed (so its
    /// replacement still waits for the close: invariant 2); on this thread
    /// if no worker can take it.
    #[cold]
    #[inline(never)]
    fn close_slot_off_thread(&self, slot: &Slot<M::Connection>, reason: CloseReason) {
        let Some(inner) = self.me.upgrade() else {
            return self.close_slot(slot, reason);
        };
        let index = slot.index as usize;
        slot.flags.fetch_or(FLAG_RETURNING, Ordering::Relaxed);
        self.return_jobs.fetch_add(1, Ordering::SeqCst);
        let job = Box::new(move || {
            inner.close_slot(inner.bag.slot(index), reason);
            inner.return_jobs.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(job) = crate::deadline::detach(job) {
            job();
        }
    }

    /// Closes the connection in a seat the caller owns and frees the seat.
    #[cold]
    pub(crate) fn close_slot(&self, slot: &Slot<M::Connection>, reason: CloseReason) {
        // SAFETY: the caller owns the seat (IN_USE or RESERVED).
        let conn = unsafe { slot.take() };
        // Close before the seat is vacant, so that the replacement is never
        // open at the same time as the connection it replaces.
        if let Some(conn) = conn {
            self.retire(slot, reason, Some(conn));
        }
        self.vacate(slot);
    }

    /// Counts the end of a seat's connection and closes it (`None`: it is
    /// closed elsewhere, see `give_up_reset`). The caller owns the seat.
    fn retire(&self, slot: &Slot<M::Connection>, reason: CloseReason, conn: Option<M::Connection>) {
        let id = slot.id.load(Ordering::Relaxed);
        self.stats.closed[m::reason_index(reason)].fetch_add(1, Ordering::Relaxed);
        if reason == CloseReason::FailedValidation {
            Shared::bump(&self.stats.validation_failures);
        }
        let age = clock::now().saturating_sub(slot.created.load(Ordering::Relaxed));
        if self.config.metrics {
            self.stats.lifetime.record_shared(age);
        }
        // The connect-storm cap (`workers::ChurnGuard`) counts connections
        // the pool, its settings or the server ended young; one its
        // borrower chose to close is the application's own churn.
        if age < workers::YOUNG
            && reason != CloseReason::PoolClosed
            && slot.flags.load(Ordering::Relaxed) & FLAG_BORROWER_CLOSED == 0
        {
            self.young_closes.fetch_add(1, Ordering::Relaxed);
            self.young_reason
                .store(m::reason_index(reason) as u8, Ordering::Relaxed);
        }
        if let Some(conn) = conn {
            if guarded(move || self.manager.close(conn)).is_none() {
                log::warn!("pool \"{}\": closing connection {id} panicked", self.name);
            }
            log::debug!("pool \"{}\": closed connection {id} ({reason})", self.name);
        }
        self.total.fetch_sub(1, Ordering::SeqCst);
        if let Some(h) = &self.handler {
            let age = Duration::from_millis(age);
            guarded(|| h.handle_release(ReleaseEvent { id, age, reason }));
        }
    }

    /// Marks a seat the caller owns (and has emptied) vacant.
    fn vacate(&self, slot: &Slot<M::Connection>) {
        slot.id.store(0, Ordering::Relaxed);
        // No mark outlives its connection (see the creator's publish).
        slot.flags.store(0, Ordering::Relaxed);
        slot.state.store(VACANT, Ordering::Release);
        if self.status.load(Ordering::Acquire) != CLOSED {
            self.ring_creator_if_short(self.bag.waiting());
        }
    }

    /// Asks the creator for a connection if the pool has waiters or fewer
    /// than `min_idle` idle connections, and has room. (Slow paths only: it
    /// may count the idle seats.)
    pub(crate) fn ring_creator_if_short(&self, waiting: usize) {
        let total = self.total.load(Ordering::Relaxed);
        let min_idle = self.min_idle.load(Ordering::Relaxed);
        if self.occupied() < self.max_size.load(Ordering::Relaxed)
            && (waiting > 0 || total < min_idle || self.idle_count() < min_idle)
        {
            self.ring_creator();
        }
    }

    pub(crate) fn ring_creator(&self) {
        let _ = self.creator_bell.try_send(());
    }

    pub(crate) fn ring_housekeeper(&self) {
        let _ = self.housekeeper_bell.try_send(());
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.status.load(Ordering::Acquire) == CLOSED
    }

    /// Bookkeeping when a loan ends (returned, closed by its borrower, or
    /// detached): time lent, and leak detection's "returned" report.
    #[inline]
    fn released(&self, local: &LocalSeats, slot: &Slot<M::Connection>, now: Millis) {
        let lent_ms =
            now.saturating_sub(crate::leak::lent_time(slot.lent_at.load(Ordering::Relaxed)));
        if let Some(shard) = &local.shard {
            shard.usage.record_owned(lent_ms);
        }
        if self.handler.is_some() || self.leaks.is_some() {
            self.released_events(slot, lent_ms);
        }
        // Between loans the stamp reads "never" (see `Slot::lent_at`).
        slot.lent_at.store(clock::NEVER, Ordering::Relaxed);
    }

    /// The event handler's check-in event and leak detection's "returned"
    /// report, out of the way of a pool that has neither.
    #[inline(never)]
    fn released_events(&self, slot: &Slot<M::Connection>, lent_ms: Millis) {
        if let Some(h) = &self.handler {
            let id = slot.id.load(Ordering::Relaxed);
            let lent_for = Duration::from_millis(lent_ms);
            guarded(|| h.handle_checkin(CheckinEvent { id, lent_for }));
        }
        if let Some(leaks) = &self.leaks {
            leaks.returned(&self.name, slot);
        }
    }

    /// Every thread's acquire waits and times lent, added up.
    fn shard_totals(&self) -> (Counts, Counts) {
        let (mut wait, mut usage) = (Counts::default(), Counts::default());
        for local in self.local.iter() {
            if let Some(shard) = &local.shard {
                shard.wait.add_to(&mut wait);
                shard.usage.add_to(&mut usage);
            }
        }
        (wait, usage)
    }

    /// The cumulative counters now, for health verdicts.
    fn sample(&self) -> Sample {
        let (wait, usage) = self.shard_totals();
        Sample {
            at: clock::now(),
            acquired: wait.count,
            timeouts: self.stats.acquire_timeouts.load(Ordering::Relaxed),
            failures: self.stats.acquire_failures.load(Ordering::Relaxed),
            wait_sum_us: wait.sum,
            usage_sum_ms: usage.sum,
            released: usage.count,
            connect_errors: self.stats.connection_errors.load(Ordering::Relaxed),
        }
    }

    /// Adds a sample to the history (the housekeeper does, every round).
    pub(crate) fn record_sample(&self) -> Sample {
        let now = self.sample();
        let window = clock::millis(self.config.health.window);
        self.history.lock().push(now, window)
    }

    /// A health verdict over the recent window.
    fn health(&self) -> Health {
        let now = self.sample();
        let window = clock::millis(self.config.health.window);
        let base = self.history.lock().push(now, window);
        let (mut in_flight_ms, mut oldest) = (0, 0);
        for i in 0..self.bag.capacity() {
            let slot = self.bag.slot(i);
            let state = slot.state.load(Ordering::Acquire);
            if state == VACANT || slot.id.load(Ordering::Relaxed) == 0 {
                continue;
            }
            oldest = oldest.max(now.at.saturating_sub(slot.created.load(Ordering::Relaxed)));
            if state == IN_USE {
                let since =
                    crate::leak::lent_time(slot.lent_at.load(Ordering::Relaxed)).max(base.at);
                in_flight_ms += now.at.saturating_sub(since);
            }
        }
        let mut leaks: Vec<(String, usize, Duration)> = Vec::new();
        if let Some(tracker) = &self.leaks {
            for r in tracker.suspects((0..self.bag.capacity()).map(|i| self.bag.slot(i))) {
                let at = r.location.to_string();
                match leaks.iter_mut().find(|(l, ..)| *l == at) {
                    Some(entry) => {
                        entry.1 += 1;
                        entry.2 = entry.2.max(r.lent_for);
                    }
                    None => leaks.push((at, 1, r.lent_for)),
                }
            }
        }
        let capacity = self.server_capacity.load(Ordering::Relaxed);
        let (connect_streak, last_connect_error) = {
            let failures = self.failures.lock();
            let last = failures.last.as_ref().map(ToString::to_string);
            (failures.streak, last.filter(|_| failures.streak > 0))
        };
        health::verdict(
            base,
            now,
            health::Inputs {
                thresholds: &self.config.health,
                max_size: self.max_size.load(Ordering::Relaxed) as u32,
                in_flight_ms,
                server_capacity: (capacity > 0).then_some(capacity),
                oldest: Duration::from_millis(oldest),
                max_lifetime: self.config.max_lifetime,
                leaks,
                total: self.total.load(Ordering::Relaxed) as u32,
                connect_streak,
                last_connect_error,
            },
        )
    }

    /// A metrics snapshot.
    pub(crate) fn metrics(&self) -> Metrics {
        let (wait, usage) = self.shard_totals();
        let (mut creation, mut lifetime) = (Counts::default(), Counts::default());
        self.stats.creation.add_to(&mut creation);
        self.stats.lifetime.add_to(&mut lifetime);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let closed = |r: CloseReason| get(&self.stats.closed[m::reason_index(r)]);
        let state = self.state();
        Metrics {
            pool: self.name.to_string(),
            created: get(&self.stats.created),
            closed: m::ClosedCounts {
                idle_timeout: closed(CloseReason::IdleTimeout),
                max_lifetime: closed(CloseReason::MaxLifetime),
                broken: closed(CloseReason::Broken),
                failed_validation: closed(CloseReason::FailedValidation),
                evicted: closed(CloseReason::Evicted),
                reset_failed: closed(CloseReason::ResetFailed),
                pool_closed: closed(CloseReason::PoolClosed),
                detached: get(&self.stats.detached),
            },
            acquired: wait.count,
            released: usage.count,
            acquire_timeouts: get(&self.stats.acquire_timeouts),
            acquire_failures: get(&self.stats.acquire_failures),
            validation_failures: get(&self.stats.validation_failures),
            connection_errors: get(&self.stats.connection_errors),
            leaks_detected: get(&self.stats.leaks_detected),
            late_connects: get(&self.stats.late_connects),
            utilization: f64::from(state.active) / f64::from(state.max_size.max(1)),
            state,
            acquire_wait: wait.distribution(Duration::from_micros(1)),
            usage: usage.distribution(Duration::from_millis(1)),
            creation: creation.distribution(Duration::from_micros(1)),
            lifetime: lifetime.distribution(Duration::from_millis(1)),
        }
    }

    /// The error to return while the database is known to be down, if it
    /// is: the pool holds no connection, and the recent connect failures say
    /// down (`ConnectFailures::database_down`). Either way, while connects
    /// fail, it asks the creator to probe again.
    fn down_error(&self) -> Option<Error> {
        if self.total.load(Ordering::SeqCst) != 0 {
            return None;
        }
        let failures = self.failures.lock();
        if failures.streak == 0 {
            return None;
        }
        self.wanted.store(true, Ordering::SeqCst);
        self.ring_creator();
        let fresh = failures
            .last_at
            .is_some_and(|t| t.elapsed() < FAIL_FAST_FRESH);
        if !failures.database_down() || !fresh {
            return None;
        }
        let source = failures.last.clone()?;
        drop(failures);
        Shared::bump(&self.stats.acquire_failures);
        Some(Error::Connect {
            pool: self.name.clone(),
            state: self.state(),
            source,
        })
    }

    fn timeout_error(&self, start: Instant) -> Error {
        Shared::bump(&self.stats.acquire_timeouts);
        let (waited, state) = (start.elapsed(), self.state());
        if let Some(h) = &self.handler {
            guarded(|| h.handle_timeout(TimeoutEvent { waited, state }));
        }
        Error::Timeout {
            pool: self.name.clone(),
            waited,
            state,
            last_error: self.failures.lock().last.clone(),
        }
    }

    fn closed_error(&self) -> Error {
        Error::Closed {
            pool: self.name.clone(),
        }
    }

    /// Counts seats.
    pub(crate) fn state(&self) -> State {
        let (mut active, mut returning) = (0u32, 0u32);
        for i in 0..self.bag.capacity() {
            let slot = self.bag.slot(i);
            if slot.state.load(Ordering::Relaxed) == IN_USE {
                if slot.flags.load(Ordering::Relaxed) & FLAG_RETURNING != 0 {
                    returning += 1;
                } else {
                    active += 1;
                }
            }
        }
        let total = self.total.load(Ordering::Relaxed) as u32;
        let active = active.min(total);
        let returning = returning.min(total - active);
        State {
            total,
            active,
            returning,
            given_up: self.abandoned.load(Ordering::Relaxed) as u32,
            idle: total - active - returning,
            waiting: self.bag.waiting() as u32,
            max_size: self.max_size.load(Ordering::Relaxed) as u32,
            min_idle: self.min_idle.load(Ordering::Relaxed) as u32,
        }
    }

    /// Idle connections (seats `IDLE`).
    pub(crate) fn idle_count(&self) -> usize {
        (0..self.bag.capacity())
            .filter(|&i| self.bag.slot(i).state.load(Ordering::Relaxed) == IDLE)
            .count()
    }

    fn set_status(&self, status: u8) {
        let _guard = self.events.lock();
        let _ = self.status.compare_exchange(
            if status == RUNNING {
                SUSPENDED
            } else {
                RUNNING
            },
            status,
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
        self.events_cv.notify_all();
    }

    fn wait_while_suspended(&self, deadline: Option<Instant>) -> Result<(), Error> {
        let suspended = || Error::Suspended {
            pool: self.name.clone(),
        };
        if self.config.fail_when_suspended {
            return Err(suspended());
        }
        let mut guard = self.events.lock();
        while self.status.load(Ordering::SeqCst) == SUSPENDED {
            match deadline {
                Some(d) => {
                    if self.events_cv.wait_until(&mut guard, d).timed_out()
                        && self.status.load(Ordering::SeqCst) == SUSPENDED
                    {
                        return Err(suspended());
                    }
                }
                None => self.events_cv.wait(&mut guard),
            }
        }
        Ok(())
    }

    /// Closes every idle connection for which `pick` says so.
    pub(crate) fn sweep_idle(&self, from: usize, reason: CloseReason) {
        for i in from..self.bag.capacity() {
            let slot = self.bag.slot(i);
            if slot.try_claim(RESERVED) {
                self.close_slot(slot, reason);
            }
        }
    }

    fn resize(&self, max_size: u32) -> Result<(), Error> {
        if max_size == 0 || max_size > MAX_SIZE_LIMIT {
            return Err(Error::Config {
                pool: self.name.clone(),
                setting: "max_size".into(),
                reason: format!("{max_size} is not between 1 and {MAX_SIZE_LIMIT}"),
            });
        }
        let new = max_size as usize;
        self.bag.ensure_capacity(new);
        let min_idle = (self.config.effective_min_idle() as usize).min(new);
        self.min_idle.store(min_idle, Ordering::SeqCst);
        let old = self.max_size.swap(new, Ordering::SeqCst);
        crate::sync::heavy_fence(); // before the sweep: see make_available

        log::info!(
            "pool \"{}\": resized from {old} to {new} (min_idle {min_idle})",
            self.name
        );
        if new < old {
            self.sweep_idle(new, CloseReason::Evicted);
            // Lent surplus connections close on return; until then, idle ones
            // below the new size give way so the total drops to it at once.
            for i in 0..new.min(self.bag.capacity()) {
                if self.total.load(Ordering::SeqCst) <= new {
                    break;
                }
                let slot = self.bag.slot(i);
                if slot.try_claim(RESERVED) {
                    self.close_slot(slot, CloseReason::Evicted);
                }
            }
        }
        self.ring_creator();
        self.ring_housekeeper();
        Ok(())
    }

    fn soft_evict_all(&self) {
        for i in 0..self.bag.capacity() {
            let slot = self.bag.slot(i);
            if slot.state.load(Ordering::Relaxed) != VACANT {
                slot.flags.fetch_or(FLAG_EVICT, Ordering::SeqCst);
            }
        }
        crate::sync::heavy_fence(); // before the sweep: see make_available
        self.sweep_idle(0, CloseReason::Evicted);
        log::info!("pool \"{}\": soft eviction of all connections", self.name);
        self.ring_creator();
    }

    pub(crate) fn close(&self) {
        {
            let _guard = self.events.lock();
            if self.status.swap(CLOSED, Ordering::SeqCst) == CLOSED {
                return;
            }
            // Store, fence, then sweep: the other half of `make_available`.
            crate::sync::heavy_fence();
            self.events_cv.notify_all();
        }
        self.bag.wake_all(true);
        self.sweep_idle(0, CloseReason::PoolClosed);
        self.ring_creator();
        self.ring_housekeeper();
        let threads = std::mem::take(&mut *self.threads.lock());
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        // Connections their borrowers just gave back are still being reset
        // (or closed) on pool-io threads: wait for those jobs to end, at
        // most the reset limit; each closes its connection itself when done,
        // seeing the pool closed (`make_available`).
        let limit = self
            .reset_watch
            .map_or(CLOSE_WAITS_FOR_RETURNS, Duration::from_millis);
        let until = Instant::now() + limit;
        while self.return_jobs.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Anything the threads released while stopping.
        self.sweep_idle(0, CloseReason::PoolClosed);
        // close() does not wait for lent connections: name them, so that one
        // that never comes back (a leak) can be traced.
        let lent: Vec<String> = (0..self.bag.capacity())
            .map(|i| self.bag.slot(i))
            .filter(|s| {
                s.state.load(Ordering::Acquire) == IN_USE
                    && s.flags.load(Ordering::Relaxed) & FLAG_RETURNING == 0
            })
            .map(|s| {
                let id = s.id.load(Ordering::Relaxed);
                match self.leaks.as_ref().map(|l| l.site_of(s)) {
                    Some(Some(site)) => format!("{id} (taken at {site})"),
                    _ => id.to_string(),
                }
            })
            .collect();
        if lent.is_empty() {
            log::debug!("pool \"{}\": closed", self.name);
        } else {
            log::info!(
                "pool \"{}\": closed; connection(s) {} still lent could not be reclaimed now \
                 and will be closed when returned",
                self.name,
                lent.join(", ")
            );
        }
    }

    /// `build`'s wait for the first connections. Returns at the
    /// initialization deadline (`initialization_fail_timeout` after the
    /// start) once an attempt has ended, whatever the connections do since:
    /// connections opened and closed again count as success. A first connect
    /// still running at the deadline is waited for until
    /// `connection_timeout` after the start at most (like HikariCP, which
    /// connects in the caller and checks its deadline between attempts), so
    /// that a deadline shorter than a thread start does not fail a healthy
    /// database, and a hanging connect does not hang `build`.
    fn wait_for_initial_connections(&self) -> Result<(), Error> {
        let target = self.init_target.load(Ordering::Relaxed);
        let timeout = self.config.initialization_fail_timeout;
        let started = Instant::now();
        // `validate` keeps both durations far below what an `Instant` holds;
        // `None` (never reached) would only follow an overflow.
        let deadline = started.checked_add(timeout);
        let give_up = started.checked_add(timeout.max(self.config.connection_timeout));
        let past = |t: Option<Instant>, now: Instant| t.is_some_and(|t| now >= t);
        let mut guard = self.events.lock();
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
                // creator rings `events_cv` once it is.
            }
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
            let mut until = now + Duration::from_millis(50);
            for t in [deadline, give_up].into_iter().flatten() {
                if t > now {
                    until = until.min(t + Duration::from_millis(1));
                }
            }
            self.events_cv.wait_until(&mut guard, until);
        }
        drop(guard);
        self.init_target.store(0, Ordering::Relaxed);
        Ok(())
    }
}

/// How long a failing `build` waits for the pool to close before it leaves
/// that to the closing thread (whose creator is stuck in a connect).
const BUILD_CLOSE_GRACE: Duration = Duration::from_millis(100);

/// `build`'s error when the first connect has not returned by the
/// initialization deadline.
#[derive(Debug)]
struct FirstConnectUnfinished {
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

/// Runs a manager callback, turning a panic into `None`.
#[inline]
pub(crate) fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

/// A connection borrowed from a [`Pool`]; returned to it when dropped.
///
/// Derefs to the connection. On return the pool checks
/// [`has_broken`](ManageConnection::has_broken) and runs
/// [`reset`](ManageConnection::reset). A connection dropped while its thread
/// is panicking is closed, never lent again: its state is unknown.
///
/// The lifetime `'a` is that of the `Pool` handle it came from
/// ([`Pool::get`]); loans from [`Pool::get_owned`] (or turned by
/// [`into_owned`](PooledConnection::into_owned)) are `'static`.
///
/// Two words: a loan is returned from `get` in registers, not through memory.
pub struct PooledConnection<'a, M: ManageConnection> {
    /// The pool: borrowed for `'a` (from a `Pool` handle, which holds a
    /// reference), or, with `LOAN_OWNED`, one strong count of its `Arc`
    /// that this loan holds itself (`Arc::into_raw`).
    pool: NonNull<Inner<M>>,
    /// The seat's address, with the `LOAN_*` bits in its low bits. The seat
    /// is owned (`IN_USE`) for as long as this value lives, and stays valid
    /// because seats are freed only with the bag, which `pool` keeps alive.
    seat: NonNull<Slot<M::Connection>>,
    _pool: PhantomData<&'a Inner<M>>,
}

/// Loan bit: `pool` is a strong count held by the loan (`'static` loans).
const LOAN_OWNED: usize = 1;
/// Loan bit: close the connection when dropped (`mark_broken`).
const LOAN_CLOSE: usize = 2;
/// Loan bit: `detach` already freed the seat; dropping does nothing more.
const LOAN_DETACHED: usize = 4;
/// All the loan bits.
const LOAN_BITS: usize = LOAN_OWNED | LOAN_CLOSE | LOAN_DETACHED;
// A seat's address has its low bits zero: they can carry the loan bits.
const _: () = assert!(std::mem::align_of::<Slot<()>>() > LOAN_BITS);

// SAFETY: a PooledConnection owns its seat exclusively (IN_USE) and gives
// access only to the connection inside, which is `Send`; moving it to another
// thread moves that exclusive ownership.
unsafe impl<M: ManageConnection> Send for PooledConnection<'_, M> {}
// SAFETY: `&PooledConnection` only gives `&M::Connection` (Deref), which is
// shareable when the connection is `Sync`.
unsafe impl<M: ManageConnection> Sync for PooledConnection<'_, M> where M::Connection: Sync {}

impl<'a, M: ManageConnection> PooledConnection<'a, M> {
    /// A loan of `slot` (owned, `IN_USE`) that borrows `pool`.
    #[inline]
    fn new(pool: &'a Inner<M>, slot: &Slot<M::Connection>) -> Self {
        PooledConnection {
            pool: NonNull::from(pool),
            seat: NonNull::from(slot),
            _pool: PhantomData,
        }
    }

    #[inline]
    fn slot(&self) -> &Slot<M::Connection> {
        let seat = self.seat.as_ptr().map_addr(|a| a & !LOAN_BITS);
        // SAFETY: `seat` is the address `new` took from a `&Slot`, with the
        // loan bits cleared (they were zero in it: see `LOAN_BITS`). The
        // bag (inside the pool, which `self.pool` borrows or holds) never
        // frees a seat while it lives.
        unsafe { &*seat }
    }

    /// The pool.
    #[inline]
    fn inner(&self) -> &Inner<M> {
        // SAFETY: `pool` points to a live `Inner`: borrowed for `'a`, or
        // kept alive by the strong count this loan holds (`LOAN_OWNED`).
        unsafe { self.pool.as_ref() }
    }

    /// The loan bits.
    #[inline]
    fn bits(&self) -> usize {
        self.seat.as_ptr().addr() & LOAN_BITS
    }

    /// Sets loan bits.
    #[inline]
    fn set_bits(&mut self, bits: usize) {
        self.seat = self.seat.map_addr(|a| a | bits);
    }

    /// Turns a loan that borrows its `Pool` handle into one that holds its
    /// own reference to the pool (`'static`), as from
    /// [`Pool::get_owned`]. Costs one reference-count increment (and a
    /// decrement when the loan ends).
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool, PooledConnection};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = u32;
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<u32, std::io::Error> { Ok(7) }
    /// #     fn is_valid(&self, _: &mut u32, _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut u32) -> bool { false }
    /// # }
    /// fn checkout() -> PooledConnection<'static, M> {
    ///     let pool = Pool::builder().max_size(1).build(M).unwrap();
    ///     pool.get().unwrap().into_owned() // outlives `pool`
    /// }
    /// assert_eq!(*checkout(), 7);
    /// ```
    pub fn into_owned(self) -> PooledConnection<'static, M> {
        // Not dropped: its seat and (if any) its strong count move over.
        let mut this = std::mem::ManuallyDrop::new(self);
        if this.bits() & LOAN_OWNED == 0 {
            let counted = this
                .inner()
                .me
                .upgrade()
                .expect("a borrowed loan's Pool handle keeps the pool alive");
            // The same `Inner` as the borrow, now with a count of its own
            // (given back by `release_pool`).
            let raw = Arc::into_raw(counted).cast_mut();
            // SAFETY: `Arc::into_raw` never returns null.
            this.pool = unsafe { NonNull::new_unchecked(raw) };
            this.set_bits(LOAN_OWNED);
        }
        PooledConnection {
            pool: this.pool,
            seat: this.seat,
            _pool: PhantomData,
        }
    }

    /// Marks the connection broken: when dropped it is closed instead of
    /// returned, and the pool opens a replacement. Call it when a query fails
    /// in a way that leaves the connection unusable.
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
    /// let pool = Pool::builder().max_size(1).build(M)?;
    /// let mut conn = pool.get()?;
    /// conn.mark_broken();
    /// drop(conn);
    /// assert_eq!(pool.state().total, 0); // closed; a replacement comes shortly
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn mark_broken(&mut self) {
        self.set_bits(LOAN_CLOSE);
    }

    /// Takes the connection out of the pool for good; its place in the pool
    /// is freed (a replacement is opened if the pool needs one).
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = String;
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<String, std::io::Error> { Ok("conn".into()) }
    /// #     fn is_valid(&self, _: &mut String, _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut String) -> bool { false }
    /// # }
    /// let pool = Pool::builder().max_size(1).build(M)?;
    /// let conn: String = pool.get()?.detach();
    /// assert_eq!(conn, "conn");
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn detach(mut self) -> M::Connection {
        let slot = self.slot();
        // SAFETY: we own the seat (IN_USE) until the VACANT store below.
        let conn = unsafe { slot.take() }.expect("a lent seat holds a connection");
        let inner = self.inner();
        inner.released(inner.local(), slot, clock::now());
        Shared::bump(&inner.stats.detached);
        log::debug!(
            "pool \"{}\": connection {} detached",
            inner.name,
            slot.id.load(Ordering::Relaxed)
        );
        inner.total.fetch_sub(1, Ordering::SeqCst);
        slot.id.store(0, Ordering::Relaxed);
        slot.flags.store(0, Ordering::Relaxed);
        slot.state.store(VACANT, Ordering::Release);
        inner.ring_creator_if_short(inner.bag.waiting());
        self.set_bits(LOAN_DETACHED);
        conn
    }

    /// The connection's id, unique within its pool (as in the pool's logs).
    pub fn id(&self) -> u64 {
        self.slot().id.load(Ordering::Relaxed)
    }
}

impl<M: ManageConnection> Deref for PooledConnection<'_, M> {
    type Target = M::Connection;

    #[inline]
    fn deref(&self) -> &M::Connection {
        // SAFETY: we own the seat (IN_USE) for our whole life, so nobody else
        // touches the cell; it holds `Some` in every owned state.
        match unsafe { &*self.slot().conn_ptr() } {
            Some(c) => c,
            None => unreachable!("a lent seat holds a connection"),
        }
    }
}

impl<M: ManageConnection> DerefMut for PooledConnection<'_, M> {
    #[inline]
    fn deref_mut(&mut self) -> &mut M::Connection {
        // SAFETY: as in `deref`, and `&mut self` makes this the only
        // reference handed out.
        match unsafe { &mut *self.slot().conn_ptr() } {
            Some(c) => c,
            None => unreachable!("a lent seat holds a connection"),
        }
    }
}

impl<M: ManageConnection> Drop for PooledConnection<'_, M> {
    #[inline]
    fn drop(&mut self) {
        let bits = self.bits();
        if bits & (LOAN_CLOSE | LOAN_DETACHED) == 0 && !std::thread::panicking() {
            let slot = self.slot();
            let now = clock::now();
            let inner = self.inner();
            let local = inner.local();
            inner.released(local, slot, now);
            inner.check_in(local, slot, now);
        } else if bits & LOAN_DETACHED == 0 {
            self.close_on_drop();
        }
        if bits & LOAN_OWNED != 0 {
            self.release_pool();
        }
    }
}

impl<M: ManageConnection> PooledConnection<'_, M> {
    /// `drop` of a loan marked broken, or dropped while its thread panics:
    /// its connection is closed, not lent again.
    #[cold]
    #[inline(never)]
    fn close_on_drop(&mut self) {
        let slot = self.slot();
        let inner = self.inner();
        inner.released(inner.local(), slot, clock::now());
        slot.flags.fetch_or(FLAG_BORROWER_CLOSED, Ordering::Relaxed);
        inner.close_slot(slot, CloseReason::Broken);
    }

    /// Gives back the strong count of an owned loan (`LOAN_OWNED`), last.
    #[inline(never)]
    fn release_pool(&mut self) {
        // SAFETY: with `LOAN_OWNED`, `pool` came from `Arc::into_raw` (in
        // `into_owned`) and this loan holds that one count; `drop` calls
        // this once, after its last use of the pool.
        drop(unsafe { Arc::from_raw(self.pool.as_ptr().cast_const()) });
    }
}

impl<M: ManageConnection> fmt::Debug for PooledConnection<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("pool", &self.inner().name)
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}
