//! `vigil run SUITE`: validate, then evaluate every chosen target.

use crate::cli::RunArgs;
use crate::exit::{CommandResult, Exit, ExitContext, Failure};
use crate::progress::Progress;
use crate::session::{self, Session};
use anyhow::anyhow;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vigil_coordinator::resume::ResumeError;
use vigil_coordinator::run::{RunConfig, RunError, RunOutcome, scheduled_run_id};
use vigil_coordinator::suite::Suite;
use vigil_protocol::{ProgressEvent, RunSummary};
use vigil_worker::allow::AllowList;
use vigil_worker::metrics::WorkerStats;
use vigil_worker::pull::WorkerConfig;

fn resolve_date(date: &str) -> Result<String, Failure> {
    if date == "today" {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        return Ok(now[..10].to_string());
    }
    let valid = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !valid {
        return Err(anyhow!(
            "--scheduled-date {date}: expected YYYY-MM-DD or `today`"
        ))
        .input_error();
    }
    Ok(date.to_string())
}

fn run_error(e: RunError) -> Failure {
    let input = matches!(
        e,
        RunError::UnknownTarget { .. }
            | RunError::Suite(_)
            | RunError::Validation(_)
            | RunError::Dataset(_)
            | RunError::Resume(
                ResumeError::NotFound { .. }
                    | ResumeError::Mismatch { .. }
                    | ResumeError::Cancelled { .. }
                    | ResumeError::SummaryGone { .. }
            )
    );
    Failure {
        exit: if input {
            Exit::Input
        } else {
            Exit::Infrastructure
        },
        error: e.into(),
    }
}

pub async fn run(args: RunArgs) -> CommandResult {
    let mut suite = Suite::load(&args.suite).input_error()?;
    let targets: Vec<String> = if args.targets.is_empty() {
        suite.targets.iter().map(|t| t.name.clone()).collect()
    } else {
        args.targets.clone()
    };
    for name in &targets {
        vigil_coordinator::run::find_target(&suite, name).map_err(run_error)?;
    }
    if (args.run_id.is_some() || args.resume.is_some()) && targets.len() > 1 {
        return Err(anyhow!(
            "--run-id and --resume need a single --target (the suite has {})",
            targets.len()
        ))
        .input_error();
    }
    let topology = crate::topology_env::topology_from_env().input_error()?;
    let reconcile_after = crate::topology_env::reconcile_after_from_env().input_error()?;
    let date = args
        .scheduled_date
        .as_deref()
        .map(resolve_date)
        .transpose()?;
    // The run id of each target's run, when the command line fixes it.
    let run_id_of = |suite: &Suite, target: &str| match (
        args.run_id.as_ref().or(args.resume.as_ref()),
        &date,
    ) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(date)) => Some(scheduled_run_id(&suite.name, target, date)),
        (None, None) => None,
    };
    // A named dataset is fetched from NATS before anything is checked; a
    // resumed run reads the version it started with.
    let mut connection = None;
    let mut _fetched = None;
    if suite.dataset.named.is_some() {
        let session =
            Session::connect_or_embedded(&args.nats, &args.state_dir, "vigil-coordinator").await?;
        let js = vigil_nats::topology::ensure_topology(&session.client, &topology, &suite.pool)
            .await
            .infra_error()?;
        let run_ids: Vec<String> = targets
            .iter()
            .filter_map(|t| run_id_of(&suite, t))
            .collect();
        _fetched = crate::commands::dataset::fetch_for_suite(&js, &mut suite, &run_ids).await?;
        connection = Some((session, js));
    }
    let suite = Arc::new(suite);
    // Everything a run checks before publishing, checked once here for a clear
    // error. Connecting (or starting the embedded nats-server) goes on at the
    // same time, since it publishes nothing; the check's verdict comes first,
    // so a broken suite is an input error even when NATS is unreachable.
    let mut checking = tokio::task::spawn_blocking({
        let suite = suite.clone();
        move || vigil_coordinator::validate::check_suite(&suite, vigil_worker::scorers::check)
    });
    let connecting = async {
        let (session, ensured) = match connection {
            Some((session, js)) => (session, Some(js)),
            None => (
                Session::connect_or_embedded(&args.nats, &args.state_dir, "vigil-coordinator")
                    .await?,
                None,
            ),
        };
        // Also while the check runs: the streams and buckets (once: every
        // run is handed them), and the in-process workers' connections.
        let streams = async {
            match ensured {
                Some(js) => Ok(js),
                None => {
                    vigil_nats::topology::ensure_topology(&session.client, &topology, &suite.pool)
                        .await
                        .infra_error()
                }
            }
        };
        let worker_clients = futures::future::try_join_all(
            (0..args.workers).map(|_| session.another_client("vigil-embedded-worker")),
        );
        let (js, worker_clients) = tokio::try_join!(streams, worker_clients)?;
        Ok::<_, Failure>((session, js, worker_clients))
    };
    let mut connecting = std::pin::pin!(connecting);
    let mut connected = None;
    let checked = loop {
        tokio::select! {
            checked = &mut checking => break checked,
            session = &mut connecting, if connected.is_none() => connected = Some(session),
        }
    };
    let (_, check) = checked
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .input_error()?;
    let mut check = Some(check);
    if args.workers > 0 {
        crate::commands::worker::check_suite_models(&suite)?;
    }
    let (session, js, worker_clients) = match connected {
        Some(session) => session?,
        None => connecting.await?,
    };
    let client = session.client.clone();

    let shutdown = CancellationToken::new();
    crate::signals::cancel_on_signal(shutdown.clone());
    // In-process workers run programs only for a suite that has code_exec
    // scorers: its author wrote them (and the jobs this run publishes).
    let uses_code_exec = suite
        .scorers
        .iter()
        .any(|s| matches!(s.kind, vigil_protocol::ScorerKind::CodeExec { .. }));
    let code_exec = crate::commands::worker::code_exec_mode(
        uses_code_exec,
        uses_code_exec && args.unsafe_code_exec_without_sandbox,
    );
    if args.health_addr.is_some() {
        let probe = crate::health::ReadyProbe::new(Some(client.clone()));
        if args.workers > 0 {
            crate::commands::worker::report_code_exec(code_exec, Some(&probe)).await;
        }
        session::serve_health(args.health_addr, &probe, &shutdown).await?;
    }
    let workers_stop = CancellationToken::new();
    // Cancelled once every run is complete: no job can still be on its way.
    let all_done = CancellationToken::new();
    let mut workers = tokio::task::JoinSet::new();
    // One set of counters for the in-process workers, one for the runs.
    let worker_stats = Arc::new(WorkerStats::default());
    let coordinator_metrics = Arc::new(vigil_coordinator::metrics::CoordinatorMetrics::default());
    session::serve_metrics(
        args.metrics_addr,
        &workers_stop,
        Some((&client, &suite.pool)),
        |registry| {
            coordinator_metrics.register(registry);
            if args.workers > 0 {
                vigil_worker::metrics::register(registry, worker_stats.clone());
            }
        },
    )
    .await?;
    if args.workers > 0 {
        let mut allow = AllowList::default();
        crate::commands::worker::add_suite_targets(&mut allow, &suite);
        let scorer_commands =
            vigil_worker::scorers::external::AllowedCommands::parse(&args.allow_scorer_command)
                .input_error()?;
        // One engine for every in-process worker: each model loads once.
        let local = crate::commands::worker::local_engine(
            crate::commands::worker::suite_models(&suite).collect(),
        );
        for client in worker_clients {
            let config = WorkerConfig {
                pool: suite.pool.clone(),
                concurrency: args.concurrency.max(1),
                allow: allow.clone(),
                scorer_commands: scorer_commands.clone(),
                local: local.clone(),
                topology: topology.clone(),
                code_exec,
                all_done: Some(all_done.clone()),
                ..Default::default()
            };
            let (stop, stats) = (workers_stop.clone(), worker_stats.clone());
            workers
                .spawn(async move { vigil_worker::pull::run(client, config, stats, stop).await });
        }
    }

    let progress = Progress::new(args.no_progress);
    let mut runs = tokio::task::JoinSet::new();
    let mut bars = Vec::new();
    for (position, name) in targets.iter().enumerate() {
        let (tx, rx) = watch::channel(ProgressEvent::default());
        bars.push(progress.follow(format!("{}/{}", suite.name, name), rx));
        let mut config = RunConfig::new(suite.clone(), name.clone());
        config.progress = Some(tx);
        // The last run takes the check itself: the items it kept are then
        // moved into that run's jobs rather than cloned (Rendered::into_items_for).
        config.dataset_check = if position + 1 == targets.len() {
            check.take()
        } else {
            check.clone()
        };
        config.metrics = Some(coordinator_metrics.clone());
        config.topology = topology.clone();
        config.jetstream = Some(js.clone());
        config.require_resume = args.resume.is_some();
        config.baseline = args.baseline.clone();
        config.no_cache = args.no_cache;
        config.reconcile_after = reconcile_after;
        config.cache = args.cache;
        config.run_id = run_id_of(&suite, name);
        let (client, stop) = (client.clone(), shutdown.clone());
        runs.spawn(async move {
            (
                position,
                vigil_coordinator::run::run(client, config, stop).await,
            )
        });
    }
    let mut outcomes: Vec<(usize, RunOutcome)> = Vec::new();
    let mut first_error = None;
    while let Some(joined) = runs.join_next().await {
        match joined {
            Ok((position, Ok(outcome))) => outcomes.push((position, outcome)),
            Ok((_, Err(e))) => {
                shutdown.cancel();
                first_error.get_or_insert(run_error(e));
            }
            Err(e) => {
                first_error.get_or_insert(Failure {
                    exit: Exit::Infrastructure,
                    error: e.into(),
                });
            }
        }
    }
    for bar in bars {
        let _ = bar.await;
    }
    if first_error.is_none() && !shutdown.is_cancelled() {
        all_done.cancel();
    }
    workers_stop.cancel();
    while workers.join_next().await.is_some() {}
    drop(client);
    drop(session);
    if let Some(failure) = first_error {
        return Err(failure);
    }

    outcomes.sort_by_key(|(position, _)| *position);
    let summaries: Vec<&RunSummary> = outcomes.iter().map(|(_, o)| &o.summary).collect();
    for (_, outcome) in &outcomes {
        if outcome.replayed {
            errln!(
                "run {} already finished at {}: its stored summary follows; nothing was evaluated or published again",
                outcome.summary.run_id,
                outcome.summary.finished_at
            );
        }
        outln!(
            "{}",
            vigil_coordinator::report::table::render(&outcome.summary)
        );
    }
    if let Some(path) = &args.out {
        let json = match summaries.as_slice() {
            [one] => serde_json::to_string_pretty(one),
            many => serde_json::to_string_pretty(many),
        }
        .infra_error()?;
        std::fs::write(path, json + "\n")
            .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
            .infra_error()?;
    }
    Ok(if summaries.iter().all(|s| s.passed) {
        Exit::Ok
    } else {
        Exit::GateFailed
    })
}
