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
    writes: &["portfolio_snapshots", "benchmark_snapshots"],
    prepare,
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

/// (instrument, kind, quantity, multiplier, mark, stale, last quote date)
type Mark = (String, String, i64, i64, Option<f64>, bool, Option<String>);

pub struct SnapshotBenchmarks {
    pub params: Params,
}

impl Job for SnapshotBenchmarks {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let conn = ctx.conn;
        for t in ["portfolio_snapshots", "benchmark_snapshots"] {
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
        // Marks: today's mid, else the last known one (stale).
        let mut s = conn.prepare(
            "WITH pos AS (SELECT * FROM positions_as_of(?::DATE)),
                  today AS (SELECT contract, (bid + ask) / 2 AS mid FROM option_quotes
                            WHERE as_of = ? AND quote_time = ? AND bid > 0 AND ask >= bid),
                  before AS (SELECT contract, arg_max((bid + ask) / 2, quote_time) AS mid, max(as_of) AS on_date
                             FROM option_quotes WHERE as_of <= ? AND bid > 0 AND ask >= bid
                               AND contract IN (SELECT instrument FROM pos WHERE kind = 'option')
                             GROUP BY contract),
                  spot AS (SELECT symbol, price FROM underlying_quotes WHERE as_of = ? AND quote_time = ?)
             SELECT p.instrument, p.kind, p.quantity, p.multiplier,
                    CASE WHEN p.kind = 'shares' THEN s.price ELSE coalesce(t.mid, b.mid) END::DOUBLE AS mark,
                    (p.kind = 'option' AND t.mid IS NULL) AS stale, b.on_date::VARCHAR
             FROM pos p LEFT JOIN today t ON t.contract = p.instrument
                        LEFT JOIN before b ON b.contract = p.instrument
                        LEFT JOIN spot s ON s.symbol = p.underlying",
        )?;
        let marks: Vec<Mark> = s
            .query_map(
                params![
                    ctx.as_of,
                    ctx.as_of,
                    ctx.quote_time,
                    ctx.as_of,
                    ctx.as_of,
                    ctx.quote_time
                ],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                },
            )?
            .collect::<Result<_, _>>()?;
        let mut market_value = 0.0;
        let mut stale = Vec::new();
        let mut unmarked = Vec::new();
        for (inst, _kind, qty, mult, mark, is_stale, since) in &marks {
            match mark {
                Some(m) => market_value += *qty as f64 * *mult as f64 * m,
                None => unmarked.push(inst.trim().to_string()),
            }
            if *is_stale && mark.is_some() {
                stale.push(format!(
                    "{} (last mid of {})",
                    inst.trim(),
                    since.clone().unwrap_or_default()
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
