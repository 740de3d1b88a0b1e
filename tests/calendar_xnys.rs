//! The NYSE calendar agrees with exchange_calendars' XNYS on every session 2000–2030.

use chrono::NaiveDate;
use optdesk::calendar;

fn fixture() -> Vec<(String, String, String)> {
    let text = include_str!("fixtures/xnys_sessions_2000_2030.csv");
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

#[test]
fn every_session_2000_2030_matches_xnys() {
    let expected = fixture();
    assert_eq!(expected.len(), 7794, "fixture has every session");
    let from = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
    let to = NaiveDate::from_ymd_opt(2030, 12, 31).unwrap();
    let got: Vec<(String, String, String)> = calendar::sessions(from, to)
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.date.to_string(),
                s.open.format("%H:%M").to_string(),
                s.close.format("%H:%M").to_string(),
            )
        })
        .collect();
    // Report the first disagreement by name rather than a 7,794-line diff.
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "session #{i} differs");
    }
    assert_eq!(got.len(), expected.len());
}

#[test]
fn calendar_extends_through_2035() {
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let s = calendar::sessions(d("2035-01-01"), d("2035-12-31")).unwrap();
    assert!(s.len() > 245 && s.len() < 255, "{}", s.len());
    // Good Friday 2035 is March 23; Juneteenth 2035 is a Tuesday.
    assert!(!calendar::is_session(d("2035-03-23")).unwrap());
    assert!(!calendar::is_session(d("2035-06-19")).unwrap());
    assert!(calendar::session(d("2036-01-02")).is_err());
}
