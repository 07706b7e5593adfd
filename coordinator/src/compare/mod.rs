//! Paired comparison of two runs over the same items.
//!
//! Items are paired by id when both runs stored ids, by index (position in
//! the dataset) only for runs stored without ids and of the same size
//! ([`pair_items`]). An item that failed on the model's side counts as a 0,
//! not passed, in its run (the aggregator stores it so); an item without a
//! score for another reason (a scorer error) is left out of that scorer's
//! pairs. For every scorer (and every slice of every tag) the candidate is
//! compared with the baseline on the pairs:
//! - pass rate: McNemar's exact test on the discordant pairs, with the
//!   Agresti–Min interval of the paired difference ([`mcnemar`]);
//! - mean, for scorers whose values are not all 0 or 1: the seeded paired
//!   bootstrap ([`bootstrap`]).
//!
//! Holm's correction ([`holm`]) runs over two families: the run-level tests
//! (what gates look at) and the per-slice tests, so adding slices never
//! costs the overall test its power. The items that flipped are listed.

pub mod bootstrap;
pub mod holm;
pub mod mcnemar;

use crate::scores_store::{RunScores, ScorerScores};
use std::collections::HashMap;
use vigil_protocol::{Comparison, MetricComparison};

/// How to compare.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// Family-wise significance level (default 0.05).
    pub alpha: f64,
    /// Bootstrap resamples (default 2000).
    pub resamples: u32,
    /// Bootstrap seed (default 20240611).
    pub seed: u64,
    /// Most flipped items listed per direction and test (default 20).
    pub max_flipped: usize,
    /// Also test each slice of each tag (default true).
    pub slices: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            alpha: 0.05,
            resamples: 2000,
            seed: 20_240_611,
            max_flipped: 20,
            slices: true,
        }
    }
}

/// Most per-slice tests kept in a comparison.
pub const MAX_SLICE_TESTS: usize = 256;

/// The confidence level of the intervals.
const CONFIDENCE: f64 = 0.95;

fn is_binary(s: &ScorerScores) -> bool {
    s.values
        .iter()
        .all(|v| v.is_nan() || *v == 0.0 || *v == 1.0)
}

/// How the items of two runs pair up.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pairing {
    /// (baseline index, candidate index) of each pair, in candidate order.
    pub pairs: Vec<(usize, usize)>,
    /// `id` or `index`.
    pub by: &'static str,
    /// Candidate items the baseline does not have.
    pub added: u64,
    /// Baseline items the candidate does not have.
    pub removed: u64,
}

impl Pairing {
    /// The note of a comparison that paired: how many, how, what was added
    /// and removed.
    pub fn describe(&self) -> String {
        format!(
            "{} items paired by {} ({} added, {} removed)",
            self.pairs.len(),
            self.by,
            self.added,
            self.removed
        )
    }
}

/// Pairs the items of two runs: by id when both stored ids (an item whose id
/// is unknown, or is in one run only, is added or removed), else by index
/// when both have the same number of items. An error says why the runs
/// cannot be paired (different sizes without ids, no common id).
///
/// ```
/// use vigil_coordinator::compare::pair_items;
/// use vigil_coordinator::scores_store::RunScores;
/// let run = |ids: &[&str]| { let mut r = RunScores { items_total: ids.len() as u64, ..Default::default() };
///     for (i, id) in ids.iter().enumerate() { r.ids.set(i as u64, id, r.items_total) } r };
/// let p = pair_items(&run(&["a", "b", "c"]), &run(&["c", "a", "d"])).unwrap();
/// assert_eq!((p.pairs, p.by, p.added, p.removed), (vec![(2, 0), (0, 1)], "id", 1, 1));
/// assert!(pair_items(&run(&["a"]), &run(&["b"])).is_err());
/// ```
pub fn pair_items(baseline: &RunScores, candidate: &RunScores) -> Result<Pairing, String> {
    let (nb, nc) = (
        baseline.items_total as usize,
        candidate.items_total as usize,
    );
    if baseline.ids.is_empty() || candidate.ids.is_empty() {
        if nb != nc {
            return Err(format!(
                "the runs have different item counts ({nb} vs {nc}) and {} stored without item ids: items cannot be paired",
                if baseline.ids.is_empty() {
                    "the baseline was"
                } else {
                    "the candidate was"
                }
            ));
        }
        return Ok(Pairing {
            pairs: (0..nc).map(|i| (i, i)).collect(),
            by: "index",
            ..Default::default()
        });
    }
    // Id → baseline index (the first, if a run repeats an id), and whether
    // it is taken, so no baseline item pairs twice.
    let mut by_id: HashMap<&str, (usize, bool)> = HashMap::with_capacity(nb);
    for i in 0..nb {
        if let Some(id) = baseline.ids.get(i as u64) {
            by_id.entry(id).or_insert((i, false));
        }
    }
    let mut pairing = Pairing {
        by: "id",
        ..Default::default()
    };
    for ci in 0..nc {
        match candidate
            .ids
            .get(ci as u64)
            .and_then(|id| by_id.get_mut(id))
        {
            Some((bi, taken)) if !*taken => {
                *taken = true;
                pairing.pairs.push((*bi, ci));
            }
            _ => pairing.added += 1,
        }
    }
    pairing.removed = (nb - pairing.pairs.len()) as u64;
    if pairing.pairs.is_empty() {
        return Err(format!(
            "no item id of the candidate ({nc} items) is in the baseline ({nb} items): items cannot be paired"
        ));
    }
    Ok(pairing)
}

/// Tests one scorer over `pairs` (baseline index, candidate index); pairs
/// where either run has no score from it are left out.
fn test_scorer(
    base: &ScorerScores,
    cand: &ScorerScores,
    pairs: &[(usize, usize)],
    slice: Option<String>,
    opts: &CompareOptions,
    out: &mut Vec<MetricComparison>,
) {
    let scored = |s: &ScorerScores, i: usize| s.values.get(i).is_some_and(|v| !v.is_nan());
    let pairs: Vec<(usize, usize)> = pairs
        .iter()
        .copied()
        .filter(|&(bi, ci)| scored(base, bi) && scored(cand, ci))
        .collect();
    let n = pairs.len() as u64;
    if n == 0 {
        return;
    }
    let (mut base_pass, mut cand_pass, mut b, mut c) = (0u64, 0u64, 0u64, 0u64);
    let (mut to_fail, mut to_pass) = (Vec::new(), Vec::new());
    for &(bi, i) in &pairs {
        let (bp, cp) = (base.passed(bi), cand.passed(i));
        base_pass += bp as u64;
        cand_pass += cp as u64;
        if bp && !cp {
            b += 1;
            if to_fail.len() < opts.max_flipped {
                to_fail.push(format!("#{i}"));
            }
        } else if !bp && cp {
            c += 1;
            if to_pass.len() < opts.max_flipped {
                to_pass.push(format!("#{i}"));
            }
        }
    }
    let (ci_low, ci_high) = mcnemar::agresti_min_interval(b, c, n, CONFIDENCE);
    let (baseline, candidate) = (base_pass as f64 / n as f64, cand_pass as f64 / n as f64);
    out.push(MetricComparison {
        scorer: base.name.clone(),
        metric: "pass_rate".into(),
        slice: slice.clone(),
        n,
        baseline,
        candidate,
        diff: candidate - baseline,
        ci_low,
        ci_high,
        p_value: mcnemar::exact_p_value(b, c),
        pass_to_fail: b,
        fail_to_pass: c,
        flipped_to_fail: to_fail,
        flipped_to_pass: to_pass,
        ..Default::default()
    });
    if is_binary(base) && is_binary(cand) {
        return; // the mean is the pass rate's twin: one test, not two
    }
    let diffs: Vec<f64> = pairs
        .iter()
        .map(|&(bi, ci)| cand.values[ci] as f64 - base.values[bi] as f64)
        .collect();
    let mean_of = |values: &[f32], side: fn(&(usize, usize)) -> usize| {
        pairs.iter().map(|p| values[side(p)] as f64).sum::<f64>() / n as f64
    };
    let r = bootstrap::paired_bootstrap(&diffs, opts.resamples, opts.seed, CONFIDENCE);
    out.push(MetricComparison {
        scorer: base.name.clone(),
        metric: "mean".into(),
        slice,
        n,
        baseline: mean_of(&base.values, |p| p.0),
        candidate: mean_of(&cand.values, |p| p.1),
        diff: r.diff,
        ci_low: r.ci_low,
        ci_high: r.ci_high,
        p_value: r.p_value,
        ..Default::default()
    });
}

fn adjust(tests: &mut [MetricComparison], alpha: f64) {
    let p: Vec<f64> = tests.iter().map(|t| t.p_value).collect();
    for (t, adj) in tests.iter_mut().zip(holm::holm_adjust(&p)) {
        t.p_adjusted = adj;
        t.significant = adj < alpha;
    }
}

/// Appends a sentence to a comparison's note.
pub fn add_note(comparison: &mut Comparison, note: impl Into<String>) {
    let note = note.into();
    comparison.note = Some(match comparison.note.take() {
        Some(before) => format!("{before}; {note}"),
        None => note,
    });
}

/// Compares `candidate` with `baseline` item by item ([`pair_items`]). The
/// returned comparison has no baseline id, source or manifest diffs: the
/// caller knows them. The note says how many items were paired, added and
/// removed, or why none could be (then there are no tests). Flipped items
/// are named `#index` by their index in the candidate.
///
/// ```
/// use vigil_coordinator::compare::{compare, CompareOptions};
/// use vigil_coordinator::scores_store::{RunScores, ScorerScores};
/// let run = |bits: &[bool]| RunScores { run_id: "r".into(), items_total: bits.len() as u64,
///     scorers: vec![ScorerScores { name: "exact".into(),
///         values: bits.iter().map(|&b| b as u8 as f32).collect(),
///         passed: { let mut w = vec![0u64; bits.len().div_ceil(64)];
///                   for (i, &b) in bits.iter().enumerate() { if b { w[i / 64] |= 1 << (i % 64) } } w } }],
///     ..Default::default() };
/// let a = run(&[true; 100]);
/// let mut bits = [true; 100];
/// for b in bits.iter_mut().take(30) { *b = false }
/// let c = compare(&a, &run(&bits), &CompareOptions::default());
/// let t = &c.tests[0];
/// assert_eq!((t.pass_to_fail, t.fail_to_pass), (30, 0));
/// assert!((t.diff + 0.3).abs() < 1e-12 && t.significant);
/// ```
pub fn compare(baseline: &RunScores, candidate: &RunScores, opts: &CompareOptions) -> Comparison {
    let mut comparison = Comparison {
        alpha: opts.alpha,
        resamples: opts.resamples,
        seed: opts.seed,
        ..Default::default()
    };
    let pairing = match pair_items(baseline, candidate) {
        Ok(pairing) => pairing,
        Err(why) => {
            comparison.note = Some(why);
            return comparison;
        }
    };
    comparison.paired_items = pairing.pairs.len() as u64;
    comparison.paired_by = pairing.by.into();
    comparison.items_added = pairing.added;
    comparison.items_removed = pairing.removed;
    comparison.note = Some(pairing.describe());
    // Candidate index → its pair, for the slices (tagged by candidate index).
    let mut pair_of = vec![None; candidate.items_total as usize];
    for &(bi, ci) in &pairing.pairs {
        pair_of[ci] = Some((bi, ci));
    }
    let mut overall = Vec::new();
    let mut sliced = Vec::new();
    let slices = if opts.slices {
        candidate.slices()
    } else {
        Default::default()
    };
    for cand in &candidate.scorers {
        let Some(base) = baseline.scorer(&cand.name) else {
            continue;
        };
        test_scorer(base, cand, &pairing.pairs, None, opts, &mut overall);
        for (key, values) in &slices {
            for (value, items) in values {
                let pairs: Vec<(usize, usize)> = items
                    .iter()
                    .filter_map(|&ci| pair_of.get(ci).copied().flatten())
                    .collect();
                test_scorer(
                    base,
                    cand,
                    &pairs,
                    Some(format!("{key}={value}")),
                    opts,
                    &mut sliced,
                );
            }
        }
    }
    if overall.is_empty() {
        add_note(&mut comparison, "no scorer has scores in both runs");
    }
    adjust(&mut overall, opts.alpha);
    adjust(&mut sliced, opts.alpha);
    // Slice tests list no item ids, and only the most significant are kept,
    // so the comparison fits in a summary message whatever the tags.
    for t in &mut sliced {
        t.flipped_to_fail.clear();
        t.flipped_to_pass.clear();
    }
    if sliced.len() > MAX_SLICE_TESTS {
        let total = sliced.len();
        sliced.sort_by(|a, b| a.p_adjusted.total_cmp(&b.p_adjusted));
        sliced.truncate(MAX_SLICE_TESTS);
        add_note(
            &mut comparison,
            format!(
                "{MAX_SLICE_TESTS} of {total} slice tests kept (the smallest adjusted p-values)"
            ),
        );
    }
    overall.extend(sliced);
    comparison.tests = overall;
    comparison
}

/// Whether `t` is a significant drop (after Holm) larger than `max_drop`.
pub fn is_significant_regression(t: &MetricComparison, max_drop: f64) -> bool {
    t.significant && t.diff < 0.0 && -t.diff > max_drop
}
