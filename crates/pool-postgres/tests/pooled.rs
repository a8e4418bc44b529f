//! Pooled queries and transactions, and many threads sharing a small pool.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{connections_named, superuser, unique, with_params};
use pool_postgres::{builder_from_url, is_connection_error, pool_from_url};
use pool_testkit::PgServer;

#[test]
fn queries_and_transactions() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let table = unique("orders");
    let pool = pool_from_url(&with_params(
        &pg.url(),
        &format!("connection_limit=2&pool_name={table}&pool_timeout=5"),
    ))
    .expect("pool");
    assert_eq!(pool.name(), table);
    assert_eq!(pool.config().max_size, 2);

    let mut conn = pool.get().unwrap();
    conn.batch_execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, item text NOT NULL)"
    ))
    .unwrap();
    let one: i32 = conn
        .query_one("SELECT $1::int + 1", &[&0i32])
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
    drop(conn);

    // A committed transaction is visible to the next borrower.
    {
        let mut conn = pool.get().unwrap();
        let mut tx = conn.transaction().unwrap();
        tx.execute(&format!("INSERT INTO {table} VALUES (1, 'apple')"), &[])
            .unwrap();
        tx.execute(&format!("INSERT INTO {table} VALUES (2, 'pear')"), &[])
            .unwrap();
        tx.commit().unwrap();
    }
    // A transaction dropped without commit rolls back.
    {
        let mut conn = pool.get().unwrap();
        let mut tx = conn.transaction().unwrap();
        tx.execute(&format!("INSERT INTO {table} VALUES (3, 'plum')"), &[])
            .unwrap();
    }
    // A failed statement inside a transaction: the error is an SQL error,
    // not a connection error, and the connection stays usable.
    {
        let mut conn = pool.get().unwrap();
        let mut tx = conn.transaction().unwrap();
        let err = tx
            .execute(&format!("INSERT INTO {table} VALUES (1, 'dup')"), &[])
            .unwrap_err();
        assert!(!is_connection_error(&err), "{err}");
        drop(tx);
        let n: i64 = conn
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
    }
    // Prepared statements and parameters, on both connections.
    let (mut a, mut b) = (pool.get().unwrap(), pool.get().unwrap());
    for conn in [&mut a, &mut b] {
        let stmt = conn
            .prepare(&format!("SELECT item FROM {table} WHERE id = $1"))
            .unwrap();
        let item: String = conn.query_one(&stmt, &[&2i32]).unwrap().get(0);
        assert_eq!(item, "pear");
    }
    assert_eq!(pool.state().active, 2);
    assert!(pool.try_get().is_err(), "the pool holds only two");
    drop((a, b));
    // Their session resets run off the borrowers' threads; then both are idle.
    let back = std::time::Instant::now();
    while pool.state().idle != 2 && back.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(pool.state().idle, 2);

    pool.get()
        .unwrap()
        .batch_execute(&format!("DROP TABLE {table}"))
        .unwrap();
}

#[test]
fn thirty_two_threads_share_four_connections() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let app = unique("pool32");
    let table = unique("counts");
    let (builder, manager) = builder_from_url(&with_params(
        &pg.url(),
        &format!("application_name={app}&connection_limit=4&pool_timeout=30"),
    ))
    .unwrap();
    let pool = builder.build(manager).expect("pool");
    pool.get()
        .unwrap()
        .batch_execute(&format!(
            "CREATE TABLE {table} (thread int PRIMARY KEY, n int NOT NULL)"
        ))
        .unwrap();

    // A sampler on its own connection watches the server's view.
    let stop = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicI64::new(0));
    let sampler = {
        let mut observer = superuser(pg);
        let (stop, max_seen, app) = (stop.clone(), max_seen.clone(), app.clone());
        std::thread::spawn(move || {
            let mut samples = 0u32;
            while !stop.load(Ordering::Acquire) {
                let n = connections_named(&mut observer, &app);
                max_seen.fetch_max(n, Ordering::AcqRel);
                samples += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            samples
        })
    };

    const THREADS: i32 = 32;
    const ROUNDS: i32 = 25;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            let table = table.clone();
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let mut conn = pool.get().expect("get");
                    // A value only this thread and round produce.
                    let x = t * 1000 + round;
                    let row = conn
                        .query_one("SELECT $1::int * 2, pg_sleep(0.001)::text", &[&x])
                        .unwrap();
                    assert_eq!(row.get::<_, i32>(0), x * 2);
                    // Read-modify-write in a transaction.
                    let mut tx = conn.transaction().unwrap();
                    tx.execute(
                        &format!(
                            "INSERT INTO {table} VALUES ($1, 1) \
                             ON CONFLICT (thread) DO UPDATE SET n = {table}.n + 1"
                        ),
                        &[&t],
                    )
                    .unwrap();
                    let n: i32 = tx
                        .query_one(&format!("SELECT n FROM {table} WHERE thread = $1"), &[&t])
                        .unwrap()
                        .get(0);
                    assert_eq!(n, round + 1);
                    tx.commit().unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    stop.store(true, Ordering::Release);
    let samples = sampler.join().unwrap();

    let state = pool.state();
    assert!(state.total <= 4, "{state:?}");
    let max_seen = max_seen.load(Ordering::Acquire);
    assert!(samples > 10, "the sampler ran only {samples} times");
    assert!(
        (1..=4).contains(&max_seen),
        "the server saw {max_seen} connections from a pool of 4"
    );
    let mut conn = pool.get().unwrap();
    let rows = conn
        .query(
            &format!("SELECT thread, n FROM {table} ORDER BY thread"),
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), THREADS as usize);
    for row in rows {
        assert_eq!(
            row.get::<_, i32>(1),
            ROUNDS,
            "thread {}",
            row.get::<_, i32>(0)
        );
    }
    conn.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}
