//! `vigil serve-model`'s server: one local GGUF model over OpenAI-compatible
//! `/v1/chat/completions` and `/v1/completions` (plus `/v1/models` and
//! `/healthz`), so the HTTP path can be exercised against real generation.
//! The same engine as `local` targets: greedy unless a temperature is given,
//! seeded sampling, `max_tokens`, `stop`, token counts in `usage`. No
//! streaming. Bodies are [`vigil_protocol::openai`]'s types.
//!
//! [`ModelServer::bind`] loads the model before listening (a bad file fails
//! at once and the first request is not slow); [`ModelServer::serve`] answers
//! until its shutdown future completes.

use crate::{GenerateRequest, Generation, LocalEngine, LocalError, LocalModel, PromptInput};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use vigil_protocol::ChatMessage;
use vigil_protocol::openai::{
    Choice, CompletionRequest, CompletionResponse, ErrorResponse, Message, OneOrMany, Usage,
};

/// What to serve and where.
///
/// ```
/// let cfg = vigil_local::serve::ServeConfig { port: 0, ..Default::default() };
/// assert_eq!(cfg.host.to_string(), "127.0.0.1");
/// ```
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The GGUF model file.
    pub model: PathBuf,
    /// Address to listen on.
    pub host: std::net::IpAddr,
    /// Port to listen on (0: any free port).
    pub port: u16,
    /// Generations run at once.
    pub concurrency: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            model: PathBuf::new(),
            host: std::net::IpAddr::from([127, 0, 0, 1]),
            port: 8090,
            concurrency: crate::default_concurrency(),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model could not be loaded (the user's file).
    #[error(transparent)]
    Model(#[from] LocalError),
    /// The address could not be bound or served.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A loaded model bound to its address, ready to serve.
pub struct ModelServer {
    listener: tokio::net::TcpListener,
    served: Arc<Served>,
}

impl ModelServer {
    /// Loads the model and binds the address.
    pub async fn bind(config: &ServeConfig) -> Result<ModelServer, ServeError> {
        let engine = LocalEngine::new([&config.model], config.concurrency);
        let path = engine.allowed()[0].clone();
        let model = engine.model(&path).await?;
        let listener = tokio::net::TcpListener::bind((config.host, config.port)).await?;
        Ok(ModelServer {
            listener,
            served: Arc::new(Served { engine, model }),
        })
    }

    /// The address it listens on (the port chosen when 0 was asked).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The served model's name (its file name).
    pub fn model_name(&self) -> &str {
        self.served.model.name()
    }

    /// Answers requests until `shutdown` completes, then lets open ones finish.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/completions", post(completions))
            .route("/v1/models", get(models))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.served);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

struct Served {
    engine: LocalEngine,
    model: Arc<LocalModel>,
}

/// Reads a request body as axum's `Json` extractor would answer it (415
/// without a JSON content type, 400 for bad JSON, 422 for a body of the wrong
/// shape), borrowing its strings.
#[allow(clippy::result_large_err)] // the error is the answer, built once per bad request
fn read_request<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
) -> Result<CompletionRequest<'a>, Response> {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
    if !json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected request with `Content-Type: application/json`",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let status = if e.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        error(
            status,
            format!("Failed to parse the request body as JSON: {e}"),
        )
    })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    (status, Json(ErrorResponse::new(kind, message.into()))).into_response()
}

fn request(body: &CompletionRequest<'_>, prompt: PromptInput) -> GenerateRequest {
    GenerateRequest {
        prompt,
        max_tokens: body
            .token_limit()
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        temperature: body.temperature,
        top_p: body.top_p,
        seed: body.seed,
        stop: body
            .stop
            .clone()
            .map(|s| s.into_vec().into_iter().map(Cow::into_owned).collect())
            .unwrap_or_default(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[allow(clippy::result_large_err)] // the error is the answer
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

/// The response body of a generation: `choice` completed with the finish
/// reason, the usage and the ids.
fn answer(
    served: &Served,
    prefix: &str,
    object: &str,
    choice: Choice<'_>,
    g: &Generation,
) -> Response {
    Json(CompletionResponse {
        id: Some(format!("{prefix}-{}", uuid::Uuid::now_v7().simple()).into()),
        object: Some(object.into()),
        created: Some(now()),
        model: Some(served.model.name().into()),
        choices: Some(vec![Choice {
            finish_reason: Some(g.finish_reason.as_str().into()),
            ..choice
        }]),
        usage: Some(Usage::new(g.prompt_tokens, g.completion_tokens)),
    })
    .into_response()
}

async fn chat(State(served): State<Arc<Served>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match read_request(&headers, &body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let Some(messages) = body.messages.as_ref().filter(|m| !m.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "`messages` must be a non-empty array",
        );
    };
    let messages = messages
        .iter()
        .map(|m| ChatMessage {
            role: m.role.to_string(),
            content: m.content_text().unwrap_or_default().into_owned(),
        })
        .collect();
    let generation = match generate(&served, request(&body, PromptInput::Chat(messages))).await {
        Ok(g) => g,
        Err(response) => return response,
    };
    let choice = Choice {
        message: Some(Message::text("assistant", generation.text.as_str())),
        ..Default::default()
    };
    answer(&served, "chatcmpl", "chat.completion", choice, &generation)
}

async fn completions(
    State(served): State<Arc<Served>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match read_request(&headers, &body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let prompt = match body.prompt.clone().map(OneOrMany::into_vec).as_deref() {
        Some([one]) => one.to_string(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "`prompt` must be a string (or an array of one string)",
            );
        }
    };
    let generation = match generate(&served, request(&body, PromptInput::Text(prompt))).await {
        Ok(g) => g,
        Err(response) => return response,
    };
    let choice = Choice {
        text: Some(generation.text.as_str().into()),
        ..Default::default()
    };
    answer(&served, "cmpl", "text_completion", choice, &generation)
}

async fn models(State(served): State<Arc<Served>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": served.model.name(), "object": "model", "owned_by": "vigil"}],
    }))
}
