//! Configuration: `jobs/desk.toml` (desk-wide) and one `jobs/<job>.toml` per job.
//!
//! Every file is parsed with unknown keys refused, so a typo fails at load with the file,
//! the line and the key instead of being silently ignored. A missing file means the
//! built-in defaults (the same values as the files shipped in `jobs/`). Secrets never
//! live here: they come from environment variables only.

use crate::clock::TimeSpec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("configuration folder {0} does not exist (set by --jobs or OPTDESK_JOBS)")]
    MissingDir(String),
}

/// Where market data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The embedded, seeded, deterministic simulated market.
    #[default]
    Sim,
    /// Vendor end-of-day files loaded by `optdesk import`, replayed from the store.
    Replay,
    /// Cboe's delayed-quotes JSON (15-minute delayed chains over HTTP).
    Cboe,
    /// Yahoo Finance's v7 options and v8 chart endpoints (delayed chains and daily bars).
    Yahoo,
    /// Interactive Brokers through TWS or IB Gateway (`[ibkr]`).
    Ibkr,
}

impl SourceKind {
    /// Whether the source fetches delayed quotes over the web, whose default daily
    /// snapshot is `open+30m` (at 09:35 they are still pre-open quotes).
    pub fn is_web(self) -> bool {
        matches!(self, SourceKind::Cboe | SourceKind::Yahoo)
    }
}

impl std::str::FromStr for SourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sim" => Ok(SourceKind::Sim),
            "replay" => Ok(SourceKind::Replay),
            "cboe" => Ok(SourceKind::Cboe),
            "yahoo" => Ok(SourceKind::Yahoo),
            "ibkr" => Ok(SourceKind::Ibkr),
            other => Err(format!(
                "unknown source '{other}': the sources are sim, replay, cboe, yahoo, ibkr"
            )),
        }
    }
}

/// `[cboe]`: Cboe's delayed-quotes JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CboeConfig {
    /// The host; the paths under it are as on the real one
    /// (`/api/global/delayed_quotes/options/<SYM>.json`).
    pub base_url: String,
    /// The symbols fetched when `fetch_chains.toml` names none.
    pub symbols: Vec<String>,
    /// Seconds before one request times out.
    pub timeout_secs: u64,
    /// Tries per symbol in all: 429, 5xx, 403 and dropped connections are tried again.
    pub attempts: u32,
    /// The wait before the first retry, doubled before each later one, milliseconds.
    pub backoff_ms: u64,
    /// The longest wait between two tries (and the cap on a 429's Retry-After), seconds.
    pub max_backoff_secs: u64,
    /// The pause between two requests of one worker, milliseconds (politeness).
    pub pause_ms: u64,
    /// Symbols fetched at the same time (1 to 8).
    pub concurrency: usize,
    /// The User-Agent sent (Cboe's CDN refuses some clients without a browser's).
    pub user_agent: String,
    /// A fixed risk-free rate (continuously compounded) for every session, overriding
    /// the rate table of `desk.rates_file`; unset, the table's rate for the session.
    pub rate: Option<f64>,
    /// Dividend yield (continuously compounded) the snapshot is priced with; each
    /// expiry's forward comes from put–call parity when it can.
    pub div_yield: f64,
    /// Where daily bars come from, which this endpoint does not give: `archive` (files
    /// loaded with `optdesk import`), `yahoo` (Yahoo's chart endpoint, with the `[yahoo]`
    /// settings) or `none`.
    pub history: HistorySource,
}

/// `[yahoo]`: Yahoo Finance's options (v7) and chart (v8) endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct YahooConfig {
    /// The API host, for `/v1/test/getcrumb`, `/v7/finance/options/<SYM>` and
    /// `/v8/finance/chart/<SYM>`.
    pub base_url: String,
    /// Where the session cookie comes from (any answer that sets one).
    pub cookie_url: String,
    /// The symbols fetched when `fetch_chains.toml` names none. Indices (SPX, VIX, NDX,
    /// RUT, ...) are asked for as `^SPX`.
    pub symbols: Vec<String>,
    /// Seconds before one request times out.
    pub timeout_secs: u64,
    /// Tries per request in all: 429, 5xx, 403 and dropped connections are tried again.
    pub attempts: u32,
    /// The wait before the first retry, doubled before each later one, milliseconds.
    pub backoff_ms: u64,
    /// The longest wait between two tries (and the cap on a 429's Retry-After), seconds.
    pub max_backoff_secs: u64,
    /// The pause between two requests of one worker, milliseconds (politeness).
    pub pause_ms: u64,
    /// Symbols fetched at the same time (1 to 8).
    pub concurrency: usize,
    /// The User-Agent sent (Yahoo answers 429 to many non-browser agents).
    pub user_agent: String,
    /// A fixed risk-free rate (continuously compounded) for every session, overriding
    /// the rate table of `desk.rates_file`; unset, the table's rate for the session.
    pub rate: Option<f64>,
    /// Dividend yield (continuously compounded) the snapshot is priced with; each
    /// expiry's forward comes from put–call parity when it can.
    pub div_yield: f64,
}

impl Default for YahooConfig {
    fn default() -> Self {
        YahooConfig {
            base_url: "https://query2.finance.yahoo.com".into(),
            cookie_url: "https://fc.yahoo.com".into(),
            symbols: vec!["SPY".into(), "QQQ".into(), "IWM".into()],
            timeout_secs: 20,
            attempts: 4,
            backoff_ms: 2000,
            max_backoff_secs: 60,
            pause_ms: 500,
            concurrency: 2,
            user_agent:
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
                    .into(),
            rate: None,
            div_yield: 0.0,
        }
    }
}

/// The settings both web sources share, checked the same way.
struct WebSettings<'a> {
    table: &'static str,
    urls: Vec<(&'static str, &'a str)>,
    timeout_secs: u64,
    attempts: u32,
    backoff_ms: u64,
    max_backoff_secs: u64,
    pause_ms: u64,
    concurrency: usize,
    symbols: &'a [String],
}

impl WebSettings<'_> {
    fn check(&self) -> Result<(), String> {
        let t = self.table;
        for (key, url) in &self.urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "{t}.{key} = \"{url}\": expected an http:// or https:// URL"
                ));
            }
        }
        if !(1..=300).contains(&self.timeout_secs) || !(1..=20).contains(&self.attempts) {
            return Err(format!(
                "{t}.timeout_secs (1 to 300) and {t}.attempts (1 to 20) out of range"
            ));
        }
        if self.backoff_ms > 60_000 || self.max_backoff_secs > 600 || self.pause_ms > 60_000 {
            return Err(format!(
                "{t}.backoff_ms (at most 60000), {t}.max_backoff_secs (at most 600) or {t}.pause_ms (at most 60000) out of range"
            ));
        }
        if !(1..=8).contains(&self.concurrency) {
            return Err(format!(
                "{t}.concurrency = {}: expected 1 to 8",
                self.concurrency
            ));
        }
        if self.symbols.is_empty() {
            return Err(format!(
                "{t}.symbols is empty: name the symbols fetched when fetch_chains.toml names none"
            ));
        }
        if let Some(s) = self.symbols.iter().find(|s| {
            s.len() > 6
                || !s.starts_with(|ch: char| ch.is_ascii_uppercase())
                || !s
                    .chars()
                    .all(|ch| ch.is_ascii_uppercase() || ch == '-' || ch == '.')
        }) {
            return Err(format!("{t}.symbols: '{s}' is not a symbol"));
        }
        Ok(())
    }
}

/// Where a web source's daily bars come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistorySource {
    /// Files loaded with `optdesk import`.
    Archive,
    /// Yahoo's chart endpoint (`[yahoo]` settings).
    Yahoo,
    /// Nowhere: historical vol waits for bars.
    None,
}

impl Default for CboeConfig {
    fn default() -> Self {
        CboeConfig {
            base_url: "https://cdn.cboe.com".into(),
            symbols: vec!["SPX".into(), "SPY".into(), "QQQ".into(), "IWM".into()],
            timeout_secs: 20,
            attempts: 4,
            backoff_ms: 1000,
            max_backoff_secs: 30,
            pause_ms: 500,
            concurrency: 2,
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) optdesk".into(),
            rate: None,
            div_yield: 0.0,
            history: HistorySource::Archive,
        }
    }
}

/// `[replay]`: replaying imported end-of-day files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// A fixed risk-free rate (continuously compounded) for every replayed session,
    /// overriding the rate table of `desk.rates_file`; unset, the table's rate for the
    /// session.
    pub rate: Option<f64>,
    /// Dividend yield (continuously compounded) of every replayed underlying.
    pub div_yield: f64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            rate: None,
            div_yield: 0.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Desk {
    /// Market-data source for fetch_chains.
    pub source: SourceKind,
    /// How long a second writer waits for the store's write lock before failing.
    pub lock_timeout_secs: u64,
    /// The dated risk-free rate table the real-data sources (replay, cboe) price with,
    /// relative to the project folder; the default path falls back to a built-in copy.
    pub rates_file: String,
}

impl Default for Desk {
    fn default() -> Self {
        Desk {
            source: SourceKind::Sim,
            lock_timeout_secs: 30,
            rates_file: crate::refdata::RATES_FILE.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// The simulated market's seed: the same seed and date give the same market.
    pub seed: u64,
    /// Where the underlyings' paths come from: the seeded model, or the daily bars
    /// loaded with `optdesk import` (`archive_bars`) for the symbols that have them.
    pub underlying: SimUnderlying,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            underlying: SimUnderlying::Model,
        }
    }
}

/// `[sim] underlying`: where the simulated market's underlying paths come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SimUnderlying {
    /// The seeded model's paths for every symbol (the default).
    #[default]
    Model,
    /// Modelled chains over real prices: every symbol with imported daily bars follows
    /// them (open, high, low, close, dividends), the index's implied-vol level follows
    /// imported VIX bars; the rest stays modelled.
    Bars,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// When `optdesk schedule` runs the daily pipeline: session-relative (`open+5m`,
    /// `close-30m`) or a cron expression, in America/New_York. Unset: `open+5m`, or
    /// `open+30m` for the web sources (their delayed quotes at 09:35 are pre-open ones).
    pub daily: Option<String>,
}

impl ScheduleConfig {
    /// `daily` as set, or the default for `source`.
    pub fn daily_for(&self, source: SourceKind) -> String {
        match &self.daily {
            Some(d) => d.clone(),
            None if source.is_web() => "open+30m".into(),
            None => "open+5m".into(),
        }
    }
}

/// `[alerts]`: Telegram and webhook messages after job runs. The bot token, chat id and
/// webhook URL come only from the environment (`OPTDESK_TELEGRAM_TOKEN`,
/// `OPTDESK_TELEGRAM_CHAT_ID`, `OPTDESK_WEBHOOK_URL`): a channel without them is off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Which events are sent: any of fills, risk_halt, job_failure, daily_summary,
    /// signal (the run's proposals, approved or refused) and missed_run (the daemon's
    /// daily run not finished 15 minutes after its time).
    pub events: Vec<String>,
    /// The Telegram Bot API base URL (`OPTDESK_TELEGRAM_API` overrides it).
    pub telegram_api: String,
    /// Attempts per alert and channel (a 5xx, 429 or timeout is tried again).
    pub attempts: u32,
    /// Seconds before one attempt times out.
    pub timeout_secs: u64,
    /// Telegram commands: how long one `getUpdates` long poll waits for a message,
    /// seconds (1 to 50); the daemon stops within about this long.
    pub poll_secs: u64,
}

/// An environment variable's value, `None` when unset or blank (so `VAR=` in an
/// env file means "not set").
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The secrets the environment holds, for [`crate::text::redact`]: the Telegram bot
/// token, the SMTP password, and the webhook URL with its path and query (and each
/// query value), which often carry a secret of their own. Whatever the source of a
/// text (a server's error page echoing the request path, a job's error), these never
/// reach the store, the terminal or the logs.
pub fn secrets() -> Vec<String> {
    let mut out: Vec<String> = [
        "OPTDESK_TELEGRAM_TOKEN",
        "OPTDESK_SMTP_PASSWORD",
        "OPTDESK_DASHBOARD_TOKEN",
    ]
    .iter()
    .filter_map(|k| env_var(k))
    .collect();
    if let Some(url) = env_var("OPTDESK_WEBHOOK_URL") {
        out.extend(url_secrets(&url));
    }
    out
}

/// A URL, its path and query, and its query values.
pub fn url_secrets(url: &str) -> Vec<String> {
    let url = url.trim();
    let mut out = vec![url.to_string()];
    if let Ok(u) = reqwest::Url::parse(url) {
        if u.path() != "/" {
            out.push(u.path().to_string());
        }
        if let Some(q) = u.query() {
            out.push(q.to_string());
            out.push(format!("{}?{q}", u.path()));
        }
        out.extend(u.query_pairs().map(|(_, v)| v.into_owned()));
    }
    out
}

/// `text` with every secret in the environment redacted ([`secrets`]).
pub fn redact_secrets(text: &str) -> String {
    crate::text::redact(text, &secrets())
}

/// The events an alert can be about.
pub const ALERT_EVENTS: &[&str] = &[
    "fills",
    "risk_halt",
    "job_failure",
    "daily_summary",
    "signal",
    "missed_run",
];

/// The events sent when `alerts.events` is not set: all but `signal` (one message per
/// proposal run, for signal-only users, who add it).
pub const DEFAULT_ALERT_EVENTS: &[&str] = &[
    "fills",
    "risk_halt",
    "job_failure",
    "daily_summary",
    "missed_run",
];

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            events: DEFAULT_ALERT_EVENTS.iter().map(|s| s.to_string()).collect(),
            telegram_api: "https://api.telegram.org".into(),
            attempts: 3,
            timeout_secs: 10,
            poll_secs: 10,
        }
    }
}

/// Which broker executes approved orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// Fills from the stored quotes of the snapshot.
    #[default]
    Paper,
    /// Interactive Brokers' paper account through TWS or IB Gateway (`[ibkr]`).
    Ibkr,
}

/// `[broker]` in `jobs/desk.toml`: who executes orders, and the paper broker's fills
/// and commissions. A key left out takes its default (or, for the two keys that used to
/// live there, the value still in `jobs/select_trades.toml [params]`, with a note).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    pub kind: BrokerKind,
    /// Paper fills: 0 = sell at the bid / buy at the ask, 1 = at the mid.
    pub fill_toward_mid: Option<f64>,
    /// Commission per option contract, dollars (IBKR-like 0.65).
    pub commission_per_contract: Option<f64>,
    /// Commission per share, dollars (0.005).
    pub commission_per_share: Option<f64>,
    /// Commission per futures contract and side, dollars (0.62, IBKR's MES all-in).
    pub commission_per_future: Option<f64>,
}

/// `jobs/desk.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DeskFile {
    pub desk: Desk,
    pub sim: SimConfig,
    pub replay: ReplayConfig,
    pub cboe: CboeConfig,
    pub yahoo: YahooConfig,
    pub schedule: ScheduleConfig,
    pub alerts: AlertsConfig,
    pub broker: BrokerSettings,
    pub ibkr: IbkrConfig,
    pub futures: FuturesConfig,
}

/// `[futures]` in `jobs/desk.toml`: when a futures position rolls to the next contract.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FuturesConfig {
    /// Calendar days before the third-Friday expiry on which a position rolls to the
    /// next quarter and the strategies trade the next contract (CME's equity-index roll
    /// date: 8, the Thursday a week before expiry).
    pub roll_days_before: i64,
}

impl Default for FuturesConfig {
    fn default() -> Self {
        FuturesConfig {
            roll_days_before: 8,
        }
    }
}

/// Which market data TWS sends (`reqMarketDataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IbMarketData {
    /// Real-time, with a market-data subscription.
    #[default]
    Live,
    /// The last values at the close when the market is closed.
    Frozen,
    /// 15–20 minutes delayed where there is no subscription.
    Delayed,
    /// Delayed, frozen at the close.
    DelayedFrozen,
}

/// `[ibkr]` in `jobs/desk.toml`: the connection to TWS or IB Gateway, the chain the
/// source asks for, and the broker's re-pricing. The account id is never here: it
/// comes from `OPTDESK_IB_ACCOUNT`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IbkrConfig {
    pub host: String,
    /// 7497 TWS paper, 4002 IB Gateway paper; the live ports 7496 and 4001 are refused
    /// without `allow_live`.
    pub port: u16,
    /// The API client id; TWS keeps order ids per client id, so keep it fixed.
    pub client_id: i32,
    pub market_data: IbMarketData,
    /// Seconds to connect (the handshake).
    pub connect_timeout_secs: u64,
    /// Seconds any one request may take (contract details, bars, orders' queries).
    pub request_timeout_secs: u64,
    /// Seconds a snapshot may take (IB ends one about 11 s after it is asked).
    pub snapshot_timeout_secs: u64,
    /// Reconnection attempts after a dropped connection before the job fails.
    pub reconnect_attempts: u32,
    /// Messages per second sent at most (IB's limit is 50).
    pub max_messages_per_sec: u32,
    /// Market-data lines held at once at most (IB's default allowance is 100).
    pub max_lines: usize,
    /// The symbols fetched when `fetch_chains.toml` names none.
    pub symbols: Vec<String>,
    /// Strikes asked for: within this fraction of the underlying's price.
    pub moneyness: f64,
    /// Expiries asked for: up to this many calendar days out (and at most
    /// `fetch_chains`' `max_expiry_days`).
    pub max_expiry_days: u32,
    /// At most this many expiries per symbol.
    pub max_expiries: usize,
    /// Ask IB for 30-day ATM implied-vol history (OPTION_IMPLIED_VOLATILITY bars).
    pub iv_history: bool,
    /// Dividend yield (continuously compounded) the snapshot is priced with.
    pub div_yield: f64,
    /// A fixed risk-free rate instead of the rate table of `desk.rates_file`.
    pub rate: Option<f64>,
    /// An unfilled limit order is re-priced this many times toward the natural price,
    /// then cancelled.
    pub reprice_steps: u32,
    /// Seconds to wait for a fill at each price.
    pub reprice_wait_secs: f64,
    /// Orders may go to a live account (also needs OPTDESK_IB_ALLOW_LIVE=1).
    pub allow_live: bool,
}

impl Default for IbkrConfig {
    fn default() -> Self {
        IbkrConfig {
            host: "127.0.0.1".into(),
            port: 7497,
            client_id: 17,
            market_data: IbMarketData::Live,
            connect_timeout_secs: 20,
            request_timeout_secs: 30,
            snapshot_timeout_secs: 15,
            reconnect_attempts: 3,
            max_messages_per_sec: 45,
            max_lines: 90,
            symbols: vec!["SPY".into(), "QQQ".into(), "IWM".into()],
            moneyness: 0.15,
            max_expiry_days: 60,
            max_expiries: 4,
            iv_history: true,
            div_yield: 0.0,
            rate: None,
            reprice_steps: 3,
            reprice_wait_secs: 10.0,
            allow_live: false,
        }
    }
}

impl IbkrConfig {
    /// Refuse settings IB cannot work with, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err(
                "ibkr.host is empty: expected TWS's or IB Gateway's address, e.g. \"127.0.0.1\""
                    .into(),
            );
        }
        if self.port == 0 {
            return Err(
                "ibkr.port = 0: expected 7497 (TWS paper) or 4002 (IB Gateway paper)".into(),
            );
        }
        if !(0..=999_999_999).contains(&self.client_id) {
            return Err(format!(
                "ibkr.client_id = {}: expected 0 to 999999999",
                self.client_id
            ));
        }
        for (k, v) in [
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            ("snapshot_timeout_secs", self.snapshot_timeout_secs),
        ] {
            if !(1..=600).contains(&v) {
                return Err(format!("ibkr.{k} = {v}: expected 1 to 600 seconds"));
            }
        }
        if self.reconnect_attempts > 20 {
            return Err(format!(
                "ibkr.reconnect_attempts = {}: expected 0 to 20",
                self.reconnect_attempts
            ));
        }
        if !(1..=50).contains(&self.max_messages_per_sec) {
            return Err(format!(
                "ibkr.max_messages_per_sec = {}: expected 1 to 50 (IB disconnects above 50)",
                self.max_messages_per_sec
            ));
        }
        if !(1..=100).contains(&self.max_lines) {
            return Err(format!(
                "ibkr.max_lines = {}: expected 1 to 100 (IB's default allowance of market-data lines)",
                self.max_lines
            ));
        }
        if !(self.moneyness.is_finite() && self.moneyness > 0.0 && self.moneyness <= 1.0) {
            return Err(format!(
                "ibkr.moneyness = {}: expected a fraction of the price above 0, at most 1",
                self.moneyness
            ));
        }
        if !(1..=1000).contains(&self.max_expiry_days) || !(1..=50).contains(&self.max_expiries) {
            return Err(format!(
                "ibkr.max_expiry_days = {} and ibkr.max_expiries = {}: expected 1 to 1000 days and 1 to 50 expiries",
                self.max_expiry_days, self.max_expiries
            ));
        }
        if self.reprice_steps > 20
            || !(self.reprice_wait_secs.is_finite()
                && (0.0..=600.0).contains(&self.reprice_wait_secs))
        {
            return Err(format!(
                "ibkr.reprice_steps = {} and ibkr.reprice_wait_secs = {}: expected 0 to 20 steps and 0 to 600 seconds",
                self.reprice_steps, self.reprice_wait_secs
            ));
        }
        for (i, s) in self.symbols.iter().enumerate() {
            crate::model::identifiers::Symbol::new_checked(s)
                .map_err(|e| format!("ibkr.symbols[{i}] = '{s}': {e}"))?;
        }
        Ok(())
    }
}

/// `jobs/<job>.toml`: the envelope every job file shares, plus the job's own `[params]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobFile<P> {
    /// A disabled job is recorded as skipped (with that reason) by `run daily`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Extra intraday slots for `optdesk schedule` (session-relative or cron), beyond the
    /// daily pipeline.
    #[serde(default)]
    pub slots: Vec<String>,
    #[serde(default)]
    pub params: P,
}

fn yes() -> bool {
    true
}

impl<P: Default> Default for JobFile<P> {
    fn default() -> Self {
        JobFile {
            enabled: true,
            slots: Vec::new(),
            params: P::default(),
        }
    }
}

/// The loaded configuration folder.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub desk: DeskFile,
    desk_text: String,
    /// Files of the folder replaced by other text for this process only (a backtest's
    /// `--set` overrides), by their path relative to `dir` (`desk.toml`,
    /// `select_trades.toml`, `strategies/dispersion.toml`).
    overlay: std::sync::Arc<std::collections::BTreeMap<String, String>>,
}

impl Config {
    /// Load `desk.toml` from `dir`. `explicit` says the folder was named by the user
    /// (`--jobs`/`OPTDESK_JOBS`), in which case it must exist; the default `jobs/` may be
    /// absent and then the built-in defaults apply.
    pub fn load(dir: &Path, explicit: bool) -> Result<Config, ConfigError> {
        Config::load_with(dir, explicit, Default::default())
    }

    /// [`Config::load`] with some files' text replaced (`overlay`, by path relative to
    /// `dir`): every reader of the folder ([`Config::read_text`]) sees the replacement.
    pub fn load_with(
        dir: &Path,
        explicit: bool,
        overlay: std::collections::BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let overlay = std::sync::Arc::new(overlay);
        if !dir.is_dir() {
            if explicit {
                return Err(ConfigError::MissingDir(dir.display().to_string()));
            }
            if !overlay.contains_key("desk.toml") {
                return Ok(Config {
                    dir: dir.to_path_buf(),
                    desk: DeskFile::default(),
                    desk_text: String::new(),
                    overlay,
                });
            }
        }
        let path = dir.join("desk.toml");
        let desk_read = match overlay.get("desk.toml") {
            Some(t) => Some(t.clone()),
            None => read_optional(&path)?,
        };
        let (desk, desk_text) = match desk_read {
            Some(text) => (parse::<DeskFile>(&path, &text)?, text),
            None => (DeskFile::default(), String::new()),
        };
        let mut desk = desk;
        if let Some(v) = env_var("OPTDESK_SOURCE") {
            desk.desk.source = v.parse().map_err(|e| ConfigError::Invalid {
                file: "OPTDESK_SOURCE".into(),
                message: e,
            })?;
        }
        let (c, y) = (&desk.cboe, &desk.yahoo);
        for web in [
            WebSettings {
                table: "cboe",
                urls: vec![("base_url", &c.base_url)],
                timeout_secs: c.timeout_secs,
                attempts: c.attempts,
                backoff_ms: c.backoff_ms,
                max_backoff_secs: c.max_backoff_secs,
                pause_ms: c.pause_ms,
                concurrency: c.concurrency,
                symbols: &c.symbols,
            },
            WebSettings {
                table: "yahoo",
                urls: vec![("base_url", &y.base_url), ("cookie_url", &y.cookie_url)],
                timeout_secs: y.timeout_secs,
                attempts: y.attempts,
                backoff_ms: y.backoff_ms,
                max_backoff_secs: y.max_backoff_secs,
                pause_ms: y.pause_ms,
                concurrency: y.concurrency,
                symbols: &y.symbols,
            },
        ] {
            web.check().map_err(|message| ConfigError::Invalid {
                file: path.display().to_string(),
                message,
            })?;
        }
        if desk.broker.kind == BrokerKind::Ibkr
            && matches!(desk.desk.source, SourceKind::Sim | SourceKind::Replay)
        {
            return Err(ConfigError::Invalid {
                file: path.display().to_string(),
                message: format!(
                    "broker.kind = \"ibkr\" with desk.source = \"{}\": IB's orders are priced from the run's snapshot, which must be today's market: set desk.source = \"ibkr\" (or a live web source)",
                    match desk.desk.source {
                        SourceKind::Sim => "sim",
                        _ => "replay",
                    }
                ),
            });
        }
        desk.ibkr.check().map_err(|message| ConfigError::Invalid {
            file: path.display().to_string(),
            message,
        })?;
        for (key, v) in [
            ("ibkr.rate", desk.ibkr.rate),
            ("ibkr.div_yield", Some(desk.ibkr.div_yield)),
            ("replay.rate", desk.replay.rate),
            ("replay.div_yield", Some(desk.replay.div_yield)),
            ("cboe.rate", desk.cboe.rate),
            ("cboe.div_yield", Some(desk.cboe.div_yield)),
            ("yahoo.rate", desk.yahoo.rate),
            ("yahoo.div_yield", Some(desk.yahoo.div_yield)),
        ] {
            let Some(v) = v else { continue };
            if !(-0.05..=0.5).contains(&v) {
                return Err(ConfigError::Invalid {
                    file: path.display().to_string(),
                    message: format!("{key} = {v}: expected a rate between -0.05 and 0.5"),
                });
            }
        }
        if !(1..=30).contains(&desk.futures.roll_days_before) {
            return Err(ConfigError::Invalid {
                file: path.display().to_string(),
                message: format!(
                    "futures.roll_days_before = {}: expected 1 to 30 calendar days before the expiry (8 is CME's roll date)",
                    desk.futures.roll_days_before
                ),
            });
        }
        let daily_text = desk.schedule.daily_for(desk.desk.source);
        let daily = parse_time_spec(&path, "schedule.daily", &daily_text)?;
        daily
            .check_within_sessions()
            .map_err(|e| ConfigError::Invalid {
                file: path.display().to_string(),
                message: format!("schedule.daily = \"{daily_text}\": {e}"),
            })?;
        for (i, e) in desk.alerts.events.iter().enumerate() {
            if !ALERT_EVENTS.contains(&e.as_str()) {
                return Err(ConfigError::Invalid {
                    file: path.display().to_string(),
                    message: format!(
                        "alerts.events[{i}]: unknown event '{e}'; the events are {}",
                        ALERT_EVENTS.join(", ")
                    ),
                });
            }
        }
        if desk.alerts.attempts == 0 || desk.alerts.timeout_secs == 0 {
            return Err(ConfigError::Invalid {
                file: path.display().to_string(),
                message: "alerts.attempts and alerts.timeout_secs must be at least 1".into(),
            });
        }
        if !(1..=50).contains(&desk.alerts.poll_secs) {
            return Err(ConfigError::Invalid {
                file: path.display().to_string(),
                message: format!(
                    "alerts.poll_secs = {}: expected 1 to 50 (seconds one Telegram getUpdates long poll waits)",
                    desk.alerts.poll_secs
                ),
            });
        }
        Ok(Config {
            dir: dir.to_path_buf(),
            desk,
            desk_text,
            overlay,
        })
    }

    /// The text of a file of the configuration folder (`rel` relative to it, e.g.
    /// `strategies/dispersion.toml`): the overlay's when it replaces the file, `None`
    /// when the file does not exist.
    pub fn read_text(&self, rel: &str) -> Result<Option<String>, ConfigError> {
        if let Some(t) = self.overlay.get(rel) {
            return Ok(Some(t.clone()));
        }
        read_optional(&self.dir.join(rel))
    }

    /// The files the overlay replaces, by relative path.
    pub fn overlay(&self) -> &std::collections::BTreeMap<String, String> {
        &self.overlay
    }

    /// Load `jobs/<name>.toml` as the job's typed file, with its raw text (for the hash).
    pub fn job<P: DeserializeOwned + Default>(
        &self,
        name: &str,
    ) -> Result<(JobFile<P>, String), ConfigError> {
        let path = self.dir.join(format!("{name}.toml"));
        match self.read_text(&format!("{name}.toml"))? {
            Some(text) => {
                let f: JobFile<P> = parse(&path, &text)?;
                check_slots(&path, &f.slots)?;
                Ok((f, text))
            }
            None => Ok((JobFile::default(), String::new())),
        }
    }

    /// When the daily pipeline runs and takes its snapshot (`schedule.daily`).
    pub fn daily_time(&self) -> Result<TimeSpec, ConfigError> {
        let path = self.dir.join("desk.toml");
        parse_time_spec(
            &path,
            "schedule.daily",
            &self.desk.schedule.daily_for(self.desk.desk.source),
        )
    }

    /// A path named in the configuration: relative paths are relative to the folder
    /// that holds the configuration folder (the project folder: `jobs/`'s parent).
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.dir.parent() {
            Some(root) => root.join(p),
            None => p.to_path_buf(),
        }
    }

    /// A short, stable hash of the desk file and a job's file, recorded with each run so
    /// that a change of configuration is visible in `job_runs`.
    pub fn hash_with(&self, job_text: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.desk_text.as_bytes());
        h.update([0u8]);
        h.update(job_text.as_bytes());
        let d = h.finalize();
        d.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::Read {
            file: path.display().to_string(),
            source: e,
        }),
    }
}

/// Parse a TOML file; the error names the file, the line and the offending key.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let parsed: T = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let msg = e.message().trim().replace('\n', " ");
        ConfigError::Invalid {
            file: path.display().to_string(),
            message: match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg,
            },
        }
    })?;
    // TOML accepts `nan` and `inf`, and a check written as `x <= 0.0` lets NaN through
    // (the rule it sets then never fires): no configuration number may be either.
    if let Ok(value) = toml::from_str::<toml::Table>(text) {
        if let Some((key, v)) = non_finite(&value, "") {
            let leaf = key.rsplit('.').next().unwrap_or(&key);
            let leaf = leaf.split('[').next().unwrap_or(leaf);
            let line = text.lines().position(|l| {
                l.trim_start()
                    .strip_prefix(leaf)
                    .is_some_and(|r| r.trim_start().starts_with('='))
                    && (l.contains("nan") || l.contains("inf"))
            });
            return Err(ConfigError::Invalid {
                file: path.display().to_string(),
                message: format!(
                    "{}{key} = {v}: expected a finite number (nan and inf are not numbers here)",
                    line.map(|l| format!("line {}: ", l + 1))
                        .unwrap_or_default()
                ),
            });
        }
    }
    Ok(parsed)
}

/// The first float in a TOML table that is NaN or infinite: its dotted key and value.
fn non_finite(table: &toml::Table, prefix: &str) -> Option<(String, f64)> {
    fn walk(v: &toml::Value, key: String) -> Option<(String, f64)> {
        match v {
            toml::Value::Float(f) if !f.is_finite() => Some((key, *f)),
            toml::Value::Table(t) => non_finite(t, &key),
            toml::Value::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, x)| walk(x, format!("{key}[{i}]"))),
            _ => None,
        }
    }
    table.iter().find_map(|(k, v)| {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        walk(v, key)
    })
}

/// A job file's `slots`, parsed and checked ([`TimeSpec::check_slot`]): a slot outside
/// the session, a window that ends before it starts or a repeat more often than once a
/// minute is refused, naming the file and the key (`slots[1]`).
pub fn check_slots(path: &Path, slots: &[String]) -> Result<Vec<TimeSpec>, ConfigError> {
    slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let key = format!("slots[{i}]");
            let spec = parse_time_spec(path, &key, s)?;
            spec.check_slot().map_err(|e| ConfigError::Invalid {
                file: path.display().to_string(),
                message: format!("{key} = \"{s}\": {e}"),
            })?;
            Ok(spec)
        })
        .collect()
}

fn parse_time_spec(path: &Path, key: &str, spec: &str) -> Result<TimeSpec, ConfigError> {
    TimeSpec::parse(spec).map_err(|e| ConfigError::Invalid {
        file: path.display().to_string(),
        message: format!("{key} = \"{spec}\": {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct P {
        size: u32,
    }

    #[test]
    fn ibkr_settings_are_checked_and_the_ibkr_broker_needs_todays_market() {
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            std::fs::write(dir.path().join("desk.toml"), text).unwrap();
            Config::load(dir.path(), true).map_err(|e| e.to_string())
        };
        assert!(load("[desk]\nsource = \"ibkr\"\n[broker]\nkind = \"ibkr\"\n").is_ok());
        let e = load("[broker]\nkind = \"ibkr\"\n").unwrap_err();
        assert!(
            e.contains("desk.source = \"sim\"") && e.contains("today's market"),
            "{e}"
        );
        for (text, key) in [
            (
                "[ibkr]\nmax_messages_per_sec = 60\n",
                "ibkr.max_messages_per_sec = 60",
            ),
            ("[ibkr]\nmax_lines = 0\n", "ibkr.max_lines = 0"),
            ("[ibkr]\nmoneyness = 0.0\n", "ibkr.moneyness = 0"),
            ("[ibkr]\nsymbols = [\"spy\"]\n", "ibkr.symbols[0] = 'spy'"),
            ("[ibkr]\nport = 0\n", "ibkr.port = 0"),
            ("[ibkr]\nrate = 0.9\n", "ibkr.rate = 0.9"),
        ] {
            let e = load(text).unwrap_err();
            assert!(
                e.contains("desk.toml") && e.contains(key),
                "{e} / want {key}"
            );
        }
        let e = load("[ibkr]\naccount = \"DU1\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("account"), "{e}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "enabled = true\n[params]\nsize = 3\nsizee = 4\n";
        let e = parse::<JobFile<P>>(Path::new("jobs/x.toml"), text).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("jobs/x.toml: line 4"), "{s}");
        assert!(s.contains("sizee"), "{s}");
    }

    #[test]
    fn wrong_type_is_named() {
        let text = "[params]\nsize = \"three\"\n";
        let s = parse::<JobFile<P>>(Path::new("jobs/x.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(s.contains("line 2"), "{s}");
        assert!(s.contains("invalid type"), "{s}");
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Limits {
        risk: std::collections::BTreeMap<String, f64>,
        params: std::collections::BTreeMap<String, Vec<f64>>,
    }

    #[test]
    fn nan_and_inf_are_refused_naming_file_line_and_key() {
        for (text, want) in [
            (
                "[risk]\nmax_loss = 5.0\nvix_jump_points = nan\n",
                "jobs/x.toml: line 3: risk.vix_jump_points = NaN",
            ),
            (
                "[risk]\nmax_loss = -inf\n",
                "jobs/x.toml: line 2: risk.max_loss = -inf",
            ),
            (
                "[params]\nw = [1.0, +inf]\n",
                "jobs/x.toml: line 2: params.w[1] = inf",
            ),
        ] {
            let s = parse::<Limits>(Path::new("jobs/x.toml"), text)
                .unwrap_err()
                .to_string();
            assert!(s.starts_with(want), "{s} / want {want}");
            assert!(s.contains("expected a finite number"), "{s}");
        }
        assert!(parse::<Limits>(Path::new("x.toml"), "[risk]\nx = 1e300\n").is_ok());
    }

    #[test]
    fn a_daily_time_outside_the_session_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let load = |spec: &str| {
            std::fs::write(
                dir.path().join("desk.toml"),
                format!("[schedule]\ndaily = \"{spec}\"\n"),
            )
            .unwrap();
            Config::load(dir.path(), true).map(|_| ())
        };
        for (spec, at) in [
            ("close+30m", "16:30"),
            ("open-2h", "07:30"),
            ("0 3 * * *", "03:00"),
        ] {
            let e = load(spec).unwrap_err().to_string();
            assert!(
                e.contains("desk.toml")
                    && e.contains(&format!("schedule.daily = \"{spec}\": fires at {at}"))
                    && e.contains("outside the session"),
                "{e}"
            );
        }
        for spec in [
            "open+5m",
            "close-30m",
            "close",
            "35 9 * * MON-FRI",
            "* * * * * *",
        ] {
            assert!(load(spec).is_ok(), "{spec}");
        }
    }

    #[test]
    fn defaults_fill_missing_keys() {
        let f = parse::<JobFile<P>>(Path::new("x.toml"), "").unwrap();
        assert!(f.enabled);
        assert_eq!(f.params, P::default());
        let d = parse::<DeskFile>(Path::new("desk.toml"), "[sim]\nseed = 7\n").unwrap();
        assert_eq!(d.sim.seed, 7);
        assert_eq!(d.desk.lock_timeout_secs, 30);
    }
}
