//! `optdesk backtest sweep` and `optdesk backtest collect`: many backtests that differ
//! in a few keys, and one comparison of them.
//!
//! * **Points.** Each `--grid name.key=v1,v2,...` is a key and its values; the sweep's
//!   points are every combination (the cartesian product, the first grid outermost).
//!   A point is an ordinary backtest: its `--set` overrides are the user's `--set`s then
//!   one per grid, and its name is `<prefix>-<key>_<value>-...` (the key's last part,
//!   or the whole key where two grids share it), or `<prefix>-p01`, `-p02`, ... when a
//!   value does not make a valid name. Every point is planned ([`super::plan`]) before
//!   the first runs, so a bad key or value fails before any session, naming it.
//! * **Running.** Each point is a child process of the same binary running the very
//!   command line `--emit` writes ([`SweepOptions::command_args`]), several at once;
//!   its output goes to `<name>.log` beside its store. The children share the main
//!   store only for their catalogue rows, which the store's write lock (with
//!   `desk.lock_timeout_secs`) serializes. A point whose sessions are all done is
//!   skipped, one part-done resumes: running the sweep again resumes it.
//! * **Comparison.** Built only from the backtest stores (each store's own catalogue
//!   row: overrides, status, headline metrics; its `backtest_metrics` per book; its
//!   `backtest_sessions` equity), so `sweep` and `--emit` + the commands + `collect`
//!   give the same rows and figures. Its columns are the override keys whose value
//!   differs between the stores (and the range, source or seed if those differ); what
//!   they share is listed once.

use super::{catalogue::BookMetrics, check_name, overrides, BacktestError, Options};
use crate::report::svg::escape;
use chrono::NaiveDate;
use std::cmp::Ordering as CmpOrdering;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One `--grid`: a key and the values it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// As for `--set`: `dispersion.z_entry`.
    pub key: String,
    /// TOML values as given: `1.0`, `["SPY", "QQQ"]`.
    pub values: Vec<String>,
}

/// Split a grid's values at the commas outside brackets, braces and quotes, so a
/// TOML array or a quoted string with commas stays one value.
fn split_values(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                cur.push(c);
            }
            None => match c {
                '"' | '\'' => {
                    quote = Some(c);
                    cur.push(c);
                }
                '[' | '{' => {
                    depth += 1;
                    cur.push(c);
                }
                ']' | '}' => {
                    depth -= 1;
                    cur.push(c);
                }
                ',' if depth <= 0 => out.push(std::mem::take(&mut cur).trim().to_string()),
                _ => cur.push(c),
            },
        }
    }
    out.push(cur.trim().to_string());
    out
}

/// Parse one `--grid name.key=v1,v2,...`; the error names it and says what is wrong.
pub fn parse_grid(arg: &str) -> Result<Grid, String> {
    let (key, values) = arg.split_once('=').ok_or_else(|| {
        format!("--grid {arg}: expected name.key=v1,v2,..., e.g. dispersion.z_entry=1.0,1.5,2.0")
    })?;
    let key = key.trim();
    if values.trim().is_empty() {
        return Err(format!(
            "--grid {arg}: no values after '='; give one or more, separated by commas"
        ));
    }
    let values = split_values(values);
    for (i, v) in values.iter().enumerate() {
        if v.is_empty() {
            return Err(format!(
                "--grid {arg}: value {} of {} is empty (two commas, or one at an end?)",
                i + 1,
                values.len()
            ));
        }
        if values[..i].contains(v) {
            return Err(format!("--grid {arg}: the value {v} is given twice"));
        }
        // The key's shape (and the value's presence) as `--set` checks it.
        overrides::parse(&format!("{key}={v}")).map_err(|e| format!("--grid {arg}: {e}"))?;
    }
    Ok(Grid {
        key: key.to_string(),
        values,
    })
}

/// One point of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The backtest's name.
    pub name: String,
    /// Each grid's key and this point's value, in grid order.
    pub values: Vec<(String, String)>,
}

impl Point {
    /// `dispersion.z_entry=1.5, dispersion.hold_sessions=10`.
    pub fn describe(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A value as part of a name: letters, digits, `.`, `_` and `-` kept, quotes dropped,
/// anything else `_`.
fn name_part(v: &str) -> String {
    v.chars()
        .filter(|c| !matches!(c, '"' | '\''))
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The default name prefix of a sweep over a range.
pub fn default_prefix(from: NaiveDate, to: NaiveDate) -> String {
    format!("sweep_{from}_{to}")
}

/// Every combination of the grids' values, named. Refused: a prefix that is not a
/// valid name, a key in two grids, a key both in a grid and in `--set`.
pub fn points(prefix: &str, grids: &[Grid], sets: &[String]) -> Result<Vec<Point>, String> {
    check_name(prefix)
        .map_err(|_| format!("--name {prefix}: the sweep's prefix must be a valid backtest name: letters, digits, '.', '_' and '-' (at most 100, not starting with '.')"))?;
    if grids.is_empty() {
        return Err("a sweep needs at least one --grid name.key=v1,v2,...".into());
    }
    for (i, g) in grids.iter().enumerate() {
        if grids[..i].iter().any(|h| h.key == g.key) {
            return Err(format!(
                "--grid {}: the key is in two --grid arguments; give all its values in one",
                g.key
            ));
        }
        for s in sets {
            if let Ok(o) = overrides::parse(s) {
                if o.key().trim() == g.key {
                    return Err(format!(
                        "--set {s} and --grid {}: the same key; a key is either fixed (--set) or swept (--grid)",
                        g.key
                    ));
                }
            }
        }
    }
    // The short key: its last part, unless another grid's key ends the same way.
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    let short: Vec<String> = grids
        .iter()
        .map(|g| {
            let l = last(&g.key);
            if grids.iter().filter(|h| last(&h.key) == l).count() > 1 {
                g.key.clone()
            } else {
                l
            }
        })
        .collect();
    let total: usize = grids.iter().map(|g| g.values.len()).product();
    let mut pts = Vec::with_capacity(total);
    let mut idx = vec![0usize; grids.len()];
    for _ in 0..total {
        let values: Vec<(String, String)> = grids
            .iter()
            .zip(&idx)
            .map(|(g, &i)| (g.key.clone(), g.values[i].clone()))
            .collect();
        let mut name = prefix.to_string();
        for (s, (_, v)) in short.iter().zip(&values) {
            name.push_str(&format!("-{s}_{}", name_part(v)));
        }
        pts.push(Point { name, values });
        // The odometer: the last grid turns fastest.
        for k in (0..grids.len()).rev() {
            idx[k] += 1;
            if idx[k] < grids[k].values.len() {
                break;
            }
            idx[k] = 0;
        }
    }
    let mut names: Vec<&str> = pts.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let readable = names.len() == pts.len() && pts.iter().all(|p| check_name(&p.name).is_ok());
    if !readable {
        let width = total.to_string().len().max(2);
        for (i, p) in pts.iter_mut().enumerate() {
            p.name = format!("{prefix}-p{:0width$}", i + 1);
        }
        if let Some(p) = pts.iter().find(|p| check_name(&p.name).is_err()) {
            return Err(format!(
                "--name {prefix}: too long for the points' names (e.g. {}): at most 100 characters",
                p.name
            ));
        }
    }
    Ok(pts)
}

/// A sweep's command line, less its grids: what every point shares. `base` is a
/// backtest's options without a name, with the user's `--set`s (each point's grid
/// values come after them).
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub base: Options,
    pub prefix: String,
}

impl SweepOptions {
    /// The point's `--set` arguments: the user's, then one per grid.
    pub fn sets(&self, p: &Point) -> Vec<String> {
        self.base
            .sets
            .iter()
            .cloned()
            .chain(p.values.iter().map(|(k, v)| format!("{k}={v}")))
            .collect()
    }

    /// The point as a backtest's options.
    pub fn options(&self, p: &Point) -> Options {
        Options {
            name: Some(p.name.clone()),
            sets: self.sets(p),
            ..self.base.clone()
        }
    }

    /// The arguments of `optdesk` that run the point as one backtest (what a child
    /// process runs, and what `--emit` writes).
    pub fn command_args(&self, p: &Point) -> Vec<String> {
        let mut a: Vec<String> = vec!["--db".into(), self.base.main_db.display().to_string()];
        if self.base.jobs_explicit {
            a.push("--jobs".into());
            a.push(self.base.jobs_dir.display().to_string());
        }
        a.extend([
            "backtest".to_string(),
            "--from".into(),
            self.base.from.to_string(),
            "--to".into(),
            self.base.to.to_string(),
            "--name".into(),
            p.name.clone(),
        ]);
        if let Some(s) = self.base.source {
            a.push("--source".into());
            a.push(super::source_name(s).into());
        }
        if let Some(s) = self.base.seed {
            a.push("--seed".into());
            a.push(s.to_string());
        }
        a.push("--keep-quotes".into());
        a.push(self.base.keep_quotes.as_str().into());
        if self.base.restart {
            a.push("--restart".into());
        }
        for s in self.sets(p) {
            a.push("--set".into());
            a.push(s);
        }
        a
    }

    /// The point's command line for a POSIX shell: `optdesk --db ... backtest ...`.
    pub fn command_line(&self, p: &Point) -> String {
        std::iter::once("optdesk".to_string())
            .chain(self.command_args(p).iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Each point's log: `<name>.log` beside its store.
    pub fn log_path(&self, p: &Point) -> PathBuf {
        super::stores_dir(&self.base.main_db).join(format!("{}.log", p.name))
    }

    pub fn store_path(&self, p: &Point) -> PathBuf {
        super::stores_dir(&self.base.main_db).join(format!("{}.duckdb", p.name))
    }

    /// The comparison page and CSV of the sweep: `<backtests>/<prefix>.sweep.html`.
    pub fn page_path(&self) -> PathBuf {
        super::stores_dir(&self.base.main_db).join(format!("{}.sweep.html", self.prefix))
    }
}

/// A word for a POSIX shell: as is when it is only safe characters, else in single
/// quotes (a quote inside as `'\''`).
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | ',' | '+' | '@' | '%')
        });
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What planning a point found: sessions in the range and already done.
#[derive(Debug, Clone)]
pub struct PointPlan {
    pub sessions: usize,
    pub remaining: usize,
    pub config_hash: String,
}

/// Plan every point (nothing runs or is written): the first refusal, naming the point
/// and the key or reason.
pub fn validate(sw: &SweepOptions, pts: &[Point]) -> Result<Vec<PointPlan>, BacktestError> {
    pts.iter()
        .map(|p| {
            let plan = super::plan(&sw.options(p)).map_err(|e| {
                BacktestError::Refused(format!("sweep point {} ({}): {e}", p.name, p.describe()))
            })?;
            Ok(PointPlan {
                sessions: plan.sessions.len(),
                remaining: plan.remaining().len(),
                config_hash: plan.config_hash.clone(),
            })
        })
        .collect()
}

/// How a point's run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PointEnd {
    Done,
    /// Stopped on request (Ctrl-C) after a session: the sweep again resumes it.
    Stopped,
    /// The reason: the last lines of its log.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct PointRun {
    /// Index into the points.
    pub index: usize,
    pub end: PointEnd,
    pub seconds: f64,
}

/// The last lines of a log that say something (its error, or its last progress).
fn log_tail(path: &Path, since: u64) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b[(since as usize).min(b.len())..]).to_string())
        .unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let err: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("error:") || l.contains(" failed"))
        .collect();
    let pick = if err.is_empty() { &lines } else { &err };
    let n = pick.len();
    pick[n.saturating_sub(2)..].join(" / ")
}

/// Run the points `todo` (indices into `pts`), up to `parallel` at once, each as a child
/// process `exe <command_args>` with its output appended to its log. No new point
/// starts once `stop` is set (a Ctrl-C reaches the children too: each stops after its
/// session). `on_start` and `on_end` are called from the worker threads.
#[allow(clippy::too_many_arguments)]
pub fn run_points(
    sw: &SweepOptions,
    pts: &[Point],
    todo: &[usize],
    parallel: usize,
    exe: &Path,
    stop: &AtomicBool,
    on_start: &(dyn Fn(usize) + Sync),
    on_end: &(dyn Fn(&PointRun) + Sync),
) -> Result<Vec<PointRun>, BacktestError> {
    let dir = super::stores_dir(&sw.base.main_db);
    std::fs::create_dir_all(&dir).map_err(|e| {
        BacktestError::Refused(format!("cannot create the folder {}: {e}", dir.display()))
    })?;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<PointRun>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1).min(todo.len().max(1)) {
            scope.spawn(|| loop {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&i) = todo.get(k) else { break };
                let p = &pts[i];
                on_start(i);
                let t0 = Instant::now();
                let end = match run_child(sw, p, exe) {
                    Ok(end) => end,
                    Err(e) => {
                        let mut fe = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        fe.get_or_insert(e.clone());
                        PointEnd::Failed(e)
                    }
                };
                let r = PointRun {
                    index: i,
                    end,
                    seconds: t0.elapsed().as_secs_f64(),
                };
                on_end(&r);
                results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
            });
        }
    });
    let mut v = results.into_inner().unwrap_or_else(|e| e.into_inner());
    v.sort_by_key(|r| r.index);
    Ok(v)
}

/// One point as a child process, to its end.
fn run_child(sw: &SweepOptions, p: &Point, exe: &Path) -> Result<PointEnd, String> {
    use std::io::Write;
    let log_path = sw.log_path(p);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open the log {}: {e}", log_path.display()))?;
    let since = log.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = writeln!(
        log,
        "==== {} {}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
        sw.command_line(p)
    );
    let err = log
        .try_clone()
        .map_err(|e| format!("cannot open the log {}: {e}", log_path.display()))?;
    let status = std::process::Command::new(exe)
        .args(sw.command_args(p))
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    Ok(match status.code() {
        Some(0) => PointEnd::Done,
        Some(130) => PointEnd::Stopped,
        Some(c) => PointEnd::Failed(format!(
            "exit {c}: {} (log {})",
            log_tail(&log_path, since),
            log_path.display()
        )),
        None => PointEnd::Failed(format!("killed by a signal (log {})", log_path.display())),
    })
}

// ---------------------------------------------------------------------------
// The comparison.
// ---------------------------------------------------------------------------

/// One backtest store, as the comparison reads it.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub path: PathBuf,
    /// Its `--set` overrides: key and value, in the order given.
    pub overrides: Vec<(String, String)>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub sessions_done: i64,
    pub sessions_total: i64,
    pub status: String,
    pub source: String,
    pub seed: String,
    pub config_hash: String,
    pub total_return: Option<f64>,
    pub cagr: Option<f64>,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    pub max_drawdown: Option<f64>,
    pub win_rate: Option<f64>,
    pub trades: Option<i64>,
    pub final_equity: Option<f64>,
    /// Per book (the portfolio, each strategy, each benchmark).
    pub books: Vec<BookMetrics>,
    /// The equity after each completed session.
    pub equity: Vec<(NaiveDate, f64)>,
}

/// Read one backtest store; `Err` says why it is not one (or not readable now).
pub fn read_store(path: &Path, timeout: Duration) -> Result<Row, String> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    if let Some(h) = crate::store::current_writer(&crate::store::lock_path_for(path)) {
        return Err(format!("being written by {h} (still running?)"));
    }
    let store = crate::store::Store::open_read(path, timeout).map_err(|e| e.to_string())?;
    let conn = &store.conn;
    let q = |e: duckdb::Error| e.to_string();
    let n: i64 = if !crate::store::table_exists(conn, "backtests").map_err(q)? {
        0
    } else {
        conn.query_row("SELECT count(*) FROM backtests", [], |r| r.get(0))
            .map_err(q)?
    };
    if n == 0 {
        return Err("not a backtest store (no catalogue row of its own)".into());
    }
    let name: String = conn
        .query_row("SELECT min(name) FROM backtests", [], |r| r.get(0))
        .map_err(q)?;
    if n > 1 || name != stem {
        return Err(format!(
            "not a backtest's own store ({n} catalogue rows{}: the main store?)",
            if n == 1 {
                format!(", named '{name}', not '{stem}'")
            } else {
                String::new()
            }
        ));
    }
    type Head = (
        (NaiveDate, NaiveDate, i64, i64, String, String),
        (String, String, String),
        (
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<i64>,
            Option<f64>,
        ),
    );
    let head: Head = conn
        .query_row(
            "SELECT from_date, to_date, sessions_done, sessions_total, status, overrides,
                    source, seed::VARCHAR, config_hash,
                    total_return, cagr, sharpe, max_drawdown, win_rate, trades, final_equity
             FROM backtests",
            [],
            |r| {
                Ok((
                    (
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ),
                    (r.get(6)?, r.get(7)?, r.get(8)?),
                    (
                        r.get(9)?,
                        r.get(10)?,
                        r.get(11)?,
                        r.get(12)?,
                        r.get(13)?,
                        r.get(14)?,
                        r.get(15)?,
                    ),
                ))
            },
        )
        .map_err(q)?;
    let (
        (from, to, sessions_done, sessions_total, status, overrides_text),
        (source, seed, config_hash),
        (total_return, cagr, sharpe, max_drawdown, win_rate, trades, final_equity),
    ) = head;
    let overrides = overrides_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect();
    let books: Vec<BookMetrics> = {
        let mut s = conn
            .prepare(
                "SELECT book, kind, total_return, cagr, sharpe, sortino, max_drawdown, win_rate, trades, total_pnl
                 FROM backtest_metrics WHERE name = ?
                 ORDER BY CASE kind WHEN 'book' THEN 0 WHEN 'strategy' THEN 1 ELSE 2 END, book",
            )
            .map_err(q)?;
        let rows = s
            .query_map([&name], |r| {
                Ok(BookMetrics {
                    book: r.get(0)?,
                    kind: r.get(1)?,
                    total_return: r.get(2)?,
                    cagr: r.get(3)?,
                    sharpe: r.get(4)?,
                    sortino: r.get(5)?,
                    max_drawdown: r.get(6)?,
                    win_rate: r.get(7)?,
                    trades: r.get(8)?,
                    total_pnl: r.get(9)?,
                })
            })
            .map_err(q)?;
        rows.collect::<Result<_, _>>().map_err(q)?
    };
    let sortino = books
        .iter()
        .find(|b| b.kind == "book")
        .and_then(|b| b.sortino);
    let equity: Vec<(NaiveDate, f64)> = {
        let mut s = conn
            .prepare(
                "SELECT as_of, equity FROM backtest_sessions WHERE equity IS NOT NULL ORDER BY as_of",
            )
            .map_err(q)?;
        let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(q)?;
        rows.collect::<Result<_, _>>().map_err(q)?
    };
    Ok(Row {
        name,
        path: path.to_path_buf(),
        overrides,
        from,
        to,
        sessions_done,
        sessions_total,
        status,
        source,
        seed,
        config_hash,
        total_return,
        cagr,
        sharpe,
        sortino,
        max_drawdown,
        win_rate,
        trades,
        final_equity,
        books,
        equity,
    })
}

/// The pseudo-keys compared besides the overrides: shown as columns only when the
/// stores differ in them.
const PSEUDO: &[&str] = &["--from", "--to", "--source", "--seed"];

/// Backtests side by side.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub title: String,
    /// The keys whose value differs between the rows: the table's leading columns.
    pub keys: Vec<String>,
    /// What every row shares: key and value.
    pub fixed: Vec<(String, String)>,
    pub rows: Vec<Row>,
    /// Files that were not compared, and why.
    pub skipped: Vec<(PathBuf, String)>,
}

fn pseudo_value(r: &Row, key: &str) -> Option<String> {
    match key {
        "--from" => Some(r.from.to_string()),
        "--to" => Some(r.to.to_string()),
        "--source" => Some(r.source.clone()),
        "--seed" => Some(r.seed.clone()),
        _ => None,
    }
}

/// A row's value of a key: its override (the last one given), a pseudo-key's value, or
/// `None` when the job file's own value applies.
fn value_of(r: &Row, key: &str) -> Option<String> {
    if key.starts_with("--") {
        return pseudo_value(r, key);
    }
    r.overrides
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// What a missing override shows.
const FROM_FILE: &str = "(job file)";

/// Numbers by value, then text; a missing value last.
fn cmp_values(a: &Option<String>, b: &Option<String>) -> CmpOrdering {
    match (a, b) {
        (None, None) => CmpOrdering::Equal,
        (None, Some(_)) => CmpOrdering::Greater,
        (Some(_), None) => CmpOrdering::Less,
        (Some(x), Some(y)) => match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(p), Ok(q)) => p.partial_cmp(&q).unwrap_or(CmpOrdering::Equal),
            (Ok(_), Err(_)) => CmpOrdering::Less,
            (Err(_), Ok(_)) => CmpOrdering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        },
    }
}

impl Comparison {
    /// Compare these stores' rows: the varying keys as columns (in the order they are
    /// first given, over the rows by name), the rows ordered by those keys' values.
    pub fn new(title: &str, mut rows: Vec<Row>, skipped: Vec<(PathBuf, String)>) -> Comparison {
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        let mut all: Vec<String> = Vec::new();
        for r in &rows {
            for (k, _) in &r.overrides {
                if !all.contains(k) {
                    all.push(k.clone());
                }
            }
        }
        all.extend(PSEUDO.iter().map(|s| s.to_string()));
        let mut keys = Vec::new();
        let mut fixed = Vec::new();
        for k in all {
            let vals: Vec<Option<String>> = rows.iter().map(|r| value_of(r, &k)).collect();
            if vals.windows(2).all(|w| w[0] == w[1]) {
                if let Some(Some(v)) = vals.first() {
                    fixed.push((k, v.clone()));
                }
            } else {
                keys.push(k);
            }
        }
        rows.sort_by(|a, b| {
            keys.iter()
                .map(|k| cmp_values(&value_of(a, k), &value_of(b, k)))
                .find(|o| *o != CmpOrdering::Equal)
                .unwrap_or(CmpOrdering::Equal)
                .then_with(|| a.name.cmp(&b.name))
        });
        Comparison {
            title: title.to_string(),
            keys,
            fixed,
            rows,
            skipped,
        }
    }

    /// A row's value of a column key, as shown.
    pub fn value(&self, r: &Row, key: &str) -> String {
        value_of(r, key).unwrap_or_else(|| FROM_FILE.to_string())
    }

    /// The shared settings on one line: `range 2024-06-03 to 2024-06-14, source sim, ...`.
    pub fn fixed_line(&self) -> String {
        let get = |k: &str| {
            self.fixed
                .iter()
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.clone())
        };
        let mut parts = Vec::new();
        if let (Some(a), Some(b)) = (get("--from"), get("--to")) {
            parts.push(format!("{a} to {b}"));
        }
        if let Some(s) = get("--source") {
            parts.push(format!("source {s}"));
        }
        if let Some(s) = get("--seed") {
            parts.push(format!("seed {s}"));
        }
        let sets: Vec<String> = self
            .fixed
            .iter()
            .filter(|(k, _)| !k.starts_with("--"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !sets.is_empty() {
            parts.push(format!("--set {}", sets.join(", ")));
        }
        parts.join("; ")
    }

    fn headers(&self) -> Vec<String> {
        let mut h = vec!["name".to_string()];
        h.extend(self.keys.iter().cloned());
        h.extend(
            [
                "sessions",
                "status",
                "total return",
                "annualized",
                "Sharpe",
                "Sortino",
                "max drawdown",
                "win rate",
                "trades",
                "final equity",
            ]
            .map(String::from),
        );
        h
    }

    /// Each row's cells as shown (terminal and page).
    fn cells(&self, r: &Row) -> Vec<String> {
        let pct = crate::report::pct;
        let ratio = crate::report::ratio;
        let mut c = vec![r.name.clone()];
        c.extend(self.keys.iter().map(|k| self.value(r, k)));
        c.push(format!("{}/{}", r.sessions_done, r.sessions_total));
        c.push(r.status.clone());
        c.push(pct(r.total_return));
        c.push(pct(r.cagr));
        c.push(ratio(r.sharpe));
        c.push(ratio(r.sortino));
        c.push(pct(r.max_drawdown));
        c.push(
            r.win_rate
                .map(|w| format!("{:.1}%", w * 100.0))
                .unwrap_or_else(|| "n/a".into()),
        );
        c.push(
            r.trades
                .map(|t| t.to_string())
                .unwrap_or_else(|| "n/a".into()),
        );
        c.push(
            r.final_equity
                .map(|e| format!("${}", crate::report::money(e)))
                .unwrap_or_else(|| "n/a".into()),
        );
        c
    }

    /// The comparison for the terminal: the shared settings, then an aligned table.
    pub fn text(&self) -> String {
        let head = self.headers();
        let body: Vec<Vec<String>> = self.rows.iter().map(|r| self.cells(r)).collect();
        let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
        for row in &body {
            for (w, c) in width.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        // Text columns to the left, figures to the right.
        let left = 1 + self.keys.len() + 2;
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                let pad = w.saturating_sub(c.chars().count());
                if i < left {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
            }
            s.trim_end().to_string()
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} backtests compared ({}){}",
            self.rows.len(),
            self.title,
            match self.fixed_line() {
                s if s.is_empty() => String::new(),
                s => format!(": {s}"),
            }
        );
        let _ = writeln!(out, "{}", line(&head));
        let _ = writeln!(
            out,
            "{}",
            width
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("  ")
        );
        for row in &body {
            let _ = writeln!(out, "{}", line(row));
        }
        for (p, why) in &self.skipped {
            let _ = writeln!(out, "skipped {}: {why}", p.display());
        }
        out
    }

    /// The comparison as CSV: a row per backtest, the figures unrounded (fractions:
    /// 0.0123 is 1.23%), so two comparisons of the same stores are equal byte for byte.
    pub fn csv(&self) -> Result<String, String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut head = vec!["name".to_string()];
        head.extend(self.keys.iter().cloned());
        head.extend(
            [
                "from",
                "to",
                "sessions_done",
                "sessions_total",
                "status",
                "total_return",
                "annualized_return",
                "sharpe",
                "sortino",
                "max_drawdown",
                "win_rate",
                "trades",
                "final_equity",
                "config_hash",
            ]
            .map(String::from),
        );
        w.write_record(&head).map_err(|e| e.to_string())?;
        let f = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        for r in &self.rows {
            let mut rec = vec![r.name.clone()];
            rec.extend(self.keys.iter().map(|k| self.value(r, k)));
            rec.extend([
                r.from.to_string(),
                r.to.to_string(),
                r.sessions_done.to_string(),
                r.sessions_total.to_string(),
                r.status.clone(),
                f(r.total_return),
                f(r.cagr),
                f(r.sharpe),
                f(r.sortino),
                f(r.max_drawdown),
                f(r.win_rate),
                r.trades.map(|t| t.to_string()).unwrap_or_default(),
                f(r.final_equity),
                r.config_hash.clone(),
            ]);
            w.write_record(&rec).map_err(|e| e.to_string())?;
        }
        let bytes = w.into_inner().map_err(|e| e.to_string())?;
        String::from_utf8(bytes).map_err(|e| e.to_string())
    }

    /// The index of the best row by a figure (highest), if any row has it.
    fn best(&self, f: impl Fn(&Row) -> Option<f64>) -> Option<usize> {
        let vals: Vec<Option<f64>> = self
            .rows
            .iter()
            .map(|r| f(r).filter(|x| x.is_finite()))
            .collect();
        if vals.iter().flatten().count() < 2 {
            return None;
        }
        vals.iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|x| (i, x)))
            .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(CmpOrdering::Equal))
            .map(|(i, _)| i)
    }

    /// The self-contained comparison page: the table (the best of each figure marked),
    /// the equity curves, the metrics per strategy and what the backtests share.
    pub fn html(&self) -> String {
        const PALETTE: [[u8; 3]; 10] = [
            [9, 105, 218],
            [207, 34, 46],
            [26, 127, 55],
            [130, 80, 223],
            [188, 76, 0],
            [27, 124, 131],
            [191, 57, 137],
            [77, 45, 0],
            [87, 96, 106],
            [154, 103, 0],
        ];
        let mut o = String::with_capacity(64 * 1024);
        let title = escape(&self.title);
        let _ = write!(
            o,
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>optdesk sweep — {title}</title><style>{}{CSS}</style></head><body>\
             <header><h1>optdesk sweep — {title}</h1><p>{} backtests{}</p></header><main>",
            crate::report::font::font_face_css(),
            self.rows.len(),
            match self.fixed_line() {
                s if s.is_empty() => String::new(),
                s => format!(" · {}", escape(&s)),
            }
        );
        // The comparison table.
        o.push_str(
            "<section id=\"comparison\"><h2>Comparison</h2><table class=\"comparison\"><thead><tr>",
        );
        for h in self.headers() {
            let _ = write!(o, "<th>{}</th>", escape(&h));
        }
        o.push_str("</tr></thead><tbody>");
        let first_figure = 1 + self.keys.len() + 2;
        let best: Vec<Option<usize>> = vec![
            self.best(|r| r.total_return),
            self.best(|r| r.cagr),
            self.best(|r| r.sharpe),
            self.best(|r| r.sortino),
            self.best(|r| r.max_drawdown),
            self.best(|r| r.win_rate),
        ];
        for (i, r) in self.rows.iter().enumerate() {
            o.push_str("<tr>");
            for (j, c) in self.cells(r).iter().enumerate() {
                let is_best =
                    j >= first_figure && best.get(j - first_figure).copied().flatten() == Some(i);
                let class = match (j >= first_figure, is_best) {
                    (_, true) => " class=\"num best\"",
                    (true, false) => " class=\"num\"",
                    _ => "",
                };
                let _ = write!(o, "<td{class}>{}</td>", escape(c));
            }
            o.push_str("</tr>");
        }
        o.push_str("</tbody></table><p class=\"note\">Bold: the best of the column. A backtest's tearsheet is <code>NAME.html</code> beside its store (<code>optdesk backtest report NAME</code>); its configuration, <code>optdesk backtest show NAME</code>.</p></section>");
        // Equity curves.
        let series: Vec<crate::report::chart::Series> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| crate::report::chart::Series {
                name: if self.keys.is_empty() {
                    r.name.clone()
                } else {
                    self.keys
                        .iter()
                        .map(|k| {
                            format!("{}={}", k.rsplit('.').next().unwrap_or(k), self.value(r, k))
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                },
                color: PALETTE[i % PALETTE.len()],
                points: r.equity.clone(),
            })
            .collect();
        o.push_str("<section id=\"equity\"><h2>Equity after each session</h2>");
        o.push_str(&crate::report::svg::line_chart(
            "sweep-equity",
            "Equity after each session",
            &series,
            960,
            380,
            crate::report::chart::YFormat::Money,
        ));
        o.push_str("</section>");
        // Per strategy.
        let has_strategies = self
            .rows
            .iter()
            .any(|r| r.books.iter().any(|b| b.kind == "strategy"));
        if has_strategies {
            o.push_str(
                "<section id=\"strategies\"><h2>Per strategy</h2><table><thead><tr><th>name</th>",
            );
            for k in &self.keys {
                let _ = write!(o, "<th>{}</th>", escape(k));
            }
            o.push_str("<th>strategy</th><th>total return</th><th>Sharpe</th><th>max drawdown</th><th>win rate</th><th>trades</th><th>P&amp;L</th></tr></thead><tbody>");
            for r in &self.rows {
                for b in r.books.iter().filter(|b| b.kind == "strategy") {
                    let _ = write!(o, "<tr><td>{}</td>", escape(&r.name));
                    for k in &self.keys {
                        let _ = write!(o, "<td>{}</td>", escape(&self.value(r, k)));
                    }
                    let _ = write!(
                        o,
                        "<td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                        escape(&b.book),
                        escape(&crate::report::pct(b.total_return)),
                        escape(&crate::report::ratio(b.sharpe)),
                        escape(&crate::report::pct(b.max_drawdown)),
                        escape(
                            &b.win_rate
                                .map(|w| format!("{:.1}%", w * 100.0))
                                .unwrap_or_else(|| "n/a".into())
                        ),
                        b.trades.map(|t| t.to_string()).unwrap_or_else(|| "n/a".into()),
                        escape(
                            &b.total_pnl
                                .map(crate::report::signed_money)
                                .unwrap_or_else(|| "n/a".into())
                        ),
                    );
                }
            }
            o.push_str("</tbody></table></section>");
        }
        // What they share, and what was left out.
        o.push_str("<section id=\"settings\"><h2>Settings</h2><table><thead><tr><th>setting</th><th>value</th></tr></thead><tbody>");
        for (k, v) in &self.fixed {
            let _ = write!(o, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(v));
        }
        for k in &self.keys {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>varies (a column above)</td></tr>",
                escape(k)
            );
        }
        o.push_str("</tbody></table><h3>Stores</h3><table><thead><tr><th>name</th><th>configuration hash</th><th>store</th></tr></thead><tbody>");
        for r in &self.rows {
            let _ = write!(
                o,
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                escape(&r.name),
                escape(&r.config_hash),
                escape(&r.path.display().to_string())
            );
        }
        o.push_str("</tbody></table>");
        if !self.skipped.is_empty() {
            o.push_str("<h3>Not compared</h3><ul>");
            for (p, why) in &self.skipped {
                let _ = write!(
                    o,
                    "<li><code>{}</code>: {}</li>",
                    escape(&p.display().to_string()),
                    escape(why)
                );
            }
            o.push_str("</ul>");
        }
        let _ = write!(
            o,
            "</section></main><footer>optdesk {}</footer></body></html>",
            escape(crate::VERSION)
        );
        o
    }

    /// Write the page to `html` and the CSV beside it (`.csv` for `.html`), each whole
    /// or not at all; the two paths.
    pub fn write(&self, html: &Path) -> Result<(PathBuf, PathBuf), String> {
        let csv_path = html.with_extension("csv");
        if let Some(dir) = html.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the folder {}: {e}", dir.display()))?;
        }
        write_whole(html, &self.html())?;
        write_whole(&csv_path, &self.csv()?)?;
        Ok((html.to_path_buf(), csv_path))
    }
}

fn write_whole(path: &Path, text: &str) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
}

const CSS: &str = "
body{margin:0;background:#f6f8fa;color:#24292f;font-family:'DejaVu Sans',system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif}
header{background:#24292f;color:#fff;padding:16px 24px}
header h1{margin:0;font-size:20px}
header p{margin:6px 0 0 0;font-size:13px;color:#d0d7de}
main{max-width:1200px;margin:0 auto;padding:16px 24px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 16px;margin:16px 0;overflow-x:auto}
section h2{font-size:16px;margin:0 0 8px 0}
section h3{font-size:14px;margin:16px 0 6px 0}
svg.chart{width:100%;height:auto;display:block}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;color:#57606a;border-bottom:2px solid #d0d7de;padding:4px 8px;vertical-align:bottom}
td{border-bottom:1px solid #eaeef2;padding:4px 8px;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:700}
p.note{color:#57606a;font-size:13px}
footer{color:#57606a;font-size:12px;text-align:center;padding:16px}
";

/// Compare the stores at `paths` (a sweep's points): the ones that are not backtest
/// stores, or are being written, are listed as skipped.
pub fn compare_stores(
    title: &str,
    paths: &[PathBuf],
    timeout: Duration,
) -> Result<Comparison, BacktestError> {
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for p in paths {
        match read_store(p, timeout) {
            Ok(r) => rows.push(r),
            Err(why) => skipped.push((p.clone(), why)),
        }
    }
    if rows.is_empty() {
        let why: Vec<String> = skipped
            .iter()
            .map(|(p, w)| format!("{}: {w}", p.display()))
            .collect();
        return Err(BacktestError::Refused(format!(
            "no backtest to compare{}",
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join("; "))
            }
        )));
    }
    Ok(Comparison::new(title, rows, skipped))
}

/// `optdesk backtest collect DIR [--name PREFIX]`: every backtest store in `dir`
/// (`*.duckdb`; with a prefix, only `<prefix>-*.duckdb`) compared.
pub fn collect(
    dir: &Path,
    prefix: Option<&str>,
    timeout: Duration,
) -> Result<Comparison, BacktestError> {
    let refuse = |m: String| Err(BacktestError::Refused(m));
    if !dir.is_dir() {
        return refuse(format!(
            "collect {}: no such folder (give the folder of the backtest stores, e.g. data/backtests)",
            dir.display()
        ));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        BacktestError::Refused(format!("collect {}: cannot list it: {e}", dir.display()))
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "duckdb"))
        .filter(|p| match prefix {
            Some(pre) => p
                .file_stem()
                .map(|s| s.to_string_lossy().starts_with(&format!("{pre}-")))
                .unwrap_or(false),
            None => true,
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return refuse(format!(
            "collect {}: no backtest stores ({}.duckdb) there",
            dir.display(),
            match prefix {
                Some(p) => format!("{p}-*"),
                None => "*".into(),
            }
        ));
    }
    let title = match prefix {
        Some(p) => p.to_string(),
        None => dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| dir.display().to_string()),
    };
    compare_stores(&title, &paths, timeout)
        .map_err(|e| BacktestError::Refused(format!("collect {}: {e}", dir.display())))
}

/// Where `collect` writes its page by default: `<dir>/<prefix>.sweep.html`, or
/// `<dir>/collect.sweep.html` without a prefix.
pub fn collect_page(dir: &Path, prefix: Option<&str>) -> PathBuf {
    dir.join(format!("{}.sweep.html", prefix.unwrap_or("collect")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_split_at_top_level_commas() {
        let g = parse_grid("dispersion.z_entry=1.0, 1.5,2.0").unwrap();
        assert_eq!(g.key, "dispersion.z_entry");
        assert_eq!(g.values, ["1.0", "1.5", "2.0"]);
        let g = parse_grid("fetch_chains.params.symbols=[\"SPY\",\"QQQ\"],[\"IWM\"]").unwrap();
        assert_eq!(g.values, ["[\"SPY\",\"QQQ\"]", "[\"IWM\"]"]);
        assert!(parse_grid("dispersion.z_entry")
            .unwrap_err()
            .contains("expected"));
        assert!(parse_grid("dispersion.z_entry=")
            .unwrap_err()
            .contains("no values"));
        assert!(parse_grid("dispersion.z_entry=1,,2")
            .unwrap_err()
            .contains("value 2 of 3 is empty"));
        assert!(parse_grid("dispersion.z_entry=1,1")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_grid("nosuch=1,2").unwrap_err().contains("nosuch"));
    }

    #[test]
    fn points_are_the_cartesian_product_with_readable_names() {
        let a = parse_grid("dispersion.z_entry=1.0,1.5").unwrap();
        let b = parse_grid("dispersion.hold_sessions=5,10,20").unwrap();
        let p = points("s", &[a.clone(), b.clone()], &[]).unwrap();
        assert_eq!(p.len(), 6);
        assert_eq!(p[0].name, "s-z_entry_1.0-hold_sessions_5");
        assert_eq!(p[5].name, "s-z_entry_1.5-hold_sessions_20");
        assert_eq!(
            p[1].values,
            [
                ("dispersion.z_entry".to_string(), "1.0".to_string()),
                ("dispersion.hold_sessions".to_string(), "10".to_string())
            ]
        );
        // Two keys ending alike keep their whole key; a value that is no name numbers.
        let c = parse_grid("call_premium.min_dte=10,20").unwrap();
        let d = parse_grid("cash_secured_put.min_dte=10").unwrap();
        let p = points("s", &[c, d], &[]).unwrap();
        assert_eq!(
            p[0].name,
            "s-call_premium.min_dte_10-cash_secured_put.min_dte_10"
        );
        let e = parse_grid("fetch_chains.params.symbols=[\"SPY\"],[\"SPY\",\"QQQ\"]").unwrap();
        let p = points("s", &[e], &[]).unwrap();
        assert_eq!(p[0].name, "s-symbols__SPY_");
        assert!(points("s", &[a.clone(), a.clone()], &[])
            .unwrap_err()
            .contains("two --grid"));
        assert!(points(
            "s",
            std::slice::from_ref(&a),
            &["dispersion.z_entry=3".into()]
        )
        .unwrap_err()
        .contains("same key"));
        assert!(points("bad name", &[b], &[])
            .unwrap_err()
            .contains("--name"));
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(
            shell_quote("dispersion.z_entry=1.5"),
            "dispersion.z_entry=1.5"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("x=[\"SPY\"]"), "'x=[\"SPY\"]'");
        assert_eq!(shell_quote(""), "''");
    }
}
