//! The charts' typeface: DejaVu Sans (regular and bold), embedded in the
//! binary, so the PNG in the email and the SVG in the dashboard are drawn with
//! the same real font on every machine, without system fonts or the network.
//!
//! The files in `assets/fonts/` are subsets of DejaVu Sans 2.37 (Latin-1 plus
//! a few punctuation marks: `– — ‘ ’ “ ” • … − € ± ↑ ↓`), under the Bitstream
//! Vera licence with DejaVu's public-domain changes (`assets/fonts/LICENSE-DejaVu.txt`).
//! Characters outside the subset are measured and drawn as `?`.
//!
//! The PNG renderer rasterises glyph outlines with `ab_glyph` (exact
//! coverage, so text is antialiased at any scale); the SVG charts measure
//! their labels here and load the same font through an `@font-face` rule
//! ([`font_face_css`]) with the WOFF2 files inlined as data URIs.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};

/// DejaVu Sans, TrueType subset (for rasterising).
const REGULAR_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// DejaVu Sans Bold, TrueType subset.
const BOLD_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");
/// The same subsets as WOFF2, for the HTML pages.
const REGULAR_WOFF2: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.woff2");
const BOLD_WOFF2: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.woff2");

/// The CSS font stack the SVG charts use: the embedded face first.
pub const FAMILY: &str = "'DejaVu Sans', 'Bitstream Vera Sans', Verdana, sans-serif";

/// Regular or bold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    Regular,
    Bold,
}

fn face(w: Weight) -> &'static FontRef<'static> {
    static REGULAR: OnceLock<FontRef<'static>> = OnceLock::new();
    static BOLD: OnceLock<FontRef<'static>> = OnceLock::new();
    let (cell, bytes) = match w {
        Weight::Regular => (&REGULAR, REGULAR_TTF),
        Weight::Bold => (&BOLD, BOLD_TTF),
    };
    cell.get_or_init(|| FontRef::try_from_slice(bytes).expect("the embedded font parses"))
}

/// The glyph of `c`, or of `?` when the subset lacks it.
fn glyph_id(f: &FontRef<'static>, c: char) -> GlyphId {
    let c = match c {
        '\t' | '\n' | '\r' => ' ',
        c => c,
    };
    let id = f.glyph_id(c);
    if id.0 == 0 && c != '\0' {
        f.glyph_id('?')
    } else {
        id
    }
}

/// Width of `text` at `px` pixels per em, with kerning.
pub fn text_width(text: &str, px: f64, w: Weight) -> f64 {
    let f = face(w);
    let sf = f.as_scaled(PxScale::from(px as f32));
    let mut width = 0.0f32;
    let mut prev: Option<GlyphId> = None;
    for c in text.chars() {
        let id = glyph_id(f, c);
        if let Some(p) = prev {
            width += sf.kern(p, id);
        }
        width += sf.h_advance(id);
        prev = Some(id);
    }
    f64::from(width)
}

/// Distance from the top of a line box to the baseline, at `px`.
pub fn ascent(px: f64, w: Weight) -> f64 {
    let f = face(w);
    f64::from(f.as_scaled(PxScale::from(px as f32)).ascent())
}

/// Height of capital letters at `px` (for centring labels on a tick).
pub fn cap_height(px: f64) -> f64 {
    // DejaVu Sans: caps are 1493 of 2048 units.
    px * 1493.0 / 2048.0
}

/// `text` cut with `…` so it fits in `max` pixels at `px` (empty when not
/// even the ellipsis fits).
pub fn fit(text: &str, px: f64, w: Weight, max: f64) -> String {
    if text_width(text, px, w) <= max {
        return text.to_string();
    }
    // Glyphs advance at least a quarter em here, so longer prefixes cannot fit.
    let most = (max.max(0.0) / (px.max(1.0) * 0.25)) as usize + 1;
    let mut s: String = text.chars().take(most).collect();
    while s.pop().is_some() {
        let t = format!("{}…", s.trim_end());
        if text_width(&t, px, w) <= max {
            return t;
        }
    }
    String::new()
}

/// Calls `plot(x, y, coverage)` for every physical pixel `text` covers, with
/// the baseline's left end at physical (`x`, `baseline`) and the glyphs
/// `px` physical pixels per em.
pub fn rasterize(
    text: &str,
    px: f64,
    w: Weight,
    (x, baseline): (f64, f64),
    mut plot: impl FnMut(i64, i64, f32),
) {
    let f = face(w);
    let scale = PxScale::from(px as f32);
    let sf = f.as_scaled(scale);
    let mut caret = x as f32;
    let mut prev: Option<GlyphId> = None;
    for c in text.chars() {
        let id = glyph_id(f, c);
        if let Some(p) = prev {
            caret += sf.kern(p, id);
        }
        let g = id.with_scale_and_position(scale, point(caret, baseline as f32));
        caret += sf.h_advance(id);
        prev = Some(id);
        if let Some(og) = f.outline_glyph(g) {
            let b = og.px_bounds();
            let (bx, by) = (b.min.x as i64, b.min.y as i64);
            og.draw(|gx, gy, cov| plot(bx + i64::from(gx), by + i64::from(gy), cov));
        }
    }
}

/// An `@font-face` rule for each weight, with the WOFF2 data inlined.
pub fn font_face_css() -> String {
    let mut css = String::new();
    for (weight, data) in [(400, REGULAR_WOFF2), (700, BOLD_WOFF2)] {
        css.push_str(&format!(
            "@font-face{{font-family:'DejaVu Sans';font-style:normal;font-weight:{weight};\
             src:url(data:font/woff2;base64,{}) format('woff2')}}",
            base64(data)
        ));
    }
    css
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_faces_load_and_measure() {
        for w in [Weight::Regular, Weight::Bold] {
            let a = text_width("Equity", 12.0, w);
            assert!(a > 20.0 && a < 60.0, "{a}");
            assert!((text_width("Equity", 24.0, w) - 2.0 * a).abs() < 0.01);
            assert_eq!(text_width("", 12.0, w), 0.0);
            // A character outside the subset measures like '?'.
            assert_eq!(text_width("\u{4e2d}", 12.0, w), text_width("?", 12.0, w));
        }
        assert!(text_width("Wide", 12.0, Weight::Bold) > text_width("Wide", 12.0, Weight::Regular));
        assert!(ascent(10.0, Weight::Regular) > 7.0);
    }

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        assert_eq!(fit("short", 12.0, Weight::Regular, 500.0), "short");
        let cut = fit("a rather long legend label", 12.0, Weight::Regular, 60.0);
        assert!(
            cut.ends_with('…') && text_width(&cut, 12.0, Weight::Regular) <= 60.0,
            "{cut}"
        );
        assert_eq!(fit("abc", 12.0, Weight::Regular, 1.0), "");
    }

    #[test]
    fn rasterize_covers_pixels_near_the_baseline() {
        let mut n = 0;
        let mut max_y = i64::MIN;
        rasterize("Hi", 20.0, Weight::Regular, (5.0, 30.0), |x, y, c| {
            assert!((5..40).contains(&x) && (10..=31).contains(&y), "{x},{y}");
            if c > 0.5 {
                n += 1;
                max_y = max_y.max(y);
            }
        });
        assert!(n > 40, "{n}");
        assert!((28..=30).contains(&max_y), "{max_y}");
    }

    #[test]
    fn base64_and_css() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        let css = font_face_css();
        assert_eq!(css.matches("@font-face").count(), 2);
        assert!(css.contains("data:font/woff2;base64,d09GMg"), "WOFF2 magic");
    }
}
