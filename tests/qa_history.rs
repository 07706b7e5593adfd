//! Continuous QA end to end: history, manifests, baselines, paired
//! comparison, regression gates, alerts, the response cache, watch and export.
//! Real nats-server and real `vigil` processes; the stub is the model server.

use crate::common;

use common::*;
use futures::StreamExt;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

const GATES: &str = "gates:\n  - metric: exact.pass_rate\n    min: 0.5\n  - metric: exact.pass_rate\n    max_regression: 0.02\n";

fn stub_requests(stub: &StubServer) -> u64 {
    stub.stats().requests.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_baseline_cache_regression_gate_and_alert() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let url = nats.url();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 10);
    let suite = write_suite(dir.path(), &stub.base_url(), GATES);

    // Run 1: no baseline yet; every item calls the backend (and, with
    // --cache, stores its answer).
    let out1 = dir.path().join("s1.json");
    assert_eq!(
        run_suite(&suite, &url, &out1, &["--cache"]).status.code(),
        Some(0)
    );
    let s1 = read_summary(&out1);
    let run1 = s1["run_id"].as_str().unwrap().to_string();
    assert_eq!(stub_requests(&stub), n as u64);
    let m = &s1["manifest"];
    assert_eq!(m["dataset_items"], n);
    assert_eq!(m["dataset_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(m["model"], "stub-model");
    assert_eq!(m["response_models"][0], "stub-model");
    assert!(
        m["scorers"]["exact"]
            .as_str()
            .unwrap()
            .contains("exact_match")
    );
    assert!(m["nats_server_version"].as_str().unwrap().starts_with('2'));
    assert!(s1["comparison"].is_null(), "the first run has no baseline");
    assert_eq!(s1["slices"]["category"]["even"]["exact"]["n"], n / 2);

    // Run 2: the same suite again with --cache — answered from the cache,
    // compared with run 1, and the table says it was cached.
    let out2 = dir.path().join("s2.json");
    let o2 = run_suite(&suite, &url, &out2, &["--cache"]);
    assert_eq!(o2.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o2.stdout).contains(&format!(
            "response cache: {n} of {n} items answered from the cache"
        )),
        "the table says the run was cached"
    );
    let s2 = read_summary(&out2);
    assert_eq!(
        stub_requests(&stub),
        n as u64,
        "a repeated run makes no backend call"
    );
    assert_eq!(s2["items_cached"], n);
    for scorer in ["exact", "num"] {
        let (a, b) = (&s1["scores"][scorer], &s2["scores"][scorer]);
        for field in ["n", "passed", "pass_rate", "ci_low", "ci_high"] {
            assert_eq!(
                a[field], b[field],
                "a cached run gives the same {scorer}.{field}"
            );
        }
        // Means are floating-point sums in arrival order: equal to the last bits or so.
        let (ma, mb) = (a["mean"].as_f64().unwrap(), b["mean"].as_f64().unwrap());
        assert!((ma - mb).abs() < 1e-9, "{ma} vs {mb}");
    }
    let c = &s2["comparison"];
    assert_eq!(c["baseline_run_id"], run1.as_str());
    assert_eq!(c["baseline_source"], "latest_passing");
    assert_eq!(c["manifest_diffs"].as_array().unwrap().len(), 0, "{c}");
    let exact = c["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scorer"] == "exact" && t["slice"].is_null())
        .unwrap();
    assert_eq!(exact["diff"], 0.0);
    assert_eq!(exact["significant"], false);
    assert_eq!(exact["n"], n);
    assert!(
        c["note"]
            .as_str()
            .is_some_and(|n| n.contains("the candidate is mostly cached")),
        "{c}"
    );

    // --no-cache wins over --cache: every item goes to the backend again.
    let out3 = dir.path().join("s3.json");
    assert_eq!(
        run_suite(&suite, &url, &out3, &["--cache", "--no-cache"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(stub_requests(&stub), 2 * n as u64);
    assert_eq!(read_summary(&out3)["items_cached"], 0);

    // History: list, show, pin.
    let list = run(vigil().args(["runs", "list", "--suite", "arith", "--nats", &url]));
    assert_eq!(list.status.code(), Some(0));
    let text = String::from_utf8_lossy(&list.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains("arith")).count(),
        3,
        "{text}"
    );
    assert!(text.contains(&run1));
    let show = run(vigil().args(["runs", "show", &run1, "--nats", &url]));
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["run_id"], run1.as_str());
    assert_eq!(
        run(vigil().args(["runs", "show", "no-such-run", "--nats", &url]))
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(vigil().args(["runs", "pin", &run1, "--nats", &url]))
            .status
            .code(),
        Some(0)
    );

    // Watch the next run live.
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["watch", "--nats", &url, "--summaries", "1", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(watch.stderr.take().unwrap());
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut line)
        .await
        .unwrap();
    assert!(line.contains("watching"), "{line}");

    // Run 4: a regression. The references change (a third of them are now
    // wrong), the model's answers do not: the exact pass rate drops from 0.9.
    let client = async_nats::connect(&url).await.unwrap();
    let mut alerts = client.subscribe("vigil.alerts.>").await.unwrap();
    client.flush().await.unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), n, 3);
    let out4 = dir.path().join("s4.json");
    assert_eq!(
        run_suite(&suite, &url, &out4, &[]).status.code(),
        Some(1),
        "the regression gate fails"
    );
    let s4 = read_summary(&out4);
    let c = &s4["comparison"];
    assert_eq!(
        c["baseline_run_id"],
        run1.as_str(),
        "the pinned baseline wins"
    );
    assert_eq!(c["baseline_source"], "pinned");
    let diffs: Vec<&str> = c["manifest_diffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(diffs.contains(&"dataset_sha256"), "{diffs:?}");
    let exact = c["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scorer"] == "exact" && t["slice"].is_null())
        .unwrap();
    assert!(exact["diff"].as_f64().unwrap() < -0.1, "{exact}");
    assert_eq!(exact["significant"], true);
    // Wrong before: i % 10 == 0; wrong now: i % 3 == 0.
    let to_fail = (0..n).filter(|i| i % 3 == 0 && i % 10 != 0).count();
    let to_pass = (0..n).filter(|i| i % 10 == 0 && i % 3 != 0).count();
    assert_eq!(exact["pass_to_fail"].as_u64().unwrap(), to_fail as u64);
    assert_eq!(exact["fail_to_pass"].as_u64().unwrap(), to_pass as u64);
    let flipped = exact["flipped_to_fail"].as_array().unwrap();
    assert!(
        !flipped.is_empty() && flipped[0].as_str().unwrap().starts_with('q'),
        "ids, not indices: {flipped:?}"
    );
    let gate = &s4["gates"][1];
    assert_eq!(gate["passed"], false);
    assert!(
        gate["detail"]
            .as_str()
            .unwrap()
            .contains("significant regression")
    );
    assert_eq!(
        s4["gates"][0]["passed"], true,
        "the absolute gate still holds"
    );

    let alert = tokio::time::timeout(Duration::from_secs(10), alerts.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alert.subject.as_str(), "vigil.alerts.arith");
    let alert: rmpv::Value = rmp_serde_decode(&alert.payload);
    let field = |k: &str| {
        alert
            .as_map()
            .unwrap()
            .iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(field("run_id").as_str(), s4["run_id"].as_str());
    assert_eq!(
        field("gate").as_str(),
        Some("exact.pass_rate max_regression")
    );
    assert!(
        field("values")
            .as_map()
            .unwrap()
            .iter()
            .any(|(k, _)| k.as_str() == Some("p_adjusted"))
    );

    // The watcher saw progress and the summary, then stopped.
    let output = tokio::time::timeout(Duration::from_secs(20), watch.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let lines = String::from_utf8_lossy(&output.stdout);
    assert!(
        lines.lines().any(|l| l.contains("\"event\":\"progress\"")),
        "{lines}"
    );
    assert!(
        lines
            .lines()
            .any(|l| l.contains("\"event\":\"summary\"")
                && l.contains(s4["run_id"].as_str().unwrap()))
    );

    // compare A B says what differs and what flipped.
    let cmp = run(vigil().args([
        "compare",
        &run1,
        s4["run_id"].as_str().unwrap(),
        "--nats",
        &url,
    ]));
    assert_eq!(cmp.status.code(), Some(0));
    let text = String::from_utf8_lossy(&cmp.stdout);
    assert!(
        text.contains("manifests DIFFER") && text.contains("dataset_sha256"),
        "{text}"
    );
    // Flipped items by id (the stored scores carry them), as after a run.
    assert!(text.contains("exact pass->fail: q3, q6, q9, q12"), "{text}");
    assert!(!text.contains('#'), "no `#index` left: {text}");

    // export: one row per item.
    let csv_path = dir.path().join("items.csv");
    let exp = run(vigil()
        .args(["export", &run1, "--format", "csv", "--nats", &url, "--out"])
        .arg(&csv_path));
    assert_eq!(exp.status.code(), Some(0));
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert_eq!(csv.lines().count(), n + 1);
    assert!(csv.lines().next().unwrap().contains("exact.passed"));
    let jsonl = run(vigil().args(["export", &run1, "--format", "jsonl", "--nats", &url]));
    assert_eq!(String::from_utf8_lossy(&jsonl.stdout).lines().count(), n);
}

fn rmp_serde_decode(bytes: &[u8]) -> rmpv::Value {
    rmpv::decode::read_value(&mut &bytes[..]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_history_is_read_without_nats() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 40, 0);
    let suite = write_suite(dir.path(), &stub.base_url(), "");
    let state = dir.path().join(".vigil");
    let run_id = run_embedded(&suite, &state);
    let list = run(vigil()
        .args(["runs", "list", "--json", "--state-dir"])
        .arg(&state));
    assert_eq!(list.status.code(), Some(0));
    let text = String::from_utf8_lossy(&list.stdout);
    assert_eq!(text.lines().count(), 1);
    let s: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(s["run_id"], run_id.as_str());
}
