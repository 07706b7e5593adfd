//! Seeded simulations of the drift detectors (issue 17 item 5): the false
//! alarm rate on unchanged streams is within the configured `α`, and a
//! 5-point drop in a pass rate of 0.9 is detected, with the median delay
//! printed (`cargo test -p vigil-coordinator --test it drift_calibration:: --
//! --nocapture`); docs/production.md, "Drift detection", quotes the table.

use vigil_coordinator::compare::bootstrap::SplitMix64;
use vigil_coordinator::drift::{Direction, DriftDetector, EDetector, EDetectorConfig, Reference};

/// A pass (1.0) with probability `p`.
fn bernoulli(rng: &mut SplitMix64, p: f64) -> f64 {
    if rng.unit() < p { 1.0 } else { 0.0 }
}

/// A reference period of `n` pass/fail scores at pass rate `p`.
fn reference(rng: &mut SplitMix64, p: f64, n: u64) -> Reference {
    let passed = (0..n).filter(|_| bernoulli(rng, p) == 1.0).count() as u64;
    Reference::pass_fail(passed, n).unwrap()
}

fn config(alpha: f64, direction: Direction) -> EDetectorConfig {
    EDetectorConfig {
        alpha,
        direction,
        // No examples: the simulation has no ids, and it saves time.
        example_window: 0,
        ..Default::default()
    }
}

/// Alarms raised over `n` scores at pass rate `p` (the detector starts
/// over after each alarm).
fn false_alarms(d: &mut EDetector, rng: &mut SplitMix64, p: f64, n: u64) -> u64 {
    (0..n)
        .filter(|_| d.observe("", bernoulli(rng, p)).unwrap().is_some())
        .count() as u64
}

/// The largest alarm count over `n` scores consistent with at most `α`
/// false alarms per score: `α·n` plus three standard deviations (the count
/// of a renewal process whose run lengths have variance at most their mean
/// squared, which geometric-like run lengths do not exceed, is about Poisson
/// or tighter).
fn allowed(alpha: f64, n: u64) -> f64 {
    let mean = alpha * n as f64;
    mean + 3.0 * mean.sqrt()
}

#[test]
fn an_unchanged_stream_against_a_known_reference_alarms_at_most_alpha_per_score() {
    for (alpha, direction) in [(0.02, Direction::Drop), (0.02, Direction::Both)] {
        let mut rng = SplitMix64::new(17);
        // A reference so large its bound is the true rate to 2·10⁻⁴: the
        // stream sits on the null boundary, the hardest case of the null.
        let r = Reference::pass_fail(9_000_000, 10_000_000).unwrap();
        let mut d = EDetector::new("accuracy", &r, config(alpha, direction)).unwrap();
        let n = 1_000_000;
        let alarms = false_alarms(&mut d, &mut rng, 0.9, n);
        println!(
            "no change, known reference, {direction:?}, α = {alpha}: {alarms} alarms in {n} scores \
             ({:.5} per score, mean run length {:.0}; allowed ≤ {:.0})",
            alarms as f64 / n as f64,
            n as f64 / alarms.max(1) as f64,
            allowed(alpha, n)
        );
        assert!(
            (alarms as f64) <= allowed(alpha, n),
            "{alarms} false alarms in {n} scores exceeds α = {alpha}"
        );
    }
}

#[test]
fn the_allowance_is_not_vacuous_a_stream_far_below_the_boundary_exceeds_it() {
    // The same measurement and allowance as above with the stream at 0.5
    // against a reference of 0.9, i.e. what a broken null (invalid e-values)
    // looks like at its worst: the count must blow past the allowance, so
    // the calibration tests above can fail.
    let alpha = 0.02;
    let mut rng = SplitMix64::new(18);
    let r = Reference::pass_fail(9_000_000, 10_000_000).unwrap();
    let mut d = EDetector::new("accuracy", &r, config(alpha, Direction::Drop)).unwrap();
    let n = 200_000;
    let alarms = false_alarms(&mut d, &mut rng, 0.5, n);
    assert!(
        alarms as f64 > 2.0 * allowed(alpha, n),
        "{alarms} alarms in {n} scores: the allowance cannot be exceeded"
    );
}

#[test]
fn an_unchanged_stream_against_estimated_references_alarms_at_most_alpha_per_score() {
    // Each trial draws its own reference of 2000 scores; the bound's 95%
    // confidence makes the rate far smaller than α on average.
    let alpha = 0.01;
    let (trials, n) = (200, 5_000);
    let mut rng = SplitMix64::new(19);
    let mut alarms = 0;
    for _ in 0..trials {
        let r = reference(&mut rng, 0.9, 2_000);
        let mut d = EDetector::new("accuracy", &r, config(alpha, Direction::Drop)).unwrap();
        alarms += false_alarms(&mut d, &mut rng, 0.9, n);
    }
    let total = trials * n;
    println!(
        "no change, estimated references (2000 scores), α = {alpha}: {alarms} alarms in {total} scores ({:.6} per score)",
        alarms as f64 / total as f64
    );
    assert!(
        (alarms as f64) <= allowed(alpha, total),
        "{alarms} false alarms in {total} scores"
    );
}

/// Detection of a change from 0.90 to `after` at score `CHANGE_AT`:
/// returns the fraction detected, the median delay in scores (the number of
/// post-change scores up to and including the alarming one), the number of
/// false alarms before the change and the median distance of the change
/// point estimate from the true change.
fn detection(
    seed: u64,
    alpha: f64,
    direction: Direction,
    reference_n: Option<u64>,
    after: f64,
    trials: u32,
) -> (f64, u64, u32, u64) {
    const CHANGE_AT: u64 = 1_000;
    const MAX_DELAY: u64 = 50_000;
    let mut rng = SplitMix64::new(seed);
    let mut delays = Vec::new();
    let mut misses = Vec::new();
    let mut early = 0;
    for _ in 0..trials {
        let r = match reference_n {
            Some(n) => reference(&mut rng, 0.9, n),
            None => Reference::pass_fail(9_000_000, 10_000_000).unwrap(),
        };
        let mut d = EDetector::new("accuracy", &r, config(alpha, direction)).unwrap();
        for t in 0..CHANGE_AT + MAX_DELAY {
            let p = if t < CHANGE_AT { 0.9 } else { after };
            if let Some(alarm) = d.observe("", bernoulli(&mut rng, p)).unwrap() {
                if t < CHANGE_AT {
                    // A false alarm: the detector starts over, as in production.
                    early += 1;
                    continue;
                }
                delays.push(t - CHANGE_AT + 1);
                misses.push(alarm.change_point.abs_diff(CHANGE_AT));
                assert!(alarm.recent_mean < 0.9 || after > 0.9);
                break;
            }
        }
    }
    delays.sort_unstable();
    let detected = delays.len() as f64 / trials as f64;
    let median = delays.get(delays.len() / 2).copied().unwrap_or(u64::MAX);
    misses.sort_unstable();
    let miss = misses.get(misses.len() / 2).copied().unwrap_or(u64::MAX);
    (detected, median, early, miss)
}

#[test]
fn a_five_point_drop_from_ninety_percent_is_detected_and_the_delays_are_reported() {
    println!(
        "| α | direction | reference | change | detected | median delay (scores) | false alarms in 1000 pre-change scores | median change point error |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let trials = 200;
    for (i, (alpha, direction, reference_n, after)) in [
        (0.01, Direction::Drop, Some(2_000), 0.85),
        (0.001, Direction::Drop, Some(2_000), 0.85),
        (0.01, Direction::Drop, Some(10_000), 0.85),
        (0.01, Direction::Drop, None, 0.85),
        (0.001, Direction::Drop, Some(2_000), 0.80),
        (0.01, Direction::Both, Some(2_000), 0.85),
        (0.01, Direction::Both, Some(2_000), 0.95),
    ]
    .into_iter()
    .enumerate()
    {
        let (detected, median, early, miss) =
            detection(100 + i as u64, alpha, direction, reference_n, after, trials);
        let reference = reference_n.map_or("known".to_string(), |n| format!("{n} scores"));
        println!(
            "| {alpha} | {direction:?} | {reference} | 0.90 → {after:.2} | {:.1}% | {median} | {early} in {trials} trials | {miss} |",
            detected * 100.0
        );
        assert!(
            detected >= 0.95,
            "α = {alpha}, {direction:?}, 0.90 → {after}: detected in {:.1}% of trials",
            detected * 100.0
        );
        // The change point estimate is evidence: it must be nearer the true
        // change than the alarm is.
        assert!(
            miss < median,
            "α = {alpha}, {direction:?}, 0.90 → {after}: the change point estimate is off by {miss} (median delay {median})"
        );
    }
}
