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
