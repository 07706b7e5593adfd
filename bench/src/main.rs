//! `vigil-bench`: runs the benchmark, prints the table and the budgets, and
//! optionally writes them into `docs/performance.md`; `vigil-bench soak`
//! runs the capture proxy's memory soak on its own.
//!
//! ```text
//! cargo build --release --bin vigil -p vigil-bench
//! target/release/vigil-bench --write docs/performance.md
//! target/release/vigil-bench --quick
//! target/release/vigil-bench soak --seconds 600 --write docs/performance.md
//! ```
//!
//! `scripts/bench.sh` does the build and both runs.

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use vigil_bench::BenchConfig;
use vigil_bench::soak::{self, SoakConfig};

/// Measures vigil against the stub backend's own ceiling, each scenario
/// beside its ceiling in the same run.
#[derive(Debug, Parser)]
#[command(name = "vigil-bench", args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The vigil binary (default: target/release/vigil of this workspace).
    #[arg(long, global = true)]
    vigil: Option<PathBuf>,
    /// Write the result into this markdown file between its bench markers
    /// (e.g. docs/performance.md); the rest of the file is left as it is.
    #[arg(long, value_name = "FILE", global = true)]
    write: Option<PathBuf>,
    /// A few hundred items per scenario: checks the harness, measures nothing.
    #[arg(long)]
    quick: bool,
    /// Items of the zero-latency comparison (distinct prompts).
    #[arg(long)]
    zero_latency_items: Option<u64>,
    /// Concurrency of the zero-latency comparison (wrk's connections too).
    #[arg(long)]
    zero_latency_concurrency: Option<usize>,
    /// Alternating rounds of the zero-latency comparison.
    #[arg(long)]
    repeats: Option<usize>,
    /// Items per job (default: none set in the suites, so each run chooses, as
    /// a user's run would)
    #[arg(long)]
    shard_size: Option<usize>,
    /// Seconds of each wrk run.
    #[arg(long)]
    wrk_seconds: Option<u64>,
    /// Leave out the cache rows.
    #[arg(long)]
    no_cache_rows: bool,
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
    /// The scale-out backend's slots (requests it serves at once).
    #[arg(long)]
    scale_slots: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The capture proxy's memory over a long steady load (`vigil proxy` as
    /// its own process, capture on, every request sampled).
    Soak {
        /// Measured seconds.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Requests per second through the proxy (as many again go to the stub directly).
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Unmeasured seconds first.
        #[arg(long, default_value_t = 10)]
        warmup: u64,
        /// Seconds between two readings of the proxy's RSS.
        #[arg(long, default_value_t = 5)]
        every: u64,
    },
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let vigil = args.vigil.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/vigil")
    });
    if let Some(Command::Soak {
        seconds,
        rate,
        warmup,
        every,
    }) = args.command
    {
        let cfg = SoakConfig {
            rate,
            seconds,
            warmup_seconds: warmup,
            sample_every_s: every,
        };
        eprintln!("bench: proxy soak, {rate} requests/s through the proxy for {seconds} s");
        let result = soak::run(&vigil, cfg).await?;
        let text = result.markdown();
        println!("{text}");
        write(args.write.as_deref(), soak::BEGIN, soak::END, &text)?;
        anyhow::ensure!(result.errors == 0, "{} requests failed", result.errors);
        // The scenario passes only when the proxy's memory is flat.
        match result.flatness {
            Some(f) if f.flat => return Ok(()),
            Some(f) => anyhow::bail!(
                "the proxy's memory is not flat: it rose {:+.2} MiB after the first fifth (at most {:.2} MiB allowed)",
                f.rise_mib,
                f.allowed_mib
            ),
            None => anyhow::bail!("too few memory samples for a verdict (--seconds / --every < 3)"),
        }
    }
    let mut cfg = if args.quick {
        BenchConfig::quick(vigil)
    } else {
        BenchConfig::full(vigil)
    };
    set(&mut cfg.zero_latency_items, args.zero_latency_items);
    set(
        &mut cfg.zero_latency_concurrency,
        args.zero_latency_concurrency,
    );
    set(&mut cfg.repeats, args.repeats);
    if args.shard_size.is_some() {
        cfg.shard_size = args.shard_size;
    }
    set(&mut cfg.wrk_seconds, args.wrk_seconds);
    set(&mut cfg.latency_concurrency, args.latency_concurrency);
    set(&mut cfg.latency_rounds, args.latency_rounds);
    set(&mut cfg.memory_items, args.memory_items);
    set(&mut cfg.scale_workers, args.scale_workers);
    set(&mut cfg.scale_slots, args.scale_slots);
    cfg.cache_rows &= !args.no_cache_rows;
    let report = vigil_bench::run(&cfg).await?;
    println!("{}", report.table());
    println!("{}", report.budget_table());
    for note in &report.notes {
        println!("- {note}");
    }
    write(
        args.write.as_deref(),
        vigil_bench::report::BEGIN,
        vigil_bench::report::END,
        &report.markdown(),
    )
}

fn write(path: Option<&Path>, begin: &str, end: &str, text: &str) -> anyhow::Result<()> {
    if let Some(path) = path {
        vigil_bench::report::write_section(path, begin, end, text)?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}
