//! Credentials that change without a rebuild: the manager's
//! [`credentials`](crate::MysqlManager::credentials) provider, asked for the
//! user and password before every login; and the driver's statement cache
//! size, the other option set on the driver's options here.

use mysql::{Opts, OptsBuilder};

use crate::{Error, MysqlManager};

impl MysqlManager {
    /// Takes the user and password of every connect from `provider`,
    /// called just before each login, instead of from the options (which
    /// still give host, database and every other option): a rotated password
    /// or an expiring token is used from the next connect on, without a
    /// rebuild. A user the credentials leave out is the options'.
    ///
    /// Connections opened before a change keep their session; to retire
    /// them once the provider hands out the new secret, call
    /// [`Pool::soft_evict_all`](pool_core::Pool::soft_evict_all) (idle ones
    /// close at once, lent ones when they come back). When the provider
    /// fails, the connect fails with [`Error::Credentials`], which quotes its
    /// error (never a password) and is retried with backoff.
    ///
    /// On servers without `COM_RESET_CONNECTION` (MySQL before 5.7.3,
    /// MariaDB before 10.2.4), [`Isolation::Full`](crate::Isolation::Full) resets with
    /// `COM_CHANGE_USER`, which logs in again with the password the
    /// connection was opened with: after a rotation such a reset fails and
    /// the pool closes the connection (another reason to `soft_evict_all`).
    ///
    /// ```
    /// use pool_core::Credentials;
    /// use std::sync::{Arc, RwLock};
    ///
    /// let secret = Arc::new(RwLock::new(Credentials::new("app", "first")));
    /// let opts = mysql::OptsBuilder::new().ip_or_hostname(Some("db")).db_name(Some("app"));
    /// let manager = pool_mysql::MysqlManager::new(opts).credentials({
    ///     let secret = secret.clone();
    ///     move || Ok(secret.read().unwrap().clone())
    /// });
    /// // Later, after `ALTER USER app IDENTIFIED BY ...` on the server:
    /// *secret.write().unwrap() = Credentials::new("app", "second");
    /// // pool.soft_evict_all();
    /// # let _ = manager;
    /// ```
    pub fn credentials(mut self, provider: impl pool_core::ProvideCredentials) -> Self {
        self.credentials = Some(std::sync::Arc::new(provider));
        self
    }

    /// Sets the size of the `mysql` crate's own per-connection statement
    /// cache (its `stmt_cache_size` option, also a URL parameter; the
    /// driver's default is 32): `exec` and friends with SQL text prepare a
    /// statement once per connection and reuse it while it stays cached.
    ///
    /// How long the cached statements live depends on the [`Isolation`](crate::Isolation):
    /// with [`Isolation::Rollback`](crate::Isolation::Rollback) or
    /// [`Isolation::None`](crate::Isolation::None) they last as long as the connection,
    /// across loans. With [`Isolation::Full`](crate::Isolation::Full) (the default) they
    /// last one loan: `COM_RESET_CONNECTION` closes the session's statements on the server,
    /// and the driver empties its cache with it (so no stale statement id is ever sent), so
    /// the first `exec` of each loan prepares again. `0` turns the cache off.
    ///
    /// ```
    /// let manager = pool_mysql::MysqlManager::new(mysql::OptsBuilder::new())
    ///     .statement_cache_size(64);
    /// assert_eq!(manager.opts().get_stmt_cache_size(), 64);
    /// ```
    pub fn statement_cache_size(mut self, size: usize) -> Self {
        self.opts = OptsBuilder::from_opts(self.opts)
            .stmt_cache_size(size)
            .into();
        self
    }

    /// The options of the next login: the manager's, with the provider's
    /// user and password when there is a provider.
    pub(crate) fn login_opts(&self) -> Result<Opts, Error> {
        let Some(provider) = &self.credentials else {
            return Ok(self.opts.clone());
        };
        let credentials =
            pool_core::CredentialsFailed::call(&**provider).map_err(Error::Credentials)?;
        let mut builder = OptsBuilder::from_opts(self.opts.clone());
        if let Some(user) = credentials.user() {
            builder = builder.user(Some(user));
        }
        if let Some(password) = credentials.password() {
            builder = builder.pass(Some(password));
        }
        Ok(builder.into())
    }
}
