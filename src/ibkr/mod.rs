//! Interactive Brokers through TWS or IB Gateway, with `ibapi` 5.5.0's blocking client:
//! the connection (one per process, shared by the source and the broker, so one
//! client id), the refusal of live trading without an explicit opt-in, the table of
//! IB's error codes (what each means for a job: retry later, or give up with what to
//! fix), and the mapping of optdesk's instruments to IB contracts.
//!
//! Every call is time-bounded (`one_shot_timeout`, `next_timeout`), messages are paced
//! by ibapi's rate limiter (`[ibkr] max_messages_per_sec`, at most IB's 50), and a
//! dropped connection is retried `[ibkr] reconnect_attempts` times before the job
//! fails with the reason.

pub mod broker;
pub mod source;

use crate::config::{IbMarketData, IbkrConfig};
use crate::model::instrument::Instrument;
use crate::model::OptionRight;
use ibapi::client::blocking::Client;
use ibapi::contracts::{Contract, Currency, Exchange, SecurityType, Symbol};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The live ports of TWS and IB Gateway; the paper ones are 7497 and 4002.
pub const LIVE_PORTS: [u16; 2] = [7496, 4001];
/// The environment variable naming the account orders go to.
pub const ACCOUNT_ENV: &str = "OPTDESK_IB_ACCOUNT";
/// The environment variable that, with `[ibkr] allow_live = true`, allows live trading.
pub const ALLOW_LIVE_ENV: &str = "OPTDESK_IB_ALLOW_LIVE";

/// What went wrong talking to IB, in words a trader can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IbError {
    /// optdesk refuses to go on (live trading without the opt-in, an account that is
    /// not this login's).
    #[error("{0}")]
    Refused(String),
    /// No connection to TWS / IB Gateway.
    #[error("cannot connect to TWS/IB Gateway at {addr}: {reason}. {advice}")]
    Connect {
        addr: String,
        reason: String,
        advice: String,
    },
    /// IB answered a request with an error code.
    #[error("IB error {code} for {what}: {message}{}", advice_text(.advice))]
    Ib {
        code: i32,
        message: String,
        what: String,
        advice: &'static str,
    },
    #[error("no answer from IB within {secs} s for {what}")]
    Timeout { what: String, secs: u64 },
    /// The connection dropped and the bounded reconnect did not bring it back.
    #[error("the connection to IB was lost ({reason}) and not restored after {attempts} reconnect attempt(s)")]
    Disconnected { reason: String, attempts: u32 },
    #[error("{0}")]
    Other(String),
}

fn advice_text(advice: &&'static str) -> String {
    if advice.is_empty() {
        String::new()
    } else {
        format!(" — {advice}")
    }
}

/// What an IB error code means for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Status only (farm connected, order cancelled as asked): never ends a request.
    Info,
    /// A warning or an advisory: data may follow; noted, not fatal.
    Warning,
    /// Worth trying again later (pacing, a lost connection, a busy client id).
    Retry,
    /// This request cannot succeed as asked.
    Final,
}

/// IB's error codes (IBKR.md §6): what each means for a job, and what to fix.
pub fn classify(code: i32, message: &str) -> (Class, &'static str) {
    use Class::*;
    match code {
        2104 | 2106 | 2158 => (Info, ""),
        202 => (Info, "the order was cancelled"),
        2103 | 2105 | 2157 => (
            Warning,
            "a data farm connection is broken; TWS reconnects it by itself",
        ),
        2107 | 2108 => (Warning, "a data farm is inactive until it is needed"),
        2119 => (Warning, "a data farm is connecting"),
        165 => (Warning, ""),
        10167 => (
            Warning,
            "delayed data is shown: there is no real-time subscription",
        ),
        10089..=10091 => (
            Warning,
            "only part of the market data is subscribed; delayed data may follow",
        ),
        1101 | 1102 => (Warning, "the connection to IB's servers was restored"),
        399 if message.contains("Warning") => (Warning, ""),
        0 | 2100..=2199 => (Warning, ""),
        1100 | 1300 => (
            Retry,
            "TWS lost its connection to IB's servers; the next run tries again",
        ),
        162 if message.to_ascii_lowercase().contains("pacing") => (
            Retry,
            "historical-data pacing: optdesk waits and the next run tries again",
        ),
        162 => (
            Final,
            "IB has no historical data for this request (an expired contract, or nothing in the period)",
        ),
        100 => (
            Retry,
            "more than 50 messages a second: lower ibkr.max_messages_per_sec",
        ),
        101 => (
            Retry,
            "too many market-data lines at once: lower ibkr.max_lines",
        ),
        326 => (
            Retry,
            "another program uses this client id: change ibkr.client_id, or wait until TWS drops the old connection",
        ),
        200 => (
            Final,
            "IB does not know this contract: check the symbol, expiry, strike and trading class (SPX vs SPXW)",
        ),
        354 => (
            Final,
            "no market-data subscription for this contract: subscribe in Account Management, or set ibkr.market_data = \"delayed\"",
        ),
        10168 => (
            Final,
            "delayed market data is not enabled for this account: enable it, or subscribe",
        ),
        10197 => (
            Final,
            "market data is in use by a live session logged in elsewhere (paper shares the live user's data): log out of the other session",
        ),
        321 => (
            Final,
            "IB refused the request as malformed, or the API is read-only: untick \"Read-Only API\" in TWS (Global Configuration > API > Settings)",
        ),
        201 => (Final, "the order was rejected"),
        103 => (
            Final,
            "the order id was used before: keep ibkr.client_id fixed and let optdesk ask for the next id",
        ),
        10147 => (Final, "IB has no open order with this id to cancel"),
        399 => (Final, ""),
        _ => (Final, ""),
    }
}

impl IbError {
    /// From an ibapi error on a request for `what`.
    pub fn from_ibapi(e: ibapi::Error, what: &str, cfg: &IbkrConfig) -> IbError {
        match e {
            ibapi::Error::Notice(n) => {
                let (_, advice) = classify(n.code, &n.message);
                IbError::Ib {
                    code: n.code,
                    message: n.message,
                    what: what.to_string(),
                    advice,
                }
            }
            ibapi::Error::Timeout => IbError::Timeout {
                what: what.to_string(),
                secs: cfg.request_timeout_secs,
            },
            ibapi::Error::ConnectionReset
            | ibapi::Error::ConnectionFailed
            | ibapi::Error::Shutdown
            | ibapi::Error::Io(_) => IbError::Disconnected {
                reason: e.to_string(),
                attempts: cfg.reconnect_attempts,
            },
            ibapi::Error::ClientIdInUse { .. } => IbError::Ib {
                code: 326,
                message: "client id in use".into(),
                what: what.to_string(),
                advice: classify(326, "").1,
            },
            other => IbError::Other(format!("{what}: {other}")),
        }
    }

    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            IbError::Timeout { .. } | IbError::Disconnected { .. } | IbError::Connect { .. } => {
                true
            }
            IbError::Ib { code, message, .. } => classify(*code, message).0 == Class::Retry,
            IbError::Refused(_) | IbError::Other(_) => false,
        }
    }

    /// IB's error code, when IB gave one.
    pub fn code(&self) -> Option<i32> {
        match self {
            IbError::Ib { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<IbError> for crate::sources::SourceError {
    fn from(e: IbError) -> Self {
        use crate::sources::SourceError;
        match &e {
            IbError::Timeout { .. } => SourceError::Timeout,
            IbError::Disconnected { .. } | IbError::Connect { .. } => SourceError::Disconnected {
                reason: e.to_string(),
            },
            IbError::Ib { code, .. }
                if matches!(code, 100 | 101) || e.is_retryable() && *code == 162 =>
            {
                SourceError::RateLimited { retry_after: None }
            }
            _ => SourceError::Request {
                reason: e.to_string(),
            },
        }
    }
}

impl From<IbError> for crate::broker::BrokerError {
    fn from(e: IbError) -> Self {
        use crate::broker::BrokerError;
        const B: &str = "ibkr";
        match e {
            IbError::Timeout { secs, .. } => BrokerError::Timeout { broker: B, secs },
            e @ (IbError::Disconnected { .. } | IbError::Connect { .. }) => {
                BrokerError::Disconnected {
                    broker: B,
                    reason: e.to_string(),
                }
            }
            IbError::Ib {
                code: 100 | 101 | 162,
                message,
                ..
            } => BrokerError::RateLimited {
                broker: B,
                reason: message,
            },
            IbError::Ib {
                code: 201 | 103 | 321 | 10147,
                message,
                advice,
                ..
            } => BrokerError::Rejected {
                broker: B,
                code: "201".into(),
                reason: format!("{message}{}", advice_text(&advice)),
            },
            e @ IbError::Ib { .. } if e.is_retryable() => BrokerError::Disconnected {
                broker: B,
                reason: e.to_string(),
            },
            e => BrokerError::Other {
                broker: B,
                reason: e.to_string(),
            },
        }
    }
}

/// An account id as shown on a terminal or in a report: its kind and last digits
/// (account ids are kept out of the store, logs and reports).
pub fn mask(account: &str) -> String {
    let n = account.chars().count();
    if n <= 5 {
        return "•••".into();
    }
    let head: String = account.chars().take(2).collect();
    let tail: String = account.chars().skip(n - 3).collect();
    format!("{head}•••{tail}")
}

/// Paper accounts' ids start with DU (DF for a paper advisor's master).
pub fn is_paper_account(account: &str) -> bool {
    account.starts_with("DU") || account.starts_with("DF")
}

/// Refuse a live port or a non-paper account unless both opt-ins are given:
/// `[ibkr] allow_live = true` and `OPTDESK_IB_ALLOW_LIVE=1`. `accounts` are the
/// login's accounts, once connected (empty before).
pub fn check_live(cfg: &IbkrConfig, accounts: &[String], env_allows: bool) -> Result<(), String> {
    let live_port = LIVE_PORTS.contains(&cfg.port);
    let live_accounts: Vec<String> = accounts
        .iter()
        .filter(|a| !is_paper_account(a))
        .map(|a| mask(a))
        .collect();
    if !live_port && live_accounts.is_empty() {
        return Ok(());
    }
    if cfg.allow_live && env_allows {
        return Ok(());
    }
    let what = if live_port {
        format!(
            "ibkr.port = {} is a live port (TWS 7496, IB Gateway 4001; the paper ports are 7497 and 4002)",
            cfg.port
        )
    } else {
        format!(
            "the login's account {} is not a paper account (paper ids start with DU)",
            live_accounts.join(", ")
        )
    };
    let missing = match (cfg.allow_live, env_allows) {
        (false, false) => {
            format!("set ibkr.allow_live = true in jobs/desk.toml and {ALLOW_LIVE_ENV}=1")
        }
        (true, false) => format!("{ALLOW_LIVE_ENV}=1 is not set in the environment"),
        _ => "ibkr.allow_live is not true in jobs/desk.toml".to_string(),
    };
    Err(format!(
        "refusing live trading: {what}. optdesk trades IB's paper account unless both opt-ins are given: {missing}"
    ))
}

/// One connection to TWS / IB Gateway.
pub struct Session {
    pub client: Client,
    pub cfg: IbkrConfig,
    /// The accounts the login manages.
    pub accounts: Vec<String>,
    /// The account orders go to: `OPTDESK_IB_ACCOUNT`, or the login's only account.
    pub account: Option<String>,
    pub server_version: i32,
}

impl Session {
    pub fn addr(cfg: &IbkrConfig) -> String {
        format!("{}:{}", cfg.host, cfg.port)
    }

    /// Connect, within `connect_timeout_secs`, after the live-port check; then the
    /// account checks, and the market-data type.
    pub fn connect(cfg: &IbkrConfig) -> Result<Session, IbError> {
        let env_allows = std::env::var(ALLOW_LIVE_ENV).is_ok_and(|v| v.trim() == "1");
        check_live(cfg, &[], env_allows).map_err(IbError::Refused)?;
        let addr = Self::addr(cfg);
        let builder = Client::builder()
            .address(addr.clone())
            .client_id(cfg.client_id)
            .one_shot_timeout(Duration::from_secs(cfg.request_timeout_secs))
            // optdesk reconnects itself (a new connection, the request made again from
            // the start, `reconnect_attempts` times): ibapi's own reconnection would
            // replay half-finished requests behind the job's back.
            .max_reconnect_attempts(0)
            .rate_limiter(ibapi::RateLimiter::per_second(cfg.max_messages_per_sec));
        // ibapi's connect has no overall bound (30 one-second idle reads per frame):
        // bound it here; a connect that never returns is left behind with its thread.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(builder.connect());
        });
        let client = match rx.recv_timeout(Duration::from_secs(cfg.connect_timeout_secs)) {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(connect_error(&addr, e)),
            Err(_) => {
                return Err(IbError::Connect {
                    addr,
                    reason: format!("no handshake within {} s", cfg.connect_timeout_secs),
                    advice: "is the API port right, and does TWS accept this host (Trusted IPs)? A dialog waiting in TWS can hold the handshake".into(),
                })
            }
        };
        let accounts: Vec<String> = client.handshake_managed_accounts().to_vec();
        check_live(cfg, &accounts, env_allows).map_err(IbError::Refused)?;
        let account = match std::env::var(ACCOUNT_ENV)
            .ok()
            .filter(|a| !a.trim().is_empty())
        {
            Some(a) => {
                let a = a.trim().to_string();
                if !accounts.contains(&a) {
                    return Err(IbError::Refused(format!(
                        "{ACCOUNT_ENV} = {} is not among this login's accounts ({})",
                        mask(&a),
                        accounts
                            .iter()
                            .map(|x| mask(x))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Some(a)
            }
            None if accounts.len() == 1 => Some(accounts[0].clone()),
            None => None,
        };
        let server_version = client.server_version();
        let md = match cfg.market_data {
            IbMarketData::Live => ibapi::market_data::MarketDataType::Realtime,
            IbMarketData::Frozen => ibapi::market_data::MarketDataType::Frozen,
            IbMarketData::Delayed => ibapi::market_data::MarketDataType::Delayed,
            IbMarketData::DelayedFrozen => ibapi::market_data::MarketDataType::DelayedFrozen,
        };
        if md != ibapi::market_data::MarketDataType::Realtime {
            client
                .switch_market_data_type(md)
                .map_err(|e| IbError::from_ibapi(e, "the market-data type", cfg))?;
        }
        Ok(Session {
            client,
            cfg: cfg.clone(),
            accounts,
            account,
            server_version,
        })
    }

    /// The account orders go to, or why there is none.
    pub fn trading_account(&self) -> Result<&str, IbError> {
        self.account.as_deref().ok_or_else(|| {
            IbError::Refused(format!(
                "this login manages {} accounts ({}): set {ACCOUNT_ENV} to the one optdesk trades",
                self.accounts.len(),
                self.accounts
                    .iter()
                    .map(|x| mask(x))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// An ibapi error on a request for `what`, as an [`IbError`].
    pub fn err(&self, e: ibapi::Error, what: &str) -> IbError {
        IbError::from_ibapi(e, what, &self.cfg)
    }

    /// How long one request may take.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.request_timeout_secs)
    }
}

fn connect_error(addr: &str, e: ibapi::Error) -> IbError {
    let (reason, advice) = match &e {
        ibapi::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => (
            "connection refused".to_string(),
            "is TWS or IB Gateway running, logged in, with the API enabled (Global Configuration > API > Settings > Enable ActiveX and Socket Clients) on this port?",
        ),
        ibapi::Error::ServerVersion(..) => (
            e.to_string(),
            "this TWS / IB Gateway is too old for the protobuf API (server version 213 or later): update it",
        ),
        ibapi::Error::ClientIdInUse { .. } => (
            "client id in use (326)".to_string(),
            classify(326, "").1,
        ),
        ibapi::Error::ConnectionRejected(_) => (
            e.to_string(),
            "TWS refused the connection: add this host to Trusted IPs, or accept the connection dialog in TWS",
        ),
        _ => (
            e.to_string(),
            "check the host and port (TWS paper 7497, IB Gateway paper 4002) and that the API is enabled",
        ),
    };
    IbError::Connect {
        addr: addr.to_string(),
        reason,
        advice: advice.to_string(),
    }
}

static SESSION: Mutex<Option<Arc<Session>>> = Mutex::new(None);

/// Reconnects that succeeded in this process (what was lost, and after how many
/// attempts), until a job records them (`drills`, `reconnect`: the checklist's
/// "reconnect tested").
static RECONNECTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Note a reconnect that brought the connection back.
pub fn note_reconnect(what: String) {
    RECONNECTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(what);
}

/// The reconnects noted since the last call.
pub fn take_reconnects() -> Vec<String> {
    std::mem::take(&mut *RECONNECTS.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Forget the process's connection (it was lost): the next [`session`] connects anew.
pub fn drop_session() {
    let mut held = SESSION.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = held.take() {
        s.client.disconnect();
    }
}

/// The process's one connection, shared by the source and the broker (one client id);
/// made on first use, made again if it was lost.
pub fn session(cfg: &IbkrConfig) -> Result<Arc<Session>, IbError> {
    let mut held = SESSION.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = held.as_ref() {
        if s.cfg == *cfg && s.client.is_connected() {
            return Ok(s.clone());
        }
        s.client.disconnect();
        *held = None;
    }
    let s = Arc::new(Session::connect(cfg)?);
    *held = Some(s.clone());
    Ok(s)
}

/// `optdesk ib check`: connect (a connection of its own), and say what TWS says: the
/// server version, the accounts (masked), paper or live, the market-data type, then a
/// quote of `symbol` and of its nearest at-the-money option with IB's computation.
pub fn check(cfg: &IbkrConfig, symbol: &str) -> Result<Vec<String>, IbError> {
    let s = Session::connect(cfg)?;
    let mut out = vec![
        format!(
            "connected to {} as client id {}: server version {}",
            Session::addr(cfg),
            cfg.client_id,
            s.server_version
        ),
        format!(
            "accounts: {} ({})",
            s.accounts
                .iter()
                .map(|a| mask(a))
                .collect::<Vec<_>>()
                .join(", "),
            if s.accounts.iter().all(|a| is_paper_account(a)) {
                "paper"
            } else {
                "LIVE"
            }
        ),
        match &s.account {
            Some(a) => format!("orders go to {}", mask(a)),
            None => format!("orders go nowhere yet: set {ACCOUNT_ENV} to one of the accounts"),
        },
        format!("market data: {:?} (ibkr.market_data)", cfg.market_data).to_lowercase(),
    ];
    out.extend(source::check_quotes(&s, symbol)?);
    s.client.disconnect();
    Ok(out)
}

/// Index symbols IB lists as IND, with their exchange.
pub fn index_exchange(symbol: &str) -> Option<&'static str> {
    match symbol {
        "SPX" | "XSP" | "VIX" | "OEX" | "XEO" | "DJX" => Some("CBOE"),
        "NDX" => Some("NASDAQ"),
        "RUT" | "MRUT" => Some("RUSSELL"),
        _ => None,
    }
}

/// The IB contract of an underlying: an index (IND) or a stock/ETF (STK on SMART).
pub fn underlying_contract(symbol: &str) -> Contract {
    match index_exchange(symbol) {
        Some(ex) => Contract {
            symbol: Symbol::from(symbol),
            security_type: SecurityType::Index,
            exchange: Exchange::from(ex),
            currency: Currency::from("USD"),
            ..Default::default()
        },
        None => Contract {
            symbol: Symbol::from(symbol),
            security_type: SecurityType::Stock,
            exchange: Exchange::from("SMART"),
            currency: Currency::from("USD"),
            ..Default::default()
        },
    }
}

/// The IB contract of an instrument (by its terms; a con_id is added once known).
pub fn contract_of(instrument: &Instrument) -> Contract {
    match instrument {
        Instrument::Equity { symbol } => underlying_contract(symbol),
        Instrument::Option(o) => Contract {
            symbol: Symbol::from(o.underlying.as_str()),
            security_type: SecurityType::Option,
            last_trade_date_or_contract_month: o.expiry().format("%Y%m%d").to_string(),
            strike: o.strike().to_f64(),
            right: Some(match o.right() {
                OptionRight::Call => ibapi::contracts::OptionRight::Call,
                OptionRight::Put => ibapi::contracts::OptionRight::Put,
            }),
            multiplier: o.multiplier.to_string(),
            trading_class: o.occ.root.clone(),
            exchange: Exchange::from("SMART"),
            currency: Currency::from("USD"),
            ..Default::default()
        },
        Instrument::Future(f) => Contract {
            symbol: Symbol::from(f.root.as_str()),
            security_type: SecurityType::Future,
            last_trade_date_or_contract_month: format!(
                "{}{:02}",
                f.contract_month.0, f.contract_month.1
            ),
            multiplier: f.multiplier.to_string(),
            local_symbol: f.symbol.clone(),
            exchange: Exchange::from("CME"),
            currency: Currency::from("USD"),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code of IBKR.md §6, with what it means for a job.
    #[test]
    fn every_documented_code_is_classified() {
        use Class::*;
        let table: &[(i32, &str, Class)] = &[
            (2104, "Market data farm connection is OK", Info),
            (2106, "HMDS data farm connection is OK", Info),
            (2158, "Sec-def data farm connection is OK", Info),
            (2103, "Market data farm connection is broken", Warning),
            (2105, "HMDS data farm connection is broken", Warning),
            (2157, "Sec-def data farm connection is broken", Warning),
            (2107, "HMDS data farm connection is inactive", Warning),
            (2108, "Market data farm connection is inactive", Warning),
            (2119, "Market data farm is connecting", Warning),
            (1100, "Connectivity between IB and TWS has been lost", Retry),
            (1101, "Connectivity restored - data lost", Warning),
            (1102, "Connectivity restored - data maintained", Warning),
            (1300, "TWS socket port has been reset", Retry),
            (200, "No security definition has been found", Final),
            (354, "Requested market data is not subscribed", Final),
            (10167, "Displaying delayed market data", Warning),
            (10168, "Delayed market data is not enabled", Final),
            (10089, "Requested market data requires additional subscription", Warning),
            (10090, "Part of requested market data is not subscribed", Warning),
            (10091, "Part of requested market data requires additional subscription", Warning),
            (10197, "No market data during competing live session", Final),
            (162, "Historical Market Data Service error message:Historical data request pacing violation", Retry),
            (162, "Historical Market Data Service error message:HMDS query returned no data", Final),
            (165, "Historical Market Data Service query message:HMDS server connection was successful", Warning),
            (321, "Error validating request", Final),
            (201, "Order rejected - reason:", Final),
            (202, "Order Canceled - reason:", Info),
            (103, "Duplicate order id", Final),
            (10147, "OrderId 9001 that needs to be cancelled is not found", Final),
            (399, "Order Message: Warning: your order will not be placed at the exchange until", Warning),
            (399, "Order Message: BUY 1 SPY ...", Final),
            (100, "Max rate of messages per second has been exceeded", Retry),
            (101, "Max number of tickers has been reached", Retry),
            (326, "Unable to connect as the client id is already in use", Retry),
            (0, "", Warning),
            (2100, "API client has been unsubscribed from account data", Warning),
            (2199, "", Warning),
        ];
        for (code, message, want) in table {
            assert_eq!(classify(*code, message).0, *want, "{code} {message}");
        }
        // Every final or retryable code an operator can act on says what to do.
        for code in [200, 354, 10168, 10197, 321, 100, 101, 326, 103, 1100] {
            assert!(!classify(code, "").1.is_empty(), "{code} has advice");
        }
    }

    #[test]
    fn live_trading_needs_both_opt_ins() {
        let paper = IbkrConfig::default();
        assert!(check_live(&paper, &["DU1234567".into()], false).is_ok());
        for port in LIVE_PORTS {
            let cfg = IbkrConfig {
                port,
                ..IbkrConfig::default()
            };
            let e = check_live(&cfg, &[], false).unwrap_err();
            assert!(e.contains("live port") && e.contains("allow_live"), "{e}");
            assert!(check_live(&cfg, &[], true)
                .unwrap_err()
                .contains("jobs/desk.toml"));
            let opted = IbkrConfig {
                allow_live: true,
                ..cfg
            };
            assert!(check_live(&opted, &[], false)
                .unwrap_err()
                .contains(ALLOW_LIVE_ENV));
            assert!(check_live(&opted, &[], true).is_ok());
        }
        let e = check_live(&paper, &["U7654321".into()], false).unwrap_err();
        assert!(
            e.contains("not a paper account") && !e.contains("7654321"),
            "{e}"
        );
        let opted = IbkrConfig {
            allow_live: true,
            ..paper
        };
        assert!(check_live(&opted, &["U7654321".into()], true).is_ok());
    }

    #[test]
    fn account_ids_are_masked() {
        assert_eq!(mask("DU1234567"), "DU•••567");
        assert_eq!(mask("U12"), "•••");
    }

    #[test]
    fn instruments_map_to_contracts() {
        let c = underlying_contract("SPX");
        assert_eq!(c.security_type, SecurityType::Index);
        assert_eq!(c.exchange.to_string(), "CBOE");
        assert_eq!(
            underlying_contract("SPY").security_type,
            SecurityType::Stock
        );
        let o = crate::testkit::option("SPY", OptionRight::Put, 95.0);
        let c = contract_of(&o);
        assert_eq!(c.security_type, SecurityType::Option);
        assert_eq!(c.strike, 95.0);
        assert_eq!(c.trading_class, "SPY");
        assert_eq!(c.multiplier, "100");
    }
}
