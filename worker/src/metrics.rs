//! The worker's Prometheus metrics.
//!
//! The counters that [`WorkerStats`] already keeps as atomics are read at
//! scrape time (a [`Collector`]), so the hot path pays nothing extra for them.
//! What needs labels or buckets (failures by kind, backend latency, scores
//! per scorer, retries) lives in [`WorkerMetrics`], updated once per item.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use vigil_protocol::ItemResult;

/// Counters a worker keeps; shared so a metrics endpoint or a test can read them.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Jobs whose results were published and acked.
    pub jobs_done: AtomicU64,
    /// Items evaluated (scored or failed).
    pub items_done: AtomicU64,
    /// Items failed.
    pub items_failed: AtomicU64,
    /// Messages terminated as malformed (undecodable, wrong schema, oversized).
    pub malformed: AtomicU64,
    /// Jobs received on a redelivery.
    pub redelivered: AtomicU64,
    /// Jobs nak'd (result not publishable, or shutdown).
    pub nakked: AtomicU64,
    /// Jobs of cancelled or finished runs, acked without evaluation.
    pub jobs_skipped: AtomicU64,
    /// Model calls in flight now.
    pub in_flight: AtomicU64,
    /// Per-item metrics with labels and buckets (failures by kind, latency, scores).
    pub metrics: WorkerMetrics,
}

/// Label set: one `(name, value)` pair.
pub type Labels = Vec<(&'static str, String)>;

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 5 ms .. ~82 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

fn score_histogram() -> Histogram {
    // Scores are in [0, 1]: tenths.
    Histogram::new(linear_buckets(0.1, 0.1, 10))
}

/// Per-item metrics of a worker that need labels or buckets.
#[derive(Debug)]
pub struct WorkerMetrics {
    /// Failed items by error kind.
    pub items_failed: Family<Labels, Counter>,
    /// HTTP attempts beyond the first, over all items.
    pub retries: Counter,
    /// Duration of successful backend calls, seconds, by target model.
    pub backend_latency: HistogramFamily,
    /// Score values by scorer.
    pub scores: HistogramFamily,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        WorkerMetrics {
            items_failed: Family::default(),
            retries: Counter::default(),
            backend_latency: Family::new_with_constructor(latency_histogram),
            scores: Family::new_with_constructor(score_histogram),
        }
    }
}

impl WorkerMetrics {
    /// Counts the finished items of one job's calls to `model`. Each labelled
    /// series is looked up once per job (a label set built and hashed), not
    /// once per item: the handles are shared, so observing a clone is
    /// observing the series.
    pub fn observe_items(&self, model: &str, results: &[ItemResult]) {
        let mut latency: Option<Histogram> = None;
        let mut scores: Vec<(&str, Histogram)> = Vec::new();
        for result in results {
            if result.attempts > 1 {
                self.retries.inc_by(u64::from(result.attempts - 1));
            }
            if let Some(error) = &result.error {
                self.items_failed
                    .get_or_create(&vec![("kind", error.kind.as_str().to_string())])
                    .inc();
                continue;
            }
            latency
                .get_or_insert_with(|| {
                    self.backend_latency
                        .get_or_create(&vec![("model", model.to_string())])
                        .clone()
                })
                .observe(result.latency_ms / 1000.0);
            for score in &result.scores {
                let histogram = match scores.iter().find(|(name, _)| *name == score.scorer) {
                    Some((_, h)) => h,
                    None => {
                        let h = self
                            .scores
                            .get_or_create(&vec![("scorer", score.scorer.clone())])
                            .clone();
                        scores.push((&score.scorer, h));
                        &scores.last().expect("just pushed").1
                    }
                };
                histogram.observe(score.value);
            }
        }
    }
}

/// Reads [`WorkerStats`] at scrape time.
#[derive(Debug)]
struct StatsCollector(Arc<WorkerStats>);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let counters = [
            (
                "worker_jobs",
                "Jobs whose results were published and acked",
                &s.jobs_done,
            ),
            (
                "worker_items",
                "Items evaluated (scored or failed)",
                &s.items_done,
            ),
            ("worker_items_failed_all", "Items failed", &s.items_failed),
            (
                "worker_malformed_messages",
                "Job messages terminated as malformed",
                &s.malformed,
            ),
            (
                "worker_jobs_redelivered",
                "Jobs received on a redelivery",
                &s.redelivered,
            ),
            ("worker_jobs_nakked", "Jobs handed back (nak)", &s.nakked),
            (
                "worker_jobs_skipped",
                "Jobs of cancelled or finished runs acked without evaluation",
                &s.jobs_skipped,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let gauge = ConstGauge::new(s.in_flight.load(Ordering::Relaxed) as i64);
        let metric = encoder.encode_descriptor(
            "worker_in_flight_calls",
            "Model calls in flight now",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

/// Registers a worker's metrics (names prefixed `vigil_` by the caller's
/// registry, if it has that prefix).
pub fn register(registry: &mut Registry, stats: Arc<WorkerStats>) {
    let detail = &stats.metrics;
    registry.register(
        "worker_items_failed_by_kind",
        "Failed items by error kind",
        detail.items_failed.clone(),
    );
    registry.register(
        "worker_retries",
        "Backend HTTP attempts beyond the first",
        detail.retries.clone(),
    );
    registry.register(
        "worker_backend_latency_seconds",
        "Duration of successful backend calls",
        detail.backend_latency.clone(),
    );
    registry.register(
        "worker_score",
        "Score values by scorer",
        detail.scores.clone(),
    );
    registry.register_collector(Box::new(StatsCollector(stats)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use vigil_protocol::{ErrorKind, ItemError, Score};

    #[test]
    fn counters_and_histograms_move() {
        let stats = Arc::new(WorkerStats::default());
        let mut registry = Registry::with_prefix("vigil");
        register(&mut registry, stats.clone());
        stats.items_done.fetch_add(2, Ordering::Relaxed);
        let scored = |latency_ms: f64, attempts: u32| ItemResult {
            latency_ms,
            attempts,
            scores: vec![Score {
                scorer: "exact".into(),
                value: 1.0,
                passed: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let failed = ItemResult {
            error: Some(ItemError {
                kind: ErrorKind::Timeout,
                message: String::new(),
            }),
            ..Default::default()
        };
        // One job of three items, then a job of one: the series are looked
        // up per job, and every item is counted in them.
        stats
            .metrics
            .observe_items("m", &[scored(20.0, 3), failed, scored(40.0, 1)]);
        stats.metrics.observe_items("m", &[scored(20.0, 1)]);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "vigil_worker_items_total 2",
            "vigil_worker_retries_total 2",
            "vigil_worker_items_failed_by_kind_total{kind=\"timeout\"} 1",
            "vigil_worker_backend_latency_seconds_count{model=\"m\"} 3",
            "vigil_worker_backend_latency_seconds_sum{model=\"m\"} 0.08",
            "vigil_worker_score_count{scorer=\"exact\"} 3",
            "vigil_worker_in_flight_calls 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
