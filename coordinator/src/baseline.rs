//! The baseline of a finished run and the comparison with it, before the
//! summary is published: the run's per-item scores stored for later
//! comparisons, the baseline chosen (explicit, pinned or latest passing),
//! the paired comparison with its manifest differences and flipped items
//! named, and a note when the candidate came mostly from the response
//! cache.
//!
//! Nothing here may lose a run: a failure to store scores or to find a
//! baseline is logged and recorded in the comparison's note, never fatal.

use crate::aggregate::Aggregator;
use crate::compare::{self, CompareOptions};
use crate::history::{self, BaselineSource};
use crate::render::Renderer;
use crate::scores_store::{self, RunScores};
use crate::suite::Suite;
use async_nats::jetstream;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use vigil_protocol::{Comparison, RunSummary};

/// Stores the run's per-item scores and fills `summary.comparison` with the
/// paired comparison against the baseline (`explicit`, else the pinned one,
/// else the latest passing run of the same suite and target). With
/// `compare` false (a shadow wave, [`crate::run::RunConfig::no_baseline`]) the
/// scores are stored and nothing is compared.
#[allow(clippy::too_many_arguments)] // the run's parts it reads; a struct would only rename them
pub async fn compare_with_baseline(
    js: &jetstream::Context,
    suite: &Suite,
    renderer: &Arc<Renderer>,
    aggregate: &Aggregator,
    summary: &mut RunSummary,
    explicit: Option<&str>,
    compare: bool,
    retry: std::time::Duration,
) {
    let mut scores = aggregate.run_scores(&summary.run_id);
    fill_missing_ids(suite, renderer, &mut scores).await;
    if let Err(e) = scores_store::store(js, &scores).await {
        tracing::warn!(run_id = %summary.run_id, error = %e, "could not store per-item scores");
    }
    if !compare {
        return;
    }
    let baseline = match history::resolve_baseline(
        js,
        &summary.suite,
        &summary.target,
        explicit,
        &summary.run_id,
        retry,
    )
    .await
    {
        Ok(Some(found)) => found,
        Ok(None) => {
            tracing::info!(run_id = %summary.run_id, "no baseline yet: nothing to compare with");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "baseline lookup failed");
            summary.comparison = Some(Comparison {
                baseline_run_id: explicit.unwrap_or_default().to_string(),
                baseline_source: BaselineSource::Flag.as_str().into(),
                note: Some(format!("baseline lookup failed: {e}")),
                ..Default::default()
            });
            return;
        }
    };
    let (base_summary, source) = baseline;
    let mut comparison = match scores_store::load(js, &base_summary.run_id).await {
        Ok(base_scores) => compare::compare(&base_scores, &scores, &CompareOptions::default()),
        Err(e) => Comparison {
            note: Some(format!("baseline scores unavailable: {e}")),
            ..Default::default()
        },
    };
    comparison.baseline_run_id = base_summary.run_id.clone();
    comparison.baseline_source = source.as_str().into();
    comparison.manifest_diffs =
        crate::manifest::diff_optional(base_summary.manifest.as_ref(), summary.manifest.as_ref());
    if !comparison.manifest_diffs.is_empty() {
        let fields: Vec<&str> = comparison
            .manifest_diffs
            .iter()
            .map(|d| d.field.as_str())
            .collect();
        tracing::warn!(baseline = %base_summary.run_id, differs = ?fields, "the baseline's manifest differs");
    }
    scores.ids.name_flipped(&mut comparison);
    name_flipped_items(suite, renderer, &mut comparison).await;
    note_cached_candidate(summary, &mut comparison);
    summary.comparison = Some(comparison);
}

/// The ids of the items at `wanted` indices, by one pass over the dataset
/// (only those are kept); none when the dataset cannot be read.
async fn dataset_ids(
    suite: &Suite,
    renderer: &Arc<Renderer>,
    wanted: BTreeSet<u64>,
) -> BTreeMap<u64, String> {
    if wanted.is_empty() {
        return BTreeMap::new();
    }
    let (spec, renderer) = (suite.dataset.clone(), renderer.clone());
    tokio::task::spawn_blocking(move || {
        let mut ids = BTreeMap::new();
        let Ok(records) = crate::dataset::open(&spec) else {
            return ids;
        };
        for record in records.flatten() {
            if wanted.contains(&record.index)
                && let Ok(id) = renderer.item_id(&record)
            {
                ids.insert(record.index, id);
            }
        }
        ids
    })
    .await
    .unwrap_or_default()
}

/// Gives the stored scores the ids of items that failed without a result
/// (deadline, max deliveries), so later comparisons pair them by id too.
async fn fill_missing_ids(suite: &Suite, renderer: &Arc<Renderer>, scores: &mut RunScores) {
    let total = scores.items_total;
    let wanted: BTreeSet<u64> = (0..total)
        .filter(|&i| scores.ids.get(i).is_none())
        .collect();
    for (index, id) in dataset_ids(suite, renderer, wanted).await {
        scores.ids.set(index, &id, total);
    }
}

/// Replaces the `#index` placeholders of flipped items that the results did
/// not name with the items' ids, by one pass over the dataset (only the
/// listed indices are kept).
async fn name_flipped_items(suite: &Suite, renderer: &Arc<Renderer>, comparison: &mut Comparison) {
    let wanted: BTreeSet<u64> = crate::item_ids::unnamed_flipped(comparison)
        .into_iter()
        .collect();
    let ids: BTreeMap<String, String> = dataset_ids(suite, renderer, wanted)
        .await
        .into_iter()
        .map(|(index, id)| (format!("#{index}"), id))
        .collect();
    for t in &mut comparison.tests {
        for name in t
            .flipped_to_fail
            .iter_mut()
            .chain(t.flipped_to_pass.iter_mut())
        {
            if let Some(id) = ids.get(name.as_str()) {
                *name = id.clone();
            }
        }
    }
}

/// Says in a comparison's note when most of the candidate's items (more
/// than half) came from the response cache: the comparison then looks at
/// stored outputs, not at what the model answers today.
///
/// ```
/// use vigil_protocol::{Comparison, RunSummary};
/// let s = RunSummary { items_total: 10, items_cached: 9, ..Default::default() };
/// let mut c = Comparison::default();
/// vigil_coordinator::baseline::note_cached_candidate(&s, &mut c);
/// assert!(c.note.unwrap().contains("9 of 10"));
/// let fresh = RunSummary { items_total: 10, items_cached: 5, ..Default::default() };
/// let mut c = Comparison::default();
/// vigil_coordinator::baseline::note_cached_candidate(&fresh, &mut c);
/// assert_eq!(c.note, None);
/// ```
pub fn note_cached_candidate(summary: &RunSummary, comparison: &mut Comparison) {
    if summary.items_cached * 2 <= summary.items_total {
        return;
    }
    let cached = format!(
        "the candidate is mostly cached: {} of {} items came from the response cache, \
         so this compares stored outputs, not fresh model calls",
        summary.items_cached, summary.items_total
    );
    comparison.note = Some(match comparison.note.take() {
        Some(note) => format!("{note}; {cached}"),
        None => cached,
    });
}
