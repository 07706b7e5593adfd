//! The HTTP handlers: completions (with faults and streaming), embeddings,
//! models, health.

use crate::answers::{answer, embed, tokens, truncate};
use crate::faults::{Attempts, Fault, HANG_FOR, draw};
use crate::request::{parse_chat, parse_completion};
use crate::stats::InFlight;
use crate::{StubConfig, StubStats};
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use vigil_protocol::openai::{
    Choice, CompletionResponse, ErrorResponse, Message, OneOrMany, Usage,
};

/// State shared by all connections.
#[derive(Debug)]
pub(crate) struct Shared {
    cfg: StubConfig,
    stats: Arc<StubStats>,
    /// The `created` of the `/v1/models` entry now.
    pub(crate) model_created: AtomicU64,
    attempts: Attempts,
    /// [`StubConfig::slots`] as permits.
    slots: Option<tokio::sync::Semaphore>,
}

/// The state of a server with `cfg` counting into `stats`.
pub(crate) fn shared(cfg: StubConfig, stats: Arc<StubStats>) -> Arc<Shared> {
    Arc::new(Shared {
        model_created: AtomicU64::new(cfg.model_created),
        slots: cfg.slots.map(|n| tokio::sync::Semaphore::new(n.max(1))),
        cfg,
        stats,
        attempts: Attempts::new(),
    })
}

/// A handle on the request's own TCP connection: cancelling it drops the
/// connection without a response.
#[derive(Clone)]
pub(crate) struct ConnReset(pub(crate) CancellationToken);

#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Text,
}

fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(ErrorResponse::new(kind, message))).into_response()
}

/// A 429 with `Retry-After: <cfg.retry_after_s>`.
fn rate_limited(cfg: &StubConfig, message: &str) -> Response {
    let mut r = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        message,
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(cfg.retry_after_s));
    r
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn complete(
    st: &Shared,
    kind: Kind,
    reset: &ConnReset,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let stats = &*st.stats;
    let idx = stats.requests.fetch_add(1, Relaxed);
    stats.record_authorization(headers.get(header::AUTHORIZATION));
    if let Some(t) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        *stats.traceparent.write().expect("traceparent lock") = Some(t.to_string());
    }
    let (_guard, now) = InFlight::enter(stats);
    if st.cfg.max_concurrency.is_some_and(|m| now > m as u64) {
        stats.over_capacity.fetch_add(1, Relaxed);
        return rate_limited(&st.cfg, "stub: too many concurrent requests");
    }
    let asked = match kind {
        Kind::Chat => parse_chat(body),
        Kind::Text => parse_completion(body),
    };
    let asked = match asked {
        Ok(a) => a,
        Err(e) => {
            stats.bad_requests.fetch_add(1, Relaxed);
            return error_response(StatusCode::BAD_REQUEST, "invalid_request_error", &e);
        }
    };

    // Each request gets its own RNG: deterministic for a seed and arrival order,
    // and no lock shared between requests.
    let mut rng = SmallRng::seed_from_u64(st.cfg.seed ^ idx.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let marked =
        |marker: &Option<String>| marker.as_deref().is_some_and(|m| asked.text.contains(m));
    let scripted =
        st.attempts.must_fail(asked.key, st.cfg.fail_first_attempts) || marked(&st.cfg.fail_marker);
    let fault = if marked(&st.cfg.hang_marker) {
        Some(Fault::Hang)
    } else {
        draw(&st.cfg, &mut rng)
    };
    // A slot is held through the latency and the answer.
    let _slot = match &st.slots {
        Some(slots) => Some(slots.acquire().await.expect("the slots are never closed")),
        None => None,
    };
    let mut delay = st.cfg.latency;
    if !st.cfg.latency_jitter.is_zero() {
        delay += st.cfg.latency_jitter.mul_f64(rng.random::<f64>());
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if scripted {
        stats.server_errors.fetch_add(1, Relaxed);
        stats.scripted_failures.fetch_add(1, Relaxed);
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "stub: scripted failure",
        );
    }
    match fault {
        None => {}
        Some(Fault::Fail) => {
            stats.server_errors.fetch_add(1, Relaxed);
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "stub: injected server error",
            );
        }
        Some(Fault::RateLimit) => {
            stats.rate_limited.fetch_add(1, Relaxed);
            return rate_limited(&st.cfg, "stub: rate limited");
        }
        Some(Fault::Reset) => {
            stats.resets.fetch_add(1, Relaxed);
            reset.0.cancel();
            // The connection task drops the connection, and this future with it.
            std::future::pending::<()>().await;
        }
        Some(Fault::Hang) => {
            stats.hangs.fetch_add(1, Relaxed);
            tokio::time::sleep(HANG_FOR).await;
            return error_response(StatusCode::GATEWAY_TIMEOUT, "timeout", "stub: hung");
        }
        Some(Fault::Garbage) => {
            stats.garbage.fetch_add(1, Relaxed);
            return (
                [(header::CONTENT_TYPE, "application/json")],
                "{\"id\": \"stub-garbage\", \"choices\": [{\"ind",
            )
                .into_response();
        }
        Some(Fault::Empty) => {}
    }

    let model = asked.model.as_deref().unwrap_or(&st.cfg.model);
    let (text, cut) = truncate(answer(&asked.text), asked.max_tokens);
    let finish_reason = if cut { "length" } else { "stop" };
    let completion_tokens = tokens(&text);
    let usage = Usage::new(asked.prompt_tokens, completion_tokens);
    let empty = matches!(fault, Some(Fault::Empty));
    if empty {
        stats.empty.fetch_add(1, Relaxed);
    } else {
        stats.ok.fetch_add(1, Relaxed);
    }
    let created = now_s();
    if asked.stream {
        let id = format!(
            "{}-stub-{idx}",
            if matches!(kind, Kind::Chat) {
                "chatcmpl"
            } else {
                "cmpl"
            }
        );
        let text = if empty { "" } else { text.as_str() };
        let usage = asked.include_usage.then_some(usage);
        return sse(kind, &id, created, model, text, finish_reason, usage)
            .delayed(st.cfg.stream_chunk_delay);
    }
    let choice = match kind {
        Kind::Chat => Choice {
            message: Some(Message::text("assistant", text.as_str())),
            ..Default::default()
        },
        Kind::Text => Choice {
            text: Some(Cow::Borrowed(&text)),
            ..Default::default()
        },
    };
    let (prefix, object) = match kind {
        Kind::Chat => ("chatcmpl", "chat.completion"),
        Kind::Text => ("cmpl", "text_completion"),
    };
    let body = CompletionResponse {
        id: Some(format!("{prefix}-stub-{idx}").into()),
        object: Some(object.into()),
        created: Some(created),
        model: Some(model.into()),
        choices: Some(if empty {
            vec![]
        } else {
            vec![Choice {
                finish_reason: Some(finish_reason.into()),
                ..choice
            }]
        }),
        usage: Some(usage),
    };
    Json(body).into_response()
}

/// The events of a streamed answer, each a separate body frame.
struct Sse(Vec<Bytes>);

impl Sse {
    /// The response, pausing `delay` between events.
    fn delayed(self, delay: Duration) -> Response {
        use futures::StreamExt;
        let frames = futures::stream::iter(self.0.into_iter().enumerate()).then(
            move |(i, frame)| async move {
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok::<_, std::convert::Infallible>(frame)
            },
        );
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            axum::body::Body::from_stream(frames),
        )
            .into_response()
    }
}

/// A streamed answer: one chunk per word of `text`, the finish reason, the
/// usage when asked, `[DONE]`.
fn sse(
    kind: Kind,
    id: &str,
    created: u64,
    model: &str,
    text: &str,
    finish_reason: &str,
    usage: Option<Usage>,
) -> Sse {
    let (object, piece): (&str, fn(&str) -> serde_json::Value) = match kind {
        Kind::Chat => (
            "chat.completion.chunk",
            |t| serde_json::json!({"index": 0, "delta": {"content": t}, "finish_reason": null}),
        ),
        Kind::Text => (
            "text_completion",
            |t| serde_json::json!({"index": 0, "text": t, "logprobs": null, "finish_reason": null}),
        ),
    };
    let chunk = |choices: serde_json::Value| serde_json::json!({"id": id, "object": object, "created": created, "model": model, "choices": choices});
    let mut events = Vec::new();
    if matches!(kind, Kind::Chat) {
        events.push(chunk(serde_json::json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])));
    }
    for word in text.split_inclusive(' ') {
        events.push(chunk(serde_json::json!([piece(word)])));
    }
    let mut last = piece("");
    last["finish_reason"] = serde_json::json!(finish_reason);
    if matches!(kind, Kind::Chat) {
        last["delta"] = serde_json::json!({});
    }
    events.push(chunk(serde_json::json!([last])));
    if let Some(usage) = usage {
        let mut c = chunk(serde_json::json!([]));
        c["usage"] = serde_json::to_value(usage).unwrap_or_default();
        events.push(c);
    }
    let mut frames: Vec<Bytes> = events
        .iter()
        .map(|e| Bytes::from(format!("data: {e}\n\n")))
        .collect();
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Sse(frames)
}

async fn chat(
    State(st): State<Arc<Shared>>,
    Extension(reset): Extension<ConnReset>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    complete(&st, Kind::Chat, &reset, &headers, &body).await
}

async fn text(
    State(st): State<Arc<Shared>>,
    Extension(reset): Extension<ConnReset>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    complete(&st, Kind::Text, &reset, &headers, &body).await
}

#[derive(Deserialize)]
struct EmbeddingsRequest<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    input: OneOrMany<'a>,
}

async fn embeddings(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    st.stats.embeddings.fetch_add(1, Relaxed);
    let req: EmbeddingsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            st.stats.bad_requests.fetch_add(1, Relaxed);
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &e.to_string(),
            );
        }
    };
    let inputs = req.input.into_vec();
    let tokens_in: u64 = inputs.iter().map(|t| tokens(t)).sum();
    let data: Vec<serde_json::Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, t)| serde_json::json!({"object": "embedding", "index": index, "embedding": embed(t)}))
        .collect();
    Json(serde_json::json!({
        "object": "list",
        "data": data,
        "model": req.model.as_deref().unwrap_or(&st.cfg.model),
        "usage": {"prompt_tokens": tokens_in, "total_tokens": tokens_in},
    }))
    .into_response()
}

async fn models(State(st): State<Arc<Shared>>) -> Response {
    st.stats.models.fetch_add(1, Relaxed);
    let created = st.model_created.load(Relaxed);
    Json(serde_json::json!({
        "object": "list",
        "data": [{"id": st.cfg.model, "object": "model", "created": created, "owned_by": "vigil-stub"}]
    }))
    .into_response()
}

async fn health() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(text))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .with_state(shared)
}
