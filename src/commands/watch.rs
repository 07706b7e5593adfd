//! `vigil watch`: live progress (`vigil.events.>`, core NATS) and finished
//! summaries (`vigil.runs.>`) as they happen.

use crate::cli::WatchArgs;
use crate::exit::{CommandResult, Exit, ExitContext};
use crate::session::open_store;
use futures::StreamExt;
use vigil_protocol::{ProgressEvent, RunSummary};

pub async fn run(args: WatchArgs) -> CommandResult {
    if args.store.nats.nats.is_none() {
        // An embedded server lives only inside its `vigil run`: a second
        // private server would see nothing (and would hold the store).
        return Err(anyhow::anyhow!(
            "vigil watch needs --nats URL (or VIGIL_NATS_URL): the embedded mode's server is private to its `vigil run`"
        ))
        .input_error();
    }
    let store = open_store(&args.store, "vigil-watch").await?;
    let mut events = store
        .client
        .subscribe("vigil.events.>")
        .await
        .infra_error()?;
    let mut summaries = store
        .client
        .subscribe(vigil_protocol::subjects::RUNS_ALL)
        .await
        .infra_error()?;
    store.client.flush().await.infra_error()?;
    errln!("watching vigil.events.> and vigil.runs.> (Ctrl-C to stop)");
    let mut seen = 0usize;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            Some(m) = events.next() => {
                let Ok(e) = vigil_protocol::decode::<ProgressEvent>(&m.payload) else { continue };
                if args.json {
                    outln!("{}", serde_json::json!({"event": "progress", "progress": e}));
                } else {
                    outln!(
                        "progress {} {}/{} {:?} {}/{} done, {} failed, {:.1} items/s",
                        e.run_id, e.suite, e.target, e.phase, e.done, e.total, e.failed, e.items_per_s
                    );
                }
            }
            Some(m) = summaries.next() => {
                let Ok(s) = vigil_protocol::decode::<RunSummary>(&m.payload) else { continue };
                if args.json {
                    outln!("{}", serde_json::json!({"event": "summary", "summary": s}));
                } else {
                    let main = crate::commands::runs::main_metric(&s)
                        .map(|(n, v)| format!("{n}.pass_rate={v:.4}"))
                        .unwrap_or_default();
                    outln!(
                        "summary  {} {}/{} {} items, {} {}",
                        s.run_id, s.suite, s.target, s.items_total, main,
                        if s.passed { "passed" } else { "FAILED" }
                    );
                }
                seen += 1;
                if args.summaries.is_some_and(|n| seen >= n) {
                    break;
                }
            }
            else => break,
        }
    }
    Ok(Exit::Ok)
}
