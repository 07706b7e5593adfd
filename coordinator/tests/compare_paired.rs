//! Unit checks of the paired tests against values computed by hand.

use vigil_coordinator::compare::holm::holm_adjust;
use vigil_coordinator::compare::mcnemar::{agresti_min_interval, exact_p_value};
use vigil_coordinator::compare::{CompareOptions, compare};
use vigil_coordinator::scores_store::{NO_TAG, RunScores, ScorerScores, TagColumn};

#[test]
fn mcnemar_matches_the_binomial_by_hand() {
    // b=1, c=9: P(X<=1 | n=10, 1/2) = 11/1024; two-sided 22/1024.
    assert!((exact_p_value(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
    assert_eq!(exact_p_value(5, 5), 1.0);
    // Symmetric in b and c.
    assert_eq!(exact_p_value(3, 12), exact_p_value(12, 3));
    // Large counts stay finite and tiny.
    let p = exact_p_value(1000, 1300);
    assert!(p > 0.0 && p < 1e-8, "{p}");
}

#[test]
fn agresti_min_contains_the_difference_and_shrinks_with_n() {
    let (lo, hi) = agresti_min_interval(20, 40, 500, 0.95);
    assert!(lo < 0.04 && 0.04 < hi);
    let (lo2, hi2) = agresti_min_interval(200, 400, 5000, 0.95);
    assert!(hi2 - lo2 < hi - lo);
}

#[test]
fn holm_is_monotone_and_never_below_the_raw_p() {
    let p = [0.001, 0.2, 0.01, 0.04, 0.03];
    let adj = holm_adjust(&p);
    for (a, r) in adj.iter().zip(p) {
        assert!(*a >= r && *a <= 1.0);
    }
    assert!((adj[0] - 0.005).abs() < 1e-12);
    assert!((adj[2] - 0.04).abs() < 1e-12);
}

fn run(values: &[f32], passed: &[bool], tag: &[u32]) -> RunScores {
    let mut bits = vec![0u64; passed.len().div_ceil(64)];
    for (i, &p) in passed.iter().enumerate() {
        if p {
            bits[i / 64] |= 1 << (i % 64);
        }
    }
    RunScores {
        run_id: "r".into(),
        items_total: values.len() as u64,
        scorers: vec![ScorerScores {
            name: "sim".into(),
            values: values.to_vec(),
            passed: bits,
        }],
        tags: vec![TagColumn {
            key: "lang".into(),
            values: vec!["en".into(), "fr".into()],
            codes: tag.to_vec(),
        }],
    }
}

#[test]
fn continuous_scorers_get_a_bootstrap_test_and_slices_their_own_family() {
    let n = 400;
    let tag: Vec<u32> = (0..n)
        .map(|i| if i == 0 { NO_TAG } else { (i % 2) as u32 })
        .collect();
    let base_v: Vec<f32> = (0..n).map(|i| 0.5 + 0.4 * ((i % 7) as f32 / 7.0)).collect();
    // The candidate loses 0.1 on French items only.
    let cand_v: Vec<f32> = base_v
        .iter()
        .enumerate()
        .map(|(i, v)| if tag[i] == 1 { v - 0.1 } else { *v })
        .collect();
    let pass = |v: &[f32]| v.iter().map(|x| *x >= 0.6).collect::<Vec<_>>();
    let c = compare(
        &run(&base_v, &pass(&base_v), &tag),
        &run(&cand_v, &pass(&cand_v), &tag),
        &CompareOptions::default(),
    );
    let find = |metric: &str, slice: Option<&str>| {
        c.tests
            .iter()
            .find(|t| t.metric == metric && t.slice.as_deref() == slice)
            .unwrap()
            .clone()
    };
    let all = find("mean", None);
    assert!((all.diff + 0.05).abs() < 1e-3, "{}", all.diff);
    assert!(all.significant && all.ci_low < -0.04 && all.ci_high > -0.06);
    let fr = find("mean", Some("lang=fr"));
    assert!((fr.diff + 0.1).abs() < 1e-5 && fr.significant);
    let en = find("mean", Some("lang=en"));
    assert_eq!(en.diff, 0.0);
    assert!(!en.significant);
    assert_eq!(
        en.n + fr.n,
        n as u64 - 1,
        "the untagged item is in no slice"
    );
}

#[test]
fn runs_of_different_sizes_are_not_paired() {
    let a = run(&[1.0; 10], &[true; 10], &[0; 10]);
    let b = run(&[1.0; 12], &[true; 12], &[0; 12]);
    let c = compare(&a, &b, &CompareOptions::default());
    assert!(c.tests.is_empty());
    assert!(c.note.unwrap().contains("different item counts"));
}
