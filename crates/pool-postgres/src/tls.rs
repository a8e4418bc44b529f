//! TLS connections (feature `tls`), through [`postgres_native_tls`]: the
//! platform's TLS stack (OpenSSL on Linux, so building needs its development
//! headers, Debian package `libssl-dev`).
//!
//! Whether TLS is used is decided by the URL's or configuration's `sslmode`:
//! `disable`, `prefer` (the driver's default: TLS when the server offers it)
//! or `require`. The driver does not verify anything itself; the connector
//! does, against the system's root certificates plus any given to
//! [`connector`], and checks the host name unless told otherwise.
//!
//! A refused certificate's OpenSSL message shows twice in a `{:#}` error
//! chain: native-tls and OpenSSL quote their causes in their own messages
//! and return them as sources too. With the `rustls` feature each part of
//! the chain shows once.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = std::fs::read("/etc/ssl/private-ca.pem")?;
//! let tls = pool_postgres::tls::connector(Some(&ca))?;
//! let (builder, manager) = pool_postgres::builder_from_url_with_tls(
//!     "postgres://app:secret@db.internal/orders?sslmode=require",
//!     tls,
//! )?;
//! let pool = builder.build(manager)?;
//! # let _ = pool; Ok(()) }
//! ```

pub use native_tls;
pub use postgres_native_tls::MakeTlsConnector;

/// A connector that trusts the system's root certificates plus
/// `extra_root_pem` (one PEM certificate, typically a private CA), and
/// checks host names.
///
/// For anything else (client certificates, disabling checks for tests),
/// configure a [`native_tls::TlsConnector`] and wrap it with
/// [`MakeTlsConnector::new`].
pub fn connector(extra_root_pem: Option<&[u8]>) -> Result<MakeTlsConnector, native_tls::Error> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(pem) = extra_root_pem {
        builder.add_root_certificate(native_tls::Certificate::from_pem(pem)?);
    }
    Ok(MakeTlsConnector::new(builder.build()?))
}
