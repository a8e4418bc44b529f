//! PgBouncer in front of a harness PostgreSQL.

use std::process::Command;

use pool_testkit::{PgBouncer, PgBouncerAuth, PgServer, PoolMode};

fn psql_url(pg: &PgServer, url: &str, sql: &str) -> std::process::Output {
    Command::new(pg.psql_path())
        .args(["-X", "-A", "-t", "-q", "-d", url, "-c", sql])
        .env_remove("PGPASSWORD")
        .output()
        .expect("run psql")
}

#[test]
fn transaction_pooling_auth_and_restarts() {
    pool_testkit::require_or_skip!(PgBouncer::binaries_available());
    let mut pg = PgServer::start().expect("start postgres");
    let mut bouncer = PgBouncer::start(&pg, PoolMode::Transaction).expect("start pgbouncer");
    assert_ne!(bouncer.port(), pg.port());
    assert_eq!(bouncer.pool_mode(), PoolMode::Transaction);

    // Queries go through to the server.
    assert_eq!(
        bouncer
            .run_sql_in("pool_test", "SELECT current_user")
            .unwrap(),
        "pool_test"
    );
    let out = psql_url(&pg, &bouncer.url(), "SELECT 40 + 2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    // Wrong password is rejected by pgbouncer itself.
    let bad = psql_url(&pg, &bouncer.url_with_password("nope"), "SELECT 1");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("password authentication failed")
            || err.contains("SASL authentication failed"),
        "{err}"
    );

    // Admin console.
    let pools = bouncer.run_admin("SHOW POOLS").unwrap();
    assert!(pools.contains("pool_test"), "{pools}");
    let config = bouncer.run_admin("SHOW CONFIG").unwrap();
    assert!(config.contains("pool_mode|transaction"), "{config}");

    // The server crashes and comes back: pgbouncer reconnects.
    pg.kill().unwrap();
    pg.start_again().unwrap();
    let mut ok = false;
    for _ in 0..50 {
        if bouncer.run_sql_in("pool_test", "SELECT 1").is_ok() {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ok, "pgbouncer did not reconnect:\n{}", bouncer.log_tail());

    // pgbouncer itself restarts on the same port.
    let port = bouncer.port();
    bouncer.kill().unwrap();
    assert!(bouncer.run_sql_in("pool_test", "SELECT 1").is_err());
    bouncer.start_again().unwrap();
    bouncer.restart().unwrap();
    assert_eq!(bouncer.port(), port);
    assert_eq!(bouncer.run_sql_in("pool_test", "SELECT 1").unwrap(), "1");

    let pid = bouncer.pid().unwrap();
    let root = bouncer.root_dir().to_path_buf();
    drop(bouncer);
    assert!(!std::path::Path::new(&format!("/proc/{pid}/cwd")).exists());
    assert!(pool_testkit::processes_in_dir(&root).is_empty());
    assert!(!root.exists());
}

#[test]
fn session_mode_with_md5_auth() {
    pool_testkit::require_or_skip!(PgBouncer::binaries_available());
    let pg = PgServer::start().expect("start postgres");
    let bouncer = PgBouncer::builder()
        .pool_mode(PoolMode::Session)
        .auth(PgBouncerAuth::Md5)
        .default_pool_size(3)
        .start(&pg)
        .expect("start pgbouncer");
    let config = bouncer.run_admin("SHOW CONFIG").unwrap();
    assert!(config.contains("pool_mode|session"), "{config}");
    assert!(config.contains("auth_type|md5"), "{config}");
    assert!(config.contains("default_pool_size|3"), "{config}");
    let out = psql_url(&pg, &bouncer.url(), "SELECT current_database()");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pool_test");
}
