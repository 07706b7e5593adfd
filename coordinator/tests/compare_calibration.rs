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
        ..Default::default()
    }
}

fn sample(rng: &mut SplitMix64, p: &[f64], drop: f64) -> Vec<bool> {
    p.iter()
        .map(|&p| rng.unit() < p && rng.unit() >= drop)
        .collect()
}

/// What the comparisons of `trials` seeded simulated pairs of runs flagged.
struct Flagged {
    /// Share with a significant difference in either direction.
    any: f64,
    /// Share with a significant drop.
    regression: f64,
}

fn flagged_share(trials: usize, n: usize, drop_points: f64, seed: u64) -> Flagged {
    let mut rng = SplitMix64::new(seed);
    let opts = CompareOptions::default();
    let (mut any, mut regression) = (0, 0);
    for _ in 0..trials {
        let p = latent(&mut rng, n);
        let mean = p.iter().sum::<f64>() / n as f64;
        let a = sample(&mut rng, &p, 0.0);
        let b = sample(&mut rng, &p, drop_points / mean);
        let c = compare(&run_of(&a), &run_of(&b), &opts);
        let t = &c.tests[0];
        any += t.significant as usize;
        regression += is_significant_regression(t, 0.0) as usize;
    }
    Flagged {
        any: any as f64 / trials as f64,
        regression: regression as f64 / trials as f64,
    }
}

/// Trials per simulated claim: enough that the binomial noise of a 5% rate
/// (sd 0.7 points) stays well inside the 2%..8% band.
const TRIALS: usize = 1000;

#[test]
fn an_a_a_comparison_raises_a_false_alarm_in_2_to_8_percent_of_trials() {
    // A false alarm in either direction counts: an A/A "improvement" is as
    // wrong as an A/A "regression". The two-sided level is 5%; McNemar's
    // exact test is a little conservative, and a rate far below 5% would
    // mean a test that has lost its power, so the band is two-sided too.
    let share = flagged_share(TRIALS, 1000, 0.0, 1);
    eprintln!(
        "A/A: significant difference (either direction) in {:.1}% of {TRIALS} trials, regression in {:.1}%",
        share.any * 100.0,
        share.regression * 100.0
    );
    assert!(
        (0.02..=0.08).contains(&share.any),
        "two-sided false-alarm rate {}",
        share.any
    );
    assert!(share.regression <= share.any);
}

#[test]
fn a_true_drop_of_5_points_on_1000_items_is_flagged_in_at_least_80_percent_of_trials() {
    let share = flagged_share(TRIALS, 1000, 0.05, 2);
    eprintln!(
        "power: a 5-point drop on 1,000 items flagged as a regression in {:.1}% of {TRIALS} trials",
        share.regression * 100.0
    );
    assert!(share.regression >= 0.8, "power {}", share.regression);
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
