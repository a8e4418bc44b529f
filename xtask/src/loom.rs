//! `cargo xtask loom`: pool-core's loom model checks.
//!
//! Runs `RUSTFLAGS="--cfg pool_loom" cargo test -p pool-core --release --lib loom`
//! in its own target directory (`<target>/loom`, where `<target>` is
//! `$CARGO_TARGET_DIR` or `target/`), so that the changed `RUSTFLAGS` do not
//! invalidate the normal build. `LOOM_MAX_PREEMPTIONS` defaults to 3; a value
//! in the environment wins, as do any other `LOOM_*` variables.

use clap::Args;

use crate::util::{self, Result};

/// Arguments of `cargo xtask loom`.
#[derive(Debug, Clone, Default, Args)]
pub struct LoomArgs {
    /// Extra arguments for the test binary, after `--` (for example
    /// `-- --nocapture`).
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

/// The default preemption bound, the one CI runs (ARCHITECTURE.md,
/// "Testing", says what the models cover at it).
const DEFAULT_MAX_PREEMPTIONS: &str = "3";

/// Runs `cargo xtask loom`.
pub fn run(args: &LoomArgs) -> Result {
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.split_whitespace().any(|f| f == "pool_loom") {
        if !rustflags.is_empty() {
            rustflags.push(' ');
        }
        rustflags.push_str("--cfg pool_loom");
    }
    let preemptions = std::env::var("LOOM_MAX_PREEMPTIONS")
        .unwrap_or_else(|_| DEFAULT_MAX_PREEMPTIONS.to_owned());
    let mut cmd = util::cargo();
    cmd.env("RUSTFLAGS", rustflags)
        .env("CARGO_TARGET_DIR", util::target_dir().join("loom"))
        .env("LOOM_MAX_PREEMPTIONS", preemptions)
        .args(["test", "-p", "pool-core", "--release", "--lib", "loom"]);
    if !args.test_args.is_empty() {
        cmd.arg("--").args(&args.test_args);
    }
    util::run(&mut cmd)
}
