//! Performance metrics of an equity curve, and summary statistics of closed trades'
//! P&Ls, shared by the daily report and the backtest.
//!
//! # Curves and returns
//!
//! A curve is a slice of [`Point`]s, one per session, in ascending date order (the
//! functions here do not re-sort). Its daily return on session *i* is the simple return
//! `value[i] / value[i-1] − 1`. A step is skipped — it yields no return — when the previous
//! value is ≤ 0 (a return off a non-positive base means nothing) or when either value is
//! not finite (a missing mark, treated as a gap).
//!
//! # Conventions
//!
//! - Annualization uses [`SESSIONS_PER_YEAR`] = 252 sessions: means are multiplied by 252,
//!   standard deviations by √252.
//! - Standard deviations, variances and covariances are *sample* statistics (divisor n − 1).
//! - The risk-free rate is given annually and converted geometrically to a per-session
//!   rate, `(1 + r)^(1/252) − 1` ([`daily_risk_free`]); excess return = return − that rate.
//! - Sharpe = mean(excess) / sd(excess) · √252.
//! - Sortino = mean(excess) / DD · √252, where the downside deviation
//!   DD = √( Σ min(0, excess)² / N ) with N the number of *all* returns (not only the
//!   negative ones), i.e. the target downside deviation with the risk-free rate as target.
//! - CAGR = (last / first)^(365.25 / calendar days) − 1, calendar days between the first
//!   and the last date.
//! - Drawdown at a point = value / running peak − 1 (≤ 0). The running peak is the highest
//!   value so far; a value *equal* to the peak moves the peak date forward (a drawdown is
//!   measured from the most recent high). The maximum drawdown is the most negative one,
//!   the first occurrence on ties; its recovery is the first later date whose value is at
//!   or above that peak. An equity below zero (possible with short options) gives a
//!   drawdown below −100 %; it is not clamped.
//! - Calmar = CAGR / |max drawdown|.
//! - Beta = cov(rp, rb) / var(rb); Jensen's alpha, annualized, is
//!   (mean(rp − rf) − β · mean(rb − rf)) · 252. Both use only *aligned* returns: a session
//!   counts when its date and the previous curve date are both in the benchmark and are
//!   consecutive there too (so a return spans the same interval in both series).
//!
//! # Undefined values
//!
//! Every metric that is undefined is `None`, never NaN or infinite: too few returns,
//! a zero standard deviation (Sharpe, beta's benchmark variance), no downside (Sortino),
//! no drawdown (Calmar), no losses (profit factor), and any result that overflows. A
//! standard deviation at or below [`NEGLIGIBLE_SD`] counts as zero: a curve growing by
//! the same percentage every session has returns that differ only by rounding, and its
//! Sharpe ratio is undefined rather than 10¹⁵.
//!
//! # Trades
//!
//! [`trade_stats`] summarizes a list of trade P&Ls, in dollars. The trades themselves
//! are rebuilt, with exact money, from the fills by `trading::trades::closed_trades`;
//! a caller converts their P&Ls with `Price::to_f64`.

use chrono::NaiveDate;
use std::collections::HashMap;

/// Sessions per year, for annualization.
pub use crate::pricing::hv::SESSIONS_PER_YEAR;

/// Calendar days per year, for the CAGR.
pub const DAYS_PER_YEAR: f64 = 365.25;

/// A standard deviation of daily returns (or downside deviation) at or below this is
/// treated as zero: it is floating-point noise, not risk.
pub const NEGLIGIBLE_SD: f64 = 1e-12;

/// One point of an equity (or benchmark value) curve: one per session, ascending dates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub date: NaiveDate,
    pub value: f64,
}

/// The maximum drawdown of a curve and when it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawdown {
    /// ≤ 0, a fraction (−0.12 is a 12 % drawdown); 0 when the curve never falls below a
    /// peak.
    pub max_drawdown: f64,
    /// Date of the peak the maximum drawdown is measured from; `None` without a drawdown.
    pub peak: Option<NaiveDate>,
    /// Date of the trough; `None` without a drawdown.
    pub trough: Option<NaiveDate>,
    /// First date after the trough back at or above the peak value; `None` if not yet
    /// (or without a drawdown).
    pub recovered: Option<NaiveDate>,
}

/// Performance of a curve, optionally against a benchmark. See the module documentation
/// for definitions.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// Points in the curve.
    pub sessions: usize,
    /// last / first − 1.
    pub total_return: f64,
    /// (last / first)^(365.25 / calendar days) − 1; `None` under one calendar day or
    /// when the last value is negative (no real root).
    pub cagr: Option<f64>,
    /// Sample sd of daily simple returns · √252; `None` with fewer than 2 returns.
    pub volatility: Option<f64>,
    /// mean(daily excess) / sd(daily excess) · √252; `None` with fewer than 2 returns or a
    /// zero sd.
    pub sharpe: Option<f64>,
    /// mean(daily excess) / downside deviation · √252; `None` with fewer than 2 returns or
    /// a zero downside deviation.
    pub sortino: Option<f64>,
    pub drawdown: Drawdown,
    /// cagr / |max drawdown|; `None` without a drawdown or a CAGR.
    pub calmar: Option<f64>,
    /// Jensen's alpha against the benchmark, annualized.
    pub alpha: Option<f64>,
    /// Sample cov(rp, rb) / var(rb); `None` without a benchmark, with fewer than 2 aligned
    /// returns, or a zero benchmark variance.
    pub beta: Option<f64>,
}

/// `Some(x)` when `x` is finite.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Simple return from `prev` to `cur`; `None` when `prev` ≤ 0 or either is not finite.
fn step_return(prev: f64, cur: f64) -> Option<f64> {
    if prev.is_finite() && prev > 0.0 && cur.is_finite() {
        finite(cur / prev - 1.0)
    } else {
        None
    }
}

fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    finite(xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Sample covariance (n − 1) of paired observations; `None` with fewer than 2 pairs.
fn sample_cov(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 2 {
        return None;
    }
    let n = pairs.len() as f64;
    let mx = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let s: f64 = pairs.iter().map(|&(x, y)| (x - mx) * (y - my)).sum();
    finite(s / (n - 1.0))
}

/// Sample standard deviation (n − 1); `None` with fewer than 2 observations.
fn sample_sd(xs: &[f64]) -> Option<f64> {
    let m = mean(xs)?;
    if xs.len() < 2 {
        return None;
    }
    let ss: f64 = xs.iter().map(|x| (x - m).powi(2)).sum();
    finite((ss / (xs.len() as f64 - 1.0)).sqrt())
}

/// `Some(sd)` when `sd` is meaningfully above zero.
fn non_negligible(sd: f64) -> Option<f64> {
    (sd > NEGLIGIBLE_SD).then_some(sd)
}

/// Daily risk-free rate from an annual one: (1+r)^(1/252) - 1.
///
/// A rate below −100 % has no real daily equivalent and gives NaN; [`metrics`] then
/// reports the metrics that depend on it (Sharpe, Sortino, alpha) as `None`.
pub fn daily_risk_free(annual: f64) -> f64 {
    (1.0 + annual).powf(1.0 / SESSIONS_PER_YEAR) - 1.0
}

/// Daily simple returns of a curve (`value[i]/value[i-1]-1`), skipping a step whose previous
/// value is <= 0 (or where either value is not finite). Each return carries the date of
/// the session it ends on.
pub fn daily_returns(curve: &[Point]) -> Vec<(NaiveDate, f64)> {
    curve
        .windows(2)
        .filter_map(|w| step_return(w[0].value, w[1].value).map(|r| (w[1].date, r)))
        .collect()
}

/// Walks a curve keeping the running peak; calls `visit(index, peak index, drawdown)` for
/// every point where the drawdown is defined (finite value, a positive peak so far).
fn walk_drawdown(curve: &[Point], mut visit: impl FnMut(usize, usize, f64)) {
    let mut peak: Option<usize> = None;
    for (i, p) in curve.iter().enumerate() {
        if !p.value.is_finite() {
            continue;
        }
        match peak {
            Some(k) if p.value < curve[k].value => {
                if let Some(dd) = finite(p.value / curve[k].value - 1.0) {
                    visit(i, k, dd);
                }
            }
            Some(_) => {
                peak = Some(i);
                visit(i, i, 0.0);
            }
            None if p.value > 0.0 => {
                peak = Some(i);
                visit(i, i, 0.0);
            }
            None => {}
        }
    }
}

/// Maximum drawdown of a curve, with its peak, trough and recovery dates.
pub fn drawdown(curve: &[Point]) -> Drawdown {
    // (drawdown, peak index, trough index) of the worst drawdown so far.
    let mut worst: Option<(f64, usize, usize)> = None;
    walk_drawdown(curve, |i, k, dd| {
        if dd < worst.map_or(0.0, |w| w.0) {
            worst = Some((dd, k, i));
        }
    });
    match worst {
        None => Drawdown {
            max_drawdown: 0.0,
            peak: None,
            trough: None,
            recovered: None,
        },
        Some((dd, k, t)) => Drawdown {
            max_drawdown: dd,
            peak: Some(curve[k].date),
            trough: Some(curve[t].date),
            recovered: curve[t + 1..]
                .iter()
                .find(|p| p.value.is_finite() && p.value >= curve[k].value)
                .map(|p| p.date),
        },
    }
}

/// Drawdown series (value/running peak - 1) for charts. Points where it is undefined (a
/// non-finite value, or no positive value yet to be a peak) are left out.
pub fn drawdown_series(curve: &[Point]) -> Vec<Point> {
    let mut out = Vec::with_capacity(curve.len());
    walk_drawdown(curve, |i, _, dd| {
        out.push(Point {
            date: curve[i].date,
            value: dd,
        });
    });
    out
}

/// (portfolio, benchmark) return pairs over intervals consecutive in both series.
fn aligned_returns(curve: &[Point], benchmark: &[Point]) -> Vec<(f64, f64)> {
    let index: HashMap<NaiveDate, usize> = benchmark
        .iter()
        .enumerate()
        .map(|(j, p)| (p.date, j))
        .collect();
    curve
        .windows(2)
        .filter_map(|w| {
            let j0 = *index.get(&w[0].date)?;
            let j1 = *index.get(&w[1].date)?;
            if j1 != j0 + 1 {
                return None;
            }
            let rp = step_return(w[0].value, w[1].value)?;
            let rb = step_return(benchmark[j0].value, benchmark[j1].value)?;
            Some((rp, rb))
        })
        .collect()
}

/// (alpha, beta) from aligned returns and the daily risk-free rate.
fn alpha_beta(pairs: &[(f64, f64)], rf: f64) -> (Option<f64>, Option<f64>) {
    let rb: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let beta = sample_sd(&rb)
        .and_then(non_negligible)
        .and_then(|sd_b| finite(sample_cov(pairs)? / (sd_b * sd_b)));
    let alpha = beta.and_then(|b| {
        let ep = mean(&pairs.iter().map(|p| p.0 - rf).collect::<Vec<_>>())?;
        let eb = mean(&pairs.iter().map(|p| p.1 - rf).collect::<Vec<_>>())?;
        finite((ep - b * eb) * SESSIONS_PER_YEAR)
    });
    (alpha, beta)
}

/// None for an empty curve or a first value <= 0. The benchmark is aligned to the curve by
/// date (only dates present in both, consecutive-in-both returns).
///
/// Also `None` when the first or last value is not finite, or the total return
/// overflows. Non-finite values inside the curve are gaps (see [`daily_returns`]).
pub fn metrics(
    curve: &[Point],
    benchmark: Option<&[Point]>,
    risk_free_annual: f64,
) -> Option<Metrics> {
    let (first, last) = (curve.first()?, curve.last()?);
    if !(first.value.is_finite() && first.value > 0.0 && last.value.is_finite()) {
        return None;
    }
    let growth = last.value / first.value;
    let total_return = finite(growth - 1.0)?;
    let days = (last.date - first.date).num_days();
    let cagr = if days >= 1 {
        finite(growth.powf(DAYS_PER_YEAR / days as f64) - 1.0)
    } else {
        None
    };

    let returns: Vec<f64> = daily_returns(curve).into_iter().map(|(_, r)| r).collect();
    let rf = daily_risk_free(risk_free_annual);
    let excess: Vec<f64> = returns.iter().map(|r| r - rf).collect();
    let ann = SESSIONS_PER_YEAR.sqrt();

    let volatility = sample_sd(&returns).and_then(|sd| finite(sd * ann));
    let mean_excess = if returns.len() >= 2 {
        mean(&excess)
    } else {
        None
    };
    let sharpe = mean_excess.and_then(|m| {
        let sd = sample_sd(&excess).and_then(non_negligible)?;
        finite(m / sd * ann)
    });
    let sortino = mean_excess.and_then(|m| {
        let downside: Vec<f64> = excess.iter().map(|x| x.min(0.0).powi(2)).collect();
        let dd = non_negligible(mean(&downside)?.sqrt())?;
        finite(m / dd * ann)
    });

    let drawdown = drawdown(curve);
    let calmar = if drawdown.max_drawdown < 0.0 {
        cagr.and_then(|c| finite(c / drawdown.max_drawdown.abs()))
    } else {
        None
    };

    let (alpha, beta) = match benchmark {
        Some(b) => alpha_beta(&aligned_returns(curve, b), rf),
        None => (None, None),
    };

    Some(Metrics {
        start: first.date,
        end: last.date,
        sessions: curve.len(),
        total_return,
        cagr,
        volatility,
        sharpe,
        sortino,
        drawdown,
        calmar,
        alpha,
        beta,
    })
}

/// Summary of a list of trade P&Ls.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeStats {
    pub trades: usize,
    /// Trades with pnl > 0.
    pub wins: usize,
    /// Trades with pnl < 0.
    pub losses: usize,
    pub total_pnl: f64,
    /// wins / trades; `None` with no trades. A trade with pnl == 0 counts as neither win
    /// nor loss but is in `trades`.
    pub win_rate: Option<f64>,
    /// gross wins / |gross losses|; `None` when there are no losses.
    pub profit_factor: Option<f64>,
    /// Mean pnl of the wins; `None` without wins.
    pub avg_win: Option<f64>,
    /// Mean pnl of the losses (a negative number); `None` without losses.
    pub avg_loss: Option<f64>,
}

/// Win rate, profit factor and average win/loss of trade P&Ls. A non-finite pnl is not a
/// trade and is ignored.
pub fn trade_stats(pnls: &[f64]) -> TradeStats {
    let (mut trades, mut wins, mut losses) = (0usize, 0usize, 0usize);
    let (mut gross_win, mut gross_loss) = (0.0f64, 0.0f64);
    for &p in pnls.iter().filter(|p| p.is_finite()) {
        trades += 1;
        if p > 0.0 {
            wins += 1;
            gross_win += p;
        } else if p < 0.0 {
            losses += 1;
            gross_loss += p;
        }
    }
    let ratio = |num: f64, den: usize| {
        if den == 0 {
            None
        } else {
            finite(num / den as f64)
        }
    };
    TradeStats {
        trades,
        wins,
        losses,
        total_pnl: gross_win + gross_loss,
        win_rate: ratio(wins as f64, trades),
        profit_factor: if losses == 0 {
            None
        } else {
            finite(gross_win / gross_loss.abs())
        },
        avg_win: ratio(gross_win, wins),
        avg_loss: ratio(gross_loss, losses),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn curve(points: &[(&str, f64)]) -> Vec<Point> {
        points
            .iter()
            .map(|&(date, value)| Point {
                date: d(date),
                value,
            })
            .collect()
    }

    /// A curve starting at `start` on `dates[0]` that earns `returns[i]` on `dates[i+1]`.
    fn compounded(dates: &[&str], start: f64, returns: &[f64]) -> Vec<Point> {
        assert_eq!(dates.len(), returns.len() + 1);
        let mut v = start;
        let mut out = vec![Point {
            date: d(dates[0]),
            value: v,
        }];
        for (date, r) in dates[1..].iter().zip(returns) {
            v *= 1.0 + r;
            out.push(Point {
                date: d(date),
                value: v,
            });
        }
        out
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[track_caller]
    fn assert_close(a: Option<f64>, b: f64, tol: f64) {
        let a = a.expect("expected a value, got None");
        assert!(close(a, b, tol), "{a} vs {b} (tol {tol})");
    }

    /// The hand-computed example: 100, 110, 99, 108.9, 119.79 on five sessions.
    /// Returns: 110/100−1 = 0.1, 99/110−1 = −0.1, 108.9/99−1 = 0.1, 119.79/108.9−1 = 0.1.
    fn five() -> Vec<Point> {
        curve(&[
            ("2024-01-02", 100.0),
            ("2024-01-03", 110.0),
            ("2024-01-04", 99.0),
            ("2024-01-05", 108.9),
            ("2024-01-08", 119.79),
        ])
    }

    /// An annual rate whose daily equivalent is exactly 1 %: 1.01^252 − 1.
    fn annual_for_one_percent_daily() -> f64 {
        1.01f64.powi(252) - 1.0
    }

    #[test]
    fn daily_risk_free_is_geometric() {
        assert_eq!(daily_risk_free(0.0), 0.0);
        // (1 + (1.01^252 − 1))^(1/252) − 1 = 0.01.
        assert!(close(
            daily_risk_free(annual_for_one_percent_daily()),
            0.01,
            1e-12
        ));
        // 5 % a year: 1.05^(1/252) − 1 ≈ 1.9363e-4, less than 5 %/252 ≈ 1.9841e-4.
        let r = daily_risk_free(0.05);
        assert!(close((1.0 + r).powi(252), 1.05, 1e-12));
        assert!(r < 0.05 / 252.0);
    }

    #[test]
    fn daily_returns_of_the_example() {
        let r = daily_returns(&five());
        let expected = [
            ("2024-01-03", 0.1),
            ("2024-01-04", -0.1),
            ("2024-01-05", 0.1),
            ("2024-01-08", 0.1),
        ];
        assert_eq!(r.len(), 4);
        for ((date, ret), (ed, er)) in r.iter().zip(expected) {
            assert_eq!(*date, d(ed));
            assert!(close(*ret, er, 1e-12), "{ret} vs {er}");
        }
    }

    #[test]
    fn daily_returns_skip_non_positive_bases_and_gaps() {
        // 100 → 0: −100 %; 0 → 50: no return (base 0); 50 → 60: +20 %;
        // 60 → NaN and NaN → 66: gaps; 66 → −33 → 10: −150 %, then none (base < 0).
        let c = curve(&[
            ("2024-01-02", 100.0),
            ("2024-01-03", 0.0),
            ("2024-01-04", 50.0),
            ("2024-01-05", 60.0),
            ("2024-01-08", f64::NAN),
            ("2024-01-09", 66.0),
            ("2024-01-10", -33.0),
            ("2024-01-11", 10.0),
        ]);
        let r = daily_returns(&c);
        assert_eq!(
            r.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![d("2024-01-03"), d("2024-01-05"), d("2024-01-10")]
        );
        assert!(close(r[0].1, -1.0, 1e-12));
        assert!(close(r[1].1, 0.2, 1e-12));
        assert!(close(r[2].1, -1.5, 1e-12));
        assert!(daily_returns(&[]).is_empty());
        assert!(daily_returns(&c[..1]).is_empty());
    }

    #[test]
    fn example_metrics_with_zero_risk_free() {
        let m = metrics(&five(), None, 0.0).unwrap();
        assert_eq!(m.start, d("2024-01-02"));
        assert_eq!(m.end, d("2024-01-08"));
        assert_eq!(m.sessions, 5);
        // 119.79 / 100 − 1.
        assert!(close(m.total_return, 0.1979, 1e-12));
        // mean = (0.1 − 0.1 + 0.1 + 0.1)/4 = 0.05; deviations 0.05, −0.15, 0.05, 0.05;
        // squares 0.0025 + 0.0225 + 0.0025 + 0.0025 = 0.03; sample var = 0.03/3 = 0.01;
        // sd = 0.1. Volatility = 0.1·√252 ≈ 1.5875.
        let s = 252f64.sqrt();
        assert_close(m.volatility, 0.1 * s, 1e-9);
        // Sharpe = 0.05 / 0.1 · √252 = 0.5·√252 ≈ 7.9373.
        assert_close(m.sharpe, 0.5 * s, 1e-9);
        // Downside: min(0, r)² = 0, 0.01, 0, 0; mean over all 4 = 0.0025; DD = 0.05.
        // Sortino = 0.05 / 0.05 · √252 = √252 ≈ 15.875.
        assert_close(m.sortino, s, 1e-9);
        // Peak 110 on 01-03, trough 99 on 01-04: 99/110 − 1 = −0.1; 108.9 < 110 is not a
        // recovery, 119.79 ≥ 110 on 01-08 is.
        assert!(close(m.drawdown.max_drawdown, -0.1, 1e-12));
        assert_eq!(m.drawdown.peak, Some(d("2024-01-03")));
        assert_eq!(m.drawdown.trough, Some(d("2024-01-04")));
        assert_eq!(m.drawdown.recovered, Some(d("2024-01-08")));
        // 6 calendar days: CAGR = 1.1979^(365.25/6) − 1 (a silly number over 6 days, but
        // defined); Calmar = CAGR / 0.1.
        let cagr = 1.1979f64.powf(365.25 / 6.0) - 1.0;
        assert_close(m.cagr.map(|c| c / cagr), 1.0, 1e-9);
        assert_close(m.calmar.map(|c| c / (cagr / 0.1)), 1.0, 1e-9);
        assert_eq!((m.alpha, m.beta), (None, None));
    }

    #[test]
    fn example_metrics_with_positive_risk_free() {
        // Daily rf = 1 %: excess returns 0.09, −0.11, 0.09, 0.09; mean 0.04; sd unchanged
        // at 0.1 (a constant shift). Sharpe = 0.04/0.1·√252 = 0.4·√252 ≈ 6.3498.
        let m = metrics(&five(), None, annual_for_one_percent_daily()).unwrap();
        let s = 252f64.sqrt();
        assert_close(m.volatility, 0.1 * s, 1e-9);
        assert_close(m.sharpe, 0.4 * s, 1e-9);
        // Downside: (−0.11)² = 0.0121, mean over 4 = 0.003025, DD = 0.055.
        // Sortino = 0.04 / 0.055 · √252 = (8/11)·√252 ≈ 11.545.
        assert_close(m.sortino, 8.0 / 11.0 * s, 1e-9);
        // Neither the drawdown nor the CAGR depends on the risk-free rate.
        assert!(close(m.drawdown.max_drawdown, -0.1, 1e-12));
        assert_eq!(m.cagr, metrics(&five(), None, 0.0).unwrap().cagr);
    }

    #[test]
    fn cagr_and_calmar_over_known_calendar_days() {
        // 2020-01-01 → 2024-01-01 is 4·365 + 1 (leap 2020) = 1461 days = 4·365.25, so
        // CAGR = (146.41/100)^(1/4) − 1 = 1.1 − 1 = 0.1 (1.1⁴ = 1.4641).
        // The middle point 80 is a −20 % drawdown from 100: Calmar = 0.1 / 0.2 = 0.5.
        let c = curve(&[
            ("2020-01-01", 100.0),
            ("2022-01-03", 80.0),
            ("2024-01-01", 146.41),
        ]);
        let m = metrics(&c, None, 0.0).unwrap();
        assert_close(m.cagr, 0.1, 1e-12);
        assert!(close(m.drawdown.max_drawdown, -0.2, 1e-12));
        assert_eq!(m.drawdown.peak, Some(d("2020-01-01")));
        assert_eq!(m.drawdown.trough, Some(d("2022-01-03")));
        assert_eq!(m.drawdown.recovered, Some(d("2024-01-01")));
        assert_close(m.calmar, 0.5, 1e-12);
        // One calendar day is enough for a CAGR: 101/100 over 1 day = 1.01^365.25 − 1.
        let one = curve(&[("2024-01-02", 100.0), ("2024-01-03", 101.0)]);
        let m = metrics(&one, None, 0.0).unwrap();
        assert_close(m.cagr, 1.01f64.powf(365.25) - 1.0, 1e-9);
        // … and one return is not enough for a volatility, Sharpe or Sortino, even a
        // losing one (which would have a downside deviation).
        assert_eq!((m.volatility, m.sharpe, m.sortino), (None, None, None));
        let down = curve(&[("2024-01-02", 100.0), ("2024-01-03", 90.0)]);
        let m = metrics(&down, None, 0.0).unwrap();
        assert_eq!((m.volatility, m.sharpe, m.sortino), (None, None, None));
    }

    #[test]
    fn drawdown_not_recovered_and_deepest_of_several() {
        // Peaks 100 (01-02) then 120 (01-05). Drawdowns: 90/100 − 1 = −0.1,
        // 96/120 − 1 = −0.2 (deepest), 110/120 − 1 = −1/12; never back to 120.
        let c = curve(&[
            ("2024-01-02", 100.0),
            ("2024-01-03", 90.0),
            ("2024-01-04", 100.0),
            ("2024-01-05", 120.0),
            ("2024-01-08", 96.0),
            ("2024-01-09", 110.0),
        ]);
        let dd = drawdown(&c);
        assert!(close(dd.max_drawdown, -0.2, 1e-12));
        assert_eq!(dd.peak, Some(d("2024-01-05")));
        assert_eq!(dd.trough, Some(d("2024-01-08")));
        assert_eq!(dd.recovered, None);
        let s = drawdown_series(&c);
        let expected = [0.0, -0.1, 0.0, 0.0, -0.2, 110.0 / 120.0 - 1.0];
        assert_eq!(s.len(), c.len());
        for ((p, q), e) in s.iter().zip(&c).zip(expected) {
            assert_eq!(p.date, q.date);
            assert!(close(p.value, e, 1e-12), "{} vs {e}", p.value);
        }
    }

    #[test]
    fn drawdown_peak_moves_to_a_repeated_high() {
        // 100, 95, 100, 80: the second 100 equals the peak, so the −20 % drawdown is
        // measured from 01-04 (most recent high); the first drawdown recovered on 01-04.
        let c = curve(&[
            ("2024-01-02", 100.0),
            ("2024-01-03", 95.0),
            ("2024-01-04", 100.0),
            ("2024-01-05", 80.0),
            ("2024-01-08", 100.0),
        ]);
        let dd = drawdown(&c);
        assert!(close(dd.max_drawdown, -0.2, 1e-12));
        assert_eq!(dd.peak, Some(d("2024-01-04")));
        assert_eq!(dd.trough, Some(d("2024-01-05")));
        assert_eq!(dd.recovered, Some(d("2024-01-08")));
    }

    #[test]
    fn drawdown_series_of_the_example() {
        // Running peak 100, 110, 110, 110, 119.79: 0, 0, −0.1, 108.9/110 − 1 = −0.01, 0.
        let s = drawdown_series(&five());
        let expected = [0.0, 0.0, -0.1, -0.01, 0.0];
        assert_eq!(s.len(), 5);
        for (p, e) in s.iter().zip(expected) {
            assert!(close(p.value, e, 1e-12), "{} vs {e}", p.value);
        }
        assert!(drawdown_series(&[]).is_empty());
        // No positive peak yet: those points are left out; equity below zero is < −100 %.
        let c = curve(&[
            ("2024-01-02", 0.0),
            ("2024-01-03", 50.0),
            ("2024-01-04", -25.0),
        ]);
        let s = drawdown_series(&c);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].date, d("2024-01-03"));
        assert!(close(s[1].value, -1.5, 1e-12));
        assert!(close(drawdown(&c).max_drawdown, -1.5, 1e-12));
    }

    const FIVE_DATES: [&str; 5] = [
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
        "2024-01-08",
    ];

    #[test]
    fn twice_the_benchmark_has_beta_two_and_no_alpha() {
        // rb = 0.01, −0.02, 0.03, 0.005; rp = 2·rb exactly (up to the rounding of the
        // curve values). cov(rp, rb) = 2·var(rb) ⇒ β = 2; with rf = 0,
        // α = (mean(rp) − 2·mean(rb))·252 = 0.
        let rb = [0.01, -0.02, 0.03, 0.005];
        let rp = rb.map(|r| 2.0 * r);
        let bench = compounded(&FIVE_DATES, 100.0, &rb);
        let port = compounded(&FIVE_DATES, 1_000.0, &rp);
        let m = metrics(&port, Some(&bench), 0.0).unwrap();
        assert_close(m.beta, 2.0, 1e-9);
        assert_close(m.alpha, 0.0, 1e-9);
        // With rf > 0 a levered benchmark has α = (β − 1)·rf·252 ≠ 0 — see below.
    }

    #[test]
    fn a_constant_daily_edge_is_alpha() {
        // rp = 2·rb + 0.001: a constant adds nothing to the covariance, so β = 2, and
        // α = (mean(rp) − 2·mean(rb))·252 = 0.001·252 = 0.252 with rf = 0.
        let rb = [0.01, -0.02, 0.03, 0.005];
        let rp = rb.map(|r| 2.0 * r + 0.001);
        let bench = compounded(&FIVE_DATES, 100.0, &rb);
        let port = compounded(&FIVE_DATES, 1_000.0, &rp);
        let m = metrics(&port, Some(&bench), 0.0).unwrap();
        assert_close(m.beta, 2.0, 1e-9);
        assert_close(m.alpha, 0.252, 1e-9);
        // Daily rf = 0.01: α = mean(2rb + 0.001 − rf) − 2·mean(rb − rf) = 0.001 + rf,
        // annualized (0.001 + 0.01)·252 = 2.772.
        let m = metrics(&port, Some(&bench), annual_for_one_percent_daily()).unwrap();
        assert_close(m.beta, 2.0, 1e-9);
        assert_close(m.alpha, 2.772, 1e-9);
    }

    #[test]
    fn benchmark_is_aligned_by_date_on_consecutive_sessions() {
        // Curve: Jan 2, 3, 4, 5, 8, 9. Benchmark: Dec 29, Jan 2, 3, 5, 6, 8, 9.
        // Jan 2→3: consecutive in both (rp 0.02, rb 0.01) — used.
        // Jan 3→4, 4→5: Jan 4 missing from the benchmark — not used.
        // Jan 5→8: the benchmark has Jan 6 in between — not used.
        // Jan 8→9: consecutive in both (rp −0.04, rb −0.02) — used.
        // So β = 2 and α = (0.02 − 0.04)/2 − 2·(0.01 − 0.02)/2 = 0 from those two pairs;
        // any other pairing would break it (the other steps are +50 %, −30 %, +70 %).
        let port = curve(&[
            ("2024-01-02", 100.0),
            ("2024-01-03", 102.0),
            ("2024-01-04", 153.0),
            ("2024-01-05", 107.1),
            ("2024-01-08", 182.07),
            ("2024-01-09", 174.7872),
        ]);
        let bench = curve(&[
            ("2023-12-29", 50.0),
            ("2024-01-02", 100.0),
            ("2024-01-03", 101.0),
            ("2024-01-05", 90.0),
            ("2024-01-06", 120.0),
            ("2024-01-08", 100.0),
            ("2024-01-09", 98.0),
        ]);
        assert_eq!(aligned_returns(&port, &bench).len(), 2);
        let m = metrics(&port, Some(&bench), 0.0).unwrap();
        assert_close(m.beta, 2.0, 1e-9);
        assert_close(m.alpha, 0.0, 1e-9);
    }

    #[test]
    fn beta_undefined_cases() {
        let port = five();
        // No benchmark.
        let m = metrics(&port, None, 0.0).unwrap();
        assert_eq!((m.alpha, m.beta), (None, None));
        // Empty benchmark, and one aligned return only.
        let m = metrics(&port, Some(&[]), 0.0).unwrap();
        assert_eq!((m.alpha, m.beta), (None, None));
        let bench = curve(&[("2024-01-02", 10.0), ("2024-01-03", 11.0)]);
        let m = metrics(&port, Some(&bench), 0.0).unwrap();
        assert_eq!((m.alpha, m.beta), (None, None));
        // A flat benchmark: var(rb) = 0.
        let flat: Vec<Point> = FIVE_DATES
            .iter()
            .map(|s| Point {
                date: d(s),
                value: 50.0,
            })
            .collect();
        let m = metrics(&port, Some(&flat), 0.0).unwrap();
        assert_eq!((m.alpha, m.beta), (None, None));
    }

    #[test]
    fn empty_and_non_positive_start_give_none() {
        assert_eq!(metrics(&[], None, 0.0), None);
        let zero = curve(&[("2024-01-02", 0.0), ("2024-01-03", 10.0)]);
        assert_eq!(metrics(&zero, None, 0.0), None);
        let neg = curve(&[("2024-01-02", -5.0), ("2024-01-03", 10.0)]);
        assert_eq!(metrics(&neg, None, 0.0), None);
        let nan_end = curve(&[("2024-01-02", 5.0), ("2024-01-03", f64::NAN)]);
        assert_eq!(metrics(&nan_end, None, 0.0), None);
    }

    #[test]
    fn single_point_curve() {
        let c = curve(&[("2024-01-02", 100.0)]);
        let m = metrics(&c, Some(&c), 0.0).unwrap();
        assert_eq!(m.sessions, 1);
        assert_eq!((m.start, m.end), (d("2024-01-02"), d("2024-01-02")));
        assert_eq!(m.total_return, 0.0);
        assert_eq!(m.cagr, None); // 0 calendar days
        assert_eq!((m.volatility, m.sharpe, m.sortino), (None, None, None));
        assert_eq!(m.drawdown.max_drawdown, 0.0);
        assert_eq!(m.drawdown.peak, None);
        assert_eq!((m.calmar, m.alpha, m.beta), (None, None, None));
    }

    #[test]
    fn constant_curve() {
        let c: Vec<Point> = FIVE_DATES
            .iter()
            .map(|s| Point {
                date: d(s),
                value: 100.0,
            })
            .collect();
        let m = metrics(&c, None, 0.0).unwrap();
        assert_eq!(m.total_return, 0.0);
        assert_eq!(m.cagr, Some(0.0));
        assert_eq!(m.volatility, Some(0.0)); // defined: no movement
        assert_eq!(m.sharpe, None); // sd 0
        assert_eq!(m.sortino, None); // no downside
        assert_eq!(
            m.drawdown,
            Drawdown {
                max_drawdown: 0.0,
                peak: None,
                trough: None,
                recovered: None
            }
        );
        assert_eq!(m.calmar, None);
        // With rf > 0 the excess is −rf every day: still no Sharpe (sd 0), but a
        // Sortino of −rf / rf · √252 = −√252.
        let m = metrics(&c, None, annual_for_one_percent_daily()).unwrap();
        assert_eq!(m.sharpe, None);
        assert_close(m.sortino, -(252f64.sqrt()), 1e-9);
    }

    #[test]
    fn rounding_noise_is_not_volatility() {
        // 100, 110, 121, 133.1, 146.41 grows 10 % a session; the computed returns differ
        // by ~1e-16, which would give a Sharpe of ~1e16. It is undefined instead.
        let c = curve(&[
            ("2024-01-02", 100.0),
            ("2024-01-03", 110.0),
            ("2024-01-04", 121.0),
            ("2024-01-05", 133.1),
            ("2024-01-08", 146.41),
        ]);
        let m = metrics(&c, None, 0.0).unwrap();
        assert_eq!(m.sharpe, None);
        assert_eq!(m.sortino, None); // never below rf = 0
        assert_close(m.volatility, 0.0, 1e-12);
        // The same curve as a benchmark has no variance to regress on.
        let m = metrics(&five(), Some(&c), 0.0).unwrap();
        assert_eq!(m.beta, None);
    }

    #[test]
    fn sortino_none_without_downside_and_invalid_risk_free() {
        // 100, 110, 99, … with rf = −150 % a year has no real daily rate: risk-adjusted
        // metrics are None; the rest is unaffected.
        let m = metrics(&five(), Some(&five()), -1.5).unwrap();
        assert_eq!((m.sharpe, m.sortino, m.alpha), (None, None, None));
        assert_close(m.beta, 1.0, 1e-12);
        assert!(m.volatility.is_some());
        // Always up: no downside deviation.
        let up = compounded(&FIVE_DATES, 100.0, &[0.01, 0.02, 0.005, 0.03]);
        let m = metrics(&up, None, 0.0).unwrap();
        assert_eq!(m.sortino, None);
        assert!(m.sharpe.is_some());
    }

    #[test]
    fn trade_stats_mixed() {
        // Wins 100, 30 (gross 130); losses −50, −25 (gross −75); one scratch trade.
        // Win rate 2/5 = 0.4; profit factor 130/75; avg win 65; avg loss −37.5.
        let s = trade_stats(&[100.0, -50.0, 0.0, 30.0, -25.0]);
        assert_eq!((s.trades, s.wins, s.losses), (5, 2, 2));
        assert!(close(s.total_pnl, 55.0, 1e-12));
        assert_close(s.win_rate, 0.4, 1e-12);
        assert_close(s.profit_factor, 130.0 / 75.0, 1e-12);
        assert_close(s.avg_win, 65.0, 1e-12);
        assert_close(s.avg_loss, -37.5, 1e-12);
    }

    #[test]
    fn trade_stats_no_losses_no_wins_and_empty() {
        let s = trade_stats(&[10.0, 20.0, 0.0]);
        assert_eq!((s.trades, s.wins, s.losses), (3, 2, 0));
        assert_close(s.win_rate, 2.0 / 3.0, 1e-12);
        assert_eq!(s.profit_factor, None);
        assert_close(s.avg_win, 15.0, 1e-12);
        assert_eq!(s.avg_loss, None);

        let s = trade_stats(&[-10.0, -30.0]);
        assert_eq!(s.win_rate, Some(0.0));
        assert_eq!(s.profit_factor, Some(0.0));
        assert_eq!(s.avg_win, None);
        assert_close(s.avg_loss, -20.0, 1e-12);

        let s = trade_stats(&[]);
        assert_eq!(
            s,
            TradeStats {
                trades: 0,
                wins: 0,
                losses: 0,
                total_pnl: 0.0,
                win_rate: None,
                profit_factor: None,
                avg_win: None,
                avg_loss: None,
            }
        );
        // A NaN pnl is not a trade.
        assert_eq!(trade_stats(&[f64::NAN, 5.0]).trades, 1);
    }

    proptest! {
        // A fixed seed: the same cases on every run (tests are deterministic).
        #![proptest_config(proptest::test_runner::Config {
            rng_seed: proptest::test_runner::RngSeed::Fixed(20_261_202),
            ..proptest::test_runner::Config::default()
        })]
        /// Whatever the curve (zeros, negatives, NaN gaps, huge moves), nothing undefined
        /// escapes: every value is finite or None, drawdowns are ≤ 0.
        #[test]
        fn metrics_never_leak_nan(
            values in proptest::collection::vec(
                prop_oneof![
                    8 => 0.001f64..1e6,
                    1 => Just(0.0),
                    1 => -1e3f64..0.0,
                    1 => Just(f64::NAN),
                    1 => Just(100.0),
                ],
                0..30,
            ),
            bench in proptest::collection::vec(
                prop_oneof![4 => 0.001f64..1e4, 1 => Just(0.0), 1 => Just(f64::NAN)],
                0..30,
            ),
            gap in 0usize..4,
            rf in -2.0f64..1.0,
        ) {
            let base = d("2024-01-01");
            let c: Vec<Point> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| Point { date: base + chrono::Duration::days(i as i64), value: v })
                .collect();
            let b: Vec<Point> = bench
                .iter()
                .enumerate()
                .filter(|(i, _)| gap == 0 || i % (gap + 1) != 0)
                .map(|(i, &v)| Point { date: base + chrono::Duration::days(i as i64), value: v })
                .collect();
            for p in drawdown_series(&c) {
                prop_assert!(p.value.is_finite() && p.value <= 0.0);
            }
            for (_, r) in daily_returns(&c) {
                prop_assert!(r.is_finite());
            }
            let dd = drawdown(&c);
            prop_assert!(dd.max_drawdown.is_finite() && dd.max_drawdown <= 0.0);
            if let (Some(p), Some(t)) = (dd.peak, dd.trough) {
                prop_assert!(p < t);
                if let Some(r) = dd.recovered {
                    prop_assert!(t < r);
                }
            }
            if let Some(m) = metrics(&c, Some(&b), rf) {
                prop_assert!(m.total_return.is_finite());
                for x in [m.cagr, m.volatility, m.sharpe, m.sortino, m.calmar, m.alpha, m.beta]
                    .into_iter()
                    .flatten()
                {
                    prop_assert!(x.is_finite());
                }
            }
            let pnls: Vec<f64> = values.clone();
            let s = trade_stats(&pnls);
            for x in [s.win_rate, s.profit_factor, s.avg_win, s.avg_loss].into_iter().flatten() {
                prop_assert!(x.is_finite());
            }
            prop_assert!(s.total_pnl.is_finite());
        }
    }
}
