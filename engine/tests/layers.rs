//! The engine reads top to bottom: no module (file) uses another that uses it back, directly or
//! through others, and no folder does. Test code is left out: tests may use anything.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `counters/window.rs` → `counters::window`, `policy/mod.rs` → `policy`.
fn module_of(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap().with_extension("");
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|p| p != "mod")
        .collect();
    parts.join("::")
}

/// The code of a file without its test modules.
fn non_test_code(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            let next = lines.peek().copied().unwrap_or_default();
            let item = next.trim_start().trim_start_matches("pub ");
            if item.starts_with("mod ") && item.trim_end().ends_with('{') {
                break;
            }
            // `#[cfg(test)] mod tests;`, or a test-only item: skip that one line.
            lines.next();
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

fn identifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The modules `code` names, longest known prefix of every `crate::a::b…` path and every path
/// starting with one of its own child modules (`rules::load` in `load/mod.rs`).
fn uses(module: &str, code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut resolve = |path: Vec<&str>| {
        for end in (1..=path.len()).rev() {
            let candidate = path[..end].join("::");
            if modules.contains(&candidate) {
                if candidate != module {
                    found.insert(candidate);
                }
                return;
            }
        }
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let end = rest
            .find(|c: char| !identifier_char(c) && c != ':')
            .unwrap_or(rest.len());
        resolve(rest[..end].split("::").filter(|s| !s.is_empty()).collect());
    }
    for (at, _) in code.match_indices("super::") {
        let before = code[..at].chars().last();
        if before.is_some_and(|c| identifier_char(c) || c == ':') {
            continue;
        }
        let rest = &code[at + "super::".len()..];
        let end = rest
            .find(|c: char| !identifier_char(c))
            .unwrap_or(rest.len());
        // In `a/b.rs` and in `a/b/mod.rs` alike, `super` is `a`.
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
        let name = &rest[..end];
        let full = if parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}::{name}")
        };
        resolve(full.split("::").collect());
    }
    for child in modules
        .iter()
        .filter_map(|m| m.strip_prefix(&format!("{module}::")))
        .filter(|c| !c.contains("::"))
    {
        let named = code.match_indices(&format!("{child}::")).any(|(at, _)| {
            !code[..at]
                .chars()
                .last()
                .is_some_and(|c| identifier_char(c) || c == ':')
        });
        if named {
            found.insert(format!("{module}::{child}"));
        }
    }
    found
}

fn graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(&root, f))
        .filter(|m| m != "lib" && m != "test_support" && !m.ends_with("tests"))
        .collect();
    let mut graph = Graph::new();
    for file in &files {
        let module = module_of(&root, file);
        if !modules.contains(&module) {
            continue;
        }
        let code = non_test_code(&std::fs::read_to_string(file).unwrap());
        graph.insert(module.clone(), uses(&module, &code, &modules));
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_uses_one_that_uses_it_back() {
    let graph = graph();
    assert!(graph.len() > 30, "found only {} modules", graph.len());
    assert!(graph["request::plan"].contains("request::access"));
    if let Some(found) = cycle(&graph) {
        panic!("import cycle: {}", found.join(" → "));
    }
}

#[test]
fn no_folder_uses_one_that_uses_it_back() {
    let top = |m: &str| m.split("::").next().unwrap_or_default().to_owned();
    let mut folders = Graph::new();
    for (module, uses) in graph() {
        let entry = folders.entry(top(&module)).or_default();
        entry.extend(uses.iter().map(|u| top(u)).filter(|u| *u != top(&module)));
    }
    if let Some(found) = cycle(&folders) {
        panic!("import cycle between folders: {}", found.join(" → "));
    }
}

#[test]
fn the_engine_never_names_a_host_abi() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(!manifest.contains("proxy-wasm"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("proxy_wasm"), "{}", file.display());
    }
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_owned()].into());
    graph.insert("b".into(), ["c".to_owned()].into());
    graph.insert("c".into(), ["a".to_owned()].into());
    assert_eq!(cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(cycle(&graph), None);
}
