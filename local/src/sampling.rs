//! The next token from the logits: greedy, or sampled with a temperature and
//! optional nucleus (top-p), from a seeded RNG.
//!
//! Vendored from `candle-transformers` 0.11.1 (<https://github.com/huggingface/candle>,
//! `candle-transformers/src/generation/mod.rs`), licensed MIT OR Apache-2.0;
//! Copyright (c) The Candle Authors (Hugging Face). Changes: only the three
//! strategies vigil uses (argmax, all, top-p) are kept; the arithmetic, the order
//! of the RNG draws and so the tokens for a seed are unchanged. Why vendored: see
//! `crate::quantized_llama`.

use candle_core::{DType, Error, Result, Tensor};
use rand::{SeedableRng, distr::Distribution};

/// How the next token is chosen.
#[derive(Clone, PartialEq, Debug)]
pub(crate) enum Sampling {
    /// The most likely token (greedy).
    ArgMax,
    /// Sampled from the whole distribution at this temperature.
    All { temperature: f64 },
    /// Sampled from the smallest set of tokens whose probability reaches `p`.
    TopP { p: f64, temperature: f64 },
}

/// A [`Sampling`] strategy with its own seeded RNG.
pub(crate) struct LogitsProcessor {
    rng: rand::rngs::StdRng,
    sampling: Sampling,
}

impl LogitsProcessor {
    /// A processor whose RNG starts from `seed`.
    pub(crate) fn from_sampling(seed: u64, sampling: Sampling) -> Self {
        let rng = rand::rngs::StdRng::seed_from_u64(seed);
        Self { rng, sampling }
    }

    fn sample_argmax(&mut self, logits: Tensor) -> Result<u32> {
        logits.argmax(candle_core::D::Minus1)?.to_scalar::<u32>()
    }

    fn sample_multinomial(&mut self, prs: &[f32]) -> Result<u32> {
        let distr = rand::distr::weighted::WeightedIndex::new(prs).map_err(Error::wrap)?;
        let next_token = distr.sample(&mut self.rng) as u32;
        Ok(next_token)
    }

    /// top-p sampling (or "nucleus sampling") samples from the smallest set of tokens that exceed
    /// probability top_p. This way we never sample tokens that have very low probabilities and are
    /// less likely to go "off the rails".
    fn sample_topp(&mut self, prs: &mut [f32], top_p: f32) -> Result<u32> {
        let mut argsort_indices = (0..prs.len()).collect::<Vec<_>>();

        // Sort by descending probability.
        argsort_indices.sort_by(|&i, &j| prs[j].total_cmp(&prs[i]));

        // Clamp smaller probabilities to zero.
        let mut cumsum = 0.;
        for index in &argsort_indices {
            if cumsum >= top_p {
                prs[*index] = 0.0;
            } else {
                cumsum += prs[*index];
            }
        }
        // Sample with clamped probabilities.
        self.sample_multinomial(prs)
    }

    /// The next token for these logits (the last dimension is the vocabulary).
    pub(crate) fn sample(&mut self, logits: &Tensor) -> Result<u32> {
        let logits = logits.to_dtype(DType::F32)?;
        let prs = |temperature: f64| -> Result<Vec<f32>> {
            let logits = (&logits / temperature)?;
            let prs = candle_nn::ops::softmax_last_dim(&logits)?;
            prs.to_vec1()
        };

        let next_token = match &self.sampling {
            Sampling::ArgMax => self.sample_argmax(logits)?,
            Sampling::All { temperature } => {
                let prs = prs(*temperature)?;
                self.sample_multinomial(&prs)?
            }
            Sampling::TopP { p, temperature } => {
                let mut prs = prs(*temperature)?;
                if *p <= 0.0 || *p >= 1.0 {
                    // simply sample from the predicted probability distribution
                    self.sample_multinomial(&prs)?
                } else {
                    // top-p (nucleus) sampling, clamping the least likely tokens to zero
                    self.sample_topp(&mut prs, *p as f32)?
                }
            }
        };
        Ok(next_token)
    }
}
