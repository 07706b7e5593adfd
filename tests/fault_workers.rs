//! Worker faults with real processes: kill -9 during a run, SIGTERM with a
//! grace period, garbage on the jobs subject, a poison job that ends at
//! MaxDeliver. A real nats-server, real `vigil` processes, the stub backend.

use crate::common;
use crate::common::cluster;

use async_nats::jetstream;
use cluster::*;
use common::*;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

fn results_of(js: &jetstream::Context) -> impl std::future::Future<Output = u64> + '_ {
    count_messages(js, "VIGIL_RESULTS", "vigil.results.>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_lose_nothing_and_count_nothing_twice() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig {
        latency: Duration::from_millis(25),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 5000;
    let wrong = write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 10);
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    let out = dir.path().join("summary.json");
    let url = nats.url();
    let base = stub.base_url();
    let spawn = |i: usize| worker(dir.path(), &format!("worker-{i}"), &url, &base, 8, &[], &[]);
    let mut workers: Vec<Proc> = (0..3).map(spawn).collect();
    let mut coordinator = coordinator(dir.path(), "coordinator", &suite, &url, &out, &[]);

    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client);
    let jobs = n.div_ceil(32) as u64;
    let mut kills = 0;
    for (round, fraction) in [0.15, 0.35, 0.55].into_iter().enumerate() {
        let want = (jobs as f64 * fraction) as u64;
        wait_until("results to arrive", Duration::from_secs(30), || async {
            results_of(&js).await >= want
        })
        .await;
        // Kill the oldest worker mid-job; a replacement takes its place.
        let mut victim = workers.remove(0);
        victim.kill9();
        kills += 1;
        workers.push(spawn(3 + round));
    }
    let code = coordinator.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{}", coordinator.log_text());
    let s = read_summary(&out);
    assert_eq!(s["items_total"], n);
    assert_eq!(s["items_scored"], n, "every item scored once");
    assert_eq!(s["items_failed"], 0);
    let expected = (n - wrong) as f64 / n as f64;
    for scorer in ["exact", "num"] {
        assert_eq!(
            s["scores"][scorer]["n"], n,
            "{scorer}: nothing counted twice"
        );
        assert!((s["scores"][scorer]["pass_rate"].as_f64().unwrap() - expected).abs() < 1e-12);
    }
    let finished = coordinator.log_events("run finished");
    let f = &finished[0];
    let requests = stub.stats().requests.load(Relaxed);
    eprintln!(
        "KILL TEST: items {n}, kills {kills}, backend calls {requests}, server duplicates {}, aggregator duplicates {}",
        f["server_duplicates"], f["duplicates_dropped"]
    );
    // The killed workers held jobs: some items were evaluated again elsewhere.
    assert!(
        requests > n as u64,
        "kills mid-job must cause re-evaluation ({requests} calls)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_jobs_back_within_the_grace_period_and_exits_0() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig {
        latency: Duration::from_secs(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 256;
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 0);
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    let out = dir.path().join("summary.json");
    let (url, base) = (nats.url(), stub.base_url());
    let mut leaving = worker(
        dir.path(),
        "leaving",
        &url,
        &base,
        64,
        &["--grace-period-s", "0.5"],
        &[],
    );
    let mut coordinator = coordinator(dir.path(), "coordinator", &suite, &url, &out, &[]);
    let stats = stub.stats();
    wait_until("calls in flight", Duration::from_secs(20), || async {
        stats.in_flight.load(Relaxed) > 0
    })
    .await;
    leaving.sigterm();
    let code = leaving.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", leaving.log_text());
    let nakked = leaving.log_events("job nak'd at shutdown").len();
    assert!(
        nakked > 0,
        "in-flight jobs handed back: {}",
        leaving.log_text()
    );
    // Another worker finishes the run: nothing was lost.
    let _staying = worker(dir.path(), "staying", &url, &base, 256, &[], &[]);
    let code = coordinator.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{}", coordinator.log_text());
    let s = read_summary(&out);
    assert_eq!(s["items_scored"], n);
    assert_eq!(s["scores"]["exact"]["n"], n);
    eprintln!("SIGTERM TEST: jobs nak'd at shutdown {nakked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_jobs_subject_is_terminated_counted_and_survived() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 100;
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 0);
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    let (url, base) = (nats.url(), stub.base_url());
    let w = worker(
        dir.path(),
        "worker",
        &url,
        &base,
        16,
        &[],
        &[("VIGIL_MAX_JOB_BYTES", "100000")],
    );
    let js = jetstream::new(async_nats::connect(&url).await.unwrap());
    wait_until("the worker's consumer", Duration::from_secs(20), || async {
        match js.get_stream("VIGIL_JOBS").await {
            Ok(s) => s
                .get_consumer::<jetstream::consumer::pull::Config>("vigil-workers-default")
                .await
                .is_ok(),
            Err(_) => false,
        }
    })
    .await;

    let headers = |schema: &str| {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Content-Type", "application/msgpack");
        h.insert("Vigil-Schema", schema);
        h
    };
    let job = vigil_protocol::Job {
        run_id: "not-a-run".into(),
        ..Default::default()
    };
    let valid = vigil_protocol::encode(&job).unwrap();
    let random: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let oversized = vigil_protocol::encode(&vigil_protocol::Job {
        suite: "x".repeat(200_000),
        ..job.clone()
    })
    .unwrap();
    for (schema, payload) in [("1", random), ("99", valid), ("1", oversized)] {
        js.publish_with_headers("vigil.jobs.default", headers(schema), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    wait_until("three terminations", Duration::from_secs(15), || async {
        w.log_events("terminating malformed job message").len() >= 3
    })
    .await;
    let events = w.log_events("terminating malformed job message");
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["malformed_total"], 3, "the counter counts them");
    let reasons: Vec<String> = events.iter().map(|e| e["reason"].to_string()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("schema version 99")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("exceeds")), "{reasons:?}");

    // The worker is still there and does real work.
    let out = dir.path().join("summary.json");
    let mut coordinator = coordinator(dir.path(), "coordinator", &suite, &url, &out, &[]);
    assert_eq!(coordinator.wait_exit(Duration::from_secs(30)), Some(0));
    assert_eq!(read_summary(&out)["items_scored"], n);
    // Terminated messages left the work queue.
    let mut stream = js.get_stream("VIGIL_JOBS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_job_ends_at_max_deliver_and_its_items_fail_with_the_reason() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 64; // two jobs
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 0);
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    let url = nats.url();
    let js = topology_with_max_deliver(&url, 3).await;
    // A broken worker: pulls every job and naks it, every time.
    let broken = nak_every_delivery(&js, 6).await;
    let out = dir.path().join("summary.json");
    let mut coordinator = coordinator(dir.path(), "coordinator", &suite, &url, &out, &[]);
    let code = coordinator.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(1), "no item scored: {}", coordinator.log_text());
    let nakked = tokio::time::timeout(Duration::from_secs(5), broken)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(nakked, 6, "2 jobs x MaxDeliver 3");
    let s = read_summary(&out);
    assert_eq!(s["items_failed"], n);
    assert_eq!(s["errors"]["max_deliveries"], n);
    let log = coordinator.log_text();
    assert!(log.contains("failed on all 3 deliveries"), "{log}");
    assert_eq!(stub.stats().requests.load(Relaxed), 0);
}

/// `vigil worker --max-jobs 1` holds one 32-item job at a time: never more
/// than its 32 calls in flight, though its `--concurrency` (64) and the
/// target's `max_concurrency` (64) would allow two jobs' worth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_holds_no_more_jobs_than_max_jobs() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig {
        latency: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 160;
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 0);
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    let out = dir.path().join("summary.json");
    let url = nats.url();
    let mut worker = worker(
        dir.path(),
        "worker",
        &url,
        &stub.base_url(),
        64,
        &["--max-jobs", "1"],
        &[],
    );
    let mut coordinator = coordinator(dir.path(), "coordinator", &suite, &url, &out, &[]);
    let code = coordinator.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{}", coordinator.log_text());
    assert_eq!(read_summary(&out)["items_scored"], n);
    let most = stub.stats().max_in_flight.load(Relaxed);
    assert!(
        (1..=32).contains(&most),
        "{most} calls in flight at once with one job held"
    );
    assert_eq!(worker.log_events("worker started")[0]["max_jobs"], 1);
    worker.kill9();
}
