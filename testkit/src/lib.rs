//! Real parts for tests, benchmarks and the embedded mode: a private
//! nats-server process and an OpenAI-compatible stub backend.

pub mod nats_server;
pub mod stub;
