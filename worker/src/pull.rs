//! The worker's pull loop: jobs in, results out, nothing lost.
//!
//! Per job: decode (malformed → `+TERM`, counted) → keep it alive with `+WPI`
//! progress acks while it runs → evaluate its items under the worker's
//! concurrency limit and the target's adaptive limit → publish the
//! [`JobResult`] (deduplicated by `Nats-Msg-Id`) → ack. A job whose result
//! cannot be published is nak'd and comes back. On shutdown the worker stops
//! pulling, lets in-flight jobs finish for the grace period, then naks what is
//! left so another worker takes it at once.

use crate::allow::AllowList;
use crate::backend::{BackendClient, LocalBackend};
use crate::retry::AdaptiveLimit;
use crate::scorers::{self, Built, ScoreInput, ScorerEnv};
use crate::telemetry;
use async_nats::HeaderMap;
use async_nats::jetstream::{
    self, AckKind,
    consumer::PullConsumer,
    message::{Acker, PublishMessage},
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use vigil_protocol::topology::{TopologyConfig, TopologyError, ensure_topology};
use vigil_protocol::{
    EndpointKind, ErrorKind, Item, ItemError, ItemResult, Job, JobResult, SCHEMA_VERSION,
    TargetSpec, headers, subjects,
};

/// How a worker runs.
///
/// ```
/// let cfg = vigil_worker::pull::WorkerConfig { concurrency: 256, ..Default::default() };
/// assert_eq!(cfg.pool, "default");
/// ```
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The pool whose consumer to pull from.
    pub pool: String,
    /// Most model calls in flight across all jobs.
    pub concurrency: usize,
    /// Most jobs held at once (0: derived from `concurrency`).
    pub max_jobs: usize,
    /// The backends this worker may call, and their keys.
    pub allow: AllowList,
    /// How long in-flight jobs may finish after shutdown before they are nak'd.
    pub grace_period: Duration,
    /// Stream and consumer settings (must match the coordinator's).
    pub topology: TopologyConfig,
    /// This worker's name in results and logs.
    pub worker_id: String,
    /// Largest job payload accepted, bytes (larger ones are terminated).
    pub max_job_bytes: usize,
    /// The external scorer commands this worker may run.
    pub scorer_commands: scorers::external::AllowedCommands,
    /// The in-process engine for `local` targets, with the model files this
    /// worker allows (`None`: every local job fails as `backend_not_allowed`).
    pub local: Option<Arc<dyn LocalBackend>>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            pool: subjects::DEFAULT_POOL.to_string(),
            concurrency: 64,
            max_jobs: 0,
            allow: AllowList::default(),
            grace_period: Duration::from_secs(25),
            topology: TopologyConfig::default(),
            worker_id: default_worker_id(),
            max_job_bytes: 8 * 1024 * 1024,
            scorer_commands: Default::default(),
            local: None,
        }
    }
}

/// `<hostname>-<pid>`.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// Counters a worker keeps; shared so a metrics endpoint or a test can read them.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Jobs whose results were published and acked.
    pub jobs_done: AtomicU64,
    /// Items evaluated (scored or failed).
    pub items_done: AtomicU64,
    /// Items failed.
    pub items_failed: AtomicU64,
    /// Messages terminated as malformed (undecodable, wrong schema, oversized).
    pub malformed: AtomicU64,
    /// Jobs received on a redelivery.
    pub redelivered: AtomicU64,
    /// Jobs nak'd (result not publishable, or shutdown).
    pub nakked: AtomicU64,
    /// Model calls in flight now.
    pub in_flight: AtomicU64,
    /// Per-item metrics with labels and buckets (failures by kind, latency, scores).
    pub metrics: crate::metrics::WorkerMetrics,
}

/// The worker could not start or lost its stream for good.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Streams or the consumer could not be set up (or the server is too old).
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The pool's consumer could not be read.
    #[error("cannot open consumer {consumer}: {source}")]
    Consumer {
        /// The consumer.
        consumer: String,
        /// Why.
        source: async_nats::Error,
    },
}

struct Shared {
    client: async_nats::Client,
    js: jetstream::Context,
    config: WorkerConfig,
    backend: BackendClient,
    calls: Semaphore,
    limits: Mutex<HashMap<String, Arc<AdaptiveLimit>>>,
    stats: Arc<WorkerStats>,
    max_payload: usize,
    cache: Option<crate::cache::ResponseCache>,
    scorer_env: ScorerEnv,
}

/// Jobs a worker holds at once (pulled, unacked) when `max_jobs` is 0:
/// `max(concurrency / 8, 4)`. They count in the consumer's
/// `num_ack_pending`, hence in the lag KEDA scales on.
///
/// ```
/// assert_eq!(vigil_worker::pull::default_max_jobs(32), 4);
/// assert_eq!(vigil_worker::pull::default_max_jobs(256), 32);
/// ```
pub fn default_max_jobs(concurrency: usize) -> usize {
    (concurrency / 8).max(4)
}

/// Runs a worker until `shutdown` is cancelled; returns after the grace period
/// with every job it held either acked or nak'd.
pub async fn run(
    client: async_nats::Client,
    config: WorkerConfig,
    stats: Arc<WorkerStats>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let js = ensure_topology(&client, &config.topology, &config.pool).await?;
    let consumer_name = subjects::worker_consumer(&config.pool);
    let consumer: PullConsumer = async {
        js.get_stream(subjects::STREAM_JOBS)
            .await?
            .get_consumer(&consumer_name)
            .await
    }
    .await
    .map_err(|e: async_nats::Error| WorkerError::Consumer {
        consumer: consumer_name.clone(),
        source: e,
    })?;

    let max_jobs = if config.max_jobs > 0 {
        config.max_jobs
    } else {
        default_max_jobs(config.concurrency)
    };
    tracing::info!(
        worker = %config.worker_id, pool = %config.pool, concurrency = config.concurrency, max_jobs,
        allowed = ?config.allow.prefixes().collect::<Vec<_>>(),
        scorer_commands = ?config.scorer_commands.lines(), "worker started"
    );
    let cache = match crate::cache::ResponseCache::open(&js, config.topology.replicas).await {
        Ok(cache) => Some(cache),
        Err(e) => {
            tracing::warn!(error = %e, "response cache unavailable; every item calls its backend");
            None
        }
    };
    let backend = BackendClient::new();
    let scorer_env = ScorerEnv {
        io: scorers::io_env::IoEnv::new(
            backend.clone(),
            config.allow.clone(),
            cache.clone(),
            config.scorer_commands.clone(),
        ),
        ..Default::default()
    };
    let shared = Arc::new(Shared {
        cache,
        max_payload: client.server_info().max_payload,
        client,
        js,
        backend,
        calls: Semaphore::new(config.concurrency.max(1)),
        limits: Mutex::new(HashMap::new()),
        stats,
        config,
        scorer_env,
    });
    let slots = Arc::new(Semaphore::new(max_jobs));
    let hard_stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();

    'pull: while !shutdown.is_cancelled() {
        // Ask for exactly as many jobs as there are free slots, so no job
        // waits unseen in a client buffer while its AckWait runs out.
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => permit.expect("semaphore open"),
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let batch = consumer
            .batch()
            .max_messages(permits.len())
            // Short: while a partly filled batch waits out its expiry, slots
            // freed meanwhile stay idle (the benchmark saw this at C=1024).
            .expires(Duration::from_millis(250))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "pull request failed; retrying");
                drop(permits);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => {
                    // Jobs already on their way to us would otherwise wait out
                    // AckWait: hand them back now.
                    nak_rest_of_batch(&mut batch, &shared.stats).await;
                    break 'pull;
                }
                next = batch.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    let permit = permits.pop().expect("one permit per requested message");
                    let shared = shared.clone();
                    let hard_stop = hard_stop.clone();
                    tasks.spawn(async move {
                        handle_message(&shared, message, hard_stop).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "pull batch ended with an error");
                    break;
                }
                None => break,
            }
        }
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "job task failed");
            }
        }
    }

    tracing::info!(
        in_flight_jobs = tasks.len(),
        grace_s = shared.config.grace_period.as_secs_f64(),
        "worker draining"
    );
    let drained = tokio::time::timeout(shared.config.grace_period, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        hard_stop.cancel();
        while tasks.join_next().await.is_some() {}
    }
    let _ = shared.client.flush().await;
    tracing::info!("worker stopped");
    Ok(())
}

async fn nak_rest_of_batch(batch: &mut jetstream::consumer::pull::Batch, stats: &WorkerStats) {
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(1500), batch.next()).await
    {
        stats.nakked.fetch_add(1, Ordering::Relaxed);
        let _ = message.ack_with(AckKind::Nak(None)).await;
    }
}

fn header_value<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers.and_then(|h| h.get(name)).map(|v| v.as_str())
}

async fn handle_message(
    shared: &Shared,
    message: jetstream::Message,
    hard_stop: CancellationToken,
) {
    let delivered = message
        .info()
        .map(|i| i.delivered.max(1) as u64)
        .unwrap_or(1);
    let (message, acker) = message.split();
    let job = match decode_job(shared, &message) {
        Ok(job) => job,
        Err(reason) => {
            let malformed_total = shared.stats.malformed.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(subject = %message.subject, bytes = message.payload.len(), %reason, malformed_total, "terminating malformed job message");
            if let Err(e) = acker.ack_with(AckKind::Term).await {
                tracing::warn!(error = %e, "could not terminate malformed message");
            }
            return;
        }
    };
    if delivered > 1 {
        shared.stats.redelivered.fetch_add(1, Ordering::Relaxed);
    }
    let span = telemetry::job_span(
        message.headers.as_ref(),
        &job,
        delivered,
        &shared.config.worker_id,
    );
    let acker = Arc::new(acker);
    let heartbeat = tokio::spawn(keep_alive(acker.clone(), shared.config.topology.ack_wait));
    let outcome = tokio::select! {
        results = evaluate_job(shared, &job).instrument(span.clone()) => Some(results),
        _ = hard_stop.cancelled() => None,
    };
    heartbeat.abort();
    let Some(items) = outcome else {
        shared.stats.nakked.fetch_add(1, Ordering::Relaxed);
        let _ = acker.ack_with(AckKind::Nak(None)).await;
        tracing::info!(run_id = %job.run_id, job = job.job_index, "job nak'd at shutdown");
        return;
    };
    let failed = items.iter().filter(|i| !i.is_scored()).count() as u64;
    for item in &items {
        shared.stats.metrics.observe_item(&job.target.model, item);
    }
    let result = JobResult {
        run_id: job.run_id.clone(),
        job_index: job.job_index,
        worker_id: shared.config.worker_id.clone(),
        delivery: delivered,
        items,
    };
    match publish_result(shared, result).instrument(span).await {
        Ok(()) => {
            // Ack only after the server has the result: a crash in between
            // means a redelivery, and the aggregator drops the duplicate.
            if let Err(e) = acker.ack().await {
                tracing::warn!(error = %e, run_id = %job.run_id, job = job.job_index, "ack failed; the job will be redelivered");
            }
            shared.stats.jobs_done.fetch_add(1, Ordering::Relaxed);
            shared
                .stats
                .items_done
                .fetch_add(job.items.len() as u64, Ordering::Relaxed);
            shared
                .stats
                .items_failed
                .fetch_add(failed, Ordering::Relaxed);
        }
        Err(e) => {
            shared.stats.nakked.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, run_id = %job.run_id, job = job.job_index, "cannot publish result; nak");
            let _ = acker
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}

fn decode_job(shared: &Shared, message: &async_nats::Message) -> Result<Job, String> {
    if message.payload.len() > shared.config.max_job_bytes {
        return Err(format!(
            "payload of {} bytes exceeds {}",
            message.payload.len(),
            shared.config.max_job_bytes
        ));
    }
    let schema = header_value(message.headers.as_ref(), headers::SCHEMA);
    match schema.map(str::parse::<u32>) {
        Some(Ok(v)) if v == SCHEMA_VERSION => {}
        Some(Ok(v)) => {
            return Err(format!(
                "schema version {v}, this worker reads {SCHEMA_VERSION}"
            ));
        }
        Some(Err(_)) => return Err(format!("unreadable {} header", headers::SCHEMA)),
        None => return Err(format!("no {} header", headers::SCHEMA)),
    }
    let job: Job = vigil_protocol::decode(&message.payload).map_err(|e| e.to_string())?;
    if job.run_id.is_empty() {
        return Err("job has no run_id".into());
    }
    Ok(job)
}

/// Sends `+WPI` at a third of AckWait so a slow job is not redelivered.
async fn keep_alive(acker: Arc<Acker>, ack_wait: Duration) {
    let period = (ack_wait / 3).max(Duration::from_millis(200));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tick.tick().await;
        if let Err(e) = acker.ack_with(AckKind::Progress).await {
            tracing::debug!(error = %e, "progress ack failed");
        }
    }
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn failed_item(item: &Item, kind: ErrorKind, message: impl Into<String>) -> ItemResult {
    ItemResult {
        index: item.index,
        id: item.id.clone(),
        error: Some(ItemError {
            kind,
            message: message.into(),
        }),
        tags: item.tags.clone(),
        ..Default::default()
    }
}

fn limit_for(shared: &Shared, target: &TargetSpec) -> Arc<AdaptiveLimit> {
    let key = format!("{}|{}", target.base_url, target.model);
    let mut limits = shared.limits.lock().expect("limits lock");
    limits
        .entry(key)
        .or_insert_with(|| Arc::new(AdaptiveLimit::new(target.max_concurrency.max(1) as usize)))
        .clone()
}

async fn evaluate_job(shared: &Shared, job: &Job) -> Vec<ItemResult> {
    if job.deadline_unix_ms.is_some_and(|d| unix_ms_now() >= d) {
        return job
            .items
            .iter()
            .map(|i| failed_item(i, ErrorKind::Deadline, "run deadline passed"))
            .collect();
    }
    let api_key = if job.target.kind == EndpointKind::Local {
        let path = job.target.model_path.as_deref().unwrap_or("");
        if !shared.config.local.as_ref().is_some_and(|l| l.allows(path)) {
            let reason = format!(
                "model file `{path}` is not allowed on this worker (start the worker with --allow-model {path})"
            );
            return job
                .items
                .iter()
                .map(|i| failed_item(i, ErrorKind::BackendNotAllowed, reason.clone()))
                .collect();
        }
        None
    } else if let Some(api_key) = shared.config.allow.lookup(&job.target.base_url) {
        api_key
    } else {
        let reason = format!(
            "backend {} is not in this worker's allow list (start the worker with --allow {})",
            job.target.base_url, job.target.base_url
        );
        return job
            .items
            .iter()
            .map(|i| failed_item(i, ErrorKind::BackendNotAllowed, reason.clone()))
            .collect();
    };
    let built: Result<Vec<Built>, _> = job
        .scorers
        .iter()
        .map(|spec| scorers::build_for_job(spec, &shared.scorer_env))
        .collect();
    let scorers = match built {
        Ok(scorers) => scorers,
        Err(e) => {
            let reason = e.to_string();
            return job
                .items
                .iter()
                .map(|i| failed_item(i, ErrorKind::Scorer, reason.clone()))
                .collect();
        }
    };
    let limit = limit_for(shared, &job.target);
    let mut pending: FuturesUnordered<_> = job
        .items
        .iter()
        .map(|item| evaluate_item(shared, job, item, api_key, &scorers, &limit))
        .collect();
    let mut results = Vec::with_capacity(job.items.len());
    while let Some(result) = pending.next().await {
        results.push(result);
    }
    results.sort_by_key(|r| r.index);
    results
}

async fn evaluate_item(
    shared: &Shared,
    job: &Job,
    item: &Item,
    api_key: Option<&str>,
    scorers: &[Built],
    limit: &AdaptiveLimit,
) -> ItemResult {
    let started = Instant::now();
    // `Span::none()` when tracing is off: nothing allocated per item.
    let span = telemetry::model_call_span(&job.target, item);
    // One call per sample (distinct seeds, so distinct cache keys); the
    // first sample's completion describes the item.
    let n = job.samples.max(1);
    let calls = (0..n).map(|i| {
        let target = crate::sampling::target_for_sample(&job.target, i);
        let span = &span;
        async move { call_model(shared, job, &target, item, api_key, limit, span).await }
    });
    let mut samples = Vec::with_capacity(n as usize);
    let mut call = None;
    for result in futures::future::join_all(calls).await {
        match (result, &mut call) {
            (Ok((c, hit)), None) => {
                samples.push(c.text.clone());
                call = Some(Ok((c, hit)));
            }
            (Ok((c, _)), Some(Ok((first, _)))) => {
                first.usage.input += c.usage.input;
                first.usage.output += c.usage.output;
                samples.push(c.text);
            }
            (Ok(_), Some(Err(_))) => {}
            // Any failed sample fails the item: pass@k needs every sample.
            (Err(e), _) => {
                call = Some(Err(e));
                break;
            }
        }
    }
    let call = call.expect("at least one sample");
    let cached = matches!(call, Ok((_, true)));
    let call = match call {
        Ok((completion, _)) => Ok(completion),
        Err(None) => return failed_item(item, ErrorKind::Deadline, "run deadline passed"),
        Err(Some(failure)) => Err(failure),
    };
    let (trace_id, span_id) = telemetry::span_ids(&span);
    match call {
        Ok(completion) => {
            telemetry::record_completion(&span, &completion);
            let samples = samples.as_slice();
            let mut scores = Vec::with_capacity(scorers.len());
            for s in scorers {
                let score_span = telemetry::score_span(&span, s.name());
                let input = ScoreInput {
                    output: &completion.text,
                    reference: item.references.get(s.name()).map(String::as_str),
                    samples,
                    item,
                    job,
                };
                let score = s.score(input).instrument(score_span.clone()).await;
                telemetry::record_score(&score_span, &score);
                scores.push(score);
            }
            let keep = job.keep_output_chars as usize;
            let output = (keep > 0).then(|| completion.text.chars().take(keep).collect());
            ItemResult {
                index: item.index,
                id: item.id.clone(),
                error: None,
                output,
                scores,
                latency_ms: completion.latency_ms,
                usage: completion.usage,
                attempts: completion.attempts,
                finish_reason: completion.finish_reason,
                response_model: completion.model,
                cached,
                tags: item.tags.clone(),
                trace_id,
                span_id,
            }
        }
        Err(failure) => {
            telemetry::record_failure(&span, &failure);
            tracing::debug!(item = %item.id, kind = %failure.kind, elapsed_ms = started.elapsed().as_millis() as u64, "item failed");
            let mut result = failed_item(item, failure.kind, failure.message);
            result.attempts = failure.attempts;
            result.trace_id = trace_id;
            result.span_id = span_id;
            result
        }
    }
}

/// One model call for an item, from the cache when allowed: the completion
/// and whether it was cached; `Err(None)` when the run's deadline passed
/// while the item waited for a call slot.
async fn call_model(
    shared: &Shared,
    job: &Job,
    target: &TargetSpec,
    item: &Item,
    api_key: Option<&str>,
    limit: &AdaptiveLimit,
    span: &tracing::Span,
) -> Result<(crate::backend::Completion, bool), Option<crate::backend::CallFailure>> {
    let lookup =
        crate::cache::lookup_target(shared.cache.as_ref(), job, target, &item.prompt).await;
    if let Some(hit) = lookup.hit.clone() {
        return Ok((hit, true));
    }
    let _call = shared.calls.acquire().await.expect("semaphore open");
    // Items wait here for a call slot; one whose run ended meanwhile is not worth a call.
    if job.deadline_unix_ms.is_some_and(|d| unix_ms_now() >= d) {
        return Err(None);
    }
    shared.stats.in_flight.fetch_add(1, Ordering::Relaxed);
    // A `local` target runs in this process, through the same slots, cache,
    // span and scorers as an HTTP one.
    let call = match (&target.kind, &shared.config.local) {
        (EndpointKind::Local, Some(local)) => {
            local
                .complete(target, &item.prompt)
                .instrument(span.clone())
                .await
        }
        _ => {
            shared
                .backend
                .complete(
                    target,
                    api_key,
                    &item.prompt,
                    limit,
                    &telemetry::http_headers(span),
                )
                .instrument(span.clone())
                .await
        }
    };
    shared.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    if let Ok(completion) = &call {
        lookup.store(completion).await;
    }
    call.map(|c| (c, false)).map_err(Some)
}

async fn publish_result(shared: &Shared, mut result: JobResult) -> Result<(), async_nats::Error> {
    let mut payload = vigil_protocol::encode(&result)?;
    // Outputs are the only large part; drop them rather than lose the scores.
    let budget = shared.max_payload.saturating_sub(4096);
    if payload.len() > budget {
        for item in &mut result.items {
            item.output = None;
        }
        payload = vigil_protocol::encode(&result)?;
        tracing::warn!(run_id = %result.run_id, job = result.job_index, bytes = payload.len(), "result too large for max_payload: outputs dropped");
    }
    let headers = headers::message_headers(&result.run_id);
    let publish = PublishMessage::build()
        .headers(headers)
        .message_id(headers::job_msg_id(&result.run_id, result.job_index))
        .payload(payload.into());
    let ack = shared
        .js
        .send_publish(subjects::result(&result.run_id, result.job_index), publish)
        .await?;
    ack.await?;
    Ok(())
}
