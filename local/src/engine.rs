//! What a worker holds: the model files its own configuration allows, each
//! loaded once and shared, and a small bound on concurrent generations.
//!
//! A job is data, never authority (DESIGN §4.8): a job naming a file that is
//! not allowed here fails its items as `backend_not_allowed`, and the file is
//! never opened. A job may name an allowed file by its full path or, when the
//! worker's layout differs from the coordinator's, by its file name alone.

use crate::generate::{GenerateRequest, PromptInput};
use crate::{LocalError, LocalModel};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{OnceCell, Semaphore};
use vigil_protocol::{ErrorKind, Prompt, TargetSpec, TokenUsage};
use vigil_worker::backend::{CallFailure, Completion};
use vigil_worker::backends::LocalBackend;

/// Concurrent generations by default: one per core, at most two. Each
/// generation is CPU-bound, so more only adds memory and latency.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 2)
}

/// Where `scripts/setup.sh` puts models: `$VIGIL_HOME/models`
/// (`VIGIL_HOME` defaults to `~/.vigil`).
pub fn models_dir() -> PathBuf {
    std::env::var_os("VIGIL_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".vigil")))
        .unwrap_or_else(|| PathBuf::from(".vigil"))
        .join("models")
}

/// The comparable form of a path: canonical when the file exists.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

type Slot = Arc<OnceCell<Arc<LocalModel>>>;

/// Allowed models, loaded on first use, and the generation bound.
#[derive(Debug)]
pub struct LocalEngine {
    allowed: Vec<PathBuf>,
    loaded: Mutex<HashMap<PathBuf, Slot>>,
    slots: Semaphore,
}

impl LocalEngine {
    /// An engine that may load only `allowed` files, running at most
    /// `concurrency` generations at once.
    pub fn new<I, P>(allowed: I, concurrency: usize) -> LocalEngine
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
    {
        let mut list: Vec<PathBuf> = allowed.into_iter().map(|p| canonical(p.as_ref())).collect();
        list.sort();
        list.dedup();
        LocalEngine {
            allowed: list,
            loaded: Mutex::new(HashMap::new()),
            slots: Semaphore::new(concurrency.max(1)),
        }
    }

    /// The allowed files, for logs.
    pub fn allowed(&self) -> &[PathBuf] {
        &self.allowed
    }

    /// The allowed file a job's `model_path` names, if any: the same file,
    /// else the one allowed file with that file name.
    pub fn resolve(&self, requested: &str) -> Option<PathBuf> {
        if requested.is_empty() {
            return None;
        }
        let wanted = canonical(Path::new(requested));
        if let Some(hit) = self.allowed.iter().find(|p| **p == wanted) {
            return Some(hit.clone());
        }
        let name = Path::new(requested).file_name()?;
        let mut by_name = self.allowed.iter().filter(|p| p.file_name() == Some(name));
        match (by_name.next(), by_name.next()) {
            (Some(only), None) => Some(only.clone()),
            _ => None,
        }
    }

    /// The model for an allowed `path`, loading it on first use (on the
    /// blocking pool; concurrent callers wait for the one load).
    pub async fn model(&self, path: &Path) -> Result<Arc<LocalModel>, LocalError> {
        let slot = {
            let mut loaded = self.loaded.lock().expect("model map lock");
            loaded.entry(path.to_path_buf()).or_default().clone()
        };
        slot.get_or_try_init(|| async {
            let path = path.to_path_buf();
            let started = Instant::now();
            let model = tokio::task::spawn_blocking(move || LocalModel::load(&path))
                .await
                .map_err(|e| LocalError::Generate(format!("model loading panicked: {e}")))??;
            tracing::info!(path = %model.path().display(), load_ms = started.elapsed().as_millis() as u64, "local model loaded");
            Ok(Arc::new(model))
        })
        .await
        .cloned()
    }

    /// Runs one generation under the concurrency bound, on the blocking pool.
    pub async fn generate(
        &self,
        model: Arc<LocalModel>,
        request: GenerateRequest,
    ) -> Result<crate::Generation, LocalError> {
        self.timed(model, request).await.map(|(g, _)| g)
    }

    /// As [`LocalEngine::generate`], with the generation's own duration
    /// (the wait for a free slot excluded: that is queueing, not latency).
    async fn timed(
        &self,
        model: Arc<LocalModel>,
        request: GenerateRequest,
    ) -> Result<(crate::Generation, std::time::Duration), LocalError> {
        let _slot = self.slots.acquire().await.expect("semaphore open");
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            model.generate(&request).map(|g| (g, started.elapsed()))
        })
        .await
        .map_err(|e| LocalError::Generate(format!("generation panicked: {e}")))?
    }
}

fn failure(kind: ErrorKind, message: impl Into<String>) -> CallFailure {
    CallFailure {
        kind,
        message: message.into(),
        attempts: 1,
    }
}

/// The request a target and a rendered prompt make.
pub(crate) fn request_for(target: &TargetSpec, prompt: &Prompt) -> GenerateRequest {
    let p = &target.params;
    GenerateRequest {
        prompt: match prompt {
            Prompt::Chat(messages) => PromptInput::Chat(messages.clone()),
            Prompt::Completion(text) => PromptInput::Text(text.clone()),
        },
        max_tokens: p.max_tokens,
        temperature: p.temperature,
        top_p: p.top_p,
        seed: p.seed,
        stop: p.stop.clone(),
    }
}

impl LocalBackend for LocalEngine {
    fn allows(&self, model_path: &str) -> bool {
        self.resolve(model_path).is_some()
    }

    fn model_file(&self, model_path: &str) -> Option<PathBuf> {
        self.resolve(model_path)
    }

    fn complete<'a>(
        &'a self,
        target: &'a TargetSpec,
        prompt: &'a Prompt,
    ) -> BoxFuture<'a, Result<Completion, CallFailure>> {
        Box::pin(async move {
            let requested = target.model_path.as_deref().unwrap_or("");
            let Some(path) = self.resolve(requested) else {
                return Err(CallFailure {
                    kind: ErrorKind::BackendNotAllowed,
                    message: format!(
                        "model file `{requested}` is not allowed on this worker (start it with --allow-model FILE)"
                    ),
                    attempts: 0,
                });
            };
            let model = self
                .model(&path)
                .await
                .map_err(|e| failure(ErrorKind::ServerError, e.to_string()))?;
            let (generation, took) = self
                .timed(model.clone(), request_for(target, prompt))
                .await
                .map_err(|e| match e {
                    LocalError::Request(m) => failure(ErrorKind::ClientError, m),
                    other => failure(ErrorKind::ServerError, other.to_string()),
                })?;
            Ok(Completion {
                text: generation.text,
                usage: TokenUsage {
                    input: generation.prompt_tokens,
                    output: generation.completion_tokens,
                },
                finish_reason: Some(generation.finish_reason.as_str().to_string()),
                model: Some(model.name().to_string()),
                latency_ms: took.as_secs_f64() * 1000.0,
                attempts: 1,
            })
        })
    }
}
