//! When jobs run: the schedule's entries (the daily pipeline and each job's slots, as
//! [`TimeSpec`]s: session-relative or cron, in America/New_York, see [`crate::clock`]),
//! their firings, only on NYSE sessions, and the daemon that runs them.
//!
//! The daemon (`optdesk schedule`) ticks once a second on tokio-cron-scheduler and asks
//! the calendar what is due; this keeps DST and early closes exact (a cron job with a
//! fixed UTC offset would drift an hour at each DST change). It never starts an entry
//! whose previous firing is still running, opens the store only while a job runs, and
//! on SIGTERM/Ctrl-C lets the running job finish, then exits.

use crate::calendar::{self, Session};
use crate::clock::{now_ny, TimeSpec};
use crate::config::Config;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Timelike};
use chrono_tz::Tz;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What a schedule entry runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `optdesk run daily`.
    Daily,
    /// One job in an intraday slot.
    Job(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Daily => write!(f, "run daily"),
            Target::Job(j) => write!(f, "job run {j}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub target: Target,
    pub spec: TimeSpec,
}

/// The schedule from the configuration: the daily pipeline plus each job's slots.
pub fn entries(config: &Config) -> Result<Vec<Entry>, crate::config::ConfigError> {
    let mut out = vec![Entry {
        target: Target::Daily,
        spec: config.daily_time()?,
    }];
    for p in crate::jobs::prepare_all(config)? {
        for s in &p.slots {
            out.push(Entry {
                target: Target::Job(p.def.name.to_string()),
                spec: TimeSpec::parse(s).map_err(|e| crate::config::ConfigError::Invalid {
                    file: config
                        .dir
                        .join(format!("{}.toml", p.def.name))
                        .display()
                        .to_string(),
                    message: format!("slots: {e}"),
                })?,
            });
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct Firing {
    pub at: DateTime<Tz>,
    pub session: Session,
    pub entry: usize,
}

/// Every firing strictly after `from` and before `until`, in time order, sessions only.
pub fn firings_between(entries: &[Entry], from: DateTime<Tz>, until: DateTime<Tz>) -> Vec<Firing> {
    let mut out = Vec::new();
    let mut d = from.date_naive();
    while d <= until.date_naive() {
        if let Ok(Some(session)) = calendar::session(d) {
            // The daily run's snapshot: a slot at that time does not fire (the daily
            // pipeline takes that snapshot; a slot's fetch would replace its quotes).
            let daily: Vec<NaiveTime> = entries
                .iter()
                .filter(|e| e.target == Target::Daily)
                .filter_map(|e| {
                    e.spec
                        .times_on(&session)
                        .into_iter()
                        .find(|t| crate::clock::within_session(*t, &session))
                })
                .collect();
            for (i, e) in entries.iter().enumerate() {
                for t in e.spec.times_on(&session) {
                    if e.target != Target::Daily && daily.contains(&t) {
                        continue;
                    }
                    let at = calendar::ny(d.and_time(t));
                    if at > from && at <= until {
                        out.push(Firing {
                            at,
                            session,
                            entry: i,
                        });
                    }
                }
            }
        }
        if calendar::check_range(d + Duration::days(1)).is_err() {
            break;
        }
        d += Duration::days(1);
    }
    out.sort_by_key(|f| (f.at, f.entry));
    out
}

/// The plan for the next `days` calendar days from `from`.
pub fn plan(entries: &[Entry], from: DateTime<Tz>, days: u32) -> Vec<Firing> {
    firings_between(entries, from, from + Duration::days(days as i64))
}

/// Why the daemon could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the scheduler: {0}")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
    #[error("the scheduler's worker stopped abnormally: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

/// What the daemon calls to run a firing (blocking; runs on a worker thread).
pub type RunFn = dyn Fn(&Target, NaiveDate, Option<NaiveTime>) -> bool + Send + Sync;

/// What the daemon calls to record a firing it did not run, with the reason.
pub type SkipFn = dyn Fn(&Target, NaiveDate, Option<NaiveTime>, &str) + Send + Sync;

/// A firing waiting in the daemon's queue.
#[derive(Debug, Clone)]
struct Queued {
    at: DateTime<Tz>,
    entry: usize,
    date: NaiveDate,
}

/// Run the daemon until SIGTERM or Ctrl-C.
///
/// A tick every second (tokio-cron-scheduler) puts the firings that came due into one
/// queue, in time order; one worker runs them one after another, so no two firings
/// ever overlap and dependent entries run in their scheduled order. When the worker
/// falls behind — a long run, or a machine waking from sleep — an older firing of an
/// entry is superseded by its latest one and recorded as skipped with the reason. On
/// a stop, the running firing finishes; queued ones are recorded as skipped.
pub async fn run_daemon(
    entries: Vec<Entry>,
    pretend: Option<NaiveDate>,
    run: Arc<RunFn>,
    skip: Arc<SkipFn>,
) -> Result<(), DaemonError> {
    use std::collections::VecDeque;
    use tokio_cron_scheduler::{Job, JobScheduler};

    let queue: Arc<Mutex<VecDeque<Queued>>> = Arc::new(Mutex::new(VecDeque::new()));
    let wake = Arc::new(tokio::sync::Notify::new());
    let stopping = Arc::new(AtomicBool::new(false));
    let last_checked = Arc::new(Mutex::new(now_ny(pretend)));
    let entries = Arc::new(entries);

    let mut sched = JobScheduler::new().await?;
    {
        let (queue, wake, stopping, last_checked, entries) = (
            queue.clone(),
            wake.clone(),
            stopping.clone(),
            last_checked,
            entries.clone(),
        );
        sched
            .add(Job::new_async("* * * * * *", move |_id, _l| {
                let (queue, wake, stopping, last_checked, entries) = (
                    queue.clone(),
                    wake.clone(),
                    stopping.clone(),
                    last_checked.clone(),
                    entries.clone(),
                );
                Box::pin(async move {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let now = now_ny(pretend)
                        .with_nanosecond(0)
                        .unwrap_or_else(|| now_ny(pretend));
                    let from = {
                        let mut l = last_checked.lock().unwrap_or_else(|e| e.into_inner());
                        let from = *l;
                        if now <= from {
                            return;
                        }
                        *l = now;
                        from
                    };
                    let due = firings_between(&entries, from, now);
                    if due.is_empty() {
                        return;
                    }
                    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                    for f in due {
                        q.push_back(Queued {
                            at: f.at,
                            entry: f.entry,
                            date: f.session.date,
                        });
                    }
                    drop(q);
                    wake.notify_one();
                })
            })?)
            .await?;
    }

    let worker = {
        let (queue, wake, stopping, entries) = (
            queue.clone(),
            wake.clone(),
            stopping.clone(),
            entries.clone(),
        );
        tokio::spawn(async move {
            loop {
                let next = {
                    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                    let next = q.pop_front();
                    // A later firing of the same entry already waiting supersedes this one.
                    let later = next
                        .as_ref()
                        .and_then(|f| q.iter().rev().find(|g| g.entry == f.entry).map(|g| g.at));
                    next.map(|f| (f, later))
                };
                let Some((f, later)) = next else {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    wake.notified().await;
                    continue;
                };
                let e = &entries[f.entry];
                let slot = match e.target {
                    Target::Daily => None,
                    Target::Job(_) => Some(f.at.time()),
                };
                let reason = if stopping.load(Ordering::SeqCst) {
                    Some(format!(
                        "schedule: the {} firing was not run: the scheduler was stopped first",
                        f.at.format("%Y-%m-%d %H:%M:%S")
                    ))
                } else {
                    later.map(|l| {
                        format!(
                            "schedule: the {} firing was superseded by the {} one (the scheduler fell behind)",
                            f.at.format("%Y-%m-%d %H:%M:%S"),
                            l.format("%Y-%m-%d %H:%M:%S")
                        )
                    })
                };
                let (target, date, run, skip) =
                    (e.target.clone(), f.date, run.clone(), skip.clone());
                match reason {
                    Some(why) => {
                        eprintln!("schedule: {date} {target} skipped: {why}");
                        let _ =
                            tokio::task::spawn_blocking(move || skip(&target, date, slot, &why))
                                .await;
                    }
                    None => {
                        eprintln!(
                            "schedule: {} firing {target} for {date} ({})",
                            f.at.format("%Y-%m-%d %H:%M:%S %Z"),
                            e.spec
                        );
                        let ok = tokio::task::spawn_blocking(move || run(&target, date, slot))
                            .await
                            .unwrap_or(false);
                        if !ok {
                            eprintln!("schedule: {date} firing failed (the reason is above and in job_runs)");
                        }
                    }
                }
            }
        })
    };

    sched.start().await?;
    eprintln!("schedule: running (America/New_York); Ctrl-C or SIGTERM to stop");
    wait_for_signal().await;
    stopping.store(true, Ordering::SeqCst);
    eprintln!("schedule: stopping; the running job finishes first");
    sched.shutdown().await?;
    wake.notify_one();
    worker.await?;
    eprintln!("schedule: stopped cleanly");
    Ok(())
}

/// The missed-run alert for `now` (New York): when today's session's daily run was due
/// more than [`daily_check::MISSED_RUN_GRACE_MINUTES`] ago and has not finished, the
/// alert that says so (`busy`: a job of this process still holds the store, so the run
/// is taken to be still running: the daemon passes it only while its daily firing runs).
/// `None` when it finished, or nothing is due today.
pub fn missed_run_alert(
    conn: Option<&duckdb::Connection>,
    config: &Config,
    prepared: &[crate::jobs::Prepared],
    now: DateTime<Tz>,
) -> anyhow::Result<Option<crate::report::alerts::Alert>> {
    use crate::jobs::daily_check;
    let grace = Duration::minutes(daily_check::MISSED_RUN_GRACE_MINUTES);
    let Some((date, due)) = daily_check::last_due_session(config, now, grace)? else {
        return Ok(None);
    };
    if date != now.date_naive() {
        return Ok(None);
    }
    let why = match conn {
        Some(conn) => {
            let state = daily_check::daily_state(conn, prepared, date)?;
            if state.is_finished() {
                return Ok(None);
            }
            state.describe(date)
        }
        None => format!("the {date} daily run has not finished: a job is still running"),
    };
    Ok(Some(crate::report::alerts::Alert {
        event: "missed_run",
        as_of: date,
        job: "daily".into(),
        run_id: 0,
        text: format!(
            "optdesk: missed run: {why} ({} minutes after its time, {} New York)",
            daily_check::MISSED_RUN_GRACE_MINUTES,
            due.format("%H:%M")
        ),
    }))
}

/// The daemon's missed-run watch (its own thread until `stop`): every 15 seconds, when
/// today's daily run is overdue by the grace, print the `missed_run` alert and send it
/// on the configured channels, once per session; the delivery is recorded in `alerts`
/// when the store is free.
pub fn watch_missed_runs(
    config: &Config,
    db: &std::path::Path,
    pretend: Option<NaiveDate>,
    stop: &AtomicBool,
) {
    use crate::report::alerts;
    let prepared = match crate::jobs::prepare_all(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("schedule: the missed-run watch is off: {e}");
            return;
        }
    };
    let channels = alerts::channels(config);
    let send = alerts::wanted(config, "missed_run");
    // The session already settled: alerted, or found finished.
    let mut settled: Option<NaiveDate> = None;
    // Sent while the store was busy: recorded once it is free.
    let mut unrecorded: Vec<(alerts::Alert, Vec<alerts::Delivery>)> = Vec::new();
    let mut next_check = std::time::Instant::now();
    let grace = Duration::minutes(crate::jobs::daily_check::MISSED_RUN_GRACE_MINUTES);
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(250));
        if std::time::Instant::now() < next_check {
            continue;
        }
        next_check = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let now = now_ny(pretend);
        let today = now.date_naive();
        let due_today = matches!(
            crate::jobs::daily_check::last_due_session(config, now, grace),
            Ok(Some((d, _))) if d == today
        );
        let timeout = std::time::Duration::from_secs(5);
        if due_today && settled != Some(today) {
            // Read the state under the gate; send with the gate released.
            let found = match crate::store::try_gate(std::time::Duration::from_secs(1)) {
                // A firing has the store: only the daily run's own firing means the run
                // is still going; a slot job or a command is looked past (next check).
                None if DAILY_FIRING.load(Ordering::SeqCst) => {
                    missed_run_alert(None, config, &prepared, now)
                        .ok()
                        .flatten()
                }
                None => continue,
                Some(_gate) if !db.exists() => missed_run_alert(None, config, &prepared, now)
                    .ok()
                    .flatten()
                    .map(|mut a| {
                        a.text = a.text.replace(
                            "has not finished: a job is still running",
                            "is missing: the store does not exist yet",
                        );
                        a
                    }),
                Some(_gate) => {
                    match crate::store::Store::open_read(db, timeout)
                        .map_err(anyhow::Error::from)
                        .and_then(|store| {
                            missed_run_alert(Some(&store.conn), config, &prepared, now)
                        }) {
                        Ok(a) => a,
                        // Another process (a cron run, `optdesk sql`) has it: look again.
                        Err(_) => continue,
                    }
                }
            };
            settled = Some(today);
            if let Some(alert) = found {
                eprintln!("schedule: {}", alert.text);
                if send {
                    let sent = channels
                        .iter()
                        .map(|ch| alerts::send(ch, &alert, config))
                        .collect();
                    unrecorded.push((alert, sent));
                }
            }
        }
        if unrecorded.is_empty() {
            continue;
        }
        // Record the deliveries: the gate and a writer, briefly.
        let Some(_gate) = crate::store::try_gate(std::time::Duration::from_secs(1)) else {
            continue;
        };
        if let Ok(store) =
            crate::store::Store::open_write(db, timeout, "optdesk schedule (the missed-run alert)")
        {
            for (alert, sent) in unrecorded.drain(..) {
                for d in &sent {
                    if let Err(e) = alerts::record(&store, &alert, d) {
                        tracing::warn!("alerts: could not record the outcome: {e}");
                    }
                }
            }
        }
    }
}

/// Set by the daemon while its daily pipeline's firing runs: the missed-run watch, finding
/// the store busy, tells the daily run still going from a slot job or a command.
pub static DAILY_FIRING: AtomicBool = AtomicBool::new(false);

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_ny_datetime;

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn a_slot_at_the_daily_snapshot_does_not_fire() {
        let entries = vec![
            Entry {
                target: Target::Daily,
                spec: TimeSpec::parse("open+5m").unwrap(),
            },
            Entry {
                target: Target::Job("fetch_chains".into()),
                spec: TimeSpec::parse("every 5m from open+5m to open+15m").unwrap(),
            },
        ];
        let from = parse_ny_datetime("2025-03-14").unwrap();
        let p = plan(&entries, from, 1);
        let got: Vec<(NaiveTime, usize)> = p.iter().map(|f| (f.at.time(), f.entry)).collect();
        assert_eq!(got, [(hm(9, 35), 0), (hm(9, 40), 1), (hm(9, 45), 1)]);
    }

    #[test]
    fn plan_only_fires_on_sessions() {
        let entries = vec![Entry {
            target: Target::Daily,
            spec: TimeSpec::parse("open+5m").unwrap(),
        }];
        // Thanksgiving week 2025: Thursday closed.
        let from = parse_ny_datetime("2025-11-24").unwrap();
        let p = plan(&entries, from, 7);
        let dates: Vec<String> = p.iter().map(|f| f.session.date.to_string()).collect();
        assert_eq!(
            dates,
            ["2025-11-24", "2025-11-25", "2025-11-26", "2025-11-28"]
        );
        for f in &p {
            assert_eq!(f.at.time(), hm(9, 35));
        }
    }
}
