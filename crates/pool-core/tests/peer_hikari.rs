// Over 800 lines (1,400): HikariCP's pool tests ported one section per HikariCP test
// file, kept in one file to read side by side with the suite it ports.
//! HikariCP's pool behaviour tests (`brettwooldridge/HikariCP`,
//! `src/test/java/com/zaxxer/hikari/pool/`), ported: a program moving from
//! HikariCP keeps the expectations HikariCP's tests hold its pool to. Each
//! test names the HikariCP file and test it ports and what it checks; where
//! our API or documented design differs, the doc comment says how the test
//! was adapted. HikariCP's `StubDataSource` becomes the stub server of
//! `peer_stub`.
//!
//! Longer than 800 lines on purpose: issue 15 asks for one file per origin,
//! so that a reader can hold HikariCP's test suite against this one.
//!
//! Common adaptations:
//! * HikariCP's `minimumIdle(0)` pools start empty; our `build` keeps the
//!   connection it opened to check the database, and `build_unchecked` with
//!   `min_idle(Some(0))` starts empty. Tests use whichever matches.
//! * `evictConnection(conn)` is `mark_broken()` then `drop`.
//! * HikariCP's housekeeping period (a system property, 100–400 ms in its
//!   tests) does not exist here: our housekeeper sleeps until the next
//!   deadline, so waits are written with `eventually` and generous bounds.
//! * HikariCP has no fail-fast mode on `getConnection`; ours is on by
//!   default. Tests that check HikariCP's waiting use `fail_fast(false)`;
//!   tests of what a user of our defaults may expect keep the default.

mod peer_stub;

use peer_stub::{eventually, threads_named, Server};
use pool_core::{Error, Pool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// Slack allowed past a timeout for scheduling on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------
// TestConnections.java
// ---------------------------------------------------------------------------

/// Ports `TestConnections.testCreate`: a pool of one connection counts it
/// idle when returned, lent (idle 0) while borrowed, and idle again after.
#[test]
fn create_counts_the_connection_lent_and_returned() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(1)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_millis(2500))
        .build(server.manager())
        .unwrap();
    drop(pool.get().unwrap());
    let s = pool.state();
    assert_eq!((s.total, s.idle), (1, 1), "{s}");
    {
        let _conn = pool.get().unwrap();
        let s = pool.state();
        assert_eq!((s.total, s.idle), (1, 0), "{s}");
    }
    let s = pool.state();
    assert_eq!((s.total, s.idle), (1, 1), "{s}");
}

/// Ports `TestConnections.testMaxLifetime` and `testMaxLifetime2`: a
/// connection is reused while young; once past `max_lifetime` (700 ms) the
/// next borrow gets a different one, and the pool is back to one idle
/// connection after the return.
#[test]
fn max_lifetime_replaces_an_old_connection() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(1)
        .min_idle(Some(0))
        .idle_timeout(None)
        .max_lifetime(Some(Duration::from_millis(700)))
        .connection_timeout(Duration::from_millis(2500))
        .build(server.manager())
        .unwrap();
    let first = {
        let conn = pool.get().unwrap();
        let s = pool.state();
        assert_eq!((s.total, s.idle), (1, 0), "{s}");
        conn.id
    };
    assert_eq!(pool.state().idle, 1);
    {
        let conn = pool.get().unwrap();
        assert_eq!(conn.id, first, "a young connection was not reused");
        let s = pool.state();
        assert_eq!((s.total, s.idle), (1, 0), "{s}");
    }
    std::thread::sleep(Duration::from_millis(1000));
    {
        let conn = pool.get().unwrap();
        assert_ne!(conn.id, first, "expected a different connection");
    }
    let s = pool.state();
    assert_eq!((s.total, s.idle), (1, 1), "{s}");
    assert!(!server.is_open(first));
}

/// Ports `TestConnections.testKeepalive`: with keepalives more frequent
/// than the server's idle-session limit (HikariCP: 500 ms vs `wait_timeout`
/// 700 ms; here 300 ms vs 1 s), an idle connection is kept open.
#[test]
fn keepalive_keeps_an_idle_connection_alive() {
    let server = Server::new();
    server.wait_timeout_ms.store(1000, Ordering::SeqCst);
    let pool = Pool::builder()
        .max_size(1)
        .min_idle(Some(0))
        .keepalive_time(Some(Duration::from_millis(300)))
        .connection_timeout(Duration::from_millis(2500))
        .build(server.manager())
        .unwrap();
    let id = pool.get().unwrap().id;
    std::thread::sleep(Duration::from_millis(2500));
    assert!(server.is_open(id), "the connection should be open");
    assert_eq!(pool.get().unwrap().id, id, "the connection was replaced");
    assert_eq!(server.closed.load(Ordering::SeqCst), 0);
}

/// Ports `TestConnections.testKeepalive2`: with keepalives less frequent
/// than the server's idle-session limit (700 ms vs 300 ms), the keepalive
/// finds the session dropped and closes it; the next borrow gets a new one.
#[test]
fn keepalive_closes_a_connection_the_server_dropped() {
    let server = Server::new();
    server.wait_timeout_ms.store(300, Ordering::SeqCst);
    let pool = Pool::builder()
        .max_size(1)
        .min_idle(Some(0))
        .keepalive_time(Some(Duration::from_millis(700)))
        .connection_timeout(Duration::from_millis(2500))
        .build(server.manager())
        .unwrap();
    let id = pool.get().unwrap().id;
    assert!(server.is_open(id));
    assert!(
        eventually(Duration::from_secs(3), || !server.is_open(id)),
        "the connection should have been closed by the keepalive"
    );
    let conn = pool.get().unwrap();
    assert_ne!(conn.id, id, "expected a different connection");
    assert!(server.is_open(conn.id));
}

/// Ports `TestConnections.testCloseMarkEvicted` and `testEviction`: a
/// connection evicted by its borrower leaves the pool at once (total 0).
#[test]
fn evicted_connection_leaves_the_pool() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(5)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_millis(2500))
        .build(server.manager())
        .unwrap();
    let mut conn = pool.get().unwrap();
    assert_eq!(pool.state().total, 1);
    conn.mark_broken();
    drop(conn);
    assert_eq!(pool.state().total, 0, "the evicted connection was kept");
    assert_eq!(server.open_now(), 0);
}

/// Ports `TestConnections.testEviction3`: a connection that broke while in
/// use (a fatal error: here `has_broken`) is evicted when it is returned,
/// never lent again. (HikariCP then counts 4 of 5; our pool refills at once,
/// so the count is not checked, the session is.)
#[test]
fn connection_broken_in_use_is_evicted_on_return() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(5)
        .connection_timeout(Duration::from_millis(2500))
        .build(server.manager())
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || pool.state().total == 5));
    let conn = pool.get().unwrap();
    let id = conn.id;
    server.broken.store(true, Ordering::SeqCst);
    drop(conn);
    server.broken.store(false, Ordering::SeqCst);
    assert!(!server.is_open(id), "the broken connection was kept");
    for _ in 0..5 {
        assert_ne!(pool.get().unwrap().id, id);
    }
}

/// Ports `TestConnections.testEvictAllRefill`: after the 5 idle connections
/// of a pool with `min_idle` 5 are borrowed and evicted, the pool refills to
/// 5 idle within a few seconds. (HikariCP's "fewer than 5 idle right after"
/// races our immediate refill and is left out.)
#[test]
fn evict_all_refills_min_idle() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(10)
        .min_idle(Some(5))
        .connection_timeout(Duration::from_millis(2500))
        .build(server.manager())
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || pool.state().idle >= 5));
    for _ in 0..5 {
        let mut conn = pool.get().unwrap();
        conn.mark_broken();
    }
    assert_eq!(server.closed.load(Ordering::SeqCst), 5);
    assert!(
        eventually(Duration::from_secs(4), || pool.state().idle == 5),
        "after eviction, refill did not reach 5 idle: {}",
        pool.state()
    );
}

/// Ports `TestConnections.testBackfill`: with `min_idle` 1 and slow
/// connects, a connection evicted on return takes the pool to 0 at once,
/// and the pool backfills to 1 idle connection.
#[test]
fn backfill_after_an_evicted_connection() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(4)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_millis(2500))
        .build(server.manager())
        .unwrap();
    server.connect_delay_ms.store(300, Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(2), || {
        let s = pool.state();
        (s.total, s.idle) == (1, 1)
    }));
    let conn = pool.get().unwrap();
    let id = conn.id;
    assert_eq!(pool.state().total, 1);
    server.broken.store(true, Ordering::SeqCst);
    drop(conn);
    server.broken.store(false, Ordering::SeqCst);
    assert_eq!(pool.state().total, 0, "the broken connection was kept");
    assert!(
        eventually(Duration::from_secs(3), || {
            let s = pool.state();
            (s.total, s.idle) == (1, 1)
        }),
        "no backfill: {}",
        pool.state()
    );
    assert!(!server.is_open(id));
}

/// Ports `TestConnections.testMaximumPoolLimit`: 20 threads borrowing from a
/// pool of 4 (holding each loan a while) all succeed, and exactly 4
/// connections are ever opened.
#[test]
fn maximum_pool_limit_under_a_thread_storm() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(4)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(20))
        .initialization_fail_timeout(Duration::ZERO)
        .build(server.manager())
        .unwrap();
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| match pool.get() {
                Ok(conn) => {
                    conn.touch();
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => errors.lock().unwrap().push(e.to_string()),
            });
        }
    });
    assert_eq!(errors.into_inner().unwrap(), Vec::<String>::new());
    assert_eq!(server.opened.load(Ordering::SeqCst), 4);
    assert!(server.peak_open.load(Ordering::SeqCst) <= 4);
}

/// Ports `TestConnections.testSuspendResume`: while suspended, borrowers
/// wait and idle connections stay idle (a return makes one more idle); on
/// resume the waiting borrower gets its two connections.
#[test]
fn suspend_resume() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(3)
        .min_idle(Some(3))
        .connection_timeout(Duration::from_secs(5))
        .build(server.manager())
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || pool.state().total == 3));
    std::thread::scope(|s| {
        let (done, wait_done) = mpsc::channel::<()>();
        let conn = pool.get().unwrap();
        assert_eq!(pool.state().idle, 2);
        pool.suspend();
        let pool = &pool;
        let t = s.spawn(move || -> Result<(), Error> {
            let a = pool.get()?;
            let b = pool.get()?;
            let _ = wait_done.recv();
            drop((a, b));
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(pool.state().idle, 2, "lent while suspended");
        drop(conn);
        assert_eq!(pool.state().idle, 3);
        pool.resume();
        assert!(
            eventually(Duration::from_secs(2), || pool.state().idle == 1),
            "the waiting borrower was not served after resume: {}",
            pool.state()
        );
        done.send(()).unwrap();
        t.join().unwrap().unwrap();
    });
}

/// Ports `TestConnections.testSuspendResumeWithThrow`: with
/// `fail_when_suspended` (HikariCP's `throwIfSuspended`), a borrower fails at
/// once with `Error::Suspended` and nothing is lent; after resume borrowing
/// works again.
#[test]
fn suspend_resume_with_throw() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(3)
        .min_idle(Some(3))
        .connection_timeout(Duration::from_millis(2500))
        .fail_when_suspended(true)
        .build(server.manager())
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || pool.state().total == 3));
    let conn = pool.get().unwrap();
    assert_eq!(pool.state().idle, 2);
    pool.suspend();
    let started = Instant::now();
    let err = std::thread::scope(|s| s.spawn(|| pool.get().map(|_| ())).join().unwrap());
    assert!(matches!(err, Err(Error::Suspended { .. })), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(pool.state().idle, 2);
    drop(conn);
    assert_eq!(pool.state().idle, 3);
    pool.resume();
    let _conn = pool.get().unwrap();
    assert_eq!(pool.state().idle, 2);
}

/// Ports `TestConnections.testInitializationFailure1` and
/// `testInitializationFailure2`: a pool over a database that refuses
/// connections fails to start, with the refusal as its error.
#[test]
fn initialization_failure() {
    let server = Server::new();
    server.refuse.store(true, Ordering::SeqCst);
    let built = Pool::builder()
        .max_size(1)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_millis(2500))
        .build(server.manager());
    match built {
        Err(err @ Error::Connect { .. }) => {
            let chain = pool_core::ErrorChain(&err).to_string();
            assert!(chain.contains("connection refused"), "{chain}")
        }
        Err(other) => panic!("expected a connect error, got {other}"),
        Ok(_) => panic!("initialization should have failed"),
    }
}

/// Ports `TestConnections.testDataSourceRaisesErrorWhileInitializationTestQuery`:
/// a data source that throws an unchecked error (here: `connect` panics)
/// makes initialization fail, not hang or crash.
#[test]
fn connect_panicking_at_initialization_fails_the_build() {
    let server = Server::new();
    server.panic_connect.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let built = Pool::builder()
        .max_size(2)
        .min_idle(Some(1))
        .initialization_fail_timeout(Duration::from_millis(200))
        .build(server.manager());
    match built {
        Err(err @ Error::Connect { .. }) => {
            let chain = pool_core::ErrorChain(&err).to_string();
            assert!(chain.contains("panicked"), "{chain}")
        }
        Err(other) => panic!("expected a connect error, got {other}"),
        Ok(_) => panic!("initialization should have failed"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Ports `TestConnections.testDataSourceRaisesErrorAfterInitializationTestQuery`:
/// once running, a data source that throws an unchecked error makes a
/// borrow that needs a new connection time out (HikariCP: "request timed
/// out"), within its timeout. (The connection our `build` opened is held,
/// so that the borrow needs a new one, as in HikariCP's empty pool.)
#[test]
fn connect_panicking_after_initialization_times_the_borrow_out() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(1))
        .build(server.manager())
        .unwrap();
    let _held = pool.get().unwrap();
    server.panic_connect.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let Err(err) = pool.get() else {
        panic!("a connection was lent although connect panics")
    };
    let took = started.elapsed();
    assert!(err.is_timeout(), "{err}");
    let chain = pool_core::ErrorChain(&err).to_string();
    assert!(chain.contains("panicked"), "{chain}");
    assert!(took < Duration::from_secs(1) + SLACK, "took {took:?}");
    server.panic_connect.store(false, Ordering::SeqCst);
}

/// Ports `TestConnections.testPopulationSlowAcquisition`: a fixed-size pool
/// (`min_idle` = `max_size` = 20) fills up despite slow connects, keeps 19
/// idle while one is lent, and its idle timeout closes none of them (none is
/// above `min_idle`).
#[test]
fn population_with_slow_connects_and_idle_timeout() {
    let server = Server::new();
    server.connect_delay_ms.store(25, Ordering::SeqCst);
    let pool = Pool::builder()
        .max_size(20)
        .idle_timeout(Some(Duration::from_millis(500)))
        .build(server.manager())
        .unwrap();
    {
        let _conn = pool.get().unwrap();
        assert!(
            eventually(Duration::from_secs(5), || {
                let s = pool.state();
                (s.total, s.idle) == (20, 19)
            }),
            "{}",
            pool.state()
        );
        std::thread::sleep(Duration::from_millis(1000));
        let s = pool.state();
        assert_eq!((s.total, s.idle), (20, 19), "{s}");
    }
    assert_eq!(pool.state().idle, 20);
    std::thread::sleep(Duration::from_millis(1000));
    let s = pool.state();
    assert_eq!((s.total, s.idle), (20, 20), "{s}");
    assert_eq!(server.closed.load(Ordering::SeqCst), 0);
}

/// Ports `TestConnections.testMinimumIdleZero`: a pool with `min_idle` 0
/// lends a connection.
#[test]
fn minimum_idle_zero() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(5)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(1))
        .build(server.manager())
        .unwrap();
    assert!(pool.get().is_ok());
}

// ---------------------------------------------------------------------------
// TestConnectionTimeoutRetry.java
// ---------------------------------------------------------------------------

/// An empty pool (HikariCP's `minimumIdle(0)`): `build_unchecked` with
/// `min_idle` 0 opens nothing until asked.
fn empty_pool(max: u32, timeout: Duration) -> pool_core::Builder {
    Pool::builder()
        .max_size(max)
        .min_idle(Some(0))
        .connection_timeout(timeout)
}

/// Ports `TestConnectionTimeoutRetry.testConnectionRetries`: while the
/// database refuses, a borrower keeps waiting (the pool retrying) for the
/// whole `connection_timeout`, then fails with a timeout naming the
/// refusal. (HikariCP has no fail-fast mode: `fail_fast(false)`.)
#[test]
fn connection_retries_wait_out_the_timeout() {
    let server = Server::new();
    let pool = empty_pool(1, Duration::from_secs(1))
        .fail_fast(false)
        .build_unchecked(server.manager())
        .unwrap();
    server.refuse.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let Err(err) = pool.get() else {
        panic!("should not have been able to get a connection")
    };
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "didn't wait long enough: {took:?}"
    );
    assert!(took < Duration::from_secs(1) + SLACK, "overran: {took:?}");
    assert!(err.is_timeout(), "{err}");
    let chain = pool_core::ErrorChain(&err).to_string();
    assert!(chain.contains("connection refused"), "{chain}");
    assert!(
        server.connect_attempts.load(Ordering::SeqCst) >= 2,
        "no retries"
    );
}

/// Ports `TestConnectionTimeoutRetry.testConnectionRetries2` as HikariCP
/// runs it (no fail-fast: `fail_fast(false)`): a borrower that starts while
/// the database refuses, and the database accepts again 300 ms later, gets
/// a connection within its timeout.
#[test]
fn connection_retries_succeed_when_the_database_returns() {
    let server = Server::new();
    let pool = empty_pool(1, Duration::from_millis(2800))
        .fail_fast(false)
        .build_unchecked(server.manager())
        .unwrap();
    server.refuse.store(true, Ordering::SeqCst);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            server.refuse.store(false, Ordering::SeqCst);
        });
        let got = pool.get();
        let took = started.elapsed();
        assert!(got.is_ok(), "should not have timed out: {:?}", got.err());
        assert!(took > Duration::from_millis(250), "returned too quickly");
        assert!(
            took < Duration::from_millis(2800),
            "waited too long: {took:?}"
        );
    });
}

/// Ports `TestConnectionTimeoutRetry.testConnectionRetries2` with our
/// defaults (fail-fast on): a database that refuses for 300 ms is not
/// "down"; a borrower that starts during the blip still gets a connection
/// once it accepts again, within its timeout, as a HikariCP user's would.
/// (Issue 15 §3: one refused connect must not make every borrower fail.)
#[test]
fn connection_retries_succeed_when_the_database_returns_with_default_fail_fast() {
    let server = Server::new();
    let pool = empty_pool(1, Duration::from_millis(2800))
        .build_unchecked(server.manager())
        .unwrap();
    server.refuse.store(true, Ordering::SeqCst);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            server.refuse.store(false, Ordering::SeqCst);
        });
        let got = pool.get();
        let took = started.elapsed();
        assert!(
            got.is_ok(),
            "failed after {took:?} although the database was back after 300 ms: {}",
            got.err().unwrap()
        );
        assert!(
            took < Duration::from_millis(2800),
            "waited too long: {took:?}"
        );
    });
}

/// Ports the expectation behind `TestConnectionTimeoutRetry.testConnectionRetries2`
/// for callers who borrow only now and then: once the database accepts
/// again, a pool that saw it refuse serves again within a few seconds, even
/// though no borrower is waiting when it comes back (our defaults:
/// fail-fast on, `min_idle` 0). (Issue 15 §3: the probe must keep running.)
#[test]
fn serves_again_after_the_database_returns_with_occasional_gets() {
    let server = Server::new();
    let pool = empty_pool(2, Duration::from_secs(1))
        .build_unchecked(server.manager())
        .unwrap();
    server.refuse.store(true, Ordering::SeqCst);
    assert!(
        pool.get().is_err(),
        "lent a connection from a refusing database"
    );
    server.refuse.store(false, Ordering::SeqCst);
    let back = Instant::now();
    let mut last = None;
    while back.elapsed() < Duration::from_secs(4) {
        match pool.get() {
            Ok(_) => return,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "still failing 4 s after the database came back ({} connect attempts in all): {}",
        server.connect_attempts.load(Ordering::SeqCst),
        last.unwrap()
    );
}

/// Ports `TestConnectionTimeoutRetry.testConnectionRetries3`: with both
/// connections of a pool of 2 lent, a borrower gets the first one returned
/// (300 ms later here, 800 ms in HikariCP) within its timeout.
#[test]
fn connection_retries_get_a_returned_connection() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_millis(2800))
        .build(server.manager())
        .unwrap();
    let conn1 = pool.get().unwrap();
    let _conn2 = pool.get().unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(conn1);
        });
        let got = pool.get();
        let took = started.elapsed();
        assert!(got.is_ok(), "should not have timed out: {:?}", got.err());
        assert!(took >= Duration::from_millis(250), "too soon: {took:?}");
        assert!(
            took < Duration::from_millis(2800),
            "waited too long: {took:?}"
        );
    });
}

/// Ports `TestConnectionTimeoutRetry.testConnectionRetries5`: while the
/// database refuses new connections, a borrower still gets a connection
/// another borrower returns (250 ms later) within its timeout; with one
/// connection open the database is not "down" (our defaults, fail-fast on).
#[test]
fn connection_retries_get_a_connection_returned_while_the_database_refuses() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(1))
        .build(server.manager())
        .unwrap();
    let conn1 = pool.get().unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(250));
            drop(conn1);
        });
        server.refuse.store(true, Ordering::SeqCst);
        let got = pool.get();
        let took = started.elapsed();
        assert!(
            got.is_ok(),
            "should not have failed: {}",
            got.err().unwrap()
        );
        assert!(took >= Duration::from_millis(250), "too soon: {took:?}");
        assert!(
            took < Duration::from_secs(1) + SLACK,
            "waited too long: {took:?}"
        );
    });
}

/// Ports `TestConnectionTimeoutRetry.testConnectionIdleFill`: with
/// `min_idle` 5, `max_size` 10 and 7 lent, the pool opens connections until
/// it is full: 10 in all, 3 idle (as many as `max_size` allows); when the 7
/// come back, 10 idle.
#[test]
fn connection_idle_fill() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(10)
        .min_idle(Some(5))
        .connection_timeout(Duration::from_secs(2))
        .build(server.manager())
        .unwrap();
    {
        let _conns: Vec<_> = (0..7).map(|_| pool.get().unwrap()).collect();
        assert!(
            eventually(Duration::from_secs(3), || {
                let s = pool.state();
                (s.total, s.idle) == (10, 3)
            }),
            "with 7 lent: {}",
            pool.state()
        );
    }
    let s = pool.state();
    assert_eq!((s.total, s.idle), (10, 10), "{s}");
}

// ---------------------------------------------------------------------------
// TestMBean.java
// ---------------------------------------------------------------------------

/// Ports `TestMBean.testMBeanReporting`, first half: a settled pool with
/// `min_idle` 3 and `max_size` 5 refills to 3 *idle* connections when one
/// is lent (4 in all), and is back to 3 idle, 3 in all, after the return
/// and its idle timeout. (Issue 15 §4: refill whenever idle < `min_idle`.)
#[test]
fn min_idle_is_refilled_while_a_connection_is_lent() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(5)
        .min_idle(Some(3))
        .idle_timeout(Some(Duration::from_millis(1000)))
        .connection_timeout(Duration::from_millis(2800))
        .build(server.manager())
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || pool.state().idle == 3));
    assert_eq!(pool.state().active, 0);
    // HikariCP waits 1 s here: the pool has settled, nothing is pending.
    std::thread::sleep(Duration::from_millis(500));
    {
        let _conn = pool.get().unwrap();
        assert_eq!(pool.state().active, 1);
        assert!(
            eventually(Duration::from_secs(2), || {
                let s = pool.state();
                (s.idle, s.total) == (3, 4)
            }),
            "with one lent, min_idle 3 is not kept idle: {}",
            pool.state()
        );
    }
    assert!(
        eventually(Duration::from_secs(3), || {
            let s = pool.state();
            (s.active, s.idle, s.total) == (0, 3, 3)
        }),
        "after the return: {}",
        pool.state()
    );
}

/// Ports `TestMBean.testMBeanReporting`, second half: with one connection
/// lent and 3 idle (`min_idle` 3), the idle timeout closes none of the 3:
/// they are not above `min_idle`. (`max_size` 4 instead of 5, so that the
/// pool reaches 3 idle and 1 lent by borrowing 4 and returning 3, without
/// depending on the refill of the first half. Issue 15 §4: retire only
/// idle connections beyond `min_idle` idle ones.)
#[test]
fn idle_timeout_keeps_min_idle_idle_while_others_are_lent() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(4)
        .min_idle(Some(3))
        .idle_timeout(Some(Duration::from_millis(1000)))
        .connection_timeout(Duration::from_millis(2800))
        .build(server.manager())
        .unwrap();
    let mut conns: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    let _lent = conns.pop().unwrap();
    drop(conns);
    let s = pool.state();
    assert_eq!((s.active, s.idle, s.total), (1, 3, 4), "{s}");
    std::thread::sleep(Duration::from_millis(2000));
    let s = pool.state();
    assert_eq!(
        (s.active, s.idle, s.total),
        (1, 3, 4),
        "after the idle timeout: {s}"
    );
    assert_eq!(server.closed.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------
// TestConnectionCloseBlocking.java, ExceptionTest.java: bounded borrows
// ---------------------------------------------------------------------------

/// Ports `TestConnectionCloseBlocking.testConnectionCloseBlocking` (a test
/// HikariCP keeps disabled, for the behaviour its asynchronous close
/// provides): when the network is gone, an idle connection fails
/// validation and closing it blocks (2 s there, 3 s here); a borrower must
/// still get its answer — a connection or an error — within
/// `connection_timeout` (1.5 s), not wait for the close.
#[test]
fn slow_close_of_a_dead_connection_does_not_hold_up_the_borrower() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(1)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_millis(1500))
        .build(server.manager())
        .unwrap();
    drop(pool.get().unwrap());
    // Past the alive-bypass window (500 ms), so the borrow validates.
    std::thread::sleep(Duration::from_millis(1100));
    server.invalid.store(true, Ordering::SeqCst);
    server.close_delay_ms.store(3000, Ordering::SeqCst);
    let started = Instant::now();
    let got = pool.get().map(|c| c.id);
    let took = started.elapsed();
    server.invalid.store(false, Ordering::SeqCst);
    server.close_delay_ms.store(0, Ordering::SeqCst);
    assert!(
        took < Duration::from_millis(1500) + SLACK,
        "get took {took:?} with a 1.5 s timeout (result: {got:?})"
    );
}

/// Ports `ExceptionTest.testLastErrorTimeout`: a borrow whose validation of
/// an idle connection hangs past the connection timeout fails rather than
/// hangs. Here with 8 idle connections whose validation all hang (a frozen
/// server; the stub gives up at the time limit it is given, as a read
/// timeout would): `get` returns within `connection_timeout` (1 s) plus
/// slack, whatever it returns. (Issue 15 §1.)
#[test]
fn get_returns_within_its_timeout_when_validation_hangs() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(8)
        .connection_timeout(Duration::from_secs(1))
        .build(server.manager())
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || pool.state().idle == 8));
    // This thread returns all 8, so its own cache of recent seats is warm.
    drop((0..8).map(|_| pool.get().unwrap()).collect::<Vec<_>>());
    // Past the alive-bypass window (500 ms), so borrows validate.
    std::thread::sleep(Duration::from_millis(700));
    server.validation_hang_ms.store(60_000, Ordering::SeqCst);
    let started = Instant::now();
    let got = pool.get().map(|c| c.id);
    let took = started.elapsed();
    server.validation_hang_ms.store(0, Ordering::SeqCst);
    assert!(
        took < Duration::from_secs(1) + SLACK,
        "get took {took:?} with a 1 s timeout (result: {got:?})"
    );
}

// ---------------------------------------------------------------------------
// MetricsTrackerTest.java, TestMetrics.java
// ---------------------------------------------------------------------------

/// Ports `MetricsTrackerTest.connectionTimeoutIsRecorded`: when connects
/// take longer (2 s) than the connection timeout (1 s), the borrow times
/// out, the timeout is counted, and the time waited is at least the timeout.
#[test]
fn connection_timeout_is_recorded() {
    let server = Server::new();
    server.connect_delay_ms.store(2000, Ordering::SeqCst);
    let pool = empty_pool(1, Duration::from_secs(1))
        .build_unchecked(server.manager())
        .unwrap();
    let started = Instant::now();
    let got = pool.get().map(|c| c.id);
    let took = started.elapsed();
    match got {
        Err(Error::Timeout { waited, .. }) => {
            assert!(waited >= Duration::from_secs(1), "waited {waited:?}")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(took < Duration::from_secs(1) + SLACK, "took {took:?}");
    assert_eq!(pool.metrics().acquire_timeouts, 1);
}

/// Ports `TestMetrics.testMetricWait` and `testMetricUsage`: one borrow is
/// one acquire-wait sample; a loan held 250 ms is recorded as at least
/// 250 ms of use (less one tick of the pool's coarse clock).
#[test]
fn metric_wait_and_usage() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(1)
        .min_idle(Some(1))
        .build(server.manager())
        .unwrap();
    drop(pool.get().unwrap());
    assert_eq!(pool.metrics().acquire_wait.count, 1);
    {
        let _conn = pool.get().unwrap();
        std::thread::sleep(Duration::from_millis(250));
    }
    let usage = pool.metrics().usage;
    assert_eq!(usage.count, 2);
    assert!(usage.max >= Duration::from_millis(240), "{usage:?}");
}

// ---------------------------------------------------------------------------
// ShutdownTest.java, TestIsRunning.java, HouseKeeperCleanupTest.java
// ---------------------------------------------------------------------------

/// Ports `ShutdownTest.testShutdown1`: closing a pool while 10 threads hold
/// or wait for connections (slow connects) leaves no idle connection and,
/// once the borrowers return theirs, none at all. (HikariCP aborts lent
/// connections; ours closes them as they come back, as documented.)
#[test]
fn shutdown_with_borrowers_holding_connections() {
    let server = Server::new();
    server.connect_delay_ms.store(50, Ordering::SeqCst);
    let pool = Pool::builder()
        .max_size(10)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(5))
        .build(server.manager())
        .unwrap();
    let other_errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..10 {
            s.spawn(|| match pool.get() {
                Ok(_conn) => std::thread::sleep(Duration::from_millis(1000)),
                Err(Error::Closed { .. }) => {}
                Err(e) => other_errors.lock().unwrap().push(e.to_string()),
            });
        }
        std::thread::sleep(Duration::from_millis(400));
        assert!(pool.state().total > 0);
        pool.close();
        assert!(pool.is_closed());
        assert_eq!(pool.state().idle, 0, "{}", pool.state());
        assert!(matches!(pool.get(), Err(Error::Closed { .. })));
    });
    let s = pool.state();
    assert_eq!((s.active, s.idle, s.total), (0, 0, 0), "{s}");
    assert_eq!(server.open_now(), 0);
    assert_eq!(server.closed_twice.load(Ordering::SeqCst), 0);
    assert_eq!(other_errors.into_inner().unwrap(), Vec::<String>::new());
}

/// Ports `ShutdownTest.testShutdown2` and `testShutdown3`: closing a pool
/// while it is still filling (slow connects) leaves nothing open, the
/// connect in flight included, by the time `close` returns.
#[test]
fn shutdown_while_filling() {
    let server = Server::new();
    server.connect_delay_ms.store(50, Ordering::SeqCst);
    let pool = Pool::builder()
        .max_size(10)
        .min_idle(Some(10))
        .build_unchecked(server.manager())
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || pool.state().total > 0));
    pool.close();
    let s = pool.state();
    assert_eq!((s.active, s.idle, s.total), (0, 0, 0), "{s}");
    assert_eq!(server.open_now(), 0);
}

/// Ports `ShutdownTest.testShutdown4`: after closing a pool that was still
/// opening connections, its threads end (within 5 s) and no connection is
/// left.
#[test]
fn shutdown_ends_the_pool_threads() {
    let server = Server::new();
    server.connect_delay_ms.store(100, Ordering::SeqCst);
    let pool = Pool::builder()
        .name("hkshut4")
        .max_size(10)
        .min_idle(Some(10))
        .build_unchecked(server.manager())
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    pool.close();
    assert!(
        eventually(Duration::from_secs(5), || threads_named("hkshut4-") == 0),
        "pool threads outlived close()"
    );
    assert_eq!(pool.state().total, 0);
    assert_eq!(server.open_now(), 0);
}

/// Ports `ShutdownTest.testShutdown5`: closing a pool with all 5
/// connections lent refuses further borrows, and each connection is closed
/// when it comes back, leaving none. (HikariCP aborts them at once.)
#[test]
fn shutdown_with_every_connection_lent() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(5)
        .min_idle(Some(5))
        .build(server.manager())
        .unwrap();
    let conns: Vec<_> = (0..5).map(|_| pool.get().unwrap()).collect();
    assert_eq!(pool.state().total, 5);
    pool.close();
    assert!(matches!(pool.get(), Err(Error::Closed { .. })));
    drop(conns);
    let s = pool.state();
    assert_eq!((s.active, s.idle, s.total), (0, 0, 0), "{s}");
    assert_eq!(server.open_now(), 0);
    assert_eq!(server.closed_twice.load(Ordering::SeqCst), 0);
}

/// Ports `ShutdownTest.testAfterShutdown`: borrowing from a closed pool
/// fails with an error saying it is closed.
#[test]
fn borrow_after_shutdown() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(5)
        .min_idle(Some(0))
        .build(server.manager())
        .unwrap();
    pool.close();
    match pool.get() {
        Err(err @ Error::Closed { .. }) => assert!(err.to_string().contains("closed"), "{err}"),
        Err(other) => panic!("expected Closed, got {other}"),
        Ok(_) => panic!("a closed pool lent a connection"),
    };
}

/// Ports `ShutdownTest.testShutdownDuringInit`: closing a pool while its
/// connects are slow (300 ms each) neither hangs nor leaves a connection
/// open: `close` waits at most for the connect in flight.
#[test]
fn shutdown_during_init() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(5)
        .min_idle(Some(5))
        .connection_timeout(Duration::from_secs(1))
        .build_unchecked(server.manager())
        .unwrap();
    server.connect_delay_ms.store(300, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    pool.close();
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(300) + SLACK,
        "close took {took:?}"
    );
    assert_eq!(server.open_now(), 0);
}

/// Ports `ShutdownTest.testThreadedShutdown`: one thread borrowing in a loop
/// while another closes the pool: the borrower only ever sees "closed", and
/// every connection is closed once, four times over.
#[test]
fn threaded_shutdown() {
    for _ in 0..4 {
        let server = Server::new();
        let pool = Pool::builder()
            .max_size(5)
            .min_idle(Some(5))
            .connection_timeout(Duration::from_secs(1))
            .build(server.manager())
            .unwrap();
        std::thread::scope(|s| {
            let borrower = s.spawn(|| -> Result<(), String> {
                let held = pool.get().map_err(|e| e.to_string())?;
                for _ in 0..10 {
                    match pool.get() {
                        Ok(conn) => {
                            conn.touch();
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(Error::Closed { .. }) => break,
                        Err(e) => return Err(e.to_string()),
                    }
                }
                drop(held);
                pool.close();
                Ok(())
            });
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                pool.close();
            });
            borrower.join().unwrap().unwrap();
        });
        pool.close();
        assert_eq!(server.open_now(), 0);
        assert_eq!(server.closed_twice.load(Ordering::SeqCst), 0);
    }
}

/// Ports `TestIsRunning.testRunningNormally` and `testShutdown`: a pool
/// reports itself running until it is closed. (Suspension is not reported
/// by our API, so `testSuspendAndResume` is not ported.)
#[test]
fn is_running_until_closed() {
    let server = Server::new();
    let pool = Pool::builder().max_size(1).build(server.manager()).unwrap();
    assert!(!pool.is_closed());
    pool.close();
    assert!(pool.is_closed());
}

/// Ports `HouseKeeperCleanupTest.testHouseKeeperCleanupWithCustomExecutor`:
/// each pool schedules its own housekeeping (two pools, two of everything),
/// and closing the pools removes it all.
#[test]
fn housekeeping_ends_with_its_pools() {
    let server = Server::new();
    let build = |name: &str| {
        Pool::builder()
            .name(name)
            .max_size(10)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_millis(2500))
            .build(server.manager())
            .unwrap()
    };
    let (ds1, ds2) = (build("hkcln1"), build("hkcln2"));
    assert!(eventually(Duration::from_secs(2), || {
        threads_named("hkcln1-") == 2 && threads_named("hkcln2-") == 2
    }));
    drop(ds1);
    drop(ds2);
    assert!(
        eventually(Duration::from_secs(2), || threads_named("hkcln") == 0),
        "housekeeping outlived its pools"
    );
}

// ---------------------------------------------------------------------------
// ConnectionRaceConditionTest.java, ConnectionPoolSizeVsThreadsTest.java,
// RampUpDown.java
// ---------------------------------------------------------------------------

/// Ports `ConnectionRaceConditionTest.testRaceCondition`: two threads that
/// together borrow and evict 10,000 connections from an initially empty
/// pool of 10 never fail, and the pool never holds more than 10.
#[test]
fn race_between_creation_and_eviction() {
    let server = Server::new();
    let pool = empty_pool(10, Duration::from_secs(5))
        .build_unchecked(server.manager())
        .unwrap();
    let failed = Mutex::new(None);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..5_000 {
                    if failed.lock().unwrap().is_some() {
                        return;
                    }
                    match pool.get() {
                        Ok(mut conn) => {
                            conn.touch();
                            conn.mark_broken();
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => *failed.lock().unwrap() = Some(e.to_string()),
                    }
                }
            });
        }
    });
    assert_eq!(failed.into_inner().unwrap(), None);
    assert_eq!(done.load(Ordering::Relaxed), 10_000);
    assert!(server.peak_open.load(Ordering::SeqCst) <= 10);
    assert_eq!(server.closed_twice.load(Ordering::SeqCst), 0);
}

/// Runs `iterations` borrows of `work` each on `threads` threads against a
/// pool of `max` with `min_idle` 2 whose connects take `connect`; returns
/// the most connections open at once under load, the most lent at once,
/// and the number opened once the work was done (over `quiet`).
fn pool_size_vs_threads(
    threads: usize,
    max: u32,
    iterations: usize,
    work: Duration,
    connect: Duration,
    quiet: Duration,
) -> (u32, u32, usize) {
    let server = Server::new();
    server
        .connect_delay_ms
        .store(connect.as_millis() as u64, Ordering::SeqCst);
    let pool = Pool::builder()
        .max_size(max)
        .min_idle(Some(2))
        .connection_timeout(Duration::from_millis(2500))
        .build(server.manager())
        .unwrap();
    let left = AtomicUsize::new(iterations);
    let errors = Mutex::new(Vec::new());
    let (mut max_total, mut max_active) = (0, 0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    match pool.get() {
                        Ok(_conn) => std::thread::sleep(work),
                        Err(e) => errors.lock().unwrap().push(e.to_string()),
                    }
                }
            });
        }
        while left.load(Ordering::SeqCst) > 0 || pool.state().active > 0 {
            let st = pool.state();
            max_total = max_total.max(st.total);
            max_active = max_active.max(st.active);
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    assert_eq!(errors.into_inner().unwrap(), Vec::<String>::new());
    // Let a connect already under way land, then watch the quiet pool.
    std::thread::sleep(connect + Duration::from_millis(100));
    let opened = server.opened.load(Ordering::SeqCst);
    std::thread::sleep(quiet);
    assert_eq!(pool.state().active, 0);
    let after = server.opened.load(Ordering::SeqCst) - opened;
    (max_total, max_active, after)
}

/// Ports `ConnectionPoolSizeVsThreadsTest.testPoolSizeAboutSameSizeAsThreadCount`:
/// 20 threads doing 1 ms of work per borrow, with a pool of up to 100 and
/// 20 ms connects: the pool grows no larger than the thread count (plus
/// HikariCP's delta of 5), and opens no connection once the work is done
/// (HikariCP's delta: 1). (HikariCP: 50 threads, 50,000 borrows.)
#[test]
fn pool_size_about_the_thread_count() {
    let threads = 20;
    let (max_total, max_active, after) = pool_size_vs_threads(
        threads,
        100,
        8_000,
        Duration::from_millis(1),
        Duration::from_millis(20),
        Duration::from_secs(2),
    );
    assert!(max_active as usize <= threads, "max active {max_active}");
    assert!(
        max_total as usize <= threads + 5,
        "max total {max_total} for {threads} threads"
    );
    assert!(after <= 1, "{after} connections opened with no borrower");
}

/// Ports `ConnectionPoolSizeVsThreadsTest.testSlowConnectionTimeBurstyWork`:
/// a burst of 5,000 instant borrows on 50 threads, with 250 ms connects,
/// is over before more than a few connections could be opened, so the pool
/// must not open one per thread (HikariCP allows 0 + 4 above the work's
/// need; here the pool may also keep its `min_idle` 2 and open one per
/// connect time while borrowers wait), and opens none once the burst is
/// over.
#[test]
fn slow_connects_and_bursty_work() {
    let started = Instant::now();
    let (max_total, _, after) = pool_size_vs_threads(
        50,
        100,
        5_000,
        Duration::ZERO,
        Duration::from_millis(250),
        Duration::from_secs(1),
    );
    let busy = started.elapsed().as_millis() as u32 / 250;
    assert!(
        max_total <= 2 + 4 + busy,
        "max total {max_total}: a burst became a burst of connects ({busy} connect times)"
    );
    assert!(max_total < 25, "max total {max_total} for 50 threads");
    assert!(after <= 1, "{after} connections opened with no borrower");
}

/// Ports `RampUpDown.rampUpDownTest`: a pool with `min_idle` 5 starts with
/// 5, grows to `max_size` (60) when 60 are borrowed, and after the return
/// and its idle timeout (1 s) shrinks back to 5.
#[test]
fn ramp_up_down() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(60)
        .min_idle(Some(5))
        .idle_timeout(Some(Duration::from_millis(1000)))
        .build(server.manager())
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || pool.state().total == 5));
    let conns: Vec<_> = (0..60)
        .map(|_| pool.get_timeout(Duration::from_secs(5)).unwrap())
        .collect();
    assert_eq!(pool.state().total, 60);
    drop(conns);
    assert!(
        eventually(Duration::from_secs(4), || pool.state().total == 5),
        "did not ramp down: {}",
        pool.state()
    );
}

// ---------------------------------------------------------------------------
// BrokenConnectionEvictionTest.java, PostgresTest.java, MiscTest.java,
// TestValidation.java
// ---------------------------------------------------------------------------

/// Borrows on `n` threads at once, each holding its loan 100 ms; returns
/// how many got a live session.
fn consume_the_pool(pool: &Pool<peer_stub::Stub>, server: &Server, n: usize) -> usize {
    let ok = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| {
                if let Ok(conn) = pool.get() {
                    if conn.id > server.killed_up_to.load(Ordering::SeqCst) {
                        conn.touch();
                        std::thread::sleep(Duration::from_millis(100));
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    ok.load(Ordering::SeqCst)
}

/// Ports `BrokenConnectionEvictionTest.testRemoteCloseLocalInMemory` (an
/// earlier HikariCP test): after the server kills every session of a pool
/// of 3, using the pool again (6 threads at once) works: the dead sessions
/// are noticed and replaced. (Borrowed after the alive-bypass window, in
/// which our pool, like HikariCP, skips validation.)
#[test]
fn pool_recovers_after_the_server_kills_every_session() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(3)
        .min_idle(Some(3))
        .connection_timeout(Duration::from_secs(5))
        .build(server.manager())
        .unwrap();
    assert_eq!(consume_the_pool(&pool, &server, 6), 6);
    server.kill_all();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        consume_the_pool(&pool, &server, 6),
        6,
        "some borrowers failed or got a dead session"
    );
}

/// Ports `PostgresTest.testCase4` with the stub server: 3 threads borrowing
/// in a loop (5 ms each) for 2 s while connections retire constantly (idle
/// timeout 200 ms, lifetime 300 ms; HikariCP asks for 5 ms) see no error.
#[test]
fn no_errors_while_connections_churn() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(15)
        .min_idle(Some(0))
        .idle_timeout(Some(Duration::from_millis(200)))
        .max_lifetime(Some(Duration::from_millis(300)))
        .connection_timeout(Duration::from_secs(10))
        .build(server.manager())
        .unwrap();
    let errors = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while start.elapsed() < Duration::from_secs(2) {
                    match pool.get() {
                        Ok(conn) => {
                            conn.touch();
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => {
                            eprintln!("{e}");
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
    });
    assert_eq!(errors.load(Ordering::SeqCst), 0);
    assert!(server.closed.load(Ordering::SeqCst) > 0, "nothing retired");
    assert_eq!(server.closed_twice.load(Ordering::SeqCst), 0);
}

/// Ports `MiscTest.testLeakDetection`: a connection held past the leak
/// detection threshold is reported.
#[test]
fn leak_detection() {
    let server = Server::new();
    let pool = Pool::builder()
        .max_size(4)
        .min_idle(Some(0))
        .leak_detection_threshold(Some(Duration::from_millis(100)))
        .build(server.manager())
        .unwrap();
    let conn = pool.get().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(pool.leaks().len(), 1, "the held connection is not reported");
    assert!(eventually(Duration::from_secs(2), || {
        pool.metrics().leaks_detected >= 1
    }));
    drop(conn);
}

/// Ports `TestValidation.validateInvalidMaxPoolSize` and
/// `validateInvalidLifetime`: a pool size of 0 and a zero lifetime are
/// rejected, naming the setting. (HikariCP's other checks concern negative
/// numbers, which our types rule out, JDBC properties, or values HikariCP
/// clamps and ours accepts.)
#[test]
fn invalid_settings_are_rejected() {
    for (builder, setting) in [
        (Pool::builder().max_size(0), "max_size"),
        (
            Pool::builder()
                .idle_timeout(None)
                .max_lifetime(Some(Duration::ZERO)),
            "max_lifetime",
        ),
    ] {
        match builder.build(Server::new().manager()) {
            Err(Error::Config { setting: s, .. }) => assert_eq!(s, setting),
            Err(other) => panic!("{setting}: expected a config error, got {other}"),
            Ok(_) => panic!("{setting}: accepted"),
        }
    }
}
