//! Modelled chains over real prices (`[sim] underlying = "bars"`): a small bars fixture
//! of our own (SPY, QQQ and VIX over the first quarter of 2024, written by the test in
//! the layout `optdesk import` reads), imported, then `run daily` and a short
//! `backtest` on a reduced universe. The underlying closes in the store are the
//! fixture's, the index's implied vol follows the fixture's VIX, a session without a bar
//! and a range the bars do not cover are refused naming what they cover.

mod common;
use common::Desk;
use std::path::Path;

/// The NYSE sessions of 2024-01-02 to 2024-03-28 (MLK day and Presidents' Day are
/// holidays, Good Friday is 2024-03-29).
fn sessions() -> Vec<chrono::NaiveDate> {
    let mut d = chrono::NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
    let last = chrono::NaiveDate::from_ymd_opt(2024, 3, 28).unwrap();
    let holidays = ["2024-01-15", "2024-02-19"];
    let mut out = Vec::new();
    while d <= last {
        use chrono::Datelike;
        let weekend = matches!(d.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun);
        if !weekend && !holidays.contains(&d.to_string().as_str()) {
            out.push(d);
        }
        d += chrono::Duration::days(1);
    }
    out
}

/// The fixture's close of `symbol` on session `k`: a made-up path, nothing like the
/// model's (SPY near 400, QQQ near 300), with cents only.
fn close(symbol: &str, k: usize) -> f64 {
    let x = k as f64;
    let c = match symbol {
        "SPY" => 400.0 + 0.35 * x + 6.0 * (x / 4.0).sin(),
        "QQQ" => 300.0 - 0.2 * x + 5.0 * (x / 3.0).cos(),
        // VIX: calm (13) for the first 30 sessions, then stressed (32).
        _ => {
            if k < 30 {
                13.0
            } else {
                32.0
            }
        }
    };
    (c * 100.0).round() / 100.0
}

/// SPY.csv and QQQ.csv (`date,open,high,low,close,volume`) and VIX.csv (no volume
/// column, as Cboe's history), with `skip` sessions of a symbol left out.
fn write_fixture(dir: &Path, symbols: &[&str], skip: &[(&str, &str)]) -> Vec<String> {
    let mut files = Vec::new();
    for sym in symbols {
        let mut text = if *sym == "VIX" {
            "date,open,high,low,close\n".to_string()
        } else {
            "date,open,high,low,close,volume\n".to_string()
        };
        for (k, d) in sessions().iter().enumerate() {
            if skip.contains(&(sym, d.to_string().as_str())) {
                continue;
            }
            let c = close(sym, k);
            let o = if k == 0 { c } else { close(sym, k - 1) };
            let (h, l) = (o.max(c) + 0.5, o.min(c) - 0.5);
            if *sym == "VIX" {
                text.push_str(&format!("{d},{o:.2},{h:.2},{l:.2},{c:.2}\n"));
            } else {
                text.push_str(&format!(
                    "{d},{o:.2},{h:.2},{l:.2},{c:.2},{}\n",
                    1_000_000 + k
                ));
            }
        }
        let path = dir.join(format!("{sym}.csv"));
        std::fs::write(&path, text).unwrap();
        files.push(path.display().to_string());
    }
    files
}

fn desk_with_bars() -> Desk {
    let desk = Desk::new();
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nsymbols = [\"SPY\", \"QQQ\"]\nmax_expiry_days = 60\nhistory_sessions = 30\n",
    );
    let dir = desk.dir.path().join("bars");
    std::fs::create_dir_all(&dir).unwrap();
    let files = write_fixture(
        &dir,
        &["SPY", "QQQ", "VIX", "IWM"],
        &[("IWM", "2024-02-21")],
    );
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    let out = desk.run_ok(&args);
    assert!(out.contains("VIX.csv: bars layout"), "{out}");
    desk
}

fn with_bars(desk: &Desk) {
    let text = std::fs::read_to_string(desk.jobs.join("desk.toml")).unwrap();
    assert!(text.contains("\nseed = 42\n"));
    desk.write_config(
        "desk.toml",
        &text.replace("\nseed = 42\n", "\nseed = 42\nunderlying = \"bars\"\n"),
    );
}

fn open(path: &Path) -> duckdb::Connection {
    let cfg = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .unwrap();
    duckdb::Connection::open_with_flags(path, cfg).unwrap()
}

/// (date, symbol, close) of every stored underlying bar of SPY and QQQ, and the
/// fixture's close of the same day.
fn stored_closes(c: &duckdb::Connection) -> Vec<(String, String, f64, f64)> {
    let days = sessions();
    let mut s = c
        .prepare("SELECT date, symbol, close::DOUBLE FROM underlying_bars WHERE symbol IN ('SPY', 'QQQ') ORDER BY date, symbol")
        .unwrap();
    s.query_map([], |r| {
        Ok((
            r.get::<_, chrono::NaiveDate>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, f64>(2)?,
        ))
    })
    .unwrap()
    .map(|r| {
        let (d, sym, c) = r.unwrap();
        let k = days
            .iter()
            .position(|x| *x == d)
            .expect("a fixture session");
        (d.to_string(), sym.clone(), c, close(&sym, k))
    })
    .collect()
}

/// The stored 30-day ATM IV of SPY by date.
fn spy_iv(c: &duckdb::Connection) -> Vec<(chrono::NaiveDate, f64)> {
    let mut s = c
        .prepare("SELECT date, atm_iv_30d FROM iv_history WHERE symbol = 'SPY' ORDER BY date")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn run_daily_trades_on_the_imported_prices_and_vix() {
    let desk = desk_with_bars();
    with_bars(&desk);
    let out = desk.run_ok(&["run", "daily", "--as-of", "2024-02-15"]);
    assert!(out.contains("8 ok, 0 failed"), "{out}");
    let c = desk.open();
    // Every bar the store holds is the fixture's (the backfill of 30 sessions too).
    let closes = stored_closes(&c);
    assert!(closes.len() >= 50, "{closes:?}");
    for (d, sym, got, want) in &closes {
        assert!((got - want).abs() < 1e-9, "{sym} {d}: {got} vs {want}");
    }
    // The snapshot's underlying price lies in the day's range of the fixture.
    let k = sessions()
        .iter()
        .position(|d| d.to_string() == "2024-02-15")
        .unwrap();
    let spot: f64 = c
        .query_row(
            "SELECT price::DOUBLE FROM underlying_quotes WHERE symbol = 'SPY' AND as_of = '2024-02-15'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let (o, cl) = (close("SPY", k - 1), close("SPY", k));
    assert!(
        spot >= o.min(cl) - 0.5 && spot <= o.max(cl) + 0.5,
        "{spot} {o} {cl}"
    );
    let strikes_near: i64 = c
        .query_row(
            "SELECT count(*) FROM option_quotes WHERE underlying = 'SPY' AND abs(strike::DOUBLE / underlying_price::DOUBLE - 1) < 0.02",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(strikes_near > 20, "{strikes_near}");
    // The index's ATM IV is the VIX of the previous close over 1.06 (the model's
    // variance-swap lift), within the daily noise.
    let iv = spy_iv(&c);
    assert!(iv.len() >= 25, "{iv:?}");
    for (d, v) in iv.iter().filter(|x| x.0 > sessions()[0]) {
        let k = sessions().iter().position(|x| x == d).unwrap();
        let want = close("VIX", k - 1) / 100.0 / 1.06;
        assert!((v / want - 1.0).abs() < 0.06, "{d}: {v} vs {want}");
    }
    drop(c);
    // An imported symbol with a session missing: refused naming what its bars cover.
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nsymbols = [\"IWM\"]\nmax_expiry_days = 60\nhistory_sessions = 30\n",
    );
    let err = desk.run_fails(&["run", "daily", "--as-of", "2024-02-21"]);
    assert!(
        err.contains("IWM's imported daily bars (IWM) cover 2024-01-02 to 2024-03-28, with none on 2024-02-21"),
        "{err}"
    );
}

#[test]
fn a_backtest_on_bars_stores_the_fixture_closes_and_follows_vix() {
    let desk = desk_with_bars();
    let bars = "desk.sim.underlying=\"bars\"";
    // A range the bars do not cover is refused with the range they cover.
    let o = desk.run(&[
        "backtest",
        "--from",
        "2024-03-04",
        "--to",
        "2024-04-12",
        "--source",
        "sim",
        "--set",
        bars,
    ]);
    assert!(!o.status.success());
    let err = common::stderr(&o);
    assert!(
        err.contains("cover 2024-01-02 to 2024-03-28 (SPY 2024-01-02 to 2024-03-28, QQQ 2024-01-02 to 2024-03-28), not 2024-03-04 to 2024-04-12"),
        "{err}"
    );
    // 21 sessions, 11 of them after VIX jumps from 13 to 32 (session 30, 2024-02-14).
    let out = desk.run_ok(&[
        "backtest",
        "--from",
        "2024-02-01",
        "--to",
        "2024-03-01",
        "--source",
        "sim",
        "--set",
        bars,
        "--name",
        "bars",
    ]);
    assert!(out.contains("backtest bars done: 21 sessions"), "{out}");
    let c = open(&desk.dir.path().join("backtests").join("bars.duckdb"));
    let closes = stored_closes(&c);
    assert!(closes.len() >= 2 * 40, "{}", closes.len());
    for (d, sym, got, want) in &closes {
        assert!((got - want).abs() < 1e-9, "{sym} {d}: {got} vs {want}");
    }
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM underlying_quotes WHERE symbol IN ('SPY', 'QQQ')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 2 * 21);
    // The index's IV level moves with the fixture's VIX: calm before the jump, stressed
    // after it.
    let iv = spy_iv(&c);
    let jump = sessions()[30];
    let mean = |xs: Vec<f64>| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let first = sessions()[0];
    let calm = mean(
        iv.iter()
            .filter(|x| x.0 > first && x.0 < jump)
            .map(|x| x.1)
            .collect(),
    );
    let stressed = mean(iv.iter().filter(|x| x.0 > jump).map(|x| x.1).collect());
    assert!(calm > 0.10 && calm < 0.14, "{calm}");
    assert!(stressed > 0.27 && stressed < 0.33, "{stressed}");
    // The tearsheet says which parts are real and which modelled.
    let html =
        std::fs::read_to_string(desk.dir.path().join("backtests").join("bars.html")).unwrap();
    for want in [
        "What is real and what is modelled",
        "Implied-vol level",
        "imported VIX closes",
        "over those prices",
    ] {
        assert!(html.contains(want), "{want}");
    }
}

#[test]
fn provenance_says_what_is_real_and_what_modelled() {
    let desk = desk_with_bars();
    let config = optdesk::config::Config::load(&desk.jobs, true).unwrap();
    let p = optdesk::sources::sim::provenance(&config, None);
    assert!(p.starts_with("Everything is modelled"), "{p}");
    with_bars(&desk);
    let config = optdesk::config::Config::load(&desk.jobs, true).unwrap();
    let conn = open(&desk.db());
    let p = optdesk::sources::sim::provenance(&config, Some(&conn));
    for want in [
        "Real: the daily bars",
        "SPY 2024-01-02–2024-03-28",
        "QQQ 2024-01-02–2024-03-28",
        "IWM 2024-01-02–2024-03-28",
        "VIX closes (VIX 2024-01-02–2024-03-28)",
        "Modelled: every option quote",
        "symbols without bars (SPX, VOO, VTI",
    ] {
        assert!(p.contains(want), "{want}: {p}");
    }
}
