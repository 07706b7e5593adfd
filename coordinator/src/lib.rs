//! vigil's coordinator: turns a suite into jobs, aggregates results into a
//! run summary with confidence intervals, and gates on it.
//!
//! It never calls a model backend: workers do.

pub mod aggregate;
pub mod alerts;
pub mod compare;
pub mod continuous;
pub mod dataset;
pub mod dispatch;
pub mod gates;
pub mod history;
pub mod item_ids;
pub mod manifest;
pub mod metrics;
mod reconcile;
pub mod render;
pub mod report;
pub mod resume;
pub mod run;
pub mod scores_store;
pub mod slices;
pub mod stats;
pub mod suite;
pub mod table;
pub mod table_text;
pub mod text_metrics;
pub mod validate;
