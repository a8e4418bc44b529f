//! A connection given back while the pool resets it in the background:
//! `state()` does not report it as lent, and `close()` waits for the reset
//! and closes it.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{eventually, TestManager};
use pool_core::Pool;

fn resetting_pool(reset_ms: u64) -> (Pool<TestManager>, TestManager) {
    let m = TestManager::new();
    m.db.reset_delay_ms.store(reset_ms, Ordering::SeqCst);
    let pool = Pool::builder()
        .max_size(2)
        .reset_in_background(true)
        .build(m.clone())
        .unwrap();
    (pool, m)
}

#[test]
fn a_connection_being_reset_is_not_reported_as_lent() {
    let (pool, _m) = resetting_pool(200);
    let mut conn = pool.get().unwrap();
    conn.dirty = true;
    drop(conn);
    let state = pool.state();
    assert_eq!(state.active, 0, "{state}");
    assert_eq!(state.returning, 1, "{state}");
    assert_eq!(state.total, 2, "{state}");
    assert_eq!(state.idle, 1, "{state}");
    assert!(state.to_string().contains("returning=1"), "{state}");
    assert!(eventually(Duration::from_secs(2), || pool.state().idle == 2));
    assert_eq!(pool.state().returning, 0);
}

#[test]
fn close_right_after_a_loan_waits_for_its_reset_and_closes_it() {
    let (pool, m) = resetting_pool(150);
    let mut conn = pool.get().unwrap();
    conn.dirty = true;
    drop(conn);
    pool.close();
    // close() returned: nothing is left open, nothing was closed twice.
    assert_eq!(m.db.open_now(), 0, "{}", pool.state());
    let state = pool.state();
    assert_eq!(
        (state.total, state.active, state.returning),
        (0, 0, 0),
        "{state}"
    );
    assert_eq!(m.db.resets.load(Ordering::SeqCst), 1);
    assert_eq!(m.db.closed_twice.load(Ordering::SeqCst), 0);
}
