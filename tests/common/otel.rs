//! Helpers shared by the tracing tests: real OTLP receivers as child
//! processes (PyPI `oteltap` for OTLP/HTTP, PyPI `rotel` for OTLP/gRPC, both
//! installed by `scripts/setup-extra.d/`), the spans they received in the
//! OTLP/JSON shape, and the check that a run's spans form one trace.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The API key the traced suites use; it must reach no span and no log.
pub const KEY: &str = "sk-vigil-otel-test-7c1e94d2";

/// A tool that `scripts/setup.sh` installed into `$VIGIL_HOME/bin`.
pub fn setup_bin(name: &str, installer: &str) -> PathBuf {
    let home = std::env::var_os("VIGIL_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".vigil"));
    let bin = home.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} missing: run scripts/setup.sh ({installer} installs it)",
        bin.display()
    );
    bin
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Which receiver, and so how its output file reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// oteltap: OTLP/HTTP, one span per NDJSON line.
    Oteltap,
    /// rotel-agent: OTLP/gRPC, its debug exporter's text (the collector's
    /// `debug` exporter format, `detailed` verbosity).
    Rotel,
}

/// A running OTLP receiver writing what it receives to a file.
pub struct Receiver {
    child: Child,
    /// The file its received spans go to.
    pub out: PathBuf,
    port: u16,
    kind: Kind,
}

impl Receiver {
    /// oteltap on a free port, receiving OTLP/HTTP.
    pub fn oteltap(dir: &Path) -> Receiver {
        let out = dir.join("spans.ndjson");
        let port = free_port();
        let child = Command::new(setup_bin("oteltap", "scripts/setup-extra.d/otel.sh"))
            .args(["--port", &port.to_string()])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let receiver = Receiver {
            child,
            out,
            port,
            kind: Kind::Oteltap,
        };
        receiver.wait_for(|text| text.contains("Listening"), "oteltap to listen");
        receiver
    }

    /// rotel-agent receiving OTLP/gRPC on a free port, printing every span
    /// (its debug exporter) and exporting nowhere else.
    pub fn rotel(dir: &Path) -> Receiver {
        let out = dir.join("rotel.out");
        let port = free_port();
        let child = Command::new(setup_bin(
            "rotel-agent",
            "scripts/setup-extra.d/otel-grpc.sh",
        ))
        .arg("start")
        .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{port}")])
        .args([
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--exporter", "blackhole"])
        .args(["--debug-log", "traces", "--debug-log-verbosity", "detailed"])
        .args(["--batch-timeout", "100ms"])
        .arg("--pid-file")
        .arg(dir.join("rotel.pid"))
        .arg("--log-file")
        .arg(dir.join("rotel.log"))
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let receiver = Receiver {
            child,
            out,
            port,
            kind: Kind::Rotel,
        };
        receiver.wait_for(|text| text.contains("Starting Rotel"), "rotel to start");
        // The log line comes just before the listeners bind: wait for the port.
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "rotel never listened on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        receiver
    }

    /// The endpoint to give `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The receiver's output so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Polls the output until `done` holds (30 s at most).
    pub fn wait_for(&self, done: impl Fn(&str) -> bool, what: &str) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.text();
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

    /// Waits until at least `n` spans arrived and the output stopped
    /// growing (rotel prints a span's attributes after the lines counted).
    pub fn wait_for_spans(&self, n: usize) {
        let kind = self.kind;
        self.wait_for(|text| parse(kind, text).len() >= n, "every span");
        let until = Instant::now() + Duration::from_secs(30);
        let mut last = self.text();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.text();
            if now == last || Instant::now() > until {
                return;
            }
            last = now;
        }
    }

    /// Every span received, in the OTLP/JSON shape (`traceId`, `spanId`,
    /// `parentSpanId`, `name`, `kind`, `attributes`).
    pub fn spans(&self) -> Vec<Value> {
        parse(self.kind, &self.text())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(kind: Kind, text: &str) -> Vec<Value> {
    match kind {
        Kind::Oteltap => text
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Kind::Rotel => parse_debug_exporter(text),
    }
}

/// The collector `debug` exporter's text, one block per span:
/// ```text
/// Span #0
///     Trace ID       : 5b8e...
///     Parent ID      : aaa1...
///     ID             : eee1...
///     Name           : run arith
///     Kind           : SPAN_KIND_INTERNAL
/// ...
/// Attributes:
///      -> vigil.run_id: Str(...)
/// ```
/// A block is complete once its `Kind` line is in (a block cut by a write in
/// progress is skipped until the next poll).
fn parse_debug_exporter(text: &str) -> Vec<Value> {
    let mut spans: Vec<Value> = Vec::new();
    let mut current: Option<Value> = None;
    let mut in_attributes = false;
    fn finish(span: Option<Value>, spans: &mut Vec<Value>) {
        if let Some(span) = span
            && span.get("kind").is_some()
        {
            spans.push(span);
        }
    }
    for line in text.lines() {
        if line.starts_with("Span #") {
            finish(current.take(), &mut spans);
            current = Some(json!({"parentSpanId": "", "attributes": []}));
            in_attributes = false;
            continue;
        }
        let Some(span) = current.as_mut() else {
            continue;
        };
        if !line.starts_with(' ') && !line.starts_with("Attributes:") {
            in_attributes = false;
        }
        if line.starts_with("Attributes:") {
            in_attributes = true;
            continue;
        }
        if in_attributes && let Some(kv) = line.trim_start().strip_prefix("-> ") {
            if let Some((key, value)) = kv.split_once(": ") {
                span["attributes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"key": key, "value": debug_value(value)}));
            }
            continue;
        }
        if let Some((field, value)) = line.trim().split_once(':') {
            let value = value.trim();
            match field.trim() {
                "Trace ID" => span["traceId"] = value.into(),
                "Parent ID" => span["parentSpanId"] = value.into(),
                "ID" => span["spanId"] = value.into(),
                "Name" => span["name"] = value.into(),
                "Kind" => {
                    let kind = [
                        "SPAN_KIND_UNSPECIFIED",
                        "SPAN_KIND_INTERNAL",
                        "SPAN_KIND_SERVER",
                        "SPAN_KIND_CLIENT",
                        "SPAN_KIND_PRODUCER",
                        "SPAN_KIND_CONSUMER",
                    ]
                    .iter()
                    .position(|k| *k == value)
                    .unwrap_or(0);
                    span["kind"] = kind.into();
                }
                _ => {}
            }
        }
    }
    finish(current, &mut spans);
    spans
}

/// `Str(x)`, `Int(5)`, ... as an OTLP/JSON `AnyValue`.
fn debug_value(v: &str) -> Value {
    let inner = |prefix: &str| v.strip_prefix(prefix)?.strip_suffix(')');
    if let Some(s) = inner("Str(") {
        json!({"stringValue": s})
    } else if let Some(s) = inner("Int(") {
        json!({"intValue": s})
    } else if let Some(s) = inner("Bool(") {
        json!({"boolValue": s == "true"})
    } else if let Some(s) = inner("Double(") {
        json!({"doubleValue": s.parse::<f64>().ok()})
    } else {
        json!({"stringValue": v})
    }
}

/// A span's attributes by key (the `AnyValue`'s one field).
pub fn attrs(span: &Value) -> HashMap<String, Value> {
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

/// A suite over `dataset.jsonl` whose target needs the API key
/// `VIGIL_OTEL_TEST_KEY` (so the tests can look for it), two jobs per item pair.
pub fn write_keyed_suite(dir: &Path, base_url: &str) -> PathBuf {
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

/// Exports a command's spans to `endpoint`, gives it the API key and debug logs.
pub fn traced(cmd: &mut Command, endpoint: &str) {
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("VIGIL_OTEL_TEST_KEY", KEY)
        .env("VIGIL_LOG", "debug");
}

/// The spans expected of a run of `items` items with the keyed suite: run +
/// one job per two items + one model call per item + two scores per item.
pub fn expected_spans(items: usize) -> usize {
    1 + items / 2 + items + 2 * items
}

/// The span ids of a run's trace, by level.
pub struct RunTrace<'a> {
    /// The run span (the root).
    pub run: &'a Value,
    /// The job spans' ids.
    pub jobs: HashSet<&'a str>,
    /// The model-call spans.
    pub calls: Vec<&'a Value>,
    /// The model-call spans' ids.
    pub call_ids: HashSet<&'a str>,
}

/// Checks that `spans` are one trace, the summary's, shaped run → job (in a
/// worker process) → model call → scorer, for a run of `items` items with
/// the keyed suite.
pub fn assert_run_trace<'a>(spans: &'a [Value], summary: &Value, items: usize) -> RunTrace<'a> {
    let trace_id = summary["trace_id"]
        .as_str()
        .expect("summary has a trace id");
    assert_eq!(trace_id.len(), 32);
    let traces: HashSet<&str> = spans
        .iter()
        .map(|s| s["traceId"].as_str().unwrap())
        .collect();
    assert_eq!(traces, HashSet::from([trace_id]), "one trace");

    let by_name = |prefix: &str| -> Vec<&'a Value> {
        spans
            .iter()
            .filter(|s| s["name"].as_str().unwrap().starts_with(prefix))
            .collect()
    };
    let runs = by_name("run");
    assert_eq!(runs.len(), 1);
    let run = runs[0];
    assert_eq!(run["parentSpanId"], "", "the run span is the root");
    assert_eq!(attrs(run)["vigil.run_id"], summary["run_id"]);

    let job_spans = by_name("job");
    assert_eq!(job_spans.len(), items / 2);
    for job in &job_spans {
        assert_eq!(job["parentSpanId"], run["spanId"], "job under run");
        // Evaluated in a worker process, not the coordinator's.
        assert!(attrs(job).contains_key("vigil.worker"));
    }
    let jobs: HashSet<&str> = job_spans
        .iter()
        .map(|s| s["spanId"].as_str().unwrap())
        .collect();

    let calls = by_name("chat stub-model");
    assert_eq!(calls.len(), items);
    for call in &calls {
        assert!(
            jobs.contains(call["parentSpanId"].as_str().unwrap()),
            "model call under a job"
        );
        assert_eq!(call["kind"], 3, "a client span");
    }
    let call_ids: HashSet<&str> = calls
        .iter()
        .map(|s| s["spanId"].as_str().unwrap())
        .collect();
    let scores = by_name("score ");
    assert_eq!(scores.len(), 2 * items);
    for score in &scores {
        assert!(
            call_ids.contains(score["parentSpanId"].as_str().unwrap()),
            "scorer under a model call"
        );
    }
    RunTrace {
        run,
        jobs,
        calls,
        call_ids,
    }
}
