//! Seeded simulations of `vigil shadow`'s stopping rule (issue 18 item 3):
//! between equal models the rate of wrong calls over many replications is at
//! most `α` although the rule looks after every item; a clearly better and a
//! clearly worse candidate are called with the right sign, early; the
//! interval covers the true mean. The median items to a decision are printed
//! (`cargo test -p vigil-coordinator --test shadow_stopping -- --nocapture`);
//! docs/production.md, "Shadow a candidate", quotes the table.

use vigil_coordinator::compare::bootstrap::SplitMix64;
use vigil_coordinator::shadow::{BettingCsConfig, Decision, PairedMetric, StoppingRule};

/// Per-item scores of one side: pass/fail at rate `p`.
fn pass_fail(rng: &mut SplitMix64, p: f64) -> f64 {
    if rng.unit() < p { 1.0 } else { 0.0 }
}

/// Draws one (candidate, production) pair of per-item scores.
type Pair = fn(&mut SplitMix64) -> (f64, f64);

/// A rule that only decides (the grid holds just 0.5: the decision reads
/// nothing else, and it keeps thousands of replications fast).
fn deciding_rule(metric: PairedMetric, alpha: f64, budget: u64) -> StoppingRule {
    let config = BettingCsConfig {
        alpha,
        grid: 2,
        ..Default::default()
    };
    StoppingRule::with_config(metric, config, budget).unwrap()
}

/// Runs one replication to its stop: `(decision, items used)`.
fn replicate(
    mut rule: StoppingRule,
    rng: &mut SplitMix64,
    mut pair: impl FnMut(&mut SplitMix64) -> (f64, f64),
) -> (Decision, u64) {
    loop {
        let (c, p) = pair(rng);
        if let Some(d) = rule.observe(c, p) {
            return (d, rule.state().items_used);
        }
    }
}

/// Calls and median items used over `reps` seeded replications.
struct Tally {
    better: u64,
    worse: u64,
    none: u64,
    median_items: u64,
}

fn tally(
    reps: u64,
    seed: u64,
    make: impl Fn() -> StoppingRule,
    pair: impl Fn(&mut SplitMix64) -> (f64, f64) + Copy,
) -> Tally {
    let mut rng = SplitMix64::new(seed);
    let mut t = Tally {
        better: 0,
        worse: 0,
        none: 0,
        median_items: 0,
    };
    let mut items = Vec::with_capacity(reps as usize);
    for _ in 0..reps {
        let (d, n) = replicate(make(), &mut rng, pair);
        match d {
            Decision::Better => t.better += 1,
            Decision::Worse => t.worse += 1,
            Decision::NoDifference => t.none += 1,
        }
        items.push(n);
    }
    items.sort_unstable();
    t.median_items = items[items.len() / 2];
    t
}

#[test]
fn equal_models_are_called_different_at_most_alpha_of_the_time() {
    let reps = 2000;
    let budget = 1000;
    // Three nulls: pass/fail scores at the same rate (many ties), win/tie/
    // loss with 40% ties, and continuous scores from one distribution
    // compared by their difference.
    let cases: [(&str, PairedMetric, Pair); 3] = [
        (
            "pass/fail 0.8 vs 0.8, win rate",
            PairedMetric::WinRate,
            |r| (pass_fail(r, 0.8), pass_fail(r, 0.8)),
        ),
        (
            "win 0.3 / tie 0.4 / loss 0.3, win rate",
            PairedMetric::WinRate,
            |r| {
                let u = r.unit();
                if u < 0.3 {
                    (1.0, 0.0)
                } else if u < 0.7 {
                    (0.5, 0.5)
                } else {
                    (0.0, 1.0)
                }
            },
        ),
        (
            "uniform scores both sides, difference",
            PairedMetric::Difference,
            |r| (r.unit(), r.unit()),
        ),
    ];
    for alpha in [0.05, 0.01] {
        for (i, (name, metric, pair)) in cases.iter().enumerate() {
            let t = tally(
                reps,
                100 + i as u64,
                || deciding_rule(*metric, alpha, budget),
                *pair,
            );
            let wrong = (t.better + t.worse) as f64 / reps as f64;
            println!(
                "null {name}, α = {alpha}: wrong calls {wrong:.4} ({} better, {} worse) in {reps} replications of up to {budget} items",
                t.better, t.worse
            );
            assert!(
                wrong <= alpha,
                "{name}: wrong-call rate {wrong} above α = {alpha}"
            );
            assert_eq!(t.better + t.worse + t.none, reps);
        }
    }
}

#[test]
fn a_clearly_better_or_worse_candidate_is_called_early_with_the_right_sign() {
    let reps = 400;
    let budget = 1000;
    println!("production pass rate 0.8, α = 0.05, budget {budget}, {reps} replications:");
    println!("| candidate | right calls | wrong calls | none | median items to decision |");
    for candidate in [0.5, 0.6, 0.7, 0.9, 0.95] {
        let expected = if candidate > 0.8 {
            Decision::Better
        } else {
            Decision::Worse
        };
        let t = tally(
            reps,
            7,
            || deciding_rule(PairedMetric::WinRate, 0.05, budget),
            move |r| (pass_fail(r, candidate), pass_fail(r, 0.8)),
        );
        let (right, wrong) = match expected {
            Decision::Better => (t.better, t.worse),
            _ => (t.worse, t.better),
        };
        println!(
            "| {candidate} | {right} | {wrong} | {} | {} |",
            t.none, t.median_items
        );
        assert_eq!(
            wrong, 0,
            "candidate {candidate}: called with the wrong sign"
        );
        // Clearly different (15 points or more): called right nearly
        // always, and early.
        if (candidate - 0.8f64).abs() >= 0.15 {
            assert!(
                right as f64 >= 0.95 * reps as f64,
                "candidate {candidate}: called right in only {right} of {reps}"
            );
            assert!(
                t.median_items < budget / 4,
                "candidate {candidate}: median {} items is not early",
                t.median_items
            );
        } else {
            assert!(
                right > reps / 2,
                "candidate {candidate}: right in {right} of {reps}"
            );
        }
    }
    // The clearest cases first: a 20-point gap needs fewer items than a 10-point one.
    let items = |c: f64| {
        tally(
            reps,
            7,
            || deciding_rule(PairedMetric::WinRate, 0.05, budget),
            move |r| (pass_fail(r, c), pass_fail(r, 0.8)),
        )
        .median_items
    };
    assert!(items(0.6) < items(0.7));
}

#[test]
fn judge_like_scores_compared_by_difference_are_called_with_the_right_sign() {
    // Continuous scores: production uniform on [0.2, 0.8], the candidate
    // 0.15 higher or lower (clamped).
    let budget = 1000;
    println!("continuous scores, shift ±0.15, difference, α = 0.05:");
    for (shift, expected) in [(0.15, Decision::Better), (-0.15, Decision::Worse)] {
        let t = tally(
            200,
            11,
            || deciding_rule(PairedMetric::Difference, 0.05, budget),
            move |r| {
                let p = 0.2 + 0.6 * r.unit();
                let c = (0.2 + 0.6 * r.unit() + shift).clamp(0.0, 1.0);
                (c, p)
            },
        );
        let right = if expected == Decision::Better {
            t.better
        } else {
            t.worse
        };
        println!(
            "shift {shift}: right {right}, none {}, median items {}",
            t.none, t.median_items
        );
        assert_eq!(right, 200, "shift {shift}");
    }
}

#[test]
fn the_interval_covers_the_true_mean_at_every_time() {
    // With the full grid: the running intersection at the budget contains
    // the true mean in at least 1 − α of the replications (covering at the
    // end of a running intersection is covering at every time).
    let (reps, budget, alpha) = (300, 400, 0.05);
    let mut rng = SplitMix64::new(3);
    // Candidate pass rate 0.7 vs production 0.6: win rate with ties half is
    // 0.5 + (0.7 − 0.6)/2 = 0.55.
    let truth = 0.55;
    let mut missed = 0;
    let mut widths = Vec::new();
    for _ in 0..reps {
        let config = BettingCsConfig {
            alpha,
            grid: 200,
            ..Default::default()
        };
        // A budget the rule cannot stop before: the interval is read at
        // the budget whatever the call.
        let mut rule = StoppingRule::with_config(PairedMetric::WinRate, config, budget).unwrap();
        let mut cs_rule = vigil_coordinator::shadow::BettingCs::new(BettingCsConfig {
            alpha,
            grid: 200,
            ..Default::default()
        })
        .unwrap();
        for _ in 0..budget {
            let (c, p) = (pass_fail(&mut rng, 0.7), pass_fail(&mut rng, 0.6));
            rule.observe(c, p);
            cs_rule
                .observe(PairedMetric::WinRate.observe(c, p))
                .unwrap();
        }
        let (low, high) = cs_rule.interval();
        if !(low <= truth && truth <= high) {
            missed += 1;
        }
        widths.push(high - low);
        // The rule's state is the sequence's at its stop, which contains
        // the sequence's final interval (a running intersection shrinks).
        let s = rule.state();
        assert!(
            s.ci_low <= low + 1e-12 && s.ci_high >= high - 1e-12,
            "{s:?} vs ({low}, {high})"
        );
    }
    widths.sort_by(f64::total_cmp);
    let miss_rate = missed as f64 / reps as f64;
    println!(
        "coverage: missed {missed} of {reps} (rate {miss_rate:.3}, α = {alpha}); median width at {budget} items {:.3}",
        widths[widths.len() / 2]
    );
    assert!(miss_rate <= alpha, "coverage failed in {missed} of {reps}");
}
