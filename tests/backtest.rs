//! `optdesk backtest` on the simulated market, on a reduced universe (three underlyings,
//! expiries to 60 days) over a few weeks: the same orders, fills and ledger as `run
//! daily` over the same sessions; the same result twice; a stopped then killed backtest resumes to
//! the same result; bad input refused before any session, naming the key or reason.

mod common;
use common::{stderr, stdout, Desk};
use std::path::{Path, PathBuf};

/// 40 sessions (Juneteenth and July 4 are holidays), through the settlements of the
/// July 5 and July 19 expiries.
const FROM: &str = "2024-06-03";
const TO: &str = "2024-07-30";
const SESSIONS: i64 = 40;

fn small_desk() -> Desk {
    let desk = Desk::new();
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nsymbols = [\"SPY\", \"QQQ\", \"IWM\"]\nmax_expiry_days = 60\nhistory_sessions = 30\n",
    );
    desk
}

fn bt_store(desk: &Desk, name: &str) -> PathBuf {
    desk.dir
        .path()
        .join("backtests")
        .join(format!("{name}.duckdb"))
}

fn open(path: &Path) -> duckdb::Connection {
    let cfg = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .unwrap();
    duckdb::Connection::open_with_flags(path, cfg).unwrap()
}

/// The trading record: every row of each table, as text, sorted (run ids left out).
const TRADING: &[&str] = &[
    "order_legs",
    "order_events",
    "fills",
    "cash_ledger",
    "positions",
    "signals",
    "risk_decisions",
    "portfolio_snapshots",
    "strategy_snapshots",
];

fn rows(path: &Path, tables: &[&str]) -> Vec<(String, Vec<String>)> {
    let c = open(path);
    tables
        .iter()
        .map(|t| {
            let has_run_id: i64 = c
                .query_row(
                    "SELECT count(*) FROM information_schema.columns WHERE table_name = ? AND column_name = 'run_id'",
                    [t],
                    |r| r.get(0),
                )
                .unwrap();
            let cols = if has_run_id > 0 {
                "* EXCLUDE (run_id)"
            } else {
                "*"
            };
            let mut s = c
                .prepare(&format!(
                    "SELECT x::VARCHAR FROM (SELECT {cols} FROM {t}) x ORDER BY 1"
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

/// Every table but the run records, the prunes log and the backtest's own bookkeeping.
fn all_tables(path: &Path) -> Vec<(String, Vec<String>)> {
    let c = open(path);
    let mut s = c
        .prepare(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'
             AND table_name NOT IN ('job_runs', 'schema_migrations', 'prunes', 'backtests', 'backtest_sessions', 'backtest_metrics')
             ORDER BY 1",
        )
        .unwrap();
    let names: Vec<String> = s
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    rows(path, &names)
}

/// Equal table for table; on a difference, the table, its row counts and the first
/// rows that differ.
fn assert_same(got: &[(String, Vec<String>)], want: &[(String, Vec<String>)], what: &str) {
    let names = |v: &[(String, Vec<String>)]| v.iter().map(|t| t.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: the tables differ");
    for ((t, g), (_, w)) in got.iter().zip(want) {
        if g != w {
            let only_got: Vec<&String> = g.iter().filter(|r| !w.contains(r)).take(2).collect();
            let only_want: Vec<&String> = w.iter().filter(|r| !g.contains(r)).take(2).collect();
            panic!(
                "{what}: {t} differs ({} rows against {}): only in the first {only_got:?}; only in the second {only_want:?}",
                g.len(),
                w.len()
            );
        }
    }
}

fn count(path: &Path, sql: &str) -> i64 {
    open(path).query_row(sql, [], |r| r.get(0)).unwrap()
}

fn backtest(desk: &Desk, name: &str, extra: &[&str]) -> String {
    backtest_to(desk, name, TO, extra)
}

fn backtest_to(desk: &Desk, name: &str, to: &str, extra: &[&str]) -> String {
    let mut args = vec!["backtest", "--from", FROM, "--to", to, "--name", name];
    args.extend_from_slice(extra);
    desk.run_ok(&args)
}

#[test]
fn a_backtest_equals_run_daily_over_the_same_sessions_and_twice_is_the_same() {
    let desk = small_desk();
    let out = backtest(&desk, "a", &[]);
    assert!(
        out.contains("backtest a done: 40 sessions") && out.contains("40/40 sessions"),
        "{out}"
    );
    assert!(out.contains("MB (--keep-quotes traded)"), "{out}");
    let a = bt_store(&desk, "a");
    // Every job ran for every session, in the runner's envelope, none sent anything.
    assert_eq!(
        count(
            &a,
            "SELECT count(*) FROM job_runs WHERE status = 'ok' AND trigger = 'backtest'"
        ),
        SESSIONS * optdesk::jobs::JOBS.iter().filter(|j| j.daily).count() as i64
    );
    assert_eq!(
        count(&a, "SELECT count(*) FROM backtest_sessions"),
        SESSIONS
    );
    assert_eq!(
        count(&a, "SELECT count(*) FROM reports"),
        0,
        "no email per session"
    );
    assert!(
        !desk.dir.path().join("logs/reports").exists(),
        "no .eml written"
    );
    assert!(
        count(&a, "SELECT count(*) FROM fills WHERE cash_kind = 'premium'") >= 2,
        "the strategies traded"
    );
    assert!(
        count(
            &a,
            "SELECT count(*) FROM fills WHERE order_ref LIKE 'expire:%'"
        ) >= 1,
        "an expiry settled"
    );

    // The same sessions, one `run daily` each, on a fresh desk with the same files.
    let daily = small_desk();
    for s in optdesk::calendar::sessions(FROM.parse().unwrap(), TO.parse().unwrap()).unwrap() {
        daily.run_ok(&["run", "daily", "--as-of", &s.date.to_string()]);
    }
    let want = rows(&daily.db(), TRADING);
    for (t, w) in &want {
        assert!(!w.is_empty() || t == "positions", "{t} is empty");
    }
    assert_same(&rows(&a, TRADING), &want, "backtest against run daily");
    // --keep-quotes traded thinned the past sessions' chains; the last one is whole.
    let quotes = |p: &Path, op: &str| {
        count(
            p,
            &format!("SELECT count(*) FROM option_quotes WHERE as_of {op} DATE '{TO}'"),
        )
    };
    assert!(quotes(&a, "<") * 3 < quotes(&daily.db(), "<"));
    assert_eq!(quotes(&a, "="), quotes(&daily.db(), "="));
    assert!(desk
        .run_ok(&["--db", a.to_str().unwrap(), "check"])
        .contains("reconciled to the cent"));

    // The same backtest again under another name, stopped after 15 sessions (as Ctrl-C
    // would), then killed inside session 16 (between select_trades' work and its
    // commit), then resumed twice: identical to the first, table for table.
    let b = bt_store(&desk, "b");
    let o = desk
        .cmd()
        .args(["backtest", "--from", FROM, "--to", TO, "--name", "b"])
        .env("OPTDESK_BACKTEST_STOP_AFTER", "15")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("stopped after session 2024-06-24 (15 of 40 done)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(count(&b, "SELECT count(*) FROM backtest_sessions"), 15);
    assert_eq!(
        desk.count("SELECT count(*) FROM backtests WHERE name = 'b' AND status = 'stopped' AND sessions_done = 15"),
        1
    );
    let o = desk
        .cmd()
        .args(["backtest", "--from", FROM, "--to", TO, "--name", "b"])
        .env("OPTDESK_FAILPOINT", "select_trades:before_commit:abort")
        .output()
        .unwrap();
    assert!(!o.status.success(), "the failpoint aborts the process");
    assert_eq!(count(&b, "SELECT count(*) FROM backtest_sessions"), 15);
    // The catalogue row still says running; list and show say it was interrupted.
    let list = desk.run_ok(&["backtest", "list"]);
    assert!(list.contains("interrupted"), "{list}");
    let show = desk.run_ok(&["backtest", "show", "b"]);
    assert!(
        show.contains("backtest b: interrupted (its process ended before it finished"),
        "{show}"
    );
    let out = backtest(&desk, "b", &[]);
    assert!(out.contains("resuming at session 16 (25 to go)"), "{out}");
    assert!(
        out.contains("backtest b done: 40 sessions (25 run now"),
        "{out}"
    );
    assert_same(
        &all_tables(&b),
        &all_tables(&a),
        "a resumed backtest against a whole one",
    );
    // Nothing left to do: said, and nothing changes.
    let out = backtest(&desk, "b", &[]);
    assert!(out.contains("already done"), "{out}");

    // The catalogue has both, done, with their headline metrics.
    let list = desk.run_ok(&["backtest", "list"]);
    assert!(list.contains("40/40") && list.contains("done"), "{list}");
    assert_eq!(
        desk.count("SELECT count(*) FROM backtests WHERE status = 'done' AND total_return IS NOT NULL AND sharpe IS NOT NULL"),
        2
    );
    let show = desk.run_ok(&["backtest", "show", "a"]);
    assert!(
        show.contains("backtest a: done")
            && show.contains("call_premium")
            && show.contains("Portfolio"),
        "{show}"
    );
    assert_eq!(
        desk.count("SELECT count(DISTINCT config_hash) FROM backtests"),
        1
    );
}

#[test]
fn bad_input_is_refused_before_any_session_naming_the_key_or_reason() {
    let desk = small_desk();
    let refused = |args: &[&str], want: &[&str]| {
        let o = desk.run(args);
        let err = stderr(&o);
        assert_ne!(o.status.code(), Some(0), "{args:?}: {}", stdout(&o));
        for w in want {
            assert!(err.contains(w), "{args:?}: {err}");
        }
        assert!(!stdout(&o).contains("sessions/s"), "{args:?} ran a session");
    };
    let bt = |extra: &[&str]| -> Vec<String> {
        [
            "backtest",
            "--from",
            "2024-06-03",
            "--to",
            "2024-06-04",
            "--name",
            "c",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    let run = |extra: &[&str], want: &[&str]| {
        let args = bt(extra);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        refused(&args, want);
    };
    run(
        &["--set", "dispersion.z_entryy=1.5"],
        &["--set dispersion.z_entryy=1.5", "unknown field `z_entryy`"],
    );
    run(
        &["--set", "nosuch.key=1"],
        &["unknown key 'nosuch.key'", "dispersion", "select_trades"],
    );
    run(
        &["--set", "dispersion.z_entry=abc"],
        &["--set dispersion.z_entry=abc", "invalid type"],
    );
    run(
        &["--set", "select_trades.risk.max_loss_per_trade=-5"],
        &[
            "--set select_trades.risk.max_loss_per_trade=-5",
            "risk.max_loss_per_trade = -5",
        ],
    );
    refused(
        &["backtest", "--from", "2024-06-08", "--to", "2024-06-09"],
        &["no NYSE sessions from 2024-06-08 to 2024-06-09"],
    );
    refused(
        &["backtest", "--from", "2024-06-10", "--to", "2024-06-03"],
        &["--to 2024-06-03 is before --from 2024-06-10"],
    );
    refused(
        &["backtest", "--from", "1999-06-01", "--to", "1999-06-30"],
        &["1999-06-01 is outside the NYSE calendar's range (2000-01-01 to 2035-12-31)"],
    );
    assert!(
        !desk.dir.path().join("backtests").exists(),
        "no store was made"
    );
    assert!(!desk.db().exists(), "no catalogue row was written");

    // A store made with one configuration is not resumed with another.
    let args = bt(&["--set", "call_premium.enabled=false"]);
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    // With SMTP configured in the environment (a port nobody listens on): a backtest
    // never connects, so it does not fail on it, and records no report.
    let o = desk
        .cmd()
        .args(&args)
        .env("OPTDESK_SMTP_HOST", "127.0.0.1")
        .env("OPTDESK_SMTP_PORT", "9")
        .env("OPTDESK_SMTP_SECURITY", "none")
        .env("OPTDESK_SMTP_FROM", "desk@example.com")
        .env("OPTDESK_SMTP_TO", "me@example.com")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let c = bt_store(&desk, "c");
    assert_eq!(count(&c, "SELECT count(*) FROM reports"), 0);
    assert_eq!(
        count(&c, "SELECT count(*) FROM job_runs WHERE job = 'email_report' AND status = 'ok' AND message LIKE 'backtest: no daily report%'"),
        2
    );
    let before = all_tables(&c);
    run(
        &[],
        &[
            "backtest 'c'",
            "another configuration",
            "--set override",
            "new --name",
            "--restart",
        ],
    );
    run(
        &["--seed", "7", "--set", "call_premium.enabled=false"],
        &["another configuration"],
    );
    assert_eq!(all_tables(&c), before, "the refused runs changed nothing");
    // --restart discards it and starts again with the new configuration.
    let args = bt(&["--restart"]);
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = desk.run_ok(&args);
    assert!(
        out.contains("backtest c done: 2 sessions (2 run now"),
        "{out}"
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM backtests WHERE name = 'c' AND overrides = ''"),
        1
    );
    // A data file the jobs read (the events calendar, here written beside the built-in
    // copy it replaces) is part of the configuration too.
    let before = all_tables(&c);
    std::fs::create_dir_all(desk.dir.path().join("data")).unwrap();
    std::fs::write(
        desk.dir.path().join("data/events.csv"),
        "date,event\n2024-06-04,FOMC\n",
    )
    .unwrap();
    run(&[], &["another configuration"]);
    assert_eq!(all_tables(&c), before, "the refused run changed nothing");
}

/// On the replay source, a backtest runs on the main store's imported archive (copied
/// into its own store) and trades as `run daily` does on the same archive; a range the
/// archive does not cover, and a live source, are refused before any session.
#[test]
fn a_replay_backtest_runs_on_the_imported_archive_as_run_daily_does() {
    let desk = Desk::new();
    let fixture = |f: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/import")
            .join(f)
            .display()
            .to_string()
    };
    let files: Vec<String> = [
        "spy_eod_202403.txt",
        "UnderlyingOptionsEODCalcs_2024-03-14.csv",
        "L2_options_20240315.csv",
        "SPY.csv",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect();
    let mut args = vec!["import"];
    args.extend(files.iter().map(|s| s.as_str()));
    desk.run_ok(&args);
    let desk_toml = desk.desk_toml_for("replay", &[]);
    desk.write_config("desk.toml", &desk_toml);
    // The fixtures quote SPY on both days.
    desk.write_config("fetch_chains.toml", "[params]\nsymbols = [\"SPY\"]\n");
    for d in ["2024-03-14", "2024-03-15"] {
        desk.run_ok(&["run", "daily", "--as-of", d]);
    }
    let out = desk.run_ok(&[
        "backtest",
        "--from",
        "2024-03-14",
        "--to",
        "2024-03-15",
        "--name",
        "r",
    ]);
    assert!(out.contains("backtest r done: 2 sessions"), "{out}");
    let r = bt_store(&desk, "r");
    assert_eq!(
        count(
            &r,
            "SELECT count(*) FROM option_quotes WHERE source <> 'replay'"
        ),
        0
    );
    assert!(desk.count("SELECT count(*) FROM fills") >= 1, "it traded");
    assert_same(
        &rows(&r, TRADING),
        &rows(&desk.db(), TRADING),
        "replay backtest against run daily",
    );
    for (args, want) in [
        (
            vec!["backtest", "--from", "2024-03-14", "--to", "2024-03-20"],
            "the replay archive of",
        ),
        (
            vec!["backtest", "--from", "2024-03-14", "--to", "2024-03-20"],
            "covers 2024-03-14 to 2024-03-15, not 2024-03-14 to 2024-03-20",
        ),
        (
            vec![
                "backtest",
                "--from",
                "2024-03-14",
                "--to",
                "2024-03-15",
                "--source",
                "cboe",
            ],
            "source cboe: it gives only today's quotes",
        ),
    ] {
        let o = desk.run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}
