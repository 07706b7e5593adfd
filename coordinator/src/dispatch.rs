//! Dispatch: shards of rendered items become jobs on `vigil.jobs.<pool>`.
//!
//! Each job carries `Nats-Msg-Id = <run_id>/<job_index>`, so a re-publish
//! (after a lost PubAck, or by a resumed coordinator) is dropped by the
//! server. At most `max_in_flight` publishes wait for their PubAck at once,
//! which bounds memory and respects the server's ingest limit; a full jobs
//! stream (DiscardNew) is waited out, which is the backpressure of a run.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use vigil_protocol::{Item, Job, headers};

/// Everything a job carries besides its items.
#[derive(Debug, Clone)]
pub struct JobTemplate {
    /// The run's job fields (`items` empty, `job_index` ignored).
    pub job: Job,
    /// `vigil.jobs.<pool>`.
    pub subject: String,
    /// Jobs with a lower index are not published (a resumed run already did).
    pub skip_below: u64,
}

/// Counters of a dispatch.
#[derive(Debug, Default)]
pub struct DispatchProgress {
    /// Jobs the server has acknowledged.
    pub jobs: AtomicU64,
    /// Items in acknowledged jobs.
    pub items: AtomicU64,
    /// Publishes the server reported as duplicates (already there).
    pub duplicates: AtomicU64,
    /// Publishes retried (stream full, lost PubAck, reconnect).
    pub retries: AtomicU64,
    /// The high-water mark: every job with a lower index is acknowledged by
    /// the server (or was skipped on resume). What a resumed run starts from.
    pub high_water: AtomicU64,
    /// Which items each job holds, and where its message is in `VIGIL_JOBS`.
    pub ledger: Mutex<JobLedger>,
}

/// What the coordinator remembers of each job (a few dozen bytes per job,
/// never the items): the item indexes it holds, and for the jobs this process
/// published, the stream sequence of its message. With it, a job that comes
/// back failed as a whole, or whose message vanished, fails exactly its items.
#[derive(Debug, Default)]
pub struct JobLedger {
    items: BTreeMap<u64, Range<u64>>,
    seqs: BTreeMap<u64, u64>,
    by_seq: HashMap<u64, u64>,
}

impl JobLedger {
    /// Records that job `job_index` holds the item indexes `items`.
    pub fn planned(&mut self, job_index: u64, items: Range<u64>) {
        self.items.insert(job_index, items);
    }

    /// Records that job `job_index` is message `seq` of `VIGIL_JOBS`.
    pub fn published(&mut self, job_index: u64, seq: u64) {
        if let Some(old) = self.seqs.insert(job_index, seq) {
            self.by_seq.remove(&old);
        }
        self.by_seq.insert(seq, job_index);
    }

    /// The item indexes of a job, once dispatch has reached it.
    pub fn items_of(&self, job_index: u64) -> Option<Range<u64>> {
        self.items.get(&job_index).cloned()
    }

    /// The job at stream sequence `seq`, if this process published it.
    pub fn job_at(&self, seq: u64) -> Option<u64> {
        self.by_seq.get(&seq).copied()
    }

    /// `(job_index, stream sequence)` of every job whose message is known.
    pub fn sequences(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.seqs.iter().map(|(&job, &seq)| (job, seq))
    }

    /// The jobs below `job_index` whose items are known but whose message is
    /// not (a resumed run's jobs that an earlier coordinator published).
    pub fn unseen_below(&self, job_index: u64) -> impl Iterator<Item = (u64, Range<u64>)> + '_ {
        self.items
            .range(..job_index)
            .filter(|(job, _)| !self.seqs.contains_key(job))
            .map(|(&job, items)| (job, items.clone()))
    }
}

/// Dispatch could not finish.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// One item alone does not fit in the server's max_payload.
    #[error(
        "item {id} (index {index}) is {bytes} bytes encoded, over the server's max_payload of {max} bytes"
    )]
    ItemTooLarge {
        /// The item's id.
        id: String,
        /// Its index.
        index: u64,
        /// Encoded job size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A job could not be encoded.
    #[error(transparent)]
    Encode(#[from] vigil_protocol::CodecError),
    /// A publish kept failing.
    #[error("publishing job {job_index} failed {attempts} times: {last}")]
    Publish {
        /// The job.
        job_index: u64,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: String,
    },
}

/// Splits shards that do not fit `max_bytes` and encodes them, in order.
/// Job indices are assigned from `next_index`, so the same dataset always
/// gives the same jobs (what a resumed run relies on). Each job comes with
/// its item indexes (a shard holds consecutive items, and so does each part).
pub fn encode_jobs(
    template: &Job,
    items: Vec<Item>,
    next_index: &mut u64,
    max_bytes: usize,
) -> Result<Vec<(u64, Bytes, Range<u64>)>, DispatchError> {
    let mut out = Vec::new();
    let mut stack = vec![items];
    while let Some(items) = stack.pop() {
        let range = match (items.first(), items.last()) {
            (Some(first), Some(last)) => first.index..last.index + 1,
            _ => 0..0,
        };
        let job = Job {
            job_index: *next_index,
            items,
            ..template.clone()
        };
        let bytes = job.encode()?;
        if bytes.len() > max_bytes {
            let mut items = job.items;
            if items.len() == 1 {
                let item = items.pop().expect("one item");
                return Err(DispatchError::ItemTooLarge {
                    id: item.id,
                    index: item.index,
                    bytes: bytes.len(),
                    max: max_bytes,
                });
            }
            let second = items.split_off(items.len() / 2);
            stack.push(second);
            stack.push(items);
            continue;
        }
        out.push((*next_index, Bytes::from(bytes), range));
        *next_index += 1;
    }
    Ok(out)
}

/// Publishes every shard received on `shards` as jobs (but those below
/// `template.skip_below`); returns the number of jobs when the channel closes
/// and every PubAck is in. `progress.high_water` follows the acknowledged prefix.
pub async fn dispatch(
    js: &jetstream::Context,
    template: JobTemplate,
    mut shards: mpsc::Receiver<Vec<Item>>,
    max_in_flight: usize,
    max_payload: usize,
    progress: Arc<DispatchProgress>,
) -> Result<u64, DispatchError> {
    let mut headers = vigil_nats::headers::message_headers(&template.job.run_id);
    // Every job carries the run span's context: the job spans of whichever
    // workers take them become its children (no-op when tracing is off).
    vigil_nats::trace_context::inject(
        &tracing_opentelemetry::OpenTelemetrySpanExt::context(&tracing::Span::current()),
        &mut headers,
    );
    let run_id = template.job.run_id.clone();
    let max_bytes = max_payload.saturating_sub(4096);
    let mut next_index = 0u64;
    let mut in_flight = FuturesUnordered::new();
    let mut shards_open = true;
    // Acknowledged jobs above the high-water mark, until the gap below closes.
    let mut high_water = template.skip_below;
    let mut acked_above = std::collections::BTreeSet::new();
    progress.high_water.store(high_water, Ordering::Relaxed);
    loop {
        tokio::select! {
            shard = shards.recv(), if shards_open && in_flight.len() < max_in_flight.max(1) => {
                let Some(items) = shard else { shards_open = false; continue };
                for (job_index, payload, range) in encode_jobs(&template.job, items, &mut next_index, max_bytes)? {
                    let count = range.end - range.start;
                    progress.ledger.lock().expect("ledger lock").planned(job_index, range);
                    if job_index < template.skip_below {
                        progress.items.fetch_add(count, Ordering::Relaxed);
                        continue;
                    }
                    in_flight.push(publish_job(js, &template.subject, &headers, &run_id, job_index, payload, count, &progress));
                }
            }
            done = in_flight.next(), if !in_flight.is_empty() => {
                acked_above.insert(done.expect("non-empty")?);
                while acked_above.remove(&high_water) {
                    high_water += 1;
                }
                progress.high_water.store(high_water, Ordering::Relaxed);
            }
            else => break,
        }
    }
    Ok(next_index)
}

/// Publishes one encoded job with `Nats-Msg-Id = <run_id>/<job_index>`,
/// retrying (a full stream is waited out; other errors up to 30 times);
/// returns its index once the server has it. Counts into `progress`.
#[allow(clippy::too_many_arguments)]
pub async fn publish_job(
    js: &jetstream::Context,
    subject: &str,
    headers: &HeaderMap,
    run_id: &str,
    job_index: u64,
    payload: Bytes,
    items: u64,
    progress: &DispatchProgress,
) -> Result<u64, DispatchError> {
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let publish = PublishMessage::build()
            .headers(headers.clone())
            .message_id(headers::job_msg_id(run_id, job_index))
            .payload(payload.clone());
        let outcome = match js.send_publish(subject.to_string(), publish).await {
            Ok(ack) => ack.await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(ack) => {
                if ack.duplicate {
                    progress.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                progress
                    .ledger
                    .lock()
                    .expect("ledger lock")
                    .published(job_index, ack.sequence);
                progress.jobs.fetch_add(1, Ordering::Relaxed);
                progress.items.fetch_add(items, Ordering::Relaxed);
                return Ok(job_index);
            }
            Err(last) => {
                progress.retries.fetch_add(1, Ordering::Relaxed);
                // A full work queue is backpressure, not failure: wait for
                // workers to drain it, however long that takes.
                let stream_full =
                    last.contains("maximum messages") || last.contains("maximum bytes");
                if !stream_full && attempts >= 30 {
                    return Err(DispatchError::Publish {
                        job_index,
                        attempts,
                        last,
                    });
                }
                let wait = if stream_full {
                    200
                } else {
                    100 * u64::from(attempts.min(20))
                };
                tracing::debug!(job_index, attempts, error = %last, "publish failed; retrying");
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
    }
}
