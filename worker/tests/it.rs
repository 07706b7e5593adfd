//! The integration tests of `vigil-worker`, compiled into one test binary
//! (`cargo test -p vigil-worker --test it`). Each file in `tests/` is one module
//! here and its tests are named after it: `cargo test -p vigil-worker --test it
//! backend::` runs the tests of `tests/backend.rs`. One binary instead of one
//! per file: each test binary links the whole dependency graph again
//! (docs/performance.md, "Build and test time"). A new file `tests/foo.rs` needs
//! a `mod foo;` line below.

mod backend;
mod cache_batch;
mod code_exec_humaneval;
mod code_exec_pass_at_k;
mod sandbox_hostile;
mod text_metrics_reference;
