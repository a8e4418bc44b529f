//! `min_idle` counts idle connections: that many stay ready while others
//! are lent, and the pool refills promptly when borrows take it below.
//! (`Builder::min_idle`'s promise, and HikariCP's rule.)

mod common;

use std::thread;
use std::time::Duration;

use common::{eventually, TestManager};
use pool_core::Pool;

#[test]
fn spares_are_kept_while_connections_are_lent() {
    // max 5, min_idle 2, a short idle timeout, 3 lent: the 2 spares must
    // neither time out nor go unreplaced.
    let manager = TestManager::new();
    let pool = Pool::builder()
        .max_size(5)
        .min_idle(Some(2))
        .idle_timeout(Some(Duration::from_millis(500)))
        .build(manager.clone())
        .unwrap();
    let lent: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    assert!(
        eventually(Duration::from_secs(3), || pool.state().idle >= 2),
        "{}",
        pool.state()
    );
    // Past several idle timeouts, the spares are still there.
    thread::sleep(Duration::from_millis(1500));
    let state = pool.state();
    assert_eq!(state.idle, 2, "{state}");
    assert_eq!(state.total, 5, "{state}");
    drop(lent);
}

#[test]
fn borrows_below_min_idle_are_refilled_promptly() {
    // No idle timeout: nothing closes, so nothing but the borrows themselves
    // can tell the pool that it is short of spares.
    let manager = TestManager::new();
    let pool = Pool::builder()
        .max_size(5)
        .min_idle(Some(2))
        .idle_timeout(None)
        .build(manager.clone())
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || pool.state().idle == 2));
    // Let every wake-up of the start-up fill pass first.
    thread::sleep(Duration::from_millis(500));
    let lent: Vec<_> = (0..2).map(|_| pool.get().unwrap()).collect();
    assert!(
        eventually(Duration::from_secs(2), || pool.state().idle == 2),
        "two lent, and the spares were not replaced: {}",
        pool.state()
    );
    assert_eq!(pool.state().total, 4);
    drop(lent);
}

#[test]
fn idle_connections_beyond_min_idle_time_out() {
    let manager = TestManager::new();
    let pool = Pool::builder()
        .max_size(6)
        .min_idle(Some(1))
        .idle_timeout(Some(Duration::from_millis(300)))
        .build(manager.clone())
        .unwrap();
    let lent: Vec<_> = (0..5).map(|_| pool.get().unwrap()).collect();
    drop(lent);
    assert!(
        eventually(Duration::from_secs(5), || pool.state().total == 1),
        "{}",
        pool.state()
    );
    assert_eq!(pool.state().idle, 1);
}

#[test]
fn the_pool_never_grows_past_max_size_to_keep_spares() {
    let manager = TestManager::new();
    let pool = Pool::builder()
        .max_size(3)
        .min_idle(Some(2))
        .build(manager.clone())
        .unwrap();
    let lent: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    thread::sleep(Duration::from_millis(400));
    assert_eq!(pool.state().total, 3);
    assert_eq!(
        manager
            .db
            .peak_open
            .load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    drop(lent);
}
