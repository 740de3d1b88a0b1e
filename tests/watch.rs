//! What a watcher of the desk gets: the `signal` alert (each proposal with the risk
//! gate's decision), `optdesk status --check` for outside monitors (exit 1 when the last
//! session's daily run is missing or failed) and the daemon's missed-run alert.

mod common;

use common::servers::{HttpServer, Reply};
use common::{stderr, stdout, Desk};
use optdesk::calendar;
use optdesk::config::Config;

fn with_webhook(desk: &Desk, port: u16, args: &[&str]) -> std::process::Output {
    desk.cmd()
        .env(
            "OPTDESK_WEBHOOK_URL",
            format!("http://127.0.0.1:{port}/hook"),
        )
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_signal_alert_lists_each_proposal_with_the_gates_decision() {
    let http = HttpServer::start(vec![Reply::Status(200)]);
    let desk = Desk::new();
    desk.write_config("desk.toml", "[alerts]\nevents = [\"signal\"]\n");
    let o = with_webhook(&desk, http.port, &["run", "daily", "--as-of", "2024-06-04"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let hits = http.hits();
    assert_eq!(hits.len(), 1, "one signal alert for the run: {hits:?}");
    let v: serde_json::Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(v["event"], "signal");
    assert_eq!(v["job"], "select_trades");
    let text = v["text"].as_str().unwrap();
    let proposals = desk.count(
        "SELECT count(*) FROM signals WHERE as_of = DATE '2024-06-04' AND action = 'propose'",
    );
    let approved = desk.count(
        "SELECT count(DISTINCT order_ref) FROM risk_decisions WHERE as_of = DATE '2024-06-04'
         AND order_ref NOT IN (SELECT order_ref FROM risk_decisions WHERE decision = 'refused')",
    );
    assert!(proposals > 0, "the day proposes something");
    assert!(
        text.starts_with(&format!(
            "optdesk 2024-06-04 09:35: {proposals} signal(s), {approved} approved"
        )),
        "{text}"
    );
    assert_eq!(
        text.lines().count() as i64,
        1 + proposals.min(20) + i64::from(proposals > 20),
        "{text}"
    );

    assert_eq!(
        desk.count("SELECT count(*) FROM alerts WHERE event = 'signal' AND status = 'sent'"),
        1
    );

    // With the kill switch on, the same proposals arrive, each refused with the rule.
    let http = HttpServer::start(vec![Reply::Status(200)]);
    let desk = Desk::new();
    desk.write_config("desk.toml", "[alerts]\nevents = [\"signal\"]\n");
    desk.run_ok(&["kill", "on"]);
    let o = with_webhook(&desk, http.port, &["run", "daily", "--as-of", "2024-06-04"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let hits = http.hits();
    let v: serde_json::Value = serde_json::from_str(&hits[0].body).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "optdesk 2024-06-04 09:35: {proposals} signal(s), 0 approved"
        )),
        "{text}"
    );
    assert!(
        text.lines()
            .skip(1)
            .all(|l| l.contains(": refused (kill_switch: ")),
        "{text}"
    );
}

#[test]
fn status_check_fails_when_the_daily_run_is_missing_or_failed() {
    let desk = Desk::new();
    // No store yet: missing.
    let o = desk.run(&["status", "--check", "--as-of", "2024-06-04"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("CHECK FAILED: the 2024-06-04 daily run is missing: store "),
        "{}",
        stdout(&o)
    );

    desk.run_ok(&["run", "daily", "--as-of", "2024-06-04"]);
    let out = desk.run_ok(&["status", "--check", "--as-of", "2024-06-04"]);
    assert!(
        out.starts_with("CHECK OK: the 2024-06-04 daily run finished at "),
        "{out}"
    );

    // The next session has no run.
    let o = desk.run(&["status", "--check", "--as-of", "2024-06-05"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with(
            "CHECK FAILED: the 2024-06-05 daily run is missing: no run of fetch_chains, "
        ),
        "{}",
        stdout(&o)
    );

    // A failed job fails the check, naming the job and its reason.
    let o = desk
        .cmd()
        .env("OPTDESK_FAILPOINT", "compute_vol:before_commit:error")
        .args(["run", "daily", "--as-of", "2024-06-05"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let o = desk.run(&["status", "--check", "--as-of", "2024-06-05"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with("CHECK FAILED: the 2024-06-05 daily run failed: compute_vol: "),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("failpoint compute_vol:before_commit triggered"));

    // Re-run: it passes.
    desk.run_ok(&["run", "daily", "--as-of", "2024-06-05"]);
    desk.run_ok(&["status", "--check", "--as-of", "2024-06-05"]);

    // A closed day has no daily run to check.
    let o = desk.run(&["status", "--check", "--as-of", "2024-06-08"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--as-of 2024-06-08") && stderr(&o).contains("not an NYSE session"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_missed_run_alert_fires_only_when_todays_run_is_overdue_and_unfinished() {
    let desk = Desk::new();
    desk.run_ok(&["run", "daily", "--as-of", "2024-06-04"]);
    let config = Config::load(&desk.jobs, true).unwrap();
    let prepared = optdesk::jobs::prepare_all(&config).unwrap();
    let conn = desk.open();
    let at =
        |s: &str| calendar::ny(chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap());
    let check = |now: &str| {
        optdesk::schedule::missed_run_alert(Some(&conn), &config, &prepared, at(now)).unwrap()
    };
    // Finished: nothing to say.
    assert_eq!(check("2024-06-04 10:30"), None);
    // The next session before its time plus 15 minutes: not yet due.
    assert_eq!(check("2024-06-05 09:49"), None);
    // After it, with no run: the alert, naming the session, the jobs and the time.
    let a = check("2024-06-05 09:51").expect("an alert");
    assert_eq!(a.event, "missed_run");
    assert_eq!(a.as_of.to_string(), "2024-06-05");
    assert!(
        a.text.starts_with(
            "optdesk: missed run: the 2024-06-05 daily run is missing: no run of fetch_chains, "
        ) && a
            .text
            .ends_with("(15 minutes after its time, 09:35 New York)"),
        "{}",
        a.text
    );
    // A weekend has nothing due today.
    assert_eq!(check("2024-06-08 12:00"), None);
    // A job of the daemon still holding the store: still running.
    let busy =
        optdesk::schedule::missed_run_alert(None, &config, &prepared, at("2024-06-05 10:00"))
            .unwrap()
            .unwrap();
    assert!(
        busy.text
            .contains("has not finished: a job is still running"),
        "{}",
        busy.text
    );
}
