//! A judge's and an embedder's calls are traced like model calls: a
//! model-call span with the GenAI attributes, child of the scorer's span,
//! exported over OTLP/HTTP to a real receiver (PyPI `oteltap`, installed by
//! `scripts/setup-extra.d/otel.sh`).

use crate::common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

const ITEMS: usize = 4;

fn oteltap_bin() -> PathBuf {
    let home = std::env::var_os("VIGIL_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".vigil"));
    let bin = home.join("bin/oteltap");
    assert!(
        bin.exists(),
        "{} missing: run scripts/setup.sh",
        bin.display()
    );
    bin
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_and_embedding_calls_are_spans_under_their_scorer() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path());
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), ITEMS, 0);
    let base = stub.base_url();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(
        &suite,
        format!(
            r#"name: traced
dataset: {{ path: dataset.jsonl, id_field: id }}
prompt: {{ user: "{{{{ question }}}}" }}
targets:
  - {{ name: stub, base_url: "{base}", model: stub-model, params: {{ temperature: 0 }} }}
scorers:
  - {{ name: exact, kind: exact_match, reference: "{{{{ answer }}}}" }}
  - name: judge
    kind: llm_judge
    judge: {{ base_url: "{base}", model: judge-model }}
    reference: "{{{{ answer }}}}"
  - name: sim
    kind: embedding_similarity
    embedder: {{ base_url: "{base}", model: stub-embed }}
    reference: "{{{{ answer }}}}"
shard_size: 2
"#
        ),
    )
    .unwrap();
    let out = dir.path().join("summary.json");
    let mut cmd = coordinate(&suite, &nats.url(), 1, Some(&out));
    cmd.arg("--no-progress").env(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{}", receiver.port),
    );
    assert_eq!(run(&mut cmd).status.code(), Some(0));
    let summary = read_summary(&out);
    assert_eq!(summary["scores"]["judge"]["mean"], 1.0);
    assert_eq!(summary["scores"]["sim"]["mean"], 1.0);

    // run + 2 jobs + 4 model calls + 12 scores + 4 judge calls + 4 embedding calls.
    let expected = 1 + ITEMS / 2 + ITEMS + 3 * ITEMS + 2 * ITEMS;
    receiver.wait_for(
        |text| text.lines().filter(|l| l.starts_with('{')).count() >= expected,
        "every span",
    );
    let spans = receiver.spans();
    let named =
        |name: &str| -> Vec<&Value> { spans.iter().filter(|s| s["name"] == name).collect() };
    let ids = |list: &[&Value]| -> Vec<String> {
        list.iter()
            .map(|s| s["spanId"].as_str().unwrap().to_string())
            .collect()
    };
    let judge_scores = ids(&named("score judge"));
    let sim_scores = ids(&named("score sim"));
    assert_eq!((judge_scores.len(), sim_scores.len()), (ITEMS, ITEMS));

    let judge_calls = named("chat judge-model");
    assert_eq!(judge_calls.len(), ITEMS);
    for call in &judge_calls {
        assert!(
            judge_scores.contains(&call["parentSpanId"].as_str().unwrap().to_string()),
            "a judge call under its scorer's span: {call}"
        );
        assert_eq!(call["kind"], 3, "a client span");
        let a = attrs(call);
        assert_eq!(a["gen_ai.operation.name"], "chat");
        assert_eq!(a["gen_ai.request.model"], "judge-model");
        assert_eq!(a["vigil.call"], "judge");
        let tokens: u64 = a["gen_ai.usage.output_tokens"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(tokens > 0);
    }
    let embed_calls = named("embeddings stub-embed");
    assert_eq!(embed_calls.len(), ITEMS);
    for call in &embed_calls {
        assert!(
            sim_scores.contains(&call["parentSpanId"].as_str().unwrap().to_string()),
            "an embeddings call under its scorer's span: {call}"
        );
        assert_eq!(attrs(call)["gen_ai.operation.name"], "embeddings");
    }
}
