//! `expire_positions` — settle the options that expired before `as_of`, from the
//! expiry day's bar: the close for PM-settled series, the open for AM-settled index
//! monthlies (SPX). The instrument says how it settles: cash-settled options pay
//! intrinsic; physically settled options in the money by a cent or more are assigned
//! (short) or exercised (long) into shares at the strike, and the holding strategy's
//! assignment rule says what happens to the shares; the rest expire worthless. Then
//! each strategy's exit rules close what they say (the dispersion trade after its
//! holding period). Every settlement and exit is an order approved explicitly (its
//! rule in `risk_decisions`) and sent through the broker like any other, with an id
//! `expire:<strategy>:<session>T<time>:<n>` or `exit:...`. Shares held at the close
//! before an ex-date are paid the dividend (kind `dividend` in `cash_ledger`), once
//! per holding and ex-date.

use super::BrokerChoice;
use super::{Job, JobContext, JobDef, JobError, JobOutput, Prepared};
use crate::config::{Config, ConfigError};
use crate::model::identifiers::{ClientOrderId, Intent};
use crate::model::instrument::Instrument;
use crate::model::Price;
use crate::pricing::is_am_settled;
use crate::store::repo::{orders, positions};
use crate::trading::settlement::{self, Expiring};
use crate::trading::strategies::Registry;
use crate::trading::{Order, OrderType};
use duckdb::params;
use std::collections::HashMap;

pub const DEF: JobDef = JobDef {
    name: "expire_positions",
    about: "settle expired options (cash, or assignment/exercise into shares); futures' variation margin and rolls; strategies' exits; dividends on shares",
    writes: &["risk_decisions", "order_legs", "order_events", "fills", "cash_ledger", "futures_variation"],
    reads_chains: true,
    prepare,
    daily: true,
};

fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    super::exits::prepare(config, &DEF, |strategies, broker| {
        Box::new(ExpirePositions { strategies, broker })
    })
}

pub struct ExpirePositions {
    pub strategies: Registry,
    pub broker: BrokerChoice,
}

impl Job for ExpirePositions {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let conn = ctx.conn;
        let mut broker = self.broker.make(conn, ctx.as_of, ctx.quote_time);
        let mut router = ctx.router(broker.as_mut(), DEF.name);
        let mut rows = 0u64;
        for p in router.resume_open()? {
            rows += 1 + 2 * p.fills.len() as u64;
        }
        let held = positions::open_positions(conn, ctx.as_of)?;
        // Positions with a close still on its way are not closed a second time.
        let in_flight = orders::legs_in_flight(conn)?;
        let busy = |book: &str, i: &Instrument| in_flight.contains(&(book.to_string(), i.key()));
        // Shares per underlying, per strategy (signed), for the assignment rules.
        let mut shares: HashMap<String, HashMap<String, i64>> = HashMap::new();
        for p in &held {
            if let Instrument::Equity { symbol } = &p.instrument {
                shares
                    .entry(symbol.clone())
                    .or_default()
                    .insert(p.strategy.clone(), p.quantity);
            }
        }
        let (mut settled, mut assigned, mut worthless) = (0, 0, 0);
        let mut waiting = Vec::new();
        let mut expiring: Vec<Expiring> = held
            .iter()
            .filter_map(|p| match &p.instrument {
                Instrument::Option(o) if o.expiry() < ctx.as_of => Some(Expiring {
                    strategy: p.strategy.clone(),
                    option: o.clone(),
                    quantity: p.quantity,
                }),
                _ => None,
            })
            .collect();
        expiring.sort_by(|a, b| {
            (a.option.expiry(), a.option.contract()).cmp(&(b.option.expiry(), b.option.contract()))
        });
        for e in &expiring {
            let o = &e.option;
            if busy(&e.strategy, &Instrument::Option(o.clone())) {
                waiting.push(format!(
                    "{} (a settlement is still open at the broker)",
                    o.contract().trim()
                ));
                continue;
            }
            let am = is_am_settled(&o.occ.root, &o.underlying, o.is_cash_settled());
            let price: Option<f64> = conn
                .query_row(
                    &format!(
                        "SELECT {}::DOUBLE FROM underlying_bars WHERE symbol = ? AND date = ?",
                        if am { "open" } else { "close" }
                    ),
                    params![o.underlying, o.expiry()],
                    |r| r.get(0),
                )
                .ok();
            let Some(settle_px) = price.and_then(|p| Price::try_from_f64(p).ok()) else {
                waiting.push(format!(
                    "{} (no {} bar for {} yet)",
                    o.contract().trim(),
                    o.underlying,
                    o.expiry()
                ));
                continue;
            };
            let rule = self.strategies.on_assignment(&e.strategy);
            let empty = HashMap::new();
            let held_shares = shares.get(&o.underlying).unwrap_or(&empty);
            let (outcome, legs) = settlement::settle(e, settle_px, rule, held_shares);
            let seq = orders::next_sequence(
                conn,
                Intent::Expire,
                &e.strategy,
                ctx.as_of,
                ctx.quote_time,
            )?;
            let id = ClientOrderId::new(
                Intent::Expire,
                &e.strategy,
                ctx.as_of,
                ctx.quote_time.time(),
                seq,
            )
            .map_err(|m| JobError::Failed(m.to_string()))?;
            let order = Order::new_checked(id, legs, OrderType::Settlement)
                .map_err(|m| JobError::Failed(m.to_string()))?;
            let reason = format!(
                "{} expired {} with {} at {settle_px} ({})",
                o.contract().trim(),
                o.expiry(),
                o.underlying,
                match outcome {
                    settlement::Outcome::CashSettled => "cash-settled at intrinsic",
                    settlement::Outcome::Delivered =>
                        "in the money: shares delivered at the strike",
                    settlement::Outcome::Worthless => "worthless",
                }
            );
            rows += super::exits::close(
                ctx,
                &mut router,
                order,
                &e.strategy,
                &o.underlying,
                "expiry_settlement",
                &reason,
            )?
            .0;
            match outcome {
                settlement::Outcome::CashSettled => settled += 1,
                settlement::Outcome::Delivered => assigned += 1,
                settlement::Outcome::Worthless => worthless += 1,
            }
        }
        // Futures: variation margin at the last settlement, then the rolls due today.
        let (n, variation) = super::futures::post_settlements(ctx)?;
        rows += n;
        let mut rolled = 0;
        for r in super::futures::roll_orders(ctx, &held)? {
            let (n, status, why) = super::exits::close(
                ctx,
                &mut router,
                r.order,
                &r.strategy,
                &r.root,
                "roll",
                &r.reason,
            )?;
            rows += n;
            if status == crate::trading::OrderStatus::Filled {
                rolled += 1;
            } else {
                waiting.push(format!(
                    "roll of {} ({}): {}",
                    r.strategy,
                    r.reason,
                    why.unwrap_or_else(|| status.code().to_string())
                ));
            }
        }
        // Strategies' exits: the one exit path manage_positions takes at the slots.
        let mut day = ctx.load_day()?;
        day.session.daily_run = ctx.slot.is_none();
        let exits = super::exits::close_by_exit_rules(ctx, &mut router, &self.strategies, &day)?;
        rows += exits.rows;
        let closed = exits.closed;
        waiting.extend(exits.waiting);
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
            "{} expired positions: {settled} cash-settled, {assigned} assigned or exercised into shares, {worthless} expired worthless; {closed} closed by their strategy's exit rules; {dividends} dividends booked",
            settled + assigned + worthless
        );
        if !variation.is_empty() || rolled > 0 {
            summary.push_str(&format!("; {variation}; {rolled} futures positions rolled"));
        }
        if !waiting.is_empty() {
            summary.push_str(&format!("; waiting: {}", waiting.join(", ")));
        }
        Ok(JobOutput {
            rows_written: rows,
            summary,
        })
    }
}
