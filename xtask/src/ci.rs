//! `cargo xtask ci`: every check CI runs, in order, failing fast.
//!
//! This is exactly what `.ci/run` runs: formatting, the source checks of
//! [`crate::tidy`], clippy with warnings
//! denied, the workspace tests (see [`crate::test`]), the loom model checks,
//! then a short stress run and a leak check on the simulated database, and
//! short stress runs on throwaway PostgreSQL and MariaDB servers
//! (`cargo xtask stress --backend postgres|mysql --local`, no chaos). Each
//! step is timed; the first failure stops the run and names the step.
//!
//! Then every fuzz target runs for a minute (`cargo xtask fuzz --secs 60`,
//! about five minutes with the build) when cargo-fuzz and a nightly compiler
//! (or `RUSTC_BOOTSTRAP=1`) are available; otherwise the step is skipped with
//! a `SKIPPED` line saying why, even when `CI` is set: fuzzing is a bonus,
//! and the crashes it found are regression tests in the normal suite.
//!
//! pool-core's tests then run under AddressSanitizer (`cargo xtask asan`,
//! gating) right after the leak check, and, after every gating step, under
//! ThreadSanitizer (`cargo xtask tsan`) for at most
//! [`sanitizers::CI_TSAN_TIMEOUT`]: its summary (reports, suppressed
//! reports, test failures) is printed and never fails CI. Either is skipped
//! with a `SKIPPED` line when the toolchain has no runtime for it.
//!
//! The real-server stress steps need the server binaries (pool-testkit looks
//! for them). When they are missing the step is skipped with a `SKIPPED`
//! line naming the Debian package to install, unless the environment
//! variable `CI` is set: then CI fails, since it must run every step.

use std::time::{Duration, Instant};

use clap::Args;

use pool_testkit::{MariaDbServer, PgServer};

use crate::sanitizers::{self, Sanitizer};
use crate::util::{self, Result};
use crate::{fuzz, leaks, loom, stress, test, tidy};

/// Arguments of `cargo xtask ci` (none: CI runs one fixed sequence).
#[derive(Debug, Clone, Default, Args)]
pub struct CiArgs {}

/// How long the stress step of CI runs.
pub const CI_STRESS_DURATION: Duration = Duration::from_secs(20);

/// How long each real-server stress step of CI runs (plus a second or two to
/// start the throwaway server).
pub const CI_REAL_STRESS_DURATION: Duration = Duration::from_secs(10);

/// A real-server stress step of CI: its name, backend, binary probe and the
/// Debian package that provides the binaries.
struct RealStep {
    name: &'static str,
    backend: stress::BackendKind,
    binaries: fn() -> std::result::Result<(), String>,
    package: &'static str,
}

/// The real-server stress steps, in order.
const REAL_STEPS: [RealStep; 2] = [
    RealStep {
        name: "stress (postgres)",
        backend: stress::BackendKind::Postgres,
        binaries: PgServer::binaries_available,
        package: "postgresql",
    },
    RealStep {
        name: "stress (mysql)",
        backend: stress::BackendKind::Mysql,
        binaries: MariaDbServer::binaries_available,
        package: "mariadb-server",
    },
];

/// Runs the non-gating ThreadSanitizer step within [`sanitizers::CI_TSAN_TIMEOUT`]
/// and returns its one-line verdict for the timing table.
fn run_tsan() -> String {
    eprintln!(
        "\n==> tsan (not gating, at most {})",
        util::human(sanitizers::CI_TSAN_TIMEOUT)
    );
    let toolchain = match sanitizers::available(Sanitizer::Thread) {
        Ok(toolchain) => toolchain,
        Err(why) => {
            eprintln!("SKIPPED tsan: {why}");
            return format!("SKIPPED ({why})");
        }
    };
    let start = Instant::now();
    let args = sanitizers::SanArgs {
        timeout: Some(sanitizers::CI_TSAN_TIMEOUT),
        ..sanitizers::SanArgs::default()
    };
    let verdict = match sanitizers::run_with(Sanitizer::Thread, &toolchain, &args) {
        Ok(summary) if summary.clean() => format!("clean: {summary}"),
        Ok(summary) => format!("NOT CLEAN (not gating): {summary}"),
        Err(e) => format!("ERROR (not gating): {e}"),
    };
    let verdict = format!("{:>8}  {verdict}", util::human(start.elapsed()));
    eprintln!("<== tsan: {verdict}");
    verdict
}

/// Runs `cargo xtask ci`.
pub fn run(_args: &CiArgs) -> Result {
    let start = Instant::now();
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    let mut record = |name: &'static str, f: &mut dyn FnMut() -> Result| -> Result {
        let took = util::step(name, f)?;
        timings.push((name, took));
        Ok(())
    };

    record("fmt", &mut || {
        util::run(util::cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    record("tidy", &mut || tidy::run(&tidy::TidyArgs::default()))?;
    record("clippy", &mut || {
        util::run(util::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    record("test", &mut || test::run(&test::TestArgs::default()))?;
    record("loom", &mut || loom::run(&loom::LoomArgs::default()))?;

    // ---- stress and leaks on the simulated database -----------------------
    // The lead tunes these two steps (duration, sizes); they call the same
    // functions as `cargo xtask stress` and `cargo xtask leaks`.
    record("stress (sim)", &mut || {
        stress::run(&stress::StressArgs {
            duration: CI_STRESS_DURATION,
            ..stress::StressArgs::default()
        })
    })?;
    record("leaks (sim)", &mut || leaks::run(&leaks::LeaksArgs::ci()))?;
    // ------------------------------------------------------------------------

    // ---- pool-core's tests under AddressSanitizer (gating) -----------------
    // Skipped with a note (never a failure) when the toolchain has no ASan
    // runtime: see xtask/src/sanitizers.rs.
    let mut asan_skipped = None;
    match sanitizers::available(Sanitizer::Address) {
        Ok(toolchain) => record("asan", &mut || {
            let summary = sanitizers::run_with(
                Sanitizer::Address,
                &toolchain,
                &sanitizers::SanArgs::default(),
            )?;
            eprintln!("asan: {summary}");
            if summary.clean() {
                Ok(())
            } else {
                Err(format!("asan: {summary}").into())
            }
        })?,
        Err(why) => {
            eprintln!("\n==> asan\nSKIPPED asan: {why}");
            asan_skipped = Some(why);
        }
    }
    // ------------------------------------------------------------------------

    // ---- a short fuzz run of every target ------------------------------------
    // Skipped with a note (never a failure) without cargo-fuzz or a nightly
    // compiler: see xtask/src/fuzz.rs.
    let mut fuzz_skipped = None;
    match fuzz::available() {
        Ok(toolchain) => record("fuzz", &mut || {
            fuzz::run_with(
                toolchain,
                &fuzz::FuzzArgs {
                    secs: fuzz::CI_FUZZ_SECS,
                    targets: Vec::new(),
                },
            )
        })?,
        Err(why) => {
            eprintln!("\n==> fuzz\nSKIPPED fuzz: {why}");
            fuzz_skipped = Some(why);
        }
    }
    // ------------------------------------------------------------------------

    // ---- short stress runs on throwaway real servers -----------------------
    // No chaos: these steps check the invariants against a real server's
    // connection count and session state, and must not flake on a busy
    // 2-core runner.
    let mut skipped = Vec::new();
    for step in &REAL_STEPS {
        match (step.binaries)() {
            Ok(()) => record(step.name, &mut || {
                stress::run(&stress::StressArgs {
                    duration: CI_REAL_STRESS_DURATION,
                    backend: step.backend,
                    local: true,
                    ..stress::StressArgs::default()
                })
            })?,
            Err(why) if pool_testkit::is_ci() => record(step.name, &mut || {
                Err(format!(
                    "{why} (CI is set, so missing server binaries are an error; install the \
                     Debian package `{}`)",
                    step.package
                )
                .into())
            })?,
            Err(why) => {
                eprintln!(
                    "\n==> {}\nSKIPPED {}: {why} (Debian package `{}`)",
                    step.name, step.name, step.package
                );
                skipped.push(step);
            }
        }
    }
    // ------------------------------------------------------------------------

    // ---- pool-core's tests under ThreadSanitizer (not gating) ---------------
    // After every gating step, time-boxed; its summary is printed and never
    // fails CI (std is not instrumented: see xtask/tsan.supp).
    let tsan = run_tsan();

    eprintln!("\nci: all steps passed in {}", util::human(start.elapsed()));
    for (name, took) in &timings {
        eprintln!("  {name:<17} {:>8}", util::human(*took));
    }
    if let Some(why) = asan_skipped {
        eprintln!("  {:<17} SKIPPED ({why})", "asan");
    }
    eprintln!("  {:<17} {tsan}", "tsan (no gate)");
    if let Some(why) = fuzz_skipped {
        eprintln!("  {:<17} SKIPPED ({why})", "fuzz");
    }
    for step in skipped {
        eprintln!(
            "  {:<17} SKIPPED (install the Debian package `{}`)",
            step.name, step.package
        );
    }
    Ok(())
}
