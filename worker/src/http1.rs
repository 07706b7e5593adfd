//! Plain `http://` calls on hyper's HTTP/1 connection API, with a small
//! pool of keep-alive connections per `host:port`: the request target and
//! `Host` header are made once per endpoint, and no URL is parsed per call
//! (reqwest parsed every request's URL twice, and its client stack added
//! per-request bookkeeping, at zero latency a large share of a worker's CPU).
//! [`crate::backend::BackendClient`] sends `https://` targets, and URLs with
//! userinfo, through reqwest as before.
//!
//! Each connection keeps hyper's default buffers (the same ones reqwest's
//! connections had). A request sent on a pooled connection that turns out to
//! be closed, before any of it was written, goes on another one; any other
//! failure is the attempt's, for the caller's retries.

use crate::backend::{Failed, describe_error};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HOST, HeaderMap, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_protocol::ErrorKind;

/// How long an unused connection stays in the pool (reqwest's setting was
/// the same).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Most idle connections kept per `host:port`.
const MAX_IDLE: usize = 1024;
/// The `User-Agent` every call sends.
pub(crate) const AGENT: &str = concat!("vigil-worker/", env!("CARGO_PKG_VERSION"));

/// A plain-HTTP endpoint, made once from its URL.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The request target in origin form (`/v1/chat/completions?q`).
    target: Uri,
    /// The `Host` header (the port only when the URL names one).
    host: HeaderValue,
    /// `host:port` to dial.
    addr: String,
}

impl Endpoint {
    /// The endpoint of `url`: `None` unless it is `http://` without userinfo
    /// and the environment sets no HTTP proxy (those go through reqwest).
    pub(crate) fn of(url: &reqwest::Url) -> Option<Endpoint> {
        if env_proxy() {
            return None;
        }
        Endpoint::parse(url)
    }

    /// [`Endpoint::of`] whatever the environment's proxy settings.
    fn parse(url: &reqwest::Url) -> Option<Endpoint> {
        if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        Some(Endpoint {
            target: target.parse().ok()?,
            host: HeaderValue::from_str(&host_header).ok()?,
            addr: format!("{host}:{port}"),
        })
    }
}

/// Whether the environment names a proxy for `http://` URLs: reqwest honours
/// `HTTP_PROXY`/`ALL_PROXY` (and `NO_PROXY`), so while one is set every call
/// stays on reqwest, as before this client existed. Read once per process.
fn env_proxy() -> bool {
    static SET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SET.get_or_init(|| names_a_proxy(|name| std::env::var_os(name)))
}

/// Whether `var` (an environment lookup) sets one of the variables that
/// give reqwest a proxy for `http://` URLs.
fn names_a_proxy(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|name| var(name).is_some_and(|v| !v.is_empty()))
}

/// A response: its status, headers and whole body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

/// Idle keep-alive connections by `host:port` (foldhash: two lookups per
/// call, of configured endpoints only).
#[derive(Clone, Default)]
pub(crate) struct Pool(Arc<Mutex<foldhash::HashMap<String, Vec<Idle>>>>);

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

fn connection_error(detail: String) -> Failed {
    Failed::new(ErrorKind::Connection, "connection error").excerpt(detail)
}

impl Pool {
    /// POSTs `body` with `headers` to `endpoint` and reads the whole answer
    /// (at most `max_body` bytes).
    pub(crate) async fn post(
        &self,
        endpoint: &Endpoint,
        headers: &HeaderMap,
        body: Bytes,
        max_body: usize,
    ) -> Result<Answer, Failed> {
        self.send(Method::POST, endpoint, headers, body, max_body)
            .await
    }

    /// GETs `endpoint` with `headers` and reads the whole answer (at most
    /// `max_body` bytes).
    pub(crate) async fn get(
        &self,
        endpoint: &Endpoint,
        headers: &HeaderMap,
        max_body: usize,
    ) -> Result<Answer, Failed> {
        self.send(Method::GET, endpoint, headers, Bytes::new(), max_body)
            .await
    }

    async fn send(
        &self,
        method: Method,
        endpoint: &Endpoint,
        headers: &HeaderMap,
        body: Bytes,
        max_body: usize,
    ) -> Result<Answer, Failed> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = endpoint.target.clone();
        let h = request.headers_mut();
        h.reserve(headers.len() + 2);
        h.insert(HOST, endpoint.host.clone());
        h.insert(USER_AGENT, HeaderValue::from_static(AGENT));
        for (name, value) in headers {
            h.insert(name, value.clone());
        }
        let (sender, response) = loop {
            let Some(mut sender) = self.checkout(&endpoint.addr) else {
                let mut sender = connect(&endpoint.addr).await?;
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(|e| connection_error(describe_error(&e)))?;
                break (sender, response);
            };
            // Closed meanwhile: the next one.
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => break (sender, response),
                Err(mut e) => match e.take_message() {
                    // Not written at all: another connection may take it.
                    Some(unsent) => request = unsent,
                    None => return Err(connection_error(describe_error(e.error()))),
                },
            }
        };
        let (parts, mut incoming) = response.into_parts();
        let mut bytes = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| connection_error(describe_error(&e)))?;
            if let Ok(chunk) = frame.into_data() {
                if bytes.len() + chunk.len() > max_body {
                    return Err(Failed::new(
                        ErrorKind::InvalidResponse,
                        format!("response body larger than {} MiB", max_body >> 20),
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
        }
        // The whole body read: the connection can take the next request.
        if !sender.is_closed() {
            self.checkin(&endpoint.addr, sender);
        }
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: bytes,
        })
    }

    /// The most recently used idle connection to `addr` that is not too old.
    fn checkout(&self, addr: &str) -> Option<SendRequest<Full<Bytes>>> {
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let idle = pool.get_mut(addr)?;
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() >= IDLE_TIMEOUT {
                // The rest are older still.
                idle.clear();
                break;
            }
            if !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    }

    fn checkin(&self, addr: &str, sender: SendRequest<Full<Bytes>>) {
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let idle = pool.entry(addr.to_string()).or_default();
        // Oldest first: drop the ones unused for too long, and any beyond the bound.
        let stale = idle
            .iter()
            .take_while(|e| e.since.elapsed() >= IDLE_TIMEOUT)
            .count()
            .max((idle.len() + 1).saturating_sub(MAX_IDLE));
        idle.drain(..stale);
        idle.push(Idle {
            sender,
            since: Instant::now(),
        });
    }
}

/// A new connection to `addr`, its IO driven by a task of its own.
async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>, Failed> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| connection_error(format!("tcp connect error: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| connection_error(describe_error(&e)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Option<Endpoint> {
        Endpoint::parse(&reqwest::Url::parse(url).unwrap())
    }

    #[test]
    fn a_proxy_in_the_environment_keeps_calls_on_reqwest() {
        let env = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                set.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert!(!names_a_proxy(env(&[])));
        assert!(!names_a_proxy(env(&[
            ("HTTP_PROXY", ""),
            ("HTTPS_PROXY", "http://p:3128")
        ])));
        assert!(names_a_proxy(env(&[("http_proxy", "http://p:3128")])));
        assert!(names_a_proxy(env(&[("ALL_PROXY", "socks5://p:1080")])));
    }

    #[test]
    fn plain_urls_become_endpoints() {
        let e = endpoint("http://127.0.0.1:8000/v1/chat/completions").unwrap();
        assert_eq!(e.target, "/v1/chat/completions");
        assert_eq!(e.host, "127.0.0.1:8000");
        assert_eq!(e.addr, "127.0.0.1:8000");
        let e = endpoint("http://models.internal/v1/completions?api-version=2").unwrap();
        assert_eq!(e.target, "/v1/completions?api-version=2");
        assert_eq!(e.host, "models.internal");
        assert_eq!(e.addr, "models.internal:80");
        let e = endpoint("http://[::1]:9000/v1/completions").unwrap();
        assert_eq!(
            (e.host.to_str().unwrap(), e.addr.as_str()),
            ("[::1]:9000", "[::1]:9000")
        );
    }

    #[test]
    fn tls_and_userinfo_stay_with_reqwest() {
        assert!(endpoint("https://api.example.com/v1/chat/completions").is_none());
        assert!(endpoint("http://user:pass@127.0.0.1:8000/v1/completions").is_none());
        assert!(endpoint("http://user@127.0.0.1:8000/v1/completions").is_none());
    }
}
