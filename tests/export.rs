//! Exports: `optdesk export seed` writes the replaced systems' files from the store and
//! each reads back in its seed's shape with the store's values; `optdesk export table`
//! round-trips a table's rows through Parquet and CSV.

mod common;
use common::{stderr, Desk};
use serde_json::Value;
use std::path::Path;

fn read_json(p: &Path) -> (Value, String) {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (serde_json::from_str(&text).unwrap(), text)
}

/// The header and the rows of a CSV file, each row keyed by column.
fn read_csv(p: &Path) -> (Vec<String>, Vec<std::collections::HashMap<String, String>>) {
    let mut r = csv::Reader::from_path(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect()
        })
        .collect();
    (header, rows)
}

/// Each key appears in the text, in this order (the seeds' field order).
fn assert_key_order(text: &str, keys: &[&str]) {
    let at: Vec<usize> = keys
        .iter()
        .map(|k| {
            text.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("no field {k}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "order of {keys:?}");
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Every file under `dir`, concatenated.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out += &all_text(&p);
        } else {
            out += &std::fs::read_to_string(&p).unwrap();
        }
    }
    out
}

fn no_partial_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            no_partial_files(&p);
        } else {
            assert!(!p.to_string_lossy().ends_with(".partial"), "{p:?} left");
        }
    }
}

#[test]
fn export_seed_writes_every_file_in_the_seeds_shapes_and_tables_round_trip() {
    let desk = Desk::new();
    let sessions = optdesk::calendar::sessions(
        chrono::NaiveDate::from_ymd_opt(2024, 3, 4).unwrap(),
        chrono::NaiveDate::from_ymd_opt(2024, 3, 14).unwrap(),
    )
    .unwrap();
    for s in &sessions {
        desk.run_ok(&["run", "daily", "--as-of", &s.date.to_string()]);
    }
    let c = desk.open();
    let q_f64 = |sql: &str| -> f64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    let q_str = |sql: &str| -> String { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    let count = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    // The dispersion trade this period makes (see tests/trading.rs).
    let entry = q_str(
        "SELECT min(order_ref) FROM fills WHERE strategy = 'dispersion' AND order_ref LIKE 'dispersion:%'",
    );
    let entry_date = q_str(&format!(
        "SELECT min(as_of)::VARCHAR FROM fills WHERE order_ref = '{entry}'"
    ));
    let exit_date = q_str(
        "SELECT min(as_of)::VARCHAR FROM fills WHERE strategy = 'dispersion' AND order_ref LIKE 'exit:%'",
    );
    assert!(entry_date < exit_date);

    let out = desk.dir.path().join("seed");
    // Secrets in the environment never reach a file.
    let o = desk
        .cmd()
        .env("OPTDESK_TELEGRAM_TOKEN", "tok-SECRET-8842")
        .env("OPTDESK_IB_ACCOUNT", "DU7654321")
        .args(["export", "seed", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(printed.contains("as of 2024-03-14"), "{printed}");
    no_partial_files(&out);
    let all = all_text(&out);
    assert!(!all.contains("SECRET-8842") && !all.contains("DU7654321"));

    // signals/signal_YYYYMMDD.json: one per session with a dispersion signal.
    let days: Vec<String> = {
        let mut s = c
            .prepare("SELECT DISTINCT as_of::VARCHAR FROM signals WHERE strategy = 'dispersion' ORDER BY 1")
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert_eq!(days.len(), sessions.len());
    let mut files: Vec<String> = std::fs::read_dir(out.join("signals"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    let want: Vec<String> = days
        .iter()
        .map(|d| format!("signal_{}.json", d.replace('-', "")))
        .collect();
    assert_eq!(files, want);
    for d in &days {
        let (s, text) = read_json(&out.join(format!("signals/signal_{}.json", d.replace('-', ""))));
        assert_key_order(
            &text,
            &[
                "date",
                "timestamp",
                "index",
                "implied_correlation",
                "z_score",
                "signal",
                "action",
                "index_iv",
                "component_ivs",
                "proposed",
                "approved",
                "executed",
            ],
        );
        assert_eq!(s["date"], d.as_str());
        assert_eq!(s["index"], "QQQ");
        let (corr, z): (f64, f64) = c
            .query_row(
                "SELECT implied_corr, zscore FROM correlation WHERE index_symbol = 'QQQ' AND as_of = ?::DATE",
                [d],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(close(
            s["implied_correlation"].as_f64().unwrap(),
            corr,
            1e-12
        ));
        assert!(close(s["z_score"].as_f64().unwrap(), z, 1e-12));
        let want_signal = if z > 1.5 {
            "SHORT DISPERSION"
        } else if z < -1.5 {
            "LONG DISPERSION"
        } else {
            "NO TRADE"
        };
        assert_eq!(s["signal"], want_signal, "{d}");
        let aapl: f64 = c
            .query_row(
                "SELECT atm_iv_30d FROM vol_metrics WHERE symbol = 'AAPL' AND as_of = ?::DATE",
                [d],
                |r| r.get(0),
            )
            .unwrap();
        assert!(close(
            s["component_ivs"]["AAPL"].as_f64().unwrap(),
            aapl,
            1e-6
        ));
        assert!(s["component_ivs"].as_object().unwrap().len() >= 20);
        assert!(s["index_iv"].as_f64().unwrap() > 0.0);
        assert!(
            s["component_ivs"].get("QQQ").is_none(),
            "the index is not a component"
        );
    }
    let entry_day = entry_date.replace('-', "");
    let (s, _) = read_json(&out.join(format!("signals/signal_{entry_day}.json")));
    assert_eq!(s["action"], "propose");
    assert_eq!(s["order_ref"], entry.as_str());
    assert_eq!(s["proposed"], true);
    assert_eq!(s["approved"], true);
    assert_eq!(s["executed"], true);
    assert_eq!(s["risk_decision"]["decision"], "approved");
    let legs = count(&format!(
        "SELECT count(*) FROM order_legs WHERE order_ref = '{entry}'"
    ));
    assert_eq!(s["legs"].as_array().unwrap().len() as i64, legs);
    assert!(s["legs"][0]["fill_price"].as_f64().unwrap() > 0.0);
    assert!(s["z_score"].as_f64().unwrap().abs() > 1.5);

    // signals/signal_history.csv
    let (header, rows) = read_csv(&out.join("signals/signal_history.csv"));
    assert_eq!(
        header,
        [
            "date",
            "index",
            "implied_correlation",
            "z_score",
            "signal",
            "action",
            "index_iv",
            "num_components",
            "proposed",
            "approved",
            "executed",
            "order_ref",
            "reason"
        ]
    );
    assert_eq!(rows.len(), days.len());
    let passes =
        count("SELECT count(*) FROM signals WHERE strategy = 'dispersion' AND action = 'pass'");
    assert_eq!(
        rows.iter().filter(|r| r["action"] == "pass").count() as i64,
        passes
    );
    for r in &rows {
        if r["action"] == "pass" {
            assert!(!r["reason"].is_empty(), "a pass says why: {r:?}");
        }
        let z: f64 = r["z_score"].parse().unwrap();
        assert_eq!(r["signal"] == "NO TRADE", z.abs() <= 1.5, "{r:?}");
    }
    let row = rows.iter().find(|r| r["date"] == entry_date).unwrap();
    assert_eq!(
        (row["order_ref"].as_str(), row["executed"].as_str()),
        (entry.as_str(), "true")
    );

    // positions/: nothing of the trade is open at the end, and it is in the history.
    let (p, _) = read_json(&out.join("positions/current_positions.json"));
    assert_eq!(p["as_of"], "2024-03-14");
    assert_eq!(p["positions"].as_array().unwrap().len(), 0);
    let (header, trades) = read_csv(&out.join("positions/trade_history.csv"));
    assert_eq!(
        header,
        [
            "trade_id",
            "signal",
            "index",
            "entry_date",
            "exit_date",
            "sessions_held",
            "legs",
            "contracts",
            "entry_z_score",
            "entry_cost",
            "exit_value",
            "commission",
            "pnl",
            "pnl_pct",
            "exit_reason"
        ]
    );
    assert_eq!(trades.len(), 1, "{trades:?}");
    let t = &trades[0];
    assert_eq!(t["trade_id"], entry);
    assert_eq!(
        (t["entry_date"].as_str(), t["exit_date"].as_str()),
        (entry_date.as_str(), exit_date.as_str())
    );
    assert_eq!(t["sessions_held"], "5");
    assert_eq!(t["legs"], legs.to_string());
    assert_eq!(t["exit_reason"], "hold_sessions");
    assert_eq!(t["signal"], s["signal"].as_str().unwrap());
    // Every dispersion trade is closed, so its P&L is all of its cash.
    let cash = q_f64(
        "SELECT sum(-quantity * multiplier * price - commission)::DOUBLE FROM fills WHERE strategy = 'dispersion'",
    );
    assert!(
        close(t["pnl"].parse::<f64>().unwrap(), cash, 0.005),
        "{t:?} vs {cash}"
    );

    // historical_data/correlation_data.csv: one row per session with a value; it
    // imports again as a correlation history.
    let corr_file = out.join("historical_data/correlation_data.csv");
    let (header, corr) = read_csv(&corr_file);
    assert_eq!(
        header,
        [
            "date",
            "implied_corr",
            "realized_corr",
            "zscore",
            "corr_mean",
            "corr_sd",
            "components",
            "basis"
        ]
    );
    let n = count("SELECT count(DISTINCT as_of) FROM correlation WHERE index_symbol = 'QQQ' AND implied_corr IS NOT NULL");
    assert_eq!(corr.len() as i64, n);
    assert!(n > 60, "the Z-score's history is there: {n}");
    let last = corr.last().unwrap();
    assert_eq!(last["date"], "2024-03-14");
    let z14 = q_f64("SELECT zscore FROM correlation WHERE as_of = DATE '2024-03-14'");
    assert!(close(last["zscore"].parse().unwrap(), z14, 1e-12));
    let other = desk.dir.path().join("reimport.duckdb");
    let o = desk
        .cmd()
        .env("OPTDESK_DB", &other)
        .args(["import", corr_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let reimported: i64 = duckdb::Connection::open(&other)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM correlation WHERE index_symbol = 'QQQ'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reimported, n);

    // portfolio_data.json: the daily paper trader's shape, for the whole account.
    let (pd, text) = read_json(&out.join("portfolio_data.json"));
    assert_key_order(
        &text,
        &[
            "start_date",
            "initial_capital",
            "current_cash",
            "positions",
            "closed_trades",
            "daily_snapshots",
        ],
    );
    assert_eq!(pd["start_date"], "2024-03-04");
    let deposits = q_f64("SELECT sum(amount)::DOUBLE FROM cash_ledger WHERE kind = 'deposit'");
    assert!(close(
        pd["initial_capital"].as_f64().unwrap(),
        deposits,
        0.005
    ));
    let cash = q_f64("SELECT sum(amount)::DOUBLE FROM cash_ledger");
    assert!(close(pd["current_cash"].as_f64().unwrap(), cash, 0.005));
    let positions = pd["positions"].as_array().unwrap();
    assert_eq!(
        positions.len() as i64,
        count("SELECT count(*) FROM positions")
    );
    assert!(!positions.is_empty());
    for p in positions {
        for k in [
            "ticker",
            "action",
            "strike",
            "contracts",
            "entry_price",
            "status",
        ] {
            assert!(p.get(k).is_some(), "{k} in {p}");
        }
        assert_eq!(p["status"], "OPEN");
        let q = count(&format!(
            "SELECT quantity FROM positions WHERE trim(instrument) = '{}' AND strategy = '{}'",
            p["contract"].as_str().unwrap(),
            p["strategy"].as_str().unwrap()
        ));
        assert_eq!(p["contracts"].as_i64().unwrap(), q.abs());
        assert_eq!(p["action"], if q < 0 { "SELL" } else { "BUY" });
    }
    let closed = pd["closed_trades"].as_array().unwrap();
    assert_eq!(
        closed
            .iter()
            .filter(|t| t["strategy"] == "dispersion")
            .count() as i64,
        legs
    );
    assert!(closed
        .iter()
        .all(|t| t["status"] == "CLOSED" && t["exit_type"] == "exit"));
    let snaps = pd["daily_snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), sessions.len());
    let equity =
        q_f64("SELECT equity::DOUBLE FROM portfolio_snapshots WHERE as_of = DATE '2024-03-14'");
    let last = snaps.last().unwrap();
    assert!(close(
        last["portfolio_value"].as_f64().unwrap(),
        equity,
        0.005
    ));
    assert!(last["benchmarks"]["SPY"]["value"].as_f64().unwrap() > 0.0);

    // As of a session while the trade was open: it is in current_positions.json.
    let mid = desk.dir.path().join("seed-mid");
    desk.run_ok(&[
        "export",
        "seed",
        "--out",
        mid.to_str().unwrap(),
        "--as-of",
        "2024-03-08",
    ]);
    let (p, _) = read_json(&mid.join("positions/current_positions.json"));
    let open = p["positions"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{p}");
    assert_eq!(open[0]["trade_id"], entry.as_str());
    assert_eq!(open[0]["entry_date"], entry_date.as_str());
    assert_eq!(open[0]["legs"].as_array().unwrap().len() as i64, legs);
    assert!(open[0]["market_value"].is_number());
    let (_, trades) = read_csv(&mid.join("positions/trade_history.csv"));
    assert!(trades.is_empty());
    let (_, hist) = read_csv(&mid.join("signals/signal_history.csv"));
    assert!(hist.iter().all(|r| r["date"].as_str() <= "2024-03-08"));
    assert!(!mid.join("signals/signal_20240311.json").exists());

    // A session before the store's first is refused with the range it covers.
    let early = desk.dir.path().join("seed-early");
    let o = desk.run(&[
        "export",
        "seed",
        "--out",
        early.to_str().unwrap(),
        "--as-of",
        "2020-01-02",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("it covers 2023-"), "{}", stderr(&o));
    assert!(!early.exists());

    // export table: Parquet and CSV hold every row, of a table and of a view, from the
    // store named by --db (a backtest's store is given the same way).
    let copy = desk.dir.path().join("backtest.duckdb");
    drop(c);
    std::fs::copy(desk.db(), &copy).unwrap();
    let reader = duckdb::Connection::open_in_memory().unwrap();
    for (table, format, read) in [
        ("fills", "parquet", "read_parquet"),
        ("fills", "csv", "read_csv_auto"),
        ("orders", "csv", "read_csv_auto"),
        ("correlation", "parquet", "read_parquet"),
    ] {
        let file = desk.dir.path().join(format!("x/{table}.{format}"));
        let printed = desk.run_ok(&[
            "--db",
            copy.to_str().unwrap(),
            "export",
            "table",
            table,
            "--format",
            format,
            "--out",
            file.to_str().unwrap(),
        ]);
        let rows = desk.count(&format!("SELECT count(*) FROM {table}"));
        assert!(rows > 0);
        assert!(printed.contains(&format!("wrote {rows} rows")), "{printed}");
        let back: i64 = reader
            .query_row(
                &format!("SELECT count(*) FROM {read}('{}')", file.display()),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(back, rows, "{table} as {format}");
    }
    no_partial_files(&desk.dir.path().join("x"));
    // Without --out: NAME.format in the current folder.
    desk.run_ok(&["export", "table", "risk_decisions", "--format", "csv"]);
    assert!(desk.dir.path().join("risk_decisions.csv").exists());
}

#[test]
fn an_unknown_table_a_missing_store_and_an_empty_one_are_refused_clearly() {
    let desk = Desk::new();
    let out = desk.dir.path().join("seed");
    // No store yet.
    let o = desk.run(&["export", "seed", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist yet"), "{}", stderr(&o));
    // A store with nothing in it.
    drop(
        optdesk::store::Store::open_write(&desk.db(), std::time::Duration::from_secs(5), "test")
            .unwrap(),
    );
    let o = desk.run(&["export", "seed", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no trading record yet"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "nothing written");
    // An unknown table names the ones there are.
    let o = desk.run(&["export", "table", "filz", "--format", "csv"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("no table or view named 'filz'"), "{e}");
    assert!(
        e.contains("fills") && e.contains("orders") && e.contains("cash_ledger"),
        "{e}"
    );
    assert!(!desk.dir.path().join("filz.csv").exists());
}
