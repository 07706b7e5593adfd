//! Online scoring of captured production traffic (`vigil monitor`), with
//! drift alarms.
//!
//! A monitor follows `VIGIL_CAPTURE` with a durable consumer
//! (`vigil-monitor-<name>`), keeps the captures its [`CaptureFilter`] and
//! sample rate select, and scores them through the same worker pool and job
//! path as suites: each capture becomes an item whose `recorded` output is
//! the captured response, in jobs of a target of kind `recorded`. Results
//! land in `VIGIL_RESULTS` under one run id per window
//! ([`window_run_id`]), aggregated by the suites' [`crate::aggregate`];
//! a window that closes is summarised into a `RunSummary` on
//! `vigil.runs.<monitor>.<app>`. Per metric, the per-item scores feed the
//! [`crate::drift`] detectors, whose alarms go on `vigil.alerts.<app>`.
//!
//! Nothing is scored twice across restarts: a batch's window assignment is
//! recorded before its jobs are published ([`state::Pending`]), the jobs
//! carry deterministic `<run_id>/<job_index>` message ids (JetStream drops a
//! re-publish), and the captures are acked (ack-all, on the batch's last
//! message) only after the jobs are. See `docs/production.md`.
//!
//! - [`config`]: the monitor file.
//! - [`state`]: what survives a restart (in the `vigil-runs` bucket).
//! - `items`: captures into job items.
//! - `lease`: one running monitor per name.
//! - `watch`: the drift detectors of an app.
//! - `run`: the consumer loop, windows and summaries.

pub mod config;
mod items;
mod lease;
mod run;
pub mod state;
mod watch;

pub use config::{CaptureFilter, MonitorConfig, WindowConfig};
pub use items::recorded;
pub use lease::{EXPIRY_PERIODS, lease_key};
pub use run::{MonitorStats, run};
pub use state::{MonitorState, WindowState, window_run_id};
pub use watch::{drift_alert, metric_score};

/// Why a monitor stopped.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The monitor file is not usable.
    #[error("{0}")]
    Config(String),
    /// The server or its streams are not usable.
    #[error(transparent)]
    Topology(#[from] vigil_nats::topology::TopologyError),
    /// A NATS operation failed.
    #[error("NATS: {0}")]
    Nats(String),
    /// The monitor's recorded state cannot be read or written.
    #[error("monitor state: {0}")]
    State(String),
    /// Another monitor of the same name holds its lease.
    #[error("{0}")]
    AlreadyRunning(String),
    /// Another monitor took this monitor's lease while it ran.
    #[error("another monitor took the lease of monitor {0}; stopped")]
    LeaseLost(String),
    /// Publishing jobs failed.
    #[error(transparent)]
    Dispatch(#[from] crate::dispatch::DispatchError),
}

impl MonitorError {
    fn nats(e: impl std::fmt::Display) -> MonitorError {
        MonitorError::Nats(e.to_string())
    }
}
