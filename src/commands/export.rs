//! `vigil export RUN --format jsonl|csv|parquet`: every item result of a run
//! (from `VIGIL_RESULTS`, `vigil.results.<run_id>.>`), for pandas or DuckDB.
//!
//! Parquet is streamed: one pass over the results ([`history::replay`],
//! each index once) finds the scorer and tag columns, a second writes the
//! rows a row group at a time ([`export_parquet`](super::export_parquet)),
//! so memory stays bounded. The columns are
//! [`vigil_coordinator::export`]'s, as in the CSV.

use crate::cli::{ExportArgs, ExportFormat};
use crate::commands::export_parquet::ParquetExport;
use crate::commands::runs::history_error;
use crate::exit::{CommandResult, Exit, ExitContext};
use crate::session::open_store;
use anyhow::anyhow;
use std::io::Write;
use vigil_coordinator::export::{Cell, ExportColumns};
use vigil_coordinator::history;
use vigil_protocol::ItemResult;

pub async fn run(args: ExportArgs) -> CommandResult {
    let store = open_store(&args.store, "vigil-export").await?;
    if args.format == ExportFormat::Parquet {
        return parquet(&store.js, &args).await;
    }
    let items = history::item_results(&store.js, &args.run)
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
        ExportFormat::Parquet => unreachable!("streamed above"),
    }
    out.flush().infra_error()?;
    Ok(Exit::Ok)
}

/// Two passes over the run's results: the columns, then the rows.
async fn parquet(js: &async_nats::jetstream::Context, args: &ExportArgs) -> CommandResult {
    // The summary bounds the indices; a run that never finished has none.
    let items_total = history::find(js, &args.run)
        .await
        .ok()
        .map(|s| s.items_total);
    let mut columns = ExportColumns::default();
    let items = history::replay(js, &args.run, items_total, |item| {
        columns.observe(&item);
        Ok::<_, anyhow::Error>(())
    })
    .await
    .infra_error()?;
    if items == 0 {
        return Err(anyhow!(
            "no item results of run `{}` in VIGIL_RESULTS (expired, or a wrong id?)",
            args.run
        ))
        .input_error();
    }
    let out: Box<dyn Write + Send> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| anyhow!("cannot create {}: {e}", path.display()))
                .infra_error()?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut file = ParquetExport::new(
        std::io::BufWriter::new(out),
        &args.run,
        columns,
        args.row_group_rows as usize,
    )
    .infra_error()?;
    history::replay(js, &args.run, items_total, |item| file.push(&item))
        .await
        .infra_error()?;
    file.finish().infra_error()?.flush().infra_error()?;
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

/// One row per item, the columns of [`ExportColumns`] as text.
fn write_csv(out: &mut dyn Write, run_id: &str, items: &[ItemResult]) -> anyhow::Result<()> {
    let columns = ExportColumns::of(items);
    let mut w = csv::Writer::from_writer(out);
    w.write_record(columns.columns().iter().map(|c| c.name.as_str()))?;
    for item in items {
        w.write_record(columns.row(run_id, item).iter().map(Cell::to_text))?;
    }
    w.flush()?;
    Ok(())
}
