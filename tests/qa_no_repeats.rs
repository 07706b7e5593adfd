//! The cache never hides a changed model, and nothing runs twice: the
//! response cache is opt-in and keyed by the model's identity; a cancelled
//! run's leftover jobs are skipped by the next worker; a re-fired finished
//! scheduled run publishes nothing. Real nats-server and `vigil` processes;
//! the stub is the model server and counts every call.

use crate::common;
use crate::common::cluster;

use async_nats::jetstream::{self, kv};
use cluster::*;
use common::*;
use futures::{FutureExt, StreamExt};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

/// Runs the suite (expecting exit 0); returns the summary and the stdout.
fn run_ok(
    suite: &std::path::Path,
    nats: &str,
    name: &str,
    extra: &[&str],
) -> (serde_json::Value, String) {
    let out = suite.with_file_name(format!("{name}.json"));
    let o = run_suite(suite, nats, &out, extra);
    assert_eq!(o.status.code(), Some(0), "{name}");
    (
        read_summary(&out),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_opt_in_and_never_answers_for_a_swapped_model() {
    // A cache bucket made before the cache had a max age.
    let (_nats, url, js) = nats_with_cache_bucket(kv::Config {
        history: 1,
        ..Default::default()
    })
    .await;
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let requests = || stub.stats().requests.load(Relaxed);
    let models = || stub.stats().models.load(Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let n = 64u64;
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n as usize, 10);
    let suite = write_suite(dir.path(), &stub.base_url(), "");

    // The same suite twice at temperature 0: the backend answers both times.
    for i in 1..=2 {
        let (s, table) = run_ok(&suite, &url, &format!("plain{i}"), &[]);
        assert_eq!(
            requests(),
            i * n,
            "run {i} calls the backend for every item"
        );
        assert_eq!(s["items_cached"], 0);
        assert!(!table.contains("response cache:"), "{table}");
    }
    assert_eq!(
        models(),
        0,
        "no model identity is asked for while the cache is off"
    );

    // --cache: the first run stores, the second is answered from the cache.
    let (s3, _) = run_ok(&suite, &url, "cached1", &["--cache"]);
    assert_eq!(requests(), 3 * n);
    assert_eq!(s3["items_cached"], 0);
    let (s4, table) = run_ok(&suite, &url, "cached2", &["--cache"]);
    assert_eq!(requests(), 3 * n, "the second cached run makes no call");
    assert_eq!(s4["items_cached"], n);
    assert!(
        table.contains(&format!(
            "response cache: {n} of {n} items answered from the cache"
        )),
        "{table}"
    );
    assert!(
        s4["comparison"]["note"]
            .as_str()
            .is_some_and(|note| note.contains("the candidate is mostly cached")),
        "{}",
        s4["comparison"]
    );
    assert_eq!(
        models(),
        2,
        "the model's identity is read once per run (one worker)"
    );
    // The bucket has a max age now (it had none).
    let mut bucket = js.get_stream("KV_vigil-cache").await.unwrap();
    let max_age = bucket.info().await.unwrap().config.max_age;
    assert_eq!(max_age, Duration::from_secs(7 * 24 * 3600));

    // Another model behind the same URL and name: the cache does not answer.
    stub.set_model_created(1_700_000_000);
    let (s5, _) = run_ok(&suite, &url, "swapped", &["--cache"]);
    assert_eq!(requests(), 4 * n, "a swapped model is called again");
    assert_eq!(s5["items_cached"], 0);

    // The suite's `cache: {enabled: true}` turns it on too (the new model's answers).
    let suite = write_suite(
        dir.path(),
        &stub.base_url(),
        "cache: { enabled: true, ttl_s: 3600 }\n",
    );
    let (s6, _) = run_ok(&suite, &url, "suite-key", &[]);
    assert_eq!(requests(), 4 * n);
    assert_eq!(s6["items_cached"], n);
    // --no-cache wins over the suite.
    let (s7, _) = run_ok(&suite, &url, "no-cache", &["--no-cache"]);
    assert_eq!(requests(), 5 * n);
    assert_eq!(s7["items_cached"], 0);
}

/// The status of a run in the `vigil-runs` bucket.
async fn run_status(js: &jetstream::Context, run_id: &str) -> String {
    let store = js.get_key_value("vigil-runs").await.unwrap();
    let bytes = store
        .get(run_id)
        .await
        .unwrap()
        .expect("run state recorded");
    let state: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    state["status"].as_str().unwrap().to_string()
}

const RUN_A: &str = "0195b5c8-0000-7000-8000-0000000000a1";
const RUN_B: &str = "0195b5c8-0000-7000-8000-0000000000b2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_runs_leave_nothing_for_the_next_worker() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let url = nats.url();
    let js = jetstream::new(async_nats::connect(&url).await.unwrap());
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (n, jobs) = (320u64, 10u64); // 32 items a job
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n as usize, 10);
    let suite = write_suite(dir.path(), &stub.base_url(), "");
    let queued = || count_messages(&js, "VIGIL_JOBS", "vigil.jobs.>");

    // Run A: dispatched with no worker, then its coordinator gets SIGTERM.
    let out = dir.path().join("never.json");
    let mut a = coordinator(dir.path(), "a", &suite, &url, &out, &["--run-id", RUN_A]);
    wait_until("run A's jobs queued", Duration::from_secs(30), || async {
        queued().await >= jobs
    })
    .await;
    a.sigterm();
    let code = a.wait_exit(Duration::from_secs(20));
    assert!(
        matches!(code, Some(c) if c != 0),
        "{code:?}: {}",
        a.log_text()
    );
    assert_eq!(
        run_status(&js, RUN_A).await,
        "cancelled",
        "{}",
        a.log_text()
    );

    // Run B: cancelled with `vigil runs cancel` while its coordinator waits.
    let mut b = coordinator(dir.path(), "b", &suite, &url, &out, &["--run-id", RUN_B]);
    wait_until("run B's jobs queued", Duration::from_secs(30), || async {
        queued().await >= 2 * jobs
    })
    .await;
    let o = run(vigil().args(["runs", "cancel", RUN_B, "--nats", &url]));
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("cancelled run {RUN_B}")));
    let code = b.wait_exit(Duration::from_secs(20));
    assert!(
        matches!(code, Some(c) if c != 0),
        "the coordinator stops: {code:?}"
    );
    assert!(b.log_text().contains("run cancelled"), "{}", b.log_text());
    assert_eq!(run_status(&js, RUN_B).await, "cancelled");
    assert!(!out.exists(), "no summary for a cancelled run");
    // Cancelling again says so; an unknown run, and resuming a cancelled one, are refused.
    let again = run(vigil().args(["runs", "cancel", RUN_B, "--nats", &url]));
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already cancelled"));
    let unknown = run(vigil().args(["runs", "cancel", "no-such-run", "--nats", &url]));
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nothing to cancel"));
    let resumed = run_suite(&suite, &url, &out, &["--workers", "0", "--resume", RUN_A]);
    assert_eq!(resumed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("was cancelled"));
    assert_eq!(
        queued().await,
        2 * jobs,
        "every leftover job is still queued"
    );

    // The next worker acks and skips every leftover job without a model call.
    let metrics = free_addr();
    let w = worker(
        dir.path(),
        "w",
        &url,
        &stub.base_url(),
        8,
        &["--metrics-addr", &metrics],
        &[],
    );
    wait_until("the queue drained", Duration::from_secs(30), || async {
        queued().await == 0
    })
    .await;
    wait_until("every skip logged", Duration::from_secs(10), || async {
        w.log_events("skipping a job of an ended run").len() as u64 == 2 * jobs
    })
    .await;
    assert_eq!(
        stub.stats().requests.load(Relaxed),
        0,
        "no leftover job reached the backend"
    );
    let skipped: u64 = w
        .log_events("skipping a job of an ended run")
        .iter()
        .map(|e| e["items"].as_u64().unwrap())
        .sum();
    assert_eq!(skipped, 2 * n);
    let text = scrape(&metrics).expect("worker metrics");
    assert_eq!(
        value(&text, "vigil_worker_jobs_skipped_total"),
        (2 * jobs) as f64
    );

    // A new run on the same queue is evaluated as usual.
    let (s, _) = run_ok(&suite, &url, "after", &["--workers", "0"]);
    assert_eq!(s["items_scored"], n);
    assert_eq!(stub.stats().requests.load(Relaxed), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refired_finished_scheduled_run_publishes_nothing() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let url = nats.url();
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client.clone());
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 40, 10);
    // A pass rate of 0.9 fails this gate: exit 1 and an alert.
    let suite = write_suite(
        dir.path(),
        &stub.base_url(),
        "gates:\n  - metric: exact.pass_rate\n    min: 0.95\n",
    );
    let date = ["--scheduled-date", "2026-03-04"];

    let first = dir.path().join("first.json");
    assert_eq!(
        run_suite(&suite, &url, &first, &date).status.code(),
        Some(1)
    );
    let s1 = read_summary(&first);
    let run_id = s1["run_id"].as_str().unwrap();
    let summaries = count_messages(&js, "VIGIL_RUNS", "vigil.runs.>").await;
    let alerts = count_messages(&js, "VIGIL_ALERTS", "vigil.alerts.>").await;
    assert_eq!(summaries, 1);
    assert!(alerts >= 1);
    let requests = stub.stats().requests.load(Relaxed);

    // Core subscribers see every publish, even one JetStream would drop as a
    // duplicate inside its window.
    let mut runs_sub = client.subscribe("vigil.runs.>").await.unwrap();
    let mut alerts_sub = client.subscribe("vigil.alerts.>").await.unwrap();
    client.flush().await.unwrap();

    // The CronJob fires again the same day: the stored verdict, nothing new.
    let again = dir.path().join("again.json");
    let o = run_suite(&suite, &url, &again, &date);
    assert_eq!(o.status.code(), Some(1), "the stored exit code");
    client.flush().await.unwrap();
    assert!(
        runs_sub.next().now_or_never().is_none(),
        "no summary published"
    );
    assert!(
        alerts_sub.next().now_or_never().is_none(),
        "no alert published"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("run {run_id} already finished")),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains(run_id));
    let s2 = read_summary(&again);
    assert_eq!(s2["run_id"], run_id);
    assert_eq!(s2["finished_at"], s1["finished_at"], "the stored summary");
    assert_eq!(
        count_messages(&js, "VIGIL_RUNS", "vigil.runs.>").await,
        summaries
    );
    assert_eq!(
        count_messages(&js, "VIGIL_ALERTS", "vigil.alerts.>").await,
        alerts
    );
    assert_eq!(stub.stats().requests.load(Relaxed), requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_embedded_run_does_not_pay_for_a_cancelled_ones_jobs() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 320u64;
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n as usize, 10);
    let suite = write_suite(dir.path(), &stub.base_url(), "");
    let state = dir.path().join(".vigil");

    // Embedded mode, coordinating only: every job is queued in the store,
    // then Ctrl-C/SIGTERM.
    let mut a = Proc::spawn(
        &[
            "run",
            suite.to_str().unwrap(),
            "--workers",
            "0",
            "--no-progress",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
        &dir.path().join("a.log"),
    );
    wait_until("every job published", Duration::from_secs(30), || async {
        !a.log_events("every job published").is_empty()
    })
    .await;
    a.sigterm();
    let code = a.wait_exit(Duration::from_secs(20));
    assert!(matches!(code, Some(c) if c != 0), "{code:?}");
    assert!(a.log_text().contains("run cancelled"), "{}", a.log_text());

    // The next run on the same store evaluates only its own items.
    let run_id = run_embedded(&suite, &state);
    assert!(!run_id.is_empty());
    assert_eq!(
        stub.stats().requests.load(Relaxed),
        n,
        "the cancelled run's leftover jobs reached no backend"
    );
}
