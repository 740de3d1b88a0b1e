//! The HTML dashboard: one self-contained file (inline CSS, inline SVG charts, no
//! scripts, nothing fetched) with the report's content and more charts.

use super::chart::{Series, YFormat};
use super::email::{
    drawdown_sentence, fill_rows, has_metrics, job_rows, metrics_rows, position_rows, refusal_rows,
    signal_rows, table, trade_rows, FILL_HEAD, METRICS_HEAD, POSITION_HEAD, REFUSAL_HEAD,
    SIGNAL_HEAD, TRADES_HEAD,
};
use super::svg::{self, escape};
use super::{money, num, pct, signed_money, ReportData};
use crate::analytics::performance::{self, Point};
use std::fmt::Write as _;

/// Colors: the portfolio first, then the benchmarks and strategies.
pub const PALETTE: &[[u8; 3]] = &[
    [9, 105, 218],
    [207, 34, 46],
    [26, 127, 55],
    [154, 103, 0],
    [130, 80, 223],
    [191, 57, 137],
    [27, 124, 131],
    [87, 96, 106],
];

pub(crate) fn color(i: usize) -> [u8; 3] {
    PALETTE[i % PALETTE.len()]
}

/// Portfolio and benchmark total returns since the start, as chart series.
pub fn equity_series(d: &ReportData) -> Vec<Series> {
    let mut out = Vec::new();
    let rel = |c: &[Point]| -> Vec<(chrono::NaiveDate, f64)> {
        match c.first() {
            Some(f) if f.value > 0.0 => c
                .iter()
                .map(|p| (p.date, p.value / f.value - 1.0))
                .collect(),
            _ => Vec::new(),
        }
    };
    if !d.equity.is_empty() {
        // The portfolio's return is on its deposits, not its first snapshot.
        let base = d
            .portfolio
            .as_ref()
            .map(|p| p.start_equity)
            .filter(|b| *b > 0.0);
        let pts: Vec<(chrono::NaiveDate, f64)> = match base {
            Some(b) => d
                .equity
                .iter()
                .map(|p| (p.date, p.value / b - 1.0))
                .collect(),
            None => rel(&d.equity),
        };
        out.push(Series {
            name: "Portfolio".into(),
            color: color(0),
            points: pts,
        });
    }
    for (i, (sym, c)) in d.benchmarks.iter().enumerate() {
        out.push(Series {
            name: sym.clone(),
            color: color(i + 1),
            points: rel(c),
        });
    }
    out
}

pub(crate) fn section(o: &mut String, id: &str, title: &str) {
    let _ = write!(o, "<section id=\"{id}\"><h2>{}</h2>", escape(title));
}

pub(crate) fn sentence(o: &mut String, s: &str) {
    let _ = write!(o, "<p class=\"empty\">{}</p>", escape(s));
}

pub(crate) const CSS: &str = "
body{margin:0;background:#f6f8fa;color:#24292f;font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif}
header{background:#24292f;color:#fff;padding:16px 24px}
header h1{margin:0;font-size:20px}
header .kpis{display:flex;flex-wrap:wrap;gap:24px;margin-top:10px}
header .kpi b{display:block;font-size:22px}
header .kpi span{font-size:12px;color:#d0d7de}
main{max-width:1200px;margin:0 auto;padding:16px 24px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 16px;margin:16px 0;overflow-x:auto}
section h2{font-size:16px;margin:0 0 8px 0}
section h3{font-size:14px;margin:16px 0 6px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}
.grid section{margin:0}
svg.chart{width:100%;height:auto;display:block}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;color:#57606a;border-bottom:2px solid #d0d7de;padding:4px 8px;white-space:nowrap}
td{border-bottom:1px solid #eaeef2;padding:4px 8px}
p.empty,p.note{color:#57606a;font-size:13px}
footer{color:#57606a;font-size:12px;text-align:center;padding:16px}
";

/// The dashboard as one HTML document.
/// The equity-against-benchmarks and drawdown sections (the dashboard's and the
/// tearsheet's): `no_benchmarks` is said when there is no benchmark history, and
/// `after_drawdown` (HTML) follows the drawdown chart.
pub(crate) fn equity_and_drawdown(
    o: &mut String,
    d: &ReportData,
    no_benchmarks: &str,
    after_drawdown: &str,
) {
    section(o, "equity", "Equity vs. benchmarks (total return)");
    o.push_str(&svg::line_chart(
        "equity-chart",
        "Equity vs. benchmarks",
        &equity_series(d),
        640,
        320,
        YFormat::Percent,
    ));
    if d.benchmarks.is_empty() {
        sentence(o, no_benchmarks);
    }
    o.push_str("</section>");
    section(o, "drawdown", "Drawdown");
    let dd = Series {
        name: "Portfolio drawdown".into(),
        color: color(1),
        points: performance::drawdown_series(&d.equity)
            .iter()
            .map(|p| (p.date, p.value))
            .collect(),
    };
    o.push_str(&svg::area_chart(
        "drawdown-chart",
        "Drawdown",
        &dd,
        640,
        320,
        YFormat::Percent,
    ));
    o.push_str(after_drawdown);
    o.push_str("</section>");
}

pub fn render(d: &ReportData) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>optdesk dashboard — {}</title><style>{}{CSS}</style></head><body>",
        d.as_of,
        super::font::font_face_css()
    );
    // Header
    let _ = write!(
        o,
        "<header><h1>optdesk — {}</h1><div class=\"kpis\">",
        d.as_of
    );
    match &d.portfolio {
        Some(p) => {
            let kpi = |o: &mut String, v: String, l: &str| {
                let _ = write!(
                    o,
                    "<div class=\"kpi\"><b>{}</b><span>{}</span></div>",
                    escape(&v),
                    escape(l)
                );
            };
            kpi(&mut o, format!("${}", money(p.equity)), "equity");
            kpi(
                &mut o,
                format!(
                    "{} ({})",
                    p.day_pnl.map(signed_money).unwrap_or_else(|| "n/a".into()),
                    pct(p.day_return)
                ),
                "today",
            );
            kpi(
                &mut o,
                pct(Some(p.total_return)),
                &format!("since {}", p.start_date),
            );
            kpi(&mut o, pct(p.alpha_vs_spy), "excess return over SPY");
            kpi(&mut o, p.open_positions.to_string(), "open positions");
        }
        None => {
            let _ = write!(
                o,
                "<div class=\"kpi\"><span>No portfolio snapshot for this day yet.</span></div>"
            );
        }
    }
    o.push_str("</div></header><main>");
    if let Some(n) = d.portfolio.as_ref().and_then(|p| p.note.as_ref()) {
        let _ = write!(o, "<p class=\"note\">Note: {}</p>", escape(n));
    }

    // Equity vs. benchmarks, drawdown.
    o.push_str("<div class=\"grid\">");
    equity_and_drawdown(
        &mut o,
        d,
        "No benchmark history yet: the benchmarks start with the first portfolio snapshot.",
        "",
    );
    o.push_str("</div>");

    // P&L by strategy.
    o.push_str("<div class=\"grid\">");
    section(&mut o, "strategy-pnl", "P&L by strategy");
    let bars: Vec<(String, f64)> = d
        .strategy_pnl
        .iter()
        .filter_map(|(s, c)| c.last().map(|p| (s.clone(), p.value)))
        .collect();
    o.push_str(&svg::bar_chart(
        "strategy-pnl-chart",
        "P&L by strategy",
        &bars,
        640,
        320,
        YFormat::Money,
    ));
    if bars.is_empty() {
        sentence(&mut o, "No strategy has traded yet.");
    }
    o.push_str("</section>");
    section(&mut o, "strategy-pnl-history", "Strategy P&L over time");
    let lines: Vec<Series> = d
        .strategy_pnl
        .iter()
        .enumerate()
        .map(|(i, (s, c))| Series {
            name: s.clone(),
            color: color(i + 2),
            points: c.iter().map(|p| (p.date, p.value)).collect(),
        })
        .collect();
    o.push_str(&svg::line_chart(
        "strategy-pnl-history-chart",
        "Strategy P&L",
        &lines,
        640,
        320,
        YFormat::Money,
    ));
    o.push_str("</section></div>");

    // Metrics.
    section(&mut o, "metrics", "Performance");
    let _ = write!(
        o,
        "<p class=\"note\">Risk-free rate {:.2}%; alpha (annualized) and beta against SPY; win rate, profit factor and average win/loss over closed trades.</p>",
        d.risk_free_rate * 100.0
    );
    if has_metrics(&d.metrics) {
        o.push_str(&table(METRICS_HEAD, &metrics_rows(&d.metrics)));
        if let Some(dd) = drawdown_sentence(&d.metrics) {
            sentence(&mut o, &dd);
        }
        o.push_str(&table(TRADES_HEAD, &trade_rows(&d.metrics)));
    } else {
        sentence(
            &mut o,
            "Not enough history yet: the metrics need at least two sessions.",
        );
    }
    o.push_str("</section>");

    // Positions.
    section(&mut o, "positions", "Open positions");
    if d.positions.is_empty() {
        sentence(&mut o, "No positions are open.");
    } else {
        o.push_str(&table(POSITION_HEAD, &position_rows(d, usize::MAX)));
    }
    o.push_str("</section>");

    // Trades.
    section(&mut o, "trades", "Recent trades");
    if d.recent_fills.is_empty() {
        sentence(&mut o, "No trades yet.");
    } else {
        let mut head = vec!["Date"];
        head.extend_from_slice(FILL_HEAD);
        o.push_str(&table(&head, &fill_rows(&d.recent_fills, true)));
    }
    o.push_str("</section>");

    // Universe.
    section(
        &mut o,
        "universe",
        "Universe: IV rank, IV − HV, expected vs. realized move",
    );
    if d.universe.is_empty() {
        sentence(
            &mut o,
            "No volatility metrics for this day (compute_vol has not run).",
        );
    } else {
        let rows: Vec<Vec<(String, String)>> = d
            .universe
            .iter()
            .map(|u| {
                let r = |s: String| (s, "text-align:right;".to_string());
                vec![
                    (u.symbol.clone(), String::new()),
                    r(format!("{:.2}", u.spot)),
                    r(u.atm_iv_30d
                        .map(|v| format!("{:.1}%", v * 100.0))
                        .unwrap_or_else(|| "n/a".into())),
                    r(u.hv_30
                        .map(|v| format!("{:.1}%", v * 100.0))
                        .unwrap_or_else(|| "n/a".into())),
                    r(u.iv_rank
                        .map(|v| format!("{:.0}", v * 100.0))
                        .unwrap_or_else(|| "n/a".into())),
                    r(u.iv_hv
                        .map(|v| format!("{:+.1} pts", v * 100.0))
                        .unwrap_or_else(|| "n/a".into())),
                    r(match (u.expected_move, u.expected_days) {
                        (Some(m), Some(days)) => format!("±{m:.2} ({days}d)"),
                        _ => "n/a".into(),
                    }),
                    r(match u.last_check {
                        Some((made, exp, e, real)) => format!(
                            "±{e:.2} vs {real:.2} ({made} → {exp}{})",
                            if real > e { ", exceeded" } else { "" }
                        ),
                        None => "no expiry checked yet".into(),
                    }),
                ]
            })
            .collect();
        o.push_str(&table(
            &[
                "Symbol",
                "Spot",
                "ATM IV 30d",
                "HV 30",
                "IV rank",
                "IV − HV",
                "Expected move",
                "Last expiry: expected vs. realized",
            ],
            &rows,
        ));
        let bars: Vec<(String, f64)> = d
            .universe
            .iter()
            .filter_map(|u| u.iv_hv.map(|v| (u.symbol.clone(), v)))
            .collect();
        // One readable row per symbol (the chart turns horizontal for many bars).
        let height = (18 * bars.len() as u32 + 80).max(300);
        o.push_str(&svg::bar_chart(
            "iv-hv-chart",
            "IV − HV (30d)",
            &bars,
            1100,
            height,
            YFormat::Percent,
        ));
    }
    o.push_str("</section>");

    // Correlation.
    o.push_str("<div class=\"grid\">");
    let idx = d
        .correlation_index
        .clone()
        .unwrap_or_else(|| "index".into());
    section(
        &mut o,
        "correlation",
        &format!("Implied correlation ({idx})"),
    );
    let corr = [
        Series {
            name: "implied".into(),
            color: color(0),
            points: d
                .correlation
                .iter()
                .filter_map(|c| c.implied.map(|v| (c.date, v)))
                .collect(),
        },
        Series {
            name: "realized".into(),
            color: color(3),
            points: d
                .correlation
                .iter()
                .filter_map(|c| c.realized.map(|v| (c.date, v)))
                .collect(),
        },
    ];
    o.push_str(&svg::line_chart(
        "correlation-chart",
        "Implied and realized correlation",
        &corr,
        640,
        300,
        YFormat::Number,
    ));
    if d.correlation.is_empty() {
        sentence(
            &mut o,
            "No correlation history (the correlation job has not run).",
        );
    }
    o.push_str("</section>");
    section(&mut o, "zscore", "Implied correlation Z-score");
    let z = [Series {
        name: "Z-score".into(),
        color: color(4),
        points: d
            .correlation
            .iter()
            .filter_map(|c| c.zscore.map(|v| (c.date, v)))
            .collect(),
    }];
    o.push_str(&svg::line_chart(
        "zscore-chart",
        "Z-score",
        &z,
        640,
        300,
        YFormat::Number,
    ));
    if let Some(last) = d.correlation.last() {
        let _ = write!(
            o,
            "<p class=\"note\">{}: implied {}, realized {}, Z-score {}.</p>",
            last.date,
            num(last.implied, 3),
            num(last.realized, 3),
            num(last.zscore, 2)
        );
    }
    o.push_str("</section></div>");

    // Signals, refusals, jobs.
    section(&mut o, "signals", "Signals and risk refusals today");
    if d.signals.is_empty() {
        sentence(&mut o, "No strategy produced a signal today.");
    } else {
        o.push_str(&table(SIGNAL_HEAD, &signal_rows(d)));
    }
    o.push_str("<h3>Risk refusals</h3>");
    if d.refusals.is_empty() {
        sentence(&mut o, "No order was refused today.");
    } else {
        o.push_str(&table(REFUSAL_HEAD, &refusal_rows(d)));
    }
    o.push_str("</section>");
    section(&mut o, "jobs", "Jobs today");
    if d.jobs.is_empty() {
        sentence(&mut o, "No job has run for this day.");
    } else {
        o.push_str(&table(&["Job", "Status", "Outcome"], &job_rows(d)));
    }
    o.push_str("</section>");
    let _ = write!(
        o,
        "</main><footer>optdesk {} — regenerate with <code>optdesk report --as-of {}</code></footer></body></html>",
        crate::VERSION,
        d.as_of
    );
    o
}
