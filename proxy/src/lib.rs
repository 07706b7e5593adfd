//! vigil's capture proxy: an OpenAI-compatible reverse proxy that passes
//! traffic through untouched and publishes a sampled, redacted copy of each
//! request/response pair to `vigil.capture.<app>` (stream `VIGIL_CAPTURE`).
//!
//! # Layout
//!
//! - [`run`] serves a [`ProxyConfig`] on a bound listener until `shutdown`
//!   (the `vigil proxy` command only parses flags, connects NATS and calls it).
//! - `forward` (private): the one handler. Every path is forwarded to the
//!   upstream with its method, headers (minus hop-by-hop ones) and body; the
//!   response body is streamed back chunk by chunk as it arrives, unchanged.
//!   `POST …/chat/completions`, `…/completions` and `…/embeddings` are
//!   capturable: when [`sample`] keeps the request, the chunks are also
//!   copied into a recorder that, when the body ends (or the client goes
//!   away), hands the raw exchange to the queue. No parsing happens there.
//! - [`publish`]: the bounded capture queue and its publisher task, which
//!   turns exchanges into [`vigil_protocol::Capture`]s ([`assemble`], with
//!   [`redact`]ion) and publishes them. A full queue, a NATS error or a
//!   publish timeout drops the capture and counts it ([`metrics`]); the
//!   user's request never waits on NATS.
//! - [`trace`]: continues the incoming `traceparent` (or starts a trace) and
//!   forwards it upstream; the trace id goes in the capture.
//!
//! ```no_run
//! # async fn demo(nats: async_nats::Client) -> Result<(), vigil_proxy::ProxyError> {
//! let cfg = vigil_proxy::ProxyConfig {
//!     upstream: "http://127.0.0.1:8000/v1".parse().unwrap(),
//!     app: "support".into(),
//!     ..Default::default()
//! };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! vigil_proxy::run(cfg, listener, nats, tokio_util::sync::CancellationToken::new()).await
//! # }
//! ```

pub mod assemble;
mod forward;
pub mod metrics;
pub mod publish;
pub mod redact;
pub mod sample;
pub mod trace;

pub use metrics::Metrics;
pub use publish::{DropReason, PublishConfig};

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// A redaction pattern or file is bad.
    #[error(transparent)]
    Redact(#[from] redact::RedactError),
    /// Serving failed.
    #[error("proxy server: {0}")]
    Io(#[from] std::io::Error),
}

/// What a proxy serves and how it captures.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The OpenAI-compatible server traffic goes to, e.g. `http://host:8000/v1`.
    /// Request paths are appended to its path unless they already start with it.
    pub upstream: url::Url,
    /// The application name (subject `vigil.capture.<app>`).
    pub app: String,
    /// Fraction of capturable requests captured (0..=1), decided on the request id.
    pub sample_rate: f64,
    /// Custom redaction kinds, (name, regex), on top of the built-in ones.
    pub redact: Vec<(String, String)>,
    /// Most response bytes kept for one capture (the client always gets all of them).
    pub max_capture_bytes: usize,
    /// Largest request body accepted (413 beyond).
    pub max_request_bytes: usize,
    /// How long to wait for the upstream's TCP connect.
    pub connect_timeout: Duration,
    /// The queue and publisher.
    pub publish: PublishConfig,
    /// The counters (register them in a registry to serve them).
    pub metrics: Metrics,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            upstream: "http://127.0.0.1:8000/v1".parse().expect("a valid URL"),
            app: "default".into(),
            sample_rate: 1.0,
            redact: Vec::new(),
            max_capture_bytes: 512 * 1024,
            max_request_bytes: 32 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            publish: PublishConfig::default(),
            metrics: Metrics::default(),
        }
    }
}

impl ProxyConfig {
    /// Checks the settings and builds the redactor: the sample rate is in
    /// 0..=1, the upstream is http(s), every redaction regex compiles.
    pub fn validate(&self) -> Result<redact::Redactor, ProxyError> {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(ProxyError::Config(format!(
                "--sample must be between 0 and 1, not {}",
                self.sample_rate
            )));
        }
        if !matches!(self.upstream.scheme(), "http" | "https") {
            return Err(ProxyError::Config(format!(
                "--upstream must be an http(s) URL, not {}",
                self.upstream
            )));
        }
        if self.app.trim().is_empty() {
            return Err(ProxyError::Config("--app must not be empty".into()));
        }
        Ok(redact::Redactor::new(&self.redact)?)
    }
}

/// Serves `cfg` on `listener` until `shutdown`, then lets in-flight requests
/// finish and the publisher drain its queue (each publish bounded by its timeout).
pub async fn run(
    cfg: ProxyConfig,
    listener: tokio::net::TcpListener,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), ProxyError> {
    let redactor = cfg.validate()?;
    let publish_cfg = PublishConfig {
        app: cfg.app.clone(),
        ..cfg.publish.clone()
    };
    let publisher_stop = CancellationToken::new();
    let (queue, publisher) = publish::spawn(
        nats,
        publish_cfg,
        redactor,
        cfg.metrics.clone(),
        publisher_stop.clone(),
    );
    let app = forward::router(&cfg, queue)?;
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    publisher_stop.cancel();
    let _ = publisher.await;
    served?;
    Ok(())
}
