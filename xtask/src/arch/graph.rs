//! The controller's files and the imports between them: every module path a file names,
//! resolved to the file that defines that module (`crate::engine::Engine` is
//! `engine/mod.rs`, `super::book::Book` from `engine/sources.rs` is `engine/book.rs`).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use super::source;

/// Which crate a file belongs to: the library (`lib.rs`) or the binary (`main.rs`), which
/// names the library by its crate name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Krate {
    Lib,
    Bin,
}

/// One file of the house.
#[derive(Debug)]
struct File {
    krate: Krate,
    /// Its module path from its crate's root (`["engine", "book"]`).
    module: Vec<String>,
    parsed: source::Parsed,
    lines: usize,
}

/// Files (relative to `src/`) and their arrows.
#[derive(Debug, Default)]
pub struct Graph {
    /// Every file of the house with its line count.
    pub files: BTreeMap<String, usize>,
    /// `a -> b`: a names a module that b defines.
    pub arrows: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    /// Reads every `.rs` file under `src` (a crate with `lib.rs` and maybe `main.rs`, whose
    /// library is called `lib_name`); test-only files are left out.
    pub fn read(src: &Path, lib_name: &str) -> anyhow::Result<Self> {
        let mut files: BTreeMap<String, File> = BTreeMap::new();
        for path in rust_files(src)? {
            let rel = path.strip_prefix(src)?.to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let (krate, module) = module_of(&rel, src);
            files.insert(
                rel,
                File {
                    krate,
                    module,
                    parsed: source::parse(&source::strip(&text)),
                    lines: text.lines().count(),
                },
            );
        }
        // Files that only tests declare are not rooms.
        let tests: BTreeSet<String> = files
            .iter()
            .flat_map(|(rel, f)| {
                f.parsed.test_modules.iter().flat_map(move |m| {
                    let mut module = f.module.clone();
                    module.push(m.clone());
                    file_candidates(f.krate, &module)
                        .into_iter()
                        .map(|c| (rel.clone(), c))
                })
            })
            .map(|(_, c)| c)
            .collect();
        files.retain(|rel, _| !tests.contains(rel));
        let index: BTreeMap<(Krate, Vec<String>), String> = files
            .iter()
            .map(|(rel, f)| ((f.krate, f.module.clone()), rel.clone()))
            .collect();
        // What each file re-exports, by name, as absolute paths.
        let reexports: Reexports = files
            .iter()
            .map(|(rel, f)| {
                let names = f
                    .parsed
                    .reexports
                    .iter()
                    .filter_map(|p| {
                        let abs = absolute(f, p, lib_name, &index)?;
                        Some((p.last()?.clone(), abs))
                    })
                    .collect();
                (rel.clone(), names)
            })
            .collect();
        let mut graph = Graph::default();
        for (rel, f) in &files {
            graph.files.insert(rel.clone(), f.lines);
            let arrows = graph.arrows.entry(rel.clone()).or_default();
            for path in &f.parsed.paths {
                let Some((krate, abs)) = absolute(f, path, lib_name, &index) else {
                    continue;
                };
                // A file's own re-exports are arrows to where they lead, not back to it.
                let own = f.parsed.reexports.contains(path);
                let target = if own {
                    resolve(&index, &BTreeMap::new(), krate, &abs, 0)
                } else {
                    resolve(&index, &reexports, krate, &abs, 0)
                };
                if let Some(target) = target
                    && target != *rel
                {
                    arrows.insert(target);
                }
            }
        }
        Ok(graph)
    }

    /// The strongly connected components with more than one file: the circles.
    pub fn circles(&self) -> Vec<Vec<String>> {
        let names: Vec<&String> = self.files.keys().collect();
        let at: BTreeMap<&String, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let succ: Vec<Vec<usize>> = names
            .iter()
            .map(|n| {
                self.arrows
                    .get(*n)
                    .into_iter()
                    .flatten()
                    .filter_map(|t| at.get(t).copied())
                    .collect()
            })
            .collect();
        tarjan(&succ)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut c: Vec<String> = c.into_iter().map(|i| names[i].clone()).collect();
                c.sort();
                c
            })
            .collect()
    }
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The crate and module path of a file relative to `src/`.
fn module_of(rel: &str, src: &Path) -> (Krate, Vec<String>) {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] {
        return (Krate::Lib, Vec::new());
    }
    if parts == ["main"] {
        return (Krate::Bin, Vec::new());
    }
    // A top-level module belongs to the binary when main.rs declares it.
    let bin = std::fs::read_to_string(src.join("main.rs"))
        .map(|m| {
            let m = source::strip(&m);
            m.split(';').any(|s| {
                let w: Vec<&str> = s.split_whitespace().collect();
                w.ends_with(&["mod", parts[0].as_str()])
            })
        })
        .unwrap_or(false);
    (if bin { Krate::Bin } else { Krate::Lib }, parts)
}

/// The files that may hold a module.
fn file_candidates(krate: Krate, module: &[String]) -> Vec<String> {
    if module.is_empty() {
        return vec![match krate {
            Krate::Lib => "lib.rs".into(),
            Krate::Bin => "main.rs".into(),
        }];
    }
    let p = module.join("/");
    vec![format!("{p}.rs"), format!("{p}/mod.rs")]
}

/// A path as written in `f`, made absolute: `crate::`, `super::`, `self::`, the library's
/// name from the binary, or a child module of `f`. `None` for other crates' paths.
fn absolute(
    f: &File,
    path: &[String],
    lib_name: &str,
    index: &BTreeMap<(Krate, Vec<String>), String>,
) -> Option<(Krate, Vec<String>)> {
    let first = path.first()?;
    let mut base = f.module.clone();
    let mut krate = f.krate;
    let mut rest = path;
    match first.as_str() {
        "crate" => {
            base.clear();
            rest = &path[1..];
        }
        "self" => rest = &path[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        name if name == lib_name && f.krate == Krate::Bin => {
            krate = Krate::Lib;
            base.clear();
            rest = &path[1..];
        }
        name => {
            let mut child = base.clone();
            child.push(name.to_owned());
            index.get(&(krate, child))?;
        }
    }
    base.extend(rest.iter().cloned());
    Some((krate, base))
}

/// Re-exported names by file: name -> (crate, absolute path).
type Reexports = BTreeMap<String, BTreeMap<String, (Krate, Vec<String>)>>;

/// The file defining the longest module prefix of `abs` (never the crate root); a name that
/// file only re-exports is followed to the file it comes from.
fn resolve(
    index: &BTreeMap<(Krate, Vec<String>), String>,
    reexports: &Reexports,
    krate: Krate,
    abs: &[String],
    depth: usize,
) -> Option<String> {
    let (n, file) = (1..=abs.len()).rev().find_map(|n| {
        index
            .get(&(krate, abs[..n].to_vec()))
            .map(|f| (n, f.clone()))
    })?;
    if depth < 8
        && let Some(name) = abs.get(n)
        && let Some((k, to)) = reexports.get(&file).and_then(|r| r.get(name))
    {
        let mut next = to.clone();
        next.extend(abs[n + 1..].iter().cloned());
        return resolve(index, reexports, *k, &next, depth + 1).or(Some(file));
    }
    Some(file)
}

/// Tarjan's strongly connected components.
fn tarjan(succ: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        succ: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.succ[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(comp);
        }
    }
    let n = succ.len();
    let mut s = State {
        succ,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarjan_finds_the_loop_and_leaves_the_chain() {
        // 0 -> 1 -> 2 -> 0, 2 -> 3
        let comps = tarjan(&[vec![1], vec![2], vec![0, 3], vec![]]);
        let mut big: Vec<Vec<usize>> = comps.into_iter().filter(|c| c.len() > 1).collect();
        big[0].sort();
        assert_eq!(big, vec![vec![0, 1, 2]]);
    }

    #[test]
    fn paths_resolve_to_the_file_that_defines_the_module() {
        let dir = tempdir();
        let write = |p: &str, s: &str| {
            let p = dir.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        write("lib.rs", "pub mod a; pub mod b;");
        write("main.rs", "mod cmd; fn main() {}");
        write(
            "a/mod.rs",
            "mod inner; pub use inner::X; #[cfg(test)] mod tests;",
        );
        write("a/inner.rs", "pub struct X; fn f() { crate::b::g(); }");
        write("a/tests.rs", "use crate::b::Never;");
        write("b.rs", "pub fn g() {} use super::a::X;");
        write("c.rs", "pub struct C; fn f() { crate::a::X; }");
        write("cmd.rs", "use ipwarden::a::X; use std::io;");
        let g = Graph::read(&dir, "ipwarden").unwrap();
        let arrows = |f: &str| g.arrows[f].iter().cloned().collect::<Vec<_>>();
        assert!(!g.files.contains_key("a/tests.rs"));
        assert_eq!(arrows("a/mod.rs"), ["a/inner.rs"]);
        assert_eq!(arrows("a/inner.rs"), ["b.rs"]);
        // X is only re-exported by a/mod.rs: b.rs takes it from a/inner.rs.
        assert_eq!(arrows("b.rs"), ["a/inner.rs"]);
        assert_eq!(arrows("c.rs"), ["a/inner.rs"]);
        assert_eq!(arrows("cmd.rs"), ["a/inner.rs"]);
        assert_eq!(g.circles(), vec![vec!["a/inner.rs", "b.rs"]]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-arch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
