//! `optdesk import` of each vendor layout and the `replay` source through the whole
//! daily pipeline, on the fixtures `tests/fixtures/import/make.py` writes.

mod common;
use common::{stderr, stdout, Desk};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

const CHAINS: &[(&str, &str)] = &[
    ("spy_eod_202403.txt", "optionsdx"),
    ("UnderlyingOptionsEODCalcs_2024-03-14.csv", "datashop"),
    ("L2_options_20240315.csv", "deltaneutral"),
    ("L3_options_20240315.csv", "deltaneutral-l3"),
    ("spy_2024-03-15_deltaneutral.csv", "deltaneutral-lower"),
    ("SPY.csv", "yahoo-bars"),
];

fn import_all(desk: &Desk) -> String {
    let mut args = vec!["import".to_string()];
    args.extend(CHAINS.iter().map(|(f, _)| fixture(f).display().to_string()));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    desk.run_ok(&args)
}

fn archive(desk: &Desk) -> Vec<(String, i64, String)> {
    let mut f = desk.fingerprint(false);
    f.retain(|(t, _, _)| {
        matches!(
            t.as_str(),
            "option_archive" | "archive_bars" | "import_rejects" | "imports"
        )
    });
    f
}

#[test]
fn each_layout_is_detected_normalized_and_imported_once() {
    let desk = Desk::new();
    let out = import_all(&desk);
    for (file, layout) in CHAINS {
        let line = out
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("{file}: {out}"));
        assert!(line.contains(&format!("{layout} layout")), "{line}");
    }
    // Every chain row normalized: an OCC symbol that reads back, per-share prices, the
    // vendor's snapshot time (DataShop 15:45, the others the close).
    assert_eq!(
        desk.count("SELECT count(*) FROM option_archive WHERE length(contract) <> 21 OR bid > ask OR ask <= 0"),
        0
    );
    assert_eq!(
        desk.count("SELECT count(DISTINCT strftime(quote_time, '%H:%M')) FROM option_archive WHERE layout = 'datashop'"),
        1
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_archive WHERE layout = 'datashop' AND strftime(quote_time, '%H:%M') = '15:45'"),
        186
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_archive WHERE layout <> 'datashop' AND strftime(quote_time, '%H:%M') <> '16:00'"),
        0
    );
    // OptionsDX: two rows per line (call and put), its own IV kept.
    assert_eq!(
        desk.count("SELECT count(*) FROM option_archive WHERE layout = 'optionsdx'"),
        2 * 186
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_archive WHERE contract = 'SPY   240419C00520000' AND layout = 'optionsdx' AND vendor_iv > 0.1 AND underlying_price = 512"),
        1
    );
    // Each hygiene breaker is rejected with its rule, nothing silently dropped.
    let rules = desk.count("SELECT count(DISTINCT rule) FROM import_rejects WHERE rule IN ('crossed', 'no_ask', 'expired', 'nonstandard', 'duplicate')");
    assert_eq!(rules, 5);
    assert!(
        out.contains("1 crossed") && out.contains("1 nonstandard"),
        "{out}"
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM import_rejects WHERE rule = 'nonstandard'"),
        2,
        "SPY1 and the flag N row"
    );
    // Lines are the file's: the header is line 1, the 186 good rows 2–187, then the breakers.
    assert_eq!(
        desk.count("SELECT line FROM import_rejects WHERE rule = 'crossed'"),
        188
    );
    assert_eq!(
        desk.count("SELECT line FROM import_rejects WHERE rule = 'duplicate'"),
        192
    );
    assert_eq!(
        desk.count(
            "SELECT min(line) * 1000 + max(line) FROM option_archive WHERE layout = 'datashop'"
        ),
        2 * 1000 + 187
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM archive_bars WHERE symbol = 'SPY'"),
        73
    );
    assert_eq!(desk.count("SELECT count(*) FROM imports"), 6);

    // Importing again changes nothing.
    let before = archive(&desk);
    let again = import_all(&desk);
    assert_eq!(
        again.matches("already imported").count(),
        CHAINS.len(),
        "{again}"
    );
    assert_eq!(archive(&desk), before);
}

#[test]
fn a_bad_file_fails_whole_naming_file_line_and_field() {
    let desk = Desk::new();
    desk.run_ok(&["import", fixture("SPY.csv").to_str().unwrap()]);
    let before = archive(&desk);
    let text =
        std::fs::read_to_string(fixture("UnderlyingOptionsEODCalcs_2024-03-14.csv")).unwrap();
    let write = |name: &str, body: String| {
        let p = desk.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let bad_strike = write(
        "bad_strike.csv",
        text.lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 4 {
                    l.replacen(",SPY,2024-", ",SPY,20x4-", 1)
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let cases: Vec<(PathBuf, &str)> = vec![
        (bad_strike, "line 5, field 'expiration': '20x4-"),
        (
            write(
                "short.csv",
                text.lines()
                    .enumerate()
                    .map(|(i, l)| {
                        if i == 6 {
                            l.rsplit_once(',')
                                .unwrap()
                                .0
                                .to_string()
                                .rsplit_once(',')
                                .unwrap()
                                .0
                                .to_string()
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            "line 7: 32 fields, the header has 34",
        ),
        (
            write("semi.csv", "a;b;c\n1;2;3\n".into()),
            "unknown layout; its header is `a;b;c`; the layouts are optionsdx",
        ),
        (write("bin.csv", "\u{0}\u{1}ELF".into()), "not a text file"),
        (
            write("cut.csv.gz", "\u{1f}\u{8b}\u{8}\u{0}junk".into()),
            "cut.csv.gz",
        ),
    ];
    for (path, want) in cases {
        let o = desk.run(&["import", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.contains(path.file_name().unwrap().to_str().unwrap()),
            "names the file: {err}"
        );
        assert!(err.contains(want), "{want}: {err}");
        assert_eq!(
            archive(&desk),
            before,
            "nothing written for {}",
            path.display()
        );
    }
}

#[test]
fn a_replayed_session_runs_the_whole_pipeline_on_the_vendor_quotes() {
    let desk = Desk::new();
    import_all(&desk);
    let desk_toml = std::fs::read_to_string(desk.jobs.join("desk.toml"))
        .unwrap()
        .replace("source = \"sim\"", "source = \"replay\"");
    desk.write_config("desk.toml", &desk_toml);
    let out = desk.run_ok(&["run", "daily", "--as-of", "2024-03-15"]);
    assert!(out.contains("7 ok"), "{out}");
    // The snapshot is the vendor's end-of-day one, and every quote came from the archive,
    // one per contract (the same SPY contract is in three files).
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE source <> 'replay' OR strftime(quote_time, '%H:%M') <> '16:00'"),
        0
    );
    assert_eq!(
        desk.count("SELECT count(*) - count(DISTINCT contract) FROM option_quotes"),
        0
    );
    assert_eq!(
        desk.count("SELECT count(DISTINCT underlying) FROM option_quotes"),
        3
    );
    // Implied vols computed on the replayed chain, close to the vendor's.
    assert!(
        desk.count("SELECT count(*) FROM option_analytics a JOIN option_quotes q USING (as_of, quote_time, contract)
                    WHERE a.iv IS NOT NULL AND abs(a.iv - q.source_iv) < 0.02 AND q.underlying = 'SPY'") > 100
    );
    // The strategies decided on it: each symbol a pass with its reason or a proposal.
    assert!(desk.count("SELECT count(*) FROM signals WHERE underlying = 'SPY'") >= 2);
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM signals WHERE action = 'pass' AND coalesce(reason, '') = ''"
        ),
        0
    );
    // HV from the imported bars.
    assert_eq!(
        desk.count("SELECT count(*) FROM vol_metrics WHERE symbol = 'SPY' AND hv_30 > 0"),
        1
    );
    // A session the archive does not cover fails with the range it holds.
    let o = desk.run(&["run", "daily", "--as-of", "2024-03-13"]);
    assert_eq!(o.status.code(), Some(1));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        all.contains("no quotes on 2024-03-13: it holds 2024-03-14 to 2024-03-15"),
        "{all}"
    );
}

fn replay_desk(desk: &Desk, replay_table: &str) {
    let text = std::fs::read_to_string(desk.jobs.join("desk.toml"))
        .unwrap()
        .replace("source = \"sim\"", "source = \"replay\"")
        .replace("[replay]\n", &format!("[replay]\n{replay_table}"));
    desk.write_config("desk.toml", &text);
}

fn replayed_rate(desk: &Desk, day: &str) -> f64 {
    desk.open()
        .query_row(
            "SELECT max(rate) FROM underlying_quotes WHERE as_of = CAST(? AS DATE)",
            [day],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn a_replayed_session_is_priced_at_the_rate_in_effect_that_day() {
    let desk = Desk::new();
    import_all(&desk);
    replay_desk(&desk, "");
    // No data/ folder here: the built-in copy of data/rates.csv, whose row for
    // 2024-03-15 is the 5.25–5.50% range from 2023-07-27.
    let out = desk.run_ok(&["job", "run", "fetch_chains", "--as-of", "2024-03-15"]);
    assert!(
        out.contains(
            "federal funds target 5.25–5.50% from 2023-07-27 in built-in copy of data/rates.csv"
        ),
        "{out}"
    );
    let mid = |pct: f64| 365.0 * (pct / 100.0 / 360.0).ln_1p();
    assert!((replayed_rate(&desk, "2024-03-15") - mid(5.375)).abs() < 1e-12);

    // The user's own table: the row in effect on each session, and a session before its
    // first row is refused saying where the table starts.
    std::fs::create_dir_all(desk.dir.path().join("data")).unwrap();
    let rates = desk.dir.path().join("data/rates.csv");
    std::fs::write(
        &rates,
        "# mine\ndate,low_pct,high_pct\n2024-03-15,1.00,1.50\n2024-03-16,2.00,2.50\n",
    )
    .unwrap();
    desk.run_ok(&["job", "run", "fetch_chains", "--as-of", "2024-03-15"]);
    assert!((replayed_rate(&desk, "2024-03-15") - mid(1.25)).abs() < 1e-12);
    let o = desk.run(&["job", "run", "fetch_chains", "--as-of", "2024-03-14"]);
    assert!(!o.status.success());
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        all.contains(&format!(
            "no risk-free rate for 2024-03-14: {} starts on 2024-03-15",
            rates.display()
        )),
        "{all}"
    );
    // A bad row is named by file, line and field, under the key that names the file.
    std::fs::write(&rates, "date,low_pct,high_pct\n2024-03-01,1.00,one\n").unwrap();
    let o = desk.run(&["job", "run", "fetch_chains", "--as-of", "2024-03-15"]);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        all.contains(&format!(
            "desk.rates_file: {} line 2, field 'high_pct': 'one' is not a rate",
            rates.display()
        )),
        "{all}"
    );

    // `[replay] rate` fixes the rate for every session, table or not.
    replay_desk(&desk, "rate = 0.03\n");
    let out = desk.run_ok(&["job", "run", "fetch_chains", "--as-of", "2024-03-15"]);
    assert!(
        out.contains("risk-free rate 3.0000% (replay.rate = 0.03)"),
        "{out}"
    );
    assert_eq!(replayed_rate(&desk, "2024-03-15"), 0.03);

    // A rates file named in the configuration that is not there is an error naming the key.
    let text = std::fs::read_to_string(desk.jobs.join("desk.toml"))
        .unwrap()
        .replace("rate = 0.03\n", "")
        .replace(
            "rates_file = \"data/rates.csv\"",
            "rates_file = \"data/mine.csv\"",
        );
    desk.write_config("desk.toml", &text);
    let o = desk.run(&["job", "run", "fetch_chains", "--as-of", "2024-03-15"]);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(all.contains("desk.rates_file: cannot read"), "{all}");
    assert!(all.contains("mine.csv"), "{all}");
}

#[test]
fn a_users_own_iv_and_correlation_history_seeds_rank_and_z_score() {
    let desk = Desk::new();
    import_all(&desk);
    // 60 sessions of SPY ATM IV and of QQQ implied correlation before the replayed day.
    let days: Vec<String> = {
        let mut d = chrono::NaiveDate::from_ymd_opt(2023, 12, 1).unwrap();
        let mut out = Vec::new();
        while d < chrono::NaiveDate::from_ymd_opt(2024, 3, 15).unwrap() {
            if optdesk::calendar::is_session(d).unwrap() {
                out.push(d.to_string());
            }
            d += chrono::Duration::days(1);
        }
        out
    };
    let iv: String = std::iter::once("date,symbol,iv".to_string())
        .chain(
            days.iter()
                .enumerate()
                .map(|(i, d)| format!("{d},SPY,{:.4}", 0.12 + 0.001 * (i % 40) as f64)),
        )
        .collect::<Vec<_>>()
        .join("\n");
    let corr: String = std::iter::once("date,implied_corr".to_string())
        .chain(
            days.iter()
                .enumerate()
                .map(|(i, d)| format!("{d},{:.4}", 0.40 + 0.002 * (i % 30) as f64)),
        )
        .collect::<Vec<_>>()
        .join("\n");
    let ivf = desk.dir.path().join("my_iv.csv");
    let cf = desk.dir.path().join("correlation_data.csv");
    std::fs::write(&ivf, &iv).unwrap();
    std::fs::write(&cf, &corr).unwrap();
    let out = desk.run_ok(&["import", ivf.to_str().unwrap(), cf.to_str().unwrap()]);
    assert!(
        out.contains("iv-history layout") && out.contains("correlation-history layout"),
        "{out}"
    );
    let n = days.len() as i64;
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM iv_history WHERE symbol = 'SPY' AND source LIKE 'import:%'"
        ),
        n
    );
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM correlation WHERE basis = 'import' AND index_symbol = 'QQQ'"
        ),
        n
    );
    // Again: the same rows, not twice.
    desk.run_ok(&["import", ivf.to_str().unwrap()]);
    std::fs::write(&ivf, format!("{iv}\n")).unwrap(); // new bytes, same rows: replaced
    desk.run_ok(&["import", ivf.to_str().unwrap()]);
    assert_eq!(
        desk.count("SELECT count(*) FROM iv_history WHERE source LIKE 'import:%'"),
        n
    );

    // The replayed day ranks SPY's IV against the imported history.
    let desk_toml = std::fs::read_to_string(desk.jobs.join("desk.toml"))
        .unwrap()
        .replace("source = \"sim\"", "source = \"replay\"");
    desk.write_config("desk.toml", &desk_toml);
    desk.run_ok(&["run", "daily", "--as-of", "2024-03-15"]);
    assert!(
        desk.count("SELECT iv_history_sessions FROM vol_metrics WHERE symbol = 'SPY'") >= 60,
        "IV rank from the imported history"
    );

    // A value that is not a fraction is refused naming the line.
    std::fs::write(
        &ivf,
        "date,symbol,iv\n2024-01-02,SPY,0.15\n2024-01-03,SPY,18.5\n",
    )
    .unwrap();
    let o = desk.run(&["import", ivf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("line 3, field 'iv': 18.5 is not a 30-day ATM IV as a fraction"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM iv_history WHERE source LIKE 'import:%'"),
        n,
        "unchanged"
    );
}
