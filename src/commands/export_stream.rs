//! A run's item results read one at a time from `VIGIL_RESULTS`
//! (`vigil.results.<run_id>.>`), each index once, so an export's memory does
//! not grow with the run (one bit per item for the duplicates).

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures::StreamExt;
use std::time::Duration;
use vigil_protocol::{ItemResult, JobResult, subjects};

/// Most items of a run without a summary to say how many it has (the
/// duplicate bitset of a wild index stays below 512 MiB).
const MAX_ITEMS: u64 = 1 << 32;

/// Calls `f` with each item result of `run_id`, in the order the results
/// were published; a redelivered job's items (an index already seen) and
/// indices not below `items_total` are skipped. Returns the number of items
/// passed to `f`.
pub async fn scan(
    js: &jetstream::Context,
    run_id: &str,
    items_total: Option<u64>,
    mut f: impl FnMut(ItemResult) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let stream = js
        .get_stream(subjects::STREAM_RESULTS)
        .await
        .context("VIGIL_RESULTS")?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::results_of_run(run_id),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("reading VIGIL_RESULTS")?;
    let mut messages = consumer.messages().await.context("reading VIGIL_RESULTS")?;
    let mut seen: Vec<u64> = Vec::new();
    let mut count = 0;
    loop {
        // No message within a second: the run has none (pending says when
        // the last one arrived otherwise).
        let next = tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
        let Ok(Some(message)) = next else { break };
        let message = message.context("reading VIGIL_RESULTS")?;
        let pending = message.info().map_err(|e| anyhow::anyhow!("{e}"))?.pending;
        if let Ok(result) = vigil_protocol::decode::<JobResult>(&message.payload) {
            for item in result.items {
                if item.index >= items_total.unwrap_or(MAX_ITEMS) {
                    continue;
                }
                let (word, bit) = ((item.index / 64) as usize, item.index % 64);
                if seen.len() <= word {
                    seen.resize(word + 1, 0);
                }
                if seen[word] & (1 << bit) != 0 {
                    continue;
                }
                seen[word] |= 1 << bit;
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
