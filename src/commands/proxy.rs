//! `vigil proxy`: parses flags, connects NATS (without waiting for it: the
//! proxy fails open) and runs [`vigil_proxy::run`].

use crate::cli::ProxyArgs;
use crate::exit::{CommandResult, Exit, ExitContext};
use crate::session::{self, Session};
use anyhow::Context;
use tokio_util::sync::CancellationToken;
use vigil_proxy::{ProxyConfig, PublishConfig, redact::RedactFile};

pub async fn run(args: ProxyArgs) -> CommandResult {
    let upstream: url::Url = args
        .upstream
        .parse()
        .with_context(|| format!("--upstream `{}` is not a URL", args.upstream))
        .input_error()?;
    let mut redact: Vec<(String, String)> = args
        .redact
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("custom_{}", i + 1), r.clone()))
        .collect();
    if let Some(path) = &args.redact_file {
        redact.extend(RedactFile::load(path).input_error()?.patterns);
    }
    let Some(url) = args.nats.nats.clone() else {
        return Err(anyhow::anyhow!(
            "vigil proxy publishes captures to NATS: give --nats URL (or VIGIL_NATS_URL)"
        ))
        .input_error();
    };
    let cfg = ProxyConfig {
        upstream,
        app: args.app.clone(),
        sample_rate: args.sample,
        redact,
        publish: PublishConfig {
            queue_capacity: args.queue_capacity,
            topology: vigil_nats::topology::TopologyConfig {
                replicas: args.replicas,
                ..crate::topology_env::topology_from_env().input_error()?
            },
            ..Default::default()
        },
        ..Default::default()
    };
    // Check the flags before anything listens.
    cfg.validate().input_error()?;
    // Fail open from the start: a NATS that is down now is retried in the
    // background, and captures are dropped (and counted) until it is up.
    // One URL or a comma-separated server list, like every other command.
    let session = Session::connect_in_background(url, "vigil-proxy").await?;
    let shutdown = CancellationToken::new();
    crate::signals::cancel_on_signal(shutdown.clone());
    session::serve_metrics(args.metrics_addr, &shutdown, None, |registry| {
        cfg.metrics.register(registry)
    })
    .await?;
    // The queue model servers keep (4,096, capped by `somaxconn`), not
    // tokio's 128: an application opening its connection pool at once must
    // not have SYNs dropped and wait out TCP's 1 s retransmission.
    let listener = vigil_stub::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))
        .infra_error()?;
    errln!(
        "vigil proxy on http://{} -> {} (app {}, sample {})",
        listener.local_addr().infra_error()?,
        cfg.upstream,
        cfg.app,
        cfg.sample_rate
    );
    vigil_proxy::run(cfg, listener, session.client.clone(), shutdown)
        .await
        .infra_error()?;
    Ok(Exit::Ok)
}
