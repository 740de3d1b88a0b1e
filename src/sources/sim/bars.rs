//! Modelled chains over real prices (`[sim] underlying = "bars"`).
//!
//! The simulated market's path is the seeded one, with three things taken from the
//! daily bars `optdesk import` loaded into `archive_bars`:
//!
//! * **Underlyings.** Every symbol of the universe that has imported bars (under its own
//!   name, or `^NAME` for an index) trades at them: the day's open, high, low and close,
//!   its cash dividends, its volume; an intraday snapshot lies on a bridge from the open
//!   to the close inside the day's range. A session with no bar for such a symbol, inside
//!   or outside its bars' range, is an error naming the range its bars cover (never a
//!   modelled price spliced into a real series). Symbols without bars keep the model's
//!   path.
//! * **The index's implied-vol level.** On each session with an imported VIX bar (`VIX`
//!   or `^VIX`) the market's volatility state after the close is set so that the model's
//!   VIX equals the real close: the regime from the VIX level (calm below 12.7, stressed
//!   from 21.1), the log-vol solved for. The next session's chains are quoted from that
//!   state, so the index's 30-day ATM vol is about VIX / 1.06 (the model's variance-swap
//!   skew lift), and every other name's market part moves with it. Without VIX bars the
//!   state stays the seeded path's.
//! * **Single names' vol levels.** A stock with bars has its implied vols scaled by the
//!   ratio of its realized vol over the previous 63 sessions of its bars to the model's
//!   fair 3-month vol of it (within 0.5 to 2.5), so a name that really moved more than
//!   the model's calibration quotes higher vols; the shape (skew, term structure,
//!   earnings) stays the model's.
//! * **Everything else is the surface model's**: skew and smile, the term structure
//!   (mean reversion of the vol state), the variance and correlation premia, the other
//!   names' idiosyncratic and sector vols, earnings, strikes, spreads and sizes.

use super::path::{vix_level, MarketPath, MarketState};
use super::universe::{Kind, Underlying};
use crate::sources::SourceError;
use chrono::NaiveDate;
use duckdb::{params, Connection};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// One imported daily bar, in dollars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
    pub dividend: f64,
    pub split_ratio: f64,
}

/// The imported bars of one symbol of the universe.
#[derive(Debug, Clone)]
pub struct SymbolBars {
    /// The name the bars are stored under (`VIX` or `^VIX`).
    pub stored_as: String,
    pub first: NaiveDate,
    pub last: NaiveDate,
    /// By session index of the path.
    pub bars: HashMap<usize, Bar>,
}

/// The real bars the simulated market follows.
#[derive(Debug, Clone)]
pub struct RealBars {
    /// Per underlying (universe order): its bars, or `None` when it stays modelled.
    pub by_symbol: Vec<Option<SymbolBars>>,
    /// The universe index of the vol index whose bars set the market's vol state.
    pub vix: Option<usize>,
    /// Per underlying: whether it is a single name (its vol level follows its bars).
    pub stocks: Vec<bool>,
}

impl RealBars {
    pub fn of(&self, i: usize) -> Option<&SymbolBars> {
        self.by_symbol.get(i).and_then(|b| b.as_ref())
    }

    /// The bar of underlying `i` on session `t`: `Ok(None)` when it is modelled, an
    /// error when it has bars but none that day.
    pub fn bar(
        &self,
        u: &Underlying,
        i: usize,
        t: usize,
        d: NaiveDate,
    ) -> Result<Option<&Bar>, SourceError> {
        let Some(b) = self.of(i) else {
            return Ok(None);
        };
        match b.bars.get(&t) {
            Some(bar) => Ok(Some(bar)),
            None => Err(SourceError::NoData {
                source_name: "sim",
                date: d,
                reason: format!(
                    "[sim] underlying = \"bars\": {}'s imported daily bars ({}) cover {} to {}, with none on {d}; import a bar for that day, or choose sessions within the bars (or leave {} out of fetch_chains.params.symbols)",
                    u.symbol, b.stored_as, b.first, b.last, u.symbol
                ),
            }),
        }
    }
}

/// The bars of `archive_bars` for the universe's symbols: `sym`, or `^sym` for an index.
pub fn load(
    conn: &Connection,
    universe: &[Underlying],
    path: &MarketPath,
) -> Result<RealBars, SourceError> {
    let db = |e: duckdb::Error| SourceError::Request {
        reason: format!(
            "reading archive_bars: {}",
            crate::text::one_line(&e.to_string())
        ),
    };
    let mut s = conn
        .prepare(
            "SELECT date, open::DOUBLE, high::DOUBLE, low::DOUBLE, close::DOUBLE, volume, dividend::DOUBLE, split_ratio
             FROM archive_bars WHERE symbol = ? ORDER BY date",
        )
        .map_err(db)?;
    let mut by_symbol = Vec::with_capacity(universe.len());
    for u in universe {
        let mut found = None;
        let names = if matches!(u.kind, Kind::Index | Kind::VolIndex) {
            vec![u.symbol.clone(), format!("^{}", u.symbol)]
        } else {
            vec![u.symbol.clone()]
        };
        for name in names {
            let rows = s
                .query_map(params![name], |r| {
                    Ok((
                        r.get::<_, NaiveDate>(0)?,
                        Bar {
                            open: r.get(1)?,
                            high: r.get(2)?,
                            low: r.get(3)?,
                            close: r.get(4)?,
                            volume: r.get(5)?,
                            dividend: r.get(6)?,
                            split_ratio: r.get(7)?,
                        },
                    ))
                })
                .map_err(db)?;
            let mut bars = HashMap::new();
            let (mut first, mut last) = (None, None);
            for row in rows {
                let (d, bar) = row.map_err(db)?;
                // A bar on a day that is not a session of the calendar is not traded on.
                if let Some(t) = path.index_of(d) {
                    bars.insert(t, bar);
                    first = first.or(Some(d));
                    last = Some(d);
                }
            }
            if let (Some(first), Some(last)) = (first, last) {
                found = Some(SymbolBars {
                    stored_as: name,
                    first,
                    last,
                    bars,
                });
                break;
            }
        }
        by_symbol.push(found);
    }
    let vix = universe
        .iter()
        .position(|u| u.kind == Kind::VolIndex)
        .filter(|&i| by_symbol[i].is_some());
    if by_symbol.iter().all(Option::is_none) {
        return Err(SourceError::Config {
            key: "sim.underlying".into(),
            reason: "\"bars\" takes the underlyings' paths from imported daily bars, and archive_bars has none for a symbol of the simulated universe (SPY, QQQ, AAPL, VIX, ...): load them first with `optdesk import FILE...`".into(),
        });
    }
    let stocks = universe.iter().map(|u| u.kind == Kind::Stock).collect();
    Ok(RealBars {
        by_symbol,
        vix,
        stocks,
    })
}

/// VIX thresholds between the calm, normal and stressed regimes: the geometric
/// midpoints of the regimes' long-run VIX levels.
const CALM_BELOW: f64 = 12.7;
const STRESSED_FROM: f64 = 21.1;

/// The market state whose model VIX is `vix`, keeping `st`'s premia.
pub fn state_for_vix(st: &MarketState, vix: f64) -> MarketState {
    let regime = if vix < CALM_BELOW {
        0
    } else if vix < STRESSED_FROM {
        1
    } else {
        2
    };
    let mut s = MarketState { regime, ..*st };
    // vix_level rises with log_vol: bisect.
    let (mut lo, mut hi) = (libm::log(0.01), libm::log(3.0));
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        s.log_vol = mid;
        if vix_level(&s) < vix {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    s.log_vol = 0.5 * (lo + hi);
    s
}

/// The seeded path with the real bars put in: closes and dividends of the symbols with
/// bars, and the vol state on the sessions with a VIX bar.
pub fn apply(base: &MarketPath, real: &RealBars) -> MarketPath {
    let mut p = base.clone();
    for (i, b) in real.by_symbol.iter().enumerate() {
        let Some(b) = b else { continue };
        for (&t, bar) in &b.bars {
            p.close[i][t] = bar.close;
            p.dividend[i][t] = bar.dividend;
        }
    }
    if let Some(v) = real.vix.and_then(|i| real.of(i)) {
        for (&t, bar) in &v.bars {
            p.states[t] = state_for_vix(&base.states[t], bar.close);
        }
    }
    // A single name with bars: its vol level follows its own realized vol.
    p.iv_scale = vec![Vec::new(); p.close.len()];
    for (i, b) in real.by_symbol.iter().enumerate() {
        let Some(b) = b else { continue };
        if !real.stocks.get(i).copied().unwrap_or(false) {
            continue;
        }
        let mut scale = vec![1.0; p.sessions.len()];
        for (t, s) in scale.iter_mut().enumerate() {
            if let Some(x) = rv_scale(&p, b, i, t) {
                *s = x;
            }
        }
        p.iv_scale[i] = scale;
    }
    p
}

/// Sessions of realized vol a single name's vol level follows.
pub const RV_SESSIONS: usize = 63;

/// The ratio of a single name's realized vol over the [`RV_SESSIONS`] sessions before
/// `t` (its real bars', all present) to the model's fair 3-month vol of it in the state
/// of the previous close, within 0.5 to 2.5: its implied vols are scaled by it, so a name
/// that really moved more than the model's calibration quotes higher vols. `None` when
/// the bars do not cover the window.
fn rv_scale(p: &MarketPath, b: &SymbolBars, i: usize, t: usize) -> Option<f64> {
    if t < RV_SESSIONS + 1 {
        return None;
    }
    let mut rets = Vec::with_capacity(RV_SESSIONS);
    for k in t - RV_SESSIONS..t {
        let (a, c) = (b.bars.get(&(k - 1))?, b.bars.get(&k)?);
        rets.push(libm::log((c.close + c.dividend) / a.close));
    }
    let n = rets.len() as f64;
    let mean = rets.iter().sum::<f64>() / n;
    let var = rets.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let rv = libm::sqrt(var * 252.0);
    let st = &p.states[t - 1];
    let fair = libm::sqrt(super::path::expected_variance(&p.loadings[i], st, 0.25, 1));
    (fair > 0.0 && rv.is_finite()).then(|| (rv / fair).clamp(0.5, 2.5))
}

/// A path with bars, cached per (seed, archive content) for the process: a backtest
/// builds its source once per session.
type BarsCache = Mutex<Vec<(u64, String, Arc<MarketPath>, Arc<RealBars>)>>;

fn cache() -> &'static BarsCache {
    static CACHE: OnceLock<BarsCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Vec::new()))
}

/// The path and bars for `seed` over the archive `conn` holds.
pub fn path_with_bars(
    seed: u64,
    base: &Arc<MarketPath>,
    universe: &[Underlying],
    conn: &Connection,
) -> Result<(Arc<MarketPath>, Arc<RealBars>), SourceError> {
    let signature: String = conn
        .query_row(
            "SELECT count(*)::VARCHAR || ':' || coalesce(sum(hash(date, symbol, open, high, low, close, volume, dividend, split_ratio))::HUGEINT, 0)::VARCHAR FROM archive_bars",
            [],
            |r| r.get(0),
        )
        .map_err(|e| SourceError::Request {
            reason: format!(
                "reading archive_bars: {}",
                crate::text::one_line(&e.to_string())
            ),
        })?;
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, p, r)) = c
        .iter()
        .find(|(s, sig, _, _)| *s == seed && *sig == signature)
    {
        return Ok((p.clone(), r.clone()));
    }
    let real = Arc::new(load(conn, universe, base)?);
    let path = Arc::new(apply(base, &real));
    if c.len() >= 4 {
        c.remove(0);
    }
    c.push((seed, signature, path.clone(), real.clone()));
    Ok((path, real))
}

/// What is real and what modelled in a simulated market with bars, for a report.
pub fn describe(universe: &[Underlying], real: &RealBars) -> String {
    let mut with = Vec::new();
    let mut without = Vec::new();
    for (i, u) in universe.iter().enumerate() {
        match real.of(i) {
            Some(b) if u.kind != Kind::VolIndex => {
                with.push(format!("{} {}–{}", u.symbol, b.first, b.last))
            }
            Some(_) => {}
            None if u.kind != Kind::VolIndex => without.push(u.symbol.clone()),
            None => {}
        }
    }
    let vix = match real.vix.and_then(|i| real.of(i)) {
        Some(v) => format!(
            "the index's implied-vol level follows the imported VIX closes ({} {}–{}), the other names' vol levels move with it through the model's market factor",
            v.stored_as, v.first, v.last
        ),
        None => "no VIX bars are imported, so implied-vol levels follow the model's own volatility path".into(),
    };
    let vix = format!(
        "{vix}; single names with bars have their vol levels scaled by their realized vol over the previous {RV_SESSIONS} sessions"
    );
    let modelled = if without.is_empty() {
        String::new()
    } else {
        format!(
            "; the paths of the {} symbols without bars ({}{})",
            without.len(),
            without
                .iter()
                .take(8)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if without.len() > 8 { ", ..." } else { "" }
        )
    };
    format!(
        "Modelled chains over real prices ([sim] underlying = \"bars\"). Real: the daily bars (open, high, low, close, dividends) of {} from imported files; {vix}. Modelled: every option quote (the surface model's skew, term structure, premia, strikes, spreads and sizes){modelled}.",
        with.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_solved_state_gives_the_vix_it_was_solved_for() {
        let st = MarketState {
            regime: 1,
            log_vol: libm::log(0.12),
            vrp: 0.19,
            corr_premium: 0.1,
        };
        for v in [11.0, 15.0, 19.0, 30.0, 60.0] {
            let s = state_for_vix(&st, v);
            assert!((vix_level(&s) - v).abs() < 1e-6, "{v}: {}", vix_level(&s));
            assert_eq!(s.vrp, st.vrp);
        }
        assert_eq!(state_for_vix(&st, 11.0).regime, 0);
        assert_eq!(state_for_vix(&st, 40.0).regime, 2);
    }
}
