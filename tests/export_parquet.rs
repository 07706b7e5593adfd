//! `vigil export --format parquet` of a real stored run, read back by an
//! independent reader (PyPI `pyarrow`, installed by
//! `scripts/setup-extra.d/parquet-reader.sh`): the rows, the columns with
//! their types, the row groups, and every value against the JSONL export of
//! the same run.

use crate::common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use vigil_testkit::stub::{StubConfig, StubServer};

const ITEMS: usize = 30;

fn pyarrow() -> PathBuf {
    let home = std::env::var_os("VIGIL_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".vigil"));
    let bin = home.join("bin/vigil-pyarrow");
    assert!(
        bin.exists(),
        "{} missing: run scripts/setup.sh (scripts/setup-extra.d/parquet-reader.sh installs it)",
        bin.display()
    );
    bin
}

/// Items with a `category` tag on two of three, and a wrong reference on
/// one of four (so `exact.passed` is false there).
fn write_dataset(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..ITEMS {
        let (a, b) = (i + 1, 2);
        let answer = if i % 4 == 0 { a + b + 1 } else { a + b };
        let tag = if i % 3 == 0 {
            String::new()
        } else {
            format!(r#", "category": "c{}""#, i % 2)
        };
        writeln!(
            f,
            r#"{{"id": "item-{i}", "question": "What is {a} + {b}?", "answer": "{answer}"{tag}}}"#
        )
        .unwrap();
    }
}

/// The file as pyarrow reads it: schema, row groups and rows.
const READER: &str = r#"
import json, sys
import pyarrow.parquet as pq
f = pq.ParquetFile(sys.argv[1])
t = f.read()
print(json.dumps({
    "rows": t.num_rows,
    "row_groups": f.metadata.num_row_groups,
    "created_by": f.metadata.created_by,
    "schema": [[field.name, str(field.type), field.nullable] for field in t.schema],
    "data": t.to_pylist(),
}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_export_reads_back_with_pyarrow() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_dataset(&dir.path().join("dataset.jsonl"));
    let suite = write_suite(dir.path(), &stub.base_url(), "");
    let state = dir.path().join(".vigil");
    let run_id = run_embedded(&suite, &state);

    let file = dir.path().join("items.parquet");
    let export = run(vigil()
        .args([
            "export",
            &run_id,
            "--format",
            "parquet",
            "--row-group-rows",
            "8",
        ])
        .arg("--out")
        .arg(&file)
        .arg("--state-dir")
        .arg(&state));
    assert_eq!(export.status.code(), Some(0));
    let jsonl = run(vigil()
        .args(["export", &run_id, "--format", "jsonl", "--state-dir"])
        .arg(&state));
    assert_eq!(jsonl.status.code(), Some(0));
    let expected: HashMap<u64, Value> = String::from_utf8_lossy(&jsonl.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["index"].as_u64().unwrap(), v))
        .collect();
    assert_eq!(expected.len(), ITEMS);

    let read = Command::new(pyarrow())
        .args(["-c", READER])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "pyarrow could not read the file: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    let got: Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(got["rows"], ITEMS);
    assert_eq!(got["row_groups"], ITEMS.div_ceil(8), "rows in groups of 8");
    assert!(got["created_by"].as_str().unwrap().starts_with("vigil "));
    let schema: Vec<(String, String, bool)> = got["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap().to_string(),
                c[1].as_str().unwrap().to_string(),
                c[2].as_bool().unwrap(),
            )
        })
        .collect();
    let want = [
        ("run_id", "string", false),
        ("index", "int64", false),
        ("id", "string", false),
        ("error_kind", "string", true),
        ("error_message", "string", true),
        ("latency_ms", "double", false),
        ("cached", "bool", false),
        ("attempts", "int32", false),
        ("response_model", "string", true),
        ("finish_reason", "string", true),
        ("input_tokens", "int64", false),
        ("output_tokens", "int64", false),
        ("output", "string", true),
        ("tag.category", "string", true),
        ("exact.value", "double", true),
        ("exact.passed", "bool", true),
        ("num.value", "double", true),
        ("num.passed", "bool", true),
    ];
    let want: Vec<(String, String, bool)> = want
        .iter()
        .map(|(n, t, o)| (n.to_string(), t.to_string(), *o))
        .collect();
    assert_eq!(schema, want);

    let mut untagged = 0;
    for row in got["data"].as_array().unwrap() {
        let index = row["index"].as_u64().unwrap();
        let item = &expected[&index];
        assert_eq!(row["run_id"], run_id.as_str());
        assert_eq!(row["id"], format!("item-{index}").as_str());
        assert_eq!(row["id"], item["id"]);
        assert_eq!(row["error_kind"], Value::Null);
        assert_eq!(row["latency_ms"].as_f64(), item["latency_ms"].as_f64());
        assert_eq!(row["cached"], item["cached"]);
        assert_eq!(row["attempts"], item["attempts"]);
        assert_eq!(row["response_model"], item["response_model"]);
        assert_eq!(row["finish_reason"], item["finish_reason"]);
        assert_eq!(row["input_tokens"], item["usage"]["input"]);
        assert_eq!(row["output_tokens"], item["usage"]["output"]);
        assert_eq!(row["output"], item["output"]);
        match item["tags"].get("category") {
            Some(c) => assert_eq!(&row["tag.category"], c),
            None => {
                assert_eq!(row["tag.category"], Value::Null);
                untagged += 1;
            }
        }
        for scorer in ["exact", "num"] {
            let score = item["scores"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["scorer"] == scorer)
                .unwrap();
            assert_eq!(
                row[format!("{scorer}.value")].as_f64(),
                score["value"].as_f64()
            );
            assert_eq!(row[format!("{scorer}.passed")], score["passed"]);
        }
        // A wrong reference on every fourth item.
        assert_eq!(row["exact.passed"], index % 4 != 0, "item {index}");
    }
    assert_eq!(untagged, ITEMS.div_ceil(3));
}
