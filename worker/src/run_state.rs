//! Which runs have ended, as a worker sees them: jobs of a cancelled or
//! finished run are acked and skipped without calling a backend.
//!
//! A run's state lives in the `vigil-runs` KV bucket under its run id
//! (written by its coordinator; `vigil runs cancel` sets `cancelled`). The
//! worker reads it at most once per [`RunStates::ttl`] per run (a job, not
//! an item, asks), and remembers an ended run for good: `cancelled` and
//! `finished` are final. A run the bucket does not know, or a bucket that
//! cannot be read, is never skipped: nothing is lost on a doubt.

use async_nats::jetstream::kv;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vigil_protocol::subjects;

/// Runs remembered; past it entries of runs still in progress are dropped
/// first, then the oldest.
const MAX_REMEMBERED: usize = 10_000;

/// The status of runs, read from the `vigil-runs` bucket and remembered.
#[derive(Debug)]
pub struct RunStates {
    store: Option<kv::Store>,
    ttl: Duration,
    memo: Mutex<HashMap<String, (Option<&'static str>, Instant)>>,
}

#[derive(serde::Deserialize)]
struct Status {
    #[serde(default)]
    status: String,
}

impl RunStates {
    /// Run states read from `store` (`None`: no bucket, nothing is skipped),
    /// a running run's state read again after `ttl`.
    pub fn new(store: Option<kv::Store>, ttl: Duration) -> Self {
        RunStates {
            store,
            ttl,
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// How long a running run's state is trusted before it is read again.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `Some("cancelled")` or `Some("finished")` when `run_id` has ended.
    pub async fn ended(&self, run_id: &str) -> Option<&'static str> {
        if let Some((status, at)) = self.memo.lock().expect("run state lock").get(run_id)
            && (status.is_some() || at.elapsed() < self.ttl)
        {
            return *status;
        }
        let store = self.store.as_ref()?;
        let status = match store.get(run_id).await {
            Ok(Some(bytes)) => serde_json::from_slice::<Status>(&bytes)
                .ok()
                .and_then(|s| ended_status(&s.status)),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(run_id, error = %e, "cannot read run state; not skipping");
                return None;
            }
        };
        let mut memo = self.memo.lock().expect("run state lock");
        if memo.len() >= MAX_REMEMBERED {
            memo.retain(|_, (status, _)| status.is_some());
            if memo.len() >= MAX_REMEMBERED {
                memo.clear();
            }
        }
        memo.insert(run_id.to_string(), (status, Instant::now()));
        status
    }
}

/// The final statuses, as the constants (so they can be remembered).
///
/// ```
/// use vigil_worker::run_state::ended_status;
/// assert_eq!(ended_status("cancelled"), Some("cancelled"));
/// assert_eq!(ended_status("finished"), Some("finished"));
/// assert_eq!(ended_status("running"), None);
/// ```
pub fn ended_status(status: &str) -> Option<&'static str> {
    [
        subjects::RUN_STATUS_CANCELLED,
        subjects::RUN_STATUS_FINISHED,
    ]
    .into_iter()
    .find(|s| *s == status)
}
