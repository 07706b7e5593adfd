//! Scaling, simulated on one machine (issue: run on Kubernetes, item 6): a run
//! starts with one worker process, three more join while it runs, then two get
//! SIGTERM. Throughput rises after the scale-up, and no item is lost or
//! duplicated, neither in the summary nor at the backend.
//!
//! "Throughput rises" is checked with counts, not with rates over a wall-clock
//! window: every call takes the stub's fixed 100 ms, so calls at once are
//! throughput. One worker (8 calls at a time) never has more than 8 calls at
//! the backend at once; after the scale-up the backend sees more than 8 at
//! once and each of the four workers has scored items, while the run goes on.

use crate::common;

use common::cluster::wait_until;
use common::*;
use futures::StreamExt;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use vigil_protocol::ProgressEvent;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

/// Calls each worker makes at once.
const CONCURRENCY: usize = 8;

/// Keeps `done` at the items done of the latest progress event.
fn track_done(mut events: async_nats::Subscriber) -> Arc<AtomicU64> {
    let done = Arc::new(AtomicU64::new(0));
    let seen = done.clone();
    tokio::spawn(async move {
        while let Some(message) = events.next().await {
            if let Ok(event) = vigil_protocol::decode::<ProgressEvent>(&message.payload) {
                seen.fetch_max(event.done, Ordering::Relaxed);
            }
        }
    });
    done
}

/// A worker serving `/metrics` on a free address, and that address.
fn spawn_worker_with_metrics(nats: &str, stub: &str) -> (Child, String) {
    let addr = free_addr();
    let child = worker_cmd(nats, stub, CONCURRENCY)
        .args(["--metrics-addr", &addr])
        .spawn()
        .expect("vigil worker starts");
    (child, addr)
}

/// Items a worker has scored, from its `/metrics` (0 while it is not up).
fn items_of(addr: &str) -> f64 {
    scrape(addr).map_or(0.0, |text| value(&text, "vigil_worker_items_total"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_workers_raises_throughput_and_sigterm_loses_nothing() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    // 100 ms per call and 8 calls per worker: one worker does about 80 items/s,
    // so the run lasts about 20 s with one worker and 5 s with four.
    let stub = StubServer::start(StubConfig {
        latency: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 1600u64;
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n as usize, 0);
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace("shard_size: 32", "shard_size: 8");
    std::fs::write(&suite, text).unwrap();

    let client = async_nats::connect(nats.url()).await.unwrap();
    let events = client.subscribe("vigil.events.>").await.unwrap();
    client.flush().await.unwrap();
    let done = track_done(events);

    let mut workers = vec![spawn_worker_with_metrics(&nats.url(), &stub.base_url())];
    let out = dir.path().join("summary.json");
    let mut coordinator = coordinate(&suite, &nats.url(), 0, Some(&out))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Phase 1: one worker. Its first results arrive; it never has more than
    // its 8 calls at the backend at once.
    wait_until(
        "progress with one worker",
        Duration::from_secs(60),
        || async { done.load(Ordering::Relaxed) > 0 },
    )
    .await;
    let stats = stub.stats();
    let one_worker = stats.max_in_flight.load(Ordering::Relaxed);
    assert!(
        one_worker <= CONCURRENCY as u64,
        "one worker had {one_worker} calls at once, more than its {CONCURRENCY}"
    );

    // Phase 2: four workers. Each scores items, and the backend sees more
    // calls at once than one worker may make.
    for _ in 0..3 {
        workers.push(spawn_worker_with_metrics(&nats.url(), &stub.base_url()));
    }
    let addrs: Vec<String> = workers.iter().map(|(_, addr)| addr.clone()).collect();
    wait_until(
        "every worker scoring, and more calls at once than one worker makes",
        Duration::from_secs(60),
        || async {
            stats.max_in_flight.load(Ordering::Relaxed) > CONCURRENCY as u64
                && addrs.iter().all(|addr| items_of(addr) > 0.0)
        },
    )
    .await;
    let four_workers = stats.max_in_flight.load(Ordering::Relaxed);
    let per_worker: Vec<f64> = addrs.iter().map(|addr| items_of(addr)).collect();
    let done_now = done.load(Ordering::Relaxed);
    eprintln!(
        "calls at once: 1 worker {one_worker}, 4 workers {four_workers}; items per worker \
         {per_worker:?}; done {done_now} of {n}"
    );
    assert!(
        done_now < n,
        "the run must still be going after the scale-up (done {done_now} of {n}); make it longer"
    );
    let mut workers: Vec<Child> = workers.into_iter().map(|(child, _)| child).collect();

    // Phase 3: SIGTERM two workers; they drain and exit 0.
    let stopped: Vec<Child> = workers.drain(..2).collect();
    for child in &stopped {
        sigterm(child);
    }
    for mut child in stopped {
        assert_eq!(
            child.wait().unwrap().code(),
            Some(0),
            "a SIGTERM'd worker exits 0"
        );
    }

    let status = tokio::task::spawn_blocking(move || coordinator.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let s = read_summary(&out);
    assert_eq!(s["items_total"], n);
    assert_eq!(s["items_scored"], n, "no item lost");
    assert_eq!(s["scores"]["exact"]["n"], n, "no item counted twice");
    assert_eq!(s["scores"]["exact"]["pass_rate"], 1.0);
    assert_eq!(
        stub.stats().requests.load(Ordering::Relaxed),
        n,
        "no item was evaluated twice at the backend"
    );
    for child in &workers {
        sigterm(child);
    }
    for mut child in workers {
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
}
