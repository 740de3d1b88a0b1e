//! The wheel: `cash_secured_put` sells out-of-the-money puts with the strike × 100 held
//! as collateral; an assigned put becomes shares; `covered_call` sells calls against
//! shares held (100 per contract); an assigned call delivers them. Both pick the expiry
//! nearest `target_dte` and the strike whose delta is nearest `target_delta`, when the
//! bid, volume and IV-over-HV conditions hold. Both are secured (collateral or shares),
//! so they carry no max-loss figure for the risk gate; buying power bounds them.

use super::{ChainRow, DayState, Outcome, Strategy};
use crate::model::{OptionRight, Price};
use crate::trading::margin::{self, MarginLeg, Policy};
use crate::trading::risk::Proposal;
use crate::trading::settlement::OnAssignment;
use crate::trading::{ClientOrderId, Intent, Leg, Order, OrderType};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub tickers: Vec<String>,
    /// Dollars of collateral per ticker (cash_secured_put).
    pub capital_per_ticker: f64,
    pub target_dte: i64,
    pub min_dte: i64,
    pub max_dte: i64,
    /// |delta| of the strike to sell (0.25 = 25 delta).
    pub target_delta: f64,
    /// Only strikes with |delta| within this distance of the target.
    pub delta_tolerance: f64,
    pub min_bid: f64,
    pub min_volume: i64,
    /// IV must exceed HV30 by more than this many vol points (0 = IV above HV).
    pub min_iv_over_hv_pts: f64,
    pub max_open_per_ticker: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tickers: vec!["SPY".into(), "QQQ".into()],
            capital_per_ticker: 60_000.0,
            target_dte: 30,
            min_dte: 20,
            max_dte: 45,
            target_delta: 0.25,
            delta_tolerance: 0.10,
            min_bid: 0.10,
            min_volume: 10,
            min_iv_over_hv_pts: 0.0,
            max_open_per_ticker: 1,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.01..=0.99).contains(&self.target_delta) {
            return Err(format!("target_delta = {}: expected an absolute delta between 0.01 and 0.99 (0.25 = 25 delta)", self.target_delta));
        }
        if !(0.0..=0.5).contains(&self.delta_tolerance) {
            return Err(format!(
                "delta_tolerance = {}: expected 0 to 0.5",
                self.delta_tolerance
            ));
        }
        if !(self.capital_per_ticker.is_finite() && self.capital_per_ticker > 0.0) {
            return Err(format!(
                "capital_per_ticker = {}: expected a positive amount of dollars",
                self.capital_per_ticker
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
        if !(0.0..=50.0).contains(&self.min_iv_over_hv_pts)
            || (self.min_iv_over_hv_pts > 0.0 && self.min_iv_over_hv_pts < 0.5)
        {
            return Err(format!("min_iv_over_hv_pts = {}: expected vol points (3 = 3 points) between 0.5 and 50, or 0", self.min_iv_over_hv_pts));
        }
        super::validate_dte(self.min_dte, self.target_dte, self.max_dte)?;
        if self.tickers.is_empty() {
            return Err("tickers: at least one ticker".into());
        }
        Ok(())
    }

    /// The option to sell on one ticker, or why there is none.
    fn pick<'a>(
        &self,
        day: &'a DayState,
        ticker: &str,
        right: OptionRight,
    ) -> Result<(&'a ChainRow, f64, f64), String> {
        let (Some(u), Some(chain)) = (day.underlyings.get(ticker), day.chains.get(ticker)) else {
            return Err("no quote or chain today".into());
        };
        let Some(hv30) = u.hv30 else {
            return Err("no 30-session historical vol yet".into());
        };
        let expiry = day
            .choose_expiry(
                ticker,
                chain.iter().filter(|r| r.right == right),
                (self.min_dte, self.target_dte, self.max_dte),
            )
            .ok_or_else(|| {
                format!(
                    "no expiry between {} and {} days",
                    self.min_dte, self.max_dte
                )
            })?;
        chain
            .iter()
            .filter(|r| r.right == right && r.expiry == expiry)
            .filter_map(|r| Some((r, r.delta?.abs(), r.iv?)))
            .filter(|(r, d, iv)| {
                (d - self.target_delta).abs() <= self.delta_tolerance
                    && r.bid > self.min_bid
                    && r.volume > self.min_volume
                    && *iv > hv30 + self.min_iv_over_hv_pts / 100.0
            })
            .min_by(|a, b| (a.1 - self.target_delta).abs().total_cmp(&(b.1 - self.target_delta).abs()))
            .map(|(r, _, iv)| (r, iv, hv30))
            .ok_or_else(|| {
                format!(
                    "no {} near {:.0} delta expiring {expiry} with bid > {:.2}, volume > {} and IV > HV30 {:.1} + {} pts",
                    if right == OptionRight::Put { "put" } else { "call" },
                    self.target_delta * 100.0,
                    self.min_bid,
                    self.min_volume,
                    hv30 * 100.0,
                    self.min_iv_over_hv_pts
                )
            })
    }
}

/// A proposal to sell `contracts` of `row`, margined by `policy` (with `free_shares`
/// of the underlying available to cover calls).
#[allow(clippy::too_many_arguments)]
fn sell(
    strategy: &'static str,
    ticker: &str,
    seq: usize,
    day: &DayState,
    row: &ChainRow,
    contracts: i64,
    policy: Policy,
    free_shares: i64,
    numbers: Vec<(String, f64)>,
) -> Result<Proposal, String> {
    let bid = Price::from_f64(row.bid);
    let legs = vec![Leg::new(row.instrument.clone(), -contracts).map_err(|e| e.to_string())?];
    let marked = [MarginLeg {
        instrument: row.instrument.clone(),
        quantity: -contracts,
        mark: bid,
    }];
    let spot = day.underlyings.get(ticker).map(|u| Price::from_f64(u.spot));
    let requirement = margin::requirement(
        &marked,
        &|_| spot,
        policy,
        &mut [(ticker.to_string(), free_shares)].into(),
    )
    .requirement;
    let id = ClientOrderId::new(Intent::Entry, strategy, day.as_of, day.slot(), seq as u32)
        .map_err(|e| e.to_string())?;
    Ok(Proposal {
        strategy: strategy.into(),
        underlying: ticker.to_string(),
        order: Order {
            id,
            legs,
            order_type: OrderType::Limit(-bid),
        },
        max_loss: None,
        requirement,
        cash: bid.times(row.multiplier() * contracts),
        numbers,
    })
}

pub struct CashSecuredPut {
    pub config: Config,
}

impl Strategy for CashSecuredPut {
    fn name(&self) -> &'static str {
        "cash_secured_put"
    }

    /// Puts secured by strike × multiplier in cash.
    fn margin_policy(&self) -> Policy {
        Policy::CASH_SECURED
    }

    /// An assigned put becomes shares the wheel sells calls on.
    fn on_assignment(&self) -> OnAssignment {
        OnAssignment::KeepShares
    }

    fn symbols(&self) -> Vec<(&'static str, Vec<String>)> {
        vec![("params.tickers", self.config.tickers.clone())]
    }

    fn propose(&self, day: &DayState) -> Outcome {
        let c = &self.config;
        let mut out = Outcome::default();
        for (seq, t) in c.tickers.iter().enumerate() {
            let open = day.open_count(self.name(), t);
            if open >= c.max_open_per_ticker {
                out.skips.push((
                    t.clone(),
                    format!("{open} open (at most {})", c.max_open_per_ticker),
                ));
                continue;
            }
            if day.shares.get(t).copied().unwrap_or(0) > 0 {
                out.skips.push((
                    t.clone(),
                    "holding assigned shares: the wheel sells calls on them first".into(),
                ));
                continue;
            }
            match c.pick(day, t, OptionRight::Put) {
                Err(why) => out.skips.push((t.clone(), why)),
                Ok((row, iv, hv30)) => {
                    let per =
                        margin::cash_secured_put(Price::from_f64(row.strike), row.multiplier());
                    let contracts = (c.capital_per_ticker / per.to_f64()).floor() as i64;
                    if contracts < 1 {
                        out.skips.push((
                            t.clone(),
                            format!(
                                "{:.0} of capital does not secure one {} put ({} collateral)",
                                c.capital_per_ticker, row.strike, per
                            ),
                        ));
                        continue;
                    }
                    let numbers = vec![
                        ("iv".into(), iv),
                        ("hv30".into(), hv30),
                        ("delta".into(), row.delta.unwrap_or(f64::NAN)),
                        (
                            "credit".into(),
                            row.bid * row.multiplier() as f64 * contracts as f64,
                        ),
                        ("collateral".into(), per.to_f64() * contracts as f64),
                        ("contracts".into(), contracts as f64),
                    ];
                    match sell(
                        self.name(),
                        t,
                        seq,
                        day,
                        row,
                        contracts,
                        self.margin_policy(),
                        0,
                        numbers,
                    ) {
                        Ok(p) => out.proposals.push(p),
                        Err(why) => out.skips.push((t.clone(), why)),
                    }
                }
            }
        }
        out
    }
}

pub struct CoveredCall {
    pub config: Config,
}

impl Strategy for CoveredCall {
    fn name(&self) -> &'static str {
        "covered_call"
    }

    /// Calls covered by the shares held.
    fn margin_policy(&self) -> Policy {
        Policy::COVERED
    }

    /// An assigned call delivers the shares the wheel holds.
    fn on_assignment(&self) -> OnAssignment {
        OnAssignment::DeliverFromHoldings
    }

    fn symbols(&self) -> Vec<(&'static str, Vec<String>)> {
        vec![("params.tickers", self.config.tickers.clone())]
    }

    fn propose(&self, day: &DayState) -> Outcome {
        let c = &self.config;
        let mut out = Outcome::default();
        for (seq, t) in c.tickers.iter().enumerate() {
            let shares = day.shares.get(t).copied().unwrap_or(0);
            let per = day
                .chains
                .get(t)
                .and_then(|c| c.first())
                .map_or(100, |r| r.multiplier());
            let covered = per * day.short_contracts(self.name(), t, OptionRight::Call);
            let free = (shares - covered).max(0) / per;
            if free < 1 {
                out.skips.push((
                    t.clone(),
                    format!("{shares} shares held, {covered} already covered: nothing to cover"),
                ));
                continue;
            }
            match c.pick(day, t, OptionRight::Call) {
                Err(why) => out.skips.push((t.clone(), why)),
                Ok((row, iv, hv30)) => {
                    let numbers = vec![
                        ("iv".into(), iv),
                        ("hv30".into(), hv30),
                        ("delta".into(), row.delta.unwrap_or(f64::NAN)),
                        (
                            "credit".into(),
                            row.bid * row.multiplier() as f64 * free as f64,
                        ),
                        ("shares_covered".into(), (row.multiplier() * free) as f64),
                        ("contracts".into(), free as f64),
                    ];
                    let free_shares = shares - covered;
                    match sell(
                        self.name(),
                        t,
                        seq,
                        day,
                        row,
                        free,
                        self.margin_policy(),
                        free_shares,
                        numbers,
                    ) {
                        Ok(p) => out.proposals.push(p),
                        Err(why) => out.skips.push((t.clone(), why)),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trading::strategies::UnderlyingDay;
    use chrono::NaiveDate;

    fn day(right: OptionRight, delta: f64, bid: f64, iv: f64) -> DayState {
        let as_of = NaiveDate::from_ymd_opt(2025, 3, 14).unwrap();
        let mut d = DayState::new(as_of, as_of.and_hms_opt(9, 35, 0).unwrap());
        d.underlyings.insert(
            "SPY".into(),
            UnderlyingDay {
                spot: 500.0,
                hv30: Some(0.15),
                rate: 0.04,
                div_yield: 0.0,
            },
        );
        d.chains.insert(
            "SPY".into(),
            vec![ChainRow {
                instrument: crate::testkit::option("SPY", right, 480.0),
                contract: "SPY   250417P00480000".into(),
                underlying: "SPY".into(),
                expiry: NaiveDate::from_ymd_opt(2025, 4, 17).unwrap(),
                strike: 480.0,
                right,
                bid,
                ask: bid + 0.05,
                iv: Some(iv),
                delta: Some(delta),
                volume: 100,
                t_years: 34.0 / 365.0,
            }],
        );
        d
    }

    fn cfg() -> Config {
        Config {
            tickers: vec!["SPY".into()],
            ..Config::default()
        }
    }

    #[test]
    fn cash_secured_put_sizes_by_collateral_and_respects_thresholds() {
        let s = CashSecuredPut { config: cfg() };
        let out = s.propose(&day(OptionRight::Put, -0.25, 4.0, 0.18));
        assert_eq!(out.proposals.len(), 1, "{:?}", out.skips);
        let p = &out.proposals[0];
        // 60,000 of capital secures one 480 put (48,000).
        assert_eq!(p.order.legs[0].quantity, -1);
        assert_eq!(p.requirement, Price::from_f64(48_000.0));
        // Delta 0.25 ± 0.10: 0.35 is in, 0.36 out.
        assert_eq!(
            s.propose(&day(OptionRight::Put, -0.35, 4.0, 0.18))
                .proposals
                .len(),
            1
        );
        assert!(s
            .propose(&day(OptionRight::Put, -0.3501, 4.0, 0.18))
            .proposals
            .is_empty());
        // IV must be above HV30 (15%).
        assert!(s
            .propose(&day(OptionRight::Put, -0.25, 4.0, 0.15))
            .proposals
            .is_empty());
        // Holding assigned shares: the wheel turns to calls.
        let mut d = day(OptionRight::Put, -0.25, 4.0, 0.18);
        d.shares.insert("SPY".into(), 100);
        assert!(s.propose(&d).skips[0].1.contains("assigned shares"));
    }

    #[test]
    fn covered_call_needs_uncovered_shares() {
        let s = CoveredCall { config: cfg() };
        let mut d = day(OptionRight::Call, 0.27, 3.0, 0.18);
        assert!(s.propose(&d).skips[0].1.contains("nothing to cover"));
        d.shares.insert("SPY".into(), 250);
        let out = s.propose(&d);
        assert_eq!(
            out.proposals[0].order.legs[0].quantity, -2,
            "250 shares cover 2 calls"
        );
        assert_eq!(out.proposals[0].requirement, Price::ZERO);
        // One open trade of 2 contracts covers 200 of the 250 shares: nothing left.
        d.open_trades.push(crate::testkit::open_trade(
            "covered_call",
            "covered_call:2025-03-13T0935:0",
            crate::testkit::naked_call(2),
        ));
        assert!(s.propose(&d).proposals.is_empty(), "already covered");
        // With 350 shares, one more contract.
        d.shares.insert("SPY".into(), 350);
        assert_eq!(s.propose(&d).proposals[0].order.legs[0].quantity, -1);
    }

    #[test]
    fn wrong_units_are_refused() {
        assert!(Config {
            target_delta: 25.0,
            ..cfg()
        }
        .validate()
        .unwrap_err()
        .contains("target_delta"));
        assert!(Config {
            capital_per_ticker: -1.0,
            ..cfg()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn non_finite_and_out_of_range_numbers_are_refused_naming_the_key() {
        type Set = fn(&mut Config);
        let cases: [(Set, &str); 6] = [
            (
                |c| c.capital_per_ticker = f64::INFINITY,
                "capital_per_ticker = inf",
            ),
            (|c| c.target_delta = f64::NAN, "target_delta = NaN"),
            (
                |c| c.delta_tolerance = f64::INFINITY,
                "delta_tolerance = inf",
            ),
            (|c| c.min_bid = f64::INFINITY, "min_bid = inf"),
            (
                |c| c.min_iv_over_hv_pts = f64::NAN,
                "min_iv_over_hv_pts = NaN",
            ),
            (|c| c.max_open_per_ticker = 0, "max_open_per_ticker = 0"),
        ];
        super::super::assert_each_refused(&cases, Config::validate);
    }
}
