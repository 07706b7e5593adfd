//! An OpenAI-compatible stub model server for tests, benchmarks, examples and
//! `vigil stub`. It ships in the
//! binary (`vigil stub` serves it), so it is a crate of its own rather than a
//! part of `vigil-testkit`, which re-exports it as `vigil_testkit::stub`.
//!
//! Answers are deterministic functions of the prompt (see [`answer`]); faults
//! (500, 429, dropped connections, hangs, invalid JSON, empty choices) are drawn
//! per request from a seeded RNG, or scripted with
//! [`StubConfig::fail_first_attempts`], or keyed on the prompt with
//! [`StubConfig::fail_marker`] (500) and [`StubConfig::hang_marker`] (hang).
//!
//! The routes are axum handlers, but connections are served with hyper
//! directly (one task per connection) instead of `axum::serve`: that is what
//! lets a handler drop its own TCP connection without any HTTP response, which
//! `axum::serve` cannot do. The hot path takes no global lock: counters are
//! atomics and each request seeds its own RNG from (seed, request index).
//!
//! `"stream": true` is answered with server-sent events as OpenAI sends
//! them: one `chat.completion.chunk` (or `text_completion`) per word, a last
//! chunk with the finish reason, a usage chunk when `stream_options.include_usage`
//! is set, then `data: [DONE]`.
//!
//! The crate, by concern:
//!
//! - [`StubConfig`] (`config.rs`): how it behaves; [`StubStats`]
//!   (`stats.rs`): what it counted;
//! - `answers.rs`: what it answers ([`answer`], [`judge`], [`embed`],
//!   [`similarity`]), pure functions of the prompt;
//! - `request.rs`: what it reads from a request, with
//!   [`vigil_protocol::openai`]'s types (the ones the worker sends);
//! - `faults.rs`: which fault a request gets (seeded draws, scripted
//!   failures);
//! - `routes.rs`: the HTTP handlers; `server.rs`: connections, [`bind`],
//!   [`serve`] and [`StubServer`].

mod answers;
mod config;
mod faults;
mod request;
mod routes;
mod server;
mod stats;

pub use answers::{EMBEDDING_DIMS, answer, embed, judge, similarity};
pub use config::StubConfig;
pub use faults::HANG_FOR;
pub use server::{LISTEN_BACKLOG, StubServer, bind, serve, serve_with_stats};
pub use stats::{StubStats, StubStatsSnapshot};
