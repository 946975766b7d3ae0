//! `cargo xtask arch`: holds the controller's import graph to `ARCHITECTURE.md`. The layer
//! table there is the rule: a file may import files of its own module (the entry it is listed
//! under) and of lower layers, nothing else; no files may import each other in a circle; no
//! source file outside tests is longer than [`MAX_LINES`].

mod graph;
mod source;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use crate::cmd;

/// The longest source file the house keeps (tests excepted).
pub const MAX_LINES: usize = 600;

/// The crates whose files the length rule covers.
const SIZED: [&str; 5] = [
    "common/src",
    "ebpf/src",
    "controller/src",
    "runners/src",
    "xtask/src",
];

/// One row's module: a file, or a folder when it ends with `/`.
#[derive(Debug, Clone)]
struct Entry {
    layer: u32,
    path: String,
}

pub fn run() -> anyhow::Result<()> {
    let root = cmd::workspace_root();
    let problems = check(&root)?;
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("arch: {p}");
        }
        bail!(
            "{} architecture problems (the rules are in ARCHITECTURE.md)",
            problems.len()
        );
    }
    println!(
        "arch: no circles, no import against the layers of ARCHITECTURE.md, no file over {MAX_LINES} lines"
    );
    Ok(())
}

/// Every broken rule, one line each.
fn check(root: &Path) -> anyhow::Result<Vec<String>> {
    let doc =
        std::fs::read_to_string(root.join("ARCHITECTURE.md")).context("reading ARCHITECTURE.md")?;
    let entries = layers(&doc);
    if entries.is_empty() {
        bail!("ARCHITECTURE.md has no layer table");
    }
    let src = root.join("controller/src");
    let graph = graph::Graph::read(&src, "ipwarden")?;
    let mut problems = Vec::new();
    let mut placed: BTreeMap<&String, &Entry> = BTreeMap::new();
    for file in graph.files.keys() {
        match entry_of(&entries, file) {
            Some(e) => {
                placed.insert(file, e);
            }
            None => problems.push(format!(
                "controller/src/{file} is in no layer of ARCHITECTURE.md"
            )),
        }
    }
    for (from, targets) in &graph.arrows {
        let Some(a) = placed.get(from) else { continue };
        for to in targets {
            let Some(b) = placed.get(to) else { continue };
            let same = a.path == b.path;
            if !same && b.layer >= a.layer {
                problems.push(format!(
                    "controller/src/{from} (layer {}, `{}`) imports controller/src/{to} (layer {}, `{}`)",
                    a.layer, a.path, b.layer, b.path
                ));
            }
        }
    }
    for (from_mod, to_mod) in nevers(&doc) {
        for (from, targets) in &graph.arrows {
            if !under(from, &from_mod) {
                continue;
            }
            for to in targets.iter().filter(|t| under(t, &to_mod)) {
                problems.push(format!(
                    "controller/src/{from} imports controller/src/{to}: `{from_mod}` never imports `{to_mod}`"
                ));
            }
        }
    }
    for c in graph.circles() {
        problems.push(format!("circle of {} files: {}", c.len(), c.join(" -> ")));
    }
    for dir in SIZED {
        for (file, lines) in long_files(&root.join(dir))? {
            problems.push(format!(
                "{dir}/{file} has {lines} lines (at most {MAX_LINES} outside tests)"
            ));
        }
    }
    Ok(problems)
}

/// The layer table: rows `| N | what | `a/`, `b.rs` |`.
fn layers(doc: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let Ok(layer) = cells[1].parse::<u32>() else {
            continue;
        };
        for (i, part) in cells[3].split('`').enumerate() {
            if i % 2 == 1 && !part.is_empty() {
                out.push(Entry {
                    layer,
                    path: part.to_owned(),
                });
            }
        }
    }
    out
}

/// The `| never | `from` | `to` | why |` rows.
fn nevers(doc: &str) -> Vec<(String, String)> {
    doc.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells.len() > 4 && cells[1] == "never").then(|| {
                let path = |c: &str| c.trim_matches('`').to_owned();
                (path(cells[2]), path(cells[3]))
            })
        })
        .collect()
}

/// Whether `file` is (under) the module `path`.
fn under(file: &str, path: &str) -> bool {
    if path.ends_with('/') {
        file.starts_with(path)
    } else {
        file == path
    }
}

/// The entry a file is listed under: the longest path that names it or its folder.
fn entry_of<'a>(entries: &'a [Entry], file: &str) -> Option<&'a Entry> {
    entries
        .iter()
        .filter(|e| under(file, &e.path))
        .max_by_key(|e| e.path.len())
}

/// Files under `dir` longer than [`MAX_LINES`], tests (`tests.rs`, `tests/`, `#[cfg(test)]`
/// items) not counted.
fn long_files(dir: &Path) -> anyhow::Result<Vec<(String, usize)>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let p = entry?.path();
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if p.is_dir() {
                if name != "tests" {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|e| e == "rs") && name != "tests.rs" {
                let lines = source::code_lines(&std::fs::read_to_string(&p)?);
                if lines > MAX_LINES {
                    out.push((p.strip_prefix(dir)?.to_string_lossy().into_owned(), lines));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Prints the graph as the table sees it (for working on the layers).
pub fn show() -> anyhow::Result<()> {
    let root = cmd::workspace_root();
    let graph = graph::Graph::read(&root.join("controller/src"), "ipwarden")?;
    for (from, to) in &graph.arrows {
        println!(
            "{from} ({} lines) -> {}",
            graph.files[from],
            to.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    for c in graph.circles() {
        println!("circle: {}", c.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_table_is_read_from_its_rows() {
        let doc = "| layer | holds | modules |\n| --- | --- | --- |\n| 2 | core | `engine/`, `store.rs` |\n| 1 | data | `wire/` |\n";
        let e = layers(doc);
        assert_eq!(e.len(), 3);
        assert_eq!(entry_of(&e, "engine/book.rs").unwrap().layer, 2);
        assert_eq!(entry_of(&e, "wire/mod.rs").unwrap().path, "wire/");
        assert!(entry_of(&e, "daemon/mod.rs").is_none());
        let n = nevers("| never | `engine/` | `wire/` | the core is typed |");
        assert_eq!(n, [("engine/".to_owned(), "wire/".to_owned())]);
    }
}
