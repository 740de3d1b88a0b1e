//! Futures products and their contract calendar: the quarterly equity-index cycle
//! (H = March, M = June, U = September, Z = December), each contract's last trading
//! day (the third Friday of its month, or the session before when that Friday is not
//! an NYSE session), the roll day, the front contract on a date and the next one.
//!
//! Symbols are the root, the month code and the year's two digits: `MESZ25` for
//! December 2025 (IB's local symbol is `MESZ5`; the two digits keep a symbol unique
//! over the calendar's 2000–2035, and read back without a date).
//!
//! The roll: CME's equity-index convention rolls the expiring quarterly contract
//! "eight calendar days before the contract expires" (CME Group, Equity Index Roll
//! Dates, cmegroup.com/trading/equity-index/rolldates.html: expiry 2014-12-19, roll
//! 2014-12-11), i.e. the Thursday of the week before the third Friday. The roll day is
//! counted from the third Friday and moved to the session before when it is not a
//! session. From the roll day on, the next contract is the front one.
//!
//! Margins: CME's published MES performance bonds change with volatility; the defaults
//! here (maintenance $2,300, initial $2,530 = 110% of it, CME's speculator ratio) are
//! the order of CME's 2025 figures, and `[futures.MES]` in `jobs/desk.toml` overrides
//! them.

use crate::calendar;
use crate::model::instrument::FuturesContract;
use crate::model::{ModelError, Price};
use chrono::{Datelike, Duration, NaiveDate, Weekday};

/// The terms of a futures product.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Product {
    pub root: &'static str,
    /// Dollars per 1.00 of price.
    pub multiplier: i64,
    /// Minimum price increment.
    pub tick: Price,
    /// The index it is priced from in the simulated market.
    pub index: &'static str,
    /// Initial and maintenance margin per contract, dollars.
    pub initial_margin: Price,
    pub maintenance_margin: Price,
}

/// CME's equity-index roll date: the Thursday eight calendar days before the third-Friday
/// expiry (`[futures] roll_days_before` in `jobs/desk.toml` changes it).
pub const CME_ROLL_DAYS_BEFORE: i64 = 8;

/// The products optdesk trades: the Micro E-mini S&P 500 (MES, $5 × the index, tick
/// 0.25 = $1.25) and the E-mini (ES, $50, tick 0.25).
pub const PRODUCTS: &[Product] = &[
    Product {
        root: "MES",
        multiplier: 5,
        tick: Price::from_raw(2_500),
        index: "SPX",
        initial_margin: Price::from_raw(2_530 * 10_000),
        maintenance_margin: Price::from_raw(2_300 * 10_000),
    },
    Product {
        root: "ES",
        multiplier: 50,
        tick: Price::from_raw(2_500),
        index: "SPX",
        initial_margin: Price::from_raw(25_300 * 10_000),
        maintenance_margin: Price::from_raw(23_000 * 10_000),
    },
];

pub fn product(root: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.root == root)
}

/// The quarterly months and their codes.
pub const MONTH_CODES: [(u32, char); 4] = [(3, 'H'), (6, 'M'), (9, 'U'), (12, 'Z')];

fn code_of(month: u32) -> Option<char> {
    MONTH_CODES.iter().find(|(m, _)| *m == month).map(|x| x.1)
}

/// The third Friday of a month.
pub fn third_friday(year: i32, month: u32) -> NaiveDate {
    let first = NaiveDate::from_ymd_opt(year, month, 1).expect("a month");
    let to_friday =
        (Weekday::Fri.num_days_from_monday() + 7 - first.weekday().num_days_from_monday()) % 7;
    first + Duration::days(to_friday as i64 + 14)
}

/// The session on or before `d` (`d` itself outside the calendar's range).
fn session_on_or_before(d: NaiveDate) -> NaiveDate {
    calendar::previous_session_on_or_before(d)
        .map(|s| s.date)
        .unwrap_or(d)
}

/// The last trading day of a contract month: the third Friday, or the session before.
pub fn expiry(year: i32, month: u32) -> NaiveDate {
    session_on_or_before(third_friday(year, month))
}

/// The roll day of a contract month: `days_before` calendar days before its third
/// Friday, or the session before that day when it is not a session.
pub fn roll_date(year: i32, month: u32, days_before: i64) -> NaiveDate {
    session_on_or_before(third_friday(year, month) - Duration::days(days_before))
}

/// `MESZ25`.
pub fn symbol(root: &str, year: i32, month: u32) -> String {
    let code = code_of(month).unwrap_or('?');
    format!("{root}{code}{:02}", year.rem_euclid(100))
}

/// The contract of `p` for a quarterly month.
pub fn contract(p: &Product, year: i32, month: u32) -> Result<FuturesContract, ModelError> {
    if code_of(month).is_none() {
        return Err(ModelError::BadInstrument(format!(
            "{}: {year}-{month:02} is not a quarterly month (March, June, September, December)",
            p.root
        )));
    }
    FuturesContract::new_checked(
        &symbol(p.root, year, month),
        p.root,
        (year, month),
        expiry(year, month),
        p.multiplier,
        p.tick,
    )
}

/// A contract from its symbol (`MESZ25`), for a known product.
pub fn parse(symbol: &str) -> Result<FuturesContract, ModelError> {
    let bad = |why: &str| ModelError::BadInstrument(format!("{symbol}: {why}"));
    if symbol.len() < 4 || !symbol.is_ascii() {
        return Err(bad(
            "expected ROOT + month code + two-digit year, e.g. MESZ25",
        ));
    }
    let (head, yy) = symbol.split_at(symbol.len() - 2);
    let (root, code) = head.split_at(head.len() - 1);
    let p = product(root).ok_or_else(|| bad("not a futures product optdesk knows"))?;
    let month = MONTH_CODES
        .iter()
        .find(|(_, c)| code.starts_with(*c))
        .map(|x| x.0)
        .ok_or_else(|| bad("the month code must be H, M, U or Z"))?;
    let yy: i32 = yy.parse().map_err(|_| bad("the year must be two digits"))?;
    contract(p, 2000 + yy, month)
}

/// The quarterly contract month after (year, month).
pub fn next_month(year: i32, month: u32) -> (i32, u32) {
    let q = month.div_ceil(3) * 3;
    if q >= 12 {
        (year + 1, 3)
    } else {
        (year, q + 3)
    }
}

/// The contract after `c`.
pub fn next_contract(c: &FuturesContract) -> Result<FuturesContract, ModelError> {
    let p = product(&c.root)
        .ok_or_else(|| ModelError::BadInstrument(format!("{}: unknown product", c.root)))?;
    let (y, m) = next_month(c.contract_month.0, c.contract_month.1);
    contract(p, y, m)
}

/// The front contract of `p` on `d`: the first quarterly contract whose roll day is
/// after `d` (on the roll day itself, the next contract is the front one).
pub fn front(p: &Product, d: NaiveDate, days_before: i64) -> Result<FuturesContract, ModelError> {
    let (mut y, mut m) = (d.year(), d.month().div_ceil(3) * 3);
    // The quarter month on or after d's month; past its roll, the one after.
    while roll_date(y, m, days_before) <= d {
        (y, m) = next_month(y, m);
    }
    contract(p, y, m)
}

/// Whether a contract held on `d` should roll: `d` is on or after its roll day.
pub fn due_to_roll(c: &FuturesContract, d: NaiveDate, days_before: i64) -> bool {
    roll_date(c.contract_month.0, c.contract_month.1, days_before) <= d
}

/// Round a price to the product's tick (to the nearest; halves away from zero).
pub fn to_tick(price: f64, tick: Price) -> Price {
    let t = tick.to_f64();
    Price::from_f64((price / t).round() * t)
}

/// A simulated quote with carry: fair value = index × e^{(r − q) t}, t the years to
/// the contract's expiry; (bid, ask, last) a one-tick market around it.
pub fn fair_quote(
    index: f64,
    rate: f64,
    div_yield: f64,
    years: f64,
    tick: Price,
) -> (Price, Price, Price) {
    let fair = index * ((rate - div_yield) * years.max(0.0)).exp();
    let t = tick.to_f64();
    let bid = Price::from_f64((fair / t).floor() * t);
    (bid, bid + tick, to_tick(fair, tick))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn symbols_read_back_and_bad_ones_are_refused() {
        let c = parse("MESZ25").unwrap();
        assert_eq!((c.root.as_str(), c.contract_month), ("MES", (2025, 12)));
        assert_eq!(c.expiry, d("2025-12-19"));
        assert_eq!((c.multiplier, c.tick), (5, Price::from_f64(0.25)));
        assert_eq!(next_contract(&c).unwrap().symbol, "MESH26");
        for bad in ["MESF25", "XYZZ25", "MESZ2", "MESZAB"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_quote_is_fair_value_on_the_tick_one_tick_wide() {
        let tick = Price::from_f64(0.25);
        // 5,000 × e^{(0.04 − 0.013) × 0.25} = 5,033.86...
        let (bid, ask, last) = fair_quote(5000.0, 0.04, 0.013, 0.25, tick);
        assert_eq!(bid, Price::from_f64(5033.75));
        assert_eq!(ask, Price::from_f64(5034.0));
        assert_eq!(last, Price::from_f64(5033.75));
    }

    /// Every contract month 2020–2026: its expiry (third Friday, or the session
    /// before: June 2026's third Friday is Juneteenth), its roll day (8 days before the
    /// third Friday: a Thursday), and the front contract on the session before the
    /// roll (still this one) and on the roll day (the next one).
    #[test]
    fn the_front_contract_and_the_roll_over_every_month_2020_2026() {
        let mes = product("MES").unwrap();
        let mut n = 0;
        for y in 2020..=2026 {
            for (m, code) in MONTH_CODES {
                let c = contract(mes, y, m).unwrap();
                assert_eq!(c.symbol, format!("MES{code}{:02}", y % 100));
                let friday = third_friday(y, m);
                assert_eq!(friday.weekday(), Weekday::Fri);
                assert!((15..=21).contains(&friday.day()));
                let want_expiry = if (y, m) == (2026, 6) {
                    d("2026-06-18")
                } else {
                    friday
                };
                assert_eq!(c.expiry, want_expiry, "{}", c.symbol);
                let roll = roll_date(y, m, 8);
                assert_eq!(roll, friday - Duration::days(8), "{}", c.symbol);
                assert_eq!(roll.weekday(), Weekday::Thu);
                let before = calendar::sessions_before(roll, 1)[0];
                assert_eq!(
                    front(mes, before, 8).unwrap(),
                    c,
                    "{} on {before}",
                    c.symbol
                );
                assert!(!due_to_roll(&c, before, 8));
                let next = next_contract(&c).unwrap();
                assert_eq!(front(mes, roll, 8).unwrap(), next, "{} on {roll}", c.symbol);
                assert!(due_to_roll(&c, roll, 8));
                // The month's first day: this contract is the front one (the last
                // roll was a quarter ago).
                let first = NaiveDate::from_ymd_opt(y, m, 1).unwrap();
                assert_eq!(front(mes, first, 8).unwrap(), c);
                n += 1;
            }
        }
        assert_eq!(n, 28);
        // Pinned from CME's published table: Dec 2014 expires the 19th, rolls the 11th.
        assert_eq!(roll_date(2014, 12, 8), d("2014-12-11"));
        assert_eq!(expiry(2014, 12), d("2014-12-19"));
        // A configured roll 3 days before.
        assert_eq!(roll_date(2025, 3, 3), d("2025-03-18"));
        assert_eq!(front(mes, d("2025-03-17"), 3).unwrap().symbol, "MESH25");
        assert_eq!(front(mes, d("2025-03-18"), 3).unwrap().symbol, "MESM25");
    }
}
