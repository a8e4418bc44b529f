//! A database that stops answering: `get()` keeps its one deadline.
//!
//! The stub "server" here can freeze: while frozen, a validation waits for
//! the whole time limit it is given and then fails (as a ping to a
//! `SIGSTOP`ped server or through a black-holed network does), and a connect
//! blocks until the server thaws or its 2 s limit passes. The real-server versions of these tests
//! live in `pool-postgres/tests/freeze.rs` and `pool-mysql/tests/freeze.rs`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pool_core::{Error, ManageConnection, Pool};

/// A server that can freeze.
#[derive(Default)]
struct Server {
    frozen: AtomicBool,
    validations: AtomicUsize,
}

struct Frozen(Arc<Server>);

impl ManageConnection for Frozen {
    type Connection = ();
    type Error = std::io::Error;

    /// Blocks while frozen, up to the driver's own 2 s connect limit.
    fn connect(&self) -> Result<(), std::io::Error> {
        let start = Instant::now();
        while self.0.frozen.load(Ordering::SeqCst) {
            if start.elapsed() >= Duration::from_secs(2) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn is_valid(&self, _: &mut (), timeout: Duration) -> Result<(), std::io::Error> {
        self.0.validations.fetch_add(1, Ordering::SeqCst);
        if self.0.frozen.load(Ordering::SeqCst) {
            thread::sleep(timeout);
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer from the server",
            ));
        }
        Ok(())
    }

    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

/// Slack for scheduling on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(400);

/// A pool of `size` idle connections, each borrowed once by this thread
/// (so the thread's own cache holds some), then left unused past the
/// alive-bypass window so that every borrow validates.
fn frozen_pool(size: u32, timeout: Duration) -> (Pool<Frozen>, Arc<Server>) {
    let server = Arc::new(Server::default());
    let pool = Pool::builder()
        .max_size(size)
        .connection_timeout(timeout)
        .validation_timeout(Duration::from_secs(5))
        .alive_bypass_window(Duration::from_millis(20))
        .build(Frozen(server.clone()))
        .unwrap();
    let held: Vec<_> = (0..size).map(|_| pool.get().unwrap()).collect();
    drop(held);
    thread::sleep(Duration::from_millis(60));
    server.frozen.store(true, Ordering::SeqCst);
    (pool, server)
}

fn assert_timed_out_in_time(pool: &Pool<Frozen>, timeout: Duration) {
    let start = Instant::now();
    let err = pool.get().unwrap_err();
    let took = start.elapsed();
    assert!(
        took <= timeout + SLACK,
        "get() took {took:?} with connection_timeout {timeout:?}: {err}"
    );
    match &err {
        Error::Timeout { waited, .. } => {
            // The error reports the real wait, not a part of it.
            assert!(
                *waited + Duration::from_millis(50) >= took.min(timeout),
                "error says {waited:?}, the call took {took:?}"
            );
            assert!(*waited <= took, "error says {waited:?}, call took {took:?}");
        }
        other => panic!("expected a timeout, got {other}"),
    }
}

#[test]
fn get_keeps_its_timeout_when_the_cached_connection_hangs() {
    let timeout = Duration::from_secs(1);
    let (pool, _server) = frozen_pool(1, timeout);
    assert_timed_out_in_time(&pool, timeout);
}

#[test]
fn get_keeps_its_timeout_with_8_idle_connections_that_hang() {
    let timeout = Duration::from_secs(1);
    let (pool, _server) = frozen_pool(8, timeout);
    assert_timed_out_in_time(&pool, timeout);
}

#[test]
fn get_keeps_its_timeout_with_20_idle_connections_that_hang() {
    let timeout = Duration::from_millis(600);
    let (pool, server) = frozen_pool(20, timeout);
    assert_timed_out_in_time(&pool, timeout);
    // Once the deadline has passed, no further connection was tested: the
    // ones left untested are still there for when the server answers.
    assert!(server.validations.load(Ordering::SeqCst) < 20 + 20);
    server.frozen.store(false, Ordering::SeqCst);
    assert!(pool.get().is_ok());
}

#[test]
fn get_timeout_with_a_short_limit_keeps_it_too() {
    let (pool, _server) = frozen_pool(4, Duration::from_secs(30));
    let limit = Duration::from_millis(300);
    let start = Instant::now();
    let err = pool.get_timeout(limit).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        start.elapsed() <= limit + SLACK,
        "get_timeout({limit:?}) took {:?}",
        start.elapsed()
    );
}

#[test]
fn concurrent_borrowers_each_keep_their_timeout() {
    let timeout = Duration::from_millis(700);
    let (pool, _server) = frozen_pool(6, timeout);
    let worst = thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let start = Instant::now();
                    let result = pool.get();
                    assert!(result.is_err());
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    });
    assert!(worst <= timeout + SLACK, "slowest get() took {worst:?}");
}
