//! TLS (feature `tls`, native-tls) against a harness server with TLS on
//! (certificates from `pool_testkit::TestCertificates`).
#![cfg(feature = "tls")]

mod common;

use common::with_params;
use pool_postgres::{builder_from_url_with_tls, tls};
use pool_testkit::{PgServer, TestCertificates};

fn available() -> Result<(), String> {
    PgServer::binaries_available()?;
    TestCertificates::available()
}

#[test]
fn tls_connections_are_verified_and_encrypted() {
    pool_testkit::require_or_skip!(available());
    let pg = PgServer::start().expect("start postgres");
    let certs = TestCertificates::generate().expect("certificates");
    pg.enable_tls(&certs).expect("turn TLS on");

    // Verified against the test CA: encrypted.
    let url = with_params(&pg.url(), "sslmode=require&connection_limit=2");
    let (builder, manager) =
        builder_from_url_with_tls(&url, tls::connector(Some(&certs.ca_pem())).unwrap()).unwrap();
    let pool = builder.build(manager).expect("TLS pool");
    let mut conn = pool.get().unwrap();
    let ssl: bool = conn
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ssl, "the connection is not encrypted");
    drop(conn);

    // Without the CA the certificate is rejected, and the error chain says
    // so, with what to check.
    let url = with_params(&pg.url(), "sslmode=require&initialization_fail_timeout=0");
    let (builder, manager) =
        builder_from_url_with_tls(&url, tls::connector(None).unwrap()).unwrap();
    let err = builder.build(manager).map(|_| ()).unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(err));
    println!("{chain}");
    assert!(chain.contains("certificate verify failed"), "{chain}");
    assert!(chain.contains("the TLS handshake failed; check"), "{chain}");

    // sslmode=disable with a TLS connector: plain.
    let url = with_params(&pg.url(), "sslmode=disable");
    let (builder, manager) =
        builder_from_url_with_tls(&url, tls::connector(Some(&certs.ca_pem())).unwrap()).unwrap();
    let pool = builder.build(manager).unwrap();
    let ssl: bool = pool
        .get()
        .unwrap()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!ssl);
}
