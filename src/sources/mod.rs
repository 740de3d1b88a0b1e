//! Market-data sources behind one trait. The domain never sees a source's transport.

pub mod cboe;
pub mod import;
pub mod replay;
pub mod sim;
pub mod yahoo;

use crate::model::{DailyBar, OptionQuote, Price};
use crate::net::NetError;
use chrono::{NaiveDate, NaiveDateTime};
use std::time::Duration;

/// Why a source gave nothing. [`SourceError::is_retryable`] tells a job whether trying
/// again later can help (a timeout, a 429, a 5xx, a dropped connection) or not (bad
/// data, a refused request, a symbol the source does not have).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{source_name} has no data for symbol {symbol}")]
    UnknownSymbol {
        source_name: &'static str,
        symbol: String,
    },
    #[error("{source_name} has no data for {date}: {reason}")]
    NoData {
        source_name: &'static str,
        date: NaiveDate,
        reason: String,
    },
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The source asks us to slow down (HTTP 429, IBKR pacing), for `retry_after` when
    /// it says.
    #[error("rate limited{}", retry_after_text(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// An HTTP answer that is not a success (429 is [`SourceError::RateLimited`]).
    #[error("HTTP {status}")]
    Http { status: u16 },
    /// The connection could not be made or was lost.
    #[error("disconnected: {reason}")]
    Disconnected { reason: String },
    /// The request cannot be made at all (a malformed URL, no HTTP client).
    #[error("cannot make the request: {reason}")]
    Request { reason: String },
    /// A request that kept failing in a way worth retrying (429, 5xx, 403 from a CDN,
    /// a timeout, a dropped connection) until the configured bound.
    #[error("{source_name} {symbol}: {last} after {attempts} attempt(s) (the bound is {bound})")]
    GaveUp {
        source_name: &'static str,
        symbol: String,
        last: String,
        attempts: u32,
        bound: String,
    },
    /// A setting, or the reference file it names, that the source cannot work with (the
    /// rate table of `desk.rates_file`).
    #[error("{key}: {reason}")]
    Config { key: String, reason: String },
    /// Something the source does not give at all (1-minute bars from the web sources).
    #[error("{source_name} gives no {what}")]
    Unsupported {
        source_name: &'static str,
        what: String,
    },
    /// A file or an answer with a value that cannot be used; `line` when it has lines.
    #[error("{file_or_source}: {}field '{field}': {reason}", line_text(.line))]
    BadData {
        file_or_source: String,
        line: Option<u64>,
        field: String,
        reason: String,
    },
}

fn retry_after_text(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|d| format!(", retry after {} s", d.as_secs()))
        .unwrap_or_default()
}

fn line_text(line: &Option<u64>) -> String {
    line.map(|n| format!("line {n}, ")).unwrap_or_default()
}

impl SourceError {
    /// Whether trying the same request again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Timeout
            | SourceError::RateLimited { .. }
            | SourceError::Disconnected { .. }
            | SourceError::GaveUp { .. } => true,
            SourceError::Http { status } => *status >= 500,
            SourceError::UnknownSymbol { .. }
            | SourceError::NoData { .. }
            | SourceError::Request { .. }
            | SourceError::Config { .. }
            | SourceError::Unsupported { .. }
            | SourceError::BadData { .. } => false,
        }
    }
}

impl From<NetError> for SourceError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Timeout { .. } => SourceError::Timeout,
            NetError::RateLimited { retry_after, .. } => SourceError::RateLimited { retry_after },
            NetError::Http { status, .. } => SourceError::Http { status },
            NetError::Disconnected { reason } => SourceError::Disconnected { reason },
            NetError::Request { reason } => SourceError::Request { reason },
        }
    }
}

/// The risk-free rate a real-data source prices a session with.
#[derive(Debug, Clone)]
pub enum RiskFreeRate {
    /// One rate for every session: the source's own `rate` key (`[replay] rate`,
    /// `[cboe] rate`), set explicitly as an override.
    Fixed { rate: f64, key: &'static str },
    /// The rate table (`desk.rates_file`): the row in effect on the session.
    Table(std::sync::Arc<crate::refdata::RateTable>),
}

impl RiskFreeRate {
    /// The rate for session `date` (continuously compounded) and where it came from,
    /// for the run's summary; a date before the table's first row is an error.
    pub fn on(
        &self,
        source_name: &'static str,
        date: NaiveDate,
    ) -> Result<(f64, String), SourceError> {
        match self {
            RiskFreeRate::Fixed { rate, key } => Ok((*rate, format!("{key} = {rate}"))),
            RiskFreeRate::Table(t) => {
                let r = t.on(date).map_err(|reason| SourceError::NoData {
                    source_name,
                    date,
                    reason,
                })?;
                Ok((
                    r.rate,
                    format!(
                        "federal funds target {:.2}–{:.2}% from {} in {}",
                        r.low_pct, r.high_pct, r.from, t.from
                    ),
                ))
            }
        }
    }

    /// The rate a source is configured with: its own `rate` key when set, else the rate
    /// table of `desk.rates_file` (the default path falls back to the built-in copy; any
    /// other missing or bad file is an error naming the key).
    pub fn from_config(
        config: &crate::config::Config,
        fixed: Option<f64>,
        key: &'static str,
    ) -> Result<RiskFreeRate, SourceError> {
        if let Some(rate) = fixed {
            return Ok(RiskFreeRate::Fixed { rate, key });
        }
        let file = &config.desk.desk.rates_file;
        crate::refdata::load_rates(&config.resolve(file), file == crate::refdata::RATES_FILE)
            .map(|t| RiskFreeRate::Table(std::sync::Arc::new(t)))
            .map_err(|e| SourceError::Config {
                key: "desk.rates_file".into(),
                reason: e.to_string(),
            })
    }
}

/// One 1-minute bar from a source, stamped with the minute it opens (New York): the
/// bar stamped 10:29 closes at 10:30.
#[derive(Debug, Clone, PartialEq)]
pub struct IntradayBar {
    pub symbol: String,
    pub time: NaiveDateTime,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
}

/// One point of ATM implied-vol history: (date, symbol, 30-day ATM IV).
pub type IvPoint = (NaiveDate, String, f64);

/// The underlying at the moment of a chain snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct UnderlyingQuote {
    pub symbol: String,
    pub price: Price,
    /// Risk-free rate, continuously compounded.
    pub rate: f64,
    /// Dividend yield, continuously compounded.
    pub div_yield: f64,
}

/// Everything a source gives for one session at one time of day.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub as_of: NaiveDate,
    /// New York local time of the snapshot.
    pub quote_time: NaiveDateTime,
    pub underlyings: Vec<UnderlyingQuote>,
    pub quotes: Vec<OptionQuote>,
    /// What the source wants said in the run's summary (a payload's own timestamp, a
    /// symbol without options).
    pub notes: Vec<String>,
    /// What the source received but could not make a quote of, stored in
    /// `quote_rejects` with its rule: nothing is dropped silently.
    pub rejects: Vec<SourceReject>,
}

/// A quote a source could not read.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceReject {
    pub underlying: String,
    /// The contract as received (its symbol, even when it does not parse).
    pub contract: String,
    pub rule: &'static str,
    pub reason: String,
    /// What was received, as text.
    pub raw: String,
}

pub trait MarketData: Send + Sync {
    fn name(&self) -> &'static str;
    /// Where [`MarketData::daily_bars`] come from, as stored with them: the source
    /// itself, or the history source it takes them from (Cboe's bars from Yahoo).
    fn bars_source(&self) -> &'static str {
        self.name()
    }
    /// The symbols fetched when a job does not name its own.
    fn default_symbols(&self) -> Vec<String>;
    /// Underlying prices and option chains for `symbols` at `quote_time` (New York) on
    /// session `as_of`, expirations up to `max_expiry_days` out.
    fn snapshot(
        &self,
        quote_time: NaiveDateTime,
        symbols: &[String],
        max_expiry_days: u32,
    ) -> Result<Snapshot, SourceError>;
    /// Completed daily bars of `symbols` on `dates` (sessions). Dates a source has no
    /// bar for are absent from the result, never invented.
    fn daily_bars(
        &self,
        symbols: &[String],
        dates: &[NaiveDate],
    ) -> Result<Vec<DailyBar>, SourceError>;
    /// 30-day ATM implied-vol history, `None` when the source cannot give it (the
    /// web sources).
    fn atm_iv_history(
        &self,
        _symbols: &[String],
        _dates: &[NaiveDate],
    ) -> Result<Option<Vec<IvPoint>>, SourceError> {
        Ok(None)
    }
    /// The 1-minute bars of `symbols` on session `session` completed by `until` (New
    /// York), oldest first per symbol; [`SourceError::Unsupported`] from a source that
    /// has none.
    fn minute_bars(
        &self,
        _symbols: &[String],
        _session: NaiveDate,
        _until: NaiveDateTime,
    ) -> Result<Vec<IntradayBar>, SourceError> {
        Err(SourceError::Unsupported {
            source_name: self.name(),
            what: "1-minute bars".into(),
        })
    }
    /// Earnings dates of `symbols` in [`from`, `to`], `None` when the source does not
    /// know them.
    fn earnings_dates(
        &self,
        _symbols: &[String],
        _from: NaiveDate,
        _to: NaiveDate,
    ) -> Result<Option<Vec<(String, NaiveDate)>>, SourceError> {
        Ok(None)
    }
    /// A futures contract's (bid, ask, last) at `at` (New York); at a session's close,
    /// `last` is the day's settlement. `None` when the source gives no futures quotes.
    fn future_quote(
        &self,
        _contract: &crate::model::instrument::FuturesContract,
        _at: NaiveDateTime,
    ) -> Result<Option<(Price, Price, Price)>, SourceError> {
        Ok(None)
    }
}

/// `fetch` for each symbol, `concurrency` symbols at a time, the results in the
/// symbols' order. `fetch`'s second argument is whether this is its worker's first
/// symbol (a worker pauses between its requests, not before the first). The first
/// failure stops the workers from taking more symbols, and the failure of the earliest
/// symbol is the answer: all or nothing.
pub fn each_symbol<T: Send>(
    symbols: &[String],
    concurrency: usize,
    fetch: impl Fn(&str, bool) -> Result<T, SourceError> + Sync,
) -> Result<Vec<T>, SourceError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let workers = concurrency.clamp(1, symbols.len().max(1));
    if workers == 1 {
        return symbols
            .iter()
            .enumerate()
            .map(|(i, s)| fetch(s, i == 0))
            .collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done: std::sync::Mutex<Vec<Option<Result<T, SourceError>>>> =
        std::sync::Mutex::new(symbols.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut first = true;
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(sym) = symbols.get(i) else { break };
                    let r = fetch(sym, first);
                    first = false;
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    done.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                }
            });
        }
    });
    // Symbols are taken in order, so every one before the earliest failure was fetched.
    let mut out = Vec::with_capacity(symbols.len());
    for r in done.into_inner().unwrap_or_else(|p| p.into_inner()) {
        match r {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => return Err(e),
            None => unreachable!("a symbol is left only after a failure"),
        }
    }
    Ok(out)
}

/// Index underlyings, which the web sources spell their own way (`_SPX` at Cboe, `^SPX`
/// at Yahoo).
pub const INDEX_SYMBOLS: &[&str] = &[
    "SPX", "VIX", "NDX", "RUT", "XSP", "DJX", "OEX", "XEO", "MRUT",
];

/// A price a web source sent as a number: a negative one is 0 (no market on that
/// side), one that is not a price at all (NaN, beyond $900 billion) is 0 too.
pub fn web_price(x: f64) -> Price {
    Price::try_from_f64(x.max(0.0)).unwrap_or(Price::ZERO)
}

/// The HTTP client of a web source: a timeout on every request, and retries (403
/// included: CDNs refuse now and then what they accept a moment later) with doubling
/// back-off up to `attempts` tries.
pub fn web_client(
    timeout_secs: u64,
    attempts: u32,
    backoff_ms: u64,
    max_backoff_secs: u64,
) -> Result<crate::net::HttpClient, SourceError> {
    Ok(crate::net::HttpClient::new(
        Duration::from_secs(timeout_secs),
        crate::net::RetryPolicy {
            attempts,
            base_backoff: Duration::from_millis(backoff_ms),
            max_backoff: Duration::from_secs(max_backoff_secs),
            retry_forbidden: true,
        },
    )?)
}

/// A web request's final failure: one the client's policy retries ran out of tries
/// (`GaveUp`, naming `[table] attempts` as the bound); any other keeps its kind.
pub fn final_error(
    client: &crate::net::HttpClient,
    e: NetError,
    attempts: u32,
    source_name: &'static str,
    symbol: &str,
) -> SourceError {
    if client.policy().retries(&e) {
        SourceError::GaveUp {
            source_name,
            symbol: symbol.to_string(),
            last: e.to_string(),
            attempts,
            bound: format!(
                "[{source_name}] attempts = {}",
                client.policy().attempts.max(1)
            ),
        }
    } else {
        e.into()
    }
}

/// "{what} time T", or "{what} times A to B" when the symbols' own times differ: a web
/// source's timestamps, for the run's summary.
pub fn times_note(what: &str, stamps: &[NaiveDateTime]) -> Option<String> {
    let (a, b) = (stamps.iter().min()?, stamps.iter().max()?);
    Some(if a == b {
        format!("{what} time {a}")
    } else {
        format!("{what} times {a} to {b}")
    })
}

/// Refuse a chain that is placeholders rather than a market: at least 90% of its
/// contracts with bid and ask both 0 (what the web sources serve outside regular hours).
/// `when` says when such chains are served.
pub fn refuse_placeholder_chain(
    source_name: &'static str,
    symbol: &str,
    as_of: NaiveDate,
    bid_ask: impl Iterator<Item = (f64, f64)>,
    when: &str,
) -> Result<(), SourceError> {
    let (mut n, mut dead) = (0usize, 0usize);
    for (bid, ask) in bid_ask {
        n += 1;
        if bid <= 0.0 && ask <= 0.0 {
            dead += 1;
        }
    }
    if n > 0 && dead * 10 >= n * 9 {
        return Err(SourceError::NoData {
            source_name,
            date: as_of,
            reason: format!(
                "{symbol}'s chain is placeholders, not a market: {dead} of {n} contracts have bid and ask 0 ({when}); fetch during the session (schedule.daily = \"open+30m\")"
            ),
        });
    }
    Ok(())
}

/// The symbols the configured source can quote, when it can know them before it is
/// asked (the simulator's universe), so a configuration naming another symbol is
/// refused at load; `None` for a source that cannot know its universe in advance.
pub fn known_symbols(config: &crate::config::Config) -> Option<(&'static str, Vec<String>)> {
    match config.desk.desk.source {
        crate::config::SourceKind::Sim => Some((
            "sim",
            sim::universe::default_universe()
                .into_iter()
                .map(|u| u.symbol)
                .collect(),
        )),
        // What the archive holds is known only to the store, not at load; a web source
        // learns its universe when it asks.
        crate::config::SourceKind::Replay
        | crate::config::SourceKind::Cboe
        | crate::config::SourceKind::Yahoo
        | crate::config::SourceKind::Ibkr => None,
    }
}

/// Refuse symbols the configured source does not know, naming the file and the key.
pub fn check_symbols<'a>(
    config: &crate::config::Config,
    file: &std::path::Path,
    key: &str,
    symbols: impl IntoIterator<Item = &'a String>,
) -> Result<(), crate::config::ConfigError> {
    let Some((source, known)) = known_symbols(config) else {
        return Ok(());
    };
    let unknown: Vec<&String> = symbols.into_iter().filter(|s| !known.contains(s)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(crate::config::ConfigError::Invalid {
        file: file.display().to_string(),
        message: format!(
            "{key}: {} not quoted by the {source} source (desk.source); it knows {} symbols, e.g. {}",
            unknown
                .iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(", "),
            known.len(),
            known.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
        ),
    })
}

/// The configured source; `conn` is the store's (the replay source reads its archive).
pub fn from_config(
    config: &crate::config::Config,
    conn: &duckdb::Connection,
) -> Result<Box<dyn MarketData>, SourceError> {
    Ok(match config.desk.desk.source {
        crate::config::SourceKind::Sim => Box::new(sim::Sim::from_config(config, conn)?),
        crate::config::SourceKind::Replay => Box::new(replay::Replay::new(
            conn,
            RiskFreeRate::from_config(config, config.desk.replay.rate, "replay.rate")?,
            config.desk.replay.div_yield,
        )?),
        crate::config::SourceKind::Cboe => {
            let c = &config.desk.cboe;
            let rate = RiskFreeRate::from_config(config, c.rate, "cboe.rate")?;
            let history: Option<Box<dyn MarketData>> = match c.history {
                crate::config::HistorySource::Archive => Some(Box::new(replay::Replay::new(
                    conn,
                    rate.clone(),
                    c.div_yield,
                )?)),
                crate::config::HistorySource::Yahoo => Some(Box::new(yahoo::Yahoo::new(
                    &config.desk.yahoo,
                    RiskFreeRate::from_config(config, config.desk.yahoo.rate, "yahoo.rate")?,
                )?)),
                crate::config::HistorySource::None => None,
            };
            Box::new(cboe::Cboe::new(c, rate, history)?)
        }
        crate::config::SourceKind::Yahoo => Box::new(yahoo::Yahoo::new(
            &config.desk.yahoo,
            RiskFreeRate::from_config(config, config.desk.yahoo.rate, "yahoo.rate")?,
        )?),
        crate::config::SourceKind::Ibkr => Box::new(crate::ibkr::source::IbkrSource::new(
            &config.desk.ibkr,
            RiskFreeRate::from_config(config, config.desk.ibkr.rate, "ibkr.rate")?,
        )?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_says_whether_to_retry() {
        let d = NaiveDate::from_ymd_opt(2025, 3, 14).unwrap();
        let cases: Vec<(SourceError, bool, &str)> = vec![
            (SourceError::Timeout, true, "timed out"),
            (
                SourceError::RateLimited {
                    retry_after: Some(Duration::from_secs(5)),
                },
                true,
                "rate limited, retry after 5 s",
            ),
            (
                SourceError::RateLimited { retry_after: None },
                true,
                "rate limited",
            ),
            (SourceError::Http { status: 503 }, true, "HTTP 503"),
            (SourceError::Http { status: 500 }, true, "HTTP 500"),
            (SourceError::Http { status: 404 }, false, "HTTP 404"),
            (SourceError::Http { status: 401 }, false, "HTTP 401"),
            (
                SourceError::Disconnected {
                    reason: "IB 1100: connectivity lost".into(),
                },
                true,
                "disconnected: IB 1100: connectivity lost",
            ),
            (
                SourceError::Request {
                    reason: "builder error".into(),
                },
                false,
                "cannot make the request: builder error",
            ),
            (
                SourceError::BadData {
                    file_or_source: "eod.csv".into(),
                    line: Some(3),
                    field: "bid".into(),
                    reason: "'abc' is not a number".into(),
                },
                false,
                "eod.csv: line 3, field 'bid': 'abc' is not a number",
            ),
            (
                SourceError::BadData {
                    file_or_source: "cboe".into(),
                    line: None,
                    field: "expiration".into(),
                    reason: "missing".into(),
                },
                false,
                "cboe: field 'expiration': missing",
            ),
            (
                SourceError::UnknownSymbol {
                    source_name: "sim",
                    symbol: "XYZ".into(),
                },
                false,
                "sim has no data for symbol XYZ",
            ),
            (
                SourceError::NoData {
                    source_name: "sim",
                    date: d,
                    reason: "not a session".into(),
                },
                false,
                "sim has no data for 2025-03-14: not a session",
            ),
        ];
        for (e, retry, text) in cases {
            assert_eq!(e.is_retryable(), retry, "{e:?}");
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn a_network_error_keeps_its_kind_and_verdict() {
        let cases = [
            NetError::Timeout {
                after: Duration::from_secs(1),
            },
            NetError::RateLimited {
                retry_after: Some(Duration::from_secs(2)),
                body: String::new(),
            },
            NetError::Http {
                status: 502,
                body: String::new(),
            },
            NetError::Http {
                status: 403,
                body: String::new(),
            },
            NetError::Disconnected {
                reason: "connection refused".into(),
            },
            NetError::Request {
                reason: "builder error".into(),
            },
        ];
        for n in cases {
            let retry = n.is_retryable();
            let status = n.status();
            let s = SourceError::from(n);
            assert_eq!(s.is_retryable(), retry, "{s:?}");
            match (&s, status) {
                (SourceError::Http { status }, Some(code)) => assert_eq!(*status, code),
                (SourceError::RateLimited { retry_after }, Some(429)) => {
                    assert_eq!(*retry_after, Some(Duration::from_secs(2)))
                }
                (_, None) => {}
                other => panic!("{other:?}"),
            }
        }
    }
}
