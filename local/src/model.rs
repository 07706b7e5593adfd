//! Loading a GGUF model: metadata first (tokenizer, chat template, special
//! tokens), then the weights, with Q4_1 tensors widened to Q8_0.
//!
//! Why widen: candle's Q4_1 matmul has no SIMD kernel in a default build
//! (about 8–9 tokens/s on one thread for SmolLM2-135M); Q8_0 keeps the
//! greedy answers and runs about three times faster. (Q4_0 would be smaller
//! but changes answers.)

use crate::LocalError;
use crate::quantized_llama::{self, ModelWeights};
use crate::template::ChatTemplate;
use crate::tokenizer::{metadata_int, metadata_str, tokenizer_from_gguf};
use candle_core::Device;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// A loaded model, ready to generate. Cheap to share (`Arc`); each
/// generation clones the weights' handles (not the data) with its own cache.
#[derive(Debug)]
pub struct LocalModel {
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) weights: ModelWeights,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) template: ChatTemplate,
    pub(crate) bos: Option<u32>,
    pub(crate) add_bos: bool,
    /// Token ids that end a generation (eos, and ChatML's end of turn).
    pub(crate) stop_ids: Vec<u32>,
    /// Most tokens (prompt and output) one generation may hold.
    pub(crate) context: usize,
}

fn load_error(path: &Path, e: impl std::fmt::Display) -> LocalError {
    LocalError::Load {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl LocalModel {
    /// Loads `path` on the CPU. Slow (seconds): call it off the async runtime.
    pub fn load(path: &Path) -> Result<LocalModel, LocalError> {
        let file = File::open(path).map_err(|source| LocalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| load_error(path, e))?;
        let md = &content.metadata;
        let arch = metadata_str(md, "general.architecture").unwrap_or("");
        if arch != "llama" {
            return Err(load_error(
                path,
                format!("architecture `{arch}` is not supported (only llama-style models)"),
            ));
        }
        let tokenizer = tokenizer_from_gguf(md)?;
        let token = |key: &str| metadata_int(md, key).and_then(|v| u32::try_from(v).ok());
        let text_of = |id: Option<u32>| {
            id.and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let bos = token("tokenizer.ggml.bos_token_id");
        let eos = token("tokenizer.ggml.eos_token_id");
        let add_bos = matches!(
            md.get("tokenizer.ggml.add_bos_token"),
            Some(gguf_file::Value::Bool(true))
        );
        let template = ChatTemplate::new(
            metadata_str(md, "tokenizer.chat_template"),
            &text_of(bos),
            &text_of(eos),
        )?;
        let mut stop_ids: Vec<u32> = eos.into_iter().collect();
        for special in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
            if let Some(id) = tokenizer.token_to_id(special)
                && !stop_ids.contains(&id)
            {
                stop_ids.push(id);
            }
        }
        let trained = metadata_int(md, "llama.context_length").unwrap_or(i64::MAX);
        let context = usize::try_from(trained)
            .unwrap_or(usize::MAX)
            .min(quantized_llama::MAX_SEQ_LEN);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();

        let weights = widened_weights(path, content, &mut reader)?;
        Ok(LocalModel {
            path: path.to_path_buf(),
            name,
            weights,
            tokenizer,
            template,
            bos,
            add_bos,
            stop_ids,
            context,
        })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's name, reported as the response's model.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }
}

/// The model's weights with every Q4_1 tensor re-quantised to Q8_0: the
/// tensors are read, converted, written into an in-memory GGUF with the same
/// metadata, and candle's llama loader reads that.
fn widened_weights(
    path: &Path,
    content: gguf_file::Content,
    reader: &mut BufReader<File>,
) -> Result<ModelWeights, LocalError> {
    let device = Device::Cpu;
    let widen = |dtype: GgmlDType| dtype == GgmlDType::Q4_1;
    if !content.tensor_infos.values().any(|t| widen(t.ggml_dtype)) {
        return ModelWeights::from_gguf(content, reader, &device).map_err(|e| load_error(path, e));
    }
    let mut names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    for name in names {
        let tensor = content
            .tensor(reader, &name, &device)
            .map_err(|e| load_error(path, e))?;
        let tensor = if widen(tensor.dtype()) {
            let values = tensor
                .dequantize(&device)
                .map_err(|e| load_error(path, e))?;
            QTensor::quantize(&values, GgmlDType::Q8_0).map_err(|e| load_error(path, e))?
        } else {
            tensor
        };
        tensors.push((name, tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut buffer = Cursor::new(Vec::new());
    gguf_file::write(&mut buffer, &metadata, &refs).map_err(|e| load_error(path, e))?;
    drop(refs);
    drop(tensors);
    buffer.set_position(0);
    let widened_content = gguf_file::Content::read(&mut buffer).map_err(|e| load_error(path, e))?;
    tracing::debug!(path = %path.display(), "Q4_1 tensors widened to Q8_0");
    ModelWeights::from_gguf(widened_content, &mut buffer, &device).map_err(|e| load_error(path, e))
}
