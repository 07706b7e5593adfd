//! What the judge, embedding and external scorers use from the worker that
//! runs them: its backends (a judge is an HTTP or a local model; its key
//! comes from the worker's allow list, never the job), its response cache, one adaptive limit per
//! judge or embedder endpoint, the external commands it allows and their
//! long-lived processes.

use super::external::{AllowedCommands, Processes};
use crate::backend::{BackendClient, CallFailure, Completion};
use crate::backends::{Backend, Backends, Call};
use crate::cache::ResponseCache;
use crate::retry::{AdaptiveLimit, EndpointLimits};
use crate::telemetry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use vigil_protocol::{Item, Job, Prompt, TargetSpec};

/// Counters of the IO scorers of one worker.
#[derive(Debug, Default)]
pub struct IoStats {
    /// Judge and embedding requests sent to a backend (cache hits excluded).
    pub backend_calls: AtomicU64,
    /// Judge and embedding answers taken from the response cache.
    pub cache_hits: AtomicU64,
    /// External scorer processes started (first starts and restarts).
    pub process_starts: AtomicU64,
}

/// The IO scorers' share of a worker. Cheap to clone.
#[derive(Clone)]
pub struct IoEnv {
    inner: Arc<Inner>,
}

struct Inner {
    backends: Backends,
    cache: Option<ResponseCache>,
    commands: AllowedCommands,
    processes: Processes,
    limits: EndpointLimits,
    stats: Arc<IoStats>,
}

impl Default for IoEnv {
    /// Nothing allowed, no cache: judge and embedding scorers fail their
    /// items as not allowed, external scorers as not allowed.
    fn default() -> Self {
        IoEnv::new(Backends::default(), None, AllowedCommands::default())
    }
}

impl IoEnv {
    /// The environment of a worker with these backends, response cache and
    /// allowed external commands.
    pub fn new(
        backends: Backends,
        cache: Option<ResponseCache>,
        commands: AllowedCommands,
    ) -> Self {
        let stats = Arc::new(IoStats::default());
        IoEnv {
            inner: Arc::new(Inner {
                backends,
                cache,
                commands,
                processes: Processes::new(stats.clone()),
                limits: Default::default(),
                stats,
            }),
        }
    }

    /// The counters.
    pub fn stats(&self) -> Arc<IoStats> {
        self.inner.stats.clone()
    }

    /// The worker's HTTP client.
    pub(crate) fn backend(&self) -> &BackendClient {
        self.inner.backends.http().client()
    }

    /// The worker's backends.
    pub(crate) fn backends(&self) -> &Backends {
        &self.inner.backends
    }

    /// The response cache, if the worker has one.
    pub(crate) fn cache(&self) -> Option<&ResponseCache> {
        self.inner.cache.as_ref()
    }

    /// The external commands this worker may run.
    pub(crate) fn commands(&self) -> &AllowedCommands {
        &self.inner.commands
    }

    /// The worker's external scorer processes.
    pub(crate) fn processes(&self) -> &Processes {
        &self.inner.processes
    }

    /// The API key for `base_url` from the worker's allow list: `None` when
    /// the URL is not allowed, `Some(None)` when it is allowed without a key.
    pub(crate) fn api_key(&self, base_url: &str) -> Option<Option<String>> {
        self.inner
            .backends
            .http()
            .api_key(base_url)
            .map(|k| k.map(str::to_string))
    }

    /// The adaptive limit of an endpoint, shared by every job of the worker.
    pub(crate) fn limit(&self, target: &TargetSpec) -> Arc<AdaptiveLimit> {
        self.inner.limits.of(target)
    }

    /// Counts one request sent to a backend.
    pub(crate) fn count_call(&self) {
        self.inner
            .stats
            .backend_calls
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one answer taken from the cache.
    pub(crate) fn count_hit(&self) {
        self.inner.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends `prompt` to a judge `target` the way the worker sends an item's
/// prompt to its model: the backend its kind chooses (an HTTP server with
/// the key from the allow list, or a local model), the job's cache policy
/// (keyed by the judge's endpoint, model, parameters and the rendered
/// rubric, so a changed rubric or judge model misses), retries, and a
/// model-call span (with the GenAI attributes) under the current span, which
/// is the scorer's.
pub(crate) async fn call_judge(
    env: &IoEnv,
    target: &TargetSpec,
    prompt: &Prompt,
    job: &Job,
    item: &Item,
    role: &'static str,
) -> Result<Completion, CallFailure> {
    let span = telemetry::model_call_span(target, item);
    if !span.is_disabled() {
        span.set_attribute("vigil.call", role);
    }
    let policy = job.cache.as_ref().filter(|p| p.enabled);
    let key = match (env.cache(), policy) {
        (Some(_), Some(_)) => Some(crate::cache::key(target, prompt)),
        _ => None,
    };
    if let (Some(cache), Some(policy), Some(key)) = (env.cache(), policy, &key)
        && let Some(hit) = cache.get(key, policy.ttl_s).await
    {
        env.count_hit();
        let completion = Completion {
            text: hit.text,
            usage: hit.usage,
            finish_reason: hit.finish_reason,
            model: hit.model,
            latency_ms: hit.latency_ms,
            attempts: 0,
        };
        telemetry::record_completion(&span, &completion);
        if !span.is_disabled() {
            span.set_attribute("vigil.cached", true);
        }
        return Ok(completion);
    }
    let limit = env.limit(target);
    env.count_call();
    let call = env
        .backends()
        .choose(target)
        .complete(
            target,
            prompt,
            Call {
                slots: (&*limit).into(),
                span: &span,
                recorded: None,
            },
        )
        .await;
    match call {
        Ok(completion) => {
            telemetry::record_completion(&span, &completion);
            if let (Some(cache), Some(key)) = (env.cache(), &key) {
                cache.put(key, &completion).await;
            }
            Ok(completion)
        }
        Err(failure) => {
            telemetry::record_failure(&span, &failure);
            Err(failure)
        }
    }
}
