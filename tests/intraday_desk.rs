//! The intraday desk end to end: sessions with every slot (`optdesk run session`), the
//! intraday strategies entering only inside their window, every 0DTE position closed by
//! the auto-close (12:30 on a 13:00 early close), each structure's max loss defined and
//! within its strategy's cap, and the record reconciling.

mod common;
use common::Desk;

fn slot_desk() -> Desk {
    let desk = Desk::new();
    let every = "slots = [\"every 15m from open+15m to close-15m\"]";
    for job in [
        "fetch_chains",
        "compute_vol",
        "select_trades",
        "manage_positions",
    ] {
        let path = desk.jobs.join(format!("{job}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("slots = []"), "{job}");
        desk.write_config(&format!("{job}.toml"), &text.replace("slots = []", every));
    }
    let path = desk.jobs.join("review_session.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("slots = []", "slots = [\"close\"]");
    desk.write_config("review_session.toml", &text);
    let path = desk.jobs.join("fetch_chains.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            "symbols = []",
            "symbols = [\"SPY\", \"QQQ\", \"SPX\", \"VIX\", \"IWM\", \"VOO\", \"VTI\"]",
        )
        .replace("max_expiry_days = 400", "max_expiry_days = 70")
        .replace("futures = []", "futures = [\"MES\"]");
    desk.write_config("fetch_chains.toml", &text);
    // A $1 daily cap on the scalper: its first round trip's commissions reach it, so the
    // halt is seen within a session.
    let path = desk.jobs.join("strategies/zscore_reversion.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("daily_loss_cap = 500.0", "daily_loss_cap = 1.0");
    desk.write_config("strategies/zscore_reversion.toml", &text);
    desk
}

fn rows(desk: &Desk, sql: &str) -> Vec<String> {
    let c = desk.open();
    let mut s = c.prepare(sql).unwrap();
    s.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn sessions_with_every_slot_trade_inside_the_window_and_close_every_0dte_position() {
    let desk = slot_desk();
    for day in ["2024-04-15", "2024-10-08", "2024-11-29"] {
        let out = desk.run_ok(&["run", "session", "--as-of", day]);
        assert!(out.contains("0 failed"), "{day}: {out}");
        let check = desk.run_ok(&["check"]);
        assert!(check.contains("reconciled to the cent"), "{day}: {check}");
    }
    // Each of the four strategies enters; every entry of a premium bot is inside
    // 10:30–13:30.
    for s in ["put_write", "iron_condor", "buy_write", "zscore_reversion"] {
        let n = desk.count(&format!(
            "SELECT count(*) FROM risk_decisions WHERE strategy = '{s}' AND intent = 'entry' AND decision = 'approved'"
        ));
        assert!(n >= 1, "{s} made no entry");
    }
    let outside = rows(
        &desk,
        "SELECT strategy || ' at ' || quote_time FROM risk_decisions
         WHERE strategy IN ('put_write', 'buy_write', 'iron_condor') AND intent = 'entry' AND decision = 'approved'
           AND (quote_time::TIME < TIME '10:30' OR quote_time::TIME > TIME '13:30')",
    );
    assert!(
        outside.is_empty(),
        "entries outside the window: {outside:?}"
    );
    // A slot where a bot does not enter says why.
    let n = desk.count(
        "SELECT count(*) FROM signals WHERE strategy = 'put_write' AND action = 'pass' AND reason <> ''",
    );
    assert!(n > 0, "put_write left no reason");
    // Every put spread's max loss is defined and within put_write's $100 (one 1-point SPY
    // spread), every condor's within its $500, the scalper's within $200.
    let over = rows(
        &desk,
        "SELECT strategy || ' ' || coalesce(max_loss::VARCHAR, 'undefined') FROM risk_decisions
         WHERE intent = 'entry' AND decision = 'approved'
           AND ((strategy = 'put_write' AND (max_loss IS NULL OR max_loss > 100))
             OR (strategy = 'iron_condor' AND (max_loss IS NULL OR max_loss > 500))
             OR (strategy = 'zscore_reversion' AND (max_loss IS NULL OR max_loss > 200)))",
    );
    assert!(over.is_empty(), "{over:?}");
    // Every 0DTE short is closed by the auto-close: 30 minutes before the close, 15:30, or
    // 12:30 on the 13:00 early close of 2024-11-29. What is left at the close is only a long
    // wing nobody bids for (it expires worthless), and no entry comes after the cut-off.
    let open_at_close = rows(
        &desk,
        "SELECT f.strategy || ' ' || f.instrument FROM fills f
         WHERE f.strategy IN ('put_write', 'buy_write', 'iron_condor') AND f.kind = 'option' AND f.expiry = f.as_of
         GROUP BY f.strategy, f.instrument, f.expiry HAVING sum(f.quantity) < 0",
    );
    assert!(open_at_close.is_empty(), "{open_at_close:?}");
    let late = rows(
        &desk,
        "SELECT strategy || ' ' || rule || ' at ' || quote_time FROM risk_decisions
         WHERE strategy IN ('put_write', 'buy_write', 'iron_condor', 'zscore_reversion') AND decision = 'approved'
           AND ((as_of = DATE '2024-11-29' AND quote_time::TIME > TIME '12:30' AND intent = 'entry')
             OR (as_of <> DATE '2024-11-29' AND quote_time::TIME >= TIME '15:30' AND intent = 'entry'))",
    );
    assert!(late.is_empty(), "{late:?}");
    let auto = rows(
        &desk,
        "SELECT DISTINCT as_of || ' ' || quote_time::TIME FROM risk_decisions
         WHERE rule = 'auto_close' AND decision = 'approved' ORDER BY 1",
    );
    for a in &auto {
        let ok = if a.starts_with("2024-11-29") {
            a.ends_with("12:30:00") || a.ends_with("12:45:00")
        } else {
            a.ends_with("15:30:00") || a.ends_with("15:45:00")
        };
        assert!(ok, "auto-close at {a}: {auto:?}");
    }
    // The scalper's daily cap halts its entries once reached, with the reason, and no
    // entry of its comes later that session.
    let halts = rows(
        &desk,
        "SELECT as_of || ' ' || quote_time::TIME || ' ' || reason FROM risk_decisions
         WHERE strategy = 'zscore_reversion' AND rule = 'daily_loss_cap' AND decision = 'refused'",
    );
    assert!(!halts.is_empty(), "the $1 cap never halted the scalper");
    assert!(halts.iter().all(|h| h.contains("1.00")), "{halts:?}");
    let after = rows(
        &desk,
        "SELECT e.order_ref FROM risk_decisions e JOIN (
             SELECT as_of, min(quote_time) AS t FROM risk_decisions
             WHERE strategy = 'zscore_reversion' AND rule = 'daily_loss_cap' GROUP BY as_of) h
           ON e.as_of = h.as_of AND e.quote_time > h.t
         WHERE e.strategy = 'zscore_reversion' AND e.intent = 'entry' AND e.decision = 'approved'",
    );
    assert!(after.is_empty(), "entries after the halt: {after:?}");
    // Each session was reviewed at its close; the premium bots' sessions are compliant.
    let bad = rows(
        &desk,
        "SELECT as_of || ' ' || strategy || ': ' || violations FROM session_compliance
         WHERE NOT compliant AND strategy IN ('put_write', 'buy_write', 'iron_condor', 'zscore_reversion')",
    );
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(
        desk.count("SELECT count(DISTINCT as_of) FROM session_compliance"),
        3
    );
}
