//! Two small inline-SVG charts: a line chart (the trend of a metric over
//! runs) and a histogram (latency). Every mark carries its data in `data-*`
//! attributes, so tests and scripts can read what was drawn.

use super::escape;
use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 220.0;
const PAD: f64 = 36.0;

/// A line chart of `points` (label, value), values on a 0..1 axis when they
/// all lie in it, else on their own range.
pub fn line_chart(
    id: &str,
    title: &str,
    points: &[(String, f64)],
    highlight: Option<usize>,
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" id="{id}" data-chart="line" data-points="{}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        points.len(),
        escape(title)
    );
    let _ = write!(out, r#"<title>{}</title>"#, escape(title));
    let (mut lo, mut hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), (_, v)| {
            (l.min(*v), h.max(*v))
        });
    if points.is_empty() || (lo >= 0.0 && hi <= 1.0) {
        (lo, hi) = (0.0, 1.0);
    } else if hi - lo < 1e-12 {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    axes(&mut out, lo, hi);
    let n = points.len();
    let x = |i: usize| {
        PAD + if n > 1 {
            i as f64 * (W - 2.0 * PAD) / (n - 1) as f64
        } else {
            (W - 2.0 * PAD) / 2.0
        }
    };
    let y = |v: f64| H - PAD - (v - lo) / (hi - lo) * (H - 2.0 * PAD);
    if n > 1 {
        let pts: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, (_, v))| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            out,
            r##"<polyline fill="none" stroke="#2563eb" stroke-width="2" points="{}"/>"##,
            pts.join(" ")
        );
    }
    for (i, (label, v)) in points.iter().enumerate() {
        let r = if highlight == Some(i) { 6 } else { 4 };
        let _ = write!(
            out,
            r##"<circle class="point" cx="{:.1}" cy="{:.1}" r="{r}" fill="#2563eb" data-value="{v}"><title>{}: {v:.4}</title></circle>"##,
            x(i),
            y(*v),
            escape(label)
        );
    }
    out.push_str("</svg>");
    out
}

/// A histogram of `values` in `bins` equal-width bins.
pub fn histogram(id: &str, title: &str, values: &[f64], bins: usize) -> String {
    let mut out = String::new();
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let _ = write!(
        out,
        r#"<svg class="chart" id="{id}" data-chart="histogram" data-values="{}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        finite.len(),
        escape(title)
    );
    let _ = write!(out, r#"<title>{}</title>"#, escape(title));
    let bins = bins.max(1);
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    let mut counts = vec![0u64; bins];
    if !finite.is_empty() {
        let width = ((hi - lo) / bins as f64).max(1e-12);
        for v in &finite {
            counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
        }
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    axes(&mut out, 0.0, max);
    let bw = (W - 2.0 * PAD) / bins as f64;
    for (i, c) in counts.iter().enumerate() {
        let h = *c as f64 / max * (H - 2.0 * PAD);
        let (from, to) = if finite.is_empty() {
            (0.0, 0.0)
        } else {
            let width = (hi - lo) / bins as f64;
            (lo + i as f64 * width, lo + (i + 1) as f64 * width)
        };
        let _ = write!(
            out,
            r##"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#16a34a" data-count="{c}"><title>{from:.1}–{to:.1} ms: {c}</title></rect>"##,
            PAD + i as f64 * bw + 1.0,
            H - PAD - h,
            (bw - 2.0).max(1.0)
        );
    }
    if !finite.is_empty() {
        let _ = write!(
            out,
            r##"<text x="{PAD}" y="{}" font-size="11">{lo:.1} ms</text><text x="{}" y="{}" font-size="11" text-anchor="end">{hi:.1} ms</text>"##,
            H - PAD + 14.0,
            W - PAD,
            H - PAD + 14.0
        );
    }
    out.push_str("</svg>");
    out
}

fn axes(out: &mut String, lo: f64, hi: f64) {
    let _ = write!(
        out,
        r##"<line x1="{PAD}" y1="{}" x2="{}" y2="{}" stroke="#999"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{}" stroke="#999"/><text x="4" y="{}" font-size="11">{}</text><text x="4" y="{}" font-size="11">{}</text>"##,
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD,
        H - PAD,
        trim(lo),
        PAD + 4.0,
        trim(hi)
    );
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
