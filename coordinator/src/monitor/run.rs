//! The monitor's loop: batches of captures into jobs, results into windows
//! and drift detectors, closed windows into summaries.

use super::config::MonitorConfig;
use super::items::ItemBuilder;
use super::lease::Lease;
use super::state::{MonitorState, Pending, StateStore, WindowState, Windows};
use super::watch::{AppWatch, drift_alert};
use super::{MonitorError, window_run_id};
use crate::aggregate::{Aggregator, SummaryMeta};
use crate::dispatch::{DispatchProgress, encode_jobs, publish_job};
use crate::resume::{self, RunState, StateRecorder};
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, PullConsumer, pull, pull::OrderedConfig},
};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_nats::topology::{TopologyConfig, ensure_capture_stream, ensure_topology};
use vigil_protocol::{
    Capture, EndpointKind, ErrorKind, Item, Job, JobResult, TargetSpec, subjects,
};

/// What a monitor did, for its last log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorStats {
    /// Capture messages read.
    pub captures: u64,
    /// Captures sent to be scored.
    pub selected: u64,
    /// Captures the filter left out.
    pub filtered_out: u64,
    /// Captures the sample rate left out.
    pub sampled_out: u64,
    /// Capture messages that could not be decoded (skipped, counted).
    pub malformed: u64,
    /// Windows summarised.
    pub windows_closed: u64,
    /// Drift alerts published.
    pub alerts: u64,
}

/// A window this process follows: its aggregate and its results reader.
struct Live {
    agg: Aggregator,
    reader: tokio::task::JoinHandle<()>,
    recorder: StateRecorder,
    /// The item indexes of the jobs this process published.
    jobs: HashMap<u64, Range<u64>>,
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The durable consumer's name: `vigil-monitor-<name>`.
pub fn consumer_name(monitor: &str) -> String {
    format!("vigil-monitor-{}", subjects::sanitize_token(monitor))
}

/// Runs a monitor until `shutdown`.
pub async fn run(
    client: async_nats::Client,
    config: Arc<MonitorConfig>,
    topology: TopologyConfig,
    shutdown: CancellationToken,
) -> Result<MonitorStats, MonitorError> {
    let js = ensure_topology(&client, &topology, &config.pool).await?;
    ensure_capture_stream(&js, &topology).await?;
    let store = StateStore::open(&js, &config.name).await?;
    // Stopped by the caller, or by losing the lease to another monitor.
    let stop = shutdown.child_token();
    let lease = Lease::acquire(
        store.kv().clone(),
        &config.name,
        config.lease_period,
        stop.clone(),
    )
    .await?;
    let shutdown = stop;
    let mut state = store.load().await?;
    let mut stream = js
        .get_stream(subjects::STREAM_CAPTURE)
        .await
        .map_err(MonitorError::nats)?;
    let last_seq = stream
        .info()
        .await
        .map_err(MonitorError::nats)?
        .state
        .last_sequence;
    if state.highest_seq() > last_seq {
        // Written against another capture stream (a replaced server): its
        // sequences mean nothing here, and trusting them would ack captures
        // unscored. The capture consumer's position is the truth.
        tracing::warn!(monitor = %config.name, recorded_seq = state.highest_seq(), stream_last_seq = last_seq,
            "the recorded monitor state is past the end of VIGIL_CAPTURE (stale, from another server): starting fresh from the capture consumer's position");
        state = MonitorState::default();
    }
    let name = consumer_name(&config.name);
    let mut consumer: PullConsumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("vigil monitor {}", config.name)),
                filter_subject: match &config.filter.app {
                    Some(app) => subjects::capture(app),
                    None => subjects::CAPTURE_ALL.to_string(),
                },
                // One ack per batch, on its last message, after its jobs are published.
                ack_policy: AckPolicy::All,
                ack_wait: Duration::from_secs(300),
                ..Default::default()
            },
        )
        .await
        .map_err(MonitorError::nats)?;

    // A batch interrupted before its ack is rebuilt from the same captures.
    let mut replay: Option<(u64, u64)> = None;
    if let Some(p) = state.pending.take() {
        let acked = consumer
            .info()
            .await
            .map_err(MonitorError::nats)?
            .ack_floor
            .stream_sequence;
        if acked >= p.last_seq {
            tracing::info!(
                first_seq = p.first_seq,
                last_seq = p.last_seq,
                "the last batch was acked before the stop"
            );
        } else {
            tracing::info!(
                first_seq = p.first_seq,
                last_seq = p.last_seq,
                "the last batch was not acked before the stop: rebuilding it (its jobs keep their message ids)"
            );
            state.windows = p.before;
            state.through_seq = p.first_seq.saturating_sub(1);
            replay = Some((p.first_seq, p.last_seq));
        }
    }

    let mut m = Monitor {
        js: js.clone(),
        config: config.clone(),
        topology,
        builder: ItemBuilder::new(&config)?,
        store,
        state,
        lives: HashMap::new(),
        watches: HashMap::new(),
        stats: MonitorStats::default(),
        results_tx: None,
        max_payload: client.server_info().max_payload,
        dirty: false,
        shutdown: shutdown.clone(),
    };
    let (tx, mut rx) = mpsc::channel::<(String, JobResult)>(1024);
    m.results_tx = Some(tx);
    let windows: Vec<WindowState> = m.state.windows.all().cloned().collect();
    for w in &windows {
        m.follow(w).await;
    }
    m.save().await?;
    tracing::info!(monitor = %config.name, consumer = %name, open = m.state.windows.open.len(),
        closing = m.state.windows.closing.len(), through_seq = m.state.through_seq, "monitor following captures");

    if let Some((first, last)) = replay {
        // The interrupted batch, read by sequence: its messages are still
        // held by the stopped monitor's delivery, not redelivered until AckWait.
        let batch = read_range(&stream, &config.filter.app, first, last).await?;
        m.batch(batch, None, true).await?;
        m.state.through_seq = m.state.through_seq.max(last);
        m.save().await?;
    }
    loop {
        let fetched = tokio::select! {
            _ = shutdown.cancelled() => break,
            f = fetch(&consumer, config.batch, config.batch_wait) => f,
        };
        let step = async {
            let messages = match fetched {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot fetch captures; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Vec::new()
                }
            };
            if let Some(last) = messages.last() {
                let batch = messages.iter().map(CaptureMsg::from_message).collect();
                m.batch(batch, Some(last), false).await?;
            }
            while let Ok((run_id, result)) = rx.try_recv() {
                m.result(&run_id, &result).await;
            }
            m.windows_by_clock().await?;
            if m.dirty {
                m.save().await?;
            }
            Ok::<(), MonitorError>(())
        };
        match step.await {
            Ok(()) => {}
            // Stopped while waiting on NATS: what is unacked is redelivered.
            Err(e) if shutdown.is_cancelled() => {
                tracing::warn!(error = %e, "stopped while waiting on NATS");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    for (_, live) in m.lives.drain() {
        live.reader.abort();
    }
    if lease.lost() {
        // The state is the new holder's now.
        return Err(MonitorError::LeaseLost(config.name.clone()));
    }
    m.sync_watch();
    m.store.save_on_shutdown(&m.state).await;
    lease.release().await;
    tracing::info!(monitor = %config.name, stats = ?m.stats, "monitor stopped");
    Ok(m.stats)
}

/// A capture message as the batch needs it.
struct CaptureMsg {
    seq: u64,
    subject: String,
    payload: bytes::Bytes,
    /// When the stream stored it, Unix ms.
    stored_ms: u64,
}

impl CaptureMsg {
    fn from_message(msg: &jetstream::Message) -> CaptureMsg {
        let (seq, stored_ms) = msg
            .info()
            .map(|i| {
                (
                    i.stream_sequence,
                    unix_ms(i.published.unix_timestamp_nanos()),
                )
            })
            .unwrap_or((0, now_ms()));
        CaptureMsg {
            seq,
            subject: msg.subject.to_string(),
            payload: msg.payload.clone(),
            stored_ms,
        }
    }
}

/// Unix ms of a JetStream timestamp (before 1970: 0).
fn unix_ms(nanos: i128) -> u64 {
    (nanos / 1_000_000).max(0) as u64
}

/// The capture messages of stream sequences `first..=last` the consumer's
/// filter takes (those since removed by the stream's limits are gone).
async fn read_range(
    stream: &jetstream::stream::Stream,
    app: &Option<String>,
    first: u64,
    last: u64,
) -> Result<Vec<CaptureMsg>, MonitorError> {
    let wanted = app.as_ref().map(|a| subjects::capture(a));
    let mut out = Vec::new();
    for seq in first..=last {
        match stream.get_raw_message(seq).await {
            Ok(m) => {
                let subject = m.subject.to_string();
                if wanted.as_ref().is_none_or(|w| *w == subject) {
                    out.push(CaptureMsg {
                        seq,
                        subject,
                        payload: m.payload,
                        stored_ms: unix_ms(m.time.unix_timestamp_nanos()),
                    });
                }
            }
            Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {}
            Err(e) => return Err(MonitorError::nats(e)),
        }
    }
    Ok(out)
}

/// One pull of up to `max` messages, waiting at most `wait` for them.
async fn fetch(
    consumer: &PullConsumer,
    max: usize,
    wait: Duration,
) -> Result<Vec<jetstream::Message>, String> {
    let mut batch = consumer
        .fetch()
        .max_messages(max)
        .expires(wait)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(max);
    while let Some(msg) = batch.next().await {
        match msg {
            Ok(msg) => out.push(msg),
            Err(e) => {
                return if out.is_empty() {
                    Err(e.to_string())
                } else {
                    Ok(out)
                };
            }
        }
    }
    Ok(out)
}

struct Monitor {
    js: jetstream::Context,
    config: Arc<MonitorConfig>,
    topology: TopologyConfig,
    builder: ItemBuilder,
    store: StateStore,
    state: MonitorState,
    lives: HashMap<String, Live>,
    watches: HashMap<String, AppWatch>,
    stats: MonitorStats,
    results_tx: Option<mpsc::Sender<(String, JobResult)>>,
    max_payload: usize,
    dirty: bool,
    /// Stops retries of state writes.
    shutdown: CancellationToken,
}

impl Monitor {
    /// Copies the drift phases into the state.
    fn sync_watch(&mut self) {
        for (app, w) in &self.watches {
            self.state.watch.insert(app.clone(), w.phases());
        }
    }

    async fn save(&mut self) -> Result<(), MonitorError> {
        self.sync_watch();
        self.store.save(&self.state, &self.shutdown).await?;
        self.dirty = false;
        Ok(())
    }

    /// Starts following a window: its aggregate, its results (replayed from
    /// the start of its subject) and its run state.
    async fn follow(&mut self, w: &WindowState) {
        if self.lives.contains_key(&w.run_id) {
            return;
        }
        let agg = Aggregator::new(
            self.config.window.max_items,
            self.config.scorers.iter().map(|s| s.name.clone()).collect(),
        );
        let tx = self.results_tx.clone().expect("results channel");
        let reader = tokio::spawn(read_results(self.js.clone(), w.run_id.clone(), tx));
        let mut recorder = StateRecorder::new(
            &self.js,
            &w.run_id,
            RunState {
                suite: self.config.name.clone(),
                target: w.app.clone(),
                status: resume::STATUS_RUNNING.into(),
                started_at_unix_ms: w.start_unix_ms,
                ..Default::default()
            },
        )
        .await;
        recorder.flush().await;
        self.lives.insert(
            w.run_id.clone(),
            Live {
                agg,
                reader,
                recorder,
                jobs: HashMap::new(),
            },
        );
    }

    /// One batch of capture messages: selected captures become items of
    /// their app's window, the assignment is recorded, the jobs published,
    /// the batch acked (its last message; the consumer acks all before it).
    /// `replaying`: the batch a stopped monitor had recorded and not acked;
    /// its jobs whose results are already in are not published again.
    async fn batch(
        &mut self,
        messages: Vec<CaptureMsg>,
        ack: Option<&jetstream::Message>,
        replaying: bool,
    ) -> Result<(), MonitorError> {
        let Some(last_seq) = messages.last().map(|m| m.seq) else {
            return Ok(());
        };
        // The first capture not already in a published batch (redeliveries come first).
        let first_seq = messages
            .iter()
            .map(|m| m.seq)
            .find(|s| *s > self.state.through_seq)
            .unwrap_or(0);
        let before = self.state.windows.clone();
        let now = now_ms();
        let mut items: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        let mut new_windows = Vec::new();
        let mut selected = 0u64;
        for msg in &messages {
            let seq = msg.seq;
            if seq <= self.state.through_seq {
                continue; // a redelivery of a capture already in a published batch
            }
            self.stats.captures += 1;
            let capture = match vigil_protocol::decode::<Capture>(&msg.payload) {
                Ok(c) if !c.capture_id.is_empty() && !c.app.is_empty() => c,
                Ok(_) | Err(_) => {
                    self.stats.malformed += 1;
                    tracing::warn!(subject = %msg.subject, seq, "malformed capture skipped (not a Capture, or no capture_id or app)");
                    continue;
                }
            };
            if !self.config.filter.matches(&capture) {
                self.stats.filtered_out += 1;
                continue;
            }
            if !vigil_protocol::capture::sampled(&capture.request_id, self.config.sample) {
                self.stats.sampled_out += 1;
                continue;
            }
            let time = capture_time_ms(&capture, msg.stored_ms);
            let (w, opened) = self
                .state
                .windows
                .assign(&self.config, &capture.app, time, now);
            if let Some(opened) = opened {
                new_windows.push(opened);
            }
            let item = self.builder.item(&capture, w.items);
            w.items += 1;
            items.entry(w.run_id.clone()).or_default().push(item);
            if w.items >= self.config.window.max_items {
                // Full: closed now, so its summary need not wait for another capture.
                self.state.windows.close(&capture.app, now);
            }
            selected += 1;
        }
        self.stats.selected += selected;
        // Encode first (job indexes and items fixed), then record, then publish.
        let mut jobs = Vec::new();
        for (run_id, items) in items {
            let w = self
                .state
                .windows
                .find(&run_id)
                .expect("a window that was just assigned");
            let template = self.template(w);
            let mut next = w.jobs;
            for (job_index, payload, range) in encode_jobs(
                &template,
                items,
                &mut next,
                self.max_payload.saturating_sub(4096),
            )? {
                jobs.push((run_id.clone(), job_index, payload, range));
            }
            if let Some(w) = self.state.windows.find_mut(&run_id) {
                w.jobs = next;
            }
        }
        self.state.through_seq = self.state.through_seq.max(last_seq);
        if !jobs.is_empty() {
            self.state.pending = Some(Pending {
                first_seq,
                last_seq,
                before,
            });
        }
        self.save().await?;
        for w in &new_windows {
            self.follow(w).await;
        }
        let subject = subjects::jobs(&self.config.pool);
        let headers = vigil_nats::headers::message_headers(&self.config.name);
        let progress = DispatchProgress::default();
        for (run_id, job_index, payload, range) in jobs {
            let count = range.end - range.start;
            if replaying && self.has_result(&run_id, job_index).await {
                tracing::info!(%run_id, job_index, "job of the rebuilt batch already evaluated: not published again");
                continue;
            }
            publish_job(
                &self.js, &subject, &headers, &run_id, job_index, payload, count, &progress,
            )
            .await?;
            if let Some(live) = self.lives.get_mut(&run_id) {
                live.jobs.insert(job_index, range);
            }
        }
        // Ack-all on the last message: the whole batch at once. (A rebuilt
        // batch is acked with the next one.)
        let mut acked = ack.is_none();
        for attempt in 1..=30 {
            let Some(last_msg) = ack else { break };
            match last_msg.double_ack().await {
                Ok(()) => {
                    acked = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "cannot ack a batch of captures; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        if !acked {
            return Err(MonitorError::Nats(
                "a batch of captures could not be acked".into(),
            ));
        }
        if self.state.pending.take().is_some() {
            self.save().await?;
        }
        if selected > 0 || self.stats.captures.is_multiple_of(1000) {
            tracing::info!(selected, first_seq, last_seq, duplicates = progress.duplicates.load(std::sync::atomic::Ordering::Relaxed),
                stats = ?self.stats, "batch of captures sent to be scored");
        }
        Ok(())
    }

    /// Whether `VIGIL_RESULTS` holds the result of this job.
    async fn has_result(&self, run_id: &str, job_index: u64) -> bool {
        match self.js.get_stream(subjects::STREAM_RESULTS).await {
            Ok(stream) => stream
                .get_last_raw_message_by_subject(&subjects::result(run_id, job_index))
                .await
                .is_ok(),
            Err(_) => false,
        }
    }

    fn template(&self, w: &WindowState) -> Job {
        Job {
            run_id: w.run_id.clone(),
            job_index: 0,
            suite: self.config.name.clone(),
            target: TargetSpec {
                name: w.app.clone(),
                kind: EndpointKind::Recorded,
                ..Default::default()
            },
            scorers: self.builder.scorer_specs(),
            items: Vec::new(),
            deadline_unix_ms: None,
            keep_output_chars: self.config.keep_output_chars,
            cache: None,
            samples: 0,
        }
    }

    /// One job's results: into its window's aggregate and, item by item,
    /// into the app's drift detectors.
    async fn result(&mut self, run_id: &str, result: &JobResult) {
        let Some(live) = self.lives.get_mut(run_id) else {
            return; // a window already summarised
        };
        let fresh: Vec<usize> = result
            .items
            .iter()
            .enumerate()
            .filter(|(_, i)| !live.agg.is_counted(i.index))
            .map(|(n, _)| n)
            .collect();
        live.agg.add_job_result(result);
        if let Some(error) = &result.error
            && let Some(range) = live.jobs.get(&result.job_index)
        {
            let ids = range.clone().map(|i| (i, String::new()));
            live.agg.fail_items(ids, error.kind.clone(), &error.message);
        }
        if !self.config.drift.enabled || fresh.is_empty() {
            return;
        }
        let Some(app) = self.state.windows.find(run_id).map(|w| w.app.clone()) else {
            return;
        };
        let watch = self
            .watches
            .entry(app.clone())
            .or_insert_with(|| AppWatch::new(&self.config.drift, self.state.watch.get(&app)));
        let mut alarms = Vec::new();
        for n in fresh {
            let item = &result.items[n];
            alarms.extend(watch.observe(item, &self.config.drift, &self.config.metrics));
        }
        if alarms.is_empty() {
            return;
        }
        self.dirty = true;
        for alarm in alarms {
            let alert = drift_alert(&self.config.name, &app, run_id, &alarm);
            let id = format!(
                "drift/{}/{}/{}/{}",
                self.config.name,
                app,
                alarm.metric,
                alarm.example_ids.first().map_or("", |s| s.as_str())
            );
            tracing::warn!(monitor = %self.config.name, %app, metric = %alarm.metric, detector = ?alarm.detector,
                reference_mean = alarm.reference_mean, reference_count = alarm.reference_count,
                recent_mean = alarm.recent_mean, recent_count = alarm.recent_count,
                change_point = alarm.change_point, detected_at = alarm.detected_at,
                examples = ?alarm.example_ids, "drift alarm");
            match crate::alerts::publish_one(&self.js, &subjects::alerts(&app), &alert, &id).await {
                Ok(()) => self.stats.alerts += 1,
                Err(e) => tracing::error!(error = %e, "cannot publish a drift alert"),
            }
        }
    }

    /// Closes open windows whose span ended more than the grace ago, and
    /// summarises closed windows whose results are all in (or whose results
    /// timeout passed: the missing items fail as `deadline`).
    async fn windows_by_clock(&mut self) -> Result<(), MonitorError> {
        let now = now_ms();
        let grace = self.config.window.grace.as_millis() as u64;
        if self.state.windows.close_ended(now, grace) {
            self.dirty = true;
        }
        let timeout = self.config.window.results_timeout.as_millis() as u64;
        let mut done = Vec::new();
        for w in &self.state.windows.closing {
            let Some(live) = self.lives.get_mut(&w.run_id) else {
                continue;
            };
            if live.agg.done() >= w.items {
                done.push(w.clone());
            } else if w.closed_unix_ms.is_some_and(|c| now >= c + timeout) {
                let missing: Vec<(u64, String)> = live
                    .agg
                    .missing()
                    .take_while(|i| *i < w.items)
                    .map(|i| (i, String::new()))
                    .collect();
                let n = live.agg.fail_items(
                    missing,
                    ErrorKind::Deadline,
                    "the window's results timeout passed before the item was scored",
                );
                tracing::warn!(run_id = %w.run_id, items = n, "window results timeout: missing items counted as failed");
                done.push(w.clone());
            }
        }
        for w in done {
            self.summarise(&w).await?;
            self.state.windows.closing.retain(|c| c.run_id != w.run_id);
            self.state.windows_closed += 1;
            self.stats.windows_closed += 1;
            self.dirty = true;
        }
        Ok(())
    }

    async fn summarise(&mut self, w: &WindowState) -> Result<(), MonitorError> {
        let Some(mut live) = self.lives.remove(&w.run_id) else {
            return Ok(());
        };
        live.reader.abort();
        live.agg.set_items_total(w.items);
        let meta = SummaryMeta {
            run_id: w.run_id.clone(),
            suite: self.config.name.clone(),
            target: w.app.clone(),
            model: live
                .agg
                .response_models()
                .into_iter()
                .next()
                .unwrap_or_default(),
            started_at: UNIX_EPOCH + Duration::from_millis(w.start_unix_ms),
            finished_at: SystemTime::now(),
        };
        let mut summary = live.agg.summary(&meta);
        crate::gates::apply(&[], None, &mut summary);
        crate::run::publish_summary(&self.js, &summary, self.topology.api_deadline)
            .await
            .map_err(|e| MonitorError::Nats(e.to_string()))?;
        let mut state = live.recorder.state().clone();
        state.items_total = w.items;
        state.dispatched_jobs = w.jobs;
        state.dispatch_done = true;
        state.status = resume::STATUS_FINISHED.into();
        let mut recorder = StateRecorder::new(&self.js, &w.run_id, state).await;
        recorder.flush().await;
        tracing::info!(monitor = %self.config.name, app = %w.app, run_id = %w.run_id, items = w.items,
            scored = summary.items_scored, failed = summary.items_failed,
            subject = %subjects::run_summary(&self.config.name, &w.app), "window summarised");
        Ok(())
    }
}

/// The capture's time: its `time` field, else when the stream stored it.
fn capture_time_ms(capture: &Capture, stored_ms: u64) -> u64 {
    if let Ok(t) = humantime::parse_rfc3339_weak(&capture.time)
        && let Ok(d) = t.duration_since(UNIX_EPOCH)
    {
        return d.as_millis() as u64;
    }
    stored_ms
}

/// Forwards the results of `run_id` (from the first) to the monitor.
async fn read_results(
    js: jetstream::Context,
    run_id: String,
    tx: mpsc::Sender<(String, JobResult)>,
) {
    loop {
        let consumer = async {
            js.get_stream(subjects::STREAM_RESULTS)
                .await
                .map_err(|e| e.to_string())?
                .create_consumer(OrderedConfig {
                    filter_subject: subjects::results_of_run(&run_id),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?
                .messages()
                .await
                .map_err(|e| e.to_string())
        };
        let mut messages = match consumer.await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%run_id, error = %e, "cannot read the window's results; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(msg) = messages.next().await {
            let Ok(msg) = msg else { continue };
            match vigil_protocol::decode::<JobResult>(&msg.payload) {
                Ok(result) if result.run_id == run_id => {
                    if tx.send((run_id.clone(), result)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(subject = %msg.subject, error = %e, "malformed result ignored")
                }
            }
        }
    }
}

impl Windows {
    /// The open window of `app` for a capture at `time` (ms), opening one
    /// (and closing the current) when the capture is past the current's end
    /// or the current is full. Returns the window and, if it was opened, a copy.
    pub(super) fn assign(
        &mut self,
        config: &MonitorConfig,
        app: &str,
        time: u64,
        now: u64,
    ) -> (&mut WindowState, Option<WindowState>) {
        let duration = (config.window.duration.as_millis() as u64).max(1);
        let needs_new = match self.open.get(app) {
            None => true,
            Some(w) => w.items >= config.window.max_items || time >= w.end_unix_ms,
        };
        let mut opened = None;
        if needs_new {
            self.close(app, now);
            let mut start = time / duration * duration;
            let mut part = 0;
            if let Some(&(last_start, last_part)) = self.last.get(app)
                && start <= last_start
            {
                // The same span again (a full window, or a late capture after a close).
                start = last_start;
                part = last_part + 1;
            }
            let w = WindowState {
                run_id: window_run_id(&config.name, app, start, part),
                app: app.to_string(),
                start_unix_ms: start,
                end_unix_ms: start + duration,
                part,
                items: 0,
                jobs: 0,
                opened_unix_ms: now,
                closed_unix_ms: None,
            };
            opened = Some(w.clone());
            self.open.insert(app.to_string(), w);
        }
        (self.open.get_mut(app).expect("just opened"), opened)
    }

    /// Closes the open windows that ended more than `grace` ms before `now`;
    /// whether any closed.
    pub(super) fn close_ended(&mut self, now: u64, grace: u64) -> bool {
        let ended: Vec<String> = self
            .open
            .iter()
            .filter(|(_, w)| now >= w.end_unix_ms + grace)
            .map(|(app, _)| app.clone())
            .collect();
        for app in &ended {
            self.close(app, now);
        }
        !ended.is_empty()
    }

    /// Closes the open window of `app` to new captures, if it has one.
    pub(super) fn close(&mut self, app: &str, now: u64) {
        if let Some(mut w) = self.open.remove(app) {
            w.closed_unix_ms = Some(now);
            self.last.insert(app.to_string(), (w.start_unix_ms, w.part));
            self.closing.push(w);
        }
    }
}
