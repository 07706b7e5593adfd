//! Backend latency: an HDR histogram in microseconds, reported in milliseconds.

use hdrhistogram::Histogram;
use vigil_protocol::LatencySummary;

/// Records latencies in constant memory and reports percentiles.
///
/// Values are kept in whole microseconds in an auto-resizing HDR histogram
/// with 3 significant digits (percentiles are within 0.1%); the mean and the
/// maximum are kept exactly beside it. Negative or NaN latencies count as 0.
///
/// ```
/// use vigil_coordinator::stats::LatencyRecorder;
/// let mut r = LatencyRecorder::new();
/// for ms in 1..=100 { r.record_ms(ms as f64); }
/// let s = r.summary();
/// assert!((s.p50 - 50.0).abs() < 0.1);
/// assert!((s.max - 100.0).abs() < 1e-9);
/// ```
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
    count: u64,
    sum_us: f64,
    max_us: u64,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self {
            histogram: Histogram::new(3).expect("3 significant digits is a valid HDR precision"),
            count: 0,
            sum_us: 0.0,
            max_us: 0,
        }
    }

    /// Records one latency given in milliseconds.
    pub fn record_ms(&mut self, ms: f64) {
        // `as` saturates: NaN → 0, huge → u64::MAX (then capped by the histogram).
        let us = (ms * 1000.0).round().max(0.0) as u64;
        self.record_us(us);
    }

    /// Records one latency given in microseconds.
    pub fn record_us(&mut self, us: u64) {
        // `record` grows the histogram as needed (`saturating_record` would
        // not). It fails only past i64::MAX / 2 µs, a bogus value, which then
        // lands in the top bucket.
        if self.histogram.record(us).is_err() {
            self.histogram.saturating_record(us);
        }
        self.count += 1;
        self.sum_us += us as f64;
        self.max_us = self.max_us.max(us);
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Both histograms auto-resize, so adding cannot run out of range.
        let _ = self.histogram.add(&other.histogram);
        self.count += other.count;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0..=1), milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        // HDR reports the highest value equivalent to the bucket; never
        // report more than the true maximum.
        let us = self
            .histogram
            .value_at_quantile(q.clamp(0.0, 1.0))
            .min(self.max_us);
        us as f64 / 1000.0
    }

    /// p50, p95, p99, mean and max in milliseconds; all 0 when empty.
    pub fn summary(&self) -> LatencySummary {
        if self.count == 0 {
            return LatencySummary::default();
        }
        LatencySummary {
            p50: self.quantile_ms(0.50),
            p95: self.quantile_ms(0.95),
            p99: self.quantile_ms(0.99),
            mean: self.sum_us / self.count as f64 / 1000.0,
            max: self.max_us as f64 / 1000.0,
        }
    }
}
