//! Exports: the files the replaced systems wrote, rebuilt from the store
//! (`optdesk export seed`), and any table or view of a store as Parquet or CSV through
//! DuckDB's own `COPY ... TO` (`optdesk export table`).
//!
//! `export seed --out DIR` writes, as of a session (every row up to it):
//!
//! | file | from | one row / entry per |
//! |---|---|---|
//! | `signals/signal_YYYYMMDD.json` | `signals`, `correlation`, `vol_metrics`, `risk_decisions`, `order_legs`, `fills` | session with a dispersion signal |
//! | `signals/signal_history.csv` | the same | session with a dispersion signal |
//! | `positions/current_positions.json` | `fills` (open lots), `position_marks` | open dispersion trade |
//! | `positions/trade_history.csv` | `fills` (lots matched first in, first out) | closed dispersion trade |
//! | `historical_data/correlation_data.csv` | `correlation` | session with an implied correlation |
//! | `portfolio_data.json` | `cash_ledger`, `fills`, `position_marks`, `portfolio_snapshots`, `benchmark_snapshots` | the whole account |
//!
//! Everything is computed first; then each file is written whole (a temporary name,
//! then renamed), so a failure leaves no half-written file. No configuration value
//! other than the dispersion strategy's index, components and entry threshold is read,
//! and no secret is in any file.

use crate::store::write_atomic;
use chrono::{NaiveDate, NaiveDateTime};
use duckdb::{params, Connection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("store: {0}")]
    Db(#[from] duckdb::Error),
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Empty(String),
    #[error("no table or view named '{name}' in {store}; its tables and views are: {tables}")]
    UnknownTable {
        name: String,
        store: String,
        tables: String,
    },
}

/// What the dispersion files are about: the strategy, its index and components (the
/// correlation job's, largest weight first) and its entry threshold.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub as_of: Option<NaiveDate>,
    pub strategy: String,
    pub index: String,
    pub components: Vec<String>,
    pub z_entry: f64,
}

/// One file written: its path (relative to the folder) and its rows or entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub file: String,
    pub rows: usize,
}

#[derive(Debug, Clone)]
pub struct SeedSummary {
    pub as_of: NaiveDate,
    pub files: Vec<Written>,
}

/// `signals/signal_YYYYMMDD.json`, fields in this order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SignalDoc {
    pub date: String,
    /// The snapshot the signal was computed at (New York), `YYYY-MM-DDTHH:MM:SS`.
    pub timestamp: String,
    pub strategy: String,
    pub index: String,
    pub implied_correlation: Option<f64>,
    pub realized_correlation: Option<f64>,
    pub z_score: Option<f64>,
    pub correlation_mean: Option<f64>,
    pub correlation_std: Option<f64>,
    /// Sessions in the Z-score's window.
    pub lookback_days: Option<i32>,
    /// Sessions of implied-correlation history behind the Z-score.
    pub history_sessions: Option<i32>,
    pub z_threshold: f64,
    /// SHORT DISPERSION, LONG DISPERSION or NO TRADE (from the Z-score and threshold).
    pub signal: String,
    /// What the signal calls for, in words.
    pub trade: String,
    /// What the strategy did: propose or pass.
    pub action: String,
    /// Why it passed (or why there is no correlation), else null.
    pub reason: Option<String>,
    pub index_iv: Option<f64>,
    /// Components with a valid IV behind the implied correlation.
    pub num_components: Option<i32>,
    /// 30-day ATM IV of each component that had one, by symbol.
    pub component_ivs: BTreeMap<String, f64>,
    pub proposed: bool,
    pub approved: bool,
    pub executed: bool,
    pub order_ref: Option<String>,
    /// The numbers the strategy proposed with (zscore, budget, index_contracts, ...).
    pub proposal: BTreeMap<String, f64>,
    pub risk_decision: Option<RiskDecision>,
    pub legs: Vec<SignalLeg>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RiskDecision {
    pub decision: String,
    pub rule: String,
    pub reason: Option<String>,
    pub requirement: Option<f64>,
    pub max_loss: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SignalLeg {
    pub leg: i32,
    pub contract: String,
    pub symbol: String,
    pub right: Option<String>,
    pub strike: Option<f64>,
    pub expiry: Option<String>,
    /// Positive buys, negative sells.
    pub quantity: i64,
    /// The average fill price per share; null when not filled.
    pub fill_price: Option<f64>,
}

/// `positions/current_positions.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CurrentPositions {
    pub as_of: String,
    pub strategy: String,
    pub positions: Vec<OpenTradeDoc>,
}

/// One open trade: what its entry order opened and is still open.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpenTradeDoc {
    pub trade_id: String,
    pub signal: String,
    pub index: String,
    pub entry_date: String,
    pub entry_z_score: Option<f64>,
    pub sessions_held: i64,
    /// Sum of quantity × entry price × multiplier: positive paid, negative received.
    pub entry_cost: f64,
    pub entry_commission: f64,
    /// At the session's marks; null when a leg has no mark.
    pub market_value: Option<f64>,
    pub unrealized_pnl: Option<f64>,
    pub status: String,
    pub legs: Vec<OpenLegDoc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpenLegDoc {
    pub symbol: String,
    pub contract: String,
    pub right: Option<String>,
    pub strike: Option<f64>,
    pub expiry: Option<String>,
    pub quantity: i64,
    pub entry_price: f64,
    pub current_price: Option<f64>,
    pub stale: bool,
}

/// `portfolio_data.json`: the daily paper trader's shape (its first six fields), for
/// the whole account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortfolioData {
    pub start_date: Option<String>,
    pub initial_capital: f64,
    pub current_cash: f64,
    pub positions: Vec<PositionDoc>,
    pub closed_trades: Vec<ClosedTradeDoc>,
    pub daily_snapshots: Vec<SnapshotDoc>,
    pub as_of: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PositionDoc {
    pub ticker: String,
    /// SELL (short) or BUY (long).
    pub action: String,
    pub strike: Option<f64>,
    pub contracts: i64,
    pub entry_price: f64,
    pub status: String,
    /// CALL, PUT or SHARES.
    #[serde(rename = "type")]
    pub kind: String,
    pub expiration: Option<String>,
    pub entry_date: String,
    pub days_held: i64,
    /// Premium received (positive) or paid (negative), dollars.
    pub premium: f64,
    pub current_price: Option<f64>,
    pub stale_mark: bool,
    pub unrealized_pnl: Option<f64>,
    pub strategy: String,
    pub contract: String,
    pub multiplier: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClosedTradeDoc {
    pub ticker: String,
    pub action: String,
    pub strike: Option<f64>,
    pub contracts: i64,
    pub entry_price: f64,
    pub status: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub expiration: Option<String>,
    pub entry_date: String,
    pub exit_date: String,
    pub exit_price: f64,
    /// How it closed: exit, expire, flatten (the closing order's intent).
    pub exit_type: String,
    pub days_held: i64,
    pub premium: f64,
    pub commission: f64,
    pub pnl: f64,
    pub strategy: String,
    pub contract: String,
    pub multiplier: i64,
    pub entry_order: String,
    pub exit_order: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotDoc {
    pub date: String,
    pub portfolio_value: f64,
    pub cash: f64,
    pub positions_value: f64,
    pub total_return: f64,
    pub spy_return: Option<f64>,
    pub alpha: Option<f64>,
    pub open_positions: i32,
    pub benchmarks: BTreeMap<String, BenchmarkDoc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BenchmarkDoc {
    pub price: f64,
    pub value: f64,
    #[serde(rename = "return")]
    pub total_return: f64,
}

fn pretty<T: Serialize>(x: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(x).expect("a document serializes");
    v.push(b'\n');
    v
}

/// The seed's signal names.
pub const SHORT: &str = "SHORT DISPERSION";
pub const LONG: &str = "LONG DISPERSION";
pub const NO_TRADE: &str = "NO TRADE";

/// The last session the store has a trading record for (signals, correlation, fills
/// or portfolio snapshots), or `None` for an empty store.
pub fn last_session(conn: &Connection) -> Result<Option<NaiveDate>, ExportError> {
    Ok(conn.query_row(
        "SELECT max(d) FROM (SELECT max(as_of) AS d FROM signals UNION ALL SELECT max(as_of) FROM correlation
         UNION ALL SELECT max(as_of) FROM fills UNION ALL SELECT max(as_of) FROM portfolio_snapshots)",
        [],
        |r| r.get(0),
    )?)
}

/// Write every seed file into `out`.
pub fn export_seed(
    conn: &Connection,
    out: &Path,
    opts: &SeedOptions,
) -> Result<SeedSummary, ExportError> {
    let last = last_session(conn)?;
    let Some(last) = last else {
        return Err(ExportError::Empty(
            "the store has no trading record yet (no signals, correlation, fills or portfolio snapshots): run `optdesk run daily` first".into(),
        ));
    };
    let as_of = opts.as_of.unwrap_or(last);
    let first: Option<NaiveDate> = conn.query_row(
        "SELECT min(d) FROM (SELECT min(as_of) AS d FROM signals UNION ALL SELECT min(as_of) FROM correlation
         UNION ALL SELECT min(as_of) FROM fills UNION ALL SELECT min(as_of) FROM portfolio_snapshots)",
        [],
        |r| r.get(0),
    )?;
    if let Some(first) = first.filter(|f| as_of < *f) {
        return Err(ExportError::Empty(format!(
            "--as-of {as_of} is before the store's first session: it covers {first} to {last}"
        )));
    }
    let fills = load_fills(conn, as_of)?;
    let book = Book::build(&fills);
    let mut files: Vec<(String, Vec<u8>, usize)> = Vec::new();

    // signals/
    let signals = signals(conn, as_of, opts)?;
    for s in &signals {
        let date = s.date.replace('-', "");
        files.push((format!("signals/signal_{date}.json"), pretty(s), 1));
    }
    files.push((
        "signals/signal_history.csv".into(),
        signal_history_csv(&signals)?,
        signals.len(),
    ));

    // positions/
    let marks = marks(conn, as_of)?;
    let open = current_positions(&book, as_of, opts, &marks, conn)?;
    let n_open = open.positions.len();
    files.push((
        "positions/current_positions.json".into(),
        pretty(&open),
        n_open,
    ));
    let (history, n_closed) = trade_history_csv(conn, &book, opts)?;
    files.push(("positions/trade_history.csv".into(), history, n_closed));

    // historical_data/
    let (corr, n_corr) = correlation_csv(conn, as_of, &opts.index)?;
    files.push(("historical_data/correlation_data.csv".into(), corr, n_corr));

    // portfolio_data.json
    let portfolio = portfolio_data(conn, as_of, &book, &marks)?;
    files.push(("portfolio_data.json".into(), pretty(&portfolio), 1));

    let mut written = Vec::new();
    for (name, bytes, rows) in files {
        let path = out.join(&name);
        write_atomic(&path, &bytes).map_err(|source| ExportError::Io {
            path: path.display().to_string(),
            source,
        })?;
        written.push(Written { file: name, rows });
    }
    Ok(SeedSummary {
        as_of,
        files: written,
    })
}

/// One fill, as the exports need it.
#[derive(Debug, Clone)]
struct FillRow {
    as_of: NaiveDate,
    order_ref: String,
    strategy: String,
    instrument: String,
    underlying: String,
    kind: String,
    expiry: Option<NaiveDate>,
    strike: Option<f64>,
    put_call: Option<String>,
    multiplier: i64,
    quantity: i64,
    price: f64,
    commission: f64,
    /// The order's intent: entry, exit, expire, flatten.
    intent: String,
}

fn load_fills(conn: &Connection, as_of: NaiveDate) -> Result<Vec<FillRow>, ExportError> {
    let mut s = conn.prepare(
        "SELECT f.as_of, f.order_ref, f.strategy, f.instrument, f.underlying, f.kind, f.expiry, f.strike::DOUBLE,
                f.put_call, f.multiplier, f.quantity, f.price::DOUBLE, f.commission::DOUBLE,
                coalesce(l.intent, 'entry')
         FROM fills f LEFT JOIN order_legs l USING (order_ref, leg)
         WHERE f.as_of <= ? ORDER BY f.as_of, f.filled_at, f.order_ref, f.leg, f.exec_id",
    )?;
    let rows = s.query_map(params![as_of], |r| {
        Ok(FillRow {
            as_of: r.get(0)?,
            order_ref: r.get(1)?,
            strategy: r.get(2)?,
            instrument: r.get(3)?,
            underlying: r.get(4)?,
            kind: r.get(5)?,
            expiry: r.get(6)?,
            strike: r.get(7)?,
            put_call: r.get(8)?,
            multiplier: r.get(9)?,
            quantity: r.get(10)?,
            price: r.get(11)?,
            commission: r.get(12)?,
            intent: r.get(13)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A quantity opened by one fill and not yet closed.
#[derive(Debug, Clone)]
struct Lot {
    fill: usize,
    /// Signed, still open.
    quantity: i64,
    commission_per_unit: f64,
}

/// A quantity opened by one fill and closed by another.
#[derive(Debug, Clone)]
struct Piece {
    open: usize,
    close: usize,
    /// Signed as opened (negative: sold to open).
    quantity: i64,
    /// Both fills' commissions, in proportion to the quantity.
    commission: f64,
}

impl Piece {
    fn pnl(&self, fills: &[FillRow]) -> f64 {
        let (o, c) = (&fills[self.open], &fills[self.close]);
        self.quantity as f64 * (c.price - o.price) * o.multiplier as f64 - self.commission
    }
}

/// The fills matched into lots, first in first out, per (strategy, instrument).
struct Book<'a> {
    fills: &'a [FillRow],
    open: Vec<Lot>,
    closed: Vec<Piece>,
}

impl<'a> Book<'a> {
    fn build(fills: &'a [FillRow]) -> Book<'a> {
        let mut lots: BTreeMap<(&str, &str), VecDeque<Lot>> = BTreeMap::new();
        let mut closed = Vec::new();
        for (i, f) in fills.iter().enumerate() {
            if f.quantity == 0 {
                continue;
            }
            let per_unit = f.commission / f.quantity.unsigned_abs() as f64;
            let q = lots
                .entry((f.strategy.as_str(), f.instrument.as_str()))
                .or_default();
            let mut left = f.quantity;
            while left != 0 {
                let Some(lot) = q
                    .front_mut()
                    .filter(|l| l.quantity.signum() != left.signum())
                else {
                    break;
                };
                let take = left.abs().min(lot.quantity.abs());
                let sign = lot.quantity.signum();
                closed.push(Piece {
                    open: lot.fill,
                    close: i,
                    quantity: sign * take,
                    commission: (lot.commission_per_unit + per_unit) * take as f64,
                });
                lot.quantity -= sign * take;
                left += sign * take;
                if lot.quantity == 0 {
                    q.pop_front();
                }
            }
            if left != 0 {
                q.push_back(Lot {
                    fill: i,
                    quantity: left,
                    commission_per_unit: per_unit,
                });
            }
        }
        let mut open: Vec<Lot> = lots.into_values().flatten().collect();
        open.sort_by_key(|l| l.fill);
        Book {
            fills,
            open,
            closed,
        }
    }
}

/// (strategy, instrument) → (mark per unit, stale).
type Marks = HashMap<(String, String), (Option<f64>, bool)>;

/// Marks of the positions open at the end of `as_of` (instrument → (mark, stale)),
/// at the day's last portfolio snapshot, as `snapshot_benchmarks` marked them.
fn marks(conn: &Connection, as_of: NaiveDate) -> Result<Marks, ExportError> {
    let qt: NaiveDateTime = conn.query_row(
        "SELECT coalesce(max(quote_time), ?::DATE + INTERVAL '23 hours 59 minutes')::TIMESTAMP
         FROM portfolio_snapshots WHERE as_of = ?",
        params![as_of, as_of],
        |r| r.get(0),
    )?;
    let mut s = conn.prepare(
        "SELECT strategy, instrument, mark, coalesce(stale, false) FROM position_marks(?::DATE, ?::TIMESTAMP)",
    )?;
    let rows = s.query_map(params![as_of, qt], |r| {
        Ok((
            (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            (r.get::<_, Option<f64>>(2)?, r.get::<_, bool>(3)?),
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (x * k).round() / k
}

fn money(x: f64) -> f64 {
    round(x, 2)
}

/// A finite number, or none.
fn fin(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

fn signal_name(z: Option<f64>, z_entry: f64) -> &'static str {
    match z {
        Some(z) if z > z_entry => SHORT,
        Some(z) if z < -z_entry => LONG,
        _ => NO_TRADE,
    }
}

/// The trade a signal calls for, in the seed's words.
fn trade_words(signal: &str) -> &'static str {
    match signal {
        SHORT => "sell index straddle, buy component straddles",
        LONG => "buy index straddle, sell component straddles",
        _ => "no trade",
    }
}

/// A session's row of `correlation`.
struct CorrRow {
    implied: Option<f64>,
    realized: Option<f64>,
    zscore: Option<f64>,
    mean: Option<f64>,
    sd: Option<f64>,
    window: i32,
    history: i32,
    components: i32,
    note: Option<String>,
}

/// One JSON document per session with a signal of the dispersion strategy (its first
/// snapshot of the day), oldest first.
fn signals(
    conn: &Connection,
    as_of: NaiveDate,
    opts: &SeedOptions,
) -> Result<Vec<SignalDoc>, ExportError> {
    type Row = (
        NaiveDate,
        NaiveDateTime,
        String,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
    );
    let mut s = conn.prepare(
        "SELECT as_of, quote_time, underlying, order_ref, action, reason, numbers FROM signals
         WHERE strategy = ? AND as_of <= ?
         QUALIFY quote_time = min(quote_time) OVER (PARTITION BY as_of)
         ORDER BY as_of, quote_time, order_ref NULLS LAST",
    )?;
    let rows: Vec<Row> = s
        .query_map(params![opts.strategy, as_of], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    // One per session: a proposal when there is one, else the first pass.
    let mut by_day: BTreeMap<NaiveDate, Row> = BTreeMap::new();
    for r in rows {
        let keep = match by_day.get(&r.0) {
            None => true,
            Some(old) => old.4 != "propose" && r.4 == "propose",
        };
        if keep {
            by_day.insert(r.0, r);
        }
    }
    let mut corr = conn.prepare(
        "SELECT implied_corr, realized_corr, zscore, corr_mean, corr_sd, zscore_window, history_sessions,
                components, note
         FROM correlation WHERE index_symbol = ? AND as_of = ? ORDER BY quote_time LIMIT 1",
    )?;
    let mut ivs = conn.prepare(
        "SELECT symbol, atm_iv_30d FROM vol_metrics WHERE as_of = ? AND quote_time = ? AND atm_iv_30d IS NOT NULL",
    )?;
    let mut decision = conn.prepare(
        "SELECT decision, rule, reason, requirement::DOUBLE, max_loss::DOUBLE FROM risk_decisions
         WHERE order_ref = ? ORDER BY quote_time DESC LIMIT 1",
    )?;
    let mut legs = conn.prepare(
        "SELECT l.leg, trim(l.instrument), l.underlying, l.put_call, l.strike::DOUBLE, l.expiry, l.quantity,
                (SELECT sum(f.price * f.quantity)::DOUBLE / nullif(sum(f.quantity), 0) FROM fills f
                 WHERE f.order_ref = l.order_ref AND f.leg = l.leg),
                (SELECT sum(f.quantity) FROM fills f WHERE f.order_ref = l.order_ref AND f.leg = l.leg)
         FROM order_legs l WHERE l.order_ref = ? ORDER BY l.leg",
    )?;
    let mut out: Vec<SignalDoc> = Vec::new();
    for (date, qt, underlying, order_ref, action, reason, numbers) in by_day.into_values() {
        let index = if underlying.is_empty() {
            opts.index.clone()
        } else {
            underlying
        };
        let c: Option<CorrRow> = corr
            .query_row(params![index, date], |r| {
                Ok(CorrRow {
                    implied: r.get(0)?,
                    realized: r.get(1)?,
                    zscore: r.get(2)?,
                    mean: r.get(3)?,
                    sd: r.get(4)?,
                    window: r.get(5)?,
                    history: r.get(6)?,
                    components: r.get(7)?,
                    note: r.get(8)?,
                })
            })
            .map(Some)
            .or_else(|e| match e {
                duckdb::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        let day_ivs: HashMap<String, f64> = ivs
            .query_map(params![date, qt], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let component_ivs: BTreeMap<String, f64> = opts
            .components
            .iter()
            .filter_map(|s| day_ivs.get(s).map(|v| (s.clone(), round(*v, 6))))
            .collect();
        let proposal: BTreeMap<String, f64> = numbers
            .as_deref()
            .and_then(|n| serde_json::from_str(n).ok())
            .unwrap_or_default();
        let z = fin(c.as_ref().and_then(|c| c.zscore)).or_else(|| proposal.get("zscore").copied());
        let signal = signal_name(z, opts.z_entry);
        let (mut risk, mut order_legs, mut executed) = (None, Vec::new(), false);
        if let Some(r) = &order_ref {
            risk = decision
                .query_row(params![r], |x| {
                    Ok(RiskDecision {
                        decision: x.get(0)?,
                        rule: x.get(1)?,
                        reason: x.get(2)?,
                        requirement: x.get::<_, Option<f64>>(3)?.map(money),
                        max_loss: x.get::<_, Option<f64>>(4)?.map(money),
                    })
                })
                .map(Some)
                .or_else(|e| match e {
                    duckdb::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            for l in legs.query_map(params![r], |x| {
                let filled: Option<i64> = x.get(8)?;
                Ok((
                    SignalLeg {
                        leg: x.get(0)?,
                        contract: x.get(1)?,
                        symbol: x.get(2)?,
                        right: x.get(3)?,
                        strike: x.get(4)?,
                        expiry: x.get::<_, Option<NaiveDate>>(5)?.map(|d| d.to_string()),
                        quantity: x.get(6)?,
                        fill_price: fin(x.get::<_, Option<f64>>(7)?.map(|p| round(p, 4))),
                    },
                    filled.unwrap_or(0) != 0,
                ))
            })? {
                let (leg, filled) = l?;
                executed |= filled;
                order_legs.push(leg);
            }
        }
        let approved = risk.as_ref().is_some_and(|r| r.decision == "approved");
        out.push(SignalDoc {
            date: date.to_string(),
            timestamp: qt.format("%Y-%m-%dT%H:%M:%S").to_string(),
            strategy: opts.strategy.clone(),
            index_iv: day_ivs.get(&index).map(|v| round(*v, 6)),
            index,
            implied_correlation: fin(c.as_ref().and_then(|c| c.implied)),
            realized_correlation: fin(c.as_ref().and_then(|c| c.realized)),
            z_score: z,
            correlation_mean: fin(c.as_ref().and_then(|c| c.mean)),
            correlation_std: fin(c.as_ref().and_then(|c| c.sd)),
            lookback_days: c.as_ref().map(|c| c.window),
            history_sessions: c.as_ref().map(|c| c.history),
            z_threshold: opts.z_entry,
            signal: signal.into(),
            trade: trade_words(signal).into(),
            proposed: action == "propose",
            action,
            reason: reason.or_else(|| c.as_ref().and_then(|c| c.note.clone())),
            num_components: c.as_ref().map(|c| c.components),
            component_ivs,
            approved,
            executed,
            order_ref,
            proposal,
            risk_decision: risk,
            legs: order_legs,
        });
    }
    Ok(out)
}

/// The columns of `signals/signal_history.csv`.
pub const SIGNAL_HISTORY_COLUMNS: &[&str] = &[
    "date",
    "index",
    "implied_correlation",
    "z_score",
    "signal",
    "action",
    "index_iv",
    "num_components",
    "proposed",
    "approved",
    "executed",
    "order_ref",
    "reason",
];

fn csv_bytes(header: &[&str], rows: &[Vec<String>]) -> Result<Vec<u8>, ExportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| ExportError::Io {
        path: "csv".into(),
        source: std::io::Error::other(e.to_string()),
    };
    w.write_record(header).map_err(io)?;
    for r in rows {
        w.write_record(r).map_err(io)?;
    }
    w.into_inner().map_err(|e| ExportError::Io {
        path: "csv".into(),
        source: std::io::Error::other(e.to_string()),
    })
}

fn opt<T: ToString>(x: &Option<T>) -> String {
    x.as_ref().map(|v| v.to_string()).unwrap_or_default()
}

fn signal_history_csv(signals: &[SignalDoc]) -> Result<Vec<u8>, ExportError> {
    let rows: Vec<Vec<String>> = signals
        .iter()
        .map(|s| {
            vec![
                s.date.clone(),
                s.index.clone(),
                opt(&s.implied_correlation),
                opt(&s.z_score),
                s.signal.clone(),
                s.action.clone(),
                opt(&s.index_iv),
                opt(&s.num_components),
                s.proposed.to_string(),
                s.approved.to_string(),
                s.executed.to_string(),
                opt(&s.order_ref),
                opt(&s.reason),
            ]
        })
        .collect();
    csv_bytes(SIGNAL_HISTORY_COLUMNS, &rows)
}

/// Sessions from `from` to `to`, not counting `from` (0 when the same day).
fn sessions_between(from: NaiveDate, to: NaiveDate) -> i64 {
    if to <= from {
        return 0;
    }
    crate::calendar::sessions(from, to)
        .map(|s| s.iter().filter(|x| x.date > from).count() as i64)
        .unwrap_or_else(|_| (to - from).num_days())
}

/// Long/short of the index leg says which way a dispersion trade went.
fn trade_signal(legs: &[&FillRow], quantities: &[i64], index: &str) -> &'static str {
    legs.iter()
        .zip(quantities)
        .find(|(f, _)| f.underlying == index)
        .map_or(NO_TRADE, |(_, q)| if *q < 0 { SHORT } else { LONG })
}

/// The open trades of the strategy (its lots grouped by the order that opened them).
fn current_positions(
    book: &Book,
    as_of: NaiveDate,
    opts: &SeedOptions,
    marks: &Marks,
    conn: &Connection,
) -> Result<CurrentPositions, ExportError> {
    let f = book.fills;
    let mut trades: BTreeMap<(NaiveDate, String), Vec<&Lot>> = BTreeMap::new();
    for l in book
        .open
        .iter()
        .filter(|l| f[l.fill].strategy == opts.strategy)
    {
        let o = &f[l.fill];
        trades
            .entry((o.as_of, o.order_ref.clone()))
            .or_default()
            .push(l);
    }
    let mut zq = conn.prepare("SELECT numbers FROM signals WHERE order_ref = ? LIMIT 1")?;
    let mut positions = Vec::new();
    for ((entry_date, order_ref), lots) in trades {
        let fills: Vec<&FillRow> = lots.iter().map(|l| &f[l.fill]).collect();
        let qs: Vec<i64> = lots.iter().map(|l| l.quantity).collect();
        let (mut cost, mut value, mut complete) = (0.0, 0.0, true);
        let mut legs = Vec::new();
        for (l, o) in lots.iter().zip(&fills) {
            let m = o.multiplier as f64;
            let (mark, stale) = marks
                .get(&(o.strategy.clone(), o.instrument.clone()))
                .cloned()
                .unwrap_or((None, false));
            cost += l.quantity as f64 * o.price * m;
            match mark {
                Some(x) => value += l.quantity as f64 * x * m,
                None => complete = false,
            }
            legs.push(OpenLegDoc {
                symbol: o.underlying.clone(),
                contract: o.instrument.trim().to_string(),
                right: o.put_call.clone(),
                strike: o.strike,
                expiry: o.expiry.map(|d| d.to_string()),
                quantity: l.quantity,
                entry_price: o.price,
                current_price: fin(mark),
                stale,
            });
        }
        let z = zq
            .query_row(params![order_ref], |r| r.get::<_, Option<String>>(0))
            .ok()
            .flatten()
            .and_then(|n| serde_json::from_str::<Value>(&n).ok())
            .and_then(|v| v["zscore"].as_f64());
        let commission: f64 = lots
            .iter()
            .map(|l| l.commission_per_unit * l.quantity.unsigned_abs() as f64)
            .sum();
        positions.push(OpenTradeDoc {
            signal: trade_signal(&fills, &qs, &opts.index).into(),
            trade_id: order_ref,
            index: opts.index.clone(),
            entry_date: entry_date.to_string(),
            entry_z_score: fin(z),
            sessions_held: sessions_between(entry_date, as_of),
            entry_cost: money(cost),
            entry_commission: money(commission),
            market_value: complete.then(|| money(value)),
            unrealized_pnl: complete.then(|| money(value - cost - commission)),
            status: "OPEN".into(),
            legs,
        });
    }
    Ok(CurrentPositions {
        as_of: as_of.to_string(),
        strategy: opts.strategy.clone(),
        positions,
    })
}

/// The columns of `positions/trade_history.csv`.
pub const TRADE_HISTORY_COLUMNS: &[&str] = &[
    "trade_id",
    "signal",
    "index",
    "entry_date",
    "exit_date",
    "sessions_held",
    "legs",
    "contracts",
    "entry_z_score",
    "entry_cost",
    "exit_value",
    "commission",
    "pnl",
    "pnl_pct",
    "exit_reason",
];

/// The strategy's closed trades: every lot its entry order opened has been closed.
fn trade_history_csv(
    conn: &Connection,
    book: &Book,
    opts: &SeedOptions,
) -> Result<(Vec<u8>, usize), ExportError> {
    let f = book.fills;
    let still_open: std::collections::HashSet<&str> = book
        .open
        .iter()
        .map(|l| f[l.fill].order_ref.as_str())
        .collect();
    let mut trades: BTreeMap<(NaiveDate, &str), Vec<&Piece>> = BTreeMap::new();
    for p in &book.closed {
        let o = &f[p.open];
        if o.strategy != opts.strategy || still_open.contains(o.order_ref.as_str()) {
            continue;
        }
        trades
            .entry((o.as_of, o.order_ref.as_str()))
            .or_default()
            .push(p);
    }
    let mut zq = conn.prepare("SELECT numbers FROM signals WHERE order_ref = ? LIMIT 1")?;
    let mut rule = conn.prepare(
        "SELECT coalesce((SELECT any_value(rule) FROM risk_decisions r WHERE r.order_ref = l.order_ref AND r.intent <> 'entry'), l.intent)
         FROM order_legs l WHERE l.order_ref = ? LIMIT 1",
    )?;
    let mut rows = Vec::new();
    for ((entry_date, order_ref), pieces) in &trades {
        let opens: Vec<&FillRow> = pieces.iter().map(|p| &f[p.open]).collect();
        let qs: Vec<i64> = pieces.iter().map(|p| p.quantity).collect();
        let exit_date = pieces.iter().map(|p| f[p.close].as_of).max().unwrap();
        let legs: std::collections::BTreeSet<&str> =
            opens.iter().map(|o| o.instrument.as_str()).collect();
        let contracts: i64 = qs.iter().map(|q| q.abs()).sum();
        let mut cost = 0.0;
        let mut exit_value = 0.0;
        let mut gross = 0.0;
        let mut commission = 0.0;
        let mut pnl = 0.0;
        for p in pieces {
            let (o, c) = (&f[p.open], &f[p.close]);
            let m = o.multiplier as f64;
            cost += p.quantity as f64 * o.price * m;
            gross += (p.quantity as f64 * o.price * m).abs();
            exit_value += p.quantity as f64 * c.price * m;
            commission += p.commission;
            pnl += p.pnl(f);
        }
        let mut reasons: Vec<String> = Vec::new();
        for p in pieces {
            let close_ref = &f[p.close].order_ref;
            let why: String = rule
                .query_row(params![close_ref], |r| r.get(0))
                .unwrap_or_else(|_| f[p.close].intent.clone());
            if !reasons.contains(&why) {
                reasons.push(why);
            }
        }
        let z = zq
            .query_row(params![order_ref], |r| r.get::<_, Option<String>>(0))
            .ok()
            .flatten()
            .and_then(|n| serde_json::from_str::<Value>(&n).ok())
            .and_then(|v| v["zscore"].as_f64());
        rows.push(vec![
            order_ref.to_string(),
            trade_signal(&opens, &qs, &opts.index).to_string(),
            opts.index.clone(),
            entry_date.to_string(),
            exit_date.to_string(),
            sessions_between(*entry_date, exit_date).to_string(),
            legs.len().to_string(),
            contracts.to_string(),
            z.map(|z| format!("{}", round(z, 4))).unwrap_or_default(),
            format!("{:.2}", cost),
            format!("{:.2}", exit_value),
            format!("{:.2}", commission),
            format!("{:.2}", pnl),
            if gross > 0.0 {
                format!("{:.4}", pnl / gross)
            } else {
                String::new()
            },
            reasons.join(";"),
        ]);
    }
    let n = rows.len();
    Ok((csv_bytes(TRADE_HISTORY_COLUMNS, &rows)?, n))
}

/// The columns of `historical_data/correlation_data.csv` (importable again with
/// `optdesk import`, detected as a correlation history).
pub const CORRELATION_COLUMNS: &[&str] = &[
    "date",
    "implied_corr",
    "realized_corr",
    "zscore",
    "corr_mean",
    "corr_sd",
    "components",
    "basis",
];

fn correlation_csv(
    conn: &Connection,
    as_of: NaiveDate,
    index: &str,
) -> Result<(Vec<u8>, usize), ExportError> {
    let mut s = conn.prepare(
        "SELECT as_of, implied_corr, realized_corr, zscore, corr_mean, corr_sd, components, basis
         FROM correlation WHERE index_symbol = ? AND as_of <= ? AND implied_corr IS NOT NULL
         QUALIFY row_number() OVER (PARTITION BY as_of ORDER BY quote_time) = 1
         ORDER BY as_of",
    )?;
    let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    let rows: Vec<Vec<String>> = s
        .query_map(params![index, as_of], |r| {
            Ok(vec![
                r.get::<_, NaiveDate>(0)?.to_string(),
                r.get::<_, f64>(1)?.to_string(),
                opt(r.get(2)?),
                opt(r.get(3)?),
                opt(r.get(4)?),
                opt(r.get(5)?),
                r.get::<_, i32>(6)?.to_string(),
                r.get::<_, String>(7)?,
            ])
        })?
        .collect::<Result<_, _>>()?;
    let n = rows.len();
    Ok((csv_bytes(CORRELATION_COLUMNS, &rows)?, n))
}

fn right_word(f: &FillRow) -> &'static str {
    match (f.kind.as_str(), f.put_call.as_deref()) {
        ("option", Some("C")) => "CALL",
        ("option", Some("P")) => "PUT",
        ("shares", _) => "SHARES",
        _ => "OTHER",
    }
}

/// `portfolio_data.json` in the daily paper trader's shape, for the whole account.
fn portfolio_data(
    conn: &Connection,
    as_of: NaiveDate,
    book: &Book,
    marks: &Marks,
) -> Result<PortfolioData, ExportError> {
    let f = book.fills;
    let (start_date, initial, cash): (Option<NaiveDate>, f64, f64) = conn.query_row(
        "SELECT min(as_of) FILTER (WHERE kind = 'deposit'),
                coalesce(sum(amount) FILTER (WHERE kind = 'deposit'), 0)::DOUBLE,
                coalesce(sum(amount), 0)::DOUBLE
         FROM cash_ledger WHERE as_of <= ?",
        params![as_of],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    // Open positions: one per (strategy, instrument), from its open lots.
    let mut open: BTreeMap<(&str, &str), Vec<&Lot>> = BTreeMap::new();
    for l in &book.open {
        let o = &f[l.fill];
        open.entry((o.strategy.as_str(), o.instrument.as_str()))
            .or_default()
            .push(l);
    }
    let mut positions = Vec::new();
    for ((strategy, instrument), lots) in &open {
        let o = &f[lots[0].fill];
        let qty: i64 = lots.iter().map(|l| l.quantity).sum();
        if qty == 0 {
            continue;
        }
        let entry_price = lots
            .iter()
            .map(|l| l.quantity as f64 * f[l.fill].price)
            .sum::<f64>()
            / qty as f64;
        let entry_date = lots.iter().map(|l| f[l.fill].as_of).min().unwrap();
        let m = o.multiplier as f64;
        let (mark, stale) = marks
            .get(&(strategy.to_string(), instrument.to_string()))
            .cloned()
            .unwrap_or((None, false));
        positions.push(PositionDoc {
            ticker: o.underlying.clone(),
            action: if qty < 0 { "SELL" } else { "BUY" }.into(),
            strike: o.strike,
            contracts: qty.abs(),
            entry_price: round(entry_price, 4),
            status: "OPEN".into(),
            kind: right_word(o).into(),
            expiration: o.expiry.map(|d| d.to_string()),
            entry_date: entry_date.to_string(),
            days_held: (as_of - entry_date).num_days(),
            premium: money(-(qty as f64) * entry_price * m),
            current_price: fin(mark),
            stale_mark: stale,
            unrealized_pnl: fin(mark).map(|x| money(qty as f64 * (x - entry_price) * m)),
            strategy: strategy.to_string(),
            contract: instrument.trim().to_string(),
            multiplier: o.multiplier,
        });
    }
    // Closed trades: one per (opening order, instrument, closing order).
    let mut closed_map: BTreeMap<(usize, usize), (i64, f64)> = BTreeMap::new();
    for p in &book.closed {
        let e = closed_map.entry((p.open, p.close)).or_default();
        e.0 += p.quantity;
        e.1 += p.commission;
    }
    let mut closed = Vec::new();
    for ((oi, ci), (qty, commission)) in closed_map {
        let (o, c) = (&f[oi], &f[ci]);
        let m = o.multiplier as f64;
        let pnl = qty as f64 * (c.price - o.price) * m - commission;
        closed.push(ClosedTradeDoc {
            ticker: o.underlying.clone(),
            action: if qty < 0 { "SELL" } else { "BUY" }.into(),
            strike: o.strike,
            contracts: qty.abs(),
            entry_price: o.price,
            status: "CLOSED".into(),
            kind: right_word(o).into(),
            expiration: o.expiry.map(|d| d.to_string()),
            entry_date: o.as_of.to_string(),
            exit_date: c.as_of.to_string(),
            exit_price: c.price,
            exit_type: c.intent.clone(),
            days_held: (c.as_of - o.as_of).num_days(),
            premium: money(-(qty as f64) * o.price * m),
            commission: money(commission),
            pnl: money(pnl),
            strategy: o.strategy.clone(),
            contract: o.instrument.trim().to_string(),
            multiplier: o.multiplier,
            entry_order: o.order_ref.clone(),
            exit_order: c.order_ref.clone(),
        });
    }
    // Daily snapshots: the last of each session, with the benchmarks at that moment.
    let mut bench: HashMap<(NaiveDate, NaiveDateTime), BTreeMap<String, BenchmarkDoc>> =
        HashMap::new();
    let mut s = conn.prepare(
        "SELECT as_of, quote_time, symbol, value::DOUBLE, total_return, price::DOUBLE FROM benchmark_snapshots WHERE as_of <= ?",
    )?;
    for r in s.query_map(params![as_of], |r| {
        Ok((
            r.get::<_, NaiveDate>(0)?,
            r.get::<_, NaiveDateTime>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, f64>(3)?,
            r.get::<_, f64>(4)?,
            r.get::<_, f64>(5)?,
        ))
    })? {
        let (d, qt, sym, value, ret, price) = r?;
        bench.entry((d, qt)).or_default().insert(
            sym,
            BenchmarkDoc {
                price,
                value: money(value),
                total_return: round(ret, 6),
            },
        );
    }
    let mut s = conn.prepare(
        "SELECT as_of, quote_time, equity::DOUBLE, cash::DOUBLE, market_value::DOUBLE, total_return,
                spy_return, alpha_vs_spy, open_positions
         FROM portfolio_snapshots WHERE as_of <= ?
         QUALIFY row_number() OVER (PARTITION BY as_of ORDER BY quote_time DESC) = 1
         ORDER BY as_of",
    )?;
    let mut snapshots = Vec::new();
    for r in s.query_map(params![as_of], |r| {
        Ok((
            r.get::<_, NaiveDate>(0)?,
            r.get::<_, NaiveDateTime>(1)?,
            r.get::<_, f64>(2)?,
            r.get::<_, f64>(3)?,
            r.get::<_, f64>(4)?,
            r.get::<_, f64>(5)?,
            r.get::<_, Option<f64>>(6)?,
            r.get::<_, Option<f64>>(7)?,
            r.get::<_, i32>(8)?,
        ))
    })? {
        let (d, qt, equity, cash, mv, ret, spy, alpha, n) = r?;
        snapshots.push(SnapshotDoc {
            date: d.to_string(),
            portfolio_value: money(equity),
            cash: money(cash),
            positions_value: money(mv),
            total_return: round(ret, 6),
            spy_return: fin(spy).map(|x| round(x, 6)),
            alpha: fin(alpha).map(|x| round(x, 6)),
            open_positions: n,
            benchmarks: bench.remove(&(d, qt)).unwrap_or_default(),
        });
    }
    Ok(PortfolioData {
        start_date: start_date.map(|d| d.to_string()),
        initial_capital: money(initial),
        current_cash: money(cash),
        positions,
        closed_trades: closed,
        daily_snapshots: snapshots,
        as_of: as_of.to_string(),
    })
}

/// The formats `export table` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableFormat {
    Parquet,
    Csv,
}

impl TableFormat {
    pub fn extension(self) -> &'static str {
        match self {
            TableFormat::Parquet => "parquet",
            TableFormat::Csv => "csv",
        }
    }
}

/// The store's tables and views (schema `main`), sorted.
pub fn tables(conn: &Connection) -> Result<Vec<String>, ExportError> {
    let mut s = conn.prepare(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1",
    )?;
    let rows = s.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Write one table or view whole to `out` with DuckDB's `COPY ... TO` (into a temporary
/// name beside it, then renamed). Returns the rows written.
pub fn export_table(
    conn: &Connection,
    store: &Path,
    name: &str,
    format: TableFormat,
    out: &Path,
) -> Result<u64, ExportError> {
    let all = tables(conn)?;
    let Some(table) = all.iter().find(|t| t.eq_ignore_ascii_case(name)) else {
        return Err(ExportError::UnknownTable {
            name: name.to_string(),
            store: store.display().to_string(),
            tables: all.join(", "),
        });
    };
    let io = |source| ExportError::Io {
        path: out.display().to_string(),
        source,
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let options = match format {
        TableFormat::Parquet => "FORMAT parquet",
        TableFormat::Csv => "FORMAT csv, HEADER true",
    };
    let sql = format!(
        "COPY (SELECT * FROM main.\"{}\") TO '{}' ({options})",
        table.replace('"', "\"\""),
        tmp.display().to_string().replace('\'', "''")
    );
    let res = conn.execute(&sql, []);
    match res {
        Ok(n) => {
            std::fs::rename(&tmp, out).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io(e)
            })?;
            Ok(n as u64)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(as_of: u32, order_ref: &str, instrument: &str, qty: i64, price: f64) -> FillRow {
        FillRow {
            as_of: NaiveDate::from_ymd_opt(2024, 3, as_of).unwrap(),
            order_ref: order_ref.into(),
            strategy: "dispersion".into(),
            instrument: instrument.into(),
            underlying: instrument.split(' ').next().unwrap().into(),
            kind: "option".into(),
            expiry: None,
            strike: Some(100.0),
            put_call: Some("C".into()),
            multiplier: 100,
            quantity: qty,
            price,
            commission: 0.65 * qty.abs() as f64,
            intent: "entry".into(),
        }
    }

    #[test]
    fn lots_match_first_in_first_out_with_their_commissions() {
        let fills = vec![
            fill(4, "a", "QQQ C", -2, 5.0),
            fill(5, "b", "QQQ C", -1, 6.0),
            fill(6, "exit:1", "QQQ C", 2, 4.0),
            fill(7, "c", "AAPL C", 1, 3.0),
        ];
        let book = Book::build(&fills);
        assert_eq!(book.closed.len(), 1);
        let p = &book.closed[0];
        assert_eq!((p.open, p.close, p.quantity), (0, 2, -2));
        // Sold 2 at 5, bought back at 4: +200 less 4 × 0.65.
        assert!((p.pnl(&fills) - (200.0 - 2.6)).abs() < 1e-9);
        let open: Vec<(usize, i64)> = book.open.iter().map(|l| (l.fill, l.quantity)).collect();
        assert_eq!(open, [(1, -1), (3, 1)]);
        // A close larger than the first lot reaches into the next, and a reversal opens.
        let fills = vec![
            fill(4, "a", "QQQ C", -1, 5.0),
            fill(5, "b", "QQQ C", -1, 6.0),
            fill(6, "x", "QQQ C", 3, 4.0),
        ];
        let book = Book::build(&fills);
        let closed: Vec<(usize, i64)> = book.closed.iter().map(|p| (p.open, p.quantity)).collect();
        assert_eq!(closed, [(0, -1), (1, -1)]);
        let open: Vec<(usize, i64)> = book.open.iter().map(|l| (l.fill, l.quantity)).collect();
        assert_eq!(open, [(2, 1)]);
    }

    #[test]
    fn signals_are_named_as_the_seed_names_them() {
        assert_eq!(signal_name(Some(1.6), 1.5), SHORT);
        assert_eq!(signal_name(Some(-1.6), 1.5), LONG);
        assert_eq!(signal_name(Some(1.4), 1.5), NO_TRADE);
        assert_eq!(signal_name(None, 1.5), NO_TRADE);
    }
}
