//! One run is one OpenTelemetry trace: a coordinator process and two worker
//! processes export over OTLP/HTTP to a real receiver (PyPI `oteltap`,
//! installed by `scripts/setup-extra.d/otel.sh`), and the spans it received
//! form run → job (on the workers) → model call → scorer. The same run
//! checks that the API key reaches neither a span nor a log line.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vigil_protocol::{JobResult, subjects};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

const KEY: &str = "sk-vigil-otel-test-7c1e94d2";
const ITEMS: usize = 10;

fn oteltap_bin() -> PathBuf {
    let home = std::env::var_os("VIGIL_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".vigil"));
    let bin = home.join("bin/oteltap");
    assert!(
        bin.exists(),
        "{} missing: run scripts/setup.sh (scripts/setup-extra.d/otel.sh installs it)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running oteltap printing every span it receives as NDJSON to a file.
struct Receiver {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Receiver {
    fn start(dir: &Path) -> Receiver {
        let out = dir.join("spans.ndjson");
        let port = free_port();
        let child = Command::new(oteltap_bin())
            .args(["--port", &port.to_string()])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let receiver = Receiver { child, out, port };
        receiver.wait_for(|text| text.contains("Listening"), "oteltap to listen");
        receiver
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_for(&self, done: impl Fn(&str) -> bool, what: &str) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            if done(&text) {
                return;
            }
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn attrs(span: &Value) -> HashMap<String, Value> {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let v = a["value"].as_object().unwrap().values().next().unwrap();
            (a["key"].as_str().unwrap().to_string(), v.clone())
        })
        .collect()
}

fn write_keyed_suite(dir: &Path, base_url: &str) -> PathBuf {
    let path = dir.join("suite.yaml");
    std::fs::write(
        &path,
        format!(
            r#"name: arith
dataset:
  path: dataset.jsonl
  id_field: id
prompt:
  user: "{{{{ question }}}}"
targets:
  - name: stub
    kind: chat
    base_url: {base_url}
    model: stub-model
    api_key_env: VIGIL_OTEL_TEST_KEY
    params: {{ temperature: 0, max_tokens: 16 }}
scorers:
  - name: exact
    kind: exact_match
    reference: "{{{{ answer }}}}"
  - name: num
    kind: numeric
    reference: "{{{{ answer }}}}"
shard_size: 2
"#
        ),
    )
    .unwrap();
    path
}

fn traced(cmd: &mut Command, endpoint: &str) {
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("VIGIL_OTEL_TEST_KEY", KEY)
        .env("VIGIL_LOG", "debug");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_is_one_trace_across_processes_and_no_key_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path());
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
    // run + 5 jobs + 10 model calls + 20 scores.
    let expected = 1 + ITEMS / 2 + ITEMS + 2 * ITEMS;
    receiver.wait_for(
        |text| text.lines().filter(|l| l.starts_with('{')).count() >= expected,
        "every span",
    );
    let spans = receiver.spans();

    // One trace, and the summary links to it.
    let trace_id = summary["trace_id"]
        .as_str()
        .expect("summary has a trace id");
    assert_eq!(trace_id.len(), 32);
    let traces: HashSet<&str> = spans
        .iter()
        .map(|s| s["traceId"].as_str().unwrap())
        .collect();
    assert_eq!(traces, HashSet::from([trace_id]), "one trace");

    let by_name = |prefix: &str| -> Vec<&Value> {
        spans
            .iter()
            .filter(|s| s["name"].as_str().unwrap().starts_with(prefix))
            .collect()
    };
    let runs = by_name("run");
    assert_eq!(runs.len(), 1);
    let run_span = runs[0];
    assert_eq!(run_span["parentSpanId"], "", "the run span is the root");
    let run_id = summary["run_id"].as_str().unwrap();
    assert_eq!(attrs(run_span)["vigil.run_id"], run_id);

    let jobs = by_name("job");
    assert_eq!(jobs.len(), ITEMS / 2);
    let job_ids: HashSet<&str> = jobs.iter().map(|s| s["spanId"].as_str().unwrap()).collect();
    for job in &jobs {
        assert_eq!(job["parentSpanId"], run_span["spanId"], "job under run");
        // Evaluated in a worker process, not the coordinator's.
        assert!(attrs(job).contains_key("vigil.worker"));
    }

    let calls = by_name("chat stub-model");
    assert_eq!(calls.len(), ITEMS);
    let call_ids: HashSet<&str> = calls
        .iter()
        .map(|s| s["spanId"].as_str().unwrap())
        .collect();
    for call in &calls {
        assert!(
            job_ids.contains(call["parentSpanId"].as_str().unwrap()),
            "model call under a job"
        );
        assert_eq!(call["kind"], 3, "a client span");
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
    let scores = by_name("score ");
    assert_eq!(scores.len(), 2 * ITEMS);
    for score in &scores {
        assert!(
            call_ids.contains(score["parentSpanId"].as_str().unwrap()),
            "scorer under a model call"
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
        (
            "spans".to_string(),
            std::fs::read_to_string(&receiver.out).unwrap(),
        ),
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
