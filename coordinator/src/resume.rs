//! Run state in the `vigil-runs` KV bucket, and resuming a run whose
//! coordinator died (DESIGN §4.3).
//!
//! While a run dispatches, its coordinator records a dispatch high-water mark:
//! the job index below which every job's publish is acknowledged by the
//! server. Job indices are a deterministic function of the dataset (and the
//! server's max_payload, which decides shard splits), so a resumed coordinator
//! re-reads the same dataset, skips every job below the mark and publishes the
//! rest; a job above the mark that was already published is dropped by the
//! server's `Nats-Msg-Id` dedup (or, past the duplicate window, evaluated
//! again and dropped by the aggregator). The aggregate itself is rebuilt by
//! replaying `vigil.results.<run_id>.>` from the start, which the run's
//! ordered consumer does anyway.
//!
//! A resumed run must evaluate the same thing: the suite file and dataset
//! SHA-256 recorded at the start must match, else the resume is refused.

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `status` of a run that is (or was, when its coordinator died) in progress.
pub const STATUS_RUNNING: &str = vigil_protocol::subjects::RUN_STATUS_RUNNING;
/// `status` of a run whose summary is published.
pub const STATUS_FINISHED: &str = vigil_protocol::subjects::RUN_STATUS_FINISHED;
/// `status` of a cancelled run (Ctrl-C, SIGTERM, `vigil runs cancel`):
/// workers skip its jobs, and it is never resumed.
pub const STATUS_CANCELLED: &str = vigil_protocol::subjects::RUN_STATUS_CANCELLED;

/// What the `vigil-runs` bucket holds under a run id (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunState {
    /// The suite's name.
    pub suite: String,
    /// The target's name.
    pub target: String,
    /// `running`, `finished` or `cancelled`.
    pub status: String,
    /// Items in the dataset.
    pub items_total: u64,
    /// SHA-256 of the suite file when the run started.
    pub suite_sha256: String,
    /// SHA-256 of the dataset file when the run started.
    pub dataset_sha256: String,
    /// When the run first started, Unix milliseconds (kept across resumes).
    pub started_at_unix_ms: u64,
    /// The dispatch high-water mark: every job with a lower index is published.
    pub dispatched_jobs: u64,
    /// Whether every job is published.
    pub dispatch_done: bool,
    /// How many times the run was resumed.
    pub resumes: u32,
    /// Items per job, as the run chose them (`Suite::shard_size_for`): a
    /// resumed run shards the same way. 0 in the state of a run started
    /// before it was recorded, when it was the suite's `shard_size` or 32.
    pub shard_size: u64,
}

impl RunState {
    /// When the run first started.
    pub fn started_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.started_at_unix_ms)
    }
}

/// A run cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// `--resume` named a run the bucket does not know.
    #[error(
        "no run `{run_id}` in the `vigil-runs` bucket: nothing to resume (was it started against this NATS server?)"
    )]
    NotFound {
        /// The run id asked for.
        run_id: String,
    },
    /// The recorded run evaluated something else.
    #[error(
        "cannot resume run `{run_id}`: its {what} was `{recorded}` when it started and is `{now}` now; \
         a resumed run must evaluate the same suite and dataset (start a new run instead)"
    )]
    Mismatch {
        /// The run.
        run_id: String,
        /// What differs (suite file sha256, dataset sha256, suite name, target, item count).
        what: &'static str,
        /// The recorded value.
        recorded: String,
        /// The current value.
        now: String,
    },
    /// The run was cancelled: its jobs are skipped, it is not resumed.
    #[error("run `{run_id}` was cancelled: it is not resumed (start a new run, or a new --run-id)")]
    Cancelled {
        /// The run.
        run_id: String,
    },
    /// The run finished, but its summary is no longer in `VIGIL_RUNS`.
    #[error("run `{run_id}` already finished, but its summary cannot be read: {reason}")]
    SummaryGone {
        /// The run.
        run_id: String,
        /// Why.
        reason: String,
    },
    /// The bucket could not be read.
    #[error("cannot read run state of `{run_id}`: {reason}")]
    Read {
        /// The run.
        run_id: String,
        /// Why.
        reason: String,
    },
}

/// The error of a failed read of `run_id`'s state.
fn read_error(run_id: &str) -> impl Fn(String) -> ResumeError + '_ {
    move |reason| ResumeError::Read {
        run_id: run_id.to_string(),
        reason,
    }
}

/// The `vigil-runs` bucket, for reading `run_id`'s state.
async fn runs_bucket(js: &jetstream::Context, run_id: &str) -> Result<kv::Store, ResumeError> {
    js.get_key_value(vigil_protocol::subjects::KV_RUNS)
        .await
        .map_err(|e| read_error(run_id)(e.to_string()))
}

/// Reads a run's state; `Ok(None)` when the bucket has no such run.
pub async fn load(js: &jetstream::Context, run_id: &str) -> Result<Option<RunState>, ResumeError> {
    let read_err = read_error(run_id);
    let store = runs_bucket(js, run_id).await?;
    let Some(bytes) = store
        .get(run_id)
        .await
        .map_err(|e| read_err(e.to_string()))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| read_err(format!("unreadable state: {e}")))
}

/// Checks that a recorded run evaluated what `now` describes.
///
/// ```
/// use vigil_coordinator::resume::{RunState, check_same};
/// let recorded = RunState { suite: "s".into(), target: "t".into(), items_total: 3,
///     suite_sha256: "a".into(), dataset_sha256: "b".into(), ..Default::default() };
/// assert!(check_same("r", &recorded, &recorded).is_ok());
/// let edited = RunState { suite_sha256: "c".into(), ..recorded.clone() };
/// assert!(check_same("r", &recorded, &edited).is_err());
/// ```
pub fn check_same(run_id: &str, recorded: &RunState, now: &RunState) -> Result<(), ResumeError> {
    let pairs: [(&'static str, String, String); 5] = [
        ("suite name", recorded.suite.clone(), now.suite.clone()),
        ("target", recorded.target.clone(), now.target.clone()),
        (
            "suite file sha256",
            recorded.suite_sha256.clone(),
            now.suite_sha256.clone(),
        ),
        (
            "dataset sha256",
            recorded.dataset_sha256.clone(),
            now.dataset_sha256.clone(),
        ),
        (
            "item count",
            recorded.items_total.to_string(),
            now.items_total.to_string(),
        ),
    ];
    for (what, recorded, now) in pairs {
        if recorded != now {
            return Err(ResumeError::Mismatch {
                run_id: run_id.to_string(),
                what,
                recorded,
                now,
            });
        }
    }
    Ok(())
}

/// Writes a run's state as it changes; failures are logged, never fatal (the
/// state only makes a later resume cheaper; results are the source of truth).
#[derive(Debug)]
pub struct StateRecorder {
    store: Option<kv::Store>,
    run_id: String,
    state: RunState,
    written: Option<RunState>,
    /// The record's revision after this recorder's last write.
    revision: Option<u64>,
}

impl StateRecorder {
    /// A recorder for `state` under `run_id`.
    pub async fn new(js: &jetstream::Context, run_id: &str, state: RunState) -> Self {
        let store = match js.get_key_value(vigil_protocol::subjects::KV_RUNS).await {
            Ok(store) => Some(store),
            Err(e) => {
                tracing::warn!(error = %e, "no run state bucket: this run cannot be resumed");
                None
            }
        };
        StateRecorder {
            store,
            run_id: run_id.to_string(),
            state,
            written: None,
            revision: None,
        }
    }

    /// The state as last set.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// Records the dispatch high-water mark (written on the next [`flush`](Self::flush)).
    pub fn set_dispatched(&mut self, jobs: u64, done: bool) {
        self.state.dispatched_jobs = self.state.dispatched_jobs.max(jobs);
        self.state.dispatch_done |= done;
    }

    /// Sets the status (written on the next [`flush`](Self::flush)).
    pub fn set_status(&mut self, status: &str) {
        self.state.status = status.to_string();
    }

    /// Writes the state if it changed since the last write.
    pub async fn flush(&mut self) {
        if self.written.as_ref() == Some(&self.state) {
            return;
        }
        let Some(store) = &self.store else { return };
        let bytes = match serde_json::to_vec(&self.state) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode run state");
                return;
            }
        };
        // While running, write only over our own last write: a cancel
        // recorded meanwhile (`vigil runs cancel`) must not be undone.
        let written = match self.revision {
            Some(revision) if self.state.status == STATUS_RUNNING => {
                match store
                    .update(&self.run_id, bytes.clone().into(), revision)
                    .await
                {
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        if let Some(revision) = recorded_cancel(store, &self.run_id).await {
                            self.state.status = STATUS_CANCELLED.into();
                            self.written = Some(self.state.clone());
                            self.revision = Some(revision);
                            return;
                        }
                        store
                            .put(&self.run_id, bytes.into())
                            .await
                            .map_err(|e| e.to_string())
                    }
                    other => other.map_err(|e| e.to_string()),
                }
            }
            _ => store
                .put(&self.run_id, bytes.into())
                .await
                .map_err(|e| e.to_string()),
        };
        match written {
            Ok(revision) => {
                self.written = Some(self.state.clone());
                self.revision = Some(revision);
            }
            Err(e) => {
                tracing::warn!(error = %e, run_id = %self.run_id, "could not record run state")
            }
        }
    }
}

/// The revision of `run_id`'s record if it says `cancelled`.
async fn recorded_cancel(store: &kv::Store, run_id: &str) -> Option<u64> {
    let entry = store.entry(run_id).await.ok()??;
    serde_json::from_slice::<RunState>(&entry.value)
        .is_ok_and(|s| s.status == STATUS_CANCELLED)
        .then_some(entry.revision)
}

/// What `vigil runs cancel` found and did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The run was running (or its coordinator had died): now cancelled.
    Cancelled(RunState),
    /// It was cancelled already.
    AlreadyCancelled(RunState),
    /// It had finished; nothing to cancel.
    AlreadyFinished(RunState),
}

/// Marks a run cancelled in the `vigil-runs` bucket (compare-and-set on the
/// entry's revision, so a coordinator writing at the same moment cannot
/// undo it). Its coordinator, if alive, ends the run; workers skip its
/// remaining jobs.
pub async fn cancel(js: &jetstream::Context, run_id: &str) -> Result<CancelOutcome, ResumeError> {
    let read_err = read_error(run_id);
    let store = runs_bucket(js, run_id).await?;
    loop {
        let Some(entry) = store
            .entry(run_id)
            .await
            .map_err(|e| read_err(e.to_string()))?
            .filter(|e| e.operation == kv::Operation::Put)
        else {
            return Err(ResumeError::NotFound {
                run_id: run_id.to_string(),
            });
        };
        let mut state: RunState = serde_json::from_slice(&entry.value)
            .map_err(|e| read_err(format!("unreadable state: {e}")))?;
        match state.status.as_str() {
            STATUS_FINISHED => return Ok(CancelOutcome::AlreadyFinished(state)),
            STATUS_CANCELLED => return Ok(CancelOutcome::AlreadyCancelled(state)),
            _ => {}
        }
        state.status = STATUS_CANCELLED.into();
        let bytes = serde_json::to_vec(&state).map_err(|e| read_err(e.to_string()))?;
        match store.update(run_id, bytes.into(), entry.revision).await {
            Ok(_) => return Ok(CancelOutcome::Cancelled(state)),
            // Written meanwhile (the coordinator's progress): read it again.
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(read_err(e.to_string())),
        }
    }
}

/// How often a coordinator reads its run's record for a cancel from elsewhere.
pub const CANCEL_POLL: Duration = Duration::from_secs(1);

/// A token cancelled with `parent`, or when the run's state in the
/// `vigil-runs` bucket turns `cancelled` (`vigil runs cancel`), whichever
/// comes first. The record is read every [`CANCEL_POLL`] (a plain get, so a
/// reconnect or a restarted server changes nothing); reading stops when the
/// returned guard is dropped.
pub async fn cancelled_externally(
    js: &jetstream::Context,
    run_id: &str,
    parent: &tokio_util::sync::CancellationToken,
) -> (tokio_util::sync::CancellationToken, WatchGuard) {
    let token = parent.child_token();
    let store = js.get_key_value(vigil_protocol::subjects::KV_RUNS).await;
    let (run_id, fire) = (run_id.to_string(), token.clone());
    let task = tokio::spawn(async move {
        let Ok(store) = store else {
            tracing::warn!(%run_id, "no run state bucket: `vigil runs cancel` will not reach this coordinator");
            return;
        };
        let mut tick = tokio::time::interval(CANCEL_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok(Some(bytes)) = store.get(&run_id).await else {
                continue;
            };
            let cancelled = serde_json::from_slice::<RunState>(&bytes)
                .is_ok_and(|s| s.status == STATUS_CANCELLED);
            if cancelled {
                tracing::warn!(%run_id, "the run was cancelled (vigil runs cancel)");
                fire.cancel();
                return;
            }
        }
    });
    (token, WatchGuard(task))
}

/// Stops reading a run's record for a cancel when dropped.
#[derive(Debug)]
pub struct WatchGuard(tokio::task::JoinHandle<()>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The stored summary of a finished run (for a run started again under its
/// id, for example a re-fired scheduled run: nothing is published again).
pub async fn finished_summary(
    js: &jetstream::Context,
    run_id: &str,
    retry: std::time::Duration,
) -> Result<vigil_protocol::RunSummary, ResumeError> {
    crate::history::find(js, run_id, retry)
        .await
        .map_err(|e| ResumeError::SummaryGone {
            run_id: run_id.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_from_elsewhere_is_never_undone_and_reaches_the_coordinator() {
        let (_nats, js) = vigil_testkit::jetstream().await;
        let running = RunState {
            suite: "s".into(),
            target: "t".into(),
            status: STATUS_RUNNING.into(),
            ..Default::default()
        };
        let mut recorder = StateRecorder::new(&js, "r1", running).await;
        recorder.flush().await;
        assert!(matches!(
            cancel(&js, "r1").await.unwrap(),
            CancelOutcome::Cancelled(_)
        ));
        // The coordinator's next progress write does not undo the cancel.
        recorder.set_dispatched(5, false);
        recorder.flush().await;
        assert_eq!(recorder.state().status, STATUS_CANCELLED);
        assert_eq!(
            load(&js, "r1").await.unwrap().unwrap().status,
            STATUS_CANCELLED
        );
        assert!(matches!(
            cancel(&js, "r1").await.unwrap(),
            CancelOutcome::AlreadyCancelled(_)
        ));
        assert!(matches!(
            cancel(&js, "no-such-run").await,
            Err(ResumeError::NotFound { .. })
        ));
        // The coordinator's token fires; its parent (the signals) does not.
        let parent = tokio_util::sync::CancellationToken::new();
        let (token, _guard) = cancelled_externally(&js, "r1", &parent).await;
        tokio::time::timeout(Duration::from_secs(10), token.cancelled())
            .await
            .expect("the cancel reaches the coordinator");
        assert!(!parent.is_cancelled());
        // A finished run is not cancelled.
        let mut done = StateRecorder::new(
            &js,
            "r2",
            RunState {
                status: STATUS_FINISHED.into(),
                ..Default::default()
            },
        )
        .await;
        done.flush().await;
        assert!(matches!(
            cancel(&js, "r2").await.unwrap(),
            CancelOutcome::AlreadyFinished(_)
        ));
    }
}
