//! Per-connection data (`PooledConnection::extensions`): it travels with
//! the connection from loan to loan, and is dropped when the connection is
//! closed (never passed to the connection that takes its seat).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::TestManager;
use pool_core::Pool;

/// Counts its drops.
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn pool(max_size: u32) -> Pool<TestManager> {
    Pool::builder()
        .max_size(max_size)
        .build(TestManager::new())
        .unwrap()
}

#[test]
fn data_travels_with_its_connection_across_loans() {
    let pool = pool(2);
    let (mut a, mut b) = (pool.get().unwrap(), pool.get().unwrap());
    for conn in [&mut a, &mut b] {
        let tag = format!("for {}", conn.id);
        conn.extensions_mut().insert(tag);
    }
    drop((a, b));
    for _ in 0..10 {
        let (a, b) = (pool.get().unwrap(), pool.get().unwrap());
        for conn in [&a, &b] {
            assert_eq!(
                conn.extensions().get::<String>(),
                Some(&format!("for {}", conn.id))
            );
        }
    }
}

#[test]
fn data_is_dropped_when_its_connection_is_closed_and_not_inherited() {
    let pool = pool(1);
    let drops = Arc::new(AtomicUsize::new(0));
    let mut conn = pool.get().unwrap();
    conn.extensions_mut().insert(Tracked(drops.clone()));
    drop(conn);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "dropped while the connection lives"
    );

    let mut conn = pool.get().unwrap();
    conn.mark_broken();
    drop(conn);
    assert_eq!(drops.load(Ordering::SeqCst), 1);

    // The replacement, in the same seat, starts with nothing.
    let conn = pool.get().unwrap();
    assert!(conn.extensions().is_empty());
}

#[test]
fn data_is_dropped_when_the_pool_closes_and_by_detach() {
    let pool = pool(2);
    let drops = Arc::new(AtomicUsize::new(0));
    let (mut a, mut b) = (pool.get().unwrap(), pool.get().unwrap());
    a.extensions_mut().insert(Tracked(drops.clone()));
    b.extensions_mut().insert(Tracked(drops.clone()));
    drop(a);
    let _conn = b.detach();
    assert_eq!(drops.load(Ordering::SeqCst), 1, "detach drops the data");
    pool.close();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        2,
        "close drops the idle one's"
    );
}

#[test]
fn data_is_dropped_when_the_housekeeper_retires_the_connection() {
    let pool = Pool::builder()
        .max_size(1)
        .idle_timeout(None)
        .max_lifetime(Some(Duration::from_millis(300)))
        .build(TestManager::new())
        .unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    pool.get()
        .unwrap()
        .extensions_mut()
        .insert(Tracked(drops.clone()));
    assert!(common::eventually(Duration::from_secs(5), || drops
        .load(Ordering::SeqCst)
        == 1));
}
