//! One running monitor per name: a lease in the `vigil-runs` bucket under
//! `monitor.<name>.lease`, created with `create` (fails if present) and
//! refreshed every lease period by a revision-checked `update`. A lease not
//! updated for [`EXPIRY_PERIODS`] periods (as watched by the newcomer, on its
//! own clock) is expired and may be taken over.

use super::MonitorError;
use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vigil_protocol::subjects;

/// Periods without an update after which a lease is expired.
pub const EXPIRY_PERIODS: u32 = 3;

/// The key of a monitor's lease in the `vigil-runs` bucket.
pub fn lease_key(monitor: &str) -> String {
    format!("monitor.{}.lease", subjects::sanitize_token(monitor))
}

/// What a lease holds.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
struct LeaseValue {
    /// `<host>/<pid>/<uuid>` of the holder.
    holder: String,
    /// When the holder last refreshed it, Unix ms (informative).
    refreshed_unix_ms: u64,
}

/// A held lease; refreshed by a task until [`Lease::release`].
pub(super) struct Lease {
    kv: kv::Store,
    key: String,
    holder: String,
    revision: Arc<std::sync::Mutex<u64>>,
    lost: Arc<AtomicBool>,
    refresher: tokio::task::JoinHandle<()>,
}

fn now_ms() -> u64 {
    super::run::now_ms()
}

fn value(holder: &str) -> bytes::Bytes {
    serde_json::to_vec(&LeaseValue {
        holder: holder.to_string(),
        refreshed_unix_ms: now_ms(),
    })
    .unwrap_or_default()
    .into()
}

fn describe(entry: &kv::Entry) -> String {
    let v: LeaseValue = serde_json::from_slice(&entry.value).unwrap_or_default();
    let seen = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_millis(v.refreshed_unix_ms),
    );
    format!("holder {}, last seen {seen}", v.holder)
}

impl Lease {
    /// Takes the lease of `monitor`, waiting out a lease that is not being
    /// refreshed; fails with [`MonitorError::AlreadyRunning`] if it is.
    /// `stop` is cancelled if the lease is lost later.
    pub(super) async fn acquire(
        kv: kv::Store,
        monitor: &str,
        period: Duration,
        stop: CancellationToken,
    ) -> Result<Lease, MonitorError> {
        let key = lease_key(monitor);
        let holder = format!(
            "{}/{}/{}",
            hostname(),
            std::process::id(),
            uuid::Uuid::now_v7()
        );
        let running = |entry: &kv::Entry| {
            MonitorError::AlreadyRunning(format!(
                "monitor {monitor} is already running ({}); stop it, or give this one another name",
                describe(entry)
            ))
        };
        let revision = loop {
            match kv.create(&key, value(&holder)).await {
                Ok(rev) => break rev,
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(MonitorError::nats(e)),
            }
            let Some(entry) = kv.entry(&key).await.map_err(MonitorError::nats)? else {
                continue;
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            // Watch it: refreshed within the expiry, its holder is alive.
            tracing::info!(key = %key, "a lease is held ({}); waiting to see whether it expires", describe(&entry));
            let deadline = tokio::time::Instant::now() + period * EXPIRY_PERIODS;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return Err(MonitorError::State("stopped while waiting for the lease".into())),
                    _ = tokio::time::sleep(period / 4) => {}
                }
                let now = kv.entry(&key).await.map_err(MonitorError::nats)?;
                match now {
                    Some(e) if e.revision != entry.revision => return Err(running(&e)),
                    _ => {}
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            match kv.update(&key, value(&holder), entry.revision).await {
                Ok(rev) => {
                    tracing::warn!(key = %key, "took over an expired monitor lease ({})", describe(&entry));
                    break rev;
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    let e = kv.entry(&key).await.map_err(MonitorError::nats)?;
                    return Err(match e {
                        Some(e) => running(&e),
                        None => MonitorError::AlreadyRunning(format!(
                            "monitor {monitor} lease was taken by another monitor"
                        )),
                    });
                }
                Err(e) => return Err(MonitorError::nats(e)),
            }
        };
        let revision = Arc::new(std::sync::Mutex::new(revision));
        let lost = Arc::new(AtomicBool::new(false));
        let refresher = tokio::spawn(refresh(
            kv.clone(),
            key.clone(),
            holder.clone(),
            period,
            revision.clone(),
            lost.clone(),
            stop,
        ));
        Ok(Lease {
            kv,
            key,
            holder,
            revision,
            lost,
            refresher,
        })
    }

    /// Whether another monitor took the lease.
    pub(super) fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stops refreshing and deletes the lease (if still ours), within a few seconds.
    pub(super) async fn release(self) {
        self.refresher.abort();
        if self.lost() {
            return;
        }
        let rev = *self.revision.lock().unwrap_or_else(|e| e.into_inner());
        let delete = self.kv.delete_expect_revision(&self.key, Some(rev));
        match tokio::time::timeout(Duration::from_secs(2), delete).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, holder = %self.holder, "cannot release the monitor lease")
            }
            Err(_) => {
                tracing::warn!(holder = %self.holder, "cannot release the monitor lease: no answer")
            }
        }
    }
}

async fn refresh(
    kv: kv::Store,
    key: String,
    holder: String,
    period: Duration,
    revision: Arc<std::sync::Mutex<u64>>,
    lost: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let rev = *revision.lock().unwrap_or_else(|e| e.into_inner());
        let update = kv.update(&key, value(&holder), rev);
        match tokio::time::timeout(period, update).await {
            Ok(Ok(new)) => *revision.lock().unwrap_or_else(|e| e.into_inner()) = new,
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                let who = match kv.entry(&key).await {
                    Ok(Some(e)) => describe(&e),
                    _ => "deleted".into(),
                };
                tracing::error!(key = %key, "another monitor took this monitor's lease ({who}); stopping");
                lost.store(true, Ordering::SeqCst);
                stop.cancel();
                return;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot refresh the monitor lease; retrying"),
            Err(_) => tracing::warn!("cannot refresh the monitor lease: no answer; retrying"),
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}
