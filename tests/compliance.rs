//! The pre-live checklist, session compliance and `optdesk selftest` through the binary.

mod common;
use common::Desk;

/// A reduced universe: the drills and the 30 sessions stay short.
const SMALL: &[&str] = &[
    "--set",
    "fetch_chains.params.symbols=[\"SPY\",\"QQQ\",\"IWM\",\"VOO\",\"VTI\"]",
    "--set",
    "fetch_chains.params.max_expiry_days=70",
];

#[test]
fn the_checklist_after_30_sessions_prints_every_line_with_its_figure() {
    let desk = Desk::new();
    let mut args = vec![
        "backtest",
        "--from",
        "2025-01-02",
        "--to",
        "2025-02-14",
        "--name",
        "c30",
    ];
    args.extend_from_slice(SMALL);
    desk.run_ok(&args);
    let db = desk.dir.path().join("backtests/c30.duckdb");
    let db = db.to_str().unwrap();
    let o = desk.run(&["--db", db, "checklist"]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Not every line can pass: no drill ran on this store.
    assert_eq!(o.status.code(), Some(1), "{out}");
    for item in [
        "win rate > 45%",
        "profit factor > 1.2",
        "max drawdown < 10%",
        "no failed run in the last 30 days",
        "recovery after kill -9 tested",
        "reconnect tested",
        "circuit breakers tested",
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(item))
            .unwrap_or_else(|| panic!("no line for {item}:\n{out}"));
        let figure = line.split(item).nth(1).unwrap().trim();
        assert!(!figure.is_empty(), "{item} has no figure: {line}");
    }
    assert!(
        out.contains("over 30 sessions"),
        "the drawdown is over the 30 sessions:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("  NOT TESTED") && l.contains("recovery after kill -9")),
        "{out}"
    );
    // Each session was reviewed by the next one's daily run (the last by none yet).
    let c = duckdb::Connection::open(db).unwrap();
    let (sessions, bad): (i64, i64) = c
        .query_row(
            "SELECT count(DISTINCT as_of), count(*) FILTER (WHERE NOT compliant) FROM session_compliance",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((sessions, bad), (29, 0));
    let o = desk.run(&["--db", db, "checklist", "--strategy", "nope"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--strategy nope: no such strategy"));
}

#[test]
fn selftest_runs_and_records_its_drills_and_the_checklist_reads_them() {
    let desk = Desk::new();
    let out = desk.run_ok(&["selftest", "--as-of", "2025-03-14"]);
    assert!(out.contains("PASS  kill9_recovery"), "{out}");
    assert!(out.contains("PASS  circuit_breakers"), "{out}");
    assert!(
        out.contains("refused by kill_switch") && out.contains("refused by event_blackout"),
        "{out}"
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM drills WHERE passed AND drill IN ('kill9_recovery', 'circuit_breakers')"),
        2
    );
    let o = desk.run(&["checklist"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    for item in ["recovery after kill -9 tested", "circuit breakers tested"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("  PASS") && l.contains(item)),
            "{item}:\n{out}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("  NOT TESTED") && l.contains("reconnect tested")),
        "{out}"
    );
    // The drills leave nothing behind and touch nothing of the desk's but `drills`.
    assert_eq!(desk.count("SELECT count(*) FROM fills"), 0);
}
