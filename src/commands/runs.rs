//! `vigil runs list|show|pin|retention`: the run history in `VIGIL_RUNS`.
//!
//! Every history command reads either the server named by `--nats`, or,
//! without it, the embedded mode's store under `--state-dir` (the same one
//! `vigil run` writes to), through [`crate::session::open_store`].

use crate::cli::{RunsArgs, RunsCommand};
use crate::exit::{CommandResult, Exit, ExitContext, Failure};
use crate::session::open_store;
use async_nats::jetstream;
use vigil_coordinator::history::{self, HistoryError};
use vigil_protocol::RunSummary;

/// A history error with its exit code: an unknown run is the user's input.
pub fn history_error(e: HistoryError) -> Failure {
    let exit = match e {
        HistoryError::NotFound(_) => Exit::Input,
        HistoryError::Nats(_) => Exit::Infrastructure,
    };
    Failure {
        exit,
        error: e.into(),
    }
}

/// The main metric of a summary: the first scorer's pass rate.
pub fn main_metric(s: &RunSummary) -> Option<(&str, f64)> {
    s.scores
        .iter()
        .next()
        .map(|(name, score)| (name.as_str(), score.pass_rate))
}

pub async fn run(args: RunsArgs) -> CommandResult {
    match args.command {
        RunsCommand::List {
            suite,
            target,
            json,
            store,
        } => {
            let store = open_store(&store, "vigil-runs").await?;
            let entries = history::list(
                &store.js,
                suite.as_deref(),
                target.as_deref(),
                store.js_timeout,
            )
            .await
            .map_err(history_error)?;
            if json {
                for e in &entries {
                    outln!("{}", serde_json::to_string(&e.summary).infra_error()?);
                }
            } else {
                outln!(
                    "{:<36}  {:<16} {:<16} {:<24} {:>7} {:>9}  VERDICT",
                    "RUN",
                    "SUITE",
                    "TARGET",
                    "FINISHED",
                    "ITEMS",
                    "MAIN"
                );
                for e in &entries {
                    let s = &e.summary;
                    let main = main_metric(s)
                        .map(|(n, v)| format!("{n}={v:.3}"))
                        .unwrap_or_default();
                    outln!(
                        "{:<36}  {:<16} {:<16} {:<24} {:>7} {:>9}  {}",
                        s.run_id,
                        s.suite,
                        s.target,
                        s.finished_at,
                        s.items_total,
                        main,
                        if s.passed { "passed" } else { "FAILED" }
                    );
                }
            }
            Ok(Exit::Ok)
        }
        RunsCommand::Show { run, store } => {
            let store = open_store(&store, "vigil-runs").await?;
            let summary = history::find(&store.js, &run, store.js_timeout)
                .await
                .map_err(history_error)?;
            outln!("{}", serde_json::to_string_pretty(&summary).infra_error()?);
            Ok(Exit::Ok)
        }
        RunsCommand::Pin { run, store } => {
            let store = open_store(&store, "vigil-runs").await?;
            let summary = history::find(&store.js, &run, store.js_timeout)
                .await
                .map_err(history_error)?;
            history::pin(&store.js, &summary)
                .await
                .map_err(history_error)?;
            outln!(
                "pinned {} as the baseline of {}/{} ({})",
                summary.run_id,
                summary.suite,
                summary.target,
                history::pin_key(&summary.suite, &summary.target)
            );
            Ok(Exit::Ok)
        }
        RunsCommand::Cancel { run, store } => {
            let store = open_store(&store, "vigil-runs").await?;
            cancel(&store.js, &run).await
        }
        RunsCommand::Retention { max_age, store } => {
            let store = open_store(&store, "vigil-runs").await?;
            history::set_retention(&store.js, max_age.into())
                .await
                .map_err(history_error)?;
            outln!("VIGIL_RUNS keeps summaries for {max_age} (0s: forever)");
            Ok(Exit::Ok)
        }
    }
}

/// `vigil runs cancel RUN`: exit 0 when the run is (or already was)
/// cancelled or had finished, 2 when no such run is recorded.
async fn cancel(js: &jetstream::Context, run: &str) -> CommandResult {
    use vigil_coordinator::resume::{self, CancelOutcome, ResumeError};
    match resume::cancel(js, run).await {
        Ok(CancelOutcome::Cancelled(s)) => outln!(
            "cancelled run {run} ({}/{}): its coordinator stops, workers skip its remaining jobs",
            s.suite,
            s.target
        ),
        Ok(CancelOutcome::AlreadyCancelled(s)) => {
            outln!("run {run} ({}/{}) was already cancelled", s.suite, s.target)
        }
        Ok(CancelOutcome::AlreadyFinished(s)) => outln!(
            "run {run} ({}/{}) already finished: nothing to cancel",
            s.suite,
            s.target
        ),
        Err(ResumeError::NotFound { .. }) => {
            return Err(anyhow::anyhow!(
                "no run `{run}` in the `vigil-runs` bucket: nothing to cancel (was it started against this NATS server?)"
            ))
            .input_error();
        }
        Err(e) => return Err(anyhow::anyhow!(e)).infra_error(),
    }
    Ok(Exit::Ok)
}
