//! Measures a local model's load time, prefill and decode speed (greedy).
//!
//!   CANDLE_NUM_THREADS=1 cargo run --release -p vigil-local --example tokens_per_s -- [MODEL.gguf]
//!
//! Without an argument it uses `$VIGIL_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf`.

use std::time::Instant;
use vigil_local::{GenerateRequest, LocalModel, PromptInput};
use vigil_protocol::ChatMessage;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| vigil_local::models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"));
    let started = Instant::now();
    let model = LocalModel::load(&path)?;
    println!(
        "load: {:.2} s ({})",
        started.elapsed().as_secs_f64(),
        path.display()
    );

    let chat = |text: &str| {
        PromptInput::Chat(vec![ChatMessage {
            role: "user".into(),
            content: text.into(),
        }])
    };
    // Prefill alone: one generated token.
    let prompt = chat("Write a long story about a dragon who learns to bake bread.");
    let one = GenerateRequest {
        prompt: prompt.clone(),
        max_tokens: Some(1),
        temperature: None,
        top_p: None,
        seed: None,
        stop: vec![],
    };
    model.generate(&one)?; // warm-up
    let t = Instant::now();
    let g = model.generate(&one)?;
    let prefill = t.elapsed().as_secs_f64();
    println!(
        "prefill: {} tokens in {:.3} s = {:.0} tokens/s",
        g.prompt_tokens,
        prefill,
        g.prompt_tokens as f64 / prefill
    );
    let long = GenerateRequest {
        max_tokens: Some(128),
        ..one
    };
    let t = Instant::now();
    let g = model.generate(&long)?;
    let total = t.elapsed().as_secs_f64();
    let decode = (total - prefill).max(1e-9);
    println!(
        "decode: {} tokens in {:.3} s = {:.1} tokens/s (after prefill)",
        g.completion_tokens,
        decode,
        (g.completion_tokens.saturating_sub(1)) as f64 / decode
    );
    Ok(())
}
