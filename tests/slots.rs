//! Intraday slots: `optdesk run session` runs the daily pipeline and then every slot
//! firing of the session in time order (jobs in `job list` order within one time);
//! twice is once; `optdesk backtest` replays the same firings and gives the same
//! orders and fills; bad slots are refused at load naming the file and the key.
//! On a reduced universe (SPY and QQQ, expiries to 45 days) over few sessions.

mod common;
use common::{stderr, Desk};

const SLOT: &str = "every 30m from 10:30 to 11:30";

fn slot_desk() -> Desk {
    let desk = Desk::new();
    desk.write_config(
        "fetch_chains.toml",
        // open+5m is the daily run's snapshot (09:35): the slot does not fire there.
        &format!("slots = [\"open+5m\", \"{SLOT}\"]\n[params]\nsymbols = [\"SPY\", \"QQQ\"]\nmax_expiry_days = 45\nhistory_sessions = 30\n"),
    );
    desk.write_config("compute_vol.toml", &format!("slots = [\"{SLOT}\"]\n"));
    let st = std::fs::read_to_string(desk.jobs.join("select_trades.toml")).unwrap();
    desk.write_config(
        "select_trades.toml",
        &st.replace("slots = []", &format!("slots = [\"{SLOT}\"]")),
    );
    // Exits are checked at the open (before the daily run's 09:35 snapshot), at each
    // slot and at close-30m, the 0DTE auto-close time.
    desk.write_config(
        "manage_positions.toml",
        &format!("slots = [\"open\", \"{SLOT}\", \"close-30m\"]\n"),
    );
    // The slot mechanics alone: the intraday strategies sit out (tests/intraday_desk.rs
    // trades them).
    for s in ["put_write", "buy_write", "iron_condor", "zscore_reversion"] {
        desk.write_config(&format!("strategies/{s}.toml"), "enabled = false\n");
    }
    desk
}

/// (slot, job) of every run of a session, in run order.
fn runs(desk: &Desk, as_of: &str) -> Vec<(String, String)> {
    let c = desk.open();
    let mut s = c
        .prepare(
            "SELECT coalesce(slot, '-'), job FROM job_runs WHERE as_of = ? AND NOT dry_run ORDER BY run_id",
        )
        .unwrap();
    s.query_map([as_of], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// The trading record, every row as text, sorted (run ids left out).
fn trading(desk: &Desk) -> Vec<(String, Vec<String>)> {
    trading_at(&desk.open())
}

fn trading_at(c: &duckdb::Connection) -> Vec<(String, Vec<String>)> {
    [
        "order_legs",
        "order_events",
        "fills",
        "cash_ledger",
        "signals",
        "risk_decisions",
    ]
    .iter()
    .map(|t| {
        let mut s = c
            .prepare(&format!(
                "SELECT x::VARCHAR FROM (SELECT * EXCLUDE (run_id) FROM {t}) x ORDER BY 1"
            ))
            .unwrap();
        let v: Vec<String> = s
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        (t.to_string(), v)
    })
    .collect()
}

#[test]
fn run_session_runs_every_slot_in_order_after_the_daily_pipeline_and_twice_is_once() {
    let desk = slot_desk();
    let out = desk.run_ok(&["run", "session", "--as-of", "2024-06-04"]);
    assert!(
        out.contains("14 slot firings at 5 times: 1 before the daily pipeline, 13 after it"),
        "{out}"
    );
    assert!(
        out.contains("slot 10:30") && out.contains("slot 15:30"),
        "{out}"
    );
    let got = runs(&desk, "2024-06-04");
    let got: Vec<(&str, &str)> = got.iter().map(|(s, j)| (s.as_str(), j.as_str())).collect();
    // The daemon's order: the 09:30 slot, the daily pipeline (its snapshot is 09:35,
    // without manage_positions), then the slots in time order, jobs in JOBS order.
    let mut want = vec![("09:30", "manage_positions")];
    for j in [
        "fetch_chains",
        "compute_vol",
        "correlation",
        "select_trades",
        "expire_positions",
        "snapshot_benchmarks",
        "email_report",
        "review_session",
    ] {
        want.push(("-", j));
    }
    for t in ["10:30", "11:00", "11:30"] {
        for j in [
            "fetch_chains",
            "compute_vol",
            "select_trades",
            "manage_positions",
        ] {
            want.push((t, j));
        }
    }
    want.push(("15:30", "manage_positions"));
    assert_eq!(got, want);
    let c = desk.open();
    let failed: i64 = c
        .query_row(
            "SELECT count(*) FROM job_runs WHERE status <> 'ok'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failed, 0);
    // Each slot took its own snapshot, and select_trades ran the intraday strategies
    // there (the shipped ones are all daily: no proposal at a slot).
    let snaps: i64 = c
        .query_row(
            "SELECT count(DISTINCT quote_time) FROM vol_metrics WHERE as_of = DATE '2024-06-04'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(snaps, 4, "09:35 and three slots");
    let msg: String = c
        .query_row(
            "SELECT message FROM job_runs WHERE job = 'select_trades' AND slot = '10:30'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(msg.starts_with("0 intraday strategies"), "{msg}");
    let at_slots: i64 = c
        .query_row(
            "SELECT count(*) FROM signals WHERE as_of = DATE '2024-06-04' AND quote_time <> TIMESTAMP '2024-06-04 09:35:00'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(at_slots, 0, "daily strategies do not propose at a slot");
    let daily_signals: i64 = c
        .query_row("SELECT count(*) FROM signals", [], |r| r.get(0))
        .unwrap();
    assert!(
        daily_signals > 0,
        "the daily strategies looked in the daily run"
    );
    drop(c);

    // Twice is once: the trading record does not change.
    let before = trading(&desk);
    desk.run_ok(&["run", "session", "--as-of", "2024-06-04"]);
    assert_eq!(trading(&desk), before);
    assert!(desk.run_ok(&["check"]).contains("reconciled to the cent"));

    // status and schedule --plan show the slots.
    let status = desk.run_ok(&["status"]);
    assert!(
        status.contains("job run manage_positions")
            && status.contains("every 30m from 10:30 to 11:30")
            && status.contains("3 firings a regular session")
            && status.contains("close-30m"),
        "{status}"
    );
    let plan = desk.run_ok(&["schedule", "--plan", "--from", "2025-11-28", "--days", "1"]);
    assert!(
        plan.lines()
            .any(|l| l.contains("12:30") && l.contains("job run manage_positions")),
        "close-30m on an early close is 12:30: {plan}"
    );
}

#[test]
fn a_backtest_replays_the_slots_with_the_same_orders_and_fills_as_run_session() {
    let (from, to) = ("2024-06-03", "2024-06-05");
    let desk = slot_desk();
    let out = desk.run_ok(&["backtest", "--from", from, "--to", to, "--name", "s"]);
    assert!(out.contains("backtest s done: 3 sessions"), "{out}");
    let by_hand = slot_desk();
    for s in optdesk::calendar::sessions(from.parse().unwrap(), to.parse().unwrap()).unwrap() {
        by_hand.run_ok(&["run", "session", "--as-of", &s.date.to_string()]);
    }
    let store = desk.dir.path().join("backtests").join("s.duckdb");
    let cfg = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .unwrap();
    let bt = duckdb::Connection::open_with_flags(&store, cfg).unwrap();
    let slot_runs: i64 = bt
        .query_row(
            "SELECT count(*) FROM job_runs WHERE slot IS NOT NULL AND status = 'ok' AND trigger = 'backtest'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(slot_runs, 3 * 14, "every slot firing of every session");
    let want = trading(&by_hand);
    assert!(
        want.iter().any(|(t, v)| t == "fills" && !v.is_empty()),
        "something traded"
    );
    assert_eq!(trading_at(&bt), want, "backtest against run session");
}

#[test]
fn bad_slots_are_refused_at_load_with_the_file_and_the_key() {
    let desk = Desk::new();
    for (file, slots, why) in [
        (
            "compute_vol.toml",
            "[\"10:30\", \"17:00\"]",
            "slots[1] = \"17:00\"",
        ),
        (
            "fetch_chains.toml",
            "[\"close+10m\"]",
            "outside the session",
        ),
        (
            "manage_positions.toml",
            "[\"every 15m from 13:30 to 10:30\"]",
            "before it starts",
        ),
        (
            "fetch_chains.toml",
            "[\"every 30s from 10:30 to 13:30\"]",
            "more often than once a minute",
        ),
        (
            "fetch_chains.toml",
            "[\"every 0m from open to close\"]",
            "more often than once a minute",
        ),
    ] {
        let desk_file = desk.jobs.join(file);
        let keep = std::fs::read_to_string(&desk_file).ok();
        desk.write_config(file, &format!("slots = {slots}\n"));
        let o = desk.run(&["run", "daily", "--as-of", "2024-06-04"]);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(e.contains(file) && e.contains(why), "{file} {slots}: {e}");
        match keep {
            Some(t) => std::fs::write(&desk_file, t).unwrap(),
            None => std::fs::remove_file(&desk_file).unwrap(),
        }
    }
    // select_trades reads its own file shape: its slots are checked too.
    let st = std::fs::read_to_string(desk.jobs.join("select_trades.toml")).unwrap();
    desk.write_config(
        "select_trades.toml",
        &st.replace("slots = []", "slots = [\"open-5m\"]"),
    );
    let e = stderr(&desk.run(&["job", "list"]));
    assert!(
        e.contains("select_trades.toml") && e.contains("slots[0]"),
        "{e}"
    );
}
