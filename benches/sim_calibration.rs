//! The simulated market measured like the real one, side by side, on several seeds.
//! `cargo bench --bench sim_calibration`

use chrono::NaiveDate;
use optdesk::sources::sim::calibration::measure;

fn main() {
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    for seed in [42, 1, 2, 3, 4] {
        println!("{}", measure(seed, d("2010-01-04"), d("2025-12-31")));
    }
}
