//! Gates: metric lookup, evaluation, and the run verdict.

use vigil_coordinator::gates::{
    GateSpec, RUN_METRICS, SCORE_FIELDS, apply, evaluate, is_known_metric, metric_value,
};
use vigil_protocol::{LatencySummary, RunSummary, ScoreSummary};

fn summary() -> RunSummary {
    let mut s = RunSummary {
        items_total: 200,
        items_scored: 190,
        items_failed: 10,
        items_cached: 4,
        items_per_s: 12.5,
        duration_s: 16.0,
        latency_ms: LatencySummary {
            p50: 100.0,
            p95: 250.0,
            p99: 400.0,
            mean: 120.0,
            max: 900.0,
        },
        ..Default::default()
    };
    s.scores.insert(
        "exact".into(),
        ScoreSummary {
            mean: 0.81,
            mean_ci_low: 0.73,
            mean_ci_high: 0.89,
            pass_rate: 0.8,
            ci_low: 0.72,
            ci_high: 0.87,
            n: 190,
            passed: 152,
            ..Default::default()
        },
    );
    s.scores.insert(
        "my.scorer".into(),
        ScoreSummary {
            mean: 0.5,
            ..Default::default()
        },
    );
    s
}

fn gate(metric: &str, min: Option<f64>, max: Option<f64>) -> GateSpec {
    GateSpec {
        metric: metric.into(),
        min,
        max,
        ..Default::default()
    }
}

#[test]
fn every_metric_resolves() {
    let s = summary();
    let expect = [
        ("exact.mean", 0.81),
        ("exact.pass_rate", 0.8),
        ("exact.ci_low", 0.72),
        ("exact.ci_high", 0.87),
        ("exact.mean_ci_low", 0.73),
        ("exact.mean_ci_high", 0.89),
        ("exact.n", 190.0),
        ("exact.passed", 152.0),
        ("error_rate", 0.05),
        ("items_per_s", 12.5),
        ("items_failed", 10.0),
        ("items_scored", 190.0),
        ("items_total", 200.0),
        ("items_cached", 4.0),
        ("duration_s", 16.0),
        ("latency_ms.p50", 100.0),
        ("latency_ms.p95", 250.0),
        ("latency_ms.p99", 400.0),
        ("latency_ms.mean", 120.0),
        ("latency_ms.max", 900.0),
        // A scorer name with a dot splits at the last dot.
        ("my.scorer.mean", 0.5),
    ];
    for (metric, value) in expect {
        assert_eq!(metric_value(&s, metric), Some(value), "{metric}");
    }
    // Every advertised name resolves.
    for m in RUN_METRICS {
        assert!(metric_value(&s, m).is_some(), "{m}");
    }
    for f in SCORE_FIELDS {
        assert!(metric_value(&s, &format!("exact.{f}")).is_some(), "{f}");
    }
}

#[test]
fn unknown_metrics_have_no_value() {
    let s = summary();
    for m in [
        "",
        "exact",
        "exact.median",
        "other.mean",
        "latency_ms.p90",
        "error_rate.x",
        ".mean",
        "exact.",
    ] {
        assert_eq!(metric_value(&s, m), None, "{m:?}");
    }
    let empty = RunSummary::default();
    assert_eq!(metric_value(&empty, "error_rate"), Some(0.0));
}

#[test]
fn bounds_are_inclusive_and_missing_metrics_fail() {
    let s = summary();
    let gates = [
        gate("exact.pass_rate", Some(0.8), None), // equal to min: holds
        gate("exact.pass_rate", Some(0.81), None), // below min: fails
        gate("error_rate", None, Some(0.05)),     // equal to max: holds
        gate("error_rate", None, Some(0.04)),     // above max: fails
        gate("latency_ms.p95", Some(200.0), Some(300.0)), // within: holds
        gate("latency_ms.p95", Some(260.0), Some(300.0)), // outside: fails
        gate("nope.pass_rate", Some(0.0), None),  // no such metric: fails
        gate("exact.n", None, None),              // no bounds, exists: holds
        gate("nope.n", None, None),               // no bounds, missing: fails
    ];
    let out = evaluate(&gates, &s);
    let passed: Vec<bool> = out.iter().map(|g| g.passed).collect();
    assert_eq!(
        passed,
        vec![true, false, true, false, true, false, false, true, false]
    );
    assert_eq!(out[6].value, None);
    assert_eq!(out[0].value, Some(0.8));
    // Outcomes carry the spec, in order.
    for (g, o) in gates.iter().zip(&out) {
        assert_eq!((&g.metric, g.min, g.max), (&o.metric, o.min, o.max));
    }
    assert!(!gate("x", Some(0.0), Some(1.0)).holds(f64::NAN));
}

#[test]
fn apply_sets_verdict() {
    let mut s = summary();
    apply(
        &[
            gate("exact.pass_rate", Some(0.75), None),
            gate("error_rate", None, Some(0.1)),
        ],
        None,
        &mut s,
    );
    assert_eq!(s.gates.len(), 2);
    assert!(s.passed);

    apply(
        &[
            gate("exact.pass_rate", Some(0.75), None),
            gate("exact.ci_low", Some(0.75), None),
        ],
        None,
        &mut s,
    );
    assert!(!s.passed);
    assert_eq!(s.gates.len(), 2, "apply replaces earlier outcomes");

    // No gates: passes when something was scored.
    apply(&[], None, &mut s);
    assert!(s.passed && s.gates.is_empty());

    // Nothing scored never passes, even with every gate holding.
    let mut none = RunSummary {
        items_total: 5,
        items_failed: 5,
        ..Default::default()
    };
    apply(&[gate("items_failed", Some(0.0), None)], None, &mut none);
    assert!(none.gates[0].passed);
    assert!(!none.passed);
}

#[test]
fn known_metrics_for_validation() {
    let scorers = ["exact", "judge"];
    for m in RUN_METRICS {
        assert!(is_known_metric(m, &scorers), "{m}");
    }
    for f in SCORE_FIELDS {
        assert!(is_known_metric(&format!("judge.{f}"), &scorers), "{f}");
    }
    for m in [
        "exact.median",
        "other.mean",
        "latency_ms.p90",
        "exact",
        "",
        "error_rate.mean",
    ] {
        assert!(!is_known_metric(m, &scorers), "{m}");
    }
    assert!(is_known_metric("my.scorer.pass_rate", &["my.scorer"]));
}
