//! A job: one shard of a run's items, with everything a worker needs to
//! evaluate them and nothing more (no secrets: a worker maps the target's
//! base URL to an API key through its own configuration).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A shard of a run, published on `vigil.jobs.<pool>` with
/// `Nats-Msg-Id = <run_id>/<job_index>`.
///
/// ```
/// use vigil_protocol::*;
/// let job = Job { run_id: "r".into(), job_index: 0, ..Default::default() };
/// let back: Job = decode(&encode(&job).unwrap()).unwrap();
/// assert_eq!(back, job);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Job {
    /// The run (a UUID).
    pub run_id: String,
    /// The shard's position in the run, from 0.
    pub job_index: u64,
    /// The suite's name.
    pub suite: String,
    /// The model endpoint to call.
    pub target: TargetSpec,
    /// How to score each output.
    pub scorers: Vec<ScorerSpec>,
    /// The items of this shard, prompts already rendered.
    pub items: Vec<Item>,
    /// Unix milliseconds after which the items are failed as `deadline`.
    pub deadline_unix_ms: Option<u64>,
    /// How many characters of each output to keep in the result (0: none).
    pub keep_output_chars: u32,
    /// Whether the worker may answer from the response cache (`None`: no cache).
    pub cache: Option<crate::CachePolicy>,
    /// Completions sampled per item (0 or 1: one). With n > 1 the worker calls
    /// the target n times with distinct seeds; `code_exec` scores pass@k over
    /// them, other scorers score the first.
    pub samples: u32,
}

/// The envelope of a [`Job`]: the fields that name what a job is about
/// (`run_id`, `job_index`, `target.kind`, each item's `index` and `id`). No
/// schema version changes them, so a worker that cannot read a job as a
/// whole (newer schema, unknown endpoint kind, a field it cannot decode)
/// decodes this instead and fails the items it names with a reason.
///
/// ```
/// use vigil_protocol::*;
/// let job = Job { run_id: "r".into(), job_index: 3, items: vec![Item { index: 7, id: "q7".into(), ..Default::default() }], ..Default::default() };
/// // A newer writer's endpoint kind and an extra field.
/// let mut value = serde_json::to_value(&job).unwrap();
/// value["target"]["kind"] = "grpc".into();
/// value["added_later"] = 1.into();
/// let bytes = encode(&value).unwrap();
/// assert!(decode::<Job>(&bytes).is_err());
/// let outline = JobOutline::decode(&bytes).unwrap();
/// assert_eq!((outline.run_id.as_str(), outline.job_index, outline.items[0].index), ("r", 3, 7));
/// assert_eq!(outline.target.kind, "grpc");
/// assert!(!outline.knows_kind());
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct JobOutline {
    /// The run.
    pub run_id: String,
    /// The job's index in the run.
    pub job_index: u64,
    /// The target's endpoint kind, as written.
    pub target: TargetOutline,
    /// The items' indexes and ids.
    pub items: Vec<ItemOutline>,
}

/// The part of a [`TargetSpec`] a [`JobOutline`] reads.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct TargetOutline {
    /// The endpoint kind's name (`chat`, `completions`, `local`, or one this version does not know).
    pub kind: String,
}

/// The part of an [`Item`] a [`JobOutline`] reads.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct ItemOutline {
    /// Position in the dataset.
    pub index: u64,
    /// The item's id.
    pub id: String,
}

impl JobOutline {
    /// Decodes the envelope of a job payload; `None` if even that fails.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        crate::decode(payload).ok()
    }

    /// Whether `target.kind` is an [`EndpointKind`] this version knows
    /// (an absent kind is the default, `chat`).
    pub fn knows_kind(&self) -> bool {
        self.target.kind.is_empty()
            || serde_json::from_value::<EndpointKind>(serde_json::Value::String(
                self.target.kind.clone(),
            ))
            .is_ok()
    }
}

/// One dataset item, rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Item {
    /// Position in the dataset, from 0; unique within a run.
    pub index: u64,
    /// The item's id (the dataset's `id_field`, else its line number).
    pub id: String,
    /// What to send to the model.
    pub prompt: Prompt,
    /// Rendered reference per scorer name.
    pub references: BTreeMap<String, String>,
    /// Item tags for slicing (language, category, ...).
    pub tags: BTreeMap<String, String>,
    /// Per-item prompts of scorers that send one (an `llm_judge`'s rendered
    /// rubric), by scorer name; see [`crate::io_scorers`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub scorer_prompts: BTreeMap<String, String>,
}

/// A rendered prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// Chat messages for `/chat/completions`.
    Chat(Vec<ChatMessage>),
    /// A completion prompt for `/completions`.
    Completion(String),
}

impl Default for Prompt {
    fn default() -> Self {
        Prompt::Chat(Vec::new())
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// Which OpenAI-compatible endpoint a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// `POST {base_url}/chat/completions`.
    #[default]
    Chat,
    /// `POST {base_url}/completions`.
    Completions,
    /// A GGUF model run inside the worker (`model_path`); chat prompts go
    /// through the model's chat template, completion prompts as they are.
    Local,
}

/// A model endpoint as a job carries it: no API key, only where to call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TargetSpec {
    /// The target's name in the suite.
    pub name: String,
    /// Chat or completions.
    pub kind: EndpointKind,
    /// Base URL, for example `http://localhost:8000/v1`.
    pub base_url: String,
    /// The `model` field of the request.
    pub model: String,
    /// Sampling parameters.
    pub params: SamplingParams,
    /// Timeout of one HTTP attempt, milliseconds.
    pub timeout_ms: u64,
    /// Most requests in flight to this target from one worker.
    pub max_concurrency: u32,
    /// Retries after the first attempt for retryable failures.
    pub max_retries: u32,
    /// The GGUF file of a `local` target; a worker loads it only if its own
    /// configuration allows that file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_path: Option<String>,
}

/// Sampling parameters sent with each request; unset ones are not sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SamplingParams {
    /// Temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Seed, for backends that honour it.
    pub seed: Option<u64>,
    /// Stop sequences.
    pub stop: Vec<String>,
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
        variant: crate::RougeVariant,
    },
    /// Sentence BLEU against the reference (sacrebleu); the item carries its
    /// n-gram statistics so the summary has corpus BLEU.
    Bleu {
        /// Smoothing of sentence BLEU.
        #[serde(default)]
        smooth: crate::BleuSmoothing,
        /// The value for `floor` (default 0.1) and `add_k` (default 1).
        #[serde(default)]
        smooth_value: Option<f64>,
        /// Lowercase output and reference first.
        #[serde(default)]
        lowercase: bool,
        /// The tokenizer.
        #[serde(default)]
        tokenize: crate::BleuTokenizer,
    },
    /// The output mapped to a label, compared with the reference's label; the
    /// summary gets per-class metrics and the confusion matrix.
    Classification {
        /// The labels and their synonyms; empty: any normalised text is a label.
        #[serde(default)]
        labels: Vec<crate::LabelSpec>,
        /// A regex whose first capture (or whole match) is the label text.
        #[serde(default)]
        pattern: Option<String>,
        /// Normalisation of output, reference, labels and synonyms.
        #[serde(default = "crate::scorer_params::label_normalization")]
        normalize: Normalization,
        /// Whole text or whole-word search.
        #[serde(default, rename = "match")]
        match_mode: crate::LabelMatch,
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
        expect: crate::RefusalExpect,
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
    LlmJudge(crate::io_scorers::JudgeParams),
    /// Cosine similarity of output and reference embeddings.
    EmbeddingSimilarity(crate::io_scorers::EmbeddingParams),
    /// A long-lived process the worker allows scores over JSON lines.
    External(crate::io_scorers::ExternalParams),
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
