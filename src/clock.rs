//! Times of day on the NYSE calendar: session-relative times (`open+5m`, `close-30m`:
//! early closes move them) and cron expressions, always in America/New_York; the
//! snapshot time of a run; now in New York.
//!
//! This is the calendar side of the schedule: the daemon (`crate::schedule`), the job
//! runner and a backtest all resolve times here, and none of them depends on another.

use crate::calendar::{self, CalendarError, Session};
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::America::New_York;
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Open,
    Close,
}

/// One end of a repeating slot's window: a fixed New York time or a session-relative one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// A fixed New York time (`10:30`).
    At(NaiveTime),
    /// Minutes relative to the session's open or close (`open+5m`, `close-5m`).
    Session { anchor: Anchor, offset_minutes: i64 },
}

impl Point {
    /// The point on a session's day (`None` when an offset leaves the day).
    fn on(&self, s: &Session) -> Option<NaiveDateTime> {
        match self {
            Point::At(t) => Some(s.date.and_time(*t)),
            Point::Session {
                anchor,
                offset_minutes,
            } => {
                let base = match anchor {
                    Anchor::Open => s.open,
                    Anchor::Close => s.close,
                };
                let dt = s.date.and_time(base) + Duration::minutes(*offset_minutes);
                (dt.date() == s.date).then_some(dt)
            }
        }
    }

    /// `10:30`, or `open+5m` / `close-30m`.
    fn parse(s: &str) -> Result<Point, String> {
        let t = s.trim();
        if let Some(at) = parse_hhmm(t) {
            return Ok(Point::At(at));
        }
        match parse_session_relative(t) {
            Some(r) => r.map(|(anchor, offset_minutes)| Point::Session {
                anchor,
                offset_minutes,
            }),
            None => Err(format!(
                "'{t}' is not a time: expected HH:MM (New York) or open+<n>m / close-<n>m"
            )),
        }
    }
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Point::At(t) => write!(f, "{}", t.format("%H:%M")),
            Point::Session {
                anchor,
                offset_minutes,
            } => write_session(f, *anchor, *offset_minutes),
        }
    }
}

fn write_session(
    f: &mut std::fmt::Formatter<'_>,
    anchor: Anchor,
    offset_minutes: i64,
) -> std::fmt::Result {
    let a = if anchor == Anchor::Open {
        "open"
    } else {
        "close"
    };
    match offset_minutes {
        0 => write!(f, "{a}"),
        m if m > 0 => write!(f, "{a}+{m}m"),
        m => write!(f, "{a}-{}m", -m),
    }
}

/// `HH:MM` (24-hour, New York).
fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

/// `open`, `open+5m`, `close-30m`: `None` when the text does not start with open/close.
fn parse_session_relative(t: &str) -> Option<Result<(Anchor, i64), String>> {
    let lower = t.to_ascii_lowercase();
    for (word, anchor) in [("open", Anchor::Open), ("close", Anchor::Close)] {
        let Some(rest) = lower.strip_prefix(word) else {
            continue;
        };
        let rest = rest.trim();
        if rest.is_empty() {
            return Some(Ok((anchor, 0)));
        }
        let (sign, dur) = if let Some(d) = rest.strip_prefix('+') {
            (1, d.trim())
        } else if let Some(d) = rest.strip_prefix('-') {
            (-1, d.trim())
        } else {
            return Some(Err(format!(
                "expected {word}+<n>m or {word}-<n>m with an ASCII + or -, e.g. {word}+5m"
            )));
        };
        let Some(m) = parse_duration(dur) else {
            return Some(Err(format!(
                "'{dur}' is not a duration like 5m, 2h or 1h30m"
            )));
        };
        if m > 12 * 60 {
            return Some(Err("offsets larger than 12h are not supported".into()));
        }
        return Some(Ok((anchor, sign * m)));
    }
    None
}

#[derive(Debug, Clone)]
pub enum TimeSpec {
    /// Minutes relative to the session's open or close.
    Session { anchor: Anchor, offset_minutes: i64 },
    /// A fixed New York time (`10:30`); it does not fire on a day whose session has
    /// closed by then (an early close).
    At(NaiveTime),
    /// `every 15m from 10:30 to 13:30`, `every 5m from open+5m to close-5m`: from the
    /// start to the end (both included when on the grid) every `every_minutes`, only
    /// the firings within the day's session (a fixed end after an early close is cut
    /// at the close).
    Every {
        every_minutes: i64,
        from: Point,
        to: Point,
    },
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
        if let Some(rest) = lower.strip_prefix("every") {
            return parse_every(rest);
        }
        if let Some(at) = parse_hhmm(t) {
            return Ok(TimeSpec::At(at));
        }
        if let Some(r) = parse_session_relative(t) {
            return r.map(|(anchor, offset_minutes)| TimeSpec::Session {
                anchor,
                offset_minutes,
            });
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
        Err("expected a time (10:30 New York), a session-relative time (open+5m, close-30m), a repeating slot (every 15m from 10:30 to 13:30) or a cron expression (35 9 * * MON-FRI)".into())
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
            TimeSpec::At(t) => {
                if within_session(*t, s) {
                    vec![*t]
                } else {
                    Vec::new()
                }
            }
            TimeSpec::Every {
                every_minutes,
                from,
                to,
            } => {
                let (Some(mut t), Some(end)) = (from.on(s), to.on(s)) else {
                    return Vec::new();
                };
                let step = Duration::minutes((*every_minutes).max(1));
                let mut out = Vec::new();
                while t <= end && t.date() == s.date {
                    if within_session(t.time(), s) {
                        out.push(t.time());
                    }
                    t += step;
                }
                out
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
            } => write_session(f, *anchor, *offset_minutes),
            TimeSpec::At(t) => write!(f, "{}", t.format("%H:%M")),
            TimeSpec::Every {
                every_minutes,
                from,
                to,
            } => write!(f, "every {every_minutes}m from {from} to {to}"),
            TimeSpec::Cron { expr, .. } => write!(f, "cron {expr}"),
        }
    }
}

/// Why a run has no snapshot time.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClockError {
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error("{0} is not an NYSE session")]
    NotASession(NaiveDate),
    #[error(
        "slot {} is outside the session of {} ({}–{} New York)",
        .slot.format("%H:%M"),
        .session.date,
        .session.open.format("%H:%M"),
        .session.close.format("%H:%M")
    )]
    SlotOutsideSession { slot: NaiveTime, session: Session },
    #[error("schedule.daily ({daily}) does not fire on {date}; run with --slot HH:MM")]
    NoDailyTime { daily: String, date: NaiveDate },
    #[error(
        "schedule.daily ({daily}) fires at {}, outside the session of {} ({}–{} New York); run with --slot HH:MM",
        .time.format("%H:%M"),
        .session.date,
        .session.open.format("%H:%M"),
        .session.close.format("%H:%M")
    )]
    DailyOutsideSession {
        daily: String,
        time: NaiveTime,
        session: Session,
    },
}

/// The one rule for a snapshot time, a `--slot` and `schedule.daily` alike: within the
/// session, from the open to the close (both included). Quotes, marks and trades taken
/// while the market is closed are not the session's.
pub fn within_session(t: NaiveTime, s: &Session) -> bool {
    t >= s.open && t <= s.close
}

impl TimeSpec {
    /// The first firing on a session's day at or after `from` (New York). Two cron
    /// look-ups, where [`TimeSpec::times_on`] lists every firing of the day.
    fn next_on(&self, s: &Session, from: NaiveTime) -> Option<NaiveTime> {
        match self {
            TimeSpec::Session { .. } | TimeSpec::At(_) | TimeSpec::Every { .. } => {
                self.times_on(s).into_iter().find(|t| *t >= from)
            }
            TimeSpec::Cron { cron, .. } => {
                let start = calendar::ny(s.date.and_time(from));
                match cron.find_next_occurrence(&start, true) {
                    Ok(next) if next.date_naive() == s.date => Some(next.time()),
                    _ => None,
                }
            }
        }
    }

    /// Whether this spec can be the daily snapshot time: on every regular session of a
    /// reference year (2025; early closes are checked when they come, by
    /// [`snapshot_time`]) it fires within the session at least once when it fires at
    /// all (the snapshot is its first firing within the session). `close+30m`,
    /// `open-2h` or a 03:00 cron are refused, as `--slot` refuses those times.
    pub fn check_within_sessions(&self) -> Result<(), String> {
        let (from, to) = (
            NaiveDate::from_ymd_opt(2025, 1, 1).expect("date"),
            NaiveDate::from_ymd_opt(2025, 12, 31).expect("date"),
        );
        let sessions = calendar::sessions(from, to).map_err(|e| e.to_string())?;
        for s in sessions.iter().filter(|s| !s.is_early_close()) {
            let first = self.next_on(s, NaiveTime::MIN);
            let in_session = self.next_on(s, s.open).filter(|t| within_session(*t, s));
            if let (Some(t), None) = (first, in_session) {
                return Err(format!(
                    "fires at {} New York (on {}, say), outside the session ({}–{}): the desk snapshots and trades while the market is open, as a --slot outside the session is refused",
                    t.format("%H:%M"),
                    s.date,
                    s.open.format("%H:%M"),
                    s.close.format("%H:%M")
                ));
            }
            if !matches!(self, TimeSpec::Cron { .. }) {
                // The same on every regular session.
                break;
            }
        }
        Ok(())
    }
}

/// The rest of `every <n>m from <start> to <end>` (after `every`).
fn parse_every(rest: &str) -> Result<TimeSpec, String> {
    const SHAPE: &str = "expected every <n>m from <start> to <end>, e.g. every 15m from 10:30 to 13:30 or every 5m from open+5m to close-5m";
    let rest = rest.trim();
    let (step, window) = rest.split_once(' ').unwrap_or((rest, ""));
    let too_often = || {
        format!(
            "every {step} repeats more often than once a minute (or not in whole minutes): the shortest repeat is every 1m"
        )
    };
    let every_minutes = match parse_duration(step) {
        Some(m) if m >= 1 => m,
        Some(_) => return Err(too_often()),
        None if step.len() > 1
            && step.ends_with('s')
            && step[..step.len() - 1].chars().all(|c| c.is_ascii_digit()) =>
        {
            return Err(too_often())
        }
        None => {
            return Err(format!(
                "'{step}' is not a repeat like 5m, 15m or 1h; {SHAPE}"
            ))
        }
    };
    if every_minutes > 24 * 60 {
        return Err(format!(
            "every {step}: a repeat longer than a day never repeats"
        ));
    }
    let window = window.trim();
    let (from, to) = window
        .strip_prefix("from ")
        .and_then(|w| w.split_once(" to "))
        .ok_or_else(|| SHAPE.to_string())?;
    Ok(TimeSpec::Every {
        every_minutes,
        from: Point::parse(from)?,
        to: Point::parse(to)?,
    })
}

impl TimeSpec {
    /// Whether this spec can be a job's intraday slot: on a regular session (and, for
    /// session-relative times, on an early close) every time it names lies within the
    /// session, and a window ends at or after its start. `17:00`, `close+10m`,
    /// `every 5m from 13:00 to 10:00` and a cron firing at 03:00 are refused.
    pub fn check_slot(&self) -> Result<(), String> {
        // A regular session and an early close (the day after Thanksgiving 2025).
        let regular = calendar::session(NaiveDate::from_ymd_opt(2025, 3, 14).expect("date"))
            .map_err(|e| e.to_string())?
            .ok_or("the reference session is missing from the calendar")?;
        let early = calendar::session(NaiveDate::from_ymd_opt(2025, 11, 28).expect("date"))
            .map_err(|e| e.to_string())?
            .ok_or("the reference session is missing from the calendar")?;
        let outside = |what: &str, t: NaiveDateTime, s: &Session| {
            format!(
                "{what} is {} New York on a regular session, outside the session ({}–{}): a slot snapshots and trades while the market is open",
                t.format("%H:%M"),
                s.open.format("%H:%M"),
                s.close.format("%H:%M")
            )
        };
        let check_point = |what: &str, p: &Point| -> Result<(), String> {
            let t = p
                .on(&regular)
                .ok_or_else(|| format!("{what} ({p}) leaves the day"))?;
            if t.date() != regular.date || !within_session(t.time(), &regular) {
                return Err(outside(&format!("{what} ({p})"), t, &regular));
            }
            // A session-relative point moves with an early close and must stay in it;
            // a fixed time after an early close simply does not fire that day.
            if let Point::Session { .. } = p {
                match p.on(&early) {
                    Some(e) if within_session(e.time(), &early) => {}
                    Some(e) => {
                        return Err(format!(
                            "{what} ({p}) is {} New York on an early close, outside its session ({}–{})",
                            e.format("%H:%M"),
                            early.open.format("%H:%M"),
                            early.close.format("%H:%M")
                        ))
                    }
                    None => return Err(format!("{what} ({p}) leaves the day")),
                }
            }
            Ok(())
        };
        match self {
            TimeSpec::Session {
                anchor,
                offset_minutes,
            } => check_point(
                "the slot",
                &Point::Session {
                    anchor: *anchor,
                    offset_minutes: *offset_minutes,
                },
            ),
            TimeSpec::At(t) => check_point("the slot", &Point::At(*t)),
            TimeSpec::Every { from, to, .. } => {
                check_point("the start", from)?;
                check_point("the end", to)?;
                for s in [&regular, &early] {
                    if let (Some(a), Some(b)) = (from.on(s), to.on(s)) {
                        // A fixed end past an early close is cut at the close: only a
                        // window that ends before it starts on the same terms is wrong.
                        let cut = matches!(to, Point::At(_)) && !within_session(b.time(), s);
                        if b < a && !cut {
                            return Err(format!(
                                "the window ends ({to}, {} New York) before it starts ({from}, {}){}",
                                b.format("%H:%M"),
                                a.format("%H:%M"),
                                if s.is_early_close() { " on an early close" } else { "" }
                            ));
                        }
                    }
                }
                Ok(())
            }
            TimeSpec::Cron { .. } => {
                // A week of regular sessions: every firing within the session.
                let week = calendar::sessions(
                    NaiveDate::from_ymd_opt(2025, 3, 10).expect("date"),
                    NaiveDate::from_ymd_opt(2025, 3, 14).expect("date"),
                )
                .map_err(|e| e.to_string())?;
                for s in &week {
                    if let Some(t) = self
                        .times_on(s)
                        .into_iter()
                        .find(|t| !within_session(*t, s))
                    {
                        return Err(outside("a firing", s.date.and_time(t), s));
                    }
                }
                Ok(())
            }
        }
    }
}

/// The New York time of a session's snapshot for a run: the intraday `slot` when
/// given (it must fall within the session), else the session's `daily` time (the
/// desk's `schedule.daily`), so `run daily --as-of D` by hand reproduces the
/// scheduled run.
pub fn snapshot_time(
    daily: &TimeSpec,
    date: NaiveDate,
    slot: Option<NaiveTime>,
) -> Result<NaiveDateTime, ClockError> {
    let session = calendar::session(date)?.ok_or(ClockError::NotASession(date))?;
    let time = match slot {
        Some(t) if !within_session(t, &session) => {
            return Err(ClockError::SlotOutsideSession { slot: t, session })
        }
        Some(t) => t,
        None => {
            let times = daily.times_on(&session);
            // The first firing within the session: the same rule as for a slot.
            match times.iter().find(|t| within_session(**t, &session)) {
                Some(t) => *t,
                None => {
                    return Err(match times.first() {
                        Some(t) => ClockError::DailyOutsideSession {
                            daily: daily.to_string(),
                            time: *t,
                            session,
                        },
                        None => ClockError::NoDailyTime {
                            daily: daily.to_string(),
                            date,
                        },
                    })
                }
            }
        }
    };
    Ok(date.and_time(time))
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

    fn date(d: &str) -> NaiveDate {
        NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap()
    }
    fn session(d: &str) -> Session {
        calendar::session(date(d)).unwrap().unwrap()
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
    fn snapshot_time_is_the_slot_or_the_daily_time() {
        let daily = TimeSpec::parse("close-30m").unwrap();
        let d = date("2025-11-28");
        // The daily time follows the early close (13:00).
        assert_eq!(snapshot_time(&daily, d, None), Ok(d.and_time(hm(12, 30))));
        assert_eq!(
            snapshot_time(&daily, d, Some(hm(10, 0))),
            Ok(d.and_time(hm(10, 0)))
        );
        let late = snapshot_time(&daily, d, Some(hm(14, 0))).unwrap_err();
        assert_eq!(
            late.to_string(),
            "slot 14:00 is outside the session of 2025-11-28 (09:30–13:00 New York)"
        );
        assert_eq!(
            snapshot_time(&daily, date("2025-11-27"), None),
            Err(ClockError::NotASession(date("2025-11-27")))
        );
        let saturdays = TimeSpec::parse("0 8 * * SAT").unwrap();
        let e = snapshot_time(&saturdays, d, None).unwrap_err().to_string();
        assert!(
            e.contains("does not fire on 2025-11-28") && e.contains("--slot"),
            "{e}"
        );
        assert!(matches!(
            snapshot_time(&daily, date("1999-12-31"), None),
            Err(ClockError::Calendar(_))
        ));
    }

    #[test]
    fn a_daily_time_outside_the_session_is_refused_like_a_slot() {
        let d = date("2025-03-14");
        // (schedule.daily, the time it gives, within 09:30–16:00?)
        let cases = [
            ("open", "09:30", true),
            ("close", "16:00", true),
            ("open+5m", "09:35", true),
            ("close-30m", "15:30", true),
            ("35 9 * * MON-FRI", "09:35", true),
            ("close+30m", "16:30", false),
            ("open-2h", "07:30", false),
            ("0 3 * * *", "03:00", false),
            ("0 8 * * *", "08:00", false),
            ("0 17 * * MON-FRI", "17:00", false),
        ];
        for (spec, at, inside) in cases {
            let daily = TimeSpec::parse(spec).unwrap();
            let got = snapshot_time(&daily, d, None);
            let load = daily.check_within_sessions();
            let slot = snapshot_time(
                &daily,
                d,
                Some(NaiveTime::parse_from_str(at, "%H:%M").unwrap()),
            );
            assert_eq!(got.is_ok(), inside, "{spec}: {got:?}");
            assert_eq!(load.is_ok(), inside, "{spec}: {load:?}");
            assert_eq!(slot.is_ok(), inside, "{spec} as a slot: {slot:?}");
            if !inside {
                let e = got.unwrap_err().to_string();
                assert!(
                    e.contains(&format!(
                        "fires at {at}, outside the session of 2025-03-14 (09:30–16:00 New York)"
                    )),
                    "{e}"
                );
                let e = load.unwrap_err();
                assert!(
                    e.contains(&format!("fires at {at} New York"))
                        && e.contains("outside the session"),
                    "{e}"
                );
            }
        }
        // A cron firing in and out of the session snapshots at its first firing in it.
        let both = TimeSpec::parse("0 3,10 * * *").unwrap();
        assert!(both.check_within_sessions().is_ok());
        assert_eq!(snapshot_time(&both, d, None), Ok(d.and_time(hm(10, 0))));
        // On an early close, open+5h (14:30) is past the 13:00 close.
        let late = TimeSpec::parse("open+5h").unwrap();
        assert!(late.check_within_sessions().is_ok());
        assert!(matches!(
            snapshot_time(&late, date("2025-11-28"), None),
            Err(ClockError::DailyOutsideSession { .. })
        ));
    }

    #[test]
    fn repeating_slots_fire_on_their_grid_within_the_session() {
        let every15 = TimeSpec::parse("every 15m from 10:30 to 13:30").unwrap();
        let t = every15.times_on(&session("2025-03-14"));
        assert_eq!(t.len(), 13, "10:30, 10:45, ..., 13:30: {t:?}");
        assert_eq!((t[0], t[12]), (hm(10, 30), hm(13, 30)));
        assert_eq!(every15.to_string(), "every 15m from 10:30 to 13:30");
        // A fixed end after an early close (13:00) is cut at the close.
        let early = every15.times_on(&session("2025-11-28"));
        assert_eq!(early.last(), Some(&hm(13, 0)), "{early:?}");
        assert_eq!(early.len(), 11);
        // Session-relative ends move with the early close.
        let grid = TimeSpec::parse("every 5m from open+5m to close-5m").unwrap();
        let regular = grid.times_on(&session("2025-03-14"));
        assert_eq!(regular.len(), 77, "09:35 to 15:55 every 5 minutes");
        assert_eq!(
            (regular[0], *regular.last().unwrap()),
            (hm(9, 35), hm(15, 55))
        );
        assert!(
            regular.contains(&hm(15, 30)),
            "the 0DTE auto-close time close-30m is on the grid"
        );
        let short = grid.times_on(&session("2025-11-28"));
        assert_eq!(*short.last().unwrap(), hm(12, 55));
        assert!(short.contains(&hm(12, 30)), "close-30m on an early close");
        assert_eq!(short.len(), 41);
        assert!(grid.check_slot().is_ok());
        assert!(every15.check_slot().is_ok());
        // A plain fixed time, and one that falls after an early close.
        let at = TimeSpec::parse("14:00").unwrap();
        assert_eq!(at.times_on(&session("2025-03-14")), vec![hm(14, 0)]);
        assert!(at.times_on(&session("2025-11-28")).is_empty());
        assert!(at.check_slot().is_ok());
        assert_eq!(at.to_string(), "14:00");
        assert!(TimeSpec::parse("every 1m from open to close")
            .unwrap()
            .check_slot()
            .is_ok());
    }

    #[test]
    fn bad_slots_are_refused_with_the_reason() {
        // (spec, refused when parsed?, the reason's words)
        let cases = [
            (
                "every 0m from 10:30 to 13:30",
                true,
                "more often than once a minute",
            ),
            (
                "every 30s from 10:30 to 13:30",
                true,
                "more often than once a minute",
            ),
            ("every 15m from 10:30", true, "expected every <n>m from"),
            ("every 15m from 10:30 to noon", true, "'noon' is not a time"),
            (
                "every 15m from 10:30 until 13:30",
                true,
                "expected every <n>m from",
            ),
            ("25:00", true, "expected a time"),
            (
                "17:00",
                false,
                "17:00 New York on a regular session, outside the session",
            ),
            ("08:00", false, "outside the session"),
            (
                "close+10m",
                false,
                "16:10 New York on a regular session, outside the session",
            ),
            ("open-5m", false, "outside the session"),
            (
                "every 15m from 13:30 to 10:30",
                false,
                "the window ends (10:30, 10:30 New York) before it starts (13:30, 13:30)",
            ),
            (
                "every 5m from close-5m to open+5m",
                false,
                "before it starts",
            ),
            (
                "every 5m from open+5m to close+10m",
                false,
                "the end (close+10m)",
            ),
            (
                "every 5m from 09:00 to 12:00",
                false,
                "the start (09:00) is 09:00",
            ),
            // 15:00 is inside a regular session but after an early close's 13:00.
            ("every 5m from open+5m to close-5m", false, ""),
            ("every 15m from 10:30 to 13:30", false, ""),
            ("*/30 * * * MON-FRI", false, "a firing is 00:00 New York"),
            ("0,30 10-11 * * *", false, ""),
        ];
        for (spec, at_parse, why) in cases {
            let parsed = TimeSpec::parse(spec);
            if at_parse {
                let e = parsed.unwrap_err();
                assert!(e.contains(why), "{spec}: {e}");
                continue;
            }
            let checked = parsed
                .unwrap_or_else(|e| panic!("{spec}: {e}"))
                .check_slot();
            if why.is_empty() {
                assert!(checked.is_ok(), "{spec}: {checked:?}");
            } else {
                let e = checked.unwrap_err();
                assert!(e.contains(why), "{spec}: {e}");
            }
        }
        // A session-relative end that an early close pushes before the start.
        let e = TimeSpec::parse("every 5m from 12:00 to close-2h")
            .unwrap()
            .check_slot()
            .unwrap_err();
        assert!(e.contains("on an early close"), "{e}");
    }

    #[test]
    fn ny_datetimes_parse_with_or_without_a_time() {
        let t = parse_ny_datetime("2025-03-14T09:35").unwrap();
        assert_eq!(t.time(), hm(9, 35));
        assert_eq!(parse_ny_datetime("2025-03-14").unwrap().time(), hm(0, 0));
        assert!(parse_ny_datetime("14/03/2025").is_err());
    }
}
