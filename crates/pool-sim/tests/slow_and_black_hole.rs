//! Extra latency and black-hole mode: calls honour their timeouts.

use std::time::{Duration, Instant};

use pool_core::ManageConnection;
use pool_sim::{SimDb, SimError};

fn db() -> SimDb {
    SimDb::builder()
        .connect_latency(Duration::ZERO)
        .query_timeout(Duration::from_millis(30))
        .connect_timeout(Duration::from_millis(30))
        .build()
}

#[test]
fn extra_latency_slows_connects_and_queries() {
    let db = db();
    db.set_extra_latency(Duration::from_millis(10));
    assert_eq!(db.extra_latency(), Duration::from_millis(10));
    let start = Instant::now();
    let mut conn = db.connect().unwrap();
    conn.query("SELECT 1").unwrap();
    assert!(start.elapsed() >= Duration::from_millis(20));
}

#[test]
fn validation_fails_when_latency_exceeds_its_timeout() {
    let db = db();
    let manager = db.manager();
    let mut conn = manager.connect().unwrap();
    manager
        .is_valid(&mut conn, Duration::from_millis(5))
        .unwrap();
    db.set_extra_latency(Duration::from_millis(100));
    let start = Instant::now();
    let err = manager
        .is_valid(&mut conn, Duration::from_millis(10))
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(10) && took < Duration::from_millis(90),
        "{took:?}"
    );
    assert_eq!(
        err,
        SimError::Timeout {
            timeout: Duration::from_millis(10)
        }
    );
    assert!(manager.has_broken(&mut conn));
    let stats = db.stats();
    assert_eq!((stats.validations, stats.validation_failures), (2, 1));
}

#[test]
fn black_hole_blocks_queries_until_their_timeout() {
    let db = db();
    let mut conn = db.connect().unwrap();
    db.set_black_hole(true);
    assert!(db.is_black_hole());
    let start = Instant::now();
    let err = conn.query("SELECT 1").unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(err.is_fatal());
    assert!(conn.is_broken());
}

#[test]
fn black_hole_blocks_is_valid_for_its_timeout_only() {
    let db = db();
    let manager = db.manager();
    let mut conn = manager.connect().unwrap();
    db.set_black_hole(true);
    let start = Instant::now();
    assert!(manager
        .is_valid(&mut conn, Duration::from_millis(15))
        .is_err());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(15) && took < Duration::from_millis(500),
        "{took:?}"
    );
}

#[test]
fn black_hole_times_out_connects() {
    let db = db();
    db.set_black_hole(true);
    let start = Instant::now();
    assert_eq!(
        db.connect().unwrap_err(),
        SimError::ConnectTimeout {
            timeout: Duration::from_millis(30)
        }
    );
    assert!(start.elapsed() >= Duration::from_millis(30));
    db.set_connect_timeout(Duration::from_millis(5));
    assert_eq!(db.connect_timeout(), Duration::from_millis(5));
}

#[test]
fn lifting_the_black_hole_releases_blocked_calls() {
    let db = db();
    let mut conn = db.connect().unwrap();
    conn.set_query_timeout(Duration::from_secs(30));
    db.set_black_hole(true);
    let db2 = db.clone();
    let lifter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        db2.set_black_hole(false);
    });
    let start = Instant::now();
    conn.query("SELECT 1").unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    lifter.join().unwrap();
}

#[test]
fn injected_validation_failures() {
    let db = db();
    let manager = db.manager();
    let mut conn = manager.connect().unwrap();
    db.fail_next_validations(1);
    assert_eq!(
        manager.is_valid(&mut conn, Duration::from_secs(1)),
        Err(SimError::InjectedFailure)
    );
    manager.is_valid(&mut conn, Duration::from_secs(1)).unwrap();
}
