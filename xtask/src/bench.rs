//! `cargo xtask bench`: runs the benchmarks of the `benches` crate, then
//! prints one table of pool-core's ratios against its peers, all measured in
//! that same run, with each target's goal and whether it is met.
//!
//! Sources: criterion's medians (`<target>/criterion/<group>/<name>/new/estimates.json`)
//! for the single-thread costs, and the JSON summaries the plain-`main`
//! benches write to `<target>/bench-summary/` (contention, memory, realdb).
//! Results older than the run are ignored, so a filtered run only reports
//! what it measured.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::Args;
use serde_json::Value;

use crate::util::{self, Result};

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Clone, Default, Args)]
pub struct BenchArgs {
    /// Do not run anything: print the table from the results already in the
    /// target directory.
    #[arg(long)]
    pub summary_only: bool,
    /// Skip the real-database benchmarks (PostgreSQL, MariaDB).
    #[arg(long)]
    pub no_db: bool,
    /// Extra arguments for the benchmark harness, after `--` (for example a
    /// benchmark-name filter).
    #[arg(last = true)]
    pub bench_args: Vec<String>,
}

/// Runs `cargo bench -p benches [-- <args>]`, then prints the summary table.
pub fn run(args: &BenchArgs) -> Result {
    let target = util::target_dir();
    let summaries = target.join("bench-summary");
    let since = if args.summary_only {
        SystemTime::UNIX_EPOCH
    } else {
        for name in ["contention", "memory", "realdb"] {
            let _ = std::fs::remove_file(summaries.join(format!("{name}.json")));
        }
        let started = SystemTime::now();
        let mut cmd = util::cargo();
        cmd.args(["bench", "-p", "benches"])
            .env("BENCH_SUMMARY_DIR", &summaries);
        if args.no_db {
            cmd.env("BENCH_NO_DB", "1");
        }
        if !args.bench_args.is_empty() {
            cmd.arg("--").args(&args.bench_args);
        }
        util::run(&mut cmd)?;
        started
    };
    let results = Results {
        criterion: target.join("criterion"),
        summaries,
        since,
    };
    let table = summary_table(&results);
    println!("\n{table}");
    Ok(())
}

/// Where the results are, and how old they may be.
struct Results {
    criterion: PathBuf,
    summaries: PathBuf,
    since: SystemTime,
}

impl Results {
    fn fresh(&self, path: &Path) -> bool {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= self.since)
    }

    fn json(&self, path: &Path) -> Option<Value> {
        if !self.fresh(path) {
            return None;
        }
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    /// Criterion's median for `group/name`, in nanoseconds.
    fn median_ns(&self, group: &str, name: &str) -> Option<f64> {
        let path = self
            .criterion
            .join(group)
            .join(name)
            .join("new")
            .join("estimates.json");
        self.json(&path)?["median"]["point_estimate"].as_f64()
    }

    fn summary(&self, name: &str) -> Option<Value> {
        self.json(&self.summaries.join(format!("{name}.json")))
    }
}

/// Whether a goal is met: higher or lower is better, against a bound.
#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
    None,
}

/// One row: what, pool-core's value, the peer's, the ratio, the goal.
struct Row {
    target: &'static str,
    what: String,
    ours: String,
    peer: String,
    ratio: Option<f64>,
    ratio_text: String,
    goal: Goal,
    goal_text: String,
}

impl Row {
    fn status(&self) -> &'static str {
        match (self.goal, self.ratio) {
            (Goal::None, _) => "",
            (_, None) => "not run",
            (Goal::AtLeast(g), Some(r)) if r >= g => "met",
            (Goal::AtMost(g), Some(r)) if r <= g => "met",
            _ => "**missed**",
        }
    }
}

fn ns(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v < 1_000.0 => format!("{v:.1} ns"),
        Some(v) if v < 1_000_000.0 => format!("{:.1} µs", v / 1e3),
        Some(v) => format!("{:.1} ms", v / 1e6),
    }
}

fn rate(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1} k/s", v / 1e3),
        Some(v) => format!("{v:.0} /s"),
    }
}

fn ratio_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

fn times(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}×"))
}

/// Builds the markdown table from whatever results are there.
fn summary_table(res: &Results) -> String {
    let mut rows: Vec<Row> = Vec::new();

    // The contention bench's results: its `1t` scenario runs the
    // single-thread cycle with the pools interleaved, which is what the
    // single-thread targets use (criterion's sequential medians are shown
    // next to them as a cross-check).
    let contention = res.summary("contention");
    let scenario = |name: &str| -> Option<Value> {
        contention.as_ref()?["scenarios"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
    };
    let metric = |s: &Option<Value>, pool: &str, key: &str| -> Option<f64> {
        s.as_ref()?["pools"][pool][key].as_f64()
    };
    let one = scenario("1t");
    let cycle_ns = |pool: &str| metric(&one, pool, "throughput").map(|t| 1e9 / t);
    let crit = |r: Option<f64>| r.map_or(String::new(), |r| format!(" [criterion: {r:.2}×]"));

    // 1. Uncontended get + return (time per cycle: peer ÷ ours).
    let ours = cycle_ns("pool-core");
    let ours_crit = res.median_ns("uncontended", "pool-core");
    for (peer, label, goal, goal_text) in [
        ("r2d2", "r2d2 (defaults)", Goal::AtLeast(10.0), "≥ 10×"),
        (
            "r2d2-no-test",
            "r2d2 (`test_on_check_out(false)`)",
            Goal::None,
            "",
        ),
        (
            "mutex-vec",
            "`Mutex<Vec>` + `Condvar` (floor)",
            Goal::None,
            "",
        ),
    ] {
        let theirs = cycle_ns(peer);
        let ratio = ratio_of(theirs, ours);
        rows.push(Row {
            target: "1",
            what: format!(
                "uncontended get + return, 1 thread, default settings: speed-up vs {label}{}",
                crit(ratio_of(res.median_ns("uncontended", peer), ours_crit))
            ),
            ours: ns(ours),
            peer: ns(theirs),
            ratio,
            ratio_text: times(ratio),
            goal,
            goal_text: goal_text.into(),
        });
    }

    // 2. Allocations per cycle (memory bench).
    let memory = res.summary("memory");
    let bytes = |name: &str| {
        memory
            .as_ref()
            .and_then(|m| m["per_cycle"][name]["bytes"].as_f64())
    };
    let ours_bytes = bytes("pool-core");
    rows.push(Row {
        target: "2",
        what:
            "heap bytes allocated per get + return (after warm-up; test: `benches/tests/alloc*.rs`)"
                .into(),
        ours: ours_bytes.map_or("–".into(), |b| format!("{b:.0} B")),
        peer: bytes("r2d2").map_or("–".into(), |b| format!("r2d2 {b:.0} B")),
        ratio: ours_bytes,
        ratio_text: ours_bytes.map_or("–".into(), |b| format!("{b:.0} B")),
        goal: Goal::AtMost(0.0),
        goal_text: "0 B".into(),
    });
    if let Some(b) = bytes("pool-core-leak-detection") {
        rows.push(Row {
            target: "2",
            what: "… with leak detection on".into(),
            ours: format!("{b:.0} B"),
            peer: "".into(),
            ratio: Some(b),
            ratio_text: format!("{b:.0} B"),
            goal: Goal::AtMost(0.0),
            goal_text: "0 B".into(),
        });
    }
    if let Some(b) = bytes("pool-core-leak-detection-rust-backtrace") {
        rows.push(Row {
            target: "2",
            what: "… with leak detection on and `RUST_BACKTRACE=1` (a backtrace per loan)".into(),
            ours: format!("{b:.0} B"),
            peer: "".into(),
            ratio: Some(b),
            ratio_text: format!("{b:.0} B"),
            goal: Goal::None,
            goal_text: "".into(),
        });
    }

    // 3 and 4. Contention (throughput ours ÷ peer, latency ours ÷ peer).
    let s = scenario("2t-8c");
    for (peer, label, goal, goal_text) in [
        ("r2d2", "r2d2 (defaults)", Goal::AtLeast(10.0), "≥ 10×"),
        (
            "r2d2-no-test",
            "r2d2 (`test_on_check_out(false)`)",
            Goal::None,
            "",
        ),
        ("mutex-vec", "`Mutex<Vec>` + `Condvar`", Goal::None, ""),
    ] {
        let (a, b) = (
            metric(&s, "pool-core", "throughput"),
            metric(&s, peer, "throughput"),
        );
        let ratio = ratio_of(a, b);
        rows.push(Row {
            target: "3",
            what: format!("2 threads, pool of 8: throughput vs {label}"),
            ours: rate(a),
            peer: rate(b),
            ratio,
            ratio_text: times(ratio),
            goal,
            goal_text: goal_text.into(),
        });
    }
    for (name, label) in [
        ("8t-4c", "8 threads, pool of 4, no hold"),
        ("32t-4c-1us", "32 threads, pool of 4, 1 µs hold"),
    ] {
        let s = scenario(name);
        for (peer, peer_label, goal, goal_text) in [
            ("r2d2", "r2d2", Goal::AtLeast(1.0), "≥ 1×"),
            ("mutex-vec", "`Mutex<Vec>`", Goal::None, ""),
        ] {
            let (a, b) = (
                metric(&s, "pool-core", "throughput"),
                metric(&s, peer, "throughput"),
            );
            let ratio = ratio_of(a, b);
            rows.push(Row {
                target: "4",
                what: format!("{label}: throughput vs {peer_label}"),
                ours: rate(a),
                peer: rate(b),
                ratio,
                ratio_text: times(ratio),
                goal,
                goal_text: goal_text.into(),
            });
        }
        let (a, b) = (
            metric(&s, "pool-core", "p999_ns"),
            metric(&s, "r2d2", "p999_ns"),
        );
        let ratio = ratio_of(a, b);
        rows.push(Row {
            target: "4",
            what: format!("{label}: acquire latency p99.9, ours ÷ r2d2's"),
            ours: ns(a),
            peer: ns(b),
            ratio,
            ratio_text: ratio.map_or("–".into(), |r| format!("{r:.3}")),
            goal: Goal::AtMost(0.2),
            goal_text: "≤ 0.20".into(),
        });
        let (a, b) = (
            metric(&s, "pool-core", "fairness"),
            metric(&s, "r2d2", "fairness"),
        );
        rows.push(Row {
            target: "4",
            what: format!("{label}: fairness (fewest ÷ most cycles per thread)"),
            ours: a.map_or("–".into(), |f| format!("{f:.2}")),
            peer: b.map_or("–".into(), |f| format!("r2d2 {f:.2}")),
            ratio: a,
            ratio_text: a.map_or("–".into(), |f| format!("{f:.2}")),
            goal: Goal::AtLeast(0.9),
            goal_text: "≥ 0.90".into(),
        });
        // The same loop with no pool at all: how evenly the scheduler shares
        // the cores among that many busy threads. No pool can be fairer than
        // the CPU time its threads are given.
        let floor = metric(&s, "no-pool", "fairness");
        rows.push(Row {
            target: "4",
            what: format!(
                "{label}: fairness of the same threads with no pool (the scheduler's own)"
            ),
            ours: floor.map_or("–".into(), |f| format!("{f:.2}")),
            peer: "".into(),
            ratio: floor,
            ratio_text: floor.map_or("–".into(), |f| format!("{f:.2}")),
            goal: Goal::None,
            goal_text: "".into(),
        });
    }

    // 5. Scale: time per cycle at 1024 ÷ at 8.
    let (small, large) = (cycle_ns("pool-core-8"), cycle_ns("pool-core-1024"));
    let ratio = ratio_of(large, small);
    rows.push(Row {
        target: "5",
        what: format!(
            "get + return at max_size 1024 ÷ at max_size 8, 1 thread{}",
            crit(ratio_of(
                res.median_ns("scale", "pool-core-1024"),
                res.median_ns("scale", "pool-core-8")
            ))
        ),
        ours: ns(large),
        peer: format!("{} at 8", ns(small)),
        ratio,
        ratio_text: times(ratio),
        goal: Goal::AtMost(2.0),
        goal_text: "≤ 2×".into(),
    });

    // 6. Real databases: queries/s, ours ÷ theirs. "pool-core" is the pool
    // over a minimal manager (isolation off); "pool-postgres"/"pool-mysql"
    // are the drivers' managers with their defaults (isolation on).
    let realdb = res.summary("realdb");
    for (key, db, ours_default, peers) in [
        (
            "postgres",
            "PostgreSQL",
            "pool-postgres",
            &[("r2d2", "r2d2_postgres (defaults)")][..],
        ),
        (
            "mariadb",
            "MariaDB",
            "pool-mysql",
            &[
                ("r2d2", "r2d2_mysql (defaults)"),
                ("mysql::Pool", "`mysql::Pool` (defaults, 4 conns)"),
            ][..],
        ),
    ] {
        let section = realdb.as_ref().map(|r| &r[key]);
        if let Some(msg) = section.and_then(|s| s["skipped"].as_str()) {
            rows.push(Row {
                target: "6",
                what: format!("{db}: SELECT 1"),
                ours: format!("skipped: {msg}"),
                peer: String::new(),
                ratio: None,
                ratio_text: "–".into(),
                goal: Goal::None,
                goal_text: String::new(),
            });
            continue;
        }
        for threads in ["1", "8"] {
            let qps = |v: &str| section.and_then(|s| s["qps"][threads][v].as_f64());
            let mut row = |ours: &str, what: String, peer: &str, goal: Goal, goal_text: &str| {
                let (a, b) = (qps(ours), qps(peer));
                let ratio = ratio_of(a, b);
                rows.push(Row {
                    target: "6",
                    what,
                    ours: rate(a),
                    peer: rate(b),
                    ratio,
                    ratio_text: times(ratio),
                    goal,
                    goal_text: goal_text.into(),
                });
            };
            let head = format!("{db} SELECT 1, pool of 4, {threads} thread(s)");
            let (goal, text) = if threads == "1" {
                (Goal::AtLeast(0.95), "≥ 0.95×")
            } else {
                (Goal::None, "")
            };
            row(
                "pool-core",
                format!("{head}, isolation off: q/s vs raw held connection"),
                "raw-held",
                goal,
                text,
            );
            row(
                "pool-core",
                format!("{head}, isolation off: q/s vs r2d2 (defaults)"),
                "r2d2",
                Goal::None,
                "",
            );
            for (peer, label) in peers {
                row(
                    ours_default,
                    format!("{head}, {ours_default} defaults (isolation on): q/s vs {label}"),
                    peer,
                    Goal::AtLeast(1.5),
                    "≥ 1.5×",
                );
            }
            let none = format!("{ours_default} none");
            row(
                ours_default,
                format!("{head}, {ours_default} defaults: q/s vs Isolation::None"),
                &none,
                Goal::AtLeast(0.8),
                "≥ 0.8×",
            );
            row(
                ours_default,
                format!("{head}, {ours_default} defaults: q/s vs connect per query"),
                "connect-per-query",
                Goal::AtLeast(20.0),
                "≥ 20×",
            );
        }
        // The scenarios users run besides `SELECT 1` (issue 18): the same
        // goal against each peer's defaults.
        for (scenario, name) in [
            ("transaction", "short transaction"),
            ("prepared", "prepared query"),
        ] {
            for threads in ["1", "8"] {
                let qps = |v: &str| section.and_then(|s| s[scenario]["qps"][threads][v].as_f64());
                let none = format!("{ours_default} none");
                let against = peers
                    .iter()
                    .map(|&(peer, label)| (peer, label, 1.5))
                    .chain([(none.as_str(), "Isolation::None", 0.8)]);
                for (peer, label, goal) in against {
                    let (a, b) = (qps(ours_default), qps(peer));
                    let ratio = ratio_of(a, b);
                    rows.push(Row {
                        target: "6",
                        what: format!(
                            "{db} {name}, pool of 4, {threads} thread(s), {ours_default} \
                             defaults: q/s vs {label}"
                        ),
                        ours: rate(a),
                        peer: rate(b),
                        ratio,
                        ratio_text: times(ratio),
                        goal: Goal::AtLeast(goal),
                        goal_text: format!("≥ {goal}×"),
                    });
                }
            }
        }
    }

    // 7. Metrics cost: on (the default) − off, in ns.
    let (m_on, m_off) = (cycle_ns("pool-core"), cycle_ns("pool-core-no-metrics"));
    let m_delta = match (m_on, m_off) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    rows.push(Row {
        target: "7",
        what: "metrics on − off, uncontended get + return".into(),
        ours: ns(m_on),
        peer: format!("{} off", ns(m_off)),
        ratio: m_delta,
        ratio_text: m_delta.map_or("–".into(), |d| format!("{d:+.1} ns")),
        goal: Goal::AtMost(10.0),
        goal_text: "≤ +10 ns".into(),
    });

    // 7. Leak detection cost: on − off, in ns.
    let (off, on) = (cycle_ns("pool-core"), cycle_ns("pool-core-leak-detection"));
    let (crit_off, crit_on, bt) = (
        res.median_ns("leak_detection", "off"),
        res.median_ns("leak_detection", "on"),
        res.median_ns("leak_detection", "on-rust-backtrace"),
    );
    let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    let delta = diff(on, off);
    rows.push(Row {
        target: "7",
        what: format!(
            "leak detection on − off, uncontended get + return{}",
            diff(crit_on, crit_off).map_or(String::new(), |d| format!(" [criterion: {d:+.1} ns]"))
        ),
        ours: ns(on),
        peer: format!("{} off", ns(off)),
        ratio: delta,
        ratio_text: delta.map_or("–".into(), |d| format!("{d:+.1} ns")),
        goal: Goal::AtMost(10.0),
        goal_text: "≤ +10 ns".into(),
    });
    let off = crit_off;
    if bt.is_some() {
        let d = match (bt, off) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        };
        rows.push(Row {
            target: "7",
            what: "… with `RUST_BACKTRACE=1` (a backtrace captured per loan; criterion)".into(),
            ours: ns(bt),
            peer: format!("{} off", ns(off)),
            ratio: d,
            ratio_text: d.map_or("–".into(), |d| format!("+{}", ns(Some(d)))),
            goal: Goal::None,
            goal_text: String::new(),
        });
    }

    // 8. Bookkeeping bytes per connection.
    let per_conn = |name: &str| {
        memory
            .as_ref()
            .and_then(|m| m["bytes_per_connection"][name].as_f64())
    };
    let ours = per_conn("pool-core");
    rows.push(Row {
        target: "8",
        what: "live heap bytes per pooled connection (pool of 1000 vs 2000, no-op `u64` connection included)"
            .into(),
        ours: ours.map_or("–".into(), |b| format!("{b:.0} B")),
        peer: per_conn("r2d2").map_or("–".into(), |b| format!("r2d2 {b:.0} B")),
        ratio: ours,
        ratio_text: ours.map_or("–".into(), |b| format!("{b:.0} B")),
        goal: Goal::AtMost(256.0),
        goal_text: "≤ 256 B".into(),
    });

    let mut out = String::new();
    let _ = writeln!(
        out,
        "| # | measurement | pool-core | peer | ratio | goal | status |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|");
    for r in &rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.target,
            r.what,
            r.ours,
            r.peer,
            r.ratio_text,
            r.goal_text,
            r.status()
        );
    }
    let prims: Vec<String> = [
        ("arc-clone-drop", "Arc clone + drop"),
        ("cas-claim-store-release", "CAS + release store"),
        ("instant-now", "Instant::now()"),
    ]
    .iter()
    .filter_map(|(name, label)| {
        res.median_ns("primitives", name)
            .map(|v| format!("{label} {}", ns(Some(v))))
    })
    .collect();
    if !prims.is_empty() {
        let _ = writeln!(out, "\nPrimitives on this machine: {}.", prims.join(", "));
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let busy = load.parse::<f64>().is_ok_and(|l| l > cpus as f64);
    let _ = writeln!(
        out,
        "Machine: {cpus} CPU(s); 1-minute load average at the end: {load}{}",
        if busy {
            " (more runnable threads than CPUs: other processes competed, read the ratios with care)."
        } else {
            "."
        }
    );
    let (met, missed) = rows.iter().fold((0, 0), |(m, x), r| match r.status() {
        "met" => (m + 1, x),
        "**missed**" => (m, x + 1),
        _ => (m, x),
    });
    let _ = writeln!(
        out,
        "\nGoals met: {met}, missed: {missed}. Ratios > 1× mean pool-core is faster \
         (for latency, < 1 means lower). Same run, same machine, medians."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_target_dir_gives_a_table_of_not_run() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-empty-{}", std::process::id()));
        let res = Results {
            criterion: dir.join("criterion"),
            summaries: dir.join("bench-summary"),
            since: SystemTime::UNIX_EPOCH,
        };
        let table = summary_table(&res);
        assert!(table.starts_with("| # | measurement"));
        assert!(table.contains("not run"));
        assert!(!table.contains("missed**"));
    }
}
