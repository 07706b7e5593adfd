//! `vigil worker`: a worker process for a pool.

use crate::cli::WorkerArgs;
use crate::exit::{CommandResult, Exit, ExitContext};
use anyhow::anyhow;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vigil_coordinator::suite::Suite;
use vigil_worker::allow::AllowList;
use vigil_worker::pull::{WorkerConfig, WorkerStats};

/// The allow list of a worker: `--allow` entries, `VIGIL_ALLOW`
/// (comma-separated) and the targets of `--suite` files.
pub fn allow_list(
    allow: &[String],
    suites: &[std::path::PathBuf],
) -> Result<AllowList, crate::exit::Failure> {
    let from_env = std::env::var("VIGIL_ALLOW").unwrap_or_default();
    let entries = allow.iter().map(String::as_str).chain(from_env.split(','));
    let mut list = AllowList::parse(entries).input_error()?;
    for path in suites {
        let suite = Suite::load(path).input_error()?;
        add_suite_targets(&mut list, &suite);
    }
    Ok(list)
}

/// Allows every target of a suite, and every judge and embedder its
/// scorers call, each with its own `api_key_env`.
pub fn add_suite_targets(list: &mut AllowList, suite: &Suite) {
    for target in suite.targets.iter().chain(suite.scorer_endpoints()) {
        list.push(&target.base_url, target.api_key_env.clone(), &|name| {
            std::env::var(name).ok()
        });
    }
}

pub async fn run(args: WorkerArgs) -> CommandResult {
    let url = args
        .nats
        .nats
        .clone()
        .ok_or_else(|| {
            anyhow!(
                "--nats URL (or {}) is required",
                crate::nats_connect::ENV_URL
            )
        })
        .input_error()?;
    let allow = allow_list(&args.allow, &args.suites)?;
    if allow.is_empty() {
        tracing::warn!("no --allow entries: every job's items will fail as backend_not_allowed");
    }
    let scorer_commands =
        vigil_worker::scorers::external::AllowedCommands::parse(&args.allow_scorer_command)
            .input_error()?;
    let config = WorkerConfig {
        scorer_commands,
        pool: args.pool.clone(),
        concurrency: args.concurrency.max(1),
        allow,
        grace_period: Duration::from_secs_f64(args.grace_period_s.max(0.0)),
        topology: crate::topology_env::topology_from_env().input_error()?,
        max_job_bytes: args.max_job_bytes,
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    crate::signals::cancel_on_signal(shutdown.clone());
    // Liveness answers while the first connect is still under way.
    let probe = crate::health::ReadyProbe::new(None);
    if let Some(addr) = args.health_addr {
        let stop = shutdown.clone();
        let bound =
            crate::health::serve(addr, probe.clone(), async move { stop.cancelled().await })
                .await
                .infra_error()?;
        tracing::info!(%bound, "health endpoints up");
    }
    let client =
        crate::nats_connect::connect_from_env(&url, &format!("vigil-worker-{}", config.worker_id))
            .await
            .infra_error()?;
    probe.set_client(client.clone());
    let stats = Arc::new(WorkerStats::default());
    if let Some(addr) = args.metrics_addr {
        let mut registry = crate::metrics_server::registry();
        vigil_worker::metrics::register(&mut registry, stats.clone());
        crate::metrics_server::poll_consumer(
            &mut registry,
            client.clone(),
            &config.pool,
            shutdown.clone(),
        );
        crate::metrics_server::serve(addr, registry, shutdown.clone())
            .await
            .infra_error()?;
    }
    vigil_worker::pull::run(client, config, stats, shutdown)
        .await
        .infra_error()?;
    Ok(Exit::Ok)
}
