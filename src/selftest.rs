//! `optdesk selftest`: the drills behind the pre-live checklist, run for real on a
//! scratch store with the user's configuration on the simulated market, and recorded in
//! the user's store (`drills`), where `optdesk checklist` reads them.
//!
//! * `kill9_recovery`: `optdesk run daily` is killed twice, as kill -9 would
//!   (`OPTDESK_FAILPOINT=...:abort`: the process dies on the spot, nothing is flushed or
//!   unwound), once inside `fetch_chains` and once just before `select_trades` commits;
//!   each time the re-run must complete, the record reconcile (`check`) and no fill be
//!   recorded twice.
//! * `circuit_breakers`: on a session where the desk enters at least one trade, the
//!   same session is run again from a copy of the store with each breaker tripped (the
//!   kill switch, the event blackout, the volatility kill switch): every entry must be
//!   refused with that breaker's rule. The gate's own rules for the daily loss cap and
//!   the VIX jump are run on that session's proposals with the state that trips them.
//!
//! The scratch folder is removed when every drill passed, and kept (and named) when one
//! failed.

use crate::calendar;
use crate::config::Config;
use crate::store::compliance::record_drill;
use crate::store::Store;
use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variables a drill's child processes must not see: secrets (no email or
/// alert leaves a drill) and the caller's own store and folder.
const SCRUB: &[&str] = &[
    "OPTDESK_SMTP_HOST",
    "OPTDESK_SMTP_USER",
    "OPTDESK_SMTP_PASSWORD",
    "OPTDESK_TELEGRAM_TOKEN",
    "OPTDESK_TELEGRAM_CHAT_ID",
    "OPTDESK_WEBHOOK_URL",
    "OPTDESK_DB",
    "OPTDESK_JOBS",
    "OPTDESK_SOURCE",
    "OPTDESK_FAILPOINT",
];

/// One drill's outcome.
pub struct Outcome {
    pub drill: &'static str,
    pub passed: bool,
    pub detail: String,
}

struct Scratch {
    dir: PathBuf,
    exe: PathBuf,
}

impl Scratch {
    fn jobs(&self, variant: &str) -> PathBuf {
        self.dir.join(format!("jobs-{variant}"))
    }
    fn db(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.duckdb"))
    }
    /// `optdesk --db DB --jobs JOBS run daily --as-of D`, with `failpoint` set or not:
    /// (success, the last lines of its output).
    fn run_daily(
        &self,
        db: &Path,
        jobs: &Path,
        as_of: NaiveDate,
        failpoint: Option<&str>,
    ) -> Result<(bool, String)> {
        let mut c = Command::new(&self.exe);
        for v in SCRUB {
            c.env_remove(v);
        }
        c.env("OPTDESK_JOBS", jobs).arg("--db").arg(db).args([
            "run",
            "daily",
            "--as-of",
            &as_of.to_string(),
        ]);
        if let Some(f) = failpoint {
            c.env("OPTDESK_FAILPOINT", f);
        }
        let out = c.output().context("starting optdesk for a drill")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        Ok((
            out.status.success(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        ))
    }
}

/// The user's configuration folder copied with overrides: the simulated market, the
/// paper broker, no email, a small universe (so a drill takes seconds), plus `extra`.
fn write_config(config: &Config, to: &Path, extra: &[(&str, &str)]) -> Result<()> {
    let mut sets: Vec<String> = vec![
        "desk.desk.source=\"sim\"".into(),
        "desk.broker.kind=\"paper\"".into(),
        "email_report.enabled=false".into(),
        "fetch_chains.params.symbols=[\"SPY\",\"QQQ\",\"IWM\",\"VOO\",\"VTI\"]".into(),
        "fetch_chains.params.max_expiry_days=70".into(),
    ];
    // The drills run the daily pipeline: the intraday strategies (slots only) sit out,
    // and their profiles are not weighed against a drill's tripped desk limits.
    for s in ["put_write", "buy_write", "iron_condor", "zscore_reversion"] {
        sets.push(format!("{s}.enabled=false"));
    }
    sets.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
    let overrides = sets
        .iter()
        .map(|s| crate::backtest::overrides::parse(s).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let edited = crate::backtest::overrides::apply(&overrides, |rel| {
        config.read_text(rel).map_err(|e| e.to_string())
    })
    .map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(to.join("strategies"))?;
    // Every file of the user's folder, then the edited ones over them.
    for sub in ["", "strategies"] {
        let from = config.dir.join(sub);
        let Ok(entries) = std::fs::read_dir(&from) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml") {
                std::fs::copy(&p, to.join(sub).join(e.file_name()))?;
            }
        }
    }
    for (rel, text) in edited {
        std::fs::write(to.join(rel), text)?;
    }
    Ok(())
}

/// The `n` sessions before `today`, oldest first.
fn recent_sessions(today: NaiveDate, n: usize) -> Result<Vec<NaiveDate>> {
    let from = today - chrono::Duration::days(3 * n as i64 + 14);
    let mut s: Vec<NaiveDate> = calendar::sessions(from, today - chrono::Duration::days(1))?
        .into_iter()
        .map(|s| s.date)
        .collect();
    if s.len() < n {
        bail!("fewer than {n} sessions before today in the calendar");
    }
    Ok(s.split_off(s.len() - n))
}

/// Reconciles, no fill twice, every job's latest run of the session ok.
fn verify_store(db: &Path, as_of: NaiveDate) -> Result<String> {
    let store = Store::open_read(db, std::time::Duration::from_secs(30))?;
    let report = crate::store::check::check(&store.conn)?;
    if !report.problems.is_empty() {
        bail!(
            "check does not reconcile after the re-run: {}",
            report.problems.join("; ")
        );
    }
    let (fills, dup): (i64, i64) = store.conn.query_row(
        "SELECT count(*), count(*) - count(DISTINCT exec_id) FROM fills",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if dup != 0 {
        bail!("{dup} fill(s) recorded twice");
    }
    let bad: Option<String> = store.conn.query_row(
        "SELECT string_agg(job || ' ' || status, ', ') FROM (
             SELECT job, status, row_number() OVER (PARTITION BY job ORDER BY run_id DESC) AS n
             FROM job_runs WHERE as_of = ? AND slot IS NULL AND NOT dry_run)
         WHERE n = 1 AND status = 'failed'",
        duckdb::params![as_of],
        |r| r.get(0),
    )?;
    if let Some(b) = bad {
        bail!("after the re-run, the latest runs still failed: {b}");
    }
    Ok(format!("{fills} fills, none twice, check reconciles"))
}

fn kill9_recovery(s: &Scratch, sessions: &[NaiveDate]) -> Result<String> {
    let db = s.db("desk");
    let jobs = s.jobs("base");
    let mut said = Vec::new();
    for (as_of, point) in [
        (sessions[0], "fetch_chains:mid:abort"),
        (sessions[1], "select_trades:before_commit:abort"),
    ] {
        let (ok, tail) = s.run_daily(&db, &jobs, as_of, Some(point))?;
        if ok {
            bail!("run daily --as-of {as_of} with {point} exited cleanly: the kill did not happen ({tail})");
        }
        let (ok, tail) = s.run_daily(&db, &jobs, as_of, None)?;
        if !ok {
            bail!("the re-run of {as_of} after the kill at {point} failed: {tail}");
        }
        let seen = verify_store(&db, as_of)?;
        said.push(format!(
            "killed at {} on {as_of}, re-run completed: {seen}",
            point.trim_end_matches(":abort")
        ));
    }
    Ok(said.join("; "))
}

/// `to` as `from` is: a copy of the store file, or no file when there is none yet.
fn copy_store(from: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_file(to);
    if from.exists() {
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// (approved entries, refusals by rule) of a session's select_trades.
fn decisions(db: &Path, as_of: NaiveDate) -> Result<(i64, Vec<(String, i64)>)> {
    let store = Store::open_read(db, std::time::Duration::from_secs(30))?;
    let approved: i64 = store.conn.query_row(
        "SELECT count(*) FROM risk_decisions WHERE as_of = ? AND decision = 'approved'
           AND order_ref NOT LIKE '%:%:%:%'",
        duckdb::params![as_of],
        |r| r.get(0),
    )?;
    let mut st = store.conn.prepare(
        "SELECT rule, count(*) FROM risk_decisions WHERE as_of = ? AND decision = 'refused'
         GROUP BY rule ORDER BY rule",
    )?;
    let refused = st
        .query_map(duckdb::params![as_of], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<(String, i64)>, _>>()?;
    Ok((approved, refused))
}

fn circuit_breakers(s: &Scratch, config: &Config, sessions: &[NaiveDate]) -> Result<String> {
    // A store of its own, from the first session (a new desk enters on its first days).
    let db = s.db("breakers");
    let base = s.jobs("base");
    // A session on which the desk enters a trade: the breakers then have entries to stop.
    let mut found = None;
    for &as_of in sessions {
        let before = s.db("before");
        copy_store(&db, &before)?;
        let (ok, tail) = s.run_daily(&db, &base, as_of, None)?;
        if !ok {
            bail!("run daily --as-of {as_of} failed: {tail}");
        }
        let (approved, _) = decisions(&db, as_of)?;
        if approved > 0 {
            found = Some((as_of, approved, before));
            break;
        }
    }
    let Some((as_of, approved, before)) = found else {
        bail!(
            "no entry was approved on any of {} sessions ({} to {}): no entries for the breakers to stop (are any strategies enabled?)",
            sessions.len(),
            sessions[0],
            sessions[sessions.len() - 1]
        );
    };
    let events = s.dir.join("events.csv");
    std::fs::write(&events, format!("date,event\n{as_of},selftest\n"))?;
    let events_value = format!("{:?}", events.display().to_string());
    let breakers: [(&str, &str, &str, &str); 3] = [
        (
            "kill_switch",
            "select_trades.risk.kill_switch",
            "true",
            "kill_switch",
        ),
        (
            "event_blackout",
            "select_trades.params.events_file",
            &events_value,
            "event_blackout",
        ),
        (
            "volatility",
            "select_trades.risk.vol_move_multiple",
            "0.000001",
            "volatility_kill_switch",
        ),
    ];
    let mut said = vec![format!(
        "{as_of}: {approved} entries approved with no breaker"
    )];
    for (name, key, value, rule) in breakers {
        let jobs = s.jobs(name);
        write_config(config, &jobs, &[(key, value)])?;
        let copy = s.db(name);
        copy_store(&before, &copy)?;
        let (ok, tail) = s.run_daily(&copy, &jobs, as_of, None)?;
        if !ok {
            bail!("{name}: run daily --as-of {as_of} failed: {tail}");
        }
        let (approved, refused) = decisions(&copy, as_of)?;
        let by_rule = refused
            .iter()
            .find(|(r, _)| r == rule)
            .map_or(0, |(_, n)| *n);
        if approved > 0 || by_rule == 0 {
            bail!(
                "{name} ({key} = {value}): {approved} entries still approved, {by_rule} refused by {rule}"
            );
        }
        said.push(format!(
            "{name}: {by_rule} entries refused by {rule}, none approved"
        ));
    }
    said.push(gate_checks()?);
    Ok(said.join("; "))
}

/// The gate's daily loss cap and VIX jump rules on a proposal, with the state that trips
/// each and the state that does not.
fn gate_checks() -> Result<String> {
    use crate::trading::risk::{evaluate, RiskConfig, RiskState};
    let cfg = RiskConfig::default();
    let day = crate::testkit::spy_day();
    let proposal = crate::trading::strategies::call_premium::CallPremium {
        config: Default::default(),
    };
    let proposals = crate::trading::strategies::Strategy::propose(&proposal, &day).proposals;
    let Some(p) = proposals.into_iter().next() else {
        bail!("the gate check's reference proposal was not made");
    };
    let calm = RiskState {
        as_of: Some(day.as_of),
        buying_power: crate::model::Price::from_f64(1e9),
        ..Default::default()
    };
    if evaluate(&cfg, &calm, p.clone()).rule() != "all rules passed" {
        bail!("the gate refused the reference proposal with no breaker tripped");
    }
    let mut out = Vec::new();
    for (rule, state) in [
        (
            "daily_loss_cap",
            RiskState {
                realized_pnl_today: crate::model::Price::from_f64(-cfg.daily_loss_cap),
                ..calm.clone()
            },
        ),
        (
            "vix_jump",
            RiskState {
                vix_change: Some(cfg.vix_jump_points + 0.01),
                ..calm.clone()
            },
        ),
    ] {
        let got = evaluate(&cfg, &state, p.clone()).rule();
        if got != rule {
            bail!("the gate answered {got} where {rule} should have refused");
        }
        out.push(rule);
    }
    Ok(format!("the gate refused with {}", out.join(" and ")))
}

/// Run every drill, record each in the user's store, and return the outcomes.
pub fn run(db: &Path, config: &Config, before: NaiveDate) -> Result<Vec<Outcome>> {
    let dir = std::env::temp_dir().join(format!("optdesk-selftest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let s = Scratch {
        dir: dir.clone(),
        exe: std::env::current_exe().context("finding the optdesk binary")?,
    };
    write_config(config, &s.jobs("base"), &[])?;
    let sessions = recent_sessions(before, 12)?;
    let mut outcomes = Vec::new();
    let k = kill9_recovery(&s, &sessions[..2]);
    outcomes.push(Outcome {
        drill: "kill9_recovery",
        passed: k.is_ok(),
        detail: k.unwrap_or_else(|e| format!("{e:#}")),
    });
    let c = circuit_breakers(&s, config, &sessions);
    outcomes.push(Outcome {
        drill: "circuit_breakers",
        passed: c.is_ok(),
        detail: c.unwrap_or_else(|e| format!("{e:#}")),
    });
    let timeout = std::time::Duration::from_secs(config.desk.desk.lock_timeout_secs);
    let store = Store::open_write(db, timeout, "optdesk selftest")?;
    for o in &outcomes {
        record_drill(&store.conn, o.drill, o.passed, &o.detail)?;
    }
    if outcomes.iter().all(|o| o.passed) {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        outcomes.push(Outcome {
            drill: "scratch",
            passed: false,
            detail: format!("the scratch folder is kept for a look: {}", dir.display()),
        });
    }
    Ok(outcomes)
}
