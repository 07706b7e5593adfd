//! What a monitor keeps across restarts, in the `vigil-runs` bucket under
//! `monitor.<name>` (JSON): its open and closing windows, the batch it was
//! publishing (a write-ahead record), and its drift references.

use super::MonitorError;
use crate::drift::Reference;
use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vigil_protocol::subjects;

/// One window: a run of the monitor over one app's captures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct WindowState {
    /// The run id: [`window_run_id`] of monitor, app, start and part.
    pub run_id: String,
    /// The app.
    pub app: String,
    /// Start of the window's capture time, Unix ms (a multiple of the duration).
    pub start_unix_ms: u64,
    /// End of the window's capture time, Unix ms.
    pub end_unix_ms: u64,
    /// 0, then 1, 2, … when `max_items` closed earlier parts of the same span.
    pub part: u32,
    /// Captures assigned (item indexes `0..items`).
    pub items: u64,
    /// Jobs published (job indexes `0..jobs`).
    pub jobs: u64,
    /// When the monitor opened it, Unix ms.
    pub opened_unix_ms: u64,
    /// When it closed (no more captures), Unix ms.
    pub closed_unix_ms: Option<u64>,
}

/// A monitor's windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Windows {
    /// The open window of each app.
    pub open: BTreeMap<String, WindowState>,
    /// Windows closed to new captures whose results are still coming.
    pub closing: Vec<WindowState>,
    /// The start and part of each app's last closed window.
    pub last: BTreeMap<String, (u64, u32)>,
}

impl Windows {
    /// Every open and closing window.
    pub fn all(&self) -> impl Iterator<Item = &WindowState> {
        self.open.values().chain(&self.closing)
    }

    /// The open or closing window with this run id.
    pub fn find(&self, run_id: &str) -> Option<&WindowState> {
        self.all().find(|w| w.run_id == run_id)
    }

    /// The open or closing window with this run id, to change.
    pub fn find_mut(&mut self, run_id: &str) -> Option<&mut WindowState> {
        self.open
            .values_mut()
            .chain(self.closing.iter_mut())
            .find(|w| w.run_id == run_id)
    }
}

/// A batch being published: if the monitor stops before it is acked, the
/// restarted monitor rebuilds it from the same captures (same run ids, job
/// indexes and items), and JetStream's deduplication on `<run_id>/<job_index>`
/// keeps the jobs it had already published from being published twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Pending {
    /// The stream sequence of the batch's first capture message.
    pub first_seq: u64,
    /// The stream sequence of its last capture message.
    pub last_seq: u64,
    /// The windows before the batch.
    pub before: Windows,
}

/// A drift detector's phase, per app and metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchPhase {
    /// Collecting the reference period (the first items, or the items after an alarm).
    Reference(Reference),
    /// Watching against this reference.
    Watching(Reference),
}

/// Everything a monitor keeps.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct MonitorState {
    /// The open and closing windows.
    pub windows: Windows,
    /// The batch being published, if the monitor stopped during one.
    pub pending: Option<Pending>,
    /// Every capture message up to this stream sequence is in a published batch.
    pub through_seq: u64,
    /// Drift phases by app, then metric.
    pub watch: BTreeMap<String, BTreeMap<String, WatchPhase>>,
    /// Windows closed and summarised (a count, for logs).
    pub windows_closed: u64,
}

/// How long a write of the state is retried while the monitor runs.
pub const SAVE_BUDGET: Duration = Duration::from_secs(30);

/// How long the last write of the state, on shutdown, is tried.
pub const SHUTDOWN_SAVE_BUDGET: Duration = Duration::from_secs(3);

impl MonitorState {
    /// The highest capture stream sequence this state records (`through_seq`
    /// and the pending batch's `last_seq`): a state recording a sequence past
    /// the capture stream's last one was written against another stream (a
    /// server that was replaced) and must not be trusted.
    pub fn highest_seq(&self) -> u64 {
        self.pending
            .as_ref()
            .map_or(0, |p| p.last_seq)
            .max(self.through_seq)
    }
}

/// The namespace of window run ids.
const WINDOW_NAMESPACE: uuid::Uuid = uuid::uuid!("2b1f7d0e-8a4c-4f57-b0a3-5d6e9c1f2a77");

/// The run id of a monitor's window: UUIDv5 of
/// `monitor/<name>/<app>/<start_unix_ms>/<part>`, so a restarted monitor
/// names the same window the same way.
///
/// ```
/// use vigil_coordinator::monitor::window_run_id;
/// assert_eq!(window_run_id("m", "a", 0, 0), window_run_id("m", "a", 0, 0));
/// assert_ne!(window_run_id("m", "a", 0, 0), window_run_id("m", "a", 0, 1));
/// ```
pub fn window_run_id(monitor: &str, app: &str, start_unix_ms: u64, part: u32) -> String {
    uuid::Uuid::new_v5(
        &WINDOW_NAMESPACE,
        format!("monitor/{monitor}/{app}/{start_unix_ms}/{part}").as_bytes(),
    )
    .to_string()
}

/// The key of a monitor's state in the `vigil-runs` bucket.
pub fn state_key(monitor: &str) -> String {
    format!("monitor.{}", subjects::sanitize_token(monitor))
}

/// The monitor's state store.
pub(super) struct StateStore {
    kv: kv::Store,
    key: String,
}

impl StateStore {
    pub(super) async fn open(js: &jetstream::Context, monitor: &str) -> Result<Self, MonitorError> {
        let kv = js
            .get_key_value(subjects::KV_RUNS)
            .await
            .map_err(MonitorError::nats)?;
        Ok(StateStore {
            kv,
            key: state_key(monitor),
        })
    }

    /// The `vigil-runs` bucket.
    pub(super) fn kv(&self) -> &kv::Store {
        &self.kv
    }

    pub(super) async fn load(&self) -> Result<MonitorState, MonitorError> {
        match self.kv.get(&self.key).await.map_err(MonitorError::nats)? {
            None => Ok(MonitorState::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                MonitorError::State(format!("{} in vigil-runs is not readable: {e}", self.key))
            }),
        }
    }

    /// Writes the state; retried, since a batch must not go on unrecorded,
    /// for at most [`SAVE_BUDGET`], or until `shutdown` (then it fails).
    pub(super) async fn save(
        &self,
        state: &MonitorState,
        shutdown: &CancellationToken,
    ) -> Result<(), MonitorError> {
        tokio::select! {
            r = self.put_within(state, SAVE_BUDGET) => r,
            _ = shutdown.cancelled() => Err(MonitorError::State(format!(
                "stopped before {} could be written", self.key
            ))),
        }
    }

    /// The last write, on shutdown: tried for at most [`SHUTDOWN_SAVE_BUDGET`],
    /// then given up with a warning. The state is a resume aid; the capture
    /// consumer's acks are the truth (a stale state is detected on start).
    pub(super) async fn save_on_shutdown(&self, state: &MonitorState) {
        if let Err(e) = self.put_within(state, SHUTDOWN_SAVE_BUDGET).await {
            tracing::warn!(error = %e, key = %self.key,
                "cannot write the monitor state on shutdown; giving up (the next start resumes from the capture consumer's acks)");
        }
    }

    /// Puts the state, retrying until `budget` is spent.
    async fn put_within(&self, state: &MonitorState, budget: Duration) -> Result<(), MonitorError> {
        let bytes: bytes::Bytes = serde_json::to_vec(state)
            .map_err(|e| MonitorError::State(e.to_string()))?
            .into();
        let deadline = tokio::time::Instant::now() + budget;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let err = match tokio::time::timeout(left, self.kv.put(&self.key, bytes.clone())).await
            {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {budget:?}"),
            };
            if tokio::time::Instant::now() + Duration::from_millis(200) >= deadline {
                return Err(MonitorError::State(format!(
                    "cannot write {} after {attempts} attempts: {err}",
                    self.key
                )));
            }
            tracing::warn!(error = %err, attempts, "cannot write the monitor state; retrying");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
