//! Credentials that change without a rebuild: the manager's
//! [`credentials`](crate::PostgresManager::credentials) provider, asked for
//! the user and password before every login.

use std::borrow::Cow;

use crate::{Error, PostgresManager};

impl<T> PostgresManager<T> {
    /// Takes the user and password of every connect from `provider`,
    /// called just before each login, instead of from the configuration
    /// (which still gives host, database and every other option): a rotated
    /// password or an expiring token is used from the next connect on,
    /// without a rebuild. A user the credentials leave out is the
    /// configuration's.
    ///
    /// Connections opened before a change keep their session; to retire
    /// them once the provider hands out the new secret, call
    /// [`Pool::soft_evict_all`](pool_core::Pool::soft_evict_all) (idle ones
    /// close at once, lent ones when they come back; borrowers keep being
    /// served). When the provider fails, the connect fails with
    /// [`Error::Credentials`], which quotes its error (never a password) and
    /// is retried with backoff. A panic in it counts as a failed connect.
    ///
    /// ```
    /// use pool_core::Credentials;
    /// use pool_postgres::{NoTls, PostgresManager};
    /// use std::sync::{Arc, RwLock};
    ///
    /// let secret = Arc::new(RwLock::new(Credentials::new("app", "first")));
    /// let manager = PostgresManager::new("host=db dbname=app".parse()?, NoTls).credentials({
    ///     let secret = secret.clone();
    ///     move || Ok(secret.read().unwrap().clone())
    /// });
    /// // Later, after `ALTER ROLE app PASSWORD ...` on the server:
    /// *secret.write().unwrap() = Credentials::new("app", "second");
    /// // pool.soft_evict_all();
    /// # let _ = manager;
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn credentials(mut self, provider: impl pool_core::ProvideCredentials) -> Self {
        self.credentials = Some(std::sync::Arc::new(provider));
        self
    }

    /// The configuration of the next login: the manager's, with the
    /// provider's user and password when there is a provider.
    pub(crate) fn login_config(&self) -> Result<Cow<'_, postgres::Config>, Error> {
        let Some(provider) = &self.credentials else {
            return Ok(Cow::Borrowed(&self.config));
        };
        let credentials =
            pool_core::CredentialsFailed::call(&**provider).map_err(Error::Credentials)?;
        let mut config = self.config.clone();
        if let Some(user) = credentials.user() {
            config.user(user);
        }
        if let Some(password) = credentials.password() {
            config.password(password);
        }
        Ok(Cow::Owned(config))
    }
}
