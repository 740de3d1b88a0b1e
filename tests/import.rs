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

/// `optdesk import path` fails (exit 1) naming the file and saying `want`, and the
/// archive is still `before`.
fn refused_whole(
    desk: &Desk,
    path: &std::path::Path,
    want: &str,
    before: &[(String, i64, String)],
) {
    let o = desk.run(&["import", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(path.file_name().unwrap().to_str().unwrap()),
        "names the file: {err}"
    );
    assert!(err.contains(want), "{want}: {err}");
    assert_eq!(
        archive(desk),
        before,
        "nothing written for {}",
        path.display()
    );
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
        refused_whole(&desk, path.as_ref(), want, &before);
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
    assert!(out.contains("8 ok"), "{out}");
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

// ---------------------------------------------------------------------------------
// LEAN/AlgoSeek layouts, zips, Parquet and minute bars
// ---------------------------------------------------------------------------------

/// Write a zip holding `entries` (name, text).
fn write_zip(path: &std::path::Path, entries: &[(String, String)]) {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, text) in entries {
        z.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(text.as_bytes()).unwrap();
    }
    z.finish().unwrap();
}

/// The SPY chain of 2024-03-15 (the DeltaNeutral Level 2 fixture's rows) as LEAN's raw
/// daily option zips in `dir`: quotes (prices ×10,000, one CSV per contract named with
/// its terms), trades for a few contracts, open interest for all.
fn lean_option_zips(dir: &std::path::Path, bad_line: Option<&str>) -> std::path::PathBuf {
    let text = std::fs::read_to_string(fixture("L2_options_20240315.csv")).unwrap();
    let (mut quotes, mut trades, mut ois) = (Vec::new(), Vec::new(), Vec::new());
    for (i, l) in text.lines().skip(1).enumerate() {
        let f: Vec<&str> = l.split(',').collect();
        let right = if f[5] == "call" { "call" } else { "put" };
        let (m, d, y) = (&f[6][0..2], &f[6][3..5], &f[6][6..10]);
        let strike: f64 = f[8].parse().unwrap();
        let px = |s: &str| (s.parse::<f64>().unwrap() * 10_000.0).round() as i64;
        let terms = format!("{right}_{}_{y}{m}{d}.csv", (strike * 10_000.0) as i64);
        let (b, a) = (px(f[10]), px(f[11]));
        let line = match (i, bad_line) {
            (5, Some(bad)) => bad.to_string(),
            _ => format!("20240315 00:00,{b},{b},{b},{b},10,{a},{a},{a},{a},12"),
        };
        quotes.push((format!("spy_quote_american_{terms}"), line + "\n"));
        if i % 10 == 0 {
            trades.push((
                format!("spy_trade_american_{terms}"),
                format!("20240315 00:00,{b},{a},{b},{a},{}\n", 5 + i),
            ));
        }
        ois.push((
            format!("spy_openinterest_american_{terms}"),
            format!("20240315 00:00,{}\n", 1000 + i),
        ));
    }
    let q = dir.join("spy_2024_quote_american.zip");
    write_zip(&q, &quotes);
    write_zip(&dir.join("spy_2024_trade_american.zip"), &trades);
    write_zip(&dir.join("spy_2024_openinterest_american.zip"), &ois);
    q
}

/// The Yahoo SPY bars as LEAN's daily equity zip (`spy.zip`, headerless, prices ×10,000).
fn lean_equity_zip(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(fixture("SPY.csv")).unwrap();
    let rows: String = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let px = |s: &str| (s.parse::<f64>().unwrap() * 10_000.0).round() as i64;
            format!(
                "{} 00:00,{},{},{},{},{}\n",
                f[0].replace('-', ""),
                px(f[1]),
                px(f[2]),
                px(f[3]),
                px(f[4]),
                f[6]
            )
        })
        .collect();
    let p = dir.join("spy.zip");
    write_zip(&p, &[("spy.csv".into(), rows)]);
    p
}

#[test]
fn lean_zips_and_universe_files_import_once_and_replay_through_the_pipeline() {
    let desk = Desk::new();
    let dir = desk.dir.path().join("lean");
    std::fs::create_dir_all(&dir).unwrap();
    let quote = lean_option_zips(&dir, None);
    let bars = lean_equity_zip(&dir);
    let universe = fixture("lean/option/usa/universes/spy/20240315.csv");
    let paths = [
        quote.clone(),
        dir.join("spy_2024_trade_american.zip"),
        dir.join("spy_2024_openinterest_american.zip"),
        bars,
        universe,
    ];
    let args: Vec<String> = std::iter::once("import".to_string())
        .chain(paths.iter().map(|p| p.display().to_string()))
        .collect();
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = desk.run_ok(&args);
    assert!(
        out.contains("spy_2024_quote_american.zip: lean-chain layout, 186 rows kept"),
        "{out}"
    );
    assert!(
        out.contains("joined into the import of spy_2024_quote_american.zip"),
        "{out}"
    );
    assert!(
        out.contains("spy.zip: lean-daily-bars layout, 73 rows kept"),
        "{out}"
    );
    assert!(
        out.contains("20240315.csv: lean-universe layout, 186 rows kept"),
        "{out}"
    );
    // Contract terms from the entry names, prices from deci-cents, trades and open
    // interest joined, no bid/ask on universe rows but the underlying's price and IV.
    assert_eq!(
        desk.count("SELECT count(*) FROM option_archive WHERE layout = 'lean-chain' AND underlying = 'SPY' AND contract = 'SPY   240419C00520000' AND open_interest >= 1000 AND bid > 0 AND bid < ask AND underlying_price IS NULL"),
        1
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_archive WHERE layout = 'lean-chain' AND underlying = 'SPY' AND volume > 0 AND last > 0"),
        19
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_archive WHERE layout = 'lean-universe' AND bid IS NULL AND ask IS NULL AND underlying_price = 510 AND vendor_iv > 0 AND last > 0"),
        186
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM archive_bars WHERE layout = 'lean-daily-bars' AND symbol = 'SPY' AND date = '2024-03-15' AND close = 510"),
        1
    );
    // Again: nothing changes (the quote zip's checksum covers the zips joined to it).
    let before = archive(&desk);
    let again = desk.run_ok(&args);
    assert_eq!(again.matches("already imported").count(), 3, "{again}");
    assert_eq!(archive(&desk), before);

    // Replay: quotes from the zips, the underlying's price and the vendor's IV from the
    // universe file, HV from the LEAN daily bars.
    let desk_toml = std::fs::read_to_string(desk.jobs.join("desk.toml"))
        .unwrap()
        .replace("source = \"sim\"", "source = \"replay\"");
    desk.write_config("desk.toml", &desk_toml);
    desk.run_ok(&["run", "daily", "--as-of", "2024-03-15"]);
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE underlying = 'SPY' AND (source <> 'replay' OR underlying_price <> 510)"),
        0
    );
    assert!(desk.count("SELECT count(*) FROM option_quotes WHERE underlying = 'SPY'") > 150);
    assert!(
        desk.count("SELECT count(*) FROM option_analytics a JOIN option_quotes q USING (as_of, quote_time, contract)
                    WHERE a.iv IS NOT NULL AND abs(a.iv - q.source_iv) < 0.02 AND q.underlying = 'SPY'") > 100
    );
    assert!(desk.count("SELECT count(*) FROM signals WHERE underlying = 'SPY'") >= 1);
    assert_eq!(
        desk.count("SELECT count(*) FROM vol_metrics WHERE symbol = 'SPY' AND hv_30 > 0"),
        1
    );
    // A day with universe rows alone cannot be traded, and says why.
    let u14 = desk.dir.path().join("universes/spy");
    std::fs::create_dir_all(&u14).unwrap();
    std::fs::copy(
        fixture("lean/option/usa/universes/spy/20240315.csv"),
        u14.join("20240314.csv"),
    )
    .unwrap();
    desk.run_ok(&["import", u14.join("20240314.csv").to_str().unwrap()]);
    let o = desk.run(&["run", "daily", "--as-of", "2024-03-14"]);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        all.contains("have no bid/ask (LEAN universe files"),
        "{all}"
    );
}

#[test]
fn zips_parquet_and_minute_bars_import_and_bad_ones_fail_whole() {
    let desk = Desk::new();
    let dir = desk.dir.path().to_path_buf();
    // A DataShop zip and the same chain as Parquet: the DataShop layout, as the CSV.
    let ds = fixture("UnderlyingOptionsEODCalcs_2024-03-14.csv");
    let dszip = dir.join("UnderlyingOptionsEODCalcs_2024-03-14.zip");
    write_zip(
        &dszip,
        &[(
            "UnderlyingOptionsEODCalcs_2024-03-14.csv".into(),
            std::fs::read_to_string(&ds).unwrap(),
        )],
    );
    let pq = dir.join("datashop_2024-03-14.parquet");
    let mem = duckdb::Connection::open_in_memory().unwrap();
    mem.execute_batch(&format!(
        "COPY (SELECT * FROM read_csv('{}', all_varchar = true)) TO '{}' (FORMAT parquet)",
        ds.display(),
        pq.display()
    ))
    .unwrap();
    // One-minute bars: a CSV in the Date,Open,Close,High,Low,Volume order with M/D/YYYY
    // times, and a Parquet file with a TIMESTAMP column.
    let mcsv = dir.join("spx_1min_2019-11-05.csv");
    std::fs::write(
        &mcsv,
        "Date,Open,Close,High,Low,Volume\n11/5/2019 9:30,3080.8,3080.49,3081.47,3080.3,0\n11/5/2019 9:31,3080.33,3079.36,3080.33,3079.15,0\n11/5/2019 9:32,3079.4,3079.9,3080.1,3079.2,0\n",
    )
    .unwrap();
    let mpq = dir.join("nvda_1min_2024-03-01.parquet");
    mem.execute_batch(&format!(
        "COPY (SELECT TIMESTAMP '2024-03-01 09:30:00' + INTERVAL (i) MINUTE AS datetime, 80.0 + i * 0.01 AS open,
                      80.1 + i * 0.01 AS high, 79.9 + i * 0.01 AS low, 80.05 + i * 0.01 AS close, 1000 + i AS volume
               FROM range(390) t(i)) TO '{}' (FORMAT parquet)",
        mpq.display()
    ))
    .unwrap();
    let converted = fixture("qqq_options_daily_eod_2024-03-15.csv");
    let files = [&dszip, &pq, &mcsv, &mpq, &converted];
    let args: Vec<String> = std::iter::once("import".to_string())
        .chain(files.iter().map(|p| p.display().to_string()))
        .collect();
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = desk.run_ok(&args);
    for want in [
        "UnderlyingOptionsEODCalcs_2024-03-14.zip: datashop layout, 186 rows kept, 5 rejected",
        "datashop_2024-03-14.parquet: datashop layout, 186 rows kept, 5 rejected",
        "spx_1min_2019-11-05.csv: minute-bars layout, 3 rows kept",
        "nvda_1min_2024-03-01.parquet: minute-bars layout, 390 rows kept",
        "qqq_options_daily_eod_2024-03-15.csv: lean-chain layout, 23 rows kept, 1 rejected (1 missing_price)",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    assert_eq!(
        desk.count("SELECT count(*) FROM archive_minute_bars WHERE symbol = 'SPX' AND time = '2019-11-05 09:31' AND close = 3079.36 AND high = 3080.33"),
        1
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM archive_minute_bars WHERE symbol = 'NVDA'"),
        390
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_archive WHERE underlying = 'QQQ' AND bid = 0"),
        1,
        "an empty LEAN bid is no bid"
    );
    let before = archive(&desk);
    let minutes = desk.count("SELECT count(*) FROM archive_minute_bars");
    let again = desk.run_ok(&args);
    assert_eq!(again.matches("already imported").count(), 5, "{again}");
    assert_eq!(archive(&desk), before);
    assert_eq!(
        desk.count("SELECT count(*) FROM archive_minute_bars"),
        minutes
    );

    // Bad input fails whole, naming the file (and the zip entry), line and field.
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let bad_quote = lean_option_zips(&bad, Some("20240315 00:00,1,1,1,abc,10,2,2,2,2,12"));
    let lonely = dir.join("lonely");
    std::fs::create_dir_all(&lonely).unwrap();
    let trade_alone = lonely.join("spy_2024_trade_american.zip");
    std::fs::copy(bad.join("spy_2024_trade_american.zip"), &trade_alone).unwrap();
    let two = dir.join("two.zip");
    write_zip(
        &two,
        &[
            ("a.csv".into(), "x\n".into()),
            ("b.csv".into(), "y\n".into()),
        ],
    );
    let notzip = dir.join("junk.zip");
    std::fs::write(&notzip, "PK\u{3}\u{4}junk").unwrap();
    let utc = dir.join("aapl_1min.csv");
    std::fs::write(
        &utc,
        "datetime,open,high,low,close,volume\n2022-10-19 09:30:00-04:00,1,2,0.5,1.5,10\n2022-10-19 13:31:00+00:00,1,2,0.5,1.5,10\n",
    )
    .unwrap();
    let cases: Vec<(&std::path::Path, &str)> = vec![
        (
            bad_quote.as_path(),
            "line 1, field 'bid close': 'abc' does not parse",
        ),
        (trade_alone.as_path(), "a LEAN trade zip has no bid/ask"),
        (two.as_path(), "holds 2 files"),
        (notzip.as_path(), "not a readable zip archive"),
        (
            utc.as_path(),
            "line 3, field 'datetime': '2022-10-19 13:31:00+00:00' is not a New York time",
        ),
    ];
    for (path, want) in cases {
        refused_whole(&desk, path, want, &before);
        assert_eq!(
            desk.count("SELECT count(*) FROM archive_minute_bars"),
            minutes
        );
    }
    let o = desk.run(&["import", bad_quote.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("(spy_quote_american_"),
        "names the entry: {}",
        stderr(&o)
    );
}

#[test]
fn a_chain_of_any_layout_imports_through_a_column_mapping_and_replays() {
    let desk = Desk::new();
    // The DeltaNeutral SPY rows of 2024-03-15 under headers of the user's own.
    let text = std::fs::read_to_string(fixture("L2_options_20240315.csv")).unwrap();
    let mut body = String::from("Trade Date,Ticker,Spot,Expiration,Strike,Type,Bid,Ask,OI,IV\n");
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        body.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            f[7], f[0], f[1], f[6], f[8], f[5], f[10], f[11], f[13], f[14]
        ));
    }
    let p = desk.dir.path().join("my_chain.csv");
    std::fs::write(&p, &body).unwrap();
    let map = "quote_date=Trade Date,underlying=Ticker,underlying_price=Spot,expiry=Expiration,strike=Strike,right=Type,bid=Bid,ask=Ask,open_interest=OI,iv=IV";
    // Without the mapping the header is unknown; a mapping naming a column the header
    // lacks, or missing a required field, is refused before anything is read.
    let o = desk.run(&["import", p.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("unknown layout; its header is `Trade Date,Ticker"),
        "{}",
        stderr(&o)
    );
    let o = desk.run(&[
        "import",
        p.to_str().unwrap(),
        "--map",
        &map.replace("=OI", "=OpenInt"),
    ]);
    assert!(
        stderr(&o)
            .contains("--map names column(s) the header does not have: open_interest=openint"),
        "{}",
        stderr(&o)
    );
    let o = desk.run(&[
        "import",
        p.to_str().unwrap(),
        "--map",
        "quote_date=Trade Date,bid=Bid",
    ]);
    assert!(
        stderr(&o).contains("required field(s) expiry, strike, right, ask missing"),
        "{}",
        stderr(&o)
    );
    assert_eq!(desk.count("SELECT count(*) FROM option_archive"), 0);

    let out = desk.run_ok(&["import", p.to_str().unwrap(), "--map", map]);
    assert!(
        out.contains("my_chain.csv: mapped layout, 186 rows kept, 0 rejected"),
        "{out}"
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_archive WHERE contract = 'SPY   240419C00520000' AND underlying_price = 510 AND vendor_iv > 0 AND open_interest > 0"),
        1
    );
    let again = desk.run_ok(&["import", p.to_str().unwrap(), "--map", map]);
    assert!(again.contains("already imported"), "{again}");
    desk.run_ok(&["import", fixture("SPY.csv").to_str().unwrap()]);
    let desk_toml = std::fs::read_to_string(desk.jobs.join("desk.toml"))
        .unwrap()
        .replace("source = \"sim\"", "source = \"replay\"");
    desk.write_config("desk.toml", &desk_toml);
    desk.run_ok(&["run", "daily", "--as-of", "2024-03-15"]);
    assert!(
        desk.count("SELECT count(*) FROM option_analytics a JOIN option_quotes q USING (as_of, quote_time, contract)
                    WHERE a.iv IS NOT NULL AND abs(a.iv - q.source_iv) < 0.02 AND q.underlying = 'SPY'") > 100
    );
    assert!(desk.count("SELECT count(*) FROM signals WHERE underlying = 'SPY'") >= 1);
}

#[test]
fn imported_minute_bars_replay_into_intraday_bars_and_earnings_csv_is_read() {
    let desk = Desk::new();
    import_all(&desk);
    let dir = desk.dir.path();
    let bars = dir.join("spy_1min_2024-03-15.csv");
    std::fs::write(
        &bars,
        "datetime,open,high,low,close,volume\n2024-03-15 09:30,510.10,510.30,510.00,510.20,1200\n2024-03-15 09:31,510.20,510.50,510.15,510.45,900\n2024-03-15 15:59,512.00,512.10,511.90,511.95,5000\n2024-03-14 15:59,505.00,505.10,504.90,505.05,4000\n",
    )
    .unwrap();
    desk.run_ok(&["import", &bars.display().to_string()]);
    replay_desk(&desk, "");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("data/earnings.csv"),
        "symbol,date\nAAPL,2024-05-02\nMSFT,2024-04-25\n",
    )
    .unwrap();
    for _ in 0..2 {
        desk.run_ok(&["job", "run", "fetch_chains", "--as-of", "2024-03-15"]);
        // The session's bars closed by the 16:00 snapshot, not the day before's.
        assert_eq!(
            desk.count(
                "SELECT count(*) FROM intraday_bars WHERE symbol = 'SPY' AND source = 'replay'"
            ),
            3
        );
        assert_eq!(
            desk.count("SELECT count(*) FROM intraday_bars WHERE ts = '2024-03-15 09:31' AND close = 510.45 AND high = 510.5 AND volume = 900"),
            1
        );
        assert_eq!(
            desk.count("SELECT count(*) FROM earnings_dates WHERE source = 'earnings.csv'"),
            2
        );
    }
    // A bad line of earnings.csv fails the job naming the file, the line and the field.
    std::fs::write(
        dir.join("data/earnings.csv"),
        "symbol,date\nAAPL,2024-05-02\nMSFT,25/04/2024\n",
    )
    .unwrap();
    let out = desk.run_fails(&["job", "run", "fetch_chains", "--as-of", "2024-03-15"]);
    assert!(
        out.contains("earnings.csv line 3, field 'date': '25/04/2024' is not a date"),
        "{out}"
    );
}
