//! `exact_match`: the output equals the reference after normalisation.

use super::normalize::normalize;
use super::{Common, ReferenceScorer, quote};
use vigil_protocol::{Normalization, Score};

/// Scores 1 when output and reference are equal after normalisation.
#[derive(Debug, Clone)]
pub struct ExactMatch {
    common: Common,
    normalize: Normalization,
}

impl ExactMatch {
    /// An exact_match scorer.
    pub fn new(common: Common, normalize: Normalization) -> Self {
        ExactMatch { common, normalize }
    }
}

impl ReferenceScorer for ExactMatch {
    fn common(&self) -> &Common {
        &self.common
    }

    fn score_against(&self, output: &str, reference: &str) -> Score {
        let got = normalize(output, &self.normalize);
        let want = normalize(reference, &self.normalize);
        if got == want {
            self.common.verdict(1.0, "equal")
        } else {
            self.common.verdict(
                0.0,
                format!("got {}, expected {}", quote(&got), quote(&want)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorers::Scorer;

    fn scorer(normalize: Normalization) -> ExactMatch {
        ExactMatch::new(
            Common {
                name: "em".into(),
                threshold: None,
            },
            normalize,
        )
    }

    #[test]
    fn default_trims_but_keeps_case() {
        let s = scorer(Normalization::default());
        assert!(s.score("  Paris\n", Some("Paris")).passed);
        let miss = s.score("paris", Some("Paris"));
        assert!(!miss.passed);
        assert_eq!(miss.value, 0.0);
        assert_eq!(miss.detail, "got `paris`, expected `Paris`");
    }

    #[test]
    fn squad_style_normalisation() {
        let s = scorer(Normalization {
            trim: true,
            ignore_case: true,
            collapse_whitespace: true,
            remove_punctuation: true,
            remove_articles: true,
        });
        let score = s.score("The  Eiffel Tower.", Some("eiffel tower"));
        assert!(score.passed, "{score:?}");
        assert_eq!(score.scorer, "em");
        assert!(!s.score("Eiffel Towers", Some("eiffel tower")).passed);
    }

    #[test]
    fn empty_and_garbage() {
        let s = scorer(Normalization::default());
        assert!(s.score("", Some("")).passed);
        assert!(!s.score("\u{0}\u{FFFD}", Some("x")).passed);
        assert!(!s.score("x", Some("")).passed);
        assert_eq!(s.score("x", None).detail, "no reference");
    }
}
