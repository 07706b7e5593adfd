//! vigil's benchmark harness.
//!
//! One [`run`] measures, side by side on the same machine: the stub
//! backend's own ceiling (driven directly by a load generator), `vigil run`
//! against the same stub at zero latency, latency-bound efficiency, peak
//! memory of coordinator and worker, and scale-out over worker processes.
//! It returns a [`Report`] whose [`Report::markdown`] is what
//! `docs/performance.md` holds between its bench markers.
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
pub mod spawn;

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
    /// Items per job.
    pub shard_size: usize,
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
    /// Items of a scale-out run = workers × concurrency × rounds.
    pub scale_rounds: u64,
}

impl BenchConfig {
    /// The full benchmark (a few minutes on two cores).
    pub fn full(vigil: PathBuf) -> Self {
        BenchConfig {
            vigil,
            zero_latency_items: 50_000,
            zero_latency_concurrency: 64,
            repeats: 2,
            shard_size: 32,
            latency_ms: 200,
            latency_concurrency: vec![32, 256, 1024],
            latency_rounds: 50,
            memory_items: vec![10_000, 100_000, 1_000_000],
            memory_concurrency: 64,
            scale_workers: vec![1, 2, 4],
            scale_latency_ms: 100,
            scale_concurrency: 16,
            scale_rounds: 40,
        }
    }

    /// A quick run on a few hundred items (seconds): every row, no meaning.
    pub fn quick(vigil: PathBuf) -> Self {
        BenchConfig {
            vigil,
            zero_latency_items: 400,
            zero_latency_concurrency: 16,
            repeats: 1,
            shard_size: 32,
            latency_ms: 20,
            latency_concurrency: vec![8, 32],
            latency_rounds: 4,
            memory_items: vec![200, 400],
            memory_concurrency: 16,
            scale_workers: vec![1, 2],
            scale_latency_ms: 20,
            scale_concurrency: 4,
            scale_rounds: 5,
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
    let machine = machine::describe(&cfg.vigil);
    let mut report = Report::new(machine, cfg);
    let c0 = cfg.zero_latency_concurrency;

    // (a) + (b): alternate so slow phases of a shared machine hit both sides.
    let mut ceilings = Vec::new();
    let mut embedded = Vec::new();
    for round in 0..cfg.repeats.max(1) {
        eprintln!("bench: stub ceiling, C={c0} (round {})", round + 1);
        ceilings.push(scenario::ceiling(&cfg.vigil, c0, cfg.zero_latency_items).await?);
        eprintln!(
            "bench: vigil run, embedded, 0 ms, C={c0} (round {})",
            round + 1
        );
        embedded.push(
            scenario::embedded(&cfg.vigil, cfg.zero_latency_items, c0, cfg.shard_size).await?,
        );
    }
    report.zero_latency(c0, &ceilings, &embedded);

    // (c) latency-bound efficiency.
    for &c in &cfg.latency_concurrency {
        eprintln!("bench: latency {} ms, C={c}", cfg.latency_ms);
        let spec = scenario::Separate {
            items: c as u64 * cfg.latency_rounds,
            latency_ms: cfg.latency_ms,
            workers: 1,
            worker_concurrency: c,
            max_concurrency: c,
            shard_size: cfg.shard_size,
        };
        let m = scenario::separate(&cfg.vigil, &spec).await?;
        report.latency_bound(c, cfg.latency_ms, &m);
    }

    // (d) memory.
    for &n in &cfg.memory_items {
        eprintln!("bench: memory, {n} items");
        let spec = scenario::Separate {
            items: n,
            latency_ms: 0,
            workers: 1,
            worker_concurrency: cfg.memory_concurrency,
            max_concurrency: cfg.memory_concurrency,
            shard_size: cfg.shard_size,
        };
        let m = scenario::separate(&cfg.vigil, &spec).await?;
        report.memory(n, cfg.memory_concurrency, &m);
    }

    // (e) scale-out: each worker may hold `scale_concurrency` calls, the
    // stub answers after a fixed latency, so capacity is workers × cap / latency.
    for &w in &cfg.scale_workers {
        eprintln!("bench: scale-out, {w} worker(s)");
        let k = cfg.scale_concurrency;
        let spec = scenario::Separate {
            items: (w * k) as u64 * cfg.scale_rounds,
            latency_ms: cfg.scale_latency_ms,
            workers: w,
            worker_concurrency: k,
            max_concurrency: w * k,
            shard_size: cfg.shard_size.min(k.max(1)),
        };
        let m = scenario::separate(&cfg.vigil, &spec).await?;
        report.scale_out(w, k, cfg.scale_latency_ms, &m);
    }
    report.finish_budgets();
    Ok(report)
}
