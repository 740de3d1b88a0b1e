//! The risk gate between strategies and the broker: a pure function from a proposal
//! and the account's state to `Approved` or `Refused { rule, reason }` (barter-rs's
//! RiskApproved / RiskRefused). Only an approved proposal reaches the broker; every
//! decision carries the rule that decided it and a reason a trader can read, with the
//! numbers.
//!
//! Rules, in the order they are checked: kill switch, event blackout, daily loss cap,
//! volatility kill switch (underlying moved more than `vol_move_multiple` × its
//! expected move; VIX up more than `vix_jump_points`), max loss per trade (defined-risk
//! structures), max open positions per strategy and per underlying, buying power.
//!
//! Approval is a type: [`RiskApproved`] can only be made here, and `Broker::submit`
//! takes nothing else. Exits, expiry settlements and `flatten` are approved explicitly
//! ([`approve_exit`]) with the rule that closes them, recorded like any decision.

use super::Order;
use crate::model::Price;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// Largest loss a defined-risk trade may carry, dollars.
    pub max_loss_per_trade: f64,
    /// New entries stop once today's realized loss reaches this, dollars.
    pub daily_loss_cap: f64,
    pub max_open_per_strategy: u32,
    pub max_open_per_underlying: u32,
    /// The configuration's kill switch (the file data/KILL and `optdesk kill on` are
    /// the others): halts new entries.
    pub kill_switch: bool,
    /// While any kill switch is on, `select_trades` also closes every open position
    /// (through the configured broker) instead of only halting entries.
    pub kill_flattens: bool,
    /// Halt entries on an underlying that moved more than this × its expected move.
    pub vol_move_multiple: f64,
    /// Halt all entries when VIX rose more than this many points since the last session.
    pub vix_jump_points: f64,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            max_loss_per_trade: 5_000.0,
            daily_loss_cap: 2_500.0,
            max_open_per_strategy: 10,
            max_open_per_underlying: 4,
            kill_switch: false,
            kill_flattens: false,
            vol_move_multiple: 1.25,
            vix_jump_points: 3.0,
        }
    }
}

/// A strategy's proposal: the order and the numbers that justify and bound it.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub strategy: String,
    pub underlying: String,
    pub order: Order,
    /// Maximum loss for defined-risk structures; `None` for undefined risk (naked).
    pub max_loss: Option<Price>,
    /// Margin or collateral the position holds.
    pub requirement: Price,
    /// The premium the entry is expected to move at the prices it was proposed on: +
    /// received (a credit), − paid (a debit). A debit needs buying power too.
    pub cash: Price,
    /// The numbers behind the signal (IV, HV, edge, Z-score, delta, credit, ...).
    pub numbers: Vec<(String, f64)>,
}

/// What the gate knows about the account and the market on the day.
#[derive(Debug, Clone, Default)]
pub struct RiskState {
    pub as_of: Option<NaiveDate>,
    /// The kill file exists or `optdesk kill on` was given.
    pub kill_file: bool,
    pub blackout_dates: BTreeSet<NaiveDate>,
    /// Realized P&L of the latest complete session (negative = loss): positions
    /// closed on the previous session, as a morning decision knows them.
    pub realized_pnl_today: Price,
    pub open_by_strategy: HashMap<String, u32>,
    pub open_by_underlying: HashMap<String, u32>,
    pub buying_power: Price,
    /// Per underlying: (absolute move since the last close, expected move), dollars.
    pub moves: HashMap<String, (f64, f64)>,
    /// VIX change since the last session, points.
    pub vix_change: Option<f64>,
}

impl RiskState {
    /// Count a proposal that was filled today as an open trade: its requirement taken
    /// from buying power, one more open trade for its strategy and its underlying.
    pub fn count_opened(&mut self, p: &Proposal) {
        self.buying_power = self.buying_power - p.requirement;
        *self.open_by_strategy.entry(p.strategy.clone()).or_default() += 1;
        *self
            .open_by_underlying
            .entry(p.underlying.clone())
            .or_default() += 1;
    }
}

/// Something the risk gate approved (barter-rs's `RiskApproved<T>`). Only this module
/// can make one, so an order that skipped the gate cannot reach a broker.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskApproved<T>(T);

impl<T> RiskApproved<T> {
    pub fn inner(&self) -> &T {
        &self.0
    }
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl RiskApproved<Proposal> {
    /// The approved proposal's order.
    pub fn order(&self) -> RiskApproved<Order> {
        RiskApproved(self.0.order.clone())
    }
}

/// Approve an order that closes: a strategy's exit, an expiry settlement, a flatten.
/// The caller records its rule and reason in `risk_decisions`. An entry is refused: new
/// risk goes through [`evaluate`].
pub fn approve_exit(order: Order) -> Result<RiskApproved<Order>, String> {
    if order.id.intent == super::Intent::Entry {
        return Err(format!(
            "{} is an entry: only the risk gate's evaluate() approves new risk",
            order.id
        ));
    }
    Ok(RiskApproved(order))
}

/// An order intent the store recorded as approved (its `risk_decisions` row is
/// committed), resumed after a crash to be completed, never re-decided. Only the order
/// router uses it.
pub(crate) fn resume_recorded(order: Order) -> RiskApproved<Order> {
    RiskApproved(order)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Approved(RiskApproved<Proposal>),
    Refused {
        proposal: Proposal,
        rule: &'static str,
        reason: String,
    },
}

impl Decision {
    pub fn rule(&self) -> &'static str {
        match self {
            Decision::Approved(_) => "all rules passed",
            Decision::Refused { rule, .. } => rule,
        }
    }
}

/// Decide one proposal. Pure: the same proposal and state give the same decision.
pub fn evaluate(cfg: &RiskConfig, state: &RiskState, p: Proposal) -> Decision {
    let refuse = |p: Proposal, rule: &'static str, reason: String| Decision::Refused {
        proposal: p,
        rule,
        reason,
    };
    if cfg.kill_switch || state.kill_file {
        let why = if cfg.kill_switch {
            "risk.kill_switch = true in the configuration"
        } else {
            "the kill switch is on (data/KILL)"
        };
        return refuse(p, "kill_switch", format!("new entries halted: {why}"));
    }
    if let Some(d) = state.as_of.filter(|d| state.blackout_dates.contains(d)) {
        return refuse(
            p,
            "event_blackout",
            format!("{d} is an event day (FOMC or CPI): no new entries"),
        );
    }
    let loss_today = -state.realized_pnl_today.to_f64();
    if loss_today >= cfg.daily_loss_cap {
        return refuse(
            p,
            "daily_loss_cap",
            format!(
                "today's realized loss {loss_today:.2} has reached the daily cap {:.2}",
                cfg.daily_loss_cap
            ),
        );
    }
    if let Some(jump) = state.vix_change.filter(|j| *j > cfg.vix_jump_points) {
        return refuse(
            p,
            "vix_jump",
            format!(
                "VIX rose {jump:.2} points since the last session (limit {:.2})",
                cfg.vix_jump_points
            ),
        );
    }
    if let Some(&(moved, expected)) = state.moves.get(&p.underlying) {
        if expected > 0.0 && moved > cfg.vol_move_multiple * expected {
            return refuse(
                p.clone(),
                "volatility_kill_switch",
                format!(
                    "{} moved {moved:.2}, more than {:.2} × its expected move {expected:.2} = {:.2}",
                    p.underlying,
                    cfg.vol_move_multiple,
                    cfg.vol_move_multiple * expected
                ),
            );
        }
    }
    if let Some(loss) = p.max_loss {
        if loss.to_f64() > cfg.max_loss_per_trade {
            return refuse(
                p.clone(),
                "max_loss_per_trade",
                format!(
                    "max loss {loss} exceeds the per-trade limit {:.2}",
                    cfg.max_loss_per_trade
                ),
            );
        }
    }
    let open_s = state
        .open_by_strategy
        .get(&p.strategy)
        .copied()
        .unwrap_or(0);
    if open_s >= cfg.max_open_per_strategy {
        return refuse(
            p.clone(),
            "max_open_per_strategy",
            format!(
                "{} already has {open_s} open positions (limit {})",
                p.strategy, cfg.max_open_per_strategy
            ),
        );
    }
    let open_u = state
        .open_by_underlying
        .get(&p.underlying)
        .copied()
        .unwrap_or(0);
    if open_u >= cfg.max_open_per_underlying {
        return refuse(
            p.clone(),
            "max_open_per_underlying",
            format!(
                "{} already has {open_u} open positions (limit {})",
                p.underlying, cfg.max_open_per_underlying
            ),
        );
    }
    let debit = (-p.cash).max(Price::ZERO);
    if p.requirement + debit > state.buying_power {
        let needs = if debit == Price::ZERO {
            format!("requires {} of buying power", p.requirement)
        } else {
            format!(
                "requires {} of buying power (margin {} + premium paid {debit})",
                p.requirement + debit,
                p.requirement
            )
        };
        return refuse(
            p.clone(),
            "buying_power",
            format!("{needs}, the account has {}", state.buying_power),
        );
    }
    Decision::Approved(RiskApproved(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(max_loss: Option<f64>, requirement: f64) -> Proposal {
        Proposal {
            strategy: "call_premium".into(),
            underlying: "SPY".into(),
            order: Order {
                id: crate::trading::ClientOrderId::new(
                    crate::trading::Intent::Entry,
                    "call_premium",
                    NaiveDate::from_ymd_opt(2025, 3, 14).unwrap(),
                    chrono::NaiveTime::from_hms_opt(9, 35, 0).unwrap(),
                    0,
                )
                .unwrap(),
                legs: vec![],
                order_type: crate::trading::OrderType::Market,
            },
            max_loss: max_loss.map(Price::from_f64),
            requirement: Price::from_f64(requirement),
            cash: Price::ZERO,
            numbers: vec![],
        }
    }

    fn state() -> RiskState {
        RiskState {
            as_of: NaiveDate::from_ymd_opt(2025, 3, 14),
            buying_power: Price::from_f64(10_000.0),
            ..RiskState::default()
        }
    }

    fn rule(d: &Decision) -> &'static str {
        d.rule()
    }

    #[test]
    fn approves_just_under_and_refuses_just_over_each_limit() {
        let cfg = RiskConfig::default();
        // Max loss per trade: 5,000.
        assert!(matches!(
            evaluate(&cfg, &state(), proposal(Some(5_000.0), 1.0)),
            Decision::Approved(_)
        ));
        assert_eq!(
            rule(&evaluate(&cfg, &state(), proposal(Some(5_000.01), 1.0))),
            "max_loss_per_trade"
        );
        // Buying power: 10,000.
        assert!(matches!(
            evaluate(&cfg, &state(), proposal(None, 10_000.0)),
            Decision::Approved(_)
        ));
        let d = evaluate(&cfg, &state(), proposal(None, 10_000.01));
        assert_eq!(rule(&d), "buying_power");
        if let Decision::Refused { reason, .. } = d {
            assert_eq!(
                reason,
                "requires 10000.01 of buying power, the account has 10000.00"
            );
        }
        // Daily loss cap: 2,500.
        let mut s = state();
        s.realized_pnl_today = Price::from_f64(-2_499.99);
        assert!(matches!(
            evaluate(&cfg, &s, proposal(None, 1.0)),
            Decision::Approved(_)
        ));
        s.realized_pnl_today = Price::from_f64(-2_500.0);
        assert_eq!(
            rule(&evaluate(&cfg, &s, proposal(None, 1.0))),
            "daily_loss_cap"
        );
        // Open positions: per strategy 10, per underlying 4.
        let mut s = state();
        s.open_by_strategy.insert("call_premium".into(), 9);
        s.open_by_underlying.insert("SPY".into(), 3);
        assert!(matches!(
            evaluate(&cfg, &s, proposal(None, 1.0)),
            Decision::Approved(_)
        ));
        s.open_by_underlying.insert("SPY".into(), 4);
        assert_eq!(
            rule(&evaluate(&cfg, &s, proposal(None, 1.0))),
            "max_open_per_underlying"
        );
        s.open_by_strategy.insert("call_premium".into(), 10);
        assert_eq!(
            rule(&evaluate(&cfg, &s, proposal(None, 1.0))),
            "max_open_per_strategy"
        );
        // Volatility kill switch: 1.25 × expected move of 8 = 10.
        let mut s = state();
        s.moves.insert("SPY".into(), (10.0, 8.0));
        assert!(matches!(
            evaluate(&cfg, &s, proposal(None, 1.0)),
            Decision::Approved(_)
        ));
        s.moves.insert("SPY".into(), (10.01, 8.0));
        assert_eq!(
            rule(&evaluate(&cfg, &s, proposal(None, 1.0))),
            "volatility_kill_switch"
        );
        // VIX up more than 3 points.
        let mut s = state();
        s.vix_change = Some(3.0);
        assert!(matches!(
            evaluate(&cfg, &s, proposal(None, 1.0)),
            Decision::Approved(_)
        ));
        s.vix_change = Some(3.01);
        assert_eq!(rule(&evaluate(&cfg, &s, proposal(None, 1.0))), "vix_jump");
    }

    #[test]
    fn a_debit_needs_buying_power_as_margin_does() {
        let cfg = RiskConfig::default();
        // 4,000 of margin and 6,000 paid fit 10,000 exactly; a cent more does not.
        let mut p = proposal(None, 4_000.0);
        p.cash = Price::from_f64(-6_000.0);
        assert!(matches!(
            evaluate(&cfg, &state(), p.clone()),
            Decision::Approved(_)
        ));
        p.cash = Price::from_f64(-6_000.01);
        let d = evaluate(&cfg, &state(), p);
        assert_eq!(rule(&d), "buying_power");
        if let Decision::Refused { reason, .. } = d {
            assert_eq!(
                reason,
                "requires 10000.01 of buying power (margin 4000.00 + premium paid 6000.01), the account has 10000.00"
            );
        }
    }

    #[test]
    fn only_closes_are_approved_outside_the_gate() {
        let entry = proposal(None, 1.0).order;
        let e = approve_exit(entry.clone()).unwrap_err();
        assert!(e.contains("is an entry"), "{e}");
        let mut exit = entry;
        exit.id.intent = crate::trading::Intent::Exit;
        assert!(approve_exit(exit).is_ok());
    }

    #[test]
    fn switches_and_blackouts_refuse_with_the_reason() {
        let mut cfg = RiskConfig::default();
        let mut s = state();
        s.kill_file = true;
        let d = evaluate(&cfg, &s, proposal(None, 1.0));
        assert_eq!(rule(&d), "kill_switch");
        s.kill_file = false;
        cfg.kill_switch = true;
        assert_eq!(
            rule(&evaluate(&cfg, &s, proposal(None, 1.0))),
            "kill_switch"
        );
        cfg.kill_switch = false;
        s.blackout_dates
            .insert(NaiveDate::from_ymd_opt(2025, 3, 14).unwrap());
        let d = evaluate(&cfg, &s, proposal(None, 1.0));
        assert_eq!(rule(&d), "event_blackout");
        if let Decision::Refused { reason, .. } = d {
            assert!(reason.contains("2025-03-14 is an event day"));
        }
    }
}
