//! Liveness and readiness endpoints for Kubernetes probes.
//!
//! - `GET /healthz`: 200 while the process serves HTTP at all (liveness).
//! - `GET /readyz`: 200 when the NATS client is connected and stream
//!   `VIGIL_JOBS` exists, else 503 with the reason (readiness). A worker
//!   adds a line saying whether code execution is available
//!   (`code_exec: available: …` or `code_exec: unavailable: <what is
//!   missing>`); it does not change the status, since other jobs still run.
//!
//! The readiness answer is cached for [`READY_CACHE`] so that a probe storm
//! does not turn into a storm of JetStream API requests.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a readiness answer is reused.
pub const READY_CACHE: Duration = Duration::from_secs(2);

/// How long one readiness check may take before it counts as not ready
/// (kubelet's default probe timeout is 1 s; stay below a typical setting).
const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// Answers "is this process ready for work?"; cheap to clone (shared state).
///
/// Start the health server before connecting to NATS (liveness must answer
/// while a connect is slow) and hand the client over with [`ReadyProbe::set_client`].
#[derive(Clone, Default)]
pub struct ReadyProbe {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    client: Mutex<Option<async_nats::Client>>,
    detail: Mutex<Option<String>>,
    cached: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl ReadyProbe {
    /// A probe over `client` (`None`: not ready until one is set).
    pub fn new(client: Option<async_nats::Client>) -> ReadyProbe {
        let probe = ReadyProbe::default();
        *probe.inner.client.lock().expect("probe lock") = client;
        probe
    }

    /// Sets (or replaces) the client and forgets the cached answer.
    pub fn set_client(&self, client: async_nats::Client) {
        *self.inner.client.lock().expect("probe lock") = Some(client);
        if let Ok(mut cached) = self.inner.cached.try_lock() {
            *cached = None;
        }
    }

    /// Sets a line `/readyz` adds to its answer whatever the status.
    pub fn set_detail(&self, line: impl Into<String>) {
        *self.inner.detail.lock().expect("probe lock") = Some(line.into());
    }

    /// The line set by [`ReadyProbe::set_detail`], if any.
    pub fn detail(&self) -> Option<String> {
        self.inner.detail.lock().expect("probe lock").clone()
    }

    /// `Ok` when ready, else why not. At most one check runs at a time; its
    /// answer is reused for [`READY_CACHE`].
    pub async fn check(&self) -> Result<(), String> {
        let mut cached = self.inner.cached.lock().await;
        if let Some((at, answer)) = cached.as_ref()
            && at.elapsed() < READY_CACHE
        {
            return answer.clone();
        }
        let answer = self.check_now().await;
        *cached = Some((Instant::now(), answer.clone()));
        answer
    }

    async fn check_now(&self) -> Result<(), String> {
        let client = self.inner.client.lock().expect("probe lock").clone();
        let Some(client) = client else {
            return Err("not connected to NATS yet".to_string());
        };
        let state = client.connection_state();
        if state != async_nats::connection::State::Connected {
            return Err(format!("NATS connection is {state:?}"));
        }
        let stream = vigil_protocol::subjects::STREAM_JOBS;
        let js = async_nats::jetstream::new(client);
        match tokio::time::timeout(CHECK_TIMEOUT, js.get_stream(stream)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("stream {stream} unavailable: {e}")),
            Err(_) => Err(format!("stream {stream} lookup timed out")),
        }
    }
}

/// Serves `/healthz` and `/readyz` on `addr` (port 0 picks a free port)
/// until `shutdown` completes; returns the bound address once listening.
///
/// ```ignore
/// let addr = health::serve("127.0.0.1:0".parse()?, ReadyProbe::new(None), std::future::pending()).await?;
/// ```
pub async fn serve(
    addr: SocketAddr,
    probe: ReadyProbe,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(probe);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "health server stopped");
        }
    });
    tracing::debug!(%bound, "health endpoints listening");
    Ok(bound)
}

async fn readyz(State(probe): State<ReadyProbe>) -> (StatusCode, String) {
    let (status, mut body) = match probe.check().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    };
    if let Some(line) = probe.detail() {
        body.push_str(&line);
        body.push('\n');
    }
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get_status(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        let code = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
        (code, buf)
    }

    #[tokio::test]
    async fn live_without_nats_but_not_ready_and_stops_on_shutdown() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            ReadyProbe::new(None),
            async {
                let _ = rx.await;
            },
        )
        .await
        .unwrap();
        assert_ne!(addr.port(), 0);
        assert_eq!(get_status(addr, "/healthz").await.0, 200);
        let (code, body) = get_status(addr, "/readyz").await;
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("not connected"), "{body}");
        assert!(!body.contains("code_exec"), "{body}");
        assert_eq!(get_status(addr, "/nope").await.0, 404);
        tx.send(()).unwrap();
        // The listener closes once the server has shut down.
        let mut closed = false;
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(closed, "health server still listening after shutdown");
    }
}
