//! `dispersion` (seeds: the dispersion trader and library): trade the index's implied
//! correlation against its components. When the 60-session Z-score of implied
//! correlation is above +1.5 (correlation rich), sell the index ATM straddle and buy
//! ATM straddles on the top 10 components; below −1.5, the reverse. Premium budget:
//! `trade_pct` of capital, half on the index leg, half split equally among the
//! components, each leg at least one contract. At most `max_concurrent` trades open;
//! `expire_positions` closes each after `hold_sessions` sessions. With fewer than 60
//! sessions of history there is no Z-score: no trade, and the reason.

use super::{ChainRow, DayState, Outcome, Strategy};
use crate::model::{OptionRight, Price};
use crate::trading::broker::naked_requirement;
use crate::trading::risk::Proposal;
use crate::trading::{Instrument, Leg, Order};
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
        if self.capital.is_nan() || self.capital <= 0.0 {
            return Err(format!(
                "capital = {}: expected a positive amount of dollars",
                self.capital
            ));
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
        let (u, chain, as_of) = (
            day.underlyings.get(symbol)?,
            day.chains.get(symbol)?,
            day.as_of?,
        );
        let expiry = super::nearest_expiry(
            chain.iter(),
            as_of,
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

fn option(r: &ChainRow) -> Instrument {
    Instrument::Option {
        contract: r.contract.clone(),
        underlying: r.underlying.clone(),
        expiry: r.expiry,
        strike: Price::from_f64(r.strike),
        right: r.right,
        multiplier: 100,
    }
}

impl Strategy for Dispersion {
    fn name(&self) -> &'static str {
        "dispersion"
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
        // Open trades: each holds the index straddle (two open instruments).
        let open = day.open_count(self.name(), &c.index) / 2;
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
        let cost = |(a, b): (&ChainRow, &ChainRow)| (a.ask + b.ask) * 100.0;
        let n_index = ((budget / 2.0 / cost((ic, ip))).floor() as i64).max(1);
        let mut legs = vec![
            Leg {
                instrument: option(ic),
                quantity: index_side * n_index,
            },
            Leg {
                instrument: option(ip),
                quantity: index_side * n_index,
            },
        ];
        let per_comp = budget / 2.0 / comps.len() as f64;
        for (cc, cp) in &comps {
            let n = ((per_comp / cost((cc, cp))).floor() as i64).max(1);
            legs.push(Leg {
                instrument: option(cc),
                quantity: -index_side * n,
            });
            legs.push(Leg {
                instrument: option(cp),
                quantity: -index_side * n,
            });
        }
        // Margin of each short straddle (Reg-T): the greater of the call's and the put's
        // naked requirement, plus the other side's premium.
        let mut requirement = Price::ZERO;
        for pair in legs.chunks(2) {
            let (
                Leg {
                    instrument: ci,
                    quantity: q,
                },
                Leg { instrument: pi, .. },
            ) = (&pair[0], &pair[1]);
            if *q >= 0 {
                continue;
            }
            let (
                Instrument::Option {
                    underlying,
                    strike,
                    contract: cc,
                    ..
                },
                Instrument::Option { contract: pc, .. },
            ) = (ci, pi)
            else {
                continue;
            };
            let spot = Price::from_f64(
                day.underlyings
                    .get(underlying)
                    .map(|u| u.spot)
                    .unwrap_or(strike.to_f64()),
            );
            let bid_of = |contract: &str| {
                day.chains
                    .get(underlying)
                    .and_then(|c| c.iter().find(|r| r.contract == contract))
                    .map(|r| Price::from_f64(r.bid))
                    .unwrap_or(Price::ZERO)
            };
            let (call_prem, put_prem) = (bid_of(cc), bid_of(pc));
            let call_req = naked_requirement(OptionRight::Call, spot, *strike, call_prem);
            let put_req = naked_requirement(OptionRight::Put, spot, *strike, put_prem);
            let per = if call_req >= put_req {
                call_req + Price::from_raw(put_prem.raw() * 100)
            } else {
                put_req + Price::from_raw(call_prem.raw() * 100)
            };
            requirement += Price::from_raw(per.raw() * q.abs());
        }
        let as_of = day.as_of.expect("a day has a date");
        out.proposals.push(Proposal {
            strategy: self.name().into(),
            underlying: index.clone(),
            order: Order {
                reference: Order::reference_for(self.name(), as_of, 0),
                strategy: self.name().into(),
                as_of,
                legs,
                limit: None,
            },
            max_loss: None,
            requirement,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trading::strategies::UnderlyingDay;
    use chrono::NaiveDate;

    fn day(z: Result<f64, String>) -> DayState {
        let as_of = NaiveDate::from_ymd_opt(2025, 3, 14).unwrap();
        let expiry = NaiveDate::from_ymd_opt(2025, 4, 17).unwrap();
        let mut d = DayState {
            as_of: Some(as_of),
            ..DayState::default()
        };
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
                contract: format!("{sym} {}", right.code()),
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
        d.open.insert(("dispersion".into(), "QQQ".into()), 6);
        assert!(strategy().propose(&d).skips[0].1.contains("3 trades open"));
    }
}
