//! Option pricing. Black–Scholes–Merton for European options with a continuous
//! dividend yield (Hull, *Options, Futures, and Other Derivatives*, ch. 17).
//!
//! Transcendental functions come from the `libm` crate (a port of musl's libm) rather
//! than the platform's C library, so the simulator's prices are bit-identical on every
//! machine.

pub mod bsm;
pub mod hv;
pub mod iv;
pub mod surface;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// When an option expiring on `expiry` settles, New York time: 09:30 for AM-settled
/// index options (SPX monthlies), else the close of the expiry session (13:00 on an
/// early close).
pub fn settlement_time(expiry: NaiveDate, am_settled: bool) -> NaiveDateTime {
    let time = if am_settled {
        NaiveTime::from_hms_opt(9, 30, 0).expect("valid time")
    } else {
        crate::calendar::session(expiry)
            .ok()
            .flatten()
            .map(|s| s.close)
            .unwrap_or_else(|| NaiveTime::from_hms_opt(16, 0, 0).expect("valid time"))
    };
    expiry.and_time(time)
}

/// Years (ACT/365, to the second, across DST) from a New York time to an option's
/// settlement; at least one minute, so a contract quoted at its expiry has time value.
pub fn years_to_settlement(from: NaiveDateTime, expiry: NaiveDate, am_settled: bool) -> f64 {
    let a = crate::calendar::ny(from);
    let b = crate::calendar::ny(settlement_time(expiry, am_settled));
    ((b - a).num_seconds() as f64 / (365.0 * 86_400.0)).max(1.0 / (365.0 * 1440.0))
}

/// Whether a contract is AM-settled: cash-settled index options whose root is the
/// index itself (SPX), as opposed to the PM-settled weekly roots (SPXW).
pub fn is_am_settled(root: &str, underlying: &str, cash_settled: bool) -> bool {
    cash_settled && root == underlying && !root.ends_with('W')
}
