//! The simulated market's daily path: one draw of every session from 2000 to 2035.
//!
//! Model (daily steps, dt = 1/252):
//! * a market factor with stochastic volatility: ln σ follows a mean-reverting
//!   (Ornstein–Uhlenbeck) process whose long-run level switches between calm, normal and
//!   stressed regimes (a Markov chain), with a negative return/vol correlation (leverage)
//!   and Poisson jumps that also spike volatility — so volatility clusters;
//! * eleven sector factors and idiosyncratic moves whose vols rise with market stress,
//!   less than one-for-one, so correlations rise in stressed regimes and fall back;
//! * quarterly earnings jumps for single names; QQQ is the weighted sum of its 50
//!   components plus the rest of the index;
//! * a variance risk premium and an index correlation premium that are AR(1) processes,
//!   so implied vol sits above expected realized vol on average but not always.
//!
//! Everything is drawn from one ChaCha8 stream in a fixed order (the draw count per
//! session does not depend on the state), with `libm` transcendental functions, so the
//! same seed gives the same path on every machine.

use super::universe::{Kind, Underlying, SECTORS, SECTOR_VOL};
use crate::calendar;
use chrono::{Datelike, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const DT: f64 = 1.0 / 252.0;
/// Mean-reversion speed of log market vol, per year.
pub const KAPPA: f64 = 6.0;
/// Vol of log vol, per √year.
pub const XI: f64 = 0.8;
/// Correlation of the market shock with the vol shock (leverage effect).
const RHO: f64 = -0.7;
/// Long-run market vol in each regime: calm, normal, stressed.
pub const REGIME_VOL: [f64; 3] = [0.085, 0.12, 0.235];
/// Daily regime switch probabilities.
const P_CALM_TO_NORMAL: f64 = 1.0 / 250.0;
const P_NORMAL_TO_CALM: f64 = 1.0 / 400.0;
const P_NORMAL_TO_STRESS: f64 = 1.0 / 900.0;
const P_STRESS_TO_NORMAL: f64 = 1.0 / 120.0;
/// Market jump intensity per year in each regime, and jump size (log) mean/stdev.
pub const JUMP_RATE: [f64; 3] = [1.0, 2.5, 8.0];
pub const JUMP_MEAN: f64 = -0.025;
pub const JUMP_SD: f64 = 0.02;
/// How much a market jump lifts log vol.
const JUMP_VOL_KICK: f64 = 0.25;
/// Idiosyncratic and sector vols scale as (σ_m / REF)^STRESS_ELASTICITY.
pub const STRESS_REF_VOL: f64 = 0.12;
pub const STRESS_ELASTICITY: f64 = 0.3;
/// Variance risk premium: implied vol = expected vol × (1 + vrp), vrp AR(1).
pub const VRP_MEAN: f64 = 0.19;
const VRP_PHI: f64 = 0.98;
const VRP_SHOCK: f64 = 0.016;
/// Index correlation premium (extra relative premium on index implied vol), AR(1).
pub const CORR_PREMIUM_MEAN: f64 = 0.10;
const CORR_PREMIUM_PHI: f64 = 0.985;
const CORR_PREMIUM_SHOCK: f64 = 0.012;
/// Drift of the market (total return), per year.
const MARKET_DRIFT: f64 = 0.08;
/// The date prices are anchored to (the universe's anchor prices are its closes).
pub fn anchor_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, 2).expect("valid date")
}

/// The market's state after the close of a session.
#[derive(Debug, Clone, Copy)]
pub struct MarketState {
    pub regime: u8,
    /// ln of the market's instantaneous annualized vol.
    pub log_vol: f64,
    pub vrp: f64,
    pub corr_premium: f64,
}

impl MarketState {
    pub fn vol(&self) -> f64 {
        libm::exp(self.log_vol)
    }
    /// Multiplier on sector and idiosyncratic vols in this state.
    pub fn stress_mult(&self) -> f64 {
        libm::pow(self.vol() / STRESS_REF_VOL, STRESS_ELASTICITY)
    }
}

/// Loadings of an underlying's daily return on the factors, for the variance formulas.
#[derive(Debug, Clone)]
pub struct Loadings {
    pub beta: f64,
    /// Loading on each sector factor.
    pub sector: [f64; 11],
    /// Idiosyncratic variance per year at stress multiplier 1.
    pub idio_var: f64,
    /// Earnings jump variance per event, and whether events apply.
    pub earnings_var: f64,
}

#[derive(Clone)]
pub struct MarketPath {
    pub sessions: Vec<NaiveDate>,
    /// State after the close of each session.
    pub states: Vec<MarketState>,
    /// Per underlying (universe order), per session: the day's log total return.
    pub returns: Vec<Vec<f64>>,
    /// Per underlying, per session: unrounded close.
    pub close: Vec<Vec<f64>>,
    /// Per underlying, per session: cash dividend going ex that day.
    pub dividend: Vec<Vec<f64>>,
    pub loadings: Vec<Loadings>,
    /// Per underlying, per session: a multiplier on its implied vols, empty (1) for the
    /// model's own path; set from real bars' realized vol (`[sim] underlying = "bars"`).
    pub iv_scale: Vec<Vec<f64>>,
}

/// A standard normal pair from two uniforms (Box–Muller), with libm for portability.
pub fn box_muller(u1: f64, u2: f64) -> (f64, f64) {
    let r = libm::sqrt(-2.0 * libm::log(u1.max(1e-300)));
    let a = 2.0 * std::f64::consts::PI * u2;
    (r * libm::cos(a), r * libm::sin(a))
}

struct Normals {
    rng: ChaCha8Rng,
    spare: Option<f64>,
}

impl Normals {
    fn next(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1: f64 = self.rng.random();
        let u2: f64 = self.rng.random();
        let (a, b) = box_muller(1.0 - u1, u2);
        self.spare = Some(b);
        a
    }
    fn uniform(&mut self) -> f64 {
        self.rng.random()
    }
}

/// Whether `d` is the first session of an earnings week for a name (quarterly, in
/// Jan/Apr/Jul/Oct, on a day of the month that depends on the symbol).
pub fn is_earnings_day(symbol: &str, d: NaiveDate, prev: Option<NaiveDate>) -> bool {
    if !matches!(d.month(), 1 | 4 | 7 | 10) {
        return false;
    }
    let h = symbol
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    let day = 14 + h % 14; // the 14th to the 27th
    match prev {
        Some(p) => p.day() < day && d.day() >= day && p.month() == d.month(),
        None => d.day() == day,
    }
}

/// Whether a dividend goes ex on `d` (the first session on or after the scheduled date):
/// funds on the third Friday of Mar/Jun/Sep/Dec, stocks on the second Friday of
/// Feb/May/Aug/Nov.
fn is_ex_dividend(kind: Kind, d: NaiveDate, prev: NaiveDate) -> bool {
    let (months, nth): (&[u32], u8) = match kind {
        Kind::Etf => (&[3, 6, 9, 12], 3),
        Kind::Stock => (&[2, 5, 8, 11], 2),
        _ => return false,
    };
    months.iter().any(|&m| {
        let y = if m == 12 && d.month() == 1 {
            d.year() - 1
        } else {
            d.year()
        };
        NaiveDate::from_weekday_of_month_opt(y, m, chrono::Weekday::Fri, nth)
            .is_some_and(|sched| prev < sched && d >= sched)
    })
}

impl MarketPath {
    pub fn generate(seed: u64, universe: &[Underlying]) -> MarketPath {
        let first = NaiveDate::from_ymd_opt(calendar::FIRST_YEAR, 1, 1).expect("date");
        let last = NaiveDate::from_ymd_opt(calendar::LAST_YEAR, 12, 31).expect("date");
        let sessions: Vec<NaiveDate> = calendar::sessions(first, last)
            .expect("calendar range")
            .into_iter()
            .map(|s| s.date)
            .collect();
        let n = sessions.len();
        let mut z = Normals {
            rng: ChaCha8Rng::seed_from_u64(seed),
            spare: None,
        };
        let loadings = compute_loadings(universe);
        let qqq_rest_w = 1.0 - universe.iter().map(|u| u.qqq_weight).sum::<f64>();

        let mut states = Vec::with_capacity(n);
        let mut st = MarketState {
            regime: 1,
            log_vol: libm::log(REGIME_VOL[1]),
            vrp: VRP_MEAN,
            corr_premium: CORR_PREMIUM_MEAN,
        };
        let nu = universe.len();
        let mut returns = vec![vec![0.0; n]; nu];
        let sqdt = libm::sqrt(DT);
        for t in 0..n {
            // Fixed draw order: regime, market, vol, jump, premia, sectors, names, rest.
            let u_regime = z.uniform();
            let z_m = z.next();
            let z_v = z.next();
            let u_jump = z.uniform();
            let z_jump = z.next();
            let z_vrp = z.next();
            let z_cp = z.next();
            let z_sec: Vec<f64> = (0..SECTORS.len()).map(|_| z.next()).collect();
            let z_idio: Vec<f64> = (0..nu).map(|_| z.next()).collect();
            let z_earn: Vec<f64> = (0..nu).map(|_| z.next()).collect();
            let z_rest = z.next();

            let sigma = st.vol();
            let mult = st.stress_mult();
            let r = st.regime as usize;
            let jump = if u_jump < JUMP_RATE[r] * DT {
                JUMP_MEAN + JUMP_SD * z_jump
            } else {
                0.0
            };
            let market = (MARKET_DRIFT - 0.5 * sigma * sigma) * DT + sigma * sqdt * z_m + jump;
            let sectors: Vec<f64> = (0..SECTORS.len())
                .map(|s| SECTOR_VOL[s] * mult * sqdt * z_sec[s])
                .collect();
            let prev = if t > 0 { Some(sessions[t - 1]) } else { None };
            let mut qqq_sum = 0.0;
            for (i, u) in universe.iter().enumerate() {
                if u.kind == Kind::VolIndex || u.symbol == "QQQ" {
                    continue;
                }
                let sec = u
                    .sector
                    .map(|s| u.sector_loading * sectors[s])
                    .unwrap_or(0.0);
                let idio = u.idio_vol * mult * sqdt * z_idio[i];
                let earn = if u.earnings_move > 0.0 && is_earnings_day(&u.symbol, sessions[t], prev)
                {
                    u.earnings_move * z_earn[i]
                } else {
                    0.0
                };
                let nonmarket_var = (loadings[i]
                    .sector
                    .iter()
                    .zip(SECTOR_VOL)
                    .map(|(l, v)| (l * v).powi(2))
                    .sum::<f64>()
                    + loadings[i].idio_var)
                    * mult
                    * mult;
                // Drift that gives every name the market's expected growth (Itô terms).
                let drift = (MARKET_DRIFT * (1.0 - u.beta)
                    - 0.5 * nonmarket_var
                    - 0.5 * (u.beta * u.beta - u.beta) * sigma * sigma)
                    * DT;
                let ret = u.beta * market + sec + idio + earn + drift;
                returns[i][t] = ret;
                qqq_sum += u.qqq_weight * ret;
            }
            // QQQ: its top 50 by weight plus the rest of the index (tech-heavy beta 1.1).
            if let Some(q) = universe.iter().position(|u| u.symbol == "QQQ") {
                let xlk = SECTORS.iter().position(|s| *s == "XLK").unwrap_or(0);
                let rest = 1.1 * market + 0.8 * sectors[xlk] + 0.08 * mult * sqdt * z_rest;
                returns[q][t] = qqq_sum + qqq_rest_w * rest;
            }

            // Advance the state to this session's close.
            let theta = libm::log(REGIME_VOL[r]);
            let z_vol = RHO * z_m + libm::sqrt(1.0 - RHO * RHO) * z_v;
            st.log_vol += KAPPA * (theta - st.log_vol) * DT + XI * sqdt * z_vol;
            if jump != 0.0 {
                st.log_vol += JUMP_VOL_KICK;
            }
            st.log_vol = st.log_vol.clamp(libm::log(0.05), libm::log(1.2));
            st.vrp = VRP_PHI * st.vrp + (1.0 - VRP_PHI) * VRP_MEAN + VRP_SHOCK * z_vrp;
            st.vrp = st.vrp.clamp(-0.15, 0.6);
            st.corr_premium = CORR_PREMIUM_PHI * st.corr_premium
                + (1.0 - CORR_PREMIUM_PHI) * CORR_PREMIUM_MEAN
                + CORR_PREMIUM_SHOCK * z_cp;
            st.corr_premium = st.corr_premium.clamp(-0.1, 0.4);
            st.regime = match st.regime {
                0 if u_regime < P_CALM_TO_NORMAL => 1,
                1 if u_regime < P_NORMAL_TO_CALM => 0,
                1 if u_regime > 1.0 - P_NORMAL_TO_STRESS => 2,
                2 if u_regime < P_STRESS_TO_NORMAL => 1,
                x => x,
            };
            states.push(st);
        }

        // Prices: anchored so that each close on the anchor date is the anchor price.
        let a = sessions
            .iter()
            .position(|d| *d == anchor_date())
            .expect("anchor date is a session");
        let mut close = vec![vec![0.0; n]; nu];
        let mut dividend = vec![vec![0.0; n]; nu];
        for (i, u) in universe.iter().enumerate() {
            if u.kind == Kind::VolIndex {
                for t in 0..n {
                    close[i][t] = vix_level(&states[t]);
                }
                continue;
            }
            // Price log level relative to the anchor, net of dividends: indexes lose the
            // yield continuously, funds and stocks drop by each cash dividend.
            let mut lvl = vec![0.0; n];
            let q = u.div_yield;
            for t in 1..n {
                let mut step = returns[i][t];
                match u.kind {
                    Kind::Index => step -= q * DT,
                    _ if q > 0.0 && is_ex_dividend(u.kind, sessions[t], sessions[t - 1]) => {
                        step += libm::log(1.0 - q / 4.0)
                    }
                    _ => {}
                }
                lvl[t] = lvl[t - 1] + step;
            }
            for t in 0..n {
                close[i][t] = u.anchor_price * libm::exp(lvl[t] - lvl[a]);
            }
            if u.kind != Kind::Index && q > 0.0 {
                for t in 1..n {
                    if is_ex_dividend(u.kind, sessions[t], sessions[t - 1]) {
                        dividend[i][t] = close[i][t - 1] * libm::exp(returns[i][t]) * q / 4.0;
                    }
                }
            }
        }
        MarketPath {
            sessions,
            states,
            returns,
            close,
            dividend,
            loadings,
            iv_scale: Vec::new(),
        }
    }

    pub fn index_of(&self, d: NaiveDate) -> Option<usize> {
        self.sessions.binary_search(&d).ok()
    }
}

/// Factor loadings of every underlying (QQQ aggregated from its components).
fn compute_loadings(universe: &[Underlying]) -> Vec<Loadings> {
    let mut out: Vec<Loadings> = universe
        .iter()
        .map(|u| {
            let mut sector = [0.0; 11];
            if let Some(s) = u.sector {
                sector[s] = u.sector_loading;
            }
            Loadings {
                beta: u.beta,
                sector,
                idio_var: u.idio_vol * u.idio_vol,
                earnings_var: u.earnings_move * u.earnings_move,
            }
        })
        .collect();
    if let Some(q) = universe.iter().position(|u| u.symbol == "QQQ") {
        let rest_w = 1.0 - universe.iter().map(|u| u.qqq_weight).sum::<f64>();
        let xlk = SECTORS.iter().position(|s| *s == "XLK").unwrap_or(0);
        let mut l = Loadings {
            beta: rest_w * 1.1,
            sector: [0.0; 11],
            idio_var: (rest_w * 0.08).powi(2),
            earnings_var: 0.0,
        };
        l.sector[xlk] = rest_w * 0.8;
        for (i, u) in universe.iter().enumerate() {
            if u.qqq_weight > 0.0 {
                l.beta += u.qqq_weight * out[i].beta;
                for s in 0..11 {
                    l.sector[s] += u.qqq_weight * out[i].sector[s];
                }
                l.idio_var += (u.qqq_weight * u.idio_vol).powi(2);
                // Earnings of components spread over the season: per-event variance
                // of the index is the weighted sum (events rarely coincide).
                l.earnings_var += (u.qqq_weight * u.earnings_move).powi(2);
            }
        }
        out[q] = l;
    }
    out
}

/// Expected average market variance over the next `t_years`, from the state (log-OU:
/// E[σ²(s)] = exp(2m(s) + 2v(s)) with m, v the conditional mean and variance of ln σ),
/// plus the regime's jump variance. Averaged with Simpson's rule.
pub fn expected_market_variance(st: &MarketState, t_years: f64) -> f64 {
    let theta = libm::log(REGIME_VOL[st.regime as usize]);
    let point = |s: f64| {
        let e = libm::exp(-KAPPA * s);
        let m = theta + (st.log_vol - theta) * e;
        let v = XI * XI / (2.0 * KAPPA) * (1.0 - e * e);
        libm::exp(2.0 * m + 2.0 * v)
    };
    let t = t_years.max(1e-6);
    let n = 8;
    let h = t / n as f64;
    let mut acc = point(0.0) + point(t);
    for k in 1..n {
        acc += point(k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 };
    }
    let diffusive = acc * h / 3.0 / t;
    let r = st.regime as usize;
    diffusive + JUMP_RATE[r] * (JUMP_MEAN * JUMP_MEAN + JUMP_SD * JUMP_SD)
}

/// The model's fair (no premium) annualized variance of an underlying over `t_years`,
/// counting `earnings_events` scheduled earnings jumps before expiry.
pub fn expected_variance(
    l: &Loadings,
    st: &MarketState,
    t_years: f64,
    earnings_events: u32,
) -> f64 {
    let m2 = st.stress_mult().powi(2);
    let factor = l.beta * l.beta * expected_market_variance(st, t_years)
        + (l.sector
            .iter()
            .zip(SECTOR_VOL)
            .map(|(x, v)| (x * v).powi(2))
            .sum::<f64>()
            + l.idio_var)
            * m2;
    factor + l.earnings_var * earnings_events as f64 / t_years.max(1e-6)
}

/// VIX: the 30-day implied variance of the S&P 500 (ATM, with the premium) lifted by the
/// skew's contribution to a variance swap, in index points.
pub fn vix_level(st: &MarketState) -> f64 {
    let var = expected_market_variance(st, 30.0 / 365.0);
    100.0 * libm::sqrt(var) * (1.0 + st.vrp) * 1.06
}
