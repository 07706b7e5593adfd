//! Header names. NATS header names are case-sensitive: use these constants.

/// `application/msgpack` on every vigil message.
pub const CONTENT_TYPE: &str = "Content-Type";
/// The integer schema version the writer wrote ([`crate::SCHEMA_VERSION`]).
pub const SCHEMA: &str = "Vigil-Schema";
/// The oldest reader schema that can decode the message
/// ([`crate::SCHEMA_MIN_VERSION`]); see [`check_schema`].
pub const SCHEMA_MIN: &str = "Vigil-Schema-Min";
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

/// Why a reader does not read a message's schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The message needs a newer reader.
    #[error("schema version {schema} (readable from {min}), this reader reads up to {reader}")]
    TooNew {
        /// The writer's `Vigil-Schema`.
        schema: u32,
        /// The oldest reader that decodes it (`Vigil-Schema-Min`, else `schema`).
        min: u32,
        /// The reader's own schema version.
        reader: u32,
    },
    /// A header is missing or not an integer, or `Vigil-Schema-Min` exceeds `Vigil-Schema`.
    #[error("{0}")]
    Unreadable(String),
}

/// The schema rule: whether a reader of schema `reader` can read a message
/// whose headers say `Vigil-Schema: N` (`schema`) and, optionally,
/// `Vigil-Schema-Min: M` (`schema_min`).
///
/// A writer sets `M` to the oldest reader schema that decodes its messages
/// correctly. A change that only adds optional fields (readers ignore unknown
/// fields) raises `N` and keeps `M`; a change an older reader would misread
/// raises both. A reader accepts when `M <= reader`, and, for writers that
/// send no `Vigil-Schema-Min`, when `N <= reader`. Older or equal schemas are
/// always accepted (`M <= N <= reader`).
///
/// ```
/// use vigil_protocol::headers::{check_schema, SchemaError};
/// assert!(check_schema(Some("1"), None, 1).is_ok());
/// assert!(check_schema(Some("3"), Some("1"), 1).is_ok(), "newer, additive only");
/// assert!(matches!(check_schema(Some("3"), Some("2"), 1), Err(SchemaError::TooNew { .. })));
/// assert!(matches!(check_schema(Some("2"), None, 1), Err(SchemaError::TooNew { .. })));
/// assert!(matches!(check_schema(None, None, 1), Err(SchemaError::Unreadable(_))));
/// assert!(matches!(check_schema(Some("1"), Some("2"), 2), Err(SchemaError::Unreadable(_))));
/// ```
pub fn check_schema(
    schema: Option<&str>,
    schema_min: Option<&str>,
    reader: u32,
) -> Result<(), SchemaError> {
    let parse = |name: &str, value: &str| {
        value
            .trim()
            .parse::<u32>()
            .map_err(|_| SchemaError::Unreadable(format!("unreadable {name} header `{value}`")))
    };
    let schema = match schema {
        Some(v) => parse(SCHEMA, v)?,
        None => return Err(SchemaError::Unreadable(format!("no {SCHEMA} header"))),
    };
    let min = match schema_min {
        Some(v) => parse(SCHEMA_MIN, v)?,
        None => schema,
    };
    if min > schema {
        return Err(SchemaError::Unreadable(format!(
            "{SCHEMA_MIN} {min} is above {SCHEMA} {schema}"
        )));
    }
    if min > reader {
        return Err(SchemaError::TooNew {
            schema,
            min,
            reader,
        });
    }
    Ok(())
}

/// Splits a job's or result's dedup id `<run_id>/<job_index>` (the inverse of
/// [`job_msg_id`]); `None` when it is not one.
///
/// ```
/// use vigil_protocol::headers::{job_msg_id, parse_job_msg_id};
/// assert_eq!(parse_job_msg_id(&job_msg_id("r1", 7)), Some(("r1", 7)));
/// assert_eq!(parse_job_msg_id("r1/x"), None);
/// assert_eq!(parse_job_msg_id("/3"), None);
/// ```
pub fn parse_job_msg_id(id: &str) -> Option<(&str, u64)> {
    let (run_id, index) = id.rsplit_once('/')?;
    let index = index.parse().ok()?;
    (!run_id.is_empty()).then_some((run_id, index))
}
