//! How every command reaches NATS and shows its endpoints: one place for
//! "`--nats URL`, or the embedded mode's private server", for the connection
//! (credentials from `VIGIL_NATS_*`, see [`crate::nats_connect`]), for the
//! JetStream topology a history command needs, and for the `/healthz`,
//! `/readyz` ([`crate::health`]) and `/metrics` ([`crate::metrics_server`])
//! listeners.
//!
//! The embedded mode: without `--nats`, `vigil run` (and every history
//! command) starts a private nats-server (≥ 2.10) on a free port with its
//! store under the state directory (`.vigil/nats`), so run history survives
//! between runs. If another embedded run holds that store, this one uses a
//! temporary store beside it.

use crate::cli::{NatsArgs, StoreArgs};
use crate::exit::{ExitContext, Failure};
use crate::health::ReadyProbe;
use anyhow::{Context, anyhow};
use async_nats::jetstream;
use prometheus_client::registry::Registry;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;
use vigil_nats::server::{NatsServer, NatsServerConfig};

/// A running private server and what keeps its store ours.
pub struct EmbeddedNats {
    /// The server.
    pub server: NatsServer,
    _lock: Option<File>,
    _temp: Option<tempfile::TempDir>,
}

impl EmbeddedNats {
    /// Starts the server on the store under `state_dir`.
    pub async fn start(state_dir: &Path) -> anyhow::Result<EmbeddedNats> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create {}", state_dir.display()))?;
        let lock_path = state_dir.join("nats.lock");
        let lock = File::create(&lock_path)
            .with_context(|| format!("cannot create {}", lock_path.display()))?;
        let (store, lock, temp): (PathBuf, _, _) = match lock.try_lock() {
            Ok(()) => (state_dir.join("nats"), Some(lock), None),
            Err(_) => {
                let temp = tempfile::Builder::new()
                    .prefix("nats-")
                    .tempdir_in(state_dir)?;
                tracing::warn!(store = %temp.path().display(), "another embedded run holds the store; using a temporary one");
                (temp.path().to_path_buf(), None, Some(temp))
            }
        };
        let server = NatsServer::start(NatsServerConfig { store_dir: Some(store), ..Default::default() })
            .await
            .context("cannot start the embedded nats-server (set VIGIL_NATS_SERVER, run scripts/setup.sh, or pass --nats URL)")?;
        Ok(EmbeddedNats {
            server,
            _lock: lock,
            _temp: temp,
        })
    }
}

/// A command's NATS: the server's URL, a connected client, and the embedded
/// server behind them if there is one (stopped when the session drops).
pub struct Session {
    /// The server URL (or comma-separated list) to connect more clients to.
    pub url: String,
    /// The command's client.
    pub client: async_nats::Client,
    _embedded: Option<EmbeddedNats>,
}

/// `--nats`, or a usage error naming the flag and its variable.
pub fn required_url(nats: &NatsArgs) -> Result<String, Failure> {
    nats.nats
        .clone()
        .ok_or_else(|| {
            anyhow!(
                "--nats URL (or {}) is required",
                crate::nats_connect::ENV_URL
            )
        })
        .input_error()
}

impl Session {
    /// Connects to `url` as `name`.
    pub async fn connect(url: String, name: &str) -> Result<Session, Failure> {
        let client = crate::nats_connect::connect_from_env(&url, name)
            .await
            .infra_error()?;
        Ok(Session {
            url,
            client,
            _embedded: None,
        })
    }

    /// Connects to `--nats`, or starts the embedded mode's server on the
    /// store under `state_dir` and connects to it.
    pub async fn connect_or_embedded(
        nats: &NatsArgs,
        state_dir: &Path,
        name: &str,
    ) -> Result<Session, Failure> {
        let (url, embedded) = match &nats.nats {
            Some(url) => (url.clone(), None),
            None => {
                let embedded = EmbeddedNats::start(state_dir).await.infra_error()?;
                (embedded.server.url(), Some(embedded))
            }
        };
        let mut session = Session::connect(url, name).await?;
        session._embedded = embedded;
        Ok(session)
    }

    /// Connects to `url` as `name` without waiting for the server: one that
    /// is down now is retried in the background (`vigil proxy` fails open).
    pub async fn connect_in_background(url: String, name: &str) -> Result<Session, Failure> {
        let servers = crate::nats_connect::server_addrs(&url).input_error()?;
        let client = crate::nats_connect::NatsAuth::from_env()
            .input_error()?
            .options(name)
            .await
            .input_error()?
            .retry_on_initial_connect()
            .connect(servers)
            .await
            .with_context(|| {
                format!(
                    "cannot connect to NATS at {}",
                    crate::nats_connect::redact_url(&url)
                )
            })
            .infra_error()?;
        Ok(Session {
            url,
            client,
            _embedded: None,
        })
    }

    /// Another client of the same server (an in-process worker's own).
    pub async fn another_client(&self, name: &str) -> Result<async_nats::Client, Failure> {
        crate::nats_connect::connect_from_env(&self.url, name)
            .await
            .infra_error()
    }

    /// JetStream with the topology ensured: streams that exist are used as
    /// they are; what is missing is created with the deployment's settings
    /// (`topology`: `VIGIL_REPLICAS` and the rest, [`crate::topology_env`]).
    pub async fn jetstream(
        &self,
        topology: &vigil_nats::topology::TopologyConfig,
    ) -> Result<jetstream::Context, Failure> {
        vigil_nats::topology::ensure_topology(
            &self.client,
            topology,
            vigil_protocol::subjects::DEFAULT_POOL,
        )
        .await
        .infra_error()
    }
}

/// A connection to the history, and the server behind it.
pub struct Store {
    /// The client.
    pub client: async_nats::Client,
    /// JetStream on it, topology ensured.
    pub js: jetstream::Context,
    /// How long reads that JetStream does not answer are retried
    /// (`VIGIL_JS_TIMEOUT_S`: a leader election after a server loss).
    pub js_timeout: std::time::Duration,
    _session: Session,
}

/// Connects to `--nats`, or starts the embedded mode's server on its store
/// (the one `vigil run` writes to), with the topology ensured.
pub async fn open_store(args: &StoreArgs, name: &str) -> Result<Store, Failure> {
    let session = Session::connect_or_embedded(&args.nats, &args.state_dir, name).await?;
    let topology = crate::topology_env::topology_from_env().input_error()?;
    let js = session.jetstream(&topology).await?;
    Ok(Store {
        client: session.client.clone(),
        js,
        js_timeout: topology.api_deadline,
        _session: session,
    })
}

/// Serves `/healthz` and `/readyz` from `probe` on `addr`, when one is
/// given, until `stop`; returns the bound address.
pub async fn serve_health(
    addr: Option<SocketAddr>,
    probe: &ReadyProbe,
    stop: &CancellationToken,
) -> Result<Option<SocketAddr>, Failure> {
    let Some(addr) = addr else { return Ok(None) };
    let stop = stop.clone();
    let bound = crate::health::serve(addr, probe.clone(), async move { stop.cancelled().await })
        .await
        .with_context(|| format!("cannot serve health endpoints on {addr}"))
        .infra_error()?;
    Ok(Some(bound))
}

/// Serves `/metrics` on `addr`, when one is given, until `stop`: the
/// process's default metrics, what `register` adds, and, with `consumer`
/// (a client and a pool), the pool's consumer backlog polled from JetStream.
pub async fn serve_metrics(
    addr: Option<SocketAddr>,
    stop: &CancellationToken,
    consumer: Option<(&async_nats::Client, &str)>,
    register: impl FnOnce(&mut Registry),
) -> Result<Option<SocketAddr>, Failure> {
    let Some(addr) = addr else { return Ok(None) };
    let mut registry = crate::metrics_server::registry();
    register(&mut registry);
    if let Some((client, pool)) = consumer {
        crate::metrics_server::poll_consumer(&mut registry, client.clone(), pool, stop.clone());
    }
    let bound = crate::metrics_server::serve(addr, registry, stop.clone())
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))
        .infra_error()?;
    Ok(Some(bound))
}
