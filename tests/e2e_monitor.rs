//! `vigil monitor` as a user runs it, against a real nats-server, real
//! `vigil proxy` / `vigil worker` / `vigil monitor` processes and the stub:
//! traffic through the proxy is scored by the worker pool, in windows whose
//! summaries land on `vigil.runs.<monitor>.<app>` and whose results `vigil
//! export` reads; a drop in quality (the stub answering invalid JSON) raises
//! exactly one drift alarm with its evidence; an unchanged stream raises
//! none; a monitor killed in the middle of publishing a batch resumes
//! without scoring any capture twice.

use crate::common;
use crate::common::cluster;

use async_nats::jetstream::{self, consumer::pull::OrderedConfig};
use cluster::{Proc, count_messages, wait_until};
use common::{free_addr, run, vigil};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;
use vigil_protocol::{Alert, Capture, JobResult, RunSummary, codec, subjects};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

const WAIT: Duration = Duration::from_secs(120);

/// Every message of `subject` in `stream`, decoded (waits until there are at least `at_least`).
async fn read_all<T: serde::de::DeserializeOwned>(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
) -> Vec<T> {
    let n = count_messages(js, stream, subject).await;
    if n == 0 {
        return Vec::new();
    }
    let mut messages = js
        .get_stream(stream)
        .await
        .unwrap()
        .create_consumer(OrderedConfig {
            filter_subject: subject.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .messages()
        .await
        .unwrap();
    let mut out = Vec::new();
    while (out.len() as u64) < n {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("a stored message arrives")
            .unwrap()
            .unwrap();
        out.push(codec::decode(&msg.payload).expect("a decodable message"));
    }
    out
}

/// How many results each item id (capture id) has in `VIGIL_RESULTS`, over
/// every run, and how many of them failed.
async fn results_per_id(js: &jetstream::Context) -> (BTreeMap<String, u64>, u64) {
    let results: Vec<JobResult> =
        read_all(js, subjects::STREAM_RESULTS, subjects::RESULTS_ALL).await;
    let mut per_id = BTreeMap::new();
    let mut failed = 0;
    for r in results {
        for item in r.items {
            if item.error.is_some() {
                failed += 1;
            }
            *per_id.entry(item.id).or_insert(0) += 1;
        }
    }
    (per_id, failed)
}

/// `vigil worker` on `nats`, logging into `dir/worker.log`.
fn spawn_worker(dir: &Path, nats: &NatsServer) -> Proc {
    Proc::spawn(
        &["worker", "--nats", &nats.url(), "--concurrency", "8"],
        &[],
        &dir.join("worker.log"),
    )
}

/// `vigil monitor FILE` on `nats`, logging into `dir/<log>.log`.
fn spawn_monitor(
    dir: &Path,
    nats: &NatsServer,
    file: &Path,
    envs: &[(&str, &str)],
    log: &str,
) -> Proc {
    Proc::spawn(
        &["monitor", file.to_str().unwrap(), "--nats", &nats.url()],
        envs,
        &dir.join(format!("{log}.log")),
    )
}

fn write_monitor(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("monitor.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A temporary directory, a nats-server, and `VIGIL_CAPTURE` made (as a
/// proxy or `vigil setup-streams` makes it).
async fn setup() -> (tempfile::TempDir, NatsServer, jetstream::Context) {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    vigil_nats::topology::ensure_capture_stream(&js, &Default::default())
        .await
        .unwrap();
    (dir, nats, js)
}

/// Publishes a capture as a service would (docs/protocol.md, "Captures").
async fn publish_capture(js: &jetstream::Context, c: &Capture) {
    let publish = jetstream::message::PublishMessage::build()
        .headers(vigil_nats::headers::capture_headers(&c.capture_id))
        .message_id(c.capture_id.clone())
        .payload(codec::encode(c).unwrap().into());
    js.send_publish(subjects::capture(&c.app), publish)
        .await
        .unwrap()
        .await
        .unwrap();
}

fn capture(app: &str, i: u64, response: &str) -> Capture {
    Capture {
        capture_id: format!("{app}-cap-{i:05}"),
        request_id: format!("{app}-req-{i}"),
        app: app.into(),
        model: Some("m".into()),
        endpoint: "chat".into(),
        prompt: format!("question {i}"),
        response_text: Some(response.into()),
        status: 200,
        latency_ms: 12.0,
        time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_traffic_is_scored_in_windows_and_a_quality_drop_raises_one_alarm() {
    let (dir, nats, js) = setup().await;
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let listen = free_addr();
    let mut proxy = Proc::spawn(
        &[
            "proxy",
            "--listen",
            &listen,
            "--upstream",
            &stub.base_url(),
            "--app",
            "support",
            "--nats",
            &nats.url(),
        ],
        &[],
        &dir.path().join("proxy.log"),
    );
    let monitor_file = write_monitor(
        dir.path(),
        r#"
name: support-json
app: support
batch: 16
batch_wait_ms: 200
window: {max_items: 300, duration_s: 1000000000}
scorers:
  - {name: json, kind: json_valid}
metrics:
  latency: {max_ms: 5000}
drift:
  alpha: 0.001
  reference_items: 200
"#,
    );
    let mut worker = spawn_worker(dir.path(), &nats);
    let mut monitor = spawn_monitor(dir.path(), &nats, &monitor_file, &[], "monitor");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            std::time::Instant::now() < until,
            "vigil proxy never came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 300 answers of valid JSON, then the model breaks: 300 that are not JSON.
    let send = |i: u64, reply: String| {
        let http = http.clone();
        let url = format!("http://{listen}/v1/chat/completions");
        async move {
            let body = serde_json::json!({
                "model": "m",
                "messages": [{"role": "user", "content": format!("say [[reply: {reply}]]")}],
            });
            let r = http
                .post(url)
                .header("x-request-id", format!("req-{i}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    };
    for i in 0..300u64 {
        send(i, format!(r#"{{"ok": true, "i": {i}}}"#)).await;
    }
    for i in 300..600u64 {
        send(i, format!("sorry, no JSON today ({i})")).await;
    }

    // Two windows of 300 close into two summaries, after every result is in.
    let runs_subject = subjects::run_summary("support-json", "support");
    wait_until("two window summaries", WAIT, || async {
        count_messages(&js, subjects::STREAM_RUNS, &runs_subject).await >= 2
    })
    .await;
    let summaries: Vec<RunSummary> = read_all(&js, subjects::STREAM_RUNS, &runs_subject).await;
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    let (first, second) = (&summaries[0], &summaries[1]);
    assert_eq!(
        (first.suite.as_str(), first.target.as_str()),
        ("support-json", "support")
    );
    assert_eq!((first.items_total, first.items_scored), (300, 300));
    assert_eq!((second.items_total, second.items_scored), (300, 300));
    assert_eq!(first.scores["json"].pass_rate, 1.0);
    assert_eq!(second.scores["json"].pass_rate, 0.0);
    assert_ne!(first.run_id, second.run_id);

    // Every capture scored exactly once, under its capture id.
    let captures: Vec<Capture> =
        read_all(&js, subjects::STREAM_CAPTURE, &subjects::capture("support")).await;
    assert_eq!(captures.len(), 600);
    let (per_id, failed) = results_per_id(&js).await;
    assert_eq!(failed, 0);
    let ids: BTreeSet<&String> = captures.iter().map(|c| &c.capture_id).collect();
    assert_eq!(per_id.keys().collect::<BTreeSet<_>>(), ids);
    assert!(per_id.values().all(|n| *n == 1), "a capture scored twice");

    // Exactly one alarm, on json, with the evidence; its examples are
    // captures of the broken answers.
    let alerts: Vec<Alert> =
        read_all(&js, subjects::STREAM_ALERTS, &subjects::alerts("support")).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a.kind, "drift");
    assert_eq!(a.suite, "support-json");
    assert!(
        a.gate.starts_with("json.pass_rate e_detector drop"),
        "{}",
        a.gate
    );
    assert_eq!(a.values["reference_mean"], 1.0);
    assert_eq!(a.values["reference_count"], 200.0);
    assert!(a.values["recent_mean"] <= 0.5, "{:?}", a.values);
    assert_eq!(a.values["alpha"], 0.001);
    assert!(a.values.contains_key("change_point"));
    assert!(!a.examples.is_empty());
    let broken: BTreeSet<&String> = captures
        .iter()
        .filter(|c| c.request_id["req-".len()..].parse::<u64>().unwrap() >= 300)
        .map(|c| &c.capture_id)
        .collect();
    assert!(
        a.examples.iter().all(|e| broken.contains(e)),
        "{:?}",
        a.examples
    );
    assert_eq!(a.run_id, second.run_id);

    // The history and export commands read the windows like any run.
    let out = run(vigil().args([
        "runs",
        "list",
        "--suite",
        "support-json",
        "--json",
        "--nats",
        &nats.url(),
    ]));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let out = run(vigil().args(["export", &first.run_id, "--nats", &nats.url()]));
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 300);
    assert!(
        rows.iter()
            .all(|r| ids.contains(&r["id"].as_str().unwrap().to_string()))
    );
    assert!(
        rows.iter()
            .all(|r| r["tags"]["app"] == "support" || r["tag.app"] == "support"),
        "{}",
        rows[0]
    );

    monitor.sigterm();
    assert_eq!(
        monitor.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        monitor.log_text()
    );
    worker.kill9();
    proxy.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unchanged_stream_raises_no_alarm() {
    let (dir, nats, js) = setup().await;
    // 3,000 captures, 90% valid JSON throughout (a fixed pseudo-random pattern).
    let n = 3000u64;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let reply = if x.is_multiple_of(10) {
            "not json"
        } else {
            r#"{"ok": true}"#
        };
        publish_capture(&js, &capture("steady", i, reply)).await;
    }
    let monitor_file = write_monitor(
        dir.path(),
        r#"
name: steady-json
filter: {app: steady}
batch: 64
batch_wait_ms: 200
window: {max_items: 1000, duration_s: 1000000000}
scorers:
  - {name: json, kind: json_valid}
drift: {alpha: 0.001, reference_items: 300}
"#,
    );
    let mut worker = spawn_worker(dir.path(), &nats);
    let mut monitor = spawn_monitor(dir.path(), &nats, &monitor_file, &[], "monitor");
    let runs_subject = subjects::run_summary("steady-json", "steady");
    wait_until("three window summaries", WAIT, || async {
        count_messages(&js, subjects::STREAM_RUNS, &runs_subject).await >= 3
    })
    .await;
    // Every result was observed by the detector before its window was summarised.
    let summaries: Vec<RunSummary> = read_all(&js, subjects::STREAM_RUNS, &runs_subject).await;
    assert_eq!(summaries.iter().map(|s| s.items_scored).sum::<u64>(), n);
    let rate = summaries
        .iter()
        .map(|s| s.scores["json"].passed)
        .sum::<u64>() as f64
        / n as f64;
    assert!((0.87..0.93).contains(&rate), "{rate}");
    assert_eq!(
        count_messages(&js, subjects::STREAM_ALERTS, subjects::ALERTS_ALL).await,
        0
    );
    let log = monitor.log_text();
    assert!(
        log.contains("drift reference complete"),
        "the detector never armed:\n{log}"
    );
    monitor.kill9();
    worker.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_monitor_killed_while_publishing_a_batch_resumes_without_scoring_twice() {
    let (dir, nats, js) = setup().await;
    let n = 200u64;
    for i in 0..n {
        publish_capture(&js, &capture("shop", i, r#"{"ok": 1}"#)).await;
    }
    let monitor_file = write_monitor(
        dir.path(),
        r#"
name: shop-json
app: shop
batch: 10
batch_wait_ms: 100
# The restarted monitor waits out the killed one's lease (3 periods).
lease_ms: 200
window: {max_items: 95, duration_s: 1000000000}
scorers:
  - {name: json, kind: json_valid}
"#,
    );
    // No worker yet and a jobs stream of 10: batches of 10 captures are one
    // job each until the 10th batch (captures 91..100), which window 1 (95
    // items) and window 2 share: its first job takes the last room, its
    // second waits, with the batch recorded and not acked. Killed there.
    let envs = [("VIGIL_JOBS_MAX_MSGS", "10")];
    let mut monitor = spawn_monitor(dir.path(), &nats, &monitor_file, &envs, "monitor1");
    let kv = runs_kv(&js).await;
    wait_until(
        "a batch recorded and waiting for room in the jobs stream",
        WAIT,
        || async {
            let jobs = count_messages(&js, subjects::STREAM_JOBS, subjects::JOBS_ALL).await;
            let state = kv.get("monitor.shop-json").await.ok().flatten();
            let pending = state
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| !v["pending"].is_null());
            jobs == 10 && pending
        },
    )
    .await;
    monitor.kill9();

    let mut monitor = spawn_monitor(dir.path(), &nats, &monitor_file, &envs, "monitor2");
    // The worker only once the restarted monitor has waited out the killed
    // one's lease: the rebuilt batch's first job must meet its earlier copy
    // still in the jobs stream (its dedup), not a drained stream.
    wait_until("the restarted monitor following captures", WAIT, || async {
        !monitor.log_events("monitor following captures").is_empty()
    })
    .await;
    let mut worker = spawn_worker(dir.path(), &nats);
    let runs_subject = subjects::run_summary("shop-json", "shop");
    wait_until("two window summaries", WAIT, || async {
        count_messages(&js, subjects::STREAM_RUNS, &runs_subject).await >= 2
    })
    .await;
    // Captures 191..200 are a third window's, not yet summarised: their
    // result can come after the second summary (it once did: 190 of 200).
    wait_until("every capture scored", WAIT, || async {
        results_per_id(&js).await.0.len() as u64 >= n
    })
    .await;
    let (per_id, failed) = results_per_id(&js).await;
    assert_eq!(failed, 0);
    assert_eq!(per_id.len() as u64, n, "every capture scored");
    let twice: Vec<_> = per_id.iter().filter(|(_, k)| **k != 1).collect();
    assert!(twice.is_empty(), "scored more than once: {twice:?}");
    let summaries: Vec<RunSummary> = read_all(&js, subjects::STREAM_RUNS, &runs_subject).await;
    assert_eq!(summaries.len(), 2);
    assert!(
        summaries
            .iter()
            .all(|s| s.items_total == 95 && s.items_scored == 95),
        "{summaries:?}"
    );
    // The rebuilt batch's first job was dropped by the server as a duplicate.
    let log = monitor.log_text();
    assert!(
        log.contains("rebuilding it"),
        "the restarted monitor did not rebuild the batch:\n{log}"
    );
    let rebuilt = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["fields"]["message"] == "batch of captures sent to be scored")
        .unwrap_or_else(|| panic!("no batch after the restart:\n{log}"));
    assert_eq!(rebuilt["fields"]["first_seq"], 91, "{rebuilt}");
    assert_eq!(rebuilt["fields"]["duplicates"], 1, "{rebuilt}");
    monitor.kill9();
    worker.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_monitor_scores_exactly_the_captures_its_filter_and_sample_rate_pick() {
    let (dir, nats, js) = setup().await;
    // Two apps; in `shop`, tenants acme and other, models m and m2.
    let mut expected = BTreeSet::new();
    for i in 0..400u64 {
        let mut c = capture(if i % 5 == 0 { "other-app" } else { "shop" }, i, "{}");
        c.metadata.insert(
            "tenant".into(),
            if i % 2 == 0 { "acme" } else { "other" }.into(),
        );
        if i % 3 == 0 {
            c.model = Some("m2".into());
        }
        let wanted = c.app == "shop"
            && c.metadata["tenant"] == "acme"
            && c.model.as_deref() == Some("m")
            && vigil_protocol::capture::sampled(&c.request_id, 0.5);
        if wanted {
            expected.insert(c.capture_id.clone());
        }
        publish_capture(&js, &c).await;
    }
    assert!(expected.len() > 20, "{}", expected.len());
    // One window exactly as large as the expected selection: it closes
    // (and is summarised) when the last expected capture is scored.
    let monitor_file = write_monitor(
        dir.path(),
        &format!(
            r#"
name: acme
app: shop
filter: {{models: [m], metadata: {{tenant: acme}}}}
sample: 0.5
batch_wait_ms: 100
window: {{max_items: {}, duration_s: 1000000000}}
scorers:
  - {{name: json, kind: json_valid}}
"#,
            expected.len()
        ),
    );
    let mut worker = spawn_worker(dir.path(), &nats);
    let mut monitor = spawn_monitor(dir.path(), &nats, &monitor_file, &[], "monitor");
    let runs_subject = subjects::run_summary("acme", "shop");
    wait_until("the window summary", WAIT, || async {
        count_messages(&js, subjects::STREAM_RUNS, &runs_subject).await >= 1
    })
    .await;
    let (per_id, failed) = results_per_id(&js).await;
    assert_eq!(failed, 0);
    assert_eq!(per_id.keys().cloned().collect::<BTreeSet<_>>(), expected);
    // Tags carry app, model and metadata.
    let results: Vec<JobResult> =
        read_all(&js, subjects::STREAM_RESULTS, subjects::RESULTS_ALL).await;
    let tags = &results[0].items[0].tags;
    assert_eq!(
        (
            tags["app"].as_str(),
            tags["model"].as_str(),
            tags["tenant"].as_str()
        ),
        ("shop", "m", "acme")
    );
    monitor.kill9();
    worker.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn windows_close_by_the_clock_and_items_without_results_fail_as_deadline() {
    let (dir, nats, js) = setup().await;
    // No worker: nothing is ever scored. Windows of 1 s of capture time
    // close 1 s after their end; their items fail 1 s after that.
    for i in 0..3 {
        publish_capture(&js, &capture("idle", i, "{}")).await;
    }
    let monitor_file = write_monitor(
        dir.path(),
        r#"
name: idle
app: idle
batch_wait_ms: 100
window: {duration_s: 1, grace_s: 1, results_timeout_s: 1}
scorers:
  - {name: json, kind: json_valid}
"#,
    );
    let mut monitor = spawn_monitor(dir.path(), &nats, &monitor_file, &[], "monitor");
    let runs_subject = subjects::run_summary("idle", "idle");
    let total = |s: &[RunSummary]| s.iter().map(|s| s.items_total).sum::<u64>();
    wait_until("windows summarising the 3 captures", WAIT, || async {
        total(&read_all::<RunSummary>(&js, subjects::STREAM_RUNS, &runs_subject).await) >= 3
    })
    .await;
    let summaries: Vec<RunSummary> = read_all(&js, subjects::STREAM_RUNS, &runs_subject).await;
    assert_eq!(summaries.iter().map(|s| s.items_total).sum::<u64>(), 3);
    for s in &summaries {
        assert_eq!(s.items_scored, 0);
        assert_eq!(s.errors.get("deadline"), Some(&s.items_total), "{s:?}");
    }
    monitor.kill9();
}

#[test]
fn a_bad_monitor_file_names_the_field_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_monitor(
        dir.path(),
        "name: m\nscorers:\n  - {name: exact, kind: exact_match, reference: '{{ answer }}'}\n",
    );
    let out = run(vigil().args([
        "monitor",
        file.to_str().unwrap(),
        "--nats",
        "nats://127.0.0.1:1",
    ]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("monitor.yaml") && err.contains("scorers[0]") && err.contains("reference"),
        "{err}"
    );
}

/// The `vigil-runs` bucket, once the monitor has made it.
async fn runs_kv(js: &jetstream::Context) -> jetstream::kv::Store {
    loop {
        if let Ok(kv) = js.get_key_value(subjects::KV_RUNS).await {
            return kv;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `vigil monitor` started, once it has written its state; and `vigil-runs`.
async fn monitor_with_state(
    dir: &Path,
    nats: &NatsServer,
    js: &jetstream::Context,
    file: &Path,
    log: &str,
) -> (Proc, jetstream::kv::Store) {
    let monitor = spawn_monitor(dir, nats, file, &[], log);
    let kv = runs_kv(js).await;
    wait_until("the monitor state written", WAIT, || async {
        kv.get("monitor.shop-json").await.ok().flatten().is_some()
    })
    .await;
    (monitor, kv)
}

const JSON_MONITOR: &str = r#"
name: shop-json
app: shop
batch: 10
batch_wait_ms: 100
lease_ms: 300
window: {max_items: 1000, duration_s: 1000000000}
scorers:
  - {name: json, kind: json_valid}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_while_nats_is_down_exits_within_seconds() {
    let (dir, mut nats, js) = setup().await;
    let file = write_monitor(dir.path(), JSON_MONITOR);
    let (mut monitor, _) = monitor_with_state(dir.path(), &nats, &js, &file, "monitor").await;
    nats.kill_and_wait().await;
    monitor.sigterm();
    // Before the bounded shutdown save this took ~2.6 minutes (30 puts of 5 s).
    let code = monitor.wait_exit(Duration::from_secs(20));
    let log = monitor.log_text();
    assert!(code.is_some(), "still running 20 s after SIGTERM:\n{log}");
    assert!(
        log.contains("cannot write the monitor state on shutdown; giving up"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_state_from_another_server_is_ignored_and_every_capture_is_scored() {
    let (dir, nats, js) = setup().await;
    let file = write_monitor(dir.path(), JSON_MONITOR);
    let (mut monitor, kv) = monitor_with_state(dir.path(), &nats, &js, &file, "monitor1").await;
    monitor.kill9();
    // As an old monitor, stopping while its server was replaced, writes it.
    kv.put(
        "monitor.shop-json",
        br#"{"through_seq": 405}"#.to_vec().into(),
    )
    .await
    .unwrap();
    let n = 30u64;
    for i in 0..n {
        publish_capture(&js, &capture("shop", i, r#"{"ok": 1}"#)).await;
    }
    let mut monitor = spawn_monitor(dir.path(), &nats, &file, &[], "monitor2");
    let mut worker = spawn_worker(dir.path(), &nats);
    wait_until("every capture scored", WAIT, || async {
        results_per_id(&js).await.0.len() as u64 == n
    })
    .await;
    let (per_id, failed) = results_per_id(&js).await;
    assert_eq!(failed, 0);
    assert!(per_id.values().all(|k| *k == 1), "{per_id:?}");
    let log = monitor.log_text();
    assert!(log.contains("stale, from another server"), "{log}");
    monitor.kill9();
    worker.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_monitor_of_the_same_name_exits_2_and_one_started_after_a_kill_takes_over() {
    let (dir, nats, js) = setup().await;
    let file = write_monitor(dir.path(), JSON_MONITOR);
    let mut first = spawn_monitor(dir.path(), &nats, &file, &[], "monitor1");
    let kv = runs_kv(&js).await;
    wait_until("the first monitor following captures", WAIT, || async {
        !first.log_events("monitor following captures").is_empty()
    })
    .await;
    let lease = kv.get("monitor.shop-json.lease").await.unwrap();
    assert!(lease.is_some(), "no lease written");

    let mut second = spawn_monitor(dir.path(), &nats, &file, &[], "monitor2");
    let code = second.wait_exit(WAIT);
    let log = second.log_text();
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("monitor shop-json is already running (holder"),
        "{log}"
    );
    assert!(log.contains("last seen"), "{log}");

    first.kill9();
    let mut third = spawn_monitor(dir.path(), &nats, &file, &[], "monitor3");
    wait_until("the third monitor taking over", WAIT, || async {
        !third.log_events("monitor following captures").is_empty()
    })
    .await;
    assert!(
        third
            .log_text()
            .contains("took over an expired monitor lease"),
        "{}",
        third.log_text()
    );
    // It scores captures.
    let mut worker = spawn_worker(dir.path(), &nats);
    for i in 0..5 {
        publish_capture(&js, &capture("shop", i, r#"{"ok": 1}"#)).await;
    }
    wait_until("the captures scored", WAIT, || async {
        results_per_id(&js).await.0.len() == 5
    })
    .await;
    third.kill9();
    worker.kill9();
}
