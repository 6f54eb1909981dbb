//! The target side's dependency closure against the committed allow-list
//! (`docs/target-dependencies.txt`): the product rule is that this closure only ever shrinks.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The allow-list's path from the workspace root.
pub const ALLOW_LIST: &str = "docs/target-dependencies.txt";

/// The crate names on the allow-list (comments and blank lines skipped).
pub fn allowed(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// External crates (not in this workspace) reachable through normal dependencies from the
/// workspace packages that run on the target, as cargo resolves them for `target`.
pub fn closure(workspace: &Path, target: &str) -> Result<BTreeSet<String>, String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
            target,
        ])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    external_closure(&meta)
}

/// The walk itself, on `cargo metadata` output: start from every workspace member whose
/// manifest lives under `kernel/`, `abi/`, `userland/`, `drivers/`, `netstack/` or `loader/`.
pub fn external_closure(meta: &Value) -> Result<BTreeSet<String>, String> {
    let packages = meta["packages"].as_array().ok_or("no packages")?;
    let names: BTreeMap<&str, (&str, bool)> = packages
        .iter()
        .filter_map(|p| {
            let id = p["id"].as_str()?;
            Some((id, (p["name"].as_str()?, p["source"].is_null())))
        })
        .collect();
    let target_side = |manifest: &str| {
        [
            "/kernel/",
            "/abi/",
            "/userland/",
            "/drivers/",
            "/netstack/",
            "/loader/",
        ]
        .iter()
        .any(|d| manifest.contains(d))
    };
    let roots: Vec<&str> = packages
        .iter()
        .filter(|p| p["source"].is_null() && p["manifest_path"].as_str().is_some_and(target_side))
        .filter_map(|p| p["id"].as_str())
        .collect();
    let nodes: BTreeMap<&str, Vec<&str>> = meta["resolve"]["nodes"]
        .as_array()
        .ok_or("no resolve graph")?
        .iter()
        .filter_map(|n| {
            let deps = n["deps"]
                .as_array()?
                .iter()
                .filter(|d| {
                    // Normal dependencies only: build scripts and tests do not reach the target.
                    d["dep_kinds"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k["kind"].is_null()))
                })
                .filter_map(|d| d["pkg"].as_str())
                .collect();
            Some((n["id"].as_str()?, deps))
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut todo = roots;
    let mut external = BTreeSet::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        if let Some(&(name, local)) = names.get(id)
            && !local
        {
            external.insert(name.to_owned());
        }
        todo.extend(nodes.get(id).into_iter().flatten().copied());
    }
    Ok(external)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> Value {
        let pkg = |id: &str, name: &str, local: bool, path: &str| json!({"id": id, "name": name, "source": if local { Value::Null } else { json!("registry") }, "manifest_path": path});
        let dep = |pkg: &str, kind: Value| json!({"pkg": pkg, "dep_kinds": [{"kind": kind}]});
        json!({
            "packages": [
                pkg("k", "brainix-kernel", true, "/w/kernel/Cargo.toml"),
                pkg("h", "lab-runner", true, "/w/lab-runner/Cargo.toml"),
                pkg("a", "acpi", false, "/r/acpi/Cargo.toml"),
                pkg("b", "bit_field", false, "/r/bit_field/Cargo.toml"),
                pkg("t", "tokio", false, "/r/tokio/Cargo.toml"),
                pkg("c", "cc", false, "/r/cc/Cargo.toml"),
            ],
            "resolve": {"nodes": [
                {"id": "k", "deps": [dep("a", Value::Null), dep("c", json!("build"))]},
                {"id": "a", "deps": [dep("b", Value::Null)]},
                {"id": "h", "deps": [dep("t", Value::Null)]},
                {"id": "b", "deps": []}, {"id": "t", "deps": []}, {"id": "c", "deps": []},
            ]}
        })
    }

    #[test]
    fn the_closure_follows_normal_dependencies_of_target_packages_only() {
        let got = external_closure(&meta()).unwrap();
        assert_eq!(got, ["acpi", "bit_field"].map(String::from).into());
    }

    #[test]
    fn the_committed_allow_list_is_exactly_the_closure() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let list = std::fs::read_to_string(root.join(ALLOW_LIST)).unwrap();
        let allowed = allowed(&list);
        let mut used = BTreeSet::new();
        for target in ["x86_64-unknown-none", "x86_64-unknown-uefi"] {
            used.extend(closure(&root, target).unwrap());
        }
        let new: Vec<_> = used.difference(&allowed).collect();
        let gone: Vec<_> = allowed.difference(&used).collect();
        assert!(
            new.is_empty(),
            "target-side crates not on {ALLOW_LIST}: {new:?}; add each with its reason in docs/dependencies.md, or drop the dependency"
        );
        assert!(
            gone.is_empty(),
            "{ALLOW_LIST} lists crates nothing links any more: {gone:?}; delete them (the list only shrinks)"
        );
    }
}
