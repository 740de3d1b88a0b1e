//! Named fixtures shared by the strategy, margin and job tests (NautilusTrader's
//! `stubs`): a SPY chain, positions by structure with round numbers whose margins are
//! worked out by hand in the tests that use them, and a day's state.

use crate::model::identifiers::OccSymbol;
use crate::model::instrument::{Instrument, OptionContract};
use crate::model::{OptionRight, Price};
use crate::trading::margin::MarginLeg;
use crate::trading::strategies::{ChainRow, DayState, OpenTrade, UnderlyingDay};
use chrono::NaiveDate;
use std::collections::HashMap;

/// The session the fixtures are quoted on.
pub fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 3, 14).unwrap()
}

/// The expiry of the fixtures' options (34 days after [`as_of`]).
pub fn expiry() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 4, 17).unwrap()
}

/// Underlying prices: SPY 100 (a round toy price), QQQ 440, AAPL 200, NVDA 120.
pub fn spots() -> HashMap<String, Price> {
    [
        ("SPY", 100.0),
        ("QQQ", 440.0),
        ("AAPL", 200.0),
        ("NVDA", 120.0),
    ]
    .into_iter()
    .map(|(s, p)| (s.to_string(), Price::from_f64(p)))
    .collect()
}

/// A listed option on `underlying` (root = underlying) at [`expiry`].
pub fn option(underlying: &str, right: OptionRight, strike: f64) -> Instrument {
    let occ = OccSymbol::new_checked(underlying, expiry(), right, Price::from_f64(strike))
        .expect("a valid fixture");
    Instrument::Option(OptionContract::listed(underlying, occ).expect("a valid fixture"))
}

fn leg(underlying: &str, right: OptionRight, strike: f64, quantity: i64, mark: f64) -> MarginLeg {
    MarginLeg {
        instrument: option(underlying, right, strike),
        quantity,
        mark: Price::from_f64(mark),
    }
}

/// Short `n` SPY 95 puts at 1.50 (SPY at 100).
pub fn naked_put(n: i64) -> Vec<MarginLeg> {
    vec![leg("SPY", OptionRight::Put, 95.0, -n, 1.50)]
}

/// Short `n` SPY 110 calls at 1.00 (SPY at 100).
pub fn naked_call(n: i64) -> Vec<MarginLeg> {
    vec![leg("SPY", OptionRight::Call, 110.0, -n, 1.00)]
}

/// A put credit spread: short `n` SPY 100 puts at 3.00, long `n` 95 puts at 1.50.
pub fn put_vertical(n: i64) -> Vec<MarginLeg> {
    vec![
        leg("SPY", OptionRight::Put, 100.0, -n, 3.00),
        leg("SPY", OptionRight::Put, 95.0, n, 1.50),
    ]
}

/// Short `n` SPY 100 straddles: call at 3.00, put at 2.80.
pub fn short_straddle(n: i64) -> Vec<MarginLeg> {
    vec![
        leg("SPY", OptionRight::Call, 100.0, -n, 3.00),
        leg("SPY", OptionRight::Put, 100.0, -n, 2.80),
    ]
}

/// `n` SPY iron condors: puts 95/90 (5 wide), calls 105/112 (7 wide).
pub fn iron_condor(n: i64) -> Vec<MarginLeg> {
    vec![
        leg("SPY", OptionRight::Put, 95.0, -n, 1.50),
        leg("SPY", OptionRight::Put, 90.0, n, 0.60),
        leg("SPY", OptionRight::Call, 105.0, -n, 1.40),
        leg("SPY", OptionRight::Call, 112.0, n, 0.30),
    ]
}

/// A dispersion basket: the QQQ 440 straddle (call 10, put 9) against 2 AAPL 200
/// straddles (call 5, put 4.50) and 3 NVDA 120 straddles (call 4, put 3.50). With
/// `short_index`, the index is sold and the components bought; else the reverse.
pub fn dispersion_basket(short_index: bool) -> Vec<MarginLeg> {
    let s = if short_index { -1 } else { 1 };
    vec![
        leg("QQQ", OptionRight::Call, 440.0, s, 10.0),
        leg("QQQ", OptionRight::Put, 440.0, s, 9.0),
        leg("AAPL", OptionRight::Call, 200.0, -2 * s, 5.0),
        leg("AAPL", OptionRight::Put, 200.0, -2 * s, 4.5),
        leg("NVDA", OptionRight::Call, 120.0, -3 * s, 4.0),
        leg("NVDA", OptionRight::Put, 120.0, -3 * s, 3.5),
    ]
}

/// A SPY chain at [`as_of`]: calls and puts from 80 to 120 every 5, expiring at
/// [`expiry`], with a flat 20% IV, bids from a simple smile and volume 100.
pub fn spy_chain() -> Vec<ChainRow> {
    let mut rows = Vec::new();
    let t_years = (expiry() - as_of()).num_days() as f64 / 365.0;
    for k in (80..=120).step_by(5) {
        for right in [OptionRight::Call, OptionRight::Put] {
            let strike = k as f64;
            let bs = crate::pricing::bsm::BsmInputs {
                right,
                spot: 100.0,
                strike,
                t_years,
                rate: 0.04,
                div_yield: 0.0,
                vol: 0.20,
            };
            let mid = bs.price().max(0.05);
            let Instrument::Option(o) = option("SPY", right, strike) else {
                unreachable!()
            };
            rows.push(ChainRow {
                contract: o.contract(),
                underlying: "SPY".into(),
                expiry: expiry(),
                strike,
                right,
                bid: ((mid - 0.05) * 100.0).round() / 100.0,
                ask: ((mid + 0.05) * 100.0).round() / 100.0,
                iv: Some(0.20),
                delta: Some(bs.delta()),
                volume: 100,
                t_years,
                instrument: Instrument::Option(o),
            });
        }
    }
    rows
}

/// A day with the SPY chain (HV30 15%) and no open trades.
pub fn spy_day() -> DayState {
    let mut day = DayState::new(as_of(), as_of().and_hms_opt(9, 35, 0).unwrap());
    day.underlyings.insert(
        "SPY".into(),
        UnderlyingDay {
            spot: 100.0,
            hv30: Some(0.15),
            rate: 0.04,
            div_yield: 0.0,
        },
    );
    day.chains.insert("SPY".into(), spy_chain());
    day
}

/// An open trade of `strategy` made of `legs`, opened on [`as_of`].
pub fn open_trade(strategy: &str, reference: &str, legs: Vec<MarginLeg>) -> OpenTrade {
    OpenTrade {
        order_ref: reference.to_string(),
        strategy: strategy.to_string(),
        opened: as_of(),
        legs,
        entry_cash: None,
        entry_prices: Vec::new(),
    }
}

/// The wheel's book after a put was assigned: 200 SPY shares held by
/// `cash_secured_put`, and one short SPY 95 put still open.
pub fn book_with_short_put() -> DayState {
    let mut day = spy_day();
    day.shares.insert("SPY".into(), 200);
    day.open_trades.push(open_trade(
        "cash_secured_put",
        "cash_secured_put:2025-03-14T0935:0",
        naked_put(1),
    ));
    day
}

/// A covered call: 100 SPY shares and one short SPY 110 call by `covered_call`.
pub fn covered_call_position() -> DayState {
    let mut day = spy_day();
    day.shares.insert("SPY".into(), 100);
    day.open_trades.push(open_trade(
        "covered_call",
        "covered_call:2025-03-14T0935:0",
        naked_call(1),
    ));
    day
}

/// A listed option on `underlying` expiring on `expiry`.
pub fn option_on(
    underlying: &str,
    expiry: NaiveDate,
    right: OptionRight,
    strike: f64,
) -> Instrument {
    let occ = OccSymbol::new_checked(underlying, expiry, right, Price::from_f64(strike))
        .expect("a valid fixture");
    Instrument::Option(OptionContract::listed(underlying, occ).expect("a valid fixture"))
}

/// A same-day (0DTE) chain on `underlying` at `spot`: calls and puts from `from` to
/// `to` every `step`, expiring on [`as_of`] with `t_years` left, priced by
/// Black–Scholes at a flat `iv`, a 0.02 spread around the model price (at least
/// 0.01 bid), volume 1,000.
pub fn zero_dte_chain(
    underlying: &str,
    spot: f64,
    (from, to, step): (f64, f64, f64),
    iv: f64,
    t_years: f64,
) -> Vec<ChainRow> {
    let mut rows = Vec::new();
    let mut k = from;
    while k <= to + 1e-9 {
        for right in [OptionRight::Call, OptionRight::Put] {
            let bs = crate::pricing::bsm::BsmInputs {
                right,
                spot,
                strike: k,
                t_years,
                rate: 0.04,
                div_yield: 0.0,
                vol: iv,
            };
            let mid = bs.price();
            let inst = option_on(underlying, as_of(), right, k);
            rows.push(ChainRow {
                contract: inst.key(),
                underlying: underlying.into(),
                expiry: as_of(),
                strike: k,
                right,
                bid: (((mid - 0.01) * 100.0).round() / 100.0).max(0.01),
                ask: (((mid + 0.01) * 100.0).round() / 100.0).max(0.02),
                iv: Some(iv),
                delta: Some(bs.delta()),
                volume: 1_000,
                t_years,
                instrument: inst,
            });
        }
        k += step;
    }
    rows
}

/// A day at `hh:mm` on [`as_of`] (a regular session, close 16:00) with `underlying`
/// at `spot` and its 0DTE chain, history (10-day realized `hv10`, 30-day ATM IV
/// `iv30`).
pub fn intraday_day(
    hh: u32,
    mm: u32,
    underlying: &str,
    spot: f64,
    chain: Vec<ChainRow>,
    (hv10, iv30): (f64, f64),
) -> DayState {
    let mut day = DayState::new(as_of(), as_of().and_hms_opt(hh, mm, 0).unwrap());
    day.session.open = as_of().and_hms_opt(9, 30, 0);
    day.session.close = as_of().and_hms_opt(16, 0, 0);
    day.underlyings.insert(
        underlying.into(),
        UnderlyingDay {
            spot,
            hv30: Some(hv10),
            rate: 0.04,
            div_yield: 0.0,
        },
    );
    day.chains.insert(underlying.into(), chain);
    day.session.history.insert(
        underlying.into(),
        crate::trading::strategies::History {
            prev_close: Some(spot),
            hv10: Some(hv10),
            atm_iv30: Some(iv30),
            iv_rank: Some(50.0),
            ret_5d: Some(0.0),
        },
    );
    day
}
