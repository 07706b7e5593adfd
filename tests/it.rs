//! vigil's end-to-end tests, compiled into one test binary (`cargo test --test it`).
//!
//! Each file in `tests/` is one module here, and its tests are named after it:
//! `cargo test --test it e2e_run::` runs the tests of `tests/e2e_run.rs`,
//! `cargo test --test it fault_` every fault test. One binary instead of one per
//! file: each test binary links the whole dependency graph again, which cost
//! minutes of a cold build (docs/performance.md, "Build and test time").
//!
//! A new test file `tests/foo.rs` needs a `mod foo;` line below; it reaches the
//! shared helpers as `crate::common` (and `crate::common::cluster`,
//! `crate::common::otel`, `crate::local_common`).

mod common;
mod local_common;

mod bench_smoke;
mod broken_pipe;
mod e2e_cache;
mod e2e_capture_interop;
mod e2e_code_exec;
mod e2e_code_exec_forged;
mod e2e_datasets;
mod e2e_input_errors;
mod e2e_interop;
mod e2e_io_scorers;
mod e2e_monitor;
mod e2e_proxy;
mod e2e_recorded;
mod e2e_run;
mod e2e_shadow;
mod e2e_text_scorers;
mod e2e_verdicts;
mod examples_run;
mod export_memory;
mod export_parquet;
mod fault_backend;
mod fault_coordinator;
mod fault_nats;
mod fault_rate_limit;
mod fault_run_end;
mod fault_workers;
mod k8s_manifests;
mod local_e2e;
mod local_model;
mod local_serve_model;
mod metrics_scrape;
mod nats_cluster;
mod nats_secure_connect;
mod otel_grpc;
mod otel_judge;
mod otel_trace;
mod qa_history;
mod qa_no_repeats;
mod qa_report;
mod scale_workers;

/// With `autotests = false`, a file in a crate's `tests/` that its `it.rs`
/// does not name is never compiled, silently: every one must be a module.
#[test]
fn every_test_file_is_a_module_of_its_crates_it_rs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let crates = std::fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .chain([root.to_path_buf()]);
    let mut checked = 0;
    for dir in crates {
        let Ok(it) = std::fs::read_to_string(dir.join("tests/it.rs")) else {
            continue; // no folded tests/ (its files are test targets of their own)
        };
        for entry in std::fs::read_dir(dir.join("tests")).unwrap() {
            let path = entry.unwrap().path();
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if path.extension().is_some_and(|e| e == "rs") && name != "it" {
                assert!(
                    it.lines().any(|l| l.trim() == format!("mod {name};")),
                    "{} is not compiled: add `mod {name};` to {}",
                    path.display(),
                    dir.join("tests/it.rs").display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "only {checked} test files found");
}
