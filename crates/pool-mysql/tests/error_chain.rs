//! Errors as a user sees them through `anyhow`'s `{:#}` (the message, then
//! each source), for real failures: a refused connect to a closed port, a
//! rejected login against a throwaway server, a borrower's timeout with the
//! last connect error, a configuration error. Each cause appears exactly
//! once, the pool's message says what to do, and no password shows.

mod common;

use std::time::Duration;

use common::with_params;
use pool_testkit::{free_port, MariaDbServer};

fn chain(err: pool_core::Error) -> String {
    let shown = format!("{:#}", anyhow::Error::from(err));
    println!("{shown}");
    shown
}

/// The chain's parts, and each must be said once.
fn assert_each_once(shown: &str, parts: &[&str]) {
    for part in parts {
        assert_eq!(shown.matches(part).count(), 1, "{part:?} in {shown}");
    }
}

#[test]
fn a_refused_connect_shows_each_cause_once() {
    let port = free_port().unwrap();
    let url = format!(
        "mysql://app:hunter2@127.0.0.1:{port}/db?initialization_fail_timeout=0&pool_name=orders"
    );
    let (builder, manager) = pool_mysql::builder_from_url(&url).unwrap();
    let err = builder.build(manager).map(|_| ()).unwrap_err();
    assert!(matches!(err, pool_core::Error::Connect { .. }), "{err:?}");
    let shown = chain(err);
    assert!(
        shown.starts_with("pool \"orders\": cannot connect to the database ("),
        "{shown}"
    );
    assert_each_once(
        &shown,
        &[
            "check that the database is up",
            "the connection to the server failed; check that it is running and that the \
             host and port are right",
            "Connection refused",
        ],
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn a_rejected_login_and_a_timeout_show_the_server_message_once() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let pg = MariaDbServer::start().expect("start mariadb");
    let url = with_params(
        &pg.url_with_password("wrong-pass"),
        "initialization_fail_timeout=0",
    );
    let (builder, manager) = pool_mysql::builder_from_url(&url).unwrap();
    let err = builder.build(manager).map(|_| ()).unwrap_err();
    let shown = chain(err);
    assert_each_once(
        &shown,
        &[
            "cannot connect to the database",
            "the server rejected the login; check the user name, password and database name",
            "ERROR 1045 (28000): Access denied for user",
        ],
    );
    assert!(!shown.contains("wrong-pass"), "{shown}");

    // A borrower that times out while logins fail: the timeout, then the
    // last connect error, each once.
    let (builder, manager) = pool_mysql::builder_from_url(&url).unwrap();
    let pool = builder
        .fail_fast(false)
        .connection_timeout(Duration::from_millis(500))
        .build_unchecked(manager)
        .unwrap();
    let err = pool.get().map(|_| ()).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let shown = chain(err);
    assert_each_once(
        &shown,
        &[
            "timed out after",
            "while new connections were failing; fix the cause of the last connect error",
            "the server rejected the login; check",
            "Access denied for user",
        ],
    );
}

#[test]
fn a_config_error_names_the_setting_once_and_no_password() {
    let err = pool_mysql::builder_from_url("mysql://app:hunter2@db/app?connection_limit=0")
        .map(|_| ())
        .unwrap_err();
    assert!(std::error::Error::source(&err).is_none());
    let shown = chain(err);
    assert_each_once(&shown, &["connection_limit"]);
    assert!(!shown.contains("hunter2"), "{shown}");
}
