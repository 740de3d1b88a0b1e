//! Whether a session's daily run happened: what `optdesk status --check` reports to an
//! outside monitor, and what the daemon's missed-run alert watches.

use super::Prepared;
use crate::calendar;
use crate::config::Config;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime};
use chrono_tz::Tz;
use duckdb::{params, Connection};

/// How long after its time a daily run may still be unfinished before `status --check`
/// fails and the daemon sends the missed-run alert.
pub const MISSED_RUN_GRACE_MINUTES: i64 = 15;

/// A session's daily run, as the store has it.
#[derive(Debug, Clone, PartialEq)]
pub enum DailyState {
    /// Every daily job has run (or was skipped for its own reason); the last finished at
    /// this UTC time.
    Finished { at: NaiveDateTime },
    /// The latest run of a daily job failed.
    Failed { job: String, message: String },
    /// These daily jobs have no run for the session (or the scheduler skipped them).
    Missing { jobs: Vec<String> },
}

impl DailyState {
    pub fn is_finished(&self) -> bool {
        matches!(self, DailyState::Finished { .. })
    }

    /// One line a trader (or a monitor's log) can read.
    pub fn describe(&self, date: NaiveDate) -> String {
        match self {
            DailyState::Finished { at } => format!(
                "the {date} daily run finished at {} UTC",
                at.format("%Y-%m-%d %H:%M:%S")
            ),
            DailyState::Failed { job, message } => {
                format!("the {date} daily run failed: {job}: {message}")
            }
            DailyState::Missing { jobs } => format!(
                "the {date} daily run is missing: no run of {} for {date}",
                jobs.join(", ")
            ),
        }
    }
}

/// The state of `date`'s daily run: the latest real (not dry) daily run of each daily
/// job. A skip recorded by the scheduler (its reason starts with `schedule:`: superseded,
/// or not run because the daemon stopped) counts as missing; a job's own skip (disabled,
/// pruned data) counts as done.
pub fn daily_state(
    conn: &Connection,
    prepared: &[Prepared],
    date: NaiveDate,
) -> Result<DailyState, duckdb::Error> {
    let jobs: Vec<&str> = prepared
        .iter()
        .filter(|p| p.def.daily)
        .map(|p| p.def.name)
        .collect();
    daily_state_of(conn, &jobs, date)
}

/// [`daily_state`] over the daily jobs named (in pipeline order), e.g. every daily job of
/// [`super::JOBS`].
pub fn daily_state_of(
    conn: &Connection,
    jobs: &[&str],
    date: NaiveDate,
) -> Result<DailyState, duckdb::Error> {
    let mut s = conn.prepare(
        "SELECT job, arg_max(status, run_id), coalesce(arg_max(message, run_id), ''), max(finished_at)
         FROM job_runs WHERE as_of = ? AND slot IS NULL AND NOT dry_run GROUP BY job",
    )?;
    let rows: Vec<(String, String, String, NaiveDateTime)> = s
        .query_map(params![date], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut missing = Vec::new();
    let mut last: Option<NaiveDateTime> = None;
    for name in jobs {
        match rows.iter().find(|r| r.0 == *name) {
            None => missing.push(name.to_string()),
            Some((job, status, message, at)) => {
                if status == "failed" {
                    return Ok(DailyState::Failed {
                        job: job.clone(),
                        message: crate::config::redact_secrets(message),
                    });
                }
                if status == "skipped" && message.starts_with("schedule:") {
                    missing.push(name.to_string());
                    continue;
                }
                last = last.max(Some(*at));
            }
        }
    }
    Ok(match (missing.is_empty(), last) {
        (true, Some(at)) => DailyState::Finished { at },
        (true, None) => DailyState::Missing { jobs: Vec::new() },
        (false, _) => DailyState::Missing { jobs: missing },
    })
}

/// When the daily pipeline fires on `session` (New York), from `schedule.daily`.
pub fn daily_time(
    config: &Config,
    session: &calendar::Session,
) -> Result<Option<NaiveDateTime>, crate::config::ConfigError> {
    Ok(config
        .daily_time()?
        .times_on(session)
        .first()
        .map(|t| session.date.and_time(*t)))
}

/// The latest session whose daily run was due (its daily time plus `grace`) by `now`
/// (New York), with that due time; `None` when none in the last 14 days.
pub fn last_due_session(
    config: &Config,
    now: DateTime<Tz>,
    grace: Duration,
) -> anyhow::Result<Option<(NaiveDate, NaiveDateTime)>> {
    let now = now.naive_local();
    for back in 0..14 {
        let date = now.date() - Duration::days(back);
        let Some(session) = calendar::session(date)? else {
            continue;
        };
        if let Some(at) = daily_time(config, &session)? {
            if now >= at + grace {
                return Ok(Some((date, at)));
            }
        }
    }
    Ok(None)
}
