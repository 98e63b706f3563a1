//! The architecture test: the layers of both crates, checked against their code.
//!
//! Each crate's modules are listed in layers, bottom first ([`RINGECHO`], [`RINGLOAD`]:
//! the one place the lists are kept; `docs/ARCHITECTURE.md` quotes them, and this test
//! holds the quote to the lists). A module belongs to the layer of the longest entry that
//! names it or one of its ancestors. The test reads every source file's `use crate::` /
//! `use super::` declarations and `crate::…` paths (comments and test modules left out)
//! and fails when
//! - a module imports one of a higher layer;
//! - modules import each other in a circle (whatever their layers);
//! - a module is in no layer;
//! - the docs' module map lists a file that does not exist, or misses one that does.
//!
//! It needs no tool but the standard library: paths are read as text, as written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// ringecho's layers, bottom first.
const RINGECHO: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "units",
            "sys",
            "config",
            "parthist",
            "stats",
            "ratelimit",
            "cmsg",
            "gso",
            "tstamp",
            "procfs",
            "cpu",
        ],
    ),
    ("plumbing and rules", &["ring", "policy", "error"]),
    ("the backend contract", &["backend::contract"]),
    ("backends", &["backend::uring", "backend::epoll", "backend::tokio_uring", "backend::threads"]),
    ("engine selection, listeners", &["backend", "listen"]),
    ("the server", &["server", "metrics"]),
    ("the front", &["cli", "main"]),
];

/// ringload's layers, bottom first.
const RINGLOAD: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "units", "stats", "exit", "hist", "counters", "header", "payload", "target", "connect", "escape",
            "input",
        ],
    ),
    ("options", &["plan", "slo"]),
    ("the engine", &["engine"]),
    ("the model", &["warning", "figures", "views", "document", "saved", "intervals"]),
    ("one run", &["run", "observe", "report", "verdict"]),
    ("renderers", &["text", "plot"]),
    ("workflows", &["repeat", "capacity", "ab", "merge", "compare", "fuzz"]),
    ("the front", &["cli", "options", "main"]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The layer list as `docs/ARCHITECTURE.md` quotes it: one line per layer, bottom first.
fn quoted(layers: &[(&str, &[&str])]) -> String {
    layers.iter().enumerate().map(|(i, (name, mods))| format!("{i}. {name}: {}\n", mods.join(", "))).collect()
}

/// Every `.rs` file under `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A file's module path (`engine::worker`; `lib.rs` is the crate root, ``), or `None`
/// for a test file (`tests.rs`, `testing.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let name = rel.file_stem().unwrap().to_str().unwrap();
    if name == "tests" || name == "testing" {
        return None;
    }
    let mut parts: Vec<String> =
        rel.parent().unwrap().components().map(|c| c.as_os_str().to_str().unwrap().to_owned()).collect();
    if !matches!(name, "mod" | "lib") {
        parts.push(name.to_owned());
    }
    Some(parts.join("::"))
}

/// The code of a file: comments dropped, and inline test modules (`#[cfg(test)]` before
/// a `mod NAME {` line) left out. (`super::` inside another inline module would be read
/// as the file's: ringecho and ringload write such paths from `crate::`.)
fn code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut skip_depth: Option<i64> = None;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if let Some(depth) = skip_depth.as_mut() {
            *depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
            if *depth <= 0 {
                skip_depth = None;
            }
            continue;
        }
        let next = lines.get(i + 1).map(|n| n.trim());
        let test_block = next.is_some_and(|n| n.contains("mod ") && n.ends_with('{'));
        if t == "#[cfg(test)]" && test_block {
            skip_depth = Some(0);
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(strip_comment(line));
        out.push('\n');
    }
    out
}

/// `line` without a trailing `// comment` (outside a string literal).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_str = false;
    for i in 0..bytes.len() {
        match bytes[i] {
            b'"' if i == 0 || bytes[i - 1] != b'\\' => in_str = !in_str,
            b'/' if !in_str && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Expands a `use` tree (`super::{a, b::{c, d}}`) into whole paths.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let (Some(open), Some(close)) = (tree.find('{'), tree.rfind('}')) else { return vec![tree] };
    if close < open {
        return vec![tree];
    }
    let prefix = &tree[..open];
    let inner = &tree[open + 1..close];
    // Split the inside at top-level commas.
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).flat_map(|p| expand(&format!("{prefix}{p}"))).collect()
}

/// Every path the code names through `crate::`, `super::` or `self::`.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` declarations, braces expanded.
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let tail = &rest[at + 4..];
        let end = tail.find(';').unwrap_or(tail.len());
        let ours = ["crate::", "super::", "self::"].iter().any(|p| tail.starts_with(p));
        if ours && before.is_none_or(|c| c.is_whitespace() || c == '{' || c == '}') {
            out.extend(expand(&tail[..end]));
        }
        rest = &tail[end.min(tail.len())..];
    }
    // Paths written inline.
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0
                && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':')
            {
                continue;
            }
            // `pub(in crate::a::b)` names where an item is visible, not an import.
            if code[..at].trim_end().ends_with("(in") {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            out.push(code[at..end].trim_end_matches(':').to_owned());
        }
    }
    out
}

/// The module a path written in `module` names: the longest prefix that is a module of
/// the crate.
fn resolve(path: &str, module: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<&str> = if module.is_empty() { Vec::new() } else { module.split("::").collect() };
    match segs.first().copied() {
        Some("crate") => {
            base.clear();
            segs.remove(0);
        }
        Some("self") => {
            segs.remove(0);
        }
        Some("super") => {
            while segs.first() == Some(&"super") {
                segs.remove(0);
                base.pop();
            }
        }
        _ => return None,
    }
    let mut full: Vec<&str> = base;
    full.extend(segs);
    (0..=full.len()).rev().map(|n| full[..n].join("::")).find(|m| modules.contains(m))
}

/// The layer of `module`: that of the longest entry naming it or an ancestor.
fn layer_of(module: &str, layers: &[(&str, &[&str])]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, (_, entries)) in layers.iter().enumerate() {
        for e in *entries {
            let matches = module == *e || module.starts_with(&format!("{e}::"));
            if matches && best.is_none_or(|(len, _)| e.len() > len) {
                best = Some((e.len(), i));
            }
        }
    }
    best.map(|(_, i)| i)
}

/// The child modules a `mod.rs` names by a bare path (`worker::run`, `use worker::Args`):
/// a parent that uses its child this way imports it, so a child importing the parent back
/// closes a circle.
fn children_named(code: &str, module: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let prefix = if module.is_empty() { String::new() } else { format!("{module}::") };
    let children = modules
        .iter()
        .filter_map(|m| m.strip_prefix(&prefix))
        .filter(|rest| !rest.is_empty() && !rest.contains("::"));
    let bytes = code.as_bytes();
    let mut out = BTreeSet::new();
    for child in children {
        let needle = format!("{child}::");
        let named = code.match_indices(&needle).any(|(at, _)| {
            at == 0
                || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':')
        });
        if named {
            out.insert(format!("{prefix}{child}"));
        }
    }
    out
}

/// The imports between a crate's modules: module → the modules it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files: Vec<(String, PathBuf)> =
        files(src).into_iter().filter_map(|f| module_of(src, &f).map(|m| (m, f))).collect();
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut g = BTreeMap::new();
    for (module, file) in &files {
        let text = code(&std::fs::read_to_string(file).unwrap());
        let mut deps: BTreeSet<String> = paths(&text)
            .iter()
            .filter_map(|p| resolve(p, module, &modules))
            .filter(|d| d != module)
            .collect();
        // A parent: `mod.rs`, or `name.rs` beside its children's folder `name/`.
        // A parent: `mod.rs`, or `name.rs` beside its children's folder `name/`.
        if file.file_name().is_some_and(|n| n == "mod.rs") || file.with_extension("").is_dir() {
            deps.extend(children_named(&text, module, &modules));
        }
        g.insert(module.clone(), deps);
    }
    g
}

/// What breaks the layering of the crate at `src`: upward imports, modules in no layer,
/// imports of the crate root's re-exports.
fn upward(src: &Path, layers: &[(&str, &[&str])]) -> Vec<String> {
    let g = graph(src);
    let mut problems = Vec::new();
    for (module, deps) in &g {
        if module.is_empty() {
            continue; // the crate root declares the modules and re-exports for users
        }
        let Some(mine) = layer_of(module, layers) else {
            problems.push(format!("{module} is in no layer"));
            continue;
        };
        for d in deps {
            if d.is_empty() {
                problems.push(format!("{module} imports from the crate root (import the module instead)"));
                continue;
            }
            match layer_of(d, layers) {
                Some(theirs) if theirs > mine => problems.push(format!(
                    "{module} ({}) imports {d} ({}), a higher layer",
                    layers[mine].0, layers[theirs].0
                )),
                _ => {}
            }
        }
    }
    problems
}

/// The circles among the crate's modules (strongly connected sets of more than one).
fn circles(src: &Path) -> Vec<Vec<String>> {
    let g = graph(src);
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(m) = todo.pop() {
            for d in g.get(&m).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        g.keys().filter(|m| !m.is_empty()).map(|m| (m, reach(m))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for (m, r) in &reaches {
        if !r.contains(*m) || out.iter().any(|c| c.contains(m)) {
            continue;
        }
        let circle: Vec<String> = reaches
            .iter()
            .filter(|(o, ro)| r.contains(**o) && ro.contains(*m))
            .map(|(o, _)| (*o).clone())
            .collect();
        out.push(circle);
    }
    out
}

#[test]
fn no_module_imports_a_higher_layer() {
    for (krate, layers) in [("server", RINGECHO), ("loadgen", RINGLOAD)] {
        let problems = upward(&root().join(krate).join("src"), layers);
        assert!(problems.is_empty(), "{krate}:\n{}", problems.join("\n"));
    }
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    for krate in ["server", "loadgen"] {
        let found = circles(&root().join(krate).join("src"));
        assert!(found.is_empty(), "{krate}: circles {found:?}");
    }
}

/// The docs quote the layer lists exactly.
#[test]
fn the_architecture_doc_quotes_the_layers() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    for (krate, layers) in [("ringecho", RINGECHO), ("ringload", RINGLOAD)] {
        let quote = format!("```text layers:{krate}\n{}```", quoted(layers));
        assert!(doc.contains(&quote), "docs/ARCHITECTURE.md should quote {krate}'s layers as:\n{quote}");
    }
}

/// The docs' module map names every source file, and only those.
#[test]
fn the_module_map_lists_every_file() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let start = doc.find("```text module-map").expect("a ```text module-map block");
    let block = &doc[start..];
    let block = &block[block.find('\n').unwrap() + 1..];
    let block = &block[..block.find("```").unwrap()];
    // Each line: indentation, a name (`dir/` or `file.rs`), then prose. A directory's
    // entries are indented below it.
    let mut listed = BTreeSet::new();
    let mut dirs: Vec<(usize, String)> = Vec::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let indent = line.len() - line.trim_start().len();
        let name = line.split_whitespace().next().unwrap();
        while dirs.last().is_some_and(|(i, _)| *i >= indent) {
            dirs.pop();
        }
        let prefix: String = dirs.iter().map(|(_, d)| d.as_str()).collect();
        if name.ends_with('/') {
            dirs.push((indent, name.to_owned()));
        } else if name.ends_with(".rs") {
            listed.insert(format!("{prefix}{name}"));
        }
    }
    let mut actual = BTreeSet::new();
    for krate in ["server", "loadgen"] {
        let src = root().join(krate).join("src");
        for f in files(&src) {
            let rel = f.strip_prefix(root()).unwrap().to_str().unwrap().to_owned();
            let name = f.file_name().unwrap().to_str().unwrap();
            if !matches!(name, "tests.rs" | "testing.rs") {
                actual.insert(rel);
            }
        }
    }
    let missing: Vec<&String> = actual.difference(&listed).collect();
    let stale: Vec<&String> = listed.difference(&actual).collect();
    assert!(missing.is_empty() && stale.is_empty(), "not in the map: {missing:?}\nno such file: {stale:?}");
}

#[test]
fn the_checks_can_fail() {
    // An upward import, a circle, a root import and a module in no layer, in a crate
    // made up for the test.
    let dir = std::env::temp_dir().join(format!("architecture-test-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("low")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod low;\npub mod high;\npub use high::Thing;\n").unwrap();
    std::fs::write(src.join("low/mod.rs"), "mod part;\nuse crate::high::Thing; // up\n").unwrap();
    std::fs::write(src.join("low/part.rs"), "use super::super::Thing;\n/// crate::stray::x in a comment\n")
        .unwrap();
    std::fs::write(src.join("high.rs"), "use crate::low::{self};\npub struct Thing;\n").unwrap();
    std::fs::write(src.join("stray.rs"), "").unwrap();
    let layers: &[(&str, &[&str])] = &[("low", &["low"]), ("high", &["high"])];
    let problems = upward(&src, layers);
    assert!(problems.iter().any(|p| p.starts_with("low (low) imports high (high)")), "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with("low::part imports from the crate root")), "{problems:?}");
    assert!(problems.iter().any(|p| p == "stray is in no layer"), "{problems:?}");
    assert_eq!(circles(&src), [vec!["high".to_string(), "low".to_string()]]);
    assert_eq!(expand("super::{a, b::{c, d}}"), ["super::a", "super::b::c", "super::b::d"]);
    let _ = std::fs::remove_dir_all(&dir);
}
