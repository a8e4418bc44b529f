//! The pool cannot storm a database with connects, whatever its settings:
//! when connections die as soon as they open, the creator caps its connects
//! per second (at `2 × max_size + 10`).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::TestManager;
use pool_core::Pool;

#[test]
fn connections_that_die_at_once_do_not_make_a_connect_storm() {
    // Every connection is broken as soon as it is opened (a server or a
    // proxy that kills each new session): each borrow closes it and the
    // pool opens another.
    let m = TestManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .connection_timeout(Duration::from_millis(300))
        .build(m.clone())
        .unwrap();
    m.db.broken.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let before = m.db.opened.load(Ordering::SeqCst);
    while start.elapsed() < Duration::from_secs(2) {
        assert!(pool.get().is_err());
    }
    let opened = m.db.opened.load(Ordering::SeqCst) - before;
    let secs = start.elapsed().as_secs_f64();
    // The cap is 14 a second for max_size 2; the first second is free.
    assert!(
        (opened as f64) <= 14.0 * (secs + 1.0) + 5.0,
        "{opened} connects in {secs:.1} s"
    );
    // ... and the pool recovers at once when connections live again.
    m.db.broken.store(false, Ordering::SeqCst);
    assert!(pool.get_timeout(Duration::from_secs(3)).is_ok());
}

#[test]
fn a_fast_fill_of_a_large_pool_is_not_capped() {
    // Start-up and refills are not churn: 100 connections open as fast as
    // the database allows.
    let m = TestManager::new();
    let start = Instant::now();
    let pool = Pool::builder()
        .max_size(100)
        .initialization_fail_timeout(Duration::from_secs(10))
        .build(m.clone())
        .unwrap();
    assert_eq!(pool.state().total, 100);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
