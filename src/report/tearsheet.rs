//! The backtest tearsheet: one self-contained HTML file (inline CSS, inline SVG charts
//! from [`super::svg`] in the embedded DejaVu Sans, no script, nothing fetched) with a
//! backtest's results, read from the backtest's own store.
//!
//! It holds, in order: the header (name, range, sessions, source, seed, configuration
//! hash, overrides, from the store's own `backtests` row) with the headline figures;
//! which parts of the data are real and which modelled ([`data_provenance`]); the equity
//! against the benchmarks; the drawdown; the monthly returns (a row per year, a column
//! per month, and the year's total: [`monthly_returns`]); the metrics of the book, of each
//! strategy and of each benchmark (`analytics/performance.rs`, as the daily report
//! computes them); exposure and greeks over time (`portfolio_snapshots`,
//! `strategy_snapshots`); the risk gate's refusals by rule (`risk_decisions`); and the
//! trade list (`fills`, the last [`MAX_TRADES`] executions).
//!
//! `optdesk backtest report NAME` writes it ([`write_for_backtest`]), and every backtest
//! writes it at its end beside its store (`data/backtests/<name>.html`).

use super::chart::{Series, YFormat};
use super::dashboard::{color, equity_and_drawdown, section, sentence};
use super::email::{
    drawdown_sentence, has_metrics, metrics_rows, table, trade_rows, METRICS_HEAD, TRADES_HEAD,
};
use super::svg::{self, escape};
use super::{money, pct, ratio, ReportData, ReportError};
use crate::analytics::performance::Point;
use crate::model::Price;
use crate::store::repo::{self, RepoError};
use crate::store::Store;
use chrono::{Datelike, NaiveDate, NaiveDateTime};
use duckdb::{params, Connection, OptionalExt};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The trade list shows at most this many executions, the latest ones.
pub const MAX_TRADES: usize = 2000;

/// Why a tearsheet could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TearsheetError {
    /// No backtest of that name (no store), or a name that cannot be one.
    #[error("{0}")]
    NotFound(String),
    /// The store is not a backtest's (no catalogue row of its own).
    #[error("{0}")]
    NotABacktest(String),
    #[error("cannot read the backtest's store: {0}")]
    Db(#[from] duckdb::Error),
    #[error("cannot read the backtest's store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot read the backtest's results: {0}")]
    Report(#[from] ReportError),
    #[error("cannot read the backtest's fills: {0}")]
    Repo(#[from] RepoError),
    /// The configuration snapshot's email_report.toml could not be read.
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Write(String),
}

/// What the backtest was made with: its store's own `backtests` row.
#[derive(Debug, Clone)]
pub struct Header {
    pub name: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub sessions_done: i64,
    pub sessions_total: i64,
    /// running, stopped, done, failed.
    pub status: String,
    pub message: Option<String>,
    pub config_hash: String,
    pub config_snapshot: String,
    /// The `--set` arguments.
    pub overrides: Vec<String>,
    pub source: String,
    pub seed: u64,
    pub keep_quotes: String,
    pub version: String,
    pub started_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
}

/// Where a part of the data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Recorded market data (imported files).
    Real,
    /// Made by a model (the simulated market, the paper broker).
    Modelled,
    /// Computed by optdesk from the parts above (implied volatility, greeks).
    Derived,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Real => "real",
            Origin::Modelled => "modelled",
            Origin::Derived => "derived",
        }
    }
}

/// One part of the data and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    pub part: &'static str,
    pub origin: Origin,
    pub how: String,
}

/// A file imported into the replay archive (the store's `imports` log).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedFile {
    pub file: String,
    pub layout: String,
    pub first: Option<NaiveDate>,
    pub last: Option<NaiveDate>,
    pub symbols: String,
}

/// What [`data_provenance`] knows of a backtest's market.
#[derive(Debug, Clone, Copy)]
pub struct MarketFacts<'a> {
    /// The source: `sim` or `replay`.
    pub source: &'a str,
    pub seed: u64,
    /// The configuration snapshot (every job file as the backtest read it), for a market
    /// whose settings change what is real (e.g. the sim's underlying paths taken from
    /// imported daily bars: that setting adds its own arm here).
    pub config_snapshot: &'a str,
    /// The replay archive's imported files.
    pub imports: &'a [ImportedFile],
}

/// Which parts of a backtest's data are real and which modelled, in plain words.
pub fn data_provenance(m: &MarketFacts) -> Vec<Provenance> {
    let fills = Provenance {
        part: "Fills",
        origin: Origin::Modelled,
        how: "the paper broker's: each order filled against the session's quotes with the configured commissions; no order was sent to a market".into(),
    };
    match m.source {
        "sim" if sim_over_bars(m.config_snapshot) => sim_over_bars_provenance(m, fills),
        "sim" => vec![
            Provenance {
                part: "Underlying prices and daily bars",
                origin: Origin::Modelled,
                how: format!(
                    "the simulated market's price paths (seed {}), not any real history",
                    m.seed
                ),
            },
            Provenance {
                part: "Option quotes",
                origin: Origin::Modelled,
                how: "the simulated market's chains: bid and ask from its volatility surface over those paths".into(),
            },
            Provenance {
                part: "Implied volatility and greeks",
                origin: Origin::Derived,
                how: "computed by optdesk from the modelled quotes".into(),
            },
            Provenance {
                part: "Benchmarks",
                origin: Origin::Modelled,
                how: "buy-and-hold of the simulated underlyings".into(),
            },
            fills,
        ],
        "replay" => {
            let files = match m.imports.len() {
                0 => "the imported files".to_string(),
                1 => "the imported file (listed below)".to_string(),
                n => format!("the {n} imported files (listed below)"),
            };
            vec![
                Provenance {
                    part: "Option quotes",
                    origin: Origin::Real,
                    how: format!("{files}, replayed session by session"),
                },
                Provenance {
                    part: "Underlying prices and daily bars",
                    origin: Origin::Real,
                    how: "the underlying's price in the imported quotes, else the imported daily bars".into(),
                },
                Provenance {
                    part: "Implied volatility and greeks",
                    origin: Origin::Derived,
                    how: "computed by optdesk from the imported quotes".into(),
                },
                Provenance {
                    part: "Benchmarks",
                    origin: Origin::Real,
                    how: "buy-and-hold at the imported underlying prices".into(),
                },
                fills,
            ]
        }
        other => vec![
            Provenance {
                part: "Market data",
                origin: Origin::Real,
                how: format!("source '{other}' (a live feed's quotes as recorded)"),
            },
            fills,
        ],
    }
}

/// The text of one file of a configuration snapshot.
fn snapshot_file<'a>(snapshot: &'a str, file: &str) -> Option<&'a str> {
    let mark = format!("# ==== {file} ====\n");
    let at = snapshot.find(&mark)?;
    let rest = &snapshot[at + mark.len()..];
    Some(match rest.find("\n# ==== ") {
        Some(end) => &rest[..end + 1],
        None => rest,
    })
}

/// Whether the snapshot's desk.toml sets `[sim] underlying = "bars"` (modelled chains
/// over real prices).
pub fn sim_over_bars(snapshot: &str) -> bool {
    snapshot_file(snapshot, "desk.toml")
        .and_then(|t| toml::from_str::<toml::Table>(t).ok())
        .and_then(|t| {
            t.get("sim")
                .and_then(|s| s.get("underlying"))
                .and_then(|v| v.as_str().map(|s| s == "bars"))
        })
        .unwrap_or(false)
}

/// `[sim] underlying = "bars"`: real prices from the imported bars, modelled chains
/// (see [`crate::sources::sim::bars`]).
fn sim_over_bars_provenance(m: &MarketFacts, fills: Provenance) -> Vec<Provenance> {
    let mut symbols: Vec<String> = Vec::new();
    for f in m.imports {
        for s in f
            .symbols
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if !symbols.iter().any(|x| x == s) {
                symbols.push(s.to_string());
            }
        }
    }
    let vix = symbols.iter().any(|s| s == "VIX" || s == "^VIX");
    let listed: Vec<String> = symbols
        .iter()
        .filter(|s| *s != "VIX" && *s != "^VIX")
        .cloned()
        .collect();
    let shown = if listed.len() > 12 {
        format!(
            "{}, ... ({} symbols)",
            listed[..12].join(", "),
            listed.len()
        )
    } else {
        listed.join(", ")
    };
    vec![
        Provenance {
            part: "Underlying prices and daily bars",
            origin: Origin::Real,
            how: format!(
                "the imported daily bars (files listed below) of {shown}: open, high, low, close, dividends; the symbols without bars follow the simulated market's paths (seed {})",
                m.seed
            ),
        },
        Provenance {
            part: "Implied-vol level",
            origin: if vix { Origin::Real } else { Origin::Modelled },
            how: if vix {
                "the index's follows the imported VIX closes (the model's vol state set to match each close; the next session's 30-day ATM vol ≈ VIX / 1.06), the other names' market part moves with it, and single names with bars are scaled by their realized vol over the previous 63 sessions".into()
            } else {
                "no VIX bars were imported: the simulated market's own volatility path (single names with bars scaled by their realized vol over the previous 63 sessions)".into()
            },
        },
        Provenance {
            part: "Option quotes",
            origin: Origin::Modelled,
            how: "the simulated market's chains over those prices: skew, term structure, premia, strikes, bid and ask from its surface model".into(),
        },
        Provenance {
            part: "Implied volatility and greeks",
            origin: Origin::Derived,
            how: "computed by optdesk from the modelled quotes".into(),
        },
        Provenance {
            part: "Benchmarks",
            origin: Origin::Derived,
            how: "buy-and-hold at the imported prices for the benchmarks with bars, at the simulated prices for the others".into(),
        },
        fills,
    ]
}

/// One year of monthly returns: `months[0]` is January; `None` where the curve has no
/// point in that month.
#[derive(Debug, Clone, PartialEq)]
pub struct YearReturns {
    pub year: i32,
    pub months: [Option<f64>; 12],
    /// The year's compounded return: its last value over the last value before it.
    pub total: Option<f64>,
}

/// Monthly returns of a curve: each month's last value over the previous month's last
/// value (the first month's over `base`, the deposits, or the curve's first value
/// without one), and each year's total the same way over years. Non-finite points are
/// gaps; a return off a value ≤ 0 is `None`.
pub fn monthly_returns(curve: &[Point], base: Option<f64>) -> Vec<YearReturns> {
    let pts: Vec<&Point> = curve.iter().filter(|p| p.value.is_finite()).collect();
    let Some(first) = pts.first() else {
        return Vec::new();
    };
    let ret = |from: f64, to: f64| {
        (from > 0.0)
            .then(|| to / from - 1.0)
            .filter(|r| r.is_finite())
    };
    // The last value of each month, in order.
    let mut month_end: BTreeMap<(i32, u32), f64> = BTreeMap::new();
    for p in &pts {
        month_end.insert((p.date.year(), p.date.month()), p.value);
    }
    let start = base.unwrap_or(first.value);
    let mut years: Vec<YearReturns> = Vec::new();
    let mut prev = start;
    let mut year_start = start;
    for (&(y, m), &v) in &month_end {
        if years.last().is_none_or(|r| r.year != y) {
            if let Some(done) = years.last_mut() {
                done.total = ret(year_start, prev);
            }
            year_start = prev;
            years.push(YearReturns {
                year: y,
                months: [None; 12],
                total: None,
            });
        }
        let row = years.last_mut().expect("pushed above");
        row.months[(m - 1) as usize] = ret(prev, v);
        prev = v;
    }
    if let Some(last) = years.last_mut() {
        last.total = ret(year_start, prev);
    }
    years
}

/// The portfolio on one session (its last snapshot).
#[derive(Debug, Clone, PartialEq)]
pub struct BookDay {
    pub date: NaiveDate,
    pub market_value: f64,
    pub cash: f64,
    pub open_positions: i64,
}

/// One strategy on one session (its last snapshot): exposure and summed greeks.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyDay {
    pub date: NaiveDate,
    pub market_value: f64,
    pub open_positions: i64,
    /// Share-equivalent delta, dollars of theta per day, dollars of vega per vol point.
    pub delta: Option<f64>,
    pub theta: Option<f64>,
    pub vega: Option<f64>,
}

/// The risk gate's refusals under one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleRefusals {
    pub rule: String,
    pub count: i64,
    pub strategies: String,
    pub first: NaiveDate,
    pub last: NaiveDate,
    /// The first refusal's reason.
    pub example: String,
}

/// One execution of the trade list, with exact money.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeLine {
    pub date: NaiveDate,
    pub strategy: String,
    pub order_ref: String,
    pub leg: usize,
    pub instrument: String,
    /// Positive bought, negative sold.
    pub quantity: i64,
    pub price: Price,
    pub commission: Price,
    /// premium, settlement, assignment.
    pub kind: String,
    /// The cash it moved: premium (or settlement) less commission.
    pub cash: Price,
}

/// Everything a tearsheet shows.
#[derive(Debug, Clone)]
pub struct Tearsheet {
    /// The backtest's store.
    pub store_path: String,
    pub header: Header,
    pub provenance: Vec<Provenance>,
    pub imports: Vec<ImportedFile>,
    /// The last session with results, if any.
    pub last_session: Option<NaiveDate>,
    /// Equity, benchmarks, strategy P&L and metrics, as of the last session.
    pub data: ReportData,
    pub book_days: Vec<BookDay>,
    pub strategy_days: Vec<(String, Vec<StrategyDay>)>,
    pub approved: i64,
    pub refusals: Vec<RuleRefusals>,
    /// The last [`MAX_TRADES`] executions, oldest first, and how many there are in all.
    pub trades: Vec<TradeLine>,
    pub trades_total: usize,
}

/// The backtest store's own row.
pub fn header(conn: &Connection) -> Result<Option<Header>, TearsheetError> {
    if !crate::store::table_exists(conn, "backtests")? {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT name, from_date, to_date, sessions_done, sessions_total, status, message, config_hash,
                    config_snapshot, overrides, source, seed, keep_quotes, version, started_at, finished_at
             FROM backtests ORDER BY started_at DESC LIMIT 1",
            [],
            |r| {
                let overrides: String = r.get(9)?;
                Ok(Header {
                    name: r.get(0)?,
                    from: r.get(1)?,
                    to: r.get(2)?,
                    sessions_done: r.get(3)?,
                    sessions_total: r.get(4)?,
                    status: r.get(5)?,
                    message: r.get(6)?,
                    config_hash: r.get(7)?,
                    config_snapshot: r.get(8)?,
                    overrides: overrides
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from)
                        .collect(),
                    source: r.get(10)?,
                    seed: r.get(11)?,
                    keep_quotes: r.get(12)?,
                    version: r.get(13)?,
                    started_at: r.get(14)?,
                    finished_at: r.get(15)?,
                })
            },
        )
        .optional()?)
}

/// The risk-free rate the backtest ran with: `params.risk_free_rate` of the snapshot's
/// email_report.toml, or the job's default when the file does not set it.
pub fn risk_free_rate_of(snapshot: &str) -> Result<f64, TearsheetError> {
    const MARK: &str = "# ==== email_report.toml ====\n";
    let default = super::DEFAULT_RISK_FREE_RATE;
    let Some(at) = snapshot.find(MARK) else {
        return Ok(default);
    };
    let rest = &snapshot[at + MARK.len()..];
    let text = match rest.find("\n# ==== ") {
        Some(end) => &rest[..end + 1],
        None => rest,
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        TearsheetError::Config(format!(
            "the backtest's email_report.toml (in its configuration snapshot) is not valid TOML: {e}"
        ))
    })?;
    match table.get("params").and_then(|p| p.get("risk_free_rate")) {
        None => Ok(default),
        Some(toml::Value::Float(f)) => Ok(*f),
        Some(toml::Value::Integer(i)) => Ok(*i as f64),
        Some(other) => Err(TearsheetError::Config(format!(
            "the backtest's email_report.toml sets params.risk_free_rate to a {}: expected a number",
            other.type_str()
        ))),
    }
}

/// The last session with results: the last completed session, else the last snapshot.
fn last_session(conn: &Connection) -> Result<Option<NaiveDate>, duckdb::Error> {
    conn.query_row(
        "SELECT coalesce((SELECT max(as_of) FROM backtest_sessions), (SELECT max(as_of) FROM portfolio_snapshots))",
        [],
        |r| r.get(0),
    )
}

/// Gather the tearsheet of the backtest store `conn`, with the risk-free rate of its
/// configuration snapshot.
pub fn load(store: &Store) -> Result<Tearsheet, TearsheetError> {
    let conn = &store.conn;
    let Some(header) = header(conn)? else {
        return Err(TearsheetError::NotABacktest(
            "the store has no backtest catalogue row of its own: it is not a backtest's store (`optdesk backtest list` shows the backtests)".into(),
        ));
    };
    let rf = risk_free_rate_of(&header.config_snapshot)?;
    let data = match last_session(conn)? {
        Some(d) => super::load(conn, d, rf)?,
        None => ReportData::empty(header.from, rf),
    };
    gather(store, header, data)
}

/// The tearsheet from report data already gathered (a backtest's end has it).
pub fn from_data(store: &Store, data: ReportData) -> Result<Tearsheet, TearsheetError> {
    let Some(header) = header(&store.conn)? else {
        return Err(TearsheetError::NotABacktest(
            "the store has no backtest catalogue row of its own".into(),
        ));
    };
    gather(store, header, data)
}

fn gather(store: &Store, header: Header, data: ReportData) -> Result<Tearsheet, TearsheetError> {
    let conn = &store.conn;
    let last = last_session(conn)?;
    let until = last.unwrap_or(header.to);
    let imports = load_imports(conn)?;
    let provenance = data_provenance(&MarketFacts {
        source: &header.source,
        seed: header.seed,
        config_snapshot: &header.config_snapshot,
        imports: &imports,
    });

    let mut s = conn.prepare(
        "SELECT as_of, arg_max(market_value::DOUBLE, quote_time), arg_max(cash::DOUBLE, quote_time),
                arg_max(open_positions, quote_time)
         FROM portfolio_snapshots WHERE as_of <= ? GROUP BY as_of ORDER BY as_of",
    )?;
    let book_days: Vec<BookDay> = s
        .query_map(params![until], |r| {
            Ok(BookDay {
                date: r.get(0)?,
                market_value: r.get(1)?,
                cash: r.get(2)?,
                open_positions: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;

    let mut s = conn.prepare(
        "SELECT strategy, as_of, arg_max(market_value::DOUBLE, quote_time), arg_max(open_positions, quote_time),
                arg_max_null(delta, quote_time), arg_max_null(theta, quote_time), arg_max_null(vega, quote_time)
         FROM strategy_snapshots WHERE as_of <= ? GROUP BY strategy, as_of ORDER BY strategy, as_of",
    )?;
    let mut by_strategy: BTreeMap<String, Vec<StrategyDay>> = BTreeMap::new();
    for row in s.query_map(params![until], |r| {
        Ok((
            r.get::<_, String>(0)?,
            StrategyDay {
                date: r.get(1)?,
                market_value: r.get(2)?,
                open_positions: r.get(3)?,
                delta: r.get(4)?,
                theta: r.get(5)?,
                vega: r.get(6)?,
            },
        ))
    })? {
        let (st, day) = row?;
        by_strategy.entry(st).or_default().push(day);
    }

    let (approved, _refused): (i64, i64) = conn.query_row(
        "SELECT count(*) FILTER (WHERE decision = 'approved'), count(*) FILTER (WHERE decision = 'refused')
         FROM risk_decisions WHERE as_of <= ?",
        params![until],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut s = conn.prepare(
        "SELECT rule, count(*), array_to_string(list_sort(list(DISTINCT strategy)), ', '), min(as_of), max(as_of),
                arg_min(coalesce(reason, ''), quote_time)
         FROM risk_decisions WHERE decision = 'refused' AND as_of <= ?
         GROUP BY rule ORDER BY 2 DESC, 1",
    )?;
    let refusals: Vec<RuleRefusals> = s
        .query_map(params![until], |r| {
            Ok(RuleRefusals {
                rule: r.get(0)?,
                count: r.get(1)?,
                strategies: r.get(2)?,
                first: r.get(3)?,
                last: r.get(4)?,
                example: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;

    let fills = repo::orders::fills_up_to(conn, until)?;
    let trades_total = fills.len();
    let trades: Vec<TradeLine> = fills[trades_total.saturating_sub(MAX_TRADES)..]
        .iter()
        .map(|f| TradeLine {
            date: f.as_of,
            strategy: f.book.clone(),
            order_ref: f.order_reference.clone(),
            leg: f.leg,
            instrument: f.instrument.key().trim().to_string(),
            quantity: f.quantity,
            price: f.price,
            commission: f.commission,
            kind: f.cash_kind.code().to_string(),
            cash: f.premium_cash() - f.commission,
        })
        .collect();

    Ok(Tearsheet {
        store_path: store.path().display().to_string(),
        header,
        provenance,
        imports,
        last_session: last,
        data,
        book_days,
        strategy_days: by_strategy.into_iter().collect(),
        approved,
        refusals,
        trades,
        trades_total,
    })
}

fn load_imports(conn: &Connection) -> Result<Vec<ImportedFile>, duckdb::Error> {
    if !crate::store::table_exists(conn, "imports")? {
        return Ok(Vec::new());
    }
    let mut s = conn.prepare(
        "SELECT file, layout, first_date, last_date, symbols FROM imports ORDER BY import_id",
    )?;
    let rows = s
        .query_map([], |r| {
            Ok(ImportedFile {
                file: r.get(0)?,
                layout: r.get(1)?,
                first: r.get(2)?,
                last: r.get(3)?,
                symbols: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Write the tearsheet whole or not at all.
pub fn write(t: &Tearsheet, path: &Path) -> Result<(), TearsheetError> {
    crate::store::write_atomic(path, render(t).as_bytes()).map_err(|e| {
        TearsheetError::Write(format!(
            "cannot write the tearsheet {}: {e}",
            path.display()
        ))
    })
}

/// `optdesk backtest report NAME`: the tearsheet of the backtest `name`, whose store is
/// `store_path` (the caller resolves it), written to `out` or beside the store as
/// `<name>.html`. Returns where it was written and what it holds.
pub fn write_for_backtest(
    name: &str,
    store_path: &Path,
    out: Option<&Path>,
    timeout: Duration,
) -> Result<(PathBuf, Tearsheet), TearsheetError> {
    if !store_path.exists() {
        return Err(TearsheetError::NotFound(format!(
            "no backtest named '{name}': no store {} (`optdesk backtest list` shows the backtests)",
            store_path.display()
        )));
    }
    let store = Store::open_read(store_path, timeout)?;
    let t = load(&store)?;
    drop(store);
    let path = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| store_path.with_extension("html"));
    write(&t, &path)?;
    Ok((path, t))
}

// ---------------------------------------------------------------------------------
// HTML

const CSS: &str = "
body{margin:0;background:#f6f8fa;color:#24292f;font-family:'DejaVu Sans',system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif}
header{background:#24292f;color:#fff;padding:16px 24px}
header h1{margin:0;font-size:20px}
header .sub{color:#d0d7de;font-size:13px;margin-top:4px}
header .kpis{display:flex;flex-wrap:wrap;gap:24px;margin-top:12px}
header .kpi b{display:block;font-size:20px}
header .kpi span{font-size:12px;color:#d0d7de}
main{max-width:1200px;margin:0 auto;padding:16px 24px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 16px;margin:16px 0;overflow-x:auto}
section h2{font-size:16px;margin:0 0 8px 0}
section h3{font-size:14px;margin:16px 0 6px 0}
.pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}
.pair section{margin:0}
svg.chart{width:100%;height:auto;display:block}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;color:#57606a;border-bottom:2px solid #d0d7de;padding:4px 8px;white-space:nowrap}
td{border-bottom:1px solid #eaeef2;padding:4px 8px}
table.monthly td,table.monthly th{text-align:right;white-space:nowrap}
table.monthly th:first-child{text-align:left}
details summary{font-size:13px;color:#57606a;cursor:pointer;margin-top:8px}
table.monthly td.pos{background:#dafbe1;color:#1a7f37}
table.monthly td.neg{background:#ffebe9;color:#cf222e}
table.monthly td.total{font-weight:700}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;font-size:13px;margin:0}
dl.facts dt{color:#57606a}
dl.facts dd{margin:0}
.origin{font-weight:700}
.origin.real{color:#1a7f37}
.origin.modelled{color:#9a6700}
.origin.derived{color:#57606a}
p.empty,p.note{color:#57606a;font-size:13px}
pre{font-size:12px;background:#f6f8fa;padding:8px;overflow-x:auto}
footer{color:#57606a;font-size:12px;text-align:center;padding:16px}
";

fn note(o: &mut String, s: &str) {
    let _ = write!(o, "<p class=\"note\">{}</p>", escape(s));
}

/// A table wrapped in an element with an id.
fn table_with_id(o: &mut String, id: &str, head: &[&str], rows: &[Vec<(String, String)>]) {
    let _ = write!(o, "<div id=\"{id}\">{}</div>", table(head, rows));
}

const RIGHT: &str = "text-align:right;white-space:nowrap;";

fn cell(s: impl Into<String>) -> (String, String) {
    (s.into(), String::new())
}

fn rcell(s: impl Into<String>) -> (String, String) {
    (s.into(), RIGHT.to_string())
}

/// A monthly return as a table cell: one decimal, with a sign.
fn month_cell(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{:+.1}%", x * 100.0),
        _ => String::new(),
    }
}

fn sign_class(v: Option<f64>) -> &'static str {
    match v {
        Some(x) if x > 0.0005 => "pos",
        Some(x) if x < -0.0005 => "neg",
        _ => "",
    }
}

/// The monthly-returns table (`<table class="monthly" id="monthly-returns-table">`).
pub fn monthly_table(years: &[YearReturns]) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut o =
        String::from("<table class=\"monthly\" id=\"monthly-returns-table\"><tr><th>Year</th>");
    for m in MONTHS {
        let _ = write!(o, "<th>{m}</th>");
    }
    o.push_str("<th>Total</th></tr>");
    for y in years {
        let _ = write!(o, "<tr><th>{}</th>", y.year);
        for (i, m) in y.months.iter().enumerate() {
            let _ = write!(
                o,
                "<td class=\"{}\" data-month=\"{}-{:02}\">{}</td>",
                sign_class(*m),
                y.year,
                i + 1,
                month_cell(*m)
            );
        }
        let _ = write!(
            o,
            "<td class=\"total {}\" data-year=\"{}\">{}</td></tr>",
            sign_class(y.total),
            y.year,
            month_cell(y.total)
        );
    }
    o.push_str("</table>");
    o
}

/// Per-strategy lines of one quantity (plus their total when there are several).
fn strategy_lines(
    t: &Tearsheet,
    value: impl Fn(&StrategyDay) -> Option<f64>,
    total_name: Option<&str>,
) -> Vec<Series> {
    let mut out = Vec::new();
    if let Some(name) = total_name.filter(|_| t.strategy_days.len() > 1) {
        let mut sum: BTreeMap<NaiveDate, f64> = BTreeMap::new();
        for (_, days) in &t.strategy_days {
            for d in days {
                if let Some(v) = value(d) {
                    *sum.entry(d.date).or_default() += v;
                }
            }
        }
        out.push(Series {
            name: name.to_string(),
            color: color(0),
            points: sum.into_iter().collect(),
        });
    }
    for (i, (st, days)) in t.strategy_days.iter().enumerate() {
        out.push(Series {
            name: st.clone(),
            color: color(i + 2),
            points: days
                .iter()
                .filter_map(|d| value(d).map(|v| (d.date, v)))
                .collect(),
        });
    }
    out
}

fn kpi(o: &mut String, v: &str, label: &str) {
    let _ = write!(
        o,
        "<div class=\"kpi\"><b>{}</b><span>{}</span></div>",
        escape(v),
        escape(label)
    );
}

fn fact(o: &mut String, k: &str, v: &str) {
    let _ = write!(o, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(v));
}

/// The tearsheet as one HTML document.
pub fn render(t: &Tearsheet) -> String {
    let h = &t.header;
    let d = &t.data;
    let mut o = String::with_capacity(256 * 1024);
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>optdesk backtest {} — tearsheet</title><style>{}{CSS}</style></head><body>",
        escape(&h.name),
        super::font::font_face_css()
    );

    // Header: what it is, and the headline figures.
    let _ = write!(
        o,
        "<header id=\"summary\"><h1>Backtest {}</h1><div class=\"sub\">{} to {} · {} of {} sessions · {}{} · source {} · seed {} · config {}</div><div class=\"kpis\">",
        escape(&h.name),
        h.from,
        h.to,
        h.sessions_done,
        h.sessions_total,
        escape(&h.status),
        h.message
            .as_deref()
            .map(|m| format!(" ({})", escape(m)))
            .unwrap_or_default(),
        escape(&h.source),
        h.seed,
        escape(&h.config_hash),
    );
    let book = d.metrics.iter().find(|m| m.kind == "book");
    let bm = book.and_then(|b| b.metrics.as_ref());
    let bt = book.and_then(|b| b.trades.as_ref());
    kpi(
        &mut o,
        &d.equity
            .last()
            .map(|p| format!("${}", money(p.value)))
            .unwrap_or_else(|| "n/a".into()),
        "final equity",
    );
    let start_equity = d.portfolio.as_ref().map(|p| p.start_equity);
    let total = match (start_equity, d.equity.last()) {
        (Some(s), Some(l)) if s > 0.0 => Some(l.value / s - 1.0),
        _ => bm.map(|m| m.total_return),
    };
    kpi(&mut o, &pct(total), "total return");
    kpi(&mut o, &pct(bm.and_then(|m| m.cagr)), "annualized");
    kpi(&mut o, &ratio(bm.and_then(|m| m.sharpe)), "Sharpe");
    kpi(
        &mut o,
        &pct(bm.map(|m| m.drawdown.max_drawdown)),
        "max drawdown",
    );
    kpi(
        &mut o,
        &bt.and_then(|t| t.win_rate)
            .map(|w| format!("{:.1}%", w * 100.0))
            .unwrap_or_else(|| "n/a".into()),
        "win rate",
    );
    kpi(
        &mut o,
        &bt.map(|t| t.trades.to_string())
            .unwrap_or_else(|| "0".into()),
        "closed trades",
    );
    o.push_str("</div></header><main>");

    // What the backtest was made with.
    section(&mut o, "configuration", "Configuration");
    o.push_str("<dl class=\"facts\">");
    fact(&mut o, "Name", &h.name);
    fact(
        &mut o,
        "Range",
        &format!(
            "{} to {} ({} of {} sessions done{})",
            h.from,
            h.to,
            h.sessions_done,
            h.sessions_total,
            t.last_session
                .map(|l| format!(", results to {l}"))
                .unwrap_or_default()
        ),
    );
    fact(
        &mut o,
        "Status",
        &match &h.message {
            Some(m) => format!("{} ({m})", h.status),
            None => h.status.clone(),
        },
    );
    fact(&mut o, "Source", &h.source);
    fact(&mut o, "Seed", &h.seed.to_string());
    fact(&mut o, "Configuration hash", &h.config_hash);
    fact(
        &mut o,
        "Overrides",
        &if h.overrides.is_empty() {
            "none".to_string()
        } else {
            h.overrides.join(", ")
        },
    );
    fact(&mut o, "Option quotes kept", &h.keep_quotes);
    fact(
        &mut o,
        "Ran",
        &format!(
            "optdesk {}, started {} UTC{}",
            h.version,
            h.started_at.format("%Y-%m-%d %H:%M:%S"),
            h.finished_at
                .map(|f| format!(", finished {} UTC", f.format("%Y-%m-%d %H:%M:%S")))
                .unwrap_or_default()
        ),
    );
    fact(
        &mut o,
        "Risk-free rate",
        &format!("{:.2}%", d.risk_free_rate * 100.0),
    );
    o.push_str("</dl><details><summary>Configuration snapshot (every job file as the backtest read it, overrides applied)</summary><pre>");
    o.push_str(&escape(&h.config_snapshot));
    o.push_str("</pre></details></section>");

    // Real and modelled.
    section(&mut o, "provenance", "What is real and what is modelled");
    let real: Vec<&str> = t
        .provenance
        .iter()
        .filter(|p| p.origin == Origin::Real)
        .map(|p| p.part)
        .collect();
    note(
        &mut o,
        &if real.is_empty() {
            "Nothing in this backtest is recorded market data: every price, quote and fill is modelled.".to_string()
        } else {
            format!(
                "Recorded market data: {}. Everything else is modelled or computed from it.",
                real.join(", ").to_lowercase()
            )
        },
    );
    let rows: Vec<Vec<(String, String)>> = t
        .provenance
        .iter()
        .map(|p| vec![cell(p.part), cell(p.origin.as_str()), cell(p.how.clone())])
        .collect();
    table_with_id(
        &mut o,
        "provenance-table",
        &["Part", "Origin", "From"],
        &rows,
    );
    if !t.imports.is_empty() {
        o.push_str("<h3>Imported files</h3>");
        let rows: Vec<Vec<(String, String)>> = t
            .imports
            .iter()
            .map(|f| {
                vec![
                    cell(f.file.clone()),
                    cell(f.layout.clone()),
                    cell(match (f.first, f.last) {
                        (Some(a), Some(b)) => format!("{a} to {b}"),
                        _ => "no rows".into(),
                    }),
                    cell(f.symbols.clone()),
                ]
            })
            .collect();
        o.push_str(&table(&["File", "Layout", "Dates", "Symbols"], &rows));
    }
    o.push_str("</section>");

    // Equity and drawdown.
    o.push_str("<div class=\"pair\">");
    let mut after = String::new();
    if let Some(s) = drawdown_sentence(&d.metrics) {
        note(&mut after, &s);
    }
    equity_and_drawdown(
        &mut o,
        d,
        "No benchmark history: the backtest has no benchmark snapshot.",
        &after,
    );
    o.push_str("</div>");

    // Monthly returns.
    section(&mut o, "monthly-returns", "Monthly returns");
    let years = monthly_returns(&d.equity, start_equity.filter(|s| *s > 0.0));
    if years.is_empty() {
        sentence(&mut o, "No portfolio snapshot yet: no returns.");
    } else {
        o.push_str(&monthly_table(&years));
        note(
            &mut o,
            "Each month's last equity over the previous month's (the first month's over the deposits); the year's column compounds its months.",
        );
    }
    o.push_str("</section>");

    // Metrics.
    section(
        &mut o,
        "metrics",
        "Metrics: the book, each strategy, each benchmark",
    );
    note(
        &mut o,
        &format!(
            "Risk-free rate {:.2}%; alpha (annualized) and beta against SPY; a strategy's curve is the deposits plus its P&L. Win rate, profit factor and average win/loss over closed trades.",
            d.risk_free_rate * 100.0
        ),
    );
    if has_metrics(&d.metrics) {
        table_with_id(
            &mut o,
            "metrics-table",
            METRICS_HEAD,
            &metrics_rows(&d.metrics),
        );
        table_with_id(
            &mut o,
            "trade-stats-table",
            TRADES_HEAD,
            &trade_rows(&d.metrics),
        );
    } else {
        sentence(
            &mut o,
            "Not enough history: the metrics need at least two sessions.",
        );
    }
    o.push_str(&svg::line_chart(
        "strategy-pnl-chart",
        "Cumulative P&L by strategy",
        &d.strategy_pnl
            .iter()
            .enumerate()
            .map(|(i, (s, c))| Series {
                name: s.clone(),
                color: color(i + 2),
                points: c.iter().map(|p| (p.date, p.value)).collect(),
            })
            .collect::<Vec<_>>(),
        1100,
        320,
        YFormat::Money,
    ));
    o.push_str("</section>");

    // Exposure and greeks.
    section(&mut o, "exposure", "Exposure and greeks over time");
    note(
        &mut o,
        "At each session's last snapshot: the market value of the open positions (net: long minus short), the open legs, and the positions' greeks summed per strategy (delta in shares of the underlyings, theta in dollars per calendar day, vega in dollars per volatility point).",
    );
    o.push_str("<div class=\"pair\">");
    let mut mv = vec![Series {
        name: "Portfolio".into(),
        color: color(0),
        points: t
            .book_days
            .iter()
            .map(|b| (b.date, b.market_value))
            .collect(),
    }];
    mv.extend(strategy_lines(t, |s| Some(s.market_value), None));
    o.push_str(&svg::line_chart(
        "exposure-chart",
        "Market value of open positions",
        &mv,
        640,
        300,
        YFormat::Money,
    ));
    let mut legs = vec![Series {
        name: "Portfolio".into(),
        color: color(0),
        points: t
            .book_days
            .iter()
            .map(|b| (b.date, b.open_positions as f64))
            .collect(),
    }];
    legs.extend(strategy_lines(t, |s| Some(s.open_positions as f64), None));
    o.push_str(&svg::line_chart(
        "open-positions-chart",
        "Open position legs",
        &legs,
        640,
        300,
        YFormat::Number,
    ));
    o.push_str(&svg::line_chart(
        "delta-chart",
        "Delta (shares)",
        &strategy_lines(t, |s| s.delta, Some("Total")),
        640,
        300,
        YFormat::Number,
    ));
    o.push_str(&svg::line_chart(
        "theta-chart",
        "Theta ($ per day)",
        &strategy_lines(t, |s| s.theta, Some("Total")),
        640,
        300,
        YFormat::Money,
    ));
    o.push_str(&svg::line_chart(
        "vega-chart",
        "Vega ($ per vol point)",
        &strategy_lines(t, |s| s.vega, Some("Total")),
        640,
        300,
        YFormat::Money,
    ));
    o.push_str("</div>");
    if t.strategy_days.is_empty() {
        sentence(
            &mut o,
            "No strategy snapshot: no strategy held a position or traded.",
        );
    }
    o.push_str("</section>");

    // Risk refusals.
    section(&mut o, "refusals", "Risk refusals by rule");
    let refused: i64 = t.refusals.iter().map(|r| r.count).sum();
    note(
        &mut o,
        &format!(
            "The risk gate approved {} order{} and refused {refused}.",
            t.approved,
            if t.approved == 1 { "" } else { "s" }
        ),
    );
    let bars: Vec<(String, f64)> = t
        .refusals
        .iter()
        .map(|r| (r.rule.clone(), r.count as f64))
        .collect();
    let height = (24 * bars.len() as u32 + 100).max(240);
    o.push_str(&svg::bar_chart(
        "refusals-chart",
        "Refusals by rule",
        &bars,
        1100,
        height,
        YFormat::Number,
    ));
    if t.refusals.is_empty() {
        sentence(&mut o, "The risk gate refused no order.");
    } else {
        let rows: Vec<Vec<(String, String)>> = t
            .refusals
            .iter()
            .map(|r| {
                vec![
                    cell(r.rule.clone()),
                    rcell(r.count.to_string()),
                    cell(r.strategies.clone()),
                    cell(if r.first == r.last {
                        r.first.to_string()
                    } else {
                        format!("{} to {}", r.first, r.last)
                    }),
                    cell(r.example.clone()),
                ]
            })
            .collect();
        table_with_id(
            &mut o,
            "refusals-table",
            &[
                "Rule",
                "Refusals",
                "Strategies",
                "Sessions",
                "Example reason",
            ],
            &rows,
        );
    }
    o.push_str("</section>");

    // Trades.
    section(&mut o, "trades", "Trade list");
    if t.trades.is_empty() {
        sentence(&mut o, "No trades: no order was filled.");
    } else {
        if t.trades_total > t.trades.len() {
            note(
                &mut o,
                &format!(
                    "The last {} of {} executions; all of them are in the backtest store's fills table (`optdesk --db {} export table fills --format csv`).",
                    t.trades.len(),
                    t.trades_total,
                    t.store_path
                ),
            );
        } else {
            note(
                &mut o,
                &format!(
                    "{} execution{}, one row per leg; prices per share, cash net of commission.",
                    t.trades_total,
                    if t.trades_total == 1 { "" } else { "s" }
                ),
            );
        }
        let rows: Vec<Vec<(String, String)>> = t
            .trades
            .iter()
            .map(|f| {
                vec![
                    cell(f.date.to_string()),
                    cell(f.strategy.clone()),
                    cell(format!("{}#{}", f.order_ref, f.leg)),
                    cell(f.instrument.clone()),
                    cell(if f.quantity >= 0 { "buy" } else { "sell" }),
                    rcell(f.quantity.unsigned_abs().to_string()),
                    rcell(f.price.to_string()),
                    rcell(f.commission.to_string()),
                    cell(f.kind.clone()),
                    rcell(f.cash.to_string()),
                ]
            })
            .collect();
        table_with_id(
            &mut o,
            "trade-list",
            &[
                "Date",
                "Strategy",
                "Order#leg",
                "Leg",
                "Side",
                "Qty",
                "Price",
                "Commission",
                "Kind",
                "Cash",
            ],
            &rows,
        );
    }
    o.push_str("</section>");
    let _ = write!(
        o,
        "</main><footer>optdesk {} — regenerate with <code>optdesk backtest report {}</code></footer></body></html>",
        crate::VERSION,
        escape(&h.name)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn p(y: i32, m: u32, day: u32, value: f64) -> Point {
        Point {
            date: d(y, m, day),
            value,
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn monthly_returns_compound_month_ends_and_years() {
        let curve = [
            p(2023, 12, 29, 100.0),
            p(2024, 1, 15, 110.0),
            p(2024, 1, 31, 105.0),
            p(2024, 2, 29, 126.0),
            p(2024, 12, 31, 113.4),
            p(2025, 1, 2, f64::NAN),
            p(2025, 1, 3, 124.74),
        ];
        let y = monthly_returns(&curve, Some(100.0));
        assert_eq!(
            y.iter().map(|r| r.year).collect::<Vec<_>>(),
            [2023, 2024, 2025]
        );
        assert!(close(y[0].months[11], 0.0));
        assert!(close(y[0].total, 0.0));
        // January: the month's last value (105) over December's (100), not its highest.
        assert!(close(y[1].months[0], 0.05), "{:?}", y[1].months[0]);
        assert!(close(y[1].months[1], 0.2), "{:?}", y[1].months[1]);
        assert!(y[1].months[2..11].iter().all(Option::is_none));
        // December: over February's end, the last month with a value.
        assert!(close(y[1].months[11], -0.1), "{:?}", y[1].months[11]);
        assert!(close(y[1].total, 0.134), "{:?}", y[1].total);
        assert!(close(y[2].months[0], 0.1), "{:?}", y[2].months[0]);
        assert!(close(y[2].total, 0.1));

        // Without a base, the first month is over the first value.
        let y = monthly_returns(&curve[1..], None);
        assert!(close(y[0].months[0], 105.0 / 110.0 - 1.0));
        // The deposits as the base: the first month is over them.
        let y = monthly_returns(&curve[1..], Some(100.0));
        assert!(close(y[0].months[0], 0.05));
        assert!(monthly_returns(&[], Some(1.0)).is_empty());
        // A base ≤ 0 gives no return rather than an infinite one.
        let y = monthly_returns(&curve[1..3], Some(0.0));
        assert_eq!(y[0].months[0], None);
    }

    #[test]
    fn the_monthly_table_shows_each_month_and_the_year() {
        let curve = [
            p(2024, 1, 31, 105.0),
            p(2024, 2, 29, 126.0),
            p(2024, 12, 31, 113.4),
        ];
        let html = monthly_table(&monthly_returns(&curve, Some(100.0)));
        assert!(html.contains("id=\"monthly-returns-table\""));
        assert!(html.contains("data-month=\"2024-01\">+5.0%</td>"), "{html}");
        assert!(
            html.contains("class=\"pos\" data-month=\"2024-02\">+20.0%</td>"),
            "{html}"
        );
        assert!(
            html.contains("class=\"neg\" data-month=\"2024-12\">-10.0%</td>"),
            "{html}"
        );
        assert!(html.contains("data-month=\"2024-03\"></td>"), "{html}");
        assert!(html.contains("data-year=\"2024\">+13.4%</td>"), "{html}");
    }

    #[test]
    fn sim_over_bars_says_the_prices_are_real_and_the_quotes_modelled() {
        let snap = "# ==== desk.toml ====\n[desk]\nsource = \"sim\"\n[sim]\nseed = 42\nunderlying = \"bars\"\n# ==== fetch_chains.toml ====\n[params]\n";
        assert!(sim_over_bars(snap));
        assert!(!sim_over_bars(&snap.replace("\"bars\"", "\"model\"")));
        assert!(!sim_over_bars(""));
        let files = [ImportedFile {
            file: "/bars/SPY.csv".into(),
            layout: "bars".into(),
            first: Some(d(2024, 1, 2)),
            last: Some(d(2024, 3, 28)),
            symbols: "SPY".into(),
        }];
        let p = data_provenance(&MarketFacts {
            source: "sim",
            seed: 42,
            config_snapshot: snap,
            imports: &files,
        });
        let prices = p.iter().find(|x| x.part.starts_with("Underlying")).unwrap();
        assert_eq!(prices.origin, Origin::Real);
        assert!(prices.how.contains("SPY"), "{}", prices.how);
        let quotes = p.iter().find(|x| x.part == "Option quotes").unwrap();
        assert_eq!(quotes.origin, Origin::Modelled);
        let vol = p.iter().find(|x| x.part == "Implied-vol level").unwrap();
        assert_eq!(vol.origin, Origin::Modelled, "no VIX imported");
    }

    #[test]
    fn provenance_says_what_is_real() {
        let sim = data_provenance(&MarketFacts {
            source: "sim",
            seed: 7,
            config_snapshot: "",
            imports: &[],
        });
        assert!(sim.iter().all(|p| p.origin != Origin::Real), "{sim:?}");
        assert!(sim.iter().any(|p| p.how.contains("seed 7")));
        let files = [ImportedFile {
            file: "/data/spy.csv".into(),
            layout: "cboe".into(),
            first: Some(d(2024, 1, 2)),
            last: Some(d(2024, 1, 31)),
            symbols: "SPY".into(),
        }];
        let replay = data_provenance(&MarketFacts {
            source: "replay",
            seed: 7,
            config_snapshot: "",
            imports: &files,
        });
        let quotes = replay.iter().find(|p| p.part == "Option quotes").unwrap();
        assert_eq!(quotes.origin, Origin::Real);
        assert!(quotes.how.contains("imported file"));
        let fills = replay.iter().find(|p| p.part == "Fills").unwrap();
        assert_eq!(fills.origin, Origin::Modelled);
    }

    #[test]
    fn the_risk_free_rate_comes_from_the_snapshot() {
        let snap = "# ==== desk.toml ====\n[desk]\n# ==== email_report.toml ====\n[params]\nrisk_free_rate = 0.025\n# ==== fetch_chains.toml ====\n[params]\nrisk_free_rate = \"x\"\n";
        assert_eq!(risk_free_rate_of(snap).unwrap(), 0.025);
        let none = "# ==== email_report.toml ====\n[params]\nsubject_prefix = \"x\"\n";
        assert_eq!(risk_free_rate_of(none).unwrap(), 0.04);
        assert_eq!(risk_free_rate_of("").unwrap(), 0.04);
        let bad = "# ==== email_report.toml ====\n[params]\nrisk_free_rate = \"high\"\n";
        let e = risk_free_rate_of(bad).unwrap_err().to_string();
        assert!(
            e.contains("risk_free_rate") && e.contains("expected a number"),
            "{e}"
        );
    }
}
