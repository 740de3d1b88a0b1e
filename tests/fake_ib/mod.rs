#![allow(dead_code)]
//! A fake Interactive Brokers gateway (a TWS / IB Gateway stand-in) that speaks exactly the
//! wire protocol of the `ibapi` 5.5.0 client: the `API\0` handshake with a text ack, then
//! length-prefixed protobuf frames whose message ids are offset by 200. Every layout, routing
//! rule and fill sequence follows `/work/shared/reference/IBKR.md` (cited below as §n).
//! Its self-tests (tests/ibkr_fake.rs) drive it with the real `ibapi` blocking client.
//!
//! Integration tests include it with `mod fake_ib;`. The public surface:
//!
//! ```text
//! FakeIb::start(market: Market) -> FakeIb     // TCP server on 127.0.0.1:<ephemeral>, thread per connection
//! FakeIb::port(&self) -> u16
//! FakeIb::address(&self) -> String            // "127.0.0.1:<port>"
//! FakeIb::venue(&self) -> MutexGuard<Venue>   // inspect state, add faults, move prices mid-test
//! (dropping FakeIb stops the accept thread and closes every connection)
//!
//! Market  { server_version: i32 (226), accounts (["DU1234567"]), next_order_id (9000),
//!           stocks: Vec<Stock>, options: Vec<Opt>, futures: Vec<Fut>,
//!           bars: HashMap<(symbol or local symbol, what_to_show), Vec<Bar>>, fill_at (0.0),
//!           commission_per_contract (0.65), cash (100 000), snapshot_end_delay (20 ms), delayed (false) }
//!   Default: AAPL (STK 265598, 199.95/200.05), SPX (IND 416904, last 6000); AAPL options
//!   20261218 & 20270115 × 190/200/210 × C/P; SPXW 20261204 and SPX 20261218 × 5950/6000/6050
//!   × C/P (con ids from 700000001, priced by `priced_option` as of DEFAULT_TODAY 20261201);
//!   MESZ6 / MESH7; 60 daily bars to 20261201 for AAPL TRADES, AAPL
//!   OPTION_IMPLIED_VOLATILITY and SPX TRADES.
//!   Market::option(symbol, expiry, strike, right) / Market::stock(symbol) look instruments up.
//! Stock   { symbol, con_id, sec_type "STK"|"IND", exchange, bid, ask, last, close, bid_size, ask_size, volume }
//! Opt     { con_id, symbol, trading_class, exchange, expiry, strike, right 'C'|'P', multiplier,
//!           bid, ask, last, bid_size, ask_size, volume, iv, delta, gamma, vega, theta, und_price }
//! Fut     { con_id, symbol, local_symbol, month, last_trade_date, multiplier, exchange, bid, ask, last }
//! Bar     { date "YYYYMMDD" | epoch secs, open, high, low, close, volume }
//! Venue   { market, orders: BTreeMap<order_id, FakeOrder>, executions: Vec<FakeExecution>,
//!           positions: BTreeMap<con_id, FakePosition>, cash, faults: Vec<Fault>, log: Vec<Logged>, stats: Stats }
//!   Venue::active_lines(), next_valid_id(), orders_with_ref(r), position(con_id)
//! Stats   { connections, max_msgs_per_sec, max_lines, violations, placed_refs, requests }
//! Fault   { Error{msg, symbol, code, text, times}, NoEnd{msg}, CloseAfterOrderReceived,
//!           CloseAfter{requests, refuse_connections}, ClientIdInUse }   (see each variant's doc)
//! Watchdog::new(Duration)                     // exits the process with 101 if not dropped in time
//! FrameReader / frame_bytes / encode_frame / split_body / decode_request / decode_body
//!                                             // the framing, property-tested
//! priced_option(..), weekdays_ending(..), select_bars(..)   // helpers for scripting markets
//! ```
//!
//! State lives in the `Venue` and persists across connections, like a real venue: the program
//! under test connects once per job, and a later connection sees the earlier orders, fills and
//! positions. Each connection is served by its own thread; replies are built under the venue
//! lock and written after it is released, so a test may hold `venue()` briefly but must not hold
//! the guard across a client call. Resting orders are re-evaluated every few milliseconds while
//! any connection is open, so moving a price (or `fill_at`) through `venue()` fills them.
//!
//! Not modelled: partial fills, streaming tick updates after the first image, real-time bars,
//! per-client order-id sequences (the venue keeps one sequence), margin, the execution filter's
//! time field.

pub mod proto;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prost::Message;

// ---------------------------------------------------------------------------------------------
// Wire ids (§1: protobuf frames carry the message id + 200 in both directions).
// ---------------------------------------------------------------------------------------------

/// Wire message ids (already + 200). `IN_*` are client → server requests, the rest are replies.
pub mod wire {
    // client -> server
    pub const REQ_MKT_DATA: i32 = 201;
    pub const CANCEL_MKT_DATA: i32 = 202;
    pub const PLACE_ORDER: i32 = 203;
    pub const CANCEL_ORDER: i32 = 204;
    pub const REQ_OPEN_ORDERS: i32 = 205;
    pub const REQ_ACCOUNT_DATA: i32 = 206;
    pub const REQ_EXECUTIONS: i32 = 207;
    pub const REQ_IDS: i32 = 208;
    pub const REQ_CONTRACT_DATA: i32 = 209;
    pub const REQ_ALL_OPEN_ORDERS: i32 = 216;
    pub const REQ_HISTORICAL_DATA: i32 = 220;
    pub const CANCEL_HISTORICAL_DATA: i32 = 225;
    pub const REQ_MKT_DATA_TYPE: i32 = 259;
    pub const REQ_POSITIONS: i32 = 261;
    pub const REQ_ACCOUNT_SUMMARY: i32 = 262;
    pub const CANCEL_ACCOUNT_SUMMARY: i32 = 263;
    pub const CANCEL_POSITIONS: i32 = 264;
    pub const START_API: i32 = 271;
    pub const REQ_SEC_DEF_OPT_PARAMS: i32 = 278;
    pub const REQ_COMPLETED_ORDERS: i32 = 299;
    pub const CANCEL_CONTRACT_DATA: i32 = 306;

    // server -> client
    pub const TICK_PRICE: i32 = 201;
    pub const TICK_SIZE: i32 = 202;
    pub const ORDER_STATUS: i32 = 203;
    pub const ERROR: i32 = 204;
    pub const OPEN_ORDER: i32 = 205;
    pub const ACCOUNT_VALUE: i32 = 206;
    pub const PORTFOLIO_VALUE: i32 = 207;
    pub const ACCOUNT_UPDATE_TIME: i32 = 208;
    pub const NEXT_VALID_ID: i32 = 209;
    pub const CONTRACT_DATA: i32 = 210;
    pub const EXECUTION_DATA: i32 = 211;
    pub const MANAGED_ACCOUNTS: i32 = 215;
    pub const HISTORICAL_DATA: i32 = 217;
    pub const TICK_OPTION_COMPUTATION: i32 = 221;
    pub const CONTRACT_DATA_END: i32 = 252;
    pub const OPEN_ORDER_END: i32 = 253;
    pub const ACCOUNT_DOWNLOAD_END: i32 = 254;
    pub const EXECUTION_DATA_END: i32 = 255;
    pub const TICK_SNAPSHOT_END: i32 = 257;
    pub const MARKET_DATA_TYPE: i32 = 258;
    pub const COMMISSION_REPORT: i32 = 259;
    pub const POSITION: i32 = 261;
    pub const POSITION_END: i32 = 262;
    pub const ACCOUNT_SUMMARY: i32 = 263;
    pub const ACCOUNT_SUMMARY_END: i32 = 264;
    pub const SEC_DEF_OPT_PARAMETER: i32 = 275;
    pub const SEC_DEF_OPT_PARAMETER_END: i32 = 276;
    pub const TICK_REQ_PARAMS: i32 = 281;
    pub const COMPLETED_ORDER: i32 = 301;
    pub const COMPLETED_ORDERS_END: i32 = 302;
    pub const HISTORICAL_DATA_END: i32 = 308;
}

/// Limits the fake enforces like TWS (§6).
pub const MAX_MSGS_PER_SEC: usize = 50;
pub const MAX_LINES: usize = 100;
/// §1: a frame body must be between 4 and 0x00FF_FFFF bytes.
pub const MAX_FRAME: usize = 0x00FF_FFFF;

// ---------------------------------------------------------------------------------------------
// Framing and decoding (pure functions; property-tested in tests/ibkr_fake.rs).
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum WireError {
    /// The first four bytes were not `API\0`.
    BadMagic,
    /// A frame length outside 4..=0x00FF_FFFF (a hard desync in TWS and ibapi alike).
    BadLength(usize),
    /// A body too short to hold a message id.
    ShortBody,
    /// A message id ≤ 200: text protocol, unused after the handshake (§1).
    Text(i32),
    /// The protobuf payload did not decode.
    Decode(String),
}

/// Accumulates bytes from the socket and yields complete frame bodies (`[u32 BE len][body]`).
/// Reads may split a frame anywhere; the reader only returns a body once it is complete.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
    /// Consumes the 4-byte `API\0` magic that opens a connection (it has no length prefix, §1).
    /// `Ok(false)` means not enough bytes yet.
    pub fn take_magic(&mut self) -> Result<bool, WireError> {
        if self.buf.len() < 4 {
            return Ok(false);
        }
        if &self.buf[..4] != b"API\0" {
            return Err(WireError::BadMagic);
        }
        self.buf.drain(..4);
        Ok(true)
    }
    /// The next complete frame body, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if !(4..=MAX_FRAME).contains(&len) {
            return Err(WireError::BadLength(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(body))
    }
}

/// Prefixes a body with its u32 BE length.
pub fn frame_bytes(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A complete protobuf frame: `[u32 BE len][i32 BE wire id][payload]`.
pub fn encode_frame<M: Message>(wire_id: i32, msg: &M) -> Vec<u8> {
    let mut body = wire_id.to_be_bytes().to_vec();
    msg.encode(&mut body).expect("a Vec grows");
    frame_bytes(&body)
}

/// Splits a body into its wire id and protobuf payload; ids ≤ 200 are text (§1).
pub fn split_body(body: &[u8]) -> Result<(i32, &[u8]), WireError> {
    if body.len() < 4 {
        return Err(WireError::ShortBody);
    }
    let id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    if id <= 200 {
        return Err(WireError::Text(id));
    }
    Ok((id, &body[4..]))
}

/// Decodes a body as a given protobuf message (any direction).
pub fn decode_body<M: Message + Default>(body: &[u8]) -> Result<(i32, M), WireError> {
    let (id, payload) = split_body(body)?;
    M::decode(payload)
        .map(|m| (id, m))
        .map_err(|e| WireError::Decode(e.to_string()))
}

/// A decoded client request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    StartApi(proto::StartApiRequest),
    MarketData(proto::MarketDataRequest),
    CancelMarketData(proto::CancelMarketData),
    PlaceOrder(Box<proto::PlaceOrderRequest>),
    CancelOrder(proto::CancelOrderRequest),
    OpenOrders,
    AccountData(proto::AccountDataRequest),
    Executions(proto::ExecutionRequest),
    Ids(proto::IdsRequest),
    ContractData(proto::ContractDataRequest),
    AllOpenOrders,
    HistoricalData(proto::HistoricalDataRequest),
    CancelHistoricalData,
    MarketDataType(proto::MarketDataTypeRequest),
    Positions,
    AccountSummary(proto::AccountSummaryRequest),
    CancelAccountSummary,
    CancelPositions,
    SecDefOptParams(proto::SecDefOptParamsRequest),
    CompletedOrders(proto::CompletedOrdersRequest),
    CancelContractData,
    /// A protobuf request the fake does not implement (logged and ignored).
    Other(i32),
}

/// Decodes one client frame body into (wire id, request).
pub fn decode_request(body: &[u8]) -> Result<(i32, Request), WireError> {
    let (id, p) = split_body(body)?;
    fn d<M: Message + Default>(p: &[u8]) -> Result<M, WireError> {
        M::decode(p).map_err(|e| WireError::Decode(e.to_string()))
    }
    use wire::*;
    let req = match id {
        START_API => Request::StartApi(d(p)?),
        REQ_MKT_DATA => Request::MarketData(d(p)?),
        CANCEL_MKT_DATA => Request::CancelMarketData(d(p)?),
        PLACE_ORDER => Request::PlaceOrder(Box::new(d(p)?)),
        CANCEL_ORDER => Request::CancelOrder(d(p)?),
        REQ_OPEN_ORDERS => Request::OpenOrders,
        REQ_ACCOUNT_DATA => Request::AccountData(d(p)?),
        REQ_EXECUTIONS => Request::Executions(d(p)?),
        REQ_IDS => Request::Ids(d(p)?),
        REQ_CONTRACT_DATA => Request::ContractData(d(p)?),
        REQ_ALL_OPEN_ORDERS => Request::AllOpenOrders,
        REQ_HISTORICAL_DATA => Request::HistoricalData(d(p)?),
        CANCEL_HISTORICAL_DATA => Request::CancelHistoricalData,
        REQ_MKT_DATA_TYPE => Request::MarketDataType(d(p)?),
        REQ_POSITIONS => Request::Positions,
        REQ_ACCOUNT_SUMMARY => Request::AccountSummary(d(p)?),
        CANCEL_ACCOUNT_SUMMARY => Request::CancelAccountSummary,
        CANCEL_POSITIONS => Request::CancelPositions,
        REQ_SEC_DEF_OPT_PARAMS => Request::SecDefOptParams(d(p)?),
        REQ_COMPLETED_ORDERS => Request::CompletedOrders(d(p)?),
        CANCEL_CONTRACT_DATA => Request::CancelContractData,
        other => Request::Other(other),
    };
    Ok((id, req))
}

// ---------------------------------------------------------------------------------------------
// The scripted market.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Stock {
    pub symbol: String,
    pub con_id: i32,
    /// "STK" or "IND" (an index has no bid/ask: leave them at 0 to send none).
    pub sec_type: String,
    /// The primary exchange (NASDAQ, NYSE, CBOE for an index).
    pub exchange: String,
    pub bid: f64,
    pub ask: f64,
    pub last: f64,
    pub close: f64,
    pub bid_size: f64,
    pub ask_size: f64,
    pub volume: f64,
}

#[derive(Debug, Clone)]
pub struct Opt {
    pub con_id: i32,
    pub symbol: String,
    pub trading_class: String,
    pub exchange: String,
    /// YYYYMMDD
    pub expiry: String,
    pub strike: f64,
    /// 'C' or 'P'
    pub right: char,
    pub multiplier: f64,
    pub bid: f64,
    pub ask: f64,
    pub last: f64,
    pub bid_size: f64,
    pub ask_size: f64,
    pub volume: f64,
    pub iv: f64,
    pub delta: f64,
    pub gamma: f64,
    pub vega: f64,
    pub theta: f64,
    pub und_price: f64,
}

#[derive(Debug, Clone)]
pub struct Fut {
    pub con_id: i32,
    pub symbol: String,
    pub local_symbol: String,
    /// YYYYMM
    pub month: String,
    /// YYYYMMDD
    pub last_trade_date: String,
    pub multiplier: f64,
    pub exchange: String,
    pub bid: f64,
    pub ask: f64,
    pub last: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// "YYYYMMDD" for daily bars or epoch seconds for intraday bars (§2.4).
    pub date: String,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

#[derive(Debug, Clone)]
pub struct Market {
    /// Claimed in the handshake ack; below 213 the client refuses the connection (§1).
    pub server_version: i32,
    pub accounts: Vec<String>,
    /// The first NextValidId; the venue raises it past every order id it has seen.
    pub next_order_id: i32,
    pub stocks: Vec<Stock>,
    pub options: Vec<Opt>,
    pub futures: Vec<Fut>,
    /// (symbol, what_to_show) → bars, oldest first; a key with a contract's local symbol
    /// (`MESZ6`) serves that contract before its symbol's bars.
    pub bars: HashMap<(String, String), Vec<Bar>>,
    /// Where a limit fills, as a fraction of the half-spread from the mid towards the natural
    /// price: 0 = fills at or better than the mid, 1 = only at the natural (ask for a buy, bid
    /// for a sell), `f64::INFINITY` = never fills. Market orders always fill at the natural.
    pub fill_at: f64,
    /// Per contract (per share for a stock, per leg contract for a combo).
    pub commission_per_contract: f64,
    /// Starting cash of the account.
    pub cash: f64,
    /// How long a snapshot holds its market-data line before TickSnapshotEnd.
    pub snapshot_end_delay: Duration,
    /// The account has no live subscription: a live (type 1) request gets 354, and after
    /// MarketDataTypeRequest(3 or 4) requests get the 10167 notice, then delayed ticks
    /// 66/67/68 (+ sizes 69/70/71/74) and delayed computations 80–83 (§6).
    pub delayed: bool,
}

/// The fixed "today" of the default market (option time values are computed from it).
pub const DEFAULT_TODAY: &str = "20261201";

impl Default for Market {
    fn default() -> Self {
        let stocks = vec![
            Stock {
                symbol: "AAPL".into(),
                con_id: 265598,
                sec_type: "STK".into(),
                exchange: "NASDAQ".into(),
                bid: 199.95,
                ask: 200.05,
                last: 200.0,
                close: 198.5,
                bid_size: 300.0,
                ask_size: 400.0,
                volume: 45_000_000.0,
            },
            Stock {
                symbol: "SPX".into(),
                con_id: 416904,
                sec_type: "IND".into(),
                exchange: "CBOE".into(),
                bid: 0.0,
                ask: 0.0,
                last: 6000.0,
                close: 5990.0,
                bid_size: 0.0,
                ask_size: 0.0,
                volume: 0.0,
            },
        ];
        let mut options = Vec::new();
        let mut con_id = 700_000_001;
        for expiry in ["20261218", "20270115"] {
            for strike in [190.0, 200.0, 210.0] {
                for right in ['C', 'P'] {
                    options.push(priced_option(
                        con_id,
                        "AAPL",
                        "AAPL",
                        expiry,
                        strike,
                        right,
                        200.0,
                        0.25,
                        DEFAULT_TODAY,
                    ));
                    con_id += 1;
                }
            }
        }
        for (class, expiry) in [("SPXW", "20261204"), ("SPX", "20261218")] {
            for strike in [5950.0, 6000.0, 6050.0] {
                for right in ['C', 'P'] {
                    options.push(priced_option(
                        con_id,
                        "SPX",
                        class,
                        expiry,
                        strike,
                        right,
                        6000.0,
                        0.16,
                        DEFAULT_TODAY,
                    ));
                    con_id += 1;
                }
            }
        }
        let futures = vec![
            Fut {
                con_id: 730_283_085,
                symbol: "MES".into(),
                local_symbol: "MESZ6".into(),
                month: "202612".into(),
                last_trade_date: "20261218".into(),
                multiplier: 5.0,
                exchange: "CME".into(),
                bid: 6010.25,
                ask: 6010.5,
                last: 6010.25,
            },
            Fut {
                con_id: 750_150_193,
                symbol: "MES".into(),
                local_symbol: "MESH7".into(),
                month: "202703".into(),
                last_trade_date: "20270319".into(),
                multiplier: 5.0,
                exchange: "CME".into(),
                bid: 6060.0,
                ask: 6060.25,
                last: 6060.0,
            },
        ];
        let mut bars = HashMap::new();
        let days = weekdays_ending(DEFAULT_TODAY, 60);
        let trades: Vec<Bar> = days
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let c = 180.0 + i as f64 * 0.35 + ((i * 7 % 5) as f64 - 2.0) * 0.8;
                Bar {
                    date: d.clone(),
                    open: c - 0.6,
                    high: c + 1.4,
                    low: c - 1.5,
                    close: c,
                    volume: 40_000_000.0 + (i * 137_000) as f64,
                }
            })
            .collect();
        let ivs: Vec<Bar> = days
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let v = 0.24 + ((i * 3 % 7) as f64 - 3.0) * 0.004;
                Bar {
                    date: d.clone(),
                    open: v,
                    high: v + 0.01,
                    low: v - 0.01,
                    close: v,
                    volume: 0.0,
                }
            })
            .collect();
        let spx: Vec<Bar> = days
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let c = 5800.0 + i as f64 * 3.2;
                Bar {
                    date: d.clone(),
                    open: c - 5.0,
                    high: c + 12.0,
                    low: c - 14.0,
                    close: c,
                    volume: 0.0,
                }
            })
            .collect();
        bars.insert(("AAPL".into(), "TRADES".into()), trades);
        bars.insert(("AAPL".into(), "OPTION_IMPLIED_VOLATILITY".into()), ivs);
        bars.insert(("SPX".into(), "TRADES".into()), spx);
        Market {
            server_version: 226,
            accounts: vec!["DU1234567".into()],
            next_order_id: 9000,
            stocks,
            options,
            futures,
            bars,
            fill_at: 0.0,
            commission_per_contract: 0.65,
            cash: 100_000.0,
            snapshot_end_delay: Duration::from_millis(20),
            delayed: false,
        }
    }
}

impl Market {
    pub fn option(&self, symbol: &str, expiry: &str, strike: f64, right: char) -> Option<&Opt> {
        self.options.iter().find(|o| {
            o.symbol == symbol
                && o.expiry == expiry
                && (o.strike - strike).abs() < 1e-9
                && o.right == right
        })
    }
    pub fn stock(&self, symbol: &str) -> Option<&Stock> {
        self.stocks.iter().find(|s| s.symbol == symbol)
    }
}

/// The `n` weekdays up to and including `last` (YYYYMMDD), oldest first.
pub fn weekdays_ending(last: &str, n: usize) -> Vec<String> {
    use chrono::{Datelike, NaiveDate, Weekday};
    let mut d = NaiveDate::parse_from_str(last, "%Y%m%d").expect("YYYYMMDD");
    let mut out = Vec::new();
    while out.len() < n {
        if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            out.push(d.format("%Y%m%d").to_string());
        }
        d = d.pred_opt().expect("date");
    }
    out.reverse();
    out
}

fn norm_cdf(x: f64) -> f64 {
    0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}
fn norm_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// An option priced with Black-Scholes (r = 4 %, no dividend) at `und`/`iv` on `today`:
/// bid/ask around the model price (spread 2 % of the price, at least 0.05, ticks of 0.05),
/// greeks in IB's conventions (vega per vol point, theta per calendar day).
#[allow(clippy::too_many_arguments)]
pub fn priced_option(
    con_id: i32,
    symbol: &str,
    trading_class: &str,
    expiry: &str,
    strike: f64,
    right: char,
    und: f64,
    iv: f64,
    today: &str,
) -> Opt {
    use chrono::NaiveDate;
    let e = NaiveDate::parse_from_str(expiry, "%Y%m%d").expect("expiry YYYYMMDD");
    let t0 = NaiveDate::parse_from_str(today, "%Y%m%d").expect("today YYYYMMDD");
    let t = ((e - t0).num_days().max(1) as f64) / 365.0;
    let r = 0.04;
    let sq = t.sqrt();
    let d1 = ((und / strike).ln() + (r + iv * iv / 2.0) * t) / (iv * sq);
    let d2 = d1 - iv * sq;
    let df = (-r * t).exp();
    let (price, delta, theta) = if right == 'C' {
        let p = und * norm_cdf(d1) - strike * df * norm_cdf(d2);
        let th = -und * norm_pdf(d1) * iv / (2.0 * sq) - r * strike * df * norm_cdf(d2);
        (p, norm_cdf(d1), th / 365.0)
    } else {
        let p = strike * df * norm_cdf(-d2) - und * norm_cdf(-d1);
        let th = -und * norm_pdf(d1) * iv / (2.0 * sq) + r * strike * df * norm_cdf(-d2);
        (p, norm_cdf(d1) - 1.0, th / 365.0)
    };
    let gamma = norm_pdf(d1) / (und * iv * sq);
    let vega = und * norm_pdf(d1) * sq / 100.0;
    let half = (price * 0.01).max(0.05);
    let tick = |x: f64| (x / 0.05).round() * 0.05;
    let bid = tick((price - half).max(0.05));
    let ask = tick(price + half).max(bid + 0.05);
    Opt {
        con_id,
        symbol: symbol.into(),
        trading_class: trading_class.into(),
        exchange: "SMART".into(),
        expiry: expiry.into(),
        strike,
        right,
        multiplier: 100.0,
        bid,
        ask,
        last: tick(price),
        bid_size: 10.0,
        ask_size: 12.0,
        volume: 1500.0,
        iv,
        delta,
        gamma,
        vega,
        theta,
        und_price: und,
    }
}

// ---------------------------------------------------------------------------------------------
// Faults, stats, venue state.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer requests with wire id `msg` (e.g. 201 market data, 203 place order, 209 contract
    /// details, 220 historical) whose contract symbol equals `symbol` — or whose local symbol
    /// or order ref contains it — with error `code`/`text` (at the request id, or the order id
    /// for 203/204, or -1) instead of the data, `times` times (`usize::MAX` = always).
    /// Advisory codes (10167, 10089–10091, 2100–2199, 165, 399) are sent and then the data
    /// follows, as TWS does.
    Error {
        msg: i32,
        symbol: Option<String>,
        code: i32,
        text: String,
        times: usize,
    },
    /// Send the data of requests with wire id `msg` but never their end marker
    /// (ContractDataEnd, SecDefOptParameterEnd, TickSnapshotEnd, HistoricalDataEnd,
    /// PositionEnd, AccountSummaryEnd, OpenOrderEnd, CompletedOrdersEnd, ExecutionDetailsEnd).
    NoEnd { msg: i32 },
    /// On the next new PlaceOrder: record the order at the venue (it fills per `fill_at`, the
    /// fills are visible later through executions / completed orders / positions), then close
    /// the socket before answering anything. One-shot.
    CloseAfterOrderReceived,
    /// Answer `requests` more requests (venue-wide, any message after StartApi counts; the
    /// handshake does not), then close the socket of the connection
    /// that sends the next one without answering it, and refuse (accept, then close before the
    /// handshake ack) the next `refuse_connections` connection attempts. One-shot.
    CloseAfter {
        requests: usize,
        refuse_connections: usize,
    },
    /// Answer StartApi with error 326 (client id in use) and close, while the fault is present.
    ClientIdInUse,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// TCP connections accepted (refused ones included).
    pub connections: usize,
    /// Max client→server messages in any sliding 1-second window, on one connection.
    pub max_msgs_per_sec: usize,
    /// Max concurrent market-data lines: snapshots not yet ended + streams not cancelled.
    pub max_lines: usize,
    /// > 50 msg/s, > 100 lines, historical pacing violations.
    pub violations: Vec<String>,
    /// NEW orders (not modifications) placed per orderRef (Order tag 28), counted on receipt.
    pub placed_refs: HashMap<String, usize>,
    /// Requests by wire message id (handshake StartApi included).
    pub requests: HashMap<i32, usize>,
}

/// A request the fake did not implement (or could not decode).
#[derive(Debug, Clone)]
pub struct Logged {
    pub connection: usize,
    pub msg: i32,
    pub note: String,
}

#[derive(Debug, Clone)]
pub struct FakeOrder {
    pub order_id: i32,
    pub client_id: i32,
    pub perm_id: i64,
    /// The contract as the client sent it (a BAG keeps its legs), with con_id filled in when resolved.
    pub contract: proto::Contract,
    /// The order as the client last sent it (echoed in OpenOrder).
    pub order: proto::Order,
    /// "BUY" / "SELL"
    pub action: String,
    pub quantity: f64,
    pub order_type: String,
    pub limit: Option<f64>,
    pub order_ref: String,
    /// PreSubmitted, Submitted, Filled, Cancelled
    pub status: String,
    pub filled: f64,
    pub avg_fill_price: f64,
    pub commission: f64,
    pub completed_time: String,
}

impl FakeOrder {
    pub fn is_working(&self) -> bool {
        matches!(self.status.as_str(), "PreSubmitted" | "Submitted")
    }
}

#[derive(Debug, Clone)]
pub struct FakeExecution {
    pub exec_id: String,
    pub order_id: i32,
    pub client_id: i32,
    pub perm_id: i64,
    /// The leg's contract for a combo leg, the BAG for the combo's own row.
    pub contract: proto::Contract,
    /// "BOT" / "SLD"
    pub side: String,
    pub shares: f64,
    pub price: f64,
    pub time: String,
    pub order_ref: String,
    pub commission: f64,
    pub account: String,
    pub exchange: String,
}

#[derive(Debug, Clone)]
pub struct FakePosition {
    pub contract: proto::Contract,
    /// Signed quantity; 0 once closed (kept, like TWS does for the session).
    pub quantity: f64,
    /// Average cost per contract × multiplier (IB convention, §2.8).
    pub avg_cost: f64,
    pub multiplier: f64,
}

pub struct Venue {
    pub market: Market,
    pub orders: BTreeMap<i32, FakeOrder>,
    pub executions: Vec<FakeExecution>,
    pub positions: BTreeMap<i32, FakePosition>,
    pub cash: f64,
    pub faults: Vec<Fault>,
    pub log: Vec<Logged>,
    pub stats: Stats,
    next_valid_id: i32,
    next_perm_id: i64,
    exec_seq: u32,
    active_lines: usize,
    refuse_connections: usize,
    /// Historical requests by identity, for the 15-second identical-request rule (§6).
    hist_recent: Vec<(String, Instant)>,
    /// Open connections per client id (who receives the frames of a resting order's fill).
    live_clients: HashMap<i32, usize>,
}

impl Venue {
    fn new(market: Market) -> Venue {
        Venue {
            cash: market.cash,
            next_valid_id: market.next_order_id,
            market,
            orders: BTreeMap::new(),
            executions: Vec::new(),
            positions: BTreeMap::new(),
            faults: Vec::new(),
            log: Vec::new(),
            stats: Stats::default(),
            next_perm_id: 1_870_000_001,
            exec_seq: 0x6540_a1c3,
            active_lines: 0,
            refuse_connections: 0,
            hist_recent: Vec::new(),
            live_clients: HashMap::new(),
        }
    }

    /// Market-data lines currently held (snapshots not yet ended + streams not cancelled).
    pub fn active_lines(&self) -> usize {
        self.active_lines
    }

    /// The next order id the venue would hand out.
    pub fn next_valid_id(&self) -> i32 {
        self.next_valid_id
    }

    /// Orders placed with this order ref (any status).
    pub fn orders_with_ref(&self, order_ref: &str) -> Vec<&FakeOrder> {
        self.orders
            .values()
            .filter(|o| o.order_ref == order_ref)
            .collect()
    }

    pub fn position(&self, con_id: i32) -> f64 {
        self.positions
            .get(&con_id)
            .map(|p| p.quantity)
            .unwrap_or(0.0)
    }

    fn open_line(&mut self) -> bool {
        if self.active_lines >= MAX_LINES {
            let v = format!("market-data lines: request beyond {MAX_LINES} concurrent lines");
            self.stats.violations.push(v);
            return false;
        }
        self.active_lines += 1;
        self.stats.max_lines = self.stats.max_lines.max(self.active_lines);
        true
    }

    fn close_line(&mut self) {
        self.active_lines = self.active_lines.saturating_sub(1);
    }

    /// Checks the Error faults for a request; returns the error to send, decrementing `times`.
    fn take_error_fault(&mut self, msg: i32, hay: &Haystack) -> Option<(i32, String)> {
        for i in 0..self.faults.len() {
            if let Fault::Error {
                msg: m,
                symbol,
                code,
                text,
                times,
            } = &mut self.faults[i]
            {
                if *m != msg || *times == 0 {
                    continue;
                }
                if let Some(s) = symbol {
                    if !hay.matches(s) {
                        continue;
                    }
                }
                let out = (*code, text.clone());
                if *times != usize::MAX {
                    *times -= 1;
                }
                if *times == 0 {
                    self.faults.remove(i);
                }
                return Some(out);
            }
        }
        None
    }

    fn no_end(&self, msg: i32) -> bool {
        self.faults
            .iter()
            .any(|f| matches!(f, Fault::NoEnd { msg: m } if *m == msg))
    }

    fn take_fault(&mut self, pred: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let i = self.faults.iter().position(pred)?;
        Some(self.faults.remove(i))
    }

    // --- instruments ---------------------------------------------------------------------

    fn instruments(&self) -> Vec<Inst> {
        let m = &self.market;
        let mut out = Vec::new();
        for s in &m.stocks {
            let is_index = s.sec_type == "IND";
            out.push(Inst {
                contract: proto::Contract {
                    con_id: Some(s.con_id),
                    symbol: Some(s.symbol.clone()),
                    sec_type: Some(s.sec_type.clone()),
                    exchange: Some(if is_index {
                        s.exchange.clone()
                    } else {
                        "SMART".into()
                    }),
                    primary_exch: Some(s.exchange.clone()),
                    currency: Some("USD".into()),
                    local_symbol: Some(s.symbol.clone()),
                    trading_class: Some(s.symbol.clone()),
                    ..Default::default()
                },
                bid: s.bid,
                ask: s.ask,
                last: s.last,
                close: s.close,
                bid_size: s.bid_size,
                ask_size: s.ask_size,
                volume: s.volume,
                multiplier: 1.0,
                greeks: None,
                under: None,
                month: String::new(),
            });
        }
        for o in &m.options {
            let under = m
                .stocks
                .iter()
                .find(|s| s.symbol == o.symbol)
                .map(|s| (s.con_id, s.sec_type.clone()));
            out.push(Inst {
                contract: proto::Contract {
                    con_id: Some(o.con_id),
                    symbol: Some(o.symbol.clone()),
                    sec_type: Some("OPT".into()),
                    last_trade_date_or_contract_month: Some(o.expiry.clone()),
                    strike: Some(o.strike),
                    right: Some(o.right.to_string()),
                    multiplier: Some(o.multiplier),
                    exchange: Some(o.exchange.clone()),
                    currency: Some("USD".into()),
                    local_symbol: Some(occ_symbol(&o.trading_class, &o.expiry, o.right, o.strike)),
                    trading_class: Some(o.trading_class.clone()),
                    last_trade_date: Some(o.expiry.clone()),
                    ..Default::default()
                },
                bid: o.bid,
                ask: o.ask,
                last: o.last,
                close: o.last,
                bid_size: o.bid_size,
                ask_size: o.ask_size,
                volume: o.volume,
                multiplier: o.multiplier,
                greeks: Some(o.clone()),
                under,
                month: o.expiry[..6].to_string(),
            });
        }
        for f in &m.futures {
            out.push(Inst {
                contract: proto::Contract {
                    con_id: Some(f.con_id),
                    symbol: Some(f.symbol.clone()),
                    sec_type: Some("FUT".into()),
                    last_trade_date_or_contract_month: Some(f.last_trade_date.clone()),
                    multiplier: Some(f.multiplier),
                    exchange: Some(f.exchange.clone()),
                    currency: Some("USD".into()),
                    local_symbol: Some(f.local_symbol.clone()),
                    trading_class: Some(f.symbol.clone()),
                    last_trade_date: Some(f.last_trade_date.clone()),
                    ..Default::default()
                },
                bid: f.bid,
                ask: f.ask,
                last: f.last,
                close: f.last,
                bid_size: 20.0,
                ask_size: 25.0,
                volume: 120_000.0,
                multiplier: f.multiplier,
                greeks: None,
                under: None,
                month: f.month.clone(),
            });
        }
        out
    }

    /// Instruments matching a request contract (§2.1): by con_id when given, else by
    /// sec_type + symbol and whichever of expiry/month, strike, right, trading class, local
    /// symbol and multiplier the request sets.
    fn matching(&self, c: &proto::Contract) -> Vec<Inst> {
        let con_id = c.con_id.unwrap_or(0);
        let sec_type = c.sec_type.clone().unwrap_or_default();
        let symbol = c.symbol.clone().unwrap_or_default();
        let expiry = c
            .last_trade_date_or_contract_month
            .clone()
            .unwrap_or_default();
        let strike = c.strike.unwrap_or(0.0);
        let right = c.right.clone().unwrap_or_default().to_ascii_uppercase();
        let class = c.trading_class.clone().unwrap_or_default();
        let local = c.local_symbol.clone().unwrap_or_default();
        let mult = c.multiplier.unwrap_or(0.0);
        self.instruments()
            .into_iter()
            .filter(|i| {
                let k = &i.contract;
                if con_id != 0 {
                    return k.con_id == Some(con_id);
                }
                if !sec_type.is_empty() && k.sec_type.as_deref() != Some(sec_type.as_str()) {
                    return false;
                }
                if k.symbol.as_deref() != Some(symbol.as_str()) {
                    return false;
                }
                let k_expiry = k
                    .last_trade_date_or_contract_month
                    .clone()
                    .unwrap_or_default();
                if !(expiry.is_empty() || k_expiry.starts_with(&expiry) || i.month == expiry) {
                    return false;
                }
                if strike != 0.0 && (k.strike.unwrap_or(0.0) - strike).abs() > 1e-9 {
                    return false;
                }
                if !right.is_empty()
                    && k.right.as_deref().map(|r| right.starts_with(r)) != Some(true)
                {
                    return false;
                }
                if !class.is_empty() && k.trading_class.as_deref() != Some(class.as_str()) {
                    return false;
                }
                if !local.is_empty() && k.local_symbol.as_deref() != Some(local.as_str()) {
                    return false;
                }
                if mult != 0.0 && (i.multiplier - mult).abs() > 1e-9 {
                    return false;
                }
                true
            })
            .collect()
    }

    /// Bid/ask/multiplier of the contract an order names (single instrument).
    fn resolve_one(&self, c: &proto::Contract) -> Option<Inst> {
        let mut m = self.matching(c);
        if m.len() == 1 {
            m.pop()
        } else {
            None
        }
    }

    // --- orders ------------------------------------------------------------------------------

    /// The (bid, ask) of what an order trades: a single instrument, or for a BAG the net of its
    /// legs (BUY legs +ratio·price, SELL legs −ratio·price): combo bid = Σ BUY r·bid − Σ SELL
    /// r·ask, combo ask = Σ BUY r·ask − Σ SELL r·bid, so buying the combo pays the net.
    fn order_quote(&self, c: &proto::Contract) -> Option<(f64, f64)> {
        if c.sec_type.as_deref() == Some("BAG") {
            if c.combo_legs.is_empty() {
                return None;
            }
            let (mut bid, mut ask) = (0.0, 0.0);
            for leg in &c.combo_legs {
                let i = self.resolve_one(&proto::Contract {
                    con_id: leg.con_id,
                    ..Default::default()
                })?;
                let r = leg.ratio.unwrap_or(1) as f64;
                if leg.action.as_deref() == Some("BUY") {
                    bid += r * i.bid;
                    ask += r * i.ask;
                } else {
                    bid -= r * i.ask;
                    ask -= r * i.bid;
                }
            }
            Some((bid, ask))
        } else {
            let i = self.resolve_one(c)?;
            Some((i.bid, i.ask))
        }
    }

    /// The price a working order fills at now, if it does (see `Market::fill_at`).
    fn fill_price(&self, o: &FakeOrder) -> Option<f64> {
        let (bid, ask) = self.order_quote(&o.contract)?;
        let buy = o.action == "BUY";
        let natural = if buy { ask } else { bid };
        if o.order_type == "MKT" {
            return Some(natural);
        }
        let limit = o.limit?;
        let f = self.market.fill_at;
        if !f.is_finite() {
            return None;
        }
        let mid = (bid + ask) / 2.0;
        let eps = 1e-9;
        if buy {
            let threshold = mid + f * (ask - mid);
            (limit + eps >= threshold).then(|| limit.min(ask))
        } else {
            let threshold = mid - f * (mid - bid);
            (limit - eps <= threshold).then(|| limit.max(bid))
        }
    }

    /// Fills a working order completely at `price`, recording executions (one per leg + one for
    /// the BAG itself, commission 0, for a combo), positions and cash. Returns the executions.
    fn execute(&mut self, order_id: i32, price: f64) -> Vec<FakeExecution> {
        let o = self.orders[&order_id].clone();
        let buy = o.action == "BUY";
        let account = self.market.accounts.first().cloned().unwrap_or_default();
        let time = venue_time();
        let rate = self.market.commission_per_contract;
        let mut execs = Vec::new();
        let mut fills: Vec<(proto::Contract, bool, f64, f64, f64)> = Vec::new(); // contract, buy, qty, price, mult
        if o.contract.sec_type.as_deref() == Some("BAG") {
            // Leg prices: each at its mid, the first leg absorbing the difference so that the
            // signed sum Σ ±r·p equals the combo's fill price.
            let legs: Vec<(Inst, f64, f64)> = o
                .contract
                .combo_legs
                .iter()
                .filter_map(|l| {
                    let i = self.resolve_one(&proto::Contract {
                        con_id: l.con_id,
                        ..Default::default()
                    })?;
                    let sign = if l.action.as_deref() == Some("BUY") {
                        1.0
                    } else {
                        -1.0
                    };
                    Some((i, sign, l.ratio.unwrap_or(1) as f64))
                })
                .collect();
            let mut prices: Vec<f64> = legs.iter().map(|(i, _, _)| (i.bid + i.ask) / 2.0).collect();
            let net_mid: f64 = legs
                .iter()
                .zip(&prices)
                .map(|((_, s, r), p)| s * r * p)
                .sum();
            if let Some((_, s, r)) = legs.first() {
                prices[0] += (price - net_mid) / (s * r);
            }
            for ((inst, sign, ratio), p) in legs.iter().zip(prices) {
                let leg_buy = (*sign > 0.0) == buy;
                fills.push((
                    inst.contract.clone(),
                    leg_buy,
                    ratio * o.quantity,
                    p,
                    inst.multiplier,
                ));
            }
        } else {
            let inst = self.resolve_one(&o.contract);
            let (contract, mult) = match inst {
                Some(i) => (i.contract, i.multiplier),
                None => (o.contract.clone(), o.contract.multiplier.unwrap_or(1.0)),
            };
            fills.push((contract, buy, o.quantity, price, mult));
        }
        let mut total_commission = 0.0;
        for (contract, leg_buy, qty, p, mult) in fills {
            let commission = rate * qty;
            total_commission += commission;
            let exec = FakeExecution {
                exec_id: self.new_exec_id(),
                order_id,
                client_id: o.client_id,
                perm_id: o.perm_id,
                contract: contract.clone(),
                side: if leg_buy { "BOT" } else { "SLD" }.into(),
                shares: qty,
                price: p,
                time: time.clone(),
                order_ref: o.order_ref.clone(),
                commission,
                account: account.clone(),
                exchange: contract.exchange.clone().unwrap_or_else(|| "SMART".into()),
            };
            let signed = if leg_buy { qty } else { -qty };
            self.cash -= signed * p * mult + commission;
            let con_id = contract.con_id.unwrap_or(0);
            let pos = self.positions.entry(con_id).or_insert(FakePosition {
                contract: contract.clone(),
                quantity: 0.0,
                avg_cost: 0.0,
                multiplier: mult,
            });
            let cost = p * mult;
            if pos.quantity == 0.0
                || pos.quantity.signum() != signed.signum() && signed.abs() > pos.quantity.abs()
            {
                // Opening, or flipping through zero: the cost is this fill's.
                pos.avg_cost = cost;
            } else if pos.quantity.signum() == signed.signum() {
                pos.avg_cost =
                    (pos.avg_cost * pos.quantity.abs() + cost * qty) / (pos.quantity.abs() + qty);
            }
            pos.quantity += signed;
            execs.push(exec);
        }
        if o.contract.sec_type.as_deref() == Some("BAG") {
            execs.push(FakeExecution {
                exec_id: self.new_exec_id(),
                order_id,
                client_id: o.client_id,
                perm_id: o.perm_id,
                contract: o.contract.clone(),
                side: if buy { "BOT" } else { "SLD" }.into(),
                shares: o.quantity,
                price,
                time: time.clone(),
                order_ref: o.order_ref.clone(),
                commission: 0.0,
                account,
                exchange: "SMART".into(),
            });
        }
        let ord = self.orders.get_mut(&order_id).expect("order");
        ord.status = "Filled".into();
        ord.filled = o.quantity;
        ord.avg_fill_price = price;
        ord.commission = total_commission;
        ord.completed_time = time;
        self.executions.extend(execs.iter().cloned());
        execs
    }

    fn new_exec_id(&mut self) -> String {
        self.exec_seq = self.exec_seq.wrapping_add(1);
        format!("0000e1b2.{:08x}.01.01", self.exec_seq)
    }

    /// NetLiquidation: cash + positions marked at the mid (last when there is no quote).
    fn net_liquidation(&self) -> f64 {
        let insts = self.instruments();
        let mut v = self.cash;
        for (con_id, p) in &self.positions {
            if let Some(i) = insts.iter().find(|i| i.contract.con_id == Some(*con_id)) {
                let mark = if i.bid > 0.0 && i.ask > 0.0 {
                    (i.bid + i.ask) / 2.0
                } else {
                    i.last
                };
                v += p.quantity * mark * p.multiplier;
            }
        }
        v
    }
}

/// One tradable instrument, flattened from the market for matching and quoting.
#[derive(Debug, Clone)]
struct Inst {
    contract: proto::Contract,
    bid: f64,
    ask: f64,
    last: f64,
    close: f64,
    bid_size: f64,
    ask_size: f64,
    volume: f64,
    multiplier: f64,
    greeks: Option<Opt>,
    /// (con_id, sec_type) of an option's underlying.
    under: Option<(i32, String)>,
    /// YYYYMM
    month: String,
}

/// What a fault's `symbol` is matched against.
#[derive(Default)]
struct Haystack {
    symbol: String,
    local_symbol: String,
    order_ref: String,
}

impl Haystack {
    fn of(c: Option<&proto::Contract>) -> Haystack {
        Haystack {
            symbol: c.and_then(|c| c.symbol.clone()).unwrap_or_default(),
            local_symbol: c.and_then(|c| c.local_symbol.clone()).unwrap_or_default(),
            order_ref: String::new(),
        }
    }
    fn matches(&self, s: &str) -> bool {
        self.symbol == s
            || (!self.local_symbol.is_empty() && self.local_symbol.contains(s))
            || (!self.order_ref.is_empty() && self.order_ref.contains(s))
    }
}

/// OCC-style local symbol, e.g. "AAPL  261218C00200000".
fn occ_symbol(class: &str, expiry: &str, right: char, strike: f64) -> String {
    format!(
        "{:<6}{}{}{:08}",
        class,
        &expiry[2..],
        right,
        (strike * 1000.0).round() as i64
    )
}

/// "YYYYMMDD HH:MM:SS <zone>" in New York time, as TWS stamps executions and the ack.
fn venue_time() -> String {
    let now = chrono::Utc::now().with_timezone(&chrono_tz::America::New_York);
    now.format("%Y%m%d %H:%M:%S %Z").to_string()
}

/// Decimal quantities are strings on the wire (§1): "1", "0.5", "-2".
fn dec(x: f64) -> String {
    format!("{x}")
}

/// Terminal vs advisory errors (§6): advisories are sent and the data follows.
fn is_advisory(code: i32) -> bool {
    matches!(code, 10167 | 10089 | 10090 | 10091 | 165 | 399 | 2188) || (2100..2200).contains(&code)
}

// ---------------------------------------------------------------------------------------------
// The server.
// ---------------------------------------------------------------------------------------------

pub struct FakeIb {
    port: u16,
    venue: Arc<Mutex<Venue>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FakeIb {
    pub fn start(market: Market) -> FakeIb {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let venue = Arc::new(Mutex::new(Venue::new(market)));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, s) = (venue.clone(), stop.clone());
        let accept = std::thread::Builder::new()
            .name(format!("fake-ib-accept-{port}"))
            .spawn(move || accept_loop(listener, v, s))
            .expect("spawn accept thread");
        FakeIb {
            port,
            venue,
            stop,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The venue's state. Do not hold the guard across a client call: connection threads
    /// need the lock to answer.
    pub fn venue(&self) -> MutexGuard<'_, Venue> {
        lock(&self.venue)
    }
}

impl Drop for FakeIb {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn lock(v: &Mutex<Venue>) -> MutexGuard<'_, Venue> {
    v.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: TcpListener, venue: Arc<Mutex<Venue>>, stop: Arc<AtomicBool>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut conn_no = 0usize;
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                conn_no += 1;
                let refuse = {
                    let mut v = lock(&venue);
                    v.stats.connections += 1;
                    if v.refuse_connections > 0 {
                        v.refuse_connections -= 1;
                        true
                    } else {
                        false
                    }
                };
                if refuse {
                    let _ = stream.shutdown(Shutdown::Both);
                    continue;
                }
                let (v, s) = (venue.clone(), stop.clone());
                let n = conn_no;
                if let Ok(h) = std::thread::Builder::new()
                    .name(format!("fake-ib-conn-{n}"))
                    .spawn(move || {
                        let mut c = Conn::new(n, stream, v, s);
                        c.run();
                        c.release();
                    })
                {
                    workers.push(h);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
        workers.retain(|h| !h.is_finished());
    }
    for h in workers {
        let _ = h.join();
    }
}

/// Connection-local state.
struct Conn {
    no: usize,
    stream: TcpStream,
    venue: Arc<Mutex<Venue>>,
    stop: Arc<AtomicBool>,
    reader: FrameReader,
    client_id: i32,
    /// Frames to write once the venue lock is released.
    out: Vec<u8>,
    /// 1 live, 3 delayed, … as last requested by MarketDataTypeRequest (259).
    market_data_type: i32,
    /// Market-data lines held by this connection: req_id → is snapshot.
    lines: HashMap<i32, bool>,
    /// Snapshot ends due: (when, req_id, send the end frame).
    timers: Vec<(Instant, i32, bool)>,
    /// Arrival times of this connection's messages in the last second.
    window: VecDeque<Instant>,
    /// Counted in `Venue::live_clients` (after a successful StartApi).
    live: bool,
}

enum Flow {
    Continue,
    Close,
}

impl Conn {
    fn new(no: usize, stream: TcpStream, venue: Arc<Mutex<Venue>>, stop: Arc<AtomicBool>) -> Conn {
        let _ = stream.set_nodelay(true);
        // A short read timeout is the idle tick (snapshot ends, resting-order sweep, stop flag);
        // the write timeout keeps a client that stopped reading from wedging shutdown.
        let _ = stream.set_read_timeout(Some(Duration::from_millis(5)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        Conn {
            no,
            stream,
            venue,
            stop,
            reader: FrameReader::new(),
            client_id: 0,
            out: Vec::new(),
            market_data_type: 1,
            lines: HashMap::new(),
            timers: Vec::new(),
            window: VecDeque::new(),
            live: false,
        }
    }

    /// Reads more bytes; `Ok(false)` on timeout, `Err` on EOF / error / stop.
    fn fill(&mut self) -> Result<bool, ()> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(());
        }
        let mut buf = [0u8; 16384];
        match self.stream.read(&mut buf) {
            Ok(0) => Err(()),
            Ok(n) => {
                self.reader.push(&buf[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(_) => Err(()),
        }
    }

    fn flush(&mut self) -> Result<(), ()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        self.stream.write_all(&out).map_err(|_| ())
    }

    fn send<M: Message>(&mut self, wire_id: i32, msg: &M) {
        self.out.extend_from_slice(&encode_frame(wire_id, msg));
    }

    fn error(&mut self, id: i32, code: i32, text: &str) {
        let e = proto::ErrorMessage {
            id: Some(id),
            error_time: Some(chrono::Utc::now().timestamp_millis()),
            error_code: Some(code),
            error_msg: Some(text.to_string()),
            advanced_order_reject_json: None,
        };
        self.send(wire::ERROR, &e);
    }

    fn run(&mut self) {
        if self.handshake().is_err() {
            let _ = self.flush();
            let _ = self.stream.shutdown(Shutdown::Both);
            return;
        }
        loop {
            // Drain every complete frame, then do timed work, then read more.
            loop {
                match self.reader.next_frame() {
                    Ok(Some(body)) => {
                        let flow = self.on_frame(&body);
                        if self.flush().is_err() {
                            return;
                        }
                        if let Flow::Close = flow {
                            let _ = self.stream.shutdown(Shutdown::Both);
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        // A desync: TWS drops the connection.
                        let _ = self.stream.shutdown(Shutdown::Both);
                        return;
                    }
                }
            }
            self.on_timers();
            self.sweep();
            if self.flush().is_err() {
                return;
            }
            if self.fill().is_err() {
                let _ = self.stream.shutdown(Shutdown::Both);
                return;
            }
        }
    }

    /// Releases the lines this connection still held.
    fn release(&mut self) {
        let mut v = lock(&self.venue);
        for _ in self.lines.drain() {
            v.close_line();
        }
        if self.live {
            if let Some(n) = v.live_clients.get_mut(&self.client_id) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Re-evaluates resting orders against the current market (a test may move prices or
    /// `fill_at` through `FakeIb::venue()`): this connection fills its own client's orders and
    /// sends the fill sequence; orders of clients with no open connection fill silently (their
    /// fills show up later through executions / completed orders / positions).
    fn sweep(&mut self) {
        let mine = {
            let mut v = lock(&self.venue);
            let due: Vec<(i32, bool, f64)> = v
                .orders
                .values()
                .filter(|o| o.is_working())
                .filter_map(|o| {
                    let own = o.client_id == self.client_id;
                    let orphan = v.live_clients.get(&o.client_id).copied().unwrap_or(0) == 0;
                    if !(own || orphan) {
                        return None;
                    }
                    v.fill_price(o).map(|p| (o.order_id, own, p))
                })
                .collect();
            let mut mine = Vec::new();
            for (order_id, own, price) in due {
                let execs = v.execute(order_id, price);
                if own {
                    mine.push((order_id, execs));
                }
            }
            mine
        };
        for (order_id, execs) in mine {
            self.send_fill(order_id, &execs);
        }
    }

    /// §1: `API\0`, a length-prefixed "v213..226", the text ack, StartApi (271), then
    /// NextValidId + ManagedAccounts (+ the 2104/2106/2158 farm notices real TWS sends).
    fn handshake(&mut self) -> Result<(), ()> {
        while !self.reader.take_magic().map_err(|_| ())? {
            self.fill()?;
        }
        let _versions = loop {
            if let Some(b) = self.reader.next_frame().map_err(|_| ())? {
                break String::from_utf8_lossy(&b).into_owned();
            }
            self.fill()?;
        };
        let sv = lock(&self.venue).market.server_version;
        let now = chrono::Utc::now().with_timezone(&chrono_tz::America::New_York);
        // The zone must be one ibapi knows (EST/EDT are aliases, §1).
        let ack = format!("{sv}\0{}\0", now.format("%Y%m%d %H:%M:%S %Z"));
        self.out.extend_from_slice(&frame_bytes(ack.as_bytes()));
        self.flush()?;
        let body = loop {
            if let Some(b) = self.reader.next_frame().map_err(|_| ())? {
                break b;
            }
            self.fill()?;
        };
        self.count(wire::START_API);
        let (_, req) = decode_request(&body).map_err(|_| ())?;
        let Request::StartApi(start) = req else {
            return Err(());
        };
        self.client_id = start.client_id.unwrap_or(0);
        let (in_use, next_id, accounts) = {
            let v = lock(&self.venue);
            (
                v.faults.iter().any(|f| matches!(f, Fault::ClientIdInUse)),
                v.next_valid_id,
                v.market.accounts.join(","),
            )
        };
        if in_use {
            self.error(-1, 326, "Unable to connect as the client id is already in use. Retry with a unique client id.");
            return Err(());
        }
        *lock(&self.venue)
            .live_clients
            .entry(self.client_id)
            .or_insert(0) += 1;
        self.live = true;
        self.send(
            wire::NEXT_VALID_ID,
            &proto::NextValidId {
                order_id: Some(next_id),
            },
        );
        self.send(
            wire::MANAGED_ACCOUNTS,
            &proto::ManagedAccounts {
                accounts_list: Some(accounts),
            },
        );
        self.error(-1, 2104, "Market data farm connection is OK:usfarm");
        self.error(-1, 2106, "HMDS data farm connection is OK:ushmds");
        self.error(-1, 2158, "Sec-def data farm connection is OK:secdefnj");
        self.flush()
    }

    /// Counts a client message for the stats and the 50 msg/s rule (§6).
    fn count(&mut self, wire_id: i32) {
        let now = Instant::now();
        self.window.push_back(now);
        while let Some(t) = self.window.front() {
            if now.duration_since(*t) > Duration::from_secs(1) {
                self.window.pop_front();
            } else {
                break;
            }
        }
        let n = self.window.len();
        let mut v = lock(&self.venue);
        *v.stats.requests.entry(wire_id).or_insert(0) += 1;
        v.stats.max_msgs_per_sec = v.stats.max_msgs_per_sec.max(n);
        if n == MAX_MSGS_PER_SEC + 1 {
            let text = format!(
                "connection {}: {} messages within 1 s (max {MAX_MSGS_PER_SEC})",
                self.no, n
            );
            v.stats.violations.push(text);
            drop(v);
            self.error(
                -1,
                100,
                "Max rate of messages per second has been exceeded:max=50 rec=51 (1)",
            );
        }
    }

    fn on_frame(&mut self, body: &[u8]) -> Flow {
        let (wire_id, req) = match decode_request(body) {
            Ok(x) => x,
            Err(e) => {
                let id = if body.len() >= 4 {
                    i32::from_be_bytes([body[0], body[1], body[2], body[3]])
                } else {
                    -1
                };
                self.count(id);
                lock(&self.venue).log.push(Logged {
                    connection: self.no,
                    msg: id,
                    note: format!("undecodable: {e:?}"),
                });
                return Flow::Continue;
            }
        };
        self.count(wire_id);
        // Fault: close the socket after n more requests (§7.5, reconnect tests).
        {
            let mut v = lock(&self.venue);
            let mut fire = None;
            for f in v.faults.iter_mut() {
                if let Fault::CloseAfter {
                    requests,
                    refuse_connections,
                } = f
                {
                    if *requests == 0 {
                        fire = Some(*refuse_connections);
                    } else {
                        *requests -= 1;
                    }
                    break;
                }
            }
            if let Some(refuse) = fire {
                v.take_fault(|f| matches!(f, Fault::CloseAfter { .. }));
                v.refuse_connections += refuse;
                return Flow::Close;
            }
        }
        match req {
            Request::StartApi(_) => {}
            Request::ContractData(r) => self.contract_data(wire_id, r),
            Request::SecDefOptParams(r) => self.sec_def_opt_params(wire_id, r),
            Request::MarketDataType(r) => self.market_data_type = r.market_data_type.unwrap_or(1),
            Request::MarketData(r) => self.market_data(wire_id, r),
            Request::CancelMarketData(r) => {
                if self.lines.remove(&r.req_id.unwrap_or(0)).is_some() {
                    lock(&self.venue).close_line();
                }
            }
            Request::HistoricalData(r) => self.historical(wire_id, r),
            Request::PlaceOrder(r) => return self.place_order(wire_id, *r),
            Request::CancelOrder(r) => self.cancel_order(r),
            Request::Ids(_) if self.fault_error(wire_id, -1, &Haystack::default()) => {}
            Request::OpenOrders | Request::AllOpenOrders | Request::CompletedOrders(_)
                if self.fault_error(wire_id, -1, &Haystack::default()) => {}
            Request::Executions(r)
                if self.fault_error(wire_id, r.req_id.unwrap_or(0), &Haystack::default()) => {}
            Request::Ids(_) => {
                let id = lock(&self.venue).next_valid_id;
                self.send(
                    wire::NEXT_VALID_ID,
                    &proto::NextValidId { order_id: Some(id) },
                );
            }
            Request::OpenOrders => self.open_orders(wire_id, true),
            Request::AllOpenOrders => self.open_orders(wire_id, false),
            Request::CompletedOrders(_) => self.completed_orders(wire_id),
            Request::Executions(r) => self.executions(wire_id, r),
            Request::Positions => self.positions(wire_id),
            Request::AccountSummary(r) => self.account_summary(wire_id, r),
            Request::AccountData(r) => {
                if r.subscribe == Some(true) {
                    self.account_data(wire_id, r)
                }
            }
            // §7.4: tolerated without a reply.
            Request::CancelHistoricalData
            | Request::CancelAccountSummary
            | Request::CancelPositions
            | Request::CancelContractData => {}
            Request::Other(id) => lock(&self.venue).log.push(Logged {
                connection: self.no,
                msg: id,
                note: "not implemented; ignored".into(),
            }),
        }
        Flow::Continue
    }

    /// Returns true (and sends the error) when an Error fault answers this request instead of
    /// the data. Advisory codes are sent and return false, so the data follows.
    fn fault_error(&mut self, wire_id: i32, id: i32, hay: &Haystack) -> bool {
        let hit = lock(&self.venue).take_error_fault(wire_id, hay);
        match hit {
            Some((code, text)) => {
                self.error(id, code, &text);
                !is_advisory(code)
            }
            None => false,
        }
    }

    // --- §2.1 contract details ---------------------------------------------------------------

    fn contract_data(&mut self, wire_id: i32, r: proto::ContractDataRequest) {
        let req_id = r.req_id.unwrap_or(0);
        let c = r.contract.unwrap_or_default();
        if self.fault_error(wire_id, req_id, &Haystack::of(Some(&c))) {
            return;
        }
        let (rows, no_end) = {
            let v = lock(&self.venue);
            (v.matching(&c), v.no_end(wire_id))
        };
        if rows.is_empty() {
            self.error(
                req_id,
                200,
                "No security definition has been found for the request",
            );
            return;
        }
        for i in rows {
            let details = contract_details(&i);
            self.send(
                wire::CONTRACT_DATA,
                &proto::ContractData {
                    req_id: Some(req_id),
                    contract: Some(i.contract),
                    contract_details: Some(details),
                },
            );
        }
        if !no_end {
            self.send(
                wire::CONTRACT_DATA_END,
                &proto::ContractDataEnd {
                    req_id: Some(req_id),
                },
            );
        }
    }

    // --- §2.2 option chain -------------------------------------------------------------------

    fn sec_def_opt_params(&mut self, wire_id: i32, r: proto::SecDefOptParamsRequest) {
        let req_id = r.req_id.unwrap_or(0);
        let symbol = r.underlying_symbol.clone().unwrap_or_default();
        let hay = Haystack {
            symbol: symbol.clone(),
            ..Default::default()
        };
        if self.fault_error(wire_id, req_id, &hay) {
            return;
        }
        let con_id = r.underlying_con_id.unwrap_or(0);
        if con_id == 0 {
            self.error(
                req_id,
                321,
                "Error validating request.-'bX' : cause - Invalid underlying contract id",
            );
            return;
        }
        let (rows, no_end) = {
            let v = lock(&self.venue);
            // class -> (multiplier, expiries, strikes)
            let mut by_class: BTreeMap<String, (f64, Vec<String>, Vec<f64>)> = BTreeMap::new();
            for o in v.market.options.iter().filter(|o| o.symbol == symbol) {
                let e = by_class.entry(o.trading_class.clone()).or_insert((
                    o.multiplier,
                    Vec::new(),
                    Vec::new(),
                ));
                if !e.1.contains(&o.expiry) {
                    e.1.push(o.expiry.clone());
                }
                if !e.2.iter().any(|s| (s - o.strike).abs() < 1e-9) {
                    e.2.push(o.strike);
                }
            }
            // PR #792: a non-empty futFopExchange returns no rows for stock/index options.
            let exchange_filter = r.fut_fop_exchange.clone().unwrap_or_default();
            let mut rows = Vec::new();
            if exchange_filter.is_empty() {
                // One row per exchange × trading class, like TWS (§2.2).
                for exchange in ["SMART", "CBOE"] {
                    for (class, (mult, exps, strikes)) in &by_class {
                        let mut exps = exps.clone();
                        exps.sort();
                        let mut strikes = strikes.clone();
                        strikes.sort_by(|a, b| a.total_cmp(b));
                        rows.push(proto::SecDefOptParameter {
                            req_id: Some(req_id),
                            exchange: Some(exchange.into()),
                            underlying_con_id: Some(con_id),
                            trading_class: Some(class.clone()),
                            multiplier: Some(dec(*mult)),
                            expirations: exps,
                            strikes,
                        });
                    }
                }
            }
            (rows, v.no_end(wire_id))
        };
        for row in rows {
            self.send(wire::SEC_DEF_OPT_PARAMETER, &row);
        }
        if !no_end {
            self.send(
                wire::SEC_DEF_OPT_PARAMETER_END,
                &proto::SecDefOptParameterEnd {
                    req_id: Some(req_id),
                },
            );
        }
    }

    // --- §2.3 market data --------------------------------------------------------------------

    fn market_data(&mut self, wire_id: i32, r: proto::MarketDataRequest) {
        let req_id = r.req_id.unwrap_or(0);
        let c = r.contract.clone().unwrap_or_default();
        let snapshot = r.snapshot.unwrap_or(false) || r.regulatory_snapshot.unwrap_or(false);
        if self.fault_error(wire_id, req_id, &Haystack::of(Some(&c))) {
            return;
        }
        let (found, delayed_market, delay, no_end) = {
            let v = lock(&self.venue);
            (
                v.matching(&c),
                v.market.delayed,
                v.market.snapshot_end_delay,
                v.no_end(wire_id),
            )
        };
        let inst = match found.len() {
            0 => {
                self.error(
                    req_id,
                    200,
                    "No security definition has been found for the request",
                );
                return;
            }
            1 => found.into_iter().next().expect("one"),
            _ => {
                self.error(
                    req_id,
                    200,
                    "The contract description specified is ambiguous",
                );
                return;
            }
        };
        let want_delayed = matches!(self.market_data_type, 3 | 4);
        if delayed_market && !want_delayed {
            self.error(
                req_id,
                354,
                "Requested market data is not subscribed. Delayed market data is available.",
            );
            return;
        }
        let delayed = delayed_market && want_delayed;
        if !lock(&self.venue).open_line() {
            self.error(req_id, 101, "Max number of tickers has been reached");
            return;
        }
        self.lines.insert(req_id, snapshot);
        if delayed {
            self.error(
                req_id,
                10167,
                "Requested market data is not subscribed. Displaying delayed market data.",
            );
        }
        self.send(
            wire::TICK_REQ_PARAMS,
            &proto::TickReqParams {
                req_id: Some(req_id),
                min_tick: Some("0.01".into()),
                bbo_exchange: Some("9c0001".into()),
                snapshot_permissions: Some(3),
                ..Default::default()
            },
        );
        self.send(
            wire::MARKET_DATA_TYPE,
            &proto::MarketDataType {
                req_id: Some(req_id),
                market_data_type: Some(if delayed { 3 } else { 1 }),
            },
        );
        // Tick types: live bid 1 / ask 2 / last 4 / close 9, sizes 0 / 3 / 5 / volume 8;
        // delayed 66 / 67 / 68 / 75, sizes 69 / 70 / 71 / 74; computations 10–13 or 80–83.
        let (tb, ta, tl, tc) = if delayed {
            (66, 67, 68, 75)
        } else {
            (1, 2, 4, 9)
        };
        let (sb, sa, sl, sv) = if delayed {
            (69, 70, 71, 74)
        } else {
            (0, 3, 5, 8)
        };
        let price = |conn: &mut Conn, tick: i32, p: f64, size: Option<f64>| {
            conn.send(
                wire::TICK_PRICE,
                &proto::TickPrice {
                    req_id: Some(req_id),
                    tick_type: Some(tick),
                    price: Some(p),
                    size: size.map(dec),
                    attr_mask: Some(0),
                },
            );
        };
        let size = |conn: &mut Conn, tick: i32, s: f64| {
            conn.send(
                wire::TICK_SIZE,
                &proto::TickSize {
                    req_id: Some(req_id),
                    tick_type: Some(tick),
                    size: Some(dec(s)),
                },
            );
        };
        if inst.bid > 0.0 {
            price(self, tb, inst.bid, Some(inst.bid_size));
        }
        if inst.ask > 0.0 {
            price(self, ta, inst.ask, Some(inst.ask_size));
        }
        if inst.last > 0.0 {
            price(self, tl, inst.last, Some(1.0));
        }
        if inst.close > 0.0 {
            price(self, tc, inst.close, None);
        }
        if inst.bid > 0.0 {
            size(self, sb, inst.bid_size);
            size(self, sa, inst.ask_size);
            size(self, sl, 1.0);
        }
        if inst.volume > 0.0 {
            size(self, sv, inst.volume);
        }
        if let Some(o) = &inst.greeks {
            let base = if delayed { 80 } else { 10 };
            let comp = |tick: i32, opt_price: f64| proto::TickOptionComputation {
                req_id: Some(req_id),
                tick_type: Some(tick),
                tick_attrib: Some(1),
                implied_vol: Some(o.iv),
                delta: Some(o.delta),
                opt_price: Some(opt_price),
                pv_dividend: Some(0.0),
                gamma: Some(o.gamma),
                vega: Some(o.vega),
                theta: Some(o.theta),
                und_price: Some(o.und_price),
            };
            // TWS's all-sentinel computation: −1 for iv / prices, −2 for greeks (§2.3).
            let sentinel = |tick: i32| proto::TickOptionComputation {
                req_id: Some(req_id),
                tick_type: Some(tick),
                tick_attrib: Some(0),
                implied_vol: Some(-1.0),
                delta: Some(-2.0),
                opt_price: Some(-1.0),
                pv_dividend: Some(-1.0),
                gamma: Some(-2.0),
                vega: Some(-2.0),
                theta: Some(-2.0),
                und_price: Some(-1.0),
            };
            // Sentinel first for the model (as TWS often does), then the real values, and an
            // all-sentinel LAST for the last-price computation: a consumer that keeps only the
            // latest computation per tick type loses the "last" greeks; the adapter must merge
            // field by field and prefer the model/bid/ask computations.
            self.send(wire::TICK_OPTION_COMPUTATION, &sentinel(base + 3));
            self.send(wire::TICK_OPTION_COMPUTATION, &comp(base, o.bid));
            self.send(wire::TICK_OPTION_COMPUTATION, &comp(base + 1, o.ask));
            self.send(wire::TICK_OPTION_COMPUTATION, &comp(base + 2, o.last));
            self.send(
                wire::TICK_OPTION_COMPUTATION,
                &comp(base + 3, (o.bid + o.ask) / 2.0),
            );
            self.send(wire::TICK_OPTION_COMPUTATION, &sentinel(base + 2));
        }
        if snapshot {
            self.timers.push((Instant::now() + delay, req_id, !no_end));
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let due: Vec<(Instant, i32, bool)> =
            self.timers.iter().copied().filter(|t| t.0 <= now).collect();
        self.timers.retain(|t| t.0 > now);
        for (_, req_id, send_end) in due {
            if !send_end {
                // NoEnd: the line stays held until the client cancels or disconnects.
                continue;
            }
            if self.lines.remove(&req_id).is_some() {
                lock(&self.venue).close_line();
            }
            self.send(
                wire::TICK_SNAPSHOT_END,
                &proto::TickSnapshotEnd {
                    req_id: Some(req_id),
                },
            );
        }
    }

    // --- §2.4 historical data ----------------------------------------------------------------

    fn historical(&mut self, wire_id: i32, r: proto::HistoricalDataRequest) {
        let req_id = r.req_id.unwrap_or(0);
        let c = r.contract.clone().unwrap_or_default();
        if self.fault_error(wire_id, req_id, &Haystack::of(Some(&c))) {
            return;
        }
        let symbol = c.symbol.clone().unwrap_or_default();
        let what = r.what_to_show.clone().unwrap_or_else(|| "TRADES".into());
        let end = r.end_date_time.clone().unwrap_or_default();
        let duration = r.duration.clone().unwrap_or_default();
        // §6: no identical request within 15 s.
        let key = format!(
            "{symbol}|{}|{}|{:?}|{}|{end}|{}|{duration}|{what}|{:?}",
            c.sec_type.clone().unwrap_or_default(),
            c.last_trade_date_or_contract_month
                .clone()
                .unwrap_or_default(),
            c.strike,
            c.right.clone().unwrap_or_default(),
            r.bar_size_setting.clone().unwrap_or_default(),
            r.use_rth
        );
        let (bars, no_end, paced) = {
            let mut v = lock(&self.venue);
            let now = Instant::now();
            v.hist_recent
                .retain(|(_, t)| now.duration_since(*t) < Duration::from_secs(15));
            let paced = v.hist_recent.iter().any(|(k, _)| *k == key);
            if paced {
                v.stats.violations.push(format!(
                    "historical pacing: identical request within 15 s: {key}"
                ));
            } else {
                v.hist_recent.push((key, now));
            }
            (
                // A contract's own bars (by local symbol, e.g. a futures month's) before
                // its symbol's.
                c.local_symbol
                    .as_ref()
                    .and_then(|l| v.market.bars.get(&(l.clone(), what.clone())))
                    .or_else(|| v.market.bars.get(&(symbol.clone(), what.clone())))
                    .cloned(),
                v.no_end(wire_id),
                paced,
            )
        };
        if paced {
            self.error(req_id, 162, "Historical Market Data Service error message:Historical data request pacing violation");
            return;
        }
        let Some(bars) = bars else {
            self.error(
                req_id,
                162,
                "Historical Market Data Service error message:HMDS query returned no data",
            );
            return;
        };
        let (selected, start_s, end_s) = select_bars(&bars, &end, &duration);
        if selected.is_empty() {
            self.error(
                req_id,
                162,
                "Historical Market Data Service error message:HMDS query returned no data",
            );
            return;
        }
        let frame = proto::HistoricalData {
            req_id: Some(req_id),
            historical_data_bars: selected
                .iter()
                .map(|b| proto::HistoricalDataBar {
                    date: Some(b.date.clone()),
                    open: Some(b.open),
                    high: Some(b.high),
                    low: Some(b.low),
                    close: Some(b.close),
                    volume: Some(dec(b.volume)),
                    wap: Some(dec((b.high + b.low + b.close) / 3.0)),
                    bar_count: Some(100),
                })
                .collect(),
        };
        // §2.4: all bars in one frame, then the end frame; nothing else in between.
        self.send(wire::HISTORICAL_DATA, &frame);
        if !no_end {
            self.send(
                wire::HISTORICAL_DATA_END,
                &proto::HistoricalDataEnd {
                    req_id: Some(req_id),
                    start_date_str: Some(start_s),
                    end_date_str: Some(end_s),
                },
            );
        }
    }

    // --- §2.5 orders -------------------------------------------------------------------------

    fn place_order(&mut self, wire_id: i32, r: proto::PlaceOrderRequest) -> Flow {
        let order_id = r.order_id.unwrap_or(0);
        let contract = r.contract.clone().unwrap_or_default();
        let order = r.order.clone().unwrap_or_default();
        let order_ref = order.order_ref.clone().unwrap_or_default();
        let existing = lock(&self.venue).orders.get(&order_id).cloned();
        if existing.is_none() {
            let mut v = lock(&self.venue);
            *v.stats.placed_refs.entry(order_ref.clone()).or_insert(0) += 1;
        }
        let mut hay = Haystack::of(Some(&contract));
        hay.order_ref = order_ref.clone();
        if self.fault_error(wire_id, order_id, &hay) {
            return Flow::Continue;
        }
        let quantity: f64 = order
            .total_quantity
            .as_deref()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0.0);
        let order_type = order.order_type.clone().unwrap_or_else(|| "LMT".into());
        let limit = order.lmt_price.filter(|p| *p != f64::MAX);
        if let Some(prev) = existing {
            // A modification (§2.7: same id).
            if !prev.is_working() {
                self.error(order_id, 104, "Cannot modify a filled order.");
                return Flow::Continue;
            }
            let fill = {
                let mut v = lock(&self.venue);
                let o = v.orders.get_mut(&order_id).expect("order");
                o.order = order;
                o.quantity = quantity;
                o.limit = limit;
                o.order_type = order_type;
                o.status = "Submitted".into();
                let o = o.clone();
                v.fill_price(&o)
            };
            self.send_open_order(order_id);
            self.send_status(order_id);
            if let Some(p) = fill {
                let execs = lock(&self.venue).execute(order_id, p);
                self.send_fill(order_id, &execs);
            }
            return Flow::Continue;
        }
        // A new order.
        let (min_id, close_after_receipt) = {
            let v = lock(&self.venue);
            (
                v.next_valid_id,
                v.faults
                    .iter()
                    .any(|f| matches!(f, Fault::CloseAfterOrderReceived)),
            )
        };
        if order_id < min_id {
            self.error(order_id, 103, "Duplicate order id");
            return Flow::Continue;
        }
        let fill = {
            let mut v = lock(&self.venue);
            v.next_valid_id = v.next_valid_id.max(order_id + 1);
            let perm_id = v.next_perm_id;
            v.next_perm_id += 1;
            // Fill in the con_id of a resolved single contract (TWS echoes full contracts).
            let mut contract = contract;
            if contract.sec_type.as_deref() != Some("BAG") {
                if let Some(i) = v.resolve_one(&contract) {
                    contract = i.contract;
                }
            }
            let o = FakeOrder {
                order_id,
                client_id: self.client_id,
                perm_id,
                contract,
                action: order.action.clone().unwrap_or_else(|| "BUY".into()),
                order,
                quantity,
                order_type,
                limit,
                order_ref,
                status: "PreSubmitted".into(),
                filled: 0.0,
                avg_fill_price: 0.0,
                commission: 0.0,
                completed_time: String::new(),
            };
            v.orders.insert(order_id, o.clone());
            v.fill_price(&o)
        };
        if close_after_receipt {
            // The order exists at the venue and fills there; the client hears nothing.
            let mut v = lock(&self.venue);
            v.take_fault(|f| matches!(f, Fault::CloseAfterOrderReceived));
            match fill {
                Some(p) => {
                    v.execute(order_id, p);
                }
                None => v.orders.get_mut(&order_id).expect("order").status = "Submitted".into(),
            }
            return Flow::Close;
        }
        self.send_open_order(order_id);
        self.send_status(order_id);
        match fill {
            Some(p) => {
                let execs = lock(&self.venue).execute(order_id, p);
                self.send_fill(order_id, &execs);
            }
            None => {
                lock(&self.venue)
                    .orders
                    .get_mut(&order_id)
                    .expect("order")
                    .status = "Submitted".into();
                self.send_open_order(order_id);
                self.send_status(order_id);
            }
        }
        Flow::Continue
    }

    /// The tail of §2.5's fill sequence: executions (req −1), OrderStatus Filled, OpenOrder
    /// Filled, then each execution's commission report — always after its execution, since
    /// ibapi routes a commission only by an exec_id it has already seen.
    fn send_fill(&mut self, order_id: i32, execs: &[FakeExecution]) {
        for e in execs {
            self.send(wire::EXECUTION_DATA, &execution_details(-1, e));
        }
        self.send_status(order_id);
        self.send_open_order(order_id);
        for e in execs {
            self.send(wire::COMMISSION_REPORT, &commission_report(e));
        }
    }

    fn send_open_order(&mut self, order_id: i32) {
        let Some(o) = lock(&self.venue).orders.get(&order_id).cloned() else {
            return;
        };
        self.send(wire::OPEN_ORDER, &open_order(&o));
    }

    fn send_status(&mut self, order_id: i32) {
        let Some(o) = lock(&self.venue).orders.get(&order_id).cloned() else {
            return;
        };
        self.send(wire::ORDER_STATUS, &order_status(&o, &o.status));
    }

    /// §2.6: PendingCancel, Cancelled, then error 202; unknown order → 10147.
    fn cancel_order(&mut self, r: proto::CancelOrderRequest) {
        let order_id = r.order_id.unwrap_or(0);
        let state = lock(&self.venue)
            .orders
            .get(&order_id)
            .map(|o| (o.is_working(), o.status.clone()));
        match state {
            None => self.error(order_id, 10147, &format!("OrderId {order_id} that needs to be cancelled is not found.")),
            Some((false, status)) => self.error(
                order_id,
                10148,
                &format!("OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {status}."),
            ),
            Some((true, _)) => {
                let o = {
                    let mut v = lock(&self.venue);
                    let o = v.orders.get_mut(&order_id).expect("order");
                    o.status = "Cancelled".into();
                    o.completed_time = venue_time();
                    o.clone()
                };
                self.send(wire::ORDER_STATUS, &order_status(&o, "PendingCancel"));
                self.send(wire::ORDER_STATUS, &order_status(&o, "Cancelled"));
                self.error(order_id, 202, "Order Canceled - reason:");
            }
        }
    }

    /// §2.10: OpenOrder + OrderStatus for each working order, then OpenOrderEnd. 205 lists
    /// only this client's orders, 216 every client's.
    fn open_orders(&mut self, wire_id: i32, own_only: bool) {
        let (orders, no_end) = {
            let v = lock(&self.venue);
            let orders: Vec<FakeOrder> = v
                .orders
                .values()
                .filter(|o| o.is_working() && (!own_only || o.client_id == self.client_id))
                .cloned()
                .collect();
            (orders, v.no_end(wire_id))
        };
        for o in &orders {
            self.send(wire::OPEN_ORDER, &open_order(o));
            self.send(wire::ORDER_STATUS, &order_status(o, &o.status));
        }
        if !no_end {
            self.send(wire::OPEN_ORDER_END, &proto::OpenOrdersEnd {});
        }
    }

    fn completed_orders(&mut self, wire_id: i32) {
        let (orders, no_end) = {
            let v = lock(&self.venue);
            let orders: Vec<FakeOrder> = v
                .orders
                .values()
                .filter(|o| !o.is_working())
                .cloned()
                .collect();
            (orders, v.no_end(wire_id))
        };
        for o in &orders {
            let mut order = order_echo(o);
            order.filled_quantity = Some(dec(o.filled));
            let state = proto::OrderState {
                status: Some(o.status.clone()),
                commission_and_fees: Some(o.commission),
                commission_and_fees_currency: Some("USD".into()),
                completed_time: Some(o.completed_time.clone()),
                completed_status: Some(o.status.clone()),
                ..Default::default()
            };
            self.send(
                wire::COMPLETED_ORDER,
                &proto::CompletedOrder {
                    contract: Some(o.contract.clone()),
                    order: Some(order),
                    order_state: Some(state),
                },
            );
        }
        if !no_end {
            self.send(wire::COMPLETED_ORDERS_END, &proto::CompletedOrdersEnd {});
        }
    }

    /// §2.10: each execution with the request id, followed by its commission report.
    fn executions(&mut self, wire_id: i32, r: proto::ExecutionRequest) {
        let req_id = r.req_id.unwrap_or(0);
        let f = r.execution_filter.unwrap_or_default();
        let (execs, no_end) = {
            let v = lock(&self.venue);
            let execs: Vec<FakeExecution> = v
                .executions
                .iter()
                .filter(|e| {
                    let nz = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
                    f.client_id
                        .filter(|c| *c != 0)
                        .is_none_or(|c| c == e.client_id)
                        && nz(&f.acct_code).is_none_or(|a| a == e.account)
                        && nz(&f.symbol).is_none_or(|s| Some(s) == e.contract.symbol)
                        && nz(&f.sec_type).is_none_or(|s| Some(s) == e.contract.sec_type)
                        && nz(&f.exchange).is_none_or(|s| s == e.exchange)
                        && nz(&f.side).is_none_or(|s| {
                            let s = s.to_ascii_uppercase();
                            (s == "BUY" || s == "BOT") == (e.side == "BOT")
                        })
                })
                .cloned()
                .collect();
            (execs, v.no_end(wire_id))
        };
        for e in &execs {
            self.send(wire::EXECUTION_DATA, &execution_details(req_id, e));
            self.send(wire::COMMISSION_REPORT, &commission_report(e));
        }
        if !no_end {
            self.send(
                wire::EXECUTION_DATA_END,
                &proto::ExecutionDetailsEnd {
                    req_id: Some(req_id),
                },
            );
        }
    }

    // --- §2.8 / §2.9 account -----------------------------------------------------------------

    fn positions(&mut self, wire_id: i32) {
        if self.fault_error(wire_id, -1, &Haystack::default()) {
            return;
        }
        let (rows, no_end, account) = {
            let v = lock(&self.venue);
            (
                v.positions.values().cloned().collect::<Vec<_>>(),
                v.no_end(wire_id),
                v.market.accounts.first().cloned().unwrap_or_default(),
            )
        };
        for p in rows {
            self.send(
                wire::POSITION,
                &proto::Position {
                    account: Some(account.clone()),
                    contract: Some(p.contract.clone()),
                    position: Some(dec(p.quantity)),
                    avg_cost: Some(p.avg_cost),
                },
            );
        }
        if !no_end {
            self.send(wire::POSITION_END, &proto::PositionEnd {});
        }
    }

    fn account_values(&self) -> (String, Vec<(&'static str, String, &'static str)>) {
        let v = lock(&self.venue);
        let account = v.market.accounts.first().cloned().unwrap_or_default();
        let nl = v.net_liquidation();
        let gross: f64 = nl - v.cash;
        let values = vec![
            ("AccountType", "INDIVIDUAL".to_string(), ""),
            ("NetLiquidation", format!("{nl:.2}"), "USD"),
            ("TotalCashValue", format!("{:.2}", v.cash), "USD"),
            ("SettledCash", format!("{:.2}", v.cash), "USD"),
            ("AvailableFunds", format!("{:.2}", v.cash), "USD"),
            ("ExcessLiquidity", format!("{:.2}", v.cash), "USD"),
            ("BuyingPower", format!("{:.2}", v.cash * 4.0), "USD"),
            ("GrossPositionValue", format!("{:.2}", gross.abs()), "USD"),
            ("EquityWithLoanValue", format!("{nl:.2}"), "USD"),
            ("InitMarginReq", "0.00".to_string(), "USD"),
            ("MaintMarginReq", "0.00".to_string(), "USD"),
        ];
        (account, values)
    }

    fn account_summary(&mut self, wire_id: i32, r: proto::AccountSummaryRequest) {
        let req_id = r.req_id.unwrap_or(0);
        if self.fault_error(wire_id, req_id, &Haystack::default()) {
            return;
        }
        let tags: Vec<String> = r
            .tags
            .clone()
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let (account, values) = self.account_values();
        let no_end = lock(&self.venue).no_end(wire_id);
        for (tag, value, currency) in values {
            if !tags.iter().any(|t| t == tag) {
                continue;
            }
            self.send(
                wire::ACCOUNT_SUMMARY,
                &proto::AccountSummary {
                    req_id: Some(req_id),
                    account: Some(account.clone()),
                    tag: Some(tag.into()),
                    value: Some(value),
                    currency: Some(currency.into()),
                },
            );
        }
        if !no_end {
            self.send(
                wire::ACCOUNT_SUMMARY_END,
                &proto::AccountSummaryEnd {
                    req_id: Some(req_id),
                },
            );
        }
    }

    fn account_data(&mut self, wire_id: i32, _r: proto::AccountDataRequest) {
        let (account, values) = self.account_values();
        for (key, value, currency) in values {
            self.send(
                wire::ACCOUNT_VALUE,
                &proto::AccountValue {
                    key: Some(key.into()),
                    value: Some(value),
                    currency: Some(currency.into()),
                    account_name: Some(account.clone()),
                },
            );
        }
        let (positions, insts, no_end) = {
            let v = lock(&self.venue);
            (
                v.positions.values().cloned().collect::<Vec<_>>(),
                v.instruments(),
                v.no_end(wire_id),
            )
        };
        for p in positions {
            let mark = insts
                .iter()
                .find(|i| i.contract.con_id == p.contract.con_id)
                .map(|i| {
                    if i.bid > 0.0 && i.ask > 0.0 {
                        (i.bid + i.ask) / 2.0
                    } else {
                        i.last
                    }
                })
                .unwrap_or(0.0);
            let value = p.quantity * mark * p.multiplier;
            self.send(
                wire::PORTFOLIO_VALUE,
                &proto::PortfolioValue {
                    contract: Some(p.contract.clone()),
                    position: Some(dec(p.quantity)),
                    market_price: Some(mark),
                    market_value: Some(value),
                    average_cost: Some(p.avg_cost),
                    unrealized_pnl: Some(value - p.quantity * p.avg_cost),
                    realized_pnl: Some(0.0),
                    account_name: Some(account.clone()),
                },
            );
        }
        let hhmm = chrono::Utc::now()
            .with_timezone(&chrono_tz::America::New_York)
            .format("%H:%M")
            .to_string();
        self.send(
            wire::ACCOUNT_UPDATE_TIME,
            &proto::AccountUpdateTime {
                time_stamp: Some(hhmm),
            },
        );
        if !no_end {
            self.send(
                wire::ACCOUNT_DOWNLOAD_END,
                &proto::AccountDataEnd {
                    account_name: Some(account),
                },
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reply builders.
// ---------------------------------------------------------------------------------------------

fn contract_details(i: &Inst) -> proto::ContractDetails {
    let c = &i.contract;
    let sec_type = c.sec_type.clone().unwrap_or_default();
    let symbol = c.symbol.clone().unwrap_or_default();
    let (order_types, exchanges) = match sec_type.as_str() {
        "OPT" => ("LMT,MKT,COMBO", "SMART,CBOE,AMEX,ISE,PHLX"),
        "FUT" => ("LMT,MKT,STP", "CME,QBALGO"),
        "IND" => ("", "CBOE"),
        _ => ("LMT,MKT,STP,TRAIL", "SMART,NASDAQ,NYSE,ARCA"),
    };
    proto::ContractDetails {
        market_name: c.trading_class.clone(),
        min_tick: Some("0.01".into()),
        order_types: Some(order_types.into()),
        valid_exchanges: Some(exchanges.into()),
        under_con_id: i.under.as_ref().map(|u| u.0),
        long_name: Some(match sec_type.as_str() {
            "OPT" => format!("{symbol} option"),
            "FUT" => format!("Micro E-Mini {symbol}"),
            _ => format!("{symbol} (fake)"),
        }),
        contract_month: (!i.month.is_empty()).then(|| i.month.clone()),
        time_zone_id: Some("US/Eastern".into()),
        trading_hours: Some("20261201:0930-20261201:1600;20261202:0930-20261202:1600".into()),
        liquid_hours: Some("20261201:0930-20261201:1600;20261202:0930-20261202:1600".into()),
        under_symbol: i.under.as_ref().map(|_| symbol.clone()),
        under_sec_type: i.under.as_ref().map(|u| u.1.clone()),
        market_rule_ids: Some("26".into()),
        real_expiration_date: c.last_trade_date.clone(),
        min_size: Some("1".into()),
        size_increment: Some("1".into()),
        suggested_size_increment: Some("1".into()),
        ..Default::default()
    }
}

/// The client's Order echoed with the venue's ids (§1: client_id must be the StartApi one).
fn order_echo(o: &FakeOrder) -> proto::Order {
    let mut order = o.order.clone();
    order.client_id = Some(o.client_id);
    order.order_id = Some(o.order_id);
    order.perm_id = Some(o.perm_id);
    order.order_ref = (!o.order_ref.is_empty()).then(|| o.order_ref.clone());
    order.filled_quantity = Some(dec(o.filled));
    order
}

fn open_order(o: &FakeOrder) -> proto::OpenOrder {
    let filled = o.status == "Filled";
    proto::OpenOrder {
        order_id: Some(o.order_id),
        contract: Some(o.contract.clone()),
        order: Some(order_echo(o)),
        order_state: Some(proto::OrderState {
            status: Some(o.status.clone()),
            commission_and_fees: filled.then_some(o.commission),
            commission_and_fees_currency: filled.then(|| "USD".into()),
            ..Default::default()
        }),
    }
}

fn order_status(o: &FakeOrder, status: &str) -> proto::OrderStatus {
    proto::OrderStatus {
        order_id: Some(o.order_id),
        status: Some(status.into()),
        filled: Some(dec(o.filled)),
        remaining: Some(dec(o.quantity - o.filled)),
        avg_fill_price: Some(o.avg_fill_price),
        perm_id: Some(o.perm_id),
        parent_id: Some(0),
        last_fill_price: Some(o.avg_fill_price),
        client_id: Some(o.client_id),
        why_held: None,
        mkt_cap_price: Some(0.0),
    }
}

fn execution_details(req_id: i32, e: &FakeExecution) -> proto::ExecutionDetails {
    proto::ExecutionDetails {
        req_id: Some(req_id),
        contract: Some(e.contract.clone()),
        execution: Some(proto::Execution {
            order_id: Some(e.order_id),
            exec_id: Some(e.exec_id.clone()),
            time: Some(e.time.clone()),
            acct_number: Some(e.account.clone()),
            exchange: Some(e.exchange.clone()),
            side: Some(e.side.clone()),
            shares: Some(dec(e.shares)),
            price: Some(e.price),
            perm_id: Some(e.perm_id),
            client_id: Some(e.client_id),
            cum_qty: Some(dec(e.shares)),
            avg_price: Some(e.price),
            order_ref: (!e.order_ref.is_empty()).then(|| e.order_ref.clone()),
            last_liquidity: Some(1),
            ..Default::default()
        }),
    }
}

fn commission_report(e: &FakeExecution) -> proto::CommissionAndFeesReport {
    proto::CommissionAndFeesReport {
        exec_id: Some(e.exec_id.clone()),
        commission_and_fees: Some(e.commission),
        currency: Some("USD".into()),
        realized_pnl: Some(f64::MAX),
        bond_yield: Some(f64::MAX),
        yield_redemption_date: None,
    }
}

/// Bars within `duration` ending at `end` (or at the last bar when `end` is empty), with the
/// HistoricalDataEnd start/end strings ("YYYYMMDD-HH:MM:SS", §2.4).
pub fn select_bars(bars: &[Bar], end: &str, duration: &str) -> (Vec<Bar>, String, String) {
    use chrono::{DateTime, Months, NaiveDate, NaiveDateTime, TimeDelta, Utc};
    fn bar_time(d: &str) -> Option<DateTime<Utc>> {
        if d.len() == 8 {
            NaiveDate::parse_from_str(d, "%Y%m%d")
                .ok()
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        } else {
            d.parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
        }
    }
    let parse_end = |s: &str| -> Option<DateTime<Utc>> {
        let s = s.trim();
        let head: String = s.chars().take(17).collect();
        NaiveDateTime::parse_from_str(&head, "%Y%m%d %H:%M:%S")
            .or_else(|_| NaiveDateTime::parse_from_str(&head, "%Y%m%d-%H:%M:%S"))
            .ok()
            .map(|d| d.and_utc())
    };
    let last_bar = bars.iter().filter_map(|b| bar_time(&b.date)).max();
    let end_t =
        parse_end(end).or(last_bar.map(|t| t + TimeDelta::hours(23) + TimeDelta::minutes(59)));
    let Some(end_t) = end_t else {
        return (Vec::new(), String::new(), String::new());
    };
    let mut parts = duration.split_whitespace();
    let n: i64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let unit = parts.next().unwrap_or("D").to_ascii_uppercase();
    let start_t = if n <= 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        match unit.as_str() {
            "S" => end_t - TimeDelta::seconds(n),
            "W" => end_t - TimeDelta::days(7 * n),
            "M" => end_t
                .checked_sub_months(Months::new(n as u32))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            "Y" => end_t
                .checked_sub_months(Months::new(12 * n as u32))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            _ => end_t - TimeDelta::days(n),
        }
    };
    let selected: Vec<Bar> = bars
        .iter()
        .filter(|b| bar_time(&b.date).is_some_and(|t| t > start_t && t <= end_t))
        .cloned()
        .collect();
    let fmt = |t: DateTime<Utc>| t.format("%Y%m%d-%H:%M:%S").to_string();
    let start_s = if start_t == DateTime::<Utc>::MIN_UTC {
        selected
            .first()
            .and_then(|b| bar_time(&b.date))
            .map(fmt)
            .unwrap_or_default()
    } else {
        fmt(start_t)
    };
    (selected, start_s, fmt(end_t))
}

// ---------------------------------------------------------------------------------------------
// Watchdog.
// ---------------------------------------------------------------------------------------------

/// Fails a hung test: if not dropped within the limit, prints the test's name and exits the
/// whole test process with status 101 (a panic in another thread would not fail the test).
pub struct Watchdog {
    done: Arc<(Mutex<bool>, Condvar)>,
}

impl Watchdog {
    pub fn new(limit: Duration) -> Watchdog {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let d = done.clone();
        let name = std::thread::current()
            .name()
            .unwrap_or("<unnamed test>")
            .to_string();
        std::thread::spawn(move || {
            let (m, cv) = &*d;
            let g = m.lock().unwrap_or_else(|e| e.into_inner());
            let (g, _) = cv
                .wait_timeout_while(g, limit, |done| !*done)
                .unwrap_or_else(|e| e.into_inner());
            if !*g {
                // Straight to the stderr handle: `eprintln!` output is captured by the test
                // harness (spawned threads inherit the capture) and would be lost at exit.
                let _ = writeln!(
                    std::io::stderr(),
                    "watchdog: test `{name}` did not finish within {limit:?}; exiting"
                );
                std::process::exit(101);
            }
        });
        Watchdog { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (m, cv) = &*self.done;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
}
