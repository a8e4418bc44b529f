//! `Pool::run_idempotent` against a real server: a pooled connection that
//! was `KILL`ed on the server is lent again within the alive-bypass
//! window; a plain borrow's query fails on it, the helper retries on a
//! fresh connection and succeeds.

mod common;

use std::time::Duration;

use common::{connections_of, own_user, root, unique, wait_until, with_params};
use mysql::prelude::Queryable;
use mysql::Conn;
use pool_core::{Pool, RunError};
use pool_mysql::{builder_from_url, MysqlManager};
use pool_testkit::MariaDbServer;

/// A one-connection pool whose borrows within 10 s of a return skip
/// validation (the default window is 500 ms: a wide one keeps the test
/// from depending on how fast the server ends the session).
fn pool(url: &str) -> Pool<MysqlManager> {
    let (builder, manager) =
        builder_from_url(&with_params(url, "connection_limit=1&pool_timeout=5")).expect("url");
    builder
        .alive_bypass_window(Duration::from_secs(10))
        .build(manager)
        .expect("pool")
}

/// Uses the pool's connection (so the next borrow skips validation), then
/// kills it on the server and waits until it is gone; returns its id.
fn kill_the_idle_connection(pool: &Pool<MysqlManager>, admin: &mut Conn, user: &str) -> u32 {
    let id: u32 = pool
        .get()
        .unwrap()
        .query_first("SELECT CONNECTION_ID()")
        .unwrap()
        .unwrap();
    // The session reset runs off the borrower's thread: let it finish, so
    // that the connection is idle (and its reset does not meet the kill).
    assert!(wait_until(Duration::from_secs(5), || pool.state().idle == 1));
    admin.query_drop(format!("KILL {id}")).unwrap();
    assert!(wait_until(Duration::from_secs(5), || connections_of(
        admin, user
    ) == 0));
    id
}

#[test]
fn a_killed_connection_fails_a_plain_query_and_the_helper_retries_it() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let mut admin = root(db);
    let user = unique("retry");
    let pool = pool(&own_user(db, &mut admin, &user));

    // Without the helper: the dead connection is lent, and the query fails.
    let dead = kill_the_idle_connection(&pool, &mut admin, &user);
    let mut conn = pool.get().unwrap();
    let err = conn.query_drop("SELECT 1").unwrap_err();
    assert!(pool_mysql::is_connection_error(&err), "{err}");
    drop(conn);

    // With it: the same situation, and the work succeeds on a new session.
    let dead_again = kill_the_idle_connection(&pool, &mut admin, &user);
    assert_ne!(dead, dead_again);
    let mut ids = Vec::new();
    let id = pool
        .run_idempotent(|conn| {
            let id: u32 = conn.query_first("SELECT CONNECTION_ID()")?.unwrap();
            ids.push(id);
            Ok::<_, mysql::Error>(id)
        })
        .unwrap();
    assert_ne!(id, dead_again);
    assert_eq!(ids, [id], "the first attempt cannot have succeeded");
    assert!(pool.metrics().closed.broken >= 2);
    drop(pool);
    admin.query_drop(format!("DROP USER '{user}'@'%'")).unwrap();
}

#[test]
fn an_sql_error_is_not_retried() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let pool = pool(&db.url());
    let mut calls = 0;
    let err = pool
        .run_idempotent(|conn| {
            calls += 1;
            conn.query_drop("SELECT * FROM no_such_table")
        })
        .unwrap_err();
    assert_eq!(calls, 1);
    assert!(matches!(err, RunError::Failed(_)), "{err}");
    assert_eq!(pool.metrics().closed.broken, 0);
}
