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
