//! The reference period a drift detector compares the stream with.

use super::{DriftError, check_score};
use crate::stats::{Welford, mean_interval, wilson_interval};

/// Scores of a reference period: their count, mean, and whether all were
/// pass/fail (0 or 1). Serialisable, so a monitor can keep it across restarts.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Reference {
    scores: Welford,
    passed: u64,
    binary: bool,
}

impl Reference {
    /// A reference of pass/fail outcomes: `passed` of `total`.
    pub fn pass_fail(passed: u64, total: u64) -> Result<Self, DriftError> {
        if total == 0 {
            return Err(DriftError::EmptyReference);
        }
        if passed > total {
            return Err(DriftError::Config(format!(
                "{passed} passed of {total} in the reference"
            )));
        }
        let mut scores = Welford::constant(1.0, passed);
        scores.merge(&Welford::constant(0.0, total - passed));
        Ok(Reference {
            scores,
            passed,
            binary: true,
        })
    }

    /// A reference from scores in [0, 1]; pass/fail if every score is 0 or 1.
    pub fn from_scores(scores: impl IntoIterator<Item = f64>) -> Result<Self, DriftError> {
        let mut r = Reference::empty();
        for s in scores {
            r.push(s)?;
        }
        if r.scores.count() == 0 {
            return Err(DriftError::EmptyReference);
        }
        Ok(r)
    }

    /// A reference without scores yet, to [`Reference::push`] scores into
    /// as they come (a monitor's first items).
    pub fn empty() -> Self {
        Reference {
            binary: true,
            ..Default::default()
        }
    }

    /// Adds one score in [0, 1].
    pub fn push(&mut self, score: f64) -> Result<(), DriftError> {
        check_score("<reference>", score)?;
        self.scores.push(score);
        if score == 1.0 {
            self.passed += 1;
        } else if score != 0.0 {
            self.binary = false;
        }
        Ok(())
    }

    /// The number of reference scores.
    pub fn count(&self) -> u64 {
        self.scores.count()
    }

    /// The reference mean.
    pub fn mean(&self) -> f64 {
        self.scores.mean()
    }

    /// The two-sided `confidence` interval of the reference mean: Wilson's
    /// for pass/fail, Student's t for other scores, clamped to [0, 1].
    pub fn interval(&self, confidence: f64) -> (f64, f64) {
        let (lo, hi) = if self.binary {
            wilson_interval(self.passed, self.count(), confidence)
        } else {
            mean_interval(&self.scores, confidence)
        };
        (lo.clamp(0.0, 1.0), hi.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_fail_and_scores_agree_and_bound_the_mean() {
        let a = Reference::pass_fail(900, 1000).unwrap();
        let b = Reference::from_scores((0..1000).map(|i| if i < 900 { 1.0 } else { 0.0 })).unwrap();
        assert_eq!(a.count(), 1000);
        assert!((a.mean() - 0.9).abs() < 1e-12);
        assert_eq!(a.interval(0.9), b.interval(0.9));
        let (lo, hi) = a.interval(0.9);
        assert!(lo < 0.9 && 0.9 < hi && lo > 0.88, "{lo} {hi}");
    }

    #[test]
    fn empty_or_out_of_range_references_are_refused() {
        assert_eq!(
            Reference::pass_fail(0, 0).unwrap_err(),
            DriftError::EmptyReference
        );
        assert!(Reference::pass_fail(3, 2).is_err());
        assert_eq!(
            Reference::from_scores(std::iter::empty()).unwrap_err(),
            DriftError::EmptyReference
        );
        assert!(matches!(
            Reference::from_scores([0.5, 1.5]),
            Err(DriftError::ScoreOutOfRange { .. })
        ));
        assert!(Reference::from_scores([f64::NAN]).is_err());
    }
}
