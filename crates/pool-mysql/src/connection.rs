//! The pooled connection type: a `mysql::Conn` that remembers whether it
//! was used and which connection errors it saw.

use std::collections::HashSet;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::result::Result as StdResult;

use mysql::prelude::{AsStatement, FromRow, Queryable};
use mysql::{Binary, Conn, FromRowError, Params, QueryResult, Result, Statement, Text};

use crate::is_connection_error;
use crate::session::{is_plain, Session};

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
///   (`ping`, rows read from a `QueryResult`, a `mysql::Transaction`'s
///   methods) cannot be seen: pass them to
///   [`record`](Self::record) (or call the pool's `mark_broken()`).
///
/// # Knowing whether a borrower left state behind
///
/// Any `&mut` access (a `Queryable` method or `DerefMut`) marks the
/// connection as *used*; a connection that comes back unused is not reset,
/// saving a round trip (see [`Isolation`](crate::Isolation)).
///
/// A used connection is reset only as far as needed when the server reports
/// session state (the default, see
/// [`MysqlManager::track_session_state`](crate::MysqlManager::track_session_state)):
///
/// * a [`Queryable`] method called on `MysqlConnection` (or on the pool's
///   `PooledConnection`, or on a [`Transaction`](crate::Transaction) from
///   [`start_transaction`](Self::start_transaction)) is watched: the server's report in its OK packet
///   and the statement's text say what it left (see
///   [`Isolation::Full`](crate::Isolation::Full));
/// * `query_iter`/`exec_iter` (whose rows are read later), anything through
///   `DerefMut` on the inner `Conn` (`select_db`, `ping`, the `Conn`'s own
///   `start_transaction`, …) and
///   any failed statement make the loan need the full reset;
/// * [`mark_session_changed`](Self::mark_session_changed) does the same by
///   hand, for state no report shows (see the limits in
///   [`Isolation::Full`](crate::Isolation::Full)).
pub struct MysqlConnection {
    /// `Some` until [`into_conn`](Self::into_conn) or `drop` takes it out
    /// (a `MysqlConnection` is never seen without it).
    conn: Option<Conn>,
    /// What the loans since the last reset left, as far as known.
    session: Session,
    /// The server reports session state on this connection (see
    /// `session::TRACKING_SQL`).
    tracked: bool,
    /// Statements prepared through this type's `prep` from plain text
    /// (`session::is_plain`): executing them leaves only what the server
    /// reports. Any other statement id makes the loan need the full reset.
    plain_statements: HashSet<u32>,
    broken: bool,
    /// What a full reset runs after resetting the session (may be empty).
    restore: String,
}

/// At most this many plain statement ids are remembered (then forgotten
/// all at once: a forgotten id only costs a full reset when a statement
/// kept by the caller is executed again).
const PLAIN_STATEMENTS_MAX: usize = 4096;

const ALWAYS_HELD: &str = "a MysqlConnection holds its mysql::Conn until it is dropped";

impl MysqlConnection {
    pub(crate) fn new(conn: Conn, restore: String, tracked: bool) -> Self {
        MysqlConnection {
            conn: Some(conn),
            session: Session::default(),
            tracked,
            plain_statements: HashSet::new(),
            broken: false,
            restore,
        }
    }

    pub(crate) fn session(&self) -> Session {
        self.session
    }

    pub(crate) fn is_tracked(&self) -> bool {
        self.tracked
    }

    /// Makes the next reset the full one, whatever the server reported: for
    /// session state that no report shows, such as a user-level lock
    /// (`GET_LOCK`) taken by a stored function a view or trigger calls.
    ///
    /// ```no_run
    /// use mysql::prelude::Queryable;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (builder, manager) = pool_mysql::builder_from_url("mysql://app:pw@localhost/app")?;
    /// # let pool = builder.build(manager)?;
    /// let mut conn = pool.get()?;
    /// conn.query_drop("SELECT * FROM view_calling_a_locking_function")?;
    /// conn.mark_session_changed();
    /// # Ok(()) }
    /// ```
    pub fn mark_session_changed(&mut self) {
        self.session.used = true;
        self.session.changed = true;
    }

    pub(crate) fn restore_sql(&self) -> &str {
        &self.restore
    }

    /// True when the connection may have been used since the last session
    /// reset.
    pub fn was_used(&self) -> bool {
        self.session.used
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

    /// Forgets which statement ids were prepared from plain text (before a
    /// `COM_RESET_CONNECTION`, which closes them all).
    pub(crate) fn forget_statements(&mut self) {
        self.plain_statements.clear();
    }

    pub(crate) fn mark_clean(&mut self) {
        self.session = Session::default();
    }

    /// Runs a text statement `call` on the connection, watched: marks the
    /// connection as used, records a connection error, and notes what the
    /// statement left in the session.
    fn text<T>(&mut self, sql: &str, call: impl FnOnce(&mut Conn, &str) -> Result<T>) -> Result<T> {
        self.session.used = true;
        if !is_plain(sql) {
            self.session.changed = true;
        }
        self.run(|conn| call(conn, sql))
    }

    /// Runs `call` (any statement whose rows are all read before it
    /// returns) and notes what the server reported.
    fn run<T>(&mut self, call: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        self.session.used = true;
        let conn = self.conn.as_mut().expect(ALWAYS_HELD);
        let result = call(conn);
        match &result {
            Ok(_) => {
                if self.tracked {
                    self.session.observe(conn);
                }
            }
            Err(e) => {
                // The statement may have done part of its work (a failed
                // multi-statement text, a failed `COMMIT`): only the full
                // reset is sure.
                self.session.changed = true;
                if is_connection_error(e) {
                    self.broken = true;
                }
            }
        }
        result
    }

    /// Runs a prepared statement `call` watched, as [`text`](Self::text):
    /// the statement is plain only when it was prepared through this type
    /// from plain text.
    fn exec_watched<S, T>(
        &mut self,
        stmt: S,
        call: impl FnOnce(&mut Conn, Statement) -> Result<T>,
    ) -> Result<T>
    where
        S: AsStatement,
    {
        self.session.used = true;
        // A statement given as text is prepared here (through `prep`
        // below, the driver's statement cache behind it).
        let stmt = match stmt.as_statement(self) {
            Ok(stmt) => stmt.into_owned(),
            Err(e) => {
                self.session.changed = true;
                if is_connection_error(&e) {
                    self.broken = true;
                }
                return Err(e);
            }
        };
        if !self.plain_statements.contains(&stmt.id()) {
            self.session.changed = true;
        }
        self.run(|conn| call(conn, stmt))
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
        self.session.used = true;
        self.session.changed = true;
        self.conn.as_mut().expect(ALWAYS_HELD)
    }
}

impl fmt::Debug for MysqlConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("MysqlConnection");
        if let Some(conn) = &self.conn {
            d.field("connection_id", &conn.connection_id());
        }
        d.field("used", &self.session.used)
            .field("session_changed", &self.session.changed)
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}

/// Every method forwards to [`Conn`]'s, records connection errors, and
/// notes what the statement left in the session (see the type's doc).
impl Queryable for MysqlConnection {
    fn query_iter<Q: AsRef<str>>(&mut self, query: Q) -> Result<QueryResult<'_, '_, '_, Text>> {
        self.session.used = true;
        self.session.changed = true;
        let conn = self.conn.as_mut().expect(ALWAYS_HELD);
        seen(&mut self.broken, conn.query_iter(query))
    }

    fn query<T, Q>(&mut self, query: Q) -> Result<Vec<T>>
    where
        Q: AsRef<str>,
        T: FromRow,
    {
        self.text(query.as_ref(), |c, q| c.query(q))
    }

    fn query_opt<T, Q>(&mut self, query: Q) -> Result<Vec<StdResult<T, FromRowError>>>
    where
        Q: AsRef<str>,
        T: FromRow,
    {
        self.text(query.as_ref(), |c, q| c.query_opt(q))
    }

    fn query_first<T, Q>(&mut self, query: Q) -> Result<Option<T>>
    where
        Q: AsRef<str>,
        T: FromRow,
    {
        self.text(query.as_ref(), |c, q| c.query_first(q))
    }

    fn query_first_opt<T, Q>(&mut self, query: Q) -> Result<Option<StdResult<T, FromRowError>>>
    where
        Q: AsRef<str>,
        T: FromRow,
    {
        self.text(query.as_ref(), |c, q| c.query_first_opt(q))
    }

    fn query_map<T, F, Q, U>(&mut self, query: Q, f: F) -> Result<Vec<U>>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(T) -> U,
    {
        self.text(query.as_ref(), |c, q| c.query_map(q, f))
    }

    fn query_map_opt<T, F, Q, U>(&mut self, query: Q, f: F) -> Result<Vec<U>>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(StdResult<T, FromRowError>) -> U,
    {
        self.text(query.as_ref(), |c, q| c.query_map_opt(q, f))
    }

    fn query_fold<T, F, Q, U>(&mut self, query: Q, init: U, f: F) -> Result<U>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(U, T) -> U,
    {
        self.text(query.as_ref(), |c, q| c.query_fold(q, init, f))
    }

    fn query_fold_opt<T, F, Q, U>(&mut self, query: Q, init: U, f: F) -> Result<U>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(U, StdResult<T, FromRowError>) -> U,
    {
        self.text(query.as_ref(), |c, q| c.query_fold_opt(q, init, f))
    }

    fn query_drop<Q>(&mut self, query: Q) -> Result<()>
    where
        Q: AsRef<str>,
    {
        self.text(query.as_ref(), |c, q| c.query_drop(q))
    }

    fn prep<Q: AsRef<str>>(&mut self, query: Q) -> Result<Statement> {
        let sql = query.as_ref();
        let plain = is_plain(sql);
        self.session.used = true;
        let conn = self.conn.as_mut().expect(ALWAYS_HELD);
        let result = seen(&mut self.broken, conn.prep(sql));
        if let (true, Ok(stmt)) = (plain, &result) {
            if self.plain_statements.len() >= PLAIN_STATEMENTS_MAX {
                self.plain_statements.clear();
            }
            self.plain_statements.insert(stmt.id());
        }
        result
    }

    fn close(&mut self, stmt: Statement) -> Result<()> {
        self.session.used = true;
        self.plain_statements.remove(&stmt.id());
        let conn = self.conn.as_mut().expect(ALWAYS_HELD);
        seen(&mut self.broken, conn.close(stmt))
    }

    fn exec_iter<S, P>(&mut self, stmt: S, params: P) -> Result<QueryResult<'_, '_, '_, Binary>>
    where
        S: AsStatement,
        P: Into<Params>,
    {
        self.session.used = true;
        self.session.changed = true;
        let conn = self.conn.as_mut().expect(ALWAYS_HELD);
        seen(&mut self.broken, conn.exec_iter(stmt, params))
    }

    fn exec_batch<S, P, I>(&mut self, stmt: S, params: I) -> Result<()>
    where
        Self: Sized,
        S: AsStatement,
        P: Into<Params>,
        I: IntoIterator<Item = P>,
    {
        self.exec_watched(stmt, |c, s| c.exec_batch(s, params))
    }

    fn exec<T, S, P>(&mut self, stmt: S, params: P) -> Result<Vec<T>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        self.exec_watched(stmt, |c, s| c.exec(s, params))
    }

    fn exec_opt<T, S, P>(&mut self, stmt: S, params: P) -> Result<Vec<StdResult<T, FromRowError>>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        self.exec_watched(stmt, |c, s| c.exec_opt(s, params))
    }

    fn exec_first<T, S, P>(&mut self, stmt: S, params: P) -> Result<Option<T>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        self.exec_watched(stmt, |c, s| c.exec_first(s, params))
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
        self.exec_watched(stmt, |c, s| c.exec_first_opt(s, params))
    }

    fn exec_map<T, S, P, F, U>(&mut self, stmt: S, params: P, f: F) -> Result<Vec<U>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(T) -> U,
    {
        self.exec_watched(stmt, |c, s| c.exec_map(s, params, f))
    }

    fn exec_map_opt<T, S, P, F, U>(&mut self, stmt: S, params: P, f: F) -> Result<Vec<U>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(StdResult<T, FromRowError>) -> U,
    {
        self.exec_watched(stmt, |c, s| c.exec_map_opt(s, params, f))
    }

    fn exec_fold<T, S, P, U, F>(&mut self, stmt: S, params: P, init: U, f: F) -> Result<U>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(U, T) -> U,
    {
        self.exec_watched(stmt, |c, s| c.exec_fold(s, params, init, f))
    }

    fn exec_fold_opt<T, S, P, U, F>(&mut self, stmt: S, params: P, init: U, f: F) -> Result<U>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(U, StdResult<T, FromRowError>) -> U,
    {
        self.exec_watched(stmt, |c, s| c.exec_fold_opt(s, params, init, f))
    }

    fn exec_drop<S, P>(&mut self, stmt: S, params: P) -> Result<()>
    where
        S: AsStatement,
        P: Into<Params>,
    {
        self.exec_watched(stmt, |c, s| c.exec_drop(s, params))
    }
}
