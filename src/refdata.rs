//! Reference data: the small files in `data/` that the desk reads and never writes,
//! the QQQ top-50 weights (`data/qqq_top50_weights.csv`), the event dates of the risk
//! gate's blackout (`data/events.csv`) and the dated risk-free rate table
//! (`data/rates.csv`). Every reader of them goes through here, so a job on real data
//! never reaches into the simulator for them, and a bad line is an error that names
//! the file, the line and the field.
//!
//! The files are CSV (RFC 4180, read with the `csv` crate through [`crate::csvfile`]:
//! a quoted field may hold commas and line breaks) with `#` comment lines and a header
//! line; a row with more or fewer fields than the header is refused with its line.

use crate::csvfile;
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
    /// A line that is not a row of the file (a wrong number of fields, a byte that is
    /// not UTF-8, a quoted field never closed, a date out of order).
    #[error("{file} line {line}: {problem}")]
    BadLine {
        file: String,
        line: usize,
        problem: String,
    },
    #[error("{file} line {line}, field '{field}': {problem}")]
    BadField {
        file: String,
        line: usize,
        field: &'static str,
        problem: String,
    },
}

/// A file's bytes as text, or an error naming the line of the first byte that is not
/// UTF-8.
fn text_of<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, RefDataError> {
    csvfile::utf8(bytes).map_err(|(line, byte)| RefDataError::BadLine {
        file: file.to_string(),
        line,
        problem: format!("byte {byte} is not valid UTF-8 (save the file as CSV UTF-8)"),
    })
}

/// Whether a read failed because the file is not there (a built-in copy may stand in).
fn missing(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

fn cannot_read(path: &Path, source: std::io::Error) -> RefDataError {
    RefDataError::Read {
        file: path.display().to_string(),
        source,
    }
}

/// One row of a reference file: the line it starts on and its fields, trimmed.
struct Row {
    line: usize,
    fields: Vec<String>,
}

impl Row {
    fn get(&self, i: usize) -> &str {
        self.fields.get(i).map_or("", String::as_str)
    }
}

/// The rows of a reference file's text, `#` comments and blank lines left out, each
/// with the line it starts on; a quoted field left open is an error naming its line.
fn rows(file: &str, text: &str) -> Result<Vec<Row>, RefDataError> {
    let text = csvfile::without_comments(csvfile::strip_bom(text));
    let mut reader = csvfile::reader(&text);
    let mut rec = csv::ByteRecord::new();
    let mut out = Vec::new();
    let mut last = None;
    loop {
        let read = reader
            .read_byte_record(&mut rec)
            .map_err(|e| RefDataError::BadLine {
                file: file.to_string(),
                line: last.map_or(1, |(l, _)| l),
                problem: crate::text::one_line(&e.to_string()),
            })?;
        if !read {
            break;
        }
        let (line, start) = csvfile::start_of(&text, &rec);
        last = Some((line, start));
        if csvfile::is_blank(&rec) {
            continue;
        }
        out.push(Row {
            line,
            fields: (0..rec.len())
                .map(|i| csvfile::field(&rec, i).trim().to_string())
                .collect(),
        });
    }
    if let Some((line, start)) = last {
        if csvfile::open_quote_from(&text, start) {
            return Err(RefDataError::BadLine {
                file: file.to_string(),
                line,
                problem: "a quoted field is not closed".into(),
            });
        }
    }
    Ok(out)
}

/// Refuse a row whose field count is not the header's, naming its line.
fn check_width(file: &str, row: &Row, header: &Row) -> Result<(), RefDataError> {
    if row.fields.len() == header.fields.len() {
        return Ok(());
    }
    Err(RefDataError::BadLine {
        file: file.to_string(),
        line: row.line,
        problem: format!(
            "{} fields, the header (line {}) has {}",
            row.fields.len(),
            header.line,
            header.fields.len()
        ),
    })
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
    match std::fs::read(path) {
        Ok(bytes) => {
            let from = path.display().to_string();
            Ok(IndexWeights {
                components: parse_index_weights(&from, text_of(&from, &bytes)?)?,
                from,
            })
        }
        Err(e) if builtin_if_missing && missing(&e) => {
            let from = format!(
                "built-in copy of {QQQ_WEIGHTS_FILE} ({} not found)",
                path.display()
            );
            Ok(IndexWeights {
                components: parse_index_weights(&from, QQQ_WEIGHTS_CSV)?,
                from,
            })
        }
        Err(e) => Err(cannot_read(path, e)),
    }
}

/// The compiled-in QQQ weights, in the file's order (for the simulated market).
pub fn builtin_qqq_weights() -> Vec<IndexWeight> {
    parse_index_weights(QQQ_WEIGHTS_FILE, QQQ_WEIGHTS_CSV)
        .expect("the compiled-in weights file parses (tested in refdata)")
}

/// Parse a weights CSV's text; `file` names it in errors.
pub fn parse_index_weights(file: &str, text: &str) -> Result<Vec<IndexWeight>, RefDataError> {
    let rows = rows(file, text)?;
    let mut rows = rows.iter();
    let header = rows.next().ok_or_else(|| RefDataError::Empty {
        file: file.to_string(),
    })?;
    let column = |name: &'static str| header.fields.iter().position(|c| c == name);
    let no_column = |column: &'static str| RefDataError::NoColumn {
        file: file.to_string(),
        column,
    };
    let si = column("symbol").ok_or_else(|| no_column("symbol"))?;
    let wi = column("weight_pct").ok_or_else(|| no_column("weight_pct"))?;
    let sector_i = column("sector");
    let bad = |line: usize, field: &'static str, problem: &str| RefDataError::BadField {
        file: file.to_string(),
        line,
        field,
        problem: problem.to_string(),
    };
    let mut out = Vec::new();
    for row in rows {
        check_width(file, row, header)?;
        // The fraction is checked, not the percent: a tiny positive percent (`5e-324`)
        // would otherwise become a weight of 0.
        let weight: f64 = row
            .get(wi)
            .parse::<f64>()
            .ok()
            .map(|w| w / 100.0)
            .filter(|w| *w > 0.0 && w.is_finite())
            .ok_or_else(|| bad(row.line, "weight_pct", "expected a positive number"))?;
        let symbol = row.get(si);
        if symbol.is_empty() {
            return Err(bad(row.line, "symbol", "empty"));
        }
        out.push(IndexWeight {
            symbol: symbol.to_string(),
            sector: sector_i
                .map(|i| row.get(i))
                .filter(|s| !s.is_empty())
                .map(str::to_string),
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
    match std::fs::read(path) {
        Ok(bytes) => {
            let file = path.display().to_string();
            parse_events(&file, text_of(&file, &bytes)?)
        }
        Err(e) if builtin_if_missing && missing(&e) => parse_events(EVENTS_FILE, EVENTS_CSV),
        Err(e) => Err(cannot_read(path, e)),
    }
}

/// Parse an events file's text: the first field of every row is a date; a header (a
/// first field starting with `date`) is optional, and when there is one every row has
/// its number of fields.
pub fn parse_events(file: &str, text: &str) -> Result<BTreeSet<NaiveDate>, RefDataError> {
    let mut out = BTreeSet::new();
    let mut header: Option<Row> = None;
    for row in rows(file, text)? {
        if row.get(0).starts_with("date") {
            header = Some(row);
            continue;
        }
        if let Some(h) = &header {
            check_width(file, &row, h)?;
        }
        let field = row.get(0);
        let d =
            NaiveDate::parse_from_str(field, "%Y-%m-%d").map_err(|_| RefDataError::BadField {
                file: file.to_string(),
                line: row.line,
                field: "date",
                problem: format!("'{field}' is not a date (YYYY-MM-DD)"),
            })?;
        out.insert(d);
    }
    Ok(out)
}

/// The user's earnings dates, relative to the project folder: `symbol,date` per line.
pub const EARNINGS_FILE: &str = "data/earnings.csv";

/// Read earnings dates (`symbol,date`, YYYY-MM-DD; a header line `symbol,date` is
/// optional; `#` lines are comments). A missing file is no dates; a bad line is an
/// error naming the file, the line and the field.
pub fn load_earnings(path: &Path) -> Result<Vec<(String, NaiveDate)>, RefDataError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let file = path.display().to_string();
            parse_earnings(&file, text_of(&file, &bytes)?)
        }
        Err(e) if missing(&e) => Ok(Vec::new()),
        Err(e) => Err(cannot_read(path, e)),
    }
}

/// Parse an earnings file's text (see [`load_earnings`]).
pub fn parse_earnings(file: &str, text: &str) -> Result<Vec<(String, NaiveDate)>, RefDataError> {
    let bad = |line: usize, field: &'static str, problem: String| RefDataError::BadField {
        file: file.to_string(),
        line,
        field,
        problem,
    };
    let mut out = Vec::new();
    for (i, row) in rows(file, text)?.into_iter().enumerate() {
        if i == 0 && row.get(0).eq_ignore_ascii_case("symbol") {
            continue;
        }
        if row.fields.len() != 2 {
            return Err(bad(
                row.line,
                "symbol,date",
                format!("{} fields: expected 2 (symbol,date)", row.fields.len()),
            ));
        }
        let symbol = row.get(0).trim();
        if symbol.is_empty()
            || symbol.len() > 6
            || !symbol
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '.')
        {
            return Err(bad(
                row.line,
                "symbol",
                format!("'{symbol}' is not a ticker (1–6 upper-case letters or digits)"),
            ));
        }
        let field = row.get(1).trim();
        let d = NaiveDate::parse_from_str(field, "%Y-%m-%d").map_err(|_| {
            bad(
                row.line,
                "date",
                format!("'{field}' is not a date (YYYY-MM-DD)"),
            )
        })?;
        out.push((symbol.to_string(), d));
    }
    Ok(out)
}

/// The default rate table, relative to the project folder (`desk.rates_file`).
pub const RATES_FILE: &str = "data/rates.csv";

/// A compiled-in copy of [`RATES_FILE`], used when the default path is missing.
pub const RATES_CSV: &str = include_str!("../data/rates.csv");

/// One row of the rate table: the target range in effect from `from` on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateRow {
    pub from: NaiveDate,
    pub low_pct: f64,
    pub high_pct: f64,
    /// The midpoint as a continuously compounded annual rate: the range is an overnight
    /// rate on an ACT/360 basis, compounded every calendar day, r = 365 ln(1 + m/360).
    pub rate: f64,
}

/// The dated risk-free rates: the rate for a session is the last row dated on or
/// before it.
#[derive(Debug, Clone, PartialEq)]
pub struct RateTable {
    /// Oldest first, dates strictly increasing.
    pub rows: Vec<RateRow>,
    /// The file, or the built-in copy (and why it was used), for messages.
    pub from: String,
}

impl RateTable {
    /// The row in effect on `date`; before the first row, an error that says where the
    /// table starts.
    pub fn on(&self, date: NaiveDate) -> Result<&RateRow, String> {
        let i = self.rows.partition_point(|r| r.from <= date);
        match i.checked_sub(1).and_then(|i| self.rows.get(i)) {
            Some(r) => Ok(r),
            None => Err(match self.rows.first() {
                Some(first) => format!(
                    "no risk-free rate for {date}: {} starts on {}; add a row for an earlier date or set the source's `rate`",
                    self.from, first.from
                ),
                None => format!("no risk-free rate for {date}: {} has no rows", self.from),
            }),
        }
    }
}

/// Read the rate table (`date`, `low_pct`, `high_pct`; other columns allowed). With
/// `builtin_if_missing` (the default path only), a file that does not exist is
/// replaced by the compiled-in [`RATES_CSV`] and `from` says so.
pub fn load_rates(path: &Path, builtin_if_missing: bool) -> Result<RateTable, RefDataError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let from = path.display().to_string();
            Ok(RateTable {
                rows: parse_rates(&from, text_of(&from, &bytes)?)?,
                from,
            })
        }
        Err(e) if builtin_if_missing && missing(&e) => {
            let from = format!(
                "built-in copy of {RATES_FILE} ({} not found)",
                path.display()
            );
            Ok(RateTable {
                rows: parse_rates(&from, RATES_CSV)?,
                from,
            })
        }
        Err(e) => Err(cannot_read(path, e)),
    }
}

/// The compiled-in rate table.
pub fn builtin_rates() -> RateTable {
    RateTable {
        rows: parse_rates(RATES_FILE, RATES_CSV)
            .expect("the compiled-in rate table parses (tested in refdata)"),
        from: RATES_FILE.to_string(),
    }
}

/// Parse a rate table's text; `file` names it in errors.
pub fn parse_rates(file: &str, text: &str) -> Result<Vec<RateRow>, RefDataError> {
    let rows = rows(file, text)?;
    let mut rows = rows.iter();
    let header = rows.next().ok_or_else(|| RefDataError::Empty {
        file: file.to_string(),
    })?;
    let column = |name: &'static str| {
        header
            .fields
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| RefDataError::NoColumn {
                file: file.to_string(),
                column: name,
            })
    };
    let (di, li, hi) = (column("date")?, column("low_pct")?, column("high_pct")?);
    let bad = |line: usize, field: &'static str, problem: String| RefDataError::BadField {
        file: file.to_string(),
        line,
        field,
        problem,
    };
    let pct = |row: &Row, i: usize, field: &'static str| -> Result<f64, RefDataError> {
        let s = row.get(i);
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && (-5.0..=50.0).contains(v))
            .ok_or_else(|| {
                bad(
                    row.line,
                    field,
                    format!("'{s}' is not a rate in percent between -5 and 50"),
                )
            })
    };
    let mut out: Vec<RateRow> = Vec::new();
    for row in rows {
        check_width(file, row, header)?;
        let s = row.get(di);
        let from = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
            bad(
                row.line,
                "date",
                format!("'{s}' is not a date (YYYY-MM-DD)"),
            )
        })?;
        if let Some(prev) = out.last().filter(|p| p.from >= from) {
            return Err(bad(
                row.line,
                "date",
                format!("{from} is not after the row before it ({})", prev.from),
            ));
        }
        let (low_pct, high_pct) = (pct(row, li, "low_pct")?, pct(row, hi, "high_pct")?);
        if low_pct > high_pct {
            return Err(bad(
                row.line,
                "high_pct",
                format!("{high_pct} is below low_pct {low_pct}"),
            ));
        }
        let mid = (low_pct + high_pct) / 200.0;
        out.push(RateRow {
            from,
            low_pct,
            high_pct,
            rate: 365.0 * (mid / 360.0).ln_1p(),
        });
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
    fn earnings_dates_are_read_and_a_bad_line_is_named() {
        let ok = parse_earnings(
            "e.csv",
            "symbol,date\nAAPL,2025-01-30\n# note\nMSFT,2025-01-29\n",
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(
            ok[0],
            (
                "AAPL".to_string(),
                NaiveDate::from_ymd_opt(2025, 1, 30).unwrap()
            )
        );
        let e =
            parse_earnings("e.csv", "symbol,date\nAAPL,2025-01-30\nMSFT,30/01/2025\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            RefDataError::BadField {
                file: "e.csv".into(),
                line: 3,
                field: "date",
                problem: "'30/01/2025' is not a date (YYYY-MM-DD)".into(),
            }
            .to_string()
        );
        let e = parse_earnings("e.csv", "aapl,2025-01-30\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("e.csv") && e.contains("line 1") && e.contains("symbol"),
            "{e}"
        );
        assert!(load_earnings(Path::new("/nonexistent/earnings.csv"))
            .unwrap()
            .is_empty());
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
    #[test]
    fn a_quoted_comma_or_line_break_stays_in_its_field_and_lines_stay_the_files() {
        let w = parse_index_weights(
            "w.csv",
            "# c, with a \"quote\nsymbol,name,sector,weight_pct\nGOOGL,\"Alphabet, Class A\",XLC,2.5\n\
             BRK.B,\"Berkshire\nHathaway\",XLF,1.5\nMSFT,Microsoft,XLK,x\n",
        );
        let e = w.unwrap_err().to_string();
        assert_eq!(
            e,
            "w.csv line 6, field 'weight_pct': expected a positive number"
        );
        let w = parse_index_weights(
            "w.csv",
            "symbol,name,sector,weight_pct\nGOOGL,\"Alphabet, Class A\",XLC,2.5\n\
             BRK.B,\"Berkshire\nHathaway\",XLF,1.5\n",
        )
        .unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].sector.as_deref(), Some("XLC"));
        assert!((w[1].weight - 0.015).abs() < 1e-15);

        let events =
            "# c\ndate,event,detail\n2025-03-19,FOMC,\"statement, then press conference\"\n\
                      2025-03-12,CPI,\"February\nrelease\"\n2025-13-01,CPI,bad\n";
        let e = parse_events("e.csv", events).unwrap_err().to_string();
        assert_eq!(
            e,
            "e.csv line 6, field 'date': '2025-13-01' is not a date (YYYY-MM-DD)"
        );
        let d = parse_events("e.csv", &events.replace("2025-13-01", "2025-04-10")).unwrap();
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn a_row_of_the_wrong_width_an_open_quote_and_bad_utf8_are_named_by_line() {
        let e = parse_index_weights("w.csv", "symbol,weight_pct\nAAPL,8.9\nMSFT,Microsoft,7.9\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "w.csv line 3: 3 fields, the header (line 1) has 2");
        let e = parse_events("e.csv", "date,event\n2025-03-19,FOMC,extra\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "e.csv line 2: 3 fields, the header (line 1) has 2");
        let e = parse_events("e.csv", "date,event\n2025-03-19,\"FOMC\n2025-03-20,CPI\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "e.csv line 2: a quoted field is not closed");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("events.csv");
        std::fs::write(&f, b"date,event\n2025-03-19,FOMC\n2025-03-20,C\xffI\n").unwrap();
        let e = load_events(&f, false).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{} line 3: byte 13 is not valid UTF-8 (save the file as CSV UTF-8)",
                f.display()
            )
        );
        // A byte-order mark is not part of the header.
        assert_eq!(
            parse_events("e.csv", "\u{feff}date,event\n2025-03-19,FOMC\n")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn the_rate_for_a_session_is_the_last_row_on_or_before_it() {
        let t = builtin_rates();
        let on = |d: &str| {
            t.on(d.parse().unwrap())
                .map(|r| (r.from.to_string(), r.high_pct))
        };
        assert_eq!(on("2008-12-16"), Ok(("2008-12-16".into(), 0.25)));
        assert_eq!(on("2015-12-15"), Ok(("2008-12-16".into(), 0.25)));
        assert_eq!(on("2024-11-07"), Ok(("2024-09-19".into(), 5.00)));
        assert_eq!(on("2024-11-08"), Ok(("2024-11-08".into(), 4.75)));
        assert_eq!(on("2024-03-14"), Ok(("2023-07-27".into(), 5.50)));
        assert_eq!(
            on("2030-01-02").map(|r| r.0),
            Ok(t.rows.last().unwrap().from.to_string())
        );
        let e = t.on("2008-12-15".parse().unwrap()).unwrap_err();
        assert_eq!(
            e,
            "no risk-free rate for 2008-12-15: data/rates.csv starts on 2008-12-16; add a row for an earlier date or set the source's `rate`"
        );
        // 5.25–5.50: mid 5.375% ACT/360 overnight, compounded daily, continuous.
        let r = t.on("2024-03-14".parse().unwrap()).unwrap().rate;
        assert!(
            (r - 365.0 * (0.05375f64 / 360.0).ln_1p()).abs() < 1e-15,
            "{r}"
        );
        assert!((r - 0.054492).abs() < 1e-6, "{r}");
        assert!(t.rows.windows(2).all(|w| w[0].from < w[1].from));
        assert!(t
            .rows
            .iter()
            .all(|r| (r.high_pct - r.low_pct - 0.25).abs() < 1e-9));
    }

    #[test]
    fn rate_file_errors_name_file_line_and_field_and_the_default_falls_back() {
        let h = "date,low_pct,high_pct\n";
        for (body, want) in [
            ("2024-01-02,5.25,5.50\n2024-01-02,5.00,5.25\n", "r.csv line 3, field 'date': 2024-01-02 is not after the row before it (2024-01-02)"),
            ("2024-01-02,5.25,abc\n", "r.csv line 2, field 'high_pct': 'abc' is not a rate in percent between -5 and 50"),
            ("2024-01-02,5.25,550\n", "r.csv line 2, field 'high_pct': '550' is not a rate in percent between -5 and 50"),
            ("2024-01-02,5.50,5.25\n", "r.csv line 2, field 'high_pct': 5.25 is below low_pct 5.5"),
            ("01/02/2024,5.25,5.50\n", "r.csv line 2, field 'date': '01/02/2024' is not a date (YYYY-MM-DD)"),
            ("2024-01-02,5.25\n", "r.csv line 2: 2 fields, the header (line 1) has 3"),
        ] {
            let e = parse_rates("r.csv", &format!("{h}{body}")).unwrap_err().to_string();
            assert_eq!(e, want);
        }
        let e = parse_rates("r.csv", "date,rate\n2024-01-02,5\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "r.csv: no 'low_pct' column");
        let dir = tempfile::tempdir().unwrap();
        let none = dir.path().join("none.csv");
        let t = load_rates(&none, true).unwrap();
        assert!(
            t.from.starts_with("built-in copy of data/rates.csv"),
            "{}",
            t.from
        );
        assert_eq!(
            t.rows,
            load_rates(&shipped(RATES_FILE), false).unwrap().rows
        );
        let e = load_rates(&none, false).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("cannot read {}", none.display())),
            "{e}"
        );
    }
}
