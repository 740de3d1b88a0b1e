//! Expiry settlement as a pure function: from a held option, the settlement price and
//! the holding's strategy's assignment rule to the legs (with their prices and cash
//! kinds) that settle it. Cash-settled options (the instrument says so) pay intrinsic;
//! physically settled options in the money by a cent or more deliver shares at the
//! strike; the rest expire worthless.

use super::{CashKind, Leg};
use crate::model::instrument::{Instrument, OptionContract};
use crate::model::{OptionRight, Price};
use std::collections::HashMap;

/// What happens to shares an expiring option delivers, per strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAssignment {
    /// Keep them (the wheel: an assigned put becomes shares to sell calls on).
    KeepShares,
    /// Close them at the settlement price the same day, in effect settled in cash at
    /// intrinsic (a naked call's short shares are bought in, a put's delivered shares
    /// sold) — except shares that settle against a holding the strategy already had
    /// (an assigned call delivering shares it held).
    CloseShares,
    /// A covered call: the shares delivered come out of the book that holds them.
    DeliverFromHoldings,
}

/// An option position that reached expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct Expiring {
    pub strategy: String,
    pub option: OptionContract,
    /// Signed contracts held.
    pub quantity: i64,
}

/// How it settled, for the job's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    CashSettled,
    Delivered,
    Worthless,
}

/// The legs that settle `p` at `settle_px`. `shares_held` gives each strategy's shares
/// of the option's underlying (signed): the holding's own for
/// [`OnAssignment::CloseShares`], the largest long one for
/// [`OnAssignment::DeliverFromHoldings`].
pub fn settle(
    p: &Expiring,
    settle_px: Price,
    rule: OnAssignment,
    shares_held: &HashMap<String, i64>,
) -> (Outcome, Vec<Leg>) {
    let o = &p.option;
    // Settlement prices are quoted to the cent.
    let intrinsic = Price::from_cents(o.intrinsic(settle_px).raw() / 100);
    let cash = o.is_cash_settled();
    let delivers = !cash && intrinsic >= Price::from_cents(1);
    let leg = |instrument: Instrument, quantity: i64, price: Price, kind: CashKind| Leg {
        instrument,
        quantity,
        book: None,
        settle: Some((price, kind)),
    };
    let mut legs = vec![leg(
        Instrument::Option(o.clone()),
        -p.quantity,
        if cash { intrinsic } else { Price::ZERO },
        if delivers {
            CashKind::Assignment
        } else {
            CashKind::Settlement
        },
    )];
    if !delivers {
        let outcome = if cash {
            Outcome::CashSettled
        } else {
            Outcome::Worthless
        };
        return (outcome, legs);
    }
    // A call delivers shares to its holder; a put takes them from its holder.
    let shares = match o.right() {
        OptionRight::Call => o.multiplier * p.quantity,
        OptionRight::Put => -o.multiplier * p.quantity,
    };
    let equity = Instrument::Equity {
        symbol: o.underlying.clone(),
    };
    let mut delivery = leg(equity.clone(), shares, o.strike(), CashKind::Assignment);
    match rule {
        OnAssignment::KeepShares => legs.push(delivery),
        OnAssignment::CloseShares => {
            legs.push(delivery);
            // What it held before stays held as far as the delivery leaves it; the rest
            // of the delivery is closed.
            let own = shares_held.get(&p.strategy).copied().unwrap_or(0);
            let after = own + shares;
            let keep = if own != 0 && own.signum() == after.signum() {
                after.signum() * own.abs().min(after.abs())
            } else {
                0
            };
            if after != keep {
                let close_px = Price::from_cents(settle_px.raw() / 100);
                legs.push(leg(equity, keep - after, close_px, CashKind::Assignment));
            }
        }
        OnAssignment::DeliverFromHoldings => {
            // From the book holding the most shares (ties: by name, for determinism).
            let from = shares_held
                .iter()
                .filter(|(_, q)| **q > 0)
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(s, _)| s.clone());
            delivery.book = from;
            legs.push(delivery);
        }
    }
    (Outcome::Delivered, legs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::identifiers::OccSymbol;

    fn expiring(occ: &str, underlying: &str, q: i64) -> Expiring {
        Expiring {
            strategy: "s".into(),
            option: OptionContract::listed(underlying, OccSymbol::parse(occ).unwrap()).unwrap(),
            quantity: q,
        }
    }
    fn p(x: f64) -> Price {
        Price::from_f64(x)
    }

    #[test]
    fn index_options_pay_intrinsic_in_cash() {
        let e = expiring("SPXW  250321P05800000", "SPX", -2);
        let (o, legs) = settle(&e, p(5790.556), OnAssignment::KeepShares, &HashMap::new());
        assert_eq!(o, Outcome::CashSettled);
        assert_eq!(legs.len(), 1);
        // Intrinsic 9.444 → 9.44 per unit; bought back at it.
        assert_eq!(legs[0].settle, Some((p(9.44), CashKind::Settlement)));
        assert_eq!(legs[0].quantity, 2);
    }

    #[test]
    fn equity_options_deliver_shares_by_the_strategys_rule() {
        let put = expiring("SPY   250321P00580000", "SPY", -1);
        let (o, legs) = settle(&put, p(570.0), OnAssignment::KeepShares, &HashMap::new());
        assert_eq!(o, Outcome::Delivered);
        assert_eq!(
            legs[1].quantity, 100,
            "an assigned short put buys 100 shares"
        );
        assert_eq!(legs[1].settle, Some((p(580.0), CashKind::Assignment)));
        // A naked call assigned: shares sold at the strike, bought in at the settlement.
        let call = expiring("SPY   250321C00580000", "SPY", -1);
        let (_, legs) = settle(&call, p(590.0), OnAssignment::CloseShares, &HashMap::new());
        assert_eq!(legs.len(), 3);
        assert_eq!((legs[1].quantity, legs[2].quantity), (-100, 100));
        // Net: −(590 − 580) × 100 = −1,000, the intrinsic value.
        let net: i64 = legs[1..]
            .iter()
            .map(|l| -l.quantity * l.settle.unwrap().0.raw())
            .sum();
        assert_eq!(Price::from_raw(net), p(-1000.0));
        // A naked call's strategy that already held 100 shares delivers them: no buy-in.
        let held: HashMap<String, i64> = [("s".to_string(), 100)].into();
        let (_, legs) = settle(&call, p(590.0), OnAssignment::CloseShares, &held);
        assert_eq!(legs.len(), 2);
        // An assigned short put's shares are sold at the settlement price.
        let (_, legs) = settle(&put, p(570.0), OnAssignment::CloseShares, &HashMap::new());
        assert_eq!((legs[1].quantity, legs[2].quantity), (100, -100));
        assert_eq!(legs[2].settle, Some((p(570.0), CashKind::Assignment)));
        // A covered call delivers the shares the wheel holds.
        let held: HashMap<String, i64> = [("cash_secured_put".to_string(), 100)].into();
        let (_, legs) = settle(&call, p(590.0), OnAssignment::DeliverFromHoldings, &held);
        assert_eq!(legs[1].book.as_deref(), Some("cash_secured_put"));
        // Out of the money: worthless, closed at zero.
        let (o, legs) = settle(&call, p(579.99), OnAssignment::CloseShares, &HashMap::new());
        assert_eq!(o, Outcome::Worthless);
        assert_eq!(legs[0].settle, Some((Price::ZERO, CashKind::Settlement)));
    }
}
