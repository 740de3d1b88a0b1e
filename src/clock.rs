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
        Some(t) if t < session.open || t > session.close => {
            return Err(ClockError::SlotOutsideSession { slot: t, session })
        }
        Some(t) => t,
        None => {
            let times = daily.times_on(&session);
            // The first firing within the session's hours, else the day's first.
            let in_hours = times
                .iter()
                .find(|t| **t >= session.open && **t <= session.close);
            *in_hours
                .or(times.first())
                .ok_or_else(|| ClockError::NoDailyTime {
                    daily: daily.to_string(),
                    date,
                })?
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
    fn a_daily_time_before_the_open_still_gives_the_day_its_snapshot() {
        // 08:00 is outside the session's hours but it is the day's only firing.
        let early = TimeSpec::parse("0 8 * * *").unwrap();
        let d = date("2025-03-14");
        assert_eq!(snapshot_time(&early, d, None), Ok(d.and_time(hm(8, 0))));
    }

    #[test]
    fn ny_datetimes_parse_with_or_without_a_time() {
        let t = parse_ny_datetime("2025-03-14T09:35").unwrap();
        assert_eq!(t.time(), hm(9, 35));
        assert_eq!(parse_ny_datetime("2025-03-14").unwrap().time(), hm(0, 0));
        assert!(parse_ny_datetime("14/03/2025").is_err());
    }
}
