//! The workload: the run's plan and phases, the state the threads share, and
//! what each worker does (borrow, query, hold, panic, break, time out), with
//! the checks a borrower makes on what it gets, and the chaos thread.

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use pool_core::{AdaptiveSize, Pool, PooledConnection};

use super::backend::{show_id, Backend, Conn, OpError};
use super::invariants::{
    Violations, Window, V_DOUBLE_LEND, V_FAIL_FAST, V_GET_BOUND, V_GET_LATE, V_SESSION,
};
use super::{StressArgs, GET_SLACK};
use crate::proc::{run_delay, StressPanic};

/// The phases of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(super) enum Phase {
    RampUp = 0,
    Steady = 1,
    Spike = 2,
    Idle = 3,
    Close = 4,
}

impl Phase {
    pub(super) const ALL: [Phase; 5] = [
        Phase::RampUp,
        Phase::Steady,
        Phase::Spike,
        Phase::Idle,
        Phase::Close,
    ];

    pub(super) fn name(self) -> &'static str {
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
pub(super) enum Mode {
    Run,
    Park,
    Burst,
    Stop,
}

/// Parks and releases the workers.
#[derive(Default)]
pub(super) struct Gate {
    pub(super) mode: parking_lot::Mutex<Option<Mode>>,
    pub(super) changed: parking_lot::Condvar,
}

impl Gate {
    pub(super) fn set(&self, mode: Mode) {
        *self.mode.lock() = Some(mode);
        self.changed.notify_all();
    }

    /// Returns the mode to work in, blocking while parked.
    pub(super) fn pass(&self) -> Mode {
        let mut mode = self.mode.lock();
        loop {
            match mode.unwrap_or(Mode::Run) {
                Mode::Park => self.changed.wait(&mut mode),
                other => return other,
            }
        }
    }
}

/// Counters of the workload.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) ops: AtomicU64,
    pub(super) ops_by_phase: [AtomicU64; 5],
    pub(super) gets_ok: AtomicU64,
    pub(super) timeouts: AtomicU64,
    pub(super) short_timeouts: AtomicU64,
    pub(super) try_misses: AtomicU64,
    pub(super) closed_errors: AtomicU64,
    pub(super) connect_errors: AtomicU64,
    pub(super) other_errors: AtomicU64,
    pub(super) query_errors: AtomicU64,
    pub(super) panics: AtomicU64,
    pub(super) marked_broken: AtomicU64,
    pub(super) abandoned: AtomicU64,
    pub(super) slowest_get_us: AtomicU64,
    pub(super) worst_sched_delay_us: AtomicU64,
    /// The largest amount by which a `get` overran its timeout + slack.
    pub(super) worst_overrun_us: AtomicU64,
    /// The largest overrun not explained by the borrower's own wait for a
    /// CPU (see [`run_delay`]); the whole overrun where that is unknown.
    pub(super) worst_unexplained_us: AtomicU64,
    /// Set when some thread could not read its run-queue delay.
    pub(super) no_run_delay: AtomicBool,
}

pub(super) fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// The pool settings a run uses, derived from the arguments.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) max_size: u32,
    pub(super) min_idle: u32,
    pub(super) connection_timeout: Duration,
    pub(super) validation_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) max_lifetime: Duration,
    pub(super) keepalive_time: Duration,
    pub(super) leak_detection: Duration,
    pub(super) short_timeout: Duration,
    pub(super) ramp: Duration,
    pub(super) steady: Duration,
    pub(super) spike: Duration,
    pub(super) idle: Duration,
    /// With `--adaptive`: the pool's sizing (floor to `max_size`), and the
    /// size it starts at (the floor).
    pub(super) adaptive: Option<AdaptiveSize>,
}

impl Plan {
    /// The `max_size` the pool is built with: the floor with `--adaptive`,
    /// else `max_size`.
    pub(super) fn start_size(&self) -> u32 {
        self.adaptive.as_ref().map_or(self.max_size, |a| a.floor)
    }
}

impl Plan {
    pub(super) fn new(args: &StressArgs) -> Plan {
        let d = args.duration;
        let max_lifetime = d / 3;
        let min_idle = 2.min(args.pool_size);
        let adaptive = args.adaptive.then(|| {
            let floor = min_idle.max(args.pool_size / 4).max(1);
            let mut a = AdaptiveSize::new(floor, args.pool_size);
            // Windows short enough for several changes in each phase.
            a.window = (d / 60).clamp(Duration::from_millis(100), Duration::from_secs(5));
            a.cool_down = a.window;
            a
        });
        Plan {
            max_size: args.pool_size,
            min_idle,
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
            adaptive,
        }
    }
}

pub(super) struct Shared<B: Backend> {
    pub(super) pool: Pool<B::Manager>,
    pub(super) backend: Arc<B>,
    pub(super) plan: Plan,
    pub(super) chaos: bool,
    pub(super) gate: Gate,
    pub(super) phase: AtomicU8,
    pub(super) held: parking_lot::Mutex<HashSet<u64>>,
    pub(super) counters: Counters,
    pub(super) violations: Violations,
    pub(super) fail_fast: parking_lot::Mutex<Vec<Window>>,
    /// The first few query errors, for the report (a note, not a verdict).
    pub(super) first_query_errors: parking_lot::Mutex<Vec<String>>,
    pub(super) start: Instant,
}

impl<B: Backend> Shared<B> {
    pub(super) fn phase(&self) -> Phase {
        Phase::ALL[usize::from(self.phase.load(Ordering::Relaxed))]
    }

    /// Keeps the first few query errors for the report.
    pub(super) fn note_query_error(&self, e: &OpError, id: u64) {
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
    pub(super) fn note_fail_fast(&self) {
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

/// How a borrower asks for a connection.
#[derive(Debug, Clone, Copy)]
pub(super) enum Acquire {
    Get,
    Timeout(Duration),
    Try,
}

/// A borrowed connection, registered in the held set while it lives.
pub(super) struct Held<'a, B: Backend> {
    pub(super) shared: &'a Shared<B>,
    pub(super) conn: Option<PooledConnection<'a, B::Manager>>,
    pub(super) id: u64,
}

impl<B: Backend> Held<'_, B> {
    pub(super) fn conn(&mut self) -> &mut Conn<B> {
        match self.conn.as_mut() {
            Some(c) => c,
            None => unreachable!("a held connection is present until dropped"),
        }
    }

    pub(super) fn mark_broken(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.mark_broken();
        }
        bump(&self.shared.counters.marked_broken);
    }

    /// Runs a workload step, marking the connection broken on a fatal error.
    pub(super) fn step(
        &mut self,
        f: impl FnOnce(&mut Conn<B>) -> std::result::Result<(), OpError>,
    ) -> bool {
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

pub(super) fn acquire<'a, B: Backend>(
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

pub(super) fn worker<B: Backend>(
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

pub(super) fn operation<B: Backend>(
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

/// Injects a failure every one to three seconds until stopped.
pub(super) fn chaos<B: Backend>(
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

pub(super) fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("valid histogram bounds: {e}"),
    }
}
