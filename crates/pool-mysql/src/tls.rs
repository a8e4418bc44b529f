//! TLS options (feature `tls`, the driver's native-tls, or feature `rustls`,
//! the driver's rustls with the `ring` provider): [`ssl_opts`] makes the
//! driver's [`SslOpts`](mysql::SslOpts) that require TLS and verify the
//! server against the usual roots plus an extra CA.
//!
//! The roots are the system's with `tls` (OpenSSL on Linux) and Mozilla's
//! (the `webpki-roots` crate) with `rustls`. The driver cannot be built
//! with both features: with both on, the `mysql` crate itself fails to
//! build ("the name `Secure` is defined multiple times").
//!
//! TLS covers TCP connections only: the driver's `prefer_socket` (on by
//! default in its own options, off in
//! [`MysqlManager::from_url`](crate::MysqlManager::from_url)'s) moves
//! a connection to `localhost` onto the Unix socket, unencrypted; turn it
//! off where TLS matters.
//!
//! The same is reachable from a URL: any TLS parameter (`root_cert_path`,
//! `danger_accept_invalid_certs`, ...) makes TLS required, see
//! [`MysqlManager::from_url`](crate::MysqlManager::from_url).
//!
//! ```no_run
//! use pool_mysql::MysqlManager;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let opts = mysql::OptsBuilder::new()
//!     .ip_or_hostname(Some("db.internal"))
//!     .user(Some("app"))
//!     .pass(Some("secret"))
//!     .prefer_socket(false)
//!     .ssl_opts(pool_mysql::tls::ssl_opts(Some("/etc/ssl/private-ca.pem")));
//! let pool = pool_core::Pool::builder().build(MysqlManager::new(opts))?;
//! # let _ = pool; Ok(()) }
//! ```

use std::path::PathBuf;

/// TLS options that require TLS and trust the usual roots plus the
/// certificates in the PEM file `extra_root_pem` (typically a private CA),
/// checking host names.
///
/// ```
/// let opts = pool_mysql::tls::ssl_opts(Some("/etc/ssl/private-ca.pem"));
/// assert_eq!(opts.root_cert_path(), Some(std::path::Path::new("/etc/ssl/private-ca.pem")));
/// assert!(!opts.accept_invalid_certs() && !opts.skip_domain_validation());
/// ```
pub fn ssl_opts(extra_root_pem: Option<impl Into<PathBuf>>) -> mysql::SslOpts {
    mysql::SslOpts::default().with_root_cert_path(extra_root_pem.map(|p| p.into()))
}
