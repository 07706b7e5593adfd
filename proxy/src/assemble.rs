//! Turns a raw exchange (request bytes, response bytes, timings) into a
//! redacted [`Capture`]. Runs on the publisher task, never on the response path.

use crate::redact::Redactor;
use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use vigil_protocol::{Capture, ChatMessage, TokenUsage};

/// The OpenAI-compatible endpoints the proxy captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST …/chat/completions`.
    Chat,
    /// `POST …/completions`.
    Completions,
    /// `POST …/embeddings`.
    Embeddings,
}

impl Endpoint {
    /// The endpoint a `POST` to `path` is, if captured.
    pub fn of(path: &str) -> Option<Endpoint> {
        let path = path.trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Some(Endpoint::Chat)
        } else if path.ends_with("/completions") {
            Some(Endpoint::Completions)
        } else if path.ends_with("/embeddings") {
            Some(Endpoint::Embeddings)
        } else {
            None
        }
    }

    /// The name in [`Capture::endpoint`].
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// One proxied exchange, as recorded on the response path (no parsing there).
#[derive(Debug)]
pub struct Exchange {
    /// See [`Capture::request_id`].
    pub request_id: String,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The path called.
    pub path: String,
    /// The client's request headers.
    pub headers: HeaderMap,
    /// The client's request body.
    pub request: Bytes,
    /// Status sent to the client.
    pub status: u16,
    /// Whether the response was `text/event-stream`.
    pub sse: bool,
    /// The response body (up to the capture limit).
    pub response: Vec<u8>,
    /// The response was longer than the capture limit.
    pub truncated: bool,
    /// Arrival time.
    pub time: SystemTime,
    /// Arrival to last byte.
    pub latency: Duration,
    /// Arrival to response headers.
    pub ttfb: Option<Duration>,
    /// See [`Capture::trace_id`].
    pub trace_id: String,
    /// Why the exchange did not complete.
    pub error: Option<String>,
}

/// Request headers `X-Vigil-Meta-<key>: <value>` become [`Capture::metadata`]
/// entries `<key>: <value>` (lowercase key), for monitors to filter on.
pub const META_PREFIX: &str = "x-vigil-meta-";

/// Header names never captured, and substrings that mark a credential.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];
const SECRET_PARTS: &[&str] = &["key", "token", "secret", "auth", "password", "cookie"];

/// Whether a request header may go into a capture (never credentials).
///
/// ```
/// use vigil_proxy::assemble::header_kept;
/// assert!(!header_kept("Authorization"));
/// assert!(!header_kept("x-api-key"));
/// assert!(header_kept("user-agent"));
/// ```
pub fn header_kept(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !SECRET_HEADERS.contains(&name.as_str()) && !SECRET_PARTS.iter().any(|p| name.contains(p))
}

fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn usage_of(v: &Value) -> Option<TokenUsage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    let get = |k: &str| u.get(k).and_then(Value::as_u64);
    Some(TokenUsage {
        input: get("prompt_tokens").or(get("input_tokens")).unwrap_or(0),
        output: get("completion_tokens")
            .or(get("output_tokens"))
            .unwrap_or(0),
    })
}

/// The text of one choice of a response or of a stream chunk.
fn choice_text(endpoint: Endpoint, v: &Value, streamed: bool) -> Option<String> {
    let choice = v.get("choices")?.get(0)?;
    match endpoint {
        Endpoint::Chat if streamed => choice
            .get("delta")
            .and_then(|d| d.get("content"))
            .map(content_text),
        Endpoint::Chat => choice
            .get("message")
            .and_then(|m| m.get("content"))
            .map(content_text),
        Endpoint::Completions => choice
            .get("text")
            .and_then(Value::as_str)
            .map(str::to_string),
        Endpoint::Embeddings => None,
    }
}

/// What a response said: model, text, usage.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    /// The response's `model`.
    pub model: Option<String>,
    /// The text (assembled from deltas for a stream).
    pub text: Option<String>,
    /// The usage, when reported.
    pub usage: Option<TokenUsage>,
}

/// Reads a whole JSON response, or the events of an SSE stream.
///
/// ```
/// use vigil_proxy::assemble::{read_answer, Endpoint};
/// let sse = b"data: {\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
///             data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n\
///             data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
/// let a = read_answer(Endpoint::Chat, true, sse);
/// assert_eq!(a.text.as_deref(), Some("Hello"));
/// assert_eq!(a.model.as_deref(), Some("m"));
/// assert_eq!(a.usage.unwrap().output, 2);
/// ```
pub fn read_answer(endpoint: Endpoint, sse: bool, body: &[u8]) -> Answer {
    let mut answer = Answer::default();
    let take = |v: &Value, streamed: bool, answer: &mut Answer| {
        if answer.model.is_none() {
            answer.model = v.get("model").and_then(Value::as_str).map(str::to_string);
        }
        if let Some(u) = usage_of(v) {
            answer.usage = Some(u);
        }
        if let Some(t) = choice_text(endpoint, v, streamed) {
            match &mut answer.text {
                Some(text) if streamed => text.push_str(&t),
                slot => *slot = Some(t),
            }
        }
    };
    if sse {
        let text = String::from_utf8_lossy(body);
        for line in text.lines() {
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                break;
            }
            if let Ok(v) = serde_json::from_str::<Value>(data) {
                take(&v, true, &mut answer);
            }
        }
    } else if let Ok(v) = serde_json::from_slice::<Value>(body) {
        take(&v, false, &mut answer);
    }
    answer
}

/// Builds the redacted capture of `ex` for `app`.
pub fn capture(app: &str, ex: Exchange, redactor: &Redactor) -> Capture {
    let mut redactions = 0u32;
    let mut request: Option<Value> = serde_json::from_slice(&ex.request).ok();
    if let Some(v) = request.as_mut() {
        redactor.redact_json(v, &mut redactions);
    }
    let (messages, prompt, stream, req_model) = match &request {
        Some(v) => {
            let messages: Vec<ChatMessage> = v
                .get("messages")
                .and_then(Value::as_array)
                .map(|ms| {
                    ms.iter()
                        .map(|m| ChatMessage {
                            role: m.get("role").and_then(Value::as_str).unwrap_or("").into(),
                            content: m.get("content").map(content_text).unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let prompt = match ex.endpoint {
                Endpoint::Chat => messages
                    .iter()
                    .rev()
                    .find(|m| m.role == "user")
                    .or(messages.last())
                    .map(|m| m.content.clone())
                    .unwrap_or_default(),
                Endpoint::Completions => v.get("prompt").map(join_text).unwrap_or_default(),
                Endpoint::Embeddings => v.get("input").map(join_text).unwrap_or_default(),
            };
            let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
            let model = v.get("model").and_then(Value::as_str).map(str::to_string);
            (messages, prompt, stream, model)
        }
        None => (Vec::new(), String::new(), false, None),
    };
    let request_text = match &request {
        Some(v) => v.to_string(),
        None => redactor.redact(&String::from_utf8_lossy(&ex.request), &mut redactions),
    };
    let answer = read_answer(ex.endpoint, ex.sse, &ex.response);
    let response_text = answer.text.map(|t| redactor.redact(&t, &mut redactions));
    let mut headers = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, value) in &ex.headers {
        if header_kept(name.as_str())
            && let Ok(v) = value.to_str()
        {
            let v = redactor.redact(v, &mut redactions);
            if let Some(key) = name.as_str().strip_prefix(META_PREFIX) {
                metadata.insert(key.to_string(), v.clone());
            }
            headers.insert(name.as_str().to_string(), v);
        }
    }
    let error = match (ex.error, ex.truncated) {
        (Some(e), _) => Some(e),
        (None, true) => Some("response longer than the capture limit: text truncated".into()),
        (None, false) => None,
    };
    Capture {
        capture_id: uuid::Uuid::now_v7().to_string(),
        request_id: redactor.redact(&ex.request_id, &mut redactions),
        app: app.to_string(),
        model: answer.model.or(req_model),
        endpoint: ex.endpoint.name().into(),
        path: ex.path,
        messages,
        prompt,
        request: request_text,
        stream,
        response_text,
        usage: answer.usage,
        status: ex.status,
        latency_ms: ex.latency.as_secs_f64() * 1e3,
        ttfb_ms: ex.ttfb.map(|d| d.as_secs_f64() * 1e3),
        time: humantime::format_rfc3339_millis(ex.time).to_string(),
        trace_id: Some(ex.trace_id),
        headers,
        metadata,
        redactions,
        error,
    }
}

fn join_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}
