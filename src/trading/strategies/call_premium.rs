//! `call_premium` (seed: the daily paper trader): sell overpriced out-of-the-money
//! calls. Universe SPY, VOO, VTI, QQQ with the capital split equally; calls 5–15%
//! out of the money near 30 days; only when option volume is above 10, the bid above
//! $0.10, IV more than 3 vol points above HV30 and the bid more than 5% above the
//! Black–Scholes value at HV30. Size: 5% of the ticker's allocation in premium
//! (contracts = allocation × 5% / (bid × multiplier)), capped so the naked calls'
//! Reg-T margin stays within `max_margin_pct` of the allocation; at most 2 open per
//! ticker; sold at the bid and held to expiry.

use super::{DayState, Outcome, Strategy};
use crate::model::{OptionRight, Price};
use crate::pricing::bsm::BsmInputs;
use crate::trading::margin;
use crate::trading::risk::Proposal;
use crate::trading::{ClientOrderId, Intent, Leg, Order, OrderType};
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
    /// At most this percent of the ticker's allocation held as the trade's margin:
    /// caps the contracts a cheap premium would otherwise buy (100 = the allocation).
    pub max_margin_pct: f64,
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
            max_margin_pct: 100.0,
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
        if !(self.max_margin_pct.is_finite()
            && self.max_margin_pct > 0.0
            && self.max_margin_pct <= 1000.0)
        {
            return Err(format!(
                "max_margin_pct = {}: expected a percent of the ticker's allocation above 0 and at most 1000 (100 = the allocation)",
                self.max_margin_pct
            ));
        }
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
        if !(self.min_bid.is_finite() && self.min_bid >= 0.0) || self.min_volume < 0 {
            return Err(format!(
                "min_bid = {}, min_volume = {}: expected dollars and a count, not negative",
                self.min_bid, self.min_volume
            ));
        }
        if self.max_open_per_ticker == 0 {
            return Err("max_open_per_ticker = 0: expected at least 1".into());
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

    fn symbols(&self) -> Vec<(&'static str, Vec<String>)> {
        vec![("params.tickers", self.config.tickers.clone())]
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
            let as_of = day.as_of;
            let (Some(u), Some(chain)) = (day.underlyings.get(ticker), day.chains.get(ticker))
            else {
                skip("no quote or chain today".into());
                continue;
            };
            let Some(hv30) = u.hv30 else {
                skip("no 30-session historical vol yet".into());
                continue;
            };
            // The expiry nearest the target DTE within the window.
            let expiry = day.choose_expiry(
                ticker,
                chain.iter().filter(|r| r.right == OptionRight::Call),
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
            let multiplier = row.multiplier();
            let by_premium =
                (allocation * c.size_pct / 100.0 / (row.bid * multiplier as f64)).floor() as i64;
            let bid = Price::from_f64(row.bid);
            let spot = Price::from_f64(u.spot);
            let per_contract = margin::naked(
                OptionRight::Call,
                spot,
                Price::from_f64(row.strike),
                bid,
                multiplier,
            );
            let margin_budget = allocation * c.max_margin_pct / 100.0;
            let by_margin = (margin_budget / per_contract.to_f64()).floor() as i64;
            let contracts = by_premium.min(by_margin);
            if contracts < 1 {
                skip(if by_premium < 1 {
                    format!(
                        "{}: {:.0}% of the {:.0} allocation buys less than one contract at {:.2}",
                        row.contract, c.size_pct, allocation, row.bid
                    )
                } else {
                    format!(
                        "{}: one contract holds {per_contract} of margin, more than {:.0}% of the {:.0} allocation",
                        row.contract, c.max_margin_pct, allocation
                    )
                });
                continue;
            }
            let legs = vec![Leg::new(row.instrument.clone(), -contracts).expect("contracts ≥ 1")];
            let marked: Vec<margin::MarginLeg> = legs
                .iter()
                .map(|l| margin::MarginLeg {
                    instrument: l.instrument.clone(),
                    quantity: l.quantity,
                    mark: bid,
                })
                .collect();
            let requirement = margin::requirement(
                &marked,
                &|_| Some(spot),
                self.margin_policy(),
                &mut Default::default(),
            )
            .requirement;
            let id =
                match ClientOrderId::new(Intent::Entry, self.name(), as_of, day.slot(), seq as u32)
                {
                    Ok(id) => id,
                    Err(e) => {
                        skip(e.to_string());
                        continue;
                    }
                };
            out.proposals.push(Proposal {
                strategy: self.name().into(),
                underlying: ticker.clone(),
                order: Order {
                    id,
                    legs,
                    order_type: OrderType::Limit(-bid),
                },
                max_loss: None,
                requirement,
                cash: bid.times(multiplier * contracts),
                numbers: vec![
                    ("iv".into(), iv),
                    ("hv30".into(), hv30),
                    ("bs_value_at_hv30".into(), bs),
                    ("edge".into(), edge),
                    ("delta".into(), row.delta.unwrap_or(f64::NAN)),
                    (
                        "credit".into(),
                        row.bid * multiplier as f64 * contracts as f64,
                    ),
                    ("contracts".into(), contracts as f64),
                    ("contracts_by_premium".into(), by_premium as f64),
                    ("contracts_by_margin".into(), by_margin as f64),
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
        let mut d = DayState::new(as_of, as_of.and_hms_opt(9, 35, 0).unwrap());
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
                instrument: crate::testkit::option("SPY", OptionRight::Call, strike),
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
        let bid = p.order.order_type.limit().unwrap().to_f64().abs();
        // Premium sizing: 5% of 100,000 at the bid. Margin cap: one naked 106 call
        // holds max(20 − 6, 10) + bid per share; 100% of the allocation at most.
        let by_premium = (100_000.0 * 0.05 / (bid * 100.0)).floor() as i64;
        let by_margin = (100_000.0 / ((14.0 + bid) * 100.0)).floor() as i64;
        assert_eq!(p.order.legs[0].quantity, -by_premium.min(by_margin));
        assert!(p.requirement.to_f64() <= 100_000.0);
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
        for i in 0..2 {
            d.open_trades.push(crate::testkit::open_trade(
                "call_premium",
                &format!("call_premium:2025-03-13T0935:{i}"),
                crate::testkit::naked_call(1),
            ));
        }
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
    fn contracts_are_capped_by_the_margin_they_hold() {
        // VTI-like: a cheap call on a $250 underlying. 5% of a 25,000 allocation at a
        // 0.30 bid would sell 41 calls (over a million dollars of notional); one naked
        // 275 call holds max(50 − 25, 25) + 0.30 = 25.30 → 2,530, so 100% of the
        // allocation carries 9.
        let s = CallPremium {
            config: Config {
                tickers: vec!["SPY".into()],
                capital: 25_000.0,
                min_edge_pct: 0.0,
                ..Config::default()
            },
        };
        let mut d = day(275.0, 0.30, 0.40, 50, 0.10);
        d.underlyings.get_mut("SPY").unwrap().spot = 250.0;
        let out = s.propose(&d);
        assert_eq!(out.proposals.len(), 1, "{:?}", out.skips);
        let p = &out.proposals[0];
        assert_eq!(p.order.legs[0].quantity, -9);
        assert_eq!(p.requirement, Price::from_f64(2_530.0 * 9.0));
        // At 10% of the allocation (2,500) not even one contract fits: a reason.
        let s = CallPremium {
            config: Config {
                max_margin_pct: 10.0,
                ..s.config
            },
        };
        let out = s.propose(&d);
        assert!(out.proposals.is_empty());
        assert!(
            out.skips[0].1.contains("holds 2530.00 of margin"),
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

    #[test]
    fn non_finite_and_out_of_range_numbers_are_refused_naming_the_key() {
        type Set = fn(&mut Config);
        let cases: [(Set, &str); 6] = [
            (|c| c.capital = f64::INFINITY, "capital = inf"),
            (|c| c.capital = f64::NAN, "capital = NaN"),
            (|c| c.min_bid = f64::NAN, "min_bid = NaN"),
            (|c| c.size_pct = f64::NAN, "size_pct = NaN"),
            (|c| c.min_edge_pct = f64::INFINITY, "min_edge_pct = inf"),
            (|c| c.max_open_per_ticker = 0, "max_open_per_ticker = 0"),
        ];
        super::super::assert_each_refused(&cases, Config::validate);
    }
}
