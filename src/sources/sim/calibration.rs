//! Measures the simulated market the way the real one was measured (SPY and VIX
//! 2010–2026, 15 large QQQ components 2015–2024, from `shared/data/real`), so the two
//! can be printed side by side (`cargo bench --bench sim_calibration`) and tested.

use super::universe::Kind;
use super::Sim;
use chrono::{Datelike, NaiveDate};
use std::fmt;

/// The real-market figures the simulator is calibrated to.
pub const REAL: Figures = Figures {
    vix_above_rv_pct: 84.0,
    mean_vix_minus_rv: 3.7,
    median_vix_minus_rv: 4.6,
    mean_vix: 18.4,
    mean_rv: 14.7,
    corr_vix_past_rv: 0.82,
};

/// Real mean pairwise correlation of 15 large QQQ components: calm and stressed years.
pub const REAL_CALM_CORR: (f64, f64) = (0.28, 0.37);
pub const REAL_STRESSED_CORR: (f64, f64) = (0.58, 0.63);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// % of days VIX exceeded SPY's realized vol over the next 21 sessions.
    pub vix_above_rv_pct: f64,
    pub mean_vix_minus_rv: f64,
    pub median_vix_minus_rv: f64,
    pub mean_vix: f64,
    pub mean_rv: f64,
    /// Correlation of VIX with SPY's realized vol over the past 21 sessions.
    pub corr_vix_past_rv: f64,
}

#[derive(Debug, Clone)]
pub struct YearCorr {
    pub year: i32,
    pub mean_vix: f64,
    pub mean_pairwise_corr: f64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub figures: Figures,
    pub years: Vec<YearCorr>,
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

fn stdev(x: &[f64]) -> f64 {
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len().max(2) - 1) as f64).sqrt()
}

fn corr(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// The 15 largest QQQ components by weight.
pub fn top15(sim: &Sim) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..sim.universe.len())
        .filter(|&i| sim.universe[i].qqq_weight > 0.0)
        .collect();
    idx.sort_by(|a, b| {
        sim.universe[*b]
            .qqq_weight
            .total_cmp(&sim.universe[*a].qqq_weight)
    });
    idx.truncate(15);
    idx
}

pub fn measure(seed: u64, from: NaiveDate, to: NaiveDate) -> Report {
    let sim = Sim::new(seed);
    let p = &sim.path;
    let find = |s: &str| {
        sim.universe
            .iter()
            .position(|u| u.symbol == s)
            .expect("symbol in universe")
    };
    let spy = find("SPY");
    let vix = sim
        .universe
        .iter()
        .position(|u| u.kind == Kind::VolIndex)
        .expect("VIX in universe");
    let t0 = p.sessions.partition_point(|d| *d < from).max(22);
    let t1 = p
        .sessions
        .partition_point(|d| *d <= to)
        .min(p.sessions.len() - 22);
    let rv = |a: usize, b: usize| stdev(&p.returns[spy][a..b]) * (252f64).sqrt() * 100.0;
    let mut diffs = Vec::new();
    let mut vixes = Vec::new();
    let mut fwd = Vec::new();
    let mut past = Vec::new();
    for t in t0..t1 {
        let v = p.close[vix][t];
        let f = rv(t + 1, t + 22);
        vixes.push(v);
        fwd.push(f);
        diffs.push(v - f);
        past.push(rv(t - 20, t + 1));
    }
    let mut sorted = diffs.clone();
    sorted.sort_by(f64::total_cmp);
    let figures = Figures {
        vix_above_rv_pct: 100.0 * diffs.iter().filter(|d| **d > 0.0).count() as f64
            / diffs.len().max(1) as f64,
        mean_vix_minus_rv: mean(&diffs),
        median_vix_minus_rv: sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN),
        mean_vix: mean(&vixes),
        mean_rv: mean(&fwd),
        corr_vix_past_rv: corr(&vixes, &past),
    };
    let names = top15(&sim);
    let mut years = Vec::new();
    for y in from.year()..=to.year() {
        let ts: Vec<usize> = (t0..t1).filter(|&t| p.sessions[t].year() == y).collect();
        if ts.len() < 100 {
            continue;
        }
        let series: Vec<Vec<f64>> = names
            .iter()
            .map(|&i| ts.iter().map(|&t| p.returns[i][t]).collect())
            .collect();
        let mut cs = Vec::new();
        for a in 0..series.len() {
            for b in a + 1..series.len() {
                cs.push(corr(&series[a], &series[b]));
            }
        }
        years.push(YearCorr {
            year: y,
            mean_vix: mean(&ts.iter().map(|&t| p.close[vix][t]).collect::<Vec<_>>()),
            mean_pairwise_corr: mean(&cs),
        });
    }
    Report {
        seed,
        from,
        to,
        figures,
        years,
    }
}

impl Report {
    /// Mean pairwise correlation in calm years (mean VIX below 17) and the highest
    /// yearly figure (the most stressed year's).
    pub fn calm_and_stressed_corr(&self) -> (f64, f64) {
        let calm: Vec<f64> = self
            .years
            .iter()
            .filter(|y| y.mean_vix < 17.0)
            .map(|y| y.mean_pairwise_corr)
            .collect();
        let max = self
            .years
            .iter()
            .map(|y| y.mean_pairwise_corr)
            .fold(f64::NAN, f64::max);
        (mean(&calm), max)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.figures;
        let r = &REAL;
        writeln!(
            f,
            "sim seed {} over {} to {} vs. real (SPY/VIX 2010–2026):",
            self.seed, self.from, self.to
        )?;
        writeln!(f, "  {:<44} {:>8} {:>8}", "figure", "sim", "real")?;
        let rows = [
            (
                "VIX > next-21-session realized vol, % days",
                s.vix_above_rv_pct,
                r.vix_above_rv_pct,
            ),
            (
                "mean VIX − realized, vol pts",
                s.mean_vix_minus_rv,
                r.mean_vix_minus_rv,
            ),
            (
                "median VIX − realized, vol pts",
                s.median_vix_minus_rv,
                r.median_vix_minus_rv,
            ),
            ("mean VIX", s.mean_vix, r.mean_vix),
            ("mean realized vol (next 21 sessions)", s.mean_rv, r.mean_rv),
            (
                "corr(VIX, past-month realized vol)",
                s.corr_vix_past_rv,
                r.corr_vix_past_rv,
            ),
        ];
        for (name, a, b) in rows {
            writeln!(f, "  {name:<44} {a:>8.2} {b:>8.2}")?;
        }
        let (calm, stressed) = self.calm_and_stressed_corr();
        writeln!(
            f,
            "  {:<44} {:>8.2} {:>4.2}–{:.2}",
            "mean pairwise corr, 15 QQQ names, calm years",
            calm,
            REAL_CALM_CORR.0,
            REAL_CALM_CORR.1
        )?;
        writeln!(
            f,
            "  {:<44} {:>8.2} {:>4.2}–{:.2}",
            "  ... most stressed year", stressed, REAL_STRESSED_CORR.0, REAL_STRESSED_CORR.1
        )?;
        write!(f, "  by year (mean VIX, corr):")?;
        for y in &self.years {
            write!(
                f,
                " {} ({:.1}, {:.2})",
                y.year, y.mean_vix, y.mean_pairwise_corr
            )?;
        }
        writeln!(f)
    }
}
