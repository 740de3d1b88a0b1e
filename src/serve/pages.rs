//! The pages: today (the live desk), history (the daily dashboard for any date), the
//! backtests and their tearsheets, the login form and the error pages. Every page is
//! whole: its styles and font inline, no script, nothing fetched.

use super::http::Reply;
use super::{State, Unavailable};
use crate::report::dashboard::{self, section, sentence};
use crate::report::email::{
    fill_rows, position_rows, refusal_rows, signal_rows, table, FILL_HEAD, POSITION_HEAD,
    REFUSAL_HEAD, SIGNAL_HEAD,
};
use crate::report::svg::{self, escape};
use crate::report::{chart::YFormat, money, pct, signed_money, ReportData};
use crate::store::Store;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use std::fmt::Write as _;

/// The job runs the today page lists (a session with 5-minute slots has hundreds).
const SHOWN_RUNS: usize = 60;

/// On a page answered from the last read while a job has the store (for scripts, and
/// the request log).
pub(super) const STALE_HEADER: &str = "X-Optdesk-Stale";

/// How long a client should wait before asking again while a job has the store.
pub(super) const RETRY_AFTER_SECS: u64 = 30;

/// One job run of the session.
#[derive(Debug, Clone)]
pub(super) struct RunLine {
    pub run_id: i64,
    pub job: String,
    pub slot: Option<String>,
    pub status: String,
    pub trigger: String,
    pub started_at: NaiveDateTime,
    pub finished_at: NaiveDateTime,
    pub rows: i64,
    pub message: String,
}

/// What the today page and the status API show, as read at `taken_at`.
#[derive(Debug, Clone)]
pub(super) struct Today {
    /// The latest session with a run, on or before today.
    pub session: Option<NaiveDate>,
    pub data: Option<ReportData>,
    pub runs: Vec<RunLine>,
    pub vol: Vec<VolLine>,
    /// Today's daily run, when today is a session (what `status --check` says).
    pub today_daily: Option<crate::jobs::daily_check::DailyState>,
    pub taken_at: DateTime<Utc>,
}

/// One underlying's volatility at the session's latest snapshot: the intraday bots' view
/// (IV rank, the one-day expected move against the range so far, the ratio the
/// volatility kill switch halts on).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct VolLine {
    pub symbol: String,
    pub at: NaiveDateTime,
    pub spot: f64,
    pub atm_iv_30d: Option<f64>,
    pub iv_rank: Option<f64>,
    pub hv_10: Option<f64>,
    /// spot × 30-day ATM IV × √(1/252), dollars.
    pub expected_move: Option<f64>,
    /// Today's high − low from the minute bars before the snapshot, dollars.
    pub range: Option<f64>,
}

impl VolLine {
    /// Range / expected move: the volatility kill switch halts entries beyond its
    /// strategy's `vol_move_multiple` (1.25 by default).
    pub fn range_over_move(&self) -> Option<f64> {
        match (self.range, self.expected_move) {
            (Some(r), Some(m)) if m > 0.0 => Some(r / m),
            _ => None,
        }
    }
}

/// At most this many underlyings in the volatility panel: those with minute bars today
/// first (the intraday desk's), then by symbol.
const SHOWN_VOL: usize = 30;

/// The session's latest volatility snapshot per underlying ([`VolLine`]).
pub(super) fn vol_of(store: &Store, session: NaiveDate) -> Result<Vec<VolLine>, String> {
    let mut s = store
        .conn
        .prepare(
            "WITH last AS (
                 SELECT symbol, max(quote_time) AS qt FROM vol_metrics WHERE as_of = ? GROUP BY symbol
             ), bars AS (
                 SELECT b.symbol, max(b.high) - min(b.low) AS range
                 FROM intraday_bars b JOIN last l ON b.symbol = l.symbol
                 WHERE b.ts >= ?::DATE AND b.ts < l.qt GROUP BY b.symbol
             )
             SELECT v.symbol, v.quote_time, v.spot, v.atm_iv_30d, v.iv_rank_252, v.hv_10,
                    v.spot * v.atm_iv_30d * sqrt(1.0 / 252), bars.range
             FROM vol_metrics v JOIN last l ON v.symbol = l.symbol AND v.quote_time = l.qt
             LEFT JOIN bars ON bars.symbol = v.symbol
             WHERE v.as_of = ?
             ORDER BY bars.range IS NULL, v.symbol LIMIT ?",
        )
        .map_err(|e| e.to_string())?;
    let rows = s
        .query_map(
            duckdb::params![session, session, session, SHOWN_VOL as i64],
            |r| {
                Ok(VolLine {
                    symbol: r.get(0)?,
                    at: r.get(1)?,
                    spot: r.get(2)?,
                    atm_iv_30d: r.get(3)?,
                    iv_rank: r.get(4)?,
                    hv_10: r.get(5)?,
                    expected_move: r.get(6)?,
                    range: r.get(7)?,
                })
            },
        )
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read vol_metrics: {e}"))?;
    Ok(rows)
}

/// The latest session with a (non-dry) run on or before `today`.
pub(super) fn latest_session(store: &Store, today: NaiveDate) -> Result<Option<NaiveDate>, String> {
    store
        .conn
        .query_row(
            "SELECT max(as_of) FROM job_runs WHERE NOT dry_run AND as_of <= ?",
            [today],
            |r| r.get::<_, Option<NaiveDate>>(0),
        )
        .map_err(|e| format!("cannot read job_runs: {e}"))
}

/// Every run recorded for `session`, latest first (dry runs left out).
pub(super) fn runs_of(store: &Store, session: NaiveDate) -> Result<Vec<RunLine>, String> {
    let secrets = crate::config::secrets();
    let mut s = store
        .conn
        .prepare(
            "SELECT run_id, job, slot, status, trigger, started_at, finished_at, rows_written, coalesce(message, '')
             FROM job_runs WHERE as_of = ? AND NOT dry_run ORDER BY run_id DESC LIMIT 500",
        )
        .map_err(|e| e.to_string())?;
    let rows = s
        .query_map([session], |r| {
            Ok(RunLine {
                run_id: r.get(0)?,
                job: r.get(1)?,
                slot: r.get(2)?,
                status: r.get(3)?,
                trigger: r.get(4)?,
                started_at: r.get(5)?,
                finished_at: r.get(6)?,
                rows: r.get(7)?,
                message: crate::text::redact(&r.get::<_, String>(8)?, &secrets),
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read job_runs: {e}"))?;
    Ok(rows)
}

/// The report of `day`, with every message redacted.
pub(super) fn report_of(store: &Store, day: NaiveDate, rfr: f64) -> Result<ReportData, String> {
    let mut d = crate::report::load(&store.conn, day, rfr)
        .map_err(|e| format!("cannot read the report of {day}: {e}"))?;
    let secrets = crate::config::secrets();
    for j in &mut d.jobs {
        j.message = crate::text::redact(&j.message, &secrets);
    }
    Ok(d)
}

impl State {
    /// Read today's data now, or say why not.
    pub(super) fn load_today(&self) -> Result<Today, Unavailable> {
        let today = self.now_ny().date_naive();
        let rfr = self.risk_free_rate;
        let is_session = matches!(crate::calendar::session(today), Ok(Some(_)));
        let ((session, data, runs, vol, today_daily), taken_at) = self.read(|store| {
            let today_daily = if is_session {
                let jobs: Vec<&str> = crate::jobs::JOBS
                    .iter()
                    .filter(|d| d.daily)
                    .map(|d| d.name)
                    .collect();
                Some(
                    crate::jobs::daily_check::daily_state_of(&store.conn, &jobs, today)
                        .map_err(|e| format!("cannot read job_runs: {e}"))?,
                )
            } else {
                None
            };
            let Some(session) = latest_session(store, today)? else {
                return Ok((None, None, Vec::new(), Vec::new(), today_daily));
            };
            Ok((
                Some(session),
                Some(report_of(store, session, rfr)?),
                runs_of(store, session)?,
                vol_of(store, session)?,
                today_daily,
            ))
        })?;
        Ok(Today {
            session,
            data,
            runs,
            vol,
            today_daily,
            taken_at,
        })
    }

    /// Whether the kill switch's file exists (no new entries while it does).
    pub(super) fn kill_switch_on(&self) -> bool {
        crate::jobs::select_trades::kill_file_path(&self.config).is_ok_and(|p| p.exists())
    }

    /// What a watcher must not miss: the daily run not finished 15 minutes after its
    /// time on a session, and the jobs whose latest run in the session shown failed.
    pub(super) fn warnings(&self, t: &Today, now: DateTime<Tz>) -> Vec<String> {
        let mut out = Vec::new();
        let today = now.date_naive();
        if let Ok(Some(s)) = crate::calendar::session(today) {
            let daily = self
                .entries
                .iter()
                .filter(|e| e.target == crate::schedule::Target::Daily)
                .flat_map(|e| e.spec.times_on(&s))
                .find(|at| crate::clock::within_session(*at, &s));
            if let Some(at) = daily {
                let due = crate::calendar::ny(today.and_time(at)) + Duration::minutes(15);
                // The same test as `optdesk status --check` and the daemon's alert.
                let state = t.today_daily.as_ref().filter(|s| !s.is_finished());
                if let (true, Some(state)) = (now > due, state) {
                    out.push(format!(
                        "{} — it was due at {} New York, more than 15 minutes ago (is the daemon running? `optdesk status` shows the last runs).",
                        crate::text::redact(&state.describe(today), &crate::config::secrets()),
                        at.format("%H:%M")
                    ));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for r in &t.runs {
            if seen.insert((r.job.as_str(), r.slot.as_deref())) && r.status == "failed" {
                out.push(format!(
                    "{}{} failed in session {}: {}",
                    r.job,
                    r.slot
                        .as_deref()
                        .map(|s| format!(" at {s}"))
                        .unwrap_or_default(),
                    t.session.map(|d| d.to_string()).unwrap_or_default(),
                    r.message
                ));
            }
        }
        out
    }

    /// Seconds between the today page's own reloads: the spacing of the session's
    /// firings while it is open (at most until the next firing), slower outside it.
    pub(super) fn auto_refresh(&self, now: DateTime<Tz>) -> u64 {
        let next = crate::schedule::plan(&self.entries, now, 7)
            .first()
            .map(|f| (f.at - now).num_seconds().max(0) as u64);
        match crate::calendar::session(now.date_naive()) {
            Ok(Some(s)) if now >= s.open_at() && now <= s.close_at() + Duration::minutes(30) => {
                let times: Vec<DateTime<Tz>> = crate::schedule::firings_between(
                    &self.entries,
                    s.open_at() - Duration::hours(12),
                    s.close_at() + Duration::hours(8),
                )
                .into_iter()
                .filter(|f| f.session.date == s.date)
                .map(|f| f.at)
                .collect();
                let spacing = times
                    .windows(2)
                    .map(|w| (w[1] - w[0]).num_seconds())
                    .filter(|d| *d > 0)
                    .min()
                    .unwrap_or(300)
                    .clamp(60, 900) as u64;
                match next {
                    Some(n) => spacing.min(n + 30).max(30),
                    None => spacing,
                }
            }
            _ => next.map(|n| (n + 60).clamp(60, 1800)).unwrap_or(1800),
        }
    }
}

const CSS: &str = "
nav{background:#32383f;padding:6px 24px;font-size:13px}
nav a{color:#fff;margin-right:16px;text-decoration:none}
nav a:hover{text-decoration:underline}
nav span{color:#d0d7de;margin-left:16px}
nav span a{margin-right:8px;color:#d0d7de}
header .sub{color:#d0d7de;font-size:13px;margin-top:4px}
p.busy{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px;color:#24292f;font-size:14px}
p.kill{background:#ffebe9;border:1px solid #cf222e;border-radius:6px;padding:8px 12px;color:#cf222e;font-weight:600}
div.bar{margin:8px 24px;color:#57606a;font-size:13px}
form.date{display:inline;margin-left:8px}
form.date input,form.date button{font-size:12px}
main form.login{display:flex;gap:8px;align-items:center}
";

fn nav() -> String {
    "<nav id=\"nav\"><a href=\"/\">Today</a><a href=\"/history\">History</a><a href=\"/tearsheet\">Backtests</a>\
     <span>JSON: <a href=\"/api/status\">status</a><a href=\"/api/positions\">positions</a></span></nav>"
        .to_string()
}

/// A whole page: the dashboard's look, the font, the navigation.
fn page(title: &str, refresh: Option<String>, body: &str) -> String {
    let mut o = String::with_capacity(body.len() + 64 * 1024);
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
    );
    if let Some(n) = refresh {
        let _ = write!(
            o,
            "<meta http-equiv=\"refresh\" content=\"{}\">",
            escape(&n)
        );
    }
    let _ = write!(
        o,
        "<link rel=\"icon\" href=\"data:,\"><title>{}</title><style>{}{}{CSS}</style></head><body>",
        escape(title),
        crate::report::font::font_face_css(),
        dashboard::CSS
    );
    o.push_str(&nav());
    o.push_str(body);
    let _ = write!(
        o,
        "<footer>optdesk {} — read-only: nothing on these pages changes the desk</footer></body></html>",
        crate::VERSION
    );
    o
}

/// A page made elsewhere (the daily dashboard, a tearsheet) with the navigation and a
/// line above its content.
fn wrap(html: &str, line: &str) -> String {
    let head = format!("<link rel=\"icon\" href=\"data:,\"><style>{CSS}</style></head><body>");
    let bar = format!("{}<div class=\"bar\" id=\"taken-at\">{line}</div>", nav());
    html.replacen("</head><body>", &format!("{head}{bar}"), 1)
}

/// A short page with a title and an HTML body.
pub(super) fn simple(title: &str, body_html: &str) -> String {
    page(
        title,
        None,
        &format!(
            "<header><h1>{}</h1></header><main><section id=\"message\">{body_html}</section></main>",
            escape(title)
        ),
    )
}

/// An error page: what went wrong, readably.
pub(super) fn error(status: u16, title: &str, why: &str) -> Reply {
    Reply::html(status, simple(title, &format!("<p>{}</p>", escape(why))))
}

/// The store cannot be read now: a job has it (503, try again) or it failed.
fn unavailable(u: &Unavailable) -> Reply {
    match u {
        Unavailable::Busy(why) => Reply::html(
            503,
            page(
                "optdesk — the store is busy",
                Some(RETRY_AFTER_SECS.to_string()),
                &format!(
                    "<header><h1>The store is busy</h1></header><main><section id=\"message\"><p>{}. This page tries again in {RETRY_AFTER_SECS} s.</p></section></main>",
                    escape(why)
                ),
            ),
        )
        .with("Retry-After", RETRY_AFTER_SECS.to_string()),
        Unavailable::Failed(why) => error(500, "The store cannot be read", why),
    }
}

/// The login form (GET /login, and a wrong token).
pub(super) fn login(has_token: bool, message: Option<&str>, status: u16) -> Reply {
    if !has_token {
        return Reply::html(
            status,
            simple(
                "No sign-in needed",
                "<p>This dashboard has no token set (it listens on loopback only). <a href=\"/\">Open the desk</a>.</p>",
            ),
        );
    }
    let msg = message
        .map(|m| format!("<p id=\"login-message\">{}</p>", escape(m)))
        .unwrap_or_default();
    Reply::html(
        status,
        simple(
            "Sign in",
            &format!(
                "{msg}<form class=\"login\" method=\"post\" action=\"/login\">\
                 <label for=\"token\">Dashboard token</label>\
                 <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
                 <button type=\"submit\">Sign in</button></form>\
                 <p class=\"note\">The token is OPTDESK_DASHBOARD_TOKEN of the machine that serves this page. Scripts send it as <code>Authorization: Bearer …</code>.</p>"
            ),
        ),
    )
}

fn ny_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::America::New_York)
        .format("%H:%M:%S")
        .to_string()
}

/// "data taken at" for a read at `t`.
fn taken_line(t: DateTime<Utc>) -> String {
    format!(
        "data taken at {} UTC ({} New York)",
        t.format("%Y-%m-%d %H:%M:%S"),
        ny_time(t)
    )
}

/// `/`: the live desk.
/// `reloads`: reload at most that many times, then stop (tests, and screens that should
/// not reload forever).
pub(super) fn today(state: &mut State, refresh: Option<u64>, reloads: Option<u64>) -> Reply {
    let now = state.now_ny();
    let auto = state.auto_refresh(now);
    match state.load_today() {
        Ok(t) => {
            let html = render_today(state, &t, None, (refresh.unwrap_or(auto), reloads), now);
            state.last_today = Some(t);
            Reply::html(200, html)
        }
        Err(Unavailable::Busy(why)) => match &state.last_today {
            Some(t) => {
                // Ask again soon: the job will be done in a moment.
                let secs = RETRY_AFTER_SECS.min(refresh.unwrap_or(auto));
                let mut reply = Reply::html(
                    200,
                    render_today(state, t, Some(&why), (secs, reloads), now),
                );
                reply.headers.push((
                    STALE_HEADER,
                    "the last page read: a job has the store".into(),
                ));
                reply
            }
            None => unavailable(&Unavailable::Busy(why)),
        },
        Err(u) => unavailable(&u),
    }
}

fn kpis(o: &mut String, d: Option<&ReportData>) {
    o.push_str("<div class=\"kpis\" id=\"kpis\">");
    let kpi = |o: &mut String, v: String, l: &str| {
        let _ = write!(
            o,
            "<div class=\"kpi\"><b>{}</b><span>{}</span></div>",
            escape(&v),
            escape(l)
        );
    };
    match d.and_then(|d| d.portfolio.as_ref()) {
        Some(p) => {
            kpi(o, format!("${}", money(p.equity)), "equity");
            kpi(
                o,
                format!(
                    "{} ({})",
                    p.day_pnl.map(signed_money).unwrap_or_else(|| "n/a".into()),
                    pct(p.day_return)
                ),
                "P&L today",
            );
            kpi(
                o,
                pct(Some(p.total_return)),
                &format!("since {}", p.start_date),
            );
            kpi(o, p.open_positions.to_string(), "open positions");
            kpi(
                o,
                p.quote_time.format("%H:%M").to_string(),
                "marks as of (New York)",
            );
        }
        None => kpi(o, "—".into(), "no portfolio snapshot for this session yet"),
    }
    o.push_str("</div>");
}

fn render_today(
    state: &State,
    t: &Today,
    busy: Option<&str>,
    (refresh, reloads): (u64, Option<u64>),
    now: DateTime<Tz>,
) -> String {
    let mut o = String::with_capacity(128 * 1024);
    let session = match t.session {
        Some(s) => format!("session {s}"),
        None => "no session run yet".into(),
    };
    let _ = write!(
        o,
        "<header><h1>optdesk — the desk, {}</h1><div class=\"sub\" id=\"taken-at\" data-taken-at=\"{}\"{}>{} · {} · {}</div>",
        escape(&session),
        t.taken_at.format("%Y-%m-%dT%H:%M:%SZ"),
        match reloads {
            Some(n) => format!(" data-reloads-left=\"{n}\""),
            None => String::new(),
        },
        escape(&session),
        escape(&taken_line(t.taken_at)),
        if reloads == Some(0) {
            "this page does not reload itself (reloads=0)".to_string()
        } else {
            format!("this page reloads itself every {refresh} s")
        }
    );
    kpis(&mut o, t.data.as_ref());
    o.push_str("</header><main>");
    if let Some(why) = busy {
        let _ = write!(
            o,
            "<p class=\"busy\" id=\"busy\">{}: this page shows the {}; it reloads in {refresh} s.</p>",
            escape(why),
            escape(&taken_line(t.taken_at))
        );
    }
    let warnings = state.warnings(t, now);
    if !warnings.is_empty() {
        o.push_str("<div id=\"warnings\">");
        for w in &warnings {
            let _ = write!(o, "<p class=\"kill\">{}</p>", escape(w));
        }
        o.push_str("</div>");
    }
    if state.kill_switch_on() {
        o.push_str("<p class=\"kill\" id=\"kill-switch\">The kill switch is ON: select_trades opens no new positions (`optdesk kill off` resumes).</p>");
    }
    let empty;
    let d = match &t.data {
        Some(d) => d,
        None => {
            empty = ReportData::empty(now.date_naive(), state.risk_free_rate);
            sentence(
                &mut o,
                "The store has no run yet: the daemon's first firing (or `optdesk run daily`) fills this page.",
            );
            &empty
        }
    };
    if let Some(n) = d.portfolio.as_ref().and_then(|p| p.note.as_ref()) {
        let _ = write!(o, "<p class=\"note\">Note: {}</p>", escape(n));
    }

    o.push_str("<div class=\"grid\">");
    dashboard::equity_and_drawdown(
        &mut o,
        d,
        "No benchmark history yet: the benchmarks start with the first portfolio snapshot.",
        "",
    );
    o.push_str("</div>");

    // P&L by strategy: since the start, and on the session.
    section(&mut o, "strategy-pnl", "P&L by strategy");
    let bars: Vec<(String, f64)> = d
        .strategy_pnl
        .iter()
        .filter_map(|(s, c)| c.last().map(|p| (s.clone(), p.value)))
        .collect();
    if bars.is_empty() {
        sentence(&mut o, "No strategy has traded yet.");
    } else {
        o.push_str(&svg::bar_chart(
            "strategy-pnl-chart",
            "P&L by strategy",
            &bars,
            1100,
            (40 * bars.len() as u32 + 120).max(220),
            YFormat::Money,
        ));
        let rows: Vec<Vec<(String, String)>> = d
            .strategy_pnl
            .iter()
            .filter_map(|(s, c)| {
                let last = c.last()?;
                let today = if last.date == d.as_of {
                    let prev = if c.len() >= 2 {
                        c[c.len() - 2].value
                    } else {
                        0.0
                    };
                    signed_money(last.value - prev)
                } else {
                    "no snapshot".into()
                };
                let r = |s: String| (s, "text-align:right;".to_string());
                Some(vec![
                    (s.clone(), String::new()),
                    r(signed_money(last.value)),
                    r(today),
                ])
            })
            .collect();
        o.push_str(&table(
            &["Strategy", "P&L since start", "P&L this session"],
            &rows,
        ));
    }
    o.push_str("</section>");

    section(
        &mut o,
        "volatility",
        "Volatility: IV rank and the expected move against today's range",
    );
    if t.vol.is_empty() {
        sentence(&mut o, "No volatility snapshot this session.");
    } else {
        let r = |s: String| (s, "text-align:right;".to_string());
        let opt =
            |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map(f).unwrap_or_else(|| "—".into());
        let rows: Vec<Vec<(String, String)>> = t
            .vol
            .iter()
            .map(|v| {
                let ratio = v.range_over_move();
                let style = match ratio {
                    Some(x) if x >= 1.25 => "text-align:right;color:#cf222e;font-weight:600;",
                    _ => "text-align:right;",
                };
                vec![
                    (v.symbol.clone(), String::new()),
                    (v.at.format("%H:%M").to_string(), String::new()),
                    r(money(v.spot)),
                    r(opt(v.atm_iv_30d, &|x| format!("{:.1}%", x * 100.0))),
                    r(opt(v.iv_rank, &|x| format!("{:.0}", x * 100.0))),
                    r(opt(v.hv_10, &|x| format!("{:.1}%", x * 100.0))),
                    r(opt(v.expected_move, &money)),
                    r(opt(v.range, &money)),
                    (opt(ratio, &|x| format!("{x:.2}×")), style.into()),
                ]
            })
            .collect();
        o.push_str(&table(
            &[
                "Symbol",
                "At",
                "Spot",
                "ATM IV 30d",
                "IV rank",
                "HV 10d",
                "Expected move (1 day)",
                "Range today",
                "Range / move",
            ],
            &rows,
        ));
        sentence(
            &mut o,
            "The range is today's high − low in the minute bars before the snapshot (— without them). The volatility kill switch halts a strategy's entries once it passes its vol_move_multiple (1.25 by default), marked in red.",
        );
    }
    o.push_str("</section>");

    section(&mut o, "positions", "Open positions (marks and greeks)");
    if d.positions.is_empty() {
        sentence(&mut o, "No positions are open.");
    } else {
        o.push_str(&table(POSITION_HEAD, &position_rows(d, usize::MAX)));
    }
    o.push_str("</section>");

    section(&mut o, "signals", "Signals this session");
    if d.signals.is_empty() {
        sentence(&mut o, "No strategy produced a signal this session.");
    } else {
        o.push_str(&table(SIGNAL_HEAD, &signal_rows(d)));
    }
    o.push_str("</section>");

    section(&mut o, "trades", "Trades this session");
    if d.fills_today.is_empty() {
        sentence(&mut o, "No trades this session.");
    } else {
        o.push_str(&table(FILL_HEAD, &fill_rows(&d.fills_today, false)));
    }
    o.push_str("</section>");

    section(
        &mut o,
        "refusals",
        "Risk refusals this session, with their reasons",
    );
    if d.refusals.is_empty() {
        sentence(&mut o, "No order was refused this session.");
    } else {
        o.push_str(&table(REFUSAL_HEAD, &refusal_rows(d)));
    }
    o.push_str("</section>");

    section(&mut o, "jobs", "Jobs of the session (latest first)");
    if t.runs.is_empty() {
        sentence(&mut o, "No job has run for this session.");
    } else {
        let rows: Vec<Vec<(String, String)>> = t
            .runs
            .iter()
            .take(SHOWN_RUNS)
            .map(|r| {
                let style = match r.status.as_str() {
                    "failed" => "color:#cf222e;font-weight:600;",
                    "skipped" => "color:#9a6700;",
                    _ => "color:#1a7f37;",
                };
                vec![
                    (r.run_id.to_string(), String::new()),
                    (
                        match &r.slot {
                            Some(s) => format!("{} ({s})", r.job),
                            None => r.job.clone(),
                        },
                        String::new(),
                    ),
                    (r.status.clone(), style.into()),
                    (r.trigger.clone(), String::new()),
                    (
                        format!(
                            "{} → {}",
                            r.started_at.format("%H:%M:%S"),
                            r.finished_at.format("%H:%M:%S")
                        ),
                        "white-space:nowrap;".into(),
                    ),
                    (r.rows.to_string(), "text-align:right;".into()),
                    (r.message.clone(), String::new()),
                ]
            })
            .collect();
        o.push_str(&table(
            &["Run", "Job", "Status", "Trigger", "UTC", "Rows", "Outcome"],
            &rows,
        ));
        if t.runs.len() > SHOWN_RUNS {
            sentence(
                &mut o,
                &format!(
                    "… and {} earlier runs of the session: /api/status lists them all, and `optdesk sql \"SELECT * FROM job_runs WHERE as_of = '{}'\"`.",
                    t.runs.len() - SHOWN_RUNS,
                    t.session.map(|d| d.to_string()).unwrap_or_default()
                ),
            );
        }
    }
    o.push_str("</section>");

    section(&mut o, "next-firings", "Next firings (New York)");
    let firings = crate::schedule::plan(&state.entries, now, 14);
    if firings.is_empty() {
        sentence(&mut o, "No firing in the next 14 days.");
    } else {
        let rows: Vec<Vec<(String, String)>> = firings
            .iter()
            .take(8)
            .map(|f| {
                let e = &state.entries[f.entry];
                vec![
                    (f.at.format("%a %Y-%m-%d %H:%M").to_string(), String::new()),
                    (e.target.to_string(), String::new()),
                    (e.spec.to_string(), String::new()),
                ]
            })
            .collect();
        o.push_str(&table(&["When", "What", "Schedule"], &rows));
    }
    o.push_str("</section></main>");
    let meta = match reloads {
        None => Some(refresh.to_string()),
        Some(0) => None,
        Some(n) => Some(format!(
            "{refresh}; url=/?refresh={refresh}&reloads={}",
            n - 1
        )),
    };
    page(&format!("optdesk — {session}"), meta, &o)
}

/// `/history?date=YYYY-MM-DD`: the daily dashboard of any stored day.
pub(super) fn history(state: &mut State, date: Option<&str>) -> Reply {
    let today = state.now_ny().date_naive();
    let day = match date.filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match parse_session(s) {
            Ok(d) => Some(d),
            Err((status, why)) => return error(status, "No such day", &why),
        },
    };
    let rfr = state.risk_free_rate;
    let read = state.read(|store| {
        let day = match day {
            Some(d) => d,
            None => match latest_session(store, today)? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        report_of(store, day, rfr).map(Some)
    });
    match read {
        Ok((None, _)) => error(
            404,
            "Nothing yet",
            "The store has no run yet: `optdesk run daily` (or the daemon's first firing) fills it.",
        ),
        Ok((Some(d), taken)) => {
            let line = format!(
                "The dashboard of {} · {} · <form class=\"date\" method=\"get\" action=\"/history\"><label>another day <input type=\"date\" name=\"date\" value=\"{}\"></label> <button type=\"submit\">Show</button></form>",
                d.as_of,
                escape(&taken_line(taken)),
                d.as_of
            );
            Reply::html(200, wrap(&dashboard::render(&d), &line))
        }
        Err(u) => unavailable(&u),
    }
}

/// A date from a request: a valid date (400 otherwise) that is an NYSE session (404
/// with the reason otherwise).
pub(super) fn parse_session(s: &str) -> Result<NaiveDate, (u16, String)> {
    let shown: String = s.chars().take(40).collect();
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        (
            400,
            format!("'{shown}' is not a date: expected YYYY-MM-DD, e.g. 2025-03-14"),
        )
    })?;
    match crate::calendar::closed_reason(d) {
        Ok(None) => Ok(d),
        Ok(Some(why)) => Err((404, format!("no session: {why}"))),
        Err(e) => Err((400, e.to_string())),
    }
}

/// `/tearsheet`: the backtests in the catalogue, each linking to its tearsheet.
pub(super) fn tearsheets(state: &mut State) -> Reply {
    type Row = (
        String,
        NaiveDate,
        NaiveDate,
        String,
        i32,
        i32,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    );
    let read = state.read(|store| {
        let mut s = store
            .conn
            .prepare(
                "SELECT name, from_date, to_date, status, sessions_done, sessions_total, total_return, sharpe, max_drawdown
                 FROM backtests ORDER BY coalesce(finished_at, started_at) DESC, name",
            )
            .map_err(|e| format!("cannot read the backtests: {e}"))?;
        let rows: Vec<Row> = s
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read the backtests: {e}"))?;
        Ok(rows)
    });
    let (rows, taken) = match read {
        Ok(x) => x,
        Err(u) => return unavailable(&u),
    };
    let mut o = format!(
        "<header><h1>Backtests</h1><div class=\"sub\" id=\"taken-at\">{}</div></header><main>",
        escape(&taken_line(taken))
    );
    section(&mut o, "backtests", "Backtests in the catalogue");
    if rows.is_empty() {
        sentence(
            &mut o,
            "No backtest yet: `optdesk backtest --from D --to D --name NAME` runs one.",
        );
    } else {
        o.push_str("<table><tr><th>Name</th><th>From</th><th>To</th><th>Status</th><th>Sessions</th><th>Total return</th><th>Sharpe</th><th>Max drawdown</th></tr>");
        for (name, from, to, status, done, total, ret, sharpe, dd) in &rows {
            let _ = write!(
                o,
                "<tr><td><a href=\"/tearsheet/{}\">{}</a></td><td>{from}</td><td>{to}</td><td>{}</td><td>{done}/{total}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(name),
                escape(name),
                escape(status),
                pct(*ret),
                crate::report::ratio(*sharpe),
                pct(*dd)
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section></main>");
    Reply::html(200, page("optdesk — backtests", None, &o))
}

/// `/tearsheet/{name}`: a backtest's tearsheet, read from its own store.
pub(super) fn tearsheet(state: &mut State, name: &str) -> Reply {
    let shown: String = name.chars().take(100).collect();
    if crate::backtest::check_name(name).is_err() {
        return error(
            404,
            "No such backtest",
            &format!("There is no backtest named '{shown}' (see /tearsheet for the list)."),
        );
    }
    let path = crate::backtest::stores_dir(&state.db).join(format!("{name}.duckdb"));
    if !path.exists() {
        return error(
            404,
            "No such backtest",
            &format!("There is no backtest named '{shown}' (see /tearsheet for the list)."),
        );
    }
    match state.read_at(&path, |store| {
        crate::report::tearsheet::load(store).map_err(|e| e.to_string())
    }) {
        Ok((t, taken)) => Reply::html(
            200,
            wrap(
                &crate::report::tearsheet::render(&t),
                &escape(&taken_line(taken)),
            ),
        ),
        Err(u) => unavailable(&u),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TimeSpec;
    use crate::schedule::{Entry, Target};

    fn state_with(entries: Vec<Entry>) -> State {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
        State {
            db: std::path::PathBuf::from("unused.duckdb"),
            config: crate::config::Config::load(&dir, true).unwrap(),
            pretend: None,
            token: None,
            mode: super::super::Mode::Standalone,
            entries,
            risk_free_rate: 0.04,
            last_today: None,
        }
    }

    #[test]
    fn the_page_reloads_at_the_slot_spacing_in_the_session_and_slower_outside() {
        let s = state_with(vec![
            Entry {
                target: Target::Daily,
                spec: TimeSpec::parse("open+5m").unwrap(),
            },
            Entry {
                target: Target::Job("fetch_chains".into()),
                spec: TimeSpec::parse("every 15m from 10:30 to 13:30").unwrap(),
            },
        ]);
        let at = |d: &str, t: &str| crate::clock::parse_ny_datetime(&format!("{d}T{t}")).unwrap();
        for (d, t, want, why) in [
            ("2025-03-14", "11:00", 900, "the slots' spacing"),
            ("2025-03-14", "11:14", 90, "just after the next slot"),
            (
                "2025-03-14",
                "14:00",
                900,
                "no slot left: the spacing still",
            ),
            (
                "2025-03-14",
                "09:20",
                960,
                "before the open: just after the daily run",
            ),
            ("2025-03-15", "12:00", 1800, "a Saturday"),
            ("2025-03-14", "20:00", 1800, "the evening"),
        ] {
            assert_eq!(s.auto_refresh(at(d, t)), want, "{d} {t}: {why}");
        }
    }

    #[test]
    fn a_requested_date_is_a_valid_session_or_says_why_not() {
        let ok = NaiveDate::from_ymd_opt(2025, 3, 14).unwrap();
        assert_eq!(parse_session("2025-03-14"), Ok(ok));
        for (raw, status, says) in [
            ("2024-13-45", 400, "'2024-13-45' is not a date"),
            ("soon", 400, "expected YYYY-MM-DD"),
            ("2025-03-16", 404, "no session: 2025-03-16"),
            ("2025-12-25", 404, "holiday"),
            ("1900-01-02", 400, ""),
        ] {
            match parse_session(raw) {
                Err((s, why)) => {
                    assert_eq!(s, status, "{raw}: {why}");
                    assert!(why.contains(says), "{raw}: {why}");
                }
                Ok(d) => panic!("{raw} accepted as {d}"),
            }
        }
    }
}
