//! The monitor file (`vigil monitor MONITOR.yaml`): which captures, how they
//! are scored, how windows close and what the drift detectors watch.
//! Scorers and judge targets are written and checked exactly as a suite's
//! ([`crate::suite::check_scorers`]); errors name the file, the field and,
//! when the parser knows it, the line.

use crate::drift::{Direction, EDetectorConfig, StaticThresholdConfig};
use crate::suite::raw::{RawScorer, RawTarget, parse_yaml};
use crate::suite::{ScorerConfig, SuiteError, TargetConfig, check_name, check_scorers};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_protocol::Capture;

/// A loaded and checked monitor file.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// The monitor's name: its durable consumer is `vigil-monitor-<name>`,
    /// its window summaries go on `vigil.runs.<name>.<app>`.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Which captures are scored.
    pub filter: CaptureFilter,
    /// The fraction of matching captures scored, decided on the capture's
    /// `request_id` as the proxy decides (so two monitors at 10% see the
    /// same 10%). Default 1.
    pub sample: f64,
    /// The worker pool that scores (default `default`).
    pub pool: String,
    /// Captures per job, at most (default 32).
    pub batch: usize,
    /// How long a batch waits to fill before it is sent (default 1 s).
    pub batch_wait: Duration,
    /// How often the monitor refreshes its lease (`lease_ms`, default 5 s);
    /// a lease not refreshed for 3 periods is expired.
    pub lease_period: Duration,
    /// How windows close.
    pub window: WindowConfig,
    /// Characters of each response kept in item results (default 2000).
    pub keep_output_chars: u32,
    /// Judge and embedder endpoints the scorers name.
    pub targets: Vec<TargetConfig>,
    /// The reference-free scorers.
    pub scorers: Vec<ScorerConfig>,
    /// Latency and length checks, per item, beside the scorers.
    pub metrics: MetricsConfig,
    /// The drift detectors.
    pub drift: DriftConfig,
}

/// Which captures a monitor scores: all of these must hold.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureFilter {
    /// The app (`vigil.capture.<app>`); `None`: every app, each in its own windows.
    #[serde(default)]
    pub app: Option<String>,
    /// Models (the capture's `model`); empty: any.
    #[serde(default)]
    pub models: Vec<String>,
    /// Metadata keys and the value each must have.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Endpoints (`chat`, `completions`); default both (embeddings have no text to score).
    #[serde(default)]
    pub endpoints: Vec<String>,
}

impl CaptureFilter {
    /// Whether `capture` is one the monitor scores.
    ///
    /// ```
    /// use vigil_coordinator::monitor::CaptureFilter;
    /// let f = CaptureFilter { models: vec!["m1".into()], metadata: [("tenant".to_string(), "acme".to_string())].into(), ..Default::default() };
    /// let mut c = vigil_protocol::Capture { app: "a".into(), endpoint: "chat".into(), model: Some("m1".into()), ..Default::default() };
    /// assert!(!f.matches(&c));
    /// c.metadata.insert("tenant".into(), "acme".into());
    /// assert!(f.matches(&c));
    /// c.endpoint = "embeddings".into();
    /// assert!(!f.matches(&c));
    /// ```
    pub fn matches(&self, capture: &Capture) -> bool {
        let endpoint_ok = if self.endpoints.is_empty() {
            matches!(capture.endpoint.as_str(), "chat" | "completions")
        } else {
            self.endpoints.contains(&capture.endpoint)
        };
        endpoint_ok
            && self.app.as_ref().is_none_or(|a| *a == capture.app)
            && (self.models.is_empty()
                || capture
                    .model
                    .as_ref()
                    .is_some_and(|m| self.models.contains(m)))
            && self
                .metadata
                .iter()
                .all(|(k, v)| capture.metadata.get(k) == Some(v))
    }
}

/// How a monitor's windows close. A window is a run: its items are the
/// captures scored in it, its summary is published when it closes.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowConfig {
    /// A window spans this much capture time (default 1 h): a capture whose
    /// `time` is at or after the window's end starts the next window.
    pub duration: Duration,
    /// A window closes when it holds this many captures (default 10,000).
    pub max_items: u64,
    /// A window with no new capture closes this long after its end, by the
    /// monitor's clock (default 60 s).
    pub grace: Duration,
    /// A closed window whose items have not all come back this long after
    /// it closed counts the missing ones as failed (`deadline`; default 10 min).
    pub results_timeout: Duration,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            duration: Duration::from_secs(3600),
            max_items: 10_000,
            grace: Duration::from_secs(60),
            results_timeout: Duration::from_secs(600),
        }
    }
}

/// Latency and length checks: per item, pass/fail, beside the scorers, in
/// the drift detectors (not in the window summary's scores).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `latency`: an item passes when its recorded latency is at most `max_ms`.
    #[serde(default)]
    pub latency: Option<LatencyMetric>,
    /// `length`: an item passes when its output tokens are within bounds.
    #[serde(default)]
    pub length: Option<LengthMetric>,
}

/// The `latency` metric.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyMetric {
    /// The largest latency that passes, milliseconds.
    pub max_ms: f64,
}

/// The `length` metric, in output tokens as the upstream reported them
/// (items without usage are left out).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthMetric {
    /// Fewest output tokens that pass (default 1).
    #[serde(default = "one")]
    pub min_tokens: u64,
    /// Most output tokens that pass.
    #[serde(default)]
    pub max_tokens: Option<u64>,
}

fn one() -> u64 {
    1
}

/// The drift detectors of a monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftConfig {
    /// The metrics watched by an e-detector (scorer names, `latency`,
    /// `length`); default: every scorer and metric.
    pub metrics: Vec<String>,
    /// The e-detector's settings (`alpha`, `direction`, `reference_confidence`, `changes`).
    pub detector: EDetectorConfig,
    /// The reference period: the first this many scored items of each app
    /// (and again after each alarm). Default 500.
    pub reference_items: u64,
    /// Static thresholds, each on one metric.
    pub static_thresholds: Vec<(String, StaticThresholdConfig)>,
    /// Drift detection off (`drift: {enabled: false}`).
    pub enabled: bool,
}

// ---------------------------------------------------------------- raw file

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    name: String,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    filter: CaptureFilter,
    #[serde(default)]
    sample: Option<f64>,
    #[serde(default)]
    pool: Option<String>,
    #[serde(default)]
    batch: Option<usize>,
    #[serde(default)]
    batch_wait_ms: Option<u64>,
    #[serde(default)]
    lease_ms: Option<u64>,
    #[serde(default)]
    window: RawWindow,
    #[serde(default)]
    keep_output_chars: Option<u32>,
    #[serde(default)]
    targets: Vec<RawTarget>,
    #[serde(default)]
    scorers: Vec<RawScorer>,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    drift: RawDrift,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    #[serde(default)]
    duration_s: Option<f64>,
    #[serde(default)]
    max_items: Option<u64>,
    #[serde(default)]
    grace_s: Option<f64>,
    #[serde(default)]
    results_timeout_s: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDrift {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    metrics: Option<Vec<String>>,
    #[serde(default)]
    alpha: Option<f64>,
    #[serde(default)]
    direction: Option<Direction>,
    #[serde(default)]
    reference_items: Option<u64>,
    #[serde(default)]
    reference_confidence: Option<f64>,
    #[serde(default)]
    changes: Option<Vec<f64>>,
    #[serde(default)]
    max_examples: Option<usize>,
    #[serde(default)]
    static_thresholds: Vec<RawStatic>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatic {
    metric: String,
    #[serde(default)]
    window: Option<usize>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
}

/// The default batch (captures per job).
pub const DEFAULT_BATCH: usize = 32;

/// The latency and length metrics' names.
pub const METRIC_NAMES: &[&str] = &["latency", "length"];

impl MonitorConfig {
    /// Reads and checks a monitor file (YAML).
    pub fn load(path: &Path) -> Result<MonitorConfig, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        MonitorConfig::from_str(&text, path)
    }

    /// Parses and checks a monitor file's text; `path` names it in errors.
    #[allow(clippy::should_implement_trait)] // takes a path, unlike FromStr
    pub fn from_str(text: &str, path: &Path) -> Result<MonitorConfig, SuiteError> {
        let raw: RawMonitor = parse_yaml(text, path)?;
        let err = |field: &str, message: String| SuiteError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            message,
            location: None,
        };
        check_name(path, "name", "monitor", &raw.name)?;
        let mut filter = raw.filter;
        if let Some(app) = raw.app {
            if filter.app.is_some() {
                return Err(err(
                    "app",
                    "give the app once: `app` or `filter.app`".into(),
                ));
            }
            filter.app = Some(app);
        }
        if let Some(app) = &filter.app {
            check_name(path, "app", "app", app)?;
        }
        let sample = raw.sample.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample) {
            return Err(err(
                "sample",
                format!("must be a fraction between 0 and 1, got {sample}"),
            ));
        }
        let pool = raw
            .pool
            .unwrap_or_else(|| vigil_protocol::subjects::DEFAULT_POOL.to_string());
        check_name(path, "pool", "pool", &pool)?;
        let batch = raw.batch.unwrap_or(DEFAULT_BATCH);
        if !(1..=crate::suite::MAX_SHARD_SIZE).contains(&batch) {
            return Err(err(
                "batch",
                format!(
                    "must be between 1 and {}, got {batch}",
                    crate::suite::MAX_SHARD_SIZE
                ),
            ));
        }
        let window = window(raw.window, &err)?;
        let (targets, scorers) = check_scorers(path, raw.targets, raw.scorers)?;
        for (i, s) in scorers.iter().enumerate() {
            if s.kind.needs_reference() || s.reference.is_some() {
                return Err(err(
                    &format!("scorers[{i}]"),
                    format!(
                        "scorer `{}` needs a reference; a monitor scores production traffic, which has none: use reference-free scorers (json_valid, json_schema, regex, refusal, pii, toxicity, llm_judge with a rubric, external)",
                        s.name
                    ),
                ));
            }
            if METRIC_NAMES.contains(&s.name.as_str()) {
                return Err(err(
                    &format!("scorers[{i}].name"),
                    format!(
                        "`{}` is the name of a monitor metric; choose another",
                        s.name
                    ),
                ));
            }
        }
        if scorers.is_empty() && raw.metrics.latency.is_none() && raw.metrics.length.is_none() {
            return Err(err(
                "scorers",
                "a monitor needs at least one scorer or metric (latency, length)".into(),
            ));
        }
        if let Some(l) = &raw.metrics.latency
            && !(l.max_ms.is_finite() && l.max_ms > 0.0)
        {
            return Err(err(
                "metrics.latency.max_ms",
                format!(
                    "must be a positive number of milliseconds, got {}",
                    l.max_ms
                ),
            ));
        }
        if let Some(l) = &raw.metrics.length
            && l.max_tokens.is_some_and(|m| m < l.min_tokens)
        {
            return Err(err(
                "metrics.length.max_tokens",
                "must be at least min_tokens".into(),
            ));
        }
        let mut known: Vec<String> = scorers.iter().map(|s| s.name.clone()).collect();
        if raw.metrics.latency.is_some() {
            known.push("latency".into());
        }
        if raw.metrics.length.is_some() {
            known.push("length".into());
        }
        let drift = drift(raw.drift, &known, &err)?;
        Ok(MonitorConfig {
            name: raw.name,
            path: path.to_path_buf(),
            filter,
            sample,
            pool,
            batch,
            batch_wait: Duration::from_millis(raw.batch_wait_ms.unwrap_or(1000).max(1)),
            lease_period: Duration::from_millis(raw.lease_ms.unwrap_or(5000).max(100)),
            window,
            keep_output_chars: raw
                .keep_output_chars
                .unwrap_or(crate::suite::DEFAULT_KEEP_OUTPUT_CHARS),
            targets,
            scorers,
            metrics: raw.metrics,
            drift,
        })
    }

    /// Every watched metric: the scorers, then `latency` and `length` when configured.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.scorers.iter().map(|s| s.name.clone()).collect();
        if self.metrics.latency.is_some() {
            names.push("latency".into());
        }
        if self.metrics.length.is_some() {
            names.push("length".into());
        }
        names
    }
}

fn seconds(
    field: &str,
    v: Option<f64>,
    default: Duration,
    err: &dyn Fn(&str, String) -> SuiteError,
) -> Result<Duration, SuiteError> {
    match v {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(err(
            field,
            format!("must be a positive number of seconds, got {s}"),
        )),
    }
}

fn window(
    raw: RawWindow,
    err: &dyn Fn(&str, String) -> SuiteError,
) -> Result<WindowConfig, SuiteError> {
    let d = WindowConfig::default();
    let max_items = raw.max_items.unwrap_or(d.max_items);
    if max_items == 0 {
        return Err(err("window.max_items", "must be at least 1".into()));
    }
    Ok(WindowConfig {
        duration: seconds("window.duration_s", raw.duration_s, d.duration, err)?,
        max_items,
        grace: seconds("window.grace_s", raw.grace_s, d.grace, err)?,
        results_timeout: seconds(
            "window.results_timeout_s",
            raw.results_timeout_s,
            d.results_timeout,
            err,
        )?,
    })
}

fn drift(
    raw: RawDrift,
    known: &[String],
    err: &dyn Fn(&str, String) -> SuiteError,
) -> Result<DriftConfig, SuiteError> {
    let unknown = |field: &str, m: &str| {
        err(
            field,
            format!(
                "`{m}` is not a scorer or metric of this monitor (known: {})",
                known.join(", ")
            ),
        )
    };
    let metrics = match raw.metrics {
        Some(list) => {
            for (i, m) in list.iter().enumerate() {
                if !known.contains(m) {
                    return Err(unknown(&format!("drift.metrics[{i}]"), m));
                }
            }
            list
        }
        None => known.to_vec(),
    };
    let d = EDetectorConfig::default();
    let detector = EDetectorConfig {
        alpha: raw.alpha.unwrap_or(d.alpha),
        direction: raw.direction.unwrap_or(d.direction),
        reference_confidence: raw.reference_confidence.unwrap_or(d.reference_confidence),
        changes: raw.changes.unwrap_or(d.changes.clone()),
        max_examples: raw.max_examples.unwrap_or(d.max_examples),
        ..d
    };
    // The detector's own checks, with the file's field names.
    let probe = crate::drift::Reference::pass_fail(9, 10).expect("a valid reference");
    if let Err(e) = crate::drift::EDetector::new("probe", &probe, detector.clone())
        && !matches!(e, crate::drift::DriftError::Config(ref m) if m.starts_with("no change"))
    {
        return Err(err("drift", e.to_string()));
    }
    let reference_items = raw.reference_items.unwrap_or(500);
    if reference_items == 0 {
        return Err(err("drift.reference_items", "must be at least 1".into()));
    }
    let mut static_thresholds = Vec::new();
    for (i, s) in raw.static_thresholds.into_iter().enumerate() {
        let field = format!("drift.static_thresholds[{i}]");
        if !known.contains(&s.metric) {
            return Err(unknown(&format!("{field}.metric"), &s.metric));
        }
        let config = StaticThresholdConfig {
            window: s.window.unwrap_or(100),
            min: s.min,
            max: s.max,
            max_examples: detector.max_examples,
        };
        crate::drift::StaticThreshold::new(&s.metric, 0.0, 0, config.clone())
            .map_err(|e| err(&field, e.to_string()))?;
        static_thresholds.push((s.metric, config));
    }
    Ok(DriftConfig {
        metrics,
        detector,
        reference_items,
        static_thresholds,
        enabled: raw.enabled.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<MonitorConfig, SuiteError> {
        MonitorConfig::from_str(text, Path::new("/m/monitor.yaml"))
    }

    #[test]
    fn a_minimal_monitor_gets_its_defaults_and_json_valid_is_the_empty_schema() {
        let m =
            load("name: m\napp: support\nscorers:\n  - {name: json, kind: json_valid}\n").unwrap();
        assert_eq!(m.filter.app.as_deref(), Some("support"));
        assert_eq!(
            (m.sample, m.batch, m.pool.as_str()),
            (1.0, DEFAULT_BATCH, "default")
        );
        assert_eq!(m.window, WindowConfig::default());
        assert!(matches!(
            &m.scorers[0].kind,
            vigil_protocol::ScorerKind::JsonSchema { .. }
        ));
        assert_eq!(m.drift.metrics, vec!["json".to_string()]);
        assert_eq!(m.drift.reference_items, 500);
        assert_eq!(m.drift.detector.alpha, 0.001);
    }

    #[test]
    fn metrics_windows_and_drift_are_read() {
        let m = load(
            r#"
name: m
filter: {app: a, models: [x], metadata: {tenant: acme}}
sample: 0.25
window: {duration_s: 600, max_items: 50, grace_s: 5, results_timeout_s: 30}
scorers: [{name: safe, kind: refusal}]
metrics: {latency: {max_ms: 800}, length: {max_tokens: 400}}
drift:
  alpha: 0.01
  direction: both
  reference_items: 100
  metrics: [safe, latency]
  static_thresholds: [{metric: length, window: 20, min: 0.9}]
"#,
        )
        .unwrap();
        assert_eq!(m.window.duration, Duration::from_secs(600));
        assert_eq!(m.window.max_items, 50);
        assert_eq!(m.metric_names(), vec!["safe", "latency", "length"]);
        assert_eq!(m.drift.metrics, vec!["safe", "latency"]);
        assert_eq!(m.drift.detector.direction, Direction::Both);
        assert_eq!(m.drift.static_thresholds[0].0, "length");
        assert_eq!(m.metrics.length.as_ref().unwrap().min_tokens, 1);
    }

    #[test]
    fn bad_monitor_files_name_the_field() {
        let cases = [
            ("name: m\nscorers: []\n", "scorers"),
            (
                "name: m\nsample: 2\nscorers: [{name: j, kind: json_valid}]\n",
                "sample",
            ),
            (
                "name: 'a b'\nscorers: [{name: j, kind: json_valid}]\n",
                "name",
            ),
            (
                "name: m\nscorers: [{name: e, kind: exact_match, reference: '{{ a }}'}]\n",
                "scorers[0]",
            ),
            (
                "name: m\nscorers: [{name: j, kind: json_valid}]\ndrift: {metrics: [nope]}\n",
                "drift.metrics[0]",
            ),
            (
                "name: m\nscorers: [{name: j, kind: json_valid}]\ndrift: {alpha: 2}\n",
                "drift",
            ),
            (
                "name: m\nscorers: [{name: j, kind: json_valid}]\nwindow: {max_items: 0}\n",
                "window.max_items",
            ),
            (
                "name: m\nscorers: [{name: j, kind: regex, pattern: '('}]\n",
                "scorers[0]",
            ),
            (
                "name: m\nscorers: [{name: j, kind: json_valid}]\nwindw: {}\n",
                "windw",
            ),
            (
                "name: m\nscorers: [{name: latency, kind: json_valid}]\n",
                "scorers[0].name",
            ),
        ];
        for (text, field) in cases {
            let e = load(text).unwrap_err().to_string();
            assert!(e.starts_with("/m/monitor.yaml"), "{e}");
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
