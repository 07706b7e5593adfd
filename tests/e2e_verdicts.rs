//! Verdicts you can trust, end to end against a real nats-server, `vigil
//! worker` processes and the stub backend: failed items count against the
//! run (pass rates over every item, the error budget), a candidate that
//! fails items is flagged against its baseline, a judge that is down gives
//! scorer errors instead of a regression, and comparisons pair items by id.

use crate::common;
use crate::common::cluster;

use cluster::*;
use common::*;
use futures::StreamExt;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

const ITEMS: usize = 100;
/// In the prompt of 30 of the 100 items; a stub told to fail on it answers
/// those items 500, every attempt.
const MARK: &str = "#hard";

/// 100 arithmetic items `q0..q99` (every reference right); items with
/// `i % 10 < 3` carry [`MARK`] in their question, which the stub's
/// arithmetic ignores.
fn write_marked_dataset(path: &Path, order: impl Iterator<Item = usize>) {
    let mut text = String::new();
    for i in order {
        let (a, b) = (i % 97 + 1, i % 13 + 2);
        let mark = if i % 10 < 3 { MARK } else { "" };
        text.push_str(
            &serde_json::json!({
                "id": format!("q{i}"),
                "question": format!("What is {a} + {b}? {mark}"),
                "answer": (a + b).to_string(),
                "category": if i % 2 == 0 { "even" } else { "odd" },
            })
            .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn failing_stub() -> StubConfig {
    StubConfig {
        fail_marker: Some(MARK.into()),
        ..Default::default()
    }
}

/// `vigil run SUITE --nats URL --workers 0 --out OUT` to its end: the exit
/// code, the terminal output and the summary.
fn run_suite(suite: &Path, nats: &NatsServer, out: &Path) -> (Option<i32>, String, Value) {
    let o = run(coordinate(suite, &nats.url(), 0, Some(out)).arg("--no-progress"));
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        read_summary(out),
    )
}

/// The gate outcome named `metric` (and `max_regression` when asked).
fn gate<'a>(s: &'a Value, metric: &str, regression: bool) -> &'a Value {
    s["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metric"] == metric && g["max_regression"].is_null() != regression)
        .unwrap_or_else(|| panic!("no gate {metric}: {s}"))
}

/// The run-level (not per-slice) paired test of `scorer`.
fn test_of<'a>(c: &'a Value, scorer: &str) -> &'a Value {
    c["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scorer"] == scorer && t["slice"].is_null())
        .unwrap_or_else(|| panic!("no test of {scorer}: {c}"))
}

/// Worker processes allowed to call every URL in `allow`.
fn workers(dir: &Path, nats: &NatsServer, allow: &[String]) -> Vec<Proc> {
    let mut extra: Vec<&str> = Vec::new();
    for url in &allow[1..] {
        extra.extend(["--allow", url.as_str()]);
    }
    (0..2)
        .map(|i| {
            worker(
                dir,
                &format!("worker-{i}"),
                &nats.url(),
                &allow[0],
                16,
                &extra,
                &[],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failing_30_percent_of_the_items_fails_the_run_and_its_gate() {
    fails_the_run_and_its_gate(failing_stub(), "server_error").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_timing_out_on_30_percent_of_the_items_fails_the_run_and_its_gate() {
    let hanging = StubConfig {
        hang_marker: Some(MARK.into()),
        ..Default::default()
    };
    fails_the_run_and_its_gate(hanging, "timeout").await;
}

/// A run against a backend that fails 30 of the 100 items with `kind`.
async fn fails_the_run_and_its_gate(stub: StubConfig, kind: &str) {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(stub).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_marked_dataset(&dir.path().join("dataset.jsonl"), 0..ITEMS);
    let suite = write_suite(
        dir.path(),
        &stub.base_url(),
        &format!("{NO_CACHE}gates:\n  - {{ metric: exact.pass_rate, min: 0.9 }}\n"),
    );
    edit_suite(&suite, "timeout_s: 5", "timeout_s: 1");
    let _workers = workers(dir.path(), &nats, &[stub.base_url()]);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut alerts = client.subscribe("vigil.alerts.>").await.unwrap();
    client.flush().await.unwrap();

    let (code, table, s) = run_suite(&suite, &nats, &dir.path().join("s.json"));
    // The 70 survivors all pass; counted over every item the pass rate is 0.7.
    assert_eq!(code, Some(1), "the run fails: {s}");
    assert_eq!(
        (s["items_scored"].as_u64(), s["items_failed"].as_u64()),
        (Some(70), Some(30))
    );
    assert_eq!(s["errors"], serde_json::json!({ kind: 30 }));
    let exact = &s["scores"]["exact"];
    assert_eq!(exact["pass_rate"], 0.7);
    assert_eq!(exact["n"], ITEMS as u64);
    assert_eq!(exact["pass_rate_scored"], 1.0);
    assert_eq!(exact["n_scored"], 70);
    assert!(exact["ci_high"].as_f64().unwrap() < 0.9, "{exact}");
    let pass_rate = gate(&s, "exact.pass_rate", false);
    assert_eq!(
        (&pass_rate["passed"], &pass_rate["value"]),
        (&Value::Bool(false), &Value::from(0.7))
    );
    let budget = gate(&s, "error_budget", false);
    assert_eq!(budget["passed"], false);
    assert_eq!(
        budget["detail"],
        "30 of 100 items failed; the error budget allows 2 (0.02)"
    );
    assert_eq!(s["passed"], false);
    // The terminal says so too.
    assert!(table.contains("error_budget"), "{table}");
    assert!(table.contains("verdict: FAIL"), "{table}");

    // One alert per failed gate, the error budget's included.
    let mut gates = Vec::new();
    while gates.len() < 2 {
        let alert = tokio::time::timeout(Duration::from_secs(10), alerts.next())
            .await
            .expect("an alert")
            .unwrap();
        let alert = rmpv::decode::read_value(&mut &alert.payload[..]).unwrap();
        let map = alert.as_map().unwrap();
        let field = |k: &str| {
            map.iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v.as_str().unwrap_or_default().to_string())
                .unwrap_or_default()
        };
        assert_eq!(field("run_id"), s["run_id"].as_str().unwrap());
        gates.push(field("gate"));
    }
    gates.sort();
    assert_eq!(gates, ["error_budget", "exact.pass_rate"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_failing_30_percent_of_the_items_is_flagged_against_its_baseline() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let good = StubServer::start(StubConfig::default()).await.unwrap();
    let bad = StubServer::start(failing_stub()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_marked_dataset(&dir.path().join("dataset.jsonl"), 0..ITEMS);
    // The error budget is lifted: the regression gate alone must decide.
    let suite = write_suite(
        dir.path(),
        &good.base_url(),
        &format!(
            "{NO_CACHE}error_budget: 1.0\ngates:\n  - {{ metric: exact.pass_rate, max_regression: 0.05 }}\n"
        ),
    );
    let _workers = workers(dir.path(), &nats, &[good.base_url(), bad.base_url()]);

    let (code, _, base) = run_suite(&suite, &nats, &dir.path().join("s1.json"));
    assert_eq!(code, Some(0), "{base}");
    let detail = gate(&base, "exact.pass_rate", true)["detail"].clone();
    assert!(
        detail.as_str().unwrap().starts_with("no baseline yet"),
        "{detail}"
    );

    // The same suite and target, now served by a backend that fails 30%.
    edit_suite(&suite, &good.base_url(), &bad.base_url());
    let (code, table, cand) = run_suite(&suite, &nats, &dir.path().join("s2.json"));
    assert_eq!(code, Some(1), "the regression gate fails: {cand}");
    assert_eq!(cand["items_failed"], 30);
    let c = &cand["comparison"];
    assert_eq!(c["baseline_run_id"], base["run_id"]);
    assert_eq!(c["baseline_source"], "latest_passing");
    assert_eq!(
        (c["paired_items"].as_u64(), c["paired_by"].as_str()),
        (Some(100), Some("id"))
    );
    let t = test_of(c, "exact");
    assert_eq!(t["n"], 100, "failed items are paired, as fails: {t}");
    assert_eq!(
        (t["pass_to_fail"].as_u64(), t["fail_to_pass"].as_u64()),
        (Some(30), Some(0))
    );
    assert!((t["diff"].as_f64().unwrap() + 0.3).abs() < 1e-9, "{t}");
    assert_eq!(t["significant"], true);
    // The failed items are in their slices' tests too (20 even, 10 odd).
    for (slice, flips) in [("category=even", 20), ("category=odd", 10)] {
        let t = c["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["scorer"] == "exact" && t["slice"] == slice)
            .unwrap();
        assert_eq!(
            (t["n"].as_u64(), t["pass_to_fail"].as_u64()),
            (Some(50), Some(flips)),
            "{t}"
        );
    }
    let regression = gate(&cand, "exact.pass_rate", true);
    assert_eq!(regression["passed"], false);
    assert!(
        regression["detail"]
            .as_str()
            .unwrap()
            .starts_with("significant regression"),
        "{regression}"
    );
    // The verdict is on the terminal: the baseline, how it was chosen, the
    // test with its interval and adjusted p, the flipped items by id, the
    // manifest difference.
    let base_id = base["run_id"].as_str().unwrap();
    assert!(
        table.contains(&format!("baseline  {base_id} (latest_passing)")),
        "{table}"
    );
    assert!(
        table.contains("note: 100 items paired by id (0 added, 0 removed)"),
        "{table}"
    );
    assert!(
        table.contains("exact pass->fail: q0, q1, q2, q10"),
        "{table}"
    );
    assert!(table.contains("P_HOLM"), "{table}");
    assert!(table.contains("manifests DIFFER"), "{table}");

    // `vigil compare` flags it the same way.
    let cand_id = cand["run_id"].as_str().unwrap();
    let o = run(vigil().args(["compare", base_id, cand_id, "--json", "--nats", &nats.url()]));
    assert_eq!(o.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = test_of(&json, "exact");
    assert_eq!(
        (t["pass_to_fail"].as_u64(), t["significant"].as_bool()),
        (Some(30), Some(true))
    );
    assert!((t["diff"].as_f64().unwrap() + 0.3).abs() < 1e-9, "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_that_is_down_gives_scorer_errors_not_a_regression() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let model = StubServer::start(StubConfig::default()).await.unwrap();
    let judge_up = StubServer::start(StubConfig::default()).await.unwrap();
    // The judge's rubric quotes the question: this judge fails on 30 items.
    let judge_down = StubServer::start(failing_stub()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_marked_dataset(&dir.path().join("dataset.jsonl"), 0..ITEMS);
    let suite = write_suite(
        dir.path(),
        &model.base_url(),
        &format!(
            "{NO_CACHE}gates:\n  - {{ metric: exact.pass_rate, max_regression: 0.05 }}\n  - {{ metric: judge.pass_rate, max_regression: 0.05 }}\n"
        ),
    );
    edit_suite(
        &suite,
        "scorers:\n",
        &format!(
            "scorers:\n  - name: judge\n    kind: llm_judge\n    judge: {{ base_url: \"{}\", model: judge-model, max_retries: 0 }}\n    reference: \"{{{{ answer }}}}\"\n",
            judge_up.base_url()
        ),
    );
    let _workers = workers(
        dir.path(),
        &nats,
        &[model.base_url(), judge_up.base_url(), judge_down.base_url()],
    );
    let (code, _, base) = run_suite(&suite, &nats, &dir.path().join("s1.json"));
    assert_eq!(code, Some(0), "{base}");
    assert_eq!(base["scores"]["judge"]["pass_rate"], 1.0);

    edit_suite(&suite, &judge_up.base_url(), &judge_down.base_url());
    let (code, table, s) = run_suite(&suite, &nats, &dir.path().join("s2.json"));
    // 30 items could not be judged: scorer errors, spent from the error
    // budget (which fails the run), not zeros that read as a regression.
    assert_eq!(code, Some(1), "{s}");
    assert_eq!(s["errors"], serde_json::json!({ "scorer": 30 }));
    assert_eq!(s["scores"]["judge"]["n_scored"], 70);
    assert_eq!(s["scores"]["judge"]["pass_rate_scored"], 1.0);
    assert_eq!(gate(&s, "error_budget", false)["passed"], false);
    for scorer in ["exact", "judge"] {
        let t = test_of(&s["comparison"], scorer);
        assert_eq!(t["n"], 70, "unjudged items are left out of the pairs: {t}");
        assert_eq!(
            (t["pass_to_fail"].as_u64(), t["significant"].as_bool()),
            (Some(0), Some(false))
        );
        let g = &s["gates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metric"] == format!("{scorer}.pass_rate").as_str())
            .unwrap();
        assert_eq!(g["passed"], true, "no regression of {scorer}: {g}");
    }
    assert!(table.contains("errors      scorer 30"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reordered_dataset_compares_item_for_item_by_id() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dataset.jsonl");
    // Every 3rd reference wrong: passes and fails that a pairing by
    // position would mix up.
    write_arith_dataset(&data, ITEMS, 3);
    let suite = write_suite(dir.path(), &stub.base_url(), NO_CACHE);
    let _workers = workers(dir.path(), &nats, &[stub.base_url()]);
    let (code, _, first) = run_suite(&suite, &nats, &dir.path().join("s1.json"));
    assert_eq!(code, Some(0), "{first}");

    // The same items, in reverse order.
    let text = std::fs::read_to_string(&data).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.reverse();
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let (code, _, second) = run_suite(&suite, &nats, &dir.path().join("s2.json"));
    assert_eq!(code, Some(0), "{second}");
    let c = &second["comparison"];
    assert_eq!(c["baseline_run_id"], first["run_id"]);
    assert_eq!(
        (c["paired_items"].as_u64(), c["paired_by"].as_str()),
        (Some(100), Some("id"))
    );
    assert_eq!(
        (c["items_added"].as_u64(), c["items_removed"].as_u64()),
        (Some(0), Some(0))
    );
    for t in c["tests"].as_array().unwrap() {
        assert_eq!(
            (t["pass_to_fail"].as_u64(), t["fail_to_pass"].as_u64()),
            (Some(0), Some(0)),
            "{t}"
        );
    }

    // A real flip, still reversed: q4's reference becomes wrong; one new
    // item replaces q99.
    let text = std::fs::read_to_string(&data)
        .unwrap()
        .replace(
            r#""id": "q4", "question": "What is 5 + 6?", "answer": "11""#,
            r#""id": "q4", "question": "What is 5 + 6?", "answer": "12""#,
        )
        .replace(r#""id": "q99""#, r#""id": "new-1""#);
    assert!(text.contains(r#""id": "q4", "question": "What is 5 + 6?", "answer": "12""#));
    assert!(text.contains(r#""id": "new-1""#));
    std::fs::write(&data, text).unwrap();
    let (code, table, third) = run_suite(&suite, &nats, &dir.path().join("s3.json"));
    assert_eq!(code, Some(0), "{third}");
    let c = &third["comparison"];
    assert_eq!(c["baseline_run_id"], second["run_id"]);
    assert_eq!(
        (
            c["paired_items"].as_u64(),
            c["items_added"].as_u64(),
            c["items_removed"].as_u64()
        ),
        (Some(99), Some(1), Some(1))
    );
    let t = test_of(c, "exact");
    assert_eq!(
        (t["pass_to_fail"].as_u64(), t["fail_to_pass"].as_u64()),
        (Some(1), Some(0)),
        "{t}"
    );
    assert_eq!(t["flipped_to_fail"], serde_json::json!(["q4"]));
    assert!(
        table.contains("note: 99 items paired by id (1 added, 1 removed)"),
        "{table}"
    );
}
