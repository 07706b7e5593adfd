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
