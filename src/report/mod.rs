//! The daily report: what the store says about one day, gathered once ([`ReportData`])
//! and rendered three ways — the email's plain text and HTML ([`email`]), with an inline
//! PNG chart ([`chart`]), and the self-contained HTML dashboard ([`dashboard`], with
//! inline SVG charts from [`svg`]). A backtest's results are a tearsheet ([`tearsheet`]).
//!
//! Everything is read as of the day: a report regenerated later for a past day shows
//! that day's book, not today's.

pub mod alerts;
pub mod chart;
pub mod dashboard;
pub mod email;
pub mod export;
pub mod font;
pub mod svg;
pub mod tearsheet;

/// The risk-free rate of the metrics when `email_report.toml` does not set one (4% a year).
pub const DEFAULT_RISK_FREE_RATE: f64 = 0.04;

use crate::analytics::performance::{self, Metrics, Point, TradeStats};
use crate::store::repo::{self, RepoError};
use crate::trading::{trades, Fill};
use chrono::{NaiveDate, NaiveDateTime};
use duckdb::{params, Connection};
use std::collections::BTreeMap;

/// Why the report could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store could not be read.
    #[error(transparent)]
    Db(#[from] duckdb::Error),
    /// A fill in the store is not a valid fill (its instrument or cash kind).
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// The portfolio on the day.
#[derive(Debug, Clone)]
pub struct PortfolioDay {
    pub quote_time: NaiveDateTime,
    pub equity: f64,
    pub cash: f64,
    pub market_value: f64,
    pub open_positions: i32,
    pub stale_marks: i32,
    pub start_date: NaiveDate,
    pub start_equity: f64,
    pub total_return: f64,
    pub spy_return: Option<f64>,
    pub alpha_vs_spy: Option<f64>,
    pub note: Option<String>,
    /// Equity change since the previous session's snapshot.
    pub day_pnl: Option<f64>,
    pub day_return: Option<f64>,
}

/// One open position (one leg) with its mark, P&L and greeks.
#[derive(Debug, Clone)]
pub struct PositionRow {
    pub strategy: String,
    pub instrument: String,
    pub underlying: String,
    pub kind: String,
    pub quantity: i64,
    pub multiplier: i64,
    pub entry: f64,
    pub opened: NaiveDate,
    pub mark: Option<f64>,
    pub pnl: Option<f64>,
    /// Share-equivalent delta, dollars of theta per day, dollars of vega per vol point.
    pub delta: Option<f64>,
    pub theta: Option<f64>,
    pub vega: Option<f64>,
}

/// One execution.
#[derive(Debug, Clone)]
pub struct FillLine {
    pub as_of: NaiveDate,
    pub strategy: String,
    pub order_ref: String,
    pub instrument: String,
    pub quantity: i64,
    pub multiplier: i64,
    pub price: f64,
    pub commission: f64,
    pub cash_kind: String,
    pub cash: f64,
}

impl FillLine {
    /// A fill as the report shows it: the cash it moved is its premium (or settlement)
    /// less its commission.
    pub fn of(f: &Fill) -> FillLine {
        FillLine {
            as_of: f.as_of,
            strategy: f.book.clone(),
            order_ref: f.order_reference.clone(),
            instrument: f.instrument.key().trim().to_string(),
            quantity: f.quantity,
            multiplier: f.instrument.multiplier(),
            price: f.price.to_f64(),
            commission: f.commission.to_f64(),
            cash_kind: f.cash_kind.code().to_string(),
            cash: (f.premium_cash() - f.commission).to_f64(),
        }
    }
}

/// A strategy's proposal or pass.
#[derive(Debug, Clone)]
pub struct SignalLine {
    pub strategy: String,
    pub underlying: String,
    pub action: String,
    pub detail: String,
}

/// A risk-gate refusal.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub strategy: String,
    pub underlying: String,
    pub order_ref: String,
    pub rule: String,
    pub reason: String,
}

/// One job run of the day.
#[derive(Debug, Clone)]
pub struct JobLine {
    pub run_id: i64,
    pub job: String,
    pub slot: Option<String>,
    pub status: String,
    pub message: String,
}

/// Metrics for the book, a strategy or a benchmark.
#[derive(Debug, Clone)]
pub struct MetricsRow {
    pub name: String,
    /// "book", "strategy" or "benchmark".
    pub kind: &'static str,
    pub metrics: Option<Metrics>,
    pub trades: Option<TradeStats>,
}

/// One underlying's volatility picture.
#[derive(Debug, Clone)]
pub struct UniverseRow {
    pub symbol: String,
    pub spot: f64,
    pub atm_iv_30d: Option<f64>,
    pub hv_30: Option<f64>,
    pub iv_rank: Option<f64>,
    pub iv_hv: Option<f64>,
    /// Expected move (straddle) to the expiry nearest 30 days, dollars.
    pub expected_move: Option<f64>,
    pub expected_days: Option<i32>,
    /// The last expiry that has passed: (made on, expiry, expected, realized), dollars.
    pub last_check: Option<(NaiveDate, NaiveDate, f64, f64)>,
}

/// Implied correlation of an index on one day.
#[derive(Debug, Clone, Copy)]
pub struct CorrPoint {
    pub date: NaiveDate,
    pub implied: Option<f64>,
    pub realized: Option<f64>,
    pub zscore: Option<f64>,
}

/// Everything a report shows.
#[derive(Debug, Clone)]
pub struct ReportData {
    pub as_of: NaiveDate,
    pub portfolio: Option<PortfolioDay>,
    pub equity: Vec<Point>,
    pub benchmarks: Vec<(String, Vec<Point>)>,
    /// Cumulative P&L per strategy, dollars.
    pub strategy_pnl: Vec<(String, Vec<Point>)>,
    pub metrics: Vec<MetricsRow>,
    pub positions: Vec<PositionRow>,
    pub fills_today: Vec<FillLine>,
    pub recent_fills: Vec<FillLine>,
    pub signals: Vec<SignalLine>,
    pub refusals: Vec<Refusal>,
    pub jobs: Vec<JobLine>,
    pub universe: Vec<UniverseRow>,
    pub correlation_index: Option<String>,
    pub correlation: Vec<CorrPoint>,
    pub risk_free_rate: f64,
}

/// `1234567.891` → `1,234,567.89`.
pub fn money(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let (neg, body) = chart::fixed(v, 2);
    format!("{}{body}", if neg { "-" } else { "" })
}

/// A signed dollar amount: `+$1,234.50`, `-$12.00` (an amount that rounds to zero is
/// `+$0.00`, never `-$0.00`).
pub fn signed_money(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let (neg, body) = chart::fixed(v, 2);
    format!("{}${body}", if neg { "-" } else { "+" })
}

/// A fraction as a signed percentage, or "n/a".
pub fn pct(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{:+.2}%", x * 100.0),
        _ => "n/a".into(),
    }
}

/// A ratio with two decimals, or "n/a".
pub fn ratio(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.2}"),
        _ => "n/a".into(),
    }
}

/// An optional number with `dp` decimals, or "n/a".
pub fn num(v: Option<f64>, dp: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.dp$}"),
        _ => "n/a".into(),
    }
}

impl ReportData {
    /// A day with nothing in it (every section empty).
    pub fn empty(as_of: NaiveDate, risk_free_rate: f64) -> ReportData {
        ReportData {
            as_of,
            portfolio: None,
            equity: Vec::new(),
            benchmarks: Vec::new(),
            strategy_pnl: Vec::new(),
            metrics: Vec::new(),
            positions: Vec::new(),
            fills_today: Vec::new(),
            recent_fills: Vec::new(),
            signals: Vec::new(),
            refusals: Vec::new(),
            jobs: Vec::new(),
            universe: Vec::new(),
            correlation_index: None,
            correlation: Vec::new(),
            risk_free_rate,
        }
    }

    /// The email's subject.
    pub fn subject(&self, prefix: &str) -> String {
        match &self.portfolio {
            Some(p) => format!(
                "{prefix} {}: equity ${} ({} today, {} total)",
                self.as_of,
                money(p.equity),
                pct(p.day_return),
                pct(Some(p.total_return))
            ),
            None => format!("{prefix} {}: daily report (no portfolio yet)", self.as_of),
        }
    }
}

/// Gather the day's report from the store.
pub fn load(
    conn: &Connection,
    as_of: NaiveDate,
    risk_free_rate: f64,
) -> Result<ReportData, ReportError> {
    // The last snapshot of each day up to as_of.
    let mut s = conn.prepare(
        "SELECT as_of, arg_max(quote_time, quote_time), arg_max(equity::DOUBLE, quote_time), arg_max(cash::DOUBLE, quote_time),
                arg_max(market_value::DOUBLE, quote_time), arg_max(open_positions, quote_time), arg_max(stale_marks, quote_time),
                arg_max(start_date, quote_time), arg_max(start_equity::DOUBLE, quote_time), arg_max(total_return, quote_time),
                arg_max_null(spy_return, quote_time), arg_max_null(alpha_vs_spy, quote_time), arg_max_null(note, quote_time)
         FROM portfolio_snapshots WHERE as_of <= ? GROUP BY as_of ORDER BY as_of",
    )?;
    let days: Vec<(NaiveDate, PortfolioDay)> = s
        .query_map(params![as_of], |r| {
            Ok((
                r.get::<_, NaiveDate>(0)?,
                PortfolioDay {
                    quote_time: r.get(1)?,
                    equity: r.get(2)?,
                    cash: r.get(3)?,
                    market_value: r.get(4)?,
                    open_positions: r.get(5)?,
                    stale_marks: r.get(6)?,
                    start_date: r.get(7)?,
                    start_equity: r.get(8)?,
                    total_return: r.get(9)?,
                    spy_return: r.get(10)?,
                    alpha_vs_spy: r.get(11)?,
                    note: r.get(12)?,
                    day_pnl: None,
                    day_return: None,
                },
            ))
        })?
        .collect::<Result<_, _>>()?;
    let equity: Vec<Point> = days
        .iter()
        .map(|(d, p)| Point {
            date: *d,
            value: p.equity,
        })
        .collect();
    let portfolio = match days.last() {
        Some((d, p)) if *d == as_of => {
            let mut p = p.clone();
            if days.len() >= 2 {
                let prev = days[days.len() - 2].1.equity;
                p.day_pnl = Some(p.equity - prev);
                p.day_return = (prev > 0.0).then_some(p.equity / prev - 1.0);
            }
            Some(p)
        }
        _ => None,
    };

    // Benchmarks, last snapshot per day.
    let mut s = conn.prepare(
        "SELECT symbol, as_of, arg_max(value::DOUBLE, quote_time) FROM benchmark_snapshots
         WHERE as_of <= ? GROUP BY symbol, as_of ORDER BY symbol, as_of",
    )?;
    let mut benchmarks: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for row in s.query_map(params![as_of], |r| {
        Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
    })? {
        let (sym, date, value) = row?;
        benchmarks
            .entry(sym)
            .or_default()
            .push(Point { date, value });
    }
    // Keep the configured order (SPY first) where known.
    let mut benchmarks: Vec<(String, Vec<Point>)> = benchmarks.into_iter().collect();
    benchmarks.sort_by_key(|(s, _)| (s != "SPY", s.clone()));

    // Per-strategy cumulative P&L.
    let mut s = conn.prepare(
        "SELECT strategy, as_of, arg_max(pnl::DOUBLE, quote_time) FROM strategy_snapshots
         WHERE as_of <= ? GROUP BY strategy, as_of ORDER BY strategy, as_of",
    )?;
    let mut strategy_pnl: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for row in s.query_map(params![as_of], |r| {
        Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
    })? {
        let (st, date, value) = row?;
        strategy_pnl
            .entry(st)
            .or_default()
            .push(Point { date, value });
    }
    let strategy_pnl: Vec<(String, Vec<Point>)> = strategy_pnl.into_iter().collect();

    // Fills up to the day: their closed trades, exact, and the lines of the fill tables.
    let fills = repo::orders::fills_up_to(conn, as_of)?;
    let closed = trades::closed_trades(&fills);
    let all_fills: Vec<FillLine> = fills.iter().map(FillLine::of).collect();

    let spy = benchmarks
        .iter()
        .find(|(s, _)| s == "SPY")
        .map(|(_, c)| c.as_slice());
    let mut metrics = Vec::new();
    if !equity.is_empty() {
        let pnls: Vec<f64> = closed.iter().map(|t| t.pnl.to_f64()).collect();
        metrics.push(MetricsRow {
            name: "Portfolio".into(),
            kind: "book",
            metrics: performance::metrics(&equity, spy, risk_free_rate),
            trades: Some(performance::trade_stats(&pnls)),
        });
        let base = portfolio
            .as_ref()
            .map(|p| p.start_equity)
            .or_else(|| days.last().map(|(_, p)| p.start_equity))
            .unwrap_or(0.0);
        for (name, curve) in &strategy_pnl {
            let c: Vec<Point> = curve
                .iter()
                .map(|p| Point {
                    date: p.date,
                    value: base + p.value,
                })
                .collect();
            let pnls: Vec<f64> = closed
                .iter()
                .filter(|t| &t.book == name)
                .map(|t| t.pnl.to_f64())
                .collect();
            metrics.push(MetricsRow {
                name: name.clone(),
                kind: "strategy",
                metrics: performance::metrics(&c, spy, risk_free_rate),
                trades: Some(performance::trade_stats(&pnls)),
            });
        }
        for (name, curve) in &benchmarks {
            metrics.push(MetricsRow {
                name: name.clone(),
                kind: "benchmark",
                metrics: performance::metrics(curve, spy, risk_free_rate),
                trades: None,
            });
        }
    }

    let fills_today: Vec<FillLine> = all_fills
        .iter()
        .filter(|f| f.as_of == as_of)
        .cloned()
        .collect();
    let recent_fills: Vec<FillLine> = all_fills.iter().rev().take(50).cloned().collect();

    let correlation_index: Option<String> = conn
        .query_row(
            "SELECT index_symbol FROM correlation WHERE as_of <= ? GROUP BY index_symbol ORDER BY count(*) DESC, index_symbol LIMIT 1",
            params![as_of],
            |r| r.get(0),
        )
        .ok();
    let correlation = match &correlation_index {
        Some(index) => load_correlation(conn, as_of, index)?,
        None => Vec::new(),
    };

    Ok(ReportData {
        as_of,
        portfolio,
        equity,
        benchmarks,
        strategy_pnl,
        metrics,
        positions: load_positions(conn, as_of)?,
        fills_today,
        recent_fills,
        signals: load_signals(conn, as_of)?,
        refusals: load_refusals(conn, as_of)?,
        jobs: load_jobs(conn, as_of)?,
        universe: load_universe(conn, as_of)?,
        correlation_index,
        correlation,
        risk_free_rate,
    })
}

fn load_positions(conn: &Connection, as_of: NaiveDate) -> Result<Vec<PositionRow>, duckdb::Error> {
    // The marks of the day's last portfolio snapshot (the same as its equity), or of
    // the day's last quotes when there is no snapshot.
    let mut s = conn.prepare(
        "SELECT strategy, trim(instrument), underlying, kind, quantity, multiplier, avg_price::DOUBLE, opened,
                mark, delta, theta, vega
         FROM position_marks(?::DATE, coalesce((SELECT max(quote_time) FROM portfolio_snapshots WHERE as_of = ?),
                                             (SELECT max(quote_time) FROM option_quotes WHERE as_of = ?)))
         ORDER BY strategy, underlying, expiry NULLS FIRST, instrument",
    )?;
    let rows = s
        .query_map(params![as_of, as_of, as_of], |r| {
            let quantity: i64 = r.get(4)?;
            let multiplier: i64 = r.get(5)?;
            let entry: f64 = r.get(6)?;
            let mark: Option<f64> = r.get(8)?;
            Ok(PositionRow {
                strategy: r.get(0)?,
                instrument: r.get(1)?,
                underlying: r.get(2)?,
                kind: r.get(3)?,
                quantity,
                multiplier,
                entry,
                opened: r.get(7)?,
                mark,
                pnl: mark.map(|m| (m - entry) * quantity as f64 * multiplier as f64),
                delta: r.get(9)?,
                theta: r.get(10)?,
                vega: r.get(11)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn load_signals(conn: &Connection, as_of: NaiveDate) -> Result<Vec<SignalLine>, duckdb::Error> {
    let mut s = conn.prepare(
        "SELECT strategy, underlying, action, coalesce(reason, order_ref, ''), coalesce(numbers, '')
         FROM signals WHERE as_of = ? ORDER BY quote_time, strategy, underlying",
    )?;
    let rows = s
        .query_map(params![as_of], |r| {
            let reason: String = r.get(3)?;
            let numbers: String = r.get(4)?;
            Ok(SignalLine {
                strategy: r.get(0)?,
                underlying: r.get(1)?,
                action: r.get(2)?,
                detail: signal_detail(&reason, &numbers),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The reason (or order) plus the signal's key numbers, compactly.
fn signal_detail(reason: &str, numbers: &str) -> String {
    let mut parts = vec![reason.to_string()];
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(numbers) {
        let kv: Vec<String> = m
            .iter()
            .take(6)
            .map(|(k, v)| match v.as_f64() {
                Some(x) => format!("{k} {}", trim_num(x)),
                None => format!("{k} {v}"),
            })
            .collect();
        if !kv.is_empty() {
            parts.push(kv.join(", "));
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" — ")
}

fn trim_num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

fn load_refusals(conn: &Connection, as_of: NaiveDate) -> Result<Vec<Refusal>, duckdb::Error> {
    let mut s = conn.prepare(
        "SELECT strategy, underlying, order_ref, rule, coalesce(reason, '') FROM risk_decisions
         WHERE as_of = ? AND decision = 'refused' ORDER BY quote_time, order_ref",
    )?;
    let rows = s
        .query_map(params![as_of], |r| {
            Ok(Refusal {
                strategy: r.get(0)?,
                underlying: r.get(1)?,
                order_ref: r.get(2)?,
                rule: r.get(3)?,
                reason: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn load_jobs(conn: &Connection, as_of: NaiveDate) -> Result<Vec<JobLine>, duckdb::Error> {
    // The latest run of each job and slot for the day (dry runs left out).
    let mut s = conn.prepare(
        "SELECT run_id, job, slot, status, coalesce(message, '') FROM job_runs
         WHERE as_of = ? AND NOT dry_run
         QUALIFY row_number() OVER (PARTITION BY job, slot ORDER BY run_id DESC) = 1
         ORDER BY run_id",
    )?;
    let rows = s
        .query_map(params![as_of], |r| {
            Ok(JobLine {
                run_id: r.get(0)?,
                job: r.get(1)?,
                slot: r.get(2)?,
                status: r.get(3)?,
                message: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn load_universe(conn: &Connection, as_of: NaiveDate) -> Result<Vec<UniverseRow>, duckdb::Error> {
    let mut s = conn.prepare(
        "WITH v AS (SELECT * FROM vol_metrics WHERE as_of = ?
                    QUALIFY row_number() OVER (PARTITION BY symbol ORDER BY quote_time DESC) = 1),
              em AS (SELECT symbol, arg_min(straddle_move, abs(days - 30)) AS mv, arg_min(days, abs(days - 30)) AS days
                     FROM expected_moves WHERE as_of = ? AND NOT am_settled AND straddle_move IS NOT NULL GROUP BY symbol),
              past AS (SELECT e.symbol, e.as_of AS made, e.expiry, e.straddle_move AS expected, e.spot AS spot0
                       FROM expected_moves e
                       WHERE e.expiry <= ? AND NOT e.am_settled AND e.straddle_move IS NOT NULL AND e.days BETWEEN 20 AND 40
                       QUALIFY row_number() OVER (PARTITION BY e.symbol ORDER BY e.expiry DESC, abs(e.days - 30), e.as_of) = 1),
              close AS (SELECT symbol, date, close FROM underlying_bars)
         SELECT v.symbol, v.spot, v.atm_iv_30d, v.hv_30, v.iv_rank_252, v.iv_hv30_spread, em.mv, em.days,
                past.made, past.expiry, past.expected, abs(c.close::DOUBLE - past.spot0)
         FROM v LEFT JOIN em ON em.symbol = v.symbol
                LEFT JOIN past ON past.symbol = v.symbol
                LEFT JOIN close c ON c.symbol = v.symbol AND c.date = past.expiry
         ORDER BY v.symbol",
    )?;
    let rows = s
        .query_map(params![as_of, as_of, as_of], |r| {
            let made: Option<NaiveDate> = r.get(8)?;
            let expiry: Option<NaiveDate> = r.get(9)?;
            let expected: Option<f64> = r.get(10)?;
            let realized: Option<f64> = r.get(11)?;
            Ok(UniverseRow {
                symbol: r.get(0)?,
                spot: r.get(1)?,
                atm_iv_30d: r.get(2)?,
                hv_30: r.get(3)?,
                iv_rank: r.get(4)?,
                iv_hv: r.get(5)?,
                expected_move: r.get(6)?,
                expected_days: r.get(7)?,
                last_check: match (made, expiry, expected, realized) {
                    (Some(a), Some(b), Some(c), Some(d)) => Some((a, b, c, d)),
                    _ => None,
                },
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn load_correlation(
    conn: &Connection,
    as_of: NaiveDate,
    index: &str,
) -> Result<Vec<CorrPoint>, duckdb::Error> {
    let mut s = conn.prepare(
        "SELECT as_of, arg_max_null(implied_corr, quote_time), arg_max_null(realized_corr, quote_time), arg_max_null(zscore, quote_time)
         FROM correlation WHERE as_of <= ? AND as_of > ?::DATE - INTERVAL 400 DAY AND index_symbol = ?
         GROUP BY as_of ORDER BY as_of",
    )?;
    let rows = s
        .query_map(params![as_of, as_of, index], |r| {
            Ok(CorrPoint {
                date: r.get(0)?,
                implied: r.get(1)?,
                realized: r.get(2)?,
                zscore: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_thousands_and_rounds_cents() {
        assert_eq!(money(1234567.891), "1,234,567.89");
        assert_eq!(money(0.0), "0.00");
        assert_eq!(money(-999.999), "-1,000.00");
        assert_eq!(money(100.0), "100.00");
        assert_eq!(signed_money(-12.0), "-$12.00");
        assert_eq!(signed_money(1234.5), "+$1,234.50");
        assert_eq!(money(f64::NAN), "n/a");
        assert_eq!(money(-0.004), "0.00");
        assert_eq!(signed_money(-0.004), "+$0.00");
    }

    #[test]
    fn missing_values_never_print_nan() {
        assert_eq!(pct(None), "n/a");
        assert_eq!(pct(Some(f64::NAN)), "n/a");
        assert_eq!(pct(Some(0.01234)), "+1.23%");
        assert_eq!(ratio(Some(f64::INFINITY)), "n/a");
        assert_eq!(num(Some(1.23456), 3), "1.235");
    }

    #[test]
    fn signal_detail_shows_reason_and_numbers() {
        let d = signal_detail("iv below hv", r#"{"iv":0.1834,"hv30":0.2,"credit":125.5}"#);
        assert!(d.starts_with("iv below hv — "), "{d}");
        assert!(
            d.contains("iv 0.1834") && d.contains("credit 125.50"),
            "{d}"
        );
        assert_eq!(signal_detail("", "not json"), "");
    }
}
