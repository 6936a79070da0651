//! Rules of the house the compiler does not keep: every dependency a crate
//! declares is used by its code, so that none lingers to be built, audited
//! and upgraded for nothing.

use std::path::{Path, PathBuf};

/// The crates of the workspace, by folder.
const CRATES: &[&str] = &[
    "ingest",
    "enricher",
    "sink",
    "schemas",
    "runtime",
    "lake",
    "mobaro-sim",
    "bench",
];

/// The names under `[dependencies]` of the manifest `text`.
fn dependencies(text: &str) -> Vec<String> {
    let mut inside = false;
    let mut names = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if !inside || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.split(['=', '.']).next() {
            names.push(name.trim().to_string());
        }
    }
    names
}

/// Every `.rs` file under `folder`.
fn sources(folder: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![folder.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }
    found
}

/// Whether `code` names the crate `name` (as a path, an import or a macro).
fn names_crate(code: &str, name: &str) -> bool {
    let name = name.replace('-', "_");
    code.match_indices(&name).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + name.len()..].chars().next();
        let word_start = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let used = matches!(after, Some(':') | Some('!') | Some(';'));
        word_start && used
    })
}

#[test]
fn every_declared_dependency_is_used() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut unused = Vec::new();
    for krate in CRATES {
        let folder = root.join(krate);
        let manifest = std::fs::read_to_string(folder.join("Cargo.toml")).expect("a manifest");
        let code: String = sources(&folder.join("src"))
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .collect();
        for dependency in dependencies(&manifest) {
            if !names_crate(&code, &dependency) {
                unused.push(format!("{krate}: {dependency}"));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "dependencies no code of their crate names (remove them from its Cargo.toml): {unused:?}"
    );
}

#[test]
fn a_crate_is_named_by_its_paths_imports_and_macros() {
    assert!(names_crate("use serde_json::Value;", "serde_json"));
    assert!(names_crate("let x = hex::encode(y);", "hex"));
    assert!(names_crate("tracing::info!(\"x\")", "tracing"));
    assert!(names_crate("extern crate rand;", "rand"));
    assert!(!names_crate("let serde = 1;", "serde"));
    assert!(!names_crate("use my_hex::encode;", "hex"));
    assert!(names_crate("use object_store::path::Path;", "object-store"));
}
