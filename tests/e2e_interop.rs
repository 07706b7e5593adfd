//! A subscriber written in Python (nats-py + msgpack, installed by
//! scripts/setup.sh) receives the summary on `vigil.runs.>` and reads it as
//! a plain map.

use crate::common;

use common::*;
use std::time::{Duration, Instant};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_subscriber_reads_the_summary_as_a_map() {
    let pythonpath = interop_pythonpath();
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 300, 3);
    let suite = write_suite(dir.path(), &stub.base_url(), "");

    let ready = dir.path().join("ready");
    let subscriber = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/summary_subscriber.py"
        ))
        .arg(nats.url())
        .arg(&ready)
        .env("PYTHONPATH", &pythonpath)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let waited = Instant::now();
    while !ready.exists() {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "python subscriber never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let out = dir.path().join("summary.json");
    let output = run(&mut coordinate(&suite, &nats.url(), 1, Some(&out)));
    assert_eq!(output.status.code(), Some(0));
    let ours = read_summary(&out);

    let printed = tokio::task::spawn_blocking(move || subscriber.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        printed.status.success(),
        "python: {}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let theirs: serde_json::Value =
        serde_json::from_slice(&printed.stdout).expect("python printed JSON");
    assert_eq!(theirs["subject"], "vigil.runs.arith.stub");
    assert_eq!(theirs["content_type"], "application/msgpack");
    assert_eq!(
        theirs["schema"],
        vigil_protocol::SCHEMA_VERSION.to_string().as_str()
    );
    let summary = &theirs["summary"];
    assert_eq!(summary["run_id"], ours["run_id"]);
    assert_eq!(summary["items_total"], 300);
    assert_eq!(
        summary["scores"]["exact"]["pass_rate"],
        ours["scores"]["exact"]["pass_rate"]
    );
    assert_eq!(summary["scores"]["exact"]["n"], 300);
}
