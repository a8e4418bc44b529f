// Over 800 lines: the manager, its URL parsing and its unit tests; the tests module
// (about 150 lines) can move to tests/ when the file grows further.
//! PostgreSQL for the [`pool_core`] connection pool, on the synchronous
//! [`postgres`] driver.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Pool settings may travel in the URL (Prisma's names); they are removed
//! // before the driver sees the URL.
//! let pool = pool_postgres::pool_from_url(
//!     "postgres://app:secret@db.internal/orders?connection_limit=8&pool_timeout=2",
//! )?;
//!
//! let mut conn = pool.get()?;
//! let n: i64 = conn.query_one("SELECT count(*) FROM orders", &[])?.get(0);
//! println!("{n} orders");
//! # Ok(()) }
//! ```
//!
//! What the manager adds to a plain `postgres::Client`:
//!
//! * **Sane network defaults** where the configuration does not say
//!   otherwise: a 5 s connect timeout that covers the whole start-up (TCP,
//!   TLS and authentication, not only the TCP handshake), TCP keepalives
//!   after 60 s idle, and an `application_name` (the program's name) so
//!   operators can tell whose connections they see in `pg_stat_activity`.
//! * **Validation with a real time limit** ([`Client::is_valid`]), so a
//!   black-holed connection does not hang a borrower.
//! * **Session isolation between borrowers** (see [`Isolation`]), skipped
//!   when the borrower did not use the connection.
//! * **A connection-error classifier**, [`is_connection_error`], to decide
//!   when to call `mark_broken()`.
//! * **A capacity check** that warns when one pool would take too large a
//!   share of the server's `max_connections` ([`check_pool_capacity`]).
//! * **TLS** behind the `tls` feature (`postgres-native-tls`), see the `tls`
//!   module, or the `rustls` feature (`tokio-postgres-rustls`, no OpenSSL),
//!   see the `rustls` module.
//!
//! Passwords never appear in this crate's `Debug` output, errors or log lines.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly): badge the items behind features.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod capacity;
mod connection;
mod credentials;
mod error;
mod session;
mod statement_cache;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod transaction;

#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod rustls;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use pool_core::deadline;
use pool_core::url_params::{url_error, PoolParams};
use pool_core::ManageConnection;
use postgres::config::Host;
use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::{Client, Socket};
use session::ResetPlan;

pub use capacity::{check_capacity, check_pool_capacity, Capacity};
pub use connection::{PgConnection, Query};
pub use error::{is_broken_error, is_connection_error, Error};
pub use postgres;
pub use postgres::NoTls;
pub use transaction::Transaction;

// The pool's own types, so that this crate alone names everything a
// program needs (the pool's error is `PoolError`: `Error` here is the
// driver's).
pub use pool_core::{Builder, Error as PoolError, Pool, PooledConnection, State};

/// A pool of PostgreSQL connections (`T`: the TLS connector, none by
/// default).
///
/// ```
/// use pool_postgres::{PgPool, PgPooledConnection};
///
/// struct Repo {
///     pool: PgPool,
/// }
///
/// impl Repo {
///     fn conn(&self) -> Result<PgPooledConnection<'_>, pool_postgres::PoolError> {
///         self.pool.get()
///     }
/// }
/// ```
pub type PgPool<T = NoTls> = Pool<PostgresManager<T>>;

/// A connection borrowed from a [`PgPool`] (`'a`: the pool handle it came
/// from; `PgPooledConnection<'static>` from [`Pool::get_owned`]).
pub type PgPooledConnection<'a, T = NoTls> = PooledConnection<'a, PostgresManager<T>>;

/// Connect timeout applied when the configuration sets none: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive idle time applied when the configuration keeps the driver's
/// default of 2 hours: 60 s.
pub const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(60);
/// TCP user timeout applied when the configuration sets none: 30 s. Data
/// (or keepalive probes) the server has not acknowledged for this long end
/// the connection, so a query on a network that black-holes its packets
/// fails instead of hanging (see `docs/faults.md`).
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time limit of the session reset run when a connection comes back: 5 s.
pub const DEFAULT_RESET_TIMEOUT: Duration = Duration::from_secs(5);
/// Default share of the server's connections one pool may take before
/// [`check_capacity`] warns: 50 %.
pub const DEFAULT_CAPACITY_SHARE: f64 = 0.5;
/// Default number of statements [`PgConnection::prepare_cached`] keeps per
/// connection (see [`PostgresManager::statement_cache_size`]).
pub const DEFAULT_STATEMENT_CACHE_SIZE: usize = 100;

/// The query parameters the `postgres` driver understands in a URL (besides
/// the pool parameters of [`pool_core::url_params`]). `connect_timeout` is
/// both: the pool parameter parser takes it (allowing fractions) and the
/// manager applies it.
pub const DRIVER_URL_PARAMS: &[&str] = &[
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// What is undone when a connection comes back to the pool, so that the next
/// borrower finds the session as a fresh connection would be.
///
/// Whatever the policy, nothing is sent when the borrower did not use the
/// connection (see [`PgConnection::was_used`]): a borrow that ends without a
/// statement costs no round trip.
///
/// ```
/// use pool_postgres::{Isolation, PostgresManager};
///
/// let config: postgres::Config = "host=localhost user=app".parse().unwrap();
/// // Behind PgBouncer in transaction pooling mode:
/// let manager = PostgresManager::new(config, postgres::NoTls).isolation(Isolation::Rollback);
/// assert_eq!(manager.get_isolation(), Isolation::Rollback);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Nothing is reset. The next borrower may find an open (or failed)
    /// transaction, changed settings, another role, temporary tables, held
    /// advisory locks, `LISTEN` registrations and prepared statements left by
    /// the previous one. Only for programs that never leave anything behind
    /// and need the last microseconds.
    None,
    /// Ends any transaction the borrower left open or failed
    /// (`ROLLBACK`), and nothing else: session state (`SET`, `SET ROLE`,
    /// temporary tables, advisory locks, `LISTEN`, prepared statements)
    /// carries over to the next borrower.
    ///
    /// This is the policy for **PgBouncer in transaction pooling mode**,
    /// where session state is not supported anyway (each transaction may
    /// run on another server connection) and `DISCARD ALL`-style resets
    /// ([`Isolation::Full`]) are not valid: they would run on whichever
    /// server connection PgBouncer picks, resetting someone else's session
    /// rather than this one's. Rolling back matters there: a transaction left
    /// open pins a server connection. (Also in that mode, outside a
    /// transaction use only single-round-trip calls — `simple_query`,
    /// `batch_execute`, `query_typed` and friends: `query`/`execute` with a
    /// string prepare a named statement in one round trip and run it in
    /// another, which PgBouncer may send to different servers.)
    ///
    /// Cost when the connection was used: one round trip
    /// (`SET LOCAL client_min_messages TO error; BEGIN; ROLLBACK`), two when
    /// the transaction had failed. The `BEGIN` matters: a bare `ROLLBACK`
    /// with no transaction open makes the server write "WARNING: there is no
    /// transaction in progress" to its log (whatever the client's
    /// `client_min_messages`), which would be one log line per loan. With
    /// `BEGIN` first, a clean session's reset logs nothing; a session left
    /// inside a transaction logs one "there is already a transaction in
    /// progress" as its transaction is rolled back.
    ///
    /// With [session tracking](PostgresManager::track_session_state) the
    /// batch is sent only when the loan's statements opened a transaction
    /// without ending it, or when the pool cannot tell (see
    /// [`Isolation::Full`]).
    Rollback,
    /// Everything a borrower can leave in the session is undone
    /// (the default):
    ///
    /// | Left behind                                   | Undone by                          |
    /// |-----------------------------------------------|------------------------------------|
    /// | open or failed transaction                    | `ROLLBACK`                         |
    /// | `SET ROLE`, `SET SESSION AUTHORIZATION`       | `SET SESSION AUTHORIZATION DEFAULT`|
    /// | `SET` of any setting (`search_path`, custom `app.*`, timeouts…) | `RESET ALL`     |
    /// | cursors `WITH HOLD`                           | `CLOSE ALL`                        |
    /// | `LISTEN`                                      | `UNLISTEN *` (and queued notifications are dropped) |
    /// | session advisory locks                        | `pg_advisory_unlock_all()`         |
    /// | temporary tables, sequences, functions        | `DISCARD TEMP`                     |
    /// | `currval`/`lastval` state                     | `DISCARD SEQUENCES`                |
    /// | SQL-level `PREPARE`d statements               | `DEALLOCATE` of each one           |
    ///
    /// This is `DISCARD ALL` except for two deliberate differences:
    ///
    /// * It does not `DEALLOCATE ALL`: that would also drop the
    ///   protocol-level statements the driver prepared and still holds —
    ///   `tokio-postgres` caches the statements it uses to look up custom
    ///   types (enums, composites, domains), and after `DEALLOCATE ALL` the
    ///   first query with a not-yet-seen custom type fails with "prepared
    ///   statement does not exist". Only statements created with SQL
    ///   `PREPARE` (`pg_prepared_statements.from_sql`) are deallocated.
    /// * It can run inside a transaction block, so a transaction left open
    ///   and its reset take one round trip (`DISCARD ALL` refuses to run in
    ///   a transaction block, even the implicit one of a multi-statement
    ///   query, so it would need a separate `ROLLBACK` first).
    ///
    /// Cost of that whole batch: one round trip (two when SQL `PREPARE`d
    /// statements exist or the transaction had failed).
    ///
    /// # Only what the loan left
    ///
    /// The whole batch runs only when a loan may have left something it
    /// undoes (unless [`PostgresManager::track_session_state`] is off). The
    /// `postgres` crate's synchronous client keeps the server's transaction
    /// status and command tags to itself, so the pool reads the text of
    /// every statement sent through [`PgConnection`]'s own methods (`query`,
    /// `query_one`, `query_opt`, `execute`, `simple_query`, `batch_execute`,
    /// `prepare`, `prepare_cached`, `transaction`); a prepared statement is
    /// judged by the text it was prepared from there. When the connection
    /// comes back:
    ///
    /// | The loan | Reset |
    /// |---|---|
    /// | ran no statement, or only plain ones (transactions through [`PgConnection::transaction`] included, once committed or rolled back) | none: no round trip |
    /// | left a transaction open (`BEGIN`, then plain statements) | `ROLLBACK` |
    /// | ran an `INSERT`, or an `UPDATE` setting a column to `DEFAULT` (a default may call `nextval`) | `DISCARD SEQUENCES`, in the same round trip |
    /// | ran anything else (`SET`, `LISTEN`, `PREPARE`, `DECLARE`, `CREATE TEMP`, `DO`, `CALL`, `COPY`, several statements in one text), a statement that failed, or used the client through `DerefMut` | the whole batch |
    ///
    /// A statement is *plain* when its text is one `SELECT`, `WITH`,
    /// `VALUES`, `TABLE`, `UPDATE` or `DELETE` that calls no function but
    /// common built-in ones (`count`, `coalesce`, `now`, `lower`, …; no
    /// `set_config`, `pg_advisory_lock`, `nextval`, nor a function of yours,
    /// nor a schema-qualified call) and has no `INTO`.
    ///
    /// Two things text cannot show, and so need
    /// [`PgConnection::mark_session_changed`] on the loan (or
    /// `track_session_state(false)`, which runs the whole batch after every
    /// used loan): a **view** whose definition calls a function that changes
    /// session state, and a **trigger** that does (`set_config(.., false)`,
    /// a session advisory lock, a temporary table).
    ///
    /// What each policy costs per borrow (the `pg_isolation_cost` example),
    /// and the `Full` batch against `DISCARD ALL` on the server alone, are in
    /// `docs/performance.md`.
    /// The reset runs off the borrower's thread (see
    /// `ManageConnection::background_reset`): with more connections than busy
    /// borrowers, a borrower does not wait for it.
    /// A borrow that runs no statement has nothing to reset: it costs the
    /// same with any policy.
    #[default]
    Full,
}

/// Batch run by [`Isolation::Rollback`].
///
/// A simple query of several statements runs in an implicit transaction.
/// `BEGIN` turns that one into an explicit transaction, which `ROLLBACK` then
/// ends without a word; a bare `ROLLBACK` would end the implicit transaction
/// with "WARNING: there is no transaction in progress", written to the
/// server log at every reset (`client_min_messages` hides it only from the
/// client; `log_min_messages` is for superusers). When the borrower left a
/// transaction open, `BEGIN` warns instead ("already in progress": once, for
/// a session that needed the rollback) and `ROLLBACK` ends the borrower's
/// transaction. `SET LOCAL` keeps that warning from the client and is itself
/// undone by the `ROLLBACK`.
const ROLLBACK_SQL: &str = "SET LOCAL client_min_messages TO error; BEGIN; ROLLBACK";

/// Batch run by [`Isolation::Full`]; it starts like [`ROLLBACK_SQL`] (and for
/// the same reason), and its last statement lists SQL-level prepared
/// statements, deallocated in a second round trip when there are any.
///
/// The list comes from `pg_prepared_statement()`, the function the
/// `pg_prepared_statements` view selects from (the same rows, callable by
/// anyone): the server then skips the view's rewrite and the lock on the
/// view (docs/performance.md, "The `Full` batch on the server").
const FULL_SQL: &str = "SET LOCAL client_min_messages TO error; BEGIN; ROLLBACK; \
    SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; \
    SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES; \
    SELECT s.name AS pool_reset_prepared FROM pg_catalog.pg_prepared_statement() s WHERE s.from_sql";

/// A [`ManageConnection`] for PostgreSQL: opens [`PgConnection`]s with a
/// `postgres::Config` and a TLS connector (`NoTls`, or
/// `tls::MakeTlsConnector` with the `tls` feature).
///
/// ```no_run
/// use pool_postgres::{PostgresManager, NoTls};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = postgres::Config::new();
/// config.host("db.internal").user("app").password("secret").dbname("orders");
/// let manager = PostgresManager::new(config, NoTls);
/// let pool = pool_core::Pool::builder()
///     .name("orders")
///     .max_size(8)
///     .connection_timeout(Duration::from_secs(2))
///     .build(manager)?;
/// # let _ = pool; Ok(()) }
/// ```
///
/// Its `Debug` output shows the configuration with the password replaced by
/// `_`:
///
/// ```
/// use pool_postgres::{PostgresManager, NoTls};
/// let (manager, _) = PostgresManager::from_url("postgres://app:s3cret@db/orders")?;
/// let debug = format!("{manager:?}");
/// assert!(!debug.contains("s3cret"));
/// assert!(debug.contains("app"));
/// # Ok::<(), pool_core::Error>(())
/// ```
#[derive(Clone)]
pub struct PostgresManager<T> {
    config: postgres::Config,
    tls: T,
    isolation: Isolation,
    reset_timeout: Option<Duration>,
    capacity_share: f64,
    target: String,
    credentials: Option<pool_core::SharedCredentials>,
    statement_cache_size: usize,
    track_session_state: bool,
}

impl<T> PostgresManager<T> {
    /// A manager that connects with `config` and `tls`.
    ///
    /// Fills in what `config` leaves unset: a connect timeout of
    /// [`DEFAULT_CONNECT_TIMEOUT`], a TCP keepalive idle time of
    /// [`DEFAULT_KEEPALIVES_IDLE`] (when keepalives are on and their idle time
    /// is the driver's default of 2 hours), and an `application_name` (the
    /// program's file name).
    ///
    /// The connect timeout bounds the whole connect: the driver applies it
    /// to the TCP handshake only, so the manager runs the connect on a
    /// helper thread and gives up after it (per host listed).
    ///
    /// ```
    /// use pool_postgres::{PostgresManager, NoTls, DEFAULT_CONNECT_TIMEOUT};
    ///
    /// let manager = PostgresManager::new("host=db user=app".parse()?, NoTls);
    /// assert_eq!(manager.config().get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
    /// assert!(manager.config().get_keepalives());
    /// assert!(manager.config().get_application_name().is_some());
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn new(config: postgres::Config, tls: T) -> Self {
        Self::with_defaults(config, tls, true, None)
    }

    fn with_defaults(
        mut config: postgres::Config,
        tls: T,
        default_connect_timeout: bool,
        default_application_name: Option<&str>,
    ) -> Self {
        if default_connect_timeout && config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_keepalives()
            && config.get_keepalives_idle() == postgres::Config::new().get_keepalives_idle()
        {
            config.keepalives_idle(DEFAULT_KEEPALIVES_IDLE);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            let name = default_application_name
                .map(str::to_owned)
                .unwrap_or_else(program_name);
            config.application_name(&name);
        }
        let target = describe_target(&config);
        PostgresManager {
            config,
            tls,
            isolation: Isolation::default(),
            reset_timeout: Some(DEFAULT_RESET_TIMEOUT),
            capacity_share: DEFAULT_CAPACITY_SHARE,
            target,
            credentials: None,
            statement_cache_size: DEFAULT_STATEMENT_CACHE_SIZE,
            track_session_state: true,
        }
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
    /// The driver has no per-call timeout, so the limit is kept by the pool
    /// or by a helper thread:
    ///
    /// * The pool resets on a background thread (the borrower's `drop` does
    ///   not wait), which then gives the connection to a waiting borrower
    ///   or makes it idle, and the pool's housekeeper gives the connection
    ///   up once the limit has passed (see `ManageConnection::reset_limit`).
    ///   This holds while others wait too (see
    ///   `ManageConnection::reset_hands_off`).
    /// * With `Builder::reset_in_background(false)`, the returning thread
    ///   resets, through a helper thread (a hand-off each way) so that it
    ///   waits at most the limit.
    ///
    /// `None` trusts the network: a reset on the returning thread then
    /// waits as long as the server does (a black-holed connection can block
    /// it for many minutes), and a background reset keeps its connection's
    /// seat that long. It saves the hand-offs, which cost throughput with
    /// many threads on few connections (figures in `docs/performance.md`).
    ///
    /// ```
    /// # use pool_postgres::{PostgresManager, NoTls};
    /// # use std::time::Duration;
    /// let manager = PostgresManager::new("host=db".parse()?, NoTls)
    ///     .reset_timeout(Some(Duration::from_secs(2)));
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn reset_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.reset_timeout = timeout;
        self
    }

    /// Sets the share of the server's available connections one pool may
    /// take before [`check_pool_capacity`] logs a warning (default
    /// [`DEFAULT_CAPACITY_SHARE`], 50 %). Values are clamped to `0.0..=1.0`.
    pub fn capacity_share(mut self, share: f64) -> Self {
        self.capacity_share = if share.is_nan() {
            DEFAULT_CAPACITY_SHARE
        } else {
            share.clamp(0.0, 1.0)
        };
        self
    }

    /// The isolation policy.
    pub fn get_isolation(&self) -> Isolation {
        self.isolation
    }

    /// Whether to read the text of each statement sent through
    /// [`PgConnection`]'s own methods and reset a used connection only as
    /// far as it shows (default `true`; see [`Isolation::Full`]). `false`
    /// resets every used connection with the whole batch, as if anything
    /// could have been left: for programs whose triggers, or functions that
    /// views call, change session state (see the limits in
    /// [`Isolation::Full`]), when marking those loans with
    /// [`PgConnection::mark_session_changed`] is not practical.
    ///
    /// ```
    /// # use pool_postgres::{PostgresManager, NoTls};
    /// let manager = PostgresManager::new("host=db".parse()?, NoTls);
    /// assert!(manager.get_track_session_state());
    /// let manager = manager.track_session_state(false);
    /// assert!(!manager.get_track_session_state());
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn track_session_state(mut self, track: bool) -> Self {
        self.track_session_state = track;
        self
    }

    /// Whether statements are tracked (see
    /// [`track_session_state`](Self::track_session_state)).
    pub fn get_track_session_state(&self) -> bool {
        self.track_session_state
    }

    /// The capacity share (see [`capacity_share`](Self::capacity_share)).
    pub fn get_capacity_share(&self) -> f64 {
        self.capacity_share
    }

    /// The reset time limit (see [`reset_timeout`](Self::reset_timeout)).
    pub fn get_reset_timeout(&self) -> Option<Duration> {
        self.reset_timeout
    }

    /// The driver configuration, with the defaults filled in.
    pub fn config(&self) -> &postgres::Config {
        &self.config
    }

    /// Parses `url` (a `postgres://` URL or a `key=value` string) into a
    /// manager using `tls`, and returns the pool settings found in it (see
    /// [`pool_core::url_params`]); apply them with [`PoolParams::apply`].
    ///
    /// `connect_timeout` (seconds, fractions allowed, `0` for none) sets the
    /// driver's connect timeout. When the URL sets no `application_name`, the
    /// pool's name (`pool_name`) is used if given, else the program's name.
    ///
    /// Errors name the offending parameter; they show the URL only with its
    /// password replaced by `***`.
    pub fn from_url_with_tls(url: &str, tls: T) -> Result<(Self, PoolParams), pool_core::Error> {
        let (driver_url, params) = PoolParams::extract(url, DRIVER_URL_PARAMS)?;
        let mut config =
            postgres::Config::from_str(&driver_url).map_err(|e| url_error(&driver_url, &e))?;
        if let Some(Some(timeout)) = params.connect_timeout {
            config.connect_timeout(timeout);
        }
        let default_connect_timeout = params.connect_timeout.is_none();
        let manager =
            Self::with_defaults(config, tls, default_connect_timeout, params.name.as_deref());
        Ok((manager, params))
    }

    fn connect_deadline(&self) -> Option<Duration> {
        let per_host = *self.config.get_connect_timeout()?;
        let hosts = self.config.get_hosts().len().max(1);
        Some(per_host.saturating_mul(u32::try_from(hosts).unwrap_or(u32::MAX)))
    }
}

impl PostgresManager<NoTls> {
    /// Parses `url` into a manager without TLS and returns the pool settings
    /// found in it; see [`from_url_with_tls`](Self::from_url_with_tls).
    ///
    /// ```
    /// use pool_postgres::PostgresManager;
    /// use std::time::Duration;
    ///
    /// let (manager, params) = PostgresManager::from_url(
    ///     "postgres://app:secret@db.internal:6432/orders?sslmode=disable&connection_limit=4&connect_timeout=1.5",
    /// )?;
    /// assert_eq!(params.max_size, Some(4));
    /// assert_eq!(manager.config().get_connect_timeout(), Some(&Duration::from_millis(1500)));
    /// assert_eq!(manager.config().get_ports(), &[6432]);
    ///
    /// let err = PostgresManager::from_url("postgres://app:secret@db/orders?conection_limit=4").unwrap_err();
    /// assert!(err.to_string().contains("conection_limit"));
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn from_url(url: &str) -> Result<(Self, PoolParams), pool_core::Error> {
        Self::from_url_with_tls(url, NoTls)
    }
}

/// Parses `url` into a pool builder carrying the URL's pool settings and a
/// manager without TLS: the usual way to start.
///
/// The builder starts from the pool's defaults with the URL's settings
/// applied, so settings made on it afterwards override the URL. For the
/// opposite (settings in code as defaults the URL may override), use
/// [`PostgresManager::from_url`] and apply the returned [`PoolParams`] to
/// your own builder.
///
/// ```no_run
/// use std::time::Duration;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let url = std::env::var("DATABASE_URL")?; // e.g. postgres://app:pw@db/app?connection_limit=8
/// let (builder, manager) = pool_postgres::builder_from_url(&url)?;
/// // The URL's settings are already applied: settings made here override them.
/// let pool = builder.leak_detection_threshold(Some(Duration::from_secs(30))).build(manager)?;
/// # let _ = pool; Ok(()) }
/// ```
pub fn builder_from_url(url: &str) -> Result<(Builder, PostgresManager<NoTls>), pool_core::Error> {
    builder_from_url_with_tls(url, NoTls)
}

/// [`builder_from_url`] with a TLS connector.
pub fn builder_from_url_with_tls<T>(
    url: &str,
    tls: T,
) -> Result<(Builder, PostgresManager<T>), pool_core::Error> {
    let (manager, params) = PostgresManager::from_url_with_tls(url, tls)?;
    Ok((params.apply(Pool::builder()), manager))
}

/// Builds a pool from `url` (see [`builder_from_url`]) and checks its size
/// against the server's `max_connections` ([`check_pool_capacity`], which
/// only logs).
///
/// ```no_run
/// # fn main() -> Result<(), pool_core::Error> {
/// let pool = pool_postgres::pool_from_url("postgres://app:pw@db/app?connection_limit=8&pool_name=app")?;
/// assert_eq!(pool.name(), "app");
/// # Ok(()) }
/// ```
pub fn pool_from_url(url: &str) -> Result<Pool<PostgresManager<NoTls>>, pool_core::Error> {
    let (builder, manager) = builder_from_url(url)?;
    let pool = builder.build(manager)?;
    check_pool_capacity(&pool);
    Ok(pool)
}

impl<T> ManageConnection for PostgresManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::TlsConnect: Send,
    T::Stream: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    type Connection = PgConnection;
    type Error = Error;

    fn connect(&self) -> Result<PgConnection, Error> {
        let config = self.login_config()?;
        let client = match self.connect_deadline() {
            None => config.connect(self.tls.clone())?,
            Some(limit) => {
                let config = config.into_owned();
                let tls = self.tls.clone();
                match deadline::run(limit, move || config.connect(tls)) {
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
        let tracked = self.track_session_state && self.isolation != Isolation::None;
        Ok(PgConnection::new(
            client,
            self.statement_cache_size,
            tracked,
        ))
    }

    fn is_valid(&self, conn: &mut PgConnection, timeout: Duration) -> Result<(), Error> {
        let Some(client) = conn.client_mut() else {
            return Err(Error::Worker {
                operation: "validating",
            });
        };
        match client.is_valid(timeout) {
            Ok(()) => Ok(()),
            Err(e) => {
                conn.set_broken();
                Err(e.into())
            }
        }
    }

    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        conn.is_broken()
    }

    /// See [`is_broken_error`]: the driver's connection errors, found along
    /// the error's source chain.
    fn is_broken_error(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        is_broken_error(error)
    }

    /// The connect timeout (per host, times the number of hosts) bounds the
    /// whole connect, login included. The `postgres` crate cannot end a
    /// login that waits for a server's answer, so a connect given up this
    /// way logs in when the server answers at last, and the pool closes it
    /// at once; until then it holds its place in `max_size`.
    fn connect_limit(&self) -> Option<Duration> {
        self.connect_deadline()
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
    /// with tracking only one whose statements' text shows it may have (see
    /// [`Isolation::Full`]).
    fn needs_reset(&self, conn: &mut PgConnection) -> bool {
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

    /// A reset with a time limit goes through `deadline::run` (the driver
    /// keeps its socket to itself): called on the returning thread, it would
    /// hop to a worker and back, so the pool sends it to the background
    /// even while borrowers wait.
    fn reset_hands_off(&self) -> bool {
        self.reset_timeout.is_some()
    }

    fn reset(&self, conn: &mut PgConnection) -> Result<(), Error> {
        if !self.needs_reset(conn) {
            conn.mark_clean();
            return Ok(());
        }
        conn.end_loan();
        let batch = match (self.isolation, conn.session().full_plan(conn.is_tracked())) {
            (
                Isolation::Full,
                ResetPlan::Light {
                    rollback,
                    sequences,
                },
            ) => Batch::Light {
                rollback,
                sequences,
            },
            (isolation, _) => Batch::Policy(isolation),
        };
        let result = match self.reset_timeout {
            None => match conn.client_mut() {
                Some(client) => reset_session(client, batch),
                None => {
                    return Err(Error::Worker {
                        operation: "resetting the session",
                    })
                }
            },
            Some(limit) => {
                let Some(mut client) = conn.take_client() else {
                    return Err(Error::Worker {
                        operation: "resetting the session",
                    });
                };
                let outcome = deadline::run(limit, move || {
                    let r = reset_session(&mut client, batch);
                    (client, r)
                });
                match outcome {
                    Ok((client, r)) => {
                        conn.put_client(client);
                        r
                    }
                    Err(missed) => {
                        conn.set_broken();
                        return Err(match missed {
                            deadline::Missed::TimedOut => Error::Timeout {
                                operation: "resetting the session",
                                after: limit,
                                target: self.target.clone(),
                            },
                            deadline::Missed::Failed => Error::Worker {
                                operation: "resetting the session",
                            },
                        });
                    }
                }
            }
        };
        match result {
            Ok(()) => {
                conn.mark_clean();
                Ok(())
            }
            Err(e) => {
                conn.set_broken();
                Err(e.into())
            }
        }
    }
}

/// What a reset runs.
#[derive(Debug, Clone, Copy)]
enum Batch {
    /// The policy's whole batch.
    Policy(Isolation),
    /// What a tracked loan left (see [`Isolation::Full`]).
    Light { rollback: bool, sequences: bool },
}

/// Runs `batch` on `client`.
fn reset_session(client: &mut Client, batch: Batch) -> Result<(), postgres::Error> {
    let isolation = match batch {
        Batch::Policy(isolation) => isolation,
        Batch::Light {
            rollback,
            sequences,
        } => {
            // A transaction is known to be open (a plain `ROLLBACK` then
            // warns of nothing), or known not to be.
            let sql = match (rollback, sequences) {
                (true, true) => "ROLLBACK; DISCARD SEQUENCES",
                (true, false) => "ROLLBACK",
                (false, _) => "DISCARD SEQUENCES",
            };
            return client.batch_execute(sql);
        }
    };
    let sql = match isolation {
        Isolation::None => return Ok(()),
        Isolation::Rollback => ROLLBACK_SQL,
        Isolation::Full => FULL_SQL,
    };
    let messages = match client.simple_query(sql) {
        Ok(messages) => messages,
        // A failed transaction accepts nothing but its end: roll back first
        // (no warning, since a transaction is open), then run the batch.
        Err(e) if e.code() == Some(&postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION) => {
            client.simple_query(&format!("ROLLBACK; {sql}"))?
        }
        Err(e) => return Err(e),
    };
    if isolation == Isolation::Full {
        let mut deallocate = String::new();
        for message in &messages {
            if let postgres::SimpleQueryMessage::Row(row) = message {
                if row.columns().first().map(|c| c.name()) == Some("pool_reset_prepared") {
                    if let Some(name) = row.get(0) {
                        deallocate.push_str("DEALLOCATE ");
                        deallocate.push_str(&quote_ident(name));
                        deallocate.push(';');
                    }
                }
            }
        }
        if !deallocate.is_empty() {
            client.batch_execute(&deallocate)?;
        }
        // Notifications that arrived before UNLISTEN are queued in the
        // client; the next borrower must not see them.
        let mut notifications = client.notifications();
        while !notifications.is_empty() {
            use postgres::fallible_iterator::FallibleIterator;
            if notifications.iter().next()?.is_none() {
                break;
            }
        }
    }
    Ok(())
}

/// Quotes an SQL identifier (`"` doubled).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The program's file name, for `application_name`.
fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "pool-postgres".to_owned())
}

/// `host:port` list of a configuration, for error messages.
fn describe_target(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    let port_for = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let hosts = config.get_hosts();
    if hosts.is_empty() {
        return format!("localhost:{}", port_for(0));
    }
    hosts
        .iter()
        .enumerate()
        .map(|(i, h)| match h {
            Host::Tcp(name) => format!("{name}:{}", port_for(i)),
            Host::Unix(path) => format!("{}/.s.PGSQL.{}", path.display(), port_for(i)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl<T> fmt::Debug for PostgresManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // postgres::Config's Debug prints the password as `_`.
        f.debug_struct("PostgresManager")
            .field("config", &self.config)
            .field("isolation", &self.isolation)
            .field("reset_timeout", &self.reset_timeout)
            .field("capacity_share", &self.capacity_share)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "provider"),
            )
            .field("statement_cache_size", &self.statement_cache_size)
            .field("track_session_state", &self.track_session_state)
            .field("tls", &std::any::type_name::<T>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_filled_in() {
        let m = PostgresManager::new(postgres::Config::new(), NoTls);
        assert_eq!(
            m.config().get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
        assert_eq!(m.config().get_keepalives_idle(), DEFAULT_KEEPALIVES_IDLE);
        assert_eq!(
            m.config().get_tcp_user_timeout(),
            Some(&DEFAULT_TCP_USER_TIMEOUT)
        );
        assert!(m.config().get_application_name().is_some());
        assert_eq!(m.get_isolation(), Isolation::Full);
        assert_eq!(m.get_reset_timeout(), Some(DEFAULT_RESET_TIMEOUT));
    }

    #[test]
    fn explicit_settings_are_kept() {
        let mut c = postgres::Config::new();
        c.connect_timeout(Duration::from_secs(9))
            .keepalives_idle(Duration::from_secs(11))
            .application_name("mine");
        let m = PostgresManager::new(c, NoTls);
        assert_eq!(
            m.config().get_connect_timeout(),
            Some(&Duration::from_secs(9))
        );
        assert_eq!(m.config().get_keepalives_idle(), Duration::from_secs(11));
        assert_eq!(m.config().get_application_name(), Some("mine"));
    }

    #[test]
    fn url_parameters() {
        let (m, p) = PostgresManager::from_url(
            "postgres://u:pw@h1:5433,h2:5434/db?pool_name=orders&connect_timeout=0.25\
             &keepalives_idle=30&min_idle=1",
        )
        .unwrap();
        assert_eq!(p.name.as_deref(), Some("orders"));
        assert_eq!(p.min_idle, Some(1));
        assert_eq!(
            m.config().get_connect_timeout(),
            Some(&Duration::from_millis(250))
        );
        assert_eq!(m.config().get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(m.config().get_application_name(), Some("orders"));
        assert_eq!(m.target, "h1:5433, h2:5434");
        assert_eq!(m.connect_deadline(), Some(Duration::from_millis(500)));
    }

    #[test]
    fn connect_timeout_zero_means_none() {
        let (m, _) = PostgresManager::from_url("postgres://h/db?connect_timeout=0").unwrap();
        assert_eq!(m.config().get_connect_timeout(), None);
        assert_eq!(m.connect_deadline(), None);
    }

    #[test]
    fn url_errors_do_not_show_the_password() {
        let err = PostgresManager::from_url("postgres://u:hunter2@h/db?sslmode=sometimes")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sslmode"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = PostgresManager::from_url("postgres://u:hunter2@h/db?statement_cache_size=0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("statement_cache_size"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn debug_redacts_the_password() {
        let (m, _) = PostgresManager::from_url("postgres://u:hunter2@h/db").unwrap();
        let debug = format!("{m:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("PostgresManager"), "{debug}");
    }

    #[test]
    fn capacity_share_is_clamped() {
        let m = PostgresManager::new(postgres::Config::new(), NoTls);
        assert_eq!(m.clone().capacity_share(3.0).get_capacity_share(), 1.0);
        assert_eq!(m.clone().capacity_share(-1.0).get_capacity_share(), 0.0);
        assert_eq!(
            m.capacity_share(f64::NAN).get_capacity_share(),
            DEFAULT_CAPACITY_SHARE
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a"), "\"a\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn driver_params_are_accepted_by_the_driver() {
        for p in DRIVER_URL_PARAMS {
            let value = match *p {
                "sslmode" => "disable",
                "sslnegotiation" => "postgres",
                "port" => "5432",
                "hostaddr" => "127.0.0.1",
                "keepalives" => "1",
                "keepalives_idle" | "keepalives_interval" | "tcp_user_timeout" => "10",
                "keepalives_retries" => "3",
                "target_session_attrs" => "any",
                "channel_binding" => "prefer",
                "load_balance_hosts" => "disable",
                _ => "x",
            };
            let url = format!("postgres://h/db?{p}={value}");
            assert!(PostgresManager::from_url(&url).is_ok(), "{url}");
        }
    }
}
