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
fn desk(fake: &FakeIb, extra_ibkr: &str) -> Desk {
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
    let desk = desk(&fake, "");
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
