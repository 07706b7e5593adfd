//! A `local` target end to end through NATS: a real nats-server, a `vigil
//! worker` process that allows the SmolLM2 file, and `vigil run` as the
//! coordinator. Answers are cached like an HTTP target's; the worker loads
//! only files its own flags allow.

use crate::common;
use crate::local_common;

use common::{read_summary, run, vigil};
use local_common::{KillOnDrop, MODEL_FILE, model_path};
use std::io::Write;
use std::path::Path;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};

const ITEMS: &[(&str, &str)] = &[
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of Italy?", "Rome"),
    ("Is the sun a star? Answer yes or no.", "yes"),
];

fn write_suite(dir: &Path, name: &str, model: &Path) -> std::path::PathBuf {
    let mut data = std::fs::File::create(dir.join(format!("{name}.jsonl"))).unwrap();
    for (i, (q, a)) in ITEMS.iter().enumerate() {
        writeln!(
            data,
            r#"{{"id": "q{i}", "question": "{q}", "answer": "{a}"}}"#
        )
        .unwrap();
    }
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            r#"name: {name}
dataset: {{ path: {name}.jsonl, id_field: id }}
prompt:
  messages:
    - {{ role: system, content: "Reply with a single word and nothing else." }}
    - {{ role: user, content: "What is the capital of Spain?" }}
    - {{ role: assistant, content: "Madrid" }}
    - {{ role: user, content: "{{{{ question }}}}" }}
targets:
  - name: smollm2
    kind: local
    model_path: {model}
    params: {{ temperature: 0, max_tokens: 4, stop: ["\n"] }}
scorers:
  - {{ name: contains, kind: contains, reference: "{{{{ answer }}}}", normalize: {{ ignore_case: true }} }}
  - {{ name: exact, kind: exact_match, reference: "{{{{ answer }}}}", normalize: {{ ignore_case: true, remove_punctuation: true }} }}
shard_size: 2
"#,
            model = model.display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_items_run_through_nats_and_unallowed_models_are_refused() {
    let model = model_path();
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _worker = KillOnDrop(
        vigil()
            .args(["worker", "--nats", &nats.url(), "--concurrency", "4"])
            .arg("--allow-model")
            .arg(&model)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let coordinate = |suite: &Path, out: &Path| {
        run(vigil()
            .arg("run")
            .arg(suite)
            .args([
                "--nats",
                &nats.url(),
                "--workers",
                "0",
                "--no-progress",
                "--cache",
            ])
            .arg("--out")
            .arg(out))
    };

    // The allowed model answers every item; tokens are counted.
    let suite = write_suite(dir.path(), "capitals", &model);
    let out = dir.path().join("capitals.json");
    let output = coordinate(&suite, &out);
    assert_eq!(output.status.code(), Some(0));
    let s = read_summary(&out);
    assert_eq!(s["items_total"], ITEMS.len());
    assert_eq!(s["items_scored"], ITEMS.len(), "{s:#}");
    assert_eq!(s["items_failed"], 0);
    assert_eq!(s["model"], MODEL_FILE);
    let (input, output_tokens) = (
        s["tokens"]["input"].as_u64().unwrap(),
        s["tokens"]["output"].as_u64().unwrap(),
    );
    assert!(
        input > 20 * ITEMS.len() as u64,
        "template + question: {input}"
    );
    assert!(
        (ITEMS.len() as u64..=4 * ITEMS.len() as u64).contains(&output_tokens),
        "1..=max_tokens per item: {output_tokens}"
    );
    assert_eq!(s["scores"]["contains"]["n"], ITEMS.len());
    // A real model: it knows at least one of these (SmolLM2-135M knows most).
    assert!(
        s["scores"]["contains"]["passed"].as_u64().unwrap() >= 1,
        "{s:#}"
    );

    // The same run again (both with --cache): every answer comes from the
    // response cache, keyed by the model file's SHA-256, with the same scores.
    let again = dir.path().join("capitals-again.json");
    assert_eq!(coordinate(&suite, &again).status.code(), Some(0));
    let cached = read_summary(&again);
    assert_eq!(cached["items_cached"], ITEMS.len(), "{cached:#}");
    assert_eq!(cached["scores"], s["scores"]);

    // A job naming another file (here a copy elsewhere, under another name)
    // is refused by the same worker: data never widens what it may load.
    let other = dir.path().join("other.gguf");
    std::fs::write(&other, b"never opened").unwrap();
    let suite = write_suite(dir.path(), "other", &other);
    let out = dir.path().join("other.json");
    coordinate(&suite, &out);
    let s = read_summary(&out);
    assert_eq!(s["items_failed"], ITEMS.len(), "{s:#}");
    assert_eq!(s["errors"]["backend_not_allowed"], ITEMS.len(), "{s:#}");
}

/// A local model as an in-process `llm_judge`: `vigil run` (embedded
/// nats-server, in-process worker) asks the stub for the answers and the
/// SmolLM2 file, named only by the judge's block, for the grades. The suite
/// alone allows the file; every item gets a judge score.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_model_judges_in_process() {
    let model = model_path();
    let stub = vigil_testkit::stub::StubServer::start(Default::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sums.jsonl"),
        "{\"id\": \"a\", \"question\": \"What is 2 + 3?\", \"answer\": \"5\"}\n\
         {\"id\": \"b\", \"question\": \"What is 4 + 4?\", \"answer\": \"8\"}\n",
    )
    .unwrap();
    let suite = dir.path().join("judged.yaml");
    std::fs::write(
        &suite,
        format!(
            r#"name: judged
dataset: {{ path: sums.jsonl, id_field: id }}
prompt: {{ user: "{{{{ question }}}}" }}
targets:
  - {{ name: stub, kind: chat, base_url: {url}, model: stub-model, params: {{ temperature: 0, max_tokens: 8 }} }}
scorers:
  - name: judge
    kind: llm_judge
    reference: "{{{{ answer }}}}"
    judge: {{ kind: local, model_path: {model}, params: {{ temperature: 0, max_tokens: 1 }} }}
    scale: [0, 10]
    system: "Rate answers from 0 to 10. Reply with a number only."
    rubric: "Question: {{{{ prompt }}}}\nAnswer: {{{{ output }}}}\nReference: {{{{ reference }}}}\nRating (0 to 10):"
"#,
            url = stub.base_url(),
            model = model.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("judged.json");
    let output = run(vigil()
        .arg("run")
        .arg(&suite)
        .args(["--no-progress", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--out")
        .arg(&out));
    assert_eq!(output.status.code(), Some(0));
    let s = read_summary(&out);
    // Every item's answer got a grade from the local judge (a score, not a
    // scorer error): SmolLM2-135M's grades themselves are not the point.
    assert_eq!(s["items_scored"], 2, "{s:#}");
    assert_eq!(s["items_failed"], 0, "{s:#}");
    assert_eq!(s["scores"]["judge"]["n_scored"], 2, "{s:#}");
}
