//! Connecting fails: `build()` and `get()` fail within their time limits with
//! an error naming the real cause, and never show the password.

mod common;

use std::time::{Duration, Instant};

use common::{capture_logs, logged, with_params};
use pool_postgres::{builder_from_url, PostgresManager};
use pool_testkit::{FaultMode, FaultProxy, PgServer, PG_DATABASE, PG_PASSWORD, PG_USER};

const SECRET: &str = "Wr0ng-Secret-123";

/// Builds with `url`, expecting failure within `limit`; returns the message.
fn build_fails(url: &str, limit: Duration) -> String {
    let (builder, manager) = builder_from_url(url).expect("url");
    let start = Instant::now();
    let err = builder
        .build(manager)
        .map(|_| ())
        .expect_err("build must fail");
    let took = start.elapsed();
    assert!(took < limit, "build() took {took:?}: {err}");
    let msg = pool_core::ErrorChain(&err).to_string();
    println!("build() failed after {took:?}: {msg}");
    assert!(!msg.contains(SECRET), "{msg}");
    assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
    msg
}

/// Builds without waiting, then expects `get_timeout` to fail within `limit`.
fn get_fails(url: &str, wait: Duration, limit: Duration) -> String {
    let (builder, manager) = builder_from_url(url).expect("url");
    let pool = builder.build_unchecked(manager).expect("unchecked build");
    let start = Instant::now();
    let err = pool
        .get_timeout(wait)
        .map(|_| ())
        .expect_err("get must fail");
    let took = start.elapsed();
    assert!(took < limit, "get() took {took:?}: {err}");
    let msg = pool_core::ErrorChain(&err).to_string();
    println!("get() failed after {took:?}: {msg}");
    assert!(!msg.contains(SECRET), "{msg}");
    msg
}

fn no_secret_logged() {
    for line in logged() {
        assert!(
            !line.contains(SECRET),
            "a log line shows the password: {line}"
        );
    }
}

#[test]
fn wrong_password() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    capture_logs();
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let url = with_params(
        &pg.url_with_password(SECRET),
        "initialization_fail_timeout=0.5",
    );
    let msg = build_fails(&url, Duration::from_secs(3));
    assert!(msg.contains("password authentication failed"), "{msg}");
    assert!(msg.contains("28P01"), "{msg}");
    let msg = get_fails(&url, Duration::from_secs(1), Duration::from_secs(3));
    assert!(msg.contains("password authentication failed"), "{msg}");
    // The manager's Debug output hides the password too.
    let (manager, _) = PostgresManager::from_url(&url).unwrap();
    assert!(!format!("{manager:?}").contains(SECRET));
    no_secret_logged();
}

#[test]
fn unknown_database() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    capture_logs();
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let url = format!(
        "postgres://{PG_USER}:{SECRET}@127.0.0.1:{}/no_such_db?initialization_fail_timeout=0.5",
        pg.port()
    );
    // The server checks the password before the database: use the right one.
    let url = url.replace(SECRET, PG_PASSWORD);
    let msg = build_fails(&url, Duration::from_secs(3));
    assert!(
        msg.contains("database \"no_such_db\" does not exist"),
        "{msg}"
    );
    let msg = get_fails(&url, Duration::from_secs(1), Duration::from_secs(3));
    assert!(msg.contains("no_such_db"), "{msg}");
}

#[test]
fn refused_port() {
    capture_logs();
    let port = pool_testkit::free_port().expect("free port");
    let url = format!(
        "postgres://{PG_USER}:{SECRET}@127.0.0.1:{port}/{PG_DATABASE}?initialization_fail_timeout=0.5"
    );
    let msg = build_fails(&url, Duration::from_secs(3));
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    let msg = get_fails(&url, Duration::from_secs(1), Duration::from_secs(3));
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    no_secret_logged();
}

#[test]
fn black_holed_address() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    capture_logs();
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let proxy = FaultProxy::start(pg.addr()).expect("proxy");
    proxy.set_mode(FaultMode::Blackhole);
    // The TCP handshake succeeds (the proxy accepts), then nothing ever
    // comes back: only the manager's own deadline can end the connect.
    let url = format!(
        "postgres://{PG_USER}:{SECRET}@127.0.0.1:{}/{PG_DATABASE}\
         ?connect_timeout=1&initialization_fail_timeout=0",
        proxy.port()
    );
    let msg = build_fails(&url, Duration::from_millis(2500));
    assert!(
        msg.contains("timed out after 1s connecting to 127.0.0.1"),
        "{msg}"
    );
    let msg = get_fails(
        &url,
        Duration::from_millis(1500),
        Duration::from_millis(3000),
    );
    assert!(msg.contains("timed out"), "{msg}");
    no_secret_logged();
}

#[test]
fn network_black_holed_after_connecting() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let proxy = FaultProxy::start(pg.addr()).expect("proxy");
    let url = format!(
        "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{PG_DATABASE}\
         ?connection_limit=1&connect_timeout=1&validation_timeout=0.3",
        proxy.port()
    );
    let (builder, manager) = builder_from_url(&url).unwrap();
    let pool = builder.build(manager).expect("pool");
    pool.get().unwrap().batch_execute("SELECT 1").unwrap();
    // Its session reset runs in the background: let it finish before the
    // network goes (a reset cut off would hold the only seat for its 5 s
    // limit, and close() waits for it).
    let settled = Instant::now();
    while pool.state().idle < 1 && settled.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }

    proxy.set_mode(FaultMode::Blackhole);
    // Idle past the alive-bypass window, so the borrow validates (0.3 s,
    // fails), then a reconnect is tried (1 s, fails).
    std::thread::sleep(Duration::from_millis(600));
    let start = Instant::now();
    let err = pool
        .get_timeout(Duration::from_secs(2))
        .map(|_| ())
        .expect_err("no connection can work");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "get() took {took:?}");
    let msg = pool_core::ErrorChain(&err).to_string();
    assert!(
        msg.contains("timed out") || msg.contains("timeout"),
        "{msg}"
    );

    // Closing the pool does not hang on the black-holed sockets.
    let start = Instant::now();
    drop(pool);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "dropping the pool took {:?}",
        start.elapsed()
    );
}
