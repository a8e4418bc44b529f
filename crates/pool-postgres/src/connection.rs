//! The pooled connection type: a `postgres::Client` that knows whether it
//! was used.

use std::fmt;
use std::ops::{Deref, DerefMut};

use postgres::types::{ToSql, Type};
use postgres::{Client, Row, SimpleQueryMessage, Statement, ToStatement};

use crate::session::{classify, Kind, KnownStatements, Session};
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
/// A connection that was borrowed but not used (or only inspected through
/// `&Client`, e.g. [`Client::is_closed`]) comes back without any
/// session-state reset, saving a round trip.
///
/// A used one is reset only as far as needed (the default, see
/// [`PostgresManager::track_session_state`](crate::PostgresManager::track_session_state)):
/// this type has its own [`query`](Self::query), [`query_one`](Self::query_one),
/// [`query_opt`](Self::query_opt), [`execute`](Self::execute),
/// [`simple_query`](Self::simple_query), [`batch_execute`](Self::batch_execute),
/// [`prepare`](Self::prepare), [`prepare_typed`](Self::prepare_typed) and
/// [`transaction`](Self::transaction), with the client's signatures, and reads
/// the text of each statement they send (see
/// [`Isolation::Full`](crate::Isolation::Full)). Any other client method goes
/// through [`DerefMut`], which the pool cannot see into: the loan then gets
/// the whole reset. The marks are cleared once the manager has reset the
/// session.
pub struct PgConnection {
    /// `None` only after a timed-out reset gave the client up (the pool then
    /// closes this connection and never lends it again).
    client: Option<Client>,
    /// What the loans since the last reset left, as far as known.
    session: Session,
    /// Whether statements' text is read (else every used loan is reset in
    /// full).
    tracked: bool,
    broken: bool,
    statements: StatementCache,
    /// What the text of each statement in `statements` showed.
    cached_kinds: KnownStatements,
    /// The same for statements prepared during this loan.
    loan_kinds: KnownStatements,
}

const GIVEN_UP: &str = "this connection was given up after a timed-out reset or validation \
                        and must not be used (the pool never lends it again)";

impl PgConnection {
    pub(crate) fn new(client: Client, statement_cache_size: usize, tracked: bool) -> Self {
        PgConnection {
            client: Some(client),
            session: Session::default(),
            tracked,
            broken: false,
            statements: StatementCache::new(statement_cache_size),
            cached_kinds: KnownStatements::default(),
            loan_kinds: KnownStatements::default(),
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
        let statement = self.watched(Kind::Plain, |client| client.prepare(query))?;
        if let Some(evicted) = self.statements.insert(query, statement.clone()) {
            self.cached_kinds.forget(&evicted);
        }
        if self.statements.holds(query) {
            self.cached_kinds.remember(&statement, classify(query));
        }
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
        self.cached_kinds.clear();
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
        self.session.used
    }

    /// Makes the next reset the whole one, whatever the statements' text
    /// showed: for session state that text cannot show, such as a setting
    /// changed by a trigger or by a function a view calls.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (builder, manager) = pool_postgres::builder_from_url("postgres://app@localhost/app")?;
    /// # let pool = builder.build(manager)?;
    /// let mut conn = pool.get()?;
    /// conn.execute("UPDATE audited SET n = n + 1", &[])?; // its trigger calls set_config()
    /// conn.mark_session_changed();
    /// # Ok(()) }
    /// ```
    pub fn mark_session_changed(&mut self) {
        self.session.used = true;
        self.session.changed = true;
    }

    pub(crate) fn session(&self) -> Session {
        self.session
    }

    pub(crate) fn is_tracked(&self) -> bool {
        self.tracked
    }

    /// Runs `call` on the client after noting what a statement of `kind`
    /// may leave; a failed statement may have left anything (a failed
    /// transaction, a half-run text), and a connection error marks the
    /// connection broken.
    #[inline]
    fn watched<R>(
        &mut self,
        kind: Kind,
        call: impl FnOnce(&mut Client) -> Result<R, postgres::Error>,
    ) -> Result<R, postgres::Error> {
        self.session
            .before(if self.tracked { kind } else { Kind::Other });
        let result = call(self.client.as_mut().expect(GIVEN_UP));
        if let Err(e) = &result {
            self.session.changed = true;
            if crate::is_connection_error(e) {
                self.broken = true;
            }
        }
        result
    }

    /// What running `query` may leave: its text, or what the text of the
    /// statement showed when it was prepared here.
    #[inline]
    fn kind_of<T: ?Sized + Query>(&self, query: &T) -> Kind {
        match (query.__text(), query.__statement()) {
            (Some(text), _) => classify(text),
            (None, Some(statement)) => self
                .cached_kinds
                .kind(statement)
                .or_else(|| self.loan_kinds.kind(statement))
                .unwrap_or(Kind::Other),
            (None, None) => Kind::Other,
        }
    }

    /// [`Client::execute`], watched (see the type's doc).
    pub fn execute<T>(
        &mut self,
        query: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error>
    where
        T: ?Sized + Query,
    {
        let kind = self.kind_of(query);
        self.watched(kind, |c| c.execute(query, params))
    }

    /// [`Client::query`], watched (see the type's doc).
    pub fn query<T>(
        &mut self,
        query: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error>
    where
        T: ?Sized + Query,
    {
        let kind = self.kind_of(query);
        self.watched(kind, |c| c.query(query, params))
    }

    /// [`Client::query_one`], watched (see the type's doc).
    pub fn query_one<T>(
        &mut self,
        query: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error>
    where
        T: ?Sized + Query,
    {
        let kind = self.kind_of(query);
        self.watched(kind, |c| c.query_one(query, params))
    }

    /// [`Client::query_opt`], watched (see the type's doc).
    pub fn query_opt<T>(
        &mut self,
        query: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error>
    where
        T: ?Sized + Query,
    {
        let kind = self.kind_of(query);
        self.watched(kind, |c| c.query_opt(query, params))
    }

    /// [`Client::simple_query`], watched (see the type's doc).
    pub fn simple_query(
        &mut self,
        query: &str,
    ) -> Result<Vec<SimpleQueryMessage>, postgres::Error> {
        self.watched(classify(query), |c| c.simple_query(query))
    }

    /// [`Client::batch_execute`], watched (see the type's doc).
    pub fn batch_execute(&mut self, query: &str) -> Result<(), postgres::Error> {
        self.watched(classify(query), |c| c.batch_execute(query))
    }

    /// [`Client::prepare`]; running the statement later on this loan is
    /// judged by `query`'s text (see the type's doc).
    pub fn prepare(&mut self, query: &str) -> Result<Statement, postgres::Error> {
        let statement = self.watched(Kind::Plain, |c| c.prepare(query))?;
        self.loan_kinds.remember(&statement, classify(query));
        Ok(statement)
    }

    /// [`Client::prepare_typed`]; as [`prepare`](Self::prepare).
    pub fn prepare_typed(
        &mut self,
        query: &str,
        types: &[Type],
    ) -> Result<Statement, postgres::Error> {
        let statement = self.watched(Kind::Plain, |c| c.prepare_typed(query, types))?;
        self.loan_kinds.remember(&statement, classify(query));
        Ok(statement)
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
        self.session = Session::default();
        self.loan_kinds.clear();
    }

    /// Forgets the statements prepared during the loan (a clone of each is
    /// kept until then), whether or not the session is reset.
    pub(crate) fn end_loan(&mut self) {
        self.loan_kinds.clear();
    }
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        // Dropping a `postgres::Client` waits until the server has answered
        // every request in flight. After a failed validation or reset one
        // may never be answered (a black-holed network), so a broken
        // connection is dropped on a worker thread, never on the pool's.
        // Statements first: each closes itself through the client.
        self.cached_kinds.clear();
        self.loan_kinds.clear();
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
        self.session.used = true;
        self.session.changed = true;
        self.client.as_mut().expect(GIVEN_UP)
    }
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("used", &self.session.used)
            .field("session_changed", &self.session.changed)
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}

/// What [`PgConnection`]'s own query methods take: the same as the
/// client's (`&str`, `&String` or a `&Statement`; `postgres::ToStatement`
/// has no other implementations), in a form whose text the pool can read.
/// Sealed.
pub trait Query: ToStatement + sealed::Sealed {
    #[doc(hidden)]
    fn __text(&self) -> Option<&str>;
    #[doc(hidden)]
    fn __statement(&self) -> Option<&Statement>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl Sealed for postgres::Statement {}
}

impl Query for str {
    fn __text(&self) -> Option<&str> {
        Some(self)
    }
    fn __statement(&self) -> Option<&Statement> {
        None
    }
}

impl Query for String {
    fn __text(&self) -> Option<&str> {
        Some(self)
    }
    fn __statement(&self) -> Option<&Statement> {
        None
    }
}

impl Query for Statement {
    fn __text(&self) -> Option<&str> {
        None
    }
    fn __statement(&self) -> Option<&Statement> {
        Some(self)
    }
}
