//! Store size per session: the full simulated universe run through the daily pipeline
//! (every job but the email) for 30 sessions, then `prune` at the last session.
//! `cargo bench --bench store_size` (about a minute). Prints MB per session before and
//! after the prune, and what the retention rule kept.

use optdesk::store::retention;

mod common;
use common::{date, Bench};

const SESSIONS: usize = 30;

fn main() {
    let bench = Bench::new();
    let jobs: Vec<_> = optdesk::jobs::JOBS
        .iter()
        .filter(|j| j.name != "email_report")
        .map(|j| bench.job(j.name))
        .collect();
    let days: Vec<_> = optdesk::calendar::sessions(date("2024-01-02"), date("2024-03-29"))
        .unwrap()
        .into_iter()
        .map(|s| s.date)
        .take(SESSIONS)
        .collect();
    let t = std::time::Instant::now();
    for d in &days {
        for j in &jobs {
            bench.run(j, *d);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let Bench { dir, store, .. } = bench;
    store.conn.execute_batch("CHECKPOINT").unwrap();
    let path = store.path().to_path_buf();
    let mb = |b: u64| b as f64 / 1e6;
    let before = retention::file_bytes(&path);
    let rows = |store: &optdesk::store::Store, t: &str| -> i64 {
        store
            .conn
            .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    };
    let quotes = rows(&store, "option_quotes");
    println!(
        "{SESSIONS} sessions of the full simulated universe in {secs:.1} s: {quotes} option quotes ({} per session)",
        quotes / SESSIONS as i64
    );
    println!(
        "store before prune: {:.1} MB, {:.2} MB per session",
        mb(before),
        mb(before) / SESSIONS as f64
    );
    let last = *days.last().unwrap();
    let (store, r) = retention::prune(store, last).unwrap();
    let after = retention::file_bytes(&path);
    let pruned_sessions = (SESSIONS - 1) as f64;
    println!(
        "prune --quotes-before {last}: deleted {} quotes and {} analytics rows, kept {} quotes ({:.0} per pruned session)",
        r.quotes_deleted,
        r.analytics_deleted,
        r.quotes_kept,
        r.quotes_kept as f64 / pruned_sessions
    );
    println!(
        "store after prune: {:.1} MB, {:.2} MB per session (the last session's full chain included)",
        mb(after),
        mb(after) / SESSIONS as f64
    );
    assert_eq!(rows(&store, "option_quotes"), quotes - r.quotes_deleted);
    drop(store);
    drop(dir);
}
