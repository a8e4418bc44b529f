//! Behind PgBouncer in transaction pooling mode, with `Isolation::Rollback`.
//!
//! In transaction mode each transaction (or each statement outside one) may
//! run on another server connection, so outside a transaction only
//! single-round-trip statements work: `simple_query`, `batch_execute` and
//! the `*_typed` methods (unnamed statements). Inside a transaction the
//! server connection is pinned and everything works.

mod common;

use std::time::Duration;

use common::{unique, with_params};
use pool_core::Pool;
use pool_postgres::{Isolation, PostgresManager};
use pool_testkit::{PgBouncer, PgServer, PoolMode};
use postgres::types::Type;

fn available() -> Result<(), String> {
    PgServer::binaries_available()?;
    PgBouncer::binaries_available()
}

fn count(conn: &mut postgres::Client, table: &str) -> i64 {
    conn.query_typed_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

#[test]
fn transaction_pooling_with_rollback_isolation() {
    pool_testkit::require_or_skip!(available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let bouncer = PgBouncer::builder()
        .pool_mode(PoolMode::Transaction)
        .default_pool_size(3)
        .start(pg)
        .expect("start pgbouncer");
    let table = unique("bouncer_rows");
    let (manager, params) =
        PostgresManager::from_url(&with_params(&bouncer.url(), "connection_limit=6")).unwrap();
    let pool = params
        .apply(Pool::builder().connection_timeout(Duration::from_secs(10)))
        .build(manager.isolation(Isolation::Rollback))
        .expect("pool through pgbouncer");

    pool.get()
        .unwrap()
        .batch_execute(&format!("CREATE TABLE {table} (thread int, n int)"))
        .unwrap();

    // Many threads, transactions and single statements interleaved.
    let workers: Vec<_> = (0..12)
        .map(|t| {
            let (pool, table) = (pool.clone(), table.clone());
            std::thread::spawn(move || {
                for n in 0..20 {
                    let mut conn = pool.get().unwrap();
                    let mut tx = conn.transaction().unwrap();
                    tx.execute(&format!("INSERT INTO {table} VALUES ($1, $2)"), &[&t, &n])
                        .unwrap();
                    let mine: i64 = tx
                        .query_one(
                            &format!("SELECT count(*) FROM {table} WHERE thread = $1"),
                            &[&t],
                        )
                        .unwrap()
                        .get(0);
                    assert_eq!(mine, i64::from(n) + 1);
                    tx.commit().unwrap();
                    let doubled: i32 = conn
                        .query_typed_one("SELECT $1 * 2", &[(&n, Type::INT4)])
                        .unwrap()
                        .get(0);
                    assert_eq!(doubled, n * 2);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(count(&mut pool.get().unwrap(), &table), 12 * 20);

    // A borrower leaves a transaction open: it is rolled back on return, so
    // its write is lost and the server connection is not left pinned.
    {
        let mut a = pool.get().unwrap();
        a.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (-1, -1)"))
            .unwrap();
    }
    for _ in 0..6 {
        let mut b = pool.get().unwrap();
        let in_tx: Option<String> = b
            .query_typed_one("SELECT pg_current_xact_id_if_assigned()::text", &[])
            .unwrap()
            .get(0);
        assert_eq!(in_tx, None);
    }
    assert_eq!(count(&mut pool.get().unwrap(), &table), 12 * 20);
    let pools = bouncer.run_admin("SHOW POOLS").unwrap();
    println!("{pools}");

    // Validation through PgBouncer (idle past the alive-bypass window).
    std::thread::sleep(Duration::from_millis(600));
    let mut conn = pool.get().unwrap();
    conn.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}
