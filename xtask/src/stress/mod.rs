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
//! With `--adaptive`, the pool sizes itself ([`pool_core::AdaptiveSize`]):
//! it starts at its floor (`min_idle`, at least a quarter of `--pool-size`),
//! may grow to `--pool-size` (its ceiling, so every `max_size` invariant
//! below holds as is) while the load saturates it and shrinks back in the
//! idle phase; the report shows `max_size` over time and the resize counts.
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

mod backend;
mod driver;
mod invariants;
mod real;
mod report;
mod sim;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::util::{self, Result};
use driver::run_with;
use sim::SimBackend;

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
    /// Turn adaptive sizing on: the pool starts small, grows toward
    /// `--pool-size` under the load and shrinks in the idle phase; the report
    /// shows `max_size` over time.
    #[arg(long)]
    pub adaptive: bool,
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
            adaptive: false,
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
                run_with(real::postgres::postgres(args)?, args, seed)
            } else {
                run_with(real::mysql::mysql(args)?, args, seed)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn adaptive_starts_at_its_floor_within_pool_size() {
        let plain = workload::Plan::new(&StressArgs::default());
        assert!(plain.adaptive.is_none());
        assert_eq!(plain.start_size(), DEFAULT_POOL_SIZE);
        let args = StressArgs {
            adaptive: true,
            duration: Duration::from_secs(20),
            ..StressArgs::default()
        };
        let plan = workload::Plan::new(&args);
        let a = plan.adaptive.clone().unwrap();
        assert_eq!((a.floor, a.ceiling), (2, DEFAULT_POOL_SIZE));
        assert_eq!(plan.start_size(), 2);
        // The bound every max_size invariant checks is the ceiling.
        assert_eq!(plan.max_size, a.ceiling);
        assert!(a.validate(plan.start_size()).is_ok());
    }
}
