//! diesel's connection traits for the pool's loans, forwarding to the
//! pooled connection: what diesel's `r2d2` module implements for r2d2's
//! `PooledConnection`, so `&mut conn` is a diesel connection.

use std::marker::PhantomData;

use diesel::connection::{
    CacheSize, Connection, ConnectionSealed, Instrumentation, LoadConnection, SimpleConnection,
    TransactionManager, TransactionManagerStatus,
};
use diesel::expression::QueryMetadata;
use diesel::migration::MigrationConnection;
use diesel::query_builder::{Query, QueryFragment, QueryId};
use diesel::query_dsl::UpdateAndFetchResults;
use diesel::result::{ConnectionError, ConnectionResult, QueryResult};

use crate::{ManageConnection, PooledConnection};

impl<M> SimpleConnection for PooledConnection<'_, M>
where
    M: ManageConnection,
    M::Connection: Connection,
{
    fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        (**self).batch_execute(query)
    }
}

impl<M> ConnectionSealed for PooledConnection<'_, M>
where
    M: ManageConnection,
    M::Connection: ConnectionSealed,
{
}

impl<M> Connection for PooledConnection<'_, M>
where
    M: ManageConnection,
    M::Connection: Connection,
{
    type Backend = <M::Connection as Connection>::Backend;
    type TransactionManager =
        PoolTransactionManager<<M::Connection as Connection>::TransactionManager>;

    /// A loan comes from a pool: this always fails (as diesel's r2d2 does).
    fn establish(_: &str) -> ConnectionResult<Self> {
        Err(ConnectionError::BadConnection(String::from(
            "a pooled connection cannot be established directly: call `Pool::get()`",
        )))
    }

    fn begin_test_transaction(&mut self) -> QueryResult<()> {
        (**self).begin_test_transaction()
    }

    fn execute_returning_count<T>(&mut self, source: &T) -> QueryResult<usize>
    where
        T: QueryFragment<Self::Backend> + QueryId,
    {
        (**self).execute_returning_count(source)
    }

    fn transaction_state(
        &mut self,
    ) -> &mut <Self::TransactionManager as TransactionManager<Self>>::TransactionStateData {
        (**self).transaction_state()
    }

    fn instrumentation(&mut self) -> &mut dyn Instrumentation {
        (**self).instrumentation()
    }

    fn set_instrumentation(&mut self, instrumentation: impl Instrumentation) {
        (**self).set_instrumentation(instrumentation)
    }

    fn set_prepared_statement_cache_size(&mut self, size: CacheSize) {
        (**self).set_prepared_statement_cache_size(size)
    }
}

impl<B, M> LoadConnection<B> for PooledConnection<'_, M>
where
    M: ManageConnection,
    M::Connection: LoadConnection<B>,
{
    type Cursor<'conn, 'query>
        = <M::Connection as LoadConnection<B>>::Cursor<'conn, 'query>
    where
        Self: 'conn;
    type Row<'conn, 'query>
        = <M::Connection as LoadConnection<B>>::Row<'conn, 'query>
    where
        Self: 'conn;

    fn load<'conn, 'query, T>(
        &'conn mut self,
        source: T,
    ) -> QueryResult<Self::Cursor<'conn, 'query>>
    where
        T: Query + QueryFragment<Self::Backend> + QueryId + 'query,
        Self::Backend: QueryMetadata<T::SqlType>,
    {
        (**self).load(source)
    }
}

impl<M> MigrationConnection for PooledConnection<'_, M>
where
    M: ManageConnection,
    M::Connection: MigrationConnection,
{
    fn setup(&mut self) -> QueryResult<usize> {
        (**self).setup()
    }
}

impl<Changes, Output, M> UpdateAndFetchResults<Changes, Output> for PooledConnection<'_, M>
where
    M: ManageConnection,
    M::Connection: UpdateAndFetchResults<Changes, Output>,
{
    fn update_and_fetch(&mut self, changeset: Changes) -> QueryResult<Output> {
        (**self).update_and_fetch(changeset)
    }
}

/// The transaction manager of a loan: the pooled connection's own, reached
/// through the loan (diesel's r2d2 has the same, hidden, type). Named only
/// as the loan's `Connection::TransactionManager`.
pub struct PoolTransactionManager<T>(PhantomData<T>);

impl<'a, M, T> TransactionManager<PooledConnection<'a, M>> for PoolTransactionManager<T>
where
    M: ManageConnection,
    M::Connection: Connection<TransactionManager = T>,
    T: TransactionManager<M::Connection>,
{
    type TransactionStateData = T::TransactionStateData;

    fn begin_transaction(conn: &mut PooledConnection<'a, M>) -> QueryResult<()> {
        T::begin_transaction(&mut **conn)
    }

    fn rollback_transaction(conn: &mut PooledConnection<'a, M>) -> QueryResult<()> {
        T::rollback_transaction(&mut **conn)
    }

    fn commit_transaction(conn: &mut PooledConnection<'a, M>) -> QueryResult<()> {
        T::commit_transaction(&mut **conn)
    }

    fn transaction_manager_status_mut<'c>(
        conn: &'c mut PooledConnection<'a, M>,
    ) -> &'c mut TransactionManagerStatus {
        T::transaction_manager_status_mut(&mut **conn)
    }
}
