//! `Pool::retain`: connections the predicate rejects are closed, idle ones
//! now and lent ones when they come back; the facts it sees; and no
//! rejected connection survives a concurrent return or borrow.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestManager;
use pool_core::{ConnectionInfo, Pool};

fn pool(max_size: u32) -> (Pool<TestManager>, TestManager) {
    let m = TestManager::new();
    let pool = Pool::builder().max_size(max_size).build(m.clone()).unwrap();
    (pool, m)
}

fn snapshot(pool: &Pool<TestManager>) -> Vec<ConnectionInfo> {
    let mut all = Vec::new();
    pool.retain(|info| {
        all.push(*info);
        true
    });
    all.sort_by_key(|i| i.id);
    all
}

#[test]
fn the_predicate_sees_each_connections_facts() {
    let (pool, _m) = pool(2);
    let lent = pool.get().unwrap();
    let idle = pool.get().unwrap();
    let idle_id = idle.id();
    drop(idle);
    drop(pool.get().unwrap()); // the thread's cache: the idle one again
    std::thread::sleep(Duration::from_millis(50));
    let infos = snapshot(&pool);
    assert_eq!(infos.len(), 2);
    let lent_info = infos.iter().find(|i| i.id == lent.id()).unwrap();
    let idle_info = infos.iter().find(|i| i.id == idle_id).unwrap();
    assert!(lent_info.lent);
    assert_eq!(lent_info.uses, 1);
    assert!(!idle_info.lent);
    assert_eq!(idle_info.uses, 2);
    assert!(idle_info.since_used >= Duration::from_millis(40));
    assert!(idle_info.age >= idle_info.since_used);
    assert!(idle_info.opened_at() <= Instant::now() - Duration::from_millis(40));
}

#[test]
fn rejected_idle_connections_close_now_and_lent_ones_on_return() {
    let (pool, m) = pool(3);
    let (a, b, c) = (
        pool.get().unwrap(),
        pool.get().unwrap(),
        pool.get().unwrap(),
    );
    let (a_id, b_id) = (a.id(), b.id());
    drop(a);
    drop(b);
    let keep_c = c.id();
    // Reject a (idle) and c (lent), keep b.
    let rejected = pool.retain(|info| info.id == b_id);
    assert_eq!(rejected, 2);
    assert!(
        !m.db.open_ids.lock().unwrap().contains(&a_id),
        "idle one not closed now"
    );
    assert!(
        m.db.open_ids.lock().unwrap().contains(&keep_c),
        "lent one closed under its borrower"
    );
    drop(c);
    assert!(
        !m.db.open_ids.lock().unwrap().contains(&keep_c),
        "lent one not closed on return"
    );
    assert!(m.db.open_ids.lock().unwrap().contains(&b_id));
    assert_eq!(pool.metrics().closed.evicted, 2);
}

#[test]
fn close_everything_opened_before_a_failover() {
    let (pool, m) = pool(4);
    let held: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    let old: HashSet<u64> = held.iter().map(|c| c.id()).collect();
    drop(held);
    std::thread::sleep(Duration::from_millis(20));
    let failed_over = Instant::now();
    let lent = pool.get().unwrap();
    assert_eq!(pool.retain(|c| c.opened_at() > failed_over), 4);
    drop(lent);
    // New connections replace them; none of the old ones is lent again.
    for _ in 0..4 {
        let conn = pool.get().unwrap();
        assert!(
            !old.contains(&conn.id()),
            "connection {} survived",
            conn.id()
        );
    }
    assert!(m.db.open_ids.lock().unwrap().is_disjoint(&old));
}

#[test]
fn close_connections_older_than_a_limit() {
    let (pool, _m) = pool(2);
    let (a, mut b) = (pool.get().unwrap(), pool.get().unwrap());
    let old = a.id();
    std::thread::sleep(Duration::from_millis(700));
    b.mark_broken(); // replaced by a young one
    drop((a, b));
    let young = (0..2)
        .map(|_| pool.get().unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|c| c.id())
        .find(|&id| id != old)
        .unwrap();
    // Old: over 700 ms. Young: opened just now, well under 350 ms even in
    // a slow (sanitized) run.
    assert_eq!(pool.retain(|c| c.age < Duration::from_millis(350)), 1);
    // A connection still on its way back when retain() ran closes as it
    // arrives (seen in a slow, sanitized run): give it that moment.
    assert!(common::eventually(Duration::from_secs(5), || {
        !snapshot(&pool).iter().any(|i| i.id == old)
    }));
    let ids: Vec<u64> = snapshot(&pool).iter().map(|i| i.id).collect();
    assert!(ids.contains(&young) && !ids.contains(&old), "{ids:?}");
}

#[test]
fn no_rejected_connection_survives_concurrent_borrows_and_returns() {
    // Borrowers churn while `retain` rejects everything: each connection
    // open at the call must end up closed, whether it was idle, lent, or
    // on its way back when it was judged.
    let (pool, m) = pool(4);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (pool, stop) = (pool.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(conn) = pool.get() {
                        conn.touch();
                    }
                }
            })
        })
        .collect();
    for _ in 0..200 {
        let mut judged = HashSet::new();
        pool.retain(|info| {
            judged.insert(info.id);
            false
        });
        // Give the lent ones time to come back, and the pool to settle.
        std::thread::sleep(Duration::from_millis(2));
        let mut survivors = HashSet::new();
        assert!(
            common::eventually(Duration::from_secs(5), || {
                survivors = snapshot(&pool).iter().map(|i| i.id).collect();
                survivors.is_disjoint(&judged)
            }),
            "rejected connections still in the pool: {:?}",
            survivors.intersection(&judged).collect::<Vec<_>>()
        );
        assert!(m.db.open_ids.lock().unwrap().is_disjoint(&judged));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(pool.metrics().closed.evicted > 0);
}

#[test]
fn the_predicate_runs_with_no_connection_held() {
    // A predicate that borrows from the pool finds the idle connection:
    // retain holds no seat while it judges.
    let (pool, _m) = pool(1);
    let p = pool.clone();
    let mut borrowed = 0;
    pool.retain(|_| {
        let conn = p.get_timeout(Duration::from_millis(500)).unwrap();
        conn.touch();
        borrowed += 1;
        true
    });
    assert_eq!(borrowed, 1);
}

#[test]
fn a_connection_being_opened_during_retain_is_kept() {
    // The connect takes 300 ms; `retain` rejects everything 100 ms in. The
    // connection it opens is newer than the call: it is lent, not closed.
    let m = TestManager::with_connect_delay(300);
    let pool = Pool::builder()
        .max_size(1)
        .build_unchecked(m.clone())
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(pool.retain(|_| false), 0);
    let conn = pool.get_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(conn.id, 1);
    assert_eq!(pool.metrics().closed.evicted, 0);
}
