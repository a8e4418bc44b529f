//! `Pool::run_idempotent` over the simulated database: sessions the server
//! ended without the pool knowing (`kill_all_silently`, what a server
//! restart or `pg_terminate_backend` leaves behind) are lent within the
//! alive-bypass window; the helper retries once on a validated connection,
//! and only for errors the manager classifies as a broken connection.

use std::fmt;
use std::time::Duration;

use pool_core::{Pool, RunError};
use pool_sim::{SimDb, SimError, SimManager};

fn pool(db: &SimDb, max_size: u32) -> Pool<SimManager> {
    Pool::builder()
        .max_size(max_size)
        .connection_timeout(Duration::from_secs(5))
        .build(db.manager())
        .unwrap()
}

#[test]
fn a_killed_session_fails_a_plain_borrow_but_not_the_helper() {
    let db = SimDb::new();
    let pool = pool(&db, 1);
    drop(pool.get().unwrap()); // used just now: the next borrow skips validation
    assert_eq!(db.kill_all_silently(), 1);
    let err = pool.get().unwrap().query("SELECT 1").unwrap_err();
    assert!(err.is_fatal(), "{err}");

    drop(pool.get().unwrap()); // its replacement, used just now
    assert_eq!(db.kill_all_silently(), 1);
    let mut calls = 0;
    let rows = pool
        .run_idempotent(|conn| {
            calls += 1;
            conn.query("SELECT 1")
        })
        .unwrap();
    assert_eq!((rows, calls), (1, 2));
    // The dead connection was closed, not put back.
    let stats = db.stats();
    assert_eq!(stats.open, 1, "{stats:?}");
}

#[test]
fn the_retry_gets_a_live_connection_even_when_every_idle_one_is_dead() {
    let db = SimDb::new();
    let pool = pool(&db, 4);
    let held: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    drop(held);
    assert_eq!(db.kill_all_silently(), 4);
    let mut calls = 0;
    let rows = pool
        .run_idempotent(|conn| {
            calls += 1;
            conn.query("SELECT 1")
        })
        .unwrap();
    assert_eq!((rows, calls), (1, 2), "the work ran more than twice");
}

#[test]
fn other_errors_are_not_retried() {
    let db = SimDb::new();
    let pool = pool(&db, 1);
    let mut calls = 0;
    let err = pool
        .run_idempotent(|conn| {
            calls += 1;
            conn.query("COMMIT") // no transaction: an SQL error, not a broken connection
        })
        .unwrap_err();
    assert_eq!(calls, 1);
    assert!(
        matches!(err, RunError::Failed(SimError::InvalidState { .. })),
        "{err}"
    );
    assert_eq!(db.stats().broken, 0);
    assert_eq!(pool.metrics().closed.broken, 0);
}

#[test]
fn a_second_broken_failure_is_returned_and_its_connection_closed() {
    let db = SimDb::new();
    let pool = pool(&db, 2);
    let mut ids = Vec::new();
    let err = pool
        .run_idempotent(|conn| {
            ids.push(conn.id());
            conn.break_connection(); // every attempt breaks its connection
            conn.query("SELECT 1")
        })
        .unwrap_err();
    assert!(
        matches!(err, RunError::Failed(SimError::Broken { .. })),
        "{err}"
    );
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "retried on the same connection");
    assert!(db.wait_until(Duration::from_secs(5), |s| s.closed >= 2));
}

/// An application's error, wrapping the driver's as its source.
#[derive(Debug)]
enum AppError {
    Db(SimError),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("loading the order failed")
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AppError::Db(e) => Some(e),
        }
    }
}

#[test]
fn the_manager_finds_the_driver_error_in_the_applications_error() {
    let db = SimDb::new();
    let pool = pool(&db, 1);
    drop(pool.get().unwrap());
    db.kill_all_silently();
    let mut calls = 0;
    let order = pool
        .run_idempotent(|conn| {
            calls += 1;
            conn.query("SELECT * FROM orders WHERE id = 7")
                .map_err(AppError::Db)
        })
        .unwrap();
    assert_eq!((order, calls), (1, 2));
}

#[test]
fn no_connection_is_a_pool_error() {
    let db = SimDb::new();
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(100))
        .build(db.manager())
        .unwrap();
    let _held = pool.get().unwrap();
    let err = pool
        .run_idempotent(|conn| conn.query("SELECT 1"))
        .unwrap_err();
    assert!(matches!(&err, RunError::Pool(e) if e.is_timeout()), "{err}");
}

#[test]
fn the_retry_gives_up_with_the_pools_error_when_no_live_connection_comes() {
    let db = SimDb::new();
    let pool = Pool::builder()
        .max_size(2)
        .connection_timeout(Duration::from_millis(500))
        .build(db.manager())
        .unwrap();
    let held: Vec<_> = (0..2).map(|_| pool.get().unwrap()).collect();
    drop(held);
    db.kill_all_silently();
    db.set_refuse_connections(true); // the server is gone for good
    let start = std::time::Instant::now();
    let mut calls = 0;
    let err = pool
        .run_idempotent(|conn| {
            calls += 1;
            conn.query("SELECT 1")
        })
        .unwrap_err();
    assert!(matches!(err, RunError::Pool(_)), "{err}");
    assert_eq!(calls, 1, "the work ran on a dead connection again");
    // One `connection_timeout` for the retry's search, with room for a
    // loaded machine; never waits without bound.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(db.stats().open, 0, "a dead connection was kept");
}
