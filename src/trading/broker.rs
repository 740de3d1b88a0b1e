//! The paper broker's rules: where an order fills against the day's quotes, what it
//! costs in commission, and how much margin or collateral a position holds.
//!
//! Fills: a sell at the bid and a buy at the ask by default, or `toward_mid` of the way
//! to the mid (0 = at the touch, 1 = at the mid), rounded to the cent against the
//! account. A multi-leg order fills all its legs or none. A limit that would not fill,
//! and a leg with no usable quote, are refused with the numbers.
//!
//! Requirements (per the usual retail rules): a cash-secured put holds strike × 100; a
//! defined-risk spread holds its maximum loss; a naked option holds the Reg-T style
//! max(20% of the underlying − the amount out of the money, 10% of the underlying for
//! calls / of the strike for puts) plus the premium, × 100; a covered call holds no
//! margin but needs 100 shares per contract.

use super::{Fill, Instrument, Order};
use crate::model::{OptionRight, Price};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperConfig {
    /// 0 = sell at the bid and buy at the ask; 1 = at the mid.
    pub toward_mid: f64,
    /// IBKR-like: $0.65 per option contract.
    pub commission_per_contract: Price,
    /// Per share.
    pub commission_per_share: Price,
}

impl Default for PaperConfig {
    fn default() -> Self {
        PaperConfig {
            toward_mid: 0.0,
            commission_per_contract: Price::from_cents(65),
            commission_per_share: Price::from_raw(50), // $0.005
        }
    }
}

/// A two-sided quote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quote {
    pub bid: Price,
    pub ask: Price,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no usable quote for {key} (bid {bid}, ask {ask})")]
    NoQuote { key: String, bid: Price, ask: Price },
    #[error("no quote at all for {key}")]
    Missing { key: String },
    #[error("limit {limit} not marketable: the order would fill at {price} net per unit")]
    LimitNotMarketable { limit: Price, price: Price },
    #[error("requires {required} of buying power, the account has {available}")]
    BuyingPower { required: Price, available: Price },
    #[error("a covered call on {symbol} needs {needed} shares, the account holds {held}")]
    SharesNeeded {
        symbol: String,
        needed: i64,
        held: i64,
    },
}

/// Round dollars to the cent, away from the account (up when paying, down when
/// receiving).
fn to_cent(dollars: f64, paying: bool) -> Price {
    let cents = if paying {
        (dollars * 100.0 - 1e-9).ceil()
    } else {
        (dollars * 100.0 + 1e-9).floor()
    };
    Price::from_cents(cents as i64)
}

/// Where one leg fills: sells at the bid, buys at the ask, or toward the mid.
pub fn leg_price(
    cfg: &PaperConfig,
    key: &str,
    quote: &Quote,
    quantity: i64,
) -> Result<Price, Refusal> {
    let (bid, ask) = (quote.bid, quote.ask);
    let buying = quantity > 0;
    if !ask.is_positive() || bid > ask || bid.raw() < 0 || (!buying && !bid.is_positive()) {
        return Err(Refusal::NoQuote {
            key: key.to_string(),
            bid,
            ask,
        });
    }
    let (b, a) = (bid.to_f64(), ask.to_f64());
    let mid = 0.5 * (a + b);
    let f = cfg.toward_mid.clamp(0.0, 1.0);
    Ok(if buying {
        to_cent(a - f * (a - mid), true)
    } else {
        to_cent(b + f * (mid - b), false)
    })
}

pub fn commission(cfg: &PaperConfig, instrument: &Instrument, quantity: i64) -> Price {
    let per = match instrument {
        Instrument::Option { .. } => cfg.commission_per_contract,
        Instrument::Shares { .. } => cfg.commission_per_share,
    };
    Price::from_raw(per.raw() * quantity.abs())
}

/// Fill every leg of an order against `quotes` (keyed by contract or symbol), or none.
/// The net price per unit of the structure (sum of leg prices × leg ratio, positive =
/// paid) is checked against the limit.
pub fn fill_order(
    cfg: &PaperConfig,
    order: &Order,
    quotes: &HashMap<String, Quote>,
) -> Result<Vec<Fill>, Refusal> {
    let mut prices = Vec::with_capacity(order.legs.len());
    for leg in &order.legs {
        let key = leg.instrument.key();
        let q = quotes
            .get(&key)
            .ok_or_else(|| Refusal::Missing { key: key.clone() })?;
        prices.push(leg_price(cfg, &key, q, leg.quantity)?);
    }
    // Net per unit: legs are quoted per share; the structure's unit is its smallest leg.
    let unit = order
        .legs
        .iter()
        .map(|l| l.quantity.abs())
        .min()
        .unwrap_or(1)
        .max(1);
    let net = Price::from_raw(
        order
            .legs
            .iter()
            .zip(&prices)
            .map(|(l, p)| l.quantity / unit * p.raw())
            .sum(),
    );
    if let Some(limit) = order.limit {
        if net > limit {
            return Err(Refusal::LimitNotMarketable { limit, price: net });
        }
    }
    Ok(order
        .legs
        .iter()
        .zip(prices)
        .enumerate()
        .map(|(i, (leg, price))| Fill {
            order_reference: order.reference.clone(),
            leg: i,
            as_of: order.as_of,
            instrument: leg.instrument.clone(),
            quantity: leg.quantity,
            price,
            commission: commission(cfg, &leg.instrument, leg.quantity),
        })
        .collect())
}

/// Reg-T style requirement of one naked short option contract (per contract, dollars),
/// premium included.
pub fn naked_requirement(right: OptionRight, spot: Price, strike: Price, premium: Price) -> Price {
    let (s, k, p) = (spot.to_f64(), strike.to_f64(), premium.to_f64());
    let otm = match right {
        OptionRight::Call => (k - s).max(0.0),
        OptionRight::Put => (s - k).max(0.0),
    };
    let floor = match right {
        OptionRight::Call => 0.10 * s,
        OptionRight::Put => 0.10 * k,
    };
    to_cent(((0.20 * s - otm).max(floor) + p) * 100.0, true)
}

/// Collateral of a cash-secured put, per contract.
pub fn cash_secured_put_requirement(strike: Price) -> Price {
    Price::from_raw(strike.raw() * 100)
}

/// Maximum loss of a vertical spread (or each side of an iron condor), per contract:
/// the strike width × 100, less the net credit received (or plus the debit paid).
pub fn spread_max_loss(width: Price, net_credit: Price) -> Price {
    Price::from_raw(width.raw() * 100 - net_credit.raw() * 100).max(Price::ZERO)
}

/// Refuse an order the account cannot carry, with the numbers.
pub fn check_buying_power(required: Price, available: Price) -> Result<(), Refusal> {
    if required > available {
        return Err(Refusal::BuyingPower {
            required,
            available,
        });
    }
    Ok(())
}

/// A covered call needs 100 shares per contract.
pub fn check_covered(symbol: &str, contracts: i64, shares_held: i64) -> Result<(), Refusal> {
    let needed = contracts.abs() * 100;
    if shares_held < needed {
        return Err(Refusal::SharesNeeded {
            symbol: symbol.to_string(),
            needed,
            held: shares_held,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trading::Leg;
    use chrono::NaiveDate;

    fn p(x: f64) -> Price {
        Price::from_f64(x)
    }

    fn opt(k: i64, right: OptionRight) -> Instrument {
        Instrument::Option {
            contract: format!("SPY {k}{}", right.code()),
            underlying: "SPY".into(),
            expiry: NaiveDate::from_ymd_opt(2025, 4, 17).unwrap(),
            strike: Price::from_cents(k * 100),
            right,
            multiplier: 100,
        }
    }

    #[test]
    fn sells_at_the_bid_buys_at_the_ask_or_toward_the_mid() {
        let q = Quote {
            bid: p(1.20),
            ask: p(1.30),
        };
        let touch = PaperConfig::default();
        assert_eq!(leg_price(&touch, "x", &q, -1), Ok(p(1.20)));
        assert_eq!(leg_price(&touch, "x", &q, 1), Ok(p(1.30)));
        let half = PaperConfig {
            toward_mid: 0.5,
            ..touch
        };
        // Mid 1.25; half way: sell 1.225 → 1.22 (down), buy 1.275 → 1.28 (up).
        assert_eq!(leg_price(&half, "x", &q, -1), Ok(p(1.22)));
        assert_eq!(leg_price(&half, "x", &q, 1), Ok(p(1.28)));
    }

    #[test]
    fn unusable_quotes_are_refused_with_the_numbers() {
        let cfg = PaperConfig::default();
        for q in [
            Quote {
                bid: p(1.3),
                ask: p(1.2),
            },
            Quote {
                bid: p(0.0),
                ask: p(0.0),
            },
        ] {
            let e = leg_price(&cfg, "SPY x", &q, 1).unwrap_err();
            assert!(e.to_string().contains("no usable quote for SPY x"), "{e}");
        }
        // Selling into a zero bid is refused; buying at a 0.05 ask with no bid is fine.
        let q = Quote {
            bid: p(0.0),
            ask: p(0.05),
        };
        assert!(leg_price(&cfg, "x", &q, -1).is_err());
        assert_eq!(leg_price(&cfg, "x", &q, 1), Ok(p(0.05)));
    }

    #[test]
    fn a_vertical_fills_whole_or_not_at_all_against_its_limit() {
        let cfg = PaperConfig::default();
        let (short, long) = (opt(600, OptionRight::Call), opt(605, OptionRight::Call));
        let quotes: HashMap<String, Quote> = [
            (
                short.key(),
                Quote {
                    bid: p(2.00),
                    ask: p(2.05),
                },
            ),
            (
                long.key(),
                Quote {
                    bid: p(1.10),
                    ask: p(1.15),
                },
            ),
        ]
        .into_iter()
        .collect();
        let mut order = Order {
            reference: "r".into(),
            strategy: "s".into(),
            as_of: NaiveDate::from_ymd_opt(2025, 3, 14).unwrap(),
            legs: vec![
                Leg {
                    instrument: short,
                    quantity: -2,
                },
                Leg {
                    instrument: long.clone(),
                    quantity: 2,
                },
            ],
            // Credit of at least 0.85: net −0.85 per unit.
            limit: Some(p(-0.85)),
        };
        let fills = fill_order(&cfg, &order, &quotes).unwrap();
        assert_eq!(fills.len(), 2);
        assert_eq!(fills[0].commission, p(1.30));
        // Just over the limit: a credit of at least 0.86 is not available (0.85 is).
        order.limit = Some(p(-0.86));
        let e = fill_order(&cfg, &order, &quotes).unwrap_err();
        assert_eq!(
            e,
            Refusal::LimitNotMarketable {
                limit: p(-0.86),
                price: p(-0.85)
            }
        );
        // A leg without a quote refuses the whole order.
        order.limit = None;
        order.legs[1].instrument = opt(610, OptionRight::Call);
        assert!(matches!(
            fill_order(&cfg, &order, &quotes),
            Err(Refusal::Missing { .. })
        ));
        let _ = long;
    }

    #[test]
    fn requirements_by_structure() {
        // Naked call, S=100, K=110 (10 OTM), premium 1: max(20 − 10, 10) + 1 = 11 → 1,100.
        assert_eq!(
            naked_requirement(OptionRight::Call, p(100.0), p(110.0), p(1.0)),
            p(1100.0)
        );
        // Naked put near the money: 20 − 0 + 2 = 22 → 2,200.
        assert_eq!(
            naked_requirement(OptionRight::Put, p(100.0), p(100.0), p(2.0)),
            p(2200.0)
        );
        assert_eq!(cash_secured_put_requirement(p(95.0)), p(9500.0));
        // A 5-wide credit spread for 0.85: max loss 415 per contract.
        assert_eq!(spread_max_loss(p(5.0), p(0.85)), p(415.0));
        // Approve at the limit, refuse a cent over, with the numbers.
        assert!(check_buying_power(p(9500.0), p(9500.0)).is_ok());
        let e = check_buying_power(p(9500.01), p(9500.0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "requires 9500.01 of buying power, the account has 9500.00"
        );
        assert!(check_covered("SPY", 2, 200).is_ok());
        assert!(check_covered("SPY", 2, 199)
            .unwrap_err()
            .to_string()
            .contains("needs 200 shares"));
    }
}
