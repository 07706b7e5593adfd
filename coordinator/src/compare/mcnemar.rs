//! McNemar's exact test for paired pass/fail outcomes, and the Agresti–Min
//! interval for the paired difference of proportions.
//!
//! Only the discordant pairs carry information: `b` items passed in the
//! baseline and failed in the candidate, `c` the other way round. Under the
//! null hypothesis (same pass rate) each discordant pair is a fair coin, so
//! `min(b, c)` is Binomial(b + c, 1/2) and the two-sided exact p-value is
//! `min(1, 2 · P(X ≤ min(b, c)))`.

use crate::stats::normal_quantile;

/// Two-sided exact p-value of McNemar's test.
///
/// ```
/// use vigil_coordinator::compare::mcnemar::exact_p_value;
/// assert_eq!(exact_p_value(0, 0), 1.0);
/// assert!((exact_p_value(0, 5) - 0.0625).abs() < 1e-12);
/// assert!(exact_p_value(10, 40) < 0.001);
/// ```
pub fn exact_p_value(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    (2.0 * binomial_half_cdf(k, n)).min(1.0)
}

/// P(X ≤ k) for X ~ Binomial(n, 1/2), summed in log space (exact for any n).
fn binomial_half_cdf(k: u64, n: u64) -> f64 {
    if k >= n {
        return 1.0;
    }
    // log C(n, i) built up incrementally; terms summed with log-sum-exp.
    let ln_half_n = n as f64 * std::f64::consts::LN_2;
    let mut log_c = 0.0f64; // log C(n, 0)
    let mut terms = Vec::with_capacity(k as usize + 1);
    for i in 0..=k {
        if i > 0 {
            log_c += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        terms.push(log_c - ln_half_n);
    }
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    (max + sum.ln()).exp().min(1.0)
}

/// The Agresti–Min (2005) interval of the paired difference of proportions
/// `(c − b) / n` at `confidence`: a Wald interval after adding ½ to each of
/// the four cells of the 2×2 table, which keeps coverage near nominal even
/// with few discordant pairs. `b`: pass→fail, `c`: fail→pass, `n`: pairs.
///
/// ```
/// use vigil_coordinator::compare::mcnemar::agresti_min_interval;
/// let (lo, hi) = agresti_min_interval(10, 40, 1000, 0.95);
/// assert!(lo > 0.0 && hi < 0.1 && lo < 0.03 && hi > 0.03);
/// ```
pub fn agresti_min_interval(b: u64, c: u64, n: u64, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let (b, c, n) = (b as f64 + 0.5, c as f64 + 0.5, n as f64 + 2.0);
    let diff = (c - b) / n;
    let var = ((b + c) - (c - b) * (c - b) / n) / (n * n);
    let z = normal_quantile(confidence);
    let half = z * var.max(0.0).sqrt();
    ((diff - half).max(-1.0), (diff + half).min(1.0))
}
