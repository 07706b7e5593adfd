//! The scorers that do IO, end to end: `vigil run` against a real
//! nats-server, the stub as the model, the judge and the embedder, and a
//! small Python program as an external scorer.

use crate::common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use vigil_protocol::{ItemResult, JobResult, subjects};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

const ITEMS: usize = 20;
/// Every 5th reference of the arithmetic dataset is wrong: 4 of 20.
const WRONG_EVERY: usize = 5;

/// The item results of one run, by item id, read back from the results stream.
async fn item_results(nats_url: &str, run_id: &str) -> HashMap<String, ItemResult> {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(subjects::STREAM_RESULTS).await.unwrap();
    let messages = stream.info().await.unwrap().state.last_sequence;
    let mut items = HashMap::new();
    for seq in 1..=messages {
        let Ok(raw) = stream.get_raw_message(seq).await else {
            continue;
        };
        let result: JobResult = vigil_protocol::decode(&raw.payload).unwrap();
        if result.run_id == run_id {
            for item in result.items {
                items.insert(item.id.clone(), item);
            }
        }
    }
    items
}

fn score<'a>(item: &'a ItemResult, scorer: &str) -> &'a vigil_protocol::Score {
    item.scores
        .iter()
        .find(|s| s.scorer == scorer)
        .unwrap_or_else(|| panic!("no score `{scorer}` in {item:?}"))
}

/// A suite over the arithmetic dataset with these scorers (YAML list items).
fn arith_suite(dir: &Path, base_url: &str, scorers: &str) -> PathBuf {
    let path = dir.join("suite.yaml");
    std::fs::write(
        &path,
        format!(
            r#"name: judged
dataset:
  path: dataset.jsonl
  id_field: id
prompt:
  user: "{{{{ question }}}}"
targets:
  - name: stub
    base_url: {base_url}
    model: stub-model
    params: {{ temperature: 0, max_tokens: 16 }}
    timeout_s: 5
    max_retries: 1
scorers:
  - name: exact
    kind: exact_match
    reference: "{{{{ answer }}}}"
{scorers}
shard_size: 8
"#
        ),
    )
    .unwrap();
    path
}

fn run_suite(suite: &Path, nats: &NatsServer, out: &Path, extra: &[&str]) -> Value {
    run_expecting(suite, nats, out, extra, 0)
}

fn run_expecting(suite: &Path, nats: &NatsServer, out: &Path, extra: &[&str], code: i32) -> Value {
    let mut cmd = coordinate(suite, &nats.url(), 1, Some(out));
    cmd.arg("--no-progress").args(extra);
    let output = run(&mut cmd);
    assert_eq!(output.status.code(), Some(code), "vigil run's exit code");
    read_summary(out)
}

fn close(v: &Value, expected: f64) -> bool {
    (v.as_f64().unwrap() - expected).abs() < 1e-9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_grades_are_cached_and_a_changed_rubric_misses() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), ITEMS, WRONG_EVERY);
    let judge = |rubric: &str| {
        format!(
            r#"  - name: judge
    kind: llm_judge
    judge: {{ base_url: "{}", model: judge-model, params: {{ temperature: 0 }} }}
    reference: "{{{{ answer }}}}"
    scale: [1, 5]
    pass_mark: 4
{rubric}"#,
            stub.base_url()
        )
    };
    let suite = arith_suite(dir.path(), &stub.base_url(), &judge(""));
    let out = dir.path().join("s1.json");

    // First run: one model call and one judge call per item.
    let s1 = run_suite(&suite, &nats, &out, &["--cache"]);
    assert_eq!(s1["items_scored"], ITEMS as u64);
    // The stub judge gives 5 where output and reference agree, 1 where the
    // reference is wrong: 16 × 1.0 and 4 × 0.0 on the [0, 1] scale.
    let wrong = ITEMS.div_ceil(WRONG_EVERY) as f64;
    let expected = 1.0 - wrong / ITEMS as f64;
    assert!(close(&s1["scores"]["judge"]["mean"], expected));
    assert!(close(&s1["scores"]["judge"]["pass_rate"], expected));
    assert!(close(&s1["scores"]["exact"]["pass_rate"], expected));
    assert_eq!(stub.stats().requests.load(Relaxed), 2 * ITEMS as u64);
    let items = item_results(&nats.url(), s1["run_id"].as_str().unwrap()).await;
    let right = score(&items["q1"], "judge");
    assert!(
        right.detail.starts_with("judge: 5 on 1–5: "),
        "{}",
        right.detail
    );
    assert!(right.passed);
    let wrong_one = score(&items["q0"], "judge");
    assert_eq!((wrong_one.value, wrong_one.passed), (0.0, false));

    // Second run: model answers and judge grades all come from the cache.
    let s2 = run_suite(&suite, &nats, &dir.path().join("s2.json"), &["--cache"]);
    assert!(close(&s2["scores"]["judge"]["mean"], expected));
    assert_eq!(
        stub.stats().requests.load(Relaxed),
        2 * ITEMS as u64,
        "no call repeated"
    );

    // A changed rubric (reading an item field) misses for the judge only.
    let rubric = r#"    rubric: |
      Question (from the dataset): {{ question }}
      Grade on a scale of 1 to 5.
      <reference>{{ reference }}</reference>
      <response>{{ output }}</response>
      Answer with "Score: N"."#;
    let suite = arith_suite(dir.path(), &stub.base_url(), &judge(rubric));
    let s3 = run_suite(&suite, &nats, &dir.path().join("s3.json"), &["--cache"]);
    assert!(close(&s3["scores"]["judge"]["mean"], expected));
    assert_eq!(stub.stats().requests.load(Relaxed), 3 * ITEMS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_judge_gives_scorer_errors_with_a_reason_and_the_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), ITEMS, 0);
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!(
        "http://127.0.0.1:{}/v1",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let scorers = format!(
        r#"  - name: judge
    kind: llm_judge
    judge: {{ base_url: "{dead}", model: judge-model, max_retries: 0, timeout_s: 2 }}
  - name: garbled
    kind: llm_judge
    judge: stub
    rubric: "Say something. [[reply: I like it a lot.]] {{{{ output }}}}""#
    );
    let suite = arith_suite(dir.path(), &stub.base_url(), &scorers);
    // A judge that cannot grade gives no score, not a 0 that reads as a
    // model failure: each item fails with a `scorer` error naming the
    // scorers and their reasons, and the run (nothing scored, every item
    // spent from the error budget) fails.
    let summary = run_expecting(&suite, &nats, &dir.path().join("s.json"), &[], 1);
    assert_eq!(summary["items_scored"], 0);
    assert_eq!(summary["items_failed"], ITEMS as u64);
    assert_eq!(summary["errors"], serde_json::json!({ "scorer": ITEMS }));
    for name in ["judge", "garbled"] {
        assert_eq!(summary["scores"][name]["n_scored"], 0, "{name}");
    }
    let items = item_results(&nats.url(), summary["run_id"].as_str().unwrap()).await;
    assert_eq!(items.len(), ITEMS);
    for item in items.values() {
        assert!(item.scores.is_empty(), "{item:?}");
        let error = item.error.as_ref().expect("a scorer error");
        assert_eq!(error.kind.as_str(), "scorer");
        assert!(
            error
                .message
                .starts_with("scorer `judge`: judge call failed: connection"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains(
                "; scorer `garbled`: judge answer unparseable (no score found): `I like it a lot.`"
            ),
            "{}",
            error.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairwise_judging_swaps_positions_and_reports_position_bias() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), ITEMS, WRONG_EVERY);
    let scorers = r#"  - name: versus
    kind: llm_judge
    mode: pairwise
    judge: stub
    reference: "{{ answer }}"
  - name: biased
    kind: llm_judge
    mode: pairwise
    judge: stub
    reference: "{{ answer }}"
    rubric: "A: {{ a }} B: {{ b }} [[reply: The first one. [[A]]]]""#;
    let suite = arith_suite(dir.path(), &stub.base_url(), scorers);
    let summary = run_suite(&suite, &nats, &dir.path().join("s.json"), &[]);
    // Right references tie with the output (0.5); against a wrong reference
    // the correct output wins in both orders (1.0).
    let wrong = ITEMS.div_ceil(WRONG_EVERY) as f64;
    let mean = (0.5 * (ITEMS as f64 - wrong) + wrong) / ITEMS as f64;
    assert!(close(&summary["scores"]["versus"]["mean"], mean));
    // Always "A": the output wins as A and loses as B, every time.
    assert_eq!(summary["scores"]["biased"]["mean"], 0.5);
    // Per item and scorer two judge calls, or one where output and
    // reference are the same text (the swap changes nothing); plus the
    // model call.
    let calls = ITEMS as f64 + 2.0 * ((ITEMS as f64 - wrong) + 2.0 * wrong);
    assert_eq!(stub.stats().requests.load(Relaxed), calls as u64);
    let items = item_results(&nats.url(), summary["run_id"].as_str().unwrap()).await;
    assert_eq!(
        score(&items["q0"], "versus").detail,
        "output preferred (consistent in both orders)"
    );
    assert_eq!(
        score(&items["q1"], "versus").detail,
        "tie (consistent in both orders)"
    );
    for item in items.values() {
        let biased = score(item, "biased");
        assert!(
            biased
                .detail
                .starts_with("inconsistent: output as A → A, output as B → A"),
            "{}",
            biased.detail
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_similarity_scores_near_and_far_texts() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let rows = [
        ("same", "the cat sat on the mat", "the cat sat on the mat"),
        (
            "reordered",
            "on the mat the cat sat",
            "the cat sat on the mat",
        ),
        (
            "far",
            "quarterly revenue grew strongly",
            "the cat sat on the mat",
        ),
    ];
    let mut data = String::new();
    for (id, reply, reference) in rows {
        data.push_str(
            &serde_json::json!({"id": id, "question": format!("[[reply: {reply}]]"), "answer": reference})
                .to_string(),
        );
        data.push('\n');
    }
    std::fs::write(dir.path().join("dataset.jsonl"), data).unwrap();
    let scorers = format!(
        r#"  - name: sim
    kind: embedding_similarity
    embedder: {{ base_url: "{}", model: stub-embed }}
    reference: "{{{{ answer }}}}"
    threshold: 0.9"#,
        stub.base_url()
    );
    let suite = arith_suite(dir.path(), &stub.base_url(), &scorers);
    let summary = run_suite(&suite, &nats, &dir.path().join("s.json"), &["--cache"]);
    assert!(close(&summary["scores"]["sim"]["pass_rate"], 2.0 / 3.0));
    // One request per item: output and reference embedded together.
    assert_eq!(stub.stats().embeddings.load(Relaxed), 3);
    let items = item_results(&nats.url(), summary["run_id"].as_str().unwrap()).await;
    for id in ["same", "reordered"] {
        let s = score(&items[id], "sim");
        assert!((s.value - 1.0).abs() < 1e-9, "{id}: {s:?}");
        assert!(s.detail.starts_with("cosine 1.0000"), "{}", s.detail);
    }
    let far = score(&items["far"], "sim");
    assert!(far.value < 0.5 && !far.passed, "{far:?}");

    // A second run embeds nothing again: every vector is cached.
    run_suite(&suite, &nats, &dir.path().join("s2.json"), &["--cache"]);
    assert_eq!(stub.stats().embeddings.load(Relaxed), 3);
}

const SCORER_PY: &str = r#"
import json, sys, time
for line in sys.stdin:
    req = json.loads(line)
    out = req["output"]
    if out == "hang":
        time.sleep(3600)
    if out == "crash":
        print("scorer: giving up on " + req["id"], file=sys.stderr, flush=True)
        sys.exit(7)
    words = len(out.split())
    print(json.dumps({"value": min(words, 4) / 4, "detail": "%d words, tag %s" % (words, req["tags"].get("kind"))}), flush=True)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_scorer_answers_survives_hangs_and_crashes_and_needs_an_allow() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let script = dir.path().join("scorer.py");
    std::fs::write(&script, SCORER_PY).unwrap();
    let rows = [
        ("two", "hello there"),
        ("hang", "hang"),
        ("four", "one two three four"),
        ("crash", "crash"),
        ("one", "hi"),
    ];
    let mut data = String::new();
    for (id, reply) in rows {
        data.push_str(
            &serde_json::json!({"id": id, "question": format!("[[reply: {reply}]]"), "answer": reply, "kind": "k"})
                .to_string(),
        );
        data.push('\n');
    }
    std::fs::write(dir.path().join("dataset.jsonl"), data).unwrap();
    let scorers = format!(
        r#"  - name: words
    kind: external
    command: [python3, "{}"]
    timeout_s: 5"#,
        script.display()
    );
    let suite = arith_suite(dir.path(), &stub.base_url(), &scorers);
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace("  id_field: id\n", "  id_field: id\n  tags: [kind]\n");
    std::fs::write(&suite, text).unwrap();

    // Without an allow the worker runs nothing and says how to allow it
    // (exit 1: no item was scored).
    let s0 = run_expecting(&suite, &nats, &dir.path().join("s0.json"), &[], 1);
    assert_eq!(s0["items_failed"], rows.len() as u64);
    let items = item_results(&nats.url(), s0["run_id"].as_str().unwrap()).await;
    let error = items["two"].error.as_ref().unwrap();
    assert_eq!(error.kind.as_str(), "scorer");
    assert!(
        error
            .message
            .contains("is not allowed by this worker (start it with --allow-scorer-command"),
        "{}",
        error.message
    );

    let allow = format!("python3 {}", script.display());
    // The hung and the crashed scorer calls are scorer errors, not scores
    // of 0: 2 of 5 items failed, beyond the error budget (exit 1).
    let s1 = run_expecting(
        &suite,
        &nats,
        &dir.path().join("s1.json"),
        &["--allow-scorer-command", &allow],
        1,
    );
    assert_eq!(s1["items_scored"], rows.len() as u64 - 2);
    assert_eq!(s1["errors"], serde_json::json!({ "scorer": 2 }));
    let items = item_results(&nats.url(), s1["run_id"].as_str().unwrap()).await;
    let words = |id: &str| score(&items[id], "words").clone();
    assert_eq!(words("two").value, 0.5);
    assert_eq!(words("two").detail, "2 words, tag k");
    assert!(words("two").passed);
    assert_eq!(words("four").value, 1.0);
    assert_eq!(words("one").value, 0.25);
    assert!(!words("one").passed);
    let error = |id: &str| {
        let e = items[id]
            .error
            .clone()
            .unwrap_or_else(|| panic!("{id} failed"));
        assert_eq!(e.kind.as_str(), "scorer");
        assert!(items[id].scores.is_empty());
        e.message
    };
    let hang = error("hang");
    assert!(
        hang.starts_with("scorer `words`: no answer within 5000 ms; the process was killed"),
        "{hang}"
    );
    let crash = error("crash");
    assert!(crash.contains("exit status: 7"), "{crash}");
    assert!(crash.contains("scorer: giving up on crash"), "{crash}");
}

#[test]
fn validate_names_the_place_of_a_bad_judge_or_rubric() {
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 3, 0);
    let check = |scorers: &str| {
        let suite = arith_suite(dir.path(), "http://127.0.0.1:9/v1", scorers);
        let out = run(vigil().args(["validate", suite.to_str().unwrap()]));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = check("  - { name: j, kind: llm_judge, judge: nobody }");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("scorers[1].judge: names no target `nobody` (targets: stub)"),
        "{err}"
    );
    let (code, err) =
        check("  - { name: j, kind: llm_judge, judge: { base_url: \"ftp://x\", model: m } }");
    assert_eq!(code, Some(2));
    assert!(err.contains("scorers[1].judge.base_url"), "{err}");
    let (code, err) =
        check("  - { name: j, kind: llm_judge, judge: stub, scale: [1, 5], pass_mark: 7 }");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("scorers[1].pass_mark: must be on the scale 1–5, got 7"),
        "{err}"
    );
    let (code, err) =
        check("  - { name: j, kind: llm_judge, judge: stub, rubric: \"{{ nope }} {{ output }}\" }");
    assert_eq!(code, Some(2));
    assert!(err.contains("scorers[1].rubric"), "{err}");
    assert!(err.contains("the item has no field `nope`"), "{err}");
    let (code, err) = check("  - { name: e, kind: external, command: \"python3 'x\" }");
    assert_eq!(code, Some(2));
    assert!(err.contains("scorers[1].command"), "{err}");
    let (code, err) = check("  - { name: e, kind: embedding_similarity, embedder: stub }");
    assert_eq!(code, Some(2));
    assert!(err.contains("scorers[1].reference"), "{err}");
    let (code, _) = check(
        "  - { name: j, kind: llm_judge, judge: stub, mode: pairwise, reference: \"{{ answer }}\" }\n  - { name: e, kind: external, command: [python3, x.py], timeout_s: 2 }",
    );
    assert_eq!(code, Some(0));
}
