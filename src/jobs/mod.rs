//! Jobs and the envelope every job runs in.
//!
//! The runner takes the store's write lock, runs a job's writes for one `as_of` in one
//! transaction together with its `job_runs` row, and commits; any error or panic rolls
//! the output back and records the failure (with its reason) in a transaction of its
//! own. A process killed mid-run commits nothing, so the store stays as it was. Jobs
//! replace their earlier output for the same key, so running twice equals running once.

pub mod compute_vol;
pub mod correlation;
pub mod daily_check;
pub mod email_report;
pub mod exits;
pub mod expire_positions;
pub mod fetch_chains;
pub mod flatten;
pub mod futures;
pub mod intraday;
pub mod kill;
pub mod manage_positions;
pub mod review_session;
pub mod select_trades;
pub mod snapshot_benchmarks;

use crate::config::{Config, ConfigError};
use crate::store::{Store, StoreError};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Utc};
use duckdb::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// What a job needs to run: the open store (inside the run's transaction), the session,
/// the slot, the run id its rows carry, and the configuration.
pub struct JobContext<'a> {
    pub conn: &'a Connection,
    pub as_of: NaiveDate,
    /// Intraday slot (New York time); `None` for the daily run.
    pub slot: Option<NaiveTime>,
    /// The snapshot this run reads and writes (New York local): the slot, or the
    /// session's daily time. With `as_of`, the key of every market-data table.
    pub quote_time: NaiveDateTime,
    pub run_id: i64,
    pub config: &'a Config,
    pub dry_run: bool,
    /// Send again what was already sent for this day (the daily report's `--resend`).
    pub resend: bool,
    /// The run is part of a whole session's transaction ([`run_session`]): checkpoints
    /// commit nothing (the broker is the in-process paper book).
    pub in_session: bool,
}

impl JobContext<'_> {
    /// The day the strategies see at this run's snapshot ([`crate::store::repo::day::load`]),
    /// with the configured futures roll day.
    pub fn load_day(
        &self,
    ) -> Result<crate::trading::strategies::DayState, crate::store::repo::RepoError> {
        crate::store::repo::day::load(
            self.conn,
            self.as_of,
            self.quote_time,
            self.config.desk.futures.roll_days_before,
        )
    }
}

impl JobContext<'_> {
    /// Commit what the job has written so far and go on in a new transaction: for an
    /// order intent, which must be in the store before a broker sees the order. A no-op
    /// in a dry run. After a checkpoint, a failure rolls back only what came after it.
    pub fn checkpoint(&self) -> Result<(), duckdb::Error> {
        if self.dry_run || self.in_session {
            return Ok(());
        }
        self.conn.execute_batch("COMMIT; BEGIN TRANSACTION")
    }

    /// The order router for this run: orders go to `broker`, intents are committed at
    /// the run's checkpoints, and events and fills carry the run's id and snapshot time.
    pub fn router<'b>(
        &'b self,
        broker: &'b mut dyn crate::broker::Broker,
        job: &'static str,
    ) -> crate::broker::router::Router<'b> {
        crate::broker::router::Router::new(
            self.conn,
            broker,
            job,
            self.run_id,
            self.quote_time,
            Box::new(move || self.checkpoint()),
            self.dry_run,
        )
    }
}

/// What a job reports: rows written and a one-line summary for the trader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutput {
    pub rows_written: u64,
    pub summary: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Source(#[from] crate::sources::SourceError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("store: {0}")]
    Db(#[from] duckdb::Error),
    #[error("{0}")]
    Repo(#[from] crate::store::repo::RepoError),
    #[error("{0}")]
    Router(#[from] crate::broker::router::RouterError),
    #[error("{0}")]
    Failed(String),
    /// A failure that still leaves a record: the job's output is rolled back, then
    /// `record` runs in the transaction that records the failure (e.g. the daily report's
    /// failed send in `reports`).
    #[error("{message}")]
    FailedWithRecord {
        message: String,
        record: AfterRollback,
    },
}

/// Rows to write with a failure's `job_runs` row: called with the connection and the
/// failed run's id.
pub struct AfterRollback(pub Box<RecordFn>);

pub type RecordFn = dyn FnOnce(&Connection, i64) -> Result<(), duckdb::Error> + Send;

impl std::fmt::Debug for AfterRollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterRollback(..)")
    }
}

/// A job with its configuration loaded and validated.
pub trait Job: Send + Sync {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError>;
}

pub struct Prepared {
    pub def: &'static JobDef,
    pub enabled: bool,
    pub slots: Vec<String>,
    pub config_hash: String,
    pub job: Box<dyn Job>,
}

/// A job in the registry.
pub struct JobDef {
    pub name: &'static str,
    pub about: &'static str,
    /// Tables the job writes (its SQL interface).
    pub writes: &'static [&'static str],
    /// It reads (or rewrites) a session's full option chains: refused for a session
    /// whose quotes `optdesk prune` has thinned, with that reason.
    pub reads_chains: bool,
    pub prepare: fn(&Config) -> Result<Prepared, ConfigError>,
    /// Part of the daily pipeline (`run daily`). A job that is not (`manage_positions`)
    /// runs only at its slots (and by `job run`).
    pub daily: bool,
}

/// Every job, in the order `optdesk run daily` runs them (those with `daily`), and the
/// order jobs run in within one slot time.
pub static JOBS: &[JobDef] = &[
    fetch_chains::DEF,
    compute_vol::DEF,
    correlation::DEF,
    select_trades::DEF,
    manage_positions::DEF,
    expire_positions::DEF,
    snapshot_benchmarks::DEF,
    email_report::DEF,
    review_session::DEF,
];

pub fn find(name: &str) -> Option<&'static JobDef> {
    JOBS.iter().find(|j| j.name == name)
}

pub fn unknown_job_message(name: &str) -> String {
    let names: Vec<&str> = JOBS.iter().map(|j| j.name).collect();
    format!("unknown job '{name}'; the jobs are: {}", names.join(", "))
}

pub use crate::store::runs::{RunRecord, Status};

/// Who triggered a run (recorded in `job_runs.trigger`).
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    Cli,
    Daily,
    Schedule,
    /// A session of `optdesk backtest`.
    Backtest,
    /// A Telegram command to the daemon (`/flatten confirm`).
    Telegram,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Daily => "daily",
            Trigger::Schedule => "schedule",
            Trigger::Backtest => "backtest",
            Trigger::Telegram => "telegram",
        }
    }
}

pub struct RunRequest {
    pub as_of: NaiveDate,
    pub slot: Option<NaiveTime>,
    pub dry_run: bool,
    pub trigger: Trigger,
    /// `--resend`: the daily report is sent again even if it was already sent.
    pub resend: bool,
}

/// Test hook (failpoints): `OPTDESK_FAILPOINT=<job>:<point>:<action>` makes `<job>`
/// panic, abort the process (as a crash or kill -9 would), sleep N seconds or fail at
/// `<point>` (`mid` inside the job, `before_commit` in the runner). For testing the
/// envelope's atomicity; never set it in production.
pub fn failpoint(job: &str, point: &str) -> Result<(), JobError> {
    crate::failpoint::hit(job, point).map_err(JobError::Failed)
}

/// The next run id: after every recorded run, and after any order event a run that
/// died after committing an intent left behind (so its id is never reused).
fn next_run_id(conn: &Connection) -> Result<i64, duckdb::Error> {
    conn.query_row(
        "SELECT greatest((SELECT coalesce(max(run_id), 0) FROM job_runs),
                         (SELECT coalesce(max(run_id), 0) FROM order_events)) + 1",
        [],
        |r| r.get(0),
    )
}

#[allow(clippy::too_many_arguments)]
fn insert_run(
    conn: &Connection,
    run_id: i64,
    job: &str,
    req: &RunRequest,
    started: chrono::NaiveDateTime,
    status: Status,
    rows: u64,
    message: &str,
    config_hash: &str,
    dry_run: bool,
) -> Result<(), duckdb::Error> {
    conn.execute(
        "INSERT INTO job_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        duckdb::params![
            run_id,
            job,
            req.as_of,
            req.slot.map(|s| s.format("%H:%M").to_string()),
            started,
            Utc::now().naive_utc(),
            status.as_str(),
            rows as i64,
            crate::config::redact_secrets(message),
            config_hash,
            crate::VERSION,
            dry_run,
            req.trigger.as_str(),
        ],
    )?;
    Ok(())
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Record a run that did not execute (skipped), with its reason.
pub fn record_skip(
    store: &Store,
    job: &'static str,
    req: &RunRequest,
    config_hash: &str,
    reason: &str,
) -> Result<RunRecord, StoreError> {
    let started = Utc::now().naive_utc();
    let id = record_outcome(
        store,
        job,
        req,
        started,
        Status::Skipped,
        reason,
        config_hash,
        None,
    )?;
    Ok(RunRecord {
        run_id: id,
        job,
        as_of: req.as_of,
        status: Status::Skipped,
        rows_written: 0,
        message: reason.to_string(),
        seconds: 0.0,
        dry_run: req.dry_run,
    })
}

/// Who hears about each run once it is recorded: the command line prints it and sends
/// its alerts; a backtest replaying thousands of sessions does neither ([`Quiet`]). The
/// runner itself never prints and never sends.
pub trait RunObserver {
    /// Called once per recorded run (ok, failed or skipped, dry or not), in order,
    /// after its `job_runs` row is committed.
    fn on_record(&self, store: &Store, config: &Config, rec: &RunRecord);
}

/// An observer that does nothing: the runs are in `job_runs` only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl RunObserver for Quiet {
    fn on_record(&self, _: &Store, _: &Config, _: &RunRecord) {}
}

/// The snapshot time of a run: its slot, or the session's daily time.
fn snapshot_time(
    conn: &duckdb::Connection,
    config: &Config,
    req: &RunRequest,
) -> Result<NaiveDateTime, String> {
    // A replayed session is the vendor's end-of-day snapshot, whatever schedule.daily says.
    if config.desk.desk.source == crate::config::SourceKind::Replay {
        if let Some(slot) = req.slot {
            return Err(format!(
                "the replay source holds end-of-day snapshots: there is no {} slot to replay",
                slot.format("%H:%M")
            ));
        }
        return crate::sources::replay::snapshot_time(conn, req.as_of);
    }
    let daily = config.daily_time().map_err(|e| e.to_string())?;
    crate::clock::snapshot_time(&daily, req.as_of, req.slot).map_err(|e| e.to_string())
}

/// Run one prepared job in the envelope and tell `observer`. Returns the recorded
/// outcome; `Err` only when the store itself cannot record anything.
pub fn run_one(
    store: &Store,
    config: &Config,
    p: &Prepared,
    req: &RunRequest,
    observer: &dyn RunObserver,
) -> Result<RunRecord, StoreError> {
    let rec = run_one_inner(store, config, p, req)?;
    observer.on_record(store, config, &rec);
    Ok(rec)
}

fn run_one_inner(
    store: &Store,
    config: &Config,
    p: &Prepared,
    req: &RunRequest,
) -> Result<RunRecord, StoreError> {
    if req.dry_run {
        let recs = run_dry_sequence(store, config, &[p], req, &Quiet)?;
        return Ok(recs.into_iter().next().expect("one job, one record"));
    }
    let name = p.def.name;
    if !p.enabled {
        let reason = format!(
            "disabled in {}/{name}.toml (enabled = false)",
            config.dir.display()
        );
        return record_skip(store, name, req, &p.config_hash, &reason);
    }
    if p.def.reads_chains {
        if let Some(reason) = crate::store::retention::refuse_pruned(&store.conn, req.as_of)? {
            return record_skip(store, name, req, &p.config_hash, &reason);
        }
    }
    let conn = &store.conn;
    let started = Utc::now().naive_utc();
    let clock = Instant::now();
    let quote_time = match snapshot_time(&store.conn, config, req) {
        Ok(t) => t,
        Err(msg) => {
            let id = record_failure(store, name, req, started, &msg, &p.config_hash)?;
            return Ok(RunRecord {
                run_id: id,
                job: name,
                as_of: req.as_of,
                status: Status::Failed,
                rows_written: 0,
                message: msg,
                seconds: clock.elapsed().as_secs_f64(),
                dry_run: req.dry_run,
            });
        }
    };
    conn.execute_batch("BEGIN TRANSACTION")?;
    let run_id = match next_run_id(conn) {
        Ok(id) => id,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    };
    let ctx = JobContext {
        conn,
        as_of: req.as_of,
        slot: req.slot,
        quote_time,
        run_id,
        config,
        dry_run: req.dry_run,
        resend: req.resend,
        in_session: false,
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let out = p.job.run(&ctx)?;
        failpoint(name, "before_commit")?;
        Ok::<JobOutput, JobError>(out)
    }))
    .unwrap_or_else(|panic| {
        Err(JobError::Failed(format!(
            "job panicked: {}",
            panic_message(panic)
        )))
    });

    let record = |status, rows, message: String, run_id| RunRecord {
        run_id,
        job: name,
        as_of: req.as_of,
        status,
        rows_written: rows,
        message,
        seconds: clock.elapsed().as_secs_f64(),
        dry_run: req.dry_run,
    };
    // A failed run is recorded under its own id: what it committed at checkpoints (an
    // order intent) carries it.
    let fail = |msg: String, after: Option<AfterRollback>| {
        let id = record_outcome_as(
            store,
            Some(run_id),
            name,
            req,
            started,
            Status::Failed,
            &msg,
            &p.config_hash,
            after,
        )?;
        Ok(record(Status::Failed, 0, msg, id))
    };
    match outcome {
        Ok(out) => {
            let committed = insert_run(
                conn,
                run_id,
                name,
                req,
                started,
                Status::Ok,
                out.rows_written,
                &out.summary,
                &p.config_hash,
                false,
            )
            .and_then(|_| conn.execute_batch("COMMIT"));
            match committed {
                Ok(()) => Ok(record(Status::Ok, out.rows_written, out.summary, run_id)),
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    let msg = format!(
                        "could not commit: {}",
                        crate::store::one_line(&e.to_string())
                    );
                    fail(msg, None)
                }
            }
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            let msg = crate::store::one_line(&e.to_string());
            let after = match e {
                JobError::FailedWithRecord { record, .. } => Some(record),
                _ => None,
            };
            fail(msg, after)
        }
    }
}

fn record_failure(
    store: &Store,
    job: &str,
    req: &RunRequest,
    started: chrono::NaiveDateTime,
    msg: &str,
    hash: &str,
) -> Result<i64, StoreError> {
    record_outcome(store, job, req, started, Status::Failed, msg, hash, None)
}

/// Record a run that wrote nothing (failed or skipped) in a transaction of its own,
/// with the rows a failure asks to keep (`after`).
#[allow(clippy::too_many_arguments)]
fn record_outcome(
    store: &Store,
    job: &str,
    req: &RunRequest,
    started: chrono::NaiveDateTime,
    status: Status,
    msg: &str,
    hash: &str,
    after: Option<AfterRollback>,
) -> Result<i64, StoreError> {
    record_outcome_as(store, None, job, req, started, status, msg, hash, after)
}

/// [`record_outcome`] under a given run id (a failed run keeps its own id: what it
/// committed before failing, such as an order intent, carries it).
#[allow(clippy::too_many_arguments)]
fn record_outcome_as(
    store: &Store,
    run_id: Option<i64>,
    job: &str,
    req: &RunRequest,
    started: chrono::NaiveDateTime,
    status: Status,
    msg: &str,
    hash: &str,
    after: Option<AfterRollback>,
) -> Result<i64, StoreError> {
    let conn = &store.conn;
    conn.execute_batch("BEGIN TRANSACTION")?;
    let res = match run_id {
        Some(id) => Ok(id),
        None => next_run_id(conn),
    }
    .and_then(|id| {
        insert_run(
            conn,
            id,
            job,
            req,
            started,
            status,
            0,
            msg,
            hash,
            req.dry_run,
        )?;
        if let Some(AfterRollback(f)) = after {
            f(conn, id)?;
        }
        Ok(id)
    });
    match res {
        Ok(id) => {
            conn.execute_batch("COMMIT")?;
            Ok(id)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e.into())
        }
    }
}

/// The jobs of the daily pipeline (`JobDef::daily`), in order: what `run daily` runs.
pub fn daily_pipeline(jobs: &[Prepared]) -> Vec<&Prepared> {
    jobs.iter().filter(|p| p.def.daily).collect()
}

/// One firing of a job's slot in a session: the New York time and the job (an index
/// into the prepared jobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotFiring {
    pub time: NaiveTime,
    pub job: usize,
}

/// Every slot firing of the enabled jobs on `session`, in time order, jobs in `JOBS`
/// order within one time: what `optdesk run session` and a backtest run after the
/// daily pipeline, and what the daemon fires during the day. A disabled job's slots
/// do not fire (`optdesk schedule` records them as skipped).
pub fn slot_firings(jobs: &[Prepared], session: &crate::calendar::Session) -> Vec<SlotFiring> {
    let mut out = Vec::new();
    for (i, p) in jobs.iter().enumerate().filter(|(_, p)| p.enabled) {
        for s in &p.slots {
            // Checked when the job's file loaded.
            let Ok(spec) = crate::clock::TimeSpec::parse(s) else {
                continue;
            };
            out.extend(
                spec.times_on(session)
                    .into_iter()
                    .map(|time| SlotFiring { time, job: i }),
            );
        }
    }
    out.sort_by_key(|f| (f.time, f.job));
    out.dedup();
    out
}

/// A session's slot firings split around its daily run's snapshot (`schedule.daily`):
/// (the firings before it, those after it). The daemon runs them in time order, so
/// `optdesk run session` and a backtest run the first part before the daily pipeline
/// and the rest after it. A slot at the daily snapshot's own time does not fire: the
/// daily pipeline takes that snapshot (a slot's fetch there would replace its quotes).
pub fn split_at_daily(
    config: &Config,
    as_of: NaiveDate,
    firings: Vec<SlotFiring>,
) -> (Vec<SlotFiring>, Vec<SlotFiring>) {
    let daily = config
        .daily_time()
        .ok()
        .and_then(|d| crate::clock::snapshot_time(&d, as_of, None).ok())
        .map(|t| t.time());
    match daily {
        Some(d) => firings
            .into_iter()
            .filter(|f| f.time != d)
            .partition(|f| f.time < d),
        None => (Vec::new(), firings),
    }
}

/// Run the daily pipeline's jobs ([`daily_pipeline`]) in order for one session; stop at
/// the first failure and record every job
/// after it as skipped with the reason. `observer` hears of each record in turn.
pub fn run_sequence(
    store: &Store,
    config: &Config,
    jobs: &[Prepared],
    req: &RunRequest,
    observer: &dyn RunObserver,
) -> Result<Vec<RunRecord>, StoreError> {
    let jobs = daily_pipeline(jobs);
    if req.dry_run {
        return run_dry_sequence(store, config, &jobs, req, observer);
    }
    let mut out: Vec<RunRecord> = Vec::new();
    let mut failed: Option<(String, String)> = None;
    for p in jobs {
        let rec = match &failed {
            Some((job, why)) => {
                let reason = format!("skipped: {job} failed earlier in this run ({why})");
                record_skip(store, p.def.name, req, &p.config_hash, &reason)?
            }
            None => run_one_inner(store, config, p, req)?,
        };
        if rec.status == Status::Failed && failed.is_none() {
            failed = Some((rec.job.to_string(), rec.message.clone()));
        }
        observer.on_record(store, config, &rec);
        out.push(rec);
    }
    Ok(out)
}

/// [`run_sequence`] for a backtest's session, in one transaction with `after` (the
/// backtest's own rows for the session): one commit a session instead of one a job.
/// Each job runs as in its envelope and its `job_runs` row is the same, but nothing is
/// committed until every job has succeeded and `after` has run. If anything fails
/// (a job, a panic, `after`, the commit), the whole session is rolled back and run
/// again by [`run_sequence`], which records the failure exactly as `run daily` does;
/// `after` then does not run and the records say what failed. Only for the paper
/// broker with every job enabled (no order reaches an outside broker before its
/// intent is committed); otherwise it is [`run_sequence`] followed by `after`.
pub fn run_session(
    store: &Store,
    config: &Config,
    jobs: &[Prepared],
    req: &RunRequest,
    observer: &dyn RunObserver,
    after: &mut dyn FnMut(&Connection) -> Result<(), duckdb::Error>,
) -> Result<Vec<RunRecord>, StoreError> {
    let fallback = |after: &mut dyn FnMut(&Connection) -> Result<(), duckdb::Error>| {
        let recs = run_sequence(store, config, jobs, req, observer)?;
        if recs.iter().all(|r| r.status != Status::Failed) {
            let conn = &store.conn;
            conn.execute_batch("BEGIN TRANSACTION")?;
            match after(conn).and_then(|_| conn.execute_batch("COMMIT")) {
                Ok(()) => {}
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e.into());
                }
            }
        }
        Ok(recs)
    };
    let daily = daily_pipeline(jobs);
    let simple = !req.dry_run
        && config.desk.broker.kind == crate::config::BrokerKind::Paper
        && daily.iter().all(|p| p.enabled);
    if !simple {
        return fallback(after);
    }
    let Ok(quote_time) = snapshot_time(&store.conn, config, req) else {
        return fallback(after);
    };
    if daily.iter().any(|p| p.def.reads_chains)
        && crate::store::retention::refuse_pruned(&store.conn, req.as_of)?.is_some()
    {
        return fallback(after);
    }
    let conn = &store.conn;
    conn.execute_batch("BEGIN TRANSACTION")?;
    let attempt = catch_unwind(AssertUnwindSafe(|| {
        let mut recs = Vec::with_capacity(daily.len());
        let first = next_run_id(conn)?;
        for (run_id, p) in (first..).zip(&daily) {
            let started = Utc::now().naive_utc();
            let clock = Instant::now();
            let ctx = JobContext {
                conn,
                as_of: req.as_of,
                slot: req.slot,
                quote_time,
                run_id,
                config,
                dry_run: false,
                resend: req.resend,
                in_session: true,
            };
            let out = p.job.run(&ctx)?;
            failpoint(p.def.name, "before_commit")?;
            insert_run(
                conn,
                run_id,
                p.def.name,
                req,
                started,
                Status::Ok,
                out.rows_written,
                &out.summary,
                &p.config_hash,
                false,
            )?;
            recs.push(RunRecord {
                run_id,
                job: p.def.name,
                as_of: req.as_of,
                status: Status::Ok,
                rows_written: out.rows_written,
                message: out.summary,
                seconds: clock.elapsed().as_secs_f64(),
                dry_run: false,
            });
        }
        after(conn)?;
        conn.execute_batch("COMMIT")?;
        Ok::<_, JobError>(recs)
    }));
    match attempt {
        Ok(Ok(recs)) => {
            for rec in &recs {
                observer.on_record(store, config, rec);
            }
            Ok(recs)
        }
        _ => {
            let _ = conn.execute_batch("ROLLBACK");
            fallback(after)
        }
    }
}

/// A dry run of jobs in order: all of them run inside one transaction (so each sees
/// what the ones before it would have written), which is rolled back once at the end;
/// then each job's `job_runs` row is recorded with `dry_run = true`.
fn run_dry_sequence(
    store: &Store,
    config: &Config,
    jobs: &[&Prepared],
    req: &RunRequest,
    observer: &dyn RunObserver,
) -> Result<Vec<RunRecord>, StoreError> {
    let conn = &store.conn;
    let first_id = next_run_id(conn)?;
    let mut results: Vec<(
        &'static str,
        String,
        Status,
        u64,
        String,
        f64,
        chrono::NaiveDateTime,
    )> = Vec::new();
    let mut failed: Option<(String, String)> = None;
    conn.execute_batch("BEGIN TRANSACTION")?;
    for (i, p) in jobs.iter().enumerate() {
        let started = Utc::now().naive_utc();
        let clock = Instant::now();
        let name = p.def.name;
        let (status, rows, msg) = if let Some((job, why)) = &failed {
            (
                Status::Skipped,
                0,
                format!("skipped: {job} failed earlier in this run ({why})"),
            )
        } else if !p.enabled {
            (
                Status::Skipped,
                0,
                format!(
                    "disabled in {}/{name}.toml (enabled = false)",
                    config.dir.display()
                ),
            )
        } else {
            match snapshot_time(&store.conn, config, req) {
                Err(msg) => (Status::Failed, 0, msg),
                Ok(quote_time) => {
                    let ctx = JobContext {
                        conn,
                        as_of: req.as_of,
                        slot: req.slot,
                        quote_time,
                        run_id: first_id + i as i64,
                        config,
                        dry_run: true,
                        resend: req.resend,
                        in_session: false,
                    };
                    match catch_unwind(AssertUnwindSafe(|| p.job.run(&ctx))).unwrap_or_else(
                        |panic| {
                            Err(JobError::Failed(format!(
                                "job panicked: {}",
                                panic_message(panic)
                            )))
                        },
                    ) {
                        Ok(out) => (
                            Status::Ok,
                            out.rows_written,
                            format!("dry run, nothing written: {}", out.summary),
                        ),
                        Err(e) => (Status::Failed, 0, crate::store::one_line(&e.to_string())),
                    }
                }
            }
        };
        if status == Status::Failed {
            failed = Some((name.to_string(), msg.clone()));
        }
        results.push((
            name,
            p.config_hash.clone(),
            status,
            rows,
            msg,
            clock.elapsed().as_secs_f64(),
            started,
        ));
    }
    conn.execute_batch("ROLLBACK")?;
    let mut out = Vec::new();
    for (name, hash, status, rows, msg, seconds, started) in results {
        conn.execute_batch("BEGIN TRANSACTION")?;
        let id = match next_run_id(conn).and_then(|id| {
            insert_run(
                conn, id, name, req, started, status, rows, &msg, &hash, true,
            )
            .map(|_| id)
        }) {
            Ok(id) => id,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        };
        conn.execute_batch("COMMIT")?;
        let rec = RunRecord {
            run_id: id,
            job: name,
            as_of: req.as_of,
            status,
            rows_written: rows,
            message: msg,
            seconds,
            dry_run: true,
        };
        observer.on_record(store, config, &rec);
        out.push(rec);
    }
    Ok(out)
}

/// Daily bars of every symbol for the `sessions` sessions before `as_of`, oldest first.
pub(crate) fn load_bars_before(
    conn: &Connection,
    as_of: NaiveDate,
    sessions: usize,
) -> Result<std::collections::HashMap<String, Vec<crate::pricing::hv::Ohlc>>, JobError> {
    let window = crate::calendar::sessions_before(as_of, sessions);
    let mut out: std::collections::HashMap<String, Vec<crate::pricing::hv::Ohlc>> =
        Default::default();
    let Some(from) = window.first() else {
        return Ok(out);
    };
    let mut stmt = conn.prepare(
        "SELECT symbol, open::DOUBLE, high::DOUBLE, low::DOUBLE, close::DOUBLE, dividend::DOUBLE, split_ratio
         FROM underlying_bars WHERE date >= ? AND date < ? ORDER BY symbol, date",
    )?;
    let rows = stmt.query_map(duckdb::params![from, as_of], |r| {
        Ok((
            r.get::<_, String>(0)?,
            crate::pricing::hv::Ohlc {
                open: r.get(1)?,
                high: r.get(2)?,
                low: r.get(3)?,
                close: r.get(4)?,
                dividend: r.get(5)?,
                split_ratio: r.get(6)?,
            },
        ))
    })?;
    for r in rows {
        let (s, b) = r?;
        out.entry(s).or_default().push(b);
    }
    Ok(out)
}

/// Load and validate the configuration of every job (so a typo in any file fails
/// before anything runs).
pub fn prepare_all(config: &Config) -> Result<Vec<Prepared>, ConfigError> {
    JOBS.iter().map(|d| (d.prepare)(config)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Writes a marker row into `backfills`, then fails if asked to.
    struct Marker {
        fail: bool,
    }

    impl Job for Marker {
        fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
            ctx.conn.execute(
                "INSERT INTO backfills VALUES (?, ?, 'test', 1, ?, ?, 1, 'test')",
                duckdb::params![ctx.run_id, ctx.as_of, ctx.as_of, ctx.as_of],
            )?;
            if self.fail {
                return Err(JobError::Failed("boom: the source refused".into()));
            }
            Ok(JobOutput {
                rows_written: 1,
                summary: "wrote a marker".into(),
            })
        }
    }

    fn never(_: &Config) -> Result<Prepared, ConfigError> {
        Err(ConfigError::MissingDir("test".into()))
    }
    static A: JobDef = JobDef {
        name: "a",
        about: "",
        writes: &[],
        reads_chains: false,
        prepare: never,
        daily: true,
    };
    static B: JobDef = JobDef {
        name: "b",
        about: "",
        writes: &[],
        reads_chains: false,
        prepare: never,
        daily: true,
    };
    static C: JobDef = JobDef {
        name: "c",
        about: "",
        writes: &[],
        reads_chains: false,
        prepare: never,
        daily: true,
    };

    /// Remembers what it was told, to check the runner tells each record once, in order.
    #[derive(Default)]
    struct Seen(std::cell::RefCell<Vec<(&'static str, Status, bool)>>);

    impl RunObserver for Seen {
        fn on_record(&self, _: &Store, _: &Config, rec: &RunRecord) {
            self.0.borrow_mut().push((rec.job, rec.status, rec.dry_run));
        }
    }

    fn prepared(def: &'static JobDef, fail: bool) -> Prepared {
        Prepared {
            def,
            enabled: true,
            slots: vec![],
            config_hash: "h".into(),
            job: Box::new(Marker { fail }),
        }
    }

    #[test]
    fn the_sequence_stops_at_the_first_failure_and_skips_the_rest_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_write(&dir.path().join("s.duckdb"), Duration::from_secs(1), "test")
            .unwrap();
        let config = Config::load(&dir.path().join("none"), false).unwrap();
        let req = RunRequest {
            as_of: NaiveDate::from_ymd_opt(2025, 3, 14).unwrap(),
            slot: None,
            dry_run: false,
            trigger: Trigger::Daily,
            resend: false,
        };
        let jobs = vec![prepared(&A, false), prepared(&B, true), prepared(&C, false)];
        let seen = Seen::default();
        let recs = run_sequence(&store, &config, &jobs, &req, &seen).unwrap();
        let st: Vec<Status> = recs.iter().map(|r| r.status).collect();
        assert_eq!(st, [Status::Ok, Status::Failed, Status::Skipped]);
        assert_eq!(
            *seen.0.borrow(),
            [
                ("a", Status::Ok, false),
                ("b", Status::Failed, false),
                ("c", Status::Skipped, false)
            ],
            "the observer hears of every record once, skipped ones too"
        );
        assert!(recs[1].message.contains("boom"));
        assert!(
            recs[2].message.contains("b failed") && recs[2].message.contains("boom"),
            "{}",
            recs[2].message
        );
        // Only a's marker survives: b's write was rolled back, c never ran.
        let n: i64 = store
            .conn
            .query_row("SELECT count(*) FROM backfills", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let runs: Vec<(String, String)> = {
            let mut s = store
                .conn
                .prepare("SELECT job, status FROM job_runs ORDER BY run_id")
                .unwrap();
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        assert_eq!(
            runs,
            [
                ("a".into(), "ok".into()),
                ("b".into(), "failed".into()),
                ("c".into(), "skipped".into())
            ]
        );
    }

    #[test]
    fn run_one_tells_the_observer_once_dry_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_write(&dir.path().join("s.duckdb"), Duration::from_secs(1), "test")
            .unwrap();
        let config = Config::load(&dir.path().join("none"), false).unwrap();
        let mut req = RunRequest {
            as_of: NaiveDate::from_ymd_opt(2025, 3, 14).unwrap(),
            slot: None,
            dry_run: true,
            trigger: Trigger::Cli,
            resend: false,
        };
        let seen = Seen::default();
        run_one(&store, &config, &prepared(&A, false), &req, &seen).unwrap();
        req.dry_run = false;
        run_one(&store, &config, &prepared(&B, true), &req, &seen).unwrap();
        assert_eq!(
            *seen.0.borrow(),
            [("a", Status::Ok, true), ("b", Status::Failed, false)]
        );
    }
}

/// The broker `jobs/desk.toml [broker] kind` names, with its settings.
#[derive(Debug, Clone)]
pub struct BrokerChoice {
    pub kind: crate::config::BrokerKind,
    pub paper: crate::broker::paper::PaperConfig,
    pub ibkr: crate::config::IbkrConfig,
}

impl BrokerChoice {
    /// The configured broker, with the notes its settings give (keys that moved).
    pub fn from_config(
        config: &crate::config::Config,
    ) -> Result<(BrokerChoice, Vec<String>), crate::config::ConfigError> {
        let (paper, notes) = crate::broker::paper_config(config)?;
        Ok((
            BrokerChoice {
                kind: config.desk.broker.kind,
                paper,
                ibkr: config.desk.ibkr.clone(),
            },
            notes,
        ))
    }

    /// The broker for one run at one snapshot (IB is connected on first use).
    pub fn make<'c>(
        &self,
        conn: &'c duckdb::Connection,
        as_of: chrono::NaiveDate,
        quote_time: chrono::NaiveDateTime,
    ) -> Box<dyn crate::broker::Broker + 'c> {
        match self.kind {
            crate::config::BrokerKind::Paper => Box::new(crate::broker::paper::PaperBroker::new(
                conn, self.paper, as_of, quote_time,
            )),
            crate::config::BrokerKind::Ibkr => Box::new(crate::ibkr::broker::IbkrBroker::new(
                conn, &self.ibkr, self.paper, as_of, quote_time,
            )),
        }
    }
}
