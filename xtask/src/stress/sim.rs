//! The simulated database (crate pool-sim) as a stress [`Backend`], with its
//! chaos: restarts, broken connections, latency, failing connects, black holes.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use pool_sim::{SimConn, SimDb, SimError, SimManager};

use super::backend::{Backend, OpError};

/// The simulated database.
pub(super) struct SimBackend {
    pub(super) db: SimDb,
}

impl SimBackend {
    pub(super) fn new(seed: u64, chaos: bool) -> Self {
        let db = SimDb::builder()
            .seed(seed)
            .connect_jitter(Duration::from_millis(1))
            // A black-holed query must give up before the get timeout.
            .query_timeout(Duration::from_millis(if chaos { 300 } else { 5000 }))
            .connect_timeout(Duration::from_millis(500))
            .build();
        SimBackend { db }
    }
}

pub(super) fn sim_op<T>(r: std::result::Result<T, SimError>) -> std::result::Result<(), OpError> {
    r.map(drop).map_err(|e| OpError {
        fatal: e.is_fatal(),
        message: e.to_string(),
    })
}

impl Backend for SimBackend {
    type Manager = SimManager;

    fn describe(&self) -> String {
        format!(
            "simulated database (connect {:?} + up to 1ms jitter, query {:?}, server limit {})",
            self.db.connect_latency(),
            self.db.query_latency(),
            self.db.max_connections()
        )
    }
    fn manager(&self) -> SimManager {
        self.db.manager()
    }
    fn conn_id(conn: &SimConn) -> u64 {
        conn.id()
    }
    fn query(conn: &mut SimConn) -> std::result::Result<(), OpError> {
        sim_op(conn.query("SELECT 1"))
    }
    fn begin(conn: &mut SimConn) -> std::result::Result<(), OpError> {
        sim_op(conn.begin())
    }
    fn end(conn: &mut SimConn, commit: bool) -> std::result::Result<(), OpError> {
        sim_op(if commit {
            conn.commit()
        } else {
            conn.rollback()
        })
    }
    fn set_owner(conn: &mut SimConn, owner: &str) -> std::result::Result<(), OpError> {
        sim_op(conn.set_var("stress.owner", owner))
    }
    fn session_state(conn: &mut SimConn) -> std::result::Result<Option<String>, OpError> {
        Ok((!conn.is_session_clean()).then(|| {
            format!(
                "in transaction: {}, stress.owner = {:?}",
                conn.in_transaction(),
                conn.var("stress.owner")
            )
        }))
    }
    fn server_open(&self) -> Option<usize> {
        Some(self.db.open_count())
    }
    fn server_peak(&self) -> Option<usize> {
        Some(self.db.stats().peak_open)
    }
    fn chaos(&self, rng: &mut fastrand::Rng, _stop: &AtomicBool) -> Option<&'static str> {
        let db = &self.db;
        Some(match rng.u32(0..6) {
            0 => {
                db.restart(Duration::from_millis(rng.u64(100..600)));
                "restart"
            }
            1 => {
                db.break_all();
                "break all"
            }
            2 => {
                db.break_fraction(0.25 + rng.f64() * 0.25);
                "break some"
            }
            3 => {
                db.set_extra_latency(Duration::from_millis(rng.u64(2..10)));
                "slow down"
            }
            4 => {
                db.fail_next_connects(rng.u32(1..5));
                "fail connects"
            }
            _ => {
                db.set_black_hole(true);
                "black hole"
            }
        })
    }
    fn heal(&self) {
        self.db.heal();
    }
    fn audit_closed(&self) -> std::result::Result<String, String> {
        self.db.verify_all_closed().map(|()| "ok".to_owned())
    }
    fn wait_all_closed(&self, timeout: Duration) -> bool {
        self.db.wait_until(timeout, |s| s.open == 0)
    }
    fn counters(&self) -> BTreeMap<&'static str, u64> {
        let s = self.db.stats();
        BTreeMap::from([
            ("opened", s.opened),
            ("closed", s.closed),
            ("closed_twice", s.closed_twice),
            ("concurrent_use", s.concurrent_use),
            ("connect_attempts", s.connect_attempts),
            ("connect_failures", s.connect_failures),
            ("queries", s.queries),
            ("query_errors", s.query_errors),
            ("resets", s.resets),
            ("validations", s.validations),
            ("validation_failures", s.validation_failures),
            ("broken", s.broken),
            ("peak_open", s.peak_open as u64),
        ])
    }
}
