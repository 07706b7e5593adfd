//! Every message type decodes as a plain MessagePack map with named fields,
//! the way a client in another language (Python's msgpack, JS's
//! @msgpack/msgpack) sees it, and unknown fields or kinds do not break readers.

use rmpv::Value;
use std::collections::BTreeMap;
use vigil_protocol::*;

fn as_map(bytes: &[u8]) -> BTreeMap<String, Value> {
    let value = rmpv::decode::read_value(&mut &bytes[..]).expect("valid msgpack");
    let Value::Map(entries) = value else {
        panic!("top level is not a map: {value:?}")
    };
    entries
        .into_iter()
        .map(|(k, v)| (k.as_str().expect("string keys").to_string(), v))
        .collect()
}

fn sample_job() -> Job {
    Job {
        run_id: "0190a0a0-0000-7000-8000-000000000000".into(),
        job_index: 3,
        suite: "arith".into(),
        target: TargetSpec {
            name: "stub".into(),
            kind: EndpointKind::Chat,
            base_url: "http://127.0.0.1:9/v1".into(),
            model: "m".into(),
            params: SamplingParams {
                temperature: Some(0.0),
                max_tokens: Some(8),
                seed: Some(7),
                ..Default::default()
            },
            timeout_ms: 1000,
            max_concurrency: 4,
            max_retries: 2,
            ..Default::default()
        },
        scorers: vec![
            ScorerSpec {
                name: "exact".into(),
                threshold: None,
                kind: ScorerKind::default(),
            },
            ScorerSpec {
                name: "num".into(),
                threshold: Some(1.0),
                kind: ScorerKind::Numeric {
                    tolerance: 0.5,
                    relative_tolerance: 0.0,
                },
            },
        ],
        items: vec![Item {
            index: 0,
            id: "q1".into(),
            prompt: Prompt::Chat(vec![ChatMessage {
                role: "user".into(),
                content: "1+1".into(),
            }]),
            references: [("exact".to_string(), "2".to_string())].into(),
            tags: [("lang".to_string(), "en".to_string())].into(),
            scorer_prompts: Default::default(),
            recorded: None,
        }],
        deadline_unix_ms: None,
        keep_output_chars: 100,
        cache: None,
        samples: 1,
    }
}

#[test]
fn job_is_a_map_with_named_fields() {
    let map = as_map(&encode(&sample_job()).unwrap());
    assert_eq!(
        map["run_id"].as_str(),
        Some("0190a0a0-0000-7000-8000-000000000000")
    );
    assert_eq!(map["job_index"].as_u64(), Some(3));
    let target = &map["target"];
    assert_eq!(target["base_url"].as_str(), Some("http://127.0.0.1:9/v1"));
    assert_eq!(target["kind"].as_str(), Some("chat"));
    let scorers = map["scorers"].as_array().unwrap();
    assert_eq!(scorers[1]["kind"]["kind"].as_str(), Some("numeric"));
    assert_eq!(
        scorers[1]["kind"]["params"]["tolerance"].as_f64(),
        Some(0.5)
    );
    let item = &map["items"].as_array().unwrap()[0];
    assert_eq!(item["references"]["exact"].as_str(), Some("2"));
    assert_eq!(item["prompt"]["chat"][0]["content"].as_str(), Some("1+1"));
}

#[test]
fn job_result_is_a_map_with_named_fields() {
    let result = JobResult {
        run_id: "r".into(),
        job_index: 1,
        worker_id: "w".into(),
        delivery: 2,
        items: vec![ItemResult {
            index: 5,
            id: "q5".into(),
            error: Some(ItemError {
                kind: ErrorKind::RateLimited,
                message: "429 x3".into(),
            }),
            latency_ms: 12.5,
            usage: TokenUsage {
                input: 3,
                output: 1,
            },
            ..Default::default()
        }],
        error: None,
    };
    let map = as_map(&encode(&result).unwrap());
    assert_eq!(map["delivery"].as_u64(), Some(2));
    assert!(
        !map.contains_key("error"),
        "a job-level error is written only when set"
    );
    let failed = JobResult {
        error: Some(ItemError {
            kind: ErrorKind::Malformed,
            message: "not MessagePack".into(),
        }),
        ..Default::default()
    };
    let failed_map = as_map(&encode(&failed).unwrap());
    assert_eq!(failed_map["error"]["kind"].as_str(), Some("malformed"));
    let item = &map["items"].as_array().unwrap()[0];
    assert_eq!(item["error"]["kind"].as_str(), Some("rate_limited"));
    assert_eq!(item["usage"]["input"].as_u64(), Some(3));
    assert_eq!(item["latency_ms"].as_f64(), Some(12.5));
}

#[test]
fn summary_has_the_contract_fields() {
    let mut summary = RunSummary {
        run_id: "r".into(),
        suite: "s".into(),
        target: "t".into(),
        ..Default::default()
    };
    summary.errors.insert("timeout".into(), 2);
    summary.scores.insert(
        "exact".into(),
        ScoreSummary {
            mean: 0.9,
            pass_rate: 0.9,
            n: 10,
            ..Default::default()
        },
    );
    let map = as_map(&encode(&summary).unwrap());
    for field in [
        "run_id",
        "suite",
        "target",
        "items_total",
        "items_scored",
        "items_failed",
        "errors",
        "latency_ms",
        "scores",
    ] {
        assert!(map.contains_key(field), "summary lacks {field}");
    }
    for field in ["p50", "p95", "p99"] {
        assert!(
            map["latency_ms"][field].is_f64(),
            "latency_ms lacks {field}"
        );
    }
    for field in ["mean", "pass_rate", "ci_low", "ci_high", "n"] {
        assert!(
            !map["scores"]["exact"][field].is_nil(),
            "score lacks {field}"
        );
    }
    assert_eq!(map["errors"]["timeout"].as_u64(), Some(2));
}

#[test]
fn progress_event_is_a_map() {
    let map = as_map(
        &encode(&ProgressEvent {
            run_id: "r".into(),
            phase: RunPhase::Running,
            done: 4,
            ..Default::default()
        })
        .unwrap(),
    );
    assert_eq!(map["phase"].as_str(), Some("running"));
    assert_eq!(map["done"].as_u64(), Some(4));
}

#[test]
fn readers_ignore_unknown_fields_and_fill_defaults() {
    // A newer writer adds a field and leaves optional ones out.
    let newer = Value::Map(vec![
        (Value::from("run_id"), Value::from("r9")),
        (Value::from("job_index"), Value::from(9)),
        (Value::from("from_the_future"), Value::from(true)),
    ]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &newer).unwrap();
    let job: Job = decode(&bytes).unwrap();
    assert_eq!(job.run_id, "r9");
    assert_eq!(job.job_index, 9);
    assert!(job.items.is_empty());
}

#[test]
fn unknown_scorer_and_error_kinds_decode() {
    let spec = Value::Map(vec![
        (Value::from("name"), Value::from("judge")),
        (
            Value::from("kind"),
            Value::Map(vec![
                (Value::from("kind"), Value::from("llm_judge_v9")),
                (
                    Value::from("params"),
                    Value::Map(vec![(Value::from("rubric"), Value::from("x"))]),
                ),
            ]),
        ),
    ]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &spec).unwrap();
    let decoded: ScorerSpec = decode(&bytes).expect("unknown scorer kinds decode");
    assert_eq!(
        decoded.kind,
        ScorerKind::Unknown {
            name: "llm_judge_v9".into()
        }
    );

    let err: ItemError = decode(
        &encode(&ItemError {
            kind: ErrorKind::Other("gpu_on_fire".into()),
            message: String::new(),
        })
        .unwrap(),
    )
    .unwrap();
    assert_eq!(err.kind.as_str(), "gpu_on_fire");
}

#[test]
fn every_type_round_trips() {
    let job = sample_job();
    assert_eq!(decode::<Job>(&encode(&job).unwrap()).unwrap(), job);
    for kind in [
        ScorerKind::Contains {
            normalize: Normalization {
                ignore_case: true,
                ..Default::default()
            },
        },
        ScorerKind::Regex {
            pattern: r"(\d+)".into(),
        },
        ScorerKind::Choice {
            choices: "ABCDE".into(),
        },
        ScorerKind::JsonSchema {
            schema: Some("{}".into()),
        },
        ScorerKind::CodeExec {
            language: "python".into(),
            k: 5,
            include_prompt: true,
            limits: vigil_protocol::SandboxLimits {
                timeout_s: Some(3.0),
                memory_mb: Some(512),
                ..Default::default()
            },
        },
        ScorerKind::LlmJudge(io_scorers::JudgeParams {
            judge: TargetSpec {
                base_url: "http://j/v1".into(),
                model: "judge".into(),
                ..Default::default()
            },
            mode: io_scorers::JudgeMode::Pairwise,
            ..Default::default()
        }),
        ScorerKind::EmbeddingSimilarity(io_scorers::EmbeddingParams::default()),
        ScorerKind::External(io_scorers::ExternalParams {
            command: vec!["python3".into(), "s.py".into()],
            timeout_ms: 500,
        }),
        ScorerKind::Unknown {
            name: "future".into(),
        },
    ] {
        let spec = ScorerSpec {
            name: "x".into(),
            threshold: None,
            kind,
        };
        assert_eq!(decode::<ScorerSpec>(&encode(&spec).unwrap()).unwrap(), spec);
    }
    let p = Prompt::Completion("Q: 1+1\nA:".into());
    assert_eq!(decode::<Prompt>(&encode(&p).unwrap()).unwrap(), p);
}

fn encode_value(v: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, v).unwrap();
    bytes
}

#[test]
fn text_scorer_kinds_round_trip_and_are_named_maps() {
    let kinds = [
        ScorerKind::Rouge {
            variant: RougeVariant::Rouge2,
        },
        ScorerKind::Bleu {
            smooth: BleuSmoothing::AddK,
            smooth_value: Some(0.5),
            lowercase: true,
            tokenize: BleuTokenizer::None,
        },
        ScorerKind::Classification {
            labels: vec![LabelSpec {
                name: "billing".into(),
                synonyms: vec!["invoice".into()],
            }],
            pattern: Some("(\\w+)".into()),
            normalize: Normalization::default(),
            match_mode: LabelMatch::Search,
        },
        ScorerKind::Refusal {
            phrases: Some(vec!["no".into()]),
            extra_phrases: vec![],
            expect: RefusalExpect::Comply,
        },
        ScorerKind::Pii {
            kinds: vec!["email".into()],
            patterns: [("ticket".to_string(), "T-\\d+".to_string())].into(),
            allow: vec![],
        },
        ScorerKind::Toxicity {
            words: None,
            extra_words: vec!["darn".into()],
        },
    ];
    for kind in kinds {
        let spec = ScorerSpec {
            name: "x".into(),
            threshold: None,
            kind,
        };
        let bytes = encode(&spec).unwrap();
        assert_eq!(decode::<ScorerSpec>(&bytes).unwrap(), spec);
        let map = as_map(&bytes);
        assert_eq!(map["kind"]["kind"].as_str(), Some(spec.kind.name()));
    }
    let map = as_map(
        &encode(&ScorerSpec {
            name: "r".into(),
            threshold: None,
            kind: ScorerKind::Rouge {
                variant: RougeVariant::RougeL,
            },
        })
        .unwrap(),
    );
    assert_eq!(map["kind"]["params"]["variant"].as_str(), Some("rougeL"));
    let map = as_map(
        &encode(&ScorerSpec {
            name: "b".into(),
            threshold: None,
            kind: ScorerKind::Bleu {
                smooth: BleuSmoothing::Exp,
                smooth_value: None,
                lowercase: false,
                tokenize: BleuTokenizer::Tok13a,
            },
        })
        .unwrap(),
    );
    assert_eq!(map["kind"]["params"]["tokenize"].as_str(), Some("13a"));
    assert_eq!(map["kind"]["params"]["smooth"].as_str(), Some("exp"));
}

#[test]
fn text_scorer_kinds_fill_defaults_from_empty_params() {
    // A writer in another language may send only the kind and no keys.
    for (name, want) in [
        (
            "rouge",
            ScorerKind::Rouge {
                variant: RougeVariant::RougeL,
            },
        ),
        (
            "toxicity",
            ScorerKind::Toxicity {
                words: None,
                extra_words: vec![],
            },
        ),
        (
            "pii",
            ScorerKind::Pii {
                kinds: vec![],
                patterns: Default::default(),
                allow: vec![],
            },
        ),
    ] {
        let spec = Value::Map(vec![
            (Value::from("name"), Value::from("s")),
            (
                Value::from("kind"),
                Value::Map(vec![
                    (Value::from("kind"), Value::from(name)),
                    (Value::from("params"), Value::Map(vec![])),
                ]),
            ),
        ]);
        let decoded: ScorerSpec = decode(&encode_value(&spec)).unwrap();
        assert_eq!(decoded.kind, want, "{name}");
    }
    // A classification spec without normalize gets the label defaults.
    let spec = Value::Map(vec![(
        Value::from("kind"),
        Value::Map(vec![
            (Value::from("kind"), Value::from("classification")),
            (Value::from("params"), Value::Map(vec![])),
        ]),
    )]);
    let decoded: ScorerSpec = decode(&encode_value(&spec)).unwrap();
    let ScorerKind::Classification { normalize, .. } = decoded.kind else {
        panic!("{:?}", decoded.kind)
    };
    assert_eq!(
        normalize,
        vigil_protocol::scorer_params::label_normalization()
    );
    // A variant this version does not know makes the whole kind Unknown (its
    // items fail with a reason) rather than failing the job's decoding.
    let spec = Value::Map(vec![(
        Value::from("kind"),
        Value::Map(vec![
            (Value::from("kind"), Value::from("rouge")),
            (
                Value::from("params"),
                Value::Map(vec![(Value::from("variant"), Value::from("rougeW"))]),
            ),
        ]),
    )]);
    let decoded: ScorerSpec = decode(&encode_value(&spec)).unwrap();
    assert_eq!(
        decoded.kind,
        ScorerKind::Unknown {
            name: "rouge".into()
        }
    );
}

#[test]
fn score_labels_and_bleu_stats_are_optional_named_fields() {
    let score = Score {
        scorer: "intent".into(),
        value: 1.0,
        passed: true,
        label: Some("billing".into()),
        gold_label: Some("billing".into()),
        bleu: Some(BleuStats {
            hyp_len: 3,
            ref_len: 4,
            correct: vec![2, 1, 0, 0],
            total: vec![3, 2, 1, 0],
        }),
        ..Default::default()
    };
    let bytes = encode(&score).unwrap();
    let map = as_map(&bytes);
    assert_eq!(map["label"].as_str(), Some("billing"));
    assert_eq!(map["gold_label"].as_str(), Some("billing"));
    assert_eq!(map["bleu"]["ref_len"].as_u64(), Some(4));
    assert_eq!(decode::<Score>(&bytes).unwrap(), score);
    // Absent when unset, so other scorers' results do not grow.
    let plain = as_map(
        &encode(&Score {
            scorer: "exact".into(),
            ..Default::default()
        })
        .unwrap(),
    );
    for key in ["label", "gold_label", "bleu"] {
        assert!(!plain.contains_key(key), "{key}");
    }
    // An old writer's score (no such fields) decodes with None.
    let old = Value::Map(vec![
        (Value::from("scorer"), Value::from("exact")),
        (Value::from("value"), Value::from(1.0)),
        (Value::from("passed"), Value::from(true)),
        (Value::from("detail"), Value::from("")),
    ]);
    let decoded: Score = decode(&encode_value(&old)).unwrap();
    assert_eq!((decoded.label, decoded.bleu), (None, None));
}

#[test]
fn summary_classification_and_corpus_bleu_are_maps() {
    let mut summary = RunSummary::default();
    summary.scores.insert(
        "intent".into(),
        ScoreSummary {
            classification: Some(ClassificationSummary {
                n: 2,
                macro_f1: 0.5,
                labels: vec!["a".into(), "b".into()],
                confusion: vec![vec![1, 0], vec![1, 0]],
                per_class: [(
                    "a".to_string(),
                    ClassMetrics {
                        precision: 0.5,
                        recall: 1.0,
                        f1: 2.0 / 3.0,
                        support: 1,
                        predicted: 2,
                    },
                )]
                .into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    summary.scores.insert(
        "bleu".into(),
        ScoreSummary {
            corpus_bleu: Some(CorpusBleu {
                score: 0.3,
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    let bytes = encode(&summary).unwrap();
    let map = as_map(&bytes);
    let c = &map["scores"]["intent"]["classification"];
    assert_eq!(c["macro_f1"].as_f64(), Some(0.5));
    assert_eq!(c["per_class"]["a"]["support"].as_u64(), Some(1));
    assert_eq!(c["confusion"][1][0].as_u64(), Some(1));
    assert_eq!(
        map["scores"]["bleu"]["corpus_bleu"]["score"].as_f64(),
        Some(0.3)
    );
    assert_eq!(decode::<RunSummary>(&bytes).unwrap(), summary);
}

#[test]
fn code_exec_params_default_when_absent() {
    let spec = Value::Map(vec![
        (Value::from("name"), Value::from("tests")),
        (
            Value::from("kind"),
            Value::Map(vec![
                (Value::from("kind"), Value::from("code_exec")),
                (Value::from("params"), Value::Map(vec![])),
            ]),
        ),
    ]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &spec).unwrap();
    let decoded: ScorerSpec = decode(&bytes).unwrap();
    assert_eq!(
        decoded.kind,
        ScorerKind::CodeExec {
            language: "python".into(),
            k: 1,
            include_prompt: false,
            limits: Default::default(),
        }
    );
    // A job without `samples` (an older coordinator) samples once.
    let job: Job = decode(&encode(&Job::default()).unwrap()).unwrap();
    assert_eq!(job.samples, 0);
}

#[test]
fn a_recorded_item_carries_its_output_as_named_fields() {
    let mut job = sample_job();
    job.target.kind = EndpointKind::Recorded;
    job.items[0].recorded = Some(Recorded {
        text: Some("2".into()),
        status: 200,
        latency_ms: 12.5,
        usage: Some(TokenUsage {
            input: 3,
            output: 1,
        }),
        model: Some("prod-model".into()),
    });
    let bytes = encode(&job).unwrap();
    let map: serde_json::Value = decode(&bytes).unwrap();
    assert_eq!(map["target"]["kind"].as_str(), Some("recorded"));
    let recorded = &map["items"][0]["recorded"];
    assert_eq!(recorded["text"].as_str(), Some("2"));
    assert_eq!(recorded["status"].as_u64(), Some(200));
    assert_eq!(recorded["model"].as_str(), Some("prod-model"));
    let back: Job = decode(&bytes).unwrap();
    assert_eq!(back, job);
    // An item without one writes no `recorded` key at all.
    let plain: serde_json::Value = decode(&encode(&sample_job()).unwrap()).unwrap();
    assert!(plain["items"][0].get("recorded").is_none());
}
