//! `vigil run` end to end: real nats-server, real `vigil` processes, the stub
//! backend as the model server.

use crate::common;

use common::cluster::count_messages;
use common::*;
use futures::StreamExt;
use std::time::Duration;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_run_accounts_every_item_once_with_the_right_accuracy() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    let wrong = write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 10);
    let suite = write_suite(
        dir.path(),
        &stub.base_url(),
        "gates:\n  - metric: exact.pass_rate\n    min: 0.85\n",
    );
    let out = dir.path().join("summary.json");
    let output = run(vigil()
        .args([
            "run",
            suite.to_str().unwrap(),
            "--workers",
            "2",
            // The dataset repeats questions every 1,261 items: with the
            // response cache (on at temperature 0) repeats would not reach
            // the backend, and this test counts backend requests.
            "--no-cache",
            "--out",
            out.to_str().unwrap(),
        ])
        .arg("--state-dir")
        .arg(dir.path().join(".vigil")));
    assert_eq!(output.status.code(), Some(0), "gate min 0.85 holds at 0.9");
    let s = read_summary(&out);
    assert_eq!(s["items_total"], n);
    assert_eq!(s["items_scored"], n);
    assert_eq!(s["items_failed"], 0);
    let expected = (n - wrong) as f64 / n as f64;
    for scorer in ["exact", "num"] {
        let score = &s["scores"][scorer];
        assert_eq!(score["n"], n, "{scorer} counted every item exactly once");
        assert!(
            (score["pass_rate"].as_f64().unwrap() - expected).abs() < 1e-12,
            "{scorer}: {score}"
        );
        assert!(
            score["ci_low"].as_f64().unwrap() < expected
                && expected < score["ci_high"].as_f64().unwrap()
        );
    }
    assert!(s["latency_ms"]["p50"].as_f64().is_some());
    assert!(s["tokens"]["output"].as_u64().unwrap() >= n as u64);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("exact"), "the table names the scorers");
    // Every item reached the backend exactly once (no retries were needed).
    assert_eq!(
        stub.stats()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        n as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_gate_exits_1() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 200, 4);
    let suite = write_suite(
        dir.path(),
        &stub.base_url(),
        "gates:\n  - metric: exact.pass_rate\n    min: 0.9\n",
    );
    let out = dir.path().join("summary.json");
    let output = run(vigil()
        .args([
            "run",
            suite.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .arg("--state-dir")
        .arg(dir.path().join(".vigil")));
    assert_eq!(output.status.code(), Some(1));
    let s = read_summary(&out);
    assert_eq!(s["passed"], false);
    assert_eq!(s["gates"][0]["passed"], false);
    assert!((s["scores"]["exact"]["pass_rate"].as_f64().unwrap() - 0.75).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_worker_processes_and_a_raw_subscriber_on_vigil_runs() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 1000, 0);
    let suite = write_suite(dir.path(), &stub.base_url(), "");

    // A subscriber that knows nothing of vigil's types: it sees a plain map.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut summaries = client.subscribe("vigil.runs.>").await.unwrap();
    client.flush().await.unwrap();

    let mut workers = vec![
        spawn_worker(&nats.url(), &stub.base_url(), 32),
        spawn_worker(&nats.url(), &stub.base_url(), 32),
    ];
    let out = dir.path().join("summary.json");
    let output = run(&mut coordinate(&suite, &nats.url(), 0, Some(&out)));
    assert_eq!(output.status.code(), Some(0));
    let summary_file = read_summary(&out);
    assert_eq!(summary_file["items_scored"], 1000);

    let message = tokio::time::timeout(Duration::from_secs(10), summaries.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.subject.as_str(), "vigil.runs.arith.stub");
    let headers = message.headers.as_ref().expect("headers");
    assert_eq!(
        headers.get("Content-Type").unwrap().as_str(),
        "application/msgpack"
    );
    assert_eq!(
        headers.get("Vigil-Schema").unwrap().as_str(),
        vigil_protocol::SCHEMA_VERSION.to_string()
    );
    let value = rmpv::decode::read_value(&mut &message.payload[..]).unwrap();
    let map = value.as_map().expect("a map");
    let get = |key: &str| {
        map.iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("run_id").unwrap().as_str(),
        summary_file["run_id"].as_str()
    );
    assert_eq!(get("items_total").unwrap().as_u64(), Some(1000));
    assert_eq!(
        get("scores").unwrap()["exact"]["pass_rate"].as_f64(),
        Some(1.0)
    );

    for worker in &mut workers {
        // SIGTERM: the worker drains and exits 0.
        sigterm(worker);
    }
    for mut worker in workers {
        let status = worker.wait().unwrap();
        assert_eq!(status.code(), Some(0), "worker exits 0 after SIGTERM");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backend_fails_the_items_with_a_reason_and_the_run_ends() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 100, 0);
    let suite = write_suite(dir.path(), &format!("http://127.0.0.1:{port}/v1"), "");
    let out = dir.path().join("summary.json");
    let output = run(vigil()
        .args([
            "run",
            suite.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .arg("--state-dir")
        .arg(dir.path().join(".vigil")));
    assert_eq!(output.status.code(), Some(1), "no item could be scored");
    let s = read_summary(&out);
    assert_eq!(s["items_total"], 100);
    assert_eq!(s["items_failed"], 100);
    assert_eq!(s["errors"]["connection"], 100);
}

/// A suite without `shard_size`: a run of 12,800 small items sends them in
/// jobs of 50 (at least 256 jobs, within the result-size bound:
/// `Suite::shard_size_for`), records that size in its state for a resume,
/// and accounts every item; the same suite with `shard_size: 32` sends 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_run_without_shard_size_sends_fewer_larger_jobs() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 12_800;
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 0);
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    edit_suite(&suite, "shard_size: 32\n", "");
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut jobs = Vec::new();
    for (name, expected) in [("auto", 50u64), ("explicit", 32)] {
        if name == "explicit" {
            edit_suite(
                &suite,
                "max_retries: 1\n",
                "max_retries: 1\nshard_size: 32\n",
            );
        }
        let out = dir.path().join(format!("{name}.json"));
        let o = run(vigil()
            .args([
                "run",
                suite.to_str().unwrap(),
                "--nats",
                &nats.url(),
                "--no-progress",
            ])
            .args(["--workers", "1", "--log-format", "json", "--out"])
            .arg(&out)
            .env("VIGIL_LOG", "info"));
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let summary = read_summary(&out);
        assert_eq!(summary["items_total"], n as u64);
        assert_eq!(summary["items_scored"], n as u64, "{name}");
        let run_id = summary["run_id"].as_str().unwrap().to_string();
        let starting: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["fields"]["message"] == "run starting")
            .collect();
        assert_eq!(starting[0]["fields"]["shard_size"], expected, "{name}");
        let results = count_messages(
            &js,
            "VIGIL_RESULTS",
            &vigil_protocol::subjects::results_of_run(&run_id),
        )
        .await;
        assert_eq!(
            results,
            (n as u64).div_ceil(expected),
            "{name}: one result per job"
        );
        let runs = js
            .get_key_value(vigil_protocol::subjects::KV_RUNS)
            .await
            .unwrap();
        let state: serde_json::Value =
            serde_json::from_slice(&runs.get(&run_id).await.unwrap().unwrap()).unwrap();
        assert_eq!(
            state["shard_size"], expected,
            "{name}: recorded for a resume"
        );
        jobs.push(results);
    }
    assert!(jobs[0] < jobs[1]);
}
