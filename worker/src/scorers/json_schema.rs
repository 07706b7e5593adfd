//! `json_schema`: the output is JSON and, when a schema is given, valid
//! against it. JSON inside a Markdown code fence counts, since chat models
//! wrap JSON in one even when told not to.

use super::{Common, Scorer, ScorerError};
use crate::text::short;
use serde_json::Value;
use vigil_protocol::Score;

/// Parses the JSON in a model output: the whole output, else the first
/// fenced code block that holds JSON.
///
/// ```
/// use vigil_worker::scorers::json_schema::extract_json;
/// let out = "Here you go:\n```json\n{\"a\": 1}\n```\nAnything else?";
/// assert_eq!(extract_json(out).unwrap()["a"], 1);
/// assert!(extract_json("{not json").is_err());
/// ```
pub fn extract_json(output: &str) -> Result<Value, serde_json::Error> {
    let whole = serde_json::from_str(output.trim());
    if whole.is_ok() {
        return whole;
    }
    fenced_blocks(output)
        .filter(|(lang, _)| matches!(lang.to_ascii_lowercase().as_str(), "" | "json" | "jsonc"))
        .find_map(|(_, body)| serde_json::from_str(body.trim()).ok())
        .map_or(whole, Ok)
}

/// The Markdown code fences of `text` as (language tag, body), scanned line
/// by line so that a closing fence is never mistaken for an opening one.
fn fenced_blocks(text: &str) -> impl Iterator<Item = (&str, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(&str, String)> = None;
    for line in text.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(tag)) => open = Some((tag.trim(), String::new())),
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    // An unclosed fence still counts: a model may stop before closing it.
    blocks.extend(open);
    blocks.into_iter()
}

/// Scores 1 when the output is JSON valid against the schema.
pub struct JsonSchema {
    common: Common,
    validator: Option<jsonschema::Validator>,
}

impl std::fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchema")
            .field("name", &self.common.name)
            .field("has_schema", &self.validator.is_some())
            .finish()
    }
}

impl JsonSchema {
    /// A json_schema scorer; `schema` is JSON Schema text (draft detected
    /// from `$schema`, 2020-12 by default). Remote `$ref`s are not fetched:
    /// a schema that needs one is refused here.
    pub fn new(common: Common, schema: Option<&str>) -> Result<Self, ScorerError> {
        let validator = match schema {
            None => None,
            Some(text) => {
                let schema: Value =
                    serde_json::from_str(text).map_err(|e| ScorerError::SchemaNotJson {
                        scorer: common.name.clone(),
                        message: e.to_string(),
                    })?;
                Some(jsonschema::validator_for(&schema).map_err(|e| {
                    ScorerError::InvalidSchema {
                        scorer: common.name.clone(),
                        message: short(&e.to_string(), 300),
                    }
                })?)
            }
        };
        Ok(JsonSchema { common, validator })
    }
}

impl Scorer for JsonSchema {
    fn name(&self) -> &str {
        &self.common.name
    }

    fn needs_reference(&self) -> bool {
        false
    }

    fn score(&self, output: &str, _reference: Option<&str>) -> Score {
        let value = match extract_json(output) {
            Ok(value) => value,
            Err(e) => return self.common.verdict(0.0, format!("not JSON: {e}")),
        };
        let Some(validator) = &self.validator else {
            return self.common.verdict(1.0, "valid JSON");
        };
        let mut errors = validator.iter_errors(&value);
        match errors.next() {
            None => self.common.verdict(1.0, "valid against the schema"),
            Some(first) => {
                let more = errors.count();
                let path = first.instance_path().to_string();
                let at = if path.is_empty() {
                    "root".to_string()
                } else {
                    path
                };
                let tail = if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                };
                // Keep the tail visible when the message itself is long.
                let head = short(
                    &format!("at {at}: {first}"),
                    super::MAX_DETAIL - tail.chars().count(),
                );
                self.common.verdict(0.0, format!("{head}{tail}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERSON: &str = r#"{
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name", "age"],
        "additionalProperties": false
    }"#;

    fn scorer(schema: Option<&str>) -> JsonSchema {
        JsonSchema::new(
            Common {
                name: "js".into(),
                threshold: None,
            },
            schema,
        )
        .unwrap()
    }

    #[test]
    fn parse_only_without_schema() {
        let s = scorer(None);
        assert!(s.score(r#"  {"a": [1, 2]} "#, None).passed);
        assert!(s.score("42", None).passed);
        let bad = s.score("{'a': 1}", None);
        assert!(!bad.passed);
        assert!(bad.detail.starts_with("not JSON: "), "{}", bad.detail);
    }

    #[test]
    fn fenced_blocks() {
        let s = scorer(Some(PERSON));
        let out = "Sure!\n```json\n{\"name\": \"Ada\", \"age\": 36}\n```";
        assert!(s.score(out, None).passed);
        let untagged = "```\n{\"name\": \"Ada\", \"age\": 36}\n```";
        assert!(s.score(untagged, None).passed);
        let second = "```python\nprint(1)\n```\nthen\n```json\n{\"name\": \"A\", \"age\": 1}\n```";
        assert!(s.score(second, None).passed);
        assert!(!s.score("```json\n{broken\n```", None).passed);
        assert!(
            s.score("```json\n{\"name\": \"A\", \"age\": 1}\n", None)
                .passed,
            "unclosed"
        );
        assert!(
            !s.score("```yaml\n{\"name\": \"A\", \"age\": 1}\n```", None)
                .passed
        );
    }

    #[test]
    fn validation_errors_are_reported() {
        let s = scorer(Some(PERSON));
        assert!(s.score(r#"{"name": "Ada", "age": 36}"#, None).passed);
        let wrong = s.score(r#"{"name": "Ada", "age": "old"}"#, None);
        assert!(!wrong.passed);
        assert!(wrong.detail.starts_with("at /age: "), "{}", wrong.detail);
        assert!(wrong.detail.contains("integer"), "{}", wrong.detail);
        let two = s.score(r#"{"age": -1}"#, None);
        assert!(two.detail.ends_with("(+1 more)"), "{}", two.detail);
        let root = s.score("[]", None);
        assert!(root.detail.starts_with("at root: "), "{}", root.detail);
    }

    #[test]
    fn long_details_are_cut() {
        let s = scorer(Some(r#"{"type": "string"}"#));
        let big = format!("[{}]", vec!["1234567890"; 200].join(","));
        let score = s.score(&big, None);
        assert!(!score.passed);
        assert!(score.detail.chars().count() < 200, "{}", score.detail);
    }

    #[test]
    fn bad_schemas_are_build_errors() {
        let c = Common {
            name: "js".into(),
            threshold: None,
        };
        let not_json = JsonSchema::new(c.clone(), Some("{type: object"))
            .err()
            .unwrap();
        assert!(
            not_json
                .to_string()
                .starts_with("scorer `js`: schema is not valid JSON"),
            "{not_json}"
        );
        let invalid = JsonSchema::new(c.clone(), Some(r#"{"type": "banana"}"#))
            .err()
            .unwrap();
        assert!(
            invalid
                .to_string()
                .starts_with("scorer `js`: invalid JSON Schema"),
            "{invalid}"
        );
        let remote = JsonSchema::new(c, Some(r#"{"$ref": "https://example.invalid/s.json"}"#));
        assert!(remote.is_err(), "remote refs are not fetched");
    }

    #[test]
    fn garbage() {
        let s = scorer(Some(PERSON));
        for text in [
            "",
            "```",
            "```json\n",
            "\u{0}",
            "null",
            "{\"name\": \"\u{FFFD}\"}",
        ] {
            assert!(!s.score(text, None).passed, "{text:?}");
        }
    }
}
