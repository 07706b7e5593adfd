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
mod e2e_capture_interop;
mod e2e_code_exec;
mod e2e_code_exec_forged;
mod e2e_input_errors;
mod e2e_interop;
mod e2e_io_scorers;
mod e2e_proxy;
mod e2e_run;
mod e2e_text_scorers;
mod e2e_verdicts;
mod examples_run;
mod export_parquet;
mod fault_backend;
mod fault_coordinator;
mod fault_nats;
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
