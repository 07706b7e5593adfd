//! The worker's spans: a job span per job (child of the coordinator's run span,
//! whose context comes in the job's NATS headers), a model-call span per item
//! with the OpenTelemetry GenAI attributes, and a span per scorer under it.
//!
//! Tracing is on when the process installed an exporter and said so with
//! [`set_enabled`]. When it is off, the per-item spans are [`Span::none`] and
//! nothing is allocated per item; the job span stays (one per job) so that log
//! lines of a job carry its run and job index.

use async_nats::HeaderMap;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Array, StringValue, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use vigil_nats::trace_context;
use vigil_protocol::{EndpointKind, Item, Job, Prompt, Score, TargetSpec};

use crate::backend::{CallFailure, Completion};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Says whether spans are exported (set once at start-up by the binary).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The span of one job, parented on the trace context in the job's headers.
pub fn job_span(headers: Option<&HeaderMap>, job: &Job, delivery: u64, worker: &str) -> Span {
    let span = tracing::info_span!(
        "vigil.job",
        otel.name = "job",
        vigil.run_id = %job.run_id,
        vigil.job = job.job_index,
        vigil.items = job.items.len(),
        vigil.delivery = delivery,
        vigil.worker = %worker,
        trace_id = Empty,
    );
    if enabled() {
        if let Some(headers) = headers {
            let parent = trace_context::extract(headers);
            if parent.span().span_context().is_valid() {
                // Must come before the span is first entered.
                let _ = span.set_parent(parent);
            }
        }
        record_trace_id(&span);
    }
    span
}

/// Records the span's trace id as a field, so every log line inside it
/// (text or JSON) names the trace.
pub fn record_trace_id(span: &Span) {
    if let Some((trace_id, _)) = trace_context::ids(&span.context()) {
        span.record("trace_id", trace_id.as_str());
    }
}

/// `chat` or `text_completion`: the GenAI operation of a target (a `local`
/// target's is `chat`; [`model_call_span`] names it by the prompt's form).
pub fn operation(kind: EndpointKind) -> &'static str {
    match kind {
        EndpointKind::Chat | EndpointKind::Local | EndpointKind::Recorded => "chat",
        EndpointKind::Completions => "text_completion",
    }
}

/// Host and port of a base URL (the port defaulted from the scheme).
fn server(base_url: &str) -> (String, Option<u16>) {
    match reqwest::Url::parse(base_url) {
        Ok(url) => (
            url.host_str().unwrap_or_default().to_string(),
            url.port_or_known_default(),
        ),
        Err(_) => (String::new(), None),
    }
}

/// The model-call span of one item under the current span (the job's), or
/// [`Span::none`] when tracing is off.
pub fn model_call_span(target: &TargetSpec, item: &Item) -> Span {
    if !enabled() {
        return Span::none();
    }
    // A local model takes either form of prompt: the span names the one sent.
    let op = match (target.kind, &item.prompt) {
        (EndpointKind::Local, Prompt::Completion(_)) => "text_completion",
        (kind, _) => operation(kind),
    };
    // Only the host and port of the URL: userinfo (a credential) never goes in.
    // A local model has no server: the attributes stay unset.
    let (address, port) = server(&target.base_url);
    let address = (!address.is_empty()).then(|| tracing::field::display(address));
    tracing::info_span!(
        "gen_ai.call",
        otel.name = format!("{op} {}", target.model),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = op,
        gen_ai.request.model = %target.model,
        gen_ai.request.temperature = target.params.temperature,
        gen_ai.request.max_tokens = target.params.max_tokens,
        gen_ai.request.seed = target.params.seed,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        server.address = address,
        server.port = port,
        error.type = Empty,
        vigil.item.id = %item.id,
        vigil.item.index = item.index,
        vigil.attempts = Empty,
    )
}

/// `traceparent` (and `tracestate`) of `span` for the backend's HTTP request;
/// empty when tracing is off.
pub fn http_headers(span: &Span) -> Vec<(String, String)> {
    if !enabled() {
        return Vec::new();
    }
    let cx = span.context();
    let mut fields = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut fields));
    fields.into_iter().collect()
}

/// Records what the backend answered on the model-call span.
pub fn record_completion(span: &Span, completion: &Completion) {
    if span.is_disabled() {
        return;
    }
    span.record("gen_ai.usage.input_tokens", completion.usage.input);
    span.record("gen_ai.usage.output_tokens", completion.usage.output);
    span.record("vigil.attempts", completion.attempts);
    if let Some(model) = &completion.model {
        span.record("gen_ai.response.model", model.as_str());
    }
    if let Some(reason) = &completion.finish_reason {
        // The convention's type is a string array.
        span.set_attribute(
            "gen_ai.response.finish_reasons",
            Value::Array(Array::String(vec![StringValue::from(reason.clone())])),
        );
    }
}

/// Records a failed call on the model-call span (the message is already
/// free of secrets; only the kind goes in).
pub fn record_failure(span: &Span, failure: &CallFailure) {
    if span.is_disabled() {
        return;
    }
    span.record("error.type", failure.kind.as_str());
    span.record("otel.status_code", "ERROR");
    span.record("vigil.attempts", failure.attempts);
}

/// A span for one scorer's verdict under the model-call span (a no-op when
/// `parent` is disabled).
pub fn score_span(parent: &Span, scorer: &str) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    tracing::info_span!(
        parent: parent,
        "vigil.score",
        otel.name = format!("score {scorer}"),
        vigil.scorer = %scorer,
        vigil.score.value = Empty,
        vigil.score.passed = Empty,
    )
}

/// Records a score on its span.
pub fn record_score(span: &Span, score: &Score) {
    if span.is_disabled() {
        return;
    }
    span.record("vigil.score.value", score.value);
    span.record("vigil.score.passed", score.passed);
}

/// `(trace_id, span_id)` of a span, hex; `(None, None)` when tracing is off.
pub fn span_ids(span: &Span) -> (Option<String>, Option<String>) {
    if span.is_disabled() {
        return (None, None);
    }
    match trace_context::ids(&span.context()) {
        Some((t, s)) => (Some(t), Some(s)),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_address_has_no_userinfo() {
        assert_eq!(
            server("https://user:pw@api.example.com/v1"),
            ("api.example.com".to_string(), Some(443))
        );
        assert_eq!(
            server("http://127.0.0.1:8000/v1"),
            ("127.0.0.1".to_string(), Some(8000))
        );
    }

    #[test]
    fn off_means_no_spans_and_no_headers() {
        set_enabled(false);
        let target = TargetSpec::default();
        let item = Item::default();
        let span = model_call_span(&target, &item);
        assert!(span.is_disabled());
        assert!(http_headers(&span).is_empty());
        assert_eq!(span_ids(&span), (None, None));
    }
}
