//! `vigil proxy` as a user runs it: a real client talks to the stub through
//! the proxy, streamed and not; responses are unchanged byte for byte;
//! captures arrive on VIGIL_CAPTURE redacted; sampling is deterministic by
//! request id; with nats-server killed requests still succeed and the drop
//! counter on /metrics rises.

mod common;

use common::{free_addr, scrape, value, vigil};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use vigil_protocol::{Capture, codec, headers, subjects};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

/// A running `vigil proxy`, killed on drop.
struct Proxy {
    child: Child,
    base: String,
    metrics: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn start(nats_url: &str, upstream: &str, extra: &[&str]) -> Proxy {
        let listen = free_addr();
        let metrics = free_addr();
        let child = vigil()
            .args(["proxy", "--listen", &listen, "--upstream", upstream])
            .args([
                "--app",
                "support",
                "--nats",
                nats_url,
                "--metrics-addr",
                &metrics,
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let proxy = Proxy {
            child,
            base: format!("http://{listen}"),
            metrics,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&listen).is_err() || scrape(&proxy.metrics).is_none() {
            assert!(Instant::now() < until, "vigil proxy never came up");
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    /// Waits until `series` on /metrics reaches at least `at_least`.
    async fn wait_metric(&self, series: &str, at_least: f64) -> String {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(text) = scrape(&self.metrics)
                && value(&text, series) >= at_least
            {
                return text;
            }
            assert!(
                Instant::now() < until,
                "{series} never reached {at_least}: {:?}",
                scrape(&self.metrics)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let mut req = http.post(url).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.bytes().await.unwrap().to_vec())
}

/// Every capture in VIGIL_CAPTURE once it holds `n`, decoded with vigil's
/// own types after checking the schema headers.
async fn captures(nats_url: &str, n: u64) -> Vec<(Capture, Vec<u8>)> {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let until = Instant::now() + Duration::from_secs(60);
    let mut stream = loop {
        if let Ok(mut s) = js.get_stream(subjects::STREAM_CAPTURE).await
            && s.info().await.unwrap().state.messages >= n
        {
            break s;
        }
        assert!(Instant::now() < until, "fewer than {n} captures arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let msg = stream.get_raw_message(seq).await.unwrap();
        assert!(
            msg.subject.as_str().starts_with("vigil.capture."),
            "{}",
            msg.subject
        );
        let h = msg.headers.clone();
        let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
        assert_eq!(
            get(headers::CONTENT_TYPE).as_deref(),
            Some("application/msgpack")
        );
        headers::check_schema(
            get(headers::SCHEMA).as_deref(),
            get(headers::SCHEMA_MIN).as_deref(),
            vigil_protocol::SCHEMA_VERSION,
        )
        .unwrap();
        let c: Capture = codec::decode(&msg.payload).unwrap();
        assert_eq!(get(headers::MSG_ID), Some(c.capture_id.clone()));
        out.push((c, msg.payload.to_vec()));
    }
    out
}

fn chat(text: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": "stub-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

/// The stub numbers its answers (`…-stub-<n>`) and stamps the second: a
/// response through the proxy, sent between two direct ones, must equal the
/// first direct one with the next number, byte for byte.
async fn assert_same_bytes(
    http: &reqwest::Client,
    stub: &str,
    proxy: &str,
    path: &str,
    body: &serde_json::Value,
) {
    for _attempt in 0..5 {
        let (s1, t1, direct) = post(http, &format!("{stub}{path}"), body, &[]).await;
        let (s2, t2, proxied) = post(http, &format!("{proxy}/v1{path}"), body, &[]).await;
        let (_, _, after) = post(http, &format!("{stub}{path}"), body, &[]).await;
        assert_eq!((s1, &t1), (s2, &t2), "status and content type");
        let text = String::from_utf8(direct.clone()).unwrap();
        if text
            != String::from_utf8(after.clone())
                .unwrap()
                .replace(&next_id(&text, 2), &next_id(&text, 0))
        {
            continue; // the stub's clock ticked between the calls
        }
        let expected = text.replace(&next_id(&text, 0), &next_id(&text, 1));
        assert_eq!(
            String::from_utf8(proxied).unwrap(),
            expected,
            "{path} through the proxy"
        );
        return;
    }
    panic!("the stub's second kept ticking");
}

/// `-stub-<n + k>` for the `-stub-<n>` id in `text` (embeddings have none: "").
fn next_id(text: &str, k: u64) -> String {
    let Some(at) = text.find("-stub-") else {
        return String::new();
    };
    let digits: String = text[at + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    format!("-stub-{}\"", digits.parse::<u64>().unwrap() + k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_pass_unchanged_and_captures_arrive_redacted() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redact_file = dir.path().join("redact.yaml");
    std::fs::write(&redact_file, "patterns:\n  order: 'ORD-[0-9]{6}'\n").unwrap();
    let proxy = Proxy::start(
        &nats.url(),
        &stub.base_url(),
        &[
            "--redact",
            "TCK-[0-9]+",
            "--redact-file",
            redact_file.to_str().unwrap(),
        ],
    );
    let http = client();
    let stub_url = stub.base_url();

    // Byte for byte: chat and completions, streamed and not, and embeddings.
    for stream in [false, true] {
        assert_same_bytes(
            &http,
            &stub_url,
            &proxy.base,
            "/chat/completions",
            &chat("What is 12 + 7?", stream),
        )
        .await;
        let completion = serde_json::json!({"model": "m", "prompt": "say [[reply: one two three]]", "stream": stream});
        assert_same_bytes(&http, &stub_url, &proxy.base, "/completions", &completion).await;
    }
    let embed = serde_json::json!({"model": "m", "input": ["the cat sat", "on the mat"]});
    assert_same_bytes(&http, &stub_url, &proxy.base, "/embeddings", &embed).await;
    // Other paths are proxied untouched.
    let direct = http
        .get(format!("{stub_url}/models"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let proxied = http
        .get(format!("{}/v1/models", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200);
    assert_eq!(proxied.bytes().await.unwrap(), direct);
    // 5 capturable exchanges went through the proxy so far.
    proxy.wait_metric("vigil_proxy_captured_total", 5.0).await;

    // PII and secrets in the prompt, a credential in the headers, a trace to continue.
    let secret_key = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123";
    let token = "Bearer tok-ZYXWVUTSRQPONMLKJIHGFEDCBA987654";
    let prompt = format!(
        "I am jane.doe@example.com, my key is {secret_key}, ticket TCK-4242, order ORD-123456. What is 2 + 3?"
    );
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let traceparent = format!("00-{trace}-b7ad6b7169203331-01");
    for (stream, id) in [(false, "req-plain"), (true, "req-stream")] {
        let (status, _, body) = post(
            &http,
            &format!("{}/v1/chat/completions", proxy.base),
            &chat(&prompt, stream),
            &[
                ("authorization", token),
                ("x-request-id", id),
                ("traceparent", &traceparent),
                ("x-vigil-meta-tenant", "acme"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    assert!(
        stub.stats()
            .authorization_headers()
            .iter()
            .any(|a| a == token),
        "the Authorization header is forwarded upstream"
    );
    let forwarded = stub
        .stats()
        .last_traceparent()
        .expect("a traceparent upstream");
    assert!(
        forwarded.starts_with(&format!("00-{trace}-")),
        "{forwarded}"
    );
    assert!(
        !forwarded.contains("b7ad6b7169203331"),
        "a new parent span: {forwarded}"
    );

    // Every capturable request was captured (7, or more when the byte
    // comparison had to retry across a tick of the stub's clock).
    let text = scrape(&proxy.metrics).unwrap();
    let capturable: f64 = ["chat", "completions", "embeddings"]
        .iter()
        .map(|e| {
            value(
                &text,
                &format!("vigil_proxy_requests_total{{endpoint=\"{e}\"}}"),
            )
        })
        .sum();
    assert!(capturable >= 7.0, "{text}");
    proxy
        .wait_metric("vigil_proxy_captured_total", capturable)
        .await;
    let all = captures(&nats.url(), capturable as u64).await;
    assert_eq!(all.len() as f64, capturable);
    // The proxy created VIGIL_CAPTURE bounded by age and by bytes.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let config = js
        .get_stream(subjects::STREAM_CAPTURE)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    let want = vigil_nats::topology::TopologyConfig::default();
    assert_eq!(
        config.retention,
        async_nats::jetstream::stream::RetentionPolicy::Limits
    );
    assert_eq!(config.max_age, want.capture_max_age);
    assert_eq!(config.max_bytes, want.capture_max_bytes);
    assert!(config.max_bytes > 0 && !config.max_age.is_zero());
    for (c, raw) in &all {
        assert_eq!(c.app, "support");
        assert_eq!(c.status, 200);
        assert!(c.trace_id.as_ref().is_some_and(|t| t.len() == 32));
        assert!(c.latency_ms > 0.0);
        assert!(
            !c.headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("authorization")),
            "{:?}",
            c.headers
        );
        let raw = String::from_utf8_lossy(raw);
        for leak in [
            "jane.doe@example.com",
            secret_key,
            "tok-ZYXWVUTSRQPONMLKJIHGFEDCBA987654",
        ] {
            assert!(!raw.contains(leak), "{leak} leaked into a capture");
        }
    }
    let by_id = |id: &str| {
        all.iter()
            .map(|(c, _)| c)
            .find(|c| c.request_id == id)
            .unwrap()
    };
    for id in ["req-plain", "req-stream"] {
        let c = by_id(id);
        assert_eq!(c.stream, id == "req-stream");
        assert_eq!(c.endpoint, "chat");
        assert_eq!(c.model.as_deref(), Some("stub-model"));
        assert_eq!(
            c.trace_id.as_deref(),
            Some(trace),
            "the incoming trace is continued"
        );
        assert_eq!(c.response_text.as_deref(), Some("5"), "{c:?}");
        // A complete exchange has no error (a body of known length ends
        // without its end being polled).
        assert_eq!(c.error, None, "{c:?}");
        assert!(
            c.prompt.contains("[REDACTED:email]") && c.prompt.contains("[REDACTED:api_key]"),
            "{}",
            c.prompt
        );
        assert_eq!(c.messages.len(), 2);
        assert_eq!(c.metadata.get("tenant").map(String::as_str), Some("acme"));
        assert!(
            c.prompt.contains("[REDACTED:custom_1]") && c.prompt.contains("[REDACTED:order]"),
            "{}",
            c.prompt
        );
        assert!(c.redactions >= 4);
        let usage = c.usage.expect("usage");
        assert!(usage.input > 0 && usage.output == 1, "{usage:?}");
    }
    // The streamed completion's text is assembled from its deltas.
    let streamed = all
        .iter()
        .map(|(c, _)| c)
        .find(|c| c.endpoint == "completions" && c.stream)
        .unwrap();
    assert_eq!(streamed.response_text.as_deref(), Some("one two three"));
    let embedded = all
        .iter()
        .map(|(c, _)| c)
        .find(|c| c.endpoint == "embeddings")
        .unwrap();
    assert_eq!(embedded.response_text, None);
    assert_eq!(embedded.prompt, "the cat sat\non the mat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_is_deterministic_by_request_id() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let proxy = Proxy::start(&nats.url(), &stub.base_url(), &["--sample", "0.5"]);
    let http = client();
    let ids: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    for id in &ids {
        let (status, _, _) = post(
            &http,
            &format!("{}/v1/chat/completions", proxy.base),
            &chat("What is 1 + 1?", false),
            &[("x-request-id", id)],
        )
        .await;
        assert_eq!(status, 200);
    }
    let expected: Vec<&String> = ids
        .iter()
        .filter(|id| vigil_proxy::sample::sampled(id, 0.5))
        .collect();
    assert!((5..35).contains(&expected.len()), "{}", expected.len());
    let text = proxy
        .wait_metric("vigil_proxy_captured_total", expected.len() as f64)
        .await;
    assert_eq!(
        value(&text, "vigil_proxy_sampled_out_total"),
        (ids.len() - expected.len()) as f64
    );
    let got = captures(&nats.url(), expected.len() as u64).await;
    let mut got: Vec<String> = got.into_iter().map(|(c, _)| c.request_id).collect();
    got.sort();
    let mut expected: Vec<String> = expected.into_iter().cloned().collect();
    expected.sort();
    assert_eq!(
        got, expected,
        "the same ids are in the sample wherever it is decided"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_flow_with_nats_killed_and_drops_are_counted() {
    let mut nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let proxy = Proxy::start(&nats.url(), &stub.base_url(), &["--queue-capacity", "8"]);
    let http = client();
    let url = format!("{}/v1/chat/completions", proxy.base);
    let (status, _, _) = post(&http, &url, &chat("What is 2 + 2?", false), &[]).await;
    assert_eq!(status, 200);
    proxy.wait_metric("vigil_proxy_captured_total", 1.0).await;

    nats.kill_and_wait().await;
    let mut sent = 0;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        for stream in [false, true] {
            let (status, _, body) = post(&http, &url, &chat("What is 6 * 7?", stream), &[]).await;
            assert_eq!(status, 200);
            assert!(String::from_utf8_lossy(&body).contains("42"));
            sent += 1;
        }
        let text = scrape(&proxy.metrics).unwrap();
        let dropped: f64 = ["queue_full", "nats_error", "timeout"]
            .iter()
            .map(|r| {
                value(
                    &text,
                    &format!("vigil_proxy_dropped_total{{reason=\"{r}\"}}"),
                )
            })
            .sum();
        if dropped > 0.0 {
            assert_eq!(value(&text, "vigil_proxy_captured_total"), 1.0, "{text}");
            assert!(text.contains("vigil_proxy_queue_depth"), "{text}");
            break;
        }
        assert!(
            Instant::now() < until,
            "no drop counted after {sent} requests: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_and_serves_with_nats_down_from_the_start() {
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    // Nothing listens there: the proxy still serves, and counts its drops.
    let dead = format!("nats://{}", free_addr());
    let proxy = Proxy::start(&dead, &stub.base_url(), &[]);
    let http = client();
    let (status, _, body) = post(
        &http,
        &format!("{}/v1/chat/completions", proxy.base),
        &chat("What is 6 * 7?", true),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("42"));
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(&proxy.metrics).unwrap();
        if ["nats_error", "timeout"].iter().any(|r| {
            value(
                &text,
                &format!("vigil_proxy_dropped_total{{reason=\"{r}\"}}"),
            ) > 0.0
        }) {
            assert_eq!(value(&text, "vigil_proxy_captured_total"), 0.0);
            break;
        }
        assert!(Instant::now() < until, "no drop counted: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn bad_flags_exit_2_before_listening() {
    for (flag, value, says) in [
        ("--sample", "1.5", "between 0 and 1"),
        ("--redact", "(", "not a valid regex"),
        ("--upstream", "ftp://x", "http(s)"),
    ] {
        let mut cmd = vigil();
        cmd.args(["proxy", "--app", "a", "--nats", "nats://127.0.0.1:1"]);
        if flag != "--upstream" {
            cmd.args(["--upstream", "http://127.0.0.1:1/v1"]);
        }
        let out = common::run(cmd.args([flag, value]));
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{flag} {value}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_events_reach_the_client_as_they_arrive() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    // 200 ms between events: a proxy that buffered would deliver them all at once.
    let stub = StubServer::start(StubConfig {
        stream_chunk_delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let proxy = Proxy::start(&nats.url(), &stub.base_url(), &[]);
    let body =
        serde_json::json!({"model": "m", "prompt": "say [[reply: a b c d]]", "stream": true});
    let mut resp = client()
        .post(format!("{}/v1/completions", proxy.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().expect("a first event");
    let first = String::from_utf8_lossy(&first).to_string();
    assert!(first.starts_with("data: {"), "{first}");
    assert!(
        !first.contains("[DONE]"),
        "the first read held the whole stream: {first}"
    );
    let mut all = first;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        all.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(all.ends_with("data: [DONE]\n\n"), "{all}");
    let got = captures(&nats.url(), 1).await;
    assert_eq!(got[0].0.response_text.as_deref(), Some("a b c d"));
}
