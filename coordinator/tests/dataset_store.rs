//! The dataset store against a real nats-server: a dataset larger than many
//! object-store chunks goes in and comes out byte for byte; `extend` appends
//! only new items (by content hash), also after a version whose last line has
//! no newline; a CSV latest version is not extended.

use serde_json::{Map, Value, json};
use vigil_coordinator::dataset_store::{self, DatasetStoreError, PushOptions};
use vigil_coordinator::suite::DatasetFormat;
use vigil_testkit::jetstream as js;

fn item(v: Value) -> Result<Map<String, Value>, vigil_coordinator::dataset::DatasetError> {
    Ok(v.as_object().unwrap().clone())
}

#[tokio::test]
async fn a_large_dataset_streams_in_and_out_in_chunks() {
    let (_nats, js) = js().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.jsonl");
    // ~6 MB: about 48 chunks of 128 KiB.
    let mut text = String::new();
    for i in 0..60_000 {
        text.push_str(&format!(
            "{{\"id\": \"q{i}\", \"question\": \"What is {i} + 1? {}\"}}\n",
            "x".repeat(60)
        ));
    }
    std::fs::write(&path, &text).unwrap();
    let pushed = dataset_store::push_file(
        &js,
        "big",
        &path,
        DatasetFormat::Jsonl,
        PushOptions::default(),
    )
    .await
    .unwrap();
    assert!(pushed.stored);
    assert_eq!(pushed.info.items, 60_000);
    assert_eq!(pushed.info.bytes, text.len() as u64);
    let store = js.get_object_store("vigil-artifacts").await.unwrap();
    let info = store
        .info(dataset_store::object_name("big", &pushed.info.version))
        .await
        .unwrap();
    assert!(info.chunks > 10, "stored in {} chunks", info.chunks);
    let mut out = Vec::new();
    let n = dataset_store::pull(&js, &pushed.info, &mut out)
        .await
        .unwrap();
    assert_eq!(n, text.len() as u64);
    assert!(out == text.as_bytes(), "the bytes come back unchanged");
    let again = dataset_store::push_file(
        &js,
        "big",
        &path,
        DatasetFormat::Jsonl,
        PushOptions::default(),
    )
    .await
    .unwrap();
    assert!(!again.stored, "same content: one version");
    assert_eq!(
        dataset_store::list(&js, Some("big")).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn extend_appends_only_new_items() {
    let (_nats, js) = js().await;
    let dir = tempfile::tempdir().unwrap();
    // A first version whose last line has no newline.
    let path = dir.path().join("v1.jsonl");
    std::fs::write(
        &path,
        "{\"prompt\": \"a\", \"capture_id\": \"1\"}\n{\"prompt\": \"b\", \"capture_id\": \"2\"}",
    )
    .unwrap();
    let v1 = dataset_store::push_file(
        &js,
        "reg",
        &path,
        DatasetFormat::Jsonl,
        PushOptions::default(),
    )
    .await
    .unwrap();
    let new = vec![
        item(json!({"prompt": "b", "capture_id": "9"})), // same input as an item of v1
        item(json!({"prompt": "c", "capture_id": "3"})),
        item(json!({"prompt": "c", "capture_id": "4"})), // same input as the one before
    ];
    let ext = dataset_store::extend(&js, "reg", new, "test", "test")
        .await
        .unwrap();
    assert_eq!((ext.added, ext.duplicates), (1, 2));
    let v2 = ext.pushed.unwrap().info;
    assert_eq!(v2.items, 3);
    assert_eq!(v2.parent.as_deref(), Some(v1.info.version.as_str()));
    let latest = dataset_store::resolve(&js, "reg", "latest").await.unwrap();
    assert_eq!(latest.version, v2.version);
    let mut out = Vec::new();
    dataset_store::pull(&js, &latest, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("\"capture_id\":\"3\""),
        "{text}"
    );

    // Nothing new: nothing pushed.
    let ext = dataset_store::extend(&js, "reg", vec![item(json!({"prompt": "a"}))], "t", "t")
        .await
        .unwrap();
    assert!(ext.pushed.is_none());
    assert_eq!(
        dataset_store::list(&js, Some("reg")).await.unwrap().len(),
        2
    );

    // A bad item stops it before anything is pushed.
    let bad = vigil_coordinator::dataset::DatasetError::Invalid {
        path: "x.jsonl".into(),
        line: 7,
        message: "invalid JSON".into(),
    };
    let e = dataset_store::extend(
        &js,
        "reg",
        vec![item(json!({"prompt": "z"})), Err(bad)],
        "t",
        "t",
    )
    .await
    .unwrap_err();
    assert_eq!(e.to_string(), "x.jsonl:7: invalid JSON");
    assert_eq!(
        dataset_store::list(&js, Some("reg")).await.unwrap().len(),
        2
    );

    // A CSV latest version is not extended.
    let csv = dir.path().join("t.csv");
    std::fs::write(&csv, "prompt\nq\n").unwrap();
    dataset_store::push_file(
        &js,
        "table",
        &csv,
        DatasetFormat::Csv,
        PushOptions::default(),
    )
    .await
    .unwrap();
    let e = dataset_store::extend(&js, "table", vec![item(json!({"prompt": "r"}))], "t", "t")
        .await
        .unwrap_err();
    assert!(matches!(e, DatasetStoreError::Unsupported(_)), "{e}");
}
