//! One run: a suite against one target, from dataset to published summary.
//!
//! The order matters for never losing an item: the results subscription is
//! opened (replaying from the start of the run's subject) before the first job
//! is published, and the run ends only when every item index is accounted:
//! by a result (a worker answers even a job it cannot read), by the
//! max-deliveries advisory, by reconciliation (a job whose message left the
//! queue without a result), or by the deadline (default 24 h). A dataset
//! error found during dispatch ends the run at once.

use crate::aggregate::{Aggregator, SummaryMeta};
use crate::dispatch::{self, DispatchProgress, JobTemplate};
use crate::reconcile::{Reconciler, fail_whole_jobs};
use crate::render::Renderer;
use crate::resume::{self, ResumeError, RunState, StateRecorder};
use crate::suite::{Suite, TargetConfig};
use crate::{dataset, gates, validate};
use async_nats::jetstream::{self, consumer::pull::OrderedConfig, message::PublishMessage};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use vigil_nats::topology::{TopologyConfig, TopologyError, ensure_topology};
use vigil_protocol::{
    ErrorKind, Item, Job, JobResult, ProgressEvent, RunPhase, RunSummary, subjects,
};

/// How to run one suite against one target.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The loaded suite.
    pub suite: Arc<Suite>,
    /// The target's name in the suite.
    pub target: String,
    /// The run id (default: a new UUIDv7).
    pub run_id: Option<String>,
    /// Stream and consumer settings.
    pub topology: TopologyConfig,
    /// A JetStream context on the run's client whose streams and buckets the
    /// caller already ensured with `topology` for the suite's pool (`vigil
    /// run` does it once, while the suite is checked); `None`: the run
    /// ensures them itself.
    pub jetstream: Option<async_nats::jetstream::Context>,
    /// Most job publishes awaiting their PubAck.
    pub max_in_flight_publishes: usize,
    /// Receives a progress snapshot about twice a second.
    pub progress: Option<watch::Sender<ProgressEvent>>,
    /// The dataset check already done by the caller for this suite (skips a
    /// second full pass over the dataset); `None`: the run checks it itself.
    pub dataset_check: Option<validate::DatasetCheck>,
    /// Where the run counts what it sees (for `/metrics`); `None`: nowhere.
    pub metrics: Option<Arc<crate::metrics::CoordinatorMetrics>>,
    /// The run id must name a run recorded in the `vigil-runs` bucket, which
    /// is resumed (`vigil run --resume`). Without it, a recorded run with the
    /// given id is resumed too, and an unknown id starts a new run.
    pub require_resume: bool,
    /// Compare with this run instead of the pinned or latest passing one.
    pub baseline: Option<String>,
    /// Compare with no baseline (a shadow wave: the run before it is
    /// another wave over other captures, not a baseline).
    pub no_baseline: bool,
    /// Never answer from the response cache.
    pub no_cache: bool,
    /// How long without progress (and after every reconnect) before the run
    /// checks the jobs stream for outstanding jobs that left it without a
    /// result (default 60 s; `VIGIL_RECONCILE_S` in the binary).
    pub reconcile_after: Duration,
    /// Use the response cache even when the suite does not turn it on
    /// (`vigil run --cache`; `no_cache` wins).
    pub cache: bool,
}

/// The default of [`RunConfig::reconcile_after`].
pub const DEFAULT_RECONCILE_AFTER: Duration = Duration::from_secs(60);

impl RunConfig {
    /// A config with defaults for everything but the suite and target.
    pub fn new(suite: Arc<Suite>, target: impl Into<String>) -> Self {
        RunConfig {
            suite,
            target: target.into(),
            run_id: None,
            topology: TopologyConfig::default(),
            jetstream: None,
            max_in_flight_publishes: 256,
            progress: None,
            dataset_check: None,
            metrics: None,
            require_resume: false,
            baseline: None,
            no_baseline: false,
            no_cache: false,
            reconcile_after: DEFAULT_RECONCILE_AFTER,
            cache: false,
        }
    }
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The summary, with gates applied; also published on `vigil.runs.<suite>.<target>`.
    pub summary: RunSummary,
    /// Item results dropped because the item was already counted.
    pub duplicates_dropped: u64,
    /// Job publishes the server dropped as duplicates.
    pub server_duplicates: u64,
    /// Result messages that could not be decoded.
    pub malformed_results: u64,
    /// The run had already finished (a re-fired scheduled run): `summary`
    /// is the stored one, and nothing was evaluated or published.
    pub replayed: bool,
}

/// A run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The suite names no such target.
    #[error("suite `{suite}` has no target `{target}` (targets: {known})")]
    UnknownTarget {
        /// The suite.
        suite: String,
        /// The asked target.
        target: String,
        /// The suite's targets.
        known: String,
    },
    /// A template failed to compile.
    #[error(transparent)]
    Suite(#[from] crate::suite::SuiteError),
    /// The dataset or a rendering failed validation (nothing was published).
    #[error(transparent)]
    Validation(#[from] validate::ValidationError),
    /// The server or its streams are not usable.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// A NATS operation failed.
    #[error("NATS: {0}")]
    Nats(String),
    /// Publishing jobs failed.
    #[error(transparent)]
    Dispatch(#[from] dispatch::DispatchError),
    /// Reading the dataset failed during dispatch (it changed after validation?).
    #[error("dataset: {0}")]
    Dataset(String),
    /// The run cannot be resumed (unknown, or it evaluated something else).
    #[error(transparent)]
    Resume(#[from] ResumeError),
    /// The run was cancelled.
    #[error("run cancelled")]
    Cancelled,
}

fn nats_err(e: impl std::fmt::Display) -> RunError {
    RunError::Nats(e.to_string())
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The namespace of derived (scheduled) run ids.
const RUN_ID_NAMESPACE: uuid::Uuid = uuid::uuid!("6f1c8a52-5b7e-4c1e-9d35-2a0c7e4b9a11");

/// The run id of a scheduled run: UUIDv5 of `suite/target/date`, so a
/// re-fired schedule on the same day finds the same run.
pub fn scheduled_run_id(suite: &str, target: &str, date: &str) -> String {
    uuid::Uuid::new_v5(
        &RUN_ID_NAMESPACE,
        format!("{suite}/{target}/{date}").as_bytes(),
    )
    .to_string()
}

/// Finds a target of a suite or says which exist.
pub fn find_target<'a>(suite: &'a Suite, name: &str) -> Result<&'a TargetConfig, RunError> {
    suite.target(name).ok_or_else(|| RunError::UnknownTarget {
        suite: suite.name.clone(),
        target: name.to_string(),
        known: suite
            .targets
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Runs a suite against one target to its summary.
///
/// The run is one span (`vigil.run`), the root of the run's trace: every
/// job carries its context in its headers, so the workers' job spans are its
/// children, and the summary's `trace_id` names the trace.
pub async fn run(
    client: async_nats::Client,
    config: RunConfig,
    shutdown: CancellationToken,
) -> Result<RunOutcome, RunError> {
    let span = tracing::info_span!(
        "vigil.run",
        otel.name = "run",
        vigil.suite = %config.suite.name,
        vigil.target = %config.target,
        vigil.run_id = Empty,
        trace_id = Empty,
    );
    if let Some((trace_id, _)) = vigil_nats::trace_context::ids(&span.context()) {
        span.record("trace_id", trace_id.as_str());
    }
    let metrics = config.metrics.clone();
    if let Some(m) = &metrics {
        m.runs_active.inc();
    }
    let outcome = run_in_span(client, config, shutdown).instrument(span).await;
    if let Some(m) = &metrics {
        m.runs_active.dec();
        if let Ok(o) = &outcome {
            m.runs
                .get_or_create(&vec![("passed", o.summary.passed.to_string())])
                .inc();
        }
    }
    outcome
}

async fn run_in_span(
    client: async_nats::Client,
    mut config: RunConfig,
    shutdown: CancellationToken,
) -> Result<RunOutcome, RunError> {
    let suite = config.suite.clone();
    let target = find_target(&suite, &config.target)?.clone();
    let renderer = Arc::new(Renderer::new(&suite)?);

    // Validate the whole dataset before anything is published, so a broken
    // line 90,000 fails the run at once instead of half-way.
    let mut check = match config.dataset_check.take() {
        Some(check) => check,
        None => {
            let (suite, renderer, kind) = (suite.clone(), renderer.clone(), target.kind);
            tokio::task::spawn_blocking(move || validate::check_dataset(&suite, &renderer, &[kind]))
                .await
                .map_err(|e| RunError::Dataset(e.to_string()))??
        }
    };

    let js = match &config.jetstream {
        Some(js) => js.clone(),
        None => ensure_topology(&client, &config.topology, &suite.pool).await?,
    };
    let run_id = config
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    tracing::Span::current().record("vigil.run_id", run_id.as_str());
    let max_payload = client.server_info().max_payload;
    let fresh = RunState {
        shard_size: suite.shard_size_for(&target, check.items, check.item_bytes, max_payload)
            as u64,
        suite: suite.name.clone(),
        target: target.name.clone(),
        status: resume::STATUS_RUNNING.into(),
        items_total: check.items,
        suite_sha256: suite.sha256.clone(),
        dataset_sha256: check.sha256.clone(),
        started_at_unix_ms: unix_ms(SystemTime::now()),
        ..Default::default()
    };
    let recorded = match &config.run_id {
        Some(id) => resume::load(&js, id).await?,
        None => None,
    };
    let state = match recorded {
        Some(recorded) => {
            resume::check_same(&run_id, &recorded, &fresh)?;
            if let Some(outcome) =
                ended_run(&js, &run_id, &recorded, config.topology.api_deadline).await?
            {
                return Ok(outcome);
            }
            tracing::info!(%run_id, status = %recorded.status, dispatched_jobs = recorded.dispatched_jobs,
                "resuming run: replaying its results, publishing jobs from the high-water mark on");
            RunState {
                status: resume::STATUS_RUNNING.into(),
                resumes: recorded.resumes + 1,
                ..recorded
            }
        }
        None if config.require_resume => return Err(ResumeError::NotFound { run_id }.into()),
        None => fresh,
    };
    let skip_below = state.dispatched_jobs;
    // The job boundaries the run's first start chose (a resume must publish
    // the same jobs); a state from before they were recorded had the suite's.
    let shard_size = match state.shard_size {
        0 => suite.shard_size.unwrap_or(crate::suite::DEFAULT_SHARD_SIZE),
        n => usize::try_from(n).unwrap_or(crate::suite::DEFAULT_SHARD_SIZE),
    };
    // A resumed run keeps its first start: its deadline and duration count from there.
    let started_at = state.started_at();
    let started = Instant::now();
    let deadline_unix_ms = unix_ms(started_at).saturating_add((suite.deadline_s() * 1000.0) as u64);
    // Capped at a century: an Instant cannot hold the far future.
    let deadline = started
        + Duration::from_millis(deadline_unix_ms.saturating_sub(unix_ms(SystemTime::now())))
            .min(Duration::from_secs(100 * 365 * 86_400));
    tracing::info!(%run_id, suite = %suite.name, target = %target.name, items = check.items, shard_size, "run starting");

    // Subscribe before publishing: results of this run from the first on.
    let results_stream = js
        .get_stream(subjects::STREAM_RESULTS)
        .await
        .map_err(nats_err)?;
    let mut results = results_stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::results_of_run(&run_id),
            ..Default::default()
        })
        .await
        .map_err(nats_err)?
        .messages()
        .await
        .map_err(nats_err)?;
    let mut advisories = client
        .subscribe(subjects::MAX_DELIVERIES_ADVISORY)
        .await
        .map_err(nats_err)?;
    let jobs_stream = js
        .get_stream(subjects::STREAM_JOBS)
        .await
        .map_err(nats_err)?;
    let mut recorder = StateRecorder::new(&js, &run_id, state).await;
    recorder.flush().await;
    // Ctrl-C/SIGTERM, or `vigil runs cancel` from anywhere.
    let (cancel, _cancel_watch) = resume::cancelled_externally(&js, &run_id, &shutdown).await;

    // Read and render on a blocking thread; shards flow through a bounded channel.
    let (shard_tx, shard_rx) = mpsc::channel::<Vec<Item>>(64);
    let mut producer = {
        let (suite, renderer, target) = (suite.clone(), renderer.clone(), target.clone());
        let rendered = check.rendered.take();
        tokio::task::spawn_blocking(move || {
            produce_shards(&suite, &renderer, rendered, &target, shard_size, shard_tx)
        })
    };
    let template = JobTemplate {
        job: Job {
            run_id: run_id.clone(),
            job_index: 0,
            suite: suite.name.clone(),
            target: target.spec(),
            scorers: suite.scorer_specs(),
            items: Vec::new(),
            deadline_unix_ms: Some(deadline_unix_ms),
            keep_output_chars: suite.keep_output_chars,
            cache: crate::suite::cache_policy(&suite.cache, config.cache, config.no_cache),
            samples: suite.samples,
        },
        subject: subjects::jobs(&suite.pool),
        skip_below,
    };
    let dispatch_progress = Arc::new(DispatchProgress::default());
    let mut dispatcher = {
        let (js, progress) = (js.clone(), dispatch_progress.clone());
        let max_in_flight = config.max_in_flight_publishes;
        tokio::spawn(
            async move {
                dispatch::dispatch(
                    &js,
                    template,
                    shard_rx,
                    max_in_flight,
                    max_payload,
                    progress,
                )
                .await
            }
            .in_current_span(),
        )
    };
    let mut dispatch_done = false;
    let mut producer_done = false;

    let scorer_names = suite.scorers.iter().map(|s| s.name.clone()).collect();
    let mut aggregate = Aggregator::new(check.items, scorer_names);
    let mut duplicates_dropped = 0u64;
    let mut malformed_results = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let events_subject = subjects::events(&run_id);
    let deadline_sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(deadline_sleep);
    let mut reconciler = Reconciler::new(
        &jobs_stream,
        &results_stream,
        &suite.pool,
        &run_id,
        &dispatch_progress,
        skip_below,
    );
    // Jobs failed as a whole whose items dispatch has not reached yet (a resumed run).
    let mut whole_job_failures: Vec<(u64, vigil_protocol::ItemError)> = Vec::new();
    let mut last_progress = (aggregate.done(), Instant::now());
    let mut connects_seen = client.statistics().connects.load(Ordering::Relaxed);

    while !aggregate.is_complete() {
        tokio::select! {
            _ = cancel.cancelled() => {
                dispatcher.abort();
                mark_cancelled(&mut recorder, &run_id).await;
                return Err(RunError::Cancelled);
            }
            message = results.next() => {
                let message = match message {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => { tracing::warn!(error = %e, "results subscription hiccup"); continue }
                    None => return Err(RunError::Nats("results subscription ended".into())),
                };
                match JobResult::decode(&message.payload) {
                    Ok(result) if result.run_id == run_id => {
                        let outcome = aggregate.add_job_result(&result);
                        duplicates_dropped += outcome.duplicates;
                        if let Some(m) = &config.metrics {
                            m.observe_result(&result, outcome.duplicates);
                        }
                        if let Some(error) = result.error {
                            whole_job_failures.push((result.job_index, error));
                            fail_whole_jobs(&mut whole_job_failures, &dispatch_progress, &mut aggregate);
                        }
                    }
                    Ok(other) => tracing::warn!(expected = %run_id, got = %other.run_id, "result of another run on this run's subject"),
                    Err(e) => {
                        malformed_results += 1;
                        if let Some(m) = &config.metrics {
                            m.malformed_results.inc();
                        }
                        tracing::warn!(subject = %message.subject, error = %e, "malformed result ignored");
                    }
                }
            }
            advisory = advisories.next() => {
                if let Some(advisory) = advisory {
                    reconciler.fail_dead_job(&advisory.payload, &mut aggregate).await;
                }
            }
            done = &mut dispatcher, if !dispatch_done => {
                dispatch_done = true;
                match done {
                    Ok(Ok(jobs)) => {
                        tracing::info!(%run_id, jobs, "every job published");
                        if let Some(m) = &config.metrics {
                            m.jobs_dispatched.inc_by(jobs);
                        }
                        recorder.set_dispatched(jobs, true);
                        recorder.flush().await;
                    }
                    Ok(Err(e)) => return Err(e.into()),
                    Err(e) => return Err(RunError::Dataset(e.to_string())),
                }
            }
            // A dataset error during dispatch (the file changed after
            // validation) ends the run now: its remaining items would never
            // be published, and waiting for them would never end.
            done = &mut producer, if !producer_done => {
                producer_done = true;
                let error = match done {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(e) => Some(RunError::Dataset(e.to_string())),
                };
                if let Some(e) = error {
                    dispatcher.abort();
                    tracing::error!(%run_id, error = %e, "dataset error during dispatch: the run ends");
                    return Err(e);
                }
            }
            _ = &mut deadline_sleep => {
                let missing: Vec<(u64, String)> = aggregate.missing().map(|i| (i, String::new())).collect();
                let count = aggregate.fail_items(missing, ErrorKind::Deadline, "the run's deadline passed before the item was evaluated");
                tracing::warn!(%run_id, items = count, "deadline passed: unfinished items marked as timed out");
                dispatcher.abort();
                break;
            }
            _ = tick.tick() => {
                fail_whole_jobs(&mut whole_job_failures, &dispatch_progress, &mut aggregate);
                let connects = client.statistics().connects.load(Ordering::Relaxed);
                let reconnected = connects > connects_seen;
                connects_seen = connects;
                if aggregate.done() != last_progress.0 {
                    last_progress = (aggregate.done(), Instant::now());
                }
                if reconnected || last_progress.1.elapsed() >= config.reconcile_after {
                    let failed = reconciler.reconcile(&mut aggregate).await;
                    tracing::info!(%run_id, reconnected, items_failed = failed, "reconciled outstanding jobs with the jobs stream");
                    last_progress = (aggregate.done(), Instant::now());
                }
                let event = progress_event(&run_id, &suite.name, &target.name, &aggregate, &dispatch_progress, dispatch_done, started);
                publish_progress(&client, &events_subject, &event, config.progress.as_ref()).await;
                recorder.set_dispatched(dispatch_progress.high_water.load(Ordering::Relaxed), false);
                recorder.flush().await;
            }
        }
    }
    if !producer_done && let Ok(Err(e)) = producer.await {
        // Every item is accounted, but the dataset could not be re-read to the end.
        tracing::warn!(error = %e, "dataset producer ended with an error");
    }

    let finished_at = SystemTime::now();
    let meta = SummaryMeta {
        run_id: run_id.clone(),
        suite: suite.name.clone(),
        target: target.name.clone(),
        model: target.model.clone(),
        started_at,
        finished_at,
    };
    let mut summary = aggregate.summary(&meta);
    summary.trace_id = vigil_nats::trace_context::ids(&tracing::Span::current().context())
        .map(|(trace_id, _)| trace_id);
    summary.manifest = Some(crate::manifest::build(
        &suite,
        &check,
        &target,
        &client.server_info().version,
        aggregate.response_models(),
    ));
    crate::baseline::compare_with_baseline(
        &js,
        &suite,
        &renderer,
        &aggregate,
        &mut summary,
        config.baseline.as_deref(),
        !config.no_baseline,
        config.topology.api_deadline,
    )
    .await;
    gates::apply(&suite.gates, Some(suite.error_budget), &mut summary);
    publish_summary(&js, &summary, config.topology.api_deadline).await?;
    if let Err(e) = crate::alerts::publish(&js, &summary).await {
        tracing::warn!(error = %e, "could not publish alerts");
    }
    let mut event = progress_event(
        &run_id,
        &suite.name,
        &target.name,
        &aggregate,
        &dispatch_progress,
        true,
        started,
    );
    event.phase = RunPhase::Finished;
    publish_progress(&client, &events_subject, &event, config.progress.as_ref()).await;
    recorder.set_status(resume::STATUS_FINISHED);
    recorder.flush().await;
    let server_duplicates = dispatch_progress.duplicates.load(Ordering::Relaxed);
    // The numbers the fault tests read: nothing counted twice, and how often it was tried.
    tracing::info!(
        %run_id, passed = summary.passed, items = summary.items_total, scored = summary.items_scored,
        failed = summary.items_failed, duplicates_dropped, server_duplicates, malformed_results,
        resumed_from_job = skip_below, "run finished"
    );
    Ok(RunOutcome {
        summary,
        duplicates_dropped,
        server_duplicates,
        malformed_results,
        replayed: false,
    })
}

/// A run started again under the id of a run that ended: a finished one
/// gives its stored summary (nothing evaluated or published again), a
/// cancelled one is refused; `None` for a run to resume.
async fn ended_run(
    js: &jetstream::Context,
    run_id: &str,
    recorded: &RunState,
    retry: std::time::Duration,
) -> Result<Option<RunOutcome>, RunError> {
    match recorded.status.as_str() {
        resume::STATUS_FINISHED => {
            let summary = resume::finished_summary(js, run_id, retry).await?;
            tracing::info!(%run_id, finished_at = %summary.finished_at, passed = summary.passed,
                "run already finished: its stored summary, nothing published");
            Ok(Some(RunOutcome {
                summary,
                duplicates_dropped: 0,
                server_duplicates: 0,
                malformed_results: 0,
                replayed: true,
            }))
        }
        resume::STATUS_CANCELLED => Err(ResumeError::Cancelled {
            run_id: run_id.to_string(),
        }
        .into()),
        _ => Ok(None),
    }
}

/// Records a cancelled run, so workers skip its jobs left in the queue.
async fn mark_cancelled(recorder: &mut StateRecorder, run_id: &str) {
    recorder.set_status(resume::STATUS_CANCELLED);
    recorder.flush().await;
    tracing::warn!(%run_id, "run cancelled: workers skip its remaining jobs");
}

/// Sends the target's items in shards: those the dataset check kept when it
/// has them, else read and rendered from the dataset again.
fn produce_shards(
    suite: &Suite,
    renderer: &Renderer,
    rendered: Option<Arc<validate::Rendered>>,
    target: &crate::suite::TargetConfig,
    shard_size: usize,
    tx: mpsc::Sender<Vec<Item>>,
) -> Result<(), RunError> {
    let items: Box<dyn Iterator<Item = Result<Item, RunError>> + '_> =
        match rendered.and_then(|r| validate::Rendered::into_items_for(r, target)) {
            Some(kept) => Box::new(kept.map(Ok)),
            None => {
                let records =
                    dataset::open(&suite.dataset).map_err(|e| RunError::Dataset(e.to_string()))?;
                Box::new(records.map(|record| {
                    let record = record.map_err(|e| RunError::Dataset(e.to_string()))?;
                    renderer
                        .render_for(&record, target)
                        .map_err(|e| RunError::Dataset(e.to_string()))
                }))
            }
        };
    let mut shard = Vec::with_capacity(shard_size);
    for item in items {
        shard.push(item?);
        if shard.len() >= shard_size {
            let full = std::mem::replace(&mut shard, Vec::with_capacity(shard_size));
            if tx.blocking_send(full).is_err() {
                return Ok(()); // the run ended (deadline, cancel)
            }
        }
    }
    if !shard.is_empty() {
        let _ = tx.blocking_send(shard);
    }
    Ok(())
}

fn progress_event(
    run_id: &str,
    suite: &str,
    target: &str,
    aggregate: &Aggregator,
    dispatch: &DispatchProgress,
    dispatch_done: bool,
    started: Instant,
) -> ProgressEvent {
    let total = aggregate.items_total();
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let done = aggregate.done();
    let rate = done as f64 / elapsed;
    ProgressEvent {
        run_id: run_id.to_string(),
        suite: suite.to_string(),
        target: target.to_string(),
        phase: if dispatch_done {
            RunPhase::Running
        } else {
            RunPhase::Dispatching
        },
        total,
        dispatched: dispatch.items.load(Ordering::Relaxed),
        done,
        failed: aggregate.failed(),
        items_per_s: rate,
        eta_s: (rate > 0.0).then(|| total.saturating_sub(done) as f64 / rate),
        ts_unix_ms: unix_ms(SystemTime::now()),
    }
}

async fn publish_progress(
    client: &async_nats::Client,
    subject: &str,
    event: &ProgressEvent,
    watch: Option<&watch::Sender<ProgressEvent>>,
) {
    if let Some(watch) = watch {
        let _ = watch.send(event.clone());
    }
    if let Ok(payload) = vigil_protocol::encode(event) {
        let _ = client
            .publish_with_headers(
                subject.to_string(),
                vigil_nats::headers::message_headers(&event.run_id),
                payload.into(),
            )
            .await;
    }
}

/// Publishes the summary, retrying while the cluster elects a leader of
/// `VIGIL_RUNS` (the message id makes a repeat a no-op), up to `deadline`.
pub(crate) async fn publish_summary(
    js: &jetstream::Context,
    summary: &RunSummary,
    deadline: Duration,
) -> Result<(), RunError> {
    let payload: bytes::Bytes = vigil_protocol::encode(summary).map_err(nats_err)?.into();
    let subject = subjects::run_summary(&summary.suite, &summary.target);
    vigil_nats::topology::retry_transient(deadline, subjects::STREAM_RUNS, || async {
        let publish = PublishMessage::build()
            .headers(vigil_nats::headers::message_headers(&summary.run_id))
            .message_id(format!("{}/summary", summary.run_id))
            .payload(payload.clone());
        js.send_publish(subject.clone(), publish)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    })
    .await?
    .map_err(nats_err)?;
    Ok(())
}

#[cfg(test)]
mod scheduled_run_id_tests {
    use super::scheduled_run_id;

    #[test]
    fn same_suite_target_date_same_id() {
        assert_eq!(
            scheduled_run_id("qa", "m", "2026-01-02"),
            scheduled_run_id("qa", "m", "2026-01-02")
        );
    }

    #[test]
    fn any_part_changes_the_id() {
        let base = scheduled_run_id("qa", "m", "2026-01-02");
        assert_ne!(base, scheduled_run_id("qa2", "m", "2026-01-02"));
        assert_ne!(base, scheduled_run_id("qa", "m2", "2026-01-02"));
        assert_ne!(base, scheduled_run_id("qa", "m", "2026-01-03"));
    }

    #[test]
    fn id_is_a_stable_uuid_v5() {
        // Pinned: a changed namespace or input format would make a re-fired
        // schedule start a second run instead of finding the first.
        let id = scheduled_run_id("qa", "m", "2026-01-02");
        assert_eq!(id, "3d63ec3a-14ae-59cb-98e2-6edcb63c7499");
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 5);
    }
}
