//! Check 7 of `cargo xtask tidy`: the `rust-version` each workspace member
//! declares holds for its locked dependency graph, as `cargo metadata`
//! reports the dependencies' own `rust-version`s.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::{relative, Violation};
use crate::util::{self, Result};

/// Check 7: every workspace member's declared `rust-version` holds for the
/// locked dependency graph that `cargo metadata --all-features` resolves.
pub fn check_rust_versions(root: &Path) -> Result<Vec<Violation>> {
    let mut cmd: Command = util::cargo();
    cmd.args(["metadata", "--format-version", "1", "--all-features"]);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", util::Shown(&cmd)))?;
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        return Err(format!("`{}` failed ({})", util::Shown(&cmd), out.status).into());
    }
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("`{}`: unreadable output: {e}", util::Shown(&cmd)))?;
    let mut found = Vec::new();
    for (manifest, message) in rust_version_violations(&metadata) {
        let manifest = Path::new(&manifest);
        // The line that declares (or inherits) `rust-version`, else the first.
        let line = fs::read_to_string(manifest)
            .ok()
            .and_then(|text| {
                text.lines()
                    .position(|l| l.trim_start().starts_with("rust-version"))
            })
            .map_or(1, |i| i + 1);
        found.push(Violation {
            path: relative(root, manifest),
            line,
            message,
        });
    }
    Ok(found)
}

/// A `rust-version` ("1.88" or "1.88.0") as (major, minor, patch).
pub fn parse_rust_version(version: &str) -> Option<(u64, u64, u64)> {
    let mut parts = version.trim().split('.').map(str::parse::<u64>);
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    parts.next().is_none().then_some((major, minor, patch))
}

/// The members of `cargo metadata --format-version 1` output whose
/// dependency graph holds a package declaring a newer `rust-version` than
/// theirs: (the member's manifest path, what is wrong naming the member,
/// its `rust-version`, the dependencies and theirs). The graph is the
/// member's dependencies of every kind, then the normal and build
/// dependencies of those, on every platform `metadata` resolved for.
pub fn rust_version_violations(metadata: &serde_json::Value) -> Vec<(String, String)> {
    use std::collections::{BTreeSet, HashMap};
    let empty = Vec::new();
    let list = |v: &serde_json::Value| v.as_array().unwrap_or(&empty).clone();
    let packages: HashMap<&str, &serde_json::Value> = metadata["packages"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: HashMap<&str, &serde_json::Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let rust_version = |p: &serde_json::Value| parse_rust_version(p["rust_version"].as_str()?);
    let mut found = Vec::new();
    for member in list(&metadata["workspace_members"]) {
        let Some(member) = member.as_str().and_then(|id| packages.get(id)) else {
            continue;
        };
        let (Some(declared), Some(member_id)) = (rust_version(member), member["id"].as_str())
        else {
            continue;
        };
        let mut seen = BTreeSet::from([member_id.to_owned()]);
        let mut stack = vec![member_id.to_owned()];
        let mut too_new = Vec::new();
        while let Some(id) = stack.pop() {
            let Some(node) = nodes.get(id.as_str()) else {
                continue;
            };
            for dep in list(&node["deps"]) {
                let Some(dep_id) = dep["pkg"].as_str() else {
                    continue;
                };
                // Dev-dependencies count for the member only: those of its
                // dependencies are never built.
                let built = id == member_id
                    || list(&dep["dep_kinds"])
                        .iter()
                        .any(|k| k["kind"].is_null() || k["kind"] == "build");
                if !built || !seen.insert(dep_id.to_owned()) {
                    continue;
                }
                stack.push(dep_id.to_owned());
                let Some(package) = packages.get(dep_id) else {
                    continue;
                };
                if let Some(needed) = rust_version(package).filter(|v| *v > declared) {
                    too_new.push((
                        needed,
                        format!(
                            "{} {} (rust-version {})",
                            package["name"].as_str().unwrap_or("?"),
                            package["version"].as_str().unwrap_or("?"),
                            package["rust_version"].as_str().unwrap_or("?"),
                        ),
                    ));
                }
            }
        }
        if too_new.is_empty() {
            continue;
        }
        too_new.sort_by(|a, b| b.cmp(a));
        let (newest, _) = too_new[0];
        // The newest few; the rest as a count.
        const SHOWN: usize = 5;
        let mut names: Vec<String> = too_new.iter().take(SHOWN).map(|(_, n)| n.clone()).collect();
        if too_new.len() > SHOWN {
            names.push(format!("and {} more", too_new.len() - SHOWN));
        }
        found.push((
            member["manifest_path"].as_str().unwrap_or("?").to_owned(),
            format!(
                "{} declares rust-version {} but its locked dependencies need newer: {}; \
                 declare rust-version {}.{} (or pin those dependencies to older versions)",
                member["name"].as_str().unwrap_or("?"),
                member["rust_version"].as_str().unwrap_or("?"),
                names.join(", "),
                newest.0,
                newest.1,
            ),
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_versions_parse() {
        assert_eq!(parse_rust_version("1.88"), Some((1, 88, 0)));
        assert_eq!(parse_rust_version("1.71.1"), Some((1, 71, 1)));
        assert_eq!(parse_rust_version("1"), Some((1, 0, 0)));
        assert_eq!(parse_rust_version("1.x"), None);
        assert_eq!(parse_rust_version("1.2.3.4"), None);
    }

    #[test]
    fn dependencies_newer_than_the_declared_rust_version_are_named() {
        let package = |name: &str, rust_version: Option<&str>| {
            serde_json::json!({
                "id": format!("{name}-id"),
                "name": name,
                "version": "1.0.0",
                "rust_version": rust_version,
                "manifest_path": format!("/ws/{name}/Cargo.toml"),
            })
        };
        let dep = |name: &str, kind: Option<&str>| serde_json::json!({"pkg": format!("{name}-id"), "dep_kinds": [{"kind": kind}]});
        let metadata = serde_json::json!({
            "workspace_members": ["core-id", "tool-id"],
            "packages": [
                package("core", Some("1.85")),
                package("tool", Some("1.95")),
                package("old", Some("1.60.0")),
                package("new", Some("1.88.0")),
                package("newer", Some("1.95")),
                package("unversioned", None),
                package("testonly", Some("1.99")),
            ],
            "resolve": {"nodes": [
                // core -> old -> new (normal); core -> unversioned (build);
                // core's dev-dependency newer; old's dev-dependency testonly.
                {"id": "core-id", "deps": [
                    dep("old", None), dep("unversioned", Some("build")), dep("newer", Some("dev")),
                ]},
                {"id": "old-id", "deps": [dep("new", None), dep("testonly", Some("dev"))]},
                {"id": "tool-id", "deps": [dep("core", None)]},
                {"id": "new-id", "deps": []},
                {"id": "newer-id", "deps": []},
                {"id": "unversioned-id", "deps": []},
                {"id": "testonly-id", "deps": []},
            ]},
        });
        let found = rust_version_violations(&metadata);
        assert_eq!(found.len(), 1, "{found:?}");
        let (manifest, message) = &found[0];
        assert_eq!(manifest, "/ws/core/Cargo.toml");
        assert!(
            message.starts_with("core declares rust-version 1.85"),
            "{message}"
        );
        assert!(
            message.contains("newer 1.0.0 (rust-version 1.95), new 1.0.0 (rust-version 1.88.0)"),
            "{message}"
        );
        assert!(message.contains("declare rust-version 1.95"), "{message}");
        assert!(!message.contains("testonly"), "{message}");
        assert!(!message.contains("old 1.0.0"), "{message}");

        // Past five, the rest are counted.
        let mut many = metadata.clone();
        for i in 0..7 {
            let name = format!("new{i}");
            many["packages"]
                .as_array_mut()
                .unwrap()
                .push(package(&name, Some("1.90")));
            many["resolve"]["nodes"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"id": format!("{name}-id"), "deps": []}));
            many["resolve"]["nodes"][0]["deps"]
                .as_array_mut()
                .unwrap()
                .push(dep(&name, None));
        }
        let found = rust_version_violations(&many);
        assert!(found[0].1.contains(", and 4 more;"), "{:?}", found[0].1);
    }
}
