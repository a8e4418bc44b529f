//! A manager whose logins hang while its "server" is frozen and complete
//! when it thaws (as a `SIGSTOP`ped PostgreSQL does), with a
//! `connect_limit` of 100 ms: for the tests of connects the pool gives up
//! on (`late_connects.rs`, `parallel_late_connects.rs`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use pool_core::ManageConnection;

/// A server whose logins hang while it is frozen and complete when it
/// thaws (as a `SIGSTOP`ped PostgreSQL does), counting open sessions.
#[derive(Default)]
pub struct Sessions {
    pub frozen: AtomicBool,
    pub open: AtomicUsize,
    pub peak: AtomicUsize,
    pub connects: AtomicUsize,
    /// How long each login takes besides the freeze, in milliseconds.
    pub login_ms: AtomicU64,
}

pub struct Session(Arc<Sessions>);

impl Drop for Session {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct LateLogins(pub Arc<Sessions>);

impl ManageConnection for LateLogins {
    type Connection = Session;
    type Error = std::io::Error;

    fn connect(&self) -> Result<Session, std::io::Error> {
        self.0.connects.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(
            self.0.login_ms.load(Ordering::SeqCst),
        ));
        while self.0.frozen.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(2));
        }
        let open = self.0.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.peak.fetch_max(open, Ordering::SeqCst);
        Ok(Session(self.0.clone()))
    }

    fn is_valid(&self, _: &mut Session, _: Duration) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn has_broken(&self, _: &mut Session) -> bool {
        false
    }

    fn connect_limit(&self) -> Option<Duration> {
        Some(Duration::from_millis(100))
    }
}
