//! Logs through `tracing` to stderr: human-readable, or JSON lines with
//! `--log-format json`. The level comes from `VIGIL_LOG` (or `RUST_LOG`);
//! the default is `warn` for commands with a progress bar and `info` for
//! long-running services.
//!
//! When OTLP export is configured (see [`crate::telemetry`]) a second layer
//! sends vigil's own spans (info and above, whatever the log level) to the
//! exporter, and the run and job spans carry a `trace_id` field, so every log
//! line inside them names its trace.

use crate::cli::{Cli, Command, LogFormat};
use crate::telemetry::Guard;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs the global subscriber (and the trace exporter, when configured).
pub fn init(cli: &Cli) -> Guard {
    let (default, service) = match cli.command {
        Command::Worker(_) => ("info", "vigil-worker"),
        Command::Stub(_) => ("info", "vigil-stub"),
        _ => ("warn", "vigil-coordinator"),
    };
    let filter = std::env::var("VIGIL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    // A closed stderr (`vigil proxy 2>&1 | head`) drops log lines: the default
    // reports the failed write with `eprintln!`, which panics (src/output.rs).
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let fmt = match cli.log_format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.boxed(),
    }
    .with_filter(filter);
    let (provider, otel_error) = match crate::telemetry::init(service) {
        Ok(p) => (p, None),
        Err(e) => (None, Some(e)),
    };
    let otel = provider.as_ref().map(|exporting| {
        // Only vigil's spans: library internals (HTTP, NATS) would swamp a run's trace.
        let targets = Targets::new()
            .with_target("vigil", LevelFilter::INFO)
            .with_target("vigil_worker", LevelFilter::INFO)
            .with_target("vigil_coordinator", LevelFilter::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(crate::telemetry::tracer(&exporting.provider))
            .with_filter(targets)
    });
    tracing_subscriber::registry().with(fmt).with(otel).init();
    if let Some(e) = otel_error {
        tracing::warn!(error = %e, "trace export is off");
    }
    vigil_worker::telemetry::set_enabled(provider.is_some());
    Guard::from(provider)
}
