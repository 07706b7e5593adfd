//! What identifies the model behind a target, for the response-cache key: a
//! model swapped behind the same URL and name must never be answered from
//! the cache of the old one.
//!
//! - A `local` target: the SHA-256 of the GGUF file the worker loads, hashed
//!   once per worker and file (the engine also loads each file once).
//! - An HTTP target: the server's `/v1/models` entry for the model (`id`,
//!   `created`, `owned_by` and whatever else it reports, except vLLM's
//!   per-request `permission` ids), fetched once per worker, run and target,
//!   with the worker's own API key for that base URL.
//!
//! A server that reports nothing for the model (no `/v1/models`, or no entry
//! with the model's id) leaves the key as it was before identities existed.
//! A model whose identity could not be read (the file is unreadable, the
//! server answered with an error or not at all) bypasses the cache for that
//! run on that worker: better a backend call than an answer from another model.

use crate::backend::BackendClient;
use crate::backends::LocalBackend;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;
use vigil_protocol::TargetSpec;

/// Most HTTP identities remembered; past it the oldest half is forgotten
/// (a run whose identity is forgotten fetches it again).
const MAX_REMEMBERED: usize = 1024;

/// What identifies a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The model reported this (canonical JSON, or `sha256:<hex>` of a file).
    Reported(String),
    /// The server reports nothing about the model: the key is as without identities.
    NotReported,
    /// The identity could not be read: do not use the cache.
    Unavailable(String),
}

impl Identity {
    /// What goes into the cache key: `None` to bypass the cache, else the
    /// identity (`None` inside when nothing is reported).
    ///
    /// ```
    /// use vigil_worker::identity::Identity;
    /// assert_eq!(Identity::NotReported.key_part(), Some(None));
    /// assert_eq!(Identity::Reported("x".into()).key_part(), Some(Some("x")));
    /// assert_eq!(Identity::Unavailable("down".into()).key_part(), None);
    /// ```
    pub fn key_part(&self) -> Option<Option<&str>> {
        match self {
            Identity::Reported(s) => Some(Some(s)),
            Identity::NotReported => Some(None),
            Identity::Unavailable(_) => None,
        }
    }
}

type Slot = Arc<OnceCell<Identity>>;

/// A run, a base URL and a model.
type HttpKey = (String, String, String);

/// The identities a worker has looked up, each computed once.
#[derive(Debug, Default)]
pub struct ModelIdentities {
    http: Mutex<HashMap<HttpKey, (u64, Slot)>>,
    files: Mutex<HashMap<PathBuf, Slot>>,
    inserted: AtomicU64,
    /// `/v1/models` requests made.
    pub fetched: AtomicU64,
    /// Model files hashed.
    pub files_hashed: AtomicU64,
}

impl ModelIdentities {
    /// The identity of an HTTP `target`'s model in run `run_id`, fetched on
    /// the first call for this run, base URL and model.
    pub async fn http(
        &self,
        backend: &BackendClient,
        run_id: &str,
        target: &TargetSpec,
        api_key: Option<&str>,
    ) -> Identity {
        let slot = {
            let mut map = self.http.lock().expect("identity lock");
            if map.len() >= MAX_REMEMBERED {
                let mut ages: Vec<u64> = map.values().map(|(at, _)| *at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                map.retain(|_, (at, _)| *at > cut);
            }
            let key = (
                run_id.to_string(),
                target.base_url.trim_end_matches('/').to_string(),
                target.model.clone(),
            );
            let at = self.inserted.fetch_add(1, Ordering::Relaxed);
            map.entry(key)
                .or_insert_with(|| (at, Slot::default()))
                .1
                .clone()
        };
        slot.get_or_init(|| async {
            self.fetched.fetch_add(1, Ordering::Relaxed);
            let identity = match backend.model_entry(target, api_key).await {
                Ok(Some(entry)) => Identity::Reported(canonical_entry(entry)),
                Ok(None) => Identity::NotReported,
                Err(e) => Identity::Unavailable(e.to_string()),
            };
            log(&target.model, run_id, &identity);
            identity
        })
        .await
        .clone()
    }

    /// The identity of a `local` target's model file (the one `engine`
    /// loads for it): `sha256:<hex>` of its bytes, hashed once per file.
    pub async fn local(&self, engine: &dyn LocalBackend, model_path: &str) -> Identity {
        let Some(path) = engine.model_file(model_path) else {
            return Identity::Unavailable(format!("model file `{model_path}` is not allowed"));
        };
        let slot = self
            .files
            .lock()
            .expect("identity lock")
            .entry(path.clone())
            .or_default()
            .clone();
        slot.get_or_init(|| async {
            self.files_hashed.fetch_add(1, Ordering::Relaxed);
            let hashed = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || sha256_file(&path)).await
            };
            let identity = match hashed {
                Ok(Ok(hex)) => Identity::Reported(format!("sha256:{hex}")),
                Ok(Err(e)) => Identity::Unavailable(format!("{}: {e}", path.display())),
                Err(e) => Identity::Unavailable(e.to_string()),
            };
            log(model_path, "", &identity);
            identity
        })
        .await
        .clone()
    }
}

fn log(model: &str, run_id: &str, identity: &Identity) {
    match identity {
        Identity::Reported(id) => {
            tracing::info!(model, run_id, identity = %id, "model identity for the response cache")
        }
        Identity::NotReported => tracing::info!(
            model,
            run_id,
            "the server reports nothing about the model: cache keys without its identity"
        ),
        Identity::Unavailable(why) => tracing::warn!(
            model,
            run_id,
            reason = %why,
            "model identity unavailable: the response cache is bypassed for it"
        ),
    }
}

/// The entry as canonical JSON (keys sorted), without fields that change
/// on every request (vLLM's `permission` list carries fresh ids).
fn canonical_entry(mut entry: serde_json::Map<String, serde_json::Value>) -> String {
    entry.remove("permission");
    let sorted: std::collections::BTreeMap<_, _> = entry.into_iter().collect();
    serde_json::to_string(&sorted).unwrap_or_default()
}

/// SHA-256 (hex) of a file's bytes, read in 1 MiB chunks.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Files;

    impl LocalBackend for Files {
        fn allows(&self, _: &str) -> bool {
            true
        }
        fn complete<'a>(
            &'a self,
            _: &'a TargetSpec,
            _: &'a vigil_protocol::Prompt,
        ) -> futures::future::BoxFuture<
            'a,
            Result<crate::backend::Completion, crate::backend::CallFailure>,
        > {
            unreachable!("not called")
        }
    }

    #[tokio::test]
    async fn a_model_file_is_hashed_once_and_its_content_is_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
        std::fs::write(&a, b"weights one").unwrap();
        std::fs::write(&b, b"weights two").unwrap();
        let ids = ModelIdentities::default();
        let first = ids.local(&Files, a.to_str().unwrap()).await;
        let again = ids.local(&Files, a.to_str().unwrap()).await;
        assert_eq!(first, again);
        assert_eq!(
            first,
            Identity::Reported(format!(
                "sha256:{}",
                hex::encode(Sha256::digest(b"weights one"))
            ))
        );
        assert_eq!(ids.files_hashed.load(Ordering::Relaxed), 1, "hashed once");
        assert_ne!(ids.local(&Files, b.to_str().unwrap()).await, first);
        let missing = ids
            .local(&Files, dir.path().join("no.gguf").to_str().unwrap())
            .await;
        assert!(matches!(missing, Identity::Unavailable(_)), "{missing:?}");
    }

    #[tokio::test]
    async fn an_http_identity_is_the_models_entry_read_once_per_run_and_target() {
        let stub = vigil_testkit::stub::StubServer::start(Default::default())
            .await
            .unwrap();
        let (backend, ids) = (BackendClient::new(), ModelIdentities::default());
        let target = TargetSpec {
            base_url: stub.base_url(),
            model: "stub-model".into(),
            timeout_ms: 5000,
            ..Default::default()
        };
        let a = ids.http(&backend, "run-1", &target, None).await;
        assert!(
            matches!(&a, Identity::Reported(s) if s.contains(r#""created":0"#) && s.contains(r#""id":"stub-model""#)),
            "{a:?}"
        );
        stub.set_model_created(5);
        assert_eq!(
            ids.http(&backend, "run-1", &target, None).await,
            a,
            "read once per run"
        );
        assert_eq!(stub.stats().models.load(Ordering::Relaxed), 1);
        let b = ids.http(&backend, "run-2", &target, None).await;
        assert!(
            matches!(&b, Identity::Reported(s) if s.contains(r#""created":5"#)),
            "{b:?}"
        );
        // Nothing reported: no entry with the model's id, or no route at all.
        let other = TargetSpec {
            model: "other-model".into(),
            ..target.clone()
        };
        assert_eq!(
            ids.http(&backend, "run-2", &other, None).await,
            Identity::NotReported
        );
        let no_route = TargetSpec {
            base_url: format!("{}/elsewhere", stub.base_url()),
            ..target.clone()
        };
        assert_eq!(
            ids.http(&backend, "run-2", &no_route, None).await,
            Identity::NotReported
        );
        // Unreadable: the cache is bypassed.
        let down = TargetSpec {
            base_url: "http://127.0.0.1:1/v1".into(),
            ..target.clone()
        };
        let down = ids.http(&backend, "run-2", &down, None).await;
        assert!(matches!(down, Identity::Unavailable(_)), "{down:?}");
    }

    #[test]
    fn entries_are_canonical_and_drop_per_request_ids() {
        let entry = |json: &str| match serde_json::from_str(json).unwrap() {
            serde_json::Value::Object(m) => canonical_entry(m),
            _ => unreachable!(),
        };
        assert_eq!(
            entry(r#"{"owned_by":"x","id":"m","created":1,"permission":[{"id":"p1"}]}"#),
            entry(r#"{"id":"m","created":1,"owned_by":"x","permission":[{"id":"p2"}]}"#)
        );
        assert_ne!(
            entry(r#"{"id":"m","created":1}"#),
            entry(r#"{"id":"m","created":2}"#)
        );
    }
}
