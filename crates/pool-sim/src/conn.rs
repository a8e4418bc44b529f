//! One simulated connection.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::{ConnShared, SimDb};
use crate::SimError;

/// A connection to a [`SimDb`].
///
/// Each connection has a unique [`id`](Self::id) and is registered with its
/// database while it lives: dropping it closes it (exactly once; a second
/// close of the same id is counted as `closed_twice`). Every round trip marks
/// the connection busy for its duration; a round trip that finds it already
/// busy, which only a pool lending one connection to two holders can cause,
/// is counted as `concurrent_use`.
///
/// Sessions have state a pool must clean between borrowers: an open
/// transaction and session variables. [`reset_session`](Self::reset_session)
/// (what [`SimManager`](crate::SimManager)'s `reset` calls) clears both.
///
/// ```
/// use pool_sim::SimDb;
///
/// let db = SimDb::new();
/// let mut conn = db.connect().unwrap();
/// conn.begin().unwrap();
/// conn.query("UPDATE accounts SET balance = 0").unwrap();
/// conn.set_var("application_name", "billing").unwrap();
/// conn.commit().unwrap();
/// assert_eq!(conn.var("application_name"), Some("billing"));
///
/// conn.reset_session().unwrap();
/// assert!(conn.is_session_clean());
/// ```
pub struct SimConn {
    db: SimDb,
    shared: Arc<ConnShared>,
    in_transaction: bool,
    vars: HashMap<String, String>,
    round_trips: u64,
    query_timeout: Duration,
}

impl fmt::Debug for SimConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConn")
            .field("id", &self.shared.id)
            .field("broken", &self.is_broken())
            .field("in_transaction", &self.in_transaction)
            .field("vars", &self.vars)
            .finish()
    }
}

/// Marks a connection busy for the duration of one round trip.
struct Busy<'a> {
    shared: &'a ConnShared,
    owner: bool,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if self.owner {
            self.shared.busy.store(false, Ordering::Release);
        }
    }
}

impl SimConn {
    pub(crate) fn new(db: SimDb, shared: Arc<ConnShared>, query_timeout: Duration) -> Self {
        SimConn {
            db,
            shared,
            in_transaction: false,
            vars: HashMap::new(),
            round_trips: 0,
            query_timeout,
        }
    }

    /// The connection's id, unique within its database (starting at 1).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The database this connection belongs to.
    pub fn db(&self) -> &SimDb {
        &self.db
    }

    /// Whether the connection is broken. A flag check, no I/O.
    pub fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::Acquire)
    }

    /// Breaks this connection, as a fatal protocol error would.
    ///
    /// ```
    /// let db = pool_sim::SimDb::new();
    /// let mut conn = db.connect().unwrap();
    /// conn.break_connection();
    /// assert!(conn.query("SELECT 1").is_err());
    /// assert_eq!(db.stats().broken, 1);
    /// ```
    pub fn break_connection(&self) {
        self.db.mark_broken(&self.shared);
    }

    /// How long a round trip waits in black-hole mode before it fails with
    /// [`SimError::Timeout`] (the driver's socket read timeout).
    pub fn query_timeout(&self) -> Duration {
        self.query_timeout
    }

    /// Changes this connection's read timeout (see [`query_timeout`](Self::query_timeout)).
    pub fn set_query_timeout(&mut self, timeout: Duration) {
        self.query_timeout = timeout;
    }

    /// The number of round trips this connection made.
    pub fn round_trips(&self) -> u64 {
        self.round_trips
    }

    /// Runs a statement: one round trip.
    ///
    /// A few statements are understood (case-insensitive): `BEGIN` / `START
    /// TRANSACTION`, `COMMIT`, `ROLLBACK`, `SET name = value` (or `TO`), and
    /// `DISCARD ALL` / `RESET ALL`; they return 0. Anything else is a query
    /// returning one row: 1.
    ///
    /// Takes the round-trip latency (query latency plus any extra latency);
    /// fails with [`SimError::Broken`] on a broken connection (also when it
    /// breaks during the query) and with [`SimError::Timeout`] in black-hole
    /// mode after [`query_timeout`](Self::query_timeout).
    ///
    /// ```
    /// let db = pool_sim::SimDb::new();
    /// let mut conn = db.connect().unwrap();
    /// assert_eq!(conn.query("SELECT * FROM t").unwrap(), 1);
    /// assert_eq!(conn.query("set search_path = app").unwrap(), 0);
    /// assert_eq!(conn.var("search_path"), Some("app"));
    /// ```
    pub fn query(&mut self, sql_like: &str) -> Result<u64, SimError> {
        let statement = Statement::parse(sql_like);
        if let Statement::Invalid(message) = statement {
            return Err(SimError::InvalidState { message });
        }
        self.round_trip(self.query_timeout)?;
        match statement {
            Statement::Begin => self.apply_begin().map(|()| 0),
            Statement::Commit | Statement::Rollback => self.apply_end().map(|()| 0),
            Statement::Set(name, value) => {
                self.vars.insert(name, value);
                Ok(0)
            }
            Statement::Discard => {
                self.clear_session();
                Ok(0)
            }
            Statement::Other => Ok(1),
            Statement::Invalid(message) => Err(SimError::InvalidState { message }),
        }
    }

    /// Starts a transaction (one round trip). Fails with
    /// [`SimError::InvalidState`] if one is already open.
    pub fn begin(&mut self) -> Result<(), SimError> {
        self.query("BEGIN").map(drop)
    }

    /// Commits the open transaction (one round trip). Fails with
    /// [`SimError::InvalidState`] if none is open.
    pub fn commit(&mut self) -> Result<(), SimError> {
        self.query("COMMIT").map(drop)
    }

    /// Rolls back the open transaction (one round trip). Fails with
    /// [`SimError::InvalidState`] if none is open.
    pub fn rollback(&mut self) -> Result<(), SimError> {
        self.query("ROLLBACK").map(drop)
    }

    /// Whether a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Sets a session variable (one round trip, like `SET name = value`).
    pub fn set_var(&mut self, name: &str, value: &str) -> Result<(), SimError> {
        self.round_trip(self.query_timeout)?;
        self.vars.insert(name.to_owned(), value.to_owned());
        Ok(())
    }

    /// A session variable's value (kept on the client: no round trip).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Whether the session has no open transaction and no variables set: what
    /// a borrower must always find.
    pub fn is_session_clean(&self) -> bool {
        !self.in_transaction && self.vars.is_empty()
    }

    /// Checks the connection with one round trip that must finish within
    /// `timeout` (what [`SimManager`](crate::SimManager)'s `is_valid` calls).
    ///
    /// Fails at once on a broken connection; fails after `timeout`, breaking
    /// the connection, in black-hole mode or when the round-trip latency
    /// exceeds `timeout`. Counts a validation.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let db = pool_sim::SimDb::new();
    /// let mut conn = db.connect().unwrap();
    /// conn.ping(Duration::from_secs(1)).unwrap();
    /// assert_eq!(db.stats().validations, 1);
    /// ```
    pub fn ping(&mut self, timeout: Duration) -> Result<(), SimError> {
        self.db.count(|c| &c.validations);
        let result = if self.db.take_validation_failure() {
            Err(SimError::InjectedFailure)
        } else {
            self.round_trip(timeout)
        };
        if result.is_err() {
            self.db.count(|c| &c.validation_failures);
        }
        result
    }

    /// Cleans the session for the next borrower: rolls back an open
    /// transaction and forgets session variables (what
    /// [`SimManager`](crate::SimManager)'s `reset` calls). Counts a reset.
    ///
    /// A clean session costs nothing (the driver tracks the state); a dirty one
    /// costs one round trip (`ROLLBACK; DISCARD ALL` in one message). Fails on
    /// a broken connection or an injected failure (see
    /// [`SimDb::fail_next_resets`]).
    pub fn reset_session(&mut self) -> Result<(), SimError> {
        self.db.count(|c| &c.resets);
        if self.db.take_reset_failure() {
            return Err(SimError::InjectedFailure);
        }
        if self.is_broken() {
            return Err(SimError::Broken { id: self.id() });
        }
        if !self.is_session_clean() {
            self.round_trip(self.query_timeout)?;
            self.clear_session();
        }
        Ok(())
    }

    /// Closes the connection gracefully (sends a terminate message; no wait)
    /// and drops it. Dropping without `close` closes it too, as a dropped
    /// socket would; both count as one close.
    ///
    /// ```
    /// let db = pool_sim::SimDb::new();
    /// db.connect().unwrap().close();
    /// let stats = db.stats();
    /// assert_eq!((stats.closed, stats.graceful_closes), (1, 1));
    /// ```
    pub fn close(self) {
        self.db.count(|c| &c.graceful_closes);
    }

    fn clear_session(&mut self) {
        self.in_transaction = false;
        self.vars.clear();
    }

    fn apply_begin(&mut self) -> Result<(), SimError> {
        if self.in_transaction {
            return Err(SimError::InvalidState {
                message: "there is already a transaction in progress",
            });
        }
        self.in_transaction = true;
        Ok(())
    }

    fn apply_end(&mut self) -> Result<(), SimError> {
        if !self.in_transaction {
            return Err(SimError::InvalidState {
                message: "there is no transaction in progress",
            });
        }
        self.in_transaction = false;
        Ok(())
    }

    fn enter(&self) -> Busy<'_> {
        let was_busy = self.shared.busy.swap(true, Ordering::AcqRel);
        if was_busy {
            self.db.count(|c| &c.concurrent_use);
        }
        Busy {
            shared: &self.shared,
            owner: !was_busy,
        }
    }

    /// One round trip with a read timeout.
    fn round_trip(&mut self, timeout: Duration) -> Result<(), SimError> {
        self.round_trips += 1;
        self.db.count(|c| &c.queries);
        let result = self.round_trip_inner(timeout);
        if result.is_err() {
            self.db.count(|c| &c.query_errors);
        }
        result
    }

    fn round_trip_inner(&self, timeout: Duration) -> Result<(), SimError> {
        let _busy = self.enter();
        let broken = || SimError::Broken { id: self.shared.id };
        if self.shared.killed.load(Ordering::Acquire) {
            self.db.mark_broken(&self.shared);
        }
        if self.is_broken() {
            return Err(broken());
        }
        let start = Instant::now();
        if self.db.inner.black_hole.is_on() && !self.db.inner.black_hole.wait(timeout) {
            self.db.mark_broken(&self.shared);
            return Err(SimError::Timeout { timeout });
        }
        let latency = self.db.round_trip_latency();
        let left = timeout.saturating_sub(start.elapsed());
        if latency > left {
            self.db.wait(left);
            self.db.mark_broken(&self.shared);
            return Err(SimError::Timeout { timeout });
        }
        self.db.wait(latency);
        if self.is_broken() {
            return Err(broken());
        }
        Ok(())
    }
}

impl Drop for SimConn {
    fn drop(&mut self) {
        self.db.unregister(self.shared.id);
    }
}

/// The statements [`SimConn::query`] understands.
enum Statement {
    Begin,
    Commit,
    Rollback,
    Set(String, String),
    Discard,
    Other,
    Invalid(&'static str),
}

impl Statement {
    fn parse(sql: &str) -> Statement {
        let sql = sql.trim().trim_end_matches(';').trim();
        let upper = sql.to_ascii_uppercase();
        let words: Vec<&str> = upper.split_whitespace().collect();
        match words.as_slice() {
            ["BEGIN", ..] | ["START", "TRANSACTION", ..] => Statement::Begin,
            ["COMMIT", ..] | ["END", ..] => Statement::Commit,
            ["ROLLBACK", ..] | ["ABORT", ..] => Statement::Rollback,
            ["DISCARD", "ALL"] | ["RESET", "ALL"] => Statement::Discard,
            ["SET", ..] => {
                let rest = sql[3..].trim();
                let (name, value) = match rest.split_once('=') {
                    Some((n, v)) => (n, v),
                    None => match rest.split_once(char::is_whitespace) {
                        Some((n, v)) if v.trim_start().to_ascii_uppercase().starts_with("TO") => {
                            (n, &v.trim_start()[2..])
                        }
                        _ => {
                            return Statement::Invalid("syntax error in SET: expected name = value")
                        }
                    },
                };
                let name = name.trim();
                let value = value.trim().trim_matches('\'');
                if name.is_empty() {
                    return Statement::Invalid("syntax error in SET: expected name = value");
                }
                Statement::Set(name.to_owned(), value.to_owned())
            }
            _ => Statement::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    /// What a pool bug (a seat read out twice) would produce: two values for
    /// one connection. Both detectors must fire.
    #[test]
    fn a_duplicated_connection_is_detected() {
        let db = SimDb::builder()
            .connect_latency(Duration::ZERO)
            .query_latency(Duration::from_millis(30))
            .build();
        let mut a = db.connect().unwrap();
        let mut b = SimConn::new(db.clone(), a.shared.clone(), a.query_timeout);
        let barrier = Arc::new(Barrier::new(2));
        let other = {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                b.query("SELECT 1").unwrap();
                b
            })
        };
        barrier.wait();
        a.query("SELECT 1").unwrap();
        let b = other.join().unwrap();
        assert_eq!(db.stats().concurrent_use, 1);

        drop(a);
        drop(b);
        let stats = db.stats();
        assert_eq!((stats.closed, stats.closed_twice), (1, 1));
        assert_eq!(stats.violations(), 2);
        let err = db.verify_all_closed().unwrap_err();
        assert!(err.contains("closed twice"), "{err}");
        assert!(err.contains("concurrent use"), "{err}");
    }

    #[test]
    fn sequential_use_is_not_concurrent() {
        let db = SimDb::builder().connect_latency(Duration::ZERO).build();
        let mut conn = db.connect().unwrap();
        for _ in 0..10 {
            conn.query("SELECT 1").unwrap();
            conn.ping(Duration::from_secs(1)).unwrap();
        }
        assert_eq!(db.stats().concurrent_use, 0);
        assert!(format!("{conn:?}").contains("SimConn"));
    }
}
