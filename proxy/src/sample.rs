//! Deterministic sampling on a request id: the same id is in or out at a
//! given rate wherever it is decided, so two monitors sampling 10% of one
//! app's traffic see the same 10%.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// Request headers read as the request's id, in this order.
pub const REQUEST_ID_HEADERS: &[&str] = &["x-request-id", "request-id", "x-correlation-id"];

/// The request's id: the first non-empty [`REQUEST_ID_HEADERS`] value, else
/// `sha256:` and the hex of the first 16 bytes of SHA-256 over method, path and body.
///
/// ```
/// use axum::http::HeaderMap;
/// let mut h = HeaderMap::new();
/// let a = vigil_proxy::sample::request_id(&h, "POST", "/v1/chat/completions", b"{}");
/// assert!(a.starts_with("sha256:"));
/// h.insert("x-request-id", "req-7".parse().unwrap());
/// assert_eq!(vigil_proxy::sample::request_id(&h, "POST", "/v1/chat/completions", b"{}"), "req-7");
/// ```
pub fn request_id(headers: &HeaderMap, method: &str, path: &str, body: &[u8]) -> String {
    for name in REQUEST_ID_HEADERS {
        if let Some(v) = headers.get(*name).and_then(|v| v.to_str().ok()) {
            let v = v.trim();
            if !v.is_empty() {
                return v.to_string();
            }
        }
    }
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    format!("sha256:{}", hex::encode(&h.finalize()[..16]))
}

pub use vigil_protocol::capture::sampled;
