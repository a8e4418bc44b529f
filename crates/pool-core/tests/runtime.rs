//! Run-time controls: resize, suspend/resume, soft eviction, fail fast.

mod common;

use common::{eventually, TestManager};
use pool_core::{Error, Pool};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[test]
fn resize_up_lends_more() {
    let m = TestManager::new();
    let pool = Pool::builder().max_size(1).build(m).unwrap();
    let a = pool.get().unwrap();
    assert!(pool.try_get().is_err());
    pool.resize(3).unwrap();
    let b = pool.get_timeout(Duration::from_secs(2)).unwrap();
    let c = pool.get_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(pool.state().total, 3);
    drop((a, b, c));
}

#[test]
fn resize_down_retires_surplus_as_it_comes_back() {
    let m = TestManager::new();
    let pool = Pool::builder().max_size(4).build(m.clone()).unwrap();
    let lent: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    pool.resize(2).unwrap();
    assert_eq!(pool.state().max_size, 2);
    drop(lent);
    assert!(eventually(Duration::from_secs(2), || pool.state().total == 2));
    assert_eq!(m.db.open_now(), 2);
    let held: Vec<_> = (0..2).map(|_| pool.get().unwrap()).collect();
    assert!(pool.get_timeout(Duration::from_millis(20)).is_err());
    drop(held);
    assert!(matches!(pool.resize(0), Err(Error::Config { .. })));
}

#[test]
fn suspend_makes_getters_wait_until_resume() {
    let pool = Pool::builder()
        .max_size(1)
        .build(TestManager::new())
        .unwrap();
    pool.suspend();
    let p2 = pool.clone();
    let t = std::thread::spawn(move || {
        let started = Instant::now();
        p2.get_timeout(Duration::from_secs(5))
            .map(|_| started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(50));
    pool.resume();
    let waited = t.join().unwrap().unwrap();
    assert!(waited >= Duration::from_millis(40), "{waited:?}");
    pool.suspend();
    assert!(matches!(
        pool.get_timeout(Duration::from_millis(20)),
        Err(Error::Suspended { .. })
    ));
}

#[test]
fn suspend_can_fail_fast() {
    let pool = Pool::builder()
        .max_size(1)
        .fail_when_suspended(true)
        .build(TestManager::new())
        .unwrap();
    pool.suspend();
    let started = Instant::now();
    assert!(matches!(pool.get(), Err(Error::Suspended { .. })));
    assert!(started.elapsed() < Duration::from_secs(1));
    pool.resume();
    assert!(pool.get().is_ok());
}

#[test]
fn soft_evict_all_replaces_every_connection() {
    let m = TestManager::new();
    let pool = Pool::builder().max_size(2).build(m.clone()).unwrap();
    let lent = pool.get().unwrap();
    let lent_id = lent.id;
    let old: Vec<u64> = m.db.open_ids.lock().unwrap().iter().copied().collect();
    pool.soft_evict_all();
    assert!(m.db.open_ids.lock().unwrap().contains(&lent_id));
    drop(lent);
    assert!(eventually(Duration::from_secs(2), || pool.state().total == 2));
    let now: Vec<u64> = m.db.open_ids.lock().unwrap().iter().copied().collect();
    assert!(now.iter().all(|id| !old.contains(id)), "{old:?} -> {now:?}");
}

#[test]
fn fail_fast_while_the_database_is_down() {
    let m = TestManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .connection_timeout(Duration::from_secs(10))
        .build(m.clone())
        .unwrap();
    m.db.refuse.store(true, Ordering::SeqCst);
    m.db.broken.store(true, Ordering::SeqCst);
    // Every connection is found broken and closed; reconnects fail.
    let started = Instant::now();
    let err = loop {
        match pool.get() {
            Ok(c) => drop(c),
            Err(e) => break e,
        }
    };
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    let chain = pool_core::ErrorChain(&err).to_string();
    assert!(chain.contains("connection refused"), "{chain}");
    // Recovery is noticed by the background probe.
    m.db.refuse.store(false, Ordering::SeqCst);
    m.db.broken.store(false, Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(3), || pool.get().is_ok()));
}
