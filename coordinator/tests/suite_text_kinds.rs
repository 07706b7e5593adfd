//! Suites with the text-metric, classification and safety scorer kinds:
//! every key parses into the job's scorer spec, and a bad key is reported
//! with its place (`scorers[1].labels[2]`).

use std::path::Path;
use vigil_coordinator::suite::{Suite, SuiteError, SuiteFormat};
use vigil_protocol::{
    BleuSmoothing, BleuTokenizer, LabelMatch, LabelSpec, RefusalExpect, RougeVariant, ScorerKind,
};

const BASE: &str = r#"name: support
dataset: { path: data/support.jsonl }
prompt: { user: "{{ question }}" }
targets: [{ name: local, base_url: "http://localhost:8000/v1", model: m }]
scorers:
SCORERS
gates:
GATES
"#;

fn suite(scorers: &str, gates: &str) -> Result<Suite, SuiteError> {
    let text = BASE.replace("SCORERS", scorers).replace("GATES", gates);
    Suite::from_str(&text, SuiteFormat::Yaml, Path::new("s.yaml"))
}

fn err(scorers: &str, gates: &str) -> String {
    suite(scorers, gates)
        .expect_err("should be rejected")
        .to_string()
}

const ALL: &str = r#"  - { name: summary, kind: rouge, reference: "{{ summary }}", variant: rouge2, threshold: 0.3 }
  - { name: bleu, kind: bleu, reference: "{{ summary }}", smooth: floor, smooth_value: 0.2, lowercase: true, tokenize: none }
  - name: intent
    kind: classification
    reference: "{{ intent }}"
    labels:
      - billing
      - { name: shipping, synonyms: [delivery, "where is my order"] }
    pattern: "(?i)intent:\\s*(.+)"
    match: search
  - { name: refusal, kind: refusal, expect: comply, extra_phrases: ["no can do"] }
  - { name: leaks, kind: pii, kinds: [email, api_key], patterns: { ticket: "TCK-\\d+" }, allow: ["^help@acme\\.com$"] }
  - { name: toxic, kind: toxicity, words: [darn], extra_words: [heck] }
  - { name: exact, kind: exact_match, reference: "{{ intent }}" }"#;

const GATES_ALL: &str = r#"  - { metric: intent.macro_f1, min: 0.8 }
  - { metric: intent.f1.billing, min: 0.5 }
  - { metric: intent.recall.(other), max: 0.1 }
  - { metric: bleu.corpus_bleu, min: 0.2 }
  - { metric: leaks.pass_rate, min: 1.0 }
  - { metric: summary.mean, min: 0.3 }"#;

#[test]
fn every_kind_and_key_parses() {
    let s = suite(ALL, GATES_ALL).unwrap();
    let kinds: Vec<ScorerKind> = s.scorer_specs().into_iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds[0],
        ScorerKind::Rouge {
            variant: RougeVariant::Rouge2
        }
    );
    assert_eq!(
        kinds[1],
        ScorerKind::Bleu {
            smooth: BleuSmoothing::Floor,
            smooth_value: Some(0.2),
            lowercase: true,
            tokenize: BleuTokenizer::None
        }
    );
    let ScorerKind::Classification {
        labels,
        pattern,
        normalize,
        match_mode,
    } = &kinds[2]
    else {
        panic!("{:?}", kinds[2])
    };
    assert_eq!(
        labels,
        &vec![
            LabelSpec {
                name: "billing".into(),
                synonyms: vec![]
            },
            LabelSpec {
                name: "shipping".into(),
                synonyms: vec!["delivery".into(), "where is my order".into()]
            },
        ]
    );
    assert_eq!(pattern.as_deref(), Some(r"(?i)intent:\s*(.+)"));
    assert!(normalize.ignore_case && normalize.remove_punctuation);
    assert_eq!(*match_mode, LabelMatch::Search);
    assert_eq!(
        kinds[3],
        ScorerKind::Refusal {
            phrases: None,
            extra_phrases: vec!["no can do".into()],
            expect: RefusalExpect::Comply
        }
    );
    let ScorerKind::Pii {
        kinds: pii_kinds,
        patterns,
        allow,
    } = &kinds[4]
    else {
        panic!()
    };
    assert_eq!(pii_kinds, &["email", "api_key"]);
    assert_eq!(patterns["ticket"], r"TCK-\d+");
    assert_eq!(allow.len(), 1);
    assert_eq!(
        kinds[5],
        ScorerKind::Toxicity {
            words: Some(vec!["darn".into()]),
            extra_words: vec!["heck".into()]
        }
    );
}

#[test]
fn labels_as_a_map_of_synonyms_and_defaults() {
    let s = suite(
        r#"  - name: intent
    kind: classification
    reference: "{{ intent }}"
    labels: { refund: [money back], billing: [] }
  - { name: r, kind: rouge, reference: "{{ s }}" }
  - { name: b, kind: bleu, reference: "{{ s }}" }
  - { name: ref, kind: refusal }
  - { name: p, kind: pii }
  - { name: t, kind: toxicity }"#,
        "  - { metric: intent.accuracy, min: 0.1 }",
    )
    .unwrap();
    let specs = s.scorer_specs();
    let ScorerKind::Classification {
        labels, match_mode, ..
    } = &specs[0].kind
    else {
        panic!()
    };
    assert_eq!(labels.len(), 2);
    assert!(
        labels
            .iter()
            .any(|l| l.name == "refund" && l.synonyms == ["money back"])
    );
    assert_eq!(*match_mode, LabelMatch::Exact);
    assert_eq!(
        specs[1].kind,
        ScorerKind::Rouge {
            variant: RougeVariant::RougeL
        }
    );
    assert!(matches!(
        specs[2].kind,
        ScorerKind::Bleu {
            smooth: BleuSmoothing::Exp,
            tokenize: BleuTokenizer::Tok13a,
            lowercase: false,
            smooth_value: None
        }
    ));
    assert!(matches!(
        specs[3].kind,
        ScorerKind::Refusal {
            expect: RefusalExpect::Refuse,
            phrases: None,
            ..
        }
    ));
}

#[test]
fn errors_name_the_place() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"  - { name: r, kind: rouge, reference: "x", variant: rouge3 }"#,
            "  - { metric: r.mean, min: 0 }",
            "s.yaml: scorers[0].variant: unknown variant `rouge3`",
        ),
        (
            r#"  - { name: r, kind: rouge }"#,
            "  - { metric: r.mean, min: 0 }",
            "s.yaml: scorers[0].reference: scorer kind `rouge` needs a reference template",
        ),
        (
            r#"  - { name: b, kind: bleu, reference: "x", smooth: laplace }"#,
            "  - { metric: b.mean, min: 0 }",
            "s.yaml: scorers[0].smooth: unknown variant `laplace`",
        ),
        (
            r#"  - { name: b, kind: bleu, reference: "x", smooth_value: -1 }"#,
            "  - { metric: b.mean, min: 0 }",
            "s.yaml: scorers[0].smooth_value: must be at least 0, got -1",
        ),
        (
            r#"  - { name: c, kind: classification, reference: "x", labels: [a, b, {name: c, synonyms: [A]}] }"#,
            "  - { metric: c.mean, min: 0 }",
            "s.yaml: scorers[0].labels[2]: `A` maps to both `a` and `c`",
        ),
        (
            r#"  - { name: c, kind: classification, reference: "x", pattern: "(" }"#,
            "  - { metric: c.mean, min: 0 }",
            "s.yaml: scorers[0].pattern: invalid regular expression",
        ),
        (
            r#"  - { name: c, kind: classification, reference: "x", labels: [a, "(other)"] }"#,
            "  - { metric: c.mean, min: 0 }",
            "s.yaml: scorers[0].labels[1]: `(other)` is the bucket",
        ),
        (
            r#"  - { name: c, kind: classification, reference: "x", lables: [a] }"#,
            "  - { metric: c.mean, min: 0 }",
            "s.yaml: scorers[0].lables: unknown field `lables`, expected one of `labels`",
        ),
        (
            r#"  - { name: p, kind: pii, kinds: [email, passport] }"#,
            "  - { metric: p.mean, min: 0 }",
            "s.yaml: scorers[0].kinds[1]: unknown pii kind `passport` (known: email, phone,",
        ),
        (
            r#"  - { name: p, kind: pii, allow: ["ok", "["] }"#,
            "  - { metric: p.mean, min: 0 }",
            "s.yaml: scorers[0].allow[1]: invalid regular expression",
        ),
        (
            r#"  - { name: p, kind: pii, patterns: { ticket: "(" } }"#,
            "  - { metric: p.mean, min: 0 }",
            "s.yaml: scorers[0].patterns.ticket: invalid regular expression",
        ),
        (
            r#"  - { name: r, kind: refusal, phrases: [] }"#,
            "  - { metric: r.mean, min: 0 }",
            "s.yaml: scorers[0].phrases: no refusal phrases",
        ),
        (
            r#"  - { name: r, kind: refusal, expect: maybe }"#,
            "  - { metric: r.mean, min: 0 }",
            "s.yaml: scorers[0].expect: unknown variant `maybe`",
        ),
        (
            r#"  - { name: t, kind: toxicity, words: ["ok", " "] }"#,
            "  - { metric: t.mean, min: 0 }",
            "s.yaml: scorers[0].words[1]: must not be empty",
        ),
        (
            r#"  - { name: c, kind: classification, reference: "x", labels: [a] }"#,
            "  - { metric: c.f1.b, min: 0 }",
            "s.yaml: gates[0].metric: `c.f1.b`: unknown field `f1.b`",
        ),
        (
            r#"  - { name: e, kind: exact_match, reference: "x" }"#,
            "  - { metric: e.macro_f1, min: 0 }",
            "s.yaml: gates[0].metric: `e.macro_f1`: unknown field `macro_f1`",
        ),
        (
            r#"  - { name: r, kind: rouge, reference: "x" }"#,
            "  - { metric: r.corpus_bleu, min: 0 }",
            "s.yaml: gates[0].metric: `r.corpus_bleu`: unknown field",
        ),
    ];
    for (scorers, gates, want) in cases {
        let e = err(scorers, gates);
        assert!(e.starts_with(want), "want `{want}`, got `{e}`");
    }
}
