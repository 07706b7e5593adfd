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
        for item in &result.items {
            let outcome = match &item.error {
                None => "scored",
                Some(error) => {
                    self.items_failed
                        .get_or_create(&vec![("kind", error.kind.as_str().to_string())])
                        .inc();
                    "failed"
                }
            };
            self.items
                .get_or_create(&vec![("outcome", outcome.to_string())])
                .inc();
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
