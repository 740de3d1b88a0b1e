//! The NYSE (XNYS) trading calendar, 2000 through 2035.
//!
//! Holidays are computed from their rules (NYSE Rule 7.2 and its history), not from a
//! table, so the calendar is checkable: weekends; New Year's Day (Sunday → Monday; a
//! Saturday New Year is *not* moved to Friday); Martin Luther King Jr. Day; Washington's
//! Birthday; Good Friday; Memorial Day; Juneteenth from 2022; Independence Day, Christmas
//! (Saturday → Friday, Sunday → Monday); Labor Day; Thanksgiving. Early closes at 13:00:
//! the day before Independence Day (Mon/Tue/Thu; Wednesday from 2013; the Friday after a
//! Thursday Independence Day before 2013), the day after Thanksgiving, Christmas Eve
//! (Mon–Thu), and the ad hoc 2003-12-26. Unscheduled closures are listed in
//! [`UNSCHEDULED_CLOSURES`]. The whole calendar is tested against the `exchange_calendars`
//! package's XNYS calendar for every session 2000–2030.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Weekday};
use chrono_tz::America::New_York;
use chrono_tz::Tz;

/// First and last years the calendar covers.
pub const FIRST_YEAR: i32 = 2000;
pub const LAST_YEAR: i32 = 2035;

/// Closures that no rule predicts (national days of mourning, weather, 9/11).
pub const UNSCHEDULED_CLOSURES: &[(&str, &str)] = &[
    ("2001-09-11", "September 11 attacks"),
    ("2001-09-12", "September 11 attacks"),
    ("2001-09-13", "September 11 attacks"),
    ("2001-09-14", "September 11 attacks"),
    (
        "2004-06-11",
        "National day of mourning for President Reagan",
    ),
    ("2007-01-02", "National day of mourning for President Ford"),
    ("2012-10-29", "Hurricane Sandy"),
    ("2012-10-30", "Hurricane Sandy"),
    (
        "2018-12-05",
        "National day of mourning for President George H. W. Bush",
    ),
    (
        "2025-01-09",
        "National day of mourning for President Carter",
    ),
];

/// Early closes that no rule predicts.
const ADHOC_EARLY_CLOSES: &[&str] = &["2003-12-26"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalendarError {
    #[error("{0} is outside the NYSE calendar's range ({FIRST_YEAR}-01-01 to {LAST_YEAR}-12-31)")]
    OutOfRange(NaiveDate),
}

/// One trading session: its date and its open and close in New York time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub date: NaiveDate,
    pub open: NaiveTime,
    pub close: NaiveTime,
}

impl Session {
    pub fn is_early_close(&self) -> bool {
        self.close < regular_close()
    }
    /// The open as an instant in America/New_York (DST handled by the tz database).
    pub fn open_at(&self) -> chrono::DateTime<Tz> {
        ny(self.date.and_time(self.open))
    }
    pub fn close_at(&self) -> chrono::DateTime<Tz> {
        ny(self.date.and_time(self.close))
    }
}

/// A New York wall-clock time as an instant. Market hours never fall in a DST gap or
/// overlap (those are at 02:00), so the earliest mapping is the only one.
pub fn ny(local: NaiveDateTime) -> chrono::DateTime<Tz> {
    New_York
        .from_local_datetime(&local)
        .earliest()
        .unwrap_or_else(|| New_York.from_utc_datetime(&local))
}

fn regular_open() -> NaiveTime {
    NaiveTime::from_hms_opt(9, 30, 0).expect("valid time")
}
fn regular_close() -> NaiveTime {
    NaiveTime::from_hms_opt(16, 0, 0).expect("valid time")
}
fn early_close() -> NaiveTime {
    NaiveTime::from_hms_opt(13, 0, 0).expect("valid time")
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid calendar date")
}

/// The n-th (1-based) given weekday of a month.
fn nth_weekday(y: i32, m: u32, wd: Weekday, n: u32) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(y, m, wd, n as u8).expect("nth weekday exists")
}

fn last_weekday(y: i32, m: u32, wd: Weekday) -> NaiveDate {
    let next_month = if m == 12 {
        date(y + 1, 1, 1)
    } else {
        date(y, m + 1, 1)
    };
    let mut d = next_month - Duration::days(1);
    while d.weekday() != wd {
        d -= Duration::days(1);
    }
    d
}

/// Easter Sunday (Gregorian), by the anonymous Gregorian algorithm (Meeus/Jones/Butcher).
pub fn easter(y: i32) -> NaiveDate {
    let a = y % 19;
    let b = y / 100;
    let c = y % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    date(y, month as u32, day as u32)
}

/// Saturday → Friday, Sunday → Monday (Independence Day, Juneteenth, Christmas).
fn observed(d: NaiveDate) -> NaiveDate {
    match d.weekday() {
        Weekday::Sat => d - Duration::days(1),
        Weekday::Sun => d + Duration::days(1),
        _ => d,
    }
}

/// The scheduled full-day holidays of a year, with their names.
pub fn holidays(y: i32) -> Vec<(NaiveDate, &'static str)> {
    let mut h = Vec::with_capacity(11);
    // New Year's Day: Sunday → Monday; Saturday is not observed on the Friday before
    // (NYSE rule: it would close the last session of the prior year).
    let ny_day = date(y, 1, 1);
    match ny_day.weekday() {
        Weekday::Sat => {}
        Weekday::Sun => h.push((date(y, 1, 2), "New Year's Day (observed)")),
        _ => h.push((ny_day, "New Year's Day")),
    }
    h.push((
        nth_weekday(y, 1, Weekday::Mon, 3),
        "Martin Luther King Jr. Day",
    ));
    h.push((nth_weekday(y, 2, Weekday::Mon, 3), "Washington's Birthday"));
    h.push((easter(y) - Duration::days(2), "Good Friday"));
    h.push((last_weekday(y, 5, Weekday::Mon), "Memorial Day"));
    if y >= 2022 {
        h.push((observed(date(y, 6, 19)), "Juneteenth"));
    }
    h.push((observed(date(y, 7, 4)), "Independence Day"));
    h.push((nth_weekday(y, 9, Weekday::Mon, 1), "Labor Day"));
    h.push((nth_weekday(y, 11, Weekday::Thu, 4), "Thanksgiving Day"));
    h.push((observed(date(y, 12, 25)), "Christmas Day"));
    h
}

fn is_early_close_by_rule(d: NaiveDate) -> bool {
    let y = d.year();
    let wd = d.weekday();
    // Day before Independence Day.
    if d.month() == 7 && d.day() == 3 {
        if matches!(wd, Weekday::Mon | Weekday::Tue | Weekday::Thu) {
            return true;
        }
        if wd == Weekday::Wed && y >= 2013 {
            return true;
        }
    }
    // Before 2013 a Thursday Independence Day made the Friday after it a half day.
    if d.month() == 7 && d.day() == 5 && wd == Weekday::Fri && y < 2013 {
        return true;
    }
    // Day after Thanksgiving.
    if d == nth_weekday(y, 11, Weekday::Thu, 4) + Duration::days(1) {
        return true;
    }
    // Christmas Eve, Monday to Thursday.
    if d.month() == 12 && d.day() == 24 && wd.number_from_monday() <= 4 {
        return true;
    }
    ADHOC_EARLY_CLOSES
        .iter()
        .any(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok() == Some(d))
}

/// Why a date is not a session, or `None` when it is one.
pub fn closed_reason(d: NaiveDate) -> Result<Option<String>, CalendarError> {
    check_range(d)?;
    if matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
        return Ok(Some(format!("{d} is a {} (weekend)", d.weekday())));
    }
    if let Some((_, name)) = holidays(d.year()).into_iter().find(|(h, _)| *h == d) {
        return Ok(Some(format!("{d} is an NYSE holiday: {name}")));
    }
    let ds = d.format("%Y-%m-%d").to_string();
    if let Some((_, why)) = UNSCHEDULED_CLOSURES.iter().find(|(s, _)| *s == ds) {
        return Ok(Some(format!("{d}: NYSE closed ({why})")));
    }
    Ok(None)
}

pub fn check_range(d: NaiveDate) -> Result<(), CalendarError> {
    if d.year() < FIRST_YEAR || d.year() > LAST_YEAR {
        return Err(CalendarError::OutOfRange(d));
    }
    Ok(())
}

/// The session on `d`, or `None` on a weekend, holiday or closure.
pub fn session(d: NaiveDate) -> Result<Option<Session>, CalendarError> {
    if closed_reason(d)?.is_some() {
        return Ok(None);
    }
    let close = if is_early_close_by_rule(d) {
        early_close()
    } else {
        regular_close()
    };
    Ok(Some(Session {
        date: d,
        open: regular_open(),
        close,
    }))
}

pub fn is_session(d: NaiveDate) -> Result<bool, CalendarError> {
    Ok(session(d)?.is_some())
}

/// All sessions in `[from, to]`, in order.
pub fn sessions(from: NaiveDate, to: NaiveDate) -> Result<Vec<Session>, CalendarError> {
    check_range(from)?;
    check_range(to)?;
    let mut out = Vec::new();
    let mut d = from;
    while d <= to {
        if let Some(s) = session(d)? {
            out.push(s);
        }
        d += Duration::days(1);
    }
    Ok(out)
}

/// The `n` sessions strictly before `d`, oldest first (fewer if the calendar starts sooner).
pub fn sessions_before(d: NaiveDate, n: usize) -> Vec<NaiveDate> {
    let mut out = Vec::with_capacity(n);
    let mut cur = d - Duration::days(1);
    while out.len() < n && cur.year() >= FIRST_YEAR {
        if let Ok(true) = is_session(cur) {
            out.push(cur);
        }
        cur -= Duration::days(1);
    }
    out.reverse();
    out
}

/// The first session on or after `d`.
pub fn next_session_on_or_after(d: NaiveDate) -> Result<Session, CalendarError> {
    let mut cur = d;
    loop {
        if let Some(s) = session(cur)? {
            return Ok(s);
        }
        cur += Duration::days(1);
    }
}

/// The last session on or before `d`.
pub fn previous_session_on_or_before(d: NaiveDate) -> Result<Session, CalendarError> {
    let mut cur = d;
    loop {
        if let Some(s) = session(cur)? {
            return Ok(s);
        }
        cur -= Duration::days(1);
    }
}

/// Parse a `YYYY-MM-DD` date and check it is inside the calendar.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("'{s}' is not a date; expected YYYY-MM-DD, e.g. 2025-03-14"))?;
    check_range(d).map_err(|e| e.to_string())?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn easter_known_years() {
        for (y, e) in [
            (2000, "2000-04-23"),
            (2019, "2019-04-21"),
            (2024, "2024-03-31"),
            (2025, "2025-04-20"),
            (2035, "2035-03-25"),
        ] {
            assert_eq!(easter(y), d(e), "{y}");
        }
    }

    #[test]
    fn holiday_rules() {
        let closed = [
            "2022-01-17", // MLK
            "2023-02-20", // Washington's Birthday
            "2024-03-29", // Good Friday
            "2024-05-27", // Memorial
            "2022-06-20", // Juneteenth observed (Sunday → Monday)
            "2023-06-19", // Juneteenth
            "2020-07-03", // Independence Day observed (Saturday → Friday)
            "2021-07-05", // Independence Day observed (Sunday → Monday)
            "2024-09-02", // Labor
            "2024-11-28", // Thanksgiving
            "2021-12-24", // Christmas observed (Saturday → Friday)
            "2022-12-26", // Christmas observed (Sunday → Monday)
            "2012-01-02", // New Year observed (Sunday → Monday)
        ];
        for s in closed {
            assert!(!is_session(d(s)).unwrap(), "{s} should be closed");
        }
        let open = [
            "2021-06-18", // before Juneteenth was an NYSE holiday
            "2021-12-31", // New Year 2022 is a Saturday: not observed on Friday
            "2010-12-31", // same for 2011
            "2025-03-14",
        ];
        for s in open {
            assert!(is_session(d(s)).unwrap(), "{s} should be open");
        }
    }

    #[test]
    fn unscheduled_closures_are_closed() {
        for (s, _) in UNSCHEDULED_CLOSURES {
            let r = closed_reason(d(s)).unwrap();
            assert!(r.is_some(), "{s}");
        }
        assert!(is_session(d("2001-09-17")).unwrap());
    }

    #[test]
    fn early_closes() {
        for s in [
            "2013-07-03",
            "2002-07-05",
            "2019-11-29",
            "2019-12-24",
            "2003-12-26",
            "2025-07-03",
        ] {
            assert!(session(d(s)).unwrap().unwrap().is_early_close(), "{s}");
        }
        for s in ["2019-07-05", "2012-07-05", "2021-12-23"] {
            let ss = session(d(s)).unwrap().unwrap();
            assert!(!ss.is_early_close(), "{s}");
        }
    }

    #[test]
    fn out_of_range_is_an_error() {
        assert!(session(d("1999-12-31")).is_err());
        assert!(session(d("2036-01-02")).is_err());
        assert!(parse_date("2025-02-30").is_err());
        assert!(parse_date("1999-01-04").is_err());
    }

    #[test]
    fn open_instant_handles_dst() {
        // 09:30 New York is 14:30 UTC in winter and 13:30 UTC in summer.
        let w = session(d("2025-01-10")).unwrap().unwrap().open_at();
        let s = session(d("2025-07-10")).unwrap().unwrap().open_at();
        assert_eq!(
            w.naive_utc().time(),
            NaiveTime::from_hms_opt(14, 30, 0).unwrap()
        );
        assert_eq!(
            s.naive_utc().time(),
            NaiveTime::from_hms_opt(13, 30, 0).unwrap()
        );
    }

    proptest::proptest! {
        // A fixed seed: the same cases on every run (tests are deterministic).
        #![proptest_config(proptest::test_runner::Config {
            rng_seed: proptest::test_runner::RngSeed::Fixed(20_261_202),
            ..proptest::test_runner::Config::default()
        })]
        #[test]
        fn no_weekend_is_a_session(days in 0i64..13_148) {
            let day = d("2000-01-01") + Duration::days(days);
            if matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
                proptest::prop_assert!(!is_session(day).unwrap());
            }
        }

        #[test]
        fn sessions_before_are_sessions_in_order(days in 500i64..13_000, n in 1usize..300) {
            let day = d("2000-01-01") + Duration::days(days);
            let v = sessions_before(day, n);
            proptest::prop_assert_eq!(v.len(), n);
            for w in v.windows(2) { proptest::prop_assert!(w[0] < w[1]); }
            for s in &v { proptest::prop_assert!(is_session(*s).unwrap() && *s < day); }
        }
    }
}
