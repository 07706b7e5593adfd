//! The response cache's writes, end to end with real nats-server and `vigil`
//! processes (the stub is the model server and counts every call): a cold
//! run's answers all land, so a re-run is answered entirely from the cache,
//! also across the restart of an embedded run's own nats-server; and a
//! bucket that rejects every write never fails an item.

use crate::common;

use async_nats::jetstream::{kv, stream};
use common::*;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use vigil_testkit::stub::{StubConfig, StubServer};

/// Distinct prompts (`write_arith_dataset` repeats after 1,261), 16 jobs.
const N: u64 = 500;

/// `vigil run SUITE --no-progress --out DIR/NAME.json EXTRA..`, expecting
/// exit 0 and every item scored; returns the summary.
fn run_ok(suite: &Path, name: &str, extra: &[&str]) -> serde_json::Value {
    let out = suite.with_file_name(format!("{name}.json"));
    let o = run(vigil()
        .args(["run", suite.to_str().unwrap(), "--no-progress", "--out"])
        .arg(&out)
        .args(extra));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = read_summary(&out);
    assert_eq!(s["items_total"], N, "{name}");
    assert_eq!(s["items_failed"], 0, "{name}: no item fails");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_embedded_run_stores_every_answer_for_the_re_run() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let requests = || stub.stats().requests.load(Relaxed);
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), N as usize, 0);
    let suite = write_suite(dir.path(), &stub.base_url(), "");
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();

    // Each run starts its own nats-server on the store in `state` and stops
    // it at the end: the cold run's entries must survive that.
    let cold = run_ok(&suite, "cold", &["--cache", "--state-dir", state]);
    assert_eq!(requests(), N, "the cold run calls the backend per item");
    assert_eq!(cold["items_cached"], 0);
    let warm = run_ok(&suite, "warm", &["--cache", "--state-dir", state]);
    assert_eq!(requests(), N, "the re-run makes no call");
    assert_eq!(warm["items_cached"], N, "every item from the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_rejecting_writes_fails_no_item_and_a_new_one_fills() {
    // A bucket made by an operator whose entries may not exceed 8 bytes:
    // the server rejects every write of the cache.
    let (_nats, url, js) = nats_with_cache_bucket(kv::Config {
        history: 1,
        max_value_size: 8,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await;
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let requests = || stub.stats().requests.load(Relaxed);
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), N as usize, 0);
    let suite = write_suite(dir.path(), &stub.base_url(), "");
    let cached = ["--nats", url.as_str(), "--cache"];

    for i in 1..=2 {
        let s = run_ok(&suite, &format!("rejected{i}"), &cached);
        assert_eq!(requests(), i * N, "run {i}: nothing was stored");
        assert_eq!(s["items_cached"], 0);
    }
    // Nothing but the target's one-byte marker (worker/src/cache.rs).
    let mut bucket = js.get_stream("KV_vigil-cache").await.unwrap();
    assert_eq!(bucket.info().await.unwrap().state.messages, 1);

    // Without that bucket the worker makes its own and the cold run fills it.
    js.delete_key_value("vigil-cache").await.unwrap();
    let cold = run_ok(&suite, "cold", &cached);
    assert_eq!(requests(), 3 * N);
    assert_eq!(cold["items_cached"], 0);
    let mut bucket = js.get_stream("KV_vigil-cache").await.unwrap();
    let info = bucket.info().await.unwrap();
    // Entries group ~16 calls each (worker/src/cache.rs, `Group`); how many
    // depends on the keys, which hold the stub's random port, and a 32-item
    // job without an anchor key (one in eight) stores its calls alone: fewer
    // than one entry per item, not a fixed ratio.
    assert!(
        (1..N).contains(&info.state.messages),
        "{} entries for {N} items",
        info.state.messages
    );
    let warm = run_ok(&suite, "warm", &cached);
    assert_eq!(requests(), 3 * N, "the re-run makes no call");
    assert_eq!(warm["items_cached"], N);
}
