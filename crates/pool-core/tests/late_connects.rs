//! Connects the pool gave up on (`ManageConnection::connect_limit`) while
//! the server was frozen: they keep their place in `max_size` until they
//! return, and a connection they bring late is closed at once. One test a
//! file: it counts the process's `pool-io` threads, which other tests would
//! share.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pool_core::Pool;

#[path = "common/late_logins.rs"]
mod late_logins;

use late_logins::{LateLogins, Sessions};

fn pool_io_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|n| n.trim_end().starts_with("pool-io"))
        })
        .count()
}

#[test]
fn connects_given_up_during_a_freeze_never_take_the_server_past_max_size() {
    let server = Arc::new(Sessions::default());
    server.frozen.store(true, Ordering::SeqCst);
    let pool = Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_millis(250))
        .build_unchecked(LateLogins(server.clone()))
        .unwrap();
    let threads_before = pool_io_threads();
    let mut max_threads = threads_before;
    // A second of freeze with borrowers asking all along: many connect
    // limits pass, and every given-up connect is still waiting.
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while start.elapsed() < Duration::from_secs(1) {
                    let _ = pool.get();
                }
            });
        }
        while start.elapsed() < Duration::from_secs(1) {
            max_threads = max_threads.max(pool_io_threads());
            thread::sleep(Duration::from_millis(10));
        }
    });
    assert!(
        server.connects.load(Ordering::SeqCst) <= 2,
        "{} connects started for a pool of max_size 2",
        server.connects.load(Ordering::SeqCst)
    );
    // The server thaws: the given-up logins complete, and are closed.
    server.frozen.store(false, Ordering::SeqCst);
    let conn = pool.get_timeout(Duration::from_secs(5)).unwrap();
    drop(conn);
    thread::sleep(Duration::from_millis(200));
    assert!(
        server.peak.load(Ordering::SeqCst) <= 2,
        "the server saw {} sessions at once for max_size 2",
        server.peak.load(Ordering::SeqCst)
    );
    assert!(pool.metrics().late_connects >= 1, "{:?}", pool.metrics());
    assert!(
        max_threads <= threads_before + 2,
        "pool-io threads grew from {threads_before} to {max_threads}"
    );
    drop(pool);
    assert!(common_eventually(|| server.open.load(Ordering::SeqCst) == 0));
}

fn common_eventually(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    cond()
}
