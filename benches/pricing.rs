//! Implied-vol and calculator throughput, and compute_vol + correlation on the full
//! simulated universe for one day. `cargo bench --bench pricing`

use implied_vol::{solver::Jaeckel, ImpliedBlackVolatility};
use optdesk::model::OptionRight;
use optdesk::pricing::bsm::BsmInputs;
use optdesk::pricing::iv::{implied_vol, implied_vol_forward, implied_vols, IvInput};
use rayon::prelude::*;
use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

mod common;
use common::{date, Bench};

/// A mixed chain: deep ITM to far OTM, 1 day to 2 years, calls and puts.
fn mixed(n: usize) -> Vec<(OptionRight, f64, f64, f64, f64)> {
    let mut x: u64 = 7;
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            let right = if i % 2 == 0 {
                OptionRight::Call
            } else {
                OptionRight::Put
            };
            let strike = 100.0 * (-0.7 + 1.4 * u).exp();
            let t = 1.0 / 365.0 + (i % 730) as f64 / 365.0;
            let vol = 0.08 + 0.7 * ((i * 7919) % 1000) as f64 / 1000.0;
            let price = BsmInputs {
                right,
                spot: 100.0,
                strike,
                t_years: t,
                rate: 0.04,
                div_yield: 0.01,
                vol,
            }
            .price();
            (right, strike, t, vol, price)
        })
        .collect()
}

fn rate(n: usize, secs: f64) -> String {
    format!(
        "{:.2} million/s ({:.0} ns each)",
        n as f64 / secs / 1e6,
        secs / n as f64 * 1e9
    )
}

fn main() {
    let n = 2_000_000;
    let chain = mixed(n);
    // The crate alone, one core, undiscounted inputs prepared outside the loop.
    let prepared: Vec<_> = chain
        .iter()
        .map(|&(r, k, t, _, p)| {
            let f = 100.0 * ((0.04f64 - 0.01) * t).exp();
            (r == OptionRight::Call, f, k, t, p * (0.04 * t).exp())
        })
        .collect();
    let t0 = Instant::now();
    let mut ok = 0usize;
    for &(call, f, k, t, p) in &prepared {
        if let Some(b) = ImpliedBlackVolatility::builder()
            .option_price(p)
            .forward(f)
            .strike(k)
            .expiry(t)
            .is_call(call)
            .build()
        {
            ok += usize::from(black_box(b.calculate_with::<Jaeckel>()).is_some());
        }
    }
    println!(
        "implied-vol crate alone, 1 core: {}  [{ok} solved]",
        rate(n, t0.elapsed().as_secs_f64())
    );
    let t0 = Instant::now();
    let mut ok = 0usize;
    for &(call, f, k, t, p) in &prepared {
        let r = if call {
            OptionRight::Call
        } else {
            OptionRight::Put
        };
        ok += usize::from(black_box(implied_vol_forward(r, p, f, k, t)).is_ok());
    }
    println!(
        "optdesk implied_vol_forward, same inputs as the crate, 1 core: {}  [{ok} solved]",
        rate(n, t0.elapsed().as_secs_f64())
    );
    let t0 = Instant::now();
    let mut ok = 0usize;
    for &(r, k, t, _, p) in &chain {
        ok += usize::from(black_box(implied_vol(r, p, 100.0, k, t, 0.04, 0.01)).is_ok());
    }
    println!(
        "optdesk implied_vol, 1 core:    {}  [{ok} solved]",
        rate(n, t0.elapsed().as_secs_f64())
    );
    let t0 = Instant::now();
    let ok: usize = chain
        .par_chunks(4096)
        .map(|c| {
            c.iter()
                .filter(|&&(r, k, t, _, p)| implied_vol(r, p, 100.0, k, t, 0.04, 0.01).is_ok())
                .count()
        })
        .sum();
    println!(
        "optdesk implied_vol, {} cores:   {}  [{ok} solved]",
        rayon::current_num_threads(),
        rate(n, t0.elapsed().as_secs_f64())
    );

    let t0 = Instant::now();
    let ok: usize = prepared
        .par_chunks(2048)
        .map(|c| {
            c.iter()
                .filter(|&&(call, f, k, t, p)| {
                    ImpliedBlackVolatility::builder()
                        .option_price(p)
                        .forward(f)
                        .strike(k)
                        .expiry(t)
                        .is_call(call)
                        .build()
                        .and_then(|b| b.calculate_with::<Jaeckel>())
                        .is_some()
                })
                .count()
        })
        .sum();
    println!(
        "implied-vol crate alone, {} cores: {}  [{ok} solved]",
        rayon::current_num_threads(),
        rate(n, t0.elapsed().as_secs_f64())
    );

    // A whole chain, as chains come: sorted by expiry, so each expiry's growth and
    // carry factors are computed once.
    let mut sorted: Vec<IvInput> = chain
        .iter()
        .map(|&(right, strike, t_years, _, price)| IvInput {
            right,
            price,
            spot: 100.0,
            strike,
            t_years,
            rate: 0.04,
            div_yield: 0.01,
        })
        .collect();
    sorted.sort_by(|a, b| a.t_years.total_cmp(&b.t_years));
    let t0 = Instant::now();
    let solved = implied_vols(black_box(&sorted))
        .iter()
        .filter(|r| r.is_ok())
        .count();
    println!(
        "optdesk implied_vols, whole chain, {} cores: {}  [{solved} solved]",
        rayon::current_num_threads(),
        rate(n, t0.elapsed().as_secs_f64())
    );

    // optdesk calc on a 1,000,000-row file, CSV in and out.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let output = dir.path().join("out.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        writeln!(f, "right,spot,strike,t_years,rate,div_yield,price").unwrap();
        for (r, k, t, _, p) in chain.iter().take(1_000_000) {
            writeln!(f, "{},100,{k:.2},{t:.6},0.04,0.01,{p:.6}", r.code()).unwrap();
        }
    }
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let s = optdesk::calc::run_file(&input, Some(&output)).unwrap();
        runs.push(t0.elapsed().as_secs_f64());
        assert_eq!(s.rows, 1_000_000);
    }
    runs.sort_by(f64::total_cmp);
    println!(
        "optdesk calc, 1,000,000 rows, CSV in and out: {:.2} s (best of 3; median {:.2} s)",
        runs[0], runs[1]
    );

    // compute_vol + correlation, full universe, one day (fetch_chains untimed).
    let bench = Bench::new();
    let fetch = bench.job("fetch_chains");
    let timed = [bench.job("compute_vol"), bench.job("correlation")];
    let mut times = Vec::new();
    for day in ["2025-03-12", "2025-03-13", "2025-03-14"] {
        bench.run(&fetch, date(day));
        let mut t_day = 0.0;
        for p in &timed {
            let (t, rec) = bench.run(p, date(day));
            t_day += t;
            if day == "2025-03-14" {
                println!("  {}: {}", rec.job, rec.message);
            }
        }
        times.push(t_day);
    }
    println!(
        "compute_vol + correlation, full universe, one day: {:.0} ms (last of 3 days: {:.0} ms)",
        times[1] * 1e3,
        times[2] * 1e3
    );
}
