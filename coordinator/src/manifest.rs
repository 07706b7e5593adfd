//! The manifest of a run: everything that determines its summary, so that
//! two runs are never compared without saying what differs between them.

use crate::suite::{Suite, TargetConfig};
use crate::validate::DatasetCheck;
use serde_json::json;
use sha2::{Digest, Sha256};
use vigil_protocol::{Manifest, ManifestDiff};

/// Builds the manifest of a run of `suite` against `target`.
/// `response_models` are the model ids the backend reported, most frequent first.
pub fn build(
    suite: &Suite,
    check: &DatasetCheck,
    target: &TargetConfig,
    nats_server_version: &str,
    response_models: Vec<String>,
) -> Manifest {
    let p = &suite.prompt;
    let messages: Vec<_> = p
        .messages
        .iter()
        .flatten()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let templates = json!({
        "system": p.system, "user": p.user, "messages": messages, "completion": p.completion,
    });
    let scorers = suite
        .scorers
        .iter()
        .map(|s| {
            let mut config =
                json!({"kind": s.kind, "reference": s.reference, "threshold": s.threshold});
            if let Some(rubric) = &s.prompt {
                config["rubric"] = json!(rubric);
            }
            (s.name.clone(), config.to_string())
        })
        .collect();
    Manifest {
        suite_sha256: suite.sha256.clone(),
        dataset_sha256: check.sha256.clone(),
        dataset_name: suite
            .dataset
            .named
            .as_ref()
            .map(|n| n.name.clone())
            .unwrap_or_default(),
        dataset_items: check.items,
        template_sha256: hex::encode(Sha256::digest(templates.to_string().as_bytes())),
        scorers,
        endpoint_kind: target.kind.as_str().into(),
        // A local target's model file stands where a server's URL would.
        base_url: match &target.model_path {
            Some(path) => path.display().to_string(),
            None => without_userinfo(&target.base_url),
        },
        model: target.model.clone(),
        sampling: serde_json::to_string(&target.params).unwrap_or_default(),
        response_models,
        nats_server_version: nats_server_version.to_string(),
        vigil_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// The URL without user name and password (they never reach a summary).
fn without_userinfo(base_url: &str) -> String {
    match url::Url::parse(base_url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => base_url.to_string(),
    }
}

/// Every field that differs between a baseline's and a candidate's manifest.
///
/// ```
/// use vigil_protocol::Manifest;
/// let a = Manifest { dataset_sha256: "aa".into(), model: "m".into(), ..Default::default() };
/// let b = Manifest { dataset_sha256: "bb".into(), model: "m".into(), ..Default::default() };
/// let d = vigil_coordinator::manifest::diff(&a, &b);
/// assert_eq!(d.len(), 1);
/// assert_eq!(d[0].field, "dataset_sha256");
/// ```
pub fn diff(baseline: &Manifest, candidate: &Manifest) -> Vec<ManifestDiff> {
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(ManifestDiff {
                field: name.into(),
                baseline: a,
                candidate: b,
            });
        }
    };
    field(
        "suite_sha256",
        baseline.suite_sha256.clone(),
        candidate.suite_sha256.clone(),
    );
    field(
        "dataset_sha256",
        baseline.dataset_sha256.clone(),
        candidate.dataset_sha256.clone(),
    );
    field(
        "dataset_items",
        baseline.dataset_items.to_string(),
        candidate.dataset_items.to_string(),
    );
    field(
        "template_sha256",
        baseline.template_sha256.clone(),
        candidate.template_sha256.clone(),
    );
    let names: std::collections::BTreeSet<&String> = baseline
        .scorers
        .keys()
        .chain(candidate.scorers.keys())
        .collect();
    for name in names {
        field(
            &format!("scorers.{name}"),
            baseline
                .scorers
                .get(name)
                .cloned()
                .unwrap_or_else(|| "(none)".into()),
            candidate
                .scorers
                .get(name)
                .cloned()
                .unwrap_or_else(|| "(none)".into()),
        );
    }
    field(
        "endpoint_kind",
        baseline.endpoint_kind.clone(),
        candidate.endpoint_kind.clone(),
    );
    field(
        "base_url",
        baseline.base_url.clone(),
        candidate.base_url.clone(),
    );
    field("model", baseline.model.clone(), candidate.model.clone());
    field(
        "sampling",
        baseline.sampling.clone(),
        candidate.sampling.clone(),
    );
    field(
        "response_models",
        baseline.response_models.join(","),
        candidate.response_models.join(","),
    );
    field(
        "nats_server_version",
        baseline.nats_server_version.clone(),
        candidate.nats_server_version.clone(),
    );
    field(
        "vigil_version",
        baseline.vigil_version.clone(),
        candidate.vigil_version.clone(),
    );
    out
}

/// The manifest diffs of two optional manifests (a missing one is one diff).
pub fn diff_optional(
    baseline: Option<&Manifest>,
    candidate: Option<&Manifest>,
) -> Vec<ManifestDiff> {
    match (baseline, candidate) {
        (Some(a), Some(b)) => diff(a, b),
        (None, None) => Vec::new(),
        (a, b) => vec![ManifestDiff {
            field: "manifest".into(),
            baseline: if a.is_some() { "present" } else { "absent" }.into(),
            candidate: if b.is_some() { "present" } else { "absent" }.into(),
        }],
    }
}
