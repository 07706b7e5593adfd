//! The evidence a drift alarm carries.

use serde::{Deserialize, Serialize};

/// Which kind of detector raised an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// The e-detector: average run length to a false alarm ≥ `1/α`.
    EDetector,
    /// A static threshold on a rolling mean: no statistical guarantee.
    StaticThreshold,
}

/// Which way the metric moved (or is watched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A drop (the usual quality regression).
    #[default]
    Drop,
    /// A rise.
    Rise,
    /// Either way.
    Both,
}

/// A drift alarm with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftAlarm {
    /// The monitored metric (e.g. a scorer name).
    pub metric: String,
    /// The detector that raised it.
    pub detector: DetectorKind,
    /// The way the metric moved: [`Direction::Drop`] or [`Direction::Rise`].
    pub direction: Direction,
    /// The configured false-alarm rate `α` (e-detector only).
    pub alpha: Option<f64>,
    /// The alarm threshold: `1/α` for the e-detector, the bound crossed for
    /// a static threshold.
    pub threshold: f64,
    /// The value of the statistic when the alarm was raised (the e-detector's
    /// `M_t`, a static threshold's rolling mean).
    pub statistic: f64,
    /// The reference mean (the metric before).
    pub reference_mean: f64,
    /// The number of reference scores.
    pub reference_count: u64,
    /// The null boundary the stream was tested against: the conservative
    /// confidence bound of the reference mean on the alarm's side (e-detector),
    /// the bound crossed (static threshold).
    pub null_boundary: f64,
    /// The mean of the scores since the change point (the metric after).
    pub recent_mean: f64,
    /// The number of scores since the change point, this one included.
    pub recent_count: u64,
    /// The estimated change point: the 0-based index (in the detector's
    /// stream, counted from its first score) of the first score after the
    /// change.
    pub change_point: u64,
    /// The 0-based index of the score that raised the alarm.
    pub detected_at: u64,
    /// Up to N ids of items after the change point that moved the metric
    /// the alarm's way, most recent first.
    pub example_ids: Vec<String>,
}
