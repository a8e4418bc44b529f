// Over 800 lines: six scenarios of one suite; issue 19 plans leaks/{mod,scenarios,
// capture_log,valgrind}.rs.
//! `cargo xtask leaks`: the leak suite (issue 5), against the simulated
//! database.
//!
//! Six scenarios, each printed on stdout as one `[PASS]`, `[FAIL]` or
//! `[SKIP]` line, then a summary; the task fails if any scenario fails.
//!
//! 1. **A long loan is reported once, and its return too.** A named thread
//!    keeps a connection past the leak detection threshold while other loans
//!    keep waking the housekeeper: the pool must log exactly one WARN naming
//!    the `get()` call site (file and line in this file) and the thread, and
//!    exactly one INFO when the connection finally comes back.
//! 2. **A forgotten connection** (`std::mem::forget`) is reported by leak
//!    detection (`Pool::leaks` and the WARN), the pool keeps serving the
//!    other connections to other threads, and `close()` returns promptly
//!    (under 2 s) with an INFO line naming the leaked connection.
//! 3. **A thread panics while holding a connection**: the connection is
//!    closed, not leaked and never lent again (checked by database id), the
//!    next borrowers find clean sessions, and the database sees nothing open
//!    once the pool is closed.
//! 4. **Threads exit while holding connections** (in a local and in a
//!    `thread_local!`): the connections come back and the pool shows them
//!    idle again, unclosed.
//! 5. **The pool's own leaks**: thousands of build/use/close cycles (queries,
//!    session state, connections marked broken, detached, held by panicking
//!    threads, broken by the server, a database refusing connections every
//!    fourth cycle). After each cycle the database sees no open connection,
//!    every connection was closed exactly once, and the process has no more
//!    threads and open file descriptors than before the first cycle; at the
//!    end resident memory (VmRSS) may have grown by at most
//!    `--max-rss-growth-kib` since the warm-up (the first tenth).
//! 6. **Valgrind** (`--valgrind`): the suite runs again under memcheck, with
//!    `--valgrind-cycles` cycles and without scenario 2 (which forgets a
//!    loan on purpose); zero bytes may be definitely lost and memcheck may
//!    report no error. The run uses a copy of xtask built with
//!    `--cfg rustix_use_libc` into `<target>/leaks-valgrind`: rustix's own
//!    vDSO lookup crashes under valgrind (bytecodealliance/rustix#1559).
//!    Skipped when valgrind is not installed.
//!
//! Verdicts go to stdout, progress to stderr.
//! Scenarios 1 and 2 read the pool's log records through this module's own
//! [`log::Log`] implementation, installed in the process by this task only
//! (the other tasks install no logger); it records only while a scenario
//! listens.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use log::{Level, LevelFilter, Log, Metadata, Record};
use parking_lot::Mutex;
use pool_core::{Pool, PooledConnection};
use pool_sim::{SimConn, SimDb, SimManager};

use crate::stress::{thread_count, thread_names, with_quiet_panics, StressPanic};
use crate::util::{self, Result};

/// Arguments of `cargo xtask leaks`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LeaksArgs {
    /// How many pools scenario 5 builds, uses and closes.
    #[arg(long, default_value_t = 2000)]
    pub cycles: u32,
    /// Threads borrowing from each pool in scenario 5.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Allowed growth of resident memory (VmRSS) in scenario 5, from the end
    /// of the warm-up (the first tenth of the cycles) to the end, in KiB.
    #[arg(long, default_value_t = 8192)]
    pub max_rss_growth_kib: u64,
    /// Seed of the simulated databases.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also run the suite under valgrind's memcheck (scenario 6) and require
    /// zero bytes definitely lost; skipped if valgrind is not installed.
    #[arg(long)]
    pub valgrind: bool,
    /// Cycles of scenario 5 in the valgrind run (memcheck is slow).
    #[arg(long, default_value_t = 50)]
    pub valgrind_cycles: u32,
    /// Set by scenario 6 on the run under valgrind: skips scenario 2 (it
    /// forgets a loan on purpose), scenario 6 itself and the RSS check
    /// (memcheck's own memory use is not the pool's), and waits longer.
    #[arg(long, hide = true)]
    pub under_valgrind: bool,
}

impl Default for LeaksArgs {
    fn default() -> Self {
        LeaksArgs {
            cycles: 2000,
            threads: 4,
            max_rss_growth_kib: 8192,
            seed: 1,
            valgrind: false,
            valgrind_cycles: 50,
            under_valgrind: false,
        }
    }
}

impl LeaksArgs {
    /// The shorter run `cargo xtask ci` uses.
    pub fn ci() -> Self {
        LeaksArgs {
            cycles: 300,
            ..LeaksArgs::default()
        }
    }

    /// How long to wait for something the pool does in the background:
    /// generous, and more so under valgrind.
    fn patience(&self) -> Duration {
        if self.under_valgrind {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(5)
        }
    }

    /// The leak detection threshold of scenarios 1 and 2: short loans must
    /// stay well below it even on a loaded machine (or under valgrind).
    fn threshold(&self) -> Duration {
        if self.under_valgrind {
            Duration::from_millis(1000)
        } else {
            Duration::from_millis(200)
        }
    }
}

/// Runs `cargo xtask leaks`.
pub fn run(args: &LeaksArgs) -> Result {
    if args.cycles == 0 || args.threads == 0 || args.valgrind_cycles == 0 {
        return Err("--cycles, --threads and --valgrind-cycles must be at least 1".into());
    }
    let start = Instant::now();
    let outcomes = with_quiet_panics(|| run_scenarios(args));
    let count = |v: Verdict| outcomes.iter().filter(|o| o.verdict() == v).count();
    let (passed, failed, skipped) = (
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Skip),
    );
    println!(
        "leaks: {passed} passed, {failed} failed, {skipped} skipped in {}",
        util::human(start.elapsed())
    );
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} leak scenario(s) failed").into())
    }
}

/// Runs the six scenarios in order, printing each verdict as it comes.
fn run_scenarios(args: &LeaksArgs) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut record = |number: u8, title: &'static str, f: &mut dyn FnMut() -> Checked| {
        let started = Instant::now();
        let checked = panic::catch_unwind(AssertUnwindSafe(f))
            .unwrap_or_else(|p| Checked::Fail(format!("panicked: {}", panic_message(&*p))));
        let outcome = Outcome {
            number,
            title,
            checked,
            took: started.elapsed(),
        };
        println!("{outcome}");
        outcomes.push(outcome);
    };
    record(1, "long loan reported once, return reported", &mut || {
        long_loan(args).into()
    });
    record(
        2,
        "forgotten connection reported, pool keeps serving, close is prompt",
        &mut || {
            if args.under_valgrind {
                Checked::Skip(
                    "not run under valgrind: its mem::forget leaks a connection and its pool on \
                     purpose"
                        .into(),
                )
            } else {
                forgotten_connection(args).into()
            }
        },
    );
    record(
        3,
        "connection held by a panicking thread closed, never lent again",
        &mut || panicking_holder(args).into(),
    );
    record(
        4,
        "connections held by exiting threads come back idle",
        &mut || exiting_holders(args).into(),
    );
    record(
        5,
        "no growth in threads, fds or memory over build/use/close cycles",
        &mut || cycles(args).into(),
    );
    record(6, "valgrind memcheck: nothing definitely lost", &mut || {
        under_valgrind(args)
    });
    outcomes
}

// ============================================================== verdicts

/// What a scenario found: details on success, the reason otherwise.
enum Checked {
    /// Everything held; the details say what was seen.
    Pass(String),
    /// Something did not hold.
    Fail(String),
    /// Not run, and why.
    Skip(String),
}

impl From<std::result::Result<String, String>> for Checked {
    fn from(r: std::result::Result<String, String>) -> Self {
        match r {
            Ok(details) => Checked::Pass(details),
            Err(reason) => Checked::Fail(reason),
        }
    }
}

/// A scenario's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// `[PASS]`
    Pass,
    /// `[FAIL]`: the task fails.
    Fail,
    /// `[SKIP]`: not run.
    Skip,
}

/// One scenario's result line.
struct Outcome {
    /// The scenario's number, 1 to 6.
    number: u8,
    /// What the scenario checks.
    title: &'static str,
    /// What it found.
    checked: Checked,
    /// How long it ran.
    took: Duration,
}

impl Outcome {
    /// The verdict of `checked`.
    fn verdict(&self) -> Verdict {
        match self.checked {
            Checked::Pass(_) => Verdict::Pass,
            Checked::Fail(_) => Verdict::Fail,
            Checked::Skip(_) => Verdict::Skip,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (tag, details) = match &self.checked {
            Checked::Pass(d) => ("PASS", d),
            Checked::Fail(d) => ("FAIL", d),
            Checked::Skip(d) => ("SKIP", d),
        };
        write!(f, "[{tag}] {} {}: {details}", self.number, self.title)?;
        if self.verdict() != Verdict::Skip {
            write!(f, " ({})", util::human(self.took))?;
        }
        Ok(())
    }
}

/// The message of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string payload)".to_owned()
    }
}

/// Turns any error into a scenario failure message.
trait Context<T> {
    /// The error, prefixed with what was being done.
    fn context(self, what: &str) -> std::result::Result<T, String>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: &str) -> std::result::Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// Fails with `message` unless `condition` holds.
fn ensure(condition: bool, message: impl FnOnce() -> String) -> std::result::Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

// ============================================================== log capture

/// One log record, as captured.
#[derive(Debug, Clone)]
struct Captured {
    /// The record's level.
    level: Level,
    /// The formatted message.
    message: String,
}

/// The task's logger: keeps INFO-and-above records while a [`Recording`]
/// listens, and ignores everything otherwise (so the cycles of scenario 5
/// neither pay for formatting nor grow a buffer).
struct CaptureLogger {
    /// Whether a [`Recording`] listens.
    armed: AtomicBool,
    /// The records kept since the current recording started.
    records: Mutex<Vec<Captured>>,
}

/// The one instance, installed by [`install_logger`].
static LOGGER: CaptureLogger = CaptureLogger {
    armed: AtomicBool::new(false),
    records: parking_lot::const_mutex(Vec::new()),
};

impl Log for CaptureLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.armed.load(Ordering::Acquire) && metadata.level() <= Level::Info
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let message = record.args().to_string();
            self.records.lock().push(Captured {
                level: record.level(),
                message,
            });
        }
    }

    fn flush(&self) {}
}

/// Installs [`LOGGER`] as the process's logger, once; fails (every time) if
/// another logger was installed first.
fn install_logger() -> std::result::Result<(), String> {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    if *INSTALLED.get_or_init(|| log::set_logger(&LOGGER).is_ok()) {
        Ok(())
    } else {
        Err(
            "cannot capture the pool's log records: another logger is already installed in \
             this process (the leaks task must install its own)"
                .into(),
        )
    }
}

/// Captures the log records of one pool while it lives.
struct Recording {
    /// How the pool's messages start: `pool "<name>": `.
    prefix: String,
}

impl Recording {
    /// Starts capturing the records of the pool named `pool`.
    fn start(pool: &str) -> std::result::Result<Recording, String> {
        install_logger()?;
        LOGGER.records.lock().clear();
        LOGGER.armed.store(true, Ordering::Release);
        log::set_max_level(LevelFilter::Info);
        Ok(Recording {
            prefix: format!("pool \"{pool}\": "),
        })
    }

    /// This pool's records at `level` so far.
    fn at(&self, level: Level) -> Vec<String> {
        LOGGER
            .records
            .lock()
            .iter()
            .filter(|r| r.level == level && r.message.starts_with(&self.prefix))
            .map(|r| r.message.clone())
            .collect()
    }

    /// This pool's records at `level` that contain `needle`.
    fn matching(&self, level: Level, needle: &str) -> Vec<String> {
        let mut found = self.at(level);
        found.retain(|m| m.contains(needle));
        found
    }

    /// Waits up to `timeout` for a record at `level` containing `needle`.
    fn wait_for(&self, level: Level, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.matching(level, needle).is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        LOGGER.armed.store(false, Ordering::Release);
        log::set_max_level(LevelFilter::Off);
        LOGGER.records.lock().clear();
    }
}

// ============================================================== helpers

/// A fast simulated database.
fn sim_db(seed: u64) -> SimDb {
    SimDb::builder()
        .connect_latency(Duration::from_micros(100))
        .query_latency(Duration::from_micros(10))
        .seed(seed)
        .build()
}

/// The message fragment naming a call site in this file at `line`
/// (`xtask/src/leaks.rs:123:`; the column follows).
fn site(line: u32) -> String {
    format!("{}:{line}:", file!())
}

/// Waits until `pool` satisfies `condition`, up to `timeout`.
fn wait_for_pool(
    pool: &Pool<SimManager>,
    timeout: Duration,
    condition: impl Fn(&pool_core::State) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition(&pool.state()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Closes and drops `pool`, then checks that the database saw every
/// connection closed exactly once and none left open.
fn close_and_audit(pool: Pool<SimManager>, db: &SimDb) -> std::result::Result<(), String> {
    pool.close();
    drop(pool);
    if !db.wait_until(Duration::from_secs(5), |s| s.open == 0) {
        return Err(format!(
            "connections still open 5s after the pool was closed: ids {:?}",
            db.open_ids()
        ));
    }
    db.verify_all_closed()
}

/// Spawns a named thread.
fn spawn_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<thread::JoinHandle<T>, String> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .context("cannot spawn a thread")
}

/// Joins a thread that must not panic and returns its result.
fn join<T>(
    handle: thread::JoinHandle<std::result::Result<T, String>>,
) -> std::result::Result<T, String> {
    let name = handle.thread().name().unwrap_or("?").to_owned();
    handle
        .join()
        .map_err(|p| format!("thread {name} panicked: {}", panic_message(&*p)))?
}

// ============================================================== scenario 1

/// Scenario 1: one loan past the threshold gives exactly one WARN naming
/// the call site and thread, and exactly one INFO when returned.
fn long_loan(args: &LeaksArgs) -> std::result::Result<String, String> {
    const POOL: &str = "leaks-long-loan";
    const HOLDER: &str = "leaks-holder";
    let rec = Recording::start(POOL)?;
    let threshold = args.threshold();
    let db = sim_db(args.seed);
    let pool = Pool::builder()
        .name(POOL)
        .max_size(2)
        .min_idle(Some(2))
        .connection_timeout(args.patience())
        .leak_detection_threshold(Some(threshold))
        .build(db.manager())
        .context("build failed")?;

    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = spawn_named(HOLDER, {
        let pool = pool.clone();
        move || -> std::result::Result<(), String> {
            let (conn, line) = (pool.get(), line!());
            let conn = conn.context("holder's get failed")?;
            held_tx.send((conn.id(), line)).ok();
            // Until told, or until the scenario gave up (sender dropped).
            let _ = release_rx.recv_timeout(Duration::from_secs(120));
            drop(conn);
            Ok(())
        }
    })?;
    let (id, line) = held_rx
        .recv_timeout(args.patience())
        .context("the holder did not get a connection")?;
    let lent_at = Instant::now();

    // Short loans meanwhile: each one below the threshold, each one waking
    // the housekeeper, which then looks at the long loan again.
    let mut short_loans = 0;
    while lent_at.elapsed() < threshold / 2 {
        drop(pool.get().context("short loan failed")?);
        short_loans += 1;
        thread::sleep(threshold / 20);
    }
    let warn = format!("connection {id} has been lent for");
    ensure(rec.wait_for(Level::Warn, &warn, args.patience()), || {
        format!(
            "no leak warning for connection {id} {} after it was lent (threshold {threshold:?})",
            util::human(lent_at.elapsed())
        )
    })?;
    let warned_after = lent_at.elapsed();

    let leaks = pool.leaks();
    ensure(leaks.len() == 1 && leaks[0].id == id, || {
        format!("pool.leaks() should list connection {id} alone: {leaks:?}")
    })?;
    let report = &leaks[0];
    ensure(
        report.thread == HOLDER
            && report.location.file() == file!()
            && report.location.line() == line,
        || {
            format!(
                "pool.leaks() names thread {:?} at {}, expected {HOLDER:?} at {}",
                report.thread,
                report.location,
                site(line)
            )
        },
    )?;

    // Keep holding for three more thresholds, with more short loans waking
    // the housekeeper: it must not warn again.
    let until = Instant::now() + threshold * 3;
    while Instant::now() < until {
        drop(pool.get().context("short loan failed")?);
        short_loans += 1;
        thread::sleep(threshold / 10);
    }
    release_tx.send(()).ok();
    join(holder)?;
    let returned = format!("connection {id}, previously reported as leaked, was returned after");
    ensure(
        rec.wait_for(Level::Info, &returned, args.patience()),
        || format!("no \"returned\" info for connection {id}"),
    )?;

    let warnings = rec.at(Level::Warn);
    ensure(warnings.len() == 1, || {
        format!(
            "expected exactly one warning, got {}: {warnings:#?}",
            warnings.len()
        )
    })?;
    let warning = &warnings[0];
    let thread_part = format!("it was taken by thread \"{HOLDER}\" at {}", site(line));
    ensure(
        warning.contains(&warn) && warning.contains(&thread_part),
        || {
            format!(
                "the warning should name thread {HOLDER:?} and {}: {warning}",
                site(line)
            )
        },
    )?;
    let infos = rec.matching(Level::Info, "previously reported as leaked");
    ensure(infos.len() == 1, || {
        format!(
            "expected exactly one \"returned\" info, got {}: {infos:#?}",
            infos.len()
        )
    })?;
    ensure(pool.leaks().is_empty(), || {
        format!(
            "pool.leaks() still lists {:?} after the return",
            pool.leaks()
        )
    })?;
    close_and_audit(pool, &db)?;
    Ok(format!(
        "connection {id} taken by \"{HOLDER}\" at {}, warned once after {} (threshold {}), \
         no repeat over {short_loans} housekeeper wake-ups, return reported once",
        report.location,
        util::human(warned_after),
        util::human(threshold),
    ))
}

// ============================================================== scenario 2

/// Scenario 2: a connection lost with `mem::forget` is reported, the pool
/// keeps serving, `close()` returns promptly naming it, and dropping the
/// pool closes it too (a borrowed loan holds no reference to the pool).
fn forgotten_connection(args: &LeaksArgs) -> std::result::Result<String, String> {
    const POOL: &str = "leaks-forgotten";
    const TRAFFIC_THREADS: usize = 4;
    const LOANS_PER_THREAD: usize = 50;
    let rec = Recording::start(POOL)?;
    let db = sim_db(args.seed.wrapping_add(2));
    let pool = Pool::builder()
        .name(POOL)
        .max_size(4)
        .min_idle(Some(4))
        .connection_timeout(args.patience())
        .leak_detection_threshold(Some(args.threshold()))
        .build(db.manager())
        .context("build failed")?;

    let (conn, line) = (pool.get(), line!());
    let conn = conn.context("get failed")?;
    let (id, db_id) = (conn.id(), SimConn::id(&conn));
    std::mem::forget(conn);

    let warn = format!("connection {id} has been lent for");
    ensure(rec.wait_for(Level::Warn, &warn, args.patience()), || {
        format!("no leak warning for the forgotten connection {id}")
    })?;
    let leaks = pool.leaks();
    ensure(
        leaks.len() == 1
            && leaks[0].id == id
            && leaks[0].location.file() == file!()
            && leaks[0].location.line() == line,
        || {
            format!(
                "pool.leaks() should list connection {id} taken at {}: {leaks:?}",
                site(line)
            )
        },
    )?;

    // The other connections keep working, on other threads.
    let traffic: Vec<_> = (0..TRAFFIC_THREADS)
        .map(|t| {
            let pool = pool.clone();
            spawn_named(&format!("leaks-traffic-{t}"), move || {
                for _ in 0..LOANS_PER_THREAD {
                    let mut conn = pool.get().context("get failed while one is forgotten")?;
                    ensure(SimConn::id(&conn) != db_id, || {
                        format!("the forgotten connection (database id {db_id}) was lent again")
                    })?;
                    conn.query("SELECT 1").context("query failed")?;
                }
                Ok(())
            })
        })
        .collect::<std::result::Result<_, _>>()?;
    for t in traffic {
        join(t)?;
    }
    let state = pool.state();
    ensure(state.active == 1 && state.total == 4, || {
        format!("expected only the forgotten connection lent, pool state: {state}")
    })?;

    let started = Instant::now();
    pool.close();
    let close_took = started.elapsed();
    ensure(close_took < Duration::from_secs(2), || {
        format!(
            "close() took {} with a connection forgotten",
            util::human(close_took)
        )
    })?;
    let named = format!("{id} (taken at {}", site(line));
    let closed = rec.matching(Level::Info, "closed; connection(s) ");
    ensure(
        closed.len() == 1 && closed[0].contains(&named) && closed[0].contains("still lent"),
        || format!("close()'s info line should name connection {named}...): {closed:#?}"),
    )?;
    drop(pool);
    // A loan from `get()` borrows the pool and holds no reference to it, so
    // forgetting it leaks nothing past the pool: once the last handle is
    // gone the pool's memory is freed, and the forgotten seat's connection
    // is closed with it (once, like every other).
    ensure(db.wait_until(args.patience(), |s| s.open == 0), || {
        format!(
            "database ids {:?} open after the pool was dropped, expected none \
             (the forgotten {db_id} goes with the pool)",
            db.open_ids()
        )
    })?;
    let stats = db.stats();
    ensure(stats.closed_twice == 0, || {
        format!("{} connection(s) closed twice", stats.closed_twice)
    })?;
    Ok(format!(
        "connection {id} reported (pool.leaks() and warning, taken at {}), \
         {} loans on {TRAFFIC_THREADS} other threads served, close() took {} and named it",
        leaks[0].location,
        TRAFFIC_THREADS * LOANS_PER_THREAD,
        util::human(close_took),
    ))
}

// ============================================================== scenario 3

/// Scenario 3: connections held by panicking threads (a thread that dies,
/// and a panic caught on a thread that borrows again) are closed and never
/// lent again; the next borrowers get clean sessions.
fn panicking_holder(args: &LeaksArgs) -> std::result::Result<String, String> {
    const MAX: u32 = 2;
    let db = sim_db(args.seed.wrapping_add(3));
    let pool = Pool::builder()
        .name("leaks-panicking")
        .max_size(MAX)
        .min_idle(Some(MAX))
        .connection_timeout(args.patience())
        .build(db.manager())
        .context("build failed")?;

    /// Borrows, dirties the session (variable and open transaction), sends
    /// the database id, and panics while holding the connection.
    fn borrow_dirty_and_panic(pool: &Pool<SimManager>, ids: &mpsc::Sender<u64>) {
        let mut conn = pool.get().expect("get failed");
        conn.set_var("role", "admin").expect("set_var failed");
        conn.begin().expect("begin failed");
        ids.send(SimConn::id(&conn)).ok();
        panic::panic_any(StressPanic);
    }

    /// Borrows every connection of the pool at once; none may be one of
    /// `dead`, all must be clean. Returns their database ids.
    fn borrow_all(pool: &Pool<SimManager>, dead: &[u64]) -> std::result::Result<Vec<u64>, String> {
        let conns = (0..MAX)
            .map(|_| pool.get().context("get after the panic failed"))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let ids: Vec<u64> = conns.iter().map(|c| SimConn::id(c)).collect();
        ensure(!ids.iter().any(|id| dead.contains(id)), || {
            format!("a connection held during a panic was lent again: lent {ids:?}, dead {dead:?}")
        })?;
        ensure(conns.iter().all(|c| c.is_session_clean()), || {
            "a borrower found a dirty session".to_owned()
        })?;
        Ok(ids)
    }

    // (a) The thread dies from the panic.
    let (ids_tx, ids_rx) = mpsc::channel();
    let dying = spawn_named("leaks-panicker", {
        let pool = pool.clone();
        let ids_tx = ids_tx.clone();
        move || borrow_dirty_and_panic(&pool, &ids_tx)
    })?;
    ensure(dying.join().is_err(), || {
        "the panicking thread did not panic".to_owned()
    })?;
    let first = ids_rx
        .recv_timeout(args.patience())
        .context("the panicking thread sent no id")?;
    let mut dead = vec![first];
    let after_death = borrow_all(&pool, &dead)?;

    // (b) The panic is caught and the same thread borrows again (its
    // thread cache points at the seat it just used).
    let survivor = spawn_named("leaks-survivor", {
        let pool = pool.clone();
        let mut dead = dead.clone();
        move || {
            let caught = panic::catch_unwind(AssertUnwindSafe(|| {
                borrow_dirty_and_panic(&pool, &ids_tx);
            }));
            ensure(caught.is_err(), || "no panic to catch".to_owned())?;
            let second = ids_rx
                .recv_timeout(Duration::from_secs(5))
                .context("no id from the caught panic")?;
            dead.push(second);
            let ids = borrow_all(&pool, &dead)?;
            Ok((second, ids))
        }
    })?;
    let (second, after_catch) = join(survivor)?;
    dead.push(second);

    // Not leaked: both closed by the database's count, and nothing open
    // beyond what the pool holds.
    ensure(
        db.wait_until(args.patience(), |s| s.open == pool.state().total as usize),
        || {
            format!(
                "database has {:?} open, pool state {}",
                db.open_ids(),
                pool.state()
            )
        },
    )?;
    let open = db.open_ids();
    ensure(!dead.iter().any(|d| open.contains(d)), || {
        format!("connections {dead:?} held during panics are still open: {open:?}")
    })?;
    close_and_audit(pool, &db)?;
    Ok(format!(
        "database ids {dead:?} closed (thread died, panic caught); next borrowers got \
         {after_death:?} then {after_catch:?}, all clean; 0 open after close"
    ))
}

// ============================================================== scenario 4

thread_local! {
    /// A connection kept by a thread until it exits (scenario 4).
    static STASH: RefCell<Option<PooledConnection<'static, SimManager>>> = const { RefCell::new(None) };
}

/// Scenario 4: threads exit while holding connections (one in a local
/// binding, two in a `thread_local!`); the connections come back idle.
fn exiting_holders(args: &LeaksArgs) -> std::result::Result<String, String> {
    const MAX: u32 = 4;
    const HOLDERS: usize = 3;
    let db = sim_db(args.seed.wrapping_add(4));
    let pool = Pool::builder()
        .name("leaks-exiting")
        .max_size(MAX)
        .min_idle(Some(MAX))
        .connection_timeout(args.patience())
        .build(db.manager())
        .context("build failed")?;
    ensure(
        wait_for_pool(&pool, args.patience(), |s| s.idle == MAX),
        || format!("the pool did not fill: {}", pool.state()),
    )?;

    let all_holding = std::sync::Arc::new(Barrier::new(HOLDERS + 1));
    let go = std::sync::Arc::new(Barrier::new(HOLDERS + 1));
    let (ids_tx, ids_rx) = mpsc::channel();
    let holders = (0..HOLDERS)
        .map(|h| {
            let pool = pool.clone();
            let (all_holding, go, ids_tx) = (all_holding.clone(), go.clone(), ids_tx.clone());
            spawn_named(&format!("leaks-exiting-{h}"), move || {
                // Holder 0 keeps its connection in a local, dropped as the
                // thread's function returns; the others in a thread_local!,
                // dropped as the thread exits.
                let mut ok = false;
                let _local = match pool.get_owned() {
                    Ok(conn) => {
                        ok = true;
                        ids_tx.send(SimConn::id(&conn)).ok();
                        if h == 0 {
                            Some(conn)
                        } else {
                            STASH.with(|s| *s.borrow_mut() = Some(conn));
                            None
                        }
                    }
                    Err(_) => None,
                };
                all_holding.wait();
                go.wait();
                ok
            })
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    drop(ids_tx);
    all_holding.wait();
    let held: BTreeSet<u64> = ids_rx.try_iter().collect();
    let while_held = pool.state();
    go.wait();
    let mut failed_gets = 0;
    for h in holders {
        if !h
            .join()
            .map_err(|_| "a holder thread panicked".to_owned())?
        {
            failed_gets += 1;
        }
    }
    ensure(failed_gets == 0 && held.len() == HOLDERS, || {
        format!("{failed_gets} holder(s) could not borrow; ids {held:?}")
    })?;
    ensure(while_held.active == HOLDERS as u32, || {
        format!("expected {HOLDERS} lent while held, state {while_held}")
    })?;
    ensure(
        wait_for_pool(&pool, args.patience(), |s| {
            s.active == 0 && s.idle == MAX && s.total == MAX
        }),
        || format!("after the holders exited, state {}", pool.state()),
    )?;
    let after = pool.state();
    // The same connections, returned rather than closed and replaced.
    let conns = (0..MAX)
        .map(|_| pool.get().context("get after the holders exited failed"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let lent_again: BTreeSet<u64> = conns.iter().map(|c| SimConn::id(c)).collect();
    let closed = db.stats().closed;
    ensure(held.is_subset(&lent_again) && closed == 0, || {
        format!(
            "held {held:?}, lent again {lent_again:?}, {closed} closed: connections were \
             closed instead of returned"
        )
    })?;
    drop(conns);
    close_and_audit(pool, &db)?;
    Ok(format!(
        "{HOLDERS} held at thread exit (1 local, {} thread_local), state while held \
         {while_held}, after exit {after}; database ids {held:?} lent again, none closed",
        HOLDERS - 1
    ))
}

// ============================================================== scenario 5

/// Open file descriptors of this process (entries of `/proc/self/fd`).
fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Resident memory of this process in KiB, from `/proc/self/status`.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits up to 2 s for `count()` to be at most `limit`; returns the last
/// count.
fn settle_to(limit: usize, count: impl Fn() -> usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let n = count();
        if n <= limit || Instant::now() >= deadline {
            return n;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// The most `pool-io` workers scenario 5 expects alive after a cycle: a
/// cycle's closes and resets run on a few, which idle out after 30 s.
const MAX_POOL_IO: usize = 8;

/// Live `pool-io` worker threads of this process.
fn pool_io_count() -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with("pool-io"))
        .count()
}

/// Scenario 5: build/use/close cycles leave no thread, descriptor, memory
/// or database connection behind.
fn cycles(args: &LeaksArgs) -> std::result::Result<String, String> {
    let start = Instant::now();
    let baseline_threads = thread_count() - pool_io_count();
    let baseline_fds = fd_count();
    let warmup = (args.cycles / 10).max(1);
    let mut rss_after_warmup = None;
    let mut problems: Vec<String> = Vec::new();
    let mut last_progress = Instant::now();
    let mut peak_threads = baseline_threads;
    let mut peak_fds = baseline_fds;
    let mut peak_pool_io = 0;
    for cycle in 0..args.cycles {
        let db = sim_db(args.seed.wrapping_add(u64::from(cycle)));
        if let Err(e) = one_cycle(&db, cycle, args.threads) {
            problems.push(format!("cycle {cycle}: {e}"));
        }
        if !db.wait_until(Duration::from_secs(2), |s| s.open == 0) {
            problems.push(format!(
                "cycle {cycle}: connections still open 2s after the pool was dropped: {:?}",
                db.open_ids()
            ));
        }
        if let Err(e) = db.verify_all_closed() {
            problems.push(format!("cycle {cycle}: {e}"));
        }
        // The process-wide `pool-io` workers (pool_core::deadline) are not
        // the pool's: they serve every pool, exit after idling 30 s, and are
        // bounded; count them apart and check the bound instead.
        let threads = settle_to(baseline_threads, || thread_count() - pool_io_count());
        peak_threads = peak_threads.max(threads);
        if threads > baseline_threads {
            problems.push(format!(
                "cycle {cycle}: {threads} threads left (before: {baseline_threads}, not \
                 counting pool-io workers): {:?}",
                thread_names()
            ));
        }
        let helpers = pool_io_count();
        peak_pool_io = peak_pool_io.max(helpers);
        if helpers > MAX_POOL_IO {
            problems.push(format!(
                "cycle {cycle}: {helpers} pool-io workers alive (at most {MAX_POOL_IO} expected)"
            ));
        }
        let fds = settle_to(baseline_fds, fd_count);
        peak_fds = peak_fds.max(fds);
        if fds > baseline_fds {
            problems.push(format!(
                "cycle {cycle}: {fds} file descriptors open (before: {baseline_fds})"
            ));
        }
        if cycle + 1 == warmup {
            rss_after_warmup = rss_kib();
        }
        if problems.len() >= 10 {
            problems.push("stopping after 10 problems".into());
            break;
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            eprintln!(
                "leaks: {} of {} cycles done in {}, rss {} KiB",
                cycle + 1,
                args.cycles,
                util::human(start.elapsed()),
                rss_kib().unwrap_or(0)
            );
        }
    }
    let growth = match (rss_after_warmup, rss_kib()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let rss = if args.under_valgrind {
        "rss not checked under valgrind".to_owned()
    } else {
        match growth {
            Some(g) if g > args.max_rss_growth_kib => {
                problems.push(format!(
                    "resident memory grew by {g} KiB after the warm-up (allowed {} KiB)",
                    args.max_rss_growth_kib
                ));
                format!("rss +{g} KiB")
            }
            Some(g) => format!(
                "rss +{g} KiB after warm-up (allowed {} KiB)",
                args.max_rss_growth_kib
            ),
            None => "rss unknown (no /proc/self/status)".to_owned(),
        }
    };
    if problems.is_empty() {
        Ok(format!(
            "{} cycles, threads {baseline_threads} before / {peak_threads} at most after a \
             cycle (and at most {peak_pool_io} idle pool-io worker(s)), fds {baseline_fds} / \
             {peak_fds}, {rss}, every connection closed once",
            args.cycles
        ))
    } else {
        Err(problems.join("; "))
    }
}

/// One build/use/close cycle of scenario 5.
fn one_cycle(db: &SimDb, cycle: u32, threads: usize) -> Result {
    let variant = cycle % 4;
    let builder = Pool::builder()
        .name(format!("leaks-{cycle}"))
        .max_size(4)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(1))
        .idle_timeout(Some(Duration::from_millis(50)))
        .max_lifetime(Some(Duration::from_secs(1)));
    if variant == 3 {
        // A database that refuses: the pool can never connect.
        db.set_refuse_connections(true);
        let pool = builder
            .fail_fast(false)
            .build_unchecked(db.manager())
            .map_err(|e| format!("build_unchecked failed: {e}"))?;
        if pool.get_timeout(Duration::from_millis(20)).is_ok() {
            return Err("a refusing database lent a connection".into());
        }
        db.set_refuse_connections(false);
        drop(pool);
        return Ok(());
    }
    let pool = builder
        .build(db.manager())
        .map_err(|e| format!("build failed: {e}"))?;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let pool = pool.clone();
            let db = db.clone();
            thread::spawn(move || borrow_a_little(&pool, &db, t, variant))
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a borrowing thread panicked")??;
    }
    if variant == 0 {
        pool.close();
    }
    // Variants 1 and 2: the last handle's drop closes the pool.
    drop(pool);
    Ok(())
}

/// The borrowing of one thread in one cycle of scenario 5.
fn borrow_a_little(
    pool: &Pool<SimManager>,
    db: &SimDb,
    thread: usize,
    variant: u32,
) -> std::result::Result<(), String> {
    for i in 0..20usize {
        match (i + thread) % 6 {
            0 => {
                let mut conn = pool.get().map_err(|e| e.to_string())?;
                // Fails only on a connection the server broke (variant 2).
                if conn.set_var("owner", "leaks").is_err() {
                    conn.mark_broken();
                }
            }
            1 => {
                let mut conn = pool.get().map_err(|e| e.to_string())?;
                conn.query("SELECT 1").ok();
                conn.mark_broken();
            }
            2 if thread == 0 && i < 6 => {
                let conn = pool.get().map_err(|e| e.to_string())?.detach();
                drop(conn);
            }
            3 => {
                let _ = panic::catch_unwind(AssertUnwindSafe(|| {
                    let _conn = pool.get();
                    panic::panic_any(StressPanic);
                }));
            }
            4 if variant == 2 && thread == 0 && i == 4 => {
                db.break_all();
            }
            _ => {
                if let Ok(mut conn) = pool.get() {
                    conn.query("SELECT 1").ok();
                }
            }
        }
    }
    Ok(())
}

// ============================================================== scenario 6

/// The longest the valgrind run may take before it is killed.
const VALGRIND_DEADLINE: Duration = Duration::from_secs(20 * 60);

/// Finds an executable named `name` on `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Bytes "definitely lost" in a memcheck log: from the leak summary, or 0
/// when memcheck found every heap block freed.
fn definitely_lost(log: &str) -> Option<u64> {
    if let Some(line) = log.lines().find(|l| l.contains("definitely lost:")) {
        let after = line.split("definitely lost:").nth(1)?;
        return after
            .split_whitespace()
            .next()?
            .replace(',', "")
            .parse()
            .ok();
    }
    log.contains("All heap blocks were freed -- no leaks are possible")
        .then_some(0)
}

/// The error count of a memcheck log's `ERROR SUMMARY`.
fn error_count(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("ERROR SUMMARY:"))?;
    let after = line.split("ERROR SUMMARY:").nth(1)?;
    after
        .split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()
}

/// Scenario 6: the suite again under valgrind's memcheck (without scenario
/// 2), requiring zero bytes definitely lost.
fn under_valgrind(args: &LeaksArgs) -> Checked {
    if args.under_valgrind {
        return Checked::Skip("this is the run under valgrind".into());
    }
    if !args.valgrind {
        return Checked::Skip("not requested (pass --valgrind)".into());
    }
    let Some(valgrind) = find_on_path("valgrind") else {
        return Checked::Skip(
            "valgrind is not installed (not on PATH; Debian package `valgrind`)".into(),
        );
    };
    run_valgrind(&valgrind, args).into()
}

/// The `--cfg` that makes rustix call libc instead of the vDSO: its own
/// vDSO lookup reads the real auxiliary vector (`prctl(PR_GET_AUXV)`), whose
/// vDSO valgrind does not map, and crashes under memcheck
/// (bytecodealliance/rustix#1559).
const RUSTIX_USE_LIBC: &str = "rustix_use_libc";

/// Builds xtask, with the profile of the running executable and
/// [`RUSTIX_USE_LIBC`], into `<target>/leaks-valgrind`; returns the binary.
fn build_for_valgrind() -> std::result::Result<PathBuf, String> {
    let exe = std::env::current_exe().context("cannot find the xtask executable")?;
    let profile = exe
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let target = util::target_dir().join("leaks-valgrind");
    let mut cmd = util::cargo();
    cmd.args(["build", "--quiet", "--package", "xtask", "--target-dir"])
        .arg(&target);
    if profile == "release" {
        cmd.arg("--release");
    }
    // Add the cfg to the user's flags, in whichever variable cargo reads.
    match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(flags) if !flags.is_empty() => {
            cmd.env(
                "CARGO_ENCODED_RUSTFLAGS",
                format!("{flags}\x1f--cfg\x1f{RUSTIX_USE_LIBC}"),
            );
        }
        _ => {
            let flags = std::env::var("RUSTFLAGS").unwrap_or_default();
            cmd.env(
                "RUSTFLAGS",
                format!("{flags} --cfg {RUSTIX_USE_LIBC}").trim_start(),
            );
        }
    }
    util::run(&mut cmd).map_err(|e| e.to_string())?;
    let binary = target.join(&profile).join("xtask");
    ensure(binary.is_file(), || {
        format!("the build left no {}", binary.display())
    })?;
    Ok(binary)
}

/// Runs the leak suite under memcheck (an xtask built by
/// [`build_for_valgrind`]) and checks its verdict.
fn run_valgrind(valgrind: &Path, args: &LeaksArgs) -> std::result::Result<String, String> {
    let exe = build_for_valgrind()?;
    let dir = std::env::temp_dir();
    let stem = format!("xtask-leaks-valgrind-{}", std::process::id());
    let log_path = dir.join(format!("{stem}.log"));
    let out_path = dir.join(format!("{stem}.out"));
    let err_path = dir.join(format!("{stem}.err"));
    let mut cmd = Command::new(valgrind);
    cmd.arg("--tool=memcheck")
        .arg("--leak-check=full")
        .arg("--errors-for-leak-kinds=definite")
        .arg("--error-exitcode=3")
        .arg(format!("--log-file={}", log_path.display()))
        .arg(&exe)
        .arg("leaks")
        .args(["--cycles", &args.valgrind_cycles.to_string()])
        .args(["--threads", &args.threads.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .arg("--under-valgrind")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).context("cannot create the output file")?)
        .stderr(File::create(&err_path).context("cannot create the output file")?);
    eprintln!("leaks: $ {}", util::Shown(&cmd));
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot run valgrind")?;
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for valgrind")? {
            break status;
        }
        if started.elapsed() > VALGRIND_DEADLINE {
            child.kill().ok();
            child.wait().ok();
            return Err(format!(
                "the valgrind run did not finish within {}; log in {}",
                util::human(VALGRIND_DEADLINE),
                log_path.display()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    // The inner run's verdicts, shown under this one.
    for line in out.lines() {
        println!("      valgrind | {line}");
    }
    let lost = definitely_lost(&log);
    let errors = error_count(&log);
    let inner_failed = out.lines().any(|l| l.starts_with("[FAIL]"));
    let ok = status.success() && lost == Some(0) && errors == Some(0) && !inner_failed;
    if ok {
        for p in [&log_path, &out_path, &err_path] {
            std::fs::remove_file(p).ok();
        }
        Ok(format!(
            "0 bytes definitely lost, 0 errors; suite re-run under memcheck in {} with {} \
             cycles, scenario 2 excluded (it forgets a loan on purpose), xtask built with \
             --cfg {RUSTIX_USE_LIBC} (rustix's vDSO lookup crashes under valgrind)",
            util::human(took),
            args.valgrind_cycles
        ))
    } else {
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        Err(format!(
            "valgrind run {status}: definitely lost {}, errors {}, inner scenario failed: \
             {inner_failed}; memcheck log {}, inner stderr ends {:?}",
            lost.map_or("unknown (no leak summary)".to_owned(), |b| format!(
                "{b} bytes"
            )),
            errors.map_or("unknown".to_owned(), |e| e.to_string()),
            log_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcheck_summaries_parse() {
        let leaky = "==1== LEAK SUMMARY:\n==1==    definitely lost: 1,024 bytes in 2 blocks\n\
                     ==1==    indirectly lost: 0 bytes in 0 blocks\n\
                     ==1== ERROR SUMMARY: 2 errors from 2 contexts (suppressed: 0 from 0)\n";
        assert_eq!(definitely_lost(leaky), Some(1024));
        assert_eq!(error_count(leaky), Some(2));
        let clean = "==1== All heap blocks were freed -- no leaks are possible\n\
                     ==1== ERROR SUMMARY: 0 errors from 0 contexts (suppressed: 0 from 0)\n";
        assert_eq!(definitely_lost(clean), Some(0));
        assert_eq!(error_count(clean), Some(0));
        assert_eq!(definitely_lost("valgrind: cannot start"), None);
    }

    #[test]
    fn ci_run_is_shorter_than_the_default() {
        assert!(LeaksArgs::ci().cycles < LeaksArgs::default().cycles);
        assert!(!LeaksArgs::ci().valgrind);
    }
}
