// Over 800 lines: the manager, its URL parsing and its unit tests; the tests module
// (about 150 lines) can move to tests/ when the file grows further.
//! MySQL and MariaDB for the [`pool_core`] connection pool, on the
//! synchronous [`mysql`] driver.
//!
//! ```no_run
//! use mysql::prelude::Queryable;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Pool settings may travel in the URL (Prisma's names); they are removed
//! // before the driver sees the URL.
//! let pool = pool_mysql::pool_from_url(
//!     "mysql://app:secret@db.internal/orders?connection_limit=8&pool_timeout=2",
//! )?;
//!
//! let mut conn = pool.get()?;
//! let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM orders")?;
//! println!("{n:?} orders");
//! # Ok(()) }
//! ```
//!
//! What the manager adds to a plain `mysql::Conn`:
//!
//! * **Sane network defaults** where the options do not say otherwise: a 5 s
//!   connect timeout that covers the whole start-up (TCP, TLS and
//!   authentication, not only the TCP handshake) and TCP keepalives after
//!   60 s idle.
//! * **Validation and resets with a real time limit**: `COM_PING` and the
//!   session reset run with the socket's read timeout set to what is left
//!   of their limit, on the calling thread (JDBC's `setNetworkTimeout`
//!   does the same), so a black-holed connection hangs neither a borrower
//!   nor the thread returning a connection, and no thread hand-off is paid.
//! * **Broken-connection detection without I/O**: [`MysqlConnection`]
//!   remembers the connection errors it saw.
//! * **Session isolation between borrowers** (see [`Isolation`]), skipped
//!   when the borrower did not use the connection.
//! * **A capacity check** that warns when one pool would take too large a
//!   share of the server's `max_connections` ([`check_pool_capacity`]).
//! * **TLS** behind the `tls` feature (the driver's `native-tls`) or the
//!   `rustls` feature (the driver's rustls, no OpenSSL), see the `tls`
//!   module and [`MysqlManager::from_url`]. The driver cannot have both.
//!
//! The driver is built lean: `default-features = false` with the pure-Rust
//! compression backend only (`minimal-rust`), no TLS unless the `tls` or
//! `rustls` feature is on.
//!
//! Passwords never appear in this crate's `Debug` output, errors or log lines.

// One `unsafe` block: borrowing the socket a `mysql::Conn` owns, which the
// driver lends only as a raw descriptor (see `socket`).
#![deny(unsafe_code)]
#![warn(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly): badge the items behind features.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod capacity;
mod connection;
mod credentials;
mod error;
mod session;
#[cfg(any(feature = "tls", feature = "rustls"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "tls", feature = "rustls"))))]
pub mod tls;
mod transaction;

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use mysql::consts::CapabilityFlags;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};
use pool_core::deadline;
use pool_core::url_params::{url_error, PoolParams};
use pool_core::ManageConnection;
use session::ResetPlan;

pub use capacity::{check_capacity, check_pool_capacity, Capacity};
pub use connection::MysqlConnection;
pub use error::{is_broken_error, is_connection_error, Error};
pub use mysql;
pub use transaction::Transaction;

// The pool's own types, so that this crate alone names everything a
// program needs (the pool's error is `PoolError`: `Error` here is the
// driver's).
pub use pool_core::{Builder, Error as PoolError, Pool, PooledConnection, State};

/// A pool of MySQL / MariaDB connections.
///
/// ```
/// use pool_mysql::{MysqlPool, MysqlPooledConnection};
///
/// struct Repo {
///     pool: MysqlPool,
/// }
///
/// impl Repo {
///     fn conn(&self) -> Result<MysqlPooledConnection<'_>, pool_mysql::PoolError> {
///         self.pool.get()
///     }
/// }
/// ```
pub type MysqlPool = Pool<MysqlManager>;

/// A connection borrowed from a [`MysqlPool`] (`'a`: the pool handle it
/// came from; `MysqlPooledConnection<'static>` from [`Pool::get_owned`]).
pub type MysqlPooledConnection<'a> = PooledConnection<'a, MysqlManager>;

/// Connect timeout applied when the options set none: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive idle time applied when the options set none: 60 s.
pub const DEFAULT_KEEPALIVE_TIME: Duration = Duration::from_secs(60);
/// TCP user timeout applied when the options set none: 30 s. Data (or
/// keepalive probes) the server has not acknowledged for this long end the
/// connection, so a query on a network that black-holes its packets fails
/// instead of hanging (see `docs/faults.md`).
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time limit of the session reset run when a connection comes back: 5 s.
pub const DEFAULT_RESET_TIMEOUT: Duration = Duration::from_secs(5);
/// Default share of the server's connections one pool may take before
/// [`check_capacity`] warns: 50 %.
pub const DEFAULT_CAPACITY_SHARE: f64 = 0.5;

/// The query parameters the `mysql` driver understands in a URL (besides the
/// pool parameters of [`pool_core::url_params`]).
///
/// The driver's own pool parameters (`pool_min`, `pool_max`,
/// `reset_connection`, `check_health`) are not listed: they configure
/// `mysql::Pool`, which is not used here, so they are rejected rather than
/// silently ignored.
pub const DRIVER_URL_PARAMS: &[&str] = &[
    "user",
    "password",
    "host",
    "port",
    "socket",
    "db_name",
    "prefer_socket",
    "enable_cleartext_plugin",
    "secure_auth",
    "tcp_keepalive_time_ms",
    "tcp_keepalive_probe_interval_secs",
    "tcp_keepalive_probe_count",
    "tcp_user_timeout_ms",
    "compress",
    "tcp_connect_timeout_ms",
    "stmt_cache_size",
    "max_allowed_packet",
    "cipher_suites",
    "cert_chain_path",
    "priv_key_path",
    "pkcs12_path",
    "pkcs12_pass",
    "root_cert_path",
    "danger_skip_domain_validation",
    "danger_accept_invalid_certs",
];

/// What is undone when a connection comes back to the pool, so that the next
/// borrower finds the session as a fresh connection would be.
///
/// Whatever the policy, nothing is sent when the borrower did not use the
/// connection (see [`MysqlConnection::was_used`]): a borrow that ends
/// without a statement costs no round trip.
///
/// ```
/// use pool_mysql::{Isolation, MysqlManager};
/// let (manager, _) = MysqlManager::from_url("mysql://app@localhost/app")?;
/// let manager = manager.isolation(Isolation::Rollback);
/// assert_eq!(manager.get_isolation(), Isolation::Rollback);
/// # Ok::<(), pool_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Nothing is reset: the next borrower may find an open transaction,
    /// changed session variables, user variables, temporary tables, held
    /// locks and prepared statements left by the previous one.
    None,
    /// Ends any transaction the borrower left open (`ROLLBACK`, one round
    /// trip), and nothing else: session and user variables (including
    /// `autocommit`), temporary tables, `GET_LOCK` locks, `LOCK TABLES` and
    /// prepared statements carry over.
    ///
    /// With [session tracking](MysqlManager::track_session_state) the
    /// `ROLLBACK` is sent only when the server last reported an open
    /// transaction, or when the pool cannot tell (see [`Isolation::Full`]).
    Rollback,
    /// Everything a borrower can leave in the session is undone (the
    /// default): open transactions are rolled back, table locks
    /// (`LOCK TABLES`) and user-level locks (`GET_LOCK`) released, temporary
    /// tables dropped, session variables reset to their global values, user
    /// variables cleared, prepared statements closed (the driver's statement
    /// cache is cleared with them), and `LAST_INSERT_ID()` reset; the
    /// options' `init` statements run again.
    ///
    /// How: `COM_RESET_CONNECTION` ([`mysql::Conn::reset`], which also runs
    /// the options' `init` statements again; on servers without it, MySQL
    /// before 5.7.3 and MariaDB before 10.2.4, the driver falls back to
    /// `COM_CHANGE_USER`), then, as one more statement, what that reset
    /// leaves in place:
    ///
    /// * `USE` of the database named in the options: the reset keeps a
    ///   borrower's `USE other` (with no database in the options there is
    ///   nothing to go back to, so name one);
    /// * on MariaDB, when the user has any role granted, `SET ROLE` back to
    ///   the role active at login (found out once, when the connection is
    ///   opened): a borrower's `SET ROLE` survives the reset.
    ///
    /// Not `COM_CHANGE_USER`, although it also selects the database again:
    /// MariaDB answers it with an authentication switch (a fresh scramble),
    /// so it takes two round trips as well, costs the server a password
    /// check, and fails after a password change or with authentication
    /// plugins that cannot answer again.
    ///
    /// Cost of that full reset: two round trips (one more per `init`
    /// statement).
    ///
    /// # Only what the loan left
    ///
    /// The full reset runs only when a loan may have left something it
    /// undoes. The manager asks the server to report session state
    /// (`CLIENT_SESSION_TRACK`, with `session_track_state_change`,
    /// `session_track_schema`, `session_track_system_variables = '*'` and
    /// `session_track_transaction_info = 'STATE'`: one more query per
    /// connect), reads the report in the OK packet of every statement run
    /// through [`MysqlConnection`]'s [`Queryable`] methods, and reads each
    /// statement's text for what the server does not report. When the
    /// connection comes back:
    ///
    /// | The loan                                                        | Reset                               |
    /// |-----------------------------------------------------------------|-------------------------------------|
    /// | ran no statement, or only plain ones that changed nothing (transactions through [`MysqlConnection::start_transaction`] included, once committed or rolled back) | none: no round trip |
    /// | left only a transaction open (`BEGIN`, then plain statements)   | `ROLLBACK`: one round trip          |
    /// | inserted into an `AUTO_INCREMENT` column                         | `DO LAST_INSERT_ID(0)`, in the same round trip |
    /// | changed anything else the server reports (`SET`, `SET @var`, `USE`, temporary tables, SQL `PREPARE`, `SET ROLE`, `LOCK TABLES`) | the full reset |
    /// | ran a statement that is not plain, failed a statement, used `query_iter`/`exec_iter`, or reached the inner `Conn` through `DerefMut` (`select_db`, `ping`, the `Conn`'s own `start_transaction`, …) | the full reset |
    ///
    /// A statement is *plain* when its text is a single statement that calls
    /// no function but common built-in ones (`COUNT`, `COALESCE`, `NOW`,
    /// `CONCAT`, `CONNECTION_ID`, …), names no user variable (`@v`), and
    /// does not use `GET_LOCK`, `LAST_INSERT_ID`, `CALL`, `HANDLER`, `XA`,
    /// `FLUSH`, `SET TRANSACTION` or sequences: the server reports none of
    /// those (MariaDB 10.11 reports
    /// neither user-level locks, nor `:=` or `INTO @v` assignments, nor
    /// `LAST_INSERT_ID(n)`), and a statement that returns rows ends with a
    /// packet that carries no report, so what a stored function does while
    /// computing them would go unseen. A prepared statement is plain when
    /// it was prepared through `MysqlConnection` from plain text.
    ///
    /// Two things remain unseen, and need
    /// [`MysqlConnection::mark_session_changed`] on the loan (or
    /// [`MysqlManager::track_session_state`]`(false)`, which resets every
    /// used connection in full): a **view** whose definition calls a stored
    /// function that changes session state, and a **trigger** that takes a
    /// user-level lock or sets a user variable.
    ///
    /// What each policy costs per borrow (the `mysql_isolation_cost`
    /// example) is in `docs/performance.md`. A
    /// [reset time limit](MysqlManager::reset_timeout) costs three
    /// `setsockopt` calls.
    /// The reset runs off the borrower's thread (see
    /// `ManageConnection::background_reset`): with more connections than busy
    /// borrowers, a borrower does not wait for it. A borrow that runs no
    /// statement has nothing to reset: it costs the same with any policy.
    #[default]
    Full,
}

/// A [`ManageConnection`] for MySQL and MariaDB: opens [`MysqlConnection`]s
/// with [`mysql::Opts`].
///
/// ```no_run
/// use pool_mysql::MysqlManager;
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let opts = mysql::OptsBuilder::new()
///     .ip_or_hostname(Some("db.internal"))
///     .user(Some("app"))
///     .pass(Some("secret"))
///     .db_name(Some("orders"));
/// let pool = pool_core::Pool::builder()
///     .name("orders")
///     .max_size(8)
///     .connection_timeout(Duration::from_secs(2))
///     .build(MysqlManager::new(opts))?;
/// # let _ = pool; Ok(()) }
/// ```
///
/// Its `Debug` output never shows the password:
///
/// ```
/// let (manager, _) = pool_mysql::MysqlManager::from_url("mysql://app:s3cret@db/orders")?;
/// let debug = format!("{manager:?}");
/// assert!(!debug.contains("s3cret"));
/// assert!(debug.contains("app"));
/// # Ok::<(), pool_core::Error>(())
/// ```
#[derive(Clone)]
pub struct MysqlManager {
    opts: Opts,
    isolation: Isolation,
    reset_timeout: Option<Duration>,
    capacity_share: f64,
    track_session_state: bool,
    target: String,
    credentials: Option<pool_core::SharedCredentials>,
}

impl MysqlManager {
    /// A manager that connects with `opts`.
    ///
    /// Fills in what `opts` leaves unset: a TCP connect timeout of
    /// [`DEFAULT_CONNECT_TIMEOUT`] and a TCP keepalive time of
    /// [`DEFAULT_KEEPALIVE_TIME`]. The connect timeout bounds the whole
    /// connect: the driver applies it to the TCP handshake only, so the
    /// manager runs the connect on a helper thread and gives up after it.
    ///
    /// Note the driver's `prefer_socket` option (on by default): for a
    /// loopback address it reconnects through the server's Unix socket.
    /// [`from_url`](Self::from_url) turns it off unless the URL asks for it.
    ///
    /// ```
    /// use pool_mysql::{MysqlManager, DEFAULT_CONNECT_TIMEOUT};
    ///
    /// let manager = MysqlManager::new(mysql::OptsBuilder::new().user(Some("app")));
    /// assert_eq!(manager.opts().get_tcp_connect_timeout(), Some(DEFAULT_CONNECT_TIMEOUT));
    /// assert_eq!(manager.opts().get_tcp_keepalive_time_ms(), Some(60_000));
    /// ```
    pub fn new(opts: impl Into<Opts>) -> Self {
        Self::with_defaults(opts.into(), true)
    }

    fn with_defaults(opts: Opts, default_connect_timeout: bool) -> Self {
        let mut builder = OptsBuilder::from_opts(opts.clone());
        if default_connect_timeout && opts.get_tcp_connect_timeout().is_none() {
            builder = builder.tcp_connect_timeout(Some(DEFAULT_CONNECT_TIMEOUT));
        }
        if opts.get_tcp_keepalive_time_ms().is_none() {
            let ms = u32::try_from(DEFAULT_KEEPALIVE_TIME.as_millis()).unwrap_or(u32::MAX);
            builder = builder.tcp_keepalive_time_ms(Some(ms));
        }
        if opts.get_tcp_user_timeout_ms().is_none() {
            let ms = u32::try_from(DEFAULT_TCP_USER_TIMEOUT.as_millis()).unwrap_or(u32::MAX);
            builder = builder.tcp_user_timeout_ms(Some(ms));
        }
        let opts: Opts = builder.into();
        let target = match opts.get_socket() {
            Some(socket) => socket.to_owned(),
            None => format!("{}:{}", opts.get_ip_or_hostname(), opts.get_tcp_port()),
        };
        MysqlManager {
            opts,
            isolation: Isolation::default(),
            reset_timeout: Some(DEFAULT_RESET_TIMEOUT),
            capacity_share: DEFAULT_CAPACITY_SHARE,
            track_session_state: true,
            target,
            credentials: None,
        }
    }

    /// Parses a `mysql://` URL into a manager, and returns the pool settings
    /// found in it (see [`pool_core::url_params`]); apply them with
    /// [`PoolParams::apply`].
    ///
    /// `connect_timeout` (seconds, fractions allowed, `0` for none) sets the
    /// connect timeout. `prefer_socket` is off unless the URL turns it on.
    /// With the `tls` or `rustls` feature, any TLS parameter
    /// (`root_cert_path`, `danger_accept_invalid_certs`, …) makes TLS
    /// required.
    ///
    /// Errors name the offending parameter; they show the URL only with its
    /// password replaced by `***`.
    ///
    /// ```
    /// use pool_mysql::MysqlManager;
    /// use std::time::Duration;
    ///
    /// let (manager, params) = MysqlManager::from_url(
    ///     "mysql://app:secret@db.internal:3307/orders?connection_limit=4&connect_timeout=1.5&compress=true",
    /// )?;
    /// assert_eq!(params.max_size, Some(4));
    /// assert_eq!(manager.opts().get_tcp_connect_timeout(), Some(Duration::from_millis(1500)));
    /// assert_eq!(manager.opts().get_tcp_port(), 3307);
    ///
    /// let err = MysqlManager::from_url("mysql://app:secret@db/orders?pool_max=4").unwrap_err();
    /// assert!(err.to_string().contains("pool_max"));
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn from_url(url: &str) -> Result<(Self, PoolParams), pool_core::Error> {
        let (driver_url, params) = PoolParams::extract(url, DRIVER_URL_PARAMS)?;
        let opts = Opts::from_url(&driver_url).map_err(|e| url_error(&driver_url, &e))?;
        let mut builder = OptsBuilder::from_opts(opts);
        if let Some(Some(timeout)) = params.connect_timeout {
            builder = builder.tcp_connect_timeout(Some(timeout));
        }
        if !has_param(&driver_url, "prefer_socket") {
            builder = builder.prefer_socket(false);
        }
        let manager = Self::with_defaults(builder.into(), params.connect_timeout.is_none());
        Ok((manager, params))
    }

    /// Sets what is undone when a connection comes back (default
    /// [`Isolation::Full`]).
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Sets the time limit of the session reset run when a used connection
    /// comes back (default [`DEFAULT_RESET_TIMEOUT`]). A reset that does not
    /// finish in time closes the connection.
    ///
    /// The socket keeps the limit: its read timeout (`SO_RCVTIMEO`) is set
    /// to the time left before each step of the reset and put back to the
    /// options' `read_timeout` after it, on whichever thread resets. A reply
    /// that does not come in time fails the reset with [`Error::Timeout`].
    ///
    /// * While nobody waits for a connection, the pool resets on its
    ///   background thread (the borrower's `drop` does not wait); the pool's
    ///   housekeeper also gives the connection's seat up once the limit has
    ///   passed (see `ManageConnection::reset_limit`).
    /// * While others wait (a saturated pool), or always with
    ///   `Builder::reset_in_background(false)`, the returning thread resets
    ///   and waits at most about the limit.
    ///
    /// `None` trusts the network: a reset then waits as long as the server
    /// does (a black-holed connection can block it for many minutes), and a
    /// background reset keeps its connection's seat that long. It saves
    /// the `setsockopt` calls (two per reset, three for a `Full` one that
    /// restores a database or role).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let (manager, _) = pool_mysql::MysqlManager::from_url("mysql://app@db/app")?;
    /// let manager = manager.reset_timeout(Some(Duration::from_secs(2)));
    /// assert_eq!(manager.get_reset_timeout(), Some(Duration::from_secs(2)));
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn reset_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.reset_timeout = timeout;
        self
    }

    /// Sets the share of the server's connections one pool may take before
    /// [`check_pool_capacity`] logs a warning (default
    /// [`DEFAULT_CAPACITY_SHARE`], 50 %). Values are clamped to `0.0..=1.0`.
    pub fn capacity_share(mut self, share: f64) -> Self {
        self.capacity_share = if share.is_nan() {
            DEFAULT_CAPACITY_SHARE
        } else {
            share.clamp(0.0, 1.0)
        };
        self
    }

    /// Whether to ask the server to report session state, and reset a used
    /// connection only as far as the reports and the statements' text show
    /// it needs (default `true`; see [`Isolation::Full`]). `false` resets
    /// every used connection with the whole policy, as if anything could
    /// have been left: for programs whose stored functions or triggers
    /// change session state without a report (see the limits in
    /// [`Isolation::Full`]), when marking those loans with
    /// [`MysqlConnection::mark_session_changed`] is not practical.
    ///
    /// ```
    /// let (manager, _) = pool_mysql::MysqlManager::from_url("mysql://app@db/app")?;
    /// assert!(manager.get_track_session_state());
    /// let manager = manager.track_session_state(false);
    /// assert!(!manager.get_track_session_state());
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn track_session_state(mut self, track: bool) -> Self {
        self.track_session_state = track;
        self
    }

    /// Whether session state is tracked (see
    /// [`track_session_state`](Self::track_session_state)).
    pub fn get_track_session_state(&self) -> bool {
        self.track_session_state
    }

    /// The isolation policy.
    pub fn get_isolation(&self) -> Isolation {
        self.isolation
    }

    /// The capacity share (see [`capacity_share`](Self::capacity_share)).
    pub fn get_capacity_share(&self) -> f64 {
        self.capacity_share
    }

    /// The reset time limit (see [`reset_timeout`](Self::reset_timeout)).
    pub fn get_reset_timeout(&self) -> Option<Duration> {
        self.reset_timeout
    }

    /// The driver options, with the defaults filled in.
    pub fn opts(&self) -> &Opts {
        &self.opts
    }

    /// Runs `op` on the connection with each wait for the server bounded by
    /// what is left of `limit`, on this thread (see [`Limit`]). Any failure
    /// marks the connection broken; one caused by the limit is an
    /// [`Error::Timeout`].
    fn with_limit<T>(
        &self,
        conn: &mut MysqlConnection,
        limit: Option<Duration>,
        operation: &'static str,
        op: impl FnOnce(&mut Conn, &Limit) -> mysql::Result<T>,
    ) -> Result<T, Error> {
        let c = conn.conn_mut();
        let limit = limit.map(Limit::starting_now);
        let result = match &limit {
            None => op(c, &Limit::NONE),
            Some(l) => l
                .arm(c)
                .and_then(|()| op(c, l))
                // Back to the options' own read timeout for the borrowers.
                .and_then(|value| Limit::disarm(c, self.opts.get_read_timeout()).map(|()| value)),
        };
        result.map_err(|e| {
            conn.set_broken();
            match limit {
                Some(l) if Limit::is_timeout(&e) => Error::Timeout {
                    operation,
                    after: l.limit,
                    target: self.target.clone(),
                },
                _ => Error::Mysql(e),
            }
        })
    }
}

/// The socket `c` talks to the server through, borrowed for as long as `c`
/// is: `mysql::Conn` lends it only as a raw descriptor (`AsRawFd`, no
/// `AsFd`).
#[allow(unsafe_code)]
fn socket(c: &Conn) -> BorrowedFd<'_> {
    // SAFETY: `borrow_raw` needs the descriptor to stay open while the
    // `BorrowedFd` lives, and not to be -1. `Conn::as_raw_fd` returns the
    // descriptor of the socket the `Conn` owns (mysql 28: its
    // `stream: Option<MySyncFramed<Stream>>` field, a std `TcpStream` or
    // `UnixStream`, inside a TLS stream with `tls`; it panics rather than
    // return a number when there is no stream). The driver closes that socket
    // only when the `Conn` is dropped, and replaces it only through
    // `&mut Conn` (the TLS upgrade, inside `Conn::new`). The returned
    // `BorrowedFd<'_>` keeps `c` borrowed, so neither can happen while it
    // lives; an open std socket's descriptor is never -1. Recheck this when
    // upgrading `mysql`.
    unsafe { BorrowedFd::borrow_raw(c.as_raw_fd()) }
}

/// A time limit on a call to the server, kept on the calling thread by the
/// socket's read timeout ([`deadline::limit_socket_reads`]), the way JDBC's
/// `setNetworkTimeout` keeps it: a thread hand-off each way, which a helper
/// thread would cost, is a large share of a round trip on a busy machine.
///
/// The socket bounds each wait for data, so a call of several steps
/// [`arm`](Self::arm)s it with the time left before each step; within one
/// step (a reset with `init` statements, or an authentication exchange on
/// old servers) each reply may take up to that. A read that times out
/// leaves the driver mid-reply: the connection is then broken and closed.
struct Limit {
    limit: Duration,
    due: Option<Instant>,
}

impl Limit {
    /// No limit: [`arm`](Self::arm) does nothing.
    const NONE: Limit = Limit {
        limit: Duration::ZERO,
        due: None,
    };

    fn starting_now(limit: Duration) -> Limit {
        Limit {
            limit,
            due: Instant::now().checked_add(limit),
        }
    }

    /// Sets the socket's read timeout to the time left; fails as a timed-out
    /// read would when none is left.
    fn arm(&self, c: &Conn) -> mysql::Result<()> {
        let Some(due) = self.due else {
            return Ok(());
        };
        let left = due.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no time left").into());
        }
        deadline::limit_socket_reads(&socket(c), Some(left))?;
        Ok(())
    }

    /// Gives the socket its read timeout from the options back.
    fn disarm(c: &Conn, timeout: Option<&Duration>) -> mysql::Result<()> {
        deadline::limit_socket_reads(&socket(c), timeout.copied())?;
        Ok(())
    }

    /// Whether `e` is a read that waited past the limit (or found none left).
    fn is_timeout(e: &mysql::Error) -> bool {
        use mysql_common::proto::codec::error::PacketCodecError;
        let io = match e {
            mysql::Error::IoError(io) | mysql::Error::CodecError(PacketCodecError::Io(io)) => io,
            _ => return false,
        };
        matches!(
            io.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    }
}

/// Opens a connection and works out what [`Isolation::Full`]'s
/// `COM_RESET_CONNECTION` leaves behind that the reset must restore:
///
/// * the database named in the options (the reset keeps a borrower's
///   `USE`);
/// * on MariaDB, the role active at login (a borrower's `SET ROLE` survives
///   the reset) when the user has any role to switch to.
///
/// (Only for [`Isolation::Full`]: costs one or two queries per connect.)
///
/// With `track`, also turns on the server's session-state reports
/// (`session::TRACKING_SQL`, one more query) and returns whether the server
/// sends them; the full reset then turns them on again.
fn open(opts: Opts, full_isolation: bool, track: bool) -> mysql::Result<(Conn, String, bool)> {
    let opts = if track {
        let capabilities =
            opts.get_additional_capabilities() | CapabilityFlags::CLIENT_SESSION_TRACK;
        OptsBuilder::from_opts(opts)
            .additional_capabilities(capabilities)
            .into()
    } else {
        opts
    };
    let mut conn = Conn::new(opts.clone())?;
    let mut restore = Vec::new();
    let mut tracked = false;
    if track {
        match conn.query_drop(session::TRACKING_SQL) {
            Ok(()) => tracked = session::reports_state(&conn),
            // A server without these variables (before MySQL 5.7 and
            // MariaDB 10.2): every used connection is then reset in full.
            Err(mysql::Error::MySqlError(e)) => {
                log::debug!(
                    "session state is not tracked ({}): resetting every used connection",
                    e.message
                );
            }
            Err(e) => return Err(e),
        }
        if tracked {
            restore.push(session::TRACKING_SQL.to_owned());
        }
    }
    if !full_isolation {
        return Ok((conn, String::new(), tracked));
    }
    // (`Conn::server_version` reports MariaDB's "5.5.5-" compatibility prefix.)
    let version: Option<String> = conn.query_first("SELECT VERSION()")?;
    let mariadb = version.is_some_and(|v| v.contains("MariaDB"));
    if mariadb {
        let row: Option<(Option<String>, i64)> = conn.query_first(
            "SELECT CURRENT_ROLE(), (SELECT COUNT(*) FROM information_schema.APPLICABLE_ROLES)",
        )?;
        if let Some((role, roles)) = row {
            if roles > 0 {
                restore.push(match role {
                    Some(role) => format!("SET ROLE {}", quote_ident(&role)),
                    None => "SET ROLE NONE".to_owned(),
                });
            }
        }
    }
    if let Some(db) = opts.get_db_name() {
        restore.push(format!("USE {}", quote_ident(db)));
    }
    Ok((conn, restore.join("; "), tracked))
}

/// Quotes an identifier with backticks (backticks doubled).
fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Whether `url`'s query string has parameter `name`.
fn has_param(url: &str, name: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(name))
    })
}

/// Parses `url` into a pool builder carrying the URL's pool settings and a
/// manager: the usual way to start.
///
/// The builder starts from the pool's defaults with the URL's settings
/// applied, so settings made on it afterwards override the URL. For the
/// opposite, use [`MysqlManager::from_url`] and apply the returned
/// [`PoolParams`] to your own builder.
///
/// ```no_run
/// use std::time::Duration;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let url = std::env::var("DATABASE_URL")?; // e.g. mysql://app:pw@db/app?connection_limit=8
/// let (builder, manager) = pool_mysql::builder_from_url(&url)?;
/// let pool = builder.leak_detection_threshold(Some(Duration::from_secs(30))).build(manager)?;
/// # let _ = pool; Ok(()) }
/// ```
pub fn builder_from_url(url: &str) -> Result<(Builder, MysqlManager), pool_core::Error> {
    let (manager, params) = MysqlManager::from_url(url)?;
    Ok((params.apply(Pool::builder()), manager))
}

/// Builds a pool from `url` (see [`builder_from_url`]) and checks its size
/// against the server's `max_connections` ([`check_pool_capacity`], which
/// only logs).
///
/// ```no_run
/// # fn main() -> Result<(), pool_core::Error> {
/// let pool = pool_mysql::pool_from_url("mysql://app:pw@db/app?connection_limit=8&pool_name=app")?;
/// assert_eq!(pool.name(), "app");
/// # Ok(()) }
/// ```
pub fn pool_from_url(url: &str) -> Result<Pool<MysqlManager>, pool_core::Error> {
    let (builder, manager) = builder_from_url(url)?;
    let pool = builder.build(manager)?;
    check_pool_capacity(&pool);
    Ok(pool)
}

impl ManageConnection for MysqlManager {
    type Connection = MysqlConnection;
    type Error = Error;

    fn connect(&self) -> Result<MysqlConnection, Error> {
        let full = self.isolation == Isolation::Full;
        let track = self.track_session_state && self.isolation != Isolation::None;
        let opts = self.login_opts()?;
        let (conn, restore, tracked) = match opts.get_tcp_connect_timeout() {
            None => open(opts, full, track)?,
            Some(limit) => {
                // Every read of the login waits at most the limit, so a
                // connect to a server that stopped answering really ends
                // (its socket closed) instead of logging in whenever the
                // server wakes up. The options' own read timeout comes
                // back once the login is done.
                let own_read_timeout = opts.get_read_timeout().copied();
                let opts: Opts = OptsBuilder::from_opts(opts)
                    .read_timeout(Some(own_read_timeout.map_or(limit, |t| t.min(limit))))
                    .into();
                let login = move || {
                    let (conn, restore, tracked) = open(opts, full, track)?;
                    Limit::disarm(&conn, own_read_timeout.as_ref())?;
                    Ok::<_, mysql::Error>((conn, restore, tracked))
                };
                match deadline::run(limit, login) {
                    Ok(Err(e)) if Limit::is_timeout(&e) => {
                        return Err(Error::Timeout {
                            operation: "connecting",
                            after: limit,
                            target: self.target.clone(),
                        })
                    }
                    Ok(result) => result?,
                    Err(deadline::Missed::TimedOut) => {
                        return Err(Error::Timeout {
                            operation: "connecting",
                            after: limit,
                            target: self.target.clone(),
                        })
                    }
                    Err(deadline::Missed::Failed) => {
                        return Err(Error::Worker {
                            operation: "connecting",
                        })
                    }
                }
            }
        };
        Ok(MysqlConnection::new(conn, restore, tracked))
    }

    fn is_valid(&self, conn: &mut MysqlConnection, timeout: Duration) -> Result<(), Error> {
        self.with_limit(conn, Some(timeout), "validating the connection", |c, _| {
            c.ping()
        })
    }

    fn has_broken(&self, conn: &mut MysqlConnection) -> bool {
        conn.is_broken()
    }

    /// See [`is_broken_error`]: the driver's connection errors, found along
    /// the error's source chain.
    fn is_broken_error(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        is_broken_error(error)
    }

    /// The TCP connect timeout (`tcp_connect_timeout_ms`, or `connect_timeout`
    /// in the URL; [`DEFAULT_CONNECT_TIMEOUT`] unless the options set one)
    /// bounds the whole connect, login included.
    fn connect_limit(&self) -> Option<Duration> {
        self.opts.get_tcp_connect_timeout()
    }

    fn connect_timed_out(&self, limit: Duration) -> Option<Error> {
        Some(Error::Timeout {
            operation: "connecting",
            after: limit,
            target: self.target.clone(),
        })
    }

    fn classify_connect_error(&self, error: &Error) -> pool_core::ConnectFailure {
        error.connect_failure()
    }

    /// Only a borrower that sent something can have left session state, and
    /// with the server's reports only one that left something they show
    /// (see [`Isolation::Full`]).
    fn needs_reset(&self, conn: &mut MysqlConnection) -> bool {
        let (session, tracked) = (conn.session(), conn.is_tracked());
        match self.isolation {
            Isolation::None => false,
            Isolation::Rollback => session.needs_rollback(tracked),
            Isolation::Full => session.full_plan(tracked) != ResetPlan::Nothing,
        }
    }

    /// The session reset is a round trip: off the borrower's path.
    fn background_reset(&self) -> bool {
        self.isolation != Isolation::None
    }

    /// The [reset time limit](Self::reset_timeout), kept by the pool for
    /// background resets.
    fn reset_limit(&self) -> Option<Duration> {
        self.reset_timeout
    }

    fn reset(&self, conn: &mut MysqlConnection) -> Result<(), Error> {
        if !self.needs_reset(conn) {
            conn.mark_clean();
            return Ok(());
        }
        let operation = "resetting the session";
        let plan = conn.session().full_plan(conn.is_tracked());
        match (self.isolation, plan) {
            (Isolation::None, _) | (Isolation::Full, ResetPlan::Nothing) => {
                unreachable!("needs_reset is false")
            }
            (Isolation::Rollback, _) => {
                self.with_limit(conn, self.reset_timeout, operation, |c, _| {
                    c.query_drop("ROLLBACK")
                })?
            }
            (
                Isolation::Full,
                ResetPlan::Light {
                    rollback,
                    insert_id,
                },
            ) => {
                let sql = match (rollback, insert_id) {
                    (true, true) => "ROLLBACK; DO LAST_INSERT_ID(0)",
                    (true, false) => "ROLLBACK",
                    (false, _) => "DO LAST_INSERT_ID(0)",
                };
                self.with_limit(conn, self.reset_timeout, operation, |c, _| {
                    c.query_drop(sql)
                })?
            }
            (Isolation::Full, ResetPlan::Full) => {
                // The reset closes every statement of the session, and the
                // server may hand their ids out again.
                conn.forget_statements();
                let restore = conn.restore_sql().to_owned();
                self.with_limit(conn, self.reset_timeout, operation, |c, limit| {
                    // `COM_RESET_CONNECTION`, then the options' `init`
                    // statements again.
                    c.reset()?;
                    if restore.is_empty() {
                        return Ok(());
                    }
                    limit.arm(c)?;
                    c.query_drop(restore)
                })?
            }
        }
        conn.mark_clean();
        Ok(())
    }
}

impl fmt::Debug for MysqlManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `mysql::Opts`'s own Debug output shows the password: list the
        // useful options by hand.
        let o = &self.opts;
        f.debug_struct("MysqlManager")
            .field("target", &self.target)
            .field("user", &o.get_user())
            .field("password", &o.get_pass().map(|_| "***"))
            .field("db_name", &o.get_db_name())
            .field("tcp_connect_timeout", &o.get_tcp_connect_timeout())
            .field("tcp_keepalive_time_ms", &o.get_tcp_keepalive_time_ms())
            .field("prefer_socket", &o.get_prefer_socket())
            .field("tls", &o.get_ssl_opts().is_some())
            .field("isolation", &self.isolation)
            .field("reset_timeout", &self.reset_timeout)
            .field("capacity_share", &self.capacity_share)
            .field("track_session_state", &self.track_session_state)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "provider"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_filled_in() {
        let m = MysqlManager::new(OptsBuilder::new());
        assert_eq!(
            m.opts().get_tcp_connect_timeout(),
            Some(DEFAULT_CONNECT_TIMEOUT)
        );
        assert_eq!(m.opts().get_tcp_keepalive_time_ms(), Some(60_000));
        assert_eq!(m.opts().get_tcp_user_timeout_ms(), Some(30_000));
        assert_eq!(m.get_isolation(), Isolation::Full);
        assert_eq!(m.get_reset_timeout(), Some(DEFAULT_RESET_TIMEOUT));
        assert_eq!(m.target, "localhost:3306");
    }

    #[test]
    fn explicit_options_are_kept() {
        let m = MysqlManager::new(
            OptsBuilder::new()
                .tcp_connect_timeout(Some(Duration::from_secs(9)))
                .tcp_keepalive_time_ms(Some(1000)),
        );
        assert_eq!(
            m.opts().get_tcp_connect_timeout(),
            Some(Duration::from_secs(9))
        );
        assert_eq!(m.opts().get_tcp_keepalive_time_ms(), Some(1000));
    }

    #[test]
    fn url_parameters() {
        let (m, p) = MysqlManager::from_url(
            "mysql://u:pw@h:3307/db?pool_name=orders&connect_timeout=0.25&stmt_cache_size=8&min_idle=1",
        )
        .unwrap();
        assert_eq!(p.name.as_deref(), Some("orders"));
        assert_eq!(p.min_idle, Some(1));
        assert_eq!(
            m.opts().get_tcp_connect_timeout(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(m.opts().get_stmt_cache_size(), 8);
        assert!(!m.opts().get_prefer_socket());
        assert_eq!(m.target, "h:3307");

        let (m, _) = MysqlManager::from_url("mysql://h/db?prefer_socket=true").unwrap();
        assert!(m.opts().get_prefer_socket());
    }

    #[test]
    fn connect_timeout_zero_means_none() {
        let (m, _) = MysqlManager::from_url("mysql://h/db?connect_timeout=0").unwrap();
        assert_eq!(m.opts().get_tcp_connect_timeout(), None);
    }

    #[test]
    fn url_errors_do_not_show_the_password() {
        for url in [
            "mysql://u:hunter2@h/db?compress=sometimes",
            "mysql://u:hunter2@h/db?pool_min=1",
            "postgres://u:hunter2@h/db",
        ] {
            let err = MysqlManager::from_url(url).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = MysqlManager::from_url("mysql://u:hunter2@h/db?compress=sometimes")
            .unwrap_err()
            .to_string();
        assert!(err.contains("compress"), "{err}");
    }

    #[test]
    fn debug_redacts_the_password() {
        let (m, _) = MysqlManager::from_url("mysql://u:hunter2@h/db").unwrap();
        let debug = format!("{m:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
    }

    #[test]
    fn driver_params_are_accepted_by_the_driver() {
        for p in DRIVER_URL_PARAMS {
            let value = match *p {
                "port"
                | "stmt_cache_size"
                | "max_allowed_packet"
                | "tcp_keepalive_time_ms"
                | "tcp_keepalive_probe_interval_secs"
                | "tcp_keepalive_probe_count"
                | "tcp_user_timeout_ms"
                | "tcp_connect_timeout_ms" => "10",
                "prefer_socket"
                | "enable_cleartext_plugin"
                | "secure_auth"
                | "compress"
                | "danger_skip_domain_validation"
                | "danger_accept_invalid_certs" => "true",
                _ => "x",
            };
            let url = format!("mysql://h/db?{p}={value}");
            let result = MysqlManager::from_url(&url);
            let tls_only = matches!(
                *p,
                "cipher_suites"
                    | "cert_chain_path"
                    | "priv_key_path"
                    | "pkcs12_path"
                    | "pkcs12_pass"
            );
            if tls_only {
                // Accepted by our parser; the driver wants its TLS feature
                // (and with rustls, a real cipher suite's name).
                if let Err(e) = result {
                    let e = e.to_string();
                    assert!(
                        e.contains("feature")
                            || (cfg!(feature = "rustls") && e.contains("Invalid value")),
                        "{url}: {e}"
                    );
                }
            } else {
                assert!(result.is_ok(), "{url}: {:?}", result.err());
            }
        }
    }

    #[test]
    fn has_param_finds_names() {
        assert!(has_param(
            "mysql://h/db?a=1&prefer_socket=false",
            "prefer_socket"
        ));
        assert!(!has_param("mysql://h/db?a=1", "prefer_socket"));
        assert!(!has_param("mysql://h/db", "prefer_socket"));
    }
}
