//! The module graph of every crate, drawn from its source: no module imports a module that
//! imports it back, directly or through others (ARCHITECTURE.md's code map relies on it: each
//! module can be read with only what it imports).
//!
//! A module is a file (`services/mysql.rs` is `services::mysql`, `services/mod.rs` is
//! `services`). Its edges are the paths it names through `crate::`, `super::` and its own
//! child modules, resolved through the `pub use` re-exports of the module that declares them.
//! Unit tests (`#[cfg(test)] mod tests`) are left out: they may reach anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &[
    "types",
    "packer",
    "builder",
    "safefs",
    "deployer/wire",
    "deployer/client",
    "deployer/node",
    "deployer/runtime",
    ".",
];

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut cycles = Vec::new();
    for krate in CRATES {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(krate)
            .join("src");
        let graph = graph(&src);
        assert!(!graph.is_empty(), "{krate}: no modules found");
        for cycle in find_cycles(&graph) {
            let edges: Vec<String> = cycle
                .iter()
                .map(|m| format!("  `{m}` imports {:?}", graph[m]))
                .collect();
            cycles.push(format!("{krate}: {cycle:?}\n{}", edges.join("\n")));
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

/// The test itself: a graph with a cycle is seen as one.
#[test]
fn a_cycle_is_found() {
    let graph: Graph = [
        ("a", &["b"][..]),
        ("b", &["c"]),
        ("c", &["a"]),
        ("d", &["a"]),
    ]
    .into_iter()
    .map(|(m, to)| (m.to_string(), to.iter().map(|t| t.to_string()).collect()))
    .collect();
    assert_eq!(find_cycles(&graph), [vec!["a", "b", "c"]]);
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Module → the modules it names.
fn graph(src: &Path) -> Graph {
    let files = module_files(src);
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let defines: BTreeMap<String, BTreeSet<String>> = files
        .iter()
        .map(|(m, text)| (m.clone(), definitions(text)))
        .collect();
    let reexports: BTreeMap<String, BTreeMap<String, String>> = files
        .iter()
        .map(|(m, text)| (m.clone(), pub_uses(m, text, &modules, &defines)))
        .collect();
    let mut graph = Graph::new();
    for (module, text) in &files {
        let text = without_tests(text);
        let mut to = BTreeSet::new();
        for path in paths(module, &text, &modules) {
            if let Some(target) = resolve(&path, &modules, &reexports) {
                if &target != module && !target.starts_with(&format!("{module}::")) {
                    to.insert(target);
                }
            }
        }
        graph.insert(module.clone(), to);
    }
    graph
}

/// Every `.rs` file under `src` by module path ("" is the crate root), with its text.
fn module_files(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(src) {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension() != Some(std::ffi::OsStr::new("rs")) {
            continue;
        }
        let rel: PathBuf = path.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into()).collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        out.insert(parts.join("::"), std::fs::read_to_string(path).unwrap());
    }
    out
}

fn without_tests(text: &str) -> String {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => text[..at].to_string(),
        None => text.to_string(),
    }
}

/// The absolute paths (`a::b::Item`) that `module` names, `use` groups expanded.
fn paths(module: &str, text: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let join = |base: &str, rest: &str| match base {
        "" => rest.to_string(),
        base => format!("{base}::{rest}"),
    };
    let mut out = Vec::new();
    let path_re =
        regex_lite::Regex::new(r"\b(crate|super|[a-z_][a-z0-9_]*)::([A-Za-z0-9_:]*)(\{[^}]*\})?")
            .unwrap();
    for cap in path_re.captures_iter(text) {
        // A macro (`crate::out!`) lives at the root whoever defines it; a call names a function,
        // whose last part is no module (`cli::run(cli)` is not the module `cli::run`).
        let after = text[cap.get(0).unwrap().end()..].chars().next();
        if after == Some('!') {
            continue;
        }
        let head = &cap[1];
        let base = match head {
            "crate" => String::new(),
            "super" => parent.to_string(),
            child if modules.contains(&join(module, child)) => join(module, child),
            _ => continue,
        };
        let mut rest = cap[2].trim_end_matches("::");
        if after == Some('(') && cap.get(3).is_none() {
            rest = rest.rsplit_once("::").map_or("", |(r, _)| r);
        }
        let prefix = join(&base, rest).trim_end_matches("::").to_string();
        match cap.get(3) {
            Some(group) => {
                let inner = group.as_str().trim_matches(|c| c == '{' || c == '}');
                for item in inner.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    let item = item.split_whitespace().next().unwrap_or(item);
                    let item = if item == "self" { "" } else { item };
                    out.push(join(&prefix, item).trim_end_matches("::").to_string());
                }
            }
            None => out.push(prefix),
        }
    }
    out
}

/// The items a module defines publicly.
fn definitions(text: &str) -> BTreeSet<String> {
    let re = regex_lite::Regex::new(
        r"(?m)^pub(?:\([a-z]+\))? (?:async )?(?:struct|enum|trait|fn|type|const|static) ([A-Za-z0-9_]+)",
    )
    .unwrap();
    re.captures_iter(text).map(|c| c[1].to_string()).collect()
}

/// `pub use child::Item [as Name];` in `module`: Name → the module it comes from; a glob
/// (`pub use child::*`) gives every item `child` defines.
fn pub_uses(
    module: &str,
    text: &str,
    modules: &BTreeSet<String>,
    defines: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let glob = regex_lite::Regex::new(r"(?m)^pub use ([a-z_:]+)::\*;").unwrap();
    for cap in glob.captures_iter(text) {
        let base = paths(module, &format!("{}::x", &cap[1]), modules);
        let source = base
            .first()
            .and_then(|p| resolve(p, modules, &BTreeMap::new()));
        for item in source.iter().flat_map(|s| defines.get(s)).flatten() {
            out.insert(item.clone(), source.clone().unwrap());
        }
    }
    for path in paths(
        module,
        &text
            .lines()
            .filter(|l| {
                l.trim_start().starts_with("pub use")
                    || l.trim_start().starts_with("pub(crate) use")
            })
            .collect::<Vec<_>>()
            .join("\n"),
        modules,
    ) {
        if let Some(target) = resolve(&path, modules, &BTreeMap::new()) {
            let name = path.rsplit("::").next().unwrap_or(&path).to_string();
            out.insert(name, target);
        }
    }
    out
}

/// The module a path lands in: its longest prefix that is a module, or, when the next part is
/// an item that module re-exports, the module it re-exports from.
fn resolve(
    path: &str,
    modules: &BTreeSet<String>,
    reexports: &BTreeMap<String, BTreeMap<String, String>>,
) -> Option<String> {
    let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    let mut found = String::new();
    let mut rest = parts.as_slice();
    while let Some((first, tail)) = rest.split_first() {
        let next = if found.is_empty() {
            first.to_string()
        } else {
            format!("{found}::{first}")
        };
        if !modules.contains(&next) {
            break;
        }
        found = next;
        rest = tail;
    }
    if let Some(item) = rest.first() {
        if let Some(target) = reexports.get(&found).and_then(|r| r.get(*item)) {
            return Some(target.clone());
        }
    }
    Some(found)
}

/// Every set of modules that import each other in a circle (strongly connected, more than one).
fn find_cycles(graph: &Graph) -> Vec<Vec<String>> {
    // Two modules are in one cycle when each reaches the other.
    let reach = |from: &str| -> BTreeSet<String> {
        let (mut seen, mut stack) = (BTreeSet::new(), vec![from.to_string()]);
        while let Some(m) = stack.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut cycles: Vec<Vec<String>> = Vec::new();
    for m in graph.keys() {
        if cycles.iter().any(|c| c.contains(m)) || !reaches[m].contains(m) {
            continue;
        }
        let cycle: Vec<String> = graph
            .keys()
            .filter(|o| reaches[m].contains(*o) && reaches[*o].contains(m))
            .cloned()
            .collect();
        cycles.push(cycle);
    }
    cycles
}
