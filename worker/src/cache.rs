//! The response cache in the `vigil-cache` KV bucket: a response is reused
//! when everything that determines it is the same.
//!
//! The key is the SHA-256 (hex) of a canonical JSON document holding every
//! input of the HTTP request: the endpoint kind, the base URL (a `local`
//! target's model file instead), the model, the rendered prompt and every
//! sampling parameter (temperature, top_p, max_tokens, seed, stop), and what
//! identifies the model behind the name ([`crate::identity`]: the GGUF file's
//! SHA-256, or the server's `/v1/models` entry). The request body is a pure
//! function of these, so equal keys mean equal requests to the same model.
//! The API key is not part of it (it never changes what a model answers, and
//! must never be hashed into a shared store).
//!
//! Whether a job may use the cache is the coordinator's decision, carried by
//! the job ([`vigil_protocol::CachePolicy`]): off unless the suite or
//! `vigil run --cache` asks for it. The TTL is checked when reading (each
//! entry stores its write time), so one bucket serves suites with different
//! TTLs; the bucket's max age bounds every entry's life.

use crate::backend::Completion;
use crate::identity::Identity;
use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};
use vigil_protocol::{Job, Prompt, TargetSpec, TokenUsage};

/// A cached response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CachedResponse {
    /// The generated text.
    pub text: String,
    /// Token counts of the original call.
    pub usage: TokenUsage,
    /// The finish reason.
    pub finish_reason: Option<String>,
    /// The model id the backend reported.
    pub model: Option<String>,
    /// Latency of the original call, milliseconds.
    pub latency_ms: f64,
    /// When it was stored, Unix milliseconds.
    pub stored_at_ms: u64,
}

/// The response cache of a worker.
#[derive(Clone)]
pub struct ResponseCache {
    kv: kv::Store,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseCache")
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The cache key of a request: SHA-256 of everything that determines it.
///
/// ```
/// use vigil_protocol::{Prompt, TargetSpec, SamplingParams};
/// use vigil_worker::cache::key;
/// let mut t = TargetSpec { model: "m".into(), base_url: "http://h/v1".into(), ..Default::default() };
/// let p = Prompt::Completion("2 + 2 =".into());
/// let k1 = key(&t, &p);
/// t.params.seed = Some(7);
/// assert_ne!(k1, key(&t, &p), "the seed is part of the key");
/// t.timeout_ms = 5; // transport settings are not
/// assert_eq!(key(&t, &p), key(&t, &p));
/// assert_eq!(k1.len(), 64);
/// t.model_path = Some("a.gguf".into()); // a local target's model file is
/// assert_ne!(k1, key(&t, &p));
/// ```
pub fn key(target: &TargetSpec, prompt: &Prompt) -> String {
    key_identified(target, prompt, None)
}

/// [`key`] with what identifies the model (`None`: nothing known, the key
/// is [`key`]'s).
///
/// ```
/// use vigil_protocol::{Prompt, TargetSpec};
/// use vigil_worker::cache::{key, key_identified};
/// let t = TargetSpec { model: "m".into(), base_url: "http://h/v1".into(), ..Default::default() };
/// let p = Prompt::Completion("2 + 2 =".into());
/// assert_eq!(key_identified(&t, &p, None), key(&t, &p));
/// let a = key_identified(&t, &p, Some(r#"{"created":1,"id":"m"}"#));
/// let b = key_identified(&t, &p, Some(r#"{"created":2,"id":"m"}"#));
/// assert_ne!(a, b, "another model behind the same name and URL");
/// assert_ne!(a, key(&t, &p));
/// ```
pub fn key_identified(target: &TargetSpec, prompt: &Prompt, identity: Option<&str>) -> String {
    let mut doc = json!({
        "v": 1,
        "kind": target.kind,
        "base_url": target.base_url.trim_end_matches('/'),
        "model": target.model,
        "prompt": prompt,
        "params": target.params,
    });
    // A `local` target has no URL: its model file stands for the server.
    // Added only when set, so the keys of HTTP targets stay as they were.
    if let Some(path) = &target.model_path {
        doc["model_path"] = json!(path);
    }
    if let Some(identity) = identity {
        doc["model_identity"] = json!(identity);
    }
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}

impl ResponseCache {
    /// Opens the `vigil-cache` bucket, creating it (with the topology's max
    /// age) when missing, and giving an existing bucket without a max age one.
    pub async fn open(
        js: &jetstream::Context,
        topology: &vigil_nats::topology::TopologyConfig,
    ) -> Result<Self, vigil_nats::topology::TopologyError> {
        vigil_nats::topology::ensure_cache_bucket(js, topology)
            .await
            .map(|kv| ResponseCache { kv })
    }

    /// The cached response of `key`, unless missing, unreadable or older than `ttl_s`.
    pub async fn get(&self, key: &str, ttl_s: Option<u64>) -> Option<CachedResponse> {
        let bytes = self.kv.get(key).await.ok()??;
        let hit: CachedResponse = vigil_protocol::decode(&bytes).ok()?;
        if let Some(ttl) = ttl_s
            && now_ms().saturating_sub(hit.stored_at_ms) > ttl.saturating_mul(1000)
        {
            return None;
        }
        Some(hit)
    }

    /// Stores a successful completion under `key` (failures are only logged).
    pub async fn put(&self, key: &str, completion: &Completion) {
        let entry = CachedResponse {
            text: completion.text.clone(),
            usage: completion.usage,
            finish_reason: completion.finish_reason.clone(),
            model: completion.model.clone(),
            latency_ms: completion.latency_ms,
            stored_at_ms: now_ms(),
        };
        let Ok(bytes) = vigil_protocol::encode(&entry) else {
            return;
        };
        if let Err(e) = self.kv.put(key, bytes.into()).await {
            tracing::debug!(error = %e, "could not store a response in the cache");
        }
    }
}

/// A cache lookup for one item: the hit, or the key to store the answer under.
pub struct Lookup<'a> {
    cache: Option<&'a ResponseCache>,
    key: Option<String>,
    /// The cached completion, when there was one.
    pub hit: Option<Completion>,
}

/// Looks `prompt` up when the job's policy allows the cache.
pub async fn lookup<'a>(
    cache: Option<&'a ResponseCache>,
    job: &Job,
    prompt: &Prompt,
) -> Lookup<'a> {
    lookup_target(cache, job, &job.target, prompt).await
}

/// Looks up `prompt` sent to `target` (one sample's target: its own seed)
/// when the job's policy allows the cache.
pub async fn lookup_target<'a>(
    cache: Option<&'a ResponseCache>,
    job: &Job,
    target: &TargetSpec,
    prompt: &Prompt,
) -> Lookup<'a> {
    lookup_identified(cache, job, target, prompt, &Identity::NotReported).await
}

/// Whether `job` may use `cache` at all (the worker has one and the job's
/// policy turns it on).
pub fn allowed(cache: Option<&ResponseCache>, job: &Job) -> bool {
    // A recorded target's outputs come with the items: nothing to cache.
    cache.is_some()
        && job.cache.as_ref().is_some_and(|p| p.enabled)
        && job.target.kind != vigil_protocol::EndpointKind::Recorded
}

/// [`lookup_target`] for the model `identity` names: its identity is part of
/// the key, and a model whose identity could not be read
/// ([`Identity::Unavailable`]) bypasses the cache (no lookup, no store).
pub async fn lookup_identified<'a>(
    cache: Option<&'a ResponseCache>,
    job: &Job,
    target: &TargetSpec,
    prompt: &Prompt,
    identity: &Identity,
) -> Lookup<'a> {
    let policy = job.cache.as_ref().filter(|_| allowed(cache, job));
    let (Some(cache), Some(policy), Some(identity)) = (cache, policy, identity.key_part()) else {
        return Lookup {
            cache: None,
            key: None,
            hit: None,
        };
    };
    let key = key_identified(target, prompt, identity);
    let hit = cache.get(&key, policy.ttl_s).await.map(|h| Completion {
        text: h.text,
        usage: h.usage,
        finish_reason: h.finish_reason,
        model: h.model,
        latency_ms: h.latency_ms,
        attempts: 0,
    });
    Lookup {
        cache: Some(cache),
        key: Some(key),
        hit,
    }
}

impl Lookup<'_> {
    /// Stores a fresh completion when the cache was consulted and missed.
    pub async fn store(&self, completion: &Completion) {
        if let (Some(cache), Some(key), None) = (self.cache, &self.key, &self.hit) {
            cache.put(key, completion).await;
        }
    }
}
