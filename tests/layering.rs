//! Dependencies run one way: a module imports from its own layer or a lower one, never
//! from a layer above it. This test reads every file under `src/` (test code left out:
//! the item after a `#[cfg(test)]`), finds each reference to a top-level module
//! (`crate::x`, `crate::{x, y}`, `super::` that climbs to the crate root, `optdesk::x`)
//! and fails naming the file, the line and the import that goes up.

use std::path::Path;

/// The layers, lowest first. A new top-level module (`src/x.rs` or `src/x/`) goes here;
/// the test refuses one that is missing.
const LAYERS: &[(&str, u8)] = &[
    // Plain domain types, and text helpers.
    ("model", 0),
    ("text", 0),
    ("csvfile", 0),
    // Time, configuration, reference files, the HTTP client.
    ("calendar", 1),
    ("clock", 1),
    ("config", 1),
    ("refdata", 1),
    ("net", 1),
    ("failpoint", 1),
    // Math on prices and series.
    ("pricing", 2),
    ("analytics", 2),
    // Orders, margin, settlement, the risk gate, the strategies (no I/O).
    ("trading", 3),
    ("store", 4),
    // Adapters: market data, brokers, and the report (read from the store, rendered,
    // sent), which the email_report job uses.
    ("sources", 5),
    ("broker", 5),
    ("ibkr", 5),
    ("report", 5),
    // The jobs and the runner.
    ("jobs", 6),
    // What drives or observes the runner.
    ("schedule", 7),
    ("backtest", 7),
    ("serve", 7),
    ("remote", 7),
    // The edge.
    ("calc", 8),
    ("selftest", 8),
    ("cli", 8),
    ("main", 8),
    ("lib", 8),
    // Named fixtures for the tests.
    ("testkit", 8),
];

/// Items of the crate root (`src/lib.rs`) that any layer may use: constants that
/// depend on nothing.
const ROOT_ITEMS: &[&str] = &["VERSION"];

/// Upward imports that exist and wait for their own change: (file, imported module,
/// why). The test also fails when one of them has gone, so that this list only shrinks.
const KNOWN_UPWARD: &[(&str, &str, &str)] = &[];

fn layer_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The module path of a file under `src/`: `jobs/correlation.rs` → [jobs, correlation],
/// `jobs/mod.rs` → [jobs], `lib.rs` and `main.rs` → [] (the crate root).
fn module_path(rel: &str) -> Vec<String> {
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod") || parts == ["lib"] || parts == ["main"] {
        parts.pop();
    }
    parts
}

/// The top-level module a file belongs to, for its layer: `main` and `lib` for the roots.
fn top_module(rel: &str) -> String {
    let first = rel.split('/').next().unwrap_or(rel);
    first.strip_suffix(".rs").unwrap_or(first).to_string()
}

/// The source with comments and the contents of string and char literals blanked
/// (newlines kept), so that what is left is code and byte offsets still give lines.
fn mask(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let prev_ident = i > 0 && is_ident(b[i - 1]);
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            // Raw strings: r"…", r#"…"#, br#"…"#.
            b'r' if !prev_ident
                || (i == 1 && b[0] == b'b')
                || (i >= 2 && b[i - 1] == b'b' && !is_ident(b[i - 2])) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let body = i + 2 + hashes;
                let mut close = vec![b'"'];
                close.extend(std::iter::repeat_n(b'#', hashes));
                let end = b[body..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |p| body + p);
                blank(&mut out, body, end);
                i = end + close.len();
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i + 1, j);
                i = j + 1;
            }
            // A char literal ('x', '\n', 'σ'); a lifetime or a label is left alone.
            b'\'' => {
                let end = if b.get(i + 1) == Some(&b'\\') {
                    // The escaped character itself may be a quote: '\''.
                    b.get(i + 3..)
                        .and_then(|rest| rest.iter().position(|&c| c == b'\''))
                        .map(|p| i + 3 + p)
                } else {
                    let len = src[i + 1..].chars().next().map_or(0, char::len_utf8);
                    (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 1 + len)
                };
                match end {
                    Some(end) => {
                        blank(&mut out, i + 1, end);
                        i = end + 1;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("only whole characters are blanked")
}

/// Blank test-only code: the item after each `#[cfg(test)]` (a `mod tests { … }`, a
/// `use`, a function), or the whole file under `#![cfg(test)]`.
fn without_test_code(masked: &str) -> String {
    if masked.contains("#![cfg(test)]") {
        return masked.replace(|c| c != '\n', " ");
    }
    let b = masked.as_bytes();
    let mut out = b.to_vec();
    let mut from = 0;
    while let Some(p) = masked[from..].find("#[cfg(test)]") {
        let start = from + p;
        let mut i = start + "#[cfg(test)]".len();
        // The item ends at its first `;` or with the block its first `{` opens.
        let mut depth = 0i32;
        let mut in_block = false;
        while i < b.len() {
            match b[i] {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b'{' => {
                    depth += 1;
                    in_block = true;
                }
                b'}' => {
                    depth -= 1;
                    if in_block && depth == 0 {
                        i += 1;
                        break;
                    }
                }
                b';' if depth == 0 && !in_block => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        for c in &mut out[start..i.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = i.min(b.len());
    }
    String::from_utf8(out).expect("ASCII blanks only")
}

/// One reference to a top-level module (or a root item) found in a file.
#[derive(Debug, PartialEq)]
struct Import {
    line: usize,
    module: String,
}

fn ident_at(code: &[u8], mut i: usize) -> (String, usize) {
    while i < code.len() && code[i].is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    while i < code.len() && (code[i].is_ascii_alphanumeric() || code[i] == b'_' || code[i] == b'*')
    {
        i += 1;
    }
    (String::from_utf8_lossy(&code[start..i]).into_owned(), i)
}

/// After `::` at `i`: the names it brings in, `x` or each first name of `{x::…, y}`.
fn names_after(code: &[u8], i: usize) -> Vec<String> {
    let mut j = i;
    while j < code.len() && code[j].is_ascii_whitespace() {
        j += 1;
    }
    if code.get(j) != Some(&b'{') {
        let (name, _) = ident_at(code, j);
        return vec![name];
    }
    let mut names = Vec::new();
    let (mut depth, mut item_start) = (0, true);
    for (k, &c) in code.iter().enumerate().skip(j) {
        match c {
            b'{' => {
                depth += 1;
                if depth == 1 {
                    item_start = true;
                    continue;
                }
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => {
                item_start = true;
                continue;
            }
            _ => {}
        }
        if depth == 1 && item_start && !c.is_ascii_whitespace() {
            names.push(ident_at(code, k).0);
            item_start = false;
        }
    }
    names
}

/// `::` (spaces allowed around it) at `i`: the offset after it.
fn path_sep(code: &[u8], mut i: usize) -> Option<usize> {
    while i < code.len() && code[i].is_ascii_whitespace() {
        i += 1;
    }
    (code.get(i) == Some(&b':') && code.get(i + 1) == Some(&b':')).then_some(i + 2)
}

/// Every reference in `code` (masked, test code removed) from a file at `module` to a
/// top-level module or a root item: `crate::x`, `$crate::x`, `optdesk::x`, `crate::{x, y}`,
/// and `super::…` that climbs to the crate root. References inside the file's own
/// top-level module are left out.
fn imports(module: &[String], code: &str) -> Vec<Import> {
    let b = code.as_bytes();
    let line_of = |i: usize| code[..i].matches('\n').count() + 1;
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if !boundary || !(b[i].is_ascii_alphabetic()) {
            i += 1;
            continue;
        }
        let (word, end) = ident_at(b, i);
        let names = match word.as_str() {
            "crate" | "optdesk" => path_sep(b, end).map(|j| names_after(b, j)),
            "super" => {
                // Climb: each `super` drops one level of the file's module path.
                let (mut up, mut j) = (1, path_sep(b, end));
                while let Some(k) = j {
                    let (next, after) = ident_at(b, k);
                    if next != "super" {
                        break;
                    }
                    up += 1;
                    j = path_sep(b, after);
                }
                match j {
                    Some(k) if up >= module.len() => Some(names_after(b, k)),
                    _ => None,
                }
            }
            _ => None,
        };
        for name in names.into_iter().flatten() {
            if name.is_empty() || name == "self" || module.first() == Some(&name) {
                continue;
            }
            out.push(Import {
                line: line_of(i),
                module: name,
            });
        }
        i = end.max(i + 1);
    }
    out
}

/// What is wrong with one file (`rel` is its path under `src/`): each import that goes
/// up a layer, and modules missing from the layer table.
fn check_file(rel: &str, source: &str) -> Vec<(String, String)> {
    let file = format!("src/{rel}");
    let top = top_module(rel);
    let Some(own) = layer_of(&top) else {
        return vec![(
            String::new(),
            format!("{file}: top-level module '{top}' is not in the layer table; add it to the layer table (LAYERS in tests/layering.rs)"),
        )];
    };
    let code = without_test_code(&mask(source));
    let lines: Vec<&str> = source.lines().collect();
    let mut out = Vec::new();
    for imp in imports(&module_path(rel), &code) {
        let text = lines.get(imp.line - 1).map_or("", |l| l.trim());
        if ROOT_ITEMS.contains(&imp.module.as_str()) {
            continue;
        }
        match layer_of(&imp.module) {
            None => out.push((
                imp.module.clone(),
                format!(
                    "{file}:{}: '{}' is not in the layer table; add it to the layer table (LAYERS in tests/layering.rs), or to ROOT_ITEMS if it is a constant of lib.rs: {text}",
                    imp.line, imp.module
                ),
            )),
            Some(l) if l > own => out.push((
                imp.module.clone(),
                format!(
                    "{file}:{}: {top} (layer {own}) imports {} (layer {l}), a layer above it: {text}",
                    imp.line, imp.module
                ),
            )),
            Some(_) => {}
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 20,
        "found only {} files in {}",
        files.len(),
        src.display()
    );
    let mut failures = Vec::new();
    let mut known_seen = vec![false; KNOWN_UPWARD.len()];
    for path in &files {
        let rel = path
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let source = std::fs::read_to_string(path).expect("a readable source file");
        for (module, message) in check_file(&rel, &source) {
            let file = format!("src/{rel}");
            match KNOWN_UPWARD
                .iter()
                .position(|(f, m, _)| *f == file && *m == module)
            {
                Some(k) => known_seen[k] = true,
                None => failures.push(message),
            }
        }
    }
    for ((file, module, _), seen) in KNOWN_UPWARD.iter().zip(&known_seen) {
        if !seen {
            failures.push(format!(
                "{file} no longer imports {module}: remove it from KNOWN_UPWARD in tests/layering.rs"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "imports that go up a layer (the layers are LAYERS in tests/layering.rs):\n{}",
        failures.join("\n")
    );
}

// The scanner itself: each of these must find what it is shown.

#[test]
fn an_upward_import_is_reported_with_file_line_and_text() {
    let src = "use crate::model::Leg;\n\nuse crate::jobs::RunRecord;\n";
    let f = check_file("trading/x.rs", src);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        f[0].1,
        "src/trading/x.rs:3: trading (layer 3) imports jobs (layer 6), a layer above it: use crate::jobs::RunRecord;"
    );
}

#[test]
fn grouped_paths_super_climbs_and_macros_are_followed() {
    let at = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let found = |module: &[String], src: &str| -> Vec<String> {
        imports(module, &without_test_code(&mask(src)))
            .into_iter()
            .map(|i| i.module)
            .collect()
    };
    assert_eq!(
        found(
            &at(&["store"]),
            "use crate::{model::Leg, jobs::{self, Status}};"
        ),
        ["model", "jobs"]
    );
    // From src/trading/x.rs, `super` is trading; `super::super` is the crate root.
    assert!(found(&at(&["trading", "x"]), "use super::risk::Proposal;").is_empty());
    assert_eq!(
        found(&at(&["trading", "x"]), "use super :: super::jobs::Job;"),
        ["jobs"]
    );
    // From src/jobs/mod.rs, `super` is already the root.
    assert_eq!(
        found(&at(&["jobs"]), "let v = super::VERSION;"),
        ["VERSION"]
    );
    assert_eq!(
        found(
            &at(&["store"]),
            "macro_rules! m { () => { $crate::cli::main() } }"
        ),
        ["cli"]
    );
    assert_eq!(found(&[], "fn main() { optdesk::cli::main() }"), ["cli"]);
    // Its own top-level module is not an import.
    assert!(found(&at(&["jobs", "a"]), "use crate::jobs::Job;").is_empty());
}

#[test]
fn comments_strings_visibility_and_test_code_are_not_imports() {
    let src = r##"//! See [`crate::cli`].
/// Sent by [`crate::report::alerts`]. /* crate::jobs */
pub(crate) fn f() -> &'static str {
    let _c = '"';
    let (_q, _l): (char, &'static str) = ('\'', "crate::cli");
    let _s = "use crate::jobs::X; \" crate::cli";
    let _r = r#"crate::cli "quoted""#;
    "crate::schedule"
}
#[cfg(test)]
use crate::jobs::Only;
#[cfg(test)]
mod tests {
    use crate::cli::Cli;
    fn g() { let _ = "}"; let _ = '}'; }
}
use crate::report::Up;
"##;
    let f = check_file("store/x.rs", src);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].1
            .starts_with("src/store/x.rs:17: store (layer 4) imports report (layer 5)"),
        "{}",
        f[0].1
    );
}

#[test]
fn a_module_missing_from_the_table_fails_and_says_to_add_it() {
    let f = check_file("warehouse/mod.rs", "use crate::model::Leg;\n");
    assert!(f[0]
        .1
        .contains("'warehouse' is not in the layer table; add it to the layer table"));
    let f = check_file("jobs/x.rs", "use crate::warehouse::Bin;\n");
    assert!(
        f[0].1
            .contains("src/jobs/x.rs:1: 'warehouse' is not in the layer table"),
        "{f:?}"
    );
    assert_eq!(top_module("main.rs"), "main");
    assert_eq!(module_path("jobs/mod.rs"), ["jobs"]);
    assert!(module_path("lib.rs").is_empty());
}
