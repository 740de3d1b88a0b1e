//! The daily email: plain text and HTML (inline styles only, as mail clients want), the
//! equity chart as an inline PNG referenced by content id, built and sent with lettre.

use super::svg::escape;
use super::{money, num, pct, ratio, signed_money, MetricsRow, ReportData};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use std::fmt::Write as _;
use std::time::Duration;

/// The content id of the inline chart (`<img src="cid:equity-chart">`).
pub const CHART_CID: &str = "equity-chart";

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server cannot.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: accepted only for a loopback host (a local relay).
    None,
}

impl Security {
    pub fn parse(s: &str) -> Result<Security, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starttls" => Ok(Security::StartTls),
            "tls" | "ssl" | "smtps" => Ok(Security::Tls),
            "none" | "plain" => Ok(Security::None),
            other => Err(format!(
                "security '{other}' is not one of starttls, tls, none"
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Security::StartTls => "starttls",
            Security::Tls => "tls",
            Security::None => "none",
        }
    }
}

/// Resolved SMTP settings (file values overridden by the environment).
#[derive(Clone, PartialEq, Eq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub user: Option<String>,
    pub password: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    pub timeout_secs: u64,
    /// Extra root certificates (PEM) to trust: a private CA, or a relay's own certificate.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Smtp {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

/// Whether a host name is this machine (so `security = "none"` cannot leak anything).
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Build the multipart message: text, and HTML with the chart inline.
pub fn build_message(
    smtp_from: &str,
    to: &[String],
    message_id: &str,
    subject: &str,
    text: String,
    html: String,
    chart_png: Vec<u8>,
) -> Result<Message, String> {
    let from: Mailbox = smtp_from
        .parse()
        .map_err(|e| format!("from address '{smtp_from}': {e}"))?;
    let mut b = Message::builder()
        .from(from)
        .subject(subject)
        .message_id(Some(format!("<{message_id}>")))
        .user_agent(format!("optdesk {}", crate::VERSION));
    for t in to {
        let mb: Mailbox = t
            .parse()
            .map_err(|e| format!("recipient address '{t}': {e}"))?;
        b = b.to(mb);
    }
    let png_type = ContentType::parse("image/png").map_err(|e| e.to_string())?;
    b.multipart(
        MultiPart::alternative()
            .singlepart(SinglePart::plain(text))
            .multipart(
                MultiPart::related()
                    .singlepart(SinglePart::html(html))
                    .singlepart(
                        Attachment::new_inline(CHART_CID.to_string()).body(chart_png, png_type),
                    ),
            ),
    )
    .map_err(|e| format!("cannot build the message: {e}"))
}

/// Send by SMTP. The error carries the server's reply (or why it could not connect).
pub fn send(smtp: &Smtp, msg: &Message) -> Result<String, String> {
    let tls = || -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(smtp.host.clone());
        if let Some(path) = &smtp.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("ca_file {}: cannot read: {e}", path.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls()
            .map_err(|e| format!("TLS setup for {}: {e}", smtp.host))
    };
    let builder = match smtp.security {
        Security::StartTls => {
            SmtpTransport::builder_dangerous(&smtp.host).tls(Tls::Required(tls()?))
        }
        Security::Tls => SmtpTransport::builder_dangerous(&smtp.host).tls(Tls::Wrapper(tls()?)),
        Security::None => {
            if !is_loopback(&smtp.host) {
                return Err(format!(
                    "security = none is accepted only for a loopback host, not '{}': use starttls or tls",
                    smtp.host
                ));
            }
            SmtpTransport::builder_dangerous(&smtp.host).tls(Tls::None)
        }
    };
    let mut builder = builder
        .port(smtp.port)
        .timeout(Some(Duration::from_secs(smtp.timeout_secs)));
    if let Some(user) = &smtp.user {
        let pass = smtp.password.clone().unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.clone(), pass));
    }
    let transport = builder.build();
    match transport.send(msg) {
        Ok(resp) => Ok(resp.message().collect::<Vec<_>>().join(" ")),
        Err(e) => Err(crate::store::error_chain(&e)),
    }
}

// ---------------------------------------------------------------------------------
// Plain text

/// The plain-text body.
pub fn render_text(d: &ReportData) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "optdesk daily report — {}", d.as_of);
    let _ = writeln!(o, "{}", "=".repeat(40));
    match &d.portfolio {
        Some(p) => {
            let _ = writeln!(
                o,
                "Portfolio value ${} (cash ${}, positions ${}, {} open)",
                money(p.equity),
                money(p.cash),
                money(p.market_value),
                p.open_positions
            );
            match (p.day_pnl, p.day_return) {
                (Some(pnl), r) => {
                    let _ = writeln!(o, "Today: {} ({})", signed_money(pnl), pct(r));
                }
                _ => {
                    let _ = writeln!(o, "Today: the first session of the account.");
                }
            }
            let _ = writeln!(
                o,
                "Since {}: {} on ${}",
                p.start_date,
                pct(Some(p.total_return)),
                money(p.start_equity)
            );
            if let Some(n) = &p.note {
                let _ = writeln!(o, "Note: {n}");
            }
        }
        None => {
            let _ = writeln!(
                o,
                "No portfolio snapshot for this day yet (snapshot_benchmarks has not run, or there is no account)."
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Benchmarks (buy and hold from the start)");
    if d.benchmarks.is_empty() {
        let _ = writeln!(o, "  No benchmark history yet.");
    } else {
        let total = d.portfolio.as_ref().map(|p| p.total_return);
        for (sym, curve) in &d.benchmarks {
            let r = bench_return(curve);
            let alpha = match (total, r) {
                (Some(t), Some(b)) => Some(t - b),
                _ => None,
            };
            let _ = writeln!(
                o,
                "  {sym:<6} {:>9}   portfolio − benchmark {:>9}",
                pct(r),
                pct(alpha)
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Performance (risk-free {:.2}%)",
        d.risk_free_rate * 100.0
    );
    if !has_metrics(&d.metrics) {
        let _ = writeln!(
            o,
            "  Not enough history yet: the metrics need at least two sessions."
        );
    } else {
        let _ = writeln!(
            o,
            "  {:<18} {:>9} {:>9} {:>8} {:>7} {:>7} {:>9} {:>6} {:>8} {:>5} {:>7}",
            "",
            "total",
            "CAGR",
            "vol",
            "Sharpe",
            "Sortino",
            "max DD",
            "beta",
            "alpha",
            "win%",
            "PF"
        );
        for m in &d.metrics {
            let _ = writeln!(o, "  {}", metrics_text_row(m));
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Open positions");
    if d.positions.is_empty() {
        let _ = writeln!(o, "  No positions are open.");
    } else {
        for p in d.positions.iter().take(EMAIL_POSITIONS) {
            let _ = writeln!(
                o,
                "  {:<16} {:<22} {:>6} entry {:>9} mark {:>9} P&L {:>12}  Δ {:>8} Θ {:>8} V {:>8}",
                p.strategy,
                p.instrument,
                p.quantity,
                format!("{:.2}", p.entry),
                num(p.mark, 2),
                p.pnl.map(signed_money).unwrap_or_else(|| "n/a".into()),
                num(p.delta, 1),
                num(p.theta, 2),
                num(p.vega, 2)
            );
        }
        if let Some(more) = more_positions(d) {
            let _ = writeln!(o, "  {more}");
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Signals today");
    if d.signals.is_empty() {
        let _ = writeln!(o, "  No strategy produced a signal today.");
    }
    for s in &d.signals {
        let _ = writeln!(
            o,
            "  {:<16} {:<6} {:<8} {}",
            s.strategy, s.underlying, s.action, s.detail
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Trades today");
    if d.fills_today.is_empty() {
        let _ = writeln!(o, "  No trades today.");
    }
    for f in &d.fills_today {
        let _ = writeln!(
            o,
            "  {:<16} {:<22} {:>6} @ {:>9.2} {:<10} cash {}",
            f.strategy,
            f.instrument,
            f.quantity,
            f.price,
            f.cash_kind,
            signed_money(f.cash)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Risk refusals today");
    if d.refusals.is_empty() {
        let _ = writeln!(o, "  No order was refused today.");
    }
    for r in &d.refusals {
        let _ = writeln!(
            o,
            "  {:<16} {:<6} {:<24} {}",
            r.strategy, r.underlying, r.rule, r.reason
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Jobs today");
    if d.jobs.is_empty() {
        let _ = writeln!(o, "  No job has run for this day.");
    }
    for j in &d.jobs {
        let _ = writeln!(o, "  {:<20} {:<8} {}", j.job, j.status, j.message);
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "The equity chart is in the HTML part. Everything here is in the store: optdesk sql \"SELECT * FROM portfolio_snapshots ORDER BY as_of DESC LIMIT 5\""
    );
    o
}

fn bench_return(curve: &[crate::analytics::performance::Point]) -> Option<f64> {
    let (first, last) = (curve.first()?, curve.last()?);
    (first.value > 0.0).then_some(last.value / first.value - 1.0)
}

/// Whether any row has enough history for the metrics (two sessions).
pub fn has_metrics(rows: &[MetricsRow]) -> bool {
    rows.iter()
        .any(|m| m.metrics.as_ref().is_some_and(|x| x.volatility.is_some()))
}

fn metrics_text_row(m: &MetricsRow) -> String {
    let x = m.metrics.as_ref();
    let t = m.trades.as_ref();
    format!(
        "{:<18} {:>9} {:>9} {:>8} {:>7} {:>7} {:>9} {:>6} {:>8} {:>5} {:>7}",
        m.name,
        pct(x.map(|x| x.total_return)),
        pct(x.and_then(|x| x.cagr)),
        pct(x.and_then(|x| x.volatility)),
        ratio(x.and_then(|x| x.sharpe)),
        ratio(x.and_then(|x| x.sortino)),
        pct(x.map(|x| x.drawdown.max_drawdown)),
        ratio(x.and_then(|x| x.beta)),
        pct(x.and_then(|x| x.alpha)),
        t.and_then(|t| t.win_rate)
            .map(|w| format!("{:.0}%", w * 100.0))
            .unwrap_or_else(|| "n/a".into()),
        ratio(t.and_then(|t| t.profit_factor)),
    )
}

// ---------------------------------------------------------------------------------
// HTML

const TD: &str = "padding:4px 8px;border-bottom:1px solid #eaeef2;font-size:13px;";
const TH: &str =
    "padding:4px 8px;border-bottom:2px solid #d0d7de;font-size:12px;text-align:left;color:#57606a;";
const H2: &str = "font-size:16px;margin:24px 0 8px 0;color:#24292f;";
const NOTE: &str = "color:#57606a;font-size:13px;margin:4px 0;";

fn color_of(v: Option<f64>) -> &'static str {
    match v {
        Some(x) if x > 0.0 => "color:#1a7f37;",
        Some(x) if x < 0.0 => "color:#cf222e;",
        _ => "",
    }
}

/// An HTML table from a header and rows of (cell, style) pairs.
pub fn table(head: &[&str], rows: &[Vec<(String, String)>]) -> String {
    let mut o = String::from(
        "<table cellspacing=\"0\" cellpadding=\"0\" style=\"border-collapse:collapse;width:100%;\"><tr>",
    );
    for h in head {
        let _ = write!(o, "<th style=\"{TH}\">{}</th>", escape(h));
    }
    o.push_str("</tr>");
    for r in rows {
        o.push_str("<tr>");
        for (cell, style) in r {
            let _ = write!(o, "<td style=\"{TD}{style}\">{}</td>", escape(cell));
        }
        o.push_str("</tr>");
    }
    o.push_str("</table>");
    o
}

fn plain(s: impl Into<String>) -> (String, String) {
    (s.into(), String::new())
}

fn right(s: impl Into<String>) -> (String, String) {
    (s.into(), "text-align:right;white-space:nowrap;".into())
}

fn signed(s: String, v: Option<f64>) -> (String, String) {
    (
        s,
        format!("text-align:right;white-space:nowrap;{}", color_of(v)),
    )
}

fn sentence(s: &str) -> String {
    format!("<p style=\"{NOTE}\">{}</p>", escape(s))
}

/// The metrics table rows (shared by the email and the dashboard).
pub fn metrics_rows(rows: &[MetricsRow]) -> Vec<Vec<(String, String)>> {
    rows.iter()
        .map(|m| {
            let x = m.metrics.as_ref();
            let dd = x.map(|x| x.drawdown.max_drawdown);
            vec![
                plain(row_name(m)),
                signed(pct(x.map(|x| x.total_return)), x.map(|x| x.total_return)),
                signed(pct(x.and_then(|x| x.cagr)), x.and_then(|x| x.cagr)),
                right(pct(x.and_then(|x| x.volatility))),
                right(ratio(x.and_then(|x| x.sharpe))),
                right(ratio(x.and_then(|x| x.sortino))),
                signed(pct(dd), dd),
                right(ratio(x.and_then(|x| x.calmar))),
                signed(pct(x.and_then(|x| x.alpha)), x.and_then(|x| x.alpha)),
                right(ratio(x.and_then(|x| x.beta))),
            ]
        })
        .collect()
}

fn row_name(m: &MetricsRow) -> String {
    match m.kind {
        "strategy" => format!("  {}", m.name),
        "benchmark" => format!("{} (benchmark)", m.name),
        _ => m.name.clone(),
    }
}

pub const METRICS_HEAD: &[&str] = &[
    "",
    "Total",
    "CAGR",
    "Volatility",
    "Sharpe",
    "Sortino",
    "Max DD",
    "Calmar",
    "Alpha (ann.)",
    "Beta",
];

/// Closed-trade statistics of the book and each strategy.
pub fn trade_rows(rows: &[MetricsRow]) -> Vec<Vec<(String, String)>> {
    rows.iter()
        .filter_map(|m| m.trades.as_ref().map(|t| (m, t)))
        .map(|(m, t)| {
            let money_or =
                |v: Option<f64>| (v.map(signed_money).unwrap_or_else(|| "n/a".into()), v);
            let (win, w) = money_or(t.avg_win);
            let (loss, l) = money_or(t.avg_loss);
            vec![
                plain(row_name(m)),
                right(t.trades.to_string()),
                right(
                    t.win_rate
                        .map(|w| format!("{:.0}%", w * 100.0))
                        .unwrap_or_else(|| "n/a".into()),
                ),
                right(ratio(t.profit_factor)),
                signed(win, w),
                signed(loss, l),
                signed(signed_money(t.total_pnl), Some(t.total_pnl)),
            ]
        })
        .collect()
}

pub const TRADES_HEAD: &[&str] = &[
    "",
    "Closed trades",
    "Win rate",
    "Profit factor",
    "Avg win",
    "Avg loss",
    "Closed P&L",
];

/// The portfolio's maximum drawdown with its dates, as a sentence.
pub fn drawdown_sentence(rows: &[MetricsRow]) -> Option<String> {
    let book = rows.iter().find(|m| m.kind == "book")?;
    let d = &book.metrics.as_ref()?.drawdown;
    if d.max_drawdown >= 0.0 {
        return Some("The portfolio has not been below a previous high.".into());
    }
    let (Some(peak), Some(trough)) = (d.peak, d.trough) else {
        return None;
    };
    Some(format!(
        "Maximum drawdown of the portfolio: {} from its high on {peak} to {trough}; {}.",
        pct(Some(d.max_drawdown)),
        match d.recovered {
            Some(r) => format!("recovered on {r}"),
            None => "not recovered yet".into(),
        }
    ))
}

/// The email lists at most this many position legs (the dashboard lists all).
pub const EMAIL_POSITIONS: usize = 200;

fn more_positions(d: &ReportData) -> Option<String> {
    (d.positions.len() > EMAIL_POSITIONS).then(|| {
        format!(
            "… and {} more legs: see the dashboard or `optdesk positions`.",
            d.positions.len() - EMAIL_POSITIONS
        )
    })
}

/// The positions table rows (at most `limit`).
pub fn position_rows(d: &ReportData, limit: usize) -> Vec<Vec<(String, String)>> {
    d.positions
        .iter()
        .take(limit)
        .map(|p| {
            vec![
                plain(p.strategy.clone()),
                plain(p.instrument.clone()),
                right(p.quantity.to_string()),
                right(format!("{:.2}", p.entry)),
                right(num(p.mark, 2)),
                signed(
                    p.pnl.map(signed_money).unwrap_or_else(|| "n/a".into()),
                    p.pnl,
                ),
                right(num(p.delta, 1)),
                right(num(p.theta, 2)),
                right(num(p.vega, 2)),
                plain(p.opened.to_string()),
            ]
        })
        .collect()
}

pub const POSITION_HEAD: &[&str] = &[
    "Strategy",
    "Leg",
    "Qty",
    "Entry",
    "Mark",
    "P&L",
    "Delta (sh)",
    "Theta $/day",
    "Vega $/pt",
    "Opened",
];

/// Fill rows.
pub fn fill_rows(fills: &[super::FillLine], with_date: bool) -> Vec<Vec<(String, String)>> {
    fills
        .iter()
        .map(|f| {
            let mut r = Vec::new();
            if with_date {
                r.push(plain(f.as_of.to_string()));
            }
            r.extend([
                plain(f.strategy.clone()),
                plain(f.instrument.clone()),
                right(f.quantity.to_string()),
                right(format!("{:.2}", f.price)),
                plain(f.cash_kind.clone()),
                signed(signed_money(f.cash), Some(f.cash)),
            ]);
            r
        })
        .collect()
}

pub const FILL_HEAD: &[&str] = &["Strategy", "Instrument", "Qty", "Price", "Kind", "Cash"];

/// The HTML body. The chart is `<img src="cid:equity-chart">`.
pub fn render_html(d: &ReportData) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>optdesk {}</title></head>\
         <body style=\"margin:0;padding:16px;background:#ffffff;font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#24292f;\">\
         <div style=\"max-width:820px;margin:0 auto;\">\
         <h1 style=\"font-size:20px;margin:0 0 4px 0;\">optdesk daily report — {}</h1>",
        d.as_of, d.as_of
    );
    match &d.portfolio {
        Some(p) => {
            let _ = write!(
                o,
                "<p style=\"font-size:28px;margin:8px 0 0 0;font-weight:600;\">${}</p>\
                 <p style=\"margin:2px 0;font-size:14px;\"><span style=\"{}\">{} ({}) today</span> · \
                 <span style=\"{}\">{} since {}</span> · cash ${} · positions ${} · {} open</p>",
                money(p.equity),
                color_of(p.day_pnl),
                p.day_pnl.map(signed_money).unwrap_or_else(|| "first session".into()),
                pct(p.day_return),
                color_of(Some(p.total_return)),
                pct(Some(p.total_return)),
                p.start_date,
                money(p.cash),
                money(p.market_value),
                p.open_positions
            );
            if let Some(n) = &p.note {
                o.push_str(&sentence(&format!("Note: {n}")));
            }
        }
        None => o.push_str(&sentence(
            "No portfolio snapshot for this day yet (snapshot_benchmarks has not run, or there is no account).",
        )),
    }
    // Benchmarks
    let _ = write!(o, "<h2 style=\"{H2}\">Versus the benchmarks</h2>");
    if d.benchmarks.is_empty() {
        o.push_str(&sentence(
            "No benchmark history yet: the benchmarks start with the first portfolio snapshot.",
        ));
    } else {
        let total = d.portfolio.as_ref().map(|p| p.total_return);
        let rows: Vec<Vec<(String, String)>> = d
            .benchmarks
            .iter()
            .map(|(sym, c)| {
                let r = bench_return(c);
                let alpha = total.zip(r).map(|(t, b)| t - b);
                vec![
                    plain(sym.clone()),
                    signed(pct(r), r),
                    signed(pct(alpha), alpha),
                ]
            })
            .collect();
        o.push_str(&table(
            &[
                "Benchmark",
                "Return",
                "Portfolio − benchmark (excess return)",
            ],
            &rows,
        ));
    }
    let _ = write!(
        o,
        "<p style=\"margin:12px 0;\"><img src=\"cid:{CHART_CID}\" width=\"760\" alt=\"Equity vs. benchmarks\" style=\"max-width:100%;height:auto;border:1px solid #eaeef2;\"></p>"
    );
    // Metrics
    let _ = write!(
        o,
        "<h2 style=\"{H2}\">Performance</h2><p style=\"{NOTE}\">Risk-free rate {:.2}%; alpha and beta against SPY; win rate and profit factor over closed trades.</p>",
        d.risk_free_rate * 100.0
    );
    if has_metrics(&d.metrics) {
        o.push_str(&table(METRICS_HEAD, &metrics_rows(&d.metrics)));
        if let Some(dd) = drawdown_sentence(&d.metrics) {
            o.push_str(&sentence(&dd));
        }
        o.push_str("<div style=\"height:12px;\"></div>");
        o.push_str(&table(TRADES_HEAD, &trade_rows(&d.metrics)));
    } else {
        o.push_str(&sentence(
            "Not enough history yet: the metrics need at least two sessions.",
        ));
    }
    // Positions
    let _ = write!(o, "<h2 style=\"{H2}\">Open positions</h2>");
    if d.positions.is_empty() {
        o.push_str(&sentence("No positions are open."));
    } else {
        o.push_str(&table(POSITION_HEAD, &position_rows(d, EMAIL_POSITIONS)));
        if let Some(more) = more_positions(d) {
            o.push_str(&sentence(&more));
        }
    }
    // Signals
    let _ = write!(o, "<h2 style=\"{H2}\">Signals today</h2>");
    if d.signals.is_empty() {
        o.push_str(&sentence("No strategy produced a signal today."));
    } else {
        o.push_str(&table(SIGNAL_HEAD, &signal_rows(d)));
    }
    // Trades
    let _ = write!(o, "<h2 style=\"{H2}\">Trades today</h2>");
    if d.fills_today.is_empty() {
        o.push_str(&sentence("No trades today."));
    } else {
        o.push_str(&table(FILL_HEAD, &fill_rows(&d.fills_today, false)));
    }
    // Refusals
    let _ = write!(o, "<h2 style=\"{H2}\">Risk refusals today</h2>");
    if d.refusals.is_empty() {
        o.push_str(&sentence("No order was refused today."));
    } else {
        o.push_str(&table(REFUSAL_HEAD, &refusal_rows(d)));
    }
    // Jobs
    let _ = write!(o, "<h2 style=\"{H2}\">Jobs today</h2>");
    if d.jobs.is_empty() {
        o.push_str(&sentence("No job has run for this day."));
    } else {
        o.push_str(&table(&["Job", "Status", "Outcome"], &job_rows(d)));
    }
    let _ = write!(
        o,
        "<p style=\"{NOTE}margin-top:24px;\">Sent by optdesk {}. Every figure here is in the store (tables portfolio_snapshots, benchmark_snapshots, strategy_snapshots, fills, signals, risk_decisions, job_runs).</p></div></body></html>",
        crate::VERSION
    );
    o
}

pub const SIGNAL_HEAD: &[&str] = &["Strategy", "Underlying", "Action", "Why / numbers"];

/// The day's signals.
pub fn signal_rows(d: &ReportData) -> Vec<Vec<(String, String)>> {
    d.signals
        .iter()
        .map(|s| {
            [&s.strategy, &s.underlying, &s.action, &s.detail]
                .map(|c| plain(c.clone()))
                .to_vec()
        })
        .collect()
}

pub const REFUSAL_HEAD: &[&str] = &["Strategy", "Underlying", "Rule", "Reason"];

/// The day's risk refusals.
pub fn refusal_rows(d: &ReportData) -> Vec<Vec<(String, String)>> {
    d.refusals
        .iter()
        .map(|r| {
            [&r.strategy, &r.underlying, &r.rule, &r.reason]
                .map(|c| plain(c.clone()))
                .to_vec()
        })
        .collect()
}

/// Job outcome rows.
pub fn job_rows(d: &ReportData) -> Vec<Vec<(String, String)>> {
    d.jobs
        .iter()
        .map(|j| {
            let style = match j.status.as_str() {
                "failed" => "color:#cf222e;font-weight:600;",
                "skipped" => "color:#9a6700;",
                _ => "color:#1a7f37;",
            };
            vec![
                plain(match &j.slot {
                    Some(s) => format!("{} ({s})", j.job),
                    None => j.job.clone(),
                }),
                (j.status.clone(), style.into()),
                plain(j.message.clone()),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_parses_and_none_is_loopback_only() {
        assert_eq!(Security::parse("STARTTLS").unwrap(), Security::StartTls);
        assert_eq!(Security::parse("tls").unwrap(), Security::Tls);
        assert_eq!(Security::parse("none").unwrap(), Security::None);
        assert!(Security::parse("maybe").is_err());
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("smtp.example.com"));
        assert!(!is_loopback("10.0.0.1"));
        let smtp = Smtp {
            host: "smtp.example.com".into(),
            port: 25,
            security: Security::None,
            user: None,
            password: Some("hunter2".into()),
            from: "a@b.c".into(),
            to: vec!["d@e.f".into()],
            timeout_secs: 1,
            ca_file: None,
        };
        let msg = build_message(
            "a@b.c",
            &smtp.to,
            "id@b.c",
            "s",
            "t".into(),
            "<p>h</p>".into(),
            vec![1, 2],
        )
        .unwrap();
        let err = send(&smtp, &msg).unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        assert!(!format!("{smtp:?}").contains("hunter2"));
    }

    #[test]
    fn the_email_lists_at_most_200_legs_and_says_how_many_more() {
        let mut d = ReportData::empty(chrono::NaiveDate::from_ymd_opt(2025, 3, 14).unwrap(), 0.04);
        for i in 0..250 {
            d.positions.push(super::super::PositionRow {
                strategy: "dispersion".into(),
                instrument: format!("LEG{i:03}"),
                underlying: "QQQ".into(),
                kind: "option".into(),
                quantity: -1,
                multiplier: 100,
                entry: 1.0,
                opened: d.as_of,
                mark: Some(0.5),
                pnl: Some(50.0),
                delta: None,
                theta: None,
                vega: None,
            });
        }
        let html = render_html(&d);
        let text = render_text(&d);
        for body in [&html, &text] {
            assert!(body.contains("LEG199") && !body.contains("LEG200"));
            assert!(body.contains("and 50 more legs"));
        }
        assert!(super::super::dashboard::render(&d).contains("LEG249"));
    }

    #[test]
    fn a_bad_address_is_named() {
        let e = build_message(
            "not an address",
            &[],
            "id@b.c",
            "s",
            "t".into(),
            "h".into(),
            vec![],
        )
        .unwrap_err();
        assert!(e.contains("not an address"), "{e}");
    }
}
