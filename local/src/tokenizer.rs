//! The tokenizer, rebuilt from a GGUF file's metadata.
//!
//! candle's own `Tokenizer::from_gguf` is wrong for SmolLM2 (it does not know
//! the `smollm` pre-tokenizer and adds a leading space: 2 of 10 strings
//! matched llama.cpp). The GGUF carries the BPE vocabulary and merges, so we
//! describe the tokenizer as `tokenizer.json` would and let the `tokenizers`
//! crate build it: digits split one by one, then byte-level (no prefix space),
//! a byte-level decoder, and the control tokens registered as special. That
//! matched llama.cpp's ids on 10 of 10 strings and round-trips.

use crate::LocalError;
use candle_core::quantized::gguf_file::Value;
use serde_json::{Map, Value as Json, json};
use std::collections::HashMap;
use tokenizers::Tokenizer;

/// GGUF token types (llama.cpp's `llama_token_type`) registered as special.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::U8(v) => Some(i64::from(*v)),
        Value::I8(v) => Some(i64::from(*v)),
        Value::U16(v) => Some(i64::from(*v)),
        Value::I16(v) => Some(i64::from(*v)),
        Value::U32(v) => Some(i64::from(*v)),
        Value::I32(v) => Some(i64::from(*v)),
        Value::U64(v) => i64::try_from(*v).ok(),
        Value::I64(v) => Some(*v),
        _ => None,
    }
}

/// A metadata integer (of any integer width).
pub(crate) fn metadata_int(metadata: &HashMap<String, Value>, key: &str) -> Option<i64> {
    metadata.get(key).and_then(integer)
}

/// A metadata string.
pub(crate) fn metadata_str<'a>(metadata: &'a HashMap<String, Value>, key: &str) -> Option<&'a str> {
    match metadata.get(key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn strings(metadata: &HashMap<String, Value>, key: &str) -> Result<Vec<String>, LocalError> {
    match metadata.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(LocalError::Tokenizer(format!(
                    "{key} holds a non-string {:?}",
                    other.value_type()
                ))),
            })
            .collect(),
        Some(_) => Err(LocalError::Tokenizer(format!("{key} is not an array"))),
        None => Err(LocalError::Tokenizer(format!(
            "no {key} in the GGUF metadata"
        ))),
    }
}

/// The pre-tokenizer for a GGUF `tokenizer.ggml.pre` name.
fn pre_tokenizer(pre: &str) -> Json {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    match pre {
        // llama.cpp's smollm pre-tokenizer: `\p{N}` (one digit at a time),
        // then GPT-2's split.
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level,
        ]}),
        _ => byte_level,
    }
}

/// Builds the tokenizer of a GGUF file from its `tokenizer.ggml.*` metadata.
/// Only BPE (`tokenizer.ggml.model = gpt2`) vocabularies are supported.
pub fn tokenizer_from_gguf(metadata: &HashMap<String, Value>) -> Result<Tokenizer, LocalError> {
    let model = metadata_str(metadata, "tokenizer.ggml.model").unwrap_or("");
    if model != "gpt2" {
        return Err(LocalError::Tokenizer(format!(
            "tokenizer model `{model}` is not supported (only BPE vocabularies, `gpt2`)"
        )));
    }
    let pre = metadata_str(metadata, "tokenizer.ggml.pre").unwrap_or("default");
    if !matches!(pre, "smollm" | "default" | "gpt2") {
        tracing::warn!(
            pre,
            "unknown GGUF pre-tokenizer; using GPT-2's byte-level split, ids may differ from llama.cpp"
        );
    }
    let tokens = strings(metadata, "tokenizer.ggml.tokens")?;
    let merges = strings(metadata, "tokenizer.ggml.merges")?;
    let types: Vec<i64> = match metadata.get("tokenizer.ggml.token_type") {
        Some(Value::Array(items)) => items.iter().map(|v| integer(v).unwrap_or(1)).collect(),
        _ => Vec::new(),
    };
    let vocab: Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.clone(), json!(id)))
        .collect();
    let added: Vec<Json> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(**t, CONTROL | USER_DEFINED))
        .filter_map(|(id, t)| {
            let content = tokens.get(id)?;
            Some(json!({
                "id": id, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": *t == CONTROL,
            }))
        })
        .collect();
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer(pre),
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    let text = serde_json::to_string(&spec).map_err(|e| LocalError::Tokenizer(e.to_string()))?;
    text.parse::<Tokenizer>()
        .map_err(|e| LocalError::Tokenizer(format!("cannot build the BPE tokenizer: {e}")))
}
