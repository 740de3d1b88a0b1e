//! Import speed on a generated 1,000,000-row OptionsDX file (each row a call and a put:
//! 2,000,000 archive rows), then the replay source's snapshot for one session.
//! `cargo bench --bench import` (about half a minute; writes a 200 MB file in a temp dir).

use optdesk::sources::import::import_file;
use optdesk::sources::MarketData;
use std::io::Write;
use std::time::Instant;

mod common;
use common::{date, Bench};

const ROWS: usize = 1_000_000;

fn main() {
    let bench = Bench::new();
    let path = bench.dir.path().join("spy_eod_202401.txt");
    let t = Instant::now();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(f, "[QUOTE_UNIXTIME], [QUOTE_READTIME], [QUOTE_DATE], [QUOTE_TIME_HOURS], [UNDERLYING_LAST], [EXPIRE_DATE], [EXPIRE_UNIX], [DTE], [C_DELTA], [C_GAMMA], [C_VEGA], [C_THETA], [C_RHO], [C_IV], [C_VOLUME], [C_LAST], [C_SIZE], [C_BID], [C_ASK], [STRIKE], [P_BID], [P_ASK], [P_SIZE], [P_LAST], [P_DELTA], [P_GAMMA], [P_VEGA], [P_THETA], [P_RHO], [P_IV], [P_VOLUME], [STRIKE_DISTANCE], [STRIKE_DISTANCE_PCT]").unwrap();
        // 20 sessions of January 2024 × 50 expiries × 1,000 strikes.
        let days = optdesk::calendar::sessions(date("2024-01-02"), date("2024-01-31")).unwrap();
        let mut n = 0;
        'out: for d in &days {
            let day = d.date;
            for e in 0..50 {
                let exp = day + chrono::Duration::days(1 + e * 7);
                for k in 0..1000 {
                    let strike = 100.0 + k as f64 * 0.5;
                    let c = (470.0 - strike).max(0.0) + 1.0 + (k % 7) as f64 * 0.01;
                    let p = (strike - 470.0).max(0.0) + 1.0 + (k % 5) as f64 * 0.01;
                    writeln!(
                        f,
                        "1704229200, {day} 16:00, {day}, 16.000000, 470.5, {exp}, 1704229200, {}.00, 0.5, 0.01, 0.2, -0.05, 0.1, 0.2, 10, , 1 x 2, {:.2}, {:.2}, {strike:.1}, {:.2}, {:.2}, 3 x 4, , -0.5, 0.01, 0.2, -0.05, -0.1, 0.21, 20, 1.0, 0.01",
                        1 + e * 7,
                        c - 0.05,
                        c + 0.05,
                        p - 0.05,
                        p + 0.05
                    )
                    .unwrap();
                    n += 1;
                    if n == ROWS {
                        break 'out;
                    }
                }
            }
        }
    }
    let bytes = std::fs::metadata(&path).unwrap().len();
    println!(
        "generated {ROWS} OptionsDX rows ({:.0} MB) in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    for round in 0..2 {
        let t = Instant::now();
        // The second round changes one byte so the file is imported again, not skipped.
        if round == 1 {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            writeln!(f).unwrap();
        }
        let s = import_file(&bench.store.conn, &path, None, None).unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(s.kept + s.rejected, 2 * ROWS as i64);
        println!(
            "import (round {}): {ROWS} rows in {secs:.2} s = {:.2} M rows/s ({} quotes kept, {} rejected)",
            round + 1,
            ROWS as f64 / secs / 1e6,
            s.kept,
            s.rejected
        );
    }
    let rates = optdesk::sources::RiskFreeRate::Table(std::sync::Arc::new(
        optdesk::refdata::builtin_rates(),
    ));
    let replay = optdesk::sources::replay::Replay::new(&bench.store.conn, rates, 0.0).unwrap();
    let qt = date("2024-01-16").and_hms_opt(16, 0, 0).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let snap = replay.snapshot(qt, &["SPY".to_string()], 400).unwrap();
        println!(
            "replay snapshot of 2024-01-16: {} quotes in {:.0} ms",
            snap.quotes.len(),
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}
