//! `cargo xtask leaks`: builds, uses and drops pools in a loop against the
//! simulated database, and checks that everything is given back.
//!
//! Each cycle builds a pool, borrows from it on a few threads (queries,
//! session state, connections marked broken, detached, held by panicking
//! threads, broken by the server), then closes it or just drops it; every
//! fourth cycle the database refuses connections. After each cycle:
//!
//! - the database sees no open connection, every connection was closed
//!   exactly once and none was used by two holders;
//! - the process has no more threads than before the first cycle.
//!
//! At the end, resident memory may have grown by at most
//! `--max-rss-growth-kib` since the warm-up cycles.

use std::panic::{self, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use pool_core::Pool;
use pool_sim::SimDb;

use crate::stress::{thread_count, thread_names, with_quiet_panics, StressPanic};
use crate::util::{self, Result};

/// Arguments of `cargo xtask leaks`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LeaksArgs {
    /// How many pools to build, use and drop.
    #[arg(long, default_value_t = 1000)]
    pub cycles: u32,
    /// Threads borrowing from each pool.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Allowed growth of resident memory (VmRSS) from the end of the warm-up
    /// (the first tenth of the cycles) to the end, in KiB.
    #[arg(long, default_value_t = 8192)]
    pub max_rss_growth_kib: u64,
    /// Seed of the simulated databases.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl Default for LeaksArgs {
    fn default() -> Self {
        LeaksArgs {
            cycles: 1000,
            threads: 4,
            max_rss_growth_kib: 8192,
            seed: 1,
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
}

/// Resident memory of this process in KiB, from `/proc/self/status`.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `cargo xtask leaks`.
pub fn run(args: &LeaksArgs) -> Result {
    if args.cycles == 0 || args.threads == 0 {
        return Err("--cycles and --threads must be at least 1".into());
    }
    with_quiet_panics(|| run_cycles(args))
}

fn run_cycles(args: &LeaksArgs) -> Result {
    let start = Instant::now();
    let baseline_threads = thread_count();
    let warmup = (args.cycles / 10).max(1);
    let mut rss_after_warmup = None;
    let mut problems: Vec<String> = Vec::new();
    eprintln!(
        "leaks: {} cycles, {} threads each, {} thread(s) before",
        args.cycles, args.threads, baseline_threads
    );
    for cycle in 0..args.cycles {
        let db = SimDb::builder()
            .connect_latency(Duration::from_micros(100))
            .query_latency(Duration::from_micros(10))
            .seed(args.seed.wrapping_add(u64::from(cycle)))
            .build();
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
        let deadline = Instant::now() + Duration::from_secs(2);
        while thread_count() > baseline_threads && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        if thread_count() > baseline_threads {
            problems.push(format!(
                "cycle {cycle}: {} threads left (before: {baseline_threads}): {:?}",
                thread_count(),
                thread_names()
            ));
        }
        if cycle + 1 == warmup {
            rss_after_warmup = rss_kib();
        }
        if problems.len() >= 10 {
            problems.push("stopping after 10 problems".into());
            break;
        }
        if (cycle + 1) % 50 == 0 {
            eprintln!(
                "leaks: {} cycles done in {}, rss {} KiB",
                cycle + 1,
                util::human(start.elapsed()),
                rss_kib().unwrap_or(0)
            );
        }
    }
    let rss_end = rss_kib();
    let growth = match (rss_after_warmup, rss_end) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    if let Some(growth) = growth {
        if growth > args.max_rss_growth_kib {
            problems.push(format!(
                "resident memory grew by {growth} KiB after the warm-up (allowed {} KiB)",
                args.max_rss_growth_kib
            ));
        }
    }
    eprintln!(
        "leaks: {} cycles in {}; threads {} (before {}); rss growth after warm-up: {}",
        args.cycles,
        util::human(start.elapsed()),
        thread_count(),
        baseline_threads,
        growth.map_or("unknown".to_owned(), |g| format!("{g} KiB"))
    );
    if problems.is_empty() {
        eprintln!("leaks: [PASS] every connection closed once, no thread left, memory stable");
        Ok(())
    } else {
        for p in &problems {
            eprintln!("leaks: [FAIL] {p}");
        }
        Err(format!("{} leak problem(s)", problems.len()).into())
    }
}

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

fn borrow_a_little(
    pool: &Pool<pool_sim::SimManager>,
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
