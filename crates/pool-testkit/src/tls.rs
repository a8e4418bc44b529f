//! Test certificates for TLS-enabled throwaway servers: a CA, a server
//! certificate for `localhost` and `127.0.0.1` signed by it, and an
//! unrelated CA (to show a wrong CA is rejected), made with the `openssl`
//! command-line tool in a temporary directory. [`PgServer::enable_tls`] and
//! [`MariaDbServerBuilder::tls`] turn TLS on with them.
//!
//! ```no_run
//! use pool_testkit::{PgServer, TestCertificates};
//!
//! pool_testkit::require_or_skip!(TestCertificates::available());
//! let certs = TestCertificates::generate().unwrap();
//! let pg = PgServer::start().unwrap();
//! pg.enable_tls(&certs).unwrap();
//! // Connect with `sslmode=require`, trusting `certs.ca_pem()`.
//! ```
//!
//! [`PgServer::enable_tls`]: crate::PgServer::enable_tls
//! [`MariaDbServerBuilder::tls`]: crate::MariaDbServerBuilder::tls

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA, a server certificate signed by it, and an unrelated CA, in files
/// readable by every user (the server runs as its own user); the directory
/// is removed on drop.
#[derive(Debug)]
pub struct TestCertificates {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) -> io::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot run the `openssl` command-line tool ({e}); install the Debian \
                     package `openssl`"
                ),
            )
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn make_ca(dir: &Path, name: &str, subject: &str) -> io::Result<()> {
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
            "-keyout", &key, "-out", &crt,
        ],
    )
}

impl TestCertificates {
    /// Whether the `openssl` command-line tool is there (for
    /// [`require_or_skip!`](crate::require_or_skip)).
    pub fn available() -> Result<(), String> {
        openssl(Path::new("/"), &["version"]).map_err(|e| e.to_string())
    }

    /// Makes the certificates in a new temporary directory.
    pub fn generate() -> io::Result<TestCertificates> {
        let dir = tempfile::Builder::new()
            .prefix("pool-testkit-tls-")
            .tempdir()?;
        let path = dir.path();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        std::fs::write(
            path.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )?;
        make_ca(path, "ca", "/CN=pool-testkit test CA")?;
        make_ca(path, "other_ca", "/CN=pool-testkit unrelated CA")?;
        openssl(
            path,
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
            path,
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
        for f in ["ca.crt", "other_ca.crt", "server.crt", "server.key"] {
            std::fs::set_permissions(path.join(f), std::fs::Permissions::from_mode(0o644))?;
        }
        Ok(TestCertificates { dir })
    }

    /// The CA certificate that signed the server's (PEM file).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The CA certificate that signed the server's, PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.ca_path()).expect("read the test CA")
    }

    /// A CA that did not sign the server's certificate (PEM file).
    pub fn other_ca_path(&self) -> PathBuf {
        self.dir.path().join("other_ca.crt")
    }

    /// A CA that did not sign the server's certificate, PEM.
    pub fn other_ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.other_ca_path()).expect("read the unrelated test CA")
    }

    /// The server's certificate (PEM file, for `localhost` and `127.0.0.1`).
    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// The server's private key (PEM file, unencrypted).
    pub fn server_key_path(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}
