//! A test that fails on any import circle between the crate's modules: a module that reaches,
//! directly or through others, one that reaches it back (`backend/mod.rs` → `error.rs` →
//! `backend/mod.rs`) cannot be read, tested or changed on its own.
//!
//! Modules are files. The graph is read from the source text: every `crate::…`, `super::…`
//! and `self::…` path, and a module's relative paths into its own submodules, resolved to the
//! deepest module the path names. A module's use of its ancestors is not an edge: a parent and
//! the children it declares are one unit (`backend/aws/mod.rs` implements the traits of
//! `backend/mod.rs`, which opens it), but a circle that leaves the unit and comes back is one.
//! So a provider's leaf (`backend/aws/settings.rs`) may serve `config/` while `backend/` uses
//! `config/`, as long as the leaf does not reach back into what reaches it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Why one file depends on another: the file, and the path it names the other by.
#[derive(Debug, Clone)]
struct Edge {
    file: String,
    path: String,
}

/// File → the files of the modules it names, each with the path that names it.
type Graph = BTreeMap<String, BTreeMap<String, Edge>>;

/// The module path of a source file under `src/`: `backend/aws/mod.rs` → `[backend, aws]`;
/// the crate roots (`lib.rs`, `main.rs`) have none.
fn module_path(file: &str) -> Option<Vec<String>> {
    let stem = file.strip_suffix(".rs")?;
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        return None;
    }
    Some(parts)
}

/// The source with comments, string and char literals blanked out, so only code is read.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && !chars.get(i.wrapping_sub(1)).is_some_and(|p| is_ident(*p))
        {
            // A raw string: `r"…"`, `r#"…"#`.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|h| chars.get(j + h) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    _ => j += 1,
                }
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal (`'"'`, `'\n'`), not a lifetime.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The identifier at `at`, skipping whitespace first, and where it ends.
fn ident_at(code: &[char], mut at: usize) -> Option<(String, usize)> {
    while code.get(at).is_some_and(|c| c.is_whitespace()) {
        at += 1;
    }
    let start = at;
    while code.get(at).is_some_and(|c| is_ident(*c)) {
        at += 1;
    }
    (at > start).then(|| (code[start..at].iter().collect(), at))
}

/// Whether `::` follows at `at` (after whitespace), and where it ends.
fn path_sep_at(code: &[char], mut at: usize) -> Option<usize> {
    while code.get(at).is_some_and(|c| c.is_whitespace()) {
        at += 1;
    }
    (code.get(at) == Some(&':') && code.get(at + 1) == Some(&':')).then_some(at + 2)
}

/// Every path the path or use tree at `at` names, each as its segments after `prefix`:
/// `a::b` → `[a, b]`, `a::{b::c, d}` → `[a, b, c]`, `[a, d]`.
fn paths_at(code: &[char], at: usize, prefix: &[String]) -> Vec<Vec<String>> {
    let mut at = at;
    while code.get(at).is_some_and(|c| c.is_whitespace()) {
        at += 1;
    }
    if code.get(at) == Some(&'{') {
        let mut paths = Vec::new();
        let mut depth = 0;
        let mut item = at + 1;
        for (i, &c) in code.iter().enumerate().skip(at) {
            match c {
                '{' => depth += 1,
                '}' | ',' if depth == 1 => {
                    paths.extend(paths_at(code, item, prefix));
                    item = i + 1;
                    if c == '}' {
                        break;
                    }
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        return paths;
    }
    let Some((segment, end)) = ident_at(code, at) else {
        return vec![prefix.to_vec()];
    };
    let mut path = prefix.to_vec();
    path.push(segment);
    match path_sep_at(code, end) {
        Some(next) => paths_at(code, next, &path),
        None => vec![path],
    }
}

/// The modules a file names outside itself: through `crate::…`, `super::…` and `self::…`
/// paths, and its own submodules through relative paths (`child::item`, `pub use child::*`),
/// each resolved to the deepest module the path reaches, with the path as written.
fn named_modules(
    module: &[String],
    source: &str,
    modules: &BTreeSet<Vec<String>>,
) -> BTreeMap<Vec<String>, String> {
    let code: Vec<char> = code_only(source).chars().collect();
    let mut found = BTreeMap::new();
    let mut i = 0;
    while i < code.len() {
        let starts_path =
            i == 0 || !(is_ident(code[i - 1]) || code[i - 1] == '$' || code[i - 1] == ':');
        let Some((word, end)) = starts_path.then(|| ident_at(&code, i)).flatten() else {
            i += 1;
            continue;
        };
        let Some(mut at) = path_sep_at(&code, end) else {
            i = end;
            continue;
        };
        let base: Vec<String> = match word.as_str() {
            "crate" => Vec::new(),
            "self" => module.to_vec(),
            "super" => {
                let mut up = 1;
                while let Some((next, next_end)) = ident_at(&code, at)
                    && next == "super"
                    && let Some(after) = path_sep_at(&code, next_end)
                {
                    up += 1;
                    at = after;
                }
                module[..module.len().saturating_sub(up)].to_vec()
            }
            _ => {
                // A relative path names a submodule only by the submodule's own name.
                let mut child = module.to_vec();
                child.push(word.clone());
                if !modules.contains(&child) {
                    i = end;
                    continue;
                }
                at = i;
                module.to_vec()
            }
        };
        for mut path in paths_at(&code, at, &base) {
            // `use crate::x::{self, …}` names `x` itself.
            if path.len() > base.len() && path.last().is_some_and(|s| s == "self") {
                path.pop();
            }
            let Some(target) = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|candidate| modules.contains(candidate))
            else {
                continue;
            };
            // A module's own items and its ancestors' are part of it, not an import: the
            // parent declares the child, and the child may use what the parent defines.
            if module.starts_with(&target) {
                continue;
            }
            let written = if word == "crate" || word == "super" || word == "self" {
                format!("{word}::{}", path[base.len()..].join("::"))
            } else {
                path[module.len()..].join("::")
            };
            found.entry(target).or_insert(written);
        }
        i = at.max(end);
    }
    found
}

/// The source file of a module, for messages.
fn file_of(module: &[String], files: &BTreeMap<Vec<String>, String>) -> String {
    files
        .get(module)
        .cloned()
        .unwrap_or_else(|| module.join("/"))
}

/// The import graph of the modules of the sources `(path under src/, text)`, by file.
fn graph<'a>(sources: impl IntoIterator<Item = (String, &'a str)>) -> Graph {
    let sources: Vec<(String, &str)> = sources.into_iter().collect();
    let files: BTreeMap<Vec<String>, String> = sources
        .iter()
        .filter_map(|(file, _)| Some((module_path(file)?, file.clone())))
        .collect();
    let modules: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut graph = Graph::new();
    for (file, text) in &sources {
        let Some(module) = module_path(file) else {
            continue;
        };
        let edges = graph.entry(file.clone()).or_default();
        for (target, path) in named_modules(&module, text, &modules) {
            edges.insert(
                file_of(&target, &files),
                Edge {
                    file: file.clone(),
                    path,
                },
            );
        }
    }
    graph
}

/// Every import circle, each as the files along it (first = last): the shortest one through
/// each file not yet in a circle found, so each tangle is named once.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut found = Vec::new();
    for start in graph.keys() {
        if seen.contains(start) {
            continue;
        }
        // The shortest way back to `start`, breadth first.
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.as_str()]);
        let mut back_from = None;
        while let Some(node) = queue.pop_front() {
            for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
                if next == start {
                    back_from = Some(node);
                    break;
                }
                if !previous.contains_key(next.as_str()) {
                    previous.insert(next, node);
                    queue.push_back(next);
                }
            }
            if back_from.is_some() {
                break;
            }
        }
        let Some(mut node) = back_from else {
            continue;
        };
        let mut way_back = Vec::new();
        while node != start {
            way_back.push(node.to_string());
            node = previous[node];
        }
        way_back.reverse();
        let cycle: Vec<String> = std::iter::once(start.clone())
            .chain(way_back)
            .chain(std::iter::once(start.clone()))
            .collect();
        seen.extend(cycle.iter().cloned());
        found.push(cycle);
    }
    found
}

/// A circle as a reader fixes it: each step with the path that takes it.
fn describe(graph: &Graph, cycle: &[String]) -> String {
    let steps: Vec<String> = cycle
        .windows(2)
        .map(|pair| {
            let edge = &graph[&pair[0]][&pair[1]];
            format!("  src/{} → src/{} (`{}`)", edge.file, pair[1], edge.path)
        })
        .collect();
    format!("import circle {}:\n{}", cycle.join(" → "), steps.join("\n"))
}

fn sources_under(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list `{}`: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources_under(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read `{}`: {e}", path.display()));
            let relative = path.strip_prefix(root).unwrap_or(&path);
            out.push((relative.to_string_lossy().replace('\\', "/"), text));
        }
    }
}

#[test]
fn no_import_circle_between_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    sources_under(&src, &src, &mut sources);
    let graph = graph(sources.iter().map(|(f, t)| (f.clone(), t.as_str())));
    assert!(
        graph.len() > 20,
        "read too few modules under `{}`",
        src.display()
    );
    let found: Vec<String> = cycles(&graph).iter().map(|c| describe(&graph, c)).collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The checker itself: edges come from use groups, `super::super` paths and a parent's
/// relative paths into its child, not from comments, strings or a child's use of its parent;
/// a circle is found and each of its steps named.
#[test]
fn circles_are_found_and_named() {
    let files = |c: &'static str| {
        graph([
            (
                "lib.rs".to_string(),
                "pub mod a; pub mod b; pub mod c; pub mod d;",
            ),
            (
                "a/mod.rs".to_string(),
                "mod inner;\npub use inner::*; use crate::{d, b::X, /* crate::c */ self::inner::W};",
            ),
            (
                "a/inner.rs".to_string(),
                "use super::super::d::Y; use super::Z;",
            ),
            (
                "b.rs".to_string(),
                "// crate::a\nfn f() { crate::c::g(\"crate::a\"); let q = '\"'; }",
            ),
            ("c.rs".to_string(), c),
            ("d.rs".to_string(), "pub struct Y;"),
        ])
    };
    let graph = files("use crate::a::inner::W;");
    assert!(
        graph["a/mod.rs"].contains_key("a/inner.rs"),
        "a parent's `inner::*`"
    );
    assert!(graph["a/mod.rs"].contains_key("d.rs"), "`crate::{{d, …}}`");
    assert!(
        graph["a/inner.rs"].contains_key("d.rs"),
        "`super::super::d`"
    );
    assert!(
        !graph["a/inner.rs"].contains_key("a/mod.rs"),
        "a child's use of its parent"
    );
    assert_eq!(
        graph["b.rs"].keys().collect::<Vec<_>>(),
        ["c.rs"],
        "comments and strings"
    );
    assert!(!graph.contains_key("lib.rs"));
    assert!(cycles(&graph).is_empty(), "{:?}", cycles(&graph));

    let graph = files("use crate::a::Z;");
    let found = cycles(&graph);
    assert_eq!(found, [["a/mod.rs", "b.rs", "c.rs", "a/mod.rs"]]);
    let text = describe(&graph, &found[0]);
    assert!(
        text.contains("src/a/mod.rs → src/b.rs (`crate::b::X`)"),
        "{text}"
    );
    assert!(
        text.contains("src/c.rs → src/a/mod.rs (`crate::a::Z`)"),
        "{text}"
    );
}

#[test]
fn a_graph_without_circles_passes() {
    let graph = graph([
        ("a.rs".to_string(), "use crate::b::X;"),
        ("b.rs".to_string(), "use crate::c::Y;"),
        ("c.rs".to_string(), "fn f() {}"),
    ]);
    assert!(cycles(&graph).is_empty());
}
