//! Header names. NATS header names are case-sensitive: use these constants.

/// `application/msgpack` on every vigil message.
pub const CONTENT_TYPE: &str = "Content-Type";
/// The integer schema version ([`crate::SCHEMA_VERSION`]).
pub const SCHEMA: &str = "Vigil-Schema";
/// JetStream's deduplication id: `<run_id>/<job_index>` on jobs and results.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace state.
pub const TRACESTATE: &str = "tracestate";
/// The run a message belongs to (lets a consumer filter without decoding).
pub const RUN_ID: &str = "Vigil-Run-Id";

/// The dedup id of a job or of its result: `<run_id>/<job_index>`.
///
/// ```
/// assert_eq!(vigil_protocol::headers::job_msg_id("r1", 7), "r1/7");
/// ```
pub fn job_msg_id(run_id: &str, job_index: u64) -> String {
    format!("{run_id}/{job_index}")
}

/// The headers every vigil message carries (`Content-Type`, `Vigil-Schema`)
/// and the run it belongs to (`Vigil-Run-Id`). One builder for coordinator
/// and worker, so the two sides cannot drift apart.
///
/// ```
/// let h = vigil_protocol::headers::message_headers("r1");
/// assert_eq!(h.get("Vigil-Schema").unwrap().as_str(), vigil_protocol::SCHEMA_VERSION.to_string());
/// assert_eq!(h.get("Vigil-Run-Id").unwrap().as_str(), "r1");
/// ```
#[cfg(feature = "nats")]
pub fn message_headers(run_id: &str) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(CONTENT_TYPE, crate::CONTENT_TYPE);
    headers.insert(SCHEMA, crate::SCHEMA_VERSION.to_string().as_str());
    headers.insert(RUN_ID, run_id);
    headers
}
