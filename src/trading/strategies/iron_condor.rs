//! `iron_condor` (seed: Market Watch bot C, "Calm-Tape Condor"): a 0DTE iron condor
//! on SPX once the morning range has formed (from the open + `morning_minutes`, 10:30
//! on a regular day: the first hour's high and low from the minute bars), only while
//! the price is inside that range and realized vol (10-day) is below implied (30-day
//! ATM). Short strikes at `em_multiple` (1.25, the seed's 1.2–1.5×) × the expected move
//! to expiry from spot, wings `wing_strikes` listed strike(s) beyond (defined risk).
//! Max loss (wider wing − credit) × multiplier × contracts: the narrowest SPX condor
//! (5 points) risks under $500, its profile's default `max_loss_per_trade`; on SPY the
//! bots' $50 applies when the file says so. Exits: 50% of the credit or the auto-close.

use super::intraday::{self, validate_pct, validate_positive};
use super::put_write::credit_spread_legs;
use super::{ChainRow, DayState, ExitSignal, Outcome, Strategy};
use crate::model::{OptionRight, Price};
use crate::trading::margin;
use crate::trading::risk::{Proposal, RiskProfile};
use crate::trading::{ClientOrderId, Intent, Order, OrderType};
use chrono::Duration;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub tickers: Vec<String>,
    pub min_dte: i64,
    pub max_dte: i64,
    /// Minutes after the open the morning range takes to form (60 = the first hour).
    pub morning_minutes: i64,
    /// Short strikes beyond this × the expected move to expiry from spot.
    pub em_multiple: f64,
    /// Long strikes this many listed strikes beyond the shorts.
    pub wing_strikes: usize,
    /// Net credit per share at least this, dollars.
    pub min_credit: f64,
    pub contracts: i64,
    pub max_open_per_ticker: u32,
    pub profit_take_pct: f64,
    /// Close once the loss reaches this percent of the credit (0 = no stop).
    pub stop_loss_pct: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tickers: vec!["SPX".into()],
            min_dte: 0,
            max_dte: 0,
            morning_minutes: 60,
            em_multiple: 1.25,
            wing_strikes: 1,
            min_credit: 0.10,
            contracts: 1,
            max_open_per_ticker: 1,
            profit_take_pct: 50.0,
            stop_loss_pct: 0.0,
        }
    }
}

/// The condor's profile: the bots' rules with the SPX condor's $500 max loss.
pub fn default_risk() -> RiskProfile {
    RiskProfile {
        max_loss_per_trade: 500.0,
        ..RiskProfile::default()
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.tickers.is_empty() {
            return Err("tickers: at least one ticker".into());
        }
        intraday::validate_short_dte(self.min_dte, self.max_dte)?;
        if !(1..=390).contains(&self.morning_minutes) {
            return Err(format!(
                "morning_minutes = {}: expected 1 to 390 minutes",
                self.morning_minutes
            ));
        }
        validate_positive("em_multiple", self.em_multiple)?;
        if !(1..=10).contains(&self.wing_strikes) {
            return Err(format!(
                "wing_strikes = {}: expected 1 to 10 listed strikes",
                self.wing_strikes
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

pub struct IronCondor {
    pub config: Config,
    pub risk: RiskProfile,
}

impl IronCondor {
    fn one(&self, day: &DayState, ticker: &str, seq: usize) -> Result<Proposal, String> {
        let c = &self.config;
        let (u, chain) = intraday::ready(day, self.name(), ticker, c.max_open_per_ticker)?;
        // The morning range: the bars from the open to open + morning_minutes.
        let open_at = intraday::session_open(day).ok_or("no session hours")?;
        let formed = open_at + Duration::minutes(c.morning_minutes);
        if day.quote_time < formed {
            return Err(format!(
                "the morning range forms until {} ({} minutes after the open)",
                formed.format("%H:%M"),
                c.morning_minutes
            ));
        }
        let bars: Vec<_> = day
            .session
            .bars
            .get(ticker)
            .map(|b| b.iter().filter(|b| b.time < formed).collect())
            .unwrap_or_default();
        if bars.is_empty() {
            return Err(format!("no minute bars for {ticker} in the morning range"));
        }
        let high = bars.iter().map(|b| b.high).fold(f64::MIN, f64::max);
        let low = bars.iter().map(|b| b.low).fold(f64::MAX, f64::min);
        if !(u.spot > low && u.spot < high) {
            return Err(format!(
                "{:.2} is outside the morning range {low:.2}–{high:.2}",
                u.spot
            ));
        }
        let h = day.session.history.get(ticker).copied().unwrap_or_default();
        let (Some(iv30), Some(rv10)) = (h.atm_iv30, h.hv10) else {
            return Err("no 30-day ATM IV or 10-day realized vol yet".into());
        };
        if rv10 >= iv30 {
            return Err(format!(
                "10-day realized {:.2}% is not below 30-day ATM IV {:.2}%",
                rv10 * 100.0,
                iv30 * 100.0
            ));
        }
        let expiry = day
            .choose_expiry(ticker, chain.iter(), (c.min_dte, c.min_dte, c.max_dte))
            .ok_or_else(|| {
                format!(
                    "no expiry {}–{} days out (no 0DTE listing that day?)",
                    c.min_dte, c.max_dte
                )
            })?;
        let slice = |right: OptionRight| -> Vec<&ChainRow> {
            let mut v: Vec<&ChainRow> = chain
                .iter()
                .filter(|r| r.expiry == expiry && r.right == right)
                .collect();
            v.sort_by(|a, b| a.strike.total_cmp(&b.strike));
            v
        };
        let (puts, calls) = (slice(OptionRight::Put), slice(OptionRight::Call));
        let t_years = chain
            .iter()
            .find(|r| r.expiry == expiry)
            .map_or(0.0, |r| r.t_years);
        let atm = intraday::atm_iv(chain.iter().filter(|r| r.expiry == expiry), u.spot)
            .ok_or_else(|| format!("no IV at the money for {expiry}"))?;
        let em = intraday::expected_move(u.spot, atm, t_years);
        let (put_at, call_at) = (u.spot - c.em_multiple * em, u.spot + c.em_multiple * em);
        let sp = puts.iter().rposition(|r| r.strike <= put_at);
        let sc = calls.iter().position(|r| r.strike >= call_at);
        let (Some(sp), Some(sc)) = (sp, sc) else {
            return Err(format!(
                "no strikes beyond {put_at:.2} / {call_at:.2} ({} × expected move {em:.2})",
                c.em_multiple
            ));
        };
        let (Some(lp), Some(lc)) = (
            sp.checked_sub(c.wing_strikes).map(|i| puts[i]),
            calls.get(sc + c.wing_strikes).copied(),
        ) else {
            return Err(format!(
                "no wing {} strike(s) beyond the {} put / {} call",
                c.wing_strikes, puts[sp].strike, calls[sc].strike
            ));
        };
        let (sp, sc) = (puts[sp], calls[sc]);
        let px = Price::from_f64;
        let credit = px(sp.bid) + px(sc.bid) - px(lp.ask) - px(lc.ask);
        if credit.to_f64() < c.min_credit {
            return Err(format!(
                "{}/{}p {}/{}c condor: credit {credit} below {:.2}",
                lp.strike, sp.strike, sc.strike, lc.strike, c.min_credit
            ));
        }
        let mult = sp.multiplier();
        let n = c.contracts;
        let width = px((sp.strike - lp.strike).max(lc.strike - sc.strike));
        let max_loss = (width - credit).times(mult * n);
        if max_loss.to_f64() > self.risk.max_loss_per_trade {
            return Err(format!(
                "condor max loss ({width} − {credit}) × {} = {max_loss} exceeds the per-trade limit {:.2}",
                mult * n,
                self.risk.max_loss_per_trade
            ));
        }
        let (legs, marked) = credit_spread_legs(&[(sp, -n), (lp, n), (sc, -n), (lc, n)])?;
        let spot = px(u.spot);
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
                ("morning_high".into(), high),
                ("morning_low".into(), low),
                ("short_put".into(), sp.strike),
                ("short_call".into(), sc.strike),
                ("credit".into(), credit.to_f64() * (mult * n) as f64),
                ("max_loss".into(), max_loss.to_f64()),
            ],
        })
    }
}

impl Strategy for IronCondor {
    fn name(&self) -> &'static str {
        "iron_condor"
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
    use crate::trading::strategies::MinuteBar;

    const T: f64 = 5.5 / (24.0 * 365.0);

    // SPX at 5,000 at hh:mm, 0DTE strikes every 5 from 4,900 to 5,100 at 15% IV; RV10
    // 10%, IV30 14%; the first hour's bars range 4,980–5,020.
    fn day_at(hh: u32, mm: u32, spot: f64) -> DayState {
        let chain = testkit::zero_dte_chain("SPX", spot, (4900.0, 5100.0, 5.0), 0.15, T);
        let mut d = testkit::intraday_day(hh, mm, "SPX", spot, chain, (0.10, 0.14));
        let d0 = testkit::as_of();
        let bars = (0..60)
            .map(|i| MinuteBar {
                time: d0.and_hms_opt(9, 30, 0).unwrap() + Duration::minutes(i),
                open: 5000.0,
                high: if i == 10 { 5020.0 } else { 5001.0 },
                low: if i == 40 { 4980.0 } else { 4999.0 },
                close: 5000.0,
                volume: 100,
            })
            .collect();
        d.session.bars.insert("SPX".into(), bars);
        d
    }

    fn strategy() -> IronCondor {
        IronCondor {
            config: Config::default(),
            risk: default_risk(),
        }
    }

    #[test]
    fn sells_the_condor_beyond_one_and_a_quarter_expected_moves_after_the_first_hour() {
        let out = strategy().propose(&day_at(10, 30, 5000.0));
        assert_eq!(out.proposals.len(), 1, "{:?}", out.skips);
        let p = &out.proposals[0];
        let num = |k: &str| p.numbers.iter().find(|(n, _)| n == k).unwrap().1;
        let em = 5000.0 * 0.15 * T.sqrt();
        // The highest put strike at or below 5,000 − 1.25 EM, the lowest call at or above.
        let sp = ((5000.0 - 1.25 * em) / 5.0).floor() * 5.0;
        let sc = ((5000.0 + 1.25 * em) / 5.0).ceil() * 5.0;
        assert_eq!((num("short_put"), num("short_call")), (sp, sc));
        let strikes: Vec<f64> = p
            .order
            .legs
            .iter()
            .map(|l| l.instrument.as_option().unwrap().strike().to_f64())
            .collect();
        assert_eq!(strikes, vec![sp, sp - 5.0, sc, sc + 5.0]);
        let credit = -p.order.order_type.limit().unwrap();
        assert_eq!(p.max_loss, Some((Price::from_f64(5.0) - credit).times(100)));
        assert!(p.max_loss.unwrap().to_f64() <= 500.0);
    }

    #[test]
    fn waits_for_the_range_stays_inside_it_and_needs_realized_below_implied() {
        let s = strategy();
        let out = s.propose(&day_at(10, 29, 5000.0));
        assert!(
            out.skips[0].1.contains("forms until 10:30"),
            "{:?}",
            out.skips
        );
        // At the range's edge (5,020) it is not inside; a cent within, it is.
        let out = s.propose(&day_at(11, 0, 5020.0));
        assert!(
            out.skips[0].1.contains("outside the morning range"),
            "{:?}",
            out.skips
        );
        assert_eq!(s.propose(&day_at(11, 0, 5019.99)).proposals.len(), 1);
        let mut d = day_at(11, 0, 5000.0);
        d.session.history.get_mut("SPX").unwrap().hv10 = Some(0.14);
        assert!(s.propose(&d).skips[0]
            .1
            .contains("is not below 30-day ATM IV"));
        d.session.history.get_mut("SPX").unwrap().hv10 = Some(0.1399);
        assert_eq!(s.propose(&d).proposals.len(), 1);
        // Under a $50 cap the SPX condor is refused with its numbers.
        let s = IronCondor {
            config: Config::default(),
            risk: RiskProfile::default(),
        };
        assert!(s.propose(&d).skips[0]
            .1
            .contains("exceeds the per-trade limit 50.00"));
    }

    #[test]
    fn exits_at_half_the_credit_or_at_the_auto_close() {
        let s = strategy();
        let mut t = testkit::open_trade(
            "iron_condor",
            "iron_condor:2025-03-14T1030:0",
            testkit::iron_condor(1),
        );
        // Marks: 1.50 − 0.60 + 1.40 − 0.30 = 2.00 → 200 to close; credit 400: P&L 200 = 50%.
        t.entry_cash = Some(Price::from_f64(400.0));
        let mut d = day_at(12, 0, 5000.0);
        d.open_trades.push(t.clone());
        assert_eq!(s.exits(&d)[0].rule, "profit_take");
        t.entry_cash = Some(Price::from_f64(399.99));
        d.open_trades[0] = t.clone();
        assert!(s.exits(&d).is_empty());
        let mut d = day_at(15, 30, 5000.0);
        d.open_trades.push(t);
        assert_eq!(s.exits(&d)[0].rule, "auto_close");
    }

    #[test]
    fn bad_numbers_are_refused_naming_the_key() {
        type Set = fn(&mut Config);
        let cases: [(Set, &str); 4] = [
            (|c| c.morning_minutes = 0, "morning_minutes = 0"),
            (|c| c.em_multiple = -1.0, "em_multiple = -1"),
            (|c| c.wing_strikes = 0, "wing_strikes = 0"),
            (|c| c.tickers.clear(), "tickers"),
        ];
        super::super::assert_each_refused(&cases, Config::validate);
    }
}
