//! `SimManager` as a `ManageConnection`.

use std::time::Duration;

use pool_core::ManageConnection;
use pool_sim::{SimDb, SimManager};

#[test]
fn manager_connects_validates_and_resets() {
    let db = SimDb::builder().connect_latency(Duration::ZERO).build();
    let manager = SimManager::new(db.clone());
    let mut conn = manager.connect().unwrap();
    manager.is_valid(&mut conn, Duration::from_secs(1)).unwrap();
    assert!(!manager.has_broken(&mut conn));
    conn.begin().unwrap();
    manager.reset(&mut conn).unwrap();
    assert!(!conn.in_transaction());
    let stats = manager.db().stats();
    assert_eq!((stats.opened, stats.validations, stats.resets), (1, 1, 1));
}

#[test]
fn manager_reports_connect_errors() {
    let db = SimDb::new();
    db.set_refuse_connections(true);
    let err = db.manager().connect().unwrap_err();
    assert!(err.to_string().contains("connection refused"));
}

#[test]
fn has_broken_is_a_flag_check_without_io() {
    let db = SimDb::builder().connect_latency(Duration::ZERO).build();
    let manager = db.manager();
    let mut conn = manager.connect().unwrap();
    db.set_black_hole(true);
    let start = std::time::Instant::now();
    for _ in 0..1000 {
        assert!(!manager.has_broken(&mut conn));
    }
    assert!(start.elapsed() < Duration::from_millis(100));
    assert_eq!(db.stats().queries, 0);
}

#[test]
fn manager_is_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>(_: &T) {}
    let manager = SimDb::new().manager();
    check(&manager);
    check(manager.db());
}
