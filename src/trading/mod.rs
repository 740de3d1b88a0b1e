//! The trading core's domain: instruments, orders, fills, and the append-only cash
//! ledger from which positions and cash are derived (and checked to reconcile to the
//! cent). Money is exact: [`Price`] is fixed point at 1/10,000 of a dollar.
//!
//! This module is the foundation of the paper broker and the trading jobs; it holds
//! no I/O. See [`ledger`] for the book and its reconciliation and [`broker`] for the
//! paper broker's fill prices, commissions and margin.

pub mod broker;
pub mod ledger;
pub mod risk;
pub mod strategies;

use crate::model::{OptionRight, Price};
use chrono::NaiveDate;

/// What a position is in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Instrument {
    Option {
        /// OCC symbol.
        contract: String,
        underlying: String,
        expiry: NaiveDate,
        strike: Price,
        right: OptionRight,
        /// Shares per contract (100 for listed equity, ETF and index options).
        multiplier: i64,
    },
    Shares {
        symbol: String,
    },
}

impl Instrument {
    /// Dollars per 1.00 of price per unit of quantity.
    pub fn multiplier(&self) -> i64 {
        match self {
            Instrument::Option { multiplier, .. } => *multiplier,
            Instrument::Shares { .. } => 1,
        }
    }

    pub fn key(&self) -> String {
        match self {
            Instrument::Option { contract, .. } => contract.clone(),
            Instrument::Shares { symbol } => symbol.clone(),
        }
    }

    pub fn underlying(&self) -> &str {
        match self {
            Instrument::Option { underlying, .. } => underlying,
            Instrument::Shares { symbol } => symbol,
        }
    }
}

/// One leg of an order: positive quantity buys, negative sells.
#[derive(Debug, Clone, PartialEq)]
pub struct Leg {
    pub instrument: Instrument,
    pub quantity: i64,
}

/// An order: one or more legs traded together (verticals, straddles, strangles, iron
/// condors are multi-leg). `reference` is deterministic (strategy, as_of, sequence),
/// so a re-run of a day finds the order it already placed and never places it twice.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub reference: String,
    pub strategy: String,
    pub as_of: NaiveDate,
    pub legs: Vec<Leg>,
    /// Net limit per unit of the structure: positive = pay at most (debit), negative =
    /// receive at least (credit). `None` = at the market.
    pub limit: Option<Price>,
}

impl Order {
    pub fn reference_for(strategy: &str, as_of: NaiveDate, sequence: u32) -> String {
        format!("{strategy}:{as_of}:{sequence}")
    }
}

/// An execution of one leg.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub order_reference: String,
    pub leg: usize,
    pub as_of: NaiveDate,
    pub instrument: Instrument,
    /// Positive bought, negative sold.
    pub quantity: i64,
    /// Per unit (per share, or per option quoted in dollars per share).
    pub price: Price,
    /// Commission and fees for this fill, a positive amount the account pays.
    pub commission: Price,
}

impl Fill {
    /// The cash the premium of this fill moves: negative when buying.
    pub fn premium_cash(&self) -> Price {
        Price::from_raw(-self.quantity * self.instrument.multiplier() * self.price.raw())
    }
}
