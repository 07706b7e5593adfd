//! The response cache's batched reads and pipelined writes against a real
//! nats-server: a job's entries are read in batch direct gets (chunked at
//! `BATCH_KEYS`), exactly the stored, fresh ones come back, and a write
//! queued before a later publish is stored by the time that publish is.

use std::time::{SystemTime, UNIX_EPOCH};
use vigil_nats::topology::TopologyConfig;
use vigil_protocol::{CachePolicy, Item, Job, Prompt, TargetSpec, TokenUsage, subjects};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_worker::backend::Completion;
use vigil_worker::cache::{BATCH_KEYS, CachedResponse, JobLookups, ResponseCache};
use vigil_worker::identity::Identity;

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

/// A job of `prompts` (their numbers), `samples` calls each, with the cache on.
fn job_of(prompts: impl IntoIterator<Item = usize>, samples: u32) -> Job {
    Job {
        target: TargetSpec {
            model: "m".into(),
            base_url: "http://h/v1".into(),
            ..Default::default()
        },
        items: prompts
            .into_iter()
            .map(|i| Item {
                index: i as u64,
                id: i.to_string(),
                prompt: Prompt::Completion(format!("prompt {i}")),
                ..Default::default()
            })
            .collect(),
        cache: Some(CachePolicy {
            enabled: true,
            ttl_s: Some(3600),
        }),
        samples,
        ..Default::default()
    }
}

/// The answer to sample `s` of prompt `i`, `pad` bytes long at least.
fn answer(i: u64, s: u32, pad: usize) -> String {
    format!("answer {i}.{s} {}", "x".repeat(pad))
}

/// Runs `job` in a run of its own ([`run_job_in`]).
async fn run_job(
    js: &async_nats::jetstream::Context,
    cache: &ResponseCache,
    job: &Job,
    pad: usize,
) -> usize {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    run_job_in(js, cache, job, pad, &format!("run-{run}")).await
}

/// Runs `job` as a job of run `run`, as the worker does: every miss
/// answered and kept, the job's writes made, then a put awaited to its
/// acknowledgement (all stored). Returns the calls the cache answered,
/// each checked against its answer.
async fn run_job_in(
    js: &async_nats::jetstream::Context,
    cache: &ResponseCache,
    job: &Job,
    pad: usize,
    run: &str,
) -> usize {
    let job = &Job {
        run_id: run.to_string(),
        ..job.clone()
    };
    let lookups = JobLookups::read(Some(cache), job, &Identity::NotReported).await;
    let mut hits = 0;
    for (position, item) in job.items.iter().enumerate() {
        for s in 0..job.samples.max(1) {
            let lookup = lookups.lookup(position, s);
            match &lookup.hit {
                Some(hit) => {
                    assert_eq!(hit.text, answer(item.index, s, pad));
                    hits += 1;
                }
                None => lookup.store(&completion(&answer(item.index, s, pad))),
            }
        }
    }
    assert_eq!(lookups.hits(), hits);
    lookups.write().await;
    settle(js).await;
    hits
}

/// A put awaited to its acknowledgement: what was published before is stored.
async fn settle(js: &async_nats::jetstream::Context) {
    let kv = js.get_key_value(subjects::KV_CACHE).await.unwrap();
    kv.put("settle", "marker".into()).await.unwrap();
}

async fn messages(js: &async_nats::jetstream::Context) -> u64 {
    let mut stream = js.get_stream("KV_vigil-cache").await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// The entries a cold job's keys make, by the documented rule: one per key
/// starting with `0` (and the keys after it), one for the keys before the
/// first such key, each key alone when none does; and the target's marker.
fn expected_entries(job: &Job) -> u64 {
    let keys: Vec<String> = job
        .items
        .iter()
        .flat_map(|item| {
            (0..job.samples.max(1)).map(|s| {
                let target = vigil_worker::sampling::target_for_sample(&job.target, s);
                vigil_worker::cache::key(&target, &item.prompt)
            })
        })
        .collect();
    let anchors = keys.iter().filter(|k| k.starts_with('0')).count() as u64;
    1 + match (anchors, keys[0].starts_with('0')) {
        (0, _) => keys.len() as u64,
        (n, true) => n,
        (n, false) => n + 1,
    }
}

#[tokio::test]
async fn a_job_s_answers_are_stored_in_groups_and_found_again_however_the_jobs_are_cut() {
    let (_nats, js, cache) = open_cache().await;
    settle(&js).await;
    let marker = messages(&js).await;

    // A cold job: nothing found, one entry per group (far fewer than calls).
    let cold = job_of(0..512, 1);
    assert_eq!(run_job(&js, &cache, &cold, 0).await, 0);
    let stored = messages(&js).await - marker;
    assert_eq!(stored, expected_entries(&cold));
    assert!(stored < 512 / 8, "{stored} entries for 512 calls");

    // The same calls again: all found, nothing written.
    assert_eq!(run_job(&js, &cache, &cold, 0).await, 512);
    assert_eq!(messages(&js).await - marker, stored);

    // A line added at the top and jobs of 100: every old call is found but
    // at most the one each new job starts with that the old one ended with.
    let mut misses = 0;
    let lines: Vec<usize> = std::iter::once(9_999).chain(0..512).collect();
    for chunk in lines.chunks(100) {
        let job = job_of(chunk.iter().copied(), 1);
        misses += job.items.len() - run_job(&js, &cache, &job, 0).await;
    }
    assert!(misses <= 1 + 6, "{misses} of 513 calls missed");
    // Once written in the new cut, all of them are found in it.
    for chunk in lines.chunks(100) {
        let job = job_of(chunk.iter().copied(), 1);
        assert_eq!(run_job(&js, &cache, &job, 0).await, job.items.len());
    }
    // The original cut still finds every call (groups keep the calls of
    // other cuts they held).
    assert_eq!(run_job(&js, &cache, &cold, 0).await, 512);

    // A prompt the job sends twice: both calls answered, stored once.
    let twice = job_of((2000..2100).chain(2000..2030), 1);
    assert_eq!(run_job(&js, &cache, &twice, 0).await, 0);
    let written = messages(&js).await;
    assert_eq!(run_job(&js, &cache, &twice, 0).await, 130);
    assert_eq!(messages(&js).await, written, "nothing written again");

    // Samples are calls of their own, grouped the same way.
    let sampled = job_of(1000..1100, 3);
    assert_eq!(run_job(&js, &cache, &sampled, 0).await, 0);
    assert_eq!(run_job(&js, &cache, &sampled, 0).await, 300);
}

#[tokio::test]
async fn calls_beyond_a_group_s_size_and_calls_stored_alone_are_found() {
    let (_nats, js, cache) = open_cache().await;

    // 40 KiB answers: a group holds a few, the rest are stored alone.
    let big = job_of(0..128, 1);
    assert_eq!(run_job(&js, &cache, &big, 40 * 1024).await, 0);
    assert_eq!(run_job(&js, &cache, &big, 40 * 1024).await, 128);

    // Entries an older vigil stored one per call: found, then regrouped.
    let old = job_of(500..628, 1);
    for item in &old.items {
        cache
            .put(
                &vigil_worker::cache::key(&old.target, &item.prompt),
                &completion(&answer(item.index, 0, 0)),
            )
            .await;
    }
    settle(&js).await;
    let before = messages(&js).await;
    assert_eq!(run_job(&js, &cache, &old, 0).await, 128);
    assert!(
        messages(&js).await > before,
        "the job's groups were written"
    );
    assert_eq!(run_job(&js, &cache, &old, 0).await, 128);
}

#[tokio::test]
async fn a_run_whose_first_job_finds_nothing_reads_no_more_and_the_next_run_reads() {
    let (_nats, js, cache) = open_cache().await;

    // Run 1: its first job finds nothing stored for the target at all, so
    // its later jobs do not read, even for answers stored meanwhile.
    assert_eq!(
        run_job_in(&js, &cache, &job_of(0..64, 1), 0, "one").await,
        0
    );
    assert_eq!(
        run_job_in(&js, &cache, &job_of(0..64, 1), 0, "one").await,
        0
    );
    // Run 2 reads, and finds them.
    assert_eq!(
        run_job_in(&js, &cache, &job_of(0..64, 1), 0, "two").await,
        64
    );
    // Run 3's first job is new items of a target with answers stored: it
    // still reads, and its later jobs find theirs.
    assert_eq!(
        run_job_in(&js, &cache, &job_of(100..164, 1), 0, "three").await,
        0
    );
    assert_eq!(
        run_job_in(&js, &cache, &job_of(0..64, 1), 0, "three").await,
        64
    );
}

#[tokio::test]
async fn groups_stay_within_a_small_max_payload() {
    // A server that takes at most 64 KiB per message: groups of 20 KiB
    // answers stay within half of it, and every answer is found again.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.conf");
    std::fs::write(&config, "max_payload: 65536\n").unwrap();
    let nats = NatsServer::start(NatsServerConfig {
        config_file: Some(config),
        ..Default::default()
    })
    .await
    .expect("nats-server starts (scripts/setup.sh installs it)");
    let client = async_nats::connect(nats.url()).await.unwrap();
    assert_eq!(client.server_info().max_payload, 65536);
    let js = async_nats::jetstream::new(client);
    let cache = ResponseCache::open(&js, &TopologyConfig::default())
        .await
        .unwrap();

    let job = job_of(0..128, 1);
    assert_eq!(run_job(&js, &cache, &job, 20 * 1024).await, 0);
    assert_eq!(run_job(&js, &cache, &job, 20 * 1024).await, 128);
}

#[tokio::test]
async fn a_run_whose_jobs_find_none_of_their_calls_reads_one_job_in_eight_until_one_does() {
    let (_nats, js, cache) = open_cache().await;
    // Answers of prompts 0..64 stored: the target's marker is there.
    assert_eq!(run_job(&js, &cache, &job_of(0..64, 1), 0).await, 0);

    // Four jobs of new prompts find none of their calls ...
    for j in 0..4 {
        let new = job_of(1000 + j * 32..1000 + (j + 1) * 32, 1);
        assert_eq!(run_job_in(&js, &cache, &new, 0, "mixed").await, 0);
    }
    // ... so jobs 5 to 7 of the run do not read (their stored calls are
    // called again), job 8 reads and finds its calls, and from then on
    // every job reads again.
    for _ in 5..8 {
        assert_eq!(
            run_job_in(&js, &cache, &job_of(0..32, 1), 0, "mixed").await,
            0
        );
    }
    assert_eq!(
        run_job_in(&js, &cache, &job_of(32..64, 1), 0, "mixed").await,
        32
    );
    assert_eq!(
        run_job_in(&js, &cache, &job_of(0..32, 1), 0, "mixed").await,
        32
    );
}
