//! A static threshold on a rolling mean: the simple rule, named as such.

use super::{DetectorKind, Direction, DriftAlarm, DriftDetector, DriftError, check_score};
use std::collections::VecDeque;

/// Configuration of a [`StaticThreshold`].
#[derive(Debug, Clone, PartialEq)]
pub struct StaticThresholdConfig {
    /// The number of most recent scores the mean is taken over; the rule is
    /// checked once the window is full.
    pub window: usize,
    /// Alarm when the rolling mean falls below this.
    pub min: Option<f64>,
    /// Alarm when the rolling mean rises above this.
    pub max: Option<f64>,
    /// How many example item ids an alarm carries.
    pub max_examples: usize,
}

impl Default for StaticThresholdConfig {
    fn default() -> Self {
        StaticThresholdConfig {
            window: 100,
            min: None,
            max: None,
            max_examples: 10,
        }
    }
}

/// A static threshold: alarms when the mean of the last `window` scores is
/// below `min` or above `max`.
///
/// No false-alarm rate is claimed: how often it fires on an unchanged stream
/// depends on the window, the bounds and the metric's variance. Its alarms
/// say [`DetectorKind::StaticThreshold`] and carry no `alpha`. After an
/// alarm the window starts empty.
#[derive(Debug, Clone)]
pub struct StaticThreshold {
    metric: String,
    config: StaticThresholdConfig,
    reference_mean: f64,
    reference_count: u64,
    window: VecDeque<(u64, String, f64)>,
    t: u64,
}

impl StaticThreshold {
    /// A static threshold for `metric`; the reference mean and count only go
    /// into the alarm's evidence.
    pub fn new(
        metric: impl Into<String>,
        reference_mean: f64,
        reference_count: u64,
        config: StaticThresholdConfig,
    ) -> Result<Self, DriftError> {
        if config.window == 0 {
            return Err(DriftError::Config("window must be at least 1".into()));
        }
        if config.min.is_none() && config.max.is_none() {
            return Err(DriftError::Config(
                "a static threshold needs min, max or both".into(),
            ));
        }
        Ok(StaticThreshold {
            metric: metric.into(),
            reference_mean,
            reference_count,
            window: VecDeque::with_capacity(config.window),
            t: 0,
            config,
        })
    }
}

impl DriftDetector for StaticThreshold {
    fn observe(&mut self, id: &str, score: f64) -> Result<Option<DriftAlarm>, DriftError> {
        check_score(id, score)?;
        let t = self.t;
        self.t += 1;
        if self.window.len() == self.config.window {
            self.window.pop_front();
        }
        self.window.push_back((t, id.to_string(), score));
        if self.window.len() < self.config.window {
            return Ok(None);
        }
        // Summed afresh each time, so rounding never accumulates.
        let mean = self.window.iter().map(|(_, _, x)| x).sum::<f64>() / self.window.len() as f64;
        let crossed = match (self.config.min, self.config.max) {
            (Some(min), _) if mean < min => Some((Direction::Drop, min)),
            (_, Some(max)) if mean > max => Some((Direction::Rise, max)),
            _ => None,
        };
        let Some((direction, bound)) = crossed else {
            return Ok(None);
        };
        let example_ids = self
            .window
            .iter()
            .rev()
            .filter(|(_, _, x)| match direction {
                Direction::Rise => *x > bound,
                _ => *x < bound,
            })
            .take(self.config.max_examples)
            .map(|(_, id, _)| id.clone())
            .collect();
        let alarm = DriftAlarm {
            metric: self.metric.clone(),
            detector: DetectorKind::StaticThreshold,
            direction,
            alpha: None,
            threshold: bound,
            statistic: mean,
            reference_mean: self.reference_mean,
            reference_count: self.reference_count,
            null_boundary: bound,
            recent_mean: mean,
            recent_count: self.window.len() as u64,
            change_point: self.window.front().map_or(t, |(i, _, _)| *i),
            detected_at: t,
            example_ids,
        };
        self.window.clear();
        Ok(Some(alarm))
    }

    fn samples(&self) -> u64 {
        self.t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_static_threshold_fires_on_a_full_window_below_min_and_says_what_it_is() {
        let config = StaticThresholdConfig {
            window: 10,
            min: Some(0.8),
            max_examples: 2,
            ..Default::default()
        };
        let mut d = StaticThreshold::new("accuracy", 0.9, 500, config).unwrap();
        // 7 of 10 pass: 0.7 < 0.8, but only once the window is full.
        let mut alarms = Vec::new();
        for i in 0..10u64 {
            let score = if i % 10 < 7 { 1.0 } else { 0.0 };
            alarms.extend(d.observe(&format!("i{i}"), score).unwrap());
        }
        assert_eq!(alarms.len(), 1);
        let a = &alarms[0];
        assert_eq!(a.detector, DetectorKind::StaticThreshold);
        assert_eq!(a.alpha, None);
        assert_eq!((a.change_point, a.detected_at, a.recent_count), (0, 9, 10));
        assert!((a.recent_mean - 0.7).abs() < 1e-12);
        assert_eq!(a.example_ids, vec!["i9".to_string(), "i8".to_string()]);
        assert_eq!(
            serde_json::to_value(a).unwrap()["detector"],
            "static_threshold"
        );
        // 9 of 10 pass: no alarm.
        for i in 0..10u64 {
            let score = if i == 0 { 0.0 } else { 1.0 };
            assert!(d.observe("ok", score).unwrap().is_none());
        }
    }

    #[test]
    fn a_static_threshold_needs_a_bound_and_a_window() {
        let none = StaticThresholdConfig::default();
        assert!(StaticThreshold::new("m", 0.9, 1, none).is_err());
        let empty = StaticThresholdConfig {
            window: 0,
            min: Some(0.5),
            ..Default::default()
        };
        assert!(StaticThreshold::new("m", 0.9, 1, empty).is_err());
    }
}
