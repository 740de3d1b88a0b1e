//! Listed expirations, strikes and quotes of the simulated option chains.

use super::path::{box_muller, expected_variance, is_earnings_day, MarketPath};
use super::universe::{Kind, Listing, Underlying};
use crate::calendar;
use crate::model::{OptionQuote, OptionRight, Price, Settlement};
use crate::pricing::bsm::BsmInputs;
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Weekday};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A listed expiration: its date, the OCC root, and when it stops trading / settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub date: NaiveDate,
    pub root: String,
    /// AM-settled (SPX monthlies: settle on the open of expiry day).
    pub am_settled: bool,
}

/// splitmix64: a tiny, well-mixed hash used to derive per-(date, symbol) streams.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub fn key(seed: u64, d: NaiveDate, symbol: &str, salt: u64) -> u64 {
    let mut h = mix(seed ^ 0xA076_1D64_78BD_642F);
    h = mix(h ^ d.num_days_from_ce() as u64);
    for b in symbol.bytes() {
        h = mix(h ^ b as u64);
    }
    mix(h ^ salt)
}

/// A standard normal that depends only on (seed, date, symbol, salt).
pub fn hash_normal(seed: u64, d: NaiveDate, symbol: &str, salt: u64) -> f64 {
    let h = key(seed, d, symbol, salt);
    let u1 = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = ((mix(h) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    box_muller(u1, u2).0
}

/// The monthly expiration of a month: the third Friday, or the session before it when
/// that Friday is a holiday (e.g. Good Friday).
pub fn monthly_expiry(y: i32, m: u32) -> Option<NaiveDate> {
    let f = NaiveDate::from_weekday_of_month_opt(y, m, Weekday::Fri, 3)?;
    expiry_on_or_before(f)
}

/// The last expiry day on or before `d`: the session on or before it, or past the
/// calendar's last year (a chain quoted in its last weeks lists expiries there) the
/// weekday on or before it, New Year's Day excepted. Without this, a chain quoted near
/// the end of the calendar listed only its 0DTE series.
fn expiry_on_or_before(d: NaiveDate) -> Option<NaiveDate> {
    if d.year() > calendar::LAST_YEAR {
        let mut cur = d;
        while matches!(cur.weekday(), Weekday::Sat | Weekday::Sun) || cur.ordinal() == 1 {
            cur -= Duration::days(1);
        }
        return Some(cur);
    }
    calendar::previous_session_on_or_before(d)
        .ok()
        .map(|s| s.date)
}

/// From which session a symbol listed with dailies lists expirations on a weekday other
/// than Friday (Friday weeklies are every weekly name's). SPX: Wednesdays from
/// 2016-02-23, Mondays from 2016-08-15, Tuesdays from 2022-04-18, Thursdays from
/// 2022-05-11 (Cboe's announcements), so an expiry every session from 2022-05-11. SPY:
/// Wednesdays from 2016-09-07, Mondays from 2018-02-16, Tuesdays and Thursdays from
/// 2022-11-14. QQQ: the other four days from 2022-11-14.
pub fn weekday_series_from(symbol: &str, wd: Weekday) -> Option<NaiveDate> {
    let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
    match (symbol, wd) {
        ("SPX", Weekday::Mon) => ymd(2016, 8, 15),
        ("SPX", Weekday::Tue) => ymd(2022, 4, 18),
        ("SPX", Weekday::Wed) => ymd(2016, 2, 23),
        ("SPX", Weekday::Thu) => ymd(2022, 5, 11),
        ("SPY", Weekday::Mon) => ymd(2018, 2, 16),
        ("SPY", Weekday::Wed) => ymd(2016, 9, 7),
        ("SPY", Weekday::Tue | Weekday::Thu) => ymd(2022, 11, 14),
        ("QQQ", Weekday::Mon | Weekday::Tue | Weekday::Wed | Weekday::Thu) => ymd(2022, 11, 14),
        _ => None,
    }
}

/// The first session from which `symbol` lists an expiry every session (0DTE daily).
pub fn dailies_from(symbol: &str) -> Option<NaiveDate> {
    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu]
        .into_iter()
        .map(|wd| weekday_series_from(symbol, wd))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()
}

/// The effective listing on a date: Friday weeklies from June 2010 (with the other
/// weekdays of [`weekday_series_from`] for a name listed with dailies), monthlies
/// before that. A session without a listed expiry simply has no 0DTE.
fn effective_listing(u: &Underlying, as_of: NaiveDate) -> Listing {
    let weeklies = NaiveDate::from_ymd_opt(2010, 6, 4).expect("date");
    match u.listing {
        Listing::Daily if as_of >= weeklies => Listing::Daily,
        Listing::Weekly if as_of >= weeklies => Listing::Weekly,
        _ => Listing::Monthly,
    }
}

/// Expirations listed on `as_of` within `max_days` calendar days, in date order.
pub fn listed_expiries(
    u: &Underlying,
    as_of: NaiveDate,
    path: &MarketPath,
    t: usize,
    max_days: i64,
) -> Vec<Expiry> {
    let horizon = as_of + Duration::days(max_days);
    let is_spx = u.kind == Kind::Index;
    let pm_root = if is_spx {
        format!("{}W", u.symbol)
    } else {
        u.symbol.clone()
    };
    let mut out: Vec<Expiry> = Vec::new();
    let mut push = |date: NaiveDate, am: bool| {
        if date < as_of || date > horizon || (am && date == as_of) {
            return;
        }
        let root = if am {
            u.symbol.clone()
        } else {
            pm_root.clone()
        };
        if !out.iter().any(|e| e.date == date && e.root == root) {
            out.push(Expiry {
                date,
                root,
                am_settled: am,
            });
        }
    };
    // Monthlies: the next three, quarterlies within a year, January LEAPS beyond.
    let mut y = as_of.year();
    let mut m = as_of.month();
    let mut serial = 0;
    for _ in 0..40 {
        if let Some(e) = monthly_expiry(y, m) {
            if e >= as_of {
                let quarterly = m.is_multiple_of(3) && e <= as_of + Duration::days(366);
                let leaps = m == 1;
                if serial < 3 || quarterly || leaps {
                    push(e, is_spx);
                    if is_spx {
                        push(e, false);
                    }
                }
                serial += 1;
            }
        }
        m += 1;
        if m == 13 {
            m = 1;
            y += 1;
        }
    }
    let listing = effective_listing(u, as_of);
    if matches!(listing, Listing::Weekly | Listing::Daily) {
        // Weeklies: Fridays (the session before when Friday is a holiday), five weeks out.
        let mut d = as_of;
        while d <= as_of + Duration::days(35) {
            if d.weekday() == Weekday::Fri {
                if let Some(e) = expiry_on_or_before(d) {
                    push(e, false);
                }
            }
            d += Duration::days(1);
        }
    }
    if listing == Listing::Daily {
        // The next two weeks' sessions on the weekdays listed by then.
        for s in path.sessions.iter().skip(t).take(10) {
            if weekday_series_from(&u.symbol, s.weekday()).is_some_and(|from| as_of >= from) {
                push(*s, false);
            }
        }
    }
    out.sort_by(|a, b| a.date.cmp(&b.date).then(a.root.cmp(&b.root)));
    out
}

/// Relative premium of implied over expected vol for a name in a state.
pub fn premium(u: &Underlying, vrp: f64, corr_premium: f64) -> f64 {
    match (u.kind, u.symbol.as_str()) {
        (Kind::Stock, _) => 1.0 + 0.45 * vrp + 0.03,
        (_, "QQQ") => (1.0 + vrp) * (1.0 + corr_premium),
        (_, "IWM") => (1.0 + vrp) * (1.0 + 0.5 * corr_premium),
        (Kind::Etf, _) if u.sector.is_some() => (1.0 + 0.8 * vrp) * (1.0 + 0.5 * corr_premium),
        _ => 1.0 + vrp,
    }
}

/// Skew (slope) and smile (curvature) in standardized moneyness.
fn smile_params(u: &Underlying) -> (f64, f64) {
    match u.kind {
        Kind::Stock => (0.12, 0.06),
        Kind::Etf if u.sector.is_some() => (0.22, 0.05),
        _ => (0.25, 0.05),
    }
}

/// The implied vol of a strike: ATM vol times a skewed smile in x = ln(K/F)/(σ√T).
pub fn smile_vol(
    atm: f64,
    skew: f64,
    curvature: f64,
    strike: f64,
    forward: f64,
    t_years: f64,
) -> f64 {
    let x = (libm::log(strike / forward) / (atm * libm::sqrt(t_years.max(1e-8)))).clamp(-6.0, 6.0);
    atm * (1.0 - skew * x + curvature * x * x).clamp(0.5, 3.0)
}

/// Number of earnings events of `symbol` in (as_of, expiry].
pub fn earnings_before(u: &Underlying, path: &MarketPath, t: usize, expiry: NaiveDate) -> u32 {
    if u.earnings_move <= 0.0 {
        return 0;
    }
    let mut n = 0;
    for k in t + 1..path.sessions.len() {
        let d = path.sessions[k];
        if d > expiry {
            break;
        }
        if is_earnings_day(&u.symbol, d, Some(path.sessions[k - 1])) {
            n += 1;
        }
    }
    n
}

/// The model's ATM implied vol of underlying `i` for maturity `t_years`, quoted on
/// session index `t` (from the state at the previous close, with a daily noise).
pub fn atm_vol(
    seed: u64,
    path: &MarketPath,
    u: &Underlying,
    i: usize,
    t: usize,
    t_years: f64,
    earnings: u32,
) -> f64 {
    let st = &path.states[t.saturating_sub(1)];
    let fair = libm::sqrt(expected_variance(&path.loadings[i], st, t_years, earnings));
    let noise_sd = if u.kind == Kind::Stock { 0.03 } else { 0.012 };
    let noise = libm::exp(noise_sd * hash_normal(seed, path.sessions[t], &u.symbol, 7));
    let scale = path
        .iv_scale
        .get(i)
        .and_then(|s| s.get(t))
        .copied()
        .unwrap_or(1.0);
    fair * premium(u, st.vrp, st.corr_premium) * noise * scale
}

fn min_strike_step(u: &Underlying, price: f64) -> f64 {
    if u.kind == Kind::Index {
        return 5.0;
    }
    let penny_etf = u.liquidity_tier == 1 && u.kind == Kind::Etf;
    match price {
        p if p < 25.0 => 0.5,
        p if p < 200.0 => 1.0,
        _ if penny_etf => 1.0,
        p if p < 500.0 => 2.5,
        p if p < 1000.0 => 5.0,
        _ => 10.0,
    }
}

fn nice_step(min: f64, wanted: f64) -> f64 {
    const NICE: [f64; 11] = [
        0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
    ];
    NICE.iter()
        .copied()
        .find(|s| *s >= min && *s >= wanted)
        .unwrap_or(1000.0)
}

/// The strikes listed for one expiry: a grid around the forward spanning about −4 and
/// +3 standard deviations, on the listing's strike step.
pub fn strikes(u: &Underlying, spot: f64, forward: f64, atm: f64, t_years: f64) -> Vec<f64> {
    let s = (atm * libm::sqrt(t_years)).max(0.015);
    let lower = (forward * libm::exp(-4.0 * s)).max(0.2 * forward);
    let upper = (forward * libm::exp(3.0 * s)).min(2.5 * forward);
    // Short-dated expiries of the daily-listed names carry the dense strikes the 0DTE
    // trade uses (SPX 5 points apart near the money, SPY and QQQ 1 dollar).
    let max_n = if u.listing == Listing::Daily && t_years < 8.0 / 365.0 {
        140.0
    } else if u.listing == Listing::Daily {
        70.0
    } else {
        36.0
    };
    let step = nice_step(min_strike_step(u, spot), (upper - lower) / max_n);
    let first = (lower / step).ceil() as i64;
    let last = (upper / step).floor() as i64;
    (first.max(1)..=last).map(|k| k as f64 * step).collect()
}

/// Quote one contract. The midpoint is the model price (for American-style contracts,
/// never below intrinsic); the spread widens for cheap and far-from-the-money contracts.
#[allow(clippy::too_many_arguments)]
fn quote(
    u: &Underlying,
    exp: &Expiry,
    right: OptionRight,
    strike: f64,
    spot: f64,
    t_years: f64,
    rate: f64,
    q: f64,
    vol: f64,
    x: f64,
    rng: &mut ChaCha8Rng,
) -> OptionQuote {
    let inputs = BsmInputs {
        right,
        spot,
        strike,
        t_years,
        rate,
        div_yield: q,
        vol,
    };
    let european = u.kind == Kind::Index;
    let intrinsic = match right {
        OptionRight::Call => (spot - strike).max(0.0),
        OptionRight::Put => (strike - spot).max(0.0),
    };
    let theo = if european {
        inputs.price()
    } else {
        inputs.price().max(intrinsic)
    };
    let tick = match (u.kind, u.liquidity_tier) {
        (Kind::Index, _) => {
            if theo < 3.0 {
                0.05
            } else {
                0.10
            }
        }
        (Kind::Etf, 1) => 0.01,
        _ => {
            if theo < 3.0 {
                0.01
            } else {
                0.05
            }
        }
    };
    let (base, rel) = match (u.kind, u.liquidity_tier) {
        (Kind::Index, _) => (0.10, 0.004),
        (_, 1) => (0.01, 0.006),
        (_, 2) => (0.03, 0.012),
        _ => (0.05, 0.02),
    };
    let widen = 1.0 + 0.35 * x.abs() + if t_years > 0.5 { 0.5 } else { 0.0 };
    let raw = (base + rel * theo) * widen;
    let spread_ticks = (libm::ceil(raw / tick) as i64).max(1);
    let mid_ticks = theo / tick;
    let mut bid_ticks = libm::floor(mid_ticks - spread_ticks as f64 / 2.0) as i64;
    if bid_ticks < 0 {
        bid_ticks = 0;
    }
    let mut ask_ticks = (bid_ticks + spread_ticks).max(libm::ceil(mid_ticks) as i64);
    if ask_ticks <= bid_ticks {
        ask_ticks = bid_ticks + 1;
    }
    let to_price =
        |n: i64| Price::from_raw(libm::round(n as f64 * tick * Price::SCALE as f64) as i64);
    let (vol_base, max_size) = match (u.kind, u.listing, u.liquidity_tier) {
        (_, Listing::Daily, _) => (6000.0, 500),
        (_, _, 1) => (1500.0, 300),
        (_, _, 2) => (250.0, 100),
        _ => (60.0, 50),
    };
    let lognormal = |rng: &mut ChaCha8Rng, sd: f64| {
        let (z, _) = box_muller(1.0 - rng.random::<f64>(), rng.random::<f64>());
        libm::exp(sd * z - 0.5 * sd * sd)
    };
    let term = 1.0 / (1.0 + 6.0 * t_years);
    let volume = (vol_base * libm::exp(-0.5 * x * x) * term * lognormal(rng, 0.9)).floor() as i64;
    let oi = (vol_base * 6.0 * libm::exp(-0.25 * x * x) * lognormal(rng, 0.7)).floor() as i64;
    let bid_size = if bid_ticks == 0 {
        0
    } else {
        rng.random_range(1..=max_size)
    };
    let ask_size = rng.random_range(1..=max_size);
    OptionQuote {
        underlying: u.symbol.clone(),
        root: exp.root.clone(),
        expiry: exp.date,
        strike: Price::from_f64(strike),
        right,
        settlement: if european {
            Settlement::Cash
        } else {
            Settlement::Physical
        },
        bid: to_price(bid_ticks),
        ask: to_price(ask_ticks),
        bid_size,
        ask_size,
        volume,
        open_interest: oi,
        underlying_price: Price::from_f64(spot),
        source_iv: Some(vol),
    }
}

/// Years from `from` (New York local) to an expiry's settlement, ACT/365.
pub fn years_to_expiry(from: NaiveDateTime, exp: &Expiry) -> f64 {
    crate::pricing::years_to_settlement(from, exp.date, exp.am_settled)
}

/// The whole chain of one underlying at `quote_time` on session index `t`.
#[allow(clippy::too_many_arguments)]
pub fn chain(
    seed: u64,
    path: &MarketPath,
    u: &Underlying,
    i: usize,
    t: usize,
    quote_time: NaiveDateTime,
    spot: f64,
    rate: f64,
    q: f64,
    max_days: i64,
) -> Vec<OptionQuote> {
    let as_of = path.sessions[t];
    let mut rng = ChaCha8Rng::seed_from_u64(key(seed, as_of, &u.symbol, 99));
    let (skew, curv) = smile_params(u);
    let mut out = Vec::new();
    for exp in listed_expiries(u, as_of, path, t, max_days) {
        // A series that has settled by the snapshot is no longer listed.
        if crate::pricing::settlement_time(exp.date, exp.am_settled) <= quote_time {
            continue;
        }
        let t_years = years_to_expiry(quote_time, &exp);
        let earnings = earnings_before(u, path, t, exp.date);
        let atm = atm_vol(seed, path, u, i, t, t_years, earnings);
        let forward = spot * libm::exp((rate - q) * t_years);
        for k in strikes(u, spot, forward, atm, t_years) {
            let vol = smile_vol(atm, skew, curv, k, forward, t_years);
            let x = libm::log(k / forward) / (atm * libm::sqrt(t_years));
            for right in [OptionRight::Call, OptionRight::Put] {
                out.push(quote(
                    u, &exp, right, k, spot, t_years, rate, q, vol, x, &mut rng,
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn monthly_expiry_moves_off_good_friday() {
        assert_eq!(monthly_expiry(2025, 3), Some(d("2025-03-21")));
        // 2025-04-18 is Good Friday: the April monthly expires on Thursday.
        assert_eq!(monthly_expiry(2025, 4), Some(d("2025-04-17")));
    }

    #[test]
    fn zero_dte_expiries_follow_the_listing_history() {
        let sim = super::super::Sim::new(42);
        let has_0dte = |sym: &str, day: &str| {
            let i = sim.universe.iter().position(|u| u.symbol == sym).unwrap();
            let t = sim.path.index_of(d(day)).unwrap();
            listed_expiries(&sim.universe[i], d(day), &sim.path, t, 10)
                .iter()
                .any(|e| e.date == d(day))
        };
        // SPX: Mon/Wed/Fri before 2022-04-18, Tuesdays from then, every session from
        // 2022-05-11 (its first Thursday was 2022-05-12).
        assert!(!has_0dte("SPX", "2022-04-12")); // a Tuesday
        assert!(has_0dte("SPX", "2022-04-11") && has_0dte("SPX", "2022-04-13"));
        assert!(has_0dte("SPX", "2022-05-10") && !has_0dte("SPX", "2022-05-05"));
        assert!(has_0dte("SPX", "2022-05-12"));
        assert_eq!(dailies_from("SPX"), Some(d("2022-05-11")));
        // Before Wednesdays were listed (2016-02-23): Fridays only.
        assert!(!has_0dte("SPX", "2016-02-17") && has_0dte("SPX", "2016-03-02"));
        // SPY and QQQ: from 2022-11-14.
        for sym in ["SPY", "QQQ"] {
            assert!(!has_0dte(sym, "2022-11-10"), "{sym}"); // a Thursday
            assert!(
                has_0dte(sym, "2022-11-15") && has_0dte(sym, "2022-11-17"),
                "{sym}"
            );
        }
        assert!(has_0dte("SPY", "2022-11-09") && !has_0dte("QQQ", "2022-11-09"));
        // A weekly-only name never has a Tuesday expiry.
        assert!(!has_0dte("IWM", "2025-03-11"));
    }

    #[test]
    fn smile_has_put_skew() {
        let atm = 0.16;
        let put_wing = smile_vol(atm, 0.3, 0.05, 90.0, 100.0, 30.0 / 365.0);
        let call_wing = smile_vol(atm, 0.3, 0.05, 110.0, 100.0, 30.0 / 365.0);
        assert!(put_wing > atm && call_wing < put_wing);
        assert!((smile_vol(atm, 0.3, 0.05, 100.0, 100.0, 0.1) - atm).abs() < 1e-15);
    }

    #[test]
    fn hash_normal_is_stable_and_standard() {
        let a = hash_normal(42, d("2025-03-14"), "SPY", 1);
        assert_eq!(a, hash_normal(42, d("2025-03-14"), "SPY", 1));
        assert_ne!(a, hash_normal(43, d("2025-03-14"), "SPY", 1));
        let n = 20_000;
        let xs: Vec<f64> = (0..n)
            .map(|k| hash_normal(1, d("2025-03-14"), "X", k))
            .collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
