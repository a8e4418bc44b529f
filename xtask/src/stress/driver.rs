//! One stress run from start to end: builds the pool, drives the phases and
//! the close under load, then judges the invariants and prints the report.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use pool_core::Pool;

use super::backend::Backend;
use super::invariants::{
    monitor, Verdict, Violations, V_CLOSE, V_DOUBLE_LEND, V_FAIL_FAST, V_GET_BOUND, V_GET_LATE,
    V_MAX_OPEN, V_SESSION, V_THREADS,
};
use super::report::Report;
use super::workload::{
    acquire, chaos, get, new_histogram, worker, Acquire, Counters, Gate, Mode, Phase, Plan, Shared,
};
use super::{StressArgs, GET_SLACK};
use crate::proc::{thread_name_matches, thread_names, with_quiet_panics};
use crate::util::{self, Result};

/// Progress output: a bar on a terminal, a plain line every 5 s otherwise.
pub(super) struct Progress {
    pub(super) bar: Option<indicatif::ProgressBar>,
    pub(super) last_line: Instant,
}

impl Progress {
    pub(super) fn new(total: Duration) -> Progress {
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

    pub(super) fn update(&mut self, elapsed: Duration, message: String) {
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

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub(super) fn run_with<B: Backend>(backend: B, args: &StressArgs, seed: u64) -> Result {
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
    if let Some(a) = &plan.adaptive {
        eprintln!(
            "stress: adaptive sizing from {} to {} (window {}, cool-down {}), starting at {}",
            a.floor,
            a.ceiling,
            util::human(a.window),
            util::human(a.cool_down),
            plan.start_size()
        );
    }

    let mut builder = Pool::builder()
        .name("stress")
        .max_size(plan.start_size())
        .min_idle(Some(plan.min_idle))
        .connection_timeout(plan.connection_timeout)
        .validation_timeout(plan.validation_timeout)
        .idle_timeout(Some(plan.idle_timeout))
        .max_lifetime(Some(plan.max_lifetime))
        .keepalive_time(Some(plan.keepalive_time))
        .leak_detection_threshold(Some(plan.leak_detection));
    if let Some(a) = &plan.adaptive {
        builder = builder.adaptive_size(a.clone());
    }
    let pool = builder.build(backend.manager());
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

pub(super) fn drive<B: Backend>(
    shared: &Arc<Shared<B>>,
    args: &StressArgs,
    seed: u64,
) -> Result<Report> {
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
    // `max_size` over time (it moves only with --adaptive).
    let sizes = parking_lot::Mutex::new(Vec::<(Duration, &'static str, u32)>::new());
    let status = |phase: Phase| {
        let state = shared.pool.state();
        {
            let mut sizes = sizes.lock();
            if sizes.last().map(|s| s.2) != Some(state.max_size) {
                sizes.push((t0.elapsed(), phase.name(), state.max_size));
            }
        }
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
    let m = shared.pool.metrics();
    let resizes = (m.resizes_up, m.resizes_down);

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
        sizes: sizes.into_inner(),
        resizes,
        verdicts,
        violation_messages,
        first_query_errors: shared.first_query_errors.lock().clone(),
    })
}

/// Closes the pool while some threads hold connections and others wait.
pub(super) fn close_phase<B: Backend>(shared: &Arc<Shared<B>>) -> Result {
    let holders = shared.pool.state().max_size as usize;
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
