//! The capture queue and its publisher task. The response path only ever
//! calls [`CaptureQueue::offer`], which never waits: a full queue drops the
//! exchange and counts it. The publisher parses, redacts, encodes and
//! publishes; a publish that fails or outlasts its timeout is dropped and
//! counted too. Nothing here can slow or fail a user's request.

use crate::assemble::{self, Exchange};
use crate::metrics::Metrics;
use crate::redact::Redactor;
use async_nats::jetstream;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_nats::topology::TopologyConfig;
use vigil_nats::{headers, topology};
use vigil_protocol::{codec, subjects};

/// Why a capture was dropped (the `reason` label of `vigil_proxy_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full (the publisher is behind: NATS slow or down).
    QueueFull,
    /// NATS refused or failed the publish (no stream, stream full, disconnected).
    Nats,
    /// No answer from NATS within the publish timeout.
    Timeout,
    /// The capture could not be encoded.
    Encode,
    /// The encoded capture is over the server's max payload.
    TooLarge,
}

impl DropReason {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Nats => "nats_error",
            DropReason::Timeout => "timeout",
            DropReason::Encode => "encode",
            DropReason::TooLarge => "too_large",
        }
    }
}

/// The sending side of the capture queue (cheap to clone).
#[derive(Clone)]
pub struct CaptureQueue {
    tx: mpsc::Sender<Exchange>,
    metrics: Metrics,
}

impl CaptureQueue {
    /// Enqueues `ex` without waiting; drops and counts it when the queue is full.
    pub fn offer(&self, ex: Exchange) {
        match self.tx.try_send(ex) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
            }
            Err(_) => self.metrics.dropped(DropReason::QueueFull),
        }
    }
}

/// Settings of the publisher.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// The app (subject `vigil.capture.<app>`); [`crate::run`] sets it from
    /// [`crate::ProxyConfig::app`].
    pub app: String,
    /// Most exchanges waiting to be published.
    pub queue_capacity: usize,
    /// Most publishes awaiting their JetStream ack.
    pub max_in_flight: usize,
    /// How long one publish (send and ack) may take before it is dropped.
    pub publish_timeout: Duration,
    /// Stream settings for `VIGIL_CAPTURE` (created when missing).
    pub topology: TopologyConfig,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            app: "default".into(),
            queue_capacity: 10_000,
            max_in_flight: 512,
            publish_timeout: Duration::from_secs(2),
            topology: TopologyConfig::default(),
        }
    }
}

/// Creates the queue and spawns its publisher; the task drains what is
/// queued and ends after `shutdown` (bounded by the publish timeout).
pub fn spawn(
    client: async_nats::Client,
    cfg: PublishConfig,
    redactor: Redactor,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> (CaptureQueue, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
    let queue = CaptureQueue {
        tx,
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(publish_loop(client, cfg, redactor, metrics, rx, shutdown));
    (queue, task)
}

/// Creates `VIGIL_CAPTURE` when it is missing, retrying until it exists (NATS
/// may be down at start; captures published meanwhile are dropped and counted).
async fn ensure_stream(
    js: jetstream::Context,
    cfg: TopologyConfig,
    stop: CancellationToken,
    ready: tokio::sync::watch::Sender<bool>,
) {
    loop {
        match topology::ensure_capture_stream(&js, &cfg).await {
            Ok(()) => {
                let _ = ready.send(true);
                return;
            }
            Err(e) => tracing::warn!(error = %e, "capture stream not ready; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

type Ack = Result<(), DropReason>;

async fn publish_loop(
    client: async_nats::Client,
    cfg: PublishConfig,
    redactor: Redactor,
    metrics: Metrics,
    mut rx: mpsc::Receiver<Exchange>,
    shutdown: CancellationToken,
) {
    let js = jetstream::new(client.clone());
    // Captures taken while the stream is still being made wait for it (at
    // most one publish timeout each, off the response path) instead of being
    // published into nothing and dropped.
    let (ready_tx, mut ready) = tokio::sync::watch::channel(false);
    tokio::spawn(ensure_stream(
        js.clone(),
        cfg.topology.clone(),
        shutdown.clone(),
        ready_tx,
    ));
    let subject = subjects::capture(&cfg.app);
    let mut acks: FuturesUnordered<futures::future::BoxFuture<'static, Ack>> =
        FuturesUnordered::new();
    let account = |r: Ack| match r {
        Ok(()) => {
            metrics.captured.inc();
        }
        Err(reason) => metrics.dropped(reason),
    };
    loop {
        let ex = tokio::select! {
            biased;
            Some(r) = acks.next(), if !acks.is_empty() => { account(r); continue; }
            ex = rx.recv(), if acks.len() < cfg.max_in_flight => ex,
            _ = shutdown.cancelled(), if rx.is_empty() => None,
        };
        let Some(ex) = ex else { break };
        metrics.queue_depth.dec();
        let capture = assemble::capture(&cfg.app, ex, &redactor);
        let payload = match codec::encode(&capture) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a capture");
                metrics.dropped(DropReason::Encode);
                continue;
            }
        };
        let max_payload = client.server_info().max_payload;
        if max_payload > 0 && payload.len() > max_payload {
            metrics.dropped(DropReason::TooLarge);
            continue;
        }
        let hdrs = headers::capture_headers(&capture.capture_id);
        let timeout = cfg.publish_timeout;
        if !*ready.borrow() {
            let _ = tokio::time::timeout(timeout, ready.wait_for(|r| *r)).await;
        }
        let sent = tokio::time::timeout(
            timeout,
            js.publish_with_headers(subject.clone(), hdrs, payload.into()),
        )
        .await;
        match sent {
            Ok(Ok(ack)) => acks.push(Box::pin(async move {
                match tokio::time::timeout(timeout, ack).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(_)) => Err(DropReason::Nats),
                    Err(_) => Err(DropReason::Timeout),
                }
            })),
            Ok(Err(_)) => metrics.dropped(DropReason::Nats),
            Err(_) => metrics.dropped(DropReason::Timeout),
        }
    }
    while let Some(r) = acks.next().await {
        account(r);
    }
}
