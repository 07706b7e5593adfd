//! Subject, stream, consumer and bucket names (DESIGN §3).
//!
//! Tokens built from user-chosen names (suite, target, app, pool) go through
//! [`sanitize_token`] so that no `.`, `*`, `>` or whitespace reaches a subject.

/// Work-queue stream of jobs, subjects `vigil.jobs.<pool>`.
pub const STREAM_JOBS: &str = "VIGIL_JOBS";
/// Stream of job results, subjects `vigil.results.<run_id>.<job_index>`.
pub const STREAM_RESULTS: &str = "VIGIL_RESULTS";
/// Stream of run summaries, subjects `vigil.runs.<suite>.<target>`.
pub const STREAM_RUNS: &str = "VIGIL_RUNS";
/// Stream of alerts, subjects `vigil.alerts.<suite>`.
pub const STREAM_ALERTS: &str = "VIGIL_ALERTS";
/// Stream of captured production traffic, subjects `vigil.capture.<app>`.
pub const STREAM_CAPTURE: &str = "VIGIL_CAPTURE";
/// KV bucket of run state (claim, dispatch high-water mark, status).
pub const KV_RUNS: &str = "vigil-runs";
/// `status` under a run id in [`KV_RUNS`]: the run is in progress (or its
/// coordinator died and it can be resumed).
pub const RUN_STATUS_RUNNING: &str = "running";
/// `status` under a run id in [`KV_RUNS`]: its summary is published.
pub const RUN_STATUS_FINISHED: &str = "finished";
/// `status` under a run id in [`KV_RUNS`]: the run was cancelled (Ctrl-C,
/// SIGTERM, `vigil runs cancel`); workers skip its jobs.
pub const RUN_STATUS_CANCELLED: &str = "cancelled";
/// KV bucket of cached model responses.
pub const KV_CACHE: &str = "vigil-cache";
/// Object store for large payloads and per-item score vectors.
pub const OBJECT_ARTIFACTS: &str = "vigil-artifacts";
/// The pool a job goes to when the suite names none.
pub const DEFAULT_POOL: &str = "default";

/// Every subject of the jobs stream.
pub const JOBS_ALL: &str = "vigil.jobs.>";
/// Every subject of the results stream.
pub const RESULTS_ALL: &str = "vigil.results.>";
/// Every subject of the runs stream; subscribe here to receive every summary.
pub const RUNS_ALL: &str = "vigil.runs.>";
/// Every subject of the alerts stream.
pub const ALERTS_ALL: &str = "vigil.alerts.>";
/// Every subject of the capture stream.
pub const CAPTURE_ALL: &str = "vigil.capture.>";
/// The advisory the server sends when a job reached MaxDeliver.
pub const MAX_DELIVERIES_ADVISORY: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.VIGIL_JOBS.>";

/// Replaces every character that may not stand in a subject token or a
/// consumer name (anything but ASCII letters, digits, `-` and `_`) with `_`.
///
/// ```
/// assert_eq!(vigil_protocol::subjects::sanitize_token("llama 3.1:8b*"), "llama_3_1_8b_");
/// ```
pub fn sanitize_token(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `vigil.jobs.<pool>`.
///
/// ```
/// assert_eq!(vigil_protocol::subjects::jobs(&"gpu.a"), "vigil.jobs.gpu_a");
/// ```
pub fn jobs(pool: &str) -> String {
    format!("vigil.jobs.{}", sanitize_token(pool))
}

/// The durable pull consumer of a pool: `vigil-workers-<pool>`.
///
/// ```
/// assert_eq!(vigil_protocol::subjects::worker_consumer("default"), "vigil-workers-default");
/// ```
pub fn worker_consumer(pool: &str) -> String {
    format!("vigil-workers-{}", sanitize_token(pool))
}

/// `vigil.results.<run_id>.<job_index>`.
///
/// ```
/// assert_eq!(vigil_protocol::subjects::result("r1", 4), "vigil.results.r1.4");
/// ```
pub fn result(run_id: &str, job_index: u64) -> String {
    format!("vigil.results.{}.{job_index}", sanitize_token(run_id))
}

/// `vigil.results.<run_id>.>`: every result of one run.
///
/// ```
/// assert_eq!(vigil_protocol::subjects::results_of_run("r1"), "vigil.results.r1.>");
/// ```
pub fn results_of_run(run_id: &str) -> String {
    format!("vigil.results.{}.>", sanitize_token(run_id))
}

/// `vigil.runs.<suite>.<target>`.
///
/// ```
/// assert_eq!(vigil_protocol::subjects::run_summary("arith", "llama-3"), "vigil.runs.arith.llama-3");
/// ```
pub fn run_summary(suite: &str, target: &str) -> String {
    format!(
        "vigil.runs.{}.{}",
        sanitize_token(suite),
        sanitize_token(target)
    )
}

/// `vigil.alerts.<suite>`.
///
/// ```
/// assert_eq!(vigil_protocol::subjects::alerts("arith"), "vigil.alerts.arith");
/// ```
pub fn alerts(suite: &str) -> String {
    format!("vigil.alerts.{}", sanitize_token(suite))
}

/// `vigil.events.<run_id>`: live progress on core NATS, not persisted.
///
/// ```
/// assert_eq!(vigil_protocol::subjects::events("r1"), "vigil.events.r1");
/// ```
pub fn events(run_id: &str) -> String {
    format!("vigil.events.{}", sanitize_token(run_id))
}

/// `vigil.capture.<app>`.
///
/// ```
/// assert_eq!(vigil_protocol::subjects::capture("support bot"), "vigil.capture.support_bot");
/// ```
pub fn capture(app: &str) -> String {
    format!("vigil.capture.{}", sanitize_token(app))
}
