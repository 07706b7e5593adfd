//! `vigil serve-model`: one local GGUF model over OpenAI-compatible
//! `/v1/chat/completions` and `/v1/completions` (plus `/v1/models`), so the
//! HTTP path can be exercised against real generation. The same engine as
//! `local` targets: greedy unless a temperature is given, seeded sampling,
//! `max_tokens`, `stop`, token counts in `usage`. No streaming.

use crate::cli::ServeModelArgs;
use crate::exit::{CommandResult, Exit, ExitContext};
use anyhow::anyhow;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use vigil_local::{GenerateRequest, Generation, LocalEngine, LocalError, LocalModel, PromptInput};
use vigil_protocol::ChatMessage;

struct Served {
    engine: LocalEngine,
    model: Arc<LocalModel>,
}

/// `"x"` or `["x", "y"]`, as the OpenAI API accepts for `stop` and `prompt`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The fields both endpoints read; others are ignored.
#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    prompt: Option<OneOrMany>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<OneOrMany>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": kind}})),
    )
        .into_response()
}

fn request(body: Body, prompt: PromptInput) -> GenerateRequest {
    GenerateRequest {
        prompt,
        max_tokens: body.max_completion_tokens.or(body.max_tokens),
        temperature: body.temperature,
        top_p: body.top_p,
        seed: body.seed,
        stop: body.stop.map(OneOrMany::into_vec).unwrap_or_default(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn generate(served: &Served, request: GenerateRequest) -> Result<Generation, Response> {
    served
        .engine
        .generate(served.model.clone(), request)
        .await
        .map_err(|e| match e {
            LocalError::Request(m) => error(StatusCode::BAD_REQUEST, m),
            other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        })
}

fn usage(g: &Generation) -> Value {
    json!({
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens,
        "total_tokens": g.prompt_tokens + g.completion_tokens,
    })
}

async fn chat(State(served): State<Arc<Served>>, Json(mut body): Json<Body>) -> Response {
    let Some(messages) = body.messages.take().filter(|m| !m.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "`messages` must be a non-empty array",
        );
    };
    let generation = match generate(&served, request(body, PromptInput::Chat(messages))).await {
        Ok(g) => g,
        Err(response) => return response,
    };
    Json(json!({
        "id": format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
        "object": "chat.completion",
        "created": now(),
        "model": served.model.name(),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": generation.text},
            "finish_reason": generation.finish_reason.as_str(),
        }],
        "usage": usage(&generation),
    }))
    .into_response()
}

async fn completions(State(served): State<Arc<Served>>, Json(mut body): Json<Body>) -> Response {
    let prompt = match body.prompt.take().map(OneOrMany::into_vec).as_deref() {
        Some([one]) => one.clone(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "`prompt` must be a string (or an array of one string)",
            );
        }
    };
    let generation = match generate(&served, request(body, PromptInput::Text(prompt))).await {
        Ok(g) => g,
        Err(response) => return response,
    };
    Json(json!({
        "id": format!("cmpl-{}", uuid::Uuid::now_v7().simple()),
        "object": "text_completion",
        "created": now(),
        "model": served.model.name(),
        "choices": [{
            "index": 0,
            "text": generation.text,
            "finish_reason": generation.finish_reason.as_str(),
        }],
        "usage": usage(&generation),
    }))
    .into_response()
}

async fn models(State(served): State<Arc<Served>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": served.model.name(), "object": "model", "owned_by": "vigil"}],
    }))
}

pub async fn run(args: ServeModelArgs) -> CommandResult {
    if !args.model.is_file() {
        return Err(anyhow!(
            "--model {}: no such file (scripts/setup.sh downloads SmolLM2-135M-Instruct into $VIGIL_HOME/models)",
            args.model.display()
        ))
        .input_error();
    }
    let concurrency = args
        .concurrency
        .unwrap_or_else(vigil_local::default_concurrency);
    let engine = LocalEngine::new([&args.model], concurrency);
    // Load before listening: a bad file fails now, and the first request is not slow.
    let path = engine.allowed()[0].clone();
    let model = engine.model(&path).await.input_error()?;
    let served = Arc::new(Served { engine, model });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(served.clone());
    let listener = tokio::net::TcpListener::bind((args.host, args.port))
        .await
        .infra_error()?;
    let shutdown = CancellationToken::new();
    crate::signals::cancel_on_signal(shutdown.clone());
    eprintln!(
        "serving {} on http://{}/v1",
        served.model.name(),
        listener.local_addr().infra_error()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .infra_error()?;
    Ok(Exit::Ok)
}
