//! `PgConnection::prepare_cached`: a protocol-level statement prepared once
//! per connection is reused across loans, survives every isolation reset,
//! is bounded by `statement_cache_size`, and goes with its connection.
//! Counted on the server, in the session's own `pg_prepared_statements`.

mod common;

use std::time::Duration;

use pool_core::Pool;
use pool_postgres::{Isolation, PgConnection, PostgresManager};
use pool_testkit::PgServer;

const SQL: &str = "SELECT $1::int + 1";

fn pool_of_one(
    pg: &PgServer,
    isolation: Isolation,
    cache: usize,
) -> Pool<PostgresManager<postgres::NoTls>> {
    let (manager, _) = PostgresManager::from_url(&pg.url()).unwrap();
    Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_secs(5))
        .build(manager.isolation(isolation).statement_cache_size(cache))
        .unwrap()
}

/// The session's protocol-level statements with this text, and when each
/// was prepared (simple query protocol: prepares nothing itself).
fn server_statements(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    let query = format!(
        "SELECT prepare_time::text FROM pg_prepared_statements \
         WHERE NOT from_sql AND statement = '{}' ORDER BY 1",
        sql.replace('\'', "''")
    );
    conn.simple_query(&query)
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cached_statement_is_prepared_once_and_survives_every_isolation() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = PgServer::start().unwrap();
    for isolation in [Isolation::Full, Isolation::Rollback, Isolation::None] {
        let pool = pool_of_one(&pg, isolation, 10);
        let mut first_prepared = None;
        for loan in 0..4 {
            let mut conn = pool.get().unwrap();
            let statement = conn.prepare_cached(SQL).unwrap();
            let n: i32 = conn.query_one(&statement, &[&loan]).unwrap().get(0);
            assert_eq!(n, loan + 1);
            // Leave state behind, so the reset has work to do.
            conn.batch_execute("SET search_path TO pg_catalog").unwrap();
            let on_server = server_statements(&mut conn, SQL);
            assert_eq!(
                on_server.len(),
                1,
                "{isolation:?}, loan {loan}: {on_server:?}"
            );
            let prepared = first_prepared.get_or_insert_with(|| on_server[0].clone());
            assert_eq!(
                prepared, &on_server[0],
                "{isolation:?}: loan {loan} prepared the statement again"
            );
            assert_eq!(conn.cached_statements(), 1);
        }
    }
}

#[test]
fn the_cache_is_bounded_and_evicted_statements_are_closed_on_the_server() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = PgServer::start().unwrap();
    let pool = pool_of_one(&pg, Isolation::Full, 2);
    let sqls = [
        "SELECT $1::int + 10",
        "SELECT $1::int + 20",
        "SELECT $1::int + 30",
    ];
    {
        let mut conn = pool.get().unwrap();
        for sql in sqls {
            let statement = conn.prepare_cached(sql).unwrap();
            conn.query_one(&statement, &[&1_i32]).unwrap();
        }
        assert_eq!(conn.cached_statements(), 2);
    }
    let mut conn = pool.get().unwrap();
    let open: Vec<usize> = sqls
        .iter()
        .map(|sql| server_statements(&mut conn, sql).len())
        .collect();
    assert_eq!(open, [0, 1, 1], "the least recently used one is closed");
    // Off: nothing is kept.
    drop(conn);
    let off = pool_of_one(&pg, Isolation::Full, 0);
    let mut conn = off.get().unwrap();
    let statement = conn.prepare_cached(sqls[0]).unwrap();
    conn.query_one(&statement, &[&1_i32]).unwrap();
    assert_eq!(conn.cached_statements(), 0);
}

#[test]
fn a_cached_statement_goes_with_its_connection() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = PgServer::start().unwrap();
    let pool = pool_of_one(&pg, Isolation::Full, 10);
    let pid: i32 = {
        let mut conn = pool.get().unwrap();
        let statement = conn.prepare_cached(SQL).unwrap();
        conn.query_one(&statement, &[&1_i32]).unwrap();
        conn.query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0)
    };
    pool.soft_evict_all();
    let mut conn = pool.get().unwrap();
    let new_pid: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    assert_ne!(pid, new_pid);
    assert_eq!(conn.cached_statements(), 0, "a new connection starts empty");
    let statement = conn.prepare_cached(SQL).unwrap();
    let n: i32 = conn.query_one(&statement, &[&41]).unwrap().get(0);
    assert_eq!(n, 42);
}
