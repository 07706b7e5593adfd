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
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
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
    /// The context the bucket was opened with: writes are published on it.
    js: jetstream::Context,
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
            .map(|kv| ResponseCache { kv, js: js.clone() })
    }

    /// The cached response of `key`, unless missing, unreadable or older than `ttl_s`.
    pub async fn get(&self, key: &str, ttl_s: Option<u64>) -> Option<CachedResponse> {
        let bytes = self.kv.get(key).await.ok()??;
        fresh(&bytes, ttl_s)
    }

    /// The cached responses of `keys` (those present, readable and not older
    /// than `ttl_s`), read in as few requests as possible: one JetStream
    /// batch direct get (`multi_last`, nats-server 2.11 and newer) per
    /// [`BATCH_KEYS`] keys, else one concurrent get per key. A read that
    /// fails or takes longer than [`BATCH_WAIT`] leaves its keys missing:
    /// those items call their backend.
    pub async fn get_many(
        &self,
        keys: &[&str],
        ttl_s: Option<u64>,
    ) -> HashMap<String, CachedResponse> {
        let mut found = HashMap::new();
        if keys.is_empty() {
            return found;
        }
        let direct = self.kv.stream.cached_info().config.allow_direct;
        let batch = vigil_nats::topology::parse_version(&self.js.client().server_info().version)
            .is_some_and(|v| v >= (2, 11));
        if !(direct && batch) || self.kv.use_jetstream_prefix {
            let gets = keys
                .iter()
                .map(|key| async move { (*key, self.get(key, ttl_s).await) });
            for (key, hit) in futures::future::join_all(gets).await {
                if let Some(hit) = hit {
                    found.insert(key.to_string(), hit);
                }
            }
            return found;
        }
        for chunk in keys.chunks(BATCH_KEYS) {
            match tokio::time::timeout(BATCH_WAIT, self.read_batch(chunk, ttl_s, &mut found)).await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cache batch read failed; its items call their backend")
                }
                Err(_) => {
                    tracing::debug!("cache batch read timed out; its items call their backend")
                }
            }
        }
        found
    }

    /// One batch direct get of the last entries of `keys` into `found`.
    async fn read_batch(
        &self,
        keys: &[&str],
        ttl_s: Option<u64>,
        found: &mut HashMap<String, CachedResponse>,
    ) -> Result<(), async_nats::Error> {
        let prefix = &self.kv.prefix;
        let subjects: Vec<String> = keys.iter().map(|k| format!("{prefix}{k}")).collect();
        let request = serde_json::to_vec(&json!({ "multi_last": subjects, "batch": keys.len() }))?;
        let client = self.js.client();
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(inbox.clone()).await?;
        client
            .publish_with_reply(
                format!("$JS.API.DIRECT.GET.{}", self.kv.stream_name),
                inbox,
                request.into(),
            )
            .await?;
        while let Some(reply) = replies.next().await {
            // A status ends the batch: 204 after the last entry, 404 when
            // no key has one, anything else is an error (the rest misses).
            if let Some(status) = reply.status {
                return match status.as_u16() {
                    204 | 404 => Ok(()),
                    code => Err(
                        format!("status {code} {}", reply.description.unwrap_or_default()).into(),
                    ),
                };
            }
            let headers = reply.headers.as_ref();
            let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
            // A deleted or purged key is a miss.
            if header("KV-Operation").is_some_and(|op| op != "PUT") {
                continue;
            }
            let Some(key) = header("Nats-Subject").and_then(|s| s.strip_prefix(prefix.as_str()))
            else {
                continue;
            };
            if let Some(hit) = fresh(&reply.payload, ttl_s) {
                found.insert(key.to_string(), hit);
            }
        }
        Ok(())
    }

    /// Stores a successful completion under `key`, pipelined: this returns
    /// once the write is queued on the connection (so it reaches the server
    /// before anything the caller publishes afterwards, such as the job's
    /// result), and the server's acknowledgement is awaited in the
    /// background. A write that fails is only logged: a lost cache entry
    /// costs one more model call later, never a result.
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
        let Some(subject) = self.subject(key) else {
            // A bucket reached through another JetStream domain: its put
            // subject needs that domain's prefix, which only the store knows.
            if let Err(e) = self.kv.put(key, bytes.into()).await {
                tracing::debug!(error = %e, "could not store a response in the cache");
            }
            return;
        };
        // What `kv::Store::put` does, without waiting for the PubAck here:
        // a synchronous round trip per item was the cache's toll on misses.
        match self.js.publish(subject, bytes.into()).await {
            Ok(ack) => {
                tokio::spawn(async move {
                    if let Err(e) = ack.await {
                        tracing::debug!(error = %e, "the server did not store a cache entry");
                    }
                });
            }
            Err(e) => tracing::debug!(error = %e, "could not store a response in the cache"),
        }
    }

    /// The subject a put of `key` is published on, as `kv::Store::put`
    /// builds it; `None` for a key the bucket does not accept (the store's
    /// own put then reports it) or a bucket of another JetStream domain.
    fn subject(&self, key: &str) -> Option<String> {
        // `kv::Store`'s key rule: `[-/_=.a-zA-Z0-9]+`, no dot at either end.
        let valid = !key.is_empty()
            && !key.starts_with('.')
            && !key.ends_with('.')
            && key.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'=' | b'.')
            });
        if !valid || self.kv.use_jetstream_prefix {
            return None;
        }
        let prefix = self.kv.put_prefix.as_ref().unwrap_or(&self.kv.prefix);
        Some(format!("{prefix}{key}"))
    }
}

/// Keys per batch read: a request naming them stays far below any
/// `max_payload`, and the server answers at most 1024 subjects at once.
pub const BATCH_KEYS: usize = 256;

/// How long a batch read may take before its keys count as misses.
pub const BATCH_WAIT: Duration = Duration::from_secs(5);

/// A stored entry, unless unreadable or older than `ttl_s`.
fn fresh(bytes: &[u8], ttl_s: Option<u64>) -> Option<CachedResponse> {
    let hit: CachedResponse = vigil_protocol::decode(bytes).ok()?;
    if let Some(ttl) = ttl_s
        && now_ms().saturating_sub(hit.stored_at_ms) > ttl.saturating_mul(1000)
    {
        return None;
    }
    Some(hit)
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
    let hit = cache.get(&key, policy.ttl_s).await.map(cached_completion);
    Lookup {
        cache: Some(cache),
        key: Some(key),
        hit,
    }
}

/// A cached response as the completion of a call (no attempt made).
fn cached_completion(h: CachedResponse) -> Completion {
    Completion {
        text: h.text,
        usage: h.usage,
        finish_reason: h.finish_reason,
        model: h.model,
        latency_ms: h.latency_ms,
        attempts: 0,
    }
}

/// The cache's answers for every call of a job, read up front in batches
/// ([`ResponseCache::get_many`]): no item waits on a lookup of its own.
pub struct JobLookups<'a> {
    cache: Option<&'a ResponseCache>,
    /// Per item of the job (in its order), per sample: the cache key.
    keys: Vec<Vec<String>>,
    hits: HashMap<String, CachedResponse>,
}

impl<'a> JobLookups<'a> {
    /// Reads the entries of every item and sample of `job` for the model
    /// `identity` names, when the job's policy allows the cache (as
    /// [`lookup_identified`] decides for one call).
    pub async fn read(
        cache: Option<&'a ResponseCache>,
        job: &Job,
        identity: &Identity,
    ) -> JobLookups<'a> {
        let policy = job.cache.as_ref().filter(|_| allowed(cache, job));
        let (Some(cache), Some(policy), Some(identity)) = (cache, policy, identity.key_part())
        else {
            return JobLookups {
                cache: None,
                keys: Vec::new(),
                hits: HashMap::new(),
            };
        };
        // Sample 0 is sent to the job's target as it is.
        let targets: Vec<std::borrow::Cow<'_, TargetSpec>> = (0..job.samples.max(1))
            .map(|i| match i {
                0 => std::borrow::Cow::Borrowed(&job.target),
                i => std::borrow::Cow::Owned(crate::sampling::target_for_sample(&job.target, i)),
            })
            .collect();
        let keys: Vec<Vec<String>> = job
            .items
            .iter()
            .map(|item| {
                targets
                    .iter()
                    .map(|t| key_identified(t, &item.prompt, identity))
                    .collect()
            })
            .collect();
        let all: Vec<&str> = keys.iter().flatten().map(String::as_str).collect();
        let hits = cache.get_many(&all, policy.ttl_s).await;
        JobLookups {
            cache: Some(cache),
            keys,
            hits,
        }
    }

    /// The lookup of sample `sample` of the job's `position`-th item.
    pub fn lookup(&self, position: usize, sample: u32) -> Lookup<'a> {
        let key = self.keys.get(position).and_then(|k| k.get(sample as usize));
        match (self.cache, key) {
            (Some(cache), Some(key)) => Lookup {
                cache: Some(cache),
                key: Some(key.clone()),
                hit: self.hits.get(key).cloned().map(cached_completion),
            },
            _ => Lookup {
                cache: None,
                key: None,
                hit: None,
            },
        }
    }

    /// How many of the job's calls the cache answers.
    pub fn hits(&self) -> usize {
        self.hits.len()
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
