//! `correlation` — implied correlation of an index against its weighted components
//! (Cboe's implied correlation methodology, 30-day ATM IVs from `vol_metrics`), the
//! realized correlation over the same window (21 sessions of returns), and the Z-score
//! of implied correlation against its previous `zscore_sessions` sessions.
//!
//! Earlier sessions missing from the `correlation` table are filled from the source's
//! ATM-IV history (`iv_history`, basis `iv_history`) when it has one, so a new store
//! can have a Z-score on its first day; nothing is invented where no history exists.
//! Key: (`as_of`, `index_symbol`).

use super::{Job, JobContext, JobDef, JobError, JobOutput, Prepared};
use crate::analytics::correlation::{implied_correlation, zscore};
use crate::calendar;
use crate::config::{Config, ConfigError, JobFile};
use crate::pricing::hv;
use crate::refdata;
use chrono::NaiveDate;
use duckdb::params;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const DEF: JobDef = JobDef {
    name: "correlation",
    about: "implied and realized correlation of QQQ vs. its top components, and its Z-score",
    writes: &["correlation"],
    reads_chains: true,
    prepare,
    daily: true,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// The index (an ETF with listed options) whose implied correlation is computed.
    pub index: String,
    /// The components' weights: CSV with columns symbol, weight_pct (more allowed).
    pub weights_file: String,
    /// At most this many components, largest weights first.
    pub max_components: usize,
    /// Fewer components with a valid IV than this: no value, and the reason.
    pub min_components: usize,
    /// Sessions in the Z-score's rolling mean and standard deviation.
    pub zscore_sessions: usize,
    /// Sessions of returns behind the realized correlation.
    pub realized_sessions: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            index: "QQQ".into(),
            weights_file: refdata::QQQ_WEIGHTS_FILE.into(),
            max_components: 50,
            min_components: 20,
            zscore_sessions: 60,
            realized_sessions: 21,
        }
    }
}

fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    let (file, text): (JobFile<Params>, String) = config.job(DEF.name)?;
    let path = config.dir.join("correlation.toml").display().to_string();
    let p = &file.params;
    let bad = |message: String| ConfigError::Invalid {
        file: path.clone(),
        message,
    };
    if !(2..=500).contains(&p.max_components)
        || p.min_components < 2
        || p.min_components > p.max_components
    {
        return Err(bad(format!(
            "params.min_components = {}, max_components = {}: expected 2 ≤ min ≤ max ≤ 500",
            p.min_components, p.max_components
        )));
    }
    if !(10..=1000).contains(&p.zscore_sessions) {
        return Err(bad(format!(
            "params.zscore_sessions = {}: expected 10 to 1000",
            p.zscore_sessions
        )));
    }
    if !(5..=252).contains(&p.realized_sessions) {
        return Err(bad(format!(
            "params.realized_sessions = {}: expected 5 to 252",
            p.realized_sessions
        )));
    }
    let path = config.resolve(&p.weights_file);
    let loaded =
        refdata::load_index_weights(&path, p.weights_file == Params::default().weights_file)
            .map_err(|e| bad(format!("params.weights_file: {e}")))?;
    let (weights, weights_from) = (loaded.largest_first(), loaded.from);
    Ok(Prepared {
        def: &DEF,
        enabled: file.enabled,
        slots: file.slots,
        config_hash: config.hash_with(&format!("{text}\n{weights:?}")),
        job: Box::new(Correlation {
            params: file.params,
            weights,
            weights_from,
        }),
    })
}

pub struct Correlation {
    pub params: Params,
    pub weights: Vec<(String, f64)>,
    /// Where the weights came from (a file, or the built-in copy), for the summary.
    pub weights_from: String,
}

/// Implied correlation from a map of symbol → ATM IV; `Err(reason)` when undefined.
fn implied_from(
    what: &str,
    index_iv: Option<f64>,
    ivs: &HashMap<String, f64>,
    weights: &[(String, f64)],
    p: &Params,
) -> (Result<f64, String>, usize) {
    let comps: Vec<(f64, f64)> = weights
        .iter()
        .take(p.max_components)
        .filter_map(|(s, w)| {
            ivs.get(s)
                .filter(|v| v.is_finite() && **v > 0.0)
                .map(|v| (*w, *v))
        })
        .collect();
    let n = comps.len();
    let Some(index_iv) = index_iv else {
        return (Err(format!("no {what} for the index {}", p.index)), n);
    };
    if n < p.min_components {
        return (
            Err(format!(
                "only {n} components with a valid {what} (at least {} needed)",
                p.min_components
            )),
            n,
        );
    }
    match implied_correlation(index_iv, &comps) {
        Some(r) => (Ok(r), n),
        None => (
            Err("implied correlation undefined for these vols".into()),
            n,
        ),
    }
}

impl Correlation {
    fn realized(&self, ctx: &JobContext) -> Result<Result<f64, String>, JobError> {
        let p = &self.params;
        let bars = super::load_bars_before(ctx.conn, ctx.as_of, p.realized_sessions + 1)?;
        let n = p.realized_sessions;
        let vol = |s: &str| bars.get(s).and_then(|b| hv::close_to_close(b, n));
        let vols: HashMap<String, f64> = self
            .weights
            .iter()
            .filter_map(|(s, _)| vol(s).map(|v| (s.clone(), v)))
            .collect();
        let (r, _) = implied_from("realized vol", vol(&p.index), &vols, &self.weights, p);
        Ok(r.map_err(|e| format!("realized: {e} ({} sessions of bars needed)", n + 1)))
    }
}

impl Job for Correlation {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let p = &self.params;
        let conn = ctx.conn;
        conn.execute(
            "DELETE FROM correlation WHERE as_of = ? AND quote_time = ? AND index_symbol = ?",
            params![ctx.as_of, ctx.quote_time, p.index],
        )?;

        // Today, from compute_vol's ATM IVs.
        let mut ivs: HashMap<String, f64> = HashMap::new();
        let mut stmt = conn.prepare(
            "SELECT symbol, atm_iv_30d FROM vol_metrics WHERE as_of = ? AND quote_time = ? AND atm_iv_30d IS NOT NULL",
        )?;
        for r in stmt.query_map(params![ctx.as_of, ctx.quote_time], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
        })? {
            let (s, v) = r?;
            ivs.insert(s, v);
        }
        if ivs.is_empty() {
            return Err(JobError::Failed(format!(
                "no ATM IVs in vol_metrics for {}: run compute_vol for this session first",
                ctx.as_of
            )));
        }
        let index_iv = ivs.get(&p.index).copied();
        let (implied, n) = implied_from("30-day ATM IV", index_iv, &ivs, &self.weights, p);

        // History: earlier rows, and backfill of missing sessions from iv_history.
        let window = calendar::sessions_before(ctx.as_of, p.zscore_sessions);
        let mut rows = 0u64;
        let mut have: HashMap<NaiveDate, Option<f64>> = HashMap::new();
        if let Some(from) = window.first() {
            // One value per session: its first snapshot's.
            let mut s = conn.prepare(
                "SELECT as_of, arg_min(implied_corr, quote_time) FROM correlation
                 WHERE index_symbol = ? AND as_of >= ? AND as_of < ? GROUP BY as_of",
            )?;
            for r in s.query_map(params![p.index, from, ctx.as_of], |r| {
                Ok((r.get::<_, NaiveDate>(0)?, r.get::<_, Option<f64>>(1)?))
            })? {
                let (d, v) = r?;
                have.insert(d, v);
            }
            let missing: Vec<NaiveDate> = window
                .iter()
                .copied()
                .filter(|d| !have.contains_key(d))
                .collect();
            if !missing.is_empty() {
                let mut by_date: HashMap<NaiveDate, HashMap<String, f64>> = HashMap::new();
                let mut s = conn.prepare(
                    "SELECT date, symbol, atm_iv_30d FROM iv_history WHERE date >= ? AND date < ?",
                )?;
                for r in s.query_map(params![from, ctx.as_of], |r| {
                    Ok((
                        r.get::<_, NaiveDate>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, f64>(2)?,
                    ))
                })? {
                    let (d, sym, v) = r?;
                    by_date.entry(d).or_default().insert(sym, v);
                }
                for d in missing {
                    let Some(day) = by_date.get(&d) else { continue };
                    let (r, n) = implied_from(
                        "30-day ATM IV",
                        day.get(&p.index).copied(),
                        day,
                        &self.weights,
                        p,
                    );
                    conn.execute(
                        "INSERT INTO correlation VALUES (?, ?, ?, 'iv_history', ?, NULL, ?, ?, 0, NULL, NULL, NULL, ?, ?)",
                        params![d, d.and_time(ctx.quote_time.time()), p.index, r.as_ref().ok(), n as i32, p.zscore_sessions as i32, r.as_ref().err(), ctx.run_id],
                    )?;
                    have.insert(d, r.ok());
                    rows += 1;
                }
            }
        }
        let history: Vec<f64> = window
            .iter()
            .filter_map(|d| have.get(d).copied().flatten())
            .collect();
        let realized = self.realized(ctx)?;
        let z = implied.as_ref().ok().and_then(|c| {
            if history.len() < p.zscore_sessions {
                None
            } else {
                zscore(&history, *c)
            }
        });
        let mut notes: Vec<String> = Vec::new();
        if let Err(e) = &implied {
            notes.push(e.clone());
        } else if history.len() < p.zscore_sessions {
            notes.push(format!(
                "no Z-score: {} of the {} sessions of implied-correlation history needed",
                history.len(),
                p.zscore_sessions
            ));
        }
        if let Err(e) = &realized {
            notes.push(e.clone());
        }
        let note = (!notes.is_empty()).then(|| notes.join("; "));
        conn.execute(
            "INSERT INTO correlation VALUES (?, ?, ?, 'chains', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                ctx.as_of,
                ctx.quote_time,
                p.index,
                implied.as_ref().ok(),
                realized.as_ref().ok(),
                n as i32,
                p.zscore_sessions as i32,
                history.len() as i32,
                z.map(|z| z.0),
                z.map(|z| z.1),
                z.map(|z| z.2),
                note,
                ctx.run_id,
            ],
        )?;
        rows += 1;
        let fmt = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "n/a".into());
        let mut summary = format!(
            "{}: implied {} ({} components, weights from {}), realized {}, Z {}",
            p.index,
            fmt(implied.as_ref().ok().copied()),
            n,
            self.weights_from,
            fmt(realized.as_ref().ok().copied()),
            z.map(|z| format!("{:+.2}", z.2))
                .unwrap_or_else(|| "n/a".into())
        );
        if rows > 1 {
            summary.push_str(&format!(
                "; {} earlier sessions filled from iv_history",
                rows - 1
            ));
        }
        if let Some(n) = &note {
            summary.push_str(&format!(" — {n}"));
        }
        Ok(JobOutput {
            rows_written: rows,
            summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_components_is_a_reason_not_a_number() {
        let p = Params::default();
        let weights: Vec<(String, f64)> = (0..30).map(|i| (format!("S{i}"), 0.02)).collect();
        let ivs: HashMap<String, f64> = (0..19).map(|i| (format!("S{i}"), 0.3)).collect();
        let (r, n) = implied_from("IV", Some(0.25), &ivs, &weights, &p);
        assert_eq!(n, 19);
        assert!(r.unwrap_err().contains("only 19 components"));
        let ivs: HashMap<String, f64> = (0..20).map(|i| (format!("S{i}"), 0.3)).collect();
        let (r, _) = implied_from("IV", Some(0.3), &ivs, &weights, &p);
        assert!(
            (r.unwrap() - 1.0).abs() < 1e-12,
            "all at 0.3 and the index at 0.3: ρ = 1"
        );
    }
}
