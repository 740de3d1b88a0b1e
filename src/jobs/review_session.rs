//! `review_session` — the session's compliance, per strategy, into
//! `session_compliance` (see `store::compliance` for the rules). In a slot (by default
//! at the close) it reviews that session; in the daily run, the previous session, which
//! is complete by then, so a desk that only runs `run daily` is reviewed too. A re-run
//! replaces the session's rows.

use super::{Job, JobContext, JobDef, JobError, JobOutput, Prepared};
use crate::config::{Config, ConfigError, JobFile};
use crate::store::compliance::{self, StrategyRules};
use chrono::NaiveDate;
use duckdb::params;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub const DEF: JobDef = JobDef {
    name: "review_session",
    about: "session compliance per strategy (failed jobs, 0DTE closed by the close, no entry past a halt or the daily cap)",
    writes: &["session_compliance"],
    reads_chains: false,
    prepare,
    daily: true,
};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Params {}

fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    let (file, text): (JobFile<Params>, String) = config.job(DEF.name)?;
    let (rules, blackout) = super::select_trades::review_inputs(config)?;
    Ok(Prepared {
        def: &DEF,
        enabled: file.enabled,
        slots: file.slots,
        config_hash: config.hash_with(&text),
        job: Box::new(ReviewSession { rules, blackout }),
    })
}

pub struct ReviewSession {
    rules: Vec<StrategyRules>,
    blackout: BTreeSet<NaiveDate>,
}

impl Job for ReviewSession {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let session = match ctx.slot {
            Some(_) => Some(ctx.as_of),
            None => ctx.conn.query_row(
                "SELECT max(as_of) FROM job_runs WHERE as_of < ? AND NOT dry_run",
                params![ctx.as_of],
                |r| r.get::<_, Option<NaiveDate>>(0),
            )?,
        };
        let Some(session) = session else {
            return Ok(JobOutput {
                rows_written: 0,
                summary: "no earlier session in the store to review".into(),
            });
        };
        let rows = compliance::review(ctx.conn, session, &self.rules, &self.blackout)?;
        let n = compliance::write(ctx.conn, session, &rows, ctx.run_id)?;
        let bad: Vec<String> = rows
            .iter()
            .filter(|c| !c.compliant)
            .map(|c| {
                format!(
                    "{} not compliant: {}",
                    c.strategy,
                    c.violations.first().map(String::as_str).unwrap_or("")
                )
            })
            .collect();
        let summary = if rows.is_empty() {
            format!("{session}: no strategy enabled or traded")
        } else if bad.is_empty() {
            format!(
                "{session}: {} strategies compliant ({} entries, {} exits)",
                rows.len(),
                rows.iter().map(|c| c.entries).sum::<i64>(),
                rows.iter().map(|c| c.exits).sum::<i64>()
            )
        } else {
            format!("{session}: {}", bad.join("; "))
        };
        Ok(JobOutput {
            rows_written: n as u64,
            summary,
        })
    }
}
