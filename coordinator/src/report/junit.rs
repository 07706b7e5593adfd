//! JUnit XML: one test suite per run, one test case per gate (a failed gate
//! is a failure), plus one case per scorer so CI dashboards show the scores.

use super::{escape, gate_condition};
use std::fmt::Write;
use vigil_protocol::RunSummary;

/// The JUnit XML of a run.
///
/// ```
/// use vigil_protocol::{GateOutcome, RunSummary};
/// let s = RunSummary { suite: "arith".into(), target: "t".into(), gates: vec![
///     GateOutcome { metric: "exact.pass_rate".into(), min: Some(0.9), value: Some(0.5), passed: false, ..Default::default() }],
///     ..Default::default() };
/// let xml = vigil_coordinator::report::junit::render(&s);
/// assert!(xml.contains(r#"failures="1""#) && xml.contains("<failure"));
/// ```
pub fn render(s: &RunSummary) -> String {
    let failures = s.gates.iter().filter(|g| !g.passed).count();
    let tests = s.gates.len() + s.scores.len();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let name = format!("{}/{}", s.suite, s.target);
    let _ = writeln!(
        out,
        r#"<testsuites name="vigil" tests="{tests}" failures="{failures}" time="{:.3}">"#,
        s.duration_s
    );
    let _ = writeln!(
        out,
        r#"  <testsuite name="{}" tests="{tests}" failures="{failures}" errors="0" time="{:.3}" timestamp="{}">"#,
        escape(&name),
        s.duration_s,
        escape(&s.finished_at)
    );
    let _ = writeln!(
        out,
        r#"    <properties><property name="run_id" value="{}"/><property name="model" value="{}"/></properties>"#,
        escape(&s.run_id),
        escape(&s.model)
    );
    for g in &s.gates {
        let _ = write!(
            out,
            r#"    <testcase classname="{}.gates" name="{}""#,
            escape(&name),
            escape(&gate_condition(g))
        );
        if g.passed {
            out.push_str("/>\n");
        } else {
            let value = g
                .value
                .map(|v| format!("{v:.6}"))
                .unwrap_or_else(|| "missing".into());
            let _ = writeln!(
                out,
                r#"><failure message="gate failed: value {}" type="gate">{}</failure></testcase>"#,
                escape(&value),
                escape(g.detail.as_deref().unwrap_or(""))
            );
        }
    }
    for (scorer, sc) in &s.scores {
        let _ = writeln!(
            out,
            r#"    <testcase classname="{}.scores" name="{}"><system-out>pass_rate={:.6} ci=[{:.6}, {:.6}] mean={:.6} n={}</system-out></testcase>"#,
            escape(&name),
            escape(scorer),
            sc.pass_rate,
            sc.ci_low,
            sc.ci_high,
            sc.mean,
            sc.n
        );
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
