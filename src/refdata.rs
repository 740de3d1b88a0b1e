//! Reference data: the small files in `data/` that the desk reads and never writes,
//! the QQQ top-50 weights (`data/qqq_top50_weights.csv`) and the event dates of the
//! risk gate's blackout (`data/events.csv`). Every reader of them goes through here,
//! so a job on real data never reaches into the simulator for them, and a bad line is
//! an error that names the file, the line and the field.
//!
//! The files are CSV with `#` comment lines and a header line. Their fields hold no
//! quotes or commas, so they are split on commas here (the crate has no CSV reader).

use chrono::NaiveDate;
use std::collections::BTreeSet;
use std::path::Path;

/// The default index-weights file, relative to the project folder.
pub const QQQ_WEIGHTS_FILE: &str = "data/qqq_top50_weights.csv";

/// A compiled-in copy of [`QQQ_WEIGHTS_FILE`], so the simulated market and a default
/// configuration work from any folder.
pub const QQQ_WEIGHTS_CSV: &str = include_str!("../data/qqq_top50_weights.csv");

/// The default event-dates file, relative to the project folder.
pub const EVENTS_FILE: &str = "data/events.csv";

#[derive(Debug, thiserror::Error)]
pub enum RefDataError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: empty")]
    Empty { file: String },
    #[error("{file}: no '{column}' column")]
    NoColumn { file: String, column: &'static str },
    #[error("{file} line {line}, field '{field}': {problem}")]
    BadField {
        file: String,
        line: usize,
        field: &'static str,
        problem: String,
    },
}

/// One component of an index, from a weights file.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexWeight {
    pub symbol: String,
    /// The component's sector ETF, when the file has a `sector` column.
    pub sector: Option<String>,
    /// The weight as a fraction of the whole index (the file holds percent).
    pub weight: f64,
}

/// An index's weights and where they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexWeights {
    /// In the file's order.
    pub components: Vec<IndexWeight>,
    /// The file, or the built-in copy (and why it was used), for summaries.
    pub from: String,
}

impl IndexWeights {
    /// (symbol, weight as a fraction), largest weights first.
    pub fn largest_first(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = self
            .components
            .iter()
            .map(|c| (c.symbol.clone(), c.weight))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }
}

/// Read an index's weights: a CSV with columns `symbol` and `weight_pct` (percent of
/// the index; `sector` and others allowed). With `builtin_if_missing`, a file that does
/// not exist is replaced by the compiled-in [`QQQ_WEIGHTS_CSV`], and `from` says so;
/// use it for the default path only.
pub fn load_index_weights(
    path: &Path,
    builtin_if_missing: bool,
) -> Result<IndexWeights, RefDataError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let from = path.display().to_string();
            Ok(IndexWeights {
                components: parse_index_weights(&from, &text)?,
                from,
            })
        }
        Err(e) if builtin_if_missing && e.kind() == std::io::ErrorKind::NotFound => {
            let from = format!(
                "built-in copy of {QQQ_WEIGHTS_FILE} ({} not found)",
                path.display()
            );
            Ok(IndexWeights {
                components: parse_index_weights(&from, QQQ_WEIGHTS_CSV)?,
                from,
            })
        }
        Err(e) => Err(RefDataError::Read {
            file: path.display().to_string(),
            source: e,
        }),
    }
}

/// The compiled-in QQQ weights, in the file's order (for the simulated market).
pub fn builtin_qqq_weights() -> Vec<IndexWeight> {
    parse_index_weights(QQQ_WEIGHTS_FILE, QQQ_WEIGHTS_CSV)
        .expect("the compiled-in weights file parses (tested in refdata)")
}

/// Parse a weights CSV's text; `file` names it in errors.
pub fn parse_index_weights(file: &str, text: &str) -> Result<Vec<IndexWeight>, RefDataError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| RefDataError::Empty {
        file: file.to_string(),
    })?;
    let cols: Vec<&str> = header.split(',').map(|s| s.trim()).collect();
    let column = |name: &'static str| cols.iter().position(|c| *c == name);
    let no_column = |column: &'static str| RefDataError::NoColumn {
        file: file.to_string(),
        column,
    };
    let si = column("symbol").ok_or_else(|| no_column("symbol"))?;
    let wi = column("weight_pct").ok_or_else(|| no_column("weight_pct"))?;
    let sector_i = column("sector");
    let bad = |n: usize, field: &'static str, problem: &str| RefDataError::BadField {
        file: file.to_string(),
        line: n + 1,
        field,
        problem: problem.to_string(),
    };
    let mut out = Vec::new();
    for (n, l) in lines {
        let f: Vec<&str> = l.split(',').map(|s| s.trim()).collect();
        // The fraction is checked, not the percent: a tiny positive percent (`5e-324`)
        // would otherwise become a weight of 0.
        let weight: f64 = f
            .get(wi)
            .and_then(|s| s.parse::<f64>().ok())
            .map(|w| w / 100.0)
            .filter(|w| *w > 0.0 && w.is_finite())
            .ok_or_else(|| bad(n, "weight_pct", "expected a positive number"))?;
        let symbol = f.get(si).copied().unwrap_or("");
        if symbol.is_empty() {
            return Err(bad(n, "symbol", "empty"));
        }
        out.push(IndexWeight {
            symbol: symbol.to_string(),
            sector: sector_i
                .and_then(|i| f.get(i))
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string()),
            weight,
        });
    }
    Ok(out)
}

/// A compiled-in copy of [`EVENTS_FILE`]: a desk run from a folder without `data/`
/// keeps its FOMC/CPI blackout instead of silently trading through it.
pub const EVENTS_CSV: &str = include_str!("../data/events.csv");

/// Read event dates (the risk gate's blackout days): a CSV whose first column is
/// `date` (YYYY-MM-DD); `#` lines are comments. A missing file is an error, or with
/// `builtin_if_missing` (the default path only) the compiled-in [`EVENTS_CSV`]; a bad
/// line is an error naming the file, the line and the field.
pub fn load_events(
    path: &Path,
    builtin_if_missing: bool,
) -> Result<BTreeSet<NaiveDate>, RefDataError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if builtin_if_missing && e.kind() == std::io::ErrorKind::NotFound => {
            return parse_events(EVENTS_FILE, EVENTS_CSV)
        }
        Err(e) => {
            return Err(RefDataError::Read {
                file: path.display().to_string(),
                source: e,
            })
        }
    };
    parse_events(&path.display().to_string(), &text)
}

fn parse_events(file: &str, text: &str) -> Result<BTreeSet<NaiveDate>, RefDataError> {
    let mut out = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with("date") {
            continue;
        }
        let field = l.split(',').next().unwrap_or("");
        let d = NaiveDate::parse_from_str(field.trim(), "%Y-%m-%d").map_err(|_| {
            RefDataError::BadField {
                file: file.to_string(),
                line: i + 1,
                field: "date",
                problem: format!("'{field}' is not a date (YYYY-MM-DD)"),
            }
        })?;
        out.insert(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped file, read from the crate's folder (tests run there).
    fn shipped(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
    }

    #[test]
    fn weights_file_errors_name_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.csv");
        std::fs::write(&f, "symbol,weight_pct\nAAPL,8.9\nMSFT,abc\n").unwrap();
        let e = load_index_weights(&f, false).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{} line 3, field 'weight_pct': expected a positive number",
                f.display()
            )
        );
        std::fs::write(&f, "# c\nsymbol,weight_pct\n,1.0\n").unwrap();
        let e = load_index_weights(&f, false).unwrap_err().to_string();
        assert!(e.ends_with("line 3, field 'symbol': empty"), "{e}");
        std::fs::write(&f, "ticker,weight_pct\nAAPL,1\n").unwrap();
        let e = load_index_weights(&f, false).unwrap_err().to_string();
        assert!(e.ends_with("no 'symbol' column"), "{e}");
        std::fs::write(&f, "# only a comment\n\n").unwrap();
        let e = load_index_weights(&f, false).unwrap_err().to_string();
        assert!(e.ends_with(": empty"), "{e}");
    }

    #[test]
    fn a_weight_too_small_to_be_a_fraction_is_refused() {
        // Found by tests/fuzz.rs: 5e-324 percent is positive, its fraction is 0.
        let e = parse_index_weights("w.csv", "symbol,weight_pct\nAAPL,5e-324\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "w.csv line 2, field 'weight_pct': expected a positive number"
        );
        let w = parse_index_weights("w.csv", "symbol,weight_pct\nAAPL,1e-300\n").unwrap();
        assert!(w[0].weight > 0.0);
    }

    #[test]
    fn a_missing_default_weights_file_falls_back_to_the_built_in_copy() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.csv");
        let e = load_index_weights(&missing, false).unwrap_err().to_string();
        assert!(e.starts_with("cannot read"), "{e}");
        let w = load_index_weights(&missing, true).unwrap();
        assert!(w
            .from
            .starts_with("built-in copy of data/qqq_top50_weights.csv"));
        assert!(w.from.contains("nope.csv not found"), "{}", w.from);
        let file = load_index_weights(&shipped(QQQ_WEIGHTS_FILE), true).unwrap();
        assert!(
            file.from.ends_with("qqq_top50_weights.csv"),
            "{}",
            file.from
        );
        assert_eq!(
            w.components, file.components,
            "the built-in copy is the file"
        );
    }

    #[test]
    fn the_qqq_weights_are_fifty_with_sectors_largest_first() {
        let w = builtin_qqq_weights();
        assert_eq!(w.len(), 50);
        assert!(w.iter().all(|c| c.sector.is_some()));
        let total: f64 = w.iter().map(|c| c.weight).sum();
        assert!(total > 0.5 && total < 1.0, "top 50 of the index: {total}");
        let by_size = IndexWeights {
            components: w,
            from: String::new(),
        }
        .largest_first();
        assert_eq!(by_size[0].0, "AAPL");
        assert!(by_size.windows(2).all(|p| p[0].1 >= p[1].1));
    }

    #[test]
    fn a_missing_events_file_is_the_builtin_copy_or_an_error_and_a_bad_date_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let none = dir.path().join("none.csv");
        assert_eq!(
            load_events(&none, true).unwrap(),
            load_events(&shipped(EVENTS_FILE), false).unwrap(),
            "the default path falls back to the shipped dates"
        );
        let e = load_events(&none, false).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("cannot read {}", none.display())),
            "{e}"
        );
        let f = dir.path().join("events.csv");
        std::fs::write(
            &f,
            "# c\ndate,event,detail\n2025-03-19,FOMC,\n2025-03-12,CPI,Feb\n",
        )
        .unwrap();
        let d = load_events(&f, true).unwrap();
        assert_eq!(
            d.into_iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            ["2025-03-12", "2025-03-19"]
        );
        std::fs::write(&f, "date,event\n2025-03-19,FOMC\n03/20/2025,CPI\n").unwrap();
        let e = load_events(&f, true).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{} line 3, field 'date': '03/20/2025' is not a date (YYYY-MM-DD)",
                f.display()
            )
        );
        assert!(!load_events(&shipped(EVENTS_FILE), false)
            .unwrap()
            .is_empty());
    }
}
