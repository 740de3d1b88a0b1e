//! The daily report over a long history: 15 years of daily snapshots (portfolio, four
//! benchmarks, four strategies) and 60,000 fills, as a 15-year backtest leaves them.
//! Times gathering the day from the store and rendering the email (text, HTML, PNG
//! chart) and the dashboard. `cargo bench --bench report`

use chrono::NaiveDate;
use optdesk::report::{self, chart, dashboard, email};
use std::time::Instant;

mod common;
use common::Bench;

fn main() {
    let bench = Bench::new();
    let store = &bench.store;
    let t = Instant::now();
    store
        .conn
        .execute_batch(
            "CREATE TEMP TABLE days AS
               SELECT d::DATE AS as_of, row_number() OVER (ORDER BY d) AS i
               FROM generate_series(DATE '2010-01-04', DATE '2024-12-31', INTERVAL 1 DAY) t(d)
               WHERE dayofweek(d) BETWEEN 1 AND 5;
             INSERT INTO cash_ledger VALUES (DATE '2010-01-04', 'deposit', 400000, 'bench', 0);
             INSERT INTO portfolio_snapshots
               SELECT as_of, as_of + INTERVAL '9 hours 35 minutes', 400000, 0,
                      400000 * (1 + 0.0002 * i + 0.01 * sin(i / 15.0)), 5, 0, DATE '2010-01-04', 400000,
                      0.0002 * i + 0.01 * sin(i / 15.0), 0.0003 * i, -0.0001 * i, NULL, 0 FROM days;
             INSERT INTO benchmark_snapshots
               SELECT as_of, as_of + INTERVAL '9 hours 35 minutes', s, DATE '2010-01-04', 100, 4000,
                      100 * (1 + 0.0003 * i + 0.02 * cos(i / (20.0 + k))), 0,
                      400000 * (1 + 0.0003 * i + 0.02 * cos(i / (20.0 + k))), 0.0003 * i, 0
               FROM days, (VALUES ('SPY', 1), ('VOO', 2), ('VTI', 3), ('QQQ', 4)) b(s, k);
             INSERT INTO strategy_snapshots
               SELECT as_of, as_of + INTERVAL '9 hours 35 minutes', s, 2, 0, 20 * i * k, 20 * i * k + 500 * sin(i / 9.0), 10, 5, -20, 0
               FROM days, (VALUES ('call_premium', 1), ('dispersion', 2), ('cash_secured_put', 3), ('covered_call', 4)) b(s, k);
             -- Each session sells four calls and buys back the previous session's four.
             -- (Each contract is its own strike of a 2030 SPY call, so its OCC symbol is real.)
             INSERT INTO fills (as_of, order_ref, leg, strategy, instrument, underlying, kind, expiry, strike,
                 put_call, multiplier, quantity, price, commission, cash_kind, run_id, filled_at, exec_id)
               SELECT as_of, ref, leg, 'call_premium',
                      'SPY   300118C' || lpad((k * 1000)::VARCHAR, 8, '0'), 'SPY', 'option',
                      DATE '2030-01-18', k, 'C', 100, CASE WHEN leg < 4 THEN -1 ELSE 1 END, 1.5 + (i % 7) / 10, 0.65,
                      'premium', 0, as_of + INTERVAL '9 hours 35 minutes', ref || '#' || leg
               FROM (SELECT *, CASE WHEN leg < 4 THEN 'open:' || i ELSE 'close:' || i END AS ref,
                            1 + CASE WHEN leg < 4 THEN i * 4 + leg ELSE (i - 1) * 4 + leg % 4 END AS k
                     FROM days, range(0, 8) r(leg) WHERE leg < 4 OR i > 1);",
        )
        .unwrap();
    let fills: i64 = store
        .conn
        .query_row("SELECT count(*) FROM fills", [], |r| r.get(0))
        .unwrap();
    let days: i64 = store
        .conn
        .query_row("SELECT count(*) FROM portfolio_snapshots", [], |r| r.get(0))
        .unwrap();
    println!(
        "setup: {days} sessions, {fills} fills in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let as_of = NaiveDate::from_ymd_opt(2024, 12, 31).unwrap();
    let t = Instant::now();
    let data = report::load(&store.conn, as_of, 0.04).unwrap();
    let t_load = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let text = email::render_text(&data);
    let html = email::render_html(&data);
    let t_mail = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let png = chart::line_chart_png(
        "Equity vs. benchmarks",
        &dashboard::equity_series(&data),
        760,
        360,
        2,
        chart::YFormat::Percent,
    )
    .unwrap();
    let t_png = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let dash = dashboard::render(&data);
    let t_dash = t.elapsed().as_secs_f64();
    println!(
        "15 years ({} closed trades): load {:.0} ms, email text + HTML {:.1} ms, PNG chart {:.0} ms ({} kB), dashboard {:.0} ms ({} kB); total {:.0} ms",
        data.metrics[0].trades.as_ref().map_or(0, |t| t.trades),
        t_load * 1e3,
        t_mail * 1e3,
        t_png * 1e3,
        png.len() / 1024,
        t_dash * 1e3,
        dash.len() / 1024,
        (t_load + t_mail + t_png + t_dash) * 1e3
    );
    assert!(text.len() > 1000 && html.len() > 1000);
    std::fs::write(bench.dir.path().join("dashboard.html"), &dash).unwrap();
    if let Ok(keep) = std::env::var("OPTDESK_BENCH_KEEP") {
        std::fs::write(keep, &dash).unwrap();
    }
}
