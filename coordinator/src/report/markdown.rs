//! A Markdown summary of a run, for a pull-request comment or a CI step summary.

use super::gate_condition;
use std::fmt::Write;
use vigil_protocol::RunSummary;

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown of a run.
pub fn render(s: &RunSummary) -> String {
    let mut out = String::new();
    let verdict = if s.passed { "✅ passed" } else { "❌ failed" };
    let _ = writeln!(
        out,
        "## vigil: {} / {} — {verdict}\n",
        cell(&s.suite),
        cell(&s.target)
    );
    let _ = writeln!(
        out,
        "Run `{}`, model `{}`: {} items, {} scored, {} failed, {} cached; latency p50 {:.1} ms, p95 {:.1} ms.\n",
        s.run_id,
        cell(&s.model),
        s.items_total,
        s.items_scored,
        s.items_failed,
        s.items_cached,
        s.latency_ms.p50,
        s.latency_ms.p95
    );
    if let Some(note) = super::table::cached_note(s) {
        let _ = writeln!(out, "**{note}**\n");
    }
    out.push_str("| scorer | pass rate | 95% CI | mean | n |\n|---|---:|---:|---:|---:|\n");
    for (name, sc) in &s.scores {
        let _ = writeln!(
            out,
            "| {} | {:.4} | {:.4} – {:.4} | {:.4} | {} |",
            cell(name),
            sc.pass_rate,
            sc.ci_low,
            sc.ci_high,
            sc.mean,
            sc.n
        );
    }
    if !s.gates.is_empty() {
        out.push_str("\n| gate | value | verdict |\n|---|---:|---|\n");
        for g in &s.gates {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                cell(&gate_condition(g)),
                g.value
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "–".into()),
                if g.passed {
                    "held".to_string()
                } else {
                    format!("**FAILED** {}", cell(g.detail.as_deref().unwrap_or("")))
                }
            );
        }
    }
    if let Some(v) = &s.shadow {
        let _ = writeln!(out, "\n```text\n{}```", super::shadow_verdict(v));
    }
    if let Some(c) = &s.comparison {
        let _ = writeln!(
            out,
            "\nCompared with `{}` ({}):\n",
            c.baseline_run_id, c.baseline_source
        );
        for d in &c.manifest_diffs {
            let _ = writeln!(
                out,
                "- ⚠️ `{}` differs: {} → {}",
                d.field,
                cell(&d.baseline),
                cell(&d.candidate)
            );
        }
        out.push_str("\n| scorer | metric | slice | diff | 95% CI | p (Holm) | pass→fail | fail→pass |\n|---|---|---|---:|---:|---:|---:|---:|\n");
        for t in &c.tests {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:+.4}{} | {:+.4} – {:+.4} | {:.4} | {} | {} |",
                cell(&t.scorer),
                t.metric,
                cell(t.slice.as_deref().unwrap_or("all")),
                t.diff,
                if t.significant { " *" } else { "" },
                t.ci_low,
                t.ci_high,
                t.p_adjusted,
                t.pass_to_fail,
                t.fail_to_pass
            );
        }
    }
    out
}
