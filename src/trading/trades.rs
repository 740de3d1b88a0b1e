//! Closed trades: the round trips of the fills, with exact money. The report's win
//! rate, profit factor and average win and loss are computed over these. A trade's P&L
//! is a [`Price`], summed in integers from the fills' exact prices and commissions, so
//! the trades of a flat book add up, to the 1/10,000 of a dollar, to the cash its fills
//! moved, as the ledger does.
//!
//! # How fills make trades
//!
//! Fills are taken in execution order. A position is keyed by (book, instrument key):
//! the strategy whose book the fill moves, and [`Instrument::key`](super::Instrument::key).
//! It is opened by the fill that takes its quantity away from zero, and that fill's
//! order reference names the trade. Fills that reduce it are attributed to that trade;
//! when the quantity returns to zero that instrument's lifecycle ends. A trade (one
//! opening order reference within a book, possibly several instruments or legs, e.g. a
//! spread or a dispersion basket) is closed when every lifecycle it opened has ended.
//! Its pnl = −Σ quantity × multiplier × price − Σ commission over all its fills;
//! `closed` is the date of the last closing fill. Trades still open are not returned.
//! The output is sorted by (closed, book, order reference).
//!
//! Further rules:
//! - A fill that crosses zero (sells 150 of a long 100) closes the old lifecycle with
//!   the quantity held and opens a new one with the remainder, attributed to the
//!   crossing fill's own order reference. Its commission is split pro rata by quantity:
//!   the closing part is commission × |held| / |fill quantity|, rounded half away from
//!   zero to the 1/10,000 of a dollar, and the opening part is the rest, so the two
//!   parts always add up to the fill's commission exactly.
//! - A fill that *adds* to an open position (or has quantity 0) belongs to the trade
//!   that opened it, whatever its own order reference.
//! - A quantity-0 fill with no open position belongs to no trade and is ignored.
//! - Whether a trade is closed is decided after all fills: if an order reference opens
//!   a new position after its earlier ones have all ended, the trade is open again and
//!   is reported (once, with all its fills) only when that one ends too.
//! - A trade whose pnl does not fit a [`Price`] (beyond ±$922 trillion) is left out.

use super::Fill;
use crate::model::Price;
use chrono::{NaiveDate, NaiveDateTime};
use std::collections::HashMap;

/// A completed round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedTrade {
    /// The book (strategy) it was traded in.
    pub book: String,
    /// The opening order's reference.
    pub order_reference: String,
    /// Date of the earliest fill that opened one of its positions.
    pub opened: NaiveDate,
    /// Date of the last fill that closed one of its positions.
    pub closed: NaiveDate,
    /// The time of that fill (New York): when the trade ended, for the consecutive-loss
    /// pause.
    pub closed_at: NaiveDateTime,
    /// Net of commissions, open and close.
    pub pnl: Price,
}

/// A trade being rebuilt by [`closed_trades`].
struct TradeAcc<'a> {
    book: &'a str,
    order_reference: &'a str,
    opened: NaiveDate,
    closed: Option<NaiveDate>,
    closed_at: Option<NaiveDateTime>,
    open_lifecycles: usize,
    /// In [`Price`] raw units (1/10,000 $); `None` once it has overflowed.
    pnl: Option<i128>,
}

impl TradeAcc<'_> {
    /// Books `quantity` at `unit` (price × multiplier) and a commission, all in raw units.
    fn book(&mut self, quantity: i128, unit: i128, commission: i128) {
        self.pnl = self.pnl.and_then(|pnl| {
            quantity
                .checked_mul(unit)?
                .checked_add(commission)
                .and_then(|cost| pnl.checked_sub(cost))
        });
    }

    /// One of its lifecycles ended on `date`, at `at`.
    fn end_lifecycle(&mut self, date: NaiveDate, at: NaiveDateTime) {
        self.open_lifecycles = self.open_lifecycles.saturating_sub(1);
        self.closed = Some(self.closed.map_or(date, |c| c.max(date)));
        self.closed_at = Some(self.closed_at.map_or(at, |c| c.max(at)));
    }
}

/// The trade named by `fill`'s (book, order reference), created if new; its index.
fn trade_for<'a>(
    trades: &mut Vec<TradeAcc<'a>>,
    by_ref: &mut HashMap<(&'a str, &'a str), usize>,
    fill: &'a Fill,
) -> usize {
    let key = (fill.book.as_str(), fill.order_reference.as_str());
    let t = *by_ref.entry(key).or_insert_with(|| {
        trades.push(TradeAcc {
            book: key.0,
            order_reference: key.1,
            opened: fill.as_of,
            closed: None,
            closed_at: None,
            open_lifecycles: 0,
            pnl: Some(0),
        });
        trades.len() - 1
    });
    trades[t].opened = trades[t].opened.min(fill.as_of);
    t
}

/// `amount × part / whole` rounded half away from zero, for `0 ≤ part ≤ whole` and
/// `whole > 0`: the share of a commission that goes with `part` of a fill's quantity.
fn pro_rata(amount: i64, part: u64, whole: u64) -> i64 {
    debug_assert!(part <= whole && whole > 0);
    // |amount| < 2^63 and part ≤ whole < 2^64: the product and its double fit a u128.
    let n = u128::from(amount.unsigned_abs()) * u128::from(part);
    let d = u128::from(whole);
    // The quotient is at most |amount|, so it fits an i64.
    let q = ((2 * n + d) / (2 * d)) as i64;
    if amount < 0 {
        -q
    } else {
        q
    }
}

/// The round trips of `fills` (given in execution order); see the [module
/// documentation](self) for how fills are attributed to trades.
pub fn closed_trades(fills: &[Fill]) -> Vec<ClosedTrade> {
    // Open position per (book, instrument key): signed quantity and owning trade.
    let mut positions: HashMap<(&str, String), (i128, usize)> = HashMap::new();
    let mut trades: Vec<TradeAcc> = Vec::new();
    let mut by_ref: HashMap<(&str, &str), usize> = HashMap::new();

    for f in fills {
        let key = (f.book.as_str(), f.instrument.key());
        let q = i128::from(f.quantity);
        let unit = i128::from(f.price.raw()) * i128::from(f.instrument.multiplier());
        let commission = i128::from(f.commission.raw());
        match positions.get(&key).copied() {
            None => {
                if q == 0 {
                    continue;
                }
                let t = trade_for(&mut trades, &mut by_ref, f);
                trades[t].book(q, unit, commission);
                trades[t].open_lifecycles += 1;
                positions.insert(key, (q, t));
            }
            Some((held, t)) => {
                let after = held + q;
                if after == 0 {
                    trades[t].book(q, unit, commission);
                    trades[t].end_lifecycle(f.as_of, f.filled_at);
                    positions.remove(&key);
                } else if after.signum() == held.signum() {
                    trades[t].book(q, unit, commission);
                    positions.insert(key, (after, t));
                } else {
                    // Crosses zero: `-held` closes the old lifecycle, `after` opens a new
                    // one; the commission is split by |quantity|. Crossing means
                    // 0 < |held| < |q| ≤ 2^63, so both fit a u64.
                    let close_commission = i128::from(pro_rata(
                        f.commission.raw(),
                        held.unsigned_abs() as u64,
                        f.quantity.unsigned_abs(),
                    ));
                    trades[t].book(-held, unit, close_commission);
                    trades[t].end_lifecycle(f.as_of, f.filled_at);
                    let n = trade_for(&mut trades, &mut by_ref, f);
                    trades[n].book(after, unit, commission - close_commission);
                    trades[n].open_lifecycles += 1;
                    positions.insert(key, (after, n));
                }
            }
        }
    }

    let mut out: Vec<ClosedTrade> = trades
        .into_iter()
        .filter(|t| t.open_lifecycles == 0)
        .filter_map(|t| {
            Some(ClosedTrade {
                book: t.book.to_string(),
                order_reference: t.order_reference.to_string(),
                opened: t.opened,
                closed: t.closed?,
                closed_at: t.closed_at?,
                pnl: Price::from_raw(i64::try_from(t.pnl?).ok()?),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (a.closed, &a.book, &a.order_reference).cmp(&(b.closed, &b.book, &b.order_reference))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OptionRight;
    use crate::testkit;
    use crate::trading::{CashKind, Instrument};
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn usd(dollars: f64) -> Price {
        Price::from_f64(dollars)
    }

    fn call(underlying: &str, strike: f64) -> Instrument {
        testkit::option(underlying, OptionRight::Call, strike)
    }

    fn put(underlying: &str, strike: f64) -> Instrument {
        testkit::option(underlying, OptionRight::Put, strike)
    }

    fn shares(symbol: &str) -> Instrument {
        Instrument::Equity {
            symbol: symbol.to_string(),
        }
    }

    /// A fill at 09:35 on `as_of`; the multiplier is the instrument's (100 for the
    /// options, 1 for shares).
    fn fill(
        as_of: &str,
        order_ref: &str,
        book: &str,
        instrument: &Instrument,
        quantity: i64,
        price: f64,
        commission: f64,
    ) -> Fill {
        Fill {
            order_reference: order_ref.to_string(),
            leg: 0,
            as_of: d(as_of),
            filled_at: d(as_of).and_hms_opt(9, 35, 0).unwrap(),
            book: book.to_string(),
            instrument: instrument.clone(),
            quantity,
            price: usd(price),
            commission: usd(commission),
            cash_kind: CashKind::Premium,
            exec_id: format!("{order_ref}#{}@{as_of}", instrument.key()),
            broker_order_id: None,
        }
    }

    #[test]
    fn single_leg_round_trip_net_of_commissions() {
        // Buy 2 calls at 1.50 (−300), sell 2 at 2.00 (+400), commissions 1.30 + 1.30:
        // pnl = −(2·1.5·100) − (−2·2·100) − 2.6 = 97.4.
        let c1 = call("SPY", 100.0);
        let fills = [
            fill("2024-03-01", "lc:1", "long_call", &c1, 2, 1.5, 1.3),
            fill("2024-03-05", "lc:2", "long_call", &c1, -2, 2.0, 1.3),
        ];
        let t = closed_trades(&fills);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].book, "long_call");
        assert_eq!(t[0].order_reference, "lc:1");
        assert_eq!(t[0].opened, d("2024-03-01"));
        assert_eq!(t[0].closed, d("2024-03-05"));
        assert_eq!(t[0].pnl, usd(97.4));
    }

    #[test]
    fn spread_legs_closed_on_different_days_are_one_trade() {
        // Order ps:1 sells the 100 put at 2.00 (+200) and buys the 95 put at 0.80 (−80).
        // The short leg is bought back at 1.00 on 03-04 (−100), the long leg sold at 0.30
        // on 03-06 (+30). Four commissions of 0.65: pnl = 200 − 80 − 100 + 30 − 2.6 = 47.4.
        let (p100, p95) = (put("SPY", 100.0), put("SPY", 95.0));
        let mut fills = vec![
            fill("2024-03-01", "ps:1", "put_spread", &p100, -1, 2.0, 0.65),
            fill("2024-03-01", "ps:1", "put_spread", &p95, 1, 0.8, 0.65),
            fill("2024-03-04", "ps:2", "put_spread", &p100, 1, 1.0, 0.65),
        ];
        // One leg closed: the trade is still open.
        assert!(closed_trades(&fills).is_empty());
        fills.push(fill(
            "2024-03-06",
            "ps:3",
            "put_spread",
            &p95,
            -1,
            0.3,
            0.65,
        ));
        let t = closed_trades(&fills);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].order_reference, "ps:1");
        assert_eq!(t[0].opened, d("2024-03-01"));
        assert_eq!(t[0].closed, d("2024-03-06"));
        assert_eq!(t[0].pnl, usd(47.4));
    }

    #[test]
    fn partial_close_stays_open_and_scaling_in_belongs_to_the_opener() {
        // Buy 3 at 10 (order a), add 1 at 12 (order b: belongs to a's trade), sell 2 at
        // 11 (order c): 2 left, no trade.
        let xyz = shares("XYZ");
        let mut fills = vec![
            fill("2024-03-01", "a", "s", &xyz, 3, 10.0, 1.0),
            fill("2024-03-02", "b", "s", &xyz, 1, 12.0, 1.0),
            fill("2024-03-03", "c", "s", &xyz, -2, 11.0, 1.0),
        ];
        assert!(closed_trades(&fills).is_empty());
        // Sell the last 2 at 13: pnl = −30 − 12 + 22 + 26 − 4 = 2; one trade, "a".
        fills.push(fill("2024-03-04", "d", "s", &xyz, -2, 13.0, 1.0));
        let t = closed_trades(&fills);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].order_reference, "a");
        assert_eq!(t[0].closed, d("2024-03-04"));
        assert_eq!(t[0].pnl, usd(2.0));
    }

    #[test]
    fn crossing_fill_splits_into_two_lifecycles() {
        // A buys 100 at 10 (commission 1). B sells 150 at 12 (commission 3): 100 close A's
        // position (commission 3·100/150 = 2), 50 open a short under B (commission 1).
        // C buys 50 back at 11 (commission 0.5).
        // A: −1000 − 1 + 1200 − 2 = 197, closed 03-02.
        // B: +600 − 1 − 550 − 0.5 = 48.5, opened 03-02, closed 03-03.
        let xyz = shares("XYZ");
        let fills = [
            fill("2024-03-01", "A", "s", &xyz, 100, 10.0, 1.0),
            fill("2024-03-02", "B", "s", &xyz, -150, 12.0, 3.0),
            fill("2024-03-03", "C", "s", &xyz, 50, 11.0, 0.5),
        ];
        let t = closed_trades(&fills);
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].order_reference.as_str(), t[0].opened, t[0].closed),
            ("A", d("2024-03-01"), d("2024-03-02"))
        );
        assert_eq!(t[0].pnl, usd(197.0));
        assert_eq!(
            (t[1].order_reference.as_str(), t[1].opened, t[1].closed),
            ("B", d("2024-03-02"), d("2024-03-03"))
        );
        assert_eq!(t[1].pnl, usd(48.5));
        // Without C, B's short is still open: only A.
        let t = closed_trades(&fills[..2]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].order_reference, "A");
    }

    #[test]
    fn a_commission_split_across_zero_adds_up_to_the_fill_commission() {
        // Each case: A buys `held` at 10 with no commission; B sells `held + rest` at 10
        // with commission `c`; C buys `rest` back at 10 with no commission. Prices cancel,
        // so A's pnl is minus the closing part of c and B's minus the opening part.
        // (held, rest, c in raw 1/10,000 $, closing part)
        let cases: [(i64, i64, i64, i64); 6] = [
            (1, 2, 10_000, 3_333), // $1 × 1/3 = 0.33333… → 0.3333; the rest 0.6667
            (2, 1, 10_000, 6_667), // $1 × 2/3 = 0.66666… → 0.6667; the rest 0.3333
            (1, 1, 5, 3),          // 0.0005 / 2 = 0.00025 → half away from zero: 0.0003
            (1, 2, 1, 0),          // 0.0001 / 3 → 0: all of it opens the new lifecycle
            (1, 1, -5, -3),        // a rebate rounds away from zero too
            (7, 6, 6_500, 3_500),  // 0.65 × 7/13 = 0.35 exactly
        ];
        let xyz = shares("XYZ");
        for (held, rest, c, closing) in cases {
            let mut b = fill("2024-03-02", "B", "s", &xyz, -(held + rest), 10.0, 0.0);
            b.commission = Price::from_raw(c);
            let fills = [
                fill("2024-03-01", "A", "s", &xyz, held, 10.0, 0.0),
                b,
                fill("2024-03-03", "C", "s", &xyz, rest, 10.0, 0.0),
            ];
            let t = closed_trades(&fills);
            assert_eq!(t.len(), 2, "{held} {rest} {c}");
            assert_eq!(t[0].order_reference, "A");
            assert_eq!(t[0].pnl, Price::from_raw(-closing), "{held} {rest} {c}");
            assert_eq!(t[1].order_reference, "B");
            assert_eq!(t[1].pnl, Price::from_raw(closing - c), "{held} {rest} {c}");
            assert_eq!(t[0].pnl + t[1].pnl, -Price::from_raw(c), "exactly the fee");
        }
    }

    #[test]
    fn books_on_the_same_instrument_are_kept_apart() {
        // alpha buys 1, beta sells 1 of the same contract: net zero across books, but
        // each book's position is open. Then alpha sells at 1.50:
        // alpha pnl = −100 + 150 − 0.65·2 = 48.7; beta still open.
        let c1 = call("SPY", 100.0);
        let mut fills = vec![
            fill("2024-03-01", "alpha:1", "alpha", &c1, 1, 1.0, 0.65),
            fill("2024-03-01", "beta:1", "beta", &c1, -1, 1.1, 0.65),
        ];
        assert!(closed_trades(&fills).is_empty());
        fills.push(fill("2024-03-02", "alpha:2", "alpha", &c1, -1, 1.5, 0.65));
        let t = closed_trades(&fills);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].book.as_str(), t[0].order_reference.as_str()),
            ("alpha", "alpha:1")
        );
        assert_eq!(t[0].pnl, usd(48.7));
    }

    #[test]
    fn expiry_settlement_at_zero_closes_the_trade() {
        // Sell 1 put at 1.20 (+120, commission 0.65); it expires worthless: the settlement
        // fill buys it back at 0 with no commission. pnl = 120 − 0.65 = 119.35, named by the
        // opening order, closed on expiry.
        let p90 = put("SPY", 90.0);
        let fills = [
            fill("2024-03-01", "sp:1", "short_put", &p90, -1, 1.2, 0.65),
            fill("2024-03-15", "expire:P90", "short_put", &p90, 1, 0.0, 0.0),
        ];
        let t = closed_trades(&fills);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].order_reference, "sp:1");
        assert_eq!(t[0].closed, d("2024-03-15"));
        assert_eq!(t[0].pnl, usd(119.35));
    }

    #[test]
    fn assignment_closes_the_option_and_opens_shares() {
        // A short put assigned: the option closes at 0 and 100 shares arrive at the
        // strike. The put trade is closed (pnl +120 − 0.65); the shares are a new, open
        // position under the expiry reference, so nothing else is returned.
        let p90 = put("SPY", 90.0);
        let fills = [
            fill("2024-03-01", "sp:1", "short_put", &p90, -1, 1.2, 0.65),
            fill("2024-03-15", "expire:P90", "short_put", &p90, 1, 0.0, 0.0),
            fill(
                "2024-03-15",
                "expire:P90",
                "short_put",
                &shares("SPY"),
                100,
                90.0,
                0.0,
            ),
        ];
        let t = closed_trades(&fills);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].order_reference, "sp:1");
        assert_eq!(t[0].pnl, usd(119.35));
    }

    #[test]
    fn basket_and_output_order() {
        // A three-leg basket (order b:1) closed leg by leg on three days, and a single-leg
        // trade in another book closed on the basket's last day: sorted by
        // (closed, book, order reference). A third trade closes earlier and comes first.
        let (idx, aaa, bbb) = (call("QQQ", 440.0), call("AAPL", 200.0), call("NVDA", 120.0));
        let (c1, c2) = (call("SPY", 100.0), call("SPY", 105.0));
        let fills = [
            fill("2024-03-01", "b:1", "dispersion", &idx, -1, 5.0, 1.0),
            fill("2024-03-01", "b:1", "dispersion", &aaa, 1, 2.0, 1.0),
            fill("2024-03-01", "b:1", "dispersion", &bbb, 1, 3.0, 1.0),
            fill("2024-03-01", "z:1", "aaa_strategy", &c1, 1, 1.0, 0.0),
            fill("2024-03-02", "y:1", "zzz_strategy", &c2, 1, 1.0, 0.0),
            fill("2024-03-03", "y:2", "zzz_strategy", &c2, -1, 2.0, 0.0),
            fill("2024-03-04", "b:2", "dispersion", &idx, 1, 4.0, 1.0),
            fill("2024-03-05", "b:3", "dispersion", &aaa, -1, 2.5, 1.0),
            fill("2024-03-06", "b:4", "dispersion", &bbb, -1, 2.0, 1.0),
            fill("2024-03-06", "z:2", "aaa_strategy", &c1, -1, 0.5, 0.0),
        ];
        let t = closed_trades(&fills);
        let keys: Vec<(&str, &str, NaiveDate)> = t
            .iter()
            .map(|t| (t.book.as_str(), t.order_reference.as_str(), t.closed))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("zzz_strategy", "y:1", d("2024-03-03")),
                ("aaa_strategy", "z:1", d("2024-03-06")),
                ("dispersion", "b:1", d("2024-03-06")),
            ]
        );
        // Basket: +500 − 200 − 300 − 400 + 250 + 200 − 6 = 44.
        assert_eq!(t[2].pnl, usd(44.0));
        assert_eq!(t[1].pnl, usd(-50.0));
        assert_eq!(t[0].pnl, usd(100.0));
    }

    #[test]
    fn a_pnl_beyond_a_price_is_left_out() {
        // 10^9 shares bought at $900 million and given away: −$9 × 10^17, beyond a Price.
        let xyz = shares("XYZ");
        let fills = [
            fill("2024-03-01", "huge", "s", &xyz, 1_000_000_000, 9.0e8, 0.0),
            fill("2024-03-02", "gone", "s", &xyz, -1_000_000_000, 0.0, 0.0),
            fill("2024-03-01", "small", "t", &xyz, 1, 1.0, 0.0),
            fill("2024-03-02", "small:2", "t", &xyz, -1, 2.0, 0.0),
        ];
        let t = closed_trades(&fills);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].order_reference.as_str(), t[0].pnl),
            ("small", usd(1.0))
        );
    }

    proptest! {
        // A fixed seed: the same cases on every run (tests are deterministic).
        #![proptest_config(proptest::test_runner::Config {
            rng_seed: proptest::test_runner::RngSeed::Fixed(20_261_202),
            ..proptest::test_runner::Config::default()
        })]
        /// When every position is flat at the end, every trade is closed and the trades'
        /// pnl adds up, exactly, to the cash flow of all the fills.
        #[test]
        fn closed_trades_conserve_cash(
            raw in proptest::collection::vec(
                (0usize..2, 0usize..3, 0usize..4,
                 prop_oneof![-5i64..=-1, 1i64..=5], 0i64..1_000, 0i64..200, 0i64..2),
                0..60,
            )
        ) {
            let instruments = [shares("XYZ"), call("SPY", 100.0), put("SPY", 95.0)];
            let base = d("2024-03-01");
            let mut day = 0;
            let mut fills = Vec::new();
            let mut net: HashMap<(usize, usize), i64> = HashMap::new();
            let at = |day: i64| base + chrono::Duration::days(day);
            let make = |day: i64, order_ref: String, s: usize, i: usize, q: i64, price, commission| {
                let as_of = at(day);
                Fill {
                    order_reference: order_ref,
                    leg: 0,
                    as_of,
                    filled_at: as_of.and_hms_opt(9, 35, 0).unwrap(),
                    book: format!("s{s}"),
                    instrument: instruments[i].clone(),
                    quantity: q,
                    price,
                    commission,
                    cash_kind: CashKind::Premium,
                    exec_id: String::new(),
                    broker_order_id: None,
                }
            };
            for (k, &(s, i, o, q, cents, comm, step)) in raw.iter().enumerate() {
                day += step;
                fills.push(make(
                    day,
                    format!("o{o}:{}", k / 3),
                    s,
                    i,
                    q,
                    Price::from_cents(cents),
                    Price::from_cents(comm),
                ));
                *net.entry((s, i)).or_default() += q;
            }
            let mut open: Vec<_> = net.into_iter().filter(|e| e.1 != 0).collect();
            open.sort();
            for ((s, i), q) in open {
                fills.push(make(day + 1, "flat".into(), s, i, -q, usd(1.0), usd(0.1)));
            }
            let cash: Price = fills.iter().map(|f| f.premium_cash() - f.commission).sum();
            let trades = closed_trades(&fills);
            let pnl: Price = trades.iter().map(|t| t.pnl).sum();
            prop_assert_eq!(pnl, cash);
            // Every opening (book, order reference) is reported, once.
            let mut keys: Vec<_> = trades.iter().map(|t| (&t.book, &t.order_reference)).collect();
            let n = keys.len();
            keys.sort();
            keys.dedup();
            prop_assert_eq!(keys.len(), n);
            for w in trades.windows(2) {
                prop_assert!(
                    (w[0].closed, &w[0].book, &w[0].order_reference)
                        <= (w[1].closed, &w[1].book, &w[1].order_reference)
                );
            }
            for t in &trades {
                prop_assert!(t.opened <= t.closed);
            }
        }
    }
}
