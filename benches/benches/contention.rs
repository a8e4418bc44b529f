//! Threads on one pool (plain `main`, not criterion): throughput, acquire
//! latency percentiles and fairness, for pool-core, r2d2 (defaults, and with
//! `test_on_check_out(false)`) and a plain mutex pool, all with no-op managers,
//! and for the same loop with no pool at all (`no-pool`: how evenly the
//! scheduler alone shares the cores among that many busy threads, the
//! ceiling for any pool's fairness).
//!
//! Scenarios:
//!
//! * `1t`: 1 thread, default pool size (10), no hold: the uncontended cycle
//!   of `cycle.rs` again, but with the pools interleaved (targets 1, 5, 7:
//!   it also runs pool-core at sizes 8 and 1024 and with leak detection),
//!   because criterion measures one after the other and a noisy neighbour
//!   can shift one of two close numbers by more than their difference;
//! * `2t-8c`: 2 threads, pool of 8, no hold (threads ≤ connections, target 3);
//! * `8t-4c`: 8 threads, pool of 4, no hold;
//! * `32t-4c-1us`: 32 threads, pool of 4, each loan held for 1 µs (busy)
//!   (target 4 for these two);
//! * `16t-4c`, `16t-4c-1us`, `16t-8c`, `16t-8c-1us`, `32t-4c`, `32t-8c`,
//!   `32t-8c-1us`: issue 18's threads-outnumber-cores grid (with
//!   `32t-4c-1us`), 16 or 32 threads on a pool of 4 or 8, with no hold or
//!   with each loan held for 1 µs: fairness and p99.9 against r2d2's,
//!   throughput at least r2d2's. Only pool-core, r2d2 and `no-pool`, to keep `cargo xtask bench`
//!   short (`cargo bench -p benches --bench contention -- 16t 32t` runs the
//!   grid alone).
//!
//! Each scenario runs several rounds; every round runs every pool once, in a
//! rotated order, so that a noisy neighbour hurts all pools alike. Throughput
//! and fairness come from untimed runs (median over rounds); latencies from
//! separate runs that time every acquire (all rounds merged). Fairness is the
//! fewest cycles any thread completed divided by the most.
//!
//! Prints one table per scenario and writes `contention.json` for
//! `cargo xtask bench`. Filters match `<scenario>/<pool>`:
//! `cargo bench -p benches --bench contention -- 8t-4c/pool-core` runs only
//! pool-core in the `8t-4c` scenario (handy under `perf record`);
//! `BENCH_PRINT_CYCLES=1` prints every run's per-thread cycle counts, CPU
//! time and cycles per CPU millisecond (which tells a thread that was given
//! less CPU from one that spent its CPU waiting: with `no-pool` the CPU time
//! is even, yet cycles per CPU ms differ by up to 1.5× between threads on
//! this VM's two vCPUs).

use std::time::Duration;

use benches::load::{run_cycles, LoadResult};
use benches::report::{self, BenchArgs};
use benches::{MutexPool, NoopManager, R2d2Noop};
use serde_json::json;

/// One contention scenario.
struct Scenario {
    name: &'static str,
    threads: usize,
    pool_size: u32,
    hold: Duration,
    /// Whether to run the timed (latency) pass.
    latency: bool,
    /// The pools to compare; `r2d2` must be among them (the reference).
    pools: &'static [&'static str],
}

/// The four pools every multi-threaded scenario compares, and `no-pool`: the
/// same loop with nothing to acquire, the scheduler's own floor (how evenly
/// the machine shares its cores among that many busy threads, whatever a
/// pool does).
const PEERS: &[&str] = &["pool-core", "r2d2", "r2d2-no-test", "mutex-vec", "no-pool"];

/// Issue 18's grid compares pool-core with r2d2 (and the scheduler's floor).
const GRID: &[&str] = &["pool-core", "r2d2", "no-pool"];

/// One scenario of issue 18's grid.
const fn grid(name: &'static str, threads: usize, pool_size: u32, hold_us: u64) -> Scenario {
    Scenario {
        name,
        threads,
        pool_size,
        hold: Duration::from_micros(hold_us),
        latency: true,
        pools: GRID,
    }
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "1t",
        threads: 1,
        pool_size: 10,
        hold: Duration::ZERO,
        latency: false,
        pools: &[
            "pool-core",
            "r2d2",
            "r2d2-no-test",
            "mutex-vec",
            "pool-core-leak-detection",
            "pool-core-no-metrics",
            "pool-core-8",
            "pool-core-1024",
        ],
    },
    Scenario {
        name: "2t-8c",
        threads: 2,
        pool_size: 8,
        hold: Duration::ZERO,
        latency: false,
        pools: PEERS,
    },
    Scenario {
        name: "8t-4c",
        threads: 8,
        pool_size: 4,
        hold: Duration::ZERO,
        latency: true,
        pools: PEERS,
    },
    Scenario {
        name: "32t-4c-1us",
        threads: 32,
        pool_size: 4,
        hold: Duration::from_micros(1),
        latency: true,
        pools: PEERS,
    },
    grid("16t-4c", 16, 4, 0),
    grid("16t-4c-1us", 16, 4, 1),
    grid("16t-8c", 16, 8, 0),
    grid("16t-8c-1us", 16, 8, 1),
    grid("32t-4c", 32, 4, 0),
    grid("32t-8c", 32, 8, 0),
    grid("32t-8c-1us", 32, 8, 1),
];

/// One pool under test.
enum Pool {
    Ours(pool_core::Pool<NoopManager>),
    R2d2(r2d2::Pool<R2d2Noop>),
    Mutex(MutexPool),
    /// Nothing to acquire: the scheduler's floor.
    Nothing,
}

impl Pool {
    /// The pool called `name`; `size` unless the name says otherwise.
    fn new(name: &str, size: u32) -> Pool {
        let ours = |size: u32| pool_core::Pool::builder().max_size(size);
        let r2d2 = |test: bool| {
            r2d2::Pool::builder()
                .max_size(size)
                .test_on_check_out(test)
                .build(R2d2Noop)
                .expect("r2d2 pool")
        };
        let built = |b: pool_core::Builder| b.build(NoopManager).expect("pool-core pool");
        match name {
            "pool-core" => Pool::Ours(built(ours(size))),
            "pool-core-8" => Pool::Ours(built(ours(8))),
            "pool-core-no-metrics" => Pool::Ours(built(ours(size).metrics(false))),
            "pool-core-1024" => Pool::Ours(built(ours(1024))),
            "pool-core-leak-detection" => {
                // Without RUST_BACKTRACE (read at build time), which would
                // capture a backtrace per loan. Edition 2021: `set_var` is
                // safe; no other thread reads the environment.
                let original = std::env::var_os("RUST_BACKTRACE");
                std::env::set_var("RUST_BACKTRACE", "0");
                let pool =
                    built(ours(size).leak_detection_threshold(Some(Duration::from_secs(60))));
                match original {
                    Some(v) => std::env::set_var("RUST_BACKTRACE", v),
                    None => std::env::remove_var("RUST_BACKTRACE"),
                }
                Pool::Ours(pool)
            }
            "r2d2" => Pool::R2d2(r2d2(true)),
            "r2d2-no-test" => Pool::R2d2(r2d2(false)),
            "mutex-vec" => Pool::Mutex(MutexPool::new(size as usize)),
            "no-pool" => Pool::Nothing,
            other => unreachable!("unknown pool {other}"),
        }
    }

    fn run(&self, s: &Scenario, run_for: Duration, timed: bool) -> LoadResult {
        let (threads, hold) = (s.threads, s.hold);
        match self {
            Pool::Ours(p) => run_cycles(threads, run_for, hold, timed, &|| p.get().unwrap()),
            Pool::R2d2(p) => run_cycles(threads, run_for, hold, timed, &|| p.get().unwrap()),
            Pool::Mutex(p) => run_cycles(threads, run_for, hold, timed, &|| p.get()),
            Pool::Nothing => {
                run_cycles(threads, run_for, hold, timed, &|| std::hint::black_box(()))
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() {
    let args = BenchArgs::from_env();
    // Many short rounds rather than a few long ones: on a shared, noisy
    // machine the median over rounds shrugs off a burst that hit one pool.
    let rounds = if args.bench { 5 } else { 1 };
    let run_for = args.duration(Duration::from_millis(600));
    let timed_for = args.duration(Duration::from_millis(400));
    let mut summary = Vec::new();
    let wanted = |s: &Scenario| {
        s.pools
            .iter()
            .any(|p| args.wants(&format!("{}/{p}", s.name)))
    };
    for s in SCENARIOS.iter().filter(|s| wanted(s)) {
        eprintln!(
            "contention {}: {} threads, pool of {}, hold {:?}, {rounds} round(s)",
            s.name, s.threads, s.pool_size, s.hold
        );
        let names = s.pools;
        let pools: Vec<Option<Pool>> = names
            .iter()
            .map(|p| {
                args.wants(&format!("{}/{p}", s.name))
                    .then(|| Pool::new(p, s.pool_size))
            })
            .collect();
        let mut throughput: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        let mut fairness: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        let mut latency: Vec<Option<LoadResult>> = vec![None; names.len()];
        for round in 0..rounds {
            for k in 0..names.len() {
                let p = (round + k) % names.len();
                let Some(pool) = &pools[p] else { continue };
                let r = pool.run(s, run_for, false);
                if std::env::var_os("BENCH_PRINT_CYCLES").is_some() {
                    let ms: Vec<u128> = r.cpu.iter().map(|c| c.as_millis()).collect();
                    let per_ms: Vec<u64> = r
                        .cycles
                        .iter()
                        .zip(&r.cpu)
                        .map(|(n, c)| (*n as f64 / c.as_secs_f64().max(1e-9) / 1e3) as u64)
                        .collect();
                    eprintln!(
                        "{} {}: cycles {:?}; CPU ms {ms:?}; cycles per CPU ms {per_ms:?}",
                        s.name, names[p], r.cycles
                    );
                }
                throughput[p].push(r.throughput());
                fairness[p].push(r.fairness());
                if s.latency {
                    let t = pool.run(s, timed_for, true);
                    match &mut latency[p] {
                        Some(all) => all.merge(&t),
                        None => latency[p] = Some(t),
                    }
                }
            }
        }
        drop(pools);
        let r2d2 = names
            .iter()
            .position(|n| *n == "r2d2")
            .expect("r2d2 in every scenario");
        let r2d2_tp = median(throughput[r2d2].clone());
        let r2d2_p999 = latency[r2d2]
            .as_ref()
            .and_then(|l| l.latency.as_ref())
            .map(|h| h.value_at_quantile(0.999) as f64);
        let mut rows = vec![vec![
            "pool".to_string(),
            "cycles/s".into(),
            "ns/cycle/thread".into(),
            "vs r2d2".into(),
            "fairness".into(),
            "p50".into(),
            "p99".into(),
            "p99.9".into(),
            "max".into(),
            "p99.9 / r2d2's".into(),
        ]];
        let mut pools_json = serde_json::Map::new();
        for (p, name) in names.iter().enumerate() {
            let tp = median(throughput[p].clone());
            let fair = median(fairness[p].clone());
            let hist = latency[p].as_ref().and_then(|l| l.latency.as_ref());
            let q = |q: f64| hist.map(|h| h.value_at_quantile(q) as f64);
            let (p50, p99, p999, max) = (q(0.5), q(0.99), q(0.999), hist.map(|h| h.max() as f64));
            let show = |v: Option<f64>| v.map_or("-".to_string(), report::ns);
            rows.push(vec![
                name.to_string(),
                report::rate(tp),
                format!("{:.1}", 1e9 * s.threads as f64 / tp),
                format!("{:.2}×", tp / r2d2_tp),
                format!("{fair:.2}"),
                show(p50),
                show(p99),
                show(p999),
                show(max),
                match (p999, r2d2_p999) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                    _ => "-".into(),
                },
            ]);
            pools_json.insert(
                name.to_string(),
                json!({
                    "throughput": tp,
                    "throughput_rounds": throughput[p],
                    "fairness": fair,
                    "fairness_rounds": fairness[p],
                    "p50_ns": p50,
                    "p99_ns": p99,
                    "p999_ns": p999,
                    "max_ns": max,
                    "latency_samples": hist.map(|h| h.len()),
                }),
            );
        }
        println!(
            "\n{}: {} threads, pool of {}, hold {:?}",
            s.name, s.threads, s.pool_size, s.hold
        );
        report::print_table(&rows);
        summary.push(json!({
            "name": s.name,
            "threads": s.threads,
            "pool_size": s.pool_size,
            "hold_ns": s.hold.as_nanos() as u64,
            "rounds": rounds,
            "run_ms": run_for.as_millis() as u64,
            "pools": pools_json,
        }));
    }
    if args.bench {
        report::write_summary("contention", &json!({ "scenarios": summary }));
    }
}
