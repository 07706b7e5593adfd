//! `vigil dataset` as a user runs it, against a real nats-server with real
//! `vigil` processes and the stub as the model server: push a dataset (twice:
//! one version), run a suite on it by name and by version, promote failing
//! captures into a new version (a second promotion adds nothing), review
//! candidates with `--out` and push them back, run the regression suite over
//! the promoted dataset (a candidate model and production's recorded
//! answers); broken inputs give clear errors and exit 2.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use cluster::{Proc, count_messages, wait_until};
use common::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use vigil_protocol::{Capture, ChatMessage, TokenUsage, subjects};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer, answer};

/// A nats-server, its URL and a temporary directory.
async fn setup() -> (NatsServer, String, tempfile::TempDir) {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let url = nats.url();
    (nats, url, tempfile::tempdir().unwrap())
}

/// JetStream on `url`, with vigil's streams made.
async fn jetstream(url: &str) -> async_nats::jetstream::Context {
    let client = async_nats::connect(url).await.unwrap();
    vigil_nats::topology::ensure_topology(&client, &Default::default(), "default")
        .await
        .unwrap()
}

/// The `capture_id`s of a JSONL file's items, in order.
fn capture_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let item: serde_json::Value = serde_json::from_str(l).unwrap();
            item["capture_id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// `vigil dataset ARGS --nats URL`, to completion.
fn dataset(nats: &str, args: &[&str]) -> Output {
    run(vigil().arg("dataset").args(args).args(["--nats", nats]))
}

/// `vigil dataset promote --app support --where FILTER --to TO EXTRA.. --nats URL`.
fn promote(nats: &str, filter: &str, to: &str, extra: &[&str]) -> Output {
    let mut args = vec!["promote", "--app", "support", "--where", filter, "--to", to];
    args.extend_from_slice(extra);
    dataset(nats, &args)
}

/// `vigil dataset push FILE --name NAME`, expected to succeed.
fn push(nats: &str, file: &Path, name: &str) -> Output {
    let o = dataset(nats, &["push", file.to_str().unwrap(), "--name", name]);
    assert_eq!(o.status.code(), Some(0));
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Every version of every dataset, as `vigil dataset list --json` prints them.
fn versions(nats: &str) -> Vec<serde_json::Value> {
    let o = dataset(nats, &["list", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn versions_of(nats: &str, name: &str) -> Vec<serde_json::Value> {
    versions(nats)
        .into_iter()
        .filter(|v| v["name"] == name)
        .collect()
}

/// A suite over the named dataset (`version` line optional) against the stub.
fn named_suite(
    dir: &Path,
    file: &str,
    (suite, target): (&str, &str),
    dataset: &str,
    (prompt, reference): (&str, &str),
    base_url: &str,
) -> std::path::PathBuf {
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            r#"name: {suite}
dataset: {{ {dataset}, id_field: id }}
prompt: {{ user: "{prompt}" }}
targets:
  - {{ name: {target}, kind: chat, base_url: "{base_url}", model: stub-model, params: {{ temperature: 0, max_tokens: 16 }}, timeout_s: 5, max_retries: 1 }}
scorers:
  - {{ name: exact, kind: exact_match, reference: "{reference}" }}
cache: {{ enabled: false }}
"#
        ),
    )
    .unwrap();
    path
}

/// Publishes a capture of app `support` the way a service does (docs/protocol.md, "Captures").
async fn publish_capture(js: &async_nats::jetstream::Context, c: &Capture) {
    js.publish_with_headers(
        subjects::capture(&c.app),
        vigil_nats::headers::capture_headers(&c.capture_id),
        vigil_protocol::encode(c).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

fn capture(id: &str, prompt: &str, model: &str, feedback: Option<&str>) -> Capture {
    Capture {
        capture_id: id.into(),
        request_id: format!("req-{id}"),
        app: "support".into(),
        model: Some(model.into()),
        endpoint: "chat".into(),
        path: "/v1/chat/completions".into(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: prompt.into(),
        }],
        prompt: prompt.into(),
        request: "{}".into(),
        response_text: Some(answer(prompt)),
        usage: Some(TokenUsage {
            input: 8,
            output: 1,
        }),
        status: 200,
        latency_ms: 12.0,
        time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        metadata: feedback
            .map(|f| BTreeMap::from([("feedback".to_string(), f.to_string())]))
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn run_ok(suite: &Path, nats: &str, out: &Path, extra: &[&str]) -> serde_json::Value {
    let o = run_suite(suite, nats, out, extra);
    assert_eq!(o.status.code(), Some(0), "the run passes");
    read_summary(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_run_by_name_promote_and_run_the_regression_suite() {
    let (_nats, url, dir) = setup().await;
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let d = dir.path();

    // -- push, twice: one version.
    let v1_file = d.join("arith.jsonl");
    write_arith_dataset(&v1_file, 20, 0);
    let v1 = sha256_of(&v1_file);
    let o = push(&url, &v1_file, "arith");
    assert!(
        stdout(&o).contains(&format!("pushed arith@{v1} (20 items")),
        "the version is the content's SHA-256"
    );
    let o = push(&url, &v1_file, "arith");
    assert!(
        stdout(&o).contains("already stored"),
        "same content, one version"
    );
    let vs = versions_of(&url, "arith");
    assert_eq!(vs.len(), 1);
    assert_eq!(
        (vs[0]["items"].as_u64(), vs[0]["latest"].as_bool()),
        (Some(20), Some(true))
    );
    assert_eq!(vs[0]["source"], "arith.jsonl");
    assert_eq!(vs[0]["provenance"], "pushed from arith.jsonl");

    // -- a second version; pull gives back the bytes of each.
    let v2_file = d.join("arith2.jsonl");
    write_arith_dataset(&v2_file, 25, 0);
    let v2 = sha256_of(&v2_file);
    push(&url, &v2_file, "arith");
    let pulled = d.join("pulled.jsonl");
    let o = dataset(
        &url,
        &[
            "pull",
            &format!("arith@{v1}"),
            "--out",
            pulled.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        std::fs::read(&pulled).unwrap(),
        std::fs::read(&v1_file).unwrap()
    );
    let o = dataset(&url, &["pull", &format!("arith@{}", &v1[..12])]);
    assert_eq!(
        o.stdout,
        std::fs::read(&v1_file).unwrap(),
        "a version's first 12 digits name it"
    );
    let o = dataset(&url, &["pull", "arith"]);
    assert_eq!(
        o.stdout,
        std::fs::read(&v2_file).unwrap(),
        "pull without a version: the latest"
    );
    let o = dataset(&url, &["show", &format!("arith@{v1}"), "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(shown["version"]["items"], 20);
    assert_eq!(shown["version"]["latest"], false);
    assert_eq!(shown["versions"].as_array().unwrap().len(), 2);

    // -- a suite names the dataset: latest, then a pinned version; the
    // manifest records the name and the version read.
    let latest = named_suite(
        d,
        "latest.yaml",
        ("arith", "stub"),
        "name: arith",
        ("{{ question }}", "{{ answer }}"),
        &stub.base_url(),
    );
    let s = run_ok(
        &latest,
        &url,
        &d.join("s1.json"),
        &["--run-id", "arith-latest"],
    );
    assert_eq!(s["items_total"], 25);
    assert_eq!(s["scores"]["exact"]["pass_rate"], 1.0);
    assert_eq!(s["manifest"]["dataset_name"], "arith");
    assert_eq!(s["manifest"]["dataset_sha256"], v2);
    let pinned = named_suite(
        d,
        "pinned.yaml",
        ("arith", "stub"),
        &format!("name: arith, version: {v1}"),
        ("{{ question }}", "{{ answer }}"),
        &stub.base_url(),
    );
    let s = run_ok(&pinned, &url, &d.join("s2.json"), &[]);
    assert_eq!(s["items_total"], 20);
    assert_eq!(s["manifest"]["dataset_sha256"], v1);

    // -- the latest moves on; the run started on `latest` is run again under
    // its id: it reads the version it started with (same dataset: its
    // stored summary), not the new latest (which would refuse the resume).
    let v3_file = d.join("arith3.jsonl");
    write_arith_dataset(&v3_file, 30, 0);
    push(&url, &v3_file, "arith");
    let o = run_suite(
        &latest,
        &url,
        &d.join("s3.json"),
        &["--run-id", "arith-latest"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "resumed on the version it started with"
    );
    assert!(
        stderr(&o).contains("already finished"),
        "the recorded run, not a new one"
    );
    assert_eq!(
        read_summary(&d.join("s3.json"))["manifest"]["dataset_sha256"],
        v2
    );

    // -- production traffic: captures of app `support` (one prompt twice).
    let js = jetstream(&url).await;
    let caps = [
        capture("c1", "What is 1 + 1?", "llama-3.1-8b", Some("down")),
        capture("c2", "What is 2 + 2?", "llama-3.1-8b", None),
        Capture {
            response_text: Some("7".into()),
            ..capture("c3", "What is 3 + 3?", "qwen-2.5-7b", Some("down"))
        },
        capture("c4", "What is 4 + 4?", "llama-3.1-8b", None),
        capture("c5", "What is 1 + 1?", "llama-3.1-8b", Some("down")),
        capture("c6", "What is 6 + 6?", "qwen-2.5-7b", None),
    ];
    for c in &caps {
        publish_capture(&js, c).await;
    }

    // -- online scores: a run whose items are the captures (item id ==
    // capture id) with a summary on `vigil.runs.<monitor>.support`, as a
    // monitor writes them; c2 and c4 fail `exact`.
    let mon_file = d.join("mon.jsonl");
    let lines: Vec<String> = caps
        .iter()
        .map(|c| {
            let wrong = c.capture_id == "c2" || c.capture_id == "c4";
            let reference = if wrong {
                "no".to_string()
            } else {
                answer(&c.prompt)
            };
            serde_json::json!({"id": c.capture_id, "question": c.prompt, "answer": reference})
                .to_string()
        })
        .collect();
    std::fs::write(&mon_file, lines.join("\n") + "\n").unwrap();
    push(&url, &mon_file, "mon-input");
    let mon = named_suite(
        d,
        "mon.yaml",
        ("mon", "support"),
        "name: mon-input",
        ("{{ question }}", "{{ answer }}"),
        &stub.base_url(),
    );
    let o = run_suite(&mon, &url, &d.join("mon.json"), &["--run-id", "mon-run-1"]);
    assert_eq!(o.status.code(), Some(0));
    let rate = read_summary(&d.join("mon.json"))["scores"]["exact"]["pass_rate"]
        .as_f64()
        .unwrap();
    assert!((rate - 4.0 / 6.0).abs() < 1e-9, "c2 and c4 fail: {rate}");

    // -- promote what failed online or got a thumbs-down: c1, c2, c3, c4, c5
    // minus c5 (same prompt as c1).
    let filter = r#"exact.passed == false or metadata.feedback == "down""#;
    let o = promote(&url, filter, "support-regressions", &["--since", "1h"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("read 6 capture(s)"), "{}", stderr(&o));
    assert!(stdout(&o).contains("4 added"), "{}", stdout(&o));
    assert!(stdout(&o).contains("1 duplicate(s)"), "{}", stdout(&o));
    let vs = versions_of(&url, "support-regressions");
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0]["items"], 4);
    assert!(vs[0]["provenance"].as_str().unwrap().contains("mon-run-1"));
    let items: Vec<serde_json::Value> = stdout(&dataset(&url, &["pull", "support-regressions"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = items
        .iter()
        .map(|i| i["capture_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c1", "c2", "c3", "c4"]);
    let c2 = &items[1];
    assert_eq!(c2["id"], "c2");
    assert_eq!(c2["app"], "support");
    assert_eq!(c2["model"], "llama-3.1-8b");
    assert_eq!(c2["monitor_run_id"], "mon-run-1");
    assert_eq!(c2["capture_time"], caps[1].time.as_str());
    assert_eq!(c2["scores"]["exact"]["passed"], false);
    assert_eq!(c2["response"], "4");

    // -- promote again: nothing new, no new version.
    let o = promote(&url, filter, "support-regressions", &["--since", "1h"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("nothing new"), "{}", stdout(&o));
    assert_eq!(versions_of(&url, "support-regressions").len(), 1);

    // -- by model, for review: only what is not in the dataset yet (c6);
    // the reviewed file goes back with `push --append`.
    let cand = d.join("candidates.jsonl");
    let o = promote(
        &url,
        r#"model == "qwen-2.5-7b""#,
        "support-regressions",
        &["--out", cand.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(capture_ids(&cand), ["c6"], "c3 is already in the dataset");
    assert_eq!(
        versions_of(&url, "support-regressions").len(),
        1,
        "--out pushes nothing"
    );
    let o = dataset(
        &url,
        &[
            "push",
            cand.to_str().unwrap(),
            "--name",
            "support-regressions",
            "--append",
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    let vs = versions_of(&url, "support-regressions");
    assert_eq!(vs.len(), 2);
    let latest_v = vs.iter().find(|v| v["latest"] == true).unwrap();
    assert_eq!(latest_v["items"], 5);
    assert_eq!(
        latest_v["parent"],
        vs.iter().find(|v| v["latest"] == false).unwrap()["version"]
    );

    // -- the regression suite over the promoted dataset, by name: the
    // production answers are the reference.
    let regress = named_suite(
        d,
        "regress.yaml",
        ("support-regress", "stub"),
        "name: support-regressions, version: latest",
        ("{{ prompt }}", "{{ response }}"),
        &stub.base_url(),
    );
    // Production's own answers, scored the same way: a `recorded` target.
    edit_suite(
        &regress,
        "scorers:",
        "  - { name: prod, kind: recorded, output_field: response }\nscorers:",
    );
    let o = run_suite(&regress, &url, &d.join("regress.json"), &[]);
    let runs: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(d.join("regress.json")).unwrap()).unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(runs.len(), 2);
    for s in &runs {
        assert_eq!(s["items_total"], 5);
        assert_eq!(s["manifest"]["dataset_name"], "support-regressions");
        assert_eq!(s["manifest"]["dataset_sha256"], latest_v["version"]);
    }
    let (candidate, prod) = (&runs[0], &runs[1]);
    assert_eq!(prod["manifest"]["endpoint_kind"], "recorded");
    assert_eq!(prod["scores"]["exact"]["pass_rate"], 1.0);
    // c3's production answer was wrong ("7"): the candidate disagrees there.
    assert_eq!(candidate["scores"]["exact"]["pass_rate"], 0.8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_inputs_give_clear_errors() {
    let (_nats, url, dir) = setup().await;
    let d = dir.path();

    let bad = d.join("bad.jsonl");
    std::fs::write(&bad, "{\"q\": 1}\n\n{\"q\": 2,}\n").unwrap();
    let o = dataset(&url, &["push", bad.to_str().unwrap(), "--name", "broken"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bad.jsonl:3: invalid JSON"),
        "{}",
        stderr(&o)
    );
    assert!(versions_of(&url, "broken").is_empty(), "nothing stored");

    let o = promote(&url, r#"judge.value < 0.5 and model = "x""#, "r", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--where: column 29: `=` is not an operator; use `==`"),
        "{}",
        stderr(&o)
    );
    let o = promote(&url, "judge.value < 0.5", "r", &[]);
    assert_eq!(o.status.code(), Some(2), "a scorer no monitor run has");
    assert!(stderr(&o).contains("judge"), "{}", stderr(&o));

    let o = dataset(&url, &["show", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no dataset `nope`"), "{}", stderr(&o));
    let good = d.join("good.jsonl");
    std::fs::write(&good, "{\"q\": 1}\n").unwrap();
    push(&url, &good, "good");
    let missing = "0".repeat(64);
    let o = dataset(&url, &["pull", &format!("good@{missing}")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("dataset `good` has no version `{missing}`")),
        "{}",
        stderr(&o)
    );
    let o = dataset(&url, &["pull", "good@00000000"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("dataset `good` has no version `00000000`"),
        "{}",
        stderr(&o)
    );
    let o = dataset(&url, &["show", "good@v1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("version `v1` is neither `latest` nor a SHA-256"),
        "{}",
        stderr(&o)
    );

    // A suite naming an unknown dataset fails before anything runs.
    let suite = named_suite(
        d,
        "s.yaml",
        ("s", "t"),
        "name: nope",
        ("{{ q }}", "x"),
        "http://127.0.0.1:9/v1",
    );
    let o = run_suite(&suite, &url, &d.join("s.json"), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("s.yaml: dataset: no dataset `nope` in NATS"),
        "{}",
        stderr(&o)
    );
    let o = run(vigil().args(["validate", suite.to_str().unwrap(), "--nats", &url]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no dataset `nope`"), "{}", stderr(&o));
    // Both a path and a name: the suite is wrong.
    let both = named_suite(
        d,
        "both.yaml",
        ("s", "t"),
        "name: good, path: x.jsonl",
        ("{{ q }}", "x"),
        "http://127.0.0.1:9/v1",
    );
    let o = run(vigil().args(["validate", both.to_str().unwrap(), "--nats", &url]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("set either `path` (a file) or `name`"),
        "{}",
        stderr(&o)
    );
}

/// A child process killed (and reaped) when the test ends, passed or not.
struct KillOnDrop(Proc);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill9();
    }
}

/// Online scores from a real `vigil monitor` (with a `vigil worker`):
/// the captures whose answers are not JSON are promoted, with the window's
/// run id as their `monitor_run_id`, filtered by score and model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_scored_by_a_real_monitor_are_promoted_by_their_scores() {
    let (_nats, url, dir) = setup().await;
    let d = dir.path();
    let js = jetstream(&url).await;
    // Eight captures; 1, 4 and 6 answered with something that is not JSON.
    let mut bad = Vec::new();
    for i in 0..8u32 {
        let model = if i % 2 == 0 {
            "llama-3.1-8b"
        } else {
            "qwen-2.5-7b"
        };
        let mut c = capture(
            &format!("m{i}"),
            &format!("Give me JSON number {i}"),
            model,
            None,
        );
        let broken = [1, 4, 6].contains(&i);
        c.response_text = Some(if broken {
            bad.push(c.capture_id.clone());
            format!("sure! {{id: {i}")
        } else {
            format!("{{\"id\": {i}}}")
        });
        publish_capture(&js, &c).await;
    }
    let monitor = d.join("monitor.yaml");
    std::fs::write(
        &monitor,
        "name: support-json\napp: support\nbatch: 8\nbatch_wait_ms: 200\n\
         window: {max_items: 8, duration_s: 1000000000}\n\
         scorers:\n  - {name: json, kind: json_valid}\n",
    )
    .unwrap();
    let _worker = KillOnDrop(Proc::spawn(
        &["worker", "--nats", &url, "--concurrency", "4"],
        &[],
        &d.join("worker.log"),
    ));
    let _monitor = KillOnDrop(Proc::spawn(
        &["monitor", monitor.to_str().unwrap(), "--nats", &url],
        &[],
        &d.join("monitor.log"),
    ));
    let summaries = subjects::run_summary("support-json", "support");
    wait_until(
        "the monitor's window summary",
        Duration::from_secs(120),
        || async { count_messages(&js, subjects::STREAM_RUNS, &summaries).await > 0 },
    )
    .await;
    let o = run(vigil().args([
        "runs",
        "list",
        "--suite",
        "support-json",
        "--json",
        "--nats",
        &url,
    ]));
    let window: serde_json::Value =
        serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    let window_id = window["run_id"].as_str().unwrap().to_string();
    assert_eq!(window["items_total"], 8);

    let o = promote(&url, "json.passed == false", "bad-json", &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("read 8 capture(s)"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("8 with online scores from 1 monitor run(s)"),
        "{}",
        stderr(&o)
    );
    let items: Vec<serde_json::Value> = stdout(&dataset(&url, &["pull", "bad-json"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<String> = items
        .iter()
        .map(|i| i["capture_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, bad);
    for item in &items {
        assert_eq!(item["monitor_run_id"], window_id.as_str());
        assert_eq!(item["scores"]["json"]["passed"], false);
    }

    // Scores and model together: only the llama captures that failed (4, 6).
    let cand = d.join("llama.jsonl");
    let o = promote(
        &url,
        r#"not json.passed and model == "llama-3.1-8b""#,
        "bad-json-llama",
        &["--monitor", "support-json", "--out", cand.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(capture_ids(&cand), ["m4", "m6"]);
}
