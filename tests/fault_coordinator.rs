//! A killed coordinator loses nothing: `vigil run --resume RUN_ID` (or the
//! same `--scheduled-date` again) rebuilds the aggregate from the results
//! stream, publishes only the jobs not yet published, and ends with the
//! summary an uninterrupted run gives. A resume of a changed suite is refused.

use crate::common;
use crate::common::cluster;

use async_nats::jetstream;
use cluster::*;
use common::*;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

const N: usize = 3000;
/// A short jobs stream: dispatch waits for the workers, so a kill lands mid-dispatch.
const ENVS: [(&str, &str); 1] = [("VIGIL_JOBS_MAX_MSGS", "6")];

/// The parts of a summary that must not depend on how the run went.
fn outcome(s: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "items_total": s["items_total"], "items_scored": s["items_scored"],
        "items_failed": s["items_failed"], "errors": s["errors"], "scores": s["scores"],
        "tokens": s["tokens"], "passed": s["passed"],
    })
}

/// Equal up to float rounding: Welford means depend on the order results arrive in.
fn assert_same(a: &serde_json::Value, b: &serde_json::Value, path: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(x), keys(y), "{path}");
            for (k, v) in x {
                assert_same(v, &y[k], &format!("{path}.{k}"));
            }
        }
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-9, "{path}: {x} != {y}");
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

struct Setup {
    nats: NatsServer,
    stub: StubServer,
    dir: tempfile::TempDir,
    suite: std::path::PathBuf,
    _workers: Vec<Proc>,
}

async fn setup() -> Setup {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig {
        latency: Duration::from_millis(20),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), N, 7);
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    let workers = (0..2)
        .map(|i| {
            worker(
                dir.path(),
                &format!("worker-{i}"),
                &nats.url(),
                &stub.base_url(),
                8,
                &[],
                &ENVS,
            )
        })
        .collect();
    Setup {
        nats,
        stub,
        dir,
        suite,
        _workers: workers,
    }
}

/// Runs once uninterrupted; returns the summary.
fn uninterrupted(s: &Setup) -> serde_json::Value {
    let out = s.dir.path().join("baseline.json");
    let mut c = coordinator_with_env(
        s.dir.path(),
        "baseline",
        &s.suite,
        &s.nats.url(),
        &out,
        &[],
        &ENVS,
    );
    assert_eq!(
        c.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        c.log_text()
    );
    read_summary(&out)
}

/// Starts a run, kills it once a third of its results are in.
async fn start_and_kill(s: &Setup, name: &str, extra: &[&str]) -> Proc {
    let out = s.dir.path().join(format!("{name}-never.json"));
    let mut c = coordinator_with_env(
        s.dir.path(),
        name,
        &s.suite,
        &s.nats.url(),
        &out,
        extra,
        &ENVS,
    );
    let js = jetstream::new(async_nats::connect(s.nats.url()).await.unwrap());
    let before = count_messages(&js, "VIGIL_RESULTS", "vigil.results.>").await;
    let want = before + (N / 32 / 3) as u64;
    wait_until(
        "a third of the results",
        Duration::from_secs(30),
        || async { count_messages(&js, "VIGIL_RESULTS", "vigil.results.>").await >= want },
    )
    .await;
    c.kill9();
    assert!(!out.exists(), "killed before the end");
    c
}

fn resumed_ok(s: &Setup, name: &str, extra: &[&str], baseline: &serde_json::Value) -> Proc {
    let out = s.dir.path().join(format!("{name}.json"));
    let launched = SystemTime::now();
    let mut c = coordinator_with_env(
        s.dir.path(),
        name,
        &s.suite,
        &s.nats.url(),
        &out,
        extra,
        &ENVS,
    );
    assert_eq!(
        c.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        c.log_text()
    );
    let summary = read_summary(&out);
    assert_same(&outcome(&summary), &outcome(baseline), "summary");
    let started = humantime::parse_rfc3339(summary["started_at"].as_str().unwrap()).unwrap();
    assert!(started < launched, "started_at is the first start");
    let resuming = c.log_events(
        "resuming run: replaying its results, publishing jobs from the high-water mark on",
    );
    assert_eq!(resuming.len(), 1, "{}", c.log_text());
    let finished = &c.log_events("run finished")[0];
    eprintln!(
        "RESUME TEST ({name}): items {N}, recorded high-water mark {} of {} jobs, server duplicates {}, aggregator duplicates {}",
        resuming[0]["dispatched_jobs"],
        N.div_ceil(32),
        finished["server_duplicates"],
        finished["duplicates_dropped"]
    );
    assert!(resuming[0]["dispatched_jobs"].as_u64().unwrap() > 0);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_kill_9_equals_an_uninterrupted_run() {
    let s = setup().await;
    let baseline = uninterrupted(&s);
    let run_id = "0195b5c8-0000-7000-8000-00000000c0de";
    start_and_kill(&s, "killed", &["--run-id", run_id]).await;
    resumed_ok(&s, "resumed", &["--resume", run_id], &baseline);
    // Every item reached the backend once per run: nothing was evaluated twice
    // (the workers kept going; the resumed run published no job again).
    assert_eq!(s.stub.stats().requests.load(Relaxed), 2 * N as u64);

    // An unknown run, and a changed suite, are refused with exit 2.
    let out = s.dir.path().join("refused.json");
    let mut c = coordinator(
        s.dir.path(),
        "unknown",
        &s.suite,
        &s.nats.url(),
        &out,
        &["--resume", "no-such-run"],
    );
    assert_eq!(c.wait_exit(Duration::from_secs(20)), Some(2));
    assert!(
        c.log_text().contains("nothing to resume"),
        "{}",
        c.log_text()
    );
    let mut text = std::fs::read_to_string(&s.suite).unwrap();
    text.push_str("# edited\n");
    std::fs::write(&s.suite, text).unwrap();
    let mut c = coordinator(
        s.dir.path(),
        "changed",
        &s.suite,
        &s.nats.url(),
        &out,
        &["--resume", run_id],
    );
    assert_eq!(c.wait_exit(Duration::from_secs(20)), Some(2));
    assert!(
        c.log_text().contains("suite file sha256"),
        "{}",
        c.log_text()
    );
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_resumes_by_its_derived_id() {
    let s = setup().await;
    let baseline = uninterrupted(&s);
    let date = ["--scheduled-date", "2026-01-02"];
    start_and_kill(&s, "scheduled-killed", &date).await;
    resumed_ok(&s, "scheduled-again", &date, &baseline);
    assert_eq!(s.stub.stats().requests.load(Relaxed), 2 * N as u64);
}
