//! Historical (realized) volatility estimators from daily bars, annualized on 252
//! sessions. Returns are adjusted for the cash dividend and split that went ex on a
//! bar's date: the previous close is restated as (C₋₁ − D) / split.
//!
//! * close-to-close: sample standard deviation of log returns;
//! * Parkinson (1980): high–low range;
//! * Garman–Klass (1980): open, high, low, close;
//! * Yang–Zhang (2000): overnight + open-to-close + Rogers–Satchell, drift- and
//!   gap-robust.

pub const SESSIONS_PER_YEAR: f64 = 252.0;

/// One daily bar in dollars (from `underlying_bars`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ohlc {
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    /// Cash dividend ex on this bar's date.
    pub dividend: f64,
    /// New shares per old on this bar's date (1 = none).
    pub split_ratio: f64,
}

impl Ohlc {
    /// The previous close restated in this bar's terms.
    fn prev_adjusted(&self, prev: &Ohlc) -> f64 {
        let split = if self.split_ratio > 0.0 {
            self.split_ratio
        } else {
            1.0
        };
        (prev.close - self.dividend) / split
    }
}

fn sample_var(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0)
}

/// Close-to-close vol over the last `n` returns (needs `n + 1` bars), oldest first.
pub fn close_to_close(bars: &[Ohlc], n: usize) -> Option<f64> {
    if n < 2 || bars.len() < n + 1 {
        return None;
    }
    let w = &bars[bars.len() - n - 1..];
    let r: Vec<f64> = w
        .windows(2)
        .map(|p| (p[1].close / p[1].prev_adjusted(&p[0])).ln())
        .collect();
    Some((sample_var(&r) * SESSIONS_PER_YEAR).sqrt())
}

/// Parkinson's range estimator over the last `n` bars.
pub fn parkinson(bars: &[Ohlc], n: usize) -> Option<f64> {
    if n < 1 || bars.len() < n {
        return None;
    }
    let w = &bars[bars.len() - n..];
    let s: f64 = w.iter().map(|b| (b.high / b.low).ln().powi(2)).sum();
    Some((s / (4.0 * n as f64 * std::f64::consts::LN_2) * SESSIONS_PER_YEAR).sqrt())
}

/// Garman–Klass over the last `n` bars.
pub fn garman_klass(bars: &[Ohlc], n: usize) -> Option<f64> {
    if n < 1 || bars.len() < n {
        return None;
    }
    let w = &bars[bars.len() - n..];
    let c = 2.0 * std::f64::consts::LN_2 - 1.0;
    let s: f64 = w
        .iter()
        .map(|b| 0.5 * (b.high / b.low).ln().powi(2) - c * (b.close / b.open).ln().powi(2))
        .sum();
    Some((s / n as f64 * SESSIONS_PER_YEAR).max(0.0).sqrt())
}

/// Yang–Zhang over the last `n` bars (needs `n + 1` for the first overnight return).
pub fn yang_zhang(bars: &[Ohlc], n: usize) -> Option<f64> {
    if n < 2 || bars.len() < n + 1 {
        return None;
    }
    let w = &bars[bars.len() - n - 1..];
    let overnight: Vec<f64> = w
        .windows(2)
        .map(|p| (p[1].open / p[1].prev_adjusted(&p[0])).ln())
        .collect();
    let open_close: Vec<f64> = w[1..].iter().map(|b| (b.close / b.open).ln()).collect();
    let rs: f64 = w[1..]
        .iter()
        .map(|b| {
            (b.high / b.close).ln() * (b.high / b.open).ln()
                + (b.low / b.close).ln() * (b.low / b.open).ln()
        })
        .sum::<f64>()
        / n as f64;
    let nf = n as f64;
    let k = 0.34 / (1.34 + (nf + 1.0) / (nf - 1.0));
    let var = sample_var(&overnight) + k * sample_var(&open_close) + (1.0 - k) * rs;
    Some((var * SESSIONS_PER_YEAR).max(0.0).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(open: f64, high: f64, low: f64, close: f64) -> Ohlc {
        Ohlc {
            open,
            high,
            low,
            close,
            dividend: 0.0,
            split_ratio: 1.0,
        }
    }

    #[test]
    fn close_to_close_by_hand() {
        // Closes 100, 102, 99, 101: log returns ln(1.02), ln(99/102), ln(101/99).
        let b: Vec<Ohlc> = [100.0, 102.0, 99.0, 101.0]
            .iter()
            .map(|c| bar(*c, *c, *c, *c))
            .collect();
        let r = [
            (1.02f64).ln(),
            (99.0f64 / 102.0).ln(),
            (101.0f64 / 99.0).ln(),
        ];
        let m = r.iter().sum::<f64>() / 3.0;
        let var = r.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 2.0;
        let want = (var * 252.0).sqrt();
        assert!((close_to_close(&b, 3).unwrap() - want).abs() < 1e-15);
        assert!(close_to_close(&b, 4).is_none(), "not enough bars");
    }

    #[test]
    fn dividends_and_splits_are_not_returns() {
        // A $2 dividend and a 2:1 split with no economic move: zero vol.
        let mut b = vec![
            bar(100.0, 100.0, 100.0, 100.0),
            bar(98.0, 98.0, 98.0, 98.0),
            bar(49.0, 49.0, 49.0, 49.0),
        ];
        b[1].dividend = 2.0;
        b[2].split_ratio = 2.0;
        assert!(close_to_close(&b, 2).unwrap().abs() < 1e-12);
        assert!(yang_zhang(&b, 2).unwrap().abs() < 1e-12);
    }

    #[test]
    fn range_estimators_by_hand() {
        let b = vec![
            bar(100.0, 104.0, 98.0, 101.0),
            bar(101.0, 103.0, 99.0, 100.0),
        ];
        let hl: Vec<f64> = b.iter().map(|x| (x.high / x.low).ln()).collect();
        let park = ((hl[0].powi(2) + hl[1].powi(2)) / (4.0 * 2.0 * 2f64.ln()) * 252.0).sqrt();
        assert!((parkinson(&b, 2).unwrap() - park).abs() < 1e-15);
        let co: Vec<f64> = b.iter().map(|x| (x.close / x.open).ln()).collect();
        let gk = ((0.5 * hl[0].powi(2) - (2.0 * 2f64.ln() - 1.0) * co[0].powi(2)
            + 0.5 * hl[1].powi(2)
            - (2.0 * 2f64.ln() - 1.0) * co[1].powi(2))
            / 2.0
            * 252.0)
            .sqrt();
        assert!((garman_klass(&b, 2).unwrap() - gk).abs() < 1e-15);
    }

    #[test]
    fn estimators_agree_on_a_long_random_walk() {
        // 20% vol Brownian bars: every estimator lands near 20%.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let sd = 0.20 / 252f64.sqrt();
        let mut bars = Vec::new();
        let mut c = 100.0f64;
        for _ in 0..2000 {
            let steps = 390;
            let open = c;
            let (mut hi, mut lo, mut x) = (open, open, open);
            for _ in 0..steps {
                let (z, _) = crate::sources::sim::path::box_muller(
                    1.0 - rng.random::<f64>(),
                    rng.random::<f64>(),
                );
                x *= (sd / (steps as f64).sqrt() * z).exp();
                hi = hi.max(x);
                lo = lo.min(x);
            }
            c = x;
            bars.push(bar(open, hi, lo, c));
        }
        for (name, v) in [
            ("c2c", close_to_close(&bars, 1999).unwrap()),
            ("yz", yang_zhang(&bars, 1999).unwrap()),
            ("gk", garman_klass(&bars, 2000).unwrap()),
        ] {
            assert!((v - 0.20).abs() < 0.015, "{name} {v}");
        }
        // Parkinson is biased low by the discretely sampled range, a few percent.
        let p = parkinson(&bars, 2000).unwrap();
        assert!(p > 0.18 && p < 0.21, "parkinson {p}");
    }
}
