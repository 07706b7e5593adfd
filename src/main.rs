//! `vigil`: continuous QA for open-source language models over NATS JetStream.
//!
//! The binary holds no evaluation logic: it parses arguments, starts the
//! embedded mode (a private nats-server plus in-process workers) and formats
//! output. Exit codes: 0 every gate held, 1 a gate failed, 2 usage or input
//! error, 3 infrastructure error (NATS unreachable, server too old, ...).

// Every print goes through `output` (`outln!`, `out!`, `errln!`): `println!`
// and `eprintln!` panic when a pipe is closed (`vigil runs list | head`).
#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod output;

mod cli;
mod commands;
mod exit;
mod health;
mod logging;
mod metrics_server;
mod nats_connect;
mod progress;
mod session;
mod signals;
mod telemetry;
mod topology_env;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: a worker's hot path allocates
/// and frees many small strings per item, and glibc's malloc was a quarter
/// of its CPU (docs/performance.md, "Hot-path changes").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let telemetry = logging::init(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return exit::Exit::Infrastructure.into();
        }
    };
    let outcome = runtime.block_on(commands::dispatch(cli));
    // Background tasks (workers, the embedded server's guards) end with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    // Off the runtime: the exporter flushes on its own thread.
    telemetry.shutdown();
    match outcome {
        Ok(code) => code.into(),
        Err(failure) => {
            errln!("error: {:#}", failure.error);
            failure.exit.into()
        }
    }
}
