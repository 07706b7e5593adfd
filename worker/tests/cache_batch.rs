//! The response cache's batched reads and pipelined writes against a real
//! nats-server: a job's entries are read in batch direct gets (chunked at
//! `BATCH_KEYS`), exactly the stored, fresh ones come back, and a write
//! queued before a later publish is stored by the time that publish is.

use std::time::{SystemTime, UNIX_EPOCH};
use vigil_nats::topology::TopologyConfig;
use vigil_protocol::{TokenUsage, subjects};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_worker::backend::Completion;
use vigil_worker::cache::{BATCH_KEYS, CachedResponse, ResponseCache};

fn completion(text: &str) -> Completion {
    Completion {
        text: text.into(),
        usage: TokenUsage {
            input: 3,
            output: 1,
        },
        finish_reason: Some("stop".into()),
        model: Some("m".into()),
        latency_ms: 1.5,
        attempts: 1,
    }
}

/// A private nats-server and the response cache on it.
async fn open_cache() -> (NatsServer, async_nats::jetstream::Context, ResponseCache) {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .expect("nats-server starts (scripts/setup.sh installs it)");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let cache = ResponseCache::open(&js, &TopologyConfig::default())
        .await
        .unwrap();
    (nats, js, cache)
}

fn key(i: usize) -> String {
    format!("{i:064x}")
}

#[tokio::test]
async fn batched_reads_return_exactly_the_stored_fresh_entries() {
    let (_nats, js, cache) = open_cache().await;

    // More keys than one batch holds; every third one stored.
    let total = BATCH_KEYS * 2 + 17;
    let keys: Vec<String> = (0..total).map(key).collect();
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        cache.put(k, &completion(&format!("answer {i}"))).await;
    }
    // An entry stored a day ago: older than a one-hour TTL.
    let kv = js.get_key_value(subjects::KV_CACHE).await.unwrap();
    let old = CachedResponse {
        text: "stale".into(),
        stored_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            - 86_400_000,
        ..Default::default()
    };
    kv.put(key(1), vigil_protocol::encode(&old).unwrap().into())
        .await
        .unwrap();
    // The pipelined puts are queued before this one, so all are stored now.
    let marker = key(total + 1);
    kv.put(&marker, vigil_protocol::encode(&old).unwrap().into())
        .await
        .unwrap();

    let asked: Vec<&str> = keys.iter().map(String::as_str).collect();
    let found = cache.get_many(&asked, Some(3600)).await;
    let expected: Vec<usize> = (0..total).filter(|i| i % 3 == 0).collect();
    let mut got: Vec<usize> = found
        .keys()
        .map(|k| usize::from_str_radix(k, 16).unwrap())
        .collect();
    got.sort();
    assert_eq!(got, expected, "the stored keys, not the stale one");
    for i in expected {
        let hit = &found[&key(i)];
        assert_eq!(hit.text, format!("answer {i}"));
        assert_eq!(hit.usage.input, 3);
        assert_eq!(hit.finish_reason.as_deref(), Some("stop"));
    }
    // Without a TTL the old entry is an answer too; unknown keys are not.
    let found = cache.get_many(&[&key(1), &key(2)], None).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[&key(1)].text, "stale");
    // Nothing stored under any key asked: an empty answer, not an error.
    let none = [key(total + 5), key(total + 6)];
    let asked: Vec<&str> = none.iter().map(String::as_str).collect();
    assert!(cache.get_many(&asked, None).await.is_empty());
    // Each read agrees with the single-key get.
    assert_eq!(cache.get(&key(3), None).await.unwrap().text, "answer 3");
    assert!(cache.get(&key(4), None).await.is_none());
}

#[tokio::test]
async fn a_job_s_writes_all_land_and_read_back_as_written() {
    let (_nats, js, cache) = open_cache().await;

    // One write of many entries (each but the last without an
    // acknowledgement), then one put of a single entry.
    let total = BATCH_KEYS * 3;
    let entries: Vec<(String, Vec<u8>)> = (0..total)
        .map(|i| {
            let entry = CachedResponse {
                text: format!("answer {i}"),
                stored_at_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64,
                ..Default::default()
            };
            (key(i), vigil_protocol::encode(&entry).unwrap())
        })
        .collect();
    cache.write(entries).await;
    cache.put(&key(total), &completion("the last")).await;
    // A put awaited to its acknowledgement after them: all are stored now.
    let kv = js.get_key_value(subjects::KV_CACHE).await.unwrap();
    kv.put(key(total + 1), "marker".into()).await.unwrap();

    let keys: Vec<String> = (0..=total).map(key).collect();
    let asked: Vec<&str> = keys.iter().map(String::as_str).collect();
    let found = cache.get_many(&asked, Some(3600)).await;
    assert_eq!(found.len(), total + 1, "every entry written is read back");
    for i in 0..total {
        assert_eq!(found[&key(i)].text, format!("answer {i}"));
    }
    let last = &found[&key(total)];
    assert_eq!(last.text, "the last");
    assert_eq!(last.usage.input, 3);
    assert_eq!(last.model.as_deref(), Some("m"));
    let mut stream = js.get_stream("KV_vigil-cache").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        total as u64 + 2
    );
}
