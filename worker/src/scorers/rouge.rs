//! `rouge`: ROUGE-1, ROUGE-2 and ROUGE-L F-measures of the output against
//! the reference, computed as Google's `rouge-score` package (PyPI
//! `rouge-score` 0.1.2, `RougeScorer([...], use_stemmer=False)`) computes
//! them, tokenizer included: lowercase, every run of characters other than
//! `[a-z0-9]` becomes a space, split on whitespace. No stemming.

use super::{Common, ReferenceScorer};
use std::collections::HashMap;
use vigil_protocol::{RougeVariant, Score};

/// Longest token sequence compared per side; LCS is quadratic, so a runaway
/// output must not stall a worker (20k x 20k is about a second).
pub const MAX_TOKENS: usize = 20_000;

/// Precision, recall and F-measure of one ROUGE variant.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Prf {
    /// Overlap over the prediction's size.
    pub precision: f64,
    /// Overlap over the reference's size.
    pub recall: f64,
    /// Harmonic mean of the two (0 when both are 0).
    pub fmeasure: f64,
}

impl Prf {
    fn new(precision: f64, recall: f64) -> Prf {
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Prf {
            precision,
            recall,
            fmeasure,
        }
    }
}

/// rouge-score's default tokenizer (without stemming).
///
/// ```
/// use vigil_worker::scorers::rouge::tokenize;
/// assert_eq!(tokenize("The CAT's hat, 2x!"), ["the", "cat", "s", "hat", "2x"]);
/// assert_eq!(tokenize("café"), ["caf"]);
/// ```
pub fn tokenize(text: &str) -> Vec<String> {
    // Python's str.lower() and Rust's to_lowercase agree on the characters
    // that can lower to ASCII (`İ` -> `i̇`, Kelvin sign -> `k`).
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], u64> {
    let mut counts = HashMap::new();
    if n > 0 && tokens.len() >= n {
        for w in tokens.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// ROUGE-N of `prediction` against `target` (token lists).
pub fn rouge_n(target: &[String], prediction: &[String], n: usize) -> Prf {
    let t = ngrams(target, n);
    let p = ngrams(prediction, n);
    let overlap: u64 = t
        .iter()
        .map(|(g, c)| (*c).min(p.get(g).copied().unwrap_or(0)))
        .sum();
    let t_count: u64 = t.values().sum();
    let p_count: u64 = p.values().sum();
    Prf::new(
        overlap as f64 / p_count.max(1) as f64,
        overlap as f64 / t_count.max(1) as f64,
    )
}

/// Length of the longest common subsequence, in O(len(a) * len(b)) time and
/// O(len(b)) memory.
pub fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L of `prediction` against `target` (token lists).
pub fn rouge_l(target: &[String], prediction: &[String]) -> Prf {
    if target.is_empty() || prediction.is_empty() {
        return Prf::default();
    }
    let lcs = lcs_len(target, prediction) as f64;
    Prf::new(lcs / prediction.len() as f64, lcs / target.len() as f64)
}

/// All three variants of `prediction` against `target` (texts).
///
/// ```
/// use vigil_worker::scorers::rouge::scores;
/// let [r1, r2, rl] = scores("the cat sat on the mat", "the cat lay on the mat");
/// assert!((r1.fmeasure - 5.0 / 6.0).abs() < 1e-12);
/// assert!((r2.fmeasure - 0.6).abs() < 1e-12);
/// assert!((rl.fmeasure - 5.0 / 6.0).abs() < 1e-12);
/// ```
pub fn scores(target: &str, prediction: &str) -> [Prf; 3] {
    let mut t = tokenize(target);
    let mut p = tokenize(prediction);
    t.truncate(MAX_TOKENS);
    p.truncate(MAX_TOKENS);
    [rouge_n(&t, &p, 1), rouge_n(&t, &p, 2), rouge_l(&t, &p)]
}

/// The `rouge` scorer: the chosen variant's F-measure is the value.
#[derive(Debug, Clone)]
pub struct Rouge {
    common: Common,
    variant: RougeVariant,
}

impl Rouge {
    /// A ROUGE scorer reporting `variant`.
    pub fn new(common: Common, variant: RougeVariant) -> Self {
        Rouge { common, variant }
    }
}

impl ReferenceScorer for Rouge {
    fn common(&self) -> &Common {
        &self.common
    }

    fn score_against(&self, output: &str, reference: &str) -> Score {
        let [r1, r2, rl] = scores(reference, output);
        let value = match self.variant {
            RougeVariant::Rouge1 => r1.fmeasure,
            RougeVariant::Rouge2 => r2.fmeasure,
            RougeVariant::RougeL => rl.fmeasure,
        };
        self.common.verdict(
            value,
            format!(
                "rouge1 {:.4} rouge2 {:.4} rougeL {:.4} (F; {} is the value)",
                r1.fmeasure,
                r2.fmeasure,
                rl.fmeasure,
                self.variant.name()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorers::Scorer;

    fn toks(s: &str) -> Vec<String> {
        tokenize(s)
    }

    #[test]
    fn lcs_basics() {
        assert_eq!(lcs_len(&toks("a b c d"), &toks("a c d b")), 3);
        assert_eq!(lcs_len(&toks(""), &toks("a")), 0);
        assert_eq!(lcs_len(&toks("x y"), &toks("x y")), 2);
    }

    #[test]
    fn empty_sides_score_zero() {
        for (t, p) in [("", "a"), ("a", ""), ("", ""), ("!!!", "...")] {
            let all = scores(t, p);
            assert!(all.iter().all(|s| s.fmeasure == 0.0), "{t:?} {p:?}");
        }
    }

    #[test]
    fn identical_texts_score_one() {
        let all = scores("Hello, world: it works.", "hello world it works");
        assert!(all.iter().all(|s| (s.fmeasure - 1.0).abs() < 1e-12));
    }

    #[test]
    fn bigram_needs_two_tokens() {
        let [_, r2, _] = scores("cat", "cat");
        assert_eq!(r2.fmeasure, 0.0);
    }

    #[test]
    fn variant_picks_the_value_and_threshold_decides() {
        let common = Common {
            name: "r".into(),
            threshold: Some(0.5),
        };
        let s = Rouge::new(common.clone(), RougeVariant::Rouge2)
            .score("the cat lay on the mat", Some("the cat sat on the mat"));
        assert!((s.value - 0.6).abs() < 1e-12);
        assert!(s.passed);
        assert!(s.detail.contains("rouge2 0.6000"), "{}", s.detail);
        let none = Rouge::new(common, RougeVariant::RougeL).score("x", None);
        assert!(!none.passed);
    }
}
