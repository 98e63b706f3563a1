//! The module structure of `server/src`, checked rather than promised: no module imports
//! one of a higher layer (the "Layers" section of `docs/ARCHITECTURE.md`), and no modules
//! import each other, directly or round a circle — a child importing from its parent
//! `mod.rs` while the parent uses the child counts as a circle.
//!
//! An import is any `crate::`, `super::` or `self::` path outside comments and test
//! modules (in `use` declarations, braces expanded, and in code), and in a `mod.rs` a path
//! that starts with one of its own child modules. Each is resolved to the deepest module
//! file it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of each module file, lowest first; a file may import only files of its own
/// layer or below. Every module file must be listed (by its path under `src/`, the
/// longest matching prefix wins), so a new module is placed on purpose.
const LAYERS: &[(&str, u8)] = &[
    // Leaves (units, sys, config, stats, ratelimit) and the leaf-like readers beside them.
    ("units.rs", 0),
    ("sys.rs", 0),
    ("config.rs", 0),
    ("stats.rs", 0),
    ("ratelimit.rs", 0),
    ("procfs.rs", 0),
    ("cpu.rs", 0),
    ("gso.rs", 0),
    // Plumbing and rules.
    ("ring", 1),
    ("policy.rs", 1),
    ("error.rs", 1),
    // What a backend is.
    ("backend/contract.rs", 2),
    // The backends.
    ("backend/uring", 3),
    ("backend/epoll", 3),
    ("backend/tokio_uring", 3),
    ("backend/threads", 3),
    // Engine selection, binding.
    ("backend/mod.rs", 4),
    ("listen.rs", 4),
    // The public API.
    ("server.rs", 5),
    ("metrics", 5),
    ("cli.rs", 6),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module file of the library (not `lib.rs`, the facade, nor `main.rs`, the binary),
/// by path under `src/`.
fn module_files() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    let mut names: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(src()).unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "lib.rs" && n != "main.rs")
        .collect();
    names.sort();
    names
}

fn layer(file: &str) -> u8 {
    LAYERS
        .iter()
        .filter(|(prefix, _)| {
            file == *prefix || file == format!("{prefix}.rs") || file.starts_with(&format!("{prefix}/"))
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .unwrap_or_else(|| panic!("{file} is in no layer: place it in LAYERS (and in docs/ARCHITECTURE.md)"))
        .1
}

/// The module path of a file (`backend/uring/dgram.rs` → `backend::uring::dgram`).
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The file of the deepest module along `path` (segments from the crate root), if any.
fn resolve(path: &[String]) -> Option<String> {
    let mut found = None;
    for n in 1..=path.len() {
        let dir = path[..n].join("/");
        let file =
            [format!("{dir}.rs"), format!("{dir}/mod.rs")].into_iter().find(|f| src().join(f).is_file());
        match file {
            Some(f) => found = Some(f),
            None => break,
        }
    }
    found
}

/// The source without comments and without the test module at the end.
fn code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod ").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|line| match line.trim_start().starts_with("//") {
            true => "",
            false => line.find(" //").map_or(line, |i| &line[..i]),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else { return vec![tree.to_owned()] };
    let prefix = tree[..open].trim_end_matches("::").trim();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|i| !i.trim().is_empty())
        .flat_map(expand)
        .map(|p| match p.as_str() {
            "self" => prefix.to_owned(),
            _ if prefix.is_empty() => p,
            _ => format!("{prefix}::{p}"),
        })
        .collect()
}

/// Every file `file` imports.
fn imports(file: &str) -> BTreeSet<String> {
    let text = code(&std::fs::read_to_string(src().join(file)).unwrap());
    let module = module_of(file);
    let children: BTreeSet<String> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").or_else(|| l.strip_prefix("pub(crate) ")).unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
        })
        .collect();
    let mut paths: Vec<String> = Vec::new();
    // `use` declarations, braces expanded.
    let mut rest = text.as_str();
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest.find(';').unwrap_or(rest.len());
        paths.extend(expand(&rest[..end]).into_iter().map(|p| p.split(" as ").next().unwrap().to_owned()));
        rest = &rest[end..];
    }
    // Paths in code.
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
        if word.contains("::") {
            paths.push(word.to_owned());
        }
    }
    let mut found = BTreeSet::new();
    for path in paths {
        let segments: Vec<String> =
            path.split("::").filter(|s| !s.is_empty() && *s != "*").map(str::to_owned).collect();
        let Some(first) = segments.first() else { continue };
        let absolute: Vec<String> = match first.as_str() {
            "crate" => segments[1..].to_vec(),
            "super" => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let base = &module[..module.len().saturating_sub(ups)];
                base.iter().cloned().chain(segments[ups..].iter().cloned()).collect()
            }
            "self" => module.iter().cloned().chain(segments[1..].iter().cloned()).collect(),
            child if children.contains(child) => {
                module.iter().cloned().chain(segments.iter().cloned()).collect()
            }
            _ => continue, // another crate
        };
        if let Some(target) = resolve(&absolute) {
            if target != file {
                found.insert(target);
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    module_files().into_iter().map(|f| (f.clone(), imports(&f))).collect()
}

#[test]
fn no_module_imports_a_higher_layer() {
    let mut upward = Vec::new();
    for (file, targets) in graph() {
        for target in targets {
            if layer(&target) > layer(&file) {
                upward.push(format!(
                    "{file} (layer {}) imports {target} (layer {})",
                    layer(&file),
                    layer(&target)
                ));
            }
        }
    }
    assert!(upward.is_empty(), "imports running up the layers:\n{}", upward.join("\n"));
}

#[test]
fn no_modules_import_each_other() {
    let graph = graph();
    // Depth-first search for a back edge; report each circle found.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        circles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            circles.push([&path[at..], &[node.to_owned()]].concat().join(" → "));
            return;
        }
        if !done.insert(node.to_owned()) {
            return;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done, circles);
        }
        path.pop();
    }
    let (mut done, mut circles) = (BTreeSet::new(), Vec::new());
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(circles.is_empty(), "modules importing each other:\n{}", circles.join("\n"));
}

/// The checker itself finds what it is meant to: a child importing from its parent,
/// braces, paths in code, and comments and tests left out.
#[test]
fn the_checker_reads_imports() {
    assert_eq!(
        expand("super::{buffers::Buffers, ctx::{self, Ctx}, token}"),
        ["super::buffers::Buffers", "super::ctx", "super::ctx::Ctx", "super::token"]
    );
    let uring_dgram = imports("backend/uring/dgram.rs");
    assert!(uring_dgram.contains("backend/uring/buffers.rs"), "{uring_dgram:?}");
    assert!(uring_dgram.contains("policy.rs") && uring_dgram.contains("gso.rs"), "{uring_dgram:?}");
    assert!(imports("backend/uring/mod.rs").contains("backend/uring/worker.rs"), "a call worker::run");
    assert!(imports("server.rs").contains("sys.rs"), "a path in code: crate::sys::eventfd");
    assert_eq!(module_of("backend/uring/mod.rs"), ["backend", "uring"]);
    assert_eq!(
        code("use a; // use crate::b\n/// crate::c\n#[cfg(test)]\nmod tests {\n use crate::d;\n}"),
        "use a;\n"
    );
    assert!(layer("backend/uring/stream.rs") > layer("backend/contract.rs"));
}
