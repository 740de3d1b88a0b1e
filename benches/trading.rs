//! select_trades + expire_positions + snapshot_benchmarks on the full universe with
//! 500 open positions, then the daily report (email rendered and written as .eml, PNG
//! chart, dashboard) over that book. `cargo bench --bench trading`

use optdesk::jobs;

mod common;
use common::{date, Bench};

fn main() {
    let bench = Bench::new();
    let store = &bench.store;
    let run = |name: &str, day| bench.run(&bench.job(name), day).0;
    let (day0, day1) = (date("2025-03-13"), date("2025-03-14"));
    for name in ["fetch_chains", "compute_vol", "correlation"] {
        run(name, day0);
        run(name, day1);
    }
    // 500 open positions: short one contract of each of 500 liquid options, booked as
    // filled orders on the previous session at their bid.
    store
        .conn
        .execute_batch(
            "INSERT INTO cash_ledger VALUES (DATE '2025-03-13', 'deposit', 10000000, 'bench', 0);
             CREATE TEMP TABLE pick AS
               SELECT q.contract, q.underlying, q.expiry, q.strike, q.put_call, q.bid,
                      row_number() OVER (ORDER BY q.volume DESC, q.contract) - 1 AS n
               FROM option_quotes q WHERE q.as_of = DATE '2025-03-13' AND q.bid > 0.5 AND q.expiry > DATE '2025-03-21'
               ORDER BY q.volume DESC, q.contract LIMIT 500;
             INSERT INTO order_legs (order_ref, leg, as_of, created_at, strategy, book, intent, instrument,
                 underlying, kind, expiry, strike, put_call, multiplier, quantity, order_type, cash_kind, run_id)
               SELECT 'bench:' || n, 0, DATE '2025-03-13', TIMESTAMP '2025-03-13 09:35', 'bench', 'bench', 'entry',
                 contract, underlying, 'option', expiry, strike, put_call, 100, -1, 'market', 'premium', 0 FROM pick;
             INSERT INTO order_events SELECT 'bench:' || n, s, TIMESTAMP '2025-03-13 09:35', st, 'paper', NULL, NULL, 0
               FROM pick, (VALUES (0, 'pending'), (1, 'submitted'), (2, 'filled')) e(s, st);
             INSERT INTO fills (as_of, order_ref, leg, strategy, instrument, underlying, kind, expiry, strike,
                 put_call, multiplier, quantity, price, commission, cash_kind, run_id, filled_at, exec_id)
               SELECT DATE '2025-03-13', 'bench:' || n, 0, 'bench', contract, underlying, 'option',
                 expiry, strike, put_call, 100, -1, bid, 0.65, 'premium', 0, TIMESTAMP '2025-03-13 09:35',
                 'bench:' || n || '#0' FROM pick;
             INSERT INTO cash_ledger SELECT DATE '2025-03-13', 'premium', bid * 100, 'bench:' || n || '#0', 0 FROM pick;
             INSERT INTO cash_ledger SELECT DATE '2025-03-13', 'commission', -0.65, 'bench:' || n || '#0', 0 FROM pick;",
        )
        .unwrap();
    let open: i64 = store
        .conn
        .query_row(
            "SELECT count(*) FROM positions_as_of(DATE '2025-03-14')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let t_select = run("select_trades", day1);
    let t_expire = run("expire_positions", day1);
    let t_snap = run("snapshot_benchmarks", day1);
    println!(
        "{open} open positions, full universe: select_trades {:.0} ms + expire_positions {:.0} ms + snapshot_benchmarks {:.0} ms = {:.0} ms",
        t_select * 1e3,
        t_expire * 1e3,
        t_snap * 1e3,
        (t_select + t_expire + t_snap) * 1e3
    );

    // The daily report over that book, written to the temporary folder (no SMTP).
    let params = jobs::email_report::Params {
        reports_dir: bench.dir.path().join("reports").display().to_string(),
        dashboard: bench
            .dir
            .path()
            .join("dashboard.html")
            .display()
            .to_string(),
        ..Default::default()
    };
    let report = jobs::Prepared {
        def: &jobs::email_report::DEF,
        enabled: true,
        slots: Vec::new(),
        config_hash: "bench".into(),
        job: Box::new(jobs::email_report::EmailReport { params }),
    };
    let (t_report, _) = bench.run(&report, day1);
    let eml = std::fs::metadata(bench.dir.path().join("reports/2025-03-14-daily.eml"))
        .unwrap()
        .len();
    let html = std::fs::metadata(bench.dir.path().join("dashboard.html"))
        .unwrap()
        .len();
    println!(
        "email_report with {open} open positions: {:.0} ms (message {} kB, dashboard {} kB)",
        t_report * 1e3,
        eml / 1024,
        html / 1024
    );
}
