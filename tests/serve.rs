//! The live dashboard over real sockets: the daemon serves it while separate processes
//! run the jobs (it never holds the store), the page in headless Chromium and its own
//! refresh, the token on a non-loopback bind, bad requests, and the token kept secret.

mod common;

use common::chrome::{chromium_or_skip, console_errors, headless};
use common::{stderr, stdout, Desk};
use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-dashboard-token-5f1c9a7e3b";

/// A desk with a reduced universe (two underlyings) so a session runs in a second or two.
fn small_desk() -> Desk {
    let desk = Desk::new();
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nsymbols = [\"SPY\", \"QQQ\"]\nhistory_sessions = 30\n",
    );
    desk
}

/// An optdesk process serving the dashboard, with its stderr collected.
struct Served {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    port: u16,
}

impl Served {
    /// Start `optdesk args` and wait for the line with the dashboard's URL.
    fn start(desk: &Desk, args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut c = desk.cmd();
        c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(err).lines().map_while(Result::ok) {
                    let _ = tx.send(l.clone());
                    log.lock().unwrap().push(l);
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            assert!(
                Instant::now() < deadline,
                "no URL printed: {:#?}",
                log.lock().unwrap()
            );
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                if let Some(rest) = l.split("the dashboard is at http://").nth(1) {
                    let hostport = rest.split('/').next().unwrap();
                    break hostport.rsplit(':').next().unwrap().parse::<u16>().unwrap();
                }
            }
        };
        Served {
            child,
            log,
            reader: Some(reader),
            port,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM, then the exit status and the whole log.
    fn stop(mut self) -> (ExitStatus, String) {
        std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        (status, self.log())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A response as the tests look at it: status, headers (lower-case names), body.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn get(req: reqwest::blocking::RequestBuilder) -> Got {
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    Got {
        status,
        headers,
        body: r.text().unwrap(),
    }
}

/// Every response carries the security headers.
fn assert_security_headers(g: &Got, what: &str) {
    let csp = g
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"));
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{what}: {csp}"
    );
    assert!(!csp.contains("http"), "{what}: an external source in {csp}");
    for (k, v) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(g.header(k), Some(v), "{what}: {k}");
    }
}

const PANELS: &[&str] = &[
    "id=\"taken-at\"",
    "id=\"kpis\"",
    "id=\"equity\"",
    "id=\"equity-chart\"",
    "id=\"drawdown\"",
    "id=\"strategy-pnl\"",
    "id=\"volatility\"",
    "id=\"positions\"",
    "id=\"signals\"",
    "id=\"trades\"",
    "id=\"refusals\"",
    "id=\"jobs\"",
    "id=\"next-firings\"",
];

#[test]
fn the_daemon_serves_the_live_page_and_its_refresh_picks_up_a_later_session() {
    let Some(chrome) = chromium_or_skip() else {
        return;
    };
    let desk = small_desk();
    // A Saturday: nothing fires; the sessions are run by separate processes.
    let daemon = Served::start(
        &desk,
        &[
            "schedule",
            "--serve",
            "127.0.0.1:0",
            "--pretend-date",
            "2025-03-15",
        ],
        &[],
    );
    // Before any run: the page says why it has nothing, and asks to come back.
    let g = get(client().get(daemon.url("/")));
    assert_eq!(g.status, 503, "{}", g.body);
    assert!(g.body.contains("There is no store yet"), "{}", g.body);
    assert_eq!(g.header("retry-after"), Some("30"));

    // The daemon does not hold the store: another process writes it, another reads it.
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-13"]);
    let out = desk.run_ok(&["sql", "SELECT count(*) AS runs FROM job_runs"]);
    assert!(out.contains("runs"), "{out}");

    let profile = desk.dir.path().join("chrome-profile");
    let o = headless(&chrome, &profile, &["--dump-dom", &daemon.url("/")]);
    let dom = stdout(&o);
    for p in PANELS {
        assert!(dom.contains(p), "the page lacks {p}:\n{dom}");
    }
    assert!(dom.contains("session 2025-03-13"), "{dom}");
    assert!(dom.contains("data taken at"), "{dom}");
    assert!(dom.contains("select_trades") && dom.contains("fetch_chains"));
    assert!(!dom.contains("session 2025-03-14"), "no later session yet");
    let log = stderr(&o);
    let errors = console_errors(&log);
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // A later session finishes after that load; the page's own reload (every second
    // here, once) shows it.
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-14"]);
    let before = daemon.log().matches("serve: GET / 200").count();
    let o = headless(
        &chrome,
        &profile,
        &[
            "--virtual-time-budget=5000",
            "--dump-dom",
            &daemon.url("/?refresh=1&reloads=1"),
        ],
    );
    let dom = stdout(&o);
    assert!(
        dom.contains("data-reloads-left=\"0\""),
        "the DOM is not the reloaded page:\n{dom}"
    );
    assert!(dom.contains("session 2025-03-14"), "{dom}");
    for p in PANELS {
        assert!(dom.contains(p), "the reloaded page lacks {p}");
    }
    let log = stderr(&o);
    let errors = console_errors(&log);
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    assert_eq!(
        daemon.log().matches("serve: GET / 200").count() - before,
        2,
        "the first load and the page's own reload: {}",
        daemon.log()
    );

    // History of the earlier day, through the same server, under the same policy.
    let o = headless(
        &chrome,
        &profile,
        &["--dump-dom", &daemon.url("/history?date=2025-03-13")],
    );
    let dom = stdout(&o);
    assert!(
        dom.contains("optdesk — 2025-03-13")
            && dom.contains("id=\"nav\"")
            && dom.contains("id=\"equity-chart\"")
            && dom.contains("id=\"universe\""),
        "{dom}"
    );
    let log = stderr(&o);
    let errors = console_errors(&log);
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    // HEAD answers the headers only.
    let g = get(client().head(daemon.url("/")));
    assert_eq!(g.status, 200);
    assert!(g.body.is_empty());
    assert_security_headers(&g, "HEAD /");

    let (status, log) = daemon.stop();
    assert!(status.success(), "{status:?}: {log}");
    assert!(log.contains("stopped cleanly"), "{log}");
}

#[test]
fn a_non_loopback_bind_needs_the_token_and_then_every_request_needs_it() {
    let desk = small_desk();
    for args in [
        &["serve", "--addr", "0.0.0.0:0"][..],
        &[
            "schedule",
            "--serve",
            "0.0.0.0:0",
            "--pretend-date",
            "2025-03-15",
        ][..],
    ] {
        let o = desk.run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("OPTDESK_DASHBOARD_TOKEN is not set"),
            "{}",
            stderr(&o)
        );
    }
    let o = desk
        .cmd()
        .args(["serve", "--addr", "0.0.0.0:0"])
        .env("OPTDESK_DASHBOARD_TOKEN", "tiny-tok")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("too short"), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("tiny-tok"),
        "the token itself is never printed"
    );

    desk.run_ok(&["run", "daily", "--as-of", "2025-03-14"]);
    let srv = Served::start(
        &desk,
        &["serve", "--addr", "127.0.0.1:0"],
        &[("OPTDESK_DASHBOARD_TOKEN", TOKEN)],
    );
    let c = client();
    // A client that announces a login form and never sends it, and one that asks for
    // pages and never reads them, hold up no one: the next request is answered.
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    std::io::Write::write_all(
        &mut stalled,
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\ntoken=x",
    )
    .unwrap();
    let mut unread = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    for _ in 0..200 {
        std::io::Write::write_all(
            &mut unread,
            b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        )
        .unwrap();
    }
    let g = get(c.get(srv.url("/login")));
    assert_eq!(g.status, 200, "{}", g.body);
    drop((stalled, unread));
    let mut seen: Vec<Got> = Vec::new();

    let g = get(c.get(srv.url("/")));
    assert_eq!(g.status, 401);
    assert!(g.body.contains("href=\"/login\"") || g.body.contains("action=\"/login\""));
    seen.push(g);
    let g = get(c.get(srv.url("/api/status")));
    assert_eq!(g.status, 401);
    assert!(g.body.contains("\"error\""), "{}", g.body);
    seen.push(g);
    let g = get(c
        .get(srv.url("/api/status"))
        .bearer_auth("not-the-token-at-all-000"));
    assert_eq!(g.status, 401);
    seen.push(g);
    let g = get(c.get(srv.url("/api/status")).bearer_auth(TOKEN));
    assert_eq!(g.status, 200, "{}", g.body);
    let v: serde_json::Value = serde_json::from_str(&g.body).unwrap();
    assert_eq!(v["session"], "2025-03-14");
    assert!(v["jobs"].as_array().unwrap().len() >= 5);
    // The volatility panel's figures: the one-day expected move from the 30-day ATM IV,
    // and the range so far against it (the volatility kill switch's ratio).
    let vol = v["volatility"].as_array().unwrap();
    let symbols: Vec<&str> = vol.iter().map(|x| x["symbol"].as_str().unwrap()).collect();
    assert!(
        symbols.contains(&"SPY") && symbols.contains(&"QQQ"),
        "{symbols:?}"
    );
    for x in vol.iter().filter(|x| !x["atm_iv_30d"].is_null()) {
        let f = |k: &str| x[k].as_f64().unwrap();
        let em = f("spot") * f("atm_iv_30d") * (1.0f64 / 252.0).sqrt();
        assert!((f("expected_move_1d") - em).abs() < 1e-9, "{x}");
        assert!(f("range_today") >= 0.0, "{x}");
        assert!(
            (f("range_over_move") - f("range_today") / em).abs() < 1e-9,
            "{x}"
        );
    }
    seen.push(g);
    let g = get(c.get(srv.url("/")).bearer_auth(TOKEN));
    assert_eq!(g.status, 200);
    seen.push(g);

    // The login form: a wrong token is refused, the right one sets a cookie that works.
    let g = get(c.get(srv.url("/login")));
    assert_eq!(g.status, 200);
    assert!(g.body.contains("method=\"post\""));
    seen.push(g);
    let g = get(c
        .post(srv.url("/login"))
        .form(&[("token", "wrong-token-wrong-token")]));
    assert_eq!(g.status, 401);
    assert!(g.header("set-cookie").is_none());
    seen.push(g);
    let g = get(c.post(srv.url("/login")).form(&[("token", TOKEN)]));
    assert_eq!(g.status, 303, "{}", g.body);
    assert_eq!(g.header("location"), Some("/"));
    let cookie = g.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    seen.push(g);
    let g = get(c.get(srv.url("/api/positions")).header("Cookie", &pair));
    assert_eq!(g.status, 200, "{}", g.body);
    seen.push(g);
    let g = get(c
        .get(srv.url("/"))
        .header("Cookie", "optdesk_session=0123456789abcdef"));
    assert_eq!(g.status, 401);
    seen.push(g);
    // The token where it does not belong is not echoed back.
    let g = get(c.get(srv.url(&format!("/{TOKEN}"))).bearer_auth(TOKEN));
    assert_eq!(g.status, 404);
    seen.push(g);
    let g = get(c
        .get(srv.url(&format!("/api/x?token={TOKEN}")))
        .bearer_auth(TOKEN));
    assert_eq!(g.status, 404);
    seen.push(g);

    for (i, g) in seen.iter().enumerate() {
        assert_security_headers(g, &format!("response {i}"));
        assert!(!g.body.contains(TOKEN), "response {i} shows the token");
        for (k, v) in &g.headers {
            assert!(
                !v.contains(TOKEN),
                "response {i}: header {k} holds the token"
            );
        }
    }
    let (_, log) = srv.stop();
    assert!(log.contains("serve: GET /api/status 401"), "{log}");
    assert!(log.contains("serve: POST /login 303"), "{log}");
    assert!(
        !log.contains(TOKEN),
        "the server's log shows the token:\n{log}"
    );
    // Nor the store (every byte of the file) or anything the desk wrote.
    let bytes = std::fs::read(desk.db()).unwrap();
    assert!(
        !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "the store holds the token"
    );
}

#[test]
fn bad_requests_get_a_clear_answer_and_change_nothing() {
    let desk = small_desk();
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-14"]);
    // One job of the session fails on a later run: the page and the status say so.
    let o = desk
        .cmd()
        .args(["job", "run", "compute_vol", "--as-of", "2025-03-14"])
        .env("OPTDESK_FAILPOINT", "compute_vol:before_commit:error")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let before = desk.fingerprint(true);
    let srv = Served::start(&desk, &["serve", "--addr", "127.0.0.1:0"], &[]);
    let c = client();
    let g = get(c.get(srv.url("/api/status")));
    let v: serde_json::Value = serde_json::from_str(&g.body).unwrap();
    let warnings = v["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .starts_with("compute_vol failed in session 2025-03-14: ")),
        "{warnings:?}"
    );
    let g = get(c.get(srv.url("/")));
    assert!(g.body.contains("id=\"warnings\"") && g.body.contains("compute_vol failed"));
    let cases: Vec<(reqwest::blocking::RequestBuilder, u16, &str)> = vec![
        (c.get(srv.url("/nowhere")), 404, "There is no page /nowhere"),
        (c.get(srv.url("/api/nowhere")), 404, "no such endpoint"),
        (
            c.get(srv.url("/api/day/2024-13-45")),
            400,
            "'2024-13-45' is not a date",
        ),
        (
            c.get(srv.url("/api/day/2025-03-16")),
            404,
            "no session: 2025-03-16",
        ),
        (
            c.get(srv.url("/api/day/2025-03-12")),
            404,
            "the store has no run for it",
        ),
        (
            c.get(srv.url("/history?date=2025-03-16")),
            404,
            "no session: 2025-03-16",
        ),
        (c.get(srv.url("/history?date=soon")), 400, "is not a date"),
        (c.get(srv.url("/?refresh=0")), 400, "refresh must be"),
        (
            c.get(srv.url("/tearsheet/no-such")),
            404,
            "no backtest named",
        ),
        (
            c.get(srv.url("/api/status"))
                .header("Host", "rebound.example"),
            403,
            "only requests addressed to 127.0.0.1 or localhost",
        ),
        (c.post(srv.url("/")), 405, "changes nothing"),
        (c.put(srv.url("/api/status")), 405, "changes nothing"),
        (
            c.delete(srv.url("/api/day/2025-03-14")),
            405,
            "changes nothing",
        ),
    ];
    for (req, status, says) in cases {
        let g = get(req);
        assert_eq!(g.status, status, "{}", g.body);
        assert!(g.body.contains(says), "expected {says:?} in {}", g.body);
        assert_security_headers(&g, says);
    }
    // What works still works, and shows the day.
    let g = get(c.get(srv.url("/api/day/2025-03-14")));
    assert_eq!(g.status, 200, "{}", g.body);
    let v: serde_json::Value = serde_json::from_str(&g.body).unwrap();
    assert_eq!(v["date"], "2025-03-14");
    assert!(v["portfolio"]["equity"].as_f64().unwrap() > 0.0);
    let g = get(c.get(srv.url("/tearsheet")));
    assert_eq!(g.status, 200);
    assert!(g.body.contains("No backtest yet"), "{}", g.body);
    let (_, log) = srv.stop();
    assert!(
        log.contains("serve: DELETE /api/day/2025-03-14 405"),
        "{log}"
    );
    assert_eq!(
        desk.fingerprint(true),
        before,
        "a request changed the store"
    );
}

#[test]
fn while_a_job_writes_the_page_is_the_last_one_read_with_a_note_and_the_api_says_503() {
    let desk = small_desk();
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-14"]);
    let srv = Served::start(&desk, &["serve", "--addr", "127.0.0.1:0"], &[]);
    let c = client();
    let g = get(c.get(srv.url("/")));
    assert_eq!(g.status, 200);
    assert!(!g.body.contains("id=\"busy\""));
    // A job in another process holds the store for 10 s before it commits.
    let job = desk
        .cmd()
        .args(["job", "run", "fetch_chains", "--as-of", "2025-03-14"])
        .env("OPTDESK_FAILPOINT", "fetch_chains:before_commit:sleep=10")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let busy = loop {
        assert!(Instant::now() < deadline, "the job never held the store");
        let g = get(c.get(srv.url("/api/status")));
        if g.status == 503 {
            break g;
        }
        assert_eq!(g.status, 200, "{}", g.body);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(busy.header("retry-after"), Some("30"));
    assert!(
        busy.body.contains("a job is running"),
        "a readable reason: {}",
        busy.body
    );
    let g = get(c.get(srv.url("/")));
    assert_eq!(g.status, 200);
    assert!(
        g.body.contains("id=\"busy\"")
            && g.body
                .contains("Another process has the store open (a job is running)")
            && g.body.contains("this page shows the data taken at"),
        "{}",
        g.body
    );
    assert!(g.body.contains("session 2025-03-14") && g.body.contains("data taken at"));
    let o = job.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stdout(&o));
    // The job has finished: fresh data again.
    let g = get(c.get(srv.url("/")));
    assert_eq!(g.status, 200);
    assert!(!g.body.contains("id=\"busy\""), "{}", g.body);
}

#[test]
fn inside_the_daemon_a_request_never_opens_the_store_while_a_firing_runs() {
    let desk = small_desk();
    desk.run_ok(&["run", "daily", "--as-of", "2025-03-13"]);
    // Every 10 s on a pretend session; each run holds the store 8 s before it commits
    // (a request waits 3 s at most for it).
    let toml = std::fs::read_to_string(desk.jobs.join("desk.toml")).unwrap();
    let toml = toml
        .lines()
        .filter(|l| !l.trim_start().starts_with("daily"))
        .collect::<Vec<_>>()
        .join("\n");
    let toml = toml.replacen("[schedule]", "[schedule]\ndaily = \"*/10 * * * * *\"", 1);
    assert!(toml.contains("*/10"), "desk.toml has a [schedule] table");
    desk.write_config("desk.toml", &toml);
    let daemon = Served::start(
        &desk,
        &[
            "schedule",
            "--serve",
            "127.0.0.1:0",
            "--pretend-date",
            "2025-03-14",
        ],
        &[("OPTDESK_FAILPOINT", "fetch_chains:before_commit:sleep=8")],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !daemon.log().contains("firing run daily for 2025-03-14") {
        assert!(Instant::now() < deadline, "no firing: {}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let g = get(client().get(daemon.url("/api/status")));
    assert_eq!(g.status, 503, "{}", g.body);
    assert!(g.body.contains("The daemon is running a job"), "{}", g.body);
    assert_eq!(g.header("retry-after"), Some("30"));
    let (status, log) = daemon.stop();
    assert!(status.success(), "{status:?}: {log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(log.contains("serve: GET /api/status 503"), "{log}");
}

#[test]
fn the_backtests_are_listed_and_each_tearsheet_is_served() {
    let desk = small_desk();
    desk.run_ok(&[
        "backtest",
        "--from",
        "2025-03-12",
        "--to",
        "2025-03-14",
        "--name",
        "short-one",
    ]);
    let srv = Served::start(&desk, &["serve", "--addr", "127.0.0.1:0"], &[]);
    let c = client();
    let g = get(c.get(srv.url("/tearsheet")));
    assert_eq!(g.status, 200, "{}", g.body);
    assert!(
        g.body
            .contains("<a href=\"/tearsheet/short-one\">short-one</a>"),
        "{}",
        g.body
    );
    let g = get(c.get(srv.url("/tearsheet/short-one")));
    assert_eq!(g.status, 200, "{}", g.body);
    assert!(
        g.body.contains("Backtest short-one")
            && g.body.contains("id=\"nav\"")
            && g.body.contains("data taken at"),
        "{}",
        g.body
    );
    assert_security_headers(&g, "tearsheet");
    let g = get(c.get(srv.url("/tearsheet/other")));
    assert_eq!(g.status, 404);
    assert!(g.body.contains("no backtest named"));
}
