//! What the benches share: a temporary store with the repository's `jobs/`
//! configuration, and running one prepared job for a session (which must succeed).
#![allow(dead_code)]

use chrono::NaiveDate;
use optdesk::config::Config;
use optdesk::jobs::{self, Prepared, RunRecord, RunRequest, Trigger};
use optdesk::store::Store;
use std::time::{Duration, Instant};

pub struct Bench {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub config: Config,
}

impl Bench {
    pub fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_write(
            &dir.path().join("bench.duckdb"),
            Duration::from_secs(5),
            "bench",
        )
        .unwrap();
        let config = Config::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs"),
            false,
        )
        .unwrap();
        Bench { dir, store, config }
    }

    /// A job from the registry, prepared with the repository's configuration.
    pub fn job(&self, name: &str) -> Prepared {
        (jobs::find(name).unwrap().prepare)(&self.config).unwrap()
    }

    /// Run a prepared job for the daily snapshot of `as_of`; seconds and the record.
    pub fn run(&self, p: &Prepared, as_of: NaiveDate) -> (f64, RunRecord) {
        let req = RunRequest {
            as_of,
            slot: None,
            dry_run: false,
            trigger: Trigger::Cli,
            resend: false,
        };
        let t = Instant::now();
        // Quiet: a benchmark times the job, it prints nothing and sends no alert.
        let rec = jobs::run_one(&self.store, &self.config, p, &req, &jobs::Quiet).unwrap();
        assert_eq!(rec.status, jobs::Status::Ok, "{}: {}", rec.job, rec.message);
        (t.elapsed().as_secs_f64(), rec)
    }
}

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}
