//! vigil's coordinator: turns a suite into jobs, aggregates results into a
//! run summary with confidence intervals, and gates on it.
//!
//! It never calls a model backend: workers do.
//!
//! # Layout
//!
//! A run flows one way through these groups of modules; [`run::run`] drives
//! one run (a suite against one target) from the dataset to the published
//! summary.
//!
//! **Plan**: what to evaluate, checked before anything is published.
//!
//! - [`suite`]: the suite file. `mod.rs` holds the suite types, `load` and
//!   [`suite::cache_policy`] (the run's response-cache policy),
//!   `raw.rs` the file format as written, `check.rs` the checker (errors
//!   name the file, field and line), `scorers.rs` the scorer entries (read
//!   into `vigil_protocol::ScorerKind`), with `text_scorers.rs`,
//!   `io_scorers.rs` and `code_exec.rs` for the kinds with suite-only keys.
//! - [`validate`]: `vigil validate` (every item rendered for every target
//!   kind) and [`validate::check_suite`], the check before publish.
//! - [`dataset`]: streaming JSONL and CSV readers.
//! - [`dataset_store`]: versioned datasets in the `vigil-artifacts` object
//!   store (push, resolve, pull, extend), which suites name with
//!   `dataset: { name, version }`.
//! - [`promote`]: captures and their online scores into dataset items,
//!   selected with the `--where` filter language ([`promote::filter`]).
//! - [`render`]: dataset records into wire items (prompt, references, id,
//!   tags, judge rubrics).
//!
//! **Dispatch**: jobs out.
//!
//! - [`run`]: one run, in the order that never loses an item.
//! - [`dispatch`]: shards of items become jobs on `vigil.jobs.<pool>`.
//! - [`resume`]: run state in the `vigil-runs` bucket; resuming a run whose
//!   coordinator died.
//!
//! **Collect**: results in.
//!
//! - [`aggregate`]: job results into a [`vigil_protocol::RunSummary`],
//!   each item once ([`index_set::IndexSet`], shared with
//!   [`history::replay`]).
//! - `reconcile` (private): jobs that will never answer are failed, not
//!   waited for.
//! - [`stats`]: incremental, mergeable statistics (intervals, latency,
//!   Welford); [`slices`]: per-tag accumulators; [`text_metrics`]: corpus
//!   BLEU and per-class metrics.
//! - [`metrics`]: the coordinator's Prometheus metrics.
//!
//! **After the run**: what a finished summary goes through.
//!
//! - [`gates`]: the conditions that decide the exit code.
//! - [`baseline`]: after a run, its per-item scores stored, the baseline
//!   chosen and the paired comparison with it (manifest differences,
//!   flipped items named).
//! - [`manifest`]: everything that determines a summary.
//! - [`scores_store`] and [`item_ids`]: per-item scores and ids kept for
//!   later comparisons.
//! - [`compare`]: paired comparison of two runs (bootstrap, McNemar, Holm).
//! - [`history`]: the run history, baselines and retention.
//! - [`alerts`]: a failed gate published on `vigil.alerts.<suite>`.
//! - [`drift`]: sequential drift detectors on a stream of per-item scores
//!   (an e-detector with a stated false-alarm rate, static thresholds).
//! - [`shadow`]: a candidate replayed on captured prompts against
//!   production's recorded responses, stopped by an anytime-valid rule.
//!
//! **Online**: [`monitor`] (`vigil monitor`) scores captured production
//! traffic through the same jobs, windows it into runs and feeds [`drift`].
//!
//! **Output**: for people and CI.
//!
//! - [`report`]: the terminal table (`report::table`, `report::table_text`),
//!   HTML, JUnit XML and Markdown.
//! - [`export`]: the column schema of `vigil export` (one list for CSV and
//!   Parquet) and an item's row of typed cells.
//!
//! Where a new scorer kind, backend kind, command or wire field goes: the
//! README's "Layout" section.

pub mod aggregate;
pub mod alerts;
pub mod baseline;
pub mod compare;
pub mod dataset;
pub mod dataset_store;
pub mod dispatch;
pub mod drift;
pub mod export;
pub mod gates;
pub mod history;
pub mod index_set;
pub mod item_ids;
pub mod manifest;
pub mod metrics;
pub mod monitor;
pub mod promote;
mod reconcile;
pub mod render;
pub mod report;
pub mod resume;
pub mod run;
pub mod scores_store;
pub mod shadow;
pub mod slices;
pub mod stats;
pub mod suite;
pub mod text_metrics;
pub mod validate;
