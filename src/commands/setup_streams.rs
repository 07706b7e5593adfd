//! `vigil setup-streams`: creates streams, buckets and the pool's durable
//! consumer, so KEDA sees the consumer before the first run.

use crate::cli::SetupStreamsArgs;
use crate::exit::{CommandResult, Exit, ExitContext};
use crate::session::{self, Session};
use anyhow::{Context, anyhow};
use vigil_nats::topology::ensure_topology_report;

pub async fn run(args: SetupStreamsArgs) -> CommandResult {
    let session =
        Session::connect(session::required_url(&args.nats)?, "vigil-setup-streams").await?;
    let mut topology = crate::topology_env::topology_from_env().input_error()?;
    if let Some(n) = args.replicas {
        topology.replicas = crate::topology_env::check_replicas(n)
            .context("--replicas")
            .input_error()?;
    }
    let (js, notes) = ensure_topology_report(&session.client, &topology, &args.pool)
        .await
        .infra_error()?;
    vigil_nats::topology::ensure_cache_bucket(&js, &topology)
        .await
        .infra_error()?;
    for note in &notes {
        outln!("{note}");
    }
    let unmet = notes
        .iter()
        .filter(|n| n.outcome.is_err() && n.had < n.wanted)
        .count();
    if unmet > 0 {
        return Err(anyhow!(
            "{unmet} stream(s) have fewer replicas than asked for and could not be raised (see above)"
        ))
        .infra_error();
    }
    outln!(
        "ok: streams {}, {}, {}, {}, buckets (the response cache included) and consumer {} ready on {} ({} replica(s))",
        vigil_protocol::subjects::STREAM_JOBS,
        vigil_protocol::subjects::STREAM_RESULTS,
        vigil_protocol::subjects::STREAM_RUNS,
        vigil_protocol::subjects::STREAM_ALERTS,
        vigil_protocol::subjects::worker_consumer(&args.pool),
        crate::nats_connect::redact_url(&session.url),
        topology.replicas,
    );
    Ok(Exit::Ok)
}
