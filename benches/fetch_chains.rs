//! fetch_chains on the full simulated universe: contracts per second to generate a
//! day's chains, and to generate and store them (the whole job, in its envelope).
//! `cargo bench --bench fetch_chains`

use chrono::NaiveDate;
use optdesk::sources::sim::Sim;
use optdesk::sources::MarketData;
use std::time::Instant;

mod common;
use common::Bench;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let days = optdesk::calendar::sessions(d("2025-03-03"), d("2025-03-14")).unwrap();
    let t = Instant::now();
    let sim = Sim::new(42);
    println!(
        "sim path (every session 2000–2035, {} names): {:.3} s",
        sim.universe.len(),
        t.elapsed().as_secs_f64()
    );
    let symbols = sim.default_symbols();

    let mut gen = Vec::new();
    let mut contracts = 0;
    for s in &days {
        let t = Instant::now();
        let snap = sim
            .snapshot(s.date.and_hms_opt(9, 35, 0).unwrap(), &symbols, 400)
            .unwrap();
        gen.push(t.elapsed().as_secs_f64());
        contracts = snap.quotes.len();
    }
    let g = median(gen);
    println!(
        "generate one day's chains: {} underlyings, {contracts} contracts in {:.1} ms = {:.0} contracts/s",
        symbols.len(),
        g * 1e3,
        contracts as f64 / g
    );

    let bench = Bench::new();
    let job = bench.job("fetch_chains");
    let run = |date: NaiveDate| bench.run(&job, date);
    let (first, rec) = run(days[0].date);
    println!(
        "first day incl. backfill of history: {:.2} s ({} rows: {})",
        first, rec.rows_written, rec.message
    );
    let mut steady = Vec::new();
    for s in &days[1..] {
        steady.push(run(s.date).0);
    }
    let m = median(steady);
    println!(
        "fetch_chains, full universe, one day (generate + store, one transaction): {:.0} ms = {:.0} contracts/s",
        m * 1e3,
        contracts as f64 / m
    );
}
