//! `optdesk import PATH...`: vendor end-of-day files into the store's archive
//! (`option_archive`, `archive_bars`), once, so replaying a day is a query.
//!
//! Files are read by DuckDB's own CSV reader (plain or gzip) with every column named
//! and typed explicitly (as text: nothing is sniffed), then normalized in SQL:
//! OCC symbol, per-share prices, New York snapshot times (DataShop 15:45 — 12:45 on
//! early closes — the others the close), the vendor's IV and greeks. The layout is
//! detected from the header (or forced with `--layout`).
//!
//! A field that cannot be parsed (a date that is not a date, a price that is not a
//! number) fails the whole file naming its line and field, and nothing is written. A
//! row that parses but breaks a hygiene rule (crossed, no ask, a negative price, expired,
//! a non-standard or adjusted contract, a duplicate) is kept out of the archive and
//! recorded in `import_rejects` with its rule and fields. Importing a file again
//! replaces that file's rows; the same bytes again change nothing.

use crate::calendar;
use chrono::{NaiveDate, NaiveDateTime};
use duckdb::{params, Connection, OptionalExt};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// The layouts `import` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// OptionsDX: one row per strike and expiry, call and put side by side.
    OptionsDx,
    /// Cboe DataShop Option EOD Summary (Quotes, or Calcs with IV and greeks).
    DataShop,
    /// DeltaNeutral / HistoricalOptionData Level 2 (`UnderlyingSymbol, ... OptionRoot`).
    DeltaNeutralL2,
    /// DeltaNeutral Level 3 / DiscountOptionData (`OptionSymbol`, `IVMean`).
    DeltaNeutralL3,
    /// The lower-cased DeltaNeutral header (`underlying, underlying_last, optionroot`).
    DeltaNeutralLower,
    /// Yahoo's daily-bar CSV (`Date,Open,High,Low,Close,Adj Close,Volume`).
    YahooBars,
    /// Daily bars: `date, open, high, low, close, volume` (and optionally `symbol`).
    GenericBars,
    /// A 30-day ATM implied-vol history: `date, symbol, iv` (into `iv_history`).
    IvHistory,
    /// An implied-correlation history: `date, value` (into `correlation`).
    CorrHistory,
}

pub const LAYOUTS: &[(&str, Layout)] = &[
    ("optionsdx", Layout::OptionsDx),
    ("datashop", Layout::DataShop),
    ("deltaneutral", Layout::DeltaNeutralL2),
    ("deltaneutral-l3", Layout::DeltaNeutralL3),
    ("deltaneutral-lower", Layout::DeltaNeutralLower),
    ("yahoo-bars", Layout::YahooBars),
    ("bars", Layout::GenericBars),
    ("iv-history", Layout::IvHistory),
    ("correlation-history", Layout::CorrHistory),
];

impl Layout {
    pub fn name(self) -> &'static str {
        LAYOUTS
            .iter()
            .find(|(_, l)| *l == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    pub fn parse(s: &str) -> Result<Layout, String> {
        LAYOUTS
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, l)| *l)
            .ok_or_else(|| format!("unknown layout '{s}'; the layouts are {}", layout_names()))
    }

    fn is_bars(self) -> bool {
        matches!(self, Layout::YahooBars | Layout::GenericBars)
    }

    /// Detect a layout from a header's normalized column names.
    pub fn detect(cols: &[String]) -> Option<Layout> {
        let has = |c: &str| cols.iter().any(|x| x == c);
        if has("quote_unixtime") && has("c_bid") && has("p_bid") {
            Some(Layout::OptionsDx)
        } else if has("underlying_symbol") && has("option_type") && has("bid_1545") {
            Some(Layout::DataShop)
        } else if has("optionsymbol") && has("ivmean") {
            Some(Layout::DeltaNeutralL3)
        } else if has("underlyingsymbol") && has("optionroot") && has("datadate") {
            Some(Layout::DeltaNeutralL2)
        } else if has("underlying_last") && has("optionroot") && has("quotedate") {
            Some(Layout::DeltaNeutralLower)
        } else if has("date")
            && has("symbol")
            && (has("iv") || has("atm_iv") || has("atm_iv_30d"))
            && !has("open")
        {
            Some(Layout::IvHistory)
        } else if has("date")
            && (has("implied_corr") || has("correlation") || has("value"))
            && !has("open")
            && !has("symbol")
        {
            Some(Layout::CorrHistory)
        } else if has("date") && has("adj close") && has("close") {
            Some(Layout::YahooBars)
        } else if has("date") && has("open") && has("high") && has("low") && has("close") {
            Some(Layout::GenericBars)
        } else {
            None
        }
    }
}

fn layout_names() -> String {
    LAYOUTS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{file} line {line}, field '{field}': {problem}")]
    Field {
        file: String,
        line: i64,
        field: String,
        problem: String,
    },
    #[error(
        "{file}: unknown layout; its header is `{header}`; the layouts are {}",
        layout_names()
    )]
    UnknownLayout { file: String, header: String },
    #[error("store: {0}")]
    Db(#[from] duckdb::Error),
}

/// What one file's import did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSummary {
    pub file: String,
    pub layout: Layout,
    pub kept: i64,
    pub rejected: i64,
    /// Rejected rows by rule.
    pub rules: Vec<(String, i64)>,
    pub first_date: Option<NaiveDate>,
    pub last_date: Option<NaiveDate>,
    pub symbols: Vec<String>,
    /// The same bytes were imported before: nothing changed.
    pub unchanged: bool,
}

/// A header's column names, normalized: trimmed, brackets dropped, lower case.
pub fn normalize_header(line: &str) -> Vec<String> {
    line.trim_start_matches('\u{feff}')
        .trim_start_matches('#')
        .split(',')
        .map(|c| {
            c.trim()
                .trim_matches(|ch| ch == '[' || ch == ']' || ch == '"')
                .trim()
                .to_ascii_lowercase()
        })
        .collect()
}

/// DuckDB's CSV error, short: the line and what was wrong with it.
fn csv_error(msg: &str) -> String {
    let after = |key: &str| {
        msg.find(key).map(|i| {
            msg[i + key.len()..]
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
        })
    };
    let line = after("CSV Error on Line:");
    let expected = after("Expected Number of Columns:");
    let found = after("Found:");
    match (line, expected, found) {
        (Some(l), Some(e), Some(f)) => {
            format!("line {l}: {f} fields, the header has {e} (a wrong delimiter, or a cut or merged line)")
        }
        (Some(l), _, _) if msg.contains("Invalid unicode") => {
            format!("line {l}: not UTF-8 text")
        }
        (Some(l), _, _) => format!(
            "line {l}: {}",
            crate::text::one_line(msg.lines().next().unwrap_or(msg))
        ),
        _ => crate::text::one_line(msg).chars().take(300).collect(),
    }
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn sha256_file(path: &Path) -> Result<String, std::io::Error> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The underlying a file name implies (`spy_eod_202301.txt` → SPY), for layouts that
/// do not carry the symbol.
fn symbol_from_file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.split(['_', '.', '-']).next()?;
    (!stem.is_empty() && stem.len() <= 6 && stem.chars().all(|c| c.is_ascii_alphabetic()))
        .then(|| stem.to_ascii_uppercase())
}

/// Roots of cash-settled, European-style index options.
const INDEX_ROOTS: &[&str] = &[
    "SPX", "SPXW", "SPXPM", "XSP", "NDX", "NDXP", "RUT", "RUTW", "VIX", "VIXW", "BVZ", "DJX",
    "OEX", "XEO", "MRUT",
];

/// The normalized SELECT for a chain layout: one row per contract with the fields as
/// text (`line` is the file's line number). `sym` is the underlying for layouts that do
/// not carry it.
fn chain_select(layout: Layout, sym: Option<&str>) -> Result<String, String> {
    let none = "NULL::VARCHAR";
    Ok(match layout {
        Layout::OptionsDx => {
            let sym = sym.ok_or(
                "OptionsDX files do not name their underlying: name the file <sym>_eod_<YYYYMM>.txt or pass --symbol",
            )?;
            // SPX and SPXW rows are indistinguishable in OptionsDX; they are stored as
            // PM-settled SPXW (the README says so).
            let root = if sym == "SPX" { "SPXW" } else { sym };
            let side = |p: &str, right: &str| {
                format!(
                    "SELECT line, trim(quote_date) AS as_of_s, trim(quote_readtime) AS time_s, {s} AS underlying, {r} AS root,
                            trim(expire_date) AS expiry_s, trim(strike) AS strike_s, '{right}' AS pc,
                            trim({p}_bid) AS bid_s, trim({p}_ask) AS ask_s,
                            trim(split_part({p}_size, 'x', 1)) AS bsz_s, trim(split_part({p}_size, 'x', 2)) AS asz_s,
                            trim({p}_last) AS last_s, trim({p}_volume) AS vol_s, NULL::VARCHAR AS oi_s,
                            trim(underlying_last) AS und_s, trim({p}_iv) AS iv_s, trim({p}_delta) AS delta_s,
                            trim({p}_gamma) AS gamma_s, trim({p}_theta) AS theta_s, trim({p}_vega) AS vega_s,
                            NULL::VARCHAR AS flag
                     FROM raw",
                    s = sql_str(sym),
                    r = sql_str(root),
                )
            };
            format!("{} UNION ALL {}", side("c", "C"), side("p", "P"))
        }
        Layout::DataShop => {
            // Calcs files add IV, greeks and the implied underlying; Quotes files do not.
            "SELECT line, trim(quote_date) AS as_of_s, NULL::VARCHAR AS time_s,
                        ltrim(trim(underlying_symbol), '^') AS underlying, trim(root) AS root,
                        trim(expiration) AS expiry_s, trim(strike) AS strike_s, upper(trim(option_type)) AS pc,
                        trim(bid_1545) AS bid_s, trim(ask_1545) AS ask_s, trim(bid_size_1545) AS bsz_s,
                        trim(ask_size_1545) AS asz_s, trim(close) AS last_s, trim(trade_volume) AS vol_s,
                        trim(open_interest) AS oi_s,
                        coalesce(
                            CASE WHEN TRY_CAST(underlying_bid_1545 AS DOUBLE) > 0 AND TRY_CAST(underlying_ask_1545 AS DOUBLE) > 0
                                 THEN ((TRY_CAST(underlying_bid_1545 AS DECIMAL(18,4)) + TRY_CAST(underlying_ask_1545 AS DECIMAL(18,4))) / 2)::VARCHAR END,
                            nullif(trim(active_underlying_price_1545), ''),
                            nullif(trim(implied_underlying_price_1545), '')) AS und_s,
                        trim(implied_volatility_1545) AS iv_s, trim(delta_1545) AS delta_s, trim(gamma_1545) AS gamma_s,
                        trim(theta_1545) AS theta_s, trim(vega_1545) AS vega_s,
                        NULL::VARCHAR AS flag
                 FROM raw".to_string()
        }
        Layout::DeltaNeutralL2 | Layout::DeltaNeutralL3 | Layout::DeltaNeutralLower => {
            let (und_sym, und_px, flag, symbol, date, iv) = match layout {
                Layout::DeltaNeutralL2 => (
                    "underlyingsymbol",
                    "underlyingprice",
                    "exchange",
                    "optionroot",
                    "datadate",
                    "iv",
                ),
                Layout::DeltaNeutralL3 => (
                    "underlyingsymbol",
                    "underlyingprice",
                    "flags",
                    "optionsymbol",
                    "datadate",
                    "ivmean",
                ),
                _ => (
                    "underlying",
                    "underlying_last",
                    "exchange",
                    "optionroot",
                    "quotedate",
                    "impliedvol",
                ),
            };
            // The option symbol is OCC-style (`SPXW180131C02000000`) in the newer files and
            // a bare root in old Level 2 files.
            format!(
                "SELECT line, trim({date}) AS as_of_s, NULL::VARCHAR AS time_s,
                        upper(trim({und_sym})) AS underlying,
                        coalesce(nullif(regexp_extract(upper(trim({symbol})), '^([A-Z0-9]+?)\\s*\\d{{6}}[CP]\\d{{8}}$', 1), ''), upper(trim({symbol}))) AS root,
                        trim(expiration) AS expiry_s, trim(strike) AS strike_s, upper(left(trim(type), 1)) AS pc,
                        trim(bid) AS bid_s, trim(ask) AS ask_s, {none} AS bsz_s, {none} AS asz_s,
                        trim(last) AS last_s, trim(volume) AS vol_s, trim(openinterest) AS oi_s,
                        trim({und_px}) AS und_s, trim({iv}) AS iv_s, trim(delta) AS delta_s, trim(gamma) AS gamma_s,
                        trim(theta) AS theta_s, trim(vega) AS vega_s, upper(trim({flag})) AS flag
                 FROM raw"
            )
        }
        Layout::YahooBars | Layout::GenericBars | Layout::IvHistory | Layout::CorrHistory => {
            unreachable!("not a chain layout")
        }
    })
}

/// SQL parsing a date written as YYYY-MM-DD, MM/DD/YYYY (with or without a time after
/// it) or YYYYMMDD.
fn date_sql(x: &str) -> String {
    format!(
        "coalesce(try_strptime({x}, '%Y-%m-%d'), try_strptime({x}, '%m/%d/%Y'),
            try_strptime(split_part({x}, ' ', 1), '%m/%d/%Y'), try_strptime(split_part({x}, ' ', 1), '%Y-%m-%d'),
            try_strptime({x}, '%Y%m%d'))::DATE"
    )
}

/// Import each of `paths` (a failure stops at that file: the files before it stay
/// imported, nothing of it is written).
pub fn import_file(
    conn: &Connection,
    path: &Path,
    forced: Option<Layout>,
    symbol: Option<&str>,
) -> Result<ImportSummary, ImportError> {
    let file = std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string();
    let ferr = |message: String| ImportError::File {
        file: file.clone(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| ferr(e.to_string()))?;
    if meta.is_dir() {
        return Err(ferr("is a folder; name the files to import".into()));
    }
    let lower = file.to_ascii_lowercase();
    if lower.ends_with(".zip") || lower.ends_with(".parquet") {
        return Err(ferr(
            "zip archives and Parquet chains are not imported yet: unzip the CSV (or export it) and import that".into(),
        ));
    }
    let sha = sha256_file(path).map_err(|e| ferr(e.to_string()))?;
    if !lower.ends_with(".gz") {
        let mut head = vec![0u8; 4096];
        let n = std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .map_err(|e| ferr(e.to_string()))?;
        if head[..n].contains(&0) {
            return Err(ferr(
                "not a text file (it has NUL bytes): not a chain or bar file".into(),
            ));
        }
    }
    let header: Option<String> = conn
        .query_row(
            "SELECT l FROM read_csv(?, header = false, auto_detect = false, columns = {'l': 'VARCHAR'},
                 delim = chr(30), quote = '', escape = '', strict_mode = false) LIMIT 1",
            params![file],
            |r| r.get(0),
        )
        .map_err(|e| ferr(format!("not a readable text file: {}", csv_error(&e.to_string()))))?;
    let header = header.ok_or_else(|| ferr("empty file".into()))?;
    if header.contains('\0')
        || header
            .chars()
            .any(|c| c.is_control() && c != '\t' && c != '\r')
    {
        return Err(ferr(
            "not a text file (binary bytes in its first line)".into(),
        ));
    }
    let cols = normalize_header(&header);
    let layout = match forced {
        Some(l) => l,
        None => Layout::detect(&cols).ok_or_else(|| ImportError::UnknownLayout {
            file: file.clone(),
            header: header.trim().chars().take(300).collect(),
        })?,
    };
    let unchanged: i64 = conn.query_row(
        "SELECT count(*) FROM imports WHERE file = ? AND sha256 = ? AND import_id = (SELECT max(import_id) FROM imports WHERE file = ?)",
        params![file, sha, file],
        |r| r.get(0),
    )?;
    if unchanged > 0 {
        let (kept, rejected, first, last, symbols): (i64, i64, Option<NaiveDate>, Option<NaiveDate>, String) =
            conn.query_row(
                "SELECT rows_kept, rows_rejected, first_date, last_date, symbols FROM imports WHERE file = ? ORDER BY import_id DESC LIMIT 1",
                params![file],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
        return Ok(ImportSummary {
            file,
            layout,
            kept,
            rejected,
            rules: Vec::new(),
            first_date: first,
            last_date: last,
            symbols: symbols
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            unchanged: true,
        });
    }
    // A correlation history names its index only through --symbol (its file name is
    // not a symbol: correlation_data.csv).
    let sym = symbol.map(|s| s.to_ascii_uppercase()).or_else(|| {
        (layout != Layout::CorrHistory)
            .then(|| symbol_from_file_name(path))
            .flatten()
    });
    conn.execute_batch("BEGIN TRANSACTION")?;
    let res = import_in_transaction(conn, &file, &sha, layout, &cols, sym.as_deref());
    match res {
        Ok(s) => {
            conn.execute_batch("COMMIT")?;
            Ok(s)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn import_in_transaction(
    conn: &Connection,
    file: &str,
    sha: &str,
    layout: Layout,
    cols: &[String],
    sym: Option<&str>,
) -> Result<ImportSummary, ImportError> {
    // Every column named and typed as text; the file's own names, normalized.
    let mut seen = std::collections::HashSet::new();
    let names: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let c = if c.is_empty() {
                format!("column{i}")
            } else {
                c.clone()
            };
            if seen.insert(c.clone()) {
                c
            } else {
                format!("{c}_{i}")
            }
        })
        .collect();
    let import_id: i64 = conn.query_row(
        "SELECT coalesce(max(import_id), 0) + 1 FROM imports",
        [],
        |r| r.get(0),
    )?;
    let summary = if layout.is_bars() {
        import_bars(conn, file, layout, &names, sym, import_id)?
    } else if matches!(layout, Layout::IvHistory | Layout::CorrHistory) {
        import_history(conn, file, layout, &names, sym)?
    } else {
        import_chain(conn, file, layout, &names, sym, import_id)?
    };
    conn.execute_batch("DROP VIEW IF EXISTS temp.raw; DROP TABLE IF EXISTS temp.rawt")?;
    conn.execute(
        "INSERT INTO imports VALUES (?, now()::TIMESTAMP, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            import_id,
            file,
            sha,
            layout.name(),
            summary.kept,
            summary.rejected,
            summary.first_date,
            summary.last_date,
            summary.symbols.join(","),
            crate::VERSION
        ],
    )?;
    conn.execute_batch("DROP TABLE IF EXISTS temp.norm")?;
    Ok(summary)
}

/// Columns some variants of a layout have and others do not (DataShop Quotes lack the
/// Calcs columns, old DeltaNeutral files lack IV and greeks, ...): `temp.raw` has each
/// one, NULL when the file does not, so a layout's SQL names them directly.
const OPTIONAL_COLUMNS: &[&str] = &[
    "implied_volatility_1545",
    "delta_1545",
    "gamma_1545",
    "theta_1545",
    "vega_1545",
    "active_underlying_price_1545",
    "implied_underlying_price_1545",
    "underlying_bid_1545",
    "underlying_ask_1545",
    "close",
    "trade_volume",
    "open_interest",
    "last",
    "volume",
    "openinterest",
    "iv",
    "ivmean",
    "impliedvol",
    "delta",
    "gamma",
    "theta",
    "vega",
    "exchange",
    "flags",
    "c_last",
    "p_last",
    "c_volume",
    "p_volume",
    "c_iv",
    "p_iv",
    "c_delta",
    "p_delta",
    "c_gamma",
    "p_gamma",
    "c_theta",
    "p_theta",
    "c_vega",
    "p_vega",
];

/// Read the file's columns that `sql` uses into `temp.rawt` (every line is still parsed
/// and its field count checked), and `temp.raw` over it with each row's `line` and the
/// [`OPTIONAL_COLUMNS`] the file lacks, as NULL.
fn load_raw(conn: &Connection, file: &str, names: &[String], sql: &str) -> Result<(), ImportError> {
    let used = |name: &str| {
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        sql.match_indices(name).any(|(i, _)| {
            let before = sql[..i].chars().next_back();
            let after = sql[i + name.len()..].chars().next();
            !before.is_some_and(ident) && !after.is_some_and(ident)
        })
    };
    let columns = names
        .iter()
        .map(|c| format!("{}: 'VARCHAR'", sql_str(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let quote = |n: &str| format!("\"{}\"", n.replace('"', "\"\""));
    let mut wanted: Vec<String> = names.iter().filter(|n| used(n)).map(|n| quote(n)).collect();
    if wanted.is_empty() {
        wanted.push(quote(&names[0]));
    }
    conn.execute_batch("DROP VIEW IF EXISTS temp.raw; DROP TABLE IF EXISTS temp.rawt")?;
    // A table's rows keep the file's order (insertion order is preserved) under
    // consecutive rowids, so rowid - first rowid + 2 is the line number (the header is
    // line 1). Rows written in a transaction start at an offset, hence the first rowid.
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE rawt AS
         SELECT {}
         FROM read_csv({}, header = false, skip = 1, auto_detect = false, columns = {{{columns}}},
                       delim = ',', quote = '\"', escape = '\"', strict_mode = true, null_padding = false,
                       comment = '', ignore_errors = false);",
        wanted.join(", "),
        sql_str(file)
    ))
    .map_err(|e| ImportError::File {
        file: file.to_string(),
        message: csv_error(&e.to_string()),
    })?;
    let first: Option<i64> = conn.query_row("SELECT min(rowid) FROM rawt", [], |r| r.get(0))?;
    let absent: String = OPTIONAL_COLUMNS
        .iter()
        .filter(|c| !names.iter().any(|n| n == *c))
        .map(|c| format!(", NULL::VARCHAR AS {c}"))
        .collect();
    conn.execute_batch(&format!(
        "CREATE TEMP VIEW raw AS SELECT (rowid - {} + 2)::BIGINT AS line, *{absent} FROM rawt",
        first.unwrap_or(0)
    ))?;
    Ok(())
}

fn require_columns(
    file: &str,
    layout: Layout,
    names: &[String],
    need: &[&str],
) -> Result<(), ImportError> {
    let missing: Vec<&str> = need
        .iter()
        .copied()
        .filter(|c| !names.iter().any(|n| n == c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ImportError::File {
        file: file.to_string(),
        message: format!(
            "the {} layout needs column(s) {} that the header does not have",
            layout.name(),
            missing.join(", ")
        ),
    })
}

/// The first line of `temp.norm` that repeats an earlier line's (date, symbol).
const FIRST_DUPLICATE: &str = "SELECT min(line), NULL::VARCHAR FROM (
    SELECT line, row_number() OVER (PARTITION BY date, symbol ORDER BY line) AS k FROM norm)
    WHERE k > 1";

/// An error at the first row `sql` finds, if it finds one: `sql` selects (line, the
/// value as text); no row, or a NULL line (from `min(line)`), means none. `problem`
/// says what is wrong with the value.
fn fail_at(
    conn: &Connection,
    file: &str,
    sql: &str,
    field: &str,
    problem: impl Fn(&str) -> String,
) -> Result<(), ImportError> {
    let row: Option<(Option<i64>, Option<String>)> = conn
        .query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((Some(line), value)) => Err(ImportError::Field {
            file: file.to_string(),
            line,
            field: field.to_string(),
            problem: problem(&value.unwrap_or_default()),
        }),
        _ => Ok(()),
    }
}

/// The first line where a field is present but does not parse, as an error.
/// `checks`: (field name, text expression, parsed expression).
fn first_bad_field(
    conn: &Connection,
    file: &str,
    checks: &[(&str, String, String)],
) -> Result<(), ImportError> {
    for (field, text, parsed) in checks {
        fail_at(
            conn,
            file,
            &format!(
                "SELECT line, {text} FROM norm WHERE coalesce({text}, '') <> '' AND {parsed} IS NULL ORDER BY line LIMIT 1"
            ),
            field,
            |v| format!("'{v}' does not parse"),
        )?;
    }
    Ok(())
}

/// (first date, last date, symbols) of an import.
type Coverage = (Option<NaiveDate>, Option<NaiveDate>, Vec<String>);

/// The first and last dates and the symbols of what `temp.norm` holds.
fn dates_and_symbols(
    conn: &Connection,
    date: &str,
    symbol: &str,
) -> Result<Coverage, duckdb::Error> {
    let (first, last) = conn.query_row(
        &format!("SELECT min({date}), max({date}) FROM norm"),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut s = conn.prepare(&format!("SELECT DISTINCT {symbol} FROM norm ORDER BY 1"))?;
    let symbols = s
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((first, last, symbols))
}

fn import_chain(
    conn: &Connection,
    file: &str,
    layout: Layout,
    names: &[String],
    sym: Option<&str>,
    import_id: i64,
) -> Result<ImportSummary, ImportError> {
    let need: &[&str] = match layout {
        Layout::OptionsDx => &[
            "quote_readtime",
            "quote_date",
            "underlying_last",
            "expire_date",
            "c_bid",
            "c_ask",
            "c_size",
            "strike",
            "p_bid",
            "p_ask",
            "p_size",
        ],
        Layout::DataShop => &[
            "underlying_symbol",
            "quote_date",
            "root",
            "expiration",
            "strike",
            "option_type",
            "bid_1545",
            "ask_1545",
            "bid_size_1545",
            "ask_size_1545",
        ],
        Layout::DeltaNeutralL2 => &[
            "underlyingsymbol",
            "underlyingprice",
            "optionroot",
            "type",
            "expiration",
            "datadate",
            "strike",
            "bid",
            "ask",
        ],
        Layout::DeltaNeutralL3 => &[
            "underlyingsymbol",
            "underlyingprice",
            "optionsymbol",
            "type",
            "expiration",
            "datadate",
            "strike",
            "bid",
            "ask",
        ],
        _ => &[
            "underlying",
            "underlying_last",
            "optionroot",
            "type",
            "expiration",
            "quotedate",
            "strike",
            "bid",
            "ask",
        ],
    };
    require_columns(file, layout, names, need)?;
    let select = chain_select(layout, sym).map_err(|m| ImportError::File {
        file: file.to_string(),
        message: m,
    })?;
    load_raw(conn, file, names, &select)?;
    // Snapshot times: the file's own (OptionsDX), else DataShop's 15:45 (15 minutes
    // before an early close) or the session's close.
    let dates: Vec<NaiveDate> = {
        let mut s = conn.prepare(&format!(
            "SELECT DISTINCT d FROM (SELECT {} AS d FROM ({select}) s) WHERE d IS NOT NULL ORDER BY 1",
            date_sql("as_of_s")
        ))?;
        let rows = s.query_map([], |r| r.get::<_, NaiveDate>(0))?;
        rows.collect::<Result<_, _>>()?
    };
    conn.execute_batch(
        "DROP TABLE IF EXISTS temp.snap; CREATE TEMP TABLE snap (as_of DATE, quote_time TIMESTAMP)",
    )?;
    for d in &dates {
        let session = calendar::session(*d)
            .map_err(|e| ImportError::File {
                file: file.to_string(),
                message: e.to_string(),
            })?
            .ok_or_else(|| ImportError::File {
                file: file.to_string(),
                message: format!("quote date {d} is not an NYSE session"),
            })?;
        let close: NaiveDateTime = d.and_time(session.close);
        let t = if layout == Layout::DataShop {
            close - chrono::Duration::minutes(15)
        } else {
            close
        };
        conn.execute("INSERT INTO snap VALUES (?, ?)", params![d, t])?;
    }
    let index_roots = INDEX_ROOTS
        .iter()
        .map(|r| sql_str(r))
        .collect::<Vec<_>>()
        .join(", ");
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE norm AS
         SELECT n.*, coalesce(n.file_time, snap.quote_time) AS quote_time,
                rpad(n.root, 6, ' ') || strftime(n.expiry, '%y%m%d') || n.pc
                    || lpad(CAST(round(n.strike * 1000) AS BIGINT)::VARCHAR, 8, '0') AS contract,
                n.root IN ({index_roots}) AS is_index,
                CASE WHEN n.flag = 'N' OR regexp_matches(n.root, '[0-9]') THEN 'nonstandard'
                     WHEN n.strike <= 0 THEN 'bad_strike'
                     WHEN n.expiry < n.as_of THEN 'expired'
                     WHEN n.bid IS NULL OR n.ask IS NULL THEN 'missing_price'
                     WHEN n.bid < 0 OR n.ask < 0 THEN 'negative_price'
                     WHEN n.ask = 0 THEN 'no_ask'
                     WHEN n.bid > n.ask THEN 'crossed'
                END AS rule
         FROM (SELECT *, {as_of} AS as_of, {expiry} AS expiry,
                TRY_CAST(strike_s AS DECIMAL(18,4)) AS strike, TRY_CAST(bid_s AS DECIMAL(18,4)) AS bid,
                TRY_CAST(ask_s AS DECIMAL(18,4)) AS ask, TRY_CAST(TRY_CAST(bsz_s AS DOUBLE) AS INTEGER) AS bid_size,
                TRY_CAST(TRY_CAST(asz_s AS DOUBLE) AS INTEGER) AS ask_size, TRY_CAST(last_s AS DECIMAL(18,4)) AS last,
                TRY_CAST(TRY_CAST(vol_s AS DOUBLE) AS BIGINT) AS volume, TRY_CAST(TRY_CAST(oi_s AS DOUBLE) AS BIGINT) AS open_interest,
                TRY_CAST(und_s AS DECIMAL(18,4)) AS underlying_price, TRY_CAST(iv_s AS DOUBLE) AS iv,
                TRY_CAST(delta_s AS DOUBLE) AS delta, TRY_CAST(gamma_s AS DOUBLE) AS gamma,
                TRY_CAST(theta_s AS DOUBLE) AS theta, TRY_CAST(vega_s AS DOUBLE) AS vega,
                try_strptime(time_s, '%Y-%m-%d %H:%M') AS file_time
         FROM ({select}) s) n LEFT JOIN snap USING (as_of)",
        as_of = date_sql("as_of_s"),
        expiry = date_sql("expiry_s"),
        index_roots = index_roots,
    ))?;
    let num = |f: &str, t: &str, p: &str| (f.to_string(), t.to_string(), p.to_string());
    let mut checks = vec![
        num("quote date", "as_of_s", "as_of"),
        num("expiration", "expiry_s", "expiry"),
        num("strike", "strike_s", "strike"),
        num("bid", "bid_s", "bid"),
        num("ask", "ask_s", "ask"),
        num("bid size", "bsz_s", "bid_size"),
        num("ask size", "asz_s", "ask_size"),
        num("last", "last_s", "last"),
        num("volume", "vol_s", "volume"),
        num("open interest", "oi_s", "open_interest"),
        num("underlying price", "und_s", "underlying_price"),
        num("implied volatility", "iv_s", "iv"),
        num("delta", "delta_s", "delta"),
        num("gamma", "gamma_s", "gamma"),
        num("theta", "theta_s", "theta"),
        num("vega", "vega_s", "vega"),
        num(
            "option type",
            "pc",
            "CASE WHEN pc IN ('C', 'P') THEN pc END",
        ),
    ];
    if layout == Layout::OptionsDx {
        checks.push(num("quote_readtime", "time_s", "file_time"));
    }
    let checks: Vec<(&str, String, String)> = checks
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.clone(), c.clone()))
        .collect();
    first_bad_field(conn, file, &checks)?;
    for (field, expr) in [
        ("quote date", "as_of_s"),
        ("expiration", "expiry_s"),
        ("strike", "strike_s"),
        ("option type", "pc"),
    ] {
        let line: Option<i64> = conn.query_row(
            &format!("SELECT min(line) FROM norm WHERE coalesce({expr}, '') = ''"),
            [],
            |r| r.get(0),
        )?;
        if let Some(line) = line {
            return Err(ImportError::Field {
                file: file.to_string(),
                line,
                field: field.to_string(),
                problem: "empty".into(),
            });
        }
    }
    // A second quote for a contract at the same time (among rows that pass the other
    // rules): looked for with a hash aggregate first, ranked only when there is one.
    let dups: i64 = conn.query_row(
        "SELECT count(*) FROM (SELECT 1 FROM norm WHERE rule IS NULL GROUP BY quote_time, contract HAVING count(*) > 1)",
        [],
        |r| r.get(0),
    )?;
    if dups > 0 {
        conn.execute_batch(
            "UPDATE norm SET rule = 'duplicate' FROM (
                 SELECT line, pc, row_number() OVER (PARTITION BY quote_time, contract ORDER BY line) AS k
                 FROM norm WHERE rule IS NULL) d
             WHERE norm.line = d.line AND norm.pc = d.pc AND d.k > 1 AND norm.rule IS NULL",
        )?;
    }
    // Importing a file again replaces its rows.
    for t in ["option_archive", "import_rejects"] {
        conn.execute(&format!("DELETE FROM {t} WHERE file = ?"), params![file])?;
    }
    let kept = conn.execute(
        "INSERT INTO option_archive
         SELECT as_of, quote_time, underlying, contract, root, expiry, strike, pc,
                CASE WHEN is_index THEN 'european' ELSE 'american' END,
                CASE WHEN is_index THEN 'cash' ELSE 'physical' END, 100,
                bid, ask, bid_size, ask_size, last, volume, open_interest, underlying_price,
                iv, delta, gamma, theta, vega, ?, ?, line, ?
         FROM norm WHERE rule IS NULL ORDER BY as_of, quote_time, underlying, expiry, pc, strike",
        params![layout.name(), file, import_id],
    )? as i64;
    let rejected = conn.execute(
        "INSERT INTO import_rejects
         SELECT ?, ?, line, rule,
                CASE rule WHEN 'crossed' THEN 'bid ' || bid || ' above ask ' || ask
                          WHEN 'no_ask' THEN 'ask is 0: no market'
                          WHEN 'expired' THEN 'expiry ' || expiry || ' before the quote date ' || as_of
                          WHEN 'nonstandard' THEN 'non-standard or adjusted contract (' || root || coalesce(', flag ' || flag, '') || ')'
                          WHEN 'duplicate' THEN 'a second quote for ' || contract || ' at ' || quote_time
                          WHEN 'negative_price' THEN 'a negative bid or ask'
                          WHEN 'missing_price' THEN 'no bid or no ask'
                          ELSE 'strike ' || strike END,
                concat_ws(',', as_of_s, underlying, root, expiry_s, strike_s, pc, bid_s, ask_s, und_s)
         FROM norm WHERE rule IS NOT NULL ORDER BY line",
        params![import_id, file],
    )? as i64;
    let rules = {
        let mut s = conn.prepare("SELECT rule, count(*) FROM norm WHERE rule IS NOT NULL GROUP BY rule ORDER BY 2 DESC, 1")?;
        let rows = s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let (first_date, last_date, symbols) = dates_and_symbols(conn, "as_of", "underlying")?;
    conn.execute_batch("DROP TABLE IF EXISTS temp.snap")?;
    Ok(ImportSummary {
        file: file.to_string(),
        layout,
        kept,
        rejected,
        rules,
        first_date,
        last_date,
        symbols,
        unchanged: false,
    })
}

fn import_bars(
    conn: &Connection,
    file: &str,
    layout: Layout,
    names: &[String],
    sym: Option<&str>,
    import_id: i64,
) -> Result<ImportSummary, ImportError> {
    require_columns(
        file,
        layout,
        names,
        &["date", "open", "high", "low", "close", "volume"],
    )?;
    let has = |c: &str| names.iter().any(|n| n == c);
    let symbol = if has("symbol") {
        "upper(trim(symbol))".to_string()
    } else {
        let s = sym.ok_or_else(|| ImportError::File {
            file: file.to_string(),
            message:
                "a bar file without a symbol column: name the file <SYMBOL>.csv or pass --symbol"
                    .into(),
        })?;
        sql_str(s)
    };
    let opt = |c: &str, default: &str| {
        if has(c) {
            format!("nullif(trim(\"{c}\"), '')")
        } else {
            format!("'{default}'")
        }
    };
    let mut needed: Vec<&str> = vec!["date", "open", "high", "low", "close", "volume"];
    needed.extend(
        ["symbol", "dividend", "split_ratio"]
            .into_iter()
            .filter(|c| has(c)),
    );
    load_raw(conn, file, names, &needed.join(" "))?;
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE norm AS
         SELECT line, trim(date) AS date_s, {symbol} AS symbol, trim(open) AS open_s, trim(high) AS high_s,
                trim(low) AS low_s, trim(close) AS close_s, trim(volume) AS vol_s,
                coalesce({div}, '0') AS div_s, coalesce({split}, '1') AS split_s
         FROM raw",
        div = opt("dividend", "0"),
        split = opt("split_ratio", "1"),
    ))?;
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE norm AS
         SELECT *, {date} AS date, TRY_CAST(open_s AS DECIMAL(18,4)) AS open, TRY_CAST(high_s AS DECIMAL(18,4)) AS high,
                TRY_CAST(low_s AS DECIMAL(18,4)) AS low, TRY_CAST(close_s AS DECIMAL(18,4)) AS close,
                TRY_CAST(TRY_CAST(vol_s AS DOUBLE) AS BIGINT) AS volume, TRY_CAST(div_s AS DECIMAL(18,4)) AS dividend,
                TRY_CAST(split_s AS DOUBLE) AS split_ratio
         FROM norm",
        date = date_sql("date_s")
    ))?;
    let checks: Vec<(&str, String, String)> = [
        ("date", "date_s", "date"),
        ("open", "open_s", "open"),
        ("high", "high_s", "high"),
        ("low", "low_s", "low"),
        ("close", "close_s", "close"),
        ("volume", "vol_s", "volume"),
        ("dividend", "div_s", "dividend"),
        ("split_ratio", "split_s", "split_ratio"),
    ]
    .iter()
    .map(|(a, b, c)| (*a, b.to_string(), c.to_string()))
    .collect();
    first_bad_field(conn, file, &checks)?;
    fail_at(conn, file, "SELECT min(line), NULL::VARCHAR FROM norm WHERE date IS NULL OR open IS NULL OR high IS NULL OR low IS NULL OR close IS NULL
            OR NOT (low <= least(open, close) AND high >= greatest(open, close) AND low > 0) OR split_ratio <= 0", "open/high/low/close", |_| "missing, or not low ≤ open, close ≤ high with a positive low".into())?;
    fail_at(conn, file, FIRST_DUPLICATE, "date", |_| {
        "a second bar for the same date and symbol".into()
    })?;
    conn.execute("DELETE FROM archive_bars WHERE file = ?", params![file])?;
    // Another file's bars for the same days give way to this one's.
    conn.execute_batch(
        "DELETE FROM archive_bars b WHERE EXISTS (SELECT 1 FROM norm n WHERE n.date = b.date AND n.symbol = b.symbol)",
    )?;
    let kept = conn.execute(
        "INSERT INTO archive_bars
         SELECT date, symbol, open, high, low, close, coalesce(volume, 0), coalesce(dividend, 0), coalesce(split_ratio, 1), ?, ?, line, ?
         FROM norm ORDER BY symbol, date",
        params![layout.name(), file, import_id],
    )? as i64;
    let (first_date, last_date, symbols) = dates_and_symbols(conn, "date", "symbol")?;
    Ok(ImportSummary {
        file: file.to_string(),
        layout,
        kept,
        rejected: 0,
        rules: Vec::new(),
        first_date,
        last_date,
        symbols,
        unchanged: false,
    })
}

/// A user's own history, to seed IV rank and the correlation Z-score from day one: ATM
/// IVs into `iv_history` (source `import:<file>`), implied correlations into
/// `correlation` (basis `import`, for the index `--symbol`, QQQ by default). Values are
/// fractions (0.185 = 18.5 vol points, 0.62 = a correlation of 0.62).
fn import_history(
    conn: &Connection,
    file: &str,
    layout: Layout,
    names: &[String],
    sym: Option<&str>,
) -> Result<ImportSummary, ImportError> {
    let has = |c: &str| names.iter().any(|n| n == c);
    let pick = |cands: &[&'static str]| cands.iter().copied().find(|c| has(c));
    let (value, lo, hi, what) = match layout {
        Layout::IvHistory => (
            pick(&["atm_iv_30d", "atm_iv", "iv"]).unwrap_or("iv"),
            0.0,
            5.0,
            "a 30-day ATM IV as a fraction (0.185 for 18.5%)",
        ),
        _ => (
            pick(&["implied_corr", "correlation", "value"]).unwrap_or("value"),
            -1.0,
            1.0,
            "a correlation between -1 and 1",
        ),
    };
    let symbol = if layout == Layout::IvHistory {
        "upper(trim(symbol))".to_string()
    } else {
        // The index is --symbol's, QQQ otherwise.
        sql_str(sym.unwrap_or("QQQ"))
    };
    let needed = if layout == Layout::IvHistory {
        format!("date symbol {value}")
    } else {
        format!("date {value}")
    };
    load_raw(conn, file, names, &needed)?;
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE norm AS
         SELECT line, trim(date) AS date_s, {symbol} AS symbol, trim({value}) AS value_s,
                {date} AS date, TRY_CAST(trim({value}) AS DOUBLE) AS value
         FROM raw",
        date = date_sql("trim(date)"),
    ))?;
    let checks = vec![
        ("date", "date_s".to_string(), "date".to_string()),
        (value, "value_s".to_string(), "value".to_string()),
    ];
    first_bad_field(conn, file, &checks)?;
    fail_at(
        conn,
        file,
        &format!(
            "SELECT line, value::VARCHAR FROM norm WHERE NOT (value > {lo} AND value <= {hi}) OR NOT isfinite(value) ORDER BY line LIMIT 1"
        ),
        value,
        |v| format!("{v} is not {what}"),
    )?;
    fail_at(
        conn,
        file,
        "SELECT min(line), NULL::VARCHAR FROM norm WHERE date IS NULL OR value IS NULL OR coalesce(symbol, '') = ''",
        "date/value",
        |_| "empty".into(),
    )?;
    fail_at(conn, file, FIRST_DUPLICATE, "date", |_| {
        "a second value for the same date".into()
    })?;
    let source = format!("import:{file}");
    let kept = if layout == Layout::IvHistory {
        conn.execute("DELETE FROM iv_history WHERE source = ?", params![source])?;
        conn.execute(
            "INSERT INTO iv_history SELECT date, symbol, value, ?, 0 FROM norm ORDER BY symbol, date",
            params![source],
        )? as i64
    } else {
        let note = format!("imported from {file}");
        conn.execute(
            "DELETE FROM correlation WHERE basis = 'import' AND note = ?",
            params![note],
        )?;
        conn.execute(
            "INSERT INTO correlation
             SELECT date, date + TIME '16:00', symbol, 'import', value, NULL, 0, 0, 0, NULL, NULL, NULL, ?, 0
             FROM norm ORDER BY date",
            params![note],
        )? as i64
    };
    let (first_date, last_date, symbols) = dates_and_symbols(conn, "date", "symbol")?;
    Ok(ImportSummary {
        file: file.to_string(),
        layout,
        kept,
        rejected: 0,
        rules: Vec::new(),
        first_date,
        last_date,
        symbols,
        unchanged: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_detected_from_their_headers() {
        let d = |h: &str| Layout::detect(&normalize_header(h));
        assert_eq!(
            d("[QUOTE_UNIXTIME], [QUOTE_READTIME], [QUOTE_DATE], [QUOTE_TIME_HOURS], [UNDERLYING_LAST], [EXPIRE_DATE], [EXPIRE_UNIX], [DTE], [C_DELTA], [C_GAMMA], [C_VEGA], [C_THETA], [C_RHO], [C_IV], [C_VOLUME], [C_LAST], [C_SIZE], [C_BID], [C_ASK], [STRIKE], [P_BID], [P_ASK], [P_SIZE]"),
            Some(Layout::OptionsDx)
        );
        assert_eq!(
            d("underlying_symbol,quote_date,root,expiration,strike,option_type,open,high,low,close,trade_volume,bid_size_1545,bid_1545,ask_size_1545,ask_1545"),
            Some(Layout::DataShop)
        );
        assert_eq!(
            d("UnderlyingSymbol,UnderlyingPrice,Exchange,OptionRoot,OptionExt,Type,Expiration,DataDate,Strike,Last,Bid,Ask,Volume,OpenInterest,IV,Delta,Gamma,Theta,Vega"),
            Some(Layout::DeltaNeutralL2)
        );
        assert_eq!(
            d("UnderlyingSymbol,UnderlyingPrice,Flags,OptionSymbol,Type,Expiration,DataDate,Strike,Last,Bid,Ask,Volume,OpenInterest,T1OpenInterest,IVMean,IVBid,IVAsk,Delta,Gamma,Theta,Vega,AKA"),
            Some(Layout::DeltaNeutralL3)
        );
        assert_eq!(
            d("underlying,underlying_last, exchange,optionroot,optionext,type,expiration,quotedate,strike,last,bid,ask,volume,openinterest,impliedvol,delta,gamma,theta,vega,optionalias"),
            Some(Layout::DeltaNeutralLower)
        );
        assert_eq!(
            d("Date,Open,High,Low,Close,Adj Close,Volume"),
            Some(Layout::YahooBars)
        );
        assert_eq!(
            d("date,symbol,open,high,low,close,volume"),
            Some(Layout::GenericBars)
        );
        assert_eq!(d("a,b,c"), None);
        assert_eq!(Layout::parse("optionsdx"), Ok(Layout::OptionsDx));
        assert!(Layout::parse("nope").unwrap_err().contains("datashop"));
    }

    #[test]
    fn a_file_name_names_the_underlying() {
        assert_eq!(
            symbol_from_file_name(Path::new("/x/spy_eod_202301.txt")),
            Some("SPY".into())
        );
        assert_eq!(
            symbol_from_file_name(Path::new("QQQ.csv")),
            Some("QQQ".into())
        );
        assert_eq!(symbol_from_file_name(Path::new("2024.csv")), None);
    }
}
