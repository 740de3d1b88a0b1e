//! The drills (issue 10): kill -9 at random points of `run daily`, and two writers at
//! once, each followed by the checks a careful user would make.
//!
//! * `kill_9_at_random_points_of_run_daily`: `OPTDESK_DRILL_KILLS` iterations (default
//!   3; the full drill is `OPTDESK_DRILL_KILLS=100 cargo test --release --test drills --
//!   --nocapture`). Each starts from a copy of a store that holds every session before
//!   one of `DRILL_DAYS` (in turn: a day that settles an expiry, one that enters new
//!   trades, one that exits), starts `optdesk run daily --as-of` that day, sends
//!   SIGKILL after a delay drawn from a seeded xorshift (the iteration number is the
//!   seed) over the duration of a clean run of that day, then asserts: the store is at a job boundary, or holds an order intent the next run
//!   completes (`check` names it); `optdesk check` reconciles to the cent; no order leg,
//!   fill, broker order or execution is recorded twice; and the re-run's store equals a
//!   clean run's, table by table.
//! * `two_writers_at_once`: two `run daily` on one store at the same moment.
//!
//! "Equal" compares every row of every table except `job_runs` and
//! `schema_migrations` (when and by which version something ran), the `run_id` column
//! (which run wrote a row), and `WHEN_COLUMNS` below.

mod common;
use common::{stderr, stdout, Desk};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Columns that record when, or in which folder, something ran: left out of the
/// comparison. (`reports.eml_path` is the absolute path of the report file, and
/// `reports.message_id` carries a hash of the configuration folder: both name each
/// desk's own temporary folder.)
const WHEN_COLUMNS: &[(&str, &str)] = &[
    ("reports", "created_at"),
    ("reports", "eml_path"),
    ("reports", "message_id"),
    ("alerts", "created_at"),
];

type Fingerprint = Vec<(String, i64, String)>;

/// Row count and an order-independent hash of every table, as `Desk::fingerprint(false)`
/// but without `WHEN_COLUMNS`.
fn fingerprint(desk: &Desk) -> Fingerprint {
    let c = desk.open();
    let mut s = c
        .prepare(
            "SELECT table_name, string_agg('\"' || column_name || '\"', ', ' ORDER BY ordinal_position)
             FROM information_schema.columns c
             JOIN information_schema.tables t USING (table_schema, table_name)
             WHERE t.table_type = 'BASE TABLE' AND table_name NOT IN ('job_runs', 'schema_migrations')
               AND column_name <> 'run_id'
             GROUP BY table_name ORDER BY table_name",
        )
        .unwrap();
    let tables: Vec<(String, String)> = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    tables
        .into_iter()
        .map(|(t, cols)| {
            let cols: Vec<&str> = cols
                .split(", ")
                .filter(|col| {
                    !WHEN_COLUMNS
                        .iter()
                        .any(|(wt, wc)| *wt == t && col.trim_matches('"') == *wc)
                })
                .collect();
            let (n, h): (i64, String) = c
                .query_row(
                    &format!(
                        "SELECT count(*), coalesce(sum(hash(x)::HUGEINT), 0)::VARCHAR FROM (SELECT {} FROM \"{t}\") x",
                        cols.join(", ")
                    ),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            (t, n, h)
        })
        .collect()
}

/// The tables whose rows differ between two fingerprints, for the failure message.
fn differing(a: &Fingerprint, b: &Fingerprint) -> Vec<String> {
    let m: BTreeMap<&str, (i64, &str)> = b
        .iter()
        .map(|(t, n, h)| (t.as_str(), (*n, h.as_str())))
        .collect();
    let mut out: Vec<String> = a
        .iter()
        .filter(|(t, n, h)| m.get(t.as_str()) != Some(&(*n, h.as_str())))
        .map(|(t, n, _)| {
            format!(
                "{t} ({n} rows vs {})",
                m.get(t.as_str()).map_or(-1, |x| x.0)
            )
        })
        .collect();
    if a.len() != b.len() {
        out.push(format!("{} tables vs {}", a.len(), b.len()));
    }
    out
}

/// Records written twice: order legs by (order_ref, leg), fills and the paper broker's
/// executions by exec_id, the broker's orders by order_ref, order events by (ref, seq).
fn duplicates(desk: &Desk) -> Vec<(String, i64)> {
    [
        ("order_legs", "order_ref, leg"),
        ("order_events", "order_ref, seq"),
        ("fills", "exec_id"),
        ("paper_orders", "order_ref"),
        ("paper_executions", "exec_id"),
        ("cash_ledger", "reference, kind"),
    ]
    .iter()
    .map(|(t, key)| {
        (
            format!("{t} by ({key})"),
            desk.count(&format!(
                "SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT {key} FROM {t})) FROM {t}"
            )),
        )
    })
    .collect()
}

fn assert_no_duplicates(desk: &Desk, when: &str) {
    for (what, extra) in duplicates(desk) {
        assert_eq!(extra, 0, "{when}: {extra} duplicate rows in {what}");
    }
}

fn assert_check_passes(desk: &Desk, when: &str) -> String {
    let o = desk.run(&["check"]);
    let out = stdout(&o);
    assert!(
        o.status.success() && out.contains("reconciled to the cent"),
        "{when}: check failed (exit {:?}): {out}\n{}",
        o.status.code(),
        stderr(&o)
    );
    out
}

/// xorshift64*: a small deterministic generator, seeded by the iteration number.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        let mut x = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
        for _ in 0..4 {
            x.next();
        }
        x
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A desk holding a copy of `base`'s store (the store file only; DuckDB checkpoints it
/// when a run exits, so there is no WAL beside it).
fn desk_from(base: &Desk) -> Desk {
    let desk = Desk::new();
    std::fs::copy(base.db(), desk.db()).unwrap();
    let wal = base.db().with_extension("duckdb.wal");
    if wal.exists() {
        std::fs::copy(&wal, desk.db().with_extension("duckdb.wal")).unwrap();
    }
    desk
}

/// Start `run daily --as-of day`, its stdout lines collected as they come.
fn start_run(desk: &Desk, day: &str) -> (std::process::Child, Arc<Mutex<Vec<String>>>) {
    let mut child = desk
        .cmd()
        .args(["run", "daily", "--as-of", day])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = child.stdout.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            match l {
                Ok(l) => sink.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    });
    (child, lines)
}

/// A session the drill kills, on a copy of the store of every session before it.
struct DrillDay {
    day: String,
    base: Desk,
    /// How long a clean run of the day took: the kills are spread over it.
    duration: Duration,
    /// The store after a clean run: every re-run must equal it.
    reference: Fingerprint,
    /// The store before the run and after each job of the pipeline.
    boundaries: Vec<Fingerprint>,
}

fn drill_day(day: &str, base: Desk, what: &str, sql: &str) -> DrillDay {
    let clean = desk_from(&base);
    let t0 = Instant::now();
    let out = clean.run_ok(&["run", "daily", "--as-of", day]);
    let duration = t0.elapsed();
    assert!(out.contains("8 ok"), "{out}");
    let reference = fingerprint(&clean);
    assert_check_passes(&clean, "the clean run");
    assert_no_duplicates(&clean, "the clean run");
    assert!(
        clean.count(&sql.replace("DAY", day)) > 0,
        "{day} has no {what}: the drill would test less"
    );
    // Running twice equals running once (the comparison the drill relies on).
    clean.run_ok(&["run", "daily", "--as-of", day]);
    let again = fingerprint(&clean);
    assert!(
        again == reference,
        "a re-run of {day} changed {:?}",
        differing(&again, &reference)
    );
    let stepped = desk_from(&base);
    let mut boundaries: Vec<Fingerprint> = vec![fingerprint(&stepped)];
    for j in optdesk::jobs::JOBS.iter().filter(|j| j.daily) {
        stepped.run_ok(&["job", "run", j.name, "--as-of", day]);
        boundaries.push(fingerprint(&stepped));
    }
    assert!(
        *boundaries.last().unwrap() == reference,
        "{day} job by job differs from run daily in {:?}",
        differing(boundaries.last().unwrap(), &reference)
    );
    println!(
        "drill: {day} ({what}), clean run {:.2} s",
        duration.as_secs_f64()
    );
    DrillDay {
        day: day.to_string(),
        base,
        duration,
        reference,
        boundaries,
    }
}

/// The drill's sessions: an expiry settled, new entries, exits. Their stores come from
/// one run of every session from 2024-06-03 on.
const DRILL_DAYS: &[(&str, &str, &str)] = &[
    (
        "2024-07-08",
        "expiry settlements",
        "SELECT count(*) FROM fills WHERE as_of = DATE 'DAY' AND order_ref LIKE 'expire:%'",
    ),
    (
        "2024-07-10",
        "entries",
        "SELECT count(*) FROM fills WHERE as_of = DATE 'DAY' AND cash_kind = 'premium' AND order_ref NOT LIKE 'exit:%'",
    ),
    (
        "2024-07-11",
        "exits",
        "SELECT count(*) FROM fills WHERE as_of = DATE 'DAY' AND order_ref LIKE 'exit:%'",
    ),
];

fn drill_days(n: usize) -> Vec<DrillDay> {
    let d = |s: &str| s.parse::<chrono::NaiveDate>().unwrap();
    let wanted = &DRILL_DAYS[..n.clamp(1, DRILL_DAYS.len())];
    let last = d(wanted.last().unwrap().0);
    let building = Desk::new();
    let mut days = Vec::new();
    for s in optdesk::calendar::sessions(d("2024-06-03"), last).unwrap() {
        let date = s.date.to_string();
        if let Some((day, what, sql)) = wanted.iter().find(|w| w.0 == date) {
            days.push(drill_day(day, desk_from(&building), what, sql));
        }
        if s.date < last {
            building.run_ok(&["run", "daily", "--as-of", &date]);
        }
    }
    days
}

#[test]
fn kill_9_at_random_points_of_run_daily() {
    let kills: u64 = std::env::var("OPTDESK_DRILL_KILLS")
        .ok()
        .map(|v| v.parse().expect("OPTDESK_DRILL_KILLS is a number"))
        .unwrap_or(3);
    let started = Instant::now();
    let days = drill_days(kills as usize);
    println!(
        "drill: {kills} kills, setup {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let jobs = optdesk::jobs::JOBS.iter().filter(|j| j.daily).count();
    let mut landed: BTreeMap<(usize, String), u32> = BTreeMap::new();
    let mut open_orders = 0;
    let mut failures: Vec<String> = Vec::new();
    for i in 0..kills {
        let day = &days[i as usize % days.len()];
        let desk = desk_from(&day.base);
        let span = day.duration.as_millis() as u64;
        let delay = Duration::from_millis(XorShift::new(i).next() % span.max(1));
        let (mut child, lines) = start_run(&desk, &day.day);
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap(); // SIGKILL: no destructor, no rollback
        }
        let status = child.wait().unwrap();
        let printed = lines.lock().unwrap().clone();

        // Where it landed: the jobs recorded for the day (each job's job_runs row is
        // written in its own transaction), or before anything was printed.
        let done = desk.count(&format!(
            "SELECT count(*) FROM job_runs WHERE as_of = DATE '{}'",
            day.day
        )) as usize;
        let (rank, place) = if finished {
            (jobs + 2, format!("none (the run had finished: {status})"))
        } else if printed.is_empty() {
            (0, "startup (config, lock, open)".to_string())
        } else if done < jobs {
            (
                done + 1,
                format!(
                    "{} (job {})",
                    optdesk::jobs::JOBS
                        .iter()
                        .filter(|j| j.daily)
                        .nth(done)
                        .map_or("?", |j| j.name),
                    done + 1
                ),
            )
        } else {
            (jobs + 1, "after the last job".to_string())
        };
        let when = format!(
            "kill {i} of {} at {} ms in {place}",
            day.day,
            delay.as_millis()
        );

        let job = place.split(" (").next().unwrap().to_string();
        *landed.entry((rank, job)).or_default() += 1;
        // Every kill is checked; a failure is counted and named, and the drill goes on.
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let out = assert_check_passes(&desk, &when);
            assert_no_duplicates(&desk, &when);
            let fp = fingerprint(&desk);
            let completes = out.contains("the next run completes it");
            let boundary = &day.boundaries[done.min(jobs)];
            assert!(
                fp == *boundary || completes,
                "{when}: the store is neither at the boundary after its {done} recorded jobs nor holds \
                 an order the next run completes; it differs in {:?}",
                differing(&fp, boundary)
            );

            let out = desk.run_ok(&["run", "daily", "--as-of", &day.day]);
            assert!(out.contains("8 ok"), "{when}: the re-run: {out}");
            assert_check_passes(&desk, &format!("{when}, after the re-run"));
            assert_no_duplicates(&desk, &format!("{when}, after the re-run"));
            let fp = fingerprint(&desk);
            assert!(
                fp == day.reference,
                "{when}: the re-run differs from a clean run in {:?}",
                differing(&fp, &day.reference)
            );
            completes
        }));
        match checked {
            Ok(completes) => {
                open_orders += usize::from(completes);
                println!(
                    "drill: {when}: {}check ok, no duplicates, re-run = clean run",
                    if completes {
                        "an open order the re-run completed; "
                    } else {
                        "at a job boundary; "
                    }
                );
            }
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                println!("drill: FAILED {why}");
                failures.push(why);
            }
        }
    }
    let spread: Vec<String> = landed
        .iter()
        .map(|((_, k), v)| format!("{k} {v}"))
        .collect();
    println!(
        "drill summary: {kills} kills of `run daily` ({}), {} failures; landed in: {}; \
         {open_orders} left an order the re-run completed; {:.0} s in all",
        days.iter()
            .map(|d| format!("{} clean {:.1} s", d.day, d.duration.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        failures.len(),
        spread.join(", "),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {kills} kills failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Start `run daily --as-of day` with its output collected.
fn spawn_run(desk: &Desk, day: &str) -> std::process::Child {
    desk.cmd()
        .args(["run", "daily", "--as-of", day])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Each writer either succeeds or fails with the documented lock message; returns
/// which succeeded.
fn outcomes(children: Vec<(&str, std::process::Child)>) -> Vec<(String, bool)> {
    children
        .into_iter()
        .map(|(day, c)| {
            let o = c.wait_with_output().unwrap();
            let (out, err) = (stdout(&o), stderr(&o));
            if o.status.success() {
                assert!(out.contains("8 ok"), "{day}: {out}");
            } else {
                assert!(
                    err.contains("is locked by another writer")
                        && err.contains("pid")
                        && err.contains("desk.lock_timeout_secs"),
                    "{day} failed, and not for the lock: {out}\n{err}"
                );
            }
            (day.to_string(), o.status.success())
        })
        .collect()
}

#[test]
fn two_writers_at_once() {
    // The same session twice, at once, on a store neither has created yet: the second
    // waits for the first (desk.lock_timeout_secs = 30), then re-runs the day.
    let clean = Desk::new();
    clean.run_ok(&["run", "daily", "--as-of", "2024-06-04"]);
    let reference = fingerprint(&clean);

    let desk = Desk::new();
    let both = outcomes(vec![
        ("2024-06-04", spawn_run(&desk, "2024-06-04")),
        ("2024-06-04", spawn_run(&desk, "2024-06-04")),
    ]);
    let ok = both.iter().filter(|x| x.1).count() as i64;
    assert!(ok >= 1, "{both:?}");
    assert_check_passes(&desk, "two writers of one session");
    assert_no_duplicates(&desk, "two writers of one session");
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs WHERE status = 'ok'"),
        ok * optdesk::jobs::JOBS.iter().filter(|j| j.daily).count() as i64,
        "every job of each successful run recorded once"
    );
    let fp = fingerprint(&desk);
    assert!(
        fp == reference,
        "two writers differ from one run in {:?}",
        differing(&fp, &reference)
    );

    // Two different sessions at once with a 1 s lock timeout: the one that loses the
    // race fails naming the holder and writes nothing; it then runs normally.
    desk.write_config("desk.toml", "[desk]\nlock_timeout_secs = 1\n");
    let before = desk.count("SELECT count(*) FROM job_runs");
    let both = outcomes(vec![
        ("2024-06-05", spawn_run(&desk, "2024-06-05")),
        ("2024-06-06", spawn_run(&desk, "2024-06-06")),
    ]);
    let ok = both.iter().filter(|x| x.1).count() as i64;
    assert!(ok >= 1, "{both:?}");
    assert_eq!(
        desk.count("SELECT count(*) FROM job_runs") - before,
        ok * optdesk::jobs::JOBS.iter().filter(|j| j.daily).count() as i64,
        "a writer that did not get the lock wrote nothing: {both:?}"
    );
    assert_check_passes(&desk, "two writers of two sessions");
    assert_no_duplicates(&desk, "two writers of two sessions");
    desk.write_config("desk.toml", "[desk]\nlock_timeout_secs = 30\n");
    for (day, succeeded) in &both {
        if !succeeded {
            desk.run_ok(&["run", "daily", "--as-of", day]);
        }
    }
    assert_check_passes(&desk, "after the loser ran");
    assert_no_duplicates(&desk, "after the loser ran");
    for day in ["2024-06-05", "2024-06-06"] {
        assert_eq!(
            desk.count(&format!(
                "SELECT count(DISTINCT job) FROM job_runs WHERE as_of = DATE '{day}' AND status = 'ok'"
            )),
            optdesk::jobs::JOBS.iter().filter(|j| j.daily).count() as i64,
            "{day} ran"
        );
    }
}

/// Found by the kill drill (kill 55 of 100, 2024-07-10, in select_trades): a run killed
/// after the broker accepted an entry is continued by the next run, which completes the
/// order but then proposes from a book that already holds it, so the strategy's signal
/// for the order it made is rewritten as a pass ("3 trades open (at most 3)"): the
/// re-run's `signals` differ from a clean run's. Ignored until fixed; run with
/// `cargo test --release --test drills -- --ignored`.
#[test]
fn a_run_killed_after_an_entry_was_sent_reruns_to_the_clean_days_signals() {
    let days = drill_days(2);
    let day = &days[1];
    let desk = desk_from(&day.base);
    let o = desk
        .cmd()
        .args(["run", "daily", "--as-of", &day.day])
        .env("OPTDESK_FAILPOINT", "select_trades:after_submit:abort")
        .output()
        .unwrap();
    assert!(!o.status.success(), "the run was killed");
    assert!(assert_check_passes(&desk, "after the crash").contains("the next run completes it"));
    desk.run_ok(&["run", "daily", "--as-of", &day.day]);
    assert_no_duplicates(&desk, "after the re-run");
    let fp = fingerprint(&desk);
    assert!(
        fp == day.reference,
        "the re-run differs from a clean run in {:?}",
        differing(&fp, &day.reference)
    );
}
