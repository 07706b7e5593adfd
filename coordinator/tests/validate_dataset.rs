//! Full dataset checks: every item renders, ids are unique, the hash is right.

use std::path::{Path, PathBuf};
use vigil_coordinator::render::Renderer;
use vigil_coordinator::suite::{Suite, SuiteFormat};
use vigil_coordinator::validate::{self, ValidationError};
use vigil_protocol::EndpointKind;

const SUITE: &str = r#"
name: v
dataset: { path: d.jsonl, id_field: id }
prompt: { user: "{{ q }}", completion: "{{ q }}" }
targets: [{ name: t, base_url: "http://h/v1", model: m }]
scorers: [{ name: e, kind: exact_match, reference: "{{ a }}" }]
"#;

fn setup(data: &str, suite_text: &str) -> (tempfile::TempDir, Suite) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.jsonl"), data).unwrap();
    let suite = Suite::from_str(suite_text, SuiteFormat::Yaml, &dir.path().join("s.yaml")).unwrap();
    (dir, suite)
}

fn check(suite: &Suite, kinds: &[EndpointKind]) -> Result<validate::DatasetCheck, ValidationError> {
    let r = Renderer::new(suite).unwrap();
    validate::check_dataset(suite, &r, kinds)
}

#[test]
fn good_dataset_counts_items_and_hashes_the_file() {
    let data = "{\"id\": \"a\", \"q\": 1, \"a\": 1}\n\n{\"id\": \"b\", \"q\": 2, \"a\": 2}\n";
    let (dir, suite) = setup(data, SUITE);
    let c = check(
        &suite,
        &[
            EndpointKind::Chat,
            EndpointKind::Completions,
            EndpointKind::Chat,
        ],
    )
    .unwrap();
    assert_eq!(c.items, 2);
    use sha2::Digest;
    assert_eq!(
        c.sha256,
        hex::encode(sha2::Sha256::digest(
            std::fs::read(dir.path().join("d.jsonl")).unwrap()
        ))
    );
}

#[test]
fn duplicate_ids_name_both_lines() {
    let data = "{\"id\": \"a\", \"q\": 1, \"a\": 1}\n{\"id\": \"b\", \"q\": 1, \"a\": 1}\n\n{\"id\": \"a\", \"q\": 1, \"a\": 1}\n";
    let (dir, suite) = setup(data, SUITE);
    let err = check(&suite, &[EndpointKind::Chat]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:4: duplicate item id `a` (first seen on line 1)",
            dir.path().join("d.jsonl").display()
        )
    );
    // Numbers and strings that print alike are the same id on the wire.
    let (_dir, suite) = setup(
        "{\"id\": 7, \"q\": 1, \"a\": 1}\n{\"id\": \"7\", \"q\": 1, \"a\": 1}\n",
        SUITE,
    );
    assert!(matches!(
        check(&suite, &[EndpointKind::Chat]),
        Err(ValidationError::DuplicateId {
            first_line: 1,
            line: 2,
            ..
        })
    ));
}

#[test]
fn render_errors_of_any_kind_are_found() {
    // Item 2 lacks `a`: the reference fails for every kind.
    let data = "{\"id\": \"a\", \"q\": 1, \"a\": 1}\n{\"id\": \"b\", \"q\": 1}\n";
    let (_dir, suite) = setup(data, SUITE);
    let err = check(&suite, &[EndpointKind::Chat])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("d.jsonl:2: scorers[0].reference: undefined value"),
        "{err}"
    );
    // Only the completion template reads `c`: checking chat alone passes, completions fails.
    let text = SUITE.replace("completion: \"{{ q }}\"", "completion: \"{{ c }}\"");
    let (_dir, suite) = setup("{\"id\": \"a\", \"q\": 1, \"a\": 1}\n", &text);
    assert!(check(&suite, &[EndpointKind::Chat]).is_ok());
    let err = check(&suite, &[EndpointKind::Chat, EndpointKind::Completions])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("d.jsonl:1: prompt.completion: undefined value"),
        "{err}"
    );
}

#[test]
fn malformed_line_and_empty_dataset_are_errors() {
    let (_dir, suite) = setup("{\"id\": \"a\", \"q\": 1, \"a\": 1}\n{oops\n", SUITE);
    let err = check(&suite, &[EndpointKind::Chat])
        .unwrap_err()
        .to_string();
    assert!(err.contains("d.jsonl:2: invalid JSON"), "{err}");
    let (_dir, suite) = setup("\n\n", SUITE);
    let err = check(&suite, &[EndpointKind::Chat]).unwrap_err();
    assert!(matches!(err, ValidationError::Empty { .. }), "{err}");
    assert!(
        err.to_string()
            .ends_with("d.jsonl: the dataset has no items"),
        "{err}"
    );
}

#[test]
fn missing_dataset_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::from_str(SUITE, SuiteFormat::Yaml, &dir.path().join("s.yaml")).unwrap();
    let err = check(&suite, &[EndpointKind::Chat])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "{}: cannot open dataset",
            dir.path().join("d.jsonl").display()
        )),
        "{err}"
    );
}

#[test]
fn the_example_suite_validates() {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/arithmetic.yaml");
    let (suite, check) = validate::validate_file(&path).unwrap();
    assert_eq!(check.items, 200);
    // Every answer in the example is correct arithmetic.
    let renderer = Renderer::new(&suite).unwrap();
    let mut categories = std::collections::BTreeSet::new();
    for rec in vigil_coordinator::dataset::open(&suite.dataset).unwrap() {
        let rec = rec.unwrap();
        let item = renderer.render(&rec, EndpointKind::Chat).unwrap();
        let q = rec.fields["question"].as_str().unwrap();
        let expr = q.trim_start_matches("What is ").trim_end_matches('?');
        let parts: Vec<&str> = expr.split(' ').collect();
        let (a, b): (i64, i64) = (parts[0].parse().unwrap(), parts[2].parse().unwrap());
        let want = match parts[1] {
            "+" => a + b,
            "-" => a - b,
            "*" => a * b,
            op => panic!("unexpected operator {op}"),
        };
        assert_eq!(item.references["exact"], want.to_string(), "{q}");
        categories.insert(item.tags["category"].clone());
    }
    assert_eq!(categories.len(), 3);
}

#[test]
fn csv_dataset_validates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.csv"), "id,q,a\nx,1,1\ny,2,2\nx,3,3\n").unwrap();
    let text = SUITE.replace("d.jsonl", "d.csv");
    let suite = Suite::from_str(&text, SuiteFormat::Yaml, &dir.path().join("s.yaml")).unwrap();
    let err = check(&suite, &[EndpointKind::Chat])
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("d.csv:4: duplicate item id `x` (first seen on line 2)"),
        "{err}"
    );
}

/// The items a check keeps are exactly what a second read would render for
/// each target (a `recorded` one with its output field included); a dataset
/// file over [`validate::KEEP_DATASET_BYTES`] is not kept.
#[test]
fn kept_items_are_what_a_second_read_renders() {
    const TWO: &str = r#"
name: v
dataset: { path: d.jsonl, id_field: id }
prompt: { user: "{{ q }}" }
targets:
  - { name: t, base_url: "http://h/v1", model: m }
  - { name: prod, kind: recorded, output_field: out }
scorers: [{ name: e, kind: exact_match, reference: "{{ a }}" }]
"#;
    let data: String = (0..50)
        .map(|i| {
            format!(
                "{{\"id\": \"i{i}\", \"q\": \"{i} + 1\", \"a\": {}, \"out\": \"{}\"}}\n",
                i + 1,
                i % 3
            )
        })
        .collect();
    let (_dir, suite) = setup(&data, TWO);
    let renderer = Renderer::new(&suite).unwrap();
    let kinds: Vec<EndpointKind> = suite.targets.iter().map(|t| t.kind).collect();
    let c = validate::check_dataset(&suite, &renderer, &kinds).unwrap();
    let kept = c
        .rendered
        .as_ref()
        .expect("a small dataset's items are kept");
    for target in &suite.targets {
        let again: Vec<_> = vigil_coordinator::dataset::open(&suite.dataset)
            .unwrap()
            .map(|r| renderer.render_for(&r.unwrap(), target).unwrap())
            .collect();
        // Shared (another reference is alive): cloned, the same items.
        let shared: Vec<_> = validate::Rendered::into_items_for(kept.clone(), target)
            .unwrap()
            .collect();
        assert_eq!(shared.len(), 50);
        assert_eq!(shared, again, "target {} (shared)", target.name);
        // The last reference: moved out, the same items.
        let again_check = validate::check_dataset(&suite, &renderer, &kinds).unwrap();
        let last = again_check.rendered.unwrap();
        let moved: Vec<_> = validate::Rendered::into_items_for(last, target)
            .unwrap()
            .collect();
        assert_eq!(moved, again, "target {} (moved)", target.name);
    }

    let pad = "x".repeat(1000);
    let big: String = (0..(validate::KEEP_DATASET_BYTES / 1000 + 10))
        .map(|i| format!("{{\"id\": \"i{i}\", \"q\": \"{pad}\", \"a\": 1}}\n"))
        .collect();
    let (_dir, suite) = setup(&big, SUITE);
    let c = check(&suite, &[EndpointKind::Chat]).unwrap();
    assert!(c.rendered.is_none(), "a large dataset is read again");
}

/// `n` good lines (`q` and `a` set), some replaced: (line, text).
fn lines_with(n: usize, replace: &[(usize, &str)]) -> String {
    (1..=n)
        .map(|line| match replace.iter().find(|(at, _)| *at == line) {
            Some((_, text)) => format!("{text}\n"),
            None => format!("{{\"id\": \"i{line}\", \"q\": {line}, \"a\": 1}}\n"),
        })
        .collect()
}

#[test]
fn the_first_problem_in_file_order_wins_across_a_large_file() {
    // The file is read on one thread and rendered on another, in batches:
    // whichever side finds a problem, the earliest line's is reported.
    let no_q = "{\"id\": \"x\", \"a\": 1}";
    let (_dir, suite) = setup(&lines_with(2_000, &[(700, no_q), (1_500, "{oops")]), SUITE);
    let err = check(&suite, &[EndpointKind::Chat]).unwrap_err();
    assert!(matches!(err, ValidationError::Render(_)), "{err}");
    assert!(err.to_string().contains(":700"), "{err}");
    let (_dir, suite) = setup(&lines_with(2_000, &[(700, "{oops"), (1_500, no_q)]), SUITE);
    let err = check(&suite, &[EndpointKind::Chat]).unwrap_err();
    assert!(matches!(err, ValidationError::Dataset(_)), "{err}");
    assert!(err.to_string().contains(":700"), "{err}");
    let dup = "{\"id\": \"i3\", \"q\": 1, \"a\": 1}";
    let (_dir, suite) = setup(&lines_with(2_000, &[(1_900, dup)]), SUITE);
    assert!(matches!(
        check(&suite, &[EndpointKind::Chat]),
        Err(ValidationError::DuplicateId {
            first_line: 3,
            line: 1_900,
            ..
        })
    ));
    let (dir, suite) = setup(&lines_with(2_000, &[]), SUITE);
    let c = check(&suite, &[EndpointKind::Chat]).unwrap();
    assert_eq!(c.items, 2_000);
    use sha2::Digest;
    assert_eq!(
        c.sha256,
        hex::encode(sha2::Sha256::digest(
            std::fs::read(dir.path().join("d.jsonl")).unwrap()
        ))
    );
}
