//! `vigil export RUN --format jsonl|csv|parquet`: every item result of a run
//! (from `VIGIL_RESULTS`, `vigil.results.<run_id>.>`), for pandas or DuckDB.
//!
//! Every format is streamed, in the order the results were published (each
//! index once, [`history::replay`]), so memory stays bounded whatever the
//! number of items: JSONL in one pass, a line per item; CSV and Parquet in
//! two, one finding the scorer and tag columns, one writing the rows (CSV a
//! line at a time, Parquet a row group at a time,
//! [`export_parquet`](super::export_parquet)). The columns are
//! [`vigil_coordinator::export`]'s.

use crate::cli::{ExportArgs, ExportFormat};
use crate::commands::export_parquet::ParquetExport;
use crate::exit::{CommandResult, Exit, ExitContext};
use crate::session::open_store;
use anyhow::anyhow;
use std::io::Write;
use vigil_coordinator::export::{Cell, ExportColumns};
use vigil_coordinator::history;

pub async fn run(args: ExportArgs) -> CommandResult {
    let store = open_store(&args.store, "vigil-export").await?;
    let js = &store.js;
    // The summary bounds the indices; a run that never finished has none.
    let items_total = history::find(js, &args.run, store.js_timeout)
        .await
        .ok()
        .map(|s| s.items_total);
    if args.format == ExportFormat::Jsonl {
        // One pass; the output is created at the first item, so a run with
        // none leaves no empty file behind.
        let mut out = None;
        let items = history::replay(js, &args.run, items_total, |item| {
            let out = match &mut out {
                Some(out) => out,
                None => out.insert(output(&args)?),
            };
            let mut value = serde_json::to_value(&item)?;
            value["run_id"] = args.run.as_str().into();
            writeln!(out, "{value}")?;
            Ok::<_, anyhow::Error>(())
        })
        .await
        .infra_error()?;
        return match out {
            Some(mut out) if items > 0 => {
                out.flush().infra_error()?;
                Ok(Exit::Ok)
            }
            _ => no_items(&args.run),
        };
    }
    // First pass: the columns.
    let mut columns = ExportColumns::default();
    let items = history::replay(js, &args.run, items_total, |item| {
        columns.observe(&item);
        Ok::<_, anyhow::Error>(())
    })
    .await
    .infra_error()?;
    if items == 0 {
        return no_items(&args.run);
    }
    // Second pass: the rows.
    let out = output(&args).infra_error()?;
    match args.format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(columns.columns().iter().map(|c| c.name.as_str()))
                .infra_error()?;
            history::replay(js, &args.run, items_total, |item| {
                w.write_record(columns.row(&args.run, &item).iter().map(Cell::to_text))?;
                Ok::<_, anyhow::Error>(())
            })
            .await
            .infra_error()?;
            w.into_inner()
                .map_err(|e| anyhow!("cannot write the CSV: {}", e.error()))
                .infra_error()?
                .flush()
                .infra_error()?;
        }
        ExportFormat::Parquet => {
            let mut file =
                ParquetExport::new(out, &args.run, columns, args.row_group_rows as usize)
                    .infra_error()?;
            history::replay(js, &args.run, items_total, |item| file.push(&item))
                .await
                .infra_error()?;
            file.finish().infra_error()?.flush().infra_error()?;
        }
        ExportFormat::Jsonl => unreachable!("streamed above"),
    }
    Ok(Exit::Ok)
}

/// Where the rows go: `--out FILE`, else stdout; buffered.
fn output(args: &ExportArgs) -> anyhow::Result<std::io::BufWriter<Box<dyn Write + Send>>> {
    let out: Box<dyn Write + Send> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| anyhow!("cannot create {}: {e}", path.display()))?,
        ),
        None => Box::new(crate::output::PipeSafe(std::io::stdout())),
    };
    Ok(std::io::BufWriter::new(out))
}

fn no_items(run: &str) -> CommandResult {
    Err(anyhow!(
        "no item results of run `{run}` in VIGIL_RESULTS (expired, or a wrong id?)"
    ))
    .input_error()
}
