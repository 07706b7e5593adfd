//! Suite keys of the scorers that do IO on the worker: `llm_judge`,
//! `embedding_similarity` and `external`.
//!
//! A judge or an embedder is an endpoint: the name of one of the suite's
//! `targets`, or an inline block with the keys of a target (`name` optional).
//! Its API key is never in the job: a worker sends one only if its own allow
//! list maps the endpoint's URL to a key (`vigil run` and `vigil worker
//! --suite` allow the suite's judges and embedders with their `api_key_env`).

use super::check::Checker;
use super::raw::RawTarget;
use super::{SuiteError, TargetConfig};
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use vigil_protocol::ScorerKind;
use vigil_protocol::scorers::io::{
    EmbeddingParams, ExternalParams, JudgeMode, JudgeParams, check_scale,
};

/// What an IO scorer adds to a [`super::ScorerConfig`].
pub(super) struct Parsed {
    pub kind: ScorerKind,
    /// The per-item prompt template (a judge's rubric).
    pub prompt: Option<String>,
    /// The judge's or embedder's endpoint, with its `api_key_env`.
    pub endpoint: Option<TargetConfig>,
    /// The pass mark mapped to [0, 1], when the kind has its own key for it.
    pub threshold: Option<f64>,
}

/// `judge: name` or `judge: { base_url: .., model: .. }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum EndpointRef {
    Name(String),
    Inline(serde_json::Map<String, Value>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JudgeKeys {
    judge: EndpointRef,
    #[serde(default)]
    rubric: Option<String>,
    #[serde(default)]
    rubric_path: Option<PathBuf>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    scale: Option<[f64; 2]>,
    #[serde(default)]
    pass_mark: Option<f64>,
    #[serde(default)]
    mode: JudgeMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbeddingKeys {
    embedder: EndpointRef,
}

/// `command: "python3 x.py"` or `command: [python3, x.py]`.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a command line or a list of words")]
enum CommandKeys {
    Line(String),
    Words(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalKeys {
    command: CommandKeys,
    #[serde(default)]
    timeout_s: Option<f64>,
}

/// The rubric used when a single-mode judge names none.
pub fn default_rubric(lo: f64, hi: f64, with_reference: bool) -> String {
    let mut s = format!(
        "You are an impartial judge. Grade the response to the question below on a scale of {lo} to {hi}, \
         where {lo} means wrong or useless and {hi} means correct, complete and helpful."
    );
    if with_reference {
        s.push_str(" The reference answer is correct: judge the response against it.");
    }
    s.push_str("\n\n<question>\n{{ prompt }}\n</question>\n");
    if with_reference {
        s.push_str("<reference>\n{{ reference }}\n</reference>\n");
    }
    s.push_str(&format!(
        "<response>\n{{{{ output }}}}\n</response>\n\n\
         Explain your judgement in one or two sentences, then end with a line \"Score: N\" where N is a number from {lo} to {hi}."
    ));
    s
}

/// The rubric used when a pairwise judge names none.
pub const DEFAULT_PAIRWISE_RUBRIC: &str = "You are an impartial judge. Compare the two responses to the question below \
and decide which is better: more correct, complete and helpful. Do not let the order of the responses, their length \
or their style influence you.\n\n<question>\n{{ prompt }}\n</question>\n<response_a>\n{{ a }}\n</response_a>\n\
<response_b>\n{{ b }}\n</response_b>\n\nExplain your judgement briefly, then end with your verdict: \"[[A]]\" if \
response A is better, \"[[B]]\" if response B is better, \"[[C]]\" for a tie.";

impl Checker<'_> {
    /// Reads the keys of an IO scorer kind.
    pub(super) fn io_scorer(
        &self,
        i: usize,
        kind: &str,
        reference: Option<&str>,
        threshold: Option<f64>,
        params: Value,
        targets: &[TargetConfig],
    ) -> Result<Parsed, SuiteError> {
        let at = |key: &str| format!("scorers[{i}].{key}");
        match kind {
            "llm_judge" => {
                let p: JudgeKeys = self.params(i, params)?;
                let judge = self.endpoint(i, "judge", p.judge, targets)?;
                let [lo, hi] = p.scale.unwrap_or([1.0, 5.0]);
                check_scale(lo, hi).map_err(|e| self.err(at(&e.key), e.message))?;
                let threshold = match (p.pass_mark, threshold, p.mode) {
                    (Some(_), Some(_), _) => {
                        return Err(self.err(
                            at("pass_mark"),
                            "give either `pass_mark` (on the judge's scale) or `threshold` (in [0, 1]), not both",
                        ));
                    }
                    (Some(_), None, JudgeMode::Pairwise) => {
                        return Err(self.err(
                            at("pass_mark"),
                            "a pairwise judge has no scale: use `threshold` (0.5 = not worse than the reference)",
                        ));
                    }
                    (Some(m), None, JudgeMode::Single) => {
                        if !(m.is_finite() && (lo..=hi).contains(&m)) {
                            return Err(self.err(
                                at("pass_mark"),
                                format!("must be on the scale {lo}–{hi}, got {m}"),
                            ));
                        }
                        Some((m - lo) / (hi - lo))
                    }
                    (None, t, _) => t,
                };
                if p.mode == JudgeMode::Pairwise && reference.is_none() {
                    return Err(self.err(
                        at("reference"),
                        "a pairwise judge compares the output with the reference: give a reference template (for example a baseline answer)",
                    ));
                }
                let rubric = match (p.rubric, p.rubric_path) {
                    (Some(_), Some(_)) => {
                        return Err(self.err(
                            at("rubric_path"),
                            "give either `rubric` or `rubric_path`, not both",
                        ));
                    }
                    (Some(r), None) => r,
                    (None, Some(file)) => {
                        let full = self.resolve(&file);
                        std::fs::read_to_string(&full).map_err(|e| {
                            self.err(
                                at("rubric_path"),
                                format!("cannot read `{}`: {e}", full.display()),
                            )
                        })?
                    }
                    (None, None) => match p.mode {
                        JudgeMode::Single => default_rubric(lo, hi, reference.is_some()),
                        JudgeMode::Pairwise => DEFAULT_PAIRWISE_RUBRIC.to_string(),
                    },
                };
                if rubric.trim().is_empty() {
                    return Err(self.err(at("rubric"), "must not be empty"));
                }
                Ok(Parsed {
                    kind: ScorerKind::LlmJudge(JudgeParams {
                        judge: judge.spec(),
                        mode: p.mode,
                        scale_min: lo,
                        scale_max: hi,
                        system: p.system,
                    }),
                    prompt: Some(rubric),
                    endpoint: Some(judge),
                    threshold,
                })
            }
            "embedding_similarity" => {
                let p: EmbeddingKeys = self.params(i, params)?;
                let embedder = self.endpoint(i, "embedder", p.embedder, targets)?;
                Ok(Parsed {
                    kind: ScorerKind::EmbeddingSimilarity(EmbeddingParams {
                        embedder: embedder.spec(),
                    }),
                    prompt: None,
                    endpoint: Some(embedder),
                    threshold,
                })
            }
            _ => {
                let p: ExternalKeys = self.params(i, params)?;
                let command = match p.command {
                    CommandKeys::Line(line) => shlex::split(&line).ok_or_else(|| {
                        self.err(at("command"), "unbalanced quotes in the command line")
                    })?,
                    CommandKeys::Words(words) => words,
                };
                let timeout_ms = match p.timeout_s {
                    None => ExternalParams::default().timeout_ms,
                    Some(t) if t.is_finite() && t > 0.0 => (t * 1000.0).round().max(1.0) as u64,
                    Some(t) => {
                        return Err(self.err(
                            at("timeout_s"),
                            format!("must be a positive number of seconds, got {t}"),
                        ));
                    }
                };
                let kind = ScorerKind::External(ExternalParams {
                    command,
                    timeout_ms,
                });
                kind.validate()
                    .map_err(|e| self.err(at(&e.key), e.message))?;
                Ok(Parsed {
                    kind,
                    prompt: None,
                    endpoint: None,
                    threshold,
                })
            }
        }
    }

    /// A judge or embedder: a suite target by name, or an inline target block.
    fn endpoint(
        &self,
        i: usize,
        key: &str,
        endpoint: EndpointRef,
        targets: &[TargetConfig],
    ) -> Result<TargetConfig, SuiteError> {
        let place = format!("scorers[{i}].{key}");
        match endpoint {
            EndpointRef::Name(name) => targets.iter().find(|t| t.name == name).cloned().ok_or_else(|| {
                let known: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
                self.err(
                    &place,
                    format!(
                        "names no target `{name}` (targets: {}); or give an inline block with base_url and model",
                        known.join(", ")
                    ),
                )
            }),
            EndpointRef::Inline(mut block) => {
                block
                    .entry("name")
                    .or_insert_with(|| Value::String(key.to_string()));
                let raw: RawTarget = serde_path_to_error::deserialize(Value::Object(block))
                    .map_err(|err| {
                        let sub = err.path().to_string();
                        let field = if sub == "." {
                            place.clone()
                        } else {
                            format!("{place}.{sub}")
                        };
                        self.err(field, err.into_inner().to_string())
                    })?;
                // Checked like a target; its errors name this place instead.
                self.target(0, raw).map_err(|e| match e {
                    SuiteError::Invalid {
                        path,
                        field,
                        message,
                        location,
                    } => SuiteError::Invalid {
                        path,
                        field: field.replacen("targets[0]", &place, 1),
                        message,
                        location,
                    },
                    other => other,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::suite::{Suite, SuiteFormat};
    use std::path::Path;
    use vigil_protocol::ScorerKind;
    use vigil_protocol::scorers::io::JudgeMode;

    fn suite(scorers: &str) -> Suite {
        let text = format!(
            r#"
name: s
dataset: {{ path: d.jsonl }}
prompt: {{ user: "{{{{ q }}}}" }}
targets: [{{ name: t, base_url: "http://127.0.0.1:1/v1", model: m, api_key_env: T_KEY }}]
scorers:
{scorers}
"#
        );
        Suite::from_str(&text, SuiteFormat::Yaml, Path::new("s.yaml")).unwrap()
    }

    #[test]
    fn a_judge_by_name_or_inline_with_a_pass_mark_on_its_scale() {
        let s = suite(
            r#"  - { name: a, kind: llm_judge, judge: t, scale: [0, 10], pass_mark: 7 }
  - name: b
    kind: llm_judge
    judge: { base_url: "http://j:1/v1", model: big, api_key_env: J_KEY, params: { temperature: 0 } }
    mode: pairwise
    reference: "{{ r }}"
    threshold: 0.6"#,
        );
        let a = &s.scorers[0];
        assert_eq!(a.threshold, Some(0.7));
        let ScorerKind::LlmJudge(p) = &a.kind else {
            panic!("{:?}", a.kind)
        };
        assert_eq!(
            (p.scale_min, p.scale_max, p.mode),
            (0.0, 10.0, JudgeMode::Single)
        );
        assert_eq!(p.judge.model, "m");
        let rubric = a.prompt.as_deref().unwrap();
        assert!(rubric.contains("scale of 0 to 10") && !rubric.contains("<reference>"));
        assert_eq!(
            a.endpoint.as_ref().unwrap().api_key_env.as_deref(),
            Some("T_KEY")
        );

        let b = &s.scorers[1];
        assert_eq!(b.threshold, Some(0.6));
        assert_eq!(b.prompt.as_deref(), Some(super::DEFAULT_PAIRWISE_RUBRIC));
        let endpoint = b.endpoint.as_ref().unwrap();
        assert_eq!(
            (endpoint.name.as_str(), endpoint.model.as_str()),
            ("judge", "big")
        );
        assert_eq!(endpoint.api_key_env.as_deref(), Some("J_KEY"));
        assert_eq!(s.scorer_endpoints().count(), 2);
    }

    #[test]
    fn commands_as_a_line_or_words() {
        let s = suite(
            r#"  - { name: a, kind: external, command: "python3 '/opt/my scorer.py' -v" }
  - { name: b, kind: external, command: [sh, x.sh], timeout_s: 0.5 }"#,
        );
        let ScorerKind::External(a) = &s.scorers[0].kind else {
            panic!()
        };
        assert_eq!(a.command, ["python3", "/opt/my scorer.py", "-v"]);
        assert_eq!(a.timeout_ms, 10_000);
        let ScorerKind::External(b) = &s.scorers[1].kind else {
            panic!()
        };
        assert_eq!((b.command.len(), b.timeout_ms), (2, 500));
    }
}
