//! Rendering records into items: prompts, references, ids, tags, and errors.

use std::path::Path;
use vigil_coordinator::dataset::Record;
use vigil_coordinator::render::Renderer;
use vigil_coordinator::suite::{Suite, SuiteError, SuiteFormat};
use vigil_protocol::{ChatMessage, EndpointKind, Prompt};

const SUITE: &str = r#"
name: r
dataset: { path: data/items.jsonl, id_field: id, tags: [category, level, missing] }
prompt:
  system: "{% if hint is defined %}{{ hint }}{% endif %}"
  user: "{{ question }}"
  completion: "Q: {{ question }}\nA:"
targets:
  - { name: c, base_url: "http://h/v1", model: m }
  - { name: p, kind: completions, base_url: "http://h/v1", model: m }
scorers:
  - { name: exact, kind: exact_match, reference: "{{ answer }}" }
  - { name: json, kind: json_schema }
  - { name: num, kind: numeric, reference: "{{ answer | int + 0 }}" }
"#;

fn suite(text: &str) -> Suite {
    Suite::from_str(text, SuiteFormat::Yaml, Path::new("suites/r.yaml")).unwrap()
}

fn record(line: u64, json: serde_json::Value) -> Record {
    Record {
        line,
        index: line - 1,
        fields: json.as_object().unwrap().clone(),
    }
}

#[test]
fn chat_and_completion_items() {
    let r = Renderer::new(&suite(SUITE)).unwrap();
    let rec = record(
        3,
        serde_json::json!({"id": "q7", "question": "What is 2 + 3?", "answer": "5", "category": "addition", "level": 2, "hint": "Digits only."}),
    );
    let item = r.render(&rec, EndpointKind::Chat).unwrap();
    assert_eq!(item.index, 2);
    assert_eq!(item.id, "q7");
    assert_eq!(
        item.prompt,
        Prompt::Chat(vec![
            ChatMessage {
                role: "system".into(),
                content: "Digits only.".into()
            },
            ChatMessage {
                role: "user".into(),
                content: "What is 2 + 3?".into()
            },
        ])
    );
    assert_eq!(item.references.len(), 2);
    assert_eq!(item.references["exact"], "5");
    assert_eq!(item.references["num"], "5");
    assert_eq!(item.tags.len(), 2);
    assert_eq!(item.tags["category"], "addition");
    assert_eq!(item.tags["level"], "2");

    let item = r.render(&rec, EndpointKind::Completions).unwrap();
    assert_eq!(
        item.prompt,
        Prompt::Completion("Q: What is 2 + 3?\nA:".into())
    );
}

#[test]
fn empty_messages_are_dropped_and_numeric_ids_work() {
    let r = Renderer::new(&suite(SUITE)).unwrap();
    let item = r
        .render(
            &record(
                1,
                serde_json::json!({"id": 42, "question": "x", "answer": "1"}),
            ),
            EndpointKind::Chat,
        )
        .unwrap();
    assert_eq!(item.id, "42");
    assert_eq!(
        item.prompt,
        Prompt::Chat(vec![ChatMessage {
            role: "user".into(),
            content: "x".into()
        }])
    );
}

#[test]
fn id_defaults_to_the_line_number() {
    let text = SUITE.replace("id_field: id, ", "");
    let r = Renderer::new(&suite(&text)).unwrap();
    let item = r
        .render(
            &record(9, serde_json::json!({"question": "x", "answer": "1"})),
            EndpointKind::Chat,
        )
        .unwrap();
    assert_eq!(item.id, "9");
}

#[test]
fn missing_id_names_file_line_and_field() {
    let r = Renderer::new(&suite(SUITE)).unwrap();
    let err = r
        .render(
            &record(12, serde_json::json!({"question": "x", "answer": "1"})),
            EndpointKind::Chat,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "suites/data/items.jsonl:12: dataset.id_field: item has no id field `id`"
    );
    let err = r
        .render(
            &record(
                13,
                serde_json::json!({"id": [1], "question": "x", "answer": "1"}),
            ),
            EndpointKind::Chat,
        )
        .unwrap_err();
    assert!(err.to_string().starts_with("suites/data/items.jsonl:13: dataset.id_field: item id `id` must be a string or a number"), "{err}");
}

#[test]
fn undefined_variable_names_file_line_field_and_variable() {
    let text = SUITE.replace("user: \"{{ question }}\"", "user: \"{{ questoin }}\"");
    let r = Renderer::new(&suite(&text)).unwrap();
    let err = r
        .render(
            &record(
                17,
                serde_json::json!({"id": "a", "question": "x", "answer": "1"}),
            ),
            EndpointKind::Chat,
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("suites/data/items.jsonl:17: prompt.user: undefined value"),
        "{msg}"
    );
    assert!(msg.contains("`questoin`"), "{msg}");
    assert_eq!(err.line, 17);
    assert_eq!(err.field, "prompt.user");
    // The same in a reference.
    let err = r
        .render(
            &record(18, serde_json::json!({"id": "a", "questoin": "x"})),
            EndpointKind::Chat,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("suites/data/items.jsonl:18: scorers[0].reference: undefined value"),
        "{err}"
    );
}

#[test]
fn template_syntax_error_names_field_and_template_line() {
    let text = SUITE.replace(
        "reference: \"{{ answer }}\"",
        "reference: \"first line\\n{{ answer \"",
    );
    let err = Renderer::new(&suite(&text)).unwrap_err();
    match &err {
        SuiteError::Template { field, line, .. } => {
            assert_eq!(field, "scorers[0].reference");
            assert_eq!(*line, Some(2));
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.starts_with("suites/r.yaml: scorers[0].reference: template syntax error on template line 2: syntax error"), "{msg}");

    let text = SUITE.replace("user: \"{{ question }}\"", "user: \"{% if x %}\"");
    let msg = Renderer::new(&suite(&text)).unwrap_err().to_string();
    assert!(
        msg.starts_with("suites/r.yaml: prompt.user: template syntax error"),
        "{msg}"
    );
}

#[test]
fn explicit_messages_keep_their_order_and_roles() {
    let text = r#"
name: m
dataset: { path: d.jsonl }
prompt:
  messages:
    - { role: system, content: "S" }
    - { role: user, content: "{{ a }}" }
    - { role: assistant, content: "{{ b }}" }
    - { role: user, content: "{{ c }}" }
targets: [{ name: t, base_url: "http://h/v1", model: m }]
scorers: [{ name: j, kind: json_schema }]
"#;
    let r = Renderer::new(&suite(text)).unwrap();
    let item = r
        .render(
            &record(1, serde_json::json!({"a": "A", "b": "", "c": 3})),
            EndpointKind::Chat,
        )
        .unwrap();
    let roles: Vec<(String, String)> = match item.prompt {
        Prompt::Chat(m) => m.into_iter().map(|m| (m.role, m.content)).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        roles,
        vec![
            ("system".into(), "S".into()),
            ("user".into(), "A".into()),
            ("user".into(), "3".into())
        ]
    );
    assert!(item.references.is_empty());
    // No completion template: asking for a completion item is an error, not a panic.
    let err = r
        .render(
            &record(1, serde_json::json!({"a": "A", "b": "", "c": 3})),
            EndpointKind::Completions,
        )
        .unwrap_err();
    assert_eq!(err.field, "prompt.completion");
}
