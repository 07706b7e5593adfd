//! `vigil serve-model` against the local target: the same prompts through
//! the HTTP target's client (OpenAI-compatible, over a socket) and through
//! the in-process engine give the same texts and token counts.

use crate::common;
use crate::local_common;

use common::vigil;
use local_common::{KillOnDrop, MODEL_FILE, model_path};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use vigil_local::LocalEngine;
use vigil_protocol::{ChatMessage, EndpointKind, Prompt, SamplingParams, TargetSpec};
use vigil_worker::backend::BackendClient;
use vigil_worker::backends::LocalBackend;
use vigil_worker::retry::AdaptiveLimit;

/// Starts `vigil serve-model` on a free port; returns it and its base URL.
fn serve() -> (KillOnDrop, String) {
    let mut child = vigil()
        .arg("serve-model")
        .arg("--model")
        .arg(model_path())
        .args(["--port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve-model printed its address before exiting")
            .unwrap();
        eprintln!("serve-model: {line}");
        if let Some(at) = line.find("http://") {
            break line[at..].trim().to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (KillOnDrop(child), url)
}

fn target(kind: EndpointKind, base_url: &str, params: SamplingParams) -> TargetSpec {
    TargetSpec {
        name: "t".into(),
        kind,
        base_url: base_url.into(),
        model: MODEL_FILE.into(),
        params,
        timeout_ms: 60_000,
        max_concurrency: 1,
        max_retries: 0,
        model_path: (kind == EndpointKind::Local).then(|| model_path().display().to_string()),
    }
}

fn chat(system: &str, user: &str) -> Prompt {
    Prompt::Chat(vec![
        ChatMessage {
            role: "system".into(),
            content: system.into(),
        },
        ChatMessage {
            role: "user".into(),
            content: user.into(),
        },
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_model_and_the_local_target_give_the_same_texts() {
    let (_server, url) = serve();
    let http = BackendClient::new();
    let limit = AdaptiveLimit::new(1);
    let engine = LocalEngine::new([model_path()], 1);

    let greedy = SamplingParams {
        max_tokens: Some(6),
        stop: vec!["\n".into()],
        ..Default::default()
    };
    let seeded = SamplingParams {
        temperature: Some(0.9),
        top_p: Some(0.9),
        seed: Some(7),
        max_tokens: Some(6),
        ..Default::default()
    };
    let cases = [
        (
            EndpointKind::Chat,
            chat("Answer with one word.", "What is the capital of Japan?"),
            greedy.clone(),
        ),
        (
            EndpointKind::Chat,
            chat("Answer yes or no.", "Is ice hot?"),
            greedy.clone(),
        ),
        (
            EndpointKind::Chat,
            chat("You are a poet.", "Describe the sea."),
            seeded,
        ),
        (
            EndpointKind::Completions,
            Prompt::Completion("Monday, Tuesday,".into()),
            greedy,
        ),
    ];
    for (kind, prompt, params) in cases {
        let over_http = http
            .complete(
                &target(kind, &url, params.clone()),
                None,
                &prompt,
                &limit,
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{kind:?} {prompt:?}: {e}"));
        let in_process = engine
            .complete(&target(EndpointKind::Local, "", params), &prompt)
            .await
            .unwrap();
        assert_eq!(over_http.text, in_process.text, "{prompt:?}");
        assert!(!in_process.text.is_empty(), "{prompt:?}");
        assert_eq!(over_http.usage, in_process.usage, "{prompt:?}");
        assert_eq!(over_http.finish_reason, in_process.finish_reason);
        assert_eq!(over_http.model.as_deref(), Some(MODEL_FILE));
    }

    // Bad requests are the client's fault, as OpenAI reports them.
    let response =
        reqwest_like_post(&format!("{url}/chat/completions"), r#"{"messages": []}"#).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
}

/// A raw HTTP/1.1 POST (the test needs no HTTP client crate of its own).
async fn reqwest_like_post(url: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
