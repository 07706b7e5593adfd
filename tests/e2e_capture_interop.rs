//! Capture from code: examples/capture_publisher.py (nats-py + msgpack,
//! installed by scripts/setup-extra.d/python-interop.sh) publishes a capture
//! to a real nats-server; vigil's own types decode it from VIGIL_CAPTURE.

mod common;
use common::interop_pythonpath;

use vigil_nats::topology::{TopologyConfig, ensure_capture_stream};
use vigil_protocol::{Capture, codec, headers, subjects};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_capture_decodes_as_a_vigil_capture() {
    let pythonpath = interop_pythonpath();
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    ensure_capture_stream(&js, &TopologyConfig::default())
        .await
        .unwrap();

    let output = tokio::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/capture_publisher.py"
        ))
        .args([
            nats.url().as_str(),
            "billing",
            "Mail me at ann@example.com: what is 2 + 2?",
            "4",
        ])
        .env("PYTHONPATH", &pythonpath)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "python: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let capture_id = String::from_utf8(output.stdout).unwrap().trim().to_string();

    let mut stream = js.get_stream(subjects::STREAM_CAPTURE).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    let msg = stream.get_raw_message(1).await.unwrap();
    assert_eq!(msg.subject.as_str(), subjects::capture("billing"));
    let h = &msg.headers;
    headers::check_schema(
        h.get(headers::SCHEMA).map(|v| v.as_str()),
        h.get(headers::SCHEMA_MIN).map(|v| v.as_str()),
        vigil_protocol::SCHEMA_VERSION,
    )
    .unwrap();
    assert_eq!(
        h.get(headers::MSG_ID).map(|v| v.as_str()),
        Some(capture_id.as_str())
    );
    let c: Capture = codec::decode(&msg.payload).unwrap();
    assert_eq!(c.capture_id, capture_id);
    assert_eq!(c.app, "billing");
    assert_eq!(c.endpoint, "chat");
    assert_eq!(c.prompt, "Mail me at [REDACTED:email]: what is 2 + 2?");
    assert_eq!(c.messages.len(), 1);
    assert_eq!(c.response_text.as_deref(), Some("4"));
    assert_eq!(c.usage.map(|u| (u.input, u.output)), Some((9, 1)));
    assert_eq!(c.status, 200);
    assert_eq!(
        c.metadata.get("source").map(String::as_str),
        Some("python-example")
    );
    assert!(c.time.ends_with('Z') && c.time.contains('T'), "{}", c.time);
    assert_eq!(c.trace_id, None);
}
