//! The daily report end to end: sent to a real SMTP server on 127.0.0.1 and parsed back;
//! SMTP failures; the .eml fallback; alerts to a local HTTP server with retries; the
//! dashboard and a backtest's tearsheet in headless Chromium.

mod common;

use common::chrome::{chromium_or_skip, console_errors, headless};
use common::servers::{HttpServer, Reply, SmtpServer, SmtpTls};
use common::{stderr, stdout, Desk};
use mail_parser::{MessageParser, MimeHeaders};
use std::time::Duration;

const USER: &str = "desk";
const PASSWORD: &str = "s3cret-pass";

fn smtp_env(cmd: &mut std::process::Command, port: u16, password: &str) {
    cmd.env("OPTDESK_SMTP_HOST", "127.0.0.1")
        .env("OPTDESK_SMTP_PORT", port.to_string())
        .env("OPTDESK_SMTP_SECURITY", "none")
        .env("OPTDESK_SMTP_USER", USER)
        .env("OPTDESK_SMTP_PASSWORD", password)
        .env("OPTDESK_SMTP_FROM", "optdesk <desk@example.com>")
        .env("OPTDESK_SMTP_TO", "trader@example.com, risk@example.com");
}

fn run_with_smtp(desk: &Desk, port: u16, password: &str, args: &[&str]) -> std::process::Output {
    let mut c = desk.cmd();
    smtp_env(&mut c, port, password);
    c.args(args).output().unwrap()
}

const DAYS: &[&str] = &["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"];

#[test]
fn the_report_is_sent_by_smtp_with_text_html_and_an_inline_chart() {
    let server = SmtpServer::start(USER, PASSWORD, None);
    let desk = Desk::new();
    for d in DAYS {
        let o = run_with_smtp(
            &desk,
            server.port,
            PASSWORD,
            &["run", "daily", "--as-of", d],
        );
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
        assert!(
            stdout(&o).contains("sent to trader@example.com, risk@example.com"),
            "{}",
            stdout(&o)
        );
    }
    let msgs = server.messages();
    assert_eq!(msgs.len(), DAYS.len(), "one email per session");
    let last = msgs.last().unwrap();
    assert_eq!(
        last.auth_user.as_deref(),
        Some(USER),
        "logged in before sending"
    );
    assert_eq!(last.from, "desk@example.com");
    assert_eq!(last.to, vec!["trader@example.com", "risk@example.com"]);

    let m = MessageParser::default()
        .parse(&last.data)
        .expect("a parseable message");
    let subject = m.subject().unwrap();
    assert!(
        subject.starts_with("optdesk 2024-01-05: equity $"),
        "{subject}"
    );
    let to: Vec<String> = m
        .to()
        .unwrap()
        .iter()
        .filter_map(|a| a.address().map(String::from))
        .collect();
    assert_eq!(to, vec!["trader@example.com", "risk@example.com"]);
    let text = m.body_text(0).unwrap();
    for s in [
        "Portfolio value $",
        "Benchmarks",
        "SPY",
        "Performance",
        "Open positions",
        "Signals today",
        "Trades today",
        "Risk refusals today",
        "Jobs today",
        "fetch_chains",
    ] {
        assert!(text.contains(s), "text part lacks {s:?}:\n{text}");
    }
    assert!(!text.contains("NaN"), "{text}");
    let html = m.body_html(0).unwrap();
    assert!(
        html.contains("src=\"cid:equity-chart\""),
        "the HTML shows the inline chart"
    );
    assert!(html.contains("Sharpe") && html.contains("Max DD") && html.contains("Profit factor"));
    assert!(
        !html.contains("NaN") && !html.contains("<svg"),
        "PNG, not SVG, in the email"
    );
    // The chart: an inline PNG part with the content id the HTML points at.
    let png = m
        .parts
        .iter()
        .find(|p| p.content_id() == Some("equity-chart"))
        .expect("a part with Content-ID <equity-chart>");
    let ct = png.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("image", Some("png")));
    assert!(
        png.contents().starts_with(b"\x89PNG\r\n\x1a\n"),
        "PNG bytes"
    );
    assert!(
        png.contents().len() > 5_000,
        "a real chart, not a placeholder"
    );
    // multipart/alternative at the top, text first.
    let top = m.content_type().unwrap();
    assert_eq!(top.subtype(), Some("alternative"));

    // Recorded: one 'sent' row per day, with the message id that went out.
    let (n, id): (i64, String) = desk
        .open()
        .query_row(
            "SELECT count(*), arg_max(message_id, created_at) FROM reports WHERE status = 'sent'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(n, DAYS.len() as i64);
    assert_eq!(Some(id.as_str()), m.message_id());
    let positions = desk.run_ok(&["positions"]);
    assert!(
        positions.contains("unrealized_pnl") && positions.contains("marked_on"),
        "{positions}"
    );
    assert!(desk
        .dir
        .path()
        .join("logs/reports/2024-01-05-daily.eml")
        .exists());
    assert!(desk.dir.path().join("data/dashboard.html").exists());

    // Running it again does not send again; --resend does.
    let o = run_with_smtp(
        &desk,
        server.port,
        PASSWORD,
        &["job", "run", "email_report", "--as-of", "2024-01-05"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("already sent"), "{}", stdout(&o));
    assert_eq!(server.messages().len(), DAYS.len());
    let o = run_with_smtp(
        &desk,
        server.port,
        PASSWORD,
        &[
            "job",
            "run",
            "email_report",
            "--as-of",
            "2024-01-05",
            "--resend",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(server.messages().len(), DAYS.len() + 1);

    // The password is nowhere in the store or the written report.
    let leaks = desk.count(&format!(
        "SELECT (SELECT count(*) FROM reports WHERE concat_ws('|', subject, recipients, error, eml_path) LIKE '%{PASSWORD}%')
              + (SELECT count(*) FROM job_runs WHERE message LIKE '%{PASSWORD}%')"
    ));
    assert_eq!(leaks, 0);
    let eml = std::fs::read(desk.dir.path().join("logs/reports/2024-01-05-daily.eml")).unwrap();
    assert!(!String::from_utf8_lossy(&eml).contains(PASSWORD));
}

fn tables_but_reports(desk: &Desk) -> Vec<(String, i64, String)> {
    desk.fingerprint(false)
        .into_iter()
        .filter(|(t, _, _)| t != "reports" && t != "alerts")
        .collect()
}

#[test]
fn smtp_failures_name_the_server_reply_keep_the_report_and_change_nothing_else() {
    let desk = Desk::new();
    desk.run_ok(&["run", "daily", "--as-of", "2024-01-02"]);
    let eml = desk.dir.path().join("logs/reports/2024-01-02-daily.eml");
    std::fs::remove_file(&eml).unwrap();
    let before = tables_but_reports(&desk);

    // A refused login.
    let server = SmtpServer::start(USER, PASSWORD, None);
    let o = run_with_smtp(
        &desk,
        server.port,
        "wrong",
        &["job", "run", "email_report", "--as-of", "2024-01-02"],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("535") && err.contains("Invalid credentials"),
        "{err}"
    );
    assert!(err.contains("the report is at"), "{err}");
    assert!(eml.exists(), "the report is still written");
    assert!(server.messages().is_empty());
    assert!(!err.contains("wrong"), "the password is not echoed: {err}");

    // A rejected recipient.
    let server = SmtpServer::start(USER, PASSWORD, Some("risk@example.com"));
    let o = run_with_smtp(
        &desk,
        server.port,
        PASSWORD,
        &["job", "run", "email_report", "--as-of", "2024-01-02"],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("550") && err.contains("Recipient address rejected"),
        "{err}"
    );

    // STARTTLS is required, not opportunistic: a server without it gets no password.
    let server = SmtpServer::start(USER, PASSWORD, None);
    let mut c = desk.cmd();
    smtp_env(&mut c, server.port, PASSWORD);
    let o = c
        .env("OPTDESK_SMTP_SECURITY", "starttls")
        .args(["job", "run", "email_report", "--as-of", "2024-01-02"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("STARTTLS") && err.contains("(starttls)"),
        "{err}"
    );
    assert!(
        server.log.lock().unwrap().auth_attempts.is_empty(),
        "no login in the clear"
    );
    assert!(server.messages().is_empty());

    // An unreachable host: a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = run_with_smtp(
        &desk,
        port,
        PASSWORD,
        &["job", "run", "email_report", "--as-of", "2024-01-02"],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.to_lowercase().contains("connection refused"), "{err}");

    // Each failure is recorded with the reply; nothing else in the store changed.
    let c = desk.open();
    let mut s = c
        .prepare("SELECT status, error FROM reports WHERE as_of = DATE '2024-01-02' AND status = 'failed' ORDER BY created_at")
        .unwrap();
    let rows: Vec<(String, String)> = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows[0].1.contains("535"), "{rows:?}");
    assert!(rows[1].1.contains("550"), "{rows:?}");
    let failed_runs = desk
        .count("SELECT count(*) FROM job_runs WHERE job = 'email_report' AND status = 'failed'");
    assert_eq!(failed_runs, 4);
    assert_eq!(tables_but_reports(&desk), before);
}

#[test]
fn without_smtp_the_report_is_an_eml_file_and_missing_data_reads_as_sentences() {
    let desk = Desk::new();
    // A day with nothing in the store but this job: every section is empty.
    let o = desk.run(&["job", "run", "email_report", "--as-of", "2024-01-02"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("no SMTP host") && out.contains("2024-01-02-daily.eml"),
        "{out}"
    );
    let eml = std::fs::read(desk.dir.path().join("logs/reports/2024-01-02-daily.eml")).unwrap();
    let m = MessageParser::default().parse(&eml).unwrap();
    let text = m.body_text(0).unwrap();
    for s in [
        "No portfolio snapshot for this day yet",
        "No benchmark history yet",
        "Not enough history yet",
        "No positions are open.",
        "No strategy produced a signal today.",
        "No trades today.",
        "No order was refused today.",
    ] {
        assert!(text.contains(s), "missing {s:?}:\n{text}");
    }
    let html = m.body_html(0).unwrap();
    assert!(!text.contains("NaN") && !html.contains("NaN"));
    assert!(!html.contains("<table cellspacing=\"0\" cellpadding=\"0\" style=\"border-collapse:collapse;width:100%;\"><tr><th style=\"padding:4px 8px;border-bottom:2px solid #d0d7de;font-size:12px;text-align:left;color:#57606a;\">Strategy</th>"),
        "no empty positions table");
    let (status, recipients): (String, Option<String>) = desk
        .open()
        .query_row("SELECT status, recipients FROM reports", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((status.as_str(), recipients), ("written", None));
    let dash = std::fs::read_to_string(desk.dir.path().join("data/dashboard.html")).unwrap();
    assert!(dash.contains("No positions are open.") && !dash.contains("NaN"));
    // Self-contained: nothing the page would fetch; the charts' font is inlined.
    assert!(
        dash.contains("@font-face{font-family:'DejaVu Sans'")
            && dash.contains("src:url(data:font/woff2;base64,"),
        "the embedded chart font"
    );
    assert_eq!(
        dash.matches("url(").count(),
        dash.matches("url(data:").count(),
        "a url() that is not a data URI"
    );
    for external in [
        "src=\"http",
        "href=\"http",
        "@import",
        "<script src",
        "<link ",
    ] {
        assert!(
            !dash.contains(external),
            "the dashboard fetches something: {external}"
        );
    }

    // A dry run writes the file and records nothing.
    let server = SmtpServer::start(USER, PASSWORD, None);
    let o = run_with_smtp(
        &desk,
        server.port,
        PASSWORD,
        &[
            "job",
            "run",
            "email_report",
            "--as-of",
            "2024-01-03",
            "--dry-run",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("dry run: not sent"), "{}", stdout(&o));
    assert!(server.messages().is_empty());
    assert!(desk
        .dir
        .path()
        .join("logs/reports/2024-01-03-daily.eml")
        .exists());
    assert_eq!(
        desk.count("SELECT count(*) FROM reports WHERE as_of = DATE '2024-01-03'"),
        0
    );

    // `optdesk report` regenerates the dashboard for a stored day.
    let out = desk.run_ok(&["report", "--as-of", "2024-01-02", "--out", "other.html"]);
    assert!(out.contains("other.html"), "{out}");
    assert!(desk.dir.path().join("other.html").exists());
}

fn alert_env(c: &mut std::process::Command, port: u16) {
    c.env("OPTDESK_TELEGRAM_TOKEN", "123:SECRET-TOKEN")
        .env("OPTDESK_TELEGRAM_CHAT_ID", "42")
        .env("OPTDESK_TELEGRAM_API", format!("http://127.0.0.1:{port}"))
        .env(
            "OPTDESK_WEBHOOK_URL",
            format!("http://127.0.0.1:{port}/hook"),
        );
}

#[test]
fn alerts_reach_telegram_and_the_webhook_and_failures_are_retried_then_recorded() {
    // Delivered: fills and the daily summary, on both channels.
    let http = HttpServer::start(vec![Reply::Status(200)]);
    let desk = Desk::new();
    let mut c = desk.cmd();
    alert_env(&mut c, http.port);
    let o = c
        .args(["run", "daily", "--as-of", "2024-01-02"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let hits = http.hits();
    let tg: Vec<_> = hits
        .iter()
        .filter(|h| h.url == "/bot123:SECRET-TOKEN/sendMessage")
        .collect();
    let hook: Vec<_> = hits.iter().filter(|h| h.url == "/hook").collect();
    assert!(!tg.is_empty() && tg.len() == hook.len(), "{hits:?}");
    let events: Vec<String> = hook
        .iter()
        .map(|h| {
            serde_json::from_str::<serde_json::Value>(&h.body).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(events.contains(&"fills".to_string()), "{events:?}");
    assert!(events.contains(&"daily_summary".to_string()), "{events:?}");
    let first: serde_json::Value = serde_json::from_str(&tg[0].body).unwrap();
    assert_eq!(first["chat_id"], "42");
    assert!(first["text"]
        .as_str()
        .unwrap()
        .starts_with("optdesk 2024-01-02"));
    assert_eq!(
        desk.count("SELECT count(*) FROM alerts WHERE status = 'sent' AND attempts = 1"),
        hits.len() as i64
    );

    // Re-running the day does not repeat what was delivered.
    let http2 = HttpServer::start(vec![Reply::Status(200)]);
    let mut c = desk.cmd();
    alert_env(&mut c, http2.port);
    let o = c
        .args(["job", "run", "snapshot_benchmarks", "--as-of", "2024-01-02"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(http2.hits().is_empty(), "{:?}", http2.hits());

    // A 500 twice, then OK: retried, and recorded as sent on the third attempt.
    desk.run_ok(&["run", "daily", "--as-of", "2024-01-03"]);
    let http = HttpServer::start(vec![
        Reply::Status(500),
        Reply::Status(500),
        Reply::Status(200),
    ]);
    let o = desk.run_with_webhook(
        http.port,
        &["job", "run", "snapshot_benchmarks", "--as-of", "2024-01-03"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(http.hits().len(), 3);
    let (status, attempts): (String, i32) = desk
        .open()
        .query_row(
            "SELECT status, attempts FROM alerts WHERE channel = 'webhook' ORDER BY created_at DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("sent", 3));

    // Always 500: three attempts, then recorded as failed; the job itself is fine.
    desk.run_ok(&["run", "daily", "--as-of", "2024-01-04"]);
    let http = HttpServer::start(vec![Reply::Status(500)]);
    let mut c = desk.cmd();
    alert_env(&mut c, http.port);
    let o = c
        .args(["job", "run", "snapshot_benchmarks", "--as-of", "2024-01-04"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "an alert failure never fails the job: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("not delivered after 3 attempt(s): HTTP 500"),
        "{}",
        stderr(&o)
    );
    assert_eq!(http.hits().len(), 6, "3 attempts on each of 2 channels");
    let failed: Vec<(String, i32, String)> = {
        let c = desk.open();
        let mut s = c
            .prepare("SELECT channel, attempts, error FROM alerts WHERE status = 'failed' ORDER BY channel")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert_eq!(failed.len(), 2, "{failed:?}");
    let status = desk.run_ok(&["status"]);
    assert!(status.contains("2 alert(s) not delivered"), "{status}");
    assert!(
        failed
            .iter()
            .all(|(_, a, e)| *a == 3 && e.contains("HTTP 500")),
        "{failed:?}"
    );

    // A timeout: bounded too.
    let http = HttpServer::start(vec![Reply::Sleep(Duration::from_secs(4))]);
    desk.write_config(
        "desk.toml",
        "[alerts]\nattempts = 2\ntimeout_secs = 1\nevents = [\"daily_summary\"]\n",
    );
    let o = desk.run_with_webhook(
        http.port,
        &["job", "run", "snapshot_benchmarks", "--as-of", "2024-01-04"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("timed out after 1 s"), "{}", stderr(&o));
    assert_eq!(http.hits().len(), 2);

    // A job failure is an alert too.
    let http = HttpServer::start(vec![Reply::Status(200)]);
    let mut c = desk.cmd();
    c.env(
        "OPTDESK_WEBHOOK_URL",
        format!("http://127.0.0.1:{}/hook", http.port),
    )
    .env("OPTDESK_FAILPOINT", "fetch_chains:mid:error");
    desk.write_config("desk.toml", "[alerts]\nevents = [\"job_failure\"]\n");
    let o = c
        .args(["job", "run", "fetch_chains", "--as-of", "2024-01-02"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let hits = http.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let v: serde_json::Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(v["event"], "job_failure");
    assert!(
        v["text"].as_str().unwrap().contains("fetch_chains FAILED"),
        "{v}"
    );

    // The bot token is never stored.
    assert_eq!(
        desk.count(
            "SELECT count(*) FROM alerts WHERE concat_ws('|', error, text) LIKE '%SECRET-TOKEN%'"
        ),
        0
    );
}

#[test]
fn the_dashboard_renders_in_headless_chromium_without_errors() {
    let Some(chrome) = chromium_or_skip() else {
        return;
    };
    let desk = Desk::new();
    for d in DAYS {
        desk.run_ok(&["run", "daily", "--as-of", d]);
    }
    let page = desk.dir.path().join("data/dashboard.html");
    let url = format!("file://{}", page.display());
    let profile = desk.dir.path().join("chrome-profile");

    // The DOM after load: the charts are there.
    let o = headless(&chrome, &profile, &["--dump-dom", &url]);
    let dom = stdout(&o);
    for needle in [
        "id=\"equity-chart\"",
        "id=\"drawdown-chart\"",
        "id=\"strategy-pnl-chart\"",
        "id=\"correlation-chart\"",
        "id=\"zscore-chart\"",
        "data-series=\"Portfolio\"",
        "data-series=\"SPY\"",
        "class=\"bar\"",
        "id=\"positions\"",
        "id=\"universe\"",
    ] {
        assert!(dom.contains(needle), "the rendered page lacks {needle}");
    }
    let log = stderr(&o);
    let errors = console_errors(&log);
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // A screenshot that is not blank.
    let shot = desk.dir.path().join("shot.png");
    let o = headless(
        &chrome,
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
            &url,
        ],
    );
    assert!(shot.exists(), "no screenshot: {}", stderr(&o));
    let img = tiny_skia::Pixmap::load_png(&shot).unwrap();
    let px = img.pixels();
    let non_bg = px
        .iter()
        .filter(|p| {
            let c = p.demultiply();
            !(c.red() > 240 && c.green() > 240 && c.blue() > 240)
        })
        .count();
    let colors: std::collections::HashSet<(u8, u8, u8)> = px
        .iter()
        .map(|p| {
            let c = p.demultiply();
            (c.red(), c.green(), c.blue())
        })
        .collect();
    assert!(
        non_bg * 20 > px.len(),
        "mostly blank: {non_bg} of {} pixels",
        px.len()
    );
    assert!(colors.len() > 50, "only {} colors", colors.len());
}

/// A short backtest on a reduced universe (three underlyings, expiries to 60 days, 10
/// sessions), with one risk limit tightened so the gate refuses entries under two rules.
fn small_backtest(desk: &Desk, name: &str) -> String {
    desk.write_config(
        "fetch_chains.toml",
        "[params]\nsymbols = [\"SPY\", \"QQQ\", \"IWM\"]\nmax_expiry_days = 60\nhistory_sessions = 30\n",
    );
    desk.run_ok(&[
        "backtest",
        "--from",
        "2024-06-03",
        "--to",
        "2024-06-14",
        "--name",
        name,
        "--set",
        "select_trades.risk.max_open_per_underlying=1",
    ])
}

#[test]
fn the_backtest_tearsheet_renders_in_headless_chromium_with_every_panel() {
    let Some(chrome) = chromium_or_skip() else {
        return;
    };
    let desk = Desk::new();
    let out = small_backtest(&desk, "sheet");
    // The backtest writes its tearsheet at the end, beside its store.
    let at_end = desk.dir.path().join("backtests/sheet.html");
    assert!(
        out.contains(&format!("tearsheet {}", at_end.display())),
        "{out}"
    );
    let written = std::fs::read_to_string(&at_end).unwrap();
    // `backtest report` writes the same page again.
    let page = desk.dir.path().join("tearsheet.html");
    let out = desk.run_ok(&[
        "backtest",
        "report",
        "sheet",
        "--out",
        page.to_str().unwrap(),
    ]);
    assert!(
        out.contains(&format!("written to {}", page.display())),
        "{out}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(
        html, written,
        "the tearsheet at the end and `backtest report` differ"
    );

    // Self-contained: nothing fetched, no script.
    for bad in [
        "<script",
        "<link",
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
    ] {
        assert!(!html.contains(bad), "the tearsheet contains {bad}");
    }
    // The header: what the backtest was made with, from its own catalogue row.
    let hash: String = {
        let cfg = duckdb::Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .unwrap();
        let c = duckdb::Connection::open_with_flags(
            desk.dir.path().join("backtests/sheet.duckdb"),
            cfg,
        )
        .unwrap();
        c.query_row("SELECT config_hash FROM backtests", [], |r| r.get(0))
            .unwrap()
    };
    for needle in [
        "2024-06-03 to 2024-06-14",
        "10 of 10 sessions",
        "select_trades.risk.max_open_per_underlying=1",
        &hash,
        "the simulated market&#39;s price paths (seed",
    ] {
        assert!(html.contains(needle), "the tearsheet lacks {needle}");
    }

    let url = format!("file://{}", page.display());
    let profile = desk.dir.path().join("chrome-profile");
    let o = headless(&chrome, &profile, &["--dump-dom", &url]);
    let dom = stdout(&o);
    for needle in [
        "id=\"summary\"",
        "id=\"configuration\"",
        "id=\"provenance-table\"",
        "id=\"equity-chart\"",
        "id=\"drawdown-chart\"",
        "id=\"monthly-returns-table\"",
        "data-month=\"2024-06\"",
        "id=\"metrics-table\"",
        "id=\"strategy-pnl-chart\"",
        "id=\"exposure-chart\"",
        "id=\"open-positions-chart\"",
        "id=\"delta-chart\"",
        "id=\"theta-chart\"",
        "id=\"vega-chart\"",
        "id=\"refusals-chart\"",
        "id=\"refusals-table\"",
        "id=\"trade-list\"",
        "data-series=\"Portfolio\"",
        "data-series=\"SPY\"",
        "data-series=\"cash_secured_put\"",
        "data-label=\"max_open_per_underlying\"",
        "class=\"bar\"",
    ] {
        assert!(
            dom.contains(needle),
            "the rendered tearsheet lacks {needle}"
        );
    }
    // Every chart has something to draw.
    assert!(
        !dom.contains("No data yet"),
        "a chart of the tearsheet is empty"
    );
    let log = stderr(&o);
    let errors = console_errors(&log);
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

#[test]
fn the_tearsheet_of_an_unknown_backtest_is_refused_naming_it() {
    let desk = Desk::new();
    for name in ["nope", "../escape"] {
        let o = desk.run(&["backtest", "report", name]);
        assert!(!o.status.success(), "backtest report {name} succeeded");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("no backtest named '{name}'")) && err.contains("backtest list"),
            "{err}"
        );
    }
    assert!(!desk.dir.path().join("backtests").exists());
}

#[test]
fn a_risk_halt_is_an_alert_with_the_rule_and_reason() {
    let http = HttpServer::start(vec![Reply::Status(200)]);
    let desk = Desk::new();
    desk.write_config("desk.toml", "[alerts]\nevents = [\"risk_halt\"]\n");
    desk.run_ok(&["kill", "on"]);
    let o = desk.run_with_webhook(http.port, &["run", "daily", "--as-of", "2024-06-04"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let hits = http.hits();
    assert_eq!(hits.len(), 1, "one halt alert for the run: {hits:?}");
    let v: serde_json::Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(v["event"], "risk_halt");
    assert_eq!(v["job"], "select_trades");
    let text = v["text"].as_str().unwrap();
    assert!(
        text.contains("kill_switch") && text.contains("new entries halted"),
        "{text}"
    );
    // When, and whose entries: the snapshot's time and the strategies refused.
    assert!(
        text.contains("2024-06-04 09:35: risk halt (kill_switch) for "),
        "{text}"
    );
    assert_eq!(
        desk.count("SELECT count(*) FROM alerts WHERE event = 'risk_halt' AND status = 'sent'"),
        1
    );
}

#[test]
fn the_report_goes_out_over_starttls_and_implicit_tls_and_certificates_are_verified() {
    let desk = Desk::new();
    desk.run_ok(&["run", "daily", "--as-of", "2024-01-02"]);
    for (tls, security, day) in [
        (SmtpTls::StartTls, "starttls", "2024-01-02"),
        (SmtpTls::Implicit, "tls", "2024-01-03"),
    ] {
        let server = SmtpServer::start_with(USER, PASSWORD, None, tls);
        let ca = desk.dir.path().join(format!("relay-{security}.pem"));
        std::fs::write(&ca, &server.cert_pem).unwrap();

        // Without trusting the relay's certificate: refused, nothing sent, no login.
        let mut c = desk.cmd();
        smtp_env(&mut c, server.port, PASSWORD);
        let o = c
            .env("OPTDESK_SMTP_SECURITY", security)
            .args(["job", "run", "email_report", "--as-of", day])
            .output()
            .unwrap();
        assert!(
            !o.status.success(),
            "an unknown certificate must be refused"
        );
        let err = stderr(&o);
        assert!(err.to_lowercase().contains("certificate"), "{err}");
        assert!(server.messages().is_empty());
        assert!(server.log.lock().unwrap().auth_attempts.is_empty());

        // Trusting it (a private CA): logged in over TLS and sent.
        let mut c = desk.cmd();
        smtp_env(&mut c, server.port, PASSWORD);
        let o = c
            .env("OPTDESK_SMTP_SECURITY", security)
            .env("OPTDESK_SMTP_CA_FILE", &ca)
            .args(["job", "run", "email_report", "--as-of", day])
            .output()
            .unwrap();
        assert!(o.status.success(), "{security}: {}", stderr(&o));
        assert!(
            stdout(&o).contains(&format!("({security})")),
            "{}",
            stdout(&o)
        );
        let msgs = server.messages();
        assert_eq!(msgs.len(), 1, "{security}");
        assert_eq!(msgs[0].auth_user.as_deref(), Some(USER));
        let m = MessageParser::default().parse(&msgs[0].data).unwrap();
        assert!(m.subject().unwrap().starts_with(&format!("optdesk {day}")));
    }
}

#[test]
fn bad_report_and_alert_settings_are_refused_with_the_file_and_key() {
    let desk = Desk::new();
    desk.write_config("desk.toml", "[alerts]\nevents = [\"fils\"]\n");
    let o = desk.run(&["run", "daily", "--as-of", "2024-01-02"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("desk.toml") && err.contains("alerts.events[0]") && err.contains("'fils'"),
        "{err}"
    );
    desk.write_config("desk.toml", "");
    desk.write_config("email_report.toml", "[params.smtp]\nsecurity = \"ssl3\"\n");
    let o = desk.run(&["job", "run", "email_report", "--as-of", "2024-01-02"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("email_report.toml") && err.contains("params.smtp.security 'ssl3'"),
        "{err}"
    );
    desk.write_config("email_report.toml", "[params.smtp]\nhots = \"x\"\n");
    let err = stderr(&desk.run(&["job", "run", "email_report", "--as-of", "2024-01-02"]));
    assert!(
        err.contains("email_report.toml") && err.contains("hots"),
        "{err}"
    );
    // Nothing ran.
    assert!(!desk.db().exists() || desk.count("SELECT count(*) FROM job_runs") == 0);

    // A user without a password in the environment: the report is still written.
    desk.write_config(
        "email_report.toml",
        "[params.smtp]\nhost = \"smtp.example.com\"\nuser = \"desk\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n",
    );
    let o = desk.run(&["job", "run", "email_report", "--as-of", "2024-01-02"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("OPTDESK_SMTP_PASSWORD") && err.contains("the report is at"),
        "{err}"
    );
    assert!(desk
        .dir
        .path()
        .join("logs/reports/2024-01-02-daily.eml")
        .exists());
}

#[test]
fn secrets_echoed_by_an_error_page_are_never_stored_printed_or_logged() {
    // Express's 404 page repeats the request path: the bot token, the webhook's secret
    // path and query, raw and percent-encoded.
    let http = HttpServer::start(vec![Reply::EchoPath(404)]);
    let desk = Desk::new();
    let env = |c: &mut std::process::Command| {
        c.env("OPTDESK_TELEGRAM_TOKEN", "123:SECRET-TOKEN")
            .env("OPTDESK_TELEGRAM_CHAT_ID", "42")
            .env(
                "OPTDESK_TELEGRAM_API",
                format!("http://127.0.0.1:{}", http.port),
            )
            .env(
                "OPTDESK_WEBHOOK_URL",
                format!(
                    "http://127.0.0.1:{}/hooks/HOOKPATH-SECRET?key=HOOKKEY-SECRET",
                    http.port
                ),
            )
            .env("OPTDESK_LOG", "info");
    };
    let mut c = desk.cmd();
    env(&mut c);
    let run = c
        .args(["run", "daily", "--as-of", "2024-01-02"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        http.hits()
            .iter()
            .any(|h| h.url == "/bot123:SECRET-TOKEN/sendMessage"),
        "{:?}",
        http.hits()
    );
    let mut c = desk.cmd();
    env(&mut c);
    let status = c.arg("status").output().unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(
        stdout(&status).contains("not delivered"),
        "{}",
        stdout(&status)
    );

    let rows: Vec<String> = {
        let c = desk.open();
        let mut s = c
            .prepare("SELECT concat_ws('|', channel, status, error, text) FROM alerts")
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r.contains("Cannot POST") && r.contains("[redacted]")),
        "{rows:?}"
    );
    let outputs = [
        ("alerts rows", rows.join("\n")),
        ("run stdout", stdout(&run)),
        ("run stderr", stderr(&run)),
        ("status stdout", stdout(&status)),
        ("status stderr", stderr(&status)),
    ];
    for (what, text) in &outputs {
        for secret in [
            "SECRET-TOKEN",
            "123%3ASECRET",
            "HOOKPATH-SECRET",
            "HOOKKEY-SECRET",
        ] {
            assert!(!text.contains(secret), "{what} shows {secret}: {text}");
        }
    }
    assert!(
        stderr(&run).contains("not delivered after 1 attempt(s): HTTP 404"),
        "{}",
        stderr(&run)
    );
}
