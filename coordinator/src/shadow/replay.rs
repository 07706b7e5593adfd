//! `vigil shadow`'s driver: captures replayed in waves, each wave one run of
//! production (a `recorded` target answering with the captured responses)
//! and one of the candidate, both through the worker pool; the pairs feed
//! the [`StoppingRule`] in capture order, and no further wave is dispatched
//! once it has stopped.

use super::ShadowError;
use super::captures::{CaptureSource, capture_record};
use super::rule::{Decision, PairedMetric, StoppingRule};
use crate::aggregate::{Aggregator, SummaryMeta};
use crate::run::{self, RunConfig};
use crate::suite::{DatasetFormat, DatasetSpec, Suite, SuiteError, SuiteFormat, TargetConfig};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use vigil_nats::topology::TopologyConfig;
use vigil_protocol::scorers::io::JudgeMode;
use vigil_protocol::{EndpointKind, ItemResult, JobResult, RunSummary, ScorerKind, ShadowVerdict};

/// The name of production's target in a shadow's runs.
pub const PRODUCTION_TARGET: &str = "production";

/// Default items per wave.
pub const DEFAULT_WAVE: u64 = 25;

/// How to shadow a candidate.
#[derive(Debug, Clone)]
pub struct ShadowConfig {
    /// The shadow suite ([`load_suite`]): the candidate target, the
    /// scorers and the prompt (its dataset is replaced by the captures).
    pub suite: Suite,
    /// The candidate: a target of the suite.
    pub candidate: String,
    /// The app whose captures are replayed.
    pub app: String,
    /// Captures stored at most this long ago.
    pub since: Duration,
    /// Most captures replayed.
    pub budget: u64,
    /// Captures per wave.
    pub wave: u64,
    /// The rule's error rate.
    pub alpha: f64,
    /// What the rule observes; `None`: the pairwise judges' verdict when the
    /// suite has a pairwise `llm_judge`, else the win rate.
    pub metric: Option<PairedMetric>,
    /// Where the waves' dataset files are written (a fresh directory).
    pub work_dir: PathBuf,
    /// Stream and consumer settings.
    pub topology: TopologyConfig,
    /// See [`RunConfig::reconcile_after`].
    pub reconcile_after: Duration,
    /// Never answer the candidate from the response cache.
    pub no_cache: bool,
}

/// What a shadow produced.
#[derive(Debug, Clone)]
pub struct ShadowOutcome {
    /// The verdict (also in `candidate.shadow`).
    pub verdict: ShadowVerdict,
    /// Production over every replayed capture.
    pub production: RunSummary,
    /// The candidate over every replayed capture, with the verdict.
    pub candidate: RunSummary,
}

/// The prompt a shadow suite gets when it has none: the capture's system
/// message and prompt, as chat or as a completion.
const DEFAULT_PROMPT_YAML: &str =
    "prompt: { system: \"{{ system }}\", user: \"{{ prompt }}\", completion: \"{{ prompt }}\" }\n";
const DEFAULT_PROMPT_TOML: &str =
    "[prompt]\nsystem = \"{{ system }}\"\nuser = \"{{ prompt }}\"\ncompletion = \"{{ prompt }}\"\n";

/// Reads a shadow suite: an ordinary suite file whose `dataset` and `prompt`
/// may be left out (the captures replace the dataset; the prompt defaults to
/// [`DEFAULT_PROMPT_YAML`]'s). Missing keys are appended after the file's
/// last line before it is checked, so errors keep their line numbers.
pub fn load_suite(path: &Path) -> Result<Suite, SuiteError> {
    let format = SuiteFormat::from_path(path).ok_or_else(|| SuiteError::Format {
        path: path.to_path_buf(),
    })?;
    let mut text = std::fs::read_to_string(path).map_err(|source| SuiteError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // Unparseable text is left to the suite parser, which says where.
    let has = |key: &str| match format {
        SuiteFormat::Yaml => serde_norway::from_str::<serde_norway::Value>(&text)
            .ok()
            .is_none_or(|v| v.get(key).is_some()),
        SuiteFormat::Toml => toml::from_str::<toml::Table>(&text)
            .ok()
            .is_none_or(|t| t.contains_key(key)),
    };
    let (has_dataset, has_prompt) = (has("dataset"), has("prompt"));
    let mut extra = String::from("\n");
    if !has_dataset {
        extra.push_str(match format {
            SuiteFormat::Yaml => "dataset: { path: captures.jsonl, id_field: id }\n",
            SuiteFormat::Toml => "[dataset]\npath = \"captures.jsonl\"\nid_field = \"id\"\n",
        });
    }
    if !has_prompt {
        extra.push_str(match format {
            SuiteFormat::Yaml => DEFAULT_PROMPT_YAML,
            SuiteFormat::Toml => DEFAULT_PROMPT_TOML,
        });
    }
    text.push_str(&extra);
    Suite::from_str(&text, format, path)
}

/// The suite of one side of a shadow: the captures' dataset and prompt,
/// one target, and the scorers of that side (production is not judged
/// pairwise against itself).
fn side_suite(base: &Suite, target: TargetConfig, dataset: PathBuf) -> Suite {
    let mut suite = base.clone();
    suite.dataset = DatasetSpec {
        path: dataset,
        format: DatasetFormat::Jsonl,
        id_field: Some("id".into()),
        tags: Vec::new(),
        named: None,
    };
    if target.kind == EndpointKind::Recorded {
        suite.scorers.retain(|s| !is_pairwise(&s.kind));
    }
    suite.targets = vec![target];
    // The verdict is the shadow's call, not the suite's gates.
    suite.gates.clear();
    suite
}

fn is_pairwise(kind: &ScorerKind) -> bool {
    matches!(kind, ScorerKind::LlmJudge(p) if p.mode == JudgeMode::Pairwise)
}

/// Production as a target: the captured responses, from the `response` field.
fn production_target(model: &str) -> TargetConfig {
    TargetConfig {
        name: PRODUCTION_TARGET.into(),
        kind: EndpointKind::Recorded,
        base_url: String::new(),
        model: model.into(),
        api_key_env: None,
        params: Default::default(),
        timeout_s: 60.0,
        max_concurrency: 32,
        max_retries: 0,
        model_path: None,
        output_field: Some("response".into()),
    }
}

/// Checks a shadow's configuration before anything is read or published.
pub fn check(config: &ShadowConfig) -> Result<(PairedMetric, Vec<String>), ShadowError> {
    let suite = &config.suite;
    let candidate = run::find_target(suite, &config.candidate)
        .map_err(|e| ShadowError::Config(e.to_string()))?;
    if candidate.kind == EndpointKind::Recorded {
        return Err(ShadowError::Config(format!(
            "the candidate `{}` is a recorded target: shadow needs a model to call",
            candidate.name
        )));
    }
    if candidate.name == PRODUCTION_TARGET {
        return Err(ShadowError::Config(format!(
            "the candidate cannot be named `{PRODUCTION_TARGET}`: that name is production's in a shadow"
        )));
    }
    if config.budget == 0 || config.wave == 0 {
        return Err(ShadowError::Config(
            "the budget and the wave size must be at least 1".into(),
        ));
    }
    let judges: Vec<String> = suite
        .scorers
        .iter()
        .filter(|s| is_pairwise(&s.kind))
        .map(|s| s.name.clone())
        .collect();
    let others: Vec<String> = suite
        .scorers
        .iter()
        .filter(|s| !is_pairwise(&s.kind))
        .map(|s| s.name.clone())
        .collect();
    let metric = config.metric.unwrap_or(if judges.is_empty() {
        PairedMetric::WinRate
    } else {
        PairedMetric::Judge
    });
    let scorers = if metric == PairedMetric::Judge {
        judges
    } else {
        others
    };
    if scorers.is_empty() {
        return Err(ShadowError::Config(match metric {
            PairedMetric::Judge => format!(
                "suite `{}`: --compare judge needs a pairwise llm_judge scorer (mode: pairwise, reference: \"{{{{ response }}}}\")",
                suite.name
            ),
            _ => format!(
                "suite `{}`: --compare {metric} needs a reference-free scorer that is not a pairwise judge",
                suite.name
            ),
        }));
    }
    // The rule's own checks (alpha).
    StoppingRule::new(metric, config.alpha, config.budget)?;
    Ok((metric, scorers))
}

/// Runs a shadow to its verdict.
pub async fn shadow(
    client: async_nats::Client,
    config: ShadowConfig,
    shutdown: CancellationToken,
) -> Result<ShadowOutcome, ShadowError> {
    let (metric, compared) = check(&config)?;
    let candidate = run::find_target(&config.suite, &config.candidate)
        .map_err(|e| ShadowError::Config(e.to_string()))?
        .clone();
    let js = vigil_nats::topology::ensure_topology(&client, &config.topology, &config.suite.pool)
        .await
        .map_err(|e| ShadowError::Nats(e.to_string()))?;
    let mut source = CaptureSource::open(&js, &config.app, config.since).await?;
    std::fs::create_dir_all(&config.work_dir).map_err(|e| io(&config.work_dir, e))?;

    let shadow_id = uuid::Uuid::now_v7().to_string();
    let started_at = SystemTime::now();
    let mut rule = StoppingRule::new(metric, config.alpha, config.budget)?;
    let scorer_names: Vec<String> = config
        .suite
        .scorers
        .iter()
        .map(|s| s.name.clone())
        .collect();
    // Every replayed item of each side, for the combined summaries.
    let mut production_items: Vec<ItemResult> = Vec::new();
    let mut candidate_items: Vec<ItemResult> = Vec::new();
    let (mut production_runs, mut candidate_runs) = (Vec::new(), Vec::new());
    let mut production_model = String::new();
    let mut dispatched = 0u64;
    let mut skipped = 0u64;

    while !rule.stopped() {
        let n = config.wave.min(config.budget - dispatched) as usize;
        if n == 0 {
            rule.exhaust();
            break;
        }
        let batch = source.next_batch(n).await?;
        if batch.is_empty() && dispatched == 0 {
            let detail = if source.skipped.is_empty() {
                String::new()
            } else {
                format!(" (not replayable: {:?})", source.skipped)
            };
            return Err(ShadowError::NoCaptures {
                app: config.app.clone(),
                detail,
            });
        }
        if batch.is_empty() {
            rule.exhaust();
            break;
        }
        if production_model.is_empty() {
            production_model = batch[0].model.clone().unwrap_or_default();
        }
        let wave_index = production_runs.len();
        let path = config.work_dir.join(format!("wave-{wave_index:05}.jsonl"));
        write_wave(&path, &batch)?;
        let sides = [
            side_suite(
                &config.suite,
                production_target(&production_model),
                path.clone(),
            ),
            side_suite(&config.suite, candidate.clone(), path),
        ];
        let runs = sides.map(|suite| {
            let target = suite.targets[0].name.clone();
            let mut run_config = RunConfig::new(Arc::new(suite), target);
            run_config.topology = config.topology.clone();
            run_config.reconcile_after = config.reconcile_after;
            run_config.no_cache = config.no_cache;
            run_config.no_baseline = true;
            run::run(client.clone(), run_config, shutdown.clone())
        });
        let [production_run, candidate_run] = runs;
        let (production_run, candidate_run) = tokio::join!(production_run, candidate_run);
        let (production_run, candidate_run) = (production_run?, candidate_run?);
        dispatched += batch.len() as u64;
        let production_wave = wave_results(&js, &production_run.summary).await?;
        let candidate_wave = wave_results(&js, &candidate_run.summary).await?;
        production_runs.push(production_run.summary.run_id);
        candidate_runs.push(candidate_run.summary.run_id);
        tracing::info!(%shadow_id, wave = wave_index, items = batch.len(), "shadow wave evaluated");

        // Pairs by item id (the capture id), in capture order.
        let by_id: HashMap<&str, &ItemResult> =
            production_wave.iter().map(|i| (i.id.as_str(), i)).collect();
        for item in &candidate_wave {
            if rule.stopped() {
                break;
            }
            let observation = by_id
                .get(item.id.as_str())
                .and_then(|p| observe(metric, &compared, item, p));
            match observation {
                Some(x) => {
                    rule.observe_x(x)?;
                }
                None => skipped += 1,
            }
        }
        let offset = production_items.len() as u64;
        production_items.extend(reindexed(production_wave, offset));
        candidate_items.extend(reindexed(candidate_wave, offset));
        if shutdown.is_cancelled() {
            return Err(ShadowError::Cancelled);
        }
    }

    let state = rule.state();
    let verdict = ShadowVerdict {
        app: config.app.clone(),
        compare: metric.as_str().into(),
        estimate: state.estimate,
        ci_low: state.ci_low,
        ci_high: state.ci_high,
        alpha: config.alpha,
        decision: state
            .decision
            .unwrap_or(Decision::NoDifference)
            .as_str()
            .into(),
        items_used: state.items_used,
        budget: config.budget,
        items_dispatched: dispatched,
        items_skipped: skipped,
        wins: state.wins,
        ties: state.ties,
        losses: state.losses,
        scorers: compared,
        production_runs,
        candidate_runs,
        captures_not_replayable: source.skipped.clone(),
    };
    let finished_at = SystemTime::now();
    let summary = |target: &TargetConfig, items: &[ItemResult], names: Vec<String>| {
        let mut aggregate = Aggregator::new(dispatched, names);
        aggregate.add_job_result(&JobResult {
            run_id: shadow_id.clone(),
            items: items.to_vec(),
            ..Default::default()
        });
        let mut summary = aggregate.summary(&SummaryMeta {
            run_id: format!("{shadow_id}-{}", target.name),
            suite: config.suite.name.clone(),
            target: target.name.clone(),
            model: target.model.clone(),
            started_at,
            finished_at,
        });
        // No gates: passed when anything was scored (the candidate's also
        // needs a verdict other than `worse`, below).
        crate::gates::apply(&[], None, &mut summary);
        summary
    };
    let production_names: Vec<String> = config
        .suite
        .scorers
        .iter()
        .filter(|s| !is_pairwise(&s.kind))
        .map(|s| s.name.clone())
        .collect();
    let production = summary(
        &production_target(&production_model),
        &production_items,
        production_names,
    );
    let mut candidate_summary = summary(&candidate, &candidate_items, scorer_names);
    candidate_summary.passed &= verdict.decision != Decision::Worse.as_str();
    candidate_summary.shadow = Some(verdict.clone());
    Ok(ShadowOutcome {
        verdict,
        production,
        candidate: candidate_summary,
    })
}

fn io(path: &std::path::Path, e: std::io::Error) -> ShadowError {
    ShadowError::Io(format!("{}: {e}", path.display()))
}

/// Writes a wave's captures as a JSONL dataset.
fn write_wave(
    path: &std::path::Path,
    batch: &[vigil_protocol::Capture],
) -> Result<(), ShadowError> {
    let file = std::fs::File::create(path).map_err(|e| io(path, e))?;
    let mut out = std::io::BufWriter::new(file);
    for capture in batch {
        let line = serde_json::to_string(&capture_record(capture))
            .map_err(|e| ShadowError::Io(e.to_string()))?;
        writeln!(out, "{line}").map_err(|e| io(path, e))?;
    }
    out.flush().map_err(|e| io(path, e))
}

/// A finished wave run's item results, by index.
async fn wave_results(
    js: &async_nats::jetstream::Context,
    summary: &RunSummary,
) -> Result<Vec<ItemResult>, ShadowError> {
    let items = crate::history::item_results(js, &summary.run_id)
        .await
        .map_err(|e| ShadowError::Nats(e.to_string()))?;
    if (items.len() as u64) < summary.items_total {
        tracing::warn!(run_id = %summary.run_id, results = items.len(), items = summary.items_total,
            "some items of the wave have no stored result (failed by the deadline or reconciliation): they are not paired");
    }
    Ok(items)
}

/// Items renumbered after the `offset` items before them.
fn reindexed(items: Vec<ItemResult>, offset: u64) -> impl Iterator<Item = ItemResult> {
    items.into_iter().map(move |mut item| {
        item.index += offset;
        item
    })
}

/// Per compared scorer: the item's value (clamped to [0, 1]); a failed item
/// counts 0 for every scorer (as in summaries); `None` where the scorer gave
/// no finite value.
fn item_values(item: &ItemResult, scorers: &[String]) -> Vec<Option<f64>> {
    scorers
        .iter()
        .map(|name| {
            if item.error.is_some() {
                return Some(0.0);
            }
            item.scores
                .iter()
                .find(|s| &s.scorer == name)
                .map(|s| s.value)
                .filter(|v| v.is_finite())
                .map(|v| v.clamp(0.0, 1.0))
        })
        .collect()
}

/// The paired observation of one item, or `None` when there is nothing to
/// compare (no compared scorer scored both sides).
pub(crate) fn observe(
    metric: PairedMetric,
    scorers: &[String],
    candidate: &ItemResult,
    production: &ItemResult,
) -> Option<f64> {
    let c = item_values(candidate, scorers);
    if metric == PairedMetric::Judge {
        let values: Vec<f64> = c.into_iter().flatten().collect();
        return (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
    }
    let p = item_values(production, scorers);
    let both: Vec<(f64, f64)> = c
        .into_iter()
        .zip(p)
        .filter_map(|(c, p)| Some((c?, p?)))
        .collect();
    if both.is_empty() {
        return None;
    }
    let n = both.len() as f64;
    let qc = both.iter().map(|(c, _)| c).sum::<f64>() / n;
    let qp = both.iter().map(|(_, p)| p).sum::<f64>() / n;
    Some(metric.observe(qc, qp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::{ErrorKind, ItemError, Score};

    fn item(scores: &[(&str, f64)]) -> ItemResult {
        ItemResult {
            scores: scores
                .iter()
                .map(|&(name, value)| Score {
                    scorer: name.into(),
                    value,
                    passed: value >= 0.5,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn observations_average_the_scorers_both_sides_have() {
        let names = vec!["a".to_string(), "b".to_string()];
        let c = item(&[("a", 1.0), ("b", 0.0)]);
        let p = item(&[("a", 0.0)]);
        // Only `a` is on both sides: 1 vs 0, a win.
        assert_eq!(observe(PairedMetric::WinRate, &names, &c, &p), Some(1.0));
        assert_eq!(observe(PairedMetric::Difference, &names, &c, &p), Some(1.0));
        // Nothing in common: skipped.
        let none = item(&[]);
        assert_eq!(observe(PairedMetric::WinRate, &names, &c, &none), None);
        // A failed candidate item counts 0 on every scorer: a loss.
        let failed = ItemResult {
            error: Some(ItemError {
                kind: ErrorKind::Timeout,
                message: "slow".into(),
            }),
            ..Default::default()
        };
        let good = item(&[("a", 1.0), ("b", 1.0)]);
        assert_eq!(
            observe(PairedMetric::WinRate, &names, &failed, &good),
            Some(0.0)
        );
        // Equal means tie.
        let half = item(&[("a", 1.0), ("b", 0.0)]);
        assert_eq!(observe(PairedMetric::WinRate, &names, &half, &c), Some(0.5));
    }

    #[test]
    fn judge_observations_are_the_candidates_judge_values() {
        let names = vec!["judge".to_string()];
        let c = item(&[("judge", 0.75)]);
        assert_eq!(
            observe(PairedMetric::Judge, &names, &c, &item(&[])),
            Some(0.75)
        );
        assert_eq!(observe(PairedMetric::Judge, &names, &item(&[]), &c), None);
    }

    /// A shadow suite without dataset and prompt, in `dir`.
    fn shadow_yaml(dir: &Path) -> PathBuf {
        let yaml = dir.join("s.yaml");
        std::fs::write(
            &yaml,
            "name: s\ntargets:\n  - { name: cand, base_url: \"http://h/v1\", model: m }\nscorers:\n  - { name: ok, kind: refusal, expect: comply }\n",
        )
        .unwrap();
        yaml
    }

    #[test]
    fn a_shadow_suite_may_leave_out_dataset_and_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = shadow_yaml(dir.path());
        let suite = load_suite(&yaml).unwrap();
        assert_eq!(suite.targets[0].name, "cand");
        let toml = dir.path().join("s.toml");
        std::fs::write(
            &toml,
            "name = \"s\"\n[[targets]]\nname = \"cand\"\nbase_url = \"http://h/v1\"\nmodel = \"m\"\n[[scorers]]\nname = \"ok\"\nkind = \"refusal\"\nexpect = \"comply\"\n",
        )
        .unwrap();
        assert_eq!(load_suite(&toml).unwrap().targets[0].name, "cand");
        // Errors keep naming the file and line.
        std::fs::write(&yaml, "name: s\ntargets: 3\n").unwrap();
        let e = load_suite(&yaml).unwrap_err().to_string();
        assert!(e.contains("s.yaml"), "{e}");
    }

    #[test]
    fn config_checks_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = shadow_yaml(dir.path());
        let config = |candidate: &str, metric| ShadowConfig {
            suite: load_suite(&yaml).unwrap(),
            candidate: candidate.into(),
            app: "a".into(),
            since: Duration::from_secs(60),
            budget: 10,
            wave: 5,
            alpha: 0.05,
            metric,
            work_dir: dir.path().into(),
            topology: Default::default(),
            reconcile_after: Duration::from_secs(60),
            no_cache: false,
        };
        assert_eq!(
            check(&config("cand", None)).unwrap(),
            (PairedMetric::WinRate, vec!["ok".to_string()])
        );
        let e = check(&config("nope", None)).unwrap_err().to_string();
        assert!(e.contains("no target `nope`"), "{e}");
        let e = check(&config("cand", Some(PairedMetric::Judge)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pairwise llm_judge"), "{e}");
        let mut bad_alpha = config("cand", None);
        bad_alpha.alpha = 1.5;
        assert!(check(&bad_alpha).is_err());
    }
}
