//! `call_premium` (seed: the daily paper trader): sell overpriced out-of-the-money
//! calls. Universe SPY, VOO, VTI, QQQ with the capital split equally; calls 5–15%
//! out of the money near 30 days; only when option volume is above 10, the bid above
//! $0.10, IV more than 3 vol points above HV30 and the bid more than 5% above the
//! Black–Scholes value at HV30. Size: 5% of the ticker's allocation in premium
//! (contracts = allocation × 5% / (bid × 100)); at most 2 open per ticker; sold at
//! the bid and held to expiry.

use super::{DayState, Outcome, Strategy};
use crate::model::{OptionRight, Price};
use crate::pricing::bsm::BsmInputs;
use crate::trading::broker::naked_requirement;
use crate::trading::risk::Proposal;
use crate::trading::{Instrument, Leg, Order};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub tickers: Vec<String>,
    /// Dollars, split equally between the tickers.
    pub capital: f64,
    /// Strike between these percentages out of the money.
    pub otm_min_pct: f64,
    pub otm_max_pct: f64,
    /// The expiry nearest this many calendar days, within [min_dte, max_dte].
    pub target_dte: i64,
    pub min_dte: i64,
    pub max_dte: i64,
    /// Option volume must exceed this.
    pub min_volume: i64,
    /// The bid must exceed this, dollars.
    pub min_bid: f64,
    /// IV must exceed HV30 by more than this many vol points (3 = 3 points).
    pub min_iv_over_hv_pts: f64,
    /// The bid must exceed the Black–Scholes value at HV30 by more than this percent.
    pub min_edge_pct: f64,
    /// Premium per trade as a percent of the ticker's allocation.
    pub size_pct: f64,
    pub max_open_per_ticker: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tickers: ["SPY", "VOO", "VTI", "QQQ"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            capital: 100_000.0,
            otm_min_pct: 5.0,
            otm_max_pct: 15.0,
            target_dte: 30,
            min_dte: 20,
            max_dte: 45,
            min_volume: 10,
            min_bid: 0.10,
            min_iv_over_hv_pts: 3.0,
            min_edge_pct: 5.0,
            size_pct: 5.0,
            max_open_per_ticker: 2,
        }
    }
}

impl Config {
    /// Refuse values out of range or in the wrong unit, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        let pct = |k: &str, v: f64| -> Result<(), String> {
            if !(0.0..=100.0).contains(&v) {
                return Err(format!(
                    "{k} = {v}: expected a percent between 0 and 100 (5 = 5%)"
                ));
            }
            if v > 0.0 && v < 0.5 {
                return Err(format!(
                    "{k} = {v}: looks like a fraction; this key is in percent (5 = 5%)"
                ));
            }
            Ok(())
        };
        pct("otm_min_pct", self.otm_min_pct)?;
        pct("otm_max_pct", self.otm_max_pct)?;
        pct("min_edge_pct", self.min_edge_pct)?;
        pct("size_pct", self.size_pct)?;
        if self.otm_min_pct > self.otm_max_pct {
            return Err(format!(
                "otm_min_pct = {} is above otm_max_pct = {}",
                self.otm_min_pct, self.otm_max_pct
            ));
        }
        if !(0.0..=50.0).contains(&self.min_iv_over_hv_pts)
            || (self.min_iv_over_hv_pts > 0.0 && self.min_iv_over_hv_pts < 0.5)
        {
            return Err(format!(
                "min_iv_over_hv_pts = {}: expected vol points between 0.5 and 50 (3 = 3 vol points), or 0",
                self.min_iv_over_hv_pts
            ));
        }
        if self.capital <= 0.0 || !self.capital.is_finite() {
            return Err(format!(
                "capital = {}: expected a positive amount of dollars",
                self.capital
            ));
        }
        if self.min_bid < 0.0 || self.min_volume < 0 {
            return Err("min_bid and min_volume must not be negative".into());
        }
        super::validate_dte(self.min_dte, self.target_dte, self.max_dte)?;
        if self.tickers.is_empty() {
            return Err("tickers: at least one ticker".into());
        }
        Ok(())
    }
}

pub struct CallPremium {
    pub config: Config,
}

impl Strategy for CallPremium {
    fn name(&self) -> &'static str {
        "call_premium"
    }

    fn propose(&self, day: &DayState) -> Outcome {
        let c = &self.config;
        let mut out = Outcome::default();
        let allocation = c.capital / c.tickers.len() as f64;
        for (seq, ticker) in c.tickers.iter().enumerate() {
            let mut skip = |why: String| out.skips.push((ticker.clone(), why));
            let open = day.open_count(self.name(), ticker);
            if open >= c.max_open_per_ticker {
                skip(format!("{open} open (at most {})", c.max_open_per_ticker));
                continue;
            }
            let (Some(u), Some(chain), Some(as_of)) = (
                day.underlyings.get(ticker),
                day.chains.get(ticker),
                day.as_of,
            ) else {
                skip("no quote or chain today".into());
                continue;
            };
            let Some(hv30) = u.hv30 else {
                skip("no 30-session historical vol yet".into());
                continue;
            };
            // The expiry nearest the target DTE within the window.
            let expiry = super::nearest_expiry(
                chain.iter().filter(|r| r.right == OptionRight::Call),
                as_of,
                (c.min_dte, c.target_dte, c.max_dte),
            );
            let Some(expiry) = expiry else {
                skip(format!(
                    "no expiry between {} and {} days",
                    c.min_dte, c.max_dte
                ));
                continue;
            };
            let mut best: Option<(f64, f64, &super::ChainRow, f64)> = None; // (edge, bs, row, iv)
            let mut seen = 0;
            for r in chain
                .iter()
                .filter(|r| r.right == OptionRight::Call && r.expiry == expiry)
            {
                let otm_pct = (r.strike / u.spot - 1.0) * 100.0;
                if otm_pct < c.otm_min_pct || otm_pct > c.otm_max_pct {
                    continue;
                }
                seen += 1;
                let Some(iv) = r.iv else { continue };
                if r.volume <= c.min_volume
                    || r.bid <= c.min_bid
                    || iv <= hv30 + c.min_iv_over_hv_pts / 100.0
                {
                    continue;
                }
                let bs = BsmInputs {
                    right: OptionRight::Call,
                    spot: u.spot,
                    strike: r.strike,
                    t_years: r.t_years,
                    rate: u.rate,
                    div_yield: u.div_yield,
                    vol: hv30,
                }
                .price();
                if r.bid <= bs * (1.0 + c.min_edge_pct / 100.0) {
                    continue;
                }
                let edge = if bs > 0.0 {
                    r.bid / bs - 1.0
                } else {
                    f64::INFINITY
                };
                if best.as_ref().is_none_or(|b| edge > b.0) {
                    best = Some((edge, bs, r, iv));
                }
            }
            let Some((edge, bs, row, iv)) = best else {
                skip(format!(
                    "none of {seen} calls {}–{}% out of the money expiring {expiry} passes volume > {}, bid > {:.2}, IV > HV30 {:.1} + {} pts and bid > BS(HV30) + {}%",
                    c.otm_min_pct, c.otm_max_pct, c.min_volume, c.min_bid, hv30 * 100.0, c.min_iv_over_hv_pts, c.min_edge_pct
                ));
                continue;
            };
            let contracts = (allocation * c.size_pct / 100.0 / (row.bid * 100.0)).floor() as i64;
            if contracts < 1 {
                skip(format!(
                    "{}: {:.0}% of the {:.0} allocation buys less than one contract at {:.2}",
                    row.contract, c.size_pct, allocation, row.bid
                ));
                continue;
            }
            let bid = Price::from_f64(row.bid);
            let instrument = Instrument::Option {
                contract: row.contract.clone(),
                underlying: ticker.clone(),
                expiry,
                strike: Price::from_f64(row.strike),
                right: OptionRight::Call,
                multiplier: 100,
            };
            let per_contract = naked_requirement(
                OptionRight::Call,
                Price::from_f64(u.spot),
                Price::from_f64(row.strike),
                bid,
            );
            out.proposals.push(Proposal {
                strategy: self.name().into(),
                underlying: ticker.clone(),
                order: Order {
                    reference: Order::reference_for(self.name(), as_of, seq as u32),
                    strategy: self.name().into(),
                    as_of,
                    legs: vec![Leg {
                        instrument,
                        quantity: -contracts,
                    }],
                    limit: Some(-bid),
                },
                max_loss: None,
                requirement: Price::from_raw(per_contract.raw() * contracts),
                numbers: vec![
                    ("iv".into(), iv),
                    ("hv30".into(), hv30),
                    ("bs_value_at_hv30".into(), bs),
                    ("edge".into(), edge),
                    ("delta".into(), row.delta.unwrap_or(f64::NAN)),
                    ("credit".into(), row.bid * 100.0 * contracts as f64),
                    ("contracts".into(), contracts as f64),
                ],
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trading::strategies::{ChainRow, UnderlyingDay};
    use chrono::NaiveDate;

    fn day(strike: f64, bid: f64, iv: f64, volume: i64, hv30: f64) -> DayState {
        let as_of = NaiveDate::from_ymd_opt(2025, 3, 14).unwrap();
        let expiry = NaiveDate::from_ymd_opt(2025, 4, 17).unwrap();
        let mut d = DayState {
            as_of: Some(as_of),
            ..DayState::default()
        };
        d.underlyings.insert(
            "SPY".into(),
            UnderlyingDay {
                spot: 100.0,
                hv30: Some(hv30),
                rate: 0.04,
                div_yield: 0.0,
            },
        );
        d.chains.insert(
            "SPY".into(),
            vec![ChainRow {
                contract: "SPY   250417C00106000".into(),
                underlying: "SPY".into(),
                expiry,
                strike,
                right: OptionRight::Call,
                bid,
                ask: bid + 0.02,
                iv: Some(iv),
                delta: Some(0.2),
                volume,
                t_years: 34.0 / 365.0,
            }],
        );
        d
    }

    fn strategy() -> CallPremium {
        CallPremium {
            config: Config {
                tickers: vec!["SPY".into()],
                capital: 100_000.0,
                ..Config::default()
            },
        }
    }

    fn bs(strike: f64, vol: f64) -> f64 {
        BsmInputs {
            right: OptionRight::Call,
            spot: 100.0,
            strike,
            t_years: 34.0 / 365.0,
            rate: 0.04,
            div_yield: 0.0,
            vol,
        }
        .price()
    }

    #[test]
    fn enters_just_inside_every_threshold_and_not_at_them() {
        let s = strategy();
        let hv = 0.15;
        // A 6%-OTM call: BS at HV30, bid 20% above it, IV well above HV.
        let fair = bs(106.0, hv);
        let good = day(106.0, (fair * 1.2).max(0.2), 0.25, 11, hv);
        let out = s.propose(&good);
        assert_eq!(out.proposals.len(), 1, "{:?}", out.skips);
        let p = &out.proposals[0];
        assert_eq!(
            p.order.legs[0].quantity,
            -((100_000.0 * 0.05 / (p.order.limit.unwrap().to_f64().abs() * 100.0)).floor() as i64)
        );
        assert!(p.numbers.iter().any(|(k, _)| k == "edge"));
        // Volume must exceed 10.
        assert!(s
            .propose(&day(106.0, (fair * 1.2).max(0.2), 0.25, 10, hv))
            .proposals
            .is_empty());
        // Bid must exceed 0.10.
        let cheap_fair = bs(114.0, hv);
        assert!(
            cheap_fair * 1.06 < 0.10,
            "setup: a far call whose fair value is tiny"
        );
        assert!(s
            .propose(&day(114.0, 0.10, 0.35, 50, hv))
            .proposals
            .is_empty());
        assert_eq!(
            s.propose(&day(114.0, 0.11, 0.35, 50, hv)).proposals.len(),
            1
        );
        // IV must exceed HV30 + 3 points: at exactly 18% it does not, at 18.01% it does.
        assert!(s
            .propose(&day(106.0, (fair * 1.2).max(0.2), 0.18, 50, hv))
            .proposals
            .is_empty());
        assert_eq!(
            s.propose(&day(106.0, (fair * 1.2).max(0.2), 0.1801, 50, hv))
                .proposals
                .len(),
            1
        );
        // Bid must exceed BS(HV30) by more than 5%.
        assert!(s
            .propose(&day(106.0, fair * 1.05, 0.25, 50, hv))
            .proposals
            .is_empty());
        assert_eq!(
            s.propose(&day(106.0, fair * 1.051 + 0.0001, 0.25, 50, hv))
                .proposals
                .len(),
            1
        );
        // Moneyness: 4.9% is too close, 15.1% too far.
        assert!(s
            .propose(&day(104.9, 1.0, 0.3, 50, hv))
            .proposals
            .is_empty());
        assert!(s
            .propose(&day(115.1, 0.2, 0.5, 50, hv))
            .proposals
            .is_empty());
    }

    #[test]
    fn at_most_two_open_per_ticker_and_every_pass_has_a_reason() {
        let s = strategy();
        let fair = bs(106.0, 0.15);
        let mut d = day(106.0, fair * 1.2, 0.25, 50, 0.15);
        d.open.insert(("call_premium".into(), "SPY".into()), 2);
        let out = s.propose(&d);
        assert!(out.proposals.is_empty());
        assert!(
            out.skips[0].1.contains("2 open (at most 2)"),
            "{:?}",
            out.skips
        );
        let out = s.propose(&day(106.0, fair * 1.2, 0.10, 50, 0.15));
        assert!(
            out.skips[0].1.contains("none of 1 calls"),
            "{:?}",
            out.skips
        );
    }

    #[test]
    fn wrong_units_and_negative_sizes_are_refused_naming_the_key() {
        let bad = Config {
            otm_min_pct: 0.05,
            ..Config::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("otm_min_pct = 0.05: looks like a fraction"));
        let bad = Config {
            size_pct: -5.0,
            ..Config::default()
        };
        assert!(bad.validate().unwrap_err().contains("size_pct"));
        let bad = Config {
            min_iv_over_hv_pts: 0.03,
            ..Config::default()
        };
        assert!(bad.validate().unwrap_err().contains("min_iv_over_hv_pts"));
        assert!(Config::default().validate().is_ok());
    }
}
