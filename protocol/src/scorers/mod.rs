//! Scorer kinds, defined once: [`ScorerKind`] and its parameters (with their
//! defaults), [`ScorerKind::needs_reference`] and the pure parameter check
//! [`ScorerKind::validate`]. The parameter types of the text, classification
//! and safety kinds are in [`text`], those of the kinds that do IO on the
//! worker (`llm_judge`, `embedding_similarity`, `external`) in [`io`].
//!
//! The coordinator's suite parser reads a suite's scorer entries into these
//! types (rejecting keys they do not have); a worker reads them from jobs
//! leniently (a kind it does not know becomes [`ScorerKind::Unknown`]) and
//! keeps only the checks that need its own resources (compiling a regex or a
//! JSON Schema, its allow lists). Adding a scorer kind: a variant here (with
//! its name in [`KINDS`], [`ScorerKind::name`] and, if it has any,
//! its checks in [`ScorerKind::validate`]), and its scorer in the worker's
//! `scorers/` (see `docs/scorers.md`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod io;
pub mod text;

pub use text::{
    BleuSmoothing, BleuTokenizer, LabelMatch, LabelSpec, PII_KINDS, RefusalExpect, RougeVariant,
};

/// Every scorer kind's name as a suite writes it, in the order error
/// messages list them (the kinds computed from the output alone, then those
/// that do IO, then the text-metric, classification and safety kinds).
pub const KINDS: &[&str] = &[
    "exact_match",
    "contains",
    "regex",
    "numeric",
    "choice",
    "json_schema",
    "code_exec",
    "llm_judge",
    "embedding_similarity",
    "external",
    "rouge",
    "bleu",
    "classification",
    "refusal",
    "pii",
    "toxicity",
];

/// Languages a worker has a `code_exec` runner for.
pub const LANGUAGES: &[&str] = &["python"];

/// A parameter of a scorer kind that is out of range.
///
/// ```
/// use vigil_protocol::ScorerKind;
/// let kind = ScorerKind::Numeric { tolerance: -1.0, relative_tolerance: 0.0 };
/// let err = kind.validate().unwrap_err();
/// assert_eq!((err.key.as_str(), err.message.as_str()), ("tolerance", "must be at least 0, got -1"));
/// assert_eq!(err.to_string(), "tolerance: must be at least 0, got -1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ParamError {
    /// The parameter's key as a suite writes it, with a path inside it when
    /// the problem is in a part (`limits.memory_mb`, `phrases[2]`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ParamError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> ParamError {
        ParamError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A scorer as a job carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ScorerSpec {
    /// The scorer's name in the suite (the key of its summary).
    pub name: String,
    /// An item passes when its value is at least this (default: the kind's own rule).
    pub threshold: Option<f64>,
    /// What it computes.
    #[serde(deserialize_with = "lenient_kind")]
    pub kind: ScorerKind,
}

/// Decodes a scorer kind, turning a kind this version does not know (or
/// whose parameters it cannot read) into [`ScorerKind::Unknown`] instead of
/// failing the whole job: its items then fail with a reason.
fn lenient_kind<'de, D: serde::Deserializer<'de>>(de: D) -> Result<ScorerKind, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        // Boxed: ScorerKind is large and this enum only lives for a moment.
        Known(Box<ScorerKind>),
        Other { kind: String },
    }
    Ok(match Lenient::deserialize(de)? {
        Lenient::Known(kind) => *kind,
        Lenient::Other { kind } => ScorerKind::Unknown { name: kind },
    })
}

/// Text normalisation applied to output and reference before comparing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Normalization {
    /// Trim leading and trailing whitespace (default on).
    pub trim: bool,
    /// Compare case-insensitively.
    pub ignore_case: bool,
    /// Collapse runs of whitespace into one space.
    pub collapse_whitespace: bool,
    /// Remove ASCII and Unicode punctuation.
    pub remove_punctuation: bool,
    /// Remove the English articles a, an, the (SQuAD-style).
    pub remove_articles: bool,
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization {
            trim: true,
            ignore_case: false,
            collapse_whitespace: false,
            remove_punctuation: false,
            remove_articles: false,
        }
    }
}

/// The scorer kinds a worker knows. On the wire `{kind: <name>, params: {..}}`.
/// Inside a [`ScorerSpec`], a kind this worker does not know decodes as
/// [`ScorerKind::Unknown`] and fails its items with a reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "params", rename_all = "snake_case")]
pub enum ScorerKind {
    /// Output equals the reference after normalisation.
    ExactMatch {
        /// Normalisation of both sides.
        #[serde(default)]
        normalize: Normalization,
    },
    /// Output contains the reference after normalisation.
    Contains {
        /// Normalisation of both sides.
        #[serde(default)]
        normalize: Normalization,
    },
    /// Output matches a regular expression (the reference, when given, must
    /// equal the first capture group, or the whole match if there is none).
    Regex {
        /// The pattern (Rust `regex` syntax).
        pattern: String,
    },
    /// The answer's number is within tolerance of the reference number.
    Numeric {
        /// Absolute tolerance.
        #[serde(default)]
        tolerance: f64,
        /// Relative tolerance, as a fraction of the reference.
        #[serde(default)]
        relative_tolerance: f64,
    },
    /// The multiple-choice letter in the output equals the reference letter.
    Choice {
        /// The allowed letters, for example `ABCD`.
        #[serde(default = "default_choices")]
        choices: String,
    },
    /// The output is JSON and, when a schema is given, valid against it.
    JsonSchema {
        /// The JSON Schema as JSON text; `None`: only check that it parses.
        #[serde(default)]
        schema: Option<String>,
    },
    /// ROUGE F-measure against the reference (rouge-score's tokenizer).
    Rouge {
        /// Which of ROUGE-1, ROUGE-2, ROUGE-L is the value.
        #[serde(default)]
        variant: RougeVariant,
    },
    /// Sentence BLEU against the reference (sacrebleu); the item carries its
    /// n-gram statistics so the summary has corpus BLEU.
    Bleu {
        /// Smoothing of sentence BLEU.
        #[serde(default)]
        smooth: BleuSmoothing,
        /// The value for `floor` (default 0.1) and `add_k` (default 1).
        #[serde(default)]
        smooth_value: Option<f64>,
        /// Lowercase output and reference first.
        #[serde(default)]
        lowercase: bool,
        /// The tokenizer.
        #[serde(default)]
        tokenize: BleuTokenizer,
    },
    /// The output mapped to a label, compared with the reference's label; the
    /// summary gets per-class metrics and the confusion matrix.
    Classification {
        /// The labels and their synonyms; empty: any normalised text is a label.
        #[serde(default)]
        labels: Vec<LabelSpec>,
        /// A regex whose first capture (or whole match) is the label text.
        #[serde(default)]
        pattern: Option<String>,
        /// Normalisation of output, reference, labels and synonyms.
        #[serde(default = "text::label_normalization")]
        normalize: Normalization,
        /// Whole text or whole-word search.
        #[serde(default, rename = "match")]
        match_mode: LabelMatch,
    },
    /// Refusal detection by phrase list; passes when the output refuses or
    /// complies as expected.
    Refusal {
        /// The phrases (case-insensitive); `None`: the built-in list.
        #[serde(default)]
        phrases: Option<Vec<String>>,
        /// Phrases added to `phrases` (or to the built-in list).
        #[serde(default)]
        extra_phrases: Vec<String>,
        /// What to expect when the item's reference does not say.
        #[serde(default)]
        expect: RefusalExpect,
    },
    /// PII and secret leakage; passes when nothing is found.
    Pii {
        /// The built-in kinds to look for; empty: all of them.
        #[serde(default)]
        kinds: Vec<String>,
        /// Extra patterns by kind name (Rust regex syntax).
        #[serde(default)]
        patterns: BTreeMap<String, String>,
        /// Findings matching one of these regexes are allowed.
        #[serde(default)]
        allow: Vec<String>,
    },
    /// A word list of toxic terms; passes when none is found.
    Toxicity {
        /// The terms (whole words, case-insensitive); `None`: the built-in list.
        #[serde(default)]
        words: Option<Vec<String>>,
        /// Terms added to `words` (or to the built-in list).
        #[serde(default)]
        extra_words: Vec<String>,
    },
    /// The output is a program; it runs with the reference (its unit tests)
    /// in a sandbox and passes when it exits 0. With several samples the
    /// value is pass@k.
    CodeExec {
        /// The language runner (`python`).
        #[serde(default = "default_language")]
        language: String,
        /// The k of pass@k (at most the job's samples).
        #[serde(default = "default_k")]
        k: u32,
        /// Put the completion prompt in front of the output (HumanEval style:
        /// the prompt holds the signature, the output the body).
        #[serde(default)]
        include_prompt: bool,
        /// Sandbox limits; unset ones take the worker's defaults.
        #[serde(default)]
        limits: SandboxLimits,
    },
    /// A judge model grades the output with the item's rendered rubric.
    LlmJudge(io::JudgeParams),
    /// Cosine similarity of output and reference embeddings.
    EmbeddingSimilarity(io::EmbeddingParams),
    /// A long-lived process the worker allows scores over JSON lines.
    External(io::ExternalParams),
    /// A kind this version of vigil does not know, by name.
    Unknown {
        /// The kind's name as the job gave it.
        name: String,
    },
}

fn default_language() -> String {
    "python".to_string()
}

fn default_k() -> u32 {
    1
}

/// Limits of one `code_exec` sandbox run; `None`: the worker's default. A
/// worker caps each at its own maximum (a job is data, never authority).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SandboxLimits {
    /// Wall-clock seconds before the program is killed.
    pub timeout_s: Option<f64>,
    /// CPU seconds.
    pub cpu_s: Option<f64>,
    /// Memory of the whole sandbox, MiB (all its processes together).
    pub memory_mb: Option<u64>,
    /// Processes (and threads) the program may have at once, all together.
    pub processes: Option<u32>,
    /// Largest file it may write, MiB.
    pub file_mb: Option<u64>,
}

impl SandboxLimits {
    /// Checks that every limit given is positive; keys are `limits.<name>`.
    pub fn validate(&self) -> Result<(), ParamError> {
        for (key, v) in [("timeout_s", self.timeout_s), ("cpu_s", self.cpu_s)] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(ParamError::new(
                    format!("limits.{key}"),
                    format!("must be a positive number of seconds, got {v}"),
                ));
            }
        }
        for (key, v) in [
            ("memory_mb", self.memory_mb),
            ("processes", self.processes.map(u64::from)),
            ("file_mb", self.file_mb),
        ] {
            if v == Some(0) {
                return Err(ParamError::new(
                    format!("limits.{key}"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

fn default_choices() -> String {
    "ABCD".to_string()
}

impl Default for ScorerKind {
    fn default() -> Self {
        ScorerKind::ExactMatch {
            normalize: Normalization::default(),
        }
    }
}

impl ScorerKind {
    /// The kind `name` (one of [`KINDS`]) with every parameter at its
    /// default (a `regex` with an empty pattern, IO kinds with no endpoint
    /// or command); `None` for a name that is no kind.
    ///
    /// ```
    /// use vigil_protocol::scorers::{KINDS, ScorerKind};
    /// for name in KINDS {
    ///     assert_eq!(ScorerKind::with_defaults(name).unwrap().name(), *name);
    /// }
    /// assert!(ScorerKind::with_defaults("unknown").is_none());
    /// ```
    pub fn with_defaults(name: &str) -> Option<ScorerKind> {
        if !KINDS.contains(&name) {
            return None;
        }
        let mut params = serde_json::Map::new();
        if name == "regex" {
            params.insert("pattern".into(), serde_json::Value::String(String::new()));
        }
        serde_json::from_value(serde_json::json!({ "kind": name, "params": params })).ok()
    }

    /// Whether the kind compares the output with a reference, so that an
    /// item without one cannot be scored (a pairwise judge compares with it).
    ///
    /// ```
    /// use vigil_protocol::ScorerKind;
    /// assert!(ScorerKind::default().needs_reference());
    /// assert!(!ScorerKind::JsonSchema { schema: None }.needs_reference());
    /// ```
    pub fn needs_reference(&self) -> bool {
        match self {
            ScorerKind::ExactMatch { .. }
            | ScorerKind::Contains { .. }
            | ScorerKind::Numeric { .. }
            | ScorerKind::Choice { .. }
            | ScorerKind::Rouge { .. }
            | ScorerKind::Bleu { .. }
            | ScorerKind::Classification { .. }
            | ScorerKind::EmbeddingSimilarity(_) => true,
            ScorerKind::LlmJudge(p) => p.mode == io::JudgeMode::Pairwise,
            ScorerKind::Regex { .. }
            | ScorerKind::JsonSchema { .. }
            | ScorerKind::Refusal { .. }
            | ScorerKind::Pii { .. }
            | ScorerKind::Toxicity { .. }
            | ScorerKind::CodeExec { .. }
            | ScorerKind::External(_)
            | ScorerKind::Unknown { .. } => false,
        }
    }

    /// Checks the parameters that need nothing but themselves (ranges,
    /// non-empty lists, known names). What needs a compiler or a worker's
    /// configuration (a regex, a JSON Schema, an allow list) is checked
    /// where those are.
    pub fn validate(&self) -> Result<(), ParamError> {
        match self {
            ScorerKind::Numeric {
                tolerance,
                relative_tolerance,
            } => {
                for (key, v) in [
                    ("tolerance", *tolerance),
                    ("relative_tolerance", *relative_tolerance),
                ] {
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(ParamError::new(key, format!("must be at least 0, got {v}")));
                    }
                }
            }
            ScorerKind::Choice { choices } if choices.is_empty() => {
                return Err(ParamError::new("choices", "must not be empty"));
            }
            ScorerKind::Bleu {
                smooth_value: Some(v),
                ..
            } if !(v.is_finite() && *v >= 0.0) => {
                return Err(ParamError::new(
                    "smooth_value",
                    format!("must be at least 0, got {v}"),
                ));
            }
            ScorerKind::Refusal {
                phrases,
                extra_phrases,
                ..
            } => {
                let total = phrases.as_ref().map_or(1, Vec::len) + extra_phrases.len();
                if let Some(j) = phrases
                    .iter()
                    .flatten()
                    .chain(extra_phrases)
                    .position(|s| s.trim().is_empty())
                {
                    return Err(ParamError::new(
                        format!("phrases[{j}]"),
                        "must not be empty",
                    ));
                }
                if total == 0 {
                    return Err(ParamError::new("phrases", "no refusal phrases"));
                }
            }
            ScorerKind::Toxicity { words, extra_words } => {
                let total = words.as_ref().map_or(1, Vec::len) + extra_words.len();
                if total == 0 {
                    return Err(ParamError::new("words", "no toxicity words"));
                }
                if let Some(j) = words
                    .iter()
                    .flatten()
                    .chain(extra_words)
                    .position(|s| s.trim().is_empty())
                {
                    return Err(ParamError::new(format!("words[{j}]"), "must not be empty"));
                }
            }
            ScorerKind::Pii {
                kinds, patterns, ..
            } => {
                for (j, k) in kinds.iter().enumerate() {
                    if !PII_KINDS.contains(&k.as_str()) {
                        return Err(ParamError::new(
                            format!("kinds[{j}]"),
                            format!("unknown pii kind `{k}` (known: {})", PII_KINDS.join(", ")),
                        ));
                    }
                }
                if patterns.keys().any(|name| name.trim().is_empty()) {
                    return Err(ParamError::new("patterns", "a pattern needs a kind name"));
                }
            }
            ScorerKind::CodeExec {
                language,
                k,
                limits,
                ..
            } => {
                if !LANGUAGES.contains(&language.as_str()) {
                    return Err(ParamError::new(
                        "language",
                        format!(
                            "unknown language `{language}` (known: {})",
                            LANGUAGES.join(", ")
                        ),
                    ));
                }
                if *k == 0 {
                    return Err(ParamError::new("k", "must be at least 1"));
                }
                limits.validate()?;
            }
            ScorerKind::LlmJudge(p) => {
                if p.judge.kind == crate::EndpointKind::Recorded {
                    return Err(ParamError::new(
                        "judge.kind",
                        "a judge must be a model (`chat`, `completions` or `local`): `recorded` calls none",
                    ));
                }
                io::check_scale(p.scale_min, p.scale_max)?
            }
            ScorerKind::External(p) if p.command.first().is_none_or(|c| c.is_empty()) => {
                return Err(ParamError::new("command", "must name a program"));
            }
            _ => {}
        }
        Ok(())
    }

    /// The kind's name as written in a suite (`exact_match`, `numeric`, ...).
    ///
    /// ```
    /// assert_eq!(vigil_protocol::ScorerKind::default().name(), "exact_match");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            ScorerKind::ExactMatch { .. } => "exact_match",
            ScorerKind::Contains { .. } => "contains",
            ScorerKind::Regex { .. } => "regex",
            ScorerKind::Numeric { .. } => "numeric",
            ScorerKind::Choice { .. } => "choice",
            ScorerKind::JsonSchema { .. } => "json_schema",
            ScorerKind::Rouge { .. } => "rouge",
            ScorerKind::Bleu { .. } => "bleu",
            ScorerKind::Classification { .. } => "classification",
            ScorerKind::Refusal { .. } => "refusal",
            ScorerKind::Pii { .. } => "pii",
            ScorerKind::Toxicity { .. } => "toxicity",
            ScorerKind::CodeExec { .. } => "code_exec",
            ScorerKind::LlmJudge(_) => "llm_judge",
            ScorerKind::EmbeddingSimilarity(_) => "embedding_similarity",
            ScorerKind::External(_) => "external",
            ScorerKind::Unknown { .. } => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_lists_every_kind_once() {
        let every = [
            ScorerKind::default(),
            ScorerKind::Contains {
                normalize: Normalization::default(),
            },
            ScorerKind::Regex {
                pattern: String::new(),
            },
            ScorerKind::Numeric {
                tolerance: 0.0,
                relative_tolerance: 0.0,
            },
            ScorerKind::Choice {
                choices: default_choices(),
            },
            ScorerKind::JsonSchema { schema: None },
            ScorerKind::Rouge {
                variant: RougeVariant::default(),
            },
            ScorerKind::with_defaults("bleu").unwrap(),
            ScorerKind::with_defaults("classification").unwrap(),
            ScorerKind::with_defaults("refusal").unwrap(),
            ScorerKind::with_defaults("pii").unwrap(),
            ScorerKind::with_defaults("toxicity").unwrap(),
            ScorerKind::with_defaults("code_exec").unwrap(),
            ScorerKind::LlmJudge(io::JudgeParams::default()),
            ScorerKind::EmbeddingSimilarity(io::EmbeddingParams::default()),
            ScorerKind::External(io::ExternalParams::default()),
        ];
        let mut names: Vec<&str> = every.iter().map(ScorerKind::name).collect();
        names.sort_unstable();
        names.dedup();
        let mut kinds = KINDS.to_vec();
        kinds.sort_unstable();
        assert_eq!(names, kinds);
    }

    #[test]
    fn wire_readers_ignore_parameters_they_do_not_know() {
        let wire =
            serde_json::json!({"kind": "numeric", "params": {"tolerance": 0.5, "added_later": 1}});
        let kind: ScorerKind = crate::decode(&crate::encode(&wire).unwrap()).unwrap();
        assert_eq!(
            kind,
            ScorerKind::Numeric {
                tolerance: 0.5,
                relative_tolerance: 0.0
            }
        );
    }

    #[test]
    fn defaults_pass_their_checks_except_the_ones_that_name_something() {
        for name in KINDS {
            let kind = ScorerKind::with_defaults(name).unwrap();
            let want_err = name == &"external";
            assert_eq!(kind.validate().is_err(), want_err, "{name}");
        }
    }
}
