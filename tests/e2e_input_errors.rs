//! Broken input gets an error that names the place, exit code 2, and nothing
//! is published.

mod common;

use common::*;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};

async fn jobs_published(nats: &NatsServer) -> u64 {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    match js.get_stream("VIGIL_JOBS").await {
        Ok(mut stream) => stream.info().await.unwrap().state.messages,
        Err(_) => 0,
    }
}

fn run_against(nats: &NatsServer, suite: &std::path::Path) -> (Option<i32>, String) {
    let out = run(&mut coordinate(suite, &nats.url(), 0, None));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_jsonl_line_names_file_and_line() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dataset.jsonl");
    write_arith_dataset(&data, 50, 0);
    let mut text = std::fs::read_to_string(&data).unwrap();
    text.push_str("{\"id\": \"bad\", \"question\": \n");
    std::fs::write(&data, text).unwrap();
    let suite = write_suite(dir.path(), "http://127.0.0.1:9/v1", "");
    let (code, stderr) = run_against(&nats, &suite);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("dataset.jsonl:51"),
        "names file and line: {stderr}"
    );
    assert_eq!(jobs_published(&nats).await, 0);

    let validate = run(vigil().args(["validate", suite.to_str().unwrap()]));
    assert_eq!(validate.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&validate.stderr).contains("dataset.jsonl:51"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_scorer_names_the_field() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 10, 0);
    let suite = write_suite(dir.path(), "http://127.0.0.1:9/v1", "");
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace("kind: numeric", "kind: numerik");
    std::fs::write(&suite, text).unwrap();
    let (code, stderr) = run_against(&nats, &suite);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("scorers[1]"), "names the scorer: {stderr}");
    assert!(stderr.contains("numerik"), "names the kind: {stderr}");
    assert_eq!(jobs_published(&nats).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_template_names_the_field() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 10, 0);
    let suite = write_suite(dir.path(), "http://127.0.0.1:9/v1", "");
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace("user: \"{{ question }}\"", "user: \"{{ question \"");
    std::fs::write(&suite, text).unwrap();
    let (code, stderr) = run_against(&nats, &suite);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("prompt.user"),
        "names the template: {stderr}"
    );
    assert_eq!(jobs_published(&nats).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undefined_template_variable_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 10, 0);
    let suite = write_suite(dir.path(), "http://127.0.0.1:9/v1", "");
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace("{{ question }}", "{{ questoin }}");
    std::fs::write(&suite, text).unwrap();
    let out = run(vigil().args(["validate", suite.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dataset.jsonl:1"), "{stderr}");
    assert!(stderr.contains("prompt.user"), "{stderr}");
}
