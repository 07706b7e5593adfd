//! The anytime-valid paired stopping rule: a betting confidence sequence
//! (Waudby-Smith & Ramdas 2023, "Estimating means of bounded random
//! variables by betting", JRSS-B; the hedged capital process of their §4 with
//! the predictable plug-in bets of their eq. 26) on the mean of paired
//! observations in [0, 1], tested against 0.5.

use std::fmt;

/// What the rule was asked to refuse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    /// An observation outside [0, 1] or not a number.
    #[error("paired observation {0} is outside [0, 1]")]
    OutOfRange(f64),
    /// A configuration value out of its range.
    #[error("invalid stopping rule configuration: {0}")]
    Config(String),
}

/// How a pair of per-item scores (each in [0, 1]) becomes one observation
/// in [0, 1] whose mean is 0.5 when the candidate is as good as production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PairedMetric {
    /// A win (candidate scored higher) is 1, a tie 0.5, a loss 0: the mean
    /// is the win rate with ties counted half.
    #[default]
    WinRate,
    /// `(1 + candidate − production) / 2`: the mean score difference `Δ`
    /// mapped to [0, 1] (`Δ = 2·mean − 1`).
    Difference,
    /// The candidate's score is already a paired verdict (a pairwise
    /// judge's share: win 1, tie 0.5, loss 0, averaged over both orders);
    /// production's score is not used.
    Judge,
}

impl PairedMetric {
    /// The name used in summaries and on the command line
    /// (`win_rate`, `difference`).
    pub fn as_str(self) -> &'static str {
        match self {
            PairedMetric::WinRate => "win_rate",
            PairedMetric::Difference => "difference",
            PairedMetric::Judge => "judge",
        }
    }

    /// Parses [`PairedMetric::as_str`]'s names (`win-rate` is accepted too).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "win_rate" | "win-rate" => Some(PairedMetric::WinRate),
            "difference" => Some(PairedMetric::Difference),
            "judge" => Some(PairedMetric::Judge),
            _ => None,
        }
    }

    /// The observation of one pair of scores, both in [0, 1] (clamped).
    ///
    /// ```
    /// use vigil_coordinator::shadow::PairedMetric;
    /// assert_eq!(PairedMetric::WinRate.observe(0.9, 0.2), 1.0);
    /// assert_eq!(PairedMetric::WinRate.observe(0.5, 0.5), 0.5);
    /// assert_eq!(PairedMetric::Difference.observe(1.0, 0.0), 1.0);
    /// assert_eq!(PairedMetric::Difference.observe(0.25, 0.75), 0.25);
    /// ```
    pub fn observe(self, candidate: f64, production: f64) -> f64 {
        let (c, p) = (candidate.clamp(0.0, 1.0), production.clamp(0.0, 1.0));
        match self {
            PairedMetric::WinRate if c > p => 1.0,
            PairedMetric::WinRate if c < p => 0.0,
            PairedMetric::WinRate => 0.5,
            PairedMetric::Difference => (1.0 + c - p) / 2.0,
            PairedMetric::Judge => c,
        }
    }

    /// An observation-scale value (a mean in [0, 1]) in this metric's units:
    /// the win rate itself, or `Δ = 2·m − 1` for a difference.
    pub fn to_units(self, m: f64) -> f64 {
        match self {
            PairedMetric::WinRate | PairedMetric::Judge => m,
            PairedMetric::Difference => 2.0 * m - 1.0,
        }
    }
}

impl fmt::Display for PairedMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The call the rule made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The confidence sequence lies above 0.5: the candidate is better.
    Better,
    /// It lies below 0.5: the candidate is worse.
    Worse,
    /// The budget ran out with 0.5 still inside: no difference called.
    NoDifference,
}

impl Decision {
    /// `better`, `worse` or `no_difference`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Better => "better",
            Decision::Worse => "worse",
            Decision::NoDifference => "no_difference",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Configuration of a [`BettingCs`].
#[derive(Debug, Clone, PartialEq)]
pub struct BettingCsConfig {
    /// The error rate `α`: the sequence covers the mean at every time at
    /// once with probability at least `1 − α`.
    pub alpha: f64,
    /// Candidate means are the points `i / grid` for `0 < i < grid`; must be
    /// even, so 0.5 is a point. The decision reads only the point 0.5, the
    /// interval's ends are exact to `1 / grid`.
    pub grid: usize,
    /// The bets are truncated at `c / m` (and `c / (1 − m)`), `c` in (0, 1):
    /// a single observation can cost at most a fraction `c` of the capital.
    pub truncation: f64,
}

impl Default for BettingCsConfig {
    fn default() -> Self {
        BettingCsConfig {
            alpha: 0.05,
            grid: 1000,
            truncation: 0.5,
        }
    }
}

/// A betting confidence sequence for the mean of observations in [0, 1].
///
/// # The rule
///
/// For each candidate mean `m`, two gamblers bet on the observations: one
/// that the mean is above `m`, one that it is below. Their capitals are
///
/// ```text
/// K⁺_t(m) = Π_{i≤t} (1 + λ⁺_i(m) (x_i − m)),   K⁻_t(m) = Π_{i≤t} (1 − λ⁻_i(m) (x_i − m))
/// ```
///
/// with predictable bets (fixed before `x_i` is seen)
/// `λ̇_i = sqrt(2 ln(2/α) / (σ̂²_{i−1} · i · ln(1 + i)))`,
/// `λ⁺_i(m) = min(λ̇_i, c/m)`, `λ⁻_i(m) = min(λ̇_i, c/(1 − m))`, where
/// `σ̂²_t = (1/4 + Σ_{i≤t} (x_i − μ̂_i)²) / (t + 1)` and
/// `μ̂_t = (1/2 + Σ_{i≤t} x_i) / (t + 1)` (Waudby-Smith & Ramdas 2023,
/// eq. 26 and §4.1). The hedged capital is
/// `K±_t(m) = max(K⁺_t(m), K⁻_t(m)) / 2`, and the confidence sequence at
/// time `t` is every `m` whose hedged capital stayed below `1/α` up to `t`
/// (the running intersection).
///
/// # The guarantee
///
/// At the true mean `m*` (whatever the dependence, as long as each
/// observation's conditional mean given the past is `m*`), `K⁺` and `K⁻` are
/// nonnegative martingales starting at 1, so by Ville's inequality the
/// chance that `K±(m*)` ever reaches `1/α` is at most `α`: the sequence
/// covers `m*` at every time simultaneously with probability `≥ 1 − α`. So
/// a rule that looks after every item and stops as soon as 0.5 leaves the
/// sequence calls a difference between equal models with probability at most
/// `α`, however long it runs.
#[derive(Debug, Clone)]
pub struct BettingCs {
    config: BettingCsConfig,
    log_threshold: f64,
    /// The candidate means.
    points: Vec<f64>,
    /// `ln K⁺_t(m)` and `ln K⁻_t(m)` per point.
    log_up: Vec<f64>,
    log_down: Vec<f64>,
    /// Points rejected at some time so far.
    rejected: Vec<bool>,
    /// Index of 0.5 in `points`.
    half: usize,
    /// Whether the capital against 0.5 crossed on the "above" side first.
    half_rejected_above: Option<bool>,
    n: u64,
    sum: f64,
    /// `Σ (x_i − μ̂_i)²` for `σ̂²`.
    sum_sq: f64,
}

impl BettingCs {
    /// A confidence sequence with no observations yet.
    pub fn new(config: BettingCsConfig) -> Result<Self, RuleError> {
        if !(config.alpha > 0.0 && config.alpha < 1.0) {
            return Err(RuleError::Config(format!(
                "alpha must be in (0, 1), got {}",
                config.alpha
            )));
        }
        if config.grid < 2 || !config.grid.is_multiple_of(2) {
            return Err(RuleError::Config(format!(
                "grid must be an even number of at least 2, got {}",
                config.grid
            )));
        }
        if !(config.truncation > 0.0 && config.truncation < 1.0) {
            return Err(RuleError::Config(format!(
                "truncation must be in (0, 1), got {}",
                config.truncation
            )));
        }
        let g = config.grid;
        let points: Vec<f64> = (1..g).map(|i| i as f64 / g as f64).collect();
        let k = points.len();
        Ok(BettingCs {
            log_threshold: (1.0 / config.alpha).ln(),
            half: g / 2 - 1,
            config,
            points,
            log_up: vec![0.0; k],
            log_down: vec![0.0; k],
            rejected: vec![false; k],
            half_rejected_above: None,
            n: 0,
            sum: 0.0,
            sum_sq: 0.0,
        })
    }

    /// Takes the next observation (in [0, 1]).
    pub fn observe(&mut self, x: f64) -> Result<(), RuleError> {
        if !(0.0..=1.0).contains(&x) {
            return Err(RuleError::OutOfRange(x));
        }
        let t = (self.n + 1) as f64;
        // σ̂²_{t−1}: uses only the observations before this one.
        let var = (0.25 + self.sum_sq) / t;
        let raw = (2.0 * (2.0 / self.config.alpha).ln() / (var * t * (1.0 + t).ln())).sqrt();
        let c = self.config.truncation;
        // ln(max(a, b) / 2) ≥ ln(1/α)  ⇔  max(ln a, ln b) ≥ ln(1/α) + ln 2.
        let bar = self.log_threshold + std::f64::consts::LN_2;
        for (i, &m) in self.points.iter().enumerate() {
            let up = raw.min(c / m);
            let down = raw.min(c / (1.0 - m));
            self.log_up[i] += (up * (x - m)).ln_1p();
            self.log_down[i] += (-down * (x - m)).ln_1p();
            if !self.rejected[i] && self.log_up[i].max(self.log_down[i]) >= bar {
                self.rejected[i] = true;
                if i == self.half {
                    self.half_rejected_above = Some(self.log_up[i] >= self.log_down[i]);
                }
            }
        }
        self.n += 1;
        self.sum += x;
        let mean_hat = (0.5 + self.sum) / (t + 1.0);
        self.sum_sq += (x - mean_hat).powi(2);
        Ok(())
    }

    /// Observations so far.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The sample mean (0.5 before any observation).
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.5
        } else {
            self.sum / self.n as f64
        }
    }

    /// The sequence's interval now: the hull of the points never rejected,
    /// widened by one grid step on each side (so it is conservative), within
    /// [0, 1]. If every point was rejected (possible only on the `α` event),
    /// the degenerate interval at the sample mean.
    pub fn interval(&self) -> (f64, f64) {
        let step = 1.0 / self.config.grid as f64;
        let mut kept = self
            .points
            .iter()
            .zip(&self.rejected)
            .filter(|(_, r)| !**r)
            .map(|(m, _)| *m);
        let Some(first) = kept.next() else {
            return (self.mean(), self.mean());
        };
        let last = kept.next_back().unwrap_or(first);
        ((first - step).max(0.0), (last + step).min(1.0))
    }

    /// Whether 0.5 has left the sequence, and on which side the mean lies:
    /// `Some(Decision::Better)` above, `Some(Decision::Worse)` below.
    pub fn excludes_half(&self) -> Option<Decision> {
        self.half_rejected_above.map(|above| {
            if above {
                Decision::Better
            } else {
                Decision::Worse
            }
        })
    }
}

/// The stopping rule of `vigil shadow`: a [`BettingCs`] on paired
/// observations that stops as soon as it excludes 0.5, or at the budget.
#[derive(Debug, Clone)]
pub struct StoppingRule {
    cs: BettingCs,
    metric: PairedMetric,
    budget: u64,
    /// The data ran out before the budget.
    exhausted: bool,
    wins: u64,
    ties: u64,
    losses: u64,
}

/// Where a [`StoppingRule`] stands: the estimate and interval in the
/// metric's units, the items used and the call (if any yet).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleState {
    /// The estimate: win rate, or mean difference.
    pub estimate: f64,
    /// The interval's low end, same units.
    pub ci_low: f64,
    /// The interval's high end.
    pub ci_high: f64,
    /// Observations used.
    pub items_used: u64,
    /// `None` while the rule goes on.
    pub decision: Option<Decision>,
    /// Pairs the candidate won, tied, lost.
    pub wins: u64,
    /// Ties.
    pub ties: u64,
    /// Losses.
    pub losses: u64,
}

impl StoppingRule {
    /// A rule at level `alpha` that uses at most `budget` pairs.
    pub fn new(metric: PairedMetric, alpha: f64, budget: u64) -> Result<Self, RuleError> {
        Self::with_config(
            metric,
            BettingCsConfig {
                alpha,
                ..Default::default()
            },
            budget,
        )
    }

    /// A rule with a full [`BettingCsConfig`].
    pub fn with_config(
        metric: PairedMetric,
        config: BettingCsConfig,
        budget: u64,
    ) -> Result<Self, RuleError> {
        if budget == 0 {
            return Err(RuleError::Config(
                "the budget must be at least 1 item".into(),
            ));
        }
        Ok(StoppingRule {
            cs: BettingCs::new(config)?,
            metric,
            budget,
            exhausted: false,
            wins: 0,
            ties: 0,
            losses: 0,
        })
    }

    /// Takes one pair of per-item scores (each in [0, 1]); returns the
    /// decision when this pair ended the rule. Pairs after the stop are
    /// ignored (the rule's state stays the one at the stop).
    pub fn observe(&mut self, candidate: f64, production: f64) -> Option<Decision> {
        self.observe_x(self.metric.observe(candidate, production))
            .expect("PairedMetric::observe maps into [0, 1]")
    }

    /// Takes one paired observation `x` in [0, 1] directly (0.5: as good as
    /// production; a win above, a loss below).
    pub fn observe_x(&mut self, x: f64) -> Result<Option<Decision>, RuleError> {
        if self.stopped() {
            return Ok(None);
        }
        self.cs.observe(x)?;
        if x > 0.5 {
            self.wins += 1;
        } else if x < 0.5 {
            self.losses += 1;
        } else {
            self.ties += 1;
        }
        Ok(self.decision())
    }

    /// No more pairs will come (the captures ran out before the budget):
    /// an undecided rule stops with [`Decision::NoDifference`].
    pub fn exhaust(&mut self) {
        self.exhausted = true;
    }

    /// The call, once the rule has stopped.
    pub fn decision(&self) -> Option<Decision> {
        self.cs
            .excludes_half()
            .or_else(|| (self.cs.n() >= self.budget).then_some(Decision::NoDifference))
    }

    /// Whether the rule has stopped (a call made or the budget used).
    pub fn stopped(&self) -> bool {
        self.decision().is_some()
    }

    /// Pairs still to observe before the budget is used.
    pub fn remaining(&self) -> u64 {
        if self.stopped() {
            0
        } else {
            self.budget.saturating_sub(self.cs.n())
        }
    }

    /// The metric observed.
    pub fn metric(&self) -> PairedMetric {
        self.metric
    }

    /// The estimate, interval, items used and call now.
    pub fn state(&self) -> RuleState {
        let (low, high) = self.cs.interval();
        let (a, b) = (self.metric.to_units(low), self.metric.to_units(high));
        RuleState {
            estimate: self.metric.to_units(self.cs.mean()),
            ci_low: a.min(b),
            ci_high: a.max(b),
            items_used: self.cs.n(),
            decision: self.decision(),
            wins: self.wins,
            ties: self.ties,
            losses: self.losses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked() {
        for bad in [
            BettingCsConfig {
                alpha: 0.0,
                ..Default::default()
            },
            BettingCsConfig {
                alpha: 1.0,
                ..Default::default()
            },
            BettingCsConfig {
                grid: 3,
                ..Default::default()
            },
            BettingCsConfig {
                truncation: 1.0,
                ..Default::default()
            },
        ] {
            assert!(BettingCs::new(bad).is_err());
        }
        assert!(StoppingRule::new(PairedMetric::WinRate, 0.05, 0).is_err());
    }

    #[test]
    fn out_of_range_observation_is_refused() {
        let mut cs = BettingCs::new(BettingCsConfig::default()).unwrap();
        assert_eq!(cs.observe(1.5), Err(RuleError::OutOfRange(1.5)));
        assert!(cs.observe(f64::NAN).is_err());
        assert_eq!(cs.n(), 0);
    }

    #[test]
    fn all_wins_call_better_all_losses_worse() {
        let mut up = StoppingRule::new(PairedMetric::WinRate, 0.05, 1000).unwrap();
        let mut down = StoppingRule::new(PairedMetric::WinRate, 0.05, 1000).unwrap();
        let (mut a, mut b) = (None, None);
        for _ in 0..1000 {
            a = a.or(up.observe(1.0, 0.0));
            b = b.or(down.observe(0.0, 1.0));
        }
        assert_eq!(a, Some(Decision::Better));
        assert_eq!(b, Some(Decision::Worse));
        let s = up.state();
        assert!(
            s.items_used < 20,
            "all wins decide fast, took {}",
            s.items_used
        );
        assert!(s.ci_low > 0.5 && s.ci_high <= 1.0, "{s:?}");
        assert_eq!((s.wins, s.ties, s.losses), (s.items_used, 0, 0));
        let s = down.state();
        assert!(s.ci_high < 0.5, "{s:?}");
    }

    #[test]
    fn all_ties_reach_the_budget_without_a_call() {
        let mut rule = StoppingRule::new(PairedMetric::Difference, 0.05, 300).unwrap();
        let mut calls = Vec::new();
        for _ in 0..400 {
            calls.extend(rule.observe(0.7, 0.7));
        }
        assert_eq!(calls, vec![Decision::NoDifference]);
        let s = rule.state();
        assert_eq!(s.items_used, 300);
        assert_eq!(s.estimate, 0.0);
        assert!(
            s.ci_low < 0.0 && s.ci_high > 0.0 && s.ci_high < 0.3,
            "{s:?}"
        );
        assert_eq!(rule.remaining(), 0);
    }

    #[test]
    fn difference_units_are_candidate_minus_production() {
        let mut rule = StoppingRule::new(PairedMetric::Difference, 0.05, 10).unwrap();
        rule.observe(0.9, 0.5);
        rule.observe(0.7, 0.5);
        let s = rule.state();
        assert!((s.estimate - 0.3).abs() < 1e-12, "{s:?}");
    }
}
