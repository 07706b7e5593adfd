//! The terminal report of a run: a compact, aligned, colourless table.

use std::fmt::Write as _;
use vigil_protocol::{Comparison, GateOutcome, RunSummary};

/// [`columns`] for the other table modules.
pub(crate) fn columns_pub(rows: &[Vec<String>]) -> String {
    columns(rows)
}

/// Lays out rows as left-aligned columns separated by two spaces. Widths
/// count chars, not bytes, so names with non-ASCII letters still line up.
fn columns(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:<w$}", w = widths[c]);
        }
        out.push_str("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A gate's bounds as `>= 0.9`, `<= 0.05`, `within [0.1, 0.2]` or `no bounds`.
fn bounds(g: &GateOutcome) -> String {
    match (g.min, g.max) {
        (Some(lo), Some(hi)) => format!("within [{lo}, {hi}]"),
        (Some(lo), None) => format!(">= {lo}"),
        (None, Some(hi)) => format!("<= {hi}"),
        (None, None) => "no bounds".to_string(),
    }
}

/// A duration in seconds, as `12.3s` or `4m 05.2s`.
fn duration(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let m = (s / 60.0).floor();
        format!("{m:.0}m {:04.1}s", s - m * 60.0)
    }
}

/// The sentence that says a run used the response cache (`None` when no
/// item came from it), for the terminal table and the reports.
///
/// ```
/// use vigil_protocol::RunSummary;
/// let s = RunSummary { items_total: 4, items_cached: 3, ..Default::default() };
/// let note = vigil_coordinator::report::table::cached_note(&s).unwrap();
/// assert!(note.contains("3 of 4 items"));
/// assert_eq!(vigil_coordinator::report::table::cached_note(&RunSummary::default()), None);
/// ```
pub fn cached_note(summary: &RunSummary) -> Option<String> {
    (summary.items_cached > 0).then(|| {
        format!(
            "response cache: {} of {} items answered from the cache, not by the model now (--no-cache to call it)",
            summary.items_cached, summary.items_total
        )
    })
}

/// Renders `summary` as plain text for a terminal: the run, the per-scorer
/// table (mean with its 95% t interval, pass rate with its 95% Wilson
/// interval, n), latency percentiles, tokens, errors by kind, the gates with
/// ✓/✗, and the verdict. No colour codes: the caller decides.
///
/// ```
/// use vigil_protocol::{RunSummary, ScoreSummary};
/// let mut s = RunSummary { suite: "arith".into(), items_total: 100, items_scored: 100, passed: true, ..Default::default() };
/// s.scores.insert("exact".into(), ScoreSummary { pass_rate: 0.81, ci_low: 0.7222, ci_high: 0.8749, n: 100, passed: 81, ..Default::default() });
/// let text = vigil_coordinator::report::table::render(&s);
/// assert!(text.contains("0.8100 [0.7222, 0.8749]"));
/// assert!(text.ends_with("PASS\n"));
/// ```
pub fn render(summary: &RunSummary) -> String {
    let s = summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "suite {}  target {}  model {}  run {}",
        s.suite, s.target, s.model, s.run_id
    );
    let _ = writeln!(
        out,
        "items {} total, {} scored, {} failed, {} cached  duration {}  {:.1} items/s",
        s.items_total,
        s.items_scored,
        s.items_failed,
        s.items_cached,
        duration(s.duration_s),
        s.items_per_s
    );
    if let Some(note) = cached_note(s) {
        let _ = writeln!(out, "{note}");
    }

    out.push('\n');
    if s.scores.is_empty() {
        out.push_str("scores: none\n");
    } else {
        let mut rows = vec![vec![
            "scorer".to_string(),
            "mean [95% CI]".to_string(),
            "pass rate [95% Wilson CI]".to_string(),
            "passed".to_string(),
            "n".to_string(),
            "scored only: pass rate (n)".to_string(),
        ]];
        for (name, sc) in &s.scores {
            rows.push(vec![
                name.clone(),
                format!(
                    "{:.4} [{:.4}, {:.4}]",
                    sc.mean, sc.mean_ci_low, sc.mean_ci_high
                ),
                format!("{:.4} [{:.4}, {:.4}]", sc.pass_rate, sc.ci_low, sc.ci_high),
                sc.passed.to_string(),
                sc.n.to_string(),
                format!("{:.4} ({})", sc.pass_rate_scored, sc.n_scored),
            ]);
        }
        out.push_str(&columns(&rows));
    }
    let text_metrics = super::table_text::render(s);
    if !text_metrics.is_empty() {
        out.push('\n');
        out.push_str(&text_metrics);
    }

    out.push('\n');
    let l = &s.latency_ms;
    let _ = writeln!(
        out,
        "latency ms  p50 {:.1}  p95 {:.1}  p99 {:.1}  mean {:.1}  max {:.1}",
        l.p50, l.p95, l.p99, l.mean, l.max
    );
    let _ = writeln!(
        out,
        "tokens      {} in, {} out",
        s.tokens.input, s.tokens.output
    );
    if s.errors.is_empty() {
        out.push_str("errors      none\n");
    } else {
        let list: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "errors      {}", list.join(", "));
    }

    out.push('\n');
    if s.gates.is_empty() {
        out.push_str("gates: none\n");
    } else {
        out.push_str("gates:\n");
        let rows: Vec<Vec<String>> = s
            .gates
            .iter()
            .map(|g| {
                vec![
                    if g.passed { "✓" } else { "✗" }.to_string(),
                    g.metric.clone(),
                    match g.value {
                        Some(v) => format!("= {v:.4}"),
                        None => "= n/a (no such metric)".to_string(),
                    },
                    bounds(g),
                    g.detail.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&columns(&rows));
    }
    if let Some(c) = &s.comparison {
        out.push('\n');
        out.push_str(&render_comparison(c, &s.run_id, false));
    }
    if let Some(v) = &s.shadow {
        out.push('\n');
        out.push_str(&super::shadow_verdict(v));
    }
    let verdict = if s.passed { "PASS" } else { "FAIL" };
    if !s.passed && s.items_scored == 0 {
        let _ = writeln!(out, "verdict: {verdict} (no item was scored)");
    } else {
        let _ = writeln!(out, "verdict: {verdict}");
    }
    out
}

/// A paired comparison as text: which baseline and how it was chosen, the
/// manifest differences, the note (how items were paired, or why they could
/// not be), one row per test (difference, 95% interval, Holm-adjusted p,
/// flips; `*` marks a significant difference) and the flipped items.
/// `vigil compare` prints it with every slice test (`all_slices`); the run
/// table ends with it, showing the run-level tests and only the significant
/// slice tests (a line counts the others).
///
/// ```
/// use vigil_protocol::{Comparison, MetricComparison};
/// let c = Comparison { baseline_run_id: "b".into(), baseline_source: "latest_passing".into(),
///     tests: vec![MetricComparison { scorer: "exact".into(), metric: "pass_rate".into(), diff: -0.3,
///         significant: true, flipped_to_fail: vec!["q1".into()], ..Default::default() }],
///     ..Default::default() };
/// let text = vigil_coordinator::report::table::render_comparison(&c, "c", true);
/// assert!(text.contains("baseline  b (latest_passing)"));
/// assert!(text.contains("exact pass->fail: q1"));
/// ```
pub fn render_comparison(c: &Comparison, candidate: &str, all_slices: bool) -> String {
    let mut out = String::new();
    if c.baseline_source.is_empty() {
        let _ = writeln!(out, "baseline  {}", c.baseline_run_id);
    } else {
        let _ = writeln!(
            out,
            "baseline  {} ({})",
            c.baseline_run_id, c.baseline_source
        );
    }
    let _ = writeln!(out, "candidate {candidate}");
    if c.manifest_diffs.is_empty() {
        out.push_str("manifests: identical determinants\n");
    } else {
        out.push_str("manifests DIFFER:\n");
        for d in &c.manifest_diffs {
            let _ = writeln!(out, "  {}: {} -> {}", d.field, d.baseline, d.candidate);
        }
    }
    if let Some(note) = &c.note {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(
        out,
        "{:<10} {:<10} {:<18} {:>6} {:>8} {:>8} {:>8} {:>18} {:>8} {:>4} {:>4}",
        "SCORER", "METRIC", "SLICE", "N", "BASE", "CAND", "DIFF", "95% CI", "P_HOLM", "P>F", "F>P"
    );
    let shown =
        |t: &&vigil_protocol::MetricComparison| all_slices || t.slice.is_none() || t.significant;
    for t in c.tests.iter().filter(shown) {
        let _ = writeln!(
            out,
            "{:<10} {:<10} {:<18} {:>6} {:>8.4} {:>8.4} {:>+8.4} {:>18} {:>8.4} {:>4} {:>4}{}",
            t.scorer,
            t.metric,
            t.slice.as_deref().unwrap_or("(all)"),
            t.n,
            t.baseline,
            t.candidate,
            t.diff,
            format!("[{:+.4}, {:+.4}]", t.ci_low, t.ci_high),
            t.p_adjusted,
            t.pass_to_fail,
            t.fail_to_pass,
            if t.significant { "  *" } else { "" }
        );
    }
    let hidden = c.tests.iter().filter(|t| !shown(t)).count();
    if hidden > 0 {
        let _ = writeln!(
            out,
            "({hidden} slice tests without a significant difference not shown; `vigil compare` lists them)"
        );
    }
    for t in c.tests.iter().filter(|t| t.slice.is_none()) {
        if !t.flipped_to_fail.is_empty() {
            let _ = writeln!(
                out,
                "{} pass->fail: {}",
                t.scorer,
                t.flipped_to_fail.join(", ")
            );
        }
        if !t.flipped_to_pass.is_empty() {
            let _ = writeln!(
                out,
                "{} fail->pass: {}",
                t.scorer,
                t.flipped_to_pass.join(", ")
            );
        }
    }
    out
}
