//! `/metrics` of a worker process and of a coordinator (`vigil run
//! --metrics-addr`): the counters move while and after a run.

use crate::common;

use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

const ITEMS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_coordinator_counters_move() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    // Slow enough that the run lasts a while: the coordinator is scraped mid-run.
    let stub = StubServer::start(StubConfig {
        latency: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), ITEMS, 4);
    let suite = write_suite(dir.path(), &stub.base_url(), "");
    // Two items a job: results reach the coordinator job by job while the run
    // goes on, so a mid-run scrape sees them (with one job of all the items the
    // coordinator got everything at once and could exit between two scrapes).
    let text = std::fs::read_to_string(&suite).unwrap();
    std::fs::write(&suite, text.replace("shard_size: 32", "shard_size: 2")).unwrap();

    let worker_addr = free_addr();
    let mut worker = vigil()
        .args(["worker", "--nats", &nats.url(), "--concurrency", "2"])
        .args(["--allow", &stub.base_url(), "--metrics-addr", &worker_addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    let before = loop {
        if let Some(text) = scrape(&worker_addr) {
            break text;
        }
        assert!(Instant::now() < until, "worker /metrics never came up");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(value(&before, "vigil_worker_items_total"), 0.0, "{before}");
    assert!(
        before.contains("# TYPE vigil_worker_in_flight_calls gauge"),
        "{before}"
    );

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
    // Scrape the coordinator until its counters show results (ten jobs of two
    // 200 ms calls with two calls in flight: the run takes at least a second).
    let mut coordinator_scored = 0.0;
    let mut coordinator_text = String::new();
    while run_cmd.try_wait().unwrap().is_none() {
        if let Some(text) = scrape(&coordinator_addr) {
            let scored = value(&text, "vigil_coordinator_items_total{outcome=\"scored\"}");
            if scored > coordinator_scored {
                coordinator_scored = scored;
                coordinator_text = text;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(run_cmd.wait().unwrap().code(), Some(0));
    assert!(coordinator_scored > 0.0, "coordinator counters never moved");
    assert!(
        coordinator_text.contains("vigil_consumer_pending{consumer=\"vigil-workers-default\"}")
            || coordinator_text.contains("# TYPE vigil_consumer_pending gauge"),
        "{coordinator_text}"
    );
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
