//! The terminal table: key numbers present, columns aligned, no colour codes.

use std::time::{Duration, SystemTime};
use vigil_coordinator::aggregate::{Aggregator, SummaryMeta};
use vigil_coordinator::gates::{GateSpec, apply};
use vigil_coordinator::report::table::render;
use vigil_protocol::{ErrorKind, ItemError, ItemResult, JobResult, RunSummary, Score, TokenUsage};

/// 100 scored items (81 pass `exact`, `fuzzy` = 0.5 everywhere), latency
/// 1..=100 ms, and 3 timeouts + 1 server error.
fn run() -> RunSummary {
    let mut agg = Aggregator::new(104, vec!["exact".into(), "fuzzy_match_long_name".into()]);
    let mut items: Vec<ItemResult> = (0..100)
        .map(|i| {
            let pass = i < 81;
            ItemResult {
                index: i,
                scores: vec![
                    Score {
                        scorer: "exact".into(),
                        value: if pass { 1.0 } else { 0.0 },
                        passed: pass,
                        ..Default::default()
                    },
                    Score {
                        scorer: "fuzzy_match_long_name".into(),
                        value: 0.5,
                        passed: true,
                        ..Default::default()
                    },
                ],
                latency_ms: (i + 1) as f64,
                usage: TokenUsage {
                    input: 12,
                    output: 3,
                },
                ..Default::default()
            }
        })
        .collect();
    for (i, kind) in [
        (100, ErrorKind::Timeout),
        (101, ErrorKind::Timeout),
        (102, ErrorKind::Timeout),
        (103, ErrorKind::ServerError),
    ] {
        items.push(ItemResult {
            index: i,
            error: Some(ItemError {
                kind,
                message: "x".into(),
            }),
            ..Default::default()
        });
    }
    agg.add_job_result(&JobResult {
        items,
        ..Default::default()
    });
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    agg.summary(&SummaryMeta {
        run_id: "0190-abcd".into(),
        suite: "arithmetic".into(),
        target: "llama-3-8b".into(),
        model: "meta-llama/Meta-Llama-3-8B-Instruct".into(),
        started_at: start,
        finished_at: start + Duration::from_secs(8),
    })
}

#[test]
fn contains_the_key_numbers() {
    let mut s = run();
    apply(
        &[
            GateSpec {
                metric: "exact.pass_rate".into(),
                min: Some(0.75),
                max: None,
                ..Default::default()
            },
            GateSpec {
                metric: "error_rate".into(),
                min: None,
                max: Some(0.01),
                ..Default::default()
            },
            GateSpec {
                metric: "ghost.mean".into(),
                min: Some(0.5),
                max: None,
                ..Default::default()
            },
        ],
        Some(0.02),
        &mut s,
    );
    let text = render(&s);
    println!("{text}");
    for needle in [
        "arithmetic",
        "llama-3-8b",
        "meta-llama/Meta-Llama-3-8B-Instruct",
        "0190-abcd",
        "104 total",
        "100 scored",
        "4 failed",
        "8.0s",
        "13.0 items/s",
        // exact over all 104 items (the 4 failed count as fails): 81/104,
        // Wilson [0.6900, 0.8479]; over the 100 scored: 0.81
        "0.7788 [0.6900, 0.8479]",
        "0.8100 (100)",
        "fuzzy_match_long_name",
        "0.4808 [",                // 0.5 on 100 items, 0 on the 4 failed
        "0.9615 [0.9053, 0.9849]", // 100/104 passes, Wilson
        "1.0000 (100)",            // every scored item passed
        "p50 50.0",
        "p95 95.0",
        "p99 99.0",
        "max 100.0",
        "1200 in, 300 out",
        "server_error 1",
        "timeout 3",
        "✓  exact.pass_rate",
        "= 0.7788",
        ">= 0.75",
        // 4 of 104 failed, the budget allows 2.
        "✗  error_budget",
        "4 of 104 items failed; the error budget allows 2 (0.02)",
        "✗  error_rate",
        "= 0.0385",
        "<= 0.01",
        "✗  ghost.mean",
        "n/a",
        "verdict: FAIL",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains('\x1b'), "no escape codes");
}

#[test]
fn columns_are_aligned() {
    let text = render(&run());
    let header = text
        .lines()
        .find(|l| l.trim_start().starts_with("scorer"))
        .unwrap();
    let exact = text
        .lines()
        .find(|l| l.trim_start().starts_with("exact "))
        .unwrap();
    let fuzzy = text
        .lines()
        .find(|l| l.trim_start().starts_with("fuzzy_match_long_name"))
        .unwrap();
    // The second column starts at the same char position in every row.
    let col = |line: &str, needle: &str| line.find(needle).unwrap();
    let at = col(header, "mean [95% CI]");
    assert_eq!(col(exact, "0.7788"), at, "\n{header}\n{exact}");
    assert_eq!(col(fuzzy, "0.4808"), at, "\n{header}\n{fuzzy}");
    let pass_at = col(header, "pass rate");
    assert_eq!(col(exact, "0.7788 [0.6900"), pass_at);
    let scored_at = col(header, "scored only");
    assert_eq!(col(exact, "0.8100 (100)"), scored_at);
    assert_eq!(col(fuzzy, "1.0000 (100)"), scored_at);
}

#[test]
fn verdicts() {
    let mut s = run();
    apply(
        &[GateSpec {
            metric: "exact.pass_rate".into(),
            min: Some(0.5),
            max: None,
            ..Default::default()
        }],
        None,
        &mut s,
    );
    let text = render(&s);
    assert!(text.trim_end().ends_with("verdict: PASS"), "{text}");
    assert!(text.contains("✓"));

    let empty = RunSummary {
        items_total: 3,
        items_failed: 3,
        ..Default::default()
    };
    let text = render(&empty);
    assert!(text.contains("gates: none"));
    assert!(
        text.contains("verdict: FAIL (no item was scored)"),
        "{text}"
    );
    assert!(text.contains("scores: none"));
}

#[test]
fn the_comparison_with_the_baseline_is_on_the_terminal() {
    use vigil_protocol::{Comparison, ManifestDiff, MetricComparison};
    let mut s = run();
    s.comparison = Some(Comparison {
        baseline_run_id: "0190-base".into(),
        baseline_source: "pinned".into(),
        manifest_diffs: vec![ManifestDiff {
            field: "dataset_sha256".into(),
            baseline: "aa".into(),
            candidate: "bb".into(),
        }],
        note: Some("104 items paired by id (0 added, 0 removed)".into()),
        tests: vec![
            MetricComparison {
                scorer: "exact".into(),
                metric: "pass_rate".into(),
                n: 104,
                baseline: 0.9,
                candidate: 0.7788,
                diff: -0.1212,
                ci_low: -0.2,
                ci_high: -0.05,
                p_adjusted: 0.001,
                significant: true,
                pass_to_fail: 13,
                flipped_to_fail: vec!["q3".into(), "q7".into()],
                ..Default::default()
            },
            MetricComparison {
                scorer: "exact".into(),
                metric: "pass_rate".into(),
                slice: Some("lang=fr".into()),
                n: 50,
                diff: -0.01,
                p_adjusted: 0.9,
                ..Default::default()
            },
        ],
        ..Default::default()
    });
    let text = render(&s);
    for needle in [
        "baseline  0190-base (pinned)",
        "candidate 0190-abcd",
        "manifests DIFFER:",
        "dataset_sha256: aa -> bb",
        "note: 104 items paired by id (0 added, 0 removed)",
        "-0.1212 [-0.2000, -0.0500]   0.0010   13    0  *",
        "exact pass->fail: q3, q7",
        "(1 slice tests without a significant difference not shown; `vigil compare` lists them)",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("lang=fr"), "{text}");
    assert!(text.trim_end().ends_with("verdict: FAIL"), "{text}");
}
