//! Many borrowers at once: fairness of the hand-off and how the pool grows
//! under a spike.

mod common;

use common::{eventually, TestManager};
use pool_core::Pool;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

#[test]
fn waiters_are_served_first_come_first_served() {
    let pool = Pool::builder()
        .max_size(1)
        .build(TestManager::new())
        .unwrap();
    let held = pool.get().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..4 {
        let (p, order) = (pool.clone(), order.clone());
        threads.push(std::thread::spawn(move || {
            let c = p.get_timeout(Duration::from_secs(10)).unwrap();
            order.lock().unwrap().push(i);
            std::thread::sleep(Duration::from_millis(5));
            drop(c);
        }));
        // Make sure waiter i is queued before waiter i + 1 arrives.
        assert!(eventually(Duration::from_secs(2), || {
            pool.state().waiting == i + 1
        }));
    }
    drop(held);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
}

#[test]
fn a_waiter_past_the_fairness_limit_is_not_overtaken() {
    // One connection, a waiter queued for longer than the pool lets
    // newcomers overtake (`BARGE_FOR`, 200 µs); the holder returns and immediately asks
    // again: the waiter must get it first.
    let pool = Pool::builder()
        .max_size(1)
        .build(TestManager::new())
        .unwrap();
    let held = pool.get().unwrap();
    let p2 = pool.clone();
    let waiter = std::thread::spawn(move || {
        let c = p2.get_timeout(Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        drop(c);
    });
    assert!(eventually(Duration::from_secs(2), || pool.state().waiting == 1));
    std::thread::sleep(Duration::from_millis(20));
    drop(held);
    assert!(
        pool.try_get().is_err(),
        "the returner took back a connection owed to a long waiter"
    );
    waiter.join().unwrap();
}

#[test]
fn a_connection_returned_while_a_waiter_is_parked_reaches_it() {
    // Waiters park after a short spin; a return must wake one (no lost
    // wake-up), whether or not it has waited past the fairness limit.
    for wait_first in [Duration::ZERO, Duration::from_millis(20)] {
        let pool = Pool::builder()
            .max_size(1)
            .build(TestManager::new())
            .unwrap();
        let held = pool.get().unwrap();
        let p2 = pool.clone();
        let waiter = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            drop(p2.get_timeout(Duration::from_secs(20)).unwrap());
            started.elapsed()
        });
        assert!(eventually(Duration::from_secs(2), || pool.state().waiting == 1));
        std::thread::sleep(wait_first);
        drop(held);
        let waited = waiter.join().unwrap();
        assert!(
            waited < Duration::from_secs(10),
            "woken only by its timeout: {waited:?}"
        );
    }
}

#[test]
fn a_spike_opens_few_connections() {
    // HikariCP's spike scenario: 50 borrowers at once, min_idle 5, max 50,
    // a 30 ms connect. Returns serve most of them long before new connections
    // would be ready, so the creator skips most requests.
    let m = TestManager::with_connect_delay(30);
    let pool = Pool::builder()
        .max_size(50)
        .min_idle(Some(5))
        .build(m.clone())
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || pool.state().idle == 5));
    let barrier = Barrier::new(50);
    std::thread::scope(|s| {
        for _ in 0..50 {
            s.spawn(|| {
                barrier.wait();
                let c = pool.get_timeout(Duration::from_secs(10)).unwrap();
                std::thread::sleep(Duration::from_millis(1));
                drop(c);
            });
        }
    });
    let total = m.db.opened.load(Ordering::SeqCst);
    println!("spike of 50 at min_idle 5: {total} connections opened in all");
    assert!(total <= 15, "the spike opened {total} connections");
}
