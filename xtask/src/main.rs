//! The project's task runner, in the style of rust-analyzer's xtask: plain
//! Rust instead of shell scripts, one module per task.
//!
//! Run `cargo xtask help` for the list of tasks (`cargo xtask` is an alias
//! for `cargo run --quiet --package xtask --`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bench;
mod ci;
mod fuzz;
mod leaks;
mod loom;
mod proc;
mod sanitizers;
mod stress;
mod test;
mod tidy;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The project's task runner.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "The project's task runner",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// The tasks.
#[derive(Debug, Subcommand)]
enum Task {
    /// Every CI check in order (what `.ci/run` runs): fmt, tidy, clippy, test,
    /// loom, a short stress run and a leak check; stops at the first failure.
    Ci(ci::CiArgs),
    /// `cargo test --workspace --all-features` (pool-mysql apart: once with
    /// `rustls`, its TLS test again with `tls`), then a summary of the
    /// real-database suites that could not run (and the Debian packages they
    /// need). Fails if `CI` is set and server binaries are missing.
    Test(test::TestArgs),
    /// pool-core's loom model checks (`--cfg pool_loom`, release, own target
    /// dir, LOOM_MAX_PREEMPTIONS=2 unless set).
    Loom(loom::LoomArgs),
    /// The benchmarks (`cargo bench -p benches`).
    Bench(bench::BenchArgs),
    /// Many threads against a small pool, with phases and optional chaos;
    /// checks the pool's invariants and reports throughput and wait times.
    Stress(stress::StressArgs),
    /// The leak suite: long loans reported once, forgotten connections,
    /// panicking and exiting holders, thousands of build/use/close cycles
    /// (threads, fds, memory), and with --valgrind a memcheck run.
    Leaks(leaks::LeaksArgs),
    /// The cargo-fuzz targets of `fuzz/` (URL parameters, the drivers' URL
    /// entry points, build), one at a time, `--secs` each (default 600).
    Fuzz(fuzz::FuzzArgs),
    /// Checks of the sources beyond rustc and clippy: module docs, unused
    /// dependencies, intra-doc links, benchmark figures in comments, ignored
    /// tests and `todo`s, long files that do not say why.
    Tidy(tidy::TidyArgs),
    /// pool-core's tests (the proptest model included, no doctests) under
    /// AddressSanitizer and LeakSanitizer (stable toolchain with
    /// RUSTC_BOOTSTRAP=1, own target dir); fails on any report.
    Asan(sanitizers::SanArgs),
    /// pool-core's tests under ThreadSanitizer, with the suppressions of
    /// xtask/tsan.supp (std is not instrumented); fails on an unsuppressed
    /// report, but CI only prints its summary.
    Tsan(sanitizers::SanArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.task {
        Task::Ci(args) => ci::run(args),
        Task::Test(args) => test::run(args),
        Task::Loom(args) => loom::run(args),
        Task::Bench(args) => bench::run(args),
        Task::Stress(args) => stress::run(args),
        Task::Leaks(args) => leaks::run(args),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Tidy(args) => tidy::run(args),
        Task::Asan(args) => sanitizers::run(sanitizers::Sanitizer::Address, args),
        Task::Tsan(args) => sanitizers::run(sanitizers::Sanitizer::Thread, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_every_task() {
        let help = Cli::command().render_long_help().to_string();
        for task in [
            "ci", "test", "loom", "bench", "stress", "leaks", "fuzz", "tidy", "asan", "tsan",
            "help",
        ] {
            assert!(help.contains(task), "{task} missing from:\n{help}");
        }
    }

    #[test]
    fn stress_defaults_match_the_clap_defaults() {
        let cli = Cli::try_parse_from(["xtask", "stress"]).unwrap();
        let Task::Stress(args) = cli.task else {
            panic!("not stress")
        };
        assert_eq!(args, stress::StressArgs::default());
    }

    #[test]
    fn leaks_defaults_match_the_clap_defaults() {
        let cli = Cli::try_parse_from(["xtask", "leaks"]).unwrap();
        let Task::Leaks(args) = cli.task else {
            panic!("not leaks")
        };
        assert_eq!(args, leaks::LeaksArgs::default());
    }

    #[test]
    fn fuzz_flags_parse() {
        let cli = Cli::try_parse_from(["xtask", "fuzz"]).unwrap();
        let Task::Fuzz(args) = cli.task else {
            panic!("not fuzz")
        };
        assert_eq!(args, fuzz::FuzzArgs::default());
        let cli = Cli::try_parse_from(["xtask", "fuzz", "--secs", "60", "build_pool"]).unwrap();
        let Task::Fuzz(args) = cli.task else {
            panic!("not fuzz")
        };
        assert_eq!(
            (args.secs, args.targets),
            (60, vec!["build_pool".to_owned()])
        );
        assert!(Cli::try_parse_from(["xtask", "fuzz", "nope"]).is_err());
    }

    #[test]
    fn sanitizer_flags_parse() {
        for task in ["asan", "tsan"] {
            let cli = Cli::try_parse_from(["xtask", task]).unwrap();
            let (Task::Asan(args) | Task::Tsan(args)) = cli.task else {
                panic!("not {task}")
            };
            assert_eq!(args, sanitizers::SanArgs::default());
        }
        let cli = Cli::try_parse_from([
            "xtask",
            "tsan",
            "--timeout",
            "4m",
            "--bin",
            "model",
            "--",
            "--nocapture",
        ])
        .unwrap();
        let Task::Tsan(args) = cli.task else {
            panic!("not tsan")
        };
        assert_eq!(args.timeout, Some(std::time::Duration::from_secs(240)));
        assert_eq!(args.bins, ["model"]);
        assert_eq!(args.test_args, ["--nocapture"]);
    }

    #[test]
    fn stress_flags_parse() {
        let cli = Cli::try_parse_from([
            "xtask",
            "stress",
            "--duration",
            "10s",
            "--threads",
            "16",
            "--pool-size",
            "4",
            "--seed",
            "7",
            "--backend",
            "sim",
            "--chaos",
            "--json",
            "out.json",
        ])
        .unwrap();
        let Task::Stress(args) = cli.task else {
            panic!("not stress")
        };
        assert_eq!(args.duration, std::time::Duration::from_secs(10));
        assert_eq!((args.threads, args.pool_size, args.seed), (16, 4, Some(7)));
        assert!(args.chaos);
    }
}
