//! `vigil validate SUITE`: the suite, its templates, scorers and the whole
//! dataset are checked; nothing is published.

use crate::cli::ValidateArgs;
use crate::exit::{CommandResult, Exit, ExitContext};
use vigil_coordinator::suite::Suite;
use vigil_coordinator::validate::check_suite;

pub async fn run(args: ValidateArgs) -> CommandResult {
    let mut suite = Suite::load(&args.suite).input_error()?;
    // A named dataset is read from NATS (--nats, or the embedded store).
    let _fetched = match suite.dataset.named {
        Some(_) => {
            let store = crate::session::open_store(&args.store, "vigil-validate").await?;
            let fetched =
                crate::commands::dataset::fetch_for_suite(&store.js, &mut suite, &[]).await?;
            Some((store, fetched))
        }
        None => None,
    };
    let (_, check) =
        tokio::task::block_in_place(|| check_suite(&suite, vigil_worker::scorers::check))
            .input_error()?;
    outln!(
        "ok: suite `{}`: {} items in {} (sha256 {}), {} target(s): {}, {} scorer(s): {}",
        suite.name,
        check.items,
        match &suite.dataset.named {
            Some(n) => format!("dataset {}@{}", n.name, n.version),
            None => suite.dataset.path.display().to_string(),
        },
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
