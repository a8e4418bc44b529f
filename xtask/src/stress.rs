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
//! # Invariants
//!
//! Checked while running and at the end; any violation makes the task fail:
//!
//! - the backend never sees more open connections than `max_size`;
//! - no connection is lent to two holders at once;
//! - every `get` returns (a connection, a timeout or a closed error) within
//!   its timeout plus 100 ms;
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
        BackendKind::Postgres | BackendKind::Mysql => Err(format!(
            "the {:?} backend is not wired into xtask yet (it needs crates pool-postgres / \
             pool-mysql and, for --local, pool-testkit); use --backend sim",
            args.backend
        )
        .into()),
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
    fatal: bool,
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
    /// Whether the session is as a new borrower must find it.
    fn session_clean(conn: &mut Conn<Self>) -> bool;
    /// Connections open on the server now, as the server counts them.
    fn server_open(&self) -> usize;
    /// The most connections open at once so far, if the backend tracks it.
    fn server_peak(&self) -> Option<usize>;
    /// Causes one random failure; returns its name, or None without chaos support.
    fn chaos(&self, rng: &mut fastrand::Rng) -> Option<&'static str>;
    /// Ends every failure mode.
    fn heal(&self);
    /// The audit after the pool is closed and dropped: every connection closed
    /// exactly once, none used by two holders.
    fn audit_closed(&self) -> std::result::Result<(), String>;
    /// Waits until the server sees no open connection; false on timeout.
    fn wait_all_closed(&self, timeout: Duration) -> bool;
    /// Backend counters for the report.
    fn counters(&self) -> BTreeMap<&'static str, u64>;
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
    fn session_clean(conn: &mut SimConn) -> bool {
        conn.is_session_clean()
    }
    fn server_open(&self) -> usize {
        self.db.open_count()
    }
    fn server_peak(&self) -> Option<usize> {
        Some(self.db.stats().peak_open)
    }
    fn chaos(&self, rng: &mut fastrand::Rng) -> Option<&'static str> {
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
    fn audit_closed(&self) -> std::result::Result<(), String> {
        self.db.verify_all_closed()
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
    start: Instant,
}

impl<B: Backend> Shared<B> {
    fn phase(&self) -> Phase {
        Phase::ALL[usize::from(self.phase.load(Ordering::Relaxed))]
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
    conn: Option<PooledConnection<B::Manager>>,
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
    let start = Instant::now();
    let result = match how {
        Acquire::Get => shared.pool.get(),
        Acquire::Timeout(t) => shared.pool.get_timeout(t),
        Acquire::Try => shared.pool.try_get(),
    };
    let waited = start.elapsed();
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
        // Judged at the end against the machine's measured scheduling delay.
        shared.counters.worst_overrun_us.fetch_max(
            u64::try_from((waited - limit).as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        shared.violations.report(
            V_GET_LATE,
            format!(
                "{how:?} returned after {waited:?} (limit {limit:?}) in phase {} ({})",
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
        Ok(mut conn) => {
            bump(&c.gets_ok);
            let id = B::conn_id(&conn);
            if !shared.held.lock().insert(id) {
                shared.violations.report(
                    V_DOUBLE_LEND,
                    format!("connection {id} was lent while another holder had it"),
                );
                // Do not return it through this holder: the other one owns it.
                std::mem::forget(conn);
                return None;
            }
            if !B::session_clean(&mut conn) {
                shared.violations.report(
                    V_SESSION,
                    format!("connection {id} was lent with the previous holder's session state"),
                );
            }
            Some(Held {
                shared,
                conn: Some(conn),
                id,
            })
        }
        Err(e) => {
            match e {
                pool_core::Error::Timeout { .. } => bump(match how {
                    Acquire::Get => &c.timeouts,
                    Acquire::Timeout(_) => &c.short_timeouts,
                    Acquire::Try => &c.try_misses,
                }),
                pool_core::Error::Closed { .. } => bump(&c.closed_errors),
                // Fail-fast while the (chaos-stricken) database is down.
                pool_core::Error::Connect { .. } if shared.chaos => {
                    bump(&c.connect_errors);
                    shared.note_fail_fast();
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
    while !stop.load(Ordering::Relaxed) {
        let open = shared.backend.server_open();
        max_seen.fetch_max(open as u64, Ordering::Relaxed);
        if open > max {
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
            shared.backend.chaos(&mut rng)
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

fn run_with<B: Backend>(backend: B, args: &StressArgs, seed: u64) -> Result {
    let baseline_threads = thread_count();
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
        start: Instant::now(),
    });
    let mut report = with_quiet_panics(|| drive(&shared, args, seed))?;
    // ---- after close: nothing open, everything closed once, no threads left.
    drop(shared);
    let all_closed = backend.wait_all_closed(Duration::from_secs(5));
    let audit = backend.audit_closed();
    let close_ok = all_closed && audit.is_ok();
    report.verdicts.push(Verdict {
        name: "after close: backend sees no connection, each closed exactly once",
        ok: close_ok,
        detail: match audit {
            Ok(()) => "ok".to_owned(),
            Err(e) => e,
        },
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while thread_count() > baseline_threads && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let threads_now = thread_count();
    let leftover: Vec<String> = {
        let mut before = baseline_names.clone();
        thread_names()
            .into_iter()
            .filter(|n| match before.iter().position(|b| b == n) {
                Some(i) => {
                    before.remove(i);
                    false
                }
                None => true,
            })
            .collect()
    };
    report.verdicts.push(Verdict {
        name: "no pool thread left running",
        ok: threads_now <= baseline_threads,
        detail: if threads_now <= baseline_threads {
            format!("{threads_now} thread(s), as before the run")
        } else {
            format!("{threads_now} threads, {baseline_threads} before the run; extra: {leftover:?}")
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
    idle_state_end: (u32, usize),
    max_open_sampled: u64,
    verdicts: Vec<Verdict>,
    violation_messages: Vec<(&'static str, Vec<String>)>,
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
            shared.backend.server_open(),
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
        if idle_shrink.is_none() && state.total == plan.min_idle && open == plan.min_idle as usize {
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
    verdicts.push(Verdict {
        name: "every get() returns within its timeout + 100 ms (ok, timeout or closed)",
        // A late return no larger than the scheduling delay the machine showed
        // at the same time is the scheduler's doing, not the pool's.
        ok: v.count(V_GET_BOUND) == 0 && get(&c.worst_overrun_us) <= get(&c.worst_sched_delay_us),
        detail: format!(
            "{} unexpected, {} late by up to {:?}, slowest {:?} (worst scheduling delay of a 1 ms \
             sleep: {:?})",
            v.count(V_GET_BOUND),
            v.count(V_GET_LATE),
            Duration::from_micros(get(&c.worst_overrun_us)),
            Duration::from_micros(get(&c.slowest_get_us)),
            Duration::from_micros(get(&c.worst_sched_delay_us))
        ),
    });
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
        V_SESSION,
        V_CLOSE,
        V_THREADS,
    ]
    .into_iter()
    .map(|k| (k, v.messages(k)))
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
                    self.idle_state_end.0, self.idle_state_end.1
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
            "ok": self.verdicts.iter().all(|v| v.ok),
        })
    }
}
