//! Black–Scholes–Merton price of a European option with continuous dividend yield.

use crate::model::OptionRight;

/// Standard normal cumulative distribution, Φ(x) = erfc(−x/√2)/2.
pub fn norm_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2)
}

/// Standard normal density φ(x).
pub fn norm_pdf(x: f64) -> f64 {
    const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
    INV_SQRT_2PI * libm::exp(-0.5 * x * x)
}

/// Price and greeks of one option (see [`BsmInputs::greeks`] for units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Greeks {
    pub price: f64,
    pub delta: f64,
    pub gamma: f64,
    pub vega: f64,
    pub theta_per_year: f64,
    pub theta_per_day: f64,
    pub rho: f64,
}

/// Inputs of the Black–Scholes–Merton formula. `t_years` in years (ACT/365),
/// `rate` and `div_yield` continuously compounded, `vol` annualized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BsmInputs {
    pub right: OptionRight,
    pub spot: f64,
    pub strike: f64,
    pub t_years: f64,
    pub rate: f64,
    pub div_yield: f64,
    pub vol: f64,
}

impl BsmInputs {
    /// The forward price F = S·e^{(r−q)T}.
    pub fn forward(&self) -> f64 {
        self.spot * libm::exp((self.rate - self.div_yield) * self.t_years)
    }

    /// The option's price. At T = 0 or σ = 0 it is the discounted intrinsic value
    /// against the forward.
    pub fn price(&self) -> f64 {
        let df = libm::exp(-self.rate * self.t_years);
        let f = self.forward();
        let k = self.strike;
        let sd = self.vol * libm::sqrt(self.t_years);
        let sign = match self.right {
            OptionRight::Call => 1.0,
            OptionRight::Put => -1.0,
        };
        if sd <= 0.0 || !sd.is_finite() {
            return df * (sign * (f - k)).max(0.0);
        }
        let d1 = (libm::log(f / k) + 0.5 * sd * sd) / sd;
        let d2 = d1 - sd;
        df * sign * (f * norm_cdf(sign * d1) - k * norm_cdf(sign * d2))
    }

    /// Price and every greek in one pass (shared d1, d2 and exponentials).
    ///
    /// Units: `delta` per $1 of spot; `gamma` per $1 per $1; `vega` per 1.00 of vol
    /// (divide by 100 for one vol point); `theta_per_year` per year and
    /// `theta_per_day` per calendar day (= per year / 365; the store holds this one);
    /// `rho` per 1.00 of rate. Hull, ch. 19 (with continuous dividend yield q).
    pub fn greeks(&self) -> Greeks {
        let s = self.spot;
        let k = self.strike;
        let t = self.t_years;
        let sqrt_t = libm::sqrt(t);
        let sd = self.vol * sqrt_t;
        let dq = libm::exp(-self.div_yield * t);
        let dr = libm::exp(-self.rate * t);
        let price = self.price();
        if sd.is_nan() || sd <= 0.0 || !sd.is_finite() {
            return Greeks {
                price,
                delta: self.delta(),
                gamma: 0.0,
                vega: 0.0,
                theta_per_year: 0.0,
                theta_per_day: 0.0,
                rho: 0.0,
            };
        }
        let d1 = (libm::log(s / k) + (self.rate - self.div_yield) * t) / sd + 0.5 * sd;
        let d2 = d1 - sd;
        let pdf = norm_pdf(d1);
        let gamma = dq * pdf / (s * sd);
        let vega = s * dq * pdf * sqrt_t;
        let decay = -s * dq * pdf * self.vol / (2.0 * sqrt_t);
        let (delta, theta, rho) = match self.right {
            OptionRight::Call => {
                let (n1, n2) = (norm_cdf(d1), norm_cdf(d2));
                (
                    dq * n1,
                    decay - self.rate * k * dr * n2 + self.div_yield * s * dq * n1,
                    k * t * dr * n2,
                )
            }
            OptionRight::Put => {
                let (n1, n2) = (norm_cdf(-d1), norm_cdf(-d2));
                (
                    -dq * n1,
                    decay + self.rate * k * dr * n2 - self.div_yield * s * dq * n1,
                    -k * t * dr * n2,
                )
            }
        };
        Greeks {
            price,
            delta,
            gamma,
            vega,
            theta_per_year: theta,
            theta_per_day: theta / 365.0,
            rho,
        }
    }

    /// ∂price/∂spot.
    pub fn delta(&self) -> f64 {
        let sd = self.vol * libm::sqrt(self.t_years);
        let dq = libm::exp(-self.div_yield * self.t_years);
        let f = self.forward();
        if sd <= 0.0 {
            let itm = match self.right {
                OptionRight::Call => f > self.strike,
                OptionRight::Put => f < self.strike,
            };
            let s = if self.right == OptionRight::Call {
                1.0
            } else {
                -1.0
            };
            return if itm { s * dq } else { 0.0 };
        }
        let d1 = (libm::log(f / self.strike) + 0.5 * sd * sd) / sd;
        match self.right {
            OptionRight::Call => dq * norm_cdf(d1),
            OptionRight::Put => dq * (norm_cdf(d1) - 1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hull_example_15_6() {
        // Hull, Example 15.6: S=42, K=40, r=10%, σ=20%, T=0.5 → c=4.76, p=0.81.
        let mut i = BsmInputs {
            right: OptionRight::Call,
            spot: 42.0,
            strike: 40.0,
            t_years: 0.5,
            rate: 0.10,
            div_yield: 0.0,
            vol: 0.20,
        };
        assert!((i.price() - 4.7594).abs() < 1e-4, "{}", i.price());
        i.right = OptionRight::Put;
        assert!((i.price() - 0.8086).abs() < 1e-4, "{}", i.price());
    }

    #[test]
    fn hull_example_17_1_index_option_with_dividend_yield() {
        // Hull, Example 17.1: S=930, K=900, r=8%, q=3%, σ=20%, T=2/12 → c = 51.83.
        let c = BsmInputs {
            right: OptionRight::Call,
            spot: 930.0,
            strike: 900.0,
            t_years: 2.0 / 12.0,
            rate: 0.08,
            div_yield: 0.03,
            vol: 0.2,
        };
        assert!((c.price() - 51.83).abs() < 0.005, "{}", c.price());
    }

    proptest::proptest! {
        // A fixed seed: the same cases on every run (tests are deterministic).
        #![proptest_config(proptest::test_runner::Config {
            rng_seed: proptest::test_runner::RngSeed::Fixed(20_261_202),
            ..proptest::test_runner::Config::default()
        })]
        /// Every greek equals the central finite difference of the price.
        #[test]
        fn greeks_match_central_differences(
            call in proptest::bool::ANY,
            moneyness in -0.5f64..0.5,
            t in 0.02f64..2.0,
            vol in 0.05f64..1.0,
            rate in -0.01f64..0.08,
            q in 0.0f64..0.05,
        ) {
            let i = BsmInputs {
                right: if call { OptionRight::Call } else { OptionRight::Put },
                spot: 100.0,
                strike: 100.0 * moneyness.exp(),
                t_years: t,
                rate,
                div_yield: q,
                vol,
            };
            let g = i.greeks();
            let fd = |f: &dyn Fn(f64) -> f64, x: f64, h: f64| (f(x + h) - f(x - h)) / (2.0 * h);
            let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * (1.0 + b.abs());
            let delta = fd(&|s| BsmInputs { spot: s, ..i }.price(), 100.0, 1e-3);
            let gamma = fd(&|s| BsmInputs { spot: s, ..i }.delta(), 100.0, 1e-3);
            let vega = fd(&|v| BsmInputs { vol: v, ..i }.price(), vol, 1e-5);
            let rho = fd(&|r| BsmInputs { rate: r, ..i }.price(), rate, 1e-5);
            // Theta is minus the derivative in time to expiry.
            let theta = -fd(&|tt| BsmInputs { t_years: tt, ..i }.price(), t, 1e-6);
            proptest::prop_assert!(close(g.delta, delta, 1e-6), "delta {} vs {}", g.delta, delta);
            proptest::prop_assert!(close(g.gamma, gamma, 1e-5), "gamma {} vs {}", g.gamma, gamma);
            proptest::prop_assert!(close(g.vega, vega, 1e-6), "vega {} vs {}", g.vega, vega);
            proptest::prop_assert!(close(g.rho, rho, 1e-6), "rho {} vs {}", g.rho, rho);
            proptest::prop_assert!(close(g.theta_per_year, theta, 1e-5), "theta {} vs {}", g.theta_per_year, theta);
            proptest::prop_assert!((g.theta_per_day * 365.0 - g.theta_per_year).abs() < 1e-12);
            proptest::prop_assert!((g.price - i.price()).abs() < 1e-12);
        }
    }

    #[test]
    fn put_call_parity_with_dividends() {
        let c = BsmInputs {
            right: OptionRight::Call,
            spot: 100.0,
            strike: 95.0,
            t_years: 0.75,
            rate: 0.04,
            div_yield: 0.015,
            vol: 0.3,
        };
        let p = BsmInputs {
            right: OptionRight::Put,
            ..c
        };
        let parity = 100.0 * (-0.015f64 * 0.75).exp() - 95.0 * (-0.04f64 * 0.75).exp();
        assert!((c.price() - p.price() - parity).abs() < 1e-12);
    }
}
