//! The `yahoo` source against a local HTTP server serving the cookie, the crumb, v7
//! options pages and v8 charts in the recorded shapes (synthetic values): a normal day,
//! 429 then 200, 429 until the bound, a timeout, a cut answer, a refused crumb answered
//! by a new one, a symbol without options, an empty result, the pre-market placeholder
//! chain. A failed fetch writes nothing.

mod common;
use common::servers::{Answer, PathServer, Route};
use common::Desk;
use std::sync::Arc;
use std::time::Duration;

const DAY: &str = "2025-02-24";
/// Expiries listed: 2025-02-28, 2025-03-21 (within 60 days) and 2025-06-20 (not).
const EXPIRIES: [(i64, &str, f64); 3] = [
    (1740700800, "250228", 4.0),
    (1742515200, "250321", 25.0),
    (1750377600, "250620", 116.0),
];

/// A v7 page: the quote, every expiry listed, and the chain of `expiry` (the nearest
/// when `None`), strikes around `spot`. `dead` quotes every contract 0/0 with
/// placeholder IVs, as Yahoo does before the open.
fn page(symbol: &str, root: &str, spot: f64, step: f64, expiry: Option<i64>, dead: bool) -> String {
    let (ts, code, days) = EXPIRIES
        .iter()
        .copied()
        .find(|e| Some(e.0) == expiry || expiry.is_none())
        .unwrap();
    let t = days / 365.0;
    let mut sides = [Vec::new(), Vec::new()];
    for i in -5i32..=5 {
        let k = (spot / step).round() * step + i as f64 * step;
        for (n, (right, intrinsic)) in [("C", (spot - k).max(0.0)), ("P", (k - spot).max(0.0))]
            .into_iter()
            .enumerate()
        {
            let tv = spot * 0.2 * t.sqrt() * 0.4 * (-(((k - spot) / (spot * 0.06)).powi(2))).exp();
            let mid = intrinsic + tv.max(0.05);
            let half = (mid * 0.01).max(0.02);
            let (bid, ask, iv) = if dead {
                (
                    0.0,
                    0.0,
                    [1.0000000000000003e-05, 0.007822421875, 0.0312596875]
                        [i.unsigned_abs() as usize % 3],
                )
            } else {
                (mid - half, mid + half, 0.2)
            };
            let volume = if i % 2 == 0 { r#""volume": 12, "# } else { "" };
            sides[n].push(format!(
                r#"{{"contractSymbol": "{root}{code}{right}{:08}", "strike": {k}, "currency": "USD", "lastPrice": {mid:.2}, "change": 0, "percentChange": 0, {volume}"openInterest": 40, "bid": {bid:.2}, "ask": {ask:.2}, "contractSize": "REGULAR", "expiration": {ts}, "lastTradeDate": 1740150000, "impliedVolatility": {iv}, "inTheMoney": {}}}"#,
                (k * 1000.0).round() as i64,
                intrinsic > 0.0
            ));
        }
    }
    format!(
        r#"{{"optionChain": {{"result": [{{"underlyingSymbol": "{symbol}", "expirationDates": [{}], "strikes": [], "hasMiniOptions": false, "quote": {{"language": "en-US", "quoteType": "EQUITY", "currency": "USD", "regularMarketPrice": {spot}, "regularMarketTime": 1740410100, "marketState": "{}", "exchangeTimezoneName": "America/New_York", "symbol": "{symbol}"}}, "options": [{{"expirationDate": {ts}, "hasMiniOptions": false, "calls": [{}], "puts": [{}]}}]}}], "error": null}}}}"#,
        EXPIRIES.map(|e| e.0.to_string()).join(", "),
        if dead { "PRE" } else { "REGULAR" },
        sides[0].join(", "),
        sides[1].join(", ")
    )
}

/// A v8 chart of every weekday from 2024-01-02 to the day before `DAY`, with a 2:1 split
/// on 2024-06-03: the closes before it are halved, as Yahoo adjusts them.
fn chart(symbol: &str, spot: f64) -> String {
    let split = chrono::NaiveDate::from_ymd_opt(2024, 6, 3).unwrap();
    let split_ts = split.and_hms_opt(14, 30, 0).unwrap().and_utc().timestamp();
    let mut d = chrono::NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
    let end = chrono::NaiveDate::parse_from_str(DAY, "%Y-%m-%d").unwrap();
    let (mut ts, mut close) = (Vec::new(), Vec::new());
    let mut n = 0;
    while d < end {
        if chrono::Datelike::weekday(&d).number_from_monday() <= 5 {
            ts.push(
                d.and_hms_opt(14, 30, 0)
                    .unwrap()
                    .and_utc()
                    .timestamp()
                    .to_string(),
            );
            close.push(format!(
                "{:.2}",
                spot * (1.0 + 0.01 * ((n % 7) as f64 - 3.0))
            ));
            n += 1;
        }
        d = d.succ_opt().unwrap();
    }
    format!(
        r#"{{"chart": {{"result": [{{"meta": {{"currency": "USD", "symbol": "{symbol}", "exchangeTimezoneName": "America/New_York", "regularMarketPrice": {spot}, "dataGranularity": "1d"}}, "timestamp": [{t}], "events": {{"splits": {{"{split_ts}": {{"date": {split_ts}, "numerator": 2, "denominator": 1, "splitRatio": "2:1"}}}}}}, "indicators": {{"quote": [{{"open": [{c}], "high": [{c}], "low": [{c}], "close": [{c}], "volume": [{v}]}}], "adjclose": [{{"adjclose": [{c}]}}]}}}}], "error": null}}}}"#,
        t = ts.join(", "),
        c = close.join(", "),
        v = vec!["1000"; ts.len()].join(", ")
    )
}

const CRUMB: &str = "haT3oykhHqZ";

/// The normal answers: a cookie, the crumb, SPY's and SPX's pages and charts.
fn normal(url: &str, _n: usize, cookie: &str) -> Answer {
    let path = url.split('?').next().unwrap_or(url);
    let date: Option<i64> = url
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("date="))
        .and_then(|v| v.parse().ok());
    match path {
        "/cookie" => Answer::status(404).header("Set-Cookie", "A3=d=test&S=x; Path=/; HttpOnly"),
        "/v1/test/getcrumb" if cookie.contains("A3=d=test") => Answer::ok(CRUMB),
        "/v1/test/getcrumb" => Answer::status(401),
        _ if !url.contains(&format!("crumb={CRUMB}")) || !cookie.contains("A3=") => {
            Answer::ok(r#"{"finance":{"result":null,"error":{"code":"Unauthorized","description":"Invalid Crumb"}}}"#).with_status(401)
        }
        "/v7/finance/options/SPY" => Answer::ok(page("SPY", "SPY", 598.5, 5.0, date, false)),
        "/v7/finance/options/%5ESPX" => {
            Answer::ok(page("^SPX", "SPXW", 5990.0, 25.0, date, false))
        }
        "/v8/finance/chart/SPY" => Answer::ok(chart("SPY", 598.5)),
        "/v8/finance/chart/%5ESPX" => Answer::ok(chart("^SPX", 5990.0)),
        _ => {
            Answer::ok(r#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}"#).with_status(404)
        }
    }
}

fn desk_for(port: u16, extra: &str) -> Desk {
    let desk = Desk::new();
    let text = desk.desk_toml_for("yahoo", &["[yahoo]"]);
    let mut settings = vec![
        format!("base_url = \"http://127.0.0.1:{port}\""),
        format!("cookie_url = \"http://127.0.0.1:{port}/cookie\""),
        "symbols = [\"SPX\", \"SPY\"]".into(),
        "attempts = 3".into(),
        "backoff_ms = 10".into(),
        "max_backoff_secs = 1".into(),
        "pause_ms = 0".into(),
    ];
    // A case's own settings replace these.
    for l in extra.lines() {
        let key = l.split('=').next().unwrap().trim();
        settings.retain(|s| !s.starts_with(&format!("{key} =")));
        settings.push(l.to_string());
    }
    desk.write_config(
        "desk.toml",
        &format!("{text}\n[yahoo]\n{}\n", settings.join("\n")),
    );
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nmax_expiry_days = 60\nhistory_sessions = 40\n",
    );
    desk
}

fn quotes(desk: &Desk) -> i64 {
    desk.count("SELECT count(*) FROM option_quotes")
}

/// Two symbols, two expiries within 60 days, 11 strikes, calls and puts.
const ALL: i64 = 2 * 2 * 11 * 2;

#[test]
fn a_normal_day_is_fetched_parsed_priced_and_its_bars_restated_raw() {
    let server = PathServer::start(Arc::new(normal));
    let desk = desk_for(server.port, "");
    let out = desk.run_ok(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert!(
        out.contains(&format!("{ALL} option quotes at 10:00 from yahoo"))
            && out.contains("Yahoo quote time 2025-02-24 10:15:00"),
        "the web sources' snapshot is at open+30m, the quote's own time is said: {out}"
    );
    assert_eq!(quotes(&desk), ALL);
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE source <> 'yahoo' OR source_iv <> 0.2 OR expiry > DATE '2025-03-21'"),
        0
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE underlying = 'SPX' AND root = 'SPXW' AND settlement = 'cash' AND style = 'european'"),
        44
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM option_quotes WHERE contract = 'SPY   250321P00600000' AND volume = 12 AND open_interest = 40"),
        1
    );
    // The index is asked for as ^SPX; one page per expiry within 60 days, none beyond.
    let hits = server.hits();
    assert!(hits
        .iter()
        .any(|u| u.starts_with("/v7/finance/options/%5ESPX?crumb=")));
    assert!(
        hits.iter().all(|u| !u.contains("date=1750377600")),
        "{hits:?}"
    );
    assert_eq!(
        hits.iter().filter(|u| u.starts_with("/v7/")).count(),
        4,
        "{hits:?}"
    );
    assert_eq!(
        hits.iter()
            .filter(|u| u.starts_with("/v1/test/getcrumb"))
            .count(),
        1,
        "one crumb for the whole run: {hits:?}"
    );
    // Bars: raw closes, the split on its date (the chart halved the closes before it).
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM underlying_bars WHERE symbol = 'SPY' AND source = 'yahoo'"
        ),
        40
    );
    let before = desk.count("SELECT count(*) FROM underlying_bars WHERE date < DATE '2024-06-03'");
    assert_eq!(before, 0, "only history_sessions = 40 sessions are kept");
    let out = desk.run_ok(&["job", "run", "compute_vol", "--as-of", DAY]);
    assert!(out.contains("median |IV − source IV|"), "{out}");
}

#[test]
fn split_closes_before_the_split_are_restated_raw() {
    let server = PathServer::start(Arc::new(normal));
    let desk = desk_for(server.port, "");
    // A session soon after the split, so the window straddles it.
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nmax_expiry_days = 60\nhistory_sessions = 10\n",
    );
    let out = desk.run_ok(&["job", "run", "fetch_chains", "--as-of", "2024-06-07"]);
    assert!(out.contains("from yahoo"), "{out}");
    // Closes cycle around the spot in 1% steps: before the split they are twice that.
    assert_eq!(
        desk.count("SELECT count(*) FROM underlying_bars WHERE symbol = 'SPY' AND date < DATE '2024-06-03' AND close < 1000"),
        0
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM underlying_bars WHERE symbol = 'SPY' AND date >= DATE '2024-06-03' AND close > 1000"),
        0
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM underlying_bars WHERE symbol = 'SPY' AND date = DATE '2024-06-03' AND split_ratio = 2"),
        1
    );
}

#[test]
fn a_429_is_retried_and_the_bound_ends_it_with_the_reason() {
    let spy = "/v7/finance/options/SPY";
    let server = PathServer::start(Arc::new(move |u: &str, n, c: &str| {
        if u.starts_with(spy) && !u.contains("date=") && n == 0 {
            Answer::ok("Edge: Too Many Requests").with_status(429)
        } else {
            normal(u, n, c)
        }
    }));
    let desk = desk_for(server.port, "");
    desk.run_ok(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert_eq!(quotes(&desk), ALL);

    let server = PathServer::start(Arc::new(move |u: &str, n, c: &str| {
        if u.starts_with(spy) {
            Answer::status(429)
        } else {
            normal(u, n, c)
        }
    }));
    let desk = desk_for(server.port, "");
    let all = desk.run_fails(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert!(
        all.contains("yahoo SPY") && all.contains("429") && all.contains("after 3 attempt(s)"),
        "{all}"
    );
    assert_eq!(quotes(&desk), 0, "nothing written");
    assert_eq!(desk.count("SELECT count(*) FROM underlying_quotes"), 0);
    assert_eq!(
        server.hits().iter().filter(|u| u.starts_with(spy)).count(),
        3
    );
}

#[test]
fn a_refused_crumb_is_fetched_again_once() {
    // The first crumb is refused by the options endpoint; getcrumb's second answer works.
    let route = |refuse_always: bool| -> Arc<Route> {
        Arc::new(move |u: &str, n, c: &str| {
            if u.starts_with("/v1/test/getcrumb") {
                return if n == 0 || refuse_always {
                    Answer::ok("staleCrumb1")
                } else {
                    normal(u, n, c)
                };
            }
            normal(u, n, c)
        })
    };
    let server = PathServer::start(route(false));
    let desk = desk_for(server.port, "concurrency = 1");
    let out = desk.run_ok(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert!(out.contains("from yahoo"), "{out}");
    assert_eq!(quotes(&desk), ALL);
    assert_eq!(server.count("/v1/test/getcrumb"), 2);

    let server = PathServer::start(route(true));
    let desk = desk_for(server.port, "concurrency = 1");
    let all = desk.run_fails(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert!(
        all.contains("field 'crumb'")
            && all.contains("refused again")
            && all.contains("Invalid Crumb"),
        "{all}"
    );
    assert_eq!(server.count("/v1/test/getcrumb"), 2, "once, not in a loop");
    assert_eq!(quotes(&desk), 0);
}

#[test]
fn a_timeout_a_cut_answer_an_empty_result_and_a_placeholder_chain_fail_whole() {
    let spy = "/v7/finance/options/SPY";
    let cases: Vec<(Arc<Route>, &str, &str)> = vec![
        (
            Arc::new(move |u: &str, n, c: &str| {
                let mut a = normal(u, n, c);
                if u.starts_with(spy) {
                    a.delay = Duration::from_secs(3);
                }
                a
            }),
            "timeout_secs = 1",
            "timed out",
        ),
        (
            Arc::new(move |u: &str, n, c: &str| {
                let mut a = normal(u, n, c);
                if u.starts_with(spy) && u.contains("date=") {
                    a.body.truncate(a.body.len() / 2);
                }
                a
            }),
            "",
            "cut short",
        ),
        (
            Arc::new(move |u: &str, n, c: &str| {
                if u.starts_with(spy) {
                    Answer::ok(r#"{"optionChain":{"result":[],"error":null}}"#)
                } else {
                    normal(u, n, c)
                }
            }),
            "",
            "yahoo has no data for symbol SPY",
        ),
        (
            Arc::new(move |u: &str, n, c: &str| {
                if u.starts_with(spy) {
                    let date = u
                        .split(['?', '&'])
                        .find_map(|kv| kv.strip_prefix("date="))
                        .and_then(|v| v.parse().ok());
                    Answer::ok(page("SPY", "SPY", 598.5, 5.0, date, true))
                } else {
                    normal(u, n, c)
                }
            }),
            "",
            "SPY's chain is placeholders, not a market: 44 of 44 contracts have bid and ask 0 (marketState PRE",
        ),
        (
            Arc::new(normal),
            "symbols = [\"SPY\", \"NOPE\"]",
            "yahoo has no data for symbol NOPE",
        ),
    ];
    for (route, extra, want) in cases {
        let server = PathServer::start(route);
        let desk = desk_for(server.port, extra);
        let all = desk.run_fails(&["job", "run", "fetch_chains", "--as-of", DAY]);
        assert!(all.contains(want), "{want}: {all}");
        assert_eq!(quotes(&desk), 0, "{want}: nothing written");
        assert_eq!(
            desk.count("SELECT count(*) FROM underlying_quotes"),
            0,
            "{want}"
        );
    }
}

#[test]
fn the_first_page_is_taken_for_the_expiry_it_serves_not_the_nearest_listed() {
    // The page without `date` serves 2025-03-21, though 2025-02-28 is listed first.
    let server = PathServer::start(Arc::new(|u: &str, n, c: &str| {
        if u.starts_with("/v7/finance/options/SPY?") && !u.contains("date=") {
            Answer::ok(page("SPY", "SPY", 598.5, 5.0, Some(1742515200), false))
        } else {
            normal(u, n, c)
        }
    }));
    let desk = desk_for(server.port, "");
    let out = desk.run_ok(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert!(!out.contains("rejected"), "no duplicates: {out}");
    assert_eq!(quotes(&desk), ALL);
    let hits = server.hits();
    assert!(
        hits.iter()
            .any(|u| u.starts_with("/v7/finance/options/SPY?date=1740700800")),
        "{hits:?}"
    );
    assert!(
        !hits
            .iter()
            .any(|u| u.starts_with("/v7/finance/options/SPY?date=1742515200")),
        "{hits:?}"
    );
}

#[test]
fn a_cookie_host_that_sets_no_cookie_is_named() {
    let server = PathServer::start(Arc::new(|u: &str, n, c: &str| {
        if u == "/cookie" {
            Answer::status(404)
        } else {
            normal(u, n, c)
        }
    }));
    let desk = desk_for(server.port, "");
    let all = desk.run_fails(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert!(
        all.contains("answered without a cookie") && all.contains("yahoo.cookie_url"),
        "{all}"
    );
    assert_eq!(quotes(&desk), 0);
    assert_eq!(
        server.count("/v1/test/getcrumb"),
        0,
        "no crumb without a cookie"
    );
}

#[test]
fn a_symbol_without_options_keeps_its_price_and_says_so() {
    let server = PathServer::start(Arc::new(|u: &str, n, c: &str| {
        if u.starts_with("/v7/finance/options/SPY") {
            Answer::ok(
                r#"{"optionChain":{"result":[{"underlyingSymbol":"SPY","expirationDates":[],"strikes":[],"hasMiniOptions":false,"quote":{"quoteType":"ETF","regularMarketPrice":598.5,"regularMarketTime":1740410100,"marketState":"REGULAR"},"options":[]}],"error":null}}"#,
            )
        } else {
            normal(u, n, c)
        }
    }));
    let desk = desk_for(server.port, "");
    let out = desk.run_ok(&["job", "run", "fetch_chains", "--as-of", DAY]);
    assert!(out.contains("SPY: no options listed"), "{out}");
    assert_eq!(quotes(&desk), ALL / 2);
    assert_eq!(
        desk.count("SELECT count(*) FROM underlying_quotes WHERE symbol = 'SPY' AND price = 598.5 AND source = 'yahoo'"),
        1
    );
}
