//! `Pool::run_idempotent` against a real server: a pooled connection whose
//! backend was terminated (`pg_terminate_backend`) is lent again within the
//! alive-bypass window; a plain borrow's query fails on it, the helper
//! retries on a fresh connection and succeeds.

mod common;

use std::time::Duration;

use common::{connections_named, superuser, unique, wait_until, with_params};
use pool_core::{Pool, RunError};
use pool_postgres::{builder_from_url, NoTls, PostgresManager};
use pool_testkit::PgServer;
use postgres::Client;

/// A one-connection pool whose borrows within 10 s of a return skip
/// validation (the default window is 500 ms: a wide one keeps the test
/// from depending on how fast the backend dies).
fn pool(pg: &PgServer, app: &str) -> Pool<PostgresManager<NoTls>> {
    let (builder, manager) = builder_from_url(&with_params(
        &pg.url(),
        &format!("application_name={app}&connection_limit=1&pool_timeout=5"),
    ))
    .expect("url");
    builder
        .alive_bypass_window(Duration::from_secs(10))
        .build(manager)
        .expect("pool")
}

/// Uses the pool's connection (so the next borrow skips validation), then
/// terminates its backend and waits until it is gone; returns its pid.
fn kill_the_idle_connection(
    pool: &Pool<PostgresManager<NoTls>>,
    admin: &mut Client,
    app: &str,
) -> i32 {
    let pid: i32 = pool
        .get()
        .unwrap()
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    // The session reset runs off the borrower's thread: let it finish, so
    // that the connection is idle (and its reset does not meet the kill).
    assert!(wait_until(Duration::from_secs(5), || pool.state().idle == 1));
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || connections_named(
        admin, app
    ) == 0));
    pid
}

#[test]
fn a_terminated_backend_fails_a_plain_query_and_the_helper_retries_it() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let app = unique("retry");
    let pool = pool(pg, &app);
    let mut admin = superuser(pg);

    // Without the helper: the dead connection is lent, and the query fails.
    let dead = kill_the_idle_connection(&pool, &mut admin, &app);
    let mut conn = pool.get().unwrap();
    let err = conn.query_one("SELECT 1", &[]).unwrap_err();
    assert!(pool_postgres::is_connection_error(&err), "{err}");
    drop(conn);

    // With it: the same situation, and the work succeeds on a new backend.
    let dead_again = kill_the_idle_connection(&pool, &mut admin, &app);
    assert_ne!(dead, dead_again);
    let mut pids = Vec::new();
    let pid = pool
        .run_idempotent(|conn| {
            let row = conn.query_one("SELECT pg_backend_pid()", &[])?;
            pids.push(row.get::<_, i32>(0));
            Ok::<_, postgres::Error>(row.get::<_, i32>(0))
        })
        .unwrap();
    assert_ne!(pid, dead_again);
    assert_eq!(pids, [pid], "the first attempt cannot have succeeded");
    assert!(pool.metrics().closed.broken >= 2);
}

#[test]
fn an_sql_error_is_not_retried() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let app = unique("noretry");
    let pool = pool(pg, &app);
    let mut calls = 0;
    let err = pool
        .run_idempotent(|conn| {
            calls += 1;
            conn.query_one("SELECT * FROM no_such_table", &[])
        })
        .unwrap_err();
    assert_eq!(calls, 1);
    assert!(matches!(err, RunError::Failed(_)), "{err}");
    assert_eq!(pool.metrics().closed.broken, 0);
}
