//! `cargo xtask tidy`: checks of the sources that neither rustc nor clippy
//! make, over the Rust files of `crates/`, `xtask/`, `benches/`, `examples/`
//! and `fuzz/`:
//!
//! 1. every Rust file starts with a `//!` doc comment saying what it is
//!    (after any leading plain `//` comments);
//! 2. every dependency a manifest declares is named in that crate's sources
//!    (`-` read as `_`; the key, not `package =`, is the name code uses),
//!    save the few in [`DEP_ALLOWLIST`];
//! 3. `cargo doc --workspace --no-deps --document-private-items` passes
//!    with broken intra-doc links denied (`--no-doc` skips this, the slow
//!    one). Private items are documented so that their links are checked
//!    too; links from public docs to private items are then not flagged
//!    (`rustdoc::private_intra_doc_links` only fires without private items),
//!    a price worth one `cargo doc` instead of two. The public-only build
//!    docs.rs makes of the published crates (pool-core, pool-postgres,
//!    pool-mysql) is left to the release check:
//!    `RUSTDOCFLAGS="--cfg docsrs" cargo +nightly doc --all-features --no-deps`;
//! 4. no benchmark figures in comments (timings in ns/µs, throughputs,
//!    "N× faster", "N % of"): measured figures go stale, so they live in
//!    `docs/performance.md` with the command that measured them. Values of
//!    settings and constants are fine (see [`benchmark_figure`] for what is
//!    exempt, and [`FIGURE_ALLOWLIST`]);
//! 5. no ignored tests, `todo` or `unimplemented` macros;
//! 6. files over 800 lines say why in their first 3 lines
//!    (`// Over 800 lines: <why>`);
//! 7. no package in a workspace member's resolved dependency graph (all
//!    features, every platform, the member's own dev-dependencies) declares
//!    a `rust-version` newer than the member's, as `cargo metadata` reports
//!    them for the lockfile: the declared `rust-version` must be true.
//!
//! Each violation is printed as `path:line: what is wrong, what to do`; the
//! task fails if there is any.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use clap::Args;
use regex::Regex;

use crate::util::{self, Result};

mod msrv;

/// Arguments of `cargo xtask tidy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct TidyArgs {
    /// Skip the `cargo doc` check of intra-doc links (the slow one).
    #[arg(long)]
    pub no_doc: bool,
}

/// The directories (under the workspace root) whose Rust files are checked.
const ROOTS: [&str; 5] = ["crates", "xtask", "benches", "examples", "fuzz"];

/// Directories never descended into.
const SKIP_DIRS: [&str; 4] = ["target", "corpus", "artifacts", "coverage"];

/// Files longer than this must say why at the top.
const MAX_LINES: usize = 800;

/// How a long file says why it is long.
const LONG_FILE_MARK: &str = "// Over 800 lines";

/// Dependencies that no source names, and why they are declared anyway:
/// (crate directory, dependency, reason).
pub const DEP_ALLOWLIST: &[(&str, &str, &str)] = &[];

/// Benchmark-looking figures in comments that are not measurements:
/// (path, text on the line, reason).
pub const FIGURE_ALLOWLIST: &[(&str, &str, &str)] = &[
    (
        "benches/benches/contention.rs",
        "each loan held for 1 µs",
        "a parameter of the benchmark",
    ),
    (
        "benches/src/load.rs",
        "from 1 ns to 10 minutes",
        "the histogram's bounds",
    ),
    (
        "crates/pool-sim/src/lib.rs",
        "roughly 50–100 µs",
        "Linux's timer slack, which the simulated latency relies on",
    ),
    (
        "crates/pool-sim/src/db.rs",
        "roughly 50–100 µs",
        "Linux's timer slack, which the simulated latency relies on",
    ),
];

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The file, relative to the workspace root.
    pub path: String,
    /// The 1-based line.
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.message)
    }
}

/// Runs `cargo xtask tidy`.
pub fn run(args: &TidyArgs) -> Result {
    let root = util::workspace_root();
    let mut found = Vec::new();
    let mut files = Vec::new();
    for dir in ROOTS {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    for file in &files {
        let text =
            fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        found.extend(check_source(&relative(&root, file), &text));
    }
    found.extend(check_dependencies(&root)?);
    found.extend(msrv::check_rust_versions(&root)?);
    if !args.no_doc {
        found.extend(check_doc_links()?);
    }
    for v in &found {
        println!("{v}");
    }
    if found.is_empty() {
        eprintln!("tidy: {} Rust files, all tidy", files.len());
        Ok(())
    } else {
        Err(format!("tidy: {} violation(s)", found.len()).into())
    }
}

/// `path` relative to `root`, with `/` separators.
fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Collects the `.rs` files under `dir`, skipping build output and hidden
/// directories.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && !SKIP_DIRS.contains(&name.as_str()) {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The per-file checks (1, 4, 5 and 6) of one source.
pub fn check_source(path: &str, text: &str) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut add = |line: usize, message: String| {
        found.push(Violation {
            path: path.to_owned(),
            line,
            message,
        });
    };
    if let Some(line) = missing_module_doc(text) {
        add(
            line,
            "no `//!` doc comment at the top of the file; start it with one saying what the \
             file is"
                .into(),
        );
    }
    let lines = text.lines().count();
    if lines > MAX_LINES && !says_why_long(text) {
        add(
            1,
            format!(
                "{lines} lines and no `{LONG_FILE_MARK}: <why>` comment in the first 3 lines; \
                 split the file or add one"
            ),
        );
    }
    let mut in_doc_code = false;
    for (i, line) in text.lines().enumerate() {
        if let Some(what) = forbidden_marker(line) {
            add(i + 1, what.to_owned());
        }
        let trimmed = line.trim_start();
        if !trimmed.starts_with("//") {
            in_doc_code = false;
            continue;
        }
        // Code blocks in doc comments are examples, not prose.
        let body = trimmed
            .trim_start_matches('/')
            .trim_start_matches('!')
            .trim();
        if body.starts_with("```") {
            in_doc_code = !in_doc_code;
            continue;
        }
        if in_doc_code || allowlisted_figure(path, line) {
            continue;
        }
        if let Some(figure) = benchmark_figure(line) {
            add(
                i + 1,
                format!(
                    "benchmark figure `{figure}` in a comment; move it to docs/performance.md \
                     with the command that measured it (or delete it if stale)"
                ),
            );
        }
    }
    found
}

/// The line of the first code (not a plain `//` comment, not blank) when it
/// is not a `//!` doc comment; None when the file starts with one.
pub fn missing_module_doc(text: &str) -> Option<usize> {
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with("//!") {
            return None;
        }
        let plain_comment = t.starts_with("//") && !t.starts_with("///");
        if t.is_empty() || plain_comment {
            continue;
        }
        return Some(i + 1);
    }
    Some(1)
}

/// Whether one of the first 3 lines is a `// Over 800 lines` comment.
pub fn says_why_long(text: &str) -> bool {
    text.lines()
        .take(3)
        .any(|l| l.trim_start().starts_with(LONG_FILE_MARK))
}

/// What is wrong if `line` has an ignored test, `todo` or `unimplemented`.
pub fn forbidden_marker(line: &str) -> Option<&'static str> {
    // Spelled in pieces so that this file does not flag itself.
    let markers: [(String, &'static str); 3] = [
        (
            format!("#[{}", "ignore"),
            "ignored test; make it run in CI or delete it",
        ),
        (
            format!("{}!", "todo"),
            "`todo` macro; finish the code or return an error",
        ),
        (
            format!("{}!", "unimplemented"),
            "`unimplemented` macro; implement it or return an error",
        ),
    ];
    markers
        .iter()
        .find(|(m, _)| line.contains(m.as_str()))
        .map(|(_, what)| *what)
}

fn allowlisted_figure(path: &str, line: &str) -> bool {
    FIGURE_ALLOWLIST
        .iter()
        .any(|(p, text, _)| *p == path && line.contains(text))
}

/// The regexes of measured figures.
fn figure_patterns() -> &'static [Regex] {
    static PATTERNS: OnceLock<Vec<Regex>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let number = r"\d[\d,._]*(?:\s*[–-]\s*\d[\d,._]*)?";
        [
            // Timings in nanoseconds and microseconds.
            format!(r"{number}\s*(?:ns|µs|μs|us)\b"),
            // Throughputs.
            format!(r"{number}\s*[kKM]?\s*(?:ops|borrows|gets|queries|loans|requests)?\s*/\s*s\b"),
            // Ratios.
            format!(
                r"{number}\s*(?:x|×|times)\s*(?:faster|slower|more|less|fewer|better|worse|as)\b"
            ),
            // Shares.
            format!(
                r"{number}\s*%\s*(?:of|faster|slower|more|less|fewer|better|worse|higher|lower)\b"
            ),
        ]
        .iter()
        .map(|p| Regex::new(p).unwrap_or_else(|e| unreachable!("pattern {p}: {e}")))
        .collect()
    })
}

/// The first figure on a comment line that looks measured, if any.
///
/// Exempt: lines that name a default; figures inside backticks or quotes
/// (examples, benchmark names); and figures right after a backticked name or
/// a snake_case or UPPER_CASE identifier (the value of a setting or constant,
/// e.g. "`BARGE_FOR`, 200 µs", "idle_timeout 7 µs").
pub fn benchmark_figure(line: &str) -> Option<String> {
    if line.to_lowercase().contains("default") {
        return None;
    }
    for pattern in figure_patterns() {
        for m in pattern.find_iter(line) {
            if in_quotes(line, m.start()) || names_a_value(&line[..m.start()]) {
                continue;
            }
            return Some(m.as_str().to_owned());
        }
    }
    None
}

/// Whether byte `at` of `line` is inside a backtick or double-quote span.
fn in_quotes(line: &str, at: usize) -> bool {
    let before = &line[..at];
    before.matches('`').count() % 2 == 1 || before.matches('"').count() % 2 == 1
}

/// Whether `before` (the text before a figure) ends with a name whose value
/// the figure is.
fn names_a_value(before: &str) -> bool {
    let trimmed = before.trim_end_matches([' ', '(', ',', ':', '=']);
    if trimmed.ends_with('`') {
        return true;
    }
    let word: String = trimmed
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let upper = word.len() >= 2 && word.chars().all(|c| !c.is_ascii_lowercase());
    (word.contains('_') && !word.starts_with('_'))
        || (upper && word.chars().any(char::is_alphabetic))
}

/// One dependency a manifest declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The key, as code names it (`-` not yet replaced).
    pub name: String,
    /// The manifest's line.
    pub line: usize,
}

/// The dependencies of every kind a `Cargo.toml` declares, in order.
pub fn parse_dependencies(manifest: &str) -> Vec<Dependency> {
    let mut deps = Vec::new();
    let mut in_deps = false;
    for (i, raw) in manifest.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            let header = line.trim_matches(['[', ']']).trim();
            let last = header.rsplit('.').next().unwrap_or("");
            in_deps = is_dep_table(last);
            // `[dependencies.foo]`: a table per dependency.
            if let Some((table, name)) = header.rsplit_once('.') {
                let table = table.rsplit('.').next().unwrap_or("");
                if is_dep_table(table) {
                    deps.push(Dependency {
                        name: name.trim_matches(['"', '\'']).to_owned(),
                        line: i + 1,
                    });
                    in_deps = false;
                }
            }
            continue;
        }
        if !in_deps || line.is_empty() {
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            let name = key.trim().split('.').next().unwrap_or("").trim();
            let name = name.trim_matches(['"', '\'']);
            if !name.is_empty() {
                deps.push(Dependency {
                    name: name.to_owned(),
                    line: i + 1,
                });
            }
        }
    }
    deps
}

fn is_dep_table(name: &str) -> bool {
    matches!(
        name,
        "dependencies" | "dev-dependencies" | "build-dependencies"
    )
}

/// Whether `text` names `ident` as a whole identifier.
pub fn names_ident(text: &str, ident: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(ident).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + ident.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// The package directories: the workspace members (`dir/*` globs expanded)
/// and the separate `fuzz/` workspace.
fn packages(root: &Path) -> Result<Vec<PathBuf>> {
    let manifest = fs::read_to_string(root.join("Cargo.toml"))?;
    let members = manifest
        .split("members")
        .nth(1)
        .and_then(|rest| rest.split_once('[')?.1.split_once(']'))
        .map(|(list, _)| list)
        .ok_or("no workspace members in Cargo.toml")?;
    let mut dirs = Vec::new();
    for member in members.split(',') {
        let member = member.trim().trim_matches('"');
        if member.is_empty() {
            continue;
        }
        if let Some(parent) = member.strip_suffix("/*") {
            for entry in fs::read_dir(root.join(parent))?.flatten() {
                if entry.path().join("Cargo.toml").is_file() {
                    dirs.push(entry.path());
                }
            }
        } else {
            dirs.push(root.join(member));
        }
    }
    if root.join("fuzz/Cargo.toml").is_file() {
        dirs.push(root.join("fuzz"));
    }
    dirs.sort();
    Ok(dirs)
}

/// Check 2: every declared dependency is named in the crate's sources.
fn check_dependencies(root: &Path) -> Result<Vec<Violation>> {
    let mut found = Vec::new();
    for dir in packages(root)? {
        let manifest_path = dir.join("Cargo.toml");
        let manifest = fs::read_to_string(&manifest_path)?;
        let mut files = Vec::new();
        for sub in ["src", "tests", "benches", "examples", "fuzz_targets"] {
            rust_files(&dir.join(sub), &mut files);
        }
        if dir.join("build.rs").is_file() {
            files.push(dir.join("build.rs"));
        }
        let sources: String = files
            .iter()
            .filter_map(|f| fs::read_to_string(f).ok())
            .collect::<Vec<_>>()
            .join("\n");
        let crate_dir = relative(root, &dir);
        for dep in parse_dependencies(&manifest) {
            let ident = dep.name.replace('-', "_");
            let allowed = DEP_ALLOWLIST
                .iter()
                .any(|(d, n, _)| *d == crate_dir && *n == dep.name);
            if !allowed && !names_ident(&sources, &ident) {
                found.push(Violation {
                    path: relative(root, &manifest_path),
                    line: dep.line,
                    message: format!(
                        "dependency `{}` is declared but no source of {crate_dir} names \
                         `{ident}`; remove it (or add it to DEP_ALLOWLIST in \
                         xtask/src/tidy.rs with the reason)",
                        dep.name
                    ),
                });
            }
        }
    }
    Ok(found)
}

/// Check 3: `cargo doc` with broken intra-doc links denied; each error is a
/// violation at the place rustdoc names.
fn check_doc_links() -> Result<Vec<Violation>> {
    let mut cmd: Command = util::cargo();
    cmd.args([
        "doc",
        "--workspace",
        "--no-deps",
        "--document-private-items",
        "--quiet",
    ])
    .env("RUSTDOCFLAGS", "-D rustdoc::broken_intra_doc_links");
    eprintln!("$ {}", util::Shown(&cmd));
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", util::Shown(&cmd)))?;
    if out.status.success() {
        return Ok(Vec::new());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let found = rustdoc_errors(&stderr);
    if found.is_empty() {
        eprint!("{stderr}");
        return Err(format!("`{}` failed ({})", util::Shown(&cmd), out.status).into());
    }
    Ok(found)
}

/// The errors of rustdoc's output, each at its ` --> path:line:col`.
pub fn rustdoc_errors(stderr: &str) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut error: Option<&str> = None;
    for line in stderr.lines() {
        if let Some(message) = line.strip_prefix("error: ") {
            error = (!message.starts_with("could not document")
                && !message.starts_with("aborting"))
            .then_some(message);
        } else if let (Some(message), Some(place)) = (error, line.trim().strip_prefix("--> ")) {
            let mut parts = place.rsplitn(3, ':');
            let (_col, line_no, path) = (parts.next(), parts.next(), parts.next());
            if let (Some(path), Some(Ok(line_no))) = (path, line_no.map(str::parse)) {
                found.push(Violation {
                    path: path.to_owned(),
                    line: line_no,
                    message: format!("{message}; fix or remove the link"),
                });
            }
            error = None;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_docs_may_follow_plain_comments() {
        assert_eq!(missing_module_doc("//! A module.\nfn f() {}\n"), None);
        assert_eq!(
            missing_module_doc("// Over 800 lines: why.\n\n//! A module.\n"),
            None
        );
        assert_eq!(missing_module_doc("use std::fs;\n"), Some(1));
        assert_eq!(
            missing_module_doc("// note\n/// An item.\nfn f() {}\n"),
            Some(2)
        );
        assert_eq!(missing_module_doc(""), Some(1));
    }

    #[test]
    fn long_files_say_why_in_their_first_lines() {
        assert!(says_why_long(
            "// Over 800 lines: one state machine.\n//! Doc.\n"
        ));
        assert!(says_why_long("//! Doc.\n\n// Over 800 lines (900): why.\n"));
        assert!(!says_why_long(
            "//! Doc.\n\n\n// Over 800 lines: too late.\n"
        ));
        let long = "//! Doc.\n".to_owned() + &"fn f() {}\n".repeat(MAX_LINES);
        let found = check_source("a.rs", &long);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("801 lines"), "{found:?}");
    }

    #[test]
    fn forbidden_markers_are_found() {
        let ignored = format!("#[{}]", "ignore");
        let ignored_why = format!("#[{} = \"slow\"]", "ignore");
        let todo = format!("    {}!()", "todo");
        let unimpl = format!("{}!(\"later\")", "unimplemented");
        for line in [&ignored, &ignored_why, &todo, &unimpl] {
            assert!(forbidden_marker(line).is_some(), "{line}");
        }
        assert_eq!(forbidden_marker("#[test]"), None);
        assert_eq!(forbidden_marker("let todo = 1;"), None);
    }

    #[test]
    fn measured_figures_are_flagged() {
        for (line, figure) in [
            ("/// took 27.1 ns then and takes 15.4 ns now", "27.1 ns"),
            ("// the vDSO directly, 1.5–3 ns faster here", "1.5–3 ns"),
            ("/// raw held connection 10.4 µs;", "10.4 µs"),
            ("// made strict hand-off 10× slower than r2d2", "10× slower"),
            ("// about 2 times faster", "2 times faster"),
            (
                "/// the hand-offs cost 15–45 % of the throughput",
                "15–45 % of",
            ),
            ("// 1.2M ops/s on 8 threads", "1.2M ops/s"),
            ("// 350k/s with 4 threads", "350k/s"),
        ] {
            assert_eq!(benchmark_figure(line).as_deref(), Some(figure), "{line}");
        }
    }

    #[test]
    fn settings_examples_and_defaults_are_not_figures() {
        for line in [
            "//! the limit (`BARGE_FOR`, 200 µs), a returning owner",
            "//! `SPIN_FOR` (50 µs: short loans come back within it",
            "// Item 4: min_idle 0, idle_timeout 7 µs, initialization",
            "/// `build_pool`, 8 s in: `initialization_fail_timeout` 64 µs failed",
            "/// Default: 50 µs, a trivial query on loopback.",
            "/// Formats nanoseconds for humans: `850 ns`, `12.3 µs`, `4.5 ms`.",
            "//! * `32t-4c-1us`: 32 threads, pool of 4",
            "/// 10 % errors, 95 % utilization or 10 s mean wait",
            "/// 1/32 (3.2 %) of the true value.",
            "// connection_timeout 30 s, validation 5 s",
            "// differ by up to 1.5× between threads",
        ] {
            assert_eq!(benchmark_figure(line), None, "{line}");
        }
    }

    #[test]
    fn doc_examples_and_the_allowlist_are_skipped() {
        let text = "//! Doc.\n/// ```\n/// x(); // 60 > 50 % of 97\n/// ```\nfn x() {}\n";
        assert!(check_source("a.rs", text).is_empty());
        let (path, line, _) = FIGURE_ALLOWLIST[0];
        let text = format!("//! Doc.\n// a {line} b\n");
        assert!(check_source(path, &text).is_empty());
        assert_eq!(check_source("other.rs", &text).len(), 1);
    }

    #[test]
    fn dependencies_of_every_kind_are_parsed() {
        let manifest = r#"
[package]
name = "p"

[dependencies]
crossbeam-utils.workspace = true
r2d2 = { version = "0.8", optional = true } # comment
renamed = { package = "real-name", version = "1" }

[dev-dependencies]
proptest.workspace = true

[target.'cfg(pool_loom)'.dependencies]
loom.workspace = true

[dependencies.table-dep]
version = "1"

[features]
r2d2 = ["dep:r2d2"]
"#;
        let names: Vec<(String, usize)> = parse_dependencies(manifest)
            .into_iter()
            .map(|d| (d.name, d.line))
            .collect();
        let expected = [
            ("crossbeam-utils", 6),
            ("r2d2", 7),
            ("renamed", 8),
            ("proptest", 11),
            ("loom", 14),
            ("table-dep", 16),
        ];
        assert_eq!(
            names,
            expected.map(|(n, l)| (n.to_owned(), l)).to_vec(),
            "{names:?}"
        );
    }

    #[test]
    fn identifiers_match_whole() {
        assert!(names_ident("use parking_lot::Mutex;", "parking_lot"));
        assert!(names_ident("log::warn!(\"x\")", "log"));
        assert!(!names_ident("let catalog = 1;", "log"));
        assert!(!names_ident("crossbeam_utils_extra", "crossbeam_utils"));
    }

    #[test]
    fn rustdoc_errors_are_placed() {
        let stderr = "error: unresolved link to `Foo`\n  --> crates/a/src/lib.rs:12:9\n   |\n\
                      error: could not document `a`\n";
        let found = rustdoc_errors(stderr);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].to_string(),
            "crates/a/src/lib.rs:12: unresolved link to `Foo`; fix or remove the link"
        );
    }
}
