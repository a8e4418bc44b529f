//! Connecting fails: `build()` and `get()` fail within their time limits with
//! an error naming the real cause, and never show the password.

mod common;

use std::time::{Duration, Instant};

use common::{capture_logs, logged, with_params};
use mysql::prelude::Queryable;
use pool_mysql::{builder_from_url, MysqlManager};
use pool_testkit::{
    FaultMode, FaultProxy, MariaDbServer, MARIADB_DATABASE, MARIADB_PASSWORD, MARIADB_USER,
};

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
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    capture_logs();
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let url = with_params(
        &db.url_with_password(SECRET),
        "initialization_fail_timeout=0.5",
    );
    let msg = build_fails(&url, Duration::from_secs(3));
    assert!(msg.contains("Access denied"), "{msg}");
    assert!(msg.contains("1045"), "{msg}");
    let msg = get_fails(&url, Duration::from_secs(1), Duration::from_secs(3));
    assert!(msg.contains("Access denied"), "{msg}");
    let (manager, _) = MysqlManager::from_url(&url).unwrap();
    assert!(!format!("{manager:?}").contains(SECRET));
    no_secret_logged();
}

#[test]
fn unknown_database() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    capture_logs();
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    // As root, who may see every database: "Unknown database".
    let url = format!(
        "mysql://root@127.0.0.1:{}/no_such_db?initialization_fail_timeout=0.5",
        db.port()
    );
    let msg = build_fails(&url, Duration::from_secs(3));
    assert!(msg.contains("Unknown database 'no_such_db'"), "{msg}");
    // As the test user, who has no rights there: "Access denied ... to database".
    let url = format!(
        "mysql://{MARIADB_USER}:{MARIADB_PASSWORD}@127.0.0.1:{}/no_such_db?initialization_fail_timeout=0.5",
        db.port()
    );
    let msg = get_fails(&url, Duration::from_secs(1), Duration::from_secs(3));
    assert!(msg.contains("no_such_db"), "{msg}");
}

#[test]
fn refused_port() {
    capture_logs();
    let port = pool_testkit::free_port().expect("free port");
    let url = format!(
        "mysql://{MARIADB_USER}:{SECRET}@127.0.0.1:{port}/{MARIADB_DATABASE}?initialization_fail_timeout=0.5"
    );
    let msg = build_fails(&url, Duration::from_secs(3));
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    let msg = get_fails(&url, Duration::from_secs(1), Duration::from_secs(3));
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    no_secret_logged();
}

#[test]
fn black_holed_address() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    capture_logs();
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let proxy = FaultProxy::start(db.addr()).expect("proxy");
    proxy.set_mode(FaultMode::Blackhole);
    // The TCP handshake succeeds (the proxy accepts), then the server's
    // greeting never comes: only the manager's own deadline ends the connect.
    let url = format!(
        "mysql://{MARIADB_USER}:{SECRET}@127.0.0.1:{}/{MARIADB_DATABASE}\
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

/// A fault proxy in front of the shared MariaDB server, and a URL to the
/// server through it (`params`: the URL's query string, or "").
fn behind_proxy(params: &str) -> (FaultProxy, String) {
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let proxy = FaultProxy::start(db.addr()).expect("proxy");
    let url = format!(
        "mysql://{MARIADB_USER}:{MARIADB_PASSWORD}@127.0.0.1:{}/{MARIADB_DATABASE}{params}",
        proxy.port()
    );
    (proxy, url)
}

#[test]
fn network_black_holed_after_connecting() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let (proxy, url) = behind_proxy("?connection_limit=1&connect_timeout=1&validation_timeout=0.3");
    let (builder, manager) = builder_from_url(&url).unwrap();
    let pool = builder.build(manager).expect("pool");
    pool.get().unwrap().query_drop("SELECT 1").unwrap();
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
    println!("get() failed after {took:?}: {msg}");
    assert!(msg.contains("timed out"), "{msg}");

    let start = Instant::now();
    drop(pool);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "dropping the pool took {:?}",
        start.elapsed()
    );
}

/// A reset or a validation whose server stops answering ends after the
/// manager's limit on the calling thread (the socket's read timeout), with a
/// timeout error, and the connection is never lent again.
#[test]
fn a_black_holed_reset_or_ping_gives_up_after_its_limit() {
    use pool_core::ManageConnection;
    use pool_mysql::Error;

    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let (proxy, url) = behind_proxy("");
    let limit = Duration::from_millis(300);
    let (manager, _) = MysqlManager::from_url(&url).expect("url");
    let manager = manager.reset_timeout(Some(limit));

    // The manager alone: a used connection's reset, then a ping.
    let mut conn = manager.connect().expect("connect");
    conn.query_drop("SET @left_behind = 1").unwrap();
    manager
        .reset(&mut conn)
        .expect("a reset through a working proxy");
    // Session state, so that the reset has something to do (a loan of plain
    // statements is not reset at all).
    conn.query_drop("SET @left_behind = 2").unwrap();
    let mut pinged = manager.connect().expect("connect");
    proxy.set_mode(FaultMode::Blackhole);

    let start = Instant::now();
    let err = manager.reset(&mut conn).expect_err("no answer");
    let took = start.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        took >= limit.mul_f32(0.9) && took < limit * 4,
        "the reset gave up after {took:?}"
    );
    assert!(
        err.to_string()
            .contains("timed out after 300ms resetting the session"),
        "{err}"
    );
    assert!(manager.has_broken(&mut conn));

    let start = Instant::now();
    let err = manager.is_valid(&mut pinged, limit).expect_err("no answer");
    let took = start.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(took < limit * 4, "the ping gave up after {took:?}");
    assert!(manager.has_broken(&mut pinged));

    // In a pool, on the returning thread (as when borrowers wait): `drop`
    // comes back after the limit and the connection is closed.
    proxy.set_mode(FaultMode::PassThrough);
    let pool = pool_core::Pool::builder()
        .max_size(1)
        .reset_in_background(false)
        .connection_timeout(Duration::from_secs(5))
        .build(manager)
        .expect("pool");
    let mut lent = pool.get().unwrap();
    lent.query_drop("SET @left_behind = 3").unwrap();
    proxy.set_mode(FaultMode::Blackhole);
    let start = Instant::now();
    drop(lent);
    let took = start.elapsed();
    assert!(took < limit * 4, "drop() took {took:?}");
    assert_eq!(pool.metrics().closed.reset_failed, 1);
    assert_eq!(pool.state().total, 0);
}
