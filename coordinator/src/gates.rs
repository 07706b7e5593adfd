//! Gates: conditions on summary metrics that decide a run's exit code.

use serde::{Deserialize, Serialize};

/// One gate of a suite: `metric` must lie within `[min, max]`.
///
/// Two more kinds of condition:
/// - `slice_gap: TAG`: the gate's value is the largest gap of `metric`
///   between the slices of `TAG` (bias checks), bounded by `min`/`max`;
/// - `max_regression: X`: fails when the paired comparison with the
///   baseline finds a significant drop (Holm-adjusted) larger than `X`.
///
/// Metrics are `<scorer>.<field>` for the fields of a score summary
/// (`exact.pass_rate`, `exact.mean`, `exact.ci_low`, ...; classification
/// scorers add `macro_f1`, `f1.<label>` and the others of
/// [`crate::text_metrics::CLASSIFICATION_FIELDS`], bleu adds `corpus_bleu`) and the run-level
/// `error_rate`, `items_per_s`, `latency_ms.p95` (and the other percentiles).
///
/// ```
/// let g = vigil_coordinator::gates::GateSpec { metric: "exact.pass_rate".into(), min: Some(0.9), ..Default::default() };
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
    /// Gate on the largest gap of `metric` between the slices of this tag.
    #[serde(default)]
    pub slice_gap: Option<String>,
    /// Fail on a significant drop against the baseline larger than this.
    #[serde(default)]
    pub max_regression: Option<f64>,
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
    "mean_scored",
    "mean_scored_ci_low",
    "mean_scored_ci_high",
    "pass_rate_scored",
    "pass_rate_scored_ci_low",
    "pass_rate_scored_ci_high",
    "n_scored",
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
    if let Some(v) = summary
        .scores
        .get(scorer)
        .and_then(|s| score_field(s, field))
    {
        return Some(v);
    }
    // Kind-specific fields: `intent.macro_f1`, `intent.f1.billing`, `bleu.corpus_bleu`.
    let (scorer, field) = metric.split_once('.')?;
    crate::text_metrics::extra_field(summary.scores.get(scorer)?, field)
}

/// The value of one field (`mean`, `pass_rate`, ...) of a score summary.
pub fn score_field(s: &vigil_protocol::ScoreSummary, field: &str) -> Option<f64> {
    match field {
        "mean" => Some(s.mean),
        "pass_rate" => Some(s.pass_rate),
        "ci_low" => Some(s.ci_low),
        "ci_high" => Some(s.ci_high),
        "mean_ci_low" => Some(s.mean_ci_low),
        "mean_ci_high" => Some(s.mean_ci_high),
        "n" => Some(s.n as f64),
        "passed" => Some(s.passed as f64),
        "mean_scored" => Some(s.mean_scored),
        "mean_scored_ci_low" => Some(s.mean_scored_ci_low),
        "mean_scored_ci_high" => Some(s.mean_scored_ci_high),
        "pass_rate_scored" => Some(s.pass_rate_scored),
        "pass_rate_scored_ci_low" => Some(s.pass_rate_scored_ci_low),
        "pass_rate_scored_ci_high" => Some(s.pass_rate_scored_ci_high),
        "n_scored" => Some(s.n_scored as f64),
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
/// let g = GateSpec { metric: "error_rate".into(), max: Some(0.1), ..Default::default() };
/// let out = evaluate(&[g], &s);
/// assert_eq!(out[0].value, Some(0.2));
/// assert!(!out[0].passed);
/// ```
pub fn evaluate(gates: &[GateSpec], summary: &RunSummary) -> Vec<GateOutcome> {
    gates
        .iter()
        .map(|gate| evaluate_one(gate, summary))
        .collect()
}

fn evaluate_one(gate: &GateSpec, summary: &RunSummary) -> GateOutcome {
    let mut out = GateOutcome {
        metric: gate.metric.clone(),
        min: gate.min,
        max: gate.max,
        max_regression: gate.max_regression,
        slice_gap: gate.slice_gap.clone(),
        ..Default::default()
    };
    if let Some(tag) = &gate.slice_gap {
        out.value = crate::slices::slice_gap(summary, &gate.metric, tag);
        out.passed = out.value.is_some_and(|v| gate.holds(v));
        if out.value.is_none() {
            out.detail = Some(format!(
                "fewer than two slices of `{tag}` have `{}`",
                gate.metric
            ));
        }
        return out;
    }
    out.value = metric_value(summary, &gate.metric);
    let bounded = gate.min.is_some() || gate.max.is_some();
    out.passed = if bounded {
        out.value.is_some_and(|v| gate.holds(v))
    } else {
        out.value.is_some()
    };
    if let Some(max_drop) = gate.max_regression {
        let regression = regression_check(summary, &gate.metric, max_drop);
        out.passed &= regression.0;
        out.detail = Some(regression.1);
    }
    out
}

/// Whether a regression gate holds, and why. Only "no baseline yet" (no
/// comparison at all) passes without a test; a baseline that could not be
/// paired (no common items, scores gone, lookup failed) fails with the reason.
fn regression_check(summary: &RunSummary, metric: &str, max_drop: f64) -> (bool, String) {
    let Some(comparison) = &summary.comparison else {
        return (
            true,
            "no baseline yet: nothing to compare with (passes)".into(),
        );
    };
    let Some((scorer, field)) = metric.rsplit_once('.') else {
        return (false, format!("`{metric}` is not a scorer metric"));
    };
    let tests = || {
        comparison
            .tests
            .iter()
            .filter(|t| t.slice.is_none() && t.scorer == scorer)
    };
    // A 0/1 scorer's mean is its pass rate: its one test stands for both.
    let test = tests()
        .find(|t| t.metric == field)
        .or_else(|| tests().find(|t| t.metric == "pass_rate"));
    let Some(t) = test else {
        let why = comparison
            .note
            .clone()
            .unwrap_or_else(|| format!("no paired test of `{metric}`"));
        return (
            false,
            format!(
                "cannot compare with baseline {}: {why}",
                comparison.baseline_run_id
            ),
        );
    };
    let failed = crate::compare::is_significant_regression(t, max_drop);
    let verdict = if failed {
        "significant regression"
    } else {
        "no significant regression beyond the limit"
    };
    (
        !failed,
        format!(
            "{verdict}: {:+.4} vs {} (95% CI {:+.4}..{:+.4}, p_holm={:.4}, n={}, max drop {max_drop})",
            t.diff, comparison.baseline_run_id, t.ci_low, t.ci_high, t.p_adjusted, t.n
        ),
    )
}

/// The suite's `error_budget` when it sets none: 2% of the items may fail.
pub const DEFAULT_ERROR_BUDGET: f64 = 0.02;

/// The metric name of the run-level error budget's outcome.
pub const ERROR_BUDGET: &str = "error_budget";

/// The outcome of the run-level error budget: at most `budget` (a fraction
/// of `items_total`, rounded down to whole items) may have failed, whatever
/// their kind. The value is the fraction that failed.
///
/// ```
/// use vigil_coordinator::gates::error_budget;
/// use vigil_protocol::RunSummary;
/// let s = RunSummary { items_total: 100, items_failed: 2, ..Default::default() };
/// assert!(error_budget(0.02, &s).passed);
/// let s = RunSummary { items_total: 100, items_failed: 3, ..Default::default() };
/// let out = error_budget(0.02, &s);
/// assert!(!out.passed);
/// assert_eq!(out.detail.as_deref(), Some("3 of 100 items failed; the error budget allows 2 (0.02)"));
/// ```
pub fn error_budget(budget: f64, summary: &RunSummary) -> GateOutcome {
    let (failed, total) = (summary.items_failed, summary.items_total);
    // The epsilon keeps 0.29 × 100 at 29 items, not 28.999….
    let allowed = (budget * total as f64 + 1e-9).floor() as u64;
    GateOutcome {
        metric: ERROR_BUDGET.into(),
        max: Some(budget),
        value: metric_value(summary, "error_rate"),
        passed: failed <= allowed,
        detail: Some(format!(
            "{failed} of {total} items failed; the error budget allows {allowed} ({budget})"
        )),
        ..Default::default()
    }
}

/// Fills `summary.gates` and sets `summary.passed`: every gate held, the
/// error budget (when given: the suite's `error_budget`) held, and at least
/// one item was scored (a run that scored nothing never passes). The error
/// budget's outcome comes last among the gates, named [`ERROR_BUDGET`].
///
/// ```
/// use vigil_coordinator::gates::{apply, GateSpec};
/// use vigil_protocol::RunSummary;
/// let mut s = RunSummary { items_total: 1, items_scored: 1, ..Default::default() };
/// apply(&[GateSpec { metric: "error_rate".into(), max: Some(0.0), ..Default::default() }], Some(0.02), &mut s);
/// assert!(s.passed);
/// assert_eq!(s.gates[1].metric, "error_budget");
/// ```
pub fn apply(gates: &[GateSpec], error_budget_fraction: Option<f64>, summary: &mut RunSummary) {
    summary.gates = evaluate(gates, summary);
    if let Some(budget) = error_budget_fraction {
        let outcome = error_budget(budget, summary);
        summary.gates.push(outcome);
    }
    summary.passed = summary.gates.iter().all(|g| g.passed) && summary.items_scored > 0;
}
