//! `Builder::parallel_connects` from the user's side, on the simulated
//! database: a pool short of connections fills with several connects in
//! flight, never beyond `max_size`, and a database that is down still sees
//! about one attempt at a time.

use std::time::{Duration, Instant};

use pool_core::Pool;
use pool_sim::SimDb;

const CONNECT: Duration = Duration::from_millis(20);

fn db() -> SimDb {
    SimDb::builder().connect_latency(CONNECT).build()
}

/// One at a time, 20 connects of 20 ms take 400 ms: well beyond this.
const WELL_BELOW_SERIAL: Duration = Duration::from_millis(300);

#[test]
fn a_pool_of_20_with_a_20ms_connect_fills_well_before_400ms() {
    let db = db();
    let start = Instant::now();
    let pool = Pool::builder()
        .max_size(20)
        .connection_timeout(Duration::from_secs(5))
        .build(db.manager())
        .unwrap();
    assert!(db.wait_until(Duration::from_secs(5), |s| s.open == 20));
    let took = start.elapsed();
    println!("filled 20 connections of 20 ms in {took:?}");
    assert!(took < WELL_BELOW_SERIAL, "filling took {took:?}");
    assert_eq!(pool.state().idle, 20);
    let stats = db.stats();
    assert!(stats.peak_open <= 20, "{stats}");
    assert_eq!(stats.connect_attempts, 20, "{stats}");
}

#[test]
fn one_at_a_time_is_still_available() {
    let db = db();
    let start = Instant::now();
    let _pool = Pool::builder()
        .max_size(10)
        .parallel_connects(1)
        .build(db.manager())
        .unwrap();
    assert!(db.wait_until(Duration::from_secs(5), |s| s.open == 10));
    let took = start.elapsed();
    assert!(
        took >= CONNECT * 10,
        "10 connects of 20 ms one at a time took {took:?}"
    );
}

#[test]
fn a_refill_after_a_failover_is_parallel_and_within_max_size() {
    let db = db();
    let pool = Pool::builder()
        .max_size(20)
        .parallel_connects(8)
        .connection_timeout(Duration::from_secs(5))
        .build(db.manager())
        .unwrap();
    assert!(db.wait_until(Duration::from_secs(5), |s| s.open == 20));
    // Borrowers hold some connections through the failover.
    let held: Vec<_> = (0..5).map(|_| pool.get().unwrap()).collect();
    db.restart(Duration::ZERO);
    let start = Instant::now();
    pool.soft_evict_all();
    drop(held);
    assert!(db.wait_until(Duration::from_secs(5), |s| s.open == 20));
    let took = start.elapsed();
    println!("refilled 20 connections of 20 ms in {took:?}");
    assert!(took < WELL_BELOW_SERIAL, "refilling took {took:?}");
    let stats = db.stats();
    assert!(stats.peak_open <= 20, "{stats}");
    assert_eq!(stats.violations(), 0, "{stats}");
}

#[test]
fn many_borrowers_at_once_never_open_beyond_max_size() {
    let db = db();
    let pool = Pool::builder()
        .max_size(12)
        .min_idle(Some(12))
        .parallel_connects(64)
        .connection_timeout(Duration::from_secs(10))
        .build(db.manager())
        .unwrap();
    for _ in 0..5 {
        db.restart(Duration::ZERO);
        pool.soft_evict_all();
        std::thread::scope(|s| {
            for _ in 0..40 {
                s.spawn(|| {
                    let mut c = pool.get().unwrap();
                    c.query("SELECT 1").unwrap_or_default();
                });
            }
        });
    }
    let stats = db.stats();
    assert!(stats.peak_open <= 12, "{stats}");
    assert_eq!(stats.violations(), 0, "{stats}");
}

#[test]
fn a_database_that_goes_down_sees_about_one_attempt_at_a_time() {
    let db = db();
    let pool = Pool::builder()
        .max_size(20)
        .parallel_connects(16)
        .connection_timeout(Duration::from_secs(5))
        .build(db.manager())
        .unwrap();
    assert!(db.wait_until(Duration::from_secs(5), |s| s.open == 20));
    let before = db.stats().connect_attempts;
    // Every login fails after the 20 ms connect (as a server that rejects
    // it would): connects in flight overlap, as they would in parallel.
    db.fail_next_connects(u32::MAX);
    db.restart(Duration::ZERO);
    pool.soft_evict_all();
    std::thread::sleep(Duration::from_secs(2));
    let attempts = db.stats().connect_attempts - before;
    println!("{attempts} connect attempts in 2 s against a database that is down");
    // At most one round of 16 when the outage is first met, then one at a
    // time with backoff (50 ms doubling to 1 s: about 6 in 2 s). Parallel
    // rounds after each backoff would be ~100.
    assert!(attempts <= 16 + 12, "{attempts} attempts in 2 s");
    db.heal();
    assert!(db.wait_until(Duration::from_secs(5), |s| s.open == 20));
    drop(pool);
}

#[test]
fn parallel_connects_out_of_range_is_a_config_error() {
    for n in [0, pool_core::MAX_PARALLEL_CONNECTS + 1] {
        let err = Pool::builder()
            .parallel_connects(n)
            .build(db().manager())
            .unwrap_err();
        assert!(matches!(err, pool_core::Error::Config { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("parallel_connects") && text.contains(&n.to_string()),
            "{text}"
        );
    }
}
