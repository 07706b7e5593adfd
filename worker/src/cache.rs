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
//! A job's answers are stored in groups of about 16 calls cut at anchor
//! keys ([`JobLookups`]: one entry per group, found again however later runs
//! cut their jobs), read in one batch request per job (fewer in a run
//! whose reads find nothing, [`JobLookups::read`]) and written together
//! when the job's calls are done.
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
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
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
    /// Per run and target (its marker): what this worker's reads of the
    /// run's jobs found so far ([`RunReads`]).
    runs: std::sync::Arc<Mutex<HashMap<(String, String), RunReads>>>,
}

/// Runs and targets a worker remembers before it forgets them all.
const MAX_RUNS: usize = 4096;

/// What a worker's reads for one run and target found so far, and so
/// whether the next job reads: a read costs nats-server about as much CPU as
/// the rest of a 128-call job's cache work, and a cold run's reads find
/// nothing.
///
/// - A read that found nothing at all, not even the target's marker: no
///   answer of this target, model and parameters is stored (a model version
///   or parameters never run before), and the run's later jobs read nothing.
/// - [`EMPTY_STREAK`] jobs in a row whose reads found none of their calls
///   (answers of other prompts are stored): later jobs read one in
///   [`PROBE_EVERY`], and every job again as soon as one finds a call.
///
/// It also holds when this worker last put the run's marker: writes put it
/// once every [`MARKER_EVERY`], not with every job's entries.
#[derive(Debug, Default)]
struct RunReads {
    /// Jobs of the run this worker started.
    jobs: u64,
    /// Jobs in a row whose reads found none of their calls.
    empty_streak: u32,
    /// A read found nothing at all.
    nothing_stored: bool,
    /// When this worker last put the target's marker for the run.
    marker_put: Option<Instant>,
}

impl RunReads {
    /// Whether a write at `now` puts the marker (and if so, notes it).
    fn marker_due(&mut self, now: Instant) -> bool {
        let due = self
            .marker_put
            .is_none_or(|at| now.saturating_duration_since(at) >= MARKER_EVERY);
        if due {
            self.marker_put = Some(now);
        }
        due
    }
}

/// Jobs in a row that found none of their calls before a run reads less.
const EMPTY_STREAK: u32 = 4;
/// Then one job in this many still reads.
const PROBE_EVERY: u64 = 8;
/// How often a run's writes put the target's marker again: a marker is at
/// most this much older than the entries it vouches for (it only has to
/// outlive them), and a cold run does not put one more message per job.
const MARKER_EVERY: Duration = Duration::from_secs(60);

/// What one job's reads found.
enum ReadOutcome {
    /// No value at all (not even the marker).
    NothingStored,
    /// Values, but none of the job's calls.
    NoCall,
    /// Some of the job's calls.
    Calls,
}

impl ResponseCache {
    /// Whether the next job of `run` reads its entries ([`RunReads`]).
    fn should_read(&self, run: &(String, String)) -> bool {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if runs.len() >= MAX_RUNS && !runs.contains_key(run) {
            runs.clear();
        }
        let reads = runs.entry(run.clone()).or_default();
        reads.jobs += 1;
        !reads.nothing_stored
            && (reads.empty_streak < EMPTY_STREAK || reads.jobs.is_multiple_of(PROBE_EVERY))
    }

    /// Records what a job's reads found.
    fn record_read(&self, run: &(String, String), outcome: ReadOutcome) {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let reads = runs.entry(run.clone()).or_default();
        match outcome {
            ReadOutcome::NothingStored => reads.nothing_stored = true,
            ReadOutcome::NoCall => reads.empty_streak += 1,
            ReadOutcome::Calls => reads.empty_streak = 0,
        }
    }

    /// Whether a write of `run`'s entries puts the target's marker as well:
    /// the run's first on this worker, then once every [`MARKER_EVERY`].
    fn marker_due(&self, run: &(String, String)) -> bool {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.entry(run.clone())
            .or_default()
            .marker_due(Instant::now())
    }
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
    /// The entry that says the bucket holds answers of this target, model
    /// and parameters: `m.<SHA-256 of the document without its prompt>`.
    marker: String,
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
            marker: format!("{MARKER}{}", hex::encode(Sha256::digest(text.as_bytes()))),
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
            // serde_json escapes only `"`, `\` and control characters: a
            // string without them is written as it is, between quotes.
            if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
                serde_json::to_writer(out, s).expect("a string serialises");
            } else {
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
            }
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
        let mut hex = [0; 64];
        hex::encode_to_slice(hash.finalize(), &mut hex).expect("64 hex digits for 32 bytes");
        String::from_utf8(hex.to_vec()).expect("hex digits are ASCII")
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
            .map(|kv| ResponseCache {
                kv,
                js: js.clone(),
                runs: Default::default(),
            })
    }

    /// The cached response of `key`, unless missing, unreadable or older than `ttl_s`.
    pub async fn get(&self, key: &str, ttl_s: Option<u64>) -> Option<CachedResponse> {
        let bytes = self.kv.get(key).await.ok()??;
        let hit = vigil_protocol::decode(&bytes).ok()?;
        self.usable(&hit, ttl_s).then_some(hit)
    }

    /// The cached responses of `keys` (those present, readable and not older
    /// than `ttl_s`), read in as few requests as possible ([`ResponseCache::read_many`]).
    pub async fn get_many(
        &self,
        keys: &[&str],
        ttl_s: Option<u64>,
    ) -> HashMap<String, CachedResponse> {
        self.read_many(keys)
            .await
            .into_iter()
            .filter_map(|(key, bytes)| {
                let hit: CachedResponse = vigil_protocol::decode(&bytes).ok()?;
                self.usable(&hit, ttl_s).then_some((key, hit))
            })
            .collect()
    }

    /// Whether a stored response may answer: not older than `ttl_s`, nor
    /// than the bucket's max age (an entry rewritten into a group keeps the
    /// time it was first stored).
    fn usable(&self, hit: &CachedResponse, ttl_s: Option<u64>) -> bool {
        let age_ms = now_ms().saturating_sub(hit.stored_at_ms);
        let max_age = self.kv.stream.cached_info().config.max_age;
        ttl_s.is_none_or(|ttl| age_ms <= ttl.saturating_mul(1000))
            && (max_age.is_zero() || u128::from(age_ms) <= max_age.as_millis())
    }

    /// The stored bytes of the entries `keys` that exist, read in as few
    /// requests as possible: one JetStream batch direct get (`multi_last`,
    /// nats-server 2.11 and newer) per [`BATCH_KEYS`] keys, else one
    /// concurrent get per key. A read that fails or takes longer than
    /// [`BATCH_WAIT`] leaves its keys missing: those items call their backend.
    pub async fn read_many(&self, keys: &[&str]) -> HashMap<String, bytes::Bytes> {
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
                .map(|key| async move { (*key, self.kv.get(*key).await.ok().flatten()) });
            for (key, bytes) in futures::future::join_all(gets).await {
                if let Some(bytes) = bytes {
                    found.insert(key.to_string(), bytes);
                }
            }
            return found;
        }
        for chunk in keys.chunks(BATCH_KEYS) {
            match tokio::time::timeout(BATCH_WAIT, self.read_batch(chunk, &mut found)).await {
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
        found: &mut HashMap<String, bytes::Bytes>,
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
            found.insert(key.to_string(), reply.payload);
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
                // One entry refused (larger than the server takes) loses
                // only itself.
                if let Err(e) = client.publish(subject, bytes.into()).await {
                    tracing::debug!(error = %e, "could not store a response in the cache");
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

/// A cache lookup for one call of a job: the hit, or where its answer goes.
pub struct Lookup<'a> {
    /// The call (its place in the job's calls) and the job's lookups, when
    /// the cache was consulted.
    at: Option<(usize, &'a JobLookups<'a>)>,
    /// The cached completion, when there was one.
    pub hit: Option<Completion>,
}

/// Whether `job` may use `cache` at all (the worker has one and the job's
/// policy turns it on).
pub fn allowed(cache: Option<&ResponseCache>, job: &Job) -> bool {
    // A recorded target's outputs come with the items: nothing to cache.
    cache.is_some()
        && job.cache.as_ref().is_some_and(|p| p.enabled)
        && job.target.kind != vigil_protocol::EndpointKind::Recorded
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

/// One key in 16 (its first hex digit `0`) starts a group: which keys do is
/// a property of the keys alone, so the same calls make the same groups
/// whichever job, run or dataset position they come in.
fn is_anchor(key: &str) -> bool {
    key.starts_with('0')
}

/// The entry of a group that starts at an anchor key.
const GROUP: &str = "g.";
/// The entry of the calls before a job's first anchor, named by that anchor.
const HEAD: &str = "h.";
/// The entry that marks a target's answers as stored ([`KeyPrefix`]).
const MARKER: &str = "m.";
/// A group entry's largest size: its calls beyond it get entries of their own.
const GROUP_MAX_BYTES: usize = 256 * 1024;

impl ResponseCache {
    /// The largest group entry written: [`GROUP_MAX_BYTES`], at most half
    /// the server's `max_payload` and at most the bucket's own message size
    /// limit, when it has one.
    fn group_max_bytes(&self) -> usize {
        let payload = self.js.client().server_info().max_payload;
        let bucket = self.kv.stream.cached_info().config.max_message_size;
        let mut max = GROUP_MAX_BYTES;
        if payload > 0 {
            max = max.min(payload / 2);
        }
        if let Ok(bucket) = usize::try_from(bucket)
            && bucket > 0
        {
            max = max.min(bucket);
        }
        max
    }
}

/// The calls of a job (keys in the order of items and samples) that share
/// one entry of the bucket.
///
/// Storing and looking up one entry per call cost nats-server as much CPU
/// as the rest of a cold run's item; one entry per ~16 calls costs it a
/// sixteenth. Groups are cut where the keys say ([`is_anchor`]), not where
/// the job starts, so a run whose jobs are cut elsewhere (a line added to
/// the dataset, another shard size) finds nearly all of its calls in the
/// groups an earlier run wrote:
/// - an anchor key and the keys after it, up to the next anchor or the
///   job's end: entry `g.<anchor>`;
/// - the keys before the job's first anchor: entry `h.<first anchor>`;
/// - in a job without an anchor, each key is an entry of its own (`<key>`),
///   as entries were stored before groups.
#[derive(Debug, Clone, PartialEq)]
struct Group {
    /// The entry's key in the bucket.
    name: String,
    /// Its calls: positions in the job's keys.
    calls: std::ops::Range<usize>,
    /// Whether the entry holds several calls (else it is `<key>` itself).
    shared: bool,
}

/// The groups of a job's `keys` ([`Group`]).
fn groups(keys: &[String]) -> Vec<Group> {
    let Some(first) = keys.iter().position(|k| is_anchor(k)) else {
        return (0..keys.len())
            .map(|i| Group {
                name: keys[i].clone(),
                calls: i..i + 1,
                shared: false,
            })
            .collect();
    };
    let mut groups = Vec::new();
    if first > 0 {
        groups.push(Group {
            name: format!("{HEAD}{}", keys[first]),
            calls: 0..first,
            shared: true,
        });
    }
    // A key the job sends again does not start a second group of the same
    // name: one entry per name and job.
    let mut anchors = std::collections::HashSet::from([keys[first].as_str()]);
    let mut start = first;
    for end in first + 1..=keys.len() {
        if end == keys.len() || (is_anchor(&keys[end]) && anchors.insert(&keys[end])) {
            groups.push(Group {
                name: format!("{GROUP}{}", keys[start]),
                calls: start..end,
                shared: true,
            });
            start = end;
        }
    }
    groups
}

/// A group's entry: its calls' answers, and the anchor of the group before
/// it in the job that wrote it (how a later job that starts inside that
/// group, where its own head entry was never written, finds its first calls).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct GroupEntry<C> {
    calls: Vec<C>,
    prev: Option<String>,
}

/// The calls a stored value holds (a group's, or the one response stored
/// under `name` itself) and its group's link ([`GroupEntry::prev`]).
fn stored_entries(name: &str, bytes: &[u8]) -> GroupEntry<(String, CachedResponse)> {
    if name.starts_with(GROUP) || name.starts_with(HEAD) {
        vigil_protocol::decode(bytes).unwrap_or_default()
    } else {
        GroupEntry {
            calls: vigil_protocol::decode(bytes)
                .map(|hit| vec![(name.to_string(), hit)])
                .unwrap_or_default(),
            prev: None,
        }
    }
}

/// A rough upper bound of an entry's encoded size.
fn entry_size(key: &str, entry: &CachedResponse) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    key.len() + entry.text.len() + opt(&entry.finish_reason) + opt(&entry.model) + 48
}

/// The entry of a fresh answer; its write time is set when the job's
/// entries are written ([`JobLookups::write`]).
fn fresh_entry(completion: &Completion) -> CachedResponse {
    CachedResponse {
        text: completion.text.clone(),
        usage: completion.usage,
        finish_reason: completion.finish_reason.clone(),
        model: completion.model.clone(),
        latency_ms: completion.latency_ms,
        stored_at_ms: 0,
    }
}

/// What a job's reads found so far, per call of the job.
struct Found<'a> {
    cache: &'a ResponseCache,
    ttl_s: Option<u64>,
    /// The job's keys: the first call of each.
    calls: foldhash::HashMap<&'a str, usize>,
    /// Per call: its answer, when found and usable.
    hits: Vec<Option<CachedResponse>>,
    /// Per group entry: the usable calls it holds that are not the job's.
    others: HashMap<String, Vec<(String, CachedResponse)>>,
    /// Per group entry: its link.
    links: HashMap<String, String>,
}

impl Found<'_> {
    /// Takes in the value stored under `name`; returns the job's calls it held.
    fn take(&mut self, name: &str, bytes: &[u8]) -> Vec<usize> {
        let entry = stored_entries(name, bytes);
        let mut held = Vec::with_capacity(entry.calls.len());
        for (key, hit) in entry.calls {
            if !self.cache.usable(&hit, self.ttl_s) {
                continue;
            }
            match self.calls.get(key.as_str()) {
                Some(&call) => {
                    held.push(call);
                    self.hits[call] = Some(hit);
                }
                None => self
                    .others
                    .entry(name.to_string())
                    .or_default()
                    .push((key, hit)),
            }
        }
        if let Some(prev) = entry.prev {
            self.links.insert(name.to_string(), prev);
        }
        held
    }
}

/// The cache's answers for every call of a job, read up front in batches
/// ([`ResponseCache::read_many`]): no item waits on a lookup of its own.
pub struct JobLookups<'a> {
    cache: Option<&'a ResponseCache>,
    /// The run and the target's marker entry ([`KeyPrefix`]): the marker
    /// is put with the job's entries when due ([`ResponseCache::marker_due`]).
    run: (String, String),
    /// Calls per item (its samples).
    samples: usize,
    /// Per call (item by item in the job's order, sample by sample): its key.
    keys: Vec<String>,
    /// The groups of `keys`.
    groups: Vec<Group>,
    /// Per call: the answer found.
    hits: Vec<Option<CachedResponse>>,
    /// Per call: whether its group's own entry held it (else the group is
    /// written again, holding it, when the job is done).
    in_own_group: Vec<bool>,
    /// Per call: the first call of the job with the same key (itself, but
    /// for a prompt the job sends twice).
    first: Vec<usize>,
    /// Per group entry read: the calls it holds that are not this job's
    /// (another run's neighbours), kept when the entry is written again.
    others: HashMap<String, Vec<(String, CachedResponse)>>,
    /// Per group entry read: its link ([`GroupEntry::prev`]).
    links: HashMap<String, String>,
    /// The job's fresh answers (call, entry), written together by
    /// [`JobLookups::write`].
    fresh: Mutex<Vec<(usize, CachedResponse)>>,
}

impl<'a> JobLookups<'a> {
    /// No cache for this job: nothing looked up, nothing stored.
    fn none() -> Self {
        JobLookups {
            run: Default::default(),
            cache: None,
            samples: 0,
            keys: Vec::new(),
            groups: Vec::new(),
            hits: Vec::new(),
            in_own_group: Vec::new(),
            first: Vec::new(),
            others: HashMap::new(),
            links: HashMap::new(),
            fresh: Mutex::default(),
        }
    }

    /// Reads the entries of every item and sample of `job` for the model
    /// `identity` names, when the job's policy allows the cache, its
    /// identity is part of the key, and a model whose identity could not be
    /// read ([`Identity::Unavailable`]) bypasses the cache (no lookup, no store).
    ///
    /// One batch read asks for the job's group entries, the first call's
    /// own entry and the target's marker ([`KeyPrefix`]). When it found some
    /// calls but not all, a second asks for the missing calls' own entries
    /// (stored alone: by an older vigil, or beyond a group's size) and, for
    /// calls before the job's first anchor, the group its entry links to; a
    /// cold job, where nothing was found, asks nothing more. Whether a job
    /// reads at all depends on what the run's earlier jobs on this worker
    /// found ([`RunReads`]): a cold run mostly does not.
    pub async fn read(
        cache: Option<&'a ResponseCache>,
        job: &Job,
        identity: &Identity,
    ) -> JobLookups<'a> {
        let policy = job.cache.as_ref().filter(|_| allowed(cache, job));
        let (Some(cache), Some(policy), Some(identity)) = (cache, policy, identity.key_part())
        else {
            return JobLookups::none();
        };
        let samples = job.samples.max(1) as usize;
        // Sample 0 is sent to the job's target as it is.
        let prefixes: Vec<KeyPrefix> = (0..samples as u32)
            .map(|i| match i {
                0 => KeyPrefix::new(&job.target, identity),
                i => KeyPrefix::new(
                    &crate::sampling::target_for_sample(&job.target, i),
                    identity,
                ),
            })
            .collect();
        let keys: Vec<String> = job
            .items
            .iter()
            .flat_map(|item| prefixes.iter().map(|p| p.key(&item.prompt)))
            .collect();
        let groups = groups(&keys);
        let run = (job.run_id.clone(), prefixes[0].marker.clone());
        let read = cache.should_read(&run);
        let mut names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        // The first call's own entry too: a job whose calls an older vigil
        // stored one by one is found warm, and read call by call below.
        let probe = groups.first().is_some_and(|g| g.shared);
        if probe {
            names.push(&keys[0]);
        }
        names.push(&run.1);
        let stored = match read {
            true => cache.read_many(&names).await,
            false => HashMap::new(),
        };

        // A cold job (nothing stored): nothing to index.
        if stored.is_empty() && read {
            cache.record_read(&run, ReadOutcome::NothingStored);
        }
        let (hits, in_own_group, first, others, links) = if stored.is_empty() {
            let n = keys.len();
            (
                vec![None; n],
                vec![false; n],
                (0..n).collect(),
                HashMap::new(),
                HashMap::new(),
            )
        } else {
            let mut calls =
                foldhash::HashMap::with_capacity_and_hasher(keys.len(), Default::default());
            for (call, key) in keys.iter().enumerate().rev() {
                calls.insert(key.as_str(), call);
            }
            let mut found = Found {
                cache,
                ttl_s: policy.ttl_s,
                calls,
                hits: vec![None; keys.len()],
                others: HashMap::new(),
                links: HashMap::new(),
            };
            let mut in_own_group = vec![false; keys.len()];
            if probe && let Some(bytes) = stored.get(&keys[0]) {
                found.take(&keys[0], bytes);
            }
            for group in &groups {
                if let Some(bytes) = stored.get(&group.name) {
                    for call in found.take(&group.name, bytes) {
                        // Held by this group's entry (another's may hold it too).
                        if group.calls.contains(&call) {
                            in_own_group[call] = true;
                        }
                    }
                }
            }
            // A warm job's calls its groups did not hold: those stored alone,
            // and a head's calls in the group before its first anchor's, as the
            // job that wrote that anchor's group had them.
            if found.hits.iter().any(Option::is_some) {
                let missing = |g: &Group| g.calls.clone().any(|c| found.hits[c].is_none());
                let before_head = match groups.as_slice() {
                    [head, first, ..] if head.name.starts_with(HEAD) && missing(head) => found
                        .links
                        .get(&first.name)
                        .map(|prev| format!("{GROUP}{prev}")),
                    _ => None,
                };
                let mut names: Vec<&str> = groups
                    .iter()
                    .filter(|g| g.shared)
                    .flat_map(|g| g.calls.clone())
                    .filter(|&call| found.hits[call].is_none())
                    .map(|call| keys[call].as_str())
                    .collect();
                names.extend(before_head.as_deref());
                for (name, bytes) in cache.read_many(&names).await {
                    found.take(&name, &bytes);
                }
            }
            let outcome = match found.hits.iter().any(Option::is_some) {
                true => ReadOutcome::Calls,
                false => ReadOutcome::NoCall,
            };
            cache.record_read(&run, outcome);
            // A key the job calls twice: each call has the answer.
            let first: Vec<usize> = keys.iter().map(|key| found.calls[key.as_str()]).collect();
            for (call, &first) in first.iter().enumerate() {
                if found.hits[call].is_none() {
                    found.hits[call] = found.hits[first].clone();
                }
            }
            (found.hits, in_own_group, first, found.others, found.links)
        };
        // Room for every miss's answer up front.
        let misses = hits.iter().filter(|h| h.is_none()).count();
        JobLookups {
            run,
            cache: Some(cache),
            samples,
            keys,
            groups,
            hits,
            in_own_group,
            first,
            others,
            links,
            fresh: Mutex::new(Vec::with_capacity(misses)),
        }
    }

    /// The lookup of sample `sample` of the job's `position`-th item.
    /// A miss's answer is kept for [`JobLookups::write`].
    pub fn lookup(&self, position: usize, sample: u32) -> Lookup<'_> {
        let call = position * self.samples + sample as usize;
        match self.hits.get(call) {
            Some(hit) if self.cache.is_some() && (sample as usize) < self.samples => Lookup {
                at: Some((call, self)),
                hit: hit.clone().map(cached_completion),
            },
            _ => Lookup {
                at: None,
                hit: None,
            },
        }
    }

    /// Writes the groups that changed, all at once ([`ResponseCache::write`]):
    /// those with a fresh answer, or with a call found elsewhere than in the
    /// group's own entry. A group's entry holds its calls' answers, fresh or
    /// found, and the other calls its stored entry held. Call it when the
    /// job's calls are done and before its result is published. No item
    /// waits on it.
    pub async fn write(&self) {
        let mut fresh = std::mem::take(&mut *self.fresh.lock().unwrap_or_else(|e| e.into_inner()));
        let Some(cache) = self.cache else {
            return;
        };
        let mut answers: Vec<Option<&CachedResponse>> =
            self.hits.iter().map(Option::as_ref).collect();
        let mut is_fresh = vec![false; self.keys.len()];
        // One clock read for the job's fresh answers: stored now.
        let now = now_ms();
        for (_, entry) in &mut fresh {
            entry.stored_at_ms = now;
        }
        for (call, entry) in &fresh {
            answers[*call] = Some(entry);
            is_fresh[*call] = true;
        }
        let max_bytes = cache.group_max_bytes();
        let mut entries = Vec::new();
        for (i, group) in self.groups.iter().enumerate() {
            let changed = group.calls.clone().any(|call| {
                let stored_elsewhere = self.hits[call].is_some() && !self.in_own_group[call];
                self.first[call] == call && (is_fresh[call] || stored_elsewhere)
            });
            if !changed {
                continue;
            }
            if !group.shared {
                // A job without anchors: each fresh answer alone.
                for call in group.calls.clone().filter(|&c| is_fresh[c]) {
                    entries.extend(encode_entry(&self.keys[call], answers[call]));
                }
                continue;
            }
            let mut members: Vec<(&str, &CachedResponse)> = Vec::with_capacity(group.calls.len());
            let mut size = 16;
            for call in group.calls.clone() {
                let (key, Some(entry)) = (self.keys[call].as_str(), answers[call]) else {
                    continue;
                };
                // A key the job calls twice is stored by its first call.
                if self.first[call] != call {
                    continue;
                }
                let entry_size = entry_size(key, entry);
                if size + entry_size <= max_bytes {
                    size += entry_size;
                    members.push((key, entry));
                } else if is_fresh[call] {
                    // Beyond the group's size: an entry of its own, found
                    // by the second read.
                    entries.extend(encode_entry(key, Some(entry)));
                }
            }
            for (key, entry) in self.others.get(&group.name).into_iter().flatten() {
                let entry_size = entry_size(key, entry);
                if size + entry_size <= max_bytes {
                    size += entry_size;
                    members.push((key, entry));
                }
            }
            if members.is_empty() {
                continue;
            }
            // The anchor before this group's in the job, else as stored.
            let prev = match i.checked_sub(1).map(|i| &self.groups[i].name) {
                Some(before) if before.starts_with(GROUP) => {
                    Some(before[GROUP.len()..].to_string())
                }
                _ => self.links.get(&group.name).cloned(),
            };
            let entry = GroupEntry {
                calls: members,
                prev,
            };
            match vigil_protocol::encode_compact(&entry) {
                Ok(bytes) => entries.push((group.name.clone(), bytes)),
                Err(e) => tracing::debug!(error = %e, "could not encode a cache group"),
            }
        }
        if !entries.is_empty() {
            // The marker last, so it is never stored before the entries it
            // vouches for.
            if cache.marker_due(&self.run) {
                entries.push((self.run.1.clone(), b"1".to_vec()));
            }
            cache.write(entries).await;
        }
    }

    /// How many of the job's calls the cache answers.
    pub fn hits(&self) -> usize {
        self.hits.iter().filter(|h| h.is_some()).count()
    }
}

/// `entry` stored alone under `key` (as [`CachedResponse`] with field names,
/// as entries were stored before groups).
fn encode_entry(key: &str, entry: Option<&CachedResponse>) -> Option<(String, Vec<u8>)> {
    vigil_protocol::encode(entry?)
        .ok()
        .map(|bytes| (key.to_string(), bytes))
}

impl Lookup<'_> {
    /// Keeps a fresh completion for the job's [`JobLookups::write`] when the
    /// cache was consulted and missed.
    pub fn store(&self, completion: &Completion) {
        let (Some((call, lookups)), None) = (self.at, &self.hit) else {
            return;
        };
        let entry = fresh_entry(completion);
        let mut fresh = lookups.fresh.lock().unwrap_or_else(|e| e.into_inner());
        fresh.push((call, entry));
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

    /// A run's writes put the marker with its first job's entries, then
    /// once every [`MARKER_EVERY`], whatever the number of jobs between.
    #[test]
    fn the_marker_is_put_once_per_interval() {
        let mut run = RunReads::default();
        let t0 = Instant::now();
        assert!(run.marker_due(t0), "the run's first write");
        for s in [0, 1, 30, 59] {
            assert!(!run.marker_due(t0 + Duration::from_secs(s)), "{s} s later");
        }
        assert!(run.marker_due(t0 + MARKER_EVERY), "{MARKER_EVERY:?} later");
        assert!(!run.marker_due(t0 + MARKER_EVERY + Duration::from_secs(1)));
    }

    /// Groups are cut at anchor keys: the keys before the first anchor are
    /// named by it, a job without an anchor stores each key alone, and a
    /// group's name depends on the keys, not on where the job starts.
    #[test]
    fn groups_are_cut_at_anchor_keys() {
        let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let names = |gs: &[Group]| {
            gs.iter()
                .map(|g| (g.name.clone(), g.calls.clone(), g.shared))
                .collect::<Vec<_>>()
        };
        let job = keys(&["a1", "b2", "0c", "d4", "0e", "f6"]);
        assert_eq!(
            names(&groups(&job)),
            vec![
                ("h.0c".into(), 0..2, true),
                ("g.0c".into(), 2..4, true),
                ("g.0e".into(), 4..6, true),
            ]
        );
        // The same keys cut one later: the anchored groups keep their names.
        let shifted = groups(&job[1..]);
        assert_eq!(shifted[0].name, "h.0c");
        assert_eq!(shifted[1].name, "g.0c");
        assert_eq!(shifted[2].name, "g.0e");
        // Starting at an anchor: no head.
        assert_eq!(names(&groups(&job[2..]))[0], ("g.0c".into(), 0..2, true));
        // No anchor: every key alone.
        assert_eq!(
            names(&groups(&keys(&["a1", "b2"]))),
            vec![("a1".into(), 0..1, false), ("b2".into(), 1..2, false)]
        );
        assert!(groups(&[]).is_empty());
        // An anchor sent twice starts one group.
        let again = keys(&["0c", "d4", "0c", "f6"]);
        assert_eq!(names(&groups(&again)), vec![("g.0c".into(), 0..4, true)]);
    }

    /// A group's entry decodes as its pairs and link; an entry stored alone
    /// as itself; garbage as nothing.
    #[test]
    fn stored_values_decode_by_their_names() {
        let entry = CachedResponse {
            text: "four".into(),
            stored_at_ms: 7,
            ..Default::default()
        };
        let group = GroupEntry {
            calls: vec![("0a", &entry), ("b1", &entry)],
            prev: Some("0f".to_string()),
        };
        let bytes = vigil_protocol::encode(&group).unwrap();
        let read = stored_entries("g.0a", &bytes);
        assert_eq!(read.calls.len(), 2);
        assert_eq!(read.calls[1], ("b1".to_string(), entry.clone()));
        assert_eq!(read.prev.as_deref(), Some("0f"));
        let alone = vigil_protocol::encode(&entry).unwrap();
        let read = stored_entries("b1", &alone);
        assert_eq!(read.calls, vec![("b1".to_string(), entry)]);
        assert_eq!(read.prev, None);
        assert!(stored_entries("g.0a", b"garbage").calls.is_empty());
        assert!(stored_entries("b1", b"garbage").calls.is_empty());
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
