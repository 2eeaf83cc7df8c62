//! The source keeps its shape: dependencies between the rooms of `src/` point down only
//! (docs/architecture.md), no two sibling files import each other (directly or around a
//! loop), and every path the README names exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each room's layer: a room may use rooms of lower layers, and rooms of its own layer as long
/// as they form no loop.
const LAYERS: &[(&str, u32)] = &[
    ("media", 0),
    ("package", 1),
    ("scale", 1),
    ("ingest", 1),
    ("encode", 1),
    ("hw", 1),
    ("objects", 1),
    ("pipeline", 2),
    ("origin", 3),
    ("jobs", 3),
    ("api", 3),
    ("telemetry", 3),
    ("daemon", 4),
    ("bench", 4),
    ("loadgen", 4),
    ("selftest", 4),
    ("cli", 5),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Identifiers that follow `prefix` in `text` (`crate::` → rooms, `super::` → siblings),
/// including each first name inside a `{…}` group.
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices(prefix) {
        let rest = &text[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for part in inner.split(',') {
                names.insert(ident(part.trim()));
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names.remove("");
    names
}

/// Source lines only: comments are not imports.
fn code_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn has_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn rooms_depend_downwards_without_loops() {
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut room_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut upward = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(src()).unwrap();
        let room = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let Some(&own) = layer.get(room.as_str()) else {
            continue; // main.rs, lib.rs: the crate's roots
        };
        for used in names_after(&code_of(file), "crate::") {
            let Some(&theirs) = layer.get(used.as_str()) else {
                continue;
            };
            if used == room {
                continue;
            }
            if theirs > own {
                upward.push(format!("{} uses crate::{used}", relative.display()));
            }
            room_edges.entry(room.clone()).or_default().insert(used);
        }
    }
    assert!(
        upward.is_empty(),
        "lower rooms naming higher ones:\n{}",
        upward.join("\n")
    );
    assert_eq!(
        has_cycle(&room_edges),
        None,
        "rooms import each other in a loop"
    );
}

#[test]
fn no_two_sibling_files_import_each_other() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut by_dir: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        by_dir
            .entry(f.parent().unwrap().to_path_buf())
            .or_default()
            .push(f);
    }
    for (dir, files) in by_dir {
        let stem = |p: &Path| p.file_stem().unwrap().to_string_lossy().into_owned();
        let siblings: BTreeSet<String> = files
            .iter()
            .map(|p| stem(p))
            .filter(|s| s != "mod" && s != "lib" && s != "main")
            .collect();
        // The module path of this folder, for `crate::a::b::file` references.
        let module = dir
            .strip_prefix(src())
            .unwrap()
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("::");
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let name = stem(file);
            if !siblings.contains(&name) {
                continue;
            }
            let code = code_of(file);
            let mut used = names_after(&code, "super::");
            if !module.is_empty() {
                used.extend(names_after(&code, &format!("crate::{module}::")));
            }
            for u in used {
                if siblings.contains(&u) && u != name {
                    edges.entry(name.clone()).or_default().insert(u);
                }
            }
        }
        assert_eq!(
            has_cycle(&edges),
            None,
            "files of {} import each other in a loop",
            dir.display()
        );
    }
}

#[test]
fn every_path_the_readme_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut missing = Vec::new();
    let mut checked = 0;
    for quoted in readme.split('`').skip(1).step_by(2) {
        let candidate = quoted.split_whitespace().next().unwrap_or("");
        let is_path = [
            "src/",
            "tests/",
            "kernels/",
            "hw-profiles/",
            "packaging/",
            "docs/",
            "benches/",
            ".ci/",
        ]
        .iter()
        .any(|p| candidate.starts_with(p))
            || ["README.md", "NOTES.md", "Makefile", "Cargo.toml"].contains(&candidate);
        if !is_path || candidate.contains('*') || candidate.contains('{') {
            continue;
        }
        checked += 1;
        if !root
            .join(candidate.trim_end_matches(['.', ',', ':', ')']))
            .exists()
        {
            missing.push(candidate.to_string());
        }
    }
    assert!(checked > 10, "the README names {checked} paths");
    assert!(
        missing.is_empty(),
        "the README names paths that do not exist: {missing:?}"
    );
}
