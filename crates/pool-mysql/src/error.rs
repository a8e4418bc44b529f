//! The manager's error type and the connection-error classifier.

use std::fmt;
use std::time::Duration;

use mysql_common::proto::codec::error::PacketCodecError;

/// An error from [`MysqlManager`](crate::MysqlManager): a driver error, or a
/// time limit the manager enforces itself.
///
/// Its message says what happened and what to do; for a driver error the
/// cause the driver wraps (the server's error with its code, the I/O error,
/// the TLS error, ...) is its [`source`](std::error::Error::source), never
/// repeated in the message. (The `mysql::Error` itself is skipped in the
/// chain, since its own message repeats its cause, except for a TLS error,
/// whose native-tls/OpenSSL causes repeat each other: there the
/// `mysql::Error` shows it whole and ends the chain. [`Error::as_mysql`]
/// returns the driver's error.) Print the whole chain (`anyhow`'s `{:#}`, or
/// [`pool_core::ErrorChain`]) to see it all, each part once: "the server
/// rejected the login; check the user name, password and database name:
/// ERROR 1045 (28000): Access denied for user 'app'@'localhost'".
///
/// The pool keeps the most recent connect error as the source of its
/// [`Error::Timeout`](pool_core::Error::Timeout) and
/// [`Error::Connect`](pool_core::Error::Connect), so a timed-out borrower's
/// chain names the real cause. No message contains a password.
///
/// ```
/// use pool_mysql::Error;
/// use std::time::Duration;
///
/// let err = Error::Timeout {
///     operation: "validating the connection",
///     after: Duration::from_secs(5),
///     target: "db.internal:3306".into(),
/// };
/// assert!(err.is_connection_error());
/// assert!(err.to_string().starts_with("timed out after 5s validating the connection to db.internal:3306"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An error reported by the `mysql` driver or the server.
    Mysql(mysql::Error),
    /// A connect, validation or reset did not finish within its time limit.
    Timeout {
        /// What was being done (`"connecting"`, `"validating the connection"`).
        operation: &'static str,
        /// The time limit that passed.
        after: Duration,
        /// The server address, `host:port` or the socket path (never the password).
        target: String,
    },
    /// An operation could not run: the worker thread that bounds a connect
    /// panicked or could not be started.
    Worker {
        /// What was being done.
        operation: &'static str,
    },
    /// The [credentials provider](crate::MysqlManager::credentials) failed;
    /// nothing was sent to the server.
    Credentials(pool_core::CredentialsFailed),
}

impl Error {
    /// True when the error means the connection is unusable; see
    /// [`is_connection_error`].
    pub fn is_connection_error(&self) -> bool {
        match self {
            Error::Mysql(e) => is_connection_error(e),
            Error::Timeout { .. } | Error::Worker { .. } => true,
            Error::Credentials(_) => false,
        }
    }

    /// What this error, returned by a connect, says about the database, for
    /// the pool's fail-fast rule: see [`pool_core::ConnectFailure`].
    ///
    /// Login refused for good (access denied, unknown database, host not
    /// allowed: errors 1044, 1045, 1049, 1130, 1698) is `Rejected`; a server
    /// at its connection limits or shutting down (1040, 1053, 1203, 1226,
    /// 1129) is `Busy`; a refused, reset or timed-out connection is
    /// `Unreachable`.
    ///
    /// ```
    /// use pool_core::ConnectFailure;
    /// use std::time::Duration;
    ///
    /// let timeout = pool_mysql::Error::Timeout {
    ///     operation: "connecting",
    ///     after: Duration::from_secs(5),
    ///     target: "db:3306".into(),
    /// };
    /// assert_eq!(timeout.connect_failure(), ConnectFailure::Unreachable);
    /// ```
    pub fn connect_failure(&self) -> pool_core::ConnectFailure {
        use pool_core::ConnectFailure;
        match self {
            Error::Timeout { .. } => ConnectFailure::Unreachable,
            Error::Worker { .. } | Error::Credentials(_) => ConnectFailure::Other,
            Error::Mysql(mysql::Error::MySqlError(e)) => match e.code {
                1044 | 1045 | 1049 | 1130 | 1698 => ConnectFailure::Rejected,
                1040 | 1053 | 1129 | 1203 | 1226 => ConnectFailure::Busy,
                _ => ConnectFailure::Other,
            },
            Error::Mysql(mysql::Error::IoError(_) | mysql::Error::CodecError(_)) => {
                ConnectFailure::Unreachable
            }
            Error::Mysql(mysql::Error::DriverError(e)) => match e {
                mysql::DriverError::CouldNotConnect(_)
                | mysql::DriverError::ConnectTimeout
                | mysql::DriverError::Timeout => ConnectFailure::Unreachable,
                _ => ConnectFailure::Other,
            },
            Error::Mysql(_) => ConnectFailure::Other,
        }
    }

    /// The driver error, if this is one.
    pub fn as_mysql(&self) -> Option<&mysql::Error> {
        match self {
            Error::Mysql(e) => Some(e),
            _ => None,
        }
    }
}

impl From<mysql::Error> for Error {
    fn from(e: mysql::Error) -> Self {
        Error::Mysql(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use pool_core::ConnectFailure;
        match self {
            // What the driver's error means for the user; the cause is the
            // source, not repeated here.
            Error::Mysql(e) => f.write_str(match (self.connect_failure(), e) {
                (ConnectFailure::Rejected, _) => {
                    "the server rejected the login; check the user name, password and \
                     database name"
                }
                (ConnectFailure::Busy, _) => {
                    "the server is at its connection limits or shutting down; retry later \
                     or lower max_size"
                }
                (_, e) if is_tls(e) => {
                    "the TLS handshake failed; check the server's certificate and the CA \
                     given as root_cert_path"
                }
                (ConnectFailure::Unreachable, _) => {
                    "the connection to the server failed; check that it is running and that \
                     the host and port are right"
                }
                (_, mysql::Error::MySqlError(_)) => "the server reported an error",
                (_, mysql::Error::UrlError(_)) => "the connection URL is invalid",
                (_, _) => "the MySQL driver reported an error",
            }),
            Error::Timeout {
                operation,
                after,
                target,
            } => write!(
                f,
                "timed out after {after:?} {operation} to {target}: no answer from the server \
                 (is the address black-holed by a firewall, or the server hung?)"
            ),
            Error::Worker { operation } => write!(
                f,
                "{operation} failed: its worker thread panicked or could not start"
            ),
            Error::Credentials(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // `mysql::Error`'s message quotes its cause ("IoError { ... }")
            // and its `source()` is not implemented (only the deprecated
            // `cause()`): skip it and give the cause itself, or the error
            // when it wraps none.
            Error::Mysql(e) => Some(match e {
                // Its message quotes the I/O error too.
                mysql::Error::IoError(e) | mysql::Error::CodecError(PacketCodecError::Io(e)) => e,
                mysql::Error::CodecError(e) => e,
                mysql::Error::MySqlError(e) => e,
                mysql::Error::DriverError(e) => e,
                mysql::Error::UrlError(e) => e,
                // Not the TLS error: native-tls and OpenSSL quote their
                // causes in their messages and return them as sources too;
                // `mysql::Error` shows its TLS error whole and ends the chain.
                other => other,
            }),
            // Transparent: its message is this one's, its cause this one's.
            Error::Credentials(e) => e.source(),
            _ => None,
        }
    }
}

/// True when the driver's error is a failed TLS handshake: its own TLS
/// error (native-tls), or an I/O error carrying rustls' (rustls reports a
/// refused certificate on the first read or write).
fn is_tls(err: &mysql::Error) -> bool {
    match err {
        #[cfg(any(feature = "tls", feature = "rustls"))]
        mysql::Error::TlsError(_) => true,
        #[cfg(feature = "rustls")]
        mysql::Error::IoError(e) | mysql::Error::CodecError(PacketCodecError::Io(e)) => {
            e.get_ref().is_some_and(|e| e.is::<rustls::Error>())
        }
        _ => false,
    }
}

/// Server and client error codes that end the session.
const FATAL_CODES: &[u16] = &[
    1040, // ER_CON_COUNT_ERROR: too many connections
    1053, // ER_SERVER_SHUTDOWN
    1152, // ER_ABORTING_CONNECTION
    1153, // ER_NET_PACKET_TOO_LARGE
    1154, // ER_NET_READ_ERROR_FROM_PIPE
    1156, // ER_NET_PACKETS_OUT_OF_ORDER
    1157, // ER_NET_UNCOMPRESS_ERROR
    1158, // ER_NET_READ_ERROR
    1159, // ER_NET_READ_INTERRUPTED
    1160, // ER_NET_ERROR_ON_WRITE
    1161, // ER_NET_WRITE_INTERRUPTED
    1184, // ER_NEW_ABORTING_CONNECTION
    1927, // ER_CONNECTION_KILLED (MariaDB)
    2006, // CR_SERVER_GONE_ERROR
    2013, // CR_SERVER_LOST
    4031, // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
];

/// True when `err` means the connection it came from is unusable, so a
/// borrower should call
/// [`PooledConnection::mark_broken`](pool_core::PooledConnection::mark_broken)
/// — or, better, record it with [`MysqlConnection::record`](crate::MysqlConnection::record),
/// which the pool then sees without any I/O.
///
/// Counts as a connection error: what the driver calls a connectivity error
/// (I/O, protocol and TLS errors, and driver errors such as a connect
/// timeout, except mistakes in a statement's parameters), and server errors that end the session: 2006 "server has gone
/// away", 2013 "lost connection", 1053 server shutdown, 1927 connection
/// killed, 4031 interaction timeout, the `ER_NET_*` errors, and 1040 too many
/// connections. Ordinary SQL errors (syntax, duplicate keys, deadlocks, lock
/// wait timeouts, 1317 query interrupted by `KILL QUERY`) are not.
///
/// ```no_run
/// use mysql::prelude::Queryable;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (builder, manager) = pool_mysql::builder_from_url("mysql://app@localhost/app")?;
/// # let pool = builder.build(manager)?;
/// let mut conn = pool.get()?;
/// if let Err(e) = conn.query_drop("UPDATE counters SET n = n + 1") {
///     // `MysqlConnection`'s own Queryable methods record connection errors
///     // already; this is for errors seen elsewhere.
///     if pool_mysql::is_connection_error(&e) {
///         conn.mark_broken();
///     }
///     return Err(e.into());
/// }
/// # Ok(()) }
/// ```
pub fn is_connection_error(err: &mysql::Error) -> bool {
    use mysql::DriverError as D;
    match err {
        mysql::Error::MySqlError(e) => FATAL_CODES.contains(&e.code),
        // Mistakes in a statement's parameters are reported before anything
        // is sent: the connection is fine.
        mysql::Error::DriverError(
            D::MismatchedStmtParams(..)
            | D::Params(_)
            | D::MixedParams
            | D::BulkExecute(_)
            | D::ReadOnlyTransNotSupported,
        ) => false,
        other => other.is_connectivity_error(),
    }
}

/// True when `err`, an application's error from work on a pooled
/// connection, says that connection is broken: a `mysql::Error` found in
/// it or along its [`source`](std::error::Error::source) chain is judged by
/// [`is_connection_error`], this crate's [`Error`] by
/// [`Error::is_connection_error`]. What
/// [`MysqlManager`](crate::MysqlManager)'s
/// [`is_broken_error`](pool_core::ManageConnection::is_broken_error) says,
/// for [`Pool::run_idempotent`](pool_core::Pool::run_idempotent).
///
/// ```
/// use std::time::Duration;
///
/// let timeout = pool_mysql::Error::Timeout {
///     operation: "resetting the session",
///     after: Duration::from_secs(5),
///     target: "db:1".into(),
/// };
/// assert!(pool_mysql::is_broken_error(&timeout));
/// assert!(!pool_mysql::is_broken_error(&std::fmt::Error));
/// ```
pub fn is_broken_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<mysql::Error>() {
            return is_connection_error(e);
        }
        if let Some(e) = e.downcast_ref::<Error>() {
            return e.is_connection_error();
        }
        cause = e.source();
    }
    false
}
