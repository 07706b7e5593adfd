//! Paired comparison of two runs over the same items.
//!
//! For every scorer (and every slice of every tag) the candidate is compared
//! with the baseline on the items both scored:
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

/// Tests one scorer over the item indices `items` (None: all).
fn test_scorer(
    base: &ScorerScores,
    cand: &ScorerScores,
    items: Option<&[usize]>,
    slice: Option<String>,
    opts: &CompareOptions,
    out: &mut Vec<MetricComparison>,
) {
    let n_items = base.values.len().min(cand.values.len());
    let all: Vec<usize>;
    let indices: &[usize] = match items {
        Some(items) => items,
        None => {
            all = (0..n_items).collect();
            &all
        }
    };
    let pairs: Vec<usize> = indices
        .iter()
        .copied()
        .filter(|&i| i < n_items && !base.values[i].is_nan() && !cand.values[i].is_nan())
        .collect();
    let n = pairs.len() as u64;
    if n == 0 {
        return;
    }
    let (mut base_pass, mut cand_pass, mut b, mut c) = (0u64, 0u64, 0u64, 0u64);
    let (mut to_fail, mut to_pass) = (Vec::new(), Vec::new());
    for &i in &pairs {
        let (bp, cp) = (base.passed(i), cand.passed(i));
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
        .map(|&i| cand.values[i] as f64 - base.values[i] as f64)
        .collect();
    let mean_of =
        |s: &ScorerScores| pairs.iter().map(|&i| s.values[i] as f64).sum::<f64>() / n as f64;
    let r = bootstrap::paired_bootstrap(&diffs, opts.resamples, opts.seed, CONFIDENCE);
    out.push(MetricComparison {
        scorer: base.name.clone(),
        metric: "mean".into(),
        slice,
        n,
        baseline: mean_of(base),
        candidate: mean_of(cand),
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

/// Compares `candidate` with `baseline` item by item. The returned
/// comparison has no baseline id, source or manifest diffs: the caller knows
/// them. Runs of different sizes are not paired (the note says why).
///
/// ```
/// use vigil_coordinator::compare::{compare, CompareOptions};
/// use vigil_coordinator::scores_store::{RunScores, ScorerScores};
/// let run = |bits: &[bool]| RunScores { run_id: "r".into(), items_total: bits.len() as u64,
///     scorers: vec![ScorerScores { name: "exact".into(),
///         values: bits.iter().map(|&b| b as u8 as f32).collect(),
///         passed: { let mut w = vec![0u64; bits.len().div_ceil(64)];
///                   for (i, &b) in bits.iter().enumerate() { if b { w[i / 64] |= 1 << (i % 64) } } w } }],
///     tags: vec![] };
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
    if baseline.items_total != candidate.items_total {
        comparison.note = Some(format!(
            "the runs have different item counts ({} vs {}): items cannot be paired",
            baseline.items_total, candidate.items_total
        ));
        return comparison;
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
        test_scorer(base, cand, None, None, opts, &mut overall);
        for (key, values) in &slices {
            for (value, items) in values {
                test_scorer(
                    base,
                    cand,
                    Some(items),
                    Some(format!("{key}={value}")),
                    opts,
                    &mut sliced,
                );
            }
        }
    }
    comparison.paired_items = overall.iter().map(|t| t.n).max().unwrap_or(0);
    if overall.is_empty() {
        comparison.note = Some("no scorer has scores in both runs".into());
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
        comparison.note = Some(format!(
            "{MAX_SLICE_TESTS} of {total} slice tests kept (the smallest adjusted p-values)"
        ));
    }
    overall.extend(sliced);
    comparison.tests = overall;
    comparison
}

/// Whether `t` is a significant drop (after Holm) larger than `max_drop`.
pub fn is_significant_regression(t: &MetricComparison, max_drop: f64) -> bool {
    t.significant && t.diff < 0.0 && -t.diff > max_drop
}
