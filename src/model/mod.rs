//! Domain types: plain data with validated constructors. Prices are exact
//! ([`Price`], fixed point at 1/10,000 of a dollar, stored as `DECIMAL(18,4)`);
//! analytics (vols, greeks) are `f64`. Identifiers ([`identifiers`]: symbols, OCC
//! option symbols, client order ids) and instruments with their contract terms
//! ([`instrument`]) are checked where they are made: an unknown right code, a NaN
//! price or a malformed OCC symbol is an error at the boundary, never a put or $0.00.

pub mod identifiers;
pub mod instrument;

use chrono::NaiveDate;
use std::fmt;

/// An exact price or amount in dollars, fixed point with four decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Price(i64);

impl Price {
    pub const SCALE: i64 = 10_000;
    pub const ZERO: Price = Price(0);

    pub const fn from_raw(ticks: i64) -> Self {
        Price(ticks)
    }
    pub fn from_cents(cents: i64) -> Self {
        Price(cents * 100)
    }
    /// Rounds to the nearest 1/10,000 dollar (half away from zero). For amounts the
    /// program computed itself; a value from outside (a file, a source, a setting) goes
    /// through [`Price::try_from_f64`], which refuses NaN and infinities.
    pub fn from_f64(dollars: f64) -> Self {
        debug_assert!(dollars.is_finite(), "Price::from_f64({dollars})");
        Price((dollars * Self::SCALE as f64).round() as i64)
    }
    /// A price from outside data: NaN, an infinity or a value beyond ±$900 billion is
    /// an error naming the value, never a silent $0.00.
    pub fn try_from_f64(dollars: f64) -> Result<Self, ModelError> {
        if !dollars.is_finite() || dollars.abs() > 9.0e11 {
            return Err(ModelError::BadPrice(dollars.to_string()));
        }
        Ok(Price((dollars * Self::SCALE as f64).round() as i64))
    }
    /// `self × n` (a per-unit amount times a quantity or multiplier).
    pub fn times(self, n: i64) -> Price {
        Price(self.0 * n)
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

impl std::str::FromStr for OptionRight {
    type Err = ModelError;
    /// `C`/`P` (the store's `put_call`), or `call`/`put` in any case; anything else is
    /// an error naming the code.
    fn from_str(code: &str) -> Result<OptionRight, ModelError> {
        match code.trim().to_ascii_uppercase().as_str() {
            "C" | "CALL" => Ok(OptionRight::Call),
            "P" | "PUT" => Ok(OptionRight::Put),
            _ => Err(ModelError::BadRight(code.to_string())),
        }
    }
}

impl OptionRight {
    /// From the store's `put_call` column (`C` or `P`); any other code is an error.
    pub fn from_code(code: &str) -> Result<OptionRight, ModelError> {
        code.parse()
    }

    pub fn code(self) -> &'static str {
        match self {
            OptionRight::Call => "C",
            OptionRight::Put => "P",
        }
    }
}

/// How an option settles at expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    pub fn from_code(code: &str) -> Result<Settlement, ModelError> {
        match code {
            "physical" => Ok(Settlement::Physical),
            "cash" => Ok(Settlement::Cash),
            _ => Err(ModelError::BadField {
                field: "settlement",
                value: code.to_string(),
            }),
        }
    }
}

/// When an option can be exercised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExerciseStyle {
    /// Any day up to expiry (equity and ETF options).
    American,
    /// At expiry only (SPX, NDX, RUT, XSP index options).
    European,
}

impl ExerciseStyle {
    pub fn code(self) -> &'static str {
        match self {
            ExerciseStyle::American => "american",
            ExerciseStyle::European => "european",
        }
    }
    pub fn from_code(code: &str) -> Result<ExerciseStyle, ModelError> {
        match code {
            "american" => Ok(ExerciseStyle::American),
            "european" => Ok(ExerciseStyle::European),
            _ => Err(ModelError::BadField {
                field: "style",
                value: code.to_string(),
            }),
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
    #[error("unknown option right '{0}': expected C or P")]
    BadRight(String),
    #[error("price '{0}' is not a finite amount of dollars")]
    BadPrice(String),
    #[error("quantity {0} is not a whole, non-zero number of units")]
    BadQuantity(String),
    #[error("malformed OCC option symbol '{symbol}': {reason}")]
    BadOcc { symbol: String, reason: String },
    #[error("bad {field} '{value}'")]
    BadField { field: &'static str, value: String },
    #[error("bid {bid} is above ask {ask}")]
    CrossedQuote { bid: Price, ask: Price },
    #[error("ask is 0: no market")]
    NoAsk,
    #[error("{0} quoted twice in one snapshot; the first quote stands")]
    Duplicate(String),
    #[error("negative price: bid {bid}, ask {ask}")]
    NegativePrice { bid: Price, ask: Price },
    #[error("bad instrument: {0}")]
    BadInstrument(String),
    #[error("bad client order id '{id}': {reason}")]
    BadOrderId { id: String, reason: String },
}

impl ModelError {
    /// The hygiene rule a quote that fails [`OptionQuote::check`] broke, as stored in
    /// `quote_rejects.rule`.
    pub fn rule(&self) -> &'static str {
        match self {
            ModelError::NonPositiveStrike(_) => "bad_strike",
            ModelError::ExpiredContract { .. } => "expired",
            ModelError::BadSymbol(_) => "bad_symbol",
            ModelError::CrossedQuote { .. } => "crossed",
            ModelError::NoAsk => "no_ask",
            ModelError::Duplicate(_) => "duplicate",
            ModelError::NegativePrice { .. } => "negative_price",
            _ => "unparseable",
        }
    }
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

    /// Validate what a constructor from outside data must: a positive strike, an
    /// expiry that is not before the quote date, a symbol, prices that are not negative,
    /// an ask (a contract nobody offers is no market) and a bid not above it.
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
        if self.bid.raw() < 0 || self.ask.raw() < 0 {
            return Err(ModelError::NegativePrice {
                bid: self.bid,
                ask: self.ask,
            });
        }
        if self.ask.raw() == 0 {
            return Err(ModelError::NoAsk);
        }
        if self.bid > self.ask {
            return Err(ModelError::CrossedQuote {
                bid: self.bid,
                ask: self.ask,
            });
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
    fn bad_codes_and_non_finite_prices_are_errors_not_puts_or_zero() {
        assert_eq!("C".parse::<OptionRight>(), Ok(OptionRight::Call));
        assert_eq!("put".parse::<OptionRight>(), Ok(OptionRight::Put));
        assert_eq!(
            OptionRight::from_code("X"),
            Err(ModelError::BadRight("X".into()))
        );
        assert!(Price::try_from_f64(f64::NAN).is_err());
        assert!(Price::try_from_f64(f64::INFINITY).is_err());
        assert_eq!(Price::try_from_f64(1.25), Ok(Price::from_cents(125)));
        assert_eq!(Settlement::from_code("cash"), Ok(Settlement::Cash));
        assert!(Settlement::from_code("CASH").is_err());
    }

    #[test]
    fn price_display_and_rounding() {
        assert_eq!(Price::from_f64(1.23).to_string(), "1.23");
        assert_eq!(Price::from_f64(-0.05).to_string(), "-0.05");
        assert_eq!(Price::from_f64(0.1234).to_string(), "0.1234");
        assert_eq!(Price::from_cents(123).raw(), 12_300);
    }
}
