//! The measurements: each starts its own stub (and nats-server where it
//! needs one) so scenarios do not disturb each other, and reports what the
//! processes involved spent.

use crate::loadgen;
use crate::procfs::{self, ProcWatch, Usage};
use crate::spawn::{self, StubSpec, SuiteSpec};
use crate::wrk::{self, WrkDrive};
use anyhow::{Context, anyhow, bail};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};

/// How often processes are sampled.
const POLL: Duration = Duration::from_millis(50);

/// The stub driven directly.
#[derive(Debug, Clone)]
pub struct Ceiling {
    /// The drive.
    pub drive: loadgen::Drive,
    /// Stub CPU seconds during the drive.
    pub stub_cpu_s: f64,
    /// Load generator CPU seconds during the drive (this process).
    pub client_cpu_s: f64,
}

/// Drives a fresh stub with `concurrency` requests in flight, after a
/// warm-up (connections, allocator, page cache) of a tenth as many.
pub async fn ceiling(
    vigil: &Path,
    spec: StubSpec,
    concurrency: usize,
    total: u64,
) -> anyhow::Result<Ceiling> {
    let stub = spawn::stub(vigil, spec).await?;
    let warmup = (total / 10).clamp(concurrency as u64, 2_000.max(concurrency as u64));
    loadgen::drive(&stub.url, concurrency, warmup).await;
    let stub_before = procfs::sample(stub.pid()).unwrap_or_default();
    let client_before = procfs::self_cpu_s();
    let drive = loadgen::drive(&stub.url, concurrency, total).await;
    let stub_after = procfs::sample(stub.pid()).unwrap_or_default();
    let client_cpu_s = procfs::self_cpu_s() - client_before;
    stub.terminate().await?;
    if drive.errors > 0 {
        bail!("{} of {total} direct requests failed", drive.errors);
    }
    Ok(Ceiling {
        drive,
        stub_cpu_s: procfs::ticks_to_s(stub_after.cpu_ticks - stub_before.cpu_ticks),
        client_cpu_s,
    })
}

/// The stub under `wrk`.
#[derive(Debug, Clone)]
pub struct WrkCeiling {
    /// What wrk measured.
    pub drive: WrkDrive,
    /// Stub CPU seconds during the drive.
    pub stub_cpu_s: f64,
}

/// Drives a fresh zero-latency stub with `wrk` (2 threads, `connections`
/// connections, `seconds`); `None` when wrk is not installed.
pub async fn wrk_ceiling(
    vigil: &Path,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Option<WrkCeiling>> {
    if !wrk::installed() {
        return Ok(None);
    }
    let dir = tempfile::tempdir()?;
    let stub = spawn::stub(vigil, StubSpec::default()).await?;
    // Warm-up, as for the tokio client.
    loadgen::drive(&stub.url, connections, 2_000).await;
    let before = procfs::sample(stub.pid()).unwrap_or_default();
    let drive = wrk::drive(dir.path(), &stub.url, 2, connections, seconds).await;
    let after = procfs::sample(stub.pid()).unwrap_or_default();
    stub.terminate().await?;
    let Some(drive) = drive? else {
        return Ok(None);
    };
    if drive.non_2xx > 0 {
        bail!(
            "wrk: {} of {} answers were not 2xx",
            drive.non_2xx,
            drive.requests
        );
    }
    Ok(Some(WrkCeiling {
        drive,
        stub_cpu_s: procfs::ticks_to_s(after.cpu_ticks - before.cpu_ticks),
    }))
}

/// What a `vigil run` measured.
#[derive(Debug, Clone)]
pub struct RunMeasure {
    /// Items in the dataset.
    pub items: u64,
    /// Items that ended failed (should be 0).
    pub failed: u64,
    /// The run's own duration (from its summary): dispatch to last result.
    pub duration_s: f64,
    /// From spawning `vigil run` to its exit.
    pub wall_s: f64,
    /// CPU and peak RSS by process label.
    pub usage: Usage,
    /// From spawning `vigil run` to the first result stored in
    /// `VIGIL_RESULTS` (embedded runs without the cache only).
    pub first_result_s: Option<f64>,
    /// Completion requests the stub was sent during the run.
    pub stub_calls: u64,
}

impl RunMeasure {
    /// Items per second over the run's own duration.
    pub fn per_s(&self) -> f64 {
        self.items as f64 / self.duration_s.max(1e-9)
    }

    /// Items per second by wall clock: from spawning `vigil run` to its exit.
    pub fn wall_per_s(&self) -> f64 {
        self.items as f64 / self.wall_s.max(1e-9)
    }

    /// CPU microseconds per item of a label.
    pub fn cpu_us(&self, label: &str) -> f64 {
        self.usage.cpu_s(label) * 1e6 / self.items.max(1) as f64
    }
}

fn summary_numbers(dir: &Path) -> anyhow::Result<(u64, u64, f64, String)> {
    let s = spawn::read_summary(dir)?;
    let get = |k: &str| s.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Ok((
        get("items_total"),
        get("items_failed"),
        s.get("duration_s")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0),
        s.get("run_id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string(),
    ))
}

/// Whether a run may use the response cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// `vigil run --no-cache`.
    Off,
    /// `vigil run --cache`.
    On,
}

/// A directory with a dataset of distinct items and a suite over it.
struct Workdir {
    dir: tempfile::TempDir,
    suite: std::path::PathBuf,
}

fn workdir(items: u64, spec: SuiteSpec) -> anyhow::Result<Workdir> {
    workdir_of(0..items, spec)
}

fn workdir_of(items: std::ops::Range<u64>, spec: SuiteSpec) -> anyhow::Result<Workdir> {
    let dir = tempfile::tempdir()?;
    spawn::write_items(&dir.path().join("dataset.jsonl"), items)?;
    let suite = spawn::write_suite(dir.path(), &spec)?;
    Ok(Workdir { dir, suite })
}

/// One `vigil run --workers 1 --concurrency C` in embedded mode (its own
/// nats-server, store in `state`) against a running stub.
async fn embedded_once(
    vigil: &Path,
    work: &Workdir,
    stub: &spawn::Stub,
    concurrency: usize,
    cache: Cache,
    state: &Path,
    first_result: bool,
) -> anyhow::Result<RunMeasure> {
    let watch = ProcWatch::start(POLL);
    watch.track(stub.pid(), "stub", false);
    let spawned_at = SystemTime::now();
    let started = Instant::now();
    let run = spawn::run(
        vigil,
        work.dir.path(),
        &work.suite,
        &[
            "--workers".into(),
            "1".into(),
            "--concurrency".into(),
            concurrency.to_string(),
            match cache {
                Cache::Off => "--no-cache".into(),
                Cache::On => "--cache".into(),
            },
            "--state-dir".into(),
            state.display().to_string(),
        ],
    )?;
    watch.track(run.pid, "vigil", true);
    run.wait_ok(Duration::from_secs(1800)).await?;
    let wall_s = started.elapsed().as_secs_f64();
    let usage = watch.finish();
    let (total, failed, duration_s, run_id) = summary_numbers(work.dir.path())?;
    let first_result_s = if first_result {
        Some(
            first_result_after(&state.join("nats"), &run_id, spawned_at)
                .await
                .context("reading the first result's timestamp from the embedded store")?,
        )
    } else {
        None
    };
    Ok(RunMeasure {
        items: total,
        failed,
        duration_s,
        wall_s,
        usage,
        first_result_s,
        stub_calls: 0,
    })
}

/// A fresh zero-latency stub, a workdir of `items` distinct items whose
/// suite points at it, and where an embedded run keeps its store.
async fn zero_latency_setup(
    vigil: &Path,
    items: u64,
    concurrency: usize,
    shard_size: Option<usize>,
) -> anyhow::Result<(spawn::Stub, Workdir, std::path::PathBuf)> {
    let stub = spawn::stub(vigil, StubSpec::default()).await?;
    let work = workdir(
        items,
        SuiteSpec {
            name: "bench",
            base_url: stub.url.clone(),
            max_concurrency: concurrency,
            shard_size,
        },
    )?;
    let state = work.dir.path().join("state");
    Ok((stub, work, state))
}

/// `vigil run --workers 1 --no-cache` in embedded mode against a fresh
/// zero-latency stub, over `items` distinct items; also the time to the
/// first stored result. Fails unless the stub was called once per item.
pub async fn embedded(
    vigil: &Path,
    items: u64,
    concurrency: usize,
    shard_size: Option<usize>,
) -> anyhow::Result<RunMeasure> {
    let (stub, work, state) = zero_latency_setup(vigil, items, concurrency, shard_size).await?;
    let mut m = embedded_once(vigil, &work, &stub, concurrency, Cache::Off, &state, true).await;
    let calls = stub.terminate().await?;
    if let Ok(m) = &mut m {
        m.stub_calls = calls;
        if calls < m.items {
            bail!("the stub answered {calls} calls for {} items", m.items);
        }
    }
    m
}

/// The cache's runs on one store ([`cached_runs`]).
#[derive(Debug, Clone)]
pub struct CacheRuns {
    /// The cold run on a fresh store: every lookup a miss, every answer written.
    pub cold: RunMeasure,
    /// The same run again: every item answered from the cache.
    pub warm: RunMeasure,
    /// As many other prompts on that store (cold for them, the store
    /// holding the first run's answers for the same target).
    pub other: RunMeasure,
}

/// The cache's costs, on one fresh zero-latency stub and one store: a cold
/// run with the cache on (every lookup a miss, every answer written), the
/// same run again (every item a hit), then a run of as many other prompts
/// (cold again, on a store that holds answers of the same target). Fails
/// unless the stub was called exactly once per item of the two cold runs,
/// i.e. not at all by the re-run.
pub async fn cached_runs(
    vigil: &Path,
    items: u64,
    concurrency: usize,
    shard_size: Option<usize>,
) -> anyhow::Result<CacheRuns> {
    let (stub, work, state) = zero_latency_setup(vigil, items, concurrency, shard_size).await?;
    let runs = async {
        let cold =
            embedded_once(vigil, &work, &stub, concurrency, Cache::On, &state, false).await?;
        let warm =
            embedded_once(vigil, &work, &stub, concurrency, Cache::On, &state, false).await?;
        let others = workdir_of(
            items..2 * items,
            SuiteSpec {
                // Not the first run's suite: like it, this run has no
                // earlier run to compare with (that comparison is not the
                // cache's cost).
                name: "bench-other-prompts",
                base_url: stub.url.clone(),
                max_concurrency: concurrency,
                shard_size,
            },
        )?;
        let other =
            embedded_once(vigil, &others, &stub, concurrency, Cache::On, &state, false).await?;
        Ok::<_, anyhow::Error>(CacheRuns { cold, warm, other })
    }
    .await;
    let calls = stub.terminate().await?;
    let mut runs = runs?;
    if calls != runs.cold.items + runs.other.items {
        bail!(
            "cache on: the stub answered {calls} calls for two cold runs of {} and {} items and a \
             re-run (which calls it 0 times)",
            runs.cold.items,
            runs.other.items
        );
    }
    runs.cold.stub_calls = runs.cold.items;
    runs.other.stub_calls = runs.other.items;
    runs.warm.stub_calls = 0;
    Ok(runs)
}

/// Opens the store an embedded run left behind and returns how long after
/// `since` the server stored the run's first result.
async fn first_result_after(store: &Path, run_id: &str, since: SystemTime) -> anyhow::Result<f64> {
    let server = NatsServer::start(NatsServerConfig {
        store_dir: Some(store.to_path_buf()),
        ..Default::default()
    })
    .await?;
    let client = async_nats::connect(server.url()).await?;
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(vigil_protocol::subjects::STREAM_RESULTS)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let first = stream
        .get_first_raw_message_by_subject(vigil_protocol::subjects::results_of_run(run_id), 1)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let stored_ns = first.time.unix_timestamp_nanos();
    let since_ns = since.duration_since(UNIX_EPOCH)?.as_nanos() as i128;
    Ok((stored_ns - since_ns) as f64 / 1e9)
}

/// A run with separate processes: a testkit nats-server, `vigil run --nats
/// URL --workers 0` as the coordinator, and `vigil worker` processes.
#[derive(Debug, Clone)]
pub struct Separate {
    /// Dataset size.
    pub items: u64,
    /// Stub latency, ms.
    pub latency_ms: u64,
    /// Worker processes.
    pub workers: usize,
    /// `--concurrency` of each worker.
    pub worker_concurrency: usize,
    /// The target's `max_concurrency`.
    pub max_concurrency: usize,
    /// Items per job (`None`: the run chooses).
    pub shard_size: Option<usize>,
    /// The stub's `--slots` (a backend capacity of slots / latency).
    pub slots: Option<usize>,
}

/// Runs a [`Separate`] scenario.
pub async fn separate(vigil: &Path, spec: &Separate) -> anyhow::Result<RunMeasure> {
    let nats = NatsServer::start(NatsServerConfig::default()).await?;
    let stub = spawn::stub(
        vigil,
        StubSpec {
            latency_ms: spec.latency_ms,
            slots: spec.slots,
        },
    )
    .await?;
    let url = stub.url.clone();
    let work = workdir(
        spec.items,
        SuiteSpec {
            name: "bench",
            base_url: url.clone(),
            max_concurrency: spec.max_concurrency,
            shard_size: spec.shard_size,
        },
    )?;
    let (dir, suite) = (&work.dir, &work.suite);
    let watch = ProcWatch::start(POLL);
    watch.track(stub.pid(), "stub", false);
    if let Some(pid) = nats.pid() {
        watch.track(pid, "nats-server", false);
    }
    let mut workers = Vec::new();
    for i in 0..spec.workers {
        let w = spawn::worker(
            vigil,
            dir.path(),
            i,
            &nats.url(),
            spec.worker_concurrency,
            &url,
        )?;
        watch.track(w.pid, "worker", false);
        workers.push(w);
    }
    let started = Instant::now();
    let run = spawn::run(
        vigil,
        dir.path(),
        suite,
        &[
            "--nats".into(),
            nats.url(),
            "--workers".into(),
            "0".into(),
            "--no-cache".into(),
        ],
    )?;
    watch.track(run.pid, "coordinator", false);
    let outcome = run.wait_ok(Duration::from_secs(3600)).await;
    let wall_s = started.elapsed().as_secs_f64();
    watch.poll_now();
    for w in workers {
        w.terminate(Duration::from_secs(10)).await?;
    }
    let usage = watch.finish();
    let stub_calls = stub.terminate().await?;
    outcome?;
    let (total, failed, duration_s, _) = summary_numbers(dir.path())?;
    if stub_calls < total {
        bail!("the stub answered {stub_calls} calls for {total} items");
    }
    Ok(RunMeasure {
        items: total,
        failed,
        duration_s,
        wall_s,
        usage,
        first_result_s: None,
        stub_calls,
    })
}
