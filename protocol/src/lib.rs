//! vigil's wire contract.
//!
//! Everything that crosses NATS is defined here: the message types ([`Job`],
//! [`JobResult`], [`RunSummary`], [`ProgressEvent`]), their MessagePack codec
//! ([`codec`]), the subject, stream and consumer names ([`subjects`]) and the
//! header names ([`headers`]). Payloads are MessagePack maps with named fields,
//! so a client in any language decodes them as plain maps; readers ignore
//! unknown fields and every field added after schema version 1 is optional.
//!
//! The crate does no IO. With the `nats` feature it also carries
//! [`topology`](crate::topology): the JetStream stream and consumer configs and
//! the server-version check that coordinator and workers share.
//!
//! ```
//! use vigil_protocol::{codec, ProgressEvent, RunPhase};
//! let event = ProgressEvent { run_id: "r".into(), phase: RunPhase::Running, done: 3, total: 10, ..Default::default() };
//! let bytes = codec::encode(&event).unwrap();
//! let back: ProgressEvent = codec::decode(&bytes).unwrap();
//! assert_eq!(back.done, 3);
//! ```

pub mod advisory;
pub mod codec;
pub mod headers;
pub mod job;
pub mod progress;
pub mod qa;
pub mod result;
pub mod subjects;
pub mod summary;
#[cfg(feature = "nats")]
pub mod topology;
#[cfg(feature = "nats")]
pub mod trace_context;

pub use codec::{CodecError, decode, encode};
pub use job::{
    ChatMessage, EndpointKind, Item, Job, Normalization, Prompt, SamplingParams, ScorerKind,
    ScorerSpec, TargetSpec,
};
pub use progress::{ProgressEvent, RunPhase};
pub use qa::{Alert, CachePolicy, Comparison, Manifest, ManifestDiff, MetricComparison};
pub use result::{ErrorKind, ItemError, ItemResult, JobResult, Score, TokenUsage};
pub use summary::{GateOutcome, LatencySummary, RunSummary, ScoreSummary, TokenTotals};

/// The schema version written in the `Vigil-Schema` header and in
/// [`RunSummary::schema`]. It changes only when a reader of the previous
/// version would misread a message; added optional fields do not change it.
pub const SCHEMA_VERSION: u32 = 1;

/// The `Content-Type` header value of every vigil message.
pub const CONTENT_TYPE: &str = "application/msgpack";
