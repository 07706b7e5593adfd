//! `vigil-bench`: runs the benchmark, prints the table and the budgets, and
//! optionally writes them into `docs/performance.md`.
//!
//! ```text
//! cargo build --release --bin vigil -p vigil-bench
//! target/release/vigil-bench --write docs/performance.md
//! target/release/vigil-bench --quick
//! ```

use clap::Parser;
use std::path::PathBuf;
use vigil_bench::BenchConfig;

/// Measures vigil against the stub backend's own ceiling.
#[derive(Debug, Parser)]
#[command(name = "vigil-bench")]
struct Args {
    /// The vigil binary (default: target/release/vigil of this workspace).
    #[arg(long)]
    vigil: Option<PathBuf>,
    /// A few hundred items per scenario: checks the harness, measures nothing.
    #[arg(long)]
    quick: bool,
    /// Write the machine, table and budgets into this markdown file, between
    /// its bench markers (e.g. docs/performance.md).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Items of the zero-latency comparison.
    #[arg(long)]
    zero_latency_items: Option<u64>,
    /// Concurrency of the zero-latency comparison.
    #[arg(long)]
    zero_latency_concurrency: Option<usize>,
    /// Repeats of the zero-latency comparison.
    #[arg(long)]
    repeats: Option<usize>,
    /// Items per job.
    #[arg(long)]
    shard_size: Option<usize>,
    /// Latency-bound concurrencies, comma-separated.
    #[arg(long, value_delimiter = ',')]
    latency_concurrency: Option<Vec<usize>>,
    /// Latency-bound rounds (items = C × rounds).
    #[arg(long)]
    latency_rounds: Option<u64>,
    /// Memory dataset sizes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    memory_items: Option<Vec<u64>>,
    /// Scale-out worker counts, comma-separated.
    #[arg(long, value_delimiter = ',')]
    scale_workers: Option<Vec<usize>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let vigil = args.vigil.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/vigil")
    });
    let mut cfg = if args.quick {
        BenchConfig::quick(vigil)
    } else {
        BenchConfig::full(vigil)
    };
    if let Some(v) = args.zero_latency_items {
        cfg.zero_latency_items = v;
    }
    if let Some(v) = args.zero_latency_concurrency {
        cfg.zero_latency_concurrency = v;
    }
    if let Some(v) = args.repeats {
        cfg.repeats = v;
    }
    if let Some(v) = args.shard_size {
        cfg.shard_size = v;
    }
    if let Some(v) = args.latency_concurrency {
        cfg.latency_concurrency = v;
    }
    if let Some(v) = args.latency_rounds {
        cfg.latency_rounds = v;
    }
    if let Some(v) = args.memory_items {
        cfg.memory_items = v;
    }
    if let Some(v) = args.scale_workers {
        cfg.scale_workers = v;
    }
    let report = vigil_bench::run(&cfg).await?;
    println!("{}", report.table());
    println!("{}", report.budget_table());
    for note in &report.notes {
        println!("- {note}");
    }
    if let Some(path) = args.write {
        report.write_into(&path)?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}
