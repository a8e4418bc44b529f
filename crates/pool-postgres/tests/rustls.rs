//! TLS through rustls (feature `rustls`) against a harness server with TLS
//! on (certificates from `pool_testkit::TestCertificates`).
#![cfg(feature = "rustls")]

mod common;

use common::with_params;
use pool_postgres::{builder_from_url_with_tls, rustls};
use pool_testkit::{PgServer, TestCertificates};

fn available() -> Result<(), String> {
    PgServer::binaries_available()?;
    TestCertificates::available()
}

fn encrypted(conn: &mut postgres::Client) -> bool {
    conn.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .unwrap()
    .get(0)
}

#[test]
fn rustls_connections_are_verified_and_encrypted() {
    pool_testkit::require_or_skip!(available());
    let pg = PgServer::start().expect("start postgres");
    let certs = TestCertificates::generate().expect("certificates");
    pg.enable_tls(&certs).expect("turn TLS on");

    // sslmode=require, verified against the test CA: the server reports the
    // session encrypted.
    let url = with_params(&pg.url(), "sslmode=require&connection_limit=2");
    let tls = rustls::connector(Some(&certs.ca_pem())).unwrap();
    let (builder, manager) = builder_from_url_with_tls(&url, tls).unwrap();
    let pool = builder.build(manager).expect("rustls pool");
    let mut conn = pool.get().unwrap();
    assert!(encrypted(&mut conn), "the connection is not encrypted");
    drop(conn);

    // Trusting an unrelated CA: the certificate is rejected, and the error
    // chain says what failed (the TLS handshake), what to check, and
    // rustls' reason, each once.
    let url = with_params(&pg.url(), "sslmode=require&initialization_fail_timeout=0");
    let tls = rustls::connector(Some(&certs.other_ca_pem())).unwrap();
    let (builder, manager) = builder_from_url_with_tls(&url, tls).unwrap();
    let err = builder.build(manager).map(|_| ()).unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(err));
    println!("{chain}");
    assert!(chain.contains("cannot connect to the database"), "{chain}");
    assert_eq!(
        chain.matches("the TLS handshake failed; check").count(),
        1,
        "{chain}"
    );
    assert_eq!(chain.matches("UnknownIssuer").count(), 1, "{chain}");

    // sslmode=disable with a rustls connector: plain.
    let url = with_params(&pg.url(), "sslmode=disable");
    let tls = rustls::connector(Some(&certs.ca_pem())).unwrap();
    let (builder, manager) = builder_from_url_with_tls(&url, tls).unwrap();
    let pool = builder.build(manager).unwrap();
    assert!(!encrypted(&mut pool.get().unwrap()));
}
