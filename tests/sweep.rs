//! `optdesk backtest sweep` and `collect` on the simulated market, on a reduced universe
//! (three underlyings, expiries to 60 days) over two weeks: a sweep of three points runs
//! (each its own store; stopped, it resumes) and compares them; `--emit` writes the points' commands, which
//! run as a batch engine would run them, and `collect` over their stores gives the same
//! comparison; a bad grid fails before any session, naming the key or reason.

mod common;
use common::{stderr, Desk};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// 10 sessions.
const FROM: &str = "2024-06-03";
const TO: &str = "2024-06-14";
/// The cash-secured puts' strike: changes what is sold, hence the results.
const GRID: &str = "cash_secured_put.target_delta=0.15,0.25,0.35";
const VALUES: [&str; 3] = ["0.15", "0.25", "0.35"];

fn small_desk() -> Desk {
    let desk = Desk::new();
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nsymbols = [\"SPY\", \"QQQ\", \"IWM\"]\nmax_expiry_days = 60\nhistory_sessions = 30\n",
    );
    desk
}

fn stores(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".duckdb"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The comparison table of a command's output: from its title line to its last row.
fn table(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.contains("backtests compared"))
        .take_while(|l| !l.starts_with("comparison page"))
        .map(String::from)
        .collect()
}

fn sweep_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "backtest", "sweep", "--from", FROM, "--to", TO, "--grid", GRID, "--name", "s",
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn a_sweep_equals_its_emitted_commands_run_then_collected() {
    let desk = small_desk();
    // Every point stopped after 4 sessions (as by Ctrl-C): exit 130; the same command
    // again resumes each where it stopped.
    let o = desk
        .cmd()
        .args(sweep_args(&["--parallel", "2"]))
        .env("OPTDESK_BACKTEST_STOP_AFTER", "4")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("run the same command again to resume"));
    let out = desk.run_ok(&sweep_args(&["--parallel", "2"]));
    assert_eq!(
        out.matches("resumes, 6 of 10 sessions to go").count(),
        3,
        "{out}"
    );
    let bt = desk.dir.path().join("backtests");
    let names: Vec<String> = VALUES
        .iter()
        .map(|v| format!("s-target_delta_{v}"))
        .collect();
    assert_eq!(
        stores(&bt),
        names
            .iter()
            .map(|n| format!("{n}.duckdb"))
            .collect::<Vec<_>>(),
        "{out}"
    );
    // The comparison: a row per point with its grid value, done, figures that differ.
    let csv = std::fs::read_to_string(bt.join("s.sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        lines[0].starts_with("name,cash_secured_put.target_delta,from,to,"),
        "{csv}"
    );
    let mut returns = Vec::new();
    for ((line, name), v) in lines[1..].iter().zip(&names).zip(VALUES) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!((f[0], f[1], f[6]), (name.as_str(), v, "done"), "{csv}");
        returns.push(f[7].to_string());
    }
    returns.dedup();
    assert_eq!(returns.len(), 3, "the grid changes the results: {csv}");
    let t = table(&out);
    assert_eq!(t.len(), 6, "{out}");
    for (row, (name, v)) in t[3..].iter().zip(names.iter().zip(VALUES)) {
        assert!(row.starts_with(name) && row.contains(v), "{out}");
    }
    let html = std::fs::read_to_string(bt.join("s.sweep.html")).unwrap();
    assert!(html.contains("<svg") && names.iter().all(|n| html.contains(n.as_str())));

    // Again: every point is done, nothing runs, the same comparison.
    let again = desk.run_ok(&sweep_args(&[]));
    assert!(again.contains("0 to run, 3 already done"), "{again}");
    assert_eq!(table(&again), t);
    assert_eq!(
        std::fs::read_to_string(bt.join("s.sweep.csv")).unwrap(),
        csv
    );

    // --emit for another store: one command a line, nothing run.
    let other = desk.dir.path().join("other");
    let other_db = other.join("optdesk.duckdb");
    let points = desk.dir.path().join("points.txt");
    let emitted = desk.run_ok(&{
        let mut a = vec!["--db", other_db.to_str().unwrap()];
        a.extend(sweep_args(&["--emit", points.to_str().unwrap()]));
        a
    });
    assert!(emitted.contains("wrote 3 commands"), "{emitted}");
    let text = std::fs::read_to_string(&points).unwrap();
    let cmds: Vec<&str> = text.lines().collect();
    assert_eq!(cmds.len(), 3, "{text}");
    for (c, (name, v)) in cmds.iter().zip(names.iter().zip(VALUES)) {
        assert!(c.starts_with("optdesk --db "), "{c}");
        assert!(
            c.contains(&format!(" backtest --from {FROM} --to {TO} --name {name} ")),
            "{c}"
        );
        assert!(
            c.ends_with(&format!("--set cash_secured_put.target_delta={v}")),
            "{c}"
        );
    }
    assert!(stores(&other.join("backtests")).is_empty());

    // Each line as an array job's task runs it: `sed -n "${N}p" points.txt | sh`, the
    // three at once, optdesk on the PATH.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_optdesk"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tasks: Vec<_> = (1..=3)
        .map(|n| {
            let mut c = Command::new("sh");
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("OPTDESK_") {
                    c.env_remove(k);
                }
            }
            c.arg("-c")
                .arg(format!("sed -n \"${{N}}p\" '{}' | sh", points.display()))
                .env("N", n.to_string())
                .env("PATH", &path)
                .current_dir(desk.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for t in tasks {
        let o = t.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let collected = desk.run_ok(&[
        "backtest",
        "collect",
        other.join("backtests").to_str().unwrap(),
        "--name",
        "s",
    ]);
    assert_eq!(table(&collected), t, "{collected}");
    assert_eq!(
        std::fs::read_to_string(other.join("backtests").join("s.sweep.csv")).unwrap(),
        csv
    );
    assert!(other.join("backtests").join("s.sweep.html").exists());
}

#[test]
fn a_bad_grid_fails_before_any_session_naming_the_key() {
    let desk = small_desk();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--grid", "cash_secured_put.no_such_key=1,2"],
            "no_such_key",
        ),
        (&["--grid", "cash_secured_put.target_delta="], "no values"),
        (
            &["--grid", "cash_secured_put.target_delta=0.15,,0.35"],
            "value 2 of 3 is empty",
        ),
        // The second point's value: refused before the first point runs.
        (
            &["--grid", "cash_secured_put.target_delta=0.15,abc"],
            "cash_secured_put.target_delta=abc",
        ),
        (&["--grid", "nosuch.key=1,2"], "nosuch"),
        (&["--grid", "cash_secured_put.target_delta"], "expected"),
        (
            &[
                "--grid",
                "cash_secured_put.target_delta=0.15,0.25",
                "--set",
                "cash_secured_put.target_delta=0.3",
            ],
            "same key",
        ),
        (
            &[
                "--grid",
                "cash_secured_put.target_delta=0.15",
                "--grid",
                "cash_secured_put.target_delta=0.25",
            ],
            "two --grid",
        ),
        (
            &[
                "--grid",
                "cash_secured_put.target_delta=0.15",
                "--parallel",
                "0",
            ],
            "--parallel",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["backtest", "sweep", "--from", FROM, "--to", TO];
        args.extend_from_slice(extra);
        let o = desk.run(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} ran");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(
            stores(&desk.dir.path().join("backtests")).is_empty(),
            "{args:?} made a store"
        );
    }
    // collect: a folder without backtest stores.
    std::fs::create_dir_all(desk.dir.path().join("empty")).unwrap();
    let o = desk.run(&["backtest", "collect", "empty"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no backtest stores"), "{}", stderr(&o));
}
