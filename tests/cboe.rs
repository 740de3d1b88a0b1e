//! The `cboe` source against a local HTTP server serving delayed-quotes payloads in the
//! recorded shape (synthetic values): a normal day, 429 then 200, 429 until the bound,
//! a timeout, a cut payload, a symbol without options, an empty result, an unknown
//! symbol. A failed fetch writes nothing.

mod common;
use common::servers::{Answer, PathServer, Route};
use common::Desk;
use std::sync::Arc;
use std::time::Duration;

fn ok(body: String) -> Answer {
    Answer::ok(body)
}

fn status(s: u16) -> Answer {
    Answer::status(s)
}

fn serve(route: Arc<Route>) -> PathServer {
    PathServer::start(route)
}

/// A payload in Cboe's shape: strikes around `spot` for two expiries, calls and puts.
fn payload(symbol: &str, root: &str, spot: f64, step: f64) -> String {
    let mut opts = Vec::new();
    for (exp, t) in [("241220", 29.0f64 / 365.0), ("250117", 57.0 / 365.0)] {
        for i in -6i32..=6 {
            let k = (spot / step).round() * step + i as f64 * step;
            for (right, intrinsic) in [("C", (spot - k).max(0.0)), ("P", (k - spot).max(0.0))] {
                let tv =
                    spot * 0.16 * t.sqrt() * 0.4 * (-(((k - spot) / (spot * 0.05)).powi(2))).exp();
                let mid = intrinsic + tv.max(0.05);
                let half = (mid * 0.01).max(0.05);
                opts.push(format!(
                    r#"{{"option": "{root}{exp}{right}{:08}", "bid": {:.2}, "bid_size": 10.0, "ask": {:.2}, "ask_size": 12.0, "iv": 0.16, "open_interest": 100.0, "volume": 7.0, "delta": 0.5, "gamma": 0.01, "vega": 0.1, "theta": -0.1, "rho": 0.01, "theo": {mid:.2}, "change": 0.0, "open": 0.0, "high": 0.0, "low": 0.0, "tick": "up", "last_trade_price": {mid:.2}, "last_trade_time": "2024-11-21T10:04:59", "percent_change": 0.0, "prev_day_close": {mid:.2}}}"#,
                    (k * 1000.0).round() as i64,
                    mid - half,
                    mid + half
                ));
            }
        }
    }
    format!(
        r#"{{"timestamp": "2024-11-21 10:05:00", "data": {{"options": [{}], "symbol": "{symbol}", "security_type": "stock", "current_price": {spot}, "bid": {spot}, "ask": {spot}, "iv30": 16.1}}, "symbol": "{symbol}"}}"#,
        opts.join(", ")
    )
}

fn desk_for(port: u16, extra: &str) -> Desk {
    let desk = Desk::new();
    // The shipped file's own [cboe] and [yahoo] tables give way to the test's.
    let text = desk.desk_toml_for("cboe", &["[cboe]", "[yahoo]"]);
    desk.write_config(
        "desk.toml",
        &format!(
            "{text}\n[cboe]\nbase_url = \"http://127.0.0.1:{port}\"\nsymbols = [\"SPX\", \"SPY\"]\nattempts = 3\nbackoff_ms = 10\nmax_backoff_secs = 1\npause_ms = 0\nhistory = \"none\"\n{extra}"
        ),
    );
    desk
}

const DAY: &str = "2024-11-21";
const SPX: &str = "/api/global/delayed_quotes/options/_SPX.json";
const SPY: &str = "/api/global/delayed_quotes/options/SPY.json";

fn normal(path: &str) -> Answer {
    match path {
        SPX => ok(payload("^SPX", "SPXW", 5917.11, 25.0)),
        SPY => ok(payload("SPY", "SPY", 590.5, 5.0)),
        _ => status(404),
    }
}

fn quotes(desk: &Desk) -> i64 {
    desk.count("SELECT count(*) FROM option_quotes")
}

#[test]
fn a_normal_day_is_fetched_parsed_and_priced() {
    let server = serve(Arc::new(|p: &str, _, _| normal(p)));
    let desk = desk_for(server.port, "");
    let out = desk.run_ok(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert!(
        out.contains("from cboe") && out.contains("Cboe payload time 2024-11-21 10:05:00"),
        "{out}"
    );
    assert_eq!(quotes(&desk), 2 * 2 * 13 * 2);
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM option_quotes WHERE source <> 'cboe' OR source_iv <> 0.16"
        ),
        0
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE underlying = 'SPX' AND root = 'SPXW' AND settlement = 'cash' AND style = 'european'"),
        52
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE contract = 'SPY   241220C00590000' AND expiry = DATE '2024-12-20' AND strike = 590"),
        1
    );
    // Priced at the rate in effect that day: the 4.50–4.75% range from 2024-11-08 in the
    // shipped rate table (data/rates.csv), its midpoint as a continuous rate.
    assert!(
        out.contains("risk-free rate 4.6889% (federal funds target 4.50–4.75% from 2024-11-08"),
        "{out}"
    );
    let want = 365.0 * (0.04625f64 / 360.0).ln_1p();
    let (lo, hi): (f64, f64) = desk
        .open()
        .query_row(
            "SELECT min(rate), max(rate) FROM underlying_quotes",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        (lo - want).abs() < 1e-12 && (hi - want).abs() < 1e-12,
        "{lo} {hi} / {want}"
    );
    let out = desk.run_ok(&["job", "run", "compute_vol", "--as-of", DAY]);
    assert!(out.contains("median |IV − source IV|"), "{out}");
    let hits = server.hits();
    assert_eq!(hits.len(), 2, "one request per symbol: {hits:?}");
}

#[test]
fn a_429_is_retried_and_the_bound_ends_it_with_the_reason() {
    // 429 once, then the payload.
    let server = serve(Arc::new(|p: &str, n, _| {
        if p == SPY && n == 0 {
            status(429)
        } else {
            normal(p)
        }
    }));
    let desk = desk_for(server.port, "");
    desk.run_ok(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert_eq!(quotes(&desk), 104);
    assert_eq!(server.count(SPY), 2);

    // 429 every time: three tries, then the job fails with the reason and writes nothing.
    let server = serve(Arc::new(
        |p: &str, _, _| if p == SPY { status(429) } else { normal(p) },
    ));
    let desk = desk_for(server.port, "");
    let all = desk.run_fails(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert!(
        all.contains("SPY") && all.contains("429") && all.contains("after 3 attempt(s)"),
        "{all}"
    );
    assert_eq!(quotes(&desk), 0, "nothing written");
    assert_eq!(desk.count("SELECT count(*) FROM underlying_quotes"), 0);
    assert_eq!(server.count(SPY), 3);
}

#[test]
fn a_timeout_a_cut_payload_an_empty_result_and_an_unknown_symbol_fail_whole() {
    let cases: Vec<(Arc<Route>, &str, &str)> = vec![
        (
            Arc::new(|p: &str, _, _| {
                let mut a = normal(p);
                if p == SPY {
                    a.delay = Duration::from_secs(3);
                }
                a
            }),
            "timeout_secs = 1\n",
            "timed out",
        ),
        (
            Arc::new(|p: &str, _, _| {
                let mut a = normal(p);
                if p == SPY {
                    a.body.truncate(a.body.len() / 2);
                }
                a
            }),
            "",
            "cut short",
        ),
        (
            Arc::new(|p: &str, _, _| if p == SPY { ok("{}".into()) } else { normal(p) }),
            "",
            "cboe SPY: field 'data': missing",
        ),
        (
            Arc::new(|p: &str, _, _| {
                let mut a = normal(p);
                if p == SPY {
                    // Before the open: every contract quoted 0 by 0.
                    a.body = payload("SPY", "SPY", 590.5, 5.0)
                        .split("\"bid\": ")
                        .enumerate()
                        .map(|(i, part)| {
                            if i == 0 {
                                part.to_string()
                            } else {
                                let rest = &part[part.find(',').unwrap()..];
                                format!("0.0{rest}")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\"bid\": ")
                        .replace("\"ask\": ", "\"ask\": 0.0, \"was_ask\": ");
                }
                a
            }),
            "",
            "SPY's chain is placeholders, not a market: 52 of 52 contracts have bid and ask 0 (Cboe's delayed quotes before the open)",
        ),
        (
            Arc::new(|p: &str, _, _| normal(p)),
            "symbols = [\"SPX\", \"NOPE\"]\n",
            "cboe has no data for symbol NOPE",
        ),
    ];
    for (handler, extra, want) in cases {
        let server = serve(handler);
        let desk = desk_for(server.port, "");
        if !extra.is_empty() {
            // The case's own settings replace the defaults above.
            let text = std::fs::read_to_string(desk.jobs.join("desk.toml")).unwrap();
            let key = extra.split('=').next().unwrap().trim();
            let text: String = text
                .lines()
                .filter(|l| !l.starts_with(&format!("{key} =")))
                .collect::<Vec<_>>()
                .join("\n");
            desk.write_config("desk.toml", &format!("{text}\n{extra}"));
        }
        let all = desk.run_fails(&["job", "run", "fetch_chains", "--as-of", DAY]);
        assert!(all.contains(want), "{want}: {all}");
        assert_eq!(quotes(&desk), 0, "{want}: nothing written");
    }
}

#[test]
fn a_symbol_without_options_keeps_its_price_and_says_so() {
    let server = serve(Arc::new(|p: &str, _, _| {
        if p == SPY {
            ok(r#"{"timestamp": "2024-11-21 10:05:00", "data": {"options": [], "symbol": "SPY", "current_price": 590.5}, "symbol": "SPY"}"#.into())
        } else {
            normal(p)
        }
    }));
    let desk = desk_for(server.port, "");
    let out = desk.run_ok(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert!(out.contains("SPY: no options listed"), "{out}");
    assert_eq!(quotes(&desk), 52);
    assert_eq!(
        desk.count("SELECT count(*) FROM underlying_quotes WHERE symbol = 'SPY' AND price = 590.5"),
        1
    );
}

#[test]
fn quotes_that_break_a_rule_are_kept_out_with_the_rule_and_what_was_received() {
    let server = serve(Arc::new(|p: &str, _, _| {
        if p == SPY {
            let body = payload("SPY", "SPY", 590.5, 5.0).replacen(
                r#"{"option": "SPY241220C"#,
                r#"{"option": "SPY 24X220C00590000", "bid": 1.0, "ask": 1.1}, {"option": "SPY241115C00590000", "bid": 3.0, "ask": 2.0}, {"option": "SPY241220C"#,
                1,
            );
            ok(body)
        } else {
            normal(p)
        }
    }));
    let desk = desk_for(server.port, "");
    let out = desk.run_ok(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert!(
        out.contains("2 quotes rejected (1 expired, 1 unparseable; see quote_rejects)"),
        "{out}"
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM quote_rejects WHERE rule = 'unparseable' AND contract = 'SPY 24X220C00590000' AND raw LIKE 'option=SPY 24X220C00590000%'"),
        1
    );
    // Expired on 2024-11-15, before the session, and crossed: the first rule that fails.
    assert_eq!(
        desk.count("SELECT count(*) FROM quote_rejects WHERE rule = 'expired' AND raw LIKE 'SPY,SPY,2024-11-15,%'"),
        1
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM quote_rejects WHERE rule IS NULL OR raw IS NULL"),
        0
    );
    assert_eq!(quotes(&desk), 104, "the good quotes are all there");
}

#[test]
fn daily_bars_can_come_from_yahoo_and_say_so() {
    // Three sessions of SPY and SPX from Yahoo's chart endpoint on the same test host.
    let chart = |sym: &str, px: f64| {
        let ts = ["1731940200", "1732026600", "1732113000"]; // 2024-11-18..20, 14:30 UTC
        let p = [px, px * 1.01, px * 0.99]
            .map(|x| format!("{x:.2}"))
            .join(", ");
        format!(
            r#"{{"chart": {{"result": [{{"meta": {{"symbol": "{sym}"}}, "timestamp": [{}], "indicators": {{"quote": [{{"open": [{p}], "high": [{p}], "low": [{p}], "close": [{p}], "volume": [1, 2, 3]}}]}}}}], "error": null}}}}"#,
            ts.join(", ")
        )
    };
    let server = serve(Arc::new(move |p: &str, _, cookie: &str| {
        let path = p.split('?').next().unwrap_or(p);
        match path {
            "/cookie" => Answer::status(404).header("Set-Cookie", "A3=d=x; Path=/"),
            "/v1/test/getcrumb" if cookie.contains("A3=d=x") => ok("crumb1".into()),
            "/v8/finance/chart/SPY" if p.contains("crumb=crumb1") => ok(chart("SPY", 590.0)),
            "/v8/finance/chart/%5ESPX" if p.contains("crumb=crumb1") => ok(chart("^SPX", 5900.0)),
            _ => normal(p),
        }
    }));
    let desk = desk_for(
        server.port,
        &format!(
            "\n[yahoo]\nbase_url = \"http://127.0.0.1:{0}\"\ncookie_url = \"http://127.0.0.1:{0}/cookie\"\nbackoff_ms = 10\n",
            server.port
        ),
    );
    let text = std::fs::read_to_string(desk.jobs.join("desk.toml"))
        .unwrap()
        .replace("history = \"none\"", "history = \"yahoo\"");
    desk.write_config("desk.toml", &text);
    let out = desk.run_ok(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert!(out.contains("daily bars from yahoo"), "{out}");
    assert_eq!(
        desk.count("SELECT count(*) FROM underlying_bars WHERE source = 'yahoo' AND date BETWEEN DATE '2024-11-18' AND DATE '2024-11-20'"),
        6
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE source = 'cboe'"),
        104
    );
}
