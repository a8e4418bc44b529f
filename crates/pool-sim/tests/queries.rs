//! Round trips: latency, statement parsing, counters.

use std::time::{Duration, Instant};

use pool_sim::{SimDb, SimError};

fn db() -> SimDb {
    SimDb::builder().connect_latency(Duration::ZERO).build()
}

#[test]
fn default_query_latency_is_fifty_microseconds() {
    let db = SimDb::new();
    assert_eq!(db.query_latency(), Duration::from_micros(50));
    let mut conn = db.connect().unwrap();
    let start = Instant::now();
    for _ in 0..10 {
        conn.query("SELECT 1").unwrap();
    }
    assert!(start.elapsed() >= Duration::from_micros(500));
}

#[test]
fn long_latency_sleeps() {
    let db = db();
    db.set_query_latency(Duration::from_millis(5));
    let mut conn = db.connect().unwrap();
    let start = Instant::now();
    conn.query("SELECT pg_sleep(0)").unwrap();
    assert!(start.elapsed() >= Duration::from_millis(5));
}

#[test]
fn precise_short_waits_spin_close_to_the_latency() {
    let db = SimDb::builder()
        .connect_latency(Duration::ZERO)
        .query_latency(Duration::from_micros(100))
        .precise_short_waits(true)
        .build();
    let mut conn = db.connect().unwrap();
    let start = Instant::now();
    for _ in 0..20 {
        conn.query("SELECT 1").unwrap();
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(2), "{took:?}");
}

#[test]
fn statements_are_understood() {
    let db = db();
    let mut conn = db.connect().unwrap();
    assert_eq!(conn.query("select * from t where a = 1").unwrap(), 1);
    assert_eq!(conn.query("SET a = 1").unwrap(), 0);
    assert_eq!(conn.query("set b to 'two';").unwrap(), 0);
    assert_eq!(conn.var("a"), Some("1"));
    assert_eq!(conn.var("b"), Some("two"));
    assert_eq!(conn.query("DISCARD ALL").unwrap(), 0);
    assert!(conn.is_session_clean());
    assert_eq!(conn.query("start transaction").unwrap(), 0);
    assert!(conn.in_transaction());
    assert_eq!(conn.query("END").unwrap(), 0);
    assert!(!conn.in_transaction());
    assert!(matches!(
        conn.query("SET nonsense"),
        Err(SimError::InvalidState { .. })
    ));
    assert_eq!(conn.round_trips(), 6);
}

#[test]
fn round_trips_are_counted() {
    let db = db();
    let mut conn = db.connect().unwrap();
    conn.query("SELECT 1").unwrap();
    conn.begin().unwrap();
    conn.commit().unwrap();
    assert!(conn.commit().is_err());
    let stats = db.stats();
    assert_eq!(stats.queries, 4);
    assert_eq!(
        stats.query_errors, 0,
        "an invalid COMMIT is not a failed round trip"
    );
    conn.break_connection();
    assert!(conn.query("SELECT 1").is_err());
    assert_eq!(db.stats().query_errors, 1);
}

#[test]
fn query_timeout_is_per_connection() {
    let db = SimDb::builder()
        .connect_latency(Duration::ZERO)
        .query_timeout(Duration::from_millis(7))
        .build();
    let mut conn = db.connect().unwrap();
    assert_eq!(conn.query_timeout(), Duration::from_millis(7));
    conn.set_query_timeout(Duration::from_millis(9));
    assert_eq!(conn.query_timeout(), Duration::from_millis(9));
    db.set_query_timeout(Duration::from_millis(11));
    assert_eq!(
        db.connect().unwrap().query_timeout(),
        Duration::from_millis(11)
    );
    assert_eq!(db.query_timeout(), Duration::from_millis(11));
}
