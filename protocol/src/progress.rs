//! Live progress events on `vigil.events.<run_id>` (core NATS, not persisted).

use serde::{Deserialize, Serialize};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunPhase {
    /// Reading the dataset and publishing jobs (results may already arrive).
    #[default]
    Dispatching,
    /// Every job is published; waiting for results.
    Running,
    /// The summary is built.
    Finished,
}

/// A snapshot of one run's progress, published about once a second.
///
/// ```
/// let e = vigil_protocol::ProgressEvent { total: 10, done: 5, ..Default::default() };
/// assert_eq!(e.fraction(), 0.5);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProgressEvent {
    /// The run.
    pub run_id: String,
    /// The suite's name.
    pub suite: String,
    /// The target's name.
    pub target: String,
    /// Where the run is.
    pub phase: RunPhase,
    /// Items in the run.
    pub total: u64,
    /// Items published in jobs so far.
    pub dispatched: u64,
    /// Items accounted (scored or failed).
    pub done: u64,
    /// Items failed so far.
    pub failed: u64,
    /// Items per second since the run started.
    pub items_per_s: f64,
    /// Estimated seconds to the end, when known.
    pub eta_s: Option<f64>,
    /// Wall-clock time of the event, Unix milliseconds.
    pub ts_unix_ms: u64,
}

impl ProgressEvent {
    /// `done / total`, 0 when the total is 0.
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.done as f64 / self.total as f64
        }
    }
}
