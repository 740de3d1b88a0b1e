//! Trading end to end on the simulated market: strategies trade, expiries settle,
//! `optdesk check` reconciles after every session, re-running a day adds nothing, and a
//! tampered ledger is caught.

mod common;
use common::{stderr, Desk};

#[test]
fn sessions_through_an_expiry_trade_settle_and_reconcile_every_day() {
    let desk = Desk::new();
    let sessions = optdesk::calendar::sessions(
        chrono::NaiveDate::from_ymd_opt(2024, 6, 3).unwrap(),
        chrono::NaiveDate::from_ymd_opt(2024, 7, 9).unwrap(),
    )
    .unwrap();
    for s in &sessions {
        let d = s.date.to_string();
        desk.run_ok(&["run", "daily", "--as-of", &d]);
        let out = desk.run_ok(&["check"]);
        assert!(out.contains("reconciled to the cent"), "{d}: {out}");
    }
    // call_premium sold calls, and the July 5 SPY expiry was settled on the next session.
    assert!(
        desk.count("SELECT count(*) FROM fills WHERE cash_kind = 'premium' AND quantity < 0") >= 1
    );
    assert!(desk.count("SELECT count(*) FROM fills WHERE order_ref LIKE 'expire:%'") >= 1);
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM positions WHERE kind = 'option' AND expiry < DATE '2024-07-09'"
        ),
        0,
        "every expired option is settled"
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM positions WHERE kind = 'shares'"),
        0,
        "no stray stock"
    );
    // Every decision is stored with its rule; every pass with its reason.
    assert!(desk.count("SELECT count(*) FROM risk_decisions WHERE rule IS NOT NULL") >= 1);
    assert_eq!(
        desk.count("SELECT count(*) FROM signals WHERE action = 'pass' AND reason IS NULL"),
        0
    );

    // Re-running a day that traded adds nothing.
    let traded: String = desk
        .open()
        .query_row(
            "SELECT min(as_of)::VARCHAR FROM fills WHERE cash_kind = 'premium'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let before = desk.fingerprint(false);
    desk.run_ok(&["run", "daily", "--as-of", &traded]);
    assert_eq!(
        desk.fingerprint(false),
        before,
        "re-running {traded} is a no-op"
    );

    // A tampered ledger does not reconcile, and check says where.
    {
        let c = duckdb::Connection::open(desk.db()).unwrap();
        c.execute_batch("UPDATE cash_ledger SET amount = amount + 0.01 WHERE kind = 'premium' AND rowid = (SELECT min(rowid) FROM cash_ledger WHERE kind = 'premium')")
            .unwrap();
    }
    let o = desk.run(&["check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("trade cash in cash_ledger"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_kill_file_halts_new_entries_with_the_reason() {
    let desk = Desk::new();
    let out = desk.run_ok(&["kill", "on"]);
    assert!(
        out.contains("kill switch ON") && desk.dir.path().join("data/KILL").exists(),
        "{out}"
    );
    desk.run_ok(&["run", "daily", "--as-of", "2024-06-04"]);
    assert_eq!(desk.count("SELECT count(*) FROM fills"), 0);
    let refused = desk.count(
        "SELECT count(*) FROM risk_decisions WHERE rule = 'kill_switch' AND decision = 'refused'",
    );
    let proposals = desk.count("SELECT count(*) FROM signals WHERE action = 'propose'");
    assert_eq!(refused, proposals);
    assert!(
        proposals >= 1,
        "the strategy proposed something on this day"
    );
    let out = desk.run_ok(&["kill", "off"]);
    assert!(
        out.contains("kill switch OFF") && !desk.dir.path().join("data/KILL").exists(),
        "{out}"
    );
}

#[test]
fn dispersion_opens_on_the_z_score_and_closes_after_its_holding_period() {
    let desk = Desk::new();
    // Keep the account to dispersion alone, so its margin and limits are its own.
    for s in ["call_premium", "cash_secured_put", "covered_call"] {
        desk.write_config(&format!("strategies/{s}.toml"), "enabled = false\n");
    }
    let sessions = optdesk::calendar::sessions(
        chrono::NaiveDate::from_ymd_opt(2024, 3, 4).unwrap(),
        chrono::NaiveDate::from_ymd_opt(2024, 3, 14).unwrap(),
    )
    .unwrap();
    for s in &sessions {
        desk.run_ok(&["run", "daily", "--as-of", &s.date.to_string()]);
        assert!(desk.run_ok(&["check"]).contains("reconciled to the cent"));
    }
    let c = desk.open();
    let (opened, legs, z): (String, i64, String) = c
        .query_row(
            "SELECT min(f.as_of)::VARCHAR, count(*), any_value(s.numbers)
             FROM fills f JOIN signals s ON s.order_ref = f.order_ref
             WHERE f.strategy = 'dispersion' AND f.order_ref LIKE 'dispersion:%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(
        legs >= 2 + 2 * 5,
        "index straddle and component straddles in one order: {legs} legs"
    );
    let zscore: f64 = serde_json::from_str::<serde_json::Value>(&z).unwrap()["zscore"]
        .as_f64()
        .unwrap();
    assert!(zscore.abs() > 1.5, "entered on |Z| > 1.5: {zscore}");
    // Closed at the market 5 sessions later: nothing of it is open at the end.
    let exits: i64 = c
        .query_row(
            "SELECT count(*) FROM fills WHERE strategy = 'dispersion' AND order_ref LIKE 'exit:%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(exits, legs, "every leg of the {opened} trade was closed");
    assert_eq!(
        c.query_row::<i64, _, _>(
            "SELECT count(*) FROM positions WHERE strategy = 'dispersion'",
            [],
            |r| r.get(0)
        )
        .unwrap(),
        0
    );
}

#[test]
fn flatten_closes_everything_at_the_snapshot_quotes() {
    let desk = Desk::new();
    desk.run_ok(&["run", "daily", "--as-of", "2024-06-04"]);
    assert!(
        desk.count("SELECT count(*) FROM positions") >= 1,
        "something to close"
    );
    let out = desk.run_ok(&["flatten", "--as-of", "2024-06-04"]);
    assert!(out.contains("closed") && out.contains(" ok "), "{out}");
    assert_eq!(desk.count("SELECT count(*) FROM positions"), 0);
    assert!(desk.run_ok(&["check"]).contains("reconciled to the cent"));
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs WHERE job = 'flatten' AND status = 'ok'"),
        1
    );
}

#[test]
fn closes_pay_the_configured_commission_like_entries() {
    let per_contract = |desk: &Desk, refs: &str| {
        desk.count(&format!(
            "SELECT count(DISTINCT round(commission / abs(quantity), 4)) * 100
                    + max(round(commission / abs(quantity) * 100))
             FROM fills WHERE kind = 'option' AND order_ref LIKE '{refs}'"
        ))
    };
    // The paper broker's settings live in desk.toml [broker].
    let desk = Desk::new();
    let cfg = std::fs::read_to_string(desk.jobs.join("desk.toml")).unwrap();
    desk.write_config(
        "desk.toml",
        &cfg.replace(
            "commission_per_contract = 0.65",
            "commission_per_contract = 1.25",
        ),
    );
    desk.run_ok(&["run", "daily", "--as-of", "2024-06-04"]);
    desk.run_ok(&["flatten", "--as-of", "2024-06-04"]);
    // One rate, $1.25 per contract, on the entries and on flatten's closes.
    assert_eq!(per_contract(&desk, "flatten:%"), 225);
    assert_eq!(per_contract(&desk, "%:2024-06-04T%"), 225);

    // An older select_trades.toml that still sets it is accepted, and told where it moved.
    let desk = Desk::new();
    let cfg = std::fs::read_to_string(desk.jobs.join("desk.toml")).unwrap();
    desk.write_config(
        "desk.toml",
        &cfg.replace("commission_per_contract = 0.65\n", ""),
    );
    let cfg = std::fs::read_to_string(desk.jobs.join("select_trades.toml")).unwrap();
    desk.write_config(
        "select_trades.toml",
        &cfg.replace("[params]\n", "[params]\ncommission_per_contract = 1.25\n"),
    );
    let o = desk.run(&["run", "daily", "--as-of", "2024-06-04"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "commission_per_contract = 1.25 still applies, but it moved to jobs/desk.toml [broker]"
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(per_contract(&desk, "%:2024-06-04T%"), 225);
}

#[test]
fn an_order_sent_before_a_crash_is_completed_by_the_next_run_and_never_sent_twice() {
    let desk = Desk::new();
    // Die between the broker's acceptance of the first order and the record of its fills.
    let o = desk
        .cmd()
        .args(["run", "daily", "--as-of", "2024-06-04"])
        .env("OPTDESK_FAILPOINT", "select_trades:after_submit:abort")
        .output()
        .unwrap();
    assert!(!o.status.success(), "the run was killed");
    let sent: String = desk
        .open()
        .query_row("SELECT min(order_ref) FROM paper_orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        desk.count("SELECT count(*) FROM paper_orders"),
        1,
        "one order reached the broker"
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM fills"),
        0,
        "no fill recorded yet"
    );
    assert_eq!(
        desk.count(&format!(
            "SELECT count(*) FROM orders WHERE order_ref = '{sent}' AND status = 'submitted'"
        )),
        desk.count(&format!(
            "SELECT count(*) FROM order_legs WHERE order_ref = '{sent}'"
        )),
        "the intent and the broker's acceptance survived the crash"
    );
    let out = desk.run_ok(&["check"]);
    assert!(
        out.contains(&format!("order {sent} is submitted"))
            && out.contains("the next run completes it"),
        "{out}"
    );

    // The next run asks the broker, records the fills, and goes on deciding the rest.
    let out = desk.run_ok(&["run", "daily", "--as-of", "2024-06-04"]);
    assert!(
        out.contains("completed 1 order(s) an earlier run left open"),
        "{out}"
    );
    assert_eq!(
        desk.count(&format!(
            "SELECT count(*) FROM paper_orders WHERE order_ref = '{sent}'"
        )),
        1,
        "never sent twice"
    );
    let events: String = desk
        .open()
        .query_row(
            &format!("SELECT string_agg(status, ',' ORDER BY seq) FROM order_events WHERE order_ref = '{sent}'"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(events, "pending,submitted,filled");
    assert_eq!(
        desk.count(&format!(
            "SELECT count(*) FROM fills WHERE order_ref = '{sent}'"
        )),
        desk.count(&format!(
            "SELECT count(*) FROM order_legs WHERE order_ref = '{sent}'"
        )),
        "each leg filled once"
    );
    assert!(
        desk.count("SELECT count(*) FROM paper_orders") >= 2,
        "the other proposals were decided and sent"
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM paper_orders"),
        desk.count("SELECT count(DISTINCT order_ref) FROM order_legs"),
    );
    // The broker's record and the book agree, position by position.
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM (SELECT instrument, sum(quantity) q FROM paper_executions GROUP BY ALL) b
             FULL JOIN (SELECT instrument, sum(quantity) q FROM fills GROUP BY ALL) f USING (instrument)
             WHERE b.q IS DISTINCT FROM f.q"
        ),
        0
    );
    assert!(desk.run_ok(&["check"]).contains("reconciled to the cent"));
}

#[test]
fn two_slots_on_one_day_never_share_an_order_id() {
    let desk = Desk::new();
    desk.run_ok(&["run", "daily", "--as-of", "2024-06-04"]);
    // A second daily snapshot at 12:00 (the daily strategies propose only in the daily
    // run, not at an intraday slot).
    desk.write_config("desk.toml", "[schedule]\ndaily = \"12:00\"\n");
    for job in [
        "fetch_chains",
        "compute_vol",
        "correlation",
        "select_trades",
    ] {
        desk.run_ok(&["job", "run", job, "--as-of", "2024-06-04"]);
    }
    let c = desk.open();
    let slots: i64 = c
        .query_row(
            "SELECT count(DISTINCT created_at) FROM order_legs WHERE intent = 'entry'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(slots, 2, "both slots traded");
    assert_eq!(
        desk.count("SELECT count(*) FROM order_legs WHERE order_ref LIKE '%:2024-06-04T1200:%'"),
        desk.count(
            "SELECT count(*) FROM order_legs WHERE created_at = TIMESTAMP '2024-06-04 12:00'"
        ),
        "the 12:00 orders carry their slot"
    );
    // A duplicate cannot even be written.
    let dup = c.execute_batch("INSERT INTO order_legs SELECT * FROM order_legs LIMIT 1");
    assert!(
        dup.is_err(),
        "order_legs refuses a second row for (order_ref, leg)"
    );
    let dup = c.execute_batch("INSERT INTO fills SELECT * FROM fills LIMIT 1");
    assert!(
        dup.is_err(),
        "fills refuses a second row for an execution id"
    );
    drop(c);
    assert!(desk.run_ok(&["check"]).contains("reconciled to the cent"));
}

/// Issue 4's acceptance run: 61 sessions (Jan 2 – Mar 28, 2024) of `run daily` on the simulated market from
/// a fresh store; every enabled strategy trades, expiries settle, a put is assigned
/// and the wheel sells calls on the shares, and `optdesk check` reconciles after every
/// session.
#[test]
fn sixty_sessions_trade_every_strategy_and_reconcile_after_each() {
    let desk = Desk::new();
    let sessions = optdesk::calendar::sessions(
        chrono::NaiveDate::from_ymd_opt(2024, 1, 2).unwrap(),
        chrono::NaiveDate::from_ymd_opt(2024, 3, 28).unwrap(),
    )
    .unwrap();
    assert!(sessions.len() >= 60, "{} sessions", sessions.len());
    for s in &sessions {
        let d = s.date.to_string();
        desk.run_ok(&["run", "daily", "--as-of", &d]);
        let out = desk.run_ok(&["check"]);
        assert!(out.contains("reconciled to the cent"), "{d}: {out}");
    }
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs WHERE status <> 'ok'"),
        0
    );
    // Margin is held by structure, as each trade was approved: the buying power
    // select_trades reports never goes below zero.
    let reported: Vec<(String, f64)> = {
        let c = desk.open();
        let mut s = c
            .prepare("SELECT as_of::VARCHAR, message FROM job_runs WHERE job = 'select_trades' ORDER BY run_id")
            .unwrap();
        s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .map(|(d, m)| {
                let bp = m
                    .split("buying power ")
                    .nth(1)
                    .and_then(|x| x.split([' ', ';']).next())
                    .and_then(|x| x.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("{d}: no buying power in '{m}'"));
                (d, bp)
            })
            .collect()
    };
    assert_eq!(reported.len(), sessions.len());
    for (d, bp) in &reported {
        assert!(*bp >= 0.0, "{d}: buying power {bp}");
    }
    for strategy in [
        "call_premium",
        "cash_secured_put",
        "covered_call",
        "dispersion",
    ] {
        let n = desk.count(&format!(
            "SELECT count(*) FROM fills WHERE strategy = '{strategy}' AND order_ref LIKE '{strategy}:%'"
        ));
        assert!(n >= 1, "{strategy} traded ({n} fills)");
    }
    assert!(desk.count("SELECT count(*) FROM fills WHERE strategy = 'cash_secured_put' AND cash_kind = 'assignment'") >= 2,
        "a put was assigned into shares");
    assert!(desk.count("SELECT count(*) FROM fills WHERE order_ref LIKE 'expire:%' AND cash_kind = 'settlement'") >= 1,
        "options expired and were settled");
    assert!(
        desk.count("SELECT count(*) FROM fills WHERE order_ref LIKE 'exit:%'") >= 1,
        "a holding period ended"
    );
    assert!(
        desk.count("SELECT count(*) FROM cash_ledger WHERE kind = 'dividend' AND amount > 0") >= 1,
        "the wheel's shares were paid a dividend"
    );
    let n = sessions.len() as i64;
    assert_eq!(desk.count("SELECT count(*) FROM portfolio_snapshots"), n);
    assert_eq!(
        desk.count("SELECT count(*) FROM benchmark_snapshots WHERE symbol = 'SPY'"),
        n
    );
}

#[test]
fn an_event_day_refuses_new_entries_and_a_bad_events_file_names_the_line() {
    let desk = Desk::new();
    std::fs::create_dir_all(desk.dir.path().join("data")).unwrap();
    std::fs::write(
        desk.dir.path().join("data/events.csv"),
        "# test\ndate,event,detail\n2024-06-04,FOMC,scheduled\n",
    )
    .unwrap();
    desk.run_ok(&["run", "daily", "--as-of", "2024-06-04"]);
    assert_eq!(desk.count("SELECT count(*) FROM fills"), 0);
    let proposals = desk.count("SELECT count(*) FROM signals WHERE action = 'propose'");
    assert!(proposals >= 1);
    assert_eq!(
        desk.count("SELECT count(*) FROM risk_decisions WHERE rule = 'event_blackout' AND reason LIKE '%2024-06-04 is an event day%'"),
        proposals
    );
    std::fs::write(
        desk.dir.path().join("data/events.csv"),
        "date,event\n2024-06-04,FOMC\n2024-13-01,CPI\n",
    )
    .unwrap();
    let o = desk.run(&["run", "daily", "--as-of", "2024-06-05"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("line 3, field 'date'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_held_position_without_a_quote_is_marked_stale_never_zeroed() {
    let desk = Desk::new();
    desk.run_ok(&["run", "daily", "--as-of", "2024-06-04"]);
    let held: String = desk
        .open()
        .query_row(
            "SELECT min(instrument) FROM positions WHERE kind = 'option'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    for job in ["fetch_chains", "compute_vol", "correlation"] {
        desk.run_ok(&["job", "run", job, "--as-of", "2024-06-05"]);
    }
    {
        // The source sends no quote for the held contract today.
        let c = duckdb::Connection::open(desk.db()).unwrap();
        c.execute(
            "DELETE FROM option_quotes WHERE as_of = DATE '2024-06-05' AND contract = ?",
            [&held],
        )
        .unwrap();
    }
    let out = desk.run_ok(&["job", "run", "snapshot_benchmarks", "--as-of", "2024-06-05"]);
    assert!(out.contains("stale marks"), "{out}");
    let (stale, note, mv): (i32, String, f64) = desk
        .open()
        .query_row(
            "SELECT stale_marks, note, market_value::DOUBLE FROM portfolio_snapshots WHERE as_of = DATE '2024-06-05'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(stale, 1);
    assert!(
        note.contains(held.trim()) && note.contains("2024-06-04"),
        "{note}"
    );
    assert!(mv != 0.0, "marked at its last mid, not zero");
}

#[test]
fn a_malformed_contract_in_the_book_is_refused_naming_it_and_nothing_is_written() {
    let desk = Desk::new();
    desk.run_ok(&["run", "daily", "--as-of", "2024-06-04"]);
    for job in ["fetch_chains", "compute_vol", "correlation"] {
        desk.run_ok(&["job", "run", job, "--as-of", "2024-06-05"]);
    }
    {
        // A fill whose contract has an unknown right code (written by something else).
        let c = duckdb::Connection::open(desk.db()).unwrap();
        c.execute_batch(
            "UPDATE fills SET instrument = substr(instrument, 1, 12) || 'X' || substr(instrument, 14)
             WHERE rowid = (SELECT min(rowid) FROM fills WHERE kind = 'option')",
        )
        .unwrap();
    }
    let before = desk.fingerprint(false);
    let o = desk.run(&["job", "run", "select_trades", "--as-of", "2024-06-05"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("unknown right code 'X'") && err.contains("malformed OCC option symbol"),
        "{err}"
    );
    assert_eq!(desk.fingerprint(false), before, "nothing half-written");
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs WHERE job = 'select_trades' AND status = 'failed' AND message LIKE '%unknown right code%'"),
        1
    );
}
