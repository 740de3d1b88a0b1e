//! `compute_vol` — per contract: mid, implied vol, greeks, model price
//! (`option_analytics`); per underlying: historical vols, constant-maturity ATM IV, IV
//! rank/percentile, IV−HV spread, 25-delta skew, term slope (`vol_metrics`) and the
//! expected move to each expiry (`expected_moves`). Key: `as_of`.
//!
//! American-style equity and ETF options are treated as European on the mid: the
//! mid of a liquid contract carries little early-exercise premium except deep in the
//! money, where its European IV comes out inflated; the ATM and skew metrics therefore
//! use the out-of-the-money side of the smile. A mid below the European lower bound
//! gets no IV and the reason `below_intrinsic`.

use super::{Job, JobContext, JobDef, JobError, JobOutput, Prepared};
use crate::calendar;
use crate::config::{Config, ConfigError, JobFile};
use crate::model::OptionRight;
use crate::pricing::bsm::BsmInputs;
use crate::pricing::hv;
use crate::pricing::iv::implied_vol;
use crate::pricing::surface::{self, SmilePoint};
use crate::pricing::{is_am_settled, settlement_time, years_to_settlement};
use chrono::{NaiveDate, NaiveDateTime};
use duckdb::params;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

pub const DEF: JobDef = JobDef {
    name: "compute_vol",
    about: "implied vol and greeks per contract; HV, ATM IV, IV rank, skew, expected moves per underlying",
    writes: &["option_analytics", "vol_metrics", "expected_moves"],
    reads_chains: true,
    prepare,
    daily: true,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Sessions of ATM-IV history behind IV rank and percentile.
    pub rank_sessions: u32,
    /// Expiries shorter than this many calendar days are left out of the
    /// constant-maturity interpolation (0DTE noise).
    pub min_days_for_atm: f64,
    /// Each expiry's forward: `parity` (from put–call parity at the strike where the
    /// call and put mids are closest, as in the Cboe VIX white paper) or `carry` (spot
    /// grown at the source's rate less its dividend yield).
    pub forward: ForwardMethod,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ForwardMethod {
    Parity,
    Carry,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            rank_sessions: 252,
            min_days_for_atm: 2.0,
            forward: ForwardMethod::Parity,
        }
    }
}

/// For European contracts in the money, the IV of the out-of-the-money contract at the
/// same strike and expiry (put–call parity makes them one vol; the in-the-money one's
/// vega is so small that a cent of its mid, or of the forward, moves its own IV by vol
/// points). Its greeks and model price are recomputed at that vol, and `iv_note` says
/// where the IV came from. Returns how many contracts took the other side's IV.
fn otm_side_ivs(
    quotes: &[QuoteRow],
    analytics: &mut [Option<Analytics>],
    unds: &HashMap<String, Underlying>,
    implied_q: &HashMap<ExpiryKey<'_>, f64>,
) -> usize {
    let index: HashMap<(&str, NaiveDate, bool, u64, OptionRight), usize> = quotes
        .iter()
        .enumerate()
        .map(|(i, q)| {
            (
                (
                    q.underlying.as_str(),
                    q.expiry,
                    q.am,
                    q.strike.to_bits(),
                    q.right,
                ),
                i,
            )
        })
        .collect();
    let mut n = 0;
    for (i, q) in quotes.iter().enumerate() {
        let Some(a) = analytics[i].as_ref() else {
            continue;
        };
        let itm = match q.right {
            OptionRight::Call => q.strike < a.forward,
            OptionRight::Put => q.strike > a.forward,
        };
        if !q.european || !itm || a.t_years <= 0.0 {
            continue;
        }
        let other = match q.right {
            OptionRight::Call => OptionRight::Put,
            OptionRight::Put => OptionRight::Call,
        };
        let Some(&j) = index.get(&(
            q.underlying.as_str(),
            q.expiry,
            q.am,
            q.strike.to_bits(),
            other,
        )) else {
            continue;
        };
        let Some(vol) = analytics[j].as_ref().and_then(|o| o.iv) else {
            continue;
        };
        let Some(u) = unds.get(&q.underlying) else {
            continue;
        };
        let div_yield = implied_q
            .get(&(q.underlying.as_str(), q.expiry, q.am))
            .copied()
            .unwrap_or(u.div_yield);
        let g = BsmInputs {
            right: q.right,
            spot: u.price,
            strike: q.strike,
            t_years: a.t_years,
            rate: u.rate,
            div_yield,
            vol,
        }
        .greeks();
        let side = if other == OptionRight::Put {
            "put"
        } else {
            "call"
        };
        let a = analytics[i].as_mut().expect("checked above");
        a.iv = Some(vol);
        a.greeks = Some(g);
        a.note = Some(format!(
            "IV of the out-of-the-money {side} at this strike (put–call parity; European)"
        ));
        n += 1;
    }
    n
}

/// (underlying, expiry, AM-settled): one expiry's series.
type ExpiryKey<'a> = (&'a str, NaiveDate, bool);
/// A strike's (call mid, put mid), each when two-sided.
type MidPair = (Option<f64>, Option<f64>);

/// The forward of one expiry from put–call parity: at the strike K where the call and
/// put mids are closest (both two-sided), F = K + e^{rT}(C − P). `None` without such a
/// strike, or when the result is not within 10% of the carry forward (a stale or
/// one-sided market, not a forward).
pub fn parity_forward(
    pairs: &[(f64, f64, f64)], // (strike, call mid, put mid)
    t: f64,
    rate: f64,
    carry_forward: f64,
) -> Option<f64> {
    if t <= 0.0 {
        return None;
    }
    let &(k, c, p) = pairs
        .iter()
        .filter(|(k, c, p)| *k > 0.0 && c.is_finite() && p.is_finite())
        .min_by(|a, b| (a.1 - a.2).abs().total_cmp(&(b.1 - b.2).abs()))?;
    let f = k + (rate * t).exp() * (c - p);
    (f > 0.0 && (f / carry_forward - 1.0).abs() < 0.10).then_some(f)
}

fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    let (file, text): (JobFile<Params>, String) = config.job(DEF.name)?;
    let path = config.dir.join("compute_vol.toml").display().to_string();
    if !(20..=2520).contains(&file.params.rank_sessions) {
        return Err(ConfigError::Invalid {
            file: path,
            message: format!(
                "params.rank_sessions = {}: expected 20 to 2520 sessions",
                file.params.rank_sessions
            ),
        });
    }
    if !(0.0..=30.0).contains(&file.params.min_days_for_atm) {
        return Err(ConfigError::Invalid {
            file: path,
            message: format!(
                "params.min_days_for_atm = {}: expected 0 to 30 calendar days",
                file.params.min_days_for_atm
            ),
        });
    }
    Ok(Prepared {
        def: &DEF,
        enabled: file.enabled,
        slots: file.slots,
        config_hash: config.hash_with(&text),
        job: Box::new(ComputeVol {
            params: file.params,
        }),
    })
}

pub struct ComputeVol {
    pub params: Params,
}

struct QuoteRow {
    contract: String,
    underlying: String,
    expiry: NaiveDate,
    strike: f64,
    right: OptionRight,
    am: bool,
    /// Cash-settled (European index options): put–call parity holds exactly.
    european: bool,
    bid: f64,
    ask: f64,
    source_iv: Option<f64>,
}

struct Underlying {
    price: f64,
    rate: f64,
    div_yield: f64,
    quote_time: NaiveDateTime,
}

/// One contract's analytics.
pub struct Analytics {
    pub t_years: f64,
    pub forward: f64,
    pub mid: Option<f64>,
    pub iv: Option<f64>,
    pub greeks: Option<crate::pricing::bsm::Greeks>,
    pub note: Option<String>,
}

/// Mid, IV and greeks of one quote, with the reason when there is no IV.
#[allow(clippy::too_many_arguments)]
pub fn analyse(
    right: OptionRight,
    bid: f64,
    ask: f64,
    spot: f64,
    strike: f64,
    t: f64,
    rate: f64,
    q: f64,
) -> Analytics {
    let forward = spot * ((rate - q) * t).exp();
    let none = |mid, note: &str| Analytics {
        t_years: t,
        forward,
        mid,
        iv: None,
        greeks: None,
        note: Some(note.to_string()),
    };
    if ask <= 0.0 {
        return none(None, "no quote (ask is zero)");
    }
    if bid > ask {
        return none(None, "crossed quote (bid above ask)");
    }
    if bid <= 0.0 {
        return none(None, "one-sided quote (no bid)");
    }
    let mid = 0.5 * (bid + ask);
    match implied_vol(right, mid, spot, strike, t, rate, q) {
        Ok(v) => {
            let g = BsmInputs {
                right,
                spot,
                strike,
                t_years: t,
                rate,
                div_yield: q,
                vol: v,
            }
            .greeks();
            Analytics {
                t_years: t,
                forward,
                mid: Some(mid),
                iv: Some(v),
                greeks: Some(g),
                note: None,
            }
        }
        Err(e) => none(Some(mid), e.code()),
    }
}

fn load_underlyings(ctx: &JobContext) -> Result<HashMap<String, Underlying>, JobError> {
    let mut stmt = ctx.conn.prepare(
        "SELECT symbol, price::DOUBLE, rate, div_yield, quote_time FROM underlying_quotes WHERE as_of = ? AND quote_time = ?",
    )?;
    let rows = stmt.query_map(params![ctx.as_of, ctx.quote_time], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Underlying {
                price: r.get(1)?,
                rate: r.get(2)?,
                div_yield: r.get(3)?,
                quote_time: r.get(4)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn load_quotes(ctx: &JobContext) -> Result<Vec<QuoteRow>, JobError> {
    let mut stmt = ctx.conn.prepare(
        "SELECT contract, underlying, root, expiry, strike::DOUBLE, put_call, settlement, bid::DOUBLE, ask::DOUBLE, source_iv
         FROM option_quotes WHERE as_of = ? AND quote_time = ? ORDER BY underlying, expiry, strike, put_call",
    )?;
    let rows = stmt.query_map(params![ctx.as_of, ctx.quote_time], |r| {
        let underlying: String = r.get(1)?;
        let root: String = r.get(2)?;
        let settlement: String = r.get(6)?;
        Ok(QuoteRow {
            contract: r.get(0)?,
            am: is_am_settled(&root, &underlying, settlement == "cash"),
            european: settlement == "cash",
            underlying,
            expiry: r.get(3)?,
            strike: r.get(4)?,
            right: OptionRight::from_code(&r.get::<_, String>(5)?).map_err(|e| {
                duckdb::Error::FromSqlConversionFailure(5, duckdb::types::Type::Text, Box::new(e))
            })?,
            bid: r.get(7)?,
            ask: r.get(8)?,
            source_iv: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// ATM-IV history of the `n` sessions before `as_of`: this job's own earlier output
/// (the first snapshot of each day), and the source's history where the store has no
/// vol_metrics row for that day.
fn load_iv_history(ctx: &JobContext, n: usize) -> Result<HashMap<String, Vec<f64>>, JobError> {
    let window = calendar::sessions_before(ctx.as_of, n);
    let Some(from) = window.first() else {
        return Ok(HashMap::new());
    };
    let mut stmt = ctx.conn.prepare(
        "WITH own AS (SELECT as_of AS date, symbol, arg_min(atm_iv_30d, quote_time) AS atm_iv_30d FROM vol_metrics
                      WHERE as_of >= ? AND as_of < ? AND atm_iv_30d IS NOT NULL GROUP BY ALL),
              src AS (SELECT date, symbol, atm_iv_30d FROM iv_history h
                      WHERE date >= ? AND date < ?
                        AND NOT EXISTS (SELECT 1 FROM own o WHERE o.date = h.date AND o.symbol = h.symbol))
         SELECT symbol, atm_iv_30d FROM (SELECT * FROM own UNION ALL SELECT * FROM src) ORDER BY symbol, date",
    )?;
    let rows = stmt.query_map(params![from, ctx.as_of, from, ctx.as_of], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
    })?;
    let mut out: HashMap<String, Vec<f64>> = HashMap::new();
    for r in rows {
        let (s, v) = r?;
        out.entry(s).or_default().push(v);
    }
    Ok(out)
}

impl Job for ComputeVol {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let conn = ctx.conn;
        let unds = load_underlyings(ctx)?;
        if unds.is_empty() {
            return Err(JobError::Failed(format!(
                "no underlying quotes for {} at {}: run fetch_chains for this session (and slot) first",
                ctx.as_of,
                ctx.quote_time.format("%H:%M")
            )));
        }
        let quotes = load_quotes(ctx)?;
        for t in ["option_analytics", "vol_metrics", "expected_moves"] {
            conn.execute(
                &format!("DELETE FROM {t} WHERE as_of = ? AND quote_time = ?"),
                params![ctx.as_of, ctx.quote_time],
            )?;
        }

        // Each expiry's forward, as the dividend yield that gives it (so the greeks stay
        // per $1 of spot): put–call parity, else the source's carry.
        let mut pairs: BTreeMap<ExpiryKey, BTreeMap<u64, MidPair>> = BTreeMap::new();
        for q in &quotes {
            if q.bid > 0.0 && q.ask >= q.bid {
                let e = pairs
                    .entry((q.underlying.as_str(), q.expiry, q.am))
                    .or_default()
                    .entry(q.strike.to_bits())
                    .or_default();
                let mid = Some(0.5 * (q.bid + q.ask));
                match q.right {
                    OptionRight::Call => e.0 = mid,
                    OptionRight::Put => e.1 = mid,
                }
            }
        }
        let mut implied_q: HashMap<(&str, NaiveDate, bool), f64> = HashMap::new();
        let mut expiries = 0usize;
        for ((und, expiry, am), strikes) in &pairs {
            let Some(u) = unds.get(*und) else { continue };
            expiries += 1;
            if self.params.forward != ForwardMethod::Parity {
                continue;
            }
            let t = years_to_settlement(u.quote_time, *expiry, *am);
            let both: Vec<(f64, f64, f64)> = strikes
                .iter()
                .filter_map(|(k, (c, p))| Some((f64::from_bits(*k), (*c)?, (*p)?)))
                .collect();
            let carry = u.price * ((u.rate - u.div_yield) * t).exp();
            if let Some(f) = parity_forward(&both, t, u.rate, carry) {
                implied_q.insert((und, *expiry, *am), u.rate - (f / u.price).ln() / t);
            }
        }
        // Per contract, on every core.
        let analytics: Vec<Option<Analytics>> = quotes
            .par_iter()
            .map(|q| {
                let u = unds.get(&q.underlying)?;
                if u.quote_time >= settlement_time(q.expiry, q.am) {
                    return Some(Analytics {
                        t_years: 0.0,
                        forward: u.price,
                        mid: None,
                        iv: None,
                        greeks: None,
                        note: Some("expired (quoted at or after settlement)".into()),
                    });
                }
                let t = years_to_settlement(u.quote_time, q.expiry, q.am);
                Some(analyse(
                    q.right,
                    q.bid,
                    q.ask,
                    u.price,
                    q.strike,
                    t,
                    u.rate,
                    implied_q
                        .get(&(q.underlying.as_str(), q.expiry, q.am))
                        .copied()
                        .unwrap_or(u.div_yield),
                ))
            })
            .collect();
        let mut analytics = analytics;
        let from_otm = otm_side_ivs(&quotes, &mut analytics, &unds, &implied_q);
        // One Arrow batch (crate::store::bulk), the columns in the table's order.
        let kept: Vec<(&QuoteRow, &Analytics)> = quotes
            .iter()
            .zip(&analytics)
            .filter_map(|(q, a)| a.as_ref().map(|a| (q, a)))
            .collect();
        let n = kept.len();
        let greek = |f: fn(&Analytics) -> Option<f64>| kept.iter().map(move |(_, a)| f(a));
        let rows = crate::store::bulk::Batch::new()
            .date("as_of", std::iter::repeat_n(ctx.as_of, n))
            .timestamp("quote_time", std::iter::repeat_n(ctx.quote_time, n))
            .str("contract", kept.iter().map(|(q, _)| &q.contract))
            .str("underlying", kept.iter().map(|(q, _)| &q.underlying))
            .date("expiry", kept.iter().map(|(q, _)| q.expiry))
            .f64("strike", kept.iter().map(|(q, _)| q.strike))
            .str("put_call", kept.iter().map(|(q, _)| q.right.code()))
            .f64("t_years", kept.iter().map(|(_, a)| a.t_years))
            .f64("forward", kept.iter().map(|(_, a)| places(a.forward, 4)))
            .opt_f64("mid", greek(|a| a.mid.map(|m| places(m, 5))))
            .opt_f64("iv", greek(|a| a.iv.map(|v| places(v, 6))))
            .opt_f64("delta", greek(|a| a.greeks.map(|g| places(g.delta, 6))))
            .opt_f64("gamma", greek(|a| a.greeks.map(|g| places(g.gamma, 9))))
            .opt_f64("vega", greek(|a| a.greeks.map(|g| places(g.vega, 4))))
            .opt_f64(
                "theta_per_day",
                greek(|a| a.greeks.map(|g| places(g.theta_per_day, 5))),
            )
            .opt_f64("rho", greek(|a| a.greeks.map(|g| places(g.rho, 4))))
            .opt_f64(
                "model_price",
                greek(|a| a.greeks.map(|g| places(g.price, 5))),
            )
            .opt_str("iv_note", kept.iter().map(|(_, a)| a.note.as_deref()))
            .i64("run_id", std::iter::repeat_n(ctx.run_id, n))
            .append(conn, "option_analytics")?;
        let missing_underlying = analytics.iter().filter(|a| a.is_none()).count();

        // Per underlying.
        let mut by_symbol: BTreeMap<&str, Vec<(&QuoteRow, &Analytics)>> = BTreeMap::new();
        for (q, a) in quotes.iter().zip(&analytics) {
            if let Some(a) = a {
                by_symbol
                    .entry(q.underlying.as_str())
                    .or_default()
                    .push((q, a));
            }
        }
        let bars = super::load_bars_before(ctx.conn, ctx.as_of, 61)?;
        let history = load_iv_history(ctx, self.params.rank_sessions as usize)?;
        let min_t = self.params.min_days_for_atm / 365.0;
        let mut metrics_rows = 0u64;
        let mut moves_rows = 0u64;
        let mut mapp = conn.appender("expected_moves")?;
        let mut symbols: Vec<&String> = unds.keys().collect();
        symbols.sort();
        let mut metric_rows = Vec::new();
        for sym in symbols {
            let u = &unds[sym];
            let contracts = by_symbol
                .get(sym.as_str())
                .map(|v| v.as_slice())
                .unwrap_or(&[]);
            let points: Vec<SmilePoint> = contracts
                .iter()
                .filter_map(|(q, a)| {
                    Some(SmilePoint {
                        expiry: q.expiry,
                        am_settled: q.am,
                        t_years: a.t_years,
                        forward: a.forward,
                        strike: q.strike,
                        right: q.right,
                        iv: a.iv?,
                        delta: a.greeks?.delta,
                        mid: a.mid?,
                    })
                })
                .collect();
            let atm = surface::atm_by_expiry(&points);
            let atm30 = surface::constant_maturity(&atm, 30.0 / 365.0, min_t);
            let atm90 = surface::constant_maturity(&atm, 90.0 / 365.0, min_t);
            let e30 = atm.iter().filter(|a| a.t_years >= min_t).min_by(|a, b| {
                (a.t_years - 30.0 / 365.0)
                    .abs()
                    .total_cmp(&(b.t_years - 30.0 / 365.0).abs())
            });
            let skew = e30.and_then(|e| {
                let pts: Vec<SmilePoint> = points
                    .iter()
                    .filter(|p| p.expiry == e.expiry && p.am_settled == e.am_settled)
                    .copied()
                    .collect();
                surface::skew_25_delta(&pts)
            });
            for a in &atm {
                // The straddle uses every two-sided mid at the ATM strike.
                let all: Vec<SmilePoint> = contracts
                    .iter()
                    .filter(|(q, _)| q.expiry == a.expiry && q.am == a.am_settled)
                    .filter_map(|(q, x)| {
                        Some(SmilePoint {
                            expiry: q.expiry,
                            am_settled: q.am,
                            t_years: x.t_years,
                            forward: x.forward,
                            strike: q.strike,
                            right: q.right,
                            iv: x.iv.unwrap_or(f64::NAN),
                            delta: 0.0,
                            mid: x.mid?,
                        })
                    })
                    .collect();
                mapp.append_row(params![
                    ctx.as_of,
                    ctx.quote_time,
                    sym,
                    a.expiry,
                    a.am_settled,
                    (a.expiry - ctx.as_of).num_days(),
                    a.t_years,
                    u.price,
                    a.atm_iv,
                    surface::atm_straddle(&all),
                    u.price * a.atm_iv * a.t_years.sqrt(),
                    ctx.run_id,
                ])?;
                moves_rows += 1;
            }
            let b = bars.get(sym.as_str()).map(|v| v.as_slice()).unwrap_or(&[]);
            let hv30 = hv::close_to_close(b, 30);
            let hist = history
                .get(sym.as_str())
                .map(|v| v.as_slice())
                .unwrap_or(&[]);
            let rank = atm30.and_then(|v| surface::iv_rank_percentile(hist, v));
            let mut notes = Vec::new();
            if contracts.is_empty() {
                notes.push("no option chain".to_string());
            } else if atm30.is_none() {
                notes.push("no ATM IV: no expiry with a valid at-the-money smile".to_string());
            }
            if hv30.is_none() {
                notes.push(format!("HV needs 31 daily bars, the store has {}", b.len()));
            }
            if atm30.is_some() && hist.len() < self.params.rank_sessions as usize {
                notes.push(format!(
                    "IV rank on {} of {} sessions of history",
                    hist.len(),
                    self.params.rank_sessions
                ));
            }
            metric_rows.push((
                sym.clone(),
                u.price,
                atm30,
                atm90,
                [
                    hv::close_to_close(b, 10),
                    hv::close_to_close(b, 20),
                    hv30,
                    hv::close_to_close(b, 60),
                    hv::parkinson(b, 20),
                    hv::garman_klass(b, 20),
                    hv::yang_zhang(b, 20),
                ],
                rank,
                hist.len(),
                skew,
                contracts.len(),
                points.len(),
                notes.join("; "),
            ));
        }
        mapp.flush()?;
        let mut vapp = conn.appender("vol_metrics")?;
        for (sym, spot, atm30, atm90, h, rank, nhist, skew, n, n_iv, note) in metric_rows {
            vapp.append_row(params![
                ctx.as_of,
                ctx.quote_time,
                sym,
                spot,
                atm30,
                atm90,
                h[0],
                h[1],
                h[2],
                h[3],
                h[4],
                h[5],
                h[6],
                rank.map(|r| r.0),
                rank.map(|r| r.1),
                nhist as i32,
                atm30.zip(h[2]).map(|(a, b)| a - b),
                skew,
                atm30.zip(atm90).map(|(a, b)| b - a),
                n as i32,
                n_iv as i32,
                (!note.is_empty()).then_some(note),
                ctx.run_id,
            ])?;
            metrics_rows += 1;
        }
        vapp.flush()?;
        let with_iv = analytics
            .iter()
            .flatten()
            .filter(|a| a.iv.is_some())
            .count();
        let mut summary = format!(
            "{} contracts, {with_iv} with an IV ({} without, reasons in option_analytics.iv_note); {metrics_rows} underlyings; {moves_rows} expected moves",
            rows,
            rows as usize - with_iv
        );
        summary.push_str(&match self.params.forward {
            ForwardMethod::Parity => format!(
                "; forwards from put–call parity for {} of {expiries} expiries (the rest from the source's carry)",
                implied_q.len()
            ),
            ForwardMethod::Carry => "; forwards from the source's carry".to_string(),
        });
        if from_otm > 0 {
            summary.push_str(&format!(
                "; {from_otm} in-the-money European contracts take the out-of-the-money side's IV"
            ));
        }
        let mut dist: Vec<f64> = quotes
            .iter()
            .zip(&analytics)
            .filter_map(|(q, a)| Some((a.as_ref()?.iv? - q.source_iv?).abs()))
            .filter(|d| d.is_finite())
            .collect();
        if !dist.is_empty() {
            dist.sort_by(f64::total_cmp);
            summary.push_str(&format!(
                "; median |IV − source IV| {:.2} vol pts over {} contracts",
                dist[dist.len() / 2] * 100.0,
                dist.len()
            ));
        }
        if missing_underlying > 0 {
            summary.push_str(&format!(
                "; {missing_underlying} quotes skipped: no underlying quote"
            ));
        }
        Ok(JobOutput {
            rows_written: rows + metrics_rows + moves_rows,
            summary,
        })
    }
}

/// A stored analytic, rounded to a fixed number of decimal places: far finer than any
/// decision reads it (IV and delta to 1e-6, gamma to 1e-9, prices to 1e-5), and a
/// column of such numbers compresses to a third of its full-precision size (DuckDB's
/// ALP encoding), which keeps the store near 1 MB a session.
fn places(x: f64, dp: i32) -> f64 {
    let m = 10f64.powi(dp);
    let r = (x * m).round() / m;
    if r.is_finite() {
        r
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossed_and_zero_quotes_get_reasons_not_ivs() {
        let a = analyse(OptionRight::Call, 1.2, 1.1, 100.0, 100.0, 0.1, 0.04, 0.0);
        assert!(a.iv.is_none() && a.note.as_deref() == Some("crossed quote (bid above ask)"));
        let a = analyse(OptionRight::Call, 0.0, 0.0, 100.0, 100.0, 0.1, 0.04, 0.0);
        assert!(a.iv.is_none() && a.note.unwrap().contains("no quote"));
        let a = analyse(OptionRight::Call, 0.0, 0.05, 100.0, 150.0, 0.1, 0.04, 0.0);
        assert!(a.iv.is_none() && a.note.unwrap().contains("one-sided"));
        // European lower bound of this put: 110·e^(−0.02) − 100 = 7.82; a 7.50 mid is below it.
        let a = analyse(OptionRight::Put, 7.49, 7.51, 100.0, 110.0, 0.5, 0.04, 0.0);
        assert_eq!(a.note.as_deref(), Some("below_intrinsic"));
        // The same put at its exercise value (what an American put trades at) has an IV.
        let a = analyse(OptionRight::Put, 9.99, 10.01, 100.0, 110.0, 0.5, 0.04, 0.0);
        assert!(a.iv.is_some());
        let a = analyse(OptionRight::Call, 2.45, 2.55, 100.0, 100.0, 0.1, 0.04, 0.0);
        assert!(a.iv.is_some() && a.note.is_none());
    }
}

#[cfg(test)]
mod parity_tests {
    use super::*;

    /// A European index chain priced from a known smile with a dividend yield the job is
    /// not told (1.5%), quoted as market makers quote: bid and ask each 0.3 to 0.7 vol
    /// points from the true vol (uneven, seeded), in whole cents. With the parity forward
    /// (and the out-of-the-money side's IV for in-the-money contracts) every contract
    /// with a two-sided market is within 0.5 vol points of the true vol; with the carry
    /// forward (no dividend) it is not.
    #[test]
    fn the_parity_forward_recovers_the_true_vols_of_a_noisy_european_chain() {
        let (spot, rate, q_true) = (5000.0, 0.045, 0.015);
        let vol = |k: f64, t: f64| {
            let m = (k / spot).ln() / t.sqrt();
            0.16 - 0.12 * m + 0.20 * m * m
        };
        let mut seed = 12345u64;
        let mut noise = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let cents = |x: f64| (x * 100.0).round() / 100.0;
        for days in [9.0, 30.0, 92.0] {
            let t = days / 365.0;
            let mut quotes = Vec::new();
            for i in 0..=40 {
                let k = 4500.0 + 25.0 * i as f64;
                for right in [OptionRight::Call, OptionRight::Put] {
                    let v = vol(k, t);
                    let at = |vol: f64| {
                        BsmInputs {
                            right,
                            spot,
                            strike: k,
                            t_years: t,
                            rate,
                            div_yield: q_true,
                            vol,
                        }
                        .price()
                    };
                    let bid = cents(at(v - 0.003 - 0.004 * noise()));
                    let ask = cents(at(v + 0.003 + 0.004 * noise())).max(bid + 0.01);
                    quotes.push((k, right, bid, ask, v));
                }
            }
            let pairs: Vec<(f64, f64, f64)> = quotes
                .chunks(2)
                .filter(|c| c[0].2 > 0.0 && c[1].2 > 0.0)
                .map(|c| (c[0].0, 0.5 * (c[0].2 + c[0].3), 0.5 * (c[1].2 + c[1].3)))
                .collect();
            let carry = spot * (rate * t).exp();
            let f = parity_forward(&pairs, t, rate, carry).expect("a parity forward");
            let f_true = spot * ((rate - q_true) * t).exp();
            assert!(
                (f / f_true - 1.0).abs() < 2e-4,
                "{days}d: F {f} vs {f_true}"
            );
            let q_imp = rate - (f / spot).ln() / t;
            // Every contract as compute_vol analyses it: its own mid's IV, then for the
            // in-the-money ones the out-of-the-money side's (their vega is cents, so the
            // forward's residual noise, about 0.1 index point, moves their own IV by vol
            // points). Returns the worst error over contracts with a two-sided market.
            let expiry = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
            let qt = expiry.and_hms_opt(16, 0, 0).unwrap();
            let unds: HashMap<String, Underlying> = [(
                "SPX".to_string(),
                Underlying {
                    price: spot,
                    rate,
                    div_yield: 0.0,
                    quote_time: qt,
                },
            )]
            .into();
            let worst = |q: Option<f64>| {
                let rows: Vec<QuoteRow> = quotes
                    .iter()
                    .map(|&(k, right, bid, ask, _)| QuoteRow {
                        contract: String::new(),
                        underlying: "SPX".into(),
                        expiry,
                        strike: k,
                        right,
                        am: false,
                        european: true,
                        bid,
                        ask,
                        source_iv: None,
                    })
                    .collect();
                let mut analytics: Vec<Option<Analytics>> = rows
                    .iter()
                    .map(|r| {
                        Some(analyse(
                            r.right,
                            r.bid,
                            r.ask,
                            spot,
                            r.strike,
                            t,
                            rate,
                            q.unwrap_or(0.0),
                        ))
                    })
                    .collect();
                let implied: HashMap<ExpiryKey, f64> =
                    q.map(|q| (("SPX", expiry, false), q)).into_iter().collect();
                otm_side_ivs(&rows, &mut analytics, &unds, &implied);
                quotes
                    .iter()
                    .zip(&analytics)
                    .filter(|(x, _)| x.2 > 0.0)
                    .filter_map(|(x, a)| Some((a.as_ref()?.iv? - x.4).abs()))
                    .fold(0.0f64, f64::max)
            };
            let with_parity = worst(Some(q_imp));
            assert!(
                with_parity < 0.005,
                "{days}d: worst IV error {with_parity} with the parity forward"
            );
            let carry = worst(None);
            assert!(
                carry > with_parity && (days < 30.0 || carry > 0.005),
                "{days}d: the carry forward (no dividend) misses by more: {carry}"
            );
        }
        assert_eq!(parity_forward(&[], 0.1, rate, 5000.0), None);
        assert_eq!(
            parity_forward(&[(5000.0, 900.0, 1.0)], 0.1, rate, 5000.0),
            None,
            "a 'forward' 18% away from carry is a bad market, not a forward"
        );
    }
}
