//! When jobs run: session-relative times (`open+5m`, `close-30m`: early closes move them)
//! or cron expressions, always in America/New_York, and only on NYSE sessions.
//!
//! The daemon (`optdesk schedule`) ticks once a second on tokio-cron-scheduler and asks
//! the calendar what is due; this keeps DST and early closes exact (a cron job with a
//! fixed UTC offset would drift an hour at each DST change). It never starts an entry
//! whose previous firing is still running, opens the store only while a job runs, and
//! on SIGTERM/Ctrl-C lets the running job finish, then exits.

use crate::calendar::{self, Session};
use crate::config::Config;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike};
use chrono_tz::America::New_York;
use chrono_tz::Tz;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Open,
    Close,
}

#[derive(Debug, Clone)]
pub enum TimeSpec {
    /// Minutes relative to the session's open or close.
    Session { anchor: Anchor, offset_minutes: i64 },
    /// A cron expression (5 fields, or 6 with seconds), evaluated in New York time.
    Cron {
        expr: String,
        cron: Box<croner::Cron>,
    },
}

/// Parse `5m`, `90m`, `1h`, `1h30m` into minutes.
fn parse_duration(s: &str) -> Option<i64> {
    let mut total = 0i64;
    let mut num = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            let n: i64 = num.parse().ok()?;
            num.clear();
            total = total.checked_add(match c {
                'h' => n.checked_mul(60)?,
                'm' => n,
                _ => return None,
            })?;
            any = true;
        }
    }
    (num.is_empty() && any).then_some(total)
}

impl TimeSpec {
    pub fn parse(s: &str) -> Result<TimeSpec, String> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        for (word, anchor) in [("open", Anchor::Open), ("close", Anchor::Close)] {
            if let Some(rest) = lower.strip_prefix(word) {
                let rest = rest.trim();
                if rest.is_empty() {
                    return Ok(TimeSpec::Session {
                        anchor,
                        offset_minutes: 0,
                    });
                }
                let (sign, dur) = if let Some(d) = rest.strip_prefix('+') {
                    (1, d.trim())
                } else if let Some(d) = rest.strip_prefix('-') {
                    (-1, d.trim())
                } else {
                    return Err(format!(
                        "expected {word}+<n>m or {word}-<n>m with an ASCII + or -, e.g. {word}+5m"
                    ));
                };
                let m = parse_duration(dur)
                    .ok_or_else(|| format!("'{dur}' is not a duration like 5m, 2h or 1h30m"))?;
                if m > 12 * 60 {
                    return Err("offsets larger than 12h are not supported".into());
                }
                return Ok(TimeSpec::Session {
                    anchor,
                    offset_minutes: sign * m,
                });
            }
        }
        let expr = t.strip_prefix("cron:").unwrap_or(t).trim();
        if expr.split_whitespace().count() >= 5 {
            let cron: croner::Cron = expr
                .parse()
                .map_err(|e| format!("not a valid cron expression: {e}"))?;
            return Ok(TimeSpec::Cron {
                expr: expr.to_string(),
                cron: Box::new(cron),
            });
        }
        Err("expected a session-relative time (open+5m, close-30m) or a cron expression (35 9 * * MON-FRI)".into())
    }

    /// The New York times this spec fires on a session's day, in order.
    pub fn times_on(&self, s: &Session) -> Vec<NaiveTime> {
        match self {
            TimeSpec::Session {
                anchor,
                offset_minutes,
            } => {
                let base = match anchor {
                    Anchor::Open => s.open,
                    Anchor::Close => s.close,
                };
                let dt = s.date.and_time(base) + Duration::minutes(*offset_minutes);
                if dt.date() == s.date {
                    vec![dt.time()]
                } else {
                    Vec::new()
                }
            }
            TimeSpec::Cron { cron, .. } => {
                let mut out = Vec::new();
                let start = calendar::ny(s.date.and_hms_opt(0, 0, 0).expect("midnight"));
                let mut cur = start;
                let mut inclusive = true;
                // Bounded: at most one firing per second of the day.
                for _ in 0..86_400 {
                    match cron.find_next_occurrence(&cur, inclusive) {
                        Ok(next) if next.date_naive() == s.date => {
                            out.push(next.time());
                            cur = next;
                            inclusive = false;
                        }
                        _ => break,
                    }
                }
                out
            }
        }
    }
}

impl std::fmt::Display for TimeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeSpec::Session {
                anchor,
                offset_minutes,
            } => {
                let a = if *anchor == Anchor::Open {
                    "open"
                } else {
                    "close"
                };
                match offset_minutes {
                    0 => write!(f, "{a}"),
                    m if *m > 0 => write!(f, "{a}+{m}m"),
                    m => write!(f, "{a}-{}m", -m),
                }
            }
            TimeSpec::Cron { expr, .. } => write!(f, "cron {expr}"),
        }
    }
}

/// The New York time of a session's snapshot for a run: the intraday `slot` when
/// given (it must fall within the session), else the session's daily time from
/// `schedule.daily` — so `run daily --as-of D` by hand reproduces the scheduled run.
pub fn snapshot_time(
    config: &Config,
    date: NaiveDate,
    slot: Option<NaiveTime>,
) -> Result<NaiveDateTime, String> {
    let session = calendar::session(date)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{date} is not an NYSE session"))?;
    let time = match slot {
        Some(t) if t < session.open || t > session.close => {
            return Err(format!(
                "slot {} is outside the session of {date} ({}–{} New York)",
                t.format("%H:%M"),
                session.open.format("%H:%M"),
                session.close.format("%H:%M")
            ))
        }
        Some(t) => t,
        None => {
            let spec = TimeSpec::parse(&config.desk.schedule.daily)?;
            let times = spec.times_on(&session);
            // The first firing within the session's hours, else the day's first.
            let in_hours = times
                .iter()
                .find(|t| **t >= session.open && **t <= session.close);
            *in_hours.or(times.first()).ok_or_else(|| {
                format!(
                    "schedule.daily = \"{}\" does not fire on {date}; run with --slot HH:MM",
                    config.desk.schedule.daily
                )
            })?
        }
    };
    Ok(date.and_time(time))
}

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
        spec: TimeSpec::parse(&config.desk.schedule.daily).map_err(|e| {
            crate::config::ConfigError::Invalid {
                file: config.dir.join("desk.toml").display().to_string(),
                message: format!("schedule.daily: {e}"),
            }
        })?,
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
            for (i, e) in entries.iter().enumerate() {
                for t in e.spec.times_on(&session) {
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

/// Now in New York, optionally pretending today is another date (for testing the
/// daemon on a chosen session; the time of day stays real).
pub fn now_ny(pretend: Option<NaiveDate>) -> DateTime<Tz> {
    let now = chrono::Utc::now().with_timezone(&New_York);
    match pretend {
        Some(d) => calendar::ny(NaiveDateTime::new(d, now.time())),
        None => now,
    }
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
) -> anyhow::Result<()> {
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

/// A New York date-time from `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`.
pub fn parse_ny_datetime(s: &str) -> Result<DateTime<Tz>, String> {
    if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M") {
        return Ok(calendar::ny(dt));
    }
    let d = calendar::parse_date(s)?;
    Ok(New_York
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
        .earliest()
        .unwrap_or_else(|| calendar::ny(d.and_hms_opt(1, 0, 0).expect("1am"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(d: &str) -> Session {
        calendar::session(NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap())
            .unwrap()
            .unwrap()
    }
    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn session_relative_times_follow_early_closes() {
        let s = TimeSpec::parse("close-30m").unwrap();
        assert_eq!(s.times_on(&session("2025-03-14")), vec![hm(15, 30)]);
        assert_eq!(
            s.times_on(&session("2025-11-28")),
            vec![hm(12, 30)],
            "day after Thanksgiving closes at 13:00"
        );
        let o = TimeSpec::parse("open+5m").unwrap();
        assert_eq!(o.times_on(&session("2025-03-14")), vec![hm(9, 35)]);
        assert_eq!(
            TimeSpec::parse("open+1h30m")
                .unwrap()
                .times_on(&session("2025-03-14")),
            vec![hm(11, 0)]
        );
    }

    #[test]
    fn cron_times_are_new_york_across_dst() {
        let c = TimeSpec::parse("35 9 * * MON-FRI").unwrap();
        // Before and after the March 2025 DST change: 09:35 New York both times.
        assert_eq!(c.times_on(&session("2025-03-07")), vec![hm(9, 35)]);
        assert_eq!(c.times_on(&session("2025-03-10")), vec![hm(9, 35)]);
        let every_30 = TimeSpec::parse("0,30 10-11 * * *").unwrap();
        assert_eq!(every_30.times_on(&session("2025-03-10")).len(), 4);
    }

    #[test]
    fn bad_specs_are_refused() {
        for s in [
            "open+",
            "open*5m",
            "noon",
            "close-5x",
            "61 9 * * *",
            "close\u{2212}30m",
            "open+99999999999999999h",
        ] {
            assert!(TimeSpec::parse(s).is_err(), "{s}");
        }
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
