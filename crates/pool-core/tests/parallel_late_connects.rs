//! Parallel connects (`Builder::parallel_connects`) that the pool gives up
//! on (`ManageConnection::connect_limit`) while the server is frozen keep
//! their seats like any given-up connect: the server never sees more than
//! `max_size` sessions, and a refill during the freeze starts at most one
//! connect per seat.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pool_core::Pool;

mod common;
#[path = "common/late_logins.rs"]
mod late_logins;

use common::eventually;
use late_logins::{LateLogins, Sessions};

#[test]
fn parallel_connects_given_up_during_a_freeze_stay_within_max_size() {
    const MAX: u32 = 6;
    let server = Arc::new(Sessions::default());
    // Logins that take a moment, so that parallel connects overlap.
    server.login_ms.store(5, Ordering::SeqCst);
    let pool = Pool::builder()
        .max_size(MAX)
        .parallel_connects(MAX)
        .connection_timeout(Duration::from_millis(250))
        .build(LateLogins(server.clone()))
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || pool.state().idle == MAX));
    // The server freezes, and the pool loses every connection: a real
    // shortfall, refilled in parallel, every connect of which hangs.
    server.frozen.store(true, Ordering::SeqCst);
    let before = server.connects.load(Ordering::SeqCst);
    pool.soft_evict_all();
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while start.elapsed() < Duration::from_secs(1) {
                    let _ = pool.get();
                }
            });
        }
    });
    let during = server.connects.load(Ordering::SeqCst) - before;
    println!("{during} connects started during the freeze");
    assert!(
        during <= MAX as usize,
        "{during} connects started during the freeze for a pool of max_size {MAX}"
    );
    server.frozen.store(false, Ordering::SeqCst);
    let conn = pool.get_timeout(Duration::from_secs(5)).unwrap();
    drop(conn);
    assert!(eventually(Duration::from_secs(5), || pool.state().idle == MAX));
    assert!(
        server.peak.load(Ordering::SeqCst) <= MAX as usize,
        "the server saw {} sessions at once for max_size {MAX}",
        server.peak.load(Ordering::SeqCst)
    );
    assert!(pool.metrics().late_connects >= 1, "{:?}", pool.metrics());
    drop(pool);
    assert!(eventually(Duration::from_secs(5), || server
        .open
        .load(Ordering::SeqCst)
        == 0));
}
