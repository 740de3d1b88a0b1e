//! The `ibkr` source through the optdesk binary against the fake IB gateway
//! (tests/fake_ib), which speaks ibapi 5.5.0's wire protocol: a normal fetch (quotes with
//! IB's implied vols, underlying prices, daily bars, IV-history backfill), a chain wider
//! than `max_lines` fetched in waves, delayed data, and the failures that must write
//! nothing: 354, 200, a snapshot without its end marker, 10197, historical pacing (162).
//! The front futures contract is asked for through the library; `futures = ["MES"]`
//! stores IB's quotes at the snapshot and the previous close's settlement, and a month IB
//! does not list fails the run naming it.

mod common;
mod fake_ib;

use common::Desk;
use fake_ib::{FakeIb, Fault, Market, Watchdog};
use std::process::Output;
use std::time::{Duration, Instant};

const DAY: &str = "2026-12-01";
const LIMIT: Duration = Duration::from_secs(60);

fn desk_for(fake: &FakeIb, symbols: &[&str], extra: &str) -> Desk {
    let desk = Desk::new();
    let text = desk.desk_toml_for("ibkr", &["[ibkr]"]);
    let symbols = symbols
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    desk.write_config(
        "desk.toml",
        &format!(
            "{text}\n[ibkr]\nhost = \"127.0.0.1\"\nport = {}\nsymbols = [{symbols}]\nrate = 0.04\nconnect_timeout_secs = 5\nrequest_timeout_secs = 2\nsnapshot_timeout_secs = 2\nreconnect_attempts = 0\n{extra}",
            fake.port()
        ),
    );
    desk
}

fn run(desk: &Desk, args: &[&str]) -> Output {
    desk.cmd()
        .env("OPTDESK_IB_ACCOUNT", "DU1234567")
        .args(args)
        .output()
        .unwrap()
}

fn fetch_ok(desk: &Desk) -> String {
    let o = run(desk, &["job", "run", "fetch_chains", "--as-of", DAY]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "fetch_chains failed: {out}");
    out
}

fn fetch_fails(desk: &Desk) -> String {
    let o = run(desk, &["job", "run", "fetch_chains", "--as-of", DAY]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(1), "fetch_chains must fail: {out}");
    assert!(
        !out.contains("DU1234567"),
        "the account id is masked: {out}"
    );
    out
}

fn nothing_written(desk: &Desk) {
    for t in [
        "option_quotes",
        "underlying_quotes",
        "underlying_bars",
        "iv_history",
    ] {
        assert_eq!(
            desk.count(&format!("SELECT count(*) FROM {t}")),
            0,
            "{t} stays empty"
        );
    }
}

#[test]
fn a_normal_fetch_writes_quotes_prices_bars_and_iv_history() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let desk = desk_for(&fake, &["AAPL", "SPX"], "");
    let out = fetch_ok(&desk);
    assert!(
        out.contains("24 option quotes") && out.contains("from ibkr"),
        "{out}"
    );
    assert!(!out.contains("delayed data"), "{out}");
    // AAPL: 2 expiries × 3 strikes × 2 rights; SPX: SPXW 12-04 and SPX 12-18, 3 strikes.
    assert_eq!(desk.count("SELECT count(*) FROM option_quotes WHERE underlying = 'AAPL' AND root = 'AAPL' AND settlement = 'physical'"), 12);
    assert_eq!(desk.count("SELECT count(*) FROM option_quotes WHERE underlying = 'SPX' AND root = 'SPXW' AND expiry = DATE '2026-12-04' AND settlement = 'cash' AND style = 'european'"), 6);
    assert_eq!(desk.count("SELECT count(*) FROM option_quotes WHERE underlying = 'SPX' AND root = 'SPX' AND expiry = DATE '2026-12-18'"), 6);
    // IB's model IV, though an all-sentinel computation came last.
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE source = 'ibkr' AND ((underlying = 'AAPL' AND abs(source_iv - 0.25) < 1e-9) OR (underlying = 'SPX' AND abs(source_iv - 0.16) < 1e-9))"),
        24
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE bid <= 0 OR ask <= bid OR bid_size <> 10 OR ask_size <> 12 OR volume <> 1500"),
        0
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE contract = 'AAPL  261218C00200000' AND strike = 200 AND put_call = 'C' AND underlying_price = 200"),
        1
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM underlying_quotes WHERE (symbol = 'AAPL' AND price = 200) OR (symbol = 'SPX' AND price = 6000)"),
        2
    );
    // Bars of the sessions before the as-of date the fake has (Thanksgiving is no
    // session), both symbols; IV history of AAPL (the fake has none for SPX).
    let bars = desk.count("SELECT count(*) FROM underlying_bars WHERE source = 'ibkr'");
    assert_eq!(bars, 2 * 58, "{out}");
    assert_eq!(
        desk.count("SELECT count(*) FROM underlying_bars WHERE date = DATE '2026-11-26' OR date >= DATE '2026-12-01'"),
        0
    );
    let iv = desk.count("SELECT count(*) FROM iv_history WHERE symbol = 'AAPL' AND source = 'ibkr' AND atm_iv_30d > 0.2 AND atm_iv_30d < 0.3");
    assert_eq!(iv, 58, "{out}");
    assert_eq!(
        desk.count("SELECT count(*) FROM backfills WHERE kind = 'atm_iv'"),
        1
    );
    // The latest session is not a backfill.
    assert!(out.contains("backfilled 57 ATM-IV history rows"), "{out}");
    assert!(out.contains("backfilled 114 daily bars"), "{out}");
    let v = fake.venue();
    assert!(v.stats.violations.is_empty(), "{:?}", v.stats.violations);
    assert!(
        v.stats.max_msgs_per_sec <= 45,
        "{}",
        v.stats.max_msgs_per_sec
    );
    assert!(v.stats.max_lines <= 90);
    // One historical request per symbol and kind; snapshots: 2 underlyings + 24 options.
    assert_eq!(
        v.stats.requests.get(&220),
        Some(&4),
        "{:?}",
        v.stats.requests
    );
    assert_eq!(v.stats.requests.get(&201), Some(&26));
}

#[test]
fn a_chain_wider_than_max_lines_is_fetched_in_waves() {
    let _w = Watchdog::new(LIMIT);
    let market = Market {
        snapshot_end_delay: Duration::from_millis(300),
        ..Market::default()
    };
    let fake = FakeIb::start(market);
    let desk = desk_for(&fake, &["AAPL"], "max_lines = 5\niv_history = false\n");
    let t = Instant::now();
    let out = fetch_ok(&desk);
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes"),
        12,
        "{out}"
    );
    assert!(out.contains("ibkr gives no ATM-IV history"), "{out}");
    assert_eq!(desk.count("SELECT count(*) FROM iv_history"), 0);
    let v = fake.venue();
    assert!(v.stats.max_lines <= 5, "max lines {}", v.stats.max_lines);
    assert!(v.stats.max_lines >= 2, "a wave holds several lines");
    assert!(v.stats.violations.is_empty(), "{:?}", v.stats.violations);
    assert_eq!(v.stats.requests.get(&201), Some(&13));
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn delayed_data_is_fetched_and_said() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market {
        delayed: true,
        ..Market::default()
    });
    let desk = desk_for(&fake, &["AAPL"], "market_data = \"delayed\"\n");
    let out = fetch_ok(&desk);
    assert!(out.contains("delayed data"), "{out}");
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE abs(source_iv - 0.25) < 1e-9 AND bid > 0 AND ask > bid"),
        12
    );
}

#[test]
fn no_subscription_354_fails_the_whole_snapshot_with_what_to_do() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    // One option of the second symbol's chain: the first symbol's chain was read by then.
    fake.venue().faults.push(Fault::Error {
        msg: 201,
        symbol: Some("261204P06050000".into()),
        code: 354,
        text: "Requested market data is not subscribed.".into(),
        times: usize::MAX,
    });
    let desk = desk_for(&fake, &["AAPL", "SPX"], "");
    let out = fetch_fails(&desk);
    assert!(
        out.contains("354")
            && out.contains("SPXW 20261204 P 6050")
            && out.contains("ibkr.market_data = \"delayed\""),
        "{out}"
    );
    nothing_written(&desk);
    // A market without a subscription, asked for live data: 354 at the first snapshot.
    let fake = FakeIb::start(Market {
        delayed: true,
        ..Market::default()
    });
    let desk = desk_for(&fake, &["AAPL"], "");
    let out = fetch_fails(&desk);
    assert!(
        out.contains("354") && out.contains("AAPL snapshot"),
        "{out}"
    );
    nothing_written(&desk);
}

#[test]
fn an_unknown_symbol_is_200_and_nothing_is_written() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let desk = desk_for(&fake, &["AAPL", "XYZ"], "");
    let out = fetch_fails(&desk);
    assert!(
        out.contains("200")
            && out.contains("XYZ's contract details")
            && out.contains("check the symbol"),
        "{out}"
    );
    nothing_written(&desk);
}

#[test]
fn a_snapshot_without_its_end_times_out_and_nothing_is_written() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    fake.venue().faults.push(Fault::NoEnd { msg: 201 });
    let desk = desk_for(&fake, &["AAPL"], "");
    let t = Instant::now();
    let out = fetch_fails(&desk);
    assert!(
        out.contains("no TickSnapshotEnd") && out.contains("ibkr.snapshot_timeout_secs = 2"),
        "{out}"
    );
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    nothing_written(&desk);
    // The line is not left open: the snapshot is cancelled when it is given up.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fake.venue().stats.requests.contains_key(&202) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        fake.venue().stats.requests.contains_key(&202),
        "a cancel was sent"
    );
}

#[test]
fn a_competing_live_session_10197_fails_with_what_to_do() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    fake.venue().faults.push(Fault::Error {
        msg: 201,
        symbol: Some("AAPL".into()),
        code: 10197,
        text: "No market data during competing live session".into(),
        times: usize::MAX,
    });
    let desk = desk_for(&fake, &["AAPL"], "");
    let out = fetch_fails(&desk);
    assert!(
        out.contains("10197") && out.contains("log out of the other session"),
        "{out}"
    );
    nothing_written(&desk);
}

#[test]
fn historical_pacing_is_retryable_and_writes_nothing() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    fake.venue().faults.push(Fault::Error {
        msg: 220,
        symbol: Some("AAPL".into()),
        code: 162,
        text:
            "Historical Market Data Service error message:Historical data request pacing violation"
                .into(),
        times: usize::MAX,
    });
    let desk = desk_for(&fake, &["AAPL"], "");
    let out = fetch_fails(&desk);
    assert!(out.contains("rate limited"), "{out}");
    nothing_written(&desk);
}

#[test]
fn the_front_futures_contract_not_yet_expired_is_quoted() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let cfg = optdesk::config::IbkrConfig {
        port: fake.port(),
        connect_timeout_secs: 5,
        request_timeout_secs: 3,
        snapshot_timeout_secs: 2,
        reconnect_attempts: 0,
        ..Default::default()
    };
    let src = optdesk::ibkr::source::IbkrSource::new(
        &cfg,
        optdesk::sources::RiskFreeRate::Fixed {
            rate: 0.04,
            key: "ibkr.rate",
        },
    )
    .unwrap();
    assert_eq!(fake.venue().stats.connections, 0, "new() does not connect");
    let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let (f, bid, ask, last) = src.future_quote("MES", d("2026-12-01")).unwrap();
    assert_eq!(
        (
            f.symbol.as_str(),
            f.root.as_str(),
            f.contract_month,
            f.expiry,
            f.multiplier
        ),
        // The store's symbol (two year digits: unique over decades); IB's local
        // symbol is MESZ6.
        ("MESZ26", "MES", (2026, 12), d("2026-12-18"), 5)
    );
    assert_eq!(f.tick.to_f64(), 0.25);
    assert_eq!(
        (bid.to_f64(), ask.to_f64(), last.to_f64()),
        (6010.25, 6010.5, 6010.25)
    );
    // The day after the December contract's last trade: March.
    let (f, ..) = src.future_quote("MES", d("2026-12-19")).unwrap();
    assert_eq!((f.symbol.as_str(), f.expiry), ("MESH27", d("2027-03-19")));
    let e = src
        .future_quote("MES", d("2027-06-01"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no MES futures contract"), "{e}");
    assert_eq!(fake.venue().stats.connections, 1, "one connection, shared");
}

#[test]
fn only_the_nearest_expiries_and_the_band_are_asked_for() {
    let _w = Watchdog::new(LIMIT);
    let mut market = Market::default();
    // A mini-option class (multiplier 10) is listed too: left out, and said.
    let mini = fake_ib::priced_option(
        799_000_001,
        "AAPL",
        "AAPL7",
        "20261218",
        200.0,
        'C',
        200.0,
        0.25,
        fake_ib::DEFAULT_TODAY,
    );
    market.options.push(fake_ib::Opt {
        multiplier: 10.0,
        ..mini
    });
    let fake = FakeIb::start(market);
    let desk = desk_for(
        &fake,
        &["AAPL"],
        "max_expiries = 1\nmoneyness = 0.04\niv_history = false\n",
    );
    let out = fetch_ok(&desk);
    assert!(
        out.contains("non-standard multiplier left out: AAPL7 (×10)"),
        "{out}"
    );
    // 2026-12-18 only, the 200 strike only (190 and 210 are 5% away).
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE expiry = DATE '2026-12-18' AND strike = 200 AND root = 'AAPL'"),
        2
    );
    assert_eq!(desk.count("SELECT count(*) FROM option_quotes"), 2);
    let v = fake.venue();
    // Contract details: the underlying, then one expiry × class.
    assert_eq!(
        v.stats.requests.get(&209),
        Some(&2),
        "{:?}",
        v.stats.requests
    );
    assert_eq!(v.stats.requests.get(&201), Some(&3));
}

#[test]
fn a_request_without_its_end_marker_times_out_naming_the_bound() {
    let _w = Watchdog::new(LIMIT);
    for (msg, what) in [
        (209, "AAPL's contract details"),
        (278, "AAPL's option chain"),
        (220, "AAPL's daily TRADES bars"),
    ] {
        let fake = FakeIb::start(Market::default());
        fake.venue().faults.push(Fault::NoEnd { msg });
        let desk = desk_for(&fake, &["AAPL"], "");
        let t = Instant::now();
        let out = fetch_fails(&desk);
        assert!(
            out.contains(what) && out.contains("ibkr.request_timeout_secs = 2"),
            "{msg}: {out}"
        );
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
        nothing_written(&desk);
    }
}

#[test]
fn no_gateway_fails_quickly_naming_the_address_and_what_to_check() {
    let _w = Watchdog::new(LIMIT);
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let desk = Desk::new();
    let text = desk.desk_toml_for("ibkr", &["[ibkr]"]);
    desk.write_config(
        "desk.toml",
        &format!("{text}\n[ibkr]\nport = {port}\nsymbols = [\"AAPL\"]\nrate = 0.04\nconnect_timeout_secs = 3\nreconnect_attempts = 0\n"),
    );
    let t = Instant::now();
    let out = fetch_fails(&desk);
    assert!(
        out.contains(&format!("127.0.0.1:{port}")) && out.contains("API enabled"),
        "{out}"
    );
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    nothing_written(&desk);
}

#[test]
fn the_oldest_protobuf_server_version_213_works_too() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market {
        server_version: 213,
        ..Market::default()
    });
    let desk = desk_for(&fake, &["SPX"], "iv_history = false\n");
    let out = fetch_ok(&desk);
    assert!(out.contains("12 option quotes"), "{out}");
}

/// A desk fetching SPX and the MES futures from the fake gateway.
fn futures_desk_for(fake: &FakeIb) -> Desk {
    let desk = desk_for(fake, &["SPX"], "iv_history = false\n");
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nsymbols = [\"SPX\"]\nmax_expiry_days = 30\nhistory_sessions = 30\nfutures = [\"MES\"]\n",
    );
    desk
}

/// Daily bars of one futures month (its local symbol's), closes as given.
fn futures_bars(market: &mut Market, local: &str, closes: &[(&str, f64)]) {
    let bars = closes
        .iter()
        .map(|(d, c)| fake_ib::Bar {
            date: d.to_string(),
            open: c - 2.0,
            high: c + 5.0,
            low: c - 6.0,
            close: *c,
            volume: 150_000.0,
        })
        .collect();
    market
        .bars
        .insert((local.to_string(), "TRADES".to_string()), bars);
}

#[test]
fn futures_quotes_come_from_ib_at_the_snapshot_and_the_previous_close() {
    let _w = Watchdog::new(LIMIT);
    let mut market = Market::default();
    futures_bars(
        &mut market,
        "MESZ6",
        &[
            ("20261127", 5990.0),
            ("20261130", 6003.5),
            ("20261201", 6011.0),
        ],
    );
    futures_bars(
        &mut market,
        "MESH7",
        &[
            ("20261127", 6040.0),
            ("20261130", 6052.75),
            ("20261201", 6061.0),
        ],
    );
    let fake = FakeIb::start(market);
    let desk = futures_desk_for(&fake);
    let out = fetch_ok(&desk);
    assert!(out.contains("futures quotes MESZ26, MESH27"), "{out}");
    // At the snapshot: IB's bid, ask and last of the front and next contract.
    assert_eq!(
        desk.count("SELECT count(*) FROM futures_quotes WHERE as_of = DATE '2026-12-01' AND source = 'ibkr' AND ((contract = 'MESZ26' AND expiry = DATE '2026-12-18' AND multiplier = 5 AND bid = 6010.25 AND ask = 6010.5 AND last = 6010.25) OR (contract = 'MESH27' AND expiry = DATE '2027-03-19' AND bid = 6060 AND ask = 6060.25 AND last = 6060))"),
        2,
        "{out}"
    );
    // At the previous session's close: the daily bar's close of that date (the
    // settlement), as bid, ask and last.
    assert_eq!(
        desk.count("SELECT count(*) FROM futures_quotes WHERE as_of = DATE '2026-11-30' AND quote_time = TIMESTAMP '2026-11-30 16:00:00' AND source = 'ibkr' AND ((contract = 'MESZ26' AND bid = 6003.5 AND ask = 6003.5 AND last = 6003.5) OR (contract = 'MESH27' AND bid = 6052.75 AND ask = 6052.75 AND last = 6052.75))"),
        2,
        "{out}"
    );
    assert_eq!(desk.count("SELECT count(*) FROM futures_quotes"), 4);
    let v = fake.venue();
    assert!(v.stats.violations.is_empty(), "{:?}", v.stats.violations);
    drop(v);
    // IB has no daily bars of the futures: the snapshot's quotes are stored, no
    // settlement is, and the summary names the contracts.
    let fake = FakeIb::start(Market::default());
    let desk = futures_desk_for(&fake);
    let out = fetch_ok(&desk);
    assert!(
        out.contains("ibkr gives no futures quotes (MESZ26, MESH27)"),
        "{out}"
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM futures_quotes WHERE as_of = DATE '2026-12-01'"),
        2
    );
    assert_eq!(desk.count("SELECT count(*) FROM futures_quotes"), 2);
}

#[test]
fn a_futures_month_ib_does_not_list_fails_the_fetch_naming_it() {
    let _w = Watchdog::new(LIMIT);
    let mut market = Market::default();
    // IB lists December only: March (the next contract) is unknown.
    market.futures.retain(|f| f.local_symbol == "MESZ6");
    let fake = FakeIb::start(market);
    let desk = futures_desk_for(&fake);
    let out = fetch_fails(&desk);
    assert!(
        out.contains("200") && out.contains("MESH27") && out.contains("MES FUT 202703"),
        "{out}"
    );
    nothing_written(&desk);
    assert_eq!(desk.count("SELECT count(*) FROM futures_quotes"), 0);
}
