//! Inline SVG charts for the self-contained HTML dashboard.
//!
//! Each function returns one `<svg>` element as a string, ready to paste into
//! HTML: no scripts, no external fonts (text is set in DejaVu Sans, which the
//! page embeds with [`font::font_face_css`] and whose metrics lay it out here),
//! a white background, tooltips through `<title>` children, and stable class
//! names (`chart`, `line-chart`, `area-chart`, `bar-chart`, `series`, `area`,
//! `bar`, `grid`, `tick`, `legend`, `empty`) so the page's CSS can restyle it.
//! All text is escaped and every number is written with limited precision.
//!
//! Ticks, value and date formatting come from [`super::chart`], so the email
//! PNG and the dashboard label things the same way.

use std::fmt::Write as _;

use super::chart::{
    clean_points, clean_series, date_ticks, day_number, fmt_num, fmt_plain, format_date,
    format_tick, format_value, hex, legend_flow, tick_target, unit, value_axis, Axis, Extent,
    Points, Scale, Series, YFormat, NO_DATA,
};
use super::font::{self, Weight};

/// `write!` into a `String`, which cannot fail.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {
        let _ = write!($out, $($arg)*);
    };
}

/// Label font size, px.
const FONT: f64 = 12.0;
/// Title font size, px.
const TITLE_FONT: f64 = 14.0;
/// Typical advance of one character of a date label at [`FONT`] in DejaVu
/// Sans (digits are 0.64 em), for spacing the date ticks.
const CHAR_W: f64 = 7.6;
const MARGIN: f64 = 12.0;
const INK: &str = "#1f2328";
const MUTED: &str = "#57606a";
const GRID: &str = "#e6e8eb";
const AXIS: &str = "#8c959f";
const POSITIVE: &str = "#1a7f37";
const NEGATIVE: &str = "#cf222e";

/// Escapes text for XML/HTML content and attribute values: `&`, `<`, `>`,
/// `"` and `'`. Control characters that XML forbids are dropped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Rendered width of `text` at `font` px in the embedded font.
fn est_width(text: &str, font: f64) -> f64 {
    font::text_width(text, font, Weight::Regular)
}

/// `text` shortened with `…` so its width fits `max` px.
fn fit(text: &str, font: f64, max: f64) -> String {
    font::fit(text, font, Weight::Regular, max)
}

/// Chart size and value format, shared by the layout helpers.
#[derive(Debug, Clone, Copy)]
struct Frame {
    w: f64,
    h: f64,
    fmt: YFormat,
}

impl Frame {
    fn new(width: u32, height: u32, fmt: YFormat) -> Frame {
        Frame {
            w: f64::from(width.max(1)),
            h: f64::from(height.max(1)),
            fmt,
        }
    }
}

/// The plot rectangle and scales of a date/value chart.
struct Plot {
    left: f64,
    x: Scale,
    y: Scale,
}

/// Opens the root element, background and title. `kind` is the second
/// class (`line-chart`, ...). Returns the y below the title.
fn open(out: &mut String, kind: &str, id: &str, title: &str, f: Frame, extra: &str) -> f64 {
    let (w, h) = (fmt_num(f.w), fmt_num(f.h));
    w!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart {kind}\" id=\"{}\" \
         viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\"{extra} role=\"img\" aria-label=\"{}\" \
         font-family=\"{}\" font-size=\"{}\">",
        escape(id),
        escape(title),
        escape(font::FAMILY),
        fmt_num(FONT)
    );
    w!(
        out,
        "<rect class=\"background\" width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>"
    );
    if title.is_empty() {
        return MARGIN;
    }
    let t = font::fit(title, TITLE_FONT, Weight::Bold, f.w - 2.0 * MARGIN);
    w!(
        out,
        "<text class=\"title\" x=\"{}\" y=\"{}\" font-size=\"{}\" font-weight=\"700\" \
         fill=\"{INK}\">{}</text>",
        fmt_num(MARGIN),
        fmt_num(MARGIN + TITLE_FONT),
        fmt_num(TITLE_FONT),
        escape(&t)
    );
    MARGIN + TITLE_FONT + 10.0
}

/// A complete chart that only says "No data yet".
fn empty(kind: &str, id: &str, title: &str, f: Frame) -> String {
    let mut out = String::with_capacity(600);
    open(&mut out, kind, id, title, f, "");
    w!(
        out,
        "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{MUTED}\">{NO_DATA}</text></svg>",
        fmt_num(f.w / 2.0),
        fmt_num(f.h / 2.0)
    );
    out
}

/// The legend, one row or more from `top`. Returns the y below it.
fn legend(out: &mut String, items: &[(&str, [u8; 3])], top: f64, f: Frame) -> f64 {
    const SWATCH: f64 = 14.0;
    let avail = f.w - 2.0 * MARGIN;
    let names: Vec<String> = items
        .iter()
        .map(|(n, _)| fit(n, FONT, avail - SWATCH - 6.0))
        .collect();
    let widths: Vec<f64> = names
        .iter()
        .map(|n| SWATCH + 6.0 + est_width(n, FONT))
        .collect();
    let flow = legend_flow(&widths, avail, 16.0);
    let row_h = FONT + 6.0;
    out.push_str("<g class=\"legend\">");
    for ((&(x, row), name), (full, color)) in flow.iter().zip(&names).zip(items) {
        let (x, y) = (MARGIN + x, top + row as f64 * row_h + FONT / 2.0);
        w!(
            out,
            "<g class=\"legend-item\" data-series=\"{}\"><rect x=\"{}\" y=\"{}\" width=\"{}\" \
             height=\"3\" rx=\"1.5\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" dy=\"0.35em\" \
             fill=\"{MUTED}\">{}</text></g>",
            escape(full),
            fmt_num(x),
            fmt_num(y - 1.5),
            fmt_num(SWATCH),
            hex(*color),
            fmt_num(x + SWATCH + 6.0),
            fmt_num(y),
            escape(name)
        );
    }
    out.push_str("</g>");
    let rows = flow.last().map_or(0, |&(_, r)| r + 1);
    top + rows as f64 * row_h + 10.0
}

/// Gridlines, y tick labels, the x axis and date labels of a date/value chart
/// whose plot starts at `top`; returns the plot and its scales.
fn date_value_axes(out: &mut String, ext: Extent, axis: &Axis, top: f64, f: Frame) -> Plot {
    let bottom = (f.h - MARGIN - FONT - 8.0).max(top + 1.0);
    let labels: Vec<String> = axis
        .ticks
        .iter()
        .map(|&t| format_tick(t, axis, f.fmt))
        .collect();
    let label_w = labels
        .iter()
        .map(|l| est_width(l, FONT))
        .fold(0.0, f64::max);
    let left = (MARGIN + label_w + 8.0).min(f.w / 2.0);
    let right = (f.w - MARGIN - 8.0).max(left + 1.0);
    let y = Scale {
        d0: axis.lo,
        d1: axis.hi,
        r0: bottom,
        r1: top,
    };
    let x = Scale {
        d0: day_number(ext.d0),
        d1: day_number(ext.d1),
        r0: left + 4.0,
        r1: right - 4.0,
    };
    y_grid(out, axis, &labels, &y, (left, right), Some(bottom));
    let base = bottom.round() + 0.5;
    w!(
        out,
        "</g><g class=\"axis x-axis\"><line class=\"domain\" x1=\"{}\" x2=\"{}\" y1=\"{b}\" y2=\"{b}\" stroke=\"{AXIS}\"/>",
        fmt_num(left),
        fmt_num(right),
        b = fmt_num(base)
    );
    let mut last_end = f64::NEG_INFINITY;
    for (d, label) in date_ticks(ext.d0, ext.d1, right - left, CHAR_W) {
        let tx = x.map_date(d);
        let half = est_width(&label, FONT) / 2.0;
        let cx = tx.min(f.w - MARGIN / 2.0 - half).max(MARGIN / 2.0 + half);
        if cx - half < last_end + 6.0 {
            continue;
        }
        last_end = cx + half;
        w!(
            out,
            "<line x1=\"{tx}\" x2=\"{tx}\" y1=\"{}\" y2=\"{}\" stroke=\"{AXIS}\"/>\
             <text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{MUTED}\">{}</text>",
            fmt_num(base),
            fmt_num(base + 4.0),
            fmt_num(cx),
            fmt_num(bottom + 8.0 + FONT),
            escape(&label),
            tx = fmt_num(tx.round() + 0.5)
        );
    }
    out.push_str("</g>");
    Plot { left, x, y }
}

/// An SVG path through points: `M x y L x y ...`.
fn path_d(pts: &[(f64, f64)]) -> String {
    let mut d = String::with_capacity(pts.len() * 14);
    for (i, &(x, y)) in pts.iter().enumerate() {
        let cmd = if i == 0 { 'M' } else { 'L' };
        w!(d, "{cmd}{},{}", fmt_num(x), fmt_num(y));
    }
    d
}

/// Tooltip text for a series: its name and last value.
fn series_tooltip(name: &str, pts: &Points, fmt: YFormat) -> String {
    match pts.last() {
        Some(&(d, v)) => format!("{name}: {} on {}", format_value(v, fmt), format_date(d)),
        None => name.to_string(),
    }
}

/// Horizontal gridlines at the axis ticks and the y tick labels, opening the
/// `y-axis` group (the caller closes it). With `zero_above = Some(bottom)`, a zero
/// tick above the bottom edge is drawn as the zero line.
fn y_grid(
    out: &mut String,
    axis: &Axis,
    labels: &[String],
    y: &Scale,
    (left, right): (f64, f64),
    zero_above: Option<f64>,
) {
    out.push_str("<g class=\"grid\">");
    for &t in &axis.ticks {
        let zero = t == 0.0 && zero_above.is_some_and(|b| y.map(t) < b - 0.5);
        w!(
            out,
            "<line class=\"{}\" x1=\"{}\" x2=\"{}\" y1=\"{ty}\" y2=\"{ty}\" stroke=\"{}\"/>",
            if zero { "zero" } else { "gridline" },
            fmt_num(left),
            fmt_num(right),
            if zero { AXIS } else { GRID },
            ty = fmt_num(y.map(t).round() + 0.5)
        );
    }
    out.push_str("</g><g class=\"axis y-axis\">");
    for (&t, label) in axis.ticks.iter().zip(labels) {
        w!(
            out,
            "<text class=\"tick\" x=\"{}\" y=\"{}\" dy=\"0.35em\" text-anchor=\"end\" fill=\"{MUTED}\">{}</text>",
            fmt_num(left - 8.0),
            fmt_num(y.map(t)),
            escape(label)
        );
    }
}

/// A multi-series line chart as an inline `<svg>`.
///
/// Root: `<svg class="chart line-chart" id="{id}" viewBox="0 0 W H"
/// role="img" aria-label="{title}">`. Each series with data is a
/// `<path class="series" data-series="{name}" stroke="#rrggbb">` whose
/// `<title>` gives its name and last value (a single point also gets a
/// `<circle class="point">`). Gridlines, tick labels and a legend are
/// included; NaN/inf points are skipped. With no data at all, the chart is a
/// `<text class="empty">No data yet</text>`.
pub fn line_chart(
    id: &str,
    title: &str,
    series: &[Series],
    width: u32,
    height: u32,
    y: YFormat,
) -> String {
    const KIND: &str = "line-chart";
    let f = Frame::new(width, height, y);
    let clean = clean_series(series);
    let Some(ext) = Extent::of(&clean) else {
        return empty(KIND, id, title, f);
    };
    let mut out = String::with_capacity(4096 + clean.iter().map(Vec::len).sum::<usize>() * 16);
    let top = open(&mut out, KIND, id, title, f, "");
    let items: Vec<(&str, [u8; 3])> = series.iter().map(|s| (s.name.as_str(), s.color)).collect();
    let top = legend(&mut out, &items, top, f);
    let target = tick_target(f.h - top - 40.0, 40.0);
    let axis = value_axis(ext.v0, ext.v1, target, y);
    let p = date_value_axes(&mut out, ext, &axis, top, f);
    out.push_str("<g class=\"series-group\">");
    for (s, pts) in series.iter().zip(&clean) {
        if pts.is_empty() {
            continue;
        }
        let xy: Vec<(f64, f64)> = pts
            .iter()
            .map(|&(d, v)| (p.x.map_date(d), p.y.map(v)))
            .collect();
        let color = hex(s.color);
        let name = escape(&s.name);
        let tip = escape(&series_tooltip(&s.name, pts, y));
        let mut d = path_d(&xy);
        if xy.len() == 1 {
            d.push_str("h0");
        }
        w!(
            out,
            "<path class=\"series\" data-series=\"{name}\" d=\"{d}\" fill=\"none\" stroke=\"{color}\" \
             stroke-width=\"2\" stroke-linejoin=\"round\" stroke-linecap=\"round\"><title>{tip}</title></path>"
        );
        match xy.as_slice() {
            [(cx, cy)] => {
                w!(
                    out,
                    "<circle class=\"point\" data-series=\"{name}\" cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{color}\"><title>{tip}</title></circle>",
                    fmt_num(*cx),
                    fmt_num(*cy)
                );
            }
            [.., (cx, cy)] => {
                w!(
                    out,
                    "<circle class=\"end\" data-series=\"{name}\" cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{color}\" stroke=\"#ffffff\" stroke-width=\"1.5\"><title>{tip}</title></circle>",
                    fmt_num(*cx),
                    fmt_num(*cy)
                );
            }
            [] => {}
        }
    }
    out.push_str("</g></svg>");
    out
}

/// An area chart below zero, for drawdowns: the series is filled from 0 to
/// its values (normally negative) and outlined on top.
///
/// Same conventions as [`line_chart`]: root class `chart area-chart`, a
/// `<path class="area" data-series="{name}">` with a `<title>`, plus a
/// `<path class="line">` outline, gridlines with 0 at or near the top, tick
/// labels and a legend. No finite points gives the "No data yet" chart.
pub fn area_chart(
    id: &str,
    title: &str,
    series: &Series,
    width: u32,
    height: u32,
    y: YFormat,
) -> String {
    const KIND: &str = "area-chart";
    let f = Frame::new(width, height, y);
    let pts = clean_points(&series.points);
    let Some(ext) = Extent::of(std::slice::from_ref(&pts)) else {
        return empty(KIND, id, title, f);
    };
    let mut out = String::with_capacity(4096 + pts.len() * 32);
    let top = open(&mut out, KIND, id, title, f, "");
    let top = legend(&mut out, &[(series.name.as_str(), series.color)], top, f);
    let target = tick_target(f.h - top - 40.0, 40.0);
    let (mut lo, hi) = (ext.v0.min(0.0), ext.v1.max(0.0));
    if lo == 0.0 && hi == 0.0 {
        // No drawdown yet: show a small range below zero, not around it.
        lo = -unit(y);
    }
    let axis = value_axis(lo, hi, target, y);
    let p = date_value_axes(&mut out, ext, &axis, top, f);
    let xy: Vec<(f64, f64)> = pts
        .iter()
        .map(|&(d, v)| (p.x.map_date(d), p.y.map(v)))
        .collect();
    let zero = p.y.map(0.0);
    let (first_x, last_x) = match (xy.first(), xy.last()) {
        (Some(a), Some(b)) => (a.0, b.0),
        _ => (p.left, p.left),
    };
    let mut ring = Vec::with_capacity(xy.len() + 2);
    ring.push((first_x, zero));
    ring.extend_from_slice(&xy);
    ring.push((last_x, zero));
    let color = hex(series.color);
    let name = escape(&series.name);
    let tip = escape(&series_tooltip(&series.name, &pts, y));
    let mut line = path_d(&xy);
    if xy.len() == 1 {
        line.push_str("h0");
    }
    w!(
        out,
        "<g class=\"series-group\"><path class=\"area\" data-series=\"{name}\" d=\"{}Z\" fill=\"{color}\" \
         fill-opacity=\"0.2\" stroke=\"none\"><title>{tip}</title></path><path class=\"line\" \
         data-series=\"{name}\" d=\"{line}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" \
         stroke-linejoin=\"round\" stroke-linecap=\"round\"/></g></svg>",
        path_d(&ring)
    );
    out
}

/// A bar chart of labelled values: positive bars green (`#1a7f37`), negative
/// red (`#cf222e`), each a `<rect class="bar" data-label=".." data-value="..">`
/// with a `<title>`, and its formatted value written beside the bar.
///
/// Bars are vertical when there are at most 8 and their labels fit under
/// them, horizontal otherwise (the root carries `data-orientation`).
/// Non-finite values are skipped; nothing left gives the "No data yet" chart.
pub fn bar_chart(
    id: &str,
    title: &str,
    bars: &[(String, f64)],
    width: u32,
    height: u32,
    y: YFormat,
) -> String {
    const KIND: &str = "bar-chart";
    let f = Frame::new(width, height, y);
    let bars: Vec<(&str, f64)> = bars
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(l, v)| (l.as_str(), *v))
        .collect();
    if bars.is_empty() {
        return empty(KIND, id, title, f);
    }
    let lo = bars.iter().map(|b| b.1).fold(0.0, f64::min);
    let hi = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let longest = bars
        .iter()
        .map(|(l, _)| est_width(l, FONT))
        .fold(0.0, f64::max);
    let slot = (f.w - 2.0 * MARGIN - 60.0) / bars.len() as f64;
    let vertical = bars.len() <= 8 && longest <= slot - 4.0;
    let orient = if vertical { "vertical" } else { "horizontal" };
    let mut out = String::with_capacity(2048 + bars.len() * 300);
    let extra = format!(" data-orientation=\"{orient}\"");
    let top = open(&mut out, KIND, id, title, f, &extra);
    if vertical {
        vertical_bars(&mut out, &bars, (lo, hi), top, f);
    } else {
        horizontal_bars(&mut out, &bars, (lo, hi), top, f);
    }
    out.push_str("</svg>");
    out
}

/// Borrowed bars.
type Bars<'a> = [(&'a str, f64)];

/// One bar: rectangle with tooltip, and its value label.
struct Bar<'a> {
    label: &'a str,
    value: f64,
    rect: (f64, f64, f64, f64),
    text_at: (f64, f64),
    anchor: &'a str,
}

/// Writes one bar and its value label.
fn bar(out: &mut String, b: &Bar, fmt: YFormat) {
    let (x, y, w, h) = b.rect;
    let fill = if b.value < 0.0 { NEGATIVE } else { POSITIVE };
    let shown = format_value(b.value, fmt);
    w!(
        out,
        "<rect class=\"bar\" data-label=\"{}\" data-value=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" \
         height=\"{}\" fill=\"{fill}\"><title>{}: {}</title></rect><text class=\"value\" x=\"{}\" \
         y=\"{}\" dy=\"0.35em\" text-anchor=\"{}\" fill=\"{INK}\">{}</text>",
        escape(b.label),
        fmt_plain(b.value),
        fmt_num(x),
        fmt_num(y),
        fmt_num(w.max(0.0)),
        fmt_num(h.max(0.0)),
        escape(b.label),
        escape(&shown),
        fmt_num(b.text_at.0),
        fmt_num(b.text_at.1),
        b.anchor,
        escape(&shown)
    );
}

/// Widest estimated value label among `bars`.
fn value_label_w(bars: &Bars, fmt: YFormat) -> f64 {
    bars.iter()
        .map(|b| est_width(&format_value(b.1, fmt), FONT))
        .fold(0.0, f64::max)
}

/// Vertical bars: categories along x, values up (positive) or down.
fn vertical_bars(out: &mut String, bars: &Bars, (lo, hi): (f64, f64), top: f64, f: Frame) {
    let bottom = (f.h - MARGIN - FONT - 8.0).max(top + 1.0);
    // Room inside the plot for value labels above/below the bar ends.
    let pad_top = if hi > 0.0 { FONT + 6.0 } else { 0.0 };
    let pad_bottom = if lo < 0.0 { FONT + 6.0 } else { 0.0 };
    let target = tick_target(bottom - top, 40.0);
    let axis = value_axis(lo, hi, target, f.fmt);
    let labels: Vec<String> = axis
        .ticks
        .iter()
        .map(|&t| format_tick(t, &axis, f.fmt))
        .collect();
    let label_w = labels
        .iter()
        .map(|l| est_width(l, FONT))
        .fold(0.0, f64::max);
    let left = (MARGIN + label_w + 8.0).min(f.w / 2.0);
    let right = (f.w - MARGIN).max(left + 1.0);
    let y = Scale {
        d0: axis.lo,
        d1: axis.hi,
        r0: (bottom - pad_bottom).max(top + pad_top),
        r1: top + pad_top,
    };
    y_grid(out, &axis, &labels, &y, (left, right), None);
    out.push_str("</g><g class=\"axis x-axis\">");
    let slot = (right - left) / bars.len() as f64;
    for (i, (label, _)) in bars.iter().enumerate() {
        let cx = left + slot * (i as f64 + 0.5);
        w!(
            out,
            "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{MUTED}\">{}</text>",
            fmt_num(cx),
            fmt_num(bottom + 8.0 + FONT),
            escape(&fit(label, FONT, slot - 4.0))
        );
    }
    out.push_str("</g><g class=\"bars\">");
    let zero = y.map(0.0);
    let bw = (slot * 0.7).min(80.0);
    for (i, &(label, value)) in bars.iter().enumerate() {
        let cx = left + slot * (i as f64 + 0.5);
        let end = y.map(value);
        let (y0, y1) = (zero.min(end), zero.max(end));
        let ty = if value < 0.0 {
            y1 + 4.0 + FONT / 2.0
        } else {
            y0 - 4.0 - FONT / 2.0
        };
        bar(
            out,
            &Bar {
                label,
                value,
                rect: (cx - bw / 2.0, y0, bw, y1 - y0),
                text_at: (cx, ty),
                anchor: "middle",
            },
            f.fmt,
        );
    }
    w!(
        out,
        "</g><line class=\"zero\" x1=\"{}\" x2=\"{}\" y1=\"{z}\" y2=\"{z}\" stroke=\"{AXIS}\"/>",
        fmt_num(left),
        fmt_num(right),
        z = fmt_num(zero.round() + 0.5)
    );
}

/// Horizontal bars: categories down the left, values right or left of zero.
fn horizontal_bars(out: &mut String, bars: &Bars, (lo, hi): (f64, f64), top: f64, f: Frame) {
    let bottom = (f.h - MARGIN - FONT - 8.0).max(top + 1.0);
    let longest = bars
        .iter()
        .map(|(l, _)| est_width(l, FONT))
        .fold(0.0, f64::max);
    let label_col = longest.min(f.w * 0.3);
    let vw = value_label_w(bars, f.fmt) + 8.0;
    let left = MARGIN + label_col + 8.0 + if lo < 0.0 { vw } else { 0.0 };
    let right = (f.w - MARGIN - if hi > 0.0 { vw } else { 0.0 }).max(left + 1.0);
    let target = tick_target(right - left, 80.0);
    let axis = value_axis(lo, hi, target, f.fmt);
    let x = Scale {
        d0: axis.lo,
        d1: axis.hi,
        r0: left,
        r1: right,
    };
    out.push_str("<g class=\"grid\">");
    for &t in &axis.ticks {
        w!(
            out,
            "<line class=\"gridline\" x1=\"{tx}\" x2=\"{tx}\" y1=\"{}\" y2=\"{}\" stroke=\"{GRID}\"/>",
            fmt_num(top),
            fmt_num(bottom),
            tx = fmt_num(x.map(t).round() + 0.5)
        );
    }
    out.push_str("</g><g class=\"axis x-axis\">");
    let mut last_end = f64::NEG_INFINITY;
    for &t in &axis.ticks {
        let label = format_tick(t, &axis, f.fmt);
        let half = est_width(&label, FONT) / 2.0;
        let cx = x.map(t);
        if cx - half < last_end + 6.0 {
            continue;
        }
        last_end = cx + half;
        w!(
            out,
            "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{MUTED}\">{}</text>",
            fmt_num(cx),
            fmt_num(bottom + 8.0 + FONT),
            escape(&label)
        );
    }
    out.push_str("</g><g class=\"axis y-axis\">");
    let row = (bottom - top) / bars.len() as f64;
    for (i, (label, _)) in bars.iter().enumerate() {
        w!(
            out,
            "<text class=\"tick\" x=\"{}\" y=\"{}\" dy=\"0.35em\" text-anchor=\"end\" fill=\"{MUTED}\">{}</text>",
            fmt_num(MARGIN + label_col),
            fmt_num(top + row * (i as f64 + 0.5)),
            escape(&fit(label, FONT, label_col))
        );
    }
    out.push_str("</g><g class=\"bars\">");
    let zero = x.map(0.0);
    let bh = (row * 0.7).min(28.0);
    for (i, &(label, value)) in bars.iter().enumerate() {
        let cy = top + row * (i as f64 + 0.5);
        let end = x.map(value);
        let (x0, x1) = (zero.min(end), zero.max(end));
        let (tx, anchor) = if value < 0.0 {
            (x0 - 4.0, "end")
        } else {
            (x1 + 4.0, "start")
        };
        bar(
            out,
            &Bar {
                label,
                value,
                rect: (x0, cy - bh / 2.0, x1 - x0, bh),
                text_at: (tx, cy),
                anchor,
            },
            f.fmt,
        );
    }
    w!(
        out,
        "</g><line class=\"zero\" x1=\"{z}\" x2=\"{z}\" y1=\"{}\" y2=\"{}\" stroke=\"{AXIS}\"/>",
        fmt_num(top),
        fmt_num(bottom),
        z = fmt_num(zero.round() + 0.5)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, day).unwrap()
    }

    /// Checks tags nest properly and there is exactly one root `<svg>`;
    /// returns the number of elements.
    fn check_well_formed(s: &str) -> usize {
        let mut stack: Vec<String> = Vec::new();
        let mut roots = 0;
        let mut elements = 0;
        let mut rest = s;
        assert!(s.starts_with("<svg "), "starts with <svg: {s}");
        while let Some(start) = rest.find('<') {
            let text = &rest[..start];
            assert!(!text.contains('>'), "stray > in text: {text}");
            check_entities(text);
            let end = rest[start..].find('>').expect("unclosed tag") + start;
            let tag = &rest[start + 1..end];
            assert!(!tag.contains('<'), "< inside tag: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().expect("close without open");
                assert_eq!(open, name.trim(), "mismatched tags");
            } else {
                let name: String = tag
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '/')
                    .collect();
                assert!(!name.is_empty(), "empty tag");
                assert_eq!(tag.matches('"').count() % 2, 0, "odd quotes: {tag}");
                check_entities(tag);
                if stack.is_empty() {
                    roots += 1;
                }
                elements += 1;
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[end + 1..];
        }
        assert!(rest.trim().is_empty(), "trailing text: {rest}");
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        assert_eq!(roots, 1);
        elements
    }

    /// Every `&` starts a known entity.
    fn check_entities(s: &str) {
        for (i, _) in s.match_indices('&') {
            let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                .iter()
                .any(|e| s[i..].starts_with(e));
            assert!(ok, "bare & in {s}");
        }
    }

    fn series(name: &str, color: [u8; 3], n: u32, f: impl Fn(f64) -> f64) -> Series {
        Series {
            name: name.into(),
            color,
            points: (1..=n).map(|i| (d(i), f(f64::from(i)))).collect(),
        }
    }

    #[test]
    fn line_chart_structure() {
        let s = [
            series("Desk", [9, 105, 218], 20, |t| 0.01 * t),
            series("A<B&\"C\"", [191, 57, 137], 20, |t| -0.003 * t),
        ];
        let svg = line_chart("eq", "Equity & <P/L>", &s, 640, 320, YFormat::Percent);
        assert!(check_well_formed(&svg) > 20);
        assert!(svg.contains("class=\"chart line-chart\" id=\"eq\" viewBox=\"0 0 640 320\""));
        assert!(svg.contains("role=\"img\" aria-label=\"Equity &amp; &lt;P/L&gt;\""));
        assert!(svg.contains("font-family=\"&#39;DejaVu Sans&#39;,"));
        assert!(svg.contains("<path class=\"series\" data-series=\"Desk\""));
        assert!(svg.contains("data-series=\"A&lt;B&amp;&quot;C&quot;\""));
        assert!(svg.contains("stroke=\"#0969da\""));
        assert!(svg.contains("<title>Desk: +20.0% on 2025-03-20</title>"));
        assert!(!svg.contains("A<B"));
        assert_eq!(svg.matches("class=\"series\"").count(), 2);
        assert!(svg.contains("class=\"legend\""));
        assert!(svg.contains(">+20%<"), "tick labels: {svg}");
        assert!(svg.contains(">2025-03-01<"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(!svg.contains("0000000"), "long numbers: {svg}");
    }

    #[test]
    fn line_chart_edge_cases() {
        let empty = line_chart("e", "Equity", &[], 400, 200, YFormat::Money);
        check_well_formed(&empty);
        assert!(empty.contains("<text class=\"empty\""));
        assert!(empty.contains(">No data yet</text>"));
        assert!(empty.contains("class=\"chart line-chart\" id=\"e\""));
        let nan = series("nan", [0, 0, 0], 5, |_| f64::NAN);
        let svg = line_chart("e", "Equity", &[nan], 400, 200, YFormat::Money);
        assert!(svg.contains(">No data yet<"));

        let one = Series {
            name: "one".into(),
            color: [1, 2, 3],
            points: vec![(d(3), 5.0), (d(4), f64::INFINITY)],
        };
        let flat = series("flat", [4, 5, 6], 10, |_| 100.0);
        let svg = line_chart("x", "", &[one, flat], 400, 200, YFormat::Number);
        check_well_formed(&svg);
        assert!(svg.contains("class=\"point\""));
        assert_eq!(svg.matches("class=\"series\"").count(), 2);
        assert!(!svg.contains("NaN"));
        for (w, h) in [(0, 0), (1, 1), (30, 20), (5000, 40)] {
            check_well_formed(&line_chart(
                "x",
                "t",
                &[series("a", [0; 3], 3, |t| t)],
                w,
                h,
                YFormat::Money,
            ));
        }
        let huge = Series {
            name: "huge".into(),
            color: [0; 3],
            points: vec![(NaiveDate::MIN, -f64::MAX), (NaiveDate::MAX, f64::MAX)],
        };
        let svg = line_chart("x", "t", &[huge], 300, 200, YFormat::Money);
        check_well_formed(&svg);
        assert!(!svg.contains("000000000"), "unbounded coordinates");
    }

    #[test]
    fn area_chart_structure() {
        let dd = series("Drawdown", [207, 34, 46], 15, |t| -0.004 * (t % 6.0));
        let svg = area_chart("dd", "Drawdown", &dd, 640, 200, YFormat::Percent);
        check_well_formed(&svg);
        assert!(svg.contains("class=\"chart area-chart\" id=\"dd\""));
        assert!(svg.contains("<path class=\"area\" data-series=\"Drawdown\""));
        assert!(svg.contains("fill=\"#cf222e\""));
        assert!(
            [">0%<", ">0.0%<", ">0.00%<"]
                .iter()
                .any(|z| svg.contains(z)),
            "zero tick: {svg}"
        );
        let zero = series("Drawdown", [207, 34, 46], 5, |_| 0.0);
        let svg = area_chart("dd", "Drawdown", &zero, 640, 200, YFormat::Percent);
        check_well_formed(&svg);
        assert!(
            [">-1%<", ">-1.0%<", ">-1.00%<"]
                .iter()
                .any(|z| svg.contains(z)),
            "range below zero: {svg}"
        );
        assert!(!svg.contains(">+"), "nothing above zero: {svg}");
        let empty = Series {
            name: "x".into(),
            color: [0; 3],
            points: vec![],
        };
        let svg = area_chart("dd", "Drawdown", &empty, 640, 200, YFormat::Percent);
        check_well_formed(&svg);
        assert!(svg.contains("class=\"chart area-chart\""));
        assert!(svg.contains("<text class=\"empty\"") && svg.contains("No data yet"));
    }

    #[test]
    fn bar_chart_colors_and_labels() {
        let bars = vec![
            ("SPY puts".to_string(), 1250.0),
            ("QQQ calls".to_string(), -430.75),
            ("A<B&\"C\"".to_string(), 0.1 + 0.2),
            ("bad".to_string(), f64::NAN),
        ];
        for (w, h) in [(640, 300), (200, 300)] {
            let svg = bar_chart("pnl", "P&L by strategy", &bars, w, h, YFormat::Money);
            check_well_formed(&svg);
            assert!(svg.contains("class=\"chart bar-chart\" id=\"pnl\""));
            assert!(svg.contains("aria-label=\"P&amp;L by strategy\""));
            assert_eq!(svg.matches("<rect class=\"bar\"").count(), 3);
            assert!(svg.contains("<rect class=\"bar\" data-label=\"SPY puts\" data-value=\"1250\""));
            let pos = svg.find("data-label=\"SPY puts\"").unwrap();
            let neg = svg.find("data-label=\"QQQ calls\"").unwrap();
            let fill = |at: usize| {
                let tail = &svg[at..];
                let i = tail.find("fill=\"").unwrap() + 6;
                tail[i..i + 7].to_string()
            };
            assert_eq!(fill(pos), "#1a7f37");
            assert_eq!(fill(neg), "#cf222e");
            assert!(svg.contains("data-label=\"A&lt;B&amp;&quot;C&quot;\" data-value=\"0.3\""));
            assert!(svg.contains(">$1,250</text>"));
            assert!(svg.contains(">-$431</text>"));
            assert!(svg.contains("<title>QQQ calls: -$431</title>"));
            assert!(!svg.contains("bad"));
        }
        let v = bar_chart("v", "t", &bars[..2], 640, 300, YFormat::Money);
        assert!(v.contains("data-orientation=\"vertical\""));
        let many: Vec<(String, f64)> = (0..12)
            .map(|i| (format!("b{i}"), f64::from(i) - 5.0))
            .collect();
        let hz = bar_chart("h", "t", &many, 640, 300, YFormat::Number);
        check_well_formed(&hz);
        assert!(hz.contains("data-orientation=\"horizontal\""));
        let empty = bar_chart("b", "t", &[], 640, 300, YFormat::Number);
        check_well_formed(&empty);
        assert!(empty.contains("<text class=\"empty\"") && empty.contains("No data yet"));
        let zeros = bar_chart("z", "t", &[("z".into(), 0.0)], 10, 10, YFormat::Percent);
        check_well_formed(&zeros);
    }

    #[test]
    fn escapes_everything() {
        assert_eq!(escape("A<B&\"C\"'"), "A&lt;B&amp;&quot;C&quot;&#39;");
        assert_eq!(escape("ok\u{0}\u{7}é"), "oké");
        let svg = line_chart("i\"d", "t'", &[], 100, 100, YFormat::Number);
        assert!(svg.contains("id=\"i&quot;d\"") && svg.contains("aria-label=\"t&#39;\""));
    }
}
