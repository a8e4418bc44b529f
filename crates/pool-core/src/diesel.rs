//! Pools diesel connections (feature `diesel`): the drop-in replacement for
//! diesel's `r2d2` module.
//!
//! [`ConnectionManager`] opens any diesel [`Connection`] from a URL, and the
//! pool's loans ([`PooledConnection`](crate::PooledConnection), [`OwnedConnection`](crate::OwnedConnection))
//! are diesel connections themselves, as r2d2's are: `&mut conn` goes
//! wherever diesel takes a connection (`load`, `execute`, `get_result`,
//! `conn.transaction(..)`, migrations), so code written against diesel's
//! r2d2 support only changes its imports:
//!
//! | diesel's r2d2 | pool-core |
//! |---|---|
//! | `diesel::r2d2::ConnectionManager<C>` | [`pool_core::diesel::ConnectionManager<C>`](ConnectionManager) |
//! | `diesel::r2d2::Pool<M>` | [`pool_core::Pool<M>`](crate::Pool) |
//! | `diesel::r2d2::PooledConnection<M>` | [`pool_core::OwnedConnection<M>`](crate::OwnedConnection) (from `get_owned()`), or `PooledConnection<'_, M>` from `get()` |
//! | `diesel::r2d2::Error`, `PoolError` | [`pool_core::diesel::Error`](Error), [`pool_core::Error`](crate::Error) |
//! | `diesel::r2d2::TestCustomizer`, `.connection_customizer(Box::new(c))` | [`TestCustomizer`], `.build(Customized::new(manager, c))` ([`Customized`](crate::Customized)) |
//!
//! ```ignore
//! use diesel::prelude::*;
//! use pool_core::diesel::ConnectionManager; // was: diesel::r2d2::ConnectionManager
//! use pool_core::Pool; // was: diesel::r2d2::Pool
//!
//! let manager = ConnectionManager::<SqliteConnection>::new("app.db");
//! let pool = Pool::builder().max_size(4).build(manager)?;
//! let mut conn = pool.get()?;
//! let rows = diesel::sql_query("SELECT 1").execute(&mut conn)?;
//! ```
//!
//! (pool-core enables no diesel backend, so this is not compiled here: the
//! full program is `crates/pool-diesel-tests/examples/diesel_readme.rs`,
//! run by that crate's tests with SQLite, next to a suite on SQLite,
//! PostgreSQL and MariaDB.)
//!
//! diesel_migrations' `MigrationHarness` wants a `'static` connection, as
//! r2d2's loans are: run migrations on a [`Pool::get_owned`](crate::Pool::get_owned) loan.
//!
//! As with diesel's r2d2 manager, a connection is checked with `SELECT 1`,
//! and one whose transaction manager is broken or still inside a
//! transaction when it comes back (a failed rollback, a transaction begun
//! by hand and never ended) is closed, never lent again; a test
//! transaction begun by [`TestCustomizer`] does not count.
//!
//! **Timeouts.** diesel offers no timeout for a query, so the pool's
//! [`validation_timeout`](crate::Builder::validation_timeout) cannot cut a
//! `SELECT 1` short on a hung server: put the driver's own limits in the
//! URL (PostgreSQL: `connect_timeout=5&keepalives_idle=30&tcp_user_timeout=30000`),
//! and set [`ConnectionManager::with_connect_limit`] so a connect that
//! hangs does not hold up the pool's creator.
//!
//! Versions: this module needs diesel `~2.4` (diesel's
//! `i-implement-a-third-party-backend-and-opt-into-breaking-changes` API,
//! which may change in a minor release).

mod loan;

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use diesel::backend::Backend;
use diesel::connection::{Connection, TransactionManager};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::{ConnectionError, QueryResult};

use crate::{CustomizeConnection, ManageConnection};

pub use loan::PoolTransactionManager;

/// Opens diesel connections of type `C` from a database URL: diesel's
/// `r2d2::ConnectionManager`, for this pool.
///
/// ```ignore
/// use pool_core::diesel::ConnectionManager;
/// let manager = ConnectionManager::<diesel::PgConnection>::new("postgres://app@db/app");
/// let pool = pool_core::Pool::builder().build(manager)?;
/// ```
///
/// `connect` calls diesel's [`Connection::establish`], `is_valid` runs
/// `SELECT 1`, and `has_broken` asks the connection's transaction manager,
/// as diesel's `R2D2Connection::is_broken` does (see the [module
/// docs](self)).
pub struct ConnectionManager<C> {
    database_url: String,
    connect_limit: Option<Duration>,
    _connection: PhantomData<fn() -> C>,
}

impl<C> ConnectionManager<C> {
    /// A manager that connects to `database_url` (in the form diesel's
    /// backend for `C` accepts).
    pub fn new<S: Into<String>>(database_url: S) -> Self {
        ConnectionManager {
            database_url: database_url.into(),
            connect_limit: None,
            _connection: PhantomData,
        }
    }

    /// Changes the URL used for new connections (existing ones are kept).
    /// As in diesel, call it before the manager goes into the pool.
    pub fn update_database_url<S: Into<String>>(&mut self, database_url: S) {
        self.database_url = database_url.into();
    }

    /// Bounds each connect to `limit`: diesel's connect cannot be
    /// interrupted, so the pool runs it on a helper thread and stops waiting
    /// after `limit` (see [`ManageConnection::connect_limit`]). The default
    /// waits as long as the driver does.
    pub fn with_connect_limit(mut self, limit: Duration) -> Self {
        self.connect_limit = Some(limit);
        self
    }

    /// The URL new connections are opened with.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }
}

impl<C> Clone for ConnectionManager<C> {
    fn clone(&self) -> Self {
        ConnectionManager {
            database_url: self.database_url.clone(),
            connect_limit: self.connect_limit,
            _connection: PhantomData,
        }
    }
}

/// Names the connection type, never the URL (it may hold a password).
impl<C> fmt::Debug for ConnectionManager<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionManager<{}>", std::any::type_name::<C>())
    }
}

impl<C> ManageConnection for ConnectionManager<C>
where
    C: Connection + 'static,
{
    type Connection = C;
    type Error = Error;

    fn connect(&self) -> Result<C, Error> {
        C::establish(&self.database_url).map_err(Error::ConnectionError)
    }

    /// Runs `SELECT 1`. diesel has no query timeout, so `timeout` is not
    /// enforced here (see the module docs).
    fn is_valid(&self, conn: &mut C, _timeout: Duration) -> Result<(), Error> {
        conn.execute_returning_count(&CheckConnectionQuery)
            .map(|_| ())
            .map_err(Error::QueryError)
    }

    /// diesel's own check: the transaction manager is in error, or a
    /// transaction (other than a test transaction) is still open.
    fn has_broken(&self, conn: &mut C) -> bool {
        <C::TransactionManager as TransactionManager<C>>::is_broken_transaction_manager(conn)
    }

    /// Nothing to reset: a connection left inside a transaction is broken.
    fn needs_reset(&self, _conn: &mut C) -> bool {
        false
    }

    fn connect_limit(&self) -> Option<Duration> {
        self.connect_limit
    }
}

/// `SELECT 1`, in any backend's dialect: diesel's r2d2 check query.
struct CheckConnectionQuery;

impl<DB: Backend> QueryFragment<DB> for CheckConnectionQuery {
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        pass.push_sql("SELECT 1");
        Ok(())
    }
}

impl QueryId for CheckConnectionQuery {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// Why a [`ConnectionManager`] could not connect or check a connection:
/// diesel's `r2d2::Error`, with the same variants.
#[derive(Debug)]
pub enum Error {
    /// Opening the connection failed.
    ConnectionError(ConnectionError),
    /// The connection failed its `SELECT 1` check, or (from
    /// [`TestCustomizer`]) could not begin its test transaction.
    QueryError(diesel::result::Error),
}

/// The cause's message, after what was being done; the cause is not
/// repeated as [`source`](std::error::Error::source).
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ConnectionError(e) => write!(
                f,
                "diesel could not connect: {e} (check the database URL and that the server accepts connections)"
            ),
            Error::QueryError(e) => write!(f, "a diesel query checking the connection failed: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConnectionError> for Error {
    fn from(e: ConnectionError) -> Self {
        Error::ConnectionError(e)
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        Error::QueryError(e)
    }
}

/// Begins a test transaction on each new connection, so nothing a test
/// writes is ever committed: diesel's `r2d2::TestCustomizer`. Use it with a
/// pool of one connection, so every loan sees the same transaction.
///
/// ```ignore
/// use pool_core::{diesel::{ConnectionManager, TestCustomizer}, Customized, Pool};
/// let manager = ConnectionManager::<diesel::SqliteConnection>::new(":memory:");
/// let pool = Pool::builder().max_size(1).build(Customized::new(manager, TestCustomizer))?;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TestCustomizer;

impl<C: Connection> CustomizeConnection<C, Error> for TestCustomizer {
    fn on_acquire(&self, conn: &mut C) -> Result<(), Error> {
        conn.begin_test_transaction().map_err(Error::QueryError)
    }
}
