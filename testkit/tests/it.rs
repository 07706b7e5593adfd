//! The integration tests of `vigil-testkit`, compiled into one test binary
//! (`cargo test -p vigil-testkit --test it`). Each file in `tests/` is one module
//! here and its tests are named after it: `cargo test -p vigil-testkit --test it
//! nats_server::` runs the tests of `tests/nats_server.rs`. One binary instead of one
//! per file: each test binary links the whole dependency graph again
//! (docs/performance.md, "Build and test time"). A new file `tests/foo.rs` needs
//! a `mod foo;` line below.

mod nats_server;
mod stub;
