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
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
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
    let doc = key_document(target, json!(prompt), identity);
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}

/// The canonical document [`key_identified`] hashes, with `prompt` as the
/// prompt's JSON (object keys sorted: `serde_json` maps are ordered).
fn key_document(
    target: &TargetSpec,
    prompt: serde_json::Value,
    identity: Option<&str>,
) -> serde_json::Value {
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
    doc
}

/// [`key_identified`] for many prompts sent to one target and model: the
/// document around the prompt is made and hashed once, each prompt is
/// written straight into a copy of that hash. Equal keys, byte for byte;
/// building the whole document per item cost more than the model call's
/// own JSON.
pub struct KeyPrefix {
    /// SHA-256 state after the document's text before the prompt.
    head: Sha256,
    /// The document's text after the prompt.
    tail: String,
}

impl KeyPrefix {
    /// The key document of `target` and `identity`, split at its prompt.
    pub fn new(target: &TargetSpec, identity: Option<&str>) -> KeyPrefix {
        // A string no prompt serialises to marks the prompt's place.
        const MARK: &str = "\u{0}vigil-prompt\u{0}";
        let text = key_document(target, json!(MARK), identity).to_string();
        let mark = serde_json::to_string(MARK).expect("a string serialises");
        let at = text.find(&mark).expect("the document holds the mark");
        KeyPrefix {
            head: Sha256::new_with_prefix(&text[..at]),
            tail: text[at + mark.len()..].to_string(),
        }
    }

    /// The key of `prompt`: [`key_identified`] of the target, prompt and identity.
    pub fn key(&self, prompt: &Prompt) -> String {
        let mut json = Vec::with_capacity(256);
        // `json!(prompt)` as text: an externally tagged enum, each
        // message's keys in order (`content` before `role`).
        let string = |out: &mut Vec<u8>, s: &str| {
            serde_json::to_writer(out, s).expect("a string serialises");
        };
        match prompt {
            Prompt::Chat(messages) => {
                json.extend_from_slice(br#"{"chat":["#);
                for (i, m) in messages.iter().enumerate() {
                    if i > 0 {
                        json.push(b',');
                    }
                    json.extend_from_slice(br#"{"content":"#);
                    string(&mut json, &m.content);
                    json.extend_from_slice(br#","role":"#);
                    string(&mut json, &m.role);
                    json.push(b'}');
                }
                json.extend_from_slice(b"]}");
            }
            Prompt::Completion(text) => {
                json.extend_from_slice(br#"{"completion":"#);
                string(&mut json, text);
                json.push(b'}');
            }
        }
        let mut hash = self.head.clone();
        hash.update(&json);
        hash.update(self.tail.as_bytes());
        hex::encode(hash.finalize())
    }
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
    /// before anything the caller publishes afterwards), as [`ResponseCache::write`]
    /// does for many. A write that fails is only logged: a lost cache entry
    /// costs one more model call later, never a result.
    pub async fn put(&self, key: &str, completion: &Completion) {
        if let Some(bytes) = entry_bytes(completion) {
            self.write(vec![(key.to_string(), bytes)]).await;
        }
    }

    /// Stores entries (a key and its encoded [`CachedResponse`] each),
    /// pipelined: this returns once all are queued on the connection, in
    /// order, so they reach the server before anything published on it
    /// afterwards (such as the job's result).
    ///
    /// Each entry but the last is a plain publish on its key's subject,
    /// without a reply subject: JetStream stores it and answers nothing. The
    /// last is a JetStream publish whose acknowledgement is awaited in one
    /// background task: a stream stores what one connection publishes in
    /// order, so that acknowledgement comes after the others were stored,
    /// and a failing bucket (full, rejecting the entry's size) is logged once
    /// per call. Waiting for an acknowledgement per entry cost nats-server,
    /// the client and a task per entry on every cold item. A write that
    /// fails is only logged: a lost cache entry costs one more model call
    /// later, never a result.
    pub async fn write(&self, entries: Vec<(String, Vec<u8>)>) {
        let last = entries.len().saturating_sub(1);
        let client = self.js.client();
        for (i, (key, bytes)) in entries.into_iter().enumerate() {
            let Some(subject) = self.subject(&key) else {
                // A bucket reached through another JetStream domain: its put
                // subject needs that domain's prefix, which only the store knows.
                if let Err(e) = self.kv.put(&key, bytes.into()).await {
                    tracing::debug!(error = %e, "could not store a response in the cache");
                }
                continue;
            };
            if i < last {
                if let Err(e) = client.publish(subject, bytes.into()).await {
                    tracing::debug!(error = %e, "could not store responses in the cache");
                    return;
                }
                continue;
            }
            match self.js.publish(subject, bytes.into()).await {
                Ok(ack) => {
                    tokio::spawn(async move {
                        if let Err(e) = ack.await {
                            tracing::debug!(error = %e, "the server did not store cache entries");
                        }
                    });
                }
                Err(e) => tracing::debug!(error = %e, "could not store a response in the cache"),
            }
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

/// A [`CachedResponse`] borrowing the completion's texts: the same fields in
/// the same order, so the same bytes (MessagePack with field names), without
/// copying the texts first.
#[derive(Serialize)]
struct EntryRef<'a> {
    text: &'a str,
    usage: TokenUsage,
    finish_reason: Option<&'a str>,
    model: Option<&'a str>,
    latency_ms: f64,
    stored_at_ms: u64,
}

/// The stored form of `completion`, written now.
fn entry_bytes(completion: &Completion) -> Option<Vec<u8>> {
    vigil_protocol::encode(&EntryRef {
        text: &completion.text,
        usage: completion.usage,
        finish_reason: completion.finish_reason.as_deref(),
        model: completion.model.as_deref(),
        latency_ms: completion.latency_ms,
        stored_at_ms: now_ms(),
    })
    .ok()
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
    key: Option<Cow<'a, str>>,
    /// The cached completion, when there was one.
    pub hit: Option<Completion>,
    /// Where a job's fresh answers wait to be written together
    /// ([`JobLookups::write`]); `None`: [`Lookup::store`] writes at once.
    fresh: Option<&'a Fresh>,
}

/// A job's fresh answers: the key and the encoded entry of each.
type Fresh = Mutex<Vec<(String, Vec<u8>)>>;

impl Lookup<'_> {
    /// No cache for this call: nothing looked up, nothing stored.
    fn none() -> Self {
        Lookup {
            cache: None,
            key: None,
            hit: None,
            fresh: None,
        }
    }
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
        return Lookup::none();
    };
    let key = key_identified(target, prompt, identity);
    let hit = cache.get(&key, policy.ttl_s).await.map(cached_completion);
    Lookup {
        cache: Some(cache),
        key: Some(Cow::Owned(key)),
        hit,
        fresh: None,
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
    /// The job's fresh answers, written together by [`JobLookups::write`].
    fresh: Fresh,
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
                fresh: Fresh::default(),
            };
        };
        // Sample 0 is sent to the job's target as it is.
        let targets: Vec<Cow<'_, TargetSpec>> = (0..job.samples.max(1))
            .map(|i| match i {
                0 => Cow::Borrowed(&job.target),
                i => Cow::Owned(crate::sampling::target_for_sample(&job.target, i)),
            })
            .collect();
        let prefixes: Vec<KeyPrefix> = targets
            .iter()
            .map(|t| KeyPrefix::new(t, identity))
            .collect();
        let keys: Vec<Vec<String>> = job
            .items
            .iter()
            .map(|item| prefixes.iter().map(|p| p.key(&item.prompt)).collect())
            .collect();
        let all: Vec<&str> = keys.iter().flatten().map(String::as_str).collect();
        let hits = cache.get_many(&all, policy.ttl_s).await;
        JobLookups {
            cache: Some(cache),
            keys,
            hits,
            fresh: Fresh::default(),
        }
    }

    /// The lookup of sample `sample` of the job's `position`-th item.
    /// A miss's answer is kept for [`JobLookups::write`].
    pub fn lookup(&self, position: usize, sample: u32) -> Lookup<'_> {
        let key = self.keys.get(position).and_then(|k| k.get(sample as usize));
        match (self.cache, key) {
            (Some(cache), Some(key)) => Lookup {
                cache: Some(cache),
                hit: self.hits.get(key).cloned().map(cached_completion),
                key: Some(Cow::Borrowed(key)),
                fresh: Some(&self.fresh),
            },
            _ => Lookup::none(),
        }
    }

    /// Writes the answers of the job's misses, all at once
    /// ([`ResponseCache::write`]): call it when the job's calls are done and
    /// before its result is published. No item waits on it.
    pub async fn write(&self) {
        let fresh = std::mem::take(&mut *self.fresh.lock().unwrap_or_else(|e| e.into_inner()));
        if let (Some(cache), false) = (self.cache, fresh.is_empty()) {
            cache.write(fresh).await;
        }
    }

    /// How many of the job's calls the cache answers.
    pub fn hits(&self) -> usize {
        self.hits.len()
    }
}

impl Lookup<'_> {
    /// Stores a fresh completion when the cache was consulted and missed:
    /// with the job's other answers when the lookup came from
    /// [`JobLookups`], else at once.
    pub async fn store(&self, completion: &Completion) {
        let (Some(cache), Some(key), None) = (self.cache, &self.key, &self.hit) else {
            return;
        };
        let Some(fresh) = self.fresh else {
            return cache.put(key, completion).await;
        };
        if let Some(bytes) = entry_bytes(completion) {
            let mut fresh = fresh.lock().unwrap_or_else(|e| e.into_inner());
            fresh.push((key.to_string(), bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::{ChatMessage, EndpointKind, SamplingParams};

    /// An entry written from a borrowed completion reads back as the
    /// completion, and is byte for byte what [`CachedResponse`] encodes to
    /// (entries of earlier versions and of this one read alike).
    #[test]
    fn borrowed_entries_encode_as_cached_responses() {
        for (finish_reason, model) in [(Some("stop"), Some("m-1")), (None, None)] {
            let completion = Completion {
                text: "quotes \" ünï 🙂".into(),
                usage: TokenUsage {
                    input: 12,
                    output: 3,
                },
                finish_reason: finish_reason.map(str::to_string),
                model: model.map(str::to_string),
                latency_ms: 2.25,
                attempts: 2,
            };
            let bytes = entry_bytes(&completion).unwrap();
            let read: CachedResponse = vigil_protocol::decode(&bytes).unwrap();
            let owned = CachedResponse {
                text: completion.text.clone(),
                usage: completion.usage,
                finish_reason: completion.finish_reason.clone(),
                model: completion.model.clone(),
                latency_ms: completion.latency_ms,
                stored_at_ms: read.stored_at_ms,
            };
            assert_eq!(read, owned);
            assert_eq!(bytes, vigil_protocol::encode(&owned).unwrap());
            assert!(read.stored_at_ms > 0);
        }
    }

    /// The per-job prefix gives exactly the keys of [`key_identified`]
    /// (entries stored by earlier versions stay reachable).
    #[test]
    fn prefixed_keys_equal_the_full_document_keys() {
        let chat = |pairs: &[(&str, &str)]| {
            Prompt::Chat(
                pairs
                    .iter()
                    .map(|(role, content)| ChatMessage {
                        role: role.to_string(),
                        content: content.to_string(),
                    })
                    .collect(),
            )
        };
        let prompts = [
            chat(&[
                ("system", "Answer with the number only."),
                ("user", "What is 7 + 9?"),
            ]),
            chat(&[("user", "quotes \" back\\slash\nnewline \u{1} ünï 🙂 </b>")]),
            chat(&[]),
            Prompt::Completion("2 + 2 =".into()),
            Prompt::Completion(String::new()),
        ];
        let mut targets = vec![TargetSpec {
            model: "m".into(),
            base_url: "http://h:8000/v1/".into(),
            ..Default::default()
        }];
        let mut t = targets[0].clone();
        t.kind = EndpointKind::Completions;
        t.params = SamplingParams {
            temperature: Some(0.7),
            top_p: Some(0.9),
            max_tokens: Some(16),
            seed: Some(7),
            stop: vec!["\n".into(), "END".into()],
        };
        targets.push(t.clone());
        t.model_path = Some("/models/a b.gguf".into());
        t.kind = EndpointKind::Local;
        targets.push(t);
        for target in &targets {
            for identity in [None, Some(r#"{"created":1,"id":"m"}"#)] {
                let prefix = KeyPrefix::new(target, identity);
                for prompt in &prompts {
                    assert_eq!(
                        prefix.key(prompt),
                        key_identified(target, prompt, identity),
                        "{target:?} {identity:?} {prompt:?}"
                    );
                }
            }
        }
    }
}
