//! Self-tests of the fake IB gateway (tests/fake_ib): each drives the fake with the REAL
//! `ibapi` 5.5.0 blocking client, which proves the fake speaks exactly what ibapi expects;
//! the property tests at the end check the fake's framing and protobuf decoding.
//! Every test has a watchdog: several ibapi calls wait without a time bound.

mod fake_ib;

use std::time::{Duration, Instant};

use fake_ib::{proto, FakeIb, Fault, Market, Watchdog};
use ibapi::client::blocking::Client;
use ibapi::contracts::{Contract, OptionRight, SecurityType};
use ibapi::market_data::realtime::TickTypes;
use ibapi::market_data::MarketDataType;
use ibapi::subscriptions::SubscriptionItem;
use ibapi::Error;

const LIMIT: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(5);

fn connect(fake: &FakeIb, client_id: i32) -> Result<Client, Error> {
    Client::builder()
        .address(fake.address())
        .client_id(client_id)
        .one_shot_timeout(WAIT)
        .max_reconnect_attempts(0)
        .connect()
}

fn client(fake: &FakeIb) -> Client {
    connect(fake, 7).expect("connect to the fake")
}

/// Reads a market-data subscription until TickSnapshotEnd; a terminal error is returned.
fn snapshot(client: &Client, contract: &Contract) -> Result<Vec<TickTypes>, Error> {
    let sub = client.market_data(contract).snapshot().subscribe()?;
    let deadline = Instant::now() + WAIT;
    let mut ticks = Vec::new();
    while Instant::now() < deadline {
        match sub.next_timeout(Duration::from_millis(200)) {
            Some(Ok(SubscriptionItem::Data(TickTypes::SnapshotEnd))) => return Ok(ticks),
            Some(Ok(SubscriptionItem::Data(t))) => ticks.push(t),
            Some(Ok(SubscriptionItem::Notice(_))) => {}
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    panic!("no TickSnapshotEnd within {WAIT:?}; got {ticks:?}")
}

fn notice_code(e: &Error) -> Option<i32> {
    match e {
        Error::Notice(n) => Some(n.code),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------------

#[test]
fn connect_reports_server_version_accounts_and_next_order_id() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let c = client(&fake);
    assert_eq!(c.server_version(), 226);
    assert_eq!(c.handshake_managed_accounts(), ["DU1234567".to_string()]);
    assert_eq!(c.next_order_id(), 9000);
    assert!(
        c.connection_time().is_some(),
        "the ack's time and zone parse"
    );
    drop(c);
    let v = fake.venue();
    assert_eq!(v.stats.connections, 1);
    assert_eq!(v.stats.requests.get(&271), Some(&1), "one StartApi");
}

#[test]
fn server_version_212_is_refused_and_213_and_220_accepted() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market {
        server_version: 212,
        ..Market::default()
    });
    match connect(&fake, 7) {
        Err(Error::ServerVersion(need, have, _)) => assert_eq!((need, have), (213, 212)),
        other => panic!("expected ServerVersion, got {:?}", other.map(|_| ())),
    }
    // 213 is the protobuf floor; 220 is what a live paper gateway reported (IBKR.md §1).
    for sv in [213, 220] {
        let fake = FakeIb::start(Market {
            server_version: sv,
            ..Market::default()
        });
        assert_eq!(client(&fake).server_version(), sv);
    }
}

#[test]
fn client_id_in_use_is_refused() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    fake.venue().faults.push(Fault::ClientIdInUse);
    match connect(&fake, 7) {
        Err(Error::ClientIdInUse { .. }) => {}
        other => panic!("expected ClientIdInUse, got {:?}", other.map(|_| ())),
    }
    fake.venue().faults.clear();
    client(&fake);
}

// ---------------------------------------------------------------------------------------------
// Contracts and chains
// ---------------------------------------------------------------------------------------------

#[test]
fn contract_details_for_stock_option_future_and_a_200() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let c = client(&fake);
    let details = |contract: &Contract| {
        c.contract_details_stream(contract)
            .subscribe()?
            .collect_to_end_within(WAIT)
    };

    let stk = details(&Contract::stock("AAPL").build()).expect("AAPL");
    assert_eq!(stk.len(), 1);
    assert_eq!(stk[0].contract.contract_id, 265598);
    assert_eq!(stk[0].contract.security_type, SecurityType::Stock);

    let opt = details(&Contract::option(
        "AAPL",
        "20261218",
        200.0,
        OptionRight::Call,
    ))
    .expect("AAPL call");
    assert_eq!(opt.len(), 1);
    let o = &opt[0].contract;
    assert_eq!((o.strike, o.right), (200.0, Some(OptionRight::Call)));
    assert_eq!(o.multiplier, "100");
    assert_eq!(o.trading_class, "AAPL");
    assert_eq!(opt[0].under_contract_id, 265598);

    // An OPT request without expiry/strike/right returns every matching option.
    let all = details(&Contract {
        symbol: "AAPL".into(),
        security_type: SecurityType::Option,
        ..Default::default()
    })
    .expect("chain");
    assert_eq!(all.len(), 12);
    // Trading class separates SPX monthlies from SPXW weeklies.
    let spxw = details(&Contract {
        symbol: "SPX".into(),
        security_type: SecurityType::Option,
        trading_class: "SPXW".into(),
        ..Default::default()
    })
    .expect("SPXW");
    assert!(spxw.iter().all(|d| d.contract.trading_class == "SPXW"
        && d.contract.last_trade_date_or_contract_month == "20261204"));
    assert_eq!(spxw.len(), 6);

    let fut = details(&Contract::futures("MES").any_month().build()).expect("MES");
    assert_eq!(fut.len(), 2);
    let dec = details(&Contract {
        symbol: "MES".into(),
        security_type: SecurityType::Future,
        last_trade_date_or_contract_month: "202612".into(),
        exchange: "CME".into(),
        ..Default::default()
    })
    .expect("MESZ6");
    assert_eq!(dec.len(), 1);
    assert_eq!(dec[0].contract.local_symbol, "MESZ6");
    assert_eq!(dec[0].contract.multiplier, "5");

    let err = details(&Contract::stock("NOPE").build()).expect_err("unknown symbol");
    assert_eq!(notice_code(&err), Some(200), "{err:?}");
    // The client sends CancelContractData (306) after the 200; the fake tolerates it and the
    // connection keeps working.
    assert_eq!(
        details(&Contract::stock("AAPL").build())
            .expect("still alive")
            .len(),
        1
    );
    drop(c);
    assert!(fake.venue().log.is_empty(), "{:?}", fake.venue().log);
}

#[test]
fn option_chain_has_one_row_per_exchange_and_trading_class() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let c = client(&fake);
    let rows = c
        .option_chain("SPX", SecurityType::Index, 416904)
        .subscribe()
        .expect("chain")
        .collect_to_end_within(WAIT)
        .expect("rows");
    assert_eq!(rows.len(), 4, "SMART and CBOE × SPX and SPXW: {rows:?}");
    let spxw = rows
        .iter()
        .find(|r| r.exchange == "SMART" && r.trading_class == "SPXW")
        .expect("SPXW row");
    assert_eq!(spxw.expirations, ["20261204"]);
    assert_eq!(spxw.strikes, [5950.0, 6000.0, 6050.0]);
    assert_eq!(spxw.multiplier, "100");
    assert_eq!(spxw.underlying_contract_id, 416904);

    let aapl = c
        .option_chain("AAPL", SecurityType::Stock, 265598)
        .subscribe()
        .expect("chain")
        .collect_to_end_within(WAIT)
        .expect("rows");
    assert_eq!(aapl.len(), 2);
    assert_eq!(aapl[0].expirations, ["20261218", "20270115"]);

    let err = c
        .option_chain("AAPL", SecurityType::Stock, 0)
        .subscribe()
        .expect("chain")
        .collect_to_end_within(WAIT)
        .expect_err("321");
    assert_eq!(notice_code(&err), Some(321));
}

// ---------------------------------------------------------------------------------------------
// Market data
// ---------------------------------------------------------------------------------------------

#[test]
fn stock_snapshot_has_bid_ask_last_and_ends() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let c = client(&fake);
    let ticks = snapshot(&c, &Contract::stock("AAPL").build()).expect("snapshot");
    let price = |tt: i32| {
        ticks.iter().find_map(|t| match t {
            TickTypes::PriceSize(p) if p.price_tick_type as i32 == tt => Some((p.price, p.size)),
            TickTypes::Price(p) if p.tick_type as i32 == tt => Some((p.price, 0.0)),
            _ => None,
        })
    };
    assert_eq!(price(1), Some((199.95, 300.0)));
    assert_eq!(price(2), Some((200.05, 400.0)));
    assert_eq!(price(4).map(|p| p.0), Some(200.0));
    assert!(ticks
        .iter()
        .any(|t| matches!(t, TickTypes::MarketDataType(MarketDataType::Realtime))));
    drop(c);
    let v = fake.venue();
    assert_eq!(v.stats.max_lines, 1);
    assert_eq!(v.active_lines(), 0, "the snapshot released its line");
}

#[test]
fn option_snapshot_carries_greeks_and_a_trailing_sentinel() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let expected = fake
        .venue()
        .market
        .option("AAPL", "20261218", 200.0, 'C')
        .cloned()
        .expect("option");
    let c = client(&fake);
    let ticks = snapshot(
        &c,
        &Contract::option("AAPL", "20261218", 200.0, OptionRight::Call),
    )
    .expect("snapshot");
    let comps: Vec<_> = ticks
        .iter()
        .filter_map(|t| match t {
            TickTypes::OptionComputation(o) => Some(o.clone()),
            _ => None,
        })
        .collect();
    let model = comps
        .iter()
        .filter(|o| o.field as i32 == 13)
        .find_map(|o| o.delta)
        .expect("model delta");
    assert!((model - expected.delta).abs() < 1e-12);
    assert!(comps
        .iter()
        .any(|o| o.field as i32 == 10 && o.implied_volatility == Some(expected.iv)));
    let last = comps.last().expect("computations");
    assert!(
        last.implied_volatility.is_none() && last.delta.is_none(),
        "TWS-like all-sentinel computation last: {last:?}"
    );
}

#[test]
fn future_snapshot_and_unknown_contract() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let c = client(&fake);
    let mes = Contract {
        symbol: "MES".into(),
        security_type: SecurityType::Future,
        last_trade_date_or_contract_month: "202612".into(),
        exchange: "CME".into(),
        ..Default::default()
    };
    let ticks = snapshot(&c, &mes).expect("future");
    assert!(ticks
        .iter()
        .any(|t| matches!(t, TickTypes::PriceSize(p) if p.price == 6010.25)));
    let err = snapshot(&c, &Contract::stock("NOPE").build()).expect_err("200");
    assert_eq!(notice_code(&err), Some(200));
}

#[test]
fn snapshot_rejected_with_354_surfaces_as_an_error() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    fake.venue().faults.push(Fault::Error {
        msg: 201,
        symbol: Some("AAPL".into()),
        code: 354,
        text: "Requested market data is not subscribed.".into(),
        times: 1,
    });
    let c = client(&fake);
    let err = snapshot(&c, &Contract::stock("AAPL").build()).expect_err("354");
    assert_eq!(notice_code(&err), Some(354));
    // `times: 1`: the next request gets data. (ibapi's snapshot_once would have swallowed the
    // 354 and returned Ok(vec![]), IBKR.md §2.3; the subscribe + next_timeout loop sees it.)
    snapshot(&c, &Contract::stock("AAPL").build()).expect("second try");
    assert!(fake.venue().faults.is_empty());
}

#[test]
fn delayed_market_needs_type_3_and_then_sends_delayed_ticks() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market {
        delayed: true,
        ..Market::default()
    });
    let c = client(&fake);
    let call = Contract::option("AAPL", "20261218", 200.0, OptionRight::Call);
    let err = snapshot(&c, &call).expect_err("live is not subscribed");
    assert_eq!(notice_code(&err), Some(354));

    c.switch_market_data_type(MarketDataType::Delayed)
        .expect("type 3");
    let ticks = snapshot(&c, &call).expect("delayed snapshot (10167 is only a notice)");
    assert!(ticks
        .iter()
        .any(|t| matches!(t, TickTypes::MarketDataType(MarketDataType::Delayed))));
    assert!(ticks
        .iter()
        .any(|t| matches!(t, TickTypes::PriceSize(p) if p.price_tick_type as i32 == 66)));
    assert!(ticks
        .iter()
        .any(|t| matches!(t, TickTypes::PriceSize(p) if p.price_tick_type as i32 == 67)));
    assert!(ticks.iter().any(|t| matches!(t, TickTypes::OptionComputation(o) if o.field as i32 == 83 && o.delta.is_some())));
    assert!(!ticks
        .iter()
        .any(|t| matches!(t, TickTypes::PriceSize(p) if p.price_tick_type as i32 == 1)));
}

#[test]
fn streaming_market_data_holds_a_line_until_cancelled() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let c = client(&fake);
    let contract = Contract::stock("AAPL").build();
    let sub = c.market_data(&contract).subscribe().expect("stream");
    let first = sub.next_timeout(WAIT);
    assert!(matches!(first, Some(Ok(_))), "{first:?}");
    assert_eq!(fake.venue().active_lines(), 1);
    drop(sub); // sends CancelMarketData (202)
    let deadline = Instant::now() + WAIT;
    while fake.venue().active_lines() != 0 {
        assert!(Instant::now() < deadline, "line not released");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(fake.venue().stats.max_lines, 1);
}

// ---------------------------------------------------------------------------------------------
// Historical data
// ---------------------------------------------------------------------------------------------

#[test]
fn daily_bars_and_implied_volatility_bars() {
    use ibapi::market_data::historical::{BarSize, ToDuration, WhatToShow};
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let c = client(&fake);
    let aapl = Contract::stock("AAPL").build();
    // No end date: the fake ends at its last bar (2026-12-01); 30 calendar days ending then
    // hold 22 weekdays (2026-11-02 .. 2026-12-01).
    let bars = c
        .historical_data(&aapl, BarSize::Day)
        .duration(30.days())
        .fetch()
        .expect("bars");
    assert_eq!(bars.bars.len(), 22, "{:?}", bars.bars.first());
    let expected = fake.venue().market.bars[&("AAPL".to_string(), "TRADES".to_string())]
        .last()
        .cloned()
        .expect("bars");
    assert_eq!(bars.bars.last().map(|b| b.close), Some(expected.close));

    let iv = c
        .historical_data(&aapl, BarSize::Day)
        .duration(1.months())
        .what_to_show(WhatToShow::OptionImpliedVolatility)
        .fetch()
        .expect("iv bars");
    assert!(!iv.bars.is_empty() && iv.bars.iter().all(|b| b.close > 0.1 && b.close < 0.4));

    // The same request again within 15 s is a pacing violation (162), recorded in the stats.
    let err = c
        .historical_data(&aapl, BarSize::Day)
        .duration(30.days())
        .fetch()
        .expect_err("pacing");
    assert_eq!(notice_code(&err), Some(162));
    let missing = c
        .historical_data(&Contract::stock("MSFT").build(), BarSize::Day)
        .duration(5.days())
        .fetch()
        .expect_err("no data");
    assert_eq!(notice_code(&missing), Some(162));
    drop(c);
    let v = fake.venue();
    assert_eq!(v.stats.violations.len(), 1, "{:?}", v.stats.violations);
    assert!(v.stats.violations[0].contains("pacing"));
}

#[test]
fn a_fault_without_end_marker_times_out_in_the_client() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    fake.venue().faults.push(Fault::NoEnd { msg: 209 });
    let c = client(&fake);
    let sub = c
        .contract_details_stream(&Contract::stock("AAPL").build())
        .subscribe()
        .expect("request");
    let err = sub
        .collect_to_end_within(Duration::from_millis(300))
        .expect_err("no end marker");
    assert!(matches!(err, Error::Timeout), "{err:?}");
}

#[test]
fn wire_ids_used_by_the_fake_match_ibapi() {
    use fake_ib::wire;
    use ibapi::{IncomingMessages as In, OutgoingMessages as Out};
    assert_eq!(Out::RequestMarketData as i32 + 200, wire::REQ_MKT_DATA);
    assert_eq!(
        Out::RequestSecurityDefinitionOptionalParameters as i32 + 200,
        wire::REQ_SEC_DEF_OPT_PARAMS
    );
    assert_eq!(
        Out::CancelContractData as i32 + 200,
        wire::CANCEL_CONTRACT_DATA
    );
    assert_eq!(Out::StartApi as i32 + 200, wire::START_API);
    assert_eq!(
        In::HistoricalDataEnd as i32 + 200,
        wire::HISTORICAL_DATA_END
    );
    assert_eq!(In::CommissionsReport as i32 + 200, wire::COMMISSION_REPORT);
    assert_eq!(In::TickReqParams as i32 + 200, wire::TICK_REQ_PARAMS);
    let _ = proto::ContractDataEnd::default();
}

#[test]
fn bars_are_selected_by_duration_ending_at_the_end_date() {
    let bars = &Market::default().bars[&("AAPL".to_string(), "TRADES".to_string())];
    let (sel, start, end) = fake_ib::select_bars(bars, "20261120 16:00:00 UTC", "1 W");
    assert_eq!(
        sel.iter().map(|b| b.date.as_str()).collect::<Vec<_>>(),
        ["20261116", "20261117", "20261118", "20261119", "20261120"]
    );
    assert_eq!(
        (start.as_str(), end.as_str()),
        ("20261113-16:00:00", "20261120-16:00:00")
    );
    let (all, _, _) = fake_ib::select_bars(bars, "", "1 Y");
    assert_eq!(all.len(), bars.len());
    let intraday = vec![
        fake_ib::Bar {
            date: "1764000000".into(),
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 0.0,
        },
        fake_ib::Bar {
            date: "1764003600".into(),
            open: 2.0,
            high: 2.0,
            low: 2.0,
            close: 2.0,
            volume: 0.0,
        },
    ];
    let (sel, _, _) = fake_ib::select_bars(&intraday, "20251124-17:00:00", "3600 S");
    assert_eq!(sel.len(), 1);
    assert_eq!(sel[0].close, 2.0);
}

// ---------------------------------------------------------------------------------------------
// Orders
// ---------------------------------------------------------------------------------------------

use ibapi::accounts::types::AccountGroup;
use ibapi::accounts::{AccountSummaryResult, PositionUpdate};
use ibapi::orders::{
    order_builder, Action, ExecutionFilter, Executions, OrderStatusKind, Orders, PlaceOrder,
};

/// Reads a place_order subscription (it never ends on its own, §2.5) until `done` says so.
fn read_order(
    sub: &ibapi::subscriptions::Subscription<PlaceOrder>,
    done: impl Fn(&[PlaceOrder]) -> bool,
) -> Vec<PlaceOrder> {
    let deadline = Instant::now() + WAIT;
    let mut items = Vec::new();
    while !done(&items) {
        assert!(Instant::now() < deadline, "order events so far: {items:#?}");
        match sub.next_timeout(Duration::from_millis(100)) {
            Some(Ok(SubscriptionItem::Data(item))) => items.push(item),
            Some(Ok(SubscriptionItem::Notice(_))) | None => {}
            Some(Err(e)) => panic!("order stream error {e:?} after {items:#?}"),
        }
    }
    items
}

fn statuses(items: &[PlaceOrder]) -> Vec<OrderStatusKind> {
    items
        .iter()
        .filter_map(|i| match i {
            PlaceOrder::OrderStatus(s) => Some(s.status.clone()),
            _ => None,
        })
        .collect()
}

fn commissions(items: &[PlaceOrder]) -> usize {
    items
        .iter()
        .filter(|i| matches!(i, PlaceOrder::CommissionReport(_)))
        .count()
}

fn executions_of(items: &[PlaceOrder]) -> Vec<&ibapi::orders::ExecutionData> {
    items
        .iter()
        .filter_map(|i| match i {
            PlaceOrder::ExecutionData(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn limit(action: Action, qty: f64, price: f64, order_ref: &str) -> ibapi::orders::Order {
    let mut o = order_builder::limit_order(action, qty, price);
    o.order_ref = order_ref.into();
    o
}

#[test]
fn single_option_limit_order_fills_with_execution_then_commission() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let opt = fake
        .venue()
        .market
        .option("AAPL", "20261218", 200.0, 'C')
        .cloned()
        .expect("option");
    let mid = (opt.bid + opt.ask) / 2.0;
    let c = client(&fake);
    let id = c.next_order_id();
    let contract = Contract::option("AAPL", "20261218", 200.0, OptionRight::Call);
    let sub = c
        .place_order(id, &contract, &limit(Action::Buy, 2.0, mid, "desk-1"))
        .expect("place");
    let items = read_order(&sub, |i| commissions(i) == 1);
    // §2.5: PreSubmitted, then the execution, Filled, and the commission after its execution.
    assert_eq!(
        statuses(&items),
        [OrderStatusKind::PreSubmitted, OrderStatusKind::Filled]
    );
    let kinds: Vec<&str> = items
        .iter()
        .map(|i| match i {
            PlaceOrder::OpenOrder(_) => "open",
            PlaceOrder::OrderStatus(_) => "status",
            PlaceOrder::ExecutionData(_) => "exec",
            PlaceOrder::CommissionReport(_) => "commission",
        })
        .collect();
    assert_eq!(
        kinds,
        ["open", "status", "exec", "status", "open", "commission"]
    );
    let execs = executions_of(&items);
    let e = &execs[0].execution;
    assert_eq!((e.order_id, e.shares, e.price), (id, 2.0, mid));
    assert_eq!(e.order_reference, "desk-1");
    assert_eq!(e.client_id, 7);
    assert_eq!(execs[0].request_id, -1);
    assert_eq!(execs[0].contract.contract_id, opt.con_id);
    let PlaceOrder::CommissionReport(cr) = items.last().expect("items") else {
        unreachable!()
    };
    assert_eq!(cr.execution_id, e.execution_id);
    assert!((cr.commission - 1.30).abs() < 1e-9);
    let PlaceOrder::OpenOrder(open) = &items[4] else {
        unreachable!()
    };
    assert_eq!(open.order.order_ref, "desk-1");
    assert_eq!(open.order.client_id, 7);
    drop(sub);
    drop(c);
    let v = fake.venue();
    assert_eq!(v.position(opt.con_id), 2.0);
    assert!((v.cash - (100_000.0 - 2.0 * mid * 100.0 - 1.30)).abs() < 1e-6);
    assert_eq!(v.stats.placed_refs.get("desk-1"), Some(&1));
    assert_eq!(v.orders[&id].status, "Filled");
}

#[test]
fn bag_vertical_fills_with_one_execution_per_leg_and_one_for_the_bag() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let (long, short) = {
        let v = fake.venue();
        (
            v.market
                .option("AAPL", "20261218", 190.0, 'C')
                .cloned()
                .expect("190C"),
            v.market
                .option("AAPL", "20261218", 210.0, 'C')
                .cloned()
                .expect("210C"),
        )
    };
    let net_mid = (long.bid + long.ask) / 2.0 - (short.bid + short.ask) / 2.0;
    let c = client(&fake);
    let bag = Contract::spread()
        .symbol("AAPL")
        .vertical(long.con_id, short.con_id)
        .build()
        .expect("bag");
    let mut order = order_builder::combo_limit_order(Action::Buy, 1.0, net_mid);
    order.order_ref = "desk-bag".into();
    let id = c.next_order_id();
    let sub = c.place_order(id, &bag, &order).expect("place");
    let items = read_order(&sub, |i| commissions(i) == 3);
    assert_eq!(
        statuses(&items),
        [OrderStatusKind::PreSubmitted, OrderStatusKind::Filled]
    );
    let execs = executions_of(&items);
    assert_eq!(execs.len(), 3);
    let legs: Vec<(i32, ibapi::orders::ExecutionSide, f64)> = execs
        .iter()
        .map(|e| (e.contract.contract_id, e.execution.side, e.execution.price))
        .collect();
    assert_eq!(legs[0].0, long.con_id);
    assert_eq!(legs[0].1, ibapi::orders::ExecutionSide::Bought);
    assert_eq!(legs[1].0, short.con_id);
    assert_eq!(legs[1].1, ibapi::orders::ExecutionSide::Sold);
    assert_eq!(execs[2].contract.security_type, SecurityType::Spread);
    assert!(
        (legs[0].2 - legs[1].2 - net_mid).abs() < 1e-9,
        "leg prices net to the combo's: {legs:?}"
    );
    assert!(execs
        .iter()
        .all(|e| e.execution.order_id == id && e.execution.order_reference == "desk-bag"));
    drop(sub);
    drop(c);
    let v = fake.venue();
    assert_eq!(
        (v.position(long.con_id), v.position(short.con_id)),
        (1.0, -1.0)
    );
    assert!(
        (v.cash - (100_000.0 - net_mid * 100.0 - 1.30)).abs() < 1e-6,
        "cash {}",
        v.cash
    );
}

#[test]
fn resting_order_is_modified_then_cancelled() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market {
        fill_at: f64::INFINITY,
        ..Market::default()
    });
    let c = client(&fake);
    let contract = Contract::option("AAPL", "20270115", 210.0, OptionRight::Put);
    let id = c.next_order_id();
    let sub = c
        .place_order(id, &contract, &limit(Action::Sell, 1.0, 1.0, "desk-rest"))
        .expect("place");
    let items = read_order(&sub, |i| statuses(i).contains(&OrderStatusKind::Submitted));
    assert_eq!(
        statuses(&items),
        [OrderStatusKind::PreSubmitted, OrderStatusKind::Submitted]
    );
    drop(sub);

    // Same id again = a modification: not a new placement.
    let sub = c
        .place_order(id, &contract, &limit(Action::Sell, 1.0, 0.5, "desk-rest"))
        .expect("modify");
    read_order(&sub, |i| statuses(i).contains(&OrderStatusKind::Submitted));
    drop(sub);
    assert_eq!(fake.venue().orders[&id].limit, Some(0.5));
    assert_eq!(fake.venue().stats.placed_refs.get("desk-rest"), Some(&1));

    let open = c
        .all_open_orders()
        .expect("open orders")
        .collect_to_end_within(WAIT)
        .expect("open orders end");
    assert!(open.iter().any(|o| matches!(o, Orders::OrderData(d) if d.order_id == id && d.order.order_ref == "desk-rest")));

    let cancel = c.cancel_order(id, "").expect("cancel");
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !seen.contains(&OrderStatusKind::Cancelled) {
        assert!(Instant::now() < deadline, "{seen:?}");
        if let Some(Ok(SubscriptionItem::Data(ibapi::orders::CancelOrder::OrderStatus(s)))) =
            cancel.next_timeout(Duration::from_millis(100))
        {
            seen.push(s.status);
        }
    }
    assert_eq!(
        seen,
        [OrderStatusKind::PendingCancel, OrderStatusKind::Cancelled]
    );
    drop(cancel);

    let unknown = c.cancel_order(424242, "").expect("cancel unknown");
    match unknown.next_timeout(WAIT) {
        Some(Err(e)) => assert_eq!(notice_code(&e), Some(10147)),
        other => panic!("expected 10147, got {other:?}"),
    }
    // A new order below the next valid id is a duplicate (103).
    let dup = c
        .place_order(id - 1, &contract, &limit(Action::Sell, 1.0, 1.0, "dup"))
        .expect("place");
    match dup.next_timeout(WAIT) {
        Some(Err(e)) => assert_eq!(notice_code(&e), Some(103)),
        other => panic!("expected 103, got {other:?}"),
    }
    assert_eq!(c.next_valid_order_id().expect("ids"), id + 1);
}

#[test]
fn resting_order_fills_when_the_market_moves() {
    let _w = Watchdog::new(LIMIT);
    // fill_at 1: a limit fills only at the natural price.
    let fake = FakeIb::start(Market {
        fill_at: 1.0,
        ..Market::default()
    });
    let opt = fake
        .venue()
        .market
        .option("AAPL", "20261218", 200.0, 'P')
        .cloned()
        .expect("option");
    let mid = (opt.bid + opt.ask) / 2.0;
    let c = client(&fake);
    let id = c.next_order_id();
    let contract = Contract::option("AAPL", "20261218", 200.0, OptionRight::Put);
    let sub = c
        .place_order(id, &contract, &limit(Action::Buy, 1.0, mid, "desk-move"))
        .expect("place");
    read_order(&sub, |i| statuses(i).contains(&OrderStatusKind::Submitted));
    assert_eq!(fake.venue().orders[&id].status, "Submitted");
    {
        // The offer comes down to our limit.
        let mut v = fake.venue();
        let o = v
            .market
            .options
            .iter_mut()
            .find(|o| o.con_id == opt.con_id)
            .expect("option");
        o.ask = mid;
        o.bid = mid - 0.1;
    }
    let items = read_order(&sub, |i| commissions(i) == 1);
    assert!(statuses(&items).contains(&OrderStatusKind::Filled));
    assert_eq!(executions_of(&items)[0].execution.price, mid);
    drop(sub);
    drop(c);
    assert_eq!(fake.venue().position(opt.con_id), 1.0);
}

#[test]
fn order_rejected_by_a_fault() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    fake.venue().faults.push(Fault::Error {
        msg: 203,
        symbol: Some("reject-me".into()),
        code: 201,
        text: "Order rejected - reason:fake".into(),
        times: usize::MAX,
    });
    let c = client(&fake);
    let contract = Contract::option("AAPL", "20261218", 200.0, OptionRight::Call);
    let sub = c
        .place_order(
            c.next_order_id(),
            &contract,
            &limit(Action::Buy, 1.0, 50.0, "x-reject-me"),
        )
        .expect("place");
    match sub.next_timeout(WAIT) {
        Some(Err(e)) => assert_eq!(notice_code(&e), Some(201)),
        other => panic!("expected 201, got {other:?}"),
    }
    assert!(fake.venue().orders.is_empty());
}

#[test]
fn positions_account_summary_and_account_updates() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let opt = fake
        .venue()
        .market
        .option("AAPL", "20261218", 190.0, 'P')
        .cloned()
        .expect("option");
    let c = client(&fake);
    let contract = Contract::option("AAPL", "20261218", 190.0, OptionRight::Put);
    let sub = c
        .place_order(
            c.next_order_id(),
            &contract,
            &limit(Action::Sell, 3.0, opt.bid, "desk-pos"),
        )
        .expect("place");
    read_order(&sub, |i| commissions(i) == 1);
    drop(sub);

    let positions = c.positions().expect("positions");
    let batch = positions
        .next_batch(Duration::from_millis(300))
        .expect("batch")
        .expect("rows");
    assert!(matches!(batch.last(), Some(PositionUpdate::PositionEnd)));
    let PositionUpdate::Position(p) = &batch[0] else {
        panic!("{batch:?}")
    };
    assert_eq!(
        (p.contract.contract_id, p.position, p.account.as_str()),
        (opt.con_id, -3.0, "DU1234567")
    );
    assert!(
        (p.average_cost - opt.bid * 100.0).abs() < 1e-9,
        "avg cost is per contract × multiplier"
    );
    drop(positions);

    let tags = [
        "NetLiquidation",
        "TotalCashValue",
        "BuyingPower",
        "AccountType",
    ];
    let summary = c
        .account_summary(&AccountGroup("All".into()), &tags)
        .expect("summary");
    let rows = summary
        .next_batch(Duration::from_millis(300))
        .expect("batch")
        .expect("rows");
    assert!(matches!(rows.last(), Some(AccountSummaryResult::End)));
    let value = |tag: &str| {
        rows.iter().find_map(|r| match r {
            AccountSummaryResult::Summary(s) if s.tag == tag => Some(s.value.clone()),
            _ => None,
        })
    };
    assert_eq!(value("AccountType").as_deref(), Some("INDIVIDUAL"));
    let cash: f64 = value("TotalCashValue")
        .expect("cash")
        .parse()
        .expect("number");
    assert!((cash - (100_000.0 + 3.0 * opt.bid * 100.0 - 1.95)).abs() < 0.01);
    assert!(value("NetLiquidation").is_some() && value("BuyingPower").is_some());
    drop(summary);

    let updates = c
        .account_updates(&ibapi::accounts::types::AccountId("DU1234567".into()))
        .expect("updates");
    let mut n = 0;
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline);
        match updates.next_timeout(Duration::from_millis(100)) {
            Some(Ok(SubscriptionItem::Data(ibapi::accounts::AccountUpdate::End))) => break,
            Some(Ok(_)) => n += 1,
            Some(Err(e)) => panic!("{e:?}"),
            None => {}
        }
    }
    assert!(
        n > 5,
        "account values and the portfolio row arrive before the end"
    );
    drop(updates);
    drop(c);
    assert!(fake.venue().log.is_empty(), "{:?}", fake.venue().log);
}

#[test]
fn executions_and_completed_orders_after_a_reconnect() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let opt = fake
        .venue()
        .market
        .option("AAPL", "20270115", 200.0, 'C')
        .cloned()
        .expect("option");
    {
        let c = client(&fake);
        let contract = Contract::option("AAPL", "20270115", 200.0, OptionRight::Call);
        let sub = c
            .place_order(
                c.next_order_id(),
                &contract,
                &limit(Action::Buy, 1.0, opt.ask, "desk-recon"),
            )
            .expect("place");
        read_order(&sub, |i| commissions(i) == 1);
    }
    let c = client(&fake);
    assert_eq!(
        c.next_order_id(),
        9001,
        "the venue raised NextValidId past the used id"
    );
    let execs = c
        .executions(ExecutionFilter::default())
        .expect("executions")
        .collect_to_end_within(WAIT)
        .expect("end");
    let data: Vec<_> = execs
        .iter()
        .filter_map(|e| match e {
            Executions::ExecutionData(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].execution.order_reference, "desk-recon");
    assert_ne!(
        data[0].request_id, -1,
        "executions() answers carry the request id"
    );
    assert!(execs.iter().any(|e| matches!(e, Executions::CommissionReport(r) if r.execution_id == data[0].execution.execution_id)));

    let done = c
        .completed_orders(false)
        .expect("completed")
        .collect_to_end_within(WAIT)
        .expect("end");
    let Some(Orders::OrderData(d)) = done.first() else {
        panic!("{done:?}")
    };
    // ibapi sets OrderData::order_id to -1 for completed orders; the id is in the Order.
    assert_eq!(d.order_id, -1);
    assert_eq!(
        (
            d.order.order_id,
            d.order.order_ref.as_str(),
            d.order.client_id
        ),
        (9000, "desk-recon", 7)
    );
    assert_eq!(d.order_state.status, OrderStatusKind::Filled);
    drop(c);
    assert_eq!(fake.venue().stats.connections, 2);
}

#[test]
fn close_after_order_received_leaves_the_order_at_the_venue() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    fake.venue().faults.push(Fault::CloseAfterOrderReceived);
    let opt = fake
        .venue()
        .market
        .option("AAPL", "20261218", 210.0, 'C')
        .cloned()
        .expect("option");
    {
        let c = client(&fake);
        let contract = Contract::option("AAPL", "20261218", 210.0, OptionRight::Call);
        let sub = c
            .place_order(
                c.next_order_id(),
                &contract,
                &limit(Action::Buy, 1.0, opt.ask, "desk-lost"),
            )
            .expect("place");
        // The socket closes before any answer: no order events arrive.
        let first = sub.next_timeout(Duration::from_millis(500));
        eprintln!("place_order after the socket closed: {first:?}");
        assert!(
            !matches!(first, Some(Ok(SubscriptionItem::Data(_)))),
            "{first:?}"
        );
    }
    {
        let v = fake.venue();
        assert_eq!(v.orders_with_ref("desk-lost").len(), 1);
        assert_eq!(v.orders_with_ref("desk-lost")[0].status, "Filled");
        assert_eq!(v.position(opt.con_id), 1.0);
    }
    let c = client(&fake);
    let done = c
        .completed_orders(false)
        .expect("completed")
        .collect_to_end_within(WAIT)
        .expect("end");
    assert!(done
        .iter()
        .any(|o| matches!(o, Orders::OrderData(d) if d.order.order_ref == "desk-lost")));
}

#[test]
fn close_after_requests_then_refuse_connections() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let c = client(&fake);
    fake.venue().faults.push(Fault::CloseAfter {
        requests: 1,
        refuse_connections: 1,
    });
    let aapl = Contract::stock("AAPL").build();
    let details = |contract: &Contract| {
        c.contract_details_stream(contract)
            .subscribe()?
            .collect_to_end_within(Duration::from_secs(1))
    };
    assert_eq!(details(&aapl).expect("answered").len(), 1);
    assert!(
        details(&aapl).is_err(),
        "the socket closes instead of answering"
    );
    drop(c);
    assert!(connect(&fake, 7).is_err(), "one refused connection");
    client(&fake);
    assert_eq!(fake.venue().stats.connections, 3);
}

#[test]
fn message_rate_and_market_data_lines_are_counted() {
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let c = client(&fake);
    let aapl = Contract::stock("AAPL").build();
    let mut subs = Vec::new();
    for _ in 0..MAX_LINES_PLUS_ONE {
        subs.push(c.market_data(&aapl).subscribe().expect("stream"));
    }
    // The 101st stream is refused with 101.
    let last = subs.last().expect("subs");
    let mut got = None;
    let deadline = Instant::now() + WAIT;
    while got.is_none() && Instant::now() < deadline {
        if let Some(Err(e)) = last.next_timeout(Duration::from_millis(100)) {
            got = notice_code(&e);
        }
    }
    assert_eq!(got, Some(101));
    drop(subs);
    drop(c);
    let v = fake.venue();
    assert_eq!(v.stats.max_lines, 100);
    assert!(v.stats.max_msgs_per_sec > 50);
    assert!(
        v.stats.violations.iter().any(|s| s.contains("lines")),
        "{:?}",
        v.stats.violations
    );
    assert!(
        v.stats
            .violations
            .iter()
            .any(|s| s.contains("messages within 1 s")),
        "{:?}",
        v.stats.violations
    );
    assert_eq!(v.stats.requests.get(&201), Some(&101));
}

const MAX_LINES_PLUS_ONE: usize = 101;

// ---------------------------------------------------------------------------------------------
// The fake survives garbage on a live socket
// ---------------------------------------------------------------------------------------------

#[test]
fn garbage_frames_are_logged_and_a_bad_length_drops_only_that_connection() {
    use std::io::{Read, Write};
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let mut s = std::net::TcpStream::connect(fake.address()).expect("raw connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(b"API\0").expect("magic");
    s.write_all(&fake_ib::frame_bytes(b"v213..226"))
        .expect("versions");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("ack length");
    let mut ack = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut ack).expect("ack");
    assert!(
        ack.starts_with(b"226\0"),
        "{:?}",
        String::from_utf8_lossy(&ack)
    );
    s.write_all(&fake_ib::encode_frame(
        271,
        &proto::StartApiRequest {
            client_id: Some(3),
            optional_capabilities: None,
        },
    ))
    .expect("start");
    // Undecodable protobuf for a known id, a text frame, an unknown id.
    s.write_all(&fake_ib::frame_bytes(&[0, 0, 0, 209, 0xff, 0xff, 0xff]))
        .expect("garbage");
    s.write_all(&fake_ib::frame_bytes(b"\0\0\0\x0949\0"))
        .expect("text");
    s.write_all(&fake_ib::encode_frame(
        249,
        &proto::IdsRequest { num_ids: Some(1) },
    ))
    .expect("unknown");
    s.write_all(&0xffff_ffffu32.to_be_bytes())
        .expect("bad length");
    // The fake drops this connection (a desync, as TWS would) ...
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    // ... logs what it could not serve, and keeps serving others.
    let c = connect(&fake, 4).expect("a real client still connects");
    assert_eq!(c.next_order_id(), 9000);
    drop(c);
    let v = fake.venue();
    let logged: Vec<i32> = v.log.iter().map(|l| l.msg).collect();
    assert_eq!(logged, [209, 9, 249], "{:?}", v.log);
}

// ---------------------------------------------------------------------------------------------
// Property tests of the framing and decoding
// ---------------------------------------------------------------------------------------------

mod properties {
    use super::fake_ib::{
        decode_body, decode_request, encode_frame, frame_bytes, proto, FrameReader, Request,
        WireError,
    };
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

    /// Deterministic runs (fixed seed), no regression files.
    fn run<S: Strategy>(strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>)
    where
        S::Value: std::fmt::Debug,
    {
        let mut runner = TestRunner::new(Config {
            cases: 512,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(0x1b_f00d),
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, check) {
            panic!("{e}");
        }
    }

    /// Drains a reader: every complete frame is decoded as a request and as a few reply types.
    type Decoded = Result<(i32, Request), WireError>;

    fn drain(r: &mut FrameReader) -> Result<Vec<Decoded>, WireError> {
        let mut out = Vec::new();
        while let Some(body) = r.next_frame()? {
            let _ = decode_body::<proto::OpenOrder>(&body);
            let _ = decode_body::<proto::ExecutionDetails>(&body);
            out.push(decode_request(&body));
        }
        Ok(out)
    }

    fn s() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[A-Za-z0-9 .,_-]{0,12}")
    }
    fn f() -> impl Strategy<Value = Option<f64>> {
        proptest::option::of(-1e9..1e9f64)
    }

    fn contract() -> impl Strategy<Value = proto::Contract> {
        let legs = vec(
            (
                any::<i32>(),
                1..5i32,
                prop_oneof![Just("BUY"), Just("SELL")],
                f(),
            ),
            0..4,
        );
        (
            (
                any::<Option<i32>>(),
                s(),
                s(),
                s(),
                f(),
                proptest::option::of(prop_oneof![Just("C"), Just("P")]),
            ),
            (f(), s(), s(), s(), s()),
            legs,
        )
            .prop_map(
                |(
                    (con_id, symbol, sec_type, expiry, strike, right),
                    (multiplier, exchange, currency, local, class),
                    legs,
                )| proto::Contract {
                    con_id,
                    symbol,
                    sec_type,
                    last_trade_date_or_contract_month: expiry,
                    strike,
                    right: right.map(String::from),
                    multiplier,
                    exchange,
                    currency,
                    local_symbol: local,
                    trading_class: class,
                    combo_legs: legs
                        .into_iter()
                        .map(|(c, r, a, p)| proto::ComboLeg {
                            con_id: Some(c),
                            ratio: Some(r),
                            action: Some(a.into()),
                            per_leg_price: p,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                },
            )
    }

    fn order() -> impl Strategy<Value = proto::Order> {
        (
            (
                any::<Option<i32>>(),
                any::<Option<i32>>(),
                any::<Option<i64>>(),
                s(),
                s(),
                s(),
            ),
            (f(), s(), s(), s(), any::<Option<bool>>(), s()),
        )
            .prop_map(
                |(
                    (client_id, order_id, perm_id, action, qty, order_type),
                    (lmt, tif, account, order_ref, transmit, filled),
                )| proto::Order {
                    client_id,
                    order_id,
                    perm_id,
                    action,
                    total_quantity: qty,
                    order_type,
                    lmt_price: lmt,
                    tif,
                    account,
                    order_ref,
                    transmit,
                    filled_quantity: filled,
                    ..Default::default()
                },
            )
    }

    fn execution() -> impl Strategy<Value = proto::Execution> {
        (
            (any::<Option<i32>>(), s(), s(), s(), s(), s()),
            (
                s(),
                f(),
                any::<Option<i64>>(),
                any::<Option<i32>>(),
                s(),
                f(),
                s(),
            ),
        )
            .prop_map(
                |(
                    (order_id, exec_id, time, acct, exchange, side),
                    (shares, price, perm_id, client_id, cum, avg, order_ref),
                )| proto::Execution {
                    order_id,
                    exec_id,
                    time,
                    acct_number: acct,
                    exchange,
                    side,
                    shares,
                    price,
                    perm_id,
                    client_id,
                    cum_qty: cum,
                    avg_price: avg,
                    order_ref,
                    ..Default::default()
                },
            )
    }

    /// (a) Any bytes: the reader and the decoders never panic; they decode or return an error.
    #[test]
    fn any_bytes_never_panic() {
        let _w = super::Watchdog::new(super::LIMIT);
        run(vec(any::<u8>(), 0..600), |bytes| {
            let mut r = FrameReader::new();
            let _ = r.take_magic();
            r.push(&bytes);
            let _ = drain(&mut r);
            Ok(())
        });
        // Well-formed lengths around arbitrary bodies reach the protobuf decoders.
        run((200..330i32, vec(any::<u8>(), 0..300)), |(id, payload)| {
            let mut body = id.to_be_bytes().to_vec();
            body.extend_from_slice(&payload);
            let mut r = FrameReader::new();
            r.push(&frame_bytes(&body));
            let got = drain(&mut r).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(got.len(), 1);
            if id <= 200 {
                prop_assert!(matches!(got[0], Err(WireError::Text(_))));
            }
            Ok(())
        });
    }

    /// (b) encode → decode round-trips for Contract, Order and Execution.
    #[test]
    fn contract_order_execution_round_trip() {
        let _w = super::Watchdog::new(super::LIMIT);
        run(
            (any::<i32>(), contract(), order()),
            |(order_id, contract, order)| {
                let req = proto::PlaceOrderRequest {
                    order_id: Some(order_id),
                    contract: Some(contract),
                    order: Some(order),
                    attached_orders: None,
                };
                let mut r = FrameReader::new();
                r.push(&encode_frame(203, &req));
                let body = r
                    .next_frame()
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?
                    .expect("a whole frame");
                match decode_request(&body) {
                    Ok((203, Request::PlaceOrder(back))) => prop_assert_eq!(*back, req),
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                }
                prop_assert_eq!(r.buffered(), 0);
                Ok(())
            },
        );
        run(
            (any::<i32>(), contract(), execution()),
            |(req_id, contract, execution)| {
                let msg = proto::ExecutionDetails {
                    req_id: Some(req_id),
                    contract: Some(contract),
                    execution: Some(execution),
                };
                let mut r = FrameReader::new();
                r.push(&encode_frame(211, &msg));
                let body = r
                    .next_frame()
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?
                    .expect("a whole frame");
                let (id, back) = decode_body::<proto::ExecutionDetails>(&body)
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                prop_assert_eq!(id, 211);
                prop_assert_eq!(back, msg);
                Ok(())
            },
        );
    }

    /// (c) Frames split at any byte boundaries across reads decode exactly as when read whole.
    #[test]
    fn frames_split_anywhere_decode_the_same() {
        let _w = super::Watchdog::new(super::LIMIT);
        run(
            (contract(), order(), vec(0usize..400, 0..6)),
            |(contract, order, cuts)| {
                let mut wire = b"API\0".to_vec();
                wire.extend_from_slice(&encode_frame(
                    209,
                    &proto::ContractDataRequest {
                        req_id: Some(1_500_000_000),
                        contract: Some(contract.clone()),
                    },
                ));
                wire.extend_from_slice(&encode_frame(
                    203,
                    &proto::PlaceOrderRequest {
                        order_id: Some(9000),
                        contract: Some(contract),
                        order: Some(order),
                        attached_orders: None,
                    },
                ));
                wire.extend_from_slice(&encode_frame(261, &proto::PositionsRequest {}));
                let whole = {
                    let mut r = FrameReader::new();
                    r.push(&wire);
                    prop_assert!(r.take_magic().expect("magic"));
                    drain(&mut r).map_err(|e| TestCaseError::fail(format!("{e:?}")))?
                };
                prop_assert_eq!(whole.len(), 3);
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
                cuts.sort();
                cuts.push(wire.len());
                let mut r = FrameReader::new();
                let mut pieces = Vec::new();
                let mut magic = false;
                let mut from = 0;
                for cut in cuts {
                    r.push(&wire[from..cut]);
                    from = cut;
                    if !magic {
                        magic = r.take_magic().expect("magic prefix");
                    }
                    if magic {
                        pieces.extend(
                            drain(&mut r).map_err(|e| TestCaseError::fail(format!("{e:?}")))?,
                        );
                    }
                }
                prop_assert_eq!(pieces, whole);
                prop_assert_eq!(r.buffered(), 0);
                Ok(())
            },
        );
    }
}

#[test]
fn wait_for_fill_sees_a_live_fill_and_one_from_a_dropped_connection() {
    use ibapi::orders::OrderOutcome;
    let _w = Watchdog::new(LIMIT);
    let fake = FakeIb::start(Market::default());
    let opt = fake
        .venue()
        .market
        .option("AAPL", "20261218", 200.0, 'C')
        .cloned()
        .expect("option");
    let contract = Contract::option("AAPL", "20261218", 200.0, OptionRight::Call);
    // The connection drops right after the order reaches the venue, which fills it.
    fake.venue().faults.push(Fault::CloseAfterOrderReceived);
    let lost = {
        let c = client(&fake);
        let id = c.next_order_id();
        c.submit_order(
            id,
            &contract,
            &limit(Action::Buy, 1.0, opt.ask, "desk-wait-1"),
        )
        .expect("submit");
        let deadline = Instant::now() + WAIT;
        while fake.venue().orders_with_ref("desk-wait-1").is_empty() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        id
    };
    // A new session finds the fill through open orders, then completed orders.
    let c = client(&fake);
    match c.wait_for_fill(lost, WAIT).expect("wait") {
        OrderOutcome::Filled(s) => assert_eq!(s.filled, 1.0),
        other => panic!("expected Filled, got {other:?}"),
    }
    // A live order on this connection.
    let id = c.next_order_id();
    c.submit_order(
        id,
        &contract,
        &limit(Action::Sell, 1.0, opt.bid, "desk-wait-2"),
    )
    .expect("submit");
    match c.wait_for_fill(id, WAIT).expect("wait") {
        OrderOutcome::Filled(s) => assert_eq!((s.order_id, s.filled), (id, 1.0)),
        other => panic!("expected Filled, got {other:?}"),
    }
    drop(c);
    assert_eq!(fake.venue().position(opt.con_id), 0.0);
}

/// The watchdog itself: run `watchdog_probe` in a child process, where it hangs on purpose,
/// and check the child is ended with status 101 and names the test.
#[test]
fn watchdog_exits_a_hung_test_with_101() {
    let _w = Watchdog::new(LIMIT);
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args(["--exact", "watchdog_probe"])
        .env(PROBE_ENV, "1")
        .output()
        .expect("run the probe");
    assert_eq!(out.status.code(), Some(101));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("watchdog: test `watchdog_probe`"),
        "{stderr}"
    );
}

const PROBE_ENV: &str = "OPTDESK_FAKE_IB_WATCHDOG_PROBE";

/// Hangs only in the child process started by `watchdog_exits_a_hung_test_with_101`;
/// returns at once in a normal run (so `--include-ignored` runs stay safe too).
#[test]
fn watchdog_probe() {
    if std::env::var_os(PROBE_ENV).is_none() {
        return;
    }
    let _w = Watchdog::new(Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(10));
}
