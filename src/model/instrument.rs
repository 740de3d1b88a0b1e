//! What a position is in, with its contract terms: an equity (or ETF), a listed option
//! (OCC symbol, underlying, style, settlement, multiplier) or a future (root, contract
//! month, expiry, multiplier, tick). Each is made by a checked constructor; the
//! multiplier and the settlement come from here and nowhere else.

use super::identifiers::{OccSymbol, Symbol};
use super::{ExerciseStyle, ModelError, OptionRight, Price, Settlement};
use chrono::NaiveDate;

/// Shares per listed equity, ETF or index option contract.
pub const STANDARD_OPTION_MULTIPLIER: i64 = 100;

/// Roots of index options, taken as European and cash-settled (the importer's SQL reads
/// the same list).
pub const INDEX_ROOTS: &[&str] = &[
    "SPX", "SPXW", "SPXPM", "XSP", "NDX", "NDXP", "RUT", "RUTW", "VIX", "VIXW", "BVZ", "DJX",
    "OEX", "XEO", "MRUT",
];

/// The usual terms of a listed option by its root, for data that does not say: index
/// roots ([`INDEX_ROOTS`]) are European and cash-settled; everything else American and
/// settled by delivery of shares.
pub fn listed_terms(root: &str) -> (ExerciseStyle, Settlement) {
    if INDEX_ROOTS.contains(&root) {
        (ExerciseStyle::European, Settlement::Cash)
    } else {
        (ExerciseStyle::American, Settlement::Physical)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OptionContract {
    pub occ: OccSymbol,
    pub underlying: String,
    pub style: ExerciseStyle,
    pub settlement: Settlement,
    /// Units of the underlying per contract.
    pub multiplier: i64,
}

impl OptionContract {
    pub fn new_checked(
        underlying: &str,
        occ: OccSymbol,
        style: ExerciseStyle,
        settlement: Settlement,
        multiplier: i64,
    ) -> Result<OptionContract, ModelError> {
        Symbol::new_checked(underlying)?;
        if !(1..=100_000).contains(&multiplier) {
            return Err(ModelError::BadInstrument(format!(
                "{occ}: multiplier {multiplier} must be 1 to 100,000"
            )));
        }
        Ok(OptionContract {
            occ,
            underlying: underlying.to_string(),
            style,
            settlement,
            multiplier,
        })
    }

    /// A listed option with the usual terms of its root ([`listed_terms`]) and 100
    /// shares per contract.
    pub fn listed(underlying: &str, occ: OccSymbol) -> Result<OptionContract, ModelError> {
        let (style, settlement) = listed_terms(&occ.root);
        Self::new_checked(
            underlying,
            occ,
            style,
            settlement,
            STANDARD_OPTION_MULTIPLIER,
        )
    }

    pub fn contract(&self) -> String {
        self.occ.to_string()
    }
    pub fn expiry(&self) -> NaiveDate {
        self.occ.expiry
    }
    pub fn strike(&self) -> Price {
        self.occ.strike
    }
    pub fn right(&self) -> OptionRight {
        self.occ.right
    }
    /// Cash at intrinsic value at expiry (index options), not delivery of shares.
    pub fn is_cash_settled(&self) -> bool {
        self.settlement == Settlement::Cash
    }
    /// Intrinsic value per unit at an underlying price.
    pub fn intrinsic(&self, underlying_price: Price) -> Price {
        let v = match self.right() {
            OptionRight::Call => underlying_price - self.strike(),
            OptionRight::Put => self.strike() - underlying_price,
        };
        v.max(Price::ZERO)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FuturesContract {
    /// The contract's own symbol, e.g. `MESH5`.
    pub symbol: String,
    /// The product, e.g. `MES`.
    pub root: String,
    /// Year and month of delivery.
    pub contract_month: (i32, u32),
    /// Last trading day.
    pub expiry: NaiveDate,
    /// Dollars per 1.00 of price (5 for MES, 50 for ES).
    pub multiplier: i64,
    /// Minimum price increment (0.25 for MES).
    pub tick: Price,
}

impl FuturesContract {
    pub fn new_checked(
        symbol: &str,
        root: &str,
        contract_month: (i32, u32),
        expiry: NaiveDate,
        multiplier: i64,
        tick: Price,
    ) -> Result<FuturesContract, ModelError> {
        Symbol::new_checked(symbol)?;
        Symbol::new_checked(root)?;
        let (y, m) = contract_month;
        if !(1..=12).contains(&m) || !(2000..=2100).contains(&y) {
            return Err(ModelError::BadInstrument(format!(
                "{symbol}: contract month {y}-{m:02} is not a month"
            )));
        }
        if !(1..=100_000).contains(&multiplier) || !tick.is_positive() {
            return Err(ModelError::BadInstrument(format!(
                "{symbol}: multiplier {multiplier} and tick {tick} must be positive"
            )));
        }
        Ok(FuturesContract {
            symbol: symbol.to_string(),
            root: root.to_string(),
            contract_month,
            expiry,
            multiplier,
            tick,
        })
    }
}

/// What a position is in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Instrument {
    /// Shares of a stock or ETF (`kind = 'shares'` in the store).
    Equity {
        symbol: String,
    },
    Option(OptionContract),
    Future(FuturesContract),
}

impl Instrument {
    pub fn equity(symbol: &str) -> Result<Instrument, ModelError> {
        Symbol::new_checked(symbol)?;
        Ok(Instrument::Equity {
            symbol: symbol.to_string(),
        })
    }

    /// Dollars per 1.00 of price per unit of quantity.
    pub fn multiplier(&self) -> i64 {
        match self {
            Instrument::Option(o) => o.multiplier,
            Instrument::Future(f) => f.multiplier,
            Instrument::Equity { .. } => 1,
        }
    }

    /// The key positions are kept by: the OCC symbol, the future's or the ticker.
    pub fn key(&self) -> String {
        match self {
            Instrument::Option(o) => o.contract(),
            Instrument::Future(f) => f.symbol.clone(),
            Instrument::Equity { symbol } => symbol.clone(),
        }
    }

    pub fn underlying(&self) -> &str {
        match self {
            Instrument::Option(o) => &o.underlying,
            Instrument::Future(f) => &f.root,
            Instrument::Equity { symbol } => symbol,
        }
    }

    /// The store's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Instrument::Option(_) => "option",
            Instrument::Future(_) => "future",
            Instrument::Equity { .. } => "shares",
        }
    }

    pub fn as_option(&self) -> Option<&OptionContract> {
        match self {
            Instrument::Option(o) => Some(o),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_come_from_the_instrument() {
        let spx = OptionContract::listed("SPX", OccSymbol::parse("SPXW  250321P05800000").unwrap())
            .unwrap();
        assert!(spx.is_cash_settled());
        assert_eq!(spx.style, ExerciseStyle::European);
        let spy = OptionContract::listed("SPY", OccSymbol::parse("SPY   250321C00580000").unwrap())
            .unwrap();
        assert!(!spy.is_cash_settled());
        assert_eq!(Instrument::Option(spy.clone()).multiplier(), 100);
        assert_eq!(
            spy.intrinsic(Price::from_cents(59_000)),
            Price::from_cents(1_000)
        );
        assert_eq!(spy.intrinsic(Price::from_cents(57_000)), Price::ZERO);
        let mes = FuturesContract::new_checked(
            "MESH5",
            "MES",
            (2025, 3),
            "2025-03-21".parse().unwrap(),
            5,
            Price::from_f64(0.25),
        )
        .unwrap();
        assert_eq!(Instrument::Future(mes).multiplier(), 5);
        assert!(FuturesContract::new_checked(
            "MESH5",
            "MES",
            (2025, 13),
            "2025-03-21".parse().unwrap(),
            5,
            Price::from_f64(0.25)
        )
        .is_err());
        assert!(OptionContract::new_checked(
            "SPY",
            spy.occ.clone(),
            ExerciseStyle::American,
            Settlement::Physical,
            0
        )
        .is_err());
    }
}
