//! The pool's view of the simulated database.

use std::time::Duration;

use pool_core::ManageConnection;

use crate::{SimConn, SimDb, SimError};

/// A [`ManageConnection`] that opens [`SimConn`]s to a [`SimDb`].
///
/// - `connect` is [`SimDb::connect`] (connect latency, limit, injected failures);
/// - `is_valid` is [`SimConn::ping`]: one round trip that honours its timeout,
///   also in black-hole mode;
/// - `has_broken` is [`SimConn::is_broken`], a flag check;
/// - `reset` is [`SimConn::reset_session`]: rolls back and clears session
///   variables, counted in [`SimStats::resets`](crate::SimStats::resets);
/// - `is_broken_error` finds a [`SimError`] in the error or its sources and
///   asks [`SimError::is_fatal`].
///
/// ```
/// use pool_sim::SimDb;
///
/// let db = SimDb::new();
/// let pool = pool_core::Pool::builder()
///     .max_size(4)
///     .min_idle(Some(1))
///     .build(db.manager())
///     .unwrap();
/// {
///     let mut conn = pool.get().unwrap();
///     conn.set_var("role", "admin").unwrap();
/// }
/// // The session was reset before the connection went back.
/// assert!(pool.get().unwrap().is_session_clean());
/// pool.close();
/// drop(pool);
/// assert!(db.wait_until(std::time::Duration::from_secs(5), |s| s.open == 0));
/// ```
#[derive(Debug, Clone)]
pub struct SimManager {
    db: SimDb,
}

impl SimManager {
    /// A manager for `db` (the same as [`SimDb::manager`]).
    pub fn new(db: SimDb) -> Self {
        SimManager { db }
    }

    /// The database this manager connects to.
    pub fn db(&self) -> &SimDb {
        &self.db
    }
}

impl ManageConnection for SimManager {
    type Connection = SimConn;
    type Error = SimError;

    fn connect(&self) -> Result<SimConn, SimError> {
        self.db.connect()
    }

    fn is_valid(&self, conn: &mut SimConn, timeout: Duration) -> Result<(), SimError> {
        conn.ping(timeout)
    }

    fn has_broken(&self, conn: &mut SimConn) -> bool {
        conn.is_broken()
    }

    fn reset(&self, conn: &mut SimConn) -> Result<(), SimError> {
        conn.reset_session()
    }

    fn is_broken_error(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(e) = e.downcast_ref::<SimError>() {
                return e.is_fatal();
            }
            cause = e.source();
        }
        false
    }
}
