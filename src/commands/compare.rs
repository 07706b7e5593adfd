//! `vigil compare A B`: the paired comparison of two stored runs.

use crate::cli::CompareArgs;
use crate::commands::runs::history_error;
use crate::exit::{CommandResult, Exit, ExitContext};
use crate::session::open_store;
use vigil_coordinator::compare::{CompareOptions, compare};
use vigil_coordinator::{history, manifest, scores_store};
use vigil_protocol::Comparison;

pub async fn run(args: CompareArgs) -> CommandResult {
    let store = open_store(&args.store, "vigil-compare").await?;
    let base = history::find(&store.js, &args.baseline, store.js_timeout)
        .await
        .map_err(history_error)?;
    let cand = history::find(&store.js, &args.candidate, store.js_timeout)
        .await
        .map_err(history_error)?;
    let opts = CompareOptions {
        seed: args.seed,
        ..Default::default()
    };
    let mut comparison = match (
        scores_store::load(&store.js, &base.run_id).await,
        scores_store::load(&store.js, &cand.run_id).await,
    ) {
        (Ok(a), Ok(b)) => {
            let mut c = compare(&a, &b, &opts);
            b.ids.name_flipped(&mut c);
            a.ids.name_flipped(&mut c);
            c
        }
        (Err(e), _) | (_, Err(e)) => Comparison {
            note: Some(e.to_string()),
            ..Default::default()
        },
    };
    name_from_results(&store.js, &cand.run_id, &mut comparison).await;
    comparison.baseline_run_id = base.run_id.clone();
    comparison.baseline_source = "explicit".into();
    comparison.manifest_diffs =
        manifest::diff_optional(base.manifest.as_ref(), cand.manifest.as_ref());
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&comparison).infra_error()?
        );
    } else {
        out!(
            "{}",
            vigil_coordinator::report::table::render_comparison(&comparison, &cand.run_id, true)
        );
    }
    Ok(Exit::Ok)
}

/// Names flipped items that the stored scores could not (scores stored
/// before ids were) from the candidate's item results, while
/// `VIGIL_RESULTS` still holds them; otherwise they stay `#index`.
async fn name_from_results(
    js: &async_nats::jetstream::Context,
    run_id: &str,
    comparison: &mut Comparison,
) {
    let wanted = vigil_coordinator::item_ids::unnamed_flipped(comparison);
    let Some(&last) = wanted.iter().max() else {
        return;
    };
    let mut ids = vigil_coordinator::item_ids::ItemIds::default();
    let replayed = history::replay(js, run_id, Some(last + 1), |item| {
        if wanted.contains(&item.index) {
            ids.set(item.index, &item.id, last + 1);
        }
        Ok::<_, history::HistoryError>(())
    })
    .await;
    if replayed.is_err() {
        return;
    }
    ids.name_flipped(comparison);
}
