//! Helpers shared by the tasks: the workspace root, running commands, timing steps.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The error type of every task: a message, possibly wrapping a cause.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The result type of every task.
pub type Result<T = ()> = std::result::Result<T, Error>;

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// A `cargo` command (the same cargo that runs xtask) in the workspace root.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// The target directory cargo uses: `$CARGO_TARGET_DIR` or `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Shows a command the way a shell would run it.
pub struct Shown<'a>(pub &'a Command);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in self.0.get_envs() {
            if let Some(value) = value {
                write!(
                    f,
                    "{}={} ",
                    key.to_string_lossy(),
                    shell_quote(&value.to_string_lossy())
                )?;
            }
        }
        let program = self.0.get_program().to_string_lossy();
        let program = Path::new(&*program)
            .file_name()
            .map_or(program.to_string(), |n| n.to_string_lossy().into_owned());
        f.write_str(&program)?;
        for arg in self.0.get_args() {
            write!(f, " {}", shell_quote(&arg.to_string_lossy()))?;
        }
        Ok(())
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdio, printing it first; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result {
    eprintln!("$ {}", Shown(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run `{}`: {e}", Shown(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", Shown(cmd)).into())
    }
}

/// Formats a duration for humans: `850ms`, `12.3s`, `2m05s`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        format!("{}ms", d.as_millis())
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// Runs one named step, timing it and printing a header and a verdict line.
/// The error, if any, names the step.
pub fn step(name: &str, f: impl FnOnce() -> Result) -> Result<Duration> {
    eprintln!("\n==> {name}");
    let start = Instant::now();
    let result = f();
    let took = start.elapsed();
    match result {
        Ok(()) => {
            eprintln!("<== {name}: ok in {}", human(took));
            Ok(took)
        }
        Err(e) => {
            eprintln!("<== {name}: FAILED after {}", human(took));
            Err(format!("step `{name}` failed: {e}").into())
        }
    }
}

/// Parses a duration given as plain seconds (`10`, `2.5`) or in humantime
/// style (`10s`, `1m30s`, `500ms`).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration (try `60`, `10s` or `2m`): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_both_ways() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn commands_are_shown_quoted() {
        let mut cmd = Command::new("/usr/bin/cargo");
        cmd.arg("test")
            .arg("--")
            .arg("a b")
            .env("RUSTFLAGS", "--cfg x");
        assert_eq!(
            Shown(&cmd).to_string(),
            "RUSTFLAGS='--cfg x' cargo test -- 'a b'"
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(human(Duration::from_secs(125)), "2m05s");
    }
}
