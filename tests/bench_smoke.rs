//! A smoke run of the benchmark harness in quick mode: a few hundred items
//! per scenario through the real `vigil` binary, stub and nats-server. It
//! checks that every measurement ran and made its row; it asserts nothing
//! about speed (the benchmark itself, `vigil-bench`, measures that).

use std::path::PathBuf;
use vigil_bench::BenchConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_bench_fills_every_row() {
    let cfg = BenchConfig::quick(PathBuf::from(env!("CARGO_BIN_EXE_vigil")));
    let report = vigil_bench::run(&cfg).await.expect("the quick bench runs");
    let table = report.table();
    eprintln!("{table}\n{}", report.budget_table());

    let count = |prefix: &str| {
        report
            .rows
            .iter()
            .filter(|r| r.scenario.starts_with(prefix))
            .count()
    };
    assert_eq!(count("stub ceiling"), 1, "{table}");
    assert_eq!(count("vigil run, embedded"), 1, "{table}");
    assert_eq!(
        count("latency-bound"),
        cfg.latency_concurrency.len(),
        "{table}"
    );
    assert_eq!(count("memory"), cfg.memory_items.len(), "{table}");
    assert_eq!(count("scale-out"), cfg.scale_workers.len(), "{table}");
    for row in &report.rows {
        assert!(row.items > 0, "{} measured nothing", row.scenario);
        assert!(row.items_per_s > 0.0, "{} has no rate", row.scenario);
        assert!(table.contains(&row.scenario));
    }
    // Every item of every run was evaluated (the stub answers all of them).
    for &n in &cfg.memory_items {
        assert!(
            report
                .rows
                .iter()
                .any(|r| r.scenario.starts_with("memory") && r.items == n),
            "no memory row with {n} items:\n{table}"
        );
    }
    assert!(
        report.notes.iter().all(|n| !n.contains("items failed")),
        "{:?}",
        report.notes
    );

    // Six kinds of budget: two zero-latency, one per C, coordinator RSS,
    // worker RSS, time to first result.
    assert_eq!(
        report.budgets.len(),
        2 + cfg.latency_concurrency.len() + 3,
        "{}",
        report.budget_table()
    );
    let peak = report
        .budgets
        .iter()
        .find(|b| b.name.starts_with("coordinator peak RSS"))
        .expect("a coordinator memory budget");
    assert!(
        !peak.measured.starts_with("0.0"),
        "coordinator RSS was never sampled: {}",
        peak.measured
    );

    // The markdown section replaces itself in place.
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("performance.md");
    std::fs::write(&doc, "# Performance\n\nHand-written intro.\n").unwrap();
    report.write_into(&doc).unwrap();
    report.write_into(&doc).unwrap();
    let text = std::fs::read_to_string(&doc).unwrap();
    assert!(text.starts_with("# Performance\n\nHand-written intro."));
    assert_eq!(text.matches(vigil_bench::report::BEGIN).count(), 1);
    assert!(text.contains("| CPUs (nproc) |"));
}

/// The proxy overhead benchmark in miniature: both paths measured, every
/// proxied request (warm-up included) captured and published, none dropped.
#[test]
fn proxy_overhead_measures_both_paths_and_captures_every_proxied_request() {
    let cfg = vigil_bench::proxy_overhead::OverheadConfig {
        rate: 100,
        seconds: 2,
        warmup_seconds: 1,
        sample: 1.0,
    };
    let result = vigil_bench::proxy_overhead::run(cfg).expect("the overhead bench runs");
    eprintln!("{}", result.markdown());
    assert_eq!(result.errors, 0);
    assert_eq!((result.direct.n, result.proxied.n), (100, 100));
    assert_eq!(
        result.captured, 150,
        "every proxied request, warm-up included"
    );
    assert_eq!(result.dropped, 0);
    assert!(result.direct.p99 > 0 && result.proxied.p99 > 0);
    // One memory sample a measured second, and one at the end.
    assert_eq!(result.rss_mib.len(), 3, "{:?}", result.rss_mib);
    assert!(
        result.rss_mib.iter().all(|&m| m > 1.0),
        "{:?}",
        result.rss_mib
    );
}
