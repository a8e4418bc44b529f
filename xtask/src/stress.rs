// Over 800 lines (3,300): issue 19 plans stress/{mod,workload,invariants,report,sim,real}.rs;
// the real-server chaos added in this round went to stress_faults.rs instead.
//! `cargo xtask stress`: many threads against a small pool, checking the
//! pool's invariants while it runs and after it is closed.
//!
//! # Workload
//!
//! `--threads` workers (default 64) share a pool of `--pool-size` (default 8,
//! `min_idle` 2). Each repeatedly picks one operation at random (seeded by
//! `--seed`): a short query (60 %), a transaction that sets a session
//! variable (15 %, a tenth of them abandoned half-way so that the pool's
//! reset must clean up), a slow holder (5 %), a holder that panics (3 %), a
//! connection marked broken (4 %), a `get_timeout` with a short timeout (8 %)
//! and a `try_get` (5 %).
//!
//! # Phases
//!
//! 1. ramp-up (15 %): workers start one after another;
//! 2. steady (40 %);
//! 3. spike (15 %): workers park for a third of the phase (the pool shrinks
//!    toward `min_idle`), then all arrive at once and run without pause;
//! 4. idle (30 %): no workers; the pool must shrink back to `min_idle`;
//! 5. close: holders keep connections while others wait, the pool is closed
//!    under them, everything is dropped.
//!
//! With `--chaos` (simulated database), a chaos thread restarts the server,
//! breaks all or some connections, adds latency, fails connects, opens a
//! short black hole and evicts the pool, every one to three seconds of the
//! first three phases.
//!
//! # Backends
//!
//! `--backend sim` (the default) is the in-process simulated database.
//! `--backend postgres` and `--backend mysql` run the same workload through
//! crates pool-postgres and pool-mysql against a real server: `--url URL`
//! names a running one (the run creates and finally drops a scratch table
//! `xtask_stress_<pid>`), `--local` starts a throwaway server with
//! pool-testkit and stops it at the end. There `--chaos` kills the pool's
//! backends, and with `--local` also restarts the server and cuts the network
//! through a fault proxy (latency, black hole, resets, refused connects).
//! See [`real`] for how each invariant is observed on a real server.
//!
//! # Invariants
//!
//! Checked while running and at the end; any violation makes the task fail:
//!
//! - the backend never sees more open connections than `max_size`;
//! - no connection is lent to two holders at once;
//! - every `get` returns (a connection, a timeout or a closed error; with
//!   chaos also a fail-fast connect error) within its timeout plus 100 ms,
//!   not counting time the borrower spent waiting for a CPU;
//! - every borrower finds a clean session (no transaction, no variable);
//! - after close the backend sees no connection of the pool, and every
//!   connection the pool opened was closed exactly once;
//! - no pool thread is left running (`/proc/self/task`).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use pool_core::{ManageConnection, Pool, PooledConnection};
use pool_sim::{SimConn, SimDb, SimError, SimManager};
use serde_json::json;

use crate::util::{self, Result};

/// Default run length.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);
/// Default number of worker threads.
pub const DEFAULT_THREADS: usize = 64;
/// Default `max_size` of the pool.
pub const DEFAULT_POOL_SIZE: u32 = 8;
/// How late a `get` may return beyond its timeout.
pub const GET_SLACK: Duration = Duration::from_millis(100);
/// The shortest accepted `--duration`.
const MIN_DURATION: Duration = Duration::from_secs(3);

/// Which database the stress run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// The in-process simulated database (crate pool-sim).
    Sim,
    /// PostgreSQL (`--url`, or `--local` for a throwaway server).
    Postgres,
    /// MySQL/MariaDB (`--url`, or `--local` for a throwaway server).
    Mysql,
}

/// Arguments of `cargo xtask stress`.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct StressArgs {
    /// How long to run: plain seconds (`60`) or with a unit (`10s`, `2m`).
    #[arg(long, default_value = "60s", value_parser = util::parse_duration)]
    pub duration: Duration,
    /// Worker threads borrowing from the pool.
    #[arg(long, default_value_t = DEFAULT_THREADS)]
    pub threads: usize,
    /// The pool's `max_size`.
    #[arg(long, default_value_t = DEFAULT_POOL_SIZE)]
    pub pool_size: u32,
    /// Seed for the workload's random choices (default: from the clock; the
    /// seed used is printed so that a run can be repeated).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The database to run against.
    #[arg(long, value_enum, default_value_t = BackendKind::Sim)]
    pub backend: BackendKind,
    /// Connection URL of the database (postgres and mysql backends).
    #[arg(long)]
    pub url: Option<String>,
    /// Start a throwaway local server (postgres and mysql backends, through
    /// crate pool-testkit) instead of using `--url`.
    #[arg(long)]
    pub local: bool,
    /// Inject failures while running (restarts, broken connections, latency,
    /// failing connects, black holes, evictions).
    #[arg(long)]
    pub chaos: bool,
    /// Also write the final report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

impl Default for StressArgs {
    fn default() -> Self {
        StressArgs {
            duration: DEFAULT_DURATION,
            threads: DEFAULT_THREADS,
            pool_size: DEFAULT_POOL_SIZE,
            seed: None,
            backend: BackendKind::Sim,
            url: None,
            local: false,
            chaos: false,
            json: None,
        }
    }
}

/// Runs `cargo xtask stress`.
pub fn run(args: &StressArgs) -> Result {
    if args.duration < MIN_DURATION {
        return Err(format!("--duration must be at least {MIN_DURATION:?}").into());
    }
    if args.threads == 0 || args.pool_size == 0 {
        return Err("--threads and --pool-size must be at least 1".into());
    }
    let seed = args.seed.unwrap_or_else(clock_seed);
    match args.backend {
        BackendKind::Sim => {
            if args.url.is_some() || args.local {
                return Err("--url and --local apply to the postgres and mysql backends".into());
            }
            run_with(SimBackend::new(seed, args.chaos), args, seed)
        }
        BackendKind::Postgres | BackendKind::Mysql => {
            if args.url.is_some() == args.local {
                return Err(format!(
                    "the {} backend needs exactly one of --url URL (a running server) and \
                     --local (a throwaway server started with pool-testkit)",
                    real::label(args.backend)
                )
                .into());
            }
            if args.backend == BackendKind::Postgres {
                run_with(real::postgres(args)?, args, seed)
            } else {
                run_with(real::mysql(args)?, args, seed)
            }
        }
    }
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

// ============================================================== backends

/// The connection type of a backend's manager.
type Conn<B> = <<B as Backend>::Manager as ManageConnection>::Connection;

/// An error from a workload operation: fatal ones mean the connection is gone.
#[derive(Debug)]
struct OpError {
    /// The connection is unusable (the pool must close it).
    fatal: bool,
    /// What went wrong, for the report's first few query errors.
    message: String,
}

/// What the stress run needs from a database: a manager, a few operations on
/// a connection, the server's count of open connections, chaos and an audit.
trait Backend: Send + Sync + 'static {
    /// The pool's connection manager.
    type Manager: ManageConnection;
    /// A one-line description for the report.
    fn describe(&self) -> String;
    /// A manager for the pool.
    fn manager(&self) -> Self::Manager;
    /// The connection's identity as the server knows it.
    fn conn_id(conn: &Conn<Self>) -> u64;
    /// A short query.
    fn query(conn: &mut Conn<Self>) -> std::result::Result<(), OpError>;
    /// `BEGIN`.
    fn begin(conn: &mut Conn<Self>) -> std::result::Result<(), OpError>;
    /// `COMMIT` (or `ROLLBACK` when `commit` is false).
    fn end(conn: &mut Conn<Self>, commit: bool) -> std::result::Result<(), OpError>;
    /// Sets a session variable naming the holder.
    fn set_owner(conn: &mut Conn<Self>, owner: &str) -> std::result::Result<(), OpError>;
    /// What a new borrower finds in the session: `Ok(None)` when it is as a
    /// fresh connection's (no transaction, no session variable set by the
    /// stress workload), `Ok(Some(what))` naming what a previous holder left
    /// behind, `Err` when the check itself failed (the connection broke).
    fn session_state(conn: &mut Conn<Self>) -> std::result::Result<Option<String>, OpError>;
    /// Connections of the pool open on the server now, as the server counts
    /// them (connections the pool has already closed but the server has not
    /// yet noticed excepted); None when the server could not be asked.
    fn server_open(&self) -> Option<usize>;
    /// The most connections open at once so far, if the backend tracks it
    /// exactly (the simulated server counts them; the real backends count
    /// the driver connections the pool held open at once).
    fn server_peak(&self) -> Option<usize>;
    /// Causes one random failure; returns its name, or None without chaos
    /// support. A failure that lasts a while may block until it has healed,
    /// or until `stop` is set.
    fn chaos(&self, rng: &mut fastrand::Rng, stop: &AtomicBool) -> Option<&'static str>;
    /// Ends every failure mode.
    fn heal(&self);
    /// The audit after the pool is closed and dropped: every connection closed
    /// exactly once, none used by two holders. Ok carries a short summary.
    fn audit_closed(&self) -> std::result::Result<String, String>;
    /// Waits until the server sees no open connection of the pool; false on
    /// timeout.
    fn wait_all_closed(&self, timeout: Duration) -> bool;
    /// Backend counters for the report.
    fn counters(&self) -> BTreeMap<&'static str, u64>;
    /// How long the monitor pauses between two samples of
    /// [`server_open`](Self::server_open) (a real server is asked with a query).
    fn sample_every(&self) -> Duration {
        Duration::ZERO
    }
    /// Names of process-wide helper threads that the backend's driver keeps
    /// after a pool is gone by design (they exit after idling a while): not
    /// counted as threads left running by the pool.
    fn helper_threads(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether a fail-fast `Error::Connect` is correct now, i.e. the
    /// database is really down. Backends that cannot tell accept it under
    /// chaos only.
    fn fail_fast_expected(&self, chaos: bool) -> bool {
        chaos
    }
    /// Verdicts the backend judges itself: (name, ok, detail, first messages).
    fn extra_verdicts(&self) -> Vec<(&'static str, bool, String, Vec<String>)> {
        Vec::new()
    }
}

/// Shows a connection id: the server's id, prefixed with the server's
/// generation (`2:1234`) for connections opened after a restart.
fn show_id(id: u64) -> String {
    match id >> 32 {
        0 => id.to_string(),
        epoch => format!("{epoch}:{}", id & u64::from(u32::MAX)),
    }
}

/// The simulated database.
struct SimBackend {
    db: SimDb,
}

impl SimBackend {
    fn new(seed: u64, chaos: bool) -> Self {
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

fn sim_op<T>(r: std::result::Result<T, SimError>) -> std::result::Result<(), OpError> {
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

// ============================================================== shared state

/// The phases of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Phase {
    RampUp = 0,
    Steady = 1,
    Spike = 2,
    Idle = 3,
    Close = 4,
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::RampUp,
        Phase::Steady,
        Phase::Spike,
        Phase::Idle,
        Phase::Close,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::RampUp => "ramp-up",
            Phase::Steady => "steady",
            Phase::Spike => "spike",
            Phase::Idle => "idle",
            Phase::Close => "close",
        }
    }
}

/// What the workers do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Run,
    Park,
    Burst,
    Stop,
}

/// Parks and releases the workers.
#[derive(Default)]
struct Gate {
    mode: parking_lot::Mutex<Option<Mode>>,
    changed: parking_lot::Condvar,
}

impl Gate {
    fn set(&self, mode: Mode) {
        *self.mode.lock() = Some(mode);
        self.changed.notify_all();
    }

    /// Returns the mode to work in, blocking while parked.
    fn pass(&self) -> Mode {
        let mut mode = self.mode.lock();
        loop {
            match mode.unwrap_or(Mode::Run) {
                Mode::Park => self.changed.wait(&mut mode),
                other => return other,
            }
        }
    }
}

/// A counter per kind of violation, with the first few messages.
#[derive(Default)]
struct Violations {
    by_kind: parking_lot::Mutex<BTreeMap<&'static str, (u64, Vec<String>)>>,
}

impl Violations {
    const KEEP: usize = 5;

    fn report(&self, kind: &'static str, message: String) {
        let mut map = self.by_kind.lock();
        let entry = map.entry(kind).or_default();
        entry.0 += 1;
        if entry.1.len() < Self::KEEP {
            entry.1.push(message);
        }
    }

    fn count(&self, kind: &str) -> u64 {
        self.by_kind.lock().get(kind).map_or(0, |e| e.0)
    }

    fn total(&self) -> u64 {
        self.by_kind.lock().values().map(|e| e.0).sum()
    }

    fn messages(&self, kind: &str) -> Vec<String> {
        self.by_kind
            .lock()
            .get(kind)
            .map(|e| e.1.clone())
            .unwrap_or_default()
    }
}

/// Violation kinds.
const V_MAX_OPEN: &str = "max-open";
const V_DOUBLE_LEND: &str = "double-lend";
const V_GET_BOUND: &str = "get-bound";
/// A `get` that returned after its timeout + slack; a violation only if the
/// overrun is more than the worst scheduling delay measured meanwhile.
const V_GET_LATE: &str = "get-late";
const V_SESSION: &str = "session";
const V_CLOSE: &str = "close";
const V_THREADS: &str = "threads";
/// A fail-fast `Connect` error while the database was up.
const V_FAIL_FAST: &str = "fail-fast";

/// Counters of the workload.
#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    ops_by_phase: [AtomicU64; 5],
    gets_ok: AtomicU64,
    timeouts: AtomicU64,
    short_timeouts: AtomicU64,
    try_misses: AtomicU64,
    closed_errors: AtomicU64,
    connect_errors: AtomicU64,
    other_errors: AtomicU64,
    query_errors: AtomicU64,
    panics: AtomicU64,
    marked_broken: AtomicU64,
    abandoned: AtomicU64,
    slowest_get_us: AtomicU64,
    worst_sched_delay_us: AtomicU64,
    /// The largest amount by which a `get` overran its timeout + slack.
    worst_overrun_us: AtomicU64,
    /// The largest overrun not explained by the borrower's own wait for a
    /// CPU (see [`run_delay`]); the whole overrun where that is unknown.
    worst_unexplained_us: AtomicU64,
    /// Set when some thread could not read its run-queue delay.
    no_run_delay: AtomicBool,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// The pool settings a run uses, derived from the arguments.
#[derive(Debug, Clone)]
struct Plan {
    max_size: u32,
    min_idle: u32,
    connection_timeout: Duration,
    validation_timeout: Duration,
    idle_timeout: Duration,
    max_lifetime: Duration,
    keepalive_time: Duration,
    leak_detection: Duration,
    short_timeout: Duration,
    ramp: Duration,
    steady: Duration,
    spike: Duration,
    idle: Duration,
}

impl Plan {
    fn new(args: &StressArgs) -> Plan {
        let d = args.duration;
        let max_lifetime = d / 3;
        Plan {
            max_size: args.pool_size,
            min_idle: 2.min(args.pool_size),
            connection_timeout: Duration::from_secs(1),
            validation_timeout: Duration::from_millis(250),
            idle_timeout: (d / 40).max(Duration::from_millis(250)),
            max_lifetime,
            keepalive_time: (d / 12)
                .max(Duration::from_millis(500))
                .min(max_lifetime / 2),
            leak_detection: Duration::from_secs(2),
            short_timeout: Duration::from_millis(50),
            ramp: d.mul_f64(0.15),
            steady: d.mul_f64(0.40),
            spike: d.mul_f64(0.15),
            idle: d.mul_f64(0.30),
        }
    }
}

struct Shared<B: Backend> {
    pool: Pool<B::Manager>,
    backend: Arc<B>,
    plan: Plan,
    chaos: bool,
    gate: Gate,
    phase: AtomicU8,
    held: parking_lot::Mutex<HashSet<u64>>,
    counters: Counters,
    violations: Violations,
    fail_fast: parking_lot::Mutex<Vec<Window>>,
    /// The first few query errors, for the report (a note, not a verdict).
    first_query_errors: parking_lot::Mutex<Vec<String>>,
    start: Instant,
}

impl<B: Backend> Shared<B> {
    fn phase(&self) -> Phase {
        Phase::ALL[usize::from(self.phase.load(Ordering::Relaxed))]
    }

    /// Keeps the first few query errors for the report.
    fn note_query_error(&self, e: &OpError, id: u64) {
        let mut first = self.first_query_errors.lock();
        if first.len() < Violations::KEEP {
            first.push(format!(
                "{:.3}s, phase {}, connection {}{}: {}",
                self.start.elapsed().as_secs_f64(),
                self.phase().name(),
                show_id(id),
                if e.fatal { " (fatal)" } else { "" },
                e.message
            ));
        }
    }

    /// Records a fail-fast `Connect` error in the current window, or opens a
    /// new window if the last error was more than 50 ms ago.
    fn note_fail_fast(&self) {
        let at = self.start.elapsed();
        let mut windows = self.fail_fast.lock();
        match windows.last_mut() {
            Some(w) if at.saturating_sub(w.end) <= Duration::from_millis(50) => {
                w.end = w.end.max(at);
                w.errors += 1;
            }
            _ => windows.push(Window {
                start: at,
                end: at,
                errors: 1,
            }),
        }
    }
}

/// A stretch of time in which borrowers failed fast with `Error::Connect`.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Duration,
    end: Duration,
    errors: u64,
}

/// How a borrower asks for a connection.
#[derive(Debug, Clone, Copy)]
enum Acquire {
    Get,
    Timeout(Duration),
    Try,
}

/// A borrowed connection, registered in the held set while it lives.
struct Held<'a, B: Backend> {
    shared: &'a Shared<B>,
    conn: Option<PooledConnection<'a, B::Manager>>,
    id: u64,
}

impl<B: Backend> Held<'_, B> {
    fn conn(&mut self) -> &mut Conn<B> {
        match self.conn.as_mut() {
            Some(c) => c,
            None => unreachable!("a held connection is present until dropped"),
        }
    }

    fn mark_broken(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.mark_broken();
        }
        bump(&self.shared.counters.marked_broken);
    }

    /// Runs a workload step, marking the connection broken on a fatal error.
    fn step(&mut self, f: impl FnOnce(&mut Conn<B>) -> std::result::Result<(), OpError>) -> bool {
        match f(self.conn()) {
            Ok(()) => true,
            Err(e) => {
                bump(&self.shared.counters.query_errors);
                self.shared.note_query_error(&e, self.id);
                if e.fatal {
                    self.mark_broken();
                }
                false
            }
        }
    }
}

impl<B: Backend> Drop for Held<'_, B> {
    fn drop(&mut self) {
        // Leave the held set before the pool can lend the connection again.
        self.shared.held.lock().remove(&self.id);
        drop(self.conn.take());
    }
}

fn acquire<'a, B: Backend>(
    shared: &'a Shared<B>,
    how: Acquire,
    hist: &mut Histogram<u64>,
) -> Option<Held<'a, B>> {
    let queued_before = run_delay();
    let start = Instant::now();
    let result = match how {
        Acquire::Get => shared.pool.get(),
        Acquire::Timeout(t) => shared.pool.get_timeout(t),
        Acquire::Try => shared.pool.try_get(),
    };
    let waited = start.elapsed();
    // How long this thread was runnable but not running meanwhile.
    let queued = queued_before
        .zip(run_delay())
        .map(|(before, after)| after.saturating_sub(before));
    let waited_us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
    hist.saturating_record(waited_us.max(1));
    shared
        .counters
        .slowest_get_us
        .fetch_max(waited_us, Ordering::Relaxed);
    let limit = match how {
        Acquire::Get => shared.plan.connection_timeout,
        Acquire::Timeout(t) => t,
        Acquire::Try => Duration::ZERO,
    } + GET_SLACK;
    if waited > limit {
        // Judged at the end: a late return is the scheduler's doing when the
        // borrower spent the excess waiting for a CPU.
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let c = &shared.counters;
        c.worst_overrun_us
            .fetch_max(us(waited - limit), Ordering::Relaxed);
        let unexplained = match queued {
            Some(queued) => waited.saturating_sub(queued).saturating_sub(limit),
            None => {
                c.no_run_delay.store(true, Ordering::Relaxed);
                waited - limit
            }
        };
        c.worst_unexplained_us
            .fetch_max(us(unexplained), Ordering::Relaxed);
        shared.violations.report(
            V_GET_LATE,
            format!(
                "{how:?} returned after {waited:?} (limit {limit:?}; {} of it waiting for a CPU) \
                 in phase {} ({})",
                queued.map_or("unknown".to_owned(), |q| format!("{q:?}")),
                shared.phase().name(),
                match &result {
                    Ok(_) => "with a connection".to_owned(),
                    Err(e) => format!("error: {e}"),
                }
            ),
        );
    }
    let c = &shared.counters;
    match result {
        Ok(conn) => {
            bump(&c.gets_ok);
            let id = B::conn_id(&conn);
            if !shared.held.lock().insert(id) {
                shared.violations.report(
                    V_DOUBLE_LEND,
                    format!(
                        "connection {} was lent while another holder had it",
                        show_id(id)
                    ),
                );
                // Do not return it through this holder: the other one owns it.
                std::mem::forget(conn);
                return None;
            }
            let mut held = Held {
                shared,
                conn: Some(conn),
                id,
            };
            let mut found = None;
            // A check that fails (the connection broke under chaos) is a
            // query error, not a dirty session; the holder gives up.
            if !held.step(|conn| B::session_state(conn).map(|state| found = state)) {
                return None;
            }
            if let Some(found) = found {
                shared.violations.report(
                    V_SESSION,
                    format!(
                        "connection {} was lent with the previous holder's session state ({found})",
                        show_id(id)
                    ),
                );
            }
            Some(held)
        }
        Err(e) => {
            match e {
                pool_core::Error::Timeout { .. } => bump(match how {
                    Acquire::Get => &c.timeouts,
                    Acquire::Timeout(_) => &c.short_timeouts,
                    Acquire::Try => &c.try_misses,
                }),
                pool_core::Error::Closed { .. } => bump(&c.closed_errors),
                // Fail-fast while the database is really down: correct.
                pool_core::Error::Connect { .. }
                    if shared.backend.fail_fast_expected(shared.chaos) =>
                {
                    bump(&c.connect_errors);
                    shared.note_fail_fast();
                }
                // Fail-fast while it is up (a capacity refusal, one failed
                // login) is not (issue 15, item 3).
                pool_core::Error::Connect { .. } => {
                    bump(&c.connect_errors);
                    shared.note_fail_fast();
                    shared.violations.report(
                        V_FAIL_FAST,
                        format!(
                            "{how:?} failed fast at {:.3}s in phase {} while the database was up: {e}",
                            shared.start.elapsed().as_secs_f64(),
                            shared.phase().name()
                        ),
                    );
                }
                other => {
                    bump(&c.other_errors);
                    shared.violations.report(
                        V_GET_BOUND,
                        format!("{how:?} failed with an unexpected error: {other}"),
                    );
                }
            }
            None
        }
    }
}

/// How long the calling thread has waited for a CPU (runnable but not
/// running) since it started: the second field of
/// `/proc/thread-self/schedstat`. None where the kernel does not provide it.
fn run_delay() -> Option<Duration> {
    schedstat(1)
}

/// Field `index` of the calling thread's `/proc/thread-self/schedstat`
/// (0: time on a CPU, 1: time waiting for one), in nanoseconds.
fn schedstat(index: usize) -> Option<Duration> {
    use std::os::unix::fs::FileExt;
    thread_local! {
        /// This thread's schedstat file, opened on first use (the path names
        /// the thread that opens it).
        static SCHEDSTAT: Option<std::fs::File> =
            std::fs::File::open("/proc/thread-self/schedstat").ok();
    }
    SCHEDSTAT.with(|file| {
        let mut buf = [0u8; 96];
        // A positioned read at 0 makes the kernel render the file afresh.
        let n = file.as_ref()?.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let nanos = text.split_whitespace().nth(index)?.parse().ok()?;
        Some(Duration::from_nanos(nanos))
    })
}

/// The marker payload of the deliberate panics, which the panic hook keeps quiet.
pub(crate) struct StressPanic;

/// Runs `f` with a panic hook that keeps the deliberate [`StressPanic`]s
/// quiet and passes every other panic to the previous hook, then puts the
/// previous hook back.
pub(crate) fn with_quiet_panics<T>(f: impl FnOnce() -> T) -> T {
    let previous = Arc::new(panic::take_hook());
    {
        let previous = previous.clone();
        panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<StressPanic>().is_none() {
                previous(info);
            }
        }));
    }
    let result = f();
    drop(panic::take_hook());
    if let Ok(previous) = Arc::try_unwrap(previous) {
        panic::set_hook(previous);
    }
    result
}

// ============================================================== workers

fn worker<B: Backend>(
    shared: &Shared<B>,
    index: usize,
    seed: u64,
    start_delay: Duration,
) -> Histogram<u64> {
    let mut hist = new_histogram();
    let mut rng =
        fastrand::Rng::with_seed(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let owner = format!("worker-{index}");
    // Ramp-up: start one after another, unless told to stop meanwhile.
    let wake = Instant::now() + start_delay;
    while Instant::now() < wake {
        if shared.gate.pass() == Mode::Stop {
            return hist;
        }
        thread::sleep((wake - Instant::now()).min(Duration::from_millis(20)));
    }
    loop {
        let mode = shared.gate.pass();
        if mode == Mode::Stop {
            return hist;
        }
        operation(shared, &mut rng, &owner, &mut hist);
        bump(&shared.counters.ops);
        bump(&shared.counters.ops_by_phase[shared.phase() as usize]);
        if mode == Mode::Run {
            let think = rng.u64(0..1000);
            thread::sleep(Duration::from_micros(think));
        }
    }
}

fn operation<B: Backend>(
    shared: &Shared<B>,
    rng: &mut fastrand::Rng,
    owner: &str,
    hist: &mut Histogram<u64>,
) {
    let c = &shared.counters;
    match rng.u32(0..100) {
        // Short query.
        0..=59 => {
            if let Some(mut held) = acquire(shared, Acquire::Get, hist) {
                held.step(B::query);
            }
        }
        // Transaction with session state; a tenth abandoned half-way.
        60..=74 => {
            if let Some(mut held) = acquire(shared, Acquire::Get, hist) {
                let abandon = rng.u32(0..10) == 0;
                let ok = held.step(B::begin) && held.step(|conn| B::set_owner(conn, owner));
                if ok {
                    for _ in 0..rng.u32(1..6) {
                        if !held.step(B::query) {
                            break;
                        }
                    }
                    if abandon {
                        bump(&c.abandoned);
                    } else {
                        let commit = rng.u32(0..5) != 0;
                        held.step(|conn| B::end(conn, commit));
                    }
                }
            }
        }
        // Slow holder.
        75..=79 => {
            if let Some(mut held) = acquire(shared, Acquire::Get, hist) {
                held.step(B::query);
                thread::sleep(Duration::from_millis(rng.u64(5..50)));
            }
        }
        // Holder that panics with session state set.
        80..=82 => {
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                if let Some(mut held) = acquire(shared, Acquire::Get, hist) {
                    held.step(|conn| B::set_owner(conn, owner));
                    panic::panic_any(StressPanic);
                }
            }));
            if result.is_err() {
                bump(&c.panics);
            }
        }
        // Connection marked broken.
        83..=86 => {
            if let Some(mut held) = acquire(shared, Acquire::Get, hist) {
                held.step(B::query);
                held.mark_broken();
            }
        }
        // Short timeout.
        87..=94 => {
            if let Some(mut held) =
                acquire(shared, Acquire::Timeout(shared.plan.short_timeout), hist)
            {
                held.step(B::query);
            }
        }
        // try_get.
        _ => {
            if let Some(mut held) = acquire(shared, Acquire::Try, hist) {
                held.step(B::query);
            }
        }
    }
}

/// Samples the backend's open connections and the pool's state.
fn monitor<B: Backend>(shared: &Shared<B>, stop: &AtomicBool, max_seen: &AtomicU64) {
    let max = shared.plan.max_size as usize;
    let pause = shared.backend.sample_every();
    while !stop.load(Ordering::Relaxed) {
        // None: the server could not be asked (down under chaos); the pool's
        // own count is still checked.
        let open = shared.backend.server_open();
        if let Some(open) = open {
            max_seen.fetch_max(open as u64, Ordering::Relaxed);
        }
        if let Some(open) = open.filter(|&open| open > max) {
            shared.violations.report(
                V_MAX_OPEN,
                format!(
                    "the backend saw {open} open connections (max_size {max}) at {:.3}s in phase {}",
                    shared.start.elapsed().as_secs_f64(),
                    shared.phase().name()
                ),
            );
        }
        let state = shared.pool.state();
        if state.total > shared.plan.max_size {
            shared.violations.report(
                V_MAX_OPEN,
                format!(
                    "pool state reports total {} > max_size {}",
                    state.total, max
                ),
            );
        }
        // How late a 1 ms sleep wakes up: the machine's scheduling delay,
        // which explains (but does not excuse) late `get`s.
        let before = Instant::now();
        thread::sleep(Duration::from_millis(1));
        let late = before.elapsed().saturating_sub(Duration::from_millis(1));
        shared.counters.worst_sched_delay_us.fetch_max(
            u64::try_from(late.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if !pause.is_zero() {
            thread::sleep(pause);
        }
    }
}

/// Injects a failure every one to three seconds until stopped.
fn chaos<B: Backend>(
    shared: &Shared<B>,
    stop: &AtomicBool,
    seed: u64,
) -> Vec<(Duration, &'static str)> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0xC4A0_5C4A_05C4_A05C);
    let mut events = Vec::new();
    let sleep_unless_stopped = |d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(10));
        }
    };
    loop {
        sleep_unless_stopped(Duration::from_millis(rng.u64(1000..3000)));
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let event = if rng.u32(0..7) == 0 {
            shared.pool.soft_evict_all();
            Some("soft evict")
        } else {
            shared.backend.chaos(&mut rng, stop)
        };
        let Some(event) = event else { break };
        events.push((shared.start.elapsed(), event));
        // Temporary failures last a little while, then heal.
        if matches!(event, "slow down" | "black hole") {
            let hold = if event == "black hole" {
                rng.u64(100..400)
            } else {
                rng.u64(300..1500)
            };
            sleep_unless_stopped(Duration::from_millis(hold));
            shared.backend.heal();
        }
    }
    shared.backend.heal();
    events
}

// ============================================================== the run

fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("valid histogram bounds: {e}"),
    }
}

/// The number of threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// The names of this process's threads.
pub fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    names.sort();
    names
}

/// Progress output: a bar on a terminal, a plain line every 5 s otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
}

impl Progress {
    fn new(total: Duration) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total.as_secs().max(1));
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:24}] {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress {
            bar,
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, elapsed: Duration, message: String) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(elapsed.as_secs());
                bar.set_message(message);
            }
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(5) {
                    self.last_line = Instant::now();
                    eprintln!("[{:>5.1}s] {message}", elapsed.as_secs_f64());
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One invariant's verdict.
struct Verdict {
    name: &'static str,
    ok: bool,
    detail: String,
}

/// Whether a thread name as `/proc` shows it (`comm`, cut to 15 bytes) is
/// `name`.
fn thread_name_matches(name: &str, comm: &str) -> bool {
    let cut = name.len().min(15);
    name.get(..cut) == Some(comm)
}

fn run_with<B: Backend>(backend: B, args: &StressArgs, seed: u64) -> Result {
    let baseline_names = thread_names();
    let plan = Plan::new(args);
    let backend = Arc::new(backend);
    eprintln!(
        "stress: {} threads, pool max_size {} (min_idle {}), {} against {}{}; seed {seed}",
        args.threads,
        plan.max_size,
        plan.min_idle,
        util::human(args.duration),
        backend.describe(),
        if args.chaos { ", with chaos" } else { "" },
    );

    let pool = Pool::builder()
        .name("stress")
        .max_size(plan.max_size)
        .min_idle(Some(plan.min_idle))
        .connection_timeout(plan.connection_timeout)
        .validation_timeout(plan.validation_timeout)
        .idle_timeout(Some(plan.idle_timeout))
        .max_lifetime(Some(plan.max_lifetime))
        .keepalive_time(Some(plan.keepalive_time))
        .leak_detection_threshold(Some(plan.leak_detection))
        .build(backend.manager());
    let pool = pool.map_err(|e| format!("cannot build the pool: {e}"))?;

    let shared = Arc::new(Shared {
        pool,
        backend: backend.clone(),
        plan: plan.clone(),
        chaos: args.chaos,
        gate: Gate::default(),
        phase: AtomicU8::new(Phase::RampUp as u8),
        held: parking_lot::Mutex::new(HashSet::new()),
        counters: Counters::default(),
        violations: Violations::default(),
        fail_fast: parking_lot::Mutex::new(Vec::new()),
        first_query_errors: parking_lot::Mutex::new(Vec::new()),
        start: Instant::now(),
    });
    let mut report = with_quiet_panics(|| drive(&shared, args, seed))?;
    // ---- after close: nothing open, everything closed once, no threads left.
    drop(shared);
    let close_wait = Duration::from_secs(5);
    let closed_at = Instant::now();
    let all_closed = backend.wait_all_closed(close_wait);
    let closed_after = closed_at.elapsed();
    let audit = backend.audit_closed();
    report.verdicts.push(Verdict {
        name: "after close: backend sees no connection, each closed exactly once",
        ok: all_closed && audit.is_ok(),
        detail: match (all_closed, audit) {
            (true, Ok(summary)) if summary == "ok" => summary,
            (true, Ok(summary)) => format!(
                "{summary}; no connection of the pool left on the server after {}",
                util::human(closed_after)
            ),
            (false, Ok(summary)) => format!(
                "{summary}, but the server still showed connections of the pool after {}",
                util::human(close_wait)
            ),
            (true, Err(e)) => e,
            (false, Err(e)) => format!(
                "{e}; the server still showed connections of the pool after {}",
                util::human(close_wait)
            ),
        },
    });
    // Threads of the driver's process-wide helper pool outlive a pool by
    // design (they exit after idling); every other new thread is a leak.
    let helpers = backend.helper_threads();
    let is_helper = |name: &str| helpers.iter().any(|h| thread_name_matches(h, name));
    let baseline = baseline_names.iter().filter(|n| !is_helper(n)).count();
    let counted = || thread_names().iter().filter(|n| !is_helper(n)).count();
    let deadline = Instant::now() + Duration::from_secs(5);
    while counted() > baseline && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let names_now = thread_names();
    let threads_now = names_now.iter().filter(|n| !is_helper(n)).count();
    let helpers_now = names_now.len() - threads_now;
    let leftover: Vec<String> = {
        let mut before = baseline_names.clone();
        names_now
            .into_iter()
            .filter(|n| !is_helper(n))
            .filter(|n| match before.iter().position(|b| b == n) {
                Some(i) => {
                    before.remove(i);
                    false
                }
                None => true,
            })
            .collect()
    };
    let helper_note = if helpers_now > 0 {
        format!(
            " (not counted: {helpers_now} idle {} helper thread(s) of the driver, which exit \
             after idling)",
            helpers.join("/")
        )
    } else {
        String::new()
    };
    report.verdicts.push(Verdict {
        name: "no pool thread left running",
        ok: threads_now <= baseline,
        detail: if threads_now <= baseline {
            format!("{threads_now} thread(s), as before the run{helper_note}")
        } else {
            format!(
                "{threads_now} threads, {baseline} before the run; extra: {leftover:?}{helper_note}"
            )
        },
    });
    report.backend_counters = backend.counters();
    report.print();
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("stress: report written to {}", path.display());
    }
    let failed: Vec<&str> = report
        .verdicts
        .iter()
        .filter(|v| !v.ok)
        .map(|v| v.name)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("invariant(s) violated: {}", failed.join("; ")).into())
    }
}

/// Everything the final table and the JSON file show.
struct Report {
    args: StressArgs,
    seed: u64,
    backend: String,
    plan: Plan,
    elapsed: Duration,
    load_time: Duration,
    ops: u64,
    ops_by_phase: Vec<(&'static str, u64)>,
    hist: Histogram<u64>,
    counters: Vec<(&'static str, u64)>,
    backend_counters: BTreeMap<&'static str, u64>,
    chaos_events: Vec<(Duration, &'static str)>,
    fail_fast_windows: Vec<Window>,
    idle_shrink: Option<Duration>,
    idle_state_end: (u32, Option<usize>),
    max_open_sampled: u64,
    verdicts: Vec<Verdict>,
    violation_messages: Vec<(&'static str, Vec<String>)>,
    first_query_errors: Vec<String>,
}

fn drive<B: Backend>(shared: &Arc<Shared<B>>, args: &StressArgs, seed: u64) -> Result<Report> {
    let plan = &shared.plan;
    let mut progress = Progress::new(args.duration);
    let stop_monitor = Arc::new(AtomicBool::new(false));
    let stop_chaos = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicU64::new(0));

    let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
        thread::Builder::new()
            .name(name)
            .spawn(f)
            .map_err(|e| format!("cannot spawn a thread: {e}"))
    };

    let monitor_thread = {
        let (shared, stop, max_seen) = (shared.clone(), stop_monitor.clone(), max_seen.clone());
        spawn(
            "stress-monitor".into(),
            Box::new(move || monitor(&shared, &stop, &max_seen)),
        )?
    };
    let chaos_events = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let chaos_thread = if args.chaos {
        let (shared, stop, events) = (shared.clone(), stop_chaos.clone(), chaos_events.clone());
        Some(spawn(
            "stress-chaos".into(),
            Box::new(move || *events.lock() = chaos(&shared, &stop, seed)),
        )?)
    } else {
        None
    };

    let hists = Arc::new(parking_lot::Mutex::new(new_histogram()));
    let mut workers = Vec::with_capacity(args.threads);
    for i in 0..args.threads {
        let delay = plan.ramp.mul_f64(i as f64 / args.threads as f64);
        let (shared, hists) = (shared.clone(), hists.clone());
        workers.push(spawn(
            format!("stress-{i}"),
            Box::new(move || {
                let h = worker(&shared, i, seed, delay);
                // Both histograms have the same bounds, so adding cannot fail.
                let _ = hists.lock().add(&h);
            }),
        )?);
    }

    let t0 = shared.start;
    let status = |phase: Phase| {
        let state = shared.pool.state();
        let c = &shared.counters;
        let elapsed = t0.elapsed().as_secs_f64().max(0.001);
        format!(
            "{:<7} {:>5.0}/s  pool {}/{} act {} wait {}  db {}  t/o {}  viol {}",
            phase.name(),
            get(&c.gets_ok) as f64 / elapsed,
            state.total,
            state.max_size,
            state.active,
            state.waiting,
            shared
                .backend
                .server_open()
                .map_or("?".to_owned(), |n| n.to_string()),
            get(&c.timeouts) + get(&c.short_timeouts),
            shared.violations.total()
        )
    };
    let mut wait_until = |until: Instant, phase: Phase| {
        while Instant::now() < until {
            progress.update(t0.elapsed(), status(phase));
            thread::sleep((until - Instant::now()).min(Duration::from_millis(250)));
        }
    };

    // 1. ramp-up, 2. steady.
    let steady_at = t0 + plan.ramp;
    wait_until(steady_at, Phase::RampUp);
    shared.phase.store(Phase::Steady as u8, Ordering::Relaxed);
    let spike_at = steady_at + plan.steady;
    wait_until(spike_at, Phase::Steady);

    // 3. spike: park everyone, then release them all at once.
    shared.phase.store(Phase::Spike as u8, Ordering::Relaxed);
    shared.gate.set(Mode::Park);
    let burst_at = spike_at + plan.spike / 3;
    wait_until(burst_at, Phase::Spike);
    shared.gate.set(Mode::Burst);
    let idle_at = spike_at + plan.spike;
    wait_until(idle_at, Phase::Spike);

    // 4. idle: stop the workers and the chaos; watch the pool shrink.
    shared.phase.store(Phase::Idle as u8, Ordering::Relaxed);
    shared.gate.set(Mode::Stop);
    stop_chaos.store(true, Ordering::Relaxed);
    let load_time = t0.elapsed();
    for w in workers {
        if w.join().is_err() {
            return Err("a worker thread panicked outside the planned panics".into());
        }
    }
    if let Some(t) = chaos_thread {
        if t.join().is_err() {
            return Err("the chaos thread panicked".into());
        }
    }
    shared.backend.heal();
    let idle_started = Instant::now();
    let end = idle_at + plan.idle;
    let mut idle_shrink = None;
    while Instant::now() < end {
        let state = shared.pool.state();
        let open = shared.backend.server_open();
        if idle_shrink.is_none()
            && state.total == plan.min_idle
            && open == Some(plan.min_idle as usize)
        {
            idle_shrink = Some(idle_started.elapsed());
        }
        progress.update(t0.elapsed(), status(Phase::Idle));
        thread::sleep(Duration::from_millis(50));
    }
    let idle_state_end = (shared.pool.state().total, shared.backend.server_open());
    progress.finish();

    // 5. close under load: holders keep connections, waiters wait, close.
    shared.phase.store(Phase::Close as u8, Ordering::Relaxed);
    close_phase(shared)?;
    let elapsed = t0.elapsed();

    stop_monitor.store(true, Ordering::Relaxed);
    if monitor_thread.join().is_err() {
        return Err("the monitor thread panicked".into());
    }

    // ---- verdicts that do not need the pool dropped.
    let v = &shared.violations;
    let max_size = plan.max_size as usize;
    let peak = shared.backend.server_peak();
    let sampled = max_seen.load(Ordering::Relaxed);
    let peak_ok = !matches!(peak, Some(p) if p > max_size) && v.count(V_MAX_OPEN) == 0;
    let mut verdicts = vec![Verdict {
        name: "open connections never above max_size (backend count)",
        ok: peak_ok,
        detail: format!(
            "peak {} (sampled max {sampled}), max_size {max_size}",
            peak.map_or("n/a".to_owned(), |p| p.to_string())
        ),
    }];
    let backend_counters = shared.backend.counters();
    let concurrent = backend_counters.get("concurrent_use").copied().unwrap_or(0);
    verdicts.push(Verdict {
        name: "no connection lent to two holders",
        ok: v.count(V_DOUBLE_LEND) == 0 && concurrent == 0,
        detail: format!(
            "{} double lend(s) seen by holders, {concurrent} concurrent use(s) seen by the backend",
            v.count(V_DOUBLE_LEND)
        ),
    });
    let c = &shared.counters;
    // A late return is the scheduler's doing, not the pool's, when the
    // borrower spent the excess waiting for a CPU (its run-queue delay, from
    // /proc/thread-self/schedstat). Where that cannot be read, an excess no
    // larger than the scheduling delay the machine showed meanwhile is.
    let unexplained = get(&c.worst_unexplained_us);
    let run_delay_known = !c.no_run_delay.load(Ordering::Relaxed);
    let late_ok = if run_delay_known {
        unexplained == 0
    } else {
        unexplained <= get(&c.worst_sched_delay_us)
    };
    verdicts.push(Verdict {
        name: "every get() returns within its timeout + 100 ms (ok, timeout or closed)",
        ok: v.count(V_GET_BOUND) == 0 && late_ok,
        detail: format!(
            "{} unexpected, {} late by up to {:?} ({:?} of it not spent waiting for a CPU{}), \
             slowest {:?} (worst scheduling delay of a 1 ms sleep: {:?})",
            v.count(V_GET_BOUND),
            v.count(V_GET_LATE),
            Duration::from_micros(get(&c.worst_overrun_us)),
            Duration::from_micros(unexplained),
            if run_delay_known {
                ""
            } else {
                ", run-queue delay unknown"
            },
            Duration::from_micros(get(&c.slowest_get_us)),
            Duration::from_micros(get(&c.worst_sched_delay_us))
        ),
    });
    verdicts.push(Verdict {
        name: "fail fast only while the database is down",
        ok: v.count(V_FAIL_FAST) == 0,
        detail: format!(
            "{} fail-fast error(s) while it was up, {} in all",
            v.count(V_FAIL_FAST),
            get(&shared.counters.connect_errors)
        ),
    });
    let extra = shared.backend.extra_verdicts();
    for (name, ok, detail, _) in &extra {
        verdicts.push(Verdict {
            name,
            ok: *ok,
            detail: detail.clone(),
        });
    }
    verdicts.push(Verdict {
        name: "borrowers always find a clean session (reset)",
        ok: v.count(V_SESSION) == 0,
        detail: format!("{} dirty session(s)", v.count(V_SESSION)),
    });
    verdicts.push(Verdict {
        name: "close wakes waiters and lends nothing more",
        ok: v.count(V_CLOSE) == 0,
        detail: format!("{} problem(s)", v.count(V_CLOSE)),
    });
    let violation_messages = [
        V_MAX_OPEN,
        V_DOUBLE_LEND,
        V_GET_BOUND,
        V_GET_LATE,
        V_FAIL_FAST,
        V_SESSION,
        V_CLOSE,
        V_THREADS,
    ]
    .into_iter()
    .map(|k| (k, v.messages(k)))
    .chain(extra.into_iter().map(|(name, _, _, m)| (name, m)))
    .filter(|(_, m)| !m.is_empty())
    .collect();

    let hist = hists.lock().clone();
    let counters = Vec::from([
        ("gets_ok", get(&c.gets_ok)),
        ("timeouts", get(&c.timeouts)),
        ("short_timeout_misses", get(&c.short_timeouts)),
        ("try_get_misses", get(&c.try_misses)),
        ("closed_errors", get(&c.closed_errors)),
        ("connect_errors", get(&c.connect_errors)),
        ("unexpected_errors", get(&c.other_errors)),
        ("query_errors", get(&c.query_errors)),
        ("panicking_holders", get(&c.panics)),
        ("marked_broken", get(&c.marked_broken)),
        ("abandoned_transactions", get(&c.abandoned)),
    ]);
    let ops_by_phase = Phase::ALL[..3]
        .iter()
        .map(|p| (p.name(), get(&c.ops_by_phase[*p as usize])))
        .collect();
    let chaos_events = chaos_events.lock().clone();
    Ok(Report {
        args: args.clone(),
        seed,
        backend: shared.backend.describe(),
        plan: plan.clone(),
        elapsed,
        load_time,
        ops: get(&c.ops),
        ops_by_phase,
        hist,
        counters,
        backend_counters,
        chaos_events,
        fail_fast_windows: shared.fail_fast.lock().clone(),
        idle_shrink,
        idle_state_end,
        max_open_sampled: sampled,
        verdicts,
        violation_messages,
        first_query_errors: shared.first_query_errors.lock().clone(),
    })
}

/// Closes the pool while some threads hold connections and others wait.
fn close_phase<B: Backend>(shared: &Arc<Shared<B>>) -> Result {
    let holders = shared.plan.max_size as usize;
    let waiters = 8;
    let closed = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(holders + 1));
    let mut threads = Vec::new();
    for i in 0..holders {
        let (shared, closed, ready) = (shared.clone(), closed.clone(), ready.clone());
        threads.push(thread::spawn(move || {
            let mut hist = new_histogram();
            let held = acquire(&shared, Acquire::Get, &mut hist);
            ready.wait();
            if let Some(mut held) = held {
                while !closed.load(Ordering::Acquire) {
                    thread::sleep(Duration::from_millis(1));
                }
                // Using a connection lent before close still works.
                held.step(B::query);
                thread::sleep(Duration::from_millis(5 * i as u64));
            }
        }));
    }
    ready.wait();
    for _ in 0..waiters {
        let shared = shared.clone();
        threads.push(thread::spawn(move || {
            let mut hist = new_histogram();
            if acquire(&shared, Acquire::Get, &mut hist).is_some() {
                // Possible if a holder got no connection; not an error.
            }
        }));
    }
    thread::sleep(Duration::from_millis(50));
    let waiting = shared.pool.state().waiting;
    shared.pool.close();
    closed.store(true, Ordering::Release);
    for t in threads {
        if t.join().is_err() {
            return Err("a close-phase thread panicked".into());
        }
    }
    let start = Instant::now();
    match shared.pool.get() {
        Err(pool_core::Error::Closed { .. }) if start.elapsed() <= GET_SLACK => {}
        Err(e) => shared.violations.report(
            V_CLOSE,
            format!(
                "get() after close failed with {e} after {:?}",
                start.elapsed()
            ),
        ),
        Ok(_) => shared
            .violations
            .report(V_CLOSE, "get() after close lent a connection".into()),
    }
    if shared.counters.closed_errors.load(Ordering::Relaxed) == 0 && waiting > 0 {
        shared.violations.report(
            V_CLOSE,
            format!("{waiting} waiter(s) at close, none got a closed error"),
        );
    }
    Ok(())
}

impl Report {
    fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, v)| *v)
    }

    fn percentile_us(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }

    fn print(&self) {
        let mut out = String::new();
        let secs = self.load_time.as_secs_f64().max(0.001);
        let _ = writeln!(out, "\nstress report ({})", self.backend);
        let _ = writeln!(
            out,
            "  seed {}, {} threads, max_size {}, min_idle {}, chaos {}, ran {}",
            self.seed,
            self.args.threads,
            self.plan.max_size,
            self.plan.min_idle,
            if self.args.chaos { "on" } else { "off" },
            util::human(self.elapsed)
        );
        let _ = writeln!(out, "  {:-<74}", "");
        let row = |out: &mut String, k: &str, v: String| {
            let _ = writeln!(out, "  {k:<40} {v}");
        };
        let borrows = self.counter("gets_ok");
        row(
            &mut out,
            "throughput (successful borrows)",
            format!(
                "{:.0}/s ({borrows} borrows, {} operations in {})",
                borrows as f64 / secs,
                self.ops,
                util::human(self.load_time)
            ),
        );
        for (phase, ops) in &self.ops_by_phase {
            row(&mut out, &format!("  ops in {phase}"), ops.to_string());
        }
        let us = |v: u64| format!("{:?}", Duration::from_micros(v));
        row(
            &mut out,
            "acquire wait p50 / p99 / p99.9 / max",
            format!(
                "{} / {} / {} / {}  ({} gets)",
                us(self.percentile_us(0.5)),
                us(self.percentile_us(0.99)),
                us(self.percentile_us(0.999)),
                us(self.hist.max()),
                self.hist.len()
            ),
        );
        for (k, v) in &self.counters {
            row(&mut out, &k.replace('_', " "), v.to_string());
        }
        let bc = |k: &str| self.backend_counters.get(k).copied().unwrap_or(0);
        row(
            &mut out,
            "connections opened / closed",
            format!("{} / {}", bc("opened"), bc("closed")),
        );
        row(
            &mut out,
            "connect attempts / failures",
            format!("{} / {}", bc("connect_attempts"), bc("connect_failures")),
        );
        row(
            &mut out,
            "resets / validations (failed)",
            format!(
                "{} / {} ({})",
                bc("resets"),
                bc("validations"),
                bc("validation_failures")
            ),
        );
        let shown = [
            "opened",
            "closed",
            "connect_attempts",
            "connect_failures",
            "resets",
            "validations",
            "validation_failures",
        ];
        let others: Vec<String> = self
            .backend_counters
            .iter()
            .filter(|(k, _)| !shown.contains(k))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !others.is_empty() {
            row(&mut out, "backend counters", others.join(", "));
        }
        if !self.chaos_events.is_empty() {
            let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
            for (_, kind) in &self.chaos_events {
                *by_kind.entry(kind).or_insert(0) += 1;
            }
            let events: Vec<String> = by_kind.iter().map(|(k, v)| format!("{k} x{v}")).collect();
            row(&mut out, "chaos events", events.join(", "));
            let timeline: Vec<String> = self
                .chaos_events
                .iter()
                .map(|(at, kind)| format!("{:.1}s {kind}", at.as_secs_f64()))
                .collect();
            row(&mut out, "  chaos timeline", timeline.join(", "));
        }
        if !self.fail_fast_windows.is_empty() {
            let longest = self
                .fail_fast_windows
                .iter()
                .map(|w| w.end - w.start)
                .max()
                .unwrap_or_default();
            let windows: Vec<String> = self
                .fail_fast_windows
                .iter()
                .take(8)
                .map(|w| {
                    format!(
                        "{:.1}s+{}ms ({})",
                        w.start.as_secs_f64(),
                        (w.end - w.start).as_millis(),
                        w.errors
                    )
                })
                .collect();
            row(
                &mut out,
                "fail-fast windows (Error::Connect)",
                format!(
                    "{}, longest {}ms: {}",
                    self.fail_fast_windows.len(),
                    longest.as_millis(),
                    windows.join(", ")
                ),
            );
        }
        row(
            &mut out,
            "idle phase: shrank to min_idle",
            match self.idle_shrink {
                Some(d) => format!(
                    "yes, after {} (idle_timeout {})",
                    util::human(d),
                    util::human(self.plan.idle_timeout)
                ),
                None => format!(
                    "NO (pool total {}, db open {} at the end; note only)",
                    self.idle_state_end.0,
                    self.idle_state_end
                        .1
                        .map_or("?".to_owned(), |n| n.to_string())
                ),
            },
        );
        let _ = writeln!(out, "  {:-<74}", "");
        for v in &self.verdicts {
            let _ = writeln!(
                out,
                "  [{}] {}: {}",
                if v.ok { "PASS" } else { "FAIL" },
                v.name,
                v.detail
            );
        }
        for (kind, messages) in &self.violation_messages {
            let _ = writeln!(out, "  first {kind} violations:");
            for m in messages {
                let _ = writeln!(out, "    - {m}");
            }
        }
        if !self.first_query_errors.is_empty() {
            let _ = writeln!(out, "  first query errors (note only):");
            for m in &self.first_query_errors {
                let _ = writeln!(out, "    - {m}");
            }
        }
        eprint!("{out}");
    }

    fn to_json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        json!({
            "seed": self.seed,
            "backend": self.backend,
            "threads": self.args.threads,
            "pool": {
                "max_size": self.plan.max_size,
                "min_idle": self.plan.min_idle,
                "connection_timeout_ms": ms(self.plan.connection_timeout),
                "idle_timeout_ms": ms(self.plan.idle_timeout),
                "max_lifetime_ms": ms(self.plan.max_lifetime),
                "keepalive_time_ms": ms(self.plan.keepalive_time),
            },
            "chaos": self.args.chaos,
            "duration_s": self.args.duration.as_secs_f64(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "throughput_borrows_per_s": self.counter("gets_ok") as f64 / self.load_time.as_secs_f64().max(0.001),
            "ops_per_s": self.ops as f64 / self.load_time.as_secs_f64().max(0.001),
            "ops": self.ops,
            "ops_by_phase": self.ops_by_phase.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "acquire_wait_us": {
                "count": self.hist.len(),
                "p50": self.percentile_us(0.5),
                "p99": self.percentile_us(0.99),
                "p99_9": self.percentile_us(0.999),
                "max": self.hist.max(),
                "mean": self.hist.mean(),
            },
            "counters": self.counters.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "backend_counters": self.backend_counters,
            "chaos_events": self.chaos_events.iter().map(|(at, kind)| json!({
                "at_s": at.as_secs_f64(),
                "event": kind,
            })).collect::<Vec<_>>(),
            "fail_fast_windows": self.fail_fast_windows.iter().map(|w| json!({
                "start_s": w.start.as_secs_f64(),
                "end_s": w.end.as_secs_f64(),
                "errors": w.errors,
            })).collect::<Vec<_>>(),
            "idle_shrink_ms": self.idle_shrink.map(ms),
            "max_open_sampled": self.max_open_sampled,
            "invariants": self.verdicts.iter().map(|v| json!({
                "name": v.name,
                "ok": v.ok,
                "detail": v.detail,
            })).collect::<Vec<_>>(),
            "violations": self.violation_messages.iter().map(|(k, m)| (k.to_string(), json!(m))).collect::<serde_json::Map<_, _>>(),
            "first_query_errors": self.first_query_errors,
            "ok": self.verdicts.iter().all(|v| v.ok),
        })
    }
}

// ============================================================== real servers

/// The PostgreSQL and MariaDB/MySQL backends: crate pool-postgres's and
/// pool-mysql's managers against a server given with `--url`, or a throwaway
/// one that pool-testkit starts for `--local`.
///
/// # How the invariants are checked on a real server
///
/// * **Connection ids** are the server's: `pg_backend_pid()` (asked once per
///   connection, right after it is opened) and `CONNECTION_ID()` (the
///   handshake's thread id, which the driver keeps). The manager is wrapped
///   in a [`TrackingManager`] that caches the id next to the connection and
///   keeps a [`Ledger`] of what it opened and closed. After a `--chaos`
///   restart a new server may hand out the same ids again, so the number of
///   restarts so far goes into the high 32 bits of the id (`1:4242`).
/// * **Open connections** are sampled about every 10 ms on a separate
///   monitoring connection (directly to the server, never through the fault
///   proxy): `pg_stat_activity` rows with the pool's own `application_name`
///   (`xtask-stress-<pid>`), or `information_schema.PROCESSLIST` rows of the
///   pool's user (other than the monitoring connection itself: with `--url`
///   the user should be one that nothing else uses during the run). A
///   session the pool has already closed but the server has not yet reaped
///   (the close is asynchronous; through the proxy it takes a poll
///   interval) is not counted against `max_size`: the pool closes a
///   connection before its seat is free, so its own count cannot include
///   it. Sessions the server shows that the pool has not opened yet (a
///   connect in progress) are counted.
/// * **Clean sessions**: holders set `stress.owner` (PostgreSQL, a custom
///   setting) or `@stress_owner` (MySQL, a user variable) and leave
///   transactions open; each borrower first checks that neither the setting
///   nor an open or failed transaction is visible (`now() =
///   statement_timestamp()`, `@@in_transaction` on MariaDB).
/// * **After close** the monitoring connection polls for up to 5 s until the
///   server shows no session of the pool, and the ledger must show every
///   connection opened closed exactly once.
///
/// # Chaos
///
/// With `--chaos`, each event is one of (taken in a shuffled cycle, so that
/// a run sees every kind before any repeats): killed backends
/// (`pg_terminate_backend` / `KILL CONNECTION` of all or some of the pool's
/// sessions); with `--local`, a server restart (stop, then start again on
/// the same port and data directory); and with `--local`, network faults:
/// the pool then reaches the server through a pool-testkit
/// [`FaultProxy`], switched for one to two seconds to latency (10-100 ms
/// per chunk), a black hole, resets or refused connects, then back to
/// pass-through. A black hole ends with a reset of every proxied connection
/// (as a firewall that dropped its state would): the proxy discards bytes,
/// so the connections it black-holed can never recover, and without the
/// reset the server would keep their sessions open.
mod real {
    use std::collections::{HashMap, HashSet};
    use std::fmt;
    use std::io;

    use pool_core::url_params::redact_url;
    use pool_mysql::mysql::prelude::Queryable;
    use pool_mysql::mysql::{self, OptsBuilder};
    use pool_mysql::{MysqlConnection, MysqlManager};
    use pool_postgres::postgres::{self, SimpleQueryMessage};
    use pool_postgres::{NoTls, PgConnection, PostgresManager};
    use pool_testkit::{FaultMode, FaultProxy, MariaDbServer, PgServer, PG_DATABASE, PG_SUPERUSER};

    use super::{
        Arc, AtomicBool, AtomicU64, BTreeMap, Backend, BackendKind, Duration, Instant,
        ManageConnection, OpError, Ordering, Result, StressArgs,
    };
    use crate::stress_faults::{ServerWatch, CAPACITY, FREEZE};

    /// How often the monitor asks the server for the pool's sessions.
    const SAMPLE_EVERY: Duration = Duration::from_millis(10);
    /// The shortest pause between two attempts to reconnect the monitor.
    const MONITOR_RETRY: Duration = Duration::from_millis(50);
    /// Name of the driver crates' process-wide worker threads (connects,
    /// validations and resets under a time limit; they exit after idling
    /// 30 s). Older versions of the crates named them `pool-postgres-io` and
    /// `pool-mysql-io`.
    const DEADLINE_THREADS: &str = "pool-io";
    /// Connect timeout of the monitoring and set-up connections.
    const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

    /// The name `--backend` gives a real database, for messages.
    pub(super) fn label(kind: BackendKind) -> &'static str {
        match kind {
            BackendKind::Postgres => "postgres",
            BackendKind::Mysql => "mysql",
            BackendKind::Sim => "sim",
        }
    }

    // ------------------------------------------------------------ ledger

    /// What the [`TrackingManager`] saw: connections opened and closed, and
    /// the outcome of every manager call.
    #[derive(Default)]
    pub(super) struct Ledger {
        /// Server restarts so far: the high half of every connection id.
        epoch: AtomicU64,
        book: parking_lot::Mutex<Book>,
        connect_attempts: AtomicU64,
        connect_failures: AtomicU64,
        validations: AtomicU64,
        validation_failures: AtomicU64,
        resets: AtomicU64,
        reset_failures: AtomicU64,
    }

    /// The ledger's record of connections.
    #[derive(Default)]
    struct Book {
        /// Ids of the connections open now (a count, in case a server reuses
        /// the id of a session the pool has not closed yet).
        live: HashMap<u64, u32>,
        live_count: usize,
        peak_live: usize,
        /// Ids of connections the pool has closed.
        closed: HashSet<u64>,
        opened: u64,
        closed_count: u64,
        /// Closes of a connection that was not open: never expected.
        closed_unknown: u64,
    }

    impl Ledger {
        fn opened(&self, id: u64) {
            let mut book = self.book.lock();
            *book.live.entry(id).or_insert(0) += 1;
            book.closed.remove(&id);
            book.opened += 1;
            book.live_count += 1;
            book.peak_live = book.peak_live.max(book.live_count);
        }

        fn closed(&self, id: u64) {
            let mut book = self.book.lock();
            match book.live.get_mut(&id) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    book.live.remove(&id);
                }
                None => {
                    book.closed_unknown += 1;
                    return;
                }
            }
            book.closed.insert(id);
            book.closed_count += 1;
            book.live_count -= 1;
        }

        /// The id of server session `server_id` in the current generation.
        fn id_now(&self, server_id: u32) -> u64 {
            (self.epoch.load(Ordering::SeqCst) << 32) | u64::from(server_id)
        }
    }

    /// What every connection of a run shares: the ledger and the workload's
    /// scratch table.
    pub(super) struct Ctx {
        ledger: Ledger,
        /// The scratch table the transactions insert into.
        table: String,
        /// Whether the session check can ask the server if a transaction is
        /// open (MariaDB's `@@in_transaction`; MySQL has no such variable).
        check_trx: bool,
    }

    // ------------------------------------------------------------ manager

    /// A pool connection of a real backend: the driver's connection and its
    /// id on the server, found once when it was opened.
    pub(super) struct Tracked<C> {
        /// Present until the pool closes it.
        conn: Option<C>,
        id: u64,
        ctx: Arc<Ctx>,
    }

    impl<C> Tracked<C> {
        fn parts(&mut self) -> (&mut C, &Ctx) {
            match self.conn.as_mut() {
                Some(c) => (c, &self.ctx),
                None => unreachable!("a tracked connection is present until closed"),
            }
        }
    }

    impl<C> Drop for Tracked<C> {
        fn drop(&mut self) {
            // Dropped without `close` (the pool never does that today).
            if let Some(conn) = self.conn.take() {
                drop(conn);
                self.ctx.ledger.closed(self.id);
            }
        }
    }

    /// An error of a [`TrackingManager`].
    #[derive(Debug)]
    pub(super) enum TrackError<E> {
        /// The wrapped manager's error.
        Driver(E),
        /// The connection opened, but its server id could not be read.
        Ident(String),
        /// The connection was already closed (never expected).
        Gone,
    }

    impl<E: fmt::Display> fmt::Display for TrackError<E> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                TrackError::Driver(e) => e.fmt(f),
                TrackError::Ident(e) => write!(f, "cannot read the connection's server id: {e}"),
                TrackError::Gone => f.write_str("the connection was already closed"),
            }
        }
    }

    impl<E: std::error::Error + 'static> std::error::Error for TrackError<E> {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            match self {
                TrackError::Driver(e) => Some(e),
                _ => None,
            }
        }
    }

    /// Wraps pool-postgres's or pool-mysql's manager: every call goes to it
    /// unchanged, and the connection's server id and the outcome of each
    /// call are recorded in the run's [`Ledger`].
    pub(super) struct TrackingManager<D: Dialect> {
        inner: D::Inner,
        ctx: Arc<Ctx>,
    }

    impl<D: Dialect> Clone for TrackingManager<D> {
        fn clone(&self) -> Self {
            TrackingManager {
                inner: self.inner.clone(),
                ctx: self.ctx.clone(),
            }
        }
    }

    /// The driver connection of dialect `D`.
    pub(super) type Raw<D> = <<D as Dialect>::Inner as ManageConnection>::Connection;
    type DriverError<D> = <<D as Dialect>::Inner as ManageConnection>::Error;

    impl<D: Dialect> ManageConnection for TrackingManager<D> {
        type Connection = Tracked<Raw<D>>;
        type Error = TrackError<DriverError<D>>;

        fn connect(&self) -> std::result::Result<Self::Connection, Self::Error> {
            let ledger = &self.ctx.ledger;
            ledger.connect_attempts.fetch_add(1, Ordering::Relaxed);
            let mut conn = self.inner.connect().map_err(|e| {
                ledger.connect_failures.fetch_add(1, Ordering::Relaxed);
                TrackError::Driver(e)
            })?;
            match D::server_id(&mut conn) {
                Ok(server_id) => {
                    let id = ledger.id_now(server_id);
                    ledger.opened(id);
                    Ok(Tracked {
                        conn: Some(conn),
                        id,
                        ctx: self.ctx.clone(),
                    })
                }
                Err(e) => {
                    ledger.connect_failures.fetch_add(1, Ordering::Relaxed);
                    self.inner.close(conn);
                    Err(TrackError::Ident(e))
                }
            }
        }

        fn is_valid(
            &self,
            conn: &mut Self::Connection,
            timeout: Duration,
        ) -> std::result::Result<(), Self::Error> {
            let ledger = &self.ctx.ledger;
            ledger.validations.fetch_add(1, Ordering::Relaxed);
            let Some(raw) = conn.conn.as_mut() else {
                return Err(TrackError::Gone);
            };
            self.inner.is_valid(raw, timeout).map_err(|e| {
                ledger.validation_failures.fetch_add(1, Ordering::Relaxed);
                TrackError::Driver(e)
            })
        }

        fn has_broken(&self, conn: &mut Self::Connection) -> bool {
            conn.conn
                .as_mut()
                .is_none_or(|raw| self.inner.has_broken(raw))
        }

        fn reset(&self, conn: &mut Self::Connection) -> std::result::Result<(), Self::Error> {
            let ledger = &self.ctx.ledger;
            ledger.resets.fetch_add(1, Ordering::Relaxed);
            let Some(raw) = conn.conn.as_mut() else {
                return Err(TrackError::Gone);
            };
            self.inner.reset(raw).map_err(|e| {
                ledger.reset_failures.fetch_add(1, Ordering::Relaxed);
                TrackError::Driver(e)
            })
        }

        fn close(&self, mut conn: Self::Connection) {
            if let Some(raw) = conn.conn.take() {
                self.inner.close(raw);
                self.ctx.ledger.closed(conn.id);
            }
        }
    }

    // ------------------------------------------------------------ dialects

    /// What differs between PostgreSQL and MySQL: the manager, the
    /// monitoring connection, the throwaway server and the workload's SQL.
    pub(super) trait Dialect: Send + Sync + Sized + 'static {
        /// The pool-postgres / pool-mysql manager.
        type Inner: ManageConnection + Clone;
        /// The monitoring connection (a plain driver connection).
        type Admin: Send + 'static;
        /// The pool-testkit server of `--local`.
        type Server: Send + crate::stress_faults::ServerFaults + 'static;
        /// Names of the driver's process-wide helper threads.
        const HELPER_THREADS: &'static [&'static str];

        /// The server's id of a connection just opened.
        fn server_id(conn: &mut Raw<Self>) -> std::result::Result<u32, String>;
        /// Opens a monitoring connection.
        fn connect_admin(&self) -> std::result::Result<Self::Admin, String>;
        /// The server ids of the pool's sessions, as the server lists them.
        fn sessions(&self, admin: &mut Self::Admin) -> std::result::Result<Vec<u32>, String>;
        /// Terminates sessions; returns how many the server terminated.
        fn kill(&self, admin: &mut Self::Admin, ids: &[u32]) -> std::result::Result<u64, String>;
        /// Drops the scratch table.
        fn drop_table(admin: &mut Self::Admin, table: &str) -> std::result::Result<(), String>;
        /// Stops the throwaway server.
        fn stop(server: &mut Self::Server) -> io::Result<()>;
        /// Starts the throwaway server again.
        fn start_again(server: &mut Self::Server) -> io::Result<()>;
        /// Whether the throwaway server runs.
        fn is_running(server: &Self::Server) -> bool;

        /// `SELECT 1`.
        fn query(conn: &mut Raw<Self>) -> std::result::Result<(), OpError>;
        /// `BEGIN` and an insert into the scratch table.
        fn begin(conn: &mut Raw<Self>, table: &str) -> std::result::Result<(), OpError>;
        /// `COMMIT` or `ROLLBACK`.
        fn end(conn: &mut Raw<Self>, commit: bool) -> std::result::Result<(), OpError>;
        /// Sets the session variable naming the holder.
        fn set_owner(conn: &mut Raw<Self>, owner: &str) -> std::result::Result<(), OpError>;
        /// What the previous holder left in the session, if anything.
        fn session_state(
            conn: &mut Raw<Self>,
            check_trx: bool,
        ) -> std::result::Result<Option<String>, OpError>;
    }

    /// Quotes a string literal for SQL (`'` doubled; backslashes doubled
    /// too, for MySQL).
    fn quote(s: &str, backslashes: bool) -> String {
        let mut out = s.replace('\'', "''");
        if backslashes {
            out = out.replace('\\', "\\\\");
        }
        format!("'{out}'")
    }

    /// PostgreSQL through pool-postgres.
    pub(super) struct Pg {
        /// The monitoring connection's configuration (directly to the server).
        admin: postgres::Config,
        /// The pool's `application_name`, by which its sessions are found.
        app_name: String,
    }

    fn pg_error(e: postgres::Error) -> OpError {
        OpError {
            fatal: pool_postgres::is_connection_error(&e),
            message: pool_postgres::Error::from(e).to_string(),
        }
    }

    fn pg_op(
        conn: &mut PgConnection,
        sql: &str,
    ) -> std::result::Result<Vec<SimpleQueryMessage>, OpError> {
        conn.simple_query(sql).map_err(pg_error)
    }

    /// The rows of a simple query, each as its text columns.
    fn pg_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
        messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    fn pg_ids(messages: &[SimpleQueryMessage]) -> std::result::Result<Vec<u32>, String> {
        pg_rows(messages)
            .into_iter()
            .map(|row| {
                let text = row.into_iter().next().flatten().unwrap_or_default();
                text.parse::<u32>()
                    .map_err(|e| format!("unexpected server id {text:?}: {e}"))
            })
            .collect()
    }

    impl Dialect for Pg {
        type Inner = PostgresManager<NoTls>;
        type Admin = postgres::Client;
        type Server = PgServer;
        const HELPER_THREADS: &'static [&'static str] = &[DEADLINE_THREADS, "pool-postgres-io"];

        fn server_id(conn: &mut PgConnection) -> std::result::Result<u32, String> {
            let messages = pg_op(conn, "SELECT pg_backend_pid()").map_err(|e| e.message)?;
            pg_ids(&messages)?
                .first()
                .copied()
                .ok_or_else(|| "pg_backend_pid() returned no row".to_owned())
        }

        fn connect_admin(&self) -> std::result::Result<postgres::Client, String> {
            self.admin
                .connect(NoTls)
                .map_err(|e| pool_postgres::Error::from(e).to_string())
        }

        fn sessions(&self, admin: &mut postgres::Client) -> std::result::Result<Vec<u32>, String> {
            let sql = format!(
                "SELECT pid FROM pg_catalog.pg_stat_activity WHERE application_name = {}",
                quote(&self.app_name, false)
            );
            let messages = admin
                .simple_query(&sql)
                .map_err(|e| pool_postgres::Error::from(e).to_string())?;
            pg_ids(&messages)
        }

        fn kill(
            &self,
            admin: &mut postgres::Client,
            ids: &[u32],
        ) -> std::result::Result<u64, String> {
            if ids.is_empty() {
                return Ok(0);
            }
            let list: Vec<String> = ids.iter().map(u32::to_string).collect();
            // Only sessions that are still the pool's (a pid may be reused).
            let sql = format!(
                "SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid)) \
                 FROM pg_catalog.pg_stat_activity WHERE application_name = {} AND pid IN ({})",
                quote(&self.app_name, false),
                list.join(", ")
            );
            let messages = admin
                .simple_query(&sql)
                .map_err(|e| pool_postgres::Error::from(e).to_string())?;
            Ok(pg_ids(&messages)?.first().copied().map_or(0, u64::from))
        }

        fn drop_table(
            admin: &mut postgres::Client,
            table: &str,
        ) -> std::result::Result<(), String> {
            admin
                .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
                .map_err(|e| pool_postgres::Error::from(e).to_string())
        }

        fn stop(server: &mut PgServer) -> io::Result<()> {
            server.stop()
        }

        fn start_again(server: &mut PgServer) -> io::Result<()> {
            server.start_again()
        }

        fn is_running(server: &PgServer) -> bool {
            server.is_running()
        }

        fn query(conn: &mut PgConnection) -> std::result::Result<(), OpError> {
            pg_op(conn, "SELECT 1").map(drop)
        }

        fn begin(conn: &mut PgConnection, table: &str) -> std::result::Result<(), OpError> {
            pg_op(conn, &format!("BEGIN; INSERT INTO {table} DEFAULT VALUES")).map(drop)
        }

        fn end(conn: &mut PgConnection, commit: bool) -> std::result::Result<(), OpError> {
            pg_op(conn, if commit { "COMMIT" } else { "ROLLBACK" }).map(drop)
        }

        fn set_owner(conn: &mut PgConnection, owner: &str) -> std::result::Result<(), OpError> {
            pg_op(conn, &format!("SET stress.owner = {}", quote(owner, false))).map(drop)
        }

        fn session_state(
            conn: &mut PgConnection,
            _check_trx: bool,
        ) -> std::result::Result<Option<String>, OpError> {
            // Outside a transaction block a statement starts its own
            // transaction, so now() (the transaction's start) equals
            // statement_timestamp(); in a block left open they differ. After
            // a reset the custom setting reads as '' (or NULL if never set).
            let sql = "SELECT coalesce(current_setting('stress.owner', true), ''), \
                       now() = statement_timestamp()";
            let messages = match conn.simple_query(sql) {
                Ok(messages) => messages,
                Err(e)
                    if e.code() == Some(&postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION) =>
                {
                    return Ok(Some("a failed transaction".to_owned()));
                }
                Err(e) => return Err(pg_error(e)),
            };
            let rows = pg_rows(&messages);
            let Some([owner, fresh]) = rows.first().map(|r| [r.first(), r.get(1)]) else {
                return Err(OpError {
                    fatal: false,
                    message: "the session check returned no row".to_owned(),
                });
            };
            let owner = owner.cloned().flatten().unwrap_or_default();
            let mut found = Vec::new();
            if !owner.is_empty() {
                found.push(format!("stress.owner = '{owner}'"));
            }
            if fresh.cloned().flatten().as_deref() != Some("t") {
                found.push("an open transaction".to_owned());
            }
            Ok((!found.is_empty()).then(|| found.join(", ")))
        }
    }

    /// MySQL/MariaDB through pool-mysql.
    pub(super) struct My {
        /// The monitoring connection's options (directly to the server).
        admin: mysql::Opts,
        /// The pool's user, by which its sessions are found.
        pool_user: String,
    }

    fn my_error(e: mysql::Error) -> OpError {
        OpError {
            fatal: pool_mysql::is_connection_error(&e),
            message: e.to_string(),
        }
    }

    fn my_op(conn: &mut MysqlConnection, sql: &str) -> std::result::Result<(), OpError> {
        conn.query_drop(sql).map_err(my_error)
    }

    impl Dialect for My {
        type Inner = MysqlManager;
        type Admin = mysql::Conn;
        type Server = MariaDbServer;
        const HELPER_THREADS: &'static [&'static str] = &[DEADLINE_THREADS, "pool-mysql-io"];

        fn server_id(conn: &mut MysqlConnection) -> std::result::Result<u32, String> {
            // The handshake's thread id: CONNECTION_ID(), with no round trip.
            Ok(conn.connection_id())
        }

        fn connect_admin(&self) -> std::result::Result<mysql::Conn, String> {
            mysql::Conn::new(self.admin.clone()).map_err(|e| e.to_string())
        }

        fn sessions(&self, admin: &mut mysql::Conn) -> std::result::Result<Vec<u32>, String> {
            let sql = format!(
                "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE USER = {} AND ID <> CONNECTION_ID()",
                quote(&self.pool_user, true)
            );
            admin.query::<u32, _>(sql).map_err(|e| e.to_string())
        }

        fn kill(&self, admin: &mut mysql::Conn, ids: &[u32]) -> std::result::Result<u64, String> {
            let mut killed = 0;
            for id in ids {
                match admin.query_drop(format!("KILL CONNECTION {id}")) {
                    Ok(()) => killed += 1,
                    // 1094 unknown thread: it ended meanwhile.
                    Err(mysql::Error::MySqlError(e)) if e.code == 1094 => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(killed)
        }

        fn drop_table(admin: &mut mysql::Conn, table: &str) -> std::result::Result<(), String> {
            admin
                .query_drop(format!("DROP TABLE IF EXISTS {table}"))
                .map_err(|e| e.to_string())
        }

        fn stop(server: &mut MariaDbServer) -> io::Result<()> {
            server.stop()
        }

        fn start_again(server: &mut MariaDbServer) -> io::Result<()> {
            server.start_again()
        }

        fn is_running(server: &MariaDbServer) -> bool {
            server.is_running()
        }

        fn query(conn: &mut MysqlConnection) -> std::result::Result<(), OpError> {
            my_op(conn, "SELECT 1")
        }

        fn begin(conn: &mut MysqlConnection, table: &str) -> std::result::Result<(), OpError> {
            my_op(conn, "BEGIN")?;
            my_op(conn, &format!("INSERT INTO {table} () VALUES ()"))
        }

        fn end(conn: &mut MysqlConnection, commit: bool) -> std::result::Result<(), OpError> {
            my_op(conn, if commit { "COMMIT" } else { "ROLLBACK" })
        }

        fn set_owner(conn: &mut MysqlConnection, owner: &str) -> std::result::Result<(), OpError> {
            my_op(conn, &format!("SET @stress_owner = {}", quote(owner, true)))
        }

        fn session_state(
            conn: &mut MysqlConnection,
            check_trx: bool,
        ) -> std::result::Result<Option<String>, OpError> {
            let (owner, in_trx) = if check_trx {
                conn.query_first::<(Option<String>, i64), _>(
                    "SELECT @stress_owner, @@in_transaction",
                )
                .map_err(my_error)?
                .unwrap_or_default()
            } else {
                let owner = conn
                    .query_first::<Option<String>, _>("SELECT @stress_owner")
                    .map_err(my_error)?
                    .flatten();
                (owner, 0)
            };
            let mut found = Vec::new();
            if let Some(owner) = owner {
                found.push(format!("@stress_owner = '{owner}'"));
            }
            if in_trx != 0 {
                found.push("an open transaction".to_owned());
            }
            Ok((!found.is_empty()).then(|| found.join(", ")))
        }
    }

    // ------------------------------------------------------------ backend

    /// Chaos events of the real backends.
    const KILL_ALL: &str = "kill all backends";
    const KILL_SOME: &str = "kill some backends";
    const RESTART: &str = "restart server";
    const NET_LATENCY: &str = "net: latency";
    const NET_BLACKHOLE: &str = "net: black hole";
    const NET_RESET: &str = "net: reset";
    const NET_REFUSE: &str = "net: refuse connects";

    /// The monitoring connection, reconnected on demand.
    struct Admin<A> {
        conn: Option<A>,
        last_attempt: Option<Instant>,
    }

    /// A real database as a stress [`Backend`].
    pub(super) struct Real<D: Dialect> {
        dialect: D,
        manager: TrackingManager<D>,
        ctx: Arc<Ctx>,
        description: String,
        /// Whether the scratch table lives on a server of our own (dropped
        /// with it) rather than one given by `--url` (dropped at the end).
        local: bool,
        admin: parking_lot::Mutex<Admin<D::Admin>>,
        /// Chaos events still to come in the current cycle.
        menu: parking_lot::Mutex<Vec<&'static str>>,
        /// Largest number of pool sessions the server showed at once, also
        /// counting sessions the pool had already closed.
        server_peak_raw: AtomicU64,
        /// Most sessions the pool had closed that the server still showed.
        server_lagging_max: AtomicU64,
        monitor_failures: AtomicU64,
        samples: AtomicU64,
        killed: AtomicU64,
        restarts: AtomicU64,
        restart_failures: AtomicU64,
        restart_ms_max: AtomicU64,
        /// The pool's `max_size`.
        max_size: u32,
        /// Freeze and capacity faults, the server's own session count and
        /// when the database was down (see [`crate::stress_faults`]).
        watch: ServerWatch,
        // Dropped last, in this order: the proxy, then the server.
        proxy: Option<FaultProxy>,
        server: Option<parking_lot::Mutex<D::Server>>,
    }

    impl<D: Dialect> Real<D> {
        /// The pool's sessions on the server now, in the current generation's
        /// ids; None when the server cannot be asked.
        fn sessions_now(&self) -> Option<Vec<u64>> {
            let mut admin = self.admin.lock();
            if admin.conn.is_none() {
                if admin
                    .last_attempt
                    .is_some_and(|t| t.elapsed() < MONITOR_RETRY)
                {
                    return None;
                }
                admin.last_attempt = Some(Instant::now());
                match self.dialect.connect_admin() {
                    Ok(conn) => admin.conn = Some(conn),
                    Err(_) => {
                        self.monitor_failures.fetch_add(1, Ordering::Relaxed);
                        self.watch.seen_down();
                        return None;
                    }
                }
            }
            let conn = admin.conn.as_mut()?;
            match self.dialect.sessions(conn) {
                Ok(ids) => {
                    self.samples.fetch_add(1, Ordering::Relaxed);
                    let ledger = &self.ctx.ledger;
                    Some(ids.into_iter().map(|id| ledger.id_now(id)).collect())
                }
                Err(_) => {
                    admin.conn = None;
                    self.monitor_failures.fetch_add(1, Ordering::Relaxed);
                    self.watch.seen_down();
                    None
                }
            }
        }

        /// Kills all or some of the pool's sessions.
        fn kill(&self, rng: &mut fastrand::Rng, all: bool) {
            let Some(mut ids) = self.sessions_now() else {
                return;
            };
            if !all {
                rng.shuffle(&mut ids);
                let keep = (ids.len() * rng.usize(25..=50) / 100).max(1);
                ids.truncate(keep);
            }
            let server_ids: Vec<u32> = ids.iter().map(|&id| id as u32).collect();
            let mut admin = self.admin.lock();
            if let Some(conn) = admin.conn.as_mut() {
                match self.dialect.kill(conn, &server_ids) {
                    Ok(n) => {
                        self.killed.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(_) => admin.conn = None,
                }
            }
        }

        /// Stops the server and starts it again.
        fn restart(&self) {
            let Some(server) = &self.server else { return };
            let mut server = server.lock();
            self.watch.down_begins();
            let started = Instant::now();
            if let Err(e) = D::stop(&mut server) {
                eprintln!("stress: chaos: stopping the server failed: {e}");
            }
            // Sessions of the next server are a new generation of ids.
            self.ctx.ledger.epoch.fetch_add(1, Ordering::SeqCst);
            match D::start_again(&mut server) {
                Ok(()) => {
                    self.restarts.fetch_add(1, Ordering::Relaxed);
                    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    self.restart_ms_max.fetch_max(ms, Ordering::Relaxed);
                }
                Err(e) => {
                    self.restart_failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!("stress: chaos: starting the server again failed: {e}");
                }
            }
            self.watch.down_ends();
        }

        /// A freeze or a capacity limit of the throwaway server, for two to
        /// four seconds (see [`crate::stress_faults`]).
        fn server_fault(&self, event: &str, rng: &mut fastrand::Rng, stop: &AtomicBool) {
            let Some(server) = &self.server else { return };
            let server = server.lock();
            let hold = Duration::from_millis(rng.u64(2000..4000));
            let result = if event == FREEZE {
                self.watch.freeze(&*server, hold, stop)
            } else {
                let limit = (self.max_size / 2).max(1);
                self.watch.limit(&*server, limit, hold, stop)
            };
            if let Err(e) = result {
                eprintln!("stress: chaos: {event} failed: {e}");
            }
        }

        /// Puts the proxy back to pass-through; a black hole ends with a
        /// reset of every connection it swallowed.
        fn heal_network(&self) {
            if let Some(proxy) = &self.proxy {
                if proxy.mode() == FaultMode::Blackhole {
                    proxy.set_mode(FaultMode::Reset);
                }
                if proxy.mode() != FaultMode::PassThrough {
                    proxy.set_mode(FaultMode::PassThrough);
                }
            }
        }
    }

    /// Sleeps `d` in small steps, returning early once `stop` is set.
    fn hold(d: Duration, stop: &AtomicBool) {
        let until = Instant::now() + d;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    impl<D: Dialect> Backend for Real<D> {
        type Manager = TrackingManager<D>;

        fn describe(&self) -> String {
            self.description.clone()
        }
        fn manager(&self) -> TrackingManager<D> {
            self.manager.clone()
        }
        fn conn_id(conn: &Tracked<Raw<D>>) -> u64 {
            conn.id
        }
        fn query(conn: &mut Tracked<Raw<D>>) -> std::result::Result<(), OpError> {
            D::query(conn.parts().0)
        }
        fn begin(conn: &mut Tracked<Raw<D>>) -> std::result::Result<(), OpError> {
            let (raw, ctx) = conn.parts();
            D::begin(raw, &ctx.table)
        }
        fn end(conn: &mut Tracked<Raw<D>>, commit: bool) -> std::result::Result<(), OpError> {
            D::end(conn.parts().0, commit)
        }
        fn set_owner(conn: &mut Tracked<Raw<D>>, owner: &str) -> std::result::Result<(), OpError> {
            D::set_owner(conn.parts().0, owner)
        }
        fn session_state(
            conn: &mut Tracked<Raw<D>>,
        ) -> std::result::Result<Option<String>, OpError> {
            let (raw, ctx) = conn.parts();
            D::session_state(raw, ctx.check_trx)
        }

        fn server_open(&self) -> Option<usize> {
            let ids = self.sessions_now()?;
            let book = self.ctx.ledger.book.lock();
            // A session the pool closed is excused while the server reaps
            // it, unless its id is live again (reused by a new session).
            let counted = ids
                .iter()
                .filter(|id| book.live.contains_key(id) || !book.closed.contains(id))
                .count();
            let closed_so_far = book.closed_count;
            drop(book);
            // The server's own count of the pool user's sessions, in a
            // separate client; skipped while the chaos holds the server.
            if let Some(server) = self.server.as_ref().and_then(|s| s.try_lock()) {
                self.watch
                    .sample(&*server, self.max_size, closed_so_far, || {
                        format!("({} listed by the monitor)", ids.len())
                    });
            }
            self.server_peak_raw
                .fetch_max(ids.len() as u64, Ordering::Relaxed);
            self.server_lagging_max
                .fetch_max((ids.len() - counted) as u64, Ordering::Relaxed);
            Some(counted)
        }

        fn server_peak(&self) -> Option<usize> {
            Some(self.ctx.ledger.book.lock().peak_live)
        }

        fn chaos(&self, rng: &mut fastrand::Rng, stop: &AtomicBool) -> Option<&'static str> {
            let event = {
                let mut menu = self.menu.lock();
                if menu.is_empty() {
                    menu.extend([KILL_ALL, KILL_SOME]);
                    if self.server.is_some() {
                        menu.extend([RESTART, FREEZE, CAPACITY]);
                    }
                    if self.proxy.is_some() {
                        menu.extend([NET_LATENCY, NET_BLACKHOLE, NET_RESET, NET_REFUSE]);
                    }
                    rng.shuffle(&mut menu);
                }
                menu.pop()?
            };
            let fault = match event {
                KILL_ALL => {
                    self.kill(rng, true);
                    None
                }
                KILL_SOME => {
                    self.kill(rng, false);
                    None
                }
                RESTART => {
                    self.restart();
                    None
                }
                FREEZE | CAPACITY => {
                    self.server_fault(event, rng, stop);
                    None
                }
                NET_LATENCY => Some(FaultMode::Latency(Duration::from_millis(rng.u64(10..100)))),
                NET_BLACKHOLE => Some(FaultMode::Blackhole),
                NET_RESET => Some(FaultMode::Reset),
                _ => Some(FaultMode::Refuse),
            };
            if let (Some(mode), Some(proxy)) = (fault, &self.proxy) {
                // Latency slows the database down; the others cut it off.
                let down = !matches!(mode, FaultMode::Latency(_));
                if down {
                    self.watch.down_begins();
                }
                proxy.set_mode(mode);
                hold(Duration::from_millis(rng.u64(1000..2000)), stop);
                self.heal_network();
                if down {
                    self.watch.down_ends();
                }
            }
            Some(event)
        }

        fn heal(&self) {
            self.heal_network();
            if let Some(server) = &self.server {
                let mut server = server.lock();
                if !D::is_running(&server) {
                    if let Err(e) = D::start_again(&mut server) {
                        eprintln!("stress: cannot start the server again: {e}");
                    }
                }
            }
        }

        fn audit_closed(&self) -> std::result::Result<String, String> {
            let book = self.ctx.ledger.book.lock();
            let summary = format!(
                "{} opened, {} closed by the pool",
                book.opened, book.closed_count
            );
            if book.live_count == 0 && book.closed_unknown == 0 && book.opened == book.closed_count
            {
                Ok(summary)
            } else {
                let mut open: Vec<String> =
                    book.live.keys().map(|&id| super::show_id(id)).collect();
                open.sort();
                Err(format!(
                    "{summary}: {} still open ({}), {} closed twice or unknown",
                    book.live_count,
                    open.join(", "),
                    book.closed_unknown
                ))
            }
        }

        fn wait_all_closed(&self, timeout: Duration) -> bool {
            let deadline = Instant::now() + timeout;
            loop {
                if self.sessions_now().is_some_and(|ids| ids.is_empty()) {
                    return true;
                }
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }

        fn counters(&self) -> BTreeMap<&'static str, u64> {
            let l = &self.ctx.ledger;
            let book = l.book.lock();
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            let mut map = BTreeMap::from([
                ("opened", book.opened),
                ("closed", book.closed_count),
                ("closed_twice", book.closed_unknown),
                ("connect_attempts", get(&l.connect_attempts)),
                ("connect_failures", get(&l.connect_failures)),
                ("resets", get(&l.resets)),
                ("reset_failures", get(&l.reset_failures)),
                ("validations", get(&l.validations)),
                ("validation_failures", get(&l.validation_failures)),
                ("peak_open", book.peak_live as u64),
                ("server_peak_raw", get(&self.server_peak_raw)),
                ("server_lagging_max", get(&self.server_lagging_max)),
                ("server_samples", get(&self.samples)),
                ("monitor_failures", get(&self.monitor_failures)),
            ]);
            if self.server.is_some() || get(&self.killed) > 0 {
                map.insert("killed_backends", get(&self.killed));
            }
            if self.server.is_some() {
                map.insert("restarts", get(&self.restarts));
                map.insert("restart_failures", get(&self.restart_failures));
                map.insert("restart_ms_max", get(&self.restart_ms_max));
            }
            map
        }

        fn sample_every(&self) -> Duration {
            SAMPLE_EVERY
        }

        fn helper_threads(&self) -> &'static [&'static str] {
            D::HELPER_THREADS
        }

        /// Whatever the chaos flag: the run knows when it made the database
        /// unreachable, and the monitor sees when it is.
        fn fail_fast_expected(&self, _chaos: bool) -> bool {
            self.watch.down_recently()
        }

        fn extra_verdicts(&self) -> Vec<(&'static str, bool, String, Vec<String>)> {
            if self.server.is_none() {
                return Vec::new();
            }
            let w = &self.watch;
            let (violations, messages) = w.violations();
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            vec![(
                "the server's own count of the pool user's sessions never above max_size",
                violations == 0,
                format!(
                    "{violations} sample(s) above max_size {} beyond the closes still lagging; \
                     peak {} in {} samples ({} failed); {} freeze(s), {} capacity limit(s)",
                    self.max_size,
                    get(&w.peak),
                    get(&w.samples),
                    get(&w.sample_failures),
                    get(&w.freezes),
                    get(&w.limits),
                ),
                messages,
            )]
        }
    }

    impl<D: Dialect> Drop for Real<D> {
        fn drop(&mut self) {
            // A server of our own goes away with its data; on a server given
            // by --url, remove the scratch table.
            if self.local {
                return;
            }
            let mut admin = self.admin.lock();
            let conn = match admin.conn.take() {
                Some(conn) => Ok(conn),
                None => self.dialect.connect_admin(),
            };
            if let Err(e) = conn.and_then(|mut conn| D::drop_table(&mut conn, &self.ctx.table)) {
                eprintln!(
                    "stress: could not drop the scratch table {}: {e}",
                    self.ctx.table
                );
            }
        }
    }

    // ------------------------------------------------------------ set-up

    /// Where a run's server is and how it is reached.
    struct Setup<S> {
        /// The pool's URL (through the proxy, if any).
        pool_url: String,
        /// The monitoring connection's URL (directly to the server).
        admin_url: String,
        /// What the report calls the server.
        place: String,
        server: Option<S>,
        proxy: Option<FaultProxy>,
    }

    /// Starts a throwaway server (and, with chaos, a fault proxy in front of
    /// it) for `--local`, or takes `--url`.
    fn setup<S>(
        args: &StressArgs,
        what: &str,
        start: impl FnOnce() -> io::Result<S>,
        addr: impl Fn(&S) -> std::net::SocketAddr,
        urls: impl Fn(&S, Option<std::net::SocketAddr>) -> (String, String),
    ) -> Result<Setup<S>> {
        if let Some(url) = &args.url {
            return Ok(Setup {
                pool_url: url.clone(),
                admin_url: url.clone(),
                place: format!("at {}", redact_url(url)),
                server: None,
                proxy: None,
            });
        }
        eprintln!("stress: starting a throwaway {what} server (pool-testkit)");
        let started = Instant::now();
        let server = start().map_err(|e| format!("cannot start a throwaway {what} server: {e}"))?;
        let proxy = if args.chaos {
            Some(
                FaultProxy::start(addr(&server))
                    .map_err(|e| format!("cannot start the fault proxy: {e}"))?,
            )
        } else {
            None
        };
        let (pool_url, admin_url) = urls(&server, proxy.as_ref().map(FaultProxy::addr));
        let place = match &proxy {
            Some(p) => format!(
                "throwaway server at {}, pool through a fault proxy at {}, started in {}",
                addr(&server),
                p.addr(),
                super::util::human(started.elapsed())
            ),
            None => format!(
                "throwaway server at {}, started in {}",
                addr(&server),
                super::util::human(started.elapsed())
            ),
        };
        Ok(Setup {
            pool_url,
            admin_url,
            place,
            server: Some(server),
            proxy,
        })
    }

    /// The scratch table of this process.
    fn scratch_table() -> String {
        format!("xtask_stress_{}", std::process::id())
    }

    /// Builds a real backend from its parts.
    fn assemble<D: Dialect>(
        dialect: D,
        inner: D::Inner,
        ctx: Ctx,
        description: String,
        setup: Setup<D::Server>,
        max_size: u32,
    ) -> Real<D> {
        let ctx = Arc::new(ctx);
        Real {
            dialect,
            manager: TrackingManager {
                inner,
                ctx: ctx.clone(),
            },
            ctx,
            description,
            local: setup.server.is_some(),
            admin: parking_lot::Mutex::new(Admin {
                conn: None,
                last_attempt: None,
            }),
            menu: parking_lot::Mutex::new(Vec::new()),
            server_peak_raw: AtomicU64::new(0),
            server_lagging_max: AtomicU64::new(0),
            monitor_failures: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            killed: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            restart_failures: AtomicU64::new(0),
            restart_ms_max: AtomicU64::new(0),
            max_size,
            watch: ServerWatch::default(),
            proxy: setup.proxy,
            server: setup.server.map(parking_lot::Mutex::new),
        }
    }

    /// The PostgreSQL backend of `--url` or `--local`.
    pub(super) fn postgres(args: &StressArgs) -> Result<Real<Pg>> {
        let setup = setup(
            args,
            "PostgreSQL",
            PgServer::start,
            PgServer::addr,
            |server, via| {
                // The pool logs in as the superuser (trust authentication):
                // an unoptimised (dev profile) build spends about 50 ms of
                // CPU on each SCRAM-SHA-256 login of the password user,
                // which would make the run connect-bound. Under chaos it
                // logs in as the password user all the same: superusers are
                // exempt from the role connection limit of the capacity
                // fault, and the server's own session count is that user's.
                let addr = via.unwrap_or_else(|| server.addr());
                let pool = if args.chaos {
                    server.url_via(addr)
                } else {
                    format!("postgres://{PG_SUPERUSER}@{addr}/{PG_DATABASE}")
                };
                (pool, server.superuser_url())
            },
        )?;
        // Pool settings in the URL are ignored: the run's plan sets them.
        let (from_url, _) = PostgresManager::from_url(&setup.pool_url)?;
        let app_name = format!("xtask-stress-{}", std::process::id());
        let mut config = from_url.config().clone();
        config.application_name(&app_name);
        let inner = PostgresManager::new(config.clone(), NoTls);

        let (admin_manager, _) = PostgresManager::from_url(&setup.admin_url)?;
        let mut admin = admin_manager.config().clone();
        admin
            .application_name("xtask-stress-monitor")
            .connect_timeout(ADMIN_CONNECT_TIMEOUT);

        // The scratch table, created by the pool's own user.
        let table = scratch_table();
        config
            .application_name("xtask-stress-setup")
            .connect_timeout(ADMIN_CONNECT_TIMEOUT);
        let mut client = config
            .connect(NoTls)
            .map_err(|e| format!("cannot connect: {}", pool_postgres::Error::from(e)))?;
        let messages = client
            .simple_query(&format!(
                "SHOW server_version; CREATE TABLE IF NOT EXISTS {table} \
                 (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
            ))
            .map_err(|e| format!("cannot set up: {}", pool_postgres::Error::from(e)))?;
        drop(client);
        let version = pg_rows(&messages)
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten())
            .unwrap_or_default();
        let description = format!("PostgreSQL {version} ({})", setup.place);
        let ctx = Ctx {
            ledger: Ledger::default(),
            table,
            check_trx: true,
        };
        Ok(assemble(
            Pg { admin, app_name },
            inner,
            ctx,
            description,
            setup,
            args.pool_size,
        ))
    }

    /// The MySQL/MariaDB backend of `--url` or `--local`.
    pub(super) fn mysql(args: &StressArgs) -> Result<Real<My>> {
        let setup = setup(
            args,
            "MariaDB",
            MariaDbServer::start,
            MariaDbServer::addr,
            |server, via| {
                let pool = via.map_or_else(|| server.url(), |addr| server.url_via(addr));
                (pool, server.root_url())
            },
        )?;
        // Pool settings in the URL are ignored: the run's plan sets them.
        let (inner, _) = MysqlManager::from_url(&setup.pool_url)?;
        let pool_user = inner.opts().get_user().unwrap_or_default().to_owned();
        let (admin_manager, _) = MysqlManager::from_url(&setup.admin_url)?;
        let admin: mysql::Opts = OptsBuilder::from_opts(admin_manager.opts().clone())
            .tcp_connect_timeout(Some(ADMIN_CONNECT_TIMEOUT))
            .into();

        // The scratch table, created by the pool's own user.
        let table = scratch_table();
        let mut conn = mysql::Conn::new(
            OptsBuilder::from_opts(inner.opts().clone())
                .tcp_connect_timeout(Some(ADMIN_CONNECT_TIMEOUT)),
        )
        .map_err(|e| format!("cannot connect: {e}"))?;
        let version: String = conn
            .query_first("SELECT VERSION()")
            .map_err(|e| format!("cannot set up: {e}"))?
            .unwrap_or_default();
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
             at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"
        ))
        .map_err(|e| format!("cannot set up: {e}"))?;
        // MariaDB tells whether a transaction is open; MySQL does not.
        let check_trx = conn.query_drop("SELECT @@in_transaction").is_ok();
        drop(conn);
        let kind = if version.contains("MariaDB") {
            "MariaDB"
        } else {
            "MySQL"
        };
        let description = format!(
            "{kind} {version} ({}{})",
            setup.place,
            if check_trx {
                ""
            } else {
                "; open transactions not checked: no @@in_transaction"
            }
        );
        let ctx = Ctx {
            ledger: Ledger::default(),
            table,
            check_trx,
        };
        Ok(assemble(
            My { admin, pool_user },
            inner,
            ctx,
            description,
            setup,
            args.pool_size,
        ))
    }
    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn literals_are_quoted() {
            assert_eq!(quote("worker-1", false), "'worker-1'");
            assert_eq!(quote("o'neil", false), "'o''neil'");
            assert_eq!(quote(r"a\b", true), r"'a\\b'");
        }

        #[test]
        fn the_ledger_counts_opens_and_closes() {
            let ledger = Ledger::default();
            ledger.opened(ledger.id_now(7));
            ledger.opened(ledger.id_now(8));
            ledger.closed(7);
            // A close of a connection that is not open is never expected.
            ledger.closed(7);
            let book = ledger.book.lock();
            assert_eq!(
                (book.opened, book.closed_count, book.closed_unknown),
                (2, 1, 1)
            );
            assert_eq!((book.live_count, book.peak_live), (1, 2));
            assert!(book.closed.contains(&7) && book.live.contains_key(&8));
        }

        #[test]
        fn ids_after_a_restart_are_a_new_generation() {
            let ledger = Ledger::default();
            let before = ledger.id_now(42);
            ledger.epoch.fetch_add(1, Ordering::SeqCst);
            let after = ledger.id_now(42);
            assert_ne!(before, after);
            assert_eq!(super::super::show_id(before), "42");
            assert_eq!(super::super::show_id(after), "1:42");
        }

        #[test]
        fn a_reused_id_is_open_again() {
            let ledger = Ledger::default();
            ledger.opened(5);
            ledger.closed(5);
            ledger.opened(5);
            let book = ledger.book.lock();
            assert!(book.live.contains_key(&5) && !book.closed.contains(&5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_names_match_their_cut_comm() {
        assert!(thread_name_matches("pool-postgres-io", "pool-postgres-i"));
        assert!(thread_name_matches("pool-mysql-io", "pool-mysql-io"));
        assert!(!thread_name_matches("pool-mysql-io", "pool-mysql"));
        assert!(!thread_name_matches("pool-postgres-io", "stress-1"));
    }

    #[test]
    fn real_backends_need_url_or_local() {
        for backend in [BackendKind::Postgres, BackendKind::Mysql] {
            let neither = StressArgs {
                backend,
                ..StressArgs::default()
            };
            let err = run(&neither).unwrap_err().to_string();
            assert!(err.contains("--url") && err.contains("--local"), "{err}");
            let both = StressArgs {
                backend,
                url: Some("postgres://h/db".into()),
                local: true,
                ..StressArgs::default()
            };
            assert!(run(&both).is_err());
        }
        let sim = StressArgs {
            local: true,
            ..StressArgs::default()
        };
        assert!(run(&sim).is_err());
    }

    #[test]
    fn schedstat_is_read_afresh_each_time() {
        let Some(before) = schedstat(0) else {
            // Kernels without schedstats: the get check falls back.
            return;
        };
        assert!(run_delay().is_some());
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(20) {}
        // The CPU time went up: the file was not served from a cache.
        assert!(schedstat(0).is_some_and(|after| after > before));
    }
}
