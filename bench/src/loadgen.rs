//! The direct load generator: `concurrency` tasks sending the same kind of
//! chat request a worker sends, back to back, until `total` have been
//! answered. Its rate is the backend's ceiling on this machine, the number a
//! vigil run is compared with.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a drive measured.
#[derive(Debug, Clone, Copy)]
pub struct Drive {
    /// Requests answered 200.
    pub ok: u64,
    /// Requests answered otherwise or not at all.
    pub errors: u64,
    /// From the first request sent to the last answer read.
    pub elapsed: Duration,
}

impl Drive {
    /// Answered requests per second.
    pub fn per_s(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A request body like the worker's for item `i` of the bench's dataset
/// ([`crate::spawn::question`]: distinct for every `i`).
pub fn body(i: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "stub-model",
        "messages": [
            {"role": "system", "content": "Answer with the number only."},
            {"role": "user", "content": crate::spawn::question(i)},
        ],
        "temperature": 0.0,
        "max_tokens": 16,
        "seed": 7,
    }))
    .expect("a JSON value serialises")
}

/// An HTTP client set up as the worker's is (pooled, no redirects, nodelay).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .expect("the HTTP client builds")
}

/// Sends `total` requests to `<base_url>/chat/completions` with
/// `concurrency` in flight; each answer is read in full and parsed as JSON,
/// as the worker does.
pub async fn drive(base_url: &str, concurrency: usize, total: u64) -> Drive {
    let http = client();
    let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (http, url, next, ok, errors) = (
            http.clone(),
            url.clone(),
            next.clone(),
            ok.clone(),
            errors.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let answered = async {
                    let response = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body(i))
                        .send()
                        .await
                        .ok()?;
                    let status = response.status();
                    let bytes = response.bytes().await.ok()?;
                    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
                    (status.is_success() && value.get("choices").is_some()).then_some(())
                }
                .await;
                match answered {
                    Some(()) => ok.fetch_add(1, Ordering::Relaxed),
                    None => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Drive {
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}
