//! The unbiased pass@k estimator of Chen et al. 2021 ("Evaluating Large
//! Language Models Trained on Code", §2.1): with n samples of which c pass,
//! pass@k = 1 − C(n−c, k) / C(n, k), computed as a product so that no
//! binomial coefficient is ever formed (they overflow for n in the hundreds).

/// pass@k for `n` samples of which `c` passed. `k` is clamped into 1..=n;
/// `n = 0` gives 0.
///
/// ```
/// use vigil_worker::scorers::pass_at_k::pass_at_k;
/// assert_eq!(pass_at_k(1, 1, 1), 1.0);
/// assert_eq!(pass_at_k(10, 0, 5), 0.0);
/// assert!((pass_at_k(10, 3, 1) - 0.3).abs() < 1e-12);
/// ```
pub fn pass_at_k(n: u64, c: u64, k: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let c = c.min(n);
    let k = k.clamp(1, n);
    if n - c < k {
        // Every choice of k samples contains a passing one.
        return 1.0;
    }
    // C(n−c, k) / C(n, k) = Π_{i = n−c+1}^{n} (1 − k / i)
    let mut fail = 1.0f64;
    for i in (n - c + 1)..=n {
        fail *= 1.0 - k as f64 / i as f64;
    }
    1.0 - fail
}

#[cfg(test)]
mod tests {
    use super::pass_at_k;

    /// C(a, b) exactly, for small numbers.
    fn choose(a: u64, b: u64) -> f64 {
        if b > a {
            return 0.0;
        }
        (0..b).fold(1.0, |acc, i| acc * (a - i) as f64 / (i + 1) as f64)
    }

    #[test]
    fn equals_the_binomial_formula_on_small_numbers() {
        for n in 1..=20u64 {
            for c in 0..=n {
                for k in 1..=n {
                    let want = 1.0 - choose(n - c, k) / choose(n, k);
                    let got = pass_at_k(n, c, k);
                    assert!(
                        (got - want).abs() < 1e-9,
                        "n={n} c={c} k={k}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn pass_at_1_is_the_fraction_passed() {
        assert!((pass_at_k(200, 37, 1) - 37.0 / 200.0).abs() < 1e-12);
    }

    #[test]
    fn stable_for_large_n() {
        // C(1000, 100) overflows f64; the product form does not.
        let v = pass_at_k(1000, 5, 100);
        let want = 1.0 - (0..5).fold(1.0, |acc, i| acc * (900.0 - i as f64) / (1000.0 - i as f64));
        assert!((v - want).abs() < 1e-12, "{v} vs {want}");
        assert!(v.is_finite() && (0.0..=1.0).contains(&v));
    }

    #[test]
    fn k_above_n_is_clamped_and_zero_samples_score_zero() {
        assert_eq!(pass_at_k(3, 1, 10), 1.0);
        assert_eq!(pass_at_k(0, 0, 1), 0.0);
    }
}
