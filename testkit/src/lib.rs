//! Real parts for tests, benchmarks and the embedded mode: a private
//! nats-server process (or a cluster of them) and an OpenAI-compatible stub backend.

pub mod nats_cluster;
pub mod nats_server;
pub mod stub;
