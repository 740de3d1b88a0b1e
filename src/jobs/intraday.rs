//! What `fetch_chains` stores beside a snapshot for the intraday desk: the session's
//! 1-minute bars of the symbols it fetched, from the open to the snapshot
//! (`intraday_bars`), and the earnings dates known around the session
//! (`earnings_dates`: the source's, and the user's `data/earnings.csv`). Both are read
//! back into the day's session context (`store::repo::session`).
//!
//! Idempotent: a re-run replaces the session's bars up to its snapshot and the dates of
//! its window.

use super::{JobContext, JobError};
use crate::sources::{IntradayBar, MarketData, SourceError};
use chrono::{Duration, NaiveDate};
use duckdb::{params, Connection};

/// Earnings dates are stored from this many days before the session to this many after.
const EARNINGS_BEHIND: i64 = 7;
const EARNINGS_AHEAD: i64 = 120;

/// Store the session's minute bars of `symbols` up to the snapshot and the earnings
/// dates around it; what could not be had is said in `notes`. Returns the rows written.
pub fn store_session_data(
    ctx: &JobContext,
    source: &dyn MarketData,
    symbols: &[String],
    notes: &mut Vec<String>,
) -> Result<u64, JobError> {
    let mut rows = 0;
    match source.minute_bars(symbols, ctx.as_of, ctx.quote_time) {
        Ok(bars) => rows += write_bars(ctx.conn, ctx, &bars, source.name(), symbols)?,
        Err(e @ SourceError::Unsupported { .. }) => notes.push(e.to_string()),
        Err(e) => return Err(e.into()),
    }
    let (from, to) = (
        ctx.as_of - Duration::days(EARNINGS_BEHIND),
        ctx.as_of + Duration::days(EARNINGS_AHEAD),
    );
    if let Some(dates) = source.earnings_dates(symbols, from, to)? {
        rows += write_earnings(
            ctx.conn,
            ctx.run_id,
            source.name(),
            symbols,
            (from, to),
            &dates,
        )?;
    }
    let file = ctx.config.resolve(crate::refdata::EARNINGS_FILE);
    let user = crate::refdata::load_earnings(&file).map_err(|e| JobError::Failed(e.to_string()))?;
    let all: Vec<String> = user.iter().map(|(s, _)| s.clone()).collect();
    rows += write_earnings(
        ctx.conn,
        ctx.run_id,
        "earnings.csv",
        &all,
        (NaiveDate::MIN, NaiveDate::MAX),
        &user,
    )?;
    Ok(rows)
}

/// `symbols` as an SQL list of string literals (never empty: `NULL` matches nothing).
fn sql_list(symbols: &[String]) -> String {
    if symbols.is_empty() {
        return "NULL".into();
    }
    symbols
        .iter()
        .map(|s| format!("'{}'", s.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Replace the session's bars of `symbols` before the snapshot with `bars`.
fn write_bars(
    conn: &Connection,
    ctx: &JobContext,
    bars: &[IntradayBar],
    source: &str,
    symbols: &[String],
) -> Result<u64, duckdb::Error> {
    conn.execute(
        &format!(
            "DELETE FROM intraday_bars WHERE ts >= ?::DATE AND ts < ? AND symbol IN ({})",
            sql_list(symbols)
        ),
        params![ctx.as_of, ctx.quote_time],
    )?;
    if bars.is_empty() {
        return Ok(0);
    }
    let n = bars.len();
    crate::store::bulk::Batch::new()
        .str("symbol", bars.iter().map(|b| &b.symbol))
        .timestamp("ts", bars.iter().map(|b| b.time))
        .f64("open", bars.iter().map(|b| b.open))
        .f64("high", bars.iter().map(|b| b.high))
        .f64("low", bars.iter().map(|b| b.low))
        .f64("close", bars.iter().map(|b| b.close))
        .i64("volume", bars.iter().map(|b| b.volume))
        .str("source", std::iter::repeat_n(source, n))
        .i64("run_id", std::iter::repeat_n(ctx.run_id, n))
        .append(conn, "intraday_bars")
}

/// Replace `source`'s earnings dates of `symbols` within `window` with `dates`.
fn write_earnings(
    conn: &Connection,
    run_id: i64,
    source: &str,
    symbols: &[String],
    (from, to): (NaiveDate, NaiveDate),
    dates: &[(String, NaiveDate)],
) -> Result<u64, duckdb::Error> {
    if source == "earnings.csv" {
        // The file is the whole truth: what it no longer lists goes.
        conn.execute(
            "DELETE FROM earnings_dates WHERE source = ?",
            params![source],
        )?;
    } else {
        conn.execute(
            &format!(
                "DELETE FROM earnings_dates WHERE source = ? AND date BETWEEN ? AND ? AND symbol IN ({})",
                sql_list(symbols)
            ),
            params![source, from, to],
        )?;
    }
    let unique: std::collections::BTreeSet<&(String, NaiveDate)> = dates.iter().collect();
    let n = unique.len();
    if n == 0 {
        return Ok(0);
    }
    crate::store::bulk::Batch::new()
        .str("symbol", unique.iter().map(|(s, _)| s))
        .date("date", unique.iter().map(|(_, d)| *d))
        .str("source", std::iter::repeat_n(source, n))
        .i64("run_id", std::iter::repeat_n(run_id, n))
        .append(conn, "earnings_dates")
}
