//! `PostgresManager::reset_timeout`'s promise, with the network black-holed
//! by the fault proxy while a used connection comes back: the reset gives
//! up after about the limit with a timeout error, the returning thread waits
//! at most about that long, and the connection is never lent again. A loan
//! that left nothing (plain statements) has no reset to wait for.

mod common;

use std::time::{Duration, Instant};

use pool_core::{ManageConnection, Pool};
use pool_postgres::{Error, PostgresManager};
use pool_testkit::{FaultMode, FaultProxy, PgServer, PG_DATABASE, PG_PASSWORD, PG_USER};

const LIMIT: Duration = Duration::from_millis(300);

fn manager(proxy: &FaultProxy) -> PostgresManager<postgres::NoTls> {
    let url = format!(
        "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{PG_DATABASE}?connect_timeout=2",
        proxy.port()
    );
    let (manager, _) = PostgresManager::from_url(&url).expect("url");
    manager.reset_timeout(Some(LIMIT))
}

#[test]
fn a_black_holed_reset_gives_up_after_its_limit() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let proxy = FaultProxy::start(pg.addr()).expect("proxy");
    let manager = manager(&proxy);

    // The manager alone.
    let mut conn = manager.connect().expect("connect");
    conn.batch_execute("SET TIME ZONE 'UTC'").unwrap();
    proxy.set_mode(FaultMode::Blackhole);
    let start = Instant::now();
    let err = manager.reset(&mut conn).expect_err("no answer");
    let took = start.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        took >= LIMIT.mul_f32(0.9) && took < LIMIT * 4,
        "the reset gave up after {took:?}"
    );
    assert!(
        err.to_string()
            .contains("timed out after 300ms resetting the session"),
        "{err}"
    );
    assert!(manager.has_broken(&mut conn));
    drop(conn);

    // In a pool, on the returning thread (as when borrowers wait): `drop`
    // comes back after about the limit, and the connection is closed.
    proxy.set_mode(FaultMode::PassThrough);
    // Two places: the given-up reset keeps one until its session is gone
    // (invariant 2), the loan below takes the other.
    let pool = Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .reset_in_background(false)
        .connection_timeout(Duration::from_secs(5))
        .build(manager.clone())
        .expect("pool");
    let mut lent = pool.get().unwrap();
    lent.batch_execute("SET TIME ZONE 'UTC'").unwrap();
    proxy.set_mode(FaultMode::Blackhole);
    let start = Instant::now();
    drop(lent);
    let took = start.elapsed();
    assert!(took < LIMIT * 4, "drop() took {took:?}");
    assert_eq!(pool.metrics().closed.reset_failed, 1);

    // Plain statements leave nothing to reset: drop() does not wait for the
    // black-holed network, and nothing is closed.
    proxy.set_mode(FaultMode::PassThrough);
    let mut lent = pool.get().unwrap();
    lent.simple_query("SELECT 1").unwrap();
    proxy.set_mode(FaultMode::Blackhole);
    let start = Instant::now();
    drop(lent);
    assert!(
        start.elapsed() < LIMIT / 2,
        "drop() took {:?}",
        start.elapsed()
    );
    assert_eq!(pool.metrics().closed.reset_failed, 1);
    assert!(pool.state().idle >= 1, "{}", pool.state());
}

#[test]
fn a_black_holed_background_reset_is_given_up_after_the_limit() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let proxy = FaultProxy::start(pg.addr()).expect("proxy");
    let pool = Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(5))
        .build(manager(&proxy))
        .expect("pool");
    let mut lent = pool.get().unwrap();
    lent.batch_execute("SET TIME ZONE 'UTC'").unwrap();
    proxy.set_mode(FaultMode::Blackhole);
    // Nobody waits: the reset runs in the background and drop() returns
    // at once.
    let start = Instant::now();
    drop(lent);
    assert!(
        start.elapsed() < LIMIT / 2,
        "drop() took {:?}",
        start.elapsed()
    );
    // The housekeeper gives the connection up after the limit.
    let given_up = Instant::now();
    while pool.metrics().closed.reset_failed == 0 && given_up.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        pool.metrics().closed.reset_failed,
        1,
        "the connection was never given up"
    );
    assert!(
        given_up.elapsed() < Duration::from_secs(3),
        "given up after {:?}",
        given_up.elapsed()
    );
    // Its session may still exist on the server until the stuck reset
    // returns, so it keeps its place in max_size; the other place takes a
    // new connection once the network is back.
    let state = pool.state();
    assert_eq!((state.total, state.given_up), (0, 1), "{state}");
    proxy.set_mode(FaultMode::PassThrough);
    let mut conn = pool.get().expect("a new connection in the free place");
    conn.simple_query("SELECT 1").unwrap();
    let state = pool.state();
    assert!(state.total + state.given_up <= 2, "{state}");
}
