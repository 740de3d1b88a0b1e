//! Fuzz targets: property tests over arbitrary bytes and strings, and over
//! structured-but-hostile inputs (near-valid CSV lines, TOML with nan/inf/huge numbers
//! and unknown keys), for every parser of outside input reachable through the library:
//! identifiers, prices and rights, the reference-data CSVs (`data/`), the TOML
//! configuration (`jobs/desk.toml`, job files, `jobs/strategies/*.toml`), session times
//! and `--as-of` dates, and `calc`'s CSV.
//!
//! Every property asks: no panic; an error has a message (and names the file where it
//! has one); a parsed value prints back to text that parses to the same value.
//!
//! `cargo test` runs 256 cases per target. The full run is
//! `OPTDESK_FUZZ_CASES=1000000 cargo test --release --test fuzz` (see the README).

use optdesk::calc;
use optdesk::clock::{parse_ny_datetime, TimeSpec};
use optdesk::config::{self, Config, DeskFile, JobFile};
use optdesk::jobs::{
    compute_vol, correlation, email_report, fetch_chains, select_trades, snapshot_benchmarks,
};
use optdesk::model::identifiers::{ClientOrderId, Intent, OccSymbol, Symbol};
use optdesk::model::{OptionRight, Price};
use optdesk::refdata;
use optdesk::trading::strategies;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use std::path::Path;

/// Cases per target: `OPTDESK_FUZZ_CASES`, 256 when unset.
fn cases() -> u32 {
    std::env::var("OPTDESK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(256)
}

/// Run `check` over `strategy`; a panic or a failed check fails the test with the
/// smallest input proptest finds. No regression files are written.
fn fuzz<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let n = cases();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: n,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    });
    let started = std::time::Instant::now();
    if let Err(e) = runner.run(&strategy, check) {
        panic!("fuzz target {name}: {e}");
    }
    eprintln!(
        "fuzz target {name}: {n} cases, no panic ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
}

/// An error must say something.
fn has_message(e: &impl std::fmt::Display) -> Result<(), TestCaseError> {
    let s = e.to_string();
    prop_assert!(!s.trim().is_empty(), "an error with an empty message");
    Ok(())
}

/// An error must say something and name `file`.
fn names_file(e: &impl std::fmt::Display, file: &str) -> Result<(), TestCaseError> {
    let s = e.to_string();
    prop_assert!(
        s.contains(file) && s.len() > file.len() + 1,
        "the error does not name {file} or says nothing else: {s}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
// Input generators
// ---------------------------------------------------------------------------------

/// Characters that break parsers: separators, quotes, line ends, signs, exponents,
/// NUL, a byte-order mark, multi-byte characters.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => select(vec![
            ',', '"', '\'', '\n', '\r', '\t', ' ', '#', '=', '[', ']', '{', '}', ':', '.',
            '-', '+', '_', 'e', 'E', 'n', 'i', 'T', 'C', 'P', '0', '1', '9', '\\', '\0',
            '\u{feff}', '\u{a0}', 'é', 'Ä', 'ß', '日', '\u{10ffff}', '\u{202e}',
        ]),
        1 => any::<char>(),
    ]
}

/// Apply a few random edits (insert, delete, replace, duplicate a run) to a valid
/// input, so most cases stay near the valid form.
fn mutate(base: String, edits: Vec<(usize, u8, char)>) -> String {
    let mut v: Vec<char> = base.chars().collect();
    for (pos, op, c) in edits {
        let i = pos % (v.len() + 1);
        match op % 4 {
            0 => v.insert(i, c),
            1 => {
                if i < v.len() {
                    v.remove(i);
                }
            }
            2 => {
                if i < v.len() {
                    v[i] = c;
                } else {
                    v.push(c);
                }
            }
            _ => {
                let j = (i + 1 + c as usize % 8).min(v.len());
                let run: Vec<char> = v[i..j].to_vec();
                v.splice(i..i, run);
            }
        }
    }
    v.into_iter().collect()
}

fn mutated(base: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (
        base,
        vec((any::<usize>(), any::<u8>(), hostile_char()), 0..5),
    )
        .prop_map(|(b, e)| mutate(b, e))
}

/// Arbitrary text: any Unicode, arbitrary bytes read as UTF-8 (lossily), hostile
/// characters only, or `near` (a generator of near-valid inputs) mutated.
fn text(near: impl Strategy<Value = String> + Clone) -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<String>(),
        1 => vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => vec(hostile_char(), 0..40).prop_map(|c| c.into_iter().collect::<String>()),
        2 => near.clone(),
        3 => mutated(near),
    ]
}

fn date() -> impl Strategy<Value = chrono::NaiveDate> + Clone {
    (0i64..36_524).prop_map(|d| {
        chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap() + chrono::Duration::days(d)
    })
}

fn occ_parts() -> impl Strategy<Value = (String, chrono::NaiveDate, OptionRight, i64)> + Clone {
    (
        "[A-Z0-9]{1,6}",
        date(),
        prop_oneof![Just(OptionRight::Call), Just(OptionRight::Put)],
        1i64..=99_999_999,
    )
}

fn valid_occ() -> impl Strategy<Value = String> + Clone {
    occ_parts().prop_map(|(root, expiry, right, milli)| {
        OccSymbol::new_checked(&root, expiry, right, Price::from_raw(milli * 10))
            .expect("a valid OCC symbol")
            .to_string()
    })
}

fn intent() -> impl Strategy<Value = Intent> + Clone {
    select(vec![
        Intent::Entry,
        Intent::Exit,
        Intent::Expire,
        Intent::Flatten,
    ])
}

fn order_id_parts(
) -> impl Strategy<Value = (Intent, String, chrono::NaiveDate, u32, u32, u32)> + Clone {
    (
        intent(),
        "[a-z0-9_]{1,40}",
        date(),
        0u32..24,
        0u32..60,
        any::<u32>(),
    )
}

fn valid_order_id() -> impl Strategy<Value = String> + Clone {
    order_id_parts().prop_map(|(i, s, d, h, m, seq)| {
        ClientOrderId::new(
            i,
            &s,
            d,
            chrono::NaiveTime::from_hms_opt(h, m, 0).unwrap(),
            seq,
        )
        .expect("a valid order id")
        .to_string()
    })
}

/// Numbers as they appear in CSV fields and TOML values, many of them hostile.
fn number_text() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        2 => select(vec![
            "0", "-0", "1", "-1", "0.5", "100", "7.5", "1e308", "-1e308", "1e309", "1e-400",
            "5e-324", "nan", "NaN", "-nan", "+nan", "inf", "-inf", "+inf", "infinity",
            "9223372036854775807", "-9223372036854775808", "9223372036854775808",
            "18446744073709551616", "99999999999999999999999999", "0x10", "1_000", "1,5",
            ".", "-", "", " 7.5 ", "1e", "0.0000001",
        ])
        .prop_map(str::to_string),
        1 => any::<f64>().prop_map(|x| format!("{x:?}")),
        1 => any::<i64>().prop_map(|x| x.to_string()),
    ]
}

// ---------------------------------------------------------------------------------
// Identifiers, prices, rights
// ---------------------------------------------------------------------------------

#[test]
fn fuzz_occ_symbol_parse() {
    fuzz("OccSymbol::parse", text(valid_occ()), |s| {
        match OccSymbol::parse(&s) {
            Ok(o) => {
                // What parsed prints as the padded form, which parses to the same symbol.
                let back = OccSymbol::parse(&o.to_string());
                prop_assert_eq!(back.as_ref().ok(), Some(&o), "{:?} → {}", s, o);
            }
            Err(e) => has_message(&e)?,
        }
        Ok(())
    });
}

#[test]
fn fuzz_occ_symbol_round_trip() {
    fuzz(
        "OccSymbol Display → parse",
        occ_parts(),
        |(root, expiry, right, milli)| {
            let o = OccSymbol::new_checked(&root, expiry, right, Price::from_raw(milli * 10))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let padded = o.to_string();
            prop_assert_eq!(padded.len(), 21);
            prop_assert_eq!(OccSymbol::parse(&padded).ok(), Some(o.clone()));
            // The compact vendor form parses too.
            let compact = padded.replace(' ', "");
            prop_assert_eq!(OccSymbol::parse(&compact).ok(), Some(o));
            Ok(())
        },
    );
}

#[test]
fn fuzz_client_order_id_parse() {
    fuzz("ClientOrderId::parse", text(valid_order_id()), |s| {
        match ClientOrderId::parse(&s) {
            Ok(id) => {
                let back = ClientOrderId::parse(&id.to_string());
                prop_assert_eq!(back.as_ref().ok(), Some(&id), "{:?} → {}", s, id);
            }
            Err(e) => has_message(&e)?,
        }
        Ok(())
    });
}

#[test]
fn fuzz_client_order_id_round_trip() {
    fuzz(
        "ClientOrderId Display → parse",
        order_id_parts(),
        |(i, s, d, h, m, seq)| {
            let t = chrono::NaiveTime::from_hms_opt(h, m, 0).unwrap();
            let id = ClientOrderId::new(i, &s, d, t, seq)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let text = id.to_string();
            prop_assert_eq!(ClientOrderId::parse(&text).ok(), Some(id), "{}", text);
            Ok(())
        },
    );
}

#[test]
fn fuzz_symbol_new_checked() {
    fuzz(
        "Symbol::new_checked",
        text("[A-Z0-9./^-]{1,10}".prop_map(|s| s.to_string())),
        |s| {
            match Symbol::new_checked(&s) {
                Ok(sym) => {
                    prop_assert_eq!(sym.as_str(), s.as_str());
                    prop_assert_eq!(sym.to_string(), s);
                }
                Err(e) => has_message(&e)?,
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_option_right_from_str() {
    let near =
        select(vec!["C", "P", "call", "PUT", " c ", "Call", "x", ""]).prop_map(str::to_string);
    fuzz("OptionRight::from_str", text(near), |s| {
        match s.parse::<OptionRight>() {
            Ok(r) => {
                let u = s.trim().to_ascii_uppercase();
                let expected = if u.starts_with('C') { "C" } else { "P" };
                prop_assert_eq!(r.code(), expected, "{:?}", s);
                prop_assert_eq!(r.code().parse::<OptionRight>().ok(), Some(r));
            }
            Err(e) => has_message(&e)?,
        }
        Ok(())
    });
}

#[test]
fn fuzz_price_try_from_f64() {
    let special = select(vec![
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        -0.0,
        9.0e11,
        -9.0e11,
        9.000000000001e11,
        5e-5,
        -5e-5,
        4.99999e-5,
    ]);
    let bits = any::<u64>().prop_map(f64::from_bits);
    let strategy = prop_oneof![special, bits, any::<f64>(), -1.0e12f64..1.0e12];
    fuzz("Price::try_from_f64", strategy, |x| {
        match Price::try_from_f64(x) {
            Ok(p) => {
                prop_assert!(x.is_finite() && x.abs() <= 9.0e11, "{x} accepted");
                // Within half a tick, and it prints.
                prop_assert!((p.to_f64() - x).abs() <= 0.5 / Price::SCALE as f64 + x.abs() * 1e-15);
                prop_assert!(!p.to_string().is_empty());
            }
            Err(e) => {
                prop_assert!(!x.is_finite() || x.abs() > 9.0e11, "{x} refused");
                has_message(&e)?;
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------
// Session times and dates from configuration and the command line
// ---------------------------------------------------------------------------------

#[test]
fn fuzz_time_spec_parse() {
    let near = prop_oneof![
        (
            select(vec!["open", "close", "OPEN", "Close"]),
            select(vec!["+", "-", " + ", "−", ""]),
            "[0-9]{0,22}[hm]?([0-9]{0,3}m)?",
        )
            .prop_map(|(a, s, d)| format!("{a}{s}{d}")),
        vec(
            select(vec![
                "*",
                "0",
                "35",
                "9",
                "59",
                "60",
                "-1",
                "*/5",
                "1-5",
                "MON-FRI",
                "L",
                "5L",
                "1#3",
                "?",
                "W",
                "15W",
                "JAN",
                "1,2,3",
                "4294967296",
                "*/0",
                "0-59/61",
                "SUN-SAT",
                "7",
            ]),
            0..8,
        )
        .prop_map(|f| f.join(" ")),
    ];
    fuzz("TimeSpec::parse", text(near), |s| {
        if let Err(e) = TimeSpec::parse(&s) {
            has_message(&e)?;
        }
        Ok(())
    });
}

#[test]
fn fuzz_parse_ny_datetime() {
    // Dates near the present, and years at the ends of what chrono can represent
    // (`%Y` takes a sign and more than four digits).
    let year = prop_oneof![Just(None), (-262_145i32..=262_145).prop_map(Some)];
    let near =
        (date(), year, 0u32..30, 0u32..70, any::<bool>()).prop_map(|(d, y, h, m, with_time)| {
            let d = match y {
                Some(y) => format!("{y:+}{}", &d.to_string()[4..]),
                None => d.to_string(),
            };
            if with_time {
                format!("{d}T{h:02}:{m:02}")
            } else {
                d
            }
        });
    fuzz("clock::parse_ny_datetime", text(near), |s| {
        if let Err(e) = parse_ny_datetime(&s) {
            has_message(&e)?;
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------
// Reference data: data/qqq_top50_weights.csv and data/events.csv
// ---------------------------------------------------------------------------------

/// Near-valid CSV: a header of (maybe) the right columns, comment and blank lines,
/// rows of hostile fields, `\n` or `\r\n` line ends.
fn csv_text(
    columns: Vec<&'static str>,
    field: impl Strategy<Value = String> + Clone,
) -> impl Strategy<Value = String> + Clone {
    let header = vec(select(columns), 0..6).prop_map(|c| c.join(","));
    let line = prop_oneof![
        6 => vec(field, 0..7).prop_map(|f| f.join(",")),
        1 => Just(String::new()),
        1 => "# [ -~]{0,20}".prop_map(|s| s.to_string()),
        1 => Just("   ".to_string()),
    ];
    (
        vec("# [ -~]{0,20}".prop_map(|s| s.to_string()), 0..2),
        header,
        vec(line, 0..8),
        select(vec!["\n", "\r\n", "\r"]),
        any::<bool>(),
    )
        .prop_map(|(comments, header, lines, eol, bom)| {
            let mut all = comments;
            all.push(header);
            all.extend(lines);
            let t = all.join(eol);
            if bom {
                format!("\u{feff}{t}")
            } else {
                t
            }
        })
}

fn weights_field() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        2 => number_text(),
        1 => select(vec!["AAPL", "BRK.B", "", " ", "XLK", "\"MSFT\"", "\"a,b\"", "#"])
            .prop_map(str::to_string),
        1 => "[A-Za-z0-9 .\"#-]{0,8}".prop_map(|s| s.to_string()),
    ]
}

#[test]
fn fuzz_parse_index_weights() {
    let near = csv_text(
        vec![
            "symbol",
            "weight_pct",
            "sector",
            "name",
            " symbol ",
            "\"symbol\"",
            "",
        ],
        weights_field(),
    );
    fuzz("refdata::parse_index_weights", text(near), |s| {
        match refdata::parse_index_weights("w.csv", &s) {
            Ok(rows) => {
                for r in rows {
                    prop_assert!(r.weight > 0.0 && r.weight.is_finite(), "{r:?}");
                    prop_assert!(!r.symbol.is_empty());
                }
            }
            Err(e) => names_file(&e, "w.csv")?,
        }
        Ok(())
    });
}

fn rate_field() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        2 => number_text(),
        2 => date().prop_map(|d| d.to_string()),
        1 => select(vec!["date", "low_pct", "high_pct", "", "\"1,5\"", "#", "2024-02-30"])
            .prop_map(str::to_string),
    ]
}

#[test]
fn fuzz_parse_rates() {
    let near = csv_text(
        vec!["date", "low_pct", "high_pct", "decided", " date ", ""],
        rate_field(),
    );
    fuzz("refdata::parse_rates", text(near), |s| {
        match refdata::parse_rates("r.csv", &s) {
            Ok(rows) => {
                for w in rows.windows(2) {
                    prop_assert!(w[0].from < w[1].from, "{w:?}");
                }
                for r in rows {
                    prop_assert!(r.rate.is_finite() && r.low_pct <= r.high_pct, "{r:?}");
                }
            }
            Err(e) => names_file(&e, "r.csv")?,
        }
        Ok(())
    });
}

fn event_date_field() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        2 => date().prop_map(|d| d.to_string()),
        1 => (-300_000i32..300_000, 0u32..15, 0u32..40)
            .prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}")),
        1 => select(vec!["date", "FOMC", "CPI", "03/20/2025", "2025-02-29", "+2025-01-01", ""])
            .prop_map(str::to_string),
        1 => number_text(),
    ]
}

/// The events file is read from disk only (`load_events`): each case is written to one
/// file of a temporary folder, as raw bytes (so invalid UTF-8 reaches the reader).
#[test]
fn fuzz_load_events() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("events.csv");
    let file = f.display().to_string();
    let near = csv_text(
        vec!["date", "event", "detail", "Date", ""],
        event_date_field(),
    );
    let bytes = prop_oneof![
        4 => text(near).prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..128),
    ];
    fuzz("refdata::load_events", bytes, |b| {
        std::fs::write(&f, &b).unwrap();
        if let Err(e) = refdata::load_events(&f, false) {
            names_file(&e, &file)?;
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------
// Configuration TOML
// ---------------------------------------------------------------------------------

/// A TOML value, mostly hostile: nan, infinities, numbers beyond every integer type,
/// wrong types, bad session times and cron expressions, unknown names in lists.
fn toml_value() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => number_text(),
        3 => select(vec![
            "true", "false", "\"sim\"", "\"paper\"", "\"live\"", "\"\"", "\"open+5m\"",
            "\"close-30m\"", "\"close+30m\"", "\"open-2h\"", "\"35 9 * * MON-FRI\"",
            "\"0 3 * * *\"", "\"* * * * * * *\"", "\"open+99999999999999999999m\"",
            "\"open+9223372036854775807h\"", "\"open+\"", "[]", "[\"SPY\", \"NOPE\"]",
            "[\"SPY\", \"SPY\"]", "[1, \"a\"]", "[\"fills\", \"bogus\"]", "[\"\"]", "{}",
            "{ a = 1 }", "1979-05-27", "1979-05-27T07:32:00Z", "07:32:00", "'literal'",
            "\"\"\"multi\nline\"\"\"", "\"\\u0000\"", "\"é\"", "[[]]", "[nan, inf]",
            "\"https://api.telegram.org\"", "\"starttls\"", "\"data/events.csv\"",
            "\"/dev/null\"", "\"../../x\"",
        ])
        .prop_map(str::to_string),
        1 => any::<String>().prop_map(|s| format!("{s:?}")),
        1 => vec(number_text(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
    ]
}

/// Every key any optdesk TOML file has, and some it does not.
const TOML_KEYS: &[&str] = &[
    "source",
    "lock_timeout_secs",
    "seed",
    "daily",
    "events",
    "telegram_api",
    "attempts",
    "timeout_secs",
    "kind",
    "fill_toward_mid",
    "commission_per_contract",
    "commission_per_share",
    "enabled",
    "slots",
    "symbols",
    "max_expiry_days",
    "history_sessions",
    "tickers",
    "capital",
    "otm_min_pct",
    "otm_max_pct",
    "target_dte",
    "min_dte",
    "max_dte",
    "min_volume",
    "min_bid",
    "min_iv_over_hv_pts",
    "min_edge_pct",
    "size_pct",
    "max_margin_pct",
    "max_open_per_ticker",
    "components",
    "index",
    "starting_cash",
    "signal_only",
    "kill_file",
    "events_file",
    "benchmarks",
    "risk_free_rate",
    "subject_prefix",
    "port",
    "host",
    "bogus",
    "\"quoted key\"",
    "a.b",
    "params.capital",
    "desk.seed",
    "sim.seed",
];

const TOML_SECTIONS: &[&str] = &[
    "[desk]",
    "[sim]",
    "[schedule]",
    "[alerts]",
    "[broker]",
    "[params]",
    "[params.smtp]",
    "[limits]",
    "[bogus]",
    "[[params]]",
    "[params.sub]",
    "[desk",
    "[]",
];

/// A TOML document from known and unknown sections and keys with hostile values,
/// sometimes with a few character edits on top.
fn toml_text() -> impl Strategy<Value = String> + Clone {
    let line = prop_oneof![
        1 => select(TOML_SECTIONS.to_vec()).prop_map(str::to_string),
        5 => (select(TOML_KEYS.to_vec()), toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => Just("# comment".to_string()),
        1 => Just(String::new()),
    ];
    let doc = vec(line, 0..12).prop_map(|l| l.join("\n"));
    prop_oneof![3 => doc.clone(), 1 => mutated(doc)]
}

/// TOML for the files: hostile structured documents, the shipped file mutated, or
/// arbitrary text.
fn config_text(shipped: &'static str) -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        4 => toml_text(),
        2 => mutated(Just(shipped.to_string())),
        1 => any::<String>(),
        1 => vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

const DESK_TOML: &str = include_str!("../jobs/desk.toml");
const FETCH_CHAINS_TOML: &str = include_str!("../jobs/fetch_chains.toml");
const CALL_PREMIUM_TOML: &str = include_str!("../jobs/strategies/call_premium.toml");
const DISPERSION_TOML: &str = include_str!("../jobs/strategies/dispersion.toml");
const WHEEL_TOML: &str = include_str!("../jobs/strategies/cash_secured_put.toml");

#[test]
fn fuzz_config_parse_desk_file() {
    fuzz("config::parse::<DeskFile>", config_text(DESK_TOML), |s| {
        if let Err(e) = config::parse::<DeskFile>(Path::new("jobs/desk.toml"), &s) {
            names_file(&e, "jobs/desk.toml")?;
        }
        Ok(())
    });
}

#[test]
fn fuzz_config_parse_job_files() {
    fn one<P: serde::de::DeserializeOwned + Default>(s: &str) -> Result<(), TestCaseError> {
        if let Err(e) = config::parse::<JobFile<P>>(Path::new("jobs/x.toml"), s) {
            names_file(&e, "jobs/x.toml")?;
        }
        Ok(())
    }
    fuzz(
        "config::parse::<JobFile<_>>",
        config_text(FETCH_CHAINS_TOML),
        |s| {
            one::<fetch_chains::Params>(&s)?;
            one::<compute_vol::Params>(&s)?;
            one::<correlation::Params>(&s)?;
            one::<select_trades::Params>(&s)?;
            one::<email_report::Params>(&s)?;
            one::<snapshot_benchmarks::Params>(&s)?;
            Ok(())
        },
    );
}

/// Each case writes a file's bytes into a temporary configuration folder.
fn write_case(path: &Path, text: &str, raw: &[u8]) {
    let mut b = text.as_bytes().to_vec();
    b.extend_from_slice(raw);
    std::fs::write(path, b).unwrap();
}

/// Raw bytes to append: usually none, sometimes invalid UTF-8.
fn raw_tail() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![6 => Just(Vec::new()), 1 => vec(any::<u8>(), 1..8)]
}

#[test]
fn fuzz_config_load_desk_toml() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    let desk = jobs.join("desk.toml");
    let file = desk.display().to_string();
    fuzz(
        "Config::load (desk.toml)",
        (config_text(DESK_TOML), raw_tail()),
        |(s, raw)| {
            write_case(&desk, &s, &raw);
            match Config::load(&jobs, true) {
                Ok(c) => {
                    // What loaded is usable: the daily time was checked at load.
                    let t = c.daily_time();
                    prop_assert!(t.is_ok(), "loaded, then daily_time fails: {:?}", t.err());
                }
                Err(e) => names_file(&e, &file)?,
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_config_job_file() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    let config = Config::load(&jobs, true).unwrap();
    let job = jobs.join("fetch_chains.toml");
    let file = job.display().to_string();
    fuzz(
        "Config::job (fetch_chains.toml)",
        (config_text(FETCH_CHAINS_TOML), raw_tail()),
        |(s, raw)| {
            write_case(&job, &s, &raw);
            if let Err(e) = config.job::<fetch_chains::Params>("fetch_chains") {
                names_file(&e, &file)?;
            }
            Ok(())
        },
    );
}

/// `strategies::registry` with an arbitrary file for one strategy (call_premium most
/// often) in `jobs/strategies/`; the other strategies take their defaults.
#[test]
fn fuzz_strategy_files() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs");
    let strat = jobs.join("strategies");
    std::fs::create_dir_all(&strat).unwrap();
    let config = Config::load(&jobs, true).unwrap();
    let which = prop_oneof![
        4 => Just(("call_premium", CALL_PREMIUM_TOML)),
        1 => Just(("dispersion", DISPERSION_TOML)),
        1 => Just(("cash_secured_put", WHEEL_TOML)),
        1 => Just(("covered_call", WHEEL_TOML)),
    ];
    let case =
        which.prop_flat_map(|(name, shipped)| (Just(name), config_text(shipped), raw_tail()));
    fuzz("strategies::registry", case, |(name, s, raw)| {
        for k in strategies::KNOWN {
            let _ = std::fs::remove_file(strat.join(format!("{k}.toml")));
        }
        let path = strat.join(format!("{name}.toml"));
        write_case(&path, &s, &raw);
        if let Err(e) = strategies::registry(&config) {
            names_file(&e, &path.display().to_string())?;
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------
// calc's CSV
// ---------------------------------------------------------------------------------

fn calc_field() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        4 => number_text(),
        1 => select(vec![
            "C", "P", "call", "put", "X", "", "\"C\"", "\"1,5\"", "\"", "\"\"", "\"a\"\"b\"",
            "\"multi\nline\"", "\"7.5", "note",
        ])
        .prop_map(str::to_string),
    ]
}

#[test]
fn fuzz_calc_run_text() {
    let near = csv_text(
        vec![
            "right",
            "spot",
            "strike",
            "t_years",
            "rate",
            "div_yield",
            "price",
            "vol",
            "id",
            "iv",
            "note",
            "\"price\"",
            "",
        ],
        calc_field(),
    );
    // A header with every required column, in any order, then rows.
    let full = (
        Just(vec![
            "right",
            "spot",
            "strike",
            "t_years",
            "rate",
            "div_yield",
        ])
        .prop_shuffle(),
        select(vec![
            "price",
            "vol",
            "price,vol",
            "vol,id",
            "price,iv,delta",
        ]),
        vec(vec(calc_field(), 5..10), 0..6),
        select(vec!["\n", "\r\n"]),
    )
        .prop_map(|(cols, extra, rows, eol)| {
            let mut lines = vec![format!("{},{extra}", cols.join(","))];
            lines.extend(rows.into_iter().map(|r| r.join(",")));
            lines.join(eol)
        });
    let strategy = prop_oneof![1 => text(near), 2 => full.clone(), 2 => mutated(full)];
    fuzz("calc::run_text", strategy, |s| {
        match calc::run_text(&s, "in.csv") {
            Ok((out, _)) => prop_assert!(String::from_utf8(out).is_ok(), "output not UTF-8"),
            Err(e) => names_file(&e, "in.csv")?,
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------
// optdesk import: the layout detector and whole files
// ---------------------------------------------------------------------------------

const IMPORT_HEADERS: &[&str] = &[
    "[QUOTE_UNIXTIME], [QUOTE_READTIME], [QUOTE_DATE], [QUOTE_TIME_HOURS], [UNDERLYING_LAST], [EXPIRE_DATE], [EXPIRE_UNIX], [DTE], [C_DELTA], [C_GAMMA], [C_VEGA], [C_THETA], [C_RHO], [C_IV], [C_VOLUME], [C_LAST], [C_SIZE], [C_BID], [C_ASK], [STRIKE], [P_BID], [P_ASK], [P_SIZE], [P_LAST], [P_DELTA], [P_GAMMA], [P_VEGA], [P_THETA], [P_RHO], [P_IV], [P_VOLUME], [STRIKE_DISTANCE], [STRIKE_DISTANCE_PCT]",
    "underlying_symbol,quote_date,root,expiration,strike,option_type,open,high,low,close,trade_volume,bid_size_1545,bid_1545,ask_size_1545,ask_1545,underlying_bid_1545,underlying_ask_1545,implied_underlying_price_1545,active_underlying_price_1545,implied_volatility_1545,delta_1545,gamma_1545,theta_1545,vega_1545,rho_1545,bid_size_eod,bid_eod,ask_size_eod,ask_eod,underlying_bid_eod,underlying_ask_eod,vwap,open_interest,delivery_code",
    "UnderlyingSymbol,UnderlyingPrice,Exchange,OptionRoot,OptionExt,Type,Expiration,DataDate,Strike,Last,Bid,Ask,Volume,OpenInterest,IV,Delta,Gamma,Theta,Vega,AKA",
    "UnderlyingSymbol,UnderlyingPrice,Flags,OptionSymbol,Type,Expiration,DataDate,Strike,Last,Bid,Ask,Volume,OpenInterest,T1OpenInterest,IVMean,IVBid,IVAsk,Delta,Gamma,Theta,Vega,AKA",
    "underlying,underlying_last, exchange,optionroot,optionext,type,expiration,quotedate,strike,last,bid,ask,volume,openinterest,impliedvol,delta,gamma,theta,vega,optionalias",
    "Date,Open,High,Low,Close,Adj Close,Volume",
    "date,symbol,open,high,low,close,volume",
    "#expiry,strike,right,open,high,low,close,volume,open_interest,implied_volatility,delta,gamma,vega,theta,rho",
    "date,expiry,strike,right,open,high,low,close,volume,open_interest,implied_volatility,delta,gamma,vega,theta,rho",
    "quote_date,underlying,expiration,strike,right,style,bid_open,bid_high,bid_low,bid_close,bid_size,ask_open,ask_high,ask_low,ask_close,ask_size,trade_open,trade_high,trade_low,trade_close,volume,open_interest",
    "datetime,symbol,open,high,low,close,volume",
    "Date,Open,Close,High,Low,Volume",
];

fn import_field() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        2 => number_text(),
        2 => date().prop_map(|d| d.to_string()),
        1 => date().prop_map(|d| d.format("%m/%d/%Y").to_string()),
        1 => select(vec!["C", "P", "call", "put", "SPY", "^SPX", "SPXW", "SPY1", "N", "*", "1 x 2",
                         "2024-03-14 16:00", "20240322", "11/5/2019 9:30", "2022-10-19 09:30:00-04:00",
                         "2022-10-19 13:30:00+00:00", "SPY240322C00480000", "\"a,b\"", "\"", ""])
            .prop_map(str::to_string),
        1 => "[ -~]{0,12}".prop_map(|s| s.to_string()),
    ]
}

/// A header from a known layout (possibly mutated) and rows of plausible or hostile fields.
fn import_file_text() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        4 => select(IMPORT_HEADERS.to_vec()).prop_map(str::to_string),
        1 => mutated(select(IMPORT_HEADERS.to_vec()).prop_map(str::to_string)),
    ];
    let row = prop_oneof![
        4 => vec(import_field(), 0..36).prop_map(|f| f.join(",")),
        1 => vec(import_field(), 0..36).prop_map(|f| f.join(", ")),
    ];
    prop_oneof![
        6 => (header, vec(row, 0..6)).prop_map(|(h, rows)| {
            let mut s = h;
            for r in rows {
                s.push('\n');
                s.push_str(&r);
            }
            s.into_bytes()
        }),
        1 => vec(any::<u8>(), 0..256),
    ]
}

#[test]
fn fuzz_import_layout_detection() {
    use optdesk::sources::import::{normalize_header, Layout};
    let header = prop_oneof![
        1 => any::<String>(),
        2 => mutated(select(IMPORT_HEADERS.to_vec()).prop_map(str::to_string)),
        1 => select(IMPORT_HEADERS.to_vec()).prop_map(str::to_string),
    ];
    fuzz("import::detect", header, |h| {
        let cols = normalize_header(&h);
        if let Some(l) = Layout::detect(&cols) {
            prop_assert_eq!(Layout::parse(l.name()), Ok(l));
        }
        Ok(())
    });
}

/// Whole files through `import_file` into one store: each case imports or fails naming
/// the file, and a failed import leaves the archive as it was. (A store per process:
/// DuckDB's setup is too slow per case; 256 cases take about ten seconds.)
#[test]
fn fuzz_import_file() {
    use optdesk::sources::import::import_file;
    let dir = tempfile::tempdir().unwrap();
    let store = optdesk::store::Store::open_write(
        &dir.path().join("f.duckdb"),
        std::time::Duration::from_secs(5),
        "fuzz",
    )
    .unwrap();
    let path = dir.path().join("spy_eod_202403.csv");
    let file = std::fs::canonicalize(dir.path())
        .unwrap()
        .join("spy_eod_202403.csv");
    let file = file.display().to_string();
    let count = |conn: &duckdb::Connection| -> i64 {
        conn.query_row(
            "SELECT (SELECT count(*) FROM option_archive) + (SELECT count(*) FROM archive_bars) + (SELECT count(*) FROM import_rejects) + (SELECT count(*) FROM archive_minute_bars)",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    // Each case starts from an empty archive: what a failed import must leave.
    let n = (cases() / 16).max(16);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: n,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    });
    let started = std::time::Instant::now();
    let res = runner.run(&import_file_text(), |bytes| {
        store
            .conn
            .execute_batch("DELETE FROM option_archive; DELETE FROM archive_bars; DELETE FROM import_rejects; DELETE FROM archive_minute_bars; DELETE FROM imports;")
            .unwrap();
        std::fs::write(&path, &bytes).unwrap();
        match import_file(&store.conn, &path, None, None) {
            Ok(s) => prop_assert!(s.kept >= 0 && s.rejected >= 0),
            Err(e) => {
                names_file(&e, &file)?;
                prop_assert_eq!(count(&store.conn), 0, "a failed import wrote rows: {}", e);
            }
        }
        Ok(())
    });
    if let Err(e) = res {
        panic!("fuzz target import::import_file: {e}");
    }
    eprintln!(
        "fuzz target import::import_file: {n} cases, no panic ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------
// The cboe source: option symbols and delayed-quotes payloads
// ---------------------------------------------------------------------------------

#[test]
fn fuzz_cboe_option_symbol() {
    use optdesk::sources::cboe::parse_option_symbol;
    let valid =
        ("[A-Z]{1,6}", date(), any::<bool>(), 1i64..=99_999_999).prop_map(|(root, d, call, k)| {
            format!(
                "{root}{}{}{k:08}",
                d.format("%y%m%d"),
                if call { "C" } else { "P" }
            )
        });
    let input = prop_oneof![
        1 => any::<String>(),
        2 => valid.clone(),
        2 => mutated(valid),
    ];
    fuzz("cboe::parse_option_symbol", input, |s| {
        if let Some((root, expiry, right, strike)) = parse_option_symbol(&s) {
            prop_assert!(!root.is_empty() && strike.is_positive());
            // It prints back to the symbol it came from.
            let code = if right == OptionRight::Call { "C" } else { "P" };
            let back = format!(
                "{root}{}{code}{:08}",
                expiry.format("%y%m%d"),
                (strike.to_f64() * 1000.0).round() as i64
            );
            prop_assert_eq!(back, s.trim().replace(' ', ""));
        }
        Ok(())
    });
}

#[test]
fn fuzz_cboe_payload() {
    use optdesk::sources::cboe::parse_payload;
    let option = (
        "[A-Z]{1,4}[0-9]{6}[CP][0-9]{8}",
        number_text(),
        number_text(),
        number_text(),
    )
        .prop_map(|(sym, bid, ask, iv)| {
            format!(
                r#"{{"option": "{sym}", "bid": {bid}, "ask": {ask}, "iv": {iv}, "volume": 1.0}}"#
            )
        });
    let body = (vec(option, 0..4), number_text(), "[ -~]{0,20}").prop_map(|(opts, price, ts)| {
        format!(
            r#"{{"timestamp": "{ts}", "data": {{"options": [{}], "current_price": {price}}}, "symbol": "X"}}"#,
            opts.join(", ")
        )
    });
    let input = prop_oneof![
        1 => vec(any::<u8>(), 0..200),
        3 => body.clone().prop_map(String::into_bytes),
        2 => mutated(body).prop_map(String::into_bytes),
    ];
    fuzz("cboe::parse_payload", input, |b| {
        match parse_payload(&b, "cboe X") {
            Ok(p) => prop_assert!(p.price > 0.0 && p.price.is_finite()),
            Err(e) => names_file(&e, "cboe X")?,
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------
// The yahoo source: v7 options pages and v8 charts
// ---------------------------------------------------------------------------------

#[test]
fn fuzz_yahoo_options_page() {
    use optdesk::sources::yahoo::parse_options;
    let contract = (
        "[A-Z]{1,4}[0-9]{6}[CP][0-9]{8}",
        number_text(),
        number_text(),
        number_text(),
        prop_oneof![Just("REGULAR"), Just("MINI"), Just("")],
    )
        .prop_map(|(sym, bid, ask, iv, size)| {
            format!(
                r#"{{"contractSymbol": "{sym}", "bid": {bid}, "ask": {ask}, "impliedVolatility": {iv}, "contractSize": "{size}"}}"#
            )
        });
    let body = (
        vec(contract.clone(), 0..3),
        vec(contract, 0..3),
        number_text(),
        vec(-5_000_000_000i64..5_000_000_000, 0..3),
    )
        .prop_map(|(calls, puts, price, exps)| {
            format!(
                r#"{{"optionChain": {{"result": [{{"expirationDates": [{}], "quote": {{"regularMarketPrice": {price}, "marketState": "REGULAR", "regularMarketTime": {}}}, "options": [{{"calls": [{}], "puts": [{}]}}]}}], "error": null}}}}"#,
                exps.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "),
                exps.first().copied().unwrap_or(0),
                calls.join(", "),
                puts.join(", ")
            )
        });
    let input = prop_oneof![
        1 => vec(any::<u8>(), 0..200),
        3 => body.clone().prop_map(String::into_bytes),
        2 => mutated(body).prop_map(String::into_bytes),
    ];
    fuzz("yahoo::parse_options", input, |b| {
        match parse_options(&b, "yahoo X") {
            Ok(Some(p)) => prop_assert!(p.price > 0.0 && p.price.is_finite()),
            Ok(None) => {}
            Err(e) => names_file(&e, "yahoo X")?,
        }
        Ok(())
    });
}

#[test]
fn fuzz_yahoo_chart() {
    use optdesk::sources::yahoo::parse_chart;
    let body = (
        vec((-5_000_000_000i64..5_000_000_000, number_text()), 0..4),
        number_text(),
        number_text(),
    )
        .prop_map(|(bars, num, den)| {
            let ts: Vec<String> = bars.iter().map(|b| b.0.to_string()).collect();
            let px: Vec<String> = bars.iter().map(|b| b.1.clone()).collect();
            let split = ts.first().cloned().unwrap_or_else(|| "0".into());
            format!(
                r#"{{"chart": {{"result": [{{"timestamp": [{t}], "events": {{"splits": {{"{split}": {{"date": {split}, "numerator": {num}, "denominator": {den}}}}}, "dividends": {{"{split}": {{"amount": {num}, "date": {split}}}}}}}, "indicators": {{"quote": [{{"open": [{p}], "high": [{p}], "low": [{p}], "close": [{p}], "volume": [{p}]}}]}}}}], "error": null}}}}"#,
                t = ts.join(", "),
                p = px.join(", ")
            )
        });
    let input = prop_oneof![
        1 => vec(any::<u8>(), 0..200),
        3 => body.clone().prop_map(String::into_bytes),
        2 => mutated(body).prop_map(String::into_bytes),
    ];
    fuzz("yahoo::parse_chart", input, |b| {
        match parse_chart(&b, "X", "yahoo X chart") {
            Ok(bars) => {
                for bar in bars {
                    prop_assert_eq!(&bar.symbol, "X");
                    prop_assert!(bar.split_ratio > 0.0 && bar.split_ratio.is_finite());
                    prop_assert!(bar.close.is_positive() && bar.low.is_positive());
                }
            }
            Err(e) => names_file(&e, "yahoo X chart")?,
        }
        Ok(())
    });
}
