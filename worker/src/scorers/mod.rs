//! Scorers: each turns one model output (and, for most kinds, a reference)
//! into a [`Score`]. A job carries [`ScorerSpec`]s; [`build`] turns each into
//! a [`Scorer`] once per job, so that bad parameters (an invalid regex, a
//! broken JSON Schema, a kind this worker does not know) fail the job's items
//! with a reason instead of failing every item differently.
//!
//! ```
//! use vigil_protocol::{Normalization, ScorerKind, ScorerSpec};
//! let spec = ScorerSpec {
//!     name: "exact".into(),
//!     threshold: None,
//!     kind: ScorerKind::ExactMatch { normalize: Normalization::default() },
//! };
//! let scorer = vigil_worker::scorers::build(&spec).unwrap();
//! let score = scorer.score("  Paris\n", Some("Paris"));
//! assert!(score.passed);
//! assert_eq!(score.value, 1.0);
//! ```

pub mod bleu;
pub mod choice;
pub mod classification;
pub mod code_exec;
pub mod contains;
pub mod embedding;
pub mod exact_match;
pub mod external;
pub mod io_env;
pub mod json_schema;
pub mod llm_judge;
pub mod normalize;
pub mod numeric;
pub mod pass_at_k;
pub mod pii;
pub mod refusal;
pub mod regex;
pub mod rouge;
pub mod toxicity;

use crate::text::{short, shorten};
use futures::future::BoxFuture;
use vigil_protocol::{ErrorKind, Item, Job, Score, ScorerKind, ScorerSpec};

/// One way of scoring a model output.
pub trait Scorer: Send + Sync {
    /// The scorer's name in the suite.
    fn name(&self) -> &str;
    /// Whether it needs a reference (exact_match, contains, numeric, choice:
    /// yes; regex: optional; json_schema: no).
    fn needs_reference(&self) -> bool;
    /// Scores one output. Never panics; value in [0,1]; `passed` uses the
    /// spec's threshold when set, else the kind's own rule (value >= 1.0 for
    /// binary scorers).
    fn score(&self, output: &str, reference: Option<&str>) -> Score;
}

/// A pure scorer that compares the output with a reference. Implementing it
/// gives [`Scorer`]: the name comes from [`Common`], and an item without a
/// reference fails with "no reference" before `score_against` is called.
pub trait ReferenceScorer: Send + Sync {
    /// The scorer's name and threshold.
    fn common(&self) -> &Common;
    /// Scores one output against its reference.
    fn score_against(&self, output: &str, reference: &str) -> Score;
}

impl<T: ReferenceScorer> Scorer for T {
    fn name(&self) -> &str {
        &self.common().name
    }

    fn needs_reference(&self) -> bool {
        true
    }

    fn score(&self, output: &str, reference: Option<&str>) -> Score {
        match reference {
            Some(reference) => self.score_against(output, reference),
            None => self.common().no_reference(),
        }
    }
}

/// What a scorer that does IO sees of one item: the output, its reference,
/// every sampled output (one unless the suite samples k > 1 completions), the
/// item and the job it came in.
#[derive(Debug, Clone, Copy)]
pub struct ScoreInput<'a> {
    /// The model output being scored (the first sample).
    pub output: &'a str,
    /// The rendered reference for this scorer, when the suite gives one.
    pub reference: Option<&'a str>,
    /// All sampled outputs of the item, `output` first.
    pub samples: &'a [String],
    /// The item.
    pub item: &'a Item,
    /// The job the item came in (target, scorer specs, deadline).
    pub job: &'a Job,
}

/// Why a scorer could not compute a score for an item (its judge or
/// embedder unreachable or answering nothing usable, its external process
/// crashed, its sandbox failing). The item then fails with this kind and
/// message instead of scoring 0: an outage of the scorer is not a failure of
/// the model, and is counted against the run's error budget.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreFailure {
    /// The item error's kind ([`ErrorKind::Scorer`] unless more specific).
    pub kind: ErrorKind,
    /// The reason, naming the scorer; never contains secrets.
    pub message: String,
}

/// What an [`IoScorer`] gives for one item.
pub type ScoreOutcome = Result<Score, ScoreFailure>;

/// A scorer that does IO: runs a program, calls a judge model or an
/// embeddings endpoint, talks to an external process. It runs on the worker's
/// runtime without blocking it; it must never panic and must bound its own
/// time (a timeout gives a [`ScoreFailure`] with the reason).
pub trait IoScorer: Send + Sync {
    /// The scorer's name in the suite.
    fn name(&self) -> &str;
    /// Scores one item, or says why it could not.
    fn score<'a>(&'a self, input: ScoreInput<'a>) -> BoxFuture<'a, ScoreOutcome>;
}

/// A scorer ready to run: pure scorers are called inline, IO scorers are
/// awaited.
pub enum Built {
    /// A pure function of output and reference.
    Pure(Box<dyn Scorer>),
    /// A scorer that does IO.
    Io(Box<dyn IoScorer>),
}

impl Built {
    /// The scorer's name in the suite.
    pub fn name(&self) -> &str {
        match self {
            Built::Pure(s) => s.name(),
            Built::Io(s) => s.name(),
        }
    }

    /// Scores one item, or says why it could not (IO scorers only).
    pub async fn score(&self, input: ScoreInput<'_>) -> ScoreOutcome {
        match self {
            Built::Pure(s) => Ok(s.score(input.output, input.reference)),
            Built::Io(s) => s.score(input).await,
        }
    }
}

/// What IO scorers may use from the worker that runs them. Built once per
/// worker; cheap to clone.
#[derive(Clone, Default)]
pub struct ScorerEnv {
    /// The sandbox `code_exec` runs programs in; `None`: this worker does
    /// not run programs (no `--allow-code-exec`), and `code_exec` items fail
    /// as `not_allowed`.
    pub sandbox: Option<std::sync::Arc<crate::sandbox::Sandbox>>,
    /// The worker's backends, response cache and external processes, for
    /// the judge, embedding and external scorers.
    pub io: io_env::IoEnv,
}

/// Builds the scorers of a job: pure ones through [`build`], IO ones with
/// the worker's [`ScorerEnv`].
pub fn build_for_job(spec: &ScorerSpec, env: &ScorerEnv) -> Result<Built, ScorerError> {
    Ok(match &spec.kind {
        ScorerKind::CodeExec { .. } => Built::Io(Box::new(code_exec::build(spec, env)?)),
        ScorerKind::LlmJudge(p) => Built::Io(Box::new(llm_judge::build(spec, p, &env.io)?)),
        ScorerKind::EmbeddingSimilarity(p) => {
            Built::Io(Box::new(embedding::build(spec, p, &env.io)?))
        }
        ScorerKind::External(p) => Built::Io(Box::new(external::build(spec, p, &env.io)?)),
        _ => Built::Pure(build(spec)?),
    })
}

/// Checks a spec the way a worker would build it, without a worker's
/// configuration: what `vigil validate` runs. What only a worker's allow
/// lists decide (a judge's endpoint, an external command) is not an error here.
pub fn check(spec: &ScorerSpec) -> Result<(), ScorerError> {
    match build_for_job(spec, &ScorerEnv::default()) {
        Ok(_) | Err(ScorerError::NotAllowed { .. } | ScorerError::CodeExecNotAllowed { .. }) => {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Why a scorer could not be built from its spec.
#[derive(Debug, thiserror::Error)]
pub enum ScorerError {
    /// The regex scorer's pattern does not compile.
    #[error("scorer `{scorer}`: invalid regex: {message}")]
    Regex {
        /// The scorer's name.
        scorer: String,
        /// What the regex compiler said.
        message: String,
    },
    /// The json_schema scorer's schema is not JSON.
    #[error("scorer `{scorer}`: schema is not valid JSON: {message}")]
    SchemaNotJson {
        /// The scorer's name.
        scorer: String,
        /// What the JSON parser said.
        message: String,
    },
    /// The json_schema scorer's schema is JSON but not a usable JSON Schema.
    #[error("scorer `{scorer}`: invalid JSON Schema: {message}")]
    InvalidSchema {
        /// The scorer's name.
        scorer: String,
        /// What the schema compiler said.
        message: String,
    },
    /// A parameter is out of range (negative tolerance, empty choices, ...).
    #[error("scorer `{scorer}`: {message}")]
    InvalidParams {
        /// The scorer's name.
        scorer: String,
        /// What is wrong.
        message: String,
    },
    /// The scorer needs something this worker's configuration does not
    /// allow (a judge's endpoint, an external command).
    #[error("scorer `{scorer}`: {message}")]
    NotAllowed {
        /// The scorer's name.
        scorer: String,
        /// What is not allowed, and how to allow it.
        message: String,
    },
    /// A `code_exec` scorer on a worker that does not run programs.
    #[error(
        "scorer `{scorer}`: this worker does not run programs for code_exec (start it with --allow-code-exec)"
    )]
    CodeExecNotAllowed {
        /// The scorer's name.
        scorer: String,
    },
    /// A `code_exec` scorer on a worker whose code sandbox cannot be set up.
    #[error("scorer `{scorer}`: code sandbox unavailable on this worker: {reason}")]
    SandboxUnavailable {
        /// The scorer's name.
        scorer: String,
        /// What is missing (from the sandbox's probe).
        reason: String,
    },
    /// The job names a kind this worker does not know.
    #[error("scorer `{scorer}`: kind `{kind}` is not supported by this worker")]
    UnsupportedKind {
        /// The scorer's name.
        scorer: String,
        /// The kind's name as the job gave it.
        kind: String,
    },
}

impl ScorerError {
    /// The item error kind of items whose scorer could not be built:
    /// `not_allowed` and `sandbox_unavailable` for `code_exec` on a worker
    /// that will not or cannot run programs, else `scorer`.
    pub fn kind(&self) -> vigil_protocol::ErrorKind {
        match self {
            ScorerError::CodeExecNotAllowed { .. } => vigil_protocol::ErrorKind::NotAllowed,
            ScorerError::SandboxUnavailable { .. } => vigil_protocol::ErrorKind::SandboxUnavailable,
            _ => vigil_protocol::ErrorKind::Scorer,
        }
    }
}

/// Builds the scorer a spec describes.
///
/// ```
/// use vigil_protocol::{ScorerKind, ScorerSpec};
/// let spec = ScorerSpec {
///     name: "judge".into(),
///     threshold: None,
///     kind: ScorerKind::Unknown { name: "llm_judge".into() },
/// };
/// let err = vigil_worker::scorers::build(&spec).err().unwrap();
/// assert_eq!(err.to_string(), "scorer `judge`: kind `llm_judge` is not supported by this worker");
/// ```
pub fn build(spec: &ScorerSpec) -> Result<Box<dyn Scorer>, ScorerError> {
    validated(spec)?;
    let common = Common {
        name: spec.name.clone(),
        threshold: spec.threshold,
    };
    Ok(match &spec.kind {
        ScorerKind::ExactMatch { normalize } => {
            Box::new(exact_match::ExactMatch::new(common, normalize.clone()))
        }
        ScorerKind::Contains { normalize } => {
            Box::new(contains::Contains::new(common, normalize.clone()))
        }
        ScorerKind::Regex { pattern } => Box::new(regex::RegexScorer::new(common, pattern)?),
        ScorerKind::Numeric {
            tolerance,
            relative_tolerance,
        } => Box::new(numeric::Numeric::new(
            common,
            *tolerance,
            *relative_tolerance,
        )),
        ScorerKind::Choice { choices } => Box::new(choice::Choice::new(common, choices)?),
        ScorerKind::JsonSchema { schema } => {
            Box::new(json_schema::JsonSchema::new(common, schema.as_deref())?)
        }
        ScorerKind::Rouge { variant } => Box::new(rouge::Rouge::new(common, *variant)),
        ScorerKind::Bleu {
            smooth,
            smooth_value,
            lowercase,
            tokenize,
        } => Box::new(bleu::Bleu::new(
            common,
            *smooth,
            *smooth_value,
            *lowercase,
            *tokenize,
        )),
        ScorerKind::Classification {
            labels,
            pattern,
            normalize,
            match_mode,
        } => Box::new(classification::Classification::new(
            common,
            labels,
            pattern.as_deref(),
            normalize.clone(),
            *match_mode,
        )?),
        ScorerKind::Refusal {
            phrases,
            extra_phrases,
            expect,
        } => Box::new(refusal::Refusal::new(
            common,
            phrases.as_deref(),
            extra_phrases,
            *expect,
        )?),
        ScorerKind::Pii {
            kinds,
            patterns,
            allow,
        } => Box::new(pii::Pii::new(common, kinds, patterns, allow)?),
        ScorerKind::Toxicity { words, extra_words } => Box::new(toxicity::Toxicity::new(
            common,
            words.as_deref(),
            extra_words,
        )?),
        ScorerKind::CodeExec { .. }
        | ScorerKind::LlmJudge(_)
        | ScorerKind::EmbeddingSimilarity(_)
        | ScorerKind::External(_) => {
            return Err(ScorerError::InvalidParams {
                scorer: spec.name.clone(),
                message: format!(
                    "kind `{}` does IO: build it with build_for_job",
                    spec.kind.name()
                ),
            });
        }
        ScorerKind::Unknown { name } => {
            return Err(ScorerError::UnsupportedKind {
                scorer: spec.name.clone(),
                kind: name.clone(),
            });
        }
    })
}

/// The spec's parameters pass their kind's own checks
/// ([`ScorerKind::validate`], defined once in `vigil_protocol::scorers`): a
/// job is data, so a worker checks again what the suite parser checked.
pub(crate) fn validated(spec: &ScorerSpec) -> Result<(), ScorerError> {
    spec.kind
        .validate()
        .map_err(|e| ScorerError::InvalidParams {
            scorer: spec.name.clone(),
            message: e.to_string(),
        })
}

/// What every scorer keeps from its spec: its name and pass threshold.
#[derive(Debug, Clone)]
pub struct Common {
    /// The scorer's name in the suite.
    pub name: String,
    /// An item passes when its value is at least this; `None`: value >= 1.
    pub threshold: Option<f64>,
}

impl Common {
    /// A score named after this scorer, passed by the threshold rule. The
    /// value is clamped into [0, 1] (NaN becomes 0) so no scorer can emit an
    /// out-of-range value.
    pub fn verdict(&self, value: f64, detail: impl Into<String>) -> Score {
        let value = if value.is_nan() {
            0.0
        } else {
            value.clamp(0.0, 1.0)
        };
        let passed = value >= self.threshold.unwrap_or(1.0);
        Score {
            scorer: self.name.clone(),
            value,
            passed,
            detail: shorten(detail.into(), MAX_DETAIL),
            ..Default::default()
        }
    }

    /// The score of an item whose reference is missing (the dataset's doing,
    /// the same in every run): 0, failed, whatever the threshold (a threshold
    /// of 0 must not pass an unscoreable item).
    pub fn no_reference(&self) -> Score {
        Score {
            scorer: self.name.clone(),
            value: 0.0,
            passed: false,
            detail: "no reference".into(),
            ..Default::default()
        }
    }

    /// A score that could not be computed (a judge that cannot be reached,
    /// an answer with no score in it, a crashed external process): no score
    /// but an item error of kind `scorer` whose message names the scorer
    /// and the reason.
    ///
    /// ```
    /// use vigil_worker::scorers::Common;
    /// let c = Common { name: "judge".into(), threshold: None };
    /// let f = c.failed("judge call failed: connection refused");
    /// assert_eq!(f.kind, vigil_protocol::ErrorKind::Scorer);
    /// assert_eq!(f.message, "scorer `judge`: judge call failed: connection refused");
    /// ```
    pub fn failed(&self, reason: impl Into<String>) -> ScoreFailure {
        self.failed_with(ErrorKind::Scorer, reason)
    }

    /// [`Common::failed`] with a more specific kind (for example the
    /// sandbox's).
    pub fn failed_with(&self, kind: ErrorKind, reason: impl Into<String>) -> ScoreFailure {
        ScoreFailure {
            kind,
            message: short(
                &format!("scorer `{}`: {}", self.name, reason.into()),
                MAX_DETAIL,
            ),
        }
    }
}

/// Longest detail a scorer emits, in characters.
pub const MAX_DETAIL: usize = 199;

/// `text` quoted in backticks and cut short enough to sit inside a detail.
pub(crate) fn quote(text: &str) -> String {
    format!("`{}`", short(text, 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::Normalization;

    fn spec(kind: ScorerKind) -> ScorerSpec {
        ScorerSpec {
            name: "s".into(),
            threshold: None,
            kind,
        }
    }

    #[test]
    fn unknown_kind_is_an_error_naming_scorer_and_kind() {
        let err = build(&spec(ScorerKind::Unknown {
            name: "rouge".into(),
        }))
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "scorer `s`: kind `rouge` is not supported by this worker"
        );
    }

    #[test]
    fn needs_reference_per_kind() {
        let norm = Normalization::default();
        let cases = [
            (
                ScorerKind::ExactMatch {
                    normalize: norm.clone(),
                },
                true,
            ),
            (ScorerKind::Contains { normalize: norm }, true),
            (
                ScorerKind::Regex {
                    pattern: "x".into(),
                },
                false,
            ),
            (
                ScorerKind::Numeric {
                    tolerance: 0.0,
                    relative_tolerance: 0.0,
                },
                true,
            ),
            (
                ScorerKind::Choice {
                    choices: "ABCD".into(),
                },
                true,
            ),
            (ScorerKind::JsonSchema { schema: None }, false),
        ];
        for (kind, needs) in cases {
            let name = kind.name();
            let scorer = build(&spec(kind)).unwrap();
            assert_eq!(scorer.needs_reference(), needs, "{name}");
            assert_eq!(scorer.name(), "s");
        }
    }

    #[test]
    fn bad_parameters_are_build_errors() {
        for tolerance in [-1.0, f64::NAN] {
            let err = build(&spec(ScorerKind::Numeric {
                tolerance,
                relative_tolerance: 0.0,
            }))
            .err()
            .unwrap();
            assert!(
                err.to_string()
                    .starts_with("scorer `s`: tolerance: must be at least 0"),
                "{err}"
            );
        }
        let err = build(&spec(ScorerKind::Pii {
            kinds: vec!["passport".into()],
            patterns: Default::default(),
            allow: Vec::new(),
        }))
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("unknown pii kind `passport`"),
            "{err}"
        );
    }

    #[test]
    fn missing_reference_scores_zero_even_with_zero_threshold() {
        let mut s = spec(ScorerKind::Numeric {
            tolerance: 0.0,
            relative_tolerance: 0.0,
        });
        s.threshold = Some(0.0);
        let score = build(&s).unwrap().score("42", None);
        assert_eq!(
            (score.value, score.passed, score.detail.as_str()),
            (0.0, false, "no reference")
        );
    }

    #[test]
    fn threshold_overrides_the_binary_rule() {
        let mut s = spec(ScorerKind::ExactMatch {
            normalize: Normalization::default(),
        });
        s.threshold = Some(0.0);
        let score = build(&s).unwrap().score("no", Some("yes"));
        assert_eq!(score.value, 0.0);
        assert!(score.passed, "value 0 >= threshold 0");
    }

    #[test]
    fn details_are_short_and_one_line() {
        let long = "x\n".repeat(1000);
        let score = build(&spec(ScorerKind::ExactMatch {
            normalize: Normalization::default(),
        }))
        .unwrap()
        .score(&long, Some(&long.replace('x', "y")));
        assert!(score.detail.chars().count() < 200, "{}", score.detail);
        assert!(!score.detail.contains('\n'));
    }
}
