//! Reconciliation: a run does not trust one advisory to learn that a job
//! will never produce a result. It fails the items of
//!
//! - jobs a worker answered as a whole (it could not name their items),
//!   by the item indexes dispatch recorded for each job ([`fail_whole_jobs`]);
//! - jobs the server gave up at MaxDeliver, on the advisory;
//! - jobs whose message left the queue without a result, or that will not be
//!   delivered again, found by looking them up in the streams after a
//!   reconnect and after a while without progress ([`Reconciler::reconcile`]).

use crate::aggregate::Aggregator;
use crate::dispatch::DispatchProgress;
use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use vigil_protocol::{ErrorKind, subjects};

/// Fails the items of jobs a worker failed as a whole (it could not name
/// their items), once dispatch has recorded which items they hold.
pub(crate) fn fail_whole_jobs(
    pending: &mut Vec<(u64, vigil_protocol::ItemError)>,
    progress: &DispatchProgress,
    aggregate: &mut Aggregator,
) {
    if pending.is_empty() {
        return;
    }
    let ledger = progress.ledger.lock().expect("ledger lock");
    pending.retain(|(job_index, error)| {
        let Some(items) = ledger.items_of(*job_index) else {
            return true;
        };
        let failed = aggregate.fail_items(
            items.map(|i| (i, String::new())),
            error.kind.clone(),
            &error.message,
        );
        tracing::warn!(job = job_index, items = failed, kind = %error.kind, reason = %error.message,
            "a worker could not read a job: its items failed");
        false
    });
}

/// Finds the run's jobs that can no longer produce a result.
pub(crate) struct Reconciler<'a> {
    jobs: &'a jetstream::stream::Stream,
    results: &'a jetstream::stream::Stream,
    /// `vigil.jobs.<pool>`.
    subject: String,
    consumer: String,
    run_id: &'a str,
    ledger: &'a DispatchProgress,
    /// A resumed run: jobs below this index were published by an earlier coordinator.
    resumed_below: u64,
    /// Whether the messages of those jobs have been looked up in the stream.
    earlier_jobs_found: bool,
}

impl<'a> Reconciler<'a> {
    /// A reconciler for the run `run_id` on `pool`, resumed from job `resumed_below` (0: a new run).
    pub(crate) fn new(
        jobs: &'a jetstream::stream::Stream,
        results: &'a jetstream::stream::Stream,
        pool: &str,
        run_id: &'a str,
        ledger: &'a DispatchProgress,
        resumed_below: u64,
    ) -> Self {
        Reconciler {
            jobs,
            results,
            subject: subjects::jobs(pool),
            consumer: subjects::worker_consumer(pool),
            run_id,
            ledger,
            resumed_below,
            earlier_jobs_found: false,
        }
    }

    /// Checks every published job that still owes items against the
    /// streams: a job with a result on its way is fine; a job whose message
    /// is gone (terminated, deleted) fails its items as `job_lost`; a job
    /// whose message is still there but will not be delivered again (the
    /// consumer's ack floor is past it, or the consumer has nothing pending
    /// or in flight) fails as `max_deliveries` and its message is deleted.
    /// Returns the items failed. Checks that fail (server unreachable) are
    /// skipped, to be tried at the next reconciliation.
    pub(crate) async fn reconcile(&mut self, aggregate: &mut Aggregator) -> u64 {
        let mut failed = 0;
        if self.resumed_below > 0 && !self.earlier_jobs_found {
            self.earlier_jobs_found = self.find_earlier_jobs().await;
        }
        if self.earlier_jobs_found {
            // An earlier coordinator's job not in the stream was acked (its
            // result is there) or left the queue without one.
            let unseen: Vec<(u64, std::ops::Range<u64>)> = {
                let ledger = self.ledger.ledger.lock().expect("ledger lock");
                ledger
                    .unseen_below(self.resumed_below)
                    .filter(|(_, items)| items.clone().any(|i| !aggregate.is_counted(i)))
                    .collect()
            };
            for (job, items) in unseen {
                if self.has_result(job).await == Some(false) {
                    let reason = format!(
                        "job {job} left the queue without a result while no coordinator watched"
                    );
                    failed += self.fail(aggregate, job, items, ErrorKind::JobLost, &reason);
                }
            }
        }
        let outstanding: Vec<(u64, u64, std::ops::Range<u64>)> = {
            let ledger = self.ledger.ledger.lock().expect("ledger lock");
            ledger
                .sequences()
                .filter_map(|(job, seq)| Some((job, seq, ledger.items_of(job)?)))
                .filter(|(_, _, items)| items.clone().any(|i| !aggregate.is_counted(i)))
                .collect()
        };
        let mut present = Vec::new();
        for (job, seq, items) in outstanding {
            match self.jobs.get_raw_message(seq).await {
                // A worker publishes a job's result before it acks the job:
                // asked after the message is gone, the result is there if any.
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                    if self.has_result(job).await != Some(false) {
                        continue;
                    }
                    let reason = format!(
                        "job {job} left the queue without a result (terminated or deleted)"
                    );
                    failed += self.fail(aggregate, job, items, ErrorKind::JobLost, &reason);
                }
                Ok(_) => present.push((job, seq, items)),
                Err(e) => tracing::debug!(job, error = %e, "cannot check a job's message"),
            }
        }
        if present.is_empty() {
            return failed;
        }
        // Asked after the messages were seen: a message still there that the
        // consumer neither holds nor will deliver is given up.
        let Ok(info) = self.jobs.consumer_info(&self.consumer).await else {
            return failed;
        };
        let idle = info.num_pending == 0 && info.num_ack_pending == 0;
        for (job, seq, items) in present {
            let behind_floor = seq <= info.ack_floor.stream_sequence;
            if !(idle || behind_floor) || self.has_result(job).await != Some(false) {
                continue;
            }
            // Still there after the consumer was asked: not acked, so dead.
            if self.jobs.get_raw_message(seq).await.is_err() {
                continue;
            }
            let reason =
                format!("job {job} will not be delivered again (max deliveries; advisory missed)");
            failed += self.fail(aggregate, job, items, ErrorKind::MaxDeliveries, &reason);
            let _ = self.jobs.delete_message(seq).await;
        }
        failed
    }

    /// Finds the messages of the jobs an earlier coordinator of this run
    /// published (a resumed run), walking the pool's subject through the
    /// jobs stream once; `false` if the walk could not finish.
    async fn find_earlier_jobs(&self) -> bool {
        let mut seq = 1;
        loop {
            let message = match self
                .jobs
                .get_first_raw_message_by_subject(&self.subject, seq)
                .await
            {
                Ok(message) => message,
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                    return true;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot look up the jobs of an earlier coordinator");
                    return false;
                }
            };
            seq = message.sequence + 1;
            let job = message
                .headers
                .get(vigil_protocol::headers::MSG_ID)
                .and_then(|id| vigil_protocol::headers::parse_job_msg_id(id.as_str()))
                .filter(|(run, job)| *run == self.run_id && *job < self.resumed_below)
                .map(|(_, job)| job);
            if let Some(job) = job {
                let mut ledger = self.ledger.ledger.lock().expect("ledger lock");
                ledger.published(job, message.sequence);
            }
        }
    }

    /// Whether the job's result is in the results stream (`None`: unknown).
    async fn has_result(&self, job: u64) -> Option<bool> {
        match self
            .results
            .get_last_raw_message_by_subject(&subjects::result(self.run_id, job))
            .await
        {
            Ok(_) => Some(true),
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Some(false),
            Err(_) => None,
        }
    }

    fn fail(
        &self,
        aggregate: &mut Aggregator,
        job: u64,
        items: std::ops::Range<u64>,
        kind: ErrorKind,
        reason: &str,
    ) -> u64 {
        let failed = aggregate.fail_items(items.map(|i| (i, String::new())), kind, reason);
        tracing::warn!(run_id = %self.run_id, job, items = failed, "{reason}");
        failed
    }

    /// The server gave a job up after MaxDeliver: fail its items, drop the message.
    /// The job is found by its stream sequence: in the ledger when this process
    /// published it, else by reading the message's envelope.
    pub(crate) async fn fail_dead_job(&self, advisory: &[u8], aggregate: &mut Aggregator) {
        let Some(advisory) = vigil_protocol::advisory::MaxDeliveriesAdvisory::decode(advisory)
        else {
            tracing::debug!("unreadable max-deliveries advisory ignored");
            return;
        };
        let seq = advisory.stream_seq;
        let outline = match self.jobs.get_raw_message(seq).await {
            Ok(message) => vigil_protocol::JobOutline::decode(&message.payload),
            Err(_) => None,
        };
        let known = self.ledger.ledger.lock().expect("ledger lock").job_at(seq);
        let (job_index, items): (u64, Vec<(u64, String)>) = match (outline, known) {
            (Some(o), _) if o.run_id == self.run_id => (
                o.job_index,
                o.items.into_iter().map(|i| (i.index, i.id)).collect(),
            ),
            (_, Some(job)) => {
                let range = self
                    .ledger
                    .ledger
                    .lock()
                    .expect("ledger lock")
                    .items_of(job);
                (
                    job,
                    range.unwrap_or(0..0).map(|i| (i, String::new())).collect(),
                )
            }
            _ => return, // another run's coordinator handles it
        };
        let reason = format!(
            "job {job_index} failed on all {} deliveries",
            advisory.deliveries
        );
        let failed = aggregate.fail_items(items, ErrorKind::MaxDeliveries, &reason);
        tracing::warn!(run_id = %self.run_id, job = job_index, items = failed, "{reason}");
        let _ = self.jobs.delete_message(seq).await;
    }
}
