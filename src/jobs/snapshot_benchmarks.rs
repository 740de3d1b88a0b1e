//! `snapshot_benchmarks` — mark the portfolio to market and value the buy-and-hold
//! benchmarks. Options are marked at the snapshot's mid; a position without a
//! two-sided quote today keeps its last known mid, is counted in `stale_marks` and
//! named in the note — never silently zeroed. Shares are marked at the underlying's
//! snapshot price. Benchmarks (SPY, VOO, VTI, QQQ by default) buy the portfolio's
//! starting capital of each on its first day and hold, dividends kept as cash.
//! Key: (`as_of`, `quote_time`).

use super::{Job, JobContext, JobDef, JobError, JobOutput, Prepared};
use crate::config::{Config, ConfigError, JobFile};
use chrono::NaiveDate;
use duckdb::params;
use serde::{Deserialize, Serialize};

pub const DEF: JobDef = JobDef {
    name: "snapshot_benchmarks",
    about:
        "mark positions to market; portfolio snapshot; buy-and-hold benchmarks and alpha vs. SPY",
    writes: &[
        "portfolio_snapshots",
        "benchmark_snapshots",
        "strategy_snapshots",
    ],
    reads_chains: false,
    prepare,
    daily: true,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub benchmarks: Vec<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            benchmarks: ["SPY", "VOO", "VTI", "QQQ"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    let (file, text): (JobFile<Params>, String) = config.job(DEF.name)?;
    if file.params.benchmarks.is_empty() {
        return Err(ConfigError::Invalid {
            file: config
                .dir
                .join("snapshot_benchmarks.toml")
                .display()
                .to_string(),
            message: "params.benchmarks: at least one symbol".into(),
        });
    }
    Ok(Prepared {
        def: &DEF,
        enabled: file.enabled,
        slots: file.slots,
        config_hash: config.hash_with(&text),
        job: Box::new(SnapshotBenchmarks {
            params: file.params,
        }),
    })
}

/// One open position with its mark.
struct Mark {
    strategy: String,
    instrument: String,
    quantity: i64,
    multiplier: i64,
    mark: Option<f64>,
    stale: bool,
    since: Option<String>,
    /// Position greeks: delta in shares, theta in dollars per day, vega per vol point.
    greeks: (Option<f64>, Option<f64>, Option<f64>),
}

pub struct SnapshotBenchmarks {
    pub params: Params,
}

impl Job for SnapshotBenchmarks {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let conn = ctx.conn;
        for t in [
            "portfolio_snapshots",
            "benchmark_snapshots",
            "strategy_snapshots",
        ] {
            conn.execute(
                &format!("DELETE FROM {t} WHERE as_of = ? AND quote_time = ?"),
                params![ctx.as_of, ctx.quote_time],
            )?;
        }
        let start: Option<(NaiveDate, f64)> = conn
            .query_row(
                "SELECT min(as_of), sum(amount)::DOUBLE FROM cash_ledger WHERE kind = 'deposit' AND as_of <= ? HAVING count(*) > 0",
                params![ctx.as_of],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        let Some((start_date, start_equity)) = start else {
            return Ok(JobOutput {
                rows_written: 0,
                summary: "no account yet (no deposit in cash_ledger): nothing to mark".into(),
            });
        };
        // Marks: today's mid, else the last known one (stale); see sql/006.
        let mut s = conn.prepare(
            "SELECT instrument, quantity, multiplier, mark, stale, marked_on::VARCHAR, strategy, delta, theta, vega
             FROM position_marks(?::DATE, ?::TIMESTAMP) ORDER BY strategy, instrument",
        )?;
        let marks: Vec<Mark> = s
            .query_map(params![ctx.as_of, ctx.quote_time], |r| {
                Ok(Mark {
                    instrument: r.get(0)?,
                    quantity: r.get(1)?,
                    multiplier: r.get(2)?,
                    mark: r.get(3)?,
                    stale: r.get(4)?,
                    since: r.get(5)?,
                    strategy: r.get(6)?,
                    greeks: (r.get(7)?, r.get(8)?, r.get(9)?),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut market_value = 0.0;
        let mut stale = Vec::new();
        let mut unmarked = Vec::new();
        for m in &marks {
            match m.mark {
                Some(px) => market_value += m.quantity as f64 * m.multiplier as f64 * px,
                None => unmarked.push(m.instrument.trim().to_string()),
            }
            if m.stale && m.mark.is_some() {
                stale.push(format!(
                    "{} (last mid of {})",
                    m.instrument.trim(),
                    m.since.clone().unwrap_or_default()
                ));
            }
        }
        if !unmarked.is_empty() {
            return Err(JobError::Failed(format!(
                "no price at all for {}: cannot mark the portfolio (the store has no quote for them)",
                unmarked.join(", ")
            )));
        }
        let cash: f64 = conn.query_row(
            "SELECT coalesce(sum(amount), 0)::DOUBLE FROM cash_ledger WHERE as_of <= ?",
            params![ctx.as_of],
            |r| r.get(0),
        )?;
        let market_value = (market_value * 100.0).round() / 100.0;
        let equity = cash + market_value;
        let total_return = equity / start_equity - 1.0;

        // Benchmarks: buy on the first snapshot at or after the start date.
        let mut rows = 0u64;
        let mut spy_return = None;
        let mut bench_notes = Vec::new();
        for sym in &self.params.benchmarks {
            let first: Option<(NaiveDate, f64)> = conn
                .query_row(
                    "SELECT as_of, price::DOUBLE FROM underlying_quotes WHERE symbol = ? AND as_of >= ?
                     ORDER BY as_of, quote_time LIMIT 1",
                    params![sym, start_date],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .ok();
            let now: Option<f64> = conn
                .query_row(
                    "SELECT price::DOUBLE FROM underlying_quotes WHERE symbol = ? AND as_of = ? AND quote_time = ?",
                    params![sym, ctx.as_of, ctx.quote_time],
                    |r| r.get(0),
                )
                .ok();
            let (Some((d0, p0)), Some(p)) = (first, now) else {
                bench_notes.push(format!("{sym}: no price"));
                continue;
            };
            let shares = start_equity / p0;
            let divs: f64 = conn.query_row(
                "SELECT coalesce(sum(dividend), 0)::DOUBLE FROM underlying_bars WHERE symbol = ? AND date > ? AND date <= ?",
                params![sym, d0, ctx.as_of],
                |r| r.get(0),
            )?;
            let value = shares * (p + divs);
            let ret = value / start_equity - 1.0;
            if sym == "SPY" {
                spy_return = Some(ret);
            }
            conn.execute(
                "INSERT INTO benchmark_snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    ctx.as_of,
                    ctx.quote_time,
                    sym,
                    d0,
                    p0,
                    shares,
                    p,
                    shares * divs,
                    value,
                    ret,
                    ctx.run_id
                ],
            )?;
            rows += 1;
        }
        let mut notes = Vec::new();
        if !stale.is_empty() {
            notes.push(format!("stale marks: {}", stale.join(", ")));
        }
        notes.extend(bench_notes);
        let note = (!notes.is_empty()).then(|| notes.join("; "));
        conn.execute(
            "INSERT INTO portfolio_snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                ctx.as_of,
                ctx.quote_time,
                cash,
                market_value,
                equity,
                marks.len() as i32,
                stale.len() as i32,
                start_date,
                start_equity,
                total_return,
                spy_return,
                spy_return.map(|s| total_return - s),
                note,
                ctx.run_id
            ],
        )?;
        rows += 1;
        rows += write_strategy_snapshots(ctx, &marks)?;
        let mut summary = format!(
            "equity {equity:.2} (cash {cash:.2}, positions {market_value:.2}, {} open); total return {:+.2}%",
            marks.len(),
            total_return * 100.0
        );
        if let Some(s) = spy_return {
            summary.push_str(&format!(
                ", SPY {:+.2}%, alpha {:+.2}%",
                s * 100.0,
                (total_return - s) * 100.0
            ));
        }
        if let Some(n) = note {
            summary.push_str(&format!(" — {n}"));
        }
        Ok(JobOutput {
            rows_written: rows,
            summary,
        })
    }
}

/// Per strategy: open positions, market value, cumulative cash flow (every cash_ledger
/// row that belongs to one of its fills, and dividends on its shares) and P&L, with the
/// greeks summed. Strategies with no open position but a cash history are written too,
/// so their P&L curve continues after their last trade.
fn write_strategy_snapshots(ctx: &JobContext, marks: &[Mark]) -> Result<u64, JobError> {
    use std::collections::BTreeMap;
    #[derive(Default)]
    struct Agg {
        open: i32,
        mv: f64,
        cash: f64,
        greeks: [Option<f64>; 3],
    }
    let add = |acc: &mut Option<f64>, v: Option<f64>| {
        if let Some(v) = v {
            *acc = Some(acc.unwrap_or(0.0) + v);
        }
    };
    let mut by: BTreeMap<String, Agg> = BTreeMap::new();
    for m in marks {
        let a = by.entry(m.strategy.clone()).or_default();
        a.open += 1;
        a.mv += m.quantity as f64 * m.multiplier as f64 * m.mark.unwrap_or(0.0);
        add(&mut a.greeks[0], m.greeks.0);
        add(&mut a.greeks[1], m.greeks.1);
        add(&mut a.greeks[2], m.greeks.2);
    }
    let mut s = ctx.conn.prepare(
        "WITH refs AS (SELECT DISTINCT order_ref || '#' || leg AS reference, strategy FROM fills WHERE as_of <= ?)
         SELECT coalesce(r.strategy, CASE WHEN c.kind = 'dividend' THEN split_part(c.reference, ':', 4) END) AS strategy,
                sum(c.amount)::DOUBLE
         FROM cash_ledger c LEFT JOIN refs r ON r.reference = c.reference
         WHERE c.as_of <= ? AND c.kind <> 'deposit'
         GROUP BY 1 HAVING strategy IS NOT NULL AND strategy <> ''",
    )?;
    let flows = s.query_map(params![ctx.as_of, ctx.as_of], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
    })?;
    for f in flows {
        let (strategy, cash) = f?;
        by.entry(strategy).or_default().cash = cash;
    }
    let mut rows = 0;
    for (strategy, a) in &by {
        let mv = (a.mv * 100.0).round() / 100.0;
        ctx.conn.execute(
            "INSERT INTO strategy_snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                ctx.as_of,
                ctx.quote_time,
                strategy,
                a.open,
                mv,
                a.cash,
                a.cash + mv,
                a.greeks[0],
                a.greeks[1],
                a.greeks[2],
                ctx.run_id
            ],
        )?;
        rows += 1;
    }
    Ok(rows)
}
