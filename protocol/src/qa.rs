//! Continuous-QA types carried by a [`crate::RunSummary`]: the manifest of
//! what determined a run, the comparison with a baseline, the response-cache
//! policy a job carries, and the alert published when a gate fails.
//!
//! Every field is optional with a default, so older readers and writers keep
//! working (schema version unchanged).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything that determines a run's outcome, recorded so two runs are
/// never compared without saying what differs.
///
/// ```
/// use vigil_protocol::Manifest;
/// let m = Manifest { dataset_sha256: "ab".into(), dataset_items: 3, ..Default::default() };
/// let back: Manifest = vigil_protocol::decode(&vigil_protocol::encode(&m).unwrap()).unwrap();
/// assert_eq!(back, m);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Manifest {
    /// SHA-256 (hex) of the suite file's bytes.
    pub suite_sha256: String,
    /// SHA-256 (hex) of the dataset file's bytes.
    pub dataset_sha256: String,
    /// Items in the dataset.
    pub dataset_items: u64,
    /// SHA-256 (hex) of the prompt templates (system, user, messages, completion).
    pub template_sha256: String,
    /// Each scorer's configuration as JSON text, by scorer name.
    pub scorers: BTreeMap<String, String>,
    /// The target's endpoint kind (`chat`, `completions`, `local`).
    pub endpoint_kind: String,
    /// The target's base URL, with any userinfo removed (a `local` target's
    /// model file).
    pub base_url: String,
    /// The model the target asks for.
    pub model: String,
    /// The sampling parameters as JSON text.
    pub sampling: String,
    /// The model ids the backend reported in responses (most frequent first).
    pub response_models: Vec<String>,
    /// The nats-server version the run used.
    pub nats_server_version: String,
    /// The vigil version of the coordinator.
    pub vigil_version: String,
}

/// One manifest field that differs between two runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ManifestDiff {
    /// The field (for example `dataset_sha256`, `scorers.exact`).
    pub field: String,
    /// The baseline's value.
    pub baseline: String,
    /// The candidate's value.
    pub candidate: String,
}

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

/// Whether and how long a worker may reuse a response, carried by a job.
///
/// ```
/// let p = vigil_protocol::CachePolicy { enabled: true, ttl_s: Some(60) };
/// assert!(p.enabled);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CachePolicy {
    /// Look responses up before calling the backend and store them after.
    pub enabled: bool,
    /// Entries older than this many seconds are ignored (`None`: no limit).
    pub ttl_s: Option<u64>,
}

/// Published on `vigil.alerts.<suite>` when a gate fails.
///
/// ```
/// let a = vigil_protocol::Alert { suite: "s".into(), gate: "exact.pass_rate".into(), ..Default::default() };
/// let back: vigil_protocol::Alert = vigil_protocol::decode(&vigil_protocol::encode(&a).unwrap()).unwrap();
/// assert_eq!(back.gate, "exact.pass_rate");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Alert {
    /// `gate_failed`.
    pub kind: String,
    /// The suite.
    pub suite: String,
    /// The target.
    pub target: String,
    /// The run.
    pub run_id: String,
    /// The gate's description (its metric, and the kind of condition).
    pub gate: String,
    /// Values that explain the failure (`value`, `min`, `max`, `diff`, `p_adjusted`, ...).
    pub values: BTreeMap<String, f64>,
    /// The baseline run, for regression gates.
    pub baseline_run_id: Option<String>,
    /// When, RFC 3339.
    pub at: String,
}
