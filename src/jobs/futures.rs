//! Futures in the pipeline, called from the jobs with one line each:
//! * [`fetch_quotes`] (fetch_chains, when `params.futures` names roots): the front and
//!   next contract of each root and every contract held, at the snapshot, and at the
//!   previous session's close (its settlement) when not stored yet;
//! * [`post_settlements`] (expire_positions, the daily run): each open futures
//!   position marked at the last settlement (the close of the previous session, or of
//!   today once the snapshot is after the close): variation margin into `cash_ledger`;
//! * [`roll_orders`] (expire_positions, after the settlements): a position held on its
//!   contract's roll day is rolled to the next contract by one order with both legs
//!   (close the held contract, open the next), recorded with the rule `roll`.

use super::{JobContext, JobError};
use crate::calendar;
use crate::model::identifiers::{ClientOrderId, Intent};
use crate::model::instrument::{FuturesContract, Instrument};
use crate::sources::MarketData;
use crate::store::repo::futures::{self as repo, QuoteRow};
use crate::store::repo::{orders, positions::Position};
use crate::trading::futures;
use crate::trading::{Leg, Order, OrderType};
use chrono::{NaiveDate, NaiveDateTime};
use std::collections::BTreeSet;

/// The close of session `d` (New York), `None` when `d` is not a session.
fn close_of(d: NaiveDate) -> Option<NaiveDateTime> {
    calendar::session(d)
        .ok()
        .flatten()
        .map(|s| d.and_time(s.close))
}

/// Quotes of `roots`' front and next contracts and of every contract held, at the
/// snapshot and at the previous session's close. Returns (rows, a note for the summary).
pub fn fetch_quotes(
    roots: &[String],
    source: &dyn MarketData,
    ctx: &JobContext,
) -> Result<(u64, Option<String>), JobError> {
    if roots.is_empty() {
        return Ok((0, None));
    }
    let conn = ctx.conn;
    let held: Vec<FuturesContract> = repo::held(conn)?.into_iter().map(|h| h.contract).collect();
    let mut contracts: BTreeSet<(NaiveDate, String)> = BTreeSet::new();
    let mut by_symbol = std::collections::HashMap::new();
    for root in roots {
        let p = futures::product(root).ok_or_else(|| {
            JobError::Failed(format!(
                "fetch_chains: params.futures: '{root}' is not a futures product optdesk knows ({})",
                futures::PRODUCTS.iter().map(|p| p.root).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let front = futures::front(p, ctx.as_of, ctx.config.desk.futures.roll_days_before)
            .map_err(|e| JobError::Failed(e.to_string()))?;
        let next = futures::next_contract(&front).map_err(|e| JobError::Failed(e.to_string()))?;
        for c in [front, next]
            .into_iter()
            .chain(held.iter().filter(|c| &c.root == root).cloned())
        {
            if c.expiry >= ctx.as_of {
                contracts.insert((c.expiry, c.symbol.clone()));
                by_symbol.insert(c.symbol.clone(), c);
            }
        }
    }
    let mut times = vec![(ctx.as_of, ctx.quote_time)];
    if let Some(&prev) = calendar::sessions_before(ctx.as_of, 1).first() {
        if let Some(close) = close_of(prev) {
            times.push((prev, close));
        }
    }
    let mut rows = 0;
    let mut missing = Vec::new();
    for (i, (as_of, at)) in times.iter().enumerate() {
        let mut quotes = Vec::new();
        for (_, symbol) in &contracts {
            let c = &by_symbol[symbol];
            // A past settlement already stored is kept.
            if i > 0 && repo::quote(conn, symbol, *as_of, *at)?.is_some() {
                continue;
            }
            match source.future_quote(c, *at)? {
                Some((bid, ask, last)) => quotes.push(QuoteRow {
                    contract: c.clone(),
                    bid,
                    ask,
                    last,
                }),
                None => missing.push(symbol.clone()),
            }
        }
        rows += repo::write_quotes(conn, *as_of, *at, &quotes, source.name(), ctx.run_id)?;
    }
    let symbols: Vec<&str> = contracts.iter().map(|(_, s)| s.as_str()).collect();
    let note = if missing.is_empty() {
        format!("futures quotes {}", symbols.join(", "))
    } else {
        format!(
            "{} gives no futures quotes ({})",
            source.name(),
            missing.join(", ")
        )
    };
    Ok((rows, Some(note)))
}

/// Mark every open futures position at the last settlement before the snapshot (the
/// close of the previous session, or today's once the snapshot is at or after the
/// close). Returns (rows written, a summary).
pub fn post_settlements(ctx: &JobContext) -> Result<(u64, String), JobError> {
    let conn = ctx.conn;
    let held = repo::held(conn)?;
    if held.is_empty() {
        return Ok((0, String::new()));
    }
    let session = match close_of(ctx.as_of) {
        Some(c) if ctx.quote_time >= c => Some(ctx.as_of),
        _ => calendar::sessions_before(ctx.as_of, 1).first().copied(),
    };
    let Some(session) = session else {
        return Ok((0, String::new()));
    };
    let Some(close) = close_of(session) else {
        return Ok((0, String::new()));
    };
    let (mut rows, mut posted, mut total) = (0, 0, crate::model::Price::ZERO);
    let mut waiting = Vec::new();
    for h in &held {
        let Some((_, _, settle)) = repo::quote(conn, &h.contract.symbol, session, close)? else {
            waiting.push(format!(
                "{} of {} (no settlement quote for {session})",
                h.contract.symbol, h.strategy
            ));
            continue;
        };
        if let Some(amount) =
            repo::post_settlement(conn, h, session, close, settle, ctx.as_of, ctx.run_id)?
        {
            rows += 2;
            posted += 1;
            total += amount;
        }
    }
    let mut s =
        format!("{posted} futures positions marked at {session}'s settlement (variation {total})");
    if !waiting.is_empty() {
        s.push_str(&format!("; not marked: {}", waiting.join(", ")));
    }
    Ok((rows, s))
}

/// One roll: the order, its strategy, the root and why.
pub struct Roll {
    pub order: Order,
    pub strategy: String,
    pub root: String,
    pub reason: String,
}

/// The rolls due on `ctx.as_of`: every futures position whose contract is on or past
/// its roll day (and not expired), to the next contract, one two-leg order each.
pub fn roll_orders(ctx: &JobContext, held: &[Position]) -> Result<Vec<Roll>, JobError> {
    let mut out = Vec::new();
    for p in held {
        let Instrument::Future(c) = &p.instrument else {
            continue;
        };
        if futures::product(&c.root).is_none() {
            continue;
        }
        let roll_days = ctx.config.desk.futures.roll_days_before;
        if c.expiry < ctx.as_of || !futures::due_to_roll(c, ctx.as_of, roll_days) {
            continue;
        }
        let bad = |e: crate::model::ModelError| JobError::Failed(e.to_string());
        let next = futures::next_contract(c).map_err(bad)?;
        let seq = orders::next_sequence(
            ctx.conn,
            Intent::Exit,
            &p.strategy,
            ctx.as_of,
            ctx.quote_time,
        )? + out
            .iter()
            .filter(|r: &&Roll| r.strategy == p.strategy)
            .count() as u32;
        let id = ClientOrderId::new(
            Intent::Exit,
            &p.strategy,
            ctx.as_of,
            ctx.quote_time.time(),
            seq,
        )
        .map_err(bad)?;
        let legs = vec![
            Leg::new(Instrument::Future(c.clone()), -p.quantity).map_err(bad)?,
            Leg::new(Instrument::Future(next.clone()), p.quantity).map_err(bad)?,
        ];
        let order = Order::new_checked(id, legs, OrderType::Market).map_err(bad)?;
        out.push(Roll {
            order,
            strategy: p.strategy.clone(),
            root: c.root.clone(),
            reason: format!(
                "{} {} contracts of {} rolled to {} (roll day {}, {} days before the third Friday; expiry {})",
                if p.quantity > 0 { "long" } else { "short" },
                p.quantity.abs(),
                c.symbol,
                next.symbol,
                futures::roll_date(c.contract_month.0, c.contract_month.1, roll_days),
                roll_days,
                c.expiry
            ),
        });
    }
    Ok(out)
}
