//! vigil's NATS IO, shared by coordinator, worker, proxy and binary.
//!
//! [`vigil_protocol`] defines what crosses NATS and does no IO; this crate
//! owns what talks to a server:
//!
//! - [`topology`]: the JetStream streams, the worker consumer and the buckets
//!   (`ensure_topology`), the server-version check and the retry of requests a
//!   cluster does not answer during a leader election;
//! - [`headers`]: the header maps every vigil message carries;
//! - [`trace_context`]: W3C trace context carried in those headers;
//! - [`server`]: a private nats-server process (the embedded mode's, and
//!   every test's).

pub mod headers;
pub mod server;
pub mod topology;
pub mod trace_context;
