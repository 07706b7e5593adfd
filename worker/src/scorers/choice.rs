//! `choice`: the multiple-choice letter in the output equals the reference's.
//!
//! Models answer a multiple-choice question in many shapes: `B`, `(B)`,
//! `B.`, `**B**`, `B) Paris`, `Answer: B`, `The correct answer is (B)`, or a
//! sentence ending in the letter. [`extract_choice`] tries those shapes from
//! the most to the least explicit and refuses to guess when a sentence names
//! several letters.

use super::{Common, ReferenceScorer, ScorerError, quote};
use regex::Regex;
use std::sync::LazyLock;
use vigil_protocol::Score;

/// "answer is B", "Answer: (b)", "correct option is C.", "choice: D".
static MARKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        (?i:\b(?:answer|option|choice)\b
            (?:\s+(?:is|would\s+be|should\s+be|will\s+be))?
            \s*[:=]?\s*(?:\*\*)?\s*
            (?:(?:option|choice|letter)\s+)?)
        (?P<open>[(\[])?
        (?P<letter>[A-Za-z0-9])
        (?P<close>[)\].])?
        (?P<after>\W|$)",
    )
    .expect("static regex")
});
/// "B) Paris", "(C) 42", "d. none of the above" at the start of the output.
static LEADING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:\*\*)?[(\[]?(?P<letter>[A-Za-z0-9])(?:[)\].:]|\*\*)(?:\s|$)")
        .expect("static regex")
});
/// A letter standing alone as a word.
static STANDALONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(?P<letter>[A-Z0-9])\b").expect("static regex"));

/// Extracts the chosen letter (uppercased) among `choices` (uppercase
/// letters or digits) from `text`.
///
/// ```
/// use vigil_worker::scorers::choice::extract_choice;
/// let abcd = ['A', 'B', 'C', 'D'];
/// assert_eq!(extract_choice("(b)", &abcd), Some('B'));
/// assert_eq!(extract_choice("Let me think... The answer is C.", &abcd), Some('C'));
/// assert_eq!(extract_choice("Either A or B", &abcd), None);
/// ```
pub fn extract_choice(text: &str, choices: &[char]) -> Option<char> {
    let allowed = |c: char| {
        let up = c.to_ascii_uppercase();
        choices.contains(&up).then_some(up)
    };

    // The whole output is the letter, maybe dressed: "B", "(B)", "**b.**".
    let core = text.trim_matches(|c: char| !c.is_alphanumeric());
    let mut chars = core.chars();
    if let (Some(only), None) = (chars.next(), chars.next()) {
        return allowed(only);
    }

    // An explicit marker; the last one wins, as a model may restate a
    // question's options before answering.
    let marked = MARKER.captures_iter(text).filter_map(|c| {
        let letter = c["letter"].chars().next()?;
        // A lowercase letter must look like a label, not a word:
        // "answer is a." or "(a)" but not "answer is a dog".
        let dressed =
            c.name("open").is_some() || c.name("close").is_some() || c["after"].is_empty();
        if letter.is_ascii_lowercase() && !dressed {
            return None;
        }
        allowed(letter)
    });
    if let Some(letter) = marked.last() {
        return Some(letter);
    }

    if let Some(c) = LEADING.captures(text)
        && let Some(letter) = c["letter"].chars().next().and_then(allowed)
    {
        return Some(letter);
    }

    // Last resort: the output ends with a bare letter ("I'd go with C")
    // and names no other choice ("A or B?" is no answer; neither is a
    // sentence merely starting with the article "A").
    let last_word = text
        .trim_end_matches(|c: char| !c.is_alphanumeric())
        .rsplit(|c: char| !c.is_alphanumeric())
        .next()?;
    let mut chars = last_word.chars();
    let (Some(letter), None) = (chars.next(), chars.next()) else {
        return None;
    };
    if !choices.contains(&letter) {
        return None;
    }
    let others = STANDALONE
        .captures_iter(text)
        .filter_map(|c| c["letter"].chars().next())
        .any(|l| l != letter && choices.contains(&l));
    (!others).then_some(letter)
}

/// Scores 1 when the output's letter equals the reference's.
#[derive(Debug, Clone)]
pub struct Choice {
    common: Common,
    choices: Vec<char>,
    label: String,
}

impl Choice {
    /// A choice scorer over `choices` (ASCII letters or digits, for example
    /// `ABCD`; case does not matter).
    pub fn new(common: Common, choices: &str) -> Result<Self, ScorerError> {
        let mut letters: Vec<char> = Vec::new();
        for c in choices.chars().filter(|c| !c.is_whitespace() && *c != ',') {
            if !c.is_ascii_alphanumeric() {
                return Err(ScorerError::InvalidParams {
                    scorer: common.name.clone(),
                    message: format!(
                        "choices must be ASCII letters or digits, got {}",
                        quote(choices)
                    ),
                });
            }
            let up = c.to_ascii_uppercase();
            if !letters.contains(&up) {
                letters.push(up);
            }
        }
        if letters.is_empty() {
            return Err(ScorerError::InvalidParams {
                scorer: common.name.clone(),
                message: "choices must not be empty".into(),
            });
        }
        let label = letters.iter().collect();
        Ok(Choice {
            common,
            choices: letters,
            label,
        })
    }
}

impl ReferenceScorer for Choice {
    fn common(&self) -> &Common {
        &self.common
    }

    fn score_against(&self, output: &str, reference: &str) -> Score {
        let Some(want) = extract_choice(reference, &self.choices) else {
            return self.common.verdict(
                0.0,
                format!(
                    "reference {} is not one of {}",
                    quote(reference),
                    self.label
                ),
            );
        };
        match extract_choice(output, &self.choices) {
            None => self.common.verdict(
                0.0,
                format!(
                    "no choice among {} found in output, expected {want}",
                    self.label
                ),
            ),
            Some(got) if got == want => self.common.verdict(1.0, format!("extracted {got}")),
            Some(got) => self
                .common
                .verdict(0.0, format!("extracted {got}, expected {want}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorers::Scorer;

    const ABCD: [char; 4] = ['A', 'B', 'C', 'D'];

    fn scorer(choices: &str) -> Choice {
        Choice::new(
            Common {
                name: "mc".into(),
                threshold: None,
            },
            choices,
        )
        .unwrap()
    }

    #[test]
    fn bare_and_dressed_letters() {
        for text in ["B", "b", " (B) ", "B.", "[B]", "**B**", "B)\n", "'b'"] {
            assert_eq!(extract_choice(text, &ABCD), Some('B'), "{text:?}");
        }
        assert_eq!(extract_choice("E", &ABCD), None);
    }

    #[test]
    fn answer_markers() {
        let cases = [
            ("Answer: B", 'B'),
            ("answer: (c)", 'C'),
            ("The answer is D.", 'D'),
            ("The correct answer is (A) because ...", 'A'),
            ("So the answer would be **C**", 'C'),
            ("Options: A) x B) y. The correct option is B", 'B'),
            ("Answer: option D", 'D'),
            ("A is wrong because... B too. Final answer: C", 'C'),
            ("the answer is a.", 'A'),
        ];
        for (text, want) in cases {
            assert_eq!(extract_choice(text, &ABCD), Some(want), "{text:?}");
        }
    }

    #[test]
    fn words_are_not_letters() {
        assert_eq!(extract_choice("the answer is a dog", &ABCD), None);
        assert_eq!(extract_choice("A cat or B dog, hard to say", &ABCD), None);
        assert_eq!(extract_choice("I think the answer is E", &ABCD), None);
        assert_eq!(extract_choice("I'd go with C", &ABCD), Some('C'));
        assert_eq!(extract_choice("A tough one. I'd go with C.", &ABCD), None);
        assert_eq!(extract_choice("Either A or B", &ABCD), None);
        assert_eq!(
            extract_choice("I pick c", &ABCD),
            None,
            "lowercase words are not labels"
        );
    }

    #[test]
    fn leading_label() {
        assert_eq!(extract_choice("B) Paris, because", &ABCD), Some('B'));
        assert_eq!(extract_choice("(c) 42 is right", &ABCD), Some('C'));
        assert_eq!(extract_choice("A man walks in", &ABCD), None);
    }

    #[test]
    fn scoring() {
        let s = scorer("ABCD");
        assert!(s.score("The answer is (B).", Some("B")).passed);
        assert!(s.score("b", Some("(B)")).passed);
        let miss = s.score("Answer: A", Some("B"));
        assert!(!miss.passed);
        assert_eq!(miss.detail, "extracted A, expected B");
        assert_eq!(
            s.score("no idea", Some("B")).detail,
            "no choice among ABCD found in output, expected B"
        );
        assert_eq!(
            s.score("A", Some("Paris")).detail,
            "reference `Paris` is not one of ABCD"
        );
        assert_eq!(s.score("A", None).detail, "no reference");
    }

    #[test]
    fn custom_choices() {
        let s = scorer("a, b, c, d, e");
        assert!(s.score("The answer is E", Some("e")).passed);
        let digits = scorer("1234");
        assert!(digits.score("Answer: 3", Some("3")).passed);
    }

    #[test]
    fn bad_choices_are_build_errors() {
        let c = Common {
            name: "mc".into(),
            threshold: None,
        };
        assert!(Choice::new(c.clone(), "").is_err());
        assert!(Choice::new(c, "A;B").is_err());
    }

    #[test]
    fn garbage() {
        let s = scorer("ABCD");
        for text in ["", "\u{0}", "((((", "🙂", &"A B ".repeat(1000)] {
            assert!(!s.score(text, Some("C")).passed, "{text:?}");
        }
    }
}
