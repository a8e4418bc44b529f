//! A state-machine test: random sequences of pool operations, checked against
//! a simple model and against the test database's own accounting.
//!
//! Invariants after every step: no connection is lent to two borrowers; the
//! pool holds no more connections than allowed; every connection the database
//! opened is idle in the pool, lent, detached, or closed exactly once.

mod common;

use common::{eventually, TestManager};
use pool_core::{Error, Pool, PooledConnection};
use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Op {
    Get,
    TryGet,
    Return(usize),
    MarkBroken(usize),
    Detach(usize),
    DropDetached,
    Resize(u32),
    SoftEvict,
    BreakAll,
    Sleep(u64),
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Get),
        1 => Just(Op::TryGet),
        4 => (0usize..8).prop_map(Op::Return),
        1 => (0usize..8).prop_map(Op::MarkBroken),
        1 => (0usize..8).prop_map(Op::Detach),
        1 => Just(Op::DropDetached),
        1 => (1u32..6).prop_map(Op::Resize),
        1 => Just(Op::SoftEvict),
        1 => Just(Op::BreakAll),
        1 => (1u64..30).prop_map(Op::Sleep),
        1 => Just(Op::Close),
    ]
}

fn check(
    pool: &Pool<TestManager>,
    m: &TestManager,
    lent: &[PooledConnection<'_, TestManager>],
    detached: &[common::Conn],
    max: u32,
) {
    let ids: HashSet<u64> = lent.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), lent.len(), "a connection is lent twice");
    assert_eq!(m.db.closed_twice.load(Ordering::SeqCst), 0, "closed twice");
    let open = m.db.open_ids.lock().unwrap().clone();
    for c in lent {
        assert!(open.contains(&c.id), "lent connection {} is closed", c.id);
    }
    for c in detached {
        assert!(
            open.contains(&c.id),
            "detached connection {} is closed",
            c.id
        );
    }
    // Connections the pool accounts for = open at the database minus those
    // detached; the creator may be mid-connect, so allow it a moment.
    assert!(
        eventually(Duration::from_secs(2), || {
            let open = m.db.open_now();
            let in_pool = open - detached.len();
            pool.state().total as usize == in_pool
        }),
        "pool total {} disagrees with the database ({} open, {} detached)",
        pool.state().total,
        m.db.open_now(),
        detached.len()
    );
    // A connect already under way when the pool shrank may land; it is
    // closed at once, so the bound holds again a moment later.
    let bound = (max as usize).max(lent.len());
    assert!(
        eventually(Duration::from_secs(2), || pool.state().total as usize
            <= bound),
        "{} connections with max {max} and {} lent",
        pool.state().total,
        lent.len()
    );
}

fn run(ops: Vec<Op>) {
    let m = TestManager::new();
    let pool = Pool::builder()
        .max_size(3)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_millis(500))
        .fail_fast(false)
        .build(m.clone())
        .unwrap();
    let mut max = 3u32;
    let mut lent: Vec<PooledConnection<'_, TestManager>> = Vec::new();
    let mut detached: Vec<common::Conn> = Vec::new();
    let mut closed = false;
    for op in ops {
        match op {
            Op::Get | Op::TryGet => {
                let result = if matches!(op, Op::Get) {
                    pool.get_timeout(Duration::from_millis(if (lent.len() as u32) < max {
                        2000
                    } else {
                        5
                    }))
                } else {
                    pool.try_get()
                };
                match result {
                    Ok(c) => {
                        assert!(!closed, "lent from a closed pool");
                        assert!((lent.len() as u32) < max, "lent beyond max_size {max}");
                        lent.push(c);
                    }
                    Err(Error::Closed { .. }) => assert!(closed),
                    Err(e) => {
                        assert!(e.is_timeout(), "{e}");
                        // A blocking get with room must succeed.
                        if matches!(op, Op::Get) {
                            assert!(
                                lent.len() as u32 >= max,
                                "timed out with {} lent of {max}: {e}",
                                lent.len()
                            );
                        }
                    }
                }
            }
            Op::Return(i) if !lent.is_empty() => drop(lent.remove(i % lent.len())),
            Op::MarkBroken(i) if !lent.is_empty() => {
                let mut c = lent.remove(i % lent.len());
                c.mark_broken();
                let id = c.id;
                drop(c);
                assert!(!m.db.open_ids.lock().unwrap().contains(&id));
            }
            Op::Detach(i) if !lent.is_empty() => {
                detached.push(lent.remove(i % lent.len()).detach());
            }
            Op::DropDetached => {
                detached.pop();
            }
            Op::Resize(n) if !closed => {
                pool.resize(n).unwrap();
                max = n;
            }
            Op::SoftEvict => pool.soft_evict_all(),
            Op::BreakAll => {
                // Everything idle or lent now is found broken on its next check.
                m.db.broken.store(true, Ordering::SeqCst);
                for c in lent.drain(..) {
                    drop(c);
                }
                m.db.broken.store(false, Ordering::SeqCst);
            }
            Op::Sleep(ms) => std::thread::sleep(Duration::from_millis(ms)),
            Op::Close => {
                pool.close();
                closed = true;
            }
            _ => {}
        }
        check(&pool, &m, &lent, &detached, max);
    }
    // At the end: close, return everything, and nothing may remain open but
    // the detached connections.
    pool.close();
    drop(lent);
    assert_eq!(m.db.open_now(), detached.len());
    drop(detached);
    assert_eq!(m.db.open_now(), 0);
    assert_eq!(m.db.closed_twice.load(Ordering::SeqCst), 0);
    assert_eq!(
        m.db.opened.load(Ordering::SeqCst),
        m.db.closed.load(Ordering::SeqCst)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn pool_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
