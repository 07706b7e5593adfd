//! A misbehaving backend (500, 429 with Retry-After, resets, hangs, invalid
//! JSON, empty choices, all in one run) and a run deadline: no process
//! crashes, retries stay bounded, every failed item has its kind, the counts
//! add up and the run ends.

use crate::common;
use crate::common::cluster;

use cluster::*;
use common::*;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

fn suite_text(
    dir: &std::path::Path,
    base_url: &str,
    timeout_s: &str,
    retries: u32,
    extra: &str,
) -> std::path::PathBuf {
    let path = write_suite(dir, base_url, extra);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("timeout_s: 5", &format!("timeout_s: {timeout_s}"))
        .replace("max_retries: 1", &format!("max_retries: {retries}"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `workers` worker processes (`concurrency` calls each), runs the
/// coordinator on `suite` until it exits with `exit` (at most `limit`), and
/// returns the summary and the workers, still running.
fn run_with_workers(
    dir: &std::path::Path,
    nats: &NatsServer,
    stub: &StubServer,
    (workers, concurrency): (usize, usize),
    suite: &std::path::Path,
    (limit, exit): (Duration, i32),
) -> (serde_json::Value, Vec<Proc>) {
    let (url, base) = (nats.url(), stub.base_url());
    let workers = (0..workers)
        .map(|i| {
            worker(
                dir,
                &format!("worker-{i}"),
                &url,
                &base,
                concurrency,
                &[],
                &[],
            )
        })
        .collect();
    let out = dir.join("summary.json");
    let mut c = coordinator(dir, "coordinator", suite, &url, &out, &[]);
    assert_eq!(c.wait_exit(limit), Some(exit), "{}", c.log_text());
    (read_summary(&out), workers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_fault_at_once_ends_in_a_summary_that_adds_up() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig {
        fail_rate: 0.08,
        rate_limit_rate: 0.08,
        retry_after_s: 1,
        reset_rate: 0.06,
        hang_rate: 0.04,
        garbage_rate: 0.06,
        empty_rate: 0.06,
        seed: 11,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 1000;
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 0);
    let retries = 2;
    let suite = suite_text(dir.path(), &stub.base_url(), "0.5", retries, NO_CACHE);
    let (s, mut workers) = run_with_workers(
        dir.path(),
        &nats,
        &stub,
        (2, 64),
        &suite,
        // Far more than 2% of the items fail: the error budget fails the run.
        (Duration::from_secs(60), 1),
    );
    let (scored, failed) = (
        s["items_scored"].as_u64().unwrap(),
        s["items_failed"].as_u64().unwrap(),
    );
    assert_eq!(scored + failed, n as u64, "every item accounted once");
    // Every item is in the denominator; the survivors are `n_scored`.
    assert_eq!(s["scores"]["exact"]["n"], n as u64);
    assert_eq!(s["scores"]["exact"]["n_scored"], scored);
    assert_eq!(s["passed"], false);
    let budget = s["gates"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(budget["metric"], "error_budget", "{s}");
    assert_eq!(budget["passed"], false, "{budget}");
    let errors = s["errors"].as_object().unwrap();
    assert_eq!(
        errors.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        failed
    );
    let known = [
        "server_error",
        "rate_limited",
        "connection",
        "timeout",
        "invalid_response",
        "empty_response",
    ];
    for kind in errors.keys() {
        assert!(
            known.contains(&kind.as_str()),
            "unexpected error kind {kind}"
        );
    }
    assert!(
        failed > 0,
        "with ~38% faults and 2 retries some items fail: {s}"
    );
    let stats = stub.stats().snapshot();
    eprintln!(
        "BACKEND FAULTS TEST: items {n}, scored {scored}, failed {failed}, errors {errors:?}, stub {stats:?}"
    );
    for (what, count) in [
        ("500", stats.server_errors),
        ("429", stats.rate_limited),
        ("reset", stats.resets),
        ("hang", stats.hangs),
        ("garbage", stats.garbage),
        ("empty", stats.empty),
    ] {
        assert!(count > 0, "the stub produced {what}");
    }
    // Bounded: never more than 1 + max_retries calls per item.
    assert!(
        stats.requests <= n as u64 * (1 + retries as u64),
        "{}",
        stats.requests
    );
    // No worker crashed.
    for w in &mut workers {
        assert!(
            w.child.try_wait().unwrap().is_none(),
            "worker alive: {}",
            w.log_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_shrink_the_worker_and_every_item_still_gets_scored() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    // Capacity 8: anything beyond is answered 429 at once (Retry-After 1 s).
    let stub = StubServer::start(StubConfig {
        latency: Duration::from_millis(20),
        max_concurrency: Some(8),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 600;
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 0);
    let suite = suite_text(dir.path(), &stub.base_url(), "5", 8, NO_CACHE);
    let (s, _workers) = run_with_workers(
        dir.path(),
        &nats,
        &stub,
        (1, 64),
        &suite,
        (Duration::from_secs(60), 0),
    );
    let stats = stub.stats().snapshot();
    eprintln!(
        "AIMD TEST: items {n}, scored {}, stub {stats:?}",
        s["items_scored"]
    );
    assert!(stats.over_capacity > 0, "the worker did hit the limit");
    assert_eq!(
        s["items_scored"], n,
        "the adaptive limit settles under capacity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_ends_the_run_and_workers_skip_expired_jobs() {
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
    let n = 800;
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 0);
    let suite = write_suite(
        dir.path(),
        &stub.base_url(),
        &format!("deadline_s: 3\n{NO_CACHE}"),
    );
    let (s, _workers) = run_with_workers(
        dir.path(),
        &nats,
        &stub,
        (1, 8),
        &suite,
        // Items failed by the deadline are spent from the error budget.
        (Duration::from_secs(60), 1),
    );
    let scored = s["items_scored"].as_u64().unwrap();
    let deadline = s["errors"]["deadline"].as_u64().unwrap_or(0);
    assert!(deadline > 0 && scored > 0, "{s}");
    assert_eq!(scored + deadline, n as u64, "{s}");
    // The worker fails what is left without calling the backend. The jobs
    // stream is a work queue and a job is acked after its calls: once it is
    // empty, every job has been handled and the backend's count is final.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    wait_until(
        "the worker to handle every job",
        Duration::from_secs(60),
        || async {
            let jobs = js.get_stream("VIGIL_JOBS").await.unwrap();
            jobs.cached_info().state.messages == 0
        },
    )
    .await;
    let stats = stub.stats();
    let after = stats.requests.load(Relaxed);
    assert_eq!(stats.in_flight.load(Relaxed), 0, "no call still going");
    assert!(
        after < n as u64 / 2,
        "expired items were skipped: {after} calls"
    );
    eprintln!(
        "DEADLINE TEST: items {n}, scored {scored}, deadline {deadline}, backend calls {after}"
    );
}
