//! `bleu`: sentence BLEU of the output against the reference, computed as
//! sacrebleu 2.6.0's `sentence_bleu` computes it (13a tokenizer, exp
//! smoothing, effective order), on a 0..1 scale. Each item also carries its
//! n-gram statistics ([`BleuStats`]) so the coordinator can report corpus
//! BLEU exactly as `sacrebleu.corpus_bleu` would over the run.

use super::{Common, ReferenceScorer};
use regex::Regex;
use std::collections::HashMap;
use std::sync::LazyLock;
use vigil_protocol::{BleuSmoothing, BleuStats, BleuTokenizer, CorpusBleu, Score};

/// BLEU's n-gram orders, 1 through this.
pub const MAX_ORDER: usize = 4;

/// Longest output or reference tokenised, in characters; beyond it the text
/// is cut (a runaway output must not make a worker allocate without bound).
pub const MAX_CHARS: usize = 200_000;

// mteval-v13a's rules, as sacrebleu's `TokenizerRegexp` writes them.
static SYMBOLS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([\{-~\[-` -&\(-\+:-@/])").expect("static regex"));
static PERIOD_COMMA_AFTER_NON_DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([^0-9])([\.,])").expect("static regex"));
static PERIOD_COMMA_BEFORE_NON_DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([\.,])([^0-9])").expect("static regex"));
static DASH_AFTER_DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([0-9])(-)").expect("static regex"));

/// Python's `str.isspace()`: Unicode whitespace plus the ASCII information
/// separators U+001C..U+001F, which Rust does not count as whitespace.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `" ".join(text.split())`.
fn py_split_join(text: &str) -> String {
    text.split(py_space)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// sacrebleu's `13a` tokenizer, returning the tokenised line.
///
/// ```
/// use vigil_worker::scorers::bleu::tokenize_13a;
/// assert_eq!(tokenize_13a("Hello, world! It costs $3.50."), "Hello , world ! It costs $ 3.50 .");
/// assert_eq!(tokenize_13a("a &amp; b -- 1-2"), "a & b -- 1 - 2");
/// ```
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let line = format!(" {line} ");
    let line = SYMBOLS.replace_all(&line, " ${1} ");
    let line = PERIOD_COMMA_AFTER_NON_DIGIT.replace_all(&line, "${1} ${2} ");
    let line = PERIOD_COMMA_BEFORE_NON_DIGIT.replace_all(&line, " ${1} ${2}");
    let line = DASH_AFTER_DIGIT.replace_all(&line, "${1} ${2} ");
    py_split_join(&line)
}

/// The tokens of `text` as sacrebleu's BLEU sees them (`_preprocess_segment`
/// then `split()`).
pub fn tokens(text: &str, lowercase: bool, tokenizer: BleuTokenizer) -> Vec<String> {
    let mut text: &str = text;
    if let Some((cut, _)) = text.char_indices().nth(MAX_CHARS) {
        text = &text[..cut];
    }
    let text = if lowercase {
        text.to_lowercase()
    } else {
        text.to_string()
    };
    let text = text.trim_end_matches(py_space);
    let line = match tokenizer {
        BleuTokenizer::Tok13a => tokenize_13a(text),
        BleuTokenizer::None => py_split_join(text),
    };
    line.split(py_space)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn ngram_counts(tokens: &[String]) -> HashMap<&[String], u64> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER {
        if tokens.len() >= n {
            for w in tokens.windows(n) {
                *counts.entry(w).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// The segment statistics of one output against one reference.
pub fn stats(hyp: &[String], reference: &[String]) -> BleuStats {
    let h = ngram_counts(hyp);
    let r = ngram_counts(reference);
    let mut correct = vec![0; MAX_ORDER];
    let mut total = vec![0; MAX_ORDER];
    for (gram, count) in &h {
        let n = gram.len() - 1;
        total[n] += count;
        if let Some(rc) = r.get(gram) {
            correct[n] += (*count).min(*rc);
        }
    }
    BleuStats {
        hyp_len: hyp.len() as u64,
        ref_len: reference.len() as u64,
        correct,
        total,
    }
}

/// Sentence BLEU from one item's statistics ([`BleuStats::bleu`]).
pub fn compute(
    s: &BleuStats,
    smooth: BleuSmoothing,
    smooth_value: Option<f64>,
    effective_order: bool,
) -> CorpusBleu {
    s.bleu(smooth, smooth_value, effective_order)
}

/// The `bleu` scorer.
#[derive(Debug, Clone)]
pub struct Bleu {
    common: Common,
    smooth: BleuSmoothing,
    smooth_value: Option<f64>,
    lowercase: bool,
    tokenizer: BleuTokenizer,
}

impl Bleu {
    /// A sentence-BLEU scorer.
    pub fn new(
        common: Common,
        smooth: BleuSmoothing,
        smooth_value: Option<f64>,
        lowercase: bool,
        tokenizer: BleuTokenizer,
    ) -> Self {
        Bleu {
            common,
            smooth,
            smooth_value,
            lowercase,
            tokenizer,
        }
    }
}

impl ReferenceScorer for Bleu {
    fn common(&self) -> &Common {
        &self.common
    }

    fn score_against(&self, output: &str, reference: &str) -> Score {
        let hyp = tokens(output, self.lowercase, self.tokenizer);
        let refs = tokens(reference, self.lowercase, self.tokenizer);
        let st = stats(&hyp, &refs);
        let b = compute(&st, self.smooth, self.smooth_value, true);
        let p: Vec<String> = b.precisions.iter().map(|p| format!("{p:.3}")).collect();
        let mut score = self.common.verdict(
            b.score,
            format!(
                "bleu {:.4} (p {}; bp {:.3}; hyp {} ref {} tokens)",
                b.score,
                p.join("/"),
                b.bp,
                st.hyp_len,
                st.ref_len
            ),
        );
        score.bleu = Some(st);
        score
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorers::Scorer;

    fn bleu(smooth: BleuSmoothing) -> Bleu {
        Bleu::new(
            Common {
                name: "b".into(),
                threshold: Some(0.3),
            },
            smooth,
            None,
            false,
            BleuTokenizer::Tok13a,
        )
    }

    #[test]
    fn identical_is_one_and_carries_stats() {
        let s = bleu(BleuSmoothing::Exp)
            .score("The cat sat on the mat.", Some("The cat sat on the mat."));
        assert!((s.value - 1.0).abs() < 1e-12, "{}", s.value);
        let st = s.bleu.unwrap();
        assert_eq!((st.hyp_len, st.ref_len), (7, 7));
        assert_eq!(st.correct, vec![7, 6, 5, 4]);
    }

    #[test]
    fn no_match_is_zero() {
        let s = bleu(BleuSmoothing::Exp).score("xyz", Some("abc def"));
        assert_eq!(s.value, 0.0);
        assert!(!s.passed);
    }

    #[test]
    fn empty_output_is_zero_not_nan() {
        let s = bleu(BleuSmoothing::Exp).score("", Some("abc def"));
        assert_eq!(s.value, 0.0);
        assert_eq!(s.bleu.unwrap().hyp_len, 0);
    }

    #[test]
    fn smoothing_matters_for_short_sentences() {
        // 3 tokens: no 4-grams, effective order 3; a missing trigram match.
        let none = bleu(BleuSmoothing::None).score("a b c", Some("a b d"));
        let exp = bleu(BleuSmoothing::Exp).score("a b c", Some("a b d"));
        assert_eq!(none.value, 0.0);
        assert!(exp.value > 0.0);
    }

    #[test]
    fn stats_add_up() {
        let mut a = stats(
            &tokens("a b", false, BleuTokenizer::None),
            &tokens("a b", false, BleuTokenizer::None),
        );
        let b = stats(
            &tokens("c", false, BleuTokenizer::None),
            &tokens("d", false, BleuTokenizer::None),
        );
        a.add(&b);
        assert_eq!(a.correct, vec![2, 1, 0, 0]);
        assert_eq!(a.total, vec![3, 1, 0, 0]);
        assert_eq!((a.hyp_len, a.ref_len), (3, 3));
    }

    #[test]
    fn python_whitespace_rules() {
        assert_eq!(tokenize_13a("a\u{1f}b\u{a0}c"), "a b c");
        assert_eq!(tokens("x  \n", false, BleuTokenizer::None), ["x"]);
    }
}
