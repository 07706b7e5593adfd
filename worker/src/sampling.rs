//! Sampling n completions per item (`samples: n` in a suite): each sample is
//! the same request with its own seed, so that backends that honour seeds
//! give distinct samples and the response cache (whose key includes the
//! seed) keeps one entry per sample instead of collapsing them.

use vigil_protocol::TargetSpec;

/// The target of sample `index`: sample 0 is the target as given (so one
/// sample per item is exactly a plain run, cache entries included); sample
/// i > 0 has seed `seed + i` (`seed` defaults to 0).
///
/// ```
/// use vigil_protocol::TargetSpec;
/// use vigil_worker::sampling::target_for_sample;
/// let t = TargetSpec::default();
/// assert_eq!(target_for_sample(&t, 0).params.seed, None);
/// assert_eq!(target_for_sample(&t, 3).params.seed, Some(3));
/// let mut t7 = t.clone();
/// t7.params.seed = Some(7);
/// assert_eq!(target_for_sample(&t7, 2).params.seed, Some(9));
/// ```
pub fn target_for_sample(target: &TargetSpec, index: u32) -> TargetSpec {
    let mut t = target.clone();
    if index > 0 {
        t.params.seed = Some(t.params.seed.unwrap_or(0).wrapping_add(u64::from(index)));
    }
    t
}
