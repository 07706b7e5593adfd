//! The checker: turns a raw suite into a [`Suite`], naming the place of the
//! first problem (`targets[0].base_url: ...`). Targets, prompts, gates and
//! the suite-wide keys are checked here; scorers in [`super::scorers`].

use super::raw::{OneOrMany, RawDataset, RawPrompt, RawScorer, RawSuite, RawTarget};
use super::{
    DEFAULT_KEEP_OUTPUT_CHARS, DatasetFormat, DatasetSpec, MAX_SHARD_SIZE, NamedDataset,
    PromptSpec, RUN_METRICS, SCORE_FIELDS, ScorerConfig, Suite, SuiteError, TargetConfig,
    code_exec, resolve_model_path, text_scorers,
};
use crate::gates::GateSpec;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use vigil_protocol::{EndpointKind, SamplingParams};
/// Turns a raw suite into a [`Suite`], naming the place of the first problem.
pub(super) struct Checker<'a> {
    /// The suite file.
    pub(super) path: &'a Path,
}

impl Checker<'_> {
    pub(super) fn err(&self, field: impl Into<String>, message: impl Into<String>) -> SuiteError {
        SuiteError::invalid(self.path, field, message)
    }

    /// The suite file's directory, against which relative paths resolve.
    pub(super) fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) => dir.join(p),
            None => p.to_path_buf(),
        }
    }

    pub(super) fn suite(&self, raw: RawSuite, sha256: String) -> Result<Suite, SuiteError> {
        check_token(self, "name", "suite", &raw.name)?;
        let dataset = self.dataset(raw.dataset)?;
        if raw.targets.is_empty() {
            return Err(self.err("targets", "a suite needs at least one target"));
        }
        if raw.scorers.is_empty() {
            return Err(self.err("scorers", "a suite needs at least one scorer"));
        }
        let targets = self.targets(raw.targets)?;
        let prompt = self.prompt(raw.prompt, &targets)?;
        let scorers = self.scorers(raw.scorers, &targets)?;
        for (i, gate) in raw.gates.iter().enumerate() {
            self.gate(i, gate, &scorers)?;
            self.qa_gate(i, gate, &dataset)?;
        }
        let shard_size = raw.shard_size;
        if let Some(n) = shard_size.filter(|n| !(1..=MAX_SHARD_SIZE).contains(n)) {
            return Err(self.err(
                "shard_size",
                format!("must be between 1 and {MAX_SHARD_SIZE}, got {n}"),
            ));
        }
        let samples = code_exec::check_samples(self.path, raw.samples, &scorers)?;
        let pool = raw
            .pool
            .unwrap_or_else(|| vigil_protocol::subjects::DEFAULT_POOL.to_string());
        check_token(self, "pool", "pool", &pool)?;
        if let Some(d) = raw.deadline_s
            && !(d.is_finite() && d > 0.0)
        {
            return Err(self.err(
                "deadline_s",
                format!("must be a positive number of seconds, got {d}"),
            ));
        }
        let error_budget = raw
            .error_budget
            .unwrap_or(crate::gates::DEFAULT_ERROR_BUDGET);
        if !(0.0..=1.0).contains(&error_budget) {
            return Err(self.err(
                "error_budget",
                format!("must be a fraction of the items between 0 and 1, got {error_budget}"),
            ));
        }
        Ok(Suite {
            name: raw.name,
            path: self.path.to_path_buf(),
            sha256,
            dataset,
            prompt,
            targets,
            scorers,
            gates: raw.gates,
            shard_size,
            pool,
            deadline_s: raw.deadline_s,
            error_budget,
            keep_output_chars: raw.keep_output_chars.unwrap_or(DEFAULT_KEEP_OUTPUT_CHARS),
            cache: raw.cache,
            samples,
        })
    }

    /// The targets, each checked, names unique.
    pub(super) fn targets(&self, raw: Vec<RawTarget>) -> Result<Vec<TargetConfig>, SuiteError> {
        let targets = raw
            .into_iter()
            .enumerate()
            .map(|(i, t)| self.target(i, t))
            .collect::<Result<Vec<_>, _>>()?;
        unique(
            self,
            "targets",
            "target",
            targets.iter().map(|t| t.name.as_str()),
        )?;
        Ok(targets)
    }

    /// The scorers, each checked against `targets`, names unique.
    pub(super) fn scorers(
        &self,
        raw: Vec<RawScorer>,
        targets: &[TargetConfig],
    ) -> Result<Vec<ScorerConfig>, SuiteError> {
        let scorers = raw
            .into_iter()
            .enumerate()
            .map(|(i, s)| self.scorer(i, s, targets))
            .collect::<Result<Vec<_>, _>>()?;
        unique(
            self,
            "scorers",
            "scorer",
            scorers.iter().map(|s| s.name.as_str()),
        )?;
        Ok(scorers)
    }

    pub(super) fn dataset(&self, raw: RawDataset) -> Result<DatasetSpec, SuiteError> {
        let named = match (&raw.path, raw.name) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    "dataset",
                    "set either `path` (a file) or `name` (a dataset in NATS), not both",
                ));
            }
            (None, None) => {
                return Err(self.err(
                    "dataset",
                    "missing `path` (a file) or `name` (a dataset in NATS, see `vigil dataset push`)",
                ));
            }
            (None, Some(name)) => Some(self.named_dataset(name, raw.version, raw.format)?),
            (Some(_), None) => {
                if raw.version.is_some() {
                    return Err(self.err(
                        "dataset.version",
                        "only a named dataset has versions (`name:`); a file is read as it is",
                    ));
                }
                None
            }
        };
        let path = raw.path.unwrap_or_default();
        if named.is_none() && path.as_os_str().is_empty() {
            return Err(self.err("dataset.path", "must not be empty"));
        }
        let format = match raw.format {
            Some(f) => f,
            // A named dataset's format is stored with it (set on resolution).
            None if named.is_some() => DatasetFormat::Jsonl,
            None => match path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("jsonl" | "ndjson") => DatasetFormat::Jsonl,
                Some("csv") => DatasetFormat::Csv,
                _ => {
                    return Err(self.err(
                        "dataset.format",
                        format!(
                            "cannot tell the format of `{}` from its extension (.jsonl, .ndjson, .csv); set `format: jsonl` or `format: csv`",
                            path.display()
                        ),
                    ));
                }
            },
        };
        if let Some(id) = &raw.id_field
            && id.is_empty()
        {
            return Err(self.err("dataset.id_field", "must not be empty"));
        }
        for (i, tag) in raw.tags.iter().enumerate() {
            if tag.is_empty() {
                return Err(self.err(format!("dataset.tags[{i}]"), "must not be empty"));
            }
        }
        Ok(DatasetSpec {
            path: if named.is_some() {
                PathBuf::new()
            } else {
                self.resolve(&path)
            },
            format,
            id_field: raw.id_field,
            tags: raw.tags,
            named,
        })
    }

    /// `dataset: { name, version }`: a dataset stored with `vigil dataset push`.
    fn named_dataset(
        &self,
        name: String,
        version: Option<String>,
        format: Option<DatasetFormat>,
    ) -> Result<NamedDataset, SuiteError> {
        if format.is_some() {
            return Err(self.err(
                "dataset.format",
                "a named dataset's format is stored with it; remove `format`",
            ));
        }
        crate::dataset_store::check_name(&name)
            .map_err(|message| self.err("dataset.name", message))?;
        let version = version.unwrap_or_else(|| crate::dataset_store::LATEST.to_string());
        crate::dataset_store::check_version(&version)
            .map_err(|message| self.err("dataset.version", message))?;
        Ok(NamedDataset { name, version })
    }

    pub(super) fn target(&self, i: usize, raw: RawTarget) -> Result<TargetConfig, SuiteError> {
        let at = |key: &str| format!("targets[{i}].{key}");
        check_token(self, &at("name"), "target", &raw.name)?;
        let mut model = raw.model;
        let output_field = match (raw.kind, raw.output_field) {
            (EndpointKind::Recorded, field) => {
                let field = field.unwrap_or_else(|| "output".into());
                if field.is_empty() {
                    return Err(self.err(at("output_field"), "must not be empty"));
                }
                Some(field)
            }
            (_, Some(_)) => {
                return Err(self.err(
                    at("output_field"),
                    "only `kind: recorded` targets take `output_field`",
                ));
            }
            (_, None) => None,
        };
        let model_path = if raw.kind == EndpointKind::Recorded {
            // Nothing is called: the outputs are in the dataset.
            for (key, given) in [
                ("base_url", !raw.base_url.is_empty()),
                ("model_path", raw.model_path.is_some()),
                ("api_key_env", raw.api_key_env.is_some()),
            ] {
                if given {
                    return Err(self.err(
                        at(key),
                        "a `recorded` target calls no model: its outputs come from the dataset field `output_field`",
                    ));
                }
            }
            if model.trim().is_empty() {
                model = raw.name.clone();
            }
            None
        } else if raw.kind == EndpointKind::Local {
            let Some(path) = raw.model_path.filter(|p| !p.as_os_str().is_empty()) else {
                return Err(self.err(
                    at("model_path"),
                    "a `local` target needs `model_path`, the GGUF file to run",
                ));
            };
            if !raw.base_url.is_empty() {
                return Err(self.err(
                    at("base_url"),
                    "a `local` target runs in the worker; give `model_path`, not `base_url`",
                ));
            }
            let path = resolve_model_path(&path, self.path.parent());
            if model.trim().is_empty() {
                model = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
            }
            Some(path)
        } else {
            if raw.model_path.is_some() {
                return Err(self.err(
                    at("model_path"),
                    "only `kind: local` targets take `model_path`",
                ));
            }
            if raw.base_url.is_empty() {
                return Err(self.err(
                    at("base_url"),
                    "missing field `base_url` (or use `kind: local` with `model_path`)",
                ));
            }
            match url::Url::parse(&raw.base_url) {
                Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
                Ok(u) => {
                    return Err(self.err(
                        at("base_url"),
                        format!(
                            "`{}` is not an http(s) URL (scheme `{}`)",
                            raw.base_url,
                            u.scheme()
                        ),
                    ));
                }
                Err(e) => {
                    return Err(self.err(
                        at("base_url"),
                        format!("`{}` is not a URL: {e}", raw.base_url),
                    ));
                }
            }
            if model.trim().is_empty() {
                return Err(self.err(at("model"), "must not be empty"));
            }
            None
        };
        if let Some(var) = &raw.api_key_env {
            let ok = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                // The value is a variable's name, so showing it leaks nothing;
                // a key pasted here by mistake is not echoed back.
                return Err(self.err(at("api_key_env"), "must be the NAME of an environment variable ([A-Za-z_][A-Za-z0-9_]*), never the key itself"));
            }
        }
        let timeout_s = raw.timeout_s.unwrap_or(60.0);
        if !(timeout_s.is_finite() && timeout_s > 0.0) {
            return Err(self.err(
                at("timeout_s"),
                format!("must be a positive number of seconds, got {timeout_s}"),
            ));
        }
        let max_concurrency = raw.max_concurrency.unwrap_or(32);
        if max_concurrency == 0 {
            return Err(self.err(at("max_concurrency"), "must be at least 1"));
        }
        let p = raw.params;
        if let Some(t) = p.temperature
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(self.err(
                at("params.temperature"),
                format!("must be at least 0, got {t}"),
            ));
        }
        if let Some(t) = p.top_p
            && !(t > 0.0 && t <= 1.0)
        {
            return Err(self.err(at("params.top_p"), format!("must be in (0, 1], got {t}")));
        }
        if p.max_tokens == Some(0) {
            return Err(self.err(at("params.max_tokens"), "must be at least 1"));
        }
        let stop = match p.stop {
            None => Vec::new(),
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
        };
        Ok(TargetConfig {
            name: raw.name,
            kind: raw.kind,
            base_url: raw.base_url,
            model,
            api_key_env: raw.api_key_env,
            params: SamplingParams {
                temperature: p.temperature,
                top_p: p.top_p,
                max_tokens: p.max_tokens,
                seed: p.seed,
                stop,
            },
            timeout_s,
            max_concurrency,
            max_retries: raw.max_retries.unwrap_or(3),
            model_path,
            output_field,
        })
    }

    pub(super) fn prompt(
        &self,
        raw: RawPrompt,
        targets: &[TargetConfig],
    ) -> Result<PromptSpec, SuiteError> {
        if let Some(messages) = &raw.messages {
            if raw.system.is_some() || raw.user.is_some() {
                return Err(self.err(
                    "prompt.messages",
                    "give either `messages` or `system`/`user`, not both",
                ));
            }
            if messages.is_empty() {
                return Err(self.err("prompt.messages", "must not be empty"));
            }
            for (i, m) in messages.iter().enumerate() {
                if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                    return Err(self.err(
                        format!("prompt.messages[{i}].role"),
                        format!("unknown role `{}` (known: system, user, assistant)", m.role),
                    ));
                }
            }
        }
        for (i, t) in targets.iter().enumerate() {
            match t.kind {
                EndpointKind::Chat
                    if raw.messages.is_none() && raw.system.is_none() && raw.user.is_none() =>
                {
                    return Err(self.err(
                        "prompt.user",
                        format!("target `{}` (targets[{i}], kind chat) needs `prompt.user`, `prompt.system` or `prompt.messages`", t.name),
                    ));
                }
                EndpointKind::Local
                    if raw.completion.is_none()
                        && raw.messages.is_none()
                        && raw.system.is_none()
                        && raw.user.is_none() =>
                {
                    return Err(self.err(
                        "prompt.user",
                        format!("target `{}` (targets[{i}], kind local) needs a chat prompt (`prompt.user`, `prompt.system`, `prompt.messages`) or `prompt.completion`", t.name),
                    ));
                }
                EndpointKind::Completions if raw.completion.is_none() => {
                    return Err(self.err(
                        "prompt.completion",
                        format!("target `{}` (targets[{i}], kind completions) needs `prompt.completion`", t.name),
                    ));
                }
                _ => {}
            }
        }
        Ok(PromptSpec {
            system: raw.system,
            user: raw.user,
            messages: raw.messages,
            completion: raw.completion,
        })
    }

    pub(super) fn gate(
        &self,
        i: usize,
        gate: &GateSpec,
        scorers: &[ScorerConfig],
    ) -> Result<(), SuiteError> {
        let at = |key: &str| format!("gates[{i}].{key}");
        let m = gate.metric.as_str();
        if !RUN_METRICS.contains(&m) {
            let Some((scorer, field)) = m.split_once('.') else {
                return Err(self.err(
                    at("metric"),
                    format!(
                        "unknown metric `{m}`: use `<scorer>.<field>` or one of {}",
                        RUN_METRICS.join(", ")
                    ),
                ));
            };
            let Some(scorer_cfg) = scorers.iter().find(|s| s.name == scorer) else {
                let known: Vec<&str> = scorers.iter().map(|s| s.name.as_str()).collect();
                return Err(self.err(
                    at("metric"),
                    format!(
                        "`{m}` names no scorer `{scorer}` (scorers: {})",
                        known.join(", ")
                    ),
                ));
            };
            if !SCORE_FIELDS.contains(&field)
                && !crate::text_metrics::is_extra_field(&scorer_cfg.kind, field)
            {
                return Err(self.err(
                    at("metric"),
                    format!(
                        "`{m}`: unknown field `{field}` (known: {}{})",
                        SCORE_FIELDS.join(", "),
                        text_scorers::extra_fields_hint(&scorer_cfg.kind)
                    ),
                ));
            }
        }
        if gate.min.is_none() && gate.max.is_none() && gate.max_regression.is_none() {
            return Err(self.err(
                format!("gates[{i}]"),
                "a gate needs `min`, `max` or `max_regression`",
            ));
        }
        for (key, v) in [("min", gate.min), ("max", gate.max)] {
            if let Some(v) = v
                && !v.is_finite()
            {
                return Err(self.err(at(key), "must be a finite number"));
            }
        }
        if let (Some(lo), Some(hi)) = (gate.min, gate.max)
            && lo > hi
        {
            return Err(self.err(at("min"), format!("min {lo} is above max {hi}")));
        }
        Ok(())
    }
}

impl Checker<'_> {
    /// The continuous-QA keys of a gate: `slice_gap` names a dataset tag and
    /// a scorer metric; `max_regression` is a non-negative scorer metric bound.
    pub(super) fn qa_gate(
        &self,
        i: usize,
        gate: &GateSpec,
        dataset: &DatasetSpec,
    ) -> Result<(), SuiteError> {
        let scorer_metric = !RUN_METRICS.contains(&gate.metric.as_str());
        if let Some(tag) = &gate.slice_gap {
            if !dataset.tags.contains(tag) {
                return Err(self.err(
                    format!("gates[{i}].slice_gap"),
                    format!(
                        "`{tag}` is not a dataset tag (dataset.tags: [{}])",
                        dataset.tags.join(", ")
                    ),
                ));
            }
            if !scorer_metric {
                return Err(self.err(
                    format!("gates[{i}].metric"),
                    "a slice gap needs a scorer metric",
                ));
            }
            if gate.max_regression.is_some() {
                return Err(self.err(
                    format!("gates[{i}]"),
                    "use `slice_gap` or `max_regression`, not both",
                ));
            }
        }
        if let Some(x) = gate.max_regression {
            if !(x.is_finite() && x >= 0.0) {
                return Err(self.err(format!("gates[{i}].max_regression"), "must be a number ≥ 0"));
            }
            let field = gate.metric.rsplit_once('.').map(|(_, f)| f);
            if !scorer_metric || !matches!(field, Some("pass_rate" | "mean")) {
                return Err(self.err(
                    format!("gates[{i}].metric"),
                    "a regression gate needs `<scorer>.pass_rate` or `<scorer>.mean`",
                ));
            }
        }
        Ok(())
    }
}

/// Names become NATS subject tokens: only `[A-Za-z0-9_-]`, non-empty.
pub(super) fn check_token(
    c: &Checker<'_>,
    field: &str,
    what: &str,
    name: &str,
) -> Result<(), SuiteError> {
    if name.is_empty() {
        return Err(c.err(field, format!("{what} name must not be empty")));
    }
    if let Some(bad) = name
        .chars()
        .find(|ch| !(ch.is_ascii_alphanumeric() || *ch == '_' || *ch == '-'))
    {
        return Err(c.err(
            field,
            format!(
                "{what} name `{name}` contains {}; use only letters, digits, `_` and `-`",
                Shown(bad)
            ),
        ));
    }
    Ok(())
}

/// A character as an error message shows it (whitespace made visible).
struct Shown(char);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_whitespace() {
            write!(f, "whitespace ({:?})", self.0)
        } else {
            write!(f, "`{}`", self.0)
        }
    }
}

pub(super) fn unique<'a>(
    c: &Checker<'_>,
    list: &str,
    what: &str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), SuiteError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.enumerate() {
        if let Some(first) = seen.insert(name, i) {
            return Err(c.err(
                format!("{list}[{i}].name"),
                format!("duplicate {what} name `{name}` (also {list}[{first}])"),
            ));
        }
    }
    Ok(())
}
