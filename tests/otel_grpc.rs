//! OTLP over gRPC: a coordinator process and two worker processes export to
//! a real OTLP/gRPC receiver (PyPI `rotel`, the Rust collector, installed by
//! `scripts/setup-extra.d/otel-grpc.sh`), chosen by the standard variables
//! (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc` for the coordinator,
//! `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc` for the workers), and the spans
//! it received are one trace: run → job (on the workers) → model call →
//! scorer.

use crate::common;
use crate::common::otel;

use common::*;
use otel::{KEY, Receiver, traced, write_keyed_suite};
use std::process::{Child, Command, Stdio};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

const ITEMS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_is_one_trace_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::rotel(dir.path());
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), ITEMS, 0);
    let suite = write_keyed_suite(dir.path(), &stub.base_url());

    let allow = format!("{}=VIGIL_OTEL_TEST_KEY", stub.base_url());
    let mut workers: Vec<Child> = (0..2)
        .map(|i| {
            let mut cmd = vigil();
            cmd.args(["worker", "--nats", &nats.url(), "--allow", &allow])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join(format!("worker{i}.log"))).unwrap());
            traced(&mut cmd, &receiver.endpoint());
            // The per-signal variable wins over the general one.
            cmd.env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
                .env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc");
            cmd.spawn().unwrap()
        })
        .collect();

    let out = dir.path().join("summary.json");
    let mut cmd = vigil();
    cmd.args(["run", suite.to_str().unwrap()])
        .args(["--nats", &nats.url(), "--workers", "0", "--no-progress"])
        .args(["--out", out.to_str().unwrap()]);
    traced(&mut cmd, &receiver.endpoint());
    cmd.env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
    let output = run(&mut cmd);
    assert_eq!(output.status.code(), Some(0));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!log.contains("trace export is off"), "{log}");
    let summary = read_summary(&out);
    assert_eq!(summary["items_scored"], ITEMS as u64);

    // Workers flush their spans when they exit.
    for worker in &mut workers {
        Command::new("kill")
            .args(["-TERM", &worker.id().to_string()])
            .status()
            .unwrap();
        assert_eq!(worker.wait().unwrap().code(), Some(0));
    }
    receiver.wait_for_spans(otel::expected_spans(ITEMS));
    let spans = receiver.spans();
    assert_eq!(spans.len(), otel::expected_spans(ITEMS), "no span twice");
    otel::assert_run_trace(&spans, &summary, ITEMS);
    assert!(!receiver.text().contains(KEY), "the API key reached a span");
}

/// A protocol vigil does not speak turns export off with a warning; the run
/// itself goes on.
#[test]
fn an_unknown_protocol_turns_export_off_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(vigil()
        .args(["validate", "/nonexistent/suite.yaml"])
        .current_dir(dir.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("trace export is off") && log.contains("http/json"),
        "{log}"
    );
}
