//! vigil's wire contract.
//!
//! Everything that crosses NATS is defined here: the message types ([`Job`],
//! [`JobResult`], [`RunSummary`], [`ProgressEvent`]), their MessagePack codec
//! ([`codec`]), the subject, stream and consumer names ([`subjects`]) and the
//! header names ([`headers`]). The OpenAI-compatible HTTP bodies the worker
//! sends and the stub and `vigil serve-model` answer are in [`openai`]. Scorer kinds, their parameters and their
//! pure checks are defined once, in [`scorers`]. Payloads are MessagePack maps with named fields,
//! so a client in any language decodes them as plain maps; readers ignore
//! unknown fields and every field added after schema version 1 is optional.
//!
//! The crate does no IO and depends on neither tokio nor async-nats (DESIGN
//! §2): the JetStream topology, the header maps and the trace-context carriers
//! that talk to a server live in `vigil-nats`.
//!
//! ```
//! use vigil_protocol::{codec, ProgressEvent, RunPhase};
//! let event = ProgressEvent { run_id: "r".into(), phase: RunPhase::Running, done: 3, total: 10, ..Default::default() };
//! let bytes = codec::encode(&event).unwrap();
//! let back: ProgressEvent = codec::decode(&bytes).unwrap();
//! assert_eq!(back.done, 3);
//! ```

pub mod advisory;
pub mod alert;
pub mod capture;
pub mod codec;
pub mod headers;
pub mod job;
pub mod openai;
pub mod pii;
pub mod progress;
pub mod result;
pub mod scorers;
pub mod subjects;
pub mod summary;
pub mod text_stats;

pub use alert::Alert;
pub use capture::Capture;
pub use codec::{CodecError, decode, encode, encode_compact};
pub use job::{
    CachePolicy, ChatMessage, EndpointKind, Item, ItemOutline, Job, JobOutline, Prompt, Recorded,
    SamplingParams, TargetOutline, TargetSpec,
};
pub use progress::{ProgressEvent, RunPhase};
pub use result::{ErrorKind, ItemError, ItemResult, JobResult, Score, TokenUsage};
/// The parameters of the scorers that do IO (the path they had before
/// [`scorers`]).
pub use scorers::io as io_scorers;
/// The parameters of the text, classification and safety scorers (the path
/// they had before [`scorers`]).
pub use scorers::text as scorer_params;
pub use scorers::text::{
    BleuSmoothing, BleuTokenizer, LabelMatch, LabelSpec, RefusalExpect, RougeVariant,
};
pub use scorers::{Normalization, ParamError, SandboxLimits, ScorerKind, ScorerSpec};
pub use summary::{
    Comparison, GateOutcome, LatencySummary, Manifest, ManifestDiff, MetricComparison, RunSummary,
    ScoreSummary, ShadowVerdict, TokenTotals,
};
pub use text_stats::{BleuStats, ClassMetrics, ClassificationSummary, CorpusBleu, OTHER_LABEL};

/// The schema version written in the `Vigil-Schema` header and in
/// [`RunSummary::schema`]. Every change of the wire types raises it; one that
/// only adds optional fields keeps [`SCHEMA_MIN_VERSION`], so older readers
/// still accept it (docs/protocol.md, "the rule"). 2 added, among others,
/// `JobResult.error`, `RunSummary.items_cached`, the `*_scored` figures and
/// the comparison's pairing fields; 3 the `recorded` endpoint kind and
/// `Item.recorded` (an older worker answers such a job `unknown_kind`).
pub const SCHEMA_VERSION: u32 = 3;

/// The oldest reader schema that decodes what this version writes, sent as
/// `Vigil-Schema-Min` (see [`headers::check_schema`]). A version that only
/// adds optional fields keeps it; one an older reader would misread raises it.
pub const SCHEMA_MIN_VERSION: u32 = 1;

/// The `Content-Type` header value of every vigil message.
pub const CONTENT_TYPE: &str = "application/msgpack";
