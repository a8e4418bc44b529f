//! TLS connections through rustls (feature `rustls`), with
//! [`tokio_postgres_rustls`]: no OpenSSL, the `ring` crypto provider, and
//! Mozilla's root certificates (the `webpki-roots` crate) plus any given to
//! [`connector`]. An alternative to the native-tls `tls` feature; both may
//! be enabled together.
//!
//! Whether TLS is used is decided by the URL's or configuration's `sslmode`:
//! `disable`, `prefer` (the driver's default: TLS when the server offers it)
//! or `require`. The connector verifies the server's certificate chain and
//! its host name (`localhost` or an IP address must be in the certificate's
//! subject alternative names).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = std::fs::read("/etc/ssl/private-ca.pem")?;
//! let tls = pool_postgres::rustls::connector(Some(&ca))?;
//! let (builder, manager) = pool_postgres::builder_from_url_with_tls(
//!     "postgres://app:secret@db.internal/orders?sslmode=require",
//!     tls,
//! )?;
//! let pool = builder.build(manager)?;
//! # let _ = pool; Ok(()) }
//! ```

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
pub use tokio_postgres_rustls::MakeRustlsConnect;

/// The `rustls` crate this module builds on, to make a
/// [`rustls::ClientConfig`] of one's own.
pub use ::rustls as rustls_crate;

/// A connector that trusts Mozilla's root certificates plus every
/// certificate in `extra_root_pem` (PEM, typically a private CA), and checks
/// host names. It uses the `ring` provider explicitly, so it works whatever
/// process-wide rustls provider is installed (or none).
///
/// For anything else (client certificates, other roots), build a
/// [`rustls::ClientConfig`](rustls_crate::ClientConfig) and wrap it with
/// [`MakeRustlsConnect::new`].
///
/// ```
/// // Mozilla's roots only:
/// let tls = pool_postgres::rustls::connector(None).unwrap();
/// # let _ = tls;
/// // Not a certificate: an error that says so.
/// let err = pool_postgres::rustls::connector(Some(b"not a certificate")).err().unwrap();
/// assert!(err.to_string().contains("no PEM certificate"), "{err}");
/// ```
pub fn connector(extra_root_pem: Option<&[u8]>) -> Result<MakeRustlsConnect, rustls::Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_root_pem {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| {
                rustls::Error::General(format!(
                    "the extra root certificate is not valid PEM ({e}); give the CA's \
                     certificate as PEM (-----BEGIN CERTIFICATE-----)"
                ))
            })?;
            roots.add(cert)?;
            found += 1;
        }
        if found == 0 {
            return Err(rustls::Error::General(
                "no PEM certificate found in the extra root certificate; give the CA's \
                 certificate as PEM (-----BEGIN CERTIFICATE-----)"
                    .into(),
            ));
        }
    }
    // `ring`, not `aws-lc-rs`: no C library to build with cmake. rustls
    // 0.23.48 deprecates ring's provider only for its lack of post-quantum
    // key exchange; classic key exchange is what PostgreSQL servers offer.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
