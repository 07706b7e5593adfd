//! A shadow evaluation's verdict ([`crate::RunSummary::shadow`]): a candidate
//! compared item by item with production's recorded responses, stopped by an
//! anytime-valid rule (see `docs/production.md`, "Shadow a candidate").

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The outcome of `vigil shadow`: the estimate, its confidence sequence at
/// the stop, the items used and the call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ShadowVerdict {
    /// The application whose captures were replayed.
    pub app: String,
    /// What was estimated: `win_rate` (a win 1, a tie 0.5, a loss 0, by the
    /// per-item score), `difference` (the mean score difference candidate −
    /// production, in [-1, 1]) or `judge` (the pairwise judges' share for
    /// the candidate, position-swapped, a tie 0.5).
    pub compare: String,
    /// The estimate at the stop (the mean of the paired observations, in the
    /// units of `compare`).
    pub estimate: f64,
    /// The confidence sequence's interval at the stop, low end (same units).
    pub ci_low: f64,
    /// The interval's high end.
    pub ci_high: f64,
    /// The error rate: the chance of any wrong call when the candidate is
    /// as good as production, however often the rule looked.
    pub alpha: f64,
    /// `better`, `worse`, or `no_difference` (none called within the budget).
    pub decision: String,
    /// Paired items the rule used.
    pub items_used: u64,
    /// Most items the rule could use.
    pub budget: u64,
    /// Captures replayed (dispatched) in all: items used plus those skipped
    /// and those of the last wave past the stop.
    pub items_dispatched: u64,
    /// Paired items where neither side had a score to compare (left out).
    pub items_skipped: u64,
    /// Items the candidate won, tied and lost (by the per-item score).
    pub wins: u64,
    /// Ties.
    pub ties: u64,
    /// Losses.
    pub losses: u64,
    /// The scorers the per-item score averages.
    pub scorers: Vec<String>,
    /// The run ids of production's waves, in order.
    pub production_runs: Vec<String>,
    /// The candidate's wave runs.
    pub candidate_runs: Vec<String>,
    /// Captures read but not replayed, by reason (`status_4xx_5xx`,
    /// `no_response`, `embeddings`, `no_prompt`, `malformed`).
    pub captures_not_replayable: BTreeMap<String, u64>,
}
