//! `vigil monitor`: loads the monitor file, connects NATS and runs
//! [`vigil_coordinator::monitor::run`] until Ctrl-C or SIGTERM.

use crate::cli::MonitorArgs;
use crate::exit::{CommandResult, Exit, ExitContext};
use anyhow::Context;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vigil_coordinator::monitor::{self, MonitorConfig};

pub async fn run(args: MonitorArgs) -> CommandResult {
    let config = MonitorConfig::load(&args.monitor).input_error()?;
    let Some(url) = args.nats.nats.clone() else {
        return Err(anyhow::anyhow!(
            "vigil monitor reads captures from NATS: give --nats URL (or VIGIL_NATS_URL)"
        ))
        .input_error();
    };
    let topology = crate::topology_env::topology_from_env().input_error()?;
    let client = crate::session::Session::connect(url, "vigil-monitor")
        .await?
        .client;
    let shutdown = CancellationToken::new();
    crate::signals::cancel_on_signal(shutdown.clone());
    errln!(
        "vigil monitor {}: captures of {} -> pool {}, summaries on {}",
        config.name,
        config.filter.app.as_deref().unwrap_or("every app"),
        config.pool,
        vigil_protocol::subjects::run_summary(
            &config.name,
            config.filter.app.as_deref().unwrap_or("<app>")
        ),
    );
    match monitor::run(client, Arc::new(config), topology, shutdown).await {
        Ok(_) => {}
        // Another monitor of this name runs: a usage error, exit 2.
        Err(e @ monitor::MonitorError::AlreadyRunning(_)) => {
            return Err(anyhow::Error::from(e)).input_error();
        }
        Err(e) => return Err(e).context("monitor stopped").infra_error(),
    }
    Ok(Exit::Ok)
}
