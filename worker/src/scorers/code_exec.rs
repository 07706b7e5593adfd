//! `code_exec`: the output is a program; it runs with the item's unit tests
//! (the scorer's reference) in the [`Sandbox`](crate::sandbox) and passes
//! when it exits 0. With n sampled outputs the value is the unbiased pass@k
//! ([`pass_at_k`](super::pass_at_k)).
//!
//! The program is, in order: the completion prompt when `include_prompt` is
//! set (HumanEval: the prompt holds the signature and docstring, the model
//! writes the body), the code of the output (the first ```python fenced
//! block, else the first fenced block, else the whole text), then the tests.

use super::pass_at_k::pass_at_k;
use super::{Common, IoScorer, ScoreInput, ScoreOutcome, ScorerEnv, ScorerError};
use crate::sandbox::limits::Limits;
use crate::sandbox::runner::{Runner, runner_for};
use crate::sandbox::{Outcome, Sandbox, Status};
use crate::text::short;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;
use vigil_protocol::{Prompt, SandboxLimits, ScorerKind, ScorerSpec};

/// The `code_exec` scorer.
pub struct CodeExec {
    common: Common,
    runner: &'static dyn Runner,
    k: u32,
    include_prompt: bool,
    limits: Limits,
    sandbox: Arc<Sandbox>,
}

/// Builds a `code_exec` scorer from its spec; errors for other kinds and
/// unknown languages, then, before any program could run, when the worker
/// does not allow code execution or its sandbox is unavailable.
pub fn build(spec: &ScorerSpec, env: &ScorerEnv) -> Result<CodeExec, ScorerError> {
    let ScorerKind::CodeExec {
        language,
        k,
        include_prompt,
        limits,
    } = &spec.kind
    else {
        return Err(ScorerError::InvalidParams {
            scorer: spec.name.clone(),
            message: format!("kind `{}` is not code_exec", spec.kind.name()),
        });
    };
    let common = Common {
        name: spec.name.clone(),
        threshold: spec.threshold,
    };
    if runner_for(language).is_none() {
        return Err(unknown_language(&common, language));
    }
    let Some(sandbox) = env.sandbox.clone() else {
        return Err(ScorerError::CodeExecNotAllowed {
            scorer: spec.name.clone(),
        });
    };
    if let Some(e) = sandbox.isolation_now().and_then(|i| i.error.clone()) {
        return Err(ScorerError::SandboxUnavailable {
            scorer: spec.name.clone(),
            reason: e,
        });
    }
    CodeExec::new(common, language, *k, *include_prompt, limits, sandbox)
}

fn unknown_language(common: &Common, language: &str) -> ScorerError {
    ScorerError::InvalidParams {
        scorer: common.name.clone(),
        message: format!("no runner for language `{language}` (known: python)"),
    }
}

impl CodeExec {
    /// A scorer running `language` programs in `sandbox`; the limits are the
    /// spec's, defaulted and capped by the sandbox's configuration.
    pub fn new(
        common: Common,
        language: &str,
        k: u32,
        include_prompt: bool,
        limits: &SandboxLimits,
        sandbox: Arc<Sandbox>,
    ) -> Result<CodeExec, ScorerError> {
        let runner = runner_for(language).ok_or_else(|| unknown_language(&common, language))?;
        let limits = Limits::from_spec(limits, &sandbox.config().defaults, &sandbox.config().caps);
        Ok(CodeExec {
            common,
            runner,
            k: k.max(1),
            include_prompt,
            limits,
            sandbox,
        })
    }

    /// The program that runs for one output.
    pub fn program(&self, output: &str, prompt: &Prompt, tests: Option<&str>) -> String {
        let mut program = String::new();
        if self.include_prompt
            && let Prompt::Completion(p) = prompt
        {
            program.push_str(p);
        }
        program.push_str(&extract_code(output));
        if let Some(tests) = tests {
            program.push_str("\n\n");
            program.push_str(tests);
        }
        program.push('\n');
        program
    }

    /// Why a run did not pass, in one line.
    fn reason(&self, outcome: &Outcome) -> String {
        let l = &self.limits;
        let hint = self.runner.hint(outcome);
        let with_hint = |s: String| match &hint {
            Some(h) => format!("{s} ({h})"),
            None => s,
        };
        match &outcome.status {
            Status::Exited(0) => "passed".into(),
            Status::Exited(code) => with_hint(format!(
                "exit {code}: {}",
                last_line(&outcome.stderr).unwrap_or("no error output")
            )),
            Status::TimedOut => format!(
                "timed out after {:.1}s (wall-clock limit); killed",
                l.wall.as_secs_f64()
            ),
            Status::Signaled(24) => format!("CPU time limit ({}s) exceeded (SIGXCPU)", l.cpu_s),
            Status::Signaled(9) if outcome.oom_killed => with_hint("killed by SIGKILL".into()),
            Status::Signaled(9) => format!(
                "killed by SIGKILL (CPU time limit {}s, or out of memory)",
                l.cpu_s
            ),
            Status::Signaled(25) => "file size limit exceeded (SIGXFSZ)".into(),
            Status::Signaled(sig) => with_hint(format!("killed by signal {sig}")),
            Status::Failed(e) => format!("sandbox error: {e}"),
        }
    }

    async fn score_samples(&self, input: ScoreInput<'_>) -> ScoreOutcome {
        let samples: Vec<&str> = if input.samples.is_empty() {
            vec![input.output]
        } else {
            input.samples.iter().map(String::as_str).collect()
        };
        let programs: Vec<String> = samples
            .iter()
            .map(|s| self.program(s, &input.item.prompt, input.reference))
            .collect();
        // Equal programs (temperature 0, a backend that ignores seeds) run once.
        let mut distinct: Vec<&str> = Vec::new();
        for p in &programs {
            if !distinct.contains(&p.as_str()) {
                distinct.push(p);
            }
        }
        let outcomes = futures::future::join_all(
            distinct
                .iter()
                .map(|p| self.sandbox.run(self.runner, p, &self.limits)),
        )
        .await;
        // The sandbox could not run a program: no verdict on the model.
        if let Some(o) = outcomes
            .iter()
            .find(|o| matches!(o.status, Status::Failed(_)))
        {
            return Err(self.common.failed(self.reason(o)));
        }
        let by_program: HashMap<&str, &Outcome> = distinct.iter().copied().zip(&outcomes).collect();
        let n = programs.len() as u64;
        let passed = programs
            .iter()
            .filter(|p| by_program[p.as_str()].success())
            .count() as u64;
        let k = u64::from(self.k).min(n);
        let value = pass_at_k(n, passed, k);
        let first_failure = programs
            .iter()
            .map(|p| by_program[p.as_str()])
            .find(|o| !o.success());
        let mut detail = if n == 1 {
            match first_failure {
                None => format!("passed in {:.2}s", outcomes[0].elapsed.as_secs_f64()),
                Some(o) => self.reason(o),
            }
        } else {
            let mut d = format!("pass@{k} {value:.3}: {passed}/{n} samples passed");
            if let Some(o) = first_failure {
                d.push_str("; first failure: ");
                d.push_str(&self.reason(o));
            }
            d
        };
        if let Some(note) = outcomes.iter().find_map(|o| o.isolation_note.as_deref()) {
            detail = format!("{} [{}]", short(&detail, 120), note);
        }
        Ok(self.common.verdict(value, detail))
    }
}

impl IoScorer for CodeExec {
    fn name(&self) -> &str {
        &self.common.name
    }

    fn score<'a>(&'a self, input: ScoreInput<'a>) -> BoxFuture<'a, ScoreOutcome> {
        Box::pin(self.score_samples(input))
    }
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().map(str::trim).find(|l| !l.is_empty())
}

/// The code in a model output: the first fenced block tagged python (or
/// py, python3), else the first fenced block, else a block whose closing
/// fence was cut off, else the whole text.
///
/// ```
/// use vigil_worker::scorers::code_exec::extract_code;
/// assert_eq!(extract_code("Here:\n```python\nx = 1\n```\nDone."), "x = 1\n");
/// assert_eq!(extract_code("```\ny = 2\n```"), "y = 2\n");
/// assert_eq!(extract_code("    return a + b\n"), "    return a + b\n");
/// ```
pub fn extract_code(output: &str) -> String {
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in output.split_inclusive('\n') {
        let trimmed = line.trim();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some((info.trim().to_ascii_lowercase(), String::new()));
                }
            }
            Some((_, body)) => {
                if trimmed == "```" {
                    blocks.push(open.take().expect("open block"));
                } else {
                    body.push_str(line);
                }
            }
        }
    }
    let python = |info: &str| matches!(info, "python" | "py" | "python3");
    if let Some((_, body)) = blocks.iter().find(|(info, _)| python(info)) {
        return body.clone();
    }
    if let Some((_, body)) = blocks.iter().find(|(info, _)| info.is_empty()) {
        return body.clone();
    }
    if let Some((_, body)) = blocks.into_iter().next() {
        return body;
    }
    if let Some((_, body)) = open {
        return body;
    }
    output.to_string()
}

#[cfg(test)]
mod tests {
    use super::extract_code;

    #[test]
    fn prefers_python_blocks_and_survives_a_cut_fence() {
        let out = "```text\nnot code\n```\n```py\ndef f():\n    return 1\n```";
        assert_eq!(extract_code(out), "def f():\n    return 1\n");
        assert_eq!(extract_code("```python\nx = 1\n"), "x = 1\n");
    }
}
