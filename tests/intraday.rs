//! The intraday desk's data: the sim's minute bars stored by `fetch_chains` at a slot,
//! and the day's session context read back from the store.

mod common;
use chrono::{NaiveDate, NaiveTime};
use common::Desk;

#[test]
fn a_slot_stores_the_sessions_minute_bars_and_the_loader_fills_the_session() {
    let desk = Desk::new();
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nsymbols = [\"SPY\", \"AAPL\", \"VIX\"]\nslot_symbols = []\nmax_expiry_days = 10\nhistory_sessions = 30\n",
    );
    let run = |job: &str| {
        desk.run_ok(&[
            "job",
            "run",
            job,
            "--as-of",
            "2025-01-10",
            "--slot",
            "10:30",
        ]);
    };
    run("fetch_chains");
    run("compute_vol");
    let bars = desk.count("SELECT count(*) FROM intraday_bars");
    // 09:30 to 10:29 for each of the three symbols: the bars closed by 10:30.
    assert_eq!(bars, 3 * 60);
    run("fetch_chains");
    assert_eq!(
        desk.count("SELECT count(*) FROM intraday_bars"),
        bars,
        "a re-run replaces its bars"
    );

    let conn = desk.open();
    let as_of = NaiveDate::from_ymd_opt(2025, 1, 10).unwrap();
    let qt = as_of.and_time(NaiveTime::from_hms_opt(10, 30, 0).unwrap());
    let day = optdesk::store::repo::day::load(&conn, as_of, qt, 8).unwrap();
    let s = &day.session;
    assert_eq!(s.open, Some(as_of.and_hms_opt(9, 30, 0).unwrap()));
    assert_eq!(s.close, Some(as_of.and_hms_opt(16, 0, 0).unwrap()));
    let spy = &s.bars["SPY"];
    assert_eq!(spy.len(), 60);
    assert_eq!(spy[0].time, as_of.and_hms_opt(9, 30, 0).unwrap());
    // The chain's spot at 10:30 is the 10:29 bar's close.
    assert_eq!(spy[59].close, day.underlyings["SPY"].spot);
    let close_on = |sym: &str, d: &str| -> f64 {
        conn.query_row(
            "SELECT close::DOUBLE FROM underlying_bars WHERE symbol = ? AND date = CAST(? AS DATE)",
            [sym, d],
            |r| r.get(0),
        )
        .unwrap()
    };
    let h = s.history["SPY"];
    assert_eq!(
        h.prev_close,
        Some(close_on("SPY", "2025-01-08")),
        "01-09 was a closed day"
    );
    let want_ret = day.underlyings["SPY"].spot / close_on("SPY", "2025-01-02") - 1.0;
    assert!((h.ret_5d.unwrap() - want_ret).abs() < 1e-12, "{h:?}");
    assert!(h.hv10.is_some_and(|v| v > 0.01 && v < 1.0), "{h:?}");
    assert!(h.atm_iv30.is_some_and(|v| v > 0.05 && v < 1.0), "{h:?}");
    let (vix, vix_prev) = s.vix.unwrap();
    assert_eq!(vix, s.bars["VIX"][59].close);
    assert_eq!(vix_prev, close_on("VIX", "2025-01-08"));
    // The sim's earnings dates for the single name, none for the fund.
    let aapl = &s.earnings["AAPL"];
    assert!(
        !aapl.is_empty() && aapl.iter().all(|d| *d > as_of),
        "{aapl:?}"
    );
    assert!(!s.earnings.contains_key("SPY"));
}
