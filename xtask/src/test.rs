//! `cargo xtask test`: the whole workspace's tests, and a summary of the
//! real-database suites that could not run here.
//!
//! The integration suites against real servers are ordinary workspace tests:
//! each one looks for its server binaries itself and skips when they are
//! missing. This task runs `cargo test --workspace --all-features` (but
//! pool-mysql, whose TLS features `tls` and `rustls` exclude each other),
//! then pool-mysql's tests with `rustls` and its TLS test with `tls` (see
//! [`MYSQL_RUNS`]), then says which suites were skipped for lack of binaries
//! and which Debian packages would enable them. With `CI` set in the environment, missing binaries fail
//! the task: CI must run every suite.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::util::{self, Result};

/// Arguments of `cargo xtask test`.
#[derive(Debug, Clone, Default, Args)]
pub struct TestArgs {
    /// Extra arguments for `cargo test`, after `--` (for example a test-name
    /// filter or `-- --nocapture`).
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// A family of real-server suites and what it needs.
#[derive(Debug, Clone)]
pub struct ServerSuites {
    /// What the suites test, for humans.
    pub name: &'static str,
    /// The binaries the suites need.
    pub binaries: &'static [&'static str],
    /// The Debian packages that provide them.
    pub packages: &'static str,
    /// The binaries that were not found.
    pub missing: Vec<&'static str>,
    /// Where the binaries were found.
    pub found: Vec<PathBuf>,
    /// The test files of the suites (relative to the workspace root).
    pub suites: Vec<String>,
}

impl ServerSuites {
    /// Whether every binary was found.
    pub fn available(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Where Debian puts server binaries that are not on `PATH`.
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"];

/// Looks for the binaries of each real-server suite family.
pub fn detect_servers() -> Vec<ServerSuites> {
    let root = util::workspace_root();
    let pg_dirs = postgres_bin_dirs();
    let all_tests = test_files(&root);
    let suites_of = |family: Family| {
        all_tests
            .iter()
            .filter(|p| classify(p) == Some(family))
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut families = vec![
        ServerSuites {
            name: "PostgreSQL",
            binaries: &["initdb", "postgres"],
            packages: "postgresql (postgresql-15 on bookworm)",
            missing: Vec::new(),
            found: Vec::new(),
            suites: suites_of(Family::Postgres),
        },
        ServerSuites {
            name: "MariaDB/MySQL",
            binaries: &["mariadbd", "mariadb-install-db"],
            packages: "mariadb-server",
            missing: Vec::new(),
            found: Vec::new(),
            suites: suites_of(Family::MariaDb),
        },
        ServerSuites {
            name: "PgBouncer",
            binaries: &["pgbouncer"],
            packages: "pgbouncer (and postgresql)",
            missing: Vec::new(),
            found: Vec::new(),
            suites: suites_of(Family::PgBouncer),
        },
    ];
    for family in &mut families {
        for &binary in family.binaries {
            let extra: &[PathBuf] = if family.name == "PostgreSQL" {
                &pg_dirs
            } else {
                &[]
            };
            match find_binary(binary, extra) {
                Some(path) => family.found.push(path),
                None => family.missing.push(binary),
            }
        }
    }
    families
}

/// The server a real-database suite needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Postgres,
    MariaDb,
    PgBouncer,
}

/// Which server the test file `path` (relative to the root) needs, judged by
/// its crate and name; None for suites that need no server.
fn classify(path: &str) -> Option<Family> {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    let krate = path.split('/').nth(1).unwrap_or("");
    if name.contains("bouncer") {
        Some(Family::PgBouncer)
    } else if krate == "pool-mysql" || name.contains("maria") || name.contains("mysql") {
        Some(Family::MariaDb)
    } else if krate == "pool-postgres" || name.contains("postgres") || name.starts_with("pg") {
        Some(Family::Postgres)
    } else {
        None
    }
}

/// `/usr/lib/postgresql/*/bin`, newest version first.
fn postgres_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.into_iter().map(|(_, dir)| dir).collect()
}

/// Finds an executable in `extra` dirs, then on `PATH`, then in the sbin dirs.
fn find_binary(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    extra
        .iter()
        .cloned()
        .chain(path_dirs)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Every `crates/*/tests/*.rs` file, relative to the root, sorted.
fn test_files(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let tests = krate.path().join("tests");
        for file in std::fs::read_dir(&tests).into_iter().flatten().flatten() {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "rs") {
                if let Ok(rel) = path.strip_prefix(root) {
                    files.push(rel.to_string_lossy().into_owned());
                }
            }
        }
    }
    files.sort();
    files
}

/// Whether the `CI` environment variable is set (to anything but empty,
/// `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The summary of which suites cannot run here and why, and whether any cannot.
pub fn server_summary(families: &[ServerSuites]) -> (String, bool) {
    use std::fmt::Write as _;
    let mut out = String::from("\nReal-database suites:\n");
    let missing: Vec<&ServerSuites> = families.iter().filter(|f| !f.available()).collect();
    for family in families {
        if family.available() {
            let found: Vec<String> = family
                .found
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            let _ = writeln!(
                out,
                "  {:<14} binaries found ({})",
                family.name,
                found.join(", ")
            );
        } else {
            let _ = writeln!(
                out,
                "  {:<14} NOT RUN: missing {}; Debian package: {}",
                family.name,
                family.missing.join(", "),
                family.packages
            );
            for suite in &family.suites {
                let _ = writeln!(out, "      skipped: {suite}");
            }
        }
    }
    if !missing.is_empty() {
        let packages: Vec<&str> = missing
            .iter()
            .map(|f| f.packages.split(' ').next().unwrap_or(f.packages))
            .collect();
        let _ = writeln!(out, "  To run them: apt-get install {}", packages.join(" "));
    }
    (out, !missing.is_empty())
}

/// pool-mysql's runs, outside the `--all-features` one: the `mysql` driver
/// builds with one TLS stack only, so its features `tls` (native-tls) and
/// `rustls` exclude each other. Every test runs with `rustls`; the TLS test
/// runs again with `tls`.
pub const MYSQL_RUNS: &[&[&str]] = &[
    &["-p", "pool-mysql", "--features", "rustls"],
    &["-p", "pool-mysql", "--features", "tls", "--test", "tls"],
];

/// Runs `cargo xtask test`.
pub fn run(args: &TestArgs) -> Result {
    let families = detect_servers();
    let mut runs: Vec<Vec<&str>> = vec![vec![
        "--workspace",
        "--all-features",
        "--exclude",
        "pool-mysql",
    ]];
    runs.extend(MYSQL_RUNS.iter().map(|r| r.to_vec()));
    let mut tests = Ok(());
    for run in runs {
        let mut cmd = util::cargo();
        // `--no-fail-fast`: every test binary, even after one fails.
        cmd.arg("test").arg("--no-fail-fast").args(run);
        if !args.cargo_args.is_empty() {
            cmd.arg("--").args(&args.cargo_args);
        }
        // Every run, even after a failure: one report of all that fails.
        let result = util::run(&mut cmd);
        if tests.is_ok() {
            tests = result;
        }
    }
    let (summary, any_missing) = server_summary(&families);
    eprint!("{summary}");
    tests?;
    if any_missing && in_ci() {
        return Err(
            "CI is set but some real-database suites could not run (binaries missing)".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(missing: Vec<&'static str>) -> ServerSuites {
        ServerSuites {
            name: "PostgreSQL",
            binaries: &["initdb", "postgres"],
            packages: "postgresql (postgresql-15 on bookworm)",
            found: if missing.is_empty() {
                vec![PathBuf::from("/usr/lib/postgresql/15/bin/initdb")]
            } else {
                Vec::new()
            },
            missing,
            suites: vec!["crates/pool-postgres/tests/pool.rs".into()],
        }
    }

    #[test]
    fn summary_names_missing_binaries_suites_and_packages() {
        let (text, missing) = server_summary(&[family(vec!["initdb", "postgres"])]);
        assert!(missing);
        assert!(text.contains("NOT RUN: missing initdb, postgres"), "{text}");
        assert!(
            text.contains("skipped: crates/pool-postgres/tests/pool.rs"),
            "{text}"
        );
        assert!(text.contains("apt-get install postgresql\n"), "{text}");
    }

    #[test]
    fn summary_of_available_servers() {
        let (text, missing) = server_summary(&[family(Vec::new())]);
        assert!(!missing);
        assert!(text.contains("binaries found"), "{text}");
        assert!(!text.contains("apt-get"), "{text}");
    }

    #[test]
    fn suites_are_classified_by_crate_and_name() {
        assert_eq!(
            classify("crates/pool-postgres/tests/pool.rs"),
            Some(Family::Postgres)
        );
        assert_eq!(
            classify("crates/pool-postgres/tests/pgbouncer.rs"),
            Some(Family::PgBouncer)
        );
        assert_eq!(
            classify("crates/pool-mysql/tests/pool.rs"),
            Some(Family::MariaDb)
        );
        assert_eq!(
            classify("crates/pool-testkit/tests/mariadb.rs"),
            Some(Family::MariaDb)
        );
        assert_eq!(
            classify("crates/pool-testkit/tests/postgres.rs"),
            Some(Family::Postgres)
        );
        assert_eq!(classify("crates/pool-testkit/tests/proxy.rs"), None);
        assert_eq!(
            classify("crates/pool-diesel-tests/tests/postgres.rs"),
            Some(Family::Postgres)
        );
        assert_eq!(
            classify("crates/pool-diesel-tests/tests/mariadb.rs"),
            Some(Family::MariaDb)
        );
        assert_eq!(classify("crates/pool-diesel-tests/tests/sqlite.rs"), None);
        assert_eq!(classify("crates/pool-sim/tests/audit.rs"), None);
    }

    #[test]
    fn detection_covers_every_family() {
        let families = detect_servers();
        let names: Vec<&str> = families.iter().map(|f| f.name).collect();
        assert_eq!(names, ["PostgreSQL", "MariaDB/MySQL", "PgBouncer"]);
        for f in &families {
            assert_eq!(f.found.len() + f.missing.len(), f.binaries.len());
        }
    }
}
