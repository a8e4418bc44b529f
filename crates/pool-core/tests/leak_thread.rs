//! Leak reports name the thread that holds the connection, even when a new
//! thread took over a dead thread's per-thread entry. (Apart from
//! `leak_detection.rs`, whose tests count every leak warning of the
//! process.)

mod common;

use common::{eventually, TestManager};
use pool_core::Pool;
use std::time::Duration;

/// A new thread can take over a dead thread's per-thread entry (the
/// `thread_local` crate reuses thread ids): the report must still name the
/// thread that holds the connection.
#[test]
fn a_leak_report_names_the_thread_that_holds_the_connection() {
    let pool = Pool::builder()
        .max_size(2)
        .leak_detection_threshold(Some(Duration::from_millis(50)))
        .build(TestManager::new())
        .unwrap();
    std::thread::Builder::new()
        .name("first".into())
        .spawn({
            let pool = pool.clone();
            move || drop(pool.get().unwrap())
        })
        .unwrap()
        .join()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let second = std::thread::Builder::new()
        .name("second".into())
        .spawn({
            let pool = pool.clone();
            move || {
                let _held = pool.get().unwrap();
                let _ = rx.recv();
            }
        })
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || !pool
        .leaks()
        .is_empty()));
    let leaks = pool.leaks();
    assert_eq!(leaks[0].thread, "second", "{leaks:?}");
    drop(tx);
    second.join().unwrap();
}
