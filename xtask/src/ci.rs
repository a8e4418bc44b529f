//! `cargo xtask ci`: every check CI runs, in order, failing fast.
//!
//! This is exactly what `.ci/run` runs: formatting, clippy with warnings
//! denied, the workspace tests (see [`crate::test`]), the loom model checks,
//! then a short stress run and a leak check on the simulated database. Each
//! step is timed; the first failure stops the run and names the step.

use std::time::{Duration, Instant};

use clap::Args;

use crate::util::{self, Result};
use crate::{leaks, loom, stress, test};

/// Arguments of `cargo xtask ci` (none: CI runs one fixed sequence).
#[derive(Debug, Clone, Default, Args)]
pub struct CiArgs {}

/// How long the stress step of CI runs.
pub const CI_STRESS_DURATION: Duration = Duration::from_secs(20);

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

    eprintln!("\nci: all steps passed in {}", util::human(start.elapsed()));
    for (name, took) in &timings {
        eprintln!("  {name:<14} {:>8}", util::human(*took));
    }
    Ok(())
}
