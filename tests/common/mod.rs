//! Shared helpers for the integration tests: a throw-away desk (store + config folder)
//! driven through the real `optdesk` binary.
#![allow(dead_code)]

pub mod chrome;
pub mod servers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Desk {
    pub dir: tempfile::TempDir,
    pub jobs: PathBuf,
}

impl Desk {
    /// A desk with the repository's own `jobs/` configuration, copied.
    pub fn new() -> Desk {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs");
        std::fs::create_dir_all(&jobs).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
        for sub in ["", "strategies"] {
            std::fs::create_dir_all(jobs.join(sub)).unwrap();
            for e in std::fs::read_dir(src.join(sub)).unwrap() {
                let e = e.unwrap();
                if e.path().extension().is_some_and(|x| x == "toml") {
                    std::fs::copy(e.path(), jobs.join(sub).join(e.file_name())).unwrap();
                }
            }
        }
        Desk { dir, jobs }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("optdesk.duckdb")
    }

    pub fn write_config(&self, file: &str, text: &str) {
        let path = self.jobs.join(file);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    /// The optdesk binary on this desk, with no `OPTDESK_*` setting inherited from the
    /// environment the tests run in (SMTP, alerts, failpoints, logging).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_optdesk"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OPTDESK_") {
                c.env_remove(k);
            }
        }
        c.current_dir(self.dir.path())
            .env("OPTDESK_DB", self.db())
            .env("OPTDESK_JOBS", &self.jobs);
        c
    }

    /// Run optdesk with only the webhook alert channel on, pointed at a local server.
    pub fn run_with_webhook(&self, port: u16, args: &[&str]) -> Output {
        self.cmd()
            .env(
                "OPTDESK_WEBHOOK_URL",
                format!("http://127.0.0.1:{port}/hook"),
            )
            .args(args)
            .output()
            .unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "optdesk {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// The shipped `jobs/desk.toml` with `source` set and the tables `drop` (e.g.
    /// `"[cboe]"`) left out, for a test that appends its own.
    pub fn desk_toml_for(&self, source: &str, drop: &[&str]) -> String {
        let mut dropping = false;
        std::fs::read_to_string(self.jobs.join("desk.toml"))
            .unwrap()
            .replace("source = \"sim\"", &format!("source = \"{source}\""))
            .lines()
            .filter(|l| {
                if l.starts_with('[') {
                    dropping = drop.contains(&l.trim());
                }
                !dropping
            })
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// Run a command that must fail with exit code 1 (a job failed); its stdout and
    /// stderr together.
    pub fn run_fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(1),
            "optdesk {args:?}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        format!("{}{}", stdout(&o), stderr(&o))
    }

    pub fn open(&self) -> duckdb::Connection {
        let cfg = duckdb::Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .unwrap();
        duckdb::Connection::open_with_flags(self.db(), cfg).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.open().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Row count and an order-independent hash of every table the jobs write (the
    /// `run_id` provenance column excluded), plus job_runs when `with_runs`.
    pub fn fingerprint(&self, with_runs: bool) -> Vec<(String, i64, String)> {
        let c = self.open();
        let mut tables: Vec<String> = {
            let mut s = c
                .prepare("SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' ORDER BY 1")
                .unwrap();
            s.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        tables.retain(|t| with_runs || (t != "job_runs" && t != "schema_migrations"));
        tables
            .into_iter()
            .map(|t| {
                let has_run_id: i64 = c
                    .query_row(
                        "SELECT count(*) FROM information_schema.columns WHERE table_name = ? AND column_name = 'run_id'",
                        [&t],
                        |r| r.get(0),
                    )
                    .unwrap();
                let cols = if has_run_id > 0 && !with_runs { "* EXCLUDE (run_id)" } else { "*" };
                let (n, h): (i64, String) = c
                    .query_row(
                        &format!("SELECT count(*), coalesce(sum(hash(x)::HUGEINT), 0)::VARCHAR FROM (SELECT {cols} FROM {t}) x"),
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .unwrap();
                (t, n, h)
            })
            .collect()
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}
