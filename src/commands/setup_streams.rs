//! `vigil setup-streams`: creates streams, buckets and the pool's durable
//! consumer, so KEDA sees the consumer before the first run.

use crate::cli::SetupStreamsArgs;
use crate::exit::{CommandResult, Exit, ExitContext};
use anyhow::anyhow;
use vigil_protocol::topology::{TopologyConfig, ensure_topology};

pub async fn run(args: SetupStreamsArgs) -> CommandResult {
    let url = args
        .nats
        .nats
        .ok_or_else(|| {
            anyhow!(
                "--nats URL (or {}) is required",
                crate::nats_connect::ENV_URL
            )
        })
        .input_error()?;
    let client = crate::nats_connect::connect_from_env(&url, "vigil-setup-streams")
        .await
        .infra_error()?;
    let topology = TopologyConfig {
        replicas: args.replicas,
        ..crate::topology_env::topology_from_env().input_error()?
    };
    let js = ensure_topology(&client, &topology, &args.pool)
        .await
        .infra_error()?;
    vigil_protocol::topology::ensure_cache_bucket(&js, &topology)
        .await
        .infra_error()?;
    println!(
        "ok: streams {}, {}, {}, {}, consumer {} and the response cache bucket ready on {url}",
        vigil_protocol::subjects::STREAM_JOBS,
        vigil_protocol::subjects::STREAM_RESULTS,
        vigil_protocol::subjects::STREAM_RUNS,
        vigil_protocol::subjects::STREAM_ALERTS,
        vigil_protocol::subjects::worker_consumer(&args.pool),
    );
    Ok(Exit::Ok)
}
