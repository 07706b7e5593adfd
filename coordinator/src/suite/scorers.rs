//! The scorers of a suite. The common keys (`name`, `kind`, `reference`,
//! `threshold`) are the suite's; a kind's own keys, written at the same
//! level, are read straight into its [`ScorerKind`] (vigil_protocol's
//! `scorers` module, where each kind, its defaults and its pure checks are
//! defined once). Keys a kind does not have are errors here, while wire
//! readers ignore them. What the suite spells its own way (a JSON Schema as
//! YAML or a file, labels as a map) is turned into the kind's form first;
//! what needs a compiler (regexes, the worker's label normalisation) is
//! checked in [`super::text_scorers`]; the kinds that do IO on the worker are
//! read by [`super::io_scorers`].

use super::check::{Checker, check_token};
use super::raw::RawScorer;
use super::{RUN_METRICS, ScorerConfig, SuiteError, SuiteFormat, TargetConfig};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use vigil_protocol::ScorerKind;
use vigil_protocol::scorers::KINDS;

/// How many of [`KINDS`] come before the text-metric, classification and
/// safety kinds.
const FIRST_TEXT_KIND: usize = 10;

/// The kinds computed from the output alone and those that do IO: the first
/// part of [`vigil_protocol::scorers::KINDS`], the list error messages give.
pub const SCORER_KINDS: &[&str] = KINDS.split_at(FIRST_TEXT_KIND).0;

/// The text-metric, classification and safety kinds: the rest of
/// [`vigil_protocol::scorers::KINDS`].
pub const TEXT_KINDS: &[&str] = KINDS.split_at(FIRST_TEXT_KIND).1;

/// `json_schema`'s keys as a suite writes them: the schema inline (YAML or
/// JSON) or in a file, where the kind carries it as JSON text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaKeys {
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    schema_path: Option<PathBuf>,
}

/// The alias of `json_schema` with the empty schema (any JSON value passes).
const JSON_VALID: &str = "json_valid";

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
        let (mut prompt, mut endpoint, mut threshold) = (None, None, raw.threshold);
        let kind = match raw.kind.as_str() {
            kind @ ("llm_judge" | "embedding_similarity" | "external") => {
                let parsed = self.io_scorer(
                    i,
                    kind,
                    raw.reference.as_deref(),
                    raw.threshold,
                    Value::Object(raw.params),
                    targets,
                )?;
                (prompt, endpoint, threshold) = (parsed.prompt, parsed.endpoint, parsed.threshold);
                parsed.kind
            }
            kind if KINDS.contains(&kind) => self.kind(i, kind, raw.params)?,
            // `json_valid` is `json_schema` with the empty schema: any JSON value.
            JSON_VALID => {
                let mut params = raw.params;
                params
                    .entry("schema")
                    .or_insert(Value::Object(Default::default()));
                self.kind(i, "json_schema", params)?
            }
            other => {
                return Err(self.err(
                    at("kind"),
                    format!(
                        "unknown scorer kind `{other}` (known: {}, {JSON_VALID})",
                        KINDS.join(", ")
                    ),
                ));
            }
        };
        // Without a reference every item would fail at the worker, so say so now.
        if kind.needs_reference() && raw.reference.is_none() {
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

    /// The kind `name` of `scorers[i]` from its own keys: unknown keys
    /// rejected, the suite's own spellings turned into the kind's, then read
    /// into [`ScorerKind`] and checked ([`ScorerKind::validate`], then what
    /// needs a compiler).
    fn kind(
        &self,
        i: usize,
        name: &str,
        mut params: Map<String, Value>,
    ) -> Result<ScorerKind, SuiteError> {
        let place = format!("scorers[{i}]");
        let defaults = ScorerKind::with_defaults(name).expect("a name from KINDS");
        let suite_only: &[&str] = match name {
            "json_schema" => &["schema_path"],
            _ => &[],
        };
        self.known_keys(&place, &params, &wire_params(&defaults), suite_only)?;
        match name {
            "json_schema" => {
                let keys: SchemaKeys = self.params(i, Value::Object(params))?;
                let at = |key: &str| format!("{place}.{key}");
                let schema = match (keys.schema, keys.schema_path) {
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
                params = Map::new();
                params.insert("schema".into(), schema.map_or(Value::Null, Value::String));
            }
            "classification" => self.label_forms(i, &mut params)?,
            _ => {}
        }
        let wire = serde_json::json!({ "kind": name, "params": Value::Object(params) });
        let kind: ScorerKind = serde_path_to_error::deserialize(wire).map_err(|err| {
            let sub = err.path().to_string();
            let field = match sub.strip_prefix("params") {
                Some("") | None => place.clone(),
                Some(rest) => format!("{place}{rest}"),
            };
            self.err(field, err.into_inner().to_string())
        })?;
        kind.validate()
            .map_err(|e| self.err(format!("{place}.{}", e.key), e.message))?;
        self.compiled(i, &kind)?;
        Ok(kind)
    }

    /// Rejects a key of `given` that `known` (a kind's parameters at their
    /// defaults, as the wire writes them) lacks and `extra` does not name,
    /// entering nested parameter blocks (`normalize`, `limits`). Maps whose
    /// keys the suite chooses (`patterns`) are empty by default: not entered.
    fn known_keys(
        &self,
        place: &str,
        given: &Map<String, Value>,
        known: &Map<String, Value>,
        extra: &[&str],
    ) -> Result<(), SuiteError> {
        for (key, value) in given {
            match (known.get(key), value) {
                (None, _) if !extra.contains(&key.as_str()) => {
                    let names: Vec<&str> = known
                        .keys()
                        .map(String::as_str)
                        .chain(extra.iter().copied())
                        .collect();
                    return Err(self.err(format!("{place}.{key}"), unknown_field(key, &names)));
                }
                (Some(Value::Object(inner)), Value::Object(nested)) if !inner.is_empty() => {
                    self.known_keys(&format!("{place}.{key}"), nested, inner, &[])?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Deserialises keys the suite spells its own way, naming the place of a
    /// bad one.
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

/// A kind's parameters as the wire writes them.
fn wire_params(kind: &ScorerKind) -> Map<String, Value> {
    match serde_json::to_value(kind) {
        Ok(Value::Object(mut m)) => match m.remove("params") {
            Some(Value::Object(params)) => params,
            _ => Map::new(),
        },
        _ => Map::new(),
    }
}

/// serde's message for a key a struct does not have.
fn unknown_field(key: &str, expected: &[&str]) -> String {
    let quoted: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
    match quoted.as_slice() {
        [] => format!("unknown field `{key}`, there are no fields"),
        [one] => format!("unknown field `{key}`, expected {one}"),
        many => format!("unknown field `{key}`, expected one of {}", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_two_lists_are_kinds_split_before_rouge() {
        assert_eq!(super::TEXT_KINDS.first(), Some(&"rouge"));
        assert_eq!(
            [super::SCORER_KINDS, super::TEXT_KINDS].concat(),
            vigil_protocol::scorers::KINDS
        );
    }

    #[test]
    fn unknown_keys_are_rejected_where_the_suite_has_its_own() {
        let text = |scorer: &str| {
            format!(
                "name: s\ndataset: {{ path: d.jsonl }}\nprompt: {{ user: q }}\n\
                 targets: [{{ name: t, base_url: \"http://h:1/v1\", model: m }}]\nscorers: [{scorer}]\n"
            )
        };
        let load = |scorer: &str| {
            crate::suite::Suite::from_str(
                &text(scorer),
                crate::suite::SuiteFormat::Yaml,
                std::path::Path::new("s.yaml"),
            )
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            load("{ name: j, kind: json_schema, schema_file: x.json }").unwrap_err(),
            "s.yaml: scorers[0].schema_file: unknown field `schema_file`, expected one of `schema`, `schema_path`"
        );
        assert_eq!(
            load("{ name: c, kind: code_exec, limits: { memory: 1 } }")
                .unwrap_err()
                .split(", expected")
                .next(),
            Some("s.yaml: scorers[0].limits.memory: unknown field `memory`")
        );
        // Keys the suite names itself (pii kinds) are not taken for unknown keys.
        assert!(load("{ name: p, kind: pii, patterns: { ticket: \"T-\\\\d+\" } }").is_ok());
    }

    #[test]
    fn json_valid_is_json_schema_with_the_empty_schema_in_a_suite() {
        let suite = crate::suite::Suite::from_str(
            "name: s\ndataset: { path: d.jsonl }\nprompt: { user: q }\n\
             targets: [{ name: t, base_url: \"http://h:1/v1\", model: m }]\n\
             scorers: [{ name: valid, kind: json_valid }]\n",
            crate::suite::SuiteFormat::Yaml,
            std::path::Path::new("s.yaml"),
        )
        .unwrap();
        assert_eq!(suite.scorers[0].kind.name(), "json_schema");
        let wire = serde_json::to_value(&suite.scorers[0].kind).unwrap();
        assert_eq!(wire["params"]["schema"], "{}", "{wire}");
    }

    #[test]
    fn unknown_fields_read_like_serde() {
        assert_eq!(
            super::unknown_field("x", &["a", "b"]),
            "unknown field `x`, expected one of `a`, `b`"
        );
        assert_eq!(
            super::unknown_field("x", &["a"]),
            "unknown field `x`, expected `a`"
        );
    }
}
