//! What each crate may depend on, read from `cargo metadata`: the artifact crate and the image
//! builder never speak HTTP (ARCHITECTURE.md), so no HTTP crate is among their dependencies,
//! direct or not; and the deploy client builds no node.

use std::collections::{BTreeSet, HashMap};

/// Crates that speak HTTP.
const HTTP: &[&str] = &[
    "reqwest",
    "hyper",
    "hyper-util",
    "axum",
    "h2",
    "ureq",
    "tower-http",
];

/// The normal (not dev, not build) dependencies of `root`, transitively, by name.
fn dependencies(root: &str) -> BTreeSet<String> {
    // This platform's graph only: the crates of others (Windows consoles) are never fetched.
    let host = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .unwrap();
    let host = String::from_utf8_lossy(&host.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(String::from))
        .unwrap();
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let start = names
        .iter()
        .find(|(_, name)| **name == root)
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("no crate {root}"));
    let (mut seen, mut stack) = (BTreeSet::new(), vec![start]);
    while let Some(id) = stack.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            let pkg = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(names[pkg].to_string()) {
                stack.push(pkg);
            }
        }
    }
    seen
}

fn check(root: &str, never: &[&str]) {
    let deps = dependencies(root);
    let found: Vec<&&str> = never.iter().filter(|n| deps.contains(**n)).collect();
    assert!(found.is_empty(), "{root} depends on {found:?}");
}

#[test]
fn packer_and_builder_speak_no_http_and_the_client_builds_no_node() {
    check("packer", HTTP);
    check("builder", HTTP);
    check(
        "silver-client",
        &["silver-node", "silver-runtime", "builder"],
    );
    check("silver-wire", HTTP);
    // The registry client is shared by the CI side and the node: it never pulls in either.
    check(
        "silver-registry",
        &["silver-node", "silver-runtime", "silver-client", "builder"],
    );
}
