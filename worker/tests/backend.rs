//! The backend client against a real HTTP server (a small axum app started
//! per test) that replays a script of replies: failures, rate limits,
//! garbage, hangs.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_protocol::{
    ChatMessage, EndpointKind, ErrorKind, Prompt, SamplingParams, TargetSpec, TokenUsage,
};
use vigil_worker::backend::BackendClient;
use vigil_worker::retry::{AdaptiveLimit, Deadline, Slots};

/// One scripted reply.
#[derive(Clone)]
enum Reply {
    /// A well-formed completion with this text.
    Ok(&'static str),
    /// This status and raw body.
    Raw(u16, &'static str),
    /// 429 with this `Retry-After`.
    RateLimited(&'static str),
    /// Never answer (within any test's timeout).
    Hang,
    /// Answer after this delay.
    Slow(Duration),
}

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    auth: Option<String>,
    traceparent: Option<String>,
    body: Value,
    at: Instant,
}

#[derive(Clone, Default)]
struct Stub {
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// Replayed when the script is empty.
    fallback: Arc<Mutex<Option<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Stub {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn ok_body(path: &str, text: &str) -> Value {
    let choice = if path.ends_with("/chat/completions") {
        json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"})
    } else {
        json!({"index": 0, "text": text, "finish_reason": "length"})
    };
    json!({
        "id": "cmpl-1",
        "model": "stub-model",
        "choices": [choice],
        "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    })
}

async fn handle(State(stub): State<Stub>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    stub.seen.lock().unwrap().push(Seen {
        path: uri.path().to_string(),
        auth: header("authorization"),
        traceparent: header("traceparent"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
    });
    let now = stub.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stub.peak.fetch_max(now, Ordering::SeqCst);
    let reply = stub.script.lock().unwrap().pop_front();
    let reply = reply
        .or_else(|| stub.fallback.lock().unwrap().clone())
        .unwrap_or(Reply::Ok("hello"));
    let response = match reply {
        Reply::Ok(text) => axum::Json(ok_body(uri.path(), text)).into_response(),
        Reply::Raw(status, body) => (StatusCode::from_u16(status).unwrap(), body).into_response(),
        Reply::RateLimited(after) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", after)],
            "slow down",
        )
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::OK.into_response()
        }
        Reply::Slow(delay) => {
            tokio::time::sleep(delay).await;
            axum::Json(ok_body(uri.path(), "slow")).into_response()
        }
    };
    stub.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

/// Starts the stub on a free port; returns its base URL (`.../v1`).
async fn start(script: Vec<Reply>, fallback: Option<Reply>) -> (String, Stub) {
    let stub = Stub::default();
    *stub.script.lock().unwrap() = script.into();
    *stub.fallback.lock().unwrap() = fallback;
    let app = Router::new()
        .route("/v1/chat/completions", post(handle))
        .route("/v1/completions", post(handle))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), stub)
}

fn target(base_url: &str, kind: EndpointKind, max_retries: u32) -> TargetSpec {
    TargetSpec {
        name: "stub".into(),
        kind,
        base_url: base_url.into(),
        model: "m-1".into(),
        params: SamplingParams::default(),
        timeout_ms: 5_000,
        max_concurrency: 8,
        max_retries,
        ..Default::default()
    }
}

fn chat(text: &str) -> Prompt {
    Prompt::Chat(vec![
        ChatMessage {
            role: "system".into(),
            content: "Be brief.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: text.into(),
        },
    ])
}

fn client() -> BackendClient {
    BackendClient::new().with_backoff(Duration::from_millis(10), Duration::from_millis(40))
}

#[tokio::test]
async fn chat_call_sends_model_messages_params_auth_and_extra_headers() {
    let (url, stub) = start(vec![Reply::Ok("Paris")], None).await;
    let mut t = target(&url, EndpointKind::Chat, 0);
    t.params = SamplingParams {
        temperature: Some(0.2),
        top_p: Some(0.9),
        max_tokens: Some(64),
        seed: Some(42),
        stop: vec!["\n\n".into()],
    };
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let extra = vec![("traceparent".to_string(), traceparent.to_string())];
    let limit = AdaptiveLimit::new(4);
    let c = client()
        .complete(
            &t,
            Some("sk-test-123"),
            &chat("Capital of France?"),
            &limit,
            &extra,
        )
        .await
        .unwrap();

    assert_eq!(c.text, "Paris");
    assert_eq!(
        c.usage,
        TokenUsage {
            input: 11,
            output: 2
        }
    );
    assert_eq!(c.finish_reason.as_deref(), Some("stop"));
    assert_eq!(c.model.as_deref(), Some("stub-model"));
    assert_eq!(c.attempts, 1);
    assert!(
        c.latency_ms > 0.0 && c.latency_ms < 5_000.0,
        "{}",
        c.latency_ms
    );

    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].auth.as_deref(), Some("Bearer sk-test-123"));
    assert_eq!(seen[0].traceparent.as_deref(), Some(traceparent));
    assert_eq!(
        seen[0].body,
        json!({
            "model": "m-1",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital of France?"}
            ],
            "temperature": 0.2,
            "top_p": 0.9,
            "max_tokens": 64,
            "seed": 42,
            "stop": ["\n\n"]
        })
    );
    assert_eq!(limit.in_flight(), 0, "the permit is returned");
}

#[tokio::test]
async fn no_key_means_no_authorization_and_unset_params_are_not_sent() {
    let (url, stub) = start(vec![], None).await;
    let t = target(&format!("{url}/"), EndpointKind::Chat, 0); // a trailing slash is fine
    let c = client()
        .complete(&t, None, &chat("hi"), &AdaptiveLimit::new(1), &[])
        .await
        .unwrap();
    assert_eq!(c.text, "hello");
    let seen = stub.seen();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].auth, None);
    let keys: Vec<&String> = seen[0].body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["messages", "model"]);
}

#[tokio::test]
async fn completions_target_posts_the_prompt() {
    let (url, stub) = start(vec![Reply::Ok(" 4")], None).await;
    let mut t = target(&url, EndpointKind::Completions, 0);
    t.params.max_tokens = Some(3);
    let c = client()
        .complete(
            &t,
            None,
            &Prompt::Completion("2+2=".into()),
            &AdaptiveLimit::new(1),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(c.text, " 4");
    assert_eq!(c.finish_reason.as_deref(), Some("length"));
    let seen = stub.seen();
    assert_eq!(seen[0].path, "/v1/completions");
    assert_eq!(
        seen[0].body,
        json!({"model": "m-1", "prompt": "2+2=", "max_tokens": 3})
    );
}

#[tokio::test]
async fn prompt_kind_mismatch_fails_without_a_call() {
    let (url, stub) = start(vec![], None).await;
    let limit = AdaptiveLimit::new(1);
    let chat_target = target(&url, EndpointKind::Chat, 3);
    let err = client()
        .complete(
            &chat_target,
            None,
            &Prompt::Completion("x".into()),
            &limit,
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind.clone(), err.attempts),
        (ErrorKind::ClientError, 0)
    );
    assert!(err.message.contains("chat endpoint"), "{}", err.message);
    let comp_target = target(&url, EndpointKind::Completions, 3);
    let err = client()
        .complete(&comp_target, None, &chat("x"), &limit, &[])
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.attempts), (ErrorKind::ClientError, 0));
    assert!(stub.seen().is_empty());
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let (url, stub) = start(vec![Reply::Raw(500, "boom"), Reply::Ok("fine")], None).await;
    let t = target(&url, EndpointKind::Chat, 3);
    let c = client()
        .complete(&t, None, &chat("hi"), &AdaptiveLimit::new(2), &[])
        .await
        .unwrap();
    assert_eq!((c.text.as_str(), c.attempts), ("fine", 2));
    assert_eq!(stub.seen().len(), 2);
}

#[tokio::test]
async fn persistent_server_error_reports_status_attempts_and_excerpt() {
    let (url, stub) = start(
        vec![],
        Some(Reply::Raw(503, "model is loading\nplease wait")),
    )
    .await;
    let t = target(&url, EndpointKind::Chat, 3);
    let err = client()
        .complete(&t, None, &chat("hi"), &AdaptiveLimit::new(2), &[])
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ServerError);
    assert_eq!(err.attempts, 4);
    assert_eq!(
        err.message,
        "HTTP 503 after 4 attempts: model is loading please wait"
    );
    assert_eq!(stub.seen().len(), 4);
}

#[tokio::test]
async fn rate_limit_honours_retry_after_and_halves_the_limit() {
    let (url, stub) = start(vec![Reply::RateLimited("1"), Reply::Ok("late")], None).await;
    let t = target(&url, EndpointKind::Chat, 2);
    let limit = AdaptiveLimit::new(8);
    let c = client()
        .complete(&t, None, &chat("hi"), &limit, &[])
        .await
        .unwrap();
    assert_eq!((c.text.as_str(), c.attempts), ("late", 2));
    let seen = stub.seen();
    let waited = seen[1].at.duration_since(seen[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 not honoured: {waited:?}"
    );
    // Not the backoff's cap or a unit mistake either; the bound is not about load.
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    // 8 halved to 4, then one success adds 1/4: still 4.
    assert_eq!(limit.limit(), 4);
}

#[tokio::test]
async fn persistent_rate_limit_fails_as_rate_limited() {
    let (url, _stub) = start(vec![], Some(Reply::RateLimited("0"))).await;
    let t = target(&url, EndpointKind::Chat, 2);
    let limit = AdaptiveLimit::new(8);
    let err = client()
        .complete(&t, None, &chat("hi"), &limit, &[])
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.attempts), (ErrorKind::RateLimited, 3));
    assert!(
        err.message.starts_with("HTTP 429 after 3 attempts"),
        "{}",
        err.message
    );
    assert!(limit.limit() < 8, "a 429 shrinks the limit");
}

#[tokio::test]
async fn invalid_json_is_retried_then_reported() {
    let (url, stub) = start(vec![], Some(Reply::Raw(200, "<html>oops</html>"))).await;
    let t = target(&url, EndpointKind::Chat, 1);
    let err = client()
        .complete(&t, None, &chat("hi"), &AdaptiveLimit::new(1), &[])
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.attempts), (ErrorKind::InvalidResponse, 2));
    assert!(err.message.contains("<html>oops</html>"), "{}", err.message);
    assert_eq!(stub.seen().len(), 2);
}

#[tokio::test]
async fn empty_choices_are_retried_then_reported() {
    let (url, _stub) = start(
        vec![Reply::Raw(200, r#"{"choices": []}"#)],
        Some(Reply::Raw(200, r#"{"choices": []}"#)),
    )
    .await;
    let t = target(&url, EndpointKind::Chat, 2);
    let err = client()
        .complete(&t, None, &chat("hi"), &AdaptiveLimit::new(1), &[])
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.attempts), (ErrorKind::EmptyResponse, 3));

    let (url, _stub) = start(
        vec![Reply::Raw(200, r#"{"choices": []}"#), Reply::Ok("second")],
        None,
    )
    .await;
    let t = target(&url, EndpointKind::Chat, 2);
    let c = client()
        .complete(&t, None, &chat("hi"), &AdaptiveLimit::new(1), &[])
        .await
        .unwrap();
    assert_eq!((c.text.as_str(), c.attempts), ("second", 2));
}

#[tokio::test]
async fn hanging_backend_times_out_per_attempt() {
    let (url, stub) = start(vec![], Some(Reply::Hang)).await;
    let mut t = target(&url, EndpointKind::Chat, 1);
    t.timeout_ms = 200;
    let started = Instant::now();
    let limit = AdaptiveLimit::new(1);
    let err = client()
        .complete(&t, None, &chat("hi"), &limit, &[])
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!((err.kind, err.attempts), (ErrorKind::Timeout, 2));
    assert_eq!(err.message, "timeout (200 ms) after 2 attempts");
    // Two attempts cut at 200 ms each (a timeout never fires early); the
    // upper bound only catches a unit mistake (seconds for milliseconds).
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(60),
        "{elapsed:?}"
    );
    assert_eq!(stub.seen().len(), 2);
    assert_eq!(
        limit.in_flight(),
        0,
        "a timed-out attempt returns its permit"
    );
}

#[tokio::test]
async fn slow_success_reports_its_latency() {
    let (url, _stub) = start(vec![Reply::Slow(Duration::from_millis(150))], None).await;
    let t = target(&url, EndpointKind::Chat, 0);
    let c = client()
        .complete(&t, None, &chat("hi"), &AdaptiveLimit::new(1), &[])
        .await
        .unwrap();
    assert!(
        // The upper bound only catches a unit mistake (seconds for milliseconds).
        c.latency_ms >= 150.0 && c.latency_ms < 60_000.0,
        "{}",
        c.latency_ms
    );
}

#[tokio::test]
async fn refused_port_is_a_connection_error_without_secrets() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://vigil-user:hunter2-pass@127.0.0.1:{port}/v1");
    let t = target(&url, EndpointKind::Chat, 2);
    let err = client()
        .complete(
            &t,
            Some("sk-live-secret"),
            &chat("hi"),
            &AdaptiveLimit::new(1),
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!((err.kind.clone(), err.attempts), (ErrorKind::Connection, 3));
    assert!(
        err.message
            .starts_with("connection error after 3 attempts: "),
        "{}",
        err.message
    );
    for secret in ["sk-live-secret", "hunter2-pass", "vigil-user"] {
        assert!(
            !err.message.contains(secret),
            "{secret} leaked: {}",
            err.message
        );
        assert!(!err.to_string().contains(secret));
    }
}

#[tokio::test]
async fn client_errors_are_not_retried_and_echoed_keys_are_redacted() {
    let (url, stub) = start(
        vec![],
        Some(Reply::Raw(
            401,
            "Incorrect API key provided: sk-live-secret",
        )),
    )
    .await;
    let t = target(&url, EndpointKind::Chat, 5);
    let err = client()
        .complete(
            &t,
            Some("sk-live-secret"),
            &chat("hi"),
            &AdaptiveLimit::new(1),
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.attempts), (ErrorKind::ClientError, 1));
    assert_eq!(
        err.message,
        "HTTP 401 after 1 attempt: Incorrect API key provided: [redacted]"
    );
    assert_eq!(stub.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_bounds_requests_in_flight() {
    let (url, stub) = start(vec![], Some(Reply::Slow(Duration::from_millis(50)))).await;
    let t = target(&url, EndpointKind::Chat, 0);
    let limit = AdaptiveLimit::new(2);
    let client = client();
    let prompt = chat("hi");
    let calls = (0..8).map(|_| client.complete(&t, None, &prompt, &limit, &[]));
    for result in futures::future::join_all(calls).await {
        assert_eq!(result.unwrap().text, "slow");
    }
    assert_eq!(stub.peak.load(Ordering::SeqCst), 2);
}

/// Slots with a deadline `in_ms` from now.
fn with_deadline<'a>(
    limit: &'a AdaptiveLimit,
    worker: Option<&'a tokio::sync::Semaphore>,
    in_ms: u64,
) -> Slots<'a> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Slots {
        target: limit,
        worker,
        job: None,
        deadline: Deadline::at_unix_ms(Some(now_ms + in_ms)),
    }
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_fails_as_deadline_without_waiting() {
    let (url, stub) = start(vec![Reply::RateLimited("30"), Reply::Ok("late")], None).await;
    let t = target(&url, EndpointKind::Chat, 3);
    let limit = AdaptiveLimit::new(4);
    // The call is not allowed to sleep 30 s: the deadline is 10 s away. A
    // sleep would make this test time out (the bound is a failure, not a window).
    let err = tokio::time::timeout(
        Duration::from_secs(9),
        client().complete(
            &t,
            None,
            &chat("hi"),
            with_deadline(&limit, None, 10_000),
            &[],
        ),
    )
    .await
    .expect("the call slept into the Retry-After instead of failing at once")
    .unwrap_err();
    assert_eq!((err.kind, err.attempts), (ErrorKind::Deadline, 1));
    assert!(
        err.message.starts_with("the run's deadline comes in ")
            && err
                .message
                .contains("before a retry in 30.0 s (Retry-After)")
            && err
                .message
                .contains("last attempt: rate_limited: HTTP 429 after 1 attempt"),
        "{}",
        err.message
    );
    assert_eq!(stub.seen().len(), 1, "no second attempt");
}

#[tokio::test]
async fn a_passed_deadline_fails_before_any_attempt() {
    let (url, stub) = start(vec![], Some(Reply::Ok("x"))).await;
    let t = target(&url, EndpointKind::Chat, 3);
    let limit = AdaptiveLimit::new(4);
    let mut slots = with_deadline(&limit, None, 0);
    slots.deadline = Deadline::at_unix_ms(Some(1));
    let err = client()
        .complete(&t, None, &chat("hi"), slots, &[])
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.attempts), (ErrorKind::Deadline, 0));
    assert_eq!(
        err.message,
        "the run's deadline has passed, waiting for a call slot"
    );
    assert!(stub.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_to_retry_holds_no_slot() {
    // One target slot and one worker slot. The first call is told to retry
    // in 30 s; the second call must get both slots meanwhile.
    let (url, stub) = start(vec![Reply::RateLimited("30")], Some(Reply::Ok("next"))).await;
    let t = target(&url, EndpointKind::Chat, 1);
    let limit = AdaptiveLimit::with_cooldown(1, Duration::ZERO);
    let worker = tokio::sync::Semaphore::new(1);
    let client = client();
    let prompt = chat("hi");
    let slots = with_deadline(&limit, Some(&worker), 600_000);
    let waiting = client.complete(&t, None, &prompt, slots, &[]);
    tokio::pin!(waiting);
    // Drive the first call until its 429 arrives, then it sleeps.
    let stub_ref = &stub;
    tokio::select! {
        _ = &mut waiting => panic!("the first call ended instead of waiting 30 s"),
        _ = async { while stub_ref.seen().is_empty() { tokio::task::yield_now().await; tokio::time::sleep(Duration::from_millis(5)).await; } } => {}
    }
    let second = tokio::select! {
        _ = &mut waiting => panic!("the first call ended instead of waiting 30 s"),
        second = client.complete(&t, None, &prompt, slots, &[]) => second,
    };
    assert_eq!(second.unwrap().text, "next");
    assert_eq!(stub.seen().len(), 2, "the first call has not retried yet");
    assert_eq!((limit.in_flight(), worker.available_permits()), (0, 1));
}

/// A raw HTTP/1.1 server that answers every request with `answer` (a whole
/// response, head and body), keeps or closes each connection as `close`
/// says, and counts the connections it accepted.
async fn raw_server(answer: &'static str, close: bool) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut socket = BufReader::new(socket);
                loop {
                    // The head, then as many body bytes as it announces.
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    socket.read_exact(&mut body).await.unwrap();
                    socket.get_mut().write_all(answer.as_bytes()).await.unwrap();
                    if close {
                        return;
                    }
                }
            });
        }
    });
    (url, accepted)
}

const ANSWER: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 41\r\n\r\n{\"choices\":[{\"message\":{\"content\":\"4\"}}]}";
const ANSWER_CLOSE: &str = "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 41\r\n\r\n{\"choices\":[{\"message\":{\"content\":\"4\"}}]}";

/// Three calls one after another on one client, each answered at its first
/// attempt; how many connections the server accepted.
async fn three_calls(answer: &'static str, close: bool) -> usize {
    let (url, accepted) = raw_server(answer, close).await;
    let (client, t) = (client(), target(&url, EndpointKind::Chat, 0));
    for _ in 0..3 {
        let c = client
            .complete(&t, None, &chat("2+2?"), &AdaptiveLimit::new(1), &[])
            .await
            .unwrap();
        assert_eq!((c.text.as_str(), c.attempts), ("4", 1));
    }
    accepted.load(Ordering::SeqCst)
}

#[tokio::test]
async fn calls_one_after_another_reuse_one_connection() {
    assert_eq!(three_calls(ANSWER, false).await, 1);
}

#[tokio::test]
async fn a_connection_the_server_closes_is_not_used_again_and_costs_no_attempt() {
    assert_eq!(three_calls(ANSWER_CLOSE, true).await, 3);
}
