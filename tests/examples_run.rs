//! Every suite in `examples/` validates as shipped and runs end to end against
//! the stub backend (embedded nats-server, in-process worker), with the
//! numbers its simulated answers imply.

use crate::common;

use common::*;
use std::path::{Path, PathBuf};
use vigil_testkit::stub::{StubConfig, StubServer};

/// The example suites (base_url `http://127.0.0.1:8089/v1`, as in the
/// README) copied with their data into `dir`, pointed at `base_url`.
fn copy_example(name: &str, dir: &Path, base_url: &str) -> PathBuf {
    // Suites only (top level): monitor files live in examples/monitors/.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for entry in std::fs::read_dir(examples.join("data")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join("data").join(entry.file_name())).unwrap();
    }
    let suite = dir.join(format!("{name}.yaml"));
    std::fs::copy(examples.join(format!("{name}.yaml")), &suite).unwrap();
    edit_suite(&suite, "http://127.0.0.1:8089/v1", base_url);
    suite
}

/// Runs an example against a fresh stub; returns the exit code and summary.
async fn run_example(name: &str) -> (Option<i32>, serde_json::Value) {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let suite = copy_example(name, dir.path(), &stub.base_url());
    let out = dir.path().join("summary.json");
    let status = run(vigil()
        .current_dir(dir.path())
        .args(["run", suite.to_str().unwrap(), "--no-progress"])
        .arg("--out")
        .arg(&out))
    .status;
    (status.code(), read_summary(&out))
}

fn close(a: &serde_json::Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-9
}

#[test]
fn every_example_validates_as_shipped() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str());
        if !matches!(ext, Some("yaml" | "toml")) {
            continue;
        }
        let out = run(vigil().args(["validate", path.to_str().unwrap()]));
        // The local-model quickstart needs the model file from setup.sh.
        if out.status.code() != Some(0)
            && String::from_utf8_lossy(&out.stderr).contains("model")
            && path.file_stem().is_some_and(|s| s == "quickstart")
        {
            continue;
        }
        assert_eq!(out.status.code(), Some(0), "{}", path.display());
        n += 1;
    }
    assert!(n >= 5, "found {n} example suites");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_example_classifies_and_judges() {
    let (code, s) = run_example("support").await;
    assert_eq!(code, Some(0), "{s}");
    assert_eq!(s["items_scored"], 20);
    let intent = &s["scores"]["intent"]["classification"];
    // Three of twenty simulated intents are wrong.
    assert!(close(&intent["accuracy"], 0.85), "{intent}");
    assert_eq!(intent["confusion"].as_array().unwrap().len(), 5);
    // Three replies are unhelpful: the judge grades them low.
    let helpful = &s["scores"]["helpful"];
    assert_eq!(helpful["n"], 20);
    assert!(close(&helpful["pass_rate"], 17.0 / 20.0), "{helpful}");
    assert!(close(&s["scores"]["leaks"]["pass_rate"], 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summarise_example_scores_rouge_bleu_and_a_judge() {
    let (code, s) = run_example("summarise").await;
    assert_eq!(code, Some(0), "{s}");
    assert_eq!(s["items_scored"], 8);
    let rouge = s["scores"]["rouge"]["mean"].as_f64().unwrap();
    assert!((0.3..0.7).contains(&rouge), "{rouge}");
    // The one unrelated summary fails ROUGE-L >= 0.3.
    assert!(close(&s["scores"]["rouge"]["pass_rate"], 7.0 / 8.0));
    assert!(
        s["scores"]["bleu"]["corpus_bleu"]["score"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(s["scores"]["faithful"]["n"], 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codegen_example_runs_the_programs() {
    let (code, s) = run_example("codegen").await;
    assert_eq!(code, Some(0), "{s}");
    // Four of the six simulated solutions are right.
    assert!(close(&s["scores"]["tests"]["mean"], 4.0 / 6.0), "{s}");
}
