//! Alerts: a failed gate publishes an [`Alert`] on `vigil.alerts.<suite>`
//! (stream `VIGIL_ALERTS`), a MessagePack map any subscriber can read.

use async_nats::jetstream::{self, message::PublishMessage};
use std::collections::BTreeMap;
use vigil_protocol::{Alert, GateOutcome, RunSummary, subjects};

/// The alerts of a summary: one per failed gate.
///
/// ```
/// use vigil_protocol::{GateOutcome, RunSummary};
/// let s = RunSummary { suite: "s".into(), run_id: "r".into(), gates: vec![
///     GateOutcome { metric: "exact.pass_rate".into(), min: Some(0.9), value: Some(0.5), passed: false, ..Default::default() },
///     GateOutcome { metric: "error_rate".into(), max: Some(0.1), value: Some(0.0), passed: true, ..Default::default() },
/// ], ..Default::default() };
/// let alerts = vigil_coordinator::alerts::alerts_of(&s);
/// assert_eq!(alerts.len(), 1);
/// assert_eq!(alerts[0].values["value"], 0.5);
/// ```
pub fn alerts_of(summary: &RunSummary) -> Vec<Alert> {
    summary
        .gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| alert(summary, g))
        .collect()
}

fn gate_name(g: &GateOutcome) -> String {
    match (&g.slice_gap, g.max_regression) {
        (Some(tag), _) => format!("{} slice_gap {tag}", g.metric),
        (None, Some(_)) => format!("{} max_regression", g.metric),
        (None, None) => g.metric.clone(),
    }
}

fn alert(summary: &RunSummary, g: &GateOutcome) -> Alert {
    let mut values = BTreeMap::new();
    for (key, v) in [
        ("value", g.value),
        ("min", g.min),
        ("max", g.max),
        ("max_regression", g.max_regression),
    ] {
        if let Some(v) = v {
            values.insert(key.to_string(), v);
        }
    }
    let mut baseline_run_id = None;
    if g.max_regression.is_some()
        && let Some(c) = &summary.comparison
    {
        baseline_run_id = Some(c.baseline_run_id.clone());
        let (scorer, field) = g.metric.rsplit_once('.').unwrap_or((&g.metric, ""));
        let tests = || {
            c.tests
                .iter()
                .filter(|t| t.slice.is_none() && t.scorer == scorer)
        };
        if let Some(t) = tests()
            .find(|t| t.metric == field)
            .or_else(|| tests().find(|t| t.metric == "pass_rate"))
        {
            values.insert("diff".into(), t.diff);
            values.insert("ci_low".into(), t.ci_low);
            values.insert("ci_high".into(), t.ci_high);
            values.insert("p_adjusted".into(), t.p_adjusted);
            values.insert("baseline".into(), t.baseline);
            values.insert("candidate".into(), t.candidate);
        }
    }
    Alert {
        kind: "gate_failed".into(),
        suite: summary.suite.clone(),
        target: summary.target.clone(),
        run_id: summary.run_id.clone(),
        gate: gate_name(g),
        values,
        baseline_run_id,
        at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        examples: Vec::new(),
    }
}

/// Publishes one alert per failed gate; returns how many were published.
pub async fn publish(js: &jetstream::Context, summary: &RunSummary) -> Result<usize, String> {
    let alerts = alerts_of(summary);
    for (i, alert) in alerts.iter().enumerate() {
        publish_one(
            js,
            &subjects::alerts(&summary.suite),
            alert,
            &format!("{}/alert/{i}", summary.run_id),
        )
        .await?;
    }
    Ok(alerts.len())
}

/// Publishes one alert on `subject` with `Nats-Msg-Id` `message_id` (a
/// repeat within the duplicate window is stored once) and waits for its ack.
pub async fn publish_one(
    js: &jetstream::Context,
    subject: &str,
    alert: &Alert,
    message_id: &str,
) -> Result<(), String> {
    let payload = vigil_protocol::encode(alert).map_err(|e| e.to_string())?;
    let publish = PublishMessage::build()
        .headers(vigil_nats::headers::message_headers(&alert.run_id))
        .message_id(message_id)
        .payload(payload.into());
    js.send_publish(subject.to_string(), publish)
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
