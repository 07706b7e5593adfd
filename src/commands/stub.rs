//! `vigil stub`: the OpenAI-compatible stub backend as a server.

use crate::cli::StubArgs;
use crate::exit::{CommandResult, Exit, ExitContext};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vigil_stub::{StubConfig, StubStats, serve_with_stats};

pub async fn run(args: StubArgs) -> CommandResult {
    let listener = vigil_stub::bind(args.listen).infra_error()?;
    let config = StubConfig {
        latency: Duration::from_millis(args.latency_ms),
        fail_rate: args.fail_rate,
        rate_limit_rate: args.rate_limit_rate,
        garbage_rate: args.garbage_rate,
        max_concurrency: args.max_concurrency,
        slots: args.slots,
        model_created: args.model_created,
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    crate::signals::cancel_on_signal(shutdown.clone());
    errln!(
        "stub backend on http://{}/v1",
        listener.local_addr().infra_error()?
    );
    let stats = Arc::new(StubStats::default());
    serve_with_stats(listener, config, stats.clone(), async move {
        shutdown.cancelled().await
    })
    .await
    .infra_error()?;
    // What it served, for whoever started it (vigil-bench checks that a
    // fully cached run made no calls).
    let s = stats.snapshot();
    errln!(
        "stub served {} completion requests ({} answered 200)",
        s.requests,
        s.ok
    );
    Ok(Exit::Ok)
}
