//! `contains`: the output contains the reference after normalisation.

use super::normalize::normalize;
use super::{Common, ReferenceScorer, quote};
use vigil_protocol::{Normalization, Score};

/// Scores 1 when the normalised output contains the normalised reference.
#[derive(Debug, Clone)]
pub struct Contains {
    common: Common,
    normalize: Normalization,
}

impl Contains {
    /// A contains scorer.
    pub fn new(common: Common, normalize: Normalization) -> Self {
        Contains { common, normalize }
    }
}

impl ReferenceScorer for Contains {
    fn common(&self) -> &Common {
        &self.common
    }

    fn score_against(&self, output: &str, reference: &str) -> Score {
        let want = normalize(reference, &self.normalize);
        // An empty reference is contained in everything: a rendering bug in
        // the suite, not a pass.
        if want.is_empty() {
            return self.common.verdict(0.0, "empty reference");
        }
        let got = normalize(output, &self.normalize);
        if got.contains(want.as_ref()) {
            self.common
                .verdict(1.0, format!("contains {}", quote(&want)))
        } else {
            self.common
                .verdict(0.0, format!("{} not found in output", quote(&want)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorers::Scorer;

    fn scorer(normalize: Normalization) -> Contains {
        Contains::new(
            Common {
                name: "c".into(),
                threshold: None,
            },
            normalize,
        )
    }

    #[test]
    fn finds_the_reference() {
        let s = scorer(Normalization::default());
        assert!(s.score("The capital is Paris.", Some(" Paris ")).passed);
        let miss = s.score("The capital is paris.", Some("Paris"));
        assert!(!miss.passed);
        assert_eq!(miss.detail, "`Paris` not found in output");
    }

    #[test]
    fn ignore_case_and_whitespace() {
        let s = scorer(Normalization {
            ignore_case: true,
            collapse_whitespace: true,
            ..Normalization::default()
        });
        assert!(s.score("it is NEW\n  YORK city", Some("new york")).passed);
    }

    #[test]
    fn empty_reference_does_not_pass() {
        let s = scorer(Normalization::default());
        let score = s.score("anything", Some("   "));
        assert!(!score.passed);
        assert_eq!(score.detail, "empty reference");
    }

    #[test]
    fn missing_reference() {
        assert_eq!(
            scorer(Normalization::default()).score("x", None).detail,
            "no reference"
        );
    }
}
