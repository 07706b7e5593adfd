//! vigil's benchmark harness.
//!
//! One [`run`] measures, side by side on the same machine and commit, each
//! vigil scenario next to its ceiling, alternating (ceiling, vigil, ceiling,
//! vigil, ...): `vigil run --workers 1 --no-cache` over distinct items
//! against the stub backend's own ceiling under the bench's tokio client and
//! under `wrk` where installed; the response cache's cost (a cold run with
//! the cache on, a fully cached re-run, a cold run of other prompts on the
//! store the first filled); latency-bound efficiency; peak
//! memory of coordinator and worker; and scale-out over worker processes
//! against a backend with a fixed number of slots. Rates are given by wall
//! clock (spawn to exit) beside the run's own duration. It returns a
//! [`Report`] whose [`Report::markdown`] is what `docs/performance.md`
//! holds between its bench markers. [`soak`] is the capture proxy's memory
//! over a long steady load, run on its own.
//!
//! Everything runs as real processes of the `vigil` binary given in
//! [`BenchConfig::vigil`] (a release build for numbers that mean anything).
//! The harness is a tool, not a library others build on, so it reports
//! errors with `anyhow`.

pub mod loadgen;
pub mod machine;
pub mod procfs;
pub mod proxy_overhead;
pub mod report;
pub mod scenario;
pub mod soak;
pub mod spawn;
pub mod wrk;

pub use report::{Budget, Report, Row};

use std::path::PathBuf;

/// What to measure and how big.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The `vigil` binary.
    pub vigil: PathBuf,
    /// Items of the zero-latency comparison (stub ceiling and embedded run).
    pub zero_latency_items: u64,
    /// Requests in flight in the zero-latency comparison, on both sides.
    pub zero_latency_concurrency: usize,
    /// How often the zero-latency pair is repeated (alternating); the best
    /// of each side is compared, since other load on the machine only ever
    /// slows a measurement down.
    pub repeats: usize,
    /// Items per job; `None` (the default): the suites leave `shard_size`
    /// out and each run chooses, as a user's would.
    pub shard_size: Option<usize>,
    /// Stub latency of the latency-bound runs, ms.
    pub latency_ms: u64,
    /// Total concurrency values of the latency-bound runs.
    pub latency_concurrency: Vec<usize>,
    /// Items of a latency-bound run = concurrency × rounds.
    pub latency_rounds: u64,
    /// Dataset sizes of the memory runs (zero latency).
    pub memory_items: Vec<u64>,
    /// Worker concurrency of the memory runs.
    pub memory_concurrency: usize,
    /// Worker process counts of the scale-out runs.
    pub scale_workers: Vec<usize>,
    /// Stub latency of the scale-out runs, ms.
    pub scale_latency_ms: u64,
    /// `--concurrency` of each scale-out worker (the per-worker cap).
    pub scale_concurrency: usize,
    /// The scale-out backend's slots: it serves this many requests at once,
    /// so it caps throughput at slots / latency however many workers call it.
    pub scale_slots: usize,
    /// Seconds a scale-out run would last at its bound (sets its items).
    pub scale_seconds: u64,
    /// Seconds of each `wrk` run (where wrk is installed).
    pub wrk_seconds: u64,
    /// Also run the cache rows (cold run with the cache on, cached re-run).
    pub cache_rows: bool,
}

impl BenchConfig {
    /// The full benchmark (about ten minutes on two cores).
    pub fn full(vigil: PathBuf) -> Self {
        BenchConfig {
            vigil,
            zero_latency_items: 50_000,
            zero_latency_concurrency: 64,
            repeats: 4,
            shard_size: None,
            latency_ms: 200,
            latency_concurrency: vec![32, 256, 1024],
            latency_rounds: 50,
            memory_items: vec![10_000, 100_000, 1_000_000],
            memory_concurrency: 64,
            scale_workers: vec![1, 2, 4],
            scale_latency_ms: 20,
            scale_concurrency: 8,
            scale_slots: 16,
            scale_seconds: 8,
            wrk_seconds: 5,
            cache_rows: true,
        }
    }

    /// A quick run on a few hundred items (seconds): every row, no meaning.
    pub fn quick(vigil: PathBuf) -> Self {
        BenchConfig {
            vigil,
            zero_latency_items: 400,
            zero_latency_concurrency: 16,
            repeats: 1,
            shard_size: None,
            latency_ms: 20,
            latency_concurrency: vec![8, 32],
            latency_rounds: 4,
            memory_items: vec![200, 400],
            memory_concurrency: 16,
            scale_workers: vec![1, 2],
            scale_latency_ms: 20,
            scale_concurrency: 4,
            scale_slots: 6,
            scale_seconds: 1,
            wrk_seconds: 1,
            cache_rows: true,
        }
    }
}

/// Runs every measurement in order and returns the report. Progress lines go
/// to stderr.
pub async fn run(cfg: &BenchConfig) -> anyhow::Result<Report> {
    if !cfg.vigil.is_file() {
        anyhow::bail!(
            "no vigil binary at {} (build it: cargo build --release --bin vigil)",
            cfg.vigil.display()
        );
    }
    let commit = machine::commit(&machine::workspace(), &cfg.vigil);
    let machine = machine::describe(&cfg.vigil);
    let mut report = Report::new(commit, machine, cfg);
    let c0 = cfg.zero_latency_concurrency;
    let n0 = cfg.zero_latency_items;
    let zero = spawn::StubSpec::default();

    // Zero latency: alternate so slow phases of a shared machine hit both sides.
    let (mut ceilings, mut wrks, mut runs, mut cached) = (vec![], vec![], vec![], vec![]);
    for round in 1..=cfg.repeats.max(1) {
        eprintln!("bench: round {round}: ceiling, tokio client, C={c0}");
        ceilings.push(scenario::ceiling(&cfg.vigil, zero, c0, n0).await?);
        eprintln!("bench: round {round}: ceiling, wrk -c{c0}");
        wrks.push(scenario::wrk_ceiling(&cfg.vigil, c0, cfg.wrk_seconds).await?);
        eprintln!("bench: round {round}: vigil run --workers 1 --no-cache, {n0} items");
        runs.push(scenario::embedded(&cfg.vigil, n0, c0, cfg.shard_size).await?);
        if cfg.cache_rows {
            eprintln!("bench: round {round}: vigil run --cache, cold, fully cached, other prompts");
            cached.push(scenario::cached_runs(&cfg.vigil, n0, c0, cfg.shard_size).await?);
        }
    }
    report.zero_latency(c0, &ceilings, &wrks, &runs, &cached);

    // Latency-bound efficiency: the tokio client, then vigil, at each C.
    let slow = spawn::StubSpec {
        latency_ms: cfg.latency_ms,
        slots: None,
    };
    for &c in &cfg.latency_concurrency {
        let items = c as u64 * cfg.latency_rounds;
        eprintln!("bench: latency {} ms, C={c}: ceiling", cfg.latency_ms);
        let ceiling = scenario::ceiling(&cfg.vigil, slow, c, items).await?;
        eprintln!("bench: latency {} ms, C={c}: vigil", cfg.latency_ms);
        let spec = scenario::Separate {
            items,
            latency_ms: cfg.latency_ms,
            workers: 1,
            worker_concurrency: c,
            max_concurrency: c,
            shard_size: cfg.shard_size,
            slots: None,
        };
        let m = scenario::separate(&cfg.vigil, &spec).await?;
        report.latency_bound(c, cfg.latency_ms, &ceiling, &m);
    }

    // Memory.
    for &n in &cfg.memory_items {
        eprintln!("bench: memory, {n} items");
        let spec = scenario::Separate {
            items: n,
            latency_ms: 0,
            workers: 1,
            worker_concurrency: cfg.memory_concurrency,
            max_concurrency: cfg.memory_concurrency,
            shard_size: cfg.shard_size,
            slots: None,
        };
        let m = scenario::separate(&cfg.vigil, &spec).await?;
        report.memory(n, cfg.memory_concurrency, &m);
    }

    // Scale-out against a capped backend: it serves `scale_slots` requests at
    // once, each taking `scale_latency_ms`, so workers add throughput only
    // until workers × concurrency reaches the slots.
    let capped = spawn::StubSpec {
        latency_ms: cfg.scale_latency_ms,
        slots: Some(cfg.scale_slots),
    };
    for &w in &cfg.scale_workers {
        let k = cfg.scale_concurrency;
        let in_flight = (w * k).min(cfg.scale_slots);
        let bound = in_flight as f64 * 1000.0 / cfg.scale_latency_ms.max(1) as f64;
        let items = ((bound * cfg.scale_seconds as f64) as u64).max((w * k) as u64);
        eprintln!("bench: scale-out, {w} worker(s): ceiling");
        let ceiling = scenario::ceiling(&cfg.vigil, capped, w * k, items).await?;
        eprintln!("bench: scale-out, {w} worker(s): vigil");
        let spec = scenario::Separate {
            items,
            latency_ms: cfg.scale_latency_ms,
            workers: w,
            worker_concurrency: k,
            max_concurrency: k,
            // Jobs of one worker's concurrency, so that the work spreads
            // over the workers job by job.
            shard_size: Some(cfg.shard_size.map_or(k, |n| n.min(k)).max(1)),
            slots: Some(cfg.scale_slots),
        };
        let m = scenario::separate(&cfg.vigil, &spec).await?;
        report.scale_out(w, k, cfg.scale_slots, cfg.scale_latency_ms, &ceiling, &m);
    }
    report.finish_budgets();
    Ok(report)
}
