//! Implied volatility from a price: Jäckel's "Let's Be Rational" (2015) through the
//! `implied-vol` crate, which reproduces the price to machine precision wherever the
//! price carries information. Where it does not, a typed reason says why.

use crate::model::OptionRight;
use implied_vol::{solver::Jaeckel, ImpliedBlackVolatility};

/// Why a price has no implied volatility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IvError {
    #[error("price below intrinsic value")]
    BelowIntrinsic,
    #[error("price above the no-arbitrage upper bound")]
    AboveUpperBound,
    #[error("no time value (price equals intrinsic, or expired)")]
    NoTimeValue,
    #[error("invalid input (non-positive spot, strike or price, negative time, or not finite)")]
    InvalidInput,
}

impl IvError {
    /// A short code for tables and CSV notes.
    pub fn code(self) -> &'static str {
        match self {
            IvError::BelowIntrinsic => "below_intrinsic",
            IvError::AboveUpperBound => "above_upper_bound",
            IvError::NoTimeValue => "no_time_value",
            IvError::InvalidInput => "invalid_input",
        }
    }
}

/// The Black–Scholes–Merton implied volatility of a European option's price.
///
/// The price is moved to forward terms (undiscounted: price·e^{rT}, forward
/// F = S·e^{(r−q)T}) and inverted by Jäckel's method.
pub fn implied_vol(
    right: OptionRight,
    price: f64,
    spot: f64,
    strike: f64,
    t_years: f64,
    rate: f64,
    div_yield: f64,
) -> Result<f64, IvError> {
    let finite = [price, spot, strike, t_years, rate, div_yield]
        .iter()
        .all(|x| x.is_finite());
    if !finite || spot <= 0.0 || strike <= 0.0 || price < 0.0 || t_years < 0.0 {
        return Err(IvError::InvalidInput);
    }
    let forward = spot * libm::exp((rate - div_yield) * t_years);
    let undiscounted = price * libm::exp(rate * t_years);
    let is_call = right == OptionRight::Call;
    let intrinsic = if is_call {
        (forward - strike).max(0.0)
    } else {
        (strike - forward).max(0.0)
    };
    let upper = if is_call { forward } else { strike };
    // Compare at a few ulps of the price scale: below that the price carries no
    // information about volatility.
    let tol = 4.0 * f64::EPSILON * upper.max(1.0);
    if undiscounted < intrinsic - tol {
        return Err(IvError::BelowIntrinsic);
    }
    if undiscounted >= upper - tol {
        return Err(IvError::AboveUpperBound);
    }
    if t_years == 0.0 || undiscounted <= intrinsic + tol {
        return Err(IvError::NoTimeValue);
    }
    let solver = ImpliedBlackVolatility::builder()
        .option_price(undiscounted)
        .forward(forward)
        .strike(strike)
        .expiry(t_years)
        .is_call(is_call)
        .build()
        .ok_or(IvError::InvalidInput)?;
    match solver.calculate_with::<Jaeckel>() {
        Some(v) if v.is_finite() && v > 0.0 => Ok(v),
        Some(v) if v.is_infinite() => Err(IvError::AboveUpperBound),
        Some(_) => Err(IvError::NoTimeValue),
        None => Err(if undiscounted < intrinsic {
            IvError::BelowIntrinsic
        } else {
            IvError::AboveUpperBound
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::bsm::BsmInputs;
    use proptest::prelude::*;

    fn inputs(right: OptionRight, spot: f64, strike: f64, t: f64, vol: f64) -> BsmInputs {
        BsmInputs {
            right,
            spot,
            strike,
            t_years: t,
            rate: 0.04,
            div_yield: 0.012,
            vol,
        }
    }

    #[test]
    fn recovers_hull_vol() {
        // Hull 15.6: c = 4.7594 at σ = 20%.
        let c = BsmInputs {
            right: OptionRight::Call,
            spot: 42.0,
            strike: 40.0,
            t_years: 0.5,
            rate: 0.1,
            div_yield: 0.0,
            vol: 0.2,
        };
        let v = implied_vol(OptionRight::Call, c.price(), 42.0, 40.0, 0.5, 0.1, 0.0).unwrap();
        assert!((v - 0.2).abs() < 1e-14, "{v}");
    }

    #[test]
    fn typed_reasons_where_the_price_says_nothing() {
        let c = OptionRight::Call;
        // Deep ITM call priced below intrinsic (S=100, K=50).
        assert_eq!(
            implied_vol(c, 40.0, 100.0, 50.0, 0.5, 0.0, 0.0),
            Err(IvError::BelowIntrinsic)
        );
        assert_eq!(
            implied_vol(c, 150.0, 100.0, 50.0, 0.5, 0.0, 0.0),
            Err(IvError::AboveUpperBound)
        );
        assert_eq!(
            implied_vol(c, 50.0, 100.0, 50.0, 0.5, 0.0, 0.0),
            Err(IvError::NoTimeValue)
        );
        assert_eq!(
            implied_vol(c, 1.0, 100.0, 100.0, 0.0, 0.0, 0.0),
            Err(IvError::NoTimeValue),
            "expired"
        );
        assert_eq!(
            implied_vol(c, -1.0, 100.0, 100.0, 0.5, 0.0, 0.0),
            Err(IvError::InvalidInput)
        );
        assert_eq!(
            implied_vol(c, 1.0, 100.0, -5.0, 0.5, 0.0, 0.0),
            Err(IvError::InvalidInput)
        );
        assert_eq!(
            implied_vol(c, 1.0, f64::NAN, 100.0, 0.5, 0.0, 0.0),
            Err(IvError::InvalidInput)
        );
    }

    proptest! {
        /// IV(price(σ)) = σ to 1e-12 relative wherever vega is not negligible.
        #[test]
        fn round_trip(
            call in any::<bool>(),
            moneyness in -0.6f64..0.6,
            t in 1.0f64 / 365.0..2.0,
            vol in 0.03f64..1.5,
        ) {
            let right = if call { OptionRight::Call } else { OptionRight::Put };
            let spot = 100.0;
            let strike = spot * moneyness.exp();
            let i = inputs(right, spot, strike, t, vol);
            let g = i.greeks();
            // Vega relative to price: where the price barely moves with vol (deep in
            // or far out of the money), double precision cannot pin the vol to 1e-12.
            prop_assume!(g.vega * vol > 1e-3 * g.price && g.price > 1e-8 * spot);
            let v = implied_vol(right, g.price, spot, strike, t, i.rate, i.div_yield).unwrap();
            let rel = ((v - vol) / vol).abs();
            prop_assert!(rel < 1e-12, "vol {} solved {} rel {:e}", vol, v, rel);
        }
    }
}
