//! `proxy-overhead`: the capture proxy's added latency beside the stub alone.
//!
//! ```text
//! cargo run --release -p vigil-bench --bin proxy-overhead -- --rate 1000 --seconds 30
//! ```

use clap::Parser;
use vigil_bench::proxy_overhead::{OverheadConfig, run};

/// Drives the stub directly and through the proxy, alternating, at one rate.
#[derive(Debug, Parser)]
#[command(name = "proxy-overhead")]
struct Args {
    /// Requests per second, both paths together.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Measured seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Warm-up seconds (not measured).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Capture sample rate of the proxy.
    #[arg(long, default_value_t = 1.0)]
    sample: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let result = run(OverheadConfig {
        rate: args.rate,
        seconds: args.seconds,
        warmup_seconds: args.warmup,
        sample: args.sample,
    })?;
    print!("{}", result.markdown());
    anyhow::ensure!(result.errors == 0, "{} requests failed", result.errors);
    Ok(())
}
