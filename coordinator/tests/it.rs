//! The integration tests of `vigil-coordinator`, compiled into one test binary
//! (`cargo test -p vigil-coordinator --test it`). Each file in `tests/` is one module
//! here and its tests are named after it: `cargo test -p vigil-coordinator --test it
//! aggregate_props::` runs the tests of `tests/aggregate_props.rs`. One binary instead of one
//! per file: each test binary links the whole dependency graph again
//! (docs/performance.md, "Build and test time"). A new file `tests/foo.rs` needs
//! a `mod foo;` line below.

mod aggregate_props;
mod compare_calibration;
mod compare_gates;
mod compare_paired;
mod dataset_read;
mod dataset_store;
mod drift_calibration;
mod gates_eval;
mod item_ids;
mod render_items;
mod shadow_stopping;
mod stats_props;
mod suite_errors;
mod suite_load;
mod suite_text_kinds;
mod table_render;
mod validate_dataset;
