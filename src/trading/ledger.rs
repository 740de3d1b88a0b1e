//! The book: orders, fills and an append-only cash ledger. Positions are derived from
//! fills, cash from the ledger; [`Book::reconcile`] proves they agree with a broker's
//! state to the cent and that no fill is orphaned.
//!
//! Expiry settlement and assignment are fills too (at intrinsic, or the option closed
//! at zero and shares delivered at the strike), with their own ledger kinds, so every
//! position change has a fill and every cash change a ledger entry.

use super::{Fill, Instrument};
use crate::model::Price;
use chrono::NaiveDate;
use std::collections::{BTreeMap, BTreeSet};

/// Why cash moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CashEntry {
    pub as_of: NaiveDate,
    pub kind: CashKind,
    /// Positive in, negative out.
    pub amount: Price,
    /// The fill's order reference (and leg), or the dividend/deposit reference.
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("fill for unknown order '{0}': every fill needs its order")]
    UnknownOrder(String),
}

/// What a broker says the account holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BrokerState {
    pub positions: BTreeMap<String, i64>,
    pub cash: Price,
}

/// One way the book and a broker disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discrepancy {
    Position {
        key: String,
        book: i64,
        broker: i64,
    },
    Cash {
        book: Price,
        broker: Price,
    },
    /// The ledger's trade cash does not match the fills' premium and commission.
    LedgerVsFills {
        ledger: Price,
        fills: Price,
    },
    OrphanFill {
        reference: String,
    },
}

impl std::fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Discrepancy::Position { key, book, broker } => {
                write!(f, "position {key}: book {book}, broker {broker} (difference {})", book - broker)
            }
            Discrepancy::Cash { book, broker } => {
                write!(f, "cash: book {book}, broker {broker} (difference {})", *book - *broker)
            }
            Discrepancy::LedgerVsFills { ledger, fills } => write!(
                f,
                "trade cash in the ledger {ledger} differs from the fills' premium and commission {fills} (difference {})",
                *ledger - *fills
            ),
            Discrepancy::OrphanFill { reference } => write!(f, "fill {reference} has no order"),
        }
    }
}

/// The account's append-only record.
#[derive(Debug, Clone, Default)]
pub struct Book {
    pub orders: BTreeSet<String>,
    pub fills: Vec<Fill>,
    pub cash: Vec<CashEntry>,
}

impl Book {
    pub fn deposit(&mut self, as_of: NaiveDate, amount: Price, reference: &str) {
        self.cash.push(CashEntry {
            as_of,
            kind: CashKind::Deposit,
            amount,
            reference: reference.to_string(),
        });
    }

    pub fn add_order(&mut self, reference: &str) {
        self.orders.insert(reference.to_string());
    }

    /// Book a fill and its cash (premium under `kind`, commission). Idempotent: a fill
    /// already booked (same order reference and leg) is not booked again; returns
    /// whether it was new.
    pub fn record_fill(&mut self, fill: Fill, kind: CashKind) -> Result<bool, LedgerError> {
        if !self.orders.contains(&fill.order_reference) {
            return Err(LedgerError::UnknownOrder(fill.order_reference));
        }
        if self
            .fills
            .iter()
            .any(|f| f.order_reference == fill.order_reference && f.leg == fill.leg)
        {
            return Ok(false);
        }
        let reference = format!("{}#{}", fill.order_reference, fill.leg);
        self.cash.push(CashEntry {
            as_of: fill.as_of,
            kind,
            amount: fill.premium_cash(),
            reference: reference.clone(),
        });
        if fill.commission != Price::ZERO {
            self.cash.push(CashEntry {
                as_of: fill.as_of,
                kind: CashKind::Commission,
                amount: -fill.commission,
                reference,
            });
        }
        self.fills.push(fill);
        Ok(true)
    }

    /// Net quantity per instrument, from the fills; flat instruments are left out.
    pub fn positions(&self) -> BTreeMap<String, (Instrument, i64)> {
        let mut out: BTreeMap<String, (Instrument, i64)> = BTreeMap::new();
        for f in &self.fills {
            out.entry(f.instrument.key())
                .or_insert_with(|| (f.instrument.clone(), 0))
                .1 += f.quantity;
        }
        out.retain(|_, v| v.1 != 0);
        out
    }

    /// Cash: the sum of the ledger.
    pub fn cash_balance(&self) -> Price {
        self.cash.iter().map(|c| c.amount).sum()
    }

    /// Every disagreement between the book and a broker, and inside the book (the
    /// ledger's trade cash vs. the fills, fills without orders). Empty = reconciled.
    pub fn reconcile(&self, broker: &BrokerState) -> Vec<Discrepancy> {
        let mut out = Vec::new();
        let book: BTreeMap<String, i64> = self
            .positions()
            .into_iter()
            .map(|(k, v)| (k, v.1))
            .collect();
        let keys: BTreeSet<&String> = book.keys().chain(broker.positions.keys()).collect();
        for k in keys {
            let (b, r) = (
                book.get(k).copied().unwrap_or(0),
                broker.positions.get(k).copied().unwrap_or(0),
            );
            if b != r {
                out.push(Discrepancy::Position {
                    key: k.clone(),
                    book: b,
                    broker: r,
                });
            }
        }
        let cash = self.cash_balance();
        if cash != broker.cash {
            out.push(Discrepancy::Cash {
                book: cash,
                broker: broker.cash,
            });
        }
        let ledger_trades: Price = self
            .cash
            .iter()
            .filter(|c| !matches!(c.kind, CashKind::Deposit | CashKind::Dividend))
            .map(|c| c.amount)
            .sum();
        let from_fills: Price = self
            .fills
            .iter()
            .map(|f| f.premium_cash() - f.commission)
            .sum();
        if ledger_trades != from_fills {
            out.push(Discrepancy::LedgerVsFills {
                ledger: ledger_trades,
                fills: from_fills,
            });
        }
        for f in &self.fills {
            if !self.orders.contains(&f.order_reference) {
                out.push(Discrepancy::OrphanFill {
                    reference: f.order_reference.clone(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OptionRight;
    use proptest::prelude::*;

    fn d() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, 14).unwrap()
    }

    fn call(k: i64) -> Instrument {
        Instrument::Option {
            contract: format!("SPY   250417C{:08}", k * 1000),
            underlying: "SPY".into(),
            expiry: NaiveDate::from_ymd_opt(2025, 4, 17).unwrap(),
            strike: Price::from_cents(k * 100),
            right: OptionRight::Call,
            multiplier: 100,
        }
    }

    fn fill(reference: &str, leg: usize, instrument: Instrument, qty: i64, cents: i64) -> Fill {
        Fill {
            order_reference: reference.into(),
            leg,
            as_of: d(),
            instrument,
            quantity: qty,
            price: Price::from_cents(cents),
            commission: Price::from_cents(65 * qty.abs()),
        }
    }

    #[test]
    fn selling_a_call_credits_premium_less_commission_to_the_cent() {
        let mut b = Book::default();
        b.deposit(d(), Price::from_cents(10_000_000), "start");
        b.add_order("call_premium:2025-03-14:0");
        assert!(b
            .record_fill(
                fill("call_premium:2025-03-14:0", 0, call(600), -2, 123),
                CashKind::Premium
            )
            .unwrap());
        // 2 × 100 × 1.23 = 246.00 in, 2 × 0.65 = 1.30 out.
        assert_eq!(
            b.cash_balance(),
            Price::from_cents(10_000_000 + 24_600 - 130)
        );
        assert_eq!(b.positions()[&call(600).key()].1, -2);
        // Booking the same fill again (a re-run) changes nothing.
        assert!(!b
            .record_fill(
                fill("call_premium:2025-03-14:0", 0, call(600), -2, 123),
                CashKind::Premium
            )
            .unwrap());
        assert_eq!(b.cash.len(), 3);
    }

    #[test]
    fn a_fill_without_its_order_is_refused_and_reconcile_names_discrepancies() {
        let mut b = Book::default();
        assert_eq!(
            b.record_fill(
                fill("x:2025-03-14:0", 0, call(600), 1, 100),
                CashKind::Premium
            ),
            Err(LedgerError::UnknownOrder("x:2025-03-14:0".into()))
        );
        b.add_order("o");
        b.record_fill(fill("o", 0, call(600), 1, 100), CashKind::Premium)
            .unwrap();
        let broker = BrokerState::default();
        let found = b.reconcile(&broker);
        assert!(found.iter().any(|x| matches!(
            x,
            Discrepancy::Position {
                book: 1,
                broker: 0,
                ..
            }
        )));
        assert!(found.iter().any(|x| matches!(x, Discrepancy::Cash { .. })));
        assert!(found[0].to_string().contains("difference"));
    }

    /// A broker that keeps its own state, independently of the book.
    #[derive(Default)]
    struct Broker {
        state: BrokerState,
    }

    impl Broker {
        fn execute(&mut self, f: &Fill) {
            *self.state.positions.entry(f.instrument.key()).or_default() += f.quantity;
            self.state.positions.retain(|_, q| *q != 0);
            self.state.cash = self.state.cash
                + Price::from_raw(-f.quantity * f.instrument.multiplier() * f.price.raw())
                - f.commission;
        }
    }

    proptest! {
        /// For random sequences of fills and settlements, positions and cash from the
        /// book equal an independent broker's; replaying every fill again (a re-run)
        /// changes nothing.
        #[test]
        fn book_reconciles_with_an_independent_broker(
            trades in proptest::collection::vec((0usize..4, -5i64..=5, 1i64..50_000, 0u8..3), 1..60)
        ) {
            let mut book = Book::default();
            let mut broker = Broker::default();
            book.deposit(d(), Price::from_cents(5_000_000), "start");
            broker.state.cash = Price::from_cents(5_000_000);
            let instruments = [call(580), call(600), Instrument::Shares { symbol: "SPY".into() }, call(620)];
            let mut all = Vec::new();
            for (i, (which, qty, cents, kind)) in trades.iter().enumerate() {
                if *qty == 0 { continue; }
                let reference = format!("s:{i}");
                book.add_order(&reference);
                let f = fill(&reference, 0, instruments[*which].clone(), *qty, *cents);
                let kind = [CashKind::Premium, CashKind::Settlement, CashKind::Assignment][*kind as usize];
                prop_assert!(book.record_fill(f.clone(), kind).unwrap());
                broker.execute(&f);
                all.push((f, kind));
            }
            prop_assert_eq!(book.reconcile(&broker.state), vec![]);
            for (f, kind) in all {
                prop_assert!(!book.record_fill(f, kind).unwrap());
            }
            prop_assert_eq!(book.reconcile(&broker.state), vec![]);
        }
    }
}
