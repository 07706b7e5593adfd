//! The model backends a worker calls, behind one [`Backend`] trait:
//!
//! - [`HttpBackend`]: an OpenAI-compatible server, through the pooled
//!   [`BackendClient`], with the API key from the worker's own allow list;
//! - [`LocalModels`]: a GGUF model run in this process by the
//!   [`LocalBackend`] port (implemented by the `vigil-local` crate), with the
//!   model files the worker's own configuration allows;
//! - [`RecordedOutputs`]: no model at all: the item carries its output (a
//!   captured production response, a dataset column), scored like any other.
//!
//! [`Backends::choose`] picks one per target, once (by its kind), and the
//! rest of the worker (the pull loop, the response cache, the `llm_judge`
//! scorer) only talks to the trait: same concurrency, cache, spans, scorers
//! and results whichever backend answers.
//!
//! A new backend kind is an [`EndpointKind`] variant, one more
//! implementation of [`Backend`] and one more arm in [`Backends::choose`]
//! and [`Chosen`] (the README's "Layout" lists the few other places).

use crate::allow::AllowList;
use crate::backend::{BackendClient, CallFailure, Completion};
use crate::identity::{Identity, ModelIdentities};
use crate::retry::Slots;
use crate::telemetry;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::Instrument;
use vigil_protocol::{EndpointKind, ErrorKind, Prompt, Recorded, TargetSpec};

/// What a call carries besides the target and the prompt.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    /// The slots an attempt holds (the target's adaptive limit, the
    /// worker's bound) and the deadline every wait ends at.
    pub slots: Slots<'a>,
    /// The model-call span: the call runs in it and HTTP requests carry it
    /// as `traceparent`.
    pub span: &'a tracing::Span,
    /// The item's recorded output, which a `recorded` target answers with
    /// (`None` for calls that are not an item's, such as a judge's).
    pub recorded: Option<&'a Recorded>,
}

/// A model backend: where a target's prompts are answered.
pub trait Backend {
    /// `Ok` when this worker's own configuration lets it call `target` (a
    /// job is data, never authority); else why not, naming the flag that
    /// would allow it. Items of a refused target fail as `backend_not_allowed`.
    fn allows(&self, target: &TargetSpec) -> Result<(), String>;

    /// The answer to `prompt` from `target`'s model, with its sampling
    /// parameters.
    fn complete(
        &self,
        target: &TargetSpec,
        prompt: &Prompt,
        call: Call<'_>,
    ) -> impl Future<Output = Result<Completion, CallFailure>> + Send;

    /// What identifies `target`'s model in run `run_id`, for the response
    /// cache key ([`crate::identity`]): a model swapped behind the same
    /// name is never answered from the cache of the old one.
    fn fingerprint(
        &self,
        target: &TargetSpec,
        run_id: &str,
    ) -> impl Future<Output = Identity> + Send;
}

/// The port of the in-process model for targets of kind `local` (the
/// `vigil-local` crate implements it, so this crate carries no model code);
/// [`LocalModels`] wraps it as a [`Backend`].
pub trait LocalBackend: Send + Sync + std::fmt::Debug {
    /// Whether this worker's own configuration allows loading the model file
    /// a job names (a job is data, never authority).
    fn allows(&self, model_path: &str) -> bool;

    /// The file this worker loads for a job's `model_path` (`None`: not
    /// allowed). By default the path itself, when allowed.
    fn model_file(&self, model_path: &str) -> Option<PathBuf> {
        self.allows(model_path).then(|| model_path.into())
    }

    /// Generates the answer to `prompt` with `target`'s sampling parameters.
    fn complete<'a>(
        &'a self,
        target: &'a TargetSpec,
        prompt: &'a Prompt,
    ) -> futures::future::BoxFuture<'a, Result<Completion, CallFailure>>;
}

/// Whether `target` names where its model is: a model and a base URL, or a
/// model file for a `local` target.
///
/// ```
/// use vigil_protocol::{EndpointKind, TargetSpec};
/// let http = TargetSpec { model: "m".into(), base_url: "http://h/v1".into(), ..Default::default() };
/// assert!(vigil_worker::backends::addressed(&http));
/// let local = TargetSpec { kind: EndpointKind::Local, model: "m".into(), ..Default::default() };
/// assert!(!vigil_worker::backends::addressed(&local), "no model_path");
/// ```
pub fn addressed(target: &TargetSpec) -> bool {
    let place = match target.kind {
        EndpointKind::Local => target.model_path.as_deref().unwrap_or(""),
        EndpointKind::Chat | EndpointKind::Completions => target.base_url.as_str(),
        // Its outputs come with the items: nothing to address.
        EndpointKind::Recorded => return true,
    };
    !target.model.is_empty() && !place.is_empty()
}

/// An OpenAI-compatible server (`chat` and `completions` targets).
#[derive(Debug, Clone)]
pub struct HttpBackend {
    client: BackendClient,
    allow: AllowList,
    identities: Arc<ModelIdentities>,
}

impl HttpBackend {
    /// The pooled HTTP client (for requests other than completions, such as
    /// embeddings).
    pub fn client(&self) -> &BackendClient {
        &self.client
    }

    /// The API key for `base_url` from the worker's allow list: `None` when
    /// the URL is not allowed, `Some(None)` when it is allowed without a key.
    pub fn api_key(&self, base_url: &str) -> Option<Option<&str>> {
        self.allow.lookup(base_url)
    }
}

impl Backend for HttpBackend {
    fn allows(&self, target: &TargetSpec) -> Result<(), String> {
        match self.api_key(&target.base_url) {
            Some(_) => Ok(()),
            None => Err(format!(
                "backend {url} is not in this worker's allow list (start the worker with --allow {url})",
                url = target.base_url
            )),
        }
    }

    async fn complete(
        &self,
        target: &TargetSpec,
        prompt: &Prompt,
        call: Call<'_>,
    ) -> Result<Completion, CallFailure> {
        let Some(api_key) = self.api_key(&target.base_url) else {
            return Err(not_allowed(self.allows(target)));
        };
        self.client
            .complete(
                target,
                api_key,
                prompt,
                call.slots,
                &telemetry::http_headers(call.span),
            )
            .instrument(call.span.clone())
            .await
    }

    async fn fingerprint(&self, target: &TargetSpec, run_id: &str) -> Identity {
        let api_key = self.api_key(&target.base_url).flatten();
        self.identities
            .http(&self.client, run_id, target, api_key)
            .await
    }
}

/// GGUF models run in this process (`local` targets).
#[derive(Debug, Clone)]
pub struct LocalModels {
    engine: Option<Arc<dyn LocalBackend>>,
    identities: Arc<ModelIdentities>,
}

impl Backend for LocalModels {
    fn allows(&self, target: &TargetSpec) -> Result<(), String> {
        let path = target.model_path.as_deref().unwrap_or("");
        if self.engine.as_ref().is_some_and(|e| e.allows(path)) {
            return Ok(());
        }
        Err(format!(
            "model file `{path}` is not allowed on this worker (start the worker with --allow-model {path})"
        ))
    }

    async fn complete(
        &self,
        target: &TargetSpec,
        prompt: &Prompt,
        call: Call<'_>,
    ) -> Result<Completion, CallFailure> {
        let Some(engine) = &self.engine else {
            return Err(not_allowed(self.allows(target)));
        };
        // The same slots as an HTTP attempt (no retries here, so no waits).
        let _slots = call.slots.acquire().await.map_err(|passed| {
            crate::backend::past_deadline(passed, "waiting for a call slot", 0, None)
        })?;
        engine
            .complete(target, prompt)
            .instrument(call.span.clone())
            .await
    }

    async fn fingerprint(&self, target: &TargetSpec, _run_id: &str) -> Identity {
        let path = target.model_path.as_deref().unwrap_or("");
        match &self.engine {
            Some(engine) => self.identities.local(engine.as_ref(), path).await,
            None => Identity::Unavailable(format!("model file `{path}` is not allowed")),
        }
    }
}

/// Outputs that already exist (`recorded` targets): the "call" returns the
/// item's [`Recorded`] output, so it is scored through the same path as a
/// model's. No network, no cache; nothing to allow (the output is data, and
/// a job is data).
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordedOutputs;

impl RecordedOutputs {
    /// The completion `recorded` stands for, or the failure it recorded:
    /// a status of 400 or more fails as the HTTP call would have
    /// (`rate_limited`, `client_error`, `server_error`), no text as
    /// `empty_response`.
    ///
    /// ```
    /// use vigil_protocol::{ErrorKind, Recorded};
    /// use vigil_worker::backends::RecordedOutputs;
    /// let ok = Recorded { text: Some("4".into()), latency_ms: 9.0, ..Default::default() };
    /// assert_eq!(RecordedOutputs::answer(Some(&ok)).unwrap().text, "4");
    /// let limited = Recorded { status: 429, ..ok.clone() };
    /// assert_eq!(RecordedOutputs::answer(Some(&limited)).unwrap_err().kind, ErrorKind::RateLimited);
    /// assert_eq!(RecordedOutputs::answer(None).unwrap_err().kind, ErrorKind::EmptyResponse);
    /// ```
    pub fn answer(recorded: Option<&Recorded>) -> Result<Completion, CallFailure> {
        let fail = |kind, message: String| CallFailure {
            kind,
            message,
            attempts: 0,
        };
        let Some(recorded) = recorded else {
            return Err(fail(
                ErrorKind::EmptyResponse,
                "the item carries no recorded output".into(),
            ));
        };
        let status = recorded.status;
        let kind = match status {
            429 => Some(ErrorKind::RateLimited),
            400..=499 => Some(ErrorKind::ClientError),
            500.. => Some(ErrorKind::ServerError),
            _ => None,
        };
        if let Some(kind) = kind {
            return Err(fail(
                kind,
                format!("the recorded response had HTTP {status}"),
            ));
        }
        let Some(text) = &recorded.text else {
            return Err(fail(
                ErrorKind::EmptyResponse,
                "the recorded response has no text".into(),
            ));
        };
        Ok(Completion {
            text: text.clone(),
            usage: recorded.usage.unwrap_or_default(),
            finish_reason: None,
            model: recorded.model.clone(),
            latency_ms: recorded.latency_ms,
            attempts: 0,
        })
    }
}

impl Backend for RecordedOutputs {
    fn allows(&self, _target: &TargetSpec) -> Result<(), String> {
        Ok(())
    }

    async fn complete(
        &self,
        _target: &TargetSpec,
        _prompt: &Prompt,
        call: Call<'_>,
    ) -> Result<Completion, CallFailure> {
        RecordedOutputs::answer(call.recorded)
    }

    async fn fingerprint(&self, _target: &TargetSpec, _run_id: &str) -> Identity {
        Identity::NotReported
    }
}

/// A refusal as a call's failure (no attempt made).
fn not_allowed(refused: Result<(), String>) -> CallFailure {
    CallFailure {
        kind: ErrorKind::BackendNotAllowed,
        message: refused.err().unwrap_or_default(),
        attempts: 0,
    }
}

/// Every backend a worker has, sharing one memory of model identities.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Backends {
    http: HttpBackend,
    local: LocalModels,
}

impl Default for Backends {
    /// A fresh HTTP client, nothing allowed, no local engine.
    fn default() -> Self {
        Backends::new(BackendClient::new(), AllowList::default(), None)
    }
}

impl Backends {
    /// The backends of a worker: `client` with the keys and URLs of `allow`
    /// for HTTP targets, `local` (when given) for `local` targets.
    pub fn new(
        client: BackendClient,
        allow: AllowList,
        local: Option<Arc<dyn LocalBackend>>,
    ) -> Self {
        let identities = Arc::new(ModelIdentities::default());
        Backends {
            http: HttpBackend {
                client,
                allow,
                identities: identities.clone(),
            },
            local: LocalModels {
                engine: local,
                identities,
            },
        }
    }

    /// The HTTP backend.
    pub fn http(&self) -> &HttpBackend {
        &self.http
    }

    /// The backend that answers `target`, chosen by its kind.
    pub fn choose(&self, target: &TargetSpec) -> Chosen<'_> {
        match target.kind {
            EndpointKind::Chat | EndpointKind::Completions => Chosen::Http(&self.http),
            EndpointKind::Local => Chosen::Local(&self.local),
            EndpointKind::Recorded => Chosen::Recorded(&RecordedOutputs),
        }
    }
}

/// The backend [`Backends::choose`] picked for a target.
#[derive(Debug, Clone, Copy)]
pub enum Chosen<'a> {
    /// An OpenAI-compatible server.
    Http(&'a HttpBackend),
    /// A model in this process.
    Local(&'a LocalModels),
    /// The item's own recorded output.
    Recorded(&'a RecordedOutputs),
}

impl Backend for Chosen<'_> {
    fn allows(&self, target: &TargetSpec) -> Result<(), String> {
        match self {
            Chosen::Http(b) => b.allows(target),
            Chosen::Local(b) => b.allows(target),
            Chosen::Recorded(b) => b.allows(target),
        }
    }

    async fn complete(
        &self,
        target: &TargetSpec,
        prompt: &Prompt,
        call: Call<'_>,
    ) -> Result<Completion, CallFailure> {
        match self {
            Chosen::Http(b) => b.complete(target, prompt, call).await,
            Chosen::Local(b) => b.complete(target, prompt, call).await,
            Chosen::Recorded(b) => b.complete(target, prompt, call).await,
        }
    }

    async fn fingerprint(&self, target: &TargetSpec, run_id: &str) -> Identity {
        match self {
            Chosen::Http(b) => b.fingerprint(target, run_id).await,
            Chosen::Local(b) => b.fingerprint(target, run_id).await,
            Chosen::Recorded(b) => b.fingerprint(target, run_id).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_chooses_the_backend_and_each_refuses_what_it_was_not_given() {
        let allow = AllowList::parse(["http://h/v1"]).unwrap();
        let backends = Backends::new(BackendClient::new(), allow, None);
        let http = TargetSpec {
            kind: EndpointKind::Completions,
            base_url: "http://h/v1".into(),
            model: "m".into(),
            ..Default::default()
        };
        assert!(matches!(backends.choose(&http), Chosen::Http(_)));
        assert_eq!(backends.choose(&http).allows(&http), Ok(()));
        let elsewhere = TargetSpec {
            base_url: "http://other/v1".into(),
            ..http.clone()
        };
        let refused = backends.choose(&elsewhere).allows(&elsewhere).unwrap_err();
        assert!(refused.contains("--allow http://other/v1"), "{refused}");
        let local = TargetSpec {
            kind: EndpointKind::Local,
            model_path: Some("m.gguf".into()),
            ..Default::default()
        };
        assert!(matches!(backends.choose(&local), Chosen::Local(_)));
        let refused = backends.choose(&local).allows(&local).unwrap_err();
        assert!(refused.contains("--allow-model m.gguf"), "{refused}");
    }
}
