//! The `yahoo` source: Yahoo Finance's delayed option chains and daily bars.
//!
//! A session is a cookie (from `cookie_url`, which answers with one whatever its
//! status) and a crumb (`{base_url}/v1/test/getcrumb` with that cookie); every later
//! request carries both. A crumb Yahoo refuses (HTTP 401 "Invalid Crumb") is fetched
//! again once, then the request is tried again; a second refusal fails the job.
//!
//! Chains: `{base_url}/v7/finance/options/<SYM>` gives the nearest expiry and the list
//! of expiries; each other expiry within `max_expiry_days` is one more request with
//! `&date=<unix>`. Expiry, strike and right come from each contract's symbol; the vendor's
//! IV is kept as `source_iv` where the contract has a two-sided market. Outside regular
//! hours Yahoo serves placeholder chains (every bid and ask 0, IVs of 1e-05, 0.0078,
//! 0.0156, ...): such a chain is refused with the reason, never stored as data.
//!
//! Bars: `{base_url}/v8/finance/chart/<SYM>?interval=1d`, whose `close` (and volume and
//! dividends) are adjusted for every split after the bar. They are restated raw, with
//! each split on its own date, so `underlying_bars` stays unadjusted like every other
//! source's; the request runs to now, so that every later split is in the answer.
//!
//! Every request has a timeout; 429 (honouring Retry-After), 5xx, 403 and dropped
//! connections are retried with back-off up to the configured bound; `concurrency`
//! symbols are fetched at once, each worker pausing `pause_ms` between its requests;
//! nothing is returned unless every symbol's chain arrived and parsed, so `fetch_chains`
//! writes a whole snapshot or nothing.

use super::{
    cboe::parse_option_symbol, each_symbol, MarketData, RiskFreeRate, Snapshot, SourceError,
    SourceReject, UnderlyingQuote,
};
use crate::config::YahooConfig;
use crate::model::{DailyBar, OptionQuote, Price};
use crate::net::{HttpClient, NetError};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::America::New_York;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

const NAME: &str = "yahoo";

/// The cookie and crumb every request carries; `generation` counts refreshes so that
/// two workers refused at once fetch one new crumb, not two.
#[derive(Debug, Clone)]
struct Session {
    cookie: String,
    crumb: String,
    generation: u64,
}

pub struct Yahoo {
    client: HttpClient,
    config: YahooConfig,
    rate: RiskFreeRate,
    session: Mutex<Option<Session>>,
}

/// One contract of a v7 options answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    pub symbol: String,
    pub bid: f64,
    pub ask: f64,
    pub volume: f64,
    pub open_interest: f64,
    pub iv: f64,
    /// `REGULAR` for a standard 100-share contract.
    pub size: String,
}

/// One v7 options answer: the underlying's quote, the expiries listed, and the chain
/// of the expiry asked for (the nearest without `date`).
#[derive(Debug, Clone, PartialEq)]
pub struct OptionsPage {
    pub price: f64,
    /// `PRE`, `REGULAR`, `POST`, `CLOSED`, ...
    pub market_state: String,
    /// The quote's own time (`regularMarketTime`), New York.
    pub market_time: Option<NaiveDateTime>,
    /// Listed expiries, as Yahoo's unix timestamps (00:00 UTC of the expiry date),
    /// sorted, each once.
    pub expirations: Vec<i64>,
    /// The expiry this page's chain is of (`options[0].expirationDate`).
    pub expiry: Option<i64>,
    pub contracts: Vec<Contract>,
}

fn new_york(ts: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(ts, 0).map(|t| t.with_timezone(&New_York).naive_local())
}

fn bad(what: &str, field: &str, reason: impl Into<String>) -> SourceError {
    SourceError::BadData {
        file_or_source: what.to_string(),
        line: None,
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn json(body: &[u8], what: &str, shape: &str) -> Result<Value, SourceError> {
    serde_json::from_slice(body).map_err(|e| {
        bad(
            what,
            "body",
            format!("not {shape} (cut short or not JSON): {e}"),
        )
    })
}

/// Parse one v7 options answer. `Ok(None)` is an empty result: Yahoo does not know the
/// symbol.
pub fn parse_options(body: &[u8], what: &str) -> Result<Option<OptionsPage>, SourceError> {
    let v = json(body, what, "Yahoo's options JSON")?;
    let results = v
        .pointer("/optionChain/result")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(what, "optionChain.result", "missing"))?;
    let Some(r) = results.first() else {
        return Ok(None);
    };
    let quote = r
        .get("quote")
        .ok_or_else(|| bad(what, "optionChain.result[0].quote", "missing"))?;
    let price = quote
        .get("regularMarketPrice")
        .and_then(Value::as_f64)
        .filter(|p| p.is_finite() && *p > 0.0)
        .ok_or_else(|| {
            bad(
                what,
                "quote.regularMarketPrice",
                "missing or not a positive number",
            )
        })?;
    let market_state = quote
        .get("marketState")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let market_time = quote
        .get("regularMarketTime")
        .and_then(Value::as_i64)
        .and_then(new_york);
    let expirations = match r.get("expirationDates") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_i64()
                    .ok_or_else(|| bad(what, "expirationDates", format!("{x} is not a time")))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad(what, "expirationDates", "not a list")),
    };
    let mut expirations = expirations;
    expirations.sort_unstable();
    expirations.dedup();
    let expiry = r
        .pointer("/options/0/expirationDate")
        .and_then(Value::as_i64);
    let mut contracts = Vec::new();
    if let Some(chain) = r
        .get("options")
        .and_then(Value::as_array)
        .and_then(|o| o.first())
    {
        for side in ["calls", "puts"] {
            let list = match chain.get(side) {
                None | Some(Value::Null) => continue,
                Some(Value::Array(a)) => a,
                Some(_) => return Err(bad(what, &format!("options[0].{side}"), "not a list")),
            };
            for (i, c) in list.iter().enumerate() {
                let num = |k: &str| {
                    c.get(k)
                        .and_then(Value::as_f64)
                        .filter(|x| x.is_finite())
                        .unwrap_or(0.0)
                };
                let symbol = c
                    .get("contractSymbol")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad(
                            what,
                            &format!("options[0].{side}[{i}].contractSymbol"),
                            "missing",
                        )
                    })?;
                contracts.push(Contract {
                    symbol: symbol.to_string(),
                    bid: num("bid"),
                    ask: num("ask"),
                    // The key is absent when nothing traded.
                    volume: num("volume"),
                    open_interest: num("openInterest"),
                    iv: num("impliedVolatility"),
                    size: c
                        .get("contractSize")
                        .and_then(Value::as_str)
                        .unwrap_or("REGULAR")
                        .to_string(),
                });
            }
        }
    }
    Ok(Some(OptionsPage {
        price,
        market_state,
        market_time,
        expirations,
        expiry,
        contracts,
    }))
}

/// One v8 chart answer as raw daily bars (see the module's note on splits), oldest
/// first. A day Yahoo gives without prices (nulls) is absent.
pub fn parse_chart(body: &[u8], symbol: &str, what: &str) -> Result<Vec<DailyBar>, SourceError> {
    let v = json(body, what, "Yahoo's chart JSON")?;
    let r = v
        .pointer("/chart/result/0")
        .filter(|r| r.is_object())
        .ok_or_else(|| {
            let why = v
                .pointer("/chart/error/description")
                .and_then(Value::as_str)
                .unwrap_or("missing");
            bad(what, "chart.result", why)
        })?;
    let list = |p: &str| -> Result<Vec<Option<f64>>, SourceError> {
        match r.pointer(p) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.iter().map(Value::as_f64).collect()),
            Some(_) => Err(bad(what, p, "not a list")),
        }
    };
    let stamps: Vec<Option<f64>> = list("/timestamp")?;
    let [open, high, low, close, volume] = [
        "/indicators/quote/0/open",
        "/indicators/quote/0/high",
        "/indicators/quote/0/low",
        "/indicators/quote/0/close",
        "/indicators/quote/0/volume",
    ]
    .map(list);
    let (open, high, low, close, volume) = (open?, high?, low?, close?, volume?);
    for (name, l) in [
        ("open", &open),
        ("high", &high),
        ("low", &low),
        ("close", &close),
    ] {
        if l.len() != stamps.len() {
            return Err(bad(
                what,
                &format!("indicators.quote[0].{name}"),
                format!("{} values for {} timestamps", l.len(), stamps.len()),
            ));
        }
    }
    let date_of = |ts: f64| new_york(ts as i64).map(|t| t.date());
    // Events by the New York date they went ex.
    let mut splits: BTreeMap<NaiveDate, f64> = BTreeMap::new();
    let mut dividends: BTreeMap<NaiveDate, f64> = BTreeMap::new();
    if let Some(Value::Object(m)) = r.pointer("/events/splits") {
        for (k, s) in m {
            let (Some(n), Some(d)) = (
                s.get("numerator").and_then(Value::as_f64),
                s.get("denominator").and_then(Value::as_f64),
            ) else {
                return Err(bad(what, &format!("events.splits.{k}"), "no ratio"));
            };
            let date = s
                .get("date")
                .and_then(Value::as_f64)
                .and_then(date_of)
                .ok_or_else(|| bad(what, &format!("events.splits.{k}.date"), "missing"))?;
            let ratio = n / d;
            if !(ratio.is_finite() && ratio > 0.0) {
                return Err(bad(
                    what,
                    &format!("events.splits.{k}"),
                    format!("{n}:{d} is not a split ratio"),
                ));
            }
            *splits.entry(date).or_insert(1.0) *= ratio;
        }
    }
    if let Some(Value::Object(m)) = r.pointer("/events/dividends") {
        for (k, s) in m {
            let amount = s.get("amount").and_then(Value::as_f64).unwrap_or(0.0);
            if amount < 0.0 {
                return Err(bad(
                    what,
                    &format!("events.dividends.{k}.amount"),
                    format!("{amount} is not a dividend"),
                ));
            }
            let date = s
                .get("date")
                .and_then(Value::as_f64)
                .and_then(date_of)
                .ok_or_else(|| bad(what, &format!("events.dividends.{k}.date"), "missing"))?;
            *dividends.entry(date).or_insert(0.0) += amount;
        }
    }
    let mut out = Vec::with_capacity(stamps.len());
    for (i, ts) in stamps.iter().enumerate() {
        let date = ts
            .and_then(date_of)
            .ok_or_else(|| bad(what, &format!("timestamp[{i}]"), "not a time"))?;
        let (Some(o), Some(h), Some(l), Some(c)) = (open[i], high[i], low[i], close[i]) else {
            continue;
        };
        // Shares per share issued by splits after this bar: Yahoo divided by it.
        let later: f64 = splits
            .range(date.succ_opt().unwrap_or(date)..)
            .map(|(_, r)| r)
            .product();
        let raw = |name: &str, x: f64| {
            Price::try_from_f64(x * later)
                .ok()
                .filter(|p| name == "dividend" || p.is_positive())
                .ok_or_else(|| {
                    bad(
                        what,
                        &format!("indicators.quote[0].{name}[{i}]"),
                        format!("{x} (×{later} for later splits) is not a price"),
                    )
                })
        };
        out.push(DailyBar {
            date,
            symbol: symbol.to_string(),
            open: raw("open", o)?,
            high: raw("high", h)?,
            low: raw("low", l)?,
            close: raw("close", c)?,
            volume: (volume.get(i).copied().flatten().unwrap_or(0.0) / later).round() as i64,
            dividend: raw("dividend", dividends.get(&date).copied().unwrap_or(0.0))?,
            split_ratio: splits.get(&date).copied().unwrap_or(1.0),
        });
    }
    // A session sent twice (Yahoo sends the live bar as its own row now and then): the
    // last one stands.
    out.reverse();
    let mut seen = std::collections::HashSet::new();
    out.retain(|b| seen.insert(b.date));
    out.reverse();
    Ok(out)
}

/// Whether a crumb is one: Yahoo's are short tokens; a rate-limited getcrumb answers
/// with text ("Too Many Requests") that some clients have used as the crumb.
fn is_crumb(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.contains(char::is_whitespace)
        && !s.contains('<')
        && !s.contains('{')
}

/// `%5ESPX` for an index, Yahoo's spelling otherwise (`BRK.B` is `BRK-B` there).
fn yahoo_symbol(symbol: &str) -> String {
    if super::INDEX_SYMBOLS.contains(&symbol) {
        format!("%5E{symbol}")
    } else {
        symbol.replace('.', "-")
    }
}

impl Yahoo {
    pub fn new(config: &YahooConfig, rate: RiskFreeRate) -> Result<Yahoo, SourceError> {
        let client = super::web_client(
            config.timeout_secs,
            config.attempts,
            config.backoff_ms,
            config.max_backoff_secs,
        )?;
        Ok(Yahoo {
            client,
            config: config.clone(),
            rate,
            session: Mutex::new(None),
        })
    }

    fn base(&self) -> &str {
        self.config.base_url.trim_end_matches('/')
    }

    fn gave_up(&self, e: NetError, attempts: u32, what: &str) -> SourceError {
        super::final_error(&self.client, e, attempts, NAME, what)
    }

    /// The current session, or a new one when there is none or `stale` is the one a
    /// request was refused with.
    fn session(&self, stale: Option<u64>) -> Result<Session, SourceError> {
        let mut guard = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = guard.as_ref() {
            if Some(s.generation) != stale {
                return Ok(s.clone());
            }
        }
        let generation = guard.as_ref().map_or(0, |s| s.generation + 1);
        let cookie = self
            .client
            .cookies(&self.config.cookie_url, &self.config.user_agent)
            .map_err(|e| self.gave_up(e, self.config.attempts.max(1), "cookie"))?
            .join("; ");
        if cookie.is_empty() {
            return Err(bad(
                "yahoo cookie",
                "Set-Cookie",
                format!(
                    "{} answered without a cookie (a consent page or a block?); check yahoo.cookie_url from where the desk runs",
                    self.config.cookie_url
                ),
            ));
        }
        let url = format!("{}/v1/test/getcrumb", self.base());
        let ex = self.client.send(|c| {
            let r = c
                .get(&url)
                .header(reqwest::header::USER_AGENT, &self.config.user_agent);
            if cookie.is_empty() {
                r
            } else {
                r.header(reqwest::header::COOKIE, &cookie)
            }
        });
        let crumb = match ex.result {
            Ok(r) => r.text().trim().to_string(),
            Err(e) => return Err(self.gave_up(e, ex.attempts, "crumb")),
        };
        if !is_crumb(&crumb) {
            return Err(bad(
                "yahoo getcrumb",
                "body",
                format!(
                    "'{}' is not a crumb",
                    crumb.chars().take(40).collect::<String>()
                ),
            ));
        }
        let s = Session {
            cookie,
            crumb,
            generation,
        };
        *guard = Some(s.clone());
        Ok(s)
    }

    /// GET `{base}{path}` with the session's cookie and crumb (`path` carries its own
    /// query). A refused crumb is fetched again once.
    fn get(&self, path: &str, symbol: &str) -> Result<Vec<u8>, SourceError> {
        let mut session = self.session(None)?;
        for refreshed in [false, true] {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = format!(
                "{}{path}{sep}crumb={}",
                self.base(),
                urlencode(&session.crumb)
            );
            let ex = self.client.send(|c| {
                let r = c
                    .get(&url)
                    .header(reqwest::header::USER_AGENT, &self.config.user_agent);
                if session.cookie.is_empty() {
                    r
                } else {
                    r.header(reqwest::header::COOKIE, &session.cookie)
                }
            });
            match ex.result {
                Ok(r) => return Ok(r.body),
                Err(NetError::Http { status: 401, body }) => {
                    if refreshed {
                        return Err(SourceError::BadData {
                            file_or_source: format!("yahoo {symbol}"),
                            line: None,
                            field: "crumb".into(),
                            reason: format!(
                                "refused again after a new crumb was fetched (HTTP 401: {body})"
                            ),
                        });
                    }
                    session = self.session(Some(session.generation))?;
                }
                Err(NetError::Http { status: 404, .. }) => {
                    return Err(SourceError::UnknownSymbol {
                        source_name: NAME,
                        symbol: symbol.to_string(),
                    })
                }
                Err(e) => return Err(self.gave_up(e, ex.attempts, symbol)),
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    fn pause(&self) {
        if self.config.pause_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.config.pause_ms));
        }
    }

    /// One symbol's underlying quote, quotes within `last_expiry`, rejects and notes.
    fn chain(
        &self,
        sym: &str,
        as_of: NaiveDate,
        last_expiry: NaiveDate,
        rate: f64,
    ) -> Result<SymbolChain, SourceError> {
        let what = format!("yahoo {sym}");
        let path = format!("/v7/finance/options/{}", yahoo_symbol(sym));
        let first = parse_options(&self.get(&path, sym)?, &what)?.ok_or_else(|| {
            SourceError::UnknownSymbol {
                source_name: NAME,
                symbol: sym.to_string(),
            }
        })?;
        let price = Price::try_from_f64(first.price)
            .map_err(|e| bad(&what, "quote.regularMarketPrice", e.to_string()))?;
        let mut out = SymbolChain {
            underlying: UnderlyingQuote {
                symbol: sym.to_string(),
                price,
                rate,
                div_yield: self.config.div_yield,
            },
            quotes: Vec::new(),
            rejects: Vec::new(),
            notes: Vec::new(),
            market_time: first.market_time,
        };
        if first.expirations.is_empty() {
            out.notes.push(format!("{sym}: no options listed"));
            return Ok(out);
        }
        let in_range = |ts: i64| {
            DateTime::from_timestamp(ts, 0)
                .map(|t| t.date_naive())
                .is_some_and(|d| d >= as_of && d <= last_expiry)
        };
        let mut contracts: Vec<Contract> = Vec::new();
        // The page without `date` is one expiry's (the nearest, usually): kept when in
        // range, and that expiry is not asked for again.
        let served = first.expiry;
        if served.is_some_and(in_range) {
            contracts.extend(first.contracts.iter().cloned());
        }
        for ts in first.expirations.iter().copied().filter(|t| in_range(*t)) {
            if Some(ts) == served {
                continue;
            }
            self.pause();
            let page = parse_options(&self.get(&format!("{path}?date={ts}"), sym)?, &what)?
                .ok_or_else(|| SourceError::UnknownSymbol {
                    source_name: NAME,
                    symbol: sym.to_string(),
                })?;
            contracts.extend(page.contracts);
        }
        super::refuse_placeholder_chain(
            NAME,
            sym,
            as_of,
            contracts.iter().map(|c| (c.bid, c.ask)),
            &format!(
                "marketState {}: Yahoo serves these outside regular hours",
                if first.market_state.is_empty() {
                    "not given"
                } else {
                    &first.market_state
                }
            ),
        )?;
        let mut odd = 0;
        for c in contracts {
            let raw = || {
                format!(
                    "contractSymbol={} bid={} ask={} iv={} contractSize={}",
                    c.symbol.chars().take(40).collect::<String>(),
                    c.bid,
                    c.ask,
                    c.iv,
                    c.size.chars().take(20).collect::<String>()
                )
            };
            let Some((root, expiry, right, strike)) = parse_option_symbol(&c.symbol) else {
                let (rule, reason) = super::cboe::unreadable_symbol(&c.symbol);
                odd += usize::from(rule == "unparseable");
                out.rejects.push(SourceReject {
                    underlying: sym.to_string(),
                    contract: c.symbol.chars().take(40).collect(),
                    rule,
                    reason,
                    raw: raw(),
                });
                continue;
            };
            if expiry < as_of || expiry > last_expiry {
                // A page's contract outside the window asked for (it is not a reject:
                // `max_expiry_days` chose not to keep it).
                continue;
            }
            if c.size != "REGULAR" {
                out.rejects.push(SourceReject {
                    underlying: sym.to_string(),
                    contract: c.symbol.chars().take(40).collect(),
                    rule: "non_standard",
                    reason: format!(
                        "contract size '{}' is not a standard 100-share contract",
                        c.size.chars().take(20).collect::<String>()
                    ),
                    raw: raw(),
                });
                continue;
            }
            out.quotes.push(OptionQuote {
                underlying: sym.to_string(),
                settlement: crate::model::instrument::listed_terms(&root).1,
                root,
                expiry,
                strike,
                right,
                bid: super::web_price(c.bid),
                ask: super::web_price(c.ask),
                // Yahoo gives no sizes.
                bid_size: 0,
                ask_size: 0,
                volume: c.volume.max(0.0) as i64,
                open_interest: c.open_interest.max(0.0) as i64,
                underlying_price: out.underlying.price,
                // Yahoo's IV of a one-sided or empty market is a placeholder.
                source_iv: (c.bid > 0.0 && c.ask > 0.0 && c.iv > 0.001 && c.iv < 20.0)
                    .then_some(c.iv),
            });
        }
        if odd > 0 {
            out.notes.push(format!(
                "{sym}: {odd} contract symbols not understood, left out"
            ));
        }
        Ok(out)
    }
}

/// The characters a crumb can hold that a query string cannot (`/`, `+`, `=`, ...).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct SymbolChain {
    underlying: UnderlyingQuote,
    quotes: Vec<OptionQuote>,
    rejects: Vec<SourceReject>,
    notes: Vec<String>,
    market_time: Option<NaiveDateTime>,
}

impl MarketData for Yahoo {
    fn name(&self) -> &'static str {
        NAME
    }

    fn default_symbols(&self) -> Vec<String> {
        self.config.symbols.clone()
    }

    fn snapshot(
        &self,
        quote_time: NaiveDateTime,
        symbols: &[String],
        max_expiry_days: u32,
    ) -> Result<Snapshot, SourceError> {
        let as_of = quote_time.date();
        let last_expiry = as_of + chrono::Duration::days(max_expiry_days as i64);
        let (rate, rate_from) = self.rate.on(NAME, as_of)?;
        let chains = each_symbol(symbols, self.config.concurrency, |sym, first| {
            if !first {
                self.pause();
            }
            self.chain(sym, as_of, last_expiry, rate)
        })?;
        let mut snap = Snapshot {
            as_of,
            quote_time,
            underlyings: Vec::new(),
            quotes: Vec::new(),
            notes: Vec::new(),
            rejects: Vec::new(),
        };
        let stamps: Vec<NaiveDateTime> = chains.iter().filter_map(|c| c.market_time).collect();
        for c in chains {
            snap.underlyings.push(c.underlying);
            snap.quotes.extend(c.quotes);
            snap.rejects.extend(c.rejects);
            snap.notes.extend(c.notes);
        }
        if let Some(n) = super::times_note("Yahoo quote", &stamps) {
            snap.notes.insert(0, n);
        }
        snap.notes
            .push(format!("risk-free rate {:.4}% ({rate_from})", rate * 100.0));
        Ok(snap)
    }

    fn daily_bars(
        &self,
        symbols: &[String],
        dates: &[NaiveDate],
    ) -> Result<Vec<DailyBar>, SourceError> {
        let (Some(from), Some(to)) = (dates.iter().min(), dates.iter().max()) else {
            return Ok(Vec::new());
        };
        let wanted: std::collections::HashSet<&NaiveDate> = dates.iter().collect();
        let start = New_York
            .from_local_datetime(&from.and_hms_opt(0, 0, 0).expect("midnight"))
            .earliest()
            .map_or(0, |t| t.timestamp());
        // To now, not to `to`: the closes are adjusted for every later split, and only
        // the splits in the answer can be undone.
        let end = chrono::Utc::now()
            .timestamp()
            .max(start + (*to - *from).num_seconds() + 86_400);
        let per_symbol = each_symbol(symbols, self.config.concurrency, |sym, first| {
            if !first {
                self.pause();
            }
            let path = format!(
                "/v8/finance/chart/{}?interval=1d&period1={start}&period2={end}&events=div%7Csplit",
                yahoo_symbol(sym)
            );
            parse_chart(&self.get(&path, sym)?, sym, &format!("yahoo {sym} chart"))
        })?;
        Ok(per_symbol
            .into_iter()
            .flatten()
            .filter(|b| wanted.contains(&b.date))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_parses_and_an_empty_result_is_none() {
        let body = br#"{"optionChain":{"result":[{"underlyingSymbol":"AAPL","expirationDates":[1740700800,1741305600],"strikes":[100],"hasMiniOptions":false,
            "quote":{"regularMarketPrice":245.55,"marketState":"REGULAR","regularMarketTime":1740171602},
            "options":[{"expirationDate":1740700800,"hasMiniOptions":false,
              "calls":[{"contractSymbol":"AAPL250228C00100000","strike":100,"bid":145.1,"ask":146.0,"contractSize":"REGULAR","impliedVolatility":1.2,"openInterest":3}],
              "puts":[{"contractSymbol":"AAPL250228P00100000","strike":100,"bid":0,"ask":0.01,"volume":2,"contractSize":"REGULAR","impliedVolatility":0.9}]}]}],"error":null}}"#;
        let p = parse_options(body, "yahoo AAPL").unwrap().unwrap();
        assert_eq!((p.price, p.market_state.as_str()), (245.55, "REGULAR"));
        assert_eq!(p.expirations, vec![1740700800, 1741305600]);
        assert_eq!(p.contracts.len(), 2);
        assert_eq!((p.contracts[0].volume, p.contracts[1].volume), (0.0, 2.0));
        assert_eq!(
            p.market_time.unwrap().to_string(),
            "2025-02-21 16:00:02",
            "New York time"
        );
        assert_eq!(
            parse_options(br#"{"optionChain":{"result":[],"error":null}}"#, "y").unwrap(),
            None
        );
        let e = parse_options(&body[..body.len() / 2], "yahoo AAPL")
            .unwrap_err()
            .to_string();
        assert!(e.contains("yahoo AAPL") && e.contains("cut short"), "{e}");
    }

    #[test]
    fn chart_closes_are_restated_raw_with_the_split_on_its_date() {
        // A 4:1 split on the second day: Yahoo divided the first day's prices by 4.
        let body = br#"{"chart":{"result":[{"meta":{"symbol":"AAPL"},"timestamp":[1598621400,1598880600,1598967000],
            "events":{"splits":{"1598880600":{"date":1598880600,"numerator":4,"denominator":1,"splitRatio":"4:1"}},
                      "dividends":{"1598621400":{"amount":0.205,"date":1598621400}}},
            "indicators":{"quote":[{"open":[126.0,127.58,null],"high":[126.5,131.0,null],"low":[124.0,126.0,null],"close":[124.8,129.04,null],"volume":[400000,225702700,null]}],
                          "adjclose":[{"adjclose":[124.0,128.0,null]}]}}],"error":null}}"#;
        let b = parse_chart(body, "AAPL", "yahoo AAPL chart").unwrap();
        assert_eq!(b.len(), 2, "a day of nulls is absent");
        assert_eq!(b[0].date.to_string(), "2020-08-28");
        assert_eq!(b[0].close.to_f64(), 499.2);
        assert_eq!(b[0].volume, 100_000);
        assert_eq!(b[0].dividend.to_f64(), 0.82);
        assert_eq!((b[0].split_ratio, b[1].split_ratio), (1.0, 4.0));
        assert_eq!(b[1].close.to_f64(), 129.04);
        // The same session twice (a live bar as its own row): the last one stands.
        let twice = br#"{"chart":{"result":[{"timestamp":[1598880600,1598895000],
            "indicators":{"quote":[{"open":[127.5,127.6],"high":[131.0,131.0],"low":[126.0,126.0],"close":[129.0,129.5],"volume":[1,2]}]}}]}}"#;
        let b = parse_chart(twice, "AAPL", "yahoo AAPL chart").unwrap();
        assert_eq!((b.len(), b[0].close.to_f64()), (1, 129.5));
        let negative = br#"{"chart":{"result":[{"timestamp":[1598880600],"events":{"dividends":{"1598880600":{"amount":-0.2,"date":1598880600}}},
            "indicators":{"quote":[{"open":[1.0],"high":[1.0],"low":[1.0],"close":[1.0],"volume":[1]}]}}]}}"#;
        let e = parse_chart(negative, "AAPL", "yahoo AAPL chart")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a dividend"), "{e}");
        let e = parse_chart(
            br#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}"#,
            "X",
            "yahoo X chart",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("symbol may be delisted"), "{e}");
    }

    #[test]
    fn a_crumb_is_a_short_token_not_an_error_text() {
        assert!(is_crumb("haT3oykhHqZ"));
        assert!(is_crumb("a/b.c"));
        for bad in ["", "Too Many Requests", "<html>", "{\"finance\":1}"] {
            assert!(!is_crumb(bad), "{bad}");
        }
        assert_eq!(urlencode("a/b+c"), "a%2Fb%2Bc");
        assert_eq!(yahoo_symbol("SPX"), "%5ESPX");
        assert_eq!(yahoo_symbol("SPY"), "SPY");
        assert_eq!(yahoo_symbol("BRK.B"), "BRK-B");
    }
}
