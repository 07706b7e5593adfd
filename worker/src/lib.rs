//! vigil's worker: pulls jobs from the pool's durable consumer, calls the
//! model backends, scores the outputs and publishes the results.

pub mod allow;
pub mod backend;
pub mod backends;
pub mod cache;
pub mod identity;
pub mod metrics;
pub mod pull;
pub mod retry;
pub mod run_state;
pub mod sampling;
pub mod sandbox;
pub mod scorers;
pub mod telemetry;
pub mod unreadable;
