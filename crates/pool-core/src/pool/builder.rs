//! [`Builder`]: a pool's settings, set one by one from their defaults, then
//! checked and turned into a running [`Pool`] by [`build`](Builder::build).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::observe::events::Handler;
use crate::{AdaptiveSize, Config, Error, HandleEvent, HealthThresholds, ManageConnection, Pool};

/// Numbers the pools built without a name (`pool-1`, `pool-2`, ...).
static NAME_SEQ: AtomicU64 = AtomicU64::new(1);

/// Builds a [`Pool`]: set what differs from the defaults, then call
/// [`build`](Builder::build) or [`build_unchecked`](Builder::build_unchecked).
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
///     .name("orders")
///     .max_size(4)
///     .min_idle(Some(1))
///     .connection_timeout(Duration::from_secs(5))
///     .build(M)?;
/// assert_eq!(pool.state().max_size, 4);
/// # Ok::<(), pool_core::Error>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
#[derive(Debug, Clone, Default)]
pub struct Builder {
    config: Config,
    handler: Option<Handler>,
}

impl Builder {
    /// A builder with every setting at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder starting from `config`.
    pub fn from_config(config: Config) -> Self {
        Builder {
            config,
            handler: None,
        }
    }

    /// The settings so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The pool's name, used in every log line, error and thread name.
    ///
    /// Default: `pool-N`, numbered in the order pools are built. 1 to 256
    /// bytes without control characters.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// The most connections the pool holds, idle and lent together.
    ///
    /// Default: 10. Must be between 1 and 65,536. Can be changed later with
    /// [`Pool::resize`].
    pub fn max_size(mut self, max_size: u32) -> Self {
        self.config.max_size = max_size;
        self
    }

    /// How many idle connections the pool keeps ready; `None` means
    /// "as many as `max_size`" (a fixed-size pool, HikariCP's recommendation).
    ///
    /// Lent connections do not count: with `min_idle` 2 and 3 connections
    /// lent, the pool holds 5 (within `max_size`). When borrows take the idle
    /// count below `min_idle`, the pool opens replacements within about
    /// 100 ms. Only idle connections above `min_idle` idle ones are closed
    /// after [`idle_timeout`](Builder::idle_timeout).
    ///
    /// Default: `None`.
    pub fn min_idle(mut self, min_idle: Option<u32>) -> Self {
        self.config.min_idle = min_idle;
        self
    }

    /// How long [`Pool::get`] waits for a connection before failing with
    /// [`Error::Timeout`].
    ///
    /// One deadline per call, fixed when `get` is called: every validation
    /// of an idle connection and every wait within the call gets what is
    /// left of it, so `get` returns within this time (plus scheduling),
    /// whatever path it takes and however many idle connections hang on a
    /// frozen server. The error reports the real time waited.
    ///
    /// Default: 30 s. 1 ms to 3650 days.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.config.connection_timeout = timeout;
        self
    }

    /// The time limit given to [`ManageConnection::is_valid`].
    ///
    /// On borrow the check is also bounded by what the borrower has left of
    /// its wait, so `get` returns within `connection_timeout` even when
    /// validation hangs; a connection reached after the deadline is not
    /// tested (nor closed) but left for the next borrower. `try_get` gives
    /// the validation of the idle connection it takes this whole limit.
    ///
    /// Default: 5 s. 1 ms to 3650 days.
    pub fn validation_timeout(mut self, timeout: Duration) -> Self {
        self.config.validation_timeout = timeout;
        self
    }

    /// How long a connection may sit idle before it is closed; applies only
    /// to connections above `min_idle`. `None` keeps idle connections forever.
    ///
    /// Default: 10 minutes. 10 ms to 3650 days ([`MIN_COARSE_DURATION`](crate::MIN_COARSE_DURATION)
    /// says why not less), and shorter than `max_lifetime`.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// How long a connection lives at most. Each connection is retired up to
    /// 2.5 % early, at random, so that connections opened together do not all
    /// expire together; an idle one is closed at once, a lent one when it comes
    /// back. `None` lets connections live forever.
    ///
    /// Default: 30 minutes. 10 ms to 3650 days. Set it a little below any
    /// limit the database or a network device imposes on connection age.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.config.max_lifetime = lifetime;
        self
    }

    /// How often an idle connection is checked with `is_valid`, to keep it
    /// from being dropped by the database or a firewall and to notice a dead
    /// one before a borrower does. `None` turns keepalives off.
    ///
    /// Default: `None`. 10 ms to 3650 days, and shorter than `max_lifetime`.
    pub fn keepalive_time(mut self, interval: Option<Duration>) -> Self {
        self.config.keepalive_time = interval;
        self
    }

    /// Whether a borrowed connection is checked with `is_valid` before it is
    /// handed out. A connection used within the
    /// [`alive_bypass_window`](Builder::alive_bypass_window) is not re-checked:
    /// it was just seen working.
    ///
    /// Default: `true`.
    pub fn test_on_check_out(mut self, test: bool) -> Self {
        self.config.test_on_check_out = test;
        self
    }

    /// How recently a connection must have been used to skip the check on
    /// borrow.
    ///
    /// Default: 500 ms (HikariCP's). 0 (check every borrow) to 3650 days.
    pub fn alive_bypass_window(mut self, window: Duration) -> Self {
        self.config.alive_bypass_window = window;
        self
    }

    /// How long a connection may stay lent before it is reported as a
    /// possible leak. `None` turns leak detection off.
    ///
    /// Default: `None`. 10 ms to 3650 days.
    pub fn leak_detection_threshold(mut self, threshold: Option<Duration>) -> Self {
        self.config.leak_detection_threshold = threshold;
        self
    }

    /// How long [`build`](Builder::build) tries to open its first connections.
    ///
    /// `build` waits until `min_idle` connections are open, or until this time
    /// has passed; then it succeeds if at least one connection could be opened
    /// (the rest are opened in the background) and fails with the driver's
    /// error if none could. Connections opened and already closed again
    /// (a short `max_lifetime`) count as success. Zero means "the first
    /// attempt decides". A first connect still running at the deadline is
    /// waited for, but only until `connection_timeout` after the start: then
    /// `build` fails with [`Error::Connect`] (the pool closes in the
    /// background if that takes over 100 ms). So `build` returns within the
    /// longer of the two, plus at most 100 ms.
    ///
    /// Default: 1 s. 0 to 3650 days.
    pub fn initialization_fail_timeout(mut self, timeout: Duration) -> Self {
        self.config.initialization_fail_timeout = timeout;
        self
    }

    /// Whether borrowers fail at once while the database is down, instead of
    /// waiting out `connection_timeout`.
    ///
    /// The rule: `get` fails fast, with [`Error::Connect`] and the driver's
    /// error, only while the pool holds no open connection and either
    ///
    /// * the server rejected the login ([`ConnectFailure::Rejected`]: wrong
    ///   password, user or database — the error says so), or
    /// * connects failed to reach the server
    ///   ([`ConnectFailure::Unreachable`]: refused, unreachable, timed out)
    ///   at least twice in a row over at least one second;
    ///
    /// and the last attempt is less than 500 ms old (otherwise the borrower
    /// waits, within its timeout, for the next attempt, so a database that
    /// came back is not reported down from an old failure). A server at its
    /// connection limit, starting up or shutting down
    /// ([`ConnectFailure::Busy`]) never makes borrowers fail fast: they wait
    /// for a connection to come back. While borrowers fail fast, each of
    /// them asks the creator to try again on its backoff (50 ms doubling to
    /// 1 s), whatever `min_idle` is, and the first success ends it. The
    /// manager classifies its errors
    /// ([`ManageConnection::classify_connect_error`]).
    ///
    /// [`ConnectFailure::Rejected`]: crate::ConnectFailure::Rejected
    /// [`ConnectFailure::Unreachable`]: crate::ConnectFailure::Unreachable
    /// [`ConnectFailure::Busy`]: crate::ConnectFailure::Busy
    /// [`ManageConnection::classify_connect_error`]: crate::ManageConnection::classify_connect_error
    ///
    /// Default: `true`.
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.config.fail_fast = fail_fast;
        self
    }

    /// Whether `get` fails at once with [`Error::Suspended`] while the pool is
    /// suspended, instead of waiting (up to `connection_timeout`) for
    /// [`Pool::resume`].
    ///
    /// Default: `false`.
    pub fn fail_when_suspended(mut self, fail: bool) -> Self {
        self.config.fail_when_suspended = fail;
        self
    }

    /// Whether borrows and returns record metrics (counts, acquire wait and
    /// time lent; see [`Pool::metrics`]). Recording costs a few nanoseconds
    /// per borrow and about 10 KiB per thread that uses the pool; connection
    /// counters and errors are always counted.
    ///
    /// Default: `true`.
    pub fn metrics(mut self, on: bool) -> Self {
        self.config.metrics = on;
        self
    }

    /// Receives the pool's events: connections opened and closed (with
    /// reason and age), lent (with wait time) and returned (with time lent),
    /// and borrowers timing out. See [`HandleEvent`].
    ///
    /// Default: none.
    pub fn event_handler(mut self, handler: impl HandleEvent) -> Self {
        self.handler = Some(Handler(Arc::new(handler)));
        self
    }

    /// Whether [`ManageConnection::reset`] runs on a worker thread instead of
    /// the returning borrower's: the borrower's `drop` returns at once, and
    /// the connection becomes available to others when its reset is done.
    /// Worth it when the reset costs a round trip (session isolation in the
    /// driver crates); connections whose
    /// [`needs_reset`](ManageConnection::needs_reset) says no skip the hop.
    ///
    /// Default: what the manager's
    /// [`background_reset`](ManageConnection::background_reset) says (the
    /// driver crates say yes while isolation is on; the trait's default is no).
    pub fn reset_in_background(mut self, on: bool) -> Self {
        self.config.reset_in_background = Some(on);
        self
    }

    /// How many connects may run at once while the pool is short of
    /// connections it should hold: filling to `min_idle` (or `max_size`) at
    /// start-up and after connections were lost (a failover, a restart).
    ///
    /// Connections merely lent out do not count as missing: a burst of
    /// borrowers still gets one connect at a time, and most of it is served
    /// by returns. After a failed connect the pool goes back to one attempt at
    /// a time (with backoff) until one succeeds, so a database that is down
    /// sees no more attempts than with `1`. Each connect in flight holds a
    /// seat: never more than `max_size` sessions.
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
    /// let pool = Pool::builder().max_size(20).parallel_connects(8).build(M)?;
    /// assert_eq!(pool.state().max_size, 20);
    /// let err = Pool::builder().parallel_connects(0).build(M).unwrap_err();
    /// assert!(err.to_string().contains("parallel_connects"), "{err}");
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    ///
    /// Default: 4 ([`DEFAULT_PARALLEL_CONNECTS`](crate::DEFAULT_PARALLEL_CONNECTS)).
    /// 1 (one at a time) to 64 ([`MAX_PARALLEL_CONNECTS`](crate::MAX_PARALLEL_CONNECTS)).
    pub fn parallel_connects(mut self, n: u32) -> Self {
        self.config.parallel_connects = n;
        self
    }

    /// Turns on adaptive sizing: the pool moves its own `max_size` between
    /// `sizing.floor` and `sizing.ceiling`, up while it stays saturated and
    /// borrowers wait, down while it stays mostly idle (see
    /// [`AdaptiveSize`] and `docs/adaptive.md`). The decisions run on the
    /// housekeeper thread; borrowing and returning do no extra work. Each
    /// change is logged at `info` level and counted in
    /// [`Metrics::resizes_up`](crate::Metrics::resizes_up) and
    /// [`resizes_down`](crate::Metrics::resizes_down).
    ///
    /// ```
    /// # use pool_core::{AdaptiveSize, ManageConnection, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut ()) -> bool { false }
    /// # }
    /// let mut sizing = AdaptiveSize::new(2, 32);
    /// sizing.window = Duration::from_secs(5);
    /// let pool = Pool::builder().max_size(4).adaptive_size(sizing).build(M)?;
    /// assert_eq!(pool.state().max_size, 4); // it starts at max_size
    ///
    /// let err = Pool::builder()
    ///     .max_size(4)
    ///     .adaptive_size(AdaptiveSize::new(8, 2))
    ///     .build(M)
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("adaptive_size.floor"), "{err}");
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    ///
    /// Default: off. `max_size` must lie between the floor and the ceiling,
    /// and [`metrics`](Builder::metrics) must be on; the other ranges are on
    /// [`AdaptiveSize`]'s fields.
    pub fn adaptive_size(mut self, sizing: AdaptiveSize) -> Self {
        self.config.adaptive = Some(sizing);
        self
    }

    /// The thresholds of [`Pool::health`]'s verdicts.
    ///
    /// Default: [`HealthThresholds::default()`] (a 60 s window; critical above
    /// 10 % errors, 95 % utilization or 10 s mean wait; warning above 5 %,
    /// 80 %, 5 s; healthy below 1 %, 70 %, 1 s). Checked by
    /// [`HealthThresholds::validate`] when the pool is built.
    pub fn health_thresholds(mut self, thresholds: HealthThresholds) -> Self {
        self.config.health = thresholds;
        self
    }

    /// Builds the pool and waits for its first connections (see
    /// [`initialization_fail_timeout`](Builder::initialization_fail_timeout)).
    ///
    /// Fails with [`Error::Config`] for invalid settings and with
    /// [`Error::Connect`] when no connection could be opened.
    pub fn build<M: ManageConnection>(self, manager: M) -> Result<Pool<M>, Error> {
        let handler = self.handler.clone().map(|h| h.0);
        let (config, name) = self.finish()?;
        Pool::start(config, name, manager, true, handler)
    }

    /// Builds the pool without waiting for any connection: they are opened in
    /// the background. Fails only for invalid settings.
    pub fn build_unchecked<M: ManageConnection>(self, manager: M) -> Result<Pool<M>, Error> {
        let handler = self.handler.clone().map(|h| h.0);
        let (config, name) = self.finish()?;
        Pool::start(config, name, manager, false, handler)
    }

    fn finish(self) -> Result<(Config, Arc<str>), Error> {
        let name: Arc<str> = match &self.config.name {
            Some(n) => Arc::from(n.as_str()),
            None => Arc::from(format!("pool-{}", NAME_SEQ.fetch_add(1, Ordering::Relaxed))),
        };
        match self.config.validate() {
            Ok(()) => Ok((self.config, name)),
            Err(Error::Config {
                setting, reason, ..
            }) => Err(Error::Config {
                pool: name,
                setting,
                reason,
            }),
            Err(other) => Err(other),
        }
    }
}
