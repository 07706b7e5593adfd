//! `vigil shadow` as a new user runs it (issue 18 item 3): captures of three
//! apps published with the documented Capture message to a real
//! nats-server, two real `vigil worker` processes, the stub as the candidate.
//! A clearly worse candidate is called worse before the budget (and the
//! captures past the stop are never sent to it), a clearly better one is
//! called better, an equal one is not called at all.

use crate::common;
use common::{run, spawn_worker, vigil};

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use vigil_nats::headers;
use vigil_nats::topology::{TopologyConfig, ensure_capture_stream};
use vigil_protocol::{Capture, ChatMessage, codec, subjects};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

/// What the candidate answers instead of the number when told to.
const BAD: &str = "I cannot help with that.";

/// Production's answer to capture `i` whose right answer is `sum`: [`BAD`]
/// where `bad(i)`, else the number.
fn refuses(bad: impl Fn(usize) -> bool) -> impl Fn(usize, usize) -> String {
    move |i, sum| {
        if bad(i) {
            BAD.to_string()
        } else {
            sum.to_string()
        }
    }
}

/// Publishes `n` captures of `app`: arithmetic questions answered in
/// production by `production(i, right answer)`, whose prompt makes the stub
/// (the candidate) answer [`BAD`] where `candidate_bad(i)` (and the number
/// elsewhere).
async fn publish_captures(
    js: &async_nats::jetstream::Context,
    app: &str,
    n: usize,
    production: impl Fn(usize, usize) -> String,
    candidate_bad: impl Fn(usize) -> bool,
) {
    for i in 0..n {
        let (a, b) = (i % 50 + 1, i % 7 + 2);
        let mut prompt = format!("What is {a} + {b}?");
        if candidate_bad(i) {
            prompt.push_str(&format!(" [[reply: {BAD}]]"));
        }
        let response = production(i, a + b);
        let capture = Capture {
            capture_id: format!("{app}-{i:04}"),
            request_id: format!("req-{app}-{i}"),
            app: app.into(),
            model: Some("prod-model".into()),
            endpoint: "chat".into(),
            path: "/v1/chat/completions".into(),
            messages: vec![
                ChatMessage {
                    role: "system".into(),
                    content: "Answer with the number only.".into(),
                },
                ChatMessage {
                    role: "user".into(),
                    content: prompt.clone(),
                },
            ],
            prompt,
            response_text: Some(response),
            status: 200,
            latency_ms: 12.0,
            time: "2026-11-30T12:00:00Z".into(),
            ..Default::default()
        };
        js.publish_with_headers(
            subjects::capture(app),
            headers::capture_headers(&capture.capture_id),
            codec::encode(&capture).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

/// A shadow suite: the candidate and two reference-free scorers, no dataset
/// and no prompt (the captures provide both).
fn write_shadow_suite(dir: &Path, base_url: &str) -> PathBuf {
    let path = dir.join("shadow.yaml");
    std::fs::write(
        &path,
        format!(
            r#"name: shadow-arith
targets:
  - {{ name: candidate, base_url: "{base_url}", model: stub-model, params: {{ temperature: 0 }}, timeout_s: 5, max_retries: 1 }}
scorers:
  - {{ name: numeric, kind: regex, pattern: "^-?[0-9]+$" }}
  - {{ name: complies, kind: refusal, expect: comply }}
"#
        ),
    )
    .unwrap();
    path
}

/// `vigil shadow` to its end: (exit code, the verdict JSON).
fn shadow(
    suite: &Path,
    nats: &str,
    app: &str,
    budget: u64,
    out: &Path,
) -> (Option<i32>, serde_json::Value) {
    let output = run(vigil().args([
        "shadow",
        "--app",
        app,
        "--suite",
        suite.to_str().unwrap(),
        "--candidate",
        "candidate",
        "--budget",
        &budget.to_string(),
        "--wave",
        "20",
        "--nats",
        nats,
        "--out",
        out.to_str().unwrap(),
        "--report",
        out.with_extension("report").to_str().unwrap(),
    ]));
    let text = std::fs::read_to_string(out).expect("--out written");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("shadow of app"),
        "the verdict is printed: {stdout}"
    );
    (output.status.code(), json)
}

/// A nats-server with `VIGIL_CAPTURE`, and the stub.
async fn start() -> (NatsServer, StubServer, async_nats::jetstream::Context) {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    ensure_capture_stream(&js, &TopologyConfig::default())
        .await
        .unwrap();
    (nats, stub, js)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worse_better_and_equal_candidates_are_called_right() {
    let (nats, stub, js) = start().await;
    // Production right 90%, the candidate 40%.
    publish_captures(&js, "worse", 200, refuses(|i| i % 10 == 9), |i| i % 10 < 6).await;
    // Production right 40%, the candidate 90%.
    publish_captures(&js, "better", 200, refuses(|i| i % 10 < 6), |i| i % 10 == 9).await;
    // Both right 75%, wrong on different items: as many wins as losses.
    publish_captures(&js, "equal", 200, refuses(|i| i % 4 == 0), |i| i % 4 == 2).await;

    let dir = tempfile::tempdir().unwrap();
    let suite = write_shadow_suite(dir.path(), &stub.base_url());
    let mut workers: Vec<_> = (0..2)
        .map(|_| spawn_worker(&nats.url(), &stub.base_url(), 8))
        .collect();
    let requests = || stub.stats().requests.load(Relaxed);

    // Clearly worse: called worse, exit 1, well before the budget; the
    // stub saw exactly the dispatched captures, not the budget.
    let before = requests();
    let (code, out) = shadow(
        &suite,
        &nats.url(),
        "worse",
        200,
        &dir.path().join("worse.json"),
    );
    let v = &out["verdict"];
    assert_eq!(code, Some(1), "a worse candidate exits 1: {v}");
    assert_eq!(v["decision"], "worse", "{v}");
    let used = v["items_used"].as_u64().unwrap();
    let dispatched = v["items_dispatched"].as_u64().unwrap();
    assert!(used < 200 && dispatched < 200, "called early: {v}");
    assert!(used <= dispatched, "{v}");
    assert_eq!(
        requests() - before,
        dispatched,
        "captures past the stop were not sent to the candidate"
    );
    assert!(v["ci_high"].as_f64().unwrap() <= 0.5, "{v}");
    assert_eq!(v["compare"], "win_rate");
    assert_eq!(out["candidate"]["items_total"].as_u64(), Some(dispatched));
    assert_eq!(out["production"]["items_total"].as_u64(), Some(dispatched));
    assert_eq!(out["candidate"]["shadow"]["decision"], "worse");
    let md = std::fs::read_to_string(dir.path().join("worse.report/summary.md")).unwrap();
    assert!(
        md.contains("candidate is WORSE"),
        "the report carries the verdict: {md}"
    );
    // Production's pass rate over the dispatched captures is the captured one (90%).
    let prod_rate = out["production"]["scores"]["numeric"]["pass_rate"]
        .as_f64()
        .unwrap();
    assert!(
        (prod_rate - 0.9).abs() <= 0.05,
        "production numeric pass rate {prod_rate}"
    );

    // Clearly better: called better, exit 0.
    let (code, out) = shadow(
        &suite,
        &nats.url(),
        "better",
        200,
        &dir.path().join("better.json"),
    );
    let v = &out["verdict"];
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["decision"], "better", "{v}");
    assert!(v["items_used"].as_u64().unwrap() < 200, "{v}");
    assert!(v["ci_low"].as_f64().unwrap() >= 0.5, "{v}");

    // Equal: nothing called within the budget, exit 0, every capture used.
    let (code, out) = shadow(
        &suite,
        &nats.url(),
        "equal",
        100,
        &dir.path().join("equal.json"),
    );
    let v = &out["verdict"];
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["decision"], "no_difference", "{v}");
    assert_eq!(v["items_used"].as_u64(), Some(100), "{v}");
    assert_eq!(v["wins"], v["losses"], "{v}");
    let (low, high) = (
        v["ci_low"].as_f64().unwrap(),
        v["ci_high"].as_f64().unwrap(),
    );
    assert!(low < 0.5 && 0.5 < high, "{v}");
    // Each wave is a run of its own, but a wave takes no baseline: the
    // wave before it is other captures, not a baseline to compare with.
    let waves: Vec<&str> = ["production_runs", "candidate_runs"]
        .iter()
        .flat_map(|side| v[side].as_array().unwrap())
        .map(|id| id.as_str().unwrap())
        .collect();
    assert_eq!(waves.len(), 10, "{v}");
    for id in waves {
        let wave = vigil_coordinator::history::find(
            &js,
            id,
            vigil_coordinator::history::LIST_RETRY_WINDOW,
        )
        .await
        .unwrap();
        assert!(
            wave.comparison.is_none(),
            "wave {id} compared with {:?}",
            wave.comparison.map(|c| c.baseline_run_id)
        );
    }

    // An app without captures (a typo) is an input error, not "no difference".
    let output = run(vigil().args([
        "shadow",
        "--app",
        "nobody",
        "--suite",
        suite.to_str().unwrap(),
        "--nats",
        &nats.url(),
    ]));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no replayable captures of app `nobody`"),
        "{stderr}"
    );

    for w in &workers {
        common::sigterm(w);
    }
    for w in &mut workers {
        let _ = w.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairwise_judge_compares_the_candidate_with_production_position_swapped() {
    // The stub is the candidate and the judge: it prefers the response
    // that matches the question's arithmetic.
    let (nats, stub, js) = start().await;
    // Production is off by one on 6 items in 10; the candidate is always right.
    let wrong = |i: usize| i % 10 < 6;
    let production = move |i, sum: usize| if wrong(i) { sum + 1 } else { sum }.to_string();
    publish_captures(&js, "judged", 200, production, |_| false).await;

    let dir = tempfile::tempdir().unwrap();
    let base_url = stub.base_url();
    let suite = dir.path().join("judged.yaml");
    std::fs::write(
        &suite,
        format!(
            r#"name: shadow-judged
targets:
  - {{ name: candidate, base_url: "{base_url}", model: stub-model, params: {{ temperature: 0 }}, timeout_s: 5, max_retries: 1 }}
scorers:
  - name: judge
    kind: llm_judge
    mode: pairwise
    judge: {{ base_url: "{base_url}", model: judge, params: {{ temperature: 0 }}, timeout_s: 5, max_retries: 1 }}
    reference: "{{{{ response }}}}"
"#
        ),
    )
    .unwrap();
    let mut worker = spawn_worker(&nats.url(), &base_url, 8);
    let before = stub.stats().requests.load(Relaxed);
    let (code, out) = shadow(
        &suite,
        &nats.url(),
        "judged",
        200,
        &dir.path().join("judged.json"),
    );
    let v = &out["verdict"];
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(
        v["compare"], "judge",
        "a pairwise judge is the default comparison: {v}"
    );
    assert_eq!(v["decision"], "better", "{v}");
    let dispatched = v["items_dispatched"].as_u64().unwrap() as usize;
    assert!(dispatched < 200, "{v}");
    // Calls: one per candidate answer, two per judged pair (positions
    // swapped) where the answers differ, one where they are the same text;
    // production is not judged against itself.
    let differing = (0..dispatched).filter(|&i| wrong(i)).count();
    let expected = dispatched + 2 * differing + (dispatched - differing);
    assert_eq!(
        (stub.stats().requests.load(Relaxed) - before) as usize,
        expected,
        "candidate calls plus position-swapped judge calls"
    );
    // The pairs entered the rule in capture order: the candidate won where
    // production was wrong, tied (the same answer) elsewhere.
    let used = v["items_used"].as_u64().unwrap() as usize;
    let wins = (0..used).filter(|&i| wrong(i)).count() as u64;
    assert_eq!(v["wins"].as_u64(), Some(wins), "{v}");
    assert_eq!(v["losses"].as_u64(), Some(0), "{v}");
    assert_eq!(v["ties"].as_u64(), Some(used as u64 - wins), "{v}");
    common::sigterm(&worker);
    let _ = worker.wait();
}

#[test]
fn a_suite_without_the_candidate_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_shadow_suite(dir.path(), "http://127.0.0.1:9/v1");
    let output = run(vigil().args([
        "shadow",
        "--app",
        "x",
        "--suite",
        suite.to_str().unwrap(),
        "--candidate",
        "nope",
        "--nats",
        "nats://127.0.0.1:9",
    ]));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no target `nope`"), "{stderr}");
}
