//! OpenTelemetry export: OTLP traces when an endpoint is configured, nothing
//! at all otherwise.
//!
//! Configuration is the standard environment: `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns export on;
//! `OTEL_EXPORTER_OTLP_PROTOCOL` picks `http/protobuf` (the default) or `grpc`
//! (built with the `otlp-grpc` feature); `OTEL_EXPORTER_OTLP_HEADERS`,
//! `_TIMEOUT` and the per-signal variants are read by the exporter itself;
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the process.
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keep it off.
//!
//! Without an endpoint no exporter, no batch thread and no OpenTelemetry
//! layer exist: spans cost what a disabled `tracing` span costs.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Keeps the tracer provider until exit, then flushes it.
#[derive(Default)]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Guard {
    /// Flushes and stops the exporter. Call it off the async runtime (the
    /// batch processor and its blocking HTTP client have their own thread).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: flushing traces at exit failed: {e}");
        }
    }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
}

/// Whether the environment asks for trace export.
pub fn wanted() -> bool {
    (env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !env_is("OTEL_SDK_DISABLED", "true")
        && !env_is("OTEL_TRACES_EXPORTER", "none")
}

fn protocol() -> String {
    std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn exporter() -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    match protocol().as_str() {
        "" | "http/protobuf" => {}
        #[cfg(feature = "otlp-grpc")]
        "grpc" => return Ok(builder.with_tonic().build()?),
        #[cfg(not(feature = "otlp-grpc"))]
        "grpc" => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs a vigil built with `--features otlp-grpc`"
        ),
        other => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported (use http/protobuf or grpc)"
        ),
    }
    Ok(builder
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()?)
}

/// Sets up export when the environment asks for it. `default_service` names
/// the process unless `OTEL_SERVICE_NAME` does. Call before the async
/// runtime starts (the blocking HTTP exporter must not be built inside it).
pub fn init(default_service: &'static str) -> anyhow::Result<Option<SdkTracerProvider>> {
    if !wanted() {
        return Ok(None);
    }
    // reqwest is built without a default TLS provider (see the worker's backend).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = exporter()?;
    let mut resource = Resource::builder();
    if !env_set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(default_service);
    }
    let provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(Some(provider))
}

/// The tracer vigil's spans go to.
pub fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::Tracer {
    provider.tracer("vigil")
}

impl From<Option<SdkTracerProvider>> for Guard {
    fn from(provider: Option<SdkTracerProvider>) -> Self {
        Guard { provider }
    }
}
