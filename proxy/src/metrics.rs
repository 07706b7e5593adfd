//! The proxy's Prometheus metrics (`vigil_proxy_*` in the process registry).

use crate::publish::DropReason;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// Counters and gauges of one proxy (cheap to clone: handles on shared atomics).
#[derive(Clone, Default, Debug)]
pub struct Metrics {
    /// Requests proxied, by endpoint (`chat`, `completions`, `embeddings`, `other`).
    pub requests: Family<Labels, Counter>,
    /// Captures published and acked by JetStream.
    pub captured: Counter,
    /// Capturable requests left out by sampling.
    pub sampled_out: Counter,
    /// Captures dropped, by reason.
    pub dropped_by: Family<Labels, Counter>,
    /// Exchanges waiting in the capture queue.
    pub queue_depth: Gauge,
}

impl Metrics {
    /// Registers every metric in `registry` (prefix `proxy_` under the registry's own).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("proxy");
        r.register(
            "requests",
            "Requests proxied, by endpoint",
            self.requests.clone(),
        );
        r.register(
            "captured",
            "Captures published (JetStream acked)",
            self.captured.clone(),
        );
        r.register(
            "sampled_out",
            "Capturable requests left out by sampling",
            self.sampled_out.clone(),
        );
        r.register(
            "dropped",
            "Captures dropped, by reason",
            self.dropped_by.clone(),
        );
        r.register(
            "queue_depth",
            "Exchanges waiting in the capture queue",
            self.queue_depth.clone(),
        );
    }

    /// Counts one dropped capture.
    pub fn dropped(&self, reason: DropReason) {
        self.dropped_by
            .get_or_create(&vec![("reason", reason.label())])
            .inc();
    }

    /// Counts one proxied request.
    pub fn request(&self, endpoint: &'static str) {
        self.requests
            .get_or_create(&vec![("endpoint", endpoint)])
            .inc();
    }
}
