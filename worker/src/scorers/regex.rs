//! `regex`: the output matches a pattern; with a reference, the first capture
//! group (or the whole match when the pattern has none) must equal it.

use super::{Common, Scorer, ScorerError, quote};
use vigil_protocol::Score;

/// Patterns come from jobs, which are data: bound the compiled size so a
/// hostile pattern cannot make a worker allocate without limit (matching
/// itself is linear-time in Rust's regex engine).
const SIZE_LIMIT: usize = 1 << 20;

/// Scores 1 when the pattern matches (and the capture equals the reference).
#[derive(Debug, Clone)]
pub struct RegexScorer {
    common: Common,
    pattern: ::regex::Regex,
}

impl RegexScorer {
    /// A regex scorer; fails when the pattern does not compile.
    pub fn new(common: Common, pattern: &str) -> Result<Self, ScorerError> {
        let pattern = ::regex::RegexBuilder::new(pattern)
            .size_limit(SIZE_LIMIT)
            .build()
            .map_err(|e| ScorerError::Regex {
                scorer: common.name.clone(),
                message: crate::text::short(&e.to_string(), 300),
            })?;
        Ok(RegexScorer { common, pattern })
    }
}

impl Scorer for RegexScorer {
    fn name(&self) -> &str {
        &self.common.name
    }

    fn needs_reference(&self) -> bool {
        false
    }

    fn score(&self, output: &str, reference: Option<&str>) -> Score {
        let Some(caps) = self.pattern.captures(output) else {
            return self.common.verdict(0.0, "no match");
        };
        // The first group that took part in the match; a pattern like
        // `(a)|(b)` should compare `b` when the second branch matched.
        let captured = caps
            .iter()
            .skip(1)
            .flatten()
            .next()
            .or_else(|| caps.get(0))
            .map_or("", |m| m.as_str());
        match reference {
            None => self
                .common
                .verdict(1.0, format!("matched {}", quote(captured))),
            Some(reference) if captured.trim() == reference.trim() => self
                .common
                .verdict(1.0, format!("captured {}", quote(captured.trim()))),
            Some(reference) => self.common.verdict(
                0.0,
                format!(
                    "captured {}, expected {}",
                    quote(captured.trim()),
                    quote(reference.trim())
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scorer(pattern: &str) -> RegexScorer {
        RegexScorer::new(
            Common {
                name: "re".into(),
                threshold: None,
            },
            pattern,
        )
        .unwrap()
    }

    #[test]
    fn match_without_reference() {
        let s = scorer(r"^\d{4}-\d{2}-\d{2}$");
        assert!(s.score("2024-01-31", None).passed);
        let miss = s.score("31/01/2024", None);
        assert!(!miss.passed);
        assert_eq!(miss.detail, "no match");
    }

    #[test]
    fn capture_group_compared_with_reference() {
        let s = scorer(r"(?i)answer:\s*(\w+)");
        assert!(
            s.score("Reasoning...\nAnswer: Paris", Some(" Paris "))
                .passed
        );
        let miss = s.score("Answer: Lyon", Some("Paris"));
        assert!(!miss.passed);
        assert_eq!(miss.detail, "captured `Lyon`, expected `Paris`");
    }

    #[test]
    fn whole_match_when_no_group() {
        let s = scorer(r"\d+");
        assert!(s.score("it is 42 today", Some("42")).passed);
        assert!(!s.score("it is 42 today", Some("4")).passed);
    }

    #[test]
    fn first_participating_group() {
        let s = scorer(r"x=(\d+)|y=(\d+)");
        assert!(s.score("y=7", Some("7")).passed);
    }

    #[test]
    fn bad_pattern_is_a_build_error() {
        let err = RegexScorer::new(
            Common {
                name: "re".into(),
                threshold: None,
            },
            "(unclosed",
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().starts_with("scorer `re`: invalid regex:"),
            "{err}"
        );
    }

    #[test]
    fn huge_pattern_is_refused() {
        let err = RegexScorer::new(
            Common {
                name: "re".into(),
                threshold: None,
            },
            r"\w{1000}{1000}",
        );
        assert!(err.is_err());
    }

    #[test]
    fn garbage_output() {
        let s = scorer(r"\d");
        assert!(!s.score("\u{0}\u{FFFD}\u{202E}", None).passed);
        assert!(!s.score("", Some("1")).passed);
    }
}
