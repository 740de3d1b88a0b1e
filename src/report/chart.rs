//! Equity line charts rendered to PNG, plus the axis and formatting helpers
//! that the SVG charts in [`super::svg`] share.
//!
//! The PNG goes into the daily email as an inline image, because email clients
//! do not render SVG. It is drawn with `tiny-skia` (antialiased lines and dots)
//! and text set in the embedded DejaVu Sans ([`super::font`], glyph outlines
//! rasterised by `ab_glyph`): no system fonts are needed, so the output is the
//! same on every machine and byte-for-byte deterministic.
//!
//! Shared helpers (`pub(crate)`, used by the SVG charts too): data cleaning
//! (`clean_series`, `Extent`), nice value axes (`value_axis`, `tick_target`),
//! date ticks (`date_ticks`), value and number formatting (`format_tick`,
//! `format_value`, `fmt_num`, `fmt_plain`) and linear scales (`Scale`).

use chrono::{Datelike, NaiveDate};

use super::font::{self, Weight};
use tiny_skia::{
    FillRule, LineCap, LineJoin, Paint, PathBuilder, Pixmap, PremultipliedColorU8, Stroke,
    Transform,
};

/// One named line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Shown in the legend (and in SVG tooltips).
    pub name: String,
    /// Line colour as RGB.
    pub color: [u8; 3],
    /// Data points; need not be sorted. Non-finite values are skipped.
    pub points: Vec<(NaiveDate, f64)>,
}

/// How y values are labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YFormat {
    /// Values are fractions: `0.05` is shown as `+5.0%`.
    Percent,
    /// Dollars: `$412,500`, or `$1.2M` from a million up.
    Money,
    /// Plain numbers with thousands separators.
    Number,
}

/// The text shown when there is nothing to plot.
pub(crate) const NO_DATA: &str = "No data yet";

/// Largest accepted physical image side, in pixels.
const MAX_SIDE: u32 = 8_192;

// ---------------------------------------------------------------------------
// Shared helpers: data, scales, ticks, formatting.
// ---------------------------------------------------------------------------

/// A series' finite points sorted by date (stable, so equal dates keep order).
pub(crate) type Points = Vec<(NaiveDate, f64)>;

/// Each series' points with NaN/inf removed, sorted by date.
pub(crate) fn clean_series(series: &[Series]) -> Vec<Points> {
    series.iter().map(|s| clean_points(&s.points)).collect()
}

/// `points` with NaN/inf removed, sorted by date.
pub(crate) fn clean_points(points: &[(NaiveDate, f64)]) -> Points {
    let mut p: Points = points
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    p.sort_by_key(|(d, _)| *d);
    p
}

/// The date and value ranges covered by some cleaned series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Extent {
    pub d0: NaiveDate,
    pub d1: NaiveDate,
    pub v0: f64,
    pub v1: f64,
}

impl Extent {
    /// The extent of all points, or `None` when there are none.
    pub(crate) fn of(series: &[Points]) -> Option<Extent> {
        let mut it = series.iter().flatten();
        let &(d, v) = it.next()?;
        let mut e = Extent {
            d0: d,
            d1: d,
            v0: v,
            v1: v,
        };
        for &(d, v) in it {
            e.d0 = e.d0.min(d);
            e.d1 = e.d1.max(d);
            e.v0 = e.v0.min(v);
            e.v1 = e.v1.max(v);
        }
        Some(e)
    }
}

/// Days since the common era, as a coordinate.
pub(crate) fn day_number(d: NaiveDate) -> f64 {
    f64::from(d.num_days_from_ce())
}

/// A linear map from a data domain to a pixel range. A zero-width domain maps
/// everything to the middle of the range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scale {
    pub d0: f64,
    pub d1: f64,
    pub r0: f64,
    pub r1: f64,
}

impl Scale {
    /// Maps `v` into the pixel range.
    pub(crate) fn map(&self, v: f64) -> f64 {
        let span = self.d1 - self.d0;
        if span == 0.0 || !span.is_finite() {
            return (self.r0 + self.r1) / 2.0;
        }
        self.r0 + (v - self.d0) / span * (self.r1 - self.r0)
    }

    /// Maps a date into the pixel range.
    pub(crate) fn map_date(&self, d: NaiveDate) -> f64 {
        self.map(day_number(d))
    }
}

/// A value axis with a "nice" domain: `lo` and `hi` lie on ticks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub step: f64,
    pub ticks: Vec<f64>,
}

/// The natural unit of a format, used to open up an all-zero range.
pub(crate) fn unit(fmt: YFormat) -> f64 {
    match fmt {
        YFormat::Percent => 0.01,
        YFormat::Money | YFormat::Number => 1.0,
    }
}

/// A nice axis covering `[lo, hi]` with about `target` intervals
/// (steps of 1, 2, 2.5 or 5 times a power of ten). Equal bounds are widened
/// around the value; non-finite input gives a unit axis around zero.
pub(crate) fn value_axis(lo: f64, hi: f64, target: usize, fmt: YFormat) -> Axis {
    let (mut lo, mut hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    if !lo.is_finite() || !hi.is_finite() || !(hi - lo).is_finite() {
        lo = 0.0;
        hi = unit(fmt);
    }
    if hi - lo <= hi.abs().max(lo.abs()) * 1e-12 {
        let c = (lo + hi) / 2.0;
        let d = if c == 0.0 { unit(fmt) } else { c.abs() * 0.05 };
        lo = c - d;
        hi = c + d;
    }
    let target = target.clamp(1, 20) as f64;
    let raw = (hi - lo) / target;
    let mag = 10f64.powf(raw.log10().floor());
    let mut best: Option<(f64, f64, f64, f64)> = None; // (score, step, lo, hi)
    for m in [1.0, 2.0, 2.5, 5.0, 10.0, 20.0] {
        let step = m * mag;
        if !(step.is_finite() && step > 0.0) {
            continue;
        }
        let a = (lo / step).floor() * step;
        let b = (hi / step).ceil() * step;
        let n = ((b - a) / step).round();
        // Close to the wanted count, without leaving much of the plot empty.
        let waste = 1.0 - (hi - lo) / (b - a);
        let score = (n - target).abs() + 4.0 * waste;
        if best.is_none_or(|(s, ..)| score < s) {
            best = Some((score, step, a, b));
        }
    }
    let Some((_, step, a, b)) = best else {
        return Axis {
            lo,
            hi,
            step: hi - lo,
            ticks: vec![lo, hi],
        };
    };
    let n = ((b - a) / step).round().clamp(0.0, 100.0) as i64;
    let ticks = (0..=n).map(|i| clean_zero(a + i as f64 * step)).collect();
    Axis {
        lo: a,
        hi: b,
        step,
        ticks,
    }
}

/// How many y intervals suit a value axis `px` pixels long with ticks about
/// `spacing` pixels apart: 3 to 6, or 2 on a very short axis.
pub(crate) fn tick_target(px: f64, spacing: f64) -> usize {
    let n = (px / spacing.max(1.0)).round();
    if !n.is_finite() || px < 90.0 {
        2
    } else {
        n.clamp(3.0, 6.0) as usize
    }
}

/// Turns values that are zero up to rounding noise into exactly zero.
fn clean_zero(v: f64) -> f64 {
    if v.abs() < 1e-12 {
        0.0
    } else {
        v
    }
}

/// How many decimals show `step` exactly (0..=10), e.g. 2.5 -> 1, 0.05 -> 2.
fn decimals_for(step: f64) -> usize {
    let step = step.abs();
    if !step.is_finite() || step == 0.0 {
        return 0;
    }
    let mut x = step;
    for d in 0..=10 {
        if (x - x.round()).abs() <= x.abs() * 1e-6 {
            return d;
        }
        x *= 10.0;
    }
    10
}

/// `v` with `decimals` decimals and thousands separators, without a sign,
/// and whether it is negative (after rounding: `-0.0001` at 2 decimals is 0).
pub(crate) fn fixed(v: f64, decimals: usize) -> (bool, String) {
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s.as_str(), None),
    };
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    let n = int.len();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (n - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    let zero = s.bytes().all(|b| b == b'0' || b == b'.');
    (v < 0.0 && !zero, out)
}

/// Formats dollars: `$` + body, with `-` in front when negative.
fn money(v: f64, decimals: usize, suffix: &str, div: f64) -> String {
    let (neg, body) = fixed(v / div, decimals);
    format!("{}${body}{suffix}", if neg { "-" } else { "" })
}

/// Formats a percent (`v` a fraction) with a sign, e.g. `+5.0%`, `-1.25%`, `0%`.
fn percent(v: f64, decimals: usize) -> String {
    let (neg, body) = fixed(v * 100.0, decimals);
    let zero = body.bytes().all(|b| b == b'0' || b == b'.');
    let sign = if neg {
        "-"
    } else if zero {
        ""
    } else {
        "+"
    };
    format!("{sign}{body}%")
}

/// The money unit (divisor and suffix) for numbers as large as `mag`.
fn money_unit(mag: f64) -> (f64, &'static str) {
    if mag >= 1e9 {
        (1e9, "B")
    } else if mag >= 1e6 {
        (1e6, "M")
    } else {
        (1.0, "")
    }
}

/// A tick label on `axis`: every label of one axis uses the same precision
/// and unit, just enough to tell ticks `axis.step` apart.
pub(crate) fn format_tick(v: f64, axis: &Axis, fmt: YFormat) -> String {
    let v = clean_zero(v);
    match fmt {
        YFormat::Percent => percent(v, decimals_for(axis.step * 100.0)),
        YFormat::Money => {
            let (div, suffix) = money_unit(axis.lo.abs().max(axis.hi.abs()));
            let d = decimals_for(axis.step / div);
            let d = if div > 1.0 { d.max(1) } else { d };
            money(v, d.min(6), suffix, div)
        }
        YFormat::Number => {
            let (neg, body) = fixed(v, decimals_for(axis.step).min(6));
            format!("{}{body}", if neg { "-" } else { "" })
        }
    }
}

/// A single value, e.g. for bar labels: `+5.0%` (two decimals under 1%),
/// `$412,500` / `$1.2M` (cents under $100), numbers with up to 2 decimals.
pub(crate) fn format_value(v: f64, fmt: YFormat) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    match fmt {
        YFormat::Percent => percent(v, if v != 0.0 && v.abs() < 0.01 { 2 } else { 1 }),
        YFormat::Money => {
            let (div, suffix) = money_unit(v.abs());
            if div > 1.0 {
                money(v, 1, suffix, div)
            } else if v.abs() < 100.0 && v.fract() != 0.0 {
                money(v, 2, "", 1.0)
            } else {
                money(v, 0, "", 1.0)
            }
        }
        YFormat::Number => {
            let (neg, body) = fixed(v, 2);
            let body = if body.contains('.') {
                body.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                body
            };
            let zero = body == "0";
            format!("{}{body}", if neg && !zero { "-" } else { "" })
        }
    }
}

/// Trims a fixed-point number's trailing zeros (and a bare dot); `-0` -> `0`.
fn trim_fixed(s: String) -> String {
    let t = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s.as_str()
    };
    if t == "-0" || t.is_empty() {
        "0".to_string()
    } else {
        t.to_string()
    }
}

/// A coordinate for SVG output: at most 2 decimals, within ±1e7, no `-0`,
/// non-finite -> `0`.
pub(crate) fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "0".to_string();
    }
    // Coordinates far outside any sane viewBox (only from degenerate data)
    // are clamped so they stay short.
    let x = x.clamp(-1e7, 1e7);
    trim_fixed(format!("{x:.2}"))
}

/// A raw value for data attributes: about 10 significant digits, trimmed
/// (`0.1 + 0.2` -> `0.3`); non-finite -> `NaN`.
pub(crate) fn fmt_plain(x: f64) -> String {
    if !x.is_finite() {
        return "NaN".to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let mag = x.abs().log10().floor();
    let d = (9.0 - mag).clamp(0.0, 15.0) as usize;
    trim_fixed(format!("{x:.d$}"))
}

/// `YYYY-MM-DD`.
pub(crate) fn format_date(d: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `MMM YY`, e.g. `Mar 25`.
fn format_month(d: NaiveDate) -> String {
    let m = MONTHS.get(d.month0() as usize).copied().unwrap_or("???");
    format!("{m} {:02}", d.year().rem_euclid(100))
}

/// Spans longer than this many days get month ticks labelled `MMM YY`.
const MONTH_MODE_DAYS: i64 = 90;

/// Date ticks for `[d0, d1]` that fit in `width` pixels with labels of
/// `char_w` pixels a character: `YYYY-MM-DD` at evenly spaced days for short
/// spans, `MMM YY` at month starts for spans over about three months.
pub(crate) fn date_ticks(
    d0: NaiveDate,
    d1: NaiveDate,
    width: f64,
    char_w: f64,
) -> Vec<(NaiveDate, String)> {
    let span = (d1 - d0).num_days();
    let month_mode = span > MONTH_MODE_DAYS;
    let label_chars = if month_mode { 6.0 } else { 10.0 };
    let slot = label_chars * char_w.max(1.0) + 3.0 * char_w.max(1.0);
    let max = if width.is_finite() && width > 0.0 {
        ((width / slot).floor() as usize).clamp(1, 12)
    } else {
        1
    };
    if span <= 0 {
        return vec![(d0, format_date(d0))];
    }
    if !month_mode {
        let steps = [1i64, 2, 3, 5, 7, 10, 14, 21, 30, 45, 60, 90];
        let step = steps
            .iter()
            .copied()
            .find(|s| span / s < max as i64)
            .unwrap_or(span.max(1));
        return (0..=span / step)
            .filter_map(|i| d0.checked_add_signed(chrono::Duration::days(i * step)))
            .map(|d| (d, format_date(d)))
            .collect();
    }
    let m0 = i64::from(d0.year()) * 12 + i64::from(d0.month0()) + i64::from(d0.day() > 1);
    let m1 = i64::from(d1.year()) * 12 + i64::from(d1.month0());
    let months = [1i64, 2, 3, 4, 6, 12, 24, 36, 60, 120, 240, 600, 1200];
    let count = |k: i64| {
        let first = m0.div_euclid(k) * k + if m0.rem_euclid(k) == 0 { 0 } else { k };
        if first > m1 {
            0
        } else {
            (m1 - first) / k + 1
        }
    };
    let k = months
        .iter()
        .copied()
        .find(|&k| count(k) <= max as i64)
        .unwrap_or(1200);
    let first = m0.div_euclid(k) * k + if m0.rem_euclid(k) == 0 { 0 } else { k };
    let mut out = Vec::new();
    let mut m = first;
    while m <= m1 && out.len() < 24 {
        let (y, mo) = (m.div_euclid(12), m.rem_euclid(12));
        if let Some(d) = i32::try_from(y)
            .ok()
            .and_then(|y| NaiveDate::from_ymd_opt(y, mo as u32 + 1, 1))
        {
            out.push((d, format_month(d)));
        }
        m += k;
    }
    if out.is_empty() {
        out.push((d0, format_month(d0)));
    }
    out
}

/// Flows legend items of the given widths into rows no wider than `avail`,
/// `gap` apart. Returns each item's (x offset, row).
pub(crate) fn legend_flow(widths: &[f64], avail: f64, gap: f64) -> Vec<(f64, usize)> {
    let mut out = Vec::with_capacity(widths.len());
    let (mut x, mut row) = (0.0, 0);
    for &w in widths {
        if x > 0.0 && x + w > avail {
            x = 0.0;
            row += 1;
        }
        out.push((x, row));
        x += w + gap;
    }
    out
}

/// `#rrggbb`.
pub(crate) fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

// ---------------------------------------------------------------------------
// Text, in the embedded font.
// ---------------------------------------------------------------------------

/// Width in logical pixels of `text` at `px` logical pixels per em.
fn text_width(text: &str, px: f64, w: Weight) -> f64 {
    font::text_width(text, px, w)
}

/// `text` cut with `…` so it fits in `max` logical pixels at `px`.
fn fit_text(text: &str, px: f64, w: Weight, max: f64) -> String {
    font::fit(text, px, w, max)
}

// ---------------------------------------------------------------------------
// Raster canvas.
// ---------------------------------------------------------------------------

/// A pixmap with a logical-to-physical scale.
struct Canvas {
    pm: Pixmap,
    scale: u32,
}

impl Canvas {
    /// Fills physical pixels `[x0, x1) x [y0, y1)` with an opaque colour.
    fn fill_phys(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        let (w, h) = (i64::from(self.pm.width()), i64::from(self.pm.height()));
        let (x0, x1) = (x0.clamp(0, w), x1.clamp(0, w));
        let (y0, y1) = (y0.clamp(0, h), y1.clamp(0, h));
        let Some(px) = PremultipliedColorU8::from_rgba(c[0], c[1], c[2], 255) else {
            return;
        };
        let pixels = self.pm.pixels_mut();
        for y in y0..y1 {
            let row = (y * w) as usize;
            if let Some(slice) = pixels.get_mut(row + x0 as usize..row + x1 as usize) {
                slice.fill(px);
            }
        }
    }

    /// Physical pixel of a logical coordinate.
    fn phys(&self, v: f64) -> i64 {
        (v * f64::from(self.scale)).round() as i64
    }

    /// A crisp horizontal line one logical pixel thick.
    fn hline(&mut self, x0: f64, x1: f64, y: f64, c: [u8; 3]) {
        let (a, b, t) = (self.phys(x0), self.phys(x1), self.phys(y.floor()));
        self.fill_phys(a, t, b, t + i64::from(self.scale), c);
    }

    /// A crisp vertical line one logical pixel thick.
    fn vline(&mut self, x: f64, y0: f64, y1: f64, c: [u8; 3]) {
        let (a, b, l) = (self.phys(y0), self.phys(y1), self.phys(x.floor()));
        self.fill_phys(l, a, l + i64::from(self.scale), b, c);
    }

    /// A crisp logical rectangle.
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, c: [u8; 3]) {
        let (x0, y0) = (self.phys(x), self.phys(y));
        let (x1, y1) = (self.phys(x + w), self.phys(y + h));
        self.fill_phys(x0, y0, x1, y1, c);
    }

    /// Draws `text` with its baseline's left end at logical (`x`,
    /// `baseline`), `px` logical pixels per em, antialiased over what is
    /// already there.
    fn text(&mut self, text: &str, x: f64, baseline: f64, px: f64, w: Weight, c: [u8; 3]) {
        let s = f64::from(self.scale);
        let (pw, ph) = (i64::from(self.pm.width()), i64::from(self.pm.height()));
        let pixels = self.pm.pixels_mut();
        font::rasterize(text, px * s, w, (x * s, baseline * s), |gx, gy, cov| {
            if gx < 0 || gy < 0 || gx >= pw || gy >= ph || cov <= 0.0 {
                return;
            }
            let Some(p) = pixels.get_mut((gy * pw + gx) as usize) else {
                return;
            };
            let a = cov.min(1.0);
            let mix = |fg: u8, bg: u8| -> u8 {
                (f32::from(fg) * a + f32::from(bg) * (1.0 - a)).round() as u8
            };
            // The canvas is opaque (white first), so premultiplied = straight.
            let (r, g, b) = (
                mix(c[0], p.red()),
                mix(c[1], p.green()),
                mix(c[2], p.blue()),
            );
            if let Some(n) = PremultipliedColorU8::from_rgba(r, g, b, 255) {
                *p = n;
            }
        });
    }

    fn paint(c: [u8; 3]) -> Paint<'static> {
        let mut p = Paint::default();
        p.set_color_rgba8(c[0], c[1], c[2], 255);
        p.anti_alias = true;
        p
    }

    /// An antialiased polyline through logical points.
    fn polyline(&mut self, pts: &[(f64, f64)], width: f32, c: [u8; 3]) {
        let mut pb = PathBuilder::new();
        for (i, &(x, y)) in pts.iter().enumerate() {
            if i == 0 {
                pb.move_to(x as f32, y as f32);
            } else {
                pb.line_to(x as f32, y as f32);
            }
        }
        let Some(path) = pb.finish() else { return };
        let stroke = Stroke {
            width,
            line_cap: LineCap::Round,
            line_join: LineJoin::Round,
            ..Stroke::default()
        };
        let s = self.scale as f32;
        self.pm.stroke_path(
            &path,
            &Self::paint(c),
            &stroke,
            Transform::from_scale(s, s),
            None,
        );
    }

    /// An antialiased filled circle in logical coordinates.
    fn dot(&mut self, x: f64, y: f64, r: f32, c: [u8; 3]) {
        let Some(path) = PathBuilder::from_circle(x as f32, y as f32, r) else {
            return;
        };
        let s = self.scale as f32;
        self.pm.fill_path(
            &path,
            &Self::paint(c),
            FillRule::Winding,
            Transform::from_scale(s, s),
            None,
        );
    }
}

// ---------------------------------------------------------------------------
// PNG line chart.
// ---------------------------------------------------------------------------

const WHITE: [u8; 3] = [255, 255, 255];
const TITLE_INK: [u8; 3] = [0x1f, 0x23, 0x28];
const LABEL_INK: [u8; 3] = [0x57, 0x60, 0x6a];
const GRID: [u8; 3] = [0xea, 0xec, 0xef];
const AXIS: [u8; 3] = [0x8c, 0x95, 0x9f];
const MARGIN: f64 = 16.0;
/// Title size (bold), logical pixels per em.
const TITLE_PX: f64 = 15.0;
/// Legend text size.
const LEGEND_PX: f64 = 12.0;
/// Tick label size.
const LABEL_PX: f64 = 11.0;
/// "No data yet" size.
const EMPTY_PX: f64 = 16.0;
const SWATCH_W: f64 = 18.0;
const LEGEND_GAP: f64 = 20.0;
const LEGEND_ROW: f64 = 18.0;

/// Where things go in a PNG chart, in logical pixels.
struct PngLayout {
    title: String,
    /// Title baseline.
    title_y: f64,
    /// Each legend entry: left x, row's middle y, shown name.
    legend: Vec<(f64, f64, String)>,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    axis: Axis,
    x: Scale,
    y: Scale,
    xticks: Vec<(NaiveDate, String)>,
}

/// Lays out a non-empty chart.
fn png_layout(
    title: &str,
    series: &[Series],
    ext: Extent,
    size: (f64, f64),
    fmt: YFormat,
) -> PngLayout {
    let (w, h) = size;
    let title = fit_text(title, TITLE_PX, Weight::Bold, w - 2.0 * MARGIN);
    let mut top = MARGIN;
    let title_y = top + font::ascent(TITLE_PX, Weight::Bold);
    if !title.is_empty() {
        top += TITLE_PX * 1.25 + 8.0;
    }
    let names: Vec<String> = series
        .iter()
        .map(|s| {
            fit_text(
                &s.name,
                LEGEND_PX,
                Weight::Regular,
                w - 2.0 * MARGIN - SWATCH_W - 6.0,
            )
        })
        .collect();
    let widths: Vec<f64> = names
        .iter()
        .map(|n| SWATCH_W + 6.0 + text_width(n, LEGEND_PX, Weight::Regular))
        .collect();
    let flow = legend_flow(&widths, w - 2.0 * MARGIN, LEGEND_GAP);
    let rows = flow.last().map_or(0, |&(_, r)| r + 1);
    let legend = flow
        .iter()
        .zip(names)
        .map(|(&(x, r), n)| {
            (
                MARGIN + x,
                top + r as f64 * LEGEND_ROW + LEGEND_ROW / 2.0,
                n,
            )
        })
        .collect();
    top += rows as f64 * LEGEND_ROW + 12.0;
    let bottom = (h - MARGIN - LABEL_PX * 1.2 - 8.0).max(top + 1.0);
    let target = tick_target(bottom - top, 44.0);
    let axis = value_axis(ext.v0, ext.v1, target, fmt);
    let label_w = axis
        .ticks
        .iter()
        .map(|&t| text_width(&format_tick(t, &axis, fmt), LABEL_PX, Weight::Regular))
        .fold(0.0, f64::max);
    let left = (MARGIN + label_w + 10.0).min(w / 2.0);
    let right = (w - MARGIN).max(left + 1.0);
    let y = Scale {
        d0: axis.lo,
        d1: axis.hi,
        r0: bottom,
        r1: top,
    };
    // Inset the x range a little so single points and end caps stay inside.
    let x = Scale {
        d0: day_number(ext.d0),
        d1: day_number(ext.d1),
        r0: left + 6.0,
        r1: right - 6.0,
    };
    let xticks = date_ticks(ext.d0, ext.d1, right - left, 8.0);
    PngLayout {
        title,
        title_y,
        legend,
        left,
        right,
        top,
        bottom,
        axis,
        x,
        y,
        xticks,
    }
}

/// Renders a line chart as PNG bytes.
///
/// White background, a bold title at the top, a legend row with each
/// series' colour and name, about five nice y gridlines with labels
/// formatted per `y`, date labels under tick marks on the x axis
/// (`YYYY-MM-DD`, or `MMM YY` for spans over about three months), 2 px
/// antialiased lines with a dot on each series' last point. All text is set
/// in the embedded DejaVu Sans ([`super::font`]), antialiased at any scale.
/// `width` x `height` are logical pixels; the image is `width * scale` x
/// `height * scale` physical pixels.
///
/// No series or no finite points gives an image saying "No data yet"; a
/// series with one point is drawn as a dot; NaN/inf points are skipped.
///
/// # Errors
/// A zero or too large (over 8192 physical pixels a side) size or scale, or
/// a PNG encoding failure.
pub fn line_chart_png(
    title: &str,
    series: &[Series],
    width: u32,
    height: u32,
    scale: u32,
    y: YFormat,
) -> Result<Vec<u8>, String> {
    let pw = width.checked_mul(scale).filter(|&v| v > 0 && v <= MAX_SIDE);
    let ph = height
        .checked_mul(scale)
        .filter(|&v| v > 0 && v <= MAX_SIDE);
    let (Some(pw), Some(ph)) = (pw, ph) else {
        return Err(format!(
            "chart size {width}x{height} at scale {scale} is empty or over {MAX_SIDE} pixels a side"
        ));
    };
    let pm = Pixmap::new(pw, ph).ok_or_else(|| "cannot allocate the chart pixmap".to_string())?;
    let mut cv = Canvas { pm, scale };
    cv.rect(0.0, 0.0, f64::from(width), f64::from(height), WHITE);
    let size = (f64::from(width), f64::from(height));
    let clean = clean_series(series);
    match Extent::of(&clean) {
        Some(ext) => draw_lines(&mut cv, title, series, &clean, ext, size, y),
        None => draw_empty(&mut cv, title, size),
    }
    cv.pm.encode_png().map_err(|e| format!("PNG encoding: {e}"))
}

/// The "No data yet" image.
fn draw_empty(cv: &mut Canvas, title: &str, (w, h): (f64, f64)) {
    let title = fit_text(title, TITLE_PX, Weight::Bold, w - 2.0 * MARGIN);
    let ty = MARGIN + font::ascent(TITLE_PX, Weight::Bold);
    cv.text(&title, MARGIN, ty, TITLE_PX, Weight::Bold, TITLE_INK);
    let px = if w >= 2.0 * text_width(NO_DATA, EMPTY_PX, Weight::Regular) + 2.0 * MARGIN {
        EMPTY_PX
    } else {
        LABEL_PX
    };
    let tw = text_width(NO_DATA, px, Weight::Regular);
    let x = ((w - tw) / 2.0).floor();
    let y = (h / 2.0 + font::cap_height(px) / 2.0).round();
    cv.text(NO_DATA, x, y, px, Weight::Regular, LABEL_INK);
}

/// Everything of a chart with data.
fn draw_lines(
    cv: &mut Canvas,
    title: &str,
    series: &[Series],
    clean: &[Points],
    ext: Extent,
    size: (f64, f64),
    fmt: YFormat,
) {
    let l = png_layout(title, series, ext, size, fmt);
    cv.text(
        &l.title,
        MARGIN,
        l.title_y,
        TITLE_PX,
        Weight::Bold,
        TITLE_INK,
    );
    let half_cap = font::cap_height(LEGEND_PX) / 2.0;
    for ((x, y, name), s) in l.legend.iter().zip(series) {
        cv.polyline(&[(x + 1.0, *y), (x + SWATCH_W - 1.0, *y)], 3.0, s.color);
        cv.text(
            name,
            x + SWATCH_W + 6.0,
            (y + half_cap).round(),
            LEGEND_PX,
            Weight::Regular,
            LABEL_INK,
        );
    }
    // Gridlines and y labels.
    let half_cap = font::cap_height(LABEL_PX) / 2.0;
    for &t in &l.axis.ticks {
        let ty = l.y.map(t).round();
        let ink = if t == 0.0 && ty < l.bottom - 0.5 {
            AXIS
        } else {
            GRID
        };
        cv.hline(l.left, l.right, ty, ink);
        let label = format_tick(t, &l.axis, fmt);
        let lx = l.left - 10.0 - text_width(&label, LABEL_PX, Weight::Regular);
        let by = (ty + half_cap).max(l.top.min(ty) + 2.0 * half_cap);
        cv.text(&label, lx, by, LABEL_PX, Weight::Regular, LABEL_INK);
    }
    // X axis, ticks and date labels.
    cv.hline(l.left, l.right, l.bottom.round(), AXIS);
    let mut last_end = f64::NEG_INFINITY;
    let base = l.bottom + 8.0 + font::ascent(LABEL_PX, Weight::Regular);
    for (d, label) in &l.xticks {
        let tx = l.x.map_date(*d).round();
        cv.vline(tx, l.bottom.round(), l.bottom.round() + 5.0, AXIS);
        let tw = text_width(label, LABEL_PX, Weight::Regular);
        let lx = (tx - tw / 2.0)
            .min(size.0 - MARGIN / 2.0 - tw)
            .max(MARGIN / 2.0);
        if lx > last_end + 8.0 {
            cv.text(
                label,
                lx,
                base.round(),
                LABEL_PX,
                Weight::Regular,
                LABEL_INK,
            );
            last_end = lx + tw;
        }
    }
    // Lines, in order, so later series draw on top; then a dot on each
    // series' last point.
    let mut ends = Vec::new();
    for (s, pts) in series.iter().zip(clean) {
        let xy: Vec<(f64, f64)> = pts
            .iter()
            .map(|&(d, v)| (l.x.map_date(d), l.y.map(v)))
            .collect();
        match xy.as_slice() {
            [] => {}
            [(x, y)] => cv.dot(*x, *y, 3.5, s.color),
            [.., (x, y)] => {
                cv.polyline(&xy, 2.0, s.color);
                ends.push((*x, *y, s.color));
            }
        }
    }
    for (x, y, c) in ends {
        cv.dot(x, y, 4.0, WHITE);
        cv.dot(x, y, 3.0, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn sample() -> Vec<Series> {
        let start = d(2025, 1, 2);
        let mut a = Vec::new();
        let mut b = Vec::new();
        for i in 0..120 {
            let day = start + chrono::Duration::days(i);
            let t = i as f64;
            a.push((day, 1_000_000.0 + 2_000.0 * t + 15_000.0 * (t / 7.0).sin()));
            b.push((day, 1_000_000.0 + 900.0 * t));
        }
        vec![
            Series {
                name: "Desk equity".into(),
                color: [0x09, 0x69, 0xda],
                points: a,
            },
            Series {
                name: "SPY buy & hold".into(),
                color: [0xbf, 0x39, 0x89],
                points: b,
            },
        ]
    }

    fn decode(png: &[u8]) -> Pixmap {
        Pixmap::decode_png(png).expect("valid PNG")
    }

    fn rgb(pm: &Pixmap, x: u32, y: u32) -> [u8; 3] {
        let c = pm.pixel(x, y).unwrap().demultiply();
        [c.red(), c.green(), c.blue()]
    }

    fn close(a: [u8; 3], b: [u8; 3], tol: i32) -> bool {
        a.iter()
            .zip(b)
            .all(|(&x, y)| (i32::from(x) - i32::from(y)).abs() <= tol)
    }

    /// Pixels close to `c` inside the physical window around (x, y).
    fn count_near(pm: &Pixmap, c: [u8; 3], x: f64, y: f64, r: i64) -> usize {
        let mut n = 0;
        for py in (y as i64 - r).max(0)..(y as i64 + r).min(i64::from(pm.height())) {
            for px in (x as i64 - r).max(0)..(x as i64 + r).min(i64::from(pm.width())) {
                if close(rgb(pm, px as u32, py as u32), c, 40) {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn png_has_right_dimensions_and_ink() {
        for scale in [1, 2] {
            let png = line_chart_png("Equity", &sample(), 640, 320, scale, YFormat::Money).unwrap();
            let pm = decode(&png);
            assert_eq!((pm.width(), pm.height()), (640 * scale, 320 * scale));
            let ink = (0..pm.height())
                .flat_map(|y| (0..pm.width()).map(move |x| (x, y)))
                .filter(|&(x, y)| rgb(&pm, x, y) != WHITE)
                .count();
            assert!(ink > 2000 * (scale * scale) as usize, "ink {ink}");
        }
    }

    #[test]
    fn each_series_is_drawn_where_its_line_should_be() {
        let series = sample();
        for scale in [1u32, 2] {
            let png = line_chart_png("Equity", &series, 640, 320, scale, YFormat::Money).unwrap();
            let pm = decode(&png);
            let clean = clean_series(&series);
            let ext = Extent::of(&clean).unwrap();
            let l = png_layout("Equity", &series, ext, (640.0, 320.0), YFormat::Money);
            let s = f64::from(scale);
            for (ser, pts) in series.iter().zip(&clean) {
                for &(day, v) in [pts[10], pts[60], pts[110]].iter() {
                    let (x, y) = (l.x.map_date(day) * s, l.y.map(v) * s);
                    let n = count_near(&pm, ser.color, x, y, 4 * i64::from(scale));
                    assert!(n >= 2, "{} at {day}: {n} pixels", ser.name);
                }
            }
        }
    }

    #[test]
    fn plot_area_is_inked_and_text_is_antialiased_type() {
        let series = sample();
        let png = line_chart_png("Equity", &series, 760, 360, 2, YFormat::Money).unwrap();
        let pm = decode(&png);
        assert_eq!((pm.width(), pm.height()), (1520, 720));
        let clean = clean_series(&series);
        let ext = Extent::of(&clean).unwrap();
        let l = png_layout("Equity", &series, ext, (760.0, 360.0), YFormat::Money);
        assert!(l.left > MARGIN && l.right <= 760.0 - MARGIN + 0.5);
        assert!(l.top > MARGIN + TITLE_PX && l.bottom < 360.0 - MARGIN);
        // Inside the plot: each series' colour, plenty of it.
        let inside = |x: u32, y: u32| {
            let (lx, ly) = (f64::from(x) / 2.0, f64::from(y) / 2.0);
            lx > l.left + 1.0 && lx < l.right - 1.0 && ly > l.top + 1.0 && ly < l.bottom - 1.0
        };
        for s in &series {
            let n = (0..pm.height())
                .flat_map(|y| (0..pm.width()).map(move |x| (x, y)))
                .filter(|&(x, y)| inside(x, y) && close(rgb(&pm, x, y), s.color, 30))
                .count();
            assert!(n > 1500, "{}: {n} pixels in the plot", s.name);
        }
        // Left of the plot, the y labels: antialiased glyph edges (greys
        // between the ink and white), not only solid bitmap pixels.
        let (mut solid, mut edge) = (0, 0);
        for y in (l.top as u32 * 2)..(l.bottom as u32 * 2) {
            for x in 0..(l.left as u32 * 2 - 4) {
                let c = rgb(&pm, x, y);
                if c == LABEL_INK {
                    solid += 1;
                } else if c != WHITE && c[0] > LABEL_INK[0] {
                    edge += 1;
                }
            }
        }
        assert!(solid > 200 && edge > 200, "solid {solid}, edge {edge}");
        // The bold title is darker and heavier than the labels.
        let title_ink = (0..(l.top as u32 * 2))
            .flat_map(|y| (0..pm.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| rgb(&pm, x, y) == TITLE_INK)
            .count();
        assert!(title_ink > 300, "{title_ink}");
    }

    #[test]
    fn empty_inputs_say_no_data() {
        let blank = Series {
            name: "x".into(),
            color: [255, 0, 0],
            points: vec![(d(2025, 1, 1), f64::NAN)],
        };
        for input in [vec![], vec![blank]] {
            let png = line_chart_png("Equity", &input, 400, 200, 2, YFormat::Percent).unwrap();
            let pm = decode(&png);
            assert_eq!((pm.width(), pm.height()), (800, 400));
            // Some text ink in the middle band, none of the series colour.
            let mid = (150..250)
                .flat_map(|y| (0..800).map(move |x| (x, y)))
                .filter(|&(x, y)| rgb(&pm, x, y) == LABEL_INK)
                .count();
            assert!(mid > 100, "{mid}");
            assert_eq!(count_near(&pm, [255, 0, 0], 400.0, 200.0, 400), 0);
        }
    }

    #[test]
    fn deterministic() {
        let a = line_chart_png("Equity", &sample(), 600, 300, 2, YFormat::Money).unwrap();
        let b = line_chart_png("Equity", &sample(), 600, 300, 2, YFormat::Money).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn single_point_and_flat_and_nan() {
        let one = Series {
            name: "one".into(),
            color: [200, 0, 0],
            points: vec![(d(2025, 3, 1), 0.02), (d(2025, 3, 2), f64::INFINITY)],
        };
        let png = line_chart_png(
            "t",
            std::slice::from_ref(&one),
            300,
            200,
            1,
            YFormat::Percent,
        )
        .unwrap();
        let pm = decode(&png);
        let clean = clean_series(std::slice::from_ref(&one));
        let ext = Extent::of(&clean).unwrap();
        assert_eq!(ext.v0, 0.02);
        let l = png_layout(
            "t",
            std::slice::from_ref(&one),
            ext,
            (300.0, 200.0),
            YFormat::Percent,
        );
        let (x, y) = (l.x.map_date(ext.d0), l.y.map(0.02));
        assert!(count_near(&pm, one.color, x, y, 3) >= 9);
        assert!(l.axis.lo < 0.02 && l.axis.hi > 0.02);

        let flat = Series {
            name: "flat".into(),
            color: [0, 120, 0],
            points: (1..20).map(|i| (d(2025, 3, i), 500.0)).collect(),
        };
        let png = line_chart_png("flat", &[flat], 300, 200, 1, YFormat::Money).unwrap();
        assert!(decode(&png).width() == 300);
    }

    #[test]
    fn odd_sizes_do_not_panic() {
        let s = sample();
        assert!(line_chart_png("x", &s, 0, 100, 1, YFormat::Money).is_err());
        assert!(line_chart_png("x", &s, 100, 100, 0, YFormat::Money).is_err());
        assert!(line_chart_png("x", &s, u32::MAX, 100, 2, YFormat::Money).is_err());
        let long_title = "a very long title indeed ".repeat(20_000);
        for (w, h) in [(1, 1), (20, 10), (60, 40), (2000, 50)] {
            let png = line_chart_png(&long_title, &s, w, h, 1, YFormat::Number);
            assert!(png.is_ok(), "{w}x{h}");
        }
        let huge = Series {
            name: "huge".into(),
            color: [1, 2, 3],
            points: vec![(d(2025, 1, 1), -f64::MAX), (d(2025, 1, 2), f64::MAX)],
        };
        assert!(line_chart_png("x", &[huge], 300, 200, 1, YFormat::Money).is_ok());
        let far = Series {
            name: "far".into(),
            color: [1, 2, 3],
            points: vec![(NaiveDate::MIN, 1.0), (NaiveDate::MAX, 2.0)],
        };
        assert!(line_chart_png("x", &[far], 300, 200, 1, YFormat::Money).is_ok());
    }

    #[test]
    fn axis_is_nice() {
        let a = value_axis(0.0, 0.97, 5, YFormat::Number);
        assert_eq!(a.lo, 0.0);
        assert!((a.hi - 1.0).abs() < 1e-12);
        assert_eq!(a.ticks.len(), 6);
        let a = value_axis(3.0, 3.0, 5, YFormat::Number);
        assert!(a.lo < 3.0 && a.hi > 3.0);
        let a = value_axis(0.0, 0.0, 5, YFormat::Percent);
        assert!(a.lo < 0.0 && a.hi > 0.0);
        let a = value_axis(f64::NAN, 1.0, 5, YFormat::Number);
        assert!(a.lo.is_finite() && a.hi.is_finite());
        let labels: Vec<String> = value_axis(0.0, 0.3, 3, YFormat::Number)
            .ticks
            .iter()
            .map(|&t| {
                format_tick(
                    t,
                    &value_axis(0.0, 0.3, 3, YFormat::Number),
                    YFormat::Number,
                )
            })
            .collect();
        assert_eq!(labels, ["0.0", "0.1", "0.2", "0.3"]);
    }

    #[test]
    fn formats() {
        assert_eq!(format_value(0.05, YFormat::Percent), "+5.0%");
        assert_eq!(format_value(-0.1234, YFormat::Percent), "-12.3%");
        assert_eq!(format_value(0.0, YFormat::Percent), "0.0%");
        assert_eq!(format_value(0.0012, YFormat::Percent), "+0.12%");
        assert_eq!(format_value(412_500.0, YFormat::Money), "$412,500");
        assert_eq!(format_value(1_234_567.0, YFormat::Money), "$1.2M");
        assert_eq!(format_value(-45.5, YFormat::Money), "-$45.50");
        assert_eq!(format_value(2.5e9, YFormat::Money), "$2.5B");
        assert_eq!(format_value(0.1 + 0.2, YFormat::Number), "0.3");
        assert_eq!(format_value(-1234.5, YFormat::Number), "-1,234.5");
        assert_eq!(format_value(-0.0001, YFormat::Number), "0");
        assert_eq!(format_value(f64::NAN, YFormat::Number), "n/a");
        let ax = value_axis(1_000_000.0, 1_200_000.0, 4, YFormat::Money);
        assert_eq!(format_tick(1_050_000.0, &ax, YFormat::Money), "$1.05M");
        let ax = value_axis(0.0, 400_000.0, 4, YFormat::Money);
        assert_eq!(format_tick(100_000.0, &ax, YFormat::Money), "$100,000");
        let ax = value_axis(-0.1, 0.1, 4, YFormat::Percent);
        assert_eq!(format_tick(0.05, &ax, YFormat::Percent), "+5%");
        assert_eq!(format_tick(0.0, &ax, YFormat::Percent), "0%");
        assert_eq!(format_tick(-0.1, &ax, YFormat::Percent), "-10%");
        assert_eq!(fmt_num(0.1 + 0.2), "0.3");
        assert_eq!(fmt_num(-0.001), "0");
        assert_eq!(fmt_num(12.0), "12");
        assert_eq!(fmt_plain(0.1 + 0.2), "0.3");
        assert_eq!(fmt_plain(412_500.25), "412500.25");
        assert_eq!(fmt_plain(-1e-7), "-0.0000001");
        assert_eq!(fmt_plain(f64::INFINITY), "NaN");
    }

    #[test]
    fn date_tick_modes() {
        let t = date_ticks(d(2025, 1, 1), d(2025, 1, 31), 500.0, 7.0);
        assert!(t.len() >= 3 && t.len() <= 7, "{t:?}");
        assert_eq!(t[0].1, "2025-01-01");
        let t = date_ticks(d(2024, 1, 15), d(2025, 6, 1), 500.0, 7.0);
        assert!(t.len() >= 3 && t.len() <= 8, "{t:?}");
        assert!(t.iter().all(|(d, l)| d.day() == 1 && l.len() == 6), "{t:?}");
        let t = date_ticks(d(2025, 1, 1), d(2025, 1, 1), 500.0, 7.0);
        assert_eq!(t.len(), 1);
        let t = date_ticks(NaiveDate::MIN, NaiveDate::MAX, 500.0, 7.0);
        assert!(!t.is_empty());
    }

    #[test]
    fn legend_wraps() {
        let f = legend_flow(&[100.0, 100.0, 100.0], 250.0, 10.0);
        assert_eq!(f, [(0.0, 0), (110.0, 0), (0.0, 1)]);
    }
}
