//! A restarted nats-server (same port, same store) mid-run: the workers'
//! pull loops and the coordinator's results subscription reconnect, the
//! coordinator reconciles its outstanding jobs, and the run completes with
//! every item exactly once.

use crate::common;
use crate::common::cluster;

use async_nats::jetstream;
use cluster::*;
use common::*;
use std::time::Duration;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_nats_server_loses_nothing() {
    let mut nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig {
        latency: Duration::from_millis(20),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    let wrong = write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 10);
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    let out = dir.path().join("summary.json");
    let (url, base) = (nats.url(), stub.base_url());
    let _workers: Vec<Proc> = (0..2)
        .map(|i| worker(dir.path(), &format!("worker-{i}"), &url, &base, 8, &[], &[]))
        .collect();
    let mut coordinator = coordinator(dir.path(), "coordinator", &suite, &url, &out, &[]);
    {
        let js = jetstream::new(async_nats::connect(&url).await.unwrap());
        wait_until(
            "a third of the results",
            Duration::from_secs(30),
            || async {
                count_messages(&js, "VIGIL_RESULTS", "vigil.results.>").await >= (n / 32 / 3) as u64
            },
        )
        .await;
    }
    nats.restart().await.unwrap();
    let code = coordinator.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{}", coordinator.log_text());
    let s = read_summary(&out);
    assert_eq!(s["items_scored"], n);
    let expected = (n - wrong) as f64 / n as f64;
    for scorer in ["exact", "num"] {
        assert_eq!(s["scores"][scorer]["n"], n);
        assert!((s["scores"][scorer]["pass_rate"].as_f64().unwrap() - expected).abs() < 1e-12);
    }
    // The coordinator reconciled its outstanding jobs after the reconnect,
    // and found nothing lost (every item was scored above).
    let reconciled = coordinator.log_events("reconciled outstanding jobs with the jobs stream");
    assert!(
        reconciled.iter().any(|e| e["reconnected"] == true),
        "{}",
        coordinator.log_text()
    );
    let f = &coordinator.log_events("run finished")[0];
    eprintln!(
        "NATS RESTART TEST: items {n}, server duplicates {}, aggregator duplicates {}",
        f["server_duplicates"], f["duplicates_dropped"]
    );
}
