//! The skip-or-fail helper used when server binaries are missing.

use pool_testkit::{is_ci, should_run, MariaDbServer, PgBouncer, PgServer};

#[test]
fn should_run_skips_or_fails_depending_on_ci() {
    assert!(should_run(Ok(())));
    let missing = || should_run(Err("install the Debian package `x`".to_string()));
    let r = std::panic::catch_unwind(missing);
    if is_ci() {
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains("`x`") && msg.contains("CI"), "{msg}");
    } else {
        assert_eq!(r.ok(), Some(false));
    }
}

#[test]
fn probes_name_debian_packages() {
    for (probe, package) in [
        (PgServer::binaries_available(), "`postgresql`"),
        (MariaDbServer::binaries_available(), "`mariadb-server`"),
        (PgBouncer::binaries_available(), "`pgbouncer`"),
    ] {
        if let Err(msg) = probe {
            assert!(msg.contains(package), "{msg}");
        }
    }
}
