//! The simulated database's error type.

use std::fmt;
use std::time::Duration;

/// Everything the simulated database can fail with.
///
/// The messages read like a real driver's, so that they can be checked in
/// pool error messages (the pool quotes the most recent connect error).
///
/// ```
/// use pool_sim::{SimDb, SimError};
///
/// let db = SimDb::new();
/// db.set_refuse_connections(true);
/// let err = db.connect().unwrap_err();
/// assert_eq!(err, SimError::ConnectionRefused);
/// assert!(err.to_string().contains("connection refused"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimError {
    /// The server is not accepting connections (refusal switched on, or it is
    /// restarting). Returned at once, like a TCP reset on loopback.
    ConnectionRefused,
    /// The server already has its limit of open connections.
    TooManyConnections {
        /// The server's connection limit.
        limit: u32,
    },
    /// A connect failed because a failure was injected with
    /// [`SimDb::fail_next_connects`](crate::SimDb::fail_next_connects).
    InjectedConnectFailure,
    /// The server did not answer the connect within the connect timeout
    /// (black-hole mode).
    ConnectTimeout {
        /// The connect timeout that ran out.
        timeout: Duration,
    },
    /// The server restarted while the connection was being set up.
    ConnectionReset,
    /// The connection is broken: the server closed it or the client gave up on it.
    /// Every further use fails with this error.
    Broken {
        /// The connection's id.
        id: u64,
    },
    /// A query or validation got no answer within its timeout (black-hole mode,
    /// or latency above the timeout). The connection is broken afterwards, as a
    /// real driver closes a socket whose read timed out.
    Timeout {
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// A statement was not valid in the session's state (for example `COMMIT`
    /// outside a transaction). The connection stays usable.
    InvalidState {
        /// What was wrong.
        message: &'static str,
    },
    /// A reset or validation failed because a failure was injected with
    /// [`SimDb::fail_next_resets`](crate::SimDb::fail_next_resets) or
    /// [`SimDb::fail_next_validations`](crate::SimDb::fail_next_validations).
    InjectedFailure,
}

impl SimError {
    /// True when the error leaves the connection unusable (it is broken).
    ///
    /// ```
    /// use pool_sim::SimError;
    /// assert!(SimError::Broken { id: 1 }.is_fatal());
    /// assert!(!SimError::InvalidState { message: "no transaction in progress" }.is_fatal());
    /// ```
    pub fn is_fatal(&self) -> bool {
        matches!(self, SimError::Broken { .. } | SimError::Timeout { .. })
    }

    /// True for the errors a connect attempt can return.
    ///
    /// ```
    /// use pool_sim::SimError;
    /// assert!(SimError::ConnectionRefused.is_connect_error());
    /// assert!(!SimError::Broken { id: 3 }.is_connect_error());
    /// ```
    pub fn is_connect_error(&self) -> bool {
        matches!(
            self,
            SimError::ConnectionRefused
                | SimError::TooManyConnections { .. }
                | SimError::InjectedConnectFailure
                | SimError::ConnectTimeout { .. }
                | SimError::ConnectionReset
        )
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::ConnectionRefused => f.write_str(
                "connection refused (the simulated server is not accepting connections)",
            ),
            SimError::TooManyConnections { limit } => {
                write!(f, "too many connections (the server allows {limit})")
            }
            SimError::InjectedConnectFailure => f.write_str("connect failed (injected failure)"),
            SimError::ConnectTimeout { timeout } => {
                write!(
                    f,
                    "connect timed out after {timeout:?} (no answer from the server)"
                )
            }
            SimError::ConnectionReset => {
                f.write_str("connection reset by peer during startup (the server restarted)")
            }
            SimError::Broken { id } => {
                write!(
                    f,
                    "connection {id} is broken (server closed the connection)"
                )
            }
            SimError::Timeout { timeout } => {
                write!(
                    f,
                    "no answer from the server within {timeout:?}; connection closed"
                )
            }
            SimError::InvalidState { message } => f.write_str(message),
            SimError::InjectedFailure => f.write_str("operation failed (injected failure)"),
        }
    }
}

impl std::error::Error for SimError {}
