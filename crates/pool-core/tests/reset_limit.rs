//! Background resets under the manager's reset limit
//! (`ManageConnection::reset_limit`): the pool gives up a connection whose
//! reset outlives it (holding its place in `max_size` until it is closed), and a watched reset costs one hand-off, not two,
//! even while borrowers wait when the manager's reset would hop anyway (`reset_hands_off`).

mod common;

use common::{eventually, TestManager};
use pool_core::Pool;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A pool of `size` over `m`, resetting in the background or not.
fn pool_of(m: &TestManager, size: u32, background: bool) -> Pool<TestManager> {
    Pool::builder()
        .max_size(size)
        .reset_in_background(background)
        .build(m.clone())
        .unwrap()
}

fn manager_with_limit(ms: u64) -> TestManager {
    let m = TestManager::new();
    m.db.reset_limit_ms.store(ms, Ordering::SeqCst);
    m
}

#[test]
fn a_reset_past_the_limit_gives_its_connection_up_and_holds_the_seat_until_it_is_closed() {
    let m = manager_with_limit(100);
    let pool = pool_of(&m, 1, true);
    let mut c = pool.get().unwrap();
    c.dirty = true;
    let stuck = c.id;
    // The reset hangs far longer than its limit (a server that never answers).
    m.db.reset_delay_ms.store(1_500, Ordering::SeqCst);
    drop(c);

    // Past the limit the connection is given up: counted closed, never lent
    // again. Its session is still open until the reset returns, so it keeps
    // its place in max_size: no replacement may open beside it.
    assert!(eventually(Duration::from_secs(2), || pool
        .metrics()
        .closed
        .reset_failed
        == 1));
    assert_eq!(pool.state().total, 0, "{}", pool.state());
    let err = pool.get_timeout(Duration::from_millis(300)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(m.db.open_now(), 1, "only the stuck connection is open");

    // Once the reset returns, the stuck connection is closed, exactly once,
    // and only then is the seat free for a replacement.
    m.db.reset_delay_ms.store(0, Ordering::SeqCst);
    let c = pool.get_timeout(Duration::from_secs(5)).unwrap();
    assert_ne!(c.id, stuck, "the stuck connection was lent again");
    assert!(!m.db.open_ids.lock().unwrap().contains(&stuck));
    assert_eq!(m.db.closed.load(Ordering::SeqCst), 1);
    assert_eq!(
        m.db.peak_open.load(Ordering::SeqCst),
        1,
        "a replacement was open beside the given-up connection"
    );
    assert_eq!(pool.state().total, 1, "{:?}", pool.state());
    drop(c);
    drop(pool);
    assert_eq!(m.db.open_now(), 0);
    assert_eq!(m.db.closed_twice.load(Ordering::SeqCst), 0);
}

#[test]
fn a_reset_within_the_limit_keeps_its_connection() {
    let m = manager_with_limit(5_000);
    let pool = pool_of(&m, 1, true);
    m.db.reset_delay_ms.store(50, Ordering::SeqCst);
    let mut c = pool.get().unwrap();
    c.dirty = true;
    let id = c.id;
    drop(c);
    let c = pool.get_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(c.id, id);
    assert!(!c.dirty, "lent before its reset finished");
    assert_eq!(m.db.resets.load(Ordering::SeqCst), 1);
    assert_eq!(pool.metrics().closed.reset_failed, 0);
    assert_eq!(m.db.closed.load(Ordering::SeqCst), 0);
}

#[test]
fn a_watched_reset_runs_its_bounded_calls_on_the_background_thread() {
    // With a limit, the manager's own `deadline::run` runs inline on the
    // pool's background thread (one hand-off per reset).
    let m = manager_with_limit(5_000);
    m.db.reset_via_deadline.store(true, Ordering::SeqCst);
    let pool = pool_of(&m, 1, true);
    for _ in 0..3 {
        drop(pool.get_timeout(Duration::from_secs(5)).unwrap());
    }
    assert!(eventually(Duration::from_secs(5), || m
        .db
        .resets
        .load(Ordering::SeqCst)
        == 3));
    assert_eq!(m.db.reset_hops.load(Ordering::SeqCst), 0);

    // Without a limit the pool does not watch, so the manager's call hops
    // to a helper thread that bounds it, as it does for a reset on the
    // returning thread.
    let m = TestManager::new();
    m.db.reset_via_deadline.store(true, Ordering::SeqCst);
    let pool = pool_of(&m, 1, true);
    drop(pool.get().unwrap());
    assert!(eventually(Duration::from_secs(5), || m
        .db
        .resets
        .load(Ordering::SeqCst)
        == 1));
    assert_eq!(m.db.reset_hops.load(Ordering::SeqCst), 1);
    let m = manager_with_limit(5_000);
    m.db.reset_via_deadline.store(true, Ordering::SeqCst);
    let pool = pool_of(&m, 1, false);
    drop(pool.get().unwrap());
    assert_eq!(m.db.resets.load(Ordering::SeqCst), 1);
    assert_eq!(m.db.reset_hops.load(Ordering::SeqCst), 1);
}

#[test]
fn with_waiters_a_reset_that_would_hop_still_goes_to_the_background() {
    // A manager whose bounded reset hops to a worker anyway
    // (`reset_hands_off`) is reset in the background, watched, even while a
    // borrower waits: no hop. Otherwise the returning thread resets while
    // others wait, and its bounded call hops.
    for hands_off in [true, false] {
        let m = manager_with_limit(5_000);
        m.db.reset_via_deadline.store(true, Ordering::SeqCst);
        m.db.reset_hands_off.store(hands_off, Ordering::SeqCst);
        let pool = pool_of(&m, 1, true);
        let c = pool.get().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| drop(pool.get_timeout(Duration::from_secs(5)).unwrap()));
            assert!(eventually(Duration::from_secs(5), || pool.state().waiting == 1));
            drop(c);
            waiter.join().unwrap();
        });
        assert!(eventually(Duration::from_secs(5), || m
            .db
            .resets
            .load(Ordering::SeqCst)
            == 2));
        let hops = m.db.reset_hops.load(Ordering::SeqCst);
        assert_eq!(hops, usize::from(!hands_off), "hands_off: {hands_off}");
    }
}

#[test]
fn closing_the_pool_does_not_wait_for_a_stuck_reset() {
    let m = manager_with_limit(100);
    let pool = pool_of(&m, 2, true);
    m.db.reset_delay_ms.store(1_000, Ordering::SeqCst);
    drop(pool.get().unwrap());
    let started = std::time::Instant::now();
    drop(pool);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // The stuck connection is still dropped once its reset returns.
    assert!(eventually(Duration::from_secs(5), || m.db.open_now() == 0));
    assert_eq!(m.db.closed_twice.load(Ordering::SeqCst), 0);
}

#[test]
fn a_customized_manager_keeps_the_reset_settings_of_the_one_it_wraps() {
    use pool_core::{CustomizeConnection, Customized, ManageConnection};

    struct Nothing;
    impl CustomizeConnection<common::Conn, std::io::Error> for Nothing {}

    // (The trait's default is `None`: a wrapper that does not forward it
    // loses the pool's watch over background resets.)
    let m = manager_with_limit(250);
    m.db.reset_hands_off.store(true, Ordering::SeqCst);
    let wrapped = Customized::new(m, Nothing);
    assert_eq!(wrapped.reset_limit(), Some(Duration::from_millis(250)));
    assert!(wrapped.reset_hands_off());
}
