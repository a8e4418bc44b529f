//! Building, housekeeping and closing: what happens to connections over time.

mod common;

use common::{eventually, threads_named, TestManager};
use pool_core::{Error, Pool, PooledConnection};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[test]
fn build_fails_with_the_real_connect_error() {
    let m = TestManager::new();
    m.db.refuse.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let err = Pool::builder()
        .name("orders")
        .initialization_fail_timeout(Duration::from_millis(100))
        .build(m.clone())
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    match &err {
        Error::Connect { source, .. } => {
            assert!(source.to_string().contains("connection refused"))
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with("pool \"orders\": cannot connect"),
        "{text}"
    );
    assert!(std::error::Error::source(&err).is_some());
    assert!(eventually(Duration::from_secs(2), || threads_named(
        "orders-"
    ) == 0));
}

#[test]
fn build_succeeds_once_the_database_answers() {
    let m = TestManager::new();
    m.db.refuse.store(true, Ordering::SeqCst);
    let db = m.db.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(120));
        db.refuse.store(false, Ordering::SeqCst);
    });
    let pool = Pool::builder()
        .max_size(2)
        .initialization_fail_timeout(Duration::from_secs(5))
        .build(m.clone())
        .unwrap();
    t.join().unwrap();
    assert!(pool.state().total >= 1);
}

#[test]
fn build_unchecked_is_lazy_about_errors() {
    let m = TestManager::new();
    m.db.refuse.store(true, Ordering::SeqCst);
    let pool = Pool::builder()
        .max_size(2)
        .connection_timeout(Duration::from_millis(300))
        .fail_fast(false)
        .build_unchecked(m.clone())
        .unwrap();
    let err = pool.get().unwrap_err();
    assert!(err.is_timeout());
    // The last connect error is the timeout's source, shown by the chain.
    let chain = pool_core::ErrorChain(&err).to_string();
    assert!(
        chain.contains("while new connections were failing; fix the cause of the last connect error: connection refused"),
        "{chain}"
    );
    m.db.refuse.store(false, Ordering::SeqCst);
    assert!(pool.get_timeout(Duration::from_secs(3)).is_ok());
}

#[test]
fn bad_settings_are_errors_naming_the_setting() {
    let cases: Vec<(pool_core::Builder, &str)> = vec![
        (Pool::builder().max_size(0), "max_size"),
        (Pool::builder().max_size(2).min_idle(Some(3)), "min_idle"),
        (
            Pool::builder().connection_timeout(Duration::ZERO),
            "connection_timeout",
        ),
        (
            Pool::builder().validation_timeout(Duration::ZERO),
            "validation_timeout",
        ),
        (
            Pool::builder()
                .idle_timeout(Some(Duration::from_secs(60)))
                .max_lifetime(Some(Duration::from_secs(60))),
            "idle_timeout",
        ),
        (
            Pool::builder().max_lifetime(Some(Duration::ZERO)),
            "max_lifetime",
        ),
        (Pool::builder().name(""), "name"),
    ];
    for (builder, setting) in cases {
        match builder.build(TestManager::new()) {
            Err(Error::Config { setting: s, .. }) => assert_eq!(s, setting),
            other => panic!("{setting}: expected a config error, got {other:?}"),
        }
    }
}

#[test]
fn idle_timeout_closes_connections_above_min_idle() {
    let m = TestManager::new();
    let pool = Pool::builder()
        .max_size(4)
        .min_idle(Some(1))
        .idle_timeout(Some(Duration::from_millis(80)))
        .build(m.clone())
        .unwrap();
    let held: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    drop(held);
    assert_eq!(pool.state().total, 4);
    assert!(eventually(Duration::from_secs(3), || pool.state().total == 1));
    assert_eq!(m.db.open_now(), 1);
}

#[test]
fn max_lifetime_retires_idle_now_and_lent_on_return() {
    let m = TestManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .idle_timeout(None)
        .max_lifetime(Some(Duration::from_millis(150)))
        .build(m.clone())
        .unwrap();
    let lent = pool.get().unwrap();
    let lent_id = lent.id;
    // The idle one is retired and replaced while the lent one stays open.
    assert!(eventually(Duration::from_secs(3), || {
        m.db.closed.load(Ordering::SeqCst) >= 1
    }));
    assert!(m.db.open_ids.lock().unwrap().contains(&lent_id));
    // Lifetimes vary by up to 2.5 %: be sure the lent one is past its own.
    std::thread::sleep(Duration::from_millis(60));
    drop(lent);
    assert!(!m.db.open_ids.lock().unwrap().contains(&lent_id));
    assert!(eventually(Duration::from_secs(3), || pool.state().total == 2));
}

#[test]
fn min_idle_is_restored_after_losses() {
    let m = TestManager::new();
    let pool = Pool::builder()
        .max_size(3)
        .min_idle(Some(2))
        .build(m.clone())
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || pool.state().idle >= 2));
    let mut c = pool.get().unwrap();
    c.mark_broken();
    drop(c);
    assert!(eventually(Duration::from_secs(2), || pool.state().idle >= 2));
}

#[test]
fn keepalive_closes_dead_idle_connections() {
    let m = TestManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .keepalive_time(Some(Duration::from_millis(50)))
        .build(m.clone())
        .unwrap();
    let before = m.db.validations.load(Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(3), || {
        m.db.validations.load(Ordering::SeqCst) >= before + 2
    }));
    m.db.invalid.store(true, Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(3), || {
        m.db.closed.load(Ordering::SeqCst) >= 2
    }));
    drop(pool);
}

#[test]
fn dropping_the_pool_closes_connections_and_joins_threads() {
    let m = TestManager::new();
    let pool = Pool::builder()
        .name("dropme")
        .max_size(3)
        .build(m.clone())
        .unwrap();
    // A thread names itself as it starts: allow it a moment.
    assert!(eventually(Duration::from_secs(2), || threads_named(
        "dropme-"
    ) == 2));
    // An owned loan outlives every handle; the borrowed kind cannot (the
    // compiler sees to it).
    let lent = pool.get_owned().unwrap();
    let clone = pool.clone();
    drop(pool);
    assert_eq!(threads_named("dropme-"), 2, "a clone keeps the pool open");
    drop(clone);
    // The threads are joined by now; the kernel may list an exited thread in
    // /proc for a moment longer.
    assert!(
        eventually(Duration::from_millis(500), || threads_named("dropme-") == 0),
        "background threads outlived the pool"
    );
    assert_eq!(m.db.open_now(), 1);
    drop(lent);
    assert_eq!(m.db.open_now(), 0);
    assert_eq!(m.db.closed_twice.load(Ordering::SeqCst), 0);
}

#[test]
fn close_wakes_waiters_with_closed() {
    let m = TestManager::new();
    let pool = Pool::builder().max_size(1).build(m).unwrap();
    let held = pool.get().unwrap();
    let p2 = pool.clone();
    let waiter = std::thread::spawn(move || {
        p2.get_timeout(Duration::from_secs(10))
            .map(PooledConnection::into_owned)
    });
    assert!(eventually(Duration::from_secs(2), || pool.state().waiting == 1));
    pool.close();
    assert!(matches!(waiter.join().unwrap(), Err(Error::Closed { .. })));
    drop(held);
}

#[test]
fn a_panicking_manager_does_not_kill_the_pool() {
    let m = TestManager::new();
    m.db.panic_connect.store(true, Ordering::SeqCst);
    let pool = Pool::builder()
        .name("panicky")
        .max_size(1)
        // Long enough for the panic hook to print a backtrace in a debug build.
        .connection_timeout(Duration::from_secs(2))
        .fail_fast(false)
        .build_unchecked(m.clone())
        .unwrap();
    let err = pool.get().unwrap_err();
    let chain = pool_core::ErrorChain(&err).to_string();
    assert!(chain.contains("panicked in connect"), "{chain}");
    m.db.panic_connect.store(false, Ordering::SeqCst);
    assert!(pool.get_timeout(Duration::from_secs(3)).is_ok());
    assert!(eventually(Duration::from_secs(2), || threads_named(
        "panicky-"
    ) == 2));
}

#[test]
fn owned_loans_let_the_pool_go_however_they_end() {
    // An owned loan holds a count of the pool; returning, closing
    // (`mark_broken`) and detaching must each give it back, or the pool's
    // memory (and its manager) would never be freed.
    let m = TestManager::new();
    let pool = Pool::builder().max_size(3).build(m.clone()).unwrap();
    let returned = pool.get_owned().unwrap();
    let mut broken = pool.get().unwrap().into_owned();
    let detached = pool.get_owned().unwrap();
    broken.mark_broken();
    drop(pool);
    drop(returned);
    drop(broken);
    drop(detached.detach());
    assert_eq!(m.db.open_now(), 0);
    // Only `m` is left: the pool's manager (a clone) was dropped with it.
    assert_eq!(
        std::sync::Arc::strong_count(&m.db),
        1,
        "the pool was never freed: a loan kept it alive"
    );
    assert_eq!(m.db.closed_twice.load(Ordering::SeqCst), 0);
}

#[test]
fn a_loan_is_two_words() {
    // Returned from `get` in registers rather than through memory (a
    // store-forwarding stall cost several ns per borrow when it was four).
    assert_eq!(
        std::mem::size_of::<PooledConnection<'static, TestManager>>(),
        2 * std::mem::size_of::<usize>()
    );
    assert_eq!(
        std::mem::size_of::<Option<PooledConnection<'static, TestManager>>>(),
        2 * std::mem::size_of::<usize>()
    );
}

/// `soft_evict_all()` during a connect evicts the connection being opened
/// too (the failover and credential-rotation case the method exists for).
#[test]
fn soft_evict_all_reaches_a_connection_being_opened() {
    let m = TestManager::with_connect_delay(300);
    let pool = Pool::builder()
        .max_size(1)
        .build_unchecked(m.clone())
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    pool.soft_evict_all();
    // The connect under way when the eviction came lands, and is closed
    // instead of lent; the borrower gets one opened after the eviction.
    let conn = pool.get_timeout(Duration::from_secs(3)).unwrap();
    assert_ne!(
        conn.id, 1,
        "the connection opened across the eviction was lent"
    );
    assert_eq!(pool.metrics().closed.evicted, 1);
}
