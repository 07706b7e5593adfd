//! Calibration of the paired comparison on simulated data (seeded, pure).
//!
//! The simulation: each item has a latent pass probability drawn from a
//! mixture (60% easy items at 0.97, 30% hard at 0.05, 10% coin-flips at 0.5;
//! mean ≈ 0.65), as real benchmarks do. A run samples each item once. An A/A
//! comparison samples the same model twice; a true drop removes passes at a
//! rate that lowers the expected pass rate by 5 points.

use vigil_coordinator::compare::bootstrap::SplitMix64;
use vigil_coordinator::compare::{CompareOptions, compare, is_significant_regression};
use vigil_coordinator::scores_store::{RunScores, ScorerScores};

fn latent(rng: &mut SplitMix64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| match rng.unit() {
            u if u < 0.6 => 0.97,
            u if u < 0.9 => 0.05,
            _ => 0.5,
        })
        .collect()
}

fn run_of(passes: &[bool]) -> RunScores {
    let mut bits = vec![0u64; passes.len().div_ceil(64)];
    for (i, &p) in passes.iter().enumerate() {
        if p {
            bits[i / 64] |= 1 << (i % 64);
        }
    }
    RunScores {
        run_id: "sim".into(),
        items_total: passes.len() as u64,
        scorers: vec![ScorerScores {
            name: "exact".into(),
            values: passes.iter().map(|&p| p as u8 as f32).collect(),
            passed: bits,
        }],
        tags: vec![],
    }
}

fn sample(rng: &mut SplitMix64, p: &[f64], drop: f64) -> Vec<bool> {
    p.iter()
        .map(|&p| rng.unit() < p && rng.unit() >= drop)
        .collect()
}

/// Share of trials in which the comparison flags a significant regression.
fn flagged_share(trials: usize, n: usize, drop_points: f64, seed: u64) -> f64 {
    let mut rng = SplitMix64::new(seed);
    let opts = CompareOptions::default();
    let mut flagged = 0;
    for _ in 0..trials {
        let p = latent(&mut rng, n);
        let mean = p.iter().sum::<f64>() / n as f64;
        let a = sample(&mut rng, &p, 0.0);
        let b = sample(&mut rng, &p, drop_points / mean);
        let c = compare(&run_of(&a), &run_of(&b), &opts);
        if is_significant_regression(&c.tests[0], 0.0) {
            flagged += 1;
        }
    }
    flagged as f64 / trials as f64
}

#[test]
fn an_a_a_comparison_flags_a_regression_in_at_most_5_percent_of_trials() {
    let share = flagged_share(200, 1000, 0.0, 1);
    eprintln!(
        "A/A: regression flagged in {:.1}% of 200 trials",
        share * 100.0
    );
    assert!(share <= 0.05, "false-alarm rate {share}");
}

#[test]
fn a_true_drop_of_5_points_on_1000_items_is_flagged_in_at_least_80_percent_of_trials() {
    let share = flagged_share(200, 1000, 0.05, 2);
    eprintln!(
        "5-point drop: flagged in {:.1}% of 200 trials",
        share * 100.0
    );
    assert!(share >= 0.8, "power {share}");
}

#[test]
fn the_paired_bootstrap_is_calibrated_on_continuous_scores() {
    use vigil_coordinator::compare::bootstrap::paired_bootstrap;
    // Continuous per-item scores: a latent quality plus noise; A/A.
    let mut rng = SplitMix64::new(3);
    let (trials, n) = (200, 200);
    let mut rejected = 0;
    let mut covered = 0;
    for t in 0..trials {
        let diffs: Vec<f64> = (0..n)
            .map(|_| {
                let q = rng.unit();
                let a = (q + 0.2 * (rng.unit() - 0.5)).clamp(0.0, 1.0);
                let b = (q + 0.2 * (rng.unit() - 0.5)).clamp(0.0, 1.0);
                b - a
            })
            .collect();
        let r = paired_bootstrap(&diffs, 400, t, 0.95);
        rejected += (r.p_value < 0.05) as usize;
        covered += (r.ci_low <= 0.0 && 0.0 <= r.ci_high) as usize;
    }
    eprintln!("bootstrap A/A: {rejected} rejections, {covered} covering intervals of {trials}");
    // Nominal: 5% rejections, 95% coverage (1,200 trials gave 5.1% and 94.7%);
    // the bounds leave room for chance in 200 trials (P(Bin(200, .05) > 16) < 1%).
    assert!(rejected <= 16, "rejections {rejected} of {trials}");
    assert!(covered >= 180, "coverage {covered} of {trials}");
}

#[test]
fn the_same_seed_gives_the_same_comparison() {
    use vigil_coordinator::compare::bootstrap::paired_bootstrap;
    let diffs: Vec<f64> = (0..500)
        .map(|i| ((i * 37) % 11) as f64 / 10.0 - 0.45)
        .collect();
    assert_eq!(
        paired_bootstrap(&diffs, 2000, 9, 0.95),
        paired_bootstrap(&diffs, 2000, 9, 0.95)
    );
    assert_ne!(
        paired_bootstrap(&diffs, 2000, 9, 0.95).ci_low,
        paired_bootstrap(&diffs, 2000, 10, 0.95).ci_low
    );
}
