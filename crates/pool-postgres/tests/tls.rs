//! TLS (feature `tls`) against a harness server with a certificate made by
//! the test (with the `openssl` command-line tool).
#![cfg(feature = "tls")]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::with_params;
use pool_postgres::{builder_from_url_with_tls, tls};
use pool_testkit::PgServer;

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("the `openssl` command-line tool is needed ({e}); install the Debian package `openssl`"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Makes a CA and a server certificate for 127.0.0.1/localhost signed by it
/// in `dir`; returns the CA certificate (PEM).
fn make_certificates(dir: &Path) -> Result<Vec<u8>, String> {
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=pool-postgres test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    )?;
    std::fs::read(dir.join("ca.crt")).map_err(|e| e.to_string())
}

fn available() -> Result<(), String> {
    PgServer::binaries_available()?;
    openssl(Path::new("/"), &["version"])
}

#[test]
fn tls_connections_are_verified_and_encrypted() {
    pool_testkit::require_or_skip!(available());
    let pg = PgServer::start().expect("start postgres");
    let certs = std::env::temp_dir().join(format!("pool-postgres-tls-{}", std::process::id()));
    std::fs::create_dir_all(&certs).unwrap();
    let ca = make_certificates(&certs).expect("certificates");

    // Install the server certificate where PostgreSQL looks by default
    // (server.crt / server.key in the data directory), owned by the server's
    // user, and turn TLS on.
    let data = pg.data_dir();
    let owner = std::fs::metadata(data).unwrap();
    for name in ["server.crt", "server.key"] {
        let target = data.join(name);
        std::fs::copy(certs.join(name), &target).unwrap();
        std::os::unix::fs::chown(&target, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    pg.run_sql("ALTER SYSTEM SET ssl = on").unwrap();
    pg.run_sql("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));

    // Verified against the test CA: encrypted.
    let url = with_params(&pg.url(), "sslmode=require&connection_limit=2");
    let (builder, manager) =
        builder_from_url_with_tls(&url, tls::connector(Some(&ca)).unwrap()).unwrap();
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

    // Without the CA the certificate is rejected, and the error says so.
    let url = with_params(&pg.url(), "sslmode=require&initialization_fail_timeout=0");
    let (builder, manager) =
        builder_from_url_with_tls(&url, tls::connector(None).unwrap()).unwrap();
    let err = builder.build(manager).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("certificate verify failed"), "{err}");

    // sslmode=disable with a TLS connector: plain.
    let url = with_params(&pg.url(), "sslmode=disable");
    let (builder, manager) =
        builder_from_url_with_tls(&url, tls::connector(Some(&ca)).unwrap()).unwrap();
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
    let _ = std::fs::remove_dir_all(&certs);
}
