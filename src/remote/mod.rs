//! Telegram commands: while `optdesk schedule` runs with the Telegram channel configured
//! (`OPTDESK_TELEGRAM_TOKEN`, `OPTDESK_TELEGRAM_CHAT_ID`, the Bot API base URL of the
//! alerts), a thread long-polls the Bot API's `getUpdates` and answers the configured
//! chat: `/status`, `/positions`, `/pnl`, `/kill on|off`, `/flatten` (then
//! `/flatten confirm` within 60 s), `/help`.
//!
//! - Only the configured chat is obeyed; a message from any other chat does nothing, gets
//!   no answer, and is recorded as `refused` with its chat id and sender.
//! - A message sent before this poller started (queued while the daemon was down) is
//!   never acted on (`expired`), and an update is handled once: the offset confirms it to
//!   Telegram, and an update id already in `commands` is skipped.
//! - The commands act through the CLI's paths: the kill file of [`crate::jobs::kill`],
//!   and the `flatten` job run in the job envelope (recorded in `job_runs`, trigger
//!   `telegram`). A command that reads or writes the store takes the daemon's process
//!   gate ([`crate::store::try_gate`]) with a bounded wait; while a job runs it answers
//!   "busy".
//! - A failing or stalling API never stops the daemon: every request has a timeout, and
//!   failures back off exponentially up to 5 minutes; the first failure of a streak and
//!   the recovery are recorded (not every retry).
//! - Every message and its outcome is a row in `commands`. The bot token never reaches
//!   the store, the terminal or a reply.

pub mod api;
pub mod commands;
pub mod views;

pub use api::{Api, Bot, Incoming, Update};

use crate::config::Config;
use crate::jobs::{RunObserver, RunRequest, Trigger};
use crate::store::runs::{RunRecord, Status};
use crate::store::Store;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use commands::{Command, CONFIRM_WINDOW_SECS};
use duckdb::params;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest wait between two polls after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a command waits for a running job to release the store.
const GATE_WAIT: Duration = Duration::from_secs(5);
/// A command that changes the desk (`/kill`, `/flatten`, `/flatten confirm`) delivered
/// more than this many seconds after it was sent is not acted on.
const LATE_COMMAND_SECS: i64 = 60;
/// How long a command waits for another process's lock on the store.
const LOCK_WAIT_SECS: u64 = 5;
/// Rows kept in memory while the store cannot be written.
const BACKLOG_MAX: usize = 1000;

/// Where the daemon's store and configuration are, and its date.
#[derive(Debug, Clone)]
pub struct Remote {
    pub db: PathBuf,
    pub jobs_dir: PathBuf,
    pub jobs_explicit: bool,
    /// `optdesk schedule --pretend-date`: the daemon's "today".
    pub pretend: Option<NaiveDate>,
}

impl Remote {
    fn config(&self) -> Result<Config, String> {
        Config::load(&self.jobs_dir, self.jobs_explicit).map_err(|e| e.to_string())
    }

    fn today(&self) -> NaiveDate {
        crate::clock::now_ny(self.pretend).date_naive()
    }
}

/// The bot the environment configures (the alerts' Telegram channel), if any.
pub fn bot(config: &Config) -> Option<Bot> {
    crate::report::alerts::channels(config)
        .into_iter()
        .find_map(|c| match c {
            crate::report::alerts::Channel::Telegram {
                api,
                token,
                chat_id,
            } => Some(Bot {
                api,
                token,
                chat_id,
            }),
            _ => None,
        })
}

/// Start the poller on its own thread when the Telegram channel is configured; it
/// stops soon after `stop` is set (within one long poll).
pub fn spawn(
    remote: Remote,
    config: &Config,
    stop: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    let bot = bot(config)?;
    let (poll, timeout) = (
        config.desk.alerts.poll_secs,
        config.desk.alerts.timeout_secs,
    );
    let api = match Api::new(bot, poll, timeout) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("telegram: commands are off: {e}");
            return None;
        }
    };
    eprintln!(
        "telegram: answering commands from chat {} (long poll {poll} s)",
        api.bot().chat_id
    );
    std::thread::Builder::new()
        .name("telegram".into())
        .spawn(move || run(&remote, api, &stop))
        .ok()
}

/// One row of `commands`.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub received_at: NaiveDateTime,
    pub sent_at: Option<NaiveDateTime>,
    pub update_id: Option<i64>,
    pub chat_id: Option<String>,
    pub sender: Option<String>,
    pub text: Option<String>,
    pub command: Option<String>,
    pub args: Option<String>,
    pub status: &'static str,
    pub result: String,
    pub run_id: Option<i64>,
}

/// What a command came to.
struct Outcome {
    status: &'static str,
    reply: String,
    run_id: Option<i64>,
}

impl Outcome {
    fn new(status: &'static str, reply: impl Into<String>) -> Outcome {
        Outcome {
            status,
            reply: reply.into(),
            run_id: None,
        }
    }
}

/// A run of failed polls.
struct Streak {
    failures: u32,
    first: String,
    last: String,
    since: Instant,
}

struct Poller<'a> {
    remote: &'a Remote,
    api: Api,
    started_unix: i64,
    started_at: DateTime<Utc>,
    offset: Option<i64>,
    pending_flatten: Option<Instant>,
    backlog: Vec<Row>,
    streak: Option<Streak>,
}

/// Poll and answer until `stop` is set. Never returns early on an API or store
/// failure: those are recorded and retried.
pub fn run(remote: &Remote, api: Api, stop: &AtomicBool) {
    let started_at = Utc::now();
    let mut p = Poller {
        remote,
        api,
        started_unix: started_at.timestamp(),
        started_at,
        offset: None,
        pending_flatten: None,
        backlog: Vec::new(),
        streak: None,
    };
    while !stop.load(Ordering::SeqCst) {
        let asked = Instant::now();
        match p.api.get_updates(p.offset) {
            Err(e) => {
                let wait = p.failed(e);
                sleep_unless_stopped(wait, stop);
            }
            Ok(updates) => {
                p.recovered();
                let empty = updates.is_empty();
                p.handle_batch(updates);
                if !p.backlog.is_empty() {
                    p.flush_backlog(Duration::from_millis(200));
                }
                // A real long poll waits; an API that answers at once must not be
                // asked in a tight loop.
                if empty && asked.elapsed() < Duration::from_millis(200) {
                    sleep_unless_stopped(Duration::from_millis(500), stop);
                }
            }
        }
    }
    if !p.backlog.is_empty() {
        p.flush_backlog(GATE_WAIT);
    }
    eprintln!("telegram: stopped");
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

/// The wait after the `failures`-th failure in a row: 1 s, doubling, at most 5 min.
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    Duration::from_secs(1)
        .saturating_mul(factor)
        .min(MAX_BACKOFF)
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() > max {
        text.chars().take(max).collect::<String>() + "…"
    } else {
        text.to_string()
    }
}

impl Poller<'_> {
    /// A failed poll: the first of a streak is printed and recorded; the wait before
    /// the next try.
    fn failed(&mut self, error: String) -> Duration {
        let failures = match &mut self.streak {
            Some(s) => {
                s.failures += 1;
                s.last = error;
                s.failures
            }
            None => {
                let wait = backoff(1);
                eprintln!(
                    "telegram: {error}; retrying with back-off (1 s, doubling, at most {} s); the jobs run on",
                    MAX_BACKOFF.as_secs()
                );
                self.push(Row {
                    received_at: now(),
                    command: Some("getUpdates".into()),
                    status: "error",
                    result: format!(
                        "{error}; the commands wait, retried with back-off ({} s first, at most {} s); the jobs run on",
                        wait.as_secs(),
                        MAX_BACKOFF.as_secs()
                    ),
                    ..Row::default()
                });
                self.streak = Some(Streak {
                    failures: 1,
                    last: error.clone(),
                    first: error,
                    since: Instant::now(),
                });
                1
            }
        };
        backoff(failures)
    }

    /// A successful poll after failures: the recovery is printed and recorded.
    fn recovered(&mut self) {
        if let Some(s) = self.streak.take() {
            let mut msg = format!(
                "getUpdates works again after {} failed poll(s) over {} s (the first: {}",
                s.failures,
                s.since.elapsed().as_secs(),
                s.first
            );
            if s.failures > 1 {
                msg.push_str(&format!("; the last: {}", s.last));
            }
            msg.push(')');
            eprintln!("telegram: {msg}");
            self.push(Row {
                received_at: now(),
                command: Some("getUpdates".into()),
                status: "done",
                result: msg,
                ..Row::default()
            });
        }
    }

    fn push(&mut self, row: Row) {
        if self.backlog.len() >= BACKLOG_MAX {
            self.backlog.remove(0);
        }
        self.backlog.push(row);
    }

    fn handle_batch(&mut self, updates: Vec<Update>) {
        let mut stale: Vec<String> = Vec::new();
        for u in updates {
            // Never twice: everything below the offset was handled already.
            if self.offset.is_some_and(|o| u.update_id < o) {
                continue;
            }
            self.offset = Some(u.update_id + 1);
            // An edit, a channel post: nothing to do.
            let Some(m) = u.message else { continue };
            if let Some(text) = self.handle(m) {
                stale.push(text);
            }
        }
        if !stale.is_empty() {
            let reply = format!(
                "{} command(s) sent before optdesk started at {} UTC were not acted on: {}. Send again if you still mean it.",
                stale.len(),
                self.started_at.format("%Y-%m-%d %H:%M:%S"),
                stale.join(", ")
            );
            if let Err(e) = self.api.send_message(&reply) {
                self.push(self.reply_failed(None, &e));
            }
        }
    }

    fn reply_failed(&self, update_id: Option<i64>, error: &str) -> Row {
        Row {
            received_at: now(),
            update_id,
            command: Some("sendMessage".into()),
            status: "error",
            result: format!("the reply was not delivered: {error}"),
            ..Row::default()
        }
    }

    /// Handle one message. Returns its text when it came before the poller started (to
    /// be answered together with the batch's others).
    fn handle(&mut self, m: Incoming) -> Option<String> {
        let text = clip(&self.api.redact(&m.text), 500);
        let parsed = commands::parse(&m.text);
        let mut row = Row {
            received_at: now(),
            sent_at: DateTime::from_timestamp(m.date, 0).map(|d| d.naive_utc()),
            update_id: Some(m.update_id),
            chat_id: Some(m.chat_id.clone()),
            sender: Some(clip(&self.api.redact(&m.sender), 100)),
            text: Some(text.clone()),
            command: (!parsed.name.is_empty()).then(|| clip(&self.api.redact(&parsed.name), 50)),
            args: Some(clip(&self.api.redact(&parsed.args.join(" ")), 200)),
            status: "done",
            result: String::new(),
            run_id: None,
        };
        let who = if m.sender.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.api.redact(&m.sender))
        };
        if m.chat_id != self.api.bot().chat_id {
            row.status = "refused";
            row.result = format!(
                "from chat {}, not the configured chat (OPTDESK_TELEGRAM_CHAT_ID): nothing done, no answer",
                m.chat_id
            );
            eprintln!(
                "telegram: a message from chat {}{who} refused: not the configured chat",
                m.chat_id
            );
            self.push(row);
            self.flush_backlog(Duration::from_millis(200));
            return None;
        }
        if m.date < self.started_unix {
            row.status = "expired";
            row.result = format!(
                "sent before optdesk started at {} UTC (a restart): never acted on",
                self.started_at.format("%Y-%m-%d %H:%M:%S")
            );
            eprintln!("telegram: \"{text}\"{who} sent before the start: not acted on");
            self.push(row);
            self.flush_backlog(Duration::from_millis(200));
            return Some(text);
        }
        // A command that changes the desk and was delivered late (the API was down, the
        // poller backing off) is not acted on: the trader sent it for a book and prices
        // that have moved since.
        let age = Utc::now().timestamp() - m.date;
        let outcome = match parsed.command {
            Err(why) => Some(Outcome::new("invalid", why)),
            Ok(c) if c.changes_the_desk() && age > LATE_COMMAND_SECS => {
                if matches!(c, Command::Flatten | Command::FlattenConfirm) {
                    self.pending_flatten = None;
                }
                Some(Outcome::new(
                    "expired",
                    format!("sent {age} s ago and delivered late (more than {LATE_COMMAND_SECS} s): nothing done; send it again if you still mean it"),
                ))
            }
            Ok(c) => self.execute(c, &mut row),
        };
        // None: already handled (the update id is in `commands`).
        let outcome = outcome?;
        // One redacted reply for the log, the row and the chat: a reply may echo an
        // argument, and an argument may be a secret.
        let reply = self.api.redact(&outcome.reply);
        eprintln!(
            "telegram: \"{text}\"{who}: {} — {}",
            outcome.status,
            clip(&reply.replace('\n', " | "), 200)
        );
        row.status = outcome.status;
        row.result = reply.clone();
        row.run_id = outcome.run_id;
        if row.received_at != NaiveDateTime::default() {
            self.push(row);
        }
        // The row is written before the answer goes out: a stalled API never holds
        // the store.
        self.flush_backlog(Duration::from_millis(200));
        if let Err(e) = self.api.send_message(&reply) {
            eprintln!("telegram: {e}");
            let r = self.reply_failed(Some(m.update_id), &e);
            self.push(r);
        }
        None
    }

    /// Do `c`. `row` is written with the store when the command opens it (then its
    /// `received_at` is cleared so it is not written twice).
    fn execute(&mut self, c: Command, row: &mut Row) -> Option<Outcome> {
        let config = match self.remote.config() {
            Ok(c) => c,
            Err(e) => {
                return Some(Outcome::new(
                    "error",
                    format!("the configuration cannot be read: {e}; nothing done"),
                ))
            }
        };
        match c {
            Command::Help => Some(Outcome::new("done", commands::help())),
            Command::Kill { on } => {
                // The kill file needs no store: it works even while a job runs.
                let by = "Telegram `/kill on`";
                let r = if on {
                    crate::jobs::kill::turn_on(&config, by)
                } else {
                    crate::jobs::kill::turn_off(&config)
                };
                Some(match r {
                    Ok(change) => Outcome::new("done", change.message()),
                    Err(e) => Outcome::new("error", format!("{e}; nothing changed")),
                })
            }
            Command::FlattenConfirm
                if self
                    .pending_flatten
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(CONFIRM_WINDOW_SECS)) =>
            {
                let why = if self.pending_flatten.is_some() {
                    format!("the /flatten request is older than {CONFIRM_WINDOW_SECS} s")
                } else {
                    "no /flatten request since optdesk started".into()
                };
                self.pending_flatten = None;
                Some(Outcome::new(
                    "expired",
                    format!("{why}: nothing done, every position stays open. Send /flatten, then /flatten confirm within {CONFIRM_WINDOW_SECS} s"),
                ))
            }
            _ => self.with_store(&config, row, c),
        }
    }

    /// Run a command that needs the store: take the gate (bounded), open the store,
    /// skip an update already handled, act, and write its row with the backlog.
    fn with_store(&mut self, config: &Config, row: &mut Row, c: Command) -> Option<Outcome> {
        let Some(_gate) = crate::store::try_gate(GATE_WAIT) else {
            return Some(Outcome::new(
                "error",
                "busy, a job is running; try again in a minute (nothing done)",
            ));
        };
        let timeout = Duration::from_secs(config.desk.desk.lock_timeout_secs.min(LOCK_WAIT_SECS));
        let store = match Store::open_write(
            &self.remote.db,
            timeout,
            &format!(
                "optdesk schedule (Telegram /{})",
                row.command.clone().unwrap_or_default()
            ),
        ) {
            Ok(s) => s,
            Err(e) => {
                return Some(Outcome::new(
                    "error",
                    format!(
                        "the store cannot be opened: {}; nothing done, try again",
                        crate::config::redact_secrets(&e.to_string())
                    ),
                ))
            }
        };
        if let Some(id) = row.update_id {
            let seen: i64 = store
                .conn
                .query_row(
                    "SELECT count(*) FROM commands WHERE update_id = ? AND command IS DISTINCT FROM 'sendMessage'",
                    params![id],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            if seen > 0 {
                eprintln!("telegram: update {id} was handled already: skipped");
                return None;
            }
        }
        let today = self.remote.today();
        let result = match c {
            Command::Status => {
                let kill = match crate::jobs::kill::state(config) {
                    Ok(k) => k.describe(),
                    Err(e) => format!("kill switch: unknown ({e})"),
                };
                let mut text = views::status(&store.conn, today, &kill);
                if let (Ok(t), Some(p)) = (&mut text, self.pending_flatten) {
                    let left = CONFIRM_WINDOW_SECS.saturating_sub(p.elapsed().as_secs());
                    if p.elapsed() <= Duration::from_secs(CONFIRM_WINDOW_SECS) {
                        t.push_str(&format!(
                            "\na /flatten waits for /flatten confirm ({left} s left)"
                        ));
                    }
                }
                text.map(|t| Outcome::new("done", t))
            }
            Command::Positions => {
                views::positions(&store.conn, today).map(|t| Outcome::new("done", t))
            }
            Command::Pnl => views::pnl(&store.conn, today).map(|t| Outcome::new("done", t)),
            Command::Flatten => self.ask_flatten(&store, today),
            Command::FlattenConfirm => {
                self.pending_flatten = None;
                Ok(self.flatten(&store, config, today))
            }
            Command::Help | Command::Kill { .. } => Ok(Outcome::new("done", "")),
        };
        let outcome = result.unwrap_or_else(|e| {
            Outcome::new(
                "error",
                format!(
                    "the store could not be read: {}; nothing done",
                    crate::text::one_line(&e.to_string())
                ),
            )
        });
        // Write this row now, with the backlog, in the store the command opened.
        let mut done = row.clone();
        done.status = outcome.status;
        done.result = self.api.redact(&outcome.reply);
        done.run_id = outcome.run_id;
        self.backlog.push(done);
        self.write_backlog(&store);
        if self.backlog.is_empty() {
            row.received_at = NaiveDateTime::default();
        } else {
            // Could not be written: keep only the earlier rows; the caller adds this one.
            self.backlog.pop();
        }
        Some(outcome)
    }

    fn ask_flatten(&mut self, store: &Store, today: NaiveDate) -> Result<Outcome, duckdb::Error> {
        let Some((d, t)) = views::latest_snapshot(&store.conn, today)? else {
            return Ok(Outcome::new(
                "error",
                "the store has no chain snapshot to close at: nothing done",
            ));
        };
        let n = views::open_positions(&store.conn, d)?;
        if n == 0 {
            self.pending_flatten = None;
            return Ok(Outcome::new(
                "done",
                format!("No positions are open (as of {d}): nothing to flatten."),
            ));
        }
        self.pending_flatten = Some(Instant::now());
        Ok(Outcome::new(
            "pending",
            format!(
                "/flatten closes all {n} open position(s) at the {d} {} quotes (the latest snapshot), as `optdesk flatten --as-of {d}`. Send /flatten confirm within {CONFIRM_WINDOW_SECS} s to do it; otherwise nothing happens.",
                t.format("%H:%M")
            ),
        ))
    }

    /// `/flatten confirm`: the flatten job in the job envelope, as `optdesk flatten`
    /// runs it, for the latest snapshot's session.
    fn flatten(&mut self, store: &Store, config: &Config, today: NaiveDate) -> Outcome {
        let as_of = match views::latest_snapshot(&store.conn, today) {
            Ok(Some((d, _))) => d,
            Ok(None) => {
                return Outcome::new(
                    "error",
                    "the store has no chain snapshot to close at: nothing done",
                )
            }
            Err(e) => {
                return Outcome::new(
                    "error",
                    format!("the store could not be read: {e}; nothing done"),
                )
            }
        };
        let prepared = match crate::jobs::flatten::prepare(config) {
            Ok(p) => p,
            Err(e) => {
                return Outcome::new("error", format!("flatten cannot start: {e}; nothing done"))
            }
        };
        let req = RunRequest {
            as_of,
            slot: None,
            dry_run: false,
            trigger: Trigger::Telegram,
            resend: false,
        };
        eprintln!("telegram: /flatten confirm: running flatten for {as_of}");
        match crate::jobs::run_one(store, config, &prepared, &req, &AlertAndLog) {
            Ok(rec) => {
                let left = views::open_positions(&store.conn, as_of).unwrap_or(-1);
                let (status, head) = match rec.status {
                    Status::Ok => ("done", "flatten done"),
                    Status::Failed => ("error", "flatten FAILED"),
                    Status::Skipped => ("error", "flatten skipped"),
                };
                Outcome {
                    status,
                    reply: format!(
                        "{head} for {as_of} (job run {}): {}; {left} position(s) open now",
                        rec.run_id,
                        crate::config::redact_secrets(&rec.message)
                    ),
                    run_id: Some(rec.run_id),
                }
            }
            Err(e) => Outcome::new(
                "error",
                format!(
                    "flatten could not be recorded: {}; check `optdesk check`",
                    crate::config::redact_secrets(&e.to_string())
                ),
            ),
        }
    }

    /// Write the backlog when the gate and the store allow within `wait`; else keep it.
    fn flush_backlog(&mut self, wait: Duration) {
        if self.backlog.is_empty() {
            return;
        }
        let Some(_gate) = crate::store::try_gate(wait) else {
            return;
        };
        // Briefly: the rows can wait for the next poll, the commands should not.
        let timeout = self
            .remote
            .config()
            .map(|c| c.desk.desk.lock_timeout_secs.min(1))
            .unwrap_or(1);
        match Store::open_write(
            &self.remote.db,
            Duration::from_secs(timeout),
            "optdesk schedule (Telegram commands)",
        ) {
            Ok(store) => self.write_backlog(&store),
            Err(e) => tracing::warn!(
                "telegram: {} command row(s) wait: the store cannot be opened: {}",
                self.backlog.len(),
                crate::config::redact_secrets(&e.to_string())
            ),
        }
    }

    fn write_backlog(&mut self, store: &Store) {
        let rows = std::mem::take(&mut self.backlog);
        for (i, r) in rows.iter().enumerate() {
            if let Err(e) = insert(store, r, &self.api) {
                eprintln!(
                    "telegram: cannot record in commands: {}",
                    crate::text::one_line(&e.to_string())
                );
                self.backlog = rows[i..].to_vec();
                return;
            }
        }
    }
}

fn insert(store: &Store, r: &Row, api: &Api) -> Result<(), duckdb::Error> {
    let red = |s: &Option<String>| s.as_deref().map(|t| api.redact(t));
    store.conn.execute(
        "INSERT INTO commands VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            r.received_at,
            r.sent_at,
            r.update_id,
            red(&r.chat_id),
            red(&r.sender),
            red(&r.text),
            red(&r.command),
            red(&r.args),
            r.status,
            api.redact(&r.result),
            r.run_id
        ],
    )?;
    Ok(())
}

/// The daemon's observer for a job a command runs: its alerts, and its line on stderr.
struct AlertAndLog;

impl RunObserver for AlertAndLog {
    fn on_record(&self, store: &Store, config: &Config, rec: &RunRecord) {
        crate::report::alerts::after_run(store, config, rec);
        eprintln!(
            "{}",
            crate::config::redact_secrets(&format!(
                "telegram:   {} {} {} rows {:.2}s  {}",
                rec.job,
                rec.status.as_str(),
                rec.rows_written,
                rec.seconds,
                rec.message
            ))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_one_second_to_five_minutes() {
        let secs: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    /// While a job holds the process gate, a command that needs the store answers
    /// "busy" after a bounded wait; `/kill` still acts; every row is written once the
    /// gate is free.
    #[test]
    fn a_running_job_makes_store_commands_busy_and_kill_still_works() {
        use std::sync::Mutex;
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs");
        std::fs::create_dir_all(&jobs).unwrap();
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let sent: Arc<Mutex<Vec<String>>> = Arc::default();
        let served = Arc::new(AtomicBool::new(false));
        {
            let (sent, served) = (sent.clone(), served.clone());
            std::thread::spawn(move || {
                for mut req in server.incoming_requests() {
                    let mut body = String::new();
                    let _ = req.as_reader().read_to_string(&mut body);
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let result = if req.url().ends_with("/sendMessage") {
                        sent.lock()
                            .unwrap()
                            .push(v["text"].as_str().unwrap_or("").into());
                        serde_json::json!({})
                    } else if !served.swap(true, Ordering::SeqCst) {
                        let date = Utc::now().timestamp() + 5;
                        let msg = |id: i64, text: &str| {
                            serde_json::json!({"update_id": id, "message": {
                                "date": date, "chat": {"id": 42}, "from": {"username": "ann"}, "text": text}})
                        };
                        serde_json::json!([msg(1, "/status"), msg(2, "/kill on")])
                    } else {
                        std::thread::sleep(Duration::from_millis(100));
                        serde_json::json!([])
                    };
                    let _ = req.respond(tiny_http::Response::from_string(
                        serde_json::json!({"ok": true, "result": result}).to_string(),
                    ));
                }
            });
        }
        let remote = Remote {
            db: dir.path().join("optdesk.duckdb"),
            jobs_dir: jobs.clone(),
            jobs_explicit: true,
            pretend: None,
        };
        let bot = Bot {
            api: format!("http://127.0.0.1:{port}"),
            token: "1:TEST-TOKEN-NOT-SECRET".into(),
            chat_id: "42".into(),
        };
        let api = Api::new(bot, 1, 2).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let gate = crate::store::process_gate()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let poller = {
            let (remote, stop) = (remote.clone(), stop.clone());
            std::thread::spawn(move || run(&remote, api, &stop))
        };
        let wait_for = |n: usize| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while sent.lock().unwrap().len() < n {
                assert!(Instant::now() < deadline, "{:?}", sent.lock().unwrap());
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait_for(2);
        let replies = sent.lock().unwrap().clone();
        assert!(
            replies[0].starts_with("busy, a job is running"),
            "{replies:?}"
        );
        assert!(replies[1].starts_with("kill switch ON"), "{replies:?}");
        assert!(dir.path().join("data/KILL").exists());
        // Nothing could be written while the gate was held.
        assert!(!remote.db.exists());
        drop(gate);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !remote.db.exists() {
            assert!(Instant::now() < deadline, "the rows were never written");
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::SeqCst);
        poller.join().unwrap();
        let store = Store::open_read(&remote.db, Duration::from_secs(5)).unwrap();
        let mut q = store
            .conn
            .prepare("SELECT update_id, command, status, result FROM commands ORDER BY update_id")
            .unwrap();
        let rows: Vec<(i64, String, String, String)> = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            (rows[0].1.as_str(), rows[0].2.as_str()),
            ("status", "error")
        );
        assert!(rows[0].3.contains("busy"), "{rows:?}");
        assert_eq!((rows[1].1.as_str(), rows[1].2.as_str()), ("kill", "done"));
    }
}
