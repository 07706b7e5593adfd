//! Broken suites give errors that name the file and the place.

use std::path::Path;
use vigil_coordinator::suite::{Suite, SuiteError, SuiteFormat};

const GOOD: &str = r#"name: arith
dataset:
  path: data/arith.jsonl
prompt:
  system: "Answer with the number only."
  user: "{{ question }}"
targets:
  - name: local
    kind: chat
    base_url: http://localhost:8000/v1
    model: m
scorers:
  - name: exact
    kind: exact_match
    reference: "{{ answer }}"
  - name: num
    kind: numeric
    reference: "{{ answer }}"
gates:
  - metric: exact.pass_rate
    min: 0.9
"#;

fn yaml(text: &str) -> Result<Suite, SuiteError> {
    Suite::from_str(text, SuiteFormat::Yaml, Path::new("examples/arith.yaml"))
}

fn yaml_err(text: &str) -> String {
    yaml(text)
        .expect_err("the suite should be rejected")
        .to_string()
}

#[test]
fn the_base_suite_is_good() {
    yaml(GOOD).unwrap();
}

#[test]
fn bad_enum_value_names_the_field_and_line() {
    let e = yaml_err(&GOOD.replace("kind: chat", "kind: chatt"));
    assert!(
        e.starts_with("examples/arith.yaml: targets[0].kind: unknown variant `chatt`, expected one of `chat`, `completions`, `local`"),
        "{e}"
    );
    assert!(e.contains("line 9"), "{e}");
}

#[test]
fn wrong_type_names_the_field() {
    let e = yaml_err(&GOOD.replace("min: 0.9", "min: lots"));
    assert!(
        e.starts_with("examples/arith.yaml: gates[0].min: invalid type"),
        "{e}"
    );
}

#[test]
fn unknown_key_is_an_error() {
    let e = yaml_err(&GOOD.replace("    model: m\n", "    model: m\n    temprature: 0\n"));
    assert!(e.starts_with("examples/arith.yaml: targets[0]"), "{e}");
    assert!(e.contains("unknown field `temprature`"), "{e}");
    let e = yaml_err(&format!("{GOOD}shard_szie: 3\n"));
    assert!(e.contains("unknown field `shard_szie`"), "{e}");
    let e = yaml_err(&GOOD.replace(
        "  path: data/arith.jsonl",
        "  path: data/arith.jsonl\n  id: x",
    ));
    assert!(
        e.starts_with("examples/arith.yaml: dataset.id: unknown field `id`, expected one of"),
        "{e}"
    );
}

#[test]
fn unknown_scorer_key_names_the_scorer() {
    let e = yaml_err(&GOOD.replace("kind: numeric\n", "kind: numeric\n    tolerence: 0.1\n"));
    assert!(e.starts_with("examples/arith.yaml: scorers[1]"), "{e}");
    assert!(e.contains("unknown field `tolerence`"), "{e}");
    let e = yaml_err(&GOOD.replace(
        "kind: exact_match\n",
        "kind: exact_match\n    normalize: { ignorecase: true }\n",
    ));
    assert!(
        e.starts_with("examples/arith.yaml: scorers[0].normalize"),
        "{e}"
    );
    assert!(e.contains("unknown field `ignorecase`"), "{e}");
}

#[test]
fn unknown_scorer_kind_lists_the_known_ones() {
    let e = yaml_err(&GOOD.replace("kind: numeric", "kind: foo"));
    assert_eq!(
        e,
        format!(
            "examples/arith.yaml: scorers[1].kind: unknown scorer kind `foo` (known: {}, {}, json_valid)",
            vigil_coordinator::suite::SCORER_KINDS.join(", "),
            vigil_coordinator::suite::TEXT_KINDS.join(", ")
        )
    );
    assert!(e.contains("exact_match, contains, regex, numeric, choice, json_schema"));
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let e = yaml(&GOOD.replace("  user: \"{{ question }}\"", "  user: \"{{ question }}\n"))
        .unwrap_err();
    match &e {
        SuiteError::Syntax { line, column, .. } => assert!(*line >= 6 && *column >= 1, "{e}"),
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(e.to_string().starts_with("examples/arith.yaml:"), "{e}");
}

#[test]
fn toml_errors_name_the_place() {
    let toml = |t: &str| {
        Suite::from_str(t, SuiteFormat::Toml, Path::new("s.toml"))
            .unwrap_err()
            .to_string()
    };
    let e = toml("name = \"x\"\n[dataset\npath = 1\n");
    assert!(e.starts_with("s.toml:2:"), "{e}");
    let e = toml(
        "name = \"x\"\n[dataset]\npath = \"d.jsonl\"\n[prompt]\nuser = \"u\"\n[[targets]]\nname = \"t\"\nkind = \"chatt\"\nbase_url = \"http://h/v1\"\nmodel = \"m\"\n[[scorers]]\nname = \"s\"\nkind = \"json_schema\"\n",
    );
    assert!(
        e.starts_with("s.toml: targets[0].kind: unknown variant `chatt`"),
        "{e}"
    );
    assert!(e.contains("(line 8,"), "{e}");
}

#[test]
fn bad_names_are_rejected_naming_the_field() {
    let e = yaml_err(&GOOD.replace("name: arith", "name: arith.v2"));
    assert!(
        e.starts_with("examples/arith.yaml: name: suite name `arith.v2` contains `.`"),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace("name: local", "name: \"llama 3\""));
    assert!(
        e.starts_with("examples/arith.yaml: targets[0].name:"),
        "{e}"
    );
    assert!(e.contains("whitespace"), "{e}");
    let e = yaml_err(&GOOD.replace("name: num", "name: \"num>\""));
    assert!(
        e.starts_with("examples/arith.yaml: scorers[1].name:"),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace("name: num", "name: \"\""));
    assert!(
        e.contains("scorers[1].name: scorer name must not be empty"),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace("name: num", "name: exact"));
    assert!(
        e.contains("scorers[1].name: duplicate scorer name `exact` (also scorers[0])"),
        "{e}"
    );
    let e = yaml_err(&format!("{GOOD}pool: \"gpu*\"\n"));
    assert!(e.contains(": pool: "), "{e}");
}

#[test]
fn targets_and_scorers_must_exist() {
    let no_targets = GOOD.replace(
        "  - name: local\n    kind: chat\n    base_url: http://localhost:8000/v1\n    model: m\n",
        "",
    )
    .replace("targets:\n", "targets: []\n");
    let e = yaml_err(&no_targets);
    assert!(
        e.contains(": targets: a suite needs at least one target"),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace(
        "scorers:\n  - name: exact",
        "scorers: []\nx:\n  - name: exact",
    ));
    assert!(
        e.contains("unknown field `x`") || e.contains("scorers"),
        "{e}"
    );
}

#[test]
fn base_url_must_be_http() {
    let e = yaml_err(&GOOD.replace("http://localhost:8000/v1", "localhost:8000/v1"));
    assert!(
        e.starts_with("examples/arith.yaml: targets[0].base_url:"),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace("http://localhost:8000/v1", "ftp://host/v1"));
    assert!(
        e.contains("targets[0].base_url") && e.contains("http(s)"),
        "{e}"
    );
}

#[test]
fn prompt_must_fit_the_target_kind() {
    let e = yaml_err(&GOOD.replace("kind: chat", "kind: completions"));
    assert!(
        e.starts_with("examples/arith.yaml: prompt.completion: target `local`"),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace(
        "  system: \"Answer with the number only.\"\n  user: \"{{ question }}\"\n",
        "  completion: \"Q\"\n",
    ));
    assert!(e.starts_with("examples/arith.yaml: prompt.user:"), "{e}");
    let e = yaml_err(&GOOD.replace(
        "  user: \"{{ question }}\"\n",
        "  user: x\n  messages: [{role: user, content: x}]\n",
    ));
    assert!(e.contains("prompt.messages"), "{e}");
    let e = yaml_err(&GOOD.replace(
        "  system: \"Answer with the number only.\"\n  user: \"{{ question }}\"\n",
        "  messages: [{role: robot, content: x}]\n",
    ));
    assert!(
        e.contains("prompt.messages[0].role: unknown role `robot`"),
        "{e}"
    );
}

#[test]
fn gates_must_name_a_metric_and_a_bound() {
    let e = yaml_err(&GOOD.replace("metric: exact.pass_rate", "metric: exakt.pass_rate"));
    assert!(
        e.starts_with(
            "examples/arith.yaml: gates[0].metric: `exakt.pass_rate` names no scorer `exakt`"
        ),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace("metric: exact.pass_rate", "metric: exact.accuracy"));
    assert!(
        e.contains("gates[0].metric") && e.contains("unknown field `accuracy`"),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace("metric: exact.pass_rate", "metric: throughput"));
    assert!(
        e.contains("gates[0].metric: unknown metric `throughput`"),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace("    min: 0.9\n", ""));
    assert!(
        e.contains("gates[0]: a gate needs `min`, `max` or `max_regression`"),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace("    min: 0.9\n", "    min: 0.9\n    max: 0.5\n"));
    assert!(e.contains("gates[0].min"), "{e}");
    let e = yaml_err(&GOOD.replace("    min: 0.9\n", "    min: 0.9\n    mni: 1\n"));
    assert!(
        e.contains("gates[0]") && e.contains("unknown field `mni`"),
        "{e}"
    );
}

#[test]
fn values_are_range_checked() {
    let e = yaml_err(&format!("{GOOD}shard_size: 0\n"));
    assert!(
        e.contains(": shard_size: must be between 1 and 10000, got 0"),
        "{e}"
    );
    let e = yaml_err(&format!("{GOOD}shard_size: 10001\n"));
    assert!(e.contains(": shard_size:"), "{e}");
    let e = yaml_err(&format!("{GOOD}shard_size: -1\n"));
    assert!(e.contains("shard_size"), "{e}");
    let e = yaml_err(&GOOD.replace("    model: m\n", "    model: m\n    timeout_s: 0\n"));
    assert!(e.contains("targets[0].timeout_s"), "{e}");
    let e = yaml_err(&GOOD.replace("    model: m\n", "    model: m\n    params: { top_p: 2 }\n"));
    assert!(e.contains("targets[0].params.top_p"), "{e}");
    let e = yaml_err(&GOOD.replace("kind: numeric\n", "kind: numeric\n    tolerance: -1\n"));
    assert!(e.contains("scorers[1].tolerance"), "{e}");
}

#[test]
fn api_key_env_must_be_a_name_and_is_never_echoed() {
    let e = yaml_err(&GOOD.replace(
        "    model: m\n",
        "    model: m\n    api_key_env: sk-secret-value-123\n",
    ));
    assert!(e.contains("targets[0].api_key_env"), "{e}");
    assert!(!e.contains("sk-secret-value-123"), "{e}");
}

#[test]
fn scorer_parameters_are_checked() {
    let e = yaml_err(&GOOD.replace(
        "kind: numeric\n    reference: \"{{ answer }}\"\n",
        "kind: regex\n    pattern: \"(unclosed\"\n",
    ));
    assert!(
        e.contains("scorers[1].pattern: invalid regular expression"),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace(
        "kind: numeric\n    reference: \"{{ answer }}\"\n",
        "kind: regex\n",
    ));
    assert!(
        e.contains("scorers[1]") && e.contains("missing field `pattern`"),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace(
        "kind: numeric\n    reference: \"{{ answer }}\"\n",
        "kind: numeric\n",
    ));
    assert!(
        e.contains("scorers[1].reference: scorer kind `numeric` needs a reference"),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace(
        "kind: numeric\n    reference: \"{{ answer }}\"\n",
        "kind: json_schema\n    schema_path: nowhere.json\n",
    ));
    assert!(e.contains("scorers[1].schema_path: cannot read"), "{e}");
    let e = yaml_err(&GOOD.replace(
        "kind: numeric\n    reference: \"{{ answer }}\"\n",
        "kind: json_schema\n    schema: 3\n",
    ));
    assert!(e.contains("scorers[1].schema"), "{e}");
}

#[test]
fn dataset_format_must_be_known() {
    let e = yaml_err(&GOOD.replace("path: data/arith.jsonl", "path: data/arith.txt"));
    assert!(
        e.contains(": dataset.format: cannot tell the format"),
        "{e}"
    );
    let e = yaml_err(&GOOD.replace(
        "path: data/arith.jsonl",
        "path: data/arith.txt\n  format: parquet",
    ));
    assert!(
        e.contains("dataset.format") && e.contains("unknown variant `parquet`"),
        "{e}"
    );
}

#[test]
fn a_named_dataset_is_a_name_and_a_version() {
    let named = |keys: &str| GOOD.replace("path: data/arith.jsonl", keys);
    let s = yaml(&named("name: support-regressions")).unwrap();
    let n = s.dataset.named.as_ref().expect("named");
    assert_eq!(
        (n.name.as_str(), n.version.as_str()),
        ("support-regressions", "latest")
    );
    assert!(
        s.dataset.path.as_os_str().is_empty(),
        "no file until fetched"
    );
    let v = "a".repeat(64);
    let s = yaml(&named(&format!("name: arith\n  version: {v}"))).unwrap();
    assert_eq!(s.dataset.named.unwrap().version, v);

    let cases = [
        (
            named("name: a\n  path: x.jsonl"),
            "dataset: set either `path` (a file) or `name`",
        ),
        (
            named("id_field: id"),
            "dataset: missing `path` (a file) or `name`",
        ),
        (
            named("name: a b"),
            "dataset.name: dataset name `a b` may only contain",
        ),
        (
            named("name: a\n  version: v2"),
            "dataset.version: version `v2` is neither `latest` nor a SHA-256",
        ),
        (
            named("name: a\n  format: csv"),
            "dataset.format: a named dataset's format is stored with it",
        ),
        (
            GOOD.replace(
                "path: data/arith.jsonl",
                "path: data/arith.jsonl\n  version: latest",
            ),
            "dataset.version: only a named dataset has versions",
        ),
    ];
    for (text, needle) in cases {
        let e = yaml_err(&text);
        assert!(
            e.starts_with("examples/arith.yaml: ") && e.contains(needle),
            "{needle}: {e}"
        );
    }
}

#[test]
fn missing_and_unknown_files_name_the_file() {
    let e = Suite::load(Path::new("/nonexistent/dir/suite.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/dir/suite.yaml: cannot read suite:"),
        "{e}"
    );
    let e = Suite::load(Path::new("/nonexistent/dir/suite.json"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/dir/suite.json: unknown suite format"),
        "{e}"
    );
}
