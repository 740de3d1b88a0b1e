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
    /// LEAN's option universe CSVs (`#expiry,strike,right,open,...,implied_volatility,
    /// delta,...`, date and ticker from the path; or the converted layout with a `date`
    /// column): a close, the vendor's IV and greeks and the underlying's price, no bid/ask.
    LeanUniverse,
    /// LEAN/AlgoSeek daily option quotes: the raw zips
    /// (`<ticker>_<year>_quote_<style>.zip`, trade and open-interest zips beside it
    /// joined) or the converted wide CSV (`quote_date,underlying,expiration,...,bid_close,
    /// ...,ask_close,...`).
    LeanChain,
    /// LEAN's daily equity zip (`spy.zip`: headerless `YYYYMMDD 00:00,open*10000,...`).
    LeanBars,
    /// One-minute bars (CSV or Parquet), into `archive_minute_bars`.
    MinuteBars,
    /// Any one-row-per-contract chain, its columns named by a [`ColumnMap`] (`--map`).
    Mapped,
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
    ("lean-universe", Layout::LeanUniverse),
    ("lean-chain", Layout::LeanChain),
    ("lean-daily-bars", Layout::LeanBars),
    ("minute-bars", Layout::MinuteBars),
    ("mapped", Layout::Mapped),
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
        matches!(
            self,
            Layout::YahooBars | Layout::GenericBars | Layout::LeanBars
        )
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
        } else if has("expiry")
            && has("strike")
            && has("right")
            && has("implied_volatility")
            && has("close")
        {
            Some(Layout::LeanUniverse)
        } else if has("quote_date")
            && has("expiration")
            && has("right")
            && has("bid_close")
            && has("ask_close")
        {
            Some(Layout::LeanChain)
        } else if MINUTE_TIME_COLUMNS[..4].iter().any(|c| has(c))
            && has("open")
            && has("high")
            && has("low")
            && has("close")
        {
            Some(Layout::MinuteBars)
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

/// The columns a minute bar's time can be in, in order of preference (`date` only when
/// its values carry a time of day).
const MINUTE_TIME_COLUMNS: &[&str] = &["time_et", "datetime", "timestamp", "time", "date"];

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
    /// Instead of rows: what happened to the file (a LEAN trade or open-interest zip
    /// is joined into the import of the quote zip beside it).
    pub note: Option<String>,
}

/// Where an import reads from: the file the user named (`file`, recorded and named in
/// errors) or a temporary file converted or extracted from it (`src`), CSV or Parquet.
struct Input<'a> {
    file: &'a str,
    progress: &'a Progress,
    src: &'a str,
    parquet: bool,
    /// The user's column mapping (the `mapped` layout).
    map: Option<&'a ColumnMap>,
    /// The quote date a file's name gives (LEAN universe files: `YYYYMMDD.csv`).
    file_date: Option<String>,
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

/// The normalized SELECT for a chain layout: one row per contract with the fields as
/// text (`line` is the file's line number). `sym` is the underlying for layouts that do
/// not carry it.
fn chain_select(
    layout: Layout,
    sym: Option<&str>,
    file_date: Option<&str>,
    map: Option<&ColumnMap>,
) -> Result<String, String> {
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
        Layout::LeanUniverse => {
            // The quote date: the `date` column (converted files) or the file's name
            // (`YYYYMMDD.csv`); the underlying's row (no expiry, strike or right) gives
            // each date's underlying price and is not an option.
            let ticker = sym.ok_or(
                "a LEAN universe file names its ticker by its folder (universes/<ticker>/YYYYMMDD.csv): keep that path or pass --symbol",
            )?;
            let (und, root) = lean_underlying(ticker);
            let day = match file_date {
                Some(d) => format!("coalesce(nullif(trim(date), ''), {})", sql_str(d)),
                None => "trim(date)".to_string(),
            };
            format!(
                "SELECT * EXCLUDE (is_und) FROM (
                   SELECT line, {day} AS as_of_s, NULL::VARCHAR AS time_s, {und} AS underlying, {root} AS root,
                          trim(expiry) AS expiry_s, trim(strike) AS strike_s, upper(left(trim(\"right\"), 1)) AS pc,
                          {none} AS bid_s, {none} AS ask_s, {none} AS bsz_s, {none} AS asz_s,
                          trim(close) AS last_s, trim(volume) AS vol_s, trim(open_interest) AS oi_s,
                          max(CASE WHEN coalesce(trim(expiry), '') = '' AND coalesce(trim(strike), '') = '' AND coalesce(trim(\"right\"), '') = ''
                                   THEN nullif(trim(close), '') END) OVER (PARTITION BY {day}) AS und_s,
                          trim(implied_volatility) AS iv_s, trim(delta) AS delta_s, trim(gamma) AS gamma_s,
                          trim(theta) AS theta_s, trim(vega) AS vega_s, NULL::VARCHAR AS flag,
                          coalesce(trim(expiry), '') = '' AND coalesce(trim(strike), '') = '' AND coalesce(trim(\"right\"), '') = '' AS is_und
                   FROM raw) WHERE NOT is_und",
                und = sql_str(&und),
                root = sql_str(&root),
            )
        }
        Layout::LeanChain => {
            // LEAN quote bars: an empty bid (size 0) under an ask is no bid, 0; a row
            // without an ask (a trade or open interest alone) is no market (missing_price). No underlying price: the replay source takes it
            // from a LEAN universe file or a daily bar of the same day.
            format!(
                "SELECT line, trim(quote_date) AS as_of_s, NULL::VARCHAR AS time_s, upper(trim(underlying)) AS underlying,
                        coalesce(nullif(upper(trim(root)), ''), upper(trim(underlying))) AS root,
                        trim(expiration) AS expiry_s, trim(strike) AS strike_s, upper(left(trim(\"right\"), 1)) AS pc,
                        CASE WHEN coalesce(trim(bid_close), '') = '' AND coalesce(trim(ask_close), '') <> '' THEN '0' ELSE trim(bid_close) END AS bid_s,
                        trim(ask_close) AS ask_s,
                        trim(bid_size) AS bsz_s, trim(ask_size) AS asz_s, trim(trade_close) AS last_s,
                        trim(volume) AS vol_s, trim(open_interest) AS oi_s, trim(underlying_price) AS und_s,
                        {none} AS iv_s, {none} AS delta_s, {none} AS gamma_s, {none} AS theta_s, {none} AS vega_s,
                        NULL::VARCHAR AS flag
                 FROM raw"
            )
        }
        Layout::Mapped => {
            let map = map.ok_or("the mapped layout needs --map")?;
            let q = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
            let col = |f: &str| {
                map.get(f)
                    .map(|c| format!("trim({})", q(c)))
                    .unwrap_or_else(|| none.to_string())
            };
            let underlying = match (map.get("underlying"), sym) {
                (Some(c), _) => format!("ltrim(upper(trim({})), '^')", q(c)),
                (None, Some(s)) => sql_str(s),
                (None, None) => {
                    return Err("the mapping names no underlying column: add underlying=<column> to --map, or pass --symbol".into())
                }
            };
            let root = match map.get("root") {
                Some(c) => format!("coalesce(nullif(upper(trim({})), ''), {underlying})", q(c)),
                None => underlying.clone(),
            };
            format!(
                "SELECT line, {date} AS as_of_s, NULL::VARCHAR AS time_s, {underlying} AS underlying, {root} AS root,
                        {expiry} AS expiry_s, {strike} AS strike_s, upper(left({right}, 1)) AS pc,
                        {bid} AS bid_s, {ask} AS ask_s, {bsz} AS bsz_s, {asz} AS asz_s, {last} AS last_s,
                        {vol} AS vol_s, {oi} AS oi_s, {und} AS und_s, {iv} AS iv_s, {delta} AS delta_s,
                        {gamma} AS gamma_s, {theta} AS theta_s, {vega} AS vega_s, NULL::VARCHAR AS flag
                 FROM raw",
                date = col("quote_date"),
                expiry = col("expiry"),
                strike = col("strike"),
                right = col("right"),
                bid = col("bid"),
                ask = col("ask"),
                bsz = col("bid_size"),
                asz = col("ask_size"),
                last = col("last"),
                vol = col("volume"),
                oi = col("open_interest"),
                und = col("underlying_price"),
                iv = col("iv"),
                delta = col("delta"),
                gamma = col("gamma"),
                theta = col("theta"),
                vega = col("vega"),
            )
        }
        Layout::YahooBars
        | Layout::GenericBars
        | Layout::LeanBars
        | Layout::MinuteBars
        | Layout::IvHistory
        | Layout::CorrHistory => {
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
    import_file_mapped(conn, path, forced, symbol, None)
}

/// The fields of the archive a `--map` can name, and whether each is required.
pub const MAP_FIELDS: &[(&str, bool)] = &[
    ("quote_date", true),
    ("expiry", true),
    ("strike", true),
    ("right", true),
    ("bid", true),
    ("ask", true),
    ("underlying", false),
    ("root", false),
    ("bid_size", false),
    ("ask_size", false),
    ("last", false),
    ("volume", false),
    ("open_interest", false),
    ("underlying_price", false),
    ("iv", false),
    ("delta", false),
    ("gamma", false),
    ("theta", false),
    ("vega", false),
];

/// A chain layout given by the user: archive field → the file's column (normalized as
/// headers are: trimmed, lower case).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnMap(pub Vec<(String, String)>);

impl ColumnMap {
    /// `quote_date=Date,expiry=Expiration,strike=Strike,right=Type,bid=Bid,ask=Ask,...`
    pub fn parse(spec: &str) -> Result<ColumnMap, String> {
        let known = || {
            MAP_FIELDS
                .iter()
                .map(|(f, req)| if *req { format!("{f}*") } else { f.to_string() })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out: Vec<(String, String)> = Vec::new();
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (f, c) = pair
                .split_once('=')
                .ok_or_else(|| format!("--map: '{pair}' is not field=column"))?;
            let f = f.trim().to_ascii_lowercase();
            let c = normalize_header(c).join(",");
            if !MAP_FIELDS.iter().any(|(k, _)| *k == f) {
                return Err(format!(
                    "--map: unknown field '{f}'; the fields are {} (* required)",
                    known()
                ));
            }
            if c.is_empty() {
                return Err(format!("--map: field '{f}' names no column"));
            }
            if out.iter().any(|(k, _)| *k == f) {
                return Err(format!("--map: field '{f}' given twice"));
            }
            out.push((f, c));
        }
        let missing: Vec<&str> = MAP_FIELDS
            .iter()
            .filter(|(f, req)| *req && !out.iter().any(|(k, _)| k == f))
            .map(|(f, _)| *f)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "--map: required field(s) {} missing; the fields are {} (* required)",
                missing.join(", "),
                known()
            ));
        }
        Ok(ColumnMap(out))
    }

    fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, c)| c.as_str())
    }
}

/// [`import_file`] with a column mapping: a file imported through `map` is read as the
/// `mapped` layout whatever its header.
pub fn import_file_mapped(
    conn: &Connection,
    path: &Path,
    forced: Option<Layout>,
    symbol: Option<&str>,
    map: Option<&ColumnMap>,
) -> Result<ImportSummary, ImportError> {
    let forced = if map.is_some() {
        Some(Layout::Mapped)
    } else {
        forced
    };
    if forced == Some(Layout::Mapped) && map.is_none() {
        return Err(ImportError::File {
            file: path.display().to_string(),
            message: "the mapped layout needs --map field=column,...".into(),
        });
    }
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
    let progress = Progress::new(path);
    // A zip is converted (LEAN) or its one file extracted (DataShop, ...) to a temporary
    // file read in its place; the zip is what is recorded.
    let staged = if lower.ends_with(".zip") {
        progress.phase("unzipping");
        match stage_zip(path, &file, &progress)? {
            Stage::Joined(note) => {
                progress.done();
                return Ok(ImportSummary {
                    file,
                    layout: Layout::LeanChain,
                    kept: 0,
                    rejected: 0,
                    rules: Vec::new(),
                    first_date: None,
                    last_date: None,
                    symbols: Vec::new(),
                    unchanged: false,
                    note: Some(note),
                });
            }
            Stage::File(s) => Some(s),
        }
    } else {
        None
    };
    let parquet = lower.ends_with(".parquet")
        || staged
            .as_ref()
            .is_some_and(|s| s.tmp.0.extension().is_some_and(|e| e == "parquet"));
    let src = staged
        .as_ref()
        .map(|s| s.tmp.0.display().to_string())
        .unwrap_or_else(|| file.clone());
    let sha = match &staged {
        Some(s) => s.sha.clone(),
        None => sha256_file(path).map_err(|e| ferr(e.to_string()))?,
    };
    if !src.to_ascii_lowercase().ends_with(".gz") && !parquet {
        let mut head = vec![0u8; 4096];
        let n = std::fs::File::open(&src)
            .and_then(|mut f| f.read(&mut head))
            .map_err(|e| ferr(e.to_string()))?;
        if head[..n].contains(&0) {
            return Err(ferr(
                "not a text file (it has NUL bytes): not a chain or bar file".into(),
            ));
        }
    }
    // The header, and the first data line's fields (a bar file's dates with a time of
    // day are minute bars).
    let (header, first_row): (String, Vec<String>) = if parquet {
        let mut st =
            conn.prepare("SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet(?))")?;
        let cols = st
            .query_map(params![src], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                ferr(format!(
                    "not a readable Parquet file: {}",
                    crate::text::one_line(&e.to_string())
                ))
            })?;
        let select = cols
            .iter()
            .map(|c| format!("CAST(\"{}\" AS VARCHAR)", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ");
        let mut first = Vec::new();
        if !cols.is_empty() {
            let mut st = conn.prepare(&format!("SELECT {select} FROM read_parquet(?) LIMIT 1"))?;
            let mut rows = st.query(params![src])?;
            if let Some(r) = rows.next()? {
                for i in 0..cols.len() {
                    first.push(r.get::<_, Option<String>>(i)?.unwrap_or_default());
                }
            }
        }
        (cols.join(","), first)
    } else {
        let mut st = conn.prepare(
            "SELECT l FROM read_csv(?, header = false, auto_detect = false, columns = {'l': 'VARCHAR'},
                 delim = chr(30), quote = '', escape = '', strict_mode = false) LIMIT 2",
        )?;
        let lines: Vec<Option<String>> = st
            .query_map(params![src], |r| r.get(0))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                ferr(format!(
                    "not a readable text file: {}",
                    csv_error(&e.to_string())
                ))
            })?;
        let header = lines
            .first()
            .cloned()
            .flatten()
            .ok_or_else(|| ferr("empty file".into()))?;
        let first = lines
            .get(1)
            .cloned()
            .flatten()
            .map(|l| l.split(',').map(|f| f.trim().to_string()).collect())
            .unwrap_or_default();
        (header, first)
    };
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
    let layout = match forced.or(staged.as_ref().and_then(|s| s.layout)) {
        Some(l) => l,
        None => {
            let l = Layout::detect(&cols).ok_or_else(|| ImportError::UnknownLayout {
                file: file.clone(),
                header: header.trim().chars().take(300).collect(),
            })?;
            // A bar file whose dates carry a time of day holds minute bars.
            let date_has_time = cols
                .iter()
                .position(|c| c == "date")
                .and_then(|i| first_row.get(i))
                .is_some_and(|v| {
                    let t = v.trim_matches('"');
                    t.contains(':') && !t.ends_with(" 00:00") && !t.ends_with(" 00:00:00")
                });
            if matches!(l, Layout::GenericBars | Layout::YahooBars) && date_has_time {
                Layout::MinuteBars
            } else {
                l
            }
        }
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
            note: None,
        });
    }
    // A correlation history names its index only through --symbol (its file name is
    // not a symbol: correlation_data.csv).
    let sym = symbol
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .or_else(|| staged.as_ref().and_then(|s| s.symbol.clone()))
        .or_else(|| {
            if layout == Layout::LeanUniverse {
                lean_universe_ticker(path)
            } else {
                (layout != Layout::CorrHistory)
                    .then(|| symbol_from_file_name(path))
                    .flatten()
            }
        });
    let file_date = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| s.len() == 8 && s.chars().all(|c| c.is_ascii_digit()))
        .map(String::from);
    let input = Input {
        file: &file,
        progress: &progress,
        src: &src,
        parquet,
        map,
        file_date,
    };
    progress.phase("reading");
    conn.execute_batch("BEGIN TRANSACTION")?;
    let res = import_in_transaction(conn, &input, &sha, layout, &cols, sym.as_deref());
    progress.done();
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
    inp: &Input,
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
    let file = inp.file;
    let summary = if layout.is_bars() {
        import_bars(conn, inp, layout, &names, sym, import_id)?
    } else if layout == Layout::MinuteBars {
        import_minute_bars(conn, inp, &names, sym, import_id)?
    } else if matches!(layout, Layout::IvHistory | Layout::CorrHistory) {
        import_history(conn, inp, layout, &names, sym)?
    } else {
        import_chain(conn, inp, layout, &names, sym, import_id)?
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
    "date",
    "root",
    "underlying_price",
    "trade_close",
    "bid_size",
    "ask_size",
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
fn load_raw(
    conn: &Connection,
    inp: &Input,
    names: &[String],
    sql: &str,
) -> Result<(), ImportError> {
    let file = inp.file;
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
    if inp.parquet {
        // Parquet: the file's own column names, each read as text (line = row + 1).
        let mut st =
            conn.prepare("SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet(?))")?;
        let orig = st
            .query_map(params![inp.src], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut select: Vec<String> = orig
            .iter()
            .zip(names)
            .filter(|(_, n)| used(n))
            .map(|(o, n)| format!("CAST({} AS VARCHAR) AS {}", quote(o), quote(n)))
            .collect();
        if select.is_empty() {
            select.push(format!(
                "CAST({} AS VARCHAR) AS {}",
                quote(&orig[0]),
                quote(&names[0])
            ));
        }
        conn.execute_batch(&format!(
            "CREATE TEMP TABLE rawt AS SELECT {} FROM read_parquet({})",
            select.join(", "),
            sql_str(inp.src)
        ))
        .map_err(|e| ImportError::File {
            file: file.to_string(),
            message: crate::text::one_line(&e.to_string()),
        })?;
    } else {
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
        sql_str(inp.src)
    ))
    .map_err(|e| ImportError::File {
        file: file.to_string(),
        message: csv_error(&e.to_string()),
    })?;
    }
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
    if checks.is_empty() {
        return Ok(());
    }
    // One scan for every check (the first bad line of each), then the value at the first
    // check, in order, that found one.
    let bad = |text: &str, parsed: &str| format!("coalesce({text}, '') <> '' AND {parsed} IS NULL");
    let firsts = checks
        .iter()
        .map(|(_, t, p)| format!("min(line) FILTER (WHERE {})", bad(t, p)))
        .collect::<Vec<_>>()
        .join(", ");
    let lines: Vec<Option<i64>> =
        conn.query_row(&format!("SELECT {firsts} FROM norm"), [], |r| {
            (0..checks.len()).map(|i| r.get(i)).collect()
        })?;
    for ((field, text, parsed), line) in checks.iter().zip(lines) {
        if let Some(line) = line {
            return fail_at(
                conn,
                file,
                &format!(
                    "SELECT line, {text} FROM norm WHERE line = {line} AND {} LIMIT 1",
                    bad(text, parsed)
                ),
                field,
                |v| format!("'{v}' does not parse"),
            );
        }
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
    inp: &Input,
    layout: Layout,
    names: &[String],
    sym: Option<&str>,
    import_id: i64,
) -> Result<ImportSummary, ImportError> {
    let file = inp.file;
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
        Layout::LeanUniverse => &["expiry", "strike", "right", "close", "implied_volatility"],
        Layout::Mapped => &[],
        Layout::LeanChain => &[
            "quote_date",
            "underlying",
            "expiration",
            "strike",
            "right",
            "bid_close",
            "ask_close",
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
    if let Some(map) = inp.map.filter(|_| layout == Layout::Mapped) {
        let missing: Vec<String> = map
            .0
            .iter()
            .filter(|(_, c)| !names.iter().any(|n| n == c))
            .map(|(f, c)| format!("{f}={c}"))
            .collect();
        if !missing.is_empty() {
            return Err(ImportError::File {
                file: file.to_string(),
                message: format!(
                    "--map names column(s) the header does not have: {}; the header's columns are {}",
                    missing.join(", "),
                    names.join(", ")
                ),
            });
        }
    }
    let select = chain_select(layout, sym, inp.file_date.as_deref(), inp.map).map_err(|m| {
        ImportError::File {
            file: file.to_string(),
            message: m,
        }
    })?;
    inp.progress.phase("reading the used columns");
    load_raw(conn, inp, names, &select)?;
    inp.progress.phase("finding the quote dates");
    // Snapshot times: the file's own (OptionsDX), else DataShop's 15:45 (15 minutes
    // before an early close) or the session's close.
    let dates: Vec<NaiveDate> = {
        let mut s = conn.prepare(&format!(
            "SELECT DISTINCT d FROM (SELECT {} AS d FROM (SELECT DISTINCT as_of_s FROM ({select}) s))
             WHERE d IS NOT NULL ORDER BY 1",
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
    inp.progress.phase("normalizing");
    let index_roots = crate::model::instrument::INDEX_ROOTS
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
                     {missing}
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
        // LEAN universe rows have no bid/ask by design: archived without them.
        missing = if layout == Layout::LeanUniverse {
            ""
        } else {
            "WHEN n.bid IS NULL OR n.ask IS NULL THEN 'missing_price'"
        },
    ))?;
    inp.progress.phase("checking every field");
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
    let empties = [
        ("quote date", "as_of_s"),
        ("expiration", "expiry_s"),
        ("strike", "strike_s"),
        ("option type", "pc"),
    ];
    let firsts = empties
        .iter()
        .map(|(_, e)| format!("min(line) FILTER (WHERE coalesce({e}, '') = '')"))
        .collect::<Vec<_>>()
        .join(", ");
    let lines: Vec<Option<i64>> =
        conn.query_row(&format!("SELECT {firsts} FROM norm"), [], |r| {
            (0..empties.len()).map(|i| r.get(i)).collect()
        })?;
    if let Some(((field, _), line)) = empties
        .iter()
        .zip(lines)
        .find_map(|(f, l)| l.map(|l| (f, l)))
    {
        return Err(ImportError::Field {
            file: file.to_string(),
            line,
            field: field.to_string(),
            problem: "empty".into(),
        });
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
    inp.progress.phase("writing the archive");
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
        note: None,
    })
}

fn import_bars(
    conn: &Connection,
    inp: &Input,
    layout: Layout,
    names: &[String],
    sym: Option<&str>,
    import_id: i64,
) -> Result<ImportSummary, ImportError> {
    let file = inp.file;
    require_columns(
        file,
        layout,
        names,
        &["date", "open", "high", "low", "close"],
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
    // Volume is optional (Cboe's VIX history has none): 0 without it.
    let mut needed: Vec<&str> = vec!["date", "open", "high", "low", "close"];
    needed.extend(
        ["volume", "symbol", "dividend", "split_ratio"]
            .into_iter()
            .filter(|c| has(c)),
    );
    load_raw(conn, inp, names, &needed.join(" "))?;
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE norm AS
         SELECT line, trim(date) AS date_s, {symbol} AS symbol, trim(open) AS open_s, trim(high) AS high_s,
                trim(low) AS low_s, trim(close) AS close_s, coalesce({vol}, '0') AS vol_s,
                coalesce({div}, '0') AS div_s, coalesce({split}, '1') AS split_s
         FROM raw",
        vol = opt("volume", "0"),
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
        note: None,
    })
}

/// A user's own history, to seed IV rank and the correlation Z-score from day one: ATM
/// IVs into `iv_history` (source `import:<file>`), implied correlations into
/// `correlation` (basis `import`, for the index `--symbol`, QQQ by default). Values are
/// fractions (0.185 = 18.5 vol points, 0.62 = a correlation of 0.62).
fn import_history(
    conn: &Connection,
    inp: &Input,
    layout: Layout,
    names: &[String],
    sym: Option<&str>,
) -> Result<ImportSummary, ImportError> {
    let file = inp.file;
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
    load_raw(conn, inp, names, &needed)?;
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
        note: None,
    })
}

/// A status line on stderr while a file imports (only when stderr is a terminal): the
/// file, the phase and the seconds so far, cleared when the file is done.
/// What an import is doing: a status line on a terminal, and each phase's time at debug
/// level (`OPTDESK_LOG=optdesk::sources=debug`).
struct Progress {
    name: String,
    started: std::time::Instant,
    on: bool,
    /// The phase under way and when it began.
    current: std::cell::RefCell<Option<(String, std::time::Instant)>>,
}

impl Progress {
    fn new(path: &Path) -> Progress {
        use std::io::IsTerminal;
        Progress {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            started: std::time::Instant::now(),
            on: std::io::stderr().is_terminal(),
            current: std::cell::RefCell::new(None),
        }
    }

    /// The phase before this one ends: its time is logged.
    fn end_phase(&self) {
        if let Some((what, since)) = self.current.borrow_mut().take() {
            tracing::debug!(
                file = %self.name,
                "import: {what} took {:.2} s",
                since.elapsed().as_secs_f64()
            );
        }
    }

    fn phase(&self, what: &str) {
        self.end_phase();
        *self.current.borrow_mut() = Some((what.to_string(), std::time::Instant::now()));
        if self.on {
            eprint!(
                "\r\x1b[2K{}: {what} ({:.0} s)",
                self.name,
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    /// `done` of `total` parts (zip entries): a bar.
    fn parts(&self, what: &str, done: usize, total: usize) {
        if self.on && total > 0 && (done.is_multiple_of(64) || done == total) {
            let w = 30;
            let fill = done * w / total;
            eprint!(
                "\r\x1b[2K{}: {what} [{}{}] {done}/{total} ({:.0} s)",
                self.name,
                "#".repeat(fill),
                " ".repeat(w - fill),
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    fn done(&self) {
        self.end_phase();
        if self.on {
            eprint!("\r\x1b[2K");
        }
    }
}

/// A temporary file, removed when dropped.
struct TempPath(std::path::PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_path(ext: &str) -> TempPath {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    TempPath(std::env::temp_dir().join(format!("optdesk-import-{}-{n}.{ext}", std::process::id())))
}

/// A zip made ready to import: the file read in its place, the layout and symbol it
/// implies, and the checksum of what it was made from.
struct Staged {
    tmp: TempPath,
    layout: Option<Layout>,
    symbol: Option<String>,
    sha: String,
}

enum Stage {
    File(Staged),
    /// A LEAN trade or open-interest zip, joined into its quote zip's import.
    Joined(String),
}

/// `<ticker>_<year>_<quote|trade|openinterest>_<american|european>.zip`: (ticker,
/// year, tick type, style).
pub fn lean_option_zip_name(path: &Path) -> Option<(String, String, String, String)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".zip")?;
    let p: Vec<&str> = stem.split('_').collect();
    match p.as_slice() {
        [t, y, k, s]
            if !t.is_empty()
                && t.chars().all(|c| c.is_ascii_alphanumeric())
                && y.len() == 4
                && y.chars().all(|c| c.is_ascii_digit())
                && matches!(*k, "quote" | "trade" | "openinterest")
                && matches!(*s, "american" | "european") =>
        {
            Some((t.to_string(), y.to_string(), k.to_string(), s.to_string()))
        }
        _ => None,
    }
}

/// A LEAN ticker's underlying and option root: index weeklies and PM-settled classes
/// (SPXW, NDXP, RUTW, VIXW) are options on the index.
fn lean_underlying(ticker: &str) -> (String, String) {
    let root = ticker.to_ascii_uppercase();
    let und = match root.as_str() {
        "SPXW" => "SPX",
        "NDXP" => "NDX",
        "RUTW" => "RUT",
        "VIXW" => "VIX",
        r => r,
    };
    (und.to_string(), root)
}

/// The ticker of a LEAN universe file: its folder (`universes/spy/20240102.csv`), or
/// a name such as `universe_spy_daily_iv_greeks.csv`.
fn lean_universe_ticker(path: &Path) -> Option<String> {
    let name = path.file_stem()?.to_str()?;
    let ok = |s: &str| !s.is_empty() && s.len() <= 6 && s.chars().all(|c| c.is_ascii_alphabetic());
    if name.chars().all(|c| c.is_ascii_digit()) {
        let dir = path.parent()?.file_name()?.to_str()?;
        return ok(dir).then(|| dir.to_ascii_uppercase());
    }
    name.split(['_', '-', '.'])
        .find(|t| ok(t) && !t.eq_ignore_ascii_case("universe"))
        .map(|t| t.to_ascii_uppercase())
}

fn zip_err(file: &str, e: impl std::fmt::Display) -> ImportError {
    ImportError::File {
        file: file.to_string(),
        message: format!("not a readable zip archive: {e}"),
    }
}

fn open_zip(path: &Path, file: &str) -> Result<zip::ZipArchive<std::fs::File>, ImportError> {
    let f = std::fs::File::open(path).map_err(|e| ImportError::File {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    zip::ZipArchive::new(f).map_err(|e| zip_err(file, e))
}

/// Each file entry of a zip: (name without folders, text), in the zip's order.
fn for_each_entry(
    path: &Path,
    file: &str,
    progress: &Progress,
    mut f: impl FnMut(&str, &str) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let mut z = open_zip(path, file)?;
    let n = z.len();
    let mut text = String::new();
    for i in 0..n {
        let mut e = z.by_index(i).map_err(|e| zip_err(file, e))?;
        if e.is_dir() {
            continue;
        }
        let name = e.name().map_err(|e| zip_err(file, e))?.to_string();
        let base = name.rsplit('/').next().unwrap_or(&name).to_string();
        text.clear();
        e.read_to_string(&mut text)
            .map_err(|err| ImportError::File {
                file: format!("{file} ({base})"),
                message: format!("not readable UTF-8 text: {err}"),
            })?;
        f(&base, &text)?;
        progress.parts("converting", i + 1, n);
    }
    Ok(())
}

/// A LEAN price in deci-cents (×10,000) as dollars with four decimals; empty stays empty.
fn lean_price(v: &str) -> Option<String> {
    let v = v.trim();
    if v.is_empty() {
        return Some(String::new());
    }
    let x: f64 = v.parse().ok()?;
    (x.is_finite() && x >= 0.0).then(|| format!("{:.4}", x / 10_000.0))
}

/// A LEAN bar time `YYYYMMDD HH:mm` as the date `YYYY-MM-DD`.
fn lean_date(v: &str) -> Option<String> {
    let d = v.trim().split(' ').next()?;
    let date = NaiveDate::parse_from_str(d, "%Y%m%d").ok()?;
    Some(date.format("%Y-%m-%d").to_string())
}

/// The contract a LEAN option entry is for:
/// `<ticker>_<tick>_<style>_<call|put>_<strike ×10,000>_<YYYYMMDD>.csv` → (C|P, strike
/// in dollars, expiry).
fn lean_contract(entry: &str) -> Option<(char, String, String)> {
    let stem = entry.strip_suffix(".csv")?;
    let p: Vec<&str> = stem.rsplitn(4, '_').collect();
    let [expiry, strike, right, _] = p.as_slice() else {
        return None;
    };
    let right = match *right {
        "call" => 'C',
        "put" => 'P',
        _ => return None,
    };
    let k: u64 = strike.parse().ok()?;
    let expiry = NaiveDate::parse_from_str(expiry, "%Y%m%d").ok()?;
    Some((
        right,
        format!("{:.4}", k as f64 / 10_000.0),
        expiry.format("%Y-%m-%d").to_string(),
    ))
}

/// A headerless LEAN line's fields, checked: `want` fields, each named in `names`, the
/// first a bar time and the rest numbers (prices ×10,000 where `price[i]`).
/// The non-empty lines of a headerless LEAN file, each checked by [`lean_fields`] with
/// its line number in the file.
fn lean_rows<'a>(
    where_: &'a str,
    text: &'a str,
    names: &'a [&'a str],
    price: &'a [bool],
) -> impl Iterator<Item = Result<Vec<String>, ImportError>> + 'a {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(move |(i, l)| lean_fields(where_, i + 1, l, names, price))
}

fn lean_fields(
    where_: &str,
    line_no: usize,
    line: &str,
    names: &[&str],
    price: &[bool],
) -> Result<Vec<String>, ImportError> {
    let f: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
    let bad = |field: &str, problem: String| ImportError::Field {
        file: where_.to_string(),
        line: line_no as i64,
        field: field.to_string(),
        problem,
    };
    if f.len() != names.len() {
        return Err(bad(
            names[0],
            format!(
                "{} fields, a LEAN line of this kind has {}",
                f.len(),
                names.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(f.len());
    out.push(
        lean_date(f[0])
            .ok_or_else(|| bad(names[0], format!("'{}' is not a YYYYMMDD HH:mm time", f[0])))?,
    );
    for (i, v) in f.iter().enumerate().skip(1) {
        let v = v.trim();
        let parsed = if price[i] {
            lean_price(v)
        } else if v.is_empty() || v.parse::<f64>().is_ok_and(|x| x.is_finite() && x >= 0.0) {
            Some(v.to_string())
        } else {
            None
        };
        out.push(parsed.ok_or_else(|| bad(names[i], format!("'{v}' does not parse")))?);
    }
    Ok(out)
}

fn sha_of(paths: &[&Path], file: &str) -> Result<String, ImportError> {
    let mut h = Sha256::new();
    for p in paths {
        let s = sha256_file(p).map_err(|e| ImportError::File {
            file: file.to_string(),
            message: format!("{}: {e}", p.display()),
        })?;
        h.update(s.as_bytes());
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A zip to import: a LEAN daily option zip (converted, its trade and open-interest
/// zips beside it joined), a LEAN daily equity zip (converted), or a zip of one file
/// (DataShop's), extracted.
fn stage_zip(path: &Path, file: &str, progress: &Progress) -> Result<Stage, ImportError> {
    use std::io::Write;
    let io = |e: std::io::Error| ImportError::File {
        file: file.to_string(),
        message: e.to_string(),
    };
    if let Some((ticker, year, tick, style)) = lean_option_zip_name(path) {
        let sibling = |k: &str| path.with_file_name(format!("{ticker}_{year}_{k}_{style}.zip"));
        let quote = sibling("quote");
        if tick != "quote" {
            let qname = quote
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            return if quote.exists() {
                Ok(Stage::Joined(format!(
                    "a LEAN {tick} zip: joined into the import of {qname} beside it (volume, last trade and open interest)"
                )))
            } else {
                Err(ImportError::File {
                    file: file.to_string(),
                    message: format!(
                        "a LEAN {tick} zip has no bid/ask: import the quote zip {qname} (the trade and open-interest zips beside it are joined to it)"
                    ),
                })
            };
        }
        let trade = Some(sibling("trade")).filter(|p| p.exists());
        let oi = Some(sibling("openinterest")).filter(|p| p.exists());
        let mut parts: Vec<&Path> = vec![path];
        parts.extend(trade.as_deref());
        parts.extend(oi.as_deref());
        let sha = sha_of(&parts, file)?;
        // Trades and open interest by (contract, date).
        type Key = (char, String, String, String);
        let mut trades: std::collections::HashMap<Key, (String, String)> = Default::default();
        let mut ois: std::collections::HashMap<Key, String> = Default::default();
        let contract = |zfile: &str, entry: &str| {
            lean_contract(entry).ok_or_else(|| ImportError::File {
                file: format!("{zfile} ({entry})"),
                message: "not a LEAN option file name (<ticker>_<tick>_<style>_<call|put>_<strike×10000>_<YYYYMMDD>.csv)".into(),
            })
        };
        if let Some(t) = &trade {
            let tf = t.display().to_string();
            for_each_entry(t, &tf, progress, |entry, text| {
                let (r, k, e) = contract(&tf, entry)?;
                let w = format!("{tf} ({entry})");
                for f in lean_rows(
                    &w,
                    text,
                    &["time", "open", "high", "low", "close", "volume"],
                    &[false, true, true, true, true, false],
                ) {
                    let f = f?;
                    trades.insert(
                        (r, k.clone(), e.clone(), f[0].clone()),
                        (f[4].clone(), f[5].clone()),
                    );
                }
                Ok(())
            })?;
        }
        if let Some(o) = &oi {
            let of = o.display().to_string();
            for_each_entry(o, &of, progress, |entry, text| {
                let (r, k, e) = contract(&of, entry)?;
                let w = format!("{of} ({entry})");
                for f in lean_rows(&w, text, &["time", "open_interest"], &[false, false]) {
                    let f = f?;
                    ois.insert((r, k.clone(), e.clone(), f[0].clone()), f[1].clone());
                }
                Ok(())
            })?;
        }
        let (und, root) = lean_underlying(&ticker);
        let tmp = temp_path("csv");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp.0).map_err(io)?);
        writeln!(w, "quote_date,underlying,root,expiration,strike,right,style,bid_close,bid_size,ask_close,ask_size,trade_close,volume,open_interest").map_err(io)?;
        const QUOTE: &[&str] = &[
            "time",
            "bid open",
            "bid high",
            "bid low",
            "bid close",
            "bid size",
            "ask open",
            "ask high",
            "ask low",
            "ask close",
            "ask size",
        ];
        const PRICE: &[bool] = &[
            false, true, true, true, true, false, true, true, true, true, false,
        ];
        for_each_entry(path, file, progress, |entry, text| {
            let (r, k, e) = contract(file, entry)?;
            let wh = format!("{file} ({entry})");
            for f in lean_rows(&wh, text, QUOTE, PRICE) {
                let f = f?;
                let key = (r, k.clone(), e.clone(), f[0].clone());
                let (last, vol) = trades.get(&key).cloned().unwrap_or_default();
                let oi = ois.get(&key).cloned().unwrap_or_default();
                writeln!(
                    w,
                    "{},{und},{root},{e},{k},{r},{style},{},{},{},{},{last},{vol},{oi}",
                    f[0], f[4], f[5], f[9], f[10]
                )
                .map_err(io)?;
            }
            Ok(())
        })?;
        w.flush().map_err(io)?;
        return Ok(Stage::File(Staged {
            tmp,
            layout: Some(Layout::LeanChain),
            symbol: Some(und),
            sha,
        }));
    }
    // Any other zip: one file in it.
    let mut z = open_zip(path, file)?;
    let entries: Vec<String> = z
        .file_names()
        .map(|n| n.map(|c| c.into_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| zip_err(file, e))?
        .into_iter()
        .filter(|n| !n.ends_with('/'))
        .collect();
    if entries.len() != 1 {
        return Err(ImportError::File {
            file: file.to_string(),
            message: format!(
                "holds {} files ({}): a zip to import holds one chain or bar file, or is a LEAN daily option zip named <ticker>_<year>_<quote|trade|openinterest>_<american|european>.zip",
                entries.len(),
                entries.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let sha = sha_of(&[path], file)?;
    let entry = entries[0].clone();
    let base = entry.rsplit('/').next().unwrap_or(&entry).to_string();
    let mut bytes = Vec::new();
    z.by_name(&entry)
        .map_err(|e| zip_err(file, e))?
        .read_to_end(&mut bytes)
        .map_err(|e| zip_err(file, e))?;
    // LEAN's daily equity bars: headerless `YYYYMMDD 00:00,open,high,low,close,volume`
    // with prices ×10,000.
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let lean_bars = first.len() > 15
        && first[..8].iter().all(|b| b.is_ascii_digit())
        && first[8] == b' '
        && first.iter().filter(|b| **b == b',').count() == 5;
    if lean_bars {
        let text = String::from_utf8(bytes).map_err(|_| ImportError::File {
            file: format!("{file} ({base})"),
            message: "not UTF-8 text".into(),
        })?;
        let symbol = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| s.to_ascii_uppercase())
            .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
        let tmp = temp_path("csv");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp.0).map_err(io)?);
        writeln!(w, "date,open,high,low,close,volume").map_err(io)?;
        let wh = format!("{file} ({base})");
        for f in lean_rows(
            &wh,
            &text,
            &["date", "open", "high", "low", "close", "volume"],
            &[false, true, true, true, true, false],
        ) {
            let f = f?;
            writeln!(w, "{}", f.join(",")).map_err(io)?;
        }
        w.flush().map_err(io)?;
        return Ok(Stage::File(Staged {
            tmp,
            layout: Some(Layout::LeanBars),
            symbol,
            sha,
        }));
    }
    let lower = base.to_ascii_lowercase();
    let ext = if lower.ends_with(".parquet") {
        "parquet"
    } else if lower.ends_with(".gz") {
        "csv.gz"
    } else {
        "csv"
    };
    let tmp = temp_path(ext);
    std::fs::write(&tmp.0, &bytes).map_err(io)?;
    Ok(Stage::File(Staged {
        tmp,
        layout: None,
        symbol: None,
        sha,
    }))
}

/// One-minute bars (CSV or Parquet) into `archive_minute_bars`: the time (New York wall
/// clock; a time with a UTC offset must be New York's, -04:00 or -05:00), the symbol
/// (a `symbol` or `ticker` column, else the file name or `--symbol`), OHLC and volume.
fn import_minute_bars(
    conn: &Connection,
    inp: &Input,
    names: &[String],
    sym: Option<&str>,
    import_id: i64,
) -> Result<ImportSummary, ImportError> {
    let file = inp.file;
    let has = |c: &str| names.iter().any(|n| n == c);
    let time = MINUTE_TIME_COLUMNS
        .iter()
        .copied()
        .find(|c| has(c))
        .ok_or_else(|| ImportError::File {
            file: file.to_string(),
            message: format!(
                "the minute-bars layout needs a time column ({})",
                MINUTE_TIME_COLUMNS.join(", ")
            ),
        })?;
    require_columns(
        file,
        Layout::MinuteBars,
        names,
        &["open", "high", "low", "close"],
    )?;
    let (symbol, sym_col) = if let Some(c) = ["symbol", "ticker"].into_iter().find(|c| has(c)) {
        (format!("upper(trim({c}))"), Some(c))
    } else {
        let s = sym.ok_or_else(|| ImportError::File {
            file: file.to_string(),
            message: "a minute-bar file without a symbol column: name the file <symbol>_....csv or pass --symbol".into(),
        })?;
        (sql_str(s), None)
    };
    let vol = if has("volume") { "trim(volume)" } else { "'0'" };
    let mut needed = vec![time, "open", "high", "low", "close"];
    if has("volume") {
        needed.push("volume");
    }
    needed.extend(sym_col);
    load_raw(conn, inp, names, &needed.join(" "))?;
    let t = "time_s";
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE norm AS
         SELECT line, trim(\"{time}\") AS time_s, {symbol} AS symbol, trim(open) AS open_s, trim(high) AS high_s,
                trim(low) AS low_s, trim(close) AS close_s, {vol} AS vol_s
         FROM raw;
         CREATE OR REPLACE TEMP TABLE norm AS
         SELECT *,
                CASE WHEN regexp_matches({t}, '[+-][0-9][0-9]:?[0-9][0-9]$')
                     THEN CASE WHEN regexp_matches({t}, '-0[45]:?00$')
                               THEN TRY_CAST(regexp_replace({t}, '[+-][0-9][0-9]:?[0-9][0-9]$', '') AS TIMESTAMP) END
                     ELSE coalesce(TRY_CAST({t} AS TIMESTAMP), try_strptime({t}, '%m/%d/%Y %H:%M'),
                                   try_strptime({t}, '%m/%d/%Y %H:%M:%S'), try_strptime({t}, '%Y%m%d %H:%M')) END AS time,
                TRY_CAST(open_s AS DECIMAL(18,4)) AS open, TRY_CAST(high_s AS DECIMAL(18,4)) AS high,
                TRY_CAST(low_s AS DECIMAL(18,4)) AS low, TRY_CAST(close_s AS DECIMAL(18,4)) AS close,
                TRY_CAST(TRY_CAST(vol_s AS DOUBLE) AS BIGINT) AS volume
         FROM norm"
    ))?;
    let checks: Vec<(&str, String, String)> = [
        (time, "time_s", "time"),
        ("open", "open_s", "open"),
        ("high", "high_s", "high"),
        ("low", "low_s", "low"),
        ("close", "close_s", "close"),
        ("volume", "vol_s", "volume"),
    ]
    .iter()
    .map(|(a, b, c)| (*a, b.to_string(), c.to_string()))
    .collect();
    fail_at(
        conn,
        file,
        "SELECT line, time_s FROM norm WHERE regexp_matches(time_s, '[+-][0-9][0-9]:?[0-9][0-9]$') AND NOT regexp_matches(time_s, '-0[45]:?00$') ORDER BY line LIMIT 1",
        time,
        |v| format!("'{v}' is not a New York time (offset -04:00 or -05:00): minute bars are stored in New York time"),
    )?;
    first_bad_field(conn, file, &checks)?;
    fail_at(conn, file, "SELECT min(line), NULL::VARCHAR FROM norm WHERE time IS NULL OR open IS NULL OR high IS NULL OR low IS NULL OR close IS NULL
            OR coalesce(symbol, '') = '' OR NOT (low <= least(open, close) AND high >= greatest(open, close) AND low >= 0)", "open/high/low/close", |_| "missing, or not low ≤ open, close ≤ high".into())?;
    fail_at(
        conn,
        file,
        "SELECT min(line), NULL::VARCHAR FROM (
             SELECT line, row_number() OVER (PARTITION BY time, symbol ORDER BY line) AS k FROM norm) WHERE k > 1",
        time,
        |_| "a second bar for the same minute and symbol".into(),
    )?;
    conn.execute(
        "DELETE FROM archive_minute_bars WHERE file = ?",
        params![file],
    )?;
    // Another file's bars for the same minutes give way to this one's.
    conn.execute_batch(
        "DELETE FROM archive_minute_bars b WHERE EXISTS (SELECT 1 FROM norm n WHERE n.time = b.time AND n.symbol = b.symbol)",
    )?;
    let kept = conn.execute(
        "INSERT INTO archive_minute_bars
         SELECT time, symbol, open, high, low, close, coalesce(volume, 0), 'minute-bars', ?, line, ?
         FROM norm ORDER BY symbol, time",
        params![file, import_id],
    )? as i64;
    let (first_date, last_date, symbols) = dates_and_symbols(conn, "time::DATE", "symbol")?;
    Ok(ImportSummary {
        file: file.to_string(),
        layout: Layout::MinuteBars,
        kept,
        rejected: 0,
        rules: Vec::new(),
        first_date,
        last_date,
        symbols,
        unchanged: false,
        note: None,
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
        assert_eq!(
            d("#expiry,strike,right,open,high,low,close,volume,open_interest,implied_volatility,delta,gamma,vega,theta,rho"),
            Some(Layout::LeanUniverse)
        );
        assert_eq!(
            d("date,expiry,strike,right,open,high,low,close,volume,open_interest,implied_volatility,delta,gamma,vega,theta,rho"),
            Some(Layout::LeanUniverse)
        );
        assert_eq!(
            d("quote_date,underlying,expiration,strike,right,style,bid_open,bid_high,bid_low,bid_close,bid_size,ask_open,ask_high,ask_low,ask_close,ask_size,trade_open,trade_high,trade_low,trade_close,volume,open_interest"),
            Some(Layout::LeanChain)
        );
        assert_eq!(
            d("datetime,symbol,open,high,low,close,volume"),
            Some(Layout::MinuteBars)
        );
        assert_eq!(
            d("time_et,open,high,low,close,volume"),
            Some(Layout::MinuteBars)
        );
        assert_eq!(d("a,b,c"), None);
        assert_eq!(Layout::parse("optionsdx"), Ok(Layout::OptionsDx));
        assert!(Layout::parse("nope").unwrap_err().contains("datashop"));
    }

    #[test]
    fn lean_names_give_contract_terms_and_tickers() {
        assert_eq!(
            lean_option_zip_name(Path::new("/d/aapl_2014_quote_american.zip")),
            Some((
                "aapl".into(),
                "2014".into(),
                "quote".into(),
                "american".into()
            ))
        );
        assert_eq!(
            lean_option_zip_name(Path::new("aapl_2014_bid_american.zip")),
            None
        );
        assert_eq!(lean_option_zip_name(Path::new("spy.zip")), None);
        assert_eq!(
            lean_contract("aapl_quote_american_call_10000000_20150117.csv"),
            Some(('C', "1000.0000".into(), "2015-01-17".into()))
        );
        assert_eq!(
            lean_contract("spxw_trade_european_put_37500000_20210115.csv"),
            Some(('P', "3750.0000".into(), "2021-01-15".into()))
        );
        assert_eq!(
            lean_contract("aapl_quote_american_call_x_20150117.csv"),
            None
        );
        assert_eq!(lean_price("1234500"), Some("123.4500".into()));
        assert_eq!(lean_price(""), Some(String::new()));
        assert_eq!(lean_price("-1"), None);
        assert_eq!(lean_date("20240315 00:00"), Some("2024-03-15".into()));
        assert_eq!(lean_underlying("spxw"), ("SPX".into(), "SPXW".into()));
        assert_eq!(
            lean_universe_ticker(Path::new("/x/universes/spy/20240102.csv")),
            Some("SPY".into())
        );
        assert_eq!(
            lean_universe_ticker(Path::new("universe_goog_daily_iv_greeks.csv")),
            Some("GOOG".into())
        );
    }

    #[test]
    fn a_column_map_names_every_required_field_once() {
        let m = ColumnMap::parse(
            "quote_date=Date, expiry=Expiration,strike=Strike,right=Type,bid=Bid,ask=Ask,iv=IV",
        )
        .unwrap();
        assert_eq!(m.get("quote_date"), Some("date"));
        assert_eq!(m.get("iv"), Some("iv"));
        assert!(ColumnMap::parse("quote_date=Date")
            .unwrap_err()
            .contains("expiry, strike, right, bid, ask missing"));
        assert!(ColumnMap::parse("quote_date=Date,nope=X")
            .unwrap_err()
            .contains("unknown field 'nope'"));
        assert!(ColumnMap::parse("bid=A,bid=B")
            .unwrap_err()
            .contains("given twice"));
        assert!(ColumnMap::parse("bid")
            .unwrap_err()
            .contains("not field=column"));
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
