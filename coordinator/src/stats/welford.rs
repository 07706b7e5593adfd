//! Running mean and variance (Welford), mergeable (Chan et al.).

/// A running mean and variance that takes one value at a time and can be
/// merged with another accumulator, in constant memory.
///
/// Welford's update is numerically stable where the naive sum of squares
/// cancels catastrophically; the merge is Chan et al.'s parallel formula, so
/// partial aggregates (per worker, per slice) combine exactly.
///
/// ```
/// use vigil_coordinator::stats::Welford;
/// let mut w = Welford::new();
/// for x in [1.0, 2.0, 3.0, 4.0] { w.push(x); }
/// assert_eq!(w.count(), 4);
/// assert!((w.mean() - 2.5).abs() < 1e-12);
/// assert!((w.variance() - 5.0 / 3.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Welford {
    count: u64,
    mean: f64,
    /// Sum of squared deviations from the current mean.
    m2: f64,
}

impl Welford {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// `count` copies of the value `x`, in constant time (failed items
    /// scored 0, merged into a scorer's values).
    ///
    /// ```
    /// use vigil_coordinator::stats::Welford;
    /// let mut w = Welford::constant(0.0, 2);
    /// w.push(1.0); w.push(1.0);
    /// assert!((w.mean() - 0.5).abs() < 1e-12 && w.count() == 4);
    /// ```
    pub fn constant(x: f64, count: u64) -> Self {
        Welford {
            count,
            mean: if count == 0 { 0.0 } else { x },
            m2: 0.0,
        }
    }

    /// Adds one value.
    pub fn push(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Adds every value of `other`, as if they had been pushed here.
    ///
    /// ```
    /// use vigil_coordinator::stats::Welford;
    /// let (mut a, mut b) = (Welford::new(), Welford::new());
    /// a.push(1.0); a.push(2.0); b.push(3.0); b.push(4.0);
    /// a.merge(&b);
    /// assert!((a.mean() - 2.5).abs() < 1e-12);
    /// ```
    pub fn merge(&mut self, other: &Welford) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let n = self.count + other.count;
        let delta = other.mean - self.mean;
        let (na, nb, nf) = (self.count as f64, other.count as f64, n as f64);
        self.mean += delta * nb / nf;
        self.m2 += other.m2 + delta * delta * na * nb / nf;
        self.count = n;
    }

    /// Values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The mean; 0 when empty.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The sample variance (divisor n − 1); 0 with fewer than two values.
    pub fn variance(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            // Rounding can leave m2 a hair below zero when all values are equal.
            (self.m2 / (self.count - 1) as f64).max(0.0)
        }
    }

    /// The sample standard deviation; 0 with fewer than two values.
    pub fn std_dev(&self) -> f64 {
        self.variance().sqrt()
    }

    /// The standard error of the mean, `s / √n`; 0 with fewer than two values.
    pub fn std_error(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            self.std_dev() / (self.count as f64).sqrt()
        }
    }
}
