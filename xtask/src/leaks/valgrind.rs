//! Scenario 6 of the leak suite: the suite again under valgrind's memcheck
//! (`--valgrind`), built with `--cfg rustix_use_libc`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{ensure, Checked, Context, LeaksArgs};
use crate::util;

/// The longest the valgrind run may take before it is killed.
pub(super) const VALGRIND_DEADLINE: Duration = Duration::from_secs(20 * 60);

/// Finds an executable named `name` on `PATH`.
pub(super) fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Bytes "definitely lost" in a memcheck log: from the leak summary, or 0
/// when memcheck found every heap block freed.
pub(super) fn definitely_lost(log: &str) -> Option<u64> {
    if let Some(line) = log.lines().find(|l| l.contains("definitely lost:")) {
        let after = line.split("definitely lost:").nth(1)?;
        return after
            .split_whitespace()
            .next()?
            .replace(',', "")
            .parse()
            .ok();
    }
    log.contains("All heap blocks were freed -- no leaks are possible")
        .then_some(0)
}

/// The error count of a memcheck log's `ERROR SUMMARY`.
pub(super) fn error_count(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("ERROR SUMMARY:"))?;
    let after = line.split("ERROR SUMMARY:").nth(1)?;
    after
        .split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()
}

/// Scenario 6: the suite again under valgrind's memcheck (without scenario
/// 2), requiring zero bytes definitely lost.
pub(super) fn under_valgrind(args: &LeaksArgs) -> Checked {
    if args.under_valgrind {
        return Checked::Skip("this is the run under valgrind".into());
    }
    if !args.valgrind {
        return Checked::Skip("not requested (pass --valgrind)".into());
    }
    let Some(valgrind) = find_on_path("valgrind") else {
        return Checked::Skip(
            "valgrind is not installed (not on PATH; Debian package `valgrind`)".into(),
        );
    };
    run_valgrind(&valgrind, args).into()
}

/// The `--cfg` that makes rustix call libc instead of the vDSO: its own
/// vDSO lookup reads the real auxiliary vector (`prctl(PR_GET_AUXV)`), whose
/// vDSO valgrind does not map, and crashes under memcheck
/// (bytecodealliance/rustix#1559).
pub(super) const RUSTIX_USE_LIBC: &str = "rustix_use_libc";

/// Builds xtask, with the profile of the running executable and
/// [`RUSTIX_USE_LIBC`], into `<target>/leaks-valgrind`; returns the binary.
pub(super) fn build_for_valgrind() -> std::result::Result<PathBuf, String> {
    let exe = std::env::current_exe().context("cannot find the xtask executable")?;
    let profile = exe
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let target = util::target_dir().join("leaks-valgrind");
    let mut cmd = util::cargo();
    cmd.args(["build", "--quiet", "--package", "xtask", "--target-dir"])
        .arg(&target);
    if profile == "release" {
        cmd.arg("--release");
    }
    // Add the cfg to the user's flags, in whichever variable cargo reads.
    match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(flags) if !flags.is_empty() => {
            cmd.env(
                "CARGO_ENCODED_RUSTFLAGS",
                format!("{flags}\x1f--cfg\x1f{RUSTIX_USE_LIBC}"),
            );
        }
        _ => {
            let flags = std::env::var("RUSTFLAGS").unwrap_or_default();
            cmd.env(
                "RUSTFLAGS",
                format!("{flags} --cfg {RUSTIX_USE_LIBC}").trim_start(),
            );
        }
    }
    util::run(&mut cmd).map_err(|e| e.to_string())?;
    let binary = target.join(&profile).join("xtask");
    ensure(binary.is_file(), || {
        format!("the build left no {}", binary.display())
    })?;
    Ok(binary)
}

/// Runs the leak suite under memcheck (an xtask built by
/// [`build_for_valgrind`]) and checks its verdict.
pub(super) fn run_valgrind(
    valgrind: &Path,
    args: &LeaksArgs,
) -> std::result::Result<String, String> {
    let exe = build_for_valgrind()?;
    let dir = std::env::temp_dir();
    let stem = format!("xtask-leaks-valgrind-{}", std::process::id());
    let log_path = dir.join(format!("{stem}.log"));
    let out_path = dir.join(format!("{stem}.out"));
    let err_path = dir.join(format!("{stem}.err"));
    let mut cmd = Command::new(valgrind);
    cmd.arg("--tool=memcheck")
        .arg("--leak-check=full")
        .arg("--errors-for-leak-kinds=definite")
        .arg("--error-exitcode=3")
        .arg(format!("--log-file={}", log_path.display()))
        .arg(&exe)
        .arg("leaks")
        .args(["--cycles", &args.valgrind_cycles.to_string()])
        .args(["--threads", &args.threads.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .arg("--under-valgrind")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).context("cannot create the output file")?)
        .stderr(File::create(&err_path).context("cannot create the output file")?);
    eprintln!("leaks: $ {}", util::Shown(&cmd));
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot run valgrind")?;
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for valgrind")? {
            break status;
        }
        if started.elapsed() > VALGRIND_DEADLINE {
            child.kill().ok();
            child.wait().ok();
            return Err(format!(
                "the valgrind run did not finish within {}; log in {}",
                util::human(VALGRIND_DEADLINE),
                log_path.display()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    // The inner run's verdicts, shown under this one.
    for line in out.lines() {
        println!("      valgrind | {line}");
    }
    let lost = definitely_lost(&log);
    let errors = error_count(&log);
    let inner_failed = out.lines().any(|l| l.starts_with("[FAIL]"));
    let ok = status.success() && lost == Some(0) && errors == Some(0) && !inner_failed;
    if ok {
        for p in [&log_path, &out_path, &err_path] {
            std::fs::remove_file(p).ok();
        }
        Ok(format!(
            "0 bytes definitely lost, 0 errors; suite re-run under memcheck in {} with {} \
             cycles, scenario 2 excluded (it forgets a loan on purpose), xtask built with \
             --cfg {RUSTIX_USE_LIBC} (rustix's vDSO lookup crashes under valgrind)",
            util::human(took),
            args.valgrind_cycles
        ))
    } else {
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        Err(format!(
            "valgrind run {status}: definitely lost {}, errors {}, inner scenario failed: \
             {inner_failed}; memcheck log {}, inner stderr ends {:?}",
            lost.map_or("unknown (no leak summary)".to_owned(), |b| format!(
                "{b} bytes"
            )),
            errors.map_or("unknown".to_owned(), |e| e.to_string()),
            log_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcheck_summaries_parse() {
        let leaky = "==1== LEAK SUMMARY:\n==1==    definitely lost: 1,024 bytes in 2 blocks\n\
                     ==1==    indirectly lost: 0 bytes in 0 blocks\n\
                     ==1== ERROR SUMMARY: 2 errors from 2 contexts (suppressed: 0 from 0)\n";
        assert_eq!(definitely_lost(leaky), Some(1024));
        assert_eq!(error_count(leaky), Some(2));
        let clean = "==1== All heap blocks were freed -- no leaks are possible\n\
                     ==1== ERROR SUMMARY: 0 errors from 0 contexts (suppressed: 0 from 0)\n";
        assert_eq!(definitely_lost(clean), Some(0));
        assert_eq!(error_count(clean), Some(0));
        assert_eq!(definitely_lost("valgrind: cannot start"), None);
    }
}
