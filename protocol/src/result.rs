//! Results: one [`JobResult`] per finished job on `vigil.results.<run_id>.<job_index>`.

use crate::codec::{CodecError, Reader, Writer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The results of one job, published before the job is acked.
///
/// ```
/// use vigil_protocol::*;
/// let r = JobResult { run_id: "r".into(), job_index: 2, ..Default::default() };
/// let back: JobResult = decode(&encode(&r).unwrap()).unwrap();
/// assert_eq!(back.job_index, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct JobResult {
    /// The run.
    pub run_id: String,
    /// The job's index in the run.
    pub job_index: u64,
    /// Who evaluated it (host and process).
    pub worker_id: String,
    /// The JetStream delivery count of the job when it was evaluated.
    pub delivery: u64,
    /// One result per item of the job.
    pub items: Vec<ItemResult>,
    /// Set when the worker could not read the job well enough to name its
    /// items (undecodable payload): the coordinator fails every item of the
    /// job that `items` does not name with this error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

impl JobResult {
    /// The serde field names, in order (what the fast decoder reads).
    pub(crate) const FIELDS: &[&str] = &[
        "run_id",
        "job_index",
        "worker_id",
        "delivery",
        "items",
        "error",
    ];

    /// Decodes a result message: the same as [`crate::decode`], faster for
    /// what [`crate::encode`] writes (see [`crate::codec`]; the coordinator
    /// decodes one per job).
    ///
    /// ```
    /// use vigil_protocol::*;
    /// let r = JobResult { run_id: "r".into(), job_index: 2, ..Default::default() };
    /// assert_eq!(JobResult::decode(&encode(&r).unwrap()).unwrap(), r);
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        crate::codec::decode_fast(bytes, Self::read)
    }

    /// Encodes the result: the bytes of [`crate::encode`] (tested), written
    /// directly (see [`crate::codec`]; a worker encodes one per job).
    ///
    /// ```
    /// use vigil_protocol::*;
    /// let r = JobResult { run_id: "r".into(), items: vec![ItemResult::default()], ..Default::default() };
    /// assert_eq!(r.encode().unwrap(), encode(&r).unwrap());
    /// ```
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut w = Writer::with_capacity(64 + 384 * self.items.len());
        w.map_len(5 + usize::from(self.error.is_some()));
        w.str("run_id");
        w.str(&self.run_id);
        w.str("job_index");
        w.u64(self.job_index);
        w.str("worker_id");
        w.str(&self.worker_id);
        w.str("delivery");
        w.u64(self.delivery);
        w.str("items");
        w.array(&self.items, ItemResult::write)?;
        if let Some(error) = &self.error {
            w.str("error");
            error.write(&mut w);
        }
        Ok(w.into_bytes())
    }

    /// The fast path of [`Self::decode`].
    pub(crate) fn read(r: &mut Reader<'_>) -> Option<Self> {
        let mut out = JobResult::default();
        r.fields(Self::FIELDS, |r, i| {
            match i {
                0 => out.run_id = r.string()?,
                1 => out.job_index = r.u64()?,
                2 => out.worker_id = r.string()?,
                3 => out.delivery = r.u64()?,
                4 => out.items = r.array(ItemResult::read)?,
                _ => out.error = ItemError::read_opt(r)?,
            }
            Some(())
        })?;
        Some(out)
    }
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ItemResult {
    /// The item's index in the run.
    pub index: u64,
    /// The item's id.
    pub id: String,
    /// Set when the item failed; then `scores` is empty.
    pub error: Option<ItemError>,
    /// The model's output, cut to the job's `keep_output_chars`.
    pub output: Option<String>,
    /// One score per scorer of the job, in the job's order.
    pub scores: Vec<Score>,
    /// Time of the successful backend call, milliseconds.
    pub latency_ms: f64,
    /// Token counts the backend reported.
    pub usage: TokenUsage,
    /// HTTP attempts made (1 without retries).
    pub attempts: u32,
    /// The backend's finish reason (`stop`, `length`, ...).
    pub finish_reason: Option<String>,
    /// The model name the backend reported.
    pub response_model: Option<String>,
    /// Whether the output came from the response cache.
    pub cached: bool,
    /// The item's tags, copied from the job for slicing.
    pub tags: BTreeMap<String, String>,
    /// Trace id of the item's model-call span, hex.
    pub trace_id: Option<String>,
    /// Span id of the item's model-call span, hex.
    pub span_id: Option<String>,
}

impl ItemResult {
    /// The serde field names, in order (what the fast decoder reads).
    pub(crate) const FIELDS: &[&str] = &[
        "index",
        "id",
        "error",
        "output",
        "scores",
        "latency_ms",
        "usage",
        "attempts",
        "finish_reason",
        "response_model",
        "cached",
        "tags",
        "trace_id",
        "span_id",
    ];

    fn write(w: &mut Writer, item: &ItemResult) -> Result<(), CodecError> {
        w.map_len(14);
        w.str("index");
        w.u64(item.index);
        w.str("id");
        w.str(&item.id);
        w.str("error");
        match &item.error {
            Some(error) => error.write(w),
            None => w.nil(),
        }
        w.str("output");
        w.opt_str(item.output.as_deref());
        w.str("scores");
        w.array(&item.scores, Score::write)?;
        w.str("latency_ms");
        w.f64(item.latency_ms);
        w.str("usage");
        w.map_len(2);
        w.str("input");
        w.u64(item.usage.input);
        w.str("output");
        w.u64(item.usage.output);
        w.str("attempts");
        w.u64(item.attempts.into());
        w.str("finish_reason");
        w.opt_str(item.finish_reason.as_deref());
        w.str("response_model");
        w.opt_str(item.response_model.as_deref());
        w.str("cached");
        w.bool(item.cached);
        w.str("tags");
        w.string_map(&item.tags);
        w.str("trace_id");
        w.opt_str(item.trace_id.as_deref());
        w.str("span_id");
        w.opt_str(item.span_id.as_deref());
        Ok(())
    }

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let mut out = ItemResult::default();
        r.fields(Self::FIELDS, |r, i| {
            match i {
                0 => out.index = r.u64()?,
                1 => out.id = r.string()?,
                2 => out.error = ItemError::read_opt(r)?,
                3 => out.output = r.opt_string()?,
                4 => out.scores = r.array(Score::read)?,
                5 => out.latency_ms = r.f64()?,
                6 => out.usage = TokenUsage::read(r)?,
                7 => out.attempts = r.u32()?,
                8 => out.finish_reason = r.opt_string()?,
                9 => out.response_model = r.opt_string()?,
                10 => out.cached = r.bool()?,
                11 => out.tags = r.string_map()?,
                12 => out.trace_id = r.opt_string()?,
                _ => out.span_id = r.opt_string()?,
            }
            Some(())
        })?;
        Some(out)
    }

    /// Whether the item was scored (as opposed to failed).
    pub fn is_scored(&self) -> bool {
        self.error.is_none()
    }
}

/// Why an item failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ItemError {
    /// The error's kind (the key of `errors` in the summary).
    pub kind: ErrorKind,
    /// A short human-readable reason; never contains secrets.
    pub message: String,
}

impl ItemError {
    /// The serde field names, in order (what the fast decoder reads).
    pub(crate) const FIELDS: &[&str] = &["kind", "message"];

    fn write(&self, w: &mut Writer) {
        w.map_len(2);
        w.str("kind");
        w.str(self.kind.as_str());
        w.str("message");
        w.str(&self.message);
    }

    /// `None` for nil, else an error (the fast path of [`JobResult::decode`]).
    fn read_opt(r: &mut Reader<'_>) -> Option<Option<Self>> {
        if r.nil() {
            return Some(None);
        }
        let mut out = ItemError::default();
        r.fields(Self::FIELDS, |r, i| {
            match i {
                0 => out.kind = ErrorKind::from(r.string()?),
                _ => out.message = r.string()?,
            }
            Some(())
        })?;
        Some(Some(out))
    }
}

/// The kinds of item failure. On the wire a snake_case string; a kind this
/// version does not know decodes as [`ErrorKind::Other`] with its name.
///
/// ```
/// use vigil_protocol::ErrorKind;
/// assert_eq!(ErrorKind::from("rate_limited".to_string()), ErrorKind::RateLimited);
/// assert_eq!(ErrorKind::from("new_kind".to_string()).as_str(), "new_kind");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(from = "String", into = "String")]
pub enum ErrorKind {
    /// The backend did not answer within the timeout, on every attempt.
    Timeout,
    /// The backend could not be reached (refused, reset, DNS).
    Connection,
    /// HTTP 429 on every attempt.
    RateLimited,
    /// HTTP 5xx on every attempt.
    ServerError,
    /// HTTP 4xx other than 429 (not retried).
    ClientError,
    /// The body was not the expected JSON.
    InvalidResponse,
    /// The response had no choices or no text.
    EmptyResponse,
    /// The job named a backend this worker's configuration does not allow.
    BackendNotAllowed,
    /// A scorer could not compute a score (bad parameters, unknown kind,
    /// judge or embedder unreachable, external process crashed, sandbox
    /// error): the message names the scorer and the reason.
    Scorer,
    /// The job failed on every delivery up to MaxDeliver.
    MaxDeliveries,
    /// The run's deadline passed before the item was evaluated.
    Deadline,
    /// The job asks for something this worker does not allow at all (running
    /// programs for `code_exec` without `--allow-code-exec`); nothing was run.
    NotAllowed,
    /// Code execution is allowed but its sandbox cannot be set up on this
    /// host; the reason names what is missing. Nothing was run.
    SandboxUnavailable,
    /// The job's `Vigil-Schema` is newer than the worker reads (see
    /// [`crate::headers::check_schema`]).
    UnsupportedSchema,
    /// The job message could not be decoded (not MessagePack, missing fields, bad header).
    Malformed,
    /// The job names an endpoint kind the worker does not know.
    UnknownKind,
    /// The job message is larger than the worker accepts.
    Oversized,
    /// The job left the queue without a result (terminated, deleted, or given
    /// up while its advisory was missed); found by the coordinator's reconciliation.
    JobLost,
    /// Anything else, with its name.
    #[default]
    Unknown,
    /// A kind named by a newer version.
    Other(String),
}

impl ErrorKind {
    /// The snake_case name.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::ServerError => "server_error",
            ErrorKind::ClientError => "client_error",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::EmptyResponse => "empty_response",
            ErrorKind::BackendNotAllowed => "backend_not_allowed",
            ErrorKind::Scorer => "scorer",
            ErrorKind::MaxDeliveries => "max_deliveries",
            ErrorKind::Deadline => "deadline",
            ErrorKind::NotAllowed => "not_allowed",
            ErrorKind::SandboxUnavailable => "sandbox_unavailable",
            ErrorKind::UnsupportedSchema => "unsupported_schema",
            ErrorKind::Malformed => "malformed",
            ErrorKind::UnknownKind => "unknown_kind",
            ErrorKind::Oversized => "oversized",
            ErrorKind::JobLost => "job_lost",
            ErrorKind::Unknown => "unknown",
            ErrorKind::Other(name) => name,
        }
    }
}

impl ErrorKind {
    /// Whether the failure is the model's side of the item (its backend
    /// timed out, refused, answered nothing usable, or the item never got
    /// an answer before the deadline or the last delivery), as opposed to
    /// the evaluation's side (a scorer that could not score, a sandbox or
    /// backend this worker does not allow, a job it could not read).
    /// Paired comparisons count a model-side failure as a fail of the
    /// item in that run and leave the others out of the pairs. Matched by
    /// name, so a kind this version only knows as [`ErrorKind::Other`]
    /// is classified too; an unknown name counts as model-side.
    ///
    /// ```
    /// use vigil_protocol::ErrorKind;
    /// assert!(ErrorKind::Timeout.is_model_side());
    /// assert!(!ErrorKind::Scorer.is_model_side());
    /// assert!(!ErrorKind::from("sandbox_unavailable".to_string()).is_model_side());
    /// ```
    pub fn is_model_side(&self) -> bool {
        !NOT_MODEL_SIDE.contains(&self.as_str())
    }
}

/// Error kinds that say nothing about the model (see [`ErrorKind::is_model_side`]).
pub const NOT_MODEL_SIDE: &[&str] = &[
    "scorer",
    "not_allowed",
    "sandbox_unavailable",
    "backend_not_allowed",
    "unsupported_schema",
    "malformed",
    "unknown_kind",
    "cancelled",
    "oversized",
    "job_lost",
];

impl From<String> for ErrorKind {
    fn from(name: String) -> Self {
        match name.as_str() {
            "timeout" => ErrorKind::Timeout,
            "connection" => ErrorKind::Connection,
            "rate_limited" => ErrorKind::RateLimited,
            "server_error" => ErrorKind::ServerError,
            "client_error" => ErrorKind::ClientError,
            "invalid_response" => ErrorKind::InvalidResponse,
            "empty_response" => ErrorKind::EmptyResponse,
            "backend_not_allowed" => ErrorKind::BackendNotAllowed,
            "scorer" => ErrorKind::Scorer,
            "max_deliveries" => ErrorKind::MaxDeliveries,
            "deadline" => ErrorKind::Deadline,
            "not_allowed" => ErrorKind::NotAllowed,
            "sandbox_unavailable" => ErrorKind::SandboxUnavailable,
            "unsupported_schema" => ErrorKind::UnsupportedSchema,
            "malformed" => ErrorKind::Malformed,
            "unknown_kind" => ErrorKind::UnknownKind,
            "oversized" => ErrorKind::Oversized,
            "job_lost" => ErrorKind::JobLost,
            "unknown" => ErrorKind::Unknown,
            _ => ErrorKind::Other(name),
        }
    }
}

impl From<ErrorKind> for String {
    fn from(kind: ErrorKind) -> Self {
        kind.as_str().to_string()
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scorer's verdict on one output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Score {
    /// The scorer's name.
    pub scorer: String,
    /// The value, in [0, 1].
    pub value: f64,
    /// Whether the item passes this scorer.
    pub passed: bool,
    /// A short explanation (what was extracted, what differed).
    pub detail: String,
    /// The predicted label (classification scorers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The gold label: the reference mapped to a label (classification scorers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gold_label: Option<String>,
    /// BLEU's n-gram statistics of this item, summed into corpus BLEU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bleu: Option<crate::BleuStats>,
}

impl Score {
    fn write(w: &mut Writer, score: &Score) -> Result<(), CodecError> {
        let optional = [
            score.label.is_some(),
            score.gold_label.is_some(),
            score.bleu.is_some(),
        ];
        w.map_len(4 + optional.iter().filter(|set| **set).count());
        w.str("scorer");
        w.str(&score.scorer);
        w.str("value");
        w.f64(score.value);
        w.str("passed");
        w.bool(score.passed);
        w.str("detail");
        w.str(&score.detail);
        if let Some(label) = &score.label {
            w.str("label");
            w.str(label);
        }
        if let Some(gold) = &score.gold_label {
            w.str("gold_label");
            w.str(gold);
        }
        if let Some(bleu) = &score.bleu {
            w.str("bleu");
            w.serde(bleu)?;
        }
        Ok(())
    }

    /// The serde field names, in order (what the fast decoder reads).
    pub(crate) const FIELDS: &[&str] = &[
        "scorer",
        "value",
        "passed",
        "detail",
        "label",
        "gold_label",
        "bleu",
    ];

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let mut out = Score::default();
        r.fields(Self::FIELDS, |r, i| {
            match i {
                0 => out.scorer = r.string()?,
                1 => out.value = r.f64()?,
                2 => out.passed = r.bool()?,
                3 => out.detail = r.string()?,
                4 => out.label = r.opt_string()?,
                5 => out.gold_label = r.opt_string()?,
                _ => out.bleu = r.serde()?,
            }
            Some(())
        })?;
        Some(out)
    }
}

/// Token counts of one call, as the backend reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
}

impl TokenUsage {
    /// The serde field names, in order (what the fast decoder reads).
    pub(crate) const FIELDS: &[&str] = &["input", "output"];

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let mut out = TokenUsage::default();
        r.fields(Self::FIELDS, |r, i| {
            match i {
                0 => out.input = r.u64()?,
                _ => out.output = r.u64()?,
            }
            Some(())
        })?;
        Some(out)
    }
}
