//! The pooled connection type: a `mysql::Conn` that remembers whether it
//! was used and which connection errors it saw.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::result::Result as StdResult;

use mysql::prelude::{AsStatement, FromRow, Queryable};
use mysql::{Binary, Conn, FromRowError, Params, QueryResult, Result, Statement, Text};

use crate::is_connection_error;

/// A MySQL/MariaDB connection managed by [`MysqlManager`](crate::MysqlManager).
///
/// It implements [`Queryable`] itself and dereferences to [`mysql::Conn`]:
///
/// ```no_run
/// use mysql::prelude::Queryable;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (builder, manager) = pool_mysql::builder_from_url("mysql://app:pw@localhost/app")?;
/// let pool = builder.build(manager)?;
/// let mut conn = pool.get()?;
/// let n: Option<i64> = conn.query_first("SELECT 41 + 1")?;
/// assert_eq!(n, Some(42));
/// # Ok(()) }
/// ```
///
/// # Knowing whether the connection is broken, without any I/O
///
/// The pool asks [`has_broken`](pool_core::ManageConnection::has_broken) on
/// every borrow and return, and that must not touch the network. So the
/// connection remembers connection errors (see
/// [`is_connection_error`](crate::is_connection_error)) it has seen:
///
/// * every [`Queryable`] method called on `MysqlConnection` (or on the pool's
///   `PooledConnection`) records its error;
/// * errors from calls made through `Deref`/`DerefMut` on the inner `Conn`
///   (`start_transaction`, `ping`, rows read from a `QueryResult`, a
///   `Transaction`'s methods) cannot be seen: pass them to
///   [`record`](Self::record) (or call the pool's `mark_broken()`).
///
/// # Knowing whether a borrower left state behind
///
/// Any `&mut` access (a `Queryable` method or `DerefMut`) marks the
/// connection as *used*; a connection that comes back unused is not reset,
/// saving a round trip (see [`Isolation`](crate::Isolation)).
pub struct MysqlConnection {
    /// `Some` until [`into_conn`](Self::into_conn) or `drop` takes it out
    /// (a `MysqlConnection` is never seen without it).
    conn: Option<Conn>,
    used: bool,
    broken: bool,
    /// What a full reset runs after resetting the session (may be empty).
    restore: String,
}

const ALWAYS_HELD: &str = "a MysqlConnection holds its mysql::Conn until it is dropped";

impl MysqlConnection {
    pub(crate) fn new(conn: Conn, restore: String) -> Self {
        MysqlConnection {
            conn: Some(conn),
            used: false,
            broken: false,
            restore,
        }
    }

    pub(crate) fn restore_sql(&self) -> &str {
        &self.restore
    }

    /// True when the connection may have been used since the last session
    /// reset.
    pub fn was_used(&self) -> bool {
        self.used
    }

    /// Records a driver error seen on this connection: when it is a
    /// connection error, the connection counts as broken from now on and the
    /// pool closes it when it comes back. Returns the error, for use inline:
    ///
    /// ```no_run
    /// use mysql::{prelude::Queryable, TxOpts};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (builder, manager) = pool_mysql::builder_from_url("mysql://app:pw@localhost/app")?;
    /// # let pool = builder.build(manager)?;
    /// let mut conn = pool.get()?;
    /// let result = (|| {
    ///     let mut tx = conn.start_transaction(TxOpts::default())?;
    ///     tx.query_drop("UPDATE accounts SET balance = balance - 10 WHERE id = 1")?;
    ///     tx.commit()
    /// })();
    /// result.map_err(|e| conn.record(e))?;
    /// # Ok(()) }
    /// ```
    pub fn record(&mut self, err: mysql::Error) -> mysql::Error {
        if is_connection_error(&err) {
            self.broken = true;
        }
        err
    }

    /// [`record`](Self::record)s the error of `result`, if any, and returns it.
    pub fn check<T>(&mut self, result: Result<T>) -> Result<T> {
        result.map_err(|e| self.record(e))
    }

    /// True when a connection error was seen (or recorded) on this
    /// connection. Never does any I/O.
    pub fn is_broken(&self) -> bool {
        self.broken || self.conn.is_none()
    }

    /// Marks the connection as broken: the pool closes it when it comes back.
    pub fn set_broken(&mut self) {
        self.broken = true;
    }

    /// Unwraps the `mysql::Conn` (for example after
    /// [`PooledConnection::detach`](pool_core::PooledConnection::detach)).
    pub fn into_conn(mut self) -> Conn {
        self.conn.take().expect(ALWAYS_HELD)
    }

    // ---- for the manager: access without marking the connection as used ----

    pub(crate) fn conn_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect(ALWAYS_HELD)
    }

    pub(crate) fn mark_clean(&mut self) {
        self.used = false;
    }

    /// The connection and the "broken" flag, for the `Queryable` methods:
    /// marks the connection as used.
    fn parts(&mut self) -> (&mut Conn, &mut bool) {
        self.used = true;
        (self.conn.as_mut().expect(ALWAYS_HELD), &mut self.broken)
    }
}

/// Records `result`'s error in `broken` when it is a connection error.
fn seen<T>(broken: &mut bool, result: Result<T>) -> Result<T> {
    if let Err(e) = &result {
        if is_connection_error(e) {
            *broken = true;
        }
    }
    result
}

impl Drop for MysqlConnection {
    fn drop(&mut self) {
        // Dropping a `mysql::Conn` writes to the socket (closing cached
        // statements, then COM_QUIT), which can block on a dead network with
        // a full send buffer: a broken connection is dropped on a worker.
        if let Some(conn) = self.conn.take() {
            if self.broken {
                if let Err(job) = pool_core::deadline::detach(Box::new(move || drop(conn))) {
                    // No thread to drop it on: leak it rather than hang.
                    std::mem::forget(job);
                }
            } else {
                drop(conn);
            }
        }
    }
}

impl Deref for MysqlConnection {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect(ALWAYS_HELD)
    }
}

impl DerefMut for MysqlConnection {
    fn deref_mut(&mut self) -> &mut Conn {
        self.used = true;
        self.conn.as_mut().expect(ALWAYS_HELD)
    }
}

impl fmt::Debug for MysqlConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("MysqlConnection");
        if let Some(conn) = &self.conn {
            d.field("connection_id", &conn.connection_id());
        }
        d.field("used", &self.used)
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}

/// Every method forwards to [`Conn`]'s and records connection errors.
impl Queryable for MysqlConnection {
    fn query_iter<Q: AsRef<str>>(&mut self, query: Q) -> Result<QueryResult<'_, '_, '_, Text>> {
        let (conn, broken) = self.parts();
        seen(broken, conn.query_iter(query))
    }

    fn query<T, Q>(&mut self, query: Q) -> Result<Vec<T>>
    where
        Q: AsRef<str>,
        T: FromRow,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.query(query))
    }

    fn query_opt<T, Q>(&mut self, query: Q) -> Result<Vec<StdResult<T, FromRowError>>>
    where
        Q: AsRef<str>,
        T: FromRow,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.query_opt(query))
    }

    fn query_first<T, Q>(&mut self, query: Q) -> Result<Option<T>>
    where
        Q: AsRef<str>,
        T: FromRow,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.query_first(query))
    }

    fn query_first_opt<T, Q>(&mut self, query: Q) -> Result<Option<StdResult<T, FromRowError>>>
    where
        Q: AsRef<str>,
        T: FromRow,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.query_first_opt(query))
    }

    fn query_map<T, F, Q, U>(&mut self, query: Q, f: F) -> Result<Vec<U>>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(T) -> U,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.query_map(query, f))
    }

    fn query_map_opt<T, F, Q, U>(&mut self, query: Q, f: F) -> Result<Vec<U>>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(StdResult<T, FromRowError>) -> U,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.query_map_opt(query, f))
    }

    fn query_fold<T, F, Q, U>(&mut self, query: Q, init: U, f: F) -> Result<U>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(U, T) -> U,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.query_fold(query, init, f))
    }

    fn query_fold_opt<T, F, Q, U>(&mut self, query: Q, init: U, f: F) -> Result<U>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(U, StdResult<T, FromRowError>) -> U,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.query_fold_opt(query, init, f))
    }

    fn query_drop<Q>(&mut self, query: Q) -> Result<()>
    where
        Q: AsRef<str>,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.query_drop(query))
    }

    fn prep<Q: AsRef<str>>(&mut self, query: Q) -> Result<Statement> {
        let (conn, broken) = self.parts();
        seen(broken, conn.prep(query))
    }

    fn close(&mut self, stmt: Statement) -> Result<()> {
        let (conn, broken) = self.parts();
        seen(broken, conn.close(stmt))
    }

    fn exec_iter<S, P>(&mut self, stmt: S, params: P) -> Result<QueryResult<'_, '_, '_, Binary>>
    where
        S: AsStatement,
        P: Into<Params>,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.exec_iter(stmt, params))
    }

    fn exec_batch<S, P, I>(&mut self, stmt: S, params: I) -> Result<()>
    where
        Self: Sized,
        S: AsStatement,
        P: Into<Params>,
        I: IntoIterator<Item = P>,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.exec_batch(stmt, params))
    }

    fn exec<T, S, P>(&mut self, stmt: S, params: P) -> Result<Vec<T>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.exec(stmt, params))
    }

    fn exec_opt<T, S, P>(&mut self, stmt: S, params: P) -> Result<Vec<StdResult<T, FromRowError>>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.exec_opt(stmt, params))
    }

    fn exec_first<T, S, P>(&mut self, stmt: S, params: P) -> Result<Option<T>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.exec_first(stmt, params))
    }

    fn exec_first_opt<T, S, P>(
        &mut self,
        stmt: S,
        params: P,
    ) -> Result<Option<StdResult<T, FromRowError>>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.exec_first_opt(stmt, params))
    }

    fn exec_map<T, S, P, F, U>(&mut self, stmt: S, params: P, f: F) -> Result<Vec<U>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(T) -> U,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.exec_map(stmt, params, f))
    }

    fn exec_map_opt<T, S, P, F, U>(&mut self, stmt: S, params: P, f: F) -> Result<Vec<U>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(StdResult<T, FromRowError>) -> U,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.exec_map_opt(stmt, params, f))
    }

    fn exec_fold<T, S, P, U, F>(&mut self, stmt: S, params: P, init: U, f: F) -> Result<U>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(U, T) -> U,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.exec_fold(stmt, params, init, f))
    }

    fn exec_fold_opt<T, S, P, U, F>(&mut self, stmt: S, params: P, init: U, f: F) -> Result<U>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(U, StdResult<T, FromRowError>) -> U,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.exec_fold_opt(stmt, params, init, f))
    }

    fn exec_drop<S, P>(&mut self, stmt: S, params: P) -> Result<()>
    where
        S: AsStatement,
        P: Into<Params>,
    {
        let (conn, broken) = self.parts();
        seen(broken, conn.exec_drop(stmt, params))
    }
}
