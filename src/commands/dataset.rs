//! `vigil dataset push|list|show|pull|promote`: versioned datasets in the
//! `vigil-artifacts` object store (see docs/production.md, "The way back").

use crate::cli::{DatasetArgs, DatasetCommand, DatasetFileFormat, StoreArgs};
use crate::exit::{CommandResult, Exit, ExitContext, Failure};
use crate::session::open_store;
use anyhow::anyhow;
use std::path::Path;
use vigil_coordinator::dataset_store::{
    self, DatasetRef, DatasetStoreError, PushOptions, VersionInfo,
};
use vigil_coordinator::promote::{self, filter::Filter};
use vigil_coordinator::suite::DatasetFormat;

/// A dataset-store error with its exit code: unknown names and versions and
/// bad files are the user's input (2), NATS failures infrastructure (3).
pub fn store_error(e: DatasetStoreError) -> Failure {
    Failure {
        exit: if e.is_input() {
            Exit::Input
        } else {
            Exit::Infrastructure
        },
        error: e.into(),
    }
}

fn parse_ref(text: &str) -> Result<DatasetRef, Failure> {
    text.parse::<DatasetRef>()
        .map_err(|e| anyhow!("{text}: {e}"))
        .input_error()
}

fn file_format(path: &Path, format: Option<DatasetFileFormat>) -> Result<DatasetFormat, Failure> {
    if let Some(f) = format {
        return Ok(match f {
            DatasetFileFormat::Jsonl => DatasetFormat::Jsonl,
            DatasetFileFormat::Csv => DatasetFormat::Csv,
        });
    }
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jsonl" | "ndjson") => Ok(DatasetFormat::Jsonl),
        Some("csv") => Ok(DatasetFormat::Csv),
        _ => Err(anyhow!(
            "{}: cannot tell the format from the extension (.jsonl, .ndjson, .csv); pass --format jsonl or --format csv",
            path.display()
        ))
        .input_error(),
    }
}

pub async fn run(args: DatasetArgs) -> CommandResult {
    match args.command {
        DatasetCommand::Push {
            file,
            name,
            format,
            append,
            store,
        } => push(&file, &name, format, append, &store).await,
        DatasetCommand::List { json, store } => list(json, &store).await,
        DatasetCommand::Show {
            dataset,
            json,
            store,
        } => show(&dataset, json, &store).await,
        DatasetCommand::Pull {
            dataset,
            out,
            store,
        } => pull(&dataset, out.as_deref(), &store).await,
        DatasetCommand::Promote {
            app,
            since,
            filter,
            to,
            monitor,
            out,
            store,
        } => {
            promote(
                &app,
                since.into(),
                &filter,
                &to,
                monitor.as_deref(),
                out.as_deref(),
                &store,
            )
            .await
        }
    }
}

fn short(version: &str) -> &str {
    &version[..version.len().min(12)]
}

async fn push(
    file: &Path,
    name: &str,
    format: Option<DatasetFileFormat>,
    append: bool,
    store: &StoreArgs,
) -> CommandResult {
    dataset_store::check_name(name)
        .map_err(|e| anyhow!("--name: {e}"))
        .input_error()?;
    let format = file_format(file, format)?;
    if !file.is_file() {
        return Err(anyhow!("{}: no such file", file.display())).input_error();
    }
    let source = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let s = open_store(store, "vigil-dataset").await?;
    if append {
        // A bad line fails the push before anything is stored.
        let items = dataset_store::read_items(file, format)
            .map_err(DatasetStoreError::from)
            .map_err(store_error)?;
        let provenance = format!("appended from {source} (vigil dataset push --append)");
        let ext = dataset_store::extend(&s.js, name, items, &source, &provenance)
            .await
            .map_err(store_error)?;
        report_extended(name, &ext);
        return Ok(Exit::Ok);
    }
    let pushed = dataset_store::push_file(
        &s.js,
        name,
        file,
        format,
        PushOptions {
            source: source.clone(),
            provenance: format!("pushed from {source}"),
            parent: None,
        },
    )
    .await
    .map_err(store_error)?;
    let info = &pushed.info;
    if pushed.stored {
        outln!(
            "pushed {name}@{} ({} items, {} bytes); it is the latest version",
            info.version,
            info.items,
            info.bytes
        );
    } else {
        outln!(
            "{name}@{} is already stored ({} items, same content): no new version; it is the latest version",
            info.version,
            info.items
        );
    }
    Ok(Exit::Ok)
}

fn report_extended(name: &str, ext: &dataset_store::Extended) {
    let from = ext
        .parent
        .as_ref()
        .map(|p| format!("{name}@{} ({} items)", p.version, p.items))
        .unwrap_or_else(|| format!("a new dataset `{name}`"));
    match &ext.pushed {
        Some(p) => outln!(
            "pushed {name}@{} ({} items): {} added to {from}, {} duplicate(s) left out; it is the latest version",
            p.info.version,
            p.info.items,
            ext.added,
            ext.duplicates
        ),
        None => outln!(
            "nothing new: {} duplicate(s) of {from} or of each other; no new version",
            ext.duplicates
        ),
    }
}

async fn list(json: bool, store: &StoreArgs) -> CommandResult {
    let s = open_store(store, "vigil-dataset").await?;
    let versions = dataset_store::list(&s.js, None)
        .await
        .map_err(store_error)?;
    if json {
        for v in &versions {
            outln!("{}", serde_json::to_string(v).infra_error()?);
        }
        return Ok(Exit::Ok);
    }
    if versions.is_empty() {
        outln!("no datasets (store one with `vigil dataset push FILE --name NAME`)");
        return Ok(Exit::Ok);
    }
    outln!(
        "{:<24} {:>8} {:<14} {:>8} {:<20} source",
        "name",
        "versions",
        "latest",
        "items",
        "created"
    );
    for (name, vs) in dataset_store::by_name(&versions) {
        let latest = vs.iter().find(|v| v.latest).or(vs.last()).copied();
        if let Some(l) = latest {
            outln!(
                "{:<24} {:>8} {:<14} {:>8} {:<20} {}",
                name,
                vs.len(),
                short(&l.version),
                l.items,
                l.created,
                l.source
            );
        }
    }
    Ok(Exit::Ok)
}

async fn show(dataset: &str, json: bool, store: &StoreArgs) -> CommandResult {
    let r = parse_ref(dataset)?;
    let s = open_store(store, "vigil-dataset").await?;
    let info = dataset_store::resolve(&s.js, &r.name, &r.version)
        .await
        .map_err(store_error)?;
    let versions = dataset_store::list(&s.js, Some(&r.name))
        .await
        .map_err(store_error)?;
    if json {
        let out = serde_json::json!({ "version": info, "versions": versions });
        outln!("{}", serde_json::to_string_pretty(&out).infra_error()?);
        return Ok(Exit::Ok);
    }
    print_version(&info);
    outln!("versions (oldest first):");
    for v in &versions {
        outln!(
            "  {}{} {:>8} items  {}  {}",
            v.version,
            if v.latest { " (latest)" } else { "" },
            v.items,
            v.created,
            v.source
        );
    }
    Ok(Exit::Ok)
}

fn print_version(v: &VersionInfo) {
    outln!("dataset:    {}", v.name);
    outln!(
        "version:    {}{}",
        v.version,
        if v.latest { " (latest)" } else { "" }
    );
    outln!("format:     {}", dataset_store::format_name(v.format));
    outln!("items:      {}", v.items);
    outln!("bytes:      {}", v.bytes);
    outln!("created:    {}", v.created);
    outln!("source:     {}", v.source);
    outln!("provenance: {}", v.provenance);
    if let Some(parent) = &v.parent {
        outln!("parent:     {parent}");
    }
}

async fn pull(dataset: &str, out: Option<&Path>, store: &StoreArgs) -> CommandResult {
    let r = parse_ref(dataset)?;
    let s = open_store(store, "vigil-dataset").await?;
    let info = dataset_store::resolve(&s.js, &r.name, &r.version)
        .await
        .map_err(store_error)?;
    match out {
        Some(path) => {
            let mut file = tokio::fs::File::create(path)
                .await
                .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
                .input_error()?;
            let n = dataset_store::pull(&s.js, &info, &mut file)
                .await
                .map_err(store_error)?;
            errln!(
                "wrote {}@{} ({} items, {n} bytes) to {}",
                info.name,
                info.version,
                info.items,
                path.display()
            );
        }
        None => {
            dataset_store::pull(
                &s.js,
                &info,
                &mut crate::output::PipeSafe(tokio::io::stdout()),
            )
            .await
            .map_err(store_error)?;
        }
    }
    Ok(Exit::Ok)
}

async fn promote(
    app: &str,
    since: std::time::Duration,
    filter_text: &str,
    to: &str,
    monitor: Option<&str>,
    out: Option<&Path>,
    store: &StoreArgs,
) -> CommandResult {
    let filter = Filter::parse(filter_text)
        .map_err(|e| anyhow!("{}", e.display_with(filter_text)))
        .input_error()?;
    dataset_store::check_name(to)
        .map_err(|e| anyhow!("--to: {e}"))
        .input_error()?;
    let start = std::time::SystemTime::now()
        .checked_sub(since)
        .unwrap_or(std::time::UNIX_EPOCH);
    let s = open_store(store, "vigil-dataset").await?;
    let selection = promote::select(&s.js, app, monitor, start, &filter)
        .await
        .map_err(|e| match e {
            promote::PromoteError::UnknownScorers { .. } => Failure {
                exit: Exit::Input,
                error: e.into(),
            },
            other => Failure {
                exit: Exit::Infrastructure,
                error: other.into(),
            },
        })?;
    let since_text = humantime::format_duration(since);
    errln!(
        "read {} capture(s) of app `{app}` from the last {since_text} ({} with online scores from {} monitor run(s)); {} match --where{}",
        selection.captures,
        selection.scored,
        selection.monitor_runs.len(),
        selection.items.len(),
        if selection.undecodable > 0 {
            format!(" ({} undecodable skipped)", selection.undecodable)
        } else {
            String::new()
        }
    );
    let items = selection.items.into_iter().map(Ok);
    if let Some(path) = out {
        let (written, duplicates) = dataset_store::write_new_items(&s.js, to, items, path)
            .await
            .map_err(store_error)?;
        outln!(
            "wrote {written} candidate(s) to {} ({duplicates} duplicate(s) of `{to}`'s latest version or of each other left out); review it, then `vigil dataset push {} --name {to} --append`",
            path.display(),
            path.display()
        );
        return Ok(Exit::Ok);
    }
    let runs = if selection.monitor_runs.is_empty() {
        "none".to_string()
    } else {
        selection.monitor_runs.join(", ")
    };
    let provenance = format!(
        "promoted captures of app {app} from the last {since_text} where {filter_text} (monitor runs: {runs})"
    );
    let ext = dataset_store::extend(&s.js, to, items, "promote", &provenance)
        .await
        .map_err(store_error)?;
    report_extended(to, &ext);
    Ok(Exit::Ok)
}

/// Fetches a suite's named dataset (`dataset: { name, version }`) and points
/// the suite at the local copy; nothing to do for a dataset file. When one
/// of `run_ids` is a recorded run (a resume), the version it started with is
/// read, whatever `latest` is now.
pub async fn fetch_for_suite(
    js: &async_nats::jetstream::Context,
    suite: &mut vigil_coordinator::suite::Suite,
    run_ids: &[String],
) -> Result<Option<dataset_store::Fetched>, Failure> {
    if suite.dataset.named.is_none() {
        return Ok(None);
    }
    let mut recorded = None;
    for id in run_ids {
        if let Ok(Some(state)) = vigil_coordinator::resume::load(js, id).await
            && !state.dataset_sha256.is_empty()
        {
            recorded = Some(state.dataset_sha256);
            break;
        }
    }
    let fetched = dataset_store::fetch(js, &mut suite.dataset, recorded.as_deref())
        .await
        .map_err(|e| {
            let f = store_error(e);
            Failure {
                error: f
                    .error
                    .context(format!("{}: dataset", suite.path.display())),
                ..f
            }
        })?;
    if let Some(f) = &fetched {
        tracing::info!(dataset = %f.info.name, version = %f.info.version, items = f.info.items, "named dataset fetched");
    }
    Ok(fetched)
}
