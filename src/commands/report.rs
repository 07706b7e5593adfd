//! `vigil report RUN --out DIR`: report.html (self-contained, inline SVG
//! charts), junit.xml and summary.md.

use crate::cli::ReportArgs;
use crate::commands::runs::history_error;
use crate::exit::{CommandResult, Exit, ExitContext};
use crate::session::open_store;
use anyhow::anyhow;
use vigil_coordinator::history;
use vigil_coordinator::report::{ReportInput, html, junit, markdown};

pub async fn run(args: ReportArgs) -> CommandResult {
    let store = open_store(&args.store, "vigil-report").await?;
    let summary = history::find(&store.js, &args.run, store.js_timeout)
        .await
        .map_err(history_error)?;
    let runs = history::list(
        &store.js,
        Some(&summary.suite),
        Some(&summary.target),
        store.js_timeout,
    )
    .await
    .map_err(history_error)?
    .into_iter()
    .map(|e| e.summary)
    .collect();
    // Results may have expired (results_max_age): the histogram is then empty.
    let mut latencies_ms = Vec::new();
    let replayed = history::replay(
        &store.js,
        &summary.run_id,
        Some(summary.items_total),
        |item| {
            if item.is_scored() && !item.cached {
                latencies_ms.push(item.latency_ms);
            }
            Ok::<_, history::HistoryError>(())
        },
    )
    .await;
    if replayed.is_err() {
        latencies_ms.clear();
    }
    let input = ReportInput {
        summary,
        history: runs,
        latencies_ms,
    };
    write(&args.out, &input)?;
    outln!(
        "wrote report.html, junit.xml and summary.md to {}",
        args.out.display()
    );
    Ok(Exit::Ok)
}

/// Writes report.html, junit.xml and summary.md of `input` into `dir`
/// (created if missing).
pub fn write(dir: &std::path::Path, input: &ReportInput) -> Result<(), crate::exit::Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))
        .infra_error()?;
    for (name, text) in [
        ("report.html", html::render(input)),
        ("junit.xml", junit::render(&input.summary)),
        ("summary.md", markdown::render(&input.summary)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
            .infra_error()?;
    }
    Ok(())
}
