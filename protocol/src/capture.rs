//! [`Capture`]: one sampled production request/response pair, published on
//! `vigil.capture.<app>` (stream `VIGIL_CAPTURE`) by `vigil proxy` or by a
//! service itself (see docs/protocol.md, "Captures").
//!
//! Like every vigil message it is a MessagePack map with named fields, sent
//! with the headers of `vigil_nats::headers::capture_headers` (`Content-Type`, the schema and `Nats-Msg-Id: <capture_id>`). Everything in it is
//! already redacted by the writer: the proxy replaces PII and secrets before a
//! capture leaves the process and never records the `Authorization` header.
//!
//! ```
//! use vigil_protocol::{codec, Capture, TokenUsage};
//! let c = Capture {
//!     capture_id: "0193-…".into(),
//!     app: "support".into(),
//!     endpoint: "chat".into(),
//!     prompt: "What is 2 + 2?".into(),
//!     response_text: Some("4".into()),
//!     usage: Some(TokenUsage { input: 5, output: 1 }),
//!     status: 200,
//!     ..Default::default()
//! };
//! let back: Capture = codec::decode(&codec::encode(&c).unwrap()).unwrap();
//! assert_eq!(back, c);
//! ```

use crate::{ChatMessage, TokenUsage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One captured request/response pair. Only `capture_id` and `app` are
/// required; every other field defaults when absent, so a service may publish
/// the subset it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Capture {
    /// Unique id of this capture (the proxy writes a UUIDv7); also the
    /// `Nats-Msg-Id`, so a re-published capture is stored once.
    pub capture_id: String,
    /// The request's own id: the `X-Request-Id` header when the client sent
    /// one, else a hash of the request. Sampling is decided on it.
    pub request_id: String,
    /// The application the traffic belongs to (`--app`; the subject's last token).
    pub app: String,
    /// The model that answered (the response's `model`, else the request's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `chat`, `completions` or `embeddings`.
    pub endpoint: String,
    /// The HTTP path the client called.
    pub path: String,
    /// The chat messages of the request (chat), redacted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<ChatMessage>,
    /// The prompt as one text: the last user message (chat), the prompt
    /// (completions) or the input (embeddings), redacted.
    pub prompt: String,
    /// The request body as JSON text, redacted (every string value passed
    /// through the redactor).
    pub request: String,
    /// Whether the client asked for a streamed response.
    pub stream: bool,
    /// The response text: the message content, the completion text, or for a
    /// stream the text assembled from its deltas; redacted. `None` for
    /// embeddings and for responses without text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_text: Option<String>,
    /// Token usage as the upstream reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
    /// HTTP status returned to the client (502 when the upstream was unreachable).
    pub status: u16,
    /// Milliseconds from the request's arrival to the response's last byte.
    pub latency_ms: f64,
    /// Milliseconds from the request's arrival to the response headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<f64>,
    /// When the request arrived, RFC 3339 UTC.
    pub time: String,
    /// The W3C trace id (32 hex digits) of the request: the incoming
    /// `traceparent`'s, or a new one the proxy forwarded upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Request headers worth keeping (`user-agent`, `x-*` and the like),
    /// redacted; never `Authorization`, `Proxy-Authorization`, cookies or API-key headers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Free-form labels for filtering: the proxy takes them from request
    /// headers `X-Vigil-Meta-<key>`; a service publishing itself sets its own.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// How many spans the redactor replaced.
    pub redactions: u32,
    /// Why the exchange did not complete (upstream unreachable, client went
    /// away mid-stream, body over the capture limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether `request_id` is in the sample at `rate` (0..=1): SHA-256 of the id
/// read as a fraction of 2^64, below `rate`. The proxy's and the monitors'
/// sampling, so the same id is in or out wherever it is decided.
///
/// ```
/// use vigil_protocol::capture::sampled;
/// assert!(sampled("anything", 1.0));
/// assert!(!sampled("anything", 0.0));
/// let kept = (0..10_000).filter(|i| sampled(&format!("r{i}"), 0.1)).count();
/// assert!((800..1200).contains(&kept), "{kept}");
/// ```
pub fn sampled(request_id: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    let digest = Sha256::digest(request_id.as_bytes());
    let mut top = [0u8; 8];
    top.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(top) as f64) < rate * (u64::MAX as f64)
}
