//! The one exit path: what the strategies' exit rules (`Strategy::exits`) say to close,
//! closed at the market through the run's broker, each close approved explicitly with
//! its rule and reason in `risk_decisions`. `expire_positions` calls it in the daily run
//! (after settling what expired), `manage_positions` at each intraday slot; a trade is
//! closed once, whichever gets there first (a closed trade is no longer open, and a
//! close still on its way at the broker is not sent again).

use super::{JobContext, JobError};
use crate::broker::router::Router;
use crate::model::identifiers::{ClientOrderId, Intent};
use crate::model::instrument::Instrument;
use crate::model::Price;
use crate::store::repo::orders;
use crate::trading::risk::approve_exit;
use crate::trading::strategies::{DayState, Registry};
use crate::trading::{Leg, Order, OrderStatus, OrderType};
use duckdb::params;
use std::collections::{HashMap, HashSet};

/// `[params]` of the two exit jobs (`expire_positions`, `manage_positions`): none.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Params {}

/// Prepare an exit job: its file, the strategies (whose exit rules it runs) and the
/// broker; its configuration hash covers the strategies' files too.
pub fn prepare(
    config: &crate::config::Config,
    def: &'static super::JobDef,
    job: impl FnOnce(Registry, super::BrokerChoice) -> Box<dyn super::Job>,
) -> Result<super::Prepared, crate::config::ConfigError> {
    let (file, text): (crate::config::JobFile<Params>, String) = config.job(def.name)?;
    let strategies = crate::trading::strategies::registry(config)?;
    let (broker, _) = super::BrokerChoice::from_config(config)?;
    Ok(super::Prepared {
        def,
        enabled: file.enabled,
        slots: file.slots,
        config_hash: config.hash_with(&format!("{text}\n{}", strategies.text)),
        job: job(strategies, broker),
    })
}

/// What the exit step did.
#[derive(Debug, Default)]
pub struct ExitsDone {
    /// Rows written (decisions, legs, events, fills, cash).
    pub rows: u64,
    /// Trades whose every open leg was closed.
    pub closed: usize,
    /// Trades an exit rule fired for that stay (partly) open, with why.
    pub waiting: Vec<String>,
}

/// Approve a close explicitly, record the decision with its rule, and send it:
/// (rows written, where the order stands, why it did not fill).
#[allow(clippy::too_many_arguments)]
pub fn close(
    ctx: &JobContext,
    router: &mut Router,
    order: Order,
    strategy: &str,
    underlying: &str,
    rule: &str,
    reason: &str,
) -> Result<(u64, OrderStatus, Option<String>), JobError> {
    let legs = order.legs.len() as u64;
    orders::write_decision(
        ctx.conn,
        ctx.as_of,
        ctx.quote_time,
        strategy,
        underlying,
        &order.reference(),
        true,
        rule,
        Some(reason),
        None,
        Price::ZERO,
        order.id.intent,
        ctx.run_id,
    )?;
    let placed = router.place(approve_exit(order).map_err(JobError::Failed)?)?;
    Ok((
        2 + legs + 2 * placed.fills.len() as u64,
        placed.status,
        placed.reason,
    ))
}

/// Close what every strategy's exit rules say for `day` (loaded at this run's
/// snapshot): the trade's open legs at the market, one order per leg (as a trader legs
/// out of a basket), so a leg without a quote waits without holding the others open.
/// A leg whose close the broker rejected at this snapshot (no quote, say) is not sent
/// again by a re-run of the same snapshot; the next snapshot tries it again.
pub fn close_by_exit_rules(
    ctx: &JobContext,
    router: &mut Router,
    strategies: &Registry,
    day: &DayState,
) -> Result<ExitsDone, JobError> {
    let conn = ctx.conn;
    // Positions with a close still on its way are not closed a second time.
    let in_flight: HashSet<(String, String)> = orders::legs_in_flight(conn)?;
    let busy = |book: &str, i: &Instrument| in_flight.contains(&(book.to_string(), i.key()));
    let rejected_here: HashMap<(String, String), String> = conn
        .prepare(
            "SELECT book, instrument, min(coalesce(reason, status)) FROM orders
             WHERE as_of = ? AND created_at = ? AND intent = 'exit' AND status = 'rejected'
             GROUP BY ALL",
        )?
        .query_map(params![ctx.as_of, ctx.quote_time], |r| {
            Ok(((r.get(0)?, r.get(1)?), r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut done = ExitsDone::default();
    for loaded in &strategies.strategies {
        let s = loaded.strategy.as_ref();
        for exit in s.exits(day) {
            let Some(trade) = day
                .open_trades
                .iter()
                .find(|t| t.order_ref == exit.order_ref && t.strategy == s.name())
            else {
                continue;
            };
            let mut left = Vec::new();
            let mut legs_closed = 0;
            for l in &trade.legs {
                if matches!(&l.instrument, Instrument::Option(o) if o.expiry() < ctx.as_of) {
                    continue; // settled by expire_positions
                }
                if busy(s.name(), &l.instrument) {
                    left.push(format!(
                        "{} (a close is still open at the broker)",
                        l.instrument.key().trim()
                    ));
                    continue;
                }
                if let Some(why) = rejected_here.get(&(s.name().to_string(), l.instrument.key())) {
                    left.push(format!(
                        "{} (rejected at this snapshot: {why})",
                        l.instrument.key().trim()
                    ));
                    continue;
                }
                let Ok(leg) = Leg::new(l.instrument.clone(), -l.quantity) else {
                    continue;
                };
                let underlying = l.instrument.underlying().to_string();
                let seq =
                    orders::next_sequence(conn, Intent::Exit, s.name(), ctx.as_of, ctx.quote_time)?;
                let id = ClientOrderId::new(
                    Intent::Exit,
                    s.name(),
                    ctx.as_of,
                    ctx.quote_time.time(),
                    seq,
                )
                .map_err(|m| JobError::Failed(m.to_string()))?;
                let order = Order::new_checked(id, vec![leg], OrderType::Market)
                    .map_err(|m| JobError::Failed(m.to_string()))?;
                let reason = format!("{} of {}", exit.reason, exit.order_ref);
                let (n, status, why) = close(
                    ctx,
                    router,
                    order,
                    s.name(),
                    &underlying,
                    exit.rule,
                    &reason,
                )?;
                done.rows += n;
                if status == OrderStatus::Filled {
                    legs_closed += 1;
                } else {
                    left.push(format!(
                        "{} ({})",
                        l.instrument.key().trim(),
                        why.unwrap_or_else(|| status.code().to_string())
                    ));
                }
            }
            if left.is_empty() {
                done.closed += 1;
            } else {
                done.waiting.push(format!(
                    "{} ({}): {legs_closed} legs closed, {} stay open until a quote allows: {}",
                    exit.order_ref,
                    exit.rule,
                    left.len(),
                    left.join(", ")
                ));
            }
        }
    }
    Ok(done)
}
