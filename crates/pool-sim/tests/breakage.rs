//! Breaking open connections: all, a fraction, one.

use std::time::Duration;

use pool_core::ManageConnection;
use pool_sim::{SimDb, SimError};

fn db() -> SimDb {
    SimDb::builder()
        .connect_latency(Duration::ZERO)
        .max_connections(1000)
        .seed(11)
        .build()
}

#[test]
fn break_all_breaks_every_open_connection() {
    let db = db();
    let manager = db.manager();
    let mut conns: Vec<_> = (0..5).map(|_| manager.connect().unwrap()).collect();
    assert!(conns.iter_mut().all(|c| !manager.has_broken(c)));
    assert_eq!(db.break_all(), 5);
    assert_eq!(db.break_all(), 0, "already broken");
    for c in &mut conns {
        assert!(manager.has_broken(c));
        assert!(matches!(c.query("SELECT 1"), Err(SimError::Broken { .. })));
    }
    let stats = db.stats();
    assert_eq!((stats.broken, stats.open, stats.live), (5, 5, 0));
    drop(conns);
    db.verify_all_closed().unwrap();
}

#[test]
fn break_fraction_is_roughly_the_fraction() {
    let db = db();
    let conns: Vec<_> = (0..200).map(|_| db.connect().unwrap()).collect();
    let broken = db.break_fraction(0.3);
    assert!((30..=90).contains(&broken), "{broken}");
    assert_eq!(conns.iter().filter(|c| c.is_broken()).count(), broken);
    assert_eq!(db.break_fraction(-1.0), 0);
    assert_eq!(db.break_fraction(2.0), 200 - broken);
}

#[test]
fn break_fraction_repeats_for_a_seed() {
    let run = || {
        let db = db();
        let conns: Vec<_> = (0..50).map(|_| db.connect().unwrap()).collect();
        db.break_fraction(0.5);
        conns.iter().map(|c| c.is_broken()).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn break_one_connection() {
    let db = db();
    let a = db.connect().unwrap();
    let b = db.connect().unwrap();
    assert!(db.break_connection(a.id()));
    assert!(!db.break_connection(a.id()));
    assert!(!db.break_connection(9999));
    assert!(a.is_broken());
    assert!(!b.is_broken());
}

#[test]
fn a_connection_breaking_during_a_query_fails_it() {
    let db = db();
    db.set_query_latency(Duration::from_millis(50));
    let mut conn = db.connect().unwrap();
    let db2 = db.clone();
    let breaker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        db2.break_all()
    });
    assert!(matches!(
        conn.query("SELECT 1"),
        Err(SimError::Broken { .. })
    ));
    assert_eq!(breaker.join().unwrap(), 1);
}
