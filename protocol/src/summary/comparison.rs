//! A run compared with its baseline ([`crate::RunSummary::comparison`]):
//! how the items were paired and one paired test per scorer, metric and
//! slice.
//!
//! Every field is optional with a default, so older readers and writers keep
//! working.

use super::ManifestDiff;
use serde::{Deserialize, Serialize};

/// A run compared with a baseline run, item by item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Comparison {
    /// The baseline run.
    pub baseline_run_id: String,
    /// How the baseline was chosen: `flag`, `pinned`, `latest_passing`, `explicit`.
    pub baseline_source: String,
    /// What differs between the two manifests (empty: same determinants).
    pub manifest_diffs: Vec<ManifestDiff>,
    /// Items present in both runs (the pairs; a test's `n` leaves out the
    /// pairs where either run has no score from that scorer).
    pub paired_items: u64,
    /// How items were paired: `id` (both runs stored item ids) or `index`
    /// (runs stored without ids, of the same size); empty when not paired.
    pub paired_by: String,
    /// Items of the candidate that the baseline does not have.
    pub items_added: u64,
    /// Items of the baseline that the candidate does not have.
    pub items_removed: u64,
    /// The family-wise significance level of the Holm procedure.
    pub alpha: f64,
    /// Bootstrap resamples used for continuous scores and intervals.
    pub resamples: u32,
    /// The bootstrap seed.
    pub seed: u64,
    /// One entry per scorer, metric and slice tested.
    pub tests: Vec<MetricComparison>,
    /// How the items were paired (how many, by id or index, added,
    /// removed), or why no paired comparison could be made; and anything
    /// else a reader must know about the comparison.
    pub note: Option<String>,
}

/// One paired test: candidate minus baseline on one metric of one scorer,
/// over all items or one slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct MetricComparison {
    /// The scorer.
    pub scorer: String,
    /// `pass_rate` (McNemar's exact test) or `mean` (paired bootstrap).
    pub metric: String,
    /// `None` for all items; else `tag=value`.
    pub slice: Option<String>,
    /// Pairs in the test.
    pub n: u64,
    /// The baseline's value over the pairs.
    pub baseline: f64,
    /// The candidate's value over the pairs.
    pub candidate: f64,
    /// Candidate minus baseline.
    pub diff: f64,
    /// 95% interval of the difference, low end (paired bootstrap percentile).
    pub ci_low: f64,
    /// 95% interval of the difference, high end.
    pub ci_high: f64,
    /// The raw two-sided p-value.
    pub p_value: f64,
    /// The Holm-adjusted p-value across every test of the comparison.
    pub p_adjusted: f64,
    /// Whether the adjusted p-value is below `alpha`.
    pub significant: bool,
    /// Items that passed in the baseline and failed in the candidate (pass/fail only).
    pub pass_to_fail: u64,
    /// Items that failed in the baseline and passed in the candidate.
    pub fail_to_pass: u64,
    /// Up to N item ids (or `#index` when ids are unknown) that went pass → fail.
    pub flipped_to_fail: Vec<String>,
    /// Up to N item ids that went fail → pass.
    pub flipped_to_pass: Vec<String>,
}
