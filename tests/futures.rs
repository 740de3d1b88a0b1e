//! Futures end to end on the simulated market: MES quotes stored by fetch_chains, a
//! position filled by the paper broker, marked at each settlement (variation margin),
//! rolled on the roll day by the daily run, and `check` reconciling every day.

mod common;
use chrono::{NaiveDate, NaiveTime};
use common::{stderr, Desk};
use optdesk::broker::paper::{PaperBroker, PaperConfig};
use optdesk::broker::router::Router;
use optdesk::model::Price;
use optdesk::trading::risk::approve_exit;
use optdesk::trading::{futures, ClientOrderId, Instrument, Intent, Leg, Order, OrderType};

/// A desk that fetches SPX and MES only and runs no strategy (the position is opened
/// by hand, standing in for the futures strategy).
fn futures_desk() -> Desk {
    let desk = Desk::new();
    for s in [
        "call_premium",
        "dispersion",
        "cash_secured_put",
        "covered_call",
    ] {
        desk.write_config(&format!("strategies/{s}.toml"), "enabled = false\n");
    }
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nsymbols = [\"SPX\"]\nmax_expiry_days = 10\nhistory_sessions = 30\nfutures = [\"MES\"]\n",
    );
    desk
}

/// Buy `qty` of `symbol` at the daily snapshot of `d` through the paper broker.
fn buy(desk: &Desk, d: NaiveDate, symbol: &str, qty: i64) {
    let store =
        optdesk::store::Store::open_write(&desk.db(), std::time::Duration::from_secs(5), "test")
            .unwrap();
    let qt = d.and_time(NaiveTime::from_hms_opt(9, 35, 0).unwrap());
    let mut broker = PaperBroker::new(&store.conn, PaperConfig::default(), d, qt);
    let mut router = Router::new(
        &store.conn,
        &mut broker,
        "test",
        0,
        qt,
        Box::new(|| Ok(())),
        false,
    );
    // A book no strategy owns: nothing but the roll closes it (zscore_reversion's own
    // exits would close it within two hours).
    let id = ClientOrderId::new(Intent::Exit, "mes_hold", d, qt.time(), 9).unwrap();
    let leg = Leg::new(Instrument::Future(futures::parse(symbol).unwrap()), qty).unwrap();
    let order = Order::new_checked(id, vec![leg], OrderType::Market).unwrap();
    let placed = router.place(approve_exit(order).unwrap()).unwrap();
    assert_eq!(placed.fills.len(), 1, "{placed:?}");
    // At the ask, on the tick, $0.62 a contract.
    let f = &placed.fills[0];
    assert_eq!(f.price.raw() % Price::from_f64(0.25).raw(), 0);
    assert_eq!(f.commission, Price::from_cents(62 * qty.abs()));
}

#[test]
fn a_position_held_across_the_roll_is_marked_daily_rolled_and_reconciles() {
    let desk = futures_desk();
    let d = |s: &str| s.parse::<NaiveDate>().unwrap();
    // MESH25: third Friday 2025-03-21, roll day Thursday 2025-03-13.
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-10"]);
    assert_eq!(
        desk.count("SELECT count(*) FROM futures_quotes WHERE as_of = DATE '2025-03-10' AND contract IN ('MESH25', 'MESM25')"),
        2
    );
    // The sim's MES is SPX with carry: within 1% of it, and the June above March.
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM futures_quotes f JOIN underlying_quotes u USING (as_of, quote_time)
             WHERE u.symbol = 'SPX' AND f.as_of = DATE '2025-03-10' AND abs(f.last / u.price - 1) < 0.01
               AND f.ask - f.bid = 0.25"
        ),
        2
    );
    buy(&desk, d("2025-03-10"), "MESH25", 2);
    assert!(desk.run_ok(&["check"]).contains("reconciled to the cent"));
    for day in ["2025-03-11", "2025-03-12", "2025-03-13", "2025-03-14"] {
        desk.run_ok(&["run", "daily", "--as-of", day]);
        let out = desk.run_ok(&["check"]);
        assert!(out.contains("reconciled to the cent"), "{day}: {out}");
    }
    // Marked at the settlements of 03-10, 11, 12 (MESH25), then of 03-13 (MESM25).
    assert_eq!(
        desk.count("SELECT count(*) FROM futures_variation WHERE cause = 'settlement'"),
        4
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM cash_ledger WHERE kind = 'variation'"),
        desk.count("SELECT count(*) FROM futures_variation WHERE amount <> 0")
    );
    // Rolled on the roll day, once, by one order with both legs, recorded as `roll`.
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM risk_decisions WHERE rule = 'roll' AND as_of = DATE '2025-03-13'"
        ),
        1
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM risk_decisions WHERE rule = 'roll'"),
        1
    );
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM fills WHERE as_of = DATE '2025-03-13' AND order_ref LIKE 'exit:mes_hold:%'
               AND ((instrument = 'MESH25' AND quantity = -2) OR (instrument = 'MESM25' AND quantity = 2))"
        ),
        2
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM positions WHERE kind = 'future' AND instrument = 'MESM25' AND quantity = 2"),
        1
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM positions WHERE instrument = 'MESH25'"),
        0
    );
    // The closed March contract was paid its P&L, exactly: −Σ quantity × 5 × price.
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM (SELECT sum(amount) AS paid FROM futures_variation WHERE instrument = 'MESH25') v,
                    (SELECT sum(-quantity * multiplier * price) AS pnl FROM fills WHERE instrument = 'MESH25') f
             WHERE v.paid = f.pnl"
        ),
        1
    );
    // Re-running the roll day adds nothing.
    let before = desk.fingerprint(false);
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-13"]);
    assert_eq!(desk.fingerprint(false), before);

    // A tampered variation entry does not reconcile, and check says which.
    {
        let c = duckdb::Connection::open(desk.db()).unwrap();
        c.execute_batch(
            "UPDATE cash_ledger SET amount = amount + 1.25 WHERE kind = 'variation'
               AND rowid = (SELECT min(rowid) FROM cash_ledger WHERE kind = 'variation')",
        )
        .unwrap();
    }
    let o = desk.run(&["check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("variation entry"), "{}", stderr(&o));
}

#[test]
fn an_unknown_futures_root_is_refused_at_load_naming_the_file_and_key() {
    let desk = Desk::new();
    desk.write_config("fetch_chains.toml", "[params]\nfutures = [\"MNQ\"]\n");
    let err = desk.run_fails(&["run", "daily", "--as-of", "2025-03-10"]);
    assert!(
        err.contains("fetch_chains.toml")
            && err
                .contains("params.futures: 'MNQ' is not a futures product optdesk knows (MES, ES)"),
        "{err}"
    );
}

#[test]
fn the_roll_day_is_configurable_and_a_bad_one_is_refused_naming_the_key() {
    let desk = futures_desk();
    let d = |s: &str| s.parse::<NaiveDate>().unwrap();
    // Three days before the 2025-03-21 expiry: Tuesday 2025-03-18, not 03-13.
    let desk_toml = std::fs::read_to_string(desk.jobs.join("desk.toml")).unwrap();
    desk.write_config(
        "desk.toml",
        &desk_toml.replace("roll_days_before = 8", "roll_days_before = 3"),
    );
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-13"]);
    buy(&desk, d("2025-03-13"), "MESH25", 1);
    for day in ["2025-03-14", "2025-03-17"] {
        desk.run_ok(&["run", "daily", "--as-of", day]);
    }
    assert_eq!(
        desk.count("SELECT count(*) FROM risk_decisions WHERE rule = 'roll'"),
        0
    );
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-18"]);
    let reason: String = desk
        .open()
        .query_row(
            "SELECT reason FROM risk_decisions WHERE rule = 'roll' AND as_of = DATE '2025-03-18'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        reason.contains("MESH25 rolled to MESM25 (roll day 2025-03-18, 3 days before"),
        "{reason}"
    );
    assert!(desk.run_ok(&["check"]).contains("reconciled to the cent"));

    desk.write_config(
        "desk.toml",
        &desk_toml.replace("roll_days_before = 8", "roll_days_before = 0"),
    );
    let err = desk.run_fails(&["run", "daily", "--as-of", "2025-03-19"]);
    assert!(
        err.contains("desk.toml") && err.contains("futures.roll_days_before = 0: expected 1 to 30"),
        "{err}"
    );
}
