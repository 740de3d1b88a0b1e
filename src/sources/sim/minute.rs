//! The sim's minute path: one price per minute of a session, from which its 1-minute
//! bars, its daily open/high/low/close and the spot of every chain snapshot are taken.
//!
//! The path runs from the open (after the overnight move, which carries a quarter of
//! the day's variance) to the close of the daily path, a Brownian bridge in a time
//! that runs faster after the open and before the close: the variance of a minute is
//! U-shaped over the day, about four times midday's in the first minutes (the morning
//! range) and twice midday's in the last. Each minute's high and low reach beyond its
//! open and close by a draw on the minute's own volatility. Everything is drawn from
//! (seed, date, symbol): the same seed gives the same bars.
//!
//! The price at a time of day is the path's value at that minute: the spot of a chain
//! quoted at 10:30 is the close of the bar stamped 10:29 (at the open, the day's open;
//! after the close, its close).

use super::chain::{hash_normal, key};
use super::path::box_muller;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Share of the day's variance the overnight move carries (the open's gap).
pub const OVERNIGHT: f64 = 0.25;

/// One bar of the path, in log price (relative to the previous close for a modelled
/// day; absolute for a day that follows an imported bar).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogBar {
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
}

/// A session's minute path: `points[k]` is the price k minutes after the open (so
/// `points[0]` the open and the last the close), `bars[k]` the bar from minute k to k+1.
#[derive(Debug, Clone)]
pub struct MinutePath {
    pub open_time: NaiveDateTime,
    pub points: Vec<f64>,
    pub bars: Vec<LogBar>,
}

impl MinutePath {
    /// The path's value at `time` (New York): the close of the last bar completed by
    /// then; the open before the open, the close after the close.
    pub fn at(&self, time: NaiveDateTime) -> f64 {
        let k = (time - self.open_time)
            .num_minutes()
            .clamp(0, self.bars.len() as i64);
        self.points[k as usize]
    }
    pub fn high(&self) -> f64 {
        self.bars.iter().map(|b| b.high).fold(f64::MIN, f64::max)
    }
    pub fn low(&self) -> f64 {
        self.bars.iter().map(|b| b.low).fold(f64::MAX, f64::min)
    }
}

/// Relative variance of minute k of n (U-shaped), normalized to sum to 1.
pub fn variance_weights(n: usize) -> Vec<f64> {
    let w: Vec<f64> = (0..n)
        .map(|k| {
            let x = (k as f64 + 0.5) / n as f64;
            0.7 + 2.3 * libm::exp(-x / 0.07) + 0.7 * libm::exp(-(1.0 - x) / 0.06)
        })
        .collect();
    let s: f64 = w.iter().sum();
    w.into_iter().map(|v| v / s).collect()
}

/// Share of the day's volume in minute k of n (heavy at the open and the closing
/// auction), summing to 1.
pub fn volume_weights(n: usize) -> Vec<f64> {
    let w: Vec<f64> = (0..n)
        .map(|k| {
            let x = (k as f64 + 0.5) / n as f64;
            0.5 + 2.5 * libm::exp(-x / 0.05) + 2.0 * libm::exp(-(1.0 - x) / 0.03)
        })
        .collect();
    let s: f64 = w.iter().sum();
    w.into_iter().map(|v| v / s).collect()
}

/// The session's minutes (open, count), `None` on a day that is not a session.
pub fn session_minutes(d: NaiveDate) -> Option<(NaiveDateTime, usize)> {
    let s = crate::calendar::session(d).ok()??;
    let n = (s.close - s.open).num_minutes().max(1) as usize;
    Some((d.and_time(s.open), n))
}

/// The open of a modelled day in log price relative to the previous close.
pub fn open_gap(seed: u64, d: NaiveDate, symbol: &str, day_log: f64, day_sd: f64) -> f64 {
    OVERNIGHT * day_log
        + libm::sqrt(OVERNIGHT * (1.0 - OVERNIGHT)) * day_sd * hash_normal(seed, d, symbol, 1)
}

/// A bridge of `n` minutes from `from` to `to` with total variance `var`, spread by
/// [`variance_weights`]; the bars' highs and lows reach beyond their ends.
pub fn bridge(
    seed: u64,
    d: NaiveDate,
    symbol: &str,
    open_time: NaiveDateTime,
    n: usize,
    (from, to): (f64, f64),
    var: f64,
) -> MinutePath {
    let w = variance_weights(n);
    let mut rng = ChaCha8Rng::seed_from_u64(key(seed, d, symbol, 21));
    let mut normal = move || {
        let (z, _) = box_muller(1.0 - rng.random::<f64>(), rng.random::<f64>());
        z
    };
    // A random walk with the minutes' variances, then pinned at both ends.
    let mut walk = Vec::with_capacity(n + 1);
    walk.push(0.0);
    let mut cum_w = Vec::with_capacity(n + 1);
    cum_w.push(0.0);
    for &wk in &w {
        let last = *walk.last().unwrap_or(&0.0);
        walk.push(last + libm::sqrt(var * wk) * normal());
        cum_w.push(cum_w.last().unwrap_or(&0.0) + wk);
    }
    let end = walk[n];
    let mut points: Vec<f64> = (0..=n)
        .map(|k| from + walk[k] - cum_w[k] / cum_w[n] * (end - (to - from)))
        .collect();
    points[0] = from;
    points[n] = to;
    let bars = (0..n)
        .map(|k| {
            let (o, c) = (points[k], points[k + 1]);
            let sd = libm::sqrt(var * w[k]);
            LogBar {
                open: o,
                close: c,
                high: o.max(c) + 0.4 * sd * normal().abs(),
                low: o.min(c) - 0.4 * sd * normal().abs(),
            }
        })
        .collect();
    MinutePath {
        open_time,
        points,
        bars,
    }
}

/// The minute path of a modelled day: from the open gap to `day_log` (log price
/// relative to the previous close), the day's stdev `day_sd`.
pub fn modelled(seed: u64, d: NaiveDate, symbol: &str, day_log: f64, day_sd: f64) -> MinutePath {
    let (open_time, n) = session_minutes(d).unwrap_or_else(|| (d.and_time(NaiveTime::MIN), 390));
    let open = open_gap(seed, d, symbol, day_log, day_sd);
    bridge(
        seed,
        d,
        symbol,
        open_time,
        n,
        (open, day_log),
        (1.0 - OVERNIGHT) * day_sd * day_sd,
    )
}

/// The minute path of a day that follows an imported bar (dollars): from its open to
/// its close, inside its range, touching its high and its low.
pub fn following_bar(
    seed: u64,
    d: NaiveDate,
    symbol: &str,
    (open, high, low, close): (f64, f64, f64, f64),
) -> MinutePath {
    let (open_time, n) = session_minutes(d).unwrap_or_else(|| (d.and_time(NaiveTime::MIN), 390));
    let (o, c) = (libm::log(open), libm::log(close));
    let (h, l) = (
        libm::log(high.max(open).max(close)),
        libm::log(low.min(open).min(close)),
    );
    let sd = 0.5 * (h - l).max(0.0);
    let mut p = bridge(seed, d, symbol, open_time, n, (o, c), sd * sd);
    for x in &mut p.points {
        *x = x.clamp(l, h);
    }
    for b in &mut p.bars {
        *b = LogBar {
            open: b.open.clamp(l, h),
            close: b.close.clamp(l, h),
            high: b.high.clamp(l, h),
            low: b.low.clamp(l, h),
        };
    }
    let top = (0..n).max_by(|&a, &b| p.bars[a].high.total_cmp(&p.bars[b].high));
    let bottom = (0..n).min_by(|&a, &b| p.bars[a].low.total_cmp(&p.bars[b].low));
    if let Some(k) = top {
        p.bars[k].high = h;
    }
    if let Some(k) = bottom {
        p.bars[k].low = l;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_modelled_day_runs_from_its_open_to_its_close_inside_its_bars() {
        let p = modelled(42, d("2025-03-14"), "SPX", 0.004, 0.01);
        assert_eq!(p.bars.len(), 390);
        assert_eq!(p.points[390], 0.004);
        assert_eq!(
            p.bars[0].open,
            open_gap(42, d("2025-03-14"), "SPX", 0.004, 0.01)
        );
        for (k, b) in p.bars.iter().enumerate() {
            assert_eq!(b.open, p.points[k]);
            assert_eq!(b.close, p.points[k + 1]);
            assert!(b.low <= b.open.min(b.close) && b.high >= b.open.max(b.close));
        }
        // The spot at 10:30 is the 10:29 bar's close.
        let t = d("2025-03-14").and_hms_opt(10, 30, 0).unwrap();
        assert_eq!(p.at(t), p.bars[59].close);
        // An early close has fewer minutes (2025-11-28 closes at 13:00).
        assert_eq!(
            modelled(42, d("2025-11-28"), "SPX", 0.0, 0.01).bars.len(),
            210
        );
    }

    #[test]
    fn the_morning_moves_more_than_midday() {
        // Over many days, the first half hour's squared moves exceed a midday half hour's.
        let (mut morning, mut midday) = (0.0, 0.0);
        for k in 0..200u64 {
            let p = modelled(k, d("2025-03-14"), "SPX", 0.0, 0.01);
            let sq = |a: usize, b: usize| {
                (a..b)
                    .map(|i| (p.points[i + 1] - p.points[i]).powi(2))
                    .sum::<f64>()
            };
            morning += sq(0, 30);
            midday += sq(180, 210);
        }
        assert!(morning > 2.0 * midday, "{morning} {midday}");
    }

    #[test]
    fn a_day_following_a_bar_touches_its_range() {
        let bar = (100.0, 103.0, 98.5, 101.0);
        let p = following_bar(7, d("2024-06-03"), "AAPL", bar);
        assert!((p.high() - libm::log(103.0)).abs() < 1e-12);
        assert!((p.low() - libm::log(98.5)).abs() < 1e-12);
        assert!((p.points[0] - libm::log(100.0)).abs() < 1e-12);
        assert!((p.points[390] - libm::log(101.0)).abs() < 1e-12);
    }
}
