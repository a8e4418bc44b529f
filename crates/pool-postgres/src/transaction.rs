//! Transactions on a pooled connection whose statements stay watched (see
//! [`PgConnection`]'s "Knowing whether a borrower left state behind").

use std::ops::Deref;

use postgres::types::{ToSql, Type};
use postgres::{Row, SimpleQueryMessage, Statement};

use crate::connection::Query;
use crate::PgConnection;

/// A transaction on a [`PgConnection`], started with
/// [`PgConnection::transaction`]: the methods of [`postgres::Transaction`]
/// that run statements (`query`, `execute`, …), `commit`, `rollback`, and
/// nested transactions as savepoints; dropped without `commit`, it rolls
/// back. Its statements go through the pooled connection, so a committed
/// transaction of plain statements costs no reset.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (builder, manager) = pool_postgres::builder_from_url("postgres://app@localhost/app")?;
/// # let pool = builder.build(manager)?;
/// let mut conn = pool.get()?;
/// let mut tx = conn.transaction()?;
/// tx.execute("UPDATE accounts SET balance = balance - $1 WHERE id = $2", &[&10_i64, &1_i32])?;
/// tx.execute("UPDATE accounts SET balance = balance + $1 WHERE id = $2", &[&10_i64, &2_i32])?;
/// tx.commit()?;
/// # Ok(()) }
/// ```
pub struct Transaction<'a> {
    conn: &'a mut PgConnection,
    /// 0 for the transaction itself, n for the n-th nested savepoint.
    depth: u32,
    /// Committed or rolled back: nothing to do on drop.
    done: bool,
}

impl PgConnection {
    /// Begins a transaction, as [`postgres::Client::transaction`] does, but
    /// watched: see [`Transaction`].
    ///
    /// This method hides the client's, whose statements the pool cannot
    /// see (a loan that uses it gets the whole reset); reach that one with
    /// `(**conn).transaction()` when a [`postgres::Transaction`] itself is
    /// needed (`copy_in`, portals, `build_transaction`).
    pub fn transaction(&mut self) -> Result<Transaction<'_>, postgres::Error> {
        self.batch_execute("BEGIN")?;
        Ok(Transaction {
            conn: self,
            depth: 0,
            done: false,
        })
    }
}

impl Transaction<'_> {
    /// Commits the transaction (releases the savepoint of a nested one).
    pub fn commit(mut self) -> Result<(), postgres::Error> {
        self.done = true;
        if self.depth == 0 {
            self.conn.batch_execute("COMMIT")
        } else {
            let sql = format!("RELEASE SAVEPOINT pool_sp_{}", self.depth);
            self.conn.batch_execute(&sql)
        }
    }

    /// Rolls the transaction back (to its savepoint, for a nested one).
    pub fn rollback(mut self) -> Result<(), postgres::Error> {
        self.done = true;
        self.end()
    }

    fn end(&mut self) -> Result<(), postgres::Error> {
        if self.depth == 0 {
            self.conn.batch_execute("ROLLBACK")
        } else {
            let sql = format!("ROLLBACK TO SAVEPOINT pool_sp_{}", self.depth);
            self.conn.batch_execute(&sql)?;
            let sql = format!("RELEASE SAVEPOINT pool_sp_{}", self.depth);
            self.conn.batch_execute(&sql)
        }
    }

    /// A nested transaction: a savepoint, released by `commit` and rolled
    /// back to by `rollback` or drop.
    pub fn transaction(&mut self) -> Result<Transaction<'_>, postgres::Error> {
        let depth = self.depth + 1;
        self.conn
            .batch_execute(&format!("SAVEPOINT pool_sp_{depth}"))?;
        Ok(Transaction {
            conn: &mut *self.conn,
            depth,
            done: false,
        })
    }

    /// [`postgres::Transaction::execute`], watched.
    pub fn execute<T>(
        &mut self,
        query: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error>
    where
        T: ?Sized + Query,
    {
        self.conn.execute(query, params)
    }

    /// [`postgres::Transaction::query`], watched.
    pub fn query<T>(
        &mut self,
        query: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error>
    where
        T: ?Sized + Query,
    {
        self.conn.query(query, params)
    }

    /// [`postgres::Transaction::query_one`], watched.
    pub fn query_one<T>(
        &mut self,
        query: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error>
    where
        T: ?Sized + Query,
    {
        self.conn.query_one(query, params)
    }

    /// [`postgres::Transaction::query_opt`], watched.
    pub fn query_opt<T>(
        &mut self,
        query: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error>
    where
        T: ?Sized + Query,
    {
        self.conn.query_opt(query, params)
    }

    /// [`postgres::Transaction::simple_query`], watched.
    pub fn simple_query(
        &mut self,
        query: &str,
    ) -> Result<Vec<SimpleQueryMessage>, postgres::Error> {
        self.conn.simple_query(query)
    }

    /// [`postgres::Transaction::batch_execute`], watched.
    pub fn batch_execute(&mut self, query: &str) -> Result<(), postgres::Error> {
        self.conn.batch_execute(query)
    }

    /// [`postgres::Transaction::prepare`], watched.
    pub fn prepare(&mut self, query: &str) -> Result<Statement, postgres::Error> {
        self.conn.prepare(query)
    }

    /// [`postgres::Transaction::prepare_typed`], watched.
    pub fn prepare_typed(
        &mut self,
        query: &str,
        types: &[Type],
    ) -> Result<Statement, postgres::Error> {
        self.conn.prepare_typed(query, types)
    }

    /// [`PgConnection::prepare_cached`], inside the transaction.
    pub fn prepare_cached(&mut self, query: &str) -> Result<Statement, postgres::Error> {
        self.conn.prepare_cached(query)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            // As postgres::Transaction: a failure leaves the transaction
            // open, which the failed statement marks for the whole reset.
            let _ = self.end();
        }
    }
}

/// Read-only access to the connection.
impl Deref for Transaction<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn
    }
}
