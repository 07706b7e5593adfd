//! `vigil validate SUITE`: the suite, its templates, scorers and the whole
//! dataset are checked; nothing is published.

use crate::cli::ValidateArgs;
use crate::exit::{CommandResult, Exit, ExitContext};
use vigil_coordinator::render::Renderer;
use vigil_coordinator::suite::Suite;
use vigil_coordinator::validate::{DatasetCheck, check_dataset};

/// Everything `vigil run` checks before it publishes: the suite, its
/// templates, every scorer's configuration, and every dataset line rendered
/// for each target kind.
pub fn check_suite(suite: &Suite) -> Result<(Renderer, DatasetCheck), crate::exit::Failure> {
    let renderer = Renderer::new(suite).input_error()?;
    for spec in suite.scorer_specs() {
        vigil_worker::scorers::check(&spec).input_error()?;
    }
    let mut kinds: Vec<_> = suite.targets.iter().map(|t| t.kind).collect();
    kinds.dedup();
    let check = check_dataset(suite, &renderer, &kinds).input_error()?;
    Ok((renderer, check))
}

pub async fn run(args: ValidateArgs) -> CommandResult {
    let suite = Suite::load(&args.suite).input_error()?;
    let (_, check) = tokio::task::block_in_place(|| check_suite(&suite))?;
    println!(
        "ok: suite `{}`: {} items in {} (sha256 {}), {} target(s): {}, {} scorer(s): {}",
        suite.name,
        check.items,
        suite.dataset.path.display(),
        check.sha256,
        suite.targets.len(),
        suite
            .targets
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        suite.scorers.len(),
        suite
            .scorers
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
    Ok(Exit::Ok)
}
