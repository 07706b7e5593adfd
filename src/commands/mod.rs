//! One module per subcommand.

mod compare;
mod dataset;
mod export;
mod export_parquet;
mod monitor;
mod proxy;
mod report;
mod run;
mod runs;
mod serve_model;
mod setup_streams;
mod shadow;
mod stub;
mod validate;
mod watch;
mod worker;

use crate::cli::{Cli, Command};
use crate::exit::CommandResult;

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli) -> CommandResult {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Validate(args) => validate::run(args).await,
        Command::SetupStreams(args) => setup_streams::run(args).await,
        Command::Stub(args) => stub::run(args).await,
        Command::ServeModel(args) => serve_model::run(args).await,
        Command::Runs(args) => runs::run(args).await,
        Command::Compare(args) => compare::run(args).await,
        Command::Watch(args) => watch::run(args).await,
        Command::Report(args) => report::run(args).await,
        Command::Export(args) => export::run(args).await,
        Command::Proxy(args) => proxy::run(args).await,
        Command::Dataset(args) => dataset::run(args).await,
        Command::Monitor(args) => monitor::run(args).await,
        Command::Shadow(args) => shadow::run(args).await,
    }
}
