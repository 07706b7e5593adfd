//! Prometheus metrics on `GET /metrics` (`--metrics-addr`), for workers and
//! coordinators: the worker's and coordinator's own counters plus the pool
//! consumer's backlog, polled from the server.
//!
//! The body is OpenMetrics text, which Prometheus scrapes natively.

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vigil_protocol::subjects;

/// How often the consumer's backlog is read.
const POLL: Duration = Duration::from_secs(2);

type ConsumerLabels = Vec<(&'static str, String)>;

/// The registry every metric of this process goes in (names prefixed `vigil_`).
pub fn registry() -> Registry {
    Registry::with_prefix("vigil")
}

/// Adds the pool consumer's backlog gauges to `registry` and polls them
/// (`num_pending` + `num_ack_pending` of `vigil-workers-<pool>`, the lag KEDA
/// scales on) until `stop`.
pub fn poll_consumer(
    registry: &mut Registry,
    client: async_nats::Client,
    pool: &str,
    stop: CancellationToken,
) {
    let pending: Family<ConsumerLabels, Gauge> = Family::default();
    let ack_pending: Family<ConsumerLabels, Gauge> = Family::default();
    registry.register(
        "consumer_pending",
        "Jobs not yet delivered (consumer num_pending)",
        pending.clone(),
    );
    registry.register(
        "consumer_ack_pending",
        "Jobs delivered and not yet acked (consumer num_ack_pending)",
        ack_pending.clone(),
    );
    let consumer = subjects::worker_consumer(pool);
    let labels = vec![("consumer", consumer.clone())];
    let js = async_nats::jetstream::new(client);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let info = async {
                js.get_stream(subjects::STREAM_JOBS)
                    .await?
                    .consumer_info(&consumer)
                    .await
                    .map_err(async_nats::Error::from)
            };
            match tokio::time::timeout(POLL, info).await {
                Ok(Ok(info)) => {
                    pending.get_or_create(&labels).set(info.num_pending as i64);
                    ack_pending
                        .get_or_create(&labels)
                        .set(info.num_ack_pending as i64);
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "consumer info unavailable"),
                Err(_) => tracing::debug!("consumer info timed out"),
            }
        }
    });
}

/// Serves `registry` on `addr` until `stop`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(registry));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
        {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    tracing::info!(%bound, "metrics on /metrics");
    Ok(bound)
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &registry) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
