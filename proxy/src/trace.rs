//! W3C `traceparent`: the proxy continues an incoming trace (same trace id,
//! a new parent span id for the upstream call) or starts one.

use rand::Rng;

/// The trace id (32 hex) and the `traceparent` to send upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHop {
    /// The trace id, lowercase hex.
    pub trace_id: String,
    /// `00-<trace_id>-<new span id>-<flags>`.
    pub traceparent: String,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Continues `incoming` when it is a valid version-00 `traceparent`, else starts a trace.
///
/// ```
/// use vigil_proxy::trace::continue_trace;
/// let hop = continue_trace(Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
/// assert_eq!(hop.trace_id, "0af7651916cd43dd8448eb211c80319c");
/// assert!(hop.traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
/// assert!(hop.traceparent.ends_with("-01"));
/// assert!(!hop.traceparent.contains("b7ad6b7169203331"));
/// let fresh = continue_trace(Some("garbage"));
/// assert_eq!(fresh.trace_id.len(), 32);
/// ```
pub fn continue_trace(incoming: Option<&str>) -> TraceHop {
    let mut rng = rand::rng();
    let span = format!("{:016x}", rng.random::<u64>() | 1);
    let parsed = incoming.and_then(|t| {
        let parts: Vec<&str> = t.trim().split('-').collect();
        match parts.as_slice() {
            [v, trace, parent, flags]
                if *v == "00"
                    && is_hex(trace, 32)
                    && is_hex(parent, 16)
                    && is_hex(flags, 2)
                    && trace.bytes().any(|b| b != b'0') =>
            {
                Some((trace.to_string(), flags.to_string()))
            }
            _ => None,
        }
    });
    let (trace_id, flags) =
        parsed.unwrap_or_else(|| (format!("{:032x}", rng.random::<u128>() | 1), "01".into()));
    TraceHop {
        traceparent: format!("00-{trace_id}-{span}-{flags}"),
        trace_id,
    }
}
