//! The self-contained HTML page of a run: no external file, font or script.
//!
//! A short inline script, run after layout, counts the charts whose marks
//! have a drawn size and writes the count into `body[data-charts-drawn]`,
//! so a headless browser's DOM dump shows that the charts were drawn.

use super::{ReportInput, escape, gate_condition, main_metric, svg};
use std::fmt::Write;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#111}table{border-collapse:collapse;margin:1em 0}\
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f4f6}td.l,th.l{text-align:left}\
.pass{color:#15803d;font-weight:600}.fail{color:#b91c1c;font-weight:600}.diff{color:#b45309}code{background:#f3f4f6;padding:0 3px}";

const SCRIPT: &str = "window.addEventListener('load',function(){var n=0;document.querySelectorAll('svg.chart').forEach(function(s){\
var marks=s.querySelectorAll('circle.point,rect.bar,polyline');var drawn=0;marks.forEach(function(m){var b=m.getBBox();if(b.width>0||b.height>0)drawn++;});\
s.setAttribute('data-drawn-marks',drawn);if(drawn>0)n++;});document.body.setAttribute('data-charts-drawn',n);});";

/// The page.
pub fn render(input: &ReportInput) -> String {
    let s = &input.summary;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>vigil: {} / {} ({})</title><style>{STYLE}</style></head><body data-charts-drawn=\"0\">",
        escape(&s.suite),
        escape(&s.target),
        escape(&s.run_id)
    );
    let verdict = if s.passed {
        "<span class=\"pass\">PASSED</span>"
    } else {
        "<span class=\"fail\">FAILED</span>"
    };
    let _ = write!(
        out,
        "<h1>{} / {} {verdict}</h1><p>run <code>{}</code>, model <code>{}</code>, {} → {} ({:.1} s)</p>",
        escape(&s.suite),
        escape(&s.target),
        escape(&s.run_id),
        escape(&s.model),
        escape(&s.started_at),
        escape(&s.finished_at),
        s.duration_s
    );
    let _ = write!(
        out,
        "<table><tr><th>items</th><th>scored</th><th>failed</th><th>cached</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>items/s</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr></table>",
        s.items_total,
        s.items_scored,
        s.items_failed,
        s.items_cached,
        s.latency_ms.p50,
        s.latency_ms.p95,
        s.latency_ms.p99,
        s.items_per_s
    );
    if let Some(note) = super::table::cached_note(s) {
        let _ = write!(out, "<p class=\"fail\">{}</p>", escape(&note));
    }

    out.push_str("<h2>Scores</h2><table><tr><th class=\"l\">scorer</th><th>pass rate</th><th>95% CI</th><th>mean</th><th>n</th></tr>");
    for (name, sc) in &s.scores {
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td>{:.4}</td><td>{:.4} – {:.4}</td><td>{:.4}</td><td>{}</td></tr>",
            escape(name),
            sc.pass_rate,
            sc.ci_low,
            sc.ci_high,
            sc.mean,
            sc.n
        );
    }
    out.push_str("</table>");

    if !s.gates.is_empty() {
        out.push_str("<h2>Gates</h2><table><tr><th class=\"l\">gate</th><th>value</th><th class=\"l\">verdict</th><th class=\"l\">detail</th></tr>");
        for g in &s.gates {
            let _ = write!(
                out,
                "<tr><td class=\"l\">{}</td><td>{}</td><td class=\"l {}\">{}</td><td class=\"l\">{}</td></tr>",
                escape(&gate_condition(g)),
                g.value
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "–".into()),
                if g.passed { "pass" } else { "fail" },
                if g.passed { "held" } else { "FAILED" },
                escape(g.detail.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table>");
    }

    if !s.slices.is_empty() {
        out.push_str("<h2>Slices</h2><table><tr><th class=\"l\">tag</th><th class=\"l\">value</th><th class=\"l\">scorer</th><th>pass rate</th><th>95% CI</th><th>mean</th><th>n</th></tr>");
        for (tag, by_value) in &s.slices {
            for (value, by_scorer) in by_value {
                for (scorer, sc) in by_scorer {
                    let _ = write!(
                        out,
                        "<tr class=\"slice\"><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.4}</td><td>{:.4} – {:.4}</td><td>{:.4}</td><td>{}</td></tr>",
                        escape(tag),
                        escape(value),
                        escape(scorer),
                        sc.pass_rate,
                        sc.ci_low,
                        sc.ci_high,
                        sc.mean,
                        sc.n
                    );
                }
            }
        }
        out.push_str("</table>");
    }

    if let Some(c) = &s.comparison {
        let _ = write!(
            out,
            "<h2>Compared with <code>{}</code> ({})</h2>",
            escape(&c.baseline_run_id),
            escape(&c.baseline_source)
        );
        if c.manifest_diffs.is_empty() {
            out.push_str("<p>Same manifest: suite, dataset, templates, scorers, model, sampling and versions.</p>");
        } else {
            out.push_str("<p class=\"diff\">The manifests differ:</p><ul>");
            for d in &c.manifest_diffs {
                let _ = write!(
                    out,
                    "<li><code>{}</code>: {} → {}</li>",
                    escape(&d.field),
                    escape(&d.baseline),
                    escape(&d.candidate)
                );
            }
            out.push_str("</ul>");
        }
        if let Some(note) = &c.note {
            let _ = write!(out, "<p>{}</p>", escape(note));
        }
        out.push_str("<table><tr><th class=\"l\">scorer</th><th class=\"l\">metric</th><th class=\"l\">slice</th><th>n</th><th>baseline</th><th>run</th><th>diff</th><th>95% CI</th><th>p (Holm)</th></tr>");
        for t in &c.tests {
            let _ = write!(
                out,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td class=\"{}\">{:+.4}</td><td>{:+.4} – {:+.4}</td><td>{:.4}</td></tr>",
                escape(&t.scorer),
                escape(&t.metric),
                escape(t.slice.as_deref().unwrap_or("all")),
                t.n,
                t.baseline,
                t.candidate,
                if t.significant && t.diff < 0.0 {
                    "fail"
                } else if t.significant {
                    "pass"
                } else {
                    ""
                },
                t.diff,
                t.ci_low,
                t.ci_high,
                t.p_adjusted
            );
        }
        out.push_str("</table><h3>Flipped items</h3><ul id=\"flipped\">");
        for t in c
            .tests
            .iter()
            .filter(|t| t.slice.is_none() && t.metric == "pass_rate")
        {
            let _ = write!(
                out,
                "<li>{}: {} pass→fail {}; {} fail→pass {}</li>",
                escape(&t.scorer),
                t.pass_to_fail,
                escape(&t.flipped_to_fail.join(", ")),
                t.fail_to_pass,
                escape(&t.flipped_to_pass.join(", "))
            );
        }
        out.push_str("</ul>");
    }

    let metric = main_metric(s);
    let name = metric
        .as_ref()
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| "pass rate".into());
    let points: Vec<(String, f64)> = input
        .history
        .iter()
        .filter_map(|h| main_metric(h).map(|(_, v)| (format!("{} {}", h.finished_at, h.run_id), v)))
        .collect();
    let highlight = input.history.iter().position(|h| h.run_id == s.run_id);
    let _ = write!(out, "<h2>Trend of {}</h2>", escape(&name));
    out.push_str(&svg::line_chart(
        "trend",
        &format!("{name} over {} runs", points.len()),
        &points,
        highlight,
    ));
    out.push_str("<h2>Latency</h2>");
    out.push_str(&svg::histogram(
        "latency",
        "backend latency, ms",
        &input.latencies_ms,
        20,
    ));
    let _ = write!(
        out,
        "<p><small>vigil {}</small></p><script>{SCRIPT}</script></body></html>",
        escape(&s.vigil_version)
    );
    out
}
