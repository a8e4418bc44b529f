//! Injected connect failures: refusal, failing N connects, panics, restarts.

use std::time::{Duration, Instant};

use pool_sim::{SimDb, SimError};

fn db() -> SimDb {
    SimDb::builder().connect_latency(Duration::ZERO).build()
}

#[test]
fn refusal_is_immediate_and_clear() {
    let db = SimDb::builder()
        .connect_latency(Duration::from_millis(50))
        .build();
    db.set_refuse_connections(true);
    assert!(db.is_refusing());
    assert!(!db.is_accepting());
    let start = Instant::now();
    let err = db.connect().unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(50));
    assert_eq!(err, SimError::ConnectionRefused);
    assert!(err.to_string().starts_with("connection refused"));
    db.set_refuse_connections(false);
    assert!(db.is_accepting());
}

#[test]
fn refusal_leaves_open_connections_alone() {
    let db = db();
    let mut conn = db.connect().unwrap();
    db.set_refuse_connections(true);
    conn.query("SELECT 1").unwrap();
}

#[test]
fn fail_next_connects_counts_down() {
    let db = db();
    db.fail_next_connects(3);
    for _ in 0..3 {
        assert_eq!(db.connect().unwrap_err(), SimError::InjectedConnectFailure);
    }
    db.connect().unwrap();
    let stats = db.stats();
    assert_eq!((stats.connect_attempts, stats.connect_failures), (4, 3));
    assert_eq!(stats.opened, 1);
}

#[test]
fn panic_next_connects_panics() {
    let db = db();
    db.panic_next_connects(1);
    let db2 = db.clone();
    let result = std::thread::spawn(move || db2.connect().map(drop)).join();
    assert!(result.is_err());
    let _conn = db.connect().unwrap();
    assert_eq!(db.stats().open, 1);
}

#[test]
fn restart_breaks_refuses_then_accepts() {
    let db = db();
    let mut conn = db.connect().unwrap();
    db.restart(Duration::from_millis(40));
    assert!(conn.is_broken());
    assert!(matches!(
        conn.query("SELECT 1"),
        Err(SimError::Broken { .. })
    ));
    assert_eq!(db.connect().unwrap_err(), SimError::ConnectionRefused);
    std::thread::sleep(Duration::from_millis(50));
    assert!(db.is_accepting());
    db.connect().unwrap().query("SELECT 1").unwrap();
}

#[test]
fn restart_during_a_handshake_resets_it() {
    let db = SimDb::builder()
        .connect_latency(Duration::from_millis(60))
        .build();
    let db2 = db.clone();
    let connecting = std::thread::spawn(move || db2.connect().map(drop));
    std::thread::sleep(Duration::from_millis(20));
    db.restart(Duration::from_millis(1));
    assert_eq!(connecting.join().unwrap(), Err(SimError::ConnectionReset));
}

#[test]
fn heal_switches_everything_off() {
    let db = db();
    db.set_refuse_connections(true);
    db.restart(Duration::from_secs(60));
    db.fail_next_connects(5);
    db.set_extra_latency(Duration::from_secs(1));
    db.set_black_hole(true);
    db.heal();
    assert!(db.is_accepting());
    assert_eq!(db.extra_latency(), Duration::ZERO);
    db.connect().unwrap().query("SELECT 1").unwrap();
}
