//! Good suites load, in YAML and TOML, with the documented defaults.

use std::path::{Path, PathBuf};
use vigil_coordinator::suite::{DatasetFormat, Suite, SuiteFormat};
use vigil_protocol::{EndpointKind, Normalization, ScorerKind};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn example_yaml_and_toml_are_the_same_suite() {
    let yaml = Suite::load(&examples().join("arithmetic.yaml")).unwrap();
    let toml = Suite::load(&examples().join("arithmetic.toml")).unwrap();
    assert_eq!(yaml.name, "arithmetic");
    assert_eq!(yaml.dataset.path, examples().join("data/arithmetic.jsonl"));
    assert_eq!(yaml.dataset.format, DatasetFormat::Jsonl);
    assert_eq!(yaml.dataset.tags, vec!["category".to_string()]);
    assert_eq!(yaml.targets[0].base_url, "http://127.0.0.1:8089/v1");
    assert_eq!(yaml.targets[0].model, "stub-arith");
    assert_eq!(yaml.gates[0].metric, "exact.pass_rate");
    assert_eq!(yaml.gates[0].min, Some(0.9));
    // Path and file hash differ by construction; everything else must match.
    assert_ne!(yaml.sha256, toml.sha256);
    let strip = |mut s: Suite| {
        s.path = PathBuf::new();
        s.sha256 = String::new();
        s
    };
    assert_eq!(strip(yaml), strip(toml));
}

#[test]
fn sha256_is_of_the_file_bytes() {
    let path = examples().join("arithmetic.yaml");
    let suite = Suite::load(&path).unwrap();
    use sha2::Digest;
    let want = hex::encode(sha2::Sha256::digest(std::fs::read(&path).unwrap()));
    assert_eq!(suite.sha256, want);
    assert_eq!(suite.sha256.len(), 64);
}

const MINIMAL: &str = r#"
name: mini
dataset: { path: items.csv }
prompt: { user: "{{ q }}" }
targets: [{ name: t1, base_url: "https://models.example/v1", model: m }]
scorers: [{ name: s, kind: contains, reference: "{{ a }}" }]
"#;

#[test]
fn defaults_are_filled_in() {
    let s = Suite::from_str(MINIMAL, SuiteFormat::Yaml, Path::new("/suites/mini.yml")).unwrap();
    assert_eq!(s.shard_size, None);
    assert_eq!(s.pool, "default");
    assert_eq!(s.keep_output_chars, 2000);
    assert_eq!(s.deadline_s, None);
    assert!(s.gates.is_empty());
    assert_eq!(s.dataset.path, Path::new("/suites/items.csv"));
    assert_eq!(s.dataset.format, DatasetFormat::Csv);
    assert_eq!(s.dataset.id_field, None);
    let t = &s.targets[0];
    assert_eq!(t.kind, EndpointKind::Chat);
    assert_eq!(
        (t.timeout_s, t.max_concurrency, t.max_retries),
        (60.0, 32, 3)
    );
    assert_eq!(t.spec().timeout_ms, 60_000);
    assert_eq!(
        s.scorers[0].kind,
        ScorerKind::Contains {
            normalize: Normalization::default()
        }
    );
}

#[test]
fn every_scorer_kind_and_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("schema.json"),
        r#"{"type": "object", "required": ["x"]}"#,
    )
    .unwrap();
    let text = r#"
name: kinds
dataset: { path: d.data, format: jsonl, id_field: key, tags: [lang, level] }
prompt:
  messages:
    - { role: system, content: "Be exact." }
    - { role: user, content: "{{ q }}" }
  completion: "Q: {{ q }}\nA:"
targets:
  - name: chat-1
    base_url: http://h:1/v1
    model: m
    api_key_env: VIGIL_TEST_KEY_UNSET_123
    params: { temperature: 0.2, top_p: 0.9, max_tokens: 8, seed: 3, stop: "\n" }
  - { name: comp_1, kind: completions, base_url: "http://h:2/v1", model: m2, params: { stop: ["Q:", "\n\n"] } }
scorers:
  - { name: em, kind: exact_match, reference: "{{ a }}", normalize: { ignore_case: true, remove_articles: true } }
  - { name: re, kind: regex, pattern: "answer: (\\d+)", threshold: 0.5 }
  - { name: num, kind: numeric, reference: "{{ a }}", tolerance: 0.01, relative_tolerance: 0.1 }
  - { name: ch, kind: choice, reference: "{{ letter }}", choices: ABCDE }
  - { name: js, kind: json_schema, schema: { type: object, properties: { x: { type: integer } } } }
  - { name: js2, kind: json_schema, schema_path: schema.json }
  - { name: js3, kind: json_schema }
gates:
  - { metric: em.mean, min: 0.5, max: 1 }
  - { metric: latency_ms.p95, max: 2000 }
  - { metric: error_rate, max: 0.01 }
shard_size: 10000
pool: gpu-a
deadline_s: 3600
keep_output_chars: 0
"#;
    let s = Suite::from_str(text, SuiteFormat::Yaml, &dir.path().join("k.yaml")).unwrap();
    assert_eq!(s.shard_size, Some(10000));
    assert_eq!(s.pool, "gpu-a");
    assert_eq!(s.keep_output_chars, 0);
    assert_eq!(s.dataset.format, DatasetFormat::Jsonl);
    assert_eq!(s.prompt.messages.as_ref().unwrap().len(), 2);
    let chat = s.target("chat-1").unwrap();
    assert_eq!(chat.params.stop, vec!["\n".to_string()]);
    assert_eq!(chat.params.temperature, Some(0.2));
    assert_eq!(chat.api_key(), None);
    let comp = s.target("comp_1").unwrap();
    assert_eq!(comp.kind, EndpointKind::Completions);
    assert_eq!(comp.params.stop, vec!["Q:".to_string(), "\n\n".to_string()]);
    assert!(s.target("nope").is_none());

    let specs = s.scorer_specs();
    assert_eq!(specs.len(), 7);
    match &specs[0].kind {
        ScorerKind::ExactMatch { normalize } => {
            assert!(normalize.ignore_case && normalize.remove_articles && normalize.trim)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        specs[1].kind,
        ScorerKind::Regex {
            pattern: "answer: (\\d+)".into()
        }
    );
    assert_eq!(specs[1].threshold, Some(0.5));
    assert_eq!(
        specs[2].kind,
        ScorerKind::Numeric {
            tolerance: 0.01,
            relative_tolerance: 0.1
        }
    );
    assert_eq!(
        specs[3].kind,
        ScorerKind::Choice {
            choices: "ABCDE".into()
        }
    );
    let schema = |i: usize| match &specs[i].kind {
        ScorerKind::JsonSchema { schema } => schema.clone(),
        other => panic!("{other:?}"),
    };
    let inline: serde_json::Value = serde_json::from_str(&schema(4).unwrap()).unwrap();
    assert_eq!(inline["properties"]["x"]["type"], "integer");
    let file: serde_json::Value = serde_json::from_str(&schema(5).unwrap()).unwrap();
    assert_eq!(file["required"][0], "x");
    assert_eq!(schema(6), None);
}

#[test]
fn api_key_is_read_from_the_named_variable() {
    // PATH is set in any test environment (and setting a variable needs
    // `unsafe` in edition 2024, which the workspace forbids).
    let path_value = std::env::var("PATH").unwrap();
    let text = MINIMAL.replace("model: m }", "model: m, api_key_env: PATH }");
    let s = Suite::from_str(&text, SuiteFormat::Yaml, Path::new("x.yaml")).unwrap();
    assert_eq!(s.targets[0].api_key_env.as_deref(), Some("PATH"));
    assert_eq!(s.targets[0].api_key(), Some(path_value.clone()));
    // The wire form carries neither the variable's name nor its value.
    let wire = serde_json::to_string(&s.targets[0].spec()).unwrap();
    assert!(!wire.contains("PATH") && !wire.contains(&path_value));
}
