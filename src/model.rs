//! Domain types: plain data with validated constructors. Prices are exact
//! ([`Price`], fixed point at 1/10,000 of a dollar, stored as `DECIMAL(18,4)`);
//! analytics (vols, greeks) are `f64`.

use chrono::NaiveDate;
use std::fmt;

/// An exact price or amount in dollars, fixed point with four decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Price(i64);

impl Price {
    pub const SCALE: i64 = 10_000;
    pub const ZERO: Price = Price(0);

    pub fn from_raw(ticks: i64) -> Self {
        Price(ticks)
    }
    pub fn from_cents(cents: i64) -> Self {
        Price(cents * 100)
    }
    /// Rounds to the nearest 1/10,000 dollar (half away from zero).
    pub fn from_f64(dollars: f64) -> Self {
        Price((dollars * Self::SCALE as f64).round() as i64)
    }
    pub fn raw(self) -> i64 {
        self.0
    }
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / Self::SCALE as f64
    }
    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

impl std::ops::Add for Price {
    type Output = Price;
    fn add(self, o: Price) -> Price {
        Price(self.0 + o.0)
    }
}

impl std::ops::Sub for Price {
    type Output = Price;
    fn sub(self, o: Price) -> Price {
        Price(self.0 - o.0)
    }
}

impl std::ops::Neg for Price {
    type Output = Price;
    fn neg(self) -> Price {
        Price(-self.0)
    }
}

impl std::ops::AddAssign for Price {
    fn add_assign(&mut self, o: Price) {
        self.0 += o.0;
    }
}

impl std::iter::Sum for Price {
    fn sum<I: Iterator<Item = Price>>(iter: I) -> Price {
        Price(iter.map(|p| p.0).sum())
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        let whole = a / Self::SCALE as u64;
        let frac = a % Self::SCALE as u64;
        if frac.is_multiple_of(100) {
            write!(f, "{sign}{whole}.{:02}", frac / 100)
        } else {
            write!(f, "{sign}{whole}.{frac:04}")
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OptionRight {
    Call,
    Put,
}

impl OptionRight {
    /// From the store's `put_call` column: `C` is a call, anything else a put.
    pub fn from_code(code: &str) -> OptionRight {
        if code == "C" {
            OptionRight::Call
        } else {
            OptionRight::Put
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            OptionRight::Call => "C",
            OptionRight::Put => "P",
        }
    }
}

/// How an option settles at expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Equity and ETF options: American style, settled by delivery of shares.
    Physical,
    /// Index options (SPX): European style, cash-settled at intrinsic.
    Cash,
}

impl Settlement {
    pub fn code(self) -> &'static str {
        match self {
            Settlement::Physical => "physical",
            Settlement::Cash => "cash",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("strike must be positive, got {0}")]
    NonPositiveStrike(Price),
    #[error("expiry {expiry} is before the quote date {as_of}")]
    ExpiredContract { expiry: NaiveDate, as_of: NaiveDate },
    #[error("underlying symbol must be 1 to 6 characters, got '{0}'")]
    BadSymbol(String),
}

/// The OCC option symbol: root padded to 6, YYMMDD, C/P, strike × 1000 in 8 digits.
/// e.g. `SPY   250321C00580000`.
pub fn occ_symbol(root: &str, expiry: NaiveDate, right: OptionRight, strike: Price) -> String {
    let strike_milli = strike.raw() / (Price::SCALE / 1000);
    format!(
        "{root:<6}{}{}{strike_milli:08}",
        expiry.format("%y%m%d"),
        right.code()
    )
}

/// A daily bar of an underlying, as the source gave it (unadjusted prices; the cash
/// dividend and split ratio that went ex on that day are carried alongside so that
/// returns can be adjusted without rewriting history).
#[derive(Debug, Clone, PartialEq)]
pub struct DailyBar {
    pub date: NaiveDate,
    pub symbol: String,
    pub open: Price,
    pub high: Price,
    pub low: Price,
    pub close: Price,
    pub volume: i64,
    pub dividend: Price,
    pub split_ratio: f64,
}

/// One option quote as received from a source.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionQuote {
    pub underlying: String,
    /// Root of the OCC symbol (e.g. `SPXW` for SPX weeklies).
    pub root: String,
    pub expiry: NaiveDate,
    pub strike: Price,
    pub right: OptionRight,
    pub settlement: Settlement,
    pub bid: Price,
    pub ask: Price,
    pub bid_size: i32,
    pub ask_size: i32,
    pub volume: i64,
    pub open_interest: i64,
    pub underlying_price: Price,
    /// The implied volatility the source reports, when it reports one (Cboe, IBKR,
    /// and the simulator's true pricing vol). `None` for sources that do not.
    pub source_iv: Option<f64>,
}

impl OptionQuote {
    pub fn contract(&self) -> String {
        occ_symbol(&self.root, self.expiry, self.right, self.strike)
    }

    /// Validate what a constructor from outside data must: a positive strike and an
    /// expiry that is not before the quote date.
    pub fn check(&self, as_of: NaiveDate) -> Result<(), ModelError> {
        if !self.strike.is_positive() {
            return Err(ModelError::NonPositiveStrike(self.strike));
        }
        if self.expiry < as_of {
            return Err(ModelError::ExpiredContract {
                expiry: self.expiry,
                as_of,
            });
        }
        if self.underlying.is_empty() || self.underlying.len() > 6 {
            return Err(ModelError::BadSymbol(self.underlying.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occ_symbol_format() {
        let e = NaiveDate::from_ymd_opt(2025, 3, 21).unwrap();
        assert_eq!(
            occ_symbol("SPY", e, OptionRight::Call, Price::from_f64(580.0)),
            "SPY   250321C00580000"
        );
        assert_eq!(
            occ_symbol("SPXW", e, OptionRight::Put, Price::from_f64(5872.5)),
            "SPXW  250321P05872500"
        );
    }

    #[test]
    fn price_display_and_rounding() {
        assert_eq!(Price::from_f64(1.23).to_string(), "1.23");
        assert_eq!(Price::from_f64(-0.05).to_string(), "-0.05");
        assert_eq!(Price::from_f64(0.1234).to_string(), "0.1234");
        assert_eq!(Price::from_cents(123).raw(), 12_300);
    }
}
