//! Volatility-surface metrics of one underlying on one day, from its contracts' IVs.
//!
//! * ATM IV of an expiry: the out-of-the-money smile (puts below the forward, calls
//!   above) interpolated linearly in log-moneyness at the forward.
//! * Constant-maturity ATM IV (e.g. 30 days): linear interpolation in total variance
//!   σ²T between the two expiries around the target, as Cboe does for the VIX; flat
//!   in vol beyond the listed range.
//! * 25-delta skew: IV of the 25Δ put minus IV of the 25Δ call (interpolated in delta).
//! * IV rank and percentile against a history.

use crate::model::OptionRight;
use chrono::NaiveDate;

/// One contract's inputs to the surface metrics.
#[derive(Debug, Clone, Copy)]
pub struct SmilePoint {
    pub expiry: NaiveDate,
    /// AM-settled series (SPX monthlies) are a different series from the PM-settled
    /// ones (SPXW) expiring the same day: other time to expiry, other forward.
    pub am_settled: bool,
    pub t_years: f64,
    pub forward: f64,
    pub strike: f64,
    pub right: OptionRight,
    pub iv: f64,
    pub delta: f64,
    pub mid: f64,
}

/// The ATM vol of one expiry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpiryAtm {
    pub expiry: NaiveDate,
    pub am_settled: bool,
    pub t_years: f64,
    pub forward: f64,
    pub atm_iv: f64,
}

/// ATM IV per series (expiry, AM/PM settlement), in time order. `points` may be in
/// any order; those of one series must share its forward.
pub fn atm_by_expiry(points: &[SmilePoint]) -> Vec<ExpiryAtm> {
    let mut series: Vec<(NaiveDate, bool)> =
        points.iter().map(|p| (p.expiry, !p.am_settled)).collect();
    series.sort();
    series.dedup();
    let mut out = Vec::new();
    for (e, pm) in series {
        let am = !pm;
        let pts: Vec<&SmilePoint> = points
            .iter()
            .filter(|p| p.expiry == e && p.am_settled == am)
            .collect();
        let f = pts[0].forward;
        let t = pts[0].t_years;
        // OTM side only: those prices carry the information (no early-exercise premium).
        let mut smile: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| match p.right {
                OptionRight::Put => p.strike <= f,
                OptionRight::Call => p.strike >= f,
            })
            .map(|p| ((p.strike / f).ln(), p.iv))
            .collect();
        smile.sort_by(|a, b| a.0.total_cmp(&b.0));
        let below = smile.iter().rev().find(|x| x.0 <= 0.0);
        let above = smile.iter().find(|x| x.0 >= 0.0);
        let atm = match (below, above) {
            (Some(a), Some(b)) if b.0 > a.0 => Some(a.1 + (b.1 - a.1) * (0.0 - a.0) / (b.0 - a.0)),
            (Some(a), Some(_)) => Some(a.1),
            // One-sided: accept only a strike within ~1 standard deviation's tenth.
            (Some(x), None) | (None, Some(x)) if x.0.abs() < 0.1 * x.1 * t.sqrt() + 1e-4 => {
                Some(x.1)
            }
            _ => None,
        };
        if let Some(atm_iv) = atm {
            out.push(ExpiryAtm {
                expiry: e,
                am_settled: am,
                t_years: t,
                forward: f,
                atm_iv,
            });
        }
    }
    out
}

/// ATM IV at a constant maturity `target_years`, interpolated in total variance.
/// Expiries shorter than `min_years` are ignored (0DTE noise).
pub fn constant_maturity(atm: &[ExpiryAtm], target_years: f64, min_years: f64) -> Option<f64> {
    let usable: Vec<&ExpiryAtm> = atm
        .iter()
        .filter(|a| a.t_years >= min_years && a.atm_iv > 0.0)
        .collect();
    let below = usable.iter().rev().find(|a| a.t_years <= target_years);
    let above = usable.iter().find(|a| a.t_years >= target_years);
    match (below, above) {
        (Some(a), Some(b)) if b.t_years > a.t_years => {
            let (w1, w2) = (a.atm_iv.powi(2) * a.t_years, b.atm_iv.powi(2) * b.t_years);
            let w = w1 + (w2 - w1) * (target_years - a.t_years) / (b.t_years - a.t_years);
            (w > 0.0).then(|| (w / target_years).sqrt())
        }
        (Some(a), _) | (None, Some(a)) => Some(a.atm_iv),
        _ => None,
    }
}

/// IV of the 25-delta put minus IV of the 25-delta call in one expiry.
pub fn skew_25_delta(points: &[SmilePoint]) -> Option<f64> {
    let at_delta = |right: OptionRight, target: f64| -> Option<f64> {
        let mut v: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.right == right)
            .map(|p| (p.delta, p.iv))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let i = v.iter().position(|x| x.0 >= target)?;
        if i == 0 {
            return None;
        }
        let (a, b) = (v[i - 1], v[i]);
        if b.0 == a.0 {
            return Some(a.1);
        }
        Some(a.1 + (b.1 - a.1) * (target - a.0) / (b.0 - a.0))
    };
    Some(at_delta(OptionRight::Put, -0.25)? - at_delta(OptionRight::Call, 0.25)?)
}

/// The ATM straddle's mid in one expiry, at the strike nearest the forward.
pub fn atm_straddle(points: &[SmilePoint]) -> Option<f64> {
    let f = points.first()?.forward;
    let k = points
        .iter()
        .map(|p| p.strike)
        .min_by(|a, b| (a - f).abs().total_cmp(&(b - f).abs()))?;
    let call = points
        .iter()
        .find(|p| p.strike == k && p.right == OptionRight::Call)?;
    let put = points
        .iter()
        .find(|p| p.strike == k && p.right == OptionRight::Put)?;
    Some(call.mid + put.mid)
}

/// IV rank (where `current` sits between the history's low and high, 0–1) and IV
/// percentile (share of history strictly below `current`, 0–1).
pub fn iv_rank_percentile(history: &[f64], current: f64) -> Option<(f64, f64)> {
    if history.is_empty() {
        return None;
    }
    let lo = history
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(current);
    let hi = history
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .max(current);
    let rank = if hi > lo {
        (current - lo) / (hi - lo)
    } else {
        0.5
    };
    let pct = history.iter().filter(|h| **h < current).count() as f64 / history.len() as f64;
    Some((rank, pct))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn pt(e: &str, t: f64, k: f64, right: OptionRight, iv: f64) -> SmilePoint {
        SmilePoint {
            expiry: d(e),
            am_settled: false,
            t_years: t,
            forward: 100.0,
            strike: k,
            right,
            iv,
            delta: 0.0,
            mid: 0.0,
        }
    }

    #[test]
    fn atm_interpolates_at_the_forward() {
        let p = [
            pt("2025-04-17", 0.1, 98.0, OptionRight::Put, 0.22),
            pt("2025-04-17", 0.1, 102.0, OptionRight::Call, 0.18),
            pt("2025-04-17", 0.1, 102.0, OptionRight::Put, 0.50), // ITM: ignored
        ];
        let a = atm_by_expiry(&p);
        let k1 = (98.0f64 / 100.0).ln();
        let k2 = (102.0f64 / 100.0).ln();
        let want = 0.22 + (0.18 - 0.22) * (0.0 - k1) / (k2 - k1);
        assert!((a[0].atm_iv - want).abs() < 1e-15);
    }

    #[test]
    fn constant_maturity_in_total_variance() {
        let atm = [
            ExpiryAtm {
                expiry: d("2025-04-04"),
                am_settled: false,
                t_years: 21.0 / 365.0,
                forward: 100.0,
                atm_iv: 0.20,
            },
            ExpiryAtm {
                expiry: d("2025-04-25"),
                am_settled: false,
                t_years: 42.0 / 365.0,
                forward: 100.0,
                atm_iv: 0.25,
            },
        ];
        let t = 30.0 / 365.0;
        let (w1, w2): (f64, f64) = (0.04 * 21.0 / 365.0, 0.0625 * 42.0 / 365.0);
        let want = ((w1 + (w2 - w1) * (30.0 - 21.0) / 21.0) / t).sqrt();
        assert!((constant_maturity(&atm, t, 0.0).unwrap() - want).abs() < 1e-15);
        // Flat beyond the range.
        assert_eq!(constant_maturity(&atm[1..], t, 0.0), Some(0.25));
    }

    #[test]
    fn rank_and_percentile() {
        let h = [0.1, 0.2, 0.3, 0.4];
        let (rank, pct) = iv_rank_percentile(&h, 0.25).unwrap();
        assert!((rank - 0.5).abs() < 1e-12 && pct == 0.5);
        assert_eq!(iv_rank_percentile(&h, 0.5), Some((1.0, 1.0)));
    }

    #[test]
    fn skew_interpolates_in_delta() {
        let mut p = Vec::new();
        for (delta, iv) in [(-0.4, 0.20), (-0.2, 0.24)] {
            p.push(SmilePoint {
                delta,
                ..pt("2025-04-17", 0.1, 95.0, OptionRight::Put, iv)
            });
        }
        for (delta, iv) in [(0.2, 0.15), (0.3, 0.17)] {
            p.push(SmilePoint {
                delta,
                ..pt("2025-04-17", 0.1, 105.0, OptionRight::Call, iv)
            });
        }
        // Put at −0.25: 0.20 + 0.04·(0.15/0.2) = 0.23; call at 0.25: 0.16.
        assert!((skew_25_delta(&p).unwrap() - 0.07).abs() < 1e-12);
    }
}
