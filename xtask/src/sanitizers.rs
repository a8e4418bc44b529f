//! `cargo xtask asan` and `cargo xtask tsan`: pool-core's tests (the unit
//! tests and every file of `crates/pool-core/tests/`, the proptest model
//! included; no doctests) under AddressSanitizer or ThreadSanitizer, on the
//! stable toolchain.
//!
//! The stable toolchain ships the sanitizer runtimes; `RUSTC_BOOTSTRAP=1`
//! lets it take `-Zsanitizer=...`. The tests are built with
//! `--target <host>` (so that `RUSTFLAGS` reach neither build scripts nor
//! proc-macros) into their own target directory (`<target>/asan`,
//! `<target>/tsan`, so the normal build is not invalidated), then each test
//! binary runs on its own, in `crates/pool-core`, with its output in
//! `<target>/<san>/logs/<binary>.log`; the task prints one line per binary
//! and the sanitizer reports it found. std is not rebuilt (no `rust-src`, so
//! no `-Zbuild-std`): it is not instrumented.
//!
//! * **asan** is gating: a test failure, an AddressSanitizer report or a
//!   LeakSanitizer report (`detect_leaks=1`, suppressions in
//!   `xtask/lsan.supp`) fails the task.
//! * **tsan** builds with `-Zsanitizer=thread` (and
//!   `-Cunsafe-allow-abi-mismatch=sanitizer` when rustc knows the flag: the
//!   uninstrumented std is a different "ABI"), runs with
//!   `halt_on_error=0` and the suppressions of `xtask/tsan.supp`, each of
//!   which says why it is noise from the uninstrumented std. It fails on an
//!   unsuppressed report or a test failure, but `cargo xtask ci` runs it
//!   after the gating steps, time-boxed, and only prints its summary.
//!
//! The proptest model runs [`PROPTEST_CASES`] cases under a sanitizer (a
//! `PROPTEST_CASES` in the environment wins). Tests that cannot work under a
//! sanitizer are skipped by name, with the reason printed: see [`EXCLUDED`].
//!
//! When the toolchain has no runtime for the sanitizer (the probe build of
//! an empty program fails), `cargo xtask ci` prints a `SKIPPED` line and
//! goes on; the tasks themselves fail with the reason.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use crate::util::{self, Result};

/// A sanitizer this task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sanitizer {
    /// AddressSanitizer, with LeakSanitizer.
    Address,
    /// ThreadSanitizer.
    Thread,
}

impl Sanitizer {
    /// `asan` or `tsan`: the task, its target directory and its logs.
    pub fn short(self) -> &'static str {
        match self {
            Sanitizer::Address => "asan",
            Sanitizer::Thread => "tsan",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Sanitizer::Address => "-Zsanitizer=address",
            Sanitizer::Thread => "-Zsanitizer=thread",
        }
    }

    /// The start of the line each report of this sanitizer begins with.
    fn report_markers(self) -> &'static [&'static str] {
        match self {
            Sanitizer::Address => &["ERROR: AddressSanitizer", "ERROR: LeakSanitizer"],
            Sanitizer::Thread => &["WARNING: ThreadSanitizer"],
        }
    }
}

/// Proptest cases of the model test under a sanitizer (its own default is
/// 48): each case builds pools and threads, and TSan slows them 5-15 times.
pub const PROPTEST_CASES: u32 = 16;

/// How long `cargo xtask ci` lets `tsan` run, its build included.
pub const CI_TSAN_TIMEOUT: Duration = Duration::from_secs(240);

/// A test that does not run under a sanitizer, and why.
pub struct Excluded {
    /// The sanitizers it does not run under.
    pub under: &'static [Sanitizer],
    /// The test binary (the file name in `tests/`, or `pool_core` for the
    /// unit tests).
    pub binary: &'static str,
    /// The test's name, as libtest's `--skip` takes it.
    pub test: &'static str,
    /// Why.
    pub reason: &'static str,
}

/// The tests that do not run under a sanitizer.
pub const EXCLUDED: &[Excluded] = &[Excluded {
    under: &[Sanitizer::Thread],
    binary: "fuzz_regressions",
    test: "build_pool_failed_build_leaves_no_thread_behind",
    reason: "it asserts that a failed build joined its closing thread, which the pool does \
             only when closing takes under 100 ms; TSan's slowdown pushes a 30 ms connect \
             past that (failed in 1 of 2 runs)",
}];

/// Arguments of `cargo xtask asan` and `cargo xtask tsan`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Args)]
pub struct SanArgs {
    /// Stop after this long (the build included): `300`, `5m`. Tests not run
    /// by then are reported as not run, and the task fails.
    #[arg(long, value_parser = util::parse_duration)]
    pub timeout: Option<Duration>,
    /// Run only these test binaries (`model`, `basics`, `pool_core` for the
    /// unit tests...; default: all).
    #[arg(long = "bin", value_name = "NAME")]
    pub bins: Vec<String>,
    /// Extra arguments for each test binary, after `--` (a test name filter,
    /// `--nocapture`...).
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

/// What a sanitizer run found.
#[derive(Debug, Default)]
pub struct Summary {
    /// Tests passed, failed and ignored, over all binaries.
    pub passed: u64,
    /// See `passed`.
    pub failed: u64,
    /// See `passed`.
    pub ignored: u64,
    /// Binaries whose tests failed, crashed or did not finish.
    pub bad_binaries: Vec<String>,
    /// Binaries not run or killed at the deadline.
    pub timed_out: Vec<String>,
    /// Unsuppressed sanitizer reports.
    pub reports: u64,
    /// Reports the suppressions file matched.
    pub suppressed: u64,
    /// The `SUMMARY:` line of each unsuppressed report, with its count.
    pub report_kinds: BTreeMap<String, u64>,
    /// Wall time of the build and of the runs.
    pub build_time: Duration,
    /// See `build_time`.
    pub run_time: Duration,
}

impl Summary {
    /// Whether the run found nothing wrong.
    pub fn clean(&self) -> bool {
        self.failed == 0
            && self.bad_binaries.is_empty()
            && self.timed_out.is_empty()
            && self.reports == 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} ignored; {} sanitizer reports ({} suppressed); build {}, \
             tests {}",
            self.passed,
            self.failed,
            self.ignored,
            self.reports,
            self.suppressed,
            util::human(self.build_time),
            util::human(self.run_time)
        )?;
        if !self.bad_binaries.is_empty() {
            write!(f, "; failing binaries: {}", self.bad_binaries.join(", "))?;
        }
        if !self.timed_out.is_empty() {
            write!(f, "; not finished: {}", self.timed_out.join(", "))?;
        }
        Ok(())
    }
}

/// The host's target triple (`rustc -vV`).
fn host() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_owned())
        .ok_or_else(|| "`rustc -vV` names no host".into())
}

/// The sanitizer's target directory.
fn san_target_dir(san: Sanitizer) -> PathBuf {
    util::target_dir().join(san.short())
}

/// How to build with a sanitizer here: the target and the `RUSTFLAGS`.
#[derive(Debug, Clone)]
pub struct Toolchain {
    target: String,
    rustflags: Vec<&'static str>,
}

/// Whether `san` works with this toolchain: builds and runs an empty program
/// with it. `Err` says why not.
pub fn available(san: Sanitizer) -> std::result::Result<Toolchain, String> {
    let target = host().map_err(|e| e.to_string())?;
    let dir = san_target_dir(san).join("probe");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let src = dir.join("probe.rs");
    std::fs::write(&src, "fn main() {}\n").map_err(|e| format!("{}: {e}", src.display()))?;
    let exe = dir.join("probe");
    let try_flags = |flags: &[&str]| -> std::result::Result<(), String> {
        let out = Command::new("rustc")
            .env("RUSTC_BOOTSTRAP", "1")
            .args(flags)
            .args(["--edition", "2021", "--target", &target, "-o"])
            .arg(&exe)
            .arg(&src)
            .output()
            .map_err(|e| format!("cannot run rustc: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr
                .lines()
                .find(|l| l.starts_with("error"))
                .unwrap_or("rustc failed");
            return Err(first.to_owned());
        }
        let run = Command::new(&exe)
            .output()
            .map_err(|e| format!("cannot run the probe: {e}"))?;
        if !run.status.success() {
            return Err(format!(
                "an empty program built with {} fails: {}",
                san.flag(),
                String::from_utf8_lossy(&run.stderr).trim()
            ));
        }
        Ok(())
    };
    let mut flags = vec![san.flag()];
    if san == Sanitizer::Thread {
        // std is not built with the sanitizer: since rustc 1.8x mixing the
        // two is an error unless allowed. Older compilers do not know the
        // flag, and do not need it.
        flags.push("-Cunsafe-allow-abi-mismatch=sanitizer");
        if let Err(why) = try_flags(&flags) {
            if !why.contains("unsafe-allow-abi-mismatch") {
                return Err(format!("{} rejected: {why}", san.flag()));
            }
            flags.pop();
        }
    }
    try_flags(&flags).map_err(|why| format!("{} rejected: {why}", san.flag()))?;
    // Frame pointers: the runtimes' fast unwinder records the stacks of
    // allocations (and suppressions match on them).
    flags.push("-Cforce-frame-pointers=yes");
    Ok(Toolchain {
        target,
        rustflags: flags,
    })
}

/// Runs `cargo xtask asan` or `cargo xtask tsan`: fails if the sanitizer is
/// not available, on a test failure and on an unsuppressed report.
pub fn run(san: Sanitizer, args: &SanArgs) -> Result {
    let toolchain = available(san).map_err(|why| format!("cannot run {}: {why}", san.short()))?;
    let summary = run_with(san, &toolchain, args)?;
    eprintln!("{}: {summary}", san.short());
    if summary.clean() {
        Ok(())
    } else {
        Err(format!("{}: {summary}", san.short()).into())
    }
}

/// Whether llvm-symbolizer is on `PATH` (else the runtimes fall back on
/// binutils' addr2line, which they use only when allowed).
fn have_llvm_symbolizer() -> bool {
    Command::new("llvm-symbolizer")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The runtime options (`ASAN_OPTIONS`, `LSAN_OPTIONS`, `TSAN_OPTIONS`),
/// after any the environment already has (the runtime takes the last value
/// of each option, so ours win).
fn runtime_env(san: Sanitizer) -> Vec<(&'static str, String)> {
    let symbolize = if have_llvm_symbolizer() {
        ""
    } else {
        ":allow_addr2line=1"
    };
    let with_env = |var: &'static str, ours: String| {
        let value = match std::env::var(var) {
            Ok(theirs) if !theirs.is_empty() => format!("{theirs}:{ours}"),
            _ => ours,
        };
        (var, value)
    };
    let supp = util::workspace_root().join("xtask").join("tsan.supp");
    match san {
        Sanitizer::Address => vec![with_env(
            "ASAN_OPTIONS",
            format!("detect_leaks=1:detect_stack_use_after_return=1{symbolize}"),
        )],
        Sanitizer::Thread => vec![with_env(
            "TSAN_OPTIONS",
            format!(
                "suppressions={}:print_suppressions=1:halt_on_error=0:second_deadlock_stack=1\
                 {symbolize}",
                supp.display()
            ),
        )],
    }
}

/// A test binary cargo built.
struct TestBinary {
    name: String,
    exe: PathBuf,
}

/// Builds pool-core's tests with `toolchain` and returns the test binaries.
fn build(san: Sanitizer, toolchain: &Toolchain) -> Result<Vec<TestBinary>> {
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    for flag in &toolchain.rustflags {
        if !rustflags.is_empty() {
            rustflags.push(' ');
        }
        rustflags.push_str(flag);
    }
    let mut cmd = util::cargo();
    // Line tables are all the reports need (file:line), and make the build
    // and the links of ~20 test binaries much cheaper than full debuginfo;
    // the target dir is built once per CI run, so incremental only costs.
    cmd.env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTFLAGS", rustflags)
        .env("CARGO_TARGET_DIR", san_target_dir(san))
        .env("CARGO_PROFILE_DEV_DEBUG", "line-tables-only")
        .env("CARGO_INCREMENTAL", "0")
        .args([
            "test",
            "-p",
            "pool-core",
            "--all-features",
            "--lib",
            "--tests",
            "--no-run",
            "--message-format=json-render-diagnostics",
            "--target",
            &toolchain.target,
        ])
        .stdout(Stdio::piped());
    eprintln!("$ {}", util::Shown(&cmd));
    let out = cmd
        .spawn()
        .and_then(|c| c.wait_with_output())
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("building pool-core's tests with {} failed", san.flag()).into());
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        if let (Some(exe), Some(name)) =
            (msg["executable"].as_str(), msg["target"]["name"].as_str())
        {
            binaries.push(TestBinary {
                name: name.replace('-', "_"),
                exe: PathBuf::from(exe),
            });
        }
    }
    binaries.sort_by(|a, b| a.name.cmp(&b.name));
    if binaries.is_empty() {
        return Err("cargo built no test binary".into());
    }
    Ok(binaries)
}

/// Builds and runs pool-core's tests under `san`, within `args.timeout`.
pub fn run_with(san: Sanitizer, toolchain: &Toolchain, args: &SanArgs) -> Result<Summary> {
    let start = Instant::now();
    let deadline = args.timeout.map(|t| start + t);
    let mut summary = Summary::default();
    let binaries = build(san, toolchain)?;
    summary.build_time = start.elapsed();
    for bin in &args.bins {
        if !binaries.iter().any(|b| &b.name == bin) {
            let names: Vec<&str> = binaries.iter().map(|b| b.name.as_str()).collect();
            return Err(format!("no test binary `{bin}` (there are: {})", names.join(", ")).into());
        }
    }
    let logs = san_target_dir(san).join("logs");
    std::fs::create_dir_all(&logs)?;
    let env = runtime_env(san);
    for (var, value) in &env {
        eprintln!("{var}={value}");
    }
    let proptest_cases =
        std::env::var("PROPTEST_CASES").unwrap_or_else(|_| PROPTEST_CASES.to_string());
    eprintln!("PROPTEST_CASES={proptest_cases} (the model test)");
    for ex in EXCLUDED.iter().filter(|e| e.under.contains(&san)) {
        eprintln!(
            "excluded under {}: {}::{}: {}",
            san.short(),
            ex.binary,
            ex.test,
            ex.reason
        );
    }
    let pkg_dir = util::workspace_root().join("crates").join("pool-core");
    let runs_start = Instant::now();
    for bin in &binaries {
        if !args.bins.is_empty() && !args.bins.contains(&bin.name) {
            continue;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            summary
                .timed_out
                .push(format!("{} (not started)", bin.name));
            continue;
        }
        let log = logs.join(format!("{}.log", bin.name));
        let file = File::create(&log)?;
        let mut cmd = Command::new(&bin.exe);
        cmd.current_dir(&pkg_dir)
            .env("CARGO_MANIFEST_DIR", &pkg_dir)
            .env("PROPTEST_CASES", &proptest_cases)
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        for ex in EXCLUDED
            .iter()
            .filter(|e| e.under.contains(&san) && e.binary == bin.name)
        {
            cmd.args(["--skip", ex.test]);
        }
        cmd.args(&args.test_args);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.exe.display()))?;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let took = started.elapsed();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found = scan(san, &text);
        summary.passed += found.passed;
        summary.failed += found.failed;
        summary.ignored += found.ignored;
        summary.reports += found.reports;
        summary.suppressed += found.suppressed;
        for (kind, n) in &found.kinds {
            *summary.report_kinds.entry(kind.clone()).or_default() += n;
        }
        let verdict = match status {
            None => {
                summary.timed_out.push(bin.name.clone());
                "KILLED at the deadline".to_owned()
            }
            Some(status) => {
                // TSan exits 66 after its reports (halt_on_error=0); the
                // reports are counted on their own.
                let tests_ok = found.results > 0 && found.failed == 0;
                let exit_ok = status.success()
                    || (san == Sanitizer::Thread && status.code() == Some(66) && tests_ok);
                if tests_ok && exit_ok {
                    "ok".to_owned()
                } else {
                    summary.bad_binaries.push(bin.name.clone());
                    format!("FAILED ({status})")
                }
            }
        };
        eprintln!(
            "  {:<18} {verdict}: {} passed, {} failed, {} ignored; {} reports, {} suppressed \
             ({})",
            bin.name,
            found.passed,
            found.failed,
            found.ignored,
            found.reports,
            found.suppressed,
            util::human(took)
        );
        if found.reports > 0 || verdict != "ok" {
            show_problems(san, &text, &log);
        }
    }
    summary.run_time = runs_start.elapsed();
    if !summary.report_kinds.is_empty() {
        eprintln!("{} reports by kind and place:", san.short());
        for (kind, n) in &summary.report_kinds {
            eprintln!("  {n:>4} × {kind}");
        }
    }
    Ok(summary)
}

/// What one binary's output says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Found {
    results: u64,
    passed: u64,
    failed: u64,
    ignored: u64,
    reports: u64,
    suppressed: u64,
    kinds: BTreeMap<String, u64>,
}

/// Reads the test results and sanitizer reports out of a binary's output.
fn scan(san: Sanitizer, text: &str) -> Found {
    let mut found = Found::default();
    let mut in_matched = false;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("test result: ") {
            found.results += 1;
            // "ok. 12 passed; 0 failed; 1 ignored; 0 measured; ..."
            for part in rest.split([';', '.']) {
                let mut words = part.split_whitespace();
                if let (Some(n), Some(what)) = (words.next(), words.next()) {
                    let Ok(n) = n.parse::<u64>() else { continue };
                    match what {
                        "passed" => found.passed += n,
                        "failed" => found.failed += n,
                        "ignored" => found.ignored += n,
                        _ => {}
                    }
                }
            }
            continue;
        }
        if san.report_markers().iter().any(|m| line.contains(m)) {
            found.reports += 1;
            continue;
        }
        if let Some(rest) = line.strip_prefix("SUMMARY: ") {
            *found.kinds.entry(strip_pc(rest)).or_default() += 1;
            continue;
        }
        // "ThreadSanitizer: Matched 3 suppressions (pid=1):" then one
        // "<count> <type>:<pattern>" line each (LeakSanitizer: a
        // "Suppressions used:" table of "count bytes template").
        if (line.contains("Sanitizer: Matched ") && line.contains(" suppressions"))
            || line.starts_with("Suppressions used:")
        {
            in_matched = true;
            continue;
        }
        if in_matched {
            let mut words = line.split_whitespace();
            match words.next().map(str::parse::<u64>) {
                Some(Ok(n)) => found.suppressed += n,
                Some(Err(_)) if line.trim_start().starts_with("count") => {}
                _ => in_matched = false,
            }
        }
    }
    found
}

/// A `SUMMARY:` line without its run-specific parts (addresses, pids).
fn strip_pc(summary: &str) -> String {
    summary
        .split_whitespace()
        .filter(|w| !w.starts_with("0x") && !w.starts_with("(pc"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints the reports (each up to its `SUMMARY:` line, at most a few) and,
/// for a failure, the failing tests, then where the full log is.
fn show_problems(san: Sanitizer, text: &str, log: &Path) {
    const MAX_REPORTS: usize = 3;
    const MAX_LINES: usize = 60;
    let mut shown = 0;
    let mut lines_left = 0;
    for line in text.lines() {
        if san.report_markers().iter().any(|m| line.contains(m)) {
            shown += 1;
            if shown > MAX_REPORTS {
                break;
            }
            lines_left = MAX_LINES;
        }
        if lines_left > 0 {
            eprintln!("    {line}");
            lines_left -= 1;
            if line.starts_with("SUMMARY: ") {
                lines_left = 0;
            }
        }
    }
    for line in text.lines() {
        if (line.starts_with("test ") && line.ends_with("FAILED"))
            || line.starts_with("thread '")
            || line.starts_with("test result: FAILED")
        {
            eprintln!("    {line}");
        }
    }
    eprintln!("    (full output: {})", log.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_counts_results_reports_and_suppressions() {
        let text = "\
running 3 tests
test a ... ok
==================
WARNING: ThreadSanitizer: data race (pid=12)
SUMMARY: ThreadSanitizer: data race /x/pool.rs:10 in pool_core::f
==================
test result: ok. 2 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.5s
ThreadSanitizer: Matched 2 suppressions (pid=12):
4 race:std::sync::mpmc
1 race:std::thread
ThreadSanitizer: reported 1 warnings
";
        let found = scan(Sanitizer::Thread, text);
        assert_eq!(
            (found.results, found.passed, found.failed, found.ignored),
            (1, 2, 1, 3)
        );
        assert_eq!((found.reports, found.suppressed), (1, 5));
        assert_eq!(
            found.kinds.keys().collect::<Vec<_>>(),
            ["ThreadSanitizer: data race /x/pool.rs:10 in pool_core::f"]
        );
    }

    #[test]
    fn scan_reads_leak_reports_and_their_suppressions() {
        let text = "\
test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s
==1==ERROR: LeakSanitizer: detected memory leaks
SUMMARY: AddressSanitizer: 64 byte(s) leaked in 1 allocation(s).
-----------------------------------------------------
Suppressions used:
  count      bytes template
      2        128 leaky_fn
-----------------------------------------------------
";
        let found = scan(Sanitizer::Address, text);
        assert_eq!((found.passed, found.reports, found.suppressed), (5, 1, 2));
    }

    #[test]
    fn every_exclusion_says_why() {
        for ex in EXCLUDED {
            assert!(!ex.under.is_empty() && ex.reason.len() > 20, "{}", ex.test);
        }
    }
}
