//! `sim` — the embedded default source: a seeded, deterministic synthetic market.
//!
//! One path of every session 2000–2035 is drawn per seed ([`path`]) and cached for the
//! process; a day's bars and chains are then pure functions of (seed, date, time of
//! day, symbol) ([`chain`]). The same seed and date give the same data on any machine.
//!
//! With `[sim] underlying = "bars"` the symbols with imported daily bars follow them and
//! the index's implied-vol level follows imported VIX bars ([`bars`]); [`provenance`]
//! says which parts of a run's market are real and which modelled.

pub mod bars;
pub mod calibration;
pub mod chain;
pub mod minute;
pub mod path;
pub mod universe;

use super::{MarketData, Snapshot, SourceError, UnderlyingQuote};
use crate::model::{DailyBar, Price};
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use path::{expected_variance, MarketPath, DT};
use std::sync::{Arc, Mutex, OnceLock};
use universe::{Kind, Underlying};

pub struct Sim {
    pub seed: u64,
    pub universe: Vec<Underlying>,
    pub path: Arc<MarketPath>,
    /// The imported daily bars the path follows (`[sim] underlying = "bars"`).
    pub real: Option<Arc<bars::RealBars>>,
}

/// Paths are expensive enough (≈9,000 sessions × 73 names) to draw once per process.
type PathCache = Mutex<Vec<(u64, Arc<MarketPath>)>>;

fn path_cache() -> &'static PathCache {
    static CACHE: OnceLock<PathCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Vec::new()))
}

/// Approximate historical policy rate (mid-year effective fed funds, percent), linearly
/// interpolated between years; flat after the last entry.
const RATE_BY_YEAR: &[(i32, f64)] = &[
    (2000, 6.2),
    (2001, 3.9),
    (2002, 1.7),
    (2003, 1.1),
    (2004, 1.35),
    (2005, 3.2),
    (2006, 5.0),
    (2007, 5.0),
    (2008, 1.9),
    (2009, 0.16),
    (2010, 0.18),
    (2011, 0.1),
    (2012, 0.14),
    (2013, 0.11),
    (2014, 0.09),
    (2015, 0.13),
    (2016, 0.4),
    (2017, 1.0),
    (2018, 1.8),
    (2019, 2.2),
    (2020, 0.4),
    (2021, 0.08),
    (2022, 1.7),
    (2023, 5.0),
    (2024, 5.15),
    (2025, 4.3),
    (2026, 3.6),
];

/// The simulated risk-free rate on a date, continuously compounded.
pub fn rate_on(d: NaiveDate) -> f64 {
    let x = d.year() as f64 + (d.ordinal() as f64 - 182.0) / 365.0;
    let mut pct = RATE_BY_YEAR.last().map(|r| r.1).unwrap_or(0.0);
    if x <= RATE_BY_YEAR[0].0 as f64 {
        pct = RATE_BY_YEAR[0].1;
    }
    for w in RATE_BY_YEAR.windows(2) {
        let (y0, r0) = w[0];
        let (y1, r1) = w[1];
        if x >= y0 as f64 && x < y1 as f64 {
            pct = r0 + (r1 - r0) * (x - y0 as f64);
        }
    }
    libm::log1p(pct / 100.0)
}

impl Sim {
    pub fn new(seed: u64) -> Sim {
        let universe = universe::default_universe();
        let mut cache = path_cache().lock().unwrap_or_else(|e| e.into_inner());
        let path = match cache.iter().find(|(s, _)| *s == seed) {
            Some((_, p)) => p.clone(),
            None => {
                let p = Arc::new(MarketPath::generate(seed, &universe));
                cache.push((seed, p.clone()));
                p
            }
        };
        Sim {
            seed,
            universe,
            path,
            real: None,
        }
    }

    /// The simulated market over the daily bars of `archive_bars` in the store `conn`
    /// is open on (`[sim] underlying = "bars"`, see [`bars`]).
    pub fn with_bars(seed: u64, conn: &duckdb::Connection) -> Result<Sim, SourceError> {
        let base = Sim::new(seed);
        let (path, real) = bars::path_with_bars(seed, &base.path, &base.universe, conn)?;
        Ok(Sim {
            path,
            real: Some(real),
            ..base
        })
    }

    /// The sim `config` describes (`[sim] seed` and `underlying`).
    pub fn from_config(
        config: &crate::config::Config,
        conn: &duckdb::Connection,
    ) -> Result<Sim, SourceError> {
        match config.desk.sim.underlying {
            crate::config::SimUnderlying::Model => Ok(Sim::new(config.desk.sim.seed)),
            crate::config::SimUnderlying::Bars => Sim::with_bars(config.desk.sim.seed, conn),
        }
    }

    /// The imported bar of underlying `i` on session `t`, when it follows bars.
    fn real_bar(&self, i: usize, t: usize) -> Option<&bars::Bar> {
        self.real.as_ref()?.of(i)?.bars.get(&t)
    }

    fn index(&self, symbol: &str) -> Result<usize, SourceError> {
        self.universe
            .iter()
            .position(|u| u.symbol == symbol)
            .ok_or_else(|| SourceError::UnknownSymbol {
                source_name: "sim",
                symbol: symbol.to_string(),
            })
    }

    fn session_index(&self, d: NaiveDate) -> Result<usize, SourceError> {
        self.path.index_of(d).ok_or_else(|| SourceError::NoData {
            source_name: "sim",
            date: d,
            reason: "not an NYSE session".into(),
        })
    }

    /// Continuously compounded dividend yield the sim prices with.
    pub fn div_yield(&self, u: &Underlying) -> f64 {
        libm::log1p(u.div_yield)
    }

    /// Daily stdev of the log price of underlying `i` on session `t`.
    fn day_sd(&self, i: usize, t: usize) -> f64 {
        if self.universe[i].kind == Kind::VolIndex {
            return 0.07;
        }
        let st = &self.path.states[t.saturating_sub(1)];
        libm::sqrt(expected_variance(&self.path.loadings[i], st, DT, 0) * DT)
    }

    /// The minute path of underlying `i` on session `t` and the price its log values
    /// are relative to (the previous close for a modelled day, 1 for a day that follows
    /// an imported bar): dollars are `base × e^x`.
    pub fn minute_path(&self, i: usize, t: usize) -> (minute::MinutePath, f64) {
        let d = self.path.sessions[t];
        let symbol = &self.universe[i].symbol;
        if let Some(b) = self.real_bar(i, t) {
            let p = minute::following_bar(self.seed, d, symbol, (b.open, b.high, b.low, b.close));
            return (p, 1.0);
        }
        let close = &self.path.close[i];
        if t == 0 {
            let (open_time, n) = minute::session_minutes(d)
                .unwrap_or_else(|| (d.and_time(chrono::NaiveTime::MIN), 390));
            let flat = minute::LogBar {
                open: 0.0,
                high: 0.0,
                low: 0.0,
                close: 0.0,
            };
            let p = minute::MinutePath {
                open_time,
                points: vec![0.0; n + 1],
                bars: vec![flat; n],
            };
            return (p, close[0]);
        }
        let prev = close[t - 1];
        let day_log = libm::log(close[t] / prev);
        // Funds that track the same index share its intraday path.
        let path_key = match symbol.as_str() {
            "SPY" | "VOO" => "SPX",
            s => s,
        };
        let p = minute::modelled(self.seed, d, path_key, day_log, self.day_sd(i, t));
        (p, prev)
    }

    /// The price of `symbol` at `time` (New York) on its session, as a chain snapshot at
    /// that time gets it (the close of the last bar completed by then), in dollars
    /// before rounding: what a quote derived from the underlying (a future's fair value
    /// off SPX) starts from.
    pub fn price_at(&self, symbol: &str, time: NaiveDateTime) -> Result<f64, SourceError> {
        let i = self.index(symbol)?;
        let t = self.session_index(time.date())?;
        let (p, base) = self.minute_path(i, t);
        Ok(base * libm::exp(p.at(time)))
    }

    /// The modelled daily volume of underlying `i` on session `t` (0 for indices).
    fn day_volume(&self, i: usize, t: usize) -> i64 {
        let u = &self.universe[i];
        let d = self.path.sessions[t];
        let close = self.path.close[i][t];
        let sd = self.day_sd(i, t);
        let surprise = if t > 0 {
            (libm::log(close / self.path.close[i][t - 1]) / sd.max(1e-9)).abs()
        } else {
            0.0
        };
        let base = match (u.kind, u.liquidity_tier) {
            (Kind::Index | Kind::VolIndex, _) => 0.0,
            (_, 1) => 60e6,
            (_, 2) => 8e6,
            _ => 3e6,
        };
        let noise = libm::exp(0.3 * chain::hash_normal(self.seed, d, &u.symbol, 11));
        (base * noise * (1.0 + 0.4 * surprise)).round() as i64
    }

    /// The true 30-day ATM implied vol the sim quotes for a symbol on a session.
    pub fn atm_iv_30d(&self, symbol: &str, d: NaiveDate) -> Result<f64, SourceError> {
        let i = self.index(symbol)?;
        let t = self.session_index(d)?;
        let u = &self.universe[i];
        let horizon = d + Duration::days(30);
        let earnings = chain::earnings_before(u, &self.path, t, horizon);
        Ok(chain::atm_vol(
            self.seed,
            &self.path,
            u,
            i,
            t,
            30.0 / 365.0,
            earnings,
        ))
    }
}

/// Which parts of the market a run with `config` trades on are real and which
/// modelled, in a sentence or two for a report (the backtest's tearsheet). `conn` is
/// the store the run read (its `archive_bars`), when there is one.
pub fn provenance(config: &crate::config::Config, conn: Option<&duckdb::Connection>) -> String {
    use crate::config::{SimUnderlying, SourceKind};
    let seed = config.desk.sim.seed;
    match (config.desk.desk.source, config.desk.sim.underlying) {
        (SourceKind::Sim, SimUnderlying::Model) => format!(
            "Everything is modelled: the simulated market (seed {seed}) draws the underlyings' paths, the implied-vol levels and every option quote; no price is real."
        ),
        (SourceKind::Sim, SimUnderlying::Bars) => match conn.map(|c| Sim::with_bars(seed, c)) {
            Some(Ok(sim)) => match &sim.real {
                Some(real) => bars::describe(&sim.universe, real),
                None => String::new(),
            },
            Some(Err(e)) => format!(
                "Modelled chains over real prices ([sim] underlying = \"bars\", seed {seed}), but the imported bars cannot be read: {e}"
            ),
            None => format!(
                "Modelled chains over real prices ([sim] underlying = \"bars\", seed {seed}): the symbols with imported daily bars follow them and the index's implied-vol level follows imported VIX bars; every option quote, and the symbols without bars, are modelled."
            ),
        },
        (SourceKind::Replay, _) => "Real: the option quotes and underlying prices imported into the archive (`optdesk import`), replayed as the vendor's end-of-day snapshots; nothing is modelled.".into(),
        (live, _) => format!(
            "Real: the {} source's quotes as fetched on each session; nothing is modelled.",
            match live {
                SourceKind::Cboe => "cboe",
                SourceKind::Yahoo => "yahoo",
                _ => "ibkr",
            }
        ),
    }
}

fn cents(x: f64) -> Price {
    Price::from_cents(libm::round(x * 100.0) as i64)
}

impl MarketData for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn default_symbols(&self) -> Vec<String> {
        self.universe.iter().map(|u| u.symbol.clone()).collect()
    }

    fn snapshot(
        &self,
        quote_time: NaiveDateTime,
        symbols: &[String],
        max_expiry_days: u32,
    ) -> Result<Snapshot, SourceError> {
        let as_of = quote_time.date();
        let t = self.session_index(as_of)?;
        let rate = rate_on(as_of);
        let idx: Vec<usize> = symbols
            .iter()
            .map(|s| self.index(s))
            .collect::<Result<_, _>>()?;
        if let Some(real) = &self.real {
            for &i in &idx {
                real.bar(&self.universe[i], i, t, as_of)?;
            }
        }
        let per_symbol = |&i: &usize| {
            let u = &self.universe[i];
            // The chain's spot is the minute path's price at the snapshot: at 10:30, the
            // close of the 10:29 bar.
            let (p, base) = self.minute_path(i, t);
            let spot = cents(base * libm::exp(p.at(quote_time)));
            let q = if u.kind == Kind::VolIndex {
                0.0
            } else {
                self.div_yield(u)
            };
            let uq = UnderlyingQuote {
                symbol: u.symbol.clone(),
                price: spot,
                rate,
                div_yield: q,
            };
            let quotes = if u.kind == Kind::VolIndex {
                Vec::new()
            } else {
                chain::chain(
                    self.seed,
                    &self.path,
                    u,
                    i,
                    t,
                    quote_time,
                    spot.to_f64(),
                    rate,
                    q,
                    max_expiry_days as i64,
                )
            };
            (uq, quotes)
        };
        // Chains are independent: build them on every core, then keep the input order.
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        let chunk = idx.len().div_ceil(threads.max(1)).max(1);
        let parts: Vec<Vec<(UnderlyingQuote, Vec<crate::model::OptionQuote>)>> =
            std::thread::scope(|s| {
                let handles: Vec<_> = idx
                    .chunks(chunk)
                    .map(|c| s.spawn(move || c.iter().map(per_symbol).collect::<Vec<_>>()))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("chain worker panicked"))
                    .collect()
            });
        let mut underlyings = Vec::with_capacity(idx.len());
        let mut quotes = Vec::new();
        for (uq, q) in parts.into_iter().flatten() {
            underlyings.push(uq);
            quotes.extend(q);
        }
        Ok(Snapshot {
            as_of,
            quote_time,
            underlyings,
            quotes,
            notes: Vec::new(),
            rejects: Vec::new(),
        })
    }

    fn daily_bars(
        &self,
        symbols: &[String],
        dates: &[NaiveDate],
    ) -> Result<Vec<DailyBar>, SourceError> {
        let idx: Vec<usize> = symbols
            .iter()
            .map(|s| self.index(s))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(idx.len() * dates.len());
        for d in dates {
            let Some(t) = self.path.index_of(*d) else {
                continue;
            };
            for &i in &idx {
                let u = &self.universe[i];
                if let Some(real) = &self.real {
                    if real.of(i).is_some() {
                        // Only the days it has a bar: never a modelled one in between.
                        if let Some(b) = self.real_bar(i, t) {
                            out.push(DailyBar {
                                date: *d,
                                symbol: u.symbol.clone(),
                                open: Price::from_f64(b.open),
                                high: Price::from_f64(b.high),
                                low: Price::from_f64(b.low),
                                close: Price::from_f64(b.close),
                                volume: b.volume,
                                dividend: Price::from_f64(b.dividend),
                                split_ratio: b.split_ratio,
                            });
                        }
                        continue;
                    }
                }
                let (p, base) = self.minute_path(i, t);
                let dollars = |x: f64| base * libm::exp(x);
                let (o, h, l) = (dollars(p.points[0]), dollars(p.high()), dollars(p.low()));
                let close = self.path.close[i][t];
                let volume = self.day_volume(i, t);
                let (o, c) = (cents(o), cents(close));
                out.push(DailyBar {
                    date: *d,
                    symbol: u.symbol.clone(),
                    open: o,
                    high: cents(h).max(o).max(c),
                    low: cents(l).min(o).min(c),
                    close: c,
                    volume,
                    dividend: Price::from_f64(self.path.dividend[i][t]),
                    split_ratio: 1.0,
                });
            }
        }
        Ok(out)
    }

    fn minute_bars(
        &self,
        symbols: &[String],
        session: NaiveDate,
        until: NaiveDateTime,
    ) -> Result<Vec<super::IntradayBar>, SourceError> {
        let t = self.session_index(session)?;
        let mut out = Vec::new();
        for s in symbols {
            let i = self.index(s)?;
            let real = match &self.real {
                Some(r) => r.bar(&self.universe[i], i, t, session)?,
                None => None,
            };
            let (p, base) = self.minute_path(i, t);
            // Prices as the daily bars give them: cents for a modelled day, the imported
            // bar's precision for a real one.
            let price = |x: f64| match real {
                Some(_) => Price::from_f64(base * libm::exp(x)).to_f64(),
                None => cents(base * libm::exp(x)).to_f64(),
            };
            let n = p.bars.len();
            let day_volume = real.map_or_else(|| self.day_volume(i, t), |b| b.volume);
            let weights = minute::volume_weights(n);
            let mut volumes: Vec<i64> = weights
                .iter()
                .map(|w| (day_volume as f64 * w).floor() as i64)
                .collect();
            let rest = day_volume - volumes.iter().sum::<i64>();
            if let Some(last) = volumes.last_mut() {
                *last += rest;
            }
            for (k, b) in p.bars.iter().enumerate() {
                let time = p.open_time + Duration::minutes(k as i64);
                if time + Duration::minutes(1) > until {
                    break;
                }
                let mut close = price(b.close);
                if k + 1 == n && real.is_none() && t > 0 {
                    // The day's close itself, not its logarithm's round trip.
                    close = cents(self.path.close[i][t]).to_f64();
                }
                let (open, close) = (price(b.open), close);
                out.push(super::IntradayBar {
                    symbol: s.clone(),
                    time,
                    open,
                    high: price(b.high).max(open).max(close),
                    low: price(b.low).min(open).min(close),
                    close,
                    volume: volumes[k],
                });
            }
        }
        Ok(out)
    }

    fn earnings_dates(
        &self,
        symbols: &[String],
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Option<Vec<(String, NaiveDate)>>, SourceError> {
        let mut out = Vec::new();
        for s in symbols {
            let i = self.index(s)?;
            if self.universe[i].earnings_move <= 0.0 {
                continue;
            }
            let sessions = &self.path.sessions;
            let first = sessions.partition_point(|d| *d < from);
            for k in first..sessions.len() {
                let d = sessions[k];
                if d > to {
                    break;
                }
                let prev = k.checked_sub(1).map(|j| sessions[j]);
                if path::is_earnings_day(s, d, prev) {
                    out.push((s.clone(), d));
                }
            }
        }
        Ok(Some(out))
    }

    /// Fair value with carry off the index the product follows (SPX for MES), at the
    /// index's price at `at` (the price the snapshot at `at` gives): index ×
    /// e^{(r − q) t}, t the years from `at` to the contract's expiry's close, on the
    /// tick, one tick wide.
    fn future_quote(
        &self,
        contract: &crate::model::instrument::FuturesContract,
        at: NaiveDateTime,
    ) -> Result<Option<(Price, Price, Price)>, SourceError> {
        let Some(p) = crate::trading::futures::product(&contract.root) else {
            return Ok(None);
        };
        let i = self.index(p.index)?;
        let as_of = at.date();
        // The index's price at `at`, as the snapshot at `at` prices it.
        let index = self.price_at(p.index, at)?;
        let close = crate::calendar::session(contract.expiry)
            .ok()
            .flatten()
            .map_or(contract.expiry.and_hms_opt(16, 0, 0), |s| {
                Some(contract.expiry.and_time(s.close))
            })
            .unwrap_or(at);
        let years = (close - at).num_seconds().max(0) as f64 / (365.0 * 86_400.0);
        let q = self.div_yield(&self.universe[i]);
        Ok(Some(crate::trading::futures::fair_quote(
            cents(index).to_f64(),
            rate_on(as_of),
            q,
            years,
            p.tick,
        )))
    }

    fn atm_iv_history(
        &self,
        symbols: &[String],
        dates: &[NaiveDate],
    ) -> Result<Option<Vec<super::IvPoint>>, SourceError> {
        let mut out = Vec::new();
        for s in symbols {
            let i = self.index(s)?;
            if self.universe[i].kind == Kind::VolIndex {
                continue;
            }
            for d in dates {
                if self.path.index_of(*d).is_some_and(|t| t > 0) {
                    out.push((*d, s.clone(), self.atm_iv_30d(s, *d)?));
                }
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;

    fn at(d: &str, h: u32, m: u32) -> NaiveDateTime {
        NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .unwrap()
            .and_time(NaiveTime::from_hms_opt(h, m, 0).unwrap())
    }

    #[test]
    fn anchored_prices_and_rates_look_like_2025() {
        let sim = Sim::new(42);
        let d = path::anchor_date();
        let bars = sim.daily_bars(&["SPY".into(), "SPX".into()], &[d]).unwrap();
        assert_eq!(bars[0].close, Price::from_f64(584.64));
        assert_eq!(bars[1].close, Price::from_f64(5868.55));
        let r = rate_on(d);
        assert!(r > 0.035 && r < 0.05, "{r}");
    }

    #[test]
    fn same_seed_same_chain_other_seed_other_chain() {
        let syms = vec!["SPY".to_string(), "AAPL".to_string()];
        let a = Sim::new(42)
            .snapshot(at("2025-03-14", 9, 35), &syms, 60)
            .unwrap();
        let b = Sim::new(42)
            .snapshot(at("2025-03-14", 9, 35), &syms, 60)
            .unwrap();
        let c = Sim::new(7)
            .snapshot(at("2025-03-14", 9, 35), &syms, 60)
            .unwrap();
        assert_eq!(a.quotes, b.quotes);
        assert_ne!(a.underlyings[0].price, c.underlyings[0].price);
    }

    #[test]
    fn minute_bars_make_the_daily_bar_and_the_chain_spot() {
        let sim = Sim::new(42);
        let syms = vec!["SPY".to_string(), "AAPL".to_string(), "VIX".to_string()];
        let day = NaiveDate::from_ymd_opt(2025, 3, 14).unwrap();
        let bars = sim
            .minute_bars(&syms, day, at("2025-03-14", 16, 0))
            .unwrap();
        assert_eq!(
            bars,
            sim.minute_bars(&syms, day, at("2025-03-14", 16, 0))
                .unwrap()
        );
        assert_ne!(
            bars,
            Sim::new(7)
                .minute_bars(&syms, day, at("2025-03-14", 16, 0))
                .unwrap()
        );
        let daily = sim.daily_bars(&syms, &[day]).unwrap();
        for (s, d) in syms.iter().zip(&daily) {
            let b: Vec<_> = bars.iter().filter(|b| &b.symbol == s).collect();
            assert_eq!(b.len(), 390, "{s}");
            assert_eq!(b[0].time, at("2025-03-14", 9, 30));
            assert_eq!(Price::from_f64(b[0].open), d.open, "{s}");
            assert_eq!(Price::from_f64(b[389].close), d.close, "{s}");
            let hi = b.iter().map(|x| x.high).fold(f64::MIN, f64::max);
            let lo = b.iter().map(|x| x.low).fold(f64::MAX, f64::min);
            assert_eq!(
                (Price::from_f64(hi), Price::from_f64(lo)),
                (d.high, d.low),
                "{s}"
            );
            assert_eq!(b.iter().map(|x| x.volume).sum::<i64>(), d.volume, "{s}");
            for w in b.windows(2) {
                assert_eq!(w[0].close, w[1].open);
            }
        }
        // At 10:30: the bars through 10:29, whose close is the chain's spot.
        let upto = sim
            .minute_bars(&syms[..1], day, at("2025-03-14", 10, 30))
            .unwrap();
        assert_eq!(upto.len(), 60);
        let snap = sim
            .snapshot(at("2025-03-14", 10, 30), &syms[..1], 3)
            .unwrap();
        assert_eq!(snap.underlyings[0].price.to_f64(), upto[59].close);
        let spy = sim.price_at("SPY", at("2025-03-14", 10, 30)).unwrap();
        assert_eq!(cents(spy), snap.underlyings[0].price);
    }

    #[test]
    fn chain_is_sane() {
        let sim = Sim::new(42);
        let snap = sim
            .snapshot(at("2025-03-14", 9, 35), &["SPY".to_string()], 400)
            .unwrap();
        let q = &snap.quotes;
        assert!(q.len() > 500, "{}", q.len());
        // Dailies: a 0DTE expiry is listed.
        assert!(q.iter().any(|x| x.expiry == snap.as_of));
        for x in q {
            x.check(snap.as_of).unwrap();
            assert!(x.bid <= x.ask, "{x:?}");
            assert!(x.ask.is_positive());
        }
        // Spreads widen far from the money.
        let spot = snap.underlyings[0].price.to_f64();
        let near: Vec<_> = q
            .iter()
            .filter(|x| (x.strike.to_f64() / spot - 1.0).abs() < 0.01 && x.expiry > snap.as_of)
            .collect();
        assert!(!near.is_empty());
        // Put skew: a 10% OTM put has a higher vol than a 10% OTM call, same expiry.
        let e = q
            .iter()
            .map(|x| x.expiry)
            .filter(|e| (*e - snap.as_of).num_days() > 25)
            .min()
            .unwrap();
        let vol_at = |k: f64, r| {
            q.iter()
                .filter(|x| x.expiry == e && x.right == r)
                .min_by(|a, b| {
                    (a.strike.to_f64() - k)
                        .abs()
                        .total_cmp(&(b.strike.to_f64() - k).abs())
                })
                .and_then(|x| x.source_iv)
                .unwrap()
        };
        assert!(
            vol_at(spot * 0.9, crate::model::OptionRight::Put)
                > vol_at(spot * 1.1, crate::model::OptionRight::Call)
        );
    }
}
