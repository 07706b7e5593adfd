//! vigil's worker: pulls jobs from the pool's durable consumer, calls the
//! model backends, scores the outputs and publishes the results.
//!
//! # Layout
//!
//! A job flows through these groups of modules; [`pull::run`] is the whole
//! worker.
//!
//! **Pull loop**: jobs in, results out, nothing lost.
//!
//! - [`pull`]: the loop: pull as many jobs as there are free slots, keep
//!   each alive with progress acks, evaluate its items, publish the result,
//!   ack; nak on shutdown. [`pull::WorkerConfig`] is everything a worker is
//!   told.
//! - [`unreadable`]: a job the worker cannot read is answered with failed
//!   items and terminated, never dropped.
//! - [`run_state`]: jobs of cancelled or finished runs are skipped.
//! - [`sampling`]: one target per sample (`samples: n`), each with its seed.
//!
//! **Backends**: where prompts are answered.
//!
//! - [`backends`]: the [`backends::Backend`] trait (`allows`, `complete`,
//!   `fingerprint`), its two implementations (an OpenAI-compatible server; a
//!   GGUF model in-process through the [`backends::LocalBackend`] port,
//!   implemented by the `vigil-local` crate) and [`backends::Backends::choose`],
//!   which picks one per target by its kind.
//! - [`backend`]: the pooled HTTP client (timeouts, retries, redaction) and
//!   [`backend::Completion`] / [`backend::CallFailure`], what every backend
//!   answers.
//! - `http1` (private): plain `http://` calls on hyper's HTTP/1 connections,
//!   a small keep-alive pool per `host:port`; `backend` sends TLS through
//!   reqwest.
//! - [`retry`]: backoff, `Retry-After` and the adaptive limit per target.
//! - [`allow`]: the endpoints this worker may call and their keys (a job is
//!   data, never authority).
//!
//! **Cache**: answers reused when everything that determines them is equal.
//!
//! - [`cache`]: the response cache in the `vigil-cache` bucket, under the
//!   job's cache policy.
//! - [`identity`]: what identifies a model for the cache key (a backend's
//!   `fingerprint`).
//!
//! **Scorers**: outputs into scores.
//!
//! - [`scorers`]: `mod.rs` builds a job's scorers (`build`, `build_for_job`);
//!   one file per kind; `io_env.rs` is what the IO scorers (`llm_judge`,
//!   `embedding_similarity`, `external`) use from the worker (its backends,
//!   cache, limits, allowed commands).
//!
//! **Sandbox**: [`sandbox`] runs untrusted programs for `code_exec`.
//!
//! **Telemetry**: [`telemetry`] (job, model-call and score spans, trace
//! context in and out) and [`metrics`] (the worker's counters,
//! [`metrics::WorkerStats`], and Prometheus).
//!
//! **Shared**: [`text`] (text helpers such as [`text::short`], for details
//! and error messages).
//!
//! Where a new scorer kind, backend kind, command or wire field goes: the
//! README's "Layout" section.

pub mod allow;
pub mod backend;
pub mod backends;
pub mod cache;
mod http1;
pub mod identity;
pub mod metrics;
pub mod pull;
pub mod retry;
pub mod run_state;
pub mod sampling;
pub mod sandbox;
pub mod scorers;
pub mod telemetry;
pub mod text;
pub mod unreadable;
