//! The crates' modules sit on floors: no module imports one that imports it back, directly or
//! through others. A circle makes two modules one to read and to change; this test reads every
//! `crate::` and `super::` path in the source (comments left out) and fails on the first circle,
//! naming it. Checked among a crate's top-level modules, and among the sibling files of each
//! directory module (a child reaching its own parent, as `impl Store` blocks in `store/` do,
//! is not a circle).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module's path inside its crate: `["store", "expiry"]` for `src/store/expiry.rs`.
type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name != "bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> ModPath {
    let relative = file.strip_prefix(src).expect("file under src");
    let mut parts: ModPath = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The code of a file without its comments and its `#[cfg(test)] mod tests`.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules a file's code names: `crate::a::b::Item` gives `[a, b]`, `super::x` the parent's
/// `x`, and a braced group `crate::{a, b::c}` each of its members.
fn uses(me: &ModPath, code: &str) -> BTreeSet<ModPath> {
    let mut found = BTreeSet::new();
    // `mod.rs` files were named after their directory, so in both cases `super` is one up.
    let parent: ModPath = me[..me.len().saturating_sub(1)].to_vec();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let paths: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end].split(',').map(str::trim).collect()
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                vec![&rest[..end]]
            };
            for path in paths {
                let mut module = base.clone();
                for segment in path.split("::") {
                    let lower = segment.chars().next().is_some_and(|c| c.is_lowercase());
                    if !lower || segment == "self" {
                        break;
                    }
                    module.push(segment.to_owned());
                }
                if !module.is_empty() {
                    found.insert(module);
                }
            }
        }
    }
    found
}

/// The first circle in `edges`, as the modules along it.
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

/// Every circle-free floor of the crate at `src`: its top-level modules, then the files of each
/// directory module among themselves.
fn assert_no_circles(src: &Path) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graphs: BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let me = module_of(src, file);
        let Some(top) = me.first() else { continue };
        let text = fs::read_to_string(file).expect("readable source file");
        for used in uses(&me, &code(&text)) {
            if used[0] != *top {
                let graph = graphs.entry(Vec::new()).or_default();
                graph
                    .entry(top.clone())
                    .or_default()
                    .insert(used[0].clone());
            } else if me.len() >= 2 && used.len() >= 2 && used[..me.len() - 1] == me[..me.len() - 1]
            {
                // Siblings under one directory module: `store::expiry` → `store::table`.
                let (mine, theirs) = (&me[me.len() - 1], &used[me.len() - 1]);
                if mine != theirs {
                    let graph = graphs.entry(me[..me.len() - 1].to_vec()).or_default();
                    graph
                        .entry(mine.clone())
                        .or_default()
                        .insert(theirs.clone());
                }
            }
        }
    }
    for (floor, edges) in &graphs {
        if let Some(circle) = find_circle(edges) {
            panic!(
                "import circle among {}'s modules{}: {}",
                src.display(),
                if floor.is_empty() {
                    String::new()
                } else {
                    format!(" in {}", floor.join("::"))
                },
                circle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_servers_modules_have_no_import_circle() {
    assert_no_circles(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
}

#[test]
fn the_clients_modules_have_no_import_circle() {
    assert_no_circles(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/src"));
}

#[test]
fn a_circle_is_found_and_named() {
    let mut edges = BTreeMap::new();
    for (from, to) in [("server", "cmd"), ("cmd", "shared"), ("shared", "server")] {
        edges
            .entry(from.to_owned())
            .or_insert_with(BTreeSet::new)
            .insert(to.to_owned());
    }
    let circle = find_circle(&edges).expect("a circle");
    assert_eq!(circle.first(), circle.last());
    assert_eq!(circle.len(), 4, "{circle:?}");
    edges.get_mut("shared").unwrap().clear();
    assert_eq!(find_circle(&edges), None);
}
