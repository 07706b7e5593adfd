//! What can go wrong loading or running a local model.

use std::path::PathBuf;

/// A local model could not be loaded or could not generate.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The file could not be opened or read.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a GGUF model this backend can run.
    #[error("cannot load model {path}: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The GGUF tokenizer metadata is missing or of an unsupported kind.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template could not be compiled or rendered.
    #[error("chat template: {0}")]
    Template(String),
    /// The request cannot be served (for example a prompt longer than the context).
    #[error("{0}")]
    Request(String),
    /// The model failed while generating.
    #[error("generation failed: {0}")]
    Generate(String),
}

impl From<candle_core::Error> for LocalError {
    fn from(e: candle_core::Error) -> Self {
        LocalError::Generate(e.to_string())
    }
}
