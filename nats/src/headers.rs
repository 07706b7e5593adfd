//! The NATS header maps of vigil messages, built from the header names of
//! [`vigil_protocol::headers`]: one builder for coordinator, worker and proxy,
//! so the sides cannot drift apart.

use vigil_protocol::headers::{CONTENT_TYPE, MSG_ID, RUN_ID, SCHEMA, SCHEMA_MIN};

/// The headers every vigil message carries (`Content-Type`, `Vigil-Schema`,
/// `Vigil-Schema-Min`) and the run it belongs to (`Vigil-Run-Id`). One builder for coordinator
/// and worker, so the two sides cannot drift apart.
///
/// ```
/// let h = vigil_nats::headers::message_headers("r1");
/// assert_eq!(h.get("Vigil-Schema").unwrap().as_str(), vigil_protocol::SCHEMA_VERSION.to_string());
/// assert_eq!(h.get("Vigil-Schema-Min").unwrap().as_str(), vigil_protocol::SCHEMA_MIN_VERSION.to_string());
/// assert_eq!(h.get("Vigil-Run-Id").unwrap().as_str(), "r1");
/// ```
pub fn message_headers(run_id: &str) -> async_nats::HeaderMap {
    let mut headers = schema_headers();
    headers.insert(RUN_ID, run_id);
    headers
}

/// `Content-Type`, `Vigil-Schema` and `Vigil-Schema-Min`: what every vigil message carries.
fn schema_headers() -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(CONTENT_TYPE, vigil_protocol::CONTENT_TYPE);
    headers.insert(SCHEMA, vigil_protocol::SCHEMA_VERSION.to_string().as_str());
    headers.insert(
        SCHEMA_MIN,
        vigil_protocol::SCHEMA_MIN_VERSION.to_string().as_str(),
    );
    headers
}

/// The headers of a [`vigil_protocol::Capture`]: the schema headers and
/// `Nats-Msg-Id: <capture_id>` (a capture published twice is stored once).
///
/// ```
/// let h = vigil_nats::headers::capture_headers("c1");
/// assert_eq!(h.get("Nats-Msg-Id").unwrap().as_str(), "c1");
/// assert_eq!(h.get("Content-Type").unwrap().as_str(), "application/msgpack");
/// assert!(h.get("Vigil-Schema").is_some() && h.get("Vigil-Run-Id").is_none());
/// ```
pub fn capture_headers(capture_id: &str) -> async_nats::HeaderMap {
    let mut headers = schema_headers();
    headers.insert(MSG_ID, capture_id);
    headers
}
