//! Logs through `tracing` to stderr: human-readable, or JSON lines with
//! `--log-format json`. The level comes from `VIGIL_LOG` (or `RUST_LOG`);
//! the default is `warn` for commands with a progress bar and `info` for
//! long-running services.

use crate::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub fn init(cli: &Cli) {
    let default = match cli.command {
        Command::Worker(_) | Command::Stub(_) => "info",
        _ => "warn",
    };
    let filter = std::env::var("VIGIL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
