//! pass@k over several samples of one item, through the real sandbox.

use std::sync::Arc;
use vigil_protocol::{Item, Job, Prompt, SandboxLimits};
use vigil_worker::sandbox::{Sandbox, SandboxConfig};
use vigil_worker::scorers::code_exec::CodeExec;
use vigil_worker::scorers::{Common, IoScorer, ScoreInput};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_at_k_counts_passing_samples_with_the_unbiased_estimator() {
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        uid_base: 500_000 + 64 * (std::process::id() % 1000),
        ..Default::default()
    }));
    let item = Item {
        prompt: Prompt::Completion("def double(x):\n".into()),
        ..Default::default()
    };
    let job = Job::default();
    let right = "    return 2 * x\n".to_string();
    let wrong = "```python\n    return x + 1\n```".to_string();
    let samples = vec![right.clone(), wrong.clone(), right, wrong];
    let tests = "assert double(3) == 6, 'double(3)'";
    for (k, want, detail) in [
        (
            1,
            0.5,
            "pass@1 0.500: 2/4 samples passed; first failure: exit 1: AssertionError: double(3)",
        ),
        // 1 − C(2, 2) / C(4, 2) = 1 − 1/6
        (
            2,
            5.0 / 6.0,
            "pass@2 0.833: 2/4 samples passed; first failure: exit 1: AssertionError: double(3)",
        ),
        (
            3,
            1.0,
            "pass@3 1.000: 2/4 samples passed; first failure: exit 1: AssertionError: double(3)",
        ),
    ] {
        let scorer = CodeExec::new(
            Common {
                name: "tests".into(),
                threshold: Some(0.5),
            },
            "python",
            k,
            true,
            &SandboxLimits::default(),
            sandbox.clone(),
        )
        .unwrap();
        let s = scorer
            .score(ScoreInput {
                output: &samples[0],
                reference: Some(tests),
                samples: &samples,
                item: &item,
                job: &job,
            })
            .await
            .expect("the sandbox runs the program (a sandbox error is an item error)");
        assert!((s.value - want).abs() < 1e-12, "k={k}: {}", s.value);
        assert!(s.passed, "threshold 0.5");
        assert_eq!(s.detail, detail);
    }
}
