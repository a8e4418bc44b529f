//! The capacity check compares max_size with the server's max_connections.

mod common;

use common::{capture_logs, logged, unique, with_params};
use pool_postgres::{builder_from_url, check_capacity, check_pool_capacity};
use pool_testkit::{PgServer, PG_PASSWORD};

#[test]
fn warns_when_one_pool_takes_too_large_a_share() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    capture_logs();
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let name = unique("big_pool");
    // The harness server has max_connections = 100, 3 reserved for superusers.
    let (builder, manager) = builder_from_url(&with_params(
        &pg.url(),
        &format!("pool_name={name}&connection_limit=60&min_idle=1"),
    ))
    .unwrap();
    let pool = builder.build(manager).expect("pool");
    let capacity = check_pool_capacity(&pool).expect("the check runs");
    assert_eq!(capacity.max_connections, 100);
    assert_eq!(capacity.reserved, 3);
    assert_eq!(capacity.available, 97);
    assert_eq!(capacity.max_size, 60);
    assert!(capacity.exceeds_share());
    assert_eq!(capacity.instances_that_fit(), 1);

    let warnings: Vec<_> = logged()
        .into_iter()
        .filter(|l| l.starts_with("WARN") && l.contains(&name))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(w.contains("max_size 60"), "{w}");
    assert!(w.contains("instances × max_size"), "{w}");
    assert!(!w.contains(PG_PASSWORD), "{w}");

    // A pool within its share is not warned about; a larger share is allowed.
    let mut conn = pool.get().unwrap();
    let small = check_capacity(&mut conn, "small", 10, 0.5).unwrap();
    assert!(!small.exceeds_share());
    let generous = check_capacity(&mut conn, "generous", 60, 0.9).unwrap();
    assert!(!generous.exceeds_share());
    assert!(!logged()
        .iter()
        .any(|l| l.contains("\"small\"") && l.starts_with("WARN")));
}
