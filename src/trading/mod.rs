//! The trading core's domain: orders and their life cycle, fills, the cash kinds of
//! the append-only ledger, margin by structure ([`margin`]), expiry settlement
//! ([`settlement`]), the risk gate ([`risk`]), the strategies ([`strategies`]) and the
//! closed trades rebuilt from fills ([`trades`]).
//! Money is exact: [`Price`] is fixed point at 1/10,000 of a dollar. This module holds
//! no I/O: the store reads and writes it (`store::repo`), a broker executes it
//! (`broker`).

pub mod futures;
pub mod margin;
pub mod risk;
pub mod settlement;
pub mod strategies;
pub mod trades;

pub use crate::model::identifiers::{ClientOrderId, Intent};
pub use crate::model::instrument::{FuturesContract, Instrument, OptionContract};

use crate::model::{ModelError, Price};
use chrono::{NaiveDate, NaiveDateTime};

/// Why cash moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CashKind {
    Deposit,
    /// Option premium or share cost of a trade.
    Premium,
    Commission,
    /// Cash-settled expiry at intrinsic.
    Settlement,
    /// Shares delivered by assignment or exercise, at the strike.
    Assignment,
    Dividend,
    /// A futures position's daily mark-to-market, and its last piece at a close.
    Variation,
}

impl CashKind {
    pub fn code(self) -> &'static str {
        match self {
            CashKind::Deposit => "deposit",
            CashKind::Premium => "premium",
            CashKind::Commission => "commission",
            CashKind::Settlement => "settlement",
            CashKind::Assignment => "assignment",
            CashKind::Dividend => "dividend",
            CashKind::Variation => "variation",
        }
    }
    pub fn from_code(code: &str) -> Result<CashKind, ModelError> {
        Ok(match code {
            "deposit" => CashKind::Deposit,
            "premium" => CashKind::Premium,
            "commission" => CashKind::Commission,
            "settlement" => CashKind::Settlement,
            "assignment" => CashKind::Assignment,
            "dividend" => CashKind::Dividend,
            "variation" => CashKind::Variation,
            _ => {
                return Err(ModelError::BadField {
                    field: "cash_kind",
                    value: code.to_string(),
                })
            }
        })
    }
}

/// One leg of an order: positive quantity buys, negative sells.
#[derive(Debug, Clone, PartialEq)]
pub struct Leg {
    pub instrument: Instrument,
    pub quantity: i64,
    /// The strategy whose book this leg moves, when not the order's own (a covered
    /// call's assignment delivers the shares the wheel holds).
    pub book: Option<String>,
    /// A settlement leg's price and cash kind, set by the exchange (expiry at
    /// intrinsic, assignment or exercise at the strike).
    pub settle: Option<(Price, CashKind)>,
}

impl Leg {
    pub fn new(instrument: Instrument, quantity: i64) -> Result<Leg, ModelError> {
        if quantity == 0 {
            return Err(ModelError::BadQuantity(quantity.to_string()));
        }
        Ok(Leg {
            instrument,
            quantity,
            book: None,
            settle: None,
        })
    }
}

/// How an order is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderType {
    Market,
    /// Net limit per unit of the structure: positive = pay at most (debit), negative =
    /// receive at least (credit).
    Limit(Price),
    /// At the prices the exchange set (each leg's `settle`): expiry, assignment.
    Settlement,
}

impl OrderType {
    pub fn code(self) -> &'static str {
        match self {
            OrderType::Market => "market",
            OrderType::Limit(_) => "limit",
            OrderType::Settlement => "settlement",
        }
    }
    pub fn limit(self) -> Option<Price> {
        match self {
            OrderType::Limit(p) => Some(p),
            _ => None,
        }
    }
}

/// An order: one or more legs traded together (verticals, straddles, condors and
/// dispersion baskets are multi-leg), identified by its [`ClientOrderId`].
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: ClientOrderId,
    pub legs: Vec<Leg>,
    pub order_type: OrderType,
}

impl Order {
    /// Refuses an order without legs, or a settlement order with a leg that has no
    /// settlement price.
    pub fn new_checked(
        id: ClientOrderId,
        legs: Vec<Leg>,
        order_type: OrderType,
    ) -> Result<Order, ModelError> {
        if legs.is_empty() {
            return Err(ModelError::BadInstrument(format!("order {id} has no legs")));
        }
        if let Some(l) = legs.iter().find(|l| l.quantity == 0) {
            return Err(ModelError::BadQuantity(format!(
                "0 for {} in order {id}",
                l.instrument.key()
            )));
        }
        if order_type == OrderType::Settlement && legs.iter().any(|l| l.settle.is_none()) {
            return Err(ModelError::BadInstrument(format!(
                "settlement order {id} has a leg without a settlement price"
            )));
        }
        Ok(Order {
            id,
            legs,
            order_type,
        })
    }
    pub fn reference(&self) -> String {
        self.id.to_string()
    }
    pub fn strategy(&self) -> &str {
        &self.id.strategy
    }
    pub fn as_of(&self) -> NaiveDate {
        self.id.as_of()
    }
    /// The book a leg moves.
    pub fn book_of<'a>(&'a self, leg: &'a Leg) -> &'a str {
        leg.book.as_deref().unwrap_or(&self.id.strategy)
    }
}

/// Where an order is in its life. Recorded as appended events (`order_events`), never
/// updated in place; [`OrderStatus::transition`] refuses an illegal step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// The intent, committed to the store before anything is sent.
    Pending,
    /// The broker has it.
    Submitted,
    PartlyFilled,
    Filled,
    Cancelled,
    /// Refused by the broker (no quote, limit not marketable, the venue's reject).
    Rejected,
    /// Ended unfilled at the end of its time in force.
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("order {order}: illegal transition {from} → {to}")]
pub struct IllegalTransition {
    pub order: String,
    pub from: &'static str,
    pub to: &'static str,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::Pending,
        OrderStatus::Submitted,
        OrderStatus::PartlyFilled,
        OrderStatus::Filled,
        OrderStatus::Cancelled,
        OrderStatus::Rejected,
        OrderStatus::Expired,
    ];

    pub fn code(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Submitted => "submitted",
            OrderStatus::PartlyFilled => "partly_filled",
            OrderStatus::Filled => "filled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Expired => "expired",
        }
    }

    pub fn from_code(code: &str) -> Result<OrderStatus, ModelError> {
        OrderStatus::ALL
            .into_iter()
            .find(|s| s.code() == code)
            .ok_or_else(|| ModelError::BadField {
                field: "order status",
                value: code.to_string(),
            })
    }

    /// No further event can follow.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled
                | OrderStatus::Cancelled
                | OrderStatus::Rejected
                | OrderStatus::Expired
        )
    }

    /// The next status, or an error naming the illegal step (NautilusTrader's
    /// `OrderStatus::transition`).
    pub fn transition(
        self,
        order: &str,
        to: OrderStatus,
    ) -> Result<OrderStatus, IllegalTransition> {
        use OrderStatus::*;
        let ok = matches!(
            (self, to),
            (Pending, Submitted | Rejected | Cancelled)
                | (
                    Submitted,
                    PartlyFilled | Filled | Cancelled | Rejected | Expired
                )
                | (PartlyFilled, PartlyFilled | Filled | Cancelled | Expired)
        );
        if ok {
            Ok(to)
        } else {
            Err(IllegalTransition {
                order: order.to_string(),
                from: self.code(),
                to: to.code(),
            })
        }
    }
}

/// An execution of (part of) one leg.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub order_reference: String,
    pub leg: usize,
    /// The session, and the time of the fill (New York).
    pub as_of: NaiveDate,
    pub filled_at: NaiveDateTime,
    /// The strategy whose book it moves.
    pub book: String,
    pub instrument: Instrument,
    /// Positive bought, negative sold.
    pub quantity: i64,
    /// Per unit (per share, or per option quoted in dollars per share).
    pub price: Price,
    /// Commission and fees for this fill, a positive amount the account pays.
    pub commission: Price,
    pub cash_kind: CashKind,
    /// The broker's execution id: unique, so an execution is never recorded twice.
    pub exec_id: String,
    pub broker_order_id: Option<String>,
}

impl Fill {
    /// The cash the premium of this fill moves: negative when buying. A future moves
    /// none: its P&L is paid as variation margin (`store::repo::futures`).
    pub fn premium_cash(&self) -> Price {
        if matches!(self.instrument, Instrument::Future(_)) {
            return Price::ZERO;
        }
        Price::from_raw(-self.quantity * self.instrument.multiplier() * self.price.raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_status_transitions_are_checked() {
        use OrderStatus::*;
        assert_eq!(Pending.transition("o", Submitted), Ok(Submitted));
        assert_eq!(Submitted.transition("o", PartlyFilled), Ok(PartlyFilled));
        assert_eq!(PartlyFilled.transition("o", Filled), Ok(Filled));
        assert_eq!(Pending.transition("o", Rejected), Ok(Rejected));
        let e = Filled.transition("o", Submitted).unwrap_err();
        assert_eq!(
            e.to_string(),
            "order o: illegal transition filled → submitted"
        );
        assert!(
            Pending.transition("o", Filled).is_err(),
            "never filled unsent"
        );
        assert!(Rejected.transition("o", Filled).is_err());
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::from_code(s.code()), Ok(s));
            if s.is_terminal() {
                assert!(OrderStatus::ALL
                    .iter()
                    .all(|t| s.transition("o", *t).is_err()));
            }
        }
    }
}
