//! The `backtests` catalogue: a row per backtest in the main store (and, in each
//! backtest's own store, its own row, checked on resume), with the headline metrics
//! of `analytics/performance.rs` once it ends.

use super::{BacktestError, Ending, Outcome, Plan};
use crate::store::Store;
use chrono::NaiveDate;
use duckdb::{params, Connection};
use std::time::Duration;

/// The metrics of one book (the portfolio, a strategy, a benchmark).
#[derive(Debug, Clone, PartialEq)]
pub struct BookMetrics {
    pub book: String,
    pub kind: String,
    pub total_return: Option<f64>,
    pub cagr: Option<f64>,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    pub max_drawdown: Option<f64>,
    pub win_rate: Option<f64>,
    pub trades: Option<i64>,
    pub total_pnl: Option<f64>,
}

/// A backtest's headline metrics: every book's, and the final equity.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    pub books: Vec<BookMetrics>,
    pub final_equity: Option<f64>,
}

impl Headline {
    pub fn from_report(data: &crate::report::ReportData) -> Headline {
        let books = data
            .metrics
            .iter()
            .map(|m| BookMetrics {
                book: m.name.clone(),
                kind: m.kind.to_string(),
                total_return: m.metrics.as_ref().map(|x| x.total_return),
                cagr: m.metrics.as_ref().and_then(|x| x.cagr),
                sharpe: m.metrics.as_ref().and_then(|x| x.sharpe),
                sortino: m.metrics.as_ref().and_then(|x| x.sortino),
                max_drawdown: m.metrics.as_ref().map(|x| x.drawdown.max_drawdown),
                win_rate: m.trades.as_ref().and_then(|t| t.win_rate),
                trades: m.trades.as_ref().map(|t| t.trades as i64),
                total_pnl: m.trades.as_ref().map(|t| t.total_pnl),
            })
            .collect();
        Headline {
            books,
            final_equity: data.equity.last().map(|p| p.value),
        }
    }

    /// The whole book's metrics.
    pub fn portfolio(&self) -> Option<&BookMetrics> {
        self.books.iter().find(|b| b.kind == "book")
    }
}

/// The sessions a backtest store has completed, in order.
pub fn sessions_done(conn: &Connection) -> Result<Vec<NaiveDate>, BacktestError> {
    if !crate::store::table_exists(conn, "backtest_sessions")? {
        return Ok(Vec::new());
    }
    let mut s = conn.prepare("SELECT as_of FROM backtest_sessions ORDER BY as_of")?;
    let rows = s.query_map([], |r| r.get::<_, NaiveDate>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Insert or refresh the catalogue row of `plan` as running (the main store's, or the
/// backtest store's own).
fn upsert_running(conn: &Connection, plan: &Plan) -> Result<(), duckdb::Error> {
    conn.execute("DELETE FROM backtests WHERE name = ?", params![plan.name])?;
    conn.execute(
        "INSERT INTO backtests (name, from_date, to_date, sessions_total, sessions_done, config_hash,
             config_snapshot, overrides, source, seed, keep_quotes, version, status, started_at, store_path)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', now()::TIMESTAMP, ?)",
        params![
            plan.name,
            plan.from,
            plan.to,
            plan.sessions.len() as i64,
            plan.done.len() as i64,
            plan.config_hash,
            plan.snapshot,
            plan.overrides.join("\n"),
            super::source_name(plan.source),
            plan.seed,
            plan.keep_quotes.as_str(),
            crate::VERSION,
            plan.store_path.display().to_string(),
        ],
    )?;
    Ok(())
}

/// The backtest store's own row (one row: this backtest).
pub fn write_own_row(conn: &Connection, plan: &Plan) -> Result<(), BacktestError> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    let res = conn
        .execute("DELETE FROM backtests", [])
        .and_then(|_| upsert_running(conn, plan));
    match res {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
}

fn holder(name: &str) -> String {
    format!(
        "optdesk backtest {name}: catalogue (pid {})",
        std::process::id()
    )
}

/// The main store's row, as running (the main store is opened only for this write).
pub fn start(plan: &Plan, timeout: Duration) -> Result<(), BacktestError> {
    let main = Store::open_write(&plan.main_db, timeout, &holder(&plan.name))?;
    upsert_running(&main.conn, plan)?;
    Ok(())
}

fn status(e: &Ending) -> (&'static str, Option<String>) {
    match e {
        Ending::Done => ("done", None),
        Ending::Stopped => (
            "stopped",
            Some("stopped on request; run the same command again to resume".into()),
        ),
        Ending::Failed(m) => ("failed", Some(m.clone())),
    }
}

fn write_end(conn: &Connection, name: &str, o: &Outcome) -> Result<(), duckdb::Error> {
    let (st, msg) = status(&o.ending);
    let p = o.headline.as_ref().and_then(|h| h.portfolio());
    conn.execute(
        "UPDATE backtests SET sessions_done = ?, status = ?, message = ?, finished_at = now()::TIMESTAMP,
             seconds = ?, total_return = ?, cagr = ?, sharpe = ?, max_drawdown = ?, win_rate = ?,
             trades = ?, final_equity = ?, store_bytes = ?
         WHERE name = ?",
        params![
            o.sessions_done as i64,
            st,
            msg,
            o.seconds,
            p.and_then(|b| b.total_return),
            p.and_then(|b| b.cagr),
            p.and_then(|b| b.sharpe),
            p.and_then(|b| b.max_drawdown),
            p.and_then(|b| b.win_rate),
            p.and_then(|b| b.trades),
            o.headline.as_ref().and_then(|h| h.final_equity),
            (o.store_bytes > 0).then_some(o.store_bytes as i64),
            name,
        ],
    )?;
    conn.execute("DELETE FROM backtest_metrics WHERE name = ?", params![name])?;
    if let Some(h) = &o.headline {
        for b in &h.books {
            conn.execute(
                "INSERT INTO backtest_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    name,
                    b.book,
                    b.kind,
                    b.total_return,
                    b.cagr,
                    b.sharpe,
                    b.sortino,
                    b.max_drawdown,
                    b.win_rate,
                    b.trades,
                    b.total_pnl
                ],
            )?;
        }
    }
    Ok(())
}

fn in_transaction(
    conn: &Connection,
    f: impl FnOnce() -> Result<(), duckdb::Error>,
) -> Result<(), BacktestError> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    match f() {
        Ok(()) => {
            conn.execute_batch("COMMIT")?;
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e.into())
        }
    }
}

/// The backtest store's own row at the end.
pub fn finish_own_row(conn: &Connection, o: &Outcome) -> Result<(), BacktestError> {
    let name: String = conn.query_row("SELECT name FROM backtests LIMIT 1", [], |r| r.get(0))?;
    in_transaction(conn, || write_end(conn, &name, o))
}

/// The main store's row at the end.
pub fn finish(plan: &Plan, o: &Outcome, timeout: Duration) -> Result<(), BacktestError> {
    let main = Store::open_write(&plan.main_db, timeout, &holder(&plan.name))?;
    in_transaction(&main.conn, || write_end(&main.conn, &plan.name, o))
}

/// The catalogue's rows marked running whose process is gone: nobody holds the write
/// lock of their store (a backtest killed, or a machine that went down, leaves its row
/// as it was at the start). `list` and `show` call them interrupted; running the same
/// command again resumes them.
pub fn interrupted(conn: &Connection) -> Result<Vec<String>, BacktestError> {
    let mut s = conn.prepare("SELECT name, store_path FROM backtests WHERE status = 'running'")?;
    let rows = s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, path) = row?;
        let lock = crate::store::lock_path_for(std::path::Path::new(&path));
        if crate::store::current_writer(&lock).is_none() {
            out.push(name);
        }
    }
    Ok(out)
}

/// A SQL expression for a row's status that says `interrupted` for the names given.
pub fn status_sql(interrupted: &[String]) -> String {
    if interrupted.is_empty() {
        return "status".into();
    }
    let names: Vec<String> = interrupted
        .iter()
        .map(|n| format!("'{}'", n.replace('\'', "''")))
        .collect();
    format!(
        "CASE WHEN name IN ({}) THEN 'interrupted' ELSE status END",
        names.join(", ")
    )
}

/// What `show` says of an interrupted backtest.
pub const INTERRUPTED: &str = "its process ended before it finished (killed, or the machine went down): run the same command again to resume after the last completed session";
