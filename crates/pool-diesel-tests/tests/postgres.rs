//! pool-core's `diesel` feature on PostgreSQL (a throwaway server from
//! pool-testkit): see `common/suite.rs`.

mod common;

diesel_suite!(
    diesel::PgConnection,
    common::postgres,
    &["SELECT pg_backend_pid()::bigint AS id"]
);

/// diesel's connect cannot be interrupted: `with_connect_limit` makes the
/// pool stop waiting for one that hangs (a server that accepts the TCP
/// connection and never answers).
#[test]
fn a_connect_limit_bounds_a_hung_connect() {
    if common::postgres().is_none() {
        return;
    }
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let proxy = pool_testkit::FaultProxy::start(pg.addr()).expect("proxy");
    proxy.set_mode(pool_testkit::FaultMode::Blackhole);
    let manager = ConnectionManager::<diesel::PgConnection>::new(pg.url_via(proxy.addr()))
        .with_connect_limit(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = Pool::builder()
        .max_size(1)
        .initialization_fail_timeout(Duration::from_millis(300))
        .build(manager)
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    // The connect's own error is the pool error's cause (`source()`).
    let chain = pool_core::ErrorChain(&err).to_string();
    assert!(chain.contains("did not finish within 200ms"), "{chain}");
}

/// The libpq limits docs/diesel.md recommends in the URL are accepted.
#[test]
fn the_recommended_libpq_limits_are_accepted_in_the_url() {
    let Some(db) = common::postgres() else { return };
    let url = format!(
        "{}?connect_timeout=5&keepalives_idle=30&tcp_user_timeout=30000",
        db.url
    );
    let pool = Pool::builder()
        .max_size(1)
        .build(ConnectionManager::<diesel::PgConnection>::new(url))
        .unwrap();
    diesel::sql_query("SELECT 1")
        .execute(&mut pool.get().unwrap())
        .unwrap();
}
