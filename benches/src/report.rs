//! Plumbing shared by the plain-`main` bench binaries: their command line,
//! where they leave their JSON summaries for `cargo xtask bench`, and a
//! small text-table printer.

use std::path::PathBuf;
use std::time::Duration;

/// Environment variable naming the directory where bench binaries write
/// their JSON summaries (set by `cargo xtask bench`); without it they write
/// to `<target dir>/bench-summary`.
pub const SUMMARY_DIR_ENV: &str = "BENCH_SUMMARY_DIR";

/// Environment variable: set to `1` to skip the real-database benchmarks.
pub const NO_DB_ENV: &str = "BENCH_NO_DB";

/// The command line of a plain-`main` bench binary, as cargo passes it.
#[derive(Debug, Clone, Default)]
pub struct BenchArgs {
    /// `--bench` was given: a real run (`cargo bench`). Without it the binary
    /// was started by `cargo test --benches` and should only smoke-test.
    pub bench: bool,
    /// Name filters (any argument not starting with `-`); empty runs all.
    pub filters: Vec<String>,
}

impl BenchArgs {
    /// Parses `std::env::args()`.
    pub fn from_env() -> Self {
        let mut args = BenchArgs::default();
        for arg in std::env::args().skip(1) {
            if arg == "--bench" {
                args.bench = true;
            } else if !arg.starts_with('-') {
                args.filters.push(arg);
            }
        }
        args
    }

    /// Whether the scenario called `name` should run.
    pub fn wants(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }

    /// `full` for a real run, a token duration (to check that the code runs)
    /// under `cargo test`.
    pub fn duration(&self, full: Duration) -> Duration {
        if self.bench {
            full
        } else {
            Duration::from_millis(20)
        }
    }
}

/// Where summaries go: `$BENCH_SUMMARY_DIR`, else `bench-summary` in the
/// target directory that holds this executable (`<target>/release/deps/…`).
pub fn summary_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(SUMMARY_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("bench-summary"))
}

/// Writes `value` as `<summary dir>/<name>.json` (and says where).
pub fn write_summary(name: &str, value: &serde_json::Value) {
    let Some(dir) = summary_dir() else {
        eprintln!("bench summary: no target directory found; not writing {name}.json");
        return;
    };
    let path = dir.join(format!("{name}.json"));
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(value).expect("serialisable summary"),
        )
    });
    match written {
        Ok(()) => eprintln!("bench summary written to {}", path.display()),
        Err(e) => eprintln!("bench summary: cannot write {}: {e}", path.display()),
    }
}

/// Prints rows as an aligned text table, the first row being the header.
pub fn print_table(rows: &[Vec<String>]) {
    let Some(header) = rows.first() else { return };
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 0 {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        println!("{}", line.join("  "));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            println!("{}", rule.join("  "));
        }
    }
}

/// Formats nanoseconds for humans: `850 ns`, `12.3 µs`, `4.5 ms`.
pub fn ns(v: f64) -> String {
    if v < 1_000.0 {
        format!("{v:.0} ns")
    } else if v < 1_000_000.0 {
        format!("{:.1} µs", v / 1e3)
    } else if v < 1_000_000_000.0 {
        format!("{:.1} ms", v / 1e6)
    } else {
        format!("{:.2} s", v / 1e9)
    }
}

/// Formats a rate for humans: `1.23 M/s`, `45.6 k/s`.
pub fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k/s", v / 1e3)
    } else {
        format!("{v:.0} /s")
    }
}
