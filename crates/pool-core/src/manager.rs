//! The one trait a database driver implements to be pooled.

use std::time::Duration;

use crate::HookContext;

/// Opens, checks and resets connections of one kind for a [`Pool`](crate::Pool).
///
/// A manager is the pool's only contact with the database driver. The pool calls
/// it from several threads at once (borrowers validate on their own thread, the
/// creator thread connects, the housekeeper runs keepalives), so it must be
/// `Send + Sync`. Every method may panic without harming the pool: a panic in
/// `connect` counts as a failed connect, a panic in `is_valid` or `reset` as a
/// failed check, and the connection concerned is closed.
///
/// # Example
///
/// ```
/// use pool_core::ManageConnection;
/// use std::time::Duration;
///
/// /// A "connection" that is just a counter, to show the shape.
/// struct Counter;
///
/// impl ManageConnection for Counter {
///     type Connection = u64;
///     type Error = std::io::Error;
///
///     fn connect(&self) -> Result<u64, std::io::Error> {
///         Ok(0)
///     }
///     fn is_valid(&self, _conn: &mut u64, _timeout: Duration) -> Result<(), std::io::Error> {
///         Ok(())
///     }
///     fn has_broken(&self, _conn: &mut u64) -> bool {
///         false
///     }
/// }
///
/// let pool = pool_core::Pool::builder().max_size(2).build(Counter).unwrap();
/// assert_eq!(*pool.get().unwrap(), 0);
/// ```
pub trait ManageConnection: Send + Sync + 'static {
    /// The connection type this manager produces.
    type Connection: Send + 'static;
    /// The error type returned by `connect`, `is_valid` and `reset`.
    ///
    /// The pool keeps the most recent connect error and chains it from its own
    /// errors through [`std::error::Error::source`].
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection.
    ///
    /// Called only by the pool's creator (on its thread, or on a `pool-io`
    /// thread when [`connect_limit`](ManageConnection::connect_limit) is
    /// set), never while the pool holds a lock and never on a borrower's
    /// thread. It should honour its own connect timeout: the pool cannot
    /// interrupt a blocked connect.
    fn connect(&self) -> Result<Self::Connection, Self::Error>;

    /// The longest the pool waits for one [`connect`](ManageConnection::connect).
    ///
    /// With a limit, the creator runs each connect on a `pool-io` thread and
    /// stops waiting for it after the limit (the attempt counts as failed,
    /// [`ConnectFailure::Unreachable`]). A connect given up this way keeps its
    /// place in the pool's `max_size` until it really returns: if it then
    /// brings a connection, that connection is closed at once
    /// ([`Metrics::late_connects`](crate::Metrics::late_connects)). So however long a
    /// server hangs, one pool never has more than `max_size` sessions open
    /// or being opened, nor more than `max_size` threads waiting in connects.
    /// A manager whose connect can end itself at the limit (a socket read
    /// timeout) should still return it here: it is the pool's bound.
    ///
    /// The default, `None`, calls `connect` on the creator thread and waits
    /// as long as it takes.
    ///
    /// ```
    /// use pool_core::ManageConnection;
    /// use std::time::Duration;
    ///
    /// struct Slow;
    ///
    /// impl ManageConnection for Slow {
    ///     type Connection = ();
    ///     type Error = std::io::Error;
    ///     fn connect(&self) -> Result<(), std::io::Error> {
    ///         std::thread::sleep(Duration::from_millis(300)); // a hung server
    ///         Ok(())
    ///     }
    ///     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    ///     fn has_broken(&self, _: &mut ()) -> bool { false }
    ///     fn connect_limit(&self) -> Option<Duration> {
    ///         Some(Duration::from_millis(50))
    ///     }
    /// }
    ///
    /// let err = pool_core::Pool::builder()
    ///     .initialization_fail_timeout(Duration::from_millis(100))
    ///     .build(Slow)
    ///     .unwrap_err();
    /// // The cause is the error's source: print the chain.
    /// let chain = pool_core::ErrorChain(&err).to_string();
    /// assert!(chain.contains("did not finish within 50ms"), "{chain}");
    /// ```
    fn connect_limit(&self) -> Option<Duration> {
        None
    }

    /// The error to report for a connect the pool stopped waiting for after
    /// [`connect_limit`](ManageConnection::connect_limit) (`limit`): a
    /// manager can name the server here. The default, `None`, reports the
    /// pool's own "did not finish within" error.
    ///
    /// ```
    /// use pool_core::ManageConnection;
    /// use std::time::Duration;
    ///
    /// struct Db;
    ///
    /// impl ManageConnection for Db {
    ///     type Connection = ();
    ///     type Error = std::io::Error;
    ///     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    ///     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    ///     fn has_broken(&self, _: &mut ()) -> bool { false }
    ///     fn connect_timed_out(&self, limit: Duration) -> Option<std::io::Error> {
    ///         Some(std::io::Error::new(
    ///             std::io::ErrorKind::TimedOut,
    ///             format!("timed out after {limit:?} connecting to db:5432"),
    ///         ))
    ///     }
    /// }
    ///
    /// let err = Db.connect_timed_out(Duration::from_secs(5)).unwrap();
    /// assert!(err.to_string().contains("db:5432"));
    /// ```
    fn connect_timed_out(&self, limit: Duration) -> Option<Self::Error> {
        let _ = limit;
        None
    }

    /// Checks that `conn` still works, in at most `timeout`.
    ///
    /// Called on borrow when the connection has been idle for longer than the
    /// alive-bypass window (see [`Builder::test_on_check_out`](crate::Builder::test_on_check_out)),
    /// and by the housekeeper for keepalives. An implementation must give up
    /// after `timeout` (for example with a socket read timeout): a half-open
    /// socket must not hang a borrower.
    fn is_valid(&self, conn: &mut Self::Connection, timeout: Duration) -> Result<(), Self::Error>;

    /// Reports, cheaply and without any I/O, whether `conn` is known to be broken.
    ///
    /// Called on every return and every borrow, so it must never block or touch
    /// the network: look at a flag the driver keeps (for example "the socket was
    /// closed" or "a fatal error was seen").
    fn has_broken(&self, conn: &mut Self::Connection) -> bool;

    /// Cleans up session state left by the previous borrower, when a connection
    /// comes back to the pool.
    ///
    /// Runs on the returning thread before the connection becomes available to
    /// anyone else. An error closes the connection instead of returning it.
    /// The default does nothing.
    fn reset(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        let _ = conn;
        Ok(())
    }

    /// Whether [`reset`](ManageConnection::reset) has anything to do for this
    /// connection: cheap, no I/O (for example "did the borrower send
    /// anything?"). With [`Builder::reset_in_background`](crate::Builder::reset_in_background)
    /// a connection that needs no reset is available again at once, without
    /// the hop to a worker thread. The default says yes.
    fn needs_reset(&self, conn: &mut Self::Connection) -> bool {
        let _ = conn;
        true
    }

    /// Whether `reset` is costly enough (a round trip) to run off the
    /// borrower's thread by default; see
    /// [`Builder::reset_in_background`](crate::Builder::reset_in_background),
    /// which overrides it. The default says no.
    fn background_reset(&self) -> bool {
        false
    }

    /// The longest a [`reset`](ManageConnection::reset) may take when the pool
    /// runs it in the background (see
    /// [`Builder::reset_in_background`](crate::Builder::reset_in_background)).
    ///
    /// With a limit, the pool watches its background resets: its housekeeper
    /// gives up a connection whose reset has run longer (counted as closed
    /// for `reset_failed` and shown in `State::given_up`; its session may
    /// still exist on the server, so it keeps its place in `max_size` until
    /// `reset` returns and the background thread drops it, and a
    /// replacement is opened only where `max_size` has room), and [`deadline::run`](crate::deadline::run) calls in
    /// that reset run inline instead of hopping to another thread. A manager
    /// that bounds its reset with `deadline::run` should return the same
    /// limit here. The default, `None`, means the pool does not watch: the
    /// reset bounds itself, or is trusted to return.
    ///
    /// ```
    /// use pool_core::ManageConnection;
    /// use std::time::Duration;
    ///
    /// struct Resetting;
    ///
    /// impl ManageConnection for Resetting {
    ///     type Connection = Vec<String>;
    ///     type Error = std::io::Error;
    ///     fn connect(&self) -> Result<Vec<String>, std::io::Error> {
    ///         Ok(Vec::new())
    ///     }
    ///     fn is_valid(&self, _: &mut Vec<String>, _: Duration) -> Result<(), std::io::Error> {
    ///         Ok(())
    ///     }
    ///     fn has_broken(&self, _: &mut Vec<String>) -> bool {
    ///         false
    ///     }
    ///     fn reset(&self, conn: &mut Vec<String>) -> Result<(), std::io::Error> {
    ///         conn.clear(); // a round trip, in a real driver
    ///         Ok(())
    ///     }
    ///     fn background_reset(&self) -> bool {
    ///         true
    ///     }
    ///     fn reset_limit(&self) -> Option<Duration> {
    ///         Some(Duration::from_secs(5))
    ///     }
    /// }
    ///
    /// let pool = pool_core::Pool::builder().max_size(1).build(Resetting).unwrap();
    /// pool.get().unwrap().push("session state".into());
    /// // The reset ran in the background before the connection was lent again.
    /// assert!(pool.get().unwrap().is_empty());
    /// ```
    fn reset_limit(&self) -> Option<Duration> {
        None
    }

    /// Whether [`reset`](ManageConnection::reset), called on the returning
    /// thread, hands its work to another thread anyway: a reset bounded with
    /// [`deadline::run`](crate::deadline::run), for a driver that cannot
    /// bound its socket reads. When it does, and the pool resets in the
    /// background with a [`reset_limit`](ManageConnection::reset_limit), a
    /// used connection goes to a worker even while borrowers wait: the
    /// worker runs the reset inline (watched) and gives the connection
    /// straight to a waiter, one hand-off instead of the returning thread's
    /// two (to the worker and back). The default says no: while borrowers
    /// wait, the returning thread resets, bounded by the manager on that
    /// thread (a socket read timeout, say).
    fn reset_hands_off(&self) -> bool {
        false
    }

    /// What a failed [`connect`](ManageConnection::connect) says about the
    /// database, for the pool's fail-fast rule (see
    /// [`Builder::fail_fast`](crate::Builder::fail_fast)).
    ///
    /// The default, [`ConnectFailure::Unreachable`], suits a manager that
    /// cannot tell: the pool then fails fast once connects have failed
    /// repeatedly while it holds no connection. The driver crates classify
    /// their errors: a refused or timed-out TCP connection is `Unreachable`,
    /// a wrong password or database `Rejected`, a server at its connection
    /// limit or still starting `Busy`.
    ///
    /// ```
    /// use pool_core::{ConnectFailure, ManageConnection};
    /// use std::io::ErrorKind;
    /// use std::time::Duration;
    ///
    /// struct Db;
    ///
    /// impl ManageConnection for Db {
    ///     type Connection = ();
    ///     type Error = std::io::Error;
    ///     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    ///     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    ///     fn has_broken(&self, _: &mut ()) -> bool { false }
    ///     fn classify_connect_error(&self, error: &std::io::Error) -> ConnectFailure {
    ///         match error.kind() {
    ///             ErrorKind::PermissionDenied => ConnectFailure::Rejected,
    ///             ErrorKind::WouldBlock => ConnectFailure::Busy,
    ///             _ => ConnectFailure::Unreachable,
    ///         }
    ///     }
    /// }
    ///
    /// let denied = std::io::Error::from(ErrorKind::PermissionDenied);
    /// assert_eq!(Db.classify_connect_error(&denied), ConnectFailure::Rejected);
    /// ```
    fn classify_connect_error(&self, error: &Self::Error) -> ConnectFailure {
        let _ = error;
        ConnectFailure::Unreachable
    }

    /// A hook run on every borrow, on the borrower's thread, after the
    /// pool's own checks passed and just before the connection is lent:
    /// `false` vetoes the loan. A vetoed connection is closed (counted as
    /// [`CloseReason::Rejected`](crate::CloseReason::Rejected)) and the
    /// borrower gets another within the same `get()` deadline. `cx` gives
    /// facts about the connection and its [`Extensions`](crate::Extensions).
    /// A panic counts as a veto.
    ///
    /// The default lends every connection and costs nothing (the pool reads
    /// no facts for it). To add hooks to an existing manager, wrap it with
    /// [`Customized`](crate::Customized) and implement
    /// [`CustomizeConnection::on_checkout`](crate::CustomizeConnection::on_checkout).
    ///
    /// ```
    /// use pool_core::{HookContext, ManageConnection, Pool};
    /// use std::time::Duration;
    ///
    /// /// Lends a connection at most three times.
    /// struct ThreeUses;
    ///
    /// impl ManageConnection for ThreeUses {
    ///     type Connection = ();
    ///     type Error = std::io::Error;
    ///     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    ///     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    ///     fn has_broken(&self, _: &mut ()) -> bool { false }
    ///     fn on_checkout(&self, _: &mut (), cx: &mut HookContext<'_>) -> bool {
    ///         cx.info().uses <= 3
    ///     }
    /// }
    ///
    /// let pool = Pool::builder().max_size(1).build(ThreeUses)?;
    /// let ids: Vec<u64> = (0..4).map(|_| pool.get().unwrap().id()).collect();
    /// assert_eq!(ids, [1, 1, 1, 2]); // the fourth loan of 1 was vetoed
    /// assert_eq!(pool.metrics().closed.rejected, 1);
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    fn on_checkout(&self, conn: &mut Self::Connection, cx: &mut HookContext<'_>) -> bool {
        let _ = (conn, cx);
        true
    }

    /// A hook run on every return, on the returning thread, after
    /// [`has_broken`](ManageConnection::has_broken) and before
    /// [`reset`](ManageConnection::reset): clean up, or return `false` to
    /// close the connection (counted as
    /// [`CloseReason::Rejected`](crate::CloseReason::Rejected)) instead of
    /// making it available again. Not run for a connection its borrower
    /// marked broken or dropped while panicking (it is closed anyway). A
    /// panic counts as `false`. The default keeps every connection.
    ///
    /// ```
    /// use pool_core::{HookContext, ManageConnection, Pool};
    /// use std::time::Duration;
    ///
    /// /// A "session" that must not keep more than 2 temporary tables.
    /// struct Tidy;
    ///
    /// impl ManageConnection for Tidy {
    ///     type Connection = Vec<&'static str>;
    ///     type Error = std::io::Error;
    ///     fn connect(&self) -> Result<Self::Connection, std::io::Error> { Ok(Vec::new()) }
    ///     fn is_valid(&self, _: &mut Self::Connection, _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    ///     fn has_broken(&self, _: &mut Self::Connection) -> bool { false }
    ///     fn on_checkin(&self, conn: &mut Self::Connection, _: &mut HookContext<'_>) -> bool {
    ///         conn.len() <= 2
    ///     }
    /// }
    ///
    /// let pool = Pool::builder().max_size(1).build(Tidy)?;
    /// pool.get()?.extend(["t1", "t2", "t3"]);
    /// assert_eq!(pool.metrics().closed.rejected, 1); // closed, not reused
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    fn on_checkin(&self, conn: &mut Self::Connection, cx: &mut HookContext<'_>) -> bool {
        let _ = (conn, cx);
        true
    }

    /// Whether `error`, returned by work on a connection, means the
    /// connection itself is broken (its session is gone: the server closed
    /// it, the socket failed), so that the same work may succeed on another
    /// connection. [`Pool::run_idempotent`](crate::Pool::run_idempotent)
    /// asks it to decide whether to retry.
    ///
    /// The error is the user's own type, seen as `&dyn Error`: look for the
    /// driver's error in it and along its [`source`](std::error::Error::source)
    /// chain (pool-postgres looks for `postgres::Error`, pool-mysql for
    /// `mysql::Error`). Cheap and without I/O. The default says no: nothing
    /// is retried.
    ///
    /// ```
    /// use pool_core::ManageConnection;
    /// use std::time::Duration;
    ///
    /// struct Db;
    ///
    /// impl ManageConnection for Db {
    ///     type Connection = ();
    ///     type Error = std::io::Error;
    ///     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    ///     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    ///     fn has_broken(&self, _: &mut ()) -> bool { false }
    ///     fn is_broken_error(&self, error: &(dyn std::error::Error + 'static)) -> bool {
    ///         let mut cause = Some(error);
    ///         while let Some(e) = cause {
    ///             if let Some(io) = e.downcast_ref::<std::io::Error>() {
    ///                 return io.kind() == std::io::ErrorKind::ConnectionReset;
    ///             }
    ///             cause = e.source();
    ///         }
    ///         false
    ///     }
    /// }
    ///
    /// let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    /// assert!(Db.is_broken_error(&reset));
    /// ```
    fn is_broken_error(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        let _ = error;
        false
    }

    /// Closes a connection the pool is done with.
    ///
    /// Runs on whichever thread retires the connection, with no lock held.
    /// The default drops it; override it to end the session politely (for
    /// example a protocol-level goodbye) or to close it on another thread if
    /// dropping can block.
    fn close(&self, conn: Self::Connection) {
        drop(conn);
    }
}

/// What a failed connect says about the database: the input of the pool's
/// fail-fast rule (see [`Builder::fail_fast`](crate::Builder::fail_fast)).
///
/// ```
/// use pool_core::ConnectFailure;
/// assert!(ConnectFailure::Unreachable.means_down());
/// assert!(!ConnectFailure::Busy.means_down());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The server could not be reached: refused, unreachable, reset, or no
    /// answer in time. Repeated, it means the database is down.
    Unreachable,
    /// The server answered and refused the login for good: wrong password,
    /// unknown user or database. Retrying will not help until the settings
    /// change; the pool fails fast at once, saying so.
    Rejected,
    /// The server is up but cannot take this session now: at its connection
    /// limit, starting up or shutting down. Never a reason to fail fast:
    /// borrowers wait for a connection to come back.
    Busy,
    /// Anything else. Borrowers wait (until their timeout, which then names
    /// this error).
    Other,
}

impl ConnectFailure {
    /// True for the kinds that, repeated, mean the database is down
    /// ([`Unreachable`](Self::Unreachable) and [`Rejected`](Self::Rejected)).
    pub fn means_down(self) -> bool {
        matches!(self, ConnectFailure::Unreachable | ConnectFailure::Rejected)
    }
}
