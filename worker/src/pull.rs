//! The worker's pull loop: jobs in, results out, nothing lost.
//!
//! Per job: decode (a job it cannot read is answered with failed items, then
//! `+TERM`, counted: see [`crate::unreadable`]) → keep it alive with `+WPI`
//! progress acks while it runs → evaluate its items under the target's
//! adaptive limit and the worker's concurrency limit (both held only while
//! an attempt runs; a job whose every call waits to retry parks, see
//! [`JobSlots`](crate::retry::JobSlots)) → publish the
//! [`JobResult`] (deduplicated by `Nats-Msg-Id`) → ack. A job whose result
//! cannot be published is nak'd and comes back. On shutdown the worker stops
//! pulling, lets in-flight jobs finish for the grace period, then naks what is
//! left so another worker takes it at once.

use crate::allow::AllowList;
use crate::backend::BackendClient;
use crate::backends::{Backend, Backends, Call, Chosen, LocalBackend};
use crate::metrics::WorkerStats;
use crate::retry::{Deadline, JobGate, JobSlots, Slots};
use crate::scorers::{self, Built, ScoreInput, ScorerEnv};
use crate::telemetry;
use async_nats::jetstream::{
    self, AckKind,
    consumer::PullConsumer,
    message::{Acker, PublishMessage},
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use vigil_nats::topology::{TopologyConfig, TopologyError, ensure_topology};
use vigil_protocol::{
    ErrorKind, Item, ItemError, ItemResult, Job, JobResult, TargetSpec, headers, subjects,
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
    /// Most model calls in flight across all jobs (attempts: a call waiting
    /// to retry holds no slot).
    pub concurrency: usize,
    /// Most jobs evaluating at once (0: derived from `concurrency`);
    /// [`PARKED_PER_WORKING`](crate::retry::PARKED_PER_WORKING) times as
    /// many more may be held parked, every call of theirs waiting to retry.
    pub max_jobs: usize,
    /// The backends this worker may call, and their keys.
    pub allow: AllowList,
    /// How long in-flight jobs may finish after shutdown before they are nak'd.
    pub grace_period: Duration,
    /// Cancelled, before the shutdown, when no job can still be on its way
    /// to this worker (an embedded `vigil run` whose every run is complete):
    /// the stop then hands back the jobs already received without waiting
    /// up to [`STOP_BATCH_WAIT`] for the rest of its open pull request.
    pub all_done: Option<CancellationToken>,
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
    /// Whether `code_exec` runs programs, and how (`None`, the default:
    /// never; its items fail as `not_allowed`).
    pub code_exec: Option<crate::sandbox::SandboxMode>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            pool: subjects::DEFAULT_POOL.to_string(),
            concurrency: 64,
            max_jobs: 0,
            allow: AllowList::default(),
            grace_period: Duration::from_secs(25),
            all_done: None,
            topology: TopologyConfig::default(),
            worker_id: default_worker_id(),
            max_job_bytes: 8 * 1024 * 1024,
            scorer_commands: Default::default(),
            local: None,
            code_exec: None,
        }
    }
}

/// How long a stopping worker waits for each further job of its open pull
/// request, to hand it back at once (the request expires after 250 ms, so
/// its last jobs come within that); one that comes later returns after
/// AckWait.
pub const STOP_BATCH_WAIT: Duration = Duration::from_millis(1500);

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
    backends: Backends,
    calls: Semaphore,
    jobs: JobSlots,
    limits: crate::retry::EndpointLimits,
    stats: Arc<WorkerStats>,
    max_payload: usize,
    cache: Option<crate::cache::ResponseCache>,
    scorer_env: ScorerEnv,
    run_states: crate::run_state::RunStates,
}

/// How long a worker trusts that a run is still running before it reads
/// the run's state again (jobs of a run cancelled meanwhile are skipped
/// after at most this long).
pub const RUN_STATE_TTL: Duration = Duration::from_secs(2);

/// Jobs a worker holds at once when `max_jobs` is 0 (defined with the job,
/// since a coordinator sizes its jobs by it).
pub use vigil_protocol::job::default_max_jobs;

/// Runs a worker until `shutdown` is cancelled; returns after the grace period
/// with every job it held either acked or nak'd.
pub async fn run(
    client: async_nats::Client,
    config: WorkerConfig,
    stats: Arc<WorkerStats>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    // Setting up waits on the server: a stop meanwhile wins.
    let js = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        js = ensure_topology(&client, &config.topology, &config.pool) => js?,
    };
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
    // Opening the bucket waits on the server: a stop meanwhile wins.
    let opened = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        opened = crate::cache::ResponseCache::open(&js, &config.topology) => opened,
    };
    let cache = match opened {
        Ok(cache) => Some(cache),
        Err(e) => {
            tracing::warn!(error = %e, "response cache unavailable; every item calls its backend");
            None
        }
    };
    let backends = Backends::new(
        BackendClient::new(),
        config.allow.clone(),
        config.local.clone(),
    );
    let sandbox = match config.code_exec {
        Some(mode) => {
            // Probed (and logged) once, before the first job.
            let sandbox = crate::sandbox::Sandbox::shared(mode);
            sandbox.isolation().await;
            Some(sandbox)
        }
        None => {
            tracing::info!(
                "code_exec disabled (no --allow-code-exec): its items fail as not_allowed"
            );
            None
        }
    };
    let scorer_env = ScorerEnv {
        sandbox,
        io: scorers::io_env::IoEnv::new(
            backends.clone(),
            cache.clone(),
            config.scorer_commands.clone(),
        ),
    };
    let run_states = match js.get_key_value(subjects::KV_RUNS).await {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::warn!(error = %e, "run state bucket unavailable; jobs of ended runs are not skipped");
            None
        }
    };
    let shared = Arc::new(Shared {
        run_states: crate::run_state::RunStates::new(run_states, RUN_STATE_TTL),
        cache,
        max_payload: client.server_info().max_payload,
        client,
        js,
        backends,
        calls: Semaphore::new(config.concurrency.max(1)),
        jobs: JobSlots::new(max_jobs),
        limits: Default::default(),
        stats,
        config,
        scorer_env,
    });
    let slots = shared.jobs.working.clone();
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
            .messages();
        // The pull request can wait on a dead connection: shutdown wins.
        let batch = tokio::select! {
            _ = shutdown.cancelled() => break,
            batch = batch => batch,
        };
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
                    let all_done = shared.config.all_done.as_ref().is_some_and(|t| t.is_cancelled());
                    let wait = if all_done { Duration::ZERO } else { STOP_BATCH_WAIT };
                    nak_rest_of_batch(&mut batch, &shared.stats, wait).await;
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
                        handle_message(&shared, message, permit, hard_stop).await;
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
    drain(&shared, tasks, hard_stop).await;
    tracing::info!("worker stopped");
    Ok(())
}

/// How long the naks and acks of a hard stop, and the final flush, may take
/// beyond the grace period.
const STOP_MARGIN: Duration = Duration::from_secs(2);

/// Lets in-flight jobs finish for the grace period, then naks the rest and
/// flushes. Every step is bounded: with the server unreachable, a nak, an
/// ack or a flush would wait for a reconnect that may never come, and a
/// worker told to stop must stop (within the grace period plus [`STOP_MARGIN`]).
async fn drain(shared: &Shared, mut tasks: tokio::task::JoinSet<()>, hard_stop: CancellationToken) {
    let drained = tokio::time::timeout(shared.config.grace_period, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let margin_end = tokio::time::Instant::now() + STOP_MARGIN;
    if drained.is_err() {
        hard_stop.cancel();
        let handed_back = tokio::time::timeout_at(margin_end, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if handed_back.is_err() {
            tracing::warn!(
                jobs = tasks.len(),
                "jobs not handed back in time (server unreachable?); they return after AckWait"
            );
            tasks.shutdown().await;
        }
    }
    if tokio::time::timeout_at(margin_end, shared.client.flush())
        .await
        .is_err()
    {
        tracing::warn!("could not flush to the server before stopping (unreachable?)");
    }
}

/// Naks the jobs of `batch` that arrive, each within `wait` of the one
/// before (and every one received already: a timeout polls its future
/// before it looks at its deadline).
async fn nak_rest_of_batch(
    batch: &mut jetstream::consumer::pull::Batch,
    stats: &WorkerStats,
    wait: Duration,
) {
    while let Ok(Some(Ok(message))) = tokio::time::timeout(wait, batch.next()).await {
        stats.nakked.fetch_add(1, Ordering::Relaxed);
        let _ = message.ack_with(AckKind::Nak(None)).await;
    }
}

/// Handles one pulled job; `slot` (the working job slot it was pulled
/// with) is held until it is answered, except while the job is parked.
async fn handle_message(
    shared: &Shared,
    message: jetstream::Message,
    slot: tokio::sync::OwnedSemaphorePermit,
    hard_stop: CancellationToken,
) {
    let delivered = message
        .info()
        .map(|i| i.delivered.max(1) as u64)
        .unwrap_or(1);
    let (message, acker) = message.split();
    let job = match crate::unreadable::decode_job(
        message.headers.as_ref(),
        &message.payload,
        shared.config.max_job_bytes,
    ) {
        Ok(job) => job,
        Err(unreadable) => {
            answer_unreadable(shared, &message, acker, &unreadable, delivered).await;
            return;
        }
    };
    if delivered > 1 {
        shared.stats.redelivered.fetch_add(1, Ordering::Relaxed);
    }
    if skip_ended_run(shared, &job, &acker).await {
        return;
    }
    let span = telemetry::job_span(
        message.headers.as_ref(),
        &job,
        delivered,
        &shared.config.worker_id,
    );
    let acker = Arc::new(acker);
    let calls = job.items.len() * job.samples.max(1) as usize;
    let gate = JobGate::new(shared.jobs.clone(), slot, calls);
    let heartbeat = tokio::spawn(keep_alive(acker.clone(), shared.config.topology.ack_wait));
    let outcome = tokio::select! {
        results = evaluate_job(shared, &job, &gate).instrument(span.clone()) => Some(results),
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
    shared
        .stats
        .metrics
        .observe_items(&job.target.model, &items);
    let result = JobResult {
        run_id: job.run_id.clone(),
        job_index: job.job_index,
        worker_id: shared.config.worker_id.clone(),
        delivery: delivered,
        items,
        error: None,
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

/// Answers a job this worker cannot read (see [`crate::unreadable`]):
/// publishes a result failing what it names, then terminates the message. If
/// that result cannot be published the job is nak'd and comes back (at worst
/// it ends at MaxDeliver); a message that names no run is only terminated.
async fn answer_unreadable(
    shared: &Shared,
    message: &async_nats::Message,
    acker: Acker,
    unreadable: &crate::unreadable::Unreadable,
    delivered: u64,
) {
    let malformed_total = shared.stats.malformed.fetch_add(1, Ordering::Relaxed) + 1;
    let answer = crate::unreadable::answer(
        message.headers.as_ref(),
        &message.payload,
        unreadable,
        &shared.config.worker_id,
        delivered,
    );
    let (run_id, job, items) = answer.as_ref().map_or((None, None, 0), |r| {
        (Some(r.run_id.clone()), Some(r.job_index), r.items.len())
    });
    tracing::warn!(subject = %message.subject, bytes = message.payload.len(), reason = %unreadable.reason,
        kind = %unreadable.kind, ?run_id, ?job, items, malformed_total, "terminating malformed job message");
    if let Some(result) = answer
        && let Err(e) = publish_result(shared, result).await
    {
        tracing::warn!(error = %e, ?run_id, ?job, "cannot publish the answer to an unreadable job; nak");
        let _ = acker
            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
            .await;
        return;
    }
    if let Err(e) = acker.ack_with(AckKind::Term).await {
        tracing::warn!(error = %e, "could not terminate malformed message");
    }
}

/// Acks and counts a job whose run was cancelled or has finished, without
/// evaluating it; false when the run may still want it.
async fn skip_ended_run(shared: &Shared, job: &Job, acker: &Acker) -> bool {
    let Some(status) = shared.run_states.ended(&job.run_id).await else {
        return false;
    };
    let skipped_total = shared.stats.jobs_skipped.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::info!(
        run_id = %job.run_id, job = job.job_index, items = job.items.len(), status, skipped_total,
        "skipping a job of an ended run"
    );
    if let Err(e) = acker.ack().await {
        tracing::warn!(error = %e, run_id = %job.run_id, job = job.job_index, "ack of a skipped job failed");
    }
    true
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

async fn evaluate_job(shared: &Shared, job: &Job, gate: &JobGate) -> Vec<ItemResult> {
    if job.deadline_unix_ms.is_some_and(|d| unix_ms_now() >= d) {
        return job
            .items
            .iter()
            .map(|i| failed_item(i, ErrorKind::Deadline, "run deadline passed"))
            .collect();
    }
    // Chosen once for the whole job: every item and sample goes to it.
    let backend = shared.backends.choose(&job.target);
    if let Err(reason) = backend.allows(&job.target) {
        return job
            .items
            .iter()
            .map(|i| failed_item(i, ErrorKind::BackendNotAllowed, reason.clone()))
            .collect();
    }
    let built: Result<Vec<Built>, _> = job
        .scorers
        .iter()
        .map(|spec| scorers::build_for_job(spec, &shared.scorer_env))
        .collect();
    let scorers = match built {
        Ok(scorers) => scorers,
        Err(e) => {
            let (kind, reason) = (e.kind(), e.to_string());
            return job
                .items
                .iter()
                .map(|i| failed_item(i, kind.clone(), reason.clone()))
                .collect();
        }
    };
    let limit = shared.limits.of(&job.target);
    // What identifies the model is looked up only when the job may use the
    // cache (remembered per worker, run and target); then every item's
    // entries are read at once, before the items run.
    let identity = if crate::cache::allowed(shared.cache.as_ref(), job) {
        backend.fingerprint(&job.target, &job.run_id).await
    } else {
        crate::identity::Identity::NotReported
    };
    let lookups = crate::cache::JobLookups::read(shared.cache.as_ref(), job, &identity).await;
    let scorers = scorers.as_slice();
    let slots = Slots {
        target: &limit,
        worker: Some(&shared.calls),
        job: Some(gate),
        deadline: Deadline::at_unix_ms(job.deadline_unix_ms),
    };
    let mut pending: FuturesUnordered<_> = job
        .items
        .iter()
        .enumerate()
        .map(|(position, item)| {
            let lookups = &lookups;
            let item_lookup = move |sample| lookups.lookup(position, sample);
            async move {
                let result =
                    evaluate_item(shared, job, item, backend, scorers, slots, item_lookup).await;
                gate.calls_done(job.samples.max(1) as usize);
                (position, result)
            }
        })
        .collect();
    // Each result in its item's place as it comes: sorting the finished
    // results moved each (a few hundred bytes) several times.
    let mut placed: Vec<Option<ItemResult>> = vec![None; job.items.len()];
    while let Some((position, result)) = pending.next().await {
        placed[position] = Some(result);
    }
    drop(pending);
    // The misses' answers, written together before the job's result.
    lookups.write().await;
    let mut results: Vec<ItemResult> = placed.into_iter().flatten().collect();
    // In the job's order, which is by index unless the job says otherwise.
    if !results.is_sorted_by_key(|r| r.index) {
        results.sort_by_key(|r| r.index);
    }
    results
}

async fn evaluate_item<'c>(
    shared: &Shared,
    job: &Job,
    item: &Item,
    backend: Chosen<'_>,
    scorers: &[Built],
    slots: Slots<'_>,
    lookup: impl Fn(u32) -> crate::cache::Lookup<'c>,
) -> ItemResult {
    let started = Instant::now();
    // `Span::none()` when tracing is off: nothing allocated per item.
    let span = telemetry::model_call_span(&job.target, item);
    // One call per sample (distinct seeds, so distinct cache keys); the
    // first sample's completion describes the item.
    let n = job.samples.max(1);
    // The other samples' texts, for pass@k; with one sample (the usual
    // case) the call is awaited alone and its text is the only sample.
    let mut samples = Vec::new();
    let call = if n == 1 {
        call_model(shared, &job.target, item, backend, slots, &span, lookup(0)).await
    } else {
        let calls = (0..n).map(|i| {
            // Sample 0 goes to the job's target as it is (no copy per item).
            let target = match i {
                0 => std::borrow::Cow::Borrowed(&job.target),
                i => std::borrow::Cow::Owned(crate::sampling::target_for_sample(&job.target, i)),
            };
            let span = &span;
            let lookup = lookup(i);
            async move { call_model(shared, &target, item, backend, slots, span, lookup).await }
        });
        samples.reserve(n as usize);
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
        call.expect("at least one sample")
    };
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
            let samples = match samples.as_slice() {
                [] => std::slice::from_ref(&completion.text),
                many => many,
            };
            let mut scores = Vec::with_capacity(scorers.len());
            let mut unscored = None;
            for s in scorers {
                let score_span = telemetry::score_span(&span, s.name());
                let input = ScoreInput {
                    output: &completion.text,
                    reference: item.references.get(s.name()).map(String::as_str),
                    samples,
                    item,
                    job,
                };
                match s.score(input).instrument(score_span.clone()).await {
                    Ok(score) => {
                        telemetry::record_score(&score_span, &score);
                        scores.push(score);
                    }
                    // A scorer that could not score fails the item (not the
                    // model): no score, an item error naming each such scorer.
                    Err(failure) => {
                        tracing::debug!(item = %item.id, scorer = s.name(), reason = %failure.message, "scorer could not score");
                        match &mut unscored {
                            None => {
                                unscored = Some(ItemError {
                                    kind: failure.kind,
                                    message: failure.message,
                                })
                            }
                            Some(error) => {
                                error.message.push_str("; ");
                                error.message.push_str(&failure.message);
                            }
                        }
                    }
                }
            }
            if unscored.is_some() {
                scores.clear();
            }
            let keep = job.keep_output_chars as usize;
            let output = (keep > 0).then(|| completion.text.chars().take(keep).collect());
            ItemResult {
                index: item.index,
                id: item.id.clone(),
                error: unscored,
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

/// One model call for an item, from the cache when `lookup` (read up front
/// for the whole job) has it: the completion and whether it was cached;
/// `Err(None)` when the run's deadline had passed before the call (a wait
/// the deadline cuts short is a `deadline` failure of the backend's, with
/// its reason).
#[allow(clippy::too_many_arguments)] // one call's inputs; a struct would only rename them
async fn call_model(
    shared: &Shared,
    target: &TargetSpec,
    item: &Item,
    backend: Chosen<'_>,
    slots: Slots<'_>,
    span: &tracing::Span,
    mut lookup: crate::cache::Lookup<'_>,
) -> Result<(crate::backend::Completion, bool), Option<crate::backend::CallFailure>> {
    if let Some(hit) = lookup.hit.take() {
        return Ok((hit, true));
    }
    // An item whose run ended meanwhile is not worth a call. (The call
    // slots are taken per attempt, by the backend, and not held while a
    // retry waits.)
    if slots.deadline.passed() {
        return Err(None);
    }
    shared.stats.in_flight.fetch_add(1, Ordering::Relaxed);
    // Whichever backend answers, the call goes through the same slots,
    // cache, span and scorers.
    let call = backend
        .complete(
            target,
            &item.prompt,
            Call {
                slots,
                span,
                recorded: item.recorded.as_ref(),
            },
        )
        .await;
    shared.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    if let Ok(completion) = &call {
        lookup.store(completion);
    }
    call.map(|c| (c, false)).map_err(Some)
}

async fn publish_result(shared: &Shared, mut result: JobResult) -> Result<(), async_nats::Error> {
    let mut payload = result.encode()?;
    // Outputs are the only large part; drop them rather than lose the scores.
    let budget = shared.max_payload.saturating_sub(4096);
    if payload.len() > budget {
        for item in &mut result.items {
            item.output = None;
        }
        payload = result.encode()?;
        tracing::warn!(run_id = %result.run_id, job = result.job_index, bytes = payload.len(), "result too large for max_payload: outputs dropped");
    }
    let headers = vigil_nats::headers::message_headers(&result.run_id);
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
