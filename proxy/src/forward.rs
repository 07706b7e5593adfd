//! The handler: forward every request, stream the response back as it
//! arrives, and record sampled exchanges for the publisher.

use crate::assemble::{Endpoint, Exchange};
use crate::metrics::Metrics;
use crate::publish::CaptureQueue;
use crate::{ProxyConfig, ProxyError, sample, trace};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Headers that belong to one connection, never forwarded.
const HOP_BY_HOP: &[header::HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

struct Shared {
    http: reqwest::Client,
    /// The upstream's origin, e.g. `http://host:8000`.
    origin: String,
    /// The upstream's path without its trailing slash, e.g. `/v1`.
    base_path: String,
    sample_rate: f64,
    max_capture_bytes: usize,
    max_request_bytes: usize,
    queue: CaptureQueue,
    metrics: Metrics,
}

/// The upstream URL of a request to `path` (`path_and_query` with its
/// query): the upstream's base path is prepended unless `path` starts with it.
fn upstream_url(origin: &str, base_path: &str, path: &str, path_and_query: &str) -> String {
    if base_path.is_empty()
        || path == base_path
        || path.starts_with(base_path) && path[base_path.len()..].starts_with('/')
    {
        format!("{origin}{path_and_query}")
    } else {
        format!("{origin}{base_path}{path_and_query}")
    }
}

/// The proxy's router: one fallback handler for every method and path.
pub(crate) fn router(cfg: &ProxyConfig, queue: CaptureQueue) -> Result<Router, ProxyError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .connect_timeout(cfg.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .build()
        .map_err(|e| ProxyError::Config(format!("cannot build the HTTP client: {e}")))?;
    let u = &cfg.upstream;
    let origin = u[..url::Position::BeforePath].to_string();
    let shared = Shared {
        http,
        origin,
        base_path: u.path().trim_end_matches('/').to_string(),
        sample_rate: cfg.sample_rate,
        max_capture_bytes: cfg.max_capture_bytes,
        max_request_bytes: cfg.max_request_bytes,
        queue,
        metrics: cfg.metrics.clone(),
    };
    Ok(Router::new().fallback(handle).with_state(Arc::new(shared)))
}

fn error_response(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"error": {"message": message, "type": "proxy_error", "param": null, "code": null}});
    (status, axum::Json(body)).into_response()
}

/// Collects the response of one sampled exchange; hands it to the queue when
/// dropped (body finished, failed, or the client went away).
struct Recorder {
    ex: Option<Exchange>,
    started: Instant,
    limit: usize,
    finished: bool,
    /// Bytes of a body of known length (`Content-Length`) still to come: the
    /// server stops reading the body when it has them all, so the body's end
    /// may never be polled.
    remaining: Option<u64>,
    queue: CaptureQueue,
}

impl Recorder {
    fn push(&mut self, chunk: &[u8]) {
        if let Some(ex) = self.ex.as_mut() {
            let room = self.limit.saturating_sub(ex.response.len());
            if chunk.len() > room {
                ex.truncated = true;
            }
            ex.response
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        if let Some(left) = self.remaining.as_mut() {
            *left = left.saturating_sub(chunk.len() as u64);
            if *left == 0 {
                self.finished = true;
            }
        }
    }

    fn fail(&mut self, error: String) {
        if let Some(ex) = self.ex.as_mut() {
            ex.error = Some(error);
        }
        self.finished = true;
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut ex) = self.ex.take() {
            ex.latency = self.started.elapsed();
            if !self.finished && ex.error.is_none() {
                ex.error = Some("the client went away before the response ended".into());
            }
            self.queue.offer(ex);
        }
    }
}

async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let started = Instant::now();
    let time = SystemTime::now();
    let (parts, body) = req.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, sh.max_request_bytes).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("vigil proxy: cannot read the request body: {e}"),
            );
        }
    };
    let path = parts.uri.path().to_string();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let endpoint = if parts.method == Method::POST {
        Endpoint::of(&path)
    } else {
        None
    };
    sh.metrics.request(endpoint.map_or("other", Endpoint::name));
    let hop = trace::continue_trace(
        parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok()),
    );
    let capture = endpoint.and_then(|ep| {
        let id = sample::request_id(&parts.headers, parts.method.as_str(), &path, &body);
        if sample::sampled(&id, sh.sample_rate) {
            Some((ep, id))
        } else {
            sh.metrics.sampled_out.inc();
            None
        }
    });
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    if let Ok(v) = HeaderValue::from_str(&hop.traceparent) {
        headers.insert("traceparent", v);
    }
    let url = upstream_url(&sh.origin, &sh.base_path, &path, path_and_query);
    let exchange = |ep: Endpoint, request_id: String| Exchange {
        request_id,
        endpoint: ep,
        path: path.clone(),
        headers: parts.headers.clone(),
        request: body.clone(),
        status: 0,
        sse: false,
        response: Vec::new(),
        truncated: false,
        time,
        latency: Default::default(),
        ttfb: None,
        trace_id: hop.trace_id.clone(),
        error: None,
    };
    let sent = sh
        .http
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body.clone())
        .send()
        .await;
    let upstream = match sent {
        Ok(r) => r,
        Err(e) => {
            let message = format!("vigil proxy: upstream unreachable: {e}");
            tracing::warn!(error = %e, "upstream unreachable");
            if let Some((ep, id)) = capture {
                let mut ex = exchange(ep, id);
                ex.status = StatusCode::BAD_GATEWAY.as_u16();
                ex.latency = started.elapsed();
                ex.error = Some(message.clone());
                sh.queue.offer(ex);
            }
            return error_response(StatusCode::BAD_GATEWAY, &message);
        }
    };
    let status = upstream.status();
    let mut response_headers = upstream.headers().clone();
    strip_hop_by_hop(&mut response_headers);
    let recorder = capture.map(|(ep, id)| {
        let mut ex = exchange(ep, id);
        ex.status = status.as_u16();
        ex.ttfb = Some(started.elapsed());
        ex.sse = response_headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        Recorder {
            ex: Some(ex),
            started,
            limit: sh.max_capture_bytes,
            finished: false,
            remaining: upstream.content_length(),
            queue: sh.queue.clone(),
        }
    });
    let chunks = futures::stream::unfold(Some((upstream, recorder)), |state| async move {
        let (mut upstream, mut recorder) = state?;
        match upstream.chunk().await {
            Ok(Some(chunk)) => {
                if let Some(r) = recorder.as_mut() {
                    r.push(&chunk);
                }
                Some((Ok(chunk), Some((upstream, recorder))))
            }
            Ok(None) => {
                if let Some(r) = recorder.as_mut() {
                    r.finished = true;
                }
                None
            }
            Err(e) => {
                if let Some(r) = recorder.as_mut() {
                    r.fail(format!("upstream body failed: {e}"));
                }
                Some((Err(e), None))
            }
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_paths_join_without_doubling() {
        let j = |base: &str, path: &str| upstream_url("http://h:1", base, path, path);
        assert_eq!(
            j("/v1", "/v1/chat/completions"),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            j("/v1", "/chat/completions"),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(j("/v1", "/v1x"), "http://h:1/v1/v1x");
        assert_eq!(j("", "/health"), "http://h:1/health");
        assert_eq!(
            upstream_url("http://h:1", "/v1", "/v1/models", "/v1/models?a=1"),
            "http://h:1/v1/models?a=1"
        );
    }
}
