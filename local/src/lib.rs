//! vigil's embedded backend: a GGUF model run in-process on the CPU, in pure
//! Rust (candle's quantized llama), so `vigil run` can evaluate a real model
//! with no model server.
//!
//! - [`LocalModel`] loads a GGUF file once (tokenizer and chat template from
//!   its metadata, Q4_1 weights widened to Q8_0 for speed) and generates:
//!   greedy or seeded sampling, `max_tokens`, stop sequences, token counts.
//! - [`LocalEngine`] is what a worker holds: the model files its own
//!   configuration allows (a job is data, never authority), each loaded once
//!   and shared, and a small bound on concurrent generations, which run on
//!   tokio's blocking pool because they are CPU-bound.
//! - [`serve`] is `vigil serve-model`: one model over the OpenAI-compatible
//!   HTTP API.

mod engine;
mod error;
mod generate;
mod model;
mod quantized_llama;
mod sampling;
pub mod serve;
mod template;
mod tokenizer;

pub use engine::{LocalEngine, default_concurrency, models_dir};
pub use error::LocalError;
pub use generate::{FinishReason, GenerateRequest, Generation, PromptInput};
pub use model::LocalModel;
pub use template::ChatTemplate;
pub use tokenizer::tokenizer_from_gguf;
