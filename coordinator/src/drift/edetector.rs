//! The e-detector: a mixture of e-CUSUM statistics over a grid of change
//! sizes (Shin, Ramdas & Rinaldo 2023, "E-detectors: a nonparametric
//! framework for sequential change detection").

use super::{
    DetectorKind, Direction, DriftAlarm, DriftDetector, DriftError, Reference, check_score,
};
use std::collections::VecDeque;

/// Configuration of an [`EDetector`].
#[derive(Debug, Clone, PartialEq)]
pub struct EDetectorConfig {
    /// The false-alarm rate `α`: the detector alarms when its statistic
    /// reaches `1/α`, and its average run length under no change is at
    /// least `1/α` scores.
    pub alpha: f64,
    /// Which way to watch.
    pub direction: Direction,
    /// The confidence with which the reference mean lies on the safe side of
    /// the null boundary (one-sided for a drop or a rise, two-sided for
    /// both).
    pub reference_confidence: f64,
    /// The grid of change sizes (absolute, in score units, each in (0, 1))
    /// the mixture bets on, each with equal weight.
    pub changes: Vec<f64>,
    /// How many example item ids an alarm carries.
    pub max_examples: usize,
    /// How many recent scores are kept to pick the examples from.
    pub example_window: usize,
}

impl Default for EDetectorConfig {
    fn default() -> Self {
        EDetectorConfig {
            alpha: 0.001,
            direction: Direction::Drop,
            reference_confidence: 0.95,
            changes: vec![0.01, 0.02, 0.03, 0.05, 0.08, 0.13, 0.2, 0.3],
            max_examples: 10,
            example_window: 256,
        }
    }
}

/// One e-CUSUM of the mixture: a bet of size `lambda` against the null
/// boundary `p0`.
#[derive(Debug, Clone)]
struct Component {
    /// Positive: bets on a drop; negative: on a rise.
    lambda: f64,
    p0: f64,
    weight: f64,
    /// `M_t` of this component; 0 before the first score and after an alarm.
    m: f64,
    /// Index of the first score of the current product (the last time `M`
    /// left 1).
    start: u64,
    /// Sum and count of the scores since `start`.
    sum: f64,
    n: u64,
}

/// An e-detector for a drop (or rise) in the mean of pass/fail or bounded
/// [0, 1] scores against a reference period.
///
/// # The rule
///
/// Let `p₀` be the null boundary: for a drop, the one-sided lower confidence
/// bound of the reference mean (confidence `reference_confidence`: Wilson
/// for pass/fail references, Student's t otherwise); for a rise, the upper
/// one; for both, the two ends of the two-sided interval. For each change
/// size `δ` of the grid, the score `x_t` gives the e-value
///
/// ```text
/// e_t(λ) = 1 + λ (p₀ − x_t),   λ = δ / (p₀ (1 − p₀))
/// ```
///
/// (negated `λ` for a rise). For pass/fail scores this is exactly the
/// likelihood ratio of Bernoulli(`p₀ − δ`) against Bernoulli(`p₀`); for
/// bounded scores it is a bet that stays positive because `δ < p₀`. Each
/// `λ` runs an e-CUSUM, `M_t(λ) = max(M_{t−1}(λ), 1) · e_t(λ)`, and the
/// detector's statistic is their equally weighted average
/// `M_t = Σ w_λ M_t(λ)`. It alarms when `M_t ≥ 1/α`, then starts over.
///
/// # The guarantee
///
/// If, whatever came before, each score's conditional mean is at least `p₀`
/// (for a drop; at most for a rise; between the two for both) — no change —
/// then every `e_t(λ)` has conditional expectation at most 1. Each e-CUSUM
/// is at most the e-Shiryaev-Roberts sum `Σ_{j≤t} Π_{i=j..t} e_i(λ)`, so
/// `M_t` is at most a sum of e-processes started at each time, an
/// e-detector; by Shin, Ramdas & Rinaldo (2023; the argument is Lorden's)
/// the expected number of scores to the first alarm (the average run
/// length, ARL) is at least `1/α`. Since the detector restarts after an
/// alarm, over a long unchanged stream of `n` scores it raises on average at
/// most about `α · n` false alarms. The reference is a sample too: the
/// guarantee holds on the event that the true reference mean is on the safe
/// side of `p₀`, which has probability at least `reference_confidence`
/// (exactly for the Wilson and t intervals' nominal coverage).
///
/// The change point estimate is the start of the product of the component
/// contributing most to `M_t` (the last time its `M` left 1); the metric
/// after is the mean of the scores since then.
#[derive(Debug, Clone)]
pub struct EDetector {
    metric: String,
    config: EDetectorConfig,
    reference_mean: f64,
    reference_count: u64,
    components: Vec<Component>,
    t: u64,
    recent: VecDeque<(u64, String, f64)>,
}

impl EDetector {
    /// A detector for `metric` against `reference`.
    pub fn new(
        metric: impl Into<String>,
        reference: &Reference,
        config: EDetectorConfig,
    ) -> Result<Self, DriftError> {
        if !(config.alpha > 0.0 && config.alpha < 1.0) {
            return Err(DriftError::Config(format!(
                "alpha must be in (0, 1), got {}",
                config.alpha
            )));
        }
        if !(config.reference_confidence >= 0.5 && config.reference_confidence < 1.0) {
            return Err(DriftError::Config(format!(
                "reference_confidence must be in [0.5, 1), got {}",
                config.reference_confidence
            )));
        }
        if config.changes.is_empty() || config.changes.iter().any(|d| !(*d > 0.0 && *d < 1.0)) {
            return Err(DriftError::Config(format!(
                "changes must be a non-empty list of sizes in (0, 1), got {:?}",
                config.changes
            )));
        }
        let c = config.reference_confidence;
        let (lo, hi) = match config.direction {
            Direction::Both => reference.interval(c),
            // A one-sided bound at c is one end of the two-sided 2c − 1 interval.
            _ => reference.interval(2.0 * c - 1.0),
        };
        let mut sides: Vec<Vec<Component>> = Vec::new();
        if matches!(config.direction, Direction::Drop | Direction::Both) {
            sides.push(side(lo, &config.changes, 1.0));
        }
        if matches!(config.direction, Direction::Rise | Direction::Both) {
            sides.push(side(hi, &config.changes, -1.0));
        }
        sides.retain(|s| !s.is_empty());
        if sides.is_empty() {
            return Err(DriftError::Config(format!(
                "no change of the grid {:?} fits between the reference bounds [{lo}, {hi}] and the ends of [0, 1]",
                config.changes
            )));
        }
        let n_sides = sides.len() as f64;
        let mut components = Vec::new();
        for mut s in sides {
            let w = 1.0 / (n_sides * s.len() as f64);
            s.iter_mut().for_each(|c| c.weight = w);
            components.extend(s);
        }
        Ok(EDetector {
            metric: metric.into(),
            reference_mean: reference.mean(),
            reference_count: reference.count(),
            components,
            t: 0,
            recent: VecDeque::with_capacity(config.example_window),
            config,
        })
    }

    /// The current statistic `M_t` (0 before the first score and right
    /// after an alarm).
    pub fn statistic(&self) -> f64 {
        self.components.iter().map(|c| c.weight * c.m).sum()
    }

    /// The alarm threshold `1/α`.
    pub fn threshold(&self) -> f64 {
        1.0 / self.config.alpha
    }

    fn alarm(&mut self, statistic: f64) -> DriftAlarm {
        let lead = self
            .components
            .iter()
            .max_by(|a, b| (a.weight * a.m).total_cmp(&(b.weight * b.m)))
            .expect("a detector has at least one component")
            .clone();
        let direction = if lead.lambda > 0.0 {
            Direction::Drop
        } else {
            Direction::Rise
        };
        let reference_mean = self.reference_mean;
        let example_ids = self
            .recent
            .iter()
            .rev()
            .filter(|(i, _, x)| {
                *i >= lead.start
                    && match direction {
                        Direction::Rise => *x > reference_mean,
                        _ => *x < reference_mean,
                    }
            })
            .take(self.config.max_examples)
            .map(|(_, id, _)| id.clone())
            .collect();
        for c in &mut self.components {
            c.m = 0.0;
        }
        DriftAlarm {
            metric: self.metric.clone(),
            detector: DetectorKind::EDetector,
            direction,
            alpha: Some(self.config.alpha),
            threshold: self.threshold(),
            statistic,
            reference_mean,
            reference_count: self.reference_count,
            null_boundary: lead.p0,
            recent_mean: lead.sum / lead.n as f64,
            recent_count: lead.n,
            change_point: lead.start,
            detected_at: self.t - 1,
            example_ids,
        }
    }
}

/// The components betting on changes of `sign` (1: drop, −1: rise) away
/// from the boundary `p0`, for the sizes that fit inside [0, 1].
fn side(p0: f64, changes: &[f64], sign: f64) -> Vec<Component> {
    let room = if sign > 0.0 { p0 } else { 1.0 - p0 };
    changes
        .iter()
        .filter(|d| **d < room && p0 > 0.0 && p0 < 1.0)
        .map(|d| Component {
            lambda: sign * d / (p0 * (1.0 - p0)),
            p0,
            weight: 0.0,
            m: 0.0,
            start: 0,
            sum: 0.0,
            n: 0,
        })
        .collect()
}

impl DriftDetector for EDetector {
    fn observe(&mut self, id: &str, score: f64) -> Result<Option<DriftAlarm>, DriftError> {
        check_score(id, score)?;
        let t = self.t;
        self.t += 1;
        for c in &mut self.components {
            if c.m <= 1.0 {
                c.m = 1.0;
                c.start = t;
                c.sum = 0.0;
                c.n = 0;
            }
            c.m *= 1.0 + c.lambda * (c.p0 - score);
            c.sum += score;
            c.n += 1;
        }
        if self.config.example_window > 0 {
            if self.recent.len() == self.config.example_window {
                self.recent.pop_front();
            }
            self.recent.push_back((t, id.to_string(), score));
        }
        let statistic = self.statistic();
        Ok((statistic >= self.threshold()).then(|| self.alarm(statistic)))
    }

    fn samples(&self) -> u64 {
        self.t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(direction: Direction) -> EDetector {
        let reference = Reference::pass_fail(9000, 10_000).unwrap();
        let config = EDetectorConfig {
            alpha: 0.01,
            direction,
            max_examples: 3,
            ..Default::default()
        };
        EDetector::new("accuracy", &reference, config).unwrap()
    }

    #[test]
    fn an_all_fail_stream_alarms_with_evidence_after_the_change() {
        let mut d = detector(Direction::Drop);
        // 50 passes (no change), then failures.
        let mut alarm = None;
        for i in 0..200 {
            let score = if i < 50 { 1.0 } else { 0.0 };
            if let Some(a) = d.observe(&format!("item-{i}"), score).unwrap() {
                alarm = Some(a);
                break;
            }
        }
        let a = alarm.expect("a run of failures raises an alarm");
        assert_eq!(a.detector, DetectorKind::EDetector);
        assert_eq!(a.direction, Direction::Drop);
        assert_eq!(a.change_point, 50);
        assert_eq!(a.recent_mean, 0.0);
        assert_eq!(a.recent_count, a.detected_at - 49);
        assert!(a.statistic >= 100.0 && a.threshold == 100.0);
        assert!(a.null_boundary < 0.9 && (a.reference_mean - 0.9).abs() < 1e-12);
        let last = a.detected_at;
        assert_eq!(
            a.example_ids,
            vec![
                format!("item-{last}"),
                format!("item-{}", last - 1),
                format!("item-{}", last - 2)
            ]
        );
        // It starts over after an alarm.
        assert_eq!(d.statistic(), 0.0);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["detector"], "e_detector");
        assert_eq!(json["change_point"], 50);
    }

    #[test]
    fn a_drop_detector_ignores_a_rise_and_a_rise_detector_sees_it() {
        let reference = Reference::from_scores((0..1000).map(|i| (i % 5) as f64 / 10.0)).unwrap();
        let config = |direction| EDetectorConfig {
            alpha: 0.01,
            direction,
            ..Default::default()
        };
        let mut drop = EDetector::new("m", &reference, config(Direction::Drop)).unwrap();
        let mut rise = EDetector::new("m", &reference, config(Direction::Both)).unwrap();
        let mut rise_alarm = None;
        for _ in 0..2000 {
            assert!(drop.observe("x", 0.9).unwrap().is_none());
            if let Some(a) = rise.observe("x", 0.9).unwrap() {
                rise_alarm.get_or_insert(a);
            }
        }
        assert_eq!(
            rise_alarm.expect("a rise is seen").direction,
            Direction::Rise
        );
    }

    #[test]
    fn bad_scores_and_configs_are_refused() {
        let mut d = detector(Direction::Drop);
        assert!(matches!(
            d.observe("a", 1.5),
            Err(DriftError::ScoreOutOfRange { score, .. }) if score == 1.5
        ));
        assert!(d.observe("a", f64::NAN).is_err());
        assert_eq!(d.samples(), 0);
        let r = Reference::pass_fail(9, 10).unwrap();
        for bad in [
            EDetectorConfig {
                alpha: 0.0,
                ..Default::default()
            },
            EDetectorConfig {
                alpha: 1.0,
                ..Default::default()
            },
            EDetectorConfig {
                changes: vec![],
                ..Default::default()
            },
            EDetectorConfig {
                changes: vec![1.2],
                ..Default::default()
            },
            EDetectorConfig {
                reference_confidence: 1.0,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                EDetector::new("m", &r, bad),
                Err(DriftError::Config(_))
            ));
        }
        // An all-fail reference leaves no room for a drop.
        let zero = Reference::pass_fail(0, 1000).unwrap();
        let config = EDetectorConfig {
            changes: vec![0.5],
            ..Default::default()
        };
        assert!(matches!(
            EDetector::new("m", &zero, config),
            Err(DriftError::Config(_))
        ));
    }
}
