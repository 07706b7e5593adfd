//! Parameters of the text-metric, classification and safety scorer kinds
//! ([`crate::ScorerKind::Rouge`], `Bleu`, `Classification`, `Refusal`, `Pii`,
//! `Toxicity`). On the wire every enum here is a snake_case string (ROUGE
//! variants keep rouge-score's names), and every field is optional.

use serde::{Deserialize, Serialize};

/// Which ROUGE F-measure is an item's value (the other two go in the detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RougeVariant {
    /// Unigram overlap.
    #[serde(rename = "rouge1")]
    Rouge1,
    /// Bigram overlap.
    #[serde(rename = "rouge2")]
    Rouge2,
    /// Longest common subsequence.
    #[default]
    #[serde(rename = "rougeL")]
    RougeL,
}

impl RougeVariant {
    /// The variant's name as rouge-score spells it (`rouge1`, `rouge2`, `rougeL`).
    pub fn name(self) -> &'static str {
        match self {
            RougeVariant::Rouge1 => "rouge1",
            RougeVariant::Rouge2 => "rouge2",
            RougeVariant::RougeL => "rougeL",
        }
    }
}

/// sacrebleu's smoothing methods for sentence-level BLEU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BleuSmoothing {
    /// No smoothing: a zero n-gram precision makes the score 0.
    None,
    /// A zero precision becomes `smooth_value / total` (default 0.1).
    Floor,
    /// `smooth_value` (default 1) added to matches and totals of n >= 2.
    AddK,
    /// mteval-v13a's method: the k-th zero precision becomes `1 / (2^k total)`
    /// (sacrebleu's default).
    #[default]
    Exp,
}

/// How BLEU splits text into tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BleuTokenizer {
    /// sacrebleu's `13a` (mteval-v13a): punctuation split off, HTML entities
    /// unescaped.
    #[default]
    #[serde(rename = "13a")]
    Tok13a,
    /// Whitespace only (sacrebleu's `none`).
    None,
}

/// One label of a classification scorer and the words that mean it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LabelSpec {
    /// The label's canonical name (what the summary reports).
    pub name: String,
    /// Other texts that map to this label (after normalisation).
    pub synonyms: Vec<String>,
}

/// How a classification scorer finds the label in the (extracted) output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LabelMatch {
    /// The whole normalised text must equal a label or one of its synonyms.
    #[default]
    Exact,
    /// The leftmost label or synonym found as whole words in the text.
    Search,
}

/// What a refusal scorer expects of the output when the item's reference
/// does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RefusalExpect {
    /// The model should refuse (harmful prompts): a refusal passes.
    #[default]
    Refuse,
    /// The model should answer (over-refusal checks): a refusal fails.
    Comply,
}

/// The default normalisation of a classification scorer: trimmed,
/// case-insensitive, whitespace collapsed, punctuation removed (so
/// `"Billing."` is the label `billing`).
///
/// ```
/// let n = vigil_protocol::scorers::text::label_normalization();
/// assert!(n.ignore_case && n.remove_punctuation && !n.remove_articles);
/// ```
pub fn label_normalization() -> crate::Normalization {
    crate::Normalization {
        trim: true,
        ignore_case: true,
        collapse_whitespace: true,
        remove_punctuation: true,
        remove_articles: false,
    }
}

/// The built-in kinds of the `pii` scorer, for suite checks (the worker's
/// patterns cover exactly these).
pub const PII_KINDS: &[&str] = &[
    "email",
    "phone",
    "credit_card",
    "ssn",
    "api_key",
    "aws_key",
    "bearer_token",
    "private_key",
    "jwt",
];
