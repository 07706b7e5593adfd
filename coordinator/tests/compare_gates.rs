//! Regression and slice-gap gates, and the suite keys that declare them.

use vigil_coordinator::gates::{GateSpec, apply};
use vigil_coordinator::suite::{Suite, SuiteFormat};
use vigil_protocol::{Comparison, MetricComparison, RunSummary, ScoreSummary};

fn summary(pass_rate: f64) -> RunSummary {
    let mut s = RunSummary {
        items_total: 100,
        items_scored: 100,
        ..Default::default()
    };
    s.scores.insert(
        "exact".into(),
        ScoreSummary {
            pass_rate,
            n: 100,
            ..Default::default()
        },
    );
    let slice = |r| {
        [(
            "exact".to_string(),
            ScoreSummary {
                pass_rate: r,
                n: 50,
                ..Default::default()
            },
        )]
        .into()
    };
    s.slices.insert(
        "lang".into(),
        [
            ("en".to_string(), slice(0.95)),
            ("fr".to_string(), slice(0.8)),
        ]
        .into(),
    );
    s
}

fn with_test(mut s: RunSummary, diff: f64, significant: bool) -> RunSummary {
    s.comparison = Some(Comparison {
        baseline_run_id: "base".into(),
        tests: vec![MetricComparison {
            scorer: "exact".into(),
            metric: "pass_rate".into(),
            diff,
            n: 100,
            p_adjusted: if significant { 0.001 } else { 0.4 },
            significant,
            ..Default::default()
        }],
        ..Default::default()
    });
    s
}

fn regression_gate(x: f64) -> GateSpec {
    GateSpec {
        metric: "exact.pass_rate".into(),
        max_regression: Some(x),
        ..Default::default()
    }
}

#[test]
fn a_regression_gate_fails_only_on_a_significant_drop_beyond_the_limit() {
    let cases = [
        (-0.05, true, 0.02, false), // significant and larger than allowed
        (-0.01, true, 0.02, true),  // significant but within the limit
        (-0.05, false, 0.02, true), // large but not significant
        (0.05, true, 0.02, true),   // an improvement
    ];
    for (diff, significant, limit, holds) in cases {
        let mut s = with_test(summary(0.9), diff, significant);
        apply(&[regression_gate(limit)], None, &mut s);
        assert_eq!(
            s.gates[0].passed, holds,
            "diff {diff} significant {significant}: {:?}",
            s.gates[0].detail
        );
        assert_eq!(s.passed, holds);
    }
    // Without a baseline there is nothing to regress from: the gate holds and says why.
    let mut s = summary(0.9);
    apply(&[regression_gate(0.0)], None, &mut s);
    assert!(s.gates[0].passed);
    assert!(
        s.gates[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("no baseline")
    );
}

#[test]
fn a_slice_gap_gate_bounds_the_largest_gap_between_slices() {
    let gate = |max| GateSpec {
        metric: "exact.pass_rate".into(),
        slice_gap: Some("lang".into()),
        max: Some(max),
        ..Default::default()
    };
    let mut s = summary(0.9);
    apply(&[gate(0.1)], None, &mut s);
    assert!((s.gates[0].value.unwrap() - 0.15).abs() < 1e-12);
    assert!(!s.gates[0].passed, "0.15 > 0.1");
    apply(&[gate(0.2)], None, &mut s);
    assert!(s.gates[0].passed);
    let missing = GateSpec {
        slice_gap: Some("tier".into()),
        ..gate(0.2)
    };
    apply(&[missing], None, &mut s);
    assert!(
        !s.gates[0].passed,
        "a tag without slices cannot show it is fair"
    );
}

fn load(gates: &str) -> Result<Suite, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("d.jsonl"),
        "{\"q\": \"a\", \"lang\": \"en\"}\n",
    )
    .unwrap();
    let text = format!(
        "name: s\ndataset: {{ path: d.jsonl, tags: [lang] }}\nprompt: {{ user: \"{{{{ q }}}}\" }}\n\
         targets: [{{ name: t, base_url: \"http://127.0.0.1:1/v1\", model: m }}]\n\
         scorers: [{{ name: exact, kind: exact_match, reference: x }}]\ncache: {{ enabled: false, ttl_s: 60 }}\n{gates}"
    );
    Suite::from_str(&text, SuiteFormat::Yaml, &dir.path().join("s.yaml")).map_err(|e| e.to_string())
}

#[test]
fn suites_declare_regression_and_slice_gap_gates_and_the_cache() {
    let s = load("gates:\n  - { metric: exact.pass_rate, max_regression: 0.02 }\n  - { metric: exact.pass_rate, slice_gap: lang, max: 0.1 }\n").unwrap();
    assert_eq!(s.gates[0].max_regression, Some(0.02));
    assert_eq!(s.gates[1].slice_gap.as_deref(), Some("lang"));
    assert_eq!(s.cache.enabled, Some(false));
    assert_eq!(s.cache.ttl_s, Some(60));
    let e =
        load("gates:\n  - { metric: exact.pass_rate, slice_gap: tier, max: 0.1 }\n").unwrap_err();
    assert!(e.contains("`tier` is not a dataset tag"), "{e}");
    let e = load("gates:\n  - { metric: error_rate, max_regression: 0.02 }\n").unwrap_err();
    assert!(e.contains("regression gate needs"), "{e}");
    let e = load("gates:\n  - { metric: exact.pass_rate, max_regression: -1 }\n").unwrap_err();
    assert!(e.contains("max_regression"), "{e}");
}

#[test]
fn a_regression_gate_with_a_baseline_that_cannot_be_paired_fails_with_the_reason() {
    let mut s = summary(0.9);
    s.comparison = Some(Comparison {
        baseline_run_id: "b-1".into(),
        note: Some("baseline scores unavailable: no stored scores for run b-1".into()),
        ..Default::default()
    });
    apply(&[regression_gate(0.05)], None, &mut s);
    assert!(!s.gates[0].passed);
    assert!(!s.passed);
    let detail = s.gates[0].detail.as_deref().unwrap();
    assert!(
        detail.contains("cannot compare with baseline b-1: baseline scores unavailable"),
        "{detail}"
    );
}

#[test]
fn suites_set_an_error_budget_between_0_and_1() {
    assert_eq!(load("").unwrap().error_budget, 0.02, "the default");
    assert_eq!(load("error_budget: 0.1\n").unwrap().error_budget, 0.1);
    for bad in ["1.5", "-0.1", ".nan"] {
        let e = load(&format!("error_budget: {bad}\n")).unwrap_err();
        assert!(e.contains("error_budget: must be a fraction"), "{bad}: {e}");
    }
}

#[test]
fn the_error_budget_fails_a_run_whatever_its_scores() {
    let mut s = summary(0.9);
    s.items_total = 100;
    s.items_failed = 3;
    apply(&[], Some(0.02), &mut s);
    let budget = s.gates.last().unwrap();
    assert_eq!(budget.metric, "error_budget");
    assert_eq!(
        (budget.value, budget.max, budget.passed),
        (Some(0.03), Some(0.02), false)
    );
    assert!(!s.passed);
    // The budget in whole items, without rounding error: 29 of 100 at 0.29.
    s.items_failed = 29;
    apply(&[], Some(0.29), &mut s);
    assert!(s.passed, "{:?}", s.gates);
    // The alert names it like a gate.
    s.items_failed = 30;
    apply(&[], Some(0.29), &mut s);
    let alerts = vigil_coordinator::alerts::alerts_of(&s);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].gate, "error_budget");
}
