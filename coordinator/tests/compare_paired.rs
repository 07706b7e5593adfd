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
        ..Default::default()
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

/// A 0/1 run whose items have these ids and verdicts.
fn run_with_ids(items: &[(&str, bool)]) -> RunScores {
    let v: Vec<f32> = items.iter().map(|&(_, p)| p as u8 as f32).collect();
    let p: Vec<bool> = items.iter().map(|&(_, p)| p).collect();
    let mut r = run(&v, &p, &vec![NO_TAG; items.len()]);
    for (i, (id, _)) in items.iter().enumerate() {
        r.ids.set(i as u64, id, r.items_total);
    }
    r
}

#[test]
fn a_reordered_run_pairs_by_id_and_a_real_flip_is_found_by_id() {
    let base: Vec<(String, bool)> = (0..40).map(|i| (format!("q{i}"), i % 3 != 0)).collect();

    let mut reversed = base.clone();
    reversed.reverse();
    let c = compare(
        &run_with_ids(&as_ref(&base)),
        &run_with_ids(&as_ref(&reversed)),
        &CompareOptions::default(),
    );
    let t = &c.tests[0];
    assert_eq!((c.paired_items, c.paired_by.as_str()), (40, "id"));
    assert_eq!((t.pass_to_fail, t.fail_to_pass, t.diff), (0, 0, 0.0));
    assert_eq!(
        c.note.as_deref(),
        Some("40 items paired by id (0 added, 0 removed)")
    );
    // q4 passed in the baseline and fails in the candidate, at another index.
    let q4 = reversed.iter().position(|(id, _)| id == "q4").unwrap();
    reversed[q4].1 = false;
    let c = compare(
        &run_with_ids(&as_ref(&base)),
        &run_with_ids(&as_ref(&reversed)),
        &CompareOptions::default(),
    );
    let t = &c.tests[0];
    assert_eq!((t.pass_to_fail, t.fail_to_pass), (1, 0));
    assert_eq!(
        t.flipped_to_fail,
        [format!("#{q4}")],
        "named by candidate index"
    );
}

#[test]
fn runs_with_ids_pair_their_common_items_and_count_the_rest() {
    let a = run_with_ids(&[("a", true), ("b", true), ("c", false)]);
    let b = run_with_ids(&[("d", true), ("c", true), ("a", true), ("e", false)]);
    let c = compare(&a, &b, &CompareOptions::default());
    assert_eq!((c.paired_items, c.items_added, c.items_removed), (2, 2, 1));
    assert_eq!(c.tests[0].n, 2);
    assert_eq!(c.tests[0].fail_to_pass, 1, "c went fail -> pass");
    // No common id: nothing is paired, and the note says why.
    let other = run_with_ids(&[("x", true), ("y", true), ("z", true)]);
    let c = compare(&a, &other, &CompareOptions::default());
    assert!(c.tests.is_empty());
    assert!(c.note.unwrap().contains("no item id of the candidate"));
}

fn as_ref(v: &[(String, bool)]) -> Vec<(&str, bool)> {
    v.iter().map(|(id, p)| (id.as_str(), *p)).collect()
}
