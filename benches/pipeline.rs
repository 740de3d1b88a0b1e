//! The daily pipeline over consecutive sessions, as a backtest runs it: every job of
//! `run daily` in order (`prepare_all` + `run_sequence`, the `Quiet` observer) on a
//! scratch store, in-process, for (a) the full default universe and (b) the symbols the
//! enabled strategies and the correlation job use, expiries out to 70 days. Prints
//! sessions/s, quotes/s and each job's share of the time, then runs the same sessions
//! through a loop of `optdesk run daily` processes for the ratio, and a fingerprint of
//! each store (so a change can be shown to leave every row as it was).
//!
//! `cargo bench --bench pipeline`; `PIPELINE_SESSIONS=N` (default 20) sessions from
//! `PIPELINE_FROM` (default 2025-03-03); `PIPELINE_PROCESS=0` skips the process loop;
//! `PIPELINE_CASES=full|limited|full,limited`; `PIPELINE_BIN` names the optdesk binary
//! the process loop runs.

use chrono::NaiveDate;
use optdesk::config::Config;
use optdesk::jobs::{self, RunRequest, Trigger};
use optdesk::store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::date;

/// The strategies' tickers and the correlation job's components (it needs
/// `min_components` of them for a value, which the dispersion strategy trades on).
/// The top 21 components by weight: a few more than the default min_components (20).
const LIMITED: &[&str] = &[
    "SPY", "VOO", "VTI", "QQQ", "AAPL", "NVDA", "MSFT", "AMZN", "AVGO", "META", "TSLA", "COST",
    "GOOGL", "GOOG", "NFLX", "TMUS", "CSCO", "PLTR", "AMD", "PEP", "LIN", "ADBE", "ISRG", "INTU",
    "QCOM",
];

/// A configuration folder: the repository's jobs/ and data/*.csv, with fetch_chains'
/// symbols and max_expiry_days replaced when `limited`.
fn config_dir(root: &Path, limited: bool) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                let sub = to.join(e.file_name());
                std::fs::create_dir_all(&sub).unwrap();
                for f in std::fs::read_dir(&p).unwrap() {
                    let f = f.unwrap().path();
                    std::fs::copy(&f, sub.join(f.file_name().unwrap())).unwrap();
                }
            } else if p.extension().is_some_and(|x| x == "toml" || x == "csv") {
                std::fs::copy(&p, to.join(e.file_name())).unwrap();
            }
        }
    };
    copy(&src.join("jobs"), &root.join("jobs"));
    copy(&src.join("data"), &root.join("data"));
    if limited {
        let f = root.join("jobs/fetch_chains.toml");
        let text = std::fs::read_to_string(&f).unwrap();
        let list: Vec<String> = LIMITED.iter().map(|s| format!("\"{s}\"")).collect();
        let text = text
            .replace("symbols = []", &format!("symbols = [{}]", list.join(", ")))
            .replace("max_expiry_days = 400", "max_expiry_days = 70");
        assert!(text.contains("max_expiry_days = 70") && text.contains("\"SPY\""));
        std::fs::write(&f, text).unwrap();
    }
    root.join("jobs")
}

/// count and hash of every table but job_runs and schema_migrations, run_id and the
/// report's wall-clock time left out.
fn fingerprint(conn: &duckdb::Connection) -> String {
    let mut s = conn
        .prepare("SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_name NOT IN ('job_runs', 'schema_migrations') ORDER BY 1")
        .unwrap();
    let tables: Vec<String> = s
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let mut all = Vec::new();
    for t in tables {
        let has_run_id: i64 = conn
            .query_row(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = ? AND column_name = 'run_id'",
                [&t],
                |r| r.get(0),
            )
            .unwrap();
        // reports.created_at is the wall clock of the run.
        let cols = match (has_run_id > 0, t == "reports") {
            (true, true) => "* EXCLUDE (run_id, created_at)",
            (true, false) => "* EXCLUDE (run_id)",
            _ => "*",
        };
        let (n, h): (i64, String) = conn
            .query_row(
                &format!("SELECT count(*), coalesce(sum(hash(x)::HUGEINT), 0)::VARCHAR FROM (SELECT {cols} FROM {t}) x"),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        all.push(format!("{t}:{n}:{h}"));
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(all.join("\n").as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The optdesk binary: `PIPELINE_BIN`, else the one of the same build,
/// target/<profile>/optdesk beside deps/ (a target folder shared by several checkouts
/// holds the last one built there: name yours with PIPELINE_BIN).
fn binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PIPELINE_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("optdesk");
    p.is_file().then_some(p)
}

fn case(name: &str, limited: bool, days: &[NaiveDate]) {
    let dir = tempfile::tempdir().unwrap();
    let jobs_dir = config_dir(dir.path(), limited);
    let config = Config::load(&jobs_dir, true).unwrap();
    let prepared = jobs::prepare_all(&config).unwrap();
    let db = dir.path().join("data/bench.duckdb");
    let store = Store::open_write(&db, Duration::from_secs(5), "bench").unwrap();
    // The working directory holds jobs/ and data/: the report's relative paths land there.
    std::env::set_current_dir(dir.path()).unwrap();

    let mut per_session = Vec::new();
    let t_all = Instant::now();
    for &d in days {
        let req = RunRequest {
            as_of: d,
            slot: None,
            dry_run: false,
            trigger: Trigger::Daily,
            resend: false,
        };
        let t = Instant::now();
        let recs = jobs::run_sequence(&store, &config, &prepared, &req, &jobs::Quiet).unwrap();
        per_session.push(t.elapsed().as_secs_f64());
        for r in &recs {
            assert_eq!(r.status, jobs::Status::Ok, "{d} {}: {}", r.job, r.message);
        }
    }
    let total = t_all.elapsed().as_secs_f64();
    let conn = &store.conn;
    let quotes: i64 = conn
        .query_row("SELECT count(*) FROM option_quotes", [], |r| r.get(0))
        .unwrap();
    let mut shares: BTreeMap<String, f64> = BTreeMap::new();
    let mut s = conn
        .prepare("SELECT job, sum(epoch_ms(finished_at) - epoch_ms(started_at))::DOUBLE FROM job_runs GROUP BY job")
        .unwrap();
    for r in s
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))
        .unwrap()
    {
        let (j, ms) = r.unwrap();
        shares.insert(j, ms);
    }
    let job_ms: f64 = shares.values().sum();
    let fp = fingerprint(conn);
    drop(store);

    let first = per_session[0];
    let steady = &per_session[1..];
    let steady_s: f64 = steady.iter().sum();
    let mut sorted = steady.to_vec();
    sorted.sort_by(f64::total_cmp);
    println!(
        "\n[{name}] {} sessions {}..{} in process: {:.2} s = {:.2} sessions/s, {:.0} quotes/s ({} option quotes)",
        days.len(),
        days[0],
        days[days.len() - 1],
        total,
        days.len() as f64 / total,
        quotes as f64 / total,
        quotes
    );
    if !steady.is_empty() {
        println!(
            "[{name}] first session (with the history backfill) {:.2} s; the others: {:.2} sessions/s, per session min {:.0} / median {:.0} / max {:.0} ms",
            first,
            steady.len() as f64 / steady_s,
            sorted[0] * 1e3,
            sorted[sorted.len() / 2] * 1e3,
            sorted[sorted.len() - 1] * 1e3
        );
    }
    let mut by_time: Vec<_> = shares.iter().collect();
    by_time.sort_by(|a, b| b.1.total_cmp(a.1));
    let line: Vec<String> = by_time
        .iter()
        .map(|(j, ms)| format!("{j} {:.0}%", 100.0 * *ms / job_ms))
        .collect();
    println!("[{name}] time by job: {}", line.join(", "));
    println!("[{name}] store fingerprint {fp}");

    if env_or("PIPELINE_PROCESS", 1) == 0 {
        return;
    }
    let Some(bin) = binary() else {
        println!("[{name}] process loop skipped: no optdesk binary beside this bench (cargo build --release first)");
        return;
    };
    let db2 = dir.path().join("data/loop.duckdb");
    let t = Instant::now();
    for d in days {
        let out = Command::new(&bin)
            .current_dir(dir.path())
            .args(["--db", db2.to_str().unwrap(), "--jobs"])
            .arg(&jobs_dir)
            .args(["run", "daily", "--as-of", &d.to_string()])
            .env_remove("OPTDESK_DB")
            .env_remove("OPTDESK_JOBS")
            .env_remove("OPTDESK_SOURCE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{d}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let loop_s = t.elapsed().as_secs_f64();
    let store = Store::open_read(&db2, Duration::from_secs(5)).unwrap();
    let fp2 = fingerprint(&store.conn);
    println!(
        "[{name}] the same sessions as `optdesk run daily` processes: {:.2} s = {:.2} sessions/s; in-process is {:.2}x the process loop{}",
        loop_s,
        days.len() as f64 / loop_s,
        loop_s / total,
        if fp2 == fp {
            " (same store fingerprint)"
        } else {
            " (STORE FINGERPRINT DIFFERS)"
        }
    );
}

fn main() {
    let n: usize = env_or("PIPELINE_SESSIONS", 20);
    let from = date(&std::env::var("PIPELINE_FROM").unwrap_or_else(|_| "2025-03-03".into()));
    let days: Vec<NaiveDate> =
        optdesk::calendar::sessions(from, from + chrono::Duration::days(4 * n as i64 + 10))
            .unwrap()
            .into_iter()
            .map(|s| s.date)
            .take(n.max(2))
            .collect();
    let cases = std::env::var("PIPELINE_CASES").unwrap_or_else(|_| "full,limited".into());
    println!(
        "daily pipeline, {} sessions from {from}, {} cores",
        days.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for c in cases.split(',') {
        match c.trim() {
            "full" => case("full universe", false, &days),
            "limited" => case("strategies' symbols, expiries to 70 days", true, &days),
            other => panic!("PIPELINE_CASES: unknown case {other}"),
        }
    }
}
