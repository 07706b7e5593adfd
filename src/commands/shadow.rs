//! `vigil shadow`: replay an app's captured prompts against a candidate
//! target through the worker pool, compare it item by item with production's
//! recorded responses, and stop as soon as an anytime-valid rule can call it.
//!
//! Exit codes: 0 the candidate is not worse (better, or no difference called
//! within the budget), 1 it is worse, 2 usage or input error, 3
//! infrastructure.

use crate::cli::ShadowArgs;
use crate::exit::{CommandResult, Exit, ExitContext, Failure};
use anyhow::anyhow;
use tokio_util::sync::CancellationToken;
use vigil_coordinator::report::{ReportInput, table};
use vigil_coordinator::shadow::{
    self, Decision, PairedMetric, ShadowConfig, ShadowError, ShadowOutcome,
};

fn shadow_error(e: ShadowError) -> Failure {
    let exit = match &e {
        ShadowError::Config(_) | ShadowError::Rule(_) | ShadowError::NoCaptures { .. } => {
            Exit::Input
        }
        ShadowError::Run(e) => match e {
            vigil_coordinator::run::RunError::Validation(_)
            | vigil_coordinator::run::RunError::Suite(_)
            | vigil_coordinator::run::RunError::Dataset(_) => Exit::Input,
            _ => Exit::Infrastructure,
        },
        ShadowError::Nats(_) | ShadowError::Io(_) | ShadowError::Cancelled => Exit::Infrastructure,
    };
    Failure {
        exit,
        error: e.into(),
    }
}

pub async fn run(args: ShadowArgs) -> CommandResult {
    let suite = shadow::load_suite(&args.suite).input_error()?;
    let candidate = match &args.candidate {
        Some(name) => name.clone(),
        None => match suite.targets.as_slice() {
            [only] => only.name.clone(),
            many => {
                return Err(anyhow!(
                    "{}: the suite has {} targets ({}): name the candidate with --candidate",
                    args.suite.display(),
                    many.len(),
                    many.iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .input_error();
            }
        },
    };
    let metric = args
        .compare
        .as_deref()
        .map(|m| {
            PairedMetric::parse(m)
                .ok_or_else(|| anyhow!("--compare {m}: expected win_rate, difference or judge"))
        })
        .transpose()
        .input_error()?;
    let Some(url) = args.nats.nats.clone() else {
        return Err(anyhow!(
            "vigil shadow reads captures and dispatches to workers on a NATS server: give --nats URL (or VIGIL_NATS_URL)"
        ))
        .input_error();
    };
    let work_dir = tempfile::tempdir().infra_error()?;
    let config = ShadowConfig {
        suite,
        candidate,
        app: args.app.clone(),
        since: args.since.into(),
        budget: args.budget,
        wave: args.wave,
        alpha: args.alpha,
        metric,
        work_dir: work_dir.path().to_path_buf(),
        topology: crate::topology_env::topology_from_env().input_error()?,
        reconcile_after: crate::topology_env::reconcile_after_from_env().input_error()?,
        no_cache: args.no_cache,
    };
    // Everything checkable is checked before connecting.
    shadow::check(&config).map_err(shadow_error)?;
    for spec in config.suite.scorer_specs() {
        vigil_worker::scorers::check(&spec)
            .map_err(|e| anyhow!("{}: {e}", args.suite.display()))
            .input_error()?;
    }

    let client = crate::session::Session::connect(url, "vigil-shadow")
        .await?
        .client;
    let shutdown = CancellationToken::new();
    crate::signals::cancel_on_signal(shutdown.clone());
    let outcome = shadow::shadow(client, config, shutdown)
        .await
        .map_err(shadow_error)?;
    print_outcome(&outcome);
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&serde_json::json!({
            "verdict": outcome.verdict,
            "production": outcome.production,
            "candidate": outcome.candidate,
        }))
        .infra_error()?;
        std::fs::write(path, json + "\n")
            .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
            .infra_error()?;
    }
    if let Some(dir) = &args.report {
        write_report(dir, &outcome)?;
    }
    Ok(if outcome.verdict.decision == Decision::Worse.as_str() {
        Exit::GateFailed
    } else {
        Exit::Ok
    })
}

fn print_outcome(outcome: &ShadowOutcome) {
    outln!("{}", table::render(&outcome.production));
    outln!("{}", table::render(&outcome.candidate));
}

/// report.html, junit.xml and summary.md of the candidate's summary (with
/// the verdict), as `vigil report` writes them for a run.
fn write_report(dir: &std::path::Path, outcome: &ShadowOutcome) -> Result<(), Failure> {
    let input = ReportInput {
        summary: outcome.candidate.clone(),
        history: vec![outcome.candidate.clone()],
        latencies_ms: Vec::new(),
    };
    crate::commands::report::write(dir, &input)
}
