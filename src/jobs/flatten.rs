//! `optdesk flatten` — close every open position at the snapshot's quotes: options
//! bought back at the ask or sold at the bid, shares at the underlying's price. Run in
//! the job envelope (recorded in `job_runs`, one transaction) but not part of the daily
//! pipeline. A position that cannot be closed (no usable quote) stays open and is named.

use super::{Job, JobContext, JobDef, JobError, JobOutput, Prepared};
use crate::config::{Config, ConfigError};
use crate::model::{OptionRight, Price};
use crate::trading::broker::{leg_price, PaperConfig, Quote};
use crate::trading::Instrument;
use chrono::NaiveDate;
use duckdb::params;

/// Not in [`super::JOBS`]: run only by `optdesk flatten`.
pub static DEF: JobDef = JobDef {
    name: "flatten",
    about: "close every open position at the snapshot's quotes",
    writes: &["orders", "fills", "cash_ledger"],
    prepare,
};

pub fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    Ok(Prepared {
        def: &DEF,
        enabled: true,
        slots: Vec::new(),
        config_hash: config.hash_with("flatten"),
        job: Box::new(Flatten {
            paper: super::select_trades::paper_config(config)?,
        }),
    })
}

pub struct Flatten {
    /// The paper broker of `jobs/select_trades.toml`.
    pub paper: PaperConfig,
}

/// (strategy, instrument, underlying, kind, expiry, strike, put/call, quantity, bid, ask, spot)
type Row = (
    String,
    String,
    String,
    String,
    Option<NaiveDate>,
    Option<f64>,
    Option<String>,
    i64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
);

impl Job for Flatten {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let conn = ctx.conn;
        let mut s = conn.prepare(
            "SELECT p.strategy, p.instrument, p.underlying, p.kind, p.expiry, p.strike::DOUBLE, p.put_call, p.quantity,
                    q.bid::DOUBLE, q.ask::DOUBLE, u.price::DOUBLE
             FROM positions_as_of(?::DATE) p
             LEFT JOIN option_quotes q ON q.contract = p.instrument AND q.as_of = ? AND q.quote_time = ?
             LEFT JOIN underlying_quotes u ON u.symbol = p.underlying AND u.as_of = ? AND u.quote_time = ?",
        )?;
        let rows: Vec<Row> = s
            .query_map(
                params![
                    ctx.as_of,
                    ctx.as_of,
                    ctx.quote_time,
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
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                    ))
                },
            )?
            .collect::<Result<_, _>>()?;
        let paper = &self.paper;
        let (mut closed, mut written) = (0u64, 0u64);
        let mut left = Vec::new();
        for (strategy, key, underlying, kind, expiry, strike, pc, qty, bid, ask, spot) in rows {
            let (instrument, price) = if kind == "shares" {
                let Some(spot) = spot else {
                    left.push(format!(
                        "{key} (no price for {underlying} at this snapshot)"
                    ));
                    continue;
                };
                (
                    Instrument::Shares {
                        symbol: key.clone(),
                    },
                    Price::from_cents((spot * 100.0).round() as i64),
                )
            } else {
                let (Some(bid), Some(ask), Some(expiry), Some(strike)) = (bid, ask, expiry, strike)
                else {
                    left.push(format!("{} (no quote at this snapshot)", key.trim()));
                    continue;
                };
                let quote = Quote {
                    bid: Price::from_f64(bid),
                    ask: Price::from_f64(ask),
                };
                match leg_price(paper, &key, &quote, -qty) {
                    Ok(p) => (
                        Instrument::Option {
                            contract: key.clone(),
                            underlying: underlying.clone(),
                            expiry,
                            strike: Price::from_f64(strike),
                            right: OptionRight::from_code(pc.as_deref().unwrap_or("P")),
                            multiplier: 100,
                        },
                        p,
                    ),
                    Err(e) => {
                        left.push(format!("{} ({e})", key.trim()));
                        continue;
                    }
                }
            };
            let reference = format!("flatten:{key}:{}", ctx.quote_time.format("%Y-%m-%dT%H:%M"));
            super::select_trades::close_position(
                ctx, &strategy, &reference, instrument, qty, price, paper,
            )?;
            closed += 1;
            written += 3;
        }
        let mut summary = format!(
            "closed {closed} positions at the {} quotes",
            ctx.quote_time.format("%Y-%m-%d %H:%M")
        );
        if !left.is_empty() {
            summary.push_str(&format!(
                "; {} could not be closed and stay open: {}",
                left.len(),
                left.join(", ")
            ));
        }
        Ok(JobOutput {
            rows_written: written,
            summary,
        })
    }
}
