//! Drives the stub with N concurrent keep-alive clients and prints requests/s
//! (client and server share this machine's cores, so the server alone does more).
//!
//! `cargo run --release -p vigil-stub --example stub_load -- [CONCURRENCY] [REQUESTS]`

use std::time::Instant;

use vigil_stub::{StubConfig, StubServer};

#[tokio::main]
async fn main() {
    // reqwest is built without a TLS provider; plain http needs one installed anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let conc: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let total: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let stub = StubServer::start(StubConfig::default())
        .await
        .expect("start stub");
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", stub.base_url());
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "What is 12 + 7?"}]});
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.spawn(async move {
            for _ in 0..total / conc {
                let r = client.post(&url).json(&body).send().await.expect("request");
                assert!(r.status().is_success());
                r.bytes().await.expect("body");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("client task");
    }
    let took = started.elapsed();
    let s = stub.stats().snapshot();
    println!(
        "{} requests, concurrency {conc}: {:.2?}, {:.0} req/s (ok {}, max in flight {})",
        s.requests,
        took,
        s.requests as f64 / took.as_secs_f64(),
        s.ok,
        s.max_in_flight
    );
}
