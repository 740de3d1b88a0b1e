//! The simulated market behaves like the real one (figures measured from
//! shared/data/real; see `cargo bench --bench sim_calibration` for the side-by-side).

use chrono::NaiveDate;
use optdesk::sources::sim::calibration::{measure, REAL};

#[test]
fn calibrated_to_real_markets_2010_2025() {
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let r = measure(42, d("2010-01-04"), d("2025-12-31"));
    println!("{r}");
    let f = r.figures;
    assert!(
        (78.0..=92.0).contains(&f.vix_above_rv_pct),
        "VIX above realized on {:.1}% of days (real {})",
        f.vix_above_rv_pct,
        REAL.vix_above_rv_pct
    );
    assert!(
        (2.0..=6.0).contains(&f.mean_vix_minus_rv),
        "VRP {:.2}",
        f.mean_vix_minus_rv
    );
    assert!(
        (2.0..=6.5).contains(&f.median_vix_minus_rv),
        "median VRP {:.2}",
        f.median_vix_minus_rv
    );
    assert!(
        (15.0..=23.0).contains(&f.mean_vix),
        "mean VIX {:.2}",
        f.mean_vix
    );
    assert!(
        (11.0..=19.0).contains(&f.mean_rv),
        "mean realized {:.2}",
        f.mean_rv
    );
    assert!(
        (0.65..=0.93).contains(&f.corr_vix_past_rv),
        "vol clustering {:.2}",
        f.corr_vix_past_rv
    );
    let (calm, stressed) = r.calm_and_stressed_corr();
    assert!(
        (0.2..=0.42).contains(&calm),
        "calm-year pairwise correlation {calm:.2}"
    );
    assert!(
        stressed >= 0.5,
        "most stressed year's pairwise correlation {stressed:.2}"
    );
    assert!(stressed - calm > 0.15, "correlation rises under stress");
}

#[test]
fn the_same_seed_gives_the_same_market() {
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let a = measure(42, d("2020-01-02"), d("2020-12-31"));
    let b = measure(42, d("2020-01-02"), d("2020-12-31"));
    assert_eq!(a.figures, b.figures);
    assert_ne!(
        a.figures,
        measure(43, d("2020-01-02"), d("2020-12-31")).figures
    );
}
