//! The alert published on `vigil.alerts.<suite>` when a gate fails, and on
//! `vigil.alerts.<app>` when a monitor's drift detector alarms.
//!
//! Every field is optional with a default, so older readers and writers keep
//! working.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Published on `vigil.alerts.<suite>` when a gate fails (kind
/// `gate_failed`), and on `vigil.alerts.<app>` by `vigil monitor` when a
/// drift detector alarms (kind `drift`).
///
/// ```
/// let a = vigil_protocol::Alert { suite: "s".into(), gate: "exact.pass_rate".into(), ..Default::default() };
/// let back: vigil_protocol::Alert = vigil_protocol::decode(&vigil_protocol::encode(&a).unwrap()).unwrap();
/// assert_eq!(back.gate, "exact.pass_rate");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Alert {
    /// `gate_failed` or `drift`.
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
    /// Ids of items behind the alert: for `drift`, captures after the
    /// change point that moved the metric, most recent first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}
