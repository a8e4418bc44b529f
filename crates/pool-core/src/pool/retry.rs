//! `run_idempotent`: run the user's work on a connection, and once more on
//! a validated one when it failed because its connection was broken (the
//! manager's [`is_broken_error`](crate::ManageConnection::is_broken_error)).

use std::fmt;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::ManageConnection;

use super::{guarded, Pool, PooledConnection};

/// What [`Pool::run_idempotent`] failed with: no connection could be had,
/// or the work itself failed (after its one retry, if its error said the
/// connection was broken).
#[derive(Debug)]
pub enum RunError<E> {
    /// No connection: the pool's own error (a timeout, the pool closed...).
    Pool(Error),
    /// The work's error.
    Failed(E),
}

impl<E> RunError<E> {
    /// The work's error, if that is what failed.
    pub fn failed(self) -> Option<E> {
        match self {
            RunError::Failed(e) => Some(e),
            RunError::Pool(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for RunError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Pool(e) => fmt::Display::fmt(e, f),
            RunError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RunError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Pool(e) => e.source(),
            RunError::Failed(e) => e.source(),
        }
    }
}

impl<M: ManageConnection> Pool<M> {
    /// Runs `work` on a pooled connection; if it fails with an error that
    /// the manager classifies as a broken connection
    /// ([`ManageConnection::is_broken_error`]), closes that connection and
    /// runs `work` once more, on a connection validated first
    /// ([`ManageConnection::is_valid`]) within the pool's
    /// `connection_timeout`.
    ///
    /// **Only for idempotent work**: the first attempt may have reached the
    /// server before its connection broke (a write that committed, then
    /// lost its answer), so `work` may take effect twice. Reads, and writes
    /// that are safe to repeat (`INSERT ... ON CONFLICT DO NOTHING`, `SET`,
    /// `UPDATE ... SET x = 5`), qualify; `UPDATE ... SET n = n + 1` does not.
    ///
    /// It is for the dead connections a server restart or a killed backend
    /// leaves in the pool, which a borrow within the alive-bypass window
    /// ([`Builder::alive_bypass_window`](crate::Builder::alive_bypass_window))
    /// lends without a check. Any other error, or a second failure, is
    /// returned as [`RunError::Failed`] (a connection it says is broken is
    /// closed, not reused); no connection at all is [`RunError::Pool`]. The
    /// work's error type must implement `std::error::Error` (the manager
    /// inspects it and its `source` chain); with a boxed or `anyhow` error,
    /// run `work` returning the driver's error and convert afterwards.
    ///
    /// ```
    /// use pool_core::{ManageConnection, Pool, RunError};
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::time::Duration;
    ///
    /// # #[derive(Default)]
    /// # struct Conn { dead: AtomicBool }
    /// /// A connection whose server may have gone away.
    /// struct Db;
    /// impl ManageConnection for Db {
    ///     type Connection = Conn;
    ///     type Error = std::io::Error;
    ///     fn connect(&self) -> Result<Conn, std::io::Error> { Ok(Conn::default()) }
    ///     fn is_valid(&self, c: &mut Conn, _: Duration) -> Result<(), std::io::Error> {
    ///         if c.dead.load(Ordering::Relaxed) { Err(std::io::ErrorKind::BrokenPipe.into()) } else { Ok(()) }
    ///     }
    ///     fn has_broken(&self, _: &mut Conn) -> bool { false } // not known until used
    ///     fn is_broken_error(&self, e: &(dyn std::error::Error + 'static)) -> bool {
    ///         e.downcast_ref::<std::io::Error>()
    ///             .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    ///     }
    /// }
    /// fn select(c: &Conn) -> Result<u32, std::io::Error> {
    ///     if c.dead.load(Ordering::Relaxed) { Err(std::io::ErrorKind::BrokenPipe.into()) } else { Ok(42) }
    /// }
    ///
    /// let pool = Pool::builder().max_size(1).build(Db)?;
    /// pool.get()?.dead.store(true, Ordering::Relaxed); // the server restarted
    ///
    /// let answer = pool.run_idempotent(|conn| select(conn));
    /// assert_eq!(answer.unwrap(), 42); // on a new connection
    /// assert_eq!(pool.metrics().closed.broken, 1);
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    #[track_caller]
    pub fn run_idempotent<T, E>(
        &self,
        mut work: impl FnMut(&mut PooledConnection<'_, M>) -> Result<T, E>,
    ) -> Result<T, RunError<E>>
    where
        E: std::error::Error + 'static,
    {
        let mut conn = self.get().map_err(RunError::Pool)?;
        let error = match work(&mut conn) {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !self.is_broken_error(&error) {
            return Err(RunError::Failed(error));
        }
        log::debug!(
            "pool \"{}\": connection {} broke under idempotent work ({error}); running it again \
             on a validated connection",
            self.name(),
            conn.id()
        );
        conn.mark_broken();
        drop(conn);
        let mut conn = self.get_validated().map_err(RunError::Pool)?;
        work(&mut conn).map_err(|error| {
            if self.is_broken_error(&error) {
                conn.mark_broken();
            }
            RunError::Failed(error)
        })
    }

    fn is_broken_error(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        guarded(|| self.manager().is_broken_error(error)) == Some(true)
    }

    /// A connection that passed `is_valid` just now, within
    /// `connection_timeout`; the ones that fail are closed.
    #[track_caller]
    fn get_validated(&self) -> Result<PooledConnection<'_, M>, Error> {
        let inner = self.inner();
        let start = Instant::now();
        let deadline = start.checked_add(inner.config.connection_timeout);
        loop {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => inner.config.connection_timeout,
            };
            if left.is_zero() {
                return Err(inner.timeout_error(start));
            }
            let mut conn = self.get_timeout(left)?;
            let limit = inner
                .config
                .validation_timeout
                .min(left)
                .max(Duration::from_millis(1));
            if guarded(|| inner.manager.is_valid(&mut conn, limit).is_ok()) == Some(true) {
                return Ok(conn);
            }
            conn.mark_broken();
        }
    }
}
