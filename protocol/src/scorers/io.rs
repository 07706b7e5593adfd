//! Parameters of the scorers that do IO on the worker: `llm_judge` (a judge
//! model grades the output with a rubric), `embedding_similarity` (cosine
//! similarity of embeddings) and `external` (a long-lived process speaking
//! JSON lines).
//!
//! A judge's rubric is a minijinja template over the item's fields. The
//! coordinator renders it per item (like references) into
//! [`Item::scorer_prompts`](crate::Item::scorer_prompts); what only the
//! worker knows (the output, the reference, the prompt sent to the model) is
//! left in the text as [placeholders] that the worker fills in verbatim.
//!
//! None of these carries a secret: a judge's or embedder's API key comes from
//! the worker's own allow list, and an external command runs only when the
//! worker's configuration names it.

use super::ParamError;
use crate::job::TargetSpec;
use serde::{Deserialize, Serialize};

/// How a judge compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JudgeMode {
    /// The judge grades the output on a scale (`Score: 4`).
    #[default]
    Single,
    /// The judge picks the better of the output and the reference (`[[A]]`,
    /// `[[B]]`, `[[C]]` for a tie), asked twice with the positions swapped.
    Pairwise,
}

/// The `llm_judge` scorer's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JudgeParams {
    /// The judge's endpoint (chat or completions), without its key.
    pub judge: TargetSpec,
    /// Single grading or pairwise comparison.
    pub mode: JudgeMode,
    /// The lowest score of the scale (maps to 0).
    pub scale_min: f64,
    /// The highest score of the scale (maps to 1).
    pub scale_max: f64,
    /// A system message sent before the rubric (chat judges only).
    pub system: Option<String>,
}

impl Default for JudgeParams {
    fn default() -> Self {
        JudgeParams {
            judge: TargetSpec::default(),
            mode: JudgeMode::Single,
            scale_min: 1.0,
            scale_max: 5.0,
            system: None,
        }
    }
}

/// Checks a judge's scale: finite, low below high. The key is the suite's
/// `scale` (`[low, high]`).
///
/// ```
/// assert!(vigil_protocol::scorers::io::check_scale(1.0, 5.0).is_ok());
/// assert_eq!(vigil_protocol::scorers::io::check_scale(5.0, 1.0).unwrap_err().key, "scale");
/// ```
pub fn check_scale(lo: f64, hi: f64) -> Result<(), ParamError> {
    if lo.is_finite() && hi.is_finite() && lo < hi {
        return Ok(());
    }
    Err(ParamError {
        key: "scale".into(),
        message: format!("must be [low, high] with low < high, got [{lo}, {hi}]"),
    })
}

/// The `embedding_similarity` scorer's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EmbeddingParams {
    /// The `/embeddings` endpoint (its `base_url`, `model`, timeout and
    /// retries; the kind and sampling parameters are unused).
    pub embedder: TargetSpec,
}

/// The `external` scorer's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExternalParams {
    /// The program and its arguments. A worker runs it only when the whole
    /// command equals one its configuration allows.
    pub command: Vec<String>,
    /// How long one item may take, milliseconds; past it the process is
    /// killed (and restarted for the next item) and the item's score fails.
    pub timeout_ms: u64,
}

impl Default for ExternalParams {
    fn default() -> Self {
        ExternalParams {
            command: Vec::new(),
            timeout_ms: 10_000,
        }
    }
}

/// Placeholders a rendered rubric holds for what only the worker knows.
/// Private-use characters, so no dataset text produces one by accident.
pub mod placeholders {
    /// The model output being scored.
    pub const OUTPUT: &str = "\u{E000}vigil:output\u{E001}";
    /// The scorer's rendered reference (empty when the suite gives none).
    pub const REFERENCE: &str = "\u{E000}vigil:reference\u{E001}";
    /// The text sent to the model: the last user message, or the completion prompt.
    pub const PROMPT: &str = "\u{E000}vigil:prompt\u{E001}";
    /// Pairwise mode: the response shown first.
    pub const A: &str = "\u{E000}vigil:a\u{E001}";
    /// Pairwise mode: the response shown second.
    pub const B: &str = "\u{E000}vigil:b\u{E001}";

    /// The template variable names and their placeholders.
    pub const ALL: [(&str, &str); 5] = [
        ("output", OUTPUT),
        ("reference", REFERENCE),
        ("prompt", PROMPT),
        ("a", A),
        ("b", B),
    ];
}

/// What the worker fills into a rendered rubric.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fill<'a> {
    /// The output.
    pub output: &'a str,
    /// The reference.
    pub reference: &'a str,
    /// The prompt text.
    pub prompt: &'a str,
    /// Pairwise: the first response.
    pub a: &'a str,
    /// Pairwise: the second response.
    pub b: &'a str,
}

/// Replaces the placeholders of a rendered rubric in one pass (so a value
/// that itself contains a placeholder is never expanded again).
///
/// ```
/// use vigil_protocol::scorers::io::{fill, placeholders, Fill};
/// let text = format!("Q: {} A: {}", placeholders::PROMPT, placeholders::OUTPUT);
/// let filled = fill(&text, &Fill { output: "4", prompt: "2+2?", ..Default::default() });
/// assert_eq!(filled, "Q: 2+2? A: 4");
/// ```
pub fn fill(rendered: &str, values: &Fill<'_>) -> String {
    let mut out = String::with_capacity(rendered.len() + values.output.len());
    let mut rest = rendered;
    while let Some(start) = rest.find('\u{E000}') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let hit = placeholders::ALL
            .iter()
            .find(|(_, p)| tail.starts_with(p))
            .map(|(name, p)| (*name, p.len()));
        match hit {
            Some((name, len)) => {
                out.push_str(match name {
                    "output" => values.output,
                    "reference" => values.reference,
                    "prompt" => values.prompt,
                    "a" => values.a,
                    _ => values.b,
                });
                rest = &tail[len..];
            }
            None => {
                out.push('\u{E000}');
                rest = &tail['\u{E000}'.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_one_pass_and_keeps_stray_marks() {
        let text = format!(
            "{}|{}|{}|\u{E000}x",
            placeholders::A,
            placeholders::B,
            placeholders::REFERENCE
        );
        let filled = fill(
            &text,
            &Fill {
                a: placeholders::B,
                b: "second",
                reference: "",
                ..Default::default()
            },
        );
        assert_eq!(filled, format!("{}|second||\u{E000}x", placeholders::B));
    }

    #[test]
    fn params_default_on_the_wire() {
        let p: JudgeParams =
            crate::decode(&crate::encode(&serde_json::json!({})).unwrap()).unwrap();
        assert_eq!(
            (p.scale_min, p.scale_max, p.mode),
            (1.0, 5.0, JudgeMode::Single)
        );
        let e: ExternalParams =
            crate::decode(&crate::encode(&serde_json::json!({"command": ["x"]})).unwrap()).unwrap();
        assert_eq!(e.timeout_ms, 10_000);
    }
}
