//! The aggregator: exactly-once counting, scores, errors, latency, summary.

use std::time::{Duration, SystemTime};
use vigil_coordinator::aggregate::{AddOutcome, Aggregator, SummaryMeta};
use vigil_coordinator::stats::wilson_interval;
use vigil_protocol::{ErrorKind, ItemError, ItemResult, JobResult, Score, TokenUsage};

fn score(scorer: &str, value: f64, passed: bool) -> Score {
    Score {
        scorer: scorer.into(),
        value,
        passed,
        detail: String::new(),
        ..Default::default()
    }
}

fn scored(index: u64, scores: Vec<Score>, latency_ms: f64) -> ItemResult {
    ItemResult {
        index,
        id: format!("item-{index}"),
        scores,
        latency_ms,
        usage: TokenUsage {
            input: 10,
            output: 2,
        },
        ..Default::default()
    }
}

fn failed(index: u64, kind: ErrorKind) -> ItemResult {
    ItemResult {
        index,
        id: format!("item-{index}"),
        error: Some(ItemError {
            kind,
            message: "boom".into(),
        }),
        ..Default::default()
    }
}

fn job(job_index: u64, items: Vec<ItemResult>) -> JobResult {
    JobResult {
        run_id: "run".into(),
        job_index,
        items,
        ..Default::default()
    }
}

fn meta(secs: u64) -> SummaryMeta {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    SummaryMeta {
        run_id: "run-1".into(),
        suite: "arith".into(),
        target: "llama".into(),
        model: "m".into(),
        started_at: start,
        finished_at: start + Duration::from_secs(secs),
    }
}

#[test]
fn duplicated_job_results_count_once() {
    let mut agg = Aggregator::new(4, vec!["exact".into()]);
    let j = job(
        0,
        vec![
            scored(0, vec![score("exact", 1.0, true)], 100.0),
            scored(1, vec![score("exact", 0.0, false)], 200.0),
        ],
    );
    assert_eq!(
        agg.add_job_result(&j),
        AddOutcome {
            new_items: 2,
            duplicates: 0,
            out_of_range: 0
        }
    );
    // A redelivery (possibly from another worker, with other values) changes nothing.
    let mut again = j.clone();
    again.items[0].scores[0] = score("exact", 0.0, false);
    assert_eq!(
        agg.add_job_result(&again),
        AddOutcome {
            new_items: 0,
            duplicates: 2,
            out_of_range: 0
        }
    );
    // A job overlapping one counted item.
    let overlap = job(
        1,
        vec![
            scored(1, vec![score("exact", 1.0, true)], 1.0),
            scored(2, vec![score("exact", 1.0, true)], 300.0),
        ],
    );
    assert_eq!(
        agg.add_job_result(&overlap),
        AddOutcome {
            new_items: 1,
            duplicates: 1,
            out_of_range: 0
        }
    );
    // Duplicates inside one job.
    let dup_inside = job(
        2,
        vec![failed(3, ErrorKind::Timeout), failed(3, ErrorKind::Timeout)],
    );
    assert_eq!(
        agg.add_job_result(&dup_inside),
        AddOutcome {
            new_items: 1,
            duplicates: 1,
            out_of_range: 0
        }
    );

    assert_eq!((agg.done(), agg.failed(), agg.scored()), (4, 1, 3));
    assert!(agg.is_complete());
    let s = agg.summary(&meta(2));
    let exact = &s.scores["exact"];
    // The failed item is in the denominator (a 0, not passed).
    assert_eq!((exact.n, exact.n_scored, exact.passed), (4, 3, 2));
    assert!((exact.mean - 0.5).abs() < 1e-12);
    assert!((exact.mean_scored - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(s.tokens.input, 30);
    assert_eq!(s.errors.get("timeout"), Some(&1));
    assert_eq!(s.items_scored + s.items_failed, s.items_total);
}

#[test]
fn out_of_range_indices_are_ignored() {
    let mut agg = Aggregator::new(3, vec!["exact".into()]);
    let j = job(
        0,
        vec![
            scored(2, vec![score("exact", 1.0, true)], 1.0),
            scored(3, vec![score("exact", 1.0, true)], 1.0),
            scored(u64::MAX, vec![score("exact", 1.0, true)], 1.0),
        ],
    );
    assert_eq!(
        agg.add_job_result(&j),
        AddOutcome {
            new_items: 1,
            duplicates: 0,
            out_of_range: 2
        }
    );
    assert_eq!(agg.done(), 1);
    assert!(!agg.is_counted(3));
    assert!(!agg.is_counted(u64::MAX));
    assert_eq!(agg.summary(&meta(1)).scores["exact"].n, 1);
    // fail_items ignores them too.
    assert_eq!(
        agg.fail_items(
            [(3, "x".to_string()), (99, "y".to_string())],
            ErrorKind::Deadline,
            "late"
        ),
        0
    );
    assert_eq!(agg.failed(), 0);
}

#[test]
fn fail_items_does_not_double_count() {
    let mut agg = Aggregator::new(5, vec!["exact".into()]);
    agg.add_job_result(&job(
        0,
        vec![
            scored(0, vec![score("exact", 1.0, true)], 1.0),
            failed(1, ErrorKind::RateLimited),
        ],
    ));
    let ids = |xs: &[u64]| {
        xs.iter()
            .map(|&i| (i, format!("item-{i}")))
            .collect::<Vec<_>>()
    };
    // 0 and 1 are counted already; 2 and 3 are new; 3 is repeated in the input.
    let n = agg.fail_items(
        ids(&[0, 1, 2, 3, 3]),
        ErrorKind::MaxDeliveries,
        "max deliveries",
    );
    assert_eq!(n, 2);
    assert_eq!(
        agg.fail_items(ids(&[2, 3]), ErrorKind::Deadline, "deadline"),
        0
    );
    assert_eq!(agg.missing().collect::<Vec<_>>(), vec![4]);
    assert_eq!(
        agg.fail_items(
            agg.missing()
                .map(|i| (i, String::new()))
                .collect::<Vec<_>>(),
            ErrorKind::Deadline,
            "deadline"
        ),
        1
    );
    // A late result for a failed item is a duplicate, not a second count.
    let late = agg.add_job_result(&job(
        1,
        vec![scored(4, vec![score("exact", 1.0, true)], 1.0)],
    ));
    assert_eq!(late.duplicates, 1);

    let s = agg.summary(&meta(1));
    assert_eq!((s.items_scored, s.items_failed, s.items_total), (1, 4, 5));
    assert_eq!(s.errors.get("rate_limited"), Some(&1));
    assert_eq!(s.errors.get("max_deliveries"), Some(&2));
    assert_eq!(s.errors.get("deadline"), Some(&1));
    assert_eq!(s.errors.values().sum::<u64>(), s.items_failed);
    assert!(agg.is_complete());
}

#[test]
fn missing_lists_uncounted_indices_across_words() {
    let total = 200;
    let mut agg = Aggregator::new(total, vec![]);
    assert_eq!(agg.missing().count(), 200);
    let keep = [5u64, 63, 64, 127, 128, 199];
    let items = (0..total)
        .filter(|i| !keep.contains(i))
        .map(|i| scored(i, vec![], 1.0))
        .collect();
    agg.add_job_result(&job(0, items));
    assert_eq!(agg.missing().collect::<Vec<_>>(), keep.to_vec());
    for i in 0..total {
        assert_eq!(agg.is_counted(i), !keep.contains(&i), "index {i}");
    }
    // items_total on a word boundary, and zero.
    let mut exact_word = Aggregator::new(128, vec![]);
    exact_word.add_job_result(&job(0, (0..128).map(|i| scored(i, vec![], 1.0)).collect()));
    assert_eq!(exact_word.missing().count(), 0);
    let empty = Aggregator::new(0, vec![]);
    assert!(empty.is_complete() && empty.missing().next().is_none());
}

#[test]
fn scorers_missing_unknown_repeated_and_nonfinite_scores() {
    let mut agg = Aggregator::new(4, vec!["a".into(), "b".into(), "a".into()]);
    agg.add_job_result(&job(
        0,
        vec![
            // both scorers, plus an unknown one
            scored(
                0,
                vec![
                    score("a", 1.0, true),
                    score("b", 0.5, false),
                    score("zzz", 1.0, true),
                ],
                1.0,
            ),
            // only a; a repeated score from a is ignored
            scored(1, vec![score("a", 0.0, false), score("a", 1.0, true)], 1.0),
            // b with a NaN value is not counted; a out of range is clamped
            scored(
                2,
                vec![score("a", 7.0, true), score("b", f64::NAN, true)],
                1.0,
            ),
            // no scores at all
            scored(3, vec![], 1.0),
        ],
    ));
    let s = agg.summary(&meta(1));
    assert_eq!(s.scores.keys().collect::<Vec<_>>(), vec!["a", "b"]);
    let a = &s.scores["a"];
    assert_eq!((a.n, a.passed), (3, 2));
    assert!((a.mean - 2.0 / 3.0).abs() < 1e-12);
    let b = &s.scores["b"];
    assert_eq!((b.n, b.passed), (1, 0));
    assert_eq!(s.items_scored, 4);

    let a_items = agg.item_scores("a").unwrap();
    assert_eq!(a_items.len(), 4);
    assert_eq!(&a_items[..3], &[1.0, 0.0, 1.0]);
    assert!(a_items[3].is_nan());
    let b_items = agg.item_scores("b").unwrap();
    assert_eq!(b_items[0], 0.5);
    assert!(b_items[1].is_nan() && b_items[2].is_nan() && b_items[3].is_nan());
    assert!(agg.item_scores("zzz").is_none());
    assert_eq!(agg.scorer_names(), &["a".to_string(), "b".to_string()]);
}

#[test]
fn item_scores_allocated_lazily() {
    let mut agg = Aggregator::new(1_000_000, vec!["a".into(), "b".into()]);
    assert_eq!(agg.item_scores("a"), Some(&[][..]));
    agg.add_job_result(&job(
        0,
        vec![scored(999_999, vec![score("a", 0.25, false)], 1.0)],
    ));
    assert_eq!(agg.item_scores("a").unwrap().len(), 1_000_000);
    assert_eq!(agg.item_scores("a").unwrap()[999_999], 0.25);
    assert_eq!(agg.item_scores("b"), Some(&[][..]));
}

#[test]
fn summary_fields_and_intervals() {
    let mut agg = Aggregator::new(110, vec!["exact".into(), "never".into()]);
    let mut items = Vec::new();
    for i in 0..100 {
        let pass = i < 81;
        let mut it = scored(
            i,
            vec![score("exact", if pass { 1.0 } else { 0.0 }, pass)],
            (i + 1) as f64,
        );
        if i >= 90 {
            it.cached = true; // cached outputs have no backend latency
            it.latency_ms = 0.0;
        }
        items.push(it);
    }
    for i in 100..110 {
        items.push(failed(
            i,
            if i < 107 {
                ErrorKind::Timeout
            } else {
                ErrorKind::ServerError
            },
        ));
    }
    agg.add_job_result(&job(0, items));
    let s = agg.summary(&meta(20));

    assert_eq!(s.schema, vigil_protocol::SCHEMA_VERSION);
    assert_eq!(s.vigil_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        (
            s.run_id.as_str(),
            s.suite.as_str(),
            s.target.as_str(),
            s.model.as_str()
        ),
        ("run-1", "arith", "llama", "m")
    );
    assert_eq!(s.started_at, "2023-11-14T22:13:20.000Z");
    assert_eq!(s.finished_at, "2023-11-14T22:13:40.000Z");
    assert_eq!(s.duration_s, 20.0);
    assert_eq!(s.items_per_s, 110.0 / 20.0);
    assert_eq!(
        (
            s.items_total,
            s.items_scored,
            s.items_failed,
            s.items_cached
        ),
        (110, 100, 10, 10)
    );
    assert_eq!(s.errors.get("timeout"), Some(&7));
    assert_eq!(s.errors.get("server_error"), Some(&3));
    assert!(s.gates.is_empty() && !s.passed);
    assert_eq!(s.tokens.input, 1000);
    assert_eq!(s.tokens.output, 200);

    let e = &s.scores["exact"];
    // Every item is in the headline figures: the 10 failed ones count as
    // 0, not passed.
    assert_eq!((e.n, e.passed), (110, 81));
    assert_eq!(e.pass_rate, 81.0 / 110.0);
    assert_eq!((e.ci_low, e.ci_high), wilson_interval(81, 110, 0.95));
    assert!((e.mean - 81.0 / 110.0).abs() < 1e-12);
    let p: f64 = 81.0 / 110.0;
    let t = vigil_coordinator::stats::student_t_quantile(0.95, 109);
    let half = t * (p * (1.0 - p) * 110.0 / 109.0).sqrt() / 110f64.sqrt();
    assert!((e.mean_ci_low - (p - half)).abs() < 1e-6, "{e:?}");
    assert!((e.mean_ci_high - (p + half)).abs() < 1e-6, "{e:?}");
    // The survivors only, under their own names.
    assert_eq!(e.n_scored, 100);
    assert_eq!(e.pass_rate_scored, 0.81);
    assert_eq!(
        (e.pass_rate_scored_ci_low, e.pass_rate_scored_ci_high),
        wilson_interval(81, 100, 0.95)
    );
    assert!(
        (e.pass_rate_scored_ci_low - 0.7222).abs() < 1e-4
            && (e.pass_rate_scored_ci_high - 0.8749).abs() < 1e-4
    );
    assert_eq!(e.mean_scored, 0.81);
    // For 0/1 scores: mean ± t(99)·s/√n with s² = p(1−p)·n/(n−1).
    let half = 1.98421695159 * (0.81f64 * 0.19 * 100.0 / 99.0).sqrt() / 10.0;
    assert!((e.mean_scored_ci_low - (0.81 - half)).abs() < 1e-9);
    assert!((e.mean_scored_ci_high - (0.81 + half)).abs() < 1e-9);

    // A scorer that never scored: present, its survivors n = 0 with the
    // widest intervals; the failed items alone in its denominator.
    let never = &s.scores["never"];
    assert_eq!(
        (
            never.n_scored,
            never.pass_rate_scored,
            never.pass_rate_scored_ci_low,
            never.pass_rate_scored_ci_high
        ),
        (0, 0.0, 0.0, 1.0)
    );
    assert_eq!(
        (never.mean_scored_ci_low, never.mean_scored_ci_high),
        (0.0, 1.0)
    );
    assert_eq!((never.n, never.pass_rate), (10, 0.0));

    // Latency: the 90 uncached items, 1..=90 ms.
    assert!((s.latency_ms.p50 - 45.0).abs() < 0.05, "{:?}", s.latency_ms);
    assert!((s.latency_ms.max - 90.0).abs() < 1e-9);
    assert!((s.latency_ms.mean - 45.5).abs() < 1e-9);
}

#[test]
fn zero_duration_and_reversed_clock_give_zero_rate() {
    let mut agg = Aggregator::new(1, vec![]);
    agg.add_job_result(&job(0, vec![scored(0, vec![], 1.0)]));
    let mut m = meta(0);
    assert_eq!(agg.summary(&m).items_per_s, 0.0);
    m.finished_at = m.started_at - Duration::from_secs(5);
    let s = agg.summary(&m);
    assert_eq!((s.duration_s, s.items_per_s), (0.0, 0.0));
}

#[test]
fn a_million_items_aggregate_completely() {
    // A million items, some with long outputs (which the aggregator must not
    // keep: it has nowhere to keep them), one f32 per item and scorer.
    let total = 1_000_000u64;
    let mut agg = Aggregator::new(total, vec!["exact".into()]);
    let big_output = "x".repeat(10_000);
    for chunk in 0..(total / 1000) {
        let items = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| {
                let mut it = scored(i, vec![score("exact", 1.0, true)], 5.0);
                if i % 1000 == 0 {
                    it.output = Some(big_output.clone());
                }
                it
            })
            .collect();
        agg.add_job_result(&job(chunk, items));
    }
    assert!(agg.is_complete());
    assert_eq!(agg.summary(&meta(10)).scores["exact"].n, total);
    assert_eq!(agg.item_scores("exact").unwrap().len(), total as usize);
}

#[test]
fn model_side_failures_are_fails_in_the_pairs_and_scorer_errors_are_left_out() {
    let mut agg = Aggregator::new(4, vec!["exact".into(), "judge".into()]);
    agg.add_job_result(&job(
        0,
        vec![
            scored(
                0,
                vec![score("exact", 1.0, true), score("judge", 0.5, true)],
                1.0,
            ),
            ItemResult {
                tags: [("lang".to_string(), "fr".to_string())].into(),
                ..failed(1, ErrorKind::Timeout)
            },
            failed(2, ErrorKind::Scorer),
        ],
    ));
    agg.fail_items([(3, "item-3".to_string())], ErrorKind::Deadline, "late");
    let scores = agg.run_scores("run-1");
    for s in &scores.scorers {
        assert!(!s.values[0].is_nan(), "{}", s.name);
        // The model timed out or never answered: a fail of the item.
        assert_eq!((s.values[1], s.passed(1)), (0.0, false), "{}", s.name);
        assert_eq!((s.values[3], s.passed(3)), (0.0, false), "{}", s.name);
        // The scorer could not score: no verdict on the model.
        assert!(s.values[2].is_nan(), "{}", s.name);
    }
    // A failed item keeps its tags: per-slice paired tests see it.
    assert_eq!(scores.slices()["lang"]["fr"], [1]);
    // In the summary every failed item counts, whatever its kind.
    let s = agg.summary(&meta(1));
    assert_eq!((s.scores["exact"].n, s.scores["exact"].n_scored), (4, 1));
    assert_eq!(s.scores["exact"].pass_rate, 0.25);
    assert_eq!(s.scores["judge"].mean, 0.125);
    assert_eq!(s.scores["judge"].mean_scored, 0.5);
}
