//! The pool's one error type.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::State;

/// A driver error kept by the pool: shared, because the most recent connect
/// error is reported to every borrower that times out while it is current.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong when building a pool or borrowing from it.
///
/// Every variant names the pool (see [`Builder::name`](crate::Builder::name))
/// and says what to do. Following the Rust API guidelines, a database error
/// behind it is **not** repeated in the message: it is the error's
/// [`source`](std::error::Error::source), so print the whole chain, for
/// example with `anyhow`'s `{:#}`, or with [`ErrorChain`]:
///
/// ```
/// # use pool_core::{Error, ErrorChain, Pool};
/// # use std::time::Duration;
/// # struct Refused;
/// # impl pool_core::ManageConnection for Refused {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     fn connect(&self) -> Result<(), std::io::Error> {
/// #         Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"))
/// #     }
/// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn has_broken(&self, _: &mut ()) -> bool { false }
/// # }
/// let err = Pool::builder()
///     .name("orders")
///     .initialization_fail_timeout(Duration::from_millis(10))
///     .build(Refused)
///     .unwrap_err();
/// assert!(matches!(err, Error::Connect { .. }));
/// // The message says what happened and what to do ...
/// assert!(err.to_string().starts_with("pool \"orders\": cannot connect to the database"));
/// assert!(err.to_string().contains("check that the database is up"));
/// // ... the cause is its source, shown once in the chain.
/// let chain = ErrorChain(&err).to_string();
/// assert!(chain.ends_with(": connection refused"), "{chain}");
/// assert_eq!(chain.matches("connection refused").count(), 1);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// No connection became available within the acquire timeout.
    Timeout {
        /// The pool's name.
        pool: Arc<str>,
        /// How long the borrower waited.
        waited: Duration,
        /// The pool's state when the borrower gave up.
        state: State,
        /// The most recent connect failure, if the pool was failing to open
        /// connections: usually the real reason for the timeout.
        last_error: Option<SharedError>,
    },
    /// The pool has been closed; it lends nothing any more.
    Closed {
        /// The pool's name.
        pool: Arc<str>,
    },
    /// The pool is suspended (see [`Pool::suspend`](crate::Pool::suspend)) and
    /// either fails fast or the wait for [`Pool::resume`](crate::Pool::resume) ran out.
    Suspended {
        /// The pool's name.
        pool: Arc<str>,
    },
    /// The database could not be reached: returned by `build` when no connection
    /// could be opened within the initialization timeout, and by `get` in
    /// fail-fast mode while the database is known to be down.
    Connect {
        /// The pool's name.
        pool: Arc<str>,
        /// The pool's state at the time.
        state: State,
        /// The driver's error.
        source: SharedError,
    },
    /// A setting is invalid; returned by `build` (never a panic).
    Config {
        /// The pool's name (empty when the error comes from parsing a URL).
        pool: Arc<str>,
        /// The setting at fault.
        setting: String,
        /// Why it is rejected, and what would be accepted.
        reason: String,
    },
}

impl Error {
    /// Builds a configuration error for `setting`.
    ///
    /// ```
    /// let err = pool_core::Error::config("connection_limit", "must be a whole number");
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid pool setting `connection_limit`: must be a whole number"
    /// );
    /// ```
    pub fn config(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            pool: Arc::from(""),
            setting: setting.into(),
            reason: reason.into(),
        }
    }

    /// The name of the pool the error comes from (empty for URL parsing errors).
    pub fn pool_name(&self) -> &str {
        match self {
            Error::Timeout { pool, .. }
            | Error::Closed { pool }
            | Error::Suspended { pool }
            | Error::Connect { pool, .. }
            | Error::Config { pool, .. } => pool,
        }
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// The most recent driver error behind this error, if any.
    pub fn connect_error(&self) -> Option<&SharedError> {
        match self {
            Error::Timeout { last_error, .. } => last_error.as_ref(),
            Error::Connect { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn prefix(f: &mut fmt::Formatter<'_>, pool: &str) -> fmt::Result {
    if pool.is_empty() {
        Ok(())
    } else {
        write!(f, "pool \"{pool}\": ")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout {
                pool,
                waited,
                state,
                last_error,
            } => {
                prefix(f, pool)?;
                write!(
                    f,
                    "timed out after {waited:?} waiting for a connection ({state})"
                )?;
                if last_error.is_some() {
                    // The error itself is the source: not repeated here.
                    f.write_str(
                        " while new connections were failing; fix the cause of the last \
                         connect error",
                    )
                } else {
                    f.write_str(
                        "; every connection stayed in use: return connections sooner, or \
                         raise max_size or connection_timeout",
                    )
                }
            }
            Error::Closed { pool } => {
                prefix(f, pool)?;
                f.write_str("the pool is closed (close() was called); it lends no more connections")
            }
            Error::Suspended { pool } => {
                prefix(f, pool)?;
                f.write_str("the pool is suspended; call resume() to lend again")
            }
            Error::Connect { pool, state, .. } => {
                prefix(f, pool)?;
                // The driver's error is the source: not repeated here.
                write!(
                    f,
                    "cannot connect to the database ({state}); check that the database is up \
                     and that the address and credentials are right"
                )
            }
            Error::Config {
                pool,
                setting,
                reason,
            } => {
                prefix(f, pool)?;
                write!(f, "invalid pool setting `{setting}`: {reason}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Timeout {
                last_error: Some(e),
                ..
            } => Some(&**e),
            Error::Connect { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

/// Shows an error and each of its causes (its
/// [`source`](std::error::Error::source) chain), joined by `": "`, as
/// `anyhow`'s `{:#}` does: the pool's and the drivers' errors keep their
/// causes out of their own messages, so this is how to log one whole.
///
/// ```
/// use pool_core::ErrorChain;
///
/// #[derive(Debug)]
/// struct Outer(std::io::Error);
/// impl std::fmt::Display for Outer {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("cannot read the settings")
///     }
/// }
/// impl std::error::Error for Outer {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
///
/// let err = Outer(std::io::Error::other("disk full"));
/// assert_eq!(ErrorChain(&err).to_string(), "cannot read the settings: disk full");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
