//! Alerts: a Telegram bot message and a generic JSON webhook after job runs — fills,
//! risk halts, job failures and the daily summary.
//!
//! A channel is on when its secrets are in the environment (`OPTDESK_TELEGRAM_TOKEN` and
//! `OPTDESK_TELEGRAM_CHAT_ID`; `OPTDESK_WEBHOOK_URL`); they never reach the store, the
//! logs or the terminal. Each alert is tried up to `alerts.attempts` times through
//! [`crate::net::HttpClient`] (a 5xx, a 429, a timeout or a refused connection is tried
//! again, with a short back-off; any other 4xx is not) and every outcome is recorded in
//! the `alerts` table. An alert runs after its job has committed, in a transaction of
//! its own: it can never fail or undo a trading job.

use crate::config::Config;
use crate::net::{HttpClient, RetryPolicy};
use crate::store::runs::{RunRecord, Status};
use crate::store::Store;
use chrono::{NaiveDate, Utc};
use duckdb::params;
use std::time::Duration;

/// Where alerts go.
#[derive(Clone, PartialEq, Eq)]
pub enum Channel {
    Telegram {
        api: String,
        token: String,
        chat_id: String,
    },
    Webhook {
        url: String,
    },
}

impl std::fmt::Debug for Channel {
    // Never print the token or the webhook URL (it often carries a secret).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Channel({})", self.name())
    }
}

impl Channel {
    pub fn name(&self) -> &'static str {
        match self {
            Channel::Telegram { .. } => "telegram",
            Channel::Webhook { .. } => "webhook",
        }
    }
}

/// The channels the environment turns on.
pub fn channels(config: &Config) -> Vec<Channel> {
    let env = crate::config::env_var;
    let mut out = Vec::new();
    if let (Some(token), Some(chat_id)) = (
        env("OPTDESK_TELEGRAM_TOKEN"),
        env("OPTDESK_TELEGRAM_CHAT_ID"),
    ) {
        let api =
            env("OPTDESK_TELEGRAM_API").unwrap_or_else(|| config.desk.alerts.telegram_api.clone());
        out.push(Channel::Telegram {
            api: api.trim_end_matches('/').to_string(),
            token,
            chat_id,
        });
    }
    if let Some(url) = env("OPTDESK_WEBHOOK_URL") {
        out.push(Channel::Webhook { url });
    }
    out
}

/// One alert to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub event: &'static str,
    pub as_of: NaiveDate,
    pub job: String,
    pub run_id: i64,
    pub text: String,
}

/// What happened to one alert on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub channel: &'static str,
    pub ok: bool,
    pub attempts: u32,
    pub error: Option<String>,
}

/// After a job run: work out its alerts, send them and record the outcomes. Never
/// fails: a problem is logged, and recorded when the store allows.
pub fn after_run(store: &Store, config: &Config, rec: &RunRecord) -> Vec<Delivery> {
    if rec.dry_run || rec.status == Status::Skipped {
        return Vec::new();
    }
    let channels = channels(config);
    if channels.is_empty() {
        return Vec::new();
    }
    let alerts = match alerts_for(store, config, rec) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("alerts: could not read what run {} did: {e}", rec.run_id);
            return Vec::new();
        }
    };
    deliver(store, config, &channels, &alerts)
}

/// Send each alert on each channel, once (a delivery already recorded as sent is not
/// repeated), and record every outcome in `alerts`. Never fails.
pub fn deliver(
    store: &Store,
    config: &Config,
    channels: &[Channel],
    alerts: &[Alert],
) -> Vec<Delivery> {
    let mut out = Vec::new();
    for alert in alerts {
        for ch in channels {
            // A re-run of a day does not repeat what was already delivered.
            if already_sent(store, alert, ch.name()) {
                continue;
            }
            let d = send(ch, alert, config);
            // The error comes redacted from send_with.
            if let Some(err) = &d.error {
                eprintln!(
                    "  alert {} via {} not delivered after {} attempt(s): {err}",
                    alert.event, d.channel, d.attempts
                );
                tracing::warn!("alert {} via {}: {err}", alert.event, d.channel);
            }
            if let Err(e) = record(store, alert, &d) {
                tracing::warn!("alerts: could not record the outcome: {e}");
            }
            out.push(d);
        }
    }
    out
}

pub fn wanted(config: &Config, event: &str) -> bool {
    config.desk.alerts.events.iter().any(|e| e == event)
}

/// equity, total return, SPY return, alpha, open positions
type SummaryRow = (f64, f64, Option<f64>, Option<f64>, i32);

const HALT_RULES: &[&str] = &[
    "kill_switch",
    "daily_loss_cap",
    "vix_jump",
    "volatility_kill_switch",
    "loss_pause",
];

/// The alerts a run calls for.
pub fn alerts_for(
    store: &Store,
    config: &Config,
    rec: &RunRecord,
) -> Result<Vec<Alert>, duckdb::Error> {
    let conn = &store.conn;
    let mut out = Vec::new();
    let mk = |event, text: String| Alert {
        event,
        as_of: rec.as_of,
        job: rec.job.to_string(),
        run_id: rec.run_id,
        text,
    };
    if rec.status == Status::Failed {
        if wanted(config, "job_failure") {
            out.push(mk(
                "job_failure",
                format!(
                    "optdesk: {} FAILED for {}: {}",
                    rec.job,
                    rec.as_of,
                    crate::config::redact_secrets(&rec.message)
                ),
            ));
        }
        return Ok(out);
    }
    if wanted(config, "fills") {
        let mut s = conn.prepare(
            "SELECT strategy, trim(instrument), quantity, price::DOUBLE, cash_kind FROM fills
             WHERE run_id = ? ORDER BY order_ref, leg",
        )?;
        let rows: Vec<(String, String, i64, f64, String)> = s
            .query_map(params![rec.run_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        if !rows.is_empty() {
            let mut text = format!(
                "optdesk {}: {} fill(s) by {}",
                rec.as_of,
                rows.len(),
                rec.job
            );
            for (strategy, inst, qty, price, kind) in rows.iter().take(20) {
                text.push_str(&format!(
                    "\n{strategy}: {inst} {qty:+} @ {price:.2} ({kind})"
                ));
            }
            if rows.len() > 20 {
                text.push_str(&format!("\n… and {} more", rows.len() - 20));
            }
            out.push(mk("fills", text));
        }
    }
    if wanted(config, "risk_halt") {
        let rules: Vec<String> = HALT_RULES.iter().map(|r| format!("'{r}'")).collect();
        let mut s = conn.prepare(&format!(
            "SELECT rule, any_value(reason), count(*), string_agg(DISTINCT strategy, ', ' ORDER BY strategy),
                    strftime(min(quote_time), '%H:%M')
             FROM risk_decisions
             WHERE run_id = ? AND decision = 'refused' AND rule IN ({})
             GROUP BY rule ORDER BY rule",
            rules.join(", ")
        ))?;
        let rows: Vec<(String, Option<String>, i64, String, String)> = s
            .query_map(params![rec.run_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        for (rule, reason, n, strategies, at) in rows {
            out.push(mk(
                "risk_halt",
                format!(
                    "optdesk {} {at}: risk halt ({rule}) for {strategies}, {n} order(s) refused: {}",
                    rec.as_of,
                    reason.unwrap_or_default()
                ),
            ));
        }
    }
    if wanted(config, "signal") {
        if let Some(text) = signal_text(conn, rec)? {
            out.push(mk("signal", text));
        }
    }
    if rec.job == "snapshot_benchmarks" && wanted(config, "daily_summary") {
        let row: Option<SummaryRow> = conn
            .query_row(
                "SELECT equity::DOUBLE, total_return, spy_return, alpha_vs_spy, open_positions
                 FROM portfolio_snapshots WHERE run_id = ?",
                params![rec.run_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .ok();
        if let Some((equity, ret, spy, alpha, open)) = row {
            let mut text = format!(
                "optdesk {}: equity ${} ({:+.2}% since the start), {open} open position(s)",
                rec.as_of,
                crate::report::money(equity),
                ret * 100.0
            );
            if let (Some(s), Some(a)) = (spy, alpha) {
                text.push_str(&format!(
                    "; SPY {:+.2}%, alpha {:+.2}%",
                    s * 100.0,
                    a * 100.0
                ));
            }
            out.push(mk("daily_summary", text));
        }
    }
    Ok(out)
}

/// The `signal` alert: the run's proposals, each with the risk gate's decision (approved,
/// or refused with its rule and reason). `None` when the run proposed nothing.
fn signal_text(
    conn: &duckdb::Connection,
    rec: &RunRecord,
) -> Result<Option<String>, duckdb::Error> {
    let mut s = conn.prepare(
        "SELECT strftime(s.quote_time, '%H:%M'), s.strategy, s.underlying, s.order_ref,
                coalesce(d.decision, 'not reviewed'), d.rule, d.reason
         FROM signals s
         LEFT JOIN (SELECT order_ref,
                           CASE WHEN bool_or(decision = 'refused') THEN 'refused' ELSE 'approved' END AS decision,
                           any_value(rule) FILTER (WHERE decision = 'refused') AS rule,
                           any_value(reason) FILTER (WHERE decision = 'refused') AS reason
                    FROM risk_decisions WHERE run_id = ? GROUP BY order_ref) d
           ON d.order_ref = s.order_ref
         WHERE s.run_id = ? AND s.action = 'propose'
         ORDER BY s.quote_time, s.strategy, s.order_ref",
    )?;
    type Row = (
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = s
        .query_map(params![rec.run_id, rec.run_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        return Ok(None);
    }
    let approved = rows.iter().filter(|r| r.4 == "approved").count();
    let mut text = format!(
        "optdesk {} {}: {} signal(s), {approved} approved",
        rec.as_of,
        rows[0].0,
        rows.len()
    );
    for (_, strategy, underlying, order_ref, decision, rule, reason) in rows.iter().take(20) {
        text.push_str(&format!(
            "\n{strategy} {underlying} {order_ref}: {decision}"
        ));
        if let Some(rule) = rule {
            text.push_str(&format!(" ({rule}: {})", reason.as_deref().unwrap_or("")));
        }
    }
    if rows.len() > 20 {
        text.push_str(&format!("\n… and {} more", rows.len() - 20));
    }
    Ok(Some(text))
}

/// How alerts are retried: `alerts.attempts` tries, 250 ms then doubling up to 4 s apart
/// (a 429's Retry-After is honoured up to 4 s).
fn retry_policy(config: &Config) -> RetryPolicy {
    RetryPolicy {
        attempts: config.desk.alerts.attempts,
        ..RetryPolicy::default()
    }
}

/// Send one alert on one channel with bounded retries.
pub fn send(ch: &Channel, alert: &Alert, config: &Config) -> Delivery {
    let timeout = Duration::from_secs(config.desk.alerts.timeout_secs);
    match HttpClient::new(timeout, retry_policy(config)) {
        Ok(client) => send_with(&client, ch, alert),
        Err(e) => Delivery {
            channel: ch.name(),
            ok: false,
            attempts: 0,
            error: Some(e.to_string()),
        },
    }
}

/// Send one alert on one channel with `client`. The error recorded never holds the URL
/// (a Telegram URL carries the bot token).
pub fn send_with(client: &HttpClient, ch: &Channel, alert: &Alert) -> Delivery {
    let (url, body) = match ch {
        Channel::Telegram {
            api,
            token,
            chat_id,
        } => (
            format!("{api}/bot{token}/sendMessage"),
            serde_json::json!({
                "chat_id": chat_id,
                "text": alert.text,
                "disable_web_page_preview": true,
            }),
        ),
        Channel::Webhook { url } => (
            url.clone(),
            serde_json::json!({
                "source": "optdesk",
                "event": alert.event,
                "as_of": alert.as_of.to_string(),
                "job": alert.job,
                "run_id": alert.run_id,
                "text": alert.text,
            }),
        ),
    };
    let x = client.post_json(&url, &body);
    Delivery {
        channel: ch.name(),
        ok: x.result.is_ok(),
        attempts: x.attempts,
        error: x
            .result
            .err()
            .map(|e| crate::text::redact(&e.to_string(), &channel_secrets(ch))),
    }
}

/// What a channel must never show: its own secrets (the bot token; the webhook URL, its
/// path and query) and every other secret in the environment. A server's error page
/// often echoes the request path (Express's `Cannot POST /bot<token>/sendMessage`).
fn channel_secrets(ch: &Channel) -> Vec<String> {
    let mut s = crate::config::secrets();
    match ch {
        Channel::Telegram { token, .. } => s.push(token.clone()),
        Channel::Webhook { url } => s.extend(crate::config::url_secrets(url)),
    }
    s
}

fn already_sent(store: &Store, alert: &Alert, channel: &str) -> bool {
    store
        .conn
        .query_row(
            "SELECT count(*) > 0 FROM alerts WHERE as_of = ? AND event = ? AND channel = ? AND text = ? AND status = 'sent'",
            params![
                alert.as_of,
                alert.event,
                channel,
                crate::config::redact_secrets(&alert.text)
            ],
            |r| r.get(0),
        )
        .unwrap_or(false)
}

/// Record one delivery's outcome in `alerts` (text and error redacted).
pub fn record(store: &Store, alert: &Alert, d: &Delivery) -> Result<(), duckdb::Error> {
    let redact = crate::config::redact_secrets;
    store.conn.execute(
        "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            Utc::now().naive_utc(),
            alert.as_of,
            alert.event,
            d.channel,
            if d.ok { "sent" } else { "failed" },
            d.attempts as i32,
            d.error.as_deref().map(redact),
            redact(&alert.text),
            alert.run_id
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        Alert {
            event: "daily_summary",
            as_of: NaiveDate::from_ymd_opt(2025, 3, 14).unwrap(),
            job: "snapshot_benchmarks".into(),
            run_id: 7,
            text: "optdesk 2025-03-14: equity $400,000.00".into(),
        }
    }

    #[test]
    fn sends_from_the_daemons_blocking_threads_and_never_prints_secrets() {
        // The daemon runs jobs with tokio's spawn_blocking: the blocking HTTP client
        // must work there.
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let got = std::thread::spawn(move || {
            let mut req = server.recv().unwrap();
            let mut body = String::new();
            std::io::Read::read_to_string(req.as_reader(), &mut body).unwrap();
            let url = req.url().to_string();
            req.respond(tiny_http::Response::from_string("{\"ok\":true}"))
                .unwrap();
            (url, body)
        });
        let config =
            Config::load(std::path::Path::new("/nonexistent/optdesk-jobs"), false).unwrap();
        let ch = Channel::Telegram {
            api: format!("http://127.0.0.1:{port}"),
            token: "42:TOKEN".into(),
            chat_id: "99".into(),
        };
        assert!(!format!("{ch:?}").contains("TOKEN"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let c2 = ch.clone();
        let d = rt.block_on(async move {
            tokio::task::spawn_blocking(move || send(&c2, &alert(), &config))
                .await
                .unwrap()
        });
        assert!(d.ok && d.attempts == 1, "{d:?}");
        let (url, body) = got.join().unwrap();
        assert_eq!(url, "/bot42:TOKEN/sendMessage");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["chat_id"], "99");
        assert_eq!(v["text"], alert().text);
    }

    #[test]
    fn a_refused_connection_is_retried_then_reported_without_the_url() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut config =
            Config::load(std::path::Path::new("/nonexistent/optdesk-jobs"), false).unwrap();
        config.desk.alerts.attempts = 2;
        let ch = Channel::Telegram {
            api: format!("http://127.0.0.1:{port}"),
            token: "42:TOKEN".into(),
            chat_id: "99".into(),
        };
        let d = send(&ch, &alert(), &config);
        assert!(!d.ok);
        assert_eq!(d.attempts, 2);
        let err = d.error.unwrap();
        assert!(!err.contains("TOKEN"), "{err}");
        assert!(err.to_lowercase().contains("connect"), "{err}");
    }

    #[test]
    fn a_refused_request_is_not_retried_and_its_answer_is_recorded() {
        // A 400 (say, a wrong chat id) cannot succeed on a second try.
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        // One answer, then the server is gone: a retry would be refused and counted.
        let served = std::thread::spawn(move || {
            let req = server.recv().unwrap();
            req.respond(
                tiny_http::Response::from_string(r#"{"ok":false,"description":"chat not found"}"#)
                    .with_status_code(400),
            )
            .unwrap();
        });
        let config =
            Config::load(std::path::Path::new("/nonexistent/optdesk-jobs"), false).unwrap();
        assert_eq!(config.desk.alerts.attempts, 3);
        let ch = Channel::Telegram {
            api: format!("http://127.0.0.1:{port}"),
            token: "42:TOKEN".into(),
            chat_id: "99".into(),
        };
        let d = send(&ch, &alert(), &config);
        served.join().unwrap();
        assert_eq!((d.ok, d.attempts), (false, 1), "{d:?}");
        let err = d.error.unwrap();
        assert_eq!(
            err,
            r#"HTTP 400 Bad Request: {"ok":false,"description":"chat not found"}"#
        );
    }
}
