//! One module per subcommand.

mod run;
mod serve_model;
mod setup_streams;
mod stub;
mod validate;
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
    }
}
