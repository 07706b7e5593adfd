//! Scaling, simulated on one machine (issue: run on Kubernetes, item 6): a run
//! starts with one worker process, three more join while it runs, then two get
//! SIGTERM. Throughput rises after the scale-up, and no item is lost or
//! duplicated, neither in the summary nor at the backend.

use crate::common;

use common::*;
use futures::StreamExt;
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use vigil_protocol::ProgressEvent;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

/// Items done at the latest progress event, waiting for events as they come.
async fn done_after(events: &mut async_nats::Subscriber, wait: Duration, last: &mut u64) {
    let until = tokio::time::Instant::now() + wait;
    while let Ok(Some(message)) = tokio::time::timeout_at(until, events.next()).await {
        if let Ok(event) = vigil_protocol::decode::<ProgressEvent>(&message.payload) {
            *last = (*last).max(event.done);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_workers_raises_throughput_and_sigterm_loses_nothing() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    // 100 ms per call and 8 calls per worker: one worker does about 80 items/s.
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
    let mut events = client.subscribe("vigil.events.>").await.unwrap();
    client.flush().await.unwrap();

    let mut workers = vec![spawn_worker(&nats.url(), &stub.base_url(), 8)];
    let out = dir.path().join("summary.json");
    let mut coordinator = coordinate(&suite, &nats.url(), 0, Some(&out))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Phase 1: one worker. Wait for the first progress, then measure 2 s.
    let mut done = 0u64;
    let started = Instant::now();
    while done == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no progress with one worker"
        );
        done_after(&mut events, Duration::from_millis(200), &mut done).await;
    }
    let (t1, d1) = (Instant::now(), done);
    done_after(&mut events, Duration::from_secs(2), &mut done).await;
    let one_worker_rate = (done - d1) as f64 / t1.elapsed().as_secs_f64();

    // Phase 2: four workers.
    for _ in 0..3 {
        workers.push(spawn_worker(&nats.url(), &stub.base_url(), 8));
    }
    done_after(&mut events, Duration::from_millis(700), &mut done).await; // let them connect
    let (t2, d2) = (Instant::now(), done);
    done_after(&mut events, Duration::from_secs(2), &mut done).await;
    let four_worker_rate = (done - d2) as f64 / t2.elapsed().as_secs_f64();
    eprintln!("items/s: 1 worker {one_worker_rate:.0}, 4 workers {four_worker_rate:.0}");
    assert!(
        done < n,
        "the run must still be going when measuring (done {done} of {n}); make it longer"
    );
    assert!(
        four_worker_rate > 1.5 * one_worker_rate,
        "throughput rose from {one_worker_rate:.0} to only {four_worker_rate:.0} items/s"
    );

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
