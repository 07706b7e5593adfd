//! A smoke run of the benchmark harness in quick mode: a few hundred items
//! per scenario through the real `vigil` binary, stub and nats-server. It
//! checks that every measurement ran and made its row, on the commit it
//! states; it asserts nothing about speed (the benchmark itself,
//! `vigil-bench`, measures that).

use std::path::PathBuf;
use vigil_bench::BenchConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_bench_fills_every_row() {
    let cfg = BenchConfig::quick(PathBuf::from(env!("CARGO_BIN_EXE_vigil")));
    let report = vigil_bench::run(&cfg).await.expect("the quick bench runs");
    let table = report.table();
    eprintln!("{table}\n{}", report.budget_table());

    let rows = |prefix: &str| {
        report
            .rows
            .iter()
            .filter(|r| r.scenario.starts_with(prefix))
            .collect::<Vec<_>>()
    };
    let count = |prefix: &str| rows(prefix).len();
    assert_eq!(count("**headline**"), 1, "{table}");
    assert_eq!(count("ceiling, tokio client"), 1, "{table}");
    assert_eq!(count("ceiling, wrk"), 1, "{table}");
    assert_eq!(count("cache on, cold run"), 1, "{table}");
    assert_eq!(count("cache on, fully cached re-run"), 1, "{table}");
    assert_eq!(count("cache on, other prompts"), 1, "{table}");
    let nc = cfg.latency_concurrency.len();
    assert_eq!(count("latency-bound ceiling"), nc, "{table}");
    assert_eq!(count("latency-bound, "), nc, "{table}");
    assert_eq!(count("memory"), cfg.memory_items.len(), "{table}");
    let nw = cfg.scale_workers.len();
    assert_eq!(count("scale-out ceiling"), nw, "{table}");
    assert_eq!(count("scale-out, "), nw, "{table}");

    // Every row says which commit it ran on: this checkout's HEAD.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs");
    let head = String::from_utf8(head.stdout).unwrap().trim().to_string();
    assert!(!head.is_empty());
    // The binary names the commit it was built from (build.rs), which is how
    // a row of another binary (`--vigil`) says its own.
    let version = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("--version")
        .output()
        .expect("vigil runs");
    let version = String::from_utf8(version.stdout).unwrap();
    assert_eq!(
        vigil_bench::machine::stamped_commit(&version),
        Some(head.as_str()),
        "{version}"
    );
    for row in &report.rows {
        assert!(
            row.commit.starts_with(&head),
            "{}: {}",
            row.scenario,
            row.commit
        );
        assert!(table.contains(&row.scenario));
    }

    // wrk's row: measured where it is installed, says so where it is not.
    let wrk = rows("ceiling, wrk")[0];
    if vigil_bench::wrk::installed() {
        assert!(wrk.items > 0 && wrk.run_per_s.unwrap() > 0.0, "{table}");
    } else {
        assert_eq!(
            (wrk.items, wrk.reference.as_str()),
            (0, "wrk not installed")
        );
    }
    // Every other row measured something, by wall clock and (for vigil) by
    // the run's own duration, compared where there is something to compare.
    for row in report
        .rows
        .iter()
        .filter(|r| !r.scenario.starts_with("ceiling, wrk"))
    {
        assert!(row.items > 0, "{} measured nothing", row.scenario);
        assert!(
            row.wall_per_s.unwrap() > 0.0,
            "{} has no rate",
            row.scenario
        );
        if row.scenario.starts_with("**headline**") || row.scenario.starts_with("cache on") {
            assert!(
                row.ratio.is_some() && row.ratio_run.is_some(),
                "{}",
                row.scenario
            );
        }
    }
    // The headline and the cache rows ran over the distinct items asked for.
    let zero = cfg.zero_latency_items;
    assert_eq!(rows("**headline**")[0].items, zero);
    assert_eq!(rows("cache on, fully cached re-run")[0].items, zero);
    for &n in &cfg.memory_items {
        assert!(
            rows("memory").iter().any(|r| r.items == n),
            "no memory row with {n} items:\n{table}"
        );
    }
    // Scale-out names what bounds each run: the workers' concurrency while
    // workers × concurrency is below the backend's slots, then the slots.
    let (k, slots) = (cfg.scale_concurrency, cfg.scale_slots);
    for (w, row) in cfg.scale_workers.iter().zip(rows("scale-out, ")) {
        let bound = if w * k >= slots {
            format!("backend: {slots} slots")
        } else {
            format!("workers: {w} × {k} calls")
        };
        assert!(
            row.reference.contains(&bound),
            "{}: {}",
            row.scenario,
            row.reference
        );
    }
    assert!(
        report.notes.iter().all(|n| !n.contains("items failed")),
        "{:?}",
        report.notes
    );

    // Budgets: headline, cache, one per C, coordinator RSS, worker RSS,
    // time to first result.
    assert_eq!(
        report.budgets.len(),
        2 + nc + 3,
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

    // The generated section replaces itself in place and leaves the rest
    // (other sections, the soak's) as they were.
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("performance.md");
    let soak = format!(
        "{}\nsoak numbers\n{}",
        vigil_bench::soak::BEGIN,
        vigil_bench::soak::END
    );
    std::fs::write(
        &doc,
        format!("# Performance\n\nHand-written intro.\n\n## Hot-path changes (issue 15)\n\nkept\n\n{soak}\n"),
    )
    .unwrap();
    report.write_into(&doc).unwrap();
    report.write_into(&doc).unwrap();
    let text = std::fs::read_to_string(&doc).unwrap();
    assert!(text.starts_with("# Performance\n\nHand-written intro."));
    assert!(text.contains("## Hot-path changes (issue 15)\n\nkept\n"));
    assert!(text.contains(&soak));
    assert_eq!(text.matches(vigil_bench::report::BEGIN).count(), 1);
    assert!(text.contains("| CPUs (nproc) |"));
    assert!(text.contains(&format!("commit **{}", report.commit)));
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

/// The proxy soak in miniature: `vigil proxy` as its own process, every
/// proxied request captured, its RSS (not the bench's) read every second and
/// judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_soak_samples_the_proxy_process_and_judges_its_memory() {
    let cfg = vigil_bench::soak::SoakConfig {
        rate: 50,
        seconds: 4,
        warmup_seconds: 1,
        sample_every_s: 1,
    };
    let vigil = PathBuf::from(env!("CARGO_BIN_EXE_vigil"));
    let soak = vigil_bench::soak::run(&vigil, cfg)
        .await
        .expect("the soak runs");
    let text = soak.markdown();
    eprintln!("{text}");
    assert_eq!(soak.errors, 0);
    assert_eq!((soak.direct.n, soak.proxied.n), (200, 200));
    assert_eq!(
        soak.captured, 250,
        "every proxied request, warm-up included"
    );
    assert_eq!(soak.dropped, 0);
    // A reading at 0, 1, 2, 3 s and one at the end.
    assert_eq!(soak.rss.len(), 5, "{:?}", soak.rss);
    assert!(soak.rss.iter().all(|&(_, m)| m > 1.0), "{:?}", soak.rss);
    let f = soak.flatness.expect("enough samples for a verdict");
    assert_eq!(f, vigil_bench::soak::flatness(&soak.rss).unwrap());
    assert!(text.contains("| proxy RSS start |"));
}
