//! `select_trades` — every enabled strategy proposes orders from the day's stored
//! state; the risk gate approves or refuses each (stored in `risk_decisions` with its
//! rule and reason); approved orders go to the broker (`jobs/desk.toml [broker]`)
//! through the order router: the intent is committed before the broker sees it, its
//! life is appended to `order_events`, its fills to `fills` and `cash_ledger`. What each
//! strategy proposed or passed on is in `signals`.
//!
//! First, orders an earlier run left open (a crash after an intent was committed) are
//! completed by asking the broker, never sent twice. A re-run for a snapshot that
//! already has decisions adds nothing more: decisions, orders, fills and cash are
//! append-only, and order ids carry the snapshot's time. With `signal_only = true`
//! signals and decisions are stored and no order is sent; `--dry-run` keeps nothing.

use super::BrokerChoice;
use super::{Job, JobContext, JobDef, JobError, JobOutput, Prepared};
use crate::config::{Config, ConfigError};
use crate::model::identifiers::Intent;
use crate::model::Price;
use crate::store::repo::{day, orders};
use crate::trading::risk::{evaluate_with, Decision, RiskConfig};
use crate::trading::strategies::{registry, Cadence, Registry};
use crate::trading::OrderStatus;
use duckdb::params;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

pub const DEF: JobDef = JobDef {
    name: "select_trades",
    about: "strategies propose, the risk gate decides, the broker fills",
    writes: &[
        "signals",
        "scanned_chains",
        "risk_decisions",
        "order_legs",
        "order_events",
        "fills",
        "cash_ledger",
    ],
    reads_chains: true,
    prepare,
    daily: true,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Cash deposited when the ledger is empty, dollars.
    pub starting_cash: f64,
    /// Store signals and risk decisions, send no orders.
    pub signal_only: bool,
    /// The kill file: while it exists, no new entries (relative to the project folder).
    pub kill_file: String,
    /// Event days (CSV with a `date` column; `#` comments): no new entries on them.
    pub events_file: String,
    /// Moved to `jobs/desk.toml [broker] fill_toward_mid`; still read from here, with a
    /// note, when desk.toml does not set it.
    pub fill_toward_mid: Option<f64>,
    /// Moved to `jobs/desk.toml [broker] commission_per_contract` (as above).
    pub commission_per_contract: Option<f64>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            starting_cash: 400_000.0,
            signal_only: false,
            kill_file: "data/KILL".into(),
            events_file: "data/events.csv".into(),
            fill_toward_mid: None,
            commission_per_contract: None,
        }
    }
}

/// `jobs/select_trades.toml`: the job's envelope plus the risk gate's limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    slots: Vec<String>,
    #[serde(default)]
    params: Params,
    #[serde(default)]
    risk: RiskConfig,
}

fn yes() -> bool {
    true
}

impl Default for FileShape {
    fn default() -> Self {
        FileShape {
            enabled: true,
            slots: Vec::new(),
            params: Params::default(),
            risk: RiskConfig::default(),
        }
    }
}

/// `params.events_file` as configured (empty: the blackout is off).
pub fn events_file(config: &Config) -> Result<String, ConfigError> {
    let path = config.dir.join("select_trades.toml");
    Ok(match config.read_text("select_trades.toml")? {
        Some(t) => {
            crate::config::parse::<FileShape>(&path, &t)?
                .params
                .events_file
        }
        None => Params::default().events_file,
    })
}

fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    let path = config.dir.join("select_trades.toml");
    let (shape, text) = match config.read_text("select_trades.toml")? {
        Some(t) => (crate::config::parse::<FileShape>(&path, &t)?, t),
        None => (FileShape::default(), String::new()),
    };
    let bad = |m: String| ConfigError::Invalid {
        file: path.display().to_string(),
        message: m,
    };
    crate::config::check_slots(&path, &shape.slots)?;
    let p = &shape.params;
    if !(p.starting_cash.is_finite() && p.starting_cash > 0.0) {
        return Err(bad(format!(
            "params.starting_cash = {}: expected a positive amount of dollars",
            p.starting_cash
        )));
    }
    let r = &shape.risk;
    for (k, v) in [
        ("max_loss_per_trade", r.max_loss_per_trade),
        ("daily_loss_cap", r.daily_loss_cap),
        ("vol_move_multiple", r.vol_move_multiple),
        ("vix_jump_points", r.vix_jump_points),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(bad(format!(
                "risk.{k} = {v}: expected a positive, finite number"
            )));
        }
    }
    for (k, v) in [
        ("max_open_per_strategy", r.max_open_per_strategy),
        ("max_open_per_underlying", r.max_open_per_underlying),
    ] {
        if v == 0 {
            return Err(bad(format!(
                "risk.{k} = 0: expected at least 1 (the kill switch stops all entries)"
            )));
        }
    }
    let strategies = registry(config)?;
    for s in strategies.enabled() {
        let file = config
            .dir
            .join("strategies")
            .join(format!("{}.toml", s.name()));
        for (key, symbols) in s.symbols() {
            crate::sources::check_symbols(config, &file, key, &symbols)?;
        }
        // A strategy's own profile may only tighten the desk's hard limits.
        if let Some(r) = s.risk_profile() {
            r.within(&shape.risk).map_err(|m| ConfigError::Invalid {
                file: file.display().to_string(),
                message: format!("risk.{m} ({})", path.display()),
            })?;
        }
    }
    let (broker, notes) = BrokerChoice::from_config(config)?;
    for n in &notes {
        eprintln!("note: {n}");
    }
    let kill_file = config.resolve(&p.kill_file);
    // `events_file = ""` turns the blackout off; the default path falls back to the
    // shipped dates when the project has no `data/events.csv`.
    let blackout_dates = if p.events_file.is_empty() {
        Default::default()
    } else {
        crate::refdata::load_events(
            &config.resolve(&p.events_file),
            p.events_file == crate::refdata::EVENTS_FILE,
        )
        .map_err(|m| bad(format!("params.events_file: {m}")))?
    };
    Ok(Prepared {
        def: &DEF,
        enabled: shape.enabled,
        slots: shape.slots.clone(),
        config_hash: config.hash_with(&format!("{text}\n{}", strategies.text)),
        job: Box::new(SelectTrades {
            params: shape.params,
            risk: shape.risk,
            strategies,
            broker,
            kill_file,
            blackout_dates,
        }),
    })
}

/// The kill file named in `jobs/select_trades.toml` (default `data/KILL`), resolved
/// against the project folder.
pub fn kill_file_path(config: &Config) -> Result<std::path::PathBuf, ConfigError> {
    Ok(kill_settings(config)?.0)
}

/// The kill file (as [`kill_file_path`]) and the configuration's own switch
/// (`risk.kill_switch`) of `jobs/select_trades.toml`.
pub fn kill_settings(config: &Config) -> Result<(std::path::PathBuf, bool), ConfigError> {
    let path = config.dir.join("select_trades.toml");
    let shape = match config.read_text("select_trades.toml").ok().flatten() {
        Some(t) => crate::config::parse::<FileShape>(&path, &t)?,
        None => FileShape::default(),
    };
    Ok((
        config.resolve(&shape.params.kill_file),
        shape.risk.kill_switch,
    ))
}

pub struct SelectTrades {
    pub params: Params,
    pub risk: RiskConfig,
    pub strategies: Registry,
    pub broker: BrokerChoice,
    pub kill_file: std::path::PathBuf,
    pub blackout_dates: std::collections::BTreeSet<chrono::NaiveDate>,
}

impl Job for SelectTrades {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let conn = ctx.conn;
        let mut broker = self.broker.make(conn, ctx.as_of, ctx.quote_time);
        let mut router = ctx.router(broker.as_mut(), DEF.name);
        let resumed = router.resume_open()?;
        let mut rows = 0u64;
        let resumed_note = if resumed.is_empty() {
            String::new()
        } else {
            rows += resumed
                .iter()
                .map(|p| 1 + 2 * p.fills.len() as u64)
                .sum::<u64>();
            format!(
                "; completed {} order(s) an earlier run left open ({})",
                resumed.len(),
                resumed
                    .iter()
                    .map(|p| format!("{} {}", p.order_ref, p.status.code()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        // A kill switch set to flatten: close everything, propose nothing.
        if self.risk.kill_flattens && (self.risk.kill_switch || self.kill_file.exists()) {
            let why = if self.risk.kill_switch {
                "kill switch (risk.kill_switch = true, risk.kill_flattens = true): close every open position".to_string()
            } else {
                format!(
                    "kill switch ({} exists, risk.kill_flattens = true): close every open position",
                    self.kill_file.display()
                )
            };
            let c = super::flatten::close_all(ctx, &mut router, &why)?;
            return Ok(JobOutput {
                rows_written: rows + c.written,
                summary: format!(
                    "kill switch on, set to flatten: no new entries; {}{resumed_note}",
                    c.summary(ctx)
                ),
            });
        }
        // A snapshot whose run completed is decided: nothing more. A run that died
        // after committing some decisions (and their intents) is continued: what it
        // decided stays decided, the rest is decided now.
        let slot = ctx
            .slot
            .map(|t| t.format("%H:%M").to_string())
            .unwrap_or_default();
        let completed: i64 = conn.query_row(
            "SELECT count(*) FROM job_runs WHERE job = 'select_trades' AND as_of = ? AND coalesce(slot, '') = ?
               AND status = 'ok' AND NOT dry_run",
            params![ctx.as_of, slot],
            |r| r.get(0),
        )?;
        // This snapshot's entries already decided, and what each did (one query for the
        // guard and for a continued run's replay).
        let decided = decided_outcomes(conn, ctx)?;
        if completed > 0 && !decided.is_empty() {
            return Ok(JobOutput {
                rows_written: rows,
                summary: format!(
                    "already decided for {} {} ({} decisions): decisions and orders are append-only, nothing added{resumed_note}",
                    ctx.as_of,
                    ctx.quote_time.format("%H:%M"),
                    decided.len()
                ),
            });
        }
        if day::cash(conn, ctx.as_of)? == Price::ZERO {
            let n: i64 = conn.query_row("SELECT count(*) FROM cash_ledger", [], |r| r.get(0))?;
            if n == 0 {
                conn.execute(
                    "INSERT INTO cash_ledger VALUES (?, 'deposit', ?, 'starting cash', ?)",
                    params![ctx.as_of, self.params.starting_cash, ctx.run_id],
                )?;
                rows += 1;
            }
        }
        let mut day = ctx.load_day()?;
        // The daily run proposes the daily strategies; a slot, the intraday ones.
        day.session.daily_run = ctx.slot.is_none();
        let cadence = if day.session.daily_run {
            Cadence::Daily
        } else {
            Cadence::Intraday
        };
        // Continuing a run that died: decide from the book as it stood before this
        // snapshot's own entries, then replay what each decided order did, so the rest
        // is decided exactly as the uninterrupted run would have.
        day.open_trades
            .retain(|t| !decided.contains_key(&t.order_ref));
        if day.underlyings.is_empty() {
            return Err(JobError::Failed(format!(
                "no vol_metrics for {} at {}: run compute_vol for this session first",
                ctx.as_of,
                ctx.quote_time.format("%H:%M")
            )));
        }
        for table in ["signals", "scanned_chains"] {
            conn.execute(
                &format!("DELETE FROM {table} WHERE as_of = ? AND quote_time = ?"),
                params![ctx.as_of, ctx.quote_time],
            )?;
        }
        let policy = |s: &str| self.strategies.margin_policy(s);
        let mut state = day::risk_state(
            conn,
            &day,
            &policy,
            self.kill_file.exists(),
            self.blackout_dates.clone(),
        )?;
        for cash in decided.values().filter_map(|o| o.filled_cash) {
            state.buying_power = state.buying_power - cash;
        }
        // The strategies' own risk profiles: their P&L today, closed trades, the
        // session's ranges, VIX and earnings (read only when a strategy with a profile
        // proposes at this snapshot: it reads the fills).
        let profiled: Vec<&str> = self
            .strategies
            .enabled()
            .filter(|s| s.risk_profile().is_some())
            .filter(|s| s.cadence() == Cadence::Daily || ctx.slot.is_some())
            .map(|s| s.name())
            .collect();
        if !profiled.is_empty() {
            day::intraday_risk(conn, &day, &profiled, &mut state)?;
        }
        let (mut proposed, mut approved, mut refused, mut filled, mut rejected, mut pending) =
            (0, 0, 0, 0, 0, 0);
        let mut strategies = 0;
        for strategy in self.strategies.enabled().filter(|s| s.cadence() == cadence) {
            strategies += 1;
            let profile = strategy.risk_profile();
            // Outside its entry window a strategy is not asked: one pass per symbol,
            // recorded as its own passes are.
            let outside = match (profile.and_then(|r| r.window()), profile) {
                (Some((from, to)), Some(r)) => {
                    let now = ctx.quote_time.time();
                    (now < from || now > to).then(|| {
                        format!(
                            "{} is outside the entry window {}–{} (risk.entry_window = {:?})",
                            ctx.quote_time.format("%H:%M"),
                            from.format("%H:%M"),
                            to.format("%H:%M"),
                            r.entry_window
                        )
                    })
                }
                _ => None,
            };
            let out = match outside {
                Some(why) => crate::trading::strategies::Outcome {
                    proposals: Vec::new(),
                    skips: strategy
                        .symbols()
                        .into_iter()
                        .flat_map(|(_, symbols)| symbols)
                        .map(|u| (u, why.clone()))
                        .collect(),
                },
                None => strategy.propose(&day),
            };
            for (u, expiry) in day.take_scanned() {
                conn.execute(
                    "INSERT INTO scanned_chains VALUES (?, ?, ?, ?, ?, ?)",
                    params![
                        ctx.as_of,
                        ctx.quote_time,
                        strategy.name(),
                        u,
                        expiry,
                        ctx.run_id
                    ],
                )?;
                rows += 1;
            }
            for (u, why) in &out.skips {
                conn.execute(
                    "INSERT INTO signals VALUES (?, ?, ?, ?, NULL, 'pass', ?, NULL, ?)",
                    params![
                        ctx.as_of,
                        ctx.quote_time,
                        strategy.name(),
                        u,
                        why,
                        ctx.run_id
                    ],
                )?;
                rows += 1;
            }
            for p in out.proposals {
                proposed += 1;
                let numbers = serde_json::to_string(
                    &p.numbers.iter().cloned().collect::<BTreeMap<String, f64>>(),
                )
                .unwrap_or_default();
                let reference = p.order.reference();
                conn.execute(
                    "INSERT INTO signals VALUES (?, ?, ?, ?, ?, 'propose', NULL, ?, ?)",
                    params![
                        ctx.as_of,
                        ctx.quote_time,
                        p.strategy,
                        p.underlying,
                        reference,
                        numbers,
                        ctx.run_id
                    ],
                )?;
                // Decided by a run that died after committing it: the signal is
                // rewritten, the decision and its order stand.
                if let Some(done) = decided.get(&reference) {
                    if let Some(cash) = done.filled_cash {
                        state.buying_power += cash;
                        state.count_opened(&p);
                    }
                    continue;
                }
                let decision = evaluate_with(&self.risk, profile, &state, p);
                let (p, reason) = match &decision {
                    Decision::Approved(a) => (a.inner(), None),
                    Decision::Refused {
                        proposal, reason, ..
                    } => (proposal, Some(reason.as_str())),
                };
                orders::write_decision(
                    conn,
                    ctx.as_of,
                    ctx.quote_time,
                    &p.strategy,
                    &p.underlying,
                    &reference,
                    reason.is_none(),
                    decision.rule(),
                    reason,
                    p.max_loss,
                    p.requirement,
                    Intent::Entry,
                    ctx.run_id,
                )?;
                rows += 2;
                let Decision::Approved(a) = decision else {
                    refused += 1;
                    continue;
                };
                approved += 1;
                if self.params.signal_only {
                    continue;
                }
                let legs = a.inner().order.legs.len() as u64;
                let placed = router.place(a.order())?;
                rows += 2 + legs;
                match placed.status {
                    OrderStatus::Filled | OrderStatus::PartlyFilled => {
                        filled += 1;
                        for f in &placed.fills {
                            rows += 2;
                            state.buying_power =
                                state.buying_power + f.premium_cash() - f.commission;
                        }
                        state.count_opened(a.inner());
                    }
                    OrderStatus::Rejected => rejected += 1,
                    _ => pending += 1,
                }
            }
        }
        let mut summary = format!(
            "{strategies} {kind} strategies: {proposed} proposals, {approved} approved, {refused} refused by the risk gate; {filled} filled, {rejected} rejected by the broker; buying power {}",
            state.buying_power,
            kind = if cadence == Cadence::Daily {
                "daily"
            } else {
                "intraday"
            }
        );
        if pending > 0 {
            summary.push_str(&format!(
                "; {pending} sent but not yet filled (the next run completes them)"
            ));
        }
        summary.push_str(&resumed_note);
        if self.params.signal_only {
            summary.push_str(" (signal only: no orders sent)");
        }
        if state.kill_file {
            summary.push_str(&format!(" — kill switch on ({})", self.kill_file.display()));
        }
        Ok(JobOutput {
            rows_written: rows,
            summary,
        })
    }
}

/// What an entry decided at this snapshot by an earlier (interrupted) run did: the
/// cash its fills moved, if it was approved and filled.
struct Decided {
    filled_cash: Option<Price>,
}

fn decided_outcomes(
    conn: &duckdb::Connection,
    ctx: &JobContext,
) -> Result<HashMap<String, Decided>, JobError> {
    let mut s = conn.prepare(
        "SELECT d.order_ref, d.decision = 'approved' AND coalesce(o.filled, false),
                coalesce((SELECT sum(c.amount) FROM cash_ledger c JOIN fills f ON c.reference = f.exec_id
                          WHERE f.order_ref = d.order_ref), 0)::DOUBLE
         FROM risk_decisions d
         LEFT JOIN (SELECT order_ref, bool_or(status IN ('filled', 'partly_filled')) AS filled
                    FROM orders GROUP BY order_ref) o USING (order_ref)
         WHERE d.as_of = ? AND d.quote_time = ? AND coalesce(d.intent, 'entry') = 'entry'",
    )?;
    let rows = s.query_map(params![ctx.as_of, ctx.quote_time], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, bool>(1)?,
            r.get::<_, f64>(2)?,
        ))
    })?;
    let mut out = HashMap::new();
    for r in rows {
        let (reference, filled, cash) = r?;
        out.insert(
            reference,
            Decided {
                filled_cash: filled.then(|| Price::from_f64(cash)),
            },
        );
    }
    Ok(out)
}

/// What `review_session` needs from this job's configuration: each strategy's rules
/// (enabled, intraday, its daily loss cap) and the event days of the blackout.
pub fn review_inputs(
    config: &Config,
) -> Result<
    (
        Vec<crate::store::compliance::StrategyRules>,
        std::collections::BTreeSet<chrono::NaiveDate>,
    ),
    ConfigError,
> {
    let path = config.dir.join("select_trades.toml");
    let shape = match config.read_text("select_trades.toml")? {
        Some(t) => crate::config::parse::<FileShape>(&path, &t)?,
        None => FileShape::default(),
    };
    let strategies = registry(config)?;
    let rules = strategies
        .strategies
        .iter()
        .map(|l| crate::store::compliance::StrategyRules {
            name: l.strategy.name().to_string(),
            enabled: l.enabled,
            intraday: l.strategy.cadence() == crate::trading::strategies::Cadence::Intraday,
            // The strategy's own cap where its risk profile sets one (never looser
            // than the desk's: refused at load), else the desk's.
            daily_loss_cap: l
                .strategy
                .risk_profile()
                .map_or(shape.risk.daily_loss_cap, |r| r.daily_loss_cap),
        })
        .collect();
    let p = &shape.params;
    let blackout = if p.events_file.is_empty() {
        Default::default()
    } else {
        crate::refdata::load_events(
            &config.resolve(&p.events_file),
            p.events_file == crate::refdata::EVENTS_FILE,
        )
        .map_err(|m| ConfigError::Invalid {
            file: path.display().to_string(),
            message: format!("params.events_file: {m}"),
        })?
    };
    Ok((rules, blackout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strategy_profile_looser_than_the_desk_is_refused_at_load_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("strategies")).unwrap();
        std::fs::write(
            dir.path().join("select_trades.toml"),
            "[risk]\nmax_loss_per_trade = 400.0\n",
        )
        .unwrap();
        // iron_condor's own $500 is looser than the desk's $400.
        let cfg = Config::load(dir.path(), true).unwrap();
        let e = prepare(&cfg).err().unwrap().to_string();
        assert!(
            e.contains("iron_condor.toml")
                && e.contains("risk.max_loss_per_trade = 500 is looser than the desk's hard limit risk.max_loss_per_trade = 400")
                && e.contains("select_trades.toml"),
            "{e}"
        );
        // Disabled, it is not checked; set within the desk's limit, it loads.
        std::fs::write(
            dir.path().join("strategies").join("iron_condor.toml"),
            "[risk]\nmax_loss_per_trade = 400.0\n",
        )
        .unwrap();
        let cfg = Config::load(dir.path(), true).unwrap();
        assert!(prepare(&cfg).is_ok());
        std::fs::write(
            dir.path().join("strategies").join("iron_condor.toml"),
            "enabled = false\n",
        )
        .unwrap();
        let cfg = Config::load(dir.path(), true).unwrap();
        assert!(prepare(&cfg).is_ok());
    }
}
