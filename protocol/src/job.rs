//! A job: one shard of a run's items, with everything a worker needs to
//! evaluate them and nothing more (no secrets: a worker maps the target's
//! base URL to an API key through its own configuration).

use crate::codec::{CodecError, Reader, Writer};
use crate::scorers::ScorerSpec;
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
    pub cache: Option<CachePolicy>,
    /// Completions sampled per item (0 or 1: one). With n > 1 the worker calls
    /// the target n times with distinct seeds; `code_exec` scores pass@k over
    /// them, other scorers score the first.
    pub samples: u32,
}

impl Job {
    /// The serde field names, in order (what the fast decoder reads).
    pub(crate) const FIELDS: &[&str] = &[
        "run_id",
        "job_index",
        "suite",
        "target",
        "scorers",
        "items",
        "deadline_unix_ms",
        "keep_output_chars",
        "cache",
        "samples",
    ];

    /// Decodes a job message: the same as [`crate::decode`], faster for
    /// what [`crate::encode`] writes (see [`crate::codec`]; a worker decodes
    /// one per job).
    ///
    /// ```
    /// use vigil_protocol::*;
    /// let job = Job { run_id: "r".into(), items: vec![Item { id: "q".into(), ..Default::default() }], ..Default::default() };
    /// assert_eq!(Job::decode(&encode(&job).unwrap()).unwrap(), job);
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        crate::codec::decode_fast(bytes, Self::read)
    }

    /// Encodes the job: the bytes of [`crate::encode`] (tested), the items
    /// written directly (see [`crate::codec`]; the coordinator encodes one
    /// per job).
    ///
    /// ```
    /// use vigil_protocol::*;
    /// let job = Job { run_id: "r".into(), items: vec![Item::default()], ..Default::default() };
    /// assert_eq!(job.encode().unwrap(), encode(&job).unwrap());
    /// ```
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut w = Writer::with_capacity(512 + 192 * self.items.len());
        w.map_len(10);
        w.str("run_id");
        w.str(&self.run_id);
        w.str("job_index");
        w.u64(self.job_index);
        w.str("suite");
        w.str(&self.suite);
        w.str("target");
        w.serde(&self.target)?;
        w.str("scorers");
        w.serde(&self.scorers)?;
        w.str("items");
        w.array(&self.items, Item::write)?;
        w.str("deadline_unix_ms");
        w.opt_u64(self.deadline_unix_ms);
        w.str("keep_output_chars");
        w.u64(self.keep_output_chars.into());
        w.str("cache");
        w.serde(&self.cache)?;
        w.str("samples");
        w.u64(self.samples.into());
        Ok(w.into_bytes())
    }

    /// The fast path of [`Self::decode`]: the items read field by field,
    /// the rest (read once per job) with serde.
    pub(crate) fn read(r: &mut Reader<'_>) -> Option<Self> {
        let mut out = Job::default();
        r.fields(Self::FIELDS, |r, i| {
            match i {
                0 => out.run_id = r.string()?,
                1 => out.job_index = r.u64()?,
                2 => out.suite = r.string()?,
                3 => out.target = r.serde()?,
                4 => out.scorers = r.serde()?,
                5 => out.items = r.array(Item::read)?,
                6 => out.deadline_unix_ms = r.opt_u64()?,
                7 => out.keep_output_chars = r.u32()?,
                8 => out.cache = r.serde()?,
                _ => out.samples = r.u32()?,
            }
            Some(())
        })?;
        Some(out)
    }
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
    /// The endpoint kind's name (`chat`, `completions`, `local`, `recorded`, or one this version does not know).
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
    /// rubric), by scorer name; see [`crate::scorers::io`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub scorer_prompts: BTreeMap<String, String>,
    /// The output that already exists, for a target of kind
    /// [`EndpointKind::Recorded`] (a captured production response, or a
    /// dataset column): the worker scores it instead of calling a model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<Recorded>,
}

impl Item {
    fn write(w: &mut Writer, item: &Item) -> Result<(), CodecError> {
        let prompts = !item.scorer_prompts.is_empty();
        w.map_len(5 + usize::from(prompts) + usize::from(item.recorded.is_some()));
        w.str("index");
        w.u64(item.index);
        w.str("id");
        w.str(&item.id);
        w.str("prompt");
        match &item.prompt {
            Prompt::Chat(messages) => {
                w.map_len(1);
                w.str("chat");
                w.array_len(messages.len());
                for m in messages {
                    w.map_len(2);
                    w.str("role");
                    w.str(&m.role);
                    w.str("content");
                    w.str(&m.content);
                }
            }
            Prompt::Completion(text) => {
                w.map_len(1);
                w.str("completion");
                w.str(text);
            }
        }
        w.str("references");
        w.string_map(&item.references);
        w.str("tags");
        w.string_map(&item.tags);
        if prompts {
            w.str("scorer_prompts");
            w.string_map(&item.scorer_prompts);
        }
        if let Some(recorded) = &item.recorded {
            w.str("recorded");
            w.serde(recorded)?;
        }
        Ok(())
    }

    /// The serde field names, in order (what the fast decoder reads).
    pub(crate) const FIELDS: &[&str] = &[
        "index",
        "id",
        "prompt",
        "references",
        "tags",
        "scorer_prompts",
        "recorded",
    ];

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let mut out = Item::default();
        r.fields(Self::FIELDS, |r, i| {
            match i {
                0 => out.index = r.u64()?,
                1 => out.id = r.string()?,
                2 => out.prompt = Prompt::read(r)?,
                3 => out.references = r.string_map()?,
                4 => out.tags = r.string_map()?,
                5 => out.scorer_prompts = r.string_map()?,
                _ => out.recorded = r.serde()?,
            }
            Some(())
        })?;
        Some(out)
    }
}

/// An output that already exists: what a `recorded` target "answers".
///
/// ```
/// use vigil_protocol::*;
/// let item = Item {
///     id: "capture-1".into(),
///     recorded: Some(Recorded { text: Some("4".into()), status: 200, latency_ms: 12.5, ..Default::default() }),
///     ..Default::default()
/// };
/// let back: Item = decode(&encode(&item).unwrap()).unwrap();
/// assert_eq!(back, item);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Recorded {
    /// The response text; `None` when the response had none (the item then
    /// fails as `empty_response`).
    pub text: Option<String>,
    /// The HTTP status the response had; 400 and above fail the item with
    /// the matching kind (`rate_limited`, `client_error`, `server_error`).
    pub status: u16,
    /// How long the response took, milliseconds.
    pub latency_ms: f64,
    /// Token usage as recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::TokenUsage>,
    /// The model that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl Default for Recorded {
    /// An empty `200` response.
    fn default() -> Self {
        Recorded {
            text: None,
            status: 200,
            latency_ms: 0.0,
            usage: None,
            model: None,
        }
    }
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

impl Prompt {
    /// A one-entry map from the variant's name to its value.
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        if r.map_len()? != 1 {
            return None;
        }
        match r.str()? {
            "chat" => r.array(ChatMessage::read).map(Prompt::Chat),
            "completion" => r.string().map(Prompt::Completion),
            _ => None,
        }
    }
}

impl ChatMessage {
    /// The serde field names, in order (what the fast decoder reads).
    pub(crate) const FIELDS: &[&str] = &["role", "content"];

    /// Both fields are required.
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let (mut role, mut content) = (None, None);
        r.fields(Self::FIELDS, |r, i| {
            match i {
                0 => role = Some(r.string()?),
                _ => content = Some(r.string()?),
            }
            Some(())
        })?;
        Some(ChatMessage {
            role: role?,
            content: content?,
        })
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
    /// No model is called: each item carries its output ([`Item::recorded`]:
    /// a captured production response, or a dataset column), which the
    /// worker scores like any other.
    Recorded,
}

impl EndpointKind {
    /// The snake_case name, as suites and messages write it.
    ///
    /// ```
    /// assert_eq!(vigil_protocol::EndpointKind::Recorded.as_str(), "recorded");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Chat => "chat",
            EndpointKind::Completions => "completions",
            EndpointKind::Local => "local",
            EndpointKind::Recorded => "recorded",
        }
    }
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

/// Whether and how long a worker may reuse a response, carried by a job.
///
/// ```
/// let p = vigil_protocol::CachePolicy { enabled: true, ttl_s: Some(60) };
/// assert!(p.enabled);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CachePolicy {
    /// Look responses up before calling the backend and store them after.
    pub enabled: bool,
    /// Entries older than this many seconds are ignored (`None`: no limit).
    pub ttl_s: Option<u64>,
}

/// Jobs a worker holds at once (pulled, unacked) when its `max_jobs` is not
/// set: `max(concurrency / 8, 4)`. They count in the consumer's
/// `num_ack_pending`, hence in the lag KEDA scales on; a coordinator sizes
/// its jobs so that a worker holds a bounded number of items
/// (`Suite::shard_size_for`).
///
/// ```
/// assert_eq!(vigil_protocol::job::default_max_jobs(32), 4);
/// assert_eq!(vigil_protocol::job::default_max_jobs(256), 32);
/// ```
pub fn default_max_jobs(concurrency: usize) -> usize {
    (concurrency / 8).max(4)
}
