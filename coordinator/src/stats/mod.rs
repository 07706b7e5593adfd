//! Statistics the aggregator builds a run summary from.
//!
//! Everything here is incremental and mergeable, so memory does not grow with
//! the number of outputs (DESIGN §4.6): a [`Welford`] accumulator per scorer,
//! a [`LatencyRecorder`] (an HDR histogram) for backend latency, and the
//! closed-form intervals [`wilson_interval`] (pass rates) and
//! [`mean_interval`] (mean scores, Student's t).

mod interval;
mod latency;
mod welford;

pub use interval::{mean_interval, normal_quantile, student_t_quantile, wilson_interval};
pub use latency::LatencyRecorder;
pub use welford::Welford;
