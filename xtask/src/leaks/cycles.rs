//! Scenario 5 of the leak suite: thousands of build/use/close cycles must
//! leave no thread, file descriptor, memory or database connection behind.

use std::panic::{self, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

use pool_core::Pool;
use pool_sim::{SimDb, SimManager};

use super::{sim_db, LeaksArgs};
use crate::proc::{fd_count, rss_kib, thread_count, thread_names, StressPanic};
use crate::util::{self, Result};

/// Waits up to 2 s for `count()` to be at most `limit`; returns the last
/// count.
pub(super) fn settle_to(limit: usize, count: impl Fn() -> usize) -> usize {
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
pub(super) const MAX_POOL_IO: usize = 8;

/// Live `pool-io` worker threads of this process.
pub(super) fn pool_io_count() -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with("pool-io"))
        .count()
}

/// Scenario 5: build/use/close cycles leave no thread, descriptor, memory
/// or database connection behind.
pub(super) fn cycles(args: &LeaksArgs) -> std::result::Result<String, String> {
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
pub(super) fn one_cycle(db: &SimDb, cycle: u32, threads: usize) -> Result {
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
pub(super) fn borrow_a_little(
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
