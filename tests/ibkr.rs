//! The desk on Interactive Brokers, against the fake gateway of `tests/fake_ib` (the
//! real ibapi 5.5.0 client on one side, IB's wire protocol on the other): `run daily`
//! with the `ibkr` source and broker (a combo among the orders), `check --broker`,
//! re-pricing then cancelling, `flatten`, a kill after an order was sent, a dropped
//! connection, the live-trading refusal, and `ib check`.

mod common;
mod fake_ib;

use common::Desk;
use fake_ib::{priced_option, weekdays_ending, Bar, FakeIb, Market, Stock, Watchdog};
use std::time::Duration;

const AS_OF: &str = "2024-11-21";
const TODAY: &str = "20241121";
const ACCOUNT: &str = "DU1234567";

/// (symbol, con id, price, today's IV, strike step, the IV history's level)
const UNDERLYINGS: &[(&str, i32, f64, f64, f64, f64)] = &[
    ("SPY", 1001, 100.0, 0.18, 1.0, 0.18),
    ("QQQ", 1002, 400.0, 0.26, 5.0, 0.20),
    ("AAPL", 1003, 200.0, 0.30, 2.5, 0.30),
    ("MSFT", 1004, 300.0, 0.28, 5.0, 0.28),
];

/// SPY, QQQ, AAPL and MSFT with two expiries each (8 and 29 days), strikes within 12%
/// of the price; 300 sessions of daily bars and of 30-day IV history. QQQ's IV today is
/// far above its history, so the implied correlation's Z-score calls for dispersion.
fn market() -> Market {
    let mut m = Market {
        stocks: Vec::new(),
        options: Vec::new(),
        bars: Default::default(),
        cash: 400_000.0,
        ..Market::default()
    };
    let mut con_id = 800_000_001;
    let days = weekdays_ending("20241120", 300);
    for (k, &(sym, id, px, iv, step, hist)) in UNDERLYINGS.iter().enumerate() {
        m.stocks.push(Stock {
            symbol: sym.into(),
            con_id: id,
            sec_type: "STK".into(),
            exchange: "SMART".into(),
            bid: px - 0.01,
            ask: px + 0.01,
            last: px,
            close: px,
            bid_size: 500.0,
            ask_size: 500.0,
            volume: 1e7,
        });
        for expiry in ["20241129", "20241220"] {
            let n = (px * 0.12 / step).floor() as i32;
            for i in -n..=n {
                let strike = px + i as f64 * step;
                for right in ['C', 'P'] {
                    m.options.push(priced_option(
                        con_id, sym, sym, expiry, strike, right, px, iv, TODAY,
                    ));
                    con_id += 1;
                }
            }
        }
        let mut close = px;
        let mut trades = Vec::new();
        let mut ivs = Vec::new();
        for (i, d) in days.iter().enumerate().rev() {
            let x = i as f64;
            trades.push(Bar {
                date: d.clone(),
                open: close,
                high: close * 1.004,
                low: close * 0.996,
                close,
                volume: 1e6,
            });
            close /= 1.0 + 0.006 * (1.7 * x + k as f64).sin();
            let v = hist + 0.004 * (0.9 * x + k as f64).sin();
            ivs.push(Bar {
                date: d.clone(),
                open: v,
                high: v,
                low: v,
                close: v,
                volume: 0.0,
            });
        }
        trades.reverse();
        ivs.reverse();
        m.bars.insert((sym.into(), "TRADES".into()), trades);
        m.bars
            .insert((sym.into(), "OPTION_IMPLIED_VOLATILITY".into()), ivs);
    }
    m
}

/// A desk on the fake gateway: source and broker `ibkr`, a small universe, short
/// timeouts; dispersion on QQQ against AAPL and MSFT.
fn ib_desk(fake: &FakeIb, extra_ibkr: &str) -> Desk {
    let desk = Desk::new();
    let text = desk.desk_toml_for("ibkr", &["[ibkr]", "[broker]"]);
    desk.write_config(
        "desk.toml",
        &format!(
            "{text}\n[broker]\nkind = \"ibkr\"\n\n[ibkr]\nport = {}\nsymbols = [\"SPY\", \"QQQ\", \"AAPL\", \"MSFT\"]\nrate = 0.04\nmax_lines = 40\nsnapshot_timeout_secs = 3\nrequest_timeout_secs = 5\nconnect_timeout_secs = 5\nreconnect_attempts = 1\nreprice_steps = 2\nreprice_wait_secs = 0.3\n{extra_ibkr}",
            fake.port()
        ),
    );
    desk.write_config(
        "correlation.toml",
        "[params]\nindex = \"QQQ\"\nweights_file = \"weights.csv\"\nmin_components = 2\nmax_components = 10\nzscore_sessions = 20\nrealized_sessions = 10\n",
    );
    std::fs::write(
        desk.dir.path().join("weights.csv"),
        "symbol,name,sector,weight_pct\nAAPL,Apple,XLK,9.0\nMSFT,Microsoft,XLK,8.0\n",
    )
    .unwrap();
    desk.write_config(
        "strategies/dispersion.toml",
        "enabled = true\n[params]\nindex = \"QQQ\"\ncomponents = [\"AAPL\", \"MSFT\"]\nz_entry = 1.0\ncapital = 100000.0\ntrade_pct = 2.0\n",
    );
    for s in ["call_premium", "cash_secured_put", "covered_call"] {
        let t = std::fs::read_to_string(desk.jobs.join(format!("strategies/{s}.toml"))).unwrap();
        let t = t
            .lines()
            .map(|l| {
                if l.starts_with("tickers") {
                    "tickers = [\"SPY\"]".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        desk.write_config(&format!("strategies/{s}.toml"), &t);
    }
    desk
}

fn run(desk: &Desk, args: &[&str]) -> std::process::Output {
    desk.cmd()
        .env("OPTDESK_IB_ACCOUNT", ACCOUNT)
        .args(args)
        .output()
        .unwrap()
}

fn ok(desk: &Desk, args: &[&str]) -> String {
    let o = run(desk, args);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "optdesk {args:?} failed:\n{out}");
    out
}

fn fails(desk: &Desk, args: &[&str]) -> String {
    let o = run(desk, args);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "optdesk {args:?} should fail:\n{out}");
    out
}

/// The fake stayed within IB's pacing.
fn paced(fake: &FakeIb) {
    let v = fake.venue();
    assert!(
        v.stats.violations.is_empty(),
        "pacing: {:?}",
        v.stats.violations
    );
    assert!(
        v.stats.max_msgs_per_sec <= 50,
        "{}",
        v.stats.max_msgs_per_sec
    );
    assert!(v.stats.max_lines <= 40, "lines {}", v.stats.max_lines);
}

#[test]
fn a_day_on_ib_fetches_trades_a_combo_records_fills_and_reconciles() {
    let _w = Watchdog::new(Duration::from_secs(240));
    let fake = FakeIb::start(market());
    let desk = ib_desk(&fake, "");
    let out = ok(&desk, &["run", "daily", "--as-of", AS_OF]);
    paced(&fake);
    let quotes = desk.count("SELECT count(*) FROM option_quotes WHERE source = 'ibkr'");
    assert!(quotes > 200, "{quotes} quotes\n{out}");
    assert!(
        desk.count("SELECT count(*) FROM iv_history WHERE source = 'ibkr'") > 0,
        "IV history from IB\n{out}"
    );
    let fills = desk.count("SELECT count(*) FROM fills");
    assert!(fills > 0, "no fills:\n{out}");
    // The dispersion basket went as one BAG per underlying (two legs each).
    let bags: Vec<(String, usize)> = fake
        .venue()
        .orders
        .values()
        .filter(|o| o.contract.sec_type.as_deref() == Some("BAG"))
        .map(|o| (o.order_ref.clone(), o.contract.combo_legs.len()))
        .collect();
    assert!(!bags.is_empty(), "no combo was sent:\n{out}");
    assert!(bags.iter().all(|(_, n)| *n == 2), "{bags:?}");
    // Every fill carries IB's exec id and commission; every reference was sent once.
    assert_eq!(
        desk.count("SELECT count(*) FROM fills WHERE exec_id NOT LIKE '0000%' OR commission <= 0"),
        0
    );
    for (r, n) in &fake.venue().stats.placed_refs {
        assert_eq!(*n, 1, "{r} sent {n} times");
    }
    let check = ok(&desk, &["check", "--broker"]);
    assert!(check.contains("matches ibkr"), "{check}");
    // A position IB has and the store does not, and cash that differs, are named.
    {
        let mut v = fake.venue();
        v.cash += 12.34;
        let spy = v
            .market
            .option("SPY", "20241220", 100.0, 'P')
            .unwrap()
            .clone();
        v.positions.insert(
            spy.con_id,
            fake_ib::FakePosition {
                contract: fake_ib::proto::Contract {
                    con_id: Some(spy.con_id),
                    symbol: Some("SPY".into()),
                    sec_type: Some("OPT".into()),
                    last_trade_date_or_contract_month: Some("20241220".into()),
                    strike: Some(100.0),
                    right: Some("P".into()),
                    multiplier: Some(100.0),
                    trading_class: Some("SPY".into()),
                    currency: Some("USD".into()),
                    ..Default::default()
                },
                quantity: 3.0,
                avg_cost: 150.0,
                multiplier: 100.0,
            },
        );
    }
    let diff = fails(&desk, &["check", "--broker"]);
    assert!(
        diff.contains("SPY") && diff.contains("ibkr holds 3, the store holds none"),
        "{diff}"
    );
    assert!(diff.contains("cash") && diff.contains("12.34"), "{diff}");
}

#[test]
fn an_order_ib_never_fills_is_repriced_toward_the_natural_then_cancelled_with_the_reason() {
    let _w = Watchdog::new(Duration::from_secs(240));
    let fake = FakeIb::start(Market {
        fill_at: f64::INFINITY,
        ..market()
    });
    let desk = ib_desk(&fake, "");
    let out = ok(&desk, &["job", "run", "fetch_chains", "--as-of", AS_OF]);
    for job in ["compute_vol", "correlation", "select_trades"] {
        ok(&desk, &["job", "run", job, "--as-of", AS_OF]);
    }
    let cancelled: Vec<(String, String)> = {
        let c = desk.open();
        let mut s = c
            .prepare("SELECT DISTINCT order_ref, reason FROM orders WHERE status = 'cancelled' ORDER BY 1")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert!(!cancelled.is_empty(), "nothing cancelled:\n{out}");
    for (r, why) in &cancelled {
        assert!(
            why.contains("not filled at 3 price(s) from the mid toward the natural")
                && why.contains("cancelled"),
            "{r}: {why}"
        );
    }
    assert_eq!(desk.count("SELECT count(*) FROM fills"), 0);
    let v = fake.venue();
    // Each IB order: placed once, re-priced twice, cancelled.
    assert!(!v.orders.is_empty());
    for o in v.orders.values() {
        assert_eq!(o.status, "Cancelled", "{} {}", o.order_ref, o.status);
    }
    let sent = v
        .stats
        .requests
        .get(&fake_ib::wire::PLACE_ORDER)
        .copied()
        .unwrap_or(0);
    assert_eq!(sent, 3 * v.orders.len(), "placements and modifications");
    assert!(v.stats.placed_refs.values().all(|n| *n == 1));
    drop(v);
    let check = ok(&desk, &["check", "--broker"]);
    assert!(check.contains("matches ibkr: 0 positions"), "{check}");
}

#[test]
fn a_run_killed_after_sending_records_the_fills_next_time_and_sends_nothing_twice() {
    let _w = Watchdog::new(Duration::from_secs(240));
    for point in ["select_trades:after_submit:abort", "ibkr:after_send:abort"] {
        let fake = FakeIb::start(market());
        let desk = ib_desk(&fake, "");
        let o = desk
            .cmd()
            .env("OPTDESK_IB_ACCOUNT", ACCOUNT)
            .env("OPTDESK_FAILPOINT", point)
            .args(["run", "daily", "--as-of", AS_OF])
            .output()
            .unwrap();
        assert!(!o.status.success(), "{point}: the run was to be killed");
        let sent_before = fake.venue().stats.placed_refs.len();
        assert!(
            sent_before >= 1,
            "{point}: an order reached IB before the kill"
        );
        assert_eq!(desk.count("SELECT count(*) FROM fills"), 0, "{point}");
        let out = ok(&desk, &["run", "daily", "--as-of", AS_OF]);
        assert!(
            out.contains("completed 1 order(s) an earlier run left open"),
            "{point}:\n{out}"
        );
        let v = fake.venue();
        for (r, n) in &v.stats.placed_refs {
            assert_eq!(*n, 1, "{point}: {r} sent {n} times");
        }
        // Every execution IB made is a fill in the store, once.
        let ib_fills = v
            .executions
            .iter()
            .filter(|e| e.contract.sec_type.as_deref() != Some("BAG"))
            .count() as i64;
        drop(v);
        assert_eq!(
            desk.count("SELECT count(*) FROM fills"),
            ib_fills,
            "{point}"
        );
        let check = ok(&desk, &["check", "--broker"]);
        assert!(check.contains("matches ibkr"), "{point}: {check}");
    }
}

#[test]
fn flatten_closes_every_position_through_ib() {
    let _w = Watchdog::new(Duration::from_secs(240));
    let fake = FakeIb::start(market());
    let desk = ib_desk(&fake, "");
    ok(&desk, &["run", "daily", "--as-of", AS_OF]);
    let open = desk.count("SELECT count(*) FROM positions_as_of('2024-11-21'::DATE)");
    assert!(open > 0);
    let out = ok(&desk, &["flatten", "--as-of", AS_OF]);
    assert!(out.contains(&format!("closed {open} positions")), "{out}");
    assert_eq!(
        desk.count("SELECT count(*) FROM positions_as_of('2024-11-21'::DATE)"),
        0
    );
    assert!(fake.venue().positions.values().all(|p| p.quantity == 0.0));
    let check = ok(&desk, &["check", "--broker"]);
    assert!(check.contains("matches ibkr: 0 positions"), "{check}");
}

#[test]
fn a_kill_switch_set_to_flatten_closes_through_ib_and_a_rejected_order_keeps_ibs_reason() {
    let _w = Watchdog::new(Duration::from_secs(240));
    let fake = FakeIb::start(market());
    // IB rejects the SPY call the premium strategy sells; the rest fill.
    fake.venue().faults.push(fake_ib::Fault::Error {
        msg: fake_ib::wire::PLACE_ORDER,
        symbol: Some("call_premium".into()),
        code: 201,
        text: "Order rejected - reason: the account cannot short this option".into(),
        times: usize::MAX,
    });
    let desk = ib_desk(&fake, "");
    ok(&desk, &["run", "daily", "--as-of", AS_OF]);
    let reason: String = desk
        .open()
        .query_row(
            "SELECT any_value(reason) FROM orders WHERE status = 'rejected' AND order_ref LIKE '%call_premium%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        reason.contains("the account cannot short this option") && reason.contains("201"),
        "{reason}"
    );
    let open = desk.count("SELECT count(*) FROM positions_as_of('2024-11-21'::DATE)");
    assert!(open > 0);
    ok(&desk, &["kill", "on"]);
    let text = std::fs::read_to_string(desk.jobs.join("select_trades.toml")).unwrap();
    desk.write_config(
        "select_trades.toml",
        &text.replace("kill_flattens = false", "kill_flattens = true"),
    );
    let out = ok(&desk, &["job", "run", "select_trades", "--as-of", AS_OF]);
    assert!(
        out.contains("kill switch on, set to flatten")
            && out.contains(&format!("closed {open} positions")),
        "{out}"
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM positions_as_of('2024-11-21'::DATE)"),
        0
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM risk_decisions WHERE rule = 'flatten' AND reason LIKE 'kill switch%'"),
        open
    );
    let check = ok(&desk, &["check", "--broker"]);
    assert!(check.contains("matches ibkr: 0 positions"), "{check}");
}

#[test]
fn a_dropped_connection_is_retried_a_bounded_number_of_times_then_fails_leaving_no_partial_day() {
    let _w = Watchdog::new(Duration::from_secs(240));
    let fake = FakeIb::start(market());
    fake.venue().faults.push(fake_ib::Fault::CloseAfter {
        requests: 40,
        refuse_connections: 10,
    });
    let desk = ib_desk(&fake, "");
    let out = fails(&desk, &["run", "daily", "--as-of", AS_OF]);
    assert!(
        out.contains("fetch_chains") && out.contains("failed"),
        "{out}"
    );
    assert!(
        out.contains("gave up after 1 reconnect attempt(s) (ibkr.reconnect_attempts = 1)"),
        "the reason names the connection and the bound:\n{out}"
    );
    for t in ["option_quotes", "underlying_quotes", "fills", "orders"] {
        assert_eq!(
            desk.count(&format!("SELECT count(*) FROM {t}")),
            0,
            "{t} holds part of the day"
        );
    }
    let connections = fake.venue().stats.connections;
    assert!(
        (2..=4).contains(&connections),
        "one connection and a bounded number of reconnects, not {connections}"
    );
}

#[test]
fn a_reconnect_that_succeeds_is_recorded_and_the_checklist_counts_it_as_tested() {
    let _w = Watchdog::new(Duration::from_secs(240));
    let fake = FakeIb::start(market());
    let desk = ib_desk(&fake, "");
    // The connection drops once, mid-snapshot; the one reconnect brings it back.
    fake.venue().faults.push(fake_ib::Fault::CloseAfter {
        requests: 40,
        refuse_connections: 0,
    });
    let out = ok(&desk, &["run", "daily", "--as-of", AS_OF]);
    assert!(out.contains("fetch_chains"), "{out}");
    assert_eq!(
        desk.count("SELECT count(*) FROM drills WHERE drill = 'reconnect' AND passed"),
        1,
        "the reconnect is recorded once"
    );
    // Other lines (win rate, drawdown, the drills of `selftest`) fail on one session.
    let after = fails(&desk, &["checklist"]);
    let line = after
        .lines()
        .find(|l| l.contains("reconnect tested"))
        .unwrap_or_else(|| panic!("{after}"));
    assert!(
        line.contains("PASS") && line.contains("reconnected on attempt 1 of 1"),
        "{line}"
    );
}

#[test]
fn live_trading_is_refused_without_both_opt_ins() {
    let _w = Watchdog::new(Duration::from_secs(120));
    // A live port: refused before connecting.
    let fake = FakeIb::start(Market::default());
    let desk = ib_desk(&fake, "");
    let text = std::fs::read_to_string(desk.jobs.join("desk.toml"))
        .unwrap()
        .replace(&format!("port = {}", fake.port()), "port = 7496");
    desk.write_config("desk.toml", &text);
    let out = fails(&desk, &["ib", "check"]);
    assert!(
        out.contains("refusing live trading") && out.contains("7496"),
        "{out}"
    );
    assert_eq!(fake.venue().stats.connections, 0);
    // Both opt-ins: it goes on to connect (nothing listens on 7496 here).
    desk.write_config("desk.toml", &format!("{text}allow_live = true\n"));
    let o = desk
        .cmd()
        .env("OPTDESK_IB_ALLOW_LIVE", "1")
        .args(["ib", "check"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!out.contains("refusing live trading"), "{out}");
    assert!(out.contains("127.0.0.1:7496"), "{out}");

    // A live account on a paper port: refused after the handshake, accepted with both.
    let fake = FakeIb::start(Market {
        accounts: vec!["U7654321".into()],
        ..Market::default()
    });
    let desk = ib_desk(&fake, "");
    let o = desk
        .cmd()
        .args(["ib", "check", "--symbol", "AAPL"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success());
    assert!(
        out.contains("not a paper account") && !out.contains("7654321"),
        "{out}"
    );
    let text = std::fs::read_to_string(desk.jobs.join("desk.toml")).unwrap();
    desk.write_config("desk.toml", &format!("{text}allow_live = true\n"));
    let o = desk
        .cmd()
        .env("OPTDESK_IB_ALLOW_LIVE", "1")
        .args(["ib", "check", "--symbol", "AAPL"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("LIVE"));
}

#[test]
fn ib_check_prints_the_connection_and_a_quote_with_its_computation() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let fake = FakeIb::start(Market::default());
    let desk = ib_desk(&fake, "");
    let out = ok(&desk, &["ib", "check", "--symbol", "AAPL"]);
    for want in [
        "server version 226",
        "DU•••567 (paper)",
        "orders go to DU•••567",
        "market data: live",
        "AAPL (conId 265598): bid 199.95 ask 200.05",
        "IB's computation: IV",
        "delta",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    assert!(!out.contains("1234567"), "the account id is masked:\n{out}");
    // Nothing listening: what to fix.
    drop(fake);
    let out = fails(&desk, &["ib", "check"]);
    assert!(
        out.contains("cannot connect") && out.contains("API"),
        "{out}"
    );
}
