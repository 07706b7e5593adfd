//! `vigil export RUN --format jsonl|csv`: every item result of a run (from
//! `VIGIL_RESULTS`, `vigil.results.<run_id>.>`), for pandas or DuckDB.
//!
//! Parquet is not offered: the `parquet` crate (with arrow) would more than
//! double the binary's build; DuckDB and pandas read the JSONL and CSV
//! directly (`read_json_auto`, `read_csv_auto`, `pd.read_json(lines=True)`).

use crate::cli::{ExportArgs, ExportFormat};
use crate::commands::runs::{history_error, open_store};
use crate::exit::{CommandResult, Exit, ExitContext};
use anyhow::anyhow;
use std::collections::BTreeSet;
use std::io::Write;
use vigil_protocol::ItemResult;

pub async fn run(args: ExportArgs) -> CommandResult {
    let store = open_store(&args.store, "vigil-export").await?;
    let items = vigil_coordinator::history::item_results(&store.js, &args.run)
        .await
        .map_err(history_error)?;
    if items.is_empty() {
        return Err(anyhow!(
            "no item results of run `{}` in VIGIL_RESULTS (expired, or a wrong id?)",
            args.run
        ))
        .input_error();
    }
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| anyhow!("cannot create {}: {e}", path.display()))
                .infra_error()?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    match args.format {
        ExportFormat::Jsonl => write_jsonl(&mut out, &args.run, &items).infra_error()?,
        ExportFormat::Csv => write_csv(&mut out, &args.run, &items).infra_error()?,
    }
    out.flush().infra_error()?;
    Ok(Exit::Ok)
}

fn write_jsonl(out: &mut dyn Write, run_id: &str, items: &[ItemResult]) -> anyhow::Result<()> {
    for item in items {
        let mut value = serde_json::to_value(item)?;
        value["run_id"] = run_id.into();
        writeln!(out, "{value}")?;
    }
    Ok(())
}

/// One row per item: fixed columns, then `tag.<key>`, then
/// `<scorer>.value` and `<scorer>.passed` per scorer.
fn write_csv(out: &mut dyn Write, run_id: &str, items: &[ItemResult]) -> anyhow::Result<()> {
    let mut scorers: Vec<String> = Vec::new();
    for item in items {
        for s in &item.scores {
            if !scorers.contains(&s.scorer) {
                scorers.push(s.scorer.clone());
            }
        }
    }
    let tags: BTreeSet<&String> = items.iter().flat_map(|i| i.tags.keys()).collect();
    let mut w = csv::Writer::from_writer(out);
    let mut header: Vec<String> = [
        "run_id",
        "index",
        "id",
        "error_kind",
        "error_message",
        "latency_ms",
        "cached",
        "attempts",
        "response_model",
        "finish_reason",
        "input_tokens",
        "output_tokens",
        "output",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(tags.iter().map(|t| format!("tag.{t}")));
    for s in &scorers {
        header.push(format!("{s}.value"));
        header.push(format!("{s}.passed"));
    }
    w.write_record(&header)?;
    for item in items {
        let mut row = vec![
            run_id.to_string(),
            item.index.to_string(),
            item.id.clone(),
            item.error
                .as_ref()
                .map(|e| e.kind.to_string())
                .unwrap_or_default(),
            item.error
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default(),
            item.latency_ms.to_string(),
            item.cached.to_string(),
            item.attempts.to_string(),
            item.response_model.clone().unwrap_or_default(),
            item.finish_reason.clone().unwrap_or_default(),
            item.usage.input.to_string(),
            item.usage.output.to_string(),
            item.output.clone().unwrap_or_default(),
        ];
        row.extend(
            tags.iter()
                .map(|t| item.tags.get(*t).cloned().unwrap_or_default()),
        );
        for s in &scorers {
            match item.scores.iter().find(|x| &x.scorer == s) {
                Some(x) => {
                    row.push(x.value.to_string());
                    row.push(x.passed.to_string());
                }
                None => row.extend([String::new(), String::new()]),
            }
        }
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}
