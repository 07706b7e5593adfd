//! Targets of kind `recorded`: outputs that already exist (a dataset column,
//! a captured production response) scored through the same worker, scorers,
//! aggregation and gates as a model's, with no backend at all. Real
//! processes: `vigil run` in embedded mode (its own nats-server and worker).

mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Ten items: seven valid JSON answers, two invalid, one `null` (a response
/// without text).
fn dataset(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("answers.jsonl")).unwrap();
    for i in 0..10 {
        let answer = match i {
            3 | 7 => serde_json::json!("not json {"),
            9 => serde_json::Value::Null,
            _ => serde_json::json!(format!("{{\"n\": {i}}}")),
        };
        let line = serde_json::json!({ "id": format!("c{i}"), "question": format!("q{i}"), "answer": answer });
        writeln!(f, "{line}").unwrap();
    }
}

fn suite(dir: &Path, target: &str) -> PathBuf {
    let path = dir.join("suite.yaml");
    std::fs::write(
        &path,
        format!(
            r#"name: recorded
dataset: {{ path: answers.jsonl, id_field: id }}
targets:
  - {target}
scorers:
  - {{ name: valid, kind: json_schema }}
error_budget: 0.2
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn recorded_outputs_are_scored_without_any_backend() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let suite = suite(
        dir.path(),
        "{ name: prod, kind: recorded, output_field: answer }",
    );
    let validate = run(vigil().arg("validate").arg(&suite));
    assert_eq!(
        validate.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );
    run_embedded(&suite, &dir.path().join("state"));
    let s = read_summary(&dir.path().join("s.json"));
    assert_eq!(s["items_total"], 10, "{s}");
    // Failures count: the `null` answer is a failed item, not a skipped one.
    let valid = &s["scores"]["valid"];
    assert!(
        (valid["pass_rate"].as_f64().unwrap() - 0.7).abs() < 1e-12,
        "{valid}"
    );
    assert!(
        (valid["pass_rate_scored"].as_f64().unwrap() - 7.0 / 9.0).abs() < 1e-12,
        "{valid}"
    );
    assert_eq!(s["errors"]["empty_response"], 1, "{s}");
    assert_eq!(s["manifest"]["endpoint_kind"], "recorded", "{s}");
}

#[test]
fn a_record_without_the_output_field_is_named_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let suite = suite(
        dir.path(),
        "{ name: prod, kind: recorded, output_field: reply }",
    );
    let out = run(vigil().arg("validate").arg(&suite));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("answers.jsonl:1") && err.contains("no field `reply`"),
        "{err}"
    );
}

#[test]
fn recorded_targets_take_no_url_and_other_kinds_no_output_field() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    for (target, key) in [
        (
            "{ name: prod, kind: recorded, base_url: \"http://h/v1\" }",
            "targets[0].base_url",
        ),
        (
            "{ name: t, base_url: \"http://h/v1\", model: m, output_field: answer }",
            "targets[0].output_field",
        ),
    ] {
        let suite = suite(dir.path(), target);
        let out = run(vigil().arg("validate").arg(&suite));
        assert_eq!(out.status.code(), Some(2), "{target}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{target}: {err}");
    }
}
