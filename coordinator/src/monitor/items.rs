//! Captures into job items: the capture's prompt as the item's prompt, its
//! response as the item's `recorded` output (a `recorded` target returns it
//! instead of calling a model), its id as the item id (so results join back
//! to captures), and its app, model and metadata as tags. A judge's rubric
//! is rendered by the suite's [`Renderer`] over the capture's fields.

use super::MonitorError;
use super::config::MonitorConfig;
use crate::dataset::Record;
use crate::render::Renderer;
use crate::suite::{DatasetSpec, PromptSpec, Suite};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use vigil_protocol::{Capture, EndpointKind, Item, Prompt, Recorded};

/// Turns captures into items.
pub(super) struct ItemBuilder {
    /// A suite around the monitor's scorers: their wire form, their rubrics.
    suite: Suite,
    renderer: Option<Renderer>,
}

impl ItemBuilder {
    pub(super) fn new(config: &MonitorConfig) -> Result<Self, MonitorError> {
        let suite = Suite {
            name: config.name.clone(),
            path: config.path.clone(),
            sha256: String::new(),
            dataset: DatasetSpec {
                path: config.path.clone(),
                format: crate::suite::DatasetFormat::Jsonl,
                id_field: Some("capture_id".into()),
                tags: Vec::new(),
                named: None,
            },
            prompt: PromptSpec {
                system: None,
                user: Some("{{ prompt }}".into()),
                messages: None,
                completion: None,
            },
            targets: Vec::new(),
            scorers: config.scorers.clone(),
            gates: Vec::new(),
            shard_size: Some(config.batch),
            pool: config.pool.clone(),
            deadline_s: None,
            error_budget: 1.0,
            keep_output_chars: config.keep_output_chars,
            cache: Default::default(),
            samples: 1,
        };
        // Only rubrics need rendering.
        let renderer = if config.scorers.iter().any(|s| s.prompt.is_some()) {
            Some(Renderer::new(&suite).map_err(|e| MonitorError::Config(e.to_string()))?)
        } else {
            None
        };
        Ok(ItemBuilder { suite, renderer })
    }

    /// The scorers as jobs carry them.
    pub(super) fn scorer_specs(&self) -> Vec<vigil_protocol::ScorerSpec> {
        self.suite.scorer_specs()
    }

    /// The item of `capture` at `index` in its window.
    pub(super) fn item(&self, capture: &Capture, index: u64) -> Item {
        let prompt = if !capture.messages.is_empty() {
            Prompt::Chat(capture.messages.clone())
        } else if capture.endpoint == "chat" {
            Prompt::Chat(vec![vigil_protocol::ChatMessage {
                role: "user".into(),
                content: capture.prompt.clone(),
            }])
        } else {
            Prompt::Completion(capture.prompt.clone())
        };
        let mut tags = capture.metadata.clone();
        tags.insert("app".into(), capture.app.clone());
        if let Some(model) = &capture.model {
            tags.insert("model".into(), model.clone());
        }
        let scorer_prompts = match &self.renderer {
            None => BTreeMap::new(),
            Some(r) => match r.render(&record(capture, index), EndpointKind::Chat) {
                Ok(item) => item.scorer_prompts,
                Err(e) => {
                    // The judge then fails the item (no rubric), visibly.
                    tracing::warn!(capture_id = %capture.capture_id, error = %e, "a rubric could not be rendered for this capture");
                    BTreeMap::new()
                }
            },
        };
        Item {
            index,
            id: capture.capture_id.clone(),
            prompt,
            references: BTreeMap::new(),
            tags,
            scorer_prompts,
            recorded: Some(recorded(capture)),
        }
    }
}

/// The capture's response as a recorded output.
pub fn recorded(capture: &Capture) -> Recorded {
    Recorded {
        text: capture.response_text.clone(),
        status: capture.status,
        latency_ms: capture.latency_ms,
        usage: capture.usage,
        model: capture.model.clone(),
    }
}

/// The capture's fields as a rubric sees them: `prompt`, `app`, `model`,
/// `endpoint`, `metadata`, `capture_id`, `request_id`, `time`.
fn record(capture: &Capture, index: u64) -> Record {
    let mut fields = Map::new();
    fields.insert("capture_id".into(), capture.capture_id.clone().into());
    fields.insert("request_id".into(), capture.request_id.clone().into());
    fields.insert("prompt".into(), capture.prompt.clone().into());
    fields.insert("app".into(), capture.app.clone().into());
    fields.insert(
        "model".into(),
        capture.model.clone().map_or(Value::Null, Value::from),
    );
    fields.insert("endpoint".into(), capture.endpoint.clone().into());
    fields.insert("time".into(), capture.time.clone().into());
    fields.insert(
        "metadata".into(),
        serde_json::to_value(&capture.metadata).unwrap_or_default(),
    );
    Record {
        line: index + 1,
        index,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_becomes_a_recorded_item_with_its_id_tags_and_rendered_rubric() {
        let config = MonitorConfig::from_str(
            r#"
name: m
scorers:
  - name: helpful
    kind: llm_judge
    judge: {base_url: "http://127.0.0.1:1/v1", model: j}
    rubric: "Tenant {{ metadata.tenant }} asked: {{ prompt }}. Answer: {{ output }}"
"#,
            std::path::Path::new("/m/monitor.yaml"),
        )
        .unwrap();
        let builder = ItemBuilder::new(&config).unwrap();
        let capture = Capture {
            capture_id: "cap-1".into(),
            app: "support".into(),
            model: Some("llama".into()),
            endpoint: "chat".into(),
            prompt: "Where is my order?".into(),
            messages: vec![vigil_protocol::ChatMessage {
                role: "user".into(),
                content: "Where is my order?".into(),
            }],
            response_text: Some("On its way.".into()),
            status: 200,
            latency_ms: 42.0,
            metadata: [("tenant".to_string(), "acme".to_string())].into(),
            ..Default::default()
        };
        let item = builder.item(&capture, 7);
        assert_eq!((item.index, item.id.as_str()), (7, "cap-1"));
        assert_eq!(item.tags["app"], "support");
        assert_eq!(item.tags["model"], "llama");
        assert_eq!(item.tags["tenant"], "acme");
        assert_eq!(item.prompt, Prompt::Chat(capture.messages.clone()));
        let r = item.recorded.unwrap();
        assert_eq!(
            (r.text.as_deref(), r.status, r.latency_ms),
            (Some("On its way."), 200, 42.0)
        );
        let rubric = &item.scorer_prompts["helpful"];
        assert!(
            rubric.contains("Tenant acme asked: Where is my order?"),
            "{rubric}"
        );
        assert_eq!(builder.scorer_specs()[0].name, "helpful");
    }
}
