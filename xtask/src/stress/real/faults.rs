//! Faults of the throwaway servers for `cargo xtask stress --chaos --local`
//! (issue 15), and the server's own count of the pool's sessions.
//!
//! * **Freeze**: the whole server is stopped with `SIGSTOP` for two to four
//!   seconds, then continued (pool-testkit's `freeze_guard`).
//! * **Capacity limit**: the pool's user may open only `max_size / 2`
//!   sessions (at least one) for two to four seconds, with the server's own
//!   per-user limit (`ALTER ROLE .. CONNECTION LIMIT`, MariaDB's
//!   `MAX_USER_CONNECTIONS`); logins beyond it are refused (53300 / 1226)
//!   while the database serves the sessions it has.
//! * **Session count**: about every 100 ms the run asks the server itself, in
//!   a separate client process (`psql` / `mariadb`, through pool-testkit's
//!   `session_count`), how many sessions the pool's user has. More than
//!   `max_size` is a violation, except for sessions the pool has closed in
//!   the last second ([`CLOSE_LAG`]): a close is a message the server
//!   handles when it gets to it (a backend exits, the process list drops the
//!   row), and after a freeze the server only sees the closes of the whole
//!   freeze once it is thawed, so during the second after a thaw every close
//!   made while it was frozen is excused too. A connect the pool gave up on
//!   that logs in later is never excused: the pool never counted it.
//! * **Fail fast** is correct only while the database is down: within
//!   [`DOWN_GRACE`] of a fault that makes it unreachable (restart, freeze,
//!   black hole, refused or reset connects) or of the monitor failing to
//!   reach it. A fail-fast error at any other time (a capacity refusal, a
//!   killed session) is a violation.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pool_testkit::scenarios::Server;

/// Chaos event: the server is frozen for a while.
pub(crate) const FREEZE: &str = "freeze server";
/// Chaos event: the pool's user is limited below `max_size` for a while.
pub(crate) const CAPACITY: &str = "capacity limit";
/// How long a closed session may still be listed by the server.
pub(crate) const CLOSE_LAG: Duration = Duration::from_secs(1);
/// How long after the database was last seen down a fail-fast error is
/// still correct (the pool learns of the recovery on its next probe).
pub(crate) const DOWN_GRACE: Duration = Duration::from_secs(2);
/// How often the server's session count is sampled (a client process each).
const SESSION_SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How many violation messages are kept.
const KEEP: usize = 5;

/// What the server fault machinery saw; shared by the chaos and monitor
/// threads.
#[derive(Default)]
pub(crate) struct ServerWatch {
    /// Faults that make the database unreachable, in progress.
    down_now: AtomicU64,
    /// When the database was last seen unreachable.
    last_down: parking_lot::Mutex<Option<Instant>>,
    frozen: AtomicBool,
    sessions: parking_lot::Mutex<Sessions>,
    pub(crate) samples: AtomicU64,
    pub(crate) sample_failures: AtomicU64,
    pub(crate) peak: AtomicU64,
    pub(crate) excused_peak: AtomicU64,
    pub(crate) freezes: AtomicU64,
    pub(crate) limits: AtomicU64,
    violations: AtomicU64,
    messages: parking_lot::Mutex<Vec<String>>,
}

/// The sampler's memory: when it last sampled, how many connections the pool
/// had closed at each sample, and the last freeze.
#[derive(Default)]
struct Sessions {
    last: Option<Instant>,
    closed: VecDeque<(Instant, u64)>,
    /// (frozen at, thawed at) of the last freeze.
    freeze: Option<(Instant, Instant)>,
}

impl ServerWatch {
    /// A fault that makes the database unreachable begins.
    pub(crate) fn down_begins(&self) {
        self.down_now.fetch_add(1, Ordering::SeqCst);
        *self.last_down.lock() = Some(Instant::now());
    }

    /// That fault is over.
    pub(crate) fn down_ends(&self) {
        *self.last_down.lock() = Some(Instant::now());
        self.down_now.fetch_sub(1, Ordering::SeqCst);
    }

    /// The database could not be reached just now (e.g. by the monitor).
    pub(crate) fn seen_down(&self) {
        *self.last_down.lock() = Some(Instant::now());
    }

    /// Whether a fail-fast error is correct now: the database is down, or was
    /// within [`DOWN_GRACE`].
    pub(crate) fn down_recently(&self) -> bool {
        self.down_now.load(Ordering::SeqCst) > 0
            || self
                .last_down
                .lock()
                .is_some_and(|t| t.elapsed() <= DOWN_GRACE)
    }

    /// Freezes `server` for `hold` (or until `stop`), then thaws it.
    pub(crate) fn freeze<S: Server>(
        &self,
        server: &S,
        hold: Duration,
        stop: &AtomicBool,
    ) -> io::Result<()> {
        self.down_begins();
        self.frozen.store(true, Ordering::SeqCst);
        let frozen_at = Instant::now();
        let result = server.freeze_guard().and_then(|guard| {
            sleep_unless(hold, stop);
            guard.thaw()
        });
        self.sessions.lock().freeze = Some((frozen_at, Instant::now()));
        self.frozen.store(false, Ordering::SeqCst);
        self.down_ends();
        self.freezes.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Limits the pool's user to `limit` sessions for `hold` (or until
    /// `stop`), then lifts the limit. The database stays up throughout.
    pub(crate) fn limit<S: Server>(
        &self,
        server: &S,
        limit: u32,
        hold: Duration,
        stop: &AtomicBool,
    ) -> io::Result<()> {
        server.set_connection_limit(Some(limit))?;
        self.limits.fetch_add(1, Ordering::Relaxed);
        sleep_unless(hold, stop);
        server.set_connection_limit(None)
    }

    /// Samples the server's count of the pool's sessions (at most every
    /// [`SESSION_SAMPLE_EVERY`], never while frozen) and judges it.
    /// `closed_so_far` is how many connections the pool has closed.
    pub(crate) fn sample<S: Server>(
        &self,
        server: &S,
        max_size: u32,
        closed_so_far: u64,
        context: impl FnOnce() -> String,
    ) {
        if self.frozen.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        {
            let mut s = self.sessions.lock();
            if s.last.is_some_and(|t| now - t < SESSION_SAMPLE_EVERY) {
                return;
            }
            s.last = Some(now);
        }
        let Ok(count) = server.session_count() else {
            self.sample_failures.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.samples.fetch_add(1, Ordering::Relaxed);
        self.peak.fetch_max(u64::from(count), Ordering::Relaxed);
        let excused = {
            let mut s = self.sessions.lock();
            s.closed.push_back((now, closed_so_far));
            while s
                .closed
                .front()
                .is_some_and(|(t, _)| now - *t > Duration::from_secs(30))
            {
                s.closed.pop_front();
            }
            // Closes since `from` may still be listed.
            let mut from = now.checked_sub(CLOSE_LAG).unwrap_or(now);
            if let Some((frozen_at, thawed_at)) = s.freeze {
                if now - thawed_at <= CLOSE_LAG {
                    from = from.min(frozen_at);
                }
            }
            let before = s
                .closed
                .iter()
                .rev()
                .find(|(t, _)| *t <= from)
                .or(s.closed.front())
                .map_or(closed_so_far, |(_, n)| *n);
            closed_so_far.saturating_sub(before)
        };
        if u64::from(count) > u64::from(max_size) {
            self.excused_peak
                .fetch_max(u64::from(count) - u64::from(max_size), Ordering::Relaxed);
        }
        if u64::from(count) > u64::from(max_size) + excused {
            self.violations.fetch_add(1, Ordering::Relaxed);
            let mut messages = self.messages.lock();
            if messages.len() < KEEP {
                messages.push(format!(
                    "the server counted {count} sessions of the pool's user (max_size {max_size}; \
                     {excused} closed by the pool in the last {CLOSE_LAG:?} excused) {}",
                    context()
                ));
            }
        }
    }

    /// Violations of the session count so far, and the first messages.
    pub(crate) fn violations(&self) -> (u64, Vec<String>) {
        (
            self.violations.load(Ordering::Relaxed),
            self.messages.lock().clone(),
        )
    }
}

/// Sleeps `d` in small steps, returning early once `stop` is set.
fn sleep_unless(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
    }
}
