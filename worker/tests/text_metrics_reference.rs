//! vigil's `rouge` and `bleu` scorers give the reference implementations'
//! numbers on fixed examples: Google's rouge-score 0.1.2
//! (`RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)`) and
//! sacrebleu 2.6.0 (`BLEU(effective_order=True, ...).sentence_score` for
//! each smoothing, lowercase and tokenizer setting, and `corpus_bleu` with
//! its defaults). The numbers are recorded in
//! `tests/fixtures/text_metrics_reference.json` by
//! `scripts/text-metrics-reference.sh`, which installs exactly those
//! versions and reruns them; this test needs no Python.

use serde_json::Value;
use vigil_protocol::{
    BleuSmoothing, BleuStats, BleuTokenizer, RougeVariant, ScorerKind, ScorerSpec,
};

fn fixture() -> Value {
    let text = include_str!("fixtures/text_metrics_reference.json");
    serde_json::from_str(text).expect("fixture is JSON")
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn fixture_names_the_implementations_and_versions() {
    let f = fixture();
    assert_eq!(f["implementations"]["rouge-score"], "0.1.2");
    assert_eq!(f["implementations"]["sacrebleu"], "2.6.0");
    assert!(f["cases"].as_array().unwrap().len() >= 20);
}

#[test]
fn rouge_matches_rouge_score_0_1_2() {
    let f = fixture();
    for case in f["cases"].as_array().unwrap() {
        let (reference, output) = (
            case["reference"].as_str().unwrap(),
            case["output"].as_str().unwrap(),
        );
        let ours = vigil_worker::scorers::rouge::scores(reference, output);
        for (i, variant) in ["rouge1", "rouge2", "rougeL"].iter().enumerate() {
            let want = &case["rouge"][variant];
            let got = [ours[i].precision, ours[i].recall, ours[i].fmeasure];
            for (k, g) in got.iter().enumerate() {
                let w = want[k].as_f64().unwrap();
                assert!(
                    close(*g, w, 1e-12),
                    "{variant} [{k}] of {reference:?} / {output:?}: ours {g}, rouge-score {w}"
                );
            }
        }
        // Through the scorer: the chosen variant's F is the value.
        for (variant, key) in [
            (RougeVariant::Rouge1, "rouge1"),
            (RougeVariant::Rouge2, "rouge2"),
            (RougeVariant::RougeL, "rougeL"),
        ] {
            let scorer = vigil_worker::scorers::build(&ScorerSpec {
                name: "r".into(),
                threshold: None,
                kind: ScorerKind::Rouge { variant },
            })
            .unwrap();
            let value = scorer.score(output, Some(reference)).value;
            let want = case["rouge"][key][2].as_f64().unwrap();
            assert!(
                close(value, want, 1e-12),
                "{key} value of {reference:?} / {output:?}: {value} vs {want}"
            );
        }
    }
}

fn bleu_kind(setting: &str) -> ScorerKind {
    let (mut smooth, mut smooth_value, mut lowercase, mut tokenize) =
        (BleuSmoothing::Exp, None, false, BleuTokenizer::Tok13a);
    match setting {
        "sentence_default" => {}
        "none" => smooth = BleuSmoothing::None,
        "floor" => smooth = BleuSmoothing::Floor,
        "floor_0.5" => {
            smooth = BleuSmoothing::Floor;
            smooth_value = Some(0.5);
        }
        "add_k" => smooth = BleuSmoothing::AddK,
        "lowercase" => lowercase = true,
        "tokenize_none" => tokenize = BleuTokenizer::None,
        other => panic!("unknown setting {other}"),
    }
    ScorerKind::Bleu {
        smooth,
        smooth_value,
        lowercase,
        tokenize,
    }
}

#[test]
fn sentence_bleu_matches_sacrebleu_2_6_0() {
    let f = fixture();
    let mut checked = 0;
    for case in f["cases"].as_array().unwrap() {
        let (reference, output) = (
            case["reference"].as_str().unwrap(),
            case["output"].as_str().unwrap(),
        );
        for (setting, want) in case["bleu"].as_object().unwrap() {
            let scorer = vigil_worker::scorers::build(&ScorerSpec {
                name: "b".into(),
                threshold: None,
                kind: bleu_kind(setting),
            })
            .unwrap();
            let score = scorer.score(output, Some(reference));
            let w = want["score"].as_f64().unwrap() / 100.0;
            assert!(
                close(score.value, w.min(1.0), 1e-9),
                "{setting} of {reference:?} / {output:?}: ours {}, sacrebleu {w}",
                score.value
            );
            let stats = score.bleu.expect("bleu carries its statistics");
            assert_eq!(
                stats.hyp_len,
                want["sys_len"].as_u64().unwrap(),
                "{setting} {output:?}"
            );
            assert_eq!(
                stats.ref_len,
                want["ref_len"].as_u64().unwrap(),
                "{setting} {reference:?}"
            );
            if setting != "add_k" {
                // add-k reports its smoothed counts.
                let counts: Vec<u64> = want["counts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect();
                let totals: Vec<u64> = want["totals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect();
                assert_eq!(
                    stats.correct, counts,
                    "{setting} {reference:?} / {output:?}"
                );
                assert_eq!(stats.total, totals, "{setting} {reference:?} / {output:?}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 150, "{checked}");
}

#[test]
fn corpus_bleu_matches_sacrebleu_2_6_0() {
    let f = fixture();
    let scorer = vigil_worker::scorers::build(&ScorerSpec {
        name: "b".into(),
        threshold: None,
        kind: bleu_kind("sentence_default"),
    })
    .unwrap();
    let mut sum = BleuStats::default();
    for case in f["cases"].as_array().unwrap() {
        let s = scorer.score(
            case["output"].as_str().unwrap(),
            Some(case["reference"].as_str().unwrap()),
        );
        sum.add(&s.bleu.unwrap());
    }
    let want = &f["corpus_bleu_default"];
    let got = sum.corpus();
    assert!(
        close(got.score * 100.0, want["score"].as_f64().unwrap(), 1e-9),
        "{} vs {}",
        got.score * 100.0,
        want["score"]
    );
    assert!(close(got.bp, want["bp"].as_f64().unwrap(), 1e-12));
    for (g, w) in got
        .precisions
        .iter()
        .zip(want["precisions"].as_array().unwrap())
    {
        assert!(close(g * 100.0, w.as_f64().unwrap(), 1e-9));
    }
    assert_eq!(got.hyp_len, want["sys_len"].as_u64().unwrap());
    assert_eq!(got.ref_len, want["ref_len"].as_u64().unwrap());
}
