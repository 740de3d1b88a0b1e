//! `optdesk backtest`: the daily pipeline replayed over past sessions.
//!
//! A backtest is not a second engine: it runs the same prepared jobs through the same
//! runner ([`crate::jobs::run_sequence`]) as `optdesk run daily`, one session after the
//! other, into a store of its own (`<main store's folder>/backtests/<name>.duckdb`), so
//! what it decides is what `run daily` would have decided on those sessions. What
//! differs: no observer prints or alerts per run, and the daily report is not built per
//! session (no email, no file): [`NoDailyReport`] stands in for `email_report`.
//!
//! * **Configuration.** The job files of `--jobs`, with `--set` overrides applied
//!   ([`overrides`]), `--source` and `--seed`. Everything is loaded and validated before
//!   the first session; its hash names the default store and is checked on resume.
//! * **Resume.** Each session whose pipeline completed is a `backtest_sessions` row of
//!   the backtest's store; running the same command again starts at the first session
//!   of the range without one. A store made with another configuration is refused
//!   (`--restart` starts it again, or give a new `--name`).
//! * **Bounded storage** (`--keep-quotes`): after each session the option quotes and
//!   analytics of earlier sessions are thinned by the store's retention rule
//!   ([`crate::store::retention::thin`]); the file is rewritten compactly at the end.
//! * **Catalogue.** The main store's `backtests` table has a row per name (status,
//!   range, configuration, headline metrics) and `backtest_metrics` its metrics per book
//!   ([`catalogue`]).
//! * **Tearsheet.** At the end, the results as one HTML file beside the store
//!   (`<name>.html`, [`crate::report::tearsheet`]); `optdesk backtest report NAME` writes
//!   it again.
//! * **Sweeps.** `backtest sweep` runs a backtest per point of a grid of overrides and
//!   compares them; `backtest collect` compares finished stores ([`sweep`]).

pub mod catalogue;
pub mod overrides;
pub mod sweep;

use crate::config::{Config, ConfigError, SimUnderlying, SourceKind};
use crate::jobs::{self, Job, JobContext, JobError, JobOutput, Prepared, RunRequest, Trigger};
use crate::store::retention;
use crate::store::{Store, StoreError};
use chrono::NaiveDate;
use duckdb::{params, OptionalExt};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What `--keep-quotes` keeps of each past session's option quotes and analytics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepQuotes {
    /// The retention rule's quotes (traded or held contracts, the chain slices each
    /// strategy scanned) for every session before the latest, whose chains stay whole
    /// (the window the jobs read: each job reads only its own session's full chains).
    Traded,
    /// Everything, as `run daily` keeps it.
    All,
    /// The retention rule's quotes only, the latest session's too.
    None,
}

impl KeepQuotes {
    pub fn as_str(self) -> &'static str {
        match self {
            KeepQuotes::Traded => "traded",
            KeepQuotes::All => "all",
            KeepQuotes::None => "none",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// Bad input, refused before the first session.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("store: {0}")]
    Db(#[from] duckdb::Error),
    #[error("{0}")]
    Prune(#[from] retention::PruneError),
    #[error("{0}")]
    Report(String),
}

/// The command line of one backtest.
#[derive(Debug, Clone)]
pub struct Options {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub name: Option<String>,
    pub source: Option<SourceKind>,
    pub seed: Option<u64>,
    /// `--set` arguments as given.
    pub sets: Vec<String>,
    pub keep_quotes: KeepQuotes,
    pub restart: bool,
    /// The configuration folder and whether the user named it.
    pub jobs_dir: PathBuf,
    pub jobs_explicit: bool,
    /// The main store (its folder holds `backtests/`; its `backtests` table the catalogue).
    pub main_db: PathBuf,
}

/// A backtest resolved and validated: nothing has run or been written yet.
pub struct Plan {
    pub name: String,
    pub store_path: PathBuf,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub sessions: Vec<NaiveDate>,
    pub config: Config,
    pub jobs: Vec<Prepared>,
    pub config_hash: String,
    pub snapshot: String,
    pub overrides: Vec<String>,
    pub source: SourceKind,
    pub seed: u64,
    pub keep_quotes: KeepQuotes,
    pub restart: bool,
    pub main_db: PathBuf,
    /// Sessions already completed in the backtest's store (a resume), none on `--restart`.
    pub done: Vec<NaiveDate>,
    pub risk_free_rate: f64,
}

impl Plan {
    /// The sessions still to run, in order.
    pub fn remaining(&self) -> Vec<NaiveDate> {
        let done: std::collections::BTreeSet<_> = self.done.iter().collect();
        self.sessions
            .iter()
            .filter(|d| !done.contains(d))
            .copied()
            .collect()
    }
}

/// The configuration files a backtest reads, relative to the configuration folder.
fn config_files() -> Vec<String> {
    let mut v = vec!["desk.toml".to_string()];
    v.extend(jobs::JOBS.iter().map(|j| format!("{}.toml", j.name)));
    v.extend(
        crate::trading::strategies::KNOWN
            .iter()
            .map(|s| format!("strategies/{s}.toml")),
    );
    v
}

/// The data files the jobs read, as configured: (key, resolved path, whether it is the
/// default path, which falls back to the built-in copy when missing).
fn data_files(config: &Config) -> Result<Vec<(String, String, PathBuf, bool)>, BacktestError> {
    let mut out = Vec::new();
    let rates = &config.desk.desk.rates_file;
    out.push((
        "desk.rates_file".to_string(),
        rates.clone(),
        config.resolve(rates),
        rates == crate::refdata::RATES_FILE,
    ));
    let (corr, _): (crate::config::JobFile<jobs::correlation::Params>, String) =
        config.job(jobs::correlation::DEF.name)?;
    let w = &corr.params.weights_file;
    out.push((
        "correlation.weights_file".to_string(),
        w.clone(),
        config.resolve(w),
        w == crate::refdata::QQQ_WEIGHTS_FILE,
    ));
    let e = &jobs::select_trades::events_file(config)?;
    if !e.is_empty() {
        out.push((
            "select_trades.events_file".to_string(),
            e.clone(),
            config.resolve(e),
            e == crate::refdata::EVENTS_FILE,
        ));
    }
    Ok(out)
}

/// The folder of backtest stores beside the main store: `data/backtests/`.
pub fn stores_dir(main_db: &Path) -> PathBuf {
    match main_db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join("backtests"),
        _ => PathBuf::from("backtests"),
    }
}

/// A backtest's name: letters, digits, `.`, `_` and `-`, not starting with a dot.
pub fn check_name(name: &str) -> Result<(), BacktestError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(BacktestError::Refused(format!(
            "--name '{name}': use letters, digits, '.', '_' and '-' (at most 100, not starting with '.')"
        )))
    }
}

/// Resolve and validate everything before the first session: the range's sessions, the
/// overrides (each alone first, so an error names its key), every job's configuration,
/// the source, and whether an existing store of that name may be resumed.
pub fn plan(opts: &Options) -> Result<Plan, BacktestError> {
    let refuse = |m: String| Err(BacktestError::Refused(m));
    if opts.to < opts.from {
        return refuse(format!("--to {} is before --from {}", opts.to, opts.from));
    }
    let sessions: Vec<NaiveDate> = crate::calendar::sessions(opts.from, opts.to)
        .map_err(|e| {
            BacktestError::Refused(format!(
                "{e}: the simulated market covers {}-01-01 to {}-12-31",
                crate::calendar::FIRST_YEAR,
                crate::calendar::LAST_YEAR
            ))
        })?
        .into_iter()
        .map(|s| s.date)
        .collect();
    if sessions.is_empty() {
        return refuse(format!(
            "no NYSE sessions from {} to {} (weekends and holidays only): nothing to backtest",
            opts.from, opts.to
        ));
    }
    let parsed: Vec<overrides::Override> = opts
        .sets
        .iter()
        .map(|s| overrides::parse(s))
        .collect::<Result<_, _>>()
        .map_err(BacktestError::Refused)?;
    // The desk-wide overrides: --source and --seed, as edits of desk.toml.
    let mut all = parsed.clone();
    if let Some(s) = opts.source {
        all.push(
            overrides::parse(&format!("desk.desk.source=\"{}\"", source_name(s)))
                .map_err(BacktestError::Refused)?,
        );
    }
    if let Some(seed) = opts.seed {
        all.push(
            overrides::parse(&format!("desk.sim.seed={seed}")).map_err(BacktestError::Refused)?,
        );
    }
    let base = Config::load(&opts.jobs_dir, opts.jobs_explicit)?;
    let read = |f: &str| base.read_text(f).map_err(|e| e.to_string());
    // Each override alone, so a refusal names its key.
    for o in &all {
        let overlay =
            overrides::apply(std::slice::from_ref(o), read).map_err(BacktestError::Refused)?;
        let config = Config::load_with(&opts.jobs_dir, opts.jobs_explicit, overlay)
            .map_err(|e| BacktestError::Refused(format!("--set {}: {e}", o.arg)))?;
        jobs::prepare_all(&config)
            .map_err(|e| BacktestError::Refused(format!("--set {}: {e}", o.arg)))?;
    }
    let overlay = overrides::apply(&all, read).map_err(BacktestError::Refused)?;
    let mut config = Config::load_with(&opts.jobs_dir, opts.jobs_explicit, overlay)?;
    if let Some(s) = opts.source {
        // Over OPTDESK_SOURCE too: the command line names the backtest's source.
        config.desk.desk.source = s;
    }
    let source = config.desk.desk.source;
    match source {
        SourceKind::Sim => {
            if config.desk.sim.underlying == SimUnderlying::Bars {
                let timeout = Duration::from_secs(config.desk.desk.lock_timeout_secs);
                bars_coverage(&opts.main_db, timeout, &config, &sessions)?;
            }
        }
        SourceKind::Replay => {
            let timeout = Duration::from_secs(config.desk.desk.lock_timeout_secs);
            replay_coverage(&opts.main_db, timeout, &sessions)?;
        }
        live => {
            return refuse(format!(
                "source {}: it gives only today's quotes, not past sessions; a backtest runs on the sim (--source sim) or on files imported into the archive (--source replay)",
                source_name(live)
            ));
        }
    }
    let seed = config.desk.sim.seed;
    let mut prepared = jobs::prepare_all(&config)?;
    for p in prepared.iter_mut() {
        if p.def.name == jobs::email_report::DEF.name {
            p.job = Box::new(NoDailyReport);
        }
    }
    let risk_free_rate = jobs::email_report::load_params(&config)?
        .0
        .params
        .risk_free_rate;

    // The configuration's snapshot and hash: every file as the jobs read it (overrides
    // applied), then the overrides, the source and the seed.
    let mut snapshot = String::new();
    for f in config_files() {
        let text = config.read_text(&f)?.unwrap_or_default();
        snapshot.push_str(&format!("# ==== {f} ====\n{text}"));
        if !text.ends_with('\n') {
            snapshot.push('\n');
        }
    }
    // The data files the jobs read (rates, index weights, events): their content's hash,
    // so an edited file is a changed configuration too.
    // The configured path is shown, not the resolved one: a folder moved elsewhere is the
    // same configuration.
    for (key, shown, path, default) in data_files(&config)? {
        let line = match std::fs::read(&path) {
            Ok(bytes) => {
                let d = Sha256::digest(&bytes);
                let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
                format!("{shown} (sha256 {hex}…, {} bytes)", bytes.len())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && default => {
                format!("{shown}: missing, the built-in copy")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("{shown}: none")
            }
            Err(e) => {
                return refuse(format!("{key}: cannot read {}: {e}", path.display()));
            }
        };
        snapshot.push_str(&format!("# ==== data: {key} = {line} ====\n"));
    }
    let overrides_list: Vec<String> = parsed.iter().map(|o| o.arg.clone()).collect();
    snapshot.push_str(&format!(
        "# ==== overrides ====\n{}\n# source = {}, seed = {seed}\n",
        overrides_list.join("\n"),
        source_name(source)
    ));
    let config_hash = {
        let mut h = Sha256::new();
        h.update(snapshot.as_bytes());
        let d = h.finalize();
        d.iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => format!("{}_{}_{}", opts.from, opts.to, &config_hash[..8]),
    };
    check_name(&name)?;
    let store_path = stores_dir(&opts.main_db).join(format!("{name}.duckdb"));

    // An existing store of that name: resume only the same configuration and start.
    let mut done = Vec::new();
    if store_path.exists() && !opts.restart {
        let timeout = Duration::from_secs(config.desk.desk.lock_timeout_secs);
        let store = Store::open_read(&store_path, timeout)?;
        // The store's own row, as the tearsheet reads it.
        let own = crate::report::tearsheet::header(&store.conn)
            .map_err(|e| BacktestError::Report(e.to_string()))?;
        if let Some(own) = own {
            if own.config_hash != config_hash {
                return refuse(format!(
                    "backtest '{name}' ({}) was made with another configuration (hash {}, now {config_hash}: a job file, a data file it names, a --set override, the source or the seed changed): give a new --name, or --restart to discard it and start again",
                    store_path.display(),
                    own.config_hash
                ));
            }
            if own.from != opts.from {
                return refuse(format!(
                    "backtest '{name}' starts on {}, not {}: a backtest resumes only from its own start; give a new --name, or --restart",
                    own.from, opts.from
                ));
            }
            // Sessions of this range (a shorter --to leaves later ones out).
            done = catalogue::sessions_done(&store.conn)?
                .into_iter()
                .filter(|d| sessions.contains(d))
                .collect();
        }
    }
    Ok(Plan {
        name,
        store_path,
        from: opts.from,
        to: opts.to,
        sessions,
        config,
        jobs: prepared,
        config_hash,
        snapshot,
        overrides: overrides_list,
        source,
        seed,
        keep_quotes: opts.keep_quotes,
        restart: opts.restart,
        main_db: opts.main_db.clone(),
        done,
        risk_free_rate,
    })
}

/// The replay archive of the main store must hold every session of the range: refused
/// otherwise, with the range it holds.
fn replay_coverage(
    main_db: &Path,
    timeout: Duration,
    sessions: &[NaiveDate],
) -> Result<(), BacktestError> {
    let refuse = |m: String| Err(BacktestError::Refused(m));
    if !main_db.exists() {
        return refuse(format!(
            "--source replay: the store {} does not exist: load files with `optdesk import PATH...` first",
            main_db.display()
        ));
    }
    let main = Store::open_read(main_db, timeout)?;
    let (first, last): (Option<NaiveDate>, Option<NaiveDate>) =
        if !crate::store::table_exists(&main.conn, "option_archive")? {
            (None, None)
        } else {
            main.conn.query_row(
                "SELECT min(as_of), max(as_of) FROM option_archive",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
        };
    let (Some(first), Some(last)) = (first, last) else {
        return refuse(format!(
            "--source replay: the replay archive of {} is empty: load files with `optdesk import PATH...` first",
            main_db.display()
        ));
    };
    let (a, b) = (sessions[0], sessions[sessions.len() - 1]);
    if a < first || b > last {
        return refuse(format!(
            "--source replay: the replay archive of {} covers {first} to {last}, not {a} to {b}: choose --from and --to within it",
            main_db.display()
        ));
    }
    Ok(())
}

/// `[sim] underlying = "bars"`: the imported daily bars of the symbols the backtest
/// fetches (`fetch_chains.params.symbols`, the whole universe when empty) must cover
/// the range, for every one of them that has bars: refused otherwise, with the range
/// they cover and each symbol's. Symbols without bars stay modelled.
fn bars_coverage(
    main_db: &Path,
    timeout: Duration,
    config: &Config,
    sessions: &[NaiveDate],
) -> Result<(), BacktestError> {
    let refuse = |m: String| Err(BacktestError::Refused(m));
    let key = "desk.sim.underlying = \"bars\"";
    if !main_db.exists() {
        return refuse(format!(
            "{key}: the store {} does not exist: load daily bars with `optdesk import FILE...` first",
            main_db.display()
        ));
    }
    let (file, _) = config.job::<jobs::fetch_chains::Params>(jobs::fetch_chains::DEF.name)?;
    let universe = crate::sources::sim::universe::default_universe();
    let symbols: Vec<String> = if file.params.symbols.is_empty() {
        universe.iter().map(|u| u.symbol.clone()).collect()
    } else {
        file.params.symbols.clone()
    };
    let main = Store::open_read(main_db, timeout)?;
    let mut covered: Vec<(String, NaiveDate, NaiveDate)> = Vec::new();
    for s in &symbols {
        let (first, last): (Option<NaiveDate>, Option<NaiveDate>) = main.conn.query_row(
            // An index's bars may be stored as ^VIX (the sim reads either, its own name first).
            "SELECT min(date), max(date) FROM archive_bars WHERE symbol = (SELECT coalesce(max(symbol) FILTER (WHERE symbol = ?), max(symbol)) FROM archive_bars WHERE symbol IN (?, '^' || ?))",
            params![s, s, s],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if let (Some(a), Some(b)) = (first, last) {
            covered.push((s.clone(), a, b));
        }
    }
    if covered.is_empty() {
        return refuse(format!(
            "{key}: the store {} has no imported daily bars for {}: load them with `optdesk import FILE...` first",
            main_db.display(),
            if file.params.symbols.is_empty() {
                "any symbol of the simulated universe".to_string()
            } else {
                symbols.join(", ")
            }
        ));
    }
    let first = covered.iter().map(|c| c.1).max().unwrap_or(sessions[0]);
    let last = covered.iter().map(|c| c.2).min().unwrap_or(sessions[0]);
    let (a, b) = (sessions[0], sessions[sessions.len() - 1]);
    if a < first || b > last {
        // The symbols that keep the range out: their bars start after it starts or end
        // before it ends.
        let blocking: Vec<String> = covered
            .iter()
            .filter(|(_, x, y)| *x > a || *y < b)
            .map(|(s, x, y)| format!("{s} {x} to {y}"))
            .collect();
        let mut each: Vec<String> = blocking.iter().take(8).cloned().collect();
        if blocking.len() > 8 {
            each.push(format!("and {} more", blocking.len() - 8));
        }
        let within = if first <= last {
            format!("{first} to {last}")
        } else {
            "no common range".to_string()
        };
        return refuse(format!(
            "{key}: the imported daily bars of the fetched symbols cover {within} ({}), not {a} to {b}: choose --from and --to within it, or leave out of fetch_chains.params.symbols the symbols whose bars end sooner",
            each.join(", ")
        ));
    }
    Ok(())
}

/// A replay backtest's market: the main store's archive (the range's option quotes,
/// every daily bar up to its end, the imports log) copied into the backtest's store
/// when it is made, read-only from the main store. A sim backtest over bars
/// (`[sim] underlying = "bars"`) copies the bars and the imports log only.
fn copy_archive(store: &Store, plan: &Plan) -> Result<(), BacktestError> {
    let conn = &store.conn;
    let lit = plan.main_db.display().to_string().replace('\'', "''");
    conn.execute_batch(&format!("ATTACH '{lit}' AS optdesk_main (READ_ONLY)"))?;
    let res = (|| {
        conn.execute_batch("BEGIN TRANSACTION")?;
        for t in [
            "option_archive",
            "archive_bars",
            "archive_minute_bars",
            "imports",
        ] {
            conn.execute(&format!("DELETE FROM {t}"), [])?;
        }
        if plan.source == SourceKind::Replay {
            conn.execute(
                "INSERT INTO option_archive BY NAME SELECT * FROM optdesk_main.option_archive WHERE as_of BETWEEN ? AND ?",
                params![plan.from, plan.to],
            )?;
        }
        conn.execute(
            "INSERT INTO archive_bars BY NAME SELECT * FROM optdesk_main.archive_bars WHERE date <= ?",
            params![plan.to],
        )?;
        conn.execute(
            "INSERT INTO imports BY NAME SELECT * FROM optdesk_main.imports",
            [],
        )?;
        conn.execute_batch("COMMIT")
    })();
    if res.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let _ = conn.execute_batch("DETACH optdesk_main");
    res?;
    Ok(())
}

pub(crate) fn source_name(s: SourceKind) -> &'static str {
    match s {
        SourceKind::Sim => "sim",
        SourceKind::Replay => "replay",
        SourceKind::Cboe => "cboe",
        SourceKind::Yahoo => "yahoo",
        SourceKind::Ibkr => "ibkr",
    }
}

/// `email_report` in a backtest: no email is sent and no file written per session
/// (the runner records the run as usual); the report is built once at the end.
pub struct NoDailyReport;

impl Job for NoDailyReport {
    fn run(&self, _ctx: &JobContext) -> Result<JobOutput, JobError> {
        Ok(JobOutput {
            rows_written: 0,
            summary: "backtest: no daily report per session (no email, no file); the report is built at the end".into(),
        })
    }
}

/// One session done, for the progress line.
#[derive(Debug, Clone)]
pub struct SessionDone {
    pub as_of: NaiveDate,
    /// Sessions of the range completed so far (resumed ones included).
    pub done: usize,
    pub total: usize,
    /// Sessions run by this invocation, and its wall time so far.
    pub run_here: usize,
    pub elapsed: Duration,
    pub equity: Option<f64>,
}

/// How a backtest ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    Done,
    /// Stopped on request (Ctrl-C) after a completed session.
    Stopped,
    /// A job failed: its session, job and reason.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub ending: Ending,
    pub sessions_done: usize,
    pub sessions_total: usize,
    pub run_here: usize,
    pub seconds: f64,
    pub store_bytes: u64,
    pub headline: Option<catalogue::Headline>,
    pub report_path: Option<PathBuf>,
    /// The last completed session.
    pub last: Option<NaiveDate>,
}

/// `OPTDESK_BACKTEST_TIMING=1`: where a backtest's time went (each job, the session
/// row, the thinning, the compaction), printed to stderr at the end. For profiling.
struct Timing(Vec<(&'static str, f64, usize)>);

impl Timing {
    fn from_env() -> Option<Timing> {
        std::env::var("OPTDESK_BACKTEST_TIMING")
            .is_ok_and(|v| v == "1")
            .then(|| Timing(Vec::new()))
    }

    fn add(&mut self, what: &'static str, secs: f64) {
        match self.0.iter_mut().find(|(w, _, _)| *w == what) {
            Some(e) => {
                e.1 += secs;
                e.2 += 1;
            }
            None => self.0.push((what, secs, 1)),
        }
    }

    fn print(&self) {
        for (what, secs, n) in &self.0 {
            eprintln!(
                "timing {what:<22} {secs:>9.3} s total, {:>8.1} ms each ({n})",
                1e3 * secs / *n as f64
            );
        }
    }
}

fn holder(name: &str) -> String {
    format!("optdesk backtest {name} (pid {})", std::process::id())
}

/// Run the plan: every remaining session in order, stopping after the session during
/// which `stop` is set. The catalogue row is written at the start and the end.
pub fn run(
    mut plan: Plan,
    stop: &AtomicBool,
    on_session: &mut dyn FnMut(&SessionDone),
) -> Result<Outcome, BacktestError> {
    let timeout = Duration::from_secs(plan.config.desk.desk.lock_timeout_secs);
    if plan.restart {
        for suffix in ["", ".wal"] {
            let mut p = plan.store_path.as_os_str().to_owned();
            p.push(suffix);
            match std::fs::remove_file(PathBuf::from(&p)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(BacktestError::Refused(format!(
                        "--restart: cannot remove {}: {e}",
                        PathBuf::from(p).display()
                    )))
                }
            }
        }
        plan.done.clear();
    }
    let started = Instant::now();
    let mut store = Store::open_write(&plan.store_path, timeout, &holder(&plan.name))?;
    let sim_bars =
        plan.source == SourceKind::Sim && plan.config.desk.sim.underlying == SimUnderlying::Bars;
    if (plan.source == SourceKind::Replay || sim_bars) && plan.done.is_empty() {
        copy_archive(&store, &plan)?;
    }
    catalogue::write_own_row(&store.conn, &plan)?;
    catalogue::start(&plan, timeout)?;
    // Checkpoint the write-ahead log into the file every 256 MB instead of DuckDB's
    // 16 MB: most of a session's quotes are thinned away a session later, so a rarer
    // checkpoint compresses and writes far fewer rows that are deleted soon after (a
    // setting of this connection only; the file is compacted at the end).
    store
        .conn
        .execute_batch("SET checkpoint_threshold = '256MB'")?;

    let total = plan.sessions.len();
    let mut done = plan.done.len();
    let mut run_here = 0usize;
    let mut thinned = false;
    let mut last = plan.done.iter().max().copied();
    let mut ending = Ending::Done;
    let mut timing = Timing::from_env();
    // The boundary of the last thinning: sessions before it are thinned already.
    let mut thin_from = retention::horizon(&store.conn)?;
    for as_of in plan.remaining() {
        let t0 = Instant::now();
        let req = RunRequest {
            as_of,
            slot: None,
            dry_run: false,
            trigger: Trigger::Backtest,
            resend: false,
        };
        // The session's own rows, in the session's transaction: its equity and
        // `backtest_sessions` row, then the thinning of the quotes later sessions no
        // longer read.
        let mut equity: Option<f64> = None;
        let mut thin_secs = 0.0;
        let mut thinned_to: Option<NaiveDate> = None;
        let path = store.path().to_path_buf();
        let keep = plan.keep_quotes;
        let mut after = |conn: &duckdb::Connection| -> Result<(), duckdb::Error> {
            equity = conn
                .query_row(
                    "SELECT arg_max(equity::DOUBLE, quote_time) FROM portfolio_snapshots WHERE as_of = ?",
                    params![as_of],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            conn.execute(
                "INSERT OR REPLACE INTO backtest_sessions VALUES (?, now()::TIMESTAMP, ?, ?)",
                params![as_of, t0.elapsed().as_secs_f64(), equity],
            )?;
            let t2 = Instant::now();
            thinned_to = None;
            let before = match keep {
                KeepQuotes::All => None,
                KeepQuotes::Traded => Some(as_of),
                KeepQuotes::None => Some(as_of + chrono::Duration::days(1)),
            };
            if let Some(before) = before {
                let any: bool = conn.query_row(
                    "SELECT count(*) > 0 FROM option_quotes WHERE as_of < ?",
                    params![before],
                    |r| r.get(0),
                )?;
                if any {
                    retention::thin_window(conn, &path, thin_from, before)?;
                    thinned_to = Some(before);
                }
            }
            thin_secs = t2.elapsed().as_secs_f64();
            Ok(())
        };
        // The session's slots, after its daily pipeline, as `optdesk run session` runs
        // them; the session's own rows are written once its last firing has run.
        let firings = match crate::calendar::session(as_of) {
            Ok(Some(s)) => jobs::slot_firings(&plan.jobs, &s),
            _ => Vec::new(),
        };
        let (before, firings) = jobs::split_at_daily(&plan.config, as_of, firings);
        // Run slot firings in order into `records`, stopping at the first failure.
        let run_firings = |firings: &[jobs::SlotFiring],
                           records: &mut Vec<jobs::RunRecord>|
         -> Result<(), BacktestError> {
            for f in firings {
                let slot_req = RunRequest {
                    slot: Some(f.time),
                    ..req
                };
                let rec = jobs::run_one(
                    &store,
                    &plan.config,
                    &plan.jobs[f.job],
                    &slot_req,
                    &jobs::Quiet,
                )?;
                let failed = rec.status == jobs::Status::Failed;
                records.push(rec);
                if failed {
                    break;
                }
            }
            Ok(())
        };
        let mut early: Vec<jobs::RunRecord> = Vec::new();
        run_firings(&before, &mut early)?;
        let records = if early.iter().any(|r| r.status == jobs::Status::Failed) {
            Vec::new()
        } else if firings.is_empty() && before.is_empty() {
            jobs::run_session(
                &store,
                &plan.config,
                &plan.jobs,
                &req,
                &jobs::Quiet,
                &mut after,
            )?
        } else {
            let mut records = jobs::run_session(
                &store,
                &plan.config,
                &plan.jobs,
                &req,
                &jobs::Quiet,
                &mut |_| Ok(()),
            )?;
            if records.iter().all(|r| r.status != jobs::Status::Failed) {
                run_firings(&firings, &mut records)?;
            }
            if records.iter().all(|r| r.status != jobs::Status::Failed) {
                let conn = &store.conn;
                conn.execute_batch("BEGIN TRANSACTION")?;
                if let Err(e) = after(conn).and_then(|_| conn.execute_batch("COMMIT")) {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e.into());
                }
            }
            records
        };
        let records = if early.is_empty() {
            records
        } else {
            early.into_iter().chain(records).collect()
        };
        if let Some(t) = timing.as_mut() {
            for r in &records {
                t.add(r.job, r.seconds);
            }
            t.add("(run_session)", t0.elapsed().as_secs_f64());
            t.add("(thin, in it)", thin_secs);
        }
        if let Some(f) = records.iter().find(|r| r.status == jobs::Status::Failed) {
            ending = Ending::Failed(format!("session {as_of}: {} failed: {}", f.job, f.message));
            break;
        }
        if let Some(b) = thinned_to {
            thin_from = Some(b);
            thinned = true;
        }
        if let Some(t) = timing.as_mut() {
            t.add("(session)", t0.elapsed().as_secs_f64());
        }
        done += 1;
        run_here += 1;
        last = Some(as_of);
        on_session(&SessionDone {
            as_of,
            done,
            total,
            run_here,
            elapsed: started.elapsed(),
            equity,
        });
        if stop.load(Ordering::SeqCst) && done < total {
            ending = Ending::Stopped;
            break;
        }
    }
    let t3 = Instant::now();
    if thinned {
        store = retention::compact(store)?;
    }
    if let Some(t) = timing.as_mut() {
        t.add("(compact at the end)", t3.elapsed().as_secs_f64());
        t.print();
    }
    // The results so far: headline metrics, and the tearsheet (written once the store's
    // own row says how the run ended).
    let data = match last {
        Some(d) => Some(
            crate::report::load(&store.conn, d, plan.risk_free_rate)
                .map_err(|e| BacktestError::Report(e.to_string()))?,
        ),
        None => None,
    };
    let report_path = data
        .as_ref()
        .map(|_| plan.store_path.with_extension("html"));
    let outcome = Outcome {
        ending,
        sessions_done: done,
        sessions_total: total,
        run_here,
        seconds: started.elapsed().as_secs_f64(),
        store_bytes: 0,
        headline: data.as_ref().map(catalogue::Headline::from_report),
        report_path,
        last,
    };
    catalogue::finish_own_row(&store.conn, &outcome)?;
    // A tearsheet that cannot be written fails the command, once the catalogue is done
    // (the results are in the store; `optdesk backtest report NAME` tries again).
    let sheet = match (data, &outcome.report_path) {
        (Some(data), Some(path)) => crate::report::tearsheet::from_data(&store, data)
            .and_then(|t| crate::report::tearsheet::write(&t, path))
            .map_err(|e| {
                BacktestError::Report(format!(
                    "{e} (the results are in the store: `optdesk backtest report {}` writes the tearsheet again)",
                    plan.name
                ))
            }),
        _ => Ok(()),
    };
    drop(store);
    let outcome = Outcome {
        store_bytes: retention::file_bytes(&plan.store_path),
        ..outcome
    };
    catalogue::finish(&plan, &outcome, timeout)?;
    sheet?;
    Ok(outcome)
}
