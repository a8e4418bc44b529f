//! The capacity check compares max_size with the server's max_connections.

mod common;

use common::{capture_logs, logged, unique, with_params};
use pool_mysql::{builder_from_url, check_capacity, check_pool_capacity};
use pool_testkit::{MariaDbServer, MARIADB_PASSWORD};

#[test]
fn warns_when_one_pool_takes_too_large_a_share() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    capture_logs();
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let name = unique("big_pool");
    // The harness server has max_connections = 200.
    let (builder, manager) = builder_from_url(&with_params(
        &db.url(),
        &format!("pool_name={name}&connection_limit=120&min_idle=1"),
    ))
    .unwrap();
    let pool = builder.build(manager).expect("pool");
    let capacity = check_pool_capacity(&pool).expect("the check runs");
    assert_eq!(capacity.max_connections, 200);
    assert_eq!(capacity.available, 200);
    assert_eq!(capacity.max_size, 120);
    assert!(capacity.exceeds_share());
    assert_eq!(capacity.instances_that_fit(), 1);

    let warnings: Vec<_> = logged()
        .into_iter()
        .filter(|l| l.starts_with("WARN") && l.contains(&name))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(w.contains("max_size 120"), "{w}");
    assert!(w.contains("instances × max_size"), "{w}");
    assert!(!w.contains(MARIADB_PASSWORD), "{w}");

    let mut conn = pool.get().unwrap();
    assert!(!check_capacity(&mut conn, "small", 10, 0.5)
        .unwrap()
        .exceeds_share());
    assert!(!check_capacity(&mut conn, "generous", 120, 0.9)
        .unwrap()
        .exceeds_share());
    assert!(!logged()
        .iter()
        .any(|l| l.contains("\"small\"") && l.starts_with("WARN")));
}
