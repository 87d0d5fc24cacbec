//! The agent crate's modules form a strict stack: no module reaches, directly or through
//! others, back to a module that reaches it. Read from the source: every `crate::` and
//! `super::` path outside test code is an edge from its file's module to the deepest module
//! the path names. Checked at two grains: files, and the top-level modules (`bgp`, `kube`,
//! `agent`, …), where a cycle means the folders cannot be layered.
//!
//! And the house rule that each file's first doc line says `[pure]` or `[I/O]` is kept, with
//! its consequence: a `[pure]` file imports only `[pure]` files, so a pure core can never do
//! I/O by way of a helper.
//!
//! `cargo test --test import_graph -- --nocapture` prints the layers, top first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<(String, String)>>;

/// Every `.rs` file under `dir` with its module path ("" for lib.rs/main.rs, "bgp::fsm", …),
/// leaving out test-only files (`*_tests.rs`, `tests.rs`, `tests/` folders, which `#[path]` or
/// `mod tests` pull in under `#[cfg(test)]`).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.to_string_lossy().ends_with("_tests.rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src).expect("under src").with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
                parts.clear();
            }
            (parts.join("::"), p)
        })
        .collect()
}

/// The code of a file without comments, string literals and its `#[cfg(test)]` tail.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

fn ident_start(c: char) -> bool {
    c.is_ascii_lowercase() || c == '_'
}

/// The module paths a file's code names: `crate::a::b::Item`, `crate::a::{b, c::D}`,
/// `super::x` (resolved against `module`), one level of braces.
fn references(module: &str, code: &str) -> Vec<Vec<String>> {
    let mut refs = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let text: String = bytes.iter().collect();
    for (anchor, base) in [("crate::", Vec::new()), ("super::", parent_of(module))] {
        let mut from = 0;
        while let Some(i) = text[from..].find(anchor) {
            let start = from + i;
            from = start + anchor.len();
            if start > 0 {
                let before = text[..start].chars().last().unwrap_or(' ');
                if before.is_alphanumeric() || before == '_' || before == ':' {
                    continue; // `self::crate::`, `foo_crate::` — not a path start
                }
            }
            let mut path = base.clone();
            let rest = &text[from..];
            let mut j = 0;
            let rest_chars: Vec<char> = rest.chars().collect();
            // Segments: lowercase identifiers followed by `::`.
            loop {
                let seg_start = j;
                while j < rest_chars.len()
                    && (rest_chars[j].is_ascii_alphanumeric() || rest_chars[j] == '_')
                {
                    j += 1;
                }
                let seg: String = rest_chars[seg_start..j].iter().collect();
                if seg.is_empty() || !seg.chars().next().is_some_and(ident_start) {
                    break;
                }
                path.push(seg);
                if rest_chars.get(j) == Some(&':') && rest_chars.get(j + 1) == Some(&':') {
                    j += 2;
                    if rest_chars.get(j) == Some(&'{') {
                        let close = rest_chars[j..]
                            .iter()
                            .position(|c| *c == '}')
                            .map_or(rest_chars.len(), |k| j + k);
                        let inner: String = rest_chars[j + 1..close].iter().collect();
                        for item in inner.split(',') {
                            let first: String = item
                                .trim()
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect();
                            let mut p = path.clone();
                            if first.chars().next().is_some_and(ident_start) && first != "self" {
                                p.push(first);
                            }
                            refs.push(p);
                        }
                        path.clear();
                        break;
                    }
                } else {
                    break;
                }
            }
            if !path.is_empty() {
                refs.push(path);
            }
        }
    }
    refs
}

fn parent_of(module: &str) -> Vec<String> {
    let mut parts: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    parts.pop();
    parts
}

/// file module → the modules it names (deepest existing prefix of each path), with the first
/// line naming each, for the failure message. Edges to a module's own ancestors are left out:
/// a `mod.rs` declares its children, and the children naming an item of it is not a layer.
fn file_graph(src: &Path) -> Graph {
    let mods = modules(src);
    let mut graph = Graph::new();
    for (module, path) in &mods {
        let text = std::fs::read_to_string(path).expect("read source");
        let code = code(&text);
        let mut edges = BTreeSet::new();
        for mut r in references(module, &code) {
            while !r.is_empty() && !mods.contains_key(&r.join("::")) {
                r.pop();
            }
            let target = r.join("::");
            let ancestor = target.is_empty()
                || module == &target
                || module.starts_with(&format!("{target}::"));
            if !ancestor {
                let line = text
                    .lines()
                    .position(|l| {
                        l.contains(&format!("crate::{target}"))
                            || l.contains(target.rsplit("::").next().unwrap_or(&target))
                    })
                    .map_or(0, |n| n + 1);
                edges.insert((target, format!("{}:{line}", path.display())));
            }
        }
        graph.insert(module.clone(), edges);
    }
    graph
}

/// The same graph between top-level modules.
fn top_graph(files: &Graph) -> Graph {
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_owned();
    let mut g = Graph::new();
    for (m, edges) in files {
        let entry = g.entry(top(m)).or_default();
        for (t, at) in edges {
            if top(t) != top(m) {
                entry.insert((top(t), at.clone()));
            }
        }
    }
    g
}

/// Layers from the top (nothing imports layer 0's modules from below), or the modules left on
/// cycles.
fn layers(g: &Graph) -> Result<Vec<Vec<String>>, Vec<String>> {
    let mut remaining: BTreeMap<&str, BTreeSet<&str>> = g
        .iter()
        .map(|(m, e)| (m.as_str(), e.iter().map(|(t, _)| t.as_str()).collect()))
        .collect();
    let mut out = Vec::new();
    while !remaining.is_empty() {
        // Modules nobody left imports: the top of what remains.
        let imported: BTreeSet<&str> = remaining.values().flatten().copied().collect();
        let top: Vec<&str> = remaining
            .keys()
            .copied()
            .filter(|m| !imported.contains(m))
            .collect();
        if top.is_empty() {
            // Peel what imports nothing left too: what stays is the cycles and what links them.
            loop {
                let sinks: Vec<&str> = remaining
                    .iter()
                    .filter(|(_, e)| e.iter().all(|t| !remaining.contains_key(t)))
                    .map(|(m, _)| *m)
                    .collect();
                if sinks.is_empty() {
                    break;
                }
                for m in sinks {
                    remaining.remove(m);
                }
            }
            return Err(remaining.keys().map(|m| (*m).to_owned()).collect());
        }
        for m in &top {
            remaining.remove(m);
        }
        out.push(top.into_iter().map(str::to_owned).collect());
    }
    Ok(out)
}

/// One cycle through the modules left, with the line that makes each edge.
fn a_cycle(g: &Graph, left: &[String]) -> String {
    let left: BTreeSet<&str> = left.iter().map(String::as_str).collect();
    let mut path: Vec<(String, String)> = Vec::new();
    let mut at = left
        .iter()
        .next()
        .map(|s| (*s).to_owned())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    while seen.insert(at.clone()) {
        let Some((next, line)) = g[&at]
            .iter()
            .find(|(t, _)| left.contains(t.as_str()))
            .cloned()
        else {
            break;
        };
        path.push((at.clone(), line));
        at = next;
    }
    let start = path.iter().position(|(m, _)| *m == at).unwrap_or(0);
    path[start..]
        .iter()
        .map(|(m, line)| format!("  {m}  ({line})"))
        .chain(std::iter::once(format!("  → back to {at}")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn check(grain: &str, g: &Graph) {
    match layers(g) {
        Ok(layers) => {
            eprintln!("{grain}: {} layers, top first", layers.len());
            for (i, l) in layers.iter().enumerate() {
                eprintln!("  {i:>2}: {}", l.join(", "));
            }
        }
        Err(left) => panic!(
            "the {grain} import graph has a cycle among {left:?}; one of them:\n{}",
            a_cycle(g, &left)
        ),
    }
}

/// The agent's sources; `IMPORT_GRAPH_SRC` points the checks at another tree (to see them fail
/// on an older checkout).
fn src() -> PathBuf {
    std::env::var_os("IMPORT_GRAPH_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn top_level_modules_form_a_strict_stack() {
    check("top-level module", &top_graph(&file_graph(&src())));
}

#[test]
fn files_form_a_strict_stack() {
    check("file", &file_graph(&src()));
}

/// `Some(true)` for `[pure]`, `Some(false)` for `[I/O]`, `None` when the first doc line says
/// neither.
fn purity(path: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(path).expect("read source");
    let first = text.lines().find(|l| l.starts_with("//!"))?;
    if first.contains("[pure]") {
        Some(true)
    } else if first.contains("[I/O]") {
        Some(false)
    } else {
        None
    }
}

#[test]
fn every_file_says_pure_or_io_and_pure_files_import_only_pure_ones() {
    let mods = modules(&src());
    let untagged: Vec<String> = mods
        .values()
        .filter(|p| purity(p).is_none())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        untagged.is_empty(),
        "files whose first doc line says neither [pure] nor [I/O]: {untagged:#?}"
    );
    let mut impure_imports = Vec::new();
    for (module, edges) in file_graph(&src()) {
        if purity(&mods[&module]) != Some(true) {
            continue;
        }
        for (target, at) in edges {
            if purity(&mods[&target]) == Some(false) {
                impure_imports.push(format!("{module} imports [I/O] {target}  ({at})"));
            }
        }
    }
    assert!(
        impure_imports.is_empty(),
        "[pure] files importing [I/O] ones:\n{}",
        impure_imports.join("\n")
    );
}

#[test]
fn the_reader_finds_the_imports_it_must() {
    // The check is only as good as its reading of paths.
    let code = code(
        "use crate::bgp::{fsm::Session, wire};\nuse super::sibling::Thing;\n\
         // crate::in_a_comment\nlet s = \"crate::in_a_string\";\nfn f() { crate::kube::ipam::run() }\n",
    );
    let refs = references("a::b", &code);
    let want: Vec<Vec<String>> = [
        vec!["bgp", "fsm"],
        vec!["bgp", "wire"],
        vec!["kube", "ipam", "run"],
        vec!["a", "sibling"],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(str::to_owned).collect())
    .collect();
    for w in &want {
        assert!(refs.contains(w), "{w:?} not in {refs:?}");
    }
    assert!(
        !refs.iter().flatten().any(|s| s.starts_with("in_a_")),
        "{refs:?}"
    );
    // A cycle is found and shown.
    let mut g = Graph::new();
    g.insert("x".into(), [("y".into(), "x.rs:1".into())].into());
    g.insert("y".into(), [("x".into(), "y.rs:2".into())].into());
    assert_eq!(layers(&g), Err(vec!["x".to_owned(), "y".to_owned()]));
}
