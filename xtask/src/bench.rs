//! `cargo xtask bench`: the benchmarks of the `benches` crate.

use clap::Args;

use crate::util::{self, Result};

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Clone, Default, Args)]
pub struct BenchArgs {
    /// Extra arguments for the benchmark harness, after `--` (for example a
    /// benchmark-name filter).
    #[arg(last = true)]
    pub bench_args: Vec<String>,
}

/// Runs `cargo bench -p benches [-- <args>]`.
pub fn run(args: &BenchArgs) -> Result {
    let mut cmd = util::cargo();
    cmd.args(["bench", "-p", "benches"]);
    if !args.bench_args.is_empty() {
        cmd.arg("--").args(&args.bench_args);
    }
    util::run(&mut cmd)
}
