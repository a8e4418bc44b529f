//! Transactions on a pooled connection whose statements stay watched (see
//! [`MysqlConnection`]'s "Knowing whether a borrower left state behind").

use std::ops::Deref;
use std::result::Result as StdResult;

use mysql::prelude::{AsStatement, FromRow, Queryable};
use mysql::{
    AccessMode, Binary, FromRowError, Params, QueryResult, Result, Statement, Text, TxOpts,
};

use crate::MysqlConnection;

/// A transaction on a [`MysqlConnection`], started with
/// [`MysqlConnection::start_transaction`]: the same methods as
/// [`mysql::Transaction`] (every [`Queryable`] method, `commit`, `rollback`;
/// dropped without either, it rolls back), but each statement goes through
/// the pooled connection, so the pool still knows what the loan left and a
/// committed transaction of plain statements costs no reset.
///
/// ```no_run
/// use mysql::{prelude::Queryable, TxOpts};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (builder, manager) = pool_mysql::builder_from_url("mysql://app:pw@localhost/app")?;
/// # let pool = builder.build(manager)?;
/// let mut conn = pool.get()?;
/// let mut tx = conn.start_transaction(TxOpts::default())?;
/// tx.exec_drop("UPDATE accounts SET balance = balance - ? WHERE id = ?", (10, 1))?;
/// tx.exec_drop("UPDATE accounts SET balance = balance + ? WHERE id = ?", (10, 2))?;
/// tx.commit()?;
/// # Ok(()) }
/// ```
pub struct Transaction<'a> {
    conn: &'a mut MysqlConnection,
    /// Committed or rolled back: nothing to do on drop.
    done: bool,
}

impl MysqlConnection {
    /// Starts a transaction with `opts`, as [`mysql::Conn::start_transaction`]
    /// does (the same statements), but watched: see [`Transaction`].
    ///
    /// This method hides the inner `Conn`'s, whose statements the pool
    /// cannot see (a loan that uses it is reset in full); reach that one
    /// with `(*conn).start_transaction(..)` if a [`mysql::Transaction`]
    /// itself is needed.
    pub fn start_transaction(&mut self, opts: TxOpts) -> Result<Transaction<'_>> {
        if let Some(level) = opts.isolation_level() {
            self.query_drop(format!("SET TRANSACTION ISOLATION LEVEL {level}"))?;
        }
        match opts.access_mode() {
            Some(AccessMode::ReadOnly) => self.query_drop("SET TRANSACTION READ ONLY")?,
            Some(AccessMode::ReadWrite) => self.query_drop("SET TRANSACTION READ WRITE")?,
            None => {}
        }
        self.query_drop(if opts.with_consistent_snapshot() {
            "START TRANSACTION WITH CONSISTENT SNAPSHOT"
        } else {
            "START TRANSACTION"
        })?;
        Ok(Transaction {
            conn: self,
            done: false,
        })
    }
}

impl Transaction<'_> {
    /// The number of rows the last statement affected, as the server
    /// reported it (as [`mysql::Transaction::affected_rows`]).
    pub fn affected_rows(&self) -> u64 {
        self.conn.affected_rows()
    }

    /// The last statement's insert id, if it reported one: `None` for no id
    /// or 0 (as [`mysql::Transaction::last_insert_id`], which has the same
    /// signature).
    pub fn last_insert_id(&self) -> Option<u64> {
        let id = self.conn.last_insert_id();
        (id != 0).then_some(id)
    }

    /// The last statement's warning count.
    pub fn warnings(&self) -> u16 {
        self.conn.warnings()
    }

    /// The last OK packet's info text, as bytes.
    pub fn info_ref(&self) -> &[u8] {
        self.conn.info_ref()
    }

    /// The last OK packet's info text.
    pub fn info_str(&self) -> std::borrow::Cow<'_, str> {
        self.conn.info_str()
    }

    /// Commits the transaction.
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.query_drop("COMMIT")
    }

    /// Rolls the transaction back.
    pub fn rollback(mut self) -> Result<()> {
        self.done = true;
        self.conn.query_drop("ROLLBACK")
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            // As mysql::Transaction: an error here leaves the transaction
            // open, which the server reports (or the failure marks), so the
            // pool's reset still ends it.
            let _ = self.conn.query_drop("ROLLBACK");
        }
    }
}

/// Read-only access to the connection (`affected_rows`, `last_insert_id`,
/// `connection_id`, …).
impl Deref for Transaction<'_> {
    type Target = MysqlConnection;

    fn deref(&self) -> &MysqlConnection {
        self.conn
    }
}

/// Every method is [`MysqlConnection`]'s, watched the same way.
impl Queryable for Transaction<'_> {
    fn query_iter<Q: AsRef<str>>(&mut self, query: Q) -> Result<QueryResult<'_, '_, '_, Text>> {
        Queryable::query_iter(&mut *self.conn, query)
    }

    fn query<T, Q>(&mut self, query: Q) -> Result<Vec<T>>
    where
        Q: AsRef<str>,
        T: FromRow,
    {
        Queryable::query(&mut *self.conn, query)
    }

    fn query_opt<T, Q>(&mut self, query: Q) -> Result<Vec<StdResult<T, FromRowError>>>
    where
        Q: AsRef<str>,
        T: FromRow,
    {
        Queryable::query_opt(&mut *self.conn, query)
    }

    fn query_first<T, Q>(&mut self, query: Q) -> Result<Option<T>>
    where
        Q: AsRef<str>,
        T: FromRow,
    {
        Queryable::query_first(&mut *self.conn, query)
    }

    fn query_first_opt<T, Q>(&mut self, query: Q) -> Result<Option<StdResult<T, FromRowError>>>
    where
        Q: AsRef<str>,
        T: FromRow,
    {
        Queryable::query_first_opt(&mut *self.conn, query)
    }

    fn query_map<T, F, Q, U>(&mut self, query: Q, f: F) -> Result<Vec<U>>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(T) -> U,
    {
        Queryable::query_map(&mut *self.conn, query, f)
    }

    fn query_map_opt<T, F, Q, U>(&mut self, query: Q, f: F) -> Result<Vec<U>>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(StdResult<T, FromRowError>) -> U,
    {
        Queryable::query_map_opt(&mut *self.conn, query, f)
    }

    fn query_fold<T, F, Q, U>(&mut self, query: Q, init: U, f: F) -> Result<U>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(U, T) -> U,
    {
        Queryable::query_fold(&mut *self.conn, query, init, f)
    }

    fn query_fold_opt<T, F, Q, U>(&mut self, query: Q, init: U, f: F) -> Result<U>
    where
        Q: AsRef<str>,
        T: FromRow,
        F: FnMut(U, StdResult<T, FromRowError>) -> U,
    {
        Queryable::query_fold_opt(&mut *self.conn, query, init, f)
    }

    fn query_drop<Q>(&mut self, query: Q) -> Result<()>
    where
        Q: AsRef<str>,
    {
        Queryable::query_drop(&mut *self.conn, query)
    }

    fn prep<Q: AsRef<str>>(&mut self, query: Q) -> Result<Statement> {
        Queryable::prep(&mut *self.conn, query)
    }

    fn close(&mut self, stmt: Statement) -> Result<()> {
        Queryable::close(&mut *self.conn, stmt)
    }

    fn exec_iter<S, P>(&mut self, stmt: S, params: P) -> Result<QueryResult<'_, '_, '_, Binary>>
    where
        S: AsStatement,
        P: Into<Params>,
    {
        Queryable::exec_iter(&mut *self.conn, stmt, params)
    }

    fn exec_batch<S, P, I>(&mut self, stmt: S, params: I) -> Result<()>
    where
        Self: Sized,
        S: AsStatement,
        P: Into<Params>,
        I: IntoIterator<Item = P>,
    {
        Queryable::exec_batch(&mut *self.conn, stmt, params)
    }

    fn exec<T, S, P>(&mut self, stmt: S, params: P) -> Result<Vec<T>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        Queryable::exec(&mut *self.conn, stmt, params)
    }

    fn exec_opt<T, S, P>(&mut self, stmt: S, params: P) -> Result<Vec<StdResult<T, FromRowError>>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        Queryable::exec_opt(&mut *self.conn, stmt, params)
    }

    fn exec_first<T, S, P>(&mut self, stmt: S, params: P) -> Result<Option<T>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
    {
        Queryable::exec_first(&mut *self.conn, stmt, params)
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
        Queryable::exec_first_opt(&mut *self.conn, stmt, params)
    }

    fn exec_map<T, S, P, F, U>(&mut self, stmt: S, params: P, f: F) -> Result<Vec<U>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(T) -> U,
    {
        Queryable::exec_map(&mut *self.conn, stmt, params, f)
    }

    fn exec_map_opt<T, S, P, F, U>(&mut self, stmt: S, params: P, f: F) -> Result<Vec<U>>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(StdResult<T, FromRowError>) -> U,
    {
        Queryable::exec_map_opt(&mut *self.conn, stmt, params, f)
    }

    fn exec_fold<T, S, P, U, F>(&mut self, stmt: S, params: P, init: U, f: F) -> Result<U>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(U, T) -> U,
    {
        Queryable::exec_fold(&mut *self.conn, stmt, params, init, f)
    }

    fn exec_fold_opt<T, S, P, U, F>(&mut self, stmt: S, params: P, init: U, f: F) -> Result<U>
    where
        S: AsStatement,
        P: Into<Params>,
        T: FromRow,
        F: FnMut(U, StdResult<T, FromRowError>) -> U,
    {
        Queryable::exec_fold_opt(&mut *self.conn, stmt, params, init, f)
    }

    fn exec_drop<S, P>(&mut self, stmt: S, params: P) -> Result<()>
    where
        S: AsStatement,
        P: Into<Params>,
    {
        Queryable::exec_drop(&mut *self.conn, stmt, params)
    }
}
