//! Incremental aggregation of job results into a [`RunSummary`].
//!
//! Memory does not grow with the outputs (DESIGN §4.6): per run the
//! aggregator keeps a bitset of counted items ([`IndexSet`], 1 bit per
//! item), per scorer a [`Welford`] accumulator and one `f32` per item (for
//! paired comparison with a baseline), one latency histogram, and counters;
//! per item its id (compactly, [`ItemIds`]) so stored comparisons can name
//! flipped items.
//! Outputs, details and error messages are never kept.

use crate::index_set::IndexSet;
use crate::item_ids::ItemIds;
use crate::scores_store::{RunScores, ScorerScores};
use crate::slices::SliceAccumulator;
use crate::stats::{LatencyRecorder, Welford, mean_interval, wilson_interval};
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;
use vigil_protocol::{ErrorKind, JobResult, RunSummary, ScoreSummary, TokenTotals};

/// The confidence level of every interval in a summary.
const CONFIDENCE: f64 = 0.95;

/// What [`Aggregator::add_job_result`] did with a job's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddOutcome {
    /// Items counted for the first time.
    pub new_items: u64,
    /// Items already counted (a redelivered or replayed job), ignored.
    pub duplicates: u64,
    /// Items whose index is not below `items_total`, ignored.
    pub out_of_range: u64,
}

/// The parts of a summary the aggregator does not know itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryMeta {
    /// The run (a UUID).
    pub run_id: String,
    /// The suite's name.
    pub suite: String,
    /// The target's name.
    pub target: String,
    /// The model the target asked for.
    pub model: String,
    /// When the run started.
    pub started_at: SystemTime,
    /// When the run finished (or now, for an interim summary).
    pub finished_at: SystemTime,
}

/// One scorer's running state.
#[derive(Debug, Clone, Default)]
struct ScorerAgg {
    values: Welford,
    passed: u64,
    /// One value per item, NaN where the item has no score from this scorer;
    /// allocated on the scorer's first score.
    item_scores: Option<Vec<f32>>,
    /// Bit `i` set when item `i` passed this scorer; allocated with `item_scores`.
    item_passed: Option<Vec<u64>>,
    /// Summed BLEU statistics, once an item of this scorer carries them.
    bleu: Option<crate::text_metrics::BleuAcc>,
    /// Confusion matrix, once an item of this scorer carries labels.
    confusion: Option<crate::text_metrics::ConfusionAcc>,
}

/// Folds job results into per-run totals, counting every item exactly once.
///
/// ```
/// use vigil_coordinator::aggregate::{Aggregator, SummaryMeta};
/// use vigil_protocol::{ItemResult, JobResult, Score};
/// let mut agg = Aggregator::new(2, vec!["exact".into()]);
/// let item = |index, value: f64| ItemResult {
///     index,
///     scores: vec![Score { scorer: "exact".into(), value, passed: value == 1.0, ..Default::default() }],
///     ..Default::default()
/// };
/// let job = JobResult { items: vec![item(0, 1.0), item(1, 0.0)], ..Default::default() };
/// assert_eq!(agg.add_job_result(&job).new_items, 2);
/// assert_eq!(agg.add_job_result(&job).duplicates, 2); // a redelivery changes nothing
/// assert!(agg.is_complete());
/// let now = std::time::SystemTime::now();
/// let meta = SummaryMeta { run_id: "r".into(), suite: "s".into(), target: "t".into(),
///     model: "m".into(), started_at: now, finished_at: now };
/// assert_eq!(agg.summary(&meta).scores["exact"].pass_rate, 0.5);
/// ```
#[derive(Debug, Clone)]
pub struct Aggregator {
    items_total: u64,
    /// The items counted (scored or failed).
    counted: IndexSet,
    done: u64,
    failed: u64,
    cached: u64,
    scorer_names: Vec<String>,
    scorer_index: HashMap<String, usize>,
    scorers: Vec<ScorerAgg>,
    errors: BTreeMap<String, u64>,
    latency: LatencyRecorder,
    tokens: TokenTotals,
    /// Per-item scratch: which scorers already gave a score to the current item.
    seen: Vec<bool>,
    /// Per-slice statistics by item tag.
    slices: SliceAccumulator,
    /// Model ids the backend reported, with counts (at most 16 distinct).
    response_models: BTreeMap<String, u64>,
    /// Each counted item's id.
    ids: ItemIds,
}

impl Aggregator {
    /// An aggregator for a run of `items_total` items scored by `scorer_names`
    /// (a repeated name counts once).
    pub fn new(items_total: u64, scorer_names: Vec<String>) -> Self {
        let mut names = Vec::with_capacity(scorer_names.len());
        let mut scorer_index = HashMap::new();
        for name in scorer_names {
            if !scorer_index.contains_key(&name) {
                scorer_index.insert(name.clone(), names.len());
                names.push(name);
            }
        }
        Self {
            items_total,
            counted: IndexSet::with_capacity(items_total),
            done: 0,
            failed: 0,
            cached: 0,
            scorers: vec![ScorerAgg::default(); names.len()],
            seen: vec![false; names.len()],
            slices: SliceAccumulator::new(items_total, names.len()),
            response_models: BTreeMap::new(),
            scorer_names: names,
            scorer_index,
            errors: BTreeMap::new(),
            latency: LatencyRecorder::new(),
            tokens: TokenTotals::default(),
            ids: ItemIds::default(),
        }
    }

    /// Marks `index` counted; false if it already was.
    fn mark(&mut self, index: u64) -> bool {
        if !self.counted.insert(index) {
            return false;
        }
        self.done += 1;
        true
    }

    /// Counts item `index` as failed with `kind`. A model-side failure
    /// ([`ErrorKind::is_model_side`]) is also a 0, not passed, in every
    /// scorer's per-item values, so paired comparisons count it as a fail;
    /// other failures stay without a score there (left out of the pairs).
    fn count_error(&mut self, index: u64, kind: &ErrorKind) {
        self.failed += 1;
        *self.errors.entry(kind.as_str().to_string()).or_insert(0) += 1;
        if kind.is_model_side() {
            let n = self.items_total as usize;
            for agg in &mut self.scorers {
                agg.per_item(n).0[index as usize] = 0.0;
            }
        }
    }

    /// Adds a job's results; items already counted (same index) are duplicates
    /// and ignored, as are indices not below `items_total`. Returns the counts.
    ///
    /// A scored item adds its scores (a scorer missing from the item is not
    /// counted for that scorer; a scorer not in the run's list, a second score
    /// from the same scorer and a non-finite value are ignored; values are
    /// clamped to [0, 1]), its backend latency unless the output was cached,
    /// its tokens and its cached flag. A failed item adds to `errors` under
    /// its kind.
    pub fn add_job_result(&mut self, result: &JobResult) -> AddOutcome {
        let mut outcome = AddOutcome::default();
        for item in &result.items {
            if item.index >= self.items_total {
                outcome.out_of_range += 1;
                continue;
            }
            if !self.mark(item.index) {
                outcome.duplicates += 1;
                continue;
            }
            outcome.new_items += 1;
            self.ids.set(item.index, &item.id, self.items_total);
            self.tokens.input += item.usage.input;
            self.tokens.output += item.usage.output;
            if item.cached {
                self.cached += 1;
            }
            if let Some(error) = &item.error {
                // Its tags still place it in its slices, for the per-slice
                // paired tests (the slice summaries count scored items only).
                self.slices.begin_item(item.index, &item.tags);
                self.count_error(item.index, &error.kind);
                continue;
            }
            if !item.cached {
                self.latency.record_ms(item.latency_ms);
            }
            if let Some(model) = &item.response_model {
                // One lookup, and the name copied only when it is new.
                let room = self.response_models.len() < 16;
                match self.response_models.get_mut(model) {
                    Some(n) => *n += 1,
                    None if room => {
                        self.response_models.insert(model.clone(), 1);
                    }
                    None => {}
                }
            }
            self.slices.begin_item(item.index, &item.tags);
            self.seen.iter_mut().for_each(|s| *s = false);
            for score in &item.scores {
                let Some(&s) = self.scorer_index.get(&score.scorer) else {
                    continue;
                };
                if self.seen[s] || !score.value.is_finite() {
                    continue;
                }
                self.seen[s] = true;
                let value = score.value.clamp(0.0, 1.0);
                let agg = &mut self.scorers[s];
                agg.values.push(value);
                if score.passed {
                    agg.passed += 1;
                }
                let (per_item, bits) = agg.per_item(self.items_total as usize);
                per_item[item.index as usize] = value as f32;
                if score.passed {
                    bits[(item.index / 64) as usize] |= 1 << (item.index % 64);
                }
                self.slices.add_score(s, value, score.passed);
                if let Some(stats) = &score.bleu {
                    agg.bleu.get_or_insert_default().add(stats);
                }
                if let (Some(predicted), Some(gold)) = (&score.label, &score.gold_label) {
                    agg.confusion.get_or_insert_default().add(gold, predicted);
                }
            }
        }
        outcome
    }

    /// Records items that never got a result (deadline, max deliveries) as
    /// failed with `kind`, unless already counted or out of range. The pairs
    /// are (index, item id); the id and `message` are only logged. Returns how
    /// many items were newly failed.
    pub fn fail_items(
        &mut self,
        indices: impl IntoIterator<Item = (u64, String)>,
        kind: ErrorKind,
        message: &str,
    ) -> u64 {
        let mut newly = 0;
        for (index, id) in indices {
            if index >= self.items_total || !self.mark(index) {
                continue;
            }
            self.ids.set(index, &id, self.items_total);
            tracing::trace!(index, item_id = %id, kind = %kind, "item failed without a result");
            self.count_error(index, &kind);
            newly += 1;
        }
        if newly > 0 {
            tracing::debug!(items = newly, kind = %kind, reason = message, "items recorded as failed");
        }
        newly
    }

    /// Ends the run at `n` items, for a run that learns its size only when it
    /// ends (a monitor's window, created for its most items, whose items are
    /// indexes `0..n`). A total above the current one is ignored.
    pub fn set_items_total(&mut self, n: u64) {
        self.items_total = self.items_total.min(n);
    }

    /// Whether item `index` is counted (scored or failed).
    pub fn is_counted(&self, index: u64) -> bool {
        index < self.items_total && self.counted.contains(index)
    }

    /// Items counted, scored or failed.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Items counted as failed.
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// Items counted as scored.
    pub fn scored(&self) -> u64 {
        self.done - self.failed
    }

    /// The run's item count.
    pub fn items_total(&self) -> u64 {
        self.items_total
    }

    /// The run's scorers, in order, without repeats.
    pub fn scorer_names(&self) -> &[String] {
        &self.scorer_names
    }

    /// Whether every item is counted.
    pub fn is_complete(&self) -> bool {
        self.done == self.items_total
    }

    /// The indices not yet counted, ascending.
    pub fn missing(&self) -> impl Iterator<Item = u64> + '_ {
        self.counted.missing(self.items_total)
    }

    /// The per-item values of `scorer`, indexed by item, NaN where the item
    /// has no score from it. `None` for a scorer not in the run; an empty
    /// slice for a scorer that has no score yet.
    pub fn item_scores(&self, scorer: &str) -> Option<&[f32]> {
        let &s = self.scorer_index.get(scorer)?;
        Some(self.scorers[s].item_scores.as_deref().unwrap_or(&[]))
    }

    /// The model ids the backend reported, most frequent first.
    pub fn response_models(&self) -> Vec<String> {
        let mut models: Vec<(&String, &u64)> = self.response_models.iter().collect();
        models.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        models.into_iter().map(|(m, _)| m.clone()).collect()
    }

    /// Every per-item number of the run, for the scores store and paired
    /// comparison.
    pub fn run_scores(&self, run_id: &str) -> RunScores {
        let n = self.items_total as usize;
        RunScores {
            run_id: run_id.to_string(),
            items_total: self.items_total,
            scorers: self
                .scorer_names
                .iter()
                .zip(&self.scorers)
                .map(|(name, agg)| ScorerScores {
                    name: name.clone(),
                    values: agg.item_scores.clone().unwrap_or_else(|| vec![f32::NAN; n]),
                    passed: agg
                        .item_passed
                        .clone()
                        .unwrap_or_else(|| vec![0; n.div_ceil(64)]),
                })
                .collect(),
            tags: self.slices.columns(),
            ids: self.ids.clone(),
        }
    }

    /// The run summary as of now. `gates` is empty and `passed` false: the
    /// gates fill them in (`gates::apply`).
    pub fn summary(&self, meta: &SummaryMeta) -> RunSummary {
        let duration_s = meta
            .finished_at
            .duration_since(meta.started_at)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let items_per_s = if duration_s > 0.0 {
            self.done as f64 / duration_s
        } else {
            0.0
        };
        let scores = self
            .scorer_names
            .iter()
            .zip(&self.scorers)
            .map(|(name, agg)| (name.clone(), score_summary(agg, self.failed)))
            .collect();
        let slices = self
            .slices
            .stats()
            .into_iter()
            .map(|(tag, by_value)| {
                let by_value = by_value
                    .into_iter()
                    .map(|(value, per_scorer)| {
                        let scores = self
                            .scorer_names
                            .iter()
                            .zip(per_scorer)
                            .map(|(name, (w, passed))| (name.clone(), summarize(w, *passed)))
                            .collect();
                        (value.to_string(), scores)
                    })
                    .collect();
                (tag.to_string(), by_value)
            })
            .collect();
        RunSummary {
            schema: vigil_protocol::SCHEMA_VERSION,
            run_id: meta.run_id.clone(),
            suite: meta.suite.clone(),
            target: meta.target.clone(),
            model: meta.model.clone(),
            started_at: humantime::format_rfc3339_millis(meta.started_at).to_string(),
            finished_at: humantime::format_rfc3339_millis(meta.finished_at).to_string(),
            duration_s,
            items_total: self.items_total,
            items_scored: self.scored(),
            items_failed: self.failed,
            items_cached: self.cached,
            errors: self.errors.clone(),
            latency_ms: self.latency.summary(),
            tokens: self.tokens,
            items_per_s,
            scores,
            gates: Vec::new(),
            passed: false,
            vigil_version: env!("CARGO_PKG_VERSION").to_string(),
            trace_id: None,
            manifest: None,
            slices,
            comparison: None,
            shadow: None,
        }
    }
}

impl ScorerAgg {
    /// The per-item values and pass bits of a run of `n` items, allocated
    /// (no score, not passed) on first use.
    fn per_item(&mut self, n: usize) -> (&mut Vec<f32>, &mut Vec<u64>) {
        (
            self.item_scores.get_or_insert_with(|| vec![f32::NAN; n]),
            self.item_passed
                .get_or_insert_with(|| vec![0; n.div_ceil(64)]),
        )
    }
}

fn score_summary(agg: &ScorerAgg, failed: u64) -> ScoreSummary {
    ScoreSummary {
        corpus_bleu: agg.bleu.as_ref().map(|b| b.corpus()),
        classification: agg.confusion.as_ref().map(|c| c.summary()),
        ..summarize_with_failed(&agg.values, agg.passed, failed)
    }
}

/// A score summary from a scorer's values and pass count, over the scored
/// items only (per-slice summaries): the headline figures equal the
/// `*_scored` ones.
pub fn summarize(values: &Welford, passed: u64) -> ScoreSummary {
    summarize_with_failed(values, passed, 0)
}

/// A score summary over every item: the scorer's values and pass count plus
/// `failed` items that count as 0 and not passed in the headline figures
/// (`mean`, `pass_rate`, their intervals, `n`); the `*_scored` figures
/// leave them out.
///
/// ```
/// use vigil_coordinator::aggregate::summarize_with_failed;
/// use vigil_coordinator::stats::Welford;
/// let mut w = Welford::new();
/// for _ in 0..7 { w.push(1.0); }
/// let s = summarize_with_failed(&w, 7, 3);
/// assert_eq!((s.n, s.n_scored, s.pass_rate, s.pass_rate_scored), (10, 7, 0.7, 1.0));
/// assert!((s.mean - 0.7).abs() < 1e-12 && s.mean_scored == 1.0);
/// ```
pub fn summarize_with_failed(values: &Welford, passed: u64, failed: u64) -> ScoreSummary {
    let rate = |passed: u64, n: u64| {
        if n == 0 {
            0.0
        } else {
            passed as f64 / n as f64
        }
    };
    let n_scored = values.count();
    let (mean_scored_ci_low, mean_scored_ci_high) = mean_interval(values, CONFIDENCE);
    let (pass_rate_scored_ci_low, pass_rate_scored_ci_high) =
        wilson_interval(passed, n_scored, CONFIDENCE);
    let mut all = Welford::constant(0.0, failed);
    all.merge(values);
    let n = all.count();
    let (mean_ci_low, mean_ci_high) = mean_interval(&all, CONFIDENCE);
    let (ci_low, ci_high) = wilson_interval(passed, n, CONFIDENCE);
    ScoreSummary {
        mean: all.mean(),
        mean_ci_low,
        mean_ci_high,
        pass_rate: rate(passed, n),
        ci_low,
        ci_high,
        n,
        passed,
        mean_scored: values.mean(),
        mean_scored_ci_low,
        mean_scored_ci_high,
        pass_rate_scored: rate(passed, n_scored),
        pass_rate_scored_ci_low,
        pass_rate_scored_ci_high,
        n_scored,
        ..Default::default()
    }
}
