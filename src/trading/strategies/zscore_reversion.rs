//! `zscore_reversion` (seed: the quant scalper): Z-score mean reversion on the front
//! MES contract. Z = (price − rolling mean) / rolling standard deviation (population)
//! over the last `window` one-minute closes of `day.session.bars[root]`; Z ≥ +2 sells
//! one contract at the bid, Z ≤ −2 buys one at the ask (the front contract, after the
//! roll, is `day.session.futures[root][0]`). Exits: the Z-score back within ±0.5 (a long
//! once Z ≥ −0.5, a short once Z ≤ +0.5, so a jump through the band counts), a stop of
//! $200 and a target of $300 per contract, a maximum hold of 2 hours, and flat by the
//! auto-close (`flat_by_close`, the desk's 30 minutes before the close).

use super::intraday::{self, validate_positive};
use super::{DayState, ExitSignal, Outcome, Strategy};
use crate::model::instrument::Instrument;
use crate::model::Price;
use crate::trading::margin::{self, MarginLeg};
use crate::trading::risk::{Proposal, RiskProfile};
use crate::trading::{ClientOrderId, Intent, Leg, Order, OrderType};
use chrono::Duration;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The futures product (its minute bars and quotes are keyed by it).
    pub root: String,
    /// One-minute bars in the rolling mean and standard deviation.
    pub window: usize,
    /// Enter short at Z ≥ +z_entry, long at Z ≤ −z_entry.
    pub z_entry: f64,
    /// Exit once Z is back within ±z_exit.
    pub z_exit: f64,
    pub contracts: i64,
    /// Close at this loss per contract, dollars.
    pub stop_usd_per_contract: f64,
    /// Close at this gain per contract, dollars.
    pub target_usd_per_contract: f64,
    /// Close after this many minutes held.
    pub max_hold_minutes: i64,
    /// Close every position at the auto-close and enter nothing after it.
    pub flat_by_close: bool,
    pub max_open: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: "MES".into(),
            window: 20,
            z_entry: 2.0,
            z_exit: 0.5,
            contracts: 1,
            stop_usd_per_contract: 200.0,
            target_usd_per_contract: 300.0,
            max_hold_minutes: 120,
            flat_by_close: true,
            max_open: 1,
        }
    }
}

/// The scalper's profile: $500 daily loss limit, 3 losses → 30 minutes; its trade is
/// bounded by the $200 stop; no options, no entry window (the whole session until the
/// auto-close), no earnings (an index future).
pub fn default_risk() -> RiskProfile {
    RiskProfile {
        max_loss_per_trade: 200.0,
        daily_loss_cap: 500.0,
        defined_risk_only: false,
        entry_window: Vec::new(),
        earnings_blackout: false,
        ..RiskProfile::default()
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.root.is_empty() {
            return Err("root: a futures product such as \"MES\"".into());
        }
        if !(2..=1000).contains(&self.window) {
            return Err(format!("window = {}: expected 2 to 1000 bars", self.window));
        }
        validate_positive("z_entry", self.z_entry)?;
        if !(self.z_exit.is_finite() && self.z_exit >= 0.0 && self.z_exit < self.z_entry) {
            return Err(format!(
                "z_exit = {}: expected 0 ≤ z_exit < z_entry = {}",
                self.z_exit, self.z_entry
            ));
        }
        if !(1..=100).contains(&self.contracts) {
            return Err(format!("contracts = {}: expected 1 to 100", self.contracts));
        }
        validate_positive("stop_usd_per_contract", self.stop_usd_per_contract)?;
        validate_positive("target_usd_per_contract", self.target_usd_per_contract)?;
        if !(1..=1440).contains(&self.max_hold_minutes) {
            return Err(format!(
                "max_hold_minutes = {}: expected 1 to 1440",
                self.max_hold_minutes
            ));
        }
        if self.max_open == 0 {
            return Err("max_open = 0: expected at least 1".into());
        }
        Ok(())
    }
}

pub struct ZscoreReversion {
    pub config: Config,
    pub risk: RiskProfile,
}

impl ZscoreReversion {
    /// Z of the latest close, or why there is none.
    fn z(&self, day: &DayState) -> Result<f64, String> {
        let c = &self.config;
        let closes: Vec<f64> = day
            .session
            .bars
            .get(&c.root)
            .map(|b| b.iter().map(|b| b.close).collect())
            .unwrap_or_default();
        intraday::zscore(&closes, c.window).ok_or_else(|| {
            format!(
                "{} one-minute bars of {} (need {} with some movement)",
                closes.len(),
                c.root,
                c.window
            )
        })
    }

    fn one(&self, day: &DayState) -> Result<Proposal, String> {
        let c = &self.config;
        let open = intraday::mine(day, self.name()).count() as u32;
        if open >= c.max_open {
            return Err(format!("{open} open (at most {})", c.max_open));
        }
        if c.flat_by_close {
            intraday::entries_open(day)?;
        }
        let z = self.z(day)?;
        let side = if z >= c.z_entry {
            -1
        } else if z <= -c.z_entry {
            1
        } else {
            return Err(format!("Z = {z:.3} within ±{}", c.z_entry));
        };
        let q = day
            .session
            .futures
            .get(&c.root)
            .and_then(|v| v.first())
            .ok_or_else(|| format!("no {} futures quote at this snapshot", c.root))?;
        if !(q.bid > 0.0 && q.ask >= q.bid) {
            return Err(format!(
                "{}: no two-sided quote (bid {}, ask {})",
                q.contract.symbol, q.bid, q.ask
            ));
        }
        let inst = Instrument::Future(q.contract.clone());
        let n = side * c.contracts;
        let price = Price::from_f64(if side > 0 { q.ask } else { q.bid });
        let mark = Price::from_f64((q.bid + q.ask) / 2.0);
        let requirement = margin::requirement(
            &[MarginLeg {
                instrument: inst.clone(),
                quantity: n,
                mark,
            }],
            &|_| Some(mark),
            self.margin_policy(),
            &mut Default::default(),
        )
        .requirement;
        let id = ClientOrderId::new(Intent::Entry, self.name(), day.as_of, day.slot(), 0)
            .map_err(|e| e.to_string())?;
        Ok(Proposal {
            strategy: self.name().into(),
            underlying: c.root.clone(),
            order: Order {
                id,
                legs: vec![Leg::new(inst, n).map_err(|e| e.to_string())?],
                // Buy at most the ask; sell at least the bid.
                order_type: OrderType::Limit(if side > 0 { price } else { -price }),
            },
            // Bounded by the stop (a gap can go through it).
            max_loss: Some(Price::from_f64(c.stop_usd_per_contract).times(c.contracts)),
            requirement,
            // A future moves no premium: its P&L arrives as variation margin.
            cash: Price::ZERO,
            numbers: vec![
                ("zscore".into(), z),
                ("window".into(), c.window as f64),
                ("price".into(), price.to_f64()),
                ("contracts".into(), n as f64),
            ],
        })
    }

    /// A futures trade's P&L at the snapshot's quote mids (the stored mark otherwise).
    fn pnl(&self, day: &DayState, t: &super::OpenTrade) -> Option<Price> {
        let quotes = day.session.futures.get(&self.config.root);
        let value: Price = t
            .legs
            .iter()
            .map(|l| {
                let mark = match &l.instrument {
                    Instrument::Future(f) => quotes
                        .and_then(|v| v.iter().find(|q| q.contract.symbol == f.symbol))
                        .map_or(l.mark, |q| Price::from_f64((q.bid + q.ask) / 2.0)),
                    _ => l.mark,
                };
                mark.times(l.quantity * l.instrument.multiplier())
            })
            .sum();
        Some(t.entry_cash? + value)
    }
}

impl Strategy for ZscoreReversion {
    fn name(&self) -> &'static str {
        "zscore_reversion"
    }

    fn cadence(&self) -> super::Cadence {
        super::Cadence::Intraday
    }

    fn risk_profile(&self) -> Option<&RiskProfile> {
        Some(&self.risk)
    }

    fn propose(&self, day: &DayState) -> Outcome {
        let mut out = Outcome::default();
        match self.one(day) {
            Ok(p) => out.proposals.push(p),
            Err(why) => out.skips.push((self.config.root.clone(), why)),
        }
        out
    }

    /// In order: the auto-close (with `flat_by_close`), the stop, the target, the
    /// maximum hold, the Z-score back within the band.
    fn exits(&self, day: &DayState) -> Vec<ExitSignal> {
        let c = &self.config;
        let z = self.z(day).ok();
        let mut out = Vec::new();
        for t in intraday::mine(day, self.name()) {
            let exit = |rule: &'static str, reason: String| ExitSignal {
                order_ref: t.order_ref.clone(),
                rule,
                reason,
            };
            if c.flat_by_close {
                if let Some(x) = intraday::auto_close(day, t) {
                    out.push(x);
                    continue;
                }
            }
            let held: i64 = t.legs.iter().map(|l| l.quantity).sum();
            let per = held.abs().max(1) as f64;
            if let Some(pnl) = self.pnl(day, t) {
                let stop = c.stop_usd_per_contract * per;
                if -pnl.to_f64() >= stop {
                    out.push(exit(
                        "stop",
                        format!("loss {} reached the stop {stop:.2}", -pnl),
                    ));
                    continue;
                }
                let target = c.target_usd_per_contract * per;
                if pnl.to_f64() >= target {
                    out.push(exit(
                        "target",
                        format!("gain {pnl} reached the target {target:.2}"),
                    ));
                    continue;
                }
            }
            if let Some(at) = intraday::opened_at(t) {
                let held_for = day.quote_time - at;
                if held_for >= Duration::minutes(c.max_hold_minutes) {
                    out.push(exit(
                        "max_hold",
                        format!(
                            "opened at {}, held {} minutes (max {})",
                            at.format("%H:%M"),
                            held_for.num_minutes(),
                            c.max_hold_minutes
                        ),
                    ));
                    continue;
                }
            }
            if let Some(z) = z {
                let back = if held > 0 {
                    z >= -c.z_exit
                } else {
                    z <= c.z_exit
                };
                if back {
                    out.push(exit(
                        "z_exit",
                        format!("Z = {z:.3} is back within ±{}", c.z_exit),
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::instrument::FuturesContract;
    use crate::testkit;
    use crate::trading::strategies::{FutureQuote, MinuteBar};

    fn mesm5() -> FuturesContract {
        FuturesContract::new_checked(
            "MESM5",
            "MES",
            (2025, 6),
            chrono::NaiveDate::from_ymd_opt(2025, 6, 20).unwrap(),
            5,
            Price::from_f64(0.25),
        )
        .unwrap()
    }

    /// A day at hh:mm whose MES closes are `closes` (one a minute up to the
    /// snapshot), quoted 0.25 wide around the last close.
    fn day_at(hh: u32, mm: u32, closes: &[f64]) -> DayState {
        let d0 = testkit::as_of();
        let mut d = DayState::new(d0, d0.and_hms_opt(hh, mm, 0).unwrap());
        d.session.open = d0.and_hms_opt(9, 30, 0);
        d.session.close = d0.and_hms_opt(16, 0, 0);
        let start = d.quote_time - Duration::minutes(closes.len() as i64);
        d.session.bars.insert(
            "MES".into(),
            closes
                .iter()
                .enumerate()
                .map(|(i, &c)| MinuteBar {
                    time: start + Duration::minutes(i as i64),
                    open: c,
                    high: c,
                    low: c,
                    close: c,
                    volume: 10,
                })
                .collect(),
        );
        let last = *closes.last().unwrap();
        d.session.futures.insert(
            "MES".into(),
            vec![FutureQuote {
                contract: mesm5(),
                bid: last - 0.125,
                ask: last + 0.125,
                last,
            }],
        );
        d
    }

    /// 19 closes alternating 5000 ± 1 and a last one at `last`.
    fn series(last: f64) -> Vec<f64> {
        let mut v: Vec<f64> = (0..19)
            .map(|i| if i % 2 == 0 { 5001.0 } else { 4999.0 })
            .collect();
        v.push(last);
        v
    }

    /// The last close that gives exactly Z = `z` over `series`.
    fn last_for(z: f64) -> f64 {
        // Solve by bisection: Z is increasing in the last close.
        let (mut lo, mut hi) = (4900.0, 5100.0);
        for _ in 0..200 {
            let mid = (lo + hi) / 2.0;
            if intraday::zscore(&series(mid), 20).unwrap() < z {
                lo = mid
            } else {
                hi = mid
            }
        }
        hi
    }

    /// The same day with the front quote 0.25 wide around `mid`.
    fn with_mid(mut d: DayState, mid: f64) -> DayState {
        let q = &mut d.session.futures.get_mut("MES").unwrap()[0];
        q.bid = mid - 0.125;
        q.ask = mid + 0.125;
        d
    }

    fn strategy() -> ZscoreReversion {
        ZscoreReversion {
            config: Config::default(),
            risk: default_risk(),
        }
    }

    #[test]
    fn sells_at_plus_two_buys_at_minus_two_and_passes_between() {
        let s = strategy();
        let up = last_for(2.0);
        let out = s.propose(&day_at(11, 0, &series(up)));
        assert_eq!(out.proposals.len(), 1, "{:?}", out.skips);
        let p = &out.proposals[0];
        assert_eq!(p.order.legs[0].quantity, -1);
        assert!(matches!(p.order.legs[0].instrument, Instrument::Future(_)));
        assert_eq!(p.cash, Price::ZERO);
        assert_eq!(p.max_loss, Some(Price::from_f64(200.0)));
        // A hair below +2: no trade, with the Z-score in the reason.
        let out = s.propose(&day_at(11, 0, &series(up - 0.001)));
        assert!(out.proposals.is_empty());
        assert!(out.skips[0].1.contains("within ±2"), "{:?}", out.skips);
        let down = last_for(-2.0) - 1e-9;
        let out = s.propose(&day_at(11, 0, &series(down)));
        assert_eq!(out.proposals[0].order.legs[0].quantity, 1);
        // Fewer than 20 bars: no Z-score.
        let out = s.propose(&day_at(11, 0, &series(up)[1..]));
        assert!(
            out.skips[0].1.contains("19 one-minute bars"),
            "{:?}",
            out.skips
        );
    }

    fn position(qty: i64, entry: f64, at: &str) -> crate::trading::strategies::OpenTrade {
        let mut t = testkit::open_trade(
            "zscore_reversion",
            &format!("zscore_reversion:2025-03-14T{at}:0"),
            vec![MarginLeg {
                instrument: Instrument::Future(mesm5()),
                quantity: qty,
                mark: Price::from_f64(entry),
            }],
        );
        t.entry_cash = Some(Price::from_f64(entry).times(-qty * 5));
        t
    }

    #[test]
    fn exits_on_the_band_the_stop_the_target_and_the_hold() {
        let s = strategy();
        // A long from 5000 while Z is still −0.5 − ε: hold; at −0.5: z_exit.
        let hold = last_for(-0.5) - 1e-6;
        let mut d = day_at(11, 0, &series(hold));
        let entry = hold; // flat P&L
        d.open_trades.push(position(1, entry, "1030"));
        assert!(s.exits(&d).is_empty(), "{:?}", s.exits(&d));
        let back = last_for(-0.5) + 1e-6;
        let mut d = day_at(11, 0, &series(back));
        d.open_trades.push(position(1, back, "1030"));
        assert_eq!(s.exits(&d)[0].rule, "z_exit");
        // Stop: a long 40 points over the mid (5,000) is −$200 (5 × 40).
        let mut d = with_mid(day_at(11, 0, &series(hold)), 5000.0);
        d.open_trades.push(position(1, 5040.0, "1030"));
        assert_eq!(s.exits(&d)[0].rule, "stop");
        d.open_trades[0] = position(1, 5039.75, "1030");
        assert!(s.exits(&d).is_empty());
        // Target: a short 60 points above the mid is +$300 (Z = 1: not back yet).
        let mut d = with_mid(day_at(11, 0, &series(last_for(1.0))), 5000.0);
        d.open_trades.push(position(-1, 5060.0, "1030"));
        assert_eq!(s.exits(&d)[0].rule, "target");
        d.open_trades[0] = position(-1, 5059.75, "1030");
        assert!(s.exits(&d).is_empty());
        let mark = 5000.0;
        // Max hold: opened 09:00 → 11:00 is 2 hours.
        d.open_trades[0] = position(-1, mark, "0900");
        assert_eq!(s.exits(&d)[0].rule, "max_hold");
        d.open_trades[0] = position(-1, mark, "0901");
        assert!(s.exits(&d).is_empty());
        // Flat by the auto-close.
        let mut d = day_at(15, 30, &series(hold));
        d.open_trades.push(position(1, hold, "1515"));
        assert_eq!(s.exits(&d)[0].rule, "auto_close");
    }

    #[test]
    fn bad_numbers_are_refused_naming_the_key() {
        type Set = fn(&mut Config);
        let cases: [(Set, &str); 4] = [
            (|c| c.window = 1, "window = 1"),
            (|c| c.z_exit = 2.5, "z_exit = 2.5"),
            (|c| c.max_hold_minutes = 0, "max_hold_minutes = 0"),
            (
                |c| c.stop_usd_per_contract = -1.0,
                "stop_usd_per_contract = -1",
            ),
        ];
        super::super::assert_each_refused(&cases, Config::validate);
    }
}
