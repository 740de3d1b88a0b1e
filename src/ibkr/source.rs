//! The `ibkr` source: option chains, underlying prices, daily bars and 30-day implied-vol
//! history from Interactive Brokers through TWS or IB Gateway (ibapi 5.5.0's blocking
//! client, the process's one [`crate::ibkr::session`], made on first use).
//!
//! A chain, per symbol: the underlying's contract details (its con_id), its snapshot
//! (the price: last, else the mid, else the close), the option chain's parameters
//! (reqSecDefOptParams: one row per exchange × trading class, merged by trading class, so
//! SPX and SPXW are both kept), the nearest `ibkr.max_expiries` expiries up to
//! min(`fetch_chains`' `max_expiry_days`, `ibkr.max_expiry_days`) days out, strikes within
//! `ibkr.moneyness` of the price; then one contract-details request per expiry × trading
//! class (con_ids of what is listed in the band), and snapshots of every contract in
//! waves of at most `ibkr.max_lines` market-data lines, each read until TickSnapshotEnd
//! within `ibkr.snapshot_timeout_secs`.
//!
//! Option computations are merged field by field ([`ComputationMerge`]): TWS often sends
//! an all-sentinel computation last, and ibapi's `Quote` keeps only the latest one per
//! tick type, which would wipe the greeks. The model computation (tick 13, delayed 83) is
//! preferred; else the mean of the bid and ask computations.
//!
//! All or nothing: an IB error on any request (200 unknown contract, 354 no subscription,
//! 10197 competing session, ...), a timeout or a stream that ends without its end marker
//! fails the whole snapshot, naming the symbol or contract, IB's code and what to do.
//! Advisories (10167 delayed data, 10089–10091, farm notices) do not fail; delayed data is
//! said in the snapshot's notes.
//!
//! Historical data (daily TRADES bars, OPTION_IMPLIED_VOLATILITY bars) is paced by a
//! process-wide [`Pacer`] to IB's rules: no identical request within 15 s, at most 5 per
//! contract in 2 s, at most 60 in 10 minutes. A 162 pacing violation is retryable
//! (`SourceError::RateLimited`); "no data" leaves the symbol's dates absent.

use super::{session, underlying_contract, IbError, Session};
use crate::config::IbkrConfig;
use crate::model::instrument::{listed_terms, FuturesContract};
use crate::model::{DailyBar, OptionQuote, OptionRight, Price};
use crate::sources::{
    IvPoint, MarketData, RiskFreeRate, Snapshot, SourceError, SourceReject, UnderlyingQuote,
};
use chrono::{NaiveDate, NaiveDateTime};
use ibapi::contracts::tick_types::TickType;
use ibapi::contracts::{
    Contract, ContractDetails, Currency, Exchange, OptionChain, OptionComputation, SecurityType,
    Symbol,
};
use ibapi::market_data::realtime::TickTypes;
use ibapi::subscriptions::{Subscription, SubscriptionItem};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NAME: &str = "ibkr";

pub struct IbkrSource {
    cfg: IbkrConfig,
    rate: RiskFreeRate,
    /// The session of the latest [`MarketData::snapshot`] this source took: a futures
    /// quote asked for at an earlier day is a past settlement (see
    /// [`IbkrSource::contract_quote`]).
    snapshot_day: Mutex<Option<NaiveDate>>,
}

// ---------------------------------------------------------------------------------------
// Option computations, merged field by field.
// ---------------------------------------------------------------------------------------

/// The kinds of option computation TWS sends (live and delayed tick types alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompKind {
    Bid,
    Ask,
    Last,
    Model,
}

impl CompKind {
    /// The kind of a computation's tick type: 10/80 bid, 11/81 ask, 12/82 last,
    /// 13/83 model; `None` for any other tick.
    pub fn of(t: TickType) -> Option<CompKind> {
        match t {
            TickType::BidOption | TickType::DelayedBidOption => Some(CompKind::Bid),
            TickType::AskOption | TickType::DelayedAskOption => Some(CompKind::Ask),
            TickType::LastOption | TickType::DelayedLastOption => Some(CompKind::Last),
            TickType::ModelOption | TickType::DelayedModelOption => Some(CompKind::Model),
            _ => None,
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// The fields of an option computation optdesk keeps, in [`Greeks::FIELDS`] order;
/// `None` is "not computed" (IB's −1 / −2 sentinels, decoded by ibapi as `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Greeks(pub [Option<f64>; 6]);

impl Greeks {
    pub const FIELDS: [&'static str; 6] = ["iv", "delta", "gamma", "vega", "theta", "und_price"];

    pub fn of(c: &OptionComputation) -> Greeks {
        Greeks([
            c.implied_volatility,
            c.delta,
            c.gamma,
            c.vega,
            c.theta,
            c.underlying_price,
        ])
    }
    pub fn iv(&self) -> Option<f64> {
        self.0[0]
    }
    pub fn delta(&self) -> Option<f64> {
        self.0[1]
    }
}

/// Option computations folded field by field: a field that is `None` (a sentinel) never
/// overwrites a value, so an all-sentinel computation arriving last changes nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComputationMerge {
    /// The latest value of each field, by [`CompKind`].
    slots: [Greeks; 4],
}

impl ComputationMerge {
    pub fn apply(&mut self, c: &OptionComputation) {
        if let Some(kind) = CompKind::of(c.field) {
            self.apply_parts(kind, Greeks::of(c));
        }
    }

    /// Fold one computation of `kind`: each field that is a number replaces the kind's
    /// value; `None` (and a non-finite value) leaves it.
    pub fn apply_parts(&mut self, kind: CompKind, g: Greeks) {
        let slot = &mut self.slots[kind.slot()];
        for (have, new) in slot.0.iter_mut().zip(g.0) {
            if let Some(x) = new.filter(|x| x.is_finite()) {
                *have = Some(x);
            }
        }
    }

    /// Each field: the model computation's, else the mean of the bid and ask
    /// computations' (the one of them there is when only one is), else `None`.
    pub fn merged(&self) -> Greeks {
        let [bid, ask, _last, model] = &self.slots;
        let mut out = Greeks::default();
        for i in 0..out.0.len() {
            out.0[i] = model.0[i].or(match (bid.0[i], ask.0[i]) {
                (Some(b), Some(a)) => Some((b + a) / 2.0),
                (b, a) => b.or(a),
            });
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// One snapshot's ticks.
// ---------------------------------------------------------------------------------------

/// What one snapshot sent, folded: prices and sizes (live or delayed ticks), the option
/// computations, whether the data was delayed.
#[derive(Debug, Clone, Default)]
pub struct TickFold {
    pub bid: Option<f64>,
    pub ask: Option<f64>,
    pub last: Option<f64>,
    pub close: Option<f64>,
    pub bid_size: Option<f64>,
    pub ask_size: Option<f64>,
    pub volume: Option<f64>,
    pub greeks: ComputationMerge,
    pub delayed: bool,
}

impl TickFold {
    pub fn apply(&mut self, t: &TickTypes) {
        match t {
            TickTypes::Price(p) => self.price(p.tick_type, p.price),
            TickTypes::Size(s) => self.size(s.tick_type, s.size),
            TickTypes::PriceSize(p) => {
                self.price(p.price_tick_type, p.price);
                self.size(p.size_tick_type, p.size);
            }
            TickTypes::OptionComputation(c) => {
                self.delayed |= matches!(
                    c.field,
                    TickType::DelayedBidOption
                        | TickType::DelayedAskOption
                        | TickType::DelayedLastOption
                        | TickType::DelayedModelOption
                );
                self.greeks.apply(c);
            }
            TickTypes::MarketDataType(m) => {
                use ibapi::market_data::MarketDataType as M;
                self.delayed |= matches!(m, M::Delayed | M::DelayedFrozen);
            }
            _ => {}
        }
    }

    fn price(&mut self, t: TickType, x: f64) {
        use TickType::*;
        if !x.is_finite() {
            return;
        }
        let (slot, delayed) = match t {
            Bid => (&mut self.bid, false),
            Ask => (&mut self.ask, false),
            Last => (&mut self.last, false),
            Close => (&mut self.close, false),
            DelayedBid => (&mut self.bid, true),
            DelayedAsk => (&mut self.ask, true),
            DelayedLast => (&mut self.last, true),
            DelayedClose => (&mut self.close, true),
            _ => return,
        };
        *slot = Some(x);
        self.delayed |= delayed;
    }

    fn size(&mut self, t: TickType, x: f64) {
        use TickType::*;
        if !x.is_finite() {
            return;
        }
        let slot = match t {
            BidSize | DelayedBidSize => &mut self.bid_size,
            AskSize | DelayedAskSize => &mut self.ask_size,
            Volume | DelayedVolume => &mut self.volume,
            _ => return,
        };
        *slot = Some(x);
    }

    /// A notice bound to the request: 10167 says the data is delayed.
    pub fn notice(&mut self, code: i32) {
        if code == 10167 {
            self.delayed = true;
        }
    }

    /// The underlying's price: the last trade, else the mid of a two-sided market, else
    /// the close.
    pub fn price_of_underlying(&self) -> Option<f64> {
        let pos = |x: Option<f64>| x.filter(|x| *x > 0.0);
        pos(self.last)
            .or(match (pos(self.bid), pos(self.ask)) {
                (Some(b), Some(a)) if a >= b => Some((a + b) / 2.0),
                _ => None,
            })
            .or(pos(self.close))
    }
}

// ---------------------------------------------------------------------------------------
// Chains: merging reqSecDefOptParams rows, choosing expiries and strikes.
// ---------------------------------------------------------------------------------------

/// One trading class's chain, merged over the exchanges that list it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassChain {
    pub multiplier: String,
    pub exchanges: BTreeSet<String>,
    pub expiries: BTreeSet<NaiveDate>,
    /// Sorted, each once.
    pub strikes: Vec<f64>,
}

/// Parse IB's YYYYMMDD (or YYYYMMDD with a time after it).
pub fn ib_date(s: &str) -> Option<NaiveDate> {
    let head: String = s.trim().chars().take(8).collect();
    NaiveDate::parse_from_str(&head, "%Y%m%d").ok()
}

/// A strike as a key (to a thousandth), for sets of strikes.
fn strike_key(k: f64) -> i64 {
    (k * 1000.0).round() as i64
}

/// The rows of reqSecDefOptParams (one per exchange × trading class) merged by trading
/// class: expiries and strikes are the union over exchanges. Expiries that are not
/// dates are left out.
pub fn merge_chains<'a>(
    rows: impl IntoIterator<Item = (&'a str, &'a str, &'a str, &'a [String], &'a [f64])>,
) -> BTreeMap<String, ClassChain> {
    let mut out: BTreeMap<String, ClassChain> = BTreeMap::new();
    let mut strikes: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for (exchange, class, multiplier, expiries, ks) in rows {
        let c = out.entry(class.to_string()).or_default();
        if c.multiplier.is_empty() {
            c.multiplier = multiplier.to_string();
        }
        c.exchanges.insert(exchange.to_string());
        c.expiries
            .extend(expiries.iter().filter_map(|e| ib_date(e)));
        let s = strikes.entry(class.to_string()).or_default();
        for k in ks.iter().copied().filter(|k| k.is_finite() && *k > 0.0) {
            s.entry(strike_key(k)).or_insert(k);
        }
    }
    for (class, s) in strikes {
        if let Some(c) = out.get_mut(&class) {
            c.strikes = s.into_values().collect();
        }
    }
    out
}

fn merge_option_chains(rows: &[OptionChain]) -> BTreeMap<String, ClassChain> {
    merge_chains(rows.iter().map(|r| {
        (
            r.exchange.as_str(),
            r.trading_class.as_str(),
            r.multiplier.as_str(),
            r.expirations.as_slice(),
            r.strikes.as_slice(),
        )
    }))
}

/// Whether a multiplier IB gives (a string, "" when not given) is the standard 100.
pub fn is_standard_multiplier(m: &str) -> bool {
    let m = m.trim();
    m.is_empty() || m.parse::<f64>().is_ok_and(|x| (x - 100.0).abs() < 1e-9)
}

/// The expiries to ask for: every class's, from `as_of` to `last` inclusive, the
/// `max` nearest.
pub fn select_expiries(
    chains: &BTreeMap<String, ClassChain>,
    as_of: NaiveDate,
    last: NaiveDate,
    max: usize,
) -> Vec<NaiveDate> {
    let all: BTreeSet<NaiveDate> = chains
        .values()
        .flat_map(|c| c.expiries.iter().copied())
        .filter(|d| *d >= as_of && *d <= last)
        .collect();
    all.into_iter().take(max).collect()
}

/// Whether a strike is within `moneyness` (a fraction) of `price`.
pub fn in_band(strike: f64, price: f64, moneyness: f64) -> bool {
    (strike - price).abs() <= moneyness * price + 1e-9
}

/// The (trading class, expiry) pairs to ask contract details for: each selected expiry
/// of each class that lists it and has a strike in the band.
pub fn detail_requests(
    chains: &BTreeMap<String, ClassChain>,
    expiries: &[NaiveDate],
    price: f64,
    moneyness: f64,
) -> Vec<(String, NaiveDate)> {
    let mut out = Vec::new();
    for e in expiries {
        for (class, c) in chains {
            if c.expiries.contains(e) && c.strikes.iter().any(|k| in_band(*k, price, moneyness)) {
                out.push((class.clone(), *e));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Historical-data pacing (IBKR.md §6), process-wide.
// ---------------------------------------------------------------------------------------

/// IB's historical-data pacing: no identical request within 15 s, at most 5 requests for
/// one contract within 2 s, at most 60 requests within 10 minutes.
#[derive(Debug, Default)]
pub struct Pacer {
    /// (when, request key, contract key), oldest first.
    sent: VecDeque<(Instant, String, String)>,
}

impl Pacer {
    pub const IDENTICAL: Duration = Duration::from_secs(15);
    pub const PER_CONTRACT: (usize, Duration) = (5, Duration::from_secs(2));
    pub const OVERALL: (usize, Duration) = (60, Duration::from_secs(600));

    /// How long to wait from `now` before sending `key` for `contract`.
    pub fn delay(&self, now: Instant, key: &str, contract: &str) -> Duration {
        let mut until = now;
        for (t, k, _) in &self.sent {
            if k == key {
                until = until.max(*t + Self::IDENTICAL);
            }
        }
        // The n-th most recent request in the window: once it is out, there is room.
        let mut room = |n: usize, window: Duration, f: &dyn Fn(&str) -> bool| {
            let recent: Vec<Instant> = self
                .sent
                .iter()
                .rev()
                .filter(|(t, _, c)| *t + window > now && f(c))
                .map(|(t, _, _)| *t)
                .collect();
            if recent.len() >= n {
                until = until.max(recent[n - 1] + window);
            }
        };
        room(Self::PER_CONTRACT.0, Self::PER_CONTRACT.1, &|c| {
            c == contract
        });
        room(Self::OVERALL.0, Self::OVERALL.1, &|_| true);
        until.saturating_duration_since(now)
    }

    /// Record a request sent (or reserved) at `at`.
    pub fn record(&mut self, at: Instant, key: &str, contract: &str) {
        while self
            .sent
            .front()
            .is_some_and(|(t, _, _)| *t + Self::OVERALL.1 < at)
        {
            self.sent.pop_front();
        }
        let pos = self.sent.partition_point(|(t, _, _)| *t <= at);
        self.sent
            .insert(pos, (at, key.to_string(), contract.to_string()));
    }
}

static PACER: Mutex<Option<Pacer>> = Mutex::new(None);

/// The longest the source waits for the pacer; a longer wait is `RateLimited`.
const MAX_PACING_WAIT: Duration = Duration::from_secs(30);

/// Wait until a historical request may be sent, and reserve its place.
fn pace(key: &str, contract: &str) -> Result<(), SourceError> {
    let wait = {
        let mut held = PACER.lock().unwrap_or_else(|p| p.into_inner());
        let p = held.get_or_insert_with(Pacer::default);
        let now = Instant::now();
        let wait = p.delay(now, key, contract);
        if wait > MAX_PACING_WAIT {
            return Err(SourceError::RateLimited {
                retry_after: Some(wait),
            });
        }
        p.record(now + wait, key, contract);
        wait
    };
    if !wait.is_zero() {
        tracing::info!(
            "ibkr: waiting {:.1} s for IB's historical-data pacing",
            wait.as_secs_f64()
        );
        std::thread::sleep(wait);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------

/// An [`IbError`] as the source's error, keeping what the request was, IB's code and the
/// advice in the message.
fn source_error(e: IbError, timeout_key: &str) -> SourceError {
    match &e {
        IbError::Timeout { what, secs } => SourceError::GaveUp {
            source_name: NAME,
            symbol: what.clone(),
            last: format!("no answer from IB within {secs} s"),
            attempts: 1,
            bound: format!("ibkr.{timeout_key} = {secs}"),
        },
        IbError::Ib { code, .. } if e.is_retryable() && matches!(code, 100 | 101 | 162) => {
            tracing::warn!("ibkr: {e}");
            SourceError::RateLimited {
                retry_after: (*code == 162).then_some(Pacer::IDENTICAL),
            }
        }
        IbError::Disconnected { .. } | IbError::Connect { .. } => SourceError::Disconnected {
            reason: e.to_string(),
        },
        _ => SourceError::Request {
            reason: e.to_string(),
        },
    }
}

/// An ibapi error on a request for `what`.
fn ib(s: &Session, e: ibapi::Error, what: &str, timeout_key: &str) -> SourceError {
    let mut e = s.err(e, what);
    if let IbError::Timeout { secs, .. } = &mut e {
        *secs = if timeout_key == "snapshot_timeout_secs" {
            s.cfg.snapshot_timeout_secs
        } else {
            s.cfg.request_timeout_secs
        };
    }
    source_error(e, timeout_key)
}

fn no_answer(what: &str, secs: u64, key: &str) -> SourceError {
    source_error(
        IbError::Timeout {
            what: what.to_string(),
            secs,
        },
        key,
    )
}

const REQUEST: &str = "request_timeout_secs";
const SNAPSHOT: &str = "snapshot_timeout_secs";

// ---------------------------------------------------------------------------------------
// Requests.
// ---------------------------------------------------------------------------------------

/// The date of a daily bar.
fn bar_date(t: &ibapi::market_data::historical::BarTimestamp) -> Option<NaiveDate> {
    use ibapi::market_data::historical::BarTimestamp;
    match t {
        BarTimestamp::Date(d) => NaiveDate::from_yo_opt(d.year(), d.ordinal() as u32),
        BarTimestamp::DateTime(t) => {
            let d = t.date();
            NaiveDate::from_yo_opt(d.year(), d.ordinal() as u32)
        }
    }
}

fn contract_last_trade_date(c: &Contract) -> Option<NaiveDate> {
    c.last_trade_date
        .and_then(|d| NaiveDate::from_yo_opt(d.year(), d.ordinal() as u32))
        .or_else(|| ib_date(&c.last_trade_date_or_contract_month))
}

/// The exchange a futures root trades on at IB.
pub fn futures_exchange(root: &str) -> &'static str {
    match root {
        "YM" | "MYM" | "ZB" | "ZN" | "ZF" | "ZT" | "ZC" | "ZS" | "ZW" => "CBOT",
        "CL" | "MCL" | "NG" | "QM" => "NYMEX",
        "GC" | "MGC" | "SI" | "SIL" | "HG" => "COMEX",
        _ => "CME",
    }
}

/// The tick of the equity-index futures optdesk's intraday desk trades; other roots
/// take IB's minimum tick.
pub fn futures_tick(root: &str) -> Option<f64> {
    match root {
        "ES" | "MES" | "NQ" | "MNQ" => Some(0.25),
        "RTY" | "M2K" => Some(0.1),
        "YM" | "MYM" => Some(1.0),
        _ => None,
    }
}

/// One option contract to snapshot.
#[derive(Debug, Clone)]
struct Leg {
    class: String,
    expiry: NaiveDate,
    strike: f64,
    right: OptionRight,
    contract: Contract,
}

impl Leg {
    fn label(&self, symbol: &str) -> String {
        format!(
            "{symbol} {} {} {} {} (con_id {})",
            self.class,
            self.expiry.format("%Y%m%d"),
            self.right.code(),
            self.strike,
            self.contract.contract_id
        )
    }
}

struct SymbolChain {
    underlying: UnderlyingQuote,
    quotes: Vec<OptionQuote>,
    rejects: Vec<SourceReject>,
    notes: Vec<String>,
    delayed: bool,
}

impl IbkrSource {
    /// Does not connect: the connection is made on first use.
    pub fn new(cfg: &IbkrConfig, rate: RiskFreeRate) -> Result<IbkrSource, SourceError> {
        Ok(IbkrSource {
            cfg: cfg.clone(),
            rate,
            snapshot_day: Mutex::new(None),
        })
    }

    fn session(&self) -> Result<Arc<Session>, SourceError> {
        session(&self.cfg).map_err(|e| source_error(e, "connect_timeout_secs"))
    }

    /// Contract details of `c`, bounded by `request_timeout_secs`.
    fn details(
        &self,
        s: &Session,
        c: &Contract,
        what: &str,
    ) -> Result<Vec<ContractDetails>, SourceError> {
        let sub = s
            .client
            .contract_details_stream(c)
            .subscribe()
            .map_err(|e| ib(s, e, what, REQUEST))?;
        sub.collect_to_end_within(s.request_timeout())
            .map_err(|e| ib(s, e, what, REQUEST))
    }

    /// The underlying's contract, with its con_id.
    fn underlying(&self, s: &Session, symbol: &str) -> Result<Contract, SourceError> {
        let c = underlying_contract(symbol);
        let what = format!("{symbol}'s contract details");
        let found = self.details(s, &c, &what)?;
        let d = found
            .into_iter()
            .find(|d| d.contract.symbol.0 == symbol && d.contract.contract_id != 0)
            .ok_or_else(|| {
                source_error(
                    IbError::Ib {
                        code: 200,
                        message: "no contract with a con_id in the answer".into(),
                        what,
                        advice: super::classify(200, "").1,
                    },
                    REQUEST,
                )
            })?;
        let mut c = c;
        c.contract_id = d.contract.contract_id;
        Ok(c)
    }

    /// Snapshots of `items` (label, contract), at most `max_lines` at once, each read to
    /// its TickSnapshotEnd within `snapshot_timeout_secs` of its wave's start; the folds
    /// in `items`' order. A wave's subscriptions are dropped before the next is made.
    fn snapshots(
        &self,
        s: &Session,
        items: &[(String, Contract)],
    ) -> Result<Vec<TickFold>, SourceError> {
        let mut out = Vec::with_capacity(items.len());
        let secs = self.cfg.snapshot_timeout_secs;
        for wave in items.chunks(self.cfg.max_lines.max(1)) {
            let mut subs: Vec<Subscription<TickTypes>> = Vec::with_capacity(wave.len());
            for (what, c) in wave {
                subs.push(
                    s.client
                        .market_data(c)
                        .snapshot()
                        .subscribe()
                        .map_err(|e| ib(s, e, &format!("{what} snapshot"), SNAPSHOT))?,
                );
            }
            let deadline = Instant::now() + Duration::from_secs(secs);
            for ((what, _), sub) in wave.iter().zip(&subs) {
                let what = format!("{what} snapshot");
                let mut fold = TickFold::default();
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(no_answer(
                            &format!("{what} (no TickSnapshotEnd)"),
                            secs,
                            SNAPSHOT,
                        ));
                    }
                    match sub.next_timeout(left) {
                        Some(Ok(SubscriptionItem::Data(TickTypes::SnapshotEnd))) => break,
                        Some(Ok(SubscriptionItem::Data(t))) => fold.apply(&t),
                        Some(Ok(SubscriptionItem::Notice(n))) => {
                            tracing::debug!("ibkr: {what}: notice {} {}", n.code, n.message);
                            fold.notice(n.code)
                        }
                        Some(Err(e)) => return Err(ib(s, e, &what, SNAPSHOT)),
                        None if Instant::now() >= deadline => {
                            return Err(no_answer(
                                &format!("{what} (no TickSnapshotEnd)"),
                                secs,
                                SNAPSHOT,
                            ))
                        }
                        None => {
                            return Err(SourceError::Disconnected {
                                reason: format!(
                                    "{what}: the stream ended without TickSnapshotEnd (the connection to TWS was lost?)"
                                ),
                            })
                        }
                    }
                }
                out.push(fold);
            }
            drop(subs);
        }
        Ok(out)
    }

    /// The option chain's parameters, merged by trading class.
    fn chain_params(
        &self,
        s: &Session,
        symbol: &str,
        und: &Contract,
    ) -> Result<BTreeMap<String, ClassChain>, SourceError> {
        let what = format!("{symbol}'s option chain");
        let sub = s
            .client
            .option_chain(symbol, und.security_type.clone(), und.contract_id)
            .subscribe()
            .map_err(|e| ib(s, e, &what, REQUEST))?;
        let rows = sub
            .collect_to_end_within(s.request_timeout())
            .map_err(|e| ib(s, e, &what, REQUEST))?;
        Ok(merge_option_chains(&rows))
    }

    fn chain(
        &self,
        s: &Session,
        sym: &str,
        as_of: NaiveDate,
        max_expiry_days: u32,
        rate: f64,
    ) -> Result<SymbolChain, SourceError> {
        let und = self.underlying(s, sym)?;
        let uf = self
            .snapshots(s, &[(sym.to_string(), und.clone())])?
            .remove(0);
        let px = uf
            .price_of_underlying()
            .ok_or_else(|| SourceError::NoData {
                source_name: NAME,
                date: as_of,
                reason: format!(
                    "IB sent no price for {sym} (no last, no two-sided market, no close)"
                ),
            })?;
        let price = Price::try_from_f64(px).map_err(|e| SourceError::BadData {
            file_or_source: format!("ibkr {sym}"),
            line: None,
            field: "price".into(),
            reason: e.to_string(),
        })?;
        let mut out = SymbolChain {
            underlying: UnderlyingQuote {
                symbol: sym.to_string(),
                price,
                rate,
                div_yield: self.cfg.div_yield,
            },
            quotes: Vec::new(),
            rejects: Vec::new(),
            notes: Vec::new(),
            delayed: uf.delayed,
        };
        let mut chains = self.chain_params(s, sym, &und)?;
        if chains.is_empty() {
            out.notes.push(format!("{sym}: no options listed"));
            return Ok(out);
        }
        let odd: Vec<String> = chains
            .iter()
            .filter(|(_, c)| !is_standard_multiplier(&c.multiplier))
            .map(|(k, c)| format!("{k} (×{})", c.multiplier))
            .collect();
        if !odd.is_empty() {
            chains.retain(|_, c| is_standard_multiplier(&c.multiplier));
            out.notes.push(format!(
                "{sym}: trading classes with a non-standard multiplier left out: {}",
                odd.join(", ")
            ));
        }
        let days = max_expiry_days.min(self.cfg.max_expiry_days);
        let last = as_of + chrono::Duration::days(days as i64);
        let expiries = select_expiries(&chains, as_of, last, self.cfg.max_expiries);
        let m = self.cfg.moneyness;
        let requests = detail_requests(&chains, &expiries, px, m);
        if requests.is_empty() {
            out.notes.push(format!(
                "{sym}: no expiry within {days} days with a strike within {:.0}% of {px}",
                m * 100.0
            ));
            return Ok(out);
        }
        // Con_ids of what is listed in the band: one request per expiry × class.
        let mut legs: Vec<Leg> = Vec::new();
        for (class, expiry) in &requests {
            let c = Contract {
                symbol: Symbol::from(sym),
                security_type: SecurityType::Option,
                last_trade_date_or_contract_month: expiry.format("%Y%m%d").to_string(),
                trading_class: class.clone(),
                exchange: Exchange::from("SMART"),
                currency: Currency::from("USD"),
                ..Default::default()
            };
            let what = format!("{sym} {class} {} options", expiry.format("%Y%m%d"));
            for d in self.details(s, &c, &what)? {
                let k = &d.contract;
                if !in_band(k.strike, px, m) || k.contract_id == 0 {
                    continue;
                }
                if !is_standard_multiplier(&k.multiplier) {
                    continue;
                }
                let right = match k.right {
                    Some(ibapi::contracts::OptionRight::Call) => OptionRight::Call,
                    Some(ibapi::contracts::OptionRight::Put) => OptionRight::Put,
                    None => {
                        out.rejects.push(SourceReject {
                            underlying: sym.to_string(),
                            contract: k.local_symbol.chars().take(40).collect(),
                            rule: "unparseable",
                            reason: "IB's contract details give no right (C or P)".into(),
                            raw: format!(
                                "con_id={} local_symbol={} strike={} expiry={}",
                                k.contract_id,
                                k.local_symbol.chars().take(40).collect::<String>(),
                                k.strike,
                                k.last_trade_date_or_contract_month
                            ),
                        });
                        continue;
                    }
                };
                let expiry_of = ib_date(&d.real_expiration_date)
                    .or_else(|| contract_last_trade_date(k))
                    .unwrap_or(*expiry);
                let mut contract = k.clone();
                contract.exchange = Exchange::from("SMART");
                legs.push(Leg {
                    class: if k.trading_class.is_empty() {
                        class.clone()
                    } else {
                        k.trading_class.clone()
                    },
                    expiry: expiry_of,
                    strike: k.strike,
                    right,
                    contract,
                });
            }
        }
        legs.sort_by(|a, b| {
            (a.expiry, &a.class, strike_key(a.strike), a.right.code()).cmp(&(
                b.expiry,
                &b.class,
                strike_key(b.strike),
                b.right.code(),
            ))
        });
        legs.dedup_by_key(|l| l.contract.contract_id);
        let items: Vec<(String, Contract)> = legs
            .iter()
            .map(|l| (l.label(sym), l.contract.clone()))
            .collect();
        let folds = self.snapshots(s, &items)?;
        for (leg, f) in legs.iter().zip(folds) {
            out.delayed |= f.delayed;
            let g = f.greeks.merged();
            let size = |x: Option<f64>| x.unwrap_or(0.0).clamp(0.0, i32::MAX as f64) as i32;
            out.quotes.push(OptionQuote {
                underlying: sym.to_string(),
                root: leg.class.clone(),
                expiry: leg.expiry,
                strike: Price::try_from_f64(leg.strike).map_err(|e| SourceError::BadData {
                    file_or_source: format!("ibkr {}", leg.label(sym)),
                    line: None,
                    field: "strike".into(),
                    reason: e.to_string(),
                })?,
                right: leg.right,
                settlement: listed_terms(&leg.class).1,
                bid: crate::sources::web_price(f.bid.unwrap_or(0.0)),
                ask: crate::sources::web_price(f.ask.unwrap_or(0.0)),
                bid_size: size(f.bid_size),
                ask_size: size(f.ask_size),
                volume: f.volume.unwrap_or(0.0).max(0.0) as i64,
                // Snapshots carry no generic ticks, so no open interest (tick 101).
                open_interest: 0,
                underlying_price: price,
                source_iv: g.iv().filter(|v| v.is_finite() && *v > 0.0 && *v < 20.0),
            });
        }
        crate::sources::refuse_placeholder_chain(
            NAME,
            sym,
            as_of,
            out.quotes
                .iter()
                .map(|q| (q.bid.to_f64(), q.ask.to_f64())),
            "TWS sends no bid or ask while the market is closed unless ibkr.market_data = \"frozen\" or \"delayed_frozen\"",
        )?;
        Ok(out)
    }

    /// Daily bars of `what_to_show` for `symbol` covering `from` to today, one request.
    fn history(
        &self,
        s: &Session,
        symbol: &str,
        from: NaiveDate,
        what_to_show: ibapi::market_data::historical::WhatToShow,
    ) -> Result<Vec<ibapi::market_data::historical::Bar>, SourceError> {
        use ibapi::market_data::historical::{BarSize, Duration as IbDuration};
        let today = chrono::Utc::now().date_naive();
        let days = ((today - from).num_days() + 2).max(1);
        let duration = if days <= 365 {
            IbDuration::days(days as i32)
        } else {
            IbDuration::years(((days + 364) / 365) as i32)
        };
        let c = underlying_contract(symbol);
        let what = format!("{symbol}'s daily {what_to_show} bars");
        let key = format!("{symbol}|{what_to_show}|1 day|{duration}");
        pace(&key, symbol)?;
        let r = s
            .client
            .historical_data(&c, BarSize::Day)
            .duration(duration)
            .what_to_show(what_to_show)
            .fetch();
        match r {
            Ok(d) => Ok(d.bars),
            Err(ibapi::Error::Notice(n))
                if n.code == 162 && !n.message.to_ascii_lowercase().contains("pacing") =>
            {
                tracing::warn!("ibkr: {what}: IB has none ({})", n.message);
                Ok(Vec::new())
            }
            Err(e) => Err(ib(s, e, &what, REQUEST)),
        }
    }

    /// The front futures contract of `root` not expired on `as_of` (by its contract
    /// details), and its bid, ask and last (the last trade, else the close, else the mid).
    pub fn future_quote(
        &self,
        root: &str,
        as_of: NaiveDate,
    ) -> Result<(FuturesContract, Price, Price, Price), SourceError> {
        let s = self.session()?;
        let c = Contract {
            symbol: Symbol::from(root),
            security_type: SecurityType::Future,
            exchange: Exchange::from(futures_exchange(root)),
            currency: Currency::from("USD"),
            ..Default::default()
        };
        let what = format!("{root} futures' contract details");
        let mut live: Vec<(NaiveDate, ContractDetails)> = self
            .details(&s, &c, &what)?
            .into_iter()
            .filter_map(|d| {
                let e = contract_last_trade_date(&d.contract)
                    .or_else(|| ib_date(&d.real_expiration_date))?;
                (e >= as_of && d.contract.contract_id != 0).then_some((e, d))
            })
            .collect();
        live.sort_by_key(|(e, _)| *e);
        let Some((expiry, d)) = live.into_iter().next() else {
            return Err(SourceError::NoData {
                source_name: NAME,
                date: as_of,
                reason: format!("IB lists no {root} futures contract expiring on or after {as_of}"),
            });
        };
        let k = &d.contract;
        let bad = |field: &str, reason: String| SourceError::BadData {
            file_or_source: format!("ibkr {root} futures"),
            line: None,
            field: field.into(),
            reason,
        };
        let month = if d.contract_month.len() >= 6 {
            d.contract_month.clone()
        } else {
            k.last_trade_date_or_contract_month.clone()
        };
        let (y, m) = (
            month.get(0..4).and_then(|x| x.parse::<i32>().ok()),
            month.get(4..6).and_then(|x| x.parse::<u32>().ok()),
        );
        let (Some(y), Some(m)) = (y, m) else {
            return Err(bad("contract_month", format!("'{month}' is not YYYYMM")));
        };
        let multiplier = k
            .multiplier
            .trim()
            .parse::<f64>()
            .map_err(|_| bad("multiplier", format!("'{}' is not a number", k.multiplier)))?;
        let tick = futures_tick(root)
            .or((d.min_tick > 0.0).then_some(d.min_tick))
            .ok_or_else(|| bad("min_tick", format!("{} is not a tick", d.min_tick)))?;
        // optdesk's own symbol (`MESZ25`, see trading::futures) for the products it
        // knows; IB's local symbol (`MESZ5`) otherwise.
        let symbol = if crate::trading::futures::product(root).is_some() && m % 3 == 0 {
            crate::trading::futures::symbol(root, y, m)
        } else if k.local_symbol.is_empty() {
            format!("{root}{y}{m:02}")
        } else {
            k.local_symbol.replace(' ', "")
        };
        let fc = FuturesContract::new_checked(
            &symbol,
            root,
            (y, m),
            expiry,
            multiplier.round() as i64,
            Price::try_from_f64(tick).map_err(|e| bad("min_tick", e.to_string()))?,
        )
        .map_err(|e| bad("contract", e.to_string()))?;
        let mut quote_contract = k.clone();
        quote_contract.exchange = Exchange::from(futures_exchange(root));
        let f = self
            .snapshots(&s, &[(symbol.clone(), quote_contract)])?
            .remove(0);
        let pos = |x: Option<f64>| x.filter(|x| *x > 0.0);
        let (bid, ask) = (pos(f.bid), pos(f.ask));
        let last = pos(f.last).or(pos(f.close)).or(match (bid, ask) {
            (Some(b), Some(a)) => Some((a + b) / 2.0),
            _ => None,
        });
        let p = |x: Option<f64>| crate::sources::web_price(x.unwrap_or(0.0));
        Ok((fc, p(bid), p(ask), p(last)))
    }
}

/// IB's local symbol of a quarterly futures contract: the root, the month code and the
/// last digit of the year (`MESZ6` for optdesk's `MESZ26`).
pub fn ib_local_symbol(c: &FuturesContract) -> String {
    const CODES: &str = "FGHJKMNQUVXZ";
    let (y, m) = c.contract_month;
    let code = CODES
        .chars()
        .nth(m.saturating_sub(1) as usize)
        .unwrap_or('?');
    format!("{}{code}{}", c.root, y.rem_euclid(10))
}

impl IbkrSource {
    /// The exact contract at IB of optdesk's futures contract `fc`: FUT, its root, on
    /// [`futures_exchange`], its contract month (`lastTradeDateOrContractMonth` =
    /// YYYYMM); of what IB lists for that month, the one with IB's local symbol for it
    /// (`MESZ6`), else the only one. IB's 200 (no such contract) fails, naming it.
    fn futures_contract(
        &self,
        s: &Session,
        fc: &FuturesContract,
    ) -> Result<(Contract, String), SourceError> {
        let (y, m) = fc.contract_month;
        let month = format!("{y}{m:02}");
        let exchange = futures_exchange(&fc.root);
        let local = ib_local_symbol(fc);
        let label = format!(
            "{} ({} FUT {month} on {exchange}, IB's {local})",
            fc.symbol, fc.root
        );
        let c = Contract {
            symbol: Symbol::from(fc.root.as_str()),
            security_type: SecurityType::Future,
            last_trade_date_or_contract_month: month.clone(),
            exchange: Exchange::from(exchange),
            currency: Currency::from("USD"),
            ..Default::default()
        };
        let what = format!("{label} contract details");
        let found: Vec<ContractDetails> = self
            .details(s, &c, &what)?
            .into_iter()
            .filter(|d| {
                d.contract.contract_id != 0
                    && (d.contract_month.starts_with(&month)
                        || d.contract
                            .last_trade_date_or_contract_month
                            .starts_with(&month))
            })
            .collect();
        let pick = found
            .iter()
            .find(|d| d.contract.local_symbol.replace(' ', "") == local)
            .or(if found.len() == 1 {
                found.first()
            } else {
                None
            });
        let Some(d) = pick else {
            return Err(SourceError::Request {
                reason: format!(
                    "ibkr: {what}: IB lists {} contract(s) for that month, none with the local symbol {local}; check the contract and ibkr's futures exchange",
                    found.len()
                ),
            });
        };
        let mut k = d.contract.clone();
        k.exchange = Exchange::from(exchange);
        Ok((k, label))
    }

    /// A futures contract's (bid, ask, last) at `at`, on the contract's tick.
    ///
    /// * `at` on the day of this source's latest snapshot or later (or, before any
    ///   snapshot, on today in New York or later): a market-data snapshot of the contract
    ///   (bounded by `ibkr.snapshot_timeout_secs`); `last` is the last trade, else the
    ///   close, else the mid. `None` (said in the log) when IB sends no two-sided market.
    /// * `at` on an earlier day (fetch_chains asks for the previous session's close):
    ///   the settlement, taken as the close of that day's daily TRADES bar from IB's
    ///   historical data (bounded by `ibkr.request_timeout_secs`, paced like every
    ///   historical request). IB's bars carry no bid or ask, so bid = ask = last = that
    ///   close. `None` (said in the log) when IB has no bar for that day.
    fn contract_quote(
        &self,
        fc: &FuturesContract,
        at: NaiveDateTime,
    ) -> Result<Option<(Price, Price, Price)>, SourceError> {
        let today = self
            .snapshot_day
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(|| crate::clock::now_ny(None).date_naive());
        let s = self.session()?;
        let (k, label) = self.futures_contract(&s, fc)?;
        let tick = |x: f64| crate::trading::futures::to_tick(x, fc.tick);
        if at.date() >= today {
            let f = self.snapshots(&s, &[(label.clone(), k)])?.remove(0);
            let pos = |x: Option<f64>| x.filter(|x| x.is_finite() && *x > 0.0);
            let (Some(bid), Some(ask)) = (pos(f.bid), pos(f.ask)) else {
                tracing::warn!(
                    "ibkr: {label}: IB sent no two-sided market at {at} (bid {:?}, ask {:?}); no quote stored",
                    f.bid,
                    f.ask
                );
                return Ok(None);
            };
            let last = pos(f.last).or(pos(f.close)).unwrap_or((bid + ask) / 2.0);
            return Ok(Some((tick(bid), tick(ask), tick(last))));
        }
        let date = at.date();
        let Some(close) = self.settlement(&s, &k, &label, date)? else {
            return Ok(None);
        };
        let c = tick(close);
        Ok(Some((c, c, c)))
    }

    /// The close of `date`'s daily TRADES bar of the futures contract `k`, `None` when
    /// IB has none (its 162 "no data", or no bar dated `date`).
    fn settlement(
        &self,
        s: &Session,
        k: &Contract,
        label: &str,
        date: NaiveDate,
    ) -> Result<Option<f64>, SourceError> {
        use ibapi::market_data::historical::{BarSize, Duration as IbDuration, WhatToShow};
        let today = chrono::Utc::now().date_naive();
        let days = ((today - date).num_days() + 2).max(1);
        let duration = if days <= 365 {
            IbDuration::days(days as i32)
        } else {
            IbDuration::years(((days + 364) / 365) as i32)
        };
        let what = format!("{label} daily TRADES bars (the settlement of {date})");
        let local = k.local_symbol.clone();
        pace(&format!("{local}|FUT|TRADES|1 day|{duration}"), &local)?;
        let r = s
            .client
            .historical_data(k, BarSize::Day)
            .duration(duration)
            .what_to_show(WhatToShow::Trades)
            .fetch();
        let bars = match r {
            Ok(d) => d.bars,
            Err(ibapi::Error::Notice(n))
                if n.code == 162 && !n.message.to_ascii_lowercase().contains("pacing") =>
            {
                tracing::warn!(
                    "ibkr: {what}: IB has none ({}); no settlement stored",
                    n.message
                );
                return Ok(None);
            }
            Err(e) => return Err(ib(s, e, &what, REQUEST)),
        };
        let close = bars
            .iter()
            .find(|b| bar_date(&b.date) == Some(date))
            .map(|b| b.close)
            .filter(|c| c.is_finite() && *c > 0.0);
        if close.is_none() {
            tracing::warn!(
                "ibkr: {what}: IB's {} bars have none dated {date} with a price; no settlement stored",
                bars.len()
            );
        }
        Ok(close)
    }
}

impl IbkrSource {
    fn snapshot_once(
        &self,
        quote_time: NaiveDateTime,
        symbols: &[String],
        max_expiry_days: u32,
    ) -> Result<Snapshot, SourceError> {
        let as_of = quote_time.date();
        let (rate, rate_from) = self.rate.on(NAME, as_of)?;
        let s = self.session()?;
        let mut snap = Snapshot {
            as_of,
            quote_time,
            underlyings: Vec::new(),
            quotes: Vec::new(),
            notes: Vec::new(),
            rejects: Vec::new(),
        };
        let mut delayed = false;
        // One symbol after another: the market-data lines of one wave at a time.
        for sym in symbols {
            let c = self.chain(&s, sym, as_of, max_expiry_days, rate)?;
            delayed |= c.delayed;
            snap.underlyings.push(c.underlying);
            snap.quotes.extend(c.quotes);
            snap.rejects.extend(c.rejects);
            snap.notes.extend(c.notes);
        }
        if delayed {
            snap.notes.insert(
                0,
                "delayed data (15–20 minutes): IB has no real-time subscription for some of these contracts".into(),
            );
        }
        snap.notes
            .push(format!("risk-free rate {:.4}% ({rate_from})", rate * 100.0));
        Ok(snap)
    }

    /// `what_to_show` daily bars of each symbol on the requested dates (one request per
    /// symbol), as (symbol, date, bar).
    fn bars_on(
        &self,
        symbols: &[String],
        dates: &[NaiveDate],
        what_to_show: ibapi::market_data::historical::WhatToShow,
    ) -> Result<Vec<(String, NaiveDate, ibapi::market_data::historical::Bar)>, SourceError> {
        let Some(&from) = dates.iter().min() else {
            return Ok(Vec::new());
        };
        let wanted: BTreeSet<NaiveDate> = dates.iter().copied().collect();
        let s = self.session()?;
        let mut out = Vec::new();
        for sym in symbols {
            for b in self.history(&s, sym, from, what_to_show)? {
                if let Some(date) = bar_date(&b.date).filter(|d| wanted.contains(d)) {
                    out.push((sym.clone(), date, b));
                }
            }
        }
        Ok(out)
    }

    fn daily_bars_once(
        &self,
        symbols: &[String],
        dates: &[NaiveDate],
    ) -> Result<Vec<DailyBar>, SourceError> {
        let bars = self.bars_on(
            symbols,
            dates,
            ibapi::market_data::historical::WhatToShow::Trades,
        )?;
        let mut out = Vec::with_capacity(bars.len());
        for (sym, date, b) in bars {
            let px = |name: &str, x: f64| {
                Price::try_from_f64(x)
                    .ok()
                    .filter(|p| p.is_positive())
                    .ok_or_else(|| SourceError::BadData {
                        file_or_source: format!("ibkr {sym} daily bars"),
                        line: None,
                        field: format!("{name} of {date}"),
                        reason: format!("{x} is not a price"),
                    })
            };
            out.push(DailyBar {
                date,
                symbol: sym.clone(),
                open: px("open", b.open)?,
                high: px("high", b.high)?,
                low: px("low", b.low)?,
                close: px("close", b.close)?,
                volume: b.volume.max(0.0).round() as i64,
                // IB's TRADES bars carry no dividends or split events.
                dividend: Price::ZERO,
                split_ratio: 1.0,
            });
        }
        Ok(out)
    }

    fn atm_iv_history_once(
        &self,
        symbols: &[String],
        dates: &[NaiveDate],
    ) -> Result<Option<Vec<IvPoint>>, SourceError> {
        if !self.cfg.iv_history {
            return Ok(None);
        }
        Ok(Some(
            self.bars_on(
                symbols,
                dates,
                ibapi::market_data::historical::WhatToShow::OptionImpliedVolatility,
            )?
            .into_iter()
            .filter(|(_, _, b)| b.close.is_finite() && b.close > 0.0 && b.close < 20.0)
            .map(|(sym, date, b)| (date, sym, b.close))
            .collect(),
        ))
    }
}

impl IbkrSource {
    /// `f` again on a new connection when the connection was lost (or could not be
    /// made), at most `ibkr.reconnect_attempts` times, a second more between each; then
    /// the loss, with the attempts made. A request is all or nothing, so it is simply
    /// made again from the start.
    fn reconnecting<T>(
        &self,
        mut f: impl FnMut() -> Result<T, SourceError>,
    ) -> Result<T, SourceError> {
        let bound = self.cfg.reconnect_attempts;
        let mut attempt = 0;
        let mut lost = String::new();
        loop {
            match f() {
                Ok(v) if attempt > 0 => {
                    super::note_reconnect(format!(
                        "the ibkr source lost its connection ({lost}) and reconnected on attempt {attempt} of {bound}; the request completed"
                    ));
                    return Ok(v);
                }
                Err(SourceError::Disconnected { reason }) if attempt < bound => {
                    attempt += 1;
                    tracing::warn!("ibkr: {reason}; reconnecting ({attempt} of {bound})");
                    lost = reason;
                    super::drop_session();
                    std::thread::sleep(Duration::from_secs(attempt as u64));
                }
                Err(SourceError::Disconnected { reason }) => {
                    return Err(SourceError::Disconnected {
                        reason: format!(
                            "{reason}; gave up after {attempt} reconnect attempt(s) (ibkr.reconnect_attempts = {bound})"
                        ),
                    })
                }
                other => return other,
            }
        }
    }
}

impl MarketData for IbkrSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn default_symbols(&self) -> Vec<String> {
        self.cfg.symbols.clone()
    }

    fn snapshot(
        &self,
        quote_time: NaiveDateTime,
        symbols: &[String],
        max_expiry_days: u32,
    ) -> Result<Snapshot, SourceError> {
        let snap =
            self.reconnecting(|| self.snapshot_once(quote_time, symbols, max_expiry_days))?;
        *self.snapshot_day.lock().unwrap_or_else(|p| p.into_inner()) = Some(quote_time.date());
        Ok(snap)
    }

    fn daily_bars(
        &self,
        symbols: &[String],
        dates: &[NaiveDate],
    ) -> Result<Vec<DailyBar>, SourceError> {
        self.reconnecting(|| self.daily_bars_once(symbols, dates))
    }

    fn atm_iv_history(
        &self,
        symbols: &[String],
        dates: &[NaiveDate],
    ) -> Result<Option<Vec<IvPoint>>, SourceError> {
        self.reconnecting(|| self.atm_iv_history_once(symbols, dates))
    }

    /// `contract` at IB (FUT, its root, on [`futures_exchange`], its contract month):
    /// at the current snapshot a market-data snapshot, at an earlier day the daily bar's
    /// close as the settlement (bid = ask = last = that close); see
    /// [`IbkrSource::contract_quote`].
    fn future_quote(
        &self,
        contract: &FuturesContract,
        at: NaiveDateTime,
    ) -> Result<Option<(Price, Price, Price)>, SourceError> {
        self.reconnecting(|| self.contract_quote(contract, at))
    }
}

/// For `optdesk ib check`: a quote of `symbol`, and of the call nearest the money in its
/// nearest expiry with IB's option computation.
pub fn check_quotes(s: &Session, symbol: &str) -> Result<Vec<String>, IbError> {
    let src = IbkrSource {
        cfg: s.cfg.clone(),
        rate: RiskFreeRate::Fixed {
            rate: 0.0,
            key: "ib check",
        },
        snapshot_day: Mutex::new(None),
    };
    src.check_quotes(s, symbol)
        .map_err(|e| IbError::Other(e.to_string()))
}

impl IbkrSource {
    fn check_quotes(&self, s: &Session, symbol: &str) -> Result<Vec<String>, SourceError> {
        let show = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "—".into());
        let und = self.underlying(s, symbol)?;
        let f = self
            .snapshots(s, &[(symbol.to_string(), und.clone())])?
            .remove(0);
        let mut out = vec![format!(
            "{symbol} (conId {}): bid {} ask {} last {} close {}{}",
            und.contract_id,
            show(f.bid),
            show(f.ask),
            show(f.last),
            show(f.close),
            if f.delayed { " (delayed)" } else { "" }
        )];
        let Some(px) = f.price_of_underlying() else {
            out.push(format!(
                "{symbol}: no price (no last, no two-sided market, no close): the market may be closed; ibkr.market_data = \"frozen\" shows the close"
            ));
            return Ok(out);
        };
        let chains = self.chain_params(s, symbol, &und)?;
        let today = chrono::Utc::now().date_naive();
        let Some((class, expiry)) = chains
            .iter()
            .flat_map(|(k, c)| c.expiries.iter().map(move |e| (k.clone(), *e)))
            .filter(|(_, e)| *e > today)
            .min_by_key(|(_, e)| *e)
        else {
            out.push(format!("{symbol}: IB lists no option expiry after today"));
            return Ok(out);
        };
        let c = Contract {
            symbol: Symbol::from(symbol),
            security_type: SecurityType::Option,
            last_trade_date_or_contract_month: expiry.format("%Y%m%d").to_string(),
            trading_class: class.clone(),
            right: Some(ibapi::contracts::OptionRight::Call),
            exchange: Exchange::from("SMART"),
            currency: Currency::from("USD"),
            ..Default::default()
        };
        let what = format!("{symbol} {class} {} calls", expiry.format("%Y%m%d"));
        let Some(d) = self
            .details(s, &c, &what)?
            .into_iter()
            .filter(|d| d.contract.contract_id != 0)
            .min_by(|a, b| {
                (a.contract.strike - px)
                    .abs()
                    .total_cmp(&(b.contract.strike - px).abs())
            })
        else {
            out.push(format!("{what}: IB lists none"));
            return Ok(out);
        };
        let mut oc = d.contract.clone();
        oc.exchange = Exchange::from("SMART");
        let label = format!(
            "{symbol} {class} {} {} C",
            expiry.format("%Y-%m-%d"),
            oc.strike
        );
        let f = self.snapshots(s, &[(label.clone(), oc)])?.remove(0);
        let g = f.greeks.merged();
        out.push(format!(
            "{label}: bid {} ask {} last {}; IB's computation: IV {} delta {} underlying {}{}",
            show(f.bid),
            show(f.ask),
            show(f.last),
            g.iv()
                .map(|v| format!("{:.1}%", v * 100.0))
                .unwrap_or_else(|| "—".into()),
            g.delta()
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "—".into()),
            show(g.0[5]),
            if f.delayed { " (delayed)" } else { "" }
        ));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn comp(field: TickType, v: [Option<f64>; 6]) -> OptionComputation {
        OptionComputation {
            field,
            tick_attribute: Some(1),
            implied_volatility: v[0],
            delta: v[1],
            option_price: None,
            present_value_dividend: None,
            gamma: v[2],
            vega: v[3],
            theta: v[4],
            underlying_price: v[5],
        }
    }

    const ALL: [Option<f64>; 6] = [None; 6];

    #[test]
    fn a_sentinel_computation_last_keeps_the_greeks() {
        let mut m = ComputationMerge::default();
        m.apply(&comp(TickType::ModelOption, ALL));
        m.apply(&comp(
            TickType::ModelOption,
            [
                Some(0.25),
                Some(0.5),
                Some(0.02),
                Some(0.3),
                Some(-0.05),
                Some(200.0),
            ],
        ));
        m.apply(&comp(TickType::ModelOption, ALL));
        m.apply(&comp(TickType::LastOption, ALL));
        let g = m.merged();
        assert_eq!(g.iv(), Some(0.25));
        assert_eq!(g.delta(), Some(0.5));
        assert_eq!(g.0[5], Some(200.0));
    }

    #[test]
    fn without_a_model_the_bid_and_ask_are_averaged() {
        let mut m = ComputationMerge::default();
        m.apply(&comp(
            TickType::BidOption,
            [Some(0.2), Some(0.4), None, None, None, None],
        ));
        m.apply(&comp(
            TickType::DelayedAskOption,
            [Some(0.3), None, None, None, None, None],
        ));
        m.apply(&comp(TickType::LastOption, [Some(9.0); 6]));
        let g = m.merged();
        assert!((g.iv().unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(g.delta(), Some(0.4), "the one side there is");
        assert_eq!(g.0[2], None, "the last computation is not used");
        // A model value wins over bid/ask, field by field.
        m.apply(&comp(
            TickType::DelayedModelOption,
            [None, Some(0.45), None, None, None, None],
        ));
        let g = m.merged();
        assert_eq!(g.delta(), Some(0.45));
        assert!((g.iv().unwrap() - 0.25).abs() < 1e-12);
        // Other tick types are not computations.
        m.apply(&comp(TickType::Bid, [Some(5.0); 6]));
        assert_eq!(m.merged(), g);
    }

    fn kind_strategy() -> impl Strategy<Value = TickType> {
        prop::sample::select(vec![
            TickType::BidOption,
            TickType::AskOption,
            TickType::LastOption,
            TickType::ModelOption,
            TickType::DelayedBidOption,
            TickType::DelayedAskOption,
            TickType::DelayedLastOption,
            TickType::DelayedModelOption,
        ])
    }

    fn fields_strategy() -> impl Strategy<Value = [Option<f64>; 6]> {
        prop::array::uniform6(prop::option::weighted(0.5, -5.0f64..5.0))
    }

    /// Reference: per field, the latest non-None value of the preferred kind.
    fn expected(seq: &[(TickType, [Option<f64>; 6])]) -> [Option<f64>; 6] {
        let latest = |kind: CompKind, i: usize| {
            seq.iter()
                .rev()
                .filter(|(t, _)| CompKind::of(*t) == Some(kind))
                .find_map(|(_, v)| v[i])
        };
        let mut out = [None; 6];
        for (i, o) in out.iter_mut().enumerate() {
            *o = match (
                latest(CompKind::Model, i),
                latest(CompKind::Bid, i),
                latest(CompKind::Ask, i),
            ) {
                (Some(m), _, _) => Some(m),
                (None, Some(b), Some(a)) => Some((b + a) / 2.0),
                (None, b, a) => b.or(a),
            };
        }
        out
    }

    proptest! {
        // A fixed seed: the same cases on every run (tests are deterministic).
        #![proptest_config(proptest::test_runner::Config {
            rng_seed: proptest::test_runner::RngSeed::Fixed(20_261_202),
            ..proptest::test_runner::Config::default()
        })]
        #[test]
        fn merged_fields_are_the_latest_of_the_preferred_kind(
            seq in prop::collection::vec((kind_strategy(), fields_strategy()), 0..24),
            sentinel_kind in kind_strategy(),
            at in 0usize..25,
        ) {
            let mut m = ComputationMerge::default();
            for (t, v) in &seq {
                m.apply(&comp(*t, *v));
            }
            prop_assert_eq!(m.merged().0, expected(&seq));
            // An all-sentinel computation, anywhere, never changes the result.
            let mut with = seq.clone();
            with.insert(at.min(seq.len()), (sentinel_kind, ALL));
            let mut m2 = ComputationMerge::default();
            for (t, v) in &with {
                m2.apply(&comp(*t, *v));
            }
            prop_assert_eq!(m2.merged(), m.merged());
            let before = m.merged();
            m.apply(&comp(sentinel_kind, ALL));
            prop_assert_eq!(m.merged(), before);
        }
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn chain_rows_merge_by_trading_class_over_exchanges() {
        let e1 = vec!["20261204".to_string(), "20261211".to_string()];
        let e2 = vec![
            "20261211".to_string(),
            "20261218".to_string(),
            "bad".to_string(),
        ];
        let k1 = vec![5950.0, 6000.0];
        let k2 = vec![6000.0, 6050.0, 6000.0000001];
        let m = merge_chains([
            ("SMART", "SPXW", "100", e1.as_slice(), k1.as_slice()),
            ("CBOE", "SPXW", "100", e2.as_slice(), k2.as_slice()),
            ("CBOE", "SPX", "100", e2[2..3].as_ref(), k1.as_slice()),
        ]);
        assert_eq!(m.len(), 2);
        let w = &m["SPXW"];
        assert_eq!(
            w.exchanges.iter().cloned().collect::<Vec<_>>(),
            vec!["CBOE", "SMART"]
        );
        assert_eq!(
            w.expiries.iter().copied().collect::<Vec<_>>(),
            vec![d("2026-12-04"), d("2026-12-11"), d("2026-12-18")]
        );
        assert_eq!(w.strikes, vec![5950.0, 6000.0, 6050.0]);
        assert!(m["SPX"].expiries.is_empty(), "'bad' is not a date");
        assert!(is_standard_multiplier("100") && is_standard_multiplier(""));
        assert!(!is_standard_multiplier("10"));
    }

    #[test]
    fn expiries_and_strikes_are_chosen_from_the_window_and_band() {
        let chain = |exps: &[&str], ks: &[f64]| ClassChain {
            multiplier: "100".into(),
            exchanges: BTreeSet::new(),
            expiries: exps.iter().map(|e| d(e)).collect(),
            strikes: ks.to_vec(),
        };
        let mut m = BTreeMap::new();
        m.insert(
            "SPX".to_string(),
            chain(
                &["2026-11-20", "2026-12-18", "2027-01-15"],
                &[5000.0, 6000.0],
            ),
        );
        m.insert(
            "SPXW".to_string(),
            chain(
                &["2026-12-01", "2026-12-04", "2026-12-18"],
                &[5990.0, 9000.0],
            ),
        );
        let as_of = d("2026-12-01");
        // Expired ones out, the as-of date in, at most `max` nearest, none past `last`.
        assert_eq!(
            select_expiries(&m, as_of, d("2027-01-14"), 10),
            vec![d("2026-12-01"), d("2026-12-04"), d("2026-12-18")]
        );
        assert_eq!(
            select_expiries(&m, as_of, d("2027-12-31"), 2),
            vec![d("2026-12-01"), d("2026-12-04")]
        );
        assert!(in_band(5400.0, 6000.0, 0.1) && in_band(6600.0, 6000.0, 0.1));
        assert!(!in_band(5399.0, 6000.0, 0.1));
        let ex = select_expiries(&m, as_of, d("2027-01-15"), 10);
        let r = detail_requests(&m, &ex, 6000.0, 0.05);
        assert_eq!(
            r,
            vec![
                ("SPXW".to_string(), d("2026-12-01")),
                ("SPXW".to_string(), d("2026-12-04")),
                ("SPX".to_string(), d("2026-12-18")),
                ("SPXW".to_string(), d("2026-12-18")),
                ("SPX".to_string(), d("2027-01-15")),
            ]
        );
        // A class with no strike in the band is not asked for.
        assert!(detail_requests(&m, &ex, 100.0, 0.05).is_empty());
    }

    #[test]
    fn ticks_fold_into_prices_and_the_underlying_price_falls_back() {
        use ibapi::market_data::realtime::{TickPrice, TickPriceSize, TickSize};
        let mut f = TickFold::default();
        f.apply(&TickTypes::PriceSize(TickPriceSize {
            price_tick_type: TickType::DelayedBid,
            price: 1.5,
            size_tick_type: TickType::DelayedBidSize,
            size: 10.0,
            ..Default::default()
        }));
        f.apply(&TickTypes::Price(TickPrice {
            tick_type: TickType::Ask,
            price: 1.7,
            ..Default::default()
        }));
        f.apply(&TickTypes::Size(TickSize {
            tick_type: TickType::DelayedVolume,
            size: 99.0,
        }));
        assert_eq!(
            (f.bid, f.ask, f.bid_size, f.volume),
            (Some(1.5), Some(1.7), Some(10.0), Some(99.0))
        );
        assert!(f.delayed);
        assert_eq!(f.price_of_underlying(), Some(1.6), "no last: the mid");
        f.last = Some(1.65);
        assert_eq!(f.price_of_underlying(), Some(1.65));
        let g = TickFold {
            bid: Some(-1.0),
            ask: Some(-1.0),
            close: Some(5.0),
            ..Default::default()
        };
        assert_eq!(g.price_of_underlying(), Some(5.0), "no market: the close");
        assert_eq!(TickFold::default().price_of_underlying(), None);
        let mut n = TickFold::default();
        n.notice(2104);
        assert!(!n.delayed);
        n.notice(10167);
        assert!(n.delayed);
    }

    #[test]
    fn a_snapshot_fold_keeps_the_model_iv_when_sentinels_come_last() {
        let real = [
            Some(0.25),
            Some(0.5),
            Some(0.02),
            Some(0.3),
            Some(-0.05),
            Some(200.0),
        ];
        let mut f = TickFold::default();
        for (t, v) in [
            (TickType::ModelOption, ALL),
            (TickType::BidOption, real),
            (TickType::ModelOption, real),
            (TickType::ModelOption, ALL),
            (TickType::BidOption, ALL),
            (TickType::LastOption, ALL),
        ] {
            f.apply(&TickTypes::OptionComputation(comp(t, v)));
        }
        assert_eq!(f.greeks.merged().iv(), Some(0.25));
        assert_eq!(f.greeks.merged().delta(), Some(0.5));
        assert!(!f.delayed);
        f.apply(&TickTypes::OptionComputation(comp(
            TickType::DelayedModelOption,
            ALL,
        )));
        assert!(f.delayed, "a delayed computation is delayed data");
        assert_eq!(f.greeks.merged().iv(), Some(0.25));
    }

    #[test]
    fn historical_pacing_follows_ibs_three_rules() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Pacer::default();
        assert_eq!(p.delay(t0, "a", "SPY"), Duration::ZERO);
        p.record(t0, "a", "SPY");
        // Identical within 15 s: wait the rest of the 15 s.
        assert_eq!(p.delay(t0 + s(5), "a", "SPY"), s(10));
        assert_eq!(p.delay(t0 + s(15), "a", "SPY"), Duration::ZERO);
        // Five for one contract within 2 s, then the sixth waits.
        for i in 1..5 {
            p.record(t0 + Duration::from_millis(100 * i), &format!("k{i}"), "SPY");
        }
        assert_eq!(
            p.delay(t0 + Duration::from_millis(500), "new", "SPY"),
            s(2) - Duration::from_millis(500)
        );
        assert_eq!(
            p.delay(t0 + Duration::from_millis(500), "new", "QQQ"),
            Duration::ZERO
        );
        // Sixty within 10 minutes, then the next waits for the oldest to age out.
        let mut q = Pacer::default();
        for i in 0..60u64 {
            q.record(t0 + s(i * 3), &format!("r{i}"), &format!("c{i}"));
        }
        let now = t0 + s(200);
        assert_eq!(q.delay(now, "x", "cx"), s(400));
        assert_eq!(q.delay(t0 + s(600), "x", "cx"), Duration::ZERO);
    }

    #[test]
    fn errors_name_the_request_and_ibs_advice() {
        let e = source_error(
            IbError::Ib {
                code: 354,
                message: "Requested market data is not subscribed".into(),
                what: "AAPL AAPL 20261218 C 200 snapshot".into(),
                advice: super::super::classify(354, "").1,
            },
            SNAPSHOT,
        );
        let t = e.to_string();
        assert!(
            t.contains("354") && t.contains("AAPL 20261218") && t.contains("market_data"),
            "{t}"
        );
        assert!(!e.is_retryable());
        let e = no_answer("AAPL snapshot", 2, SNAPSHOT);
        assert!(e.is_retryable());
        assert!(
            e.to_string().contains("ibkr.snapshot_timeout_secs = 2"),
            "{e}"
        );
        let e = source_error(
            IbError::Ib {
                code: 162,
                message: "Historical data request pacing violation".into(),
                what: "SPY bars".into(),
                advice: "",
            },
            REQUEST,
        );
        assert!(matches!(e, SourceError::RateLimited { .. }));
        let e = source_error(
            IbError::Ib {
                code: 162,
                message: "HMDS query returned no data".into(),
                what: "SPY bars".into(),
                advice: "",
            },
            REQUEST,
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn futures_terms() {
        assert_eq!(futures_exchange("MES"), "CME");
        assert_eq!(futures_exchange("MYM"), "CBOT");
        assert_eq!(futures_tick("MES"), Some(0.25));
        assert_eq!(ib_date("20261218"), Some(d("2026-12-18")));
        assert_eq!(
            ib_date("20261218 16:00:00 US/Eastern"),
            Some(d("2026-12-18"))
        );
        assert_eq!(ib_date("202612"), None);
        let c = |sym: &str| crate::trading::futures::parse(sym).unwrap();
        assert_eq!(ib_local_symbol(&c("MESZ25")), "MESZ5");
        assert_eq!(ib_local_symbol(&c("MESH27")), "MESH7");
        assert_eq!(ib_local_symbol(&c("ESM30")), "ESM0");
    }

    #[test]
    fn new_does_not_connect() {
        let cfg = IbkrConfig {
            port: 1,
            ..IbkrConfig::default()
        };
        let s = IbkrSource::new(
            &cfg,
            RiskFreeRate::Fixed {
                rate: 0.04,
                key: "ibkr.rate",
            },
        );
        assert!(s.is_ok());
        assert_eq!(s.unwrap().default_symbols(), cfg.symbols);
    }
}
