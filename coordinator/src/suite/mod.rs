//! The suite file (DESIGN §10): dataset × prompt × targets × scorers × gates.
//!
//! A suite is read in two steps. First the file is deserialised into private
//! "raw" structs that mirror the file (unknown keys are errors, so typos are
//! caught), tracking the path of every value so that an error names its place
//! (`targets[0].kind: unknown variant ...`). Then the raw suite is checked and
//! turned into [`Suite`]: names, URLs, prompt templates needed by each target
//! kind, scorer parameters and gate metrics.
//!
//! ```
//! use std::path::Path;
//! use vigil_coordinator::suite::{Suite, SuiteFormat};
//! let text = r#"
//! name: demo
//! dataset: { path: data/demo.jsonl }
//! prompt: { user: "{{ question }}" }
//! targets: [{ name: local, base_url: "http://127.0.0.1:8000/v1", model: m }]
//! scorers: [{ name: exact, kind: exact_match, reference: "{{ answer }}" }]
//! "#;
//! let suite = Suite::from_str(text, SuiteFormat::Yaml, Path::new("suites/demo.yaml")).unwrap();
//! assert_eq!(suite.shard_size, 32);
//! assert_eq!(suite.dataset.path, Path::new("suites/data/demo.jsonl"));
//! ```

use crate::gates::GateSpec;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use vigil_protocol::{
    EndpointKind, Normalization, SamplingParams, ScorerKind, ScorerSpec, TargetSpec,
};

/// Default items per job.
pub const DEFAULT_SHARD_SIZE: usize = 32;
/// Largest allowed `shard_size`.
pub const MAX_SHARD_SIZE: usize = 10_000;
/// Default characters of each output kept in results.
pub const DEFAULT_KEEP_OUTPUT_CHARS: u32 = 2000;
/// Default `deadline_s`: every run ends within 24 hours.
pub const DEFAULT_DEADLINE_S: f64 = 86_400.0;
/// The scorer kinds a suite may name, in the order error messages list them.
pub const SCORER_KINDS: &[&str] = &[
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
];
pub use crate::gates::{RUN_METRICS, SCORE_FIELDS};
pub use text_scorers::TEXT_KINDS;

mod code_exec;
mod text_scorers;
pub use code_exec::{LANGUAGES, MAX_SAMPLES};

mod io_scorers;
pub use io_scorers::{DEFAULT_PAIRWISE_RUBRIC, default_rubric};

/// A loaded and checked suite.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// The suite's name (a subject token).
    pub name: String,
    /// The suite file.
    pub path: PathBuf,
    /// SHA-256 (hex) of the suite file's bytes.
    pub sha256: String,
    /// Where the items come from.
    pub dataset: DatasetSpec,
    /// The prompt templates.
    pub prompt: PromptSpec,
    /// The model endpoints to evaluate (one run each).
    pub targets: Vec<TargetConfig>,
    /// How each output is scored.
    pub scorers: Vec<ScorerConfig>,
    /// Conditions that decide the exit code.
    pub gates: Vec<GateSpec>,
    /// Items per job (default 32, 1..=10000).
    pub shard_size: usize,
    /// The worker pool that runs the jobs (default `default`).
    pub pool: String,
    /// Seconds after the start of a run after which unfinished items fail as
    /// `deadline` (`None`: [`DEFAULT_DEADLINE_S`]; see [`Suite::deadline_s`]).
    pub deadline_s: Option<f64>,
    /// The largest fraction of the items that may fail (any error kind)
    /// before the run fails whatever its scores (default 0.02, 0..=1).
    pub error_budget: f64,
    /// Characters of each output kept in item results (default 2000).
    pub keep_output_chars: u32,
    /// The response cache (`cache: {enabled, ttl_s}`); default: on for
    /// targets at temperature 0, entries kept forever.
    pub cache: CacheConfig,
    /// Completions sampled per item (default 1); `code_exec` scores pass@k
    /// over them.
    pub samples: u32,
}

/// The suite's `cache:` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// On or off for every target; `None`: on where the temperature is 0.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Entries older than this many seconds are not reused.
    #[serde(default)]
    pub ttl_s: Option<u64>,
}

/// The format of a suite file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuiteFormat {
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// TOML (`.toml`).
    Toml,
}

impl SuiteFormat {
    /// The format a file's extension names, if any.
    ///
    /// ```
    /// use vigil_coordinator::suite::SuiteFormat;
    /// assert_eq!(SuiteFormat::from_path("a/b.yml".as_ref()), Some(SuiteFormat::Yaml));
    /// assert_eq!(SuiteFormat::from_path("a/b.json".as_ref()), None);
    /// ```
    pub fn from_path(path: &Path) -> Option<SuiteFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(SuiteFormat::Yaml),
            "toml" => Some(SuiteFormat::Toml),
            _ => None,
        }
    }
}

/// The dataset of a suite.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSpec {
    /// The file, resolved relative to the suite file's directory.
    pub path: PathBuf,
    /// JSONL or CSV (from `format:` or the file's extension).
    pub format: DatasetFormat,
    /// The item field that holds the item's id; `None`: the line number.
    pub id_field: Option<String>,
    /// Item fields copied into `Item.tags` for per-slice metrics.
    pub tags: Vec<String>,
}

/// A dataset file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// One JSON object per line (`.jsonl`, `.ndjson`).
    Jsonl,
    /// Comma-separated values with a header row (`.csv`).
    Csv,
}

/// The prompt templates (minijinja over an item's fields).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromptSpec {
    /// System message of chat targets.
    pub system: Option<String>,
    /// User message of chat targets.
    pub user: Option<String>,
    /// Explicit chat messages (instead of `system`/`user`).
    pub messages: Option<Vec<MessageTemplate>>,
    /// The prompt of completion targets.
    pub completion: Option<String>,
}

/// One templated chat message of [`PromptSpec::messages`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The template of the message's text.
    pub content: String,
}

/// A model endpoint of a suite.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetConfig {
    /// The target's name (a subject token).
    pub name: String,
    /// Chat or completions.
    pub kind: EndpointKind,
    /// Base URL, for example `http://localhost:8000/v1`.
    pub base_url: String,
    /// The `model` field of requests.
    pub model: String,
    /// The name of the environment variable that holds the API key (never the key).
    pub api_key_env: Option<String>,
    /// Sampling parameters.
    pub params: SamplingParams,
    /// Timeout of one HTTP attempt, seconds (default 60).
    pub timeout_s: f64,
    /// Most requests in flight per worker (default 32).
    pub max_concurrency: u32,
    /// Retries of retryable failures (default 3).
    pub max_retries: u32,
    /// The GGUF file of a `local` target (resolved: see [`resolve_model_path`]).
    pub model_path: Option<PathBuf>,
}

impl TargetConfig {
    /// The target as a job carries it (no API key).
    ///
    /// ```
    /// # use vigil_coordinator::suite::TargetConfig;
    /// let t = TargetConfig { name: "t".into(), kind: Default::default(), base_url: "http://h/v1".into(),
    ///     model: "m".into(), api_key_env: None, params: Default::default(), timeout_s: 1.5,
    ///     max_concurrency: 4, max_retries: 1, model_path: None };
    /// assert_eq!(t.spec().timeout_ms, 1500);
    /// ```
    pub fn spec(&self) -> TargetSpec {
        TargetSpec {
            name: self.name.clone(),
            kind: self.kind,
            base_url: self.base_url.clone(),
            model: self.model.clone(),
            params: self.params.clone(),
            timeout_ms: (self.timeout_s * 1000.0).round() as u64,
            max_concurrency: self.max_concurrency,
            max_retries: self.max_retries,
            model_path: self
                .model_path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        }
    }

    /// The API key, read from the environment variable `api_key_env` names.
    /// `None` when no variable is named or it is unset or empty. Never log it.
    pub fn api_key(&self) -> Option<String> {
        let var = self.api_key_env.as_deref()?;
        std::env::var(var).ok().filter(|k| !k.is_empty())
    }
}

/// A scorer of a suite.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorerConfig {
    /// The scorer's name (the key of its summary; a subject-safe token).
    pub name: String,
    /// What it computes, with its parameters.
    pub kind: ScorerKind,
    /// The reference template (minijinja over the item's fields).
    pub reference: Option<String>,
    /// An item passes when its value is at least this.
    pub threshold: Option<f64>,
    /// The per-item prompt template the scorer sends (an `llm_judge`'s
    /// rubric), over the item's fields plus `output`, `reference`, `prompt`,
    /// `a` and `b`, which the worker fills in.
    pub prompt: Option<String>,
    /// The endpoint the scorer calls (a judge, an embedder), with its `api_key_env`.
    pub endpoint: Option<TargetConfig>,
}

impl Suite {
    /// Reads a suite file; `.yaml`/`.yml` are YAML, `.toml` is TOML.
    pub fn load(path: &Path) -> Result<Suite, SuiteError> {
        let format = SuiteFormat::from_path(path).ok_or_else(|| SuiteError::Format {
            path: path.to_path_buf(),
        })?;
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Suite::from_str(&text, format, path)
    }

    /// Parses and checks a suite from text. `path` is where it came from: it
    /// names the file in errors and relative paths are resolved against its
    /// directory.
    #[allow(clippy::should_implement_trait)] // takes a format and a path, unlike FromStr
    pub fn from_str(text: &str, format: SuiteFormat, path: &Path) -> Result<Suite, SuiteError> {
        let raw: RawSuite = match format {
            SuiteFormat::Yaml => parse_yaml(text, path)?,
            SuiteFormat::Toml => parse_toml(text, path)?,
        };
        let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        Checker { path }.suite(raw, sha256)
    }

    /// Seconds after its start when a run's unfinished items fail as
    /// `deadline`: `deadline_s`, else [`DEFAULT_DEADLINE_S`].
    pub fn deadline_s(&self) -> f64 {
        self.deadline_s.unwrap_or(DEFAULT_DEADLINE_S)
    }

    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The endpoints the scorers call (judges, embedders), for allow lists.
    pub fn scorer_endpoints(&self) -> impl Iterator<Item = &TargetConfig> {
        self.scorers.iter().filter_map(|s| s.endpoint.as_ref())
    }

    /// The scorers as jobs carry them.
    pub fn scorer_specs(&self) -> Vec<ScorerSpec> {
        self.scorers
            .iter()
            .map(|s| ScorerSpec {
                name: s.name.clone(),
                threshold: s.threshold,
                kind: s.kind.clone(),
            })
            .collect()
    }
}

/// Why a suite could not be loaded. Every message starts with the suite file's path.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// The file could not be read.
    #[error("{path}: cannot read suite: {source}")]
    Io {
        /// The suite file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The extension names no known format.
    #[error("{path}: unknown suite format (use .yaml, .yml or .toml)")]
    Format {
        /// The suite file.
        path: PathBuf,
    },
    /// The text is not valid YAML or TOML.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The suite file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A value is missing, of the wrong type or not allowed.
    #[error("{path}: {field}: {message}{}", at(.location))]
    Invalid {
        /// The suite file.
        path: PathBuf,
        /// Where in the suite, for example `targets[0].kind` (`.` for the top level).
        field: String,
        /// What is wrong.
        message: String,
        /// 1-based line and column, when the parser knows them.
        location: Option<(usize, usize)>,
    },
    /// A template does not compile.
    #[error("{path}: {field}: template syntax error{}: {message}", line.map(|l| format!(" on template line {l}")).unwrap_or_default())]
    Template {
        /// The suite file.
        path: PathBuf,
        /// The template's place, for example `prompt.user` or `scorers[0].reference`.
        field: String,
        /// 1-based line within the template.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
}

fn at(location: &Option<(usize, usize)>) -> String {
    match location {
        Some((line, column)) => format!(" (line {line}, column {column})"),
        None => String::new(),
    }
}

impl SuiteError {
    fn invalid(path: &Path, field: impl Into<String>, message: impl Into<String>) -> SuiteError {
        SuiteError::Invalid {
            path: path.to_path_buf(),
            field: field.into(),
            message: message.into(),
            location: None,
        }
    }
}

// ---------------------------------------------------------------- parsing

fn parse_yaml(text: &str, path: &Path) -> Result<RawSuite, SuiteError> {
    // A first, untyped pass separates syntax errors (reported at their line
    // and column) from errors in values (reported at their place).
    if let Err(err) = serde_norway::from_str::<serde_norway::Value>(text) {
        let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
        let message = err
            .to_string()
            .replacen(&format!(" at line {line} column {column}"), "", 1);
        return Err(SuiteError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message,
        });
    }
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        let location = inner.location().map(|l| (l.line(), l.column()));
        let mut message = inner.to_string();
        // serde_norway puts its own copy of the path in front and the position
        // at the end; we report both separately.
        if let Some((prefix, rest)) = message.split_once(": ")
            && field.starts_with(prefix)
        {
            message = rest.to_string();
        }
        if let Some((line, column)) = location
            && let Some(rest) = message.strip_suffix(&format!(" at line {line} column {column}"))
        {
            message = rest.to_string();
        }
        located(path, field, message, location)
    })
}

fn parse_toml(text: &str, path: &Path) -> Result<RawSuite, SuiteError> {
    let position = |span: Option<std::ops::Range<usize>>| {
        span.map(|s| {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, column)
        })
    };
    let de = toml::Deserializer::parse(text).map_err(|err| {
        let (line, column) = position(err.span()).unwrap_or((1, 1));
        SuiteError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: err.message().trim().to_string(),
        }
    })?;
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        located(
            path,
            field,
            inner.message().trim().to_string(),
            position(inner.span()),
        )
    })
}

/// An error at `field` (`.` = the document itself, as for a syntax error).
fn located(
    path: &Path,
    field: String,
    message: String,
    location: Option<(usize, usize)>,
) -> SuiteError {
    match (field.as_str(), location) {
        (".", Some((line, column))) => SuiteError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message,
        },
        _ => SuiteError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
            location,
        },
    }
}

// ------------------------------------------------------------- raw suite

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    name: String,
    dataset: RawDataset,
    prompt: RawPrompt,
    targets: Vec<RawTarget>,
    scorers: Vec<RawScorer>,
    #[serde(default)]
    gates: Vec<GateSpec>,
    #[serde(default)]
    shard_size: Option<usize>,
    #[serde(default)]
    pool: Option<String>,
    #[serde(default)]
    deadline_s: Option<f64>,
    #[serde(default)]
    error_budget: Option<f64>,
    #[serde(default)]
    keep_output_chars: Option<u32>,
    #[serde(default)]
    cache: CacheConfig,
    #[serde(default)]
    samples: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    path: PathBuf,
    #[serde(default)]
    format: Option<DatasetFormat>,
    #[serde(default)]
    id_field: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrompt {
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    messages: Option<Vec<MessageTemplate>>,
    #[serde(default)]
    completion: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    #[serde(default)]
    kind: EndpointKind,
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    model_path: Option<PathBuf>,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    params: RawParams,
    #[serde(default)]
    timeout_s: Option<f64>,
    #[serde(default)]
    max_concurrency: Option<u32>,
    #[serde(default)]
    max_retries: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawParams {
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<OneOrMany>,
}

/// `stop: "\n"` or `stop: ["\n", "Q:"]`, as the OpenAI API accepts.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A scorer as written: common keys plus the kind's own keys at the same
/// level, checked per kind once the kind is known.
#[derive(Deserialize)]
struct RawScorer {
    name: String,
    kind: String,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(flatten)]
    params: Map<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NormalizeParams {
    #[serde(default)]
    normalize: Option<RawNormalization>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNormalization {
    trim: bool,
    ignore_case: bool,
    collapse_whitespace: bool,
    remove_punctuation: bool,
    remove_articles: bool,
}

impl Default for RawNormalization {
    fn default() -> Self {
        let n = Normalization::default();
        RawNormalization {
            trim: n.trim,
            ignore_case: n.ignore_case,
            collapse_whitespace: n.collapse_whitespace,
            remove_punctuation: n.remove_punctuation,
            remove_articles: n.remove_articles,
        }
    }
}

impl From<RawNormalization> for Normalization {
    fn from(r: RawNormalization) -> Self {
        Normalization {
            trim: r.trim,
            ignore_case: r.ignore_case,
            collapse_whitespace: r.collapse_whitespace,
            remove_punctuation: r.remove_punctuation,
            remove_articles: r.remove_articles,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegexParams {
    pattern: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NumericParams {
    #[serde(default)]
    tolerance: f64,
    #[serde(default)]
    relative_tolerance: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoiceParams {
    #[serde(default)]
    choices: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSchemaParams {
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    schema_path: Option<PathBuf>,
}

// --------------------------------------------------------------- checking

/// Turns a raw suite into a [`Suite`], naming the place of the first problem.
struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> SuiteError {
        SuiteError::invalid(self.path, field, message)
    }

    /// The suite file's directory, against which relative paths resolve.
    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) => dir.join(p),
            None => p.to_path_buf(),
        }
    }

    fn suite(&self, raw: RawSuite, sha256: String) -> Result<Suite, SuiteError> {
        check_token(self, "name", "suite", &raw.name)?;
        let dataset = self.dataset(raw.dataset)?;
        if raw.targets.is_empty() {
            return Err(self.err("targets", "a suite needs at least one target"));
        }
        if raw.scorers.is_empty() {
            return Err(self.err("scorers", "a suite needs at least one scorer"));
        }
        let targets = raw
            .targets
            .into_iter()
            .enumerate()
            .map(|(i, t)| self.target(i, t))
            .collect::<Result<Vec<_>, _>>()?;
        unique(
            self,
            "targets",
            "target",
            targets.iter().map(|t| t.name.as_str()),
        )?;
        let prompt = self.prompt(raw.prompt, &targets)?;
        let scorers = raw
            .scorers
            .into_iter()
            .enumerate()
            .map(|(i, s)| self.scorer(i, s, &targets))
            .collect::<Result<Vec<_>, _>>()?;
        unique(
            self,
            "scorers",
            "scorer",
            scorers.iter().map(|s| s.name.as_str()),
        )?;
        for (i, gate) in raw.gates.iter().enumerate() {
            self.gate(i, gate, &scorers)?;
            self.qa_gate(i, gate, &dataset)?;
        }
        let shard_size = raw.shard_size.unwrap_or(DEFAULT_SHARD_SIZE);
        if !(1..=MAX_SHARD_SIZE).contains(&shard_size) {
            return Err(self.err(
                "shard_size",
                format!("must be between 1 and {MAX_SHARD_SIZE}, got {shard_size}"),
            ));
        }
        let samples = code_exec::check_samples(self.path, raw.samples, &scorers)?;
        let pool = raw
            .pool
            .unwrap_or_else(|| vigil_protocol::subjects::DEFAULT_POOL.to_string());
        check_token(self, "pool", "pool", &pool)?;
        if let Some(d) = raw.deadline_s
            && !(d.is_finite() && d > 0.0)
        {
            return Err(self.err(
                "deadline_s",
                format!("must be a positive number of seconds, got {d}"),
            ));
        }
        let error_budget = raw
            .error_budget
            .unwrap_or(crate::gates::DEFAULT_ERROR_BUDGET);
        if !(0.0..=1.0).contains(&error_budget) {
            return Err(self.err(
                "error_budget",
                format!("must be a fraction of the items between 0 and 1, got {error_budget}"),
            ));
        }
        Ok(Suite {
            name: raw.name,
            path: self.path.to_path_buf(),
            sha256,
            dataset,
            prompt,
            targets,
            scorers,
            gates: raw.gates,
            shard_size,
            pool,
            deadline_s: raw.deadline_s,
            error_budget,
            keep_output_chars: raw.keep_output_chars.unwrap_or(DEFAULT_KEEP_OUTPUT_CHARS),
            cache: raw.cache,
            samples,
        })
    }

    fn dataset(&self, raw: RawDataset) -> Result<DatasetSpec, SuiteError> {
        if raw.path.as_os_str().is_empty() {
            return Err(self.err("dataset.path", "must not be empty"));
        }
        let format = match raw.format {
            Some(f) => f,
            None => match raw
                .path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("jsonl" | "ndjson") => DatasetFormat::Jsonl,
                Some("csv") => DatasetFormat::Csv,
                _ => {
                    return Err(self.err(
                        "dataset.format",
                        format!(
                            "cannot tell the format of `{}` from its extension (.jsonl, .ndjson, .csv); set `format: jsonl` or `format: csv`",
                            raw.path.display()
                        ),
                    ));
                }
            },
        };
        if let Some(id) = &raw.id_field
            && id.is_empty()
        {
            return Err(self.err("dataset.id_field", "must not be empty"));
        }
        for (i, tag) in raw.tags.iter().enumerate() {
            if tag.is_empty() {
                return Err(self.err(format!("dataset.tags[{i}]"), "must not be empty"));
            }
        }
        Ok(DatasetSpec {
            path: self.resolve(&raw.path),
            format,
            id_field: raw.id_field,
            tags: raw.tags,
        })
    }

    fn target(&self, i: usize, raw: RawTarget) -> Result<TargetConfig, SuiteError> {
        let at = |key: &str| format!("targets[{i}].{key}");
        check_token(self, &at("name"), "target", &raw.name)?;
        let mut model = raw.model;
        let model_path = if raw.kind == EndpointKind::Local {
            let Some(path) = raw.model_path.filter(|p| !p.as_os_str().is_empty()) else {
                return Err(self.err(
                    at("model_path"),
                    "a `local` target needs `model_path`, the GGUF file to run",
                ));
            };
            if !raw.base_url.is_empty() {
                return Err(self.err(
                    at("base_url"),
                    "a `local` target runs in the worker; give `model_path`, not `base_url`",
                ));
            }
            let path = resolve_model_path(&path, self.path.parent());
            if model.trim().is_empty() {
                model = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
            }
            Some(path)
        } else {
            if raw.model_path.is_some() {
                return Err(self.err(
                    at("model_path"),
                    "only `kind: local` targets take `model_path`",
                ));
            }
            if raw.base_url.is_empty() {
                return Err(self.err(
                    at("base_url"),
                    "missing field `base_url` (or use `kind: local` with `model_path`)",
                ));
            }
            match url::Url::parse(&raw.base_url) {
                Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
                Ok(u) => {
                    return Err(self.err(
                        at("base_url"),
                        format!(
                            "`{}` is not an http(s) URL (scheme `{}`)",
                            raw.base_url,
                            u.scheme()
                        ),
                    ));
                }
                Err(e) => {
                    return Err(self.err(
                        at("base_url"),
                        format!("`{}` is not a URL: {e}", raw.base_url),
                    ));
                }
            }
            if model.trim().is_empty() {
                return Err(self.err(at("model"), "must not be empty"));
            }
            None
        };
        if let Some(var) = &raw.api_key_env {
            let ok = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                // The value is a variable's name, so showing it leaks nothing;
                // a key pasted here by mistake is not echoed back.
                return Err(self.err(at("api_key_env"), "must be the NAME of an environment variable ([A-Za-z_][A-Za-z0-9_]*), never the key itself"));
            }
        }
        let timeout_s = raw.timeout_s.unwrap_or(60.0);
        if !(timeout_s.is_finite() && timeout_s > 0.0) {
            return Err(self.err(
                at("timeout_s"),
                format!("must be a positive number of seconds, got {timeout_s}"),
            ));
        }
        let max_concurrency = raw.max_concurrency.unwrap_or(32);
        if max_concurrency == 0 {
            return Err(self.err(at("max_concurrency"), "must be at least 1"));
        }
        let p = raw.params;
        if let Some(t) = p.temperature
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(self.err(
                at("params.temperature"),
                format!("must be at least 0, got {t}"),
            ));
        }
        if let Some(t) = p.top_p
            && !(t > 0.0 && t <= 1.0)
        {
            return Err(self.err(at("params.top_p"), format!("must be in (0, 1], got {t}")));
        }
        if p.max_tokens == Some(0) {
            return Err(self.err(at("params.max_tokens"), "must be at least 1"));
        }
        let stop = match p.stop {
            None => Vec::new(),
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
        };
        Ok(TargetConfig {
            name: raw.name,
            kind: raw.kind,
            base_url: raw.base_url,
            model,
            api_key_env: raw.api_key_env,
            params: SamplingParams {
                temperature: p.temperature,
                top_p: p.top_p,
                max_tokens: p.max_tokens,
                seed: p.seed,
                stop,
            },
            timeout_s,
            max_concurrency,
            max_retries: raw.max_retries.unwrap_or(3),
            model_path,
        })
    }

    fn prompt(&self, raw: RawPrompt, targets: &[TargetConfig]) -> Result<PromptSpec, SuiteError> {
        if let Some(messages) = &raw.messages {
            if raw.system.is_some() || raw.user.is_some() {
                return Err(self.err(
                    "prompt.messages",
                    "give either `messages` or `system`/`user`, not both",
                ));
            }
            if messages.is_empty() {
                return Err(self.err("prompt.messages", "must not be empty"));
            }
            for (i, m) in messages.iter().enumerate() {
                if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                    return Err(self.err(
                        format!("prompt.messages[{i}].role"),
                        format!("unknown role `{}` (known: system, user, assistant)", m.role),
                    ));
                }
            }
        }
        for (i, t) in targets.iter().enumerate() {
            match t.kind {
                EndpointKind::Chat
                    if raw.messages.is_none() && raw.system.is_none() && raw.user.is_none() =>
                {
                    return Err(self.err(
                        "prompt.user",
                        format!("target `{}` (targets[{i}], kind chat) needs `prompt.user`, `prompt.system` or `prompt.messages`", t.name),
                    ));
                }
                EndpointKind::Local
                    if raw.completion.is_none()
                        && raw.messages.is_none()
                        && raw.system.is_none()
                        && raw.user.is_none() =>
                {
                    return Err(self.err(
                        "prompt.user",
                        format!("target `{}` (targets[{i}], kind local) needs a chat prompt (`prompt.user`, `prompt.system`, `prompt.messages`) or `prompt.completion`", t.name),
                    ));
                }
                EndpointKind::Completions if raw.completion.is_none() => {
                    return Err(self.err(
                        "prompt.completion",
                        format!("target `{}` (targets[{i}], kind completions) needs `prompt.completion`", t.name),
                    ));
                }
                _ => {}
            }
        }
        Ok(PromptSpec {
            system: raw.system,
            user: raw.user,
            messages: raw.messages,
            completion: raw.completion,
        })
    }

    fn scorer(
        &self,
        i: usize,
        raw: RawScorer,
        targets: &[TargetConfig],
    ) -> Result<ScorerConfig, SuiteError> {
        let at = |key: &str| format!("scorers[{i}].{key}");
        check_token(self, &at("name"), "scorer", &raw.name)?;
        if RUN_METRICS
            .iter()
            .any(|m| m.split('.').next() == Some(raw.name.as_str()))
        {
            return Err(self.err(
                at("name"),
                format!(
                    "`{}` is the name of a run-level metric; choose another",
                    raw.name
                ),
            ));
        }
        let params = Value::Object(raw.params);
        let (mut prompt, mut endpoint, mut threshold) = (None, None, raw.threshold);
        let kind = match raw.kind.as_str() {
            kind if io_scorers::KINDS.contains(&kind) => {
                let parsed = self.io_scorer(
                    i,
                    kind,
                    raw.reference.as_deref(),
                    raw.threshold,
                    params,
                    targets,
                )?;
                (prompt, endpoint, threshold) = (parsed.prompt, parsed.endpoint, parsed.threshold);
                parsed.kind
            }
            "exact_match" | "contains" => {
                let p: NormalizeParams = self.params(i, params)?;
                let normalize = p.normalize.unwrap_or_default().into();
                if raw.kind == "exact_match" {
                    ScorerKind::ExactMatch { normalize }
                } else {
                    ScorerKind::Contains { normalize }
                }
            }
            "regex" => {
                let p: RegexParams = self.params(i, params)?;
                if let Err(e) = regex::Regex::new(&p.pattern) {
                    return Err(self.err(at("pattern"), format!("invalid regular expression: {e}")));
                }
                ScorerKind::Regex { pattern: p.pattern }
            }
            "numeric" => {
                let p: NumericParams = self.params(i, params)?;
                for (key, v) in [
                    ("tolerance", p.tolerance),
                    ("relative_tolerance", p.relative_tolerance),
                ] {
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(self.err(at(key), format!("must be at least 0, got {v}")));
                    }
                }
                ScorerKind::Numeric {
                    tolerance: p.tolerance,
                    relative_tolerance: p.relative_tolerance,
                }
            }
            "choice" => {
                let p: ChoiceParams = self.params(i, params)?;
                let choices = p.choices.unwrap_or_else(|| "ABCD".to_string());
                if choices.is_empty() {
                    return Err(self.err(at("choices"), "must not be empty"));
                }
                ScorerKind::Choice { choices }
            }
            "json_schema" => {
                let p: JsonSchemaParams = self.params(i, params)?;
                let schema = match (p.schema, p.schema_path) {
                    (Some(_), Some(_)) => {
                        return Err(self.err(
                            at("schema_path"),
                            "give either `schema` or `schema_path`, not both",
                        ));
                    }
                    (Some(v), None) => Some(self.schema_text(&at("schema"), v)?),
                    (None, Some(file)) => Some(self.schema_file(&at("schema_path"), &file)?),
                    (None, None) => None,
                };
                ScorerKind::JsonSchema { schema }
            }
            "code_exec" => code_exec::kind(self.path, i, params)?,
            other => match self.text_kind(i, other, params) {
                Some(kind) => kind?,
                None => {
                    return Err(self.err(
                        at("kind"),
                        format!(
                            "unknown scorer kind `{other}` (known: {}, {})",
                            SCORER_KINDS.join(", "),
                            TEXT_KINDS.join(", ")
                        ),
                    ));
                }
            },
        };
        // These kinds compare against a reference; without one every item
        // would fail at the worker, so say so now.
        if matches!(
            kind,
            ScorerKind::ExactMatch { .. }
                | ScorerKind::Contains { .. }
                | ScorerKind::Numeric { .. }
                | ScorerKind::Choice { .. }
                | ScorerKind::Rouge { .. }
                | ScorerKind::Bleu { .. }
                | ScorerKind::Classification { .. }
        ) && raw.reference.is_none()
        {
            return Err(self.err(
                at("reference"),
                format!("scorer kind `{}` needs a reference template", kind.name()),
            ));
        }
        if let Some(t) = raw.threshold
            && !t.is_finite()
        {
            return Err(self.err(at("threshold"), "must be a finite number"));
        }
        Ok(ScorerConfig {
            name: raw.name,
            kind,
            reference: raw.reference,
            threshold,
            prompt,
            endpoint,
        })
    }

    /// Deserialises a kind's own keys, naming the place of a bad one.
    fn params<T: serde::de::DeserializeOwned>(
        &self,
        i: usize,
        params: Value,
    ) -> Result<T, SuiteError> {
        serde_path_to_error::deserialize(params).map_err(|err| {
            let sub = err.path().to_string();
            let field = if sub == "." {
                format!("scorers[{i}]")
            } else {
                format!("scorers[{i}].{sub}")
            };
            self.err(field, err.into_inner().to_string())
        })
    }

    fn schema_text(&self, field: &str, schema: Value) -> Result<String, SuiteError> {
        if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
            return Err(self.err(field, "a JSON Schema must be an object (or a boolean)"));
        }
        Ok(schema.to_string())
    }

    fn schema_file(&self, field: &str, file: &Path) -> Result<String, SuiteError> {
        let full = self.resolve(file);
        let text = std::fs::read_to_string(&full)
            .map_err(|e| self.err(field, format!("cannot read `{}`: {e}", full.display())))?;
        let is_yaml = matches!(SuiteFormat::from_path(&full), Some(SuiteFormat::Yaml));
        let value: Value = if is_yaml {
            serde_norway::from_str(&text).map_err(|e| {
                self.err(
                    field,
                    format!("`{}` is not valid YAML: {e}", full.display()),
                )
            })?
        } else {
            serde_json::from_str(&text).map_err(|e| {
                self.err(
                    field,
                    format!("`{}` is not valid JSON: {e}", full.display()),
                )
            })?
        };
        self.schema_text(field, value)
    }

    fn gate(&self, i: usize, gate: &GateSpec, scorers: &[ScorerConfig]) -> Result<(), SuiteError> {
        let at = |key: &str| format!("gates[{i}].{key}");
        let m = gate.metric.as_str();
        if !RUN_METRICS.contains(&m) {
            let Some((scorer, field)) = m.split_once('.') else {
                return Err(self.err(
                    at("metric"),
                    format!(
                        "unknown metric `{m}`: use `<scorer>.<field>` or one of {}",
                        RUN_METRICS.join(", ")
                    ),
                ));
            };
            let Some(scorer_cfg) = scorers.iter().find(|s| s.name == scorer) else {
                let known: Vec<&str> = scorers.iter().map(|s| s.name.as_str()).collect();
                return Err(self.err(
                    at("metric"),
                    format!(
                        "`{m}` names no scorer `{scorer}` (scorers: {})",
                        known.join(", ")
                    ),
                ));
            };
            if !SCORE_FIELDS.contains(&field)
                && !crate::text_metrics::is_extra_field(&scorer_cfg.kind, field)
            {
                return Err(self.err(
                    at("metric"),
                    format!(
                        "`{m}`: unknown field `{field}` (known: {}{})",
                        SCORE_FIELDS.join(", "),
                        text_scorers::extra_fields_hint(&scorer_cfg.kind)
                    ),
                ));
            }
        }
        if gate.min.is_none() && gate.max.is_none() && gate.max_regression.is_none() {
            return Err(self.err(
                format!("gates[{i}]"),
                "a gate needs `min`, `max` or `max_regression`",
            ));
        }
        for (key, v) in [("min", gate.min), ("max", gate.max)] {
            if let Some(v) = v
                && !v.is_finite()
            {
                return Err(self.err(at(key), "must be a finite number"));
            }
        }
        if let (Some(lo), Some(hi)) = (gate.min, gate.max)
            && lo > hi
        {
            return Err(self.err(at("min"), format!("min {lo} is above max {hi}")));
        }
        Ok(())
    }
}

impl Checker<'_> {
    /// The continuous-QA keys of a gate: `slice_gap` names a dataset tag and
    /// a scorer metric; `max_regression` is a non-negative scorer metric bound.
    fn qa_gate(&self, i: usize, gate: &GateSpec, dataset: &DatasetSpec) -> Result<(), SuiteError> {
        let scorer_metric = !RUN_METRICS.contains(&gate.metric.as_str());
        if let Some(tag) = &gate.slice_gap {
            if !dataset.tags.contains(tag) {
                return Err(self.err(
                    format!("gates[{i}].slice_gap"),
                    format!(
                        "`{tag}` is not a dataset tag (dataset.tags: [{}])",
                        dataset.tags.join(", ")
                    ),
                ));
            }
            if !scorer_metric {
                return Err(self.err(
                    format!("gates[{i}].metric"),
                    "a slice gap needs a scorer metric",
                ));
            }
            if gate.max_regression.is_some() {
                return Err(self.err(
                    format!("gates[{i}]"),
                    "use `slice_gap` or `max_regression`, not both",
                ));
            }
        }
        if let Some(x) = gate.max_regression {
            if !(x.is_finite() && x >= 0.0) {
                return Err(self.err(format!("gates[{i}].max_regression"), "must be a number ≥ 0"));
            }
            let field = gate.metric.rsplit_once('.').map(|(_, f)| f);
            if !scorer_metric || !matches!(field, Some("pass_rate" | "mean")) {
                return Err(self.err(
                    format!("gates[{i}].metric"),
                    "a regression gate needs `<scorer>.pass_rate` or `<scorer>.mean`",
                ));
            }
        }
        Ok(())
    }
}

/// Names become NATS subject tokens: only `[A-Za-z0-9_-]`, non-empty.
fn check_token(c: &Checker<'_>, field: &str, what: &str, name: &str) -> Result<(), SuiteError> {
    if name.is_empty() {
        return Err(c.err(field, format!("{what} name must not be empty")));
    }
    if let Some(bad) = name
        .chars()
        .find(|ch| !(ch.is_ascii_alphanumeric() || *ch == '_' || *ch == '-'))
    {
        return Err(c.err(
            field,
            format!(
                "{what} name `{name}` contains {}; use only letters, digits, `_` and `-`",
                Shown(bad)
            ),
        ));
    }
    Ok(())
}

/// A character as an error message shows it (whitespace made visible).
struct Shown(char);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_whitespace() {
            write!(f, "whitespace ({:?})", self.0)
        } else {
            write!(f, "`{}`", self.0)
        }
    }
}

fn unique<'a>(
    c: &Checker<'_>,
    list: &str,
    what: &str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), SuiteError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.enumerate() {
        if let Some(first) = seen.insert(name, i) {
            return Err(c.err(
                format!("{list}[{i}].name"),
                format!("duplicate {what} name `{name}` (also {list}[{first}])"),
            ));
        }
    }
    Ok(())
}

/// Where a `local` target's `model_path` points: an absolute path as it is;
/// a bare file name in the models directory (`$VIGIL_HOME/models`, where
/// `scripts/setup.sh` puts models; `VIGIL_HOME` defaults to `~/.vigil`);
/// any other relative path from the suite file's directory.
///
/// ```
/// # use std::path::Path;
/// use vigil_coordinator::suite::resolve_model_path;
/// assert_eq!(resolve_model_path(Path::new("/m/a.gguf"), None), Path::new("/m/a.gguf"));
/// assert_eq!(resolve_model_path(Path::new("m/a.gguf"), Some(Path::new("/s"))), Path::new("/s/m/a.gguf"));
/// assert!(resolve_model_path(Path::new("a.gguf"), Some(Path::new("/s"))).ends_with("models/a.gguf"));
/// ```
pub fn resolve_model_path(path: &Path, suite_dir: Option<&Path>) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    if path.components().count() == 1 {
        let home = std::env::var_os("VIGIL_HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".vigil")))
            .unwrap_or_else(|| PathBuf::from(".vigil"));
        return home.join("models").join(path);
    }
    match suite_dir {
        Some(dir) => dir.join(path),
        None => path.to_path_buf(),
    }
}
