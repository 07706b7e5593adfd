//! The stub model server over real HTTP: answers, every fault mode, limits and counters.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil_stub::{StubConfig, StubServer};

fn client() -> reqwest::Client {
    builder().build().unwrap()
}

/// reqwest is built without a TLS provider of its own; install one once.
fn builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

async fn chat(
    c: &reqwest::Client,
    stub: &StubServer,
    prompt: &str,
) -> reqwest::Result<reqwest::Response> {
    c.post(format!("{}/chat/completions", stub.base_url()))
        .json(&json!({"model": "m1", "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
}

async fn chat_json(stub: &StubServer, body: Value) -> Value {
    let r = client()
        .post(format!("{}/chat/completions", stub.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn chat_answers_arithmetic_with_openai_shape() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let v = chat_json(
        &stub,
        json!({"model": "my-model", "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is 12 + 7? Answer with a number."}
        ]}),
    )
    .await;
    assert_eq!(v["model"], "my-model");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "19");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 3 + 9);
    assert_eq!(v["usage"]["completion_tokens"], 1);
    assert_eq!(v["usage"]["total_tokens"], 13);
    let s = stub.stats().snapshot();
    assert_eq!((s.requests, s.ok), (1, 1));
}

#[tokio::test]
async fn answers_the_last_user_message_and_reply_directives() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let v = chat_json(
        &stub,
        json!({"messages": [
            {"role": "user", "content": "2 + 2"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
        ]}),
    )
    .await;
    assert_eq!(v["choices"][0]["message"]["content"], "hello there");
    assert_eq!(
        v["model"], "stub-model",
        "no model asked: the configured one"
    );
    let v = chat_json(
        &stub,
        json!({"messages": [{"role": "user", "content": "Give JSON. [[reply: {\"answer\": [1, 2], \"ok\": true}]]"}]}),
    )
    .await;
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    let inner: Value = serde_json::from_str(content).unwrap();
    assert_eq!(inner, json!({"answer": [1, 2], "ok": true}));
}

#[tokio::test]
async fn completions_echo_and_truncate() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let c = client();
    let url = format!("{}/completions", stub.base_url());
    let v: Value = c
        .post(&url)
        .json(&json!({"model": "t", "prompt": "one two three four five"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "one two three four five");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    let v: Value = c
        .post(&url)
        .json(&json!({"model": "t", "prompt": "one two three four five", "max_tokens": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["text"], "one two");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    let v: Value = c
        .post(&url)
        .json(&json!({"prompt": "100 / 8 ="}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["text"], "12.5");
}

#[tokio::test]
async fn models_health_and_bad_requests() {
    let stub = StubServer::start(StubConfig {
        model: "served".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client();
    let v: Value = c
        .get(format!("{}/models", stub.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["id"], "served");
    let health = format!("http://{}/health", stub.addr());
    assert_eq!(c.get(health).send().await.unwrap().status(), 200);
    let r = c
        .post(format!("{}/chat/completions", stub.base_url()))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
    assert_eq!(stub.stats().snapshot().bad_requests, 1);
}

#[tokio::test]
async fn fail_rate_one_gives_500s() {
    let stub = StubServer::start(StubConfig {
        fail_rate: 1.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client();
    for _ in 0..5 {
        let r = chat(&c, &stub, "1+1").await.unwrap();
        assert_eq!(r.status(), 500);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "server_error");
    }
    let s = stub.stats().snapshot();
    assert_eq!((s.requests, s.server_errors, s.ok), (5, 5, 0));
}

#[tokio::test]
async fn rate_limit_gives_429_with_retry_after() {
    let stub = StubServer::start(StubConfig {
        rate_limit_rate: 1.0,
        retry_after_s: 7,
        ..Default::default()
    })
    .await
    .unwrap();
    let r = chat(&client(), &stub, "hi").await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(stub.stats().snapshot().rate_limited, 1);
}

#[tokio::test]
async fn reset_drops_the_connection_without_a_response() {
    let stub = StubServer::start(StubConfig {
        reset_rate: 1.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client();
    let err = chat(&c, &stub, "hi").await.unwrap_err();
    assert!(err.status().is_none(), "no HTTP status at all: {err:?}");
    assert!(!err.is_timeout(), "{err:?}");
    // And with a raw socket: the server closes the connection having written nothing.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(stub.addr()).await.unwrap();
    let body = r#"{"messages":[{"role":"user","content":"x"}]}"#;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(
        read.is_err() || buf.is_empty(),
        "got bytes: {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(stub.stats().snapshot().resets, 2);
    assert_eq!(stub.stats().snapshot().in_flight, 0);
}

#[tokio::test]
async fn hang_outlasts_the_client_timeout() {
    let stub = StubServer::start(StubConfig {
        hang_rate: 1.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = chat(&c, &stub, "hi").await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(stub.stats().snapshot().hangs, 1);
}

#[tokio::test]
async fn garbage_is_200_with_invalid_json() {
    let stub = StubServer::start(StubConfig {
        garbage_rate: 1.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let r = chat(&client(), &stub, "hi").await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    assert_eq!(stub.stats().snapshot().garbage, 1);
}

#[tokio::test]
async fn empty_is_200_with_no_choices() {
    let stub = StubServer::start(StubConfig {
        empty_rate: 1.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let r = chat(&client(), &stub, "hi").await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"], json!([]));
    let s = stub.stats().snapshot();
    assert_eq!((s.empty, s.ok), (1, 0));
}

async fn statuses(cfg: StubConfig, n: usize) -> Vec<u16> {
    let stub = StubServer::start(cfg).await.unwrap();
    let c = client();
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            chat(&c, &stub, &format!("q{i}"))
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    out
}

#[tokio::test]
async fn seeded_faults_follow_the_rate_and_repeat() {
    let cfg = StubConfig {
        fail_rate: 0.3,
        rate_limit_rate: 0.2,
        seed: 42,
        ..Default::default()
    };
    let a = statuses(cfg.clone(), 300).await;
    let b = statuses(cfg.clone(), 300).await;
    assert_eq!(a, b, "same seed, same order: same faults");
    let fails = a.iter().filter(|s| **s == 500).count();
    let limited = a.iter().filter(|s| **s == 429).count();
    assert!((60..=120).contains(&fails), "{fails}");
    assert!((35..=85).contains(&limited), "{limited}");
    let c = statuses(StubConfig { seed: 43, ..cfg }, 300).await;
    assert_ne!(a, c, "another seed, other faults");
}

#[tokio::test]
async fn fail_first_attempts_is_per_prompt() {
    let stub = StubServer::start(StubConfig {
        fail_first_attempts: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client();
    let mut seen = Vec::new();
    for p in ["a", "a", "b", "a", "b", "b", "a"] {
        seen.push(chat(&c, &stub, p).await.unwrap().status().as_u16());
    }
    assert_eq!(seen, [500, 500, 500, 200, 500, 200, 200]);
    let s = stub.stats().snapshot();
    assert_eq!((s.scripted_failures, s.server_errors, s.ok), (4, 4, 3));
}

#[tokio::test]
async fn max_concurrency_gives_429_beyond_it() {
    let stub = StubServer::start(StubConfig {
        max_concurrency: Some(2),
        latency: Duration::from_millis(500),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client();
    let reqs = (0..6).map(|i| {
        let c = c.clone();
        let url = format!("{}/chat/completions", stub.base_url());
        async move {
            c.post(url)
                .json(&json!({"messages": [{"role": "user", "content": format!("{i}")}]}))
                .send()
                .await
                .unwrap()
        }
    });
    let res = futures::future::join_all(reqs).await;
    let ok = res.iter().filter(|r| r.status() == 200).count();
    let limited: Vec<_> = res.iter().filter(|r| r.status() == 429).collect();
    assert_eq!((ok, limited.len()), (2, 4));
    assert!(
        limited
            .iter()
            .all(|r| r.headers().contains_key("retry-after"))
    );
    let s = stub.stats().snapshot();
    assert_eq!((s.ok, s.over_capacity, s.in_flight), (2, 4, 0));
    assert!(s.max_in_flight >= 3, "{s:?}");
}

/// Slots queue requests instead of refusing them: 6 requests through 2
/// slots of 100 ms take at least three rounds, and every one is answered.
#[tokio::test]
async fn slots_queue_requests_beyond_them() {
    let stub = StubServer::start(StubConfig {
        slots: Some(2),
        latency: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client();
    let started = Instant::now();
    let prompts: Vec<String> = (0..6).map(|i| format!("{i} + 1")).collect();
    let reqs = prompts.iter().map(|p| chat(&c, &stub, p));
    let res = futures::future::join_all(reqs).await;
    let elapsed = started.elapsed();
    assert!(res.iter().all(|r| r.as_ref().unwrap().status() == 200));
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    let s = stub.stats().snapshot();
    assert_eq!((s.ok, s.over_capacity, s.in_flight), (6, 0, 0));
    assert_eq!(s.max_in_flight, 6, "all six were in flight, four waiting");
}

#[tokio::test]
async fn latency_is_applied() {
    let stub = StubServer::start(StubConfig {
        latency: Duration::from_millis(200),
        latency_jitter: Duration::from_millis(50),
        ..Default::default()
    })
    .await
    .unwrap();
    let started = Instant::now();
    assert_eq!(chat(&client(), &stub, "x").await.unwrap().status(), 200);
    let took = started.elapsed();
    // At least the latency (a sleep never ends early); the upper bound only
    // catches a unit mistake (seconds for milliseconds), not load.
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(20),
        "{took:?}"
    );
}

#[tokio::test]
async fn records_authorization_headers() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let c = client();
    let url = format!("{}/chat/completions", stub.base_url());
    let body = json!({"messages": [{"role": "user", "content": "x"}]});
    for key in ["k1", "k1", "k2"] {
        c.post(&url)
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    c.post(&url).json(&body).send().await.unwrap();
    let stats = stub.stats();
    assert_eq!(stats.authorization_headers(), ["Bearer k1", "Bearer k2"]);
    let s = stats.snapshot();
    assert_eq!((s.with_authorization, s.without_authorization), (3, 1));
}

#[tokio::test]
async fn many_concurrent_requests_all_succeed() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let c = client();
    let url = format!("{}/chat/completions", stub.base_url());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..32 {
        let (c, url) = (c.clone(), url.clone());
        tasks.spawn(async move {
            for i in 0..100 {
                let v: Value = c
                    .post(&url)
                    .json(&json!({"messages": [{"role": "user", "content": format!("{w} * {i}")}]}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(v["choices"][0]["message"]["content"], (w * i).to_string());
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let s = stub.stats().snapshot();
    assert_eq!((s.requests, s.ok), (3200, 3200));
    eprintln!("3200 requests in {:?}", started.elapsed());
}

#[tokio::test]
async fn drop_stops_the_server_and_serve_returns_on_shutdown() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let addr = stub.addr();
    drop(stub);
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "still listening on {addr}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(vigil_stub::serve(listener, StubConfig::default(), async {
        let _ = rx.await;
    }));
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A worker opens as many connections as it has calls in flight, all at once.
/// A listener that queues only 128 (tokio's `TcpListener::bind`) drops the
/// SYNs beyond a full queue, and each of those connections waits out TCP's
/// 1 s retransmission: at 1,024 calls that cost the benchmark's
/// latency-bound row several points. `vigil_stub::bind` queues far more than
/// that; here nothing accepts, so every connection that completes its
/// handshake was queued. (With tokio's `bind`, 129 of 600 complete.)
#[tokio::test]
async fn the_listener_queues_more_connections_than_tokio_s_default_while_nothing_accepts() {
    const CONNECTIONS: usize = 600;
    let listener = vigil_stub::bind(([127, 0, 0, 1], 0).into()).unwrap();
    let addr = listener.local_addr().unwrap();
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    assert!(
        somaxconn.is_none_or(|n| n >= CONNECTIONS),
        "net.core.somaxconn is {somaxconn:?}: the kernel caps every listener's queue there; \
         raise it (sysctl -w net.core.somaxconn=4096) to run this test"
    );
    let connects = (0..CONNECTIONS).map(|_| {
        // A dropped SYN is retried after 1 s, 3 s, ...; the queue never
        // drains here, so such a connection would never complete.
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
    });
    let outcomes = futures::future::join_all(connects).await;
    let connected = outcomes.iter().filter(|o| matches!(o, Ok(Ok(_)))).count();
    assert_eq!(
        connected, CONNECTIONS,
        "only {connected} of {CONNECTIONS} connections were queued by a listener nobody accepts on"
    );
    drop(listener);
}
