//! `cargo xtask fuzz`: the cargo-fuzz targets of `fuzz/` (issue 16), one at a
//! time, each in a single libFuzzer process (no `-jobs`/`-fork`: the machines
//! are small and shared).
//!
//! The targets: `url_params` (`PoolParams::extract`, `redact_url`,
//! `url_error` on any string), `driver_urls` (both drivers' `from_url` and
//! `builder_from_url` with a fuzzed password that no error may show) and
//! `build_pool` (`Config::validate`, then `build` and a short use of whatever it
//! accepts, with a manager that always connects).
//!
//! cargo-fuzz needs a nightly compiler: `cargo +nightly fuzz` when rustup
//! lists a nightly toolchain, else the default toolchain with
//! `RUSTC_BOOTSTRAP=1`. Each target starts from the seeds in
//! `fuzz/seeds/<target>` and writes what it finds to a working corpus under
//! `<target dir>/fuzz-corpus/<target>` (not committed); a crash or a hang
//! (`-timeout=10`) stops the run and is saved in `fuzz/artifacts/<target>/`.
//! Turn each into a regression test in the normal suite.
//!
//! `cargo xtask ci` runs every target for [`CI_FUZZ_SECS`] seconds when
//! [`available`] says it can, and otherwise prints why it skips the step:
//! CI never fails only because cargo-fuzz or a nightly compiler is missing
//! (it does not install cargo-fuzz either: `cargo install cargo-fuzz
//! --locked` takes minutes).

use std::process::Command;

use clap::Args;

use crate::util::{self, Result};

/// The fuzz targets, in the order they run.
pub const TARGETS: [&str; 3] = ["url_params", "driver_urls", "build_pool"];

/// How long each target runs in `cargo xtask ci`.
pub const CI_FUZZ_SECS: u64 = 60;

/// Arguments of `cargo xtask fuzz`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 600)]
    pub secs: u64,
    /// The targets to run (default: all of them, one after another).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
}

impl Default for FuzzArgs {
    fn default() -> Self {
        FuzzArgs {
            secs: 600,
            targets: Vec::new(),
        }
    }
}

/// How cargo-fuzz gets its nightly compiler here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// `cargo +nightly fuzz`.
    Nightly,
    /// `RUSTC_BOOTSTRAP=1 cargo fuzz` with the default toolchain.
    Bootstrap,
}

/// Whether fuzzing can run here, and how; `Err` says why not.
pub fn available() -> std::result::Result<Toolchain, String> {
    let nightly = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("nightly"))
        });
    let toolchain = if nightly {
        Toolchain::Nightly
    } else {
        Toolchain::Bootstrap
    };
    let mut probe = fuzz_command(toolchain);
    probe.arg("--version");
    match probe.output() {
        Ok(o) if o.status.success() => {}
        _ => {
            return Err("cargo-fuzz is not installed (`cargo install cargo-fuzz --locked`)".into())
        }
    }
    if toolchain == Toolchain::Bootstrap {
        // The compiler must accept nightly flags with RUSTC_BOOTSTRAP=1.
        let ok = Command::new("rustc")
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["-Z", "help"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Err(
                "no nightly toolchain, and the default compiler refuses -Z flags even with \
                 RUSTC_BOOTSTRAP=1"
                    .into(),
            );
        }
    }
    Ok(toolchain)
}

/// `cargo [+nightly] fuzz` in `fuzz/`.
fn fuzz_command(toolchain: Toolchain) -> Command {
    let mut cmd = Command::new("cargo");
    match toolchain {
        Toolchain::Nightly => {
            cmd.arg("+nightly");
        }
        Toolchain::Bootstrap => {
            cmd.env("RUSTC_BOOTSTRAP", "1");
        }
    }
    // The fuzz crate is its own workspace, built with its own target dir.
    cmd.arg("fuzz")
        .current_dir(util::workspace_root().join("fuzz"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

/// Runs `cargo xtask fuzz`.
pub fn run(args: &FuzzArgs) -> Result {
    let toolchain = available().map_err(|why| format!("cannot fuzz: {why}"))?;
    run_with(toolchain, args)
}

/// Runs the targets with `toolchain` (see [`available`]).
pub fn run_with(toolchain: Toolchain, args: &FuzzArgs) -> Result {
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    let root = util::workspace_root();
    for target in targets {
        let corpus = util::target_dir().join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let seeds = root.join("fuzz").join("seeds").join(target);
        let mut cmd = fuzz_command(toolchain);
        cmd.args(["run", target]).arg(&corpus).arg(&seeds).args([
            "--",
            &format!("-max_total_time={}", args.secs),
            "-timeout=10",
            "-rss_limit_mb=4096",
            "-print_final_stats=1",
        ]);
        util::step(&format!("fuzz {target} ({} s)", args.secs), || {
            util::run(&mut cmd)
        })?;
    }
    Ok(())
}
