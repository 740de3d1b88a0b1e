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
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
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

/// A strategy's own risk profile (`[risk]` in `jobs/strategies/<name>.toml`), applied
/// by the gate on top of the desk's limits (`jobs/select_trades.toml [risk]`). The
/// defaults are the Market Watch bots' shared safety systems (seed bot A–C, "X. Risk
/// Management"): $50 max loss per trade, $150 daily loss cap, trade window 10:30–13:30,
/// halt when the range exceeds 1.25× the expected move or VIX rises more than 3 points,
/// all spreads defined-risk; the consecutive-loss pause (3 losses → 30 minutes) is the
/// futures scalper's circuit breaker; earnings days of single names are blacked out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskProfile {
    /// Largest loss a trade's structure may carry, dollars (the lower of this and the
    /// desk's `max_loss_per_trade` applies).
    pub max_loss_per_trade: f64,
    /// Entries stop once the strategy's loss today, realized plus open, reaches this.
    pub daily_loss_cap: f64,
    /// A proposal with an option leg expiring within a day (0–1 DTE) must carry a
    /// defined maximum loss.
    pub defined_risk_only: bool,
    /// Entries only from the first to the second time, New York (`["10:30", "13:30"]`,
    /// both included); empty: the whole session.
    pub entry_window: Vec<String>,
    /// Halt entries on an underlying whose range today (high − low of the minute
    /// bars) exceeds this × its one-day expected move.
    pub vol_move_multiple: f64,
    /// Halt entries when VIX is more than this many points above the last close.
    pub vix_jump_points: f64,
    /// After this many losing trades in a row today, pause entries (0 = off).
    pub max_consecutive_losses: u32,
    /// For this many minutes after the loss that completed the streak.
    pub pause_minutes: i64,
    /// No entries on a single name's earnings day (`day.session.earnings`).
    pub earnings_blackout: bool,
}

impl Default for RiskProfile {
    fn default() -> Self {
        RiskProfile {
            max_loss_per_trade: 50.0,
            daily_loss_cap: 150.0,
            defined_risk_only: true,
            entry_window: vec!["10:30".into(), "13:30".into()],
            vol_move_multiple: 1.25,
            vix_jump_points: 3.0,
            max_consecutive_losses: 3,
            pause_minutes: 30,
            earnings_blackout: true,
        }
    }
}

fn hhmm(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

impl RiskProfile {
    /// The entry window, parsed (validated at load).
    pub fn window(&self) -> Option<(NaiveTime, NaiveTime)> {
        match self.entry_window.as_slice() {
            [a, b] => Some((hhmm(a)?, hhmm(b)?)),
            _ => None,
        }
    }

    /// Refuse values out of range, naming the key (`risk.` is prefixed by the loader).
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in [
            ("max_loss_per_trade", self.max_loss_per_trade),
            ("daily_loss_cap", self.daily_loss_cap),
            ("vol_move_multiple", self.vol_move_multiple),
            ("vix_jump_points", self.vix_jump_points),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{k} = {v}: expected a positive, finite number"));
            }
        }
        if !(0..=390).contains(&self.pause_minutes) {
            return Err(format!(
                "pause_minutes = {}: expected 0 to 390 minutes",
                self.pause_minutes
            ));
        }
        if !self.entry_window.is_empty() {
            let w = self.window().ok_or_else(|| {
                format!(
                    "entry_window = {:?}: expected two times [\"HH:MM\", \"HH:MM\"] (New York)",
                    self.entry_window
                )
            })?;
            if w.0 >= w.1 {
                return Err(format!(
                    "entry_window = {:?}: the window ends before it starts",
                    self.entry_window
                ));
            }
        }
        Ok(())
    }

    /// Refuse a profile looser than the desk's hard limits, naming both values.
    pub fn within(&self, desk: &RiskConfig) -> Result<(), String> {
        for (k, mine, hard) in [
            (
                "max_loss_per_trade",
                self.max_loss_per_trade,
                desk.max_loss_per_trade,
            ),
            ("daily_loss_cap", self.daily_loss_cap, desk.daily_loss_cap),
            (
                "vol_move_multiple",
                self.vol_move_multiple,
                desk.vol_move_multiple,
            ),
            (
                "vix_jump_points",
                self.vix_jump_points,
                desk.vix_jump_points,
            ),
        ] {
            if mine > hard {
                return Err(format!(
                    "{k} = {mine} is looser than the desk's hard limit risk.{k} = {hard} in select_trades.toml"
                ));
            }
        }
        Ok(())
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
    /// The snapshot's time (New York): the entry window and the loss pause.
    pub now: Option<NaiveDateTime>,
    /// Per strategy: today's P&L, realized (trades closed today) plus open (open
    /// trades marked at the snapshot against their entry). Negative = loss.
    pub pnl_today: HashMap<String, Price>,
    /// Per strategy: today's closed trades as (closing time, P&L), oldest first.
    pub closed_today: HashMap<String, Vec<(NaiveDateTime, Price)>>,
    /// Per underlying: (today's range high − low from the minute bars, one-day
    /// expected move), dollars.
    pub ranges: HashMap<String, (f64, f64)>,
    /// VIX at the snapshot minus its last close, points (from the session).
    pub vix_intraday_change: Option<f64>,
    /// Single names with earnings on the session's date.
    pub earnings_today: BTreeSet<String>,
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
    evaluate_with(cfg, None, state, p)
}

/// The losses at the end of a strategy's closed trades today, and when the last one
/// closed: the consecutive-loss streak.
pub fn loss_streak(closed: &[(NaiveDateTime, Price)]) -> (u32, Option<NaiveDateTime>) {
    let streak = closed
        .iter()
        .rev()
        .take_while(|(_, pnl)| *pnl < Price::ZERO)
        .count() as u32;
    (streak, closed.last().map(|(t, _)| *t))
}

/// The strategy's own rules (its [`RiskProfile`]), after the desk's kill switch and
/// event blackout: earnings blackout, entry window, the strategy's daily loss cap
/// (realized and open), the consecutive-loss pause, the intraday volatility kill
/// switch (range, VIX), defined risk for 0–1 DTE, its max loss per trade.
fn profile_refusal(
    r: &RiskProfile,
    state: &RiskState,
    p: &Proposal,
) -> Option<(&'static str, String)> {
    if r.earnings_blackout && state.earnings_today.contains(&p.underlying) {
        return Some((
            "earnings_blackout",
            format!(
                "{} reports earnings today{}: no new entries",
                p.underlying,
                state.as_of.map(|d| format!(" ({d})")).unwrap_or_default()
            ),
        ));
    }
    if let (Some((from, to)), Some(now)) = (r.window(), state.now) {
        if now.time() < from || now.time() > to {
            return Some((
                "entry_window",
                format!(
                    "{} is outside the entry window {}–{}",
                    now.format("%H:%M"),
                    from.format("%H:%M"),
                    to.format("%H:%M")
                ),
            ));
        }
    }
    let pnl = state
        .pnl_today
        .get(&p.strategy)
        .copied()
        .unwrap_or(Price::ZERO);
    if -pnl.to_f64() >= r.daily_loss_cap {
        return Some((
            "daily_loss_cap",
            format!(
                "{}'s loss today {} (realized and open) has reached its daily cap {:.2}: entries halted for the session",
                p.strategy,
                -pnl,
                r.daily_loss_cap
            ),
        ));
    }
    if r.max_consecutive_losses > 0 {
        let closed = state
            .closed_today
            .get(&p.strategy)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if let ((streak, Some(last)), Some(now)) = (loss_streak(closed), state.now) {
            let until = last + chrono::Duration::minutes(r.pause_minutes);
            if streak >= r.max_consecutive_losses && now < until {
                return Some((
                    "loss_pause",
                    format!(
                        "{streak} losing trades in a row, the last closed at {}: entries paused until {} ({} minutes)",
                        last.format("%H:%M"),
                        until.format("%H:%M"),
                        r.pause_minutes
                    ),
                ));
            }
        }
    }
    if let Some(&(range, expected)) = state.ranges.get(&p.underlying) {
        if expected > 0.0 && range > r.vol_move_multiple * expected {
            return Some((
                "volatility_kill_switch",
                format!(
                    "{}'s range today {range:.2} exceeds {:.2} × its expected move {expected:.2} = {:.2}: entries halted",
                    p.underlying,
                    r.vol_move_multiple,
                    r.vol_move_multiple * expected
                ),
            ));
        }
    }
    if let Some(jump) = state.vix_intraday_change.filter(|j| *j > r.vix_jump_points) {
        return Some((
            "vix_jump",
            format!(
                "VIX is {jump:.2} points above its last close (limit {:.2}): entries halted",
                r.vix_jump_points
            ),
        ));
    }
    if r.defined_risk_only && p.max_loss.is_none() {
        let short_dated = p.order.legs.iter().find(|l| {
            l.instrument.as_option().is_some_and(|o| {
                state
                    .as_of
                    .is_some_and(|d| (o.expiry() - d).num_days() <= 1)
            })
        });
        if let Some(l) = short_dated {
            return Some((
                "defined_risk_only",
                format!(
                    "{} expires within a day and the structure has no defined maximum loss",
                    l.instrument.key().trim()
                ),
            ));
        }
    }
    if let Some(loss) = p.max_loss.filter(|l| l.to_f64() > r.max_loss_per_trade) {
        return Some((
            "max_loss_per_trade",
            format!(
                "max loss {loss} exceeds {}'s per-trade limit {:.2}",
                p.strategy, r.max_loss_per_trade
            ),
        ));
    }
    None
}

/// Decide one proposal under the desk's limits and, when the strategy has one, its own
/// risk profile. Pure.
pub fn evaluate_with(
    cfg: &RiskConfig,
    profile: Option<&RiskProfile>,
    state: &RiskState,
    p: Proposal,
) -> Decision {
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
    if let Some((rule, reason)) = profile.and_then(|r| profile_refusal(r, state, &p)) {
        return refuse(p, rule, reason);
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

    fn at(hh: u32, mm: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2025, 3, 14)
            .unwrap()
            .and_hms_opt(hh, mm, 0)
            .unwrap()
    }

    /// A put_write spread proposal (max loss 45) at 11:00.
    fn bot(max_loss: Option<f64>) -> (Proposal, RiskState) {
        let mut p = proposal(max_loss, 100.0);
        p.strategy = "put_write".into();
        let mut s = state();
        s.now = Some(at(11, 0));
        (p, s)
    }

    fn decide(s: &RiskState, p: &Proposal) -> &'static str {
        evaluate_with(
            &RiskConfig::default(),
            Some(&RiskProfile::default()),
            s,
            p.clone(),
        )
        .rule()
    }

    #[test]
    fn the_profile_s_daily_cap_counts_realized_and_open_loss() {
        let (p, mut s) = bot(Some(45.0));
        assert_eq!(decide(&s, &p), "all rules passed");
        // 149.99 lost (100 realized, 49.99 open): still open; 150.00: halted.
        s.pnl_today
            .insert("put_write".into(), Price::from_f64(-149.99));
        assert_eq!(decide(&s, &p), "all rules passed");
        s.pnl_today
            .insert("put_write".into(), Price::from_f64(-150.0));
        let d = evaluate_with(
            &RiskConfig::default(),
            Some(&RiskProfile::default()),
            &s,
            p.clone(),
        );
        assert_eq!(d.rule(), "daily_loss_cap");
        if let Decision::Refused { reason, .. } = d {
            assert!(
                reason.contains(
                    "loss today 150.00 (realized and open) has reached its daily cap 150.00"
                ),
                "{reason}"
            );
        }
        // Another strategy's losses are not put_write's.
        s.pnl_today.remove("put_write");
        s.pnl_today
            .insert("iron_condor".into(), Price::from_f64(-1000.0));
        assert_eq!(decide(&s, &p), "all rules passed");
    }

    #[test]
    fn three_losses_in_a_row_pause_entries_for_thirty_minutes() {
        let (p, mut s) = bot(Some(45.0));
        let loss = Price::from_f64(-10.0);
        let win = Price::from_f64(10.0);
        // Two losses: no pause.
        s.closed_today.insert(
            "put_write".into(),
            vec![(at(10, 40), loss), (at(10, 50), loss)],
        );
        assert_eq!(decide(&s, &p), "all rules passed");
        // The third at 10:45: paused until 11:15; 11:14 refused, 11:15 free.
        s.closed_today.insert(
            "put_write".into(),
            vec![(at(10, 35), loss), (at(10, 40), loss), (at(10, 45), loss)],
        );
        s.now = Some(at(11, 14));
        let d = evaluate_with(
            &RiskConfig::default(),
            Some(&RiskProfile::default()),
            &s,
            p.clone(),
        );
        assert_eq!(d.rule(), "loss_pause");
        if let Decision::Refused { reason, .. } = d {
            assert!(reason.contains("3 losing trades in a row, the last closed at 10:45: entries paused until 11:15"), "{reason}");
        }
        s.now = Some(at(11, 15));
        assert_eq!(decide(&s, &p), "all rules passed");
        // A win in between breaks the streak.
        s.now = Some(at(11, 0));
        s.closed_today.insert(
            "put_write".into(),
            vec![(at(10, 35), loss), (at(10, 40), win), (at(10, 45), loss)],
        );
        assert_eq!(decide(&s, &p), "all rules passed");
        assert_eq!(
            loss_streak(&[(at(10, 0), win), (at(10, 1), loss)]),
            (1, Some(at(10, 1)))
        );
        // max_consecutive_losses = 0 turns it off.
        s.closed_today.insert(
            "put_write".into(),
            vec![(at(10, 35), loss), (at(10, 40), loss), (at(10, 45), loss)],
        );
        let off = RiskProfile {
            max_consecutive_losses: 0,
            ..RiskProfile::default()
        };
        assert!(matches!(
            evaluate_with(&RiskConfig::default(), Some(&off), &s, p.clone()),
            Decision::Approved(_)
        ));
    }

    #[test]
    fn the_window_the_vol_kill_switch_earnings_and_defined_risk() {
        let (p, mut s) = bot(Some(45.0));
        // Window 10:30–13:30, both ends included.
        for (h, m, ok) in [
            (10, 29, false),
            (10, 30, true),
            (13, 30, true),
            (13, 31, false),
        ] {
            s.now = Some(at(h, m));
            assert_eq!(decide(&s, &p) == "entry_window", !ok, "{h}:{m}");
        }
        s.now = Some(at(11, 0));
        // Range 10 against an expected move of 8: 1.25 × 8 = 10 is the limit.
        s.ranges.insert("SPY".into(), (10.0, 8.0));
        assert_eq!(decide(&s, &p), "all rules passed");
        s.ranges.insert("SPY".into(), (10.01, 8.0));
        assert_eq!(decide(&s, &p), "volatility_kill_switch");
        s.ranges.clear();
        s.vix_intraday_change = Some(3.0);
        assert_eq!(decide(&s, &p), "all rules passed");
        s.vix_intraday_change = Some(3.01);
        assert_eq!(decide(&s, &p), "vix_jump");
        s.vix_intraday_change = None;
        s.earnings_today.insert("SPY".into());
        assert_eq!(decide(&s, &p), "earnings_blackout");
        s.earnings_today.clear();
        // Max loss: 50 passes, 50.01 does not, though the desk allows 5,000.
        let (p50, _) = bot(Some(50.0));
        assert_eq!(decide(&s, &p50), "all rules passed");
        let (p, _) = bot(Some(50.01));
        assert_eq!(decide(&s, &p), "max_loss_per_trade");
        // An undefined-risk structure with a leg expiring within a day is refused; the
        // same with a month left is not this rule's.
        let (mut naked, _) = bot(None);
        let e = NaiveDate::from_ymd_opt(2025, 3, 15).unwrap();
        naked.order.legs = vec![crate::trading::Leg::new(
            crate::testkit::option_on("SPY", e, crate::model::OptionRight::Put, 90.0),
            -1,
        )
        .unwrap()];
        assert_eq!(decide(&s, &naked), "defined_risk_only");
        naked.order.legs = vec![crate::trading::Leg::new(
            crate::testkit::option("SPY", crate::model::OptionRight::Put, 90.0),
            -1,
        )
        .unwrap()];
        assert_eq!(decide(&s, &naked), "all rules passed");
        // Without a profile none of these apply (the desk's rules only).
        s.now = Some(at(9, 35));
        assert!(matches!(
            evaluate(&RiskConfig::default(), &s, p50),
            Decision::Approved(_)
        ));
    }

    #[test]
    fn a_profile_looser_than_the_desk_is_refused_naming_both_values() {
        let desk = RiskConfig::default();
        assert!(RiskProfile::default().within(&desk).is_ok());
        let loose = RiskProfile {
            daily_loss_cap: 2_500.01,
            ..RiskProfile::default()
        };
        let e = loose.within(&desk).unwrap_err();
        assert_eq!(
            e,
            "daily_loss_cap = 2500.01 is looser than the desk's hard limit risk.daily_loss_cap = 2500 in select_trades.toml"
        );
        let bad = RiskProfile {
            entry_window: vec!["13:30".into(), "10:30".into()],
            ..RiskProfile::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("ends before it starts"));
        let bad = RiskProfile {
            entry_window: vec!["10h30".into(), "13:30".into()],
            ..RiskProfile::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("entry_window"));
    }
}
