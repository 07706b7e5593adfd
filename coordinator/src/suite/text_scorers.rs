//! Suite parsing of the text-metric, classification and safety scorer
//! kinds (`rouge`, `bleu`, `classification`, `refusal`, `pii`, `toxicity`):
//! their own keys, checked with the place of a bad one named
//! (`scorers[2].labels[1]`). A child module of `suite`, so it shares the
//! checker.

use super::SuiteError;
use super::check::Checker;
use super::raw::RawNormalization;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use vigil_protocol::scorer_params::{PII_KINDS, label_normalization};
use vigil_protocol::{
    BleuSmoothing, BleuTokenizer, LabelMatch, LabelSpec, RefusalExpect, RougeVariant, ScorerKind,
};

/// The kinds this module parses, in the order error messages list them.
pub const TEXT_KINDS: &[&str] = &[
    "rouge",
    "bleu",
    "classification",
    "refusal",
    "pii",
    "toxicity",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RougeParams {
    #[serde(default)]
    variant: RougeVariant,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BleuParams {
    #[serde(default)]
    smooth: BleuSmoothing,
    #[serde(default)]
    smooth_value: Option<f64>,
    #[serde(default)]
    lowercase: bool,
    #[serde(default)]
    tokenize: BleuTokenizer,
}

/// One label as written: a name, or a name with synonyms.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a label name, or a map with `name` and optional `synonyms`"
)]
enum RawLabel {
    Name(String),
    Full {
        name: String,
        #[serde(default)]
        synonyms: Vec<String>,
    },
}

/// Labels as written: a list, or a map from label to its synonyms.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a list of labels, or a map from each label to a list of synonyms"
)]
enum RawLabels {
    List(Vec<RawLabel>),
    Map(BTreeMap<String, Vec<String>>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassificationParams {
    #[serde(default)]
    labels: Option<RawLabels>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default, rename = "match")]
    match_mode: LabelMatch,
    #[serde(default)]
    normalize: Option<RawNormalization>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefusalParams {
    #[serde(default)]
    phrases: Option<Vec<String>>,
    #[serde(default)]
    extra_phrases: Vec<String>,
    #[serde(default)]
    expect: RefusalExpect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PiiParams {
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    patterns: BTreeMap<String, String>,
    #[serde(default)]
    allow: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToxicityParams {
    #[serde(default)]
    words: Option<Vec<String>>,
    #[serde(default)]
    extra_words: Vec<String>,
}

/// Extra gate fields of a kind, for the "unknown field" message.
pub(super) fn extra_fields_hint(kind: &ScorerKind) -> String {
    use crate::text_metrics::{BLEU_FIELDS, CLASSIFICATION_FIELDS};
    match kind {
        ScorerKind::Bleu { .. } => format!(", {}", BLEU_FIELDS.join(", ")),
        ScorerKind::Classification { .. } => format!(
            ", {}, f1.<label>, precision.<label>, recall.<label>, support.<label>",
            CLASSIFICATION_FIELDS.join(", ")
        ),
        _ => String::new(),
    }
}

impl Checker<'_> {
    /// The kind `name` with its keys from `params`, when `name` is one of
    /// [`TEXT_KINDS`]; `None` for other kinds.
    pub(super) fn text_kind(
        &self,
        i: usize,
        name: &str,
        params: Value,
    ) -> Option<Result<ScorerKind, SuiteError>> {
        Some(match name {
            "rouge" => self
                .params::<RougeParams>(i, params)
                .map(|p| ScorerKind::Rouge { variant: p.variant }),
            "bleu" => self.params::<BleuParams>(i, params).and_then(|p| {
                if let Some(v) = p.smooth_value
                    && !(v.is_finite() && v >= 0.0)
                {
                    return Err(self.err(
                        format!("scorers[{i}].smooth_value"),
                        format!("must be at least 0, got {v}"),
                    ));
                }
                Ok(ScorerKind::Bleu {
                    smooth: p.smooth,
                    smooth_value: p.smooth_value,
                    lowercase: p.lowercase,
                    tokenize: p.tokenize,
                })
            }),
            "classification" => self.classification(i, params),
            "refusal" => self.params::<RefusalParams>(i, params).and_then(|p| {
                let total = p.phrases.as_ref().map_or(1, Vec::len) + p.extra_phrases.len();
                let blank = p
                    .phrases
                    .iter()
                    .flatten()
                    .chain(&p.extra_phrases)
                    .position(|s| s.trim().is_empty());
                if let Some(j) = blank {
                    return Err(self.err(format!("scorers[{i}].phrases[{j}]"), "must not be empty"));
                }
                if total == 0 {
                    return Err(self.err(format!("scorers[{i}].phrases"), "no refusal phrases"));
                }
                Ok(ScorerKind::Refusal {
                    phrases: p.phrases,
                    extra_phrases: p.extra_phrases,
                    expect: p.expect,
                })
            }),
            "pii" => self.pii(i, params),
            "toxicity" => self.params::<ToxicityParams>(i, params).and_then(|p| {
                let total = p.words.as_ref().map_or(1, Vec::len) + p.extra_words.len();
                if total == 0 {
                    return Err(self.err(format!("scorers[{i}].words"), "no toxicity words"));
                }
                if let Some(j) = p
                    .words
                    .iter()
                    .flatten()
                    .chain(&p.extra_words)
                    .position(|s| s.trim().is_empty())
                {
                    return Err(self.err(format!("scorers[{i}].words[{j}]"), "must not be empty"));
                }
                Ok(ScorerKind::Toxicity {
                    words: p.words,
                    extra_words: p.extra_words,
                })
            }),
            _ => return None,
        })
    }

    fn regex(&self, field: String, pattern: &str) -> Result<(), SuiteError> {
        regex::Regex::new(pattern)
            .map(drop)
            .map_err(|e| self.err(field, format!("invalid regular expression: {e}")))
    }

    fn classification(&self, i: usize, params: Value) -> Result<ScorerKind, SuiteError> {
        let p: ClassificationParams = self.params(i, params)?;
        let at = |key: &str| format!("scorers[{i}].{key}");
        let labels: Vec<LabelSpec> = match p.labels {
            None => Vec::new(),
            Some(RawLabels::List(list)) => list
                .into_iter()
                .map(|l| match l {
                    RawLabel::Name(name) => LabelSpec {
                        name,
                        synonyms: Vec::new(),
                    },
                    RawLabel::Full { name, synonyms } => LabelSpec { name, synonyms },
                })
                .collect(),
            Some(RawLabels::Map(map)) => map
                .into_iter()
                .map(|(name, synonyms)| LabelSpec { name, synonyms })
                .collect(),
        };
        let normalize = match p.normalize {
            Some(n) => n.into(),
            None => label_normalization(),
        };
        // The worker maps every term through the normalisation; two labels
        // claiming one term would make the mapping ambiguous.
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (j, label) in labels.iter().enumerate() {
            let name = fold(&label.name, &normalize);
            if name.is_empty() {
                return Err(self.err(
                    at(&format!("labels[{j}]")),
                    "a label name must not be empty",
                ));
            }
            if label.name == vigil_protocol::OTHER_LABEL {
                return Err(self.err(
                    at(&format!("labels[{j}]")),
                    "`(other)` is the bucket for unmapped outputs, not a label",
                ));
            }
            for term in std::iter::once(&label.name).chain(&label.synonyms) {
                let t = fold(term, &normalize);
                if let Some(other) = seen.get(&t)
                    && *other != label.name
                {
                    return Err(self.err(
                        at(&format!("labels[{j}]")),
                        format!("`{term}` maps to both `{other}` and `{}`", label.name),
                    ));
                }
                seen.insert(t, label.name.clone());
            }
        }
        if let Some(pattern) = &p.pattern {
            self.regex(at("pattern"), pattern)?;
        }
        Ok(ScorerKind::Classification {
            labels,
            pattern: p.pattern,
            normalize,
            match_mode: p.match_mode,
        })
    }

    fn pii(&self, i: usize, params: Value) -> Result<ScorerKind, SuiteError> {
        let p: PiiParams = self.params(i, params)?;
        let at = |key: String| format!("scorers[{i}].{key}");
        for (j, k) in p.kinds.iter().enumerate() {
            if !PII_KINDS.contains(&k.as_str()) {
                return Err(self.err(
                    at(format!("kinds[{j}]")),
                    format!("unknown pii kind `{k}` (known: {})", PII_KINDS.join(", ")),
                ));
            }
        }
        for (name, pattern) in &p.patterns {
            if name.trim().is_empty() {
                return Err(self.err(at("patterns".into()), "a pattern needs a kind name"));
            }
            self.regex(at(format!("patterns.{name}")), pattern)?;
        }
        for (j, pattern) in p.allow.iter().enumerate() {
            self.regex(at(format!("allow[{j}]")), pattern)?;
        }
        Ok(ScorerKind::Pii {
            kinds: p.kinds,
            patterns: p.patterns,
            allow: p.allow,
        })
    }
}

/// The worker's label normalisation (worker/src/scorers/normalize.rs, same
/// order and patterns), so a suite check finds the conflicts the worker would.
fn fold(text: &str, n: &vigil_protocol::Normalization) -> String {
    use regex::Regex;
    use std::sync::LazyLock;
    static PUNCTUATION: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"[\p{P}[[:punct:]]]").expect("static regex"));
    static ARTICLES: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\b(?:a|an|the)\b\s*").expect("static regex"));
    static WHITESPACE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\s+").expect("static regex"));
    let mut out = text.to_string();
    if n.ignore_case {
        out = out.to_lowercase();
    }
    if n.remove_punctuation {
        out = PUNCTUATION.replace_all(&out, "").into_owned();
    }
    if n.remove_articles {
        out = ARTICLES.replace_all(&out, "").into_owned();
    }
    if n.collapse_whitespace {
        out = WHITESPACE.replace_all(&out, " ").into_owned();
    }
    if n.trim {
        out = out.trim().to_string();
    }
    out
}
