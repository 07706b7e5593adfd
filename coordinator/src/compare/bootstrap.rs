//! The paired bootstrap for continuous scores: resample item pairs with
//! replacement, seeded, so a comparison is reproducible.
//!
//! The interval is the percentile interval of the resampled mean differences;
//! the p-value is the null-centred bootstrap test (Efron & Tibshirani §16.4):
//! the share of resampled means, shifted to mean 0, at least as far from 0 as
//! the observed mean difference. Above [`MAX_BOOTSTRAP_PAIRS`] pairs the
//! bootstrap would cost too much and adds nothing over the central limit
//! theorem: the normal approximation of the paired mean is used instead.

use crate::stats::normal_quantile;

/// Above this many pairs the normal approximation replaces resampling.
pub const MAX_BOOTSTRAP_PAIRS: usize = 200_000;

/// A small, fast, seeded generator (SplitMix64): good enough for resampling
/// indices, and the same on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (Lemire's multiply-shift; `n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The outcome of a paired bootstrap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapResult {
    /// Mean of the differences.
    pub diff: f64,
    /// Interval low end.
    pub ci_low: f64,
    /// Interval high end.
    pub ci_high: f64,
    /// Two-sided p-value of "mean difference = 0".
    pub p_value: f64,
}

/// Paired bootstrap of the mean of `diffs` (candidate − baseline per item).
///
/// ```
/// use vigil_coordinator::compare::bootstrap::paired_bootstrap;
/// let diffs: Vec<f64> = (0..200).map(|i| if i % 2 == 0 { 0.1 } else { 0.0 }).collect();
/// let r = paired_bootstrap(&diffs, 2000, 7, 0.95);
/// assert!((r.diff - 0.05).abs() < 1e-12);
/// assert!(r.ci_low > 0.0 && r.p_value < 0.01);
/// ```
pub fn paired_bootstrap(
    diffs: &[f64],
    resamples: u32,
    seed: u64,
    confidence: f64,
) -> BootstrapResult {
    let n = diffs.len();
    if n == 0 {
        return BootstrapResult {
            diff: 0.0,
            ci_low: 0.0,
            ci_high: 0.0,
            p_value: 1.0,
        };
    }
    let mean = diffs.iter().sum::<f64>() / n as f64;
    if n > MAX_BOOTSTRAP_PAIRS || resamples == 0 {
        return normal_approximation(diffs, mean, confidence);
    }
    let mut rng = SplitMix64::new(seed);
    let mut means = Vec::with_capacity(resamples as usize);
    for _ in 0..resamples {
        let mut sum = 0.0;
        for _ in 0..n {
            sum += diffs[rng.below(n)];
        }
        means.push(sum / n as f64);
    }
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| means[((q * resamples as f64).floor() as usize).min(means.len() - 1)];
    // Shifted to the null (mean 0): how often is a resampled mean as extreme?
    let extreme = means
        .iter()
        .filter(|m| (**m - mean).abs() >= mean.abs() - 1e-15)
        .count();
    BootstrapResult {
        diff: mean,
        ci_low: at(tail),
        ci_high: at(1.0 - tail),
        p_value: ((extreme + 1) as f64 / (resamples as f64 + 1.0)).min(1.0),
    }
}

fn normal_approximation(diffs: &[f64], mean: f64, confidence: f64) -> BootstrapResult {
    let n = diffs.len() as f64;
    let var = diffs.iter().map(|d| (d - mean) * (d - mean)).sum::<f64>() / (n - 1.0).max(1.0);
    let se = (var / n).sqrt();
    let z = normal_quantile(confidence);
    let p_value = if se == 0.0 {
        if mean == 0.0 { 1.0 } else { 0.0 }
    } else {
        2.0 * (1.0 - standard_normal_cdf((mean / se).abs()))
    };
    BootstrapResult {
        diff: mean,
        ci_low: mean - z * se,
        ci_high: mean + z * se,
        p_value,
    }
}

fn standard_normal_cdf(x: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().cdf(x)
}
