//! Drift alarms: sequential change detectors on a stream of per-item scores
//! (pass/fail or bounded in [0, 1]) against a reference period.
//!
//! - [`EDetector`]: an e-detector (Shin, Ramdas & Rinaldo 2023), a mixture
//!   of e-CUSUM statistics over a grid of change sizes. Under no change its
//!   average run length to a false alarm is at least `1/α` (see
//!   [`EDetector`] for the exact statement and its conditions).
//! - [`StaticThreshold`]: a rolling mean compared with fixed bounds. Named as
//!   such in its type and its alarms; no statistical guarantee is claimed.
//!
//! Both take scores one at a time with [`DriftDetector::observe`] and return
//! a [`DriftAlarm`] with the evidence: the metric before and after, the
//! change point estimate, counts and example item ids.
//!
//! The rule, the guarantee and the measured detection delays are in
//! `docs/production.md`, "Drift detection".

mod alarm;
mod edetector;
mod reference;
mod threshold;

pub use alarm::{DetectorKind, Direction, DriftAlarm};
pub use edetector::{EDetector, EDetectorConfig};
pub use reference::Reference;
pub use threshold::{StaticThreshold, StaticThresholdConfig};

/// What a drift detector refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    /// A score outside [0, 1] or not a number.
    #[error(
        "score {score} of item {id:?} is outside [0, 1]: drift detectors take pass/fail or bounded scores"
    )]
    ScoreOutOfRange {
        /// The item id.
        id: String,
        /// The score.
        score: f64,
    },
    /// A reference period without scores.
    #[error("the reference period has no scores: a drift detector needs a reference")]
    EmptyReference,
    /// A configuration value out of its range.
    #[error("invalid drift detector configuration: {0}")]
    Config(String),
}

/// A sequential drift detector: one score at a time, an alarm when the
/// stream has moved away from the reference.
pub trait DriftDetector {
    /// Takes the next item's score (in [0, 1]); returns an alarm if this
    /// score raised one. After an alarm the detector starts over, as if the
    /// stream began with the next score.
    fn observe(&mut self, id: &str, score: f64) -> Result<Option<DriftAlarm>, DriftError>;

    /// The number of scores observed so far.
    fn samples(&self) -> u64;
}

/// Checks that a score is in [0, 1].
fn check_score(id: &str, score: f64) -> Result<(), DriftError> {
    if (0.0..=1.0).contains(&score) {
        Ok(())
    } else {
        Err(DriftError::ScoreOutOfRange {
            id: id.to_string(),
            score,
        })
    }
}
