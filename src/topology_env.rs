//! Topology knobs from the environment, read the same way by `vigil run`,
//! `vigil worker` and `vigil setup-streams`.
//!
//! A consumer's AckWait and MaxDeliver are fixed when it is created (the first
//! process to call `ensure_topology` wins), so every process of a deployment
//! should see the same values. They exist mainly for fault tests, which want
//! redeliveries within seconds instead of the default 30 s:
//!
//! - `VIGIL_ACK_WAIT_S`: seconds a worker may hold a job without a progress ack (default 30).
//! - `VIGIL_MAX_DELIVER`: deliveries of one job before it is given up (default 5).
//! - `VIGIL_JOBS_MAX_MSGS`: most jobs waiting in `VIGIL_JOBS` before dispatch waits (default 1,000,000).
//! - `VIGIL_CACHE_MAX_AGE_S`: max age of the response cache bucket `vigil-cache`, seconds
//!   (default 604800, 7 days), set when the bucket is created or has none.
//!
//! And two for clusters, which every process should see too:
//!
//! - `VIGIL_REPLICAS`: replicas of every stream, KV bucket and the object store
//!   that a process creates, and the count it raises existing ones to (default 1;
//!   3 on a three-node JetStream cluster). `vigil setup-streams --replicas` wins over it.
//! - `VIGIL_JS_TIMEOUT_S`: how long the stream and bucket lookups (in all) are
//!   retried while the cluster does not answer (a leader election after a server
//!   loss; default 30), before the command fails saying it may have lost quorum.
//!
//! And one knob of `vigil run` alone:
//!
//! - `VIGIL_RECONCILE_S`: seconds without progress before a run checks the jobs stream for
//!   outstanding jobs that left it without a result (default 60).

use anyhow::{Context, anyhow};
use std::time::Duration;
use vigil_nats::topology::TopologyConfig;

/// The default topology with the environment's overrides applied.
pub fn topology_from_env() -> anyhow::Result<TopologyConfig> {
    let mut topology = TopologyConfig::default();
    if let Some(ack_wait) = seconds_var("VIGIL_ACK_WAIT_S")? {
        topology.ack_wait = ack_wait;
    }
    if let Some(value) = var("VIGIL_MAX_DELIVER") {
        let n: i64 = value
            .parse()
            .with_context(|| format!("VIGIL_MAX_DELIVER={value}: not an integer"))?;
        if n < 1 {
            return Err(anyhow!("VIGIL_MAX_DELIVER={value}: must be at least 1"));
        }
        topology.max_deliver = n;
    }
    if let Some(value) = var("VIGIL_JOBS_MAX_MSGS") {
        let n: i64 = value
            .parse()
            .with_context(|| format!("VIGIL_JOBS_MAX_MSGS={value}: not an integer"))?;
        if n < 1 {
            return Err(anyhow!("VIGIL_JOBS_MAX_MSGS={value}: must be at least 1"));
        }
        topology.jobs_max_msgs = n;
    }
    if let Some(value) = var("VIGIL_REPLICAS") {
        let n: usize = value
            .parse()
            .with_context(|| format!("VIGIL_REPLICAS={value}: not an integer"))?;
        topology.replicas = check_replicas(n).with_context(|| format!("VIGIL_REPLICAS={value}"))?;
    }
    if let Some(value) = var("VIGIL_JS_TIMEOUT_S") {
        let secs: f64 = value
            .parse()
            .with_context(|| format!("VIGIL_JS_TIMEOUT_S={value}: not a number"))?;
        if !(secs.is_finite() && secs >= 1.0) {
            return Err(anyhow!("VIGIL_JS_TIMEOUT_S={value}: must be at least 1"));
        }
        topology.api_deadline = Duration::from_secs_f64(secs);
    }
    if let Some(value) = var("VIGIL_CACHE_MAX_AGE_S") {
        let secs: u64 = value
            .parse()
            .with_context(|| format!("VIGIL_CACHE_MAX_AGE_S={value}: not a whole number"))?;
        if secs == 0 {
            return Err(anyhow!(
                "VIGIL_CACHE_MAX_AGE_S={value}: must be at least 1 (the cache always has a max age)"
            ));
        }
        topology.cache_max_age = Duration::from_secs(secs);
    }
    Ok(topology)
}

/// JetStream takes 1 to 5 replicas.
pub fn check_replicas(n: usize) -> anyhow::Result<usize> {
    if (1..=5).contains(&n) {
        Ok(n)
    } else {
        Err(anyhow!(
            "replicas must be 1 to 5 (JetStream's limit), not {n}"
        ))
    }
}

/// How long a run waits without progress before it reconciles its
/// outstanding jobs with the jobs stream: `VIGIL_RECONCILE_S`, default 60 s.
pub fn reconcile_after_from_env() -> anyhow::Result<Duration> {
    Ok(
        seconds_var("VIGIL_RECONCILE_S")?
            .unwrap_or(vigil_coordinator::run::DEFAULT_RECONCILE_AFTER),
    )
}

/// A duration in seconds (at least 0.1) from the environment, if set.
fn seconds_var(name: &str) -> anyhow::Result<Option<Duration>> {
    let Some(value) = var(name) else {
        return Ok(None);
    };
    let secs: f64 = value
        .parse()
        .with_context(|| format!("{name}={value}: not a number"))?;
    if !(secs.is_finite() && secs >= 0.1) {
        return Err(anyhow!("{name}={value}: must be at least 0.1"));
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::check_replicas;

    #[test]
    fn replicas_are_one_to_five() {
        assert_eq!(check_replicas(1).unwrap(), 1);
        assert_eq!(check_replicas(3).unwrap(), 3);
        assert!(check_replicas(0).is_err());
        let err = check_replicas(6).unwrap_err().to_string();
        assert!(err.contains("1 to 5"), "{err}");
    }
}
