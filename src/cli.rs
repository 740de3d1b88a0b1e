//! The command line: parse, load the configuration, call into the library, print.

use crate::calendar;
use crate::clock;
use crate::config::Config;
use crate::jobs::{self, RunObserver, RunRecord, RunRequest, Status, Trigger};
use crate::report::export;
use crate::schedule::{self, Target};
use crate::store::{query, Store};
use anyhow::{bail, Context, Result};
use chrono::{Duration, NaiveDate, NaiveTime};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set once stdout's reader has gone away (`optdesk status | head -1`).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// `println!` that treats a closed stdout as the reader's choice, as Unix tools do: the
/// rest of the output is dropped and the command carries on (a run still finishes and
/// records its jobs). Any other write error is fatal, as with `println!`.
macro_rules! outln {
    ($($t:tt)*) => {
        out_line(format_args!($($t)*))
    };
}

fn out_line(args: std::fmt::Arguments) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        } else {
            panic!("failed printing to stdout: {e}");
        }
    }
}

/// Whether an error is stdout's reader going away (then the command ends quietly, 0).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A command line that names something that does not exist (an unknown job): exit 2,
/// as clap's own usage errors do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A command stopped on request (Ctrl-C) after finishing what it was doing: exit 130.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);

/// An error and its causes on one line, each cause once.
fn error_line(e: &anyhow::Error) -> String {
    crate::config::redact_secrets(&crate::text::error_chain(e.as_ref()))
}

const ABOUT: &str = "optdesk — an options paper-trading desk that runs itself.

Idempotent batch jobs (fetch option chains, compute implied vols and implied
correlation, ...) run on the NYSE calendar and read and write one DuckDB file, the
complete audit trail. Out of the box it runs on a built-in simulated market, offline.

First run:   optdesk run daily --as-of 2025-03-14
Then:        optdesk status
             optdesk sql \"SELECT * FROM job_runs ORDER BY run_id DESC LIMIT 5\"";

#[derive(Parser, Debug)]
#[command(name = "optdesk", version, about = ABOUT, long_about = None)]
pub struct Cli {
    /// The store (DuckDB file).
    #[arg(
        long,
        env = "OPTDESK_DB",
        default_value = "data/optdesk.duckdb",
        global = true,
        value_name = "PATH"
    )]
    pub db: PathBuf,
    /// The configuration folder (desk.toml, one <job>.toml per job) [default: jobs]
    #[arg(long, env = "OPTDESK_JOBS", global = true, value_name = "DIR")]
    pub jobs: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List jobs, or run one job by hand.
    Job {
        #[command(subcommand)]
        cmd: JobCmd,
    },
    /// Run the daily pipeline (every job in order) for one session, or the whole
    /// session with its slots.
    Run {
        #[command(subcommand)]
        what: RunWhat,
    },
    /// The last run of each job and its outcome, and the next scheduled firings. With
    /// --check, for an outside monitor: exit 1 when the last session's daily run is
    /// missing or failed 15 minutes after its time.
    Status {
        /// Only check the last due session's daily run; exit 0 when it finished, 1 when
        /// it is missing or failed (one line says which).
        #[arg(long)]
        check: bool,
        /// With --check: check this session instead of the last one due.
        #[arg(long, value_parser = calendar::parse_date, requires = "check")]
        as_of: Option<NaiveDate>,
    },
    /// The pre-live checklist from the store: win rate, profit factor, drawdown, failed
    /// runs, the drills (`selftest`, an IB reconnect) and the premium bots' compliant
    /// sessions, each line PASS, FAIL or NOT TESTED with its figure (exit 1 unless all pass).
    Checklist {
        /// One strategy's trades and streak instead of the whole book's.
        #[arg(long)]
        strategy: Option<String>,
    },
    /// Run the kill -9 recovery and circuit-breaker drills on a scratch store (the
    /// simulated market, your configuration) and record them for `checklist`.
    Selftest {
        /// Drill on the sessions before this date (default: today, New York).
        #[arg(long)]
        as_of: Option<NaiveDate>,
    },
    /// Verify the trading record reconciles to the cent (exit 1 with the discrepancies).
    Check {
        /// Also read every block of every table (verifying DuckDB's block checksums) and
        /// name any damaged table.
        #[arg(long)]
        deep: bool,
        /// Also compare the store's positions and cash with the broker's
        /// (`[broker] kind`), naming every difference.
        #[arg(long)]
        broker: bool,
    },
    /// Interactive Brokers: `optdesk ib check` tests the connection to TWS/IB Gateway.
    Ib {
        #[command(subcommand)]
        cmd: IbCmd,
    },
    /// Copy the store into a new folder under its write lock, with a manifest (schema
    /// version, optdesk version, SHA-256 of each file); the copy is read back whole.
    Backup {
        /// The backup folder (new or empty).
        dir: PathBuf,
    },
    /// Delete the option quotes and analytics of sessions before a date that nothing
    /// used (keeping every traded or held contract's quotes and the chain slices each
    /// strategy scanned), then rewrite the store compactly. Recorded in `prunes`.
    Prune {
        /// Prune sessions before this date, YYYY-MM-DD (at most the last stored session).
        #[arg(long, value_parser = calendar::parse_date)]
        quotes_before: NaiveDate,
        /// Count what would be deleted and kept; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Load vendor files (option chains, daily and minute bars) into the store's archive,
    /// for the `replay` source. The layout is detected from each file's header (LEAN
    /// zips from their names).
    Import {
        /// CSV files (plain or gzip), Parquet files, and zips: LEAN daily option zips
        /// (`<ticker>_<year>_quote_<style>.zip`, trade and open-interest zips beside it
        /// joined), LEAN daily equity zips, or a zip of one file (DataShop's).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Force a layout: optionsdx, datashop, deltaneutral, deltaneutral-l3,
        /// deltaneutral-lower, lean-universe, lean-chain, lean-daily-bars, minute-bars,
        /// yahoo-bars, bars, iv-history, correlation-history.
        #[arg(long)]
        layout: Option<String>,
        /// The underlying, for files that do not name it (OptionsDX, a bar file without a
        /// symbol column) when the file name does not either; the index of a
        /// correlation history (QQQ by default).
        #[arg(long)]
        symbol: Option<String>,
        /// A chain in a layout of its own, one row per contract: which column holds each
        /// field, `quote_date=Date,expiry=Expiration,strike=Strike,right=Type,bid=Bid,
        /// ask=Ask` (required) and any of underlying, root, bid_size, ask_size, last,
        /// volume, open_interest, underlying_price, iv, delta, gamma, theta, vega.
        #[arg(long)]
        map: Option<String>,
    },
    /// Rebuild the store named by --db from a backup folder, after verifying its checksums.
    Restore {
        /// The backup folder (written by `optdesk backup`).
        dir: PathBuf,
        /// Replace an existing store at --db.
        #[arg(long)]
        force: bool,
    },
    /// Close every open position at the session's snapshot quotes (recorded like a job).
    Flatten {
        /// The session whose snapshot prices the closes, YYYY-MM-DD [default: today in New York]
        #[arg(long, value_parser = calendar::parse_date)]
        as_of: Option<NaiveDate>,
    },
    /// The kill switch: `on` halts new entries (creates the kill file), `off` resumes.
    Kill {
        #[arg(value_enum)]
        state: KillState,
    },
    /// Write files from the store: `export seed` the files the replaced systems wrote,
    /// `export table` one table or view as Parquet or CSV.
    Export {
        #[command(subcommand)]
        what: ExportWhat,
    },
    /// Open positions, with the latest mid and unrealized P&L.
    Positions,
    /// Fills (trades, settlements, assignments) with their orders.
    Trades {
        /// First date, YYYY-MM-DD
        #[arg(long, value_parser = calendar::parse_date)]
        from: Option<NaiveDate>,
        /// Last date, YYYY-MM-DD
        #[arg(long, value_parser = calendar::parse_date)]
        to: Option<NaiveDate>,
    },
    /// Run one read-only SQL query against the store.
    Sql {
        /// The query, e.g. "SELECT job, status, message FROM job_runs ORDER BY run_id DESC LIMIT 10"
        query: String,
        #[arg(long, value_enum, default_value_t = query::Format::Table)]
        format: query::Format,
    },
    /// The desk calculator: implied vols and greeks for a whole CSV file.
    ///
    /// Input columns: right (C/P), spot, strike, t_years, rate, div_yield, and price (to
    /// solve the IV) or vol (to price). Output: the input columns plus iv, price, delta,
    /// gamma, vega (per 1.00 of vol), theta (per calendar day), rho (per 1.00 of rate)
    /// and note (why a row has no IV).
    Calc {
        /// The input CSV file.
        #[arg(long, value_name = "FILE.csv")]
        input: PathBuf,
        /// Where to write the result [default: stdout]. Written only when the whole file is valid.
        #[arg(long, value_name = "FILE.csv")]
        output: Option<PathBuf>,
    },
    /// Regenerate the HTML dashboard (data/dashboard.html) for a stored day.
    Report {
        /// The session, YYYY-MM-DD [default: the last day with a portfolio snapshot]
        #[arg(long, value_parser = calendar::parse_date)]
        as_of: Option<NaiveDate>,
        /// Where to write it [default: email_report's params.dashboard, data/dashboard.html]
        #[arg(long, value_name = "FILE.html")]
        out: Option<PathBuf>,
        /// Open it in the default browser afterwards.
        #[arg(long)]
        open: bool,
    },
    /// Replay the daily pipeline over past sessions into a store of its own
    /// (data/backtests/<name>.duckdb); `backtest list` and `backtest show NAME` read the
    /// catalogue, `backtest sweep` runs one per point of a grid and `backtest collect`
    /// compares them. Ctrl-C stops after the current session; the same command resumes.
    #[command(args_conflicts_with_subcommands = true)]
    Backtest {
        #[command(subcommand)]
        cmd: Option<BacktestCmd>,
        #[command(flatten)]
        args: BacktestArgs,
    },
    /// Print NYSE sessions with their open and close (New York time).
    Calendar {
        /// First date, YYYY-MM-DD [default: today]
        #[arg(long, value_parser = calendar::parse_date)]
        from: Option<NaiveDate>,
        /// Last date, YYYY-MM-DD [default: 30 days after --from]
        #[arg(long, value_parser = calendar::parse_date)]
        to: Option<NaiveDate>,
        #[arg(long, value_enum, default_value_t = CalFormat::Table)]
        format: CalFormat,
    },
    /// The long-running scheduler: fires the daily pipeline and intraday slots on NYSE
    /// sessions (America/New_York). With --plan, print the next firings instead.
    Schedule {
        /// Print the next firings without running anything.
        #[arg(long)]
        plan: bool,
        /// Calendar days ahead to plan.
        #[arg(long, default_value_t = 10)]
        days: u32,
        /// Plan from this New York date or date-time (YYYY-MM-DD or YYYY-MM-DDTHH:MM) [default: now]
        #[arg(long)]
        from: Option<String>,
        /// Testing: treat today as this date (time of day stays real).
        #[arg(long, hide = true, value_parser = calendar::parse_date)]
        pretend_date: Option<NaiveDate>,
        /// Also serve the live dashboard at ADDR (HOST:PORT) [default: 127.0.0.1:8640].
        /// Any address but loopback needs OPTDESK_DASHBOARD_TOKEN.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::serve::DEFAULT_ADDR)]
        serve: Option<String>,
    },
    /// Serve the live dashboard read-only, without the daemon (the store is opened only
    /// while a request is answered). Any address but loopback needs OPTDESK_DASHBOARD_TOKEN.
    Serve {
        /// HOST:PORT to listen on.
        #[arg(long, value_name = "ADDR", default_value = crate::serve::DEFAULT_ADDR)]
        addr: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// List the jobs, what they write and whether they are enabled.
    List,
    /// Run one job for one session.
    Run {
        /// The job's name (see `optdesk job list`).
        name: String,
        /// The session, YYYY-MM-DD [default: today in New York]
        #[arg(long, value_parser = calendar::parse_date)]
        as_of: Option<NaiveDate>,
        /// Intraday slot, HH:MM New York time, within the session [default: the daily snapshot, schedule.daily]
        #[arg(long, value_parser = parse_slot)]
        slot: Option<NaiveTime>,
        /// Compute and report, then roll back: nothing but the job_runs row is written.
        #[arg(long)]
        dry_run: bool,
        /// email_report: send the day's report again even if it was already sent.
        #[arg(long)]
        resend: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct BacktestArgs {
    /// First session, YYYY-MM-DD.
    #[arg(long, value_parser = calendar::parse_date)]
    pub from: Option<NaiveDate>,
    /// Last session, YYYY-MM-DD.
    #[arg(long, value_parser = calendar::parse_date)]
    pub to: Option<NaiveDate>,
    /// The backtest's name (its store is data/backtests/<name>.duckdb) [default: <from>_<to>_<config hash>]
    #[arg(long)]
    pub name: Option<String>,
    /// The market-data source [default: desk.toml's desk.source]; backtests replay the sim.
    #[arg(long)]
    pub source: Option<String>,
    /// The simulated market's seed [default: desk.toml's sim.seed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Change one key for this backtest only: `<strategy>.<key>=value` (its [params]),
    /// `<job>.<table>.<key>=value` (e.g. select_trades.risk.max_loss_per_trade=3000) or
    /// `desk.<table>.<key>=value`. Repeatable.
    #[arg(long = "set", value_name = "NAME.KEY=VALUE")]
    pub set: Vec<String>,
    /// Option quotes kept of past sessions: traded (the retention rule's: traded or held
    /// contracts and the chains strategies scanned), all, or none (the rule's only, the
    /// last session's too).
    #[arg(long, value_enum, default_value_t = KeepQuotesArg::Traded)]
    pub keep_quotes: KeepQuotesArg,
    /// Discard an existing store of this name and start again.
    #[arg(long)]
    pub restart: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeepQuotesArg {
    Traded,
    All,
    None,
}

#[derive(Subcommand, Debug)]
pub enum BacktestCmd {
    /// The catalogue: every backtest with its status and headline metrics.
    List,
    /// One backtest: its catalogue row and its metrics per strategy.
    Show {
        /// The backtest's name (see `optdesk backtest list`).
        name: String,
    },
    /// One backtest's tearsheet: a self-contained HTML page (equity against the
    /// benchmarks, drawdown, monthly returns, metrics per strategy, exposure and greeks,
    /// risk refusals by rule, the trade list) from its store.
    Report {
        /// The backtest's name (see `optdesk backtest list`).
        name: String,
        /// Where to write it [default: beside its store, data/backtests/<name>.html]
        #[arg(long, value_name = "FILE.html")]
        out: Option<PathBuf>,
    },
    /// A backtest per point of a grid of overrides (every combination of the --grid
    /// values), several at once, then one comparison table and page
    /// (data/backtests/<prefix>.sweep.html and .csv). Running it again resumes it.
    Sweep(SweepArgs),
    /// Compare finished backtest stores (the *.duckdb of DIR, e.g. the points of a
    /// sweep run elsewhere from `sweep --emit`): the same table and page as `sweep`.
    Collect {
        /// The folder of backtest stores.
        dir: PathBuf,
        /// Only the stores named <PREFIX>-*.duckdb (a sweep's points).
        #[arg(long, value_name = "PREFIX")]
        name: Option<String>,
        /// Where to write the page (the CSV beside it) [default: DIR/<PREFIX>.sweep.html, or DIR/collect.sweep.html]
        #[arg(long, value_name = "FILE.html")]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// First session, YYYY-MM-DD.
    #[arg(long, value_parser = calendar::parse_date)]
    pub from: NaiveDate,
    /// Last session, YYYY-MM-DD.
    #[arg(long, value_parser = calendar::parse_date)]
    pub to: NaiveDate,
    /// A key and its values, as for --set: `dispersion.z_entry=1.0,1.5,2.0` (TOML
    /// values; a comma inside [...] or quotes belongs to the value). Repeatable: the
    /// points are every combination.
    #[arg(long = "grid", value_name = "NAME.KEY=V1,V2,...", required = true)]
    pub grid: Vec<String>,
    /// A key set the same for every point (as for `backtest --set`). Repeatable.
    #[arg(long = "set", value_name = "NAME.KEY=VALUE")]
    pub set: Vec<String>,
    /// The points' name prefix: each point is the backtest <PREFIX>-<key>_<value>-...
    /// [default: sweep_<from>_<to>]
    #[arg(long, value_name = "PREFIX")]
    pub name: Option<String>,
    /// The market-data source [default: desk.toml's desk.source].
    #[arg(long)]
    pub source: Option<String>,
    /// The simulated market's seed [default: desk.toml's sim.seed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Option quotes kept of past sessions (as for `backtest`).
    #[arg(long, value_enum, default_value_t = KeepQuotesArg::Traded)]
    pub keep_quotes: KeepQuotesArg,
    /// Discard the points' existing stores and start them again.
    #[arg(long)]
    pub restart: bool,
    /// Points run at once [default: the number of CPUs].
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Write one `optdesk backtest` command per point to FILE (one a line, for a Slurm
    /// array job or a Kubernetes indexed Job) instead of running them; `backtest
    /// collect` then compares the stores they leave.
    #[arg(long, value_name = "FILE")]
    pub emit: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ExportWhat {
    /// The dispersion trader's files (signals/, positions/, historical_data/) and the
    /// daily paper trader's portfolio_data.json, from the store (see the README's
    /// "Exports" for each file's shape). Each file is written whole or not at all.
    Seed {
        /// The folder to write into (created if needed; files there are replaced).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Export as of this session, YYYY-MM-DD [default: the last session in the store]
        #[arg(long, value_parser = calendar::parse_date)]
        as_of: Option<NaiveDate>,
    },
    /// One table or view of the store (or of a backtest's store, with --db), through
    /// DuckDB's COPY ... TO.
    Table {
        /// The table or view, e.g. fills, orders, correlation (an unknown name lists them).
        name: String,
        #[arg(long, value_enum)]
        format: crate::report::export::TableFormat,
        /// Where to write it [default: NAME.parquet or NAME.csv in the current folder]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum IbCmd {
    /// Connect to TWS/IB Gateway (`[ibkr]`) and print the server version, the accounts,
    /// paper or live, the market-data type, and a quote of SPY and of one SPY option
    /// with IB's option computation; each failure with what to fix in TWS.
    Check {
        /// The underlying to quote.
        #[arg(long, default_value = "SPY")]
        symbol: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RunWhat {
    /// Every job in order; stops at the first failure and records the rest as skipped.
    Daily {
        /// The session, YYYY-MM-DD [default: today in New York]
        #[arg(long, value_parser = calendar::parse_date)]
        as_of: Option<NaiveDate>,
        /// Compute and report, then roll back each job's output.
        #[arg(long)]
        dry_run: bool,
        /// Send the day's report again even if it was already sent.
        #[arg(long)]
        resend: bool,
    },
    /// The daily pipeline and every slot firing of the session in time order (jobs in
    /// `job list` order within one time; the daily pipeline first at its own time), as
    /// the daemon would, without waiting for the clock. A re-run skips what is done, as
    /// `run daily` does.
    Session {
        /// The session, YYYY-MM-DD [default: today in New York]
        #[arg(long, value_parser = calendar::parse_date)]
        as_of: Option<NaiveDate>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KillState {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CalFormat {
    Table,
    Csv,
}

fn parse_slot(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s, "%H:%M")
        .map_err(|_| format!("'{s}' is not a time; expected HH:MM (New York), e.g. 15:30"))
}

/// Paths and settings every command shares.
pub struct Ctx {
    pub db: PathBuf,
    pub jobs_dir: PathBuf,
    pub jobs_explicit: bool,
}

impl Ctx {
    pub fn config(&self) -> Result<Config> {
        Ok(Config::load(&self.jobs_dir, self.jobs_explicit)?)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPTDESK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let secrets = Arc::new(crate::config::secrets());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || RedactingStderr(secrets.clone()))
        // Colour only on a terminal: cron and systemd append stderr to logs/daily.log.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let ctx = Ctx {
        db: cli.db.clone(),
        jobs_explicit: cli.jobs.is_some(),
        jobs_dir: cli.jobs.clone().unwrap_or_else(|| PathBuf::from("jobs")),
    };
    match dispatch(&ctx, cli.cmd) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// stderr for the log lines, with every secret in the environment redacted from each
/// (the fmt layer writes one event per write).
struct RedactingStderr(Arc<Vec<String>>);

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = crate::text::redact(&String::from_utf8_lossy(buf), &self.0);
        std::io::stderr().write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn today_ny() -> NaiveDate {
    clock::now_ny(None).date_naive()
}

fn holder() -> String {
    let args: Vec<String> = std::env::args().collect();
    let mut s = args.join(" ");
    s.truncate(200);
    s
}

fn dispatch(ctx: &Ctx, cmd: Cmd) -> Result<bool> {
    match cmd {
        Cmd::Job { cmd: JobCmd::List } => job_list(ctx),
        Cmd::Job {
            cmd:
                JobCmd::Run {
                    name,
                    as_of,
                    slot,
                    dry_run,
                    resend,
                },
        } => job_run(
            ctx,
            &name,
            as_of.unwrap_or_else(today_ny),
            slot,
            RunFlags { dry_run, resend },
            Trigger::Cli,
        ),
        Cmd::Run {
            what:
                RunWhat::Daily {
                    as_of,
                    dry_run,
                    resend,
                },
        } => run_daily(
            ctx,
            as_of.unwrap_or_else(today_ny),
            RunFlags { dry_run, resend },
            Trigger::Cli,
        ),
        Cmd::Run {
            what: RunWhat::Session { as_of },
        } => run_session(ctx, as_of.unwrap_or_else(today_ny)),
        Cmd::Report { as_of, out, open } => report(ctx, as_of, out, open),
        Cmd::Status { check: false, .. } => status(ctx),
        Cmd::Status { check: true, as_of } => status_check(ctx, as_of),
        Cmd::Checklist { strategy } => checklist(ctx, strategy.as_deref()),
        Cmd::Selftest { as_of } => selftest(ctx, as_of.unwrap_or_else(today_ny)),
        Cmd::Check { deep, broker } => {
            let ok = check(ctx, deep)?;
            Ok(if broker { check_broker(ctx)? && ok } else { ok })
        }
        Cmd::Ib {
            cmd: IbCmd::Check { symbol },
        } => ib_check(ctx, &symbol),
        Cmd::Backup { dir } => backup(ctx, &dir),
        Cmd::Restore { dir, force } => restore(ctx, &dir, force),
        Cmd::Import {
            paths,
            layout,
            symbol,
            map,
        } => import(
            ctx,
            &paths,
            layout.as_deref(),
            symbol.as_deref(),
            map.as_deref(),
        ),
        Cmd::Prune {
            quotes_before,
            dry_run,
        } => prune(ctx, quotes_before, dry_run),
        Cmd::Kill { state } => kill(ctx, state),
        Cmd::Flatten { as_of } => flatten(ctx, as_of.unwrap_or_else(today_ny)),
        Cmd::Export {
            what: ExportWhat::Seed { out, as_of },
        } => export_seed(ctx, &out, as_of),
        Cmd::Export {
            what: ExportWhat::Table { name, format, out },
        } => export_table(ctx, &name, format, out),
        Cmd::Positions => positions(ctx),
        Cmd::Trades { from, to } => trades(ctx, from, to),
        Cmd::Sql { query, format } => sql(ctx, &query, format),
        Cmd::Calc { input, output } => {
            let s = crate::calc::run_file(&input, output.as_deref())?;
            if output.is_some() {
                outln!(
                    "{} rows, {} with an IV, {} without (see the note column)",
                    s.rows,
                    s.solved,
                    s.unsolved
                );
            }
            Ok(true)
        }
        Cmd::Backtest { cmd, args } => match cmd {
            Some(BacktestCmd::List) => backtest_list(ctx),
            Some(BacktestCmd::Show { name }) => backtest_show(ctx, &name),
            Some(BacktestCmd::Report { name, out }) => backtest_report(ctx, &name, out),
            Some(BacktestCmd::Sweep(a)) => backtest_sweep(ctx, a),
            Some(BacktestCmd::Collect { dir, name, out }) => {
                backtest_collect(ctx, &dir, name.as_deref(), out)
            }
            None => backtest(ctx, args),
        },
        Cmd::Calendar { from, to, format } => {
            let from = from.unwrap_or_else(today_ny);
            let to = to.unwrap_or(from + Duration::days(30));
            print_calendar(from, to, format)
        }
        Cmd::Serve { addr } => serve(ctx, &addr),
        Cmd::Schedule {
            plan,
            days,
            from,
            pretend_date,
            serve,
        } => {
            if plan {
                let from = match from {
                    Some(s) => clock::parse_ny_datetime(&s).map_err(anyhow::Error::msg)?,
                    None => clock::now_ny(pretend_date),
                };
                print_plan(ctx, from, days)
            } else {
                daemon(ctx, pretend_date, serve.as_deref())
            }
        }
    }
}

fn job_list(ctx: &Ctx) -> Result<bool> {
    let config = ctx.config()?;
    let prepared = jobs::prepare_all(&config)?;
    outln!(
        "{:<14} {:<8} {:<12} what it does (writes)",
        "job",
        "enabled",
        "daily order"
    );
    let mut order = 0;
    for p in &prepared {
        let place = if p.def.daily {
            order += 1;
            order.to_string()
        } else {
            "slots only".to_string()
        };
        outln!(
            "{:<14} {:<8} {:<12} {} ({})",
            p.def.name,
            if p.enabled { "yes" } else { "no" },
            place,
            p.def.about,
            p.def.writes.join(", ")
        );
        for s in &p.slots {
            outln!("{:<14} {:<8} {:<12} intraday slot: {s}", "", "", "");
        }
    }
    Ok(true)
}

/// On a non-session, do nothing and say why.
fn closed_notice(as_of: NaiveDate) -> Result<Option<String>> {
    Ok(calendar::closed_reason(as_of)?)
}

/// What the command line and the daemon do with each recorded run: send its alerts
/// (a dry run or a skip sends none), then print its line.
struct PrintAndAlert;

impl RunObserver for PrintAndAlert {
    fn on_record(&self, store: &Store, config: &Config, rec: &RunRecord) {
        crate::report::alerts::after_run(store, config, rec);
        print_record(rec);
    }
}

fn print_record(r: &RunRecord) {
    let line = crate::config::redact_secrets(&format!(
        "  {:<19} {:<8} {:>9} rows {:>7.2}s  {}",
        r.job,
        r.status.as_str(),
        r.rows_written,
        r.seconds,
        r.message
    ));
    if r.status == Status::Failed {
        eprintln!("{line}");
    } else {
        outln!("{line}");
    }
    let _ = std::io::stdout().flush();
}

fn open_writer(ctx: &Ctx, config: &Config) -> Result<Store> {
    let timeout = std::time::Duration::from_secs(config.desk.desk.lock_timeout_secs);
    Ok(Store::open_write(&ctx.db, timeout, &holder())?)
}

fn header(what: &str, as_of: NaiveDate, dry_run: bool, ctx: &Ctx) -> Result<()> {
    let s = calendar::session(as_of)?.context("not a session")?;
    outln!(
        "optdesk {what} — session {as_of} ({}–{} New York{}), store {}{}",
        s.open.format("%H:%M"),
        s.close.format("%H:%M"),
        if s.is_early_close() {
            ", early close"
        } else {
            ""
        },
        ctx.db.display(),
        if dry_run {
            " — DRY RUN, nothing is kept"
        } else {
            ""
        }
    );
    Ok(())
}

/// `--dry-run` and `--resend`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFlags {
    pub dry_run: bool,
    pub resend: bool,
}

pub fn run_daily(ctx: &Ctx, as_of: NaiveDate, flags: RunFlags, trigger: Trigger) -> Result<bool> {
    let dry_run = flags.dry_run;
    let config = ctx.config()?;
    let prepared = jobs::prepare_all(&config)?;
    if let Some(why) = closed_notice(as_of)? {
        outln!("{why}: not an NYSE session, nothing to do.");
        return Ok(true);
    }
    let store = open_writer(ctx, &config)?;
    header("run daily", as_of, dry_run, ctx)?;
    let req = RunRequest {
        as_of,
        slot: None,
        dry_run,
        trigger: match trigger {
            Trigger::Cli => Trigger::Daily,
            t => t,
        },
        resend: flags.resend,
    };
    let records = jobs::run_sequence(&store, &config, &prepared, &req, &PrintAndAlert)?;
    Ok(summarize(&records))
}

/// `optdesk run session`: the daily pipeline, then every slot firing of the session in
/// order ([`jobs::slot_firings`]), each through the runner with its slot, each printed.
/// A failed firing is recorded and the session goes on, as the daemon's would.
pub fn run_session(ctx: &Ctx, as_of: NaiveDate) -> Result<bool> {
    let config = ctx.config()?;
    let prepared = jobs::prepare_all(&config)?;
    let Some(session) = calendar::session(as_of)? else {
        let why = closed_notice(as_of)?.unwrap_or_else(|| as_of.to_string());
        outln!("{why}: not an NYSE session, nothing to do.");
        return Ok(true);
    };
    let store = open_writer(ctx, &config)?;
    header("run session", as_of, false, ctx)?;
    let firings = jobs::slot_firings(&prepared, &session);
    let (before, after) = jobs::split_at_daily(&config, as_of, firings);
    let times: std::collections::BTreeSet<NaiveTime> =
        before.iter().chain(&after).map(|f| f.time).collect();
    outln!(
        "{} slot firings at {} times: {} before the daily pipeline, {} after it",
        before.len() + after.len(),
        times.len(),
        before.len(),
        after.len()
    );
    let mut records = Vec::new();
    let mut last: Option<NaiveTime> = None;
    let mut slots = |firings: Vec<jobs::SlotFiring>, records: &mut Vec<RunRecord>| {
        for f in firings {
            if last != Some(f.time) {
                outln!("slot {}", f.time.format("%H:%M"));
                last = Some(f.time);
            }
            let req = RunRequest {
                as_of,
                slot: Some(f.time),
                dry_run: false,
                trigger: Trigger::Cli,
                resend: false,
            };
            records.push(jobs::run_one(
                &store,
                &config,
                &prepared[f.job],
                &req,
                &PrintAndAlert,
            )?);
        }
        Ok::<_, anyhow::Error>(())
    };
    slots(before, &mut records)?;
    outln!("daily pipeline");
    let req = RunRequest {
        as_of,
        slot: None,
        dry_run: false,
        trigger: Trigger::Daily,
        resend: false,
    };
    records.extend(jobs::run_sequence(
        &store,
        &config,
        &prepared,
        &req,
        &PrintAndAlert,
    )?);
    slots(after, &mut records)?;
    Ok(summarize(&records))
}

fn summarize(records: &[RunRecord]) -> bool {
    let count = |s| records.iter().filter(|r| r.status == s).count();
    let (ok, failed, skipped) = (
        count(Status::Ok),
        count(Status::Failed),
        count(Status::Skipped),
    );
    let line = format!("{ok} ok, {failed} failed, {skipped} skipped.");
    if failed > 0 {
        eprintln!("{line} The reasons are above and in job_runs.");
        false
    } else {
        outln!("{line}");
        true
    }
}

pub fn job_run(
    ctx: &Ctx,
    name: &str,
    as_of: NaiveDate,
    slot: Option<NaiveTime>,
    flags: RunFlags,
    trigger: Trigger,
) -> Result<bool> {
    let dry_run = flags.dry_run;
    let def = jobs::find(name).ok_or_else(|| UsageError(jobs::unknown_job_message(name)))?;
    let config = ctx.config()?;
    let prepared = (def.prepare)(&config)?;
    if let Some(why) = closed_notice(as_of)? {
        outln!("{why}: not an NYSE session, nothing to do.");
        return Ok(true);
    }
    let store = open_writer(ctx, &config)?;
    header(&format!("job run {name}"), as_of, dry_run, ctx)?;
    let req = RunRequest {
        as_of,
        slot,
        dry_run,
        trigger,
        resend: flags.resend,
    };
    let rec = jobs::run_one(&store, &config, &prepared, &req, &PrintAndAlert)?;
    Ok(summarize(&[rec]))
}

/// The premium bots whose compliant-session streak the checklist counts.
const PREMIUM_BOTS: &[&str] = &["put_write", "buy_write", "iron_condor"];

/// `optdesk checklist [--strategy S]`.
fn checklist(ctx: &Ctx, strategy: Option<&str>) -> Result<bool> {
    let config = ctx.config()?;
    let registry = crate::trading::strategies::registry(&config)?;
    if let Some(s) = strategy {
        if registry.get(s).is_none() {
            bail!(
                "--strategy {s}: no such strategy; the strategies are: {}",
                crate::trading::strategies::KNOWN.join(", ")
            );
        }
    }
    let bots: Vec<String> = registry
        .enabled()
        .map(|s| s.name().to_string())
        .filter(|n| PREMIUM_BOTS.contains(&n.as_str()))
        .collect();
    let store = open_reader_current(ctx)?;
    let lines = crate::store::compliance::checklist(&store.conn, strategy, &bots)?;
    outln!(
        "Pre-live checklist for {} ({})",
        strategy.unwrap_or("the book"),
        ctx.db.display()
    );
    let width = lines
        .iter()
        .map(|l| l.item.chars().count())
        .max()
        .unwrap_or(0);
    for l in &lines {
        outln!(
            "  {:<10}  {:<width$}  {}",
            l.verdict.label(),
            l.item,
            l.figure
        );
    }
    let pass = lines
        .iter()
        .filter(|l| l.verdict == crate::store::compliance::Verdict::Pass)
        .count();
    outln!("{pass} of {} lines pass.", lines.len());
    Ok(pass == lines.len())
}

/// `optdesk selftest`.
fn selftest(ctx: &Ctx, before: NaiveDate) -> Result<bool> {
    let config = ctx.config()?;
    outln!("Running the drills on a scratch store (the simulated market, your configuration)...");
    let outcomes = crate::selftest::run(&ctx.db, &config, before)?;
    for o in &outcomes {
        outln!(
            "  {:<4}  {:<16}  {}",
            if o.passed { "PASS" } else { "FAIL" },
            o.drill,
            o.detail
        );
    }
    outln!(
        "Recorded in {} (table drills); `optdesk checklist` reads them.",
        ctx.db.display()
    );
    Ok(outcomes.iter().all(|o| o.passed))
}

fn status(ctx: &Ctx) -> Result<bool> {
    let config = ctx.config()?;
    let lock = crate::store::lock_path_for(&ctx.db);
    if let Some(h) = crate::store::current_writer(&lock) {
        outln!("The store is being written now: {h}");
    }
    let timeout = std::time::Duration::from_secs(config.desk.desk.lock_timeout_secs);
    match Store::open_read(&ctx.db, timeout) {
        Ok(store) => {
            let mut lines = Vec::new();
            for def in jobs::JOBS {
                let row = store.conn.query_row(
                    "SELECT as_of::VARCHAR, status, rows_written, strftime(finished_at, '%Y-%m-%d %H:%M:%S'), coalesce(message, ''), dry_run
                     FROM job_runs WHERE job = ? ORDER BY run_id DESC LIMIT 1",
                    [def.name],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, bool>(5)?,
                        ))
                    },
                );
                match row {
                    Ok((as_of, st, rows, fin, msg, dry)) => lines.push(format!(
                        "  {:<19} {:<8} as_of {as_of}  finished {fin} UTC  {rows} rows{}  {msg}",
                        def.name,
                        st,
                        if dry { " (dry run)" } else { "" }
                    )),
                    Err(duckdb::Error::QueryReturnedNoRows) => {
                        lines.push(format!("  {:<19} never run", def.name))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            outln!("Last run of each job (store {}):", ctx.db.display());
            outln!("  {}", store_size_line(&store)?);
            // Redacted again on the way out: a row from an older optdesk may hold a secret.
            let secrets = crate::config::secrets();
            for l in lines {
                outln!("{}", crate::text::redact(&l, &secrets));
            }
            // Alerts that did not get through (an older store may not have the table).
            let undelivered: Option<(i64, String)> = store
                .conn
                .query_row(
                    "SELECT count(*), coalesce(arg_max(event || ' via ' || channel || ': ' || coalesce(error, ''), created_at), '')
                     FROM alerts WHERE status = 'failed' AND created_at > now()::TIMESTAMP - INTERVAL 7 DAY",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .ok();
            if let Some((n, last)) = undelivered.filter(|(n, _)| *n > 0) {
                let last = crate::text::redact(&last, &secrets);
                outln!(
                    "{n} alert(s) not delivered in the last 7 days; the latest: {last} (optdesk sql \"SELECT * FROM alerts WHERE status = 'failed'\")"
                );
            }
        }
        Err(crate::store::StoreError::Missing { .. }) => {
            outln!(
                "No store yet at {}: run `optdesk run daily` to create it.",
                ctx.db.display()
            );
        }
        Err(e) => return Err(e.into()),
    }
    let entries = schedule::entries(&config)?;
    print_slots(&config)?;
    let next = schedule::plan(&entries, clock::now_ny(None), 14);
    outln!("Next scheduled firings (America/New_York):");
    if next.is_empty() {
        outln!("  none in the next 14 days");
    }
    for f in next.iter().take(5) {
        outln!(
            "  {}  {}  ({})",
            f.at.format("%a %Y-%m-%d %H:%M"),
            entries[f.entry].target,
            entries[f.entry].spec
        );
    }
    Ok(true)
}

/// `optdesk status --check [--as-of D]`: whether the last due session's daily run (or
/// D's) finished, for cron users' outside monitors. Exit 0 when it did, 1 when it is
/// missing or failed; one line says which and why.
fn status_check(ctx: &Ctx, as_of: Option<NaiveDate>) -> Result<bool> {
    use crate::jobs::daily_check;
    let config = ctx.config()?;
    let prepared = jobs::prepare_all(&config)?;
    let date = match as_of {
        Some(d) => {
            if let Some(why) = closed_notice(d)? {
                return Err(UsageError(format!(
                    "--as-of {d}: {why}: not an NYSE session, it has no daily run"
                ))
                .into());
            }
            d
        }
        None => match daily_check::last_due_session(
            &config,
            clock::now_ny(None),
            Duration::minutes(daily_check::MISSED_RUN_GRACE_MINUTES),
        )? {
            Some((d, _)) => d,
            None => {
                outln!("CHECK OK: no session's daily run is due yet");
                return Ok(true);
            }
        },
    };
    let timeout = std::time::Duration::from_secs(config.desk.desk.lock_timeout_secs);
    let store = match Store::open_read(&ctx.db, timeout) {
        Ok(s) => s,
        Err(crate::store::StoreError::Missing { path }) => {
            outln!("CHECK FAILED: the {date} daily run is missing: store {path} does not exist");
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    let state = daily_check::daily_state(&store.conn, &prepared, date)?;
    let line = crate::config::redact_secrets(&state.describe(date));
    if state.is_finished() {
        outln!("CHECK OK: {line}");
        Ok(true)
    } else {
        outln!("CHECK FAILED: {line}");
        Ok(false)
    }
}

/// The store's size, per session, and its prune boundary.
fn store_size_line(store: &Store) -> Result<String> {
    let bytes = crate::store::retention::file_bytes(store.path());
    let sessions: i64 = store.conn.query_row(
        "SELECT count(DISTINCT as_of) FROM job_runs WHERE status = 'ok' AND NOT dry_run",
        [],
        |r| r.get(0),
    )?;
    let per = if sessions > 0 {
        format!(
            ", {:.2} MB per session",
            bytes as f64 / 1e6 / sessions as f64
        )
    } else {
        String::new()
    };
    // A store from before schema 8 has no prunes table until a writer upgrades it.
    let pruned = crate::store::retention::horizon(&store.conn)
        .ok()
        .flatten()
        .map(|d| format!("; quotes before {d} pruned"))
        .unwrap_or_default();
    Ok(format!(
        "store size {:.1} MB over {sessions} session(s){per}{pruned}",
        bytes as f64 / 1e6
    ))
}

/// A reader on a store at the current schema: a store from an older optdesk is
/// upgraded first, as any job would (the report and `positions` read what 005 and 006 add).
fn open_reader_current(ctx: &Ctx) -> Result<Store> {
    let store = open_reader(ctx)?;
    if store.schema_version()? < crate::store::latest_schema_version() {
        drop(store);
        return open_writer(ctx, &ctx.config()?);
    }
    Ok(store)
}

fn open_reader(ctx: &Ctx) -> Result<Store> {
    let config = ctx.config()?;
    let timeout = std::time::Duration::from_secs(config.desk.desk.lock_timeout_secs);
    Ok(Store::open_read(&ctx.db, timeout)?)
}

/// `optdesk report`: regenerate the dashboard for a stored day.
fn report(ctx: &Ctx, as_of: Option<NaiveDate>, out: Option<PathBuf>, open: bool) -> Result<bool> {
    let config = ctx.config()?;
    let (file, _) = crate::jobs::email_report::load_params(&config)?;
    let store = open_reader_current(ctx)?;
    let as_of = match as_of {
        Some(d) => d,
        None => store
            .conn
            .query_row(
                "SELECT coalesce((SELECT max(as_of) FROM portfolio_snapshots), (SELECT max(as_of) FROM job_runs))",
                [],
                |r| r.get::<_, Option<NaiveDate>>(0),
            )?
            .context("the store has no day to report yet: run `optdesk run daily` first")?,
    };
    let data = crate::report::load(&store.conn, as_of, file.params.risk_free_rate)?;
    let path = out.unwrap_or_else(|| config.resolve(&file.params.dashboard));
    crate::jobs::email_report::write_dashboard(&data, &path).map_err(anyhow::Error::msg)?;
    outln!("dashboard for {as_of} written to {}", path.display());
    if data.portfolio.is_none() {
        outln!("(no portfolio snapshot for {as_of}: the sections say what is missing)");
    }
    if open {
        open_in_browser(&path)?;
    }
    Ok(true)
}

fn open_in_browser(path: &std::path::Path) -> Result<()> {
    let path = std::fs::canonicalize(path)?;
    let mut cmd = if cfg!(target_os = "windows") {
        let mut c = std::process::Command::new("cmd");
        c.args(["/C", "start", ""]).arg(&path);
        c
    } else if cfg!(target_os = "macos") {
        let mut c = std::process::Command::new("open");
        c.arg(&path);
        c
    } else {
        let mut c = std::process::Command::new("xdg-open");
        c.arg(&path);
        c
    };
    cmd.spawn().with_context(|| {
        format!(
            "could not start a browser; open {} yourself",
            path.display()
        )
    })?;
    Ok(())
}

fn flatten(ctx: &Ctx, as_of: NaiveDate) -> Result<bool> {
    let config = ctx.config()?;
    let prepared = crate::jobs::flatten::prepare(&config)?;
    if let Some(why) = closed_notice(as_of)? {
        outln!("{why}: not an NYSE session, nothing to close at.");
        return Ok(true);
    }
    let store = open_writer(ctx, &config)?;
    header("flatten", as_of, false, ctx)?;
    let req = RunRequest {
        as_of,
        slot: None,
        dry_run: false,
        trigger: Trigger::Cli,
        resend: false,
    };
    let rec = jobs::run_one(&store, &config, &prepared, &req, &PrintAndAlert)?;
    Ok(summarize(&[rec]))
}

fn kill(ctx: &Ctx, state: KillState) -> Result<bool> {
    let config = ctx.config()?;
    let change = match state {
        KillState::On => crate::jobs::kill::turn_on(&config, "`optdesk kill on`")?,
        KillState::Off => crate::jobs::kill::turn_off(&config)?,
    };
    outln!("{}", change.message());
    Ok(true)
}

fn check(ctx: &Ctx, deep: bool) -> Result<bool> {
    let store = open_reader(ctx)?;
    let (found, latest) = (
        store.schema_version()?,
        crate::store::latest_schema_version(),
    );
    if found < latest {
        // A run killed between two migrations leaves the store at an earlier schema
        // (each migration is one transaction): the tables the check reads may not exist.
        bail!(
            "store {} is at schema version {found}, this optdesk expects {latest} (a migration was interrupted, or an older optdesk wrote it): run any writing command, e.g. `optdesk run daily`, to finish the migration, then `optdesk check` again",
            ctx.db.display()
        );
    }
    if deep {
        // First, on the freshly opened file: every block is read from disk.
        let d = crate::store::check::deep_check(&store.conn)?;
        if !d.damaged.is_empty() {
            for (t, e) in &d.damaged {
                eprintln!("damaged: table {t}: {e}");
            }
            eprintln!(
                "{} of {} tables cannot be read whole: the store file is damaged; restore the last backup (`optdesk restore DIR --db NEW`, see Troubleshooting)",
                d.damaged.len(),
                d.damaged.len() + d.tables.len()
            );
            return Ok(false);
        }
        let rows: i64 = d.tables.iter().map(|t| t.1).sum();
        outln!(
            "read every block of {} tables ({rows} rows): block checksums verified",
            d.tables.len()
        );
    }
    let r = crate::store::check::check(&store.conn)?;
    for n in &r.notes {
        outln!("note: {n}");
    }
    if r.problems.is_empty() {
        outln!(
            "reconciled to the cent: cash {} from the ledger, {} open positions from {} fills",
            r.cash,
            r.open_positions,
            r.fills
        );
        if !deep {
            outln!(
                "verified: the trading record (cash_ledger, fills, orders, order_events, positions); \
                 not verified: block checksums of every table (DuckDB checks a block only when \
                 it reads it): run `optdesk check --deep`"
            );
        }
        Ok(true)
    } else {
        for p in &r.problems {
            eprintln!("discrepancy: {p}");
        }
        eprintln!(
            "{} discrepancies: the trading record does not reconcile",
            r.problems.len()
        );
        Ok(false)
    }
}

/// `check --broker`: the store's positions and cash against the broker's.
fn check_broker(ctx: &Ctx) -> Result<bool> {
    let config = ctx.config()?;
    let (choice, _) = crate::jobs::BrokerChoice::from_config(&config)?;
    let store = open_reader(ctx)?;
    let as_of = today_ny();
    let at = as_of.and_hms_opt(16, 0, 0).expect("a time");
    let mut broker = choice.make(&store.conn, as_of, at);
    let r = crate::broker::reconcile(&store.conn, broker.as_mut(), as_of)
        .map_err(|e| anyhow::anyhow!("cannot compare with the broker: {e}"))?;
    if r.differences.is_empty() {
        outln!(
            "matches {}: {} positions{}",
            broker.name(),
            r.positions,
            r.broker_cash
                .map(|c| format!(", cash {c}"))
                .unwrap_or_default()
        );
        return Ok(true);
    }
    for d in &r.differences {
        eprintln!("differs from {}: {d}", broker.name());
    }
    eprintln!(
        "{} difference(s) between the store and {}",
        r.differences.len(),
        broker.name()
    );
    Ok(false)
}

/// `ib check`: connect, and print what TWS says.
fn ib_check(ctx: &Ctx, symbol: &str) -> Result<bool> {
    let config = ctx.config()?;
    match crate::ibkr::check(&config.desk.ibkr, symbol) {
        Ok(lines) => {
            for l in lines {
                outln!("{l}");
            }
            Ok(true)
        }
        Err(e) => {
            eprintln!("ib check failed: {e}");
            Ok(false)
        }
    }
}

/// The store open for writing, for a command that only makes sense on one that exists.
fn open_existing_writer(ctx: &Ctx, what: &str) -> Result<Store> {
    if !ctx.db.exists() {
        bail!(
            "store {} does not exist: nothing to {what}",
            ctx.db.display()
        );
    }
    open_writer(ctx, &ctx.config()?)
}

fn backup(ctx: &Ctx, dir: &std::path::Path) -> Result<bool> {
    let store = open_existing_writer(ctx, "back up")?;
    let m = crate::store::backup::backup(&store, dir)?;
    let rows: i64 = m.tables.iter().map(|t| t.1).sum();
    let f = &m.files[0];
    outln!(
        "backed up {} to {} (schema version {}, {} tables, {rows} rows, {} bytes, sha256 {}); read back whole",
        ctx.db.display(),
        dir.display(),
        m.schema_version,
        m.tables.len(),
        f.bytes,
        f.sha256
    );
    Ok(true)
}

fn prune(ctx: &Ctx, before: NaiveDate, dry_run: bool) -> Result<bool> {
    use crate::store::retention;
    let store = open_existing_writer(ctx, "prune")?;
    let mb = |b: u64| b as f64 / 1e6;
    let (r, verb) = if dry_run {
        (retention::plan(&store, before)?, "would delete")
    } else {
        let (_store, r) = retention::prune(store, before)?;
        (r, "deleted")
    };
    outln!(
        "{verb} {} option quotes and {} analytics rows of {} session(s) before {}; kept {} quotes there (traded or held contracts, the chains strategies scanned)",
        r.quotes_deleted,
        r.analytics_deleted,
        r.sessions,
        r.quotes_before,
        r.quotes_kept
    );
    if dry_run {
        outln!(
            "dry run: nothing changed (store {:.1} MB)",
            mb(r.bytes_before)
        );
    } else {
        outln!(
            "store {}: {:.1} MB before, {:.1} MB after (rewritten and read back whole); sessions before {} can no longer be re-run",
            ctx.db.display(),
            mb(r.bytes_before),
            mb(r.bytes_after),
            r.quotes_before
        );
    }
    Ok(true)
}

fn import(
    ctx: &Ctx,
    paths: &[PathBuf],
    layout: Option<&str>,
    symbol: Option<&str>,
    map: Option<&str>,
) -> Result<bool> {
    use crate::sources::import::{import_file_mapped, ColumnMap, Layout};
    let config = ctx.config()?;
    let layout = layout
        .map(Layout::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let map = map
        .map(ColumnMap::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let store = open_writer(ctx, &config)?;
    for p in paths {
        let s = import_file_mapped(&store.conn, p, layout, symbol, map.as_ref())?;
        let range = match (s.first_date, s.last_date) {
            (Some(a), Some(b)) if a == b => format!("{a}"),
            (Some(a), Some(b)) => format!("{a} to {b}"),
            _ => "no dates".into(),
        };
        if let Some(note) = &s.note {
            outln!("{}: {note}", s.file);
            continue;
        }
        if s.unchanged {
            outln!(
                "{}: already imported (same SHA-256): {} rows, nothing changed",
                s.file,
                s.kept
            );
            continue;
        }
        let why = if s.rules.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                s.rules
                    .iter()
                    .map(|(r, n)| format!("{n} {r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        outln!(
            "{}: {} layout, {} rows kept, {} rejected{why}; {range}; {}",
            s.file,
            s.layout.name(),
            s.kept,
            s.rejected,
            s.symbols.join(", ")
        );
    }
    Ok(true)
}

fn restore(ctx: &Ctx, dir: &std::path::Path, force: bool) -> Result<bool> {
    let config = ctx.config()?;
    let timeout = std::time::Duration::from_secs(config.desk.desk.lock_timeout_secs);
    let (m, d) = crate::store::backup::restore(dir, &ctx.db, force, timeout, &holder())?;
    let rows: i64 = d.tables.iter().map(|t| t.1).sum();
    outln!(
        "restored {} from {} (taken {}, schema version {}, optdesk {}): checksums verified, {} tables, {rows} rows read back",
        ctx.db.display(),
        dir.display(),
        m.created_at,
        m.schema_version,
        m.optdesk_version,
        d.tables.len()
    );
    Ok(true)
}

fn print_query(store: &Store, q: &str) -> Result<bool> {
    let result = query::run(&store.conn, q)
        .map_err(|e| anyhow::anyhow!("query failed: {}", crate::store::one_line(&e.to_string())))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    query::write(&result, query::Format::Table, &mut out)?;
    Ok(true)
}

/// The dispersion files' subject, from the configuration: the dispersion strategy's
/// index and entry threshold, and the correlation job's components (largest first).
fn seed_options(config: &Config, as_of: Option<NaiveDate>) -> Result<export::SeedOptions> {
    use crate::trading::strategies::dispersion;
    #[derive(serde::Deserialize)]
    struct StrategyFile {
        #[serde(default, rename = "enabled")]
        _enabled: Option<bool>,
        #[serde(default)]
        params: dispersion::Config,
    }
    let path = config.dir.join("strategies").join("dispersion.toml");
    let params = match std::fs::read_to_string(&path) {
        Ok(text) => crate::config::parse::<StrategyFile>(&path, &text)?.params,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => dispersion::Config::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let (corr, _) = config.job::<crate::jobs::correlation::Params>("correlation")?;
    let p = corr.params;
    let default_file = p.weights_file == crate::jobs::correlation::Params::default().weights_file;
    let weights =
        crate::refdata::load_index_weights(&config.resolve(&p.weights_file), default_file)
            .with_context(|| "correlation.toml params.weights_file".to_string())?;
    Ok(export::SeedOptions {
        as_of,
        strategy: "dispersion".into(),
        index: params.index,
        components: weights
            .largest_first()
            .into_iter()
            .take(p.max_components)
            .map(|(s, _)| s)
            .collect(),
        z_entry: params.z_entry,
    })
}

/// `optdesk export seed`.
fn export_seed(ctx: &Ctx, out: &std::path::Path, as_of: Option<NaiveDate>) -> Result<bool> {
    let config = ctx.config()?;
    let opts = seed_options(&config, as_of)?;
    let store = open_reader_current(ctx)?;
    let summary = export::export_seed(&store.conn, out, &opts)
        .with_context(|| format!("export seed from {}", ctx.db.display()))?;
    outln!(
        "exported {} files as of {} into {}",
        summary.files.len(),
        summary.as_of,
        out.display()
    );
    for w in &summary.files {
        outln!("  {:<40} {:>6} rows", w.file, w.rows);
    }
    Ok(true)
}

/// `optdesk export table`.
fn export_table(
    ctx: &Ctx,
    name: &str,
    format: export::TableFormat,
    out: Option<PathBuf>,
) -> Result<bool> {
    let store = open_reader(ctx)?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.{}", format.extension())));
    let rows =
        export::export_table(&store.conn, &ctx.db, name, format, &out).map_err(|e| match e {
            export::ExportError::UnknownTable { .. } => {
                anyhow::Error::new(UsageError(e.to_string()))
            }
            e => anyhow::Error::new(e),
        })?;
    outln!("wrote {rows} rows of {name} to {}", out.display());
    Ok(true)
}

fn positions(ctx: &Ctx) -> Result<bool> {
    let store = open_reader_current(ctx)?;
    // Marked as snapshot_benchmarks marks them (sql/006), at the latest snapshot.
    print_query(
        &store,
        "WITH d AS (SELECT max(as_of) AS d FROM option_quotes),
              t AS (SELECT max(quote_time) AS t FROM option_quotes WHERE as_of = (SELECT d FROM d))
         SELECT strategy, trim(instrument) AS instrument, quantity, round(avg_price, 2) AS avg_price,
                round(mark, 2) AS mark, round((mark - avg_price) * quantity * multiplier, 2) AS unrealized_pnl,
                stale, marked_on, expiry, opened
         FROM position_marks((SELECT d FROM d), (SELECT t FROM t))
         ORDER BY strategy, underlying, expiry, instrument",
    )
}

fn trades(ctx: &Ctx, from: Option<NaiveDate>, to: Option<NaiveDate>) -> Result<bool> {
    let store = open_reader(ctx)?;
    let from = from
        .map(|d| d.to_string())
        .unwrap_or_else(|| "2000-01-01".into());
    let to = to
        .map(|d| d.to_string())
        .unwrap_or_else(|| "2035-12-31".into());
    print_query(
        &store,
        &format!(
            "SELECT as_of, strategy, order_ref, leg, trim(instrument) AS instrument, quantity, price, commission, cash_kind,
                    -quantity * multiplier * price - commission AS cash
             FROM fills WHERE as_of BETWEEN DATE '{from}' AND DATE '{to}' ORDER BY as_of, order_ref, leg"
        ),
    )
}

fn sql(ctx: &Ctx, q: &str, format: query::Format) -> Result<bool> {
    let config = ctx.config()?;
    let timeout = std::time::Duration::from_secs(config.desk.desk.lock_timeout_secs);
    let store = Store::open_read(&ctx.db, timeout)?;
    let result = query::run(&store.conn, q)
        .map_err(|e| anyhow::anyhow!("query failed: {}", crate::store::one_line(&e.to_string())))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    query::write(&result, format, &mut out)?;
    Ok(true)
}

fn print_calendar(from: NaiveDate, to: NaiveDate, format: CalFormat) -> Result<bool> {
    if to < from {
        bail!("--to {to} is before --from {from}");
    }
    let sessions = calendar::sessions(from, to)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        CalFormat::Csv => {
            writeln!(out, "date,open,close")?;
            for s in &sessions {
                writeln!(
                    out,
                    "{},{},{}",
                    s.date,
                    s.open.format("%H:%M"),
                    s.close.format("%H:%M")
                )?;
            }
        }
        CalFormat::Table => {
            writeln!(out, "date        day  open   close  note")?;
            for s in &sessions {
                writeln!(
                    out,
                    "{}  {}  {}  {}  {}",
                    s.date,
                    s.date.format("%a"),
                    s.open.format("%H:%M"),
                    s.close.format("%H:%M"),
                    if s.is_early_close() {
                        "early close"
                    } else {
                        ""
                    }
                )?;
            }
            writeln!(
                out,
                "({} sessions from {from} to {to}, New York time)",
                sessions.len()
            )?;
        }
    }
    Ok(true)
}

/// Each job's intraday slots, with how often they fire on a regular session and on an
/// early close (`optdesk run session` runs them after the daily pipeline).
fn print_slots(config: &Config) -> Result<()> {
    let entries = schedule::entries(config)?;
    let sessions = [
        calendar::session(NaiveDate::from_ymd_opt(2025, 3, 14).context("date")?)?,
        calendar::session(NaiveDate::from_ymd_opt(2025, 11, 28).context("date")?)?,
    ];
    let mut any = false;
    for e in &entries {
        if e.target == schedule::Target::Daily {
            continue;
        }
        if !any {
            outln!("Intraday slots (America/New_York; run by `optdesk run session` after the daily pipeline):");
            any = true;
        }
        let n: Vec<usize> = sessions
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| e.spec.times_on(s).len()))
            .collect();
        outln!(
            "  {:<24} {:<36} {} firings a regular session, {} on an early close",
            e.target.to_string(),
            e.spec.to_string(),
            n[0],
            n[1]
        );
    }
    if !any {
        outln!("Intraday slots: none (each job's `slots` in its jobs/<job>.toml)");
    }
    Ok(())
}

fn print_plan(ctx: &Ctx, from: chrono::DateTime<chrono_tz::Tz>, days: u32) -> Result<bool> {
    let config = ctx.config()?;
    print_slots(&config)?;
    let entries = schedule::entries(&config)?;
    let firings = schedule::plan(&entries, from, days);
    outln!(
        "Firings from {} for {days} days (America/New_York; sessions only):",
        from.format("%Y-%m-%d %H:%M %Z")
    );
    outln!(
        "  {:<16} {:<6} {:<17} {:<24} when",
        "date",
        "NY",
        "UTC",
        "what"
    );
    for f in &firings {
        let e = &entries[f.entry];
        outln!(
            "  {:<16} {:<6} {:<17} {:<24} {}{}",
            f.at.format("%a %Y-%m-%d"),
            f.at.format("%H:%M"),
            f.at.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M"),
            e.target.to_string(),
            e.spec,
            if f.session.is_early_close() {
                " (early close)"
            } else {
                ""
            }
        );
    }
    if firings.is_empty() {
        outln!("  (no firings: no sessions in this window)");
    }
    Ok(true)
}

/// Record, for each job a firing would have run, that it was skipped and why.
fn record_schedule_skip(
    ctx: &Ctx,
    target: &Target,
    date: NaiveDate,
    slot: Option<NaiveTime>,
    why: &str,
) -> Result<()> {
    let config = ctx.config()?;
    let prepared = jobs::prepare_all(&config)?;
    let store = open_writer(ctx, &config)?;
    let req = RunRequest {
        as_of: date,
        slot,
        dry_run: false,
        trigger: Trigger::Schedule,
        resend: false,
    };
    for p in prepared.iter().filter(|p| match target {
        Target::Daily => p.def.daily,
        Target::Job(name) => p.def.name == name,
    }) {
        jobs::record_skip(&store, p.def.name, &req, &p.config_hash, why)?;
    }
    Ok(())
}

/// The dashboard, bound (a refused address or token ends the command before anything runs).
fn dashboard(
    ctx: &Ctx,
    config: &crate::config::Config,
    addr: &str,
    pretend: Option<NaiveDate>,
    mode: crate::serve::Mode,
) -> Result<crate::serve::Dashboard> {
    let d = crate::serve::Dashboard::bind(crate::serve::Options {
        addr: addr.to_string(),
        db: ctx.db.clone(),
        config: config.clone(),
        pretend,
        token: crate::config::env_var(crate::serve::TOKEN_VAR),
        mode,
    })?;
    eprintln!(
        "serve: the dashboard is at {}{}",
        d.url(),
        if d.needs_token() {
            " (it asks for OPTDESK_DASHBOARD_TOKEN: sign in at /login, or send it as a bearer token)"
        } else {
            ""
        }
    );
    Ok(d)
}

/// `optdesk serve`: the dashboard alone, read-only, until the process is stopped.
fn serve(ctx: &Ctx, addr: &str) -> Result<bool> {
    let config = ctx.config()?;
    let d = dashboard(ctx, &config, addr, None, crate::serve::Mode::Standalone)?;
    eprintln!("serve: read-only, one request at a time; Ctrl-C stops");
    d.run(&AtomicBool::new(false));
    Ok(true)
}

fn daemon(ctx: &Ctx, pretend: Option<NaiveDate>, serve: Option<&str>) -> Result<bool> {
    let config = ctx.config()?;
    let entries = schedule::entries(&config)?;
    let board = match serve {
        Some(addr) => Some(dashboard(
            ctx,
            &config,
            addr,
            pretend,
            crate::serve::Mode::Daemon,
        )?),
        None => None,
    };
    let shared = Arc::new(Ctx {
        db: ctx.db.clone(),
        jobs_dir: ctx.jobs_dir.clone(),
        jobs_explicit: ctx.jobs_explicit,
    });
    let run: Arc<schedule::RunFn> = Arc::new(
        move |target: &Target, date: NaiveDate, slot: Option<NaiveTime>| {
            let _gate = crate::store::process_gate()
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let res = match target {
                Target::Daily => {
                    schedule::DAILY_FIRING.store(true, std::sync::atomic::Ordering::SeqCst);
                    let r = run_daily(&shared, date, RunFlags::default(), Trigger::Schedule);
                    schedule::DAILY_FIRING.store(false, std::sync::atomic::Ordering::SeqCst);
                    r
                }
                Target::Job(name) => job_run(
                    &shared,
                    name,
                    date,
                    slot,
                    RunFlags::default(),
                    Trigger::Schedule,
                ),
            };
            match res {
                Ok(ok) => ok,
                Err(e) => {
                    eprintln!("error: {}", error_line(&e));
                    false
                }
            }
        },
    );
    let shared_skip = Arc::new(Ctx {
        db: ctx.db.clone(),
        jobs_dir: ctx.jobs_dir.clone(),
        jobs_explicit: ctx.jobs_explicit,
    });
    let skip: Arc<schedule::SkipFn> = Arc::new(
        move |target: &Target, date: NaiveDate, slot: Option<NaiveTime>, why: &str| {
            let _gate = crate::store::process_gate()
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Err(e) = record_schedule_skip(&shared_skip, target, date, slot, why) {
                eprintln!("error: could not record the skip: {}", error_line(&e));
            }
        },
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The daemon's services beside the firings, each on its own thread, each stopping
    // when `stop` is set after the scheduler has stopped. Each takes the process gate
    // (`store::process_gate`) whenever it opens the store.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut services: Vec<std::thread::JoinHandle<()>> = Vec::new();
    // The dashboard first: a failure to start it stops the daemon before anything runs.
    if let Some(d) = board {
        services.push(crate::serve::spawn(d, stop.clone())?);
    }
    {
        let (config, db, stop) = (config.clone(), ctx.db.clone(), stop.clone());
        services.push(std::thread::spawn(move || {
            schedule::watch_missed_runs(&config, &db, pretend, &stop)
        }));
    }
    // Telegram commands, when the Telegram channel is configured.
    let remote = crate::remote::Remote {
        db: ctx.db.clone(),
        jobs_dir: ctx.jobs_dir.clone(),
        jobs_explicit: ctx.jobs_explicit,
        pretend,
    };
    services.extend(crate::remote::spawn(remote, &config, stop.clone()));
    let result = rt.block_on(schedule::run_daemon(entries, pretend, run, skip));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for s in services {
        let _ = s.join();
    }
    result?;
    Ok(true)
}

/// `optdesk backtest --from D --to D ...`.
fn backtest(ctx: &Ctx, args: BacktestArgs) -> Result<bool> {
    use crate::backtest::{self, Ending};
    let (Some(from), Some(to)) = (args.from, args.to) else {
        return Err(UsageError(
            "backtest needs --from and --to (YYYY-MM-DD), or a subcommand: list, show NAME, report NAME, sweep, collect DIR".into(),
        )
        .into());
    };
    let opts = backtest_options(
        ctx,
        (from, to),
        args.name,
        args.set,
        args.source.as_deref(),
        args.seed,
        args.keep_quotes,
        args.restart,
    )?;
    let plan = backtest::plan(&opts)?;
    let remaining = plan.remaining().len();
    let (name, store_path, keep) = (plan.name.clone(), plan.store_path.clone(), plan.keep_quotes);
    if remaining == 0 {
        outln!(
            "backtest {name}: all {} sessions from {from} to {to} are already done (store {}); --restart runs it again",
            plan.sessions.len(),
            store_path.display()
        );
    } else {
        outln!(
            "backtest {name}: {} sessions from {from} to {to}{}, config {}{}; store {}",
            plan.sessions.len(),
            if plan.done.is_empty() {
                String::new()
            } else {
                format!(
                    ", resuming at session {} ({remaining} to go)",
                    plan.done.len() + 1
                )
            },
            plan.config_hash,
            if plan.overrides.is_empty() {
                String::new()
            } else {
                format!(" ({})", plan.overrides.join(", "))
            },
            store_path.display()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    install_stop_handler(stop.clone());
    let stop_after: Option<usize> =
        crate::config::env_var("OPTDESK_BACKTEST_STOP_AFTER").and_then(|v| v.trim().parse().ok());
    let tty = std::io::stderr().is_terminal();
    let mut last_line = std::time::Instant::now();
    let mut on_session = |s: &backtest::SessionDone| {
        if stop_after.is_some_and(|n| s.run_here >= n) {
            stop.store(true, Ordering::SeqCst);
        }
        let secs = s.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            s.run_here as f64 / secs
        } else {
            0.0
        };
        let eta = if rate > 0.0 {
            let left = (s.total - s.done) as f64 / rate;
            format!("{}:{:02}", (left / 60.0) as u64, (left % 60.0) as u64)
        } else {
            "?".into()
        };
        let line = format!(
            "{}/{} sessions ({}), {rate:.2} sessions/s, ETA {eta}, equity {}",
            s.done,
            s.total,
            s.as_of,
            s.equity
                .map(|e| format!("${}", crate::report::money(e)))
                .unwrap_or_else(|| "n/a".into())
        );
        if tty {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else if s.total <= 250
            || s.done == s.total
            || last_line.elapsed() >= std::time::Duration::from_secs(10)
        {
            outln!("  {line}");
            last_line = std::time::Instant::now();
        }
    };
    let outcome = backtest::run(plan, &stop, &mut on_session)?;
    if tty && outcome.run_here > 0 {
        eprintln!();
    }
    let pct = |v: Option<f64>| {
        v.map(|x| format!("{:+.2}%", x * 100.0))
            .unwrap_or_else(|| "n/a".into())
    };
    if let Some(p) = outcome.headline.as_ref().and_then(|h| h.portfolio()) {
        outln!(
            "results to {}: total return {}, annualized {}, Sharpe {}, max drawdown {}, win rate {}, {} closed trades, final equity {}",
            outcome.last.map(|d| d.to_string()).unwrap_or_default(),
            pct(p.total_return),
            pct(p.cagr),
            p.sharpe.map(|s| format!("{s:.2}")).unwrap_or_else(|| "n/a".into()),
            pct(p.max_drawdown),
            p.win_rate
                .map(|w| format!("{:.1}%", w * 100.0))
                .unwrap_or_else(|| "n/a".into()),
            p.trades.unwrap_or(0),
            outcome
                .headline
                .as_ref()
                .and_then(|h| h.final_equity)
                .map(|e| format!("${}", crate::report::money(e)))
                .unwrap_or_else(|| "n/a".into()),
        );
    }
    outln!(
        "store {}: {:.1} MB (--keep-quotes {}){}; `optdesk backtest show {name}`",
        store_path.display(),
        outcome.store_bytes as f64 / 1e6,
        keep.as_str(),
        outcome
            .report_path
            .as_ref()
            .map(|p| format!("; tearsheet {}", p.display()))
            .unwrap_or_default()
    );
    let speed = if outcome.seconds > 0.0 {
        outcome.run_here as f64 / outcome.seconds
    } else {
        0.0
    };
    match outcome.ending {
        Ending::Done => {
            outln!(
                "backtest {name} done: {} sessions ({} run now in {:.1} s, {speed:.2} sessions/s)",
                outcome.sessions_done,
                outcome.run_here,
                outcome.seconds
            );
            Ok(true)
        }
        Ending::Stopped => Err(Interrupted(format!(
            "backtest {name} stopped after session {} ({} of {} done): run the same command again to resume",
            outcome.last.map(|d| d.to_string()).unwrap_or_default(),
            outcome.sessions_done,
            outcome.sessions_total
        ))
        .into()),
        Ending::Failed(why) => {
            eprintln!(
                "backtest {name} failed: {why} ({} of {} sessions done; the reasons are in the backtest store's job_runs; the same command retries from that session)",
                outcome.sessions_done, outcome.sessions_total
            );
            Ok(false)
        }
    }
}

/// Ctrl-C (SIGINT) sets `stop`: the backtest stops after the session it is running. A
/// second Ctrl-C quits at once (the running job's transaction is rolled back).
fn install_stop_handler(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if stop.swap(true, Ordering::SeqCst) {
                    eprintln!("\ninterrupted again: quitting now (the running session is rolled back and run again on resume)");
                    std::process::exit(130);
                }
                eprintln!("\nstopping after the current session (Ctrl-C again to quit now)");
            }
        });
    });
}

/// The main store's catalogue, for `backtest list` and `show`.
fn open_catalogue(ctx: &Ctx) -> Result<Option<Store>> {
    if !ctx.db.exists() {
        return Ok(None);
    }
    Ok(Some(open_reader_current(ctx)?))
}

fn backtest_list(ctx: &Ctx) -> Result<bool> {
    let Some(store) = open_catalogue(ctx)? else {
        outln!("no backtests yet (no store at {})", ctx.db.display());
        return Ok(true);
    };
    let n: i64 = store
        .conn
        .query_row("SELECT count(*) FROM backtests", [], |r| r.get(0))?;
    if n == 0 {
        outln!("no backtests yet: `optdesk backtest --from D --to D` runs one");
        return Ok(true);
    }
    let status = crate::backtest::catalogue::status_sql(&crate::backtest::catalogue::interrupted(
        &store.conn,
    )?);
    print_query(
        &store,
        &format!("SELECT name, from_date AS \"from\", to_date AS \"to\", sessions_done || '/' || sessions_total AS sessions,
                {status} AS status, config_hash,
                round(total_return * 100, 2) AS total_return_pct, round(cagr * 100, 2) AS annualized_pct,
                round(sharpe, 2) AS sharpe, round(max_drawdown * 100, 2) AS max_drawdown_pct,
                round(win_rate * 100, 1) AS win_rate_pct, trades,
                strftime(coalesce(finished_at, started_at), '%Y-%m-%d %H:%M') AS at_utc
         FROM backtests ORDER BY coalesce(finished_at, started_at) DESC, name"),
    )
}

/// `optdesk backtest report NAME [--out FILE]`.
fn backtest_report(ctx: &Ctx, name: &str, out: Option<PathBuf>) -> Result<bool> {
    use crate::report::tearsheet::{self, TearsheetError};
    let config = ctx.config()?;
    let timeout = std::time::Duration::from_secs(config.desk.desk.lock_timeout_secs);
    if crate::backtest::check_name(name).is_err() {
        return Err(UsageError(format!(
            "no backtest named '{name}': a backtest's name has only letters, digits, '.', '_' and '-' (`optdesk backtest list` shows the backtests)"
        ))
        .into());
    }
    let store_path = crate::backtest::stores_dir(&ctx.db).join(format!("{name}.duckdb"));
    let (path, sheet) =
        match tearsheet::write_for_backtest(name, &store_path, out.as_deref(), timeout) {
            Ok(x) => x,
            Err(e @ TearsheetError::NotFound(_)) => return Err(UsageError(e.to_string()).into()),
            Err(e) => return Err(e.into()),
        };
    outln!(
        "tearsheet of backtest {name} ({} to {}, {}) written to {}",
        sheet.header.from,
        sheet.header.to,
        sheet.header.status,
        path.display()
    );
    Ok(true)
}

fn backtest_show(ctx: &Ctx, name: &str) -> Result<bool> {
    let store = open_catalogue(ctx)?;
    let found = match &store {
        Some(s) => {
            s.conn.query_row(
                "SELECT count(*) FROM backtests WHERE name = ?",
                [name],
                |r| r.get::<_, i64>(0),
            )? > 0
        }
        None => false,
    };
    let Some(store) = store.filter(|_| found) else {
        return Err(UsageError(format!(
            "no backtest named '{name}' in {}: `optdesk backtest list` shows them",
            ctx.db.display()
        ))
        .into());
    };
    let row = store.conn.query_row(
        "SELECT from_date::VARCHAR, to_date::VARCHAR, sessions_done, sessions_total, status, coalesce(message, ''),
                config_hash, overrides, source, seed::VARCHAR, keep_quotes, version,
                strftime(started_at, '%Y-%m-%d %H:%M:%S'), coalesce(strftime(finished_at, '%Y-%m-%d %H:%M:%S'), '-'),
                seconds, final_equity, store_path, store_bytes
         FROM backtests WHERE name = ?",
        [name],
        |r| {
            Ok((
                (
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ),
                (
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, String>(10)?,
                    r.get::<_, String>(11)?,
                ),
                (
                    r.get::<_, String>(12)?,
                    r.get::<_, String>(13)?,
                    r.get::<_, Option<f64>>(14)?,
                    r.get::<_, Option<f64>>(15)?,
                    r.get::<_, String>(16)?,
                    r.get::<_, Option<i64>>(17)?,
                ),
            ))
        },
    )?;
    let (
        (from, to, done, total, mut status, mut message),
        (hash, overrides, source, seed, keep, version),
        (started, finished, secs, equity, path, bytes),
    ) = row;
    if crate::backtest::catalogue::interrupted(&store.conn)?
        .iter()
        .any(|n| n == name)
    {
        status = "interrupted".into();
        message = crate::backtest::catalogue::INTERRUPTED.into();
    }
    outln!(
        "backtest {name}: {status}{}",
        if message.is_empty() {
            String::new()
        } else {
            format!(" ({message})")
        }
    );
    outln!("  range          {from} to {to}, {done} of {total} sessions done");
    outln!("  configuration  {hash}; source {source}, seed {seed}; --keep-quotes {keep}; optdesk {version}");
    outln!(
        "  overrides      {}",
        if overrides.is_empty() {
            "none".to_string()
        } else {
            overrides.replace('\n', ", ")
        }
    );
    outln!(
        "  ran            started {started} UTC, finished {finished} UTC{}",
        secs.map(|s| format!(", {s:.1} s")).unwrap_or_default()
    );
    outln!(
        "  store          {path}{}",
        bytes
            .map(|b| format!(" ({:.1} MB)", b as f64 / 1e6))
            .unwrap_or_default()
    );
    if let Some(e) = equity {
        outln!("  final equity   ${}", crate::report::money(e));
    }
    outln!("Metrics per book (the configuration snapshot: optdesk sql \"SELECT config_snapshot FROM backtests WHERE name = '{name}'\"):");
    print_query(
        &store,
        &format!(
            "SELECT book, kind, round(total_return * 100, 2) AS total_return_pct, round(cagr * 100, 2) AS annualized_pct,
                    round(sharpe, 2) AS sharpe, round(sortino, 2) AS sortino, round(max_drawdown * 100, 2) AS max_drawdown_pct,
                    round(win_rate * 100, 1) AS win_rate_pct, trades, round(total_pnl, 2) AS total_pnl
             FROM backtest_metrics WHERE name = '{}'
             ORDER BY CASE kind WHEN 'book' THEN 0 WHEN 'strategy' THEN 1 ELSE 2 END, book",
            name.replace('\'', "''")
        ),
    )
}

/// A backtest's options from its command line (shared by `backtest` and `sweep`, whose
/// points are backtests).
#[allow(clippy::too_many_arguments)]
fn backtest_options(
    ctx: &Ctx,
    (from, to): (NaiveDate, NaiveDate),
    name: Option<String>,
    sets: Vec<String>,
    source: Option<&str>,
    seed: Option<u64>,
    keep_quotes: KeepQuotesArg,
    restart: bool,
) -> Result<crate::backtest::Options> {
    use crate::backtest::KeepQuotes;
    let source = source
        .map(|s| s.parse::<crate::config::SourceKind>())
        .transpose()
        .map_err(|e| UsageError(format!("--source: {e}")))?;
    Ok(crate::backtest::Options {
        from,
        to,
        name,
        source,
        seed,
        sets,
        keep_quotes: match keep_quotes {
            KeepQuotesArg::Traded => KeepQuotes::Traded,
            KeepQuotesArg::All => KeepQuotes::All,
            KeepQuotesArg::None => KeepQuotes::None,
        },
        restart,
        jobs_dir: ctx.jobs_dir.clone(),
        jobs_explicit: ctx.jobs_explicit,
        main_db: ctx.db.clone(),
    })
}

/// How long a reader waits for a store a writer has open: desk.toml's lock timeout.
fn lock_timeout(ctx: &Ctx) -> std::time::Duration {
    std::time::Duration::from_secs(
        ctx.config()
            .map(|c| c.desk.desk.lock_timeout_secs)
            .unwrap_or(30),
    )
}

/// Print a comparison and write its page and CSV.
fn print_comparison(
    cmp: &crate::backtest::sweep::Comparison,
    page: &std::path::Path,
) -> Result<()> {
    for line in cmp.text().lines() {
        outln!("{line}");
    }
    let (html, csv) = cmp.write(page).map_err(anyhow::Error::msg)?;
    outln!("comparison page {} (CSV {})", html.display(), csv.display());
    Ok(())
}

/// `optdesk backtest sweep --from D --to D --grid K=V1,V2 ...`.
fn backtest_sweep(ctx: &Ctx, a: SweepArgs) -> Result<bool> {
    use crate::backtest::sweep::{self, PointEnd, SweepOptions};
    if a.parallel == Some(0) {
        return Err(UsageError("--parallel 0: run at least one point at a time".into()).into());
    }
    let grids: Vec<sweep::Grid> = a
        .grid
        .iter()
        .map(|g| sweep::parse_grid(g))
        .collect::<Result<_, _>>()
        .map_err(UsageError)?;
    let prefix = a
        .name
        .clone()
        .unwrap_or_else(|| sweep::default_prefix(a.from, a.to));
    let pts = sweep::points(&prefix, &grids, &a.set).map_err(UsageError)?;
    let sw = SweepOptions {
        base: backtest_options(
            ctx,
            (a.from, a.to),
            None,
            a.set.clone(),
            a.source.as_deref(),
            a.seed,
            a.keep_quotes,
            a.restart,
        )?,
        prefix: prefix.clone(),
    };
    // Every point planned before anything runs: a bad key or value fails here.
    let plans = sweep::validate(&sw, &pts)?;
    let sessions = plans.first().map(|p| p.sessions).unwrap_or(0);
    let stores = crate::backtest::stores_dir(&ctx.db);
    if let Some(file) = &a.emit {
        let text: String = pts.iter().map(|p| sw.command_line(p) + "\n").collect();
        std::fs::write(file, text)
            .with_context(|| format!("--emit: cannot write {}", file.display()))?;
        outln!(
            "wrote {} commands to {} (a backtest of {sessions} sessions each, one a line); run line N with: sed -n \"${{N}}p\" {} | sh",
            pts.len(),
            file.display(),
            sweep::shell_quote(&file.display().to_string())
        );
        outln!(
            "  (a Slurm array job --array=1-{}: N=$SLURM_ARRAY_TASK_ID; a Kubernetes indexed Job of completions {}: N=$((JOB_COMPLETION_INDEX + 1)))",
            pts.len(),
            pts.len()
        );
        outln!(
            "then compare the stores they leave in {}: optdesk backtest collect {} --name {prefix}",
            stores.display(),
            sweep::shell_quote(&stores.display().to_string())
        );
        return Ok(true);
    }
    let parallel = a.parallel.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let todo: Vec<usize> = (0..pts.len()).filter(|&i| plans[i].remaining > 0).collect();
    outln!(
        "sweep {prefix}: {} points of {sessions} sessions from {} to {}; {} to run{}, {} already done; stores and logs in {}",
        pts.len(),
        a.from,
        a.to,
        todo.len(),
        if todo.is_empty() {
            String::new()
        } else {
            format!(" ({} at once)", parallel.min(todo.len()))
        },
        pts.len() - todo.len(),
        stores.display()
    );
    for (p, plan) in pts.iter().zip(&plans) {
        let state = if plan.remaining == 0 {
            "done".to_string()
        } else if plan.remaining < plan.sessions {
            format!(
                "resumes, {} of {} sessions to go",
                plan.remaining, plan.sessions
            )
        } else {
            "to run".to_string()
        };
        outln!("  {}: {} ({state})", p.name, p.describe());
    }
    let stop = Arc::new(AtomicBool::new(false));
    if !todo.is_empty() {
        install_stop_handler(stop.clone());
    }
    let exe =
        std::env::current_exe().context("cannot find the optdesk binary to run the points")?;
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let total = todo.len();
    let on_start = |i: usize| {
        outln!(
            "  started {} (log {})",
            pts[i].name,
            sw.log_path(&pts[i]).display()
        );
    };
    let on_end = |r: &sweep::PointRun| {
        let n = finished.fetch_add(1, Ordering::SeqCst) + 1;
        let name = &pts[r.index].name;
        match &r.end {
            PointEnd::Done => outln!("  [{n}/{total}] {name} done in {:.1} s", r.seconds),
            PointEnd::Stopped => outln!(
                "  [{n}/{total}] {name} stopped after {:.1} s (the sweep again resumes it)",
                r.seconds
            ),
            PointEnd::Failed(why) => outln!("  [{n}/{total}] {name} FAILED: {why}"),
        }
    };
    let runs = sweep::run_points(&sw, &pts, &todo, parallel, &exe, &stop, &on_start, &on_end)?;
    let failed: Vec<String> = runs
        .iter()
        .filter_map(|r| match &r.end {
            PointEnd::Failed(why) => Some(format!("{}: {why}", pts[r.index].name)),
            _ => None,
        })
        .collect();
    let unfinished =
        runs.iter().filter(|r| r.end == PointEnd::Stopped).count() + (todo.len() - runs.len());
    let paths: Vec<PathBuf> = pts
        .iter()
        .map(|p| sw.store_path(p))
        .filter(|p| p.exists())
        .collect();
    match sweep::compare_stores(&prefix, &paths, lock_timeout(ctx)) {
        Ok(cmp) => print_comparison(&cmp, &sw.page_path())?,
        Err(e) if !failed.is_empty() || unfinished > 0 => {
            eprintln!("no comparison: {e}");
        }
        Err(e) => return Err(e.into()),
    }
    if !failed.is_empty() {
        eprintln!(
            "sweep {prefix}: {} of {} points failed (the same command retries them):",
            failed.len(),
            pts.len()
        );
        for f in &failed {
            eprintln!("  {f}");
        }
        return Ok(false);
    }
    if unfinished > 0 {
        return Err(Interrupted(format!(
            "sweep {prefix} stopped with {unfinished} of {} points unfinished: run the same command again to resume",
            pts.len()
        ))
        .into());
    }
    outln!("sweep {prefix} done: {} points", pts.len());
    Ok(true)
}

/// `optdesk backtest collect DIR [--name PREFIX] [--out FILE]`.
fn backtest_collect(
    ctx: &Ctx,
    dir: &std::path::Path,
    prefix: Option<&str>,
    out: Option<PathBuf>,
) -> Result<bool> {
    use crate::backtest::sweep;
    if let Some(p) = prefix {
        crate::backtest::check_name(p).map_err(|e| UsageError(e.to_string()))?;
    }
    let cmp = sweep::collect(dir, prefix, lock_timeout(ctx))?;
    let page = out.unwrap_or_else(|| sweep::collect_page(dir, prefix));
    print_comparison(&cmp, &page)?;
    Ok(true)
}
