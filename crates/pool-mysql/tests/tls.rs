//! TLS (feature `tls`) against a harness MariaDB with a certificate made by
//! the test (with the `openssl` command-line tool).
#![cfg(feature = "tls")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::with_params;
use mysql::prelude::Queryable;
use pool_mysql::builder_from_url;
use pool_testkit::MariaDbServer;

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| {
            format!("the `openssl` command-line tool is needed ({e}); install the Debian package `openssl`")
        })?;
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
/// in `dir`, readable by the server's user.
fn make_certificates(dir: &Path) -> Result<(), String> {
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
            "/CN=pool-mysql test CA",
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
    for f in ["ca.crt", "server.crt", "server.key"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn available() -> Result<(), String> {
    MariaDbServer::binaries_available()?;
    openssl(Path::new("/"), &["version"])
}

#[test]
fn tls_connections_are_verified_and_encrypted() {
    pool_testkit::require_or_skip!(available());
    let certs = std::env::temp_dir().join(format!("pool-mysql-tls-{}", std::process::id()));
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o755)).unwrap();
    make_certificates(&certs).expect("certificates");
    let db = MariaDbServer::builder()
        .server_arg(format!("--ssl-cert={}", certs.join("server.crt").display()))
        .server_arg(format!("--ssl-key={}", certs.join("server.key").display()))
        .start()
        .expect("start mariadb");
    let ca = certs.join("ca.crt");

    // Any TLS parameter makes TLS required; verified against the test CA.
    let url = with_params(
        &db.url(),
        &format!("root_cert_path={}&connection_limit=2", ca.display()),
    );
    let (builder, manager) = builder_from_url(&url).unwrap();
    let pool = builder.build(manager).expect("TLS pool");
    let mut conn = pool.get().unwrap();
    let cipher: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .unwrap();
    let cipher = cipher.map(|(_, v)| v).unwrap_or_default();
    assert!(!cipher.is_empty(), "the connection is not encrypted");
    drop(conn);

    // Without the CA (system roots only) the certificate is rejected.
    let url = with_params(
        &db.url(),
        "danger_accept_invalid_certs=false&initialization_fail_timeout=0",
    );
    let (builder, manager) = builder_from_url(&url).unwrap();
    let err = builder.build(manager).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("certificate verify failed"), "{err}");
    let _ = std::fs::remove_dir_all(&certs);
}
