//! `--set name.key=value`: one key of a strategy file or a job file changed for one
//! backtest, without touching the files.
//!
//! * `<strategy>.<key>=v` sets `[params] <key>` of `jobs/strategies/<strategy>.toml`
//!   (`<strategy>.enabled=false` the file's `enabled`);
//! * `<job>.<table>.<key>=v` sets a key of `jobs/<job>.toml` by its path from the top of
//!   the file (`select_trades.risk.max_loss_per_trade=3000`,
//!   `fetch_chains.params.symbols=["SPY"]`);
//! * `desk.<table>.<key>=v` likewise in `jobs/desk.toml`.
//!
//! The value is a TOML value (`1.5`, `true`, `["SPY", "QQQ"]`, `"text"`); anything that
//! does not parse as one is taken as a string. The file's text is edited in place (the
//! line of the key replaced, or the key added under its table), so the snapshot keeps
//! the file's comments; the edited file is then loaded by the job's own code, which
//! refuses an unknown key or a bad value naming it.

use std::collections::BTreeMap;

/// One `--set` argument, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// As given, `dispersion.z_entry=1.5`.
    pub arg: String,
    /// The file it edits, relative to the configuration folder.
    pub file: String,
    /// The key's path from the top of that file: `["params", "z_entry"]`.
    pub path: Vec<String>,
    /// The value as TOML.
    pub value: String,
}

impl Override {
    /// The key as the user wrote it (`dispersion.z_entry`).
    pub fn key(&self) -> &str {
        self.arg.split('=').next().unwrap_or(&self.arg)
    }
}

/// Parse one `--set` argument; the error names it and says what is expected.
pub fn parse(arg: &str) -> Result<Override, String> {
    let (key, value) = arg.split_once('=').ok_or_else(|| {
        format!("--set {arg}: expected name.key=value, e.g. dispersion.z_entry=1.5")
    })?;
    let key = key.trim();
    let value = value.trim();
    let parts: Vec<&str> = key.split('.').map(str::trim).collect();
    if parts.len() < 2 || parts.iter().any(|p| !is_bare_key(p)) {
        return Err(format!(
            "--set {arg}: '{key}' is not a key; expected <strategy>.<key>, <job>.<table>.<key> or desk.<table>.<key>"
        ));
    }
    if value.is_empty() {
        return Err(format!("--set {arg}: no value after '='"));
    }
    let (head, rest) = (parts[0], &parts[1..]);
    let strategies = crate::trading::strategies::KNOWN;
    let (file, path): (String, Vec<String>) = if strategies.contains(&head) {
        let path = if rest == ["enabled"] {
            vec!["enabled".to_string()]
        } else {
            std::iter::once("params")
                .chain(rest.iter().copied())
                .map(String::from)
                .collect()
        };
        (format!("strategies/{head}.toml"), path)
    } else if head == "desk" || crate::jobs::find(head).is_some() {
        if head != "desk" && rest.len() == 1 && !matches!(rest[0], "enabled" | "slots") {
            return Err(format!(
                "--set {arg}: a job file's key is named by its table, e.g. {head}.params.{0} or {head}.risk.{0}",
                rest[0]
            ));
        }
        (
            format!("{head}.toml"),
            rest.iter().map(|s| s.to_string()).collect(),
        )
    } else {
        let jobs: Vec<&str> = crate::jobs::JOBS.iter().map(|j| j.name).collect();
        return Err(format!(
            "--set {arg}: unknown key '{key}': '{head}' is neither a strategy ({}) nor a job ({}) nor desk",
            strategies.join(", "),
            jobs.join(", ")
        ));
    };
    Ok(Override {
        arg: format!("{key}={value}"),
        file,
        path,
        value: toml_value(value),
    })
}

fn is_bare_key(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `v` as a TOML value: itself when it parses as one, else a quoted string.
fn toml_value(v: &str) -> String {
    if format!("v = {v}").parse::<toml::Table>().is_ok() {
        v.to_string()
    } else {
        let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    }
}

/// Apply overrides to the files' texts: `read` gives a file's current text (`None`
/// when it does not exist). Returns the edited text of each file an override touches.
pub fn apply(
    overrides: &[Override],
    mut read: impl FnMut(&str) -> Result<Option<String>, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for o in overrides {
        let text = match out.get(&o.file) {
            Some(t) => t.clone(),
            None => read(&o.file)?.unwrap_or_default(),
        };
        let edited =
            set_key(&text, &o.path, &o.value).map_err(|e| format!("--set {}: {e}", o.arg))?;
        out.insert(o.file.clone(), edited);
    }
    Ok(out)
}

/// `text` with the key at `path` set to `value`: its line replaced when the key is
/// written under its table, else added at the end of that table (the table added at the
/// end of the file when absent). Checked by parsing the result.
pub fn set_key(text: &str, path: &[String], value: &str) -> Result<String, String> {
    let (key, table) = path.split_last().ok_or("an empty key")?;
    let table_name = table.join(".");
    let want: toml::Value = format!("v = {value}")
        .parse::<toml::Table>()
        .map_err(|e| e.to_string())?
        .remove("v")
        .ok_or("no value")?;
    let lines: Vec<&str> = text.lines().collect();
    // The table's span: [start, end) of the lines after its header (or the top).
    let header_of = |l: &str| -> Option<String> {
        let t = l.trim();
        if t.starts_with("[[") {
            return Some(String::from("[["));
        }
        let t = t.strip_prefix('[')?;
        let end = t.find(']')?;
        Some(
            t[..end]
                .split('.')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("."),
        )
    };
    let mut start = None;
    if table.is_empty() {
        start = Some(0);
    } else {
        for (i, l) in lines.iter().enumerate() {
            if header_of(l).as_deref() == Some(table_name.as_str()) {
                start = Some(i + 1);
                break;
            }
        }
    }
    let new_line = format!("{key} = {value}");
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    match start {
        Some(s) => {
            let end = (s..lines.len())
                .find(|&i| header_of(lines[i]).is_some())
                .unwrap_or(lines.len());
            let found = (s..end).find(|&i| {
                let t = lines[i].trim_start();
                t.strip_prefix(key.as_str())
                    .is_some_and(|r| r.trim_start().starts_with('='))
            });
            match found {
                Some(i) => out[i] = new_line,
                None => {
                    // After the table's last non-blank line.
                    let mut at = end;
                    while at > s && lines[at - 1].trim().is_empty() {
                        at -= 1;
                    }
                    out.insert(at, new_line);
                }
            }
        }
        None => {
            out.push(String::new());
            out.push(format!("[{table_name}]"));
            out.push(new_line);
        }
    }
    let mut edited = out.join("\n");
    edited.push('\n');
    // The edit must read back as the value at the key (a dotted or inline-table layout
    // this line editing does not follow is refused rather than guessed).
    let parsed: toml::Table = edited
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_string())?;
    let mut v: Option<&toml::Value> = None;
    let mut t = &parsed;
    for (i, p) in path.iter().enumerate() {
        let x = t.get(p.as_str());
        if i + 1 == path.len() {
            v = x;
        } else {
            match x.and_then(|x| x.as_table()) {
                Some(n) => t = n,
                None => break,
            }
        }
    }
    if v != Some(&want) {
        return Err(format!(
            "cannot set {} in this file's layout; edit the file instead",
            path.join(".")
        ));
    }
    Ok(edited)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strategy_key_goes_under_params_and_a_job_key_by_its_table() {
        let o = parse("dispersion.z_entry=1.5").unwrap();
        assert_eq!(o.file, "strategies/dispersion.toml");
        assert_eq!(o.path, ["params", "z_entry"]);
        assert_eq!(o.value, "1.5");
        let o = parse("select_trades.risk.max_loss_per_trade=3000").unwrap();
        assert_eq!(o.file, "select_trades.toml");
        assert_eq!(o.path, ["risk", "max_loss_per_trade"]);
        let o = parse("call_premium.enabled=false").unwrap();
        assert_eq!(o.path, ["enabled"]);
        assert_eq!(parse("dispersion.mode=abc").unwrap().value, "\"abc\"");
    }

    #[test]
    fn bad_arguments_are_refused_naming_them() {
        for (arg, want) in [
            ("nosuch.x=1", "unknown key 'nosuch.x'"),
            ("dispersion=1", "is not a key"),
            ("dispersion.z_entry", "expected name.key=value"),
            ("dispersion.z_entry=", "no value"),
            (
                "select_trades.max_loss_per_trade=1",
                "select_trades.risk.max_loss_per_trade",
            ),
        ] {
            let e = parse(arg).unwrap_err();
            assert!(e.contains(want), "{arg}: {e}");
        }
    }

    #[test]
    fn set_key_replaces_adds_and_keeps_comments() {
        let text = "# top\nenabled = true\n\n[params]\n# the entry\nz_entry = 2.0\nz_exit = 0.5\n\n[risk]\nx = 1\n";
        let p = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        let t = set_key(text, &p("params.z_entry"), "1.5").unwrap();
        assert!(
            t.contains("# the entry\nz_entry = 1.5\nz_exit = 0.5"),
            "{t}"
        );
        let t = set_key(text, &p("params.hold_days"), "3").unwrap();
        assert!(t.contains("z_exit = 0.5\nhold_days = 3\n\n[risk]"), "{t}");
        let t = set_key(text, &p("enabled"), "false").unwrap();
        assert!(t.contains("# top\nenabled = false\n"), "{t}");
        let t = set_key("", &p("params.symbols"), "[\"SPY\"]").unwrap();
        assert!(t.contains("[params]\nsymbols = [\"SPY\"]"), "{t}");
        let t = set_key(text, &p("risk.y"), "2").unwrap();
        assert!(t.ends_with("[risk]\nx = 1\ny = 2\n"), "{t}");
    }
}
