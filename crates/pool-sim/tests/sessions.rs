//! Transactions, session variables and resetting them.

use std::time::Duration;

use pool_core::ManageConnection;
use pool_sim::{SimDb, SimError};

fn db() -> SimDb {
    SimDb::builder().connect_latency(Duration::ZERO).build()
}

#[test]
fn transactions_begin_commit_rollback() {
    let db = db();
    let mut conn = db.connect().unwrap();
    assert!(!conn.in_transaction());
    conn.begin().unwrap();
    assert!(conn.in_transaction());
    assert_eq!(
        conn.begin().unwrap_err(),
        SimError::InvalidState {
            message: "there is already a transaction in progress"
        }
    );
    conn.commit().unwrap();
    assert!(!conn.in_transaction());
    conn.begin().unwrap();
    conn.rollback().unwrap();
    assert!(!conn.in_transaction());
    let err = conn.rollback().unwrap_err();
    assert!(!err.is_fatal());
    assert!(!conn.is_broken());
}

#[test]
fn session_variables_survive_until_reset() {
    let db = db();
    let mut conn = db.connect().unwrap();
    conn.set_var("owner", "thread-1").unwrap();
    conn.begin().unwrap();
    assert!(!conn.is_session_clean());
    assert_eq!(conn.var("owner"), Some("thread-1"));
    assert_eq!(conn.var("missing"), None);

    conn.reset_session().unwrap();
    assert!(conn.is_session_clean());
    assert_eq!(conn.var("owner"), None);
    assert!(!conn.in_transaction());
}

#[test]
fn reset_is_free_on_a_clean_session_and_one_round_trip_otherwise() {
    let db = db();
    let manager = db.manager();
    let mut conn = manager.connect().unwrap();
    manager.reset(&mut conn).unwrap();
    assert_eq!(db.stats().queries, 0);
    conn.set_var("x", "1").unwrap();
    manager.reset(&mut conn).unwrap();
    let stats = db.stats();
    assert_eq!(stats.resets, 2);
    assert_eq!(stats.queries, 2, "one SET and one reset round trip");
}

#[test]
fn reset_fails_on_broken_connections_and_on_injection() {
    let db = db();
    let manager = db.manager();
    let mut conn = manager.connect().unwrap();
    db.fail_next_resets(1);
    assert_eq!(manager.reset(&mut conn), Err(SimError::InjectedFailure));
    manager.reset(&mut conn).unwrap();
    conn.break_connection();
    assert!(matches!(
        manager.reset(&mut conn),
        Err(SimError::Broken { .. })
    ));
    assert_eq!(db.stats().resets, 3);
}

#[test]
fn sessions_are_per_connection() {
    let db = db();
    let mut a = db.connect().unwrap();
    let b = db.connect().unwrap();
    a.set_var("k", "v").unwrap();
    assert_eq!(b.var("k"), None);
    assert!(b.is_session_clean());
}
