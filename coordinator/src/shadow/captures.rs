//! Captured production traffic of one app read back from `VIGIL_CAPTURE`,
//! in capture order, a batch at a time, as the records of a shadow wave.

use super::ShadowError;
use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures::StreamExt;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_protocol::{Capture, subjects};

/// How long a read waits for the next capture before it takes the stream as
/// read to its end (the captures stored when the shadow started).
const QUIET: Duration = Duration::from_secs(1);

/// The captures of an app since a time, one batch at a time.
pub struct CaptureSource {
    messages: jetstream::consumer::pull::Ordered,
    done: bool,
    /// Captures not replayed, by reason (`status_4xx_5xx`, `no_response`,
    /// `embeddings`, `malformed`, `no_prompt`).
    pub skipped: BTreeMap<String, u64>,
}

impl CaptureSource {
    /// Opens the captures of `app` stored since `since` ago.
    pub async fn open(
        js: &jetstream::Context,
        app: &str,
        since: Duration,
    ) -> Result<Self, ShadowError> {
        let nats = |e: &dyn std::fmt::Display| ShadowError::Nats(e.to_string());
        let since_epoch = std::time::SystemTime::now()
            .checked_sub(since)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        let start = async_nats::datetime::from_nanos(since_epoch.as_nanos() as i128)
            .map_err(|e| nats(&e))?;
        let stream = js
            .get_stream(subjects::STREAM_CAPTURE)
            .await
            .map_err(|e| nats(&e))?;
        let messages = stream
            .create_consumer(OrderedConfig {
                filter_subject: subjects::capture(app),
                deliver_policy: DeliverPolicy::ByStartTime { start_time: start },
                ..Default::default()
            })
            .await
            .map_err(|e| nats(&e))?
            .messages()
            .await
            .map_err(|e| nats(&e))?;
        Ok(CaptureSource {
            messages,
            done: false,
            skipped: BTreeMap::new(),
        })
    }

    /// Up to `n` replayable captures, in capture order; fewer (or none)
    /// when the stored captures run out. Captures that cannot be replayed
    /// and compared (a failed or empty production response, embeddings, an
    /// unreadable message) are counted in [`CaptureSource::skipped`].
    pub async fn next_batch(&mut self, n: usize) -> Result<Vec<Capture>, ShadowError> {
        let mut batch = Vec::with_capacity(n);
        while batch.len() < n && !self.done {
            let next = tokio::time::timeout(QUIET, self.messages.next()).await;
            let Ok(Some(message)) = next else {
                self.done = true;
                break;
            };
            let message = message.map_err(|e| ShadowError::Nats(e.to_string()))?;
            if message.info().map(|i| i.pending == 0).unwrap_or(false) {
                self.done = true;
            }
            match vigil_protocol::decode::<Capture>(&message.payload) {
                Ok(capture) => match unreplayable(&capture) {
                    Some(reason) => *self.skipped.entry(reason.into()).or_default() += 1,
                    None => batch.push(capture),
                },
                Err(e) => {
                    tracing::warn!(subject = %message.subject, error = %e, "malformed capture skipped");
                    *self.skipped.entry("malformed".into()).or_default() += 1;
                }
            }
        }
        Ok(batch)
    }
}

/// Why a capture cannot be replayed and compared, if it cannot.
fn unreplayable(capture: &Capture) -> Option<&'static str> {
    if capture.endpoint == "embeddings" {
        Some("embeddings")
    } else if capture.status >= 400 || capture.error.is_some() {
        Some("status_4xx_5xx")
    } else if capture.response_text.is_none() {
        Some("no_response")
    } else if capture.prompt.is_empty() {
        Some("no_prompt")
    } else {
        None
    }
}

/// The dataset record of a capture: the item a promoted capture becomes
/// ([`crate::promote::item`]: `id` (the capture id), `prompt`, `messages`,
/// `response` (production's answer), `capture_id`, `capture_time`, `app`,
/// `model`, `endpoint`, `metadata`), plus `system`: the first system
/// message's text, or empty.
///
/// ```
/// use vigil_protocol::{Capture, ChatMessage};
/// let c = Capture {
///     capture_id: "c1".into(), app: "support".into(), prompt: "Hi?".into(),
///     messages: vec![ChatMessage { role: "system".into(), content: "Be brief.".into() },
///                    ChatMessage { role: "user".into(), content: "Hi?".into() }],
///     response_text: Some("Hello.".into()), status: 200, ..Default::default()
/// };
/// let r = vigil_coordinator::shadow::capture_record(&c);
/// assert_eq!(r["id"], "c1");
/// assert_eq!(r["system"], "Be brief.");
/// assert_eq!(r["response"], "Hello.");
/// ```
pub fn capture_record(capture: &Capture) -> Map<String, Value> {
    let system = capture
        .messages
        .iter()
        .find(|m| m.role == "system")
        .map(|m| m.content.as_str())
        .unwrap_or_default();
    let mut record = crate::promote::item(capture, None);
    record.insert("system".into(), Value::from(system));
    record
}
