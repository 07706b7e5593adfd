//! The scorers of a suite: the common keys (`name`, `kind`, `reference`,
//! `threshold`) and the keys of the kinds computed from text alone
//! (`exact_match`, `contains`, `regex`, `numeric`, `choice`, `json_schema`).
//! The other kinds' keys are read by [`super::text_scorers`],
//! [`super::code_exec`] and [`super::io_scorers`].

use super::check::{Checker, check_token};
use super::raw::{NormalizeParams, RawScorer};
use super::{
    RUN_METRICS, ScorerConfig, SuiteError, SuiteFormat, TEXT_KINDS, TargetConfig, code_exec,
    io_scorers,
};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use vigil_protocol::ScorerKind;

/// The scorer kinds a suite may name, in the order error messages list them.
pub const SCORER_KINDS: &[&str] = &[
    "exact_match",
    "contains",
    "regex",
    "numeric",
    "choice",
    "json_schema",
    "code_exec",
    "llm_judge",
    "embedding_similarity",
    "external",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegexParams {
    pattern: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NumericParams {
    #[serde(default)]
    tolerance: f64,
    #[serde(default)]
    relative_tolerance: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoiceParams {
    #[serde(default)]
    choices: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSchemaParams {
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    schema_path: Option<PathBuf>,
}

impl Checker<'_> {
    pub(super) fn scorer(
        &self,
        i: usize,
        raw: RawScorer,
        targets: &[TargetConfig],
    ) -> Result<ScorerConfig, SuiteError> {
        let at = |key: &str| format!("scorers[{i}].{key}");
        check_token(self, &at("name"), "scorer", &raw.name)?;
        if RUN_METRICS
            .iter()
            .any(|m| m.split('.').next() == Some(raw.name.as_str()))
        {
            return Err(self.err(
                at("name"),
                format!(
                    "`{}` is the name of a run-level metric; choose another",
                    raw.name
                ),
            ));
        }
        let params = Value::Object(raw.params);
        let (mut prompt, mut endpoint, mut threshold) = (None, None, raw.threshold);
        let kind = match raw.kind.as_str() {
            kind if io_scorers::KINDS.contains(&kind) => {
                let parsed = self.io_scorer(
                    i,
                    kind,
                    raw.reference.as_deref(),
                    raw.threshold,
                    params,
                    targets,
                )?;
                (prompt, endpoint, threshold) = (parsed.prompt, parsed.endpoint, parsed.threshold);
                parsed.kind
            }
            "exact_match" | "contains" => {
                let p: NormalizeParams = self.params(i, params)?;
                let normalize = p.normalize.unwrap_or_default().into();
                if raw.kind == "exact_match" {
                    ScorerKind::ExactMatch { normalize }
                } else {
                    ScorerKind::Contains { normalize }
                }
            }
            "regex" => {
                let p: RegexParams = self.params(i, params)?;
                if let Err(e) = regex::Regex::new(&p.pattern) {
                    return Err(self.err(at("pattern"), format!("invalid regular expression: {e}")));
                }
                ScorerKind::Regex { pattern: p.pattern }
            }
            "numeric" => {
                let p: NumericParams = self.params(i, params)?;
                for (key, v) in [
                    ("tolerance", p.tolerance),
                    ("relative_tolerance", p.relative_tolerance),
                ] {
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(self.err(at(key), format!("must be at least 0, got {v}")));
                    }
                }
                ScorerKind::Numeric {
                    tolerance: p.tolerance,
                    relative_tolerance: p.relative_tolerance,
                }
            }
            "choice" => {
                let p: ChoiceParams = self.params(i, params)?;
                let choices = p.choices.unwrap_or_else(|| "ABCD".to_string());
                if choices.is_empty() {
                    return Err(self.err(at("choices"), "must not be empty"));
                }
                ScorerKind::Choice { choices }
            }
            "json_schema" => {
                let p: JsonSchemaParams = self.params(i, params)?;
                let schema = match (p.schema, p.schema_path) {
                    (Some(_), Some(_)) => {
                        return Err(self.err(
                            at("schema_path"),
                            "give either `schema` or `schema_path`, not both",
                        ));
                    }
                    (Some(v), None) => Some(self.schema_text(&at("schema"), v)?),
                    (None, Some(file)) => Some(self.schema_file(&at("schema_path"), &file)?),
                    (None, None) => None,
                };
                ScorerKind::JsonSchema { schema }
            }
            "code_exec" => code_exec::kind(self.path, i, params)?,
            other => match self.text_kind(i, other, params) {
                Some(kind) => kind?,
                None => {
                    return Err(self.err(
                        at("kind"),
                        format!(
                            "unknown scorer kind `{other}` (known: {}, {})",
                            SCORER_KINDS.join(", "),
                            TEXT_KINDS.join(", ")
                        ),
                    ));
                }
            },
        };
        // These kinds compare against a reference; without one every item
        // would fail at the worker, so say so now.
        if matches!(
            kind,
            ScorerKind::ExactMatch { .. }
                | ScorerKind::Contains { .. }
                | ScorerKind::Numeric { .. }
                | ScorerKind::Choice { .. }
                | ScorerKind::Rouge { .. }
                | ScorerKind::Bleu { .. }
                | ScorerKind::Classification { .. }
        ) && raw.reference.is_none()
        {
            return Err(self.err(
                at("reference"),
                format!("scorer kind `{}` needs a reference template", kind.name()),
            ));
        }
        if let Some(t) = raw.threshold
            && !t.is_finite()
        {
            return Err(self.err(at("threshold"), "must be a finite number"));
        }
        Ok(ScorerConfig {
            name: raw.name,
            kind,
            reference: raw.reference,
            threshold,
            prompt,
            endpoint,
        })
    }

    /// Deserialises a kind's own keys, naming the place of a bad one.
    pub(super) fn params<T: serde::de::DeserializeOwned>(
        &self,
        i: usize,
        params: Value,
    ) -> Result<T, SuiteError> {
        serde_path_to_error::deserialize(params).map_err(|err| {
            let sub = err.path().to_string();
            let field = if sub == "." {
                format!("scorers[{i}]")
            } else {
                format!("scorers[{i}].{sub}")
            };
            self.err(field, err.into_inner().to_string())
        })
    }

    pub(super) fn schema_text(&self, field: &str, schema: Value) -> Result<String, SuiteError> {
        if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
            return Err(self.err(field, "a JSON Schema must be an object (or a boolean)"));
        }
        Ok(schema.to_string())
    }

    pub(super) fn schema_file(&self, field: &str, file: &Path) -> Result<String, SuiteError> {
        let full = self.resolve(file);
        let text = std::fs::read_to_string(&full)
            .map_err(|e| self.err(field, format!("cannot read `{}`: {e}", full.display())))?;
        let is_yaml = matches!(SuiteFormat::from_path(&full), Some(SuiteFormat::Yaml));
        let value: Value = if is_yaml {
            serde_norway::from_str(&text).map_err(|e| {
                self.err(
                    field,
                    format!("`{}` is not valid YAML: {e}", full.display()),
                )
            })?
        } else {
            serde_json::from_str(&text).map_err(|e| {
                self.err(
                    field,
                    format!("`{}` is not valid JSON: {e}", full.display()),
                )
            })?
        };
        self.schema_text(field, value)
    }
}
