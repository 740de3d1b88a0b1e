//! `fetch_chains` — underlying bars and option chains for the universe, from the
//! configured source, into `underlying_bars`, `underlying_quotes`, `option_quotes`
//! (and `quote_rejects` for quotes that fail validation). Backfills the lookback later
//! jobs need (`underlying_bars`, `iv_history`) when the store lacks it, and records
//! each backfill in `backfills`.
//!
//! Key: `as_of` for quotes; (`date`, `symbol`) for bars and IV history. A re-run
//! replaces the day's quotes and the bars it owns, and inserts only missing history.

use super::{failpoint, Job, JobContext, JobDef, JobError, JobOutput, Prepared};
use crate::calendar;
use crate::config::{Config, ConfigError, JobFile};
use crate::model::{DailyBar, OptionQuote, Settlement};
use crate::sources::{self, MarketData, SourceReject, UnderlyingQuote};
use chrono::{NaiveDate, NaiveDateTime};
use duckdb::{params, Connection};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};

pub const DEF: JobDef = JobDef {
    name: "fetch_chains",
    about: "underlying bars and option chains for the universe from the configured source",
    writes: &[
        "underlying_bars",
        "underlying_quotes",
        "option_quotes",
        "quote_rejects",
        "iv_history",
        "backfills",
        "intraday_bars",
        "earnings_dates",
        "futures_quotes",
    ],
    reads_chains: true,
    prepare,
    daily: true,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Symbols to fetch; empty means the source's whole default universe.
    pub symbols: Vec<String>,
    /// List expirations up to this many calendar days out.
    pub max_expiry_days: u32,
    /// Sessions of daily bars and ATM-IV history kept available for later jobs
    /// (historical vol, IV rank, Z-scores); missing sessions are backfilled.
    pub history_sessions: u32,
    /// Futures roots whose quotes are stored (`futures_quotes`), e.g. `["MES"]`.
    pub futures: Vec<String>,
    /// At an intraday slot: the symbols fetched (the intraday strategies' underlyings and
    /// VIX), with expiries up to `slot_max_expiry_days` out, instead of the daily run's.
    pub slot_symbols: Vec<String>,
    pub slot_max_expiry_days: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            symbols: Vec::new(),
            max_expiry_days: 400,
            history_sessions: 260,
            futures: Vec::new(),
            slot_symbols: ["SPY", "QQQ", "SPX", "VIX"].map(String::from).to_vec(),
            slot_max_expiry_days: 7,
        }
    }
}

impl Params {
    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Invalid {
            file: file.to_string(),
            message,
        };
        if !(1..=1100).contains(&self.max_expiry_days) {
            return Err(bad(format!(
                "params.max_expiry_days = {}: expected 1 to 1100 calendar days",
                self.max_expiry_days
            )));
        }
        if !(1..=1100).contains(&self.slot_max_expiry_days) {
            return Err(bad(format!(
                "params.slot_max_expiry_days = {}: expected 1 to 1100 calendar days",
                self.slot_max_expiry_days
            )));
        }
        if self.history_sessions > 5000 {
            return Err(bad(format!(
                "params.history_sessions = {}: expected at most 5000 sessions",
                self.history_sessions
            )));
        }
        if let Some(r) = self
            .futures
            .iter()
            .find(|r| crate::trading::futures::product(r).is_none())
        {
            return Err(bad(format!(
                "params.futures: '{r}' is not a futures product optdesk knows ({})",
                crate::trading::futures::PRODUCTS
                    .iter()
                    .map(|p| p.root)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for (key, s) in self
            .symbols
            .iter()
            .map(|s| ("symbols", s))
            .chain(self.slot_symbols.iter().map(|s| ("slot_symbols", s)))
        {
            if s.is_empty()
                || s.len() > 6
                || !s
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            {
                return Err(bad(format!(
                    "params.{key}: '{s}' is not a ticker (1–6 upper-case letters or digits)"
                )));
            }
        }
        Ok(())
    }
}

fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    let (file, text): (JobFile<Params>, String) = config.job(DEF.name)?;
    let path = config.dir.join("fetch_chains.toml").display().to_string();
    file.params.validate(&path)?;
    crate::sources::check_symbols(
        config,
        &config.dir.join("fetch_chains.toml"),
        "params.symbols",
        &file.params.symbols,
    )?;
    if !file.slots.is_empty() {
        crate::sources::check_symbols(
            config,
            &config.dir.join("fetch_chains.toml"),
            "params.slot_symbols",
            &file.params.slot_symbols,
        )?;
    }
    Ok(Prepared {
        def: &DEF,
        enabled: file.enabled,
        slots: file.slots,
        config_hash: config.hash_with(&text),
        job: Box::new(FetchChains {
            params: file.params,
        }),
    })
}

pub struct FetchChains {
    pub params: Params,
}

impl Job for FetchChains {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let source = sources::from_config(ctx.config, ctx.conn)?;
        run_with_source(&self.params, source.as_ref(), ctx)
    }
}

pub fn run_with_source(
    params: &Params,
    source: &dyn MarketData,
    ctx: &JobContext,
) -> Result<JobOutput, JobError> {
    let conn = ctx.conn;
    let as_of = ctx.as_of;
    // A slot fetches only what the intraday strategies trade, to a week out.
    let (symbols, max_expiry_days) = match ctx.slot {
        Some(_) if !params.slot_symbols.is_empty() => {
            (params.slot_symbols.clone(), params.slot_max_expiry_days)
        }
        _ if params.symbols.is_empty() => (source.default_symbols(), params.max_expiry_days),
        _ => (params.symbols.clone(), params.max_expiry_days),
    };
    let qt = ctx.quote_time;
    let snap = source.snapshot(qt, &symbols, max_expiry_days)?;
    for r in crate::ibkr::take_reconnects() {
        crate::store::compliance::record_drill(conn, "reconnect", true, &r)?;
    }

    // This snapshot's quotes replace an earlier run's of the same snapshot; other
    // snapshots of the day (intraday slots) are left alone.
    for table in ["option_quotes", "underlying_quotes", "quote_rejects"] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE as_of = ? AND quote_time = ?"),
            params![as_of, qt],
        )?;
    }
    // What the source could not read, then what fails the quote checks: each kept out
    // with its rule and what was received.
    let mut rejects: Vec<SourceReject> = snap.rejects.clone();
    let mut good: Vec<&OptionQuote> = Vec::with_capacity(snap.quotes.len());
    let mut seen: std::collections::HashSet<(&str, String)> =
        std::collections::HashSet::with_capacity(snap.quotes.len());
    for q in &snap.quotes {
        // A contract quoted twice in one snapshot: the first quote stands.
        let checked = q.check(as_of).and_then(|()| {
            if seen.insert((q.underlying.as_str(), q.contract())) {
                Ok(())
            } else {
                Err(crate::model::ModelError::Duplicate(q.contract()))
            }
        });
        match checked {
            Ok(()) => good.push(q),
            Err(e) => rejects.push(SourceReject {
                underlying: q.underlying.clone(),
                contract: q.contract(),
                rule: e.rule(),
                reason: e.to_string(),
                raw: format!(
                    "{},{},{},{},{},{},{},{}",
                    q.underlying,
                    q.root,
                    q.expiry,
                    q.strike,
                    q.right.code(),
                    q.bid,
                    q.ask,
                    q.underlying_price
                ),
            }),
        }
    }
    let mut rows = append_quotes(conn, as_of, qt, &good, source.name(), ctx.run_id)?;
    rows += append_underlyings(
        conn,
        as_of,
        qt,
        &snap.underlyings,
        source.name(),
        ctx.run_id,
    )?;
    for r in &rejects {
        conn.execute(
            "INSERT INTO quote_rejects (as_of, quote_time, underlying, contract, reason, source, run_id, rule, raw)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                as_of,
                qt,
                r.underlying,
                r.contract,
                r.reason,
                source.name(),
                ctx.run_id,
                r.rule,
                r.raw
            ],
        )?;
    }
    rows += rejects.len() as u64;
    failpoint(DEF.name, "mid")?;

    // Daily bars: the sessions that have closed by the snapshot.
    let session = calendar::session(as_of)
        .map_err(|e| JobError::Failed(e.to_string()))?
        .ok_or_else(|| JobError::Failed(format!("{as_of} is not an NYSE session")))?;
    let mut window = calendar::sessions_before(as_of, params.history_sessions.max(1) as usize);
    if qt.time() >= session.close {
        window.push(as_of);
    }
    let Some(&latest) = window.last() else {
        return Err(JobError::Failed(format!(
            "{as_of} is the first session of the calendar: there is no earlier session to take bars from"
        )));
    };
    let bars = sync_bars(conn, source, &symbols, &window, latest, ctx.run_id)?;
    rows += bars.rows;

    // ATM implied-vol history for lookbacks, where the source can give it.
    let iv_window = calendar::sessions_before(as_of, params.history_sessions as usize);
    let iv = sync_iv_history(conn, source, &symbols, &iv_window, ctx.run_id)?;
    rows += iv.rows;

    let mut backfill_notes = Vec::new();
    for (kind, b) in [("daily_bars", &bars), ("atm_iv", &iv)] {
        if let Some((from, to, n_sym, n_rows)) = b.backfill {
            conn.execute(
                "INSERT INTO backfills VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    ctx.run_id,
                    as_of,
                    kind,
                    n_sym as i64,
                    from,
                    to,
                    n_rows as i64,
                    if kind == "daily_bars" {
                        source.bars_source()
                    } else {
                        source.name()
                    }
                ],
            )?;
            rows += 1;
            backfill_notes.push(format!(
                "backfilled {n_rows} {} ({from} to {to}, {n_sym} symbols)",
                if kind == "daily_bars" {
                    "daily bars"
                } else {
                    "ATM-IV history rows"
                }
            ));
        }
    }
    rows += super::intraday::store_session_data(ctx, source, &symbols, &mut backfill_notes)?;
    let (n, futures_note) = super::futures::fetch_quotes(&params.futures, source, ctx)?;
    rows += n;
    let chains = snap.underlyings.len();
    let mut summary = format!(
        "{chains} underlyings, {} option quotes at {} from {}; bars through {latest}",
        good.len(),
        qt.format("%H:%M"),
        source.name()
    );
    if !rejects.is_empty() {
        // Why, by kind: the reason's words before its numbers.
        let mut why: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &rejects {
            *why.entry(r.rule).or_default() += 1;
        }
        summary.push_str(&format!(
            "; {} quotes rejected ({}; see quote_rejects)",
            rejects.len(),
            why.iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for n in &snap.notes {
        summary.push_str("; ");
        summary.push_str(n);
    }
    if let Some(n) = futures_note {
        summary.push_str(&format!("; {n}"));
    }
    if let Some(short) = bars.short_history {
        summary.push_str(&format!("; {short}"));
    }
    for n in backfill_notes {
        summary.push_str("; ");
        summary.push_str(&n);
    }
    if iv.unavailable {
        summary.push_str(&format!("; {} gives no ATM-IV history", source.name()));
    }
    Ok(JobOutput {
        rows_written: rows,
        summary,
    })
}

fn append_quotes(
    conn: &Connection,
    as_of: NaiveDate,
    qt: NaiveDateTime,
    quotes: &[&OptionQuote],
    source: &str,
    run_id: i64,
) -> Result<u64, duckdb::Error> {
    // One Arrow batch (crate::store::bulk), the columns in the table's order.
    let n = quotes.len();
    let cash = |q: &OptionQuote| matches!(q.settlement, Settlement::Cash);
    crate::store::bulk::Batch::new()
        .date("as_of", std::iter::repeat_n(as_of, n))
        .timestamp("quote_time", std::iter::repeat_n(qt, n))
        .str("underlying", quotes.iter().map(|q| &q.underlying))
        .str("contract", quotes.iter().map(|q| q.contract()))
        .str("root", quotes.iter().map(|q| &q.root))
        .date("expiry", quotes.iter().map(|q| q.expiry))
        .f64("strike", quotes.iter().map(|q| q.strike.to_f64()))
        .str("put_call", quotes.iter().map(|q| q.right.code()))
        .str(
            "style",
            quotes
                .iter()
                .map(|q| if cash(q) { "european" } else { "american" }),
        )
        .str(
            "settlement",
            quotes
                .iter()
                .map(|q| if cash(q) { "cash" } else { "physical" }),
        )
        .i32("multiplier", std::iter::repeat_n(100i32, n))
        .f64("bid", quotes.iter().map(|q| q.bid.to_f64()))
        .f64("ask", quotes.iter().map(|q| q.ask.to_f64()))
        .i32("bid_size", quotes.iter().map(|q| q.bid_size))
        .i32("ask_size", quotes.iter().map(|q| q.ask_size))
        .i64("volume", quotes.iter().map(|q| q.volume))
        .i64("open_interest", quotes.iter().map(|q| q.open_interest))
        .f64(
            "underlying_price",
            quotes.iter().map(|q| q.underlying_price.to_f64()),
        )
        .opt_f64("source_iv", quotes.iter().map(|q| q.source_iv))
        .str("source", std::iter::repeat_n(source, n))
        .i64("run_id", std::iter::repeat_n(run_id, n))
        .append(conn, "option_quotes")
}

fn append_underlyings(
    conn: &Connection,
    as_of: NaiveDate,
    qt: NaiveDateTime,
    u: &[UnderlyingQuote],
    source: &str,
    run_id: i64,
) -> Result<u64, duckdb::Error> {
    let mut app = conn.appender("underlying_quotes")?;
    for x in u {
        app.append_row(params![
            as_of,
            qt,
            x.symbol,
            x.price.to_f64(),
            x.rate,
            x.div_yield,
            source,
            run_id
        ])?;
    }
    app.flush()?;
    Ok(u.len() as u64)
}

struct SyncResult {
    rows: u64,
    /// (from, to, symbols, rows) of history filled in beyond the latest session.
    backfill: Option<(NaiveDate, NaiveDate, usize, u64)>,
    short_history: Option<String>,
    unavailable: bool,
}

fn existing_pairs(
    conn: &Connection,
    table: &str,
    symbols: &[String],
    from: NaiveDate,
    to: NaiveDate,
) -> Result<HashSet<(NaiveDate, String)>, duckdb::Error> {
    let wanted: HashSet<&str> = symbols.iter().map(|s| s.as_str()).collect();
    let mut stmt = conn.prepare(&format!(
        "SELECT date, symbol FROM {table} WHERE date BETWEEN ? AND ?"
    ))?;
    let rows = stmt.query_map(params![from, to], |r| {
        Ok((r.get::<_, NaiveDate>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = HashSet::new();
    for r in rows {
        let (d, s) = r?;
        if wanted.contains(s.as_str()) {
            out.insert((d, s));
        }
    }
    Ok(out)
}

/// Refresh the latest closed session's bars and insert any missing in the window.
fn sync_bars(
    conn: &Connection,
    source: &dyn MarketData,
    symbols: &[String],
    window: &[NaiveDate],
    latest: NaiveDate,
    run_id: i64,
) -> Result<SyncResult, JobError> {
    let from = window[0];
    let mut have = existing_pairs(conn, "underlying_bars", symbols, from, latest)?;
    // The latest session's bar is this run's own output: fetch it again, and replace a
    // stored one only when the source sends its replacement.
    let missing_dates: Vec<NaiveDate> = window
        .iter()
        .copied()
        .filter(|d| *d == latest || symbols.iter().any(|s| !have.contains(&(*d, s.clone()))))
        .collect();
    let fetched: Vec<DailyBar> = source.daily_bars(symbols, &missing_dates)?;
    let mut del = conn.prepare("DELETE FROM underlying_bars WHERE date = ? AND symbol = ?")?;
    for b in fetched.iter().filter(|b| b.date == latest) {
        if have.remove(&(b.date, b.symbol.clone())) {
            del.execute(params![b.date, b.symbol])?;
        }
    }
    let mut app = conn.appender("underlying_bars")?;
    let mut rows = 0u64;
    let mut filled: BTreeMap<NaiveDate, u64> = BTreeMap::new();
    let mut filled_symbols = BTreeSet::new();
    for b in &fetched {
        if have.contains(&(b.date, b.symbol.clone())) {
            continue;
        }
        app.append_row(params![
            b.date,
            b.symbol,
            b.open.to_f64(),
            b.high.to_f64(),
            b.low.to_f64(),
            b.close.to_f64(),
            b.volume,
            b.dividend.to_f64(),
            b.split_ratio,
            source.bars_source(),
            run_id,
        ])?;
        rows += 1;
        if b.date != latest {
            *filled.entry(b.date).or_default() += 1;
            filled_symbols.insert(b.symbol.clone());
        }
    }
    app.flush()?;
    let backfill = match (filled.keys().next(), filled.keys().last()) {
        (Some(a), Some(b)) => Some((*a, *b, filled_symbols.len(), filled.values().sum())),
        _ => None,
    };
    // Coverage per symbol: a symbol the source gave fewer bars for is named.
    let mut per_symbol: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (_, s) in &have {
        *per_symbol.entry(s.as_str()).or_default() += 1;
    }
    for b in &fetched {
        *per_symbol.entry(b.symbol.as_str()).or_default() += 1;
    }
    let short: Vec<String> = symbols
        .iter()
        .filter(|s| per_symbol.get(s.as_str()).copied().unwrap_or(0) < window.len())
        .map(|s| format!("{s} ({})", per_symbol.get(s.as_str()).copied().unwrap_or(0)))
        .collect();
    let short_history = (!short.is_empty()).then(|| {
        let shown: Vec<&str> = short.iter().take(5).map(|s| s.as_str()).collect();
        format!(
            "{} of {} symbols have fewer than the {} sessions of bars requested from {}: {}{}",
            short.len(),
            symbols.len(),
            window.len(),
            source.bars_source(),
            shown.join(", "),
            if short.len() > 5 { ", ..." } else { "" }
        )
    });
    Ok(SyncResult {
        rows,
        backfill,
        short_history,
        unavailable: false,
    })
}

/// Insert the ATM-IV history the source can give for sessions missing in the window.
fn sync_iv_history(
    conn: &Connection,
    source: &dyn MarketData,
    symbols: &[String],
    window: &[NaiveDate],
    run_id: i64,
) -> Result<SyncResult, JobError> {
    let none = SyncResult {
        rows: 0,
        backfill: None,
        short_history: None,
        unavailable: false,
    };
    let (Some(&from), Some(&to)) = (window.first(), window.last()) else {
        return Ok(none);
    };
    let have = existing_pairs(conn, "iv_history", symbols, from, to)?;
    let missing: Vec<NaiveDate> = window
        .iter()
        .copied()
        .filter(|d| symbols.iter().any(|s| !have.contains(&(*d, s.clone()))))
        .collect();
    if missing.is_empty() {
        return Ok(none);
    }
    let Some(hist) = source.atm_iv_history(symbols, &missing)? else {
        return Ok(SyncResult {
            unavailable: true,
            ..none
        });
    };
    let mut app = conn.appender("iv_history")?;
    let mut rows = 0u64;
    let mut filled: BTreeMap<NaiveDate, u64> = BTreeMap::new();
    let mut filled_symbols = BTreeSet::new();
    for (d, s, iv) in &hist {
        if have.contains(&(*d, s.clone())) || !iv.is_finite() {
            continue;
        }
        app.append_row(params![d, s, iv, source.name(), run_id])?;
        rows += 1;
        if *d != to {
            *filled.entry(*d).or_default() += 1;
            filled_symbols.insert(s.clone());
        }
    }
    app.flush()?;
    let backfill = match (filled.keys().next(), filled.keys().last()) {
        (Some(a), Some(b)) => Some((*a, *b, filled_symbols.len(), filled.values().sum())),
        _ => None,
    };
    Ok(SyncResult {
        rows,
        backfill,
        short_history: None,
        unavailable: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn params_out_of_range_name_the_key() {
        let p = Params {
            max_expiry_days: 0,
            ..Params::default()
        };
        let e = p
            .validate("jobs/fetch_chains.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("jobs/fetch_chains.toml") && e.contains("max_expiry_days"),
            "{e}"
        );
        let p = Params {
            symbols: vec!["spy".into()],
            ..Params::default()
        };
        assert!(p.validate("f").unwrap_err().to_string().contains("'spy'"));
    }

    #[test]
    fn unknown_key_in_file_fails_at_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fetch_chains.toml"),
            "[params]\nmax_expiry = 30\n",
        )
        .unwrap();
        let cfg = Config::load(dir.path(), true).unwrap();
        let e = prepare(&cfg).err().unwrap().to_string();
        assert!(
            e.contains("fetch_chains.toml") && e.contains("max_expiry") && e.contains("line 2"),
            "{e}"
        );
        let _ = Path::new("x");
    }
}
