//! The run summary, published on `vigil.runs.<suite>.<target>` and written by
//! `vigil run --out`. Field names are part of the user-facing contract
//! (DESIGN §10).

mod comparison;
mod manifest;
mod shadow;

pub use comparison::{Comparison, MetricComparison};
pub use manifest::{Manifest, ManifestDiff};
pub use shadow::ShadowVerdict;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything a finished run says about its quality.
///
/// ```
/// use vigil_protocol::*;
/// let s = RunSummary { run_id: "r".into(), items_total: 3, ..Default::default() };
/// let back: RunSummary = decode(&encode(&s).unwrap()).unwrap();
/// assert_eq!(back.items_total, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunSummary {
    /// [`crate::SCHEMA_VERSION`] of the writer.
    pub schema: u32,
    /// The run (a UUID).
    pub run_id: String,
    /// The suite's name.
    pub suite: String,
    /// The target's name.
    pub target: String,
    /// The model the target asked for.
    pub model: String,
    /// Start, RFC 3339.
    pub started_at: String,
    /// End, RFC 3339.
    pub finished_at: String,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
    /// Items in the dataset.
    pub items_total: u64,
    /// Items scored.
    pub items_scored: u64,
    /// Items failed (see `errors`).
    pub items_failed: u64,
    /// Items whose output came from the response cache.
    pub items_cached: u64,
    /// Failed items by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Backend latency of scored items.
    pub latency_ms: LatencySummary,
    /// Token totals.
    pub tokens: TokenTotals,
    /// Items accounted per second of wall time.
    pub items_per_s: f64,
    /// Per scorer: mean, pass rate and 95% confidence intervals.
    pub scores: BTreeMap<String, ScoreSummary>,
    /// Gate outcomes, in the suite's order.
    pub gates: Vec<GateOutcome>,
    /// Whether every gate held (and at least one item was scored).
    pub passed: bool,
    /// The vigil version that built the summary.
    pub vigil_version: String,
    /// The run's trace id, when tracing is on.
    pub trace_id: Option<String>,
    /// What determined the run (suite, dataset, templates, scorers, model, versions).
    pub manifest: Option<Manifest>,
    /// Per slice: tag → tag value → scorer → summary.
    pub slices: BTreeMap<String, BTreeMap<String, BTreeMap<String, ScoreSummary>>>,
    /// The paired comparison with the baseline run, when there was one.
    pub comparison: Option<Comparison>,
    /// The shadow evaluation's verdict (`vigil shadow`'s candidate summary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowVerdict>,
}

/// One scorer over a run.
///
/// The headline figures (`mean`, `pass_rate`, their intervals, `n`) count
/// every item of the run that this scorer scored or that failed: a failed
/// item (any [`crate::ItemError`]) counts as not passed with value 0, so
/// timeouts cannot raise a pass rate by leaving the denominator. The
/// survivor-only figures, over the items this scorer actually scored, are
/// the `*_scored` fields. Per-slice summaries count scored items only (their
/// `*_scored` fields equal the headline ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ScoreSummary {
    /// Mean value over `n` items (a failed item counts 0).
    pub mean: f64,
    /// 95% confidence interval of the mean (Student t), low end.
    pub mean_ci_low: f64,
    /// 95% confidence interval of the mean, high end.
    pub mean_ci_high: f64,
    /// Fraction of the `n` items that passed (a failed item did not).
    pub pass_rate: f64,
    /// 95% Wilson score interval of the pass rate, low end.
    pub ci_low: f64,
    /// 95% Wilson score interval of the pass rate, high end.
    pub ci_high: f64,
    /// Items in the denominator: scored by this scorer, plus every failed item.
    pub n: u64,
    /// Items that passed.
    pub passed: u64,
    /// Mean value over the items this scorer scored (survivors only).
    pub mean_scored: f64,
    /// 95% interval of `mean_scored`, low end.
    pub mean_scored_ci_low: f64,
    /// 95% interval of `mean_scored`, high end.
    pub mean_scored_ci_high: f64,
    /// Pass rate over the items this scorer scored (survivors only).
    pub pass_rate_scored: f64,
    /// 95% Wilson interval of `pass_rate_scored`, low end.
    pub pass_rate_scored_ci_low: f64,
    /// 95% Wilson interval of `pass_rate_scored`, high end.
    pub pass_rate_scored_ci_high: f64,
    /// Items this scorer scored.
    pub n_scored: u64,
    /// Corpus BLEU over the run (bleu scorers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corpus_bleu: Option<crate::CorpusBleu>,
    /// Per-class metrics and the confusion matrix (classification scorers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<crate::ClassificationSummary>,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
    /// Maximum.
    pub max: f64,
}

/// Token totals of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TokenTotals {
    /// Prompt tokens.
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
}

/// The outcome of one gate of the suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct GateOutcome {
    /// The metric, for example `exact.pass_rate` or `error_rate`.
    pub metric: String,
    /// The lowest value allowed.
    pub min: Option<f64>,
    /// The highest value allowed.
    pub max: Option<f64>,
    /// The run's value (absent when the metric does not exist in this run).
    pub value: Option<f64>,
    /// Whether the gate held.
    pub passed: bool,
    /// For a regression gate: the largest drop tolerated against the baseline.
    pub max_regression: Option<f64>,
    /// For a slice-gap gate: the tag whose slices are compared (`value` is the gap).
    pub slice_gap: Option<String>,
    /// Why the gate held or failed, in words, when more than the value says it.
    pub detail: Option<String>,
}
