//! The command line a user sees: job list, sql, calendar, status, schedule.

mod common;
use common::{stderr, stdout, Desk};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn job_list_names_each_job_and_its_tables() {
    let desk = Desk::new();
    let out = desk.run_ok(&["job", "list"]);
    assert!(
        out.contains("fetch_chains") && out.contains("option_quotes"),
        "{out}"
    );
}

#[test]
fn sql_prints_table_csv_and_json_and_is_read_only() {
    let desk = Desk::new();
    let o = desk.run(&["sql", "SELECT 1"]);
    assert!(
        !o.status.success() && stderr(&o).contains("does not exist yet"),
        "{}",
        stderr(&o)
    );
    desk.run_ok(&["job", "run", "fetch_chains", "--as-of", "2025-03-14"]);
    let q = "SELECT symbol, price, rate > 0 AS has_rate FROM underlying_quotes WHERE symbol IN ('SPY','QQQ') ORDER BY symbol";
    let csv = desk.run_ok(&["sql", q, "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "symbol,price,has_rate");
    assert!(
        lines[1].starts_with("QQQ,") && lines[2].starts_with("SPY,"),
        "{csv}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&desk.run_ok(&["sql", q, "--format", "json"])).unwrap();
    assert_eq!(json[1]["symbol"], "SPY");
    assert!(
        json[1]["price"].is_number() && json[1]["has_rate"] == true,
        "{json}"
    );
    let table = desk.run_ok(&["sql", q]);
    assert!(
        table.contains("symbol") && table.contains("(2 rows)"),
        "{table}"
    );
    let o = desk.run(&["sql", "DELETE FROM job_runs"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("read-only"), "{}", stderr(&o));
    assert_eq!(desk.count("SELECT count(*) FROM job_runs"), 1);
    let o = desk.run(&["sql", "SELEC nonsense"]);
    assert!(!o.status.success() && stderr(&o).contains("query failed"));
}

#[test]
fn calendar_csv_matches_xnys_2000_2030() {
    let desk = Desk::new();
    let out = desk.run_ok(&[
        "calendar",
        "--from",
        "2000-01-01",
        "--to",
        "2030-12-31",
        "--format",
        "csv",
    ]);
    assert_eq!(out, include_str!("fixtures/xnys_sessions_2000_2030.csv"));
    let t = desk.run_ok(&["calendar", "--from", "2025-11-24", "--to", "2025-11-30"]);
    assert!(
        t.contains("2025-11-28  Fri  09:30  13:00  early close"),
        "{t}"
    );
    assert!(!t.contains("2025-11-27"), "Thanksgiving is closed: {t}");
}

#[test]
fn status_shows_the_last_run_and_the_next_firings() {
    let desk = Desk::new();
    let out = desk.run_ok(&["status"]);
    assert!(
        out.contains("No store yet") && out.contains("Next scheduled firings"),
        "{out}"
    );
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-14"]);
    let out = desk.run_ok(&["status"]);
    assert!(
        out.contains("fetch_chains") && out.contains("as_of 2025-03-14") && out.contains(" ok "),
        "{out}"
    );
}

#[test]
fn schedule_plan_fires_on_sessions_only_and_follows_early_closes() {
    let desk = Desk::new();
    desk.write_config("fetch_chains.toml", "slots = [\"close-30m\"]\n");
    let out = desk.run_ok(&["schedule", "--plan", "--from", "2025-11-24", "--days", "7"]);
    let runs: Vec<&str> = out.lines().filter(|l| l.contains("run daily")).collect();
    assert_eq!(
        runs.len(),
        4,
        "Mon, Tue, Wed, Fri of Thanksgiving week: {out}"
    );
    assert!(runs.iter().all(|l| l.contains("09:35")), "{out}");
    assert!(!out.contains("2025-11-27"), "{out}");
    // close-30m on the day after Thanksgiving (13:00 close) is 12:30.
    assert!(
        out.lines().any(|l| l.contains("2025-11-28")
            && l.contains("12:30")
            && l.contains("job run fetch_chains")),
        "{out}"
    );
    // DST: 09:35 New York is 14:35 UTC in winter, 13:35 UTC in summer.
    let w = desk.run_ok(&["schedule", "--plan", "--from", "2025-03-07", "--days", "1"]);
    assert!(w.contains("2025-03-07 14:35"), "{w}");
    let s = desk.run_ok(&["schedule", "--plan", "--from", "2025-03-10", "--days", "1"]);
    assert!(s.contains("2025-03-10 13:35"), "{s}");
}

/// The daemon fires on a session, never overlaps an entry with itself, keeps the store
/// closed between jobs, and on SIGTERM lets the running job finish and exits cleanly.
#[cfg(unix)]
#[test]
fn the_daemon_fires_and_stops_cleanly_on_sigterm() {
    let desk = Desk::new();
    // Every second, on a pretend session day, so the test does not depend on today.
    desk.write_config("desk.toml", "[schedule]\ndaily = \"* * * * * *\"\n");
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nsymbols = [\"SPY\", \"QQQ\"]\nhistory_sessions = 30\n",
    );
    let mut child = desk
        .cmd()
        .args(["schedule", "--pretend-date", "2025-03-14"])
        // Each run pauses 2 s before committing, so firings come due while one runs.
        .env("OPTDESK_FAILPOINT", "fetch_chains:before_commit:sleep=2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Wait until at least one run finished (a line for a later firing follows it).
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            log.push(l);
        }
        let fired = log
            .iter()
            .filter(|l| l.contains("firing run daily"))
            .count();
        if fired >= 2 {
            break;
        }
    }
    assert!(
        log.iter()
            .any(|l| l.contains("firing run daily for 2025-03-14")),
        "{log:#?}"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
        log.push(l);
    }
    assert!(status.success(), "exit status {status:?}: {log:#?}");
    assert!(
        log.iter().any(|l| l.contains("stopped cleanly")),
        "{log:#?}"
    );
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    // Every started run finished and was recorded ok: none was cut off by the stop.
    let started = out.matches("optdesk run daily").count() as i64;
    assert!(started >= 1, "{out}");
    let jobs = desk.count("SELECT count(DISTINCT job) FROM job_runs");
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs WHERE trigger = 'schedule' AND status = 'ok'"),
        started * jobs,
        "every job of every started run, ok"
    );
    // Firings that came due while a run was going were superseded by the latest one
    // (never run in parallel, never silently dropped): each is recorded with the reason.
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM job_runs WHERE status <> 'ok'
             AND NOT (status = 'skipped' AND (message LIKE '%superseded%' OR message LIKE '%stopped first%'))"
        ),
        0
    );
    assert!(
        desk.count("SELECT count(*) FROM job_runs WHERE status = 'skipped' AND message LIKE '%superseded%'") >= 1,
        "firings due during a run are superseded and recorded"
    );
    assert!(
        log.iter().all(|l| !l.contains("firing failed")),
        "no firing failed (none ran in parallel with another): {log:#?}"
    );
    let _ = stdout;
}

#[test]
fn log_lines_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    // cron and systemd append stderr to logs/daily.log.
    let desk = Desk::new();
    let o = desk
        .cmd()
        .env("OPTDESK_LOG", "info")
        .args(["job", "run", "fetch_chains", "--as-of", "2025-03-14"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("INFO"), "logging is on: {e}");
    assert!(!o.stderr.contains(&0x1b), "an ESC byte in the log: {e:?}");
}

/// Spawn optdesk with stdout piped, read one line, close the pipe: the command ends
/// quietly with success (as `optdesk calendar | head -1` should).
fn read_one_line_then_close(desk: &Desk, args: &[&str]) {
    let mut child = desk
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty(), "optdesk {args:?} printed nothing");
    // The reader is dropped here: the pipe is closed.
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(
        o.status.success() && !err.contains("panicked") && !err.contains("Broken pipe"),
        "optdesk {args:?} | head -1: {:?} {err}",
        o.status
    );
}

#[test]
fn a_closed_stdout_ends_the_command_quietly_with_success() {
    let desk = Desk::new();
    read_one_line_then_close(
        &desk,
        &["calendar", "--from", "2000-01-01", "--to", "2035-12-31"],
    );
    read_one_line_then_close(
        &desk,
        &[
            "calendar",
            "--from",
            "2000-01-01",
            "--to",
            "2035-12-31",
            "--format",
            "csv",
        ],
    );
    // A large calc output to stdout.
    let mut csv = String::from("right,spot,strike,t_years,rate,div_yield,vol\n");
    for _ in 0..20_000 {
        csv.push_str("C,100,100,0.5,0.04,0.01,0.2\n");
    }
    let input = desk.dir.path().join("big.csv");
    std::fs::write(&input, csv).unwrap();
    read_one_line_then_close(&desk, &["calc", "--input", input.to_str().unwrap()]);
    // `status` prints with println-style lines (it panicked on EPIPE).
    desk.run_ok(&["run", "daily", "--as-of", "2024-01-02"]);
    read_one_line_then_close(&desk, &["status"]);
    read_one_line_then_close(&desk, &["sql", "SELECT * FROM range(100000)"]);
}

#[test]
fn a_missing_calc_input_names_its_cause_once() {
    let desk = Desk::new();
    let o = desk.run(&["calc", "--input", "/nonexistent.csv"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the cause once: {err}"
    );
    assert!(err.contains("/nonexistent.csv"), "{err}");
}

#[test]
fn calc_refuses_a_row_with_more_fields_than_the_header() {
    let desk = Desk::new();
    let input = desk.dir.path().join("extra.csv");
    std::fs::write(
        &input,
        "right,spot,strike,t_years,rate,div_yield,price\nC,100,100,0.5,0.04,0.01,7.5,EXTRA,MORE\n",
    )
    .unwrap();
    let o = desk.run(&["calc", "--input", input.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("line 2: 9 fields, the header has 7"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn job_run_of_an_unknown_job_is_a_usage_error() {
    let desk = Desk::new();
    let o = desk.run(&["job", "run", "nope", "--as-of", "2024-01-02"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown job 'nope'"), "{}", stderr(&o));
}
