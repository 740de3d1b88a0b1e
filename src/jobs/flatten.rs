//! `optdesk flatten` — close every open position at the snapshot's quotes: options
//! bought back at the ask or sold at the bid, shares at the underlying's price. Each
//! close is approved explicitly (rule `flatten` in `risk_decisions`) and sent through
//! the broker like any order. Run in the job envelope (recorded in `job_runs`) but not
//! part of the daily pipeline. A position that cannot be closed (no usable quote) stays
//! open and is named.

use super::BrokerChoice;
use super::{Job, JobContext, JobDef, JobError, JobOutput, Prepared};
use crate::config::{Config, ConfigError};
use crate::model::identifiers::{ClientOrderId, Intent};
use crate::model::Price;
use crate::store::repo::{orders, positions};
use crate::trading::risk::approve_exit;
use crate::trading::{Leg, Order, OrderStatus, OrderType};

/// Not in [`super::JOBS`]: run only by `optdesk flatten`.
pub static DEF: JobDef = JobDef {
    name: "flatten",
    about: "close every open position at the snapshot's quotes",
    writes: &[
        "risk_decisions",
        "order_legs",
        "order_events",
        "fills",
        "cash_ledger",
    ],
    reads_chains: true,
    prepare,
    daily: true,
};

pub fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    let (broker, _) = BrokerChoice::from_config(config)?;
    Ok(Prepared {
        def: &DEF,
        enabled: true,
        slots: Vec::new(),
        config_hash: config.hash_with("flatten"),
        job: Box::new(Flatten { broker }),
    })
}

pub struct Flatten {
    /// The broker of `jobs/desk.toml [broker]`.
    pub broker: BrokerChoice,
}

impl Job for Flatten {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let conn = ctx.conn;
        let mut broker = self.broker.make(conn, ctx.as_of, ctx.quote_time);
        let mut router = ctx.router(broker.as_mut(), DEF.name);
        router.resume_open()?;
        let c = close_all(
            ctx,
            &mut router,
            "optdesk flatten: close every open position",
        )?;
        Ok(JobOutput {
            rows_written: c.written,
            summary: c.summary(ctx),
        })
    }
}

/// What [`close_all`] did.
pub struct Closed {
    pub closed: u64,
    pub written: u64,
    /// What stays open, each with why.
    pub left: Vec<String>,
}

impl Closed {
    pub fn summary(&self, ctx: &JobContext) -> String {
        let mut summary = format!(
            "closed {} positions at the {} quotes",
            self.closed,
            ctx.quote_time.format("%Y-%m-%d %H:%M")
        );
        if !self.left.is_empty() {
            summary.push_str(&format!(
                "; {} could not be closed and stay open: {}",
                self.left.len(),
                self.left.join(", ")
            ));
        }
        summary
    }
}

/// Close every open position through `router` (its broker), each approved explicitly
/// with rule `flatten` and `why` in `risk_decisions`; a position with a close still
/// open at the broker, or that the broker would not close, stays open and is named.
pub fn close_all(
    ctx: &JobContext,
    router: &mut crate::broker::router::Router<'_>,
    why: &str,
) -> Result<Closed, JobError> {
    let conn = ctx.conn;
    let held = positions::open_positions(conn, ctx.as_of)?;
    let in_flight = orders::legs_in_flight(conn)?;
    let (mut closed, mut written) = (0u64, 0u64);
    let mut left = Vec::new();
    for p in held {
        let key = p.instrument.key();
        if in_flight.contains(&(p.strategy.clone(), key.clone())) {
            left.push(format!(
                "{} (an order for it is still open at the broker)",
                key.trim()
            ));
            continue;
        }
        let leg = Leg::new(p.instrument.clone(), -p.quantity)
            .map_err(|e| JobError::Failed(e.to_string()))?;
        let seq = orders::next_sequence(
            conn,
            Intent::Flatten,
            &p.strategy,
            ctx.as_of,
            ctx.quote_time,
        )?;
        let id = ClientOrderId::new(
            Intent::Flatten,
            &p.strategy,
            ctx.as_of,
            ctx.quote_time.time(),
            seq,
        )
        .map_err(|e| JobError::Failed(e.to_string()))?;
        let order = Order::new_checked(id, vec![leg], OrderType::Market)
            .map_err(|e| JobError::Failed(e.to_string()))?;
        orders::write_decision(
            conn,
            ctx.as_of,
            ctx.quote_time,
            &p.strategy,
            p.instrument.underlying(),
            &order.reference(),
            true,
            "flatten",
            Some(why),
            None,
            Price::ZERO,
            Intent::Flatten,
            ctx.run_id,
        )?;
        let placed = router.place(approve_exit(order).map_err(JobError::Failed)?)?;
        written += 3 + 2 * placed.fills.len() as u64;
        match placed.status {
            OrderStatus::Filled => closed += 1,
            _ => left.push(format!(
                "{} ({})",
                key.trim(),
                placed.reason.unwrap_or_else(|| placed.status.code().into())
            )),
        }
    }
    Ok(Closed {
        closed,
        written,
        left,
    })
}
