//! The checks of scorer kinds that need a compiler: regexes compile
//! (`regex`, `classification`, `pii`) and classification labels stay
//! distinct under the worker's normalisation, with the place of a bad one
//! named (`scorers[2].labels[1]`); and the suite's own spellings of labels
//! (a list of names, or a map from each label to its synonyms).

use super::SuiteError;
use super::check::Checker;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use vigil_protocol::{LabelSpec, ScorerKind};

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
    /// Turns `labels` as a suite may write them into the kind's list of
    /// [`LabelSpec`]s.
    pub(super) fn label_forms(
        &self,
        i: usize,
        params: &mut Map<String, Value>,
    ) -> Result<(), SuiteError> {
        let Some(written) = params.remove("labels").filter(|v| !v.is_null()) else {
            return Ok(());
        };
        let mut keys = Map::new();
        keys.insert("labels".into(), written);
        let LabelKeys { labels } = self.params(i, Value::Object(keys))?;
        let labels: Vec<LabelSpec> = match labels {
            RawLabels::List(list) => list
                .into_iter()
                .map(|l| match l {
                    RawLabel::Name(name) => LabelSpec {
                        name,
                        synonyms: Vec::new(),
                    },
                    RawLabel::Full { name, synonyms } => LabelSpec { name, synonyms },
                })
                .collect(),
            RawLabels::Map(map) => map
                .into_iter()
                .map(|(name, synonyms)| LabelSpec { name, synonyms })
                .collect(),
        };
        let labels = serde_json::to_value(labels).expect("labels serialise");
        params.insert("labels".into(), labels);
        Ok(())
    }

    /// What needs a compiler: every regex of the kind compiles, and
    /// classification labels do not claim one term twice.
    pub(super) fn compiled(&self, i: usize, kind: &ScorerKind) -> Result<(), SuiteError> {
        let at = |key: &str| format!("scorers[{i}].{key}");
        match kind {
            ScorerKind::Regex { pattern } => self.regex(at("pattern"), pattern),
            ScorerKind::Classification {
                labels,
                pattern,
                normalize,
                ..
            } => {
                self.labels(i, labels, normalize)?;
                match pattern {
                    Some(pattern) => self.regex(at("pattern"), pattern),
                    None => Ok(()),
                }
            }
            ScorerKind::Pii {
                patterns, allow, ..
            } => {
                for (name, pattern) in patterns {
                    self.regex(at(&format!("patterns.{name}")), pattern)?;
                }
                for (j, pattern) in allow.iter().enumerate() {
                    self.regex(at(&format!("allow[{j}]")), pattern)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn regex(&self, field: String, pattern: &str) -> Result<(), SuiteError> {
        regex::Regex::new(pattern)
            .map(drop)
            .map_err(|e| self.err(field, format!("invalid regular expression: {e}")))
    }

    fn labels(
        &self,
        i: usize,
        labels: &[LabelSpec],
        normalize: &vigil_protocol::Normalization,
    ) -> Result<(), SuiteError> {
        let at = |key: &str| format!("scorers[{i}].{key}");
        // The worker maps every term through the normalisation; two labels
        // claiming one term would make the mapping ambiguous.
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (j, label) in labels.iter().enumerate() {
            let name = fold(&label.name, normalize);
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
                let t = fold(term, normalize);
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
        Ok(())
    }
}

/// `labels` alone, to read the suite's spellings with their place named.
#[derive(Deserialize)]
struct LabelKeys {
    labels: RawLabels,
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
