//! W3C trace context (`traceparent`, `tracestate`) carried in NATS headers.
//!
//! The carriers adapt async-nats's [`HeaderMap`] to OpenTelemetry's
//! [`Injector`]/[`Extractor`], so whatever propagator the process installed
//! (vigil installs `TraceContextPropagator`) reads and writes job headers.
//! They do no IO. Header names are validated before use, because async-nats
//! panics on an invalid one.
//!
//! ```
//! use opentelemetry::propagation::{Extractor, Injector};
//! use vigil_nats::trace_context::{HeaderExtractor, HeaderInjector};
//! let mut headers = async_nats::HeaderMap::new();
//! HeaderInjector(&mut headers).set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
//! assert_eq!(
//!     HeaderExtractor(&headers).get("traceparent"),
//!     Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
//! );
//! ```

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use std::str::FromStr;

/// Writes propagation fields into a NATS header map.
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let (Ok(name), Ok(value)) = (HeaderName::from_str(key), HeaderValue::from_str(&value))
        else {
            return;
        };
        self.0.insert(name, value);
    }
}

/// Reads propagation fields from a NATS header map.
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let name = HeaderName::from_str(key).ok()?;
        self.0.get(name).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// Writes `cx` into `headers` with the process's global propagator (nothing
/// when the context holds no valid span, as when tracing is off).
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(cx, &mut HeaderInjector(headers))
    });
}

/// The remote parent carried by `headers` (an empty context when none).
pub fn extract(headers: &HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// The `(trace_id, span_id)` of `cx`'s span as lowercase hex, when valid.
pub fn ids(cx: &Context) -> Option<(String, String)> {
    use opentelemetry::trace::TraceContextExt;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}
