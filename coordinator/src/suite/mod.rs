//! The suite file (DESIGN §10): dataset × prompt × targets × scorers × gates.
//!
//! A suite is read in two steps. First the file is deserialised into private
//! "raw" structs that mirror the file (unknown keys are errors, so typos are
//! caught), tracking the path of every value so that an error names its place
//! (`targets[0].kind: unknown variant ...`). Then the raw suite is checked and
//! turned into [`Suite`]: names, URLs, prompt templates needed by each target
//! kind, scorer parameters and gate metrics.
//!
//! Layout: this file holds the suite types and [`Suite::load`]; `raw` the
//! file format (raw structs, YAML/TOML parsing, error places); `check` the
//! checker (targets, prompt, gates, suite-wide keys); `scorers` the common
//! scorer keys and the text-only kinds; `text_scorers`, `code_exec` and
//! `io_scorers` the keys of the other kinds. What a run checks before it
//! publishes (templates, scorers, the whole dataset) is
//! [`crate::validate::check_suite`].
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
//! assert_eq!(suite.shard_size, None); // chosen per run: Suite::shard_size_for
//! assert_eq!(suite.dataset.path, Path::new("suites/data/demo.jsonl"));
//! ```

use crate::gates::GateSpec;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use vigil_protocol::{EndpointKind, SamplingParams, ScorerKind, ScorerSpec, TargetSpec};

/// Items per job when the suite sets no `shard_size`, and the least a run
/// chooses ([`Suite::shard_size_for`]).
pub const DEFAULT_SHARD_SIZE: usize = 32;
/// The most items per job a run chooses when the suite sets no `shard_size`.
pub const AUTO_SHARD_SIZE_MAX: usize = 128;
/// A run chooses larger jobs only while it still has at least this many.
pub const AUTO_SHARD_MIN_JOBS: u64 = 256;
/// A run chooses larger jobs only while a worker calling the target at its
/// `max_concurrency` holds at most this many items (its default number of
/// jobs, [`vigil_protocol::job::default_max_jobs`], times the job size): as
/// many as 32-item jobs make it hold at 1,024 calls, which bounds the
/// worker's memory the same way.
pub const AUTO_SHARD_HELD_ITEMS: usize = 4096;
/// Largest allowed `shard_size`.
pub const MAX_SHARD_SIZE: usize = 10_000;
/// Default characters of each output kept in results.
pub const DEFAULT_KEEP_OUTPUT_CHARS: u32 = 2000;
/// Default `deadline_s`: every run ends within 24 hours.
pub const DEFAULT_DEADLINE_S: f64 = 86_400.0;

mod check;
mod code_exec;
mod io_scorers;
pub(crate) mod raw;
mod scorers;
mod text_scorers;

pub use crate::gates::{RUN_METRICS, SCORE_FIELDS};
pub use code_exec::{LANGUAGES, MAX_SAMPLES};
pub use io_scorers::{DEFAULT_PAIRWISE_RUBRIC, default_rubric};
pub use scorers::{SCORER_KINDS, TEXT_KINDS};

use check::Checker;

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
    /// Items per job (1..=10000) as the suite sets it; `None`: chosen per
    /// run ([`Suite::shard_size_for`]).
    pub shard_size: Option<usize>,
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
    /// The response cache (`cache: {enabled, ttl_s}`); default: off (on
    /// with `vigil run --cache`), entries reused for 24 h.
    pub cache: CacheConfig,
    /// Completions sampled per item (default 1); `code_exec` scores pass@k
    /// over them.
    pub samples: u32,
}

/// The suite's `cache:` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// On or off for every target; `None`: off (unless `vigil run --cache`).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Entries older than this many seconds are not reused (default 86400).
    #[serde(default)]
    pub ttl_s: Option<u64>,
}

/// The TTL of cached responses when the suite sets none: 24 hours.
pub const DEFAULT_CACHE_TTL_S: u64 = 24 * 3600;

/// The cache policy of a run: off unless the suite says `cache: {enabled:
/// true}` or the run asks for it (`vigil run --cache`); `--no-cache` turns
/// it off whatever else says. When on, entries older than the suite's
/// `ttl_s` (default [`DEFAULT_CACHE_TTL_S`]) are not reused.
///
/// ```
/// use vigil_coordinator::suite::cache_policy;
/// use vigil_coordinator::suite::CacheConfig;
/// assert_eq!(cache_policy(&CacheConfig::default(), false, false), None);
/// let on = cache_policy(&CacheConfig::default(), true, false).unwrap();
/// assert_eq!(on.ttl_s, Some(86_400));
/// let suite = CacheConfig { enabled: Some(true), ttl_s: Some(60) };
/// assert_eq!(cache_policy(&suite, false, false).unwrap().ttl_s, Some(60));
/// assert_eq!(cache_policy(&suite, true, true), None, "--no-cache wins");
/// ```
pub fn cache_policy(
    config: &CacheConfig,
    cache: bool,
    no_cache: bool,
) -> Option<vigil_protocol::CachePolicy> {
    let enabled = !no_cache && (cache || config.enabled == Some(true));
    enabled.then_some(vigil_protocol::CachePolicy {
        enabled: true,
        ttl_s: Some(config.ttl_s.unwrap_or(DEFAULT_CACHE_TTL_S)),
    })
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
    /// The file, resolved relative to the suite file's directory. For a
    /// named dataset: empty until the version is fetched from NATS
    /// ([`crate::dataset_store::fetch`]), then the local copy.
    pub path: PathBuf,
    /// JSONL or CSV (from `format:` or the file's extension; a named
    /// dataset's from its stored metadata).
    pub format: DatasetFormat,
    /// The item field that holds the item's id; `None`: the line number.
    pub id_field: Option<String>,
    /// Item fields copied into `Item.tags` for per-slice metrics.
    pub tags: Vec<String>,
    /// `dataset: { name, version }`: a dataset stored in NATS instead of a file.
    pub named: Option<NamedDataset>,
}

/// A dataset in the `vigil-artifacts` object store, as a suite names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedDataset {
    /// The dataset's name (`vigil dataset push --name`).
    pub name: String,
    /// A version (SHA-256 of the content, 64 hex digits) or `latest`; once
    /// fetched, the version that was read.
    pub version: String,
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
    /// The dataset field that holds a `recorded` target's outputs (default
    /// `output`); `None` for every other kind.
    pub output_field: Option<String>,
}

impl TargetConfig {
    /// The target as a job carries it (no API key).
    ///
    /// ```
    /// # use vigil_coordinator::suite::TargetConfig;
    /// let t = TargetConfig { name: "t".into(), kind: Default::default(), base_url: "http://h/v1".into(),
    ///     model: "m".into(), api_key_env: None, params: Default::default(), timeout_s: 1.5,
    ///     max_concurrency: 4, max_retries: 1, model_path: None, output_field: None };
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
    /// Items per job of a run of `target` over `items` items, the largest of
    /// which holds `item_bytes` bytes of text, on a server whose
    /// `max_payload` is as given: the suite's `shard_size` when it sets one;
    /// else [`DEFAULT_SHARD_SIZE`] (32), raised up to
    /// [`AUTO_SHARD_SIZE_MAX`] (128) for a run that still has at least
    /// [`AUTO_SHARD_MIN_JOBS`] jobs (workers share a run's work by job),
    /// whose jobs a worker calling the target at its `max_concurrency` holds
    /// no more than [`AUTO_SHARD_HELD_ITEMS`] items of, and whose result messages stay within half of `max_payload` by a
    /// pessimistic bound: each item's text, each of its outputs at
    /// `keep_output_chars` characters of four bytes (or the target's
    /// `max_tokens` at 32 bytes a token, when smaller), and 1 KiB per scorer
    /// and per item besides. Every message costs the server the same
    /// whatever its size, so larger jobs cut its work per item; smaller
    /// ones spread a small run over more workers.
    ///
    /// ```
    /// # use std::path::Path;
    /// # use vigil_coordinator::suite::{Suite, SuiteFormat};
    /// # let text = r#"
    /// # name: demo
    /// # dataset: { path: d.jsonl }
    /// # prompt: { user: "{{ q }}" }
    /// # targets:
    /// #   - { name: t, base_url: "http://h/v1", model: m, params: { max_tokens: 16 }, max_concurrency: 64 }
    /// #   - { name: wide, base_url: "http://h/v1", model: m, params: { max_tokens: 16 }, max_concurrency: 1024 }
    /// # scorers: [{ name: exact, kind: exact_match, reference: "{{ a }}" }]
    /// # "#;
    /// let suite = Suite::from_str(text, SuiteFormat::Yaml, Path::new("s.yaml")).unwrap();
    /// let t = &suite.targets[0];
    /// assert_eq!(suite.shard_size_for(t, 1_000, 200, 1 << 20), 32); // few jobs
    /// assert_eq!(suite.shard_size_for(t, 50_000, 200, 1 << 20), 128);
    /// assert_eq!(suite.shard_size_for(t, 50_000, 20_000, 1 << 20), 32); // large items
    /// // A worker at 1,024 calls holds 128 jobs: 32 items each, as ever.
    /// assert_eq!(suite.shard_size_for(&suite.targets[1], 50_000, 200, 1 << 20), 32);
    /// ```
    pub fn shard_size_for(
        &self,
        target: &TargetConfig,
        items: u64,
        item_bytes: usize,
        max_payload: usize,
    ) -> usize {
        if let Some(n) = self.shard_size {
            return n;
        }
        let chars = self.keep_output_chars as usize * 4;
        let output = match target.params.max_tokens {
            Some(tokens) => chars.min(tokens as usize * 32),
            None => chars,
        };
        let per_item =
            item_bytes + output * self.samples.max(1) as usize + 1024 * (self.scorers.len() + 1);
        let by_size = (max_payload / 2) / per_item.max(1);
        let by_count = usize::try_from(items / AUTO_SHARD_MIN_JOBS).unwrap_or(usize::MAX);
        let held_jobs = vigil_protocol::job::default_max_jobs(target.max_concurrency as usize);
        let by_held = AUTO_SHARD_HELD_ITEMS / held_jobs;
        by_size
            .min(by_count)
            .min(by_held)
            .clamp(DEFAULT_SHARD_SIZE, AUTO_SHARD_SIZE_MAX)
    }

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
        let raw: raw::RawSuite = match format {
            SuiteFormat::Yaml => raw::parse_yaml(text, path)?,
            SuiteFormat::Toml => raw::parse_toml(text, path)?,
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

/// The `targets` and `scorers` of a file that is not a suite (a monitor
/// file), checked exactly as a suite's: errors name `path` and the field.
pub(crate) fn check_scorers(
    path: &Path,
    targets: Vec<raw::RawTarget>,
    scorers: Vec<raw::RawScorer>,
) -> Result<(Vec<TargetConfig>, Vec<ScorerConfig>), SuiteError> {
    let checker = Checker { path };
    let targets = checker.targets(targets)?;
    let scorers = checker.scorers(scorers, &targets)?;
    Ok((targets, scorers))
}

/// Checks that `name` (at `field` of the file at `path`) can be a NATS
/// subject token, as a suite's names must.
pub(crate) fn check_name(
    path: &Path,
    field: &str,
    what: &str,
    name: &str,
) -> Result<(), SuiteError> {
    check::check_token(&Checker { path }, field, what, name)
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
