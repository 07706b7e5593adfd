//! The coordinator's Prometheus metrics: what its runs counted.
//!
//! One [`CoordinatorMetrics`] serves every run of a process; the binary
//! registers it and serves `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use vigil_protocol::JobResult;

/// Label set: one `(name, value)` pair.
pub type Labels = Vec<(&'static str, String)>;

/// Counters of the runs of one coordinator process.
#[derive(Debug, Default)]
pub struct CoordinatorMetrics {
    /// Item results received, by outcome (`scored`, `failed`).
    pub items: Family<Labels, Counter>,
    /// Item results dropped because the item was already counted.
    pub duplicate_items: Counter,
    /// Failed item results by error kind.
    pub items_failed: Family<Labels, Counter>,
    /// Result messages that could not be decoded.
    pub malformed_results: Counter,
    /// Jobs published (server-acknowledged).
    pub jobs_dispatched: Counter,
    /// Runs finished, by `passed` (`true`/`false`).
    pub runs: Family<Labels, Counter>,
    /// Runs in progress now.
    pub runs_active: Gauge,
}

impl CoordinatorMetrics {
    /// Counts a job result; `duplicates` of its items had been counted
    /// before (a redelivered job) and are counted as duplicates only.
    pub fn observe_result(&self, result: &JobResult, duplicates: u64) {
        if duplicates > 0 {
            self.duplicate_items.inc_by(duplicates);
            if duplicates >= result.items.len() as u64 {
                return;
            }
        }
        // Tallied per job, then one label lookup per outcome and kind: a
        // label set is built and hashed per job, not per item.
        let mut scored = 0u64;
        let mut failed: Vec<(&str, u64)> = Vec::new();
        for item in &result.items {
            match &item.error {
                None => scored += 1,
                Some(error) => {
                    let kind = error.kind.as_str();
                    match failed.iter_mut().find(|(k, _)| *k == kind) {
                        Some((_, n)) => *n += 1,
                        None => failed.push((kind, 1)),
                    }
                }
            }
        }
        let failed_total: u64 = failed.iter().map(|(_, n)| n).sum();
        for (kind, n) in failed {
            self.items_failed
                .get_or_create(&vec![("kind", kind.to_string())])
                .inc_by(n);
        }
        for (outcome, n) in [("scored", scored), ("failed", failed_total)] {
            if n > 0 {
                self.items
                    .get_or_create(&vec![("outcome", outcome.to_string())])
                    .inc_by(n);
            }
        }
    }

    /// Registers these metrics (the caller's registry adds its prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "coordinator_items",
            "Item results received by outcome",
            self.items.clone(),
        );
        registry.register(
            "coordinator_items_failed",
            "Failed item results by error kind",
            self.items_failed.clone(),
        );
        registry.register(
            "coordinator_malformed_results",
            "Result messages that could not be decoded",
            self.malformed_results.clone(),
        );
        registry.register(
            "coordinator_jobs_dispatched",
            "Jobs published and acknowledged by the server",
            self.jobs_dispatched.clone(),
        );
        registry.register(
            "coordinator_duplicate_items",
            "Item results dropped as already counted",
            self.duplicate_items.clone(),
        );
        registry.register(
            "coordinator_runs",
            "Runs finished by gate outcome",
            self.runs.clone(),
        );
        registry.register(
            "coordinator_runs_active",
            "Runs in progress",
            self.runs_active.clone(),
        );
    }
}
