//! Connect cost, jitter, connection ids and the server's connection limit.

use std::time::{Duration, Instant};

use pool_sim::{SimDb, SimError};

#[test]
fn connect_takes_the_default_latency() {
    let db = SimDb::new();
    assert_eq!(db.connect_latency(), Duration::from_millis(2));
    let start = Instant::now();
    let _conn = db.connect().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(2));
}

#[test]
fn connect_latency_is_configurable_and_changeable() {
    let db = SimDb::builder().connect_latency(Duration::ZERO).build();
    let start = Instant::now();
    for _ in 0..20 {
        db.connect().unwrap();
    }
    assert!(start.elapsed() < Duration::from_millis(500));

    db.set_connect_latency(Duration::from_millis(15));
    let start = Instant::now();
    db.connect().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(15));
}

#[test]
fn jitter_adds_a_bounded_random_delay() {
    let db = SimDb::builder()
        .connect_latency(Duration::from_millis(1))
        .connect_jitter(Duration::from_millis(4))
        .seed(3)
        .build();
    let mut took = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        db.connect().unwrap();
        took.push(start.elapsed());
    }
    assert!(took.iter().all(|t| *t >= Duration::from_millis(1)));
    let min = took.iter().min().unwrap();
    let max = took.iter().max().unwrap();
    assert!(
        *max - *min > Duration::from_micros(300),
        "no jitter seen: {took:?}"
    );
}

#[test]
fn ids_are_unique_and_increasing() {
    let db = SimDb::builder().connect_latency(Duration::ZERO).build();
    let a = db.connect().unwrap();
    let b = db.connect().unwrap();
    drop(a);
    let c = db.connect().unwrap();
    assert!(a_lt(b.id(), c.id()));
    assert_eq!(db.open_ids(), vec![b.id(), c.id()]);
    assert_eq!(b.db().open_count(), 2);
}

fn a_lt(a: u64, b: u64) -> bool {
    a < b
}

#[test]
fn limit_refuses_with_too_many_connections() {
    let db = SimDb::builder()
        .connect_latency(Duration::ZERO)
        .max_connections(3)
        .build();
    let conns: Vec<_> = (0..3).map(|_| db.connect().unwrap()).collect();
    let err = db.connect().unwrap_err();
    assert_eq!(err, SimError::TooManyConnections { limit: 3 });
    assert!(err.to_string().contains("too many connections"), "{err}");
    assert!(err.is_connect_error());

    let stats = db.stats();
    assert_eq!((stats.connect_attempts, stats.connect_failures), (4, 1));
    drop(conns);
    db.connect().unwrap();
}

#[test]
fn limit_counts_only_live_connections_and_can_change() {
    let db = SimDb::builder()
        .connect_latency(Duration::ZERO)
        .max_connections(2)
        .build();
    let a = db.connect().unwrap();
    let _b = db.connect().unwrap();
    assert!(db.connect().is_err());
    // The server forgot a's backend when it broke; the client still holds it.
    a.break_connection();
    let c = db.connect().unwrap();
    assert_eq!(db.stats().open, 3);
    assert_eq!(db.stats().live, 2);

    db.set_max_connections(3);
    assert_eq!(db.max_connections(), 3);
    let _d = db.connect().unwrap();
    drop((a, c));
}

#[test]
fn concurrent_connects_never_exceed_the_limit() {
    let db = SimDb::builder()
        .connect_latency(Duration::from_millis(1))
        .max_connections(5)
        .build();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || db.connect().ok())
        })
        .collect();
    let conns: Vec<_> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(conns.len(), 5);
    assert_eq!(db.stats().peak_open, 5);
}
