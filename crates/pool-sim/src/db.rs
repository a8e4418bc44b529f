// Over 800 lines: one simulated server (settings, registry, failure injection, audit)
// whose parts share one lock and one state; splitting would expose that state.
//! The simulated server: settings, connection registry, failure injection and
//! audit counters.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::conn::SimConn;
use crate::manager::SimManager;
use crate::wait::{self, to_nanos, BlackHole, Rng};
use crate::SimError;

/// Builder for a [`SimDb`]. Get one from [`SimDb::builder`].
///
/// Every setting except the seed can also be changed while the database runs,
/// through the `set_*` methods of [`SimDb`].
///
/// ```
/// use pool_sim::SimDb;
/// use std::time::Duration;
///
/// let db = SimDb::builder()
///     .connect_latency(Duration::from_millis(1))
///     .connect_jitter(Duration::from_micros(500))
///     .query_latency(Duration::from_micros(20))
///     .max_connections(10)
///     .seed(42)
///     .build();
/// assert_eq!(db.max_connections(), 10);
/// ```
#[derive(Debug, Clone)]
#[must_use = "call build() to get a SimDb"]
pub struct SimDbBuilder {
    connect_latency: Duration,
    connect_jitter: Duration,
    query_latency: Duration,
    max_connections: u32,
    connect_timeout: Duration,
    query_timeout: Duration,
    precise_short_waits: bool,
    seed: u64,
}

impl Default for SimDbBuilder {
    fn default() -> Self {
        SimDbBuilder {
            connect_latency: SimDb::DEFAULT_CONNECT_LATENCY,
            connect_jitter: Duration::ZERO,
            query_latency: SimDb::DEFAULT_QUERY_LATENCY,
            max_connections: SimDb::DEFAULT_MAX_CONNECTIONS,
            connect_timeout: SimDb::DEFAULT_CONNECT_TIMEOUT,
            query_timeout: SimDb::DEFAULT_QUERY_TIMEOUT,
            precise_short_waits: false,
            seed: 0x5EED_0FD8,
        }
    }
}

impl SimDbBuilder {
    /// How long opening a connection takes. Default: 2 ms, about what a
    /// PostgreSQL connection with password authentication costs on loopback.
    pub fn connect_latency(mut self, latency: Duration) -> Self {
        self.connect_latency = latency;
        self
    }

    /// A random extra connect delay, uniform in `[0, jitter]`. Default: none.
    pub fn connect_jitter(mut self, jitter: Duration) -> Self {
        self.connect_jitter = jitter;
        self
    }

    /// How long one round trip (a query, `BEGIN`, `COMMIT`, a ping) takes.
    /// Default: 50 µs, a trivial query on loopback.
    ///
    /// Waits of 1 ms or more sleep; shorter ones sleep too (Linux oversleeps
    /// them by roughly 50–100 µs, costing no CPU) unless
    /// [`precise_short_waits`](Self::precise_short_waits) is set.
    pub fn query_latency(mut self, latency: Duration) -> Self {
        self.query_latency = latency;
        self
    }

    /// The server's connection limit: connects beyond it fail with
    /// [`SimError::TooManyConnections`]. Default: 100 (PostgreSQL's default).
    pub fn max_connections(mut self, limit: u32) -> Self {
        self.max_connections = limit;
        self
    }

    /// How long a connect waits for an answer in black-hole mode before it
    /// fails with [`SimError::ConnectTimeout`]. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The default read timeout of new connections: how long a query waits for
    /// an answer in black-hole mode (see [`SimConn::set_query_timeout`]).
    /// Default: 5 s.
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// Whether waits shorter than 1 ms spin (with `thread::yield_now`) until
    /// their deadline instead of sleeping. Spinning is precise but burns a core
    /// per waiting thread; sleeping oversleeps short waits but costs nothing.
    /// Default: `false` (sleep).
    pub fn precise_short_waits(mut self, precise: bool) -> Self {
        self.precise_short_waits = precise;
        self
    }

    /// Seed of the generator behind connect jitter and
    /// [`SimDb::break_fraction`]. Default: a fixed constant, so runs repeat.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Creates the database.
    pub fn build(self) -> SimDb {
        SimDb {
            inner: Arc::new(Inner {
                connect_latency: AtomicU64::new(to_nanos(self.connect_latency)),
                connect_jitter: AtomicU64::new(to_nanos(self.connect_jitter)),
                query_latency: AtomicU64::new(to_nanos(self.query_latency)),
                extra_latency: AtomicU64::new(0),
                max_connections: AtomicU32::new(self.max_connections),
                connect_timeout: AtomicU64::new(to_nanos(self.connect_timeout)),
                query_timeout: AtomicU64::new(to_nanos(self.query_timeout)),
                precise_short_waits: AtomicBool::new(self.precise_short_waits),
                rng: Rng::new(self.seed),
                next_id: AtomicU64::new(1),
                epoch: AtomicU64::new(0),
                refuse: AtomicBool::new(false),
                refuse_until: Mutex::new(None),
                fail_connects: AtomicU32::new(0),
                panic_connects: AtomicU32::new(0),
                fail_resets: AtomicU32::new(0),
                fail_validations: AtomicU32::new(0),
                black_hole: BlackHole::default(),
                registry: Mutex::new(Registry::default()),
                counters: Counters::default(),
            }),
        }
    }
}

/// One connection's state shared between its [`SimConn`] and the server.
#[derive(Debug)]
pub(crate) struct ConnShared {
    pub(crate) id: u64,
    pub(crate) broken: AtomicBool,
    /// The server ended the session, and the client has not noticed yet:
    /// its next round trip fails and breaks it (`SimDb::kill_all_silently`).
    pub(crate) killed: AtomicBool,
    pub(crate) busy: AtomicBool,
}

#[derive(Debug, Default)]
struct Registry {
    open: BTreeMap<u64, Arc<ConnShared>>,
    peak: usize,
}

impl Registry {
    fn live(&self) -> usize {
        self.open
            .values()
            .filter(|c| !c.broken.load(Ordering::Acquire))
            .count()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) opened: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) closed_twice: AtomicU64,
    pub(crate) graceful_closes: AtomicU64,
    pub(crate) concurrent_use: AtomicU64,
    pub(crate) connect_attempts: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) queries: AtomicU64,
    pub(crate) query_errors: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) validations: AtomicU64,
    pub(crate) validation_failures: AtomicU64,
    pub(crate) broken: AtomicU64,
}

pub(crate) struct Inner {
    connect_latency: AtomicU64,
    connect_jitter: AtomicU64,
    query_latency: AtomicU64,
    extra_latency: AtomicU64,
    max_connections: AtomicU32,
    connect_timeout: AtomicU64,
    query_timeout: AtomicU64,
    precise_short_waits: AtomicBool,
    rng: Rng,
    next_id: AtomicU64,
    epoch: AtomicU64,
    refuse: AtomicBool,
    refuse_until: Mutex<Option<Instant>>,
    fail_connects: AtomicU32,
    panic_connects: AtomicU32,
    fail_resets: AtomicU32,
    fail_validations: AtomicU32,
    pub(crate) black_hole: BlackHole,
    registry: Mutex<Registry>,
    pub(crate) counters: Counters,
}

/// A snapshot of the simulated database's audit counters.
///
/// `closed_twice` and `concurrent_use` count pool bugs and must stay zero;
/// after a pool is closed and dropped, `open` must be zero and `opened` must
/// equal `closed`.
///
/// ```
/// use pool_sim::SimDb;
///
/// let db = SimDb::new();
/// let conn = db.connect().unwrap();
/// let stats = db.stats();
/// assert_eq!((stats.open, stats.opened, stats.closed), (1, 1, 0));
/// drop(conn);
/// let stats = db.stats();
/// assert_eq!((stats.open, stats.opened, stats.closed), (0, 1, 1));
/// assert_eq!(stats.violations(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SimStats {
    /// Connections open now: created and not yet dropped by the client,
    /// broken ones included.
    pub open: usize,
    /// Open connections that are not broken (what the server counts against
    /// its limit).
    pub live: usize,
    /// The most connections ever open at once (since creation or
    /// [`SimDb::reset_peak`]).
    pub peak_open: usize,
    /// Connections successfully opened.
    pub opened: u64,
    /// Connections closed (dropped) exactly once.
    pub closed: u64,
    /// Closes of a connection that was not open: a connection dropped twice.
    /// Always a bug.
    pub closed_twice: u64,
    /// Connections closed with [`SimConn::close`] (a subset of `closed`).
    pub graceful_closes: u64,
    /// Times a connection was used by two holders at once. Always a bug.
    pub concurrent_use: u64,
    /// Connect attempts, failed ones included.
    pub connect_attempts: u64,
    /// Connect attempts that failed.
    pub connect_failures: u64,
    /// Round trips made (queries, transaction statements, pings, resets that
    /// had something to clean).
    pub queries: u64,
    /// Round trips that failed.
    pub query_errors: u64,
    /// Calls of [`ManageConnection::reset`](pool_core::ManageConnection::reset).
    pub resets: u64,
    /// Calls of [`ManageConnection::is_valid`](pool_core::ManageConnection::is_valid)
    /// (and [`SimConn::ping`]).
    pub validations: u64,
    /// Validations that failed.
    pub validation_failures: u64,
    /// Connections that became broken (injected breaks and client timeouts).
    pub broken: u64,
}

impl SimStats {
    /// The number of bug detections: `closed_twice + concurrent_use`.
    pub fn violations(&self) -> u64 {
        self.closed_twice + self.concurrent_use
    }
}

impl fmt::Display for SimStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "open {} (live {}, peak {}), opened {}, closed {}, closed twice {}, \
             concurrent use {}, connects {} ({} failed), queries {} ({} failed), \
             resets {}, validations {} ({} failed), broken {}",
            self.open,
            self.live,
            self.peak_open,
            self.opened,
            self.closed,
            self.closed_twice,
            self.concurrent_use,
            self.connect_attempts,
            self.connect_failures,
            self.queries,
            self.query_errors,
            self.resets,
            self.validations,
            self.validation_failures,
            self.broken
        )
    }
}

/// A simulated database server.
///
/// A cheap handle (an `Arc` inside): clone it freely, every clone controls and
/// audits the same server. Connections are opened with [`SimDb::connect`] or,
/// for a pool, through [`SimDb::manager`].
///
/// The simulation costs time like a real server (connect latency, per-query
/// latency), enforces a connection limit, can fail in all the ways a pool must
/// survive (refused connects, failing connects, broken connections, slowness,
/// restarts, a black hole), and counts what a harness needs to prove the pool
/// correct: open connections now and at peak, opens and closes, double closes
/// and concurrent use of one connection.
///
/// ```
/// use pool_sim::SimDb;
///
/// let db = SimDb::new();
/// let mut conn = db.connect().unwrap();
/// assert_eq!(conn.query("SELECT 1").unwrap(), 1);
///
/// db.break_all();
/// assert!(conn.is_broken());
/// assert!(conn.query("SELECT 1").is_err());
/// ```
#[derive(Clone)]
pub struct SimDb {
    pub(crate) inner: Arc<Inner>,
}

impl Default for SimDb {
    fn default() -> Self {
        SimDb::new()
    }
}

impl fmt::Debug for SimDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimDb")
            .field("stats", &self.stats())
            .field("accepting", &self.is_accepting())
            .field("black_hole", &self.is_black_hole())
            .finish()
    }
}

impl SimDb {
    /// Default connect latency: 2 ms.
    pub const DEFAULT_CONNECT_LATENCY: Duration = Duration::from_millis(2);
    /// Default query latency: 50 µs.
    pub const DEFAULT_QUERY_LATENCY: Duration = Duration::from_micros(50);
    /// Default server connection limit: 100.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 100;
    /// Default connect timeout (black-hole mode): 5 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default query timeout (black-hole mode): 5 s.
    pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);

    /// A database with the default settings (see [`SimDbBuilder`]).
    ///
    /// ```
    /// let db = pool_sim::SimDb::new();
    /// assert_eq!(db.stats().open, 0);
    /// ```
    pub fn new() -> Self {
        SimDbBuilder::default().build()
    }

    /// A builder to configure latencies, the connection limit and the seed.
    pub fn builder() -> SimDbBuilder {
        SimDbBuilder::default()
    }

    /// A [`ManageConnection`](pool_core::ManageConnection) for a pool of
    /// connections to this database.
    ///
    /// ```
    /// let db = pool_sim::SimDb::new();
    /// let manager = db.manager();
    /// assert_eq!(manager.db().stats().opened, 0);
    /// ```
    pub fn manager(&self) -> SimManager {
        SimManager::new(self.clone())
    }

    // ---------------------------------------------------------------- connect

    /// Opens a connection, taking the connect latency.
    ///
    /// Fails at once with [`SimError::ConnectionRefused`] while refusing (see
    /// [`set_refuse_connections`](Self::set_refuse_connections) and
    /// [`restart`](Self::restart)); blocks for the connect timeout and fails
    /// with [`SimError::ConnectTimeout`] in black-hole mode; fails with an
    /// injected failure (see [`fail_next_connects`](Self::fail_next_connects)),
    /// with [`SimError::ConnectionReset`] if the server restarted during the
    /// handshake, and with [`SimError::TooManyConnections`] at the limit.
    ///
    /// ```
    /// use pool_sim::{SimDb, SimError};
    ///
    /// let db = SimDb::builder().max_connections(1).build();
    /// let first = db.connect().unwrap();
    /// assert_eq!(db.connect().unwrap_err(), SimError::TooManyConnections { limit: 1 });
    /// drop(first);
    /// assert!(db.connect().is_ok());
    /// ```
    pub fn connect(&self) -> Result<SimConn, SimError> {
        let inner = &*self.inner;
        inner
            .counters
            .connect_attempts
            .fetch_add(1, Ordering::Relaxed);
        let result = self.try_connect();
        if result.is_err() {
            inner
                .counters
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn try_connect(&self) -> Result<SimConn, SimError> {
        let inner = &*self.inner;
        if self.is_refusing() {
            return Err(SimError::ConnectionRefused);
        }
        let epoch = inner.epoch.load(Ordering::Acquire);
        if inner.black_hole.is_on() {
            let timeout = self.connect_timeout();
            if !inner.black_hole.wait(timeout) {
                return Err(SimError::ConnectTimeout { timeout });
            }
        }
        let jitter = inner.rng.duration_up_to(nanos(&inner.connect_jitter));
        self.wait(nanos(&inner.connect_latency) + jitter + self.extra_latency());
        if take_one(&inner.panic_connects) {
            panic!("pool-sim: injected panic in connect");
        }
        if take_one(&inner.fail_connects) {
            return Err(SimError::InjectedConnectFailure);
        }
        if inner.epoch.load(Ordering::Acquire) != epoch {
            return Err(SimError::ConnectionReset);
        }
        if self.is_refusing() {
            return Err(SimError::ConnectionRefused);
        }
        let shared = {
            let mut registry = inner.registry.lock();
            let limit = inner.max_connections.load(Ordering::Relaxed);
            if registry.live() >= limit as usize {
                return Err(SimError::TooManyConnections { limit });
            }
            let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
            let shared = Arc::new(ConnShared {
                id,
                broken: AtomicBool::new(false),
                killed: AtomicBool::new(false),
                busy: AtomicBool::new(false),
            });
            registry.open.insert(id, shared.clone());
            registry.peak = registry.peak.max(registry.open.len());
            shared
        };
        inner.counters.opened.fetch_add(1, Ordering::Relaxed);
        Ok(SimConn::new(self.clone(), shared, self.query_timeout()))
    }

    /// Removes a dropped connection from the registry.
    pub(crate) fn unregister(&self, id: u64) {
        let removed = self.inner.registry.lock().open.remove(&id);
        let counter = if removed.is_some() {
            &self.inner.counters.closed
        } else {
            &self.inner.counters.closed_twice
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    // ---------------------------------------------------------------- audit

    /// A snapshot of the audit counters.
    pub fn stats(&self) -> SimStats {
        let (open, live, peak_open) = {
            let registry = self.inner.registry.lock();
            (registry.open.len(), registry.live(), registry.peak)
        };
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SimStats {
            open,
            live,
            peak_open,
            opened: get(&c.opened),
            closed: get(&c.closed),
            closed_twice: get(&c.closed_twice),
            graceful_closes: get(&c.graceful_closes),
            concurrent_use: get(&c.concurrent_use),
            connect_attempts: get(&c.connect_attempts),
            connect_failures: get(&c.connect_failures),
            queries: get(&c.queries),
            query_errors: get(&c.query_errors),
            resets: get(&c.resets),
            validations: get(&c.validations),
            validation_failures: get(&c.validation_failures),
            broken: get(&c.broken),
        }
    }

    /// Connections open now (broken ones included): cheaper than [`stats`](Self::stats).
    pub fn open_count(&self) -> usize {
        self.inner.registry.lock().open.len()
    }

    /// The ids of the connections open now, in increasing order.
    ///
    /// ```
    /// let db = pool_sim::SimDb::new();
    /// let a = db.connect().unwrap();
    /// let b = db.connect().unwrap();
    /// assert_eq!(db.open_ids(), vec![a.id(), b.id()]);
    /// ```
    pub fn open_ids(&self) -> Vec<u64> {
        self.inner.registry.lock().open.keys().copied().collect()
    }

    /// Restarts peak tracking from the number of connections open now.
    pub fn reset_peak(&self) {
        let mut registry = self.inner.registry.lock();
        registry.peak = registry.open.len();
    }

    /// Polls [`stats`](Self::stats) every millisecond until `condition` holds
    /// or `timeout` passes; returns whether it held. Pools open and close
    /// connections in the background, so tests wait rather than sleep.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let db = pool_sim::SimDb::new();
    /// let db2 = db.clone();
    /// let t = std::thread::spawn(move || db2.connect().unwrap());
    /// assert!(db.wait_until(Duration::from_secs(5), |s| s.opened == 1));
    /// drop(t.join().unwrap());
    /// ```
    pub fn wait_until(&self, timeout: Duration, condition: impl Fn(&SimStats) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(&self.stats()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Checks the end-of-life audit: nothing open, every opened connection
    /// closed exactly once, no connection used by two holders. The error
    /// lists each failed check.
    ///
    /// ```
    /// let db = pool_sim::SimDb::new();
    /// let conn = db.connect().unwrap();
    /// assert!(db.verify_all_closed().unwrap_err().contains("still open"));
    /// drop(conn);
    /// db.verify_all_closed().unwrap();
    /// ```
    pub fn verify_all_closed(&self) -> Result<(), String> {
        let s = self.stats();
        let mut problems = Vec::new();
        if s.open != 0 {
            problems.push(format!(
                "{} connection(s) still open: ids {:?}",
                s.open,
                self.open_ids()
            ));
        }
        if s.opened != s.closed {
            problems.push(format!(
                "opened {} connections but closed {}",
                s.opened, s.closed
            ));
        }
        if s.closed_twice != 0 {
            problems.push(format!("{} connection(s) closed twice", s.closed_twice));
        }
        if s.concurrent_use != 0 {
            problems.push(format!(
                "{} concurrent use(s) of one connection by two holders",
                s.concurrent_use
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    // ---------------------------------------------------------------- settings

    /// The current connect latency (without jitter).
    pub fn connect_latency(&self) -> Duration {
        nanos(&self.inner.connect_latency)
    }

    /// Changes the connect latency.
    pub fn set_connect_latency(&self, latency: Duration) {
        self.inner
            .connect_latency
            .store(to_nanos(latency), Ordering::Relaxed);
    }

    /// Changes the connect jitter (see [`SimDbBuilder::connect_jitter`]).
    pub fn set_connect_jitter(&self, jitter: Duration) {
        self.inner
            .connect_jitter
            .store(to_nanos(jitter), Ordering::Relaxed);
    }

    /// The current per-round-trip latency (without extra latency).
    pub fn query_latency(&self) -> Duration {
        nanos(&self.inner.query_latency)
    }

    /// Changes the per-round-trip latency.
    pub fn set_query_latency(&self, latency: Duration) {
        self.inner
            .query_latency
            .store(to_nanos(latency), Ordering::Relaxed);
    }

    /// The server's connection limit.
    pub fn max_connections(&self) -> u32 {
        self.inner.max_connections.load(Ordering::Relaxed)
    }

    /// Changes the server's connection limit (open connections above a lowered
    /// limit stay open; new connects fail until below it).
    pub fn set_max_connections(&self, limit: u32) {
        self.inner.max_connections.store(limit, Ordering::Relaxed);
    }

    /// The connect timeout used in black-hole mode.
    pub fn connect_timeout(&self) -> Duration {
        nanos(&self.inner.connect_timeout)
    }

    /// Changes the connect timeout used in black-hole mode.
    pub fn set_connect_timeout(&self, timeout: Duration) {
        self.inner
            .connect_timeout
            .store(to_nanos(timeout), Ordering::Relaxed);
    }

    /// The read timeout given to new connections.
    pub fn query_timeout(&self) -> Duration {
        nanos(&self.inner.query_timeout)
    }

    /// Changes the read timeout given to new connections (existing ones keep
    /// theirs; see [`SimConn::set_query_timeout`]).
    pub fn set_query_timeout(&self, timeout: Duration) {
        self.inner
            .query_timeout
            .store(to_nanos(timeout), Ordering::Relaxed);
    }

    // ---------------------------------------------------------------- failures

    /// Switches refusing connects on or off: while on, every connect fails at
    /// once with [`SimError::ConnectionRefused`]. Open connections are not
    /// affected.
    ///
    /// ```
    /// let db = pool_sim::SimDb::new();
    /// db.set_refuse_connections(true);
    /// assert!(db.connect().is_err());
    /// db.set_refuse_connections(false);
    /// assert!(db.connect().is_ok());
    /// ```
    pub fn set_refuse_connections(&self, refuse: bool) {
        self.inner.refuse.store(refuse, Ordering::Release);
    }

    /// Whether connects are refused now (switched on, or restarting).
    pub fn is_refusing(&self) -> bool {
        if self.inner.refuse.load(Ordering::Acquire) {
            return true;
        }
        let mut until = self.inner.refuse_until.lock();
        match *until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    /// Whether the server accepts connects now (not refusing, no black hole).
    pub fn is_accepting(&self) -> bool {
        !self.is_refusing() && !self.is_black_hole()
    }

    /// Makes the next `n` connect attempts fail (after their latency) with
    /// [`SimError::InjectedConnectFailure`]. Replaces any count left.
    ///
    /// ```
    /// let db = pool_sim::SimDb::new();
    /// db.fail_next_connects(2);
    /// assert!(db.connect().is_err());
    /// assert!(db.connect().is_err());
    /// assert!(db.connect().is_ok());
    /// ```
    pub fn fail_next_connects(&self, n: u32) {
        self.inner.fail_connects.store(n, Ordering::Release);
    }

    /// Makes the next `n` connect attempts panic (after their latency), to
    /// check that a pool survives a panicking driver.
    pub fn panic_next_connects(&self, n: u32) {
        self.inner.panic_connects.store(n, Ordering::Release);
    }

    /// Makes the next `n` resets fail with [`SimError::InjectedFailure`]
    /// (the pool must then close the connection).
    pub fn fail_next_resets(&self, n: u32) {
        self.inner.fail_resets.store(n, Ordering::Release);
    }

    /// Makes the next `n` validations fail with [`SimError::InjectedFailure`].
    pub fn fail_next_validations(&self, n: u32) {
        self.inner.fail_validations.store(n, Ordering::Release);
    }

    pub(crate) fn take_reset_failure(&self) -> bool {
        take_one(&self.inner.fail_resets)
    }

    pub(crate) fn take_validation_failure(&self) -> bool {
        take_one(&self.inner.fail_validations)
    }

    /// Breaks every open connection, as a server that killed its backends: the
    /// next use of each fails with [`SimError::Broken`] and
    /// [`has_broken`](pool_core::ManageConnection::has_broken) reports it.
    /// Returns how many connections it broke.
    pub fn break_all(&self) -> usize {
        self.break_where(|_| true)
    }

    /// Ends every open session on the server's side without the clients
    /// knowing, as `pg_terminate_backend` or `KILL` does: each connection
    /// looks healthy ([`SimConn::is_broken`] is false, so
    /// [`has_broken`](pool_core::ManageConnection::has_broken) says no)
    /// until its next round trip, which fails with [`SimError::Broken`]
    /// and breaks it. Returns how many sessions it ended.
    ///
    /// ```
    /// let db = pool_sim::SimDb::new();
    /// let mut conn = db.connect().unwrap();
    /// assert_eq!(db.kill_all_silently(), 1);
    /// assert!(!conn.is_broken()); // not noticed yet
    /// assert!(conn.query("SELECT 1").is_err());
    /// assert!(conn.is_broken());
    /// ```
    pub fn kill_all_silently(&self) -> usize {
        let registry = self.inner.registry.lock();
        registry
            .open
            .values()
            .filter(|c| !c.broken.load(Ordering::Acquire) && !c.killed.swap(true, Ordering::AcqRel))
            .count()
    }

    /// Breaks each open, unbroken connection with probability `fraction`
    /// (clamped to `[0, 1]`), drawn from the seeded generator. Returns how many
    /// connections it broke.
    ///
    /// ```
    /// let db = pool_sim::SimDb::new();
    /// let conns: Vec<_> = (0..4).map(|_| db.connect().unwrap()).collect();
    /// assert_eq!(db.break_fraction(0.0), 0);
    /// assert_eq!(db.break_fraction(1.0), 4);
    /// assert!(conns.iter().all(|c| c.is_broken()));
    /// ```
    pub fn break_fraction(&self, fraction: f64) -> usize {
        let fraction = fraction.clamp(0.0, 1.0);
        let rng = &self.inner.rng;
        self.break_where(|_| rng.next_f64() < fraction)
    }

    /// Breaks the open connection `id`; returns false if no such connection is
    /// open or it was already broken.
    pub fn break_connection(&self, id: u64) -> bool {
        self.break_where(|c| c.id == id) == 1
    }

    fn break_where(&self, mut select: impl FnMut(&ConnShared) -> bool) -> usize {
        let registry = self.inner.registry.lock();
        let mut n = 0;
        for conn in registry.open.values() {
            if !conn.broken.load(Ordering::Acquire) && select(conn) && self.mark_broken(conn) {
                n += 1;
            }
        }
        n
    }

    /// Marks one connection broken; true if it was not broken before.
    pub(crate) fn mark_broken(&self, conn: &ConnShared) -> bool {
        let first = !conn.broken.swap(true, Ordering::AcqRel);
        if first {
            self.inner.counters.broken.fetch_add(1, Ordering::Relaxed);
        }
        first
    }

    /// Adds `extra` latency to every connect and round trip, until set back to
    /// zero. Validations whose latency exceeds their timeout fail.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let db = pool_sim::SimDb::new();
    /// let mut conn = db.connect().unwrap();
    /// db.set_extra_latency(Duration::from_millis(20));
    /// let start = Instant::now();
    /// conn.query("SELECT 1").unwrap();
    /// assert!(start.elapsed() >= Duration::from_millis(20));
    /// ```
    pub fn set_extra_latency(&self, extra: Duration) {
        self.inner
            .extra_latency
            .store(to_nanos(extra), Ordering::Relaxed);
    }

    /// The extra latency set with [`set_extra_latency`](Self::set_extra_latency).
    pub fn extra_latency(&self) -> Duration {
        nanos(&self.inner.extra_latency)
    }

    /// Simulates a server restart: breaks every open connection, fails
    /// connects already in their handshake with [`SimError::ConnectionReset`],
    /// and refuses new connects for `down`; returns at once.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let db = pool_sim::SimDb::new();
    /// let conn = db.connect().unwrap();
    /// db.restart(Duration::from_millis(30));
    /// assert!(conn.is_broken());
    /// assert!(db.connect().is_err());
    /// std::thread::sleep(Duration::from_millis(40));
    /// assert!(db.connect().is_ok());
    /// ```
    pub fn restart(&self, down: Duration) {
        *self.inner.refuse_until.lock() = Instant::now().checked_add(down);
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.break_all();
    }

    /// Switches black-hole mode on or off. While on, connects, queries and
    /// validations get no answer: each blocks until its timeout and then fails
    /// (queries and validations also break their connection, as a driver closes
    /// a socket whose read timed out). Switching it off lets blocked calls
    /// continue normally, as TCP retransmission would.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let db = pool_sim::SimDb::new();
    /// let mut conn = db.connect().unwrap();
    /// db.set_black_hole(true);
    /// let err = conn.ping(Duration::from_millis(10)).unwrap_err();
    /// assert!(err.is_fatal());
    /// assert!(conn.is_broken());
    /// ```
    pub fn set_black_hole(&self, on: bool) {
        self.inner.black_hole.set(on);
    }

    /// Whether black-hole mode is on.
    pub fn is_black_hole(&self) -> bool {
        self.inner.black_hole.is_on()
    }

    /// Switches every failure mode off: accepts connects, clears injected
    /// failure counts, extra latency and black-hole mode. Broken connections
    /// stay broken.
    pub fn heal(&self) {
        self.set_refuse_connections(false);
        *self.inner.refuse_until.lock() = None;
        self.fail_next_connects(0);
        self.panic_next_connects(0);
        self.fail_next_resets(0);
        self.fail_next_validations(0);
        self.set_extra_latency(Duration::ZERO);
        self.set_black_hole(false);
    }

    // ---------------------------------------------------------------- internals

    pub(crate) fn wait(&self, d: Duration) {
        wait::wait(d, self.inner.precise_short_waits.load(Ordering::Relaxed));
    }

    /// The latency of one round trip now: query latency plus extra latency.
    pub(crate) fn round_trip_latency(&self) -> Duration {
        nanos(&self.inner.query_latency) + self.extra_latency()
    }

    pub(crate) fn count(&self, counter: impl Fn(&Counters) -> &AtomicU64) {
        counter(&self.inner.counters).fetch_add(1, Ordering::Relaxed);
    }
}

fn nanos(a: &AtomicU64) -> Duration {
    Duration::from_nanos(a.load(Ordering::Relaxed))
}

/// Decrements `n` if it is positive; true if it did.
fn take_one(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1))
        .is_ok()
}
