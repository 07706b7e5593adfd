//! Gates: conditions on summary metrics that decide a run's exit code.

use serde::{Deserialize, Serialize};

/// One gate of a suite: `metric` must lie within `[min, max]`.
///
/// Metrics are `<scorer>.<field>` for the fields of a score summary
/// (`exact.pass_rate`, `exact.mean`, `exact.ci_low`, ...) and the run-level
/// `error_rate`, `items_per_s`, `latency_ms.p95` (and the other percentiles).
///
/// ```
/// let g = vigil_coordinator::gates::GateSpec { metric: "exact.pass_rate".into(), min: Some(0.9), max: None };
/// assert_eq!(g.min, Some(0.9));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// The metric's name.
    pub metric: String,
    /// Lowest value allowed.
    #[serde(default)]
    pub min: Option<f64>,
    /// Highest value allowed.
    #[serde(default)]
    pub max: Option<f64>,
}

use vigil_protocol::{GateOutcome, RunSummary};

/// Run-level metrics a gate may name (besides `<scorer>.<field>`).
pub const RUN_METRICS: &[&str] = &[
    "error_rate",
    "items_per_s",
    "items_failed",
    "items_scored",
    "items_total",
    "items_cached",
    "duration_s",
    "latency_ms.p50",
    "latency_ms.p95",
    "latency_ms.p99",
    "latency_ms.mean",
    "latency_ms.max",
];

/// The fields of a scorer a gate may name as `<scorer>.<field>`.
pub const SCORE_FIELDS: &[&str] = &[
    "mean",
    "pass_rate",
    "ci_low",
    "ci_high",
    "mean_ci_low",
    "mean_ci_high",
    "n",
    "passed",
];

/// The value of `metric` in `summary`, or `None` when the run has no such
/// metric (an unknown name, or a scorer the run does not have).
///
/// Run-level names ([`RUN_METRICS`]) win over a scorer of the same name;
/// otherwise the name splits at its last `.` into scorer and field
/// ([`SCORE_FIELDS`]). `error_rate` is `items_failed / items_total` (0 for an
/// empty run).
///
/// ```
/// use vigil_coordinator::gates::metric_value;
/// use vigil_protocol::{RunSummary, ScoreSummary};
/// let mut s = RunSummary { items_total: 10, items_failed: 1, ..Default::default() };
/// s.scores.insert("exact".into(), ScoreSummary { pass_rate: 0.8, ..Default::default() });
/// assert_eq!(metric_value(&s, "exact.pass_rate"), Some(0.8));
/// assert_eq!(metric_value(&s, "error_rate"), Some(0.1));
/// assert_eq!(metric_value(&s, "nope.pass_rate"), None);
/// ```
pub fn metric_value(summary: &RunSummary, metric: &str) -> Option<f64> {
    let lat = &summary.latency_ms;
    let run = match metric {
        "error_rate" => Some(if summary.items_total == 0 {
            0.0
        } else {
            summary.items_failed as f64 / summary.items_total as f64
        }),
        "items_per_s" => Some(summary.items_per_s),
        "items_failed" => Some(summary.items_failed as f64),
        "items_scored" => Some(summary.items_scored as f64),
        "items_total" => Some(summary.items_total as f64),
        "items_cached" => Some(summary.items_cached as f64),
        "duration_s" => Some(summary.duration_s),
        "latency_ms.p50" => Some(lat.p50),
        "latency_ms.p95" => Some(lat.p95),
        "latency_ms.p99" => Some(lat.p99),
        "latency_ms.mean" => Some(lat.mean),
        "latency_ms.max" => Some(lat.max),
        _ => None,
    };
    if run.is_some() {
        return run;
    }
    let (scorer, field) = metric.rsplit_once('.')?;
    let s = summary.scores.get(scorer)?;
    match field {
        "mean" => Some(s.mean),
        "pass_rate" => Some(s.pass_rate),
        "ci_low" => Some(s.ci_low),
        "ci_high" => Some(s.ci_high),
        "mean_ci_low" => Some(s.mean_ci_low),
        "mean_ci_high" => Some(s.mean_ci_high),
        "n" => Some(s.n as f64),
        "passed" => Some(s.passed as f64),
        _ => None,
    }
}

/// Whether `metric` names a metric a run with these scorers will have; for
/// validating a suite before it runs.
///
/// ```
/// use vigil_coordinator::gates::is_known_metric;
/// assert!(is_known_metric("exact.ci_low", &["exact"]));
/// assert!(is_known_metric("latency_ms.p95", &[]));
/// assert!(!is_known_metric("exact.median", &["exact"]));
/// assert!(!is_known_metric("other.mean", &["exact"]));
/// ```
pub fn is_known_metric(metric: &str, scorer_names: &[&str]) -> bool {
    if RUN_METRICS.contains(&metric) {
        return true;
    }
    metric.rsplit_once('.').is_some_and(|(scorer, field)| {
        scorer_names.contains(&scorer) && SCORE_FIELDS.contains(&field)
    })
}

impl GateSpec {
    /// Whether `value` lies within `[min, max]` (bounds inclusive, absent
    /// bounds open). NaN never holds.
    pub fn holds(&self, value: f64) -> bool {
        !value.is_nan()
            && self.min.is_none_or(|min| value >= min)
            && self.max.is_none_or(|max| value <= max)
    }
}

/// The outcome of each gate on `summary`, in order. A gate whose metric the
/// run lacks has no value and fails; a gate with neither bound holds when the
/// metric exists.
///
/// ```
/// use vigil_coordinator::gates::{evaluate, GateSpec};
/// use vigil_protocol::RunSummary;
/// let s = RunSummary { items_total: 10, items_failed: 2, ..Default::default() };
/// let g = GateSpec { metric: "error_rate".into(), min: None, max: Some(0.1) };
/// let out = evaluate(&[g], &s);
/// assert_eq!(out[0].value, Some(0.2));
/// assert!(!out[0].passed);
/// ```
pub fn evaluate(gates: &[GateSpec], summary: &RunSummary) -> Vec<GateOutcome> {
    gates
        .iter()
        .map(|gate| {
            let value = metric_value(summary, &gate.metric);
            GateOutcome {
                metric: gate.metric.clone(),
                min: gate.min,
                max: gate.max,
                value,
                passed: value.is_some_and(|v| gate.holds(v)),
            }
        })
        .collect()
}

/// Fills `summary.gates` and sets `summary.passed`: every gate held and at
/// least one item was scored (a run that scored nothing never passes).
///
/// ```
/// use vigil_coordinator::gates::{apply, GateSpec};
/// use vigil_protocol::RunSummary;
/// let mut s = RunSummary { items_total: 1, items_scored: 1, ..Default::default() };
/// apply(&[GateSpec { metric: "error_rate".into(), min: None, max: Some(0.0) }], &mut s);
/// assert!(s.passed);
/// ```
pub fn apply(gates: &[GateSpec], summary: &mut RunSummary) {
    summary.gates = evaluate(gates, summary);
    summary.passed = summary.gates.iter().all(|g| g.passed) && summary.items_scored > 0;
}
