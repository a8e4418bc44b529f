//! A stub database server for the ports of r2d2's and HikariCP's tests
//! (`peer_r2d2.rs`, `peer_hikari.rs`): in-process and deterministic, with the
//! switches those tests need (refuse connects, limit how many may succeed,
//! block connects behind a gate, kill existing sessions, hang validation,
//! close slowly, drop sessions left idle too long) and an audit of every
//! session it opened and closed.
//!
//! The stub honours the contract of `ManageConnection`: `is_valid` gives up
//! after the timeout it is given, as a socket read timeout would, so any
//! overrun of a pool timeout is the pool's own.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The server's switches and its audit.
pub struct Server {
    /// Sessions opened, closed, and closed a second time (a pool bug).
    pub opened: AtomicUsize,
    pub closed: AtomicUsize,
    pub closed_twice: AtomicUsize,
    /// Every call of `connect`, successful or not.
    pub connect_attempts: AtomicUsize,
    /// The most sessions open at once.
    pub peak_open: AtomicUsize,
    open: Mutex<HashSet<u64>>,
    next_id: AtomicU64,
    /// Connects fail with "connection refused" while set.
    pub refuse: AtomicBool,
    /// How many more connects may succeed; negative means no limit.
    pub connect_budget: AtomicI64,
    /// Connects panic while set.
    pub panic_connect: AtomicBool,
    /// Each connect takes this long.
    pub connect_delay_ms: AtomicU64,
    gate_closed: Mutex<bool>,
    gate: Condvar,
    /// `is_valid` fails for every session while set.
    pub invalid: AtomicBool,
    /// Sessions with an id up to this were killed on the server side:
    /// `is_valid` fails for them (`has_broken` cannot know).
    pub killed_up_to: AtomicU64,
    /// `is_valid` hangs this long (bounded by the timeout it is given, then
    /// fails as a read timeout); 0 means it answers at once.
    pub validation_hang_ms: AtomicU64,
    pub validations: AtomicUsize,
    /// `has_broken` says yes while set.
    pub broken: AtomicBool,
    /// Closing a session takes this long (a goodbye to a frozen server).
    pub close_delay_ms: AtomicU64,
    /// The server drops sessions idle for longer than this (MySQL's
    /// `wait_timeout`); 0 means never. A successful `is_valid` or a borrow
    /// (`Session::touch`) counts as activity.
    pub wait_timeout_ms: AtomicU64,
}

impl Server {
    pub fn new() -> Arc<Server> {
        Arc::new(Server {
            opened: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            closed_twice: AtomicUsize::new(0),
            connect_attempts: AtomicUsize::new(0),
            peak_open: AtomicUsize::new(0),
            open: Mutex::new(HashSet::new()),
            next_id: AtomicU64::new(0),
            refuse: AtomicBool::new(false),
            connect_budget: AtomicI64::new(-1),
            panic_connect: AtomicBool::new(false),
            connect_delay_ms: AtomicU64::new(0),
            gate_closed: Mutex::new(false),
            gate: Condvar::new(),
            invalid: AtomicBool::new(false),
            killed_up_to: AtomicU64::new(0),
            validation_hang_ms: AtomicU64::new(0),
            validations: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
            close_delay_ms: AtomicU64::new(0),
            wait_timeout_ms: AtomicU64::new(0),
        })
    }

    /// A manager for this server.
    pub fn manager(self: &Arc<Self>) -> Stub {
        Stub(self.clone())
    }

    /// Sessions open on the server now.
    pub fn open_now(&self) -> usize {
        self.open.lock().unwrap().len()
    }

    /// Whether session `id` is still open on the server.
    pub fn is_open(&self, id: u64) -> bool {
        self.open.lock().unwrap().contains(&id)
    }

    /// Kills every session open now, as `pg_terminate_backend` would.
    pub fn kill_all(&self) {
        self.killed_up_to
            .store(self.next_id.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Makes connects block until `open_gate`.
    pub fn close_gate(&self) {
        *self.gate_closed.lock().unwrap() = true;
    }

    pub fn open_gate(&self) {
        *self.gate_closed.lock().unwrap() = false;
        self.gate.notify_all();
    }
}

/// One session.
pub struct Session {
    pub id: u64,
    server: Arc<Server>,
    last_active: Mutex<Instant>,
    in_use: AtomicBool,
}

impl Session {
    /// Marks the session used now (a query), and checks that no two holders
    /// use it at once.
    pub fn touch(&self) {
        assert!(
            !self.in_use.swap(true, Ordering::SeqCst),
            "session {} lent to two holders at once",
            self.id
        );
        *self.last_active.lock().unwrap() = Instant::now();
        std::thread::yield_now();
        self.in_use.store(false, Ordering::SeqCst);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.server.open.lock().unwrap().remove(&self.id) {
            self.server.closed.fetch_add(1, Ordering::SeqCst);
        } else {
            self.server.closed_twice.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The manager: a client of one [`Server`].
#[derive(Clone)]
pub struct Stub(pub Arc<Server>);

impl pool_core::ManageConnection for Stub {
    type Connection = Session;
    type Error = std::io::Error;

    fn connect(&self) -> Result<Session, std::io::Error> {
        let s = &self.0;
        s.connect_attempts.fetch_add(1, Ordering::SeqCst);
        {
            let mut closed = s.gate_closed.lock().unwrap();
            while *closed {
                closed = s.gate.wait(closed).unwrap();
            }
        }
        let delay = s.connect_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if s.panic_connect.load(Ordering::SeqCst) {
            panic!("stub server: connect panicked");
        }
        let budget_spent = s
            .connect_budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| match b {
                0 => None,
                b if b < 0 => Some(b),
                b => Some(b - 1),
            })
            .is_err();
        if s.refuse.load(Ordering::SeqCst) || budget_spent {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused (stub database is down)",
            ));
        }
        let id = s.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut open = s.open.lock().unwrap();
            open.insert(id);
            s.peak_open.fetch_max(open.len(), Ordering::SeqCst);
        }
        s.opened.fetch_add(1, Ordering::SeqCst);
        Ok(Session {
            id,
            server: s.clone(),
            last_active: Mutex::new(Instant::now()),
            in_use: AtomicBool::new(false),
        })
    }

    fn is_valid(&self, conn: &mut Session, timeout: Duration) -> Result<(), std::io::Error> {
        let s = &self.0;
        s.validations.fetch_add(1, Ordering::SeqCst);
        let hang = Duration::from_millis(s.validation_hang_ms.load(Ordering::SeqCst));
        if !hang.is_zero() {
            std::thread::sleep(hang.min(timeout));
            if hang > timeout {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "validation timed out (stub database does not answer)",
                ));
            }
        }
        let wait_timeout = s.wait_timeout_ms.load(Ordering::SeqCst);
        let mut last = conn.last_active.lock().unwrap();
        let dropped_idle = wait_timeout > 0 && last.elapsed() > Duration::from_millis(wait_timeout);
        if s.invalid.load(Ordering::SeqCst)
            || conn.id <= s.killed_up_to.load(Ordering::SeqCst)
            || dropped_idle
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "session was closed by the server",
            ));
        }
        *last = Instant::now();
        Ok(())
    }

    fn has_broken(&self, _conn: &mut Session) -> bool {
        self.0.broken.load(Ordering::SeqCst)
    }

    fn close(&self, conn: Session) {
        let delay = self.0.close_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        drop(conn);
    }
}

/// Waits up to `timeout` for `cond`, polling every 5 ms.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Threads of this process whose name starts with `prefix`.
pub fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .map(|n| n.trim_end().starts_with(prefix))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}
