//! The `mysql` crate's own statement cache under the pool
//! (`MysqlManager::statement_cache_size`): prepares counted on the server
//! (`Com_stmt_prepare`, global: nothing else on this throwaway server
//! prepares).

mod common;

use std::time::Duration;

use common::root;
use mysql::prelude::Queryable;
use pool_core::Pool;
use pool_mysql::{Isolation, MysqlManager};
use pool_testkit::MariaDbServer;

const SQL: &str = "SELECT ? + 1";

fn prepares(admin: &mut mysql::Conn) -> u64 {
    let row: (String, u64) = admin
        .query_first("SHOW GLOBAL STATUS LIKE 'Com_stmt_prepare'")
        .unwrap()
        .unwrap();
    row.1
}

fn pool_of_one(db: &MariaDbServer, isolation: Isolation, cache: usize) -> Pool<MysqlManager> {
    let (manager, _) = MysqlManager::from_url(&db.url()).unwrap();
    Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_secs(5))
        .build(manager.isolation(isolation).statement_cache_size(cache))
        .unwrap()
}

/// Four loans, each running `SQL` twice; returns the server's prepares.
fn four_loans(pool: &Pool<MysqlManager>, admin: &mut mysql::Conn) -> u64 {
    loans(pool, admin, false)
}

/// Four loans, each running `SQL` twice (and leaving a user variable behind
/// when `leave_state`); returns the server's prepares.
fn loans(pool: &Pool<MysqlManager>, admin: &mut mysql::Conn, leave_state: bool) -> u64 {
    let before = prepares(admin);
    for loan in 0..4_i64 {
        let mut conn = pool.get().unwrap();
        for _ in 0..2 {
            let n: i64 = conn.exec_first(SQL, (loan,)).unwrap().unwrap();
            assert_eq!(n, loan + 1);
        }
        if leave_state {
            conn.query_drop(format!("SET @loan = {loan}")).unwrap();
        }
    }
    prepares(admin) - before
}

#[test]
fn with_rollback_isolation_a_statement_is_prepared_once_across_loans() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = MariaDbServer::start().unwrap();
    let mut admin = root(&db);
    let pool = pool_of_one(&db, Isolation::Rollback, 32);
    assert_eq!(four_loans(&pool, &mut admin), 1);
    // Off: every exec prepares (and closes) its statement.
    let off = pool_of_one(&db, Isolation::Rollback, 0);
    assert_eq!(four_loans(&off, &mut admin), 8);
}

#[test]
fn with_full_isolation_a_reset_loan_prepares_again_and_never_sees_a_stale_id() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = MariaDbServer::start().unwrap();
    let mut admin = root(&db);
    let pool = pool_of_one(&db, Isolation::Full, 32);
    // Loans that leave nothing behind are not reset: one prepare in all.
    assert_eq!(four_loans(&pool, &mut admin), 1);
    // COM_RESET_CONNECTION closes the session's statements; the driver
    // empties its cache with it, so after each full reset the next loan
    // prepares again (once) and no exec fails with "Unknown prepared
    // statement handler". (The first of these loans still finds the
    // statement of the loans above.)
    assert_eq!(loans(&pool, &mut admin, true), 3);
}
