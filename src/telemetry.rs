//! OpenTelemetry export: OTLP traces when an endpoint is configured, nothing
//! at all otherwise.
//!
//! Configuration is the standard environment: `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns export on;
//! `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL` picks
//! `http/protobuf` (the default) or `grpc`; `OTEL_EXPORTER_OTLP_HEADERS`,
//! `_TIMEOUT` and the per-signal variants are read by the exporter itself;
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the process.
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keep it off.
//!
//! Without an endpoint no exporter, no batch thread and no OpenTelemetry
//! layer exist: spans cost what a disabled `tracing` span costs.
//!
//! The gRPC exporter (tonic) needs a Tokio runtime for its connection, while
//! the batch processor exports from its own thread and must outlive the
//! command's runtime (it flushes after it). So gRPC export gets a private
//! one-thread runtime, kept by the [`Guard`] until the flush is done.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Keeps the tracer provider until exit, then flushes it.
#[derive(Default)]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
    /// The gRPC exporter's runtime, dropped only after the flush.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Guard {
    /// Flushes and stops the exporter. Call it off the async runtime (the
    /// batch processor and its blocking HTTP client have their own thread).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            errln!("warning: flushing traces at exit failed: {e}");
        }
        drop(self.runtime);
    }
}

/// An exporter set up by [`init`].
pub struct Exporting {
    /// The tracer provider.
    pub provider: SdkTracerProvider,
    /// The gRPC exporter's runtime (none for HTTP).
    pub runtime: Option<tokio::runtime::Runtime>,
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

/// The exporter the environment asks for, with the gRPC exporter's runtime.
fn exporter() -> anyhow::Result<(
    opentelemetry_otlp::SpanExporter,
    Option<tokio::runtime::Runtime>,
)> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    match protocol().as_str() {
        "" | "http/protobuf" => Ok((
            builder
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .build()?,
            None,
        )),
        "grpc" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("vigil-otlp-grpc")
                .enable_all()
                .build()?;
            // tonic spawns the channel's connection task on this runtime.
            let exporter = {
                let _entered = runtime.enter();
                builder.with_tonic().build()?
            };
            Ok((exporter, Some(runtime)))
        }
        other => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported (use http/protobuf or grpc)"
        ),
    }
}

/// Sets up export when the environment asks for it. `default_service` names
/// the process unless `OTEL_SERVICE_NAME` does. Call before the async
/// runtime starts (the blocking HTTP exporter must not be built inside it).
pub fn init(default_service: &'static str) -> anyhow::Result<Option<Exporting>> {
    if !wanted() {
        return Ok(None);
    }
    // reqwest is built without a default TLS provider (see the worker's backend).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (exporter, runtime) = exporter()?;
    let mut resource = Resource::builder();
    if !env_set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(default_service);
    }
    let provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(Some(Exporting { provider, runtime }))
}

/// The tracer vigil's spans go to.
pub fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::Tracer {
    provider.tracer("vigil")
}

impl From<Option<Exporting>> for Guard {
    fn from(exporting: Option<Exporting>) -> Self {
        match exporting {
            Some(e) => Guard {
                provider: Some(e.provider),
                runtime: e.runtime,
            },
            None => Guard::default(),
        }
    }
}
