//! `dispersion` (seeds: the dispersion trader and library): trade the index's implied
//! correlation against its components. When the 60-session Z-score of implied
//! correlation is above +1.5 (correlation rich), sell the index ATM straddle and buy
//! ATM straddles on the top 10 components; below −1.5, the reverse. Premium budget:
//! `trade_pct` of capital, half on the index leg, half split equally among the
//! components, each leg at least one contract. At most `max_concurrent` trades open;
//! `expire_positions` closes each after `hold_sessions` sessions. With fewer than 60
//! sessions of history there is no Z-score: no trade, and the reason.

use super::{ChainRow, DayState, ExitSignal, Outcome, Strategy};
use crate::model::{OptionRight, Price};
use crate::trading::margin::{self, MarginLeg};
use crate::trading::risk::Proposal;
use crate::trading::{ClientOrderId, Intent, Leg, Order, OrderType};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub index: String,
    /// The components, largest weight first (the top 10 of QQQ by default).
    pub components: Vec<String>,
    pub z_entry: f64,
    pub capital: f64,
    /// Premium budget per trade, percent of capital.
    pub trade_pct: f64,
    pub max_concurrent: u32,
    /// Sessions a trade is held before expire_positions closes it.
    pub hold_sessions: u32,
    pub target_dte: i64,
    pub min_dte: i64,
    pub max_dte: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            index: "QQQ".into(),
            components: [
                "AAPL", "NVDA", "MSFT", "AMZN", "AVGO", "META", "TSLA", "COST", "GOOGL", "GOOG",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            z_entry: 1.5,
            capital: 100_000.0,
            trade_pct: 2.0,
            max_concurrent: 3,
            hold_sessions: 5,
            target_dte: 30,
            min_dte: 20,
            max_dte: 45,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.1..=10.0).contains(&self.z_entry) {
            return Err(format!("z_entry = {}: expected a Z-score threshold between 0.1 and 10 (1.5 = 1.5 standard deviations)", self.z_entry));
        }
        if !(0.0..=100.0).contains(&self.trade_pct)
            || (self.trade_pct > 0.0 && self.trade_pct < 0.1)
        {
            return Err(format!(
                "trade_pct = {}: expected percent of capital (2 = 2%)",
                self.trade_pct
            ));
        }
        if !(self.capital.is_finite() && self.capital > 0.0) {
            return Err(format!(
                "capital = {}: expected a positive amount of dollars",
                self.capital
            ));
        }
        if self.max_concurrent == 0 {
            return Err("max_concurrent = 0: expected at least 1".into());
        }
        if self.components.len() < 2 {
            return Err("components: at least two".into());
        }
        if !(1..=60).contains(&self.hold_sessions) {
            return Err(format!(
                "hold_sessions = {}: expected 1 to 60 sessions",
                self.hold_sessions
            ));
        }
        super::validate_dte(self.min_dte, self.target_dte, self.max_dte)?;
        Ok(())
    }

    /// The ATM straddle (call, put) of a symbol at the expiry nearest the target.
    fn straddle<'a>(
        &self,
        day: &'a DayState,
        symbol: &str,
    ) -> Option<(&'a ChainRow, &'a ChainRow)> {
        let (u, chain) = (day.underlyings.get(symbol)?, day.chains.get(symbol)?);
        let expiry = day.choose_expiry(
            symbol,
            chain.iter(),
            (self.min_dte, self.target_dte, self.max_dte),
        )?;
        let strike = chain
            .iter()
            .filter(|r| r.expiry == expiry)
            .map(|r| r.strike)
            .min_by(|a, b| (a - u.spot).abs().total_cmp(&(b - u.spot).abs()))?;
        let leg = |right| {
            chain.iter().find(|r| {
                r.expiry == expiry
                    && r.strike == strike
                    && r.right == right
                    && r.bid > 0.0
                    && r.ask >= r.bid
            })
        };
        Some((leg(OptionRight::Call)?, leg(OptionRight::Put)?))
    }
}

pub struct Dispersion {
    pub config: Config,
}

impl Strategy for Dispersion {
    fn name(&self) -> &'static str {
        "dispersion"
    }

    fn symbols(&self) -> Vec<(&'static str, Vec<String>)> {
        vec![
            ("params.index", vec![self.config.index.clone()]),
            ("params.components", self.config.components.clone()),
        ]
    }

    fn propose(&self, day: &DayState) -> Outcome {
        let c = &self.config;
        let mut out = Outcome::default();
        let index = c.index.clone();
        let z = match day.correlation_z.get(&index) {
            None => {
                out.skips.push((
                    index,
                    "no implied correlation for today (run correlation first)".into(),
                ));
                return out;
            }
            Some(Err(why)) => {
                out.skips.push((index, format!("no Z-score: {why}")));
                return out;
            }
            Some(Ok(z)) => *z,
        };
        if z.abs() <= c.z_entry {
            out.skips.push((
                index,
                format!(
                    "implied-correlation Z {z:+.2} within ±{:.2}: no trade",
                    c.z_entry
                ),
            ));
            return out;
        }
        let open = day.open_count(self.name(), &c.index);
        if open >= c.max_concurrent {
            out.skips.push((
                index,
                format!("{open} trades open (at most {})", c.max_concurrent),
            ));
            return out;
        }
        let Some((ic, ip)) = c.straddle(day, &c.index) else {
            out.skips.push((
                index,
                "no two-sided ATM straddle on the index near the target expiry".into(),
            ));
            return out;
        };
        let comps: Vec<(&ChainRow, &ChainRow)> = c
            .components
            .iter()
            .filter_map(|s| c.straddle(day, s))
            .collect();
        if comps.len() < c.components.len() / 2 {
            out.skips.push((
                index,
                format!(
                    "only {} of {} components have a two-sided ATM straddle",
                    comps.len(),
                    c.components.len()
                ),
            ));
            return out;
        }
        // Z > 0: correlation rich → sell the index, buy the components.
        let index_side: i64 = if z > 0.0 { -1 } else { 1 };
        let budget = c.capital * c.trade_pct / 100.0;
        let cost = |(a, b): (&ChainRow, &ChainRow)| (a.ask + b.ask) * a.multiplier() as f64;
        let n_index = ((budget / 2.0 / cost((ic, ip))).floor() as i64).max(1);
        let leg = |r: &ChainRow, q: i64| Leg::new(r.instrument.clone(), q).expect("q ≠ 0");
        let mut legs = vec![leg(ic, index_side * n_index), leg(ip, index_side * n_index)];
        let mut marks = vec![Price::from_f64(ic.bid), Price::from_f64(ip.bid)];
        // At the touch: a short leg is sold at its bid, a long one bought at its ask.
        let mut cash = Price::ZERO;
        let mut pay = |r: &ChainRow, q: i64| {
            let px = Price::from_f64(if q < 0 { r.bid } else { r.ask });
            cash += px.times(-q * r.multiplier());
        };
        pay(ic, index_side * n_index);
        pay(ip, index_side * n_index);
        let per_comp = budget / 2.0 / comps.len() as f64;
        for (cc, cp) in &comps {
            let n = ((per_comp / cost((cc, cp))).floor() as i64).max(1);
            legs.push(leg(cc, -index_side * n));
            legs.push(leg(cp, -index_side * n));
            pay(cc, -index_side * n);
            pay(cp, -index_side * n);
            marks.extend([Price::from_f64(cc.bid), Price::from_f64(cp.bid)]);
        }
        // Margin by structure: each short straddle holds the greater naked side plus
        // the other side's premium; the long straddles are paid for.
        let marked: Vec<MarginLeg> = legs
            .iter()
            .zip(&marks)
            .map(|(l, m)| MarginLeg {
                instrument: l.instrument.clone(),
                quantity: l.quantity,
                mark: *m,
            })
            .collect();
        let spot = |u: &str| day.underlyings.get(u).map(|x| Price::from_f64(x.spot));
        let requirement = margin::requirement(
            &marked,
            &spot,
            self.margin_policy(),
            &mut Default::default(),
        )
        .requirement;
        let id = match ClientOrderId::new(Intent::Entry, self.name(), day.as_of, day.slot(), 0) {
            Ok(id) => id,
            Err(e) => {
                out.skips.push((index, e.to_string()));
                return out;
            }
        };
        out.proposals.push(Proposal {
            strategy: self.name().into(),
            underlying: index.clone(),
            order: Order {
                id,
                legs,
                order_type: OrderType::Market,
            },
            max_loss: None,
            requirement,
            cash,
            numbers: vec![
                ("zscore".into(), z),
                ("index_contracts".into(), n_index as f64),
                ("components".into(), comps.len() as f64),
                ("budget".into(), budget),
                ("index_straddle".into(), ic.ask + ip.ask),
            ],
        });
        out
    }

    /// Close every trade held `hold_sessions` sessions, at the market.
    fn exits(&self, day: &DayState) -> Vec<ExitSignal> {
        let hold = self.config.hold_sessions as usize;
        let before = crate::calendar::sessions_before(day.as_of, hold);
        let Some(&cutoff) = before.first().filter(|_| before.len() == hold) else {
            return Vec::new();
        };
        day.open_trades
            .iter()
            .filter(|t| t.strategy == self.name() && t.opened <= cutoff)
            .map(|t| ExitSignal {
                order_ref: t.order_ref.clone(),
                rule: "hold_sessions",
                reason: format!(
                    "opened {}, held {hold} sessions (hold_sessions = {hold})",
                    t.opened
                ),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trading::strategies::UnderlyingDay;
    use chrono::NaiveDate;

    fn day(z: Result<f64, String>) -> DayState {
        let as_of = NaiveDate::from_ymd_opt(2025, 3, 14).unwrap();
        let expiry = NaiveDate::from_ymd_opt(2025, 4, 17).unwrap();
        let mut d = DayState::new(as_of, as_of.and_hms_opt(9, 35, 0).unwrap());
        for (sym, spot) in [("QQQ", 480.0), ("AAPL", 200.0), ("MSFT", 400.0)] {
            d.underlyings.insert(
                sym.into(),
                UnderlyingDay {
                    spot,
                    hv30: Some(0.2),
                    rate: 0.04,
                    div_yield: 0.0,
                },
            );
            let row = |right: OptionRight| ChainRow {
                instrument: crate::testkit::option(sym, right, spot),
                contract: crate::testkit::option(sym, right, spot).key(),
                underlying: sym.into(),
                expiry,
                strike: spot,
                right,
                bid: spot * 0.02,
                ask: spot * 0.021,
                iv: Some(0.2),
                delta: Some(0.5),
                volume: 100,
                t_years: 34.0 / 365.0,
            };
            d.chains.insert(
                sym.into(),
                vec![row(OptionRight::Call), row(OptionRight::Put)],
            );
        }
        d.correlation_z.insert("QQQ".into(), z);
        d
    }

    fn strategy() -> Dispersion {
        Dispersion {
            config: Config {
                components: vec!["AAPL".into(), "MSFT".into()],
                ..Config::default()
            },
        }
    }

    #[test]
    fn enters_beyond_the_threshold_on_the_right_side() {
        let s = strategy();
        assert!(
            s.propose(&day(Ok(1.5))).proposals.is_empty(),
            "at +1.5: no trade"
        );
        let p = &s.propose(&day(Ok(1.51))).proposals[0];
        assert!(
            p.order.legs[0].quantity < 0 && p.order.legs[2].quantity > 0,
            "rich correlation: sell index, buy components"
        );
        assert_eq!(p.order.legs.len(), 6);
        let p = &s.propose(&day(Ok(-1.51))).proposals[0];
        assert!(
            p.order.legs[0].quantity > 0 && p.order.legs[2].quantity < 0,
            "cheap correlation: the reverse"
        );
        assert!(s.propose(&day(Ok(-1.5))).proposals.is_empty());
    }

    #[test]
    fn without_history_no_trade_and_the_reason() {
        let out = strategy().propose(&day(Err(
            "no Z-score: 12 of the 60 sessions of implied-correlation history needed".into(),
        )));
        assert!(out.proposals.is_empty());
        assert!(
            out.skips[0].1.contains("12 of the 60 sessions"),
            "{:?}",
            out.skips
        );
    }

    #[test]
    fn at_most_max_concurrent_trades() {
        let mut d = day(Ok(2.0));
        for i in 0..3 {
            d.open_trades.push(crate::testkit::open_trade(
                "dispersion",
                &format!("dispersion:2025-03-1{i}T0935:0"),
                crate::testkit::dispersion_basket(true),
            ));
        }
        assert!(strategy().propose(&d).skips[0].1.contains("3 trades open"));
    }

    #[test]
    fn exits_after_its_holding_period() {
        let mut d = day(Ok(0.0));
        // 2025-03-07 is 5 sessions before 2025-03-14; 2025-03-10 only 4.
        for (opened, r) in [("2025-03-07", "a"), ("2025-03-10", "b")] {
            let mut t = crate::testkit::open_trade(
                "dispersion",
                r,
                crate::testkit::dispersion_basket(true),
            );
            t.opened = opened.parse().unwrap();
            d.open_trades.push(t);
        }
        let exits = strategy().exits(&d);
        assert_eq!(exits.len(), 1);
        assert_eq!(exits[0].order_ref, "a");
        assert_eq!(exits[0].rule, "hold_sessions");
    }

    #[test]
    fn the_short_straddle_is_margined_by_structure() {
        // QQQ at 480, straddle bids 9.60 each side: call 0.2 × 480 + 9.60 = 105.60,
        // put the same; 105.60 + 9.60 = 115.20 → 11,520 per index straddle sold.
        let p = &strategy().propose(&day(Ok(2.0))).proposals[0];
        let n = -p.order.legs[0].quantity;
        assert_eq!(p.requirement, Price::from_f64(11_520.0 * n as f64));
    }

    #[test]
    fn non_finite_and_out_of_range_numbers_are_refused_naming_the_key() {
        type Set = fn(&mut Config);
        let cases: [(Set, &str); 5] = [
            (|c| c.capital = f64::INFINITY, "capital = inf"),
            (|c| c.capital = f64::NAN, "capital = NaN"),
            (|c| c.z_entry = f64::NAN, "z_entry = NaN"),
            (|c| c.trade_pct = f64::INFINITY, "trade_pct = inf"),
            (|c| c.max_concurrent = 0, "max_concurrent = 0"),
        ];
        super::super::assert_each_refused(&cases, Config::validate);
    }
}
