//! `/metrics` of a worker process and of a coordinator (`vigil run
//! --metrics-addr`): the counters move while and after a run.
//!
//! The mid-run scrape waits on counts, not on a window: the test holds one
//! of the run's jobs itself (pulled from the workers' consumer, kept in
//! progress), so the run stays open, deterministically, until the
//! coordinator's counters show every other item; then it hands the job back
//! (a nak), the worker does it and the run ends.

use crate::common;

use async_nats::jetstream::AckKind;
use common::cluster::{count_messages, default_workers_consumer, wait_until};
use common::*;
use futures::StreamExt;
use std::process::Stdio;
use std::time::Duration;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

const ITEMS: usize = 20;
/// Items per job.
const SHARD: usize = 2;
/// The coordinator's gauge of the workers' backlog.
const PENDING: &str = "vigil_consumer_pending{consumer=\"vigil-workers-default\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_coordinator_counters_move() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), ITEMS, 4);
    let suite = write_suite(dir.path(), &stub.base_url(), "");
    edit_suite(&suite, "shard_size: 32", &format!("shard_size: {SHARD}"));

    let coordinator_addr = free_addr();
    let out = dir.path().join("summary.json");
    let mut run_cmd = vigil()
        .args(["run", suite.to_str().unwrap(), "--nats", &nats.url()])
        .args([
            "--workers",
            "0",
            "--no-progress",
            "--metrics-addr",
            &coordinator_addr,
        ])
        .args(["--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Hold one job before any worker runs.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    wait_until("the run's jobs", Duration::from_secs(60), || async {
        count_messages(&js, "VIGIL_JOBS", "vigil.jobs.>").await >= (ITEMS / SHARD) as u64
    })
    .await;
    let held = default_workers_consumer(&js)
        .await
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .unwrap()
        .next()
        .await
        .expect("a job")
        .unwrap();

    let worker_addr = free_addr();
    let mut worker = worker_cmd(&nats.url(), &stub.base_url(), 2)
        .args(["--metrics-addr", &worker_addr])
        .spawn()
        .unwrap();

    // Mid-run: every item but the held job's is counted and the workers'
    // backlog is polled (every 2 s), the run still open.
    let mut coordinator_text = String::new();
    wait_until(
        "the coordinator's counters to show every item but the held job's, and the backlog",
        Duration::from_secs(60),
        || {
            coordinator_text = scrape(&coordinator_addr).unwrap_or_default();
            let scored = value(
                &coordinator_text,
                "vigil_coordinator_items_total{outcome=\"scored\"}",
            );
            let backlog = coordinator_text.contains(PENDING);
            let held = &held;
            async move {
                held.ack_with(AckKind::Progress).await.unwrap();
                scored >= (ITEMS - SHARD) as f64 && backlog
            }
        },
    )
    .await;
    assert_eq!(
        value(
            &coordinator_text,
            "vigil_coordinator_items_total{outcome=\"scored\"}"
        ),
        (ITEMS - SHARD) as f64,
        "{coordinator_text}"
    );
    assert!(
        run_cmd.try_wait().unwrap().is_none(),
        "the run waits for the held job"
    );
    let mid = scrape(&worker_addr).expect("the worker serves /metrics");
    assert_eq!(
        value(&mid, "vigil_worker_items_total"),
        (ITEMS - SHARD) as f64,
        "{mid}"
    );
    assert!(
        mid.contains("# TYPE vigil_worker_in_flight_calls gauge"),
        "{mid}"
    );

    // Hand the job back: the worker does it and the run ends.
    held.ack_with(AckKind::Nak(None)).await.unwrap();
    let status = tokio::task::spawn_blocking(move || run_cmd.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let summary = read_summary(&out);
    assert_eq!(summary["items_scored"], ITEMS as u64);

    let after = scrape(&worker_addr).expect("worker still serves /metrics");
    let n = ITEMS as f64;
    assert_eq!(value(&after, "vigil_worker_items_total"), n, "{after}");
    assert_eq!(
        value(&after, "vigil_worker_jobs_total"),
        (ITEMS / 2) as f64,
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            "vigil_worker_backend_latency_seconds_count{model=\"stub-model\"}"
        ),
        n
    );
    for scorer in ["exact", "num"] {
        assert_eq!(
            value(
                &after,
                &format!("vigil_worker_score_count{{scorer=\"{scorer}\"}}")
            ),
            n
        );
    }
    // Every fourth reference is wrong: 5 items score 0 on `exact`.
    assert_eq!(
        value(
            &after,
            "vigil_worker_score_bucket{le=\"0.1\",scorer=\"exact\"}"
        ),
        5.0,
        "{after}"
    );
    assert_eq!(value(&after, "vigil_worker_in_flight_calls"), 0.0);
    assert!(
        after.contains("vigil_consumer_ack_pending{consumer=\"vigil-workers-default\"}"),
        "{after}"
    );

    std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(worker.wait().unwrap().code(), Some(0));
}
