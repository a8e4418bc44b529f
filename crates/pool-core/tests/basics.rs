//! Borrowing and returning: the behaviours r2d2 users rely on.

mod common;

use common::{eventually, TestManager};
use pool_core::{Error, Pool};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn pool(max: u32) -> (Pool<TestManager>, TestManager) {
    let m = TestManager::new();
    let p = Pool::builder()
        .max_size(max)
        .connection_timeout(Duration::from_millis(200))
        .build(m.clone())
        .unwrap();
    (p, m)
}

#[test]
fn build_opens_min_idle_connections() {
    let (p, m) = pool(3);
    assert!(eventually(Duration::from_secs(2), || p.state().idle == 3));
    assert_eq!(m.db.open_now(), 3);
}

#[test]
fn never_more_than_max_size() {
    let (p, m) = pool(2);
    let a = p.get().unwrap();
    let b = p.get().unwrap();
    assert_ne!(a.id, b.id);
    let err = p.get_timeout(Duration::from_millis(30)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        err.to_string().contains("total=2, active=2, idle=0"),
        "{err}"
    );
    assert_eq!(m.db.peak_open.load(Ordering::SeqCst), 2);
}

#[test]
fn returned_connection_is_reused() {
    let (p, _m) = pool(1);
    let id = p.get().unwrap().id;
    assert_eq!(p.get().unwrap().id, id);
}

#[test]
fn try_get_does_not_wait() {
    let (p, _m) = pool(1);
    let held = p.get().unwrap();
    let started = Instant::now();
    assert!(p.try_get().unwrap_err().is_timeout());
    assert!(started.elapsed() < Duration::from_millis(100));
    drop(held);
    assert!(p.try_get().is_ok());
}

#[test]
fn get_timeout_waits_for_a_return() {
    let (p, _m) = pool(1);
    let held = p.get().unwrap();
    let p2 = p.clone();
    let t = std::thread::spawn(move || p2.get_timeout(Duration::from_secs(5)).map(|c| c.id));
    std::thread::sleep(Duration::from_millis(20));
    let id = held.id;
    drop(held);
    assert_eq!(t.join().unwrap().unwrap(), id);
}

#[test]
fn broken_connection_is_closed_on_return_and_replaced() {
    let (p, m) = pool(1);
    let conn = p.get().unwrap();
    let first = conn.id;
    m.db.broken.store(true, Ordering::SeqCst);
    drop(conn);
    m.db.broken.store(false, Ordering::SeqCst);
    assert_eq!(m.db.closed.load(Ordering::SeqCst), 1);
    assert_ne!(p.get().unwrap().id, first);
}

#[test]
fn mark_broken_closes_instead_of_returning() {
    let (p, m) = pool(1);
    let mut conn = p.get().unwrap();
    let first = conn.id;
    conn.mark_broken();
    drop(conn);
    assert_eq!(m.db.closed.load(Ordering::SeqCst), 1);
    assert_ne!(p.get().unwrap().id, first);
}

#[test]
fn detach_takes_the_connection_and_frees_its_place() {
    let (p, m) = pool(1);
    let conn = p.get().unwrap().detach();
    assert_eq!(p.state().total, 0);
    let again = p.get().unwrap();
    assert_ne!(again.id, conn.id);
    drop(conn);
    assert_eq!(m.db.closed.load(Ordering::SeqCst), 1);
}

#[test]
fn reset_runs_on_return_and_a_failed_reset_closes() {
    let (p, m) = pool(1);
    {
        let mut c = p.get().unwrap();
        c.dirty = true;
    }
    assert_eq!(m.db.resets.load(Ordering::SeqCst), 1);
    assert!(!p.get().unwrap().dirty);
    m.db.reset_fails.store(true, Ordering::SeqCst);
    let id = p.get().unwrap().id;
    m.db.reset_fails.store(false, Ordering::SeqCst);
    assert_ne!(
        p.get().unwrap().id,
        id,
        "a connection whose reset failed was reused"
    );
}

#[test]
fn connection_returned_during_a_panic_is_closed_not_reused() {
    let (p, m) = pool(1);
    let p2 = p.clone();
    let id = std::thread::spawn(move || {
        let conn = p2.get().unwrap();
        let id = conn.id;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _c = conn;
            panic!("holder panics");
        }));
        id
    })
    .join()
    .unwrap();
    assert_eq!(m.db.closed.load(Ordering::SeqCst), 1);
    let next = p.get().unwrap();
    assert_ne!(next.id, id);
}

#[test]
fn validation_on_borrow_after_the_bypass_window() {
    let m = TestManager::new();
    let p = Pool::builder()
        .max_size(1)
        .alive_bypass_window(Duration::from_millis(20))
        .build(m.clone())
        .unwrap();
    drop(p.get().unwrap());
    let before = m.db.validations.load(Ordering::SeqCst);
    drop(p.get().unwrap()); // used just now: not validated
    assert_eq!(m.db.validations.load(Ordering::SeqCst), before);
    std::thread::sleep(Duration::from_millis(40));
    m.db.invalid.store(true, Ordering::SeqCst);
    let id = m.db.next_id.load(Ordering::SeqCst);
    let p2 = p.clone();
    let db = m.db.clone();
    let t = std::thread::spawn(move || p2.get().map(|c| c.id));
    std::thread::sleep(Duration::from_millis(20));
    db.invalid.store(false, Ordering::SeqCst);
    let got = t.join().unwrap().unwrap();
    assert!(got > id, "the invalid connection was lent");
    assert!(m.db.validations.load(Ordering::SeqCst) > before);
}

/// `alive_bypass_window(0)` is documented as "check every borrow": a
/// connection borrowed again in the same tick of the pool's coarse clock as
/// its return is still checked.
#[test]
fn a_zero_bypass_window_checks_every_borrow() {
    let m = TestManager::new();
    let p = Pool::builder()
        .max_size(1)
        .alive_bypass_window(Duration::ZERO)
        .build(m.clone())
        .unwrap();
    let before = m.db.validations.load(Ordering::SeqCst);
    for _ in 0..100 {
        drop(p.get().unwrap());
    }
    assert_eq!(m.db.validations.load(Ordering::SeqCst) - before, 100);
}

#[test]
fn many_threads_never_share_a_connection() {
    let (p, m) = pool(3);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..300 {
                    let c = p.get_timeout(Duration::from_secs(10)).unwrap();
                    c.touch();
                }
            });
        }
    });
    assert!(m.db.peak_open.load(Ordering::SeqCst) <= 3);
    assert_eq!(m.db.closed_twice.load(Ordering::SeqCst), 0);
}

#[test]
fn closed_pool_refuses_and_closes_everything() {
    let (p, m) = pool(2);
    let lent = p.get().unwrap();
    p.close();
    assert!(matches!(p.get(), Err(Error::Closed { .. })));
    assert_eq!(
        m.db.open_now(),
        1,
        "the lent connection stays open until returned"
    );
    drop(lent);
    assert_eq!(m.db.open_now(), 0);
    assert_eq!(m.db.closed_twice.load(Ordering::SeqCst), 0);
}

#[test]
fn background_reset_keeps_the_connection_until_it_is_clean() {
    let m = TestManager::new();
    let p = Pool::builder()
        .max_size(1)
        .reset_in_background(true)
        .build(m.clone())
        .unwrap();
    // A slow reset: the borrower's drop must not wait for it.
    // (Far apart, so that a slow run (ThreadSanitizer's) still tells them
    // apart: the drop takes microseconds, the reset a second.)
    m.db.reset_delay_ms.store(1_000, Ordering::SeqCst);
    let mut c = p.get().unwrap();
    c.dirty = true;
    let id = c.id;
    let started = Instant::now();
    drop(c);
    let returned_in = started.elapsed();
    let c = p.get_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(c.id, id);
    assert!(!c.dirty, "lent before its reset finished");
    assert_eq!(m.db.resets.load(Ordering::SeqCst), 1);
    assert!(returned_in < Duration::from_millis(500), "{returned_in:?}");
    m.db.reset_delay_ms.store(0, Ordering::SeqCst);
    drop(c);
    // A failed background reset closes the connection. Each reset runs on a
    // worker thread after `drop` returns, so the failure is armed only once
    // the previous reset is over (the next borrow waits for it), and stays
    // armed until the close is seen; otherwise a late worker either fails
    // the previous reset too (two closes) or finds this one succeeding.
    let c = p.get_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(c.id, id);
    m.db.reset_fails.store(true, Ordering::SeqCst);
    drop(c);
    assert!(common::eventually(Duration::from_secs(2), || {
        m.db.closed.load(Ordering::SeqCst) >= 1
    }));
    assert_eq!(m.db.closed.load(Ordering::SeqCst), 1);
    m.db.reset_fails.store(false, Ordering::SeqCst);
    assert_ne!(p.get_timeout(Duration::from_secs(2)).unwrap().id, id);
}
