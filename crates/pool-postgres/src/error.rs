//! The manager's error type and the connection-error classifier.

use std::fmt;
use std::time::Duration;

use postgres::error::SqlState;

/// An error from [`PostgresManager`](crate::PostgresManager): a driver error,
/// or a time limit the manager enforces itself.
///
/// Its message says what happened and what to do; for a driver error the
/// `postgres::Error` is its [`source`](std::error::Error::source) (and that
/// error's own cause, the server's message or the I/O error, the next one),
/// never repeated in the message. Print the whole chain (`anyhow`'s `{:#}`,
/// or [`pool_core::ErrorChain`]) to see it all, each part once:
/// "the server rejected the login (SQLSTATE 28P01); check the user name,
/// password and database name: db error: FATAL: password authentication
/// failed for user \"app\"".
///
/// The pool keeps the most recent connect error as the source of its
/// [`Error::Timeout`](pool_core::Error::Timeout) and
/// [`Error::Connect`](pool_core::Error::Connect), so a timed-out borrower's
/// chain names the real cause. No message contains a password.
///
/// ```
/// use pool_postgres::Error;
/// use std::time::Duration;
///
/// let err = Error::Timeout {
///     operation: "connecting",
///     after: Duration::from_secs(5),
///     target: "db.internal:5432".into(),
/// };
/// assert!(err.is_connection_error());
/// assert_eq!(
///     err.to_string(),
///     "timed out after 5s connecting to db.internal:5432: no answer from the server \
///      (is the address black-holed by a firewall, or the server hung?)"
/// );
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An error reported by the `postgres` driver or the server.
    Postgres(postgres::Error),
    /// A connect, validation or reset did not finish within its time limit.
    Timeout {
        /// What was being done (`"connecting"`, `"resetting the session"`).
        operation: &'static str,
        /// The time limit that passed.
        after: Duration,
        /// The server address(es), `host:port` (never the password).
        target: String,
    },
    /// A connect or reset could not run: its worker thread panicked or could
    /// not be started.
    Worker {
        /// What was being done.
        operation: &'static str,
    },
    /// The [credentials provider](crate::PostgresManager::credentials)
    /// failed; nothing was sent to the server.
    Credentials(pool_core::CredentialsFailed),
}

impl Error {
    /// True when the error means the connection is unusable; see
    /// [`is_connection_error`].
    pub fn is_connection_error(&self) -> bool {
        match self {
            Error::Postgres(e) => is_connection_error(e),
            Error::Timeout { .. } | Error::Worker { .. } => true,
            Error::Credentials(_) => false,
        }
    }

    /// What this error, returned by a connect, says about the database, for
    /// the pool's fail-fast rule: see [`pool_core::ConnectFailure`].
    ///
    /// Login refused for good (wrong password, unknown role or database:
    /// SQLSTATE class 28, 3D000) is `Rejected`; a server at its connection
    /// limit, short of resources, starting up or shutting down (53xxx,
    /// 57P01–57P03) is `Busy`; a refused, reset or timed-out TCP
    /// connection is `Unreachable`.
    ///
    /// ```
    /// use pool_core::ConnectFailure;
    /// use std::time::Duration;
    ///
    /// let timeout = pool_postgres::Error::Timeout {
    ///     operation: "connecting",
    ///     after: Duration::from_secs(5),
    ///     target: "db:5432".into(),
    /// };
    /// assert_eq!(timeout.connect_failure(), ConnectFailure::Unreachable);
    /// ```
    pub fn connect_failure(&self) -> pool_core::ConnectFailure {
        use pool_core::ConnectFailure;
        match self {
            Error::Timeout { .. } => ConnectFailure::Unreachable,
            Error::Worker { .. } | Error::Credentials(_) => ConnectFailure::Other,
            Error::Postgres(e) => match e.as_db_error() {
                Some(db) => {
                    let code = db.code();
                    if code.code().starts_with("28") || *code == SqlState::INVALID_CATALOG_NAME {
                        ConnectFailure::Rejected
                    } else if code.code().starts_with("53")
                        || *code == SqlState::ADMIN_SHUTDOWN
                        || *code == SqlState::CRASH_SHUTDOWN
                        || *code == SqlState::CANNOT_CONNECT_NOW
                    {
                        ConnectFailure::Busy
                    } else {
                        ConnectFailure::Other
                    }
                }
                // No answer from a server: the socket failed, closed, or
                // the driver's own connect timeout passed.
                None if is_connection_error(e) => ConnectFailure::Unreachable,
                None => ConnectFailure::Other,
            },
        }
    }

    /// The driver error, if this is one.
    pub fn as_postgres(&self) -> Option<&postgres::Error> {
        match self {
            Error::Postgres(e) => Some(e),
            _ => None,
        }
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::Postgres(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // What the driver's error means for the user; the driver's own
            // message and its cause are the source chain, not repeated here.
            Error::Postgres(e) => {
                let code = e.as_db_error().map(|db| db.code().code());
                let what = match (self.connect_failure(), e.as_db_error()) {
                    (pool_core::ConnectFailure::Rejected, _) => {
                        "the server rejected the login; check the user name, password and \
                         database name"
                    }
                    (pool_core::ConnectFailure::Busy, _) => {
                        "the server is at its connection limit, short of resources, starting \
                         or shutting down; retry later or lower max_size"
                    }
                    (pool_core::ConnectFailure::Unreachable, _) if is_tls(e) => {
                        "the TLS handshake failed; check the server's certificate, the CA the \
                         connector trusts, and sslmode"
                    }
                    (pool_core::ConnectFailure::Unreachable, _) => {
                        "the connection to the server failed; check that it is running and \
                         that the host and port are right"
                    }
                    (_, Some(_)) => "the server reported an error",
                    (_, None) => "the PostgreSQL driver reported an error",
                };
                match code {
                    Some(code) => {
                        // The SQLSTATE goes before the advice, after the verdict.
                        let (verdict, advice) = what.split_once("; ").unwrap_or((what, ""));
                        write!(f, "{verdict} (SQLSTATE {code})")?;
                        if !advice.is_empty() {
                            write!(f, "; {advice}")?;
                        }
                        Ok(())
                    }
                    None => f.write_str(what),
                }
            }
            Error::Timeout {
                operation,
                after,
                target,
            } => write!(
                f,
                "timed out after {after:?} {operation} to {target}: no answer from the server \
                 (is the address black-holed by a firewall, or the server hung?)"
            ),
            Error::Worker { operation } => {
                write!(
                    f,
                    "{operation} failed: its worker thread panicked or could not start"
                )
            }
            Error::Credentials(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// True when the driver reports a failed TLS handshake (its kind is not
/// public; its Debug output names it).
fn is_tls(e: &postgres::Error) -> bool {
    format!("{e:?}").starts_with("Error { kind: Tls,")
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Postgres(e) => Some(e),
            // Transparent: its message is this one's, its cause this one's.
            Error::Credentials(e) => e.source(),
            _ => None,
        }
    }
}

/// True when `err` means the connection it came from is unusable, so a
/// borrower should call
/// [`PooledConnection::mark_broken`](pool_core::PooledConnection::mark_broken)
/// (the pool then closes it instead of lending it again).
///
/// Counts as a connection error: the connection is closed; an I/O error
/// anywhere in the error's source chain; a protocol desynchronisation or a
/// client-side timeout; SQLSTATE class 08 (connection exception);
/// `57P01` admin shutdown, `57P02` crash shutdown, `57P03` cannot connect now;
/// and any error of severity `FATAL` or `PANIC` (the server ends the session
/// after sending one). Ordinary SQL errors (syntax, constraint violations,
/// serialization failures, statement timeouts) are not.
///
/// ```no_run
/// use pool_postgres::{is_connection_error, PostgresManager};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let pool = pool_core::Pool::builder().build(PostgresManager::from_url("postgres://localhost/db")?.0)?;
/// let mut conn = pool.get()?;
/// if let Err(e) = conn.execute("UPDATE counters SET n = n + 1", &[]) {
///     if is_connection_error(&e) {
///         conn.mark_broken();
///     }
///     return Err(e.into());
/// }
/// # Ok(()) }
/// ```
pub fn is_connection_error(err: &postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        return code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || matches!(db.severity(), "FATAL" | "PANIC");
    }
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    // The driver does not expose its error kinds; its Debug output names
    // them ("Error { kind: Timeout, .. }"). These kinds leave the protocol
    // stream in an unknown state.
    let debug = format!("{err:?}");
    [
        "Timeout",
        "UnexpectedMessage",
        "Parse",
        "Io",
        "Tls",
        "Closed",
    ]
    .iter()
    .any(|kind| {
        debug
            .strip_prefix("Error { kind: ")
            .and_then(|rest| rest.strip_prefix(kind))
            .is_some_and(|rest| rest.starts_with(','))
    })
}

/// True when `err`, an application's error from work on a pooled
/// connection, says that connection is broken: a `postgres::Error` found in
/// it or along its [`source`](std::error::Error::source) chain is judged by
/// [`is_connection_error`], this crate's [`Error`] by
/// [`Error::is_connection_error`]. What
/// [`PostgresManager`](crate::PostgresManager)'s
/// [`is_broken_error`](pool_core::ManageConnection::is_broken_error) says,
/// for [`Pool::run_idempotent`](pool_core::Pool::run_idempotent).
///
/// ```
/// use std::time::Duration;
///
/// let timeout = pool_postgres::Error::Timeout {
///     operation: "resetting the session",
///     after: Duration::from_secs(5),
///     target: "db:1".into(),
/// };
/// assert!(pool_postgres::is_broken_error(&timeout));
/// assert!(!pool_postgres::is_broken_error(&std::fmt::Error));
/// ```
pub fn is_broken_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<postgres::Error>() {
            return is_connection_error(e);
        }
        if let Some(e) = e.downcast_ref::<Error>() {
            return e.is_connection_error();
        }
        cause = e.source();
    }
    false
}
