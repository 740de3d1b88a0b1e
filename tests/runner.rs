//! The job runner's promises, end to end through the binary: idempotent re-runs,
//! atomic runs (panic or kill -9 midway leaves the store as it was), one writer at a
//! time, non-sessions do nothing, bad input writes nothing.

mod common;
use common::{stderr, stdout, Desk};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

#[test]
fn run_daily_twice_leaves_the_same_rows() {
    let desk = Desk::new();
    let out = desk.run_ok(&["run", "daily", "--as-of", "2025-03-14"]);
    assert!(
        out.contains("fetch_chains") && out.contains(" ok "),
        "{out}"
    );
    assert!(
        out.contains("backfilled"),
        "first run backfills history: {out}"
    );
    let first = desk.fingerprint(false);
    let quotes = first.iter().find(|t| t.0 == "option_quotes").unwrap().1;
    assert!(quotes > 10_000, "a full-universe chain: {quotes}");

    let out2 = desk.run_ok(&["run", "daily", "--as-of", "2025-03-14"]);
    assert!(
        !out2.contains("backfilled"),
        "nothing left to backfill: {out2}"
    );
    assert_eq!(
        desk.fingerprint(false),
        first,
        "second run must leave the same rows"
    );
    let jobs = optdesk::jobs::JOBS.iter().filter(|j| j.daily).count() as i64;
    assert_eq!(
        desk.count("SELECT count(DISTINCT job) FROM job_runs"),
        jobs,
        "every job ran"
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs WHERE status = 'ok'"),
        2 * jobs
    );
    assert_eq!(
        desk.count("SELECT count(DISTINCT run_id) FROM job_runs"),
        2 * jobs
    );
    // Lookback history exists for later jobs.
    assert!(
        desk.count("SELECT count(DISTINCT date) FROM underlying_bars WHERE symbol = 'SPY'") >= 252
    );
    assert!(desk.count("SELECT count(DISTINCT date) FROM iv_history WHERE symbol = 'QQQ'") >= 252);
    assert_eq!(
        desk.count("SELECT count(*) FROM backfills"),
        2,
        "bars and ATM IV, once"
    );
}

#[test]
fn a_non_session_does_nothing_and_says_so() {
    let desk = Desk::new();
    for (date, why) in [
        ("2025-03-15", "weekend"),
        ("2025-12-25", "Christmas"),
        ("2025-01-09", "Carter"),
    ] {
        let o = desk.run(&["run", "daily", "--as-of", date]);
        assert!(o.status.success());
        let s = stdout(&o);
        assert!(s.contains("not an NYSE session") && s.contains(why), "{s}");
    }
    assert!(!desk.db().exists(), "nothing written, not even a store");
}

#[test]
fn bad_input_is_a_one_line_error_and_writes_nothing() {
    let desk = Desk::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["job", "run", "fetch_chain", "--as-of", "2025-03-14"],
            "unknown job 'fetch_chain'",
        ),
        (&["run", "daily", "--as-of", "2025-13-01"], "not a date"),
        (
            &["run", "daily", "--as-of", "1999-12-31"],
            "outside the NYSE calendar",
        ),
        (
            &["calendar", "--from", "2025-01-01", "--to", "2040-01-01"],
            "outside the NYSE calendar",
        ),
    ];
    for (args, want) in cases {
        let o = desk.run(args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    desk.write_config(
        "fetch_chains.toml",
        "enabled = true\n[params]\nmax_expiry_dayz = 30\n",
    );
    let o = desk.run(&["run", "daily", "--as-of", "2025-03-14"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("fetch_chains.toml") && e.contains("max_expiry_dayz") && e.contains("line 3"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nmax_expiry_days = \"thirty\"\n",
    );
    let e = stderr(&desk.run(&["run", "daily", "--as-of", "2025-03-14"]));
    assert!(
        e.contains("fetch_chains.toml") && e.contains("invalid type"),
        "{e}"
    );
    desk.write_config("fetch_chains.toml", "[params]\nmax_expiry_days = -5\n");
    let e = stderr(&desk.run(&["run", "daily", "--as-of", "2025-03-14"]));
    assert!(e.contains("fetch_chains.toml"), "{e}");
    desk.write_config("desk.toml", "[schedule]\ndaily = \"at nine\"\n");
    let e = stderr(&desk.run(&["job", "list"]));
    assert!(
        e.contains("desk.toml") && e.contains("schedule.daily"),
        "{e}"
    );
    assert!(!desk.db().exists(), "no store was created by any of these");
}

#[test]
fn a_corrupt_store_is_a_clear_error() {
    let desk = Desk::new();
    std::fs::write(desk.db(), vec![b'x'; 10_000]).unwrap();
    let o = desk.run(&["run", "daily", "--as-of", "2025-03-14"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("cannot open store") && e.trim().lines().count() == 1,
        "{e}"
    );
    let o = desk.run(&["sql", "SELECT 1"]);
    assert!(!o.status.success() && stderr(&o).contains("cannot open store"));
}

#[test]
fn a_panic_midway_rolls_back_and_the_next_run_succeeds() {
    let desk = Desk::new();
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-13"]);
    let before = desk.fingerprint(false);
    let o = desk
        .cmd()
        .args(["run", "daily", "--as-of", "2025-03-14"])
        .env("OPTDESK_FAILPOINT", "fetch_chains:mid:panic")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("job panicked"), "{}", stderr(&o));
    assert_eq!(
        desk.fingerprint(false),
        before,
        "no output of the failed run survives"
    );
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM job_runs WHERE status = 'failed' AND message LIKE '%panicked%'"
        ),
        1,
        "the failure is recorded with its reason"
    );
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-14"]);
    assert!(
        desk.count("SELECT count(*) FROM option_quotes WHERE as_of = DATE '2025-03-14'") > 10_000
    );
}

/// Start a run that stops just before committing (the failpoint sleeps), and return it
/// once it is there.
fn start_paused_run(desk: &Desk, date: &str, secs: u32) -> std::process::Child {
    let mut child = desk
        .cmd()
        .args(["job", "run", "fetch_chains", "--as-of", date])
        .env(
            "OPTDESK_FAILPOINT",
            format!("fetch_chains:before_commit:sleep={secs}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let l = lines
            .next()
            .expect("the run reaches the failpoint")
            .unwrap();
        if l.contains("sleeping") {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

#[test]
fn kill_9_midway_leaves_the_store_as_it_was() {
    let desk = Desk::new();
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-13"]);
    let before = desk.fingerprint(true);
    let mut child = start_paused_run(&desk, "2025-03-14", 60);
    child.kill().unwrap(); // SIGKILL: no destructor, no rollback, no goodbye
    child.wait().unwrap();
    assert_eq!(
        desk.fingerprint(true),
        before,
        "every table, job_runs included, is as before"
    );
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-14"]);
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs WHERE status = 'ok'"),
        2 * optdesk::jobs::JOBS.iter().filter(|j| j.daily).count() as i64
    );
}

#[test]
fn a_second_writer_fails_clearly_naming_the_holder() {
    let desk = Desk::new();
    desk.write_config("desk.toml", "[desk]\nlock_timeout_secs = 1\n");
    let mut first = start_paused_run(&desk, "2025-03-14", 4);
    let o = desk.run(&["job", "run", "fetch_chains", "--as-of", "2025-03-13"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("locked by another writer") && e.contains("pid") && e.contains("fetch_chains"),
        "{e}"
    );
    assert!(
        first.wait().unwrap().success(),
        "the holder finishes normally"
    );
    // Neither corrupted the file: the holder's rows are there and the second can now run.
    assert!(
        desk.count("SELECT count(*) FROM option_quotes WHERE as_of = DATE '2025-03-14'") > 10_000
    );
    desk.run_ok(&["job", "run", "fetch_chains", "--as-of", "2025-03-13"]);
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs WHERE status = 'ok'"),
        2
    );
}

#[test]
fn a_second_writer_waits_for_the_first() {
    let desk = Desk::new();
    let mut first = start_paused_run(&desk, "2025-03-14", 2);
    let out = desk.run_ok(&["job", "run", "fetch_chains", "--as-of", "2025-03-13"]);
    assert!(out.contains(" ok "), "{out}");
    assert!(first.wait().unwrap().success());
    assert_eq!(
        desk.count("SELECT count(DISTINCT as_of) FROM option_quotes"),
        2
    );
}

#[test]
fn dry_run_writes_only_its_job_runs_row() {
    let desk = Desk::new();
    let out = desk.run_ok(&[
        "job",
        "run",
        "fetch_chains",
        "--as-of",
        "2025-03-14",
        "--dry-run",
    ]);
    assert!(
        out.contains("DRY RUN") && out.contains("dry run, nothing written"),
        "{out}"
    );
    assert_eq!(desk.count("SELECT count(*) FROM option_quotes"), 0);
    assert_eq!(desk.count("SELECT count(*) FROM underlying_bars"), 0);
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs WHERE dry_run AND rows_written > 0"),
        1
    );
}

#[test]
fn a_disabled_job_is_recorded_as_skipped_with_the_reason() {
    let desk = Desk::new();
    desk.write_config("correlation.toml", "enabled = false\n");
    let out = desk.run_ok(&["run", "daily", "--as-of", "2025-03-14"]);
    assert!(
        out.contains("skipped") && out.contains("enabled = false"),
        "{out}"
    );
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM job_runs WHERE status = 'skipped' AND message LIKE '%disabled%'"
        ),
        1
    );
}

#[test]
fn a_failed_job_fails_the_run_with_its_reason() {
    let desk = Desk::new();
    let o = desk
        .cmd()
        .args(["run", "daily", "--as-of", "2025-03-14"])
        .env("OPTDESK_FAILPOINT", "fetch_chains:before_commit:error")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("failpoint fetch_chains:before_commit triggered"),
        "{}",
        stderr(&o)
    );
    assert_eq!(desk.count("SELECT count(*) FROM option_quotes"), 0);
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs WHERE status = 'failed'"),
        1
    );
}

#[test]
fn a_dry_run_of_the_pipeline_sees_each_jobs_output_and_keeps_none() {
    let desk = Desk::new();
    let out = desk.run_ok(&["run", "daily", "--as-of", "2025-03-14", "--dry-run"]);
    let jobs = optdesk::jobs::JOBS.iter().filter(|j| j.daily).count();
    assert_eq!(
        out.matches("dry run, nothing written").count(),
        jobs,
        "every job ran: {out}"
    );
    for table in [
        "option_quotes",
        "underlying_bars",
        "option_analytics",
        "vol_metrics",
        "correlation",
    ] {
        assert_eq!(
            desk.count(&format!("SELECT count(*) FROM {table}")),
            0,
            "{table}"
        );
    }
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs WHERE dry_run AND status = 'ok'"),
        jobs as i64
    );
}

#[test]
fn an_intraday_slot_keeps_the_daily_snapshot() {
    let desk = Desk::new();
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-14"]);
    let daily = desk.fingerprint(false);
    for job in ["fetch_chains", "compute_vol", "correlation"] {
        desk.run_ok(&[
            "job",
            "run",
            job,
            "--as-of",
            "2025-03-14",
            "--slot",
            "15:30",
        ]);
    }
    assert_eq!(
        desk.count("SELECT count(DISTINCT quote_time) FROM option_quotes"),
        2
    );
    assert_eq!(
        desk.count("SELECT count(DISTINCT quote_time) FROM vol_metrics"),
        2
    );
    // The 09:35 rows are untouched.
    let c = desk.open();
    let n_daily: i64 = c
        .query_row(
            "SELECT count(*) FROM option_analytics WHERE quote_time = TIMESTAMP '2025-03-14 09:35:00'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(c);
    let before = daily.iter().find(|t| t.0 == "option_analytics").unwrap().1;
    assert_eq!(n_daily, before);
    let o = desk.run(&[
        "job",
        "run",
        "fetch_chains",
        "--as-of",
        "2025-03-14",
        "--slot",
        "08:00",
    ]);
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("outside the session"),
        "{}",
        common::stderr(&o)
    );
}

/// A store of two sessions, closed.
fn two_session_desk() -> Desk {
    let desk = Desk::new();
    for d in ["2025-03-13", "2025-03-14"] {
        desk.run_ok(&["run", "daily", "--as-of", d]);
    }
    desk
}

#[test]
fn check_deep_names_the_table_whose_blocks_are_damaged() {
    let desk = two_session_desk();
    let out = desk.run_ok(&["check"]);
    assert!(
        out.contains("not verified: block checksums") && out.contains("check --deep"),
        "plain check says what it did not verify: {out}"
    );
    let out = desk.run_ok(&["check", "--deep"]);
    assert!(
        out.contains("block checksums verified") && out.contains("reconciled to the cent"),
        "{out}"
    );

    // Zero 1 MiB in the middle of the file: table data, well past DuckDB's three 4 KiB
    // header blocks (DuckDB's blocks are 256 KiB; the quotes fill most of the file).
    let len = std::fs::metadata(desk.db()).unwrap().len();
    let start = (len / 2) & !(256 * 1024 - 1);
    assert!(start > 3 * 4096 && start + (1 << 20) < len, "{len}");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(desk.db())
            .unwrap();
        f.seek(SeekFrom::Start(start)).unwrap();
        f.write_all(&vec![0u8; 1 << 20]).unwrap();
    }
    let o = desk.run(&["check", "--deep"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{}{err}", stdout(&o));
    let damaged: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("damaged: table "))
        .collect();
    assert!(!damaged.is_empty(), "names a table: {err}");
    assert!(
        damaged.iter().all(|l| l.contains("checksum")),
        "with DuckDB's error: {err}"
    );
    assert!(
        err.contains("optdesk restore"),
        "says how to recover: {err}"
    );
    // A damaged store is never saved as a good backup.
    let bk = desk.dir.path().join("bk");
    let o = desk.run(&["backup", bk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("damaged")
            && damaged.iter().all(|d| {
                let table = d.split(':').next().unwrap();
                stderr(&o).contains(table)
            }),
        "{}",
        stderr(&o)
    );
    assert!(!bk.exists(), "no backup folder left behind");
}

#[test]
fn backup_then_restore_gives_the_same_store() {
    let desk = two_session_desk();
    let original = desk.fingerprint(true);
    let bk = desk.dir.path().join("backups").join("2025-03-14");
    let bk_s = bk.to_str().unwrap();
    let out = desk.run_ok(&["backup", bk_s]);
    assert!(
        out.contains("schema version") && out.contains("read back whole"),
        "{out}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bk.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["schema_version"].as_i64(),
        Some(optdesk::store::latest_schema_version())
    );
    assert_eq!(manifest["files"][0]["sha256"].as_str().unwrap().len(), 64);

    // A backup folder is never overwritten, an existing store never replaced silently.
    let o = desk.run(&["backup", bk_s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    let o = desk.run(&["restore", bk_s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));

    // Lose the store; restore it.
    std::fs::rename(desk.db(), desk.dir.path().join("lost.duckdb")).unwrap();
    let out = desk.run_ok(&["restore", bk_s]);
    assert!(out.contains("checksums verified"), "{out}");
    assert_eq!(
        desk.fingerprint(true),
        original,
        "every row of every table, job_runs and schema_migrations included"
    );
    assert!(desk
        .run_ok(&["check", "--deep"])
        .contains("reconciled to the cent"));

    // A damaged backup is refused before anything is touched.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(bk.join("optdesk.duckdb"))
            .unwrap();
        f.seek(SeekFrom::Start(300_000)).unwrap();
        f.write_all(b"damage").unwrap();
    }
    let o = desk.run(&["restore", bk_s, "--force"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("does not match its checksum"),
        "{}",
        stderr(&o)
    );
    assert_eq!(desk.fingerprint(true), original, "the store is untouched");
}

#[test]
fn db_naming_a_csv_parquet_memory_or_a_folder_is_refused_and_nothing_is_written() {
    let desk = Desk::new();
    let dir = desk.dir.path();
    let csv = dir.join("quotes.csv");
    std::fs::write(&csv, "symbol,price\nSPY,500\n").unwrap();
    let parquet = dir.join("quotes.parquet");
    std::fs::write(&parquet, b"PAR1\x15\x04\x15\x10\x15\x14PAR1").unwrap();
    let folder = dir.join("a-folder");
    std::fs::create_dir(&folder).unwrap();
    let cases = [
        (csv.to_string_lossy().to_string(), "not a DuckDB file"),
        (parquet.to_string_lossy().to_string(), "a Parquet file"),
        (":memory:".to_string(), "in-memory"),
        (folder.to_string_lossy().to_string(), "a folder"),
    ];
    for (db, why) in &cases {
        let before = std::fs::read(db).ok();
        for args in [
            &["run", "daily", "--as-of", "2025-03-14"][..],
            &["status"][..],
            &["check"][..],
        ] {
            let o = desk
                .cmd()
                .env("OPTDESK_DB", db)
                .args(args)
                .output()
                .unwrap();
            let e = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{db} {args:?}: {e}");
            assert!(
                e.contains(why) && e.contains("must name a DuckDB store file"),
                "{db} {args:?}: {e}"
            );
            assert!(!stdout(&o).contains(" ok"), "{}", stdout(&o));
        }
        assert_eq!(before, std::fs::read(db).ok(), "{db} was changed");
        assert!(!dir.join(format!("{db}.lock")).exists(), "{db}.lock left");
    }
    assert!(!dir.join(":memory:").exists() && !dir.join(":memory:.lock").exists());
    assert!(!desk.db().exists(), "no store was created");
}

#[test]
fn check_on_a_store_left_between_migrations_names_the_version_and_the_fix() {
    let desk = Desk::new();
    {
        // A run killed after migration 3 of the schema.
        let c = duckdb::Connection::open(desk.db()).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name VARCHAR NOT NULL,
             applied_at TIMESTAMP NOT NULL, optdesk_version VARCHAR NOT NULL)",
        )
        .unwrap();
        for m in optdesk::store::MIGRATIONS.iter().filter(|m| m.version <= 3) {
            c.execute_batch(m.sql).unwrap();
            c.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, now()::TIMESTAMP, 'old')",
                duckdb::params![m.version, m.name],
            )
            .unwrap();
        }
    }
    let o = desk.run(&["check"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    let latest = optdesk::store::latest_schema_version();
    assert!(
        e.contains(&format!("schema version 3, this optdesk expects {latest}"))
            && e.contains("optdesk run daily")
            && !e.contains("does not exist"),
        "{e}"
    );
    // The fix works: a writing command finishes the migration, then check passes.
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-14"]);
    let out = desk.run_ok(&["check"]);
    assert!(out.contains("reconciled"), "{out}");
}

#[test]
fn the_calendars_last_session_lists_the_usual_expiries_and_runs_whole() {
    // Near the end of the calendar (2035) the simulator listed only 0DTE series, and
    // correlation failed with "run compute_vol for this session first".
    let desk = Desk::new();
    let out = desk.run_ok(&["run", "daily", "--as-of", "2035-12-31"]);
    assert!(out.contains("0 failed"), "{out}");
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM job_runs WHERE as_of = DATE '2035-12-31' AND status <> 'ok'"
        ),
        0
    );
    // Weeklies into January 2036 and monthlies beyond, as on any other day.
    let expiries = desk.count(
        "SELECT count(DISTINCT expiry) FROM option_quotes
         WHERE as_of = DATE '2035-12-31' AND underlying = 'SPY' AND expiry > DATE '2035-12-31'",
    );
    assert!(expiries >= 5, "{expiries} expiries after the day");
    assert!(
        desk.count(
            "SELECT count(*) FROM option_quotes WHERE as_of = DATE '2035-12-31' AND underlying = 'SPY'
             AND expiry BETWEEN DATE '2036-01-20' AND DATE '2036-02-20'"
        ) > 0,
        "an expiry near 30 days"
    );
}

/// The audit trail is byte-reproducible: the same session on two fresh stores stores the
/// same `signals` rows, the `numbers` JSON included (it was built from a HashMap, whose
/// key order changes from run to run).
#[test]
fn the_same_session_stores_the_same_signals_bytes() {
    let rows = |desk: &Desk| -> Vec<String> {
        desk.run_ok(&["run", "daily", "--as-of", "2024-01-02"]);
        let c = desk.open();
        let mut s = c
            .prepare(
                "SELECT x::VARCHAR AS r FROM (SELECT * EXCLUDE (run_id) FROM signals) x ORDER BY r",
            )
            .unwrap();
        s.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    let (a, b) = (rows(&Desk::new()), rows(&Desk::new()));
    assert!(
        a.iter().filter(|r| r.contains("propose")).count() > 0,
        "the session proposes something: {a:?}"
    );
    assert_eq!(a, b, "two fresh stores, the same signals");
}

/// `nan` and `inf` are numbers to TOML but not to a risk limit or a budget: the file and
/// key are named at load and `run daily` stops before any job runs.
#[test]
fn nan_or_inf_in_a_config_is_refused_before_any_job_runs() {
    let cases = [
        (
            "select_trades.toml",
            "vix_jump_points = 3.0",
            "vix_jump_points = nan",
            "risk.vix_jump_points = NaN",
        ),
        (
            "strategies/dispersion.toml",
            "capital = 100000.0",
            "capital = inf",
            "params.capital = inf",
        ),
        (
            "strategies/cash_secured_put.toml",
            "capital_per_ticker = 60000.0",
            "capital_per_ticker = +inf",
            "params.capital_per_ticker = inf",
        ),
    ];
    for (file, from, to, key) in cases {
        let desk = Desk::new();
        let path = desk.jobs.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has {from}");
        desk.write_config(file, &text.replacen(from, to, 1));
        let o = desk.run(&["run", "daily", "--as-of", "2024-01-02"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{file}: {err}");
        assert!(
            err.contains(file) && err.contains(key) && err.contains("finite"),
            "{file}: names the file and the key: {err}"
        );
        assert!(
            !stdout(&o).contains("fetch_chains"),
            "no job ran: {}",
            stdout(&o)
        );
        assert!(!desk.db().exists(), "{file}: the store is not even created");
    }
}

/// A count limit of 0 is out of range (the kill switch is the way to stop entries): the
/// file and key are named at load and nothing runs.
#[test]
fn a_max_open_limit_of_zero_is_refused_before_any_job_runs() {
    for (file, from, to, key) in [
        (
            "select_trades.toml",
            "max_open_per_underlying = 4",
            "max_open_per_underlying = 0",
            "risk.max_open_per_underlying = 0",
        ),
        (
            "strategies/call_premium.toml",
            "max_open_per_ticker = 2",
            "max_open_per_ticker = 0",
            "params.max_open_per_ticker = 0",
        ),
    ] {
        let desk = Desk::new();
        let text = std::fs::read_to_string(desk.jobs.join(file)).unwrap();
        assert!(text.contains(from), "{file} has {from}");
        desk.write_config(file, &text.replacen(from, to, 1));
        let o = desk.run(&["run", "daily", "--as-of", "2024-01-02"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{file}: {err}");
        assert!(
            err.contains(file) && err.contains(key) && err.contains("at least 1"),
            "{file}: names the file and the key: {err}"
        );
        assert!(!desk.db().exists(), "{file}: nothing ran");
    }
}

#[test]
fn a_symbol_the_source_does_not_quote_is_refused_at_load_naming_file_and_key() {
    let cases = [
        (
            "strategies/call_premium.toml",
            r#"tickers = ["SPY", "VOO", "VTI", "QQQ"]"#,
            r#"tickers = ["SPY", "NOPE"]"#,
            "params.tickers: 'NOPE' not quoted by the sim source",
        ),
        (
            "strategies/dispersion.toml",
            r#""GOOGL", "GOOG"]"#,
            r#""GOOGL", "NOPE"]"#,
            "params.components: 'NOPE' not quoted by the sim source",
        ),
    ];
    for (file, from, to, msg) in cases {
        let desk = Desk::new();
        let text = std::fs::read_to_string(desk.jobs.join(file)).unwrap();
        assert!(text.contains(from), "{file} has {from}");
        desk.write_config(file, &text.replacen(from, to, 1));
        let o = desk.run(&["run", "daily", "--as-of", "2024-01-02"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{file}: {err}");
        assert!(err.contains(file) && err.contains(msg), "{file}: {err}");
        assert!(
            !desk.db().exists(),
            "{file}: nothing ran, the store is not even created"
        );
    }
    // fetch_chains' own symbols too.
    let desk = Desk::new();
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nsymbols = [\"SPY\", \"NOPE\"]\n",
    );
    let o = desk.run(&["job", "run", "fetch_chains", "--as-of", "2024-01-02"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("params.symbols: 'NOPE' not quoted"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn prune_keeps_every_quote_a_decision_or_report_used_and_shrinks_the_store() {
    let desk = Desk::new();
    for d in ["2025-03-12", "2025-03-13", "2025-03-14"] {
        desk.run_ok(&["run", "daily", "--as-of", d]);
    }
    // Every entry's chain slice was recorded as scanned by its strategy.
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM order_legs l WHERE intent = 'entry' AND kind = 'option'
             AND NOT EXISTS (SELECT 1 FROM scanned_chains s WHERE s.as_of = l.as_of
                 AND s.strategy = l.strategy AND s.underlying = l.underlying AND s.expiry = l.expiry)"
        ),
        0
    );
    assert!(desk.count("SELECT count(*) FROM order_legs WHERE intent = 'entry'") > 0);
    let kept_sql = "SELECT count(*) FROM option_quotes q WHERE q.contract IN (SELECT instrument FROM fills)
         OR EXISTS (SELECT 1 FROM scanned_chains s WHERE s.as_of = q.as_of AND s.quote_time = q.quote_time
                    AND s.underlying = q.underlying AND s.expiry = q.expiry)";
    let kept = desk.count(kept_sql);
    let last_day = desk.count("SELECT count(*) FROM option_quotes WHERE as_of = DATE '2025-03-14'");
    let others = |d: &Desk| {
        let mut f = d.fingerprint(false);
        f.retain(|(t, _, _)| {
            !matches!(t.as_str(), "option_quotes" | "option_analytics" | "prunes")
        });
        f
    };
    let before = others(&desk);
    let report = |name: &str| {
        let out = desk.dir.path().join(name);
        desk.run_ok(&[
            "report",
            "--as-of",
            "2025-03-12",
            "--out",
            out.to_str().unwrap(),
        ]);
        std::fs::read(out).unwrap()
    };
    let report_before = report("before.html");
    let size = || std::fs::metadata(desk.db()).unwrap().len();
    let size_before = size();

    let out = desk.run_ok(&["prune", "--quotes-before", "2025-03-14", "--dry-run"]);
    assert!(
        out.contains("would delete") && out.contains("dry run"),
        "{out}"
    );
    assert_eq!(desk.count("SELECT count(*) FROM prunes"), 0);

    let o = desk.run(&["prune", "--quotes-before", "2025-03-17"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("after the last stored session (2025-03-14)"),
        "{}",
        stderr(&o)
    );

    let out = desk.run_ok(&["prune", "--quotes-before", "2025-03-14"]);
    assert!(
        out.contains("deleted") && out.contains("read back whole"),
        "{out}"
    );
    assert!(size() * 2 < size_before, "{} -> {}", size_before, size());
    assert_eq!(desk.count("SELECT count(*) FROM prunes"), 1);
    // What was used is all there; the last session is whole; the rest went.
    assert_eq!(desk.count(kept_sql), kept);
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE as_of = DATE '2025-03-14'"),
        last_day
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes"),
        desk.count("SELECT count(*) FROM option_analytics")
    );
    assert_eq!(others(&desk), before, "no other table changed");
    assert_eq!(
        report("after.html"),
        report_before,
        "an old day's report is unchanged"
    );
    assert!(desk
        .run_ok(&["check", "--deep"])
        .contains("reconciled to the cent"));
    assert!(desk
        .run_ok(&["status"])
        .contains("quotes before 2025-03-14 pruned"));

    // A pruned session is not recomputed from its thinned chain.
    let out = desk.run_ok(&["job", "run", "compute_vol", "--as-of", "2025-03-12"]);
    assert!(
        out.contains("skipped") && out.contains("were pruned"),
        "{out}"
    );
    assert_eq!(others(&desk).len(), before.len());
    // The desk goes on.
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-17"]);
    assert!(desk.run_ok(&["check"]).contains("reconciled to the cent"));
}
