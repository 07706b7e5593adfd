//! Broken input gets an error that names the place, exit code 2, and nothing
//! is published.

use crate::common;

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

/// Runs a 10-item suite, edited by `edit`, against a fresh server, and
/// `vigil validate` on it: both must exit 2 with no job published. Returns
/// what each printed, in one string.
async fn rejected(edit: impl FnOnce(&std::path::Path)) -> String {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 10, 0);
    let suite = write_suite(dir.path(), "http://127.0.0.1:9/v1", "");
    edit(&suite);
    let out = run(&mut coordinate(&suite, &nats.url(), 0, None));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(jobs_published(&nats).await, 0);
    let validate = run(vigil().args(["validate", suite.to_str().unwrap()]));
    assert_eq!(validate.status.code(), Some(2));
    let (run_err, validate_err) = (
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&validate.stderr),
    );
    // Each check below must hold for both commands: look for it twice.
    format!("run: {run_err}\nvalidate: {validate_err}")
}

/// `needle` appears in both the run's and validate's part of `stderr`.
fn both_say(stderr: &str, needle: &str) -> bool {
    let (run_err, validate_err) = stderr.split_once("\nvalidate: ").unwrap();
    run_err.contains(needle) && validate_err.contains(needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_jsonl_line_names_file_and_line() {
    let stderr = rejected(|suite| {
        let data = suite.with_file_name("dataset.jsonl");
        write_arith_dataset(&data, 50, 0);
        let mut text = std::fs::read_to_string(&data).unwrap();
        text.push_str("{\"id\": \"bad\", \"question\": \n");
        std::fs::write(&data, text).unwrap();
    })
    .await;
    assert!(
        both_say(&stderr, "dataset.jsonl:51"),
        "names file and line: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_scorer_names_the_field() {
    let stderr = rejected(|suite| edit_suite(suite, "kind: numeric", "kind: numerik")).await;
    assert!(
        both_say(&stderr, "scorers[1]"),
        "names the scorer: {stderr}"
    );
    assert!(both_say(&stderr, "numerik"), "names the kind: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_template_names_the_field() {
    let stderr =
        rejected(|suite| edit_suite(suite, "user: \"{{ question }}\"", "user: \"{{ question \""))
            .await;
    assert!(
        both_say(&stderr, "prompt.user"),
        "names the template: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undefined_template_variable_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    write_arith_dataset(&dir.path().join("dataset.jsonl"), 10, 0);
    let suite = write_suite(dir.path(), "http://127.0.0.1:9/v1", "");
    edit_suite(&suite, "{{ question }}", "{{ questoin }}");
    let out = run(vigil().args(["validate", suite.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dataset.jsonl:1"), "{stderr}");
    assert!(stderr.contains("prompt.user"), "{stderr}");
}

/// The suite is checked while NATS is being reached (or the embedded server
/// started): a broken dataset is still an input error, exit 2, naming the
/// line, when NATS is unreachable too, and the run does not wait for NATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_dataset_is_an_input_error_even_when_nats_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dataset.jsonl");
    write_arith_dataset(&data, 20, 0);
    let mut text = std::fs::read_to_string(&data).unwrap();
    text.push_str("not json\n");
    std::fs::write(&data, text).unwrap();
    let suite = write_suite(dir.path(), "http://127.0.0.1:9/v1", "");
    // A port nothing listens on: connecting fails (or is retried), never succeeds.
    let unreachable = format!("nats://{}", free_addr());
    let out = run(&mut coordinate(&suite, &unreachable, 1, None));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("dataset.jsonl:21"),
        "names file and line: {stderr}"
    );
}
