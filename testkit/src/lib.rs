//! Real parts for tests and benchmarks: a private nats-server process (or a
//! cluster of them) and the OpenAI-compatible stub backend.
//!
//! What the product ships lives in crates of its own and is re-exported here
//! under the paths tests have always used: the nats-server launcher is
//! `vigil_nats::server` (`vigil run`'s embedded mode starts it), the stub is
//! `vigil-stub` (`vigil stub` serves it). Only the cluster helper is
//! test-only.

pub mod nats_cluster;
pub use vigil_nats::server as nats_server;
pub use vigil_stub as stub;

/// A private nats-server with vigil's JetStream topology made (streams,
/// buckets, the `default` pool's consumer): the server, to keep alive for
/// the test, and a JetStream context on it.
pub async fn jetstream() -> (nats_server::NatsServer, async_nats::jetstream::Context) {
    let nats = nats_server::NatsServer::start(nats_server::NatsServerConfig::default())
        .await
        .expect("nats-server starts");
    let client = async_nats::connect(nats.url())
        .await
        .expect("the client connects to its own server");
    let js = vigil_nats::topology::ensure_topology(&client, &Default::default(), "default")
        .await
        .expect("vigil's topology is made");
    (nats, js)
}
