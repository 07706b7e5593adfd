//! The terminal table: key numbers present, columns aligned, no colour codes.

use std::time::{Duration, SystemTime};
use vigil_coordinator::aggregate::{Aggregator, SummaryMeta};
use vigil_coordinator::gates::{GateSpec, apply};
use vigil_coordinator::table::render;
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
                min: Some(0.8),
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
        // exact: mean 0.81, Wilson 81/100 = [0.7222, 0.8749]
        "0.8100 [0.7222, 0.8749]",
        "fuzzy_match_long_name",
        "0.5000 [0.5000, 0.5000]", // constant scores: a point interval
        "1.0000 [0.9630, 1.0000]", // 100/100 passes, Wilson
        "p50 50.0",
        "p95 95.0",
        "p99 99.0",
        "max 100.0",
        "1200 in, 300 out",
        "server_error 1",
        "timeout 3",
        "✓  exact.pass_rate",
        "= 0.8100",
        ">= 0.8",
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
    assert_eq!(col(exact, "0.8100"), at, "\n{header}\n{exact}");
    assert_eq!(col(fuzzy, "0.5000"), at, "\n{header}\n{fuzzy}");
    let pass_at = col(header, "pass rate");
    assert_eq!(col(exact, "0.8100 [0.7222"), pass_at);
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
