//! The suite file as written: YAML or TOML deserialised into "raw" structs
//! that mirror the file (unknown keys are errors), with the path of every
//! value tracked so that an error names its place and, when the parser knows
//! it, its line and column.

use super::{CacheConfig, DatasetFormat, MessageTemplate, SuiteError};
use crate::gates::GateSpec;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use vigil_protocol::EndpointKind;
// ---------------------------------------------------------------- parsing

pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, SuiteError> {
    // A first, untyped pass separates syntax errors (reported at their line
    // and column) from errors in values (reported at their place).
    if let Err(err) = serde_norway::from_str::<serde_norway::Value>(text) {
        let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
        let message = err
            .to_string()
            .replacen(&format!(" at line {line} column {column}"), "", 1);
        return Err(SuiteError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message,
        });
    }
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        let location = inner.location().map(|l| (l.line(), l.column()));
        let mut message = inner.to_string();
        // serde_norway puts its own copy of the path in front and the position
        // at the end; we report both separately.
        if let Some((prefix, rest)) = message.split_once(": ")
            && field.starts_with(prefix)
        {
            message = rest.to_string();
        }
        if let Some((line, column)) = location
            && let Some(rest) = message.strip_suffix(&format!(" at line {line} column {column}"))
        {
            message = rest.to_string();
        }
        located(path, field, message, location)
    })
}

pub(super) fn parse_toml(text: &str, path: &Path) -> Result<RawSuite, SuiteError> {
    let position = |span: Option<std::ops::Range<usize>>| {
        span.map(|s| {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, column)
        })
    };
    let de = toml::Deserializer::parse(text).map_err(|err| {
        let (line, column) = position(err.span()).unwrap_or((1, 1));
        SuiteError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: err.message().trim().to_string(),
        }
    })?;
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        located(
            path,
            field,
            inner.message().trim().to_string(),
            position(inner.span()),
        )
    })
}

/// An error at `field` (`.` = the document itself, as for a syntax error).
pub(super) fn located(
    path: &Path,
    field: String,
    message: String,
    location: Option<(usize, usize)>,
) -> SuiteError {
    match (field.as_str(), location) {
        (".", Some((line, column))) => SuiteError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message,
        },
        _ => SuiteError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
            location,
        },
    }
}

// ------------------------------------------------------------- raw suite

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSuite {
    pub(super) name: String,
    pub(super) dataset: RawDataset,
    #[serde(default)]
    pub(super) prompt: RawPrompt,
    pub(super) targets: Vec<RawTarget>,
    pub(super) scorers: Vec<RawScorer>,
    #[serde(default)]
    pub(super) gates: Vec<GateSpec>,
    #[serde(default)]
    pub(super) shard_size: Option<usize>,
    #[serde(default)]
    pub(super) pool: Option<String>,
    #[serde(default)]
    pub(super) deadline_s: Option<f64>,
    #[serde(default)]
    pub(super) error_budget: Option<f64>,
    #[serde(default)]
    pub(super) keep_output_chars: Option<u32>,
    #[serde(default)]
    pub(super) cache: CacheConfig,
    #[serde(default)]
    pub(super) samples: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDataset {
    #[serde(default)]
    pub(super) path: Option<PathBuf>,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) version: Option<String>,
    #[serde(default)]
    pub(super) format: Option<DatasetFormat>,
    #[serde(default)]
    pub(super) id_field: Option<String>,
    #[serde(default)]
    pub(super) tags: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrompt {
    #[serde(default)]
    pub(super) system: Option<String>,
    #[serde(default)]
    pub(super) user: Option<String>,
    #[serde(default)]
    pub(super) messages: Option<Vec<MessageTemplate>>,
    #[serde(default)]
    pub(super) completion: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub(super) name: String,
    #[serde(default)]
    pub(super) kind: EndpointKind,
    #[serde(default)]
    pub(super) base_url: String,
    #[serde(default)]
    pub(super) model: String,
    #[serde(default)]
    pub(super) model_path: Option<PathBuf>,
    #[serde(default)]
    pub(super) output_field: Option<String>,
    #[serde(default)]
    pub(super) api_key_env: Option<String>,
    #[serde(default)]
    pub(super) params: RawParams,
    #[serde(default)]
    pub(super) timeout_s: Option<f64>,
    #[serde(default)]
    pub(super) max_concurrency: Option<u32>,
    #[serde(default)]
    pub(super) max_retries: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawParams {
    #[serde(default)]
    pub(super) temperature: Option<f64>,
    #[serde(default)]
    pub(super) top_p: Option<f64>,
    #[serde(default)]
    pub(super) max_tokens: Option<u32>,
    #[serde(default)]
    pub(super) seed: Option<u64>,
    #[serde(default)]
    pub(super) stop: Option<OneOrMany>,
}

/// `stop: "\n"` or `stop: ["\n", "Q:"]`, as the OpenAI API accepts.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A scorer as written: common keys plus the kind's own keys at the same
/// level, checked per kind once the kind is known.
#[derive(Deserialize)]
pub(crate) struct RawScorer {
    pub(super) name: String,
    pub(crate) kind: String,
    #[serde(default)]
    pub(super) reference: Option<String>,
    #[serde(default)]
    pub(super) threshold: Option<f64>,
    #[serde(flatten)]
    pub(crate) params: Map<String, Value>,
}
