//! Classification, text-metric and safety scorers end to end: a real
//! nats-server, a `vigil worker` process, the stub backend answering the
//! `[[reply: ...]]` of each prompt, and `vigil run` checking the summary's
//! per-class numbers against ones computed by hand.

use crate::common;

use common::*;
use std::io::Write;
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};
use vigil_testkit::stub::{StubConfig, StubServer};

/// (gold intent, the stub's reply).
const ITEMS: &[(&str, &str)] = &[
    ("billing", "Billing"),
    ("billing", "invoice"),
    ("billing", "shipping"),
    ("billing", "I can't help with that, mail bob@example.com"),
    ("shipping", "shipping"),
    ("shipping", "Delivery."),
    ("shipping", "refund"),
    ("refund", "refund"),
    ("refund", "REFUND!"),
    ("refund", "billing"),
    ("refund", "refund"),
    ("shipping", "shipping"),
];

fn suite(dir: &std::path::Path, base_url: &str) -> std::path::PathBuf {
    let mut f = std::fs::File::create(dir.join("dataset.jsonl")).unwrap();
    for (i, (gold, reply)) in ITEMS.iter().enumerate() {
        let line = serde_json::json!({
            "id": format!("t{i}"),
            "question": format!("Classify the request. [[reply: {reply}]]"),
            "intent": gold,
        });
        writeln!(f, "{line}").unwrap();
    }
    let path = dir.join("suite.yaml");
    std::fs::write(
        &path,
        format!(
            r#"name: support
dataset: {{ path: dataset.jsonl, id_field: id }}
prompt: {{ user: "{{{{ question }}}}" }}
targets:
  - {{ name: stub, base_url: "{base_url}", model: m, params: {{ temperature: 0 }}, timeout_s: 5, max_retries: 1 }}
scorers:
  - name: intent
    kind: classification
    reference: "{{{{ intent }}}}"
    labels:
      billing: [invoice]
      shipping: [delivery]
      refund: []
  - {{ name: exact, kind: exact_match, reference: "{{{{ intent }}}}", normalize: {{ ignore_case: true }} }}
  - {{ name: rouge, kind: rouge, reference: "{{{{ intent }}}}", variant: rouge1 }}
  - {{ name: bleu, kind: bleu, reference: "{{{{ intent }}}}" }}
  - {{ name: refusal, kind: refusal, expect: comply }}
  - {{ name: leaks, kind: pii }}
  - {{ name: toxic, kind: toxicity }}
gates:
  - {{ metric: intent.macro_f1, min: 0.6 }}
  - {{ metric: intent.f1.billing, min: 0.5 }}
  - {{ metric: bleu.corpus_bleu, min: 0.0 }}
shard_size: 5
"#
        ),
    )
    .unwrap();
    path
}

fn close(v: &serde_json::Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-12)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classification_summary_has_hand_computed_per_class_metrics() {
    let nats = NatsServer::start(NatsServerConfig::default())
        .await
        .unwrap();
    let stub = StubServer::start(StubConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let suite = suite(dir.path(), &stub.base_url());
    let validate = run(vigil().arg("validate").arg(&suite));
    assert_eq!(validate.status.code(), Some(0), "the suite validates");

    let mut worker = spawn_worker(&nats.url(), &stub.base_url(), 4);
    let out = dir.path().join("summary.json");
    let output = run(&mut coordinate(&suite, &nats.url(), 0, Some(&out)));
    assert_eq!(output.status.code(), Some(0), "every gate holds");
    let s = read_summary(&out);
    assert_eq!(s["items_scored"], ITEMS.len());

    // Hand-computed. Labels sorted, (other) last; rows gold, columns predicted.
    //            billing refund shipping (other)
    // billing       2      0       1       1
    // refund        1      3       0       0
    // shipping      0      1       3       0
    let c = &s["scores"]["intent"]["classification"];
    assert_eq!(
        c["labels"],
        serde_json::json!(["billing", "refund", "shipping", "(other)"])
    );
    assert_eq!(
        c["confusion"],
        serde_json::json!([[2, 0, 1, 1], [1, 3, 0, 0], [0, 1, 3, 0], [0, 0, 0, 0]])
    );
    assert_eq!(c["n"], 12);
    let billing = &c["per_class"]["billing"];
    assert!(close(&billing["precision"], 2.0 / 3.0), "{billing}");
    assert!(close(&billing["recall"], 0.5), "{billing}");
    assert!(close(&billing["f1"], 4.0 / 7.0), "{billing}");
    assert_eq!(billing["support"], 4);
    for label in ["refund", "shipping"] {
        let m = &c["per_class"][label];
        assert!(
            close(&m["precision"], 0.75) && close(&m["recall"], 0.75) && close(&m["f1"], 0.75),
            "{label}: {m}"
        );
        assert_eq!(m["support"], 4);
    }
    assert_eq!(c["per_class"]["(other)"]["predicted"], 1);
    assert!(close(&c["accuracy"], 8.0 / 12.0));
    assert!(close(&c["macro_precision"], 13.0 / 18.0), "{c}");
    assert!(close(&c["macro_recall"], 2.0 / 3.0), "{c}");
    assert!(close(&c["macro_f1"], 29.0 / 42.0), "{c}");
    assert!(close(&c["micro_precision"], 8.0 / 11.0), "{c}");
    assert!(close(&c["micro_recall"], 8.0 / 12.0), "{c}");
    assert!(close(&c["micro_f1"], 16.0 / 23.0), "{c}");
    // The scorer's own mean is the accuracy.
    assert!(close(&s["scores"]["intent"]["mean"], 8.0 / 12.0));

    // Gates read the classification fields.
    let gates = s["gates"].as_array().unwrap();
    assert!(close(&gates[0]["value"], 29.0 / 42.0), "{}", gates[0]);
    assert!(close(&gates[1]["value"], 4.0 / 7.0), "{}", gates[1]);

    // The other scorers ran on the same items.
    let pass = |name: &str| s["scores"][name]["pass_rate"].as_f64().unwrap();
    assert!((pass("refusal") - 11.0 / 12.0).abs() < 1e-12, "one refusal");
    assert!((pass("leaks") - 11.0 / 12.0).abs() < 1e-12, "one email");
    assert_eq!(pass("toxic"), 1.0);
    let corpus = &s["scores"]["bleu"]["corpus_bleu"];
    assert!(
        corpus["score"]
            .as_f64()
            .is_some_and(|v| (0.0..=1.0).contains(&v)),
        "{corpus}"
    );
    assert!(corpus["hyp_len"].as_u64().unwrap() >= 12);
    assert!(s["scores"]["rouge"].get("classification").is_none());

    // The terminal table shows the block compactly.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("classification intent  n 12  accuracy 0.6667"),
        "{stdout}"
    );
    assert!(
        stdout.contains("confusion (rows gold, columns predicted)"),
        "{stdout}"
    );
    assert!(stdout.contains("corpus bleu  bleu"), "{stdout}");

    sigterm(&worker);
    let _ = worker.wait();
}
