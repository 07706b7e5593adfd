//! The local backend on the real SmolLM2-135M model: reproducible sampling,
//! max_tokens, stop sequences, token counts, the tokenizer and chat template
//! read from the GGUF, and the worker-side allow list.

use crate::local_common;

use local_common::{MODEL_FILE, model_path};
use std::sync::{Arc, OnceLock};
use vigil_local::{FinishReason, GenerateRequest, LocalEngine, LocalModel, PromptInput};
use vigil_protocol::{ChatMessage, EndpointKind, ErrorKind, Prompt, SamplingParams, TargetSpec};
use vigil_worker::backends::LocalBackend;

/// One load for every test of this binary.
fn model() -> Arc<LocalModel> {
    static MODEL: OnceLock<Arc<LocalModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| Arc::new(LocalModel::load(&model_path()).expect("the model loads")))
        .clone()
}

fn user(text: &str) -> PromptInput {
    PromptInput::Chat(vec![ChatMessage {
        role: "user".into(),
        content: text.into(),
    }])
}

fn greedy(prompt: PromptInput, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        prompt,
        max_tokens: Some(max_tokens),
        temperature: None,
        top_p: None,
        seed: None,
        stop: vec![],
    }
}

#[test]
fn the_same_seed_gives_the_same_text() {
    let m = model();
    let mut request = greedy(user("Name a fruit and describe it."), 12);
    request.temperature = Some(1.0);
    request.top_p = Some(0.95);
    request.seed = Some(42);
    let a = m.generate(&request).unwrap();
    let b = m.generate(&request).unwrap();
    assert_eq!(a, b, "same seed, same request");
    assert!(!a.text.is_empty());
    assert!(a.prompt_tokens > 10, "chat template tokens counted: {a:?}");
    assert!((1..=12).contains(&a.completion_tokens), "{a:?}");

    // Sampling really depends on the seed: some other seed gives another text.
    let differs = (1..=8).any(|seed| {
        request.seed = Some(seed);
        m.generate(&request).unwrap().text != a.text
    });
    assert!(differs, "eight other seeds all gave {:?}", a.text);
}

#[test]
fn greedy_decoding_answers_and_is_stable() {
    let m = model();
    let request = greedy(
        user("What is the capital of France? Answer with one word."),
        6,
    );
    let a = m.generate(&request).unwrap();
    assert!(a.text.contains("Paris"), "got {:?}", a.text);
    assert_eq!(m.generate(&request).unwrap(), a);
}

#[test]
fn max_tokens_and_stop_sequences_end_the_output() {
    let m = model();
    let long = greedy(user("Write a long story about a dragon."), 10);
    let full = m.generate(&long).unwrap();
    assert_eq!(full.completion_tokens, 10, "{full:?}");
    assert_eq!(full.finish_reason, FinishReason::Length);

    // Stop at the second word of the greedy output: the text ends before it.
    let word = full
        .text
        .split_whitespace()
        .nth(1)
        .expect("two words in ten tokens")
        .to_string();
    let cut = full.text.find(&word).unwrap();
    let mut stopped = long.clone();
    stopped.stop = vec!["never-appears".into(), word.clone()];
    let short = m.generate(&stopped).unwrap();
    assert_eq!(short.text, full.text[..cut], "stop at {word:?}");
    assert_eq!(short.finish_reason, FinishReason::Stop);
    assert!(short.completion_tokens < 10);
}

#[test]
fn completion_prompts_are_sent_as_they_are() {
    let m = model();
    let ids = m
        .encode_prompt(&PromptInput::Text("The capital of France is".into()))
        .unwrap();
    assert_eq!(ids.len(), 5, "no BOS, no template: {ids:?}");
    let g = m
        .generate(&greedy(
            PromptInput::Text("The capital of France is".into()),
            4,
        ))
        .unwrap();
    assert_eq!(g.prompt_tokens, 5);
    assert!(g.completion_tokens >= 1);
}

#[test]
fn tokenizer_from_the_gguf_splits_digits_and_round_trips() {
    let m = model();
    let t = m.tokenizer();
    for text in [
        "Hello world",
        "The year 2024 had 366 days.",
        "  indented\n\tand tabs",
        "naïve café — ünïcödé",
        "<|im_start|>user\nHi<|im_end|>",
    ] {
        let ids = t.encode(text, false).unwrap();
        assert_eq!(t.decode(ids.get_ids(), false).unwrap(), text);
    }
    // SmolLM2's pre-tokenizer splits numbers into single digits.
    assert_eq!(t.encode("12345", false).unwrap().len(), 5);
    // No leading space is added (candle's own GGUF tokenizer gets this wrong).
    let hello = t.encode("Hello", false).unwrap();
    assert_eq!(hello.get_tokens(), ["Hello"]);
    // Control tokens are single special tokens.
    let im = t.encode("<|im_start|>", false).unwrap();
    assert_eq!(im.len(), 1);
    assert_eq!(t.decode(im.get_ids(), true).unwrap(), "");
}

#[test]
fn the_chat_template_comes_from_the_gguf() {
    let m = model();
    let text = m
        .template()
        .render(&[ChatMessage {
            role: "user".into(),
            content: "Hi".into(),
        }])
        .unwrap();
    // SmolLM2's template adds its own system prompt when there is none.
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

fn local_target(model_path: &str) -> TargetSpec {
    TargetSpec {
        name: "local".into(),
        kind: EndpointKind::Local,
        model_path: Some(model_path.into()),
        params: SamplingParams {
            max_tokens: Some(2),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_loads_only_allowed_files() {
    let allowed = model_path();
    let engine = LocalEngine::new([&allowed], 1);
    let prompt = Prompt::Completion("Hello".into());

    // Another file, even a GGUF one: refused before anything is opened.
    let copy_dir = tempfile::tempdir().unwrap();
    let other = copy_dir.path().join("other.gguf");
    std::fs::write(&other, b"not read").unwrap();
    for path in [other.to_str().unwrap(), "/etc/passwd", ""] {
        assert!(!engine.allows(path), "{path}");
        let err = engine
            .complete(&local_target(path), &prompt)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BackendNotAllowed, "{path}: {err}");
    }

    // The allowed file by its path, or by its file name alone (a worker whose
    // layout differs from the coordinator's): both mean the allowed file.
    assert_eq!(
        engine.resolve(MODEL_FILE).as_deref(),
        Some(std::fs::canonicalize(&allowed).unwrap().as_path())
    );
    let elsewhere = format!("/somewhere/else/{MODEL_FILE}");
    assert_eq!(
        engine.resolve(&elsewhere),
        engine.resolve(allowed.to_str().unwrap())
    );
    let done = engine
        .complete(&local_target(&elsewhere), &prompt)
        .await
        .unwrap();
    assert_eq!(done.usage.output, 2);
    assert_eq!(done.model.as_deref(), Some(MODEL_FILE));
}
