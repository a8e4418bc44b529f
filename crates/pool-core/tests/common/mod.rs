//! A scriptable test manager that counts and audits every connection.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Shared counters and switches of a [`TestManager`].
#[derive(Default)]
pub struct Db {
    pub opened: AtomicUsize,
    pub closed: AtomicUsize,
    pub closed_twice: AtomicUsize,
    pub open_ids: Mutex<HashSet<u64>>,
    pub peak_open: AtomicUsize,
    pub next_id: AtomicU64,
    /// Connect fails with "connection refused" while set.
    pub refuse: AtomicBool,
    /// Connect panics while set.
    pub panic_connect: AtomicBool,
    /// is_valid fails while set.
    pub invalid: AtomicBool,
    /// has_broken reports true while set.
    pub broken: AtomicBool,
    /// reset fails while set.
    pub reset_fails: AtomicBool,
    pub connect_delay_ms: AtomicU64,
    /// reset sleeps this long.
    pub reset_delay_ms: AtomicU64,
    pub validations: AtomicUsize,
    pub resets: AtomicUsize,
    /// `reset_limit()` in milliseconds; 0 means none. Read when the pool is built.
    pub reset_limit_ms: AtomicU64,
    /// reset runs its work through `pool_core::deadline::run` (as the
    /// driver crates do) and counts in `reset_hops` the times that moved it
    /// to another thread.
    pub reset_via_deadline: AtomicBool,
    pub reset_hops: AtomicUsize,
    /// `reset_hands_off()`. Read when the pool is built.
    pub reset_hands_off: AtomicBool,
    pub connect_attempts: AtomicUsize,
}

impl Db {
    pub fn open_now(&self) -> usize {
        self.open_ids.lock().unwrap().len()
    }
}

/// A connection: knows its id and closes itself in the registry on drop.
pub struct Conn {
    pub id: u64,
    pub db: Arc<Db>,
    pub in_use: AtomicBool,
    pub dirty: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.db.open_ids.lock().unwrap().remove(&self.id) {
            self.db.closed.fetch_add(1, Ordering::SeqCst);
        } else {
            self.db.closed_twice.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Conn {
    /// Marks the connection used by one holder; panics if two hold it at once.
    pub fn touch(&self) {
        assert!(
            !self.in_use.swap(true, Ordering::SeqCst),
            "connection {} lent to two holders",
            self.id
        );
        std::thread::yield_now();
        self.in_use.store(false, Ordering::SeqCst);
    }
}

#[derive(Clone, Default)]
pub struct TestManager {
    pub db: Arc<Db>,
}

impl TestManager {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_connect_delay(ms: u64) -> Self {
        let m = Self::default();
        m.db.connect_delay_ms.store(ms, Ordering::SeqCst);
        m
    }
}

impl pool_core::ManageConnection for TestManager {
    type Connection = Conn;
    type Error = std::io::Error;

    fn connect(&self) -> Result<Conn, std::io::Error> {
        self.db.connect_attempts.fetch_add(1, Ordering::SeqCst);
        let delay = self.db.connect_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if self.db.panic_connect.load(Ordering::SeqCst) {
            panic!("test manager: connect panicked");
        }
        if self.db.refuse.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused (test database is down)",
            ));
        }
        let id = self.db.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        let mut open = self.db.open_ids.lock().unwrap();
        open.insert(id);
        self.db.peak_open.fetch_max(open.len(), Ordering::SeqCst);
        self.db.opened.fetch_add(1, Ordering::SeqCst);
        Ok(Conn {
            id,
            db: self.db.clone(),
            in_use: AtomicBool::new(false),
            dirty: false,
        })
    }

    fn is_valid(&self, _conn: &mut Conn, _timeout: Duration) -> Result<(), std::io::Error> {
        self.db.validations.fetch_add(1, Ordering::SeqCst);
        if self.db.invalid.load(Ordering::SeqCst) {
            Err(std::io::Error::other("validation failed"))
        } else {
            Ok(())
        }
    }

    fn has_broken(&self, _conn: &mut Conn) -> bool {
        self.db.broken.load(Ordering::SeqCst)
    }

    fn reset_limit(&self) -> Option<Duration> {
        match self.db.reset_limit_ms.load(Ordering::SeqCst) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    fn reset_hands_off(&self) -> bool {
        self.db.reset_hands_off.load(Ordering::SeqCst)
    }

    fn reset(&self, conn: &mut Conn) -> Result<(), std::io::Error> {
        if self.db.reset_via_deadline.load(Ordering::SeqCst) {
            let here = std::thread::current().id();
            let hopped = pool_core::deadline::run(Duration::from_secs(5), move || {
                std::thread::current().id() != here
            })
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            if hopped {
                self.db.reset_hops.fetch_add(1, Ordering::SeqCst);
            }
        }
        let delay = self.db.reset_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        self.db.resets.fetch_add(1, Ordering::SeqCst);
        conn.dirty = false;
        if self.db.reset_fails.load(Ordering::SeqCst) {
            Err(std::io::Error::other("reset failed"))
        } else {
            Ok(())
        }
    }
}

/// Waits up to `timeout` for `cond`, polling.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
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
