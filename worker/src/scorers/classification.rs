//! `classification`: maps the output to a label and compares it with the
//! reference's label. The score carries both labels (`label`, `gold_label`)
//! so the coordinator can build per-class metrics and the confusion matrix.
//!
//! Mapping, in order: an optional regex picks the label text (its first
//! participating capture, else the whole match; no match: `(other)`); the
//! text is normalised; then it must equal a label or a synonym (`exact`), or
//! the leftmost label or synonym found as whole words wins (`search`). With
//! no labels configured the normalised text itself is the label (an open
//! label set; the coordinator caps distinct labels). The reference is mapped
//! the same way, without the regex.

use super::normalize::normalize;
use super::{Common, ReferenceScorer, ScorerError, quote};
use vigil_protocol::{LabelMatch, LabelSpec, Normalization, OTHER_LABEL, Score};

/// Longest label text kept, in characters (open label sets take the text
/// as is, so bound what travels to the coordinator).
pub const MAX_LABEL_CHARS: usize = 64;

/// The `classification` scorer.
#[derive(Debug, Clone)]
pub struct Classification {
    common: Common,
    /// (normalised term, canonical label), longest terms first so `search`
    /// prefers `not spam` over `spam` at the same position.
    terms: Vec<(String, String)>,
    pattern: Option<regex::Regex>,
    normalize: Normalization,
    mode: LabelMatch,
}

impl Classification {
    /// A classification scorer; fails on a bad regex, an empty label name
    /// or a term claimed by two labels.
    pub fn new(
        common: Common,
        labels: &[LabelSpec],
        pattern: Option<&str>,
        normalize_with: Normalization,
        mode: LabelMatch,
    ) -> Result<Self, ScorerError> {
        let invalid = |message: String| ScorerError::InvalidParams {
            scorer: common.name.clone(),
            message,
        };
        let mut terms: Vec<(String, String)> = Vec::new();
        for label in labels {
            if normalize(&label.name, &normalize_with).is_empty() {
                return Err(invalid("a label name is empty after normalisation".into()));
            }
            for term in std::iter::once(&label.name).chain(&label.synonyms) {
                let t = normalize(term, &normalize_with);
                if t.is_empty() {
                    continue;
                }
                if let Some((_, other)) = terms.iter().find(|(x, _)| *x == t)
                    && *other != label.name
                {
                    return Err(invalid(format!(
                        "`{t}` maps to both `{other}` and `{}`",
                        label.name
                    )));
                }
                terms.push((t.into_owned(), label.name.clone()));
            }
        }
        terms.sort_by_key(|t| std::cmp::Reverse(t.0.len()));
        let pattern = pattern
            .map(|p| {
                regex::RegexBuilder::new(p)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| ScorerError::Regex {
                        scorer: common.name.clone(),
                        message: crate::text::short(&e.to_string(), 300),
                    })
            })
            .transpose()?;
        Ok(Classification {
            common,
            terms,
            pattern,
            normalize: normalize_with,
            mode,
        })
    }

    /// The label `text` maps to (already extracted, not yet normalised);
    /// `None` when it maps to none.
    fn map(&self, text: &str, mode: LabelMatch) -> Option<String> {
        let t = normalize(text, &self.normalize);
        if self.terms.is_empty() {
            return (!t.is_empty()).then(|| t.chars().take(MAX_LABEL_CHARS).collect());
        }
        match mode {
            LabelMatch::Exact => self
                .terms
                .iter()
                .find(|(term, _)| *term == t)
                .map(|(_, l)| l.clone()),
            LabelMatch::Search => {
                let mut best: Option<(usize, &String)> = None;
                for (term, label) in &self.terms {
                    if let Some(pos) = find_word(&t, term)
                        && best.is_none_or(|(b, _)| pos < b)
                    {
                        best = Some((pos, label));
                    }
                }
                best.map(|(_, l)| l.clone())
            }
        }
    }

    /// The output's label text: the regex's capture, or the whole output.
    fn extract<'a>(&self, output: &'a str) -> Option<&'a str> {
        let Some(re) = &self.pattern else {
            return Some(output);
        };
        let caps = re.captures(output)?;
        caps.iter()
            .skip(1)
            .flatten()
            .next()
            .or_else(|| caps.get(0))
            .map(|m| m.as_str())
    }
}

/// Byte position of the first occurrence of `term` in `text` as whole words
/// (not inside a longer alphanumeric run).
fn find_word(text: &str, term: &str) -> Option<usize> {
    let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut from = 0;
    while let Some(i) = text[from..].find(term) {
        let start = from + i;
        let end = start + term.len();
        if !is_word(text[..start].chars().next_back()) && !is_word(text[end..].chars().next()) {
            return Some(start);
        }
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

impl ReferenceScorer for Classification {
    fn common(&self) -> &Common {
        &self.common
    }

    fn score_against(&self, output: &str, reference: &str) -> Score {
        let predicted = self
            .extract(output)
            .and_then(|t| self.map(t, self.mode))
            .unwrap_or_else(|| OTHER_LABEL.to_string());
        // The gold label is the reference's label; a reference that is no
        // label keeps its normalised text, so the summary shows the bad data
        // as a class with support and no correct prediction.
        let gold = self.map(reference, LabelMatch::Exact).unwrap_or_else(|| {
            let t: String = normalize(reference, &self.normalize)
                .chars()
                .take(MAX_LABEL_CHARS)
                .collect();
            if t.is_empty() {
                OTHER_LABEL.to_string()
            } else {
                t
            }
        });
        let hit = predicted == gold && predicted != OTHER_LABEL;
        let detail = if hit {
            format!("label {}", quote(&predicted))
        } else {
            format!("label {}, expected {}", quote(&predicted), quote(&gold))
        };
        let mut score = self.common.verdict(if hit { 1.0 } else { 0.0 }, detail);
        score.label = Some(predicted);
        score.gold_label = Some(gold);
        score
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorers::Scorer;
    use vigil_protocol::scorers::text::label_normalization;

    fn labels(spec: &[(&str, &[&str])]) -> Vec<LabelSpec> {
        spec.iter()
            .map(|(n, syn)| LabelSpec {
                name: n.to_string(),
                synonyms: syn.iter().map(|s| s.to_string()).collect(),
            })
            .collect()
    }

    fn scorer(spec: &[(&str, &[&str])], pattern: Option<&str>, mode: LabelMatch) -> Classification {
        Classification::new(
            Common {
                name: "intent".into(),
                threshold: None,
            },
            &labels(spec),
            pattern,
            label_normalization(),
            mode,
        )
        .unwrap()
    }

    #[test]
    fn exact_after_normalisation() {
        let s = scorer(
            &[("billing", &[]), ("shipping", &[])],
            None,
            LabelMatch::Exact,
        );
        let hit = s.score("  Billing. ", Some("billing"));
        assert!(hit.passed);
        assert_eq!(hit.label.as_deref(), Some("billing"));
        assert_eq!(hit.gold_label.as_deref(), Some("billing"));
        let miss = s.score("It is about billing", Some("billing"));
        assert!(!miss.passed);
        assert_eq!(miss.label.as_deref(), Some(OTHER_LABEL));
        assert_eq!(miss.detail, "label `(other)`, expected `billing`");
    }

    #[test]
    fn synonyms_map_to_their_label() {
        let s = scorer(
            &[
                ("billing", &["invoice", "payment issue"]),
                ("shipping", &["delivery"]),
            ],
            None,
            LabelMatch::Exact,
        );
        assert_eq!(
            s.score("Payment  issue", Some("billing")).label.as_deref(),
            Some("billing")
        );
        assert_eq!(
            s.score("DELIVERY", Some("Shipping")).label.as_deref(),
            Some("shipping")
        );
        // The reference maps through synonyms too.
        assert!(s.score("billing", Some("invoice")).passed);
    }

    #[test]
    fn regex_capture_then_map() {
        let s = scorer(
            &[("spam", &[]), ("ham", &[])],
            Some(r"(?i)label:\s*(\w+)"),
            LabelMatch::Exact,
        );
        assert!(s.score("Reasoning... Label: SPAM", Some("spam")).passed);
        let none = s.score("no label here", Some("spam"));
        assert_eq!(none.label.as_deref(), Some(OTHER_LABEL));
    }

    #[test]
    fn search_takes_leftmost_whole_word_and_prefers_longer_terms() {
        let s = scorer(
            &[("spam", &[]), ("not_spam", &["not spam"])],
            None,
            LabelMatch::Search,
        );
        assert_eq!(
            s.score("This is not spam.", Some("not_spam"))
                .label
                .as_deref(),
            Some("not_spam")
        );
        assert_eq!(
            s.score("Spam, not ham", Some("spam")).label.as_deref(),
            Some("spam")
        );
        assert_eq!(
            s.score("spammy", Some("spam")).label.as_deref(),
            Some(OTHER_LABEL)
        );
    }

    #[test]
    fn open_label_set_uses_the_text() {
        let s = scorer(&[], None, LabelMatch::Exact);
        let sc = s.score("Positive!", Some("positive"));
        assert!(sc.passed);
        assert_eq!(sc.label.as_deref(), Some("positive"));
        let long = "x".repeat(500);
        assert_eq!(
            s.score(&long, Some("y")).label.unwrap().chars().count(),
            MAX_LABEL_CHARS
        );
        assert_eq!(
            s.score("!!!", Some("y")).label.as_deref(),
            Some(OTHER_LABEL)
        );
    }

    #[test]
    fn unknown_reference_keeps_its_text() {
        let s = scorer(&[("a", &[])], None, LabelMatch::Exact);
        let sc = s.score("a", Some("Zed"));
        assert_eq!(sc.gold_label.as_deref(), Some("zed"));
        assert!(!sc.passed);
    }

    #[test]
    fn conflicting_synonyms_are_refused() {
        let err = Classification::new(
            Common {
                name: "c".into(),
                threshold: None,
            },
            &labels(&[("a", &["x"]), ("b", &["X"])]),
            None,
            label_normalization(),
            LabelMatch::Exact,
        )
        .err()
        .unwrap();
        assert_eq!(err.to_string(), "scorer `c`: `x` maps to both `a` and `b`");
    }
}
