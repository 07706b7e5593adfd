//! The drift detectors of one app: per monitored metric, the per-item scores
//! in the order their results arrive go to an e-detector (and any static
//! thresholds) against a reference period: the first `reference_items`
//! scores, and again the first scores after each alarm, so a change raises
//! one alarm, not one per item after it.

use super::config::{DriftConfig, MetricsConfig};
use super::state::WatchPhase;
use crate::drift::{
    DetectorKind, DriftAlarm, DriftDetector, EDetector, Reference, StaticThreshold,
};
use std::collections::BTreeMap;
use vigil_protocol::{Alert, ItemResult};

/// One metric's detectors.
struct Watcher {
    phase: WatchPhase,
    detector: Option<EDetector>,
    statics: Vec<StaticThreshold>,
}

/// The detectors of one app.
pub(super) struct AppWatch {
    watchers: BTreeMap<String, Watcher>,
}

impl AppWatch {
    /// Detectors for `metrics`, resuming from the persisted phases.
    pub(super) fn new(
        config: &DriftConfig,
        phases: Option<&BTreeMap<String, WatchPhase>>,
    ) -> AppWatch {
        let mut metrics: Vec<&String> = config.metrics.iter().collect();
        for (m, _) in &config.static_thresholds {
            if !metrics.contains(&m) {
                metrics.push(m);
            }
        }
        let watchers = metrics
            .into_iter()
            .map(|m| {
                let phase = phases
                    .and_then(|p| p.get(m))
                    .cloned()
                    .unwrap_or_else(|| WatchPhase::Reference(Reference::empty()));
                let mut w = Watcher {
                    phase,
                    detector: None,
                    statics: Vec::new(),
                };
                w.arm(m, config);
                (m.clone(), w)
            })
            .collect();
        AppWatch { watchers }
    }

    /// The phases, to persist.
    pub(super) fn phases(&self) -> BTreeMap<String, WatchPhase> {
        self.watchers
            .iter()
            .map(|(m, w)| (m.clone(), w.phase.clone()))
            .collect()
    }

    /// Takes one item's result; returns the alarms it raised.
    pub(super) fn observe(
        &mut self,
        item: &ItemResult,
        config: &DriftConfig,
        metrics: &MetricsConfig,
    ) -> Vec<DriftAlarm> {
        let mut alarms = Vec::new();
        for (name, w) in &mut self.watchers {
            let Some(score) = metric_score(name, item, metrics) else {
                continue;
            };
            alarms.extend(w.observe(name, &item.id, score, config));
        }
        alarms
    }
}

impl Watcher {
    /// Builds the detectors of the current phase.
    fn arm(&mut self, metric: &str, config: &DriftConfig) {
        self.detector = None;
        self.statics.clear();
        let (mean, count) = match &self.phase {
            WatchPhase::Watching(r) => {
                if config.metrics.iter().any(|m| m == metric) {
                    match EDetector::new(metric, r, config.detector.clone()) {
                        Ok(d) => self.detector = Some(d),
                        Err(e) => tracing::warn!(metric, error = %e,
                            "no e-detector for this metric against its reference (the reference leaves no room for a change of the grid); static thresholds only"),
                    }
                }
                (r.mean(), r.count())
            }
            WatchPhase::Reference(r) => (r.mean(), r.count()),
        };
        for (m, cfg) in &config.static_thresholds {
            if m == metric
                && let Ok(s) = StaticThreshold::new(metric, mean, count, cfg.clone())
            {
                self.statics.push(s);
            }
        }
    }

    fn observe(
        &mut self,
        metric: &str,
        id: &str,
        score: f64,
        config: &DriftConfig,
    ) -> Vec<DriftAlarm> {
        let mut alarms = Vec::new();
        if let WatchPhase::Reference(r) = &mut self.phase {
            if r.push(score).is_ok() && r.count() >= config.reference_items {
                let r = r.clone();
                tracing::info!(
                    metric,
                    reference_mean = r.mean(),
                    reference_count = r.count(),
                    "drift reference complete: watching"
                );
                self.phase = WatchPhase::Watching(r);
                self.arm(metric, config);
            }
        } else if let Some(d) = &mut self.detector {
            match d.observe(id, score) {
                Ok(Some(alarm)) => alarms.push(alarm),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(metric, error = %e, "score not taken by the drift detector")
                }
            }
        }
        for s in &mut self.statics {
            if let Ok(Some(alarm)) = s.observe(id, score) {
                alarms.push(alarm);
            }
        }
        if !alarms.is_empty() {
            // A new reference after the change: one alarm per change.
            self.phase = WatchPhase::Reference(Reference::empty());
            self.arm(metric, config);
        }
        alarms
    }
}

/// An item's score in [0, 1] on `metric`: a scorer's pass (1) or fail (0)
/// — a model-side failure of the item counts as a fail, a failure on the
/// evaluation's side is left out —; `latency` and `length` pass within
/// their bounds (scored items only; `length` only with reported usage).
pub fn metric_score(metric: &str, item: &ItemResult, metrics: &MetricsConfig) -> Option<f64> {
    let pass = |b: bool| if b { 1.0 } else { 0.0 };
    if let Some(error) = &item.error {
        let is_scorer = metric != "latency" && metric != "length";
        return (is_scorer && error.kind.is_model_side()).then_some(0.0);
    }
    match metric {
        "latency" if metrics.latency.is_some() => {
            let max = metrics.latency.as_ref()?.max_ms;
            Some(pass(item.latency_ms <= max))
        }
        "length" if metrics.length.is_some() => {
            let l = metrics.length.as_ref()?;
            let tokens = item.usage.output;
            if tokens == 0 {
                return None;
            }
            Some(pass(
                tokens >= l.min_tokens && l.max_tokens.is_none_or(|m| tokens <= m),
            ))
        }
        scorer => item
            .scores
            .iter()
            .find(|s| s.scorer == scorer)
            .map(|s| pass(s.passed)),
    }
}

/// The alert a drift alarm becomes on `vigil.alerts.<app>`: kind `drift`,
/// `suite` the monitor, `target` the app, `run_id` the window the alarming
/// item was in, `gate` the metric and detector, the evidence in `values`
/// and `examples`.
pub fn drift_alert(monitor: &str, app: &str, run_id: &str, alarm: &DriftAlarm) -> Alert {
    let detector = match alarm.detector {
        DetectorKind::EDetector => "e_detector",
        DetectorKind::StaticThreshold => "static_threshold",
    };
    let direction = serde_json::to_value(alarm.direction)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut values = BTreeMap::from([
        ("reference_mean".to_string(), alarm.reference_mean),
        ("reference_count".to_string(), alarm.reference_count as f64),
        ("null_boundary".to_string(), alarm.null_boundary),
        ("recent_mean".to_string(), alarm.recent_mean),
        ("recent_count".to_string(), alarm.recent_count as f64),
        ("change_point".to_string(), alarm.change_point as f64),
        ("detected_at".to_string(), alarm.detected_at as f64),
        ("statistic".to_string(), alarm.statistic),
        ("threshold".to_string(), alarm.threshold),
    ]);
    if let Some(alpha) = alarm.alpha {
        values.insert("alpha".into(), alpha);
    }
    Alert {
        kind: "drift".into(),
        suite: monitor.to_string(),
        target: app.to_string(),
        run_id: run_id.to_string(),
        gate: format!("{}.pass_rate {detector} {direction}", alarm.metric),
        values,
        baseline_run_id: None,
        at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        examples: alarm.example_ids.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::{ErrorKind, ItemError, Score};

    fn item(id: &str, passed: bool) -> ItemResult {
        ItemResult {
            id: id.into(),
            scores: vec![Score {
                scorer: "json".into(),
                value: if passed { 1.0 } else { 0.0 },
                passed,
                ..Default::default()
            }],
            latency_ms: 10.0,
            ..Default::default()
        }
    }

    fn config(reference_items: u64) -> DriftConfig {
        DriftConfig {
            metrics: vec!["json".into()],
            detector: Default::default(),
            reference_items,
            static_thresholds: Vec::new(),
            enabled: true,
        }
    }

    #[test]
    fn a_lasting_drop_raises_one_alarm_then_a_new_reference_is_taken() {
        let cfg = config(200);
        let metrics = MetricsConfig::default();
        let mut w = AppWatch::new(&cfg, None);
        let mut alarms = Vec::new();
        // 200 passing (the reference), then 2,000 failing: one alarm, then
        // the failing stream is the new reference and raises nothing more.
        for i in 0..2200 {
            alarms.extend(w.observe(&item(&format!("c{i}"), i < 200), &cfg, &metrics));
        }
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        let a = &alarms[0];
        assert_eq!(a.reference_count, 200);
        assert!(a.reference_mean > 0.99 && a.recent_mean < 0.01, "{a:?}");
        assert!(!a.example_ids.is_empty());
        assert!(matches!(w.phases()["json"], WatchPhase::Watching(_)));
    }

    #[test]
    fn an_unchanged_stream_raises_none() {
        let cfg = config(200);
        let metrics = MetricsConfig::default();
        let mut w = AppWatch::new(&cfg, None);
        let mut n = 0;
        for i in 0..5000u64 {
            // 90% pass, deterministic pattern.
            n += w
                .observe(&item(&format!("c{i}"), i % 10 != 0), &cfg, &metrics)
                .len();
        }
        assert_eq!(n, 0);
    }

    #[test]
    fn latency_and_length_pass_within_their_bounds() {
        let m: MetricsConfig = serde_json::from_value(serde_json::json!({
            "latency": {"max_ms": 100.0}, "length": {"min_tokens": 2, "max_tokens": 10}
        }))
        .unwrap();
        let mut i = item("a", true);
        assert_eq!(metric_score("latency", &i, &m), Some(1.0));
        i.latency_ms = 150.0;
        assert_eq!(metric_score("latency", &i, &m), Some(0.0));
        assert_eq!(metric_score("length", &i, &m), None, "no usage: left out");
        i.usage.output = 5;
        assert_eq!(metric_score("length", &i, &m), Some(1.0));
        i.usage.output = 11;
        assert_eq!(metric_score("length", &i, &m), Some(0.0));
        assert_eq!(metric_score("latency", &i, &MetricsConfig::default()), None);
    }

    #[test]
    fn a_static_threshold_alarms_named_as_such_and_the_alert_carries_the_evidence() {
        let mut cfg = config(1_000_000); // the e-detector never arms
        cfg.metrics.clear();
        cfg.static_thresholds = vec![(
            "json".into(),
            crate::drift::StaticThresholdConfig {
                window: 10,
                min: Some(0.8),
                ..Default::default()
            },
        )];
        let mut w = AppWatch::new(&cfg, None);
        let metrics = MetricsConfig::default();
        let mut alarms = Vec::new();
        for i in 0..30 {
            alarms.extend(w.observe(&item(&format!("c{i}"), i < 10), &cfg, &metrics));
        }
        assert_eq!(alarms.len(), 2, "one per full window below min: {alarms:?}");
        assert_eq!(alarms[0].detector, DetectorKind::StaticThreshold);
        let alert = drift_alert("mon", "app", "run", &alarms[0]);
        assert_eq!(
            (
                alert.kind.as_str(),
                alert.suite.as_str(),
                alert.target.as_str()
            ),
            ("drift", "mon", "app")
        );
        assert_eq!(alert.gate, "json.pass_rate static_threshold drop");
        assert!(!alert.values.contains_key("alpha"));
        assert_eq!(alert.values["recent_count"], 10.0);
        assert!(alert.examples.iter().all(|e| e.as_str() >= "c10"));
    }

    #[test]
    fn model_side_failures_count_as_fails_and_scorer_failures_are_left_out() {
        let m = MetricsConfig::default();
        let failed = |kind| ItemResult {
            error: Some(ItemError {
                kind,
                message: String::new(),
            }),
            ..Default::default()
        };
        assert_eq!(
            metric_score("json", &failed(ErrorKind::ServerError), &m),
            Some(0.0)
        );
        assert_eq!(metric_score("json", &failed(ErrorKind::Scorer), &m), None);
        assert_eq!(metric_score("json", &item("a", true), &m), Some(1.0));
        assert_eq!(metric_score("other", &item("a", true), &m), None);
    }
}
