//! A JetStream cluster of real nats-server processes on loopback, for tests
//! of what losing a server does.
//!
//! Every server is a [`NatsServer`] with its own store, client port and
//! cluster port, `--server_name n<i>`, one `--cluster_name`, and `--routes`
//! to every other server. [`NatsCluster::start`] returns once the cluster can
//! place a stream with one replica per server (its metadata leader is elected
//! and every server is a known peer), which it checks by doing exactly that.
//! Servers can be killed (`kill -9`) and started again on the same ports and
//! store, through [`NatsCluster::server`].

use crate::nats_server::{NatsServer, NatsServerConfig, NatsServerError};
use std::time::{Duration, Instant};

/// How long [`NatsCluster::start`] waits for the cluster to place a stream on
/// every server.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The cluster name every server is started with.
pub const CLUSTER_NAME: &str = "vigil-test";

/// Starting a cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsClusterError {
    /// A server did not start.
    #[error("server n{index} of the cluster: {source}")]
    Server {
        /// Which.
        index: usize,
        /// Why.
        source: NatsServerError,
    },
    /// No free port for a cluster listener.
    #[error("cannot reserve a cluster port: {0}")]
    Port(std::io::Error),
    /// The cluster never became able to place a replicated stream.
    #[error(
        "the {size}-server cluster could not place a stream with {size} replicas within {}s \
         (last error: {last}); the servers' logs end with:\n{tails}",
        READY_TIMEOUT.as_secs()
    )]
    NotReady {
        /// Servers in the cluster.
        size: usize,
        /// The last error of the readiness probe.
        last: String,
        /// The last lines of every server's log.
        tails: String,
    },
}

/// A running JetStream cluster; every server is killed when it is dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), vigil_testkit::nats_cluster::NatsClusterError> {
/// use vigil_testkit::nats_cluster::NatsCluster;
/// let mut cluster = NatsCluster::start(3).await?;
/// let urls = cluster.urls(); // nats://127.0.0.1:P1,nats://127.0.0.1:P2,...
/// cluster.server(1).kill(); // kill -9 one server
/// cluster.server(1).start_again().await.unwrap(); // same ports, same store
/// # let _ = urls; Ok(()) }
/// ```
#[derive(Debug)]
pub struct NatsCluster {
    servers: Vec<NatsServer>,
}

/// A port the OS says is free now (listeners that need a port known before
/// start: cluster routes name each other's).
fn free_port() -> Result<u16, NatsClusterError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(NatsClusterError::Port)?;
    Ok(listener
        .local_addr()
        .map_err(NatsClusterError::Port)?
        .port())
}

impl NatsCluster {
    /// Starts `size` servers (at least 1) and waits until a stream with
    /// `size` replicas can be created (then deletes it).
    pub async fn start(size: usize) -> Result<NatsCluster, NatsClusterError> {
        let size = size.max(1);
        let cluster_ports = (0..size)
            .map(|_| free_port())
            .collect::<Result<Vec<_>, _>>()?;
        // Started all at once: each waits for the others to form the cluster.
        let mut starting = Vec::with_capacity(size);
        for (index, port) in cluster_ports.iter().enumerate() {
            let routes: Vec<String> = cluster_ports
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, p)| format!("nats://127.0.0.1:{p}"))
                .collect();
            let cfg = NatsServerConfig {
                extra_args: vec![
                    "--server_name".into(),
                    format!("n{index}"),
                    "--cluster_name".into(),
                    CLUSTER_NAME.into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{port}"),
                    "--routes".into(),
                    routes.join(","),
                ],
                ..Default::default()
            };
            starting.push(tokio::spawn(async move {
                NatsServer::start(cfg)
                    .await
                    .map_err(|source| NatsClusterError::Server { index, source })
            }));
        }
        let mut servers = Vec::with_capacity(size);
        for started in starting {
            servers.push(started.await.expect("a nats-server start panicked")?);
        }
        let cluster = NatsCluster { servers };
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// Waits until the cluster places a memory stream with one replica per
    /// server: the metadata leader is elected and every server is its peer.
    async fn wait_ready(&self) -> Result<(), NatsClusterError> {
        let size = self.servers.len();
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            match self.probe(size).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(NatsClusterError::NotReady {
            size,
            last,
            tails: self
                .servers
                .iter()
                .enumerate()
                .map(|(i, s)| format!("--- n{i}\n{}", s.log_tail()))
                .collect::<Vec<_>>()
                .join("\n"),
        })
    }

    async fn probe(&self, size: usize) -> Result<(), String> {
        use async_nats::jetstream;
        let client = async_nats::connect(self.servers[0].url())
            .await
            .map_err(|e| e.to_string())?;
        let mut js = jetstream::new(client);
        // Until the metadata leader is elected nothing answers: ask again
        // soon rather than wait out the default 5 s.
        js.set_timeout(Duration::from_millis(500));
        let name = "TESTKIT_CLUSTER_PROBE";
        js.create_stream(jetstream::stream::Config {
            name: name.into(),
            subjects: vec!["testkit.cluster.probe".into()],
            num_replicas: size,
            storage: jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        js.delete_stream(name).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Servers in the cluster.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether the cluster has no server (never: [`start`](Self::start) makes at least one).
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Server `index` (`n<index>`), to kill, stop or start again.
    pub fn server(&mut self, index: usize) -> &mut NatsServer {
        &mut self.servers[index]
    }

    /// The client URL of server `index`.
    pub fn url(&self, index: usize) -> String {
        self.servers[index].url()
    }

    /// Every server's client URL, comma-separated (what `--nats` takes).
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}
