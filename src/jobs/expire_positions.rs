//! `expire_positions` — settle the options that expired before `as_of`, from the
//! expiry day's bar: the close for PM-settled series, the open for AM-settled index
//! monthlies (SPX). Cash-settled index options pay intrinsic; equity and ETF options in
//! the money by more than a cent are assigned (short) or exercised (long) into shares
//! at the strike; the rest expire worthless. Shares sold short by an assigned naked
//! call are bought in at the settlement price the same day (net: the intrinsic value),
//! except in the covered-call wheel. Every settlement is a filled order with
//! a deterministic reference (`expire:<contract>`), so a re-run books nothing twice.
//! Shares held at the close before an ex-date are paid the dividend (kind
//! `dividend` in `cash_ledger`), once per holding and ex-date.

use super::{Job, JobContext, JobDef, JobError, JobOutput, Prepared};
use crate::config::{Config, ConfigError, JobFile};
use crate::model::{OptionRight, Price};
use crate::pricing::is_am_settled;
use crate::trading::ledger::CashKind;
use crate::trading::{Fill, Instrument};
use chrono::NaiveDate;
use duckdb::params;
use serde::{Deserialize, Serialize};

pub const DEF: JobDef = JobDef {
    name: "expire_positions",
    about: "settle expired options (cash, or assignment/exercise into shares); holding-period exits; dividends on shares",
    writes: &["orders", "fills", "cash_ledger"],
    prepare,
};

/// Index options settle in cash; everything else by delivery of shares.
pub const CASH_SETTLED: &[&str] = &["SPX", "XSP", "NDX", "RUT"];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Params {}

fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    let (file, text): (JobFile<Params>, String) = config.job(DEF.name)?;
    // Holding-period exits follow the strategies' own configuration.
    let (_, dispersion, d_text) = super::select_trades::load_strategy(
        config,
        "dispersion",
        crate::trading::strategies::dispersion::Config::validate,
    )?;
    Ok(Prepared {
        def: &DEF,
        enabled: file.enabled,
        slots: file.slots,
        config_hash: config.hash_with(&format!("{text}\n{d_text}")),
        job: Box::new(ExpirePositions {
            holds: vec![("dispersion".to_string(), dispersion.hold_sessions)],
            paper: super::select_trades::paper_config(config)?,
        }),
    })
}

/// (contract, underlying, expiry, strike, put/call, quantity, today's bid, ask)
type HeldRow = (
    String,
    String,
    NaiveDate,
    f64,
    String,
    i64,
    Option<f64>,
    Option<f64>,
);

pub struct ExpirePositions {
    /// (strategy, sessions held before closing at the market).
    pub holds: Vec<(String, u32)>,
    /// The paper broker of `jobs/select_trades.toml` (exits trade through it).
    pub paper: crate::trading::broker::PaperConfig,
}

struct Open {
    strategy: String,
    contract: String,
    underlying: String,
    expiry: NaiveDate,
    strike: f64,
    right: OptionRight,
    quantity: i64,
}

impl Job for ExpirePositions {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let conn = ctx.conn;
        let mut s = conn.prepare(
            "SELECT strategy, instrument, underlying, expiry, strike::DOUBLE, put_call, quantity
             FROM positions_as_of(?::DATE) WHERE kind = 'option' AND expiry < ? ORDER BY expiry, instrument",
        )?;
        let open: Vec<Open> = s
            .query_map(params![ctx.as_of, ctx.as_of], |r| {
                Ok(Open {
                    strategy: r.get(0)?,
                    contract: r.get(1)?,
                    underlying: r.get(2)?,
                    expiry: r.get(3)?,
                    strike: r.get(4)?,
                    right: OptionRight::from_code(&r.get::<_, String>(5)?),
                    quantity: r.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let (mut rows, mut settled, mut assigned, mut worthless) = (0u64, 0, 0, 0);
        let mut waiting = Vec::new();
        for p in &open {
            let cash = CASH_SETTLED.contains(&p.underlying.as_str());
            let root = p.contract.get(..6).unwrap_or("").trim();
            let am = is_am_settled(root, &p.underlying, cash);
            let price: Option<f64> = conn
                .query_row(
                    &format!(
                        "SELECT {}::DOUBLE FROM underlying_bars WHERE symbol = ? AND date = ?",
                        if am { "open" } else { "close" }
                    ),
                    params![p.underlying, p.expiry],
                    |r| r.get(0),
                )
                .ok();
            let Some(settle) = price else {
                waiting.push(format!(
                    "{} (no {} bar for {} yet)",
                    p.contract.trim(),
                    p.underlying,
                    p.expiry
                ));
                continue;
            };
            let intrinsic = match p.right {
                OptionRight::Call => (settle - p.strike).max(0.0),
                OptionRight::Put => (p.strike - settle).max(0.0),
            };
            let reference = format!("expire:{}", p.contract);
            let option = Instrument::Option {
                contract: p.contract.clone(),
                underlying: p.underlying.clone(),
                expiry: p.expiry,
                strike: Price::from_f64(p.strike),
                right: p.right,
                multiplier: 100,
            };
            let mut fills = Vec::new();
            let delivers = !cash && intrinsic >= 0.01;
            // Close the option: at intrinsic in cash, at zero when shares are delivered
            // or it expires worthless.
            let close_price = if cash { intrinsic } else { 0.0 };
            fills.push((
                Fill {
                    order_reference: reference.clone(),
                    leg: 0,
                    as_of: ctx.as_of,
                    instrument: option,
                    quantity: -p.quantity,
                    price: Price::from_cents((close_price * 100.0).round() as i64),
                    commission: Price::ZERO,
                },
                if delivers {
                    CashKind::Assignment
                } else {
                    CashKind::Settlement
                },
            ));
            if delivers {
                // A call delivers shares to its holder; a put takes them from its holder.
                let shares = match p.right {
                    OptionRight::Call => 100 * p.quantity,
                    OptionRight::Put => -100 * p.quantity,
                };
                fills.push((
                    Fill {
                        order_reference: reference.clone(),
                        leg: 1,
                        as_of: ctx.as_of,
                        instrument: Instrument::Shares {
                            symbol: p.underlying.clone(),
                        },
                        quantity: shares,
                        price: Price::from_f64(p.strike),
                        commission: Price::ZERO,
                    },
                    CashKind::Assignment,
                ));
            }
            // Shares sold short by an assigned naked call are bought in at the settlement
            // price the same day (the covered-call wheel keeps its shares instead).
            if delivers
                && p.right == OptionRight::Call
                && p.quantity < 0
                && p.strategy != "covered_call"
            {
                let held: i64 = conn
                    .query_row(
                        "SELECT coalesce(sum(quantity), 0) FROM positions_as_of(?::DATE) WHERE kind = 'shares' AND underlying = ? AND strategy = ?",
                        params![ctx.as_of, p.underlying, p.strategy],
                        |r| r.get(0),
                    )
                    .unwrap_or(0);
                let short_after = held + 100 * p.quantity;
                if short_after < 0 {
                    fills.push((
                        Fill {
                            order_reference: reference.clone(),
                            leg: 2,
                            as_of: ctx.as_of,
                            instrument: Instrument::Shares {
                                symbol: p.underlying.clone(),
                            },
                            quantity: -short_after.max(100 * p.quantity),
                            price: Price::from_cents((settle * 100.0).round() as i64),
                            commission: Price::ZERO,
                        },
                        CashKind::Assignment,
                    ));
                }
            }
            // The wheel's shares are held under the strategy that was assigned them;
            // a covered call's delivery comes out of that holding.
            let share_strategy: String = if delivers && p.strategy == "covered_call" {
                conn.query_row(
                    "SELECT strategy FROM positions_as_of(?::DATE) WHERE kind = 'shares' AND underlying = ? AND quantity > 0
                     ORDER BY quantity DESC LIMIT 1",
                    params![ctx.as_of, p.underlying],
                    |r| r.get(0),
                )
                .unwrap_or_else(|_| p.strategy.clone())
            } else {
                p.strategy.clone()
            };
            for (f, kind) in &fills {
                super::select_trades::write_order_leg(
                    conn,
                    ctx.as_of,
                    &reference,
                    &p.strategy,
                    f.leg,
                    &f.instrument,
                    f.quantity,
                    None,
                    "filled",
                    None,
                    ctx.run_id,
                )?;
                let strategy = if matches!(f.instrument, Instrument::Shares { .. }) {
                    &share_strategy
                } else {
                    &p.strategy
                };
                super::select_trades::write_fill(conn, f, strategy, *kind, ctx.run_id)?;
                rows += 3;
            }
            if cash {
                settled += 1;
            } else if delivers {
                assigned += 1;
            } else {
                worthless += 1;
            }
        }
        // Holding-period exits: close at the market (buy shorts at the ask, sell longs at
        // the bid) once a position has been held for its strategy's sessions.
        let mut closed = 0;
        let paper = &self.paper;
        for (strategy, hold) in &self.holds {
            let before = crate::calendar::sessions_before(ctx.as_of, *hold as usize);
            let Some(&cutoff) = before.first().filter(|_| before.len() == *hold as usize) else {
                continue;
            };
            let mut s = conn.prepare(
                "SELECT p.instrument, p.underlying, p.expiry, p.strike::DOUBLE, p.put_call, p.quantity,
                        q.bid::DOUBLE, q.ask::DOUBLE
                 FROM positions_as_of(?::DATE) p
                 LEFT JOIN option_quotes q ON q.contract = p.instrument AND q.as_of = ? AND q.quote_time = ?
                 WHERE p.strategy = ? AND p.kind = 'option' AND p.opened <= ? AND p.expiry >= ?",
            )?;
            let held: Vec<HeldRow> = s
                .query_map(
                    params![
                        ctx.as_of,
                        ctx.as_of,
                        ctx.quote_time,
                        strategy,
                        cutoff,
                        ctx.as_of
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
                        ))
                    },
                )?
                .collect::<Result<_, _>>()?;
            for (contract, underlying, expiry, strike, pc, qty, bid, ask) in held {
                let (Some(bid), Some(ask)) = (bid, ask) else {
                    waiting.push(format!(
                        "{} (held {hold} sessions, no quote today to close it)",
                        contract.trim()
                    ));
                    continue;
                };
                let quote = crate::trading::broker::Quote {
                    bid: Price::from_f64(bid),
                    ask: Price::from_f64(ask),
                };
                let price = match crate::trading::broker::leg_price(paper, &contract, &quote, -qty)
                {
                    Ok(p) => p,
                    Err(e) => {
                        waiting.push(format!("{} ({e})", contract.trim()));
                        continue;
                    }
                };
                let instrument = Instrument::Option {
                    contract: contract.clone(),
                    underlying,
                    expiry,
                    strike: Price::from_f64(strike),
                    right: OptionRight::from_code(&pc),
                    multiplier: 100,
                };
                let reference = format!("exit:{}:{}", contract, ctx.as_of);
                super::select_trades::close_position(
                    ctx, strategy, &reference, instrument, qty, price, paper,
                )?;
                rows += 3;
                closed += 1;
            }
        }
        // Dividends on shares: whoever held them at the close before an ex-date is paid
        // (or, short, pays) the dividend, once per holding and ex-date.
        let mut dividends = 0;
        let prev = crate::calendar::sessions_before(ctx.as_of, 2);
        if let [before_ex, ex] = prev.as_slice() {
            let mut s = conn.prepare(
                "SELECT p.strategy, p.underlying, p.quantity, b.dividend::DOUBLE
                 FROM positions_as_of(?::DATE) p JOIN underlying_bars b ON b.symbol = p.underlying AND b.date = ?
                 WHERE p.kind = 'shares' AND b.dividend > 0",
            )?;
            let due: Vec<(String, String, i64, f64)> = s
                .query_map(params![before_ex, ex], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            for (strategy, symbol, qty, div) in due {
                let reference = format!("dividend:{symbol}:{ex}:{strategy}");
                let booked: i64 = conn.query_row(
                    "SELECT count(*) FROM cash_ledger WHERE reference = ?",
                    params![reference],
                    |r| r.get(0),
                )?;
                if booked > 0 {
                    continue;
                }
                let amount = Price::from_f64(qty as f64 * div);
                conn.execute(
                    "INSERT INTO cash_ledger VALUES (?, 'dividend', ?, ?, ?)",
                    params![ctx.as_of, amount.to_f64(), reference, ctx.run_id],
                )?;
                rows += 1;
                dividends += 1;
            }
        }
        let mut summary = format!(
            "{} expired positions: {settled} cash-settled, {assigned} assigned or exercised into shares, {worthless} expired worthless; {closed} closed at the end of their holding period; {dividends} dividends booked",
            settled + assigned + worthless
        );
        if !waiting.is_empty() {
            summary.push_str(&format!(
                "; waiting for a settlement price: {}",
                waiting.join(", ")
            ));
        }
        Ok(JobOutput {
            rows_written: rows,
            summary,
        })
    }
}
