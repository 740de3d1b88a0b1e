//! `buy_write` (seed: Market Watch bot B, "Micro Buy-Write"): buy a small block of
//! shares and, in the same order, sell 0–1 DTE calls at |delta| ≈ 0.30 on 25–50% of
//! them (`overwrite_pct`), when the IV rank is at least `min_iv_rank` (IV high) and the
//! trend is neutral: the 5-session return within `trend_em_multiple` × one daily
//! expected move (30-day ATM IV × √(1/252)). Its risk is the shares: bounded by a stop
//! on the whole position (`stop_loss_usd`, the bots' $50 max loss unless set), which is
//! also what it declares as its max loss. Exits: the calls' premium captured to
//! `profit_take_pct` (the position closes with them), the stop, or the auto-close
//! before the close (the desk carries no intraday shares overnight).

use super::intraday::{self, validate_pct, validate_positive};
use super::{ChainRow, DayState, ExitSignal, Outcome, Strategy};
use crate::model::instrument::Instrument;
use crate::model::{OptionRight, Price};
use crate::trading::margin::{self, MarginLeg, Policy};
use crate::trading::risk::{Proposal, RiskProfile};
use crate::trading::{ClientOrderId, Intent, Leg, Order, OrderType};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub tickers: Vec<String>,
    /// Shares bought per entry.
    pub shares: i64,
    /// Percent of the shares overwritten with calls (the seed's 25–50%).
    pub overwrite_pct: f64,
    pub min_dte: i64,
    pub max_dte: i64,
    /// |delta| of the call to sell (0.30 = 30 delta), within `delta_tolerance`.
    pub target_delta: f64,
    pub delta_tolerance: f64,
    /// IV rank (0–100) at least this.
    pub min_iv_rank: f64,
    /// |5-session return| below this × one daily expected move: a neutral trend.
    pub trend_em_multiple: f64,
    pub min_bid: f64,
    pub max_open_per_ticker: u32,
    /// Close once the calls' P&L reaches this percent of their premium.
    pub profit_take_pct: f64,
    /// Close the whole position once its loss reaches this, dollars.
    pub stop_loss_usd: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tickers: vec!["SPY".into()],
            shares: 200,
            overwrite_pct: 50.0,
            min_dte: 0,
            max_dte: 1,
            target_delta: 0.30,
            delta_tolerance: 0.10,
            min_iv_rank: 50.0,
            trend_em_multiple: 1.0,
            min_bid: 0.05,
            max_open_per_ticker: 1,
            profit_take_pct: 50.0,
            stop_loss_usd: 50.0,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.tickers.is_empty() {
            return Err("tickers: at least one ticker".into());
        }
        if !(1..=100_000).contains(&self.shares) {
            return Err(format!("shares = {}: expected 1 to 100000", self.shares));
        }
        validate_pct("overwrite_pct", self.overwrite_pct)?;
        intraday::validate_short_dte(self.min_dte, self.max_dte)?;
        if !(0.01..=0.99).contains(&self.target_delta) {
            return Err(format!(
                "target_delta = {}: expected an absolute delta between 0.01 and 0.99 (0.30 = 30 delta)",
                self.target_delta
            ));
        }
        if !(0.0..=0.5).contains(&self.delta_tolerance) {
            return Err(format!(
                "delta_tolerance = {}: expected 0 to 0.5",
                self.delta_tolerance
            ));
        }
        if !(0.0..=100.0).contains(&self.min_iv_rank) {
            return Err(format!(
                "min_iv_rank = {}: expected an IV rank from 0 to 100",
                self.min_iv_rank
            ));
        }
        validate_positive("trend_em_multiple", self.trend_em_multiple)?;
        if !(self.min_bid.is_finite() && self.min_bid >= 0.0) {
            return Err(format!(
                "min_bid = {}: expected dollars, not negative",
                self.min_bid
            ));
        }
        if self.max_open_per_ticker == 0 {
            return Err("max_open_per_ticker = 0: expected at least 1".into());
        }
        validate_pct("profit_take_pct", self.profit_take_pct)?;
        validate_positive("stop_loss_usd", self.stop_loss_usd)?;
        Ok(())
    }
}

pub struct BuyWrite {
    pub config: Config,
    pub risk: RiskProfile,
}

impl BuyWrite {
    fn one(&self, day: &DayState, ticker: &str, seq: usize) -> Result<Proposal, String> {
        let c = &self.config;
        let (u, chain) = intraday::ready(day, self.name(), ticker, c.max_open_per_ticker)?;
        let h = day.session.history.get(ticker).copied().unwrap_or_default();
        let (Some(rank), Some(iv30), Some(ret5)) = (h.iv_rank, h.atm_iv30, h.ret_5d) else {
            return Err("no IV rank, 30-day ATM IV or 5-session return yet".into());
        };
        if rank < c.min_iv_rank {
            return Err(format!("IV rank {rank:.1} below {}", c.min_iv_rank));
        }
        let daily_em = iv30 * (1.0f64 / 252.0).sqrt();
        let limit = c.trend_em_multiple * daily_em;
        if ret5.abs() >= limit {
            return Err(format!(
                "trend not neutral: 5-session return {:.2}% is beyond {} × the daily expected move {:.2}%",
                ret5 * 100.0,
                c.trend_em_multiple,
                daily_em * 100.0
            ));
        }
        let calls = || chain.iter().filter(|r| r.right == OptionRight::Call);
        let expiry = day
            .choose_expiry(ticker, calls(), (c.min_dte, c.min_dte, c.max_dte))
            .ok_or_else(|| format!("no expiry {}–{} days out", c.min_dte, c.max_dte))?;
        let row: &ChainRow = calls()
            .filter(|r| r.expiry == expiry && r.bid > c.min_bid)
            .filter_map(|r| Some((r, (r.delta?.abs() - c.target_delta).abs())))
            .filter(|(_, off)| *off <= c.delta_tolerance)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(r, _)| r)
            .ok_or_else(|| {
                format!(
                    "no call expiring {expiry} within {} of {:.0} delta with a bid above {:.2}",
                    c.delta_tolerance,
                    c.target_delta * 100.0,
                    c.min_bid
                )
            })?;
        let mult = row.multiplier();
        let calls_n = (c.shares as f64 * c.overwrite_pct / 100.0 / mult as f64).floor() as i64;
        if calls_n < 1 {
            return Err(format!(
                "{}% of {} shares covers less than one call of {mult}",
                c.overwrite_pct, c.shares
            ));
        }
        let shares = Instrument::equity(ticker).map_err(|e| e.to_string())?;
        let legs = vec![
            Leg::new(shares.clone(), c.shares).map_err(|e| e.to_string())?,
            Leg::new(row.instrument.clone(), -calls_n).map_err(|e| e.to_string())?,
        ];
        let (spot, bid) = (Price::from_f64(u.spot), Price::from_f64(row.bid));
        let marked = [
            MarginLeg {
                instrument: shares,
                quantity: c.shares,
                mark: spot,
            },
            MarginLeg {
                instrument: row.instrument.clone(),
                quantity: -calls_n,
                mark: bid,
            },
        ];
        let requirement = margin::requirement(
            &marked,
            &|_| Some(spot),
            self.margin_policy(),
            &mut [(ticker.to_string(), c.shares)].into(),
        )
        .requirement;
        let premium = bid.times(mult * calls_n);
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
                order_type: OrderType::Market,
            },
            // Bounded by the stop on the position (a gap can go through it).
            max_loss: Some(Price::from_f64(c.stop_loss_usd)),
            requirement,
            cash: premium - spot.times(c.shares),
            numbers: vec![
                ("iv_rank".into(), rank),
                ("atm_iv_30d".into(), iv30),
                ("ret_5d".into(), ret5),
                ("daily_expected_move".into(), daily_em),
                ("call_strike".into(), row.strike),
                ("call_delta".into(), row.delta.unwrap_or(f64::NAN)),
                ("premium".into(), premium.to_f64()),
                ("shares".into(), c.shares as f64),
                ("calls".into(), calls_n as f64),
            ],
        })
    }
}

impl Strategy for BuyWrite {
    fn name(&self) -> &'static str {
        "buy_write"
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

    /// The calls are covered by the shares bought with them.
    fn margin_policy(&self) -> Policy {
        Policy::COVERED
    }

    fn propose(&self, day: &DayState) -> Outcome {
        intraday::propose_each(&self.config.tickers, |t, seq| self.one(day, t, seq))
    }

    /// The auto-close; the stop on the whole position (every leg the trade holds,
    /// shares included); the calls' premium captured. The P&L is since entry at the
    /// snapshot's marks.
    fn exits(&self, day: &DayState) -> Vec<ExitSignal> {
        let c = &self.config;
        let mut out = Vec::new();
        for t in intraday::mine(day, self.name()) {
            if let Some(x) = intraday::auto_close(day, t) {
                out.push(x);
                continue;
            }
            let Some(pnl) = intraday::trade_pnl(t) else {
                continue;
            };
            if -pnl.to_f64() >= c.stop_loss_usd {
                out.push(ExitSignal {
                    order_ref: t.order_ref.clone(),
                    rule: "stop",
                    reason: format!(
                        "the position's loss {} reached the stop {:.2}",
                        -pnl, c.stop_loss_usd
                    ),
                });
                continue;
            }
            // The calls' premium captured: the option legs against what they brought in.
            let Some((premium, calls_pnl)) = calls_pnl(t) else {
                continue;
            };
            let target = premium.to_f64() * c.profit_take_pct / 100.0;
            if premium > Price::ZERO && calls_pnl.to_f64() >= target {
                out.push(ExitSignal {
                    order_ref: t.order_ref.clone(),
                    rule: "profit_take",
                    reason: format!(
                        "the calls' P&L {calls_pnl} reached {}% of their premium {premium} ({target:.2})",
                        c.profit_take_pct
                    ),
                });
            }
        }
        out
    }
}

/// (premium the option legs brought in, their P&L since) from the legs' entry prices;
/// for a trade of option legs only, its entry cash will do.
fn calls_pnl(t: &super::OpenTrade) -> Option<(Price, Price)> {
    let is_option = |l: &MarginLeg| l.instrument.as_option().is_some();
    let value: Price = t
        .legs
        .iter()
        .filter(|l| is_option(l))
        .map(|l| l.mark.times(l.quantity * l.instrument.multiplier()))
        .sum();
    let premium = if t.entry_prices.len() == t.legs.len() {
        t.legs
            .iter()
            .zip(&t.entry_prices)
            .filter(|(l, _)| is_option(l))
            .map(|(l, p)| Some(p.as_ref()?.times(-l.quantity * l.instrument.multiplier())))
            .sum::<Option<Price>>()?
    } else if t.legs.iter().all(is_option) {
        t.entry_cash?
    } else {
        return None;
    };
    Some((premium, premium + value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    const T: f64 = 5.0 / (24.0 * 365.0);

    // SPY at 500 at 11:00, 0DTE calls every point at 20% IV; IV rank 60, IV30 16%
    // (daily EM 1.008%), 5-session return 0.5%.
    fn day_at(hh: u32, mm: u32) -> DayState {
        let chain = testkit::zero_dte_chain("SPY", 500.0, (490.0, 510.0, 1.0), 0.20, T);
        let mut d = testkit::intraday_day(hh, mm, "SPY", 500.0, chain, (0.12, 0.16));
        let h = d.session.history.get_mut("SPY").unwrap();
        h.iv_rank = Some(60.0);
        h.ret_5d = Some(0.005);
        d
    }

    fn strategy() -> BuyWrite {
        BuyWrite {
            config: Config::default(),
            risk: RiskProfile::default(),
        }
    }

    #[test]
    fn buys_shares_and_sells_a_thirty_delta_call_on_half_of_them() {
        let out = strategy().propose(&day_at(11, 0));
        assert_eq!(out.proposals.len(), 1, "{:?}", out.skips);
        let p = &out.proposals[0];
        assert_eq!(p.order.legs[0].quantity, 200);
        assert!(matches!(
            p.order.legs[0].instrument,
            Instrument::Equity { .. }
        ));
        assert_eq!(p.order.legs[1].quantity, -1);
        let num = |k: &str| p.numbers.iter().find(|(n, _)| n == k).unwrap().1;
        // The call nearest 30 delta among the listed ones.
        let chain = &day_at(11, 0).chains["SPY"];
        let best = chain
            .iter()
            .filter(|r| r.right == OptionRight::Call)
            .map(|r| (r.delta.unwrap() - 0.30).abs())
            .fold(f64::MAX, f64::min);
        assert!(((num("call_delta") - 0.30).abs() - best).abs() < 1e-12);
        assert_eq!(p.max_loss, Some(Price::from_f64(50.0)));
        // Shares paid in full: the cash is the premium less 200 × 500.
        assert_eq!(p.cash, Price::from_f64(num("premium") - 100_000.0));
    }

    #[test]
    fn needs_a_high_iv_rank_and_a_neutral_trend() {
        let s = strategy();
        let mut d = day_at(11, 0);
        d.session.history.get_mut("SPY").unwrap().iv_rank = Some(49.99);
        assert!(s.propose(&d).skips[0].1.contains("IV rank 50.0 below 50"));
        d.session.history.get_mut("SPY").unwrap().iv_rank = Some(50.0);
        assert_eq!(s.propose(&d).proposals.len(), 1);
        // The daily expected move at 16% is 1.0079%: a 5-session return at it is a
        // trend; just inside it is neutral.
        let em = 0.16 * (1.0f64 / 252.0).sqrt();
        d.session.history.get_mut("SPY").unwrap().ret_5d = Some(-em);
        assert!(s.propose(&d).skips[0].1.contains("trend not neutral"));
        d.session.history.get_mut("SPY").unwrap().ret_5d = Some(-em * 0.999);
        assert_eq!(s.propose(&d).proposals.len(), 1);
        // 25% of 200 shares is half a call: nothing.
        let s = BuyWrite {
            config: Config {
                overwrite_pct: 25.0,
                ..Config::default()
            },
            risk: RiskProfile::default(),
        };
        assert!(s.propose(&d).skips[0].1.contains("less than one call"));
    }

    fn trade(entry: f64, call_mark: f64) -> super::super::OpenTrade {
        let mut t = testkit::open_trade(
            "buy_write",
            "buy_write:2025-03-14T1100:0",
            testkit::naked_call(1),
        );
        t.legs[0].mark = Price::from_f64(call_mark);
        t.entry_cash = Some(Price::from_f64(entry));
        t
    }

    #[test]
    fn exits_at_half_the_premium_at_the_stop_and_at_the_auto_close() {
        let s = strategy();
        let mut d = day_at(12, 0);
        // Premium 100, call now 0.50 → P&L 50 = 50%.
        d.open_trades.push(trade(100.0, 0.50));
        assert_eq!(s.exits(&d)[0].rule, "profit_take");
        d.open_trades[0] = trade(100.0, 0.51);
        assert!(s.exits(&d).is_empty());
        // The stop on the position: shares 200 bought at 500 now 499.75 (−50), the
        // call unchanged.
        let mut t = trade(100.0 - 100_000.0, 1.00);
        t.legs.push(MarginLeg {
            instrument: Instrument::equity("SPY").unwrap(),
            quantity: 200,
            mark: Price::from_f64(499.75),
        });
        d.open_trades[0] = t.clone();
        assert_eq!(s.exits(&d)[0].rule, "stop");
        t.legs[1].mark = Price::from_f64(499.7501);
        d.open_trades[0] = t.clone();
        assert!(s.exits(&d).is_empty());
        // With the legs' entry prices (as the store gives them), the premium capture
        // is the call's alone though the trade holds the shares: call sold at 1.00,
        // now 0.50, shares flat.
        let mut u = t.clone();
        u.legs[0].mark = Price::from_f64(0.50);
        u.legs[1].mark = Price::from_f64(500.0);
        u.entry_prices = vec![Some(Price::from_f64(1.0)), Some(Price::from_f64(500.0))];
        d.open_trades[0] = u.clone();
        assert_eq!(s.exits(&d)[0].rule, "profit_take");
        u.legs[0].mark = Price::from_f64(0.51);
        d.open_trades[0] = u;
        assert!(s.exits(&d).is_empty());
        let mut d = day_at(15, 30);
        d.open_trades.push(t);
        assert_eq!(s.exits(&d)[0].rule, "auto_close");
    }

    #[test]
    fn bad_numbers_are_refused_naming_the_key() {
        type Set = fn(&mut Config);
        let cases: [(Set, &str); 5] = [
            (|c| c.shares = 0, "shares = 0"),
            (
                |c| c.overwrite_pct = 0.5,
                "overwrite_pct = 0.5: looks like a fraction",
            ),
            (|c| c.min_iv_rank = 150.0, "min_iv_rank = 150"),
            (|c| c.stop_loss_usd = 0.0, "stop_loss_usd = 0"),
            (|c| c.target_delta = 30.0, "target_delta = 30"),
        ];
        super::super::assert_each_refused(&cases, Config::validate);
    }
}
