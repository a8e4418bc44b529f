//! Pooled queries and transactions, and many threads sharing a small pool.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{connections_of, own_user, root, unique, with_params};
use mysql::prelude::Queryable;
use mysql::TxOpts;
use pool_mysql::{builder_from_url, is_connection_error, pool_from_url};
use pool_testkit::MariaDbServer;

#[test]
fn queries_and_transactions() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let table = unique("orders");
    let pool = pool_from_url(&with_params(
        &db.url(),
        &format!("connection_limit=2&pool_name={table}&pool_timeout=5"),
    ))
    .expect("pool");
    assert_eq!(pool.name(), table);

    let mut conn = pool.get().unwrap();
    conn.query_drop(format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, item VARCHAR(20) NOT NULL) ENGINE=InnoDB"
    ))
    .unwrap();
    let two: Option<i64> = conn.exec_first("SELECT ? + 1", (1,)).unwrap();
    assert_eq!(two, Some(2));
    drop(conn);

    // A committed transaction is visible to the next borrower.
    {
        let mut conn = pool.get().unwrap();
        let mut tx = conn.start_transaction(TxOpts::default()).unwrap();
        tx.exec_drop(format!("INSERT INTO {table} VALUES (?, ?)"), (1, "apple"))
            .unwrap();
        tx.exec_drop(format!("INSERT INTO {table} VALUES (?, ?)"), (2, "pear"))
            .unwrap();
        tx.commit().unwrap();
    }
    // A transaction dropped without commit rolls back.
    {
        let mut conn = pool.get().unwrap();
        let mut tx = conn.start_transaction(TxOpts::default()).unwrap();
        tx.exec_drop(format!("INSERT INTO {table} VALUES (?, ?)"), (3, "plum"))
            .unwrap();
    }
    // An SQL error is not a connection error, and is not recorded as one.
    {
        let mut conn = pool.get().unwrap();
        let err = conn
            .exec_drop(format!("INSERT INTO {table} VALUES (?, ?)"), (1, "dup"))
            .unwrap_err();
        assert!(!is_connection_error(&err), "{err}");
        assert!(!conn.is_broken());
        let n: Option<i64> = conn
            .query_first(format!("SELECT COUNT(*) FROM {table}"))
            .unwrap();
        assert_eq!(n, Some(2));
    }
    // Prepared statements, on both connections at once.
    let (mut a, mut b) = (pool.get().unwrap(), pool.get().unwrap());
    for conn in [&mut a, &mut b] {
        let stmt = conn
            .prep(format!("SELECT item FROM {table} WHERE id = ?"))
            .unwrap();
        let item: Option<String> = conn.exec_first(&stmt, (2,)).unwrap();
        assert_eq!(item.as_deref(), Some("pear"));
    }
    assert_eq!(pool.state().active, 2);
    assert!(pool.try_get().is_err(), "the pool holds only two");
    drop((a, b));
    pool.get()
        .unwrap()
        .query_drop(format!("DROP TABLE {table}"))
        .unwrap();
}

#[test]
fn thirty_two_threads_share_four_connections() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let mut admin = root(db);
    let user = unique("pool32");
    let url = own_user(db, &mut admin, &user);
    let table = unique("counts");
    let (builder, manager) =
        builder_from_url(&with_params(&url, "connection_limit=4&pool_timeout=30")).unwrap();
    let pool = builder.build(manager).expect("pool");
    pool.get()
        .unwrap()
        .query_drop(format!(
            "CREATE TABLE {table} (thread INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB"
        ))
        .unwrap();

    // A sampler on its own connection watches the server's process list.
    let stop = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicI64::new(0));
    let sampler = {
        let mut observer = root(db);
        let (stop, max_seen, user) = (stop.clone(), max_seen.clone(), user.clone());
        std::thread::spawn(move || {
            let mut samples = 0u32;
            while !stop.load(Ordering::Acquire) {
                max_seen.fetch_max(connections_of(&mut observer, &user), Ordering::AcqRel);
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
            let (pool, table) = (pool.clone(), table.clone());
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let mut conn = pool.get().expect("get");
                    let x = t * 1000 + round;
                    let (doubled, _): (i64, i64) = conn
                        .exec_first("SELECT ? * 2, SLEEP(0.001)", (x,))
                        .unwrap()
                        .unwrap();
                    assert_eq!(doubled, i64::from(x) * 2);
                    let mut tx = conn.start_transaction(TxOpts::default()).unwrap();
                    tx.exec_drop(
                        format!(
                            "INSERT INTO {table} VALUES (?, 1) ON DUPLICATE KEY UPDATE n = n + 1"
                        ),
                        (t,),
                    )
                    .unwrap();
                    let n: Option<i32> = tx
                        .exec_first(format!("SELECT n FROM {table} WHERE thread = ?"), (t,))
                        .unwrap();
                    assert_eq!(n, Some(round + 1));
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

    assert!(pool.state().total <= 4);
    let max_seen = max_seen.load(Ordering::Acquire);
    println!("the server saw at most {max_seen} connections in {samples} samples");
    assert!(samples > 10, "the sampler ran only {samples} times");
    assert!(
        (1..=4).contains(&max_seen),
        "the server saw {max_seen} connections"
    );
    let mut conn = pool.get().unwrap();
    let rows: Vec<(i32, i32)> = conn
        .query(format!("SELECT thread, n FROM {table} ORDER BY thread"))
        .unwrap();
    assert_eq!(rows.len(), THREADS as usize);
    assert!(rows.iter().all(|&(_, n)| n == ROUNDS), "{rows:?}");
    conn.query_drop(format!("DROP TABLE {table}")).unwrap();
    drop(conn);
    drop(pool);
    admin.query_drop(format!("DROP USER '{user}'@'%'")).unwrap();
}
