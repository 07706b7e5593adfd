//! Reports of a run for people and for CI: a self-contained HTML page
//! ([`html`]: summary, per-slice table, flipped items, the main metric's
//! trend over the history, latency histogram; charts as inline SVG), JUnit
//! XML ([`junit`]: one test case per gate) and a Markdown summary
//! ([`markdown`], for a pull-request comment or `$GITHUB_STEP_SUMMARY`),
//! and the terminal table ([`table`], with [`table_text`] for run-level
//! text metrics) that `vigil run` and `vigil compare` print.

pub mod html;
pub mod junit;
pub mod markdown;
pub mod svg;
pub mod table;
pub mod table_text;

use vigil_protocol::RunSummary;

/// What a report is made of.
#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    /// The run.
    pub summary: RunSummary,
    /// Earlier and later runs of the same suite and target, oldest first
    /// (the run itself included), for the trend chart.
    pub history: Vec<RunSummary>,
    /// Backend latencies of the run's scored, uncached items, milliseconds.
    pub latencies_ms: Vec<f64>,
}

/// The main metric of a run: the first scorer's pass rate.
pub fn main_metric(summary: &RunSummary) -> Option<(String, f64)> {
    summary
        .scores
        .iter()
        .next()
        .map(|(name, s)| (format!("{name}.pass_rate"), s.pass_rate))
}

/// Escapes text for HTML and XML content and attributes.
///
/// ```
/// assert_eq!(vigil_coordinator::report::escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
/// ```
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// A gate's condition in words (`exact.pass_rate ≥ 0.9`).
pub fn gate_condition(g: &vigil_protocol::GateOutcome) -> String {
    let mut parts = Vec::new();
    let metric = match &g.slice_gap {
        Some(tag) => format!("gap of {} across {tag}", g.metric),
        None => g.metric.clone(),
    };
    if let Some(min) = g.min {
        parts.push(format!("{metric} >= {min}"));
    }
    if let Some(max) = g.max {
        parts.push(format!("{metric} <= {max}"));
    }
    if let Some(x) = g.max_regression {
        parts.push(format!("{metric}: no significant drop > {x} vs baseline"));
    }
    parts.join(", ")
}

/// A shadow evaluation's verdict as text (the terminal table and Markdown
/// show it under the summary).
///
/// ```
/// use vigil_protocol::ShadowVerdict;
/// let v = ShadowVerdict { app: "support".into(), compare: "win_rate".into(), estimate: 0.2,
///     ci_low: 0.1, ci_high: 0.35, alpha: 0.05, decision: "worse".into(), items_used: 40,
///     budget: 500, items_dispatched: 50, ..Default::default() };
/// let text = vigil_coordinator::report::shadow_verdict(&v);
/// assert!(text.contains("candidate is WORSE"));
/// assert!(text.contains("items used 40 of 500"));
/// ```
pub fn shadow_verdict(v: &vigil_protocol::ShadowVerdict) -> String {
    let call = match v.decision.as_str() {
        "better" => "candidate is BETTER".to_string(),
        "worse" => "candidate is WORSE".to_string(),
        _ => "no difference called within the budget".to_string(),
    };
    let mut skipped = String::new();
    for (reason, n) in &v.captures_not_replayable {
        skipped.push_str(&format!(" {reason}={n}"));
    }
    format!(
        "shadow of app `{}` ({}, α = {}): {call}\n  estimate {:.3}, confidence sequence [{:.3}, {:.3}], items used {} of {} ({} dispatched, {} without a score to compare)\n  wins {}, ties {}, losses {}; compared by {}{}\n",
        v.app,
        v.compare,
        v.alpha,
        v.estimate,
        v.ci_low,
        v.ci_high,
        v.items_used,
        v.budget,
        v.items_dispatched,
        v.items_skipped,
        v.wins,
        v.ties,
        v.losses,
        v.scorers.join(", "),
        if skipped.is_empty() {
            String::new()
        } else {
            format!("\n  captures not replayed:{skipped}")
        },
    )
}
