//! `put_write` (seed: Market Watch bot A, "PUT-Lite Intraday Premium Harvester"):
//! 0–1 DTE far out-of-the-money bull put spreads on SPY (SPX too) while implied vol
//! exceeds realized, entered between 10:30 and 13:30 New York (its risk profile's
//! window). The short put is at |delta| ≤ `max_short_delta` or beyond `em_multiple` ×
//! the expected move to expiry (spot × ATM IV of the expiry × √t); the long put
//! `wing_width` points below. Only when the 30-day ATM IV exceeds the 10-day realized
//! vol by more than `min_iv_over_rv_pts`. Priced at the natural (short at the bid,
//! long at the ask); max loss (width − credit) × multiplier × contracts, which must fit
//! the risk profile's `max_loss_per_trade`. Exits: 50% of the credit, or the
//! auto-close 30 minutes before the close.

use super::intraday::{self, validate_pct, validate_positive};
use super::{ChainRow, DayState, ExitSignal, Outcome, Strategy};
use crate::model::{OptionRight, Price};
use crate::trading::margin::{self, MarginLeg};
use crate::trading::risk::{Proposal, RiskProfile};
use crate::trading::{ClientOrderId, Intent, Leg, Order, OrderType};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub tickers: Vec<String>,
    /// The expiry nearest `min_dte` calendar days within [min_dte, max_dte] (0 = today).
    pub min_dte: i64,
    pub max_dte: i64,
    /// Points between the short and the long put.
    pub wing_width: f64,
    /// A short put qualifies at |delta| ≤ this (0.10 = 10 delta) ...
    pub max_short_delta: f64,
    /// ... or with its strike beyond this × the expected move below spot.
    pub em_multiple: f64,
    /// The 30-day ATM IV must exceed the 10-day realized vol by more than this many vol
    /// points (0 = IV above RV).
    pub min_iv_over_rv_pts: f64,
    /// Net credit per share at least this, dollars.
    pub min_credit: f64,
    pub contracts: i64,
    pub max_open_per_ticker: u32,
    /// Close once the P&L reaches this percent of the credit.
    pub profit_take_pct: f64,
    /// Close once the loss reaches this percent of the credit (0 = no stop).
    pub stop_loss_pct: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tickers: vec!["SPY".into()],
            min_dte: 0,
            max_dte: 1,
            wing_width: 1.0,
            max_short_delta: 0.10,
            em_multiple: 1.0,
            min_iv_over_rv_pts: 0.0,
            min_credit: 0.05,
            contracts: 1,
            max_open_per_ticker: 1,
            profit_take_pct: 50.0,
            stop_loss_pct: 0.0,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.tickers.is_empty() {
            return Err("tickers: at least one ticker".into());
        }
        intraday::validate_short_dte(self.min_dte, self.max_dte)?;
        validate_positive("wing_width", self.wing_width)?;
        if !(self.max_short_delta > 0.0 && self.max_short_delta < 0.5) {
            return Err(format!(
                "max_short_delta = {}: expected an absolute delta above 0 and below 0.5 (0.10 = 10 delta)",
                self.max_short_delta
            ));
        }
        validate_positive("em_multiple", self.em_multiple)?;
        if !(0.0..=50.0).contains(&self.min_iv_over_rv_pts) {
            return Err(format!(
                "min_iv_over_rv_pts = {}: expected vol points from 0 to 50 (3 = 3 points)",
                self.min_iv_over_rv_pts
            ));
        }
        if !(self.min_credit.is_finite() && self.min_credit >= 0.0) {
            return Err(format!(
                "min_credit = {}: expected dollars, not negative",
                self.min_credit
            ));
        }
        if !(1..=100).contains(&self.contracts) {
            return Err(format!("contracts = {}: expected 1 to 100", self.contracts));
        }
        if self.max_open_per_ticker == 0 {
            return Err("max_open_per_ticker = 0: expected at least 1".into());
        }
        validate_pct("profit_take_pct", self.profit_take_pct)?;
        if self.stop_loss_pct != 0.0 {
            validate_positive("stop_loss_pct", self.stop_loss_pct)?;
        }
        Ok(())
    }
}

pub struct PutWrite {
    pub config: Config,
    pub risk: RiskProfile,
}

/// A put vertical sold as one order: short `short`, long `long`, `n` times, at the
/// natural credit; its margin is the width (`margin::requirement` recognises it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn credit_spread_legs(
    legs: &[(&ChainRow, i64)],
) -> Result<(Vec<Leg>, Vec<MarginLeg>), String> {
    let mut out = Vec::new();
    let mut marked = Vec::new();
    for (r, q) in legs {
        out.push(Leg::new(r.instrument.clone(), *q).map_err(|e| e.to_string())?);
        marked.push(MarginLeg {
            instrument: r.instrument.clone(),
            quantity: *q,
            mark: Price::from_f64(if *q < 0 { r.bid } else { r.ask }),
        });
    }
    Ok((out, marked))
}

impl PutWrite {
    fn one(&self, day: &DayState, ticker: &str, seq: usize) -> Result<Proposal, String> {
        let c = &self.config;
        let (u, chain) = intraday::ready(day, self.name(), ticker, c.max_open_per_ticker)?;
        let h = day.session.history.get(ticker).copied().unwrap_or_default();
        let (Some(iv30), Some(rv10)) = (h.atm_iv30, h.hv10) else {
            return Err("no 30-day ATM IV or 10-day realized vol yet".into());
        };
        if iv30 <= rv10 + c.min_iv_over_rv_pts / 100.0 {
            return Err(format!(
                "30-day ATM IV {:.2}% is not above 10-day realized {:.2}% + {} pts",
                iv30 * 100.0,
                rv10 * 100.0,
                c.min_iv_over_rv_pts
            ));
        }
        let puts = || chain.iter().filter(|r| r.right == OptionRight::Put);
        let expiry = day
            .choose_expiry(ticker, puts(), (c.min_dte, c.min_dte, c.max_dte))
            .ok_or_else(|| {
                format!(
                    "no expiry {}–{} days out (no 0DTE listing that day?)",
                    c.min_dte, c.max_dte
                )
            })?;
        let slice: Vec<&ChainRow> = puts().filter(|r| r.expiry == expiry).collect();
        let t_years = slice.first().map_or(0.0, |r| r.t_years);
        let atm = intraday::atm_iv(chain.iter().filter(|r| r.expiry == expiry), u.spot)
            .ok_or_else(|| format!("no IV at the money for {expiry}"))?;
        let em = intraday::expected_move(u.spot, atm, t_years);
        let beyond = u.spot - c.em_multiple * em;
        // Qualifying short puts, nearest the money first (the most credit).
        let mut shorts: Vec<&&ChainRow> = slice
            .iter()
            .filter(|r| {
                r.strike < u.spot
                    && (r.delta.is_some_and(|d| d.abs() <= c.max_short_delta) || r.strike <= beyond)
            })
            .collect();
        shorts.sort_by(|a, b| b.strike.total_cmp(&a.strike));
        let Some(short) = shorts.first() else {
            return Err(format!(
                "no put expiring {expiry} at |delta| ≤ {} or below {beyond:.2} (spot {:.2} − {} × expected move {em:.2})",
                c.max_short_delta, u.spot, c.em_multiple
            ));
        };
        let want = short.strike - c.wing_width;
        let Some(long) = slice.iter().find(|r| (r.strike - want).abs() < 1e-6) else {
            return Err(format!(
                "no {want} put for the {}-point wing below the {} short put",
                c.wing_width, short.strike
            ));
        };
        let credit = Price::from_f64(short.bid) - Price::from_f64(long.ask);
        if credit.to_f64() < c.min_credit {
            return Err(format!(
                "{}/{} put spread: credit {credit} below {:.2}",
                short.strike, long.strike, c.min_credit
            ));
        }
        let mult = short.multiplier();
        let n = c.contracts;
        let width = Price::from_f64(short.strike - long.strike);
        let max_loss = (width - credit).times(mult * n);
        if max_loss.to_f64() > self.risk.max_loss_per_trade {
            return Err(format!(
                "{}/{} put spread: max loss ({width} − {credit}) × {} = {max_loss} exceeds the per-trade limit {:.2}",
                short.strike, long.strike, mult * n, self.risk.max_loss_per_trade
            ));
        }
        let (legs, marked) = credit_spread_legs(&[(short, -n), (long, n)])?;
        let spot = Price::from_f64(u.spot);
        let requirement = margin::requirement(
            &marked,
            &|_| Some(spot),
            self.margin_policy(),
            &mut Default::default(),
        )
        .requirement;
        let id = ClientOrderId::new(
            Intent::Entry,
            self.name(),
            day.as_of,
            day.slot(),
            seq as u32,
        )
        .map_err(|e| e.to_string())?;
        Ok(Proposal {
            strategy: self.name().into(),
            underlying: ticker.to_string(),
            order: Order {
                id,
                legs,
                order_type: OrderType::Limit(-credit),
            },
            max_loss: Some(max_loss),
            requirement,
            cash: credit.times(mult * n),
            numbers: vec![
                ("atm_iv_30d".into(), iv30),
                ("hv_10d".into(), rv10),
                ("expected_move".into(), em),
                ("short_strike".into(), short.strike),
                ("long_strike".into(), long.strike),
                ("short_delta".into(), short.delta.unwrap_or(f64::NAN)),
                ("credit".into(), credit.to_f64() * (mult * n) as f64),
                ("max_loss".into(), max_loss.to_f64()),
                ("contracts".into(), n as f64),
            ],
        })
    }
}

impl Strategy for PutWrite {
    fn name(&self) -> &'static str {
        "put_write"
    }

    fn cadence(&self) -> super::Cadence {
        super::Cadence::Intraday
    }

    fn symbols(&self) -> Vec<(&'static str, Vec<String>)> {
        vec![("params.tickers", self.config.tickers.clone())]
    }

    fn risk_profile(&self) -> Option<&RiskProfile> {
        Some(&self.risk)
    }

    fn propose(&self, day: &DayState) -> Outcome {
        intraday::propose_each(&self.config.tickers, |t, seq| self.one(day, t, seq))
    }

    fn exits(&self, day: &DayState) -> Vec<ExitSignal> {
        intraday::credit_exits(
            day,
            self.name(),
            self.config.profit_take_pct,
            self.config.stop_loss_pct,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    // SPY at 500 at 11:00 with 5 hours left (t = 5 / (24 × 365)), 0DTE puts every
    // point from 480 to 520 at a flat 20% IV; history: RV10 12%, IV30 15%.
    const T: f64 = 5.0 / (24.0 * 365.0);

    fn day_at(hh: u32, mm: u32, iv: f64) -> DayState {
        let chain = testkit::zero_dte_chain("SPY", 500.0, (480.0, 520.0, 1.0), iv, T);
        testkit::intraday_day(hh, mm, "SPY", 500.0, chain, (0.12, 0.15))
    }

    fn strategy(max_loss: f64) -> PutWrite {
        PutWrite {
            config: Config::default(),
            risk: RiskProfile {
                max_loss_per_trade: max_loss,
                ..RiskProfile::default()
            },
        }
    }

    #[test]
    fn sells_the_nearest_far_put_with_a_one_point_wing() {
        let d = day_at(11, 0, 0.20);
        let out = strategy(100.0).propose(&d);
        assert_eq!(out.proposals.len(), 1, "{:?}", out.skips);
        let p = &out.proposals[0];
        let num = |k: &str| p.numbers.iter().find(|(n, _)| n == k).unwrap().1;
        let short = num("short_strike");
        // Expected move: 500 × 0.20 × √T ≈ 2.39; the short put is the highest strike
        // at ≤ 10 delta or below 497.61.
        let em = 500.0 * 0.20 * T.sqrt();
        assert!((num("expected_move") - em).abs() < 1e-9);
        let chain = &d.chains["SPY"];
        let delta = |k: f64| {
            chain
                .iter()
                .find(|r| r.right == OptionRight::Put && r.strike == k)
                .unwrap()
                .delta
                .unwrap()
                .abs()
        };
        assert!(delta(short) <= 0.10 || short <= 500.0 - em);
        assert!(delta(short + 1.0) > 0.10 && short + 1.0 > 500.0 - em);
        assert_eq!(num("long_strike"), short - 1.0);
        assert_eq!(p.order.legs[0].quantity, -1);
        assert_eq!(p.order.legs[1].quantity, 1);
        // Max loss = (1 − credit) × 100, defined, and the requirement is the width.
        let credit = -p.order.order_type.limit().unwrap();
        assert_eq!(p.max_loss, Some((Price::from_f64(1.0) - credit).times(100)));
        assert_eq!(p.requirement, Price::from_f64(100.0));
    }

    #[test]
    fn a_one_point_spy_spread_does_not_fit_a_fifty_dollar_cap_unless_the_credit_is_half_the_width()
    {
        // At $50 the far put's credit is cents: (1 − c) × 100 > 50; the pass says so.
        let out = strategy(50.0).propose(&day_at(11, 0, 0.20));
        assert!(out.proposals.is_empty());
        assert!(
            out.skips[0].1.contains("exceeds the per-trade limit 50.00"),
            "{:?}",
            out.skips
        );
    }

    #[test]
    fn only_when_implied_exceeds_realized_and_before_the_auto_close() {
        let s = strategy(100.0);
        let mut d = day_at(11, 0, 0.20);
        // IV30 at RV10 exactly: no trade; a hair above: a trade.
        d.session.history.get_mut("SPY").unwrap().atm_iv30 = Some(0.12);
        let out = s.propose(&d);
        assert!(out.skips[0].1.contains("is not above 10-day realized"));
        d.session.history.get_mut("SPY").unwrap().atm_iv30 = Some(0.1201);
        assert_eq!(s.propose(&d).proposals.len(), 1);
        // 15:29 still enters; 15:30 is the auto-close.
        assert_eq!(s.propose(&day_at(15, 29, 0.20)).proposals.len(), 1);
        let out = s.propose(&day_at(15, 30, 0.20));
        assert!(
            out.skips[0].1.contains("auto-close 15:30"),
            "{:?}",
            out.skips
        );
        // One open spread: no second.
        let mut d = day_at(11, 0, 0.20);
        d.open_trades.push(testkit::open_trade(
            "put_write",
            "put_write:2025-03-14T1030:0",
            testkit::put_vertical(1),
        ));
        assert!(s.propose(&d).skips[0].1.contains("1 open (at most 1)"));
    }

    fn open_spread(credit: f64, mark_short: f64, mark_long: f64) -> super::super::OpenTrade {
        let mut t = testkit::open_trade(
            "put_write",
            "put_write:2025-03-14T1030:0",
            testkit::put_vertical(1),
        );
        t.legs[0].mark = Price::from_f64(mark_short);
        t.legs[1].mark = Price::from_f64(mark_long);
        t.entry_cash = Some(Price::from_f64(credit));
        t
    }

    #[test]
    fn exits_at_half_the_credit_and_at_the_auto_close() {
        let s = strategy(100.0);
        // Credit 40; cost to close 0.25 − 0.05 = 0.20 → 20: P&L 20 = 50%: take it.
        let mut d = day_at(12, 0, 0.20);
        d.open_trades.push(open_spread(40.0, 0.25, 0.05));
        let x = s.exits(&d);
        assert_eq!(x.len(), 1);
        assert_eq!(x[0].rule, "profit_take");
        // Cost 0.21 → P&L 19 < 20: hold.
        d.open_trades[0] = open_spread(40.0, 0.26, 0.05);
        assert!(s.exits(&d).is_empty());
        // 15:30: the auto-close, whatever the P&L.
        let mut d = day_at(15, 30, 0.20);
        d.open_trades.push(open_spread(40.0, 0.26, 0.05));
        let x = s.exits(&d);
        assert_eq!(x[0].rule, "auto_close");
        // Another strategy's trade is not put_write's to close.
        let mut d = day_at(15, 30, 0.20);
        d.open_trades.push(testkit::open_trade(
            "call_premium",
            "c",
            testkit::naked_call(1),
        ));
        assert!(s.exits(&d).is_empty());
    }

    #[test]
    fn bad_numbers_are_refused_naming_the_key() {
        type Set = fn(&mut Config);
        let cases: [(Set, &str); 6] = [
            (|c| c.max_dte = 9, "min_dte = 0, max_dte = 9"),
            (|c| c.wing_width = 0.0, "wing_width = 0"),
            (|c| c.max_short_delta = 10.0, "max_short_delta = 10"),
            (
                |c| c.profit_take_pct = 0.5,
                "profit_take_pct = 0.5: looks like a fraction",
            ),
            (|c| c.contracts = 0, "contracts = 0"),
            (|c| c.min_credit = f64::NAN, "min_credit = NaN"),
        ];
        super::super::assert_each_refused(&cases, Config::validate);
    }
}
