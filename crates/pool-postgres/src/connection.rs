//! The pooled connection type: a `postgres::Client` that knows whether it
//! was used.

use std::fmt;
use std::ops::{Deref, DerefMut};

use postgres::{Client, Statement};

use crate::statement_cache::StatementCache;

/// A PostgreSQL connection managed by [`PostgresManager`](crate::PostgresManager).
///
/// It dereferences to [`postgres::Client`], so every client method works on
/// it (and on the pool's `PooledConnection`, which dereferences to this):
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (builder, manager) = pool_postgres::builder_from_url("postgres://app@localhost/app")?;
/// let pool = builder.build(manager)?;
/// let mut conn = pool.get()?;
/// let row = conn.query_one("SELECT $1::int + 1", &[&41])?;
/// assert_eq!(row.get::<_, i32>(0), 42);
/// # Ok(()) }
/// ```
///
/// # Knowing whether a borrower left state behind
///
/// Every `postgres::Client` method that talks to the server takes
/// `&mut self`, so it goes through this type's [`DerefMut`]. That marks the
/// connection as *used*; a connection that was borrowed but not used (or only
/// inspected through `&Client`, e.g. [`Client::is_closed`]) comes back
/// without any session-state reset, saving a round trip. The mark is cleared
/// once the manager has reset the session (see [`Isolation`](crate::Isolation)).
pub struct PgConnection {
    /// `None` only after a timed-out reset gave the client up (the pool then
    /// closes this connection and never lends it again).
    client: Option<Client>,
    used: bool,
    broken: bool,
    statements: StatementCache,
}

const GIVEN_UP: &str = "this connection was given up after a timed-out reset or validation \
                        and must not be used (the pool never lends it again)";

impl PgConnection {
    pub(crate) fn new(client: Client, statement_cache_size: usize) -> Self {
        PgConnection {
            client: Some(client),
            used: false,
            broken: false,
            statements: StatementCache::new(statement_cache_size),
        }
    }

    /// Prepares `query` once per connection and returns the same
    /// protocol-level statement on every later call, on this and later loans
    /// of the connection: a statement costs its parse and plan once, not
    /// once per loan.
    ///
    /// The statements survive every [`Isolation`](crate::Isolation) reset
    /// (even `Full`, which deallocates only SQL-level `PREPARE`d statements,
    /// not the protocol-level ones kept here) and close with the connection.
    /// At most [`statement_cache_size`](crate::PostgresManager::statement_cache_size)
    /// are kept (default 100); past it the least recently used is closed on
    /// the server. Do not run `DEALLOCATE ALL` yourself (or call
    /// [`clear_statement_cache`](Self::clear_statement_cache) after it), and
    /// do not use it through PgBouncer in transaction pooling mode, where
    /// protocol-level statements do not outlive a transaction.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (builder, manager) = pool_postgres::builder_from_url("postgres://app@localhost/app")?;
    /// # let pool = builder.build(manager)?;
    /// let mut conn = pool.get()?;
    /// let statement = conn.prepare_cached("SELECT name FROM users WHERE id = $1")?;
    /// let rows = conn.query(&statement, &[&42_i64])?;
    /// # let _ = rows; Ok(()) }
    /// ```
    pub fn prepare_cached(&mut self, query: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(query) {
            return Ok(statement);
        }
        let prepared = (**self).prepare(query);
        let statement = prepared.map_err(|e| self.record(e))?;
        self.statements.insert(query, statement.clone());
        Ok(statement)
    }

    /// How many statements [`prepare_cached`](Self::prepare_cached) holds
    /// for this connection.
    pub fn cached_statements(&self) -> usize {
        self.statements.len()
    }

    /// Forgets (and closes on the server) every statement
    /// [`prepare_cached`](Self::prepare_cached) holds.
    pub fn clear_statement_cache(&mut self) {
        self.statements.clear();
    }

    /// True when the connection may have been used since the last session
    /// reset (a `&mut Client` was taken).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (builder, manager) = pool_postgres::builder_from_url("postgres://app@localhost/app")?;
    /// # let pool = builder.build(manager)?;
    /// let mut conn = pool.get()?;
    /// assert!(!conn.was_used());
    /// conn.batch_execute("SELECT 1")?;
    /// assert!(conn.was_used());
    /// # Ok(()) }
    /// ```
    pub fn was_used(&self) -> bool {
        self.used
    }

    /// Records a driver error seen on this connection: when it is a
    /// connection error (see [`is_connection_error`](crate::is_connection_error)),
    /// the connection counts as broken from now on and the pool closes it when
    /// it comes back. Returns the error, so it can be used inline:
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (builder, manager) = pool_postgres::builder_from_url("postgres://app@localhost/app")?;
    /// # let pool = builder.build(manager)?;
    /// let mut conn = pool.get()?;
    /// let n = conn.execute("DELETE FROM sessions WHERE expired", &[]).map_err(|e| conn.record(e))?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub fn record(&mut self, err: postgres::Error) -> postgres::Error {
        if crate::is_connection_error(&err) {
            self.broken = true;
        }
        err
    }

    /// True when a connection error was recorded with [`record`](Self::record)
    /// or the driver saw the connection close. Never does any I/O.
    pub fn is_broken(&self) -> bool {
        self.broken || self.client.as_ref().is_none_or(Client::is_closed)
    }

    /// Unwraps the `postgres::Client` (for example after
    /// [`PooledConnection::detach`](pool_core::PooledConnection::detach)).
    ///
    /// # Panics
    ///
    /// If the connection was given up after a timed-out reset, which the pool
    /// never hands out.
    pub fn into_client(mut self) -> Client {
        self.client.take().expect(GIVEN_UP)
    }

    /// Marks the connection as broken: it is closed when it comes back to
    /// the pool, and its client is then dropped on a helper thread (a
    /// `postgres::Client` waits for the answers to any requests in flight
    /// when dropped, which never come over a black-holed network).
    pub fn set_broken(&mut self) {
        self.broken = true;
    }

    // ---- for the manager: access without marking the connection as used ----

    pub(crate) fn client_mut(&mut self) -> Option<&mut Client> {
        self.client.as_mut()
    }

    pub(crate) fn take_client(&mut self) -> Option<Client> {
        self.client.take()
    }

    pub(crate) fn put_client(&mut self, client: Client) {
        self.client = Some(client);
    }

    pub(crate) fn mark_clean(&mut self) {
        self.used = false;
    }
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        // Dropping a `postgres::Client` waits until the server has answered
        // every request in flight. After a failed validation or reset one
        // may never be answered (a black-holed network), so a broken
        // connection is dropped on a worker thread, never on the pool's.
        // Statements first: each closes itself through the client.
        self.statements.clear();
        if let Some(client) = self.client.take() {
            if self.broken {
                if let Err(job) = pool_core::deadline::detach(Box::new(move || drop(client))) {
                    // No thread to drop it on: leak it rather than hang.
                    std::mem::forget(job);
                }
            } else {
                drop(client);
            }
        }
    }
}

impl Deref for PgConnection {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client.as_ref().expect(GIVEN_UP)
    }
}

impl DerefMut for PgConnection {
    fn deref_mut(&mut self) -> &mut Client {
        self.used = true;
        self.client.as_mut().expect(GIVEN_UP)
    }
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("used", &self.used)
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}
