//! Pricing and volatility end to end: compute_vol recovers the simulator's true vols,
//! correlation has a value and a Z-score, bad quotes get reasons, `optdesk calc`.

mod common;
use chrono::NaiveDate;
use common::{stderr, Desk};
use optdesk::sources::sim::Sim;

#[test]
fn compute_vol_recovers_the_true_vols_the_sim_priced_with() {
    let desk = Desk::new();
    desk.run_ok(&["run", "daily", "--as-of", "2025-05-14"]);
    let c = desk.open();
    // Per contract: the IV of the (tick-rounded) mid vs. the sim's true vol, for
    // contracts whose price carries information (|delta| 0.15–0.85, 7 days to 1 year),
    // on the out-of-the-money side for American contracts (deep in the money they
    // trade at intrinsic, above their European value: see the README) and on both
    // sides for European SPX.
    let mut s = c
        .prepare(
            "SELECT abs(a.iv - q.source_iv) / q.source_iv FROM option_analytics a
             JOIN option_quotes q USING (as_of, contract)
             WHERE a.as_of = DATE '2025-05-14' AND a.iv IS NOT NULL
               AND abs(a.delta) BETWEEN 0.15 AND 0.85 AND a.t_years BETWEEN 7/365 AND 1
               AND (q.style = 'european'
                    OR (a.put_call = 'P' AND a.strike <= a.forward)
                    OR (a.put_call = 'C' AND a.strike >= a.forward))
             ORDER BY 1",
        )
        .unwrap();
    let errs: Vec<f64> = s
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(errs.len() > 3000, "{}", errs.len());
    let median = errs[errs.len() / 2];
    let p95 = errs[errs.len() * 95 / 100];
    assert!(median < 0.005, "median relative IV error {median}");
    assert!(p95 < 0.03, "95th percentile relative IV error {p95}");
    // The 30-day ATM IV matches the sim's own 30-day ATM vol — for names without an
    // earnings date between 20 and 45 days out (an earnings jump between the two
    // expiries around 30 days is spread by the total-variance interpolation, while the
    // sim's own 30-day figure counts it or not: the two differ by design there).
    let sim = Sim::new(42);
    let d = NaiveDate::from_ymd_opt(2025, 5, 14).unwrap();
    let mut checked = 0;
    for sym in [
        "SPY", "QQQ", "SPX", "XLE", "IWM", "AAPL", "MSFT", "NVDA", "JPM", "COST", "PEP",
    ] {
        let near_earnings = (20..=45).any(|k| {
            let day = d + chrono::Duration::days(k);
            optdesk::sources::sim::path::is_earnings_day(
                sym,
                day,
                Some(day - chrono::Duration::days(1)),
            )
        });
        if near_earnings {
            continue;
        }
        let got: f64 = c
            .query_row(
                "SELECT atm_iv_30d FROM vol_metrics WHERE as_of = DATE '2025-05-14' AND symbol = ?",
                [sym],
                |r| r.get(0),
            )
            .unwrap();
        let want = sim.atm_iv_30d(sym, d).unwrap();
        assert!(
            ((got - want) / want).abs() < 0.03,
            "{sym}: {got} vs true {want}"
        );
        checked += 1;
    }
    assert!(checked >= 7, "checked {checked} names");
    // HV, IV rank (on backfilled history), skew and expected moves exist for SPY.
    let (hv30, rank, hist, skew, spread): (f64, f64, i32, f64, f64) = c
        .query_row(
            "SELECT hv_30, iv_rank_252, iv_history_sessions, skew_25d, iv_hv30_spread FROM vol_metrics
             WHERE as_of = DATE '2025-05-14' AND symbol = 'SPY'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert!(
        hv30 > 0.03 && hv30 < 1.0 && (0.0..=1.0).contains(&rank) && hist >= 252,
        "{hv30} {rank} {hist}"
    );
    assert!(skew > 0.0, "put skew: {skew}");
    assert!(spread.is_finite());
    let moves: i64 = c
        .query_row("SELECT count(*) FROM expected_moves WHERE symbol = 'SPY' AND straddle_move > 0 AND iv_move > 0", [], |r| r.get(0))
        .unwrap();
    assert!(moves >= 10, "{moves}");
    // Implied correlation with a Z-score from the backfilled history.
    let (rho, n, z, real): (f64, i32, f64, f64) = c
        .query_row(
            "SELECT implied_corr, components, zscore, realized_corr FROM correlation
             WHERE as_of = DATE '2025-05-14' AND basis = 'chains'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert!(
        rho > 0.0 && rho < 1.0 && n >= 20 && z.is_finite() && real > -1.0 && real < 1.0,
        "{rho} {n} {z} {real}"
    );
}

#[test]
fn crossed_and_zero_quotes_get_a_reason_and_the_job_still_succeeds() {
    let desk = Desk::new();
    desk.run_ok(&["job", "run", "fetch_chains", "--as-of", "2025-03-14"]);
    {
        let c = duckdb::Connection::open(desk.db()).unwrap();
        c.execute_batch(
            "UPDATE option_quotes SET bid = ask + 0.05 WHERE as_of = DATE '2025-03-14' AND contract = (SELECT min(contract) FROM option_quotes WHERE underlying = 'AAPL');
             UPDATE option_quotes SET bid = 0, ask = 0 WHERE as_of = DATE '2025-03-14' AND contract = (SELECT max(contract) FROM option_quotes WHERE underlying = 'AAPL');",
        )
        .unwrap();
    }
    let out = desk.run_ok(&["job", "run", "compute_vol", "--as-of", "2025-03-14"]);
    assert!(out.contains(" ok "), "{out}");
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM option_analytics WHERE iv_note = 'crossed quote (bid above ask)'"
        ),
        1
    );
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM option_analytics WHERE iv_note = 'no quote (ask is zero)'"
        ),
        1
    );
}

#[test]
fn compute_vol_without_chains_fails_with_the_reason() {
    let desk = Desk::new();
    let o = desk.run(&["job", "run", "compute_vol", "--as-of", "2025-03-14"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("run fetch_chains for this session (and slot) first"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn calc_solves_a_file_and_refuses_bad_input_without_output() {
    let desk = Desk::new();
    let dir = desk.dir.path();
    std::fs::write(
        dir.join("in.csv"),
        "right,spot,strike,t_years,rate,div_yield,price\nC,42,40,0.5,0.1,0,4.759422392871532\nP,100,50,0.5,0,0,0.0\n",
    )
    .unwrap();
    let out = desk.run_ok(&["calc", "--input", "in.csv", "--output", "out.csv"]);
    assert!(out.contains("2 rows, 1 with an IV"), "{out}");
    let text = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    let row: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
    assert!(
        (row[7].parse::<f64>().unwrap() - 0.2).abs() < 1e-12,
        "{text}"
    );
    assert!(
        text.lines().nth(2).unwrap().ends_with(",no_time_value")
            || text.lines().nth(2).unwrap().contains("below"),
        "{text}"
    );
    let stdout = desk.run_ok(&["calc", "--input", "in.csv"]);
    assert_eq!(stdout, text, "stdout and file agree");

    std::fs::write(dir.join("bad.csv"), "right,spot,strike,t_years,rate,div_yield,price\nC,42,40,0.5,0.1,0,4.7\nC,42,forty,0.5,0.1,0,4.7\n").unwrap();
    let o = desk.run(&["calc", "--input", "bad.csv", "--output", "bad_out.csv"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("bad.csv: line 3, field 'strike': 'forty' is not a number"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("bad_out.csv").exists() && !dir.join("bad_out.csv.partial").exists());
}
