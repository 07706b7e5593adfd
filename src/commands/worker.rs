//! `vigil worker`: a worker process for a pool.

use crate::cli::WorkerArgs;
use crate::exit::{CommandResult, Exit, ExitContext};
use crate::session::{self, Session};
use anyhow::anyhow;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vigil_coordinator::suite::Suite;
use vigil_worker::allow::AllowList;
use vigil_worker::metrics::WorkerStats;
use vigil_worker::pull::WorkerConfig;

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
/// scorers call, each with its own `api_key_env` (`local` targets and
/// judges are allowed through [`local_engine`]).
pub fn add_suite_targets(list: &mut AllowList, suite: &Suite) {
    let endpoints = suite.targets.iter().chain(suite.scorer_endpoints());
    // `local` ones run in the worker, `recorded` ones call nothing.
    let http = |t: &&vigil_coordinator::suite::TargetConfig| {
        matches!(
            t.kind,
            vigil_protocol::EndpointKind::Chat | vigil_protocol::EndpointKind::Completions
        )
    };
    for target in endpoints.filter(http) {
        list.push(&target.base_url, target.api_key_env.clone(), &|name| {
            std::env::var(name).ok()
        });
    }
}

/// The model files of a suite's `local` targets and `local` judges.
pub fn suite_models(suite: &Suite) -> impl Iterator<Item = std::path::PathBuf> + '_ {
    let endpoints = suite.targets.iter().chain(suite.scorer_endpoints());
    let mut seen = std::collections::HashSet::new();
    endpoints
        .filter_map(|t| t.model_path.clone())
        .filter(move |p| seen.insert(p.clone()))
}

/// Fails with a clear message when a suite's local model file is missing
/// here (in-process workers would otherwise fail every item).
pub fn check_suite_models(suite: &Suite) -> Result<(), crate::exit::Failure> {
    for path in suite_models(suite) {
        if !path.is_file() {
            return Err(anyhow!(
                "local model {} not found: run scripts/setup.sh (it fetches SmolLM2-135M-Instruct into $VIGIL_HOME/models), or fix the target's model_path",
                path.display()
            ))
            .input_error();
        }
    }
    Ok(())
}

/// The engine for `local` targets, allowing exactly `models`; `None` when
/// there are none, so local jobs fail as `backend_not_allowed`.
pub fn local_engine(
    models: Vec<std::path::PathBuf>,
) -> Option<Arc<dyn vigil_worker::backends::LocalBackend>> {
    if models.is_empty() {
        return None;
    }
    let engine = vigil_local::LocalEngine::new(models, vigil_local::default_concurrency());
    tracing::info!(models = ?engine.allowed(), "local models allowed");
    Some(Arc::new(engine))
}

/// How a worker treats `code_exec`: `None` (never runs programs) unless
/// allowed; the unsafe flag implies the allowance.
pub fn code_exec_mode(
    allow: bool,
    unsafe_without_sandbox: bool,
) -> Option<vigil_worker::sandbox::SandboxMode> {
    use vigil_worker::sandbox::SandboxMode;
    match (allow, unsafe_without_sandbox) {
        (_, true) => Some(SandboxMode::UnsafeFallback),
        (true, false) => Some(SandboxMode::Required),
        (false, false) => None,
    }
}

/// Probes the code sandbox of `mode` (logged once) and tells `probe` what
/// `/readyz` should say about code execution.
pub async fn report_code_exec(
    mode: Option<vigil_worker::sandbox::SandboxMode>,
    probe: Option<&crate::health::ReadyProbe>,
) {
    let line = match mode {
        Some(mode) => format!(
            "code_exec: {}",
            vigil_worker::sandbox::Sandbox::shared(mode)
                .isolation()
                .await
                .describe()
        ),
        None => "code_exec: not allowed (start the worker with --allow-code-exec)".to_string(),
    };
    if let Some(probe) = probe {
        probe.set_detail(line);
    }
}

pub async fn run(args: WorkerArgs) -> CommandResult {
    let url = crate::session::required_url(&args.nats)?;
    let allow = allow_list(&args.allow, &args.suites)?;
    if allow.is_empty() && args.allow_models.is_empty() {
        tracing::warn!("no --allow entries: every job's items will fail as backend_not_allowed");
    }
    let scorer_commands =
        vigil_worker::scorers::external::AllowedCommands::parse(&args.allow_scorer_command)
            .input_error()?;
    let mut models = args.allow_models.clone();
    let from_env = std::env::var("VIGIL_ALLOW_MODEL").unwrap_or_default();
    models.extend(
        from_env
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().into()),
    );
    for path in &args.suites {
        models.extend(suite_models(&Suite::load(path).input_error()?));
    }
    let config = WorkerConfig {
        scorer_commands,
        local: local_engine(models),
        pool: args.pool.clone(),
        concurrency: args.concurrency.max(1),
        max_jobs: args.max_jobs,
        allow,
        grace_period: Duration::from_secs_f64(args.grace_period_s.max(0.0)),
        topology: crate::topology_env::topology_from_env().input_error()?,
        max_job_bytes: args.max_job_bytes,
        code_exec: code_exec_mode(args.allow_code_exec, args.unsafe_code_exec_without_sandbox),
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    crate::signals::cancel_on_signal(shutdown.clone());
    // Liveness answers while the first connect is still under way.
    let probe = crate::health::ReadyProbe::new(None);
    if let Some(bound) = session::serve_health(args.health_addr, &probe, &shutdown).await? {
        tracing::info!(%bound, "health endpoints up");
    }
    report_code_exec(config.code_exec, Some(&probe)).await;
    let session = Session::connect(url, &format!("vigil-worker-{}", config.worker_id)).await?;
    let client = session.client.clone();
    probe.set_client(client.clone());
    let stats = Arc::new(WorkerStats::default());
    session::serve_metrics(
        args.metrics_addr,
        &shutdown,
        Some((&client, &config.pool)),
        |registry| vigil_worker::metrics::register(registry, stats.clone()),
    )
    .await?;
    vigil_worker::pull::run(client, config, stats, shutdown)
        .await
        .infra_error()?;
    Ok(Exit::Ok)
}
