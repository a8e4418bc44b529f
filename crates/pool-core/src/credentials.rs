//! Credentials that change without a rebuild: a [`ProvideCredentials`]
//! that drivers consult on every connect (pool-postgres's and pool-mysql's
//! `credentials` option), the [`Credentials`] it returns (whose password is
//! never printed), and [`CredentialsFailed`], the connect error when it fails.
//!
//! Connections opened before a rotation keep their session; retire them with
//! [`Pool::soft_evict_all`](crate::Pool::soft_evict_all) once the provider
//! hands out the new secret: idle ones close at once, lent ones when they
//! come back, and their replacements log in with the new secret.

use std::fmt;
use std::sync::Arc;

/// The error a [`ProvideCredentials`] returns: anything that says why the
/// secret is unavailable (never the secret itself).
pub type CredentialsError = Box<dyn std::error::Error + Send + Sync>;

/// A user name and a password (or token) for the next connect. Its `Debug`
/// output shows the user and `***` for the password.
///
/// ```
/// use pool_core::Credentials;
///
/// let c = Credentials::new("app", "s3cret-token");
/// assert_eq!(c.user(), Some("app"));
/// assert_eq!(c.password(), Some("s3cret-token"));
/// assert!(!format!("{c:?}").contains("s3cret"));
/// let only = Credentials::password_only("t0ken");
/// assert_eq!(only.user(), None);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: Option<String>,
    password: Option<String>,
}

impl Credentials {
    /// A user name and its password (or token).
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            user: Some(user.into()),
            password: Some(password.into()),
        }
    }

    /// A password (or token) for the user the driver's options name.
    pub fn password_only(password: impl Into<String>) -> Self {
        Credentials {
            user: None,
            password: Some(password.into()),
        }
    }

    /// The user name, when these credentials name one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password or token. Drivers pass it to the server; nothing in the
    /// pool prints it.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Where a driver manager gets its credentials on every connect: a rotating
/// password, a cloud IAM token that expires every 15 minutes.
///
/// Any `Fn() -> Result<Credentials, CredentialsError> + Send + Sync` is one.
/// It runs on the pool's creator thread before each login, so it should be
/// quick (return a cached token, refreshed elsewhere, rather than fetch one
/// per connect). When it fails, the connect fails with [`CredentialsFailed`]
/// (counted and retried with backoff like any connect failure).
///
/// ```
/// use pool_core::{Credentials, ProvideCredentials};
/// use std::sync::{Arc, RwLock};
///
/// let current = Arc::new(RwLock::new(Credentials::new("app", "first")));
/// let provider = {
///     let current = current.clone();
///     move || Ok(current.read().unwrap().clone())
/// };
/// assert_eq!(provider.credentials()?.password(), Some("first"));
/// *current.write().unwrap() = Credentials::new("app", "second");
/// assert_eq!(provider.credentials()?.password(), Some("second"));
/// # Ok::<(), pool_core::CredentialsError>(())
/// ```
pub trait ProvideCredentials: Send + Sync + 'static {
    /// The credentials for the connect about to begin.
    fn credentials(&self) -> Result<Credentials, CredentialsError>;
}

impl<F> ProvideCredentials for F
where
    F: Fn() -> Result<Credentials, CredentialsError> + Send + Sync + 'static,
{
    fn credentials(&self) -> Result<Credentials, CredentialsError> {
        self()
    }
}

/// A shared provider, as the driver managers keep it.
pub type SharedCredentials = Arc<dyn ProvideCredentials>;

/// The connect error when the [`ProvideCredentials`] failed: nothing was
/// sent to the server. The provider's error (which should not contain the
/// secret) is its [`source`](std::error::Error::source); no password is in
/// either.
///
/// ```
/// use pool_core::ErrorChain;
///
/// let err = pool_core::CredentialsFailed::new("the token file is missing".into());
/// assert_eq!(
///     ErrorChain(&err).to_string(),
///     "the credentials provider failed; nothing was sent to the server, and the pool \
///      retries with backoff: fix the provider: the token file is missing"
/// );
/// ```
#[derive(Debug)]
pub struct CredentialsFailed(CredentialsError);

impl CredentialsFailed {
    /// Wraps the provider's error.
    pub fn new(error: CredentialsError) -> Self {
        CredentialsFailed(error)
    }

    /// Calls `provider`, turning its error into a `CredentialsFailed`.
    pub fn call(provider: &dyn ProvideCredentials) -> Result<Credentials, CredentialsFailed> {
        provider.credentials().map_err(CredentialsFailed)
    }
}

impl fmt::Display for CredentialsFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The provider's error is this error's `source()`, not part of
        // its message (each cause once in a chain: `ErrorChain`).
        f.write_str(
            "the credentials provider failed; nothing was sent to the server, and the pool \
             retries with backoff: fix the provider",
        )
    }
}

impl std::error::Error for CredentialsFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}
