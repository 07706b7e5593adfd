//! `llm_judge`: a judge model grades the output with a rubric.
//!
//! The coordinator renders the rubric per item over the item's fields; the
//! worker fills in the output, the reference and the prompt
//! ([`vigil_protocol::scorers::io::fill`]), sends it to the judge target
//! through the worker's backend for its kind ([`crate::backends`]: an
//! OpenAI-compatible server with the key from the worker's allow list, or a
//! `local` GGUF model run in-process), with the job's cache policy and a
//! model-call span under the scorer's span, and parses the answer:
//!
//! - single mode: a score on the configured scale (`Score: 4`, `Rating:
//!   [[4]]`, `4/5`, JSON `{"score": 4, "rationale": ".."}`), mapped to [0, 1];
//! - pairwise mode: which of two responses is better (`[[A]]`, `[[B]]`,
//!   `[[C]]` for a tie, `Winner: A`, JSON `{"winner": "A"}`), asked twice with
//!   output and reference swapped, so a judge that prefers a position is
//!   caught: the two verdicts are averaged and a disagreement is reported.
//!
//! A judge that cannot be reached or whose answer has no score fails that
//! item's score (value 0, not passed) with the reason in the detail.

use super::io_env::{IoEnv, call_judge};
use super::{Common, IoScorer, ScoreInput, ScoreOutcome, ScorerError, quote};
use crate::backends::Backend;
use futures::future::BoxFuture;
use regex::Regex;
use serde_json::{Map, Value};
use std::sync::OnceLock;
use vigil_protocol::scorers::io::{Fill, JudgeMode, JudgeParams, fill};
use vigil_protocol::{ChatMessage, EndpointKind, Prompt, ScorerSpec};

/// The pass mark when the suite sets none: half way up the scale.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// A judge's grade of one output.
#[derive(Debug, Clone, PartialEq)]
pub struct Grade {
    /// The score as the judge gave it.
    pub raw: f64,
    /// The score mapped to [0, 1].
    pub value: f64,
    /// The judge's reasoning, when it gave any.
    pub rationale: String,
}

/// A pairwise judge's preference between the responses shown as A and B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    /// The first response is better.
    A,
    /// The second response is better.
    B,
    /// Neither is better.
    Tie,
}

impl Preference {
    fn name(self) -> &'static str {
        match self {
            Preference::A => "A",
            Preference::B => "B",
            Preference::Tie => "tie",
        }
    }
}

const RATIONALE_KEYS: &[&str] = &[
    "rationale",
    "reason",
    "reasoning",
    "explanation",
    "justification",
    "feedback",
];

/// The JSON object in a judge's answer: the whole text, a fenced block, or
/// the span from the first `{` to the last `}`.
fn json_object(text: &str) -> Option<Map<String, Value>> {
    let trimmed = text.trim();
    let mut candidates = vec![trimmed];
    if let Some(start) = trimmed.find("```") {
        let body = &trimmed[start + 3..];
        let body = body.strip_prefix("json").unwrap_or(body);
        if let Some(end) = body.find("```") {
            candidates.push(body[..end].trim());
        }
    }
    if let (Some(a), Some(b)) = (trimmed.find('{'), trimmed.rfind('}'))
        && a < b
    {
        candidates.push(&trimmed[a..=b]);
    }
    candidates
        .into_iter()
        .find_map(|c| match serde_json::from_str::<Value>(c) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        })
}

fn field<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| keys.iter().any(|key| k.eq_ignore_ascii_case(key)))
        .map(|(_, v)| v)
}

fn rationale_of(map: &Map<String, Value>) -> String {
    match field(map, RATIONALE_KEYS) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// A number with an optional denominator: `4`, `4.5`, `4/5`, `4 out of 5`.
fn number_over(text: &str) -> Option<(f64, Option<f64>)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"(?i)^\s*(-?\d+(?:\.\d+)?)\s*(?:(?:/|out of)\s*(\d+(?:\.\d+)?))?\s*\.?\s*$")
            .expect("valid regex")
    });
    let c = re.captures(text)?;
    let n = c[1].parse().ok()?;
    let d = c.get(2).and_then(|d| d.as_str().parse().ok());
    Some((n, d))
}

/// The text without the byte range `cut`, on one line.
fn without(text: &str, cut: std::ops::Range<usize>) -> String {
    let mut s = String::with_capacity(text.len());
    s.push_str(&text[..cut.start]);
    s.push(' ');
    s.push_str(&text[cut.end..]);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where a score was found in free text.
struct Found {
    raw: f64,
    out_of: Option<f64>,
    span: std::ops::Range<usize>,
}

/// The last match of `re` whose capture 1 is the score and capture 2 the
/// optional denominator, skipping ranges such as `score from 1 to 5`.
fn last_score(re: &Regex, text: &str) -> Option<Found> {
    re.captures_iter(text)
        .filter(|c| {
            let end = c.get(0).map_or(0, |m| m.end());
            !is_range_start(&text[end..])
        })
        .filter_map(|c| {
            Some(Found {
                raw: c.get(1)?.as_str().parse().ok()?,
                out_of: c.get(2).and_then(|d| d.as_str().parse().ok()),
                span: c.get(0)?.range(),
            })
        })
        .last()
}

/// Whether text starts like the rest of a range (`to 5`, `- 5`, `–5`).
fn is_range_start(rest: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?i)^\s*(?:to|-|–|—)\s*\d").expect("valid regex"))
        .is_match(rest)
}

/// Reads a judge's score on the scale `min..=max` and maps it to [0, 1].
///
/// Accepted, in this order: a JSON object with `score` (or `rating`,
/// `grade`) and an optional `rationale` (or `reason`, `explanation`, ..);
/// `[[4]]`; `Score: 4`, `Rating: 4/5`, `score of 4 out of 5`; an answer that
/// is only a number; `4/5` anywhere. The last occurrence wins, since judges
/// state their verdict after their reasoning. A score over a denominator
/// other than `max` (`8/10` on 1–5) is read as that fraction.
///
/// ```
/// use vigil_worker::scorers::llm_judge::parse_grade;
/// let g = parse_grade("Clear and correct.\nScore: 4/5", 1.0, 5.0).unwrap();
/// assert_eq!((g.raw, g.value), (4.0, 0.75));
/// assert_eq!(g.rationale, "Clear and correct.");
/// assert_eq!(parse_grade(r#"{"score": 5, "reason": "ok"}"#, 1.0, 5.0).unwrap().value, 1.0);
/// assert!(parse_grade("I cannot decide.", 1.0, 5.0).is_err());
/// ```
pub fn parse_grade(text: &str, min: f64, max: f64) -> Result<Grade, String> {
    let scale = |raw: f64, out_of: Option<f64>, rationale: String| {
        let value = match out_of {
            Some(d) if d > 0.0 && (d - max).abs() > f64::EPSILON => {
                if !(0.0..=d).contains(&raw) {
                    return Err(format!("score {raw} is outside 0–{d}"));
                }
                raw / d
            }
            _ => {
                if !(min..=max).contains(&raw) {
                    return Err(format!("score {raw} is outside the scale {min}–{max}"));
                }
                (raw - min) / (max - min)
            }
        };
        Ok(Grade {
            raw,
            value,
            rationale,
        })
    };
    if let Some(map) = json_object(text)
        && let Some(v) = field(&map, &["score", "rating", "grade"])
    {
        let parsed = match v {
            Value::Number(n) => n.as_f64().map(|n| (n, None)),
            Value::String(s) => number_over(s),
            _ => None,
        };
        return match parsed {
            Some((raw, out_of)) => scale(raw, out_of, rationale_of(&map)),
            None => Err(format!("the JSON score {v} is not a number")),
        };
    }
    static BRACKETS: OnceLock<Regex> = OnceLock::new();
    static LABELLED: OnceLock<Regex> = OnceLock::new();
    static FRACTION: OnceLock<Regex> = OnceLock::new();
    let brackets = BRACKETS.get_or_init(|| {
        Regex::new(r"\[\[\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?))?\s*\]\]")
            .expect("valid regex")
    });
    let labelled = LABELLED.get_or_init(|| {
        Regex::new(
            r"(?i)\b(?:score|rating|grade)\b[^0-9\n]{0,20}?(-?\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*(\d+(?:\.\d+)?))?",
        )
        .expect("valid regex")
    });
    let fraction = FRACTION.get_or_init(|| {
        Regex::new(r"(?i)(-?\d+(?:\.\d+)?)\s*(?:/|out of)\s*(\d+(?:\.\d+)?)").expect("valid regex")
    });
    if let Some(found) = last_score(brackets, text).or_else(|| last_score(labelled, text)) {
        return scale(found.raw, found.out_of, without(text, found.span));
    }
    let bare = text.trim().trim_matches(|c: char| c == '*' || c == '"');
    if let Some((raw, out_of)) = number_over(bare) {
        return scale(raw, out_of, String::new());
    }
    if let Some(found) = last_score(fraction, text) {
        return scale(found.raw, found.out_of, without(text, found.span));
    }
    Err("no score found".into())
}

/// Reads a pairwise judge's preference.
///
/// Accepted, in this order: a JSON object with `winner` (or `verdict`,
/// `preference`, `better`) of `A`, `B` or `tie`; `[[A]]`, `[[B]]`, `[[C]]`
/// (tie); `Winner: A`, `Verdict: tie`, `the better response is B`; an answer
/// that is only `A`, `B` or `tie`. The last occurrence wins.
///
/// ```
/// use vigil_worker::scorers::llm_judge::{parse_preference, Preference};
/// assert_eq!(parse_preference("A is vaguer. [[B]]").unwrap().0, Preference::B);
/// assert_eq!(parse_preference(r#"{"winner": "tie"}"#).unwrap().0, Preference::Tie);
/// assert!(parse_preference("Both have merits.").is_err());
/// ```
pub fn parse_preference(text: &str) -> Result<(Preference, String), String> {
    fn word(s: &str) -> Option<Preference> {
        let s = s
            .trim()
            .trim_matches(|c: char| "*\"'().[]:".contains(c))
            .trim();
        let lower = s.to_ascii_lowercase();
        let lower = lower
            .strip_prefix("response ")
            .or_else(|| lower.strip_prefix("assistant "))
            .or_else(|| lower.strip_prefix("answer "))
            .unwrap_or(&lower)
            .trim();
        match lower {
            "a" => Some(Preference::A),
            "b" => Some(Preference::B),
            "c" | "tie" | "draw" | "equal" | "neither" | "both" => Some(Preference::Tie),
            _ => None,
        }
    }
    if let Some(map) = json_object(text)
        && let Some(v) = field(
            &map,
            &["winner", "verdict", "preference", "better", "choice"],
        )
    {
        return match v.as_str().and_then(word) {
            Some(p) => Ok((p, rationale_of(&map))),
            None => Err(format!("the JSON verdict {v} is not A, B or tie")),
        };
    }
    static BRACKETS: OnceLock<Regex> = OnceLock::new();
    static LABELLED: OnceLock<Regex> = OnceLock::new();
    let brackets =
        BRACKETS.get_or_init(|| Regex::new(r"(?i)\[\[\s*(A|B|C|tie)\s*\]\]").expect("valid regex"));
    let labelled = LABELLED.get_or_init(|| {
        Regex::new(
            r"(?i)\b(?:winner|verdict|preference|preferred|better response|better answer|choice)\b\s*(?:is)?\s*[:=\-]?\s*\**\s*(?:response|assistant|answer)?\s*\(?\s*\b(A|B|tie|draw)\b",
        )
        .expect("valid regex")
    });
    for re in [brackets, labelled] {
        if let Some(c) = re.captures_iter(text).last()
            && let (Some(m), Some(all)) = (c.get(1), c.get(0))
            && let Some(p) = word(m.as_str())
        {
            return Ok((p, without(text, all.range())));
        }
    }
    if let Some(p) = word(text) {
        return Ok((p, String::new()));
    }
    Err("no verdict (A, B or tie) found".into())
}

/// The text the model was asked: the last user message, or the completion prompt.
pub(crate) fn prompt_text(prompt: &Prompt) -> &str {
    match prompt {
        Prompt::Chat(messages) => messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .or(messages.last())
            .map_or("", |m| m.content.as_str()),
        Prompt::Completion(text) => text,
    }
}

/// The `llm_judge` scorer of one job.
pub struct LlmJudge {
    common: Common,
    params: JudgeParams,
    env: IoEnv,
}

/// Builds an `llm_judge` scorer: the worker must allow the judge (an HTTP
/// endpoint in its allow list, which also gives its key, or a local model
/// file it was started with) and the scale must make sense.
pub fn build(
    spec: &ScorerSpec,
    params: &JudgeParams,
    env: &IoEnv,
) -> Result<LlmJudge, ScorerError> {
    let invalid = |message: String| ScorerError::InvalidParams {
        scorer: spec.name.clone(),
        message,
    };
    super::validated(spec)?;
    if !crate::backends::addressed(&params.judge) {
        return Err(invalid(
            "the judge needs a base_url and a model (a local judge: a model_path)".into(),
        ));
    }
    if let Err(reason) = env.backends().choose(&params.judge).allows(&params.judge) {
        return Err(ScorerError::NotAllowed {
            scorer: spec.name.clone(),
            message: format!("judge {reason}"),
        });
    }
    Ok(LlmJudge {
        common: Common {
            name: spec.name.clone(),
            threshold: Some(spec.threshold.unwrap_or(DEFAULT_THRESHOLD)),
        },
        params: params.clone(),
        env: env.clone(),
    })
}

impl LlmJudge {
    fn fail(&self, reason: impl Into<String>) -> ScoreOutcome {
        Err(self.common.failed(reason))
    }

    /// One question to the judge: its answer's text, or why there is none.
    async fn ask(
        &self,
        text: String,
        input: &ScoreInput<'_>,
        role: &'static str,
    ) -> Result<String, String> {
        let judge = &self.params.judge;
        let prompt = match judge.kind {
            // A local model is asked in chat form (its GGUF's chat template);
            // a `recorded` judge is refused by `validate` before this.
            EndpointKind::Chat | EndpointKind::Local | EndpointKind::Recorded => {
                let mut messages = Vec::with_capacity(2);
                if let Some(system) = &self.params.system {
                    messages.push(ChatMessage {
                        role: "system".into(),
                        content: system.clone(),
                    });
                }
                messages.push(ChatMessage {
                    role: "user".into(),
                    content: text,
                });
                Prompt::Chat(messages)
            }
            EndpointKind::Completions => match &self.params.system {
                Some(system) => Prompt::Completion(format!("{system}\n\n{text}")),
                None => Prompt::Completion(text),
            },
        };
        call_judge(&self.env, judge, &prompt, input.job, input.item, role)
            .await
            .map(|c| c.text)
            .map_err(|f| format!("judge call failed: {f}"))
    }

    async fn single(&self, rubric: &str, input: ScoreInput<'_>) -> ScoreOutcome {
        let text = fill(
            rubric,
            &Fill {
                output: input.output,
                reference: input.reference.unwrap_or(""),
                prompt: prompt_text(&input.item.prompt),
                a: input.output,
                b: input.reference.unwrap_or(""),
            },
        );
        let answer = match self.ask(text, &input, "judge").await {
            Ok(answer) => answer,
            Err(reason) => return self.fail(reason),
        };
        let (lo, hi) = (self.params.scale_min, self.params.scale_max);
        match parse_grade(&answer, lo, hi) {
            Ok(grade) => {
                let detail = if grade.rationale.is_empty() {
                    format!("judge: {} on {lo}–{hi}", grade.raw)
                } else {
                    format!("judge: {} on {lo}–{hi}: {}", grade.raw, grade.rationale)
                };
                Ok(self.common.verdict(grade.value, detail))
            }
            Err(e) => self.fail(format!(
                "judge answer unparseable ({e}): {}",
                quote(&answer)
            )),
        }
    }

    async fn pairwise(&self, rubric: &str, input: ScoreInput<'_>) -> ScoreOutcome {
        let Some(reference) = input.reference else {
            return Ok(self.common.no_reference());
        };
        let prompt = prompt_text(&input.item.prompt);
        let order = |a: &'static str| {
            let (first, second) = if a == "output" {
                (input.output, reference)
            } else {
                (reference, input.output)
            };
            fill(
                rubric,
                &Fill {
                    output: input.output,
                    reference,
                    prompt,
                    a: first,
                    b: second,
                },
            )
        };
        let (first_prompt, second_prompt) = (order("output"), order("reference"));
        let (output_first, output_second) = if first_prompt == second_prompt {
            // Identical texts: the swap shows the judge the same prompt, so
            // ask once (any verdict but a tie is then position bias).
            let answer = self.ask(first_prompt, &input, "judge").await;
            (answer.clone(), answer)
        } else {
            futures::join!(
                self.ask(first_prompt, &input, "judge"),
                self.ask(second_prompt, &input, "judge-swapped"),
            )
        };
        let read = |answer: Result<String, String>, which: &str| -> Result<Preference, String> {
            let answer = answer?;
            parse_preference(&answer).map(|(p, _)| p).map_err(|e| {
                format!(
                    "judge answer ({which}) unparseable ({e}): {}",
                    quote(&answer)
                )
            })
        };
        let first = match read(output_first, "output as A") {
            Ok(p) => p,
            Err(reason) => return self.fail(reason),
        };
        let second = match read(output_second, "output as B") {
            Ok(p) => p,
            Err(reason) => return self.fail(reason),
        };
        // The output's share of each verdict: a win 1, a tie 0.5, a loss 0.
        let as_a = match first {
            Preference::A => 1.0,
            Preference::Tie => 0.5,
            Preference::B => 0.0,
        };
        let as_b = match second {
            Preference::B => 1.0,
            Preference::Tie => 0.5,
            Preference::A => 0.0,
        };
        let value = (as_a + as_b) / 2.0;
        let outcome = if value > 0.5 {
            "output preferred"
        } else if value < 0.5 {
            "reference preferred"
        } else {
            "tie"
        };
        let detail = if as_a == as_b {
            format!("{outcome} (consistent in both orders)")
        } else {
            format!(
                "inconsistent: output as A → {}, output as B → {}; {outcome} ({value})",
                first.name(),
                second.name()
            )
        };
        Ok(self.common.verdict(value, detail))
    }
}

impl IoScorer for LlmJudge {
    fn name(&self) -> &str {
        &self.common.name
    }

    fn score<'a>(&'a self, input: ScoreInput<'a>) -> BoxFuture<'a, ScoreOutcome> {
        Box::pin(async move {
            let Some(rubric) = input.item.scorer_prompts.get(&self.common.name) else {
                return self.fail("no rubric for this item (the job carries none: is the coordinator older than this worker?)");
            };
            match self.params.mode {
                JudgeMode::Single => self.single(rubric, input).await,
                JudgeMode::Pairwise => self.pairwise(rubric, input).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendClient, CallFailure, Completion};
    use crate::backends::{Backends, LocalBackend};
    use std::sync::Arc;
    use vigil_protocol::scorers::io::placeholders;
    use vigil_protocol::{Item, Job, ScorerKind, TargetSpec};

    /// A local engine that allows one file and grades everything 4 on 1-5.
    #[derive(Debug)]
    struct Grader;

    impl LocalBackend for Grader {
        fn allows(&self, model_path: &str) -> bool {
            model_path == "judge.gguf"
        }
        fn complete<'a>(
            &'a self,
            _: &'a TargetSpec,
            prompt: &'a Prompt,
        ) -> BoxFuture<'a, Result<Completion, CallFailure>> {
            let asked = format!("{prompt:?}");
            Box::pin(async move {
                assert!(
                    asked.contains("grade: 42"),
                    "the rubric is filled in: {asked}"
                );
                Ok(Completion {
                    text: "Good. Score: 4".into(),
                    usage: Default::default(),
                    finish_reason: None,
                    model: None,
                    latency_ms: 0.0,
                    attempts: 1,
                })
            })
        }
    }

    fn local_judge(model_path: Option<&str>) -> ScorerSpec {
        ScorerSpec {
            name: "j".into(),
            threshold: None,
            kind: ScorerKind::LlmJudge(JudgeParams {
                judge: TargetSpec {
                    kind: EndpointKind::Local,
                    model: "judge".into(),
                    model_path: model_path.map(str::to_string),
                    ..Default::default()
                },
                ..Default::default()
            }),
        }
    }

    fn build_with(spec: &ScorerSpec, env: &IoEnv) -> Result<LlmJudge, ScorerError> {
        match &spec.kind {
            ScorerKind::LlmJudge(p) => build(spec, p, env),
            _ => unreachable!(),
        }
    }

    #[tokio::test]
    async fn a_local_judge_grades_in_process_when_the_worker_allows_its_file() {
        let engine: Arc<dyn LocalBackend> = Arc::new(Grader);
        let env = IoEnv::new(
            Backends::new(BackendClient::new(), Default::default(), Some(engine)),
            None,
            Default::default(),
        );
        let judge = build_with(&local_judge(Some("judge.gguf")), &env).unwrap();
        let item = Item {
            scorer_prompts: [("j".to_string(), format!("grade: {}", placeholders::OUTPUT))]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let job = Job::default();
        let input = ScoreInput {
            output: "42",
            reference: None,
            samples: &[],
            item: &item,
            job: &job,
        };
        let score = judge.score(input).await.unwrap();
        assert_eq!((score.value, score.passed), (0.75, true), "{score:?}");

        // Another file, or no engine at all: refused, naming the flag.
        let refused = build_with(&local_judge(Some("other.gguf")), &env)
            .err()
            .unwrap();
        assert!(
            matches!(&refused, ScorerError::NotAllowed { message, .. } if message.contains("--allow-model other.gguf")),
            "{refused}"
        );
        let no_engine = build_with(&local_judge(Some("judge.gguf")), &IoEnv::default());
        assert!(matches!(no_engine, Err(ScorerError::NotAllowed { .. })));
        // A local judge without its file is an invalid spec.
        let invalid = build_with(&local_judge(None), &env).err().unwrap();
        assert!(
            matches!(invalid, ScorerError::InvalidParams { .. }),
            "{invalid}"
        );
    }

    fn grade(text: &str) -> Result<(f64, f64), String> {
        parse_grade(text, 1.0, 5.0).map(|g| (g.raw, g.value))
    }

    #[test]
    fn grades_in_many_shapes() {
        assert_eq!(grade("Score: 4"), Ok((4.0, 0.75)));
        assert_eq!(grade("Score: 4/5"), Ok((4.0, 0.75)));
        assert_eq!(grade("**Rating:** 5"), Ok((5.0, 1.0)));
        assert_eq!(grade("Rating: [[3]]"), Ok((3.0, 0.5)));
        assert_eq!(grade("I'd give it a score of 2 out of 5."), Ok((2.0, 0.25)));
        assert_eq!(grade("1"), Ok((1.0, 0.0)));
        assert_eq!(grade("  3.5 \n"), Ok((3.5, 0.625)));
        assert_eq!(grade("Overall 4/5, good."), Ok((4.0, 0.75)));
        assert_eq!(
            grade("Grade = 8/10"),
            Ok((8.0, 0.8)),
            "another denominator is a fraction"
        );
        assert_eq!(
            grade(r#"{"score": 3, "rationale": "partly right"}"#),
            Ok((3.0, 0.5))
        );
        assert_eq!(grade(r#"{"rating": "4/5"}"#), Ok((4.0, 0.75)));
        assert_eq!(
            grade("Here you go:\n```json\n{\"score\": 2, \"reason\": \"wrong unit\"}\n```"),
            Ok((2.0, 0.25))
        );
    }

    #[test]
    fn the_last_verdict_wins_and_ranges_are_not_scores() {
        assert_eq!(
            grade("Asked to give a score from 1 to 5. Draft score: 2. After review, Score: 4"),
            Ok((4.0, 0.75))
        );
        assert_eq!(grade("On a scale of 1-5 my rating is 3"), Ok((3.0, 0.5)));
    }

    #[test]
    fn rationales_are_kept() {
        let g = parse_grade("The answer is correct but terse.\nScore: 4", 1.0, 5.0).unwrap();
        assert_eq!(g.rationale, "The answer is correct but terse.");
        let g = parse_grade(r#"{"score": 1, "explanation": "off topic"}"#, 1.0, 5.0).unwrap();
        assert_eq!(g.rationale, "off topic");
    }

    #[test]
    fn bad_answers_are_errors() {
        assert_eq!(grade("no idea").unwrap_err(), "no score found");
        assert!(
            grade("Score: 9")
                .unwrap_err()
                .contains("outside the scale 1–5")
        );
        assert!(
            grade(r#"{"score": "great"}"#)
                .unwrap_err()
                .contains("not a number")
        );
        assert!(grade("").is_err());
        assert!(parse_grade("Score: 0", 0.0, 10.0).is_ok(), "a 0–10 scale");
    }

    #[test]
    fn preferences_in_many_shapes() {
        let p = |t: &str| parse_preference(t).map(|(p, _)| p);
        assert_eq!(p("[[A]]"), Ok(Preference::A));
        assert_eq!(p("Assistant B is more precise. [[B]]"), Ok(Preference::B));
        assert_eq!(p("Both are equally good. [[C]]"), Ok(Preference::Tie));
        assert_eq!(p("Winner: A"), Ok(Preference::A));
        assert_eq!(p("Verdict: **Response B**"), Ok(Preference::B));
        assert_eq!(p("The better response is A."), Ok(Preference::A));
        assert_eq!(p("tie"), Ok(Preference::Tie));
        assert_eq!(
            p(r#"{"winner": "B", "reason": "cites sources"}"#),
            Ok(Preference::B)
        );
        assert!(p("They differ.").is_err());
        assert!(p(r#"{"winner": "neither really"}"#).is_err());
    }

    #[test]
    fn prompt_text_is_the_last_user_message() {
        let chat = Prompt::Chat(vec![
            ChatMessage {
                role: "system".into(),
                content: "be brief".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "2+2?".into(),
            },
        ]);
        assert_eq!(prompt_text(&chat), "2+2?");
        assert_eq!(prompt_text(&Prompt::Completion("Q:".into())), "Q:");
    }
}
