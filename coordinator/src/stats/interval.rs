//! Confidence intervals: Wilson score for pass rates, Student's t for means.

use super::Welford;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Keeps a confidence level inside (0, 1), where the quantiles are finite.
/// NaN falls back to 0.95, the level every summary uses.
fn sane_confidence(confidence: f64) -> f64 {
    if confidence.is_nan() {
        0.95
    } else {
        confidence.clamp(1e-9, 1.0 - 1e-12)
    }
}

/// The two-sided standard normal quantile for `confidence`: the `z` with
/// `P(|Z| ≤ z) = confidence` (1.959964 for 0.95).
///
/// ```
/// let z = vigil_coordinator::stats::normal_quantile(0.95);
/// assert!((z - 1.959964).abs() < 1e-6);
/// ```
pub fn normal_quantile(confidence: f64) -> f64 {
    let c = sane_confidence(confidence);
    let normal = Normal::new(0.0, 1.0).expect("the standard normal is valid");
    normal.inverse_cdf(0.5 + c / 2.0)
}

/// Degrees of freedom above which [`student_t_quantile`] uses the
/// asymptotic expansion instead of statrs.
const LARGE_DF: u64 = 10_000;

/// The two-sided Student's t quantile for `confidence` with `df` degrees of
/// freedom (2.262157 for 0.95 and 9). `df` of 0 is treated as 1.
///
/// ```
/// let t = vigil_coordinator::stats::student_t_quantile(0.95, 9);
/// assert!((t - 2.262157).abs() < 1e-6);
/// ```
pub fn student_t_quantile(confidence: f64, df: u64) -> f64 {
    let c = sane_confidence(confidence);
    if df > LARGE_DF {
        // statrs 0.18's inverse regularised beta drifts for large df (off by
        // 1e-4 at df = 10⁶ and by 0.13 at 10⁷); the Cornish-Fisher expansion
        // of t around z is exact to O(df⁻³) there, below 1e-12.
        let z = normal_quantile(c);
        let nu = df as f64;
        let (z3, z5) = (z.powi(3), z.powi(5));
        return z + (z3 + z) / (4.0 * nu) + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * nu * nu);
    }
    let df = df.max(1) as f64;
    match StudentsT::new(0.0, 1.0, df) {
        Ok(t) => t.inverse_cdf(0.5 + c / 2.0),
        // Unreachable for df ≥ 1, but the normal is the t's limit anyway.
        Err(_) => normal_quantile(c),
    }
}

/// The Wilson score interval of a proportion: `successes` out of `n` at the
/// two-sided `confidence` level (0.95 for 95%).
///
/// Unlike the normal ("Wald") interval it stays inside [0, 1], is never empty
/// at 0 or n successes, and keeps close to nominal coverage at small `n`.
/// With `n = 0` nothing is known and the interval is `(0, 1)`. `successes`
/// above `n` are taken as `n`.
///
/// ```
/// use vigil_coordinator::stats::wilson_interval;
/// let (lo, hi) = wilson_interval(81, 100, 0.95);
/// assert!((lo - 0.7222).abs() < 1e-4 && (hi - 0.8749).abs() < 1e-4);
/// assert_eq!(wilson_interval(0, 0, 0.95), (0.0, 1.0));
/// ```
pub fn wilson_interval(successes: u64, n: u64, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let k = successes.min(n) as f64;
    let n = n as f64;
    let z = normal_quantile(confidence);
    let z2 = z * z;
    let p = k / n;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    // At k = 0 (k = n) the low (high) end is exactly 0 (1) in exact
    // arithmetic; rounding would leave it a hair off, above the estimate.
    let low = if k == 0.0 {
        0.0
    } else {
        (centre - half).clamp(0.0, 1.0)
    };
    let high = if k == n {
        1.0
    } else {
        (centre + half).clamp(0.0, 1.0)
    };
    (low, high)
}

/// The Student's t interval of the mean of the values in `w`, at the
/// two-sided `confidence` level, clamped to [0, 1] because scores lie there.
///
/// With fewer than two values the variance is unknown, so the interval is
/// the whole score range `(0, 1)`: a gate on `mean_ci_low` then fails rather
/// than trusting one item. With two or more equal values the interval is the
/// single point of the mean.
///
/// ```
/// use vigil_coordinator::stats::{mean_interval, Welford};
/// let mut w = Welford::new();
/// for x in [0.2, 0.4, 0.6, 0.8] { w.push(x); }
/// let (lo, hi) = mean_interval(&w, 0.95);
/// assert!(lo < 0.5 && 0.5 < hi);
/// assert_eq!(mean_interval(&Welford::new(), 0.95), (0.0, 1.0));
/// ```
pub fn mean_interval(w: &Welford, confidence: f64) -> (f64, f64) {
    if w.count() < 2 {
        return (0.0, 1.0);
    }
    let t = student_t_quantile(confidence, w.count() - 1);
    let half = t * w.std_error();
    let mean = w.mean();
    ((mean - half).clamp(0.0, 1.0), (mean + half).clamp(0.0, 1.0))
}
