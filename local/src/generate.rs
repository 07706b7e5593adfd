//! One generation: prompt → tokens → prefill → decode until eos, a stop
//! sequence or `max_tokens`.

use crate::sampling::{LogitsProcessor, Sampling};
use crate::{LocalError, LocalModel};
use candle_core::{Device, Tensor};
use vigil_protocol::ChatMessage;

/// Tokens generated when a request sets no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 256;

/// What to generate from.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    /// Chat messages, rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Raw text, tokenized as it is.
    Text(String),
}

/// A generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The prompt.
    pub prompt: PromptInput,
    /// Most tokens to generate (default [`DEFAULT_MAX_TOKENS`]).
    pub max_tokens: Option<u32>,
    /// Sampling temperature; `None` or 0 means greedy.
    pub temperature: Option<f64>,
    /// Nucleus sampling (with a temperature above 0).
    pub top_p: Option<f64>,
    /// The sampler's seed (default 0): the same seed gives the same text.
    pub seed: Option<u64>,
    /// The output ends before the first of these strings.
    pub stop: Vec<String>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End of sequence or a stop sequence.
    Stop,
    /// `max_tokens` (or the context) reached.
    Length,
}

impl FinishReason {
    /// OpenAI's name: `stop` or `length`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The generated text, stop sequence excluded.
    pub text: String,
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated (an end-of-sequence token not counted).
    pub completion_tokens: u64,
    /// Why it ended.
    pub finish_reason: FinishReason,
}

fn sampling(request: &GenerateRequest) -> Sampling {
    match request.temperature {
        Some(temperature) if temperature > 1e-7 => match request.top_p {
            Some(p) if p < 1.0 => Sampling::TopP { p, temperature },
            _ => Sampling::All { temperature },
        },
        _ => Sampling::ArgMax,
    }
}

/// The text before the earliest stop sequence in `text`, if any occurs.
fn cut_at_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

impl LocalModel {
    /// The prompt's token ids.
    pub fn encode_prompt(&self, prompt: &PromptInput) -> Result<Vec<u32>, LocalError> {
        let text = match prompt {
            PromptInput::Chat(messages) => self.template.render(messages)?,
            PromptInput::Text(text) => text.clone(),
        };
        // Special tokens in the rendered template (`<|im_start|>`) are matched
        // as added tokens; `false` only means no post-processor additions.
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| LocalError::Request(format!("cannot tokenize the prompt: {e}")))?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        // A chat template writes its own BOS where the model wants one.
        if self.add_bos
            && matches!(prompt, PromptInput::Text(_))
            && let Some(bos) = self.bos
        {
            ids.push(bos);
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// Generates for `request`. CPU-bound and blocking: run it on a blocking
    /// thread. The same request (seed included) gives the same text.
    pub fn generate(&self, request: &GenerateRequest) -> Result<Generation, LocalError> {
        let prompt = self.encode_prompt(&request.prompt)?;
        if prompt.is_empty() {
            return Err(LocalError::Request("the prompt is empty".into()));
        }
        if prompt.len() >= self.context {
            return Err(LocalError::Request(format!(
                "the prompt has {} tokens; this model's context holds {}",
                prompt.len(),
                self.context
            )));
        }
        let max_tokens = request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS) as usize;
        let room = self.context - prompt.len();
        let budget = max_tokens.min(room);

        // Cloning shares the weight tensors; the clone's KV cache is its own.
        let mut model = self.weights.clone();
        let mut sampler =
            LogitsProcessor::from_sampling(request.seed.unwrap_or(0), sampling(request));
        let device = Device::Cpu;
        let input = Tensor::new(prompt.as_slice(), &device)?.unsqueeze(0)?;
        let mut logits = model.forward(&input, 0)?.squeeze(0)?;
        let mut output: Vec<u32> = Vec::new();
        let mut text = String::new();
        let mut finish = FinishReason::Length;
        while output.len() < budget {
            let next = sampler.sample(&logits)?;
            if self.stop_ids.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            output.push(next);
            text = self
                .tokenizer
                .decode(&output, true)
                .map_err(|e| LocalError::Generate(format!("cannot decode: {e}")))?;
            if let Some(cut) = cut_at_stop(&text, &request.stop) {
                text.truncate(cut);
                finish = FinishReason::Stop;
                break;
            }
            if output.len() == budget {
                break;
            }
            let input = Tensor::new(&[next], &device)?.unsqueeze(0)?;
            logits = model
                .forward(&input, prompt.len() + output.len() - 1)?
                .squeeze(0)?;
        }
        if finish == FinishReason::Length && max_tokens > room {
            tracing::debug!(
                room,
                max_tokens,
                "generation stopped at the end of the context"
            );
        }
        Ok(Generation {
            text,
            prompt_tokens: prompt.len() as u64,
            completion_tokens: output.len() as u64,
            finish_reason: finish,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_sequences_cut_at_the_earliest() {
        let stop = vec!["\n".to_string(), "Q:".to_string(), String::new()];
        assert_eq!(cut_at_stop("Paris\nQ: next", &stop), Some(5));
        assert_eq!(cut_at_stop("Q: Paris\n", &stop), Some(0));
        assert_eq!(cut_at_stop("Paris", &stop), None);
    }

    #[test]
    fn zero_temperature_is_greedy() {
        let mut r = GenerateRequest {
            prompt: PromptInput::Text(String::new()),
            max_tokens: None,
            temperature: Some(0.0),
            top_p: Some(0.9),
            seed: None,
            stop: vec![],
        };
        assert_eq!(sampling(&r), Sampling::ArgMax);
        r.temperature = Some(0.7);
        assert_eq!(
            sampling(&r),
            Sampling::TopP {
                p: 0.9,
                temperature: 0.7
            }
        );
        r.top_p = None;
        assert_eq!(sampling(&r), Sampling::All { temperature: 0.7 });
    }
}
