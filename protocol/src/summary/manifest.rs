//! The manifest of a run ([`crate::RunSummary::manifest`]): everything that
//! determined its outcome, and one field that differs between two runs.
//!
//! Every field is optional with a default, so older readers and writers keep
//! working.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything that determines a run's outcome, recorded so two runs are
/// never compared without saying what differs.
///
/// ```
/// use vigil_protocol::Manifest;
/// let m = Manifest { dataset_sha256: "ab".into(), dataset_items: 3, ..Default::default() };
/// let back: Manifest = vigil_protocol::decode(&vigil_protocol::encode(&m).unwrap()).unwrap();
/// assert_eq!(back, m);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Manifest {
    /// SHA-256 (hex) of the suite file's bytes.
    pub suite_sha256: String,
    /// SHA-256 (hex) of the dataset file's bytes; for a dataset stored in
    /// NATS (`dataset_name`), this is the version that was read.
    pub dataset_sha256: String,
    /// The stored dataset the run read (`dataset: { name }`); empty for a file.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dataset_name: String,
    /// Items in the dataset.
    pub dataset_items: u64,
    /// SHA-256 (hex) of the prompt templates (system, user, messages, completion).
    pub template_sha256: String,
    /// Each scorer's configuration as JSON text, by scorer name.
    pub scorers: BTreeMap<String, String>,
    /// The target's endpoint kind (`chat`, `completions`, `local`).
    pub endpoint_kind: String,
    /// The target's base URL, with any userinfo removed (a `local` target's
    /// model file).
    pub base_url: String,
    /// The model the target asks for.
    pub model: String,
    /// The sampling parameters as JSON text.
    pub sampling: String,
    /// The model ids the backend reported in responses (most frequent first).
    pub response_models: Vec<String>,
    /// The nats-server version the run used.
    pub nats_server_version: String,
    /// The vigil version of the coordinator.
    pub vigil_version: String,
}

/// One manifest field that differs between two runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ManifestDiff {
    /// The field (for example `dataset_sha256`, `scorers.exact`).
    pub field: String,
    /// The baseline's value.
    pub baseline: String,
    /// The candidate's value.
    pub candidate: String,
}
