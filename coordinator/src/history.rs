//! Run history: the summaries in `VIGIL_RUNS` (`vigil.runs.<suite>.<target>`),
//! the baseline a run is compared with, and the stream's retention.
//!
//! The default baseline is the latest passing run of the same suite and
//! target; a pinned baseline (KV key `baseline.<suite>.<target>` in the
//! `vigil-runs` bucket, set by `vigil runs pin`) wins over it, and an explicit
//! `--baseline RUN` over both.
//!
//! A run's item results are read back with [`replay`] (each index once,
//! streamed), which `vigil export`, `vigil report` and `vigil compare` use.

use crate::index_set::IndexSet;
use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures::StreamExt;
use std::time::Duration;
use vigil_protocol::{RunSummary, subjects};

/// Reading or writing the history failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A NATS operation failed.
    #[error("NATS: {0}")]
    Nats(String),
    /// No run with this id is in the history.
    #[error("no run `{0}` in VIGIL_RUNS (see `vigil runs list`)")]
    NotFound(String),
}

fn nats(e: impl std::fmt::Display) -> HistoryError {
    let text = e.to_string();
    if vigil_nats::topology::is_transient(&text) {
        HistoryError::Nats(format!(
            "{text}: JetStream did not answer; {}",
            vigil_nats::topology::NO_ANSWER_HINT
        ))
    } else {
        HistoryError::Nats(text)
    }
}

/// One summary of the history with its stream sequence.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The stream sequence (publication order).
    pub seq: u64,
    /// The summary.
    pub summary: RunSummary,
}

/// The subject filter of a suite/target selection.
///
/// ```
/// use vigil_coordinator::history::filter;
/// assert_eq!(filter(None, None), "vigil.runs.>");
/// assert_eq!(filter(Some("arith"), None), "vigil.runs.arith.*");
/// assert_eq!(filter(None, Some("stub")), "vigil.runs.*.stub");
/// ```
pub fn filter(suite: Option<&str>, target: Option<&str>) -> String {
    match (suite, target) {
        (None, None) => subjects::RUNS_ALL.to_string(),
        (Some(s), Some(t)) => subjects::run_summary(s, t),
        (s, t) => format!(
            "vigil.runs.{}.{}",
            s.map(subjects::sanitize_token)
                .unwrap_or_else(|| "*".into()),
            t.map(subjects::sanitize_token)
                .unwrap_or_else(|| "*".into())
        ),
    }
}

/// How long [`list`] and [`find`] keep retrying a read that JetStream did not answer (a
/// stream leader election after a server loss) before it gives up, for a
/// caller without a configured JetStream timeout (`VIGIL_JS_TIMEOUT_S`).
pub const LIST_RETRY_WINDOW: Duration = Duration::from_secs(10);

/// How long one summary may take to arrive once the read knows more are due.
const MESSAGE_WAIT: Duration = Duration::from_secs(5);

/// Every summary of the selection, oldest first (undecodable ones skipped).
///
/// The read is all or nothing: it knows from the consumer how many summaries
/// match, and a summary that does not arrive is an error, never a shorter
/// list. Reads that JetStream does not answer are retried for `retry` (the
/// command's JetStream timeout, else [`LIST_RETRY_WINDOW`]), then fail with
/// the no-quorum hint.
pub async fn list(
    js: &jetstream::Context,
    suite: Option<&str>,
    target: Option<&str>,
    retry: Duration,
) -> Result<Vec<HistoryEntry>, HistoryError> {
    let until = tokio::time::Instant::now() + retry;
    loop {
        match list_once(js, suite, target).await {
            Err(HistoryError::Nats(text))
                if vigil_nats::topology::is_transient(&text)
                    && tokio::time::Instant::now() < until =>
            {
                tracing::debug!(error = %text, "history read not answered; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            done => return done,
        }
    }
}

async fn list_once(
    js: &jetstream::Context,
    suite: Option<&str>,
    target: Option<&str>,
) -> Result<Vec<HistoryEntry>, HistoryError> {
    let mut stream = js.get_stream(subjects::STREAM_RUNS).await.map_err(nats)?;
    if stream.info().await.map_err(nats)?.state.messages == 0 {
        return Ok(Vec::new());
    }
    let mut consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter(suite, target),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    // What matches the filter now; later summaries may arrive too, and the
    // read ends where the last delivered message says nothing is pending.
    if consumer.info().await.map_err(nats)?.num_pending == 0 {
        return Ok(Vec::new());
    }
    let mut messages = consumer.messages().await.map_err(nats)?;
    let mut out = Vec::new();
    loop {
        let message = match tokio::time::timeout(MESSAGE_WAIT, messages.next()).await {
            Ok(Some(message)) => message.map_err(nats)?,
            Ok(None) => return Err(nats("the history read ended early")),
            Err(_) => return Err(nats("timed out waiting for the next summary")),
        };
        let info = message.info().map_err(nats)?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        if let Ok(summary) = vigil_protocol::decode::<RunSummary>(&message.payload) {
            out.push(HistoryEntry { seq, summary });
        }
        if pending == 0 {
            return Ok(out);
        }
    }
}

/// The summary of run `run_id`; an unanswered read is retried for `retry`
/// (as [`list`] does).
pub async fn find(
    js: &jetstream::Context,
    run_id: &str,
    retry: Duration,
) -> Result<RunSummary, HistoryError> {
    // The run-state KV says where the summary is; without it, scan everything.
    let (suite, target) = match run_state(js, run_id).await {
        Some((s, t)) => (Some(s), Some(t)),
        None => (None, None),
    };
    list(js, suite.as_deref(), target.as_deref(), retry)
        .await?
        .into_iter()
        .rev()
        .find(|e| e.summary.run_id == run_id)
        .map(|e| e.summary)
        .ok_or_else(|| HistoryError::NotFound(run_id.to_string()))
}

async fn run_state(js: &jetstream::Context, run_id: &str) -> Option<(String, String)> {
    let kv = js.get_key_value(subjects::KV_RUNS).await.ok()?;
    let bytes = kv.get(run_id).await.ok()??;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((
        v["suite"].as_str()?.to_string(),
        v["target"].as_str()?.to_string(),
    ))
}

/// The KV key of a pinned baseline: `baseline.<suite>.<target>`.
pub fn pin_key(suite: &str, target: &str) -> String {
    format!(
        "baseline.{}.{}",
        subjects::sanitize_token(suite),
        subjects::sanitize_token(target)
    )
}

/// Pins `summary`'s run as the baseline of its suite and target.
pub async fn pin(js: &jetstream::Context, summary: &RunSummary) -> Result<(), HistoryError> {
    let kv = js.get_key_value(subjects::KV_RUNS).await.map_err(nats)?;
    kv.put(
        pin_key(&summary.suite, &summary.target),
        summary.run_id.clone().into(),
    )
    .await
    .map_err(nats)?;
    Ok(())
}

/// The pinned baseline run id of a suite and target.
pub async fn pinned(js: &jetstream::Context, suite: &str, target: &str) -> Option<String> {
    let kv = js.get_key_value(subjects::KV_RUNS).await.ok()?;
    let bytes = kv.get(pin_key(suite, target)).await.ok()??;
    String::from_utf8(bytes.to_vec())
        .ok()
        .filter(|s| !s.is_empty())
}

/// How the baseline of a run was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineSource {
    /// `--baseline RUN`.
    Flag,
    /// `vigil runs pin`.
    Pinned,
    /// The latest passing run of the same suite and target.
    LatestPassing,
}

impl BaselineSource {
    /// The name written in the comparison.
    pub fn as_str(self) -> &'static str {
        match self {
            BaselineSource::Flag => "flag",
            BaselineSource::Pinned => "pinned",
            BaselineSource::LatestPassing => "latest_passing",
        }
    }
}

/// The baseline of a run of `suite` against `target` (never the run itself);
/// unanswered reads are retried for `retry` (as [`list`] does).
pub async fn resolve_baseline(
    js: &jetstream::Context,
    suite: &str,
    target: &str,
    explicit: Option<&str>,
    current_run_id: &str,
    retry: Duration,
) -> Result<Option<(RunSummary, BaselineSource)>, HistoryError> {
    if let Some(id) = explicit {
        return Ok(Some((find(js, id, retry).await?, BaselineSource::Flag)));
    }
    if let Some(id) = pinned(js, suite, target).await
        && id != current_run_id
    {
        match find(js, &id, retry).await {
            Ok(s) => return Ok(Some((s, BaselineSource::Pinned))),
            Err(e) => {
                tracing::warn!(baseline = %id, error = %e, "pinned baseline not found; using the latest passing run")
            }
        }
    }
    Ok(list(js, Some(suite), Some(target), retry)
        .await?
        .into_iter()
        .rev()
        .map(|e| e.summary)
        .find(|s| s.passed && s.run_id != current_run_id)
        .map(|s| (s, BaselineSource::LatestPassing)))
}

/// Sets how long summaries are kept in `VIGIL_RUNS` (zero: forever).
pub async fn set_retention(js: &jetstream::Context, max_age: Duration) -> Result<(), HistoryError> {
    let mut stream = js.get_stream(subjects::STREAM_RUNS).await.map_err(nats)?;
    let mut config = stream.info().await.map_err(nats)?.config.clone();
    if config.max_age != max_age {
        config.max_age = max_age;
        js.update_stream(config).await.map_err(nats)?;
    }
    Ok(())
}

/// Most items of a run without a summary to say how many it has (the
/// duplicate bitset of a wild index stays below 512 MiB).
pub const MAX_REPLAY_ITEMS: u64 = 1 << 32;

/// Results a replay asks the server for at once (each up to the server's
/// `max_payload`): the bound on what waits in memory while `f` works.
pub const REPLAY_BATCH: i64 = 8;

/// How long a replay waits for the next result while some are pending.
const REPLAY_STALL: Duration = Duration::from_secs(30);

/// Replays run `run_id`'s item results from `VIGIL_RESULTS`
/// (`vigil.results.<run_id>.>`) one at a time, each index once: `f` gets
/// each item in the order the results were published; a redelivered job's
/// items (an index already seen: the first result wins, as in the
/// aggregator) and indices not below `items_total` (or
/// [`MAX_REPLAY_ITEMS`]) are skipped. Memory is one bit per item
/// ([`IndexSet`]) plus at most [`REPLAY_BATCH`] results on their way.
/// Returns the number of items passed to `f`; a stream that stops
/// delivering while results are pending is an error, never a shorter replay.
pub async fn replay<E: From<HistoryError>>(
    js: &jetstream::Context,
    run_id: &str,
    items_total: Option<u64>,
    mut f: impl FnMut(vigil_protocol::ItemResult) -> Result<(), E>,
) -> Result<u64, E> {
    let stream = js
        .get_stream(subjects::STREAM_RESULTS)
        .await
        .map_err(nats)?;
    let mut consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::results_of_run(run_id),
            deliver_policy: DeliverPolicy::All,
            // The client pulls ahead of `f`: without a cap it buffers 500
            // results, hundreds of MiB for a large run.
            max_batch: REPLAY_BATCH,
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    // The run has no results at all: nothing to wait for.
    if consumer.info().await.map_err(nats)?.num_pending == 0 {
        return Ok(0);
    }
    let mut messages = consumer.messages().await.map_err(nats)?;
    let bound = items_total.unwrap_or(MAX_REPLAY_ITEMS);
    let mut seen = IndexSet::default();
    let mut count = 0;
    loop {
        // Results are pending (the last message says when none are left):
        // a stream that stops delivering is an error, not the end.
        let message = match tokio::time::timeout(REPLAY_STALL, messages.next()).await {
            Ok(Some(message)) => message.map_err(nats)?,
            Ok(None) => {
                return Err(nats("the results stream ended while results were pending").into());
            }
            Err(_) => {
                return Err(HistoryError::Nats(format!(
                    "no result of run `{run_id}` arrived for {} s while some were pending",
                    REPLAY_STALL.as_secs()
                ))
                .into());
            }
        };
        let pending = message.info().map_err(nats)?.pending;
        if let Ok(result) = vigil_protocol::decode::<vigil_protocol::JobResult>(&message.payload) {
            for item in result.items {
                if item.index >= bound || !seen.insert(item.index) {
                    continue;
                }
                count += 1;
                f(item)?;
            }
        }
        if pending == 0 {
            break;
        }
    }
    Ok(count)
}

/// Every item result of run `run_id` from `VIGIL_RESULTS`, one per item
/// (the first result of an item wins, as in the aggregator), by index
/// ([`replay`] collected).
pub async fn item_results(
    js: &jetstream::Context,
    run_id: &str,
) -> Result<Vec<vigil_protocol::ItemResult>, HistoryError> {
    let mut items = Vec::new();
    replay(js, run_id, None, |item| {
        items.push(item);
        Ok::<_, HistoryError>(())
    })
    .await?;
    items.sort_by_key(|item| item.index);
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::{ItemResult, JobResult};

    async fn publish(js: &jetstream::Context, run_id: &str, job: u64, items: &[(u64, &str)]) {
        let result = JobResult {
            run_id: run_id.into(),
            job_index: job,
            items: items
                .iter()
                .map(|&(index, id)| ItemResult {
                    index,
                    id: id.into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let payload = vigil_protocol::encode(&result).unwrap();
        js.publish(subjects::result(run_id, job), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn replay_passes_each_index_once_first_result_wins() {
        let (_nats, js) = vigil_testkit::jetstream().await;
        publish(&js, "r1", 0, &[(0, "a"), (1, "b")]).await;
        // A redelivered job: the same indices again, ignored.
        publish(&js, "r1", 0, &[(1, "again"), (0, "again")]).await;
        // An unreadable result is skipped, not fatal.
        js.publish(subjects::result("r1", 7), "not json".into())
            .await
            .unwrap()
            .await
            .unwrap();
        publish(&js, "r1", 1, &[(9, "out"), (2, "c")]).await;
        publish(&js, "other", 0, &[(5, "x")]).await;

        let mut seen = Vec::new();
        let count = replay(&js, "r1", Some(3), |item| {
            seen.push((item.index, item.id));
            Ok::<_, HistoryError>(())
        })
        .await
        .unwrap();
        assert_eq!(count, 3);
        assert_eq!(
            seen,
            [(0, "a".into()), (1, "b".into()), (2, "c".into())],
            "publication order, first result of an index, none past items_total"
        );

        let all: Vec<(u64, String)> = item_results(&js, "r1")
            .await
            .unwrap()
            .into_iter()
            .map(|i| (i.index, i.id))
            .collect();
        assert_eq!(
            all,
            [
                (0, "a".into()),
                (1, "b".into()),
                (2, "c".into()),
                (9, "out".into())
            ],
            "without a summary's bound: every index once, by index"
        );
        assert!(item_results(&js, "none").await.unwrap().is_empty());

        // The callback's error stops the replay and is returned.
        let stopped = replay(&js, "r1", None, |_| {
            Err(HistoryError::NotFound("stop".into()))
        })
        .await;
        assert!(matches!(stopped, Err(HistoryError::NotFound(_))));
    }
}
