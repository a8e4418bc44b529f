//! TLS (feature `tls`, native-tls, or feature `rustls`) against a harness
//! MariaDB serving TLS (certificates from `pool_testkit::TestCertificates`).
//! The same test runs with either stack; the driver has one at a time.
#![cfg(any(feature = "tls", feature = "rustls"))]

mod common;

use common::with_params;
use mysql::prelude::Queryable;
use pool_mysql::{builder_from_url, MysqlManager};
use pool_testkit::{MariaDbServer, TestCertificates};

fn available() -> Result<(), String> {
    MariaDbServer::binaries_available()?;
    TestCertificates::available()
}

fn cipher(conn: &mut impl Queryable) -> String {
    let row: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .unwrap();
    row.map(|(_, v)| v).unwrap_or_default()
}

#[test]
fn tls_connections_are_verified_and_encrypted() {
    pool_testkit::require_or_skip!(available());
    let certs = TestCertificates::generate().expect("certificates");
    let db = MariaDbServer::builder()
        .tls(&certs)
        .start()
        .expect("start mariadb");

    // Any TLS parameter makes TLS required; verified against the test CA:
    // the server reports the session encrypted.
    let url = with_params(
        &db.url(),
        &format!(
            "root_cert_path={}&connection_limit=2",
            certs.ca_path().display()
        ),
    );
    let (builder, manager) = builder_from_url(&url).unwrap();
    let pool = builder.build(manager).expect("TLS pool");
    assert!(
        !cipher(&mut *pool.get().unwrap()).is_empty(),
        "the connection is not encrypted"
    );

    // The same through `tls::ssl_opts` (over TCP: the driver's default
    // `prefer_socket` would move a loopback connection to the Unix socket,
    // where it does not use TLS).
    let opts = mysql::OptsBuilder::from_opts(mysql::Opts::from_url(&db.url()).unwrap())
        .prefer_socket(false)
        .ssl_opts(pool_mysql::tls::ssl_opts(Some(certs.ca_path())));
    let pool = pool_core::Pool::builder()
        .max_size(1)
        .build(MysqlManager::new(opts))
        .expect("TLS pool from ssl_opts");
    assert!(!cipher(&mut *pool.get().unwrap()).is_empty());

    // Trusting an unrelated CA: the certificate is rejected, and the error
    // chain says the TLS handshake failed and what to check, once each.
    let url = with_params(
        &db.url(),
        &format!(
            "root_cert_path={}&initialization_fail_timeout=0",
            certs.other_ca_path().display()
        ),
    );
    let (builder, manager) = builder_from_url(&url).unwrap();
    let err = builder.build(manager).map(|_| ()).unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(err));
    println!("{chain}");
    assert!(chain.contains("cannot connect to the database"), "{chain}");
    assert_eq!(
        chain.matches("the TLS handshake failed; check").count(),
        1,
        "{chain}"
    );
    let reason = if cfg!(feature = "rustls") {
        "UnknownIssuer"
    } else {
        "certificate verify failed"
    };
    assert_eq!(chain.matches(reason).count(), 1, "{chain}");
}
