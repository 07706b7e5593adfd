//! One run is one OpenTelemetry trace: a coordinator process and two worker
//! processes export over OTLP/HTTP to a real receiver (PyPI `oteltap`,
//! installed by `scripts/setup-extra.d/otel.sh`), and the spans it received
//! form run → job (on the workers) → model call → scorer. The same run
//! checks that the API key reaches neither a span nor a log line.

use crate::common;
use crate::common::otel;

use common::*;
use otel::{KEY, Receiver, attrs, traced, write_keyed_suite};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use vigil_protocol::{JobResult, subjects};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

const ITEMS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_is_one_trace_across_processes_and_no_key_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::oteltap(dir.path());
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), ITEMS, 0);
    let suite = write_keyed_suite(dir.path(), &stub.base_url());

    let allow = format!("{}=VIGIL_OTEL_TEST_KEY", stub.base_url());
    let mut workers: Vec<(Child, PathBuf)> = (0..2)
        .map(|i| {
            let log = dir.path().join(format!("worker{i}.log"));
            let mut cmd = vigil();
            cmd.args(["--log-format", "json", "worker", "--nats", &nats.url()])
                .args(["--allow", &allow])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            traced(&mut cmd, &receiver.endpoint());
            (cmd.spawn().unwrap(), log)
        })
        .collect();

    let out = dir.path().join("summary.json");
    let mut cmd = vigil();
    cmd.args(["--log-format", "json", "run", suite.to_str().unwrap()])
        .args(["--nats", &nats.url(), "--workers", "0", "--no-progress"])
        .args(["--out", out.to_str().unwrap()]);
    traced(&mut cmd, &receiver.endpoint());
    let output = run(&mut cmd);
    assert_eq!(output.status.code(), Some(0));
    let summary = read_summary(&out);
    assert_eq!(summary["items_scored"], ITEMS as u64);

    // Workers flush their spans when they exit.
    for (worker, _) in &mut workers {
        Command::new("kill")
            .args(["-TERM", &worker.id().to_string()])
            .status()
            .unwrap();
        assert_eq!(worker.wait().unwrap().code(), Some(0));
    }
    receiver.wait_for_spans(otel::expected_spans(ITEMS));
    let spans = receiver.spans();

    // One trace, the summary's: run → job (on the workers) → model call → scorer.
    let trace = otel::assert_run_trace(&spans, &summary, ITEMS);
    let trace_id = summary["trace_id"].as_str().unwrap();
    let call_ids = &trace.call_ids;
    for call in &trace.calls {
        let a = attrs(call);
        assert_eq!(a["gen_ai.operation.name"], "chat");
        assert_eq!(a["gen_ai.request.model"], "stub-model");
        assert_eq!(a["server.address"], "127.0.0.1");
        assert_eq!(
            a["server.port"],
            stub.base_url()
                .split(':')
                .nth(2)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
        );
        for key in ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"] {
            let n: u64 = a[key].as_str().unwrap().parse().unwrap();
            assert!(n > 0, "{key}");
        }
        assert_eq!(
            a["gen_ai.response.finish_reasons"]["values"][0]["stringValue"],
            "stop"
        );
    }

    // Each item result names its model-call span.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(subjects::STREAM_RESULTS).await.unwrap();
    let messages = stream.info().await.unwrap().state.messages;
    let mut linked = 0;
    for seq in 1..=messages {
        let raw = stream.get_raw_message(seq).await.unwrap();
        let result: JobResult = vigil_protocol::decode(&raw.payload).unwrap();
        for item in result.items {
            assert_eq!(item.trace_id.as_deref(), Some(trace_id));
            assert!(call_ids.contains(item.span_id.as_deref().unwrap()));
            linked += 1;
        }
    }
    assert_eq!(linked, ITEMS);

    // Log lines inside the run carry its trace id.
    let run_log = String::from_utf8_lossy(&output.stderr);
    let starting = run_log
        .lines()
        .find(|l| l.contains("run starting"))
        .expect("a `run starting` line");
    assert!(starting.contains(trace_id), "{starting}");

    // The key went to the backend (the stub saw the calls) and nowhere else.
    let mut haystacks = vec![
        ("spans".to_string(), receiver.text()),
        ("coordinator log".to_string(), run_log.to_string()),
    ];
    for (_, log) in &workers {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.lines().count() > 3, "worker logged: {text}");
        haystacks.push((log.display().to_string(), text));
    }
    for (name, text) in haystacks {
        assert!(!text.contains(KEY), "the API key leaked into {name}");
        assert!(
            !text.contains(&KEY[3..]),
            "part of the API key leaked into {name}"
        );
    }
}
