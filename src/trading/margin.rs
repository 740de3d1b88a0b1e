//! Margin and collateral by structure, Reg-T style, in one place for the strategies
//! (sizing), the risk gate (buying power) and the paper broker's account.
//!
//! Per underlying, a trade's option legs are recognised as structures, cheapest first:
//! * short calls covered by shares the account holds (when the trade's policy says
//!   covered): nothing beyond the shares;
//! * verticals (a short option paired with a long one of the same right expiring no
//!   earlier): the strike width × multiplier, or nothing for a debit spread;
//! * an iron condor (a call vertical and a put vertical): only the wider side, since
//!   both cannot lose at once;
//! * a short straddle or strangle (naked call and naked put): the greater naked
//!   requirement plus the other side's premium;
//! * a cash-secured put: strike × multiplier;
//! * a naked option: premium + max(20% of the underlying − the amount out of the
//!   money, 10% of the underlying for calls / of the strike for puts), × multiplier;
//! * long options and long shares: paid in full, nothing more; short shares 150%;
//! * futures: the exchange's initial margin per contract ([`super::futures`]).
//!
//! Premium received is already in cash, so buying power is cash − requirement, as a
//! broker shows it. Source: FINRA Rule 4210(f)(2) and Cboe's Margin Manual (2000),
//! "Short Puts/Calls", "Spreads", "Straddles/Combinations".

use crate::model::instrument::{Instrument, OptionContract};
use crate::model::{OptionRight, Price};
use std::collections::HashMap;

/// How a trade's short puts are secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCover {
    /// Strike × multiplier in cash (the wheel's cash-secured puts).
    Cash,
    /// Reg-T naked requirement.
    RegT,
}

/// How a trade was approved to be carried: its strategy's margin policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub puts: PutCover,
    /// Short calls are covered by shares the account holds (covered calls).
    pub calls_covered_by_shares: bool,
}

impl Policy {
    pub const NAKED: Policy = Policy {
        puts: PutCover::RegT,
        calls_covered_by_shares: false,
    };
    pub const CASH_SECURED: Policy = Policy {
        puts: PutCover::Cash,
        calls_covered_by_shares: false,
    };
    pub const COVERED: Policy = Policy {
        puts: PutCover::RegT,
        calls_covered_by_shares: true,
    };
}

/// One leg as margin sees it: the instrument, the signed quantity and its mark per
/// unit (the premium of a short option).
#[derive(Debug, Clone, PartialEq)]
pub struct MarginLeg {
    pub instrument: Instrument,
    pub quantity: i64,
    pub mark: Price,
}

/// A trade's requirement and the structures it was recognised as.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Margin {
    pub requirement: Price,
    pub structures: Vec<String>,
}

/// Round dollars up to the cent (a requirement is never rounded in the account's favour).
fn up_to_cent(dollars: f64) -> Price {
    Price::from_cents((dollars * 100.0 - 1e-9).ceil() as i64)
}

/// Reg-T requirement of one naked short option contract, premium included.
pub fn naked(
    right: OptionRight,
    spot: Price,
    strike: Price,
    premium: Price,
    multiplier: i64,
) -> Price {
    let (s, k, p) = (spot.to_f64(), strike.to_f64(), premium.to_f64());
    let otm = match right {
        OptionRight::Call => (k - s).max(0.0),
        OptionRight::Put => (s - k).max(0.0),
    };
    let floor = match right {
        OptionRight::Call => 0.10 * s,
        OptionRight::Put => 0.10 * k,
    };
    up_to_cent(((0.20 * s - otm).max(floor) + p) * multiplier as f64)
}

/// Collateral of one cash-secured put contract.
pub fn cash_secured_put(strike: Price, multiplier: i64) -> Price {
    strike.times(multiplier)
}

/// One contract of an option leg, for pairing.
#[derive(Debug, Clone)]
struct Unit<'a> {
    o: &'a OptionContract,
    mark: Price,
}

fn expand<'a>(legs: &'a [MarginLeg], right: OptionRight, short: bool) -> Vec<Unit<'a>> {
    let mut out = Vec::new();
    for l in legs {
        if let Instrument::Option(o) = &l.instrument {
            if o.right() == right && (l.quantity < 0) == short {
                for _ in 0..l.quantity.unsigned_abs() {
                    out.push(Unit { o, mark: l.mark });
                }
            }
        }
    }
    out
}

/// Pair short options with long ones of the same right (verticals). Returns the
/// requirement of each pair and the shorts left unpaired.
fn verticals<'a>(shorts: Vec<Unit<'a>>, mut longs: Vec<Unit<'a>>) -> (Vec<Price>, Vec<Unit<'a>>) {
    let mut pairs = Vec::new();
    let mut left = Vec::new();
    for s in shorts {
        // The long that protects best: the nearest strike on the protective side,
        // expiring no earlier.
        let best = longs
            .iter()
            .enumerate()
            .filter(|(_, l)| l.o.expiry() >= s.o.expiry() && l.o.multiplier == s.o.multiplier)
            .min_by_key(|(_, l)| {
                let width = match s.o.right() {
                    OptionRight::Call => l.o.strike() - s.o.strike(),
                    OptionRight::Put => s.o.strike() - l.o.strike(),
                };
                width.raw()
            })
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let l = longs.swap_remove(i);
                let width = match s.o.right() {
                    OptionRight::Call => l.o.strike() - s.o.strike(),
                    OptionRight::Put => s.o.strike() - l.o.strike(),
                };
                pairs.push(width.max(Price::ZERO).times(s.o.multiplier));
            }
            None => left.push(s),
        }
    }
    (pairs, left)
}

/// The requirement of one trade's open legs. `spot` gives an underlying's price (the
/// strike stands in when there is none); `free_shares` is the account's long shares
/// per underlying not yet covering a call, drawn down by covered calls.
pub fn requirement(
    legs: &[MarginLeg],
    spot: &dyn Fn(&str) -> Option<Price>,
    policy: Policy,
    free_shares: &mut HashMap<String, i64>,
) -> Margin {
    let mut out = Margin::default();
    let note = |m: &mut Margin, s: &str, amount: Price| {
        m.requirement += amount;
        if !m.structures.iter().any(|x| x == s) {
            m.structures.push(s.to_string());
        }
    };
    let mut underlyings: Vec<&str> = legs.iter().map(|l| l.instrument.underlying()).collect();
    underlyings.sort_unstable();
    underlyings.dedup();
    for u in underlyings {
        let mine: Vec<MarginLeg> = legs
            .iter()
            .filter(|l| l.instrument.underlying() == u)
            .cloned()
            .collect();
        for l in &mine {
            match &l.instrument {
                Instrument::Equity { .. } if l.quantity < 0 => {
                    let value = spot(u).unwrap_or(l.mark).times(-l.quantity);
                    note(&mut out, "short shares", up_to_cent(value.to_f64() * 1.5));
                }
                Instrument::Equity { .. } => note(&mut out, "shares", Price::ZERO),
                Instrument::Future(f) => {
                    // The exchange's initial margin per contract (trading::futures);
                    // a product optdesk does not know: 10% of notional.
                    let amount = match super::futures::product(&f.root) {
                        Some(p) => p.initial_margin.times(l.quantity.abs()),
                        None => {
                            let notional = spot(u)
                                .unwrap_or(l.mark)
                                .times(f.multiplier * l.quantity.abs());
                            up_to_cent(notional.to_f64() * 0.10)
                        }
                    };
                    note(&mut out, "future", amount);
                }
                Instrument::Option(_) => {}
            }
        }
        let mut short_calls = expand(&mine, OptionRight::Call, true);
        let long_calls = expand(&mine, OptionRight::Call, false);
        let short_puts = expand(&mine, OptionRight::Put, true);
        let long_puts = expand(&mine, OptionRight::Put, false);
        if !long_calls.is_empty() || !long_puts.is_empty() {
            note(&mut out, "long options", Price::ZERO);
        }
        // Covered calls first: they hold nothing beyond the shares.
        if policy.calls_covered_by_shares {
            let free = free_shares.entry(u.to_string()).or_default();
            short_calls.retain(|c| {
                if *free >= c.o.multiplier {
                    *free -= c.o.multiplier;
                    false
                } else {
                    true
                }
            });
            if expand(&mine, OptionRight::Call, true).len() > short_calls.len() {
                note(&mut out, "covered call", Price::ZERO);
            }
        }
        let (mut call_spreads, naked_calls) = verticals(short_calls, long_calls);
        let (mut put_spreads, naked_puts) = verticals(short_puts, long_puts);
        // Iron condors: a call spread and a put spread, only the wider side held.
        call_spreads.sort_unstable_by(|a, b| b.cmp(a));
        put_spreads.sort_unstable_by(|a, b| b.cmp(a));
        let condors = call_spreads.len().min(put_spreads.len());
        for (c, p) in call_spreads
            .drain(..condors)
            .zip(put_spreads.drain(..condors))
        {
            note(&mut out, "iron condor", c.max(p));
        }
        for c in call_spreads {
            note(&mut out, "call vertical", c);
        }
        for p in put_spreads {
            note(&mut out, "put vertical", p);
        }
        let naked_req = |x: &Unit| {
            let s = spot(u).unwrap_or(x.o.strike());
            naked(x.o.right(), s, x.o.strike(), x.mark, x.o.multiplier)
        };
        // Short straddles and strangles: the greater side's requirement plus the
        // other side's premium.
        let mut calls = naked_calls;
        let mut puts = naked_puts;
        if policy.puts == PutCover::Cash {
            for p in puts.drain(..) {
                note(
                    &mut out,
                    "cash-secured put",
                    cash_secured_put(p.o.strike(), p.o.multiplier),
                );
            }
        }
        let pairs = calls.len().min(puts.len());
        for (c, p) in calls.drain(..pairs).zip(puts.drain(..pairs)) {
            let (rc, rp) = (naked_req(&c), naked_req(&p));
            let amount = if rc >= rp {
                rc + p.mark.times(p.o.multiplier)
            } else {
                rp + c.mark.times(c.o.multiplier)
            };
            note(&mut out, "short straddle", amount);
        }
        for c in calls {
            note(&mut out, "naked call", naked_req(&c));
        }
        for p in puts {
            note(&mut out, "naked put", naked_req(&p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! Hand-computed Reg-T figures for the test kit's named positions.
    use super::*;
    use crate::testkit;

    fn p(x: f64) -> Price {
        Price::from_f64(x)
    }

    fn req(legs: &[MarginLeg], policy: Policy, shares: &[(&str, i64)]) -> Margin {
        let spots = testkit::spots();
        let mut free: HashMap<String, i64> =
            shares.iter().map(|(s, q)| (s.to_string(), *q)).collect();
        requirement(legs, &|u| spots.get(u).copied(), policy, &mut free)
    }

    #[test]
    fn naked_put_and_call() {
        // Put: S 100, K 95, premium 1.50: 5 out of the money; max(20 − 5, 9.5) + 1.5
        // = 16.50 → 1,650 per contract; 2 contracts 3,300.
        let m = req(&testkit::naked_put(2), Policy::NAKED, &[]);
        assert_eq!(m.requirement, p(3_300.0));
        assert_eq!(m.structures, ["naked put"]);
        // Call: S 100, K 110, premium 1.00: max(20 − 10, 10) + 1 = 11 → 1,100.
        let m = req(&testkit::naked_call(1), Policy::NAKED, &[]);
        assert_eq!(m.requirement, p(1_100.0));
        // Deep out of the money, the 10% floor: K 130: max(20 − 30, 10) + 0.2 → 1,020.
        assert_eq!(
            naked(OptionRight::Call, p(100.0), p(130.0), p(0.2), 100),
            p(1_020.0)
        );
    }

    #[test]
    fn cash_secured_put_holds_the_strike() {
        // K 95 × 100 = 9,500 per contract.
        let m = req(&testkit::naked_put(2), Policy::CASH_SECURED, &[]);
        assert_eq!(m.requirement, p(19_000.0));
        assert_eq!(m.structures, ["cash-secured put"]);
    }

    #[test]
    fn covered_call_holds_nothing_beyond_its_shares() {
        let legs = testkit::naked_call(2);
        let m = req(&legs, Policy::COVERED, &[("SPY", 200)]);
        assert_eq!(m.requirement, Price::ZERO);
        assert_eq!(m.structures, ["covered call"]);
        // 150 shares cover one contract; the other is naked (1,100).
        let m = req(&legs, Policy::COVERED, &[("SPY", 150)]);
        assert_eq!(m.requirement, p(1_100.0));
        // A strategy that is not a covered-call writer is charged as naked.
        let m = req(&legs, Policy::NAKED, &[("SPY", 200)]);
        assert_eq!(m.requirement, p(2_200.0));
    }

    #[test]
    fn verticals_hold_their_width() {
        // Short 100 put, long 95 put: 5 wide → 500 per contract; 3 contracts 1,500.
        let m = req(&testkit::put_vertical(3), Policy::NAKED, &[]);
        assert_eq!(m.requirement, p(1_500.0));
        assert_eq!(m.structures, ["long options", "put vertical"]);
        // The same legs as a debit spread (long the higher strike) hold nothing.
        let debit: Vec<MarginLeg> = testkit::put_vertical(1)
            .into_iter()
            .map(|mut l| {
                l.quantity = -l.quantity;
                l
            })
            .collect();
        assert_eq!(req(&debit, Policy::NAKED, &[]).requirement, Price::ZERO);
    }

    #[test]
    fn short_straddle_holds_the_greater_side_plus_the_other_premium() {
        // S 100, K 100, call 3.00, put 2.80: call 20 + 3 = 23 ≥ put 20 + 2.8 = 22.8;
        // 23 + 2.80 = 25.80 → 2,580 per straddle.
        let m = req(&testkit::short_straddle(1), Policy::NAKED, &[]);
        assert_eq!(m.requirement, p(2_580.0));
        assert_eq!(m.structures, ["short straddle"]);
        // Long, it is paid for.
        let long: Vec<MarginLeg> = testkit::short_straddle(1)
            .into_iter()
            .map(|mut l| {
                l.quantity = -l.quantity;
                l
            })
            .collect();
        assert_eq!(req(&long, Policy::NAKED, &[]).requirement, Price::ZERO);
    }

    #[test]
    fn iron_condor_holds_only_the_wider_side() {
        // Puts 95/90 (5 wide), calls 105/112 (7 wide): 700 per condor, 2 condors 1,400.
        let m = req(&testkit::iron_condor(2), Policy::NAKED, &[]);
        assert_eq!(m.requirement, p(1_400.0));
        assert!(m.structures.contains(&"iron condor".to_string()));
    }

    #[test]
    fn dispersion_basket_sums_its_underlyings() {
        // Short QQQ straddle (S = K = 440, call 10, put 9): max(88 + 10, 88 + 9) + 9
        // = 107 → 10,700; the long component straddles hold nothing.
        let m = req(&testkit::dispersion_basket(true), Policy::NAKED, &[]);
        assert_eq!(m.requirement, p(10_700.0));
        // Reversed: long QQQ; short 2 AAPL straddles (S = K = 200, call 5, put 4.5):
        // 40 + 5 = 45 ≥ 44.5 → 45 + 4.5 = 49.50 → 4,950 × 2 = 9,900; short 3 NVDA
        // (S = K = 120, call 4, put 3.5): 24 + 4 = 28 → 28 + 3.5 = 31.50 → 3,150 × 3
        // = 9,450. Total 19,350.
        let m = req(&testkit::dispersion_basket(false), Policy::NAKED, &[]);
        assert_eq!(m.requirement, p(19_350.0));
    }

    #[test]
    fn futures_hold_the_exchanges_initial_margin_per_contract() {
        let mes = Instrument::Future(crate::trading::futures::parse("MESZ25").unwrap());
        let short = [MarginLeg {
            instrument: mes,
            quantity: -3,
            mark: p(6000.0),
        }];
        // 3 × $2,530, whatever the price.
        let m = req(&short, Policy::NAKED, &[]);
        assert_eq!(m.requirement, p(7_590.0));
        assert_eq!(m.structures, ["future"]);
    }

    #[test]
    fn shares_are_paid_for_and_short_shares_hold_150_percent() {
        let spots = testkit::spots();
        let long = [MarginLeg {
            instrument: Instrument::equity("SPY").unwrap(),
            quantity: 100,
            mark: p(100.0),
        }];
        let mut free = HashMap::new();
        let m = requirement(&long, &|u| spots.get(u).copied(), Policy::NAKED, &mut free);
        assert_eq!(m.requirement, Price::ZERO);
        let short = [MarginLeg {
            quantity: -100,
            ..long[0].clone()
        }];
        let m = requirement(&short, &|u| spots.get(u).copied(), Policy::NAKED, &mut free);
        assert_eq!(m.requirement, p(15_000.0));
    }
}
