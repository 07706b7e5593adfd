//! Promotion of production captures into a dataset (`vigil dataset promote`):
//! the captures of an app since a time (`VIGIL_CAPTURE`), joined with their
//! online scores (the results of the monitor runs that scored them: item id
//! == capture id), filtered by a `--where` expression ([`filter`]), turned
//! into dataset items that keep their provenance.
//!
//! Monitor runs are found through the run history: the summaries on
//! `vigil.runs.<monitor>.<app>` (any monitor, or the one `--monitor` names)
//! that finished at or after the start of the window; a capture scored by
//! several monitor runs gets the scores of all of them (the first run that
//! scored it wins a scorer both have).

pub mod filter;

use crate::history::{self, HistoryError};
use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use filter::{Field, Filter, Row, Val};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_protocol::{Capture, Score, subjects};

/// Promotion failed.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// The filter names a scorer no monitor run of the app has.
    #[error(
        "--where reads scorer(s) {missing} but no monitor run of app `{app}` since the start of the window has them{known}"
    )]
    UnknownScorers {
        /// The app.
        app: String,
        /// The scorers not found, joined.
        missing: String,
        /// The scorers that were found, as a suffix.
        known: String,
    },
    /// Reading the history or the captures failed.
    #[error("{0}")]
    Nats(String),
}

impl From<HistoryError> for PromoteError {
    fn from(e: HistoryError) -> Self {
        PromoteError::Nats(e.to_string())
    }
}

fn nats(e: impl std::fmt::Display) -> PromoteError {
    PromoteError::Nats(e.to_string())
}

/// The online scores of one capture.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnlineScores {
    /// The monitor run(s) that scored it, first first.
    pub runs: Vec<String>,
    /// By scorer.
    pub scores: BTreeMap<String, Score>,
}

/// Capture id → its online scores, from the results of every monitor run of
/// `app` (summaries on `vigil.runs.<monitor>.<app>`, `monitor` = any when
/// `None`) that finished at or after `since`. Also returns the run ids read
/// and every scorer name seen. Only the scorers in `wanted` are kept (all
/// when `None`).
pub async fn online_scores(
    js: &jetstream::Context,
    app: &str,
    monitor: Option<&str>,
    since: SystemTime,
    wanted: Option<&BTreeSet<String>>,
) -> Result<(HashMap<String, OnlineScores>, Vec<String>, BTreeSet<String>), PromoteError> {
    let summaries = history::list(js, monitor, Some(app), history::LIST_RETRY_WINDOW).await?;
    let mut out: HashMap<String, OnlineScores> = HashMap::new();
    let mut runs = Vec::new();
    let mut seen_scorers = BTreeSet::new();
    for entry in summaries {
        let s = entry.summary;
        let finished = humantime::parse_rfc3339_weak(&s.finished_at).unwrap_or(UNIX_EPOCH);
        if finished < since {
            continue;
        }
        seen_scorers.extend(s.scores.keys().cloned());
        runs.push(s.run_id.clone());
        let run_id = s.run_id.clone();
        history::replay(js, &s.run_id, Some(s.items_total), |item| {
            if item.error.is_some() || item.id.is_empty() {
                return Ok::<_, HistoryError>(());
            }
            let kept = item
                .scores
                .into_iter()
                .filter(|sc| wanted.is_none_or(|w| w.contains(&sc.scorer)));
            let entry = out.entry(item.id).or_default();
            if !entry.runs.contains(&run_id) {
                entry.runs.push(run_id.clone());
            }
            for score in kept {
                entry.scores.entry(score.scorer.clone()).or_insert(score);
            }
            Ok(())
        })
        .await?;
    }
    Ok((out, runs, seen_scorers))
}

/// Reads every capture of `app` published at or after `since` (an ordered
/// consumer with a start time), oldest first, passing each to `f`;
/// undecodable messages are counted and skipped. Returns (read, undecodable).
pub async fn read_captures(
    js: &jetstream::Context,
    app: &str,
    since: SystemTime,
    mut f: impl FnMut(Capture),
) -> Result<(u64, u64), PromoteError> {
    let stream = js
        .get_stream(subjects::STREAM_CAPTURE)
        .await
        .map_err(nats)?;
    let nanos = since
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128;
    let start_time = async_nats::datetime::from_nanos(nanos).map_err(nats)?;
    let mut consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::capture(app),
            deliver_policy: DeliverPolicy::ByStartTime { start_time },
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    let (mut read, mut bad) = (0, 0);
    // What matches now; the read ends where the last message says nothing is pending.
    if consumer.info().await.map_err(nats)?.num_pending == 0 {
        return Ok((0, 0));
    }
    let mut messages = consumer.messages().await.map_err(nats)?;
    loop {
        let message = match tokio::time::timeout(Duration::from_secs(5), messages.next()).await {
            Ok(Some(m)) => m.map_err(nats)?,
            Ok(None) => return Err(nats("the capture read ended early")),
            Err(_) => return Err(nats("timed out waiting for the next capture")),
        };
        let pending = message.info().map_err(nats)?.pending;
        match vigil_protocol::decode::<Capture>(&message.payload) {
            Ok(capture) => {
                read += 1;
                f(capture);
            }
            Err(e) => {
                bad += 1;
                tracing::warn!(error = %e, "undecodable capture skipped");
            }
        }
        if pending == 0 {
            return Ok((read, bad));
        }
    }
}

/// A capture with its online scores, as the filter sees it.
pub struct Candidate<'a> {
    /// The capture.
    pub capture: &'a Capture,
    /// Its scores, if a monitor run scored it.
    pub scores: Option<&'a OnlineScores>,
}

impl Row for Candidate<'_> {
    fn get(&self, field: &Field) -> Option<Val<'_>> {
        let c = self.capture;
        match field {
            Field::Capture(name) => match *name {
                "model" => c.model.as_deref().map(Val::Str),
                "app" => Some(Val::Str(&c.app)),
                "endpoint" => Some(Val::Str(&c.endpoint)),
                "prompt" => Some(Val::Str(&c.prompt)),
                "response" => c.response_text.as_deref().map(Val::Str),
                "error" => c.error.as_deref().map(Val::Str),
                "capture_id" => Some(Val::Str(&c.capture_id)),
                "request_id" => Some(Val::Str(&c.request_id)),
                "status" => Some(Val::Num(f64::from(c.status))),
                "latency_ms" => Some(Val::Num(c.latency_ms)),
                "input_tokens" => c.usage.map(|u| Val::Num(u.input as f64)),
                "output_tokens" => c.usage.map(|u| Val::Num(u.output as f64)),
                "stream" => Some(Val::Bool(c.stream)),
                "scored" => Some(Val::Bool(self.scores.is_some())),
                _ => None,
            },
            Field::Metadata(key) => c.metadata.get(key).map(|v| Val::Str(v)),
            Field::Score(scorer, attr) => {
                let s = self.scores?.scores.get(scorer)?;
                match *attr {
                    "value" => Some(Val::Num(s.value)),
                    "passed" => Some(Val::Bool(s.passed)),
                    "detail" => Some(Val::Str(&s.detail)),
                    "label" => s.label.as_deref().map(Val::Str),
                    _ => None,
                }
            }
        }
    }
}

/// A capture as a dataset item: the input (`prompt`, and `messages` for
/// chat), the production answer (`response`, which a `recorded` target reads
/// with `output_field: response`), the online scores at promotion
/// (`scores`), the capture's `metadata`, and its provenance (`id` and
/// `capture_id`, `capture_time`, `app`, `model`, `monitor_run_id`).
pub fn item(capture: &Capture, scores: Option<&OnlineScores>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(capture.capture_id));
    m.insert("prompt".into(), json!(capture.prompt));
    if !capture.messages.is_empty() {
        m.insert("messages".into(), json!(capture.messages));
    }
    if let Some(r) = &capture.response_text {
        m.insert("response".into(), json!(r));
    }
    m.insert("capture_id".into(), json!(capture.capture_id));
    m.insert("capture_time".into(), json!(capture.time));
    m.insert("app".into(), json!(capture.app));
    if let Some(model) = &capture.model {
        m.insert("model".into(), json!(model));
    }
    m.insert("endpoint".into(), json!(capture.endpoint));
    if let Some(s) = scores {
        m.insert("monitor_run_id".into(), json!(s.runs.join(",")));
        let by_scorer: Map<String, Value> = s
            .scores
            .iter()
            .map(|(name, sc)| {
                (
                    name.clone(),
                    json!({"value": sc.value, "passed": sc.passed, "detail": sc.detail}),
                )
            })
            .collect();
        m.insert("scores".into(), Value::Object(by_scorer));
    }
    if !capture.metadata.is_empty() {
        m.insert("metadata".into(), json!(capture.metadata));
    }
    m
}

/// What [`select`] found.
#[derive(Debug, Default)]
pub struct Selection {
    /// The selected captures as items, oldest first.
    pub items: Vec<Map<String, Value>>,
    /// Captures read.
    pub captures: u64,
    /// Undecodable capture messages skipped.
    pub undecodable: u64,
    /// Monitor runs whose results were joined.
    pub monitor_runs: Vec<String>,
    /// Captures with online scores.
    pub scored: u64,
}

/// The captures of `app` since `since` that `filter` selects, as items. The
/// filter's scorers must exist in some monitor run of the app (a typo in a
/// scorer name is an error, not an empty selection).
pub async fn select(
    js: &jetstream::Context,
    app: &str,
    monitor: Option<&str>,
    since: SystemTime,
    filter: &Filter,
) -> Result<Selection, PromoteError> {
    let wanted: BTreeSet<String> = filter.scorers().into_iter().map(String::from).collect();
    let (scores, runs, seen) = online_scores(js, app, monitor, since, Some(&wanted)).await?;
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|s| !seen.contains(*s))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(PromoteError::UnknownScorers {
            app: app.to_string(),
            missing: missing.join(", "),
            known: if seen.is_empty() {
                String::new()
            } else {
                format!(
                    " (scorers there: {})",
                    seen.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            },
        });
    }
    let mut selection = Selection {
        monitor_runs: runs,
        ..Default::default()
    };
    let (captures, undecodable) = read_captures(js, app, since, |capture| {
        let online = scores.get(&capture.capture_id);
        if online.is_some() {
            selection.scored += 1;
        }
        let candidate = Candidate {
            capture: &capture,
            scores: online,
        };
        if filter.matches(&candidate) {
            selection.items.push(item(&capture, online));
        }
    })
    .await?;
    selection.captures = captures;
    selection.undecodable = undecodable;
    Ok(selection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::{ItemResult, JobResult, RunSummary, TokenUsage};

    fn capture(id: &str, model: &str, prompt: &str) -> Capture {
        Capture {
            capture_id: id.into(),
            app: "support".into(),
            model: Some(model.into()),
            endpoint: "chat".into(),
            prompt: prompt.into(),
            response_text: Some(format!("answer to {prompt}")),
            usage: Some(TokenUsage {
                input: 3,
                output: 4,
            }),
            status: 200,
            time: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        }
    }

    /// Publishes a monitor run's results and summary the way a run does:
    /// `vigil.results.<run>.<job>` and `vigil.runs.<monitor>.<app>`.
    async fn publish_monitor_run(
        js: &jetstream::Context,
        monitor: &str,
        run_id: &str,
        items: Vec<ItemResult>,
    ) {
        let n = items.len() as u64;
        let result = JobResult {
            run_id: run_id.into(),
            job_index: 0,
            items,
            ..Default::default()
        };
        js.publish(
            subjects::result(run_id, 0),
            vigil_protocol::encode(&result).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        let mut summary = RunSummary {
            run_id: run_id.into(),
            suite: monitor.into(),
            target: "support".into(),
            items_total: n,
            finished_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            ..Default::default()
        };
        summary
            .scores
            .insert("json_valid".into(), Default::default());
        js.publish(
            subjects::run_summary(monitor, "support"),
            vigil_protocol::encode(&summary).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }

    fn scored(index: u64, capture_id: &str, passed: bool) -> ItemResult {
        ItemResult {
            index,
            id: capture_id.into(),
            scores: vec![Score {
                scorer: "json_valid".into(),
                value: if passed { 1.0 } else { 0.0 },
                passed,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn every_capture_field_of_the_filter_reads_the_capture() {
        let mut c = capture("c9", "llama-3.1-8b", "What is 1 + 1?");
        c.metadata.insert("tier".into(), "free".into());
        c.stream = true;
        c.status = 502;
        c.error = Some("upstream unreachable".into());
        c.request_id = "r-9".into();
        let scores = OnlineScores {
            runs: vec!["m1".into()],
            scores: BTreeMap::from([(
                "judge".into(),
                Score {
                    scorer: "judge".into(),
                    value: 0.25,
                    passed: false,
                    detail: "vague".into(),
                    label: Some("bad".into()),
                    ..Default::default()
                },
            )]),
        };
        let row = Candidate {
            capture: &c,
            scores: Some(&scores),
        };
        let true_of = [
            r#"model == "llama-3.1-8b" and app == "support" and endpoint == "chat""#,
            r#"prompt == "What is 1 + 1?" and response == "answer to What is 1 + 1?""#,
            r#"capture_id == "c9" and request_id == "r-9" and error == "upstream unreachable""#,
            "status == 502 and latency_ms == 0 and input_tokens == 3 and output_tokens == 4",
            r#"stream and scored and metadata.tier == "free""#,
            r#"judge.value == 0.25 and not judge.passed and judge.detail == "vague" and judge.label == "bad""#,
        ];
        for text in true_of {
            assert!(Filter::parse(text).unwrap().matches(&row), "{text}");
        }
        let unscored = Candidate {
            capture: &c,
            scores: None,
        };
        for text in ["scored", "judge.value < 1", "metadata.other == \"x\""] {
            assert!(!Filter::parse(text).unwrap().matches(&unscored), "{text}");
        }
    }

    #[tokio::test]
    async fn captures_join_their_online_scores_by_capture_id() {
        let (_nats, js) = vigil_testkit::jetstream().await;
        let start = SystemTime::now() - Duration::from_secs(1);
        for (id, model, prompt) in [
            ("c1", "llama-3.1-8b", "one"),
            ("c2", "llama-3.1-8b", "two"),
            ("c3", "qwen", "three"),
            ("c4", "llama-3.1-8b", "four"),
        ] {
            let c = capture(id, model, prompt);
            js.publish(
                subjects::capture("support"),
                vigil_protocol::encode(&c).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        // Another app's capture is never read.
        js.publish(
            subjects::capture("billing"),
            vigil_protocol::encode(&capture("b1", "llama-3.1-8b", "x"))
                .unwrap()
                .into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        // c1 fails json_valid, c2 passes, c3 fails; c4 was not scored.
        publish_monitor_run(
            &js,
            "mon",
            "mon-run-1",
            vec![
                scored(0, "c1", false),
                scored(1, "c2", true),
                scored(2, "c3", false),
            ],
        )
        .await;

        let f = Filter::parse("json_valid.passed == false").unwrap();
        let sel = select(&js, "support", None, start, &f).await.unwrap();
        assert_eq!((sel.captures, sel.scored), (4, 3));
        assert_eq!(sel.monitor_runs, ["mon-run-1"]);
        let ids: Vec<&str> = sel
            .items
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["c1", "c3"]);
        assert_eq!(sel.items[0]["monitor_run_id"], "mon-run-1");
        assert_eq!(sel.items[0]["scores"]["json_valid"]["passed"], false);
        assert_eq!(sel.items[0]["capture_time"], "2026-01-01T00:00:00Z");
        assert_eq!(sel.items[0]["response"], "answer to one");

        let f = Filter::parse(r#"json_valid.passed == false and model == "llama-3.1-8b""#).unwrap();
        let sel = select(&js, "support", Some("mon"), start, &f)
            .await
            .unwrap();
        let ids: Vec<&str> = sel
            .items
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["c1"]);

        let f = Filter::parse("not scored").unwrap();
        let sel = select(&js, "support", None, start, &f).await.unwrap();
        let ids: Vec<&str> = sel
            .items
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["c4"]);

        // Another monitor's name: no runs, so its scorer is unknown.
        let f = Filter::parse("json_valid.passed == false").unwrap();
        let e = select(&js, "support", Some("other"), start, &f)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("json_valid"), "{e}");
        let f = Filter::parse("judge.value < 0.5").unwrap();
        let e = select(&js, "support", None, start, &f).await.unwrap_err();
        assert!(
            e.to_string().contains("judge") && e.to_string().contains("scorers there: json_valid"),
            "{e}"
        );

        // A window that starts after every capture reads none.
        let later = SystemTime::now() + Duration::from_secs(3600);
        let f = Filter::parse("status == 200").unwrap();
        let sel = select(&js, "support", None, later, &f).await.unwrap();
        assert_eq!(sel.captures, 0);
    }
}
